//! The operator's files in `examples/` against a real appliance and the real
//! Prometheus tools (Debian's `prometheus` package: `promtool` and
//! `prometheus`, installed by tests/run.sh): the live /metrics page passes
//! `promtool check metrics`; a Prometheus server started here on loopback
//! scrapes the admin listener with examples/prometheus.yml and loads
//! examples/alerts.yml; the alert rules pass `promtool check rules` and
//! their unit tests (examples/alerts.test.yml); every metric the Grafana
//! dashboard and the alert rules name is one the appliance exports; the
//! example policies pass `strongroom policy check`.
//!
//! A missing tool fails its test (never skips it). Every child process is
//! bounded in time and killed when its guard drops.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytesize::ByteSize;
use serde_json::Value;

use crate::support::*;

const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// How long a promtool or `strongroom policy check` run may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long Prometheus may take to start, scrape and evaluate.
const PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(30);

// ---- tools ---------------------------------------------------------------

/// A tool from $PATH; fails the test when it is missing.
fn tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`{name}` is not installed: run ./tests/run.sh, which installs Debian's \
             `prometheus` package (promtool and prometheus), or \
             `apt-get install --no-install-recommends prometheus`"
        )
    })
}

/// A child process killed (and reaped) when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Ran {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn output(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr)
    }
}

/// Runs `command` with `stdin`, killing it after `limit`.
fn run(command: &mut Command, stdin: &[u8], limit: Duration) -> Ran {
    let what = format!("{command:?}");
    let mut child = Guard(
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: {e}")),
    );
    let mut input = child.0.stdin.take().expect("stdin piped");
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        // A tool that exits without reading all of it is not an error here.
        let _ = input.write_all(&stdin);
    });
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = reader(Box::new(child.0.stdout.take().expect("stdout piped")));
    let stderr = reader(Box::new(child.0.stderr.take().expect("stderr piped")));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("child status") {
            break status;
        }
        if Instant::now() >= deadline {
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    writer.join().expect("stdin writer");
    Ran {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Runs a tool from the repository root and asserts it exits 0.
#[track_caller]
fn run_ok(tool_path: &Path, args: &[&str]) -> Ran {
    let ran = run(
        Command::new(tool_path)
            .args(args)
            .current_dir(repo_path("")),
        b"",
        TOOL_TIMEOUT,
    );
    assert!(
        ran.status.success(),
        "{} {} failed ({}):\n{}",
        tool_path.display(),
        args.join(" "),
        ran.status,
        ran.output()
    );
    ran
}

fn example(name: &str) -> PathBuf {
    let path = repo_path("examples").join(name);
    assert!(path.exists(), "{} is missing", path.display());
    path
}

fn read_example(name: &str) -> String {
    std::fs::read_to_string(example(name)).expect("example readable")
}

// ---- an appliance with every metric family in use -------------------------

fn dist(name: &str) -> PathBuf {
    let path = repo_path("plugins/dist").join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: build the plugins with plugins/build.sh (tests/run.sh does)",
        path.display()
    );
    path
}

fn plugin_section(section: &str, file: &str, settings: &str) -> String {
    let path = dist(file);
    let pin = sha256_hex(&std::fs::read(&path).expect("plugin readable"));
    format!(
        "[plugins.{section}]\npath = {path:?}\nsha256 = \"{pin}\"\n{settings}\n",
        path = path.display().to_string()
    )
}

/// An appliance whose traffic has put a series in every metric family:
/// content-inspector and a plugin that always panics (accepted on failure),
/// a quota, and a small burst of new uploads.
struct Busy {
    server: TestServer,
    _policy_dir: tempfile::TempDir,
}

const QUOTA: u64 = 1 << 20;

async fn busy_server() -> Busy {
    let policy_dir = tempfile::tempdir().expect("policy dir");
    let policy = policy_dir.path().join("policy.toml");
    let text = String::from("[defaults]\nchain = [\"content-inspector\", \"panic\"]\n\n")
        + &plugin_section("content-inspector", "content-inspector", "")
        + &plugin_section("panic", "hostile-panic", "on_failure = \"accept\"");
    std::fs::write(&policy, text).expect("policy written");
    let server = TestServer::start_with(|config| {
        config.plugins.policy = Some(policy);
        config.plugins.workers = 2;
        config.limits.quota = ByteSize::b(QUOTA);
        config.limits.uploads_per_second = 0.01;
        config.limits.uploads_burst = 6;
    })
    .await;
    traffic(&server).await;
    Busy {
        server,
        _policy_dir: policy_dir,
    }
}

/// An upload, a download, a 404, a rejected upload, a plugin failure, a
/// quota refusal, a refused API key and, last, a new-upload rate limit.
async fn traffic(server: &TestServer) {
    let data = b"plain words for a plain text file\n".repeat(100);
    let up = server.upload(&data).await;
    let object = up.object_path();
    let got = server.send("GET", &object, &[], Vec::new()).await;
    got.assert_status(200);
    assert_eq!(got.body, data);
    server
        .send(
            "GET",
            &format!("/objects/{}", "0".repeat(32)),
            &[],
            Vec::new(),
        )
        .await
        .assert_status(404);

    let rejected = server.create(EICAR.len() as u64).await;
    rejected
        .patch(0, EICAR)
        .await
        .assert_problem(422, "upload_rejected");

    let too_big = (QUOTA + 1).to_string();
    server
        .send(
            "POST",
            "/files/",
            &[TUS, ("Upload-Length", &too_big)],
            Vec::new(),
        )
        .await
        .assert_problem(403, "quota_exceeded");

    server
        .send(
            "POST",
            "/auth/token",
            &[("Authorization", "Bearer srk_not_a_key")],
            r#"{"scopes":["upload:create"]}"#,
        )
        .await
        .assert_status(401);

    // New uploads until the burst is used up.
    let mut limited = false;
    for _ in 0..20 {
        let reply = server
            .send(
                "POST",
                "/files/",
                &[TUS, ("Upload-Length", "1")],
                Vec::new(),
            )
            .await;
        if reply.status == 429 {
            reply.assert_problem(429, "rate_limited");
            limited = true;
            break;
        }
        reply.assert_status(201);
    }
    assert!(limited, "no 429 after 20 new uploads with a burst of 6");
}

async fn metrics_page(server: &TestServer) -> String {
    let response = server
        .http
        .get(server.admin_url("/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200);
    response.text().await.expect("metrics text")
}

/// Metric families on a page, from its `# TYPE name kind` lines.
fn families(page: &str) -> BTreeMap<String, String> {
    page.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| {
            let (name, kind) = rest.split_once(' ')?;
            Some((name.to_owned(), kind.trim().to_owned()))
        })
        .collect()
}

// ---- metric names in queries ----------------------------------------------

/// `strongroom_*` and `process_*` names in PromQL or YAML text, outside
/// quoted label values.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut chars = text.char_indices().peekable();
    let mut quote: Option<char> = None;
    let mut start: Option<usize> = None;
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let flush = |from: Option<usize>, to: usize, names: &mut BTreeSet<String>| {
        if let Some(from) = from {
            let ident = &text[from..to];
            if ident.starts_with("strongroom_") || ident.starts_with("process_") {
                names.insert(ident.to_owned());
            }
        }
    };
    while let Some((at, c)) = chars.next() {
        if let Some(q) = quote {
            if c == '\\' {
                chars.next();
            } else if c == q {
                quote = None;
            }
            continue;
        }
        if word(c) {
            // An identifier starts after a non-word character.
            start.get_or_insert(at);
            continue;
        }
        flush(start.take(), at, &mut names);
        if c == '"' || c == '\'' || c == '`' {
            quote = Some(c);
        }
    }
    flush(start, text.len(), &mut names);
    names
}

/// Names in `names` the page does not export; a histogram's `_bucket`,
/// `_sum` and `_count` series count as their family.
fn unknown_metrics(names: &BTreeSet<String>, exported: &BTreeMap<String, String>) -> Vec<String> {
    names
        .iter()
        .filter(|name| !exported.contains_key(name.as_str()) && !histogram_series(name, exported))
        .cloned()
        .collect()
}

/// Whether `name` is a `_bucket`, `_sum` or `_count` series of an exported
/// histogram.
fn histogram_series(name: &str, exported: &BTreeMap<String, String>) -> bool {
    ["_bucket", "_sum", "_count"]
        .iter()
        .filter_map(|suffix| name.strip_suffix(suffix))
        .any(|family| exported.get(family).is_some_and(|kind| kind == "histogram"))
}

/// Every query in the dashboard: targets' `expr`, and the template
/// variables' queries.
fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    fn walk(value: &Value, key: Option<&str>, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    walk(v, Some(k), out);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, key, out)),
            Value::String(text) if matches!(key, Some("expr" | "query" | "definition")) => {
                out.push(text.clone());
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, None, &mut out);
    out
}

fn dashboard() -> Value {
    serde_json::from_str(&read_example("grafana-dashboard.json"))
        .expect("grafana-dashboard.json is JSON")
}

// ---- tests ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_live_metrics_page() {
    let promtool = tool("promtool");
    let busy = busy_server().await;
    let page = metrics_page(&busy.server).await;
    // The traffic reached the page.
    assert!(
        page.contains(
            r#"strongroom_http_requests_total{listener="public",method="GET",route="object",status="404"} 1"#
        ),
        "{page}"
    );
    assert!(page.contains("strongroom_sandbox_traps_total{"), "{page}");

    let ran = tokio::task::spawn_blocking(move || {
        run(
            Command::new(&promtool).args(["check", "metrics"]),
            page.as_bytes(),
            TOOL_TIMEOUT,
        )
    })
    .await
    .expect("promtool ran");
    // promtool prints each lint problem and exits non-zero; fail on any.
    assert!(
        ran.status.success(),
        "promtool check metrics: {}\n{}",
        ran.status,
        ran.output()
    );
    assert!(
        ran.stdout.trim().is_empty() && ran.stderr.trim().is_empty(),
        "promtool check metrics reported problems:\n{}",
        ran.output()
    );
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    let promtool = tool("promtool");
    let rules = example("alerts.yml");
    let tests = example("alerts.test.yml");
    let config = example("prometheus.yml");
    let ran = run_ok(
        &promtool,
        &["check", "rules", rules.to_str().expect("utf-8 path")],
    );
    assert!(ran.stdout.contains("SUCCESS"), "{}", ran.output());
    let ran = run_ok(
        &promtool,
        &["test", "rules", tests.to_str().expect("utf-8 path")],
    );
    assert!(ran.stdout.contains("SUCCESS"), "{}", ran.output());
    // The scrape config, with the rule file it names.
    let ran = run_ok(
        &promtool,
        &["check", "config", config.to_str().expect("utf-8 path")],
    );
    assert!(
        ran.stdout.contains("1 rule files found"),
        "{}",
        ran.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grafana_dashboard_only_uses_metrics_the_appliance_exports() {
    let busy = busy_server().await;
    let page = metrics_page(&busy.server).await;
    let exported = families(&page);

    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "strongroom");
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    assert_eq!(dashboard["__inputs"][0]["name"], "DS_PROMETHEUS");
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("template variables");
    assert!(
        variables
            .iter()
            .any(|v| v["name"] == "DS_PROMETHEUS" && v["type"] == "datasource"),
        "no DS_PROMETHEUS data source variable"
    );
    assert!(
        variables.iter().any(|v| v["name"] == "tenant"
            && v["definition"] == "label_values(strongroom_stored_bytes, tenant)"),
        "no tenant variable from strongroom_stored_bytes"
    );
    let panels = dashboard["panels"].as_array().expect("panels");
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let title = &panel["title"];
        assert_eq!(
            panel["datasource"]["uid"], "${DS_PROMETHEUS}",
            "panel {title}"
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(
            !targets.is_empty()
                && targets
                    .iter()
                    .all(|t| t["expr"].as_str().is_some_and(|e| !e.is_empty())),
            "panel {title} has a target without a query"
        );
    }

    let mut names = BTreeSet::new();
    for query in dashboard_queries(&dashboard) {
        names.extend(metric_names(&query));
    }
    // The panels the dashboard promises, by what they query.
    for family in [
        "strongroom_http_requests_total",
        "strongroom_http_request_duration_seconds_bucket",
        "strongroom_ingress_bytes_total",
        "strongroom_egress_bytes_total",
        "strongroom_uploads_active",
        "strongroom_upload_duration_seconds_bucket",
        "strongroom_finalize_duration_seconds_bucket",
        "strongroom_stored_bytes",
        "strongroom_staged_bytes",
        "strongroom_objects",
        "strongroom_plugin_verdicts_total",
        "strongroom_plugin_call_duration_seconds_bucket",
        "strongroom_sandbox_traps_total",
        "strongroom_rate_limited_total",
        "strongroom_quota_rejections_total",
        "strongroom_auth_failures_total",
        "strongroom_fsync_duration_seconds_bucket",
        "strongroom_audit_checkpoint_age_seconds",
        "strongroom_audit_records",
        "strongroom_data_dir_free_bytes",
        "strongroom_tls_certificate_expiry_timestamp_seconds",
        "process_resident_memory_bytes",
    ] {
        assert!(
            names.contains(family),
            "no dashboard panel queries {family}"
        );
    }
    let unknown = unknown_metrics(&names, &exported);
    assert!(
        unknown.is_empty(),
        "grafana-dashboard.json queries metrics /metrics does not export: {unknown:?}\n\
         exported: {:?}",
        exported.keys().collect::<Vec<_>>()
    );

    let rules = metric_names(&read_example("alerts.yml"));
    assert!(rules.len() >= 10, "alerts.yml names only {rules:?}");
    let unknown = unknown_metrics(&rules, &exported);
    assert!(
        unknown.is_empty(),
        "alerts.yml names metrics /metrics does not export: {unknown:?}"
    );
}

#[test]
fn the_example_policies_pass_policy_check() {
    let strongroom = PathBuf::from(env!("CARGO_BIN_EXE_strongroom"));
    for (name, plugins) in [("policy-strict.toml", 3), ("policy-permissive.toml", 1)] {
        let path = example(name);
        let ran = run_ok(
            &strongroom,
            &["policy", "check", path.to_str().expect("utf-8 path")],
        );
        assert_eq!(
            ran.stdout.matches("pin ok").count(),
            plugins,
            "{name}:\n{}",
            ran.output()
        );
        assert!(ran.stdout.contains(": ok ("), "{name}:\n{}", ran.output());
    }
}

// ---- a real Prometheus ----------------------------------------------------

/// Prometheus on a free loopback port, with its data and log in `dir`.
struct Prometheus {
    child: Guard,
    base: String,
    log: PathBuf,
}

impl Prometheus {
    /// Starts it and waits for /-/ready; retries on another port if the
    /// one picked was taken in between.
    async fn start(dir: &Path, config: &Path) -> Prometheus {
        let binary = tool("prometheus");
        for attempt in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let log = dir.join(format!("prometheus-{attempt}.log"));
            let out = std::fs::File::create(&log).expect("log file");
            let child = Guard(
                Command::new(&binary)
                    .arg(format!("--config.file={}", config.display()))
                    .arg(format!(
                        "--storage.tsdb.path={}",
                        dir.join(format!("data-{attempt}")).display()
                    ))
                    .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                    .stdin(Stdio::null())
                    .stdout(out.try_clone().expect("log fd"))
                    .stderr(out)
                    .spawn()
                    .expect("start prometheus"),
            );
            let mut prometheus = Prometheus {
                child,
                base: format!("http://127.0.0.1:{port}"),
                log,
            };
            match prometheus.wait_ready().await {
                Ok(()) => return prometheus,
                Err(log) if log.contains("address already in use") => continue,
                Err(log) => panic!("prometheus did not start:\n{log}"),
            }
        }
        panic!("prometheus found no free port in 3 attempts");
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + PROMETHEUS_TIMEOUT;
        loop {
            if let Ok(response) = http.get(format!("{}/-/ready", self.base)).send().await
                && response.status() == 200
            {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.0.try_wait() {
                return Err(format!("exited ({status}):\n{}", self.log_text()));
            }
            if Instant::now() >= deadline {
                return Err(format!("not ready in time:\n{}", self.log_text()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .query(query)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = response.status();
        let bytes = response.bytes().await.expect("API body");
        let body: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{path}: {e}: {}", String::from_utf8_lossy(&bytes)));
        assert!(
            status == 200 && body["status"] == "success",
            "{path} {query:?}: {status} {body}"
        );
        body["data"].clone()
    }

    async fn query(&self, promql: &str) -> Vec<Value> {
        self.api("/api/v1/query", &[("query", promql)]).await["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Polls `promql` until `done` accepts its result.
    async fn eventually(&self, promql: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + PROMETHEUS_TIMEOUT;
        loop {
            let result = self.query(promql).await;
            if done(&result) {
                return result;
            }
            assert!(
                Instant::now() < deadline,
                "{promql}: still {result:?} after {PROMETHEUS_TIMEOUT:?}\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

/// Unix seconds of an RFC 3339 time as Prometheus writes it
/// (`2026-05-01T12:00:00.123456789Z`, or with a `+02:00` offset).
fn rfc3339_seconds(text: &str) -> Option<f64> {
    let (date, time) = text.split_once('T')?;
    let mut ymd = date.splitn(3, '-').map(|n| n.parse::<i64>().ok());
    let (y, m, d) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let (clock, offset) = match time.strip_suffix('Z') {
        Some(clock) => (clock, 0),
        None => {
            let at = time.rfind(['+', '-'])?;
            let (h, min) = time[at + 1..].split_once(':')?;
            let sign = if time[at..].starts_with('-') { -1 } else { 1 };
            (
                &time[..at],
                sign * (h.parse::<i64>().ok()? * 3600 + min.parse::<i64>().ok()? * 60),
            )
        }
    };
    let mut hms = clock.splitn(3, ':');
    let (h, min): (i64, i64) = (hms.next()?.parse().ok()?, hms.next()?.parse().ok()?);
    let sec: f64 = hms.next()?.parse().ok()?;
    // Days since 1970-01-01 in the proleptic Gregorian calendar.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Some((days * 86_400 + h * 3600 + min * 60 - offset) as f64 + sec)
}

/// The one series of an instant vector, if its value is `value`.
fn single_value(result: &[Value], value: &str) -> bool {
    result.len() == 1 && result[0]["value"][1] == value
}

/// `text` with `from` (which must occur exactly once) replaced by `to`.
#[track_caller]
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "examples/prometheus.yml should contain `{from}` once"
    );
    text.replace(from, to)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_admin_listener() {
    let _ = tool("prometheus");
    let server = TestServer::start().await;
    let data = b"scraped by a real prometheus\n";
    server.upload(data).await;
    let admin = server.appliance().admin_addr.to_string();

    // examples/prometheus.yml with only the target and the intervals changed.
    let dir = tempfile::tempdir().expect("prometheus dir");
    let config = read_example("prometheus.yml");
    let config = replace_once(
        &config,
        "targets: [\"127.0.0.1:9090\"]",
        &format!("targets: [\"{admin}\"]"),
    );
    let config = replace_once(&config, "scrape_interval: 15s", "scrape_interval: 1s");
    let config = replace_once(
        &config,
        "evaluation_interval: 15s",
        "evaluation_interval: 1s",
    );
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).expect("config written");
    std::fs::copy(example("alerts.yml"), dir.path().join("alerts.yml")).expect("rules copied");

    let prometheus = Prometheus::start(dir.path(), &config_path).await;

    let up = prometheus
        .eventually(r#"up{job="strongroom"}"#, |r| single_value(r, "1"))
        .await;
    assert_eq!(up[0]["metric"]["instance"], admin.as_str());
    let requests = prometheus
        .eventually(
            r#"strongroom_http_requests_total{route="files",method="POST",status="201"}"#,
            |r| single_value(r, "1"),
        )
        .await;
    let labels = &requests[0]["metric"];
    assert_eq!(labels["job"], "strongroom");
    assert_eq!(labels["instance"], admin.as_str());
    assert_eq!(labels["listener"], "public");
    prometheus
        .eventually(r#"strongroom_stored_bytes{tenant="default"}"#, |r| {
            single_value(r, &data.len().to_string())
        })
        .await;
    // Evaluations that start after this moment see the appliance's series.
    let scraped = unix_now();

    // The rule groups of alerts.yml, loaded and evaluated without error.
    let rules_text = read_example("alerts.yml");
    let expected_groups: BTreeSet<String> = rules_text
        .lines()
        .filter_map(|line| line.strip_prefix("  - name: "))
        .map(|name| name.trim().to_owned())
        .collect();
    let expected_rules = rules_text
        .lines()
        .filter(|line| line.trim_start().starts_with("- alert: "))
        .count();
    assert!(expected_groups.len() >= 5, "{expected_groups:?}");
    let deadline = Instant::now() + PROMETHEUS_TIMEOUT;
    loop {
        let data = prometheus.api("/api/v1/rules", &[]).await;
        let groups = data["groups"].as_array().cloned().unwrap_or_default();
        let names: BTreeSet<String> = groups
            .iter()
            .filter_map(|g| g["name"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(names, expected_groups, "rule groups loaded");
        let rules: Vec<&Value> = groups
            .iter()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        assert_eq!(rules.len(), expected_rules, "alert rules loaded");
        for rule in &rules {
            assert_eq!(rule["type"], "alerting", "{rule}");
            assert_ne!(rule["health"], "err", "rule failed to evaluate: {rule}");
        }
        let evaluated_since_scrape = groups.iter().all(|g| {
            g["lastEvaluation"]
                .as_str()
                .and_then(rfc3339_seconds)
                .is_some_and(|at| at > scraped)
        });
        if evaluated_since_scrape && rules.iter().all(|rule| rule["health"] == "ok") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rule groups not all evaluated in time: {groups:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // A healthy appliance (no TLS, an idle audit log) trips no alert, not
    // even a pending one. (Disk space is the test machine's: not judged.)
    let alerts = prometheus.api("/api/v1/alerts", &[]).await;
    let tripped: Vec<&Value> = alerts["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter(|alert| alert["labels"]["alertname"] != "StrongroomDiskSpaceLow")
        .collect();
    assert!(
        tripped.is_empty(),
        "alerts on a healthy appliance: {tripped:?}"
    );

    // Every dashboard query is valid PromQL to this Prometheus, with the
    // dashboard's variables filled in.
    for query in dashboard_queries(&dashboard()) {
        if query == "prometheus" || query.starts_with("label_values(") {
            continue;
        }
        let promql = query
            .replace("$__rate_interval", "1m")
            .replace("$instance", ".*")
            .replace("$tenant", ".*");
        prometheus.query(&promql).await;
    }
}

#[test]
fn prometheus_times_are_read_as_unix_seconds() {
    assert_eq!(rfc3339_seconds("1970-01-01T00:00:00Z"), Some(0.0));
    assert_eq!(
        rfc3339_seconds("2026-05-01T12:00:00.5Z"),
        Some(1_777_636_800.5)
    );
    assert_eq!(
        rfc3339_seconds("2026-05-01T14:00:00.5+02:00"),
        Some(1_777_636_800.5)
    );
    assert_eq!(
        rfc3339_seconds("2000-02-29T00:00:00-01:00"),
        Some(951_786_000.0)
    );
    assert!(rfc3339_seconds("0001-01-01T00:00:00Z").is_some_and(|t| t < 0.0));
    assert_eq!(rfc3339_seconds("yesterday"), None);
}

#[test]
fn metric_names_are_read_outside_label_values() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le) (rate(strongroom_fsync_duration_seconds_bucket{file="strongroom_x"}[5m])))
           / on (instance) process_open_fds{job='process_y'} and strongroom:recorded"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "process_open_fds",
            "strongroom_fsync_duration_seconds_bucket"
        ]
    );
    let exported = BTreeMap::from([(
        "strongroom_fsync_duration_seconds".to_owned(),
        "histogram".to_owned(),
    )]);
    let asked = BTreeSet::from([
        "strongroom_fsync_duration_seconds_bucket".to_owned(),
        "strongroom_fsync_duration_seconds_total".to_owned(),
    ]);
    assert_eq!(
        unknown_metrics(&asked, &exported),
        ["strongroom_fsync_duration_seconds_total"]
    );
}
