//! Plugin verdicts decide uploads, end to end: a real appliance with a
//! policy whose chain runs the shipped plugins (built from `plugins/` into
//! `plugins/dist/` by plugins/build.sh) and the hostile ones, driven over
//! HTTP. Early rejection during the PATCH that revealed the content,
//! release, quarantine, replay after a restart or an idle release,
//! concatenations, contained plugin failures, disabling, and policy reloads.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

fn dist(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("plugins/dist")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: build the plugins with plugins/build.sh (tests/run.sh does)",
        path.display()
    );
    path
}

/// A policy section for a shipped or hostile plugin, pinned to the built file.
fn plugin(name: &str, settings: &str) -> String {
    let path = dist(name);
    let pin = sha256_hex(&std::fs::read(&path).expect("plugin readable"));
    format!(
        "[plugins.{name}]\npath = {path:?}\nsha256 = \"{pin}\"\n{settings}\n",
        path = path.display().to_string()
    )
}

/// Writes a policy into the server's temp dir and returns its path.
fn write_policy(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).expect("policy written");
    path
}

/// The default chain of the shipped policy, with pins of the built plugins.
fn shipped_chain() -> String {
    let mut text = String::from(
        "[defaults]\nchain = [\"content-inspector\", \"provenance\", \"anomaly\"]\n\n",
    );
    text += &plugin("content-inspector", "deadline = \"2s\"");
    text += &plugin("provenance", "");
    text += &plugin("anomaly", "on_failure = \"accept\"");
    text
}

async fn server_with_policy(text: &str) -> TestServer {
    let dir = tempfile::tempdir().expect("policy dir");
    let path = write_policy(dir.path(), text);
    let server = TestServer::start_with(|config| {
        config.plugins.policy = Some(path);
        config.plugins.workers = 2;
    })
    .await;
    // The policy file must outlive the server (reloads read it again).
    std::mem::forget(dir);
    server
}

fn policy_path(server: &TestServer) -> PathBuf {
    server.config.plugins.policy.clone().expect("policy set")
}

fn text(len: usize) -> Vec<u8> {
    b"plain words for a plain text file\n"
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

/// Text with EICAR at `at`.
fn with_eicar(len: usize, at: usize) -> Vec<u8> {
    let mut data = text(len);
    data[at..at + EICAR.len()].copy_from_slice(EICAR);
    data
}

async fn create_named<'a>(server: &'a TestServer, len: usize, name: &str) -> Upload<'a> {
    let meta = tus_metadata(&[("filename", name)]);
    server
        .create_with(&[
            ("Upload-Length", &len.to_string()),
            ("Upload-Metadata", &meta),
        ])
        .await
}

#[track_caller]
fn assert_rejected_by(reply: &Reply, plugin: &str, rule: &str) {
    reply.assert_problem(422, "upload_rejected");
    let json = reply.json();
    assert_eq!(json["plugin"], plugin, "{json}");
    assert_eq!(json["rule"], rule, "{json}");
    assert!(
        json["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{json}"
    );
}

async fn admin_json(server: &TestServer, path: &str) -> Value {
    let response = reqwest::get(server.admin_url(path))
        .await
        .expect("admin up");
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    serde_json::from_slice(&response.bytes().await.expect("admin body")).expect("admin json")
}

fn plugin_status<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["plugins"]
        .as_array()
        .and_then(|plugins| plugins.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("{name} not in {status}"))
}

#[tokio::test]
async fn a_clean_upload_is_released_and_keeps_its_report() {
    let server = server_with_policy(&shipped_chain()).await;
    let data = text(300_000);
    let up = create_named(&server, data.len(), "notes.txt").await;
    let done = up.patch(0, &data).await;
    done.assert_offset(data.len() as u64);
    assert_eq!(done.header("strongroom-disposition"), Some("released"));
    assert_eq!(
        up.head().await.header("strongroom-disposition"),
        Some("released")
    );
    let got = up.get().await;
    got.assert_status(200);
    assert_eq!(got.body, data);
    let status = admin_json(&server, "/admin/plugins").await;
    for name in ["content-inspector", "provenance", "anomaly"] {
        assert_eq!(plugin_status(&status, name)["runs"], 1, "{status}");
    }
}

#[tokio::test]
async fn eicar_is_rejected_by_the_patch_that_carries_it_and_the_upload_is_destroyed() {
    let server = server_with_policy(&shipped_chain()).await;
    let baseline = server.census().await;
    let data = with_eicar(2 << 20, 1 << 20);
    let up = create_named(&server, data.len(), "report.txt").await;
    let reply = up.patch(0, &data).await;
    assert_rejected_by(&reply, "content-inspector", "malware-signature");
    up.head().await.assert_status(404);
    up.get().await.assert_status(404);
    // Record, wrapped key and file are gone: nothing is left to read.
    assert_eq!(server.census().await, baseline);
}

#[tokio::test]
async fn eicar_split_across_two_patches_is_rejected_by_the_second() {
    let server = server_with_policy(&shipped_chain()).await;
    let cut = 200_000 + EICAR.len() / 2;
    let data = with_eicar(400_000, 200_000);
    let up = create_named(&server, data.len(), "split.txt").await;
    up.patch(0, &data[..cut]).await.assert_offset(cut as u64);
    let reply = up.patch(cut as u64, &data[cut..]).await;
    assert_rejected_by(&reply, "content-inspector", "malware-signature");
    up.head().await.assert_status(404);
}

#[tokio::test]
async fn a_restart_between_patches_replays_the_staged_bytes_into_new_instances() {
    let mut server = server_with_policy(&shipped_chain()).await;
    let cut = 300_000 + EICAR.len() / 2;
    let data = with_eicar(500_000, 300_000);
    let path = {
        let up = create_named(&server, data.len(), "resume.txt").await;
        up.patch(0, &data[..cut]).await.assert_offset(cut as u64);
        up.path.clone()
    };
    server.restart().await;
    let up = Upload {
        server: &server,
        path,
    };
    // Only the new instance's replay of the first half can see the signature
    // that straddles the cut.
    let reply = up.patch(cut as u64, &data[cut..]).await;
    assert_rejected_by(&reply, "content-inspector", "malware-signature");
}

#[tokio::test]
async fn idle_screenings_are_released_and_replayed() {
    let dir = tempfile::tempdir().expect("policy dir");
    let path = write_policy(dir.path(), &shipped_chain());
    let server = TestServer::start_with(|config| {
        config.plugins.policy = Some(path);
        config.plugins.idle_timeout = Duration::ZERO;
    })
    .await;
    let cut = 100_000 + EICAR.len() / 2;
    let data = with_eicar(300_000, 100_000);
    let up = create_named(&server, data.len(), "idle.txt").await;
    up.patch(0, &data[..cut]).await.assert_offset(cut as u64);
    assert_eq!(server.appliance().ingest.release_idle_screenings(), 1);
    let reply = up.patch(cut as u64, &data[cut..]).await;
    assert_rejected_by(&reply, "content-inspector", "malware-signature");
}

#[tokio::test]
async fn an_elf_named_pdf_is_quarantined_held_from_download_and_listed() {
    let server = server_with_policy(&shipped_chain()).await;
    let elf = std::fs::read(env!("CARGO_BIN_EXE_strongroom")).expect("own binary");
    let data = &elf[..200_000];
    let meta = tus_metadata(&[("filename", "invoice.pdf"), ("filetype", "application/pdf")]);
    let up = server
        .create_with(&[
            ("Upload-Length", &data.len().to_string()),
            ("Upload-Metadata", &meta),
        ])
        .await;
    let done = up.patch(0, data).await;
    done.assert_offset(data.len() as u64);
    assert_eq!(done.header("strongroom-disposition"), Some("quarantined"));
    let reason = done.header("strongroom-reason").expect("reason header");
    assert!(
        reason.contains("content-inspector") && reason.contains("elf"),
        "{reason}"
    );
    let head = up.head().await;
    assert_eq!(head.header("strongroom-disposition"), Some("quarantined"));
    up.get().await.assert_problem(403, "object_quarantined");

    let listed = admin_json(&server, "/admin/quarantine").await;
    let objects = listed["objects"].as_array().expect("objects");
    assert_eq!(objects.len(), 1, "{listed}");
    assert_eq!(objects[0]["id"], up.id());
    let inspector = objects[0]["screening"]["plugins"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["plugin"] == "content-inspector"))
        .expect("content-inspector report");
    assert_eq!(inspector["verdict"], "quarantine");
    assert!(
        inspector["findings"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f["rule"] == "type-mismatch")),
        "{inspector}"
    );
}

#[tokio::test]
async fn a_final_concatenation_is_screened_as_one_stream() {
    let server = server_with_policy(&shipped_chain()).await;
    let data = with_eicar(200_000, 100_000 - EICAR.len() / 2);
    let (first, second) = data.split_at(100_000);
    let mut parts = Vec::new();
    for part in [first, second] {
        let up = server
            .create_with(&[
                ("Upload-Length", &part.len().to_string()),
                ("Upload-Concat", "partial"),
            ])
            .await;
        // Neither part holds the whole signature, and parts alone are not
        // screened: each completes.
        up.patch(0, part).await.assert_offset(part.len() as u64);
        parts.push(up.path.clone());
    }
    let concat = format!("final;{}", parts.join(" "));
    let reply = server
        .send(
            "POST",
            "/files/",
            &[TUS, ("Upload-Concat", &concat)],
            Vec::new(),
        )
        .await;
    assert_rejected_by(&reply, "content-inspector", "malware-signature");
}

/// The hostile plugins, each under its own failure rule.
fn hostile_chain(on_failure: &str) -> String {
    let mut text = String::from(
        "[defaults]\nchain = [\"loop\", \"memory\", \"panic\", \"log-spam\", \"content-inspector\"]\n\n",
    );
    let rule = format!("on_failure = \"{on_failure}\"");
    text += &plugin("hostile-loop", &format!("deadline = \"200ms\"\n{rule}"))
        .replace("plugins.hostile-loop", "plugins.loop");
    text += &plugin(
        "hostile-memory",
        &format!("memory_limit = \"16MiB\"\n{rule}"),
    )
    .replace("plugins.hostile-memory", "plugins.memory");
    text += &plugin("hostile-panic", &rule).replace("plugins.hostile-panic", "plugins.panic");
    text +=
        &plugin("hostile-log-spam", &rule).replace("plugins.hostile-log-spam", "plugins.log-spam");
    text += &plugin("content-inspector", "");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugins_are_contained_and_uploads_still_succeed() {
    let server = server_with_policy(&hostile_chain("accept")).await;
    let started = Instant::now();
    let uploads = (0..4).map(|i| {
        let server = &server;
        async move {
            let data = text(256 * 1024 + i * 1000);
            let up = create_named(server, data.len(), "fine.txt").await;
            let done = up.patch(0, &data).await;
            done.assert_offset(data.len() as u64);
            assert_eq!(done.header("strongroom-disposition"), Some("released"));
            assert_eq!(up.get().await.body, data);
        }
    });
    futures_util::future::join_all(uploads).await;
    // The loop is stopped at its deadline, not left to run.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    // The chain still works: the real inspector rejects what it must.
    let data = with_eicar(100_000, 5_000);
    let up = create_named(&server, data.len(), "bad.txt").await;
    assert_rejected_by(
        &up.patch(0, &data).await,
        "content-inspector",
        "malware-signature",
    );

    let status = admin_json(&server, "/admin/plugins").await;
    for name in ["loop", "memory", "panic"] {
        let plugin = plugin_status(&status, name);
        assert!(plugin["failures"].as_u64() >= Some(4), "{plugin}");
    }
}

#[tokio::test]
async fn plugin_failures_quarantine_by_default_with_classified_reasons() {
    let server = server_with_policy(&hostile_chain("quarantine")).await;
    let data = text(100_000);
    let up = create_named(&server, data.len(), "fine.txt").await;
    let done = up.patch(0, &data).await;
    done.assert_offset(data.len() as u64);
    assert_eq!(done.header("strongroom-disposition"), Some("quarantined"));
    up.get().await.assert_problem(403, "object_quarantined");
    let listed = admin_json(&server, "/admin/quarantine").await;
    let plugins = listed["objects"][0]["screening"]["plugins"]
        .as_array()
        .cloned()
        .expect("reports");
    let reason = |name: &str| {
        plugins
            .iter()
            .find(|p| p["plugin"] == name)
            .and_then(|p| p["reason"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(reason("loop").starts_with("timeout:"), "{}", reason("loop"));
    assert!(
        reason("memory").starts_with("memory_limit:"),
        "{}",
        reason("memory")
    );
    assert!(reason("panic").starts_with("panic:"), "{}", reason("panic"));
}

#[tokio::test]
async fn a_plugin_that_keeps_failing_is_disabled_by_policy() {
    let mut policy = String::from("[defaults]\nchain = [\"loop\"]\n\n");
    policy += &plugin(
        "hostile-loop",
        "deadline = \"100ms\"\non_failure = \"accept\"\ndisable_after_failures = 2",
    )
    .replace("plugins.hostile-loop", "plugins.loop");
    let server = server_with_policy(&policy).await;
    for _ in 0..3 {
        let data = text(70_000);
        let up = server.create(data.len() as u64).await;
        up.patch(0, &data).await.assert_offset(data.len() as u64);
    }
    let status = admin_json(&server, "/admin/plugins").await;
    let plugin = plugin_status(&status, "loop");
    assert_eq!(plugin["disabled"], true, "{plugin}");
    assert_eq!(plugin["failures"], 2, "{plugin}");
}

#[tokio::test]
async fn a_policy_reload_swaps_the_chain_and_a_bad_policy_is_refused() {
    let server = server_with_policy("[defaults]\nchain = []\n").await;
    let data = with_eicar(50_000, 10);
    // No chain: nothing inspects, the upload commits.
    let up = server.create(data.len() as u64).await;
    up.patch(0, &data).await.assert_offset(data.len() as u64);

    let path = policy_path(&server);
    std::fs::write(&path, shipped_chain()).unwrap();
    let reload = reqwest::Client::new()
        .post(server.admin_url("/admin/policy/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 200);
    let up = server.create(data.len() as u64).await;
    assert_rejected_by(
        &up.patch(0, &data).await,
        "content-inspector",
        "malware-signature",
    );

    std::fs::write(&path, "[defaults]\nchain = [\"nonexistent\"]\n").unwrap();
    let refused = reqwest::Client::new()
        .post(server.admin_url("/admin/policy/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    let body: Value = serde_json::from_slice(&refused.bytes().await.unwrap()).unwrap();
    assert_eq!(body["code"], "policy_refused", "{body}");
    assert!(
        body["detail"].as_str().unwrap_or("").contains("line"),
        "{body}"
    );
    // The old policy stays in force.
    let up = server.create(data.len() as u64).await;
    assert_rejected_by(
        &up.patch(0, &data).await,
        "content-inspector",
        "malware-signature",
    );
}

#[tokio::test]
async fn an_upload_in_flight_keeps_its_chain_across_a_reload() {
    let server = server_with_policy(&shipped_chain()).await;
    let cut = 100_000 + EICAR.len() / 2;
    let data = with_eicar(300_000, 100_000);
    let up = create_named(&server, data.len(), "inflight.txt").await;
    up.patch(0, &data[..cut]).await.assert_offset(cut as u64);
    std::fs::write(policy_path(&server), "[defaults]\nchain = []\n").unwrap();
    let reload = reqwest::Client::new()
        .post(server.admin_url("/admin/policy/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 200);
    // The upload's own instances still see the rest.
    let reply = up.patch(cut as u64, &data[cut..]).await;
    assert_rejected_by(&reply, "content-inspector", "malware-signature");
}

#[tokio::test]
async fn without_a_policy_nothing_inspects_and_admin_says_so() {
    let server = TestServer::start().await;
    let data = with_eicar(10_000, 0);
    let up = server.upload(&data).await;
    assert_eq!(
        up.head().await.header("strongroom-disposition"),
        Some("released")
    );
    let response = reqwest::get(server.admin_url("/admin/plugins"))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body["code"], "no_policy_configured");
}

/// A crash after every byte is sealed but before the verdict: the object
/// is never readable in between, and the restart replays it through the
/// chain and settles it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verdict_interrupted_by_a_crash_is_settled_at_restart() {
    use crate::support::process::Binary;

    let dir = tempfile::tempdir().expect("temp dir");
    // The loop plugin holds the verdict for its whole deadline, then fails,
    // which this policy accepts: a window for the crash, then a release.
    let mut policy = String::from("[defaults]\nchain = [\"loop\"]\n\n");
    policy += &plugin("hostile-loop", "deadline = \"3s\"\non_failure = \"accept\"")
        .replace("plugins.hostile-loop", "plugins.loop");
    let policy_path = write_policy(dir.path(), &policy);
    let config = dir.path().join("strongroom.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\ndata_dir = {:?}\n[plugins]\npolicy = {:?}\n",
            dir.path().join("data").display().to_string(),
            policy_path.display().to_string()
        ),
    )
    .unwrap();
    let log = dir.path().join("server.log");
    let mut server = Binary::serve(&config, &log, Duration::from_secs(30)).await;
    let http = reqwest::Client::new();
    let data = text(100_000);
    let created = http
        .post(server.url("/files/"))
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", data.len().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let patch = http
        .patch(server.url(&location))
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .body(data.clone())
        .send();
    let patch = tokio::spawn(patch);

    // Sealed and durable, but held until the verdict.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let get = http.get(server.url(&location)).send().await.unwrap();
        match get.status().as_u16() {
            409 => {
                let body: Value = serde_json::from_slice(&get.bytes().await.unwrap()).unwrap();
                assert_eq!(body["code"], "verdict_pending", "{body}");
                break;
            }
            404 if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("expected the object pending, got {other}"),
        }
    }
    server.kill();
    assert!(
        patch.await.unwrap().is_err(),
        "the PATCH must die with the server"
    );

    let server = Binary::serve(&config, &log, Duration::from_secs(30)).await;
    let get = http.get(server.url(&location)).send().await.unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(get.bytes().await.unwrap().as_ref(), data.as_slice());
    let head = http
        .head(server.url(&location))
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(head.headers()["strongroom-disposition"], "released");
}

/// Writes a config for the real binary with `policy` and returns its path.
fn binary_config(dir: &Path, policy: &str) -> PathBuf {
    let policy_path = write_policy(dir, policy);
    let config = dir.join("strongroom.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\ndata_dir = {:?}\n[plugins]\npolicy = {:?}\n",
            dir.join("data").display().to_string(),
            policy_path.display().to_string()
        ),
    )
    .unwrap();
    config
}

#[tokio::test]
async fn sighup_reloads_the_policy_and_a_bad_one_is_refused() {
    use crate::support::process::Binary;

    let dir = tempfile::tempdir().expect("temp dir");
    let config = binary_config(dir.path(), "[defaults]\nchain = []\n");
    let log = dir.path().join("server.log");
    let server = Binary::serve(&config, &log, Duration::from_secs(30)).await;
    let plugins_url = format!("http://{}/admin/plugins", server.admin);
    let chain = async || -> Value {
        let body = reqwest::get(&plugins_url)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        serde_json::from_slice::<Value>(&body).unwrap()["chains"]["defaults"].clone()
    };
    assert_eq!(chain().await, serde_json::json!([]));
    let hangup = || {
        let pid = libc::pid_t::try_from(server.child.id()).unwrap();
        // SAFETY: signals a child process this test owns.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    };
    let wait_for_chain = async |expected: Value| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while chain().await != expected {
            assert!(Instant::now() < deadline, "chain never became {expected}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };

    write_policy(dir.path(), &shipped_chain());
    hangup();
    wait_for_chain(serde_json::json!([
        "content-inspector",
        "provenance",
        "anomaly"
    ]))
    .await;

    write_policy(dir.path(), "[defaults]\nchain = [\"missing\"]\n");
    hangup();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("policy reload refused")
    {
        assert!(Instant::now() < deadline, "no refusal logged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        chain().await,
        serde_json::json!(["content-inspector", "provenance", "anomaly"]),
        "the old policy stays"
    );
}

#[tokio::test]
async fn a_type_the_tenant_does_not_allow_is_rejected_by_content() {
    let mut policy = String::from(
        "[defaults]\nchain = [\"content-inspector\"]\nallowed_types = [\"pdf\", \"png\"]\n\n",
    );
    policy += &plugin("content-inspector", "");
    let server = server_with_policy(&policy).await;
    // Named and declared as a PDF, but the content is plain text.
    let data = text(20_000);
    let meta = tus_metadata(&[("filename", "paper.pdf"), ("filetype", "application/pdf")]);
    let up = server
        .create_with(&[
            ("Upload-Length", &data.len().to_string()),
            ("Upload-Metadata", &meta),
        ])
        .await;
    let reply = up.patch(0, &data).await;
    assert_rejected_by(&reply, "content-inspector", "type-not-allowed");
    up.head().await.assert_status(404);
}

/// A rejection that arrives while the client is still sending: the server
/// reads the rest of the body before answering, so the client can finish
/// writing and read the 422 instead of meeting a closed socket (which
/// tus-js-client on Node reports as a network error and retries).
#[tokio::test]
async fn a_client_still_sending_after_an_early_reject_can_finish_and_read_it() {
    use crate::support::raw::{RawReply, read_to_close, tus_head};
    use tokio::io::AsyncWriteExt;

    let server = server_with_policy(&shipped_chain()).await;
    let data = with_eicar(3 << 20, 1 << 20);
    let up = create_named(&server, data.len(), "slow.txt").await;
    let head = tus_head(
        "PATCH",
        &up.path,
        &[
            ("Upload-Offset", "0"),
            ("Content-Type", "application/offset+octet-stream"),
            ("Content-Length", &data.len().to_string()),
        ],
    );
    let mut stream = tokio::net::TcpStream::connect(server.appliance().public_addr)
        .await
        .unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    // The signature is in the first 2 MiB; give the chain time to reject
    // before the rest is written.
    stream.write_all(&data[..2 << 20]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for piece in data[2 << 20..].chunks(64 << 10) {
        stream
            .write_all(piece)
            .await
            .expect("the server still reads the body it will reject");
    }
    let reply = RawReply::parse(&read_to_close(&mut stream).await).expect("an HTTP reply");
    assert_eq!(reply.status, 422);
    assert_eq!(reply.code(), "upload_rejected");
    up.head().await.assert_status(404);
}
