//! The JSON shapes of the admin API (README "Admin API"): uploads, objects,
//! quarantine entries and usage. Filenames are decoded from their tus
//! metadata for display; nothing here reads file contents.

use base64::Engine;

use crate::ingest::TenantHoldings;
use crate::staging::{Disposition, UploadKind, UploadRecord, UploadState};

pub fn upload(record: &UploadRecord) -> serde_json::Value {
    let kind = match record.kind {
        UploadKind::Regular => "regular",
        UploadKind::Partial => "partial",
        UploadKind::Final { .. } => "final",
    };
    serde_json::json!({
        "id": record.id.to_string(),
        "tenant": record.tenant,
        "offset": record.offset,
        "length": record.length,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "expires_at": record.expires_at,
        "kind": kind,
        "filename": metadata_text(record, &["filename", "name"]),
        "filetype": metadata_text(record, &["filetype", "type"]),
    })
}

pub fn object(record: &UploadRecord) -> serde_json::Value {
    let commit = match &record.state {
        UploadState::Committed(commit) => Some(commit),
        _ => None,
    };
    serde_json::json!({
        "id": record.id.to_string(),
        "tenant": record.tenant,
        "size": record.offset,
        "sha256": commit.map(|c| c.sha256.as_str()),
        "committed_at": commit.map(|c| c.committed_at),
        "disposition": record.disposition().map(disposition_word),
        "filename": metadata_text(record, &["filename", "name"]),
        "filetype": metadata_text(record, &["filetype", "type"]),
        "screening": record.screening,
    })
}

/// A quarantined object: the object's fields plus its raw tus metadata.
pub fn quarantined(record: &UploadRecord) -> serde_json::Value {
    let mut view = object(record);
    view["metadata"] = serde_json::json!(record.metadata);
    view
}

pub fn usage(held: &TenantHoldings) -> serde_json::Value {
    serde_json::json!({
        "uploads": held.uploads,
        "staged_bytes": held.staged_bytes,
        "objects": held.objects(),
        "quarantined": held.quarantined,
        "committed_bytes": held.stored_bytes,
        "key_versions": held.key_versions,
    })
}

fn disposition_word(disposition: Disposition) -> &'static str {
    match disposition {
        Disposition::Released => "released",
        Disposition::Quarantined => "quarantined",
        Disposition::Pending => "pending",
    }
}

/// The first of `keys` whose metadata value is base64 of UTF-8 text.
fn metadata_text(record: &UploadRecord, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|key| {
        let encoded = record.metadata_value(key)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        String::from_utf8(bytes).ok()
    })
}
