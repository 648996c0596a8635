//! Seeded storage-fault simulation with a model-based driver ("prove nothing
//! is lost").
//!
//! Each seed builds an `Ingest` whose segment files live on a `SimDisk`
//! (in memory; power loss, EIO, ENOSPC, short writes, bit flips) while sled
//! and the key file stay on a real temporary directory. Sled flushes on every
//! index write, so after a simulated crash its state is exactly what was
//! acknowledged. A random lifecycle runs against it — create, patch (random
//! cuts, checksums right and wrong, interrupted bodies), head, crash +
//! recovery, plain restart, ranged downloads, terminate, expiry sweep — while
//! a client-side model keeps what the appliance acknowledged. After every
//! step the invariants are checked:
//!
//! 1. HEAD offset ≥ acknowledged offset (and exactly the server's offset when
//!    the client can know it); the bytes up to it are the source's, which the
//!    end of every run proves by finishing each upload from its HEAD offset
//!    and downloading the object.
//! 2. Acknowledged commits stay readable with the right length, bytes and
//!    SHA-256 (the ETag).
//! 3. No partial object is ever downloadable.
//! 4. A download returns the exact slice or an error, never other bytes
//!    (bit flips included).
//! 5. Records, tail records and segment files match the model; after
//!    terminate/expiry and a restart, the census is back to zero.
//!
//! An error is allowed only in a step where a fault was injected, or when it
//! follows from one (an upload stopped until restart); a success is never
//! allowed where the model says it must fail.
//!
//! `STRONGROOM_SIM_SEEDS=<n>` runs n seeds (default 1000),
//! `STRONGROOM_SIM_SEED=<n>` replays one seed with a step trace.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use strongroom::crypto::{Aead, DigestAlgorithm, LocalKeyring};
use strongroom::id::UploadId;
use strongroom::ingest::{
    self, BodyChunk, BodyError, BodyStream, ChecksumRequest, Chunk, ChunkChecksum, Ingest,
    IngestConfig, NewKind, NewUpload, UploadStatus,
};
use strongroom::staging::{RecoveryReport, Staging};
use strongroom::store::{ByteRange, RangeRequest, parse_range};

use crate::support::sha256_hex;
use crate::support::simdisk::{Fault, FaultPlan, SimDisk, SimStats, XorShift};

const SEG: u64 = 65536;
const MAX_LEN: u64 = 300 * 1024;
const MAX_LIVE: usize = 6;
const EXPIRY: Duration = Duration::from_secs(3600);
/// Every simulated upload belongs to one tenant.
const TENANT: &str = "default";

type Check<T = ()> = Result<T, String>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

fn replay_line(seed: u64) -> String {
    format!("STRONGROOM_SIM_SEED={seed} cargo test --test main simulation -- --nocapture")
}

// ---- the client-side model ----------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gone {
    No,
    /// A terminate or sweep failed on a fault: the record may or may not be
    /// gone.
    Maybe,
    Yes,
}

struct Up {
    id: UploadId,
    source: Arc<Vec<u8>>,
    sha: String,
    len: u64,
    /// Created with a deferred length; every PATCH repeats it.
    deferred: bool,
    /// Highest offset the appliance acknowledged (PATCH 204 or HEAD).
    acked: u64,
    /// The server's offset exactly, when the client can know it.
    known: Option<u64>,
    /// Bytes that ever reached the server: no offset can be beyond.
    sent_max: u64,
    /// An acknowledged (or observed) commit.
    committed: bool,
    /// An operation on it failed on a fault since the last restart, so it
    /// may be stopped (fail-stop) until the next one.
    stopped_maybe: bool,
    gone: Gone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Create,
    Patch,
    Head,
    Crash,
    /// Power lost a few operations into the next request.
    CrashDuring,
    Restart,
    Get,
    Terminate,
    Expire,
}

const KINDS: [(Kind, u64); 9] = [
    (Kind::Create, 14),
    (Kind::Patch, 36),
    (Kind::Head, 4),
    (Kind::Crash, 5),
    (Kind::CrashDuring, 6),
    (Kind::Restart, 2),
    (Kind::Get, 12),
    (Kind::Terminate, 5),
    (Kind::Expire, 3),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sum {
    None,
    Header,
    WrongHeader,
    Trailer,
    WrongTrailer,
    MissingTrailer,
}

impl Sum {
    fn rejects(self) -> bool {
        matches!(
            self,
            Sum::WrongHeader | Sum::WrongTrailer | Sum::MissingTrailer
        )
    }
}

struct PatchPlan {
    end: u64,
    sum: Sum,
    /// Body frames are cut at most this large.
    frame_max: u64,
    content_length: bool,
    /// The connection drops after this many frames.
    interrupt_after: Option<usize>,
}

#[derive(Debug, Default, Clone)]
struct Counts {
    seeds: u64,
    steps: u64,
    crash_steps: u64,
    restarts: u64,
    restart_failures: u64,
    creates: u64,
    patches: u64,
    commits: u64,
    downloads: u64,
    terminates: u64,
    sweeps: u64,
    /// Errors answered in a step with an injected fault (or following from
    /// one): allowed, and counted.
    tolerated: u64,
    /// Objects verified byte for byte.
    verified: u64,
    /// HEAD showed every byte received but no commit, the upload not stopped:
    /// a client sees it finished while GET answers 404 until a restart rolls
    /// it forward.
    complete_uncommitted: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.seeds += o.seeds;
        self.steps += o.steps;
        self.crash_steps += o.crash_steps;
        self.restarts += o.restarts;
        self.restart_failures += o.restart_failures;
        self.creates += o.creates;
        self.patches += o.patches;
        self.commits += o.commits;
        self.downloads += o.downloads;
        self.terminates += o.terminates;
        self.sweeps += o.sweeps;
        self.tolerated += o.tolerated;
        self.verified += o.verified;
        self.complete_uncommitted += o.complete_uncommitted;
    }
}

/// Whether nothing holds an exclusive `flock` on `path` (sled's lock).
fn flock_free(path: &std::path::Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(file) = std::fs::File::open(path) else {
        return true;
    };
    // SAFETY: a valid open descriptor; the lock goes with it when `file` drops.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

fn is_refused_write(err: &ingest::Error) -> bool {
    matches!(err, ingest::Error::Staging(e) if e.is_refused_write())
}

fn temp_root() -> tempfile::TempDir {
    // fsync on tmpfs is free; sled flushes on every index write.
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::Builder::new()
            .prefix("strongroom-sim")
            .tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().expect("temp dir")
}

// ---- the simulation -----------------------------------------------------

struct Sim {
    seed: u64,
    rng: XorShift,
    _dir: tempfile::TempDir,
    data_dir: PathBuf,
    disk: SimDisk,
    keyring: Arc<LocalKeyring>,
    config: IngestConfig,
    ids: Arc<Mutex<XorShift>>,
    staging: Option<Arc<Staging>>,
    ingest: Option<Arc<Ingest>>,
    ups: Vec<Up>,
    /// Creations that failed on a fault: each may have left a record the
    /// client never learned the id of.
    failed_creates: usize,
    /// A fault since the last clean start: orphan files may exist.
    dirty: bool,
    step: usize,
    trace: bool,
    history: Vec<String>,
    counts: Counts,
}

impl Sim {
    async fn new(seed: u64, checkpoint_every: u64, aead: Aead, trace: bool) -> Check<Sim> {
        let dir = temp_root();
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir).map_err(|e| format!("data dir: {e}"))?;
        let (keyring, _) = LocalKeyring::open_or_create(&data_dir.join("keys"), "default")
            .map_err(|e| format!("keyring: {e}"))?;
        let config = IngestConfig {
            max_size: 1 << 20,
            expiry: EXPIRY,
            lock_wait: Duration::from_secs(5),
            body_idle_timeout: Duration::from_secs(30),
            checkpoint_every,
            aead,
            memory_budget: 32 << 20,
        };
        let mut sim = Sim {
            seed,
            rng: XorShift::new(seed),
            disk: SimDisk::new(seed, &data_dir),
            _dir: dir,
            data_dir,
            keyring: Arc::new(keyring),
            config,
            ids: Arc::new(Mutex::new(XorShift::new(seed ^ 0x1D5))),
            staging: None,
            ingest: None,
            ups: Vec::new(),
            failed_creates: 0,
            dirty: false,
            step: 0,
            trace,
            history: Vec::new(),
            counts: Counts {
                seeds: 1,
                ..Counts::default()
            },
        };
        let report = sim.boot().await.map_err(|e| format!("first start: {e}"))?;
        ensure!(
            report == RecoveryReport::default(),
            "first start: {report:?}"
        );
        Ok(sim)
    }

    fn ingest(&self) -> Arc<Ingest> {
        self.ingest.clone().expect("appliance running")
    }

    fn note(&mut self, line: String) {
        if self.trace {
            eprintln!("[seed {} step {}] {line}", self.seed, self.step);
        }
        self.history.push(format!("step {}: {line}", self.step));
    }

    fn faults(&self) -> u64 {
        self.disk.faults()
    }

    /// Opens staging on the simulated disk and runs recovery.
    async fn boot(&mut self) -> Result<RecoveryReport, String> {
        let disk: Arc<dyn strongroom::disk::Disk> = Arc::new(self.disk.clone());
        let staging =
            Arc::new(Staging::open(&self.data_dir, disk).map_err(|e| format!("staging: {e}"))?);
        let ingest = Ingest::new(self.config.clone(), staging.clone(), self.keyring.clone());
        let ids = self.ids.clone();
        ingest.set_id_source(move || {
            let mut bytes = [0u8; 16];
            ids.lock().unwrap().fill(&mut bytes);
            // Few fan-out directories, so uploads share them.
            bytes[0] %= 8;
            bytes
        });
        self.staging = Some(staging);
        self.ingest = Some(ingest.clone());
        ingest.recover().await.map_err(|e| format!("recovery: {e}"))
    }

    /// Drops the appliance and waits until nothing holds the index.
    async fn shutdown(&mut self) -> Check {
        self.ingest = None;
        let Some(staging) = self.staging.take() else {
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&staging) > 1 {
            ensure!(
                Instant::now() < deadline,
                "staging still referenced after shutdown"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        drop(staging);
        // sled lets go of its file lock a moment after the last handle is
        // dropped; wait here so the restart's disk operations (and so the
        // fault numbering) do not depend on timing.
        let lock = self.data_dir.join("index").join("db");
        while !flock_free(&lock) {
            ensure!(Instant::now() < deadline, "the index stays locked");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }

    /// Stops and starts again; `crash` is a power loss in between.
    async fn restart(&mut self, crash: bool) -> Check {
        self.shutdown().await?;
        let armed = self.disk.is_armed();
        if crash || self.disk.power_cut() {
            self.disk.crash();
        }
        let mut attempt = 0;
        loop {
            let before = self.faults();
            match self.boot().await {
                Ok(report) => {
                    ensure!(
                        report.damaged.is_empty(),
                        "recovery found damaged uploads {:?}: a record claims bytes its \
                         segment file does not have (report {report:?})",
                        report.damaged
                    );
                    self.dirty = self.faults() > before;
                    break;
                }
                Err(e) => {
                    ensure!(
                        self.faults() > before,
                        "restart failed without an injected fault: {e}"
                    );
                    self.counts.restart_failures += 1;
                    self.counts.tolerated += 1;
                    self.note(format!("start failed on a fault ({e}); starting again"));
                    self.shutdown().await?;
                    if self.disk.power_cut() {
                        self.disk.crash();
                    }
                    attempt += 1;
                    ensure!(attempt < 20, "appliance never starts again: {e}");
                    if attempt >= 2 {
                        self.disk.arm(false);
                    }
                }
            }
        }
        self.disk.arm(armed);
        self.counts.restarts += 1;
        for up in &mut self.ups {
            up.stopped_maybe = false;
            up.known = None;
        }
        Ok(())
    }

    // ---- steps ----------------------------------------------------------

    fn choose_len(&mut self) -> u64 {
        match self.rng.weighted(&[5, 25, 10, 60]) {
            0 => 0,
            1 => SEG * self.rng.range(1, 4),
            2 => SEG * self.rng.range(1, 4) + self.rng.range(0, 2) - 1,
            _ => self.rng.range(1, MAX_LEN),
        }
    }

    async fn create(&mut self, len: u64, deferred: bool) -> Check {
        self.counts.creates += 1;
        let source = Arc::new(self.rng.bytes(len as usize));
        let before = self.faults();
        let result = self
            .ingest()
            .create(NewUpload {
                tenant: TENANT.into(),
                length: (!deferred).then_some(len),
                metadata: Vec::new(),
                kind: NewKind::Regular,
            })
            .await;
        let faulted = self.faults() > before;
        match result {
            Ok(status) => {
                let committed = status.commit.is_some();
                ensure!(
                    status.offset == Some(0),
                    "create answered offset {:?}",
                    status.offset
                );
                ensure!(
                    committed == (len == 0 && !deferred),
                    "create of length {len} (deferred {deferred}) answered commit {committed}"
                );
                let sha = sha256_hex(&source);
                if let Some(commit) = &status.commit {
                    ensure!(
                        commit.sha256 == sha,
                        "empty object's sha256 {}",
                        commit.sha256
                    );
                    self.counts.commits += 1;
                }
                self.note(format!(
                    "create {} len {len}{} -> ok",
                    status.id.short(),
                    if deferred { " (deferred)" } else { "" }
                ));
                self.ups.push(Up {
                    id: status.id,
                    source,
                    sha,
                    len,
                    deferred,
                    acked: 0,
                    known: Some(0),
                    sent_max: 0,
                    committed,
                    stopped_maybe: false,
                    gone: Gone::No,
                });
            }
            Err(e) => {
                ensure!(
                    faulted,
                    "create of length {len} failed without a fault: {e}"
                );
                self.note(format!("create len {len} -> error on fault: {e}"));
                self.counts.tolerated += 1;
                self.failed_creates += 1;
                self.dirty = true;
            }
        }
        Ok(())
    }

    fn random_plan(&mut self, start: u64, len: u64) -> PatchPlan {
        let end = match self.rng.weighted(&[30, 25, 45]) {
            0 => len,
            1 => ((start / SEG + 1) * SEG + self.rng.range(0, 4)).saturating_sub(2),
            _ => self.rng.range(start, len),
        }
        .clamp(start, len);
        let sum = match self.rng.weighted(&[55, 14, 9, 10, 6, 6]) {
            0 => Sum::None,
            1 => Sum::Header,
            2 => Sum::WrongHeader,
            3 => Sum::Trailer,
            4 => Sum::WrongTrailer,
            _ => Sum::MissingTrailer,
        };
        PatchPlan {
            end,
            sum,
            frame_max: *self.rng.pick(&[4096, 16384, 65536, 150_000]),
            content_length: self.rng.chance(85, 100),
            interrupt_after: self.rng.chance(1, 10).then_some(0),
        }
    }

    async fn random_patch(&mut self, i: usize) -> Check {
        if self.ups[i].committed {
            return self.patch_complete(i).await;
        }
        if self.ups[i].known.is_none() && self.rng.chance(7, 10) {
            // What a tus client does after a failed request.
            self.head(i).await?;
        }
        let start = self.ups[i].known.unwrap_or(self.ups[i].acked);
        let plan = self.random_plan(start, self.ups[i].len);
        self.patch(i, start, plan).await
    }

    /// PATCH `[start, plan.end)` of upload `i` and judge the answer.
    async fn patch(&mut self, i: usize, start: u64, mut plan: PatchPlan) -> Check {
        self.counts.patches += 1;
        let (id, len, deferred) = (self.ups[i].id, self.ups[i].len, self.ups[i].deferred);
        let source = self.ups[i].source.clone();
        let end = plan.end.max(start);
        let body = &source[start.min(len) as usize..end as usize];
        let mut frames = Vec::new();
        let mut at = 0;
        while at < body.len() {
            let take = self
                .rng
                .range(1, plan.frame_max)
                .min((body.len() - at) as u64) as usize;
            frames.push(&body[at..at + take]);
            at += take;
        }
        if plan.interrupt_after.is_some() {
            // Drop the connection before the last frame.
            plan.interrupt_after = (frames.len() > 1)
                .then(|| self.rng.below(frames.len() as u64) as usize)
                .filter(|&n| n < frames.len());
        }
        let interrupted = plan.interrupt_after.is_some();
        let sent: &[&[u8]] = &frames[..plan.interrupt_after.unwrap_or(frames.len())];
        let delivered: u64 = sent.iter().map(|f| f.len() as u64).sum();
        let mut digest = strongroom::crypto::sha256(body).to_vec();
        if matches!(plan.sum, Sum::WrongHeader | Sum::WrongTrailer) {
            let at = self.rng.below(digest.len() as u64) as usize;
            digest[at] ^= 1 << self.rng.below(8);
        }
        let checksum = ChunkChecksum {
            algorithm: DigestAlgorithm::Sha256,
            digest,
        };
        let mut items: Vec<Result<BodyChunk, BodyError>> = sent
            .iter()
            .map(|f| Ok(BodyChunk::Data(Bytes::copy_from_slice(f))))
            .collect();
        if interrupted {
            items.push(Err(BodyError::Disconnected("simulated".into())));
        } else if matches!(plan.sum, Sum::Trailer | Sum::WrongTrailer) {
            items.push(Ok(BodyChunk::TrailerChecksum(checksum.clone())));
        }
        let request = match plan.sum {
            Sum::None => ChecksumRequest::None,
            Sum::Header | Sum::WrongHeader => ChecksumRequest::Header(checksum),
            _ => ChecksumRequest::Trailer,
        };
        let chunk = Chunk {
            offset: start,
            length: deferred.then_some(len),
            content_length: plan.content_length.then_some(end - start),
            checksum: request,
            authorized_until: None,
        };
        let stream: BodyStream = Box::pin(futures_util::stream::iter(items));
        let before = self.faults();
        let result = self.ingest().patch(id, TENANT, chunk, stream).await;
        let faulted = self.faults() > before;
        let what = format!(
            "patch {} {start}..{end} of {len} ({:?}{}{})",
            id.short(),
            plan.sum,
            if interrupted {
                format!(", drops after {delivered} bytes")
            } else {
                String::new()
            },
            if plan.content_length { "" } else { ", chunked" }
        );
        let up = &mut self.ups[i];
        let outcome = match result {
            Ok(status) => {
                ensure!(
                    !interrupted && !plan.sum.rejects(),
                    "false acknowledgement: {what} answered success (offset {:?})",
                    status.offset
                );
                ensure!(
                    status.offset == Some(end),
                    "{what}: answered offset {:?}",
                    status.offset
                );
                if end == len {
                    let Some(commit) = &status.commit else {
                        return Err(format!("{what}: the last chunk did not commit"));
                    };
                    ensure!(
                        commit.sha256 == up.sha,
                        "{what}: committed sha256 {} but the source's is {}",
                        commit.sha256,
                        up.sha
                    );
                    if !up.committed {
                        self.counts.commits += 1;
                    }
                    up.committed = true;
                } else {
                    ensure!(status.commit.is_none(), "{what}: committed before the end");
                }
                up.acked = up.acked.max(end);
                up.known = Some(end);
                up.sent_max = up.sent_max.max(end);
                "ok".to_string()
            }
            Err(e) => {
                up.sent_max = up.sent_max.max(start + delivered);
                if faulted {
                    up.known = None;
                    if !is_refused_write(&e) {
                        up.stopped_maybe = true;
                    }
                    self.dirty = true;
                    self.counts.tolerated += 1;
                    format!("error on fault: {e}")
                } else {
                    match &e {
                        ingest::Error::Stopped(_) if up.stopped_maybe => {
                            self.counts.tolerated += 1;
                            up.known = None;
                        }
                        ingest::Error::OffsetMismatch { expected, .. } => {
                            ensure!(
                                up.known.is_none(),
                                "{what}: offset mismatch although the server's offset \
                                 {:?} was known: {e}",
                                up.known
                            );
                            ensure!(
                                *expected >= up.acked && *expected <= up.sent_max,
                                "{what}: server offset {expected} outside [{}, {}]",
                                up.acked,
                                up.sent_max
                            );
                            up.known = Some(*expected);
                        }
                        ingest::Error::Body(BodyError::Disconnected(_)) if interrupted => {
                            // Kept what arrived, unless a checksum could not be
                            // verified.
                            up.known = Some(if plan.sum == Sum::None {
                                start + delivered
                            } else {
                                start
                            });
                        }
                        ingest::Error::ChecksumMismatch { .. }
                            if matches!(plan.sum, Sum::WrongHeader | Sum::WrongTrailer) =>
                        {
                            up.known = Some(start);
                        }
                        ingest::Error::MissingTrailerChecksum
                            if plan.sum == Sum::MissingTrailer =>
                        {
                            up.known = Some(start);
                        }
                        _ => return Err(format!("{what} failed without a fault: {e}")),
                    }
                    format!("expected error: {e}")
                }
            }
        };
        self.note(format!("{what} -> {outcome}"));
        Ok(())
    }

    /// PATCH on a committed upload: an empty one is answered with its state,
    /// a non-empty one refused.
    async fn patch_complete(&mut self, i: usize) -> Check {
        let (id, len) = (self.ups[i].id, self.ups[i].len);
        let extra = self.rng.range(0, 1);
        let chunk = Chunk {
            offset: len,
            length: None,
            content_length: Some(extra),
            checksum: ChecksumRequest::None,
            authorized_until: None,
        };
        let body: Vec<Result<BodyChunk, BodyError>> = (0..extra)
            .map(|_| Ok(BodyChunk::Data(Bytes::from_static(b"x"))))
            .collect();
        let before = self.faults();
        let result = self
            .ingest()
            .patch(
                id,
                TENANT,
                chunk,
                Box::pin(futures_util::stream::iter(body)),
            )
            .await;
        let faulted = self.faults() > before;
        let what = format!("patch {} {len}+{extra} on the committed object", id.short());
        match result {
            Ok(status) => {
                ensure!(extra == 0, "{what}: accepted bytes after the end");
                ensure!(
                    status.commit.is_some() && status.offset == Some(len),
                    "{what}: answered {status:?}"
                );
            }
            Err(ingest::Error::AlreadyComplete(_)) if extra > 0 => {}
            Err(e) => {
                ensure!(faulted, "{what}: failed without a fault: {e}");
                self.counts.tolerated += 1;
            }
        }
        self.note(format!("{what} -> answered as expected"));
        Ok(())
    }

    /// Checks a status the appliance reported and learns from it.
    fn absorb_status(&mut self, i: usize, status: &UploadStatus, what: &str) -> Check {
        let up = &mut self.ups[i];
        let Some(offset) = status.offset else {
            return Err(format!("{what}: no offset"));
        };
        ensure!(
            offset >= up.acked,
            "{what}: offset {offset} is below the acknowledged {}: acknowledged bytes lost",
            up.acked
        );
        ensure!(
            offset <= up.sent_max,
            "{what}: offset {offset} is beyond the {} bytes ever sent",
            up.sent_max
        );
        if let Some(known) = up.known {
            ensure!(
                offset == known,
                "{what}: offset {offset}, but the server's offset must be {known}"
            );
        }
        ensure!(
            status.length == Some(up.len) || (up.deferred && status.length.is_none()),
            "{what}: length {:?}, source length {}",
            status.length,
            up.len
        );
        match &status.commit {
            Some(commit) => {
                ensure!(
                    offset == up.len,
                    "{what}: committed at offset {offset} of {}",
                    up.len
                );
                ensure!(
                    commit.sha256 == up.sha,
                    "{what}: committed sha256 {} but the source's is {}",
                    commit.sha256,
                    up.sha
                );
                up.committed = true;
            }
            None => {
                ensure!(
                    !up.committed,
                    "{what}: the acknowledged commit is lost (offset {offset})"
                );
                if offset == up.len && up.acked < up.len {
                    self.counts.complete_uncommitted += 1;
                }
            }
        }
        up.acked = offset;
        up.known = Some(offset);
        if up.gone == Gone::Maybe {
            up.gone = Gone::No;
        }
        Ok(())
    }

    async fn head(&mut self, i: usize) -> Check {
        let id = self.ups[i].id;
        let what = format!("head {}", id.short());
        match self.ingest().head(id, TENANT).await {
            Ok(status) => {
                ensure!(
                    self.ups[i].gone != Gone::Yes,
                    "{what}: a removed upload answers"
                );
                self.absorb_status(i, &status, &what)?;
            }
            Err(ingest::Error::Stopped(_)) if self.ups[i].stopped_maybe => {
                self.ups[i].known = None;
            }
            Err(ingest::Error::NotFound(_)) if self.ups[i].gone != Gone::No => {
                self.ups[i].gone = Gone::Yes;
            }
            // HEAD reads only the index: no injected fault excuses an error.
            Err(e) => return Err(format!("{what} failed: {e}")),
        }
        Ok(())
    }

    fn random_range(&mut self, len: u64) -> Option<String> {
        Some(match self.rng.weighted(&[25, 30, 10, 10, 25]) {
            0 => return None,
            1 => {
                let a = self.rng.range(0, len + 10);
                format!("bytes={a}-{}", self.rng.range(a, len + 100))
            }
            2 => format!("bytes={}-", self.rng.range(0, len + 2)),
            3 => format!("bytes=-{}", self.rng.range(0, len + 2)),
            _ => {
                let boundary = SEG * self.rng.range(1, 5);
                let a = boundary.saturating_sub(self.rng.range(0, 3));
                format!("bytes={a}-{}", boundary + self.rng.range(0, 3))
            }
        })
    }

    /// Downloads (a range of) upload `i` and checks every byte served.
    async fn get(&mut self, i: usize, range: Option<String>) -> Check {
        self.counts.downloads += 1;
        let id = self.ups[i].id;
        let before = self.faults();
        let opened = self.ingest().open_object(id, TENANT).await;
        let what = format!("get {} {}", id.short(), range.as_deref().unwrap_or("(all)"));
        let download = match opened {
            Ok(d) => d,
            Err(e) => {
                let faulted = self.faults() > before;
                let up = &mut self.ups[i];
                match &e {
                    ingest::Error::NotDownloadable(_) => ensure!(
                        !up.committed,
                        "{what}: the acknowledged object is not downloadable"
                    ),
                    ingest::Error::Stopped(_) if up.stopped_maybe && !up.committed => {}
                    ingest::Error::NotFound(_) if up.gone != Gone::No => up.gone = Gone::Yes,
                    _ => {
                        ensure!(faulted, "{what}: failed without a fault: {e}");
                        self.counts.tolerated += 1;
                    }
                }
                self.note(format!("{what} -> {e}"));
                return Ok(());
            }
        };
        let up = &mut self.ups[i];
        ensure!(
            up.gone != Gone::Yes,
            "{what}: a removed object is downloadable"
        );
        ensure!(
            download.length == up.len && download.sha256 == up.sha,
            "{what}: a partial or foreign object is downloadable: length {} sha256 {} \
             (source: {} bytes, {})",
            download.length,
            download.sha256,
            up.len,
            up.sha
        );
        if !up.committed {
            // Rolled forward by recovery: complete, so committing was right.
            up.committed = true;
        }
        let range = match range.as_deref().map(|r| parse_range(r, download.length)) {
            None | Some(RangeRequest::Full) => ByteRange::full(download.length),
            Some(RangeRequest::Partial(r)) => r,
            Some(RangeRequest::Unsatisfiable) => {
                self.note(format!("{what} -> 416"));
                return Ok(());
            }
        };
        ensure!(
            range.start <= range.end && range.end <= up.len,
            "{what}: range {range:?} outside the object"
        );
        let source = up.source.clone();
        let expected = &source[range.start as usize..range.end as usize];
        let mut rx = download.stream(range);
        let mut got = Vec::with_capacity(expected.len());
        let mut error = None;
        // Drain to the end so the reader task is done before the next step.
        while let Some(item) = rx.recv().await {
            match item {
                Ok(bytes) if error.is_none() => got.extend_from_slice(&bytes),
                Ok(_) => return Err(format!("{what}: bytes served after an error")),
                Err(e) => error = Some(e),
            }
        }
        let faulted = self.faults() > before;
        if let Some(at) = got
            .iter()
            .zip(expected)
            .position(|(a, b)| a != b)
            .or((got.len() > expected.len()).then_some(expected.len()))
        {
            return Err(format!(
                "{what}: wrong bytes served at offset {} of the range {range:?}",
                range.start + at as u64
            ));
        }
        let outcome = match error {
            Some(e) => {
                ensure!(faulted, "{what}: download failed without a fault: {e}");
                self.counts.tolerated += 1;
                format!("error on fault after {} bytes: {e}", got.len())
            }
            None => {
                ensure!(
                    got.len() == expected.len(),
                    "{what}: body ended after {} of {} bytes without an error",
                    got.len(),
                    expected.len()
                );
                self.counts.verified += 1;
                format!("{} bytes, exact", got.len())
            }
        };
        self.note(format!("{what} -> {outcome}"));
        Ok(())
    }

    async fn terminate(&mut self, i: usize) -> Check {
        self.counts.terminates += 1;
        let id = self.ups[i].id;
        let before = self.faults();
        let result = self.ingest().terminate(id, TENANT).await;
        let faulted = self.faults() > before;
        let what = format!("terminate {}", id.short());
        let up = &mut self.ups[i];
        match result {
            Ok(()) => {
                ensure!(up.gone != Gone::Yes, "{what}: removed twice");
                up.gone = Gone::Yes;
            }
            Err(ingest::Error::NotFound(_)) if up.gone == Gone::Maybe => up.gone = Gone::Yes,
            Err(e) => {
                ensure!(faulted, "{what}: failed without a fault: {e}");
                self.counts.tolerated += 1;
                up.gone = Gone::Maybe;
                self.dirty = true;
            }
        }
        self.note(format!("{what} -> {:?}", self.ups[i].gone));
        Ok(())
    }

    /// A sweep as if the expiry period had passed: every unfinished upload
    /// goes, committed objects stay.
    async fn expire(&mut self) -> Check {
        self.counts.sweeps += 1;
        let before = self.faults();
        let later = ingest::now_secs() + 2 * EXPIRY.as_secs();
        let result = self.ingest().sweep_expired_at(later).await;
        let faulted = self.faults() > before;
        let gone = match result {
            Ok(_) => Gone::Yes,
            Err(e) => {
                ensure!(faulted, "sweep failed without a fault: {e}");
                self.counts.tolerated += 1;
                self.dirty = true;
                Gone::Maybe
            }
        };
        for up in self.ups.iter_mut().filter(|u| !u.committed) {
            if up.gone != Gone::Yes {
                up.gone = gone;
            }
        }
        // Unknown leftovers of failed creations were unfinished too.
        self.note(format!("expire -> {gone:?}"));
        Ok(())
    }

    fn live(&self, filter: impl Fn(&Up) -> bool) -> Vec<usize> {
        (0..self.ups.len())
            .filter(|&i| self.ups[i].gone != Gone::Yes && filter(&self.ups[i]))
            .collect()
    }

    async fn random_step(&mut self) -> Check<Kind> {
        let weights: Vec<u64> = KINDS.iter().map(|(_, w)| *w).collect();
        let mut kind = KINDS[self.rng.weighted(&weights)].0;
        let open = self.live(|u| !u.committed);
        let any = self.live(|_| true);
        if kind == Kind::Patch && open.is_empty() && !self.rng.chance(1, 8) {
            kind = Kind::Create;
        }
        if kind == Kind::Create && any.len() >= MAX_LIVE {
            kind = if open.is_empty() {
                Kind::Terminate
            } else {
                Kind::Patch
            };
        }
        match kind {
            Kind::Create => {
                let len = self.choose_len();
                let deferred = self.rng.chance(1, 10);
                self.create(len, deferred).await?;
            }
            Kind::Patch => {
                let pool = if open.is_empty() || self.rng.chance(1, 20) {
                    &any
                } else {
                    &open
                };
                if let Some(&i) = (!pool.is_empty()).then(|| self.rng.pick(pool)) {
                    self.random_patch(i).await?;
                }
            }
            Kind::Head => {
                if !any.is_empty() {
                    let i = *self.rng.pick(&any);
                    self.head(i).await?;
                }
            }
            Kind::Crash => {
                self.counts.crash_steps += 1;
                self.note("crash (power loss) and recovery".into());
                self.restart(true).await?;
            }
            Kind::CrashDuring => {
                self.counts.crash_steps += 1;
                let plan = self.disk.plan();
                let mut cut = plan.clone();
                let at = self.disk.ops() + self.rng.range(1, 24);
                cut.fail_at.push((at, Fault::PowerCut));
                self.disk.set_plan(cut);
                self.note(format!("power cut scheduled at op {at}"));
                let result = match open.is_empty() {
                    true => {
                        let len = self.choose_len();
                        self.create(len, false).await
                    }
                    false => {
                        let i = *self.rng.pick(&open);
                        self.random_patch(i).await
                    }
                };
                self.disk.set_plan(plan);
                result?;
            }
            Kind::Restart => {
                self.note("restart".into());
                self.restart(false).await?;
            }
            Kind::Get => {
                let done = self.live(|u| u.committed);
                let pool = if done.is_empty() || self.rng.chance(1, 6) {
                    &any
                } else {
                    &done
                };
                if !pool.is_empty() {
                    let i = *self.rng.pick(pool);
                    let range = self.random_range(self.ups[i].len);
                    self.get(i, range).await?;
                }
            }
            Kind::Terminate => {
                if !any.is_empty() {
                    let i = *self.rng.pick(&any);
                    self.terminate(i).await?;
                }
            }
            Kind::Expire => self.expire().await?,
        }
        Ok(kind)
    }

    // ---- invariants -----------------------------------------------------

    /// Checks every invariant with fault injection paused.
    async fn check_all(&mut self, full: bool) -> Check {
        let armed = self.disk.is_armed();
        self.disk.arm(false);
        let result = self.check_inner(full).await;
        self.disk.arm(armed);
        result.map_err(|e| format!("invariant: {e}"))
    }

    async fn check_inner(&mut self, full: bool) -> Check {
        let ingest = self.ingest();
        for i in 0..self.ups.len() {
            let id = self.ups[i].id;
            if self.ups[i].gone == Gone::Yes {
                match ingest.head(id, TENANT).await {
                    Err(ingest::Error::NotFound(_)) => {}
                    // The stopped set outlives the record until a restart.
                    Err(ingest::Error::Stopped(_)) if self.ups[i].stopped_maybe => {}
                    other => {
                        return Err(format!(
                            "removed upload {} is back: {:?}",
                            id.short(),
                            other.map(|s| s.offset)
                        ));
                    }
                }
                continue;
            }
            self.head(i).await?;
            if self.ups[i].gone == Gone::Yes {
                continue;
            }
            let verify = full || (self.ups[i].committed && self.rng.chance(1, 4));
            if verify {
                self.get(i, None).await?;
            } else {
                match ingest.open_object(id, TENANT).await {
                    Ok(d) => {
                        let up = &mut self.ups[i];
                        ensure!(
                            d.length == up.len && d.sha256 == up.sha,
                            "a partial object is downloadable: {} has length {} sha256 {} \
                             (source {} bytes)",
                            id.short(),
                            d.length,
                            d.sha256,
                            up.len
                        );
                        up.committed = true;
                    }
                    Err(ingest::Error::NotDownloadable(_) | ingest::Error::Stopped(_))
                        if !self.ups[i].committed => {}
                    Err(e) => {
                        return Err(format!(
                            "object {} (committed {}) does not open: {e}",
                            id.short(),
                            self.ups[i].committed
                        ));
                    }
                }
            }
        }
        self.check_census().await
    }

    async fn check_census(&mut self) -> Check {
        let staging = self.staging.clone().expect("running");
        let records: Vec<_> = staging
            .records()
            .collect::<Result<_, _>>()
            .map_err(|e| format!("index: {e}"))?;
        let census = self
            .ingest()
            .census()
            .await
            .map_err(|e| format!("census: {e}"))?;
        let mut known = HashSet::new();
        for up in &self.ups {
            known.insert(up.id);
            if up.gone == Gone::No {
                ensure!(
                    records.iter().any(|r| r.id == up.id),
                    "the record of live upload {} is gone",
                    up.id.short()
                );
            }
        }
        let extras: Vec<_> = records.iter().filter(|r| !known.contains(&r.id)).collect();
        ensure!(
            extras.len() <= self.failed_creates,
            "{} records nobody created: {:?}",
            extras.len(),
            extras.iter().map(|r| r.id.short()).collect::<Vec<_>>()
        );
        for extra in &extras {
            ensure!(
                !extra.is_committed() || extra.length == Some(0),
                "an object of {:?} bytes exists that no creation acknowledged",
                extra.length
            );
        }
        ensure!(
            census.records == records.len(),
            "census counts {} records, the index holds {}",
            census.records,
            records.len()
        );
        if !self.dirty {
            ensure!(
                census.files == census.records,
                "{} segment files for {} records (orphans or missing files): {census:?}",
                census.files,
                census.records
            );
            let mut tails = 0;
            let mut exact = true;
            for up in self
                .ups
                .iter()
                .filter(|u| u.gone == Gone::No && !u.committed)
            {
                match up.known {
                    Some(offset) => tails += usize::from(offset % SEG != 0),
                    None => exact = false,
                }
            }
            if exact {
                ensure!(
                    census.tails == tails,
                    "{} tail records, expected {tails}: {census:?}",
                    census.tails
                );
            }
        }
        Ok(())
    }

    // ---- whole runs -----------------------------------------------------

    fn context(&self, kind: &str, err: String) -> String {
        let tail: Vec<&String> = self.history.iter().rev().take(12).rev().collect();
        let faults = self.disk.fault_log();
        let faults: Vec<&String> = faults.iter().rev().take(6).rev().collect();
        let mut out = format!("seed {} step {} ({kind}): {err}", self.seed, self.step);
        out.push_str("\n  recent steps:");
        for line in tail {
            out.push_str("\n    ");
            out.push_str(line);
        }
        out.push_str("\n  recent faults:");
        for line in faults {
            out.push_str("\n    ");
            out.push_str(line);
        }
        out
    }

    /// Ends a run: a clean crash and restart, every upload finished from its
    /// HEAD offset and downloaded, then everything removed; the census must
    /// be back to zero.
    async fn finish(&mut self) -> Check {
        self.step += 1;
        self.disk.set_plan(FaultPlan::default());
        self.disk.arm(false);
        self.note("finish: crash, recovery, complete every upload".into());
        self.restart(true).await?;
        self.check_all(true).await?;
        for i in self.live(|u| !u.committed) {
            let start = self.ups[i]
                .known
                .ok_or_else(|| format!("upload {} has no offset", self.ups[i].id.short()))?;
            let plan = PatchPlan {
                end: self.ups[i].len,
                sum: Sum::None,
                frame_max: 65536,
                content_length: true,
                interrupt_after: None,
            };
            self.patch(i, start, plan).await?;
            ensure!(
                self.ups[i].committed,
                "upload {} did not commit once finished",
                self.ups[i].id.short()
            );
        }
        self.check_all(true).await?;
        for i in self.live(|_| true) {
            self.terminate(i).await?;
        }
        self.expire().await?;
        self.restart(true).await?;
        self.check_all(true).await?;
        let census = self
            .ingest()
            .census()
            .await
            .map_err(|e| format!("census: {e}"))?;
        ensure!(
            census == ingest::Census::default(),
            "after removing everything the census is {census:?}, not zero"
        );
        self.shutdown().await
    }

    async fn run(&mut self, steps: usize) -> Check {
        for step in 0..steps {
            self.step = step;
            self.disk.arm(true);
            let result = self.random_step().await;
            self.disk.arm(false);
            let kind = result.map_err(|e| self.context("step", e))?;
            self.counts.steps += 1;
            if self.disk.power_cut() {
                self.note("power cut: crash and recovery".into());
                self.restart(true)
                    .await
                    .map_err(|e| self.context("power cut", e))?;
            }
            self.check_all(false)
                .await
                .map_err(|e| self.context(&format!("after {kind:?}"), e))?;
        }
        self.finish().await.map_err(|e| self.context("finish", e))
    }
}

// ---- the seeded run -------------------------------------------------------

struct SeedResult {
    counts: Counts,
    disk: SimStats,
}

async fn run_seed(seed: u64, trace: bool) -> Check<SeedResult> {
    let mut rng = XorShift::new(seed ^ 0xC0FF_EE00);
    let checkpoint = *rng.pick(&[0, 0, 40_000, 100_000]);
    let aead = if rng.chance(1, 2) {
        Aead::Aes256Gcm
    } else {
        Aead::ChaCha20Poly1305
    };
    let rate_ppm = *rng.pick(&[0, 2_000, 10_000, 10_000, 40_000]);
    let flip_ppm = *rng.pick(&[0, 0, 0, 3_000, 30_000]);
    let steps = rng.range(20, 60) as usize;
    let mut sim = Sim::new(seed, checkpoint, aead, trace)
        .await
        .map_err(|e| format!("seed {seed}: {e}"))?;
    sim.disk.set_plan(FaultPlan {
        fail_at: Vec::new(),
        rate_ppm,
        kinds: vec![
            Fault::Eio,
            Fault::Eio,
            Fault::Enospc,
            Fault::Enospc,
            Fault::SHORT_ENOSPC,
            Fault::SHORT_EIO,
            Fault::PowerCut,
        ],
        flip_ppm,
    });
    if trace {
        eprintln!(
            "[seed {seed}] {steps} steps, checkpoint {checkpoint}, {aead:?}, fault rate \
             {rate_ppm} ppm, bit flips {flip_ppm} ppm"
        );
    }
    sim.run(steps).await?;
    Ok(SeedResult {
        counts: sim.counts.clone(),
        disk: sim.disk.stats(),
    })
}

/// Runs one seed on this thread's runtime; a panic is a failure too.
fn run_seed_blocking(rt: &tokio::runtime::Runtime, seed: u64, trace: bool) -> Check<SeedResult> {
    let outcome = rt.block_on(AssertUnwindSafe(run_seed(seed, trace)).catch_unwind());
    match outcome {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("seed {seed}: panicked: {message}"))
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}"))
    })
}

#[test]
fn simulation_seeded_storage_faults_lose_nothing() {
    let started = Instant::now();
    let (seeds, trace): (Vec<u64>, bool) = match env_u64("STRONGROOM_SIM_SEED") {
        Some(seed) => (vec![seed], true),
        None => (
            (0..env_u64("STRONGROOM_SIM_SEEDS").unwrap_or(1000)).collect(),
            false,
        ),
    };
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(seeds.len().max(1));
    let next = AtomicU64::new(0);
    let totals = Mutex::new((Counts::default(), SimStats::default()));
    let failures = Mutex::new(Vec::<(u64, String)>::new());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let rt = runtime();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(&seed) = seeds.get(n) else { break };
                    match run_seed_blocking(&rt, seed, trace) {
                        Ok(result) => {
                            let mut totals = totals.lock().unwrap();
                            totals.0.add(&result.counts);
                            totals.1.add(&result.disk);
                        }
                        Err(e) => failures.lock().unwrap().push((seed, e)),
                    }
                }
            });
        }
    });
    let (counts, disk) = totals.into_inner().unwrap();
    let mut failures = failures.into_inner().unwrap();
    failures.sort_by_key(|(seed, _)| *seed);
    println!(
        "simulation: {} seeds ({} passed), {} steps, {} crashes ({} crash steps, {} power \
         cuts), {} restarts ({} failed starts on faults), {} faults injected ({} EIO, {} \
         ENOSPC, {} short writes, {} power cuts, {} bit flips), {} disk ops, {} torn / {} \
         dropped / {} reordered writes, {} lost directory changes, {} creates, {} patches, \
         {} commits, {} downloads ({} verified exact), {} terminates, {} sweeps, {} errors \
         tolerated on faults, {} complete-but-uncommitted sightings, {} invariant violations, {:.1}s",
        seeds.len(),
        counts.seeds,
        counts.steps,
        disk.crashes,
        counts.crash_steps,
        disk.power_cuts,
        counts.restarts,
        counts.restart_failures,
        disk.faults(),
        disk.eio,
        disk.enospc,
        disk.short_writes,
        disk.power_cuts,
        disk.bit_flips,
        disk.ops,
        disk.torn_writes,
        disk.dropped_writes,
        disk.reordered,
        disk.lost_dir_changes,
        counts.creates,
        counts.patches,
        counts.commits,
        counts.downloads,
        counts.verified,
        counts.terminates,
        counts.sweeps,
        counts.tolerated,
        counts.complete_uncommitted,
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    for (seed, failure) in failures.iter().skip(1).take(20) {
        eprintln!(
            "also failing: seed {seed}: {} — replay: {}",
            failure.lines().next().unwrap_or(""),
            replay_line(*seed)
        );
    }
    if let Some((seed, failure)) = failures.first() {
        panic!(
            "{} of {} seeds violated an invariant; replay: {}\n{failure}",
            failures.len(),
            seeds.len(),
            replay_line(*seed)
        );
    }
}

// ---- the N-th operation sweep ---------------------------------------------

/// create → patch across a segment boundary → commit → download, on a fresh
/// appliance with every operation counted.
async fn scenario(sim: &mut Sim) -> Check {
    let steps: [(&str, u64); 4] = [
        ("create", 0),
        ("patch", 140_000),
        ("commit", 200_000),
        ("get", 0),
    ];
    for (step, (name, end)) in steps.into_iter().enumerate() {
        sim.step = step;
        sim.disk.arm(true);
        let result = match name {
            "create" => sim.create(200_000, false).await,
            "get" if sim.ups.is_empty() => Ok(()),
            "get" => sim.get(0, None).await,
            _ if sim.ups.is_empty() => Ok(()),
            _ => {
                let start = sim.ups[0].known.unwrap_or(sim.ups[0].acked);
                let plan = PatchPlan {
                    end: end.max(start),
                    sum: Sum::None,
                    frame_max: 40_000,
                    content_length: true,
                    interrupt_after: None,
                };
                if sim.ups[0].committed {
                    Ok(())
                } else {
                    // Frame sizes come from the sim's generator, which the
                    // counting run and every faulted run draw identically.
                    sim.patch(0, start, plan).await
                }
            }
        };
        sim.disk.arm(false);
        result.map_err(|e| sim.context(name, e))?;
        if sim.disk.power_cut() {
            sim.restart(true)
                .await
                .map_err(|e| sim.context("power cut", e))?;
        }
        sim.check_all(false)
            .await
            .map_err(|e| sim.context(&format!("after {name}"), e))?;
    }
    Ok(())
}

#[test]
fn simulation_every_operation_of_an_upload_failing_loses_nothing() {
    let started = Instant::now();
    let rt = runtime();
    let base_seed = 7;
    let count = rt.block_on(async {
        let mut sim = Sim::new(base_seed, 0, Aead::Aes256Gcm, false)
            .await
            .unwrap();
        scenario(&mut sim).await.unwrap();
        assert!(sim.ups[0].committed, "the fault-free scenario commits");
        assert_eq!(sim.disk.faults(), 0);
        let ops = sim.disk.ops();
        if let Err(e) = sim.finish().await {
            panic!("{}", sim.context("finish", e));
        }
        ops
    });
    assert!(count >= 15, "the scenario counts {count} disk operations");
    let faults = [
        Fault::Eio,
        Fault::Enospc,
        Fault::SHORT_ENOSPC,
        Fault::PowerCut,
    ];
    let mut runs = 0;
    let mut totals = SimStats::default();
    let mut failures = Vec::new();
    for n in 1..=count {
        for (k, &fault) in faults.iter().enumerate() {
            for crash_variant in 0..2u64 {
                runs += 1;
                let outcome = rt.block_on(
                    AssertUnwindSafe(async {
                        // Same generator for the scenario as the counting run;
                        // the crash's choices differ per variant.
                        let mut sim = Sim::new(base_seed, 0, Aead::Aes256Gcm, false).await?;
                        sim.disk.set_plan(FaultPlan {
                            fail_at: vec![(n, fault)],
                            ..FaultPlan::default()
                        });
                        scenario(&mut sim).await?;
                        ensure!(
                            sim.disk.faults() == 1,
                            "op {n} {fault:?}: {} faults fired",
                            sim.disk.faults()
                        );
                        // Vary what the crash keeps.
                        sim.disk.reseed(n * 64 + k as u64 * 2 + crash_variant);
                        sim.note(format!("crash after op {n} failed with {fault:?}"));
                        let after = async {
                            sim.restart(true).await?;
                            sim.check_all(true).await?;
                            sim.finish().await
                        }
                        .await;
                        after.map_err(|e| sim.context("crash after the fault", e))?;
                        Ok::<_, String>(sim.disk.stats())
                    })
                    .catch_unwind(),
                );
                match outcome {
                    Ok(Ok(stats)) => totals.add(&stats),
                    Ok(Err(e)) => failures.push(format!("op {n} failing with {fault:?}: {e}")),
                    Err(_) => failures.push(format!("op {n} failing with {fault:?}: panicked")),
                }
            }
        }
    }
    println!(
        "N-th operation sweep: {count} operations x {} fault kinds x 2 crashes = {runs} runs, \
         {} faults injected, {} crashes ({} torn / {} dropped writes, {} lost directory \
         changes), {} invariant violations, {:.1}s",
        faults.len(),
        totals.faults(),
        totals.crashes,
        totals.torn_writes,
        totals.dropped_writes,
        totals.lost_dir_changes,
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} runs violated an invariant; first:\n{}",
        failures.len(),
        failures[0]
    );
}

// ---- the model itself -------------------------------------------------------

#[test]
fn simulation_disk_model_keeps_only_what_was_made_durable() {
    use strongroom::disk::{Disk, OpenMode};
    let root = PathBuf::from("/sim-root");
    let dir = root.join("d");
    let path = dir.join("f");
    // A synced file under a synced name survives every crash as synced.
    for seed in 0..200 {
        let disk = SimDisk::new(seed, &root);
        disk.create_dir_all(&dir).unwrap();
        disk.sync_dir(&root).unwrap();
        let file = disk.open(&path, OpenMode::CreateNew).unwrap();
        file.write_at(0, b"durable").unwrap();
        file.sync().unwrap();
        disk.sync_dir(&dir).unwrap();
        file.write_at(7, b" and more").unwrap();
        disk.crash();
        assert!(file.size().is_err(), "handles die with the crash");
        let file = disk.open(&path, OpenMode::Read).unwrap();
        let size = file.size().unwrap();
        assert!((7..=16).contains(&size), "seed {seed}: size {size}");
        let mut head = [0u8; 7];
        file.read_at(0, &mut head).unwrap();
        assert_eq!(&head, b"durable");
        let mut rest = vec![0u8; size as usize - 7];
        file.read_at(7, &mut rest).unwrap();
        assert!(
            b" and more".starts_with(&rest),
            "seed {seed}: torn write {rest:?}"
        );
    }
    // A name never made durable (file or directory) can vanish; across seeds
    // it both survives and vanishes.
    let (mut kept, mut lost) = (0, 0);
    for seed in 0..200 {
        let disk = SimDisk::new(seed, &root);
        disk.create_dir_all(&dir).unwrap();
        let file = disk.open(&path, OpenMode::CreateNew).unwrap();
        file.write_at(0, b"x").unwrap();
        file.sync().unwrap();
        disk.sync_dir(&dir).unwrap(); // not the root: "d" itself is not durable
        disk.crash();
        match disk.open(&path, OpenMode::Read) {
            Ok(_) => kept += 1,
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
                lost += 1;
            }
        }
    }
    assert!(kept > 0 && lost > 0, "kept {kept}, lost {lost}");
    // The N-th operation fails, a short write lands partly, a power cut
    // fails everything until the crash.
    let disk = SimDisk::new(1, &root);
    disk.create_dir_all(&dir).unwrap();
    disk.set_plan(FaultPlan {
        fail_at: vec![(2, Fault::SHORT_ENOSPC), (4, Fault::PowerCut)],
        ..FaultPlan::default()
    });
    disk.arm(true);
    let file = disk.open(&path, OpenMode::CreateNew).unwrap(); // op 1
    let err = file.write_at(0, &[7u8; 100]).unwrap_err(); // op 2
    assert_eq!(err.raw_os_error(), Some(28));
    assert!(file.size().unwrap() < 100); // op 3
    assert_eq!(file.sync().unwrap_err().raw_os_error(), Some(5)); // op 4
    assert!(disk.power_cut());
    assert!(disk.list(&dir).is_err());
    assert_eq!(disk.faults(), 2);
    disk.crash();
    assert!(!disk.power_cut());
}
