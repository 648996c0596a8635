//! The command-line client, as a user runs it: the real `strongroom`
//! binary (`upload`, `download`, `token`, `status`) against a real
//! appliance started in this process on 127.0.0.1, with real files in
//! temporary directories. Round trips are checked byte for byte and
//! against the signed manifest; resumption is checked by killing the
//! process mid-upload and running it again.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use crate::support::*;

const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// Far above any command here; one still running then is killed and the
/// test fails instead of hanging.
const COMMAND_LIMIT: Duration = Duration::from_secs(120);

/// A finished `strongroom` process.
#[derive(Debug)]
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn describe(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    #[track_caller]
    fn assert_code(&self, code: i32) -> &Ran {
        assert_eq!(self.code, Some(code), "{}", self.describe());
        self
    }

    #[track_caller]
    fn assert_stdout(&self, needle: &str) -> &Ran {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n{}",
            self.describe()
        );
        self
    }

    #[track_caller]
    fn assert_stderr(&self, needle: &str) -> &Ran {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n{}",
            self.describe()
        );
        self
    }

    /// stdout as JSON lines.
    fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line}\n{}", self.describe()))
            })
            .collect()
    }
}

/// An appliance and a working directory for the client.
struct Fixture {
    server: TestServer,
    dir: tempfile::TempDir,
}

impl Fixture {
    async fn new() -> Fixture {
        Self::with(TestServer::start().await)
    }

    fn with(server: TestServer) -> Fixture {
        Fixture {
            server,
            dir: tempfile::tempdir().expect("work dir"),
        }
    }

    /// The shipped policy (`policies/default.toml`), whose plugins are
    /// pinned to what `plugins/build.sh` puts in `plugins/dist/`.
    async fn screened() -> Fixture {
        let inspector = repo_path("plugins/dist/content-inspector.wasm");
        assert!(
            inspector.is_file(),
            "{} is missing: build the plugins with plugins/build.sh (tests/run.sh does)",
            inspector.display()
        );
        let policy = repo_path("policies/default.toml");
        let server = TestServer::start_with(|config| config.plugins.policy = Some(policy)).await;
        Self::with(server)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A file to upload, in a directory of its own (downloads land in the
    /// work dir, under the same names).
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let dir = self.path("in");
        std::fs::create_dir_all(&dir).expect("input dir");
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write a test file");
        path
    }

    fn state(&self) -> PathBuf {
        self.path("uploads.json")
    }

    /// `strongroom ARGS` pointed at this server, in the work dir, with a
    /// clean environment: no proxy, no credential, state under the work
    /// dir.
    fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut command = Command::new(env!("CARGO_BIN_EXE_strongroom"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("XDG_STATE_HOME", self.path("xdg-state"))
            .env("STRONGROOM_URL", self.server.base())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    async fn run<I, S>(&self, args: I) -> Ran
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        finish(self.command(args).spawn().expect("strongroom starts")).await
    }

    async fn run_with(&self, mut command: Command) -> Ran {
        finish(command.spawn().expect("strongroom starts")).await
    }

    /// Uploads `path` with `extra` arguments and returns the one JSON line.
    async fn upload_json(&self, path: &Path, extra: &[&str]) -> (Ran, Value) {
        let mut args: Vec<std::ffi::OsString> = vec!["upload".into(), path.into(), "--json".into()];
        args.push("--state".into());
        args.push(self.state().into());
        args.extend(extra.iter().map(Into::into));
        let ran = self.run(args).await;
        let lines = ran.json_lines();
        assert_eq!(lines.len(), 1, "{}", ran.describe());
        let line = lines.into_iter().next().unwrap();
        (ran, line)
    }

    /// The object's bytes, fetched in-process.
    async fn object(&self, id: &str) -> Vec<u8> {
        let reply = self
            .server
            .send("GET", &format!("/objects/{id}"), &[], Vec::new())
            .await;
        reply.assert_status(200);
        reply.body
    }

    async fn manifest_key(&self) -> String {
        let reply = self
            .server
            .send(
                "GET",
                "/.well-known/strongroom/manifest-key",
                &[],
                Vec::new(),
            )
            .await;
        reply.assert_status(200);
        String::from_utf8(reply.body).unwrap()
    }
}

/// Waits for a child on a blocking thread (the appliance runs on this
/// runtime), killing it past `COMMAND_LIMIT`.
async fn finish(mut child: Child) -> Ran {
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                pipe.read_to_string(&mut text).expect("utf-8 output");
            }
            text
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let status = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if started.elapsed() > COMMAND_LIMIT {
                let _ = child.kill();
                panic!("strongroom ran past {COMMAND_LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    })
    .await
    .expect("waiter");
    Ran {
        code: status.code(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

fn text(len: usize) -> Vec<u8> {
    b"plain words for a plain text file\n"
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

fn private_file(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The state file's entries.
fn state_entries(path: &Path) -> Vec<Value> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => {
            let document: Value = serde_json::from_str(&text).expect("state is JSON");
            document["uploads"].as_array().cloned().unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

const JSON_KEYS: [&str; 8] = [
    "file",
    "id",
    "url",
    "size",
    "sha256",
    "disposition",
    "reason",
    "exit",
];

#[track_caller]
fn assert_upload_line(line: &Value) {
    let object = line.as_object().expect("a JSON object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut expected = JSON_KEYS.to_vec();
    expected.sort_unstable();
    assert_eq!(keys, expected, "{line}");
}

// ---- round trips ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_downloads_back_byte_exact_and_verified_against_its_manifest() {
    let fx = Fixture::new().await;
    let data = bytes(700_000, 1);
    let file = fx.write("photo.bin", &data);
    let (ran, line) = fx.upload_json(&file, &["--chunk-size", "64KiB"]).await;
    ran.assert_code(0);
    assert_upload_line(&line);
    assert_eq!(line["disposition"], "released", "{line}");
    assert_eq!(line["size"], 700_000);
    assert_eq!(line["sha256"], sha256_hex(&data));
    assert_eq!(line["exit"], 0);
    let id = line["id"].as_str().unwrap().to_owned();
    assert!(line["url"].as_str().unwrap().ends_with(&id), "{line}");
    assert!(
        state_entries(&fx.state()).is_empty(),
        "a finished upload leaves no entry"
    );

    // By id: the server's name for it, the key fetched from the server.
    fx.run(["download", &id])
        .await
        .assert_code(0)
        .assert_stdout("verified against its manifest")
        .assert_stdout("FETCHED from the server, not pinned");
    assert_eq!(std::fs::read(fx.path("photo.bin")).unwrap(), data);
    // With -o and a pinned key.
    let out = fx.path("copy.bin");
    let key = fx.manifest_key().await;
    fx.run([
        "download",
        &id,
        "-o",
        out.to_str().unwrap(),
        "--manifest-key",
        &key,
    ])
    .await
    .assert_code(0)
    .assert_stdout("pinned key");
    assert_eq!(std::fs::read(&out).unwrap(), data);
    assert!(!fx.path("copy.bin.part").exists());
    // An existing file is replaced only with --force.
    fx.run(["download", &id, "-o", out.to_str().unwrap()])
        .await
        .assert_code(1)
        .assert_stderr("already exists");
    std::fs::write(&out, b"old").unwrap();
    fx.run(["download", &id, "-o", out.to_str().unwrap(), "--force"])
        .await
        .assert_code(0);
    assert_eq!(std::fs::read(&out).unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_download_takes_the_servers_file_name_made_safe() {
    let fx = Fixture::new().await;
    let data = text(5000);
    let source = fx.write("source.txt", &data);
    let (ran, line) = fx
        .upload_json(&source, &["--meta", "filename=../../etc/notes.txt"])
        .await;
    ran.assert_code(0);
    let id = line["id"].as_str().unwrap();
    let got = fx.run(["download", id, "--json"]).await;
    got.assert_code(0);
    let lines = got.json_lines();
    assert_eq!(lines[0]["file"], "notes.txt", "{}", got.describe());
    assert_eq!(lines[0]["key"], "fetched");
    assert_eq!(lines[0]["sha256"], sha256_hex(&data));
    assert_eq!(std::fs::read(fx.path("notes.txt")).unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_file_uploads_and_downloads() {
    let fx = Fixture::new().await;
    let file = fx.write("empty.dat", b"");
    let (ran, line) = fx.upload_json(&file, &[]).await;
    ran.assert_code(0);
    assert_eq!(line["disposition"], "released", "{line}");
    let id = line["id"].as_str().unwrap();
    let out = fx.path("empty.out");
    fx.run(["download", id, "-o", out.to_str().unwrap()])
        .await
        .assert_code(0);
    assert_eq!(std::fs::read(&out).unwrap(), b"");
}

// ---- authentication ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tokens_on_the_api_key_is_exchanged_and_never_printed() {
    let fx = Fixture::with(TestServer::start_with_tokens(|_| {}).await);
    let key = fx.server.admin_key.clone().expect("admin key");
    let data = bytes(200_000, 2);
    let file = fx.write("report.bin", &data);
    let state = fx.state();

    // No credential: refused, exit 6, nothing created.
    let ran = fx
        .run([
            "upload",
            file.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
        ])
        .await;
    ran.assert_code(6).assert_stderr("authentication refused");

    // The key from the environment.
    let mut command = fx.command([
        "upload",
        file.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "--chunk-size",
        "64KiB",
    ]);
    command.env("STRONGROOM_API_KEY", &key);
    let ran = fx.run_with(command).await;
    ran.assert_code(0).assert_stdout("released");
    assert!(!ran.stdout.contains(&key) && !ran.stderr.contains(&key));
    let id = ran
        .stdout
        .split("object ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .expect("the object id is printed")
        .to_owned();

    // The key from a private file; a readable one is refused.
    let key_file = fx.path("api.key");
    private_file(&key_file, &format!("{key}\n"));
    let out = fx.path("report.out");
    let ran = fx
        .run([
            "download",
            &id,
            "-o",
            out.to_str().unwrap(),
            "--api-key-file",
            key_file.to_str().unwrap(),
        ])
        .await;
    ran.assert_code(0);
    assert!(!ran.stdout.contains(&key) && !ran.stderr.contains(&key));
    assert_eq!(std::fs::read(&out).unwrap(), data);
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    fx.run([
        "download",
        &id,
        "-o",
        fx.path("other.out").to_str().unwrap(),
        "--api-key-file",
        key_file.to_str().unwrap(),
    ])
    .await
    .assert_code(1)
    .assert_stderr("mode 644");

    // A wrong key: exit 6.
    fx.run(["download", &id, "--api-key", "srk_not_a_real_key"])
        .await
        .assert_code(6)
        .assert_stderr("authentication refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_prints_a_token_that_works() {
    let fx = Fixture::with(TestServer::start_with_tokens(|_| {}).await);
    let key = fx.server.admin_key.clone().expect("admin key");
    let ran = fx
        .run(["token", "--scope", "upload:create", "--api-key", &key])
        .await;
    ran.assert_code(0);
    let token = ran.stdout.trim().to_owned();
    assert!(!token.is_empty() && !token.contains(char::is_whitespace));
    assert_ne!(token, key);

    let json = fx
        .run([
            "token",
            "--scope",
            "upload:create",
            "--api-key",
            &key,
            "--json",
        ])
        .await;
    json.assert_code(0);
    let answer = &json.json_lines()[0];
    assert!(answer["token"].is_string(), "{answer}");
    assert!(answer["expires_at"].is_u64(), "{answer}");
    assert_eq!(answer["scopes"], serde_json::json!(["upload:create"]));

    // The printed token uploads.
    let file = fx.write("with-token.txt", &text(1000));
    fx.run([
        "upload",
        file.to_str().unwrap(),
        "--token",
        &token,
        "--state",
        fx.state().to_str().unwrap(),
    ])
    .await
    .assert_code(0)
    .assert_stdout("released");

    // A scope the key may not have.
    fx.run(["token", "--scope", "admin", "--api-key", "srk_wrong"])
        .await
        .assert_code(6);
}

// ---- resumption -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_killed_midway_is_continued_by_the_next_run() {
    // A slow appliance (256 KiB/s for all bodies) so that the first run is
    // surely killed halfway through a 1 MiB file.
    let server = TestServer::start_with(|config| {
        config.limits.ingress_bytes_per_second = bytesize::ByteSize::kib(256);
    })
    .await;
    let fx = Fixture::with(server);
    let data = bytes(1 << 20, 3);
    let file = fx.write("big.bin", &data);
    let state = fx.state();
    let args = [
        "upload",
        file.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "--chunk-size",
        "32KiB",
    ];

    let mut first = started_with_progress(&fx, &args).await;
    first.kill().unwrap();
    first.wait().unwrap();
    let url = state_entries(&state)[0]["plan"]["part"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = url.rsplit('/').next().unwrap().to_owned();

    // The state file lists it, with the offset the server has.
    let listed = fx
        .run(["status", "--state", state.to_str().unwrap(), "--json"])
        .await;
    listed.assert_code(0);
    let entry = &listed.json_lines()[0];
    assert_eq!(entry["id"], id.as_str(), "{entry}");
    assert_eq!(entry["state"], "in_progress");
    let offset = entry["server_offset"].as_u64().unwrap();
    assert!(offset > 0 && offset < data.len() as u64, "{entry}");
    let one = fx.run(["status", &id, "--json"]).await;
    one.assert_code(0);
    assert_eq!(one.json_lines()[0]["length"], 1 << 20);
    assert!(one.json_lines()[0]["disposition"].is_null());

    // The same command again: the same upload, finished.
    let mut again: Vec<&str> = args.to_vec();
    again.push("--json");
    let ran = fx.run(again).await;
    ran.assert_code(0);
    let line = &ran.json_lines()[0];
    assert_eq!(line["id"], id.as_str(), "{}", ran.describe());
    assert_eq!(line["disposition"], "released");
    assert_eq!(fx.object(&id).await, data);
    assert!(state_entries(&state).is_empty());
    fx.run(["status", &id])
        .await
        .assert_code(0)
        .assert_stdout("complete: released");
}

/// Starts `args` (an upload to a slowed server) and waits until the state
/// file records acknowledged bytes; panics if it ends first.
async fn started_with_progress(fx: &Fixture, args: &[&str]) -> Child {
    let mut child = fx.command(args).spawn().expect("strongroom starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let recorded = state_entries(&fx.state())
            .first()
            .is_some_and(|e| e["plan"]["part"]["offset"].as_u64().unwrap_or(0) > 0);
        if recorded {
            return child;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the upload ended before it could be interrupted"
        );
        assert!(Instant::now() < deadline, "no progress recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_with_status_7_and_the_next_run_continues() {
    let server = TestServer::start_with(|config| {
        config.limits.ingress_bytes_per_second = bytesize::ByteSize::kib(256);
    })
    .await;
    let fx = Fixture::with(server);
    let data = bytes(1 << 20, 11);
    let file = fx.write("interrupted.bin", &data);
    let state = fx.state();
    let args = [
        "upload",
        file.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "--chunk-size",
        "32KiB",
    ];
    let child = started_with_progress(&fx, &args).await;
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: signalling our own child process, which has not been reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let ran = finish(child).await;
    ran.assert_code(7)
        .assert_stderr("interrupted; run the same command again to continue");
    assert_eq!(state_entries(&state).len(), 1);

    let ran = fx.run(args).await;
    ran.assert_code(0).assert_stdout("(continued from byte");
    let id = ran
        .stdout
        .split("object ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap();
    assert_eq!(fx.object(id).await, data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_gone_midway_ends_with_status_7_and_the_state_kept() {
    let server = TestServer::start_with(|config| {
        config.limits.ingress_bytes_per_second = bytesize::ByteSize::kib(256);
    })
    .await;
    let mut fx = Fixture::with(server);
    let data = bytes(1 << 20, 12);
    let file = fx.write("unlucky.bin", &data);
    let state = fx.state();
    let args = [
        "upload",
        file.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "--chunk-size",
        "32KiB",
        "--retries",
        "1",
        "--json",
    ];
    let child = started_with_progress(&fx, &args).await;
    fx.server.appliance.take().expect("running").stop().await;
    let ran = finish(child).await;
    ran.assert_code(7);
    let line = &ran.json_lines()[0];
    assert_eq!(line["disposition"], "incomplete", "{line}");
    assert_eq!(line["exit"], 7);
    assert_eq!(state_entries(&state).len(), 1, "kept for the next run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_state_file_lives_under_xdg_state_home() {
    let fx = Fixture::new().await;
    let file = fx.write("a.txt", &text(100));
    fx.run(["upload", file.to_str().unwrap(), "--quiet"])
        .await
        .assert_code(0);
    let state = fx.path("xdg-state/strongroom/uploads.json");
    assert!(state.is_file(), "{} was not written", state.display());
    assert!(state_entries(&state).is_empty());
    fx.run(["status"])
        .await
        .assert_code(0)
        .assert_stdout("no unfinished uploads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_after_the_server_lost_the_upload_starts_over() {
    let fx = Fixture::new().await;
    let data = bytes(100_000, 4);
    let file = fx.write("lost.bin", &data);
    // A state entry pointing at an upload that is not on the server.
    let key =
        strongroom::client::state::Key::of_file(&format!("{}/", fx.server.base()), &file).unwrap();
    let entry = strongroom::client::state::Entry {
        key,
        created_at: 0,
        plan: strongroom::client::state::Plan::Single {
            part: strongroom::client::state::Part {
                url: fx.server.url("/files/0123456789abcdef0123456789abcdef"),
                start: 0,
                length: data.len() as u64,
                offset: 50_000,
            },
        },
    };
    let store = strongroom::client::state::Store::new(fx.state());
    store.put(entry).await.unwrap();
    let (ran, line) = fx.upload_json(&file, &[]).await;
    ran.assert_code(0);
    assert_ne!(line["id"], "0123456789abcdef0123456789abcdef");
    assert_eq!(fx.object(line["id"].as_str().unwrap()).await, data);
}

// ---- parallel parts ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_file_goes_as_parallel_parts_joined_byte_exact() {
    let fx = Fixture::new().await;
    let data = bytes(1_000_003, 5);
    let file = fx.write("large.bin", &data);
    let (ran, line) = fx
        .upload_json(
            &file,
            &[
                "--parallel",
                "3",
                "--parallel-threshold",
                "100KiB",
                "--chunk-size",
                "64KiB",
            ],
        )
        .await;
    ran.assert_code(0);
    assert_eq!(line["disposition"], "released", "{line}");
    let id = line["id"].as_str().unwrap();
    assert_eq!(fx.object(id).await, data);
    // It is a final upload joining three parts.
    let status = fx.run(["status", id, "--json"]).await;
    status.assert_code(0);
    let concat = status.json_lines()[0]["concat"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(concat.starts_with("final;"), "{}", status.describe());
    assert_eq!(concat.split(' ').count(), 3, "{concat}");
    // Downloads verify like any other.
    fx.run(["download", id, "-o", fx.path("large.out").to_str().unwrap()])
        .await
        .assert_code(0);
    assert_eq!(std::fs::read(fx.path("large.out")).unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_parts_killed_midway_are_each_continued() {
    let server = TestServer::start_with(|config| {
        config.limits.ingress_bytes_per_second = bytesize::ByteSize::kib(384);
    })
    .await;
    let fx = Fixture::with(server);
    let data = bytes(1 << 20, 6);
    let file = fx.write("parts.bin", &data);
    let state = fx.state();
    let args = [
        "upload",
        file.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "--chunk-size",
        "32KiB",
        "--parallel",
        "2",
        "--parallel-threshold",
        "64KiB",
    ];
    let mut first = fx.command(args).spawn().expect("strongroom starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    let parts = loop {
        let entries = state_entries(&state);
        if let Some(parts) = entries
            .first()
            .and_then(|e| e["plan"]["parts"].as_array().cloned())
            && parts.iter().all(|p| p["offset"].as_u64().unwrap_or(0) > 0)
        {
            break parts;
        }
        assert!(first.try_wait().unwrap().is_none(), "finished too soon");
        assert!(Instant::now() < deadline, "no progress recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(parts.len(), 2);

    let mut again: Vec<&str> = args.to_vec();
    again.push("--json");
    let ran = fx.run(again).await;
    ran.assert_code(0);
    let line = &ran.json_lines()[0];
    let id = line["id"].as_str().unwrap();
    assert_eq!(fx.object(id).await, data);
    // The final upload joined the very parts the first run created.
    let concat = fx.run(["status", id, "--json"]).await.json_lines()[0]["concat"]
        .as_str()
        .unwrap()
        .to_owned();
    for part in &parts {
        let part_id = part["url"].as_str().unwrap().rsplit('/').next().unwrap();
        assert!(concat.contains(part_id), "{concat} lacks {part_id}");
    }
}

// ---- inspection verdicts ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eicar_is_rejected_naming_plugin_and_rule_with_exit_3() {
    let fx = Fixture::screened().await;
    let mut data = text(300_000);
    data[100_000..100_000 + EICAR.len()].copy_from_slice(EICAR);
    let file = fx.write("report.txt", &data);
    let ran = fx
        .run([
            "upload",
            file.to_str().unwrap(),
            "--state",
            fx.state().to_str().unwrap(),
            "--chunk-size",
            "64KiB",
        ])
        .await;
    ran.assert_code(3)
        .assert_stdout("REJECTED by plugin content-inspector")
        .assert_stdout("rule malware-signature");
    assert!(state_entries(&fx.state()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_elf_named_pdf_is_quarantined_with_exit_4_and_not_downloadable() {
    let fx = Fixture::screened().await;
    let elf = std::fs::read(env!("CARGO_BIN_EXE_strongroom")).expect("own binary");
    let file = fx.write("invoice.pdf", &elf[..200_000]);
    let (ran, line) = fx.upload_json(&file, &[]).await;
    ran.assert_code(4);
    assert_eq!(line["disposition"], "quarantined", "{line}");
    assert!(
        line["reason"]
            .as_str()
            .is_some_and(|r| r.contains("content-inspector")),
        "{line}"
    );
    let id = line["id"].as_str().unwrap();
    fx.run([
        "upload",
        file.to_str().unwrap(),
        "--state",
        fx.state().to_str().unwrap(),
    ])
    .await
    .assert_code(4)
    .assert_stdout("QUARANTINED");
    fx.run(["download", id, "-o", fx.path("x.out").to_str().unwrap()])
        .await
        .assert_code(4)
        .assert_stderr("quarantined");
    assert!(!fx.path("x.out").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_files_print_a_json_line_each_and_exit_with_the_most_severe() {
    let fx = Fixture::screened().await;
    let clean = fx.write("clean.txt", &text(20_000));
    let mut infected = text(20_000);
    infected[1000..1000 + EICAR.len()].copy_from_slice(EICAR);
    let infected = fx.write("infected.txt", &infected);
    let elf = std::fs::read(env!("CARGO_BIN_EXE_strongroom")).expect("own binary");
    let disguised = fx.write("disguised.pdf", &elf[..100_000]);
    let missing = fx.path("missing.txt");
    let ran = fx
        .run([
            "upload",
            clean.to_str().unwrap(),
            disguised.to_str().unwrap(),
            infected.to_str().unwrap(),
            "--state",
            fx.state().to_str().unwrap(),
            "--json",
        ])
        .await;
    // Rejected (3) is more severe than quarantined (4).
    ran.assert_code(3);
    let lines = ran.json_lines();
    assert_eq!(lines.len(), 3, "{}", ran.describe());
    for line in &lines {
        assert_upload_line(line);
    }
    let summary: Vec<(&str, i64)> = lines
        .iter()
        .map(|l| {
            (
                l["disposition"].as_str().unwrap(),
                l["exit"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [("released", 0), ("quarantined", 4), ("rejected", 3)]
    );
    assert!(
        lines[2]["reason"]
            .as_str()
            .unwrap()
            .starts_with("content-inspector/malware-signature"),
        "{}",
        lines[2]
    );

    // A missing file is an error (1), the most severe of all.
    let ran = fx
        .run([
            "upload",
            infected.to_str().unwrap(),
            missing.to_str().unwrap(),
            "--state",
            fx.state().to_str().unwrap(),
        ])
        .await;
    ran.assert_code(1).assert_stderr("missing.txt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_upload_passes_the_provenance_plugin_and_its_manifest_says_so() {
    use ring::signature::{Ed25519KeyPair, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    // PKCS#8 v1, as `openssl genpkey -algorithm ed25519` writes it.
    let seed = [7u8; 32];
    let mut der = hex::decode("302e020100300506032b657004220420").unwrap();
    der.extend_from_slice(&seed);
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        BASE64.encode(&der)
    );
    let trusted = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
    let plugin = repo_path("plugins/dist/provenance.wasm");
    assert!(plugin.is_file(), "run plugins/build.sh first");
    let pin = sha256_hex(&std::fs::read(&plugin).unwrap());
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[defaults]\nchain = [\"provenance\"]\n\n[plugins.provenance]\npath = {path:?}\n\
             sha256 = \"{pin}\"\n\n[plugins.provenance.config]\nrequired = true\n\
             trusted_keys = {{ release = \"{public}\" }}\n",
            path = plugin.display().to_string(),
            public = BASE64.encode(trusted.public_key().as_ref()),
        ),
    )
    .unwrap();
    let server = TestServer::start_with(|config| config.plugins.policy = Some(policy)).await;
    let fx = Fixture::with(server);
    let key_file = fx.path("signer.pem");
    private_file(&key_file, &pem);
    let data = bytes(150_000, 8);
    let file = fx.write("release.tar", &data);

    let signed = ["--sign", key_file.to_str().unwrap(), "--signer", "release"];
    let (ran, line) = fx.upload_json(&file, &signed).await;
    ran.assert_code(0);
    let id = line["id"].as_str().unwrap();
    fx.run([
        "download",
        id,
        "-o",
        fx.path("release.out").to_str().unwrap(),
    ])
    .await
    .assert_code(0)
    .assert_stdout("provenance verified, signer release");

    // The same file signed by a key the policy does not trust.
    let mut other = hex::decode("302e020100300506032b657004220420").unwrap();
    other.extend_from_slice(&[9u8; 32]);
    let untrusted = fx.path("untrusted.pem");
    private_file(
        &untrusted,
        &format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            BASE64.encode(&other)
        ),
    );
    let forged = ["--sign", untrusted.to_str().unwrap(), "--signer", "release"];
    let (ran, line) = fx.upload_json(&file, &forged).await;
    ran.assert_code(3);
    assert!(
        line["reason"].as_str().unwrap().starts_with("provenance/"),
        "{line}"
    );
}

// ---- downloads --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_download_is_continued_and_verified() {
    let fx = Fixture::new().await;
    let data = bytes(600_000, 9);
    let file = fx.write("resume.bin", &data);
    let (_, line) = fx.upload_json(&file, &[]).await;
    let id = line["id"].as_str().unwrap();
    let out = fx.path("resumed.bin");
    std::fs::write(fx.path("resumed.bin.part"), &data[..250_000]).unwrap();
    let ran = fx
        .run(["download", id, "-o", out.to_str().unwrap(), "--json"])
        .await;
    ran.assert_code(0);
    assert_eq!(ran.json_lines()[0]["resumed_from"], 250_000);
    assert_eq!(std::fs::read(&out).unwrap(), data);
    assert!(!fx.path("resumed.bin.part").exists());

    // A .part whose bytes are not the object's: the whole is hashed, so it
    // fails verification, is kept, and no file is produced.
    let mut wrong = data[..250_000].to_vec();
    wrong[1000] ^= 0xff;
    let bad_out = fx.path("damaged.bin");
    std::fs::write(fx.path("damaged.bin.part"), &wrong).unwrap();
    fx.run(["download", id, "-o", bad_out.to_str().unwrap()])
        .await
        .assert_code(2)
        .assert_stderr("VERIFICATION FAILED")
        .assert_stderr("SHA-256");
    assert!(!bad_out.exists());
    assert_eq!(
        std::fs::metadata(fx.path("damaged.bin.part"))
            .unwrap()
            .len(),
        data.len() as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_key_that_is_not_the_servers_fails_with_exit_2_and_no_file() {
    let fx = Fixture::new().await;
    let data = text(40_000);
    let file = fx.write("doc.txt", &data);
    let (_, line) = fx.upload_json(&file, &[]).await;
    let id = line["id"].as_str().unwrap();
    let forged = BASE64.encode([42u8; 32]);
    let out = fx.path("doc.out");
    fx.run([
        "download",
        id,
        "-o",
        out.to_str().unwrap(),
        "--manifest-key",
        &forged,
    ])
    .await
    .assert_code(2)
    .assert_stderr("VERIFICATION FAILED");
    assert!(!out.exists());

    // Not a key at all: an error of its own (1), not a verification failure.
    fx.run(["download", id, "--manifest-key", "/no/such/key"])
        .await
        .assert_code(1);
    // A URL on another origin (here another port) gets no credential;
    // nothing is sent there.
    fx.run([
        "download",
        &format!("http://127.0.0.1:9/objects/{id}"),
        "--token",
        "secret-token",
    ])
    .await
    .assert_code(1)
    .assert_stderr("refusing to send it the credential");
    // Unknown objects are errors too.
    fx.run(["download", "0123456789abcdef0123456789abcdef"])
        .await
        .assert_code(1)
        .assert_stderr("HTTP 404");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presigned_url_downloads_without_a_credential() {
    let fx = Fixture::with(TestServer::start_with_tokens(|_| {}).await);
    let key = fx.server.admin_key.clone().expect("admin key");
    let data = bytes(90_000, 10);
    let file = fx.write("shared.bin", &data);
    let (ran, line) = fx.upload_json(&file, &["--api-key", &key]).await;
    ran.assert_code(0);
    let id = line["id"].as_str().unwrap();
    let token = fx.server.token(&key, &[&format!("object:read:{id}")]).await;
    let body = serde_json::json!({"object": id, "ttl_seconds": 300}).to_string();
    let reply = fx
        .server
        .send(
            "POST",
            "/auth/presign",
            &[("Authorization", &format!("Bearer {token}"))],
            body,
        )
        .await;
    reply.assert_status(200);
    let mut url = reply.json()["url"].as_str().unwrap().to_owned();
    if url.starts_with('/') {
        url = fx.server.url(&url);
    }
    let out = fx.path("shared.out");
    fx.run(["download", &url, "-o", out.to_str().unwrap()])
        .await
        .assert_code(0);
    assert_eq!(std::fs::read(&out).unwrap(), data);
}

// ---- TLS --------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_appliance_is_trusted_through_ca_cert() {
    let certs = tempfile::tempdir().unwrap();
    let made = Command::new(env!("CARGO_BIN_EXE_strongroom"))
        .args(["cert", "self-signed", "--out"])
        .arg(certs.path())
        .output()
        .expect("cert self-signed runs");
    assert!(made.status.success(), "{made:?}");
    let server = TestServer::start_with(|config| {
        config.tls.cert = Some(certs.path().join("cert.pem"));
        config.tls.key = Some(certs.path().join("key.pem"));
    })
    .await;
    let fx = Fixture::with(server);
    let https = format!("https://{}", fx.server.appliance().public_addr);
    let file = fx.write("secret.txt", &text(10_000));
    let state = fx.state();
    let upload = |extra: &[&str]| {
        let mut args = vec![
            "upload",
            file.to_str().unwrap(),
            "--server",
            &https,
            "--retries",
            "0",
        ];
        args.extend_from_slice(extra);
        args.push("--state");
        args.push(state.to_str().unwrap());
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    // Not trusted without it.
    fx.run(upload(&[]))
        .await
        .assert_code(1)
        .assert_stderr("certificate");
    let ca = certs.path().join("cert.pem");
    fx.run(upload(&["--ca-cert", ca.to_str().unwrap()]))
        .await
        .assert_code(0)
        .assert_stdout("released");
}

// ---- usage ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_command_has_help_and_documents_its_exit_status() {
    let fx = Fixture::new().await;
    for command in ["upload", "download", "token", "status"] {
        let ran = fx.run([command, "--help"]).await;
        ran.assert_code(0)
            .assert_stdout("Exit status")
            .assert_stdout("--server")
            .assert_stdout("--json");
    }
    fx.run(["upload", "--help"])
        .await
        .assert_stdout("7  interrupted or incomplete")
        .assert_stdout("--parallel-threshold");
    fx.run(["download", "--help"])
        .await
        .assert_stdout("2  verification failed");
    // Bad usage: 2 for upload, 1 for download (whose 2 means forged).
    fx.run(["upload"]).await.assert_code(2);
    fx.run(["upload", "x", "--sign", "k"]).await.assert_code(2);
    fx.run(["download"]).await.assert_code(1);
    fx.run(["upload", "x", "--api-key", "a", "--token", "b"])
        .await
        .assert_code(2);
}
