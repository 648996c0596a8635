//! anomaly: flags uploads that are unusual for their tenant, using the statistics
//! the host keeps (`get-tenant-stats`): a size far from the tenant's mean, a type
//! the tenant never uploaded, bursts of uploads, and near-random bytes (Shannon
//! entropy over the first MiB) where the content or the declaration says text.
//! Self-contained: it sniffs the type itself with the same names content-inspector
//! labels. Reads only the first `entropy_sample_bytes`, then answers `Enough`.

pub mod judge;
pub mod observe;

use strongroom_plugin_sdk::{Config, Feed, Outcome, Plugin, Summary, UploadMeta, host};

use crate::judge::{KNOWN_KEYS, Observed, Settings};
use crate::observe::Observer;

pub struct Anomaly {
    settings: Settings,
    tenant: String,
    declared_media: Option<String>,
    declared_ext: Option<String>,
    observer: Observer,
}

impl Plugin for Anomaly {
    fn new(meta: &UploadMeta, config: &Config) -> Self {
        for key in config.keys().filter(|k| !KNOWN_KEYS.contains(k)) {
            host::log::warn(&format!("anomaly: unknown config key '{key}' ignored"));
        }
        let settings = Settings::from_config(config);
        Anomaly {
            observer: Observer::new(settings.entropy_sample_bytes),
            settings,
            tenant: meta.tenant.clone(),
            declared_media: meta.media_type(),
            declared_ext: meta.extension(),
        }
    }

    fn feed(&mut self, chunk: &[u8]) -> Feed {
        if self.observer.feed(chunk) {
            Feed::Enough
        } else {
            Feed::NeedMore
        }
    }

    fn finish(&mut self, summary: &Summary) -> Outcome {
        let observed = Observed {
            size: summary.total_bytes,
            detected: self.observer.detected(),
            entropy: self.observer.entropy(),
            entropy_sampled: self.observer.sampled(),
            declared_media: self.declared_media.take(),
            declared_ext: self.declared_ext.take(),
        };
        let stats = host::tenant_stats(&self.tenant);
        judge::judge(&observed, &stats, &self.settings)
    }
}

strongroom_plugin_sdk::export_plugin!(Anomaly);
