//! End-to-end pipeline benchmark: `cargo bench --bench pipeline`.
//!
//! Spawns the release `strongroom` binary on a fresh data dir (real disk, full
//! pipeline: fsync + AES-GCM + SHA-256) and drives it over loopback with a
//! small tus client. Every figure is printed next to a baseline measured in the
//! same run with the same client code: a trivial hyper sink that discards
//! request bodies frame by frame and answers at once (the loopback ceiling).
//! Peak RSS of the server comes from `VmHWM`, reset between scenarios.
//!
//! Knobs (environment): `STRONGROOM_BENCH_QUICK=1` (small version of
//! everything), `STRONGROOM_BENCH_SIZE` (default 1GiB), `STRONGROOM_BENCH_BIG`
//! (size of the single-PATCH RSS check, default 4GiB, `0` skips it),
//! `STRONGROOM_BENCH_SMALL` (number of 64 KiB uploads, default 2000),
//! `STRONGROOM_BENCH_DIR` (parent of the temp data dir),
//! `STRONGROOM_BENCH_PLUGIN_UPLOADS` (sequential 64 KiB uploads of row 7b,
//! default 500) and `STRONGROOM_BENCH_PEERS=1` (also run scenarios 1-3
//! against @tus/server and rustus). See bench/README.md.
//!
//! Row 7 runs the default plugin chain (policies/default.toml, components
//! from plugins/dist, built by plugins/build.sh); the bench refuses to start
//! when they are missing or do not match their pins. Row 8 measures what
//! authentication adds, row 9 the operator surface (metrics scrapes, the
//! index read behind them, uploads with live event subscribers).

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// Size of the pieces the client streams (and the sink serves).
const CHUNK: u64 = 256 * KIB;
/// Random bytes the generated data is cut from.
const POOL: u64 = 8 * MIB;
/// Odd stride between the pool positions of consecutive chunks, so the data
/// has no short period (a misplaced segment changes the SHA-256).
const STRIDE: u64 = 1_000_003;
/// The finalize scenario's last PATCH, the same for every upload size.
const FINAL_CHUNK: u64 = MIB;
/// Row 7b's anomaly threshold: the default (30 a minute, High from 60) would
/// quarantine every sequential upload past the 60th. Twice this must fit the
/// plugin's u32.
const BURST_OFF: i64 = 1_000_000_000;
/// Warm-up uploads per server before row 7b is timed.
const WARM_UPS: usize = 5;

// ---------------------------------------------------------------------------
// settings

struct Settings {
    quick: bool,
    /// Scenarios 1, 2, 4b and 5.
    size: u64,
    patch_size: u64,
    small_count: usize,
    small_size: u64,
    /// Row 7b: sequential small uploads per server.
    plugin_uploads: usize,
    clients: usize,
    /// Single-PATCH RSS check; `None` skips it.
    big: Option<u64>,
    fanout_each: u64,
    /// Sink runs per throughput figure (the median is reported).
    sink_runs: usize,
    finalize_runs: usize,
    peers: bool,
    parent_dir: PathBuf,
}

impl Settings {
    fn from_env() -> Result<Settings> {
        let flag = |name: &str| {
            std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
        };
        let quick = flag("STRONGROOM_BENCH_QUICK");
        let size = match std::env::var("STRONGROOM_BENCH_SIZE") {
            Ok(text) => parse_size(&text).context("STRONGROOM_BENCH_SIZE")?,
            Err(_) if quick => 64 * MIB,
            Err(_) => GIB,
        };
        ensure!(
            size >= 2 * FINAL_CHUNK,
            "STRONGROOM_BENCH_SIZE must be at least 2MiB"
        );
        let big = match std::env::var("STRONGROOM_BENCH_BIG") {
            Ok(text) if text.trim() == "0" => None,
            Ok(text) => Some(parse_size(&text).context("STRONGROOM_BENCH_BIG")?),
            Err(_) if quick => Some(256 * MIB),
            Err(_) => Some(4 * GIB),
        };
        Ok(Settings {
            quick,
            size,
            patch_size: (8 * MIB).min(size),
            small_count: match std::env::var("STRONGROOM_BENCH_SMALL") {
                Ok(text) => text.trim().parse().context("STRONGROOM_BENCH_SMALL")?,
                Err(_) if quick => 200,
                Err(_) => 2000,
            },
            small_size: 64 * KIB,
            plugin_uploads: match std::env::var("STRONGROOM_BENCH_PLUGIN_UPLOADS") {
                Ok(text) => text
                    .trim()
                    .parse()
                    .ok()
                    .filter(|&n: &usize| n > 0)
                    .context("STRONGROOM_BENCH_PLUGIN_UPLOADS must be a positive count")?,
                Err(_) if quick => 100,
                Err(_) => 500,
            },
            clients: 32,
            big,
            fanout_each: if quick { 4 * MIB } else { 64 * MIB },
            sink_runs: if quick { 1 } else { 3 },
            finalize_runs: if quick { 3 } else { 7 },
            peers: flag("STRONGROOM_BENCH_PEERS"),
            parent_dir: std::env::var_os("STRONGROOM_BENCH_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir),
        })
    }
}

/// `1GiB`, `64MiB`, `512M`, `4g`, `1048576`: binary units.
fn parse_size(text: &str) -> Result<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .with_context(|| format!("bad size {text:?}"))?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => KIB,
        "m" | "mb" | "mib" => MIB,
        "g" | "gb" | "gib" => GIB,
        other => bail!("unknown size unit {other:?} in {text:?}"),
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| anyhow!("size {text:?} overflows"))
}

// ---------------------------------------------------------------------------
// generated data

/// Deterministic data of any length, generated on the fly as zero-copy slices
/// of a random pool: the client never holds a body in memory and spends no
/// CPU making it.
struct Pattern {
    pool: Bytes,
}

impl Pattern {
    fn new() -> Pattern {
        let len = (POOL + CHUNK) as usize;
        let mut pool = Vec::with_capacity(len + 8);
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        while pool.len() < len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            pool.extend_from_slice(&state.to_le_bytes());
        }
        pool.truncate(len);
        Pattern {
            pool: Bytes::from(pool),
        }
    }

    /// The data at `offset`, up to the next chunk boundary and at most `max`.
    fn piece(&self, offset: u64, max: u64) -> Bytes {
        let block = offset / CHUNK;
        let within = offset % CHUNK;
        let take = (CHUNK - within).min(max);
        let start = (block.wrapping_mul(STRIDE) % POOL + within) as usize;
        self.pool.slice(start..start + take as usize)
    }

    fn pieces(self: &Arc<Self>, from: u64, to: u64) -> Pieces {
        Pieces {
            pattern: self.clone(),
            at: from,
            end: to,
            piece_len: CHUNK,
            last_sent: None,
        }
    }

    fn sha256(self: &Arc<Self>, len: u64) -> String {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for piece in self.pieces(0, len) {
            ctx.update(&piece);
        }
        hex::encode(ctx.finish())
    }
}

type Mark = Arc<Mutex<Option<Instant>>>;

/// `[at, end)` of the pattern as pieces of at most `CHUNK` bytes; notes when
/// the last piece is handed to the connection.
struct Pieces {
    pattern: Arc<Pattern>,
    at: u64,
    end: u64,
    /// Largest piece; divides `CHUNK`.
    piece_len: u64,
    last_sent: Option<Mark>,
}

impl Iterator for Pieces {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.at >= self.end {
            return None;
        }
        let piece = self
            .pattern
            .piece(self.at, (self.end - self.at).min(self.piece_len));
        self.at += piece.len() as u64;
        if self.at == self.end
            && let Some(mark) = &self.last_sent
        {
            *mark.lock().expect("mark poisoned") = Some(Instant::now());
        }
        Some(piece)
    }
}

// ---------------------------------------------------------------------------
// the client (the same code for every server)

#[derive(Clone)]
struct Target {
    base: String,
    http: reqwest::Client,
    /// `Authorization` for a server with tokens on; empty otherwise.
    auth: reqwest::header::HeaderMap,
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(900))
        .build()
        .expect("http client")
}

/// What a PATCH's 204 said: the new offset and, once the upload is
/// complete, where it stands (`Strongroom-Disposition`; `Strongroom-Reason`
/// when it is held).
struct PatchReply {
    offset: u64,
    disposition: Option<String>,
    reason: Option<String>,
}

impl PatchReply {
    /// A rejected upload is already an error (422); a quarantined or pending
    /// one took another path than the one being measured, so its figure
    /// would be wrong.
    fn ensure_released(&self, path: &str) -> Result<()> {
        match self.disposition.as_deref() {
            Some("released") => Ok(()),
            Some(other) => bail!(
                "upload {path} was {other}, not released ({}); its figure would not measure the released path",
                self.reason.as_deref().unwrap_or("no reason given")
            ),
            None => {
                bail!("upload {path}: the completing PATCH's 204 has no Strongroom-Disposition")
            }
        }
    }
}

impl Target {
    fn new(base: String, http: &reqwest::Client) -> Target {
        Target {
            base,
            http: http.clone(),
            auth: reqwest::header::HeaderMap::new(),
        }
    }

    /// A target that sends `Authorization: Bearer <token>` on every request.
    fn with_token(base: String, http: &reqwest::Client, token: &str) -> Result<Target> {
        let mut target = Target::new(base, http);
        target.auth.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse()?,
        );
        Ok(target)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POST /files/ with `Upload-Length`; returns the upload's path.
    async fn create(&self, length: u64) -> Result<String> {
        let response = self
            .http
            .post(self.url("/files/"))
            .headers(self.auth.clone())
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Length", length)
            .send()
            .await
            .context("POST /files/")?;
        let status = response.status();
        if status != StatusCode::CREATED {
            bail!(
                "create: {status}: {}",
                response.text().await.unwrap_or_default()
            );
        }
        let location = response
            .headers()
            .get("location")
            .ok_or_else(|| anyhow!("create: 201 without Location"))?
            .to_str()?
            .to_owned();
        // Path-only or absolute: keep the path, the base may change on restart.
        Ok(match location.strip_prefix("http://") {
            Some(rest) => rest[rest.find('/').unwrap_or(rest.len())..].to_owned(),
            None => location,
        })
    }

    /// One PATCH streaming `[from, to)` of the pattern; returns the new offset.
    async fn patch(
        &self,
        path: &str,
        pattern: &Arc<Pattern>,
        from: u64,
        to: u64,
        last_sent: Option<Mark>,
    ) -> Result<u64> {
        Ok(self
            .patch_reply(path, pattern, from, to, last_sent)
            .await?
            .offset)
    }

    /// [`Target::patch`], keeping what the 204 said about the upload.
    async fn patch_reply(
        &self,
        path: &str,
        pattern: &Arc<Pattern>,
        from: u64,
        to: u64,
        last_sent: Option<Mark>,
    ) -> Result<PatchReply> {
        let mut pieces = pattern.pieces(from, to);
        pieces.last_sent = last_sent;
        let body = reqwest::Body::wrap_stream(futures_util::stream::iter(
            pieces.map(Ok::<Bytes, Infallible>),
        ));
        let response = self
            .http
            .patch(self.url(path))
            .headers(self.auth.clone())
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Offset", from)
            .header("Content-Type", "application/offset+octet-stream")
            .header("Content-Length", to - from)
            .body(body)
            .send()
            .await
            .with_context(|| format!("PATCH {path} at {from}"))?;
        let status = response.status();
        if status != StatusCode::NO_CONTENT {
            bail!(
                "PATCH {path} at {from}: {status}: {}",
                response.text().await.unwrap_or_default()
            );
        }
        let offset: u64 = response
            .headers()
            .get("upload-offset")
            .ok_or_else(|| anyhow!("PATCH: 204 without Upload-Offset"))?
            .to_str()?
            .parse()?;
        ensure!(offset == to, "PATCH {path}: offset {offset}, expected {to}");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        Ok(PatchReply {
            offset,
            disposition: header("strongroom-disposition"),
            reason: header("strongroom-reason"),
        })
    }

    /// GET, hashing while streaming: (bytes, SHA-256 hex, ETag).
    async fn get(&self, path: &str) -> Result<(u64, String, Option<String>)> {
        let mut response = self
            .http
            .get(self.url(path))
            .headers(self.auth.clone())
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        ensure!(
            response.status() == StatusCode::OK,
            "GET {path}: {}",
            response.status()
        );
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_matches('"').to_owned());
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut received = 0u64;
        while let Some(chunk) = response.chunk().await? {
            received += chunk.len() as u64;
            ctx.update(&chunk);
        }
        Ok((received, hex::encode(ctx.finish()), etag))
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let response = self
            .http
            .delete(self.url(path))
            .headers(self.auth.clone())
            .header("Tus-Resumable", "1.0.0")
            .send()
            .await?;
        ensure!(
            response.status() == StatusCode::NO_CONTENT,
            "DELETE {path}: {}",
            response.status()
        );
        Ok(())
    }

    /// Create + one PATCH of `len` bytes; returns (path, PATCH duration).
    async fn upload_one_patch(
        &self,
        pattern: &Arc<Pattern>,
        len: u64,
    ) -> Result<(String, Duration)> {
        let path = self.create(len).await?;
        let start = Instant::now();
        self.patch(&path, pattern, 0, len, None).await?;
        Ok((path, start.elapsed()))
    }

    /// Create + one PATCH of `len` bytes that must leave the upload released:
    /// (path, POST+PATCH time, PATCH time).
    async fn upload_released(
        &self,
        pattern: &Arc<Pattern>,
        len: u64,
    ) -> Result<(String, Duration, Duration)> {
        let start = Instant::now();
        let path = self.create(len).await?;
        let patch_start = Instant::now();
        let reply = self.patch_reply(&path, pattern, 0, len, None).await?;
        let done = Instant::now();
        reply.ensure_released(&path)?;
        Ok((path, done - start, done - patch_start))
    }

    /// Create + sequential PATCHes of `patch` bytes; returns (path, total
    /// PATCH time, each PATCH's duration).
    async fn upload_in_patches(
        &self,
        pattern: &Arc<Pattern>,
        len: u64,
        patch: u64,
    ) -> Result<(String, Duration, Vec<Duration>)> {
        let path = self.create(len).await?;
        let start = Instant::now();
        let mut each = Vec::new();
        let mut offset = 0;
        while offset < len {
            let t = Instant::now();
            offset = self
                .patch(&path, pattern, offset, (offset + patch).min(len), None)
                .await?;
            each.push(t.elapsed());
        }
        Ok((path, start.elapsed(), each))
    }

    /// `count` uploads (create + one PATCH) by `clients` concurrent clients:
    /// (wall time, per-upload latencies).
    async fn many_uploads(
        &self,
        pattern: &Arc<Pattern>,
        count: usize,
        clients: usize,
        len: u64,
    ) -> Result<(Duration, Vec<Duration>)> {
        let next = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (target, pattern, next) = (self.clone(), pattern.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    let t = Instant::now();
                    let path = target.create(len).await?;
                    target.patch(&path, &pattern, 0, len, None).await?;
                    latencies.push(t.elapsed());
                }
                Ok::<_, anyhow::Error>(latencies)
            }));
        }
        let mut latencies = Vec::with_capacity(count);
        for task in tasks {
            latencies.extend(task.await??);
        }
        Ok((start.elapsed(), latencies))
    }

    /// Uploads `len` bytes, all but the last `FINAL_CHUNK` in one PATCH, then
    /// times the final PATCH: (last byte handed over → 204, whole final PATCH).
    async fn finalize(
        &self,
        pattern: &Arc<Pattern>,
        len: u64,
    ) -> Result<(String, Duration, Duration)> {
        let path = self.create(len).await?;
        let split = len - FINAL_CHUNK;
        if split > 0 {
            self.patch(&path, pattern, 0, split, None).await?;
        }
        let mark: Mark = Arc::new(Mutex::new(None));
        let start = Instant::now();
        self.patch(&path, pattern, split, len, Some(mark.clone()))
            .await?;
        let done = Instant::now();
        let last = mark
            .lock()
            .expect("mark poisoned")
            .ok_or_else(|| anyhow!("final piece never sent"))?;
        Ok((path, done - last, done - start))
    }
}

// ---------------------------------------------------------------------------
// the sink: the loopback ceiling for the same client

type SinkBody = UnsyncBoxBody<Bytes, Infallible>;

struct SinkState {
    pattern: Arc<Pattern>,
    next_id: AtomicU64,
    /// Bodies that arrived chunked (the client should send Content-Length).
    chunked: AtomicU64,
}

/// Starts the sink on its own thread and runtime (2 workers, like the
/// server's default on this machine). `read_buf` caps hyper's read buffer.
fn start_sink(pattern: Arc<Pattern>, read_buf: Option<usize>) -> Result<(String, Arc<SinkState>)> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("sink".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("sink-rt")
                .enable_all()
                .build()
                .expect("sink runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("binding the sink");
                let state = Arc::new(SinkState {
                    pattern,
                    next_id: AtomicU64::new(0),
                    chunked: AtomicU64::new(0),
                });
                let addr = listener.local_addr().expect("sink address");
                let _ = tx.send((addr, state.clone()));
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let state = state.clone();
                    tokio::spawn(async move {
                        let mut builder = hyper::server::conn::http1::Builder::new();
                        builder.keep_alive(true);
                        if let Some(max) = read_buf {
                            builder.max_buf_size(max);
                        }
                        let service =
                            hyper::service::service_fn(move |req| sink_handle(state.clone(), req));
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        })?;
    let (addr, state) = rx
        .recv_timeout(Duration::from_secs(10))
        .context("the sink did not start")?;
    Ok((format!("http://{addr}"), state))
}

fn header_u64(req: &Request<Incoming>, name: &str) -> Option<u64> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

fn sink_response(status: StatusCode, body: SinkBody) -> Response<SinkBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("tus-resumable", "1.0.0".parse().expect("static header"));
    response
}

fn empty() -> SinkBody {
    Full::new(Bytes::new()).boxed_unsync()
}

/// POST: 201 with a Location that encodes the length. PATCH: 204 with the new
/// offset. GET: streams the pattern. Bodies are discarded frame by frame.
async fn sink_handle(
    state: Arc<SinkState>,
    req: Request<Incoming>,
) -> Result<Response<SinkBody>, Infallible> {
    let offset = header_u64(&req, "upload-offset").unwrap_or(0);
    let length = header_u64(&req, "upload-length").unwrap_or(0);
    if req.headers().contains_key("transfer-encoding") {
        state.chunked.fetch_add(1, Ordering::Relaxed);
    }
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let mut body = req.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    received += data.len() as u64;
                }
            }
            Err(_) => return Ok(sink_response(StatusCode::BAD_REQUEST, empty())),
        }
    }
    let response = match method {
        Method::POST => {
            let id = state.next_id.fetch_add(1, Ordering::Relaxed);
            let mut response = sink_response(StatusCode::CREATED, empty());
            let headers = response.headers_mut();
            let location = format!("/files/{id}-{length}");
            headers.insert("location", location.parse().expect("ascii"));
            headers.insert("upload-offset", 0.into());
            response
        }
        Method::PATCH => {
            let mut response = sink_response(StatusCode::NO_CONTENT, empty());
            response
                .headers_mut()
                .insert("upload-offset", (offset + received).into());
            response
        }
        Method::GET => {
            let len: u64 = path
                .rsplit('-')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            // 64 KiB frames, like strongroom's segments: 256 KiB writes made
            // the loopback GET slower, not faster.
            let mut pieces = state.pattern.pieces(0, len);
            pieces.piece_len = 64 * KIB;
            let frames = pieces.map(|b| Ok(Frame::data(b)));
            let body = StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync();
            let mut response = sink_response(StatusCode::OK, body);
            response.headers_mut().insert("content-length", len.into());
            response
        }
        Method::DELETE => sink_response(StatusCode::NO_CONTENT, empty()),
        _ => sink_response(StatusCode::METHOD_NOT_ALLOWED, empty()),
    };
    Ok(response)
}

// ---------------------------------------------------------------------------
// the server process

/// A spawned process speaking tus on 127.0.0.1 (strongroom or a peer).
struct Server {
    name: String,
    child: Child,
    base: String,
    /// strongroom's admin listener (`http://addr`); peers have none.
    admin: Option<String>,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    fn stop(&mut self, grace: Duration) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // SAFETY: signalling our own child by its pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} did not stop within {grace:?}; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `strongroom serve` on ephemeral ports, with `config` if given,
/// and waits for /readyz.
async fn start_strongroom(
    data_dir: &Path,
    log: &Path,
    http: &reqwest::Client,
    config: Option<&Path>,
) -> Result<Server> {
    // The data plane is measured without tokens, as the baselines have
    // none; row 8 measures what authentication adds.
    start_strongroom_with(data_dir, log, http, config, &["--auth", "none"]).await
}

async fn start_strongroom_with(
    data_dir: &Path,
    log: &Path,
    http: &reqwest::Client,
    config: Option<&Path>,
    args: &[&str],
) -> Result<Server> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let log_start = out.metadata()?.len();
    let mut command = Command::new(env!("CARGO_BIN_EXE_strongroom"));
    command.args(["--log-format", "json", "serve", "--data-dir"]);
    command.arg(data_dir);
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    let child = command
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .context("spawning strongroom")?;
    let mut server = Server {
        name: "strongroom".into(),
        child,
        base: String::new(),
        admin: None,
    };
    // A policy's plugins are compiled before the server listens (the first
    // start on an empty artifact cache takes seconds on a busy machine).
    let deadline = Instant::now() + Duration::from_secs(180);
    let (public, admin) = loop {
        if let Some(addrs) = listening_line(log, log_start)? {
            break addrs;
        }
        if !server.is_running() {
            bail!("strongroom exited at start:\n{}", tail_of(log, log_start));
        }
        ensure!(
            Instant::now() < deadline,
            "strongroom did not report its addresses:\n{}",
            tail_of(log, log_start)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    server.base = format!("http://{public}");
    server.admin = Some(format!("http://{admin}"));
    let readyz = format!("http://{admin}/readyz");
    loop {
        if let Ok(r) = http.get(&readyz).send().await
            && r.status() == StatusCode::OK
        {
            break;
        }
        ensure!(server.is_running(), "strongroom exited before ready");
        ensure!(Instant::now() < deadline, "strongroom never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(server)
}

/// The (public, admin) addresses from the JSON "strongroom listening" line.
fn listening_line(log: &Path, from: u64) -> Result<Option<(String, String)>> {
    let mut file = std::fs::File::open(log)?;
    file.seek(SeekFrom::Start(from))?;
    for line in BufReader::new(file).lines() {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&line?) else {
            continue;
        };
        let fields = &value["fields"];
        if fields["message"] == "strongroom listening" {
            let public = fields["public"].as_str().map(str::to_owned);
            let admin = fields["admin"].as_str().map(str::to_owned);
            if let (Some(public), Some(admin)) = (public, admin) {
                return Ok(Some((public, admin)));
            }
        }
    }
    Ok(None)
}

fn tail_of(log: &Path, from: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(log) {
        let _ = file.seek(SeekFrom::Start(from));
        let _ = file.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

// ---------------------------------------------------------------------------
// /proc probes

fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// User + system CPU seconds of the whole process (all threads).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    // Fields after the command name start at field 3 (state): utime is 14, stime 15.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some(ticks as f64 / hz.max(1) as f64)
}

/// Bytes the process caused to be sent to the storage layer.
fn write_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Resets the process's peak RSS (VmHWM) to its current RSS.
fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// Server resources used by one scenario.
struct Probe {
    pid: u32,
    cpu: Option<f64>,
    written: Option<u64>,
    reset: bool,
}

#[derive(Debug, Clone, Copy)]
struct Usage {
    peak_rss_kib: Option<u64>,
    cpu: Option<f64>,
    written: Option<u64>,
}

impl Probe {
    fn start(pid: u32) -> Probe {
        Probe {
            pid,
            reset: reset_peak_rss(pid),
            cpu: cpu_seconds(pid),
            written: write_bytes(pid),
        }
    }

    fn finish(self) -> Usage {
        let delta = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?));
        Usage {
            // Without a reset the peak is the process's lifetime peak.
            peak_rss_kib: proc_status_kib(self.pid, "VmHWM").filter(|_| self.reset),
            cpu: cpu_seconds(self.pid).zip(self.cpu).map(|(b, a)| b - a),
            written: delta(self.written, write_bytes(self.pid)),
        }
    }
}

// ---------------------------------------------------------------------------
// formatting

struct Row {
    scenario: String,
    ours: String,
    baseline: String,
    ratio: String,
    rss: String,
    cpu: String,
    disk: String,
}

impl Row {
    fn new(
        scenario: impl Into<String>,
        ours: String,
        baseline: String,
        ratio: String,
        usage: Option<&Usage>,
    ) -> Row {
        let (rss, cpu, disk) = match usage {
            Some(u) => (
                u.peak_rss_kib
                    .map_or("n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
                u.cpu.map_or("n/a".into(), |c| format!("{c:.1} s")),
                u.written.map_or("n/a".into(), |w| {
                    format!("{:.0} MiB", w as f64 / MIB as f64)
                }),
            ),
            None => (String::new(), String::new(), String::new()),
        };
        Row {
            scenario: scenario.into(),
            ours,
            baseline,
            ratio,
            rss,
            cpu,
            disk,
        }
    }
}

fn print_table(title: &str, ours: &str, rows: &[Row]) {
    let header = [
        "scenario",
        ours,
        "baseline (sink)",
        "ratio",
        "peak RSS",
        "server CPU",
        "disk writes",
    ];
    let cells: Vec<[&str; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.scenario.as_str(),
                &r.ours,
                &r.baseline,
                &r.ratio,
                &r.rss,
                &r.cpu,
                &r.disk,
            ]
        })
        .collect();
    print_grid(title, header, &cells);
}

/// A title, then aligned columns: the first left-aligned, the rest right.
fn print_grid(title: &str, header: [&str; 7], cells: &[[&str; 7]]) {
    let mut widths = header.map(str::len);
    for row in cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |row: &[&str; 7]| {
        let mut out = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            let pad = w - cell.chars().count();
            if i == 0 {
                out.push_str(cell);
                out.push_str(&" ".repeat(pad));
            } else {
                out.push_str(" | ");
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            }
        }
        println!("{}", out.trim_end());
    };
    println!("\n{title}");
    line(&header);
    println!(
        "{}",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-|-")
    );
    for row in cells {
        line(row);
    }
}

fn mb_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64()
}

fn fmt_mb_s(v: f64) -> String {
    format!("{v:.0} MB/s")
}

fn pct(ours: f64, baseline: f64) -> String {
    format!("{:.0}%", 100.0 * ours / baseline)
}

fn times(ours: Duration, baseline: Duration) -> String {
    format!(
        "{:.1}x",
        ours.as_secs_f64() / baseline.as_secs_f64().max(1e-9)
    )
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// `ours - baseline` in milliseconds, signed.
fn signed_ms(ours: Duration, baseline: Duration) -> String {
    format!(
        "{:+.2} ms",
        (ours.as_secs_f64() - baseline.as_secs_f64()) * 1e3
    )
}

fn human(bytes: u64) -> String {
    if bytes >= GIB && bytes.is_multiple_of(GIB) {
        format!("{} GiB", bytes / GIB)
    } else if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} B")
    }
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    percentile(&values, 0.5)
}

// ---------------------------------------------------------------------------
// machine facts

fn machine_facts(data_dir: &Path) -> Vec<(String, String)> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|x| x.1.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let flags: Vec<&str> = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("flags")?.split_once(':').map(|x| x.1))
        .unwrap_or("")
        .split_whitespace()
        .filter(|f| {
            [
                "aes",
                "vaes",
                "pclmulqdq",
                "vpclmulqdq",
                "sha_ni",
                "avx2",
                "avx512f",
            ]
            .contains(f)
        })
        .collect();
    let mem_kib = read("/proc/meminfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0);
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let (mount, fstype, device) = filesystem_of(data_dir);
    vec![
        ("nproc".into(), nproc.to_string()),
        (
            "kernel".into(),
            read("/proc/sys/kernel/osrelease").trim().to_owned(),
        ),
        ("cpu".into(), format!("{cpu} [{}]", flags.join(" "))),
        (
            "memory".into(),
            format!("{:.1} GiB", mem_kib as f64 / 1024.0 / 1024.0),
        ),
        ("load avg".into(), load_average()),
        ("data dir".into(), data_dir.display().to_string()),
        (
            "filesystem".into(),
            format!("{fstype} on {device} (mounted at {mount})"),
        ),
    ]
}

/// The 1, 5 and 15 minute load averages: other work on the machine skews
/// every figure.
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// (mount point, fs type, device) of the longest mount containing `path`.
fn filesystem_of(path: &Path) -> (String, String, String) {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let mut it = line.split_whitespace();
            let (device, mount, fstype) = (it.next()?, it.next()?, it.next()?);
            path.starts_with(mount)
                .then(|| (mount.to_owned(), fstype.to_owned(), device.to_owned()))
        })
        .max_by_key(|(mount, _, _)| mount.len())
        .unwrap_or_else(|| ("?".into(), "unknown".into(), "?".into()))
}

/// Drops the page cache of one segment file (its pages are clean: synced).
fn drop_file_cache(path: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    // SAFETY: a valid descriptor we own; advice only.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    ensure!(rc == 0, "posix_fadvise: error {rc}");
    Ok(())
}

/// What the disk alone does: `len` bytes written in `CHUNK` pieces with an
/// fdatasync every 16 MiB (strongroom's checkpoint interval) and at the end,
/// then read back cold in 64 KiB reads: (write time, read time).
fn disk_ceiling(dir: &Path, pattern: &Arc<Pattern>, len: u64) -> Result<(Duration, Duration)> {
    use std::os::unix::fs::FileExt;
    let path = dir.join("disk-ceiling.tmp");
    let file = std::fs::File::options()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&path)?;
    let start = Instant::now();
    let mut since_sync = 0;
    let mut offset = 0;
    for piece in pattern.pieces(0, len) {
        file.write_all_at(&piece, offset)?;
        offset += piece.len() as u64;
        since_sync += piece.len() as u64;
        if since_sync >= 16 * MIB {
            file.sync_data()?;
            since_sync = 0;
        }
    }
    file.sync_data()?;
    let wrote = start.elapsed();
    drop(file);
    drop_file_cache(&path)?;
    let file = std::fs::File::open(&path)?;
    let mut buf = vec![0u8; 64 * KIB as usize];
    let start = Instant::now();
    let mut offset = 0;
    while offset < len {
        let n = (len - offset).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], offset)?;
        offset += n as u64;
    }
    let read = start.elapsed();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok((wrote, read))
}

/// Median time to create a file, write 64 KiB and fdatasync it (and its
/// directory): the floor under every small upload's acknowledgement.
fn small_sync_latency(dir: &Path, pattern: &Arc<Pattern>, runs: usize) -> Result<Duration> {
    use std::io::Write;
    let piece = pattern.piece(0, 64 * KIB);
    let mut each = Vec::with_capacity(runs);
    for i in 0..runs {
        let path = dir.join(format!("sync-latency-{i}.tmp"));
        let start = Instant::now();
        let mut file = std::fs::File::create_new(&path)?;
        file.write_all(&piece)?;
        file.sync_data()?;
        std::fs::File::open(dir)?.sync_all()?;
        each.push(start.elapsed());
        std::fs::remove_file(&path)?;
    }
    Ok(median(each))
}

fn segment_file(data_dir: &Path, upload_path: &str) -> PathBuf {
    let id = upload_path.rsplit('/').next().unwrap_or_default();
    data_dir
        .join("segments")
        .join(id.get(..2).unwrap_or_default())
        .join(format!("{id}.seg"))
}

// ---------------------------------------------------------------------------
// the scenarios

struct Bench {
    settings: Settings,
    pattern: Arc<Pattern>,
    http: reqwest::Client,
    sink: Target,
    /// SHA-256 of the first `settings.size` bytes of the pattern.
    expected: String,
    failures: Vec<String>,
    notes: Vec<String>,
}

impl Bench {
    /// Compares a download (length, SHA-256, ETag) with what was sent;
    /// records a failure for any difference. Returns the table's note.
    fn check_readback(
        &mut self,
        what: &str,
        (n, sha, etag): (u64, &str, &Option<String>),
        size: u64,
        expected: &str,
    ) -> &'static str {
        if etag.as_deref() != Some(expected) {
            self.failures.push(format!(
                "{what}: ETag {etag:?} is not the SHA-256 of the upload ({expected})"
            ));
        }
        if n == size && sha == expected {
            "SHA-256 ok"
        } else {
            self.failures.push(format!(
                "{what} returned {n} bytes with SHA-256 {sha}; sent {size} bytes with {expected}"
            ));
            "SHA-256 MISMATCH"
        }
    }

    /// Median sink duration over `sink_runs` runs of `run`.
    async fn sink_median<F, Fut>(&self, mut run: F) -> Result<Duration>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Duration>>,
    {
        let mut runs = Vec::new();
        for _ in 0..self.settings.sink_runs {
            runs.push(run().await?);
        }
        Ok(median(runs))
    }

    /// Scenarios 1-3 (with their RSS) against one server. `baseline` keeps
    /// the sink's figures, measured once, for every server's table;
    /// `keep_object` leaves row 1's upload for the GET scenario.
    async fn core(
        &mut self,
        server: &Server,
        baseline: &mut Baseline,
        keep_object: bool,
    ) -> Result<Vec<Row>> {
        let s = &self.settings;
        let (size, patch) = (s.size, s.patch_size);
        let (count, clients, small) = (s.small_count, s.clients, s.small_size);
        let pattern = self.pattern.clone();
        let target = Target::new(server.base.clone(), &self.http);
        let sink = self.sink.clone();
        let (sink_r, pattern_r) = (&sink, &pattern);
        let mut rows = Vec::new();

        // warm-up: connections, page faults in the binary, sled caches.
        target.upload_one_patch(&pattern, 4 * MIB).await?;
        sink.upload_one_patch(&pattern, 4 * MIB).await?;

        // 1. one PATCH
        let sink1 = match baseline.single {
            Some(d) => d,
            None => {
                let d = self
                    .sink_median(
                        || async move { Ok(sink_r.upload_one_patch(pattern_r, size).await?.1) },
                    )
                    .await?;
                *baseline.single.insert(d)
            }
        };
        let probe = Probe::start(server.pid());
        let (object, took) = target.upload_one_patch(&pattern, size).await?;
        let usage = probe.finish();
        let (ours, base) = (mb_s(size, took), mb_s(size, sink1));
        rows.push(Row::new(
            format!("1. {} as one PATCH", human(size)),
            fmt_mb_s(ours),
            fmt_mb_s(base),
            pct(ours, base),
            Some(&usage),
        ));
        let row1 = (ours, usage);

        // 2. sequential 8 MiB PATCHes
        let sink2 = match baseline.patches {
            Some(d) => d,
            None => {
                let d = self
                    .sink_median(|| async move {
                        Ok(sink_r.upload_in_patches(pattern_r, size, patch).await?.1)
                    })
                    .await?;
                *baseline.patches.insert(d)
            }
        };
        let probe = Probe::start(server.pid());
        let (path2, took, each) = target.upload_in_patches(&pattern, size, patch).await?;
        let usage = probe.finish();
        let (ours, base) = (mb_s(size, took), mb_s(size, sink2));
        rows.push(Row::new(
            format!("2. {} as {} PATCHes", human(size), human(patch)),
            fmt_mb_s(ours),
            fmt_mb_s(base),
            pct(ours, base),
            Some(&usage),
        ));
        let mut each = each;
        each.sort();
        self.notes.push(format!(
            "{}: scenario 2, one {} PATCH takes p50 {} / p99 {} / max {}",
            server.name,
            human(patch),
            ms(percentile(&each, 0.5)),
            ms(percentile(&each, 0.99)),
            ms(*each.last().unwrap_or(&Duration::ZERO)),
        ));
        target.delete(&path2).await?;

        // 3. many small uploads
        let (sink_wall, sink_lat) = match &baseline.small {
            Some(v) => v.clone(),
            None => {
                let mut v = sink.many_uploads(&pattern, count, clients, small).await?;
                v.1.sort();
                baseline.small.insert(v).clone()
            }
        };
        let probe = Probe::start(server.pid());
        let (wall, mut lat) = target.many_uploads(&pattern, count, clients, small).await?;
        let usage = probe.finish();
        lat.sort();
        let rate = |wall: Duration| count as f64 / wall.as_secs_f64();
        rows.push(Row::new(
            format!("3. {count} x {} uploads, {clients} clients", human(small)),
            format!("{:.0} uploads/s", rate(wall)),
            format!("{:.0} uploads/s", rate(sink_wall)),
            pct(rate(wall), rate(sink_wall)),
            Some(&usage),
        ));
        for (label, q) in [("p50", 0.5), ("p99", 0.99)] {
            let (o, b) = (percentile(&lat, q), percentile(&sink_lat, q));
            rows.push(Row::new(
                format!("   {label} latency per upload (POST+PATCH)"),
                ms(o),
                ms(b),
                times(o, b),
                None,
            ));
        }

        // The one-PATCH object stays for GET (strongroom only, below).
        if keep_object {
            baseline.object = Some(object);
            baseline.row1 = Some(row1);
        } else {
            target.delete(&object).await?;
        }
        Ok(rows)
    }

    /// Scenarios 4 and 5: strongroom only.
    async fn strongroom_extra(
        &mut self,
        server: &Server,
        baseline: &mut Baseline,
        data_dir: &Path,
        rows: &mut Vec<Row>,
    ) -> Result<()> {
        let s = &self.settings;
        let (size, runs) = (s.size, s.finalize_runs);
        let pattern = self.pattern.clone();
        let target = Target::new(server.base.clone(), &self.http);
        let sink = self.sink.clone();

        // 4. finalize latency: the final PATCH is FINAL_CHUNK for both sizes.
        let (mut ours_small, mut sink_small, mut ours_small_rt) =
            (Vec::new(), Vec::new(), Vec::new());
        let probe = Probe::start(server.pid());
        for _ in 0..runs {
            let (path, last, whole) = target.finalize(&pattern, FINAL_CHUNK).await?;
            ours_small.push(last);
            ours_small_rt.push(whole);
            target.delete(&path).await?;
            sink_small.push(sink.finalize(&pattern, FINAL_CHUNK).await?.1);
        }
        let usage = probe.finish();
        let (o, b) = (median(ours_small), median(sink_small));
        rows.push(Row::new(
            format!(
                "4a. finalize {}: last byte -> 204 (median of {runs})",
                human(FINAL_CHUNK)
            ),
            ms(o),
            ms(b),
            times(o, b),
            Some(&usage),
        ));
        let sink_big = sink.finalize(&pattern, size).await?.1;
        let probe = Probe::start(server.pid());
        let (path, last, whole) = target.finalize(&pattern, size).await?;
        let usage = probe.finish();
        target.delete(&path).await?;
        rows.push(Row::new(
            format!("4b. finalize {}: last byte -> 204", human(size)),
            ms(last),
            ms(sink_big),
            times(last, sink_big),
            Some(&usage),
        ));
        self.notes.push(format!(
            "strongroom: scenario 4, whole final {} PATCH round trip: {} for a {} upload (median), {} for a {} upload",
            human(FINAL_CHUNK),
            ms(median(ours_small_rt)),
            human(FINAL_CHUNK),
            ms(whole),
            human(size),
        ));

        // 5. GET of scenario 1's object, SHA-256 checked while streaming.
        let object = baseline
            .object
            .clone()
            .ok_or_else(|| anyhow!("no object from scenario 1"))?;
        let expected = self.expected.clone();
        let sink_get = {
            let sink_path = sink.create(size).await?;
            let (n, sha, _) = sink.get(&sink_path).await?;
            ensure!(
                n == size && sha == expected,
                "sink GET returned other bytes"
            );
            let path = sink_path.clone();
            self.sink_median(|| {
                let (sink, path) = (sink.clone(), path.clone());
                async move {
                    let t = Instant::now();
                    sink.get(&path).await?;
                    Ok(t.elapsed())
                }
            })
            .await?
        };
        let base = mb_s(size, sink_get);
        let segment = segment_file(data_dir, &object);
        for cold in [false, true] {
            let label = if cold {
                if let Err(err) = drop_file_cache(&segment) {
                    self.notes.push(format!(
                        "could not drop the page cache of {}: {err:#}",
                        segment.display()
                    ));
                    continue;
                }
                "cold: file evicted from page cache"
            } else {
                "page cache"
            };
            let probe = Probe::start(server.pid());
            let t = Instant::now();
            let (n, sha, etag) = target.get(&object).await?;
            let took = t.elapsed();
            let usage = probe.finish();
            let verdict =
                self.check_readback(&format!("GET ({label})"), (n, &sha, &etag), size, &expected);
            let ours = mb_s(size, took);
            rows.push(Row::new(
                format!("5. GET {} ({label}), {verdict}", human(size)),
                fmt_mb_s(ours),
                fmt_mb_s(base),
                pct(ours, base),
                Some(&usage),
            ));
        }
        target.delete(&object).await?;

        Ok(())
    }

    /// Scenario 6, one case on a server started just for it, so its peak RSS
    /// starts from an idle process: a big single PATCH (`fanout == false`) or
    /// 32 clients uploading at once.
    async fn memory_case(
        &mut self,
        server: &Server,
        fanout: bool,
        rows: &mut Vec<Row>,
    ) -> Result<()> {
        let s = &self.settings;
        let (clients, each) = (s.clients, s.fanout_each);
        let pattern = self.pattern.clone();
        let target = Target::new(server.base.clone(), &self.http);
        let sink = self.sink.clone();
        if !fanout {
            let Some(big) = s.big else { return Ok(()) };
            let sink_took = sink.upload_one_patch(&pattern, big).await?.1;
            let probe = Probe::start(server.pid());
            let (path, took) = target.upload_one_patch(&pattern, big).await?;
            let usage = probe.finish();
            target.delete(&path).await?;
            let (ours, base) = (mb_s(big, took), mb_s(big, sink_took));
            rows.push(Row::new(
                format!("6a. {} as one PATCH (fresh server)", human(big)),
                fmt_mb_s(ours),
                fmt_mb_s(base),
                pct(ours, base),
                Some(&usage),
            ));
            return Ok(());
        }
        let total = clients as u64 * each;
        let sink_wall = sink.many_uploads(&pattern, clients, clients, each).await?.0;
        let probe = Probe::start(server.pid());
        let (wall, _) = target
            .many_uploads(&pattern, clients, clients, each)
            .await?;
        let usage = probe.finish();
        let (ours, base) = (mb_s(total, wall), mb_s(total, sink_wall));
        rows.push(Row::new(
            format!(
                "6b. {clients} clients x {} at once (fresh server)",
                human(each)
            ),
            fmt_mb_s(ours),
            fmt_mb_s(base),
            pct(ours, base),
            Some(&usage),
        ));
        Ok(())
    }

    /// The 16 KiB read-buffer sink: what strongroom's `max_buf_size` (set to
    /// `max_header_bytes`) costs hyper alone.
    async fn small_read_buffer_sink(&mut self, baseline: &Baseline) -> Result<()> {
        let (base, _) = start_sink(self.pattern.clone(), Some(16 * KIB as usize))?;
        let target = Target::new(base, &self.http);
        let pattern = self.pattern.clone();
        let size = self.settings.size;
        target.upload_one_patch(&pattern, 4 * MIB).await?;
        let (target_r, pattern_r) = (&target, &pattern);
        let took = self
            .sink_median(|| async move { Ok(target_r.upload_one_patch(pattern_r, size).await?.1) })
            .await?;
        if let Some(full) = baseline.single {
            self.notes.push(format!(
                "sink with hyper max_buf_size = 16 KiB (strongroom sets it from server.max_header_bytes): \
                 {} as one PATCH at {} vs {} with hyper's default buffer",
                human(size),
                fmt_mb_s(mb_s(size, took)),
                fmt_mb_s(mb_s(size, full)),
            ));
        }
        Ok(())
    }
}

/// Sink figures, measured once and shared by every server's table.
#[derive(Default)]
struct Baseline {
    single: Option<Duration>,
    patches: Option<Duration>,
    small: Option<(Duration, Vec<Duration>)>,
    object: Option<String>,
    /// strongroom's row 1 (MB/s and usage), the no-plugin figure of row 7a.
    row1: Option<(f64, Usage)>,
}

// ---------------------------------------------------------------------------
// row 7: the default plugin chain

/// The shipped default policy, checked before anything runs: every plugin
/// of its chain built (plugins/build.sh) and matching its pin.
struct ChainPolicy {
    path: PathBuf,
    /// Plugin names in chain order.
    chain: Vec<String>,
    table: toml::Table,
}

impl ChainPolicy {
    fn load() -> Result<ChainPolicy> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("policies")
            .join("default.toml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let table: toml::Table =
            toml::from_str(&text).with_context(|| format!("policy {}", path.display()))?;
        let chain: Vec<String> = table
            .get("defaults")
            .and_then(|d| d.get("chain"))
            .and_then(toml::Value::as_array)
            .map(|names| {
                names
                    .iter()
                    .filter_map(|n| n.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        ensure!(
            !chain.is_empty(),
            "policy {}: no default chain",
            path.display()
        );
        let base = path.parent().expect("a file has a parent");
        for name in &chain {
            let field = |key: &str| {
                table
                    .get("plugins")
                    .and_then(|p| p.get(name))
                    .and_then(|p| p.get(key))
                    .and_then(toml::Value::as_str)
                    .ok_or_else(|| anyhow!("policy {}: plugin {name} has no {key}", path.display()))
            };
            let wasm = base.join(field("path")?);
            let pin = field("sha256")?;
            let bytes = match std::fs::read(&wasm) {
                Ok(bytes) => bytes,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => bail!(
                    "plugin {name}: {} is missing; row 7 runs the default policy's plugins, build them with plugins/build.sh",
                    wasm.display()
                ),
                Err(err) => {
                    return Err(err).with_context(|| format!("reading {}", wasm.display()));
                }
            };
            let actual = hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes));
            ensure!(
                actual == pin,
                "plugin {name}: {} has SHA-256 {actual} but {} pins {pin}; rebuild with plugins/build.sh or update the pin",
                wasm.display(),
                path.display()
            );
        }
        Ok(ChainPolicy { path, chain, table })
    }

    /// The same policy for a run of sequential uploads: plugin paths made
    /// absolute (the copy lives in the temp dir) and the anomaly plugin's
    /// burst threshold lifted ([`BURST_OFF`]). Everything else, pins
    /// included, is unchanged.
    fn without_burst_limit(&self) -> Result<String> {
        let base = self.path.parent().expect("a file has a parent");
        let mut table = self.table.clone();
        let plugins = table
            .get_mut("plugins")
            .and_then(toml::Value::as_table_mut)
            .ok_or_else(|| anyhow!("policy {}: no [plugins]", self.path.display()))?;
        for (name, plugin) in plugins.iter_mut() {
            let Some(plugin) = plugin.as_table_mut() else {
                continue;
            };
            if let Some(path) = plugin.get("path").and_then(toml::Value::as_str) {
                let absolute = base.join(path).display().to_string();
                plugin.insert("path".into(), toml::Value::String(absolute));
            }
            if name == "anomaly" {
                let config = plugin
                    .entry("config")
                    .or_insert(toml::Value::Table(toml::Table::new()));
                if let Some(config) = config.as_table_mut() {
                    config.insert("burst_per_minute".into(), toml::Value::Integer(BURST_OFF));
                }
            }
        }
        Ok(toml::to_string(&table)?)
    }
}

/// Writes a strongroom config holding only `[plugins]`: the policy and an
/// artifact cache shared by the run's servers (plugins compile once).
fn write_plugins_config(path: &Path, policy: &Path, cache: &Path) -> Result<()> {
    let string = |p: &Path| toml::Value::String(p.display().to_string());
    let mut plugins = toml::Table::new();
    plugins.insert("policy".into(), string(policy));
    plugins.insert("cache_dir".into(), string(cache));
    let mut root = toml::Table::new();
    root.insert("plugins".into(), toml::Value::Table(plugins));
    std::fs::write(path, toml::to_string(&root)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// One plugin's counters from `GET /admin/plugins`.
#[derive(Debug, Clone, Copy)]
struct PluginCounters {
    runs: u64,
    /// Time its Wasm calls spent on a worker: instantiation, feeds, finish.
    busy_us: u64,
    failures: u64,
}

impl PluginCounters {
    fn since(&self, before: &PluginCounters) -> PluginCounters {
        PluginCounters {
            runs: self.runs.saturating_sub(before.runs),
            busy_us: self.busy_us.saturating_sub(before.busy_us),
            failures: self.failures.saturating_sub(before.failures),
        }
    }
}

/// The counters of each plugin of `chain`, in chain order.
async fn plugin_counters(
    http: &reqwest::Client,
    server: &Server,
    chain: &[String],
) -> Result<Vec<PluginCounters>> {
    let admin = server
        .admin
        .as_deref()
        .ok_or_else(|| anyhow!("{} has no admin listener", server.name))?;
    let response = http
        .get(format!("{admin}/admin/plugins"))
        .send()
        .await
        .context("GET /admin/plugins")?;
    ensure!(
        response.status() == StatusCode::OK,
        "GET /admin/plugins: {}",
        response.status()
    );
    let status: serde_json::Value =
        serde_json::from_slice(&response.bytes().await?).context("GET /admin/plugins")?;
    let plugins = status["plugins"]
        .as_array()
        .ok_or_else(|| anyhow!("GET /admin/plugins: no plugins list"))?;
    chain
        .iter()
        .map(|name| {
            let plugin = plugins
                .iter()
                .find(|p| p["name"] == name.as_str())
                .ok_or_else(|| anyhow!("GET /admin/plugins does not list plugin {name}"))?;
            let field = |key: &str| {
                plugin[key]
                    .as_u64()
                    .ok_or_else(|| anyhow!("GET /admin/plugins: plugin {name} has no {key}"))
            };
            Ok(PluginCounters {
                runs: field("runs")?,
                busy_us: field("busy_us_total")?,
                failures: field("failures")?,
            })
        })
        .collect()
}

/// The counters over one phase of `uploads` uploads, checked: every plugin
/// ran once per upload and none failed (a failing plugin whose rule is
/// `accept` still lets the upload be released, so the disposition alone
/// would not show it).
fn phase_counters(
    chain: &[String],
    before: &[PluginCounters],
    after: &[PluginCounters],
    uploads: u64,
    row: &str,
) -> Result<Vec<PluginCounters>> {
    let phase: Vec<PluginCounters> = after.iter().zip(before).map(|(a, b)| a.since(b)).collect();
    for (name, counters) in chain.iter().zip(&phase) {
        ensure!(
            counters.failures == 0,
            "row {row}: plugin {name} failed {} times (see the server log)",
            counters.failures
        );
        ensure!(
            counters.runs == uploads,
            "row {row}: plugin {name} ran {} times for {uploads} uploads",
            counters.runs
        );
    }
    Ok(phase)
}

fn us(seconds: f64) -> String {
    format!("{:.0} µs", seconds * 1e6)
}

fn signed_us(seconds: f64) -> String {
    format!("{:+.0} µs", seconds * 1e6)
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

impl Bench {
    /// Row 8: what authentication adds. A server with tokens on and one
    /// with `--auth none`, taking turns at sequential small uploads (each
    /// POST and PATCH carries a PASETO token that is verified), plus the
    /// token endpoint's own latency.
    async fn authentication(&mut self, dir: &Path) -> Result<()> {
        let (count, small) = (self.settings.plugin_uploads, self.settings.small_size);
        let http = self.http.clone();
        let pattern = self.pattern.clone();
        let mut open = start_strongroom(
            &dir.join("data-8-none"),
            &dir.join("strongroom-8-none.log"),
            &http,
            None,
        )
        .await?;
        let tokens_log = dir.join("strongroom-8-tokens.log");
        let mut tokens = start_strongroom_with(
            &dir.join("data-8-tokens"),
            &tokens_log,
            &http,
            None,
            &["--auth", "tokens"],
        )
        .await?;
        let key = std::fs::read_to_string(&tokens_log)?
            .split_whitespace()
            .find(|w| w.starts_with("srk_"))
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("the first start printed no API key"))?;
        let mut issue_times = Vec::with_capacity(count);
        let mut token = String::new();
        for _ in 0..count.min(200) {
            let t = Instant::now();
            let body = http
                .post(format!("{}/auth/token", tokens.base))
                .bearer_auth(&key)
                .body(r#"{"scopes":["upload:create"]}"#)
                .send()
                .await?
                .error_for_status()?
                .bytes()
                .await?;
            let answer: serde_json::Value = serde_json::from_slice(&body)?;
            issue_times.push(t.elapsed());
            token = answer["token"]
                .as_str()
                .ok_or_else(|| anyhow!("no token in {answer}"))?
                .to_owned();
        }
        let open_t = Target::new(open.base.clone(), &http);
        let tokens_t = Target::with_token(tokens.base.clone(), &http, &token)?;
        for _ in 0..WARM_UPS {
            for target in [&open_t, &tokens_t] {
                target.upload_released(&pattern, small).await?;
            }
        }
        let (mut lat_open, mut lat_tokens) = (Vec::with_capacity(count), Vec::with_capacity(count));
        for i in 0..count {
            for with_token in [i % 2 == 1, i % 2 == 0] {
                if with_token {
                    lat_tokens.push(tokens_t.upload_released(&pattern, small).await?.1);
                } else {
                    lat_open.push(open_t.upload_released(&pattern, small).await?.1);
                }
            }
        }
        ensure!(
            open.is_running() && tokens.is_running(),
            "strongroom died during row 8"
        );
        open.stop(Duration::from_secs(30));
        tokens.stop(Duration::from_secs(30));
        lat_open.sort();
        lat_tokens.sort();
        issue_times.sort();
        let (p50_open, p50_tokens) = (percentile(&lat_open, 0.5), percentile(&lat_tokens, 0.5));
        let (p99_open, p99_tokens) = (percentile(&lat_open, 0.99), percentile(&lat_tokens, 0.99));
        println!(
            "\nRow 8: authentication ({count} x {}, one client, servers taking turns)",
            human(small)
        );
        println!(
            "  8a. POST+PATCH p50: {} with tokens, {} without ({}); p99 {} / {}",
            ms(p50_tokens),
            ms(p50_open),
            signed_ms(p50_tokens, p50_open),
            ms(p99_tokens),
            ms(p99_open)
        );
        println!(
            "  8b. POST /auth/token p50 {} p99 {} ({} requests)",
            ms(percentile(&issue_times, 0.5)),
            ms(percentile(&issue_times, 0.99)),
            issue_times.len()
        );
        Ok(())
    }
}

/// Live event subscribers row 9b keeps open while it measures uploads.
const EVENT_SUBSCRIBERS: usize = 16;
/// Scrapes row 9a times per figure.
const SCRAPES: usize = 50;

impl Bench {
    /// Row 9: the operator surface. One server holding the small-upload
    /// count of objects: 9a the latency of a metrics scrape (inventory from
    /// its 5 s cache, as back-to-back scrapes get it) and of a full read of
    /// the index like the one behind it (`/admin/uploads`, never cached,
    /// which reads every record and keeps the unfinished ones), next to
    /// `/healthz` on the same listener; 9b sequential small uploads with no
    /// live event subscriber and with `EVENT_SUBSCRIBERS` reading
    /// `/admin/events`, taking turns in blocks: latency, the server's CPU
    /// per upload, and the events each subscriber received.
    async fn operator_surface(&mut self, dir: &Path) -> Result<()> {
        let (objects, count, small) = (
            self.settings.small_count,
            self.settings.plugin_uploads,
            self.settings.small_size,
        );
        let http = self.http.clone();
        let pattern = self.pattern.clone();
        let mut server = start_strongroom(
            &dir.join("data-9"),
            &dir.join("strongroom-9.log"),
            &http,
            None,
        )
        .await?;
        let admin = server
            .admin
            .clone()
            .ok_or_else(|| anyhow!("strongroom has an admin listener"))?;
        let target = Target::new(server.base.clone(), &http);
        for _ in 0..objects {
            target.upload_released(&pattern, 4 * KIB).await?;
        }
        let time_get = |path: &'static str| {
            let (http, url) = (http.clone(), format!("{admin}{path}"));
            async move {
                let mut times = Vec::with_capacity(SCRAPES);
                let mut bytes = 0;
                for _ in 0..SCRAPES {
                    let t = Instant::now();
                    let body = http
                        .get(&url)
                        .send()
                        .await?
                        .error_for_status()?
                        .bytes()
                        .await?;
                    times.push(t.elapsed());
                    bytes = body.len();
                }
                times.sort();
                Ok::<_, anyhow::Error>((times, bytes))
            }
        };
        let (health, _) = time_get("/healthz").await?;
        let (scrape, page_bytes) = time_get("/metrics").await?;
        let (scan, _) = time_get("/admin/uploads").await?;

        // 9b. blocks of uploads without and with subscribers.
        let block = (count / 8).max(10);
        let (mut without, mut with) = (Vec::new(), Vec::new());
        let (mut cpu_without, mut cpu_with) = (0.0, 0.0);
        let mut delivered = Vec::new();
        for round in 0..8 {
            let subscribed = round % 2 == 1;
            let counters: Vec<Arc<AtomicUsize>> = if subscribed {
                (0..EVENT_SUBSCRIBERS).map(|_| Arc::default()).collect()
            } else {
                Vec::new()
            };
            let readers: Vec<_> = counters
                .iter()
                .map(|seen| {
                    let url = format!("{admin}/admin/events");
                    tokio::spawn(read_events(http.clone(), url, seen.clone()))
                })
                .collect();
            // Let the streams open before the block starts.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let cpu_before = cpu_seconds(server.pid()).unwrap_or(0.0);
            for _ in 0..block {
                let took = target.upload_released(&pattern, small).await?.1;
                if subscribed {
                    with.push(took);
                } else {
                    without.push(took);
                }
            }
            let cpu = cpu_seconds(server.pid()).unwrap_or(0.0) - cpu_before;
            if subscribed {
                cpu_with += cpu;
            } else {
                cpu_without += cpu;
            }
            // The last events are on their way; then the streams close.
            tokio::time::sleep(Duration::from_millis(200)).await;
            for reader in readers {
                reader.abort();
            }
            delivered.extend(counters.iter().map(|seen| seen.load(Ordering::Relaxed)));
        }
        ensure!(server.is_running(), "strongroom died during row 9");
        server.stop(Duration::from_secs(30));
        without.sort();
        with.sort();
        println!(
            "\nRow 9: operator surface ({objects} objects held; {count} x {} uploads in blocks of {block})",
            human(small)
        );
        println!(
            "  9a. GET /metrics ({} KiB page) p50 {} p99 {}; full index read of {objects} records (/admin/uploads) p50 {} p99 {}; baseline GET /healthz p50 {} p99 {}",
            page_bytes / 1024,
            ms(percentile(&scrape, 0.5)),
            ms(percentile(&scrape, 0.99)),
            ms(percentile(&scan, 0.5)),
            ms(percentile(&scan, 0.99)),
            ms(percentile(&health, 0.5)),
            ms(percentile(&health, 0.99)),
        );
        let (p50_without, p50_with) = (percentile(&without, 0.5), percentile(&with, 0.5));
        let per_upload = |cpu: f64, n: usize| format!("{:.0} µs", cpu / n.max(1) as f64 * 1e6);
        println!(
            "  9b. POST+PATCH p50 {} with {EVENT_SUBSCRIBERS} event subscribers, {} without ({}); p99 {} / {}; server CPU per upload {} / {}; events per subscriber per block: {}",
            ms(p50_with),
            ms(p50_without),
            signed_ms(p50_with, p50_without),
            ms(percentile(&with, 0.99)),
            ms(percentile(&without, 0.99)),
            per_upload(cpu_with, with.len()),
            per_upload(cpu_without, without.len()),
            match (delivered.iter().min(), delivered.iter().max()) {
                (Some(lo), Some(hi)) => format!("{lo}-{hi}"),
                _ => "none received".into(),
            }
        );
        Ok(())
    }
}

/// Reads an event stream until aborted, counting its events in `seen`.
async fn read_events(http: reqwest::Client, url: String, seen: Arc<AtomicUsize>) -> Result<()> {
    let mut response = http.get(&url).send().await?.error_for_status()?;
    let mut tail = String::new();
    while let Some(chunk) = response.chunk().await? {
        // Frames may be cut anywhere: count `event:` lines in whole lines.
        tail.push_str(&String::from_utf8_lossy(&chunk));
        let whole = tail.rfind('\n').map_or(0, |i| i + 1);
        let events = tail[..whole]
            .lines()
            .filter(|line| line.starts_with("event: "))
            .count();
        seen.fetch_add(events, Ordering::Relaxed);
        tail.drain(..whole);
    }
    Ok(())
}

impl Bench {
    /// Row 7: what the default plugin chain costs. A fresh server without
    /// plugins and a fresh one with the policy, each on its own data dir,
    /// measured in turn: 7a the scenario size as one PATCH (next to row 1
    /// and to the fresh no-plugin server), 7b sequential small uploads from
    /// one client, the two servers taking turns.
    async fn plugin_chain(
        &mut self,
        dir: &Path,
        policy: &ChainPolicy,
        baseline: &Baseline,
    ) -> Result<()> {
        let s = &self.settings;
        let (size, count, small) = (s.size, s.plugin_uploads, s.small_size);
        let pattern = self.pattern.clone();
        let http = self.http.clone();
        let cache = dir.join("plugin-cache");
        let default_config = dir.join("chain.toml");
        write_plugins_config(&default_config, &policy.path, &cache)?;
        let burst_policy = dir.join("policy-no-burst.toml");
        std::fs::write(&burst_policy, policy.without_burst_limit()?)?;
        let burst_config = dir.join("chain-no-burst.toml");
        write_plugins_config(&burst_config, &burst_policy, &cache)?;
        let mut notes = Vec::new();

        let mut none = start_strongroom(
            &dir.join("data-7-none"),
            &dir.join("strongroom-7-none.log"),
            &http,
            None,
        )
        .await?;
        let started = Instant::now();
        let mut chain = start_strongroom(
            &dir.join("data-7a-chain"),
            &dir.join("strongroom-7a-chain.log"),
            &http,
            Some(&default_config),
        )
        .await?;
        let first_start = started.elapsed();
        let idle_rss = |server: &Server| {
            proc_status_kib(server.pid(), "VmRSS")
                .map_or("n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
        };
        notes.push(format!(
            "idle RSS after start: {} without plugins, {} with the policy loaded",
            idle_rss(&none),
            idle_rss(&chain)
        ));
        let none_t = Target::new(none.base.clone(), &http);
        let chain_t = Target::new(chain.base.clone(), &http);

        // warm-up: connections, page faults, the plugins' first instances.
        for target in [&none_t, &chain_t] {
            let (path, ..) = target.upload_released(&pattern, 4 * MIB).await?;
            target.delete(&path).await?;
        }

        // 7a. one PATCH of the scenario size, no plugins first.
        let probe = Probe::start(none.pid());
        let (path, _, took) = none_t.upload_released(&pattern, size).await?;
        let none_usage = probe.finish();
        let none_rate = mb_s(size, took);
        none_t.delete(&path).await?;
        let before = plugin_counters(&http, &chain, &policy.chain).await?;
        let probe = Probe::start(chain.pid());
        let (object, _, took) = chain_t.upload_released(&pattern, size).await?;
        let chain_usage = probe.finish();
        let chain_rate = mb_s(size, took);
        let after = plugin_counters(&http, &chain, &policy.chain).await?;
        let big = phase_counters(&policy.chain, &before, &after, 1, "7a")?;
        let t = Instant::now();
        let (n, sha, etag) = chain_t.get(&object).await?;
        let get_rate = mb_s(n, t.elapsed());
        let expected = self.expected.clone();
        let readback =
            self.check_readback("GET of row 7a's upload", (n, &sha, &etag), size, &expected);
        chain_t.delete(&object).await?;
        ensure!(
            chain.is_running(),
            "strongroom (default policy) died during row 7a"
        );
        chain.stop(Duration::from_secs(30));

        // 7b. sequential small uploads; a fresh server with the policy whose
        // anomaly plugin does not count bursts (see BURST_OFF).
        let started = Instant::now();
        let mut chain = start_strongroom(
            &dir.join("data-7b-chain"),
            &dir.join("strongroom-7b-chain.log"),
            &http,
            Some(&burst_config),
        )
        .await?;
        let cached_start = started.elapsed();
        notes.push(format!(
            "start of a server with the policy: {:.1} s compiling its plugins into an empty artifact cache, {:.1} s with the cache filled",
            first_start.as_secs_f64(),
            cached_start.as_secs_f64()
        ));
        let chain_t = Target::new(chain.base.clone(), &http);
        for _ in 0..WARM_UPS {
            for target in [&none_t, &chain_t] {
                target.upload_released(&pattern, small).await?;
            }
        }
        let before = plugin_counters(&http, &chain, &policy.chain).await?;
        let (probe_none, probe_chain) = (Probe::start(none.pid()), Probe::start(chain.pid()));
        let (mut lat_none, mut lat_chain) = (Vec::with_capacity(count), Vec::with_capacity(count));
        let mut last = None;
        for i in 0..count {
            // Turns alternate, so neither server always runs right after the
            // other's fsyncs.
            for screened in [i % 2 == 1, i % 2 == 0] {
                if screened {
                    let (path, took, _) = chain_t.upload_released(&pattern, small).await?;
                    lat_chain.push(took);
                    last = Some(path);
                } else {
                    lat_none.push(none_t.upload_released(&pattern, small).await?.1);
                }
            }
        }
        let (usage_none, usage_chain) = (probe_none.finish(), probe_chain.finish());
        let after = plugin_counters(&http, &chain, &policy.chain).await?;
        let per = phase_counters(&policy.chain, &before, &after, count as u64, "7b")?;
        if let Some(path) = last {
            let expected = self.pattern.sha256(small);
            let (n, sha, _) = chain_t.get(&path).await?;
            if n != small || sha != expected {
                self.failures.push(format!(
                    "GET of a row 7b upload returned {n} bytes with SHA-256 {sha}; sent {small} bytes with {expected}"
                ));
            }
        }
        ensure!(
            none.is_running() && chain.is_running(),
            "strongroom died during row 7b"
        );
        none.stop(Duration::from_secs(30));
        chain.stop(Duration::from_secs(30));

        // the table
        let (row1_rate, row1_usage) = baseline
            .row1
            .ok_or_else(|| anyhow!("row 7a: no row 1 figure"))?;
        let rss = |u: &Usage| {
            u.peak_rss_kib
                .map_or("n/a".into(), |k| format!("{:.1}", k as f64 / 1024.0))
        };
        let cpu = |u: &Usage| u.cpu.map_or("n/a".into(), |c| format!("{c:.1}"));
        let rss_pair = |a: &Usage, b: &Usage| format!("{} / {} MiB", rss(a), rss(b));
        let cpu_pair = |a: &Usage, b: &Usage| format!("{} / {} s", cpu(a), cpu(b));
        let cost = |none: f64, chain: f64| 100.0 * (1.0 - chain / none);
        let (cost_row1, cost_fresh) = (cost(row1_rate, chain_rate), cost(none_rate, chain_rate));
        lat_none.sort();
        lat_chain.sort();
        let secs = |d: Duration| d.as_secs_f64();
        let (p50_none, p50_chain) = (percentile(&lat_none, 0.5), percentile(&lat_chain, 0.5));
        let (p99_none, p99_chain) = (percentile(&lat_none, 0.99), percentile(&lat_chain, 0.99));
        let p50_delta = secs(p50_chain) - secs(p50_none);
        let cpu_per = |u: &Usage| u.cpu.map(|c| c / count as f64);
        let busy_per_upload =
            per.iter().map(|c| c.busy_us).sum::<u64>() as f64 / count as f64 / 1e6;
        let mut cells: Vec<[String; 7]> = vec![
            [
                format!("7a. {} as one PATCH (no plugins: row 1)", human(size)),
                fmt_mb_s(row1_rate),
                fmt_mb_s(chain_rate),
                pct(chain_rate, row1_rate),
                format!("{cost_row1:.0}%"),
                rss_pair(&row1_usage, &chain_usage),
                cpu_pair(&row1_usage, &chain_usage),
            ],
            [
                "    no plugins: fresh server, just before".into(),
                fmt_mb_s(none_rate),
                fmt_mb_s(chain_rate),
                pct(chain_rate, none_rate),
                format!("{cost_fresh:.0}%"),
                rss_pair(&none_usage, &chain_usage),
                cpu_pair(&none_usage, &chain_usage),
            ],
            [
                format!("    GET of the chain's upload, {readback}"),
                String::new(),
                fmt_mb_s(get_rate),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ],
            [
                format!("7b. {count} x {}, one client: p50 POST+PATCH", human(small)),
                ms(p50_none),
                ms(p50_chain),
                times(p50_chain, p50_none),
                signed_us(p50_delta),
                rss_pair(&usage_none, &usage_chain),
                cpu_pair(&usage_none, &usage_chain),
            ],
            [
                "    p99 POST+PATCH".into(),
                ms(p99_none),
                ms(p99_chain),
                times(p99_chain, p99_none),
                signed_us(secs(p99_chain) - secs(p99_none)),
                String::new(),
                String::new(),
            ],
        ];
        if let (Some(a), Some(b)) = (cpu_per(&usage_none), cpu_per(&usage_chain)) {
            cells.push([
                "    server CPU per upload".into(),
                us(a),
                us(b),
                format!("{:.2}x", b / a.max(1e-9)),
                signed_us(b - a),
                String::new(),
                String::new(),
            ]);
        }
        cells.push([
            format!(
                "    plugin time per upload (/admin/plugins, {} plugins)",
                policy.chain.len()
            ),
            String::new(),
            us(busy_per_upload),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]);
        let grid: Vec<[&str; 7]> = cells
            .iter()
            .map(|r| r.each_ref().map(String::as_str))
            .collect();
        print_grid(
            &format!(
                "Plugin chain: {} ({}); each server fresh on its own data dir; cost = 1 - chain / no plugins",
                policy.path.display(),
                policy.chain.join(" -> ")
            ),
            [
                "scenario",
                "no plugins",
                "default chain",
                "chain / none",
                "cost",
                "peak RSS (none / chain)",
                "server CPU (none / chain)",
            ],
            &grid,
        );

        println!("\nPlugin chain aims");
        println!(
            "  7a: the chain costs {cost_row1:.0}% of the no-plugin throughput against row 1, {cost_fresh:.0}% against the fresh server: aim < 25% {} / {}",
            met(cost_row1 < 25.0),
            met(cost_fresh < 25.0)
        );
        println!(
            "  7b: {} per upload at p50 (POST+PATCH), {} of plugin time per upload on the server: aim < 50 µs {} / {}",
            signed_us(p50_delta),
            us(busy_per_upload),
            met(p50_delta < 50e-6),
            met(busy_per_upload < 50e-6)
        );

        let breakdown = |phase: &[PluginCounters], scale: f64, unit: &dyn Fn(f64) -> String| {
            policy
                .chain
                .iter()
                .zip(phase)
                .map(|(name, c)| format!("{name} {}", unit(c.busy_us as f64 / 1e6 / scale)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let total_big = big.iter().map(|c| c.busy_us).sum::<u64>() as f64 / 1e6;
        notes.push(format!(
            "7a plugin time for the {} upload (on workers, beside the write stage): {}; {:.2} s in all{}",
            human(size),
            breakdown(&big, 1.0, &|s| format!("{s:.3} s")),
            total_big,
            chain_usage
                .cpu
                .map_or(String::new(), |c| format!(" of the server's {c:.1} s CPU"))
        ));
        if let Some((name, c)) = policy.chain.iter().zip(&big).max_by_key(|(_, c)| c.busy_us)
            && c.busy_us > 0
        {
            notes.push(format!(
                "7a: {name} saw the plaintext at {} while busy",
                fmt_mb_s(size as f64 / c.busy_us as f64)
            ));
        }
        notes.push(format!(
            "7b plugin time per upload: {} (busy time leaves out freeing each instance, whose memory \
             reset runs on the worker after the last call; the server CPU row includes it)",
            breakdown(&per, count as f64, &us)
        ));
        notes.push(format!(
            "7b runs {} with [plugins.anomaly.config] burst_per_minute = {BURST_OFF}: the anomaly \
             plugin quarantines bursts past that rate from one tenant (the policy's 600 a minute \
             is below this row's rate), and until authentication exists every client is the \
             tenant 'default'",
            policy.path.display()
        ));
        println!("\nNotes (row 7)");
        for note in &notes {
            println!("  - {note}");
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// optional peers: @tus/server (node) and rustus

fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("bench")
        .join("peers")
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_for_port(server: &mut Server, port: u16, log: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if !server.is_running() {
            bail!("{} exited at start:\n{}", server.name, tail_of(log, 0));
        }
        ensure!(Instant::now() < deadline, "{} did not listen", server.name);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// @tus/server + @tus/file-store via bench/peers/tus-node.mjs.
async fn start_tus_node(dir: &Path) -> Result<Server> {
    let peers = peers_dir();
    let script = peers.join("tus-node.mjs");
    ensure!(
        peers
            .join("node_modules")
            .join("@tus")
            .join("server")
            .exists(),
        "bench/peers/node_modules is missing (run `npm install` in bench/peers)"
    );
    let port = free_port()?;
    let store = dir.join("tus-node-store");
    std::fs::create_dir_all(&store)?;
    let log = dir.join("tus-node.log");
    let out = std::fs::File::create(&log)?;
    let child = Command::new("node")
        .arg(&script)
        .env("PORT", port.to_string())
        .env("STORE_DIR", &store)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .context("spawning node")?;
    let mut server = Server {
        name: "@tus/server".into(),
        child,
        base: format!("http://127.0.0.1:{port}"),
        admin: None,
    };
    wait_for_port(&mut server, port, &log).await?;
    Ok(server)
}

/// rustus from `STRONGROOM_BENCH_RUSTUS`, `$PATH`, or the bench's own
/// install folder (`~/.cache/strongroom-bench/rustus`).
fn rustus_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("STRONGROOM_BENCH_RUSTUS") {
        return Some(PathBuf::from(path));
    }
    let home = std::env::var_os("HOME").map(PathBuf::from)?;
    let local = home.join(".cache/strongroom-bench/rustus/bin/rustus");
    if local.exists() {
        return Some(local);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("rustus"))
            .find(|p| p.exists())
    })
}

async fn start_rustus(dir: &Path) -> Result<Server> {
    let binary = rustus_binary().ok_or_else(|| {
        anyhow!("rustus not found (cargo install rustus --root ~/.cache/strongroom-bench/rustus)")
    })?;
    let port = free_port()?;
    let store = dir.join("rustus-store");
    let info = dir.join("rustus-info");
    std::fs::create_dir_all(&store)?;
    std::fs::create_dir_all(&info)?;
    let log = dir.join("rustus.log");
    let out = std::fs::File::create(&log)?;
    let child = Command::new(binary)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--url",
            "/files",
        ])
        .arg("--data-dir")
        .arg(&store)
        .arg("--info-dir")
        .arg(&info)
        // rustus 0.5 reads a whole PATCH body into memory and refuses bodies
        // over 256 KiB by default: allow the scenario sizes.
        .args(["--log-level", "ERROR", "--max-body-size", "17179869184"])
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .context("spawning rustus")?;
    let mut server = Server {
        name: "rustus".into(),
        child,
        base: format!("http://127.0.0.1:{port}"),
        admin: None,
    };
    wait_for_port(&mut server, port, &log).await?;
    Ok(server)
}

// ---------------------------------------------------------------------------

async fn run(settings: Settings) -> Result<bool> {
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("strongroom-bench-")
        .tempdir_in(&settings.parent_dir)
        .with_context(|| format!("temp dir in {}", settings.parent_dir.display()))?;
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&data_dir)?;
    let log = dir.path().join("strongroom.log");

    println!(
        "strongroom pipeline bench{}",
        if settings.quick { " (quick)" } else { "" }
    );
    let facts = machine_facts(&data_dir);
    let width = facts.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in &facts {
        println!("  {key:width$}  {value}");
    }
    if facts
        .iter()
        .any(|(k, v)| k == "filesystem" && v.starts_with("tmpfs"))
    {
        println!("  WARNING: the data dir is on tmpfs; set STRONGROOM_BENCH_DIR to a real disk");
    }
    // Checked first: row 7 runs last and should not fail after a long run.
    let policy = ChainPolicy::load()?;
    println!(
        "  {:width$}  {} ({}; components present and matching their pins)",
        "plugins",
        policy.path.display(),
        policy.chain.join(", ")
    );

    let pattern = Arc::new(Pattern::new());
    let size = settings.size;
    let t = Instant::now();
    let expected = pattern.sha256(size);
    let sha_rate = mb_s(size, t.elapsed());
    let (p, d) = (pattern.clone(), dir.path().to_owned());
    let (disk, sync) = tokio::task::spawn_blocking(move || {
        Ok::<_, anyhow::Error>((disk_ceiling(&d, &p, size)?, small_sync_latency(&d, &p, 20)?))
    })
    .await??;
    println!("reference figures (same machine, same data dir)");
    println!(
        "  disk      {} written with fdatasync every 16 MiB: {} (the ceiling for every upload row)",
        human(size),
        fmt_mb_s(mb_s(size, disk.0))
    );
    println!(
        "  disk      {} read back cold in 64 KiB reads: {} (the ceiling for the cold GET)",
        human(size),
        fmt_mb_s(mb_s(size, disk.1))
    );
    println!(
        "  fsync     create + write 64 KiB + fdatasync + dir fsync: {} (median of 20)",
        ms(sync)
    );
    println!(
        "  sha-256   client hashing (ring, one core): {} (caps the GET rows)",
        fmt_mb_s(sha_rate)
    );
    let http = http_client();
    let (sink_base, sink_state) = start_sink(pattern.clone(), None)?;
    let mut bench = Bench {
        pattern,
        sink: Target::new(sink_base, &http),
        http: http.clone(),
        settings,
        expected,
        failures: Vec::new(),
        notes: Vec::new(),
    };

    let mut server = start_strongroom(&data_dir, &log, &http, None).await?;
    let idle_rss = proc_status_kib(server.pid(), "VmRSS").unwrap_or(0);
    println!(
        "  server    {} (pid {}, idle RSS {:.1} MiB, defaults: AES-256-GCM, 64 KiB segments, checkpoint every 16 MiB)",
        env!("CARGO_BIN_EXE_strongroom"),
        server.pid(),
        idle_rss as f64 / 1024.0
    );
    if !reset_peak_rss(server.pid()) {
        println!(
            "  WARNING: cannot write /proc/<pid>/clear_refs; peak RSS is not reset per scenario (shown as n/a)"
        );
    }
    println!("  running; this takes a while with the default sizes...");

    let mut baseline = Baseline::default();
    let mut rows = bench.core(&server, &mut baseline, true).await?;
    bench
        .strongroom_extra(&server, &mut baseline, &data_dir, &mut rows)
        .await?;
    // Scenario 6 restarts the server (same data dir) before each case.
    for fanout in [false, true] {
        ensure!(server.is_running(), "strongroom died during the run");
        server.stop(Duration::from_secs(30));
        server = start_strongroom(&data_dir, &log, &http, None).await?;
        bench.memory_case(&server, fanout, &mut rows).await?;
    }
    bench.small_read_buffer_sink(&baseline).await?;
    ensure!(server.is_running(), "strongroom died during the run");
    server.stop(Duration::from_secs(30));

    print_table(
        "Results (MB = 10^6 bytes; ratio = strongroom / sink for rates, strongroom / sink for times)",
        "strongroom",
        &rows,
    );
    bench.plugin_chain(dir.path(), &policy, &baseline).await?;
    bench.authentication(dir.path()).await?;
    bench.operator_surface(dir.path()).await?;

    if bench.settings.peers {
        for start in [0, 1] {
            let peer = if start == 0 {
                start_tus_node(dir.path()).await
            } else {
                start_rustus(dir.path()).await
            };
            let name = if start == 0 { "@tus/server" } else { "rustus" };
            match peer {
                Ok(mut peer) => {
                    let result = bench.core(&peer, &mut baseline, false).await;
                    let usage_pid = peer.pid();
                    peer.stop(Duration::from_secs(10));
                    match result {
                        Ok(rows) => {
                            print_table(&format!("Peer: {name} (pid {usage_pid})"), name, &rows)
                        }
                        Err(err) => println!("\nPeer {name}: failed during the run: {err:#}"),
                    }
                }
                Err(err) => println!("\nPeer {name} unavailable: {err:#}"),
            }
        }
    }

    let chunked = sink_state.chunked.load(Ordering::Relaxed);
    if chunked > 0 {
        bench.notes.push(format!(
            "the sink saw {chunked} chunked request bodies (expected Content-Length)"
        ));
    }
    if !bench.notes.is_empty() {
        println!("\nNotes");
        for note in &bench.notes {
            println!("  - {note}");
        }
    }
    println!(
        "\ntotal bench time {:.0} s; load average at the end {}",
        started.elapsed().as_secs_f64(),
        load_average()
    );
    for failure in &bench.failures {
        println!("FAILED: {failure}");
    }
    Ok(bench.failures.is_empty())
}

fn main() {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(err) => {
            eprintln!("pipeline bench: {err:#}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("client-rt")
        .enable_all()
        .build()
        .expect("client runtime");
    match runtime.block_on(run(settings)) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(err) => {
            eprintln!("pipeline bench failed: {err:#}");
            std::process::exit(1);
        }
    }
}
