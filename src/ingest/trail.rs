//! The audit trail as ingest writes it: the state changes no request
//! records by itself (a commit with each plugin's verdict, a quarantine, a
//! rejection, an expiry, a key rotation) and the signed manifest of every
//! settled object. Records carry the request id and actor of the request
//! that caused them (the audit scope), or the actor `system`.
//!
//! Owns the order that makes "refuse" honest: a settled object's records
//! are durable and its manifest signed before its record is stored, so an
//! object is never released (or quarantined) without them; if they cannot
//! be written it stays pending and is settled again later. Never sees HTTP
//! types and never writes a filename, only its keyed form.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::audit::{self, Event, EventKind, Outcome, Trail, identifier, reason_code};
use crate::crypto::seg1;
use crate::id::UploadId;
use crate::staging::{CommitInfo, Disposition, ScreeningReport, UploadRecord, UploadState};
use crate::store::manifest::{self, Manifest, ManifestKey, SignedManifest};

use super::{Error, Ingest, Rejection, RotationReport, blocking, now_secs};

/// The audit trail and the manifest key, once the appliance wires them in.
pub(super) struct Recorder {
    trail: Arc<Trail>,
    manifests: Arc<ManifestKey>,
}

impl Ingest {
    /// Wires in the audit trail and the manifest key. Set once, before
    /// `recover`. From then on every commit is held pending until its
    /// records are durable and its manifest is signed.
    pub fn set_audit(&self, trail: Arc<Trail>, manifests: Arc<ManifestKey>) {
        let _ = self.recorder.set(Recorder { trail, manifests });
    }

    /// Whether commits are recorded (and so settle through `seal`).
    pub(super) fn records_commits(&self) -> bool {
        self.recorder.get().is_some()
    }

    /// Records a settled object's verdicts and commit (and its quarantine),
    /// then signs its manifest into `record`. The caller stores the record
    /// afterwards. Under `audit.on_failure = "refuse"` a record that cannot
    /// be made durable is an error, and the object stays pending.
    pub(super) async fn seal(&self, record: &mut UploadRecord) -> Result<(), Error> {
        let Some(recorder) = self.recorder.get() else {
            return Ok(());
        };
        let UploadState::Committed(commit) = &record.state else {
            return Ok(());
        };
        let name = keyed_name(&recorder.trail, record);
        let mut events = verdict_events(record);
        let commit_at = events.len() as u64;
        events.push(commit_event(record, commit, name));
        if commit.disposition == Disposition::Quarantined {
            events.push(quarantine_event(record));
        }
        let indexes = recorder.trail.record_all(events).await?;
        let audit_index = indexes.map(|indexes| indexes.start + commit_at);
        let facts = manifest_of(record, commit, audit_index);
        let key = Arc::clone(&recorder.manifests);
        let signed = blocking(move || Ok(key.sign(facts))).await?;
        record.manifest = Some(signed.to_value());
        Ok(())
    }

    /// Records the release of a quarantined object (already marked
    /// released in `record`) and signs its manifest again: disposition
    /// released, the audit index still that of its commit record.
    pub(super) async fn record_release(&self, record: &mut UploadRecord) -> Result<(), Error> {
        let Some(recorder) = self.recorder.get() else {
            return Ok(());
        };
        let UploadState::Committed(commit) = &record.state else {
            return Ok(());
        };
        let release = about(
            event(EventKind::Release, Outcome::Ok),
            record.id,
            Some(record),
        );
        recorder.trail.record(release).await?;
        let audit_index = record.manifest.as_ref().and_then(manifest_audit_index);
        let facts = manifest_of(record, commit, audit_index);
        let key = Arc::clone(&recorder.manifests);
        let signed = blocking(move || Ok(key.sign(facts))).await?;
        record.manifest = Some(signed.to_value());
        Ok(())
    }

    /// Records an upload destroyed by its inspection: each plugin's verdict,
    /// then the rejection. `record` is the upload as it was, if it was found.
    pub(super) async fn record_rejection(
        &self,
        id: UploadId,
        record: Option<&UploadRecord>,
        rejection: &Rejection,
    ) -> Result<(), Error> {
        let Some(recorder) = self.recorder.get() else {
            return Ok(());
        };
        let mut events: Vec<Event> = plugin_verdicts(&rejection.report)
            .map(|event| about(event, id, record))
            .collect();
        let mut reject = about(event(EventKind::Reject, Outcome::Denied), id, record);
        reject.subject = identifier(&rejection.plugin);
        reject.reason = reason_code(&rejection.code);
        events.push(reject);
        recorder.trail.record_all(events).await?;
        Ok(())
    }

    /// Records the removal of an expired upload, before it is removed.
    pub(super) async fn record_expiry(&self, record: &UploadRecord) -> Result<(), Error> {
        let Some(recorder) = self.recorder.get() else {
            return Ok(());
        };
        let mut event = about(
            event(EventKind::Delete, Outcome::Ok),
            record.id,
            Some(record),
        );
        event.name = keyed_name(&recorder.trail, record);
        event.reason = Some("expired".into());
        recorder.trail.record(event).await?;
        Ok(())
    }

    /// Records a key rotation: one record per tenant naming the key that is
    /// current afterwards.
    pub(crate) async fn record_key_rotation(&self, report: &RotationReport) -> Result<(), Error> {
        let Some(recorder) = self.recorder.get() else {
            return Ok(());
        };
        let events = report
            .tenants
            .iter()
            .map(|rotation| {
                let mut event = event(EventKind::KeyRotation, Outcome::Ok);
                event.tenant = identifier(&rotation.tenant);
                event.subject = identifier(rotation.current.as_str());
                event.reason = Some(
                    if rotation.resumed {
                        "resumed"
                    } else {
                        "rotated"
                    }
                    .into(),
                );
                event
            })
            .collect();
        recorder.trail.record_all(events).await?;
        Ok(())
    }
}

/// Tells the request being served what ingest reported on: the upload, its
/// size and offset, and the index of its commit record once it has one.
pub(super) fn note_reported(record: &UploadRecord) {
    // Every later log line of the request names the upload (the request
    // span declares the field; elsewhere this does nothing).
    tracing::Span::current().record("upload", tracing::field::display(record.id));
    let commit_index = record.manifest.as_ref().and_then(manifest_audit_index);
    audit::scope::note(|notes| {
        notes.upload = Some(record.id);
        notes.size = record.length;
        notes.offset = Some(record.offset);
        notes.tenant = identifier(&record.tenant);
        if commit_index.is_some() {
            notes.commit_index = commit_index;
        }
    });
}

/// The commit record's index in a stored manifest.
fn manifest_audit_index(document: &serde_json::Value) -> Option<u64> {
    document["manifest"]["audit_index"].as_u64()
}

/// The stored manifest document of a committed object, or why there is none.
pub(super) fn manifest_document(record: &UploadRecord) -> Result<serde_json::Value, Error> {
    let UploadState::Committed(commit) = &record.state else {
        return Err(Error::NotDownloadable(record.id));
    };
    match (&record.manifest, commit.disposition) {
        (Some(document), _) => {
            // Only what parses as a manifest is served.
            SignedManifest::from_value(document.clone())
                .map(|signed| signed.to_value())
                .map_err(|err| Error::Task(format!("upload {}: stored manifest: {err}", record.id)))
        }
        (None, Disposition::Pending) => Err(Error::VerdictPending(record.id)),
        (None, _) => Err(Error::NoManifest(record.id)),
    }
}

/// A new event, labelled with the request being served or as `system`.
fn event(kind: EventKind, outcome: Outcome) -> Event {
    let event = Event::new(kind, outcome);
    match audit::scope::current() {
        Some((request_id, actor)) => {
            let event = event.request_id(request_id);
            match actor {
                Some(actor) => event.actor(actor),
                None => event,
            }
        }
        None => event.actor(audit::scope::SYSTEM),
    }
}

/// `event` about upload `id`, with what its record says.
fn about(mut event: Event, id: UploadId, record: Option<&UploadRecord>) -> Event {
    event.upload = Some(id);
    if let Some(record) = record {
        event.tenant = identifier(&record.tenant);
        event.size = record.length;
        event.offset = Some(record.offset);
    }
    event
}

fn keyed_name(trail: &Trail, record: &UploadRecord) -> Option<audit::KeyedName> {
    use base64::Engine;
    let encoded = record.metadata_value("filename")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    Some(trail.keyed_bytes(&bytes))
}

/// One record per plugin verdict of a settled object.
fn verdict_events(record: &UploadRecord) -> Vec<Event> {
    let Some(report) = &record.screening else {
        return Vec::new();
    };
    plugin_verdicts(report)
        .map(|event| about(event, record.id, Some(record)))
        .collect()
}

fn plugin_verdicts(report: &ScreeningReport) -> impl Iterator<Item = Event> + '_ {
    report.plugins.iter().map(|plugin| {
        let outcome = match plugin.verdict.as_str() {
            "reject" | "quarantine" => Outcome::Denied,
            "failed" => Outcome::Failed,
            _ => Outcome::Ok,
        };
        let mut event = event(EventKind::Verdict, outcome);
        event.subject = identifier(&plugin.plugin);
        event.reason = reason_code(&plugin.verdict);
        event
    })
}

fn commit_event(
    record: &UploadRecord,
    commit: &CommitInfo,
    name: Option<audit::KeyedName>,
) -> Event {
    let mut event = about(
        event(EventKind::Commit, Outcome::Ok),
        record.id,
        Some(record),
    );
    event.size = Some(record.offset);
    event.sha256 = hex::decode(&commit.sha256)
        .ok()
        .and_then(|bytes| bytes.try_into().ok());
    event.name = name;
    event.subject = identifier(&record.key.kek.to_string());
    event.reason = Some(disposition_word(commit.disposition).into());
    event
}

fn quarantine_event(record: &UploadRecord) -> Event {
    let mut event = about(
        event(EventKind::Quarantine, Outcome::Ok),
        record.id,
        Some(record),
    );
    // The first plugin that did not accept is why it is held.
    let holder = record
        .screening
        .iter()
        .flat_map(|report| &report.plugins)
        .find(|plugin| plugin.verdict != "accept");
    if let Some(plugin) = holder {
        event.subject = identifier(&plugin.plugin);
        event.reason = reason_code(&plugin.verdict);
    }
    event
}

pub(super) fn disposition_word(disposition: Disposition) -> &'static str {
    match disposition {
        Disposition::Released => "released",
        Disposition::Pending => "pending",
        Disposition::Quarantined => "quarantined",
    }
}

/// The facts a settled object's manifest signs for.
fn manifest_of(record: &UploadRecord, commit: &CommitInfo, audit_index: Option<u64>) -> Manifest {
    Manifest {
        format: manifest::FORMAT.into(),
        object: record.id,
        tenant: record.tenant.clone(),
        size: record.offset,
        sha256: commit.sha256.clone(),
        segments: seg1::segment_count(record.offset),
        key_ids: vec![record.key.kek.to_string()],
        disposition: disposition_word(commit.disposition).into(),
        screening: record.screening.as_ref().map(screening_summary),
        provenance: provenance(record),
        audit_index,
        committed_at: commit.committed_at,
        signed_at: now_secs(),
    }
}

fn screening_summary(report: &ScreeningReport) -> manifest::Screening {
    manifest::Screening {
        decision: report.decision.clone(),
        reasons: report.reasons.clone(),
        plugins: report
            .plugins
            .iter()
            .map(|plugin| manifest::PluginVerdict {
                plugin: plugin.plugin.clone(),
                sha256: plugin.sha256.clone(),
                verdict: plugin.verdict.clone(),
                findings: plugin
                    .findings
                    .iter()
                    .map(|finding| manifest::Finding {
                        rule: finding.rule.clone(),
                        severity: finding.severity.clone(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// The verdict and `provenance*` labels of the plugin that labelled the
/// object's provenance (the shipped provenance plugin), if one did.
fn provenance(record: &UploadRecord) -> Option<manifest::Provenance> {
    let plugin = record
        .screening
        .as_ref()?
        .plugins
        .iter()
        .find(|plugin| plugin.labels.iter().any(|(key, _)| key == "provenance"))?;
    let labels: BTreeMap<String, String> = plugin
        .labels
        .iter()
        .filter(|(key, _)| key.starts_with("provenance"))
        .cloned()
        .collect();
    Some(manifest::Provenance {
        plugin: plugin.plugin.clone(),
        verdict: plugin.verdict.clone(),
        labels,
    })
}
