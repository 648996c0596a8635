//! A real full disk: the segment files live on an 8 MiB tmpfs mounted for the
//! test (root / CAP_SYS_ADMIN). Uploads fill it until the kernel answers
//! ENOSPC; the client must get 507 `storage_full` and no other 5xx, nothing
//! committed may be damaged, and once space is freed (an upload terminated)
//! the service recovers by itself: a new upload succeeds and the interrupted
//! one resumes, without a restart.
//!
//! Where mounting is impossible the test fails, saying so, unless
//! `STRONGROOM_SKIP_MOUNT_TESTS=1` is set (then it is skipped, loudly). The
//! fault-injecting disk of `faults.rs` covers the same path without a mount.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::support::*;

const TMPFS_SIZE: &str = "8m";
const CHUNK: usize = 256 * 1024;

/// A tmpfs mounted on a fresh temporary directory, unmounted on drop (even
/// when the test panics).
struct Tmpfs {
    dir: Option<tempfile::TempDir>,
    target: CString,
}

impl Tmpfs {
    fn mount(size: &str) -> io::Result<Tmpfs> {
        let dir = tempfile::tempdir()?;
        let target =
            CString::new(dir.path().as_os_str().as_bytes()).expect("no NUL in a temp path");
        let options = CString::new(format!("size={size},mode=0700")).expect("no NUL");
        // SAFETY: every pointer is a valid NUL-terminated string that lives
        // across the call; `data` is the option string tmpfs expects.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                options.as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Tmpfs {
            dir: Some(dir),
            target,
        })
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().expect("mounted").path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // SAFETY: `target` is a valid NUL-terminated path.
        let rc = unsafe { libc::umount2(self.target.as_ptr(), 0) };
        if rc != 0 {
            // Still busy (a file handle not yet closed): detach it now, the
            // kernel frees it when the last handle goes.
            // SAFETY: as above.
            unsafe { libc::umount2(self.target.as_ptr(), libc::MNT_DETACH) };
        }
        drop(self.dir.take());
    }
}

/// Mounts the test's tmpfs, or says why not: a failure unless mount tests
/// are explicitly skipped.
fn mount_or_skip() -> Option<Tmpfs> {
    match Tmpfs::mount(TMPFS_SIZE) {
        Ok(tmpfs) => Some(tmpfs),
        Err(err) if std::env::var("STRONGROOM_SKIP_MOUNT_TESTS").as_deref() == Ok("1") => {
            eprintln!(
                "SKIPPED disk_full: cannot mount a tmpfs (size={TMPFS_SIZE}) ({err}); \
                 STRONGROOM_SKIP_MOUNT_TESTS=1 is set"
            );
            None
        }
        Err(err) => panic!(
            "disk_full needs to mount a tmpfs (size={TMPFS_SIZE}) (root or CAP_SYS_ADMIN) and \
             could not: {err}. Run as root, or set STRONGROOM_SKIP_MOUNT_TESTS=1 to skip \
             (the fault-injecting disk in faults.rs covers the same path without a mount)."
        ),
    }
}

/// Where the data dir's parts go.
#[derive(Clone, Copy, Debug)]
enum Placement {
    /// `segments/` on the tmpfs (a symlink), the index on the big disk.
    Segments,
    /// The whole data dir (index, keys, segments) on the tmpfs.
    Everything,
}

fn place(config: &mut strongroom::config::Config, tmpfs: &Path, placement: Placement) {
    match placement {
        Placement::Segments => {
            let data = config.storage.data_dir.clone();
            std::fs::create_dir_all(&data).unwrap();
            std::os::unix::fs::symlink(tmpfs, data.join("segments")).unwrap();
        }
        Placement::Everything => config.storage.data_dir = tmpfs.join("data"),
    }
}

fn tmpfs_used(path: &Path) -> u64 {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and a zeroed out-struct of the right type.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut stat) }, 0);
    (stat.f_blocks - stat.f_bfree) * stat.f_frsize
}

fn status_ok_or_full(reply: &Reply, what: &str) {
    let status = reply.status.as_u16();
    if status == 507 {
        reply.assert_problem(507, "storage_full");
    } else {
        assert!(
            reply.status.is_success(),
            "{what}: {status} {}",
            String::from_utf8_lossy(&reply.body)
        );
    }
}

#[tokio::test]
async fn a_real_full_disk_answers_507_keeps_objects_and_recovers_without_restart() {
    full_disk(Placement::Segments).await;
}

async fn full_disk(placement: Placement) {
    let Some(tmpfs) = mount_or_skip() else {
        return;
    };
    let mount: PathBuf = tmpfs.path().to_owned();
    let server = TestServer::start_with(|config| place(config, &mount, placement)).await;

    // Committed objects that must survive the full disk untouched.
    let kept: Vec<(String, Vec<u8>)> = {
        let mut kept = Vec::new();
        for (n, size) in [200_000, 65_536, 1_000].into_iter().enumerate() {
            let data = bytes(size, 700 + n as u64);
            kept.push((server.upload(&data).await.id().to_owned(), data));
        }
        kept
    };

    // B: a 4 MiB upload that gets its first MiB in, then is interrupted by
    // the full disk and must resume later.
    let b_data = bytes(4 << 20, 710);
    let b = server.create(b_data.len() as u64).await;
    let mut b_offset = 0;
    while b_offset < 1 << 20 {
        b.patch(b_offset as u64, &b_data[b_offset..b_offset + CHUNK])
            .await
            .assert_offset((b_offset + CHUNK) as u64);
        b_offset += CHUNK;
    }

    // A: larger than the disk; fill until the kernel says ENOSPC.
    let a_data = bytes(12 << 20, 711);
    let a = server.create(a_data.len() as u64).await;
    let mut a_offset = 0;
    let mut statuses = Vec::new();
    let full = loop {
        assert!(a_offset < a_data.len(), "12 MiB fitted on an 8 MiB tmpfs?");
        let reply = a
            .patch(a_offset as u64, &a_data[a_offset..a_offset + CHUNK])
            .await;
        statuses.push(reply.status.as_u16());
        status_ok_or_full(&reply, "filling A");
        if reply.status.as_u16() == 507 {
            break reply;
        }
        a_offset += CHUNK;
    };
    println!(
        "disk full after {} MiB of A ({} chunks, statuses {:?}); tmpfs used {} KiB",
        a_offset >> 20,
        statuses.len(),
        statuses.iter().collect::<std::collections::BTreeSet<_>>(),
        tmpfs_used(&mount) >> 10
    );
    full.assert_problem(507, "storage_full");
    // The refused chunk was not acknowledged: A stays where it was.
    a.head().await.assert_offset(a_offset as u64);
    // Everything else while full: 507 or success, never another 5xx.
    let again = a
        .patch(a_offset as u64, &a_data[a_offset..a_offset + CHUNK])
        .await;
    again.assert_problem(507, "storage_full");
    let b_full = b
        .patch(b_offset as u64, &b_data[b_offset..b_offset + CHUNK])
        .await;
    b_full.assert_problem(507, "storage_full");
    b.head().await.assert_offset(b_offset as u64);
    let one_shot = bytes(3 << 20, 712);
    let reply = server
        .send(
            "POST",
            "/files/",
            &[TUS, OCTETS, ("Upload-Length", &one_shot.len().to_string())],
            one_shot.clone(),
        )
        .await;
    // Creation-with-upload on a full disk: the creation may fit (a 64-byte
    // header) and the body not, or neither.
    status_ok_or_full(&reply, "creation with upload while full");
    if reply.status.is_success() {
        assert_ne!(
            reply.header("upload-offset"),
            Some(one_shot.len().to_string().as_str()),
            "3 MiB fitted on a full disk?"
        );
    }

    if let Placement::Everything = placement {
        squeeze_index(&mount, &b, b_offset).await;
    }

    // Nothing committed was touched.
    for (id, data) in &kept {
        let got = server
            .send("GET", &format!("/objects/{id}"), &[], Vec::new())
            .await;
        got.assert_status(200);
        assert!(got.body == *data, "object {id} changed on a full disk");
    }
    let scrub = server.appliance().ingest.scrub().await.expect("scrub");
    assert!(scrub.is_clean(), "damage after a full disk: {scrub:?}");

    // Free space: terminate A. No restart from here on.
    a.delete().await.assert_status(204);
    let c_data = bytes(1 << 20, 713);
    let c = server.upload(&c_data).await;
    assert_eq!(
        c.get().await.body,
        c_data,
        "a new upload after space returned"
    );
    // The interrupted upload resumes from its acknowledged offset.
    b.head().await.assert_offset(b_offset as u64);
    while b_offset < b_data.len() {
        b.patch(b_offset as u64, &b_data[b_offset..b_offset + CHUNK])
            .await
            .assert_offset((b_offset + CHUNK) as u64);
        b_offset += CHUNK;
    }
    let got = b.get().await;
    got.assert_status(200);
    assert!(got.body == b_data, "the resumed upload's bytes");
    for (id, data) in &kept {
        let got = server
            .send("GET", &format!("/objects/{id}"), &[], Vec::new())
            .await;
        assert!(got.body == *data, "object {id} after recovery");
    }
    let scrub = server.appliance().ingest.scrub().await.expect("scrub");
    assert!(scrub.is_clean(), "damage after recovery: {scrub:?}");
    assert_eq!(scrub.objects, 5, "{scrub:?}");
    drop(server);
    drop(tmpfs);
}

/// The index on the same full file system: today sled keeps the ENOSPC of a
/// failed flush as a sticky error, so once the index itself hits a full disk
/// every index write fails until a restart reopens it, even after space
/// returns (and the upload whose write failed is fail-stopped, 503). Keep
/// `index/` on a file system that cannot fill with segments, or fix the index
/// (reserve headroom / reopen on ENOSPC) and drop the ignore.
#[tokio::test]
#[ignore = "known: the index (sled) stays failed after ENOSPC until restart"]
async fn a_full_disk_shared_with_the_index_recovers_without_restart() {
    full_disk(Placement::Everything).await;
}

/// The index shares the full disk: take the last free byte with a ballast
/// file, ask for index writes only (a small PATCH is a tail record), then
/// free the ballast.
async fn squeeze_index(mount: &Path, b: &Upload<'_>, b_offset: usize) {
    use std::io::Write;
    let path = mount.join("ballast");
    let mut ballast = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 4096];
    while let Ok(1..) = ballast.write(&block) {}
    drop(ballast);
    let small = bytes(1000, 720);
    let full = b.patch(b_offset as u64, &small).await;
    full.assert_problem(507, "storage_full");
    std::fs::remove_file(&path).unwrap();
    b.head().await.assert_offset(b_offset as u64);
}
