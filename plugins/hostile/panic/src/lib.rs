//! Hostile test plugin: panics in `feed`. The SDK's hook must log
//! "plugin panicked at hostile/panic/src/lib.rs:<line>:<col>: ..." to the host before
//! the abort traps; the host must record a `failed` verdict and carry on.

use strongroom_plugin_sdk::{Config, Feed, Outcome, Plugin, Summary, UploadMeta};

pub struct Panicker;

impl Plugin for Panicker {
    fn new(_meta: &UploadMeta, _config: &Config) -> Self {
        Panicker
    }

    fn feed(&mut self, chunk: &[u8]) -> Feed {
        panic!("hostile-panic: refusing a chunk of {} bytes", chunk.len());
    }

    fn finish(&mut self, _summary: &Summary) -> Outcome {
        Outcome::accept()
    }
}

strongroom_plugin_sdk::export_plugin!(Panicker);
