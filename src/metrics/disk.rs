//! A [`Disk`] that times the fsyncs of segment files and passes every call
//! on unchanged: staging measures nothing itself, and the fault-injecting
//! disks of the tests wrap the same way.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::disk::{Disk, DiskFile, OpenMode};

use super::{FsyncFile, Metrics};

pub struct MeteredDisk {
    inner: Arc<dyn Disk>,
    metrics: Arc<Metrics>,
}

impl MeteredDisk {
    pub fn new(inner: Arc<dyn Disk>, metrics: Arc<Metrics>) -> MeteredDisk {
        MeteredDisk { inner, metrics }
    }
}

struct MeteredFile {
    inner: Arc<dyn DiskFile>,
    metrics: Arc<Metrics>,
}

impl Disk for MeteredDisk {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn DiskFile>> {
        let inner = self.inner.open(path, mode)?;
        Ok(Arc::new(MeteredFile {
            inner,
            metrics: self.metrics.clone(),
        }))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        self.inner.list(dir)
    }
}

impl DiskFile for MeteredFile {
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.inner.write_at(offset, data)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(offset, buf)
    }

    fn sync(&self) -> io::Result<()> {
        self.metrics
            .time_fsync(FsyncFile::Segment, || self.inner.sync())
    }

    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
}
