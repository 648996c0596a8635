//! The browser clients in a real browser: Debian's Chromium, driven headless
//! by playwright-core, against a real appliance with the shipped policy and
//! authentication on. The web console (tests/console/console.mjs): The driver signs in with the
//! first start's API key, uploads a clean file (progress reaches 100% and
//! the object appears), a file the policy rejects (the reason is shown) and
//! one it quarantines (released from the quarantine queue), and writes a
//! screenshot of each step to test-output/console/. And the Uppy example
//! page exactly as shipped (tests/console/uppy.mjs), its CDN's Uppy answered
//! from the same release on npm: each file shows the outcome the appliance
//! gave it.
//!
//! Chromium comes from the test command (./tests/run.sh installs Debian's
//! `chromium`), playwright-core and Uppy from tests/console/setup.sh.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
/// The driver bounds itself at this; the test waits a little longer.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(150);
const CHROMIUM: &str = "/usr/bin/chromium";
const HOW_TO_INSTALL: &str = "the test command, ./tests/run.sh, installs Debian's chromium and \
     runs tests/console/setup.sh (playwright-core)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_uploads_shows_a_rejection_and_releases_a_quarantined_file() {
    let driver = repo_path("tests/console/console.mjs");
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: {HOW_TO_INSTALL}"
    );
    assert!(
        repo_path("tests/console/node_modules/playwright-core").exists(),
        "playwright-core is missing: {HOW_TO_INSTALL}"
    );
    let policy = repo_path("policies/default.toml");
    let server = TestServer::start_with_tokens(|config| {
        config.plugins.policy = Some(policy);
        config.plugins.workers = 2;
    })
    .await;
    let files = tempfile::tempdir().unwrap();
    let clean = files.path().join("holiday-notes.txt");
    let rejected = files.path().join("eicar-sample.txt");
    let quarantined = files.path().join("invoice.pdf");
    let mut infected = b"a text file that carries the antivirus test string: ".to_vec();
    infected.extend_from_slice(EICAR);
    std::fs::write(&clean, text(3 << 20)).unwrap();
    std::fs::write(&rejected, &infected).unwrap();
    let elf = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    std::fs::write(&quarantined, &elf[..300_000]).unwrap();
    let screenshots = repo_path("test-output/console");
    // Only this test's own screenshots: the Uppy test writes beside them.
    for shot in [
        "01-uploaded.png",
        "02-rejected.png",
        "03-released.png",
        "failure.png",
    ] {
        let _ = std::fs::remove_file(screenshots.join(shot));
    }

    let env = [
        (
            "CONSOLE_URL",
            format!("http://{}/console/", server.appliance().admin_addr),
        ),
        ("API_KEY", server.admin_key.clone().expect("tokens mode")),
        ("CLEAN_FILE", clean.display().to_string()),
        ("REJECT_FILE", rejected.display().to_string()),
        ("QUARANTINE_FILE", quarantined.display().to_string()),
        ("REJECT_EXPECT", "content-inspector".to_owned()),
        ("SCREENSHOTS", screenshots.display().to_string()),
        ("CHROMIUM", CHROMIUM.to_owned()),
        ("TIMEOUT_MS", DRIVER_TIMEOUT.as_millis().to_string()),
    ];
    let output = run_driver(&driver, &env).await;
    let result = result_line(&output);
    assert_eq!(result["ok"], true, "{result}");
    for shot in ["01-uploaded.png", "02-rejected.png", "03-released.png"] {
        let path = screenshots.join(shot);
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        assert!(size > 10_000, "{} missing or empty", path.display());
    }

    // What the browser did is what the appliance holds: the clean file and
    // the released one are objects, the rejected one left nothing.
    let objects = admin_json_with_token(&server).await;
    let by_name = |name: &str| {
        objects
            .iter()
            .find(|o| o["filename"] == name)
            .unwrap_or_else(|| panic!("{name} not among {objects:?}"))
    };
    assert_eq!(by_name("holiday-notes.txt")["disposition"], "released");
    assert_eq!(
        by_name("holiday-notes.txt")["sha256"],
        sha256_hex(&text(3 << 20))
    );
    assert_eq!(by_name("invoice.pdf")["disposition"], "released");
    assert!(objects.iter().all(|o| o["filename"] != "eicar-sample.txt"));
    assert_eq!(objects.len(), 2);
}

fn text(len: usize) -> Vec<u8> {
    b"Day one: the ferry, the harbour, a long walk along the cliffs.\n"
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

async fn admin_json_with_token(server: &TestServer) -> Vec<Value> {
    let token = server.admin_token(&["admin"]).await;
    let response = server
        .http
        .get(server.admin_url("/admin/objects"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let page: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    page["objects"].as_array().expect("objects").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_uppy_example_page_shows_what_became_of_each_file() {
    let driver = repo_path("tests/console/uppy.mjs");
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: {HOW_TO_INSTALL}"
    );
    assert!(
        repo_path("tests/console/vendor/uppy/uppy.min.mjs").exists(),
        "Uppy is missing: {HOW_TO_INSTALL}"
    );
    // The driver serves the page on 127.0.0.1 (a page may call an appliance
    // on loopback only from loopback itself); the port is picked first so
    // the appliance can admit the page's origin by CORS.
    let page_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let page_origin = format!("http://127.0.0.1:{page_port}");
    let policy = repo_path("policies/default.toml");
    let server = TestServer::start_with_tokens(|config| {
        config.plugins.policy = Some(policy);
        config.plugins.workers = 2;
        config.server.cors_allowed_origins = vec![page_origin];
    })
    .await;
    let files = tempfile::tempdir().unwrap();
    let clean = files.path().join("minutes.txt");
    let rejected = files.path().join("sample.txt");
    let quarantined = files.path().join("statement.pdf");
    let mut infected = b"carries the antivirus test string: ".to_vec();
    infected.extend_from_slice(EICAR);
    std::fs::write(&clean, text(1 << 20)).unwrap();
    std::fs::write(&rejected, &infected).unwrap();
    let elf = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    std::fs::write(&quarantined, &elf[..200_000]).unwrap();
    let env = [
        ("PUBLIC_URL", server.base()),
        ("PAGE_PORT", page_port.to_string()),
        ("API_KEY", server.admin_key.clone().expect("tokens mode")),
        ("CLEAN_FILE", clean.display().to_string()),
        ("REJECT_FILE", rejected.display().to_string()),
        ("QUARANTINE_FILE", quarantined.display().to_string()),
        (
            "SCREENSHOTS",
            repo_path("test-output/console").display().to_string(),
        ),
        ("CHROMIUM", CHROMIUM.to_owned()),
        ("TIMEOUT_MS", DRIVER_TIMEOUT.as_millis().to_string()),
    ];
    let output = run_driver(&driver, &env).await;
    let result = result_line(&output);
    assert_eq!(result["ok"], true, "{result}");

    let objects = admin_json_with_token(&server).await;
    let names: Vec<&str> = objects
        .iter()
        .filter_map(|o| o["filename"].as_str())
        .collect();
    assert_eq!(names.len(), 2, "{objects:?}");
    assert!(names.contains(&"minutes.txt") && names.contains(&"statement.pdf"));
}

/// Runs a node driver with `env`; it bounds itself, and is killed if it
/// does not (polled, so the appliance on this runtime keeps serving).
async fn run_driver(driver: &Path, env: &[(&str, String)]) -> std::process::Output {
    let out_dir = tempfile::tempdir().unwrap();
    let (stdout_path, stderr_path) = (out_dir.path().join("out"), out_dir.path().join("err"));
    let mut child = std::process::Command::new("node")
        .arg(driver)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("node runs (installed by tests/clients/setup.sh)");
    let deadline = std::time::Instant::now() + DRIVER_TIMEOUT + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("driver status") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} did not stop by itself", driver.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    std::process::Output {
        status,
        stdout: std::fs::read(&stdout_path).unwrap(),
        stderr: std::fs::read(&stderr_path).unwrap(),
    }
}

/// The driver's JSON result line; panics with its output if it failed.
fn result_line(output: &std::process::Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "driver failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no JSON result line:\n{stdout}\n{stderr}"))
}
