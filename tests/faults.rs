//! Storage faults through the narrow disk interface: an fsync error is
//! fail-stop for the upload and never acknowledged; a full disk is a 507.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use strongroom::disk::{Disk, DiskFile, OpenMode, OsDisk};

use crate::support::*;

const HEALTHY: u8 = 0;
const FAIL_SYNC: u8 = 1;
const DISK_FULL: u8 = 2;

/// The real disk, with a switch that makes segment-file syncs or writes fail.
#[derive(Default)]
struct SwitchableDisk {
    fault: Arc<AtomicU8>,
}

struct SwitchableFile {
    inner: Arc<dyn DiskFile>,
    fault: Arc<AtomicU8>,
}

impl Disk for SwitchableDisk {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn DiskFile>> {
        Ok(Arc::new(SwitchableFile {
            inner: OsDisk.open(path, mode)?,
            fault: self.fault.clone(),
        }))
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        OsDisk.remove(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        OsDisk.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        OsDisk.sync_dir(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        OsDisk.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        OsDisk.list(dir)
    }
}

impl DiskFile for SwitchableFile {
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        if self.fault.load(Ordering::SeqCst) == DISK_FULL {
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        self.inner.write_at(offset, data)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn sync(&self) -> io::Result<()> {
        if self.fault.load(Ordering::SeqCst) == FAIL_SYNC {
            return Err(io::Error::from_raw_os_error(5)); // EIO
        }
        self.inner.sync()
    }
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
}

async fn server_with_switch() -> (TestServer, Arc<AtomicU8>) {
    let disk = SwitchableDisk::default();
    let fault = disk.fault.clone();
    (
        TestServer::start_on_disk(Arc::new(disk), |_| {}).await,
        fault,
    )
}

#[tokio::test]
async fn an_fsync_error_is_never_acknowledged_and_stops_the_upload_until_restart() {
    let (mut server, fault) = server_with_switch().await;
    let data = bytes(300_000, 21);
    let id = {
        let up = server.create(data.len() as u64).await;
        up.patch(0, &data[..100_000]).await.assert_offset(100_000);
        fault.store(FAIL_SYNC, Ordering::SeqCst);
        let failed = up.patch(100_000, &data[100_000..200_000]).await;
        failed.assert_problem(500, "internal");
        assert!(failed.header("upload-offset").is_none());
        fault.store(HEALTHY, Ordering::SeqCst);
        // Fail-stop: even with the disk healthy again, no retry is acknowledged.
        up.head().await.assert_status(503); // HEAD answers carry no body
        up.patch(100_000, &data[100_000..200_000])
            .await
            .assert_problem(503, "upload_stopped");
        up.id().to_owned()
    };

    server.restart().await;

    let up = Upload {
        server: &server,
        path: format!("/files/{id}"),
    };
    up.head().await.assert_offset(100_000);
    up.patch(100_000, &data[100_000..])
        .await
        .assert_offset(300_000);
    assert_eq!(up.get().await.body, data);
}

#[tokio::test]
async fn a_full_disk_answers_507_and_the_upload_resumes_when_space_returns() {
    let (server, fault) = server_with_switch().await;
    let kept = server.upload(&bytes(70_000, 22)).await.id().to_owned();
    let data = bytes(200_000, 23);
    let up = server.create(data.len() as u64).await;
    fault.store(DISK_FULL, Ordering::SeqCst);
    up.patch(0, &data).await.assert_problem(507, "storage_full");
    fault.store(HEALTHY, Ordering::SeqCst);
    // The refused chunk was never acknowledged and was cut back; once space
    // returns the same upload goes on without a restart.
    up.head().await.assert_offset(0);
    up.patch(0, &data).await.assert_offset(data.len() as u64);
    assert_eq!(up.get().await.body, data);
    let reply = server
        .send("GET", &format!("/objects/{kept}"), &[], Vec::new())
        .await;
    assert_eq!(reply.body, bytes(70_000, 22));
}
