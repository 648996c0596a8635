//! Real third-party tus clients against a real in-process server: tus-js-client
//! 4.3.1 and tuspy 1.1.0, driven by the CLIs in `tests/clients/` (JSON-lines
//! events on stdout, see `tests/clients/README.md`). Whole uploads, resumes
//! from a brand-new client process (after a clean stop and after SIGKILL) and
//! parallel (concatenation) uploads; every object is read back and compared
//! with its source byte for byte.
//!
//! The drivers and their dependencies are installed by
//! `tests/clients/setup.sh`, which `./tests/run.sh` runs first. A missing
//! installation fails these tests; it never skips them.
//!
//! Child processes are plain `std::process` children whose pipes are read
//! through tokio (`tokio::net::unix::pipe`), with a deadline on everything, so
//! a hung client fails its test instead of hanging the run.

use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::net::unix::pipe;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::support::*;

const MIB: u64 = 1 << 20;
const FILE_SIZE: u64 = 50 * MIB;
const CHUNK: u64 = MIB;
/// `--stop-after` of the clean-stop resume tests.
const STOP_AFTER: u64 = 20 * MIB;
/// The SIGKILL resume tests kill the client once it reports this offset.
const KILL_AFTER: u64 = 10 * MIB;
/// Bound on one client process, from spawn to exit.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

const HOW_TO_INSTALL: &str = "the tus client drivers are installed by tests/clients/setup.sh; \
     run the project's test command, ./tests/run.sh, which runs it first";

// ---- the tests ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_js_client_uploads_50_mib_in_1_mib_chunks() {
    whole_upload(Driver::Js, 11).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tuspy_uploads_50_mib_in_1_mib_chunks() {
    whole_upload(Driver::Py, 12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_js_client_resumes_a_stopped_upload_from_a_new_process() {
    resume_after_stop(Driver::Js, 21).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tuspy_resumes_a_stopped_upload_from_a_new_process() {
    resume_after_stop(Driver::Py, 22).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_js_client_resumes_after_the_first_process_is_killed() {
    resume_after_kill(Driver::Js, 31).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tuspy_resumes_after_the_first_process_is_killed() {
    resume_after_kill(Driver::Py, 32).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_js_client_parallel_uploads_concatenate() {
    let fx = Fixture::new(41).await;
    let run = fx
        .run(Driver::Js, "parallel", None, &["--parallel", "4"])
        .finish()
        .await;
    let url = run.assert_success();
    assert_eq!(
        run.count("created"),
        1,
        "one final upload is reported\n{}",
        run.describe()
    );
    assert_eq!(
        run.chunk_offsets().last().copied(),
        Some(FILE_SIZE),
        "the partial uploads together acknowledged every byte\n{}",
        run.describe()
    );
    let head = fx
        .server
        .send("HEAD", &fx.path_of(&url), &[TUS], Vec::new())
        .await;
    head.assert_status(200).assert_offset(FILE_SIZE);
    let concat = head.header("upload-concat").unwrap_or_default();
    let parts: Vec<&str> = concat
        .strip_prefix("final;")
        .unwrap_or_else(|| panic!("final upload's Upload-Concat: {concat:?}"))
        .split(' ')
        .collect();
    assert_eq!(parts.len(), 4, "Upload-Concat: {concat}");
    fx.assert_object(&url).await;
}

// ---- scenarios -------------------------------------------------------------

async fn whole_upload(driver: Driver, seed: u64) {
    let fx = Fixture::new(seed).await;
    let run = fx
        .run(driver, "whole", Some(&fx.store(driver)), &[])
        .finish()
        .await;
    let url = run.assert_success();
    assert_eq!(run.count("resumed"), 0, "{}", run.describe());
    assert_eq!(run.count("created"), 1, "{}", run.describe());
    let expected: Vec<u64> = (1..=FILE_SIZE / CHUNK).map(|n| n * CHUNK).collect();
    assert_eq!(
        run.chunk_offsets(),
        expected,
        "one acknowledged PATCH per 1 MiB chunk\n{}",
        run.describe()
    );
    fx.assert_object(&url).await;
}

async fn resume_after_stop(driver: Driver, seed: u64) {
    let fx = Fixture::new(seed).await;
    let store = fx.store(driver);
    let stop_after = STOP_AFTER.to_string();
    let first = fx
        .run(
            driver,
            "first",
            Some(&store),
            &["--stop-after", &stop_after],
        )
        .finish()
        .await;
    assert_eq!(first.code(), Some(3), "stopped: {}", first.describe());
    let stopped = first.last();
    assert_eq!(stopped["event"], "stopped", "{}", first.describe());
    let offset = stopped["offset"].as_u64().expect("stopped offset");
    assert!(
        (STOP_AFTER..FILE_SIZE).contains(&offset),
        "stopped at {offset}\n{}",
        first.describe()
    );
    let url = stopped["url"].as_str().expect("stopped url").to_owned();
    // The server holds exactly what it acknowledged: the client stopped
    // between two PATCHes.
    let path = fx.path_of(&url);
    fx.server
        .send("HEAD", &path, &[TUS], Vec::new())
        .await
        .assert_status(200)
        .assert_offset(offset);
    fx.server
        .send("GET", &path, &[], Vec::new())
        .await
        .assert_status(404);

    let second = fx.run(driver, "second", Some(&store), &[]).finish().await;
    assert_resumed(&second, &url, offset, true);
    fx.assert_object(&url).await;
}

async fn resume_after_kill(driver: Driver, seed: u64) {
    let fx = Fixture::new(seed).await;
    let store = fx.store(driver);
    let mut first = fx.run(driver, "killed", Some(&store), &[]);
    let mut acknowledged = 0;
    while acknowledged < KILL_AFTER {
        let Some(event) = first.next_event().await else {
            let outcome = first.finish().await;
            panic!(
                "the client ended before reaching {KILL_AFTER}\n{}",
                outcome.describe()
            );
        };
        if event["event"] == "chunk" {
            acknowledged = event["offset"].as_u64().expect("chunk offset");
        }
    }
    let first = first.kill().await;
    assert_eq!(
        first.status.and_then(|s| s.signal()),
        Some(libc::SIGKILL),
        "the first client died of SIGKILL mid-upload\n{}",
        first.describe()
    );
    let created = first
        .events
        .iter()
        .find(|e| e["event"] == "created")
        .unwrap_or_else(|| panic!("no created event\n{}", first.describe()));
    let url = created["url"].as_str().expect("created url").to_owned();
    assert!(acknowledged < FILE_SIZE, "{}", first.describe());

    let second = fx.run(driver, "resumer", Some(&store), &[]).finish().await;
    // The PATCH in flight at the kill may have left some of its bytes on the
    // server, so the new process resumes from its HEAD offset, not from the
    // last chunk boundary.
    assert_resumed(&second, &url, acknowledged, false);
    fx.assert_object(&url).await;
}

/// A second process resumed `url` (never created a new upload) from at least
/// `acknowledged` bytes and completed it.
#[track_caller]
fn assert_resumed(run: &Outcome, url: &str, acknowledged: u64, exact: bool) {
    let success_url = run.assert_success();
    let first = &run.events[0];
    assert_eq!(first["event"], "resumed", "{}", run.describe());
    assert_eq!(
        first["url"],
        url,
        "resumed the stored upload\n{}",
        run.describe()
    );
    assert_eq!(run.count("created"), 0, "{}", run.describe());
    assert_eq!(success_url, url, "{}", run.describe());
    let offsets = run.chunk_offsets();
    let resumed_at = *offsets
        .first()
        .unwrap_or_else(|| panic!("no chunk after resuming\n{}", run.describe()));
    if exact {
        assert_eq!(
            resumed_at,
            (acknowledged + CHUNK).min(FILE_SIZE),
            "the first PATCH continued at the stop offset\n{}",
            run.describe()
        );
    } else {
        assert!(
            resumed_at > acknowledged && resumed_at <= acknowledged + 2 * CHUNK,
            "the first PATCH after the resume ended at {resumed_at}, expected just past \
             the {acknowledged} bytes acknowledged before the kill\n{}",
            run.describe()
        );
    }
    assert_eq!(
        offsets.last().copied(),
        Some(FILE_SIZE),
        "{}",
        run.describe()
    );
}

// ---- fixture ----------------------------------------------------------------

/// A server with a 50 MiB source file in its temp dir.
struct Fixture {
    server: TestServer,
    file: PathBuf,
    data: Vec<u8>,
}

impl Fixture {
    async fn new(seed: u64) -> Fixture {
        let server = TestServer::start().await;
        let data = bytes(FILE_SIZE as usize, seed);
        let file = server.dir.path().join(format!("source-{seed}.bin"));
        tokio::fs::write(&file, &data).await.expect("write source");
        Fixture { server, file, data }
    }

    fn store(&self, driver: Driver) -> PathBuf {
        self.server
            .dir
            .path()
            .join(format!("{}-url-store.json", driver.name()))
    }

    fn run(&self, driver: Driver, label: &str, store: Option<&Path>, extra: &[&str]) -> Run {
        let mut cmd = driver.command();
        cmd.arg("--endpoint")
            .arg(self.server.url("/files/"))
            .arg("--file")
            .arg(&self.file)
            .arg("--chunk-size")
            .arg(CHUNK.to_string());
        if let Some(store) = store {
            cmd.arg("--store").arg(store);
        }
        cmd.args(extra);
        Run::spawn(format!("{} ({label})", driver.name()), cmd)
    }

    /// The path of an upload URL a client reported (absolute, on this server).
    fn path_of(&self, url: &str) -> String {
        let path = url.strip_prefix(&self.server.base()).unwrap_or(url);
        assert!(
            path.starts_with("/files/"),
            "upload URL {url:?} is not under {}/files/",
            self.server.base()
        );
        path.to_owned()
    }

    /// GET of the upload (and of its `/objects/` alias) streams exactly the
    /// source bytes, with the SHA-256 as ETag.
    async fn assert_object(&self, url: &str) {
        let path = self.path_of(url);
        let id = path.rsplit('/').next().unwrap();
        let etag = format!("\"{}\"", sha256_hex(&self.data));
        for path in [path.clone(), format!("/objects/{id}")] {
            let mut response = self
                .server
                .http
                .get(self.server.url(&path))
                .send()
                .await
                .unwrap_or_else(|e| panic!("GET {path}: {e}"));
            assert_eq!(response.status().as_u16(), 200, "GET {path}");
            assert_eq!(
                response.headers().get("etag").and_then(|v| v.to_str().ok()),
                Some(etag.as_str()),
                "GET {path}: ETag is the SHA-256 of the source"
            );
            let mut at = 0usize;
            while let Some(piece) = response
                .chunk()
                .await
                .unwrap_or_else(|e| panic!("GET {path}: body failed at byte {at}: {e}"))
            {
                let end = at + piece.len();
                assert!(
                    end <= self.data.len(),
                    "GET {path}: body is longer than the {} source bytes",
                    self.data.len()
                );
                if piece[..] != self.data[at..end] {
                    let first = (0..piece.len())
                        .find(|&i| piece[i] != self.data[at + i])
                        .unwrap();
                    panic!("GET {path}: byte {} differs from the source", at + first);
                }
                at = end;
            }
            assert_eq!(
                at,
                self.data.len(),
                "GET {path}: body ended early (source is {} bytes)",
                self.data.len()
            );
        }
    }
}

// ---- drivers and client processes ------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Driver {
    Js,
    Py,
}

impl Driver {
    fn name(self) -> &'static str {
        match self {
            Driver::Js => "tus-js-client",
            Driver::Py => "tuspy",
        }
    }

    /// The driver's command, after checking that setup.sh installed it.
    fn command(self) -> Command {
        let clients = repo_path("tests/clients");
        let mut cmd = match self {
            Driver::Js => {
                let installed = clients.join("js/node_modules/tus-js-client/package.json");
                assert!(
                    installed.is_file(),
                    "tus-js-client is not installed ({} is missing): {HOW_TO_INSTALL}",
                    installed.display()
                );
                let mut cmd = Command::new("node");
                cmd.arg(clients.join("js/upload.mjs"));
                cmd
            }
            Driver::Py => {
                let python = clients.join("py/.venv/bin/python");
                assert!(
                    python.is_file(),
                    "the tuspy venv is missing ({} does not exist): {HOW_TO_INSTALL}",
                    python.display()
                );
                assert!(
                    venv_has_tuspy(&clients.join("py/.venv")),
                    "tuspy is not installed in tests/clients/py/.venv: {HOW_TO_INSTALL}"
                );
                let mut cmd = Command::new(python);
                cmd.arg(clients.join("py/upload.py"));
                cmd
            }
        };
        cmd.current_dir(repo_path(""));
        cmd
    }
}

fn venv_has_tuspy(venv: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(venv.join("lib")) else {
        return false;
    };
    entries
        .flatten()
        .any(|e| e.path().join("site-packages/tusclient").is_dir())
}

/// A running client process: its stdout read as JSON-lines events.
struct Run {
    label: String,
    child: Child,
    lines: Lines<BufReader<pipe::Receiver>>,
    stderr: Option<JoinHandle<String>>,
    events: Vec<Value>,
    deadline: Instant,
    /// Set once SIGKILLed: a torn last line is expected then.
    killed: bool,
}

/// How a client process ended.
struct Outcome {
    label: String,
    status: Option<ExitStatus>,
    events: Vec<Value>,
    stderr: String,
}

impl Run {
    fn spawn(label: String, mut cmd: Command) -> Run {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!("{label}: cannot start {cmd:?}: {e}; {HOW_TO_INSTALL} (it also installs node)")
        });
        let stdout = receiver(child.stdout.take().expect("piped stdout"));
        let mut stderr = receiver(child.stderr.take().expect("piped stderr"));
        let stderr = tokio::spawn(async move {
            let mut text = Vec::new();
            let _ = stderr.read_to_end(&mut text).await;
            String::from_utf8_lossy(&text).into_owned()
        });
        Run {
            label,
            child,
            lines: BufReader::new(stdout).lines(),
            stderr: Some(stderr),
            events: Vec::new(),
            deadline: Instant::now() + CLIENT_TIMEOUT,
            killed: false,
        }
    }

    /// The next event, or `None` once stdout is closed.
    async fn next_event(&mut self) -> Option<Value> {
        let line = match tokio::time::timeout_at(self.deadline, self.lines.next_line()).await {
            Ok(Ok(line)) => line?,
            Ok(Err(err)) => self.abort(&format!("reading stdout failed: {err}")).await,
            Err(_) => {
                self.abort(&format!("no exit within {CLIENT_TIMEOUT:?}"))
                    .await
            }
        };
        match serde_json::from_str::<Value>(&line) {
            Ok(event) if event["event"].is_string() => {
                self.events.push(event.clone());
                Some(event)
            }
            _ if self.killed => None,
            _ => {
                self.abort(&format!("stdout line is not a JSON event: {line:?}"))
                    .await
            }
        }
    }

    /// Reads events until the process closes stdout, then waits for its exit.
    async fn finish(mut self) -> Outcome {
        while self.next_event().await.is_some() {}
        let status = self.wait().await;
        self.outcome(Some(status)).await
    }

    /// SIGKILLs the process and collects what it printed.
    async fn kill(mut self) -> Outcome {
        let _ = self.child.kill();
        self.killed = true;
        while self.next_event().await.is_some() {}
        let status = self.wait().await;
        self.outcome(Some(status)).await
    }

    async fn wait(&mut self) -> ExitStatus {
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < self.deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok(None) => {
                    self.abort(&format!("no exit within {CLIENT_TIMEOUT:?}"))
                        .await
                }
                Err(err) => self.abort(&format!("waiting failed: {err}")).await,
            }
        }
    }

    async fn outcome(&mut self, status: Option<ExitStatus>) -> Outcome {
        let stderr = match self.stderr.take() {
            Some(task) => tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default(),
            None => String::new(),
        };
        Outcome {
            label: self.label.clone(),
            status,
            events: std::mem::take(&mut self.events),
            stderr,
        }
    }

    /// Kills the process and fails the test with everything it printed.
    async fn abort(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let status = self.child.wait().ok();
        let outcome = self.outcome(status).await;
        panic!("{}: {why}\n{}", self.label, outcome.describe());
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // Never leave a client behind, whatever failed.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn receiver(fd: impl Into<OwnedFd>) -> pipe::Receiver {
    pipe::Receiver::from_owned_fd(fd.into()).expect("child pipe readable by tokio")
}

impl Outcome {
    fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    fn last(&self) -> &Value {
        self.events
            .last()
            .unwrap_or_else(|| panic!("no events\n{}", self.describe()))
    }

    fn count(&self, event: &str) -> usize {
        self.events.iter().filter(|e| e["event"] == event).count()
    }

    fn chunk_offsets(&self) -> Vec<u64> {
        self.events
            .iter()
            .filter(|e| e["event"] == "chunk")
            .map(|e| e["offset"].as_u64().expect("chunk offset"))
            .collect()
    }

    /// Exit 0 with `success` as the last event; returns the upload URL.
    #[track_caller]
    fn assert_success(&self) -> String {
        let last = self.events.last();
        assert!(
            self.code() == Some(0) && last.is_some_and(|e| e["event"] == "success"),
            "expected success\n{}",
            self.describe()
        );
        last.unwrap()["url"]
            .as_str()
            .unwrap_or_else(|| panic!("success without url\n{}", self.describe()))
            .to_owned()
    }

    fn describe(&self) -> String {
        let events: Vec<String> = self.events.iter().map(Value::to_string).collect();
        let tail_from = self
            .stderr
            .char_indices()
            .rev()
            .nth(4000)
            .map_or(0, |(i, _)| i);
        format!(
            "{}: exited {:?}\n--- stdout ({} events)\n{}\n--- stderr (tail)\n{}",
            self.label,
            self.status,
            self.events.len(),
            events.join("\n"),
            &self.stderr[tail_from..]
        )
    }
}
