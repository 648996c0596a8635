//! The index: upload records and tail records in sled. The only sled user in
//! the appliance, kept small so the engine can be swapped.
//!
//! Keys are prefixed in one tree so a record and its tail change in one
//! atomic batch: `u/<id>` → record JSON, `t/<id>` → sealed tail bytes.

use std::path::Path;

use crate::id::UploadId;

use super::Error;
use super::record::UploadRecord;

pub struct Index {
    db: sled::Db,
    tree: sled::Tree,
    /// sled's log file, opened a second time: sled 0.34 makes its writes
    /// durable with `sync_file_range`, which neither flushes the drive's
    /// write cache nor the file's size, so a power cut could lose an
    /// acknowledged record. An fdatasync on any descriptor of the file
    /// flushes both.
    log: std::fs::File,
}

/// What happens to an upload's tail record in a write.
pub enum TailChange {
    Keep,
    Set(Vec<u8>),
    Remove,
}

/// The file sled 0.34 keeps its log in, inside its directory.
const SLED_LOG_FILE: &str = "db";

fn record_key(id: &UploadId) -> Vec<u8> {
    [b"u/".as_slice(), id.as_bytes()].concat()
}

fn tail_key(id: &UploadId) -> Vec<u8> {
    [b"t/".as_slice(), id.as_bytes()].concat()
}

impl Index {
    pub fn open(dir: &Path) -> Result<Index, Error> {
        let db = sled::Config::new()
            .path(dir)
            // Every acknowledgement flushes explicitly; the periodic flush only
            // adds background writes.
            .flush_every_ms(None)
            .open()?;
        let tree = db.open_tree("index")?;
        let log = std::fs::File::open(dir.join(SLED_LOG_FILE)).map_err(sled::Error::Io)?;
        Ok(Index { db, tree, log })
    }

    pub fn get(&self, id: &UploadId) -> Result<Option<UploadRecord>, Error> {
        match self.tree.get(record_key(id))? {
            Some(bytes) => Ok(Some(decode(id, &bytes)?)),
            None => Ok(None),
        }
    }

    pub fn tail(&self, id: &UploadId) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.tree.get(tail_key(id))?.map(|v| v.to_vec()))
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
        self.tree.apply_batch(batch)?;
        self.flush()
    }

    /// Removes a record and its tail durably.
    pub fn remove(&self, id: &UploadId) -> Result<(), Error> {
        let mut batch = sled::Batch::default();
        batch.remove(record_key(id));
        batch.remove(tail_key(id));
        self.tree.apply_batch(batch)?;
        self.flush()
    }

    pub fn records(&self) -> impl Iterator<Item = Result<UploadRecord, Error>> + '_ {
        self.tree.scan_prefix(b"u/").map(|item| {
            let (key, value) = item?;
            let id = id_from_key(&key)?;
            decode(&id, &value)
        })
    }

    pub fn tail_count(&self) -> usize {
        self.tree.scan_prefix(b"t/").count()
    }

    fn flush(&self) -> Result<(), Error> {
        self.db.flush()?;
        self.log.sync_data().map_err(sled::Error::Io)?;
        Ok(())
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
