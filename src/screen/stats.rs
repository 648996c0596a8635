//! Per-tenant statistics the host keeps for plugins (`get-tenant-stats`):
//! object sizes (count, mean, standard deviation), the detected types seen
//! and recent upload rates. Built from committed objects: at start from
//! every record, then from each new verdict. Memory per tenant is bounded.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use crate::policy::DETECTED_TYPE;
use crate::sandbox::TenantStats;
use crate::staging::{UploadRecord, UploadState};

/// Commit times kept per tenant for the rate figures: an hour's worth at up
/// to about 2.7 uploads a second; a busier tenant's hourly figure saturates.
const RECENT_CAP: usize = 10_000;
/// Distinct detected types kept per tenant.
const TYPES_CAP: usize = 256;

#[derive(Default)]
pub(super) struct TenantBook {
    tenants: Mutex<HashMap<String, Tally>>,
}

#[derive(Default)]
struct Tally {
    count: u64,
    sum: f64,
    sum_squares: f64,
    types: BTreeMap<String, u64>,
    /// Commit times (Unix seconds), oldest first.
    recent: VecDeque<u64>,
}

impl TenantBook {
    pub(super) fn observe(&self, record: &UploadRecord) {
        let UploadState::Committed(commit) = &record.state else {
            return;
        };
        let mut tenants = self.tenants.lock().expect("tenant stats poisoned");
        let tally = tenants.entry(record.tenant.clone()).or_default();
        let size = record.offset as f64;
        tally.count += 1;
        tally.sum += size;
        tally.sum_squares += size * size;
        if let Some(kind) = record.label(DETECTED_TYPE)
            && (tally.types.len() < TYPES_CAP || tally.types.contains_key(kind))
        {
            *tally.types.entry(kind.to_owned()).or_default() += 1;
        }
        let at = commit.committed_at;
        let position = tally.recent.partition_point(|&t| t <= at);
        tally.recent.insert(position, at);
        if tally.recent.len() > RECENT_CAP {
            tally.recent.pop_front();
        }
    }

    pub(super) fn stats(&self, tenant: &str) -> TenantStats {
        self.stats_at(tenant, crate::ingest::now_secs())
    }

    fn stats_at(&self, tenant: &str, now: u64) -> TenantStats {
        let tenants = self.tenants.lock().expect("tenant stats poisoned");
        let Some(tally) = tenants.get(tenant) else {
            return TenantStats::default();
        };
        let n = tally.count as f64;
        let mean = tally.sum / n;
        let variance = (tally.sum_squares / n - mean * mean).max(0.0);
        let since = |secs: u64| {
            let from = now.saturating_sub(secs);
            let count = tally.recent.iter().rev().take_while(|&&t| t > from).count();
            u32::try_from(count).unwrap_or(u32::MAX)
        };
        TenantStats {
            uploads: tally.count,
            mean_size: mean,
            stddev_size: variance.sqrt(),
            types_seen: tally
                .types
                .iter()
                .map(|(kind, count)| (kind.clone(), *count))
                .collect(),
            uploads_last_minute: since(60),
            uploads_last_hour: since(3600),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::WrappedDek;
    use crate::id::UploadId;
    use crate::staging::{CommitInfo, Disposition, PluginRecord, ScreeningReport, UploadKind};

    fn object(tenant: &str, size: u64, kind: &str, at: u64) -> UploadRecord {
        UploadRecord {
            id: UploadId::from_bytes([size as u8; 16]),
            tenant: tenant.into(),
            length: Some(size),
            offset: size,
            metadata: Vec::new(),
            kind: UploadKind::Regular,
            state: UploadState::Committed(CommitInfo {
                sha256: String::new(),
                committed_at: at,
                disposition: Disposition::Released,
            }),
            created_at: at,
            updated_at: at,
            expires_at: None,
            key: serde_json::from_value::<WrappedDek>(
                serde_json::json!({"kek": "local:t:v1", "blob": ""}),
            )
            .expect("a wrapped key parses"),
            generations: Default::default(),
            screening: Some(ScreeningReport {
                plugins: vec![PluginRecord {
                    labels: vec![(DETECTED_TYPE.into(), kind.into())],
                    ..PluginRecord::default()
                }],
                ..ScreeningReport::default()
            }),
            manifest: None,
        }
    }

    #[test]
    fn sizes_types_and_rates_per_tenant() {
        let book = TenantBook::default();
        book.observe(&object("acme", 100, "pdf", 1_000));
        book.observe(&object("acme", 300, "pdf", 4_500));
        book.observe(&object("acme", 200, "png", 4_990));
        book.observe(&object("other", 9, "elf", 4_990));
        let stats = book.stats_at("acme", 5_000);
        assert_eq!(stats.uploads, 3);
        assert!((stats.mean_size - 200.0).abs() < 1e-9);
        assert!((stats.stddev_size - (20_000.0f64 / 3.0).sqrt()).abs() < 1e-6);
        assert_eq!(
            stats.types_seen,
            vec![("pdf".to_string(), 2), ("png".to_string(), 1)]
        );
        assert_eq!(stats.uploads_last_minute, 1);
        assert_eq!(stats.uploads_last_hour, 2);
        assert_eq!(book.stats_at("nobody", 5_000), TenantStats::default());
    }
}
