//! Real third-party tus clients against a real in-process server: tus-js-client
//! 4.3.1 and tuspy 1.1.0, driven by the CLIs in `tests/clients/` (JSON-lines
//! events on stdout, see `tests/clients/README.md`). Whole uploads, resumes
//! from a brand-new client process (after a clean stop and after SIGKILL) and
//! parallel (concatenation) uploads; every object is read back and compared
//! with its source byte for byte. With the shipped policy
//! (`policies/default.toml`) the clients also meet the plugin chain's
//! verdicts: a release, a rejection in the middle of an upload, and a
//! quarantine that is no client error.
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
/// Bound on one request of a test's own checks (HEAD, GET, admin).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The EICAR antivirus test string: content-inspector's `malware-signature`
/// rule rejects any upload that contains it.
const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
/// The released source: 1 MiB chunks and a short last one.
const CLEAN_SIZE: u64 = 6 * MIB - 12_345;
/// The rejection tests send an 8 MiB source in two PATCHes and cut EICAR in
/// two at their boundary: the first PATCH carries its first half, the second
/// reveals it within its first bytes. The second PATCH is large on purpose:
/// the verdict comes while the client is still sending most of it, as it
/// would for any big chunk.
const INFECTED_SIZE: u64 = 8 * MIB;
const INFECTED_CHUNK: u64 = 4 * MIB;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_js_client_upload_of_clean_content_is_released() {
    // A short last chunk: the completing PATCH is not a full one.
    let data = bytes(CLEAN_SIZE as usize, 51);
    let fx = Fixture::screened(data, "clean.bin", CHUNK).await;
    let run = fx
        .run(
            Driver::Js,
            "clean",
            Some(&fx.store(Driver::Js)),
            &["--report-header", "strongroom-disposition"],
        )
        .finish()
        .await;
    let url = run.assert_success();
    assert_eq!(run.count("created"), 1, "{}", run.describe());
    let size = fx.data.len() as u64;
    let mut expected: Vec<u64> = (1..=size / CHUNK).map(|n| n * CHUNK).collect();
    expected.push(size);
    assert_eq!(run.chunk_offsets(), expected, "{}", run.describe());
    let completing = run.last_patch_response();
    assert_eq!(completing["status"], 204, "{}", run.describe());
    assert_eq!(
        completing["headers"]["strongroom-disposition"],
        "released",
        "the client received the release on the PATCH that completed the upload\n{}",
        run.describe()
    );

    let head = fx.head(&url).await;
    head.assert_status(200).assert_offset(size);
    assert_eq!(
        head.header("strongroom-disposition"),
        Some("released"),
        "HEAD {url}"
    );
    fx.assert_object(&url).await;
    assert_eq!(fx.quarantined().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_js_client_reports_eicar_split_across_two_patches_as_a_422() {
    rejected_across_a_chunk_boundary(Driver::Js, 61).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tuspy_reports_eicar_split_across_two_patches_as_a_422() {
    rejected_across_a_chunk_boundary(Driver::Py, 62).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_js_client_upload_of_an_elf_named_pdf_succeeds_into_quarantine() {
    let binary = std::fs::read(env!("CARGO_BIN_EXE_strongroom")).expect("own binary");
    let data = binary[..200_000].to_vec();
    let chunk = 64 * 1024;
    let fx = Fixture::screened(data, "executable.bin", chunk).await;
    let run = fx
        .run(
            Driver::Js,
            "elf",
            Some(&fx.store(Driver::Js)),
            &[
                "--metadata",
                "filename=invoice.pdf",
                "--metadata",
                "filetype=application/pdf",
                "--report-header",
                "strongroom-disposition",
                "--report-header",
                "strongroom-reason",
            ],
        )
        .finish()
        .await;
    // Quarantine holds the object for an admin; the upload itself succeeded.
    let url = run.assert_success();
    assert_eq!(
        run.chunk_offsets(),
        [65_536, 131_072, 196_608, 200_000],
        "{}",
        run.describe()
    );
    let completing = run.last_patch_response();
    assert_eq!(completing["status"], 204, "{}", run.describe());
    assert_eq!(
        completing["headers"]["strongroom-disposition"],
        "quarantined",
        "the client received the quarantine on the PATCH that completed the upload\n{}",
        run.describe()
    );
    let reason = completing["headers"]["strongroom-reason"]
        .as_str()
        .unwrap_or_else(|| panic!("no Strongroom-Reason\n{}", run.describe()));
    assert!(
        reason.contains("content-inspector"),
        "Strongroom-Reason names the plugin: {reason:?}"
    );

    let path = fx.path_of(&url);
    let id = path.rsplit('/').next().unwrap().to_owned();
    let head = fx.head(&url).await;
    head.assert_status(200).assert_offset(200_000);
    assert_eq!(
        head.header("strongroom-disposition"),
        Some("quarantined"),
        "HEAD {url}"
    );
    assert_eq!(head.header("strongroom-reason"), Some(reason), "HEAD {url}");
    for path in [path.clone(), format!("/objects/{id}")] {
        fx.send("GET", &path)
            .await
            .assert_problem(403, "object_quarantined");
    }

    let listed = fx.admin_json("/admin/quarantine").await;
    let objects = listed["objects"].as_array().expect("objects");
    assert_eq!(objects.len(), 1, "{listed}");
    assert_eq!(objects[0]["id"], id.as_str(), "{listed}");
    let inspector = objects[0]["screening"]["plugins"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["plugin"] == "content-inspector"))
        .unwrap_or_else(|| panic!("no content-inspector report: {listed}"));
    assert_eq!(inspector["verdict"], "quarantine", "{inspector}");
    // The finding quotes the name and type the client declared.
    assert!(
        inspector["findings"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| {
                f["rule"] == "type-mismatch"
                    && f["detail"]
                        .as_str()
                        .is_some_and(|d| d.contains("invoice.pdf") && d.contains("application/pdf"))
            })),
        "{inspector}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_js_client_uploads_with_a_bearer_token() {
    uploads_with_a_bearer_token(Driver::Js, 91).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tuspy_uploads_with_a_bearer_token() {
    uploads_with_a_bearer_token(Driver::Py, 92).await;
}

// ---- scenarios -------------------------------------------------------------

/// Tokens on: the client sends `Authorization: Bearer` on every request and
/// uploads; without it, the client reports the 401 instead of retrying;
/// the object is then readable with a read token for it.
async fn uploads_with_a_bearer_token(driver: Driver, seed: u64) {
    let server = TestServer::start_with_tokens(|_| {}).await;
    let data = bytes((5 * CHUNK + 1234) as usize, seed);
    let fx = Fixture::with_source(server, data, "tokened.bin", CHUNK).await;

    let refused_store = fx.server.dir.path().join("refused-url-store.json");
    let refused = fx
        .run(driver, "no token", Some(&refused_store), &[])
        .finish()
        .await;
    assert_eq!(refused.code(), Some(1), "{}", refused.describe());
    assert_eq!(refused.last()["status"], 401, "{}", refused.describe());

    let token = fx.server.admin_token(&["upload:create"]).await;
    let header = format!("Authorization=Bearer {token}");
    let run = fx
        .run(
            driver,
            "token",
            Some(&fx.store(driver)),
            &["--header", &header],
        )
        .finish()
        .await;
    let url = run.assert_success();
    let path = fx.path_of(&url);
    let id = path.rsplit('/').next().expect("an upload id");
    let reader = fx.server.admin_token(&[&format!("object:read:{id}")]).await;
    let got = fx
        .server
        .send(
            "GET",
            &path,
            &[("Authorization", &format!("Bearer {reader}"))],
            Vec::new(),
        )
        .await;
    got.assert_status(200);
    assert!(got.body == fx.data, "the object differs from the source");
}

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

/// EICAR straddles the client's chunk boundary: the PATCH carrying its first
/// half is acknowledged, the next one is refused with the plugin's problem,
/// the client reports exactly that as its error (no retry, no second
/// upload), and nothing of the upload remains.
async fn rejected_across_a_chunk_boundary(driver: Driver, seed: u64) {
    let mut data = bytes(INFECTED_SIZE as usize, seed);
    let at = INFECTED_CHUNK as usize - EICAR.len() / 2;
    data[at..at + EICAR.len()].copy_from_slice(EICAR);
    let fx = Fixture::screened(data, "infected.bin", INFECTED_CHUNK).await;
    let run = fx
        .run(driver, "eicar", Some(&fx.store(driver)), &[])
        .finish()
        .await;
    let problem = run.assert_error(422);
    assert_eq!(problem["code"], "upload_rejected", "{problem}");
    assert_eq!(problem["plugin"], "content-inspector", "{problem}");
    assert_eq!(problem["rule"], "malware-signature", "{problem}");
    assert!(
        problem["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "the problem gives a reason: {problem}"
    );
    // A client that lost the 422 (its PATCH failed as a network error) retries:
    // the HEAD finds the upload destroyed and it starts over with a new one.
    assert_eq!(
        run.count("retry"),
        0,
        "the rejection reached the client as a 422, not as a failure to retry\n{}",
        run.describe()
    );
    assert_eq!(
        run.count("created"),
        1,
        "one upload: the client received the 422 of the first PATCH that revealed \
         EICAR\n{}",
        run.describe()
    );
    assert_eq!(
        run.chunk_offsets(),
        [INFECTED_CHUNK],
        "the PATCH carrying the first half of EICAR was acknowledged\n{}",
        run.describe()
    );

    let created = run
        .events
        .iter()
        .find(|e| e["event"] == "created")
        .unwrap_or_else(|| panic!("no created event\n{}", run.describe()));
    let url = created["url"].as_str().expect("created url");
    let path = fx.path_of(url);
    let id = path.rsplit('/').next().unwrap().to_owned();
    fx.head(url).await.assert_status(404);
    for path in [path, format!("/objects/{id}")] {
        fx.send("GET", &path).await.assert_status(404);
    }
    assert_eq!(fx.quarantined().await, Vec::<String>::new());
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

/// A server with a source file in its temp dir, sent in `chunk`-byte PATCHes.
struct Fixture {
    server: TestServer,
    file: PathBuf,
    data: Vec<u8>,
    chunk: u64,
}

impl Fixture {
    /// No policy, a 50 MiB source in 1 MiB chunks.
    async fn new(seed: u64) -> Fixture {
        let server = TestServer::start().await;
        let data = bytes(FILE_SIZE as usize, seed);
        Fixture::with_source(server, data, &format!("source-{seed}.bin"), CHUNK).await
    }

    /// Uploads screened by the shipped policy, `policies/default.toml`, whose
    /// plugins are pinned to the components `plugins/build.sh` puts in
    /// `plugins/dist/`.
    async fn screened(data: Vec<u8>, name: &str, chunk: u64) -> Fixture {
        let inspector = repo_path("plugins/dist/content-inspector.wasm");
        assert!(
            inspector.is_file(),
            "{} is missing: build the plugins with plugins/build.sh (tests/run.sh does)",
            inspector.display()
        );
        let policy = repo_path("policies/default.toml");
        let server = TestServer::start_with(|config| config.plugins.policy = Some(policy)).await;
        Fixture::with_source(server, data, name, chunk).await
    }

    async fn with_source(server: TestServer, data: Vec<u8>, name: &str, chunk: u64) -> Fixture {
        let file = server.dir.path().join(name);
        tokio::fs::write(&file, &data).await.expect("write source");
        Fixture {
            server,
            file,
            data,
            chunk,
        }
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
            .arg(self.chunk.to_string());
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

    /// A request of the test's own, bounded by `REQUEST_TIMEOUT`.
    async fn send(&self, method: &str, path: &str) -> Reply {
        let headers: &[(&str, &str)] = if method == "GET" { &[] } else { &[TUS] };
        tokio::time::timeout(
            REQUEST_TIMEOUT,
            self.server.send(method, path, headers, Vec::new()),
        )
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no answer within {REQUEST_TIMEOUT:?}"))
    }

    async fn head(&self, url: &str) -> Reply {
        self.send("HEAD", &self.path_of(url)).await
    }

    /// A JSON document from the admin listener.
    async fn admin_json(&self, path: &str) -> Value {
        let request = async {
            let response = self
                .server
                .http
                .get(self.server.admin_url(path))
                .send()
                .await
                .unwrap_or_else(|e| panic!("admin GET {path}: {e}"));
            let status = response.status();
            let body = response
                .bytes()
                .await
                .unwrap_or_else(|e| panic!("admin GET {path}: body: {e}"));
            assert!(
                status.is_success(),
                "admin GET {path}: {status}: {}",
                String::from_utf8_lossy(&body)
            );
            serde_json::from_slice::<Value>(&body)
                .unwrap_or_else(|e| panic!("admin GET {path}: not JSON: {e}"))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, request)
            .await
            .unwrap_or_else(|_| panic!("admin GET {path}: no answer within {REQUEST_TIMEOUT:?}"))
    }

    /// The ids `/admin/quarantine` lists.
    async fn quarantined(&self) -> Vec<String> {
        let listed = self.admin_json("/admin/quarantine").await;
        listed["objects"]
            .as_array()
            .unwrap_or_else(|| panic!("/admin/quarantine: no objects array: {listed}"))
            .iter()
            .map(|o| o["id"].as_str().unwrap_or_default().to_owned())
            .collect()
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

    /// Exit 1 with `error` as the last event, carrying the HTTP `status` of
    /// the failing response; returns its body parsed as JSON.
    #[track_caller]
    fn assert_error(&self, status: u16) -> Value {
        let last = self.events.last();
        assert!(
            self.code() == Some(1) && last.is_some_and(|e| e["event"] == "error"),
            "expected the client to report an error\n{}",
            self.describe()
        );
        let error = last.unwrap();
        assert_eq!(
            error["status"],
            status,
            "status of the response the client failed on\n{}",
            self.describe()
        );
        let body = error["body"]
            .as_str()
            .unwrap_or_else(|| panic!("error without a response body\n{}", self.describe()));
        serde_json::from_str(body).unwrap_or_else(|e| {
            panic!(
                "the error's response body is not JSON ({e})\n{}",
                self.describe()
            )
        })
    }

    /// The last `response` event of a PATCH (drivers run with `--report-header`).
    #[track_caller]
    fn last_patch_response(&self) -> &Value {
        self.events
            .iter()
            .rev()
            .find(|e| e["event"] == "response" && e["method"] == "PATCH")
            .unwrap_or_else(|| panic!("no PATCH response event\n{}", self.describe()))
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
