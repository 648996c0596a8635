//! The index: upload records and tail records in sled. The only sled user in
//! the appliance, kept small so the engine can be swapped.
//!
//! Keys are prefixed in one tree so a record and its tail change in one
//! atomic batch: `u/<id>` → record JSON, `t/<id>` → sealed tail bytes.
//!
//! A failed write does not need a restart. sled 0.34 keeps the first I/O
//! error of a log write (a full disk, typically) as a sticky error: every
//! later write of that instance fails, while reads go on answering from
//! memory, the failed write included. So a write that fails with an I/O
//! error closes the instance (every handle, the extra log descriptor too)
//! and the next operation reopens it from disk, retrying on later operations
//! for as long as the reopen fails. sled's recovery then finds what reached
//! the log: a batch is found whole or not at all, so the reopened index holds
//! each record either as it was or as the failed write left it, never a mix.
//! The failed write was never acknowledged, and its caller synced every
//! segment the new record counts before writing it, so both are consistent
//! with the segment file; callers reload the record rather than trust their
//! copy (`Error::is_refused_index_write`). The reopen makes what it found
//! durable before anything is served from it.
//!
//! The fdatasync after sled's flush is not a log write: when it fails, pages
//! the kernel no longer holds dirty may be lost, so the error is an fsync
//! error (fail-stop for the upload, as for a segment file) and the instance
//! stays open.
//!
//! Headroom. sled's reopen after a refused write needs free space (it zeroes
//! the rest of the torn log segment and writes a snapshot: 140 KiB measured
//! on tmpfs, up to a 512 KiB segment), and so do the removals that free
//! space. On a file system that segment files can fill, that space would be
//! gone for good. So the index keeps `HEADROOM` bytes in a file of its own,
//! gives them up when the disk is full (an index write refused for space, or
//! a reopen), and, until it has them back, new bytes are refused
//! (`Headroom::ensure`, checked by staging before it creates or appends):
//! status, downloads and terminations keep working and free space. It takes
//! them back once twice as much is free.
//!
//! Every open first removes what an interrupted sled snapshot left behind,
//! which would otherwise fail every later open (`remove_interrupted_snapshots`).
//!
//! Never holds its state lock across I/O; all methods block (file I/O,
//! fsync, reopen): call them from blocking threads.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::id::UploadId;

use super::Error;
use super::record::UploadRecord;

pub struct Index {
    dir: PathBuf,
    /// The open instance, or why there is none. Held only to clone or swap.
    state: Mutex<State>,
    /// One reopen at a time. Holds nothing: the attempt count in `state`
    /// tells a caller that waited here whether another attempt ran meanwhile.
    reopening: Mutex<()>,
    headroom: Arc<Headroom>,
    /// Where fsync latencies go, once the appliance wires metrics in.
    metrics: std::sync::OnceLock<Arc<crate::metrics::Metrics>>,
}

struct State {
    /// `None` after a failed write, until a reopen succeeds.
    open: Option<Arc<Sled>>,
    /// Why the last instance was closed or the last reopen failed.
    failure: Option<sled::Error>,
    /// Reopen attempts so far.
    attempts: u64,
}

/// One open sled instance.
struct Sled {
    db: sled::Db,
    tree: sled::Tree,
    /// sled's log file, opened a second time: sled 0.34 makes its writes
    /// durable with `sync_file_range`, which neither flushes the drive's
    /// write cache nor the file's size, so a power cut could lose an
    /// acknowledged record. An fdatasync on any descriptor of the file
    /// flushes both.
    log: File,
}

/// What happens to an upload's tail record in a write.
pub enum TailChange {
    Keep,
    Set(Vec<u8>),
    Remove,
}

/// The file sled 0.34 keeps its log in, inside its directory.
const SLED_LOG_FILE: &str = "db";

/// How long a reopen waits for the closed instance to let go of sled's file
/// lock: its last handles drop as the operations that held them end, and
/// sled's own threads a moment later.
const REOPEN_LOCK_WAIT: Duration = Duration::from_secs(2);
const REOPEN_LOCK_POLL: Duration = Duration::from_millis(2);

fn record_key(id: &UploadId) -> Vec<u8> {
    [b"u/".as_slice(), id.as_bytes()].concat()
}

fn tail_key(id: &UploadId) -> Vec<u8> {
    [b"t/".as_slice(), id.as_bytes()].concat()
}

impl Index {
    /// Opens the index at start. Unlike a reopen, a lock held by another
    /// process fails at once: the caller reports the index as in use.
    pub fn open(dir: &Path) -> Result<Index, Error> {
        let headroom = Arc::new(Headroom::find(dir));
        let sled = Sled::open_with_headroom(dir, &headroom)?;
        // Best effort: without it, new bytes wait until there is room.
        let _ = headroom.ensure();
        Ok(Index {
            dir: dir.to_owned(),
            state: Mutex::new(State {
                open: Some(Arc::new(sled)),
                failure: None,
                attempts: 0,
            }),
            reopening: Mutex::new(()),
            headroom,
            metrics: std::sync::OnceLock::new(),
        })
    }

    /// The space the index keeps for itself; staging asks it before it puts
    /// new bytes on disk.
    pub fn headroom(&self) -> &Arc<Headroom> {
        &self.headroom
    }

    pub fn get(&self, id: &UploadId) -> Result<Option<UploadRecord>, Error> {
        match self.sled()?.tree.get(record_key(id))? {
            Some(bytes) => Ok(Some(decode(id, &bytes)?)),
            None => Ok(None),
        }
    }

    pub fn tail(&self, id: &UploadId) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.sled()?.tree.get(tail_key(id))?.map(|v| v.to_vec()))
    }

    /// Writes the record and its tail in one batch and makes it durable before
    /// returning: callers acknowledge bytes only after this.
    pub fn put(&self, record: &UploadRecord, tail: TailChange) -> Result<(), Error> {
        let mut batch = sled::Batch::default();
        let json = serde_json::to_vec(record).map_err(|e| Error::Corrupt(e.to_string()))?;
        batch.insert(record_key(&record.id), json);
        match tail {
            TailChange::Keep => {}
            TailChange::Set(bytes) => batch.insert(tail_key(&record.id), bytes),
            TailChange::Remove => batch.remove(tail_key(&record.id)),
        }
        self.write(batch)
    }

    /// Removes a record and its tail durably.
    pub fn remove(&self, id: &UploadId) -> Result<(), Error> {
        let mut batch = sled::Batch::default();
        batch.remove(record_key(id));
        batch.remove(tail_key(id));
        self.write(batch)
    }

    pub fn records(&self) -> impl Iterator<Item = Result<UploadRecord, Error>> + '_ {
        self.records_after(None)
    }

    /// Records in id order, starting after `after` (from the first with
    /// `None`): a page of a listing reads only from where it starts.
    pub fn records_after(
        &self,
        after: Option<&UploadId>,
    ) -> impl Iterator<Item = Result<UploadRecord, Error>> + '_ {
        // The scan keeps the instance it started on, even if it is closed
        // meanwhile (its reads stay valid; only its writes fail).
        let (scan, unavailable) = match self.sled() {
            Ok(sled) => {
                // `u/` then 16 id bytes: every key after `after` and below `u0`.
                let start = match after {
                    Some(id) => std::ops::Bound::Excluded(record_key(id)),
                    None => std::ops::Bound::Included(b"u/".to_vec()),
                };
                let end = std::ops::Bound::Excluded(b"u0".to_vec());
                (Some(sled.tree.range::<Vec<u8>, _>((start, end))), None)
            }
            Err(err) => (None, Some(err)),
        };
        unavailable
            .into_iter()
            .map(Err)
            .chain(scan.into_iter().flatten().map(|item| {
                let (key, value) = item?;
                let id = id_from_key(&key)?;
                decode(&id, &value)
            }))
    }

    pub fn tail_count(&self) -> Result<usize, Error> {
        let sled = self.sled()?;
        let mut count = 0;
        for key in sled.tree.scan_prefix(b"t/").keys() {
            key?;
            count += 1;
        }
        Ok(count)
    }

    /// Applies a batch and makes it durable. A log write that fails closes
    /// the instance (see the module docs).
    fn write(&self, batch: sled::Batch) -> Result<(), Error> {
        let sled = self.sled()?;
        let logged = sled.tree.apply_batch(batch).and_then(|()| sled.db.flush());
        if let Err(err) = logged {
            if let sled::Error::Io(_) = err {
                self.close(&sled, &err);
            }
            return Err(Error::Index(err));
        }
        let synced = match self.metrics.get() {
            Some(metrics) => {
                metrics.time_fsync(crate::metrics::FsyncFile::Index, || sled.log.sync_data())
            }
            None => sled.log.sync_data(),
        };
        synced.map_err(|source| Error::Io {
            op: "fsync",
            path: self.dir.join(SLED_LOG_FILE),
            source,
        })
    }

    /// Times every index fsync from now on.
    pub fn set_metrics(&self, metrics: Arc<crate::metrics::Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("index state poisoned")
    }

    /// The open instance, reopened first if a failed write closed it.
    fn sled(&self) -> Result<Arc<Sled>, Error> {
        let seen = {
            let state = self.state();
            if let Some(open) = &state.open {
                return Ok(open.clone());
            }
            state.attempts
        };
        let _one = self.reopening.lock().expect("index reopen poisoned");
        {
            let state = self.state();
            if let Some(open) = &state.open {
                return Ok(open.clone());
            }
            // Another caller tried while this one waited: take its answer
            // rather than queue one more attempt behind each waiter.
            if state.attempts != seen
                && let Some(failure) = &state.failure
            {
                return Err(Error::Index(failure.clone()));
            }
        }
        let reopened = self.reopen();
        let mut state = self.state();
        state.attempts += 1;
        match reopened {
            Ok(sled) => {
                let sled = Arc::new(sled);
                state.open = Some(sled.clone());
                state.failure = None;
                drop(state);
                tracing::info!(index = %self.dir.display(), "staging index reopened");
                Ok(sled)
            }
            Err(err) => {
                state.failure = Some(err.clone());
                Err(Error::Index(err))
            }
        }
    }

    fn reopen(&self) -> Result<Sled, sled::Error> {
        let deadline = Instant::now() + REOPEN_LOCK_WAIT;
        loop {
            match Sled::open_with_headroom(&self.dir, &self.headroom) {
                Err(err) if is_lock_conflict(&err) && Instant::now() < deadline => {
                    std::thread::sleep(REOPEN_LOCK_POLL);
                }
                other => return other,
            }
        }
    }

    /// Closes `failed` after a log write failed on it, unless it was closed
    /// already (or reopened since). It is dropped when the last operation
    /// using it ends, never under the state lock.
    fn close(&self, failed: &Arc<Sled>, cause: &sled::Error) {
        {
            let mut state = self.state();
            if !state
                .open
                .as_ref()
                .is_some_and(|open| Arc::ptr_eq(open, failed))
            {
                return;
            }
            state.open = None;
            state.failure = Some(cause.clone());
        }
        tracing::warn!(
            index = %self.dir.display(),
            error = %cause,
            "staging index write failed; the index reopens from disk on its next use"
        );
        if is_storage_full(cause) {
            self.headroom.release();
        }
    }

    /// Closes the open instance as a failed write would.
    #[cfg(test)]
    fn fail_for_test(&self, cause: sled::Error) {
        let open = self.state().open.clone();
        if let Some(open) = open {
            self.close(&open, &cause);
        }
    }
}

impl Sled {
    /// Opens sled; if the disk is too full for that, gives up the headroom
    /// and tries once more.
    fn open_with_headroom(dir: &Path, headroom: &Headroom) -> Result<Sled, sled::Error> {
        match Sled::open(dir) {
            Err(err) if is_storage_full(&err) && headroom.release() => Sled::open(dir),
            other => other,
        }
    }

    fn open(dir: &Path) -> Result<Sled, sled::Error> {
        remove_interrupted_snapshots(dir)?;
        let db = sled::Config::new()
            .path(dir)
            // Every acknowledgement flushes explicitly; the periodic flush only
            // adds background writes.
            .flush_every_ms(None)
            .open()?;
        let tree = db.open_tree("index")?;
        let log = File::open(dir.join(SLED_LOG_FILE))?;
        // Recovery may have found a write whose flush failed (its batch had
        // reached the log): make it durable before anyone reads it, so no
        // answer rests on a record a power cut could take back.
        db.flush()?;
        log.sync_data()?;
        Ok(Sled { db, tree, log })
    }
}

/// sled 0.34 writes a snapshot to `snap.<lsn>.generating` and renames it
/// when complete. A write cut short (a full disk) leaves the partial file
/// behind, and every later open takes it for the newest snapshot and fails
/// as corrupt, a restart included. Such a file is never a valid snapshot
/// (the log is the truth, the previous snapshot stays), so it is removed
/// before sled opens, under sled's own lock so that no running instance can
/// be writing it. A lock held elsewhere is left for sled's open to report.
fn remove_interrupted_snapshots(dir: &Path) -> io::Result<()> {
    let lock = match File::open(dir.join(SLED_LOG_FILE)) {
        Ok(file) => file,
        // A new index: nothing to clean.
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(()),
        Err(std::fs::TryLockError::Error(err)) => return Err(err),
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            tracing::warn!(index = %dir.display(), file = %name, "removing an interrupted sled snapshot");
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

fn is_storage_full(err: &sled::Error) -> bool {
    // sled hands out copies of its sticky error that keep only the kind.
    matches!(err, sled::Error::Io(e)
        if e.kind() == io::ErrorKind::StorageFull || e.raw_os_error() == Some(28))
}

/// sled reports a held lock as an I/O error of kind `Other`, told apart only
/// by its message.
fn is_lock_conflict(err: &sled::Error) -> bool {
    matches!(err, sled::Error::Io(e) if e.to_string().contains("could not acquire lock"))
}

/// Bytes the index keeps in reserve on its file system (see the module
/// docs): a sled log segment and its snapshot twice over.
pub const HEADROOM: u64 = 1 << 20;

/// Written in blocks of random bytes, so compression cannot shrink the
/// reserve to nothing.
const HEADROOM_BLOCK: usize = 64 * 1024;

/// The index's reserve file, and whether it holds `HEADROOM` bytes.
pub struct Headroom {
    path: PathBuf,
    dir: PathBuf,
    reserved: AtomicBool,
    /// Serialises writing and removing the file.
    file: Mutex<()>,
}

impl Headroom {
    /// The reserve as a previous run left it.
    fn find(dir: &Path) -> Headroom {
        let path = dir.join("headroom");
        let whole = std::fs::metadata(&path).is_ok_and(|m| m.len() >= HEADROOM);
        Headroom {
            path,
            dir: dir.to_owned(),
            reserved: AtomicBool::new(whole),
            file: Mutex::new(()),
        }
    }

    pub fn is_reserved(&self) -> bool {
        self.reserved.load(Ordering::Acquire)
    }

    /// Succeeds while the reserve is held, taking it back first if twice its
    /// size is free; otherwise new bytes must wait (`Error::NoHeadroom`).
    pub fn ensure(&self) -> Result<(), Error> {
        if self.is_reserved() {
            return Ok(());
        }
        let _file = self.file.lock().expect("headroom lock poisoned");
        if self.is_reserved() {
            return Ok(());
        }
        let free = match fs2::available_space(&self.dir) {
            Ok(free) => free,
            Err(err) => {
                tracing::warn!(index = %self.dir.display(), error = %err, "cannot tell the free space");
                return Err(Error::NoHeadroom);
            }
        };
        if free < 2 * HEADROOM {
            return Err(Error::NoHeadroom);
        }
        if let Err(err) = self.write() {
            let _ = std::fs::remove_file(&self.path);
            tracing::warn!(index = %self.dir.display(), error = %err, "cannot reserve the index headroom");
            return Err(Error::NoHeadroom);
        }
        self.reserved.store(true, Ordering::Release);
        tracing::info!(index = %self.dir.display(), "index headroom reserved; new bytes accepted again");
        Ok(())
    }

    fn write(&self) -> io::Result<()> {
        use std::io::Write;
        let block = crate::crypto::random_array::<HEADROOM_BLOCK>();
        let mut file = File::create(&self.path)?;
        for _ in 0..HEADROOM / HEADROOM_BLOCK as u64 {
            file.write_all(&block)?;
        }
        Ok(())
    }

    /// Gives the reserve up to the index; true if there was one to give.
    fn release(&self) -> bool {
        let _file = self.file.lock().expect("headroom lock poisoned");
        let had = self.reserved.swap(false, Ordering::AcqRel);
        match std::fs::remove_file(&self.path) {
            Ok(()) => {
                tracing::warn!(
                    index = %self.dir.display(),
                    "disk full: the index gave up its headroom; new bytes are refused until space returns"
                );
                true
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => had,
            Err(err) => {
                tracing::warn!(index = %self.dir.display(), error = %err, "cannot remove the index headroom");
                false
            }
        }
    }
}

fn id_from_key(key: &[u8]) -> Result<UploadId, Error> {
    let bytes: [u8; 16] = key
        .get(2..)
        .and_then(|rest| rest.try_into().ok())
        .ok_or_else(|| Error::Corrupt("index key of unexpected length".into()))?;
    Ok(UploadId::from_bytes(bytes))
}

fn decode(id: &UploadId, bytes: &[u8]) -> Result<UploadRecord, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt(format!("record of upload {id}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: u64) -> UploadRecord {
        serde_json::from_value(serde_json::json!({
            "id": UploadId::from_bytes([7; 16]).to_string(),
            "tenant": "default",
            "length": 1000,
            "offset": offset,
            "metadata": [],
            "kind": {"type": "regular"},
            "state": {"state": "receiving"},
            "created_at": 1,
            "updated_at": 2,
            "expires_at": null,
            "key": {"kek": "local:default:v1", "blob": ""},
        }))
        .expect("a valid record")
    }

    fn full() -> sled::Error {
        sled::Error::Io(io::Error::from_raw_os_error(28))
    }

    fn offset(index: &Index) -> u64 {
        let id = UploadId::from_bytes([7; 16]);
        index.get(&id).unwrap().expect("the record").offset
    }

    #[test]
    fn a_closed_index_reopens_from_disk_on_its_next_use() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path()).unwrap();
        index
            .put(&record(10), TailChange::Set(vec![1; 100]))
            .unwrap();
        index.fail_for_test(sled::Error::Io(io::Error::from_raw_os_error(5)));
        assert!(index.state().open.is_none(), "closed by the failed write");
        assert_eq!(offset(&index), 10, "reopened with what was durable");
        index.put(&record(20), TailChange::Keep).unwrap();
        assert_eq!(offset(&index), 20);
        assert_eq!(index.tail_count().unwrap(), 1);
        assert_eq!(index.records().count(), 1);
    }

    #[test]
    fn a_reopen_waits_until_the_closed_instance_lets_go_of_its_lock() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path()).unwrap();
        index.put(&record(10), TailChange::Keep).unwrap();
        let in_flight = index.sled().unwrap();
        index.fail_for_test(full());
        let started = Instant::now();
        let holder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(in_flight);
        });
        assert_eq!(offset(&index), 10);
        assert!(started.elapsed() >= Duration::from_millis(150));
        holder.join().unwrap();
    }

    #[test]
    fn an_interrupted_snapshot_does_not_stop_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path()).unwrap();
        index.put(&record(10), TailChange::Keep).unwrap();
        drop(index);
        // What a snapshot write cut short by a full disk leaves behind; it
        // sorts after every complete snapshot.
        let partial = dir.path().join("snap.FFFFFFFFFFFFFFFF.generating");
        std::fs::write(&partial, [0u8; 100]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let index = loop {
            match Index::open(dir.path()) {
                Err(Error::Index(err)) if is_lock_conflict(&err) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                other => break other.unwrap(),
            }
        };
        assert_eq!(offset(&index), 10);
        assert!(!partial.exists());
    }

    #[test]
    fn a_full_disk_takes_the_headroom_and_room_gives_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path()).unwrap();
        let file = dir.path().join("headroom");
        assert!(index.headroom().is_reserved());
        assert_eq!(std::fs::metadata(&file).unwrap().len(), HEADROOM);
        index.fail_for_test(full());
        assert!(!index.headroom().is_reserved());
        assert!(!file.exists(), "given up to the index");
        // This disk has room: asking for it takes the headroom back.
        index.headroom().ensure().unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().len(), HEADROOM);
        assert_eq!(index.records().count(), 0);
    }
}
