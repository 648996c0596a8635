//! Hostile test plugin: never returns from `feed`. Only the host's epoch deadline
//! (or fuel) can stop it; the host must record a `failed` verdict (timeout) and
//! never reuse the store.

use std::hint::black_box;

use strongroom_plugin_sdk::{Config, Feed, Outcome, Plugin, Summary, UploadMeta};

pub struct Spinner;

impl Plugin for Spinner {
    fn new(_meta: &UploadMeta, _config: &Config) -> Self {
        Spinner
    }

    fn feed(&mut self, chunk: &[u8]) -> Feed {
        // black_box keeps the optimizer from proving the loop has no effect.
        let mut n = chunk.len() as u64;
        loop {
            n = black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }

    fn finish(&mut self, _summary: &Summary) -> Outcome {
        Outcome::accept()
    }
}

strongroom_plugin_sdk::export_plugin!(Spinner);
