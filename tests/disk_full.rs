//! A real full disk: the segment files live on an 8 MiB tmpfs mounted for the
//! test (root / CAP_SYS_ADMIN), with the index elsewhere or on the same
//! tmpfs. Uploads fill it until the kernel answers ENOSPC; the client must
//! get 507 `storage_full` and no other 5xx, nothing committed may be damaged,
//! and once space is freed (an upload terminated) the service recovers by
//! itself: a new upload succeeds and the interrupted one resumes, without a
//! restart.
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

fn statvfs(path: &Path) -> libc::statvfs {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and a zeroed out-struct of the right type.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut stat) }, 0);
    stat
}

fn tmpfs_used(path: &Path) -> u64 {
    let stat = statvfs(path);
    (stat.f_blocks - stat.f_bfree) * stat.f_frsize
}

/// Free bytes, and the size of a block (a page on tmpfs).
fn tmpfs_free(path: &Path) -> (u64, u64) {
    let stat = statvfs(path);
    (stat.f_bavail * stat.f_frsize, stat.f_frsize)
}

/// The offset a refused PATCH left, as HEAD reports it: the acknowledged
/// one, or, only when the index shares the full disk, the one the refused
/// chunk would have reached (its record write failed after its batch had
/// reached sled's log: never acknowledged, but durable on reopen and backed
/// by synced segments). Clients resume from HEAD, so the test does too.
async fn offset_after_refusal(
    up: &Upload<'_>,
    acked: usize,
    refused_end: usize,
    placement: Placement,
) -> usize {
    let head = up.head().await;
    head.assert_status(200);
    let offset: usize = head
        .header("upload-offset")
        .and_then(|v| v.parse().ok())
        .expect("an Upload-Offset");
    match placement {
        Placement::Segments => assert_eq!(offset, acked, "a refused chunk moved the offset"),
        Placement::Everything => assert!(
            offset == acked || offset == refused_end,
            "offset {offset} after a refused chunk [{acked}, {refused_end})"
        ),
    }
    offset
}

/// Fills the file system with a ballast file; returns its path.
fn fill_with_ballast(mount: &Path) -> PathBuf {
    use std::io::Write;
    let path = mount.join("ballast");
    let mut ballast = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 4096];
    while let Ok(1..) = ballast.write(&block) {}
    path
}

/// Once space has returned, B takes a chunk again, and the index took its
/// headroom back.
async fn goes_on(b: &Upload<'_>, b_data: &[u8], b_offset: usize, headroom: &Path) -> usize {
    let end = b_offset + CHUNK;
    b.patch(b_offset as u64, &b_data[b_offset..end])
        .await
        .assert_offset(end as u64);
    assert!(headroom.exists(), "the headroom was not taken back");
    end
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
    let headroom = mount.join("data").join("index").join("headroom");
    if let Placement::Everything = placement {
        b_offset = squeeze_index(&mount, &b, &b_data, b_offset, &headroom).await;
        b_offset = goes_on(&b, &b_data, b_offset, &headroom).await;
        b_offset = refuse_record_after_its_segment(&mount, &b, &b_data, b_offset).await;
        b_offset = goes_on(&b, &b_data, b_offset, &headroom).await;
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
    let a_offset = offset_after_refusal(&a, a_offset, a_offset + CHUNK, placement).await;
    // Everything else while full: 507 or success, never another 5xx.
    let again = a
        .patch(a_offset as u64, &a_data[a_offset..a_offset + CHUNK])
        .await;
    again.assert_problem(507, "storage_full");
    offset_after_refusal(&a, a_offset, a_offset, placement).await;
    let b_full = b
        .patch(b_offset as u64, &b_data[b_offset..b_offset + CHUNK])
        .await;
    b_full.assert_problem(507, "storage_full");
    let b_offset = offset_after_refusal(&b, b_offset, b_offset + CHUNK, placement).await;
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
        println!(
            "index headroom while full: {}",
            if headroom.exists() {
                "kept"
            } else {
                "given up"
            }
        );
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
    let mut b_offset = b_offset;
    while b_offset < b_data.len() {
        let end = (b_offset + CHUNK).min(b_data.len());
        b.patch(b_offset as u64, &b_data[b_offset..end])
            .await
            .assert_offset(end as u64);
        b_offset = end;
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
    if let Placement::Everything = placement {
        let reserved = std::fs::metadata(&headroom).map(|m| m.len());
        assert_eq!(
            reserved.ok(),
            Some(1 << 20),
            "the index took its headroom back"
        );
    }
    drop(server);
    drop(tmpfs);
}

/// The index on the same full file system: an index write the disk refuses
/// closes sled's instance (whose error would otherwise stick until a
/// restart), and the index reopens from disk, using its headroom, so status,
/// downloads and terminations go on while new bytes get 507.
#[tokio::test]
async fn a_full_disk_shared_with_the_index_recovers_without_restart() {
    full_disk(Placement::Everything).await;
}

/// Small PATCHes on B are index writes only (the bytes go to B's tail
/// record): take the last free byte with a ballast file and send them until
/// the index itself is refused, then free the ballast. Returns B's offset.
async fn squeeze_index(
    mount: &Path,
    b: &Upload<'_>,
    b_data: &[u8],
    mut b_offset: usize,
    headroom: &Path,
) -> usize {
    const SMALL: usize = 1000;
    let path = fill_with_ballast(mount);
    let mut accepted = 0;
    let refused_end = loop {
        assert!(
            accepted < 64,
            "64 KiB of tail records fitted on a full disk?"
        );
        let end = b_offset + SMALL;
        let reply = b.patch(b_offset as u64, &b_data[b_offset..end]).await;
        status_ok_or_full(&reply, "squeezing the index");
        if reply.status.as_u16() == 507 {
            break end;
        }
        reply.assert_offset(end as u64);
        b_offset = end;
        accepted += 1;
    };
    // The index met the full disk and gave its headroom up to reopen: while
    // the disk stays full, reads work and new bytes are refused.
    assert!(!headroom.exists(), "the index kept its headroom");
    b.get().await.assert_status(404);
    let more = b
        .patch(b_offset as u64, &b_data[b_offset..b_offset + SMALL])
        .await;
    more.assert_problem(507, "storage_full");
    std::fs::remove_file(&path).unwrap();
    let offset = offset_after_refusal(b, b_offset, refused_end, Placement::Everything).await;
    println!("index refused after {accepted} small PATCHes; B at {offset}");
    offset
}

/// PATCHes that each complete one segment when there is room for exactly
/// that segment: the segment is written and synced, then the index writes
/// the record that counts it and a large tail record, until the index needs
/// room it does not have and refuses the record. The file then holds a
/// segment its record may not count; once space returns, the next PATCH
/// cuts it off (under a new write generation) or, if the refused record
/// reached the log, goes on after it. Returns B's offset.
async fn refuse_record_after_its_segment(
    mount: &Path,
    b: &Upload<'_>,
    b_data: &[u8],
    mut b_offset: usize,
) -> usize {
    use strongroom::crypto::seg1;
    // Left in the tail record each time, so the index log moves on fast.
    const TAIL: usize = 60_000;
    let segments = mount.join("data").join("segments");
    let file = segments.join(&b.id()[..2]).join(format!("{}.seg", b.id()));
    let file_len = || std::fs::metadata(&file).unwrap().len();
    let ballast = fill_with_ballast(mount);
    let ballast_file = std::fs::OpenOptions::new()
        .write(true)
        .open(&ballast)
        .unwrap();
    let (_, page) = tmpfs_free(mount);
    let pages = |at: u64| at.div_ceil(page);
    for accepted in 0..16 {
        let index = (b_offset / seg1::SEGMENT_SIZE) as u64;
        let end = (index as usize + 1) * seg1::SEGMENT_SIZE + TAIL;
        assert_eq!(file_len(), seg1::segment_offset(index));
        let needed =
            (pages(seg1::segment_offset(index + 1)) - pages(seg1::segment_offset(index))) * page;
        let len = ballast_file.metadata().unwrap().len();
        ballast_file
            .set_len(len.div_ceil(page) * page - needed)
            .unwrap();
        assert_eq!(tmpfs_free(mount).0, needed, "room for exactly one segment");
        let reply = b.patch(b_offset as u64, &b_data[b_offset..end]).await;
        status_ok_or_full(&reply, "a segment with exactly its room");
        if reply.status.is_success() {
            reply.assert_offset(end as u64);
            b_offset = end;
            continue;
        }
        assert_eq!(
            file_len(),
            seg1::segment_offset(index + 1),
            "the segment was written and the index refused its record"
        );
        std::fs::remove_file(&ballast).unwrap();
        let offset = offset_after_refusal(b, b_offset, end, Placement::Everything).await;
        println!(
            "index refused the record of a written segment after {accepted} accepted; B at \
             {offset} ({})",
            if offset == end {
                "the refused record had reached the log"
            } else {
                "the segment gets cut off"
            }
        );
        return offset;
    }
    panic!("the index never ran out of room");
}
