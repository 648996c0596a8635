//! Crash consistency of the real binary. Concurrent uploads PATCH in random
//! cuts while the server is SIGKILLed at random moments (mid-PATCH, and right
//! as uploads complete, i.e. during commit), then restarted on the same data
//! dir. A client-side ledger, appended and fsync'd before each acknowledgement
//! is acted on, records what the server promised; after every restart:
//!
//! - every upload whose creation was acknowledged still exists, and its
//!   offset is at least the highest offset the server acknowledged;
//! - an acknowledged commit (or an upload found complete) downloads as exactly
//!   its source bytes, with the SHA-256 as ETag;
//! - an incomplete upload is not downloadable (404);
//!
//! and incomplete uploads resume from the HEAD offset. At the end every
//! upload completes and every object equals its source.
//!
//! Sizes, cuts and kill moments come from a seeded xorshift; the seed is
//! printed and in every failure message (`STRONGROOM_CRASH_SEED=<seed>` reruns
//! the same random choices; thread timing still varies).

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::support::{TUS, bytes as source_bytes, sha256_hex};

/// Server kills with uploads in flight (`STRONGROOM_CRASH_KILLS` for the long
/// run: `STRONGROOM_CRASH_KILLS=1000 cargo test --test main -- crash:: --nocapture`).
const KILLS: usize = 12;
/// Concurrent uploads while the server runs.
const WORKERS: usize = 5;
/// Uploads created over the whole test, per kill.
const UPLOADS_PER_KILL: usize = 8;
/// New uploads per round (keeps work for later rounds).
const NEW_PER_ROUND: usize = 10;
const MAX_SIZE: u64 = 3 << 20;
const SEGMENT: u64 = 65_536;
/// Bound on the whole test: a base plus a share per kill.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);
const TIMEOUT_PER_KILL: Duration = Duration::from_secs(5);

fn kills() -> usize {
    std::env::var("STRONGROOM_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(KILLS)
}

fn max_uploads() -> usize {
    (kills() * UPLOADS_PER_KILL).max(100)
}
/// Bound on a start until `/readyz` answers 200.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_bytes_and_commits_survive_sigkill() {
    let seed = std::env::var("STRONGROOM_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("crash test seed {seed} (rerun with STRONGROOM_CRASH_SEED={seed})");
    let dir = KeepOnPanic::new(seed);
    let test = Crash::new(seed, dir.path());
    let limit = TEST_TIMEOUT + TIMEOUT_PER_KILL * kills() as u32;
    match tokio::time::timeout(limit, test.run()).await {
        Ok(summary) => eprintln!("crash test seed {seed}: {summary}"),
        Err(_) => panic!("[crash seed {seed}] the test did not finish within {limit:?}"),
    }
}

/// Fails the test with the seed and where to look.
macro_rules! fail {
    ($ctx:expr, $($arg:tt)+) => {
        $ctx.fail(format!($($arg)+))
    };
}

/// Asserts with the seed and where to look.
macro_rules! check {
    ($ctx:expr, $cond:expr, $($arg:tt)+) => {
        if !$cond {
            fail!($ctx, $($arg)+);
        }
    };
}

// ---- the test ---------------------------------------------------------------

struct Crash {
    seed: u64,
    rng: Rng,
    data_dir: PathBuf,
    log: PathBuf,
    ledger_path: PathBuf,
    ledger: Arc<Mutex<Ledger>>,
    http: reqwest::Client,
    /// Objects already downloaded and compared after some restart.
    downloaded: Mutex<std::collections::HashSet<usize>>,
    /// Where the next restart's re-check of older objects starts.
    recheck_cursor: std::sync::atomic::AtomicUsize,
}

/// Objects downloaded again after each restart besides the newly complete
/// ones, in rotation: every object is re-read now and then, and a restart's
/// cost stays bounded, so a 1,000-kill run takes minutes, not hours.
const RECHECKS_PER_RESTART: usize = 16;

#[derive(Default)]
struct Stats {
    kills: usize,
    kills_waiting_for_commit: usize,
    kills_mid_patch: usize,
    kills_mid_final_patch: usize,
    commits_found_unacknowledged: usize,
    offsets_past_acknowledged: usize,
    patches: usize,
    /// Bytes acknowledged by a 204 (each byte once: a resumed upload starts
    /// at its HEAD offset).
    acked_bytes: u64,
    /// Commits acknowledged: a 204 for an upload's last bytes, or a 201 for
    /// an empty upload.
    acked_commits: usize,
    /// After each restart: uploads whose acknowledged offset was checked, and
    /// acknowledged commits downloaded and compared with their source.
    offsets_checked: usize,
    commits_checked: usize,
    /// Of those, downloaded and compared byte for byte (each object once
    /// after it is first found complete, then in rotation).
    commits_downloaded: usize,
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} kills ({} aimed at a commit; {} with PATCHes in flight, {} of them with an \
             upload's last PATCH in flight), {} PATCHes acknowledged ({} bytes), {} commits \
             acknowledged; after restarts {} acknowledged offsets and {} acknowledged commits \
             checked ({} downloads compared byte for byte), 0 lost (a loss fails the test); {} \
             commits and {} offsets found ahead of their acknowledgement after a kill",
            self.kills,
            self.kills_waiting_for_commit,
            self.kills_mid_patch,
            self.kills_mid_final_patch,
            self.patches,
            self.acked_bytes,
            self.acked_commits,
            self.offsets_checked,
            self.commits_checked,
            self.commits_downloaded,
            self.commits_found_unacknowledged,
            self.offsets_past_acknowledged
        )
    }
}

impl Crash {
    fn new(seed: u64, dir: &Path) -> Crash {
        let ledger_path = dir.join("ledger.log");
        Crash {
            seed,
            rng: Rng::new(seed),
            data_dir: dir.join("data"),
            log: dir.join("server.log"),
            ledger: Arc::new(Mutex::new(Ledger::open(&ledger_path))),
            ledger_path,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(20))
                .build()
                .expect("http client"),
            downloaded: Mutex::default(),
            recheck_cursor: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    async fn run(mut self) -> String {
        let mut stats = Stats::default();
        let mut server = self.start().await;
        for round in 0..kills() {
            self.ledger().note(&format!("round {round}"));
            let ctx = Round::new(&self, &server, NEW_PER_ROUND);
            let workers = ctx.spawn_workers(&mut self.rng);
            // Kill at a random moment: some rounds right as an upload sends
            // its last bytes (so its commit is under way), most after a random
            // number of acknowledged PATCHes (so others are in flight), a few
            // after a plain delay (creations, idle moments).
            match self.rng.below(100) {
                0..35 => {
                    let finals = self.rng.range(1, 4) as usize;
                    ctx.wait_until(|r| r.finals_started.load(Ordering::SeqCst) >= finals)
                        .await;
                    stats.kills_waiting_for_commit += 1;
                }
                35..80 => {
                    let acks = self.rng.range(1, 25) as usize;
                    ctx.wait_until(|r| r.patches.load(Ordering::SeqCst) >= acks)
                        .await;
                }
                _ => tokio::time::sleep(Duration::from_millis(self.rng.range(1, 60))).await,
            }
            // A last random delay below a millisecond or a few; blocking this
            // thread is the only sub-millisecond sleep.
            match self.rng.below(3) {
                0 => {}
                1 => std::thread::sleep(Duration::from_micros(self.rng.below(1_000))),
                _ => std::thread::sleep(Duration::from_micros(self.rng.range(1_000, 5_000))),
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                fail!(
                    self,
                    "the server exited on its own ({status}) in round {round}"
                );
            }
            let in_flight = ctx.in_flight.load(Ordering::SeqCst);
            let final_in_flight = ctx.final_in_flight.load(Ordering::SeqCst);
            server.kill();
            stats.kills += 1;
            stats.kills_mid_patch += usize::from(in_flight > 0);
            stats.kills_mid_final_patch += usize::from(final_in_flight > 0);
            self.join(workers, &ctx).await;
            ctx.add_to(&mut stats);
            server = self.start().await;
            self.verify(&server, &mut stats).await;
        }

        // No more kills: every upload finishes.
        self.ledger().note("final: finishing every upload");
        let ctx = Round::new(&self, &server, 0);
        let workers = ctx.spawn_workers(&mut self.rng);
        self.join(workers, &ctx).await;
        ctx.add_to(&mut stats);
        self.verify(&server, &mut stats).await;
        let entries = self.ledger().entries.clone();
        for (i, entry) in entries.iter().enumerate() {
            check!(
                self,
                entry.committed,
                "upload {i} did not complete without kills: {entry:?}"
            );
        }
        // And once more after a last kill: completed objects stay.
        server.kill();
        let server = self.start().await;
        self.verify(&server, &mut stats).await;
        format!("{} uploads; {stats}", entries.len())
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().expect("ledger poisoned")
    }

    /// Starts the binary on fresh free ports and waits until it is ready.
    async fn start(&self) -> Server {
        let mut last_error = String::new();
        for _attempt in 0..5 {
            let public = free_addr();
            let admin = free_addr();
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .expect("server log");
            let child = Command::new(env!("CARGO_BIN_EXE_strongroom"))
                .arg("serve")
                .arg("--data-dir")
                .arg(&self.data_dir)
                .arg("--listen")
                .arg(public.to_string())
                .arg("--admin-listen")
                .arg(admin.to_string())
                .args(["--auth", "none"])
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log fd"))
                .stderr(log)
                .spawn()
                .expect("start the strongroom binary");
            let mut server = Server {
                child,
                public,
                admin,
            };
            match server.ready(&self.http).await {
                Ok(()) => return server,
                // A port taken between picking and binding: try other ports.
                Err(err) => last_error = err,
            }
        }
        fail!(self, "the server did not become ready: {last_error}")
    }

    async fn join(&self, workers: Vec<tokio::task::JoinHandle<Result<(), String>>>, ctx: &Round) {
        for worker in workers {
            match tokio::time::timeout(Duration::from_secs(60), worker).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(failure))) => fail!(self, "{failure}"),
                Ok(Err(panic)) => fail!(self, "worker panicked: {panic}"),
                Err(_) => fail!(self, "a worker hung (base {})", ctx.base),
            }
        }
    }

    /// Checks every upload against the ledger and sets where it resumes.
    async fn verify(&self, server: &Server, stats: &mut Stats) {
        let base = format!("http://{}", server.public);
        let entries = self.ledger().entries.clone();
        let recheck = self.older_objects_to_recheck(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let Some(path) = &entry.path else {
                continue; // creation never acknowledged; created next round
            };
            let head = self
                .http
                .head(format!("{base}{path}"))
                .header(TUS.0, TUS.1)
                .send()
                .await
                .unwrap_or_else(|e| fail!(self, "HEAD {path}: {e}"));
            check!(
                self,
                head.status() == 200,
                "upload {i} ({path}): HEAD answered {} after restart, but its creation was \
                 acknowledged: {entry:?}",
                head.status()
            );
            let offset = upload_offset(&head)
                .unwrap_or_else(|| fail!(self, "HEAD {path}: no valid Upload-Offset"));
            check!(
                self,
                offset >= entry.acked && offset <= entry.len,
                "upload {i} ({path}): HEAD offset {offset} after restart, but {} bytes were \
                 acknowledged (length {}): {entry:?}",
                entry.acked,
                entry.len
            );
            check!(
                self,
                !entry.committed || offset == entry.len,
                "upload {i} ({path}): its commit was acknowledged but HEAD offset is {offset} \
                 of {}: {entry:?}",
                entry.len
            );
            check!(
                self,
                offset >= entry.seen,
                "upload {i} ({path}): HEAD offset {offset} after restart, but before this \
                 crash the server already reported {} bytes: {entry:?}",
                entry.seen
            );
            if offset > entry.seen {
                stats.offsets_past_acknowledged += 1;
            }
            stats.offsets_checked += 1;
            stats.commits_checked += usize::from(entry.committed);
            let id = path.rsplit('/').next().unwrap();
            if offset == entry.len {
                if !entry.committed {
                    stats.commits_found_unacknowledged += 1;
                }
                let first_time = self.downloaded.lock().unwrap().insert(i);
                if first_time || recheck.contains(&i) {
                    // Alternate the two download paths.
                    let url = if i % 2 == 0 {
                        format!("{base}{path}")
                    } else {
                        format!("{base}/objects/{id}")
                    };
                    self.assert_object(&url, i, &entry.data).await;
                    stats.commits_downloaded += 1;
                }
                self.ledger().found_complete(i);
            } else {
                for url in [format!("{base}{path}"), format!("{base}/objects/{id}")] {
                    let got = self
                        .http
                        .get(&url)
                        .send()
                        .await
                        .unwrap_or_else(|e| fail!(self, "GET {url}: {e}"));
                    check!(
                        self,
                        got.status() == 404,
                        "upload {i}: GET {url} answered {} but the upload is incomplete \
                         ({offset} of {} bytes)",
                        got.status(),
                        entry.len
                    );
                }
                self.ledger().resume_at(i, offset);
            }
        }
    }

    /// The next `RECHECKS_PER_RESTART` indices, in rotation over `count`.
    fn older_objects_to_recheck(&self, count: usize) -> std::collections::HashSet<usize> {
        use std::sync::atomic::Ordering;
        let take = RECHECKS_PER_RESTART.min(count);
        let start = self.recheck_cursor.fetch_add(take, Ordering::Relaxed);
        (0..take).map(|k| (start + k) % count.max(1)).collect()
    }

    async fn assert_object(&self, url: &str, i: usize, data: &[u8]) {
        let got = self
            .http
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| fail!(self, "GET {url}: {e}"));
        check!(
            self,
            got.status() == 200,
            "upload {i}: GET {url} answered {} for a complete upload",
            got.status()
        );
        let etag = got
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = got
            .bytes()
            .await
            .unwrap_or_else(|e| fail!(self, "upload {i}: GET {url} body: {e}"));
        if body[..] != data[..] {
            let first = body.iter().zip(data).position(|(a, b)| a != b);
            fail!(
                self,
                "upload {i}: GET {url} returned {} bytes that differ from the {} source bytes \
                 (first difference at {first:?})",
                body.len(),
                data.len()
            );
        }
        let want = format!("\"{}\"", sha256_hex(data));
        check!(
            self,
            etag.as_deref() == Some(want.as_str()),
            "upload {i}: GET {url} ETag {etag:?}, expected the SHA-256 {want}"
        );
    }

    fn fail(&self, message: String) -> ! {
        panic!(
            "[crash seed {seed}] {message}\n(rerun with STRONGROOM_CRASH_SEED={seed}; ledger \
             {ledger}; server log {log})\n--- server log (tail)\n{tail}",
            seed = self.seed,
            ledger = self.ledger_path.display(),
            log = self.log.display(),
            tail = tail(&self.log, 30),
        )
    }
}

fn upload_offset(response: &reqwest::Response) -> Option<u64> {
    response
        .headers()
        .get("upload-offset")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---- one round of uploads -----------------------------------------------------

/// What the workers of one server run share.
struct Round {
    base: String,
    http: reqwest::Client,
    ledger: Arc<Mutex<Ledger>>,
    seed: u64,
    /// Uploads to resume, then new ones while the budget lasts.
    queue: Mutex<VecDeque<usize>>,
    new_budget: AtomicUsize,
    /// Notified when a worker sends the last bytes of an upload.
    /// Notified whenever a PATCH is acknowledged, an upload's last PATCH
    /// starts, or a worker runs out of work.
    progress: Notify,
    /// Uploads whose last PATCH was sent.
    finals_started: AtomicUsize,
    /// Acknowledged PATCHes.
    patches: AtomicUsize,
    /// Workers still running.
    active: AtomicUsize,
    /// Bytes in acknowledged PATCHes, and commits acknowledged.
    acked_bytes: AtomicU64,
    commits: AtomicUsize,
    /// PATCHes sent and not yet answered (for the summary).
    in_flight: AtomicUsize,
    final_in_flight: AtomicUsize,
}

impl Round {
    fn new(crash: &Crash, server: &Server, new_uploads: usize) -> Arc<Round> {
        let ledger = crash.ledger();
        let queue = (0..ledger.entries.len())
            .filter(|&i| !ledger.entries[i].committed)
            .collect();
        let budget = new_uploads.min(max_uploads().saturating_sub(ledger.entries.len()));
        drop(ledger);
        Arc::new(Round {
            base: format!("http://{}", server.public),
            http: crash.http.clone(),
            ledger: crash.ledger.clone(),
            seed: crash.seed,
            queue: Mutex::new(queue),
            new_budget: AtomicUsize::new(budget),
            progress: Notify::new(),
            finals_started: AtomicUsize::new(0),
            patches: AtomicUsize::new(0),
            acked_bytes: AtomicU64::new(0),
            commits: AtomicUsize::new(0),
            active: AtomicUsize::new(WORKERS),
            in_flight: AtomicUsize::new(0),
            final_in_flight: AtomicUsize::new(0),
        })
    }

    fn add_to(&self, stats: &mut Stats) {
        stats.patches += self.patches.load(Ordering::SeqCst);
        stats.acked_bytes += self.acked_bytes.load(Ordering::SeqCst);
        stats.acked_commits += self.commits.load(Ordering::SeqCst);
    }

    fn spawn_workers(
        self: &Arc<Self>,
        rng: &mut Rng,
    ) -> Vec<tokio::task::JoinHandle<Result<(), String>>> {
        (0..WORKERS)
            .map(|_| {
                let ctx = self.clone();
                let rng = Rng::new(rng.next());
                tokio::spawn(async move { ctx.work(rng).await })
            })
            .collect()
    }

    /// Drives uploads until there are none left or the server is gone.
    /// `Err` only for a wrong answer from a live server.
    async fn work(&self, mut rng: Rng) -> Result<(), String> {
        let mut result = Ok(());
        while let Some(i) = self.next_upload(&mut rng) {
            match self.drive(i, &mut rng).await {
                Ok(()) => {}
                Err(Stop::Gone) => break,
                Err(Stop::Wrong(message)) => {
                    result = Err(format!("upload {i} (seed {}): {message}", self.seed));
                    break;
                }
            }
        }
        self.active.fetch_sub(1, Ordering::SeqCst);
        self.progress.notify_waiters();
        result
    }

    /// Waits until `done` holds, every worker has stopped, or 5 s passed.
    async fn wait_until(&self, done: impl Fn(&Round) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let progress = self.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            if done(self) || self.active.load(Ordering::SeqCst) == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, progress).await.is_err() {
                return;
            }
        }
    }

    fn next_upload(&self, rng: &mut Rng) -> Option<usize> {
        if let Some(i) = self.queue.lock().unwrap().pop_front() {
            return Some(i);
        }
        self.new_budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .ok()?;
        let len = random_size(rng);
        Some(self.ledger.lock().unwrap().add(rng.next(), len))
    }

    /// Creates (if needed) and uploads one upload from its resume offset.
    async fn drive(&self, i: usize, rng: &mut Rng) -> Result<(), Stop> {
        let entry = self.ledger.lock().unwrap().entries[i].clone();
        let path = match entry.path {
            Some(path) => path,
            None => self.create(i, entry.len).await?,
        };
        let url = format!("{}{path}", self.base);
        let len = entry.len;
        let mut offset = entry.resume;
        while offset < len {
            let cut = random_cut(rng, len - offset);
            let end = offset + cut;
            if end == len {
                self.finals_started.fetch_add(1, Ordering::SeqCst);
                self.progress.notify_waiters();
            }
            let chunk = Bytes::copy_from_slice(&entry.data[offset as usize..end as usize]);
            let body = if rng.chance(25) && cut > 1 {
                trickle(chunk, rng)
            } else {
                reqwest::Body::from(chunk)
            };
            let in_flight = (
                InFlight::new(&self.in_flight),
                (end == len).then(|| InFlight::new(&self.final_in_flight)),
            );
            let response = self
                .http
                .patch(&url)
                .header(TUS.0, TUS.1)
                .header("Content-Type", "application/offset+octet-stream")
                .header("Upload-Offset", offset.to_string())
                .header("Content-Length", cut.to_string())
                .body(body)
                .send()
                .await
                .map_err(Stop::from)?;
            let status = response.status();
            let acked = upload_offset(&response);
            let text = response.text().await.map_err(Stop::from)?;
            drop(in_flight);
            if status != 204 || acked != Some(end) {
                return Err(Stop::Wrong(format!(
                    "PATCH {path} at {offset} with {cut} bytes (length {len}) answered \
                     {status} Upload-Offset {acked:?}, expected 204 and {end}: {text}"
                )));
            }
            // Durable in the ledger before anything else happens.
            self.ledger.lock().unwrap().acknowledged(i, end);
            self.patches.fetch_add(1, Ordering::SeqCst);
            self.acked_bytes.fetch_add(cut, Ordering::SeqCst);
            if end == len {
                self.commits.fetch_add(1, Ordering::SeqCst);
            }
            self.progress.notify_waiters();
            offset = end;
            if rng.chance(20) {
                tokio::time::sleep(Duration::from_millis(rng.range(1, 4))).await;
            }
        }
        Ok(())
    }

    async fn create(&self, i: usize, len: u64) -> Result<String, Stop> {
        let response = self
            .http
            .post(format!("{}/files/", self.base))
            .header(TUS.0, TUS.1)
            .header("Upload-Length", len.to_string())
            .header(
                "Upload-Metadata",
                format!("filename {}", b64(&format!("u{i}"))),
            )
            .send()
            .await
            .map_err(Stop::from)?;
        let status = response.status();
        let offset = upload_offset(&response);
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.map_err(Stop::from)?;
        match (status.as_u16(), offset, location) {
            (201, Some(0), Some(location)) if location.starts_with("/files/") => {
                self.ledger.lock().unwrap().created(i, &location, 0);
                if len == 0 {
                    self.commits.fetch_add(1, Ordering::SeqCst);
                }
                Ok(location)
            }
            _ => Err(Stop::Wrong(format!(
                "POST /files/ (length {len}) answered {status} Upload-Offset {offset:?}, \
                 expected 201, 0 and a /files/ Location: {text}"
            ))),
        }
    }
}

/// Counts a request while it is unanswered.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn new(counter: &'a AtomicUsize) -> InFlight<'a> {
        counter.fetch_add(1, Ordering::SeqCst);
        InFlight(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

enum Stop {
    /// The request failed in transport: the server was killed.
    Gone,
    /// A live server answered wrongly.
    Wrong(String),
}

impl From<reqwest::Error> for Stop {
    fn from(err: reqwest::Error) -> Stop {
        if err.is_timeout() {
            // A live server that stops answering is a bug, not a kill.
            Stop::Wrong(format!("request timed out: {err}"))
        } else {
            Stop::Gone
        }
    }
}

/// A body that arrives in a few pieces with pauses, so kills land inside it.
fn trickle(chunk: Bytes, rng: &mut Rng) -> reqwest::Body {
    let pieces = rng.range(2, 5) as usize;
    let step = chunk.len().div_ceil(pieces);
    let pause = Duration::from_millis(rng.range(1, 8));
    let parts: Vec<Bytes> = (0..chunk.len())
        .step_by(step)
        .map(|at| chunk.slice(at..(at + step).min(chunk.len())))
        .collect();
    let stream = futures_util::stream::unfold(
        (parts.into_iter(), true),
        move |(mut parts, first)| async move {
            let part = parts.next()?;
            if !first {
                tokio::time::sleep(pause).await;
            }
            Some((Ok::<_, std::io::Error>(part), (parts, false)))
        },
    );
    reqwest::Body::wrap_stream(stream)
}

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn random_size(rng: &mut Rng) -> u64 {
    match rng.below(100) {
        0..8 => 0,
        8..30 => SEGMENT * rng.range(1, MAX_SIZE / SEGMENT + 1),
        30..42 => rng.range(1, SEGMENT),
        _ => rng.range(SEGMENT + 1, MAX_SIZE + 1),
    }
}

fn random_cut(rng: &mut Rng, remaining: u64) -> u64 {
    let cut = match rng.below(100) {
        0..15 => SEGMENT * rng.range(1, 5),
        15..25 => rng.range(1, 100),
        25..35 => remaining,
        _ => rng.range(1, 768 * 1024 + 1),
    };
    cut.clamp(1, remaining)
}

// ---- the ledger ---------------------------------------------------------------

/// What the client knows about one upload.
#[derive(Clone)]
struct Entry {
    seed: u64,
    len: u64,
    data: Arc<Vec<u8>>,
    /// Upload path once the creation was acknowledged.
    path: Option<String>,
    /// Highest Upload-Offset acknowledged by a 201 or 204.
    acked: u64,
    /// The commit was acknowledged (or the upload was found complete).
    committed: bool,
    /// Where the next PATCH starts: the last acknowledged or HEAD offset.
    resume: u64,
    /// Highest offset the server reported, by acknowledgement or HEAD: what
    /// it once said it had, it must still have after any later crash.
    seen: u64,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{{seed {}, len {}, path {:?}, acked {}, committed {}, resume {}, seen {}}}",
            self.seed, self.len, self.path, self.acked, self.committed, self.resume, self.seen
        )
    }
}

/// Every acknowledgement, in memory and appended + fsync'd to a file before
/// the client acts on it.
struct Ledger {
    file: File,
    entries: Vec<Entry>,
}

impl Ledger {
    fn open(path: &Path) -> Ledger {
        Ledger {
            file: File::create(path).expect("ledger file"),
            entries: Vec::new(),
        }
    }

    fn note(&mut self, line: &str) {
        writeln!(self.file, "{line}").expect("ledger write");
        self.file.sync_data().expect("ledger fsync");
    }

    fn add(&mut self, seed: u64, len: u64) -> usize {
        let i = self.entries.len();
        self.note(&format!("new {i} seed={seed} len={len}"));
        self.entries.push(Entry {
            seed,
            len,
            data: Arc::new(source_bytes(len as usize, seed)),
            path: None,
            acked: 0,
            committed: false,
            resume: 0,
            seen: 0,
        });
        i
    }

    fn created(&mut self, i: usize, path: &str, offset: u64) {
        self.note(&format!("created {i} {path} offset={offset}"));
        let entry = &mut self.entries[i];
        entry.path = Some(path.to_owned());
        entry.acked = offset;
        entry.resume = offset;
        entry.seen = offset;
        // A zero-length upload is complete once created.
        entry.committed = offset == entry.len;
    }

    fn acknowledged(&mut self, i: usize, offset: u64) {
        let committed = offset == self.entries[i].len;
        self.note(&format!("ack {i} offset={offset} committed={committed}"));
        let entry = &mut self.entries[i];
        entry.acked = entry.acked.max(offset);
        entry.resume = offset;
        entry.seen = entry.seen.max(offset);
        entry.committed |= committed;
    }

    fn found_complete(&mut self, i: usize) {
        if !self.entries[i].committed {
            self.note(&format!("found-complete {i}"));
            let entry = &mut self.entries[i];
            entry.committed = true;
            entry.resume = entry.len;
            entry.seen = entry.len;
        }
    }

    fn resume_at(&mut self, i: usize, offset: u64) {
        self.note(&format!("head {i} offset={offset}"));
        let entry = &mut self.entries[i];
        entry.resume = offset;
        entry.seen = entry.seen.max(offset);
    }
}

// ---- the server process -------------------------------------------------------

struct Server {
    child: Child,
    public: SocketAddr,
    admin: SocketAddr,
}

impl Server {
    /// Polls `/readyz` until 200; `Err` if the process exits or time runs out.
    async fn ready(&mut self, http: &reqwest::Client) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let url = format!("http://{}/readyz", self.admin);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("the server exited during start: {status}"));
            }
            if let Ok(response) = http.get(&url).send().await
                && response.status() == 200
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!("{url} not ready within {READY_TIMEOUT:?}"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGKILL, and reap.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr")
}

/// The test's temp dir, kept (and its path printed) when the test fails.
struct KeepOnPanic(Option<tempfile::TempDir>);

impl KeepOnPanic {
    fn new(seed: u64) -> KeepOnPanic {
        let dir = tempfile::Builder::new()
            .prefix(&format!("strongroom-crash-{seed}-"))
            .tempdir()
            .expect("temp dir");
        KeepOnPanic(Some(dir))
    }

    fn path(&self) -> &Path {
        self.0.as_ref().unwrap().path()
    }
}

impl Drop for KeepOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.0.take()
        {
            eprintln!("crash test: kept {} for inspection", dir.keep().display());
        }
    }
}

// ---- randomness ---------------------------------------------------------------

/// xorshift64*: small, seeded, good enough for test choices.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `lo..hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}
