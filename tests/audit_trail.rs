//! The audit trail wired into a real appliance with tokens on and the
//! shipped plugin chain: every request and state change leaves one record
//! with the request id its response carried, nothing secret reaches the
//! log, the real binary exports and verifies it and catches tampering,
//! records are durable before their response (SIGKILL right after it), and
//! `audit.on_failure` decides what a request gets when its record cannot
//! be written (a real full tmpfs under the audit directory).

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;
use strongroom::audit;

use crate::support::process::Binary;
use crate::support::*;

pub const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// Far above any command here; a command still running then is killed and
/// the test fails instead of hanging.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// The appliance signs a checkpoint every second; this bounds the wait.
const CHECKPOINT_WAIT: Duration = Duration::from_secs(10);

// ---- shared with tests/manifest.rs ------------------------------------------

/// The shipped chain with pins of the built plugins, written into `dir`.
pub fn shipped_policy(dir: &Path) -> PathBuf {
    let mut text = String::from(
        "[defaults]\nchain = [\"content-inspector\", \"provenance\", \"anomaly\"]\n\n",
    );
    for (name, settings) in [
        ("content-inspector", "deadline = \"2s\""),
        ("provenance", ""),
        ("anomaly", "on_failure = \"accept\""),
    ] {
        let path = repo_path(&format!("plugins/dist/{name}.wasm"));
        let wasm = std::fs::read(&path).unwrap_or_else(|_| {
            panic!(
                "{} is missing: build the plugins with plugins/build.sh (tests/run.sh does)",
                path.display()
            )
        });
        text += &format!(
            "[plugins.{name}]\npath = {:?}\nsha256 = \"{}\"\n{settings}\n\n",
            path.display().to_string(),
            sha256_hex(&wasm)
        );
    }
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, text).expect("policy written");
    policy
}

/// An appliance with tokens on and the shipped chain.
pub async fn server_with_chain() -> (TestServer, tempfile::TempDir) {
    let policy_dir = tempfile::tempdir().expect("policy dir");
    let policy = shipped_policy(policy_dir.path());
    let server = TestServer::start_with_tokens(|config| {
        config.plugins.policy = Some(policy);
        config.plugins.workers = 2;
    })
    .await;
    (server, policy_dir)
}

/// `Upload-Metadata` for a filename.
pub fn filename_metadata(name: &str) -> String {
    format!("filename {}", BASE64.encode(name))
}

/// A request with a bearer token and our own request id.
pub async fn send_as(
    server: &TestServer,
    token: &str,
    request_id: &str,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply {
    let bearer = format!("Bearer {token}");
    let mut headers = vec![
        ("Authorization", bearer.as_str()),
        ("X-Request-Id", request_id),
    ];
    headers.extend_from_slice(extra);
    let reply = server.send(method, path, &headers, body).await;
    assert_eq!(
        reply.header("x-request-id"),
        Some(request_id),
        "{method} {path}: the response names its request"
    );
    reply
}

/// A finished `strongroom` process.
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Ran {
        assert_eq!(
            self.code,
            Some(code),
            "exit status\n--- stdout\n{}--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn assert_stdout(&self, needle: &str) -> &Ran {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n--- stdout\n{}--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs the real binary to completion (bounded by `COMMAND_LIMIT`).
pub fn strongroom<I, S>(args: I) -> Ran
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    // A few lines of output: they wait in the pipes until the exit.
    let mut child = Command::new(env!("CARGO_BIN_EXE_strongroom"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strongroom starts");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > COMMAND_LIMIT {
            let _ = child.kill();
            panic!("strongroom ran past {COMMAND_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let output = child.wait_with_output().expect("output");
    Ran {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Every record in a records file, parsed.
pub fn read_records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("records readable")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a record is JSON"))
        .collect()
}

/// The live log's records.
pub fn live_records(data_dir: &Path) -> Vec<Value> {
    read_records(&audit::dir(data_dir).join(audit::RECORDS_FILE))
}

// ---- every event, exported and verified -------------------------------------

/// A record of `kind` for request `request`, or a failure listing them all.
#[track_caller]
fn find<'a>(records: &'a [Value], kind: &str, request: &str) -> &'a Value {
    records
        .iter()
        .find(|r| r["kind"] == kind && r["request"] == request)
        .unwrap_or_else(|| {
            let seen: Vec<String> = records
                .iter()
                .map(|r| format!("{} {} {}", r["i"], r["kind"], r["request"]))
                .collect();
            panic!(
                "no {kind} record for request {request}; records:\n{}",
                seen.join("\n")
            )
        })
}

#[tokio::test]
async fn every_request_and_state_change_is_recorded_and_the_export_verifies() {
    let (server, _policy) = server_with_chain().await;
    let api_key = server.admin_key.clone().expect("first admin key");
    let secrets_dir = tempfile::tempdir().unwrap();

    // Token issue: the answer's token id is the record's subject.
    let issued = send_as(
        &server,
        &api_key,
        "t-token",
        "POST",
        "/auth/token",
        &[],
        br#"{"scopes":["upload:create"]}"#.to_vec(),
    )
    .await;
    issued.assert_status(200);
    let token = issued.json()["token"].as_str().unwrap().to_owned();
    let token_id = issued.json()["token_id"].as_str().unwrap().to_owned();

    // A failed authentication, and its presented credential.
    let bad_credential = "v4.public.not-a-real-token-but-secret-looking";
    send_as(
        &server,
        bad_credential,
        "t-bad-auth",
        "POST",
        "/files/",
        &[TUS, ("Upload-Length", "5")],
        Vec::new(),
    )
    .await
    .assert_problem(401, "token_invalid");
    // No credential at all: refused, and not recorded (nobody can make the
    // appliance fsync a record per request without one).
    server
        .send(
            "POST",
            "/files/",
            &[
                TUS,
                ("Upload-Length", "5"),
                ("X-Request-Id", "t-no-credential"),
            ],
            Vec::new(),
        )
        .await
        .assert_problem(401, "authentication_required");

    // Create, two PATCHes; the second commits. Text: random bytes would
    // be quarantined for their entropy.
    let data: Vec<u8> = b"plain words for a plain text file\n"
        .iter()
        .copied()
        .cycle()
        .take(150_000)
        .collect();
    let meta = filename_metadata("quarterly-secret-plan.txt");
    let created = send_as(
        &server,
        &token,
        "t-create",
        "POST",
        "/files/",
        &[TUS, ("Upload-Length", "150000"), ("Upload-Metadata", &meta)],
        Vec::new(),
    )
    .await;
    created.assert_status(201);
    let path = created.header("location").unwrap().to_owned();
    let id = path.rsplit('/').next().unwrap().to_owned();
    let patch = |request: &'static str, offset: u64, chunk: &[u8]| {
        let offset = offset.to_string();
        let (server, token, path, chunk) = (&server, &token, &path, chunk.to_vec());
        async move {
            send_as(
                server,
                token,
                request,
                "PATCH",
                path,
                &[TUS, OCTETS, ("Upload-Offset", &offset)],
                chunk,
            )
            .await
        }
    };
    patch("t-patch-1", 0, &data[..60_000])
        .await
        .assert_offset(60_000);
    let done = patch("t-patch-2", 60_000, &data[60_000..]).await;
    done.assert_offset(150_000);
    assert_eq!(done.header("strongroom-disposition"), Some("released"));
    let commit_index: u64 = done
        .header("strongroom-audit-index")
        .expect("the commit response carries the audit index")
        .parse()
        .unwrap();
    let head = send_as(&server, &token, "t-head", "HEAD", &path, &[TUS], Vec::new()).await;
    assert_eq!(
        head.header("strongroom-audit-index"),
        Some(commit_index.to_string().as_str())
    );

    // Download with a read token, then delete.
    let reader = server.admin_token(&[&format!("object:read:{id}")]).await;
    let got = send_as(
        &server,
        &reader,
        "t-download",
        "GET",
        &format!("/objects/{id}"),
        &[],
        Vec::new(),
    )
    .await;
    got.assert_status(200);
    assert_eq!(got.body, data);
    send_as(
        &server,
        &token,
        "t-delete",
        "DELETE",
        &path,
        &[TUS],
        Vec::new(),
    )
    .await
    .assert_status(204);

    // Rejected: EICAR in the only PATCH.
    let mut infected = b"plain words for a plain text file\n".repeat(3000);
    infected[50_000..50_000 + EICAR.len()].copy_from_slice(EICAR);
    let length = infected.len().to_string();
    let eicar = send_as(
        &server,
        &token,
        "t-create-eicar",
        "POST",
        "/files/",
        &[TUS, ("Upload-Length", &length)],
        Vec::new(),
    )
    .await;
    let eicar_path = eicar.header("location").unwrap().to_owned();
    send_as(
        &server,
        &token,
        "t-patch-eicar",
        "PATCH",
        &eicar_path,
        &[TUS, OCTETS, ("Upload-Offset", "0")],
        infected,
    )
    .await
    .assert_problem(422, "upload_rejected");

    // Quarantined: an ELF named .pdf.
    let elf = std::fs::read(env!("CARGO_BIN_EXE_strongroom")).unwrap()[..100_000].to_vec();
    let pdf_meta = format!(
        "{},filetype {}",
        filename_metadata("invoice-4711.pdf"),
        BASE64.encode("application/pdf")
    );
    let held = send_as(
        &server,
        &token,
        "t-create-elf",
        "POST",
        "/files/",
        &[
            TUS,
            ("Upload-Length", "100000"),
            ("Upload-Metadata", &pdf_meta),
        ],
        Vec::new(),
    )
    .await;
    let held_path = held.header("location").unwrap().to_owned();
    let quarantined = send_as(
        &server,
        &token,
        "t-patch-elf",
        "PATCH",
        &held_path,
        &[TUS, OCTETS, ("Upload-Offset", "0")],
        elf,
    )
    .await;
    assert_eq!(
        quarantined.header("strongroom-disposition"),
        Some("quarantined")
    );

    // Admin: revoke the upload token, reload the policy.
    let admin = server.admin_token(&["admin"]).await;
    let admin_post = |path: &'static str, request: &'static str, body: String| {
        let http = server.http.clone();
        let url = server.admin_url(path);
        let admin = admin.clone();
        async move {
            let response = http
                .post(url)
                .bearer_auth(admin)
                .header("X-Request-Id", request)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{path}");
            assert_eq!(
                response.headers().get("x-request-id").unwrap(),
                request,
                "{path}"
            );
        }
    };
    admin_post(
        "/admin/tokens/revoke",
        "t-revoke",
        serde_json::json!({ "token_id": token_id }).to_string(),
    )
    .await;
    admin_post("/admin/policy/reload", "t-reload", String::new()).await;
    admin_post("/admin/keys/rotate", "t-rotate", String::new()).await;

    // Every record signed, then exported and verified by the real binary.
    let log = server.appliance().records.trail.log().clone();
    let total = log.stats().records;
    let deadline = Instant::now() + CHECKPOINT_WAIT;
    while log.latest_checkpoint().map_or(0, |c| c.size()) < total {
        assert!(
            Instant::now() < deadline,
            "no checkpoint covers {total} records"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let data_dir = server.data_dir();
    let export = secrets_dir.path().join("export");
    strongroom([
        "audit".as_ref(),
        "export".as_ref(),
        "--data-dir".as_ref(),
        data_dir.as_os_str(),
        "--out".as_ref(),
        export.as_os_str(),
    ])
    .assert_code(0);
    let key = audit::dir(&data_dir).join(audit::PUBLIC_KEY_FILE);
    let verify = |dir: &Path| {
        strongroom([
            "audit".as_ref(),
            "verify".as_ref(),
            dir.as_os_str(),
            "--key".as_ref(),
            key.as_os_str(),
        ])
    };
    verify(&export).assert_code(0).assert_stdout("ok:");

    let records = read_records(&export.join(audit::RECORDS_FILE));
    assert!(
        records.len() as u64 >= total,
        "the export holds every record"
    );
    let token_record = find(&records, "token_issue", "t-token");
    assert_eq!(token_record["subject"], token_id.as_str());
    assert_eq!(token_record["tenant"], "default");
    let failure = find(&records, "auth_failure", "t-bad-auth");
    assert_eq!(failure["outcome"], "denied");
    assert_eq!(failure["reason"], "token_invalid");
    assert!(
        failure["actor"]
            .as_str()
            .unwrap()
            .starts_with("ip:127.0.0.1")
    );
    assert!(records.iter().all(|r| r["request"] != "t-no-credential"));
    let create = find(&records, "create", "t-create");
    assert_eq!(create["upload"], id.as_str());
    assert_eq!(create["size"], 150_000);
    assert_eq!(create["name"].as_str().unwrap().len(), 64, "a keyed name");
    assert!(create["actor"].as_str().unwrap().starts_with("token:"));
    assert_eq!(find(&records, "resume", "t-patch-1")["offset"], 60_000);
    assert_eq!(find(&records, "resume", "t-patch-2")["offset"], 150_000);
    let commit = &records[commit_index as usize];
    assert_eq!(commit["kind"], "commit", "{commit}");
    assert_eq!(commit["request"], "t-patch-2");
    assert_eq!(commit["upload"], id.as_str());
    assert_eq!(commit["sha256"], sha256_hex(&data));
    assert_eq!(commit["reason"], "released");
    assert_eq!(commit["name"], create["name"], "the same keyed name");
    let verdicts: Vec<&Value> = records
        .iter()
        .filter(|r| r["kind"] == "verdict" && r["request"] == "t-patch-2")
        .collect();
    assert_eq!(verdicts.len(), 3, "one per plugin: {verdicts:?}");
    assert!(
        verdicts
            .iter()
            .all(|r| r["i"].as_u64() < Some(commit_index))
    );
    assert_eq!(
        find(&records, "download", "t-download")["upload"],
        id.as_str()
    );
    assert_eq!(find(&records, "delete", "t-delete")["outcome"], "ok");
    let refused = find(&records, "resume", "t-patch-eicar");
    assert_eq!(
        (&refused["outcome"], &refused["reason"]),
        (&Value::from("denied"), &Value::from("upload_rejected"))
    );
    let reject = find(&records, "reject", "t-patch-eicar");
    assert_eq!(reject["subject"], "content-inspector");
    assert_eq!(reject["reason"], "malware-signature");
    let hold = find(&records, "quarantine", "t-patch-elf");
    assert_eq!(hold["subject"], "content-inspector");
    assert_eq!(
        find(&records, "commit", "t-patch-elf")["reason"],
        "quarantined"
    );
    assert_eq!(
        find(&records, "token_revoke", "t-revoke")["subject"],
        token_id.as_str()
    );
    let reload = find(&records, "policy_reload", "t-reload");
    assert!(reload["actor"].as_str().unwrap().starts_with("token:"));
    // The rotation request, and the rotation itself per tenant with the
    // key that is current afterwards.
    let rotations: Vec<&Value> = records
        .iter()
        .filter(|r| r["kind"] == "key_rotation" && r["request"] == "t-rotate")
        .collect();
    assert_eq!(rotations.len(), 2, "{rotations:?}");
    assert!(rotations.iter().any(|r| {
        r["tenant"] == "default"
            && r["subject"]
                .as_str()
                .is_some_and(|kek| kek.starts_with("local:default:v"))
    }));

    // Nothing secret, and no filename, in any form.
    let text = std::fs::read_to_string(audit::dir(&data_dir).join(audit::RECORDS_FILE)).unwrap();
    for secret in [
        api_key.as_str(),
        token.as_str(),
        reader.as_str(),
        admin.as_str(),
        bad_credential,
        "quarterly-secret-plan",
        "invoice-4711",
        &BASE64.encode("quarterly-secret-plan.txt"),
    ] {
        assert!(!text.contains(secret), "the log holds {secret:?}");
    }

    // Tampering with the exported copy is caught at the first bad index.
    let k = commit_index as usize;
    let lines: Vec<String> = std::fs::read_to_string(export.join(audit::RECORDS_FILE))
        .unwrap()
        .lines()
        .map(|line| format!("{line}\n"))
        .collect();
    let flipped = {
        let mut lines = lines.clone();
        lines[k] = lines[k].replace("t-patch-2", "t-patch-3");
        lines
    };
    let dropped = {
        let mut lines = lines.clone();
        lines.remove(k);
        lines
    };
    let reordered = {
        let mut lines = lines.clone();
        lines.swap(k, k + 1);
        lines
    };
    let truncated = {
        let mut lines = lines[..=k].to_vec();
        let half = lines[k].len() / 2;
        lines[k].truncate(half);
        lines
    };
    for (name, lines, says) in [
        ("flip", flipped, "does not hash to the prev"),
        ("drop", dropped, "says it is record"),
        ("reorder", reordered, "says it is record"),
        ("truncate", truncated, "is incomplete"),
    ] {
        let copy = secrets_dir.path().join(name);
        std::fs::create_dir(&copy).unwrap();
        for file in [audit::CHECKPOINTS_FILE, audit::PUBLIC_KEY_FILE] {
            std::fs::copy(export.join(file), copy.join(file)).unwrap();
        }
        std::fs::write(copy.join(audit::RECORDS_FILE), lines.concat()).unwrap();
        verify(&copy)
            .assert_code(2)
            .assert_stdout("TAMPERED")
            .assert_stdout(&format!("first failing index {k}:"))
            .assert_stdout(says);
    }
}

// ---- durability --------------------------------------------------------------

#[tokio::test]
async fn a_record_is_on_disk_when_its_response_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let config = dir.path().join("strongroom.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\ndata_dir = {:?}\n",
            data_dir.display().to_string()
        ),
    )
    .unwrap();
    let log = dir.path().join("server.log");
    let mut binary = Binary::serve(&config, &log, Duration::from_secs(30)).await;
    let http = reqwest::Client::new();
    let created = http
        .post(binary.url("/files/"))
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", "5")
        .header("X-Request-Id", "k-create")
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let done = http
        .patch(binary.url(&location))
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .header("X-Request-Id", "k-patch")
        .body("hello")
        .send()
        .await
        .unwrap();
    // SIGKILL the moment the answer is in: no shutdown, no checkpoint.
    binary.kill();
    assert_eq!(done.status(), 204);
    let index: usize = done.headers()["strongroom-audit-index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();

    // Reopening recovers the log with every answered record in it.
    let reopened = audit::Audit::open(&audit::dir(&data_dir), "strongroom/audit").unwrap();
    let records = live_records(&data_dir);
    assert_eq!(reopened.stats().records, records.len() as u64);
    find(&records, "create", "k-create");
    find(&records, "resume", "k-patch");
    assert_eq!(records[index]["kind"], "commit");
    assert_eq!(records[index]["request"], "k-patch");
    assert_eq!(records[index]["sha256"], sha256_hex(b"hello"));
}

#[tokio::test]
async fn a_policy_reload_by_sighup_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "[defaults]\nchain = []\n").unwrap();
    let config = dir.path().join("strongroom.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\ndata_dir = {:?}\n[plugins]\npolicy = {:?}\n",
            data_dir.display().to_string(),
            policy.display().to_string()
        ),
    )
    .unwrap();
    let log = dir.path().join("server.log");
    let binary = Binary::serve(&config, &log, Duration::from_secs(30)).await;
    let pid = i32::try_from(binary.child.id()).unwrap();
    // SAFETY: a plain kill(2) of our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let reload = loop {
        let records = live_records(&data_dir);
        if let Some(reload) = records.iter().find(|r| r["kind"] == "policy_reload") {
            break reload.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no policy_reload record after SIGHUP"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(reload["actor"], "system");
    assert_eq!(reload["subject"], "sighup");
    assert_eq!(reload["outcome"], "ok");
    drop(binary);
}

// ---- when records cannot be written -----------------------------------------

/// A tmpfs on a fresh temporary directory, unmounted on drop.
struct Tmpfs {
    dir: Option<tempfile::TempDir>,
    target: CString,
}

impl Tmpfs {
    /// Mounts one, or says why not: a failure unless mount tests are
    /// skipped explicitly (`STRONGROOM_SKIP_MOUNT_TESTS=1`), as in
    /// tests/disk_full.rs.
    fn mount_or_skip(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("temp dir");
        let target = CString::new(dir.path().as_os_str().as_bytes()).expect("no NUL");
        let options = CString::new(format!("size={size},mode=0700")).expect("no NUL");
        // SAFETY: valid NUL-terminated strings that outlive the call.
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
            let err = std::io::Error::last_os_error();
            if std::env::var("STRONGROOM_SKIP_MOUNT_TESTS").as_deref() == Ok("1") {
                eprintln!("SKIPPED: cannot mount a tmpfs ({err}); STRONGROOM_SKIP_MOUNT_TESTS=1");
                return None;
            }
            panic!(
                "this test mounts a tmpfs (root or CAP_SYS_ADMIN) and could not: {err}; \
                 set STRONGROOM_SKIP_MOUNT_TESTS=1 to skip it"
            );
        }
        Some(Tmpfs {
            dir: Some(dir),
            target,
        })
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().expect("mounted").path()
    }

    /// Writes a filler file until the kernel answers ENOSPC.
    fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 4096];
        while file.write_all(&block).is_ok() {}
        while file.write_all(&block[..1]).is_ok() {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // SAFETY: `target` is a valid NUL-terminated path.
        if unsafe { libc::umount2(self.target.as_ptr(), 0) } != 0 {
            // SAFETY: as above.
            unsafe { libc::umount2(self.target.as_ptr(), libc::MNT_DETACH) };
        }
        drop(self.dir.take());
    }
}

/// Puts the audit directory (and only it) on `mount`.
fn audit_on(config: &mut strongroom::config::Config, mount: &Path) {
    let data = config.storage.data_dir.clone();
    std::fs::create_dir_all(&data).unwrap();
    std::os::unix::fs::symlink(mount, audit::dir(&data)).unwrap();
}

/// Creations until the log's first failed write (the records file's last
/// page may take a record or two after the disk is full); that answer.
async fn first_refusal(server: &TestServer) -> Reply {
    for _ in 0..200 {
        let reply = server
            .send(
                "POST",
                "/files/",
                &[TUS, ("Upload-Length", "1")],
                Vec::new(),
            )
            .await;
        if reply.status != 201 {
            return reply;
        }
    }
    panic!("200 creations recorded on a full tmpfs");
}

#[tokio::test]
async fn refuse_answers_503_and_holds_the_commit_until_it_is_recorded() {
    let Some(tmpfs) = Tmpfs::mount_or_skip("1m") else {
        return;
    };
    let mount = tmpfs.path().to_owned();
    let mut server = TestServer::start_with(|config| audit_on(config, &mount)).await;
    let data = bytes(100_000, 3);
    let up = server.create(data.len() as u64).await;
    up.patch(0, &data[..40_000]).await.assert_offset(40_000);

    let filler = tmpfs.fill();
    first_refusal(&server)
        .await
        .assert_problem(503, "audit_unavailable");
    // The last bytes are stored, but the commit is not reported done: the
    // object stays pending and is not downloadable.
    up.patch(40_000, &data[40_000..])
        .await
        .assert_problem(503, "audit_unavailable");
    let head = up.head().await;
    head.assert_offset(100_000);
    assert_eq!(head.header("strongroom-disposition"), Some("pending"));
    assert_eq!(head.header("strongroom-audit-index"), None);
    up.get().await.assert_problem(503, "audit_unavailable");
    // Each refused request is a record that could not be made durable.
    let page = crate::support::ops::MetricsPage::scrape(&server).await;
    assert!(
        page.count("strongroom_audit_failures_total", &[]) >= 3.0,
        "{}",
        page.text
    );

    // Space again and a restart: recovery records the commit (actor
    // `system`) and only then releases the object.
    let path = up.path.clone();
    std::fs::remove_file(filler).unwrap();
    server.restart().await;
    let up = Upload {
        server: &server,
        path,
    };
    let head = up.head().await;
    assert_eq!(head.header("strongroom-disposition"), Some("released"));
    let index: usize = head
        .header("strongroom-audit-index")
        .expect("recorded at recovery")
        .parse()
        .unwrap();
    let records = live_records(&server.data_dir());
    assert_eq!(records[index]["kind"], "commit");
    assert_eq!(records[index]["upload"], up.id());
    assert_eq!(records[index]["actor"], "system");
    let got = up.get().await;
    got.assert_status(200);
    assert_eq!(got.body, data);
}

#[tokio::test]
async fn log_serves_requests_unrecorded_when_records_cannot_be_written() {
    let Some(tmpfs) = Tmpfs::mount_or_skip("1m") else {
        return;
    };
    let mount = tmpfs.path().to_owned();
    let server = TestServer::start_with(|config| {
        audit_on(config, &mount);
        config.audit.on_failure = strongroom::audit::OnFailure::Log;
    })
    .await;
    server.upload(b"recorded").await;
    let before = server.appliance().records.trail.log().stats().records;
    tmpfs.fill();
    // Keep going past the log's first failed write.
    for _ in 0..20 {
        server
            .send(
                "POST",
                "/files/",
                &[TUS, ("Upload-Length", "1")],
                Vec::new(),
            )
            .await
            .assert_status(201);
    }
    let data = bytes(70_000, 4);
    let up = server.create(data.len() as u64).await;
    let done = up.patch(0, &data).await;
    done.assert_offset(70_000);
    assert_eq!(done.header("strongroom-disposition"), Some("released"));
    let got = up.get().await;
    got.assert_status(200);
    assert_eq!(got.body, data);
    let after = server.appliance().records.trail.log().stats().records;
    assert!(
        after < before + 20,
        "{before} then {after}: records were lost"
    );
    drop(server);
}
