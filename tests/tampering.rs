//! Tampering at rest: committed objects (sizes crossing segment boundaries)
//! and staged uploads are damaged on disk in every way an operator, a failing
//! disk or an attacker with access to the data dir could, then read back. A
//! download of a damaged object must fail (an error, or a broken transfer
//! carrying only verified bytes), never complete with wrong bytes; a Range
//! over an untouched segment of the same object may still succeed. Scrub (in
//! the running appliance and `strongroom scrub` on the stopped data dir) must
//! name exactly the damaged objects; every other object stays downloadable.
//!
//! Prints the detection table (`cargo test --test main tampering -- --nocapture`).

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use strongroom::crypto::{HEADER_LEN, SEALED_SEGMENT_LEN, SEGMENT_SIZE, segment_offset};
use strongroom::disk::{Disk, DiskFile, OpenMode, OsDisk};
use strongroom::id::UploadId;
use strongroom::ingest::{Fault, ScrubReport};
use strongroom::staging::{Staging, TailChange};

use crate::support::*;

const SEG: usize = SEGMENT_SIZE;

/// Copies of segment files taken just before they were cut back.
type Snapshots = Arc<Mutex<Vec<(PathBuf, Vec<u8>)>>>;

/// The real disk, keeping a copy of every segment file's bytes just before
/// it is cut back (a discarded chunk, or recovery after a failed one): the
/// "old copy" an attacker restoring a backup or a snapshot of the data dir
/// would have. It can also fail every fsync of one file, which stops that
/// upload with bytes written past what its record acknowledges.
#[derive(Default)]
struct SnapshotDisk {
    cut: Snapshots,
    fail_sync: Arc<Mutex<Option<PathBuf>>>,
}

struct SnapshotFile {
    inner: Arc<dyn DiskFile>,
    path: PathBuf,
    cut: Snapshots,
    fail_sync: Arc<Mutex<Option<PathBuf>>>,
}

impl Disk for SnapshotDisk {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn DiskFile>> {
        Ok(Arc::new(SnapshotFile {
            inner: OsDisk.open(path, mode)?,
            path: path.to_owned(),
            cut: self.cut.clone(),
            fail_sync: self.fail_sync.clone(),
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

impl DiskFile for SnapshotFile {
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.inner.write_at(offset, data)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn sync(&self) -> io::Result<()> {
        if self.fail_sync.lock().unwrap().as_ref() == Some(&self.path) {
            return Err(io::Error::from_raw_os_error(5)); // EIO
        }
        self.inner.sync()
    }
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        if self.inner.size()? > len {
            let before = std::fs::read(&self.path)?;
            self.cut.lock().unwrap().push((self.path.clone(), before));
        }
        self.inner.set_len(len)
    }
}

/// Uploads and commits `data`; an empty object commits at creation.
async fn upload(server: &TestServer, data: &[u8]) -> String {
    if data.is_empty() {
        return server.create(0).await.id().to_owned();
    }
    server.upload(data).await.id().to_owned()
}

fn segment_file(server: &TestServer, id: &str) -> PathBuf {
    server
        .data_dir()
        .join("segments")
        .join(&id[..2])
        .join(format!("{id}.seg"))
}

/// Byte range of sealed segment `index` in a file.
fn sealed(index: u64) -> std::ops::Range<usize> {
    let start = segment_offset(index) as usize;
    start..start + SEALED_SEGMENT_LEN
}

fn edit(path: &Path, change: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).expect("segment file");
    change(&mut bytes);
    std::fs::write(path, &bytes).expect("tamper");
}

/// What a GET (or ranged GET) delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Read {
    /// An error status: nothing served.
    Refused(u16),
    /// The transfer broke after `n` bytes, all of them correct.
    Broken(usize),
    /// The complete, correct bytes.
    Intact,
    /// The transfer broke after `n` bytes that were not all the uploaded
    /// ones: authentic but stale segments, caught only by the object digest
    /// before the last chunk. The client never gets a complete wrong body.
    /// Write generations leave no tamper here that reads this way.
    BrokenStale(usize),
    /// A complete transfer of bytes that differ from what was uploaded: must
    /// never happen.
    Wrong { status: u16, len: usize },
}

impl Read {
    fn detected(&self) -> bool {
        matches!(
            self,
            Read::Refused(_) | Read::Broken(_) | Read::BrokenStale(_)
        )
    }
}

/// GETs `path` (with an optional Range) and compares with `expected`, the
/// bytes the request should return.
async fn read(server: &TestServer, path: &str, range: Option<&str>, expected: &[u8]) -> Read {
    let mut request = server.http.get(server.url(path));
    if let Some(range) = range {
        request = request.header("Range", range);
    }
    let mut response = match request.send().await {
        Ok(response) => response,
        // The connection closed before a response head (the body failed at
        // its first frame): a broken transfer with nothing served.
        Err(err) if err.is_request() => return Read::Broken(0),
        Err(err) => panic!("GET {path}: {err}"),
    };
    let status = response.status().as_u16();
    if !response.status().is_success() {
        return Read::Refused(status);
    }
    let mut body = Vec::new();
    let broke = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    let prefix_ok = body.len() <= expected.len() && body[..] == expected[..body.len()];
    match (prefix_ok, broke || body.len() < expected.len()) {
        (true, false) => Read::Intact,
        (true, true) => Read::Broken(body.len()),
        (false, true) => Read::BrokenStale(body.len()),
        (false, false) => Read::Wrong {
            status,
            len: body.len(),
        },
    }
}

struct Case {
    name: &'static str,
    /// The objects or uploads this tamper damages.
    damaged: Vec<String>,
    read: Vec<Read>,
    scrub: bool,
}

fn id_of(text: &str) -> UploadId {
    text.parse().expect("upload id")
}

fn faults_of<'a>(report: &'a ScrubReport, id: &str) -> &'a [Fault] {
    report
        .damaged
        .iter()
        .find(|d| d.id == Some(id_of(id)))
        .map_or(&[], |d| &d.faults)
}

#[tokio::test]
async fn every_tamper_is_detected_by_reads_and_by_scrub() {
    let disk = SnapshotDisk::default();
    let cut = disk.cut.clone();
    let fail_sync = disk.fail_sync.clone();
    let mut server = TestServer::start_on_disk(Arc::new(disk), |_| {}).await;

    // name, size: every size class around the 64 KiB segment boundary.
    let specs: [(&str, usize); 15] = [
        ("flip", 200_000),
        ("final_cut", 2 * SEG),
        ("zero4k", 300_000),
        ("trunc", 250_000),
        ("xswap_a", 140_000),
        ("xswap_b", 140_000),
        ("inswap", 3 * SEG),
        ("replaced", 150_000),
        ("donor", 150_000),
        ("header", 100_000),
        ("clean_1seg", SEG),
        ("clean_1b", 1),
        ("clean_0b", 0),
        ("clean_big", 4 * SEG + 17),
        ("clean_small", SEG - 1),
    ];
    let mut objects: Vec<(&str, String, Vec<u8>)> = Vec::new();
    for (n, (name, size)) in specs.iter().enumerate() {
        let data = bytes(*size, 900 + n as u64);
        let id = upload(&server, &data).await;
        objects.push((name, id, data));
    }
    let find = |name: &str| {
        objects
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, id, data)| (id.clone(), data.clone()))
            .expect("object")
    };

    // The stale copy: a chunk of other bytes is sealed, written and discarded
    // (checksum mismatch), then the real bytes commit under the same key.
    let stale_data = bytes(300_000, 950);
    let stale_id = {
        let up = server.create(stale_data.len() as u64).await;
        let wrong = bytes(300_000, 951);
        let checksum = format!(
            "sha256 {}",
            BASE64.encode(strongroom::crypto::sha256(&stale_data))
        );
        up.patch_with(0, &wrong, &[("Upload-Checksum", &checksum)])
            .await
            .assert_problem(460, "checksum_mismatch");
        up.patch(0, &stale_data)
            .await
            .assert_offset(stale_data.len() as u64);
        up.id().to_owned()
    };
    let stale_path = segment_file(&server, &stale_id);
    let old_copy = cut
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|(path, bytes)| *path == stale_path && bytes.len() >= sealed(3).end)
        .map(|(_, bytes)| bytes.clone())
        .expect("the discarded chunk's sealed segments were on disk");

    // A discard mid-upload: bytes [0, 150,000) are acknowledged, then a
    // chunk of other bytes seals segments 2 to 5 (the tail record's 18,928
    // bytes completing segment 2) and fails its checksum, so the file is cut
    // back to segment 2. The right bytes at the same offsets then commit.
    let rewound_data = bytes(500_000, 952);
    let rewound_id = {
        let up = server.create(rewound_data.len() as u64).await;
        up.patch(0, &rewound_data[..150_000])
            .await
            .assert_offset(150_000);
        let right = &rewound_data[150_000..450_000];
        let wrong = bytes(right.len(), 953);
        let checksum = format!(
            "sha256 {}",
            BASE64.encode(strongroom::crypto::sha256(right))
        );
        up.patch_with(150_000, &wrong, &[("Upload-Checksum", &checksum)])
            .await
            .assert_problem(460, "checksum_mismatch");
        up.head().await.assert_offset(150_000);
        up.patch(150_000, &rewound_data[150_000..])
            .await
            .assert_offset(rewound_data.len() as u64);
        up.id().to_owned()
    };
    let rewound_path = segment_file(&server, &rewound_id);
    let rewound_copy = cut
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|(path, bytes)| *path == rewound_path && bytes.len() >= sealed(5).end)
        .map(|(_, bytes)| bytes.clone())
        .expect("the discarded chunk's sealed segments 2 to 5 were on disk");

    // A cut by recovery: bytes [0, 100,000) are acknowledged, then a chunk of
    // other bytes completing the upload is written (segments 1 to 6) but its
    // fsync fails, so nothing of it is acknowledged and the upload stops.
    // The restart below cuts the file back to segment 1; the right bytes are
    // then sent again at the same offsets.
    let recovered_data = bytes(400_000, 954);
    let recovered_id = {
        let up = server.create(recovered_data.len() as u64).await;
        up.patch(0, &recovered_data[..100_000])
            .await
            .assert_offset(100_000);
        *fail_sync.lock().unwrap() = Some(segment_file(&server, up.id()));
        let failed = up.patch(100_000, &bytes(300_000, 955)).await;
        *fail_sync.lock().unwrap() = None;
        assert!(!failed.status.is_success(), "{:?}", failed.status);
        up.head().await.assert_status(503);
        up.id().to_owned()
    };
    let recovered_path = segment_file(&server, &recovered_id);
    let recovered_len = std::fs::metadata(&recovered_path).unwrap().len();
    assert!(
        recovered_len as usize >= sealed(5).end,
        "the failed chunk's segments are on disk ({recovered_len} bytes)"
    );

    // Staged uploads: one whose tail record will be altered, one whose full
    // segment will be flipped, one left alone.
    let staged = |seed: u64| bytes(300_000, seed);
    let mut staged_ids = Vec::new();
    for (seed, offset) in [(960, 100_000), (961, 140_000), (962, 70_000)] {
        let up = server.create(300_000).await;
        up.patch(0, &staged(seed)[..offset])
            .await
            .assert_offset(offset as u64);
        staged_ids.push(up.id().to_owned());
    }
    let (tail_id, staged_flip_id, staged_clean_id) = (
        staged_ids[0].clone(),
        staged_ids[1].clone(),
        staged_ids[2].clone(),
    );

    // Before any tamper everything is clean and every byte is accounted for.
    let before = server.appliance().ingest.scrub().await.expect("scrub");
    assert!(before.is_clean(), "clean data reported damaged: {before:?}");
    assert_eq!(before.objects, specs.len() as u64 + 2);
    assert_eq!(before.uploads, 4);
    let committed: u64 = specs.iter().map(|(_, s)| *s as u64).sum::<u64>() + 300_000 + 500_000;
    assert_eq!(
        before.bytes_verified,
        committed + 100_000 + 140_000 + 70_000 + 100_000
    );

    // ---- the tail record, in the index: only with the server stopped ----
    let appliance = server.appliance.take().expect("running");
    appliance.stop().await;
    {
        let staging = Staging::open(&server.data_dir(), Arc::new(OsDisk)).expect("open index");
        let id = id_of(&tail_id);
        let record = staging.get(&id).unwrap().expect("record");
        let mut tail = staging.tail(&id).unwrap().expect("a tail record");
        let middle = tail.len() / 2;
        tail[middle] ^= 0x20;
        staging.put(&record, TailChange::Set(tail)).unwrap();
    }
    server.restart().await;
    let recovered_copy = cut
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|(path, bytes)| *path == recovered_path && bytes.len() >= sealed(5).end)
        .map(|(_, bytes)| bytes.clone())
        .expect("recovery cut the failed chunk's segments off");
    {
        let up = Upload {
            server: &server,
            path: format!("/files/{recovered_id}"),
        };
        up.head().await.assert_offset(100_000);
        up.patch(100_000, &recovered_data[100_000..])
            .await
            .assert_offset(recovered_data.len() as u64);
    }

    // ---- the segment files, with the server running ----
    let (flip, _) = find("flip");
    edit(&segment_file(&server, &flip), |f| {
        f[sealed(1).start + 5000] ^= 0x04
    });
    let (zero4k, _) = find("zero4k");
    edit(&segment_file(&server, &zero4k), |f| {
        // The 4 KiB block at 132 KiB lies inside segment 2.
        let at = 33 * 4096;
        assert!(sealed(2).contains(&at) && sealed(2).contains(&(at + 4095)));
        f[at..at + 4096].fill(0);
    });
    let (trunc, _) = find("trunc");
    edit(&segment_file(&server, &trunc), |f| {
        f.truncate(sealed(2).start + 1000)
    });
    let (final_cut, _) = find("final_cut");
    edit(&segment_file(&server, &final_cut), |f| {
        // Only the empty final segment (28 bytes) goes: every data byte stays.
        assert_eq!(f.len(), sealed(2).start + 28);
        f.truncate(sealed(2).start)
    });
    let (xa, _) = find("xswap_a");
    let (xb, _) = find("xswap_b");
    {
        let (pa, pb) = (segment_file(&server, &xa), segment_file(&server, &xb));
        let (mut a, mut b) = (std::fs::read(&pa).unwrap(), std::fs::read(&pb).unwrap());
        let seg1 = sealed(1);
        let from_a = a[seg1.clone()].to_vec();
        a[seg1.clone()].copy_from_slice(&b[seg1.clone()]);
        b[seg1].copy_from_slice(&from_a);
        std::fs::write(&pa, a).unwrap();
        std::fs::write(&pb, b).unwrap();
    }
    let (inswap, _) = find("inswap");
    edit(&segment_file(&server, &inswap), |f| {
        let zero = f[sealed(0)].to_vec();
        let one = f[sealed(1)].to_vec();
        f[sealed(0)].copy_from_slice(&one);
        f[sealed(1)].copy_from_slice(&zero);
    });
    let (replaced, _) = find("replaced");
    let (donor, _) = find("donor");
    std::fs::copy(
        segment_file(&server, &donor),
        segment_file(&server, &replaced),
    )
    .unwrap();
    let (header, _) = find("header");
    edit(&segment_file(&server, &header), |f| f[40] ^= 0x01);
    edit(&stale_path, |f| {
        // Replay the old copy's authentic segments 0..=3 over the object.
        let span = sealed(0).start..sealed(3).end;
        f[span.clone()].copy_from_slice(&old_copy[span]);
    });
    edit(&rewound_path, |f| {
        // Put the discarded chunk's segments 2-5 back where the rewind cut
        // them off; segments 0-1 (before the cut) and 6-7 stay current.
        let span = sealed(2).start..sealed(5).end;
        f[span.clone()].copy_from_slice(&rewound_copy[span]);
    });
    edit(&recovered_path, |f| {
        // The failed chunk's segments 1-5, where recovery cut them off.
        let span = sealed(1).start..sealed(5).end;
        f[span.clone()].copy_from_slice(&recovered_copy[span]);
    });
    edit(&segment_file(&server, &staged_flip_id), |f| {
        f[HEADER_LEN + 100] ^= 0x80
    });

    // ---- reads ----
    let get = |name: &str| find(name);
    let mut cases = Vec::new();
    {
        let (id, data) = get("flip");
        let path = format!("/objects/{id}");
        let whole = read(&server, &path, None, &data).await;
        // Segment 0 is untouched: its bytes may still be served, verified.
        let seg0 = read(&server, &path, Some("bytes=0-65535"), &data[..SEG]).await;
        assert_eq!(seg0, Read::Intact, "a range over an untouched segment");
        let seg1 = read(
            &server,
            &path,
            Some("bytes=65536-131071"),
            &data[SEG..2 * SEG],
        )
        .await;
        cases.push(Case {
            name: "flipped bit in segment 1",
            damaged: vec![id],
            read: vec![whole, seg1],
            scrub: false,
        });
    }
    {
        let (id, data) = get("zero4k");
        let path = format!("/objects/{id}");
        let whole = read(&server, &path, None, &data).await;
        let seg0 = read(&server, &path, Some("bytes=100-60000"), &data[100..60_001]).await;
        assert_eq!(seg0, Read::Intact, "a range over an untouched segment");
        cases.push(Case {
            name: "zeroed 4 KiB block (segment 2)",
            damaged: vec![id],
            read: vec![whole],
            scrub: false,
        });
    }
    {
        let (id, data) = get("trunc");
        let path = format!("/objects/{id}");
        let whole = read(&server, &path, None, &data).await;
        let tail = read(&server, &path, Some("bytes=-10"), &data[data.len() - 10..]).await;
        cases.push(Case {
            name: "file truncated inside segment 2",
            damaged: vec![id],
            read: vec![whole, tail],
            scrub: false,
        });
    }
    {
        let (id, data) = get("final_cut");
        let path = format!("/objects/{id}");
        let whole = read(&server, &path, None, &data).await;
        let seg0 = read(&server, &path, Some("bytes=0-65535"), &data[..SEG]).await;
        assert_eq!(seg0, Read::Intact, "a range over an untouched segment");
        cases.push(Case {
            name: "file cut at the empty final segment",
            damaged: vec![id],
            read: vec![whole],
            scrub: false,
        });
    }
    for name in ["xswap_a", "xswap_b"] {
        let (id, data) = get(name);
        let whole = read(&server, &format!("/objects/{id}"), None, &data).await;
        let case = if name == "xswap_a" {
            "segment 1 swapped between two objects (a)"
        } else {
            "segment 1 swapped between two objects (b)"
        };
        cases.push(Case {
            name: case,
            damaged: vec![id],
            read: vec![whole],
            scrub: false,
        });
    }
    {
        let (id, data) = get("inswap");
        let whole = read(&server, &format!("/objects/{id}"), None, &data).await;
        cases.push(Case {
            name: "segments 0 and 1 swapped within an object",
            damaged: vec![id],
            read: vec![whole],
            scrub: false,
        });
    }
    {
        let (id, data) = get("replaced");
        let whole = read(&server, &format!("/objects/{id}"), None, &data).await;
        cases.push(Case {
            name: "file replaced by another object's file",
            damaged: vec![id],
            read: vec![whole],
            scrub: false,
        });
    }
    {
        let (id, data) = get("header");
        let whole = read(&server, &format!("/objects/{id}"), None, &data).await;
        cases.push(Case {
            name: "damaged header (key commitment byte)",
            damaged: vec![id],
            read: vec![whole],
            scrub: false,
        });
    }
    {
        let path = format!("/objects/{stale_id}");
        // The replayed segments were sealed under the generation the discard
        // ended: their tags fail, for a whole GET and for a Range alike.
        let whole = read(&server, &path, None, &stale_data).await;
        let first = read(&server, &path, Some("bytes=0-999"), &stale_data[..1000]).await;
        cases.push(Case {
            name: "old copy of the same object replayed (segments 0-3)",
            damaged: vec![stale_id.clone()],
            read: vec![whole, first],
            scrub: false,
        });
    }
    {
        let path = format!("/objects/{rewound_id}");
        let data = &rewound_data;
        // Before the cut and after the replayed span, segments still open.
        let before_cut = read(&server, &path, Some("bytes=0-131071"), &data[..2 * SEG]).await;
        assert_eq!(before_cut, Read::Intact, "a range before the rewound index");
        let after = read(&server, &path, Some("bytes=393216-"), &data[6 * SEG..]).await;
        assert_eq!(after, Read::Intact, "a range past the replayed segments");
        let whole = read(&server, &path, None, data).await;
        // The stale segments held other bytes from offset 150,000 on; a range
        // over them must never serve those bytes.
        let stale = read(
            &server,
            &path,
            Some("bytes=200000-299999"),
            &data[200_000..300_000],
        )
        .await;
        // Segment 2's first 18,928 bytes are the same in both copies: its
        // tag must still refuse them.
        let same_bytes = read(
            &server,
            &path,
            Some("bytes=140000-149999"),
            &data[140_000..150_000],
        )
        .await;
        cases.push(Case {
            name: "segments cut by a rewind replayed (segments 2-5)",
            damaged: vec![rewound_id.clone()],
            read: vec![whole, stale, same_bytes],
            scrub: false,
        });
    }
    {
        let path = format!("/objects/{recovered_id}");
        let data = &recovered_data;
        let seg0 = read(&server, &path, Some("bytes=0-65535"), &data[..SEG]).await;
        assert_eq!(seg0, Read::Intact, "a range before the recovered index");
        let whole = read(&server, &path, None, data).await;
        let stale = read(
            &server,
            &path,
            Some("bytes=200000-299999"),
            &data[200_000..300_000],
        )
        .await;
        cases.push(Case {
            name: "segments cut by recovery replayed (segments 1-5)",
            damaged: vec![recovered_id.clone()],
            read: vec![whole, stale],
            scrub: false,
        });
    }
    {
        // A staged upload is read back only to resume it: the replay of its
        // staged bytes (tail included) must refuse, never commit wrong bytes.
        let up = Upload {
            server: &server,
            path: format!("/files/{tail_id}"),
        };
        up.head().await.assert_offset(100_000);
        let resumed = up.patch(100_000, &staged(960)[100_000..]).await;
        let outcome = if resumed.status.is_success() {
            Read::Wrong {
                status: resumed.status.as_u16(),
                len: 0,
            }
        } else {
            Read::Refused(resumed.status.as_u16())
        };
        cases.push(Case {
            name: "tail record of a staged upload altered (index)",
            damaged: vec![tail_id.clone()],
            read: vec![outcome],
            scrub: false,
        });
    }
    {
        let up = Upload {
            server: &server,
            path: format!("/files/{staged_flip_id}"),
        };
        let resumed = up.patch(140_000, &staged(961)[140_000..]).await;
        let outcome = if resumed.status.is_success() {
            // Committed after all: its download must then fail.
            read(
                &server,
                &format!("/objects/{staged_flip_id}"),
                None,
                &staged(961),
            )
            .await
        } else {
            Read::Refused(resumed.status.as_u16())
        };
        cases.push(Case {
            name: "flipped bit in a staged upload's segment 0",
            damaged: vec![staged_flip_id.clone()],
            read: vec![outcome],
            scrub: false,
        });
    }

    // Everything not tampered with still downloads, exactly.
    for (name, id, data) in &objects {
        if name.starts_with("clean") || *name == "donor" {
            let got = read(&server, &format!("/objects/{id}"), None, data).await;
            assert_eq!(got, Read::Intact, "untouched object {name}");
        }
    }

    // ---- scrub in the running appliance ----
    let report = server.appliance().ingest.scrub().await.expect("scrub");
    let expected: BTreeSet<String> = cases.iter().flat_map(|c| c.damaged.clone()).collect();
    let reported: BTreeSet<String> = report
        .damaged_ids()
        .iter()
        .map(ToString::to_string)
        .collect();
    for case in &mut cases {
        case.scrub = case.damaged.iter().all(|id| reported.contains(id));
    }
    print_table(&cases, &report);
    assert!(report.damaged.iter().all(|d| d.id.is_some()), "{report:?}");
    assert_eq!(
        reported, expected,
        "scrub must name exactly the damaged ones"
    );
    assert_eq!(report.objects, specs.len() as u64 + 3);
    assert_eq!(report.uploads, 3);
    assert!(report.busy.is_empty());

    // What each finding says.
    let says = |id: &str, what: fn(&Fault) -> bool| {
        assert!(
            faults_of(&report, id).iter().any(what),
            "{id}: {:?}",
            faults_of(&report, id)
        )
    };
    says(&flip, |f| *f == Fault::Segments(vec![1]));
    says(&zero4k, |f| *f == Fault::Segments(vec![2]));
    says(&trunc, |f| matches!(f, Fault::FileLength { .. }));
    says(&trunc, |f| *f == Fault::MissingSegments(vec![2, 3]));
    says(&final_cut, |f| *f == Fault::MissingSegments(vec![2]));
    says(&xa, |f| *f == Fault::Segments(vec![1]));
    says(&xb, |f| *f == Fault::Segments(vec![1]));
    says(&inswap, |f| *f == Fault::Segments(vec![0, 1]));
    says(&replaced, |f| matches!(f, Fault::Header(_)));
    says(&header, |f| matches!(f, Fault::Header(_)));
    says(&stale_id, |f| *f == Fault::Segments(vec![0, 1, 2, 3]));
    says(&rewound_id, |f| *f == Fault::Segments(vec![2, 3, 4, 5]));
    says(&recovered_id, |f| {
        *f == Fault::Segments(vec![1, 2, 3, 4, 5])
    });
    says(&tail_id, |f| matches!(f, Fault::Tail(_)));
    says(&staged_flip_id, |f| *f == Fault::Segments(vec![0]));
    assert!(faults_of(&report, &staged_clean_id).is_empty());
    for damage in &report.damaged {
        let line = damage.to_string();
        assert!(line.len() < 300, "a report line stays short: {line}");
    }

    // Never wrong bytes from a read, and every tamper detected by scrub.
    let read_detected = cases
        .iter()
        .filter(|c| c.read.iter().all(Read::detected))
        .count();
    let scrub_detected = cases.iter().filter(|c| c.scrub).count();
    println!(
        "detection: reads {read_detected}/{n}, scrub {scrub_detected}/{n}",
        n = cases.len()
    );
    for case in &cases {
        for outcome in &case.read {
            assert!(
                !matches!(outcome, Read::Wrong { .. }),
                "{}: wrong bytes served ({outcome:?})",
                case.name
            );
            // Every tamper here is caught by a tag before its bytes leave:
            // not even a broken transfer carries a byte that was not uploaded.
            assert!(
                !matches!(outcome, Read::BrokenStale(_)),
                "{}: unverified bytes served before the break ({outcome:?})",
                case.name
            );
        }
    }
    assert_eq!(scrub_detected, cases.len());
    assert_eq!(read_detected, cases.len());

    // ---- the CLI on the same data dir ----
    let data_dir = server.data_dir();
    let busy = scrub_cli(&data_dir, false);
    assert_eq!(busy.status.code(), Some(1), "scrub while the server runs");
    let stderr = String::from_utf8_lossy(&busy.stderr);
    assert!(
        stderr.contains("a strongroom server is running on this data dir"),
        "{stderr}"
    );

    let appliance = server.appliance.take().expect("running");
    appliance.stop().await;
    let offline = scrub_cli(&data_dir, false);
    let stdout = String::from_utf8_lossy(&offline.stdout).into_owned();
    assert_eq!(offline.status.code(), Some(2), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    let named: BTreeSet<String> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("damaged "))
        .map(|l| l[..UploadId::TEXT_LEN].to_owned())
        .collect();
    assert_eq!(named, expected, "{stdout}");
    let summary = lines.last().expect("a summary line");
    assert!(
        summary.contains(&format!("{} objects checked", specs.len() + 3))
            && summary.contains(&format!("{} damaged", expected.len())),
        "{summary}"
    );
    let json = scrub_cli(&data_dir, true);
    assert_eq!(json.status.code(), Some(2));
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json report");
    assert_eq!(value["damaged"].as_array().unwrap().len(), expected.len());
    assert_eq!(value["clean"], false);
}

fn scrub_cli(data_dir: &Path, json: bool) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_strongroom"));
    command.arg("scrub").arg("--data-dir").arg(data_dir);
    if json {
        command.arg("--json");
    }
    command.output().expect("strongroom scrub runs")
}

fn print_table(cases: &[Case], report: &ScrubReport) {
    println!("{:<56} {:<38} scrub", "tamper", "reads");
    for case in cases {
        let reads: Vec<String> = case.read.iter().map(|r| format!("{r:?}")).collect();
        println!(
            "{:<56} {:<38} {}",
            case.name,
            reads.join(", "),
            if case.scrub { "detected" } else { "MISSED" }
        );
    }
    for damage in &report.damaged {
        println!("  damaged {damage}");
    }
}

#[tokio::test]
async fn a_clean_data_dir_scrubs_clean_offline_and_exits_zero() {
    let mut server = TestServer::start().await;
    for (n, size) in [0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG + 5]
        .into_iter()
        .enumerate()
    {
        upload(&server, &bytes(size, 990 + n as u64)).await;
    }
    let up = server.create(200_000).await;
    up.patch(0, &bytes(90_000, 999)).await.assert_offset(90_000);
    let appliance = server.appliance.take().expect("running");
    appliance.stop().await;
    let out = scrub_cli(&server.data_dir(), false);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let total = SEG - 1 + SEG + SEG + 1 + 3 * SEG + 5 + 1 + 90_000;
    assert_eq!(
        stdout.trim(),
        format!(
            "scrub: 6 objects checked, 1 staged uploads checked, {total} bytes verified, 0 damaged"
        )
    );
    // Not a data dir: a clear error, and nothing created there.
    let empty = tempfile::tempdir().unwrap();
    let out = scrub_cli(empty.path(), false);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a strongroom data dir"));
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
}
