//! Hostile test plugin: logs `messages` (config, default 256) messages of 1 MB each
//! on the first chunk, then accepts. The host must rate-limit and truncate them,
//! finish the upload normally and keep its own log usable.

use strongroom_plugin_sdk::{Config, Feed, Outcome, Plugin, Summary, UploadMeta, host};

const MESSAGE_BYTES: usize = 1_000_000;

pub struct Spammer {
    messages: u32,
    done: bool,
}

impl Plugin for Spammer {
    fn new(_meta: &UploadMeta, config: &Config) -> Self {
        Spammer {
            messages: config.get_or("messages", 256),
            done: false,
        }
    }

    fn feed(&mut self, _chunk: &[u8]) -> Feed {
        if !self.done {
            let mut message = "spam ".repeat(MESSAGE_BYTES / 5);
            for i in 0..self.messages {
                // Vary the head so a host that deduplicates still sees every call.
                message.replace_range(..4, &format!("{:04}", i % 10_000));
                host::log::warn(&message);
            }
            self.done = true;
        }
        Feed::Enough
    }

    fn finish(&mut self, _summary: &Summary) -> Outcome {
        Outcome::accept().label("messages-logged", self.messages.to_string())
    }
}

strongroom_plugin_sdk::export_plugin!(Spammer);
