//! Hostile test plugin: allocates and touches 1 MiB blocks in `feed` until
//! allocation fails. With the host's `StoreLimits` cap and `trap_on_grow_failure`
//! the failing `memory.grow` traps; without it the allocator's failure aborts (also
//! a trap). Either way the host must record a `failed` verdict (out of memory).

use std::hint::black_box;

use strongroom_plugin_sdk::{Config, Feed, Outcome, Plugin, Summary, UploadMeta};

const BLOCK: usize = 1 << 20;

pub struct Hog {
    held: Vec<Vec<u8>>,
}

impl Plugin for Hog {
    fn new(_meta: &UploadMeta, _config: &Config) -> Self {
        Hog { held: Vec::new() }
    }

    fn feed(&mut self, _chunk: &[u8]) -> Feed {
        loop {
            // vec! with a non-zero byte writes every page, so the memory is really used.
            self.held.push(black_box(vec![0xa5u8; BLOCK]));
        }
    }

    fn finish(&mut self, _summary: &Summary) -> Outcome {
        Outcome::accept().label("held-mib", self.held.len().to_string())
    }
}

strongroom_plugin_sdk::export_plugin!(Hog);
