//! The upload record: what the index stores about one upload or object.

use serde::{Deserialize, Serialize};

use crate::crypto::WrappedDek;
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
}

impl UploadRecord {
    pub fn is_committed(&self) -> bool {
        matches!(self.state, UploadState::Committed(_))
    }

    pub fn metadata_value(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }
}
