//! Staging store. Owns all sled access (the index) and the segment files that
//! hold sealed bytes, tail records, start-up recovery and expiry removal.
//! Never runs plugins, never sees HTTP, never encrypts: callers hand it bytes
//! that are already sealed.
//!
//! All methods block (file I/O, fsync, index flush): call them from blocking
//! threads.
//!
//! Durability rule: a segment file's bytes are synced before the record that
//! counts them is written, and `Index::put` flushes before it returns. So a
//! record never claims bytes the file may not have, and a file may only ever
//! hold *more* than its record claims, which recovery truncates.
//!
//! A full disk needs no restart. A segment write the disk refuses is cut back
//! by the write stage. An index write it refuses closes the index, which
//! reopens from disk holding the record either as it was or as the refused
//! write left it (see `index`); both are consistent with the file. The write
//! stage cannot tell which, so it cuts nothing back (cutting to the old
//! record could take segments the reopened one counts) and its upload is
//! not stopped: the next writer compares the file with the record the index
//! then holds, cuts off what the record does not count before it writes
//! there, and stops the upload only if the file holds less
//! (`Staging::writer`). While the disk holding the index is full, the index
//! keeps its headroom and new bytes are refused (`Error::NoHeadroom`), so
//! status, downloads and terminations go on.

mod index;
mod record;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::crypto::seg1;
use crate::disk::{Disk, DiskFile, OpenMode};
use crate::id::UploadId;

pub use index::TailChange;
pub use record::{
    CommitInfo, Disposition, FindingRecord, PluginRecord, ScreeningReport, UploadKind,
    UploadRecord, UploadState,
};

use index::Index;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("staging {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("staging index: {0}")]
    Index(#[from] sled::Error),
    #[error("staging index: {0}")]
    Corrupt(String),
    #[error("upload {0} is already staged")]
    AlreadyExists(UploadId),
    /// The disk holding the index is full and the index has used its
    /// headroom: nothing new is written until space returns.
    #[error("staging: the disk is full; new bytes are refused until space returns")]
    NoHeadroom,
}

impl Error {
    /// True when the failure is the disk being full, which clients see as 507
    /// rather than an internal error.
    pub fn is_storage_full(&self) -> bool {
        let io_error = match self {
            Error::Io { source, .. } => Some(source),
            Error::Index(sled::Error::Io(source)) => Some(source),
            Error::NoHeadroom => return true,
            _ => None,
        };
        io_error
            .is_some_and(|e| e.kind() == io::ErrorKind::StorageFull || e.raw_os_error() == Some(28))
    }

    /// A write the disk refused for lack of space. Nothing was acknowledged
    /// and no sync failed, so the caller can cut the file back and carry on
    /// once space returns (unlike an fsync error, which is fail-stop).
    pub fn is_refused_write(&self) -> bool {
        matches!(self, Error::Io { op: "write", .. } | Error::NoHeadroom) && self.is_storage_full()
    }

    /// An index write refused for lack of space (or an index too full to
    /// reopen). Nothing was acknowledged and no sync failed. The index
    /// reopens holding the record as it was, or as the refused write left it
    /// if its batch had reached the log; the segment file holds everything
    /// either counts (segments are synced before their record is written).
    /// So the upload goes on from whatever the index holds, and only the
    /// caller's copy of the record, and anything derived from it, is stale.
    pub fn is_refused_index_write(&self) -> bool {
        matches!(self, Error::Index(sled::Error::Io(_))) && self.is_storage_full()
    }
}

fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

pub struct Staging {
    disk: Arc<dyn Disk>,
    index: Index,
    segments_dir: PathBuf,
}

/// What start-up recovery found and repaired.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    pub uploads: usize,
    pub objects: usize,
    /// Segment files cut back to what their record acknowledges.
    pub truncated: usize,
    /// Segment files with no record (a creation or removal interrupted).
    pub orphans_removed: usize,
    /// Records whose segment file is shorter than they claim.
    pub damaged: Vec<UploadId>,
}

impl Staging {
    pub fn open(data_dir: &Path, disk: Arc<dyn Disk>) -> Result<Staging, Error> {
        let segments_dir = data_dir.join("segments");
        disk.create_dir_all(&segments_dir)
            .map_err(io_error("create", &segments_dir))?;
        // A directory's name is durable only once its parent is synced.
        disk.sync_dir(data_dir)
            .map_err(io_error("fsync", data_dir))?;
        let index = Index::open(&data_dir.join("index"))?;
        Ok(Staging {
            disk,
            index,
            segments_dir,
        })
    }

    /// Times the index's fsyncs (segment files are timed by the disk the
    /// appliance hands in, `metrics::MeteredDisk`).
    pub fn set_metrics(&self, metrics: Arc<crate::metrics::Metrics>) {
        self.index.set_metrics(metrics);
    }

    pub fn segment_path(&self, id: &UploadId) -> PathBuf {
        let name = id.to_string();
        self.segments_dir
            .join(&name[..2])
            .join(format!("{name}.seg"))
    }

    /// Creates the segment file with its header, then the record. The file
    /// comes first so a crash leaves at worst an orphan file, never a record
    /// without its file.
    pub fn create(&self, record: &UploadRecord, header: &[u8]) -> Result<(), Error> {
        self.index.headroom().ensure()?;
        let path = self.segment_path(&record.id);
        let dir = path.parent().expect("segment path has a parent");
        self.disk
            .create_dir_all(dir)
            .map_err(io_error("create", dir))?;
        // The fan-out directory may be new: make its name durable too, or a
        // crash can take the synced file with it.
        self.disk
            .sync_dir(&self.segments_dir)
            .map_err(io_error("fsync", &self.segments_dir))?;
        let file = match self.disk.open(&path, OpenMode::CreateNew) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists(record.id));
            }
            other => other.map_err(io_error("create", &path))?,
        };
        if let Err(err) = file.write_at(0, header) {
            // Leave no half-created file behind (disk full, most likely).
            let _ = self.disk.remove(&path);
            return Err(io_error("write", &path)(err));
        }
        file.sync().map_err(io_error("fsync", &path))?;
        self.disk.sync_dir(dir).map_err(io_error("fsync", dir))?;
        self.index.put(record, TailChange::Remove)
    }

    pub fn get(&self, id: &UploadId) -> Result<Option<UploadRecord>, Error> {
        self.index.get(id)
    }

    pub fn tail(&self, id: &UploadId) -> Result<Option<Vec<u8>>, Error> {
        self.index.tail(id)
    }

    /// Durably replaces the record (and its tail). The caller has synced any
    /// segment the record counts.
    pub fn put(&self, record: &UploadRecord, tail: TailChange) -> Result<(), Error> {
        self.index.put(record, tail)
    }

    pub fn records(&self) -> impl Iterator<Item = Result<UploadRecord, Error>> + '_ {
        self.index.records()
    }

    /// Records in id order after `after` (all with `None`).
    pub fn records_after(
        &self,
        after: Option<&UploadId>,
    ) -> impl Iterator<Item = Result<UploadRecord, Error>> + '_ {
        self.index.records_after(after)
    }

    /// Opens the segment file to append after the record's full segments,
    /// once the disk has room for new bytes.
    ///
    /// The file may hold more than the record counts: the synced segments
    /// of a chunk whose record the index refused. They are cut off before
    /// anything is written at their indexes, as recovery would cut them: a
    /// new write generation starts at the cut, durably first, and `record`
    /// takes it. A file shorter than its record is damage, which stops the
    /// upload.
    pub fn writer(&self, record: &mut UploadRecord) -> Result<SegmentWriter, Error> {
        self.index.headroom().ensure()?;
        let path = self.segment_path(&record.id);
        let file = self
            .disk
            .open(&path, OpenMode::ReadWrite)
            .map_err(io_error("open", &path))?;
        let next_index = record.offset / seg1::SEGMENT_SIZE as u64;
        let expected = seg1::segment_offset(next_index);
        let actual = file.size().map_err(io_error("stat", &path))?;
        if actual < expected {
            return Err(Error::Corrupt(format!(
                "upload {}: segment file {} holds {actual} bytes, its record counts {expected}",
                record.id,
                path.display()
            )));
        }
        if actual > expected {
            record.generations = self.cut_generation(&record.id, next_index)?;
            file.set_len(expected)
                .map_err(io_error("truncate", &path))?;
            file.sync().map_err(io_error("fsync", &path))?;
        }
        Ok(SegmentWriter {
            file,
            path,
            next_index,
            headroom: self.index.headroom().clone(),
        })
    }

    /// Starts a new write generation at segment `index` in the stored
    /// record, durably; returns the record's generations. The stored record,
    /// not the caller's: a request may have changed its copy (a deferred
    /// length it sets), which must not become durable before it succeeds.
    fn cut_generation(&self, id: &UploadId, index: u64) -> Result<seg1::Generations, Error> {
        let mut stored = self
            .index
            .get(id)?
            .ok_or_else(|| Error::Corrupt(format!("upload {id}: no record to cut back to")))?;
        stored.generations.cut(index);
        self.index.put(&stored, TailChange::Keep)?;
        Ok(stored.generations)
    }

    /// Opens the segment file for reading (downloads, replays).
    pub fn reader(&self, id: &UploadId) -> Result<Arc<dyn DiskFile>, Error> {
        let path = self.segment_path(id);
        self.disk
            .open(&path, OpenMode::Read)
            .map_err(io_error("open", &path))
    }

    /// Removes an upload: the record and tail first (which destroys the wrapped
    /// data key, so the bytes are unreadable from then on), then the file.
    pub fn remove(&self, id: &UploadId) -> Result<(), Error> {
        self.index.remove(id)?;
        let path = self.segment_path(id);
        self.disk.remove(&path).map_err(io_error("remove", &path))
    }

    /// Reconciles the index with the segment files after a start or a crash:
    /// files longer than their record are cut back (an upload's starting a
    /// new write generation), files with no record are removed, records
    /// whose file is short are reported as damaged.
    pub fn recover(&self) -> Result<RecoveryReport, Error> {
        let mut report = RecoveryReport::default();
        let mut known = std::collections::HashSet::new();
        for record in self.index.records() {
            let record = record?;
            known.insert(self.segment_path(&record.id));
            if record.is_committed() {
                report.objects += 1;
            } else {
                report.uploads += 1;
            }
            self.reconcile_file(&record, &mut report)?;
        }
        self.remove_orphans(&known, &mut report)?;
        Ok(report)
    }

    fn reconcile_file(
        &self,
        record: &UploadRecord,
        report: &mut RecoveryReport,
    ) -> Result<(), Error> {
        let path = self.segment_path(&record.id);
        let file = match self.disk.open(&path, OpenMode::ReadWrite) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                report.damaged.push(record.id);
                return Ok(());
            }
            Err(e) => return Err(io_error("open", &path)(e)),
        };
        let actual = file.size().map_err(io_error("stat", &path))?;
        let expected = expected_file_len(record);
        if actual > expected {
            if !record.is_committed() {
                self.start_generation_at_offset(record)?;
            }
            file.set_len(expected)
                .map_err(io_error("truncate", &path))?;
            file.sync().map_err(io_error("fsync", &path))?;
            report.truncated += 1;
        } else if actual < expected {
            report.damaged.push(record.id);
        }
        Ok(())
    }

    /// The bytes past an upload's acknowledged offset were sealed, but the
    /// client will send those offsets again, maybe with other bytes: a new
    /// write generation starts at the first segment they reach, durably
    /// before they are cut, as when a chunk is discarded
    /// (`crypto::seg1::Generations`).
    fn start_generation_at_offset(&self, record: &UploadRecord) -> Result<(), Error> {
        let mut record = record.clone();
        record
            .generations
            .cut(record.offset / seg1::SEGMENT_SIZE as u64);
        self.index.put(&record, TailChange::Keep)
    }

    fn remove_orphans(
        &self,
        known: &std::collections::HashSet<PathBuf>,
        report: &mut RecoveryReport,
    ) -> Result<(), Error> {
        let fanout = self
            .disk
            .list(&self.segments_dir)
            .map_err(io_error("list", &self.segments_dir))?;
        for dir in fanout {
            let files = self.disk.list(&dir).map_err(io_error("list", &dir))?;
            for path in files {
                if !known.contains(&path) {
                    self.disk.remove(&path).map_err(io_error("remove", &path))?;
                    report.orphans_removed += 1;
                }
            }
        }
        Ok(())
    }

    /// Counts of what staging holds, for leak checks and metrics.
    pub fn census(&self) -> Result<Census, Error> {
        let mut census = Census {
            tails: self.index.tail_count()?,
            ..Census::default()
        };
        for record in self.index.records() {
            census.records += 1;
            if record?.is_committed() {
                census.objects += 1;
            }
        }
        census.files = self.segment_file_count()?;
        Ok(census)
    }

    /// Segment files on disk, one directory listing per id prefix.
    pub fn segment_file_count(&self) -> Result<usize, Error> {
        let mut files = 0;
        for dir in self
            .disk
            .list(&self.segments_dir)
            .map_err(io_error("list", &self.segments_dir))?
        {
            files += self.disk.list(&dir).map_err(io_error("list", &dir))?.len();
        }
        Ok(files)
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Census {
    pub records: usize,
    pub objects: usize,
    pub tails: usize,
    pub files: usize,
}

/// The segment-file length a record accounts for.
pub fn expected_file_len(record: &UploadRecord) -> u64 {
    match (&record.state, record.length) {
        (UploadState::Committed(_), Some(length)) => seg1::committed_file_len(length),
        _ => seg1::segment_offset(record.offset / seg1::SEGMENT_SIZE as u64),
    }
}

/// Appends sealed segments to one upload's segment file. Positions follow
/// from segment indexes, so re-sealing an index after a rewind overwrites in
/// place.
pub struct SegmentWriter {
    file: Arc<dyn DiskFile>,
    path: PathBuf,
    next_index: u64,
    /// Appends stop as soon as the index gives its headroom up, so that a
    /// long request cannot take the room the index needs.
    headroom: Arc<index::Headroom>,
}

impl SegmentWriter {
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// Appends `count` sealed segments laid out back to back in `sealed`.
    pub fn append(&mut self, sealed: &[u8], count: u64) -> Result<(), Error> {
        if !self.headroom.is_reserved() {
            return Err(Error::NoHeadroom);
        }
        self.file
            .write_at(seg1::segment_offset(self.next_index), sealed)
            .map_err(io_error("write", &self.path))?;
        self.next_index += count;
        Ok(())
    }

    pub fn sync(&self) -> Result<(), Error> {
        self.file.sync().map_err(io_error("fsync", &self.path))
    }

    /// Drops every segment from `index` on (a discarded chunk) durably.
    pub fn rewind(&mut self, index: u64) -> Result<(), Error> {
        self.file
            .set_len(seg1::segment_offset(index))
            .map_err(io_error("truncate", &self.path))?;
        self.file.sync().map_err(io_error("fsync", &self.path))?;
        self.next_index = index;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::OsDisk;
    use seg1::Generation;

    /// A staged upload whose record counts two full segments (and a tail),
    /// its file grown to `segments` segments.
    fn staged(dir: &Path, segments: u64) -> (Staging, UploadRecord, PathBuf) {
        let staging = Staging::open(dir, Arc::new(OsDisk)).unwrap();
        let record: UploadRecord = serde_json::from_value(serde_json::json!({
            "id": UploadId::from_bytes([9; 16]).to_string(),
            "tenant": "default",
            "length": 10 * seg1::SEGMENT_SIZE,
            "offset": 2 * seg1::SEGMENT_SIZE + 10,
            "metadata": [],
            "kind": {"type": "regular"},
            "state": {"state": "receiving"},
            "created_at": 1,
            "updated_at": 2,
            "expires_at": null,
            "key": {"kek": "local:default:v1", "blob": ""},
        }))
        .unwrap();
        staging.create(&record, &[0; seg1::HEADER_LEN]).unwrap();
        let path = staging.segment_path(&record.id);
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(seg1::segment_offset(segments)).unwrap();
        (staging, record, path)
    }

    #[test]
    fn a_writer_cuts_off_segments_the_record_does_not_count_under_a_new_generation() {
        let dir = tempfile::tempdir().unwrap();
        // Three segments past the record: a chunk whose record the index refused.
        let (staging, mut record, path) = staged(dir.path(), 5);
        let writer = staging.writer(&mut record).unwrap();
        assert_eq!(writer.next_index(), 2);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            seg1::segment_offset(2)
        );
        assert_eq!(record.generations.of(1), Generation::INITIAL);
        assert_eq!(record.generations.of(2), Generation(1));
        let stored = staging.get(&record.id).unwrap().unwrap();
        assert_eq!(
            stored.generations, record.generations,
            "durable before the cut"
        );
        // Nothing more to cut: no further generation.
        drop(writer);
        staging.writer(&mut record).unwrap();
        assert_eq!(record.generations.of(2), Generation(1));
    }

    #[test]
    fn a_writer_refuses_a_file_shorter_than_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let (staging, mut record, _) = staged(dir.path(), 1);
        let err = staging.writer(&mut record).err().expect("damage");
        assert!(matches!(err, Error::Corrupt(_)), "{err}");
    }
}
