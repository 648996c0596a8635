//! content-inspector: types every upload by its bytes and rejects or quarantines
//! what the policy does not want: types outside `allowed_types`, the EICAR test
//! signature (early, mid-stream), executables or scripts hidden inside media and
//! documents, scripted SVG, ZIP bombs (judged from the central directory, never
//! decompressed) and declared types that lie. Labels every upload with
//! `detected-type`.
//!
//! The logic lives in pure modules testable natively; this file is the SDK glue.

pub mod inspector;
pub mod scan;
pub mod settings;
pub mod zip;

use strongroom_plugin_sdk::{Config, Feed, Outcome, Plugin, Summary, UploadMeta, host};

use crate::inspector::Inspector;
use crate::settings::{KNOWN_KEYS, Settings};

pub struct ContentInspector(Inspector);

impl Plugin for ContentInspector {
    fn new(meta: &UploadMeta, config: &Config) -> Self {
        for key in config.keys().filter(|k| !KNOWN_KEYS.contains(k)) {
            host::log::warn(&format!(
                "content-inspector: unknown config key '{key}' ignored"
            ));
        }
        ContentInspector(Inspector::new(meta, Settings::from_config(config)))
    }

    fn feed(&mut self, chunk: &[u8]) -> Feed {
        match self.0.feed(chunk) {
            Some(decision) => Feed::Decided(decision),
            None => Feed::NeedMore,
        }
    }

    fn finish(&mut self, _summary: &Summary) -> Outcome {
        self.0.finish()
    }
}

strongroom_plugin_sdk::export_plugin!(ContentInspector);
