//! Scrub: re-verifies everything at rest without changing any of it. Every
//! committed object is opened as a download would open it (wrapped key,
//! header and key commitment, every segment's tag, the final segment, the
//! file length) and its plaintext hashed again against the SHA-256 recorded
//! at commit; every staged upload's full segments and tail record are opened
//! the same way.
//!
//! A report names what failed (which check, which segment), never key
//! material or file contents. Scrub runs inside a live appliance
//! ([`Ingest::scrub`]) or on a data dir no server holds
//! ([`Ingest::open_offline`], used by `strongroom scrub`).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::crypto::{self, Aead, KeyProvider, LocalKeyring, ObjectKeys, Sha256, seg1};
use crate::disk::OsDisk;
use crate::id::UploadId;
use crate::staging::{self, Staging, UploadRecord, UploadState};
use crate::store::{self, Layout, PlainReader};

use super::{Error, Ingest, IngestConfig, blocking};

/// What one scrub found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScrubReport {
    /// Committed objects checked.
    pub objects: u64,
    /// Staged (unfinished) uploads checked.
    pub uploads: u64,
    /// Plaintext bytes that opened and verified.
    pub bytes_verified: u64,
    /// One entry per damaged object or upload, in index order.
    pub damaged: Vec<Damage>,
    /// Staged uploads that kept changing under a live request while being
    /// checked; not judged (only possible inside a running appliance).
    pub busy: Vec<UploadId>,
}

impl ScrubReport {
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty()
    }

    /// The ids reported damaged (entries whose record is unreadable have none).
    pub fn damaged_ids(&self) -> Vec<UploadId> {
        self.damaged.iter().filter_map(|d| d.id).collect()
    }
}

/// One damaged object or upload and everything that failed on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// `None` when the index entry itself cannot be decoded.
    pub id: Option<UploadId>,
    /// A committed object (else a staged upload).
    pub committed: bool,
    pub faults: Vec<Fault>,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id {
            Some(id) => write!(f, "{id} ")?,
            None => f.write_str("(unknown id) ")?,
        }
        f.write_str(if self.committed { "object" } else { "upload" })?;
        for (n, fault) in self.faults.iter().enumerate() {
            f.write_str(if n == 0 { ": " } else { "; " })?;
            write!(f, "{fault}")?;
        }
        Ok(())
    }
}

/// One failed check. Messages carry no key material and no file contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The index entry does not decode.
    Record(String),
    /// The segment file is gone.
    MissingFile,
    /// The segment file cannot be opened or sized.
    Unreadable(String),
    /// The wrapped data key does not unwrap (unknown or damaged KEK, or a
    /// damaged wrapped key).
    Key(String),
    /// The SEG1 header is short, malformed, names another object or commits
    /// to another key.
    Header(String),
    /// The file is not the length the record accounts for (a committed file
    /// must match exactly; a staged one may only be longer).
    FileLength { actual: u64, expected: u64 },
    /// Segments that fail authentication.
    Segments(Vec<u64>),
    /// Segments the file is too short to hold.
    MissingSegments(Vec<u64>),
    /// The tail record of a staged upload.
    Tail(String),
    /// Every segment opened, but the plaintext's SHA-256 differs from the one
    /// recorded at commit (a stale but authentic segment of the same object:
    /// since write generations, only one cut off before they existed, or
    /// lost with its file's new size in a power cut, can be).
    Digest,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Record(why) => write!(f, "index record unreadable ({why})"),
            Fault::MissingFile => f.write_str("segment file missing"),
            Fault::Unreadable(why) => write!(f, "segment file unreadable ({why})"),
            Fault::Key(why) => write!(f, "data key does not unwrap ({why})"),
            Fault::Header(why) => write!(f, "header rejected ({why})"),
            Fault::FileLength { actual, expected } => {
                write!(f, "file is {actual} bytes, expected {expected}")
            }
            Fault::Segments(indexes) => {
                let verb = if indexes.len() == 1 { "fails" } else { "fail" };
                write!(f, "{} {verb} authentication", segment_list(indexes))
            }
            Fault::MissingSegments(indexes) => {
                write!(f, "{} missing (file too short)", segment_list(indexes))
            }
            Fault::Tail(why) => write!(f, "tail record {why}"),
            Fault::Digest => f.write_str("SHA-256 of the plaintext differs from the record"),
        }
    }
}

/// "segment 3" / "segments 1, 4, 7 and 12 more".
fn segment_list(indexes: &[u64]) -> String {
    const SHOWN: usize = 8;
    let noun = if indexes.len() == 1 {
        "segment"
    } else {
        "segments"
    };
    let shown: Vec<String> = indexes.iter().take(SHOWN).map(u64::to_string).collect();
    let mut text = format!("{noun} {}", shown.join(", "));
    if indexes.len() > SHOWN {
        text.push_str(&format!(" and {} more", indexes.len() - SHOWN));
    }
    text
}

/// Why a data dir could not be opened for an offline scrub.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{} is not a strongroom data dir (no index/)", .0.display())]
    NotADataDir(PathBuf),
    #[error(
        "{} has no key files in keys/ (an offline scrub reads key files; keys kept in a \
         PKCS#11 token are not supported here)",
        .0.display()
    )]
    NoKeyFiles(PathBuf),
    #[error(
        "the index in {} is locked: a strongroom server is running on this data dir; \
         stop it first (scrub opens the store directly)",
        .0.display()
    )]
    InUse(PathBuf),
    #[error(transparent)]
    Keys(#[from] crypto::Error),
    #[error(transparent)]
    Staging(#[from] staging::Error),
}

/// Attempts per staged upload when a live request changes it mid-check.
const ATTEMPTS: usize = 3;

impl Ingest {
    /// Opens a data dir directly, for a scrub while no server runs: the same
    /// layout the appliance uses (`index/`, `segments/`, `keys/` with the
    /// tenants' key files), without recovery, so nothing on disk is repaired
    /// or removed, and without creating a key.
    pub fn open_offline(data_dir: &Path) -> Result<Arc<Ingest>, OpenError> {
        let keys_dir = data_dir.join("keys");
        if !data_dir.join("index").is_dir() {
            return Err(OpenError::NotADataDir(data_dir.to_owned()));
        }
        if !has_key_file(&keys_dir) {
            return Err(OpenError::NoKeyFiles(data_dir.to_owned()));
        }
        let keyring = LocalKeyring::open(&keys_dir)?;
        Self::open_offline_with(data_dir, Arc::new(keyring))
    }

    /// [`Ingest::open_offline`] with the given key provider (the one the
    /// data dir's config names), for offline key rotation and listing.
    pub fn open_offline_with(
        data_dir: &Path,
        keys: Arc<dyn KeyProvider>,
    ) -> Result<Arc<Ingest>, OpenError> {
        let index_dir = data_dir.join("index");
        if !index_dir.is_dir() {
            return Err(OpenError::NotADataDir(data_dir.to_owned()));
        }
        let staging = Staging::open(data_dir, Arc::new(OsDisk)).map_err(|err| match &err {
            staging::Error::Index(e) if is_lock_conflict(&e.to_string()) => {
                OpenError::InUse(index_dir.clone())
            }
            _ => OpenError::Staging(err),
        })?;
        let config = IngestConfig {
            max_size: u64::MAX,
            expiry: Duration::from_secs(24 * 3600),
            lock_wait: Duration::from_secs(5),
            body_idle_timeout: Duration::from_secs(30),
            checkpoint_every: 0,
            aead: Aead::default(),
            memory_budget: 1 << 20,
        };
        Ok(Ingest::new(config, Arc::new(staging), keys))
    }

    /// Verifies every committed object and every staged upload. Blocking work
    /// runs on blocking threads, one object at a time. Errors only when the
    /// index cannot be read at all; damage is reported, not returned.
    pub async fn scrub(&self) -> Result<ScrubReport, Error> {
        let staging = self.staging.clone();
        let entries = blocking(move || {
            let mut entries = Vec::new();
            for record in staging.records() {
                match record {
                    Ok(record) => entries.push(Ok(record.id)),
                    Err(staging::Error::Corrupt(why)) => entries.push(Err(why)),
                    Err(err) => return Err(err.into()),
                }
            }
            Ok(entries)
        })
        .await?;
        let mut report = ScrubReport::default();
        for entry in entries {
            let id = match entry {
                Ok(id) => id,
                Err(why) => {
                    report.damaged.push(Damage {
                        id: None,
                        committed: false,
                        faults: vec![Fault::Record(why)],
                    });
                    continue;
                }
            };
            let staging = self.staging.clone();
            let keys = self.keys.clone();
            let verdict = blocking(move || Ok(scrub_one(&staging, keys.as_ref(), id))).await?;
            match verdict {
                Verdict::Gone => {}
                Verdict::Busy => report.busy.push(id),
                Verdict::Checked {
                    committed,
                    bytes,
                    faults,
                } => {
                    if committed {
                        report.objects += 1;
                    } else {
                        report.uploads += 1;
                    }
                    report.bytes_verified += bytes;
                    if !faults.is_empty() {
                        report.damaged.push(Damage {
                            id: Some(id),
                            committed,
                            faults,
                        });
                    }
                }
            }
        }
        Ok(report)
    }
}

fn has_key_file(keys_dir: &Path) -> bool {
    std::fs::read_dir(keys_dir).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|name| !name.starts_with('.') && name.ends_with(".kek"))
        })
    })
}

/// The index engine reports a lock held by another process only as an I/O
/// error with this text.
fn is_lock_conflict(message: &str) -> bool {
    message.contains("could not acquire lock")
}

enum Verdict {
    /// Removed (terminated, expired) while the scrub ran.
    Gone,
    Busy,
    Checked {
        committed: bool,
        bytes: u64,
        faults: Vec<Fault>,
    },
}

/// Checks one record against a consistent snapshot: a live request may move
/// a staged upload on between reading its record and its tail, so a finding
/// only counts if the record is unchanged afterwards.
fn scrub_one(staging: &Staging, keys: &dyn KeyProvider, id: UploadId) -> Verdict {
    for _ in 0..ATTEMPTS {
        let record = match staging.get(&id) {
            Ok(Some(record)) => record,
            Ok(None) => return Verdict::Gone,
            Err(err) => return checked(false, 0, vec![Fault::Record(err.to_string())]),
        };
        let tail = if record.is_committed() {
            Ok(None)
        } else {
            staging.tail(&id)
        };
        let (bytes, faults) = match tail {
            Ok(tail) => check_record(staging, keys, &record, tail.as_deref()),
            Err(err) => (0, vec![Fault::Tail(format!("unreadable ({err})"))]),
        };
        if faults.is_empty() || record.is_committed() {
            return checked(record.is_committed(), bytes, faults);
        }
        match staging.get(&id) {
            Ok(Some(now)) if now == record => return checked(false, bytes, faults),
            Ok(None) => return Verdict::Gone,
            _ => {}
        }
    }
    Verdict::Busy
}

fn checked(committed: bool, bytes: u64, faults: Vec<Fault>) -> Verdict {
    Verdict::Checked {
        committed,
        bytes,
        faults,
    }
}

const SEGMENT: u64 = seg1::SEGMENT_SIZE as u64;

/// Verifies one record's bytes; returns the plaintext bytes verified and
/// what failed.
fn check_record(
    staging: &Staging,
    keys: &dyn KeyProvider,
    record: &UploadRecord,
    tail: Option<&[u8]>,
) -> (u64, Vec<Fault>) {
    let id = record.id;
    let mut faults = Vec::new();
    let file = match staging.reader(&id) {
        Ok(file) => file,
        Err(staging::Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return (0, vec![Fault::MissingFile]);
        }
        Err(err) => return (0, vec![Fault::Unreadable(err.to_string())]),
    };
    let size = match file.size() {
        Ok(size) => size,
        Err(err) => return (0, vec![Fault::Unreadable(err.kind().to_string())]),
    };
    let dek = match keys.unwrap(&record.key, *id.as_bytes()) {
        Ok(dek) => dek,
        Err(err) => return (0, vec![Fault::Key(err.to_string())]),
    };
    let mut header = [0u8; seg1::HEADER_LEN];
    if size < seg1::HEADER_LEN as u64 {
        return (
            0,
            vec![Fault::Header("file shorter than the header".into())],
        );
    }
    if let Err(err) = file.read_at(0, &mut header) {
        return (0, vec![Fault::Unreadable(err.kind().to_string())]);
    }
    let keys = match ObjectKeys::open(&dek, *id.as_bytes(), &header) {
        Ok(keys) => Arc::new(keys),
        Err(err) => return (0, vec![Fault::Header(err.to_string())]),
    };

    let (layout, count, expected_len) = match &record.state {
        UploadState::Committed(_) => {
            let length = record.offset;
            (
                Layout::Committed { length },
                seg1::segment_count(length),
                seg1::committed_file_len(length),
            )
        }
        _ => {
            let full = record.offset / SEGMENT;
            (
                Layout::Staged {
                    offset: record.offset,
                    tail: None,
                },
                full,
                seg1::segment_offset(full),
            )
        }
    };
    let committed = record.is_committed();
    if size < expected_len || (committed && size != expected_len) {
        faults.push(Fault::FileLength {
            actual: size,
            expected: expected_len,
        });
    }

    // Segments: every tag, in order; the digest only while all verify.
    let reader = PlainReader::new(file, keys.clone(), layout, record.generations.clone());
    let mut sha = Some(Sha256::new());
    let (mut bytes, mut failed, mut missing) = (0u64, Vec::new(), Vec::new());
    for index in 0..count {
        match reader.segment(index) {
            Ok(plain) => {
                bytes += plain.len() as u64;
                if let Some(sha) = &mut sha {
                    sha.update(&plain);
                }
            }
            Err(err) => {
                sha = None;
                match err {
                    store::Error::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        missing.push(index);
                    }
                    store::Error::Io(e) => {
                        faults.push(Fault::Unreadable(format!("segment {index}: {}", e.kind())));
                    }
                    store::Error::Crypto(_) => failed.push(index),
                }
            }
        }
    }
    if !failed.is_empty() {
        faults.push(Fault::Segments(failed));
    }
    if !missing.is_empty() {
        faults.push(Fault::MissingSegments(missing));
    }

    match &record.state {
        UploadState::Committed(commit) => {
            if let Some(sha) = sha
                && hex::encode(sha.finish()) != commit.sha256
            {
                faults.push(Fault::Digest);
            }
        }
        _ => {
            let expected = (record.offset % SEGMENT) as usize;
            let index = record.offset / SEGMENT;
            let tail_generation = record.generations.tail();
            match (tail, expected) {
                (None, 0) => {}
                (None, _) => faults.push(Fault::Tail(format!(
                    "missing (the record counts {expected} bytes past segment {index})"
                ))),
                (Some(_), 0) => faults.push(Fault::Tail(
                    "present although the record counts only whole segments".into(),
                )),
                (Some(sealed), _) => match keys.open_tail(index, tail_generation, sealed) {
                    Ok(plain) if plain.len() == expected => bytes += plain.len() as u64,
                    Ok(plain) => faults.push(Fault::Tail(format!(
                        "holds {} bytes, the record counts {expected}",
                        plain.len()
                    ))),
                    Err(_) => faults.push(Fault::Tail("fails authentication".into())),
                },
            }
        }
    }
    (bytes, faults)
}
