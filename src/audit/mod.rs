//! Tamper-evident audit trail. Owns `<data_dir>/audit/`: an append-only file
//! of records, the RFC 6962 Merkle tree over them, and Ed25519-signed
//! checkpoints of that tree in the C2SP tlog-checkpoint format, verifiable
//! offline by `strongroom audit verify`; also the failure policy around
//! appends (`trail`) and the request scope callers note facts in (`scope`).
//! Never sees HTTP types, never holds a raw filename, token or key in a
//! record, and never rewrites a record.
//!
//! # Files
//!
//! | file          | what                                                  | mode |
//! |---------------|-------------------------------------------------------|------|
//! | `records`     | one canonical JSON record per line (see `event`)      | 0600 |
//! | `checkpoints` | signed notes, each followed by a blank line (`note`)  | 0644 |
//! | `audit.key`   | the Ed25519 signing key: its seed as 64 hex digits    | 0600 |
//! | `audit.pub`   | the verifier key, `<origin>+<key hash>+<base64 key>`  | 0644 |
//! | `names.key`   | the HMAC-SHA256 key for keyed filenames               | 0600 |
//!
//! Record `i` is leaf `i` of the tree; its leaf hash is SHA-256(0x00 ||
//! line without its newline). A checkpoint of size `n` signs the head of
//! the first `n` records, and is written only after those records are on
//! disk, so a checkpoint never covers a record that a crash can take away.
//!
//! # Durability and group commit
//!
//! [`Audit::append`] returns once its record is written and fdatasync'd.
//! Appends that arrive while a sync is in flight queue up, and the next
//! caller to find the file idle writes the whole queue with one write and
//! one sync (group commit), so concurrent appenders share fsyncs instead of
//! waiting for one each. The queue is bounded by the number of blocked
//! callers. If a write or sync fails the log refuses every later append:
//! after a failed fsync the page cache can no longer be trusted, and
//! reopening (which recovers from what is really on disk) is the only safe
//! way on.
//!
//! # Recovery
//!
//! [`Audit::open`] reads every record back, checks each one's form, index
//! and chain, rebuilds the tree and checks it against every checkpoint's
//! root (and the latest checkpoint's signature). A record or checkpoint cut
//! short at the end of its file is what a crash mid-append leaves: it is
//! cut off. Anything else wrong is an error naming the record index or
//! checkpoint number, and the log does not open.
//!
//! # Costs
//!
//! The tree is kept in memory (about 64 bytes per record) and rebuilt at
//! open by reading every record, so both grow with the log; a log of tens of
//! millions of records would want the tree stored in tiles (C2SP
//! tlog-tiles) instead.

mod event;
mod merkle;
mod note;
mod offline;
mod records;
pub mod scope;
mod trail;

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufReader, Write};
use std::ops::Range;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::crypto::ed25519::{MacKey, SigningKey};

pub use event::{
    Event, EventKind, InvalidField, KeyedName, MAX_REASON_LEN, MAX_RECORD_LEN, MAX_TEXT_LEN,
    Outcome, RECORD_VERSION, Record, identifier, reason_code,
};
pub use merkle::{Hash, empty_root, leaf_hash, node_hash, verify_consistency, verify_inclusion};
pub use note::{BadVerifierKey, Checkpoint, NoteError, VerifierKey};
pub use offline::{Exported, Tampered, Verified, export, verify};
pub use scope::{Notes, RequestScope};
pub use trail::{OnFailure, Trail};

use merkle::Tree;
use note::{Entry, EntryReader};
use records::{FaultKind, RecordReader, Step};

/// The audit directory's name inside the data dir.
pub const DIR_NAME: &str = "audit";
pub const RECORDS_FILE: &str = "records";
pub const CHECKPOINTS_FILE: &str = "checkpoints";
pub const SIGNING_KEY_FILE: &str = "audit.key";
pub const PUBLIC_KEY_FILE: &str = "audit.pub";
pub const NAMES_KEY_FILE: &str = "names.key";

/// How often [`run_checkpoints`] signs the tree while records arrive: no
/// record waits longer than this for a checkpoint to cover it, and an idle
/// log writes none.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// The longest origin (and key) name.
const MAX_ORIGIN_LEN: usize = 255;

/// The audit directory of a data dir.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join(DIR_NAME)
}

/// Everything that can go wrong with the audit log. Messages name the file
/// and the record index or checkpoint number.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "audit origin {0:?} must be 1 to 255 visible ASCII characters other than '+' \
         (e.g. storage.example.com/audit)"
    )]
    InvalidOrigin(String),

    #[error("audit event field {}: {}", .0.field, .0.reason)]
    InvalidEvent(InvalidField),

    #[error("audit log {}: another process has it open", path.display())]
    Locked { path: PathBuf },

    #[error("audit log {}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        /// The first record index that cannot be trusted.
        index: u64,
        reason: String,
    },

    #[error("audit checkpoints {}: checkpoint {number}: {reason}", path.display())]
    CorruptCheckpoint {
        path: PathBuf,
        /// Counted from 0 in file order.
        number: u64,
        reason: String,
    },

    #[error("audit key {}: {reason}", path.display())]
    Key { path: PathBuf, reason: String },

    #[error(transparent)]
    Crypto(#[from] crate::crypto::Error),

    #[error(
        "audit log stopped at record {index}: a write or sync failed ({reason}); \
         it accepts no record until it is reopened"
    )]
    Stopped { index: u64, reason: String },

    #[error("audit checkpoints stopped: a write failed and could not be undone ({reason})")]
    CheckpointsStopped { reason: String },

    #[error("{what} is outside the log's {size} durable records")]
    OutOfRange { what: String, size: u64 },

    #[error("audit append did not run: the runtime is shutting down")]
    Cancelled,

    #[error("i/o error on {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Counters for metrics and the throughput figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Durable records.
    pub records: u64,
    /// Write-and-sync batches since open: `records / syncs` appends share
    /// each fsync.
    pub syncs: u64,
    /// Checkpoints written since open.
    pub checkpoints: u64,
    /// How long durable records no checkpoint signs yet have waited at
    /// most: the time since the latest checkpoint while such records exist,
    /// zero when none do.
    pub unsigned_for: Duration,
}

/// An open audit log. Share it in an `Arc`; every method is safe to call
/// from many threads. The blocking methods do file I/O: call them from
/// blocking threads (or use [`Audit::append_async`]).
pub struct Audit {
    dir: PathBuf,
    key: VerifierKey,
    signer: SigningKey,
    names: MacKey,
    /// The records file, opened for append and locked against other
    /// processes. Only the caller holding `Log::flushing` writes to it.
    records: File,
    log: Mutex<Log>,
    /// Signalled after each batch is written (or fails).
    flushed: Condvar,
    checkpoints: Mutex<Checkpoints>,
    /// Where fsync latencies go, once the appliance wires metrics in.
    metrics: std::sync::OnceLock<Arc<crate::metrics::Metrics>>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("dir", &self.dir)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

struct Log {
    /// The index the next append gets.
    next: u64,
    /// Leaf hash of the last record queued, the next one's `prev`.
    last_leaf: Option<Hash>,
    /// Encoded records waiting for the next batch, newlines included.
    pending: Vec<u8>,
    pending_leaves: Vec<Hash>,
    /// Someone is writing a batch with the lock released.
    flushing: bool,
    /// The durable records' tree; its size is the number of durable records.
    tree: Tree,
    /// Set when a batch failed: its first index and why.
    stopped: Option<(u64, String)>,
    syncs: u64,
}

struct Checkpoints {
    file: File,
    /// The file's length: where the next entry goes, and where a failed
    /// write is cut back to.
    len: u64,
    latest: Option<Checkpoint>,
    written: u64,
    stopped: Option<String>,
    /// When the latest checkpoint was signed (or the log opened).
    signed_at: std::time::Instant,
}

impl Audit {
    /// Opens the audit log in `dir` (normally `<data_dir>/audit`) for the
    /// log named `origin`, creating the directory, keys and files on first
    /// use, and recovering from a crash (see the module docs). Blocking.
    ///
    /// `origin` names the log in its checkpoints and its key; it must stay
    /// the same for the life of the log.
    pub fn open(dir: &Path, origin: &str) -> Result<Audit, Error> {
        if !is_origin(origin) {
            return Err(Error::InvalidOrigin(origin.to_owned()));
        }
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_error(dir))?;

        let records_path = dir.join(RECORDS_FILE);
        let records = open_append(&records_path, 0o600)?;
        records.try_lock().map_err(|err| match err {
            fs::TryLockError::WouldBlock => Error::Locked {
                path: records_path.clone(),
            },
            fs::TryLockError::Error(source) => io_error(&records_path)(source),
        })?;
        let checkpoints_path = dir.join(CHECKPOINTS_FILE);
        let checkpoints = open_append(&checkpoints_path, 0o644)?;
        sync_dir(dir)?;

        let has_history = file_len(&records, &records_path)? > 0
            || file_len(&checkpoints, &checkpoints_path)? > 0;
        let signer = load_or_create(
            dir,
            SIGNING_KEY_FILE,
            has_history,
            SigningKey::load,
            SigningKey::create,
        )?;
        let names = load_or_create(
            dir,
            NAMES_KEY_FILE,
            has_history,
            MacKey::load,
            MacKey::create,
        )?;
        let key = VerifierKey::new(origin, signer.public_key())
            .map_err(|_| Error::InvalidOrigin(origin.to_owned()))?;
        publish_key(dir, &key)?;

        let (tree, last_leaf) = recover_records(&records_path, &records)?;
        let (latest, len) = recover_checkpoints(&checkpoints_path, &checkpoints, &tree, &key)?;

        Ok(Audit {
            dir: dir.to_path_buf(),
            key,
            signer,
            names,
            records,
            log: Mutex::new(Log {
                next: tree.size(),
                last_leaf,
                pending: Vec::new(),
                pending_leaves: Vec::new(),
                flushing: false,
                tree,
                stopped: None,
                syncs: 0,
            }),
            flushed: Condvar::new(),
            checkpoints: Mutex::new(Checkpoints {
                file: checkpoints,
                len,
                latest,
                written: 0,
                stopped: None,
                signed_at: std::time::Instant::now(),
            }),
            metrics: std::sync::OnceLock::new(),
        })
    }

    /// Appends `event` and returns its index once it is durable. Blocking;
    /// concurrent calls share fsyncs (group commit).
    pub fn append(&self, event: Event) -> Result<u64, Error> {
        self.append_all(std::slice::from_ref(&event))
            .map(|indexes| indexes.start)
    }

    /// Appends `events` as consecutive records, in order, and returns their
    /// indexes once all of them are durable: one write and one sync for the
    /// lot (shared with concurrent appends), so a commit and its verdicts
    /// cost one fsync. Blocking. Nothing is queued unless every event is
    /// valid.
    pub fn append_all(&self, events: &[Event]) -> Result<Range<u64>, Error> {
        for event in events {
            event.validate().map_err(Error::InvalidEvent)?;
        }
        let mut log = self.lock_log();
        if let Some((index, reason)) = &log.stopped {
            return Err(stopped(*index, reason));
        }
        let first = log.next;
        let millis = event::now_millis();
        for event in events {
            let line = event::encode(log.next, log.last_leaf.as_ref(), millis, event);
            let leaf = leaf_hash(&line);
            log.pending.extend_from_slice(&line);
            log.pending.push(b'\n');
            log.pending_leaves.push(leaf);
            log.last_leaf = Some(leaf);
            log.next += 1;
        }
        let indexes = first..log.next;

        loop {
            if indexes.end <= log.tree.size() {
                return Ok(indexes);
            }
            if let Some((first, reason)) = &log.stopped {
                return Err(stopped(*first, reason));
            }
            if log.flushing {
                log = self.flushed.wait(log).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            // Nobody is writing: write everything queued, ours included.
            log.flushing = true;
            let batch = std::mem::take(&mut log.pending);
            let leaves = std::mem::take(&mut log.pending_leaves);
            let first = log.tree.size();
            drop(log);
            let written = (&self.records)
                .write_all(&batch)
                .and_then(|()| self.sync_records());
            log = self.lock_log();
            log.flushing = false;
            match written {
                Ok(()) => {
                    for leaf in leaves {
                        log.tree.push(leaf);
                    }
                    log.syncs += 1;
                }
                Err(err) => {
                    tracing::error!(
                        path = %self.dir.join(RECORDS_FILE).display(),
                        first,
                        error = %err,
                        "audit log write failed; refusing further records"
                    );
                    log.stopped = Some((first, err.to_string()));
                }
            }
            self.flushed.notify_all();
        }
    }

    /// [`Audit::append`] on a blocking thread.
    pub async fn append_async(self: &Arc<Self>, event: Event) -> Result<u64, Error> {
        self.append_all_async(vec![event])
            .await
            .map(|indexes| indexes.start)
    }

    /// [`Audit::append_all`] on a blocking thread.
    pub async fn append_all_async(
        self: &Arc<Self>,
        events: Vec<Event>,
    ) -> Result<Range<u64>, Error> {
        let audit = Arc::clone(self);
        match tokio::task::spawn_blocking(move || audit.append_all(&events)).await {
            Ok(result) => result,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(_) => Err(Error::Cancelled),
        }
    }

    /// Signs the current tree head and appends it to the checkpoints file,
    /// unless the latest checkpoint already covers every durable record;
    /// returns the latest checkpoint either way. Covers every append that
    /// returned before the call. Blocking (one fdatasync when it writes).
    pub fn checkpoint(&self) -> Result<Checkpoint, Error> {
        let mut checkpoints = self.checkpoints.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(reason) = &checkpoints.stopped {
            return Err(Error::CheckpointsStopped {
                reason: reason.clone(),
            });
        }
        let (size, root) = self.tree_head();
        if let Some(latest) = &checkpoints.latest
            && latest.size() == size
        {
            return Ok(latest.clone());
        }
        let checkpoint = Checkpoint::sign(&self.signer, &self.key, size, root);
        let entry = format!("{}\n", checkpoint.note());
        let path = self.dir.join(CHECKPOINTS_FILE);
        let written = (&checkpoints.file)
            .write_all(entry.as_bytes())
            .and_then(|()| checkpoints.file.sync_data());
        if let Err(err) = written {
            // Cut back a partial entry so later ones still parse.
            let len = checkpoints.len;
            let undone = checkpoints
                .file
                .set_len(len)
                .and_then(|()| checkpoints.file.sync_data());
            if let Err(undo) = undone {
                checkpoints.stopped = Some(format!("{err}; then {undo}"));
            }
            return Err(io_error(&path)(err));
        }
        checkpoints.len += entry.len() as u64;
        checkpoints.written += 1;
        checkpoints.signed_at = std::time::Instant::now();
        checkpoints.latest = Some(checkpoint.clone());
        Ok(checkpoint)
    }

    /// The latest checkpoint written, if any.
    pub fn latest_checkpoint(&self) -> Option<Checkpoint> {
        let checkpoints = self.checkpoints.lock().unwrap_or_else(|e| e.into_inner());
        checkpoints.latest.clone()
    }

    /// The number of durable records and the head of their tree.
    pub fn tree_head(&self) -> (u64, Hash) {
        let log = self.lock_log();
        let size = log.tree.size();
        (size, log.tree.root(size))
    }

    /// The leaf hash of durable record `index`.
    pub fn leaf_hash(&self, index: u64) -> Result<Hash, Error> {
        let log = self.lock_log();
        log.tree.leaf(index).ok_or_else(|| Error::OutOfRange {
            what: format!("record {index}"),
            size: log.tree.size(),
        })
    }

    /// The proof that record `index` is in the tree of the first `size`
    /// records (check it with [`verify_inclusion`] against a checkpoint of
    /// that size).
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, Error> {
        let log = self.lock_log();
        log.tree
            .inclusion_proof(index, size)
            .ok_or_else(|| Error::OutOfRange {
                what: format!("record {index} in a tree of {size}"),
                size: log.tree.size(),
            })
    }

    /// The proof that the tree of the first `old` records is a prefix of the
    /// tree of the first `new` (check it with [`verify_consistency`]).
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, Error> {
        let log = self.lock_log();
        log.tree
            .consistency_proof(old, new)
            .ok_or_else(|| Error::OutOfRange {
                what: format!("a consistency proof from {old} to {new}"),
                size: log.tree.size(),
            })
    }

    /// `name` under the appliance's name key: what records carry instead of
    /// a filename.
    pub fn keyed_name(&self, name: &str) -> KeyedName {
        self.keyed_bytes(name.as_bytes())
    }

    /// [`Audit::keyed_name`] for a name that may not be UTF-8 (tus metadata
    /// values are bytes).
    pub fn keyed_bytes(&self, name: &[u8]) -> KeyedName {
        KeyedName::from_tag(&self.names.tag(name))
    }

    /// The key that verifies this log's checkpoints (also in `audit.pub`).
    pub fn verifier_key(&self) -> &VerifierKey {
        &self.key
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn stats(&self) -> Stats {
        let (records, syncs) = {
            let log = self.lock_log();
            (log.tree.size(), log.syncs)
        };
        let checkpoints = self.checkpoints.lock().unwrap_or_else(|e| e.into_inner());
        let signed = checkpoints.latest.as_ref().map_or(0, |c| c.size());
        Stats {
            records,
            syncs,
            checkpoints: checkpoints.written,
            unsigned_for: if records <= signed {
                Duration::ZERO
            } else {
                checkpoints.signed_at.elapsed()
            },
        }
    }

    /// Times every fsync of the records file from now on, and counts the
    /// records that could not be made durable.
    pub fn set_metrics(&self, metrics: Arc<crate::metrics::Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// The metrics wired in, if any.
    pub fn metrics(&self) -> Option<&Arc<crate::metrics::Metrics>> {
        self.metrics.get()
    }

    fn sync_records(&self) -> std::io::Result<()> {
        match self.metrics.get() {
            Some(metrics) => metrics.time_fsync(crate::metrics::FsyncFile::Audit, || {
                self.records.sync_data()
            }),
            None => self.records.sync_data(),
        }
    }

    /// The records file's size in bytes.
    pub fn records_bytes(&self) -> u64 {
        self.records.metadata().map_or(0, |m| m.len())
    }

    fn lock_log(&self) -> MutexGuard<'_, Log> {
        // The state stays consistent across a panic (nothing panics while it
        // is half-updated), so a poisoned lock is still usable.
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn stopped(index: u64, reason: &str) -> Error {
    Error::Stopped {
        index,
        reason: reason.to_owned(),
    }
}

/// Signs a checkpoint every [`CHECKPOINT_INTERVAL`] while records arrive,
/// and a last one when `shutdown` completes; then returns. The caller owns
/// the task. A failed checkpoint is logged and retried at the next tick.
pub async fn run_checkpoints(audit: Arc<Audit>, shutdown: impl Future<Output = ()>) {
    let mut ticker = tokio::time::interval(CHECKPOINT_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            _ = ticker.tick() => sign_checkpoint(&audit).await,
            () = &mut shutdown => break,
        }
    }
    sign_checkpoint(&audit).await;
}

async fn sign_checkpoint(audit: &Arc<Audit>) {
    let audit = Arc::clone(audit);
    match tokio::task::spawn_blocking(move || audit.checkpoint()).await {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => tracing::error!(error = %err, "audit checkpoint failed"),
        Err(err) => tracing::error!(error = %err, "audit checkpoint task failed"),
    }
}

/// Whether `origin` can name a log: 1 to 255 visible ASCII characters other
/// than `+` (e.g. `storage.example.com/audit`).
pub fn is_origin(origin: &str) -> bool {
    (1..=MAX_ORIGIN_LEN).contains(&origin.len())
        && origin.bytes().all(|b| b.is_ascii_graphic() && b != b'+')
}

fn open_append(path: &Path, mode: u32) -> Result<File, Error> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(mode)
        .open(path)
        .map_err(io_error(path))
}

fn file_len(file: &File, path: &Path) -> Result<u64, Error> {
    Ok(file.metadata().map_err(io_error(path))?.len())
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

/// Loads a key file, creating it only while the log has no history: a log
/// whose key vanished must not quietly continue under a new one.
fn load_or_create<K>(
    dir: &Path,
    name: &str,
    has_history: bool,
    load: impl FnOnce(&Path) -> Result<Option<K>, crate::crypto::Error>,
    create: impl FnOnce(&Path) -> Result<K, crate::crypto::Error>,
) -> Result<K, Error> {
    let path = dir.join(name);
    if let Some(key) = load(&path)? {
        return Ok(key);
    }
    if has_history {
        return Err(Error::Key {
            path,
            reason: "missing, but the log has records or checkpoints; restore it from a \
                     backup (a new key would not match them)"
                .into(),
        });
    }
    let key = create(&path)?;
    tracing::info!(path = %path.display(), "created audit key (mode 0600); back it up with the data dir");
    Ok(key)
}

/// Writes `audit.pub` if it is missing; refuses one for another key or
/// origin, which means the origin setting changed under an existing log.
fn publish_key(dir: &Path, key: &VerifierKey) -> Result<(), Error> {
    let path = dir.join(PUBLIC_KEY_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let published: VerifierKey =
                text.parse().map_err(|err: BadVerifierKey| Error::Key {
                    path: path.clone(),
                    reason: err.to_string(),
                })?;
            if &published != key {
                return Err(Error::Key {
                    path,
                    reason: format!(
                        "publishes {}, but this log is {} with this audit.key; the origin \
                         must not change for the life of a log",
                        published.id(),
                        key.id()
                    ),
                });
            }
            Ok(())
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            let temp = dir.join(format!(".{PUBLIC_KEY_FILE}.tmp"));
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o644)
                .open(&temp)
                .map_err(io_error(&temp))?;
            file.write_all(format!("{key}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(io_error(&temp))?;
            fs::rename(&temp, &path).map_err(io_error(&path))?;
            sync_dir(dir)
        }
        Err(err) => Err(io_error(&path)(err)),
    }
}

/// Reads every record back into a tree, cutting off a torn last record.
fn recover_records(path: &Path, file: &File) -> Result<(Tree, Option<Hash>), Error> {
    let mut reader = RecordReader::new(BufReader::new(File::open(path).map_err(io_error(path))?));
    let mut tree = Tree::new();
    let mut last_leaf = None;
    loop {
        match reader.next_step().map_err(io_error(path))? {
            Step::Record(leaf) => {
                tree.push(leaf);
                last_leaf = Some(leaf);
            }
            Step::End => return Ok((tree, last_leaf)),
            Step::Fault(fault) if fault.kind == FaultKind::Torn => {
                tracing::warn!(
                    path = %path.display(),
                    index = fault.index,
                    offset = fault.offset,
                    "audit log ends inside a record (a crash mid-append); cutting it off"
                );
                file.set_len(fault.offset)
                    .and_then(|()| file.sync_data())
                    .map_err(io_error(path))?;
                return Ok((tree, last_leaf));
            }
            Step::Fault(fault) => {
                return Err(Error::Corrupt {
                    path: path.to_path_buf(),
                    index: fault.index,
                    reason: fault.to_string(),
                });
            }
        }
    }
}

/// Reads every checkpoint back, checking each against the rebuilt tree and
/// the latest one's signature, and cuts off a torn last entry. Returns the
/// latest checkpoint and the file's (new) length.
fn recover_checkpoints(
    path: &Path,
    file: &File,
    tree: &Tree,
    key: &VerifierKey,
) -> Result<(Option<Checkpoint>, u64), Error> {
    let mut reader = EntryReader::new(BufReader::new(File::open(path).map_err(io_error(path))?));
    let mut latest: Option<Checkpoint> = None;
    let mut number = 0u64;
    let mut len = 0;
    let corrupt = |number, reason: String| Error::CorruptCheckpoint {
        path: path.to_path_buf(),
        number,
        reason,
    };
    loop {
        match reader.next_entry().map_err(io_error(path))? {
            Entry::Note { note, end } => {
                let checkpoint =
                    Checkpoint::parse(&note).map_err(|err| corrupt(number, err.to_string()))?;
                if checkpoint.origin() != key.name() {
                    let reason =
                        format!("origin {:?} is not {:?}", checkpoint.origin(), key.name());
                    return Err(corrupt(number, reason));
                }
                if let Some(previous) = &latest
                    && checkpoint.size() < previous.size()
                {
                    let reason = format!(
                        "tree size {} is smaller than the previous checkpoint's {}",
                        checkpoint.size(),
                        previous.size()
                    );
                    return Err(corrupt(number, reason));
                }
                if checkpoint.size() > tree.size() {
                    return Err(Error::Corrupt {
                        path: path.with_file_name(RECORDS_FILE),
                        index: tree.size(),
                        reason: format!(
                            "checkpoint {number} covers {} records but the log holds only {}: \
                             records from index {} on are missing",
                            checkpoint.size(),
                            tree.size(),
                            tree.size()
                        ),
                    });
                }
                if tree.root(checkpoint.size()) != *checkpoint.root() {
                    let reason = format!(
                        "its root does not match records 0 to {}: the records or the \
                         checkpoint were altered",
                        checkpoint.size().saturating_sub(1)
                    );
                    return Err(corrupt(number, reason));
                }
                latest = Some(checkpoint);
                number += 1;
                len = end;
            }
            Entry::End => break,
            Entry::Torn { start } => {
                tracing::warn!(
                    path = %path.display(),
                    checkpoint = number,
                    "audit checkpoints end inside an entry (a crash mid-write); cutting it off"
                );
                file.set_len(start)
                    .and_then(|()| file.sync_data())
                    .map_err(io_error(path))?;
                len = start;
                break;
            }
            Entry::Malformed { start, reason } => {
                return Err(corrupt(number, format!("{reason} (at byte {start})")));
            }
        }
    }
    if let Some(checkpoint) = &latest {
        checkpoint
            .verify(key)
            .map_err(|err| corrupt(number - 1, err.to_string()))?;
    }
    Ok((latest, len))
}

#[cfg(test)]
mod tests;
