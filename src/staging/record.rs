//! The upload record: what the index stores about one upload or object.

use serde::{Deserialize, Serialize};

use crate::crypto::{Generations, WrappedDek};
use crate::id::UploadId;

/// One upload from creation to commit. Stored as JSON in the index so an
/// operator can read it with standard tools when something goes wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub id: UploadId,
    pub tenant: String,
    /// `None` while the length is deferred (creation-defer-length).
    pub length: Option<u64>,
    /// Bytes `[0, offset)` are durable: full segments in the segment file and
    /// the rest in the sealed tail record.
    pub offset: u64,
    /// tus metadata, values kept base64-encoded exactly as received.
    pub metadata: Vec<(String, Option<String>)>,
    pub kind: UploadKind,
    pub state: UploadState,
    pub created_at: u64,
    pub updated_at: u64,
    /// Unix seconds after which an unfinished upload may be swept.
    pub expires_at: Option<u64>,
    pub key: WrappedDek,
    /// The SEG1 write generation each segment and the tail record were
    /// sealed under (`crypto::seg1::Generations`): a new one starts wherever
    /// sealed segments are cut off (a discarded chunk, or bytes a crash left
    /// unacknowledged). Left out while it is generation 0 everywhere, as on
    /// every record written before generations existed.
    #[serde(default, skip_serializing_if = "Generations::is_initial")]
    pub generations: Generations,
    /// What the plugin chain found and decided, once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screening: Option<ScreeningReport>,
    /// The signed manifest of a settled object (`store::manifest`), as the
    /// document that is served. Absent until the verdict is settled, and on
    /// objects committed before manifests existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum UploadKind {
    Regular,
    /// A part of a concatenation; never becomes an object by itself.
    Partial,
    /// Assembled from `parts` in order once they are all complete.
    Final {
        parts: Vec<UploadId>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum UploadState {
    Receiving,
    /// A partial upload that has all its bytes; they stay staged until the
    /// final upload that names it has been assembled or it expires.
    PartComplete,
    Committed(CommitInfo),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitInfo {
    /// SHA-256 of the plaintext, hex.
    pub sha256: String,
    pub committed_at: u64,
    /// Whether the sealed object may be read. Records written before
    /// screening existed have none, and were released at commit.
    #[serde(default)]
    pub disposition: Disposition,
}

/// What may be done with a committed object's bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// Downloadable.
    #[default]
    Released,
    /// Every byte is sealed and durable, but the plugin chain has not given
    /// its verdict yet (or a crash came first): not downloadable. Recovery
    /// replays the object through the chain and settles it.
    Pending,
    /// Kept for an admin to release or delete; not downloadable.
    Quarantined,
}

/// The plugin chain's account of one upload, kept with its record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScreeningReport {
    /// `accept`, `reject` or `quarantine`.
    pub decision: String,
    /// Why, when not accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    pub plugins: Vec<PluginRecord>,
    pub decided_at: u64,
}

/// One plugin's verdict and findings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PluginRecord {
    pub plugin: String,
    /// SHA-256 of the component that ran, hex.
    pub sha256: String,
    /// `accept`, `reject`, `quarantine`, `failed` or `disabled`.
    pub verdict: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<FindingRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingRecord {
    pub rule: String,
    /// `info`, `low`, `medium`, `high` or `critical`.
    pub severity: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    pub detail: String,
}

impl UploadRecord {
    /// Every byte is sealed into the object (whatever its disposition).
    pub fn is_committed(&self) -> bool {
        matches!(self.state, UploadState::Committed(_))
    }

    /// The committed object's disposition; `None` while receiving.
    pub fn disposition(&self) -> Option<Disposition> {
        match &self.state {
            UploadState::Committed(info) => Some(info.disposition),
            _ => None,
        }
    }

    /// The first value of a label a plugin set (e.g. `detected-type`).
    pub fn label(&self, key: &str) -> Option<&str> {
        self.screening.as_ref()?.plugins.iter().find_map(|plugin| {
            plugin
                .labels
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        })
    }

    pub fn metadata_value(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as stored before write generations existed.
    fn stored() -> serde_json::Value {
        serde_json::json!({
            "id": UploadId::from_bytes([3; 16]).to_string(),
            "tenant": "default",
            "length": 10,
            "offset": 4,
            "metadata": [],
            "kind": {"type": "regular"},
            "state": {"state": "receiving"},
            "created_at": 1,
            "updated_at": 2,
            "expires_at": null,
            "key": {"kek": "local:default:v1", "blob": ""},
        })
    }

    #[test]
    fn records_without_generations_load_as_generation_zero_and_store_unchanged() {
        let record: UploadRecord = serde_json::from_value(stored()).unwrap();
        assert!(record.generations.is_initial());
        assert_eq!(serde_json::to_value(&record).unwrap(), stored());
    }

    #[test]
    fn generations_round_trip_and_bad_ones_are_refused() {
        let mut record: UploadRecord = serde_json::from_value(stored()).unwrap();
        record.generations.cut(0);
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(
            json["generations"],
            serde_json::json!({"starts": [[0, 1]], "tail": 0})
        );
        assert_eq!(
            serde_json::from_value::<UploadRecord>(json).unwrap(),
            record
        );
        let mut bad = stored();
        bad["generations"] = serde_json::json!({"starts": [[4, 2], [1, 3]]});
        assert!(serde_json::from_value::<UploadRecord>(bad).is_err());
    }
}
