//! The plugin sandbox against real components: the plugins and hostile cases
//! `plugins/build.sh` builds into `plugins/dist/`. Timings are printed, never
//! asserted (run with `--nocapture` to see them).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use ring::signature::{Ed25519KeyPair, KeyPair};
use strongroom::sandbox::{
    Error, FailureKind, FeedResult, Inspection, Plugin, PluginLimits, PluginSpec, Sandbox,
    SandboxConfig, Summary, TenantStats, UploadMeta, Verdict,
};

const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

fn dist(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plugins/dist");
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run plugins/build.sh first (it builds the plugins these tests load)",
        path.display()
    );
    path
}

struct Bench {
    sandbox: Sandbox,
    cache: tempfile::TempDir,
}

fn bench() -> Bench {
    bench_with(|_| {})
}

fn bench_with(adjust: impl FnOnce(&mut SandboxConfig)) -> Bench {
    let cache = tempfile::tempdir().expect("temp dir");
    let mut config = SandboxConfig::new(cache.path().join("plugins"));
    config.max_inspections = 16;
    config.max_memory = 128 << 20;
    adjust(&mut config);
    Bench {
        sandbox: Sandbox::new(config).expect("sandbox"),
        cache,
    }
}

fn spec(name: &str, limits: PluginLimits, config_json: &str) -> PluginSpec {
    let wasm = dist(name);
    let bytes = std::fs::read(&wasm).unwrap();
    PluginSpec {
        name: name.into(),
        wasm,
        sha256: strongroom::crypto::sha256(&bytes),
        config_json: config_json.into(),
        limits,
    }
}

impl Bench {
    fn load(&self, name: &str) -> Arc<Plugin> {
        self.load_with(name, PluginLimits::default(), "{}")
    }

    fn load_with(&self, name: &str, limits: PluginLimits, config_json: &str) -> Arc<Plugin> {
        self.sandbox
            .load(spec(name, limits, config_json))
            .unwrap_or_else(|err| panic!("loading {name}: {err}"))
    }

    async fn start(&self, plugin: &Arc<Plugin>, upload: &str) -> Inspection {
        self.sandbox
            .start(plugin, meta(upload), TenantStats::default())
            .await
    }
}

fn meta(upload: &str) -> UploadMeta {
    UploadMeta {
        tenant: "acme".into(),
        upload_id: upload.into(),
        declared_name: Some("notes.txt".into()),
        declared_content_type: Some("text/plain".into()),
        ..UploadMeta::default()
    }
}

fn summary(data: &[u8]) -> Summary {
    Summary {
        total_bytes: data.len() as u64,
        sha256: strongroom::crypto::sha256(data),
    }
}

fn text(len: usize) -> Vec<u8> {
    b"the quick brown fox jumps over the lazy dog\n"
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

/// Feeds `data` in `chunk`-sized pieces until the plugin stops wanting more.
async fn feed_all(inspection: &mut Inspection, data: &[u8], chunk: usize) -> FeedResult {
    let data = Bytes::copy_from_slice(data);
    let mut last = FeedResult::NeedMore;
    for start in (0..data.len()).step_by(chunk) {
        let end = (start + chunk).min(data.len());
        last = inspection.feed(data.slice(start..end)).await;
        if !matches!(last, FeedResult::NeedMore) {
            break;
        }
    }
    last
}

fn failure_kind(result: FeedResult) -> FailureKind {
    match result {
        FeedResult::Failed(failure) => failure.kind,
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// Starts capturing plugin log lines (target `strongroom::plugin`) for the
/// whole test binary. Call before the plugin runs.
fn capture_plugin_logs() -> &'static Mutex<Vec<u8>> {
    static CAPTURED: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        use tracing_subscriber::layer::SubscriberExt;
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buffer);
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || Capture(Arc::clone(&sink)));
        let filter = tracing_subscriber::filter::Targets::new()
            .with_target("strongroom::plugin", tracing::Level::TRACE);
        let subscriber = tracing_subscriber::registry().with(layer).with(filter);
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other test installs a global subscriber");
        buffer
    })
}

/// The captured plugin log lines of one upload.
fn plugin_logs(upload: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(&capture_plugin_logs().lock().unwrap()).into_owned();
    text.lines()
        .filter(|line| line.contains(&format!("upload={upload}")))
        .map(str::to_owned)
        .collect()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_default_config_builds_an_engine() {
    // 256 slots of 4 GiB address space each: reserved, not committed.
    let cache = tempfile::tempdir().expect("temp dir");
    let sandbox = Sandbox::new(SandboxConfig::new(cache.path())).expect("sandbox");
    drop(sandbox);
}

// --- install -----------------------------------------------------------------

#[test]
fn install_rejects_what_is_not_a_component() {
    let bench = bench();
    let core_module = b"\0asm\x01\0\0\0";
    let err = bench.sandbox.install(core_module).unwrap_err();
    assert!(matches!(err, Error::NotAComponent { .. }), "{err}");
    assert!(err.to_string().contains("core WebAssembly module"), "{err}");

    let err = bench.sandbox.install(b"#!/bin/sh\nrm -rf /\n").unwrap_err();
    assert!(matches!(err, Error::NotAComponent { .. }), "{err}");
}

#[test]
fn install_rejects_a_forbidden_import() {
    let bench = bench();
    let wasm = std::fs::read(dist("hostile-forbidden-import")).unwrap();
    let err = bench.sandbox.install(&wasm).unwrap_err();
    match &err {
        Error::ForbiddenImport { import } => assert_eq!(import, "strongroom:evil/net@0.1.0"),
        other => panic!("expected a forbidden import, got {other}"),
    }
    // Nothing is cached for a refused component.
    let artifacts = walk_files(bench.cache.path());
    assert!(artifacts.is_empty(), "{artifacts:?}");
}

#[test]
fn install_accepts_a_plugin_and_reports_it() {
    let bench = bench();
    let wasm = std::fs::read(dist("content-inspector")).unwrap();
    let installed = bench.sandbox.install(&wasm).expect("install");
    assert_eq!(installed.sha256, strongroom::crypto::sha256(&wasm));
    assert_eq!(installed.wasm_bytes, wasm.len());
    assert!(!installed.cached);
    assert!(
        installed
            .imports
            .iter()
            .all(|i| i.starts_with("strongroom:plugin/host@0.1.")
                || i.starts_with("strongroom:plugin/types@0.1.")),
        "{:?}",
        installed.imports
    );
    let again = bench.sandbox.install(&wasm).expect("install again");
    assert!(again.cached);
    println!(
        "install content-inspector ({} KiB wasm, {} KiB artifact): compile {:?}, cached {:?}",
        installed.wasm_bytes >> 10,
        installed.artifact_bytes >> 10,
        installed.elapsed,
        again.elapsed
    );
}

// --- load ----------------------------------------------------------------------

#[test]
fn load_refuses_a_pin_mismatch() {
    let bench = bench();
    let mut pinned = spec("content-inspector", PluginLimits::default(), "{}");
    pinned.sha256[0] ^= 0xff;
    let err = bench.sandbox.load(pinned).unwrap_err();
    let Error::Plugin { name, source } = &err else {
        panic!("expected a plugin error, got {err}");
    };
    assert_eq!(name, "content-inspector");
    assert!(matches!(**source, Error::PinMismatch { .. }), "{err}");
    assert!(err.to_string().contains("the policy pins"), "{err}");
}

#[test]
fn load_refuses_a_memory_cap_above_the_sandbox_maximum() {
    let bench = bench();
    let limits = PluginLimits {
        memory: 1 << 30,
        ..PluginLimits::default()
    };
    let err = bench
        .sandbox
        .load(spec("content-inspector", limits, "{}"))
        .unwrap_err();
    assert!(err.to_string().contains("memory cap"), "{err}");
}

#[test]
fn precompiled_artifact_is_reused_across_restarts() {
    let bench = bench();
    let cold = bench.load("content-inspector");
    assert!(!cold.was_cached());

    // A second engine with the same settings (an appliance restart) maps the
    // artifact instead of compiling.
    let mut config = SandboxConfig::new(bench.cache.path().join("plugins"));
    config.max_inspections = 16;
    config.max_memory = 128 << 20;
    let restarted = Sandbox::new(config).expect("sandbox");
    let warm = restarted
        .load(spec("content-inspector", PluginLimits::default(), "{}"))
        .expect("load");
    assert!(warm.was_cached());
    println!(
        "load content-inspector: cold {:?} (compile), cached {:?}",
        cold.load_time(),
        warm.load_time()
    );

    let artifacts = walk_files(bench.cache.path());
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    let artifact = &artifacts[0];
    assert!(
        artifact
            .to_string_lossy()
            .ends_with(&format!("{}.cwasm", hex::encode(cold.sha256()))),
        "{}",
        artifact.display()
    );
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(artifact), 0o600);
    assert_eq!(mode(artifact.parent().unwrap()), 0o700);

    // Native code someone else could have written is never loaded.
    std::fs::set_permissions(artifact, std::fs::Permissions::from_mode(0o666)).unwrap();
    let err = restarted
        .load(spec("content-inspector", PluginLimits::default(), "{}"))
        .unwrap_err();
    assert!(err.to_string().contains("refusing to use it"), "{err}");
}

fn walk_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}

// --- inspections -----------------------------------------------------------------

#[tokio::test]
async fn an_accepting_plugin_returns_its_outcome() {
    let bench = bench();
    let plugin = bench.load("content-inspector");
    let data = text(3 << 20);
    let mut inspection = bench.start(&plugin, "accepting").await;
    assert_eq!(
        feed_all(&mut inspection, &data, 64 << 10).await,
        FeedResult::NeedMore
    );
    let outcome = inspection.finish(summary(&data)).await.expect("outcome");
    assert_eq!(outcome.verdict, Verdict::Accept);
    assert!(
        outcome
            .labels
            .iter()
            .any(|(key, value)| key == "detected-type" && value == "text"),
        "{:?}",
        outcome.labels
    );
    // Instantiation + 48 feeds + finish.
    assert_eq!(inspection.stats().calls, 1 + 48 + 1);
    // The instance is gone; asking again repeats the answer.
    assert_eq!(inspection.finish(summary(&data)).await, Ok(outcome));
}

#[tokio::test]
async fn the_plugin_sees_every_byte_up_to_a_late_signature() {
    let bench = bench();
    let plugin = bench.load("content-inspector");
    let mut data = text(2 << 20);
    // Straddles a chunk boundary near the end.
    let at = (2 << 20) - (64 << 10) - 30;
    data[at..at + EICAR.len()].copy_from_slice(EICAR);
    let mut inspection = bench.start(&plugin, "late-signature").await;
    let FeedResult::Decided(outcome) = feed_all(&mut inspection, &data, 64 << 10).await else {
        panic!("expected an early decision");
    };
    assert!(
        matches!(&outcome.verdict, Verdict::Reject { code, .. } if code == "malware-signature"),
        "{outcome:?}"
    );
    assert_eq!(outcome.findings[0].offset, Some(at as u64));
    // Decided: later calls repeat it without touching Wasm.
    let calls = inspection.stats().calls;
    assert_eq!(
        inspection.feed(Bytes::from_static(b"more")).await,
        FeedResult::Decided(outcome.clone())
    );
    assert_eq!(inspection.finish(summary(&data)).await, Ok(outcome));
    assert_eq!(inspection.stats().calls, calls);
}

#[tokio::test]
async fn host_imports_verify_a_signature_with_the_policy_config() {
    let bench = bench();
    let pair = Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let config = format!(
        r#"{{"trusted_keys": {{"release": "{}"}}, "required": true}}"#,
        b64.encode(pair.public_key().as_ref())
    );
    let plugin = bench.load_with("provenance", PluginLimits::default(), &config);
    let data = text(100_000);
    let statement = format!(
        "strongroom-provenance-v1\n{}\n{}\n",
        hex::encode(strongroom::crypto::sha256(&data)),
        data.len()
    );
    let signature = b64.encode(pair.sign(statement.as_bytes()).as_ref());

    for (upload, signed_len, verdict) in [
        ("signed", data.len(), "verified"),
        ("tampered", data.len() - 1, "invalid"),
    ] {
        let mut meta = meta(upload);
        meta.attributes = vec![
            ("signer".into(), "release".into()),
            ("signature".into(), signature.clone()),
        ];
        let mut inspection = bench
            .sandbox
            .start(&plugin, meta, TenantStats::default())
            .await;
        assert_eq!(
            feed_all(&mut inspection, &data, 64 << 10).await,
            FeedResult::Enough
        );
        let outcome = inspection
            .finish(summary(&data[..signed_len]))
            .await
            .expect("outcome");
        assert!(
            outcome
                .labels
                .contains(&("provenance".into(), verdict.into())),
            "{upload}: {outcome:?}"
        );
    }
}

#[tokio::test]
async fn an_infinite_loop_times_out_near_its_deadline() {
    let bench = bench();
    let deadline = Duration::from_millis(200);
    let limits = PluginLimits {
        deadline,
        ..PluginLimits::default()
    };
    let plugin = bench.load_with("hostile-loop", limits, "{}");
    let mut inspection = bench.start(&plugin, "loop").await;
    let started = Instant::now();
    let kind = failure_kind(inspection.feed(Bytes::from(text(64 << 10))).await);
    let took = started.elapsed();
    println!("hostile-loop stopped after {took:?} (deadline {deadline:?})");
    assert_eq!(kind, FailureKind::Timeout);
    assert!(took >= deadline - Duration::from_millis(20), "{took:?}");
    assert!(took < deadline + Duration::from_secs(2), "{took:?}");

    // The store is gone: the same failure, at once, without Wasm.
    let calls = inspection.stats().calls;
    let started = Instant::now();
    assert_eq!(
        failure_kind(inspection.feed(Bytes::from_static(b"x")).await),
        FailureKind::Timeout
    );
    assert_eq!(
        inspection.finish(summary(b"x")).await.unwrap_err().kind,
        FailureKind::Timeout
    );
    assert!(started.elapsed() < Duration::from_millis(50));
    assert_eq!(inspection.stats().calls, calls);
}

#[tokio::test]
async fn fuel_is_the_backstop_when_the_deadline_is_far() {
    let bench = bench();
    let limits = PluginLimits {
        deadline: Duration::from_secs(60),
        fuel: 50_000_000,
        ..PluginLimits::default()
    };
    let plugin = bench.load_with("hostile-loop", limits, "{}");
    let mut inspection = bench.start(&plugin, "fuel").await;
    let kind = failure_kind(inspection.feed(Bytes::from(text(1024))).await);
    assert_eq!(kind, FailureKind::FuelExhausted);
}

#[tokio::test]
async fn a_memory_bomb_hits_its_cap() {
    let bench = bench();
    let limits = PluginLimits {
        memory: 32 << 20,
        ..PluginLimits::default()
    };
    let plugin = bench.load_with("hostile-memory", limits, "{}");
    let mut inspection = bench.start(&plugin, "memory").await;
    let kind = failure_kind(inspection.feed(Bytes::from(text(1024))).await);
    assert_eq!(kind, FailureKind::MemoryLimit);
    assert_eq!(
        inspection.finish(summary(b"")).await.unwrap_err().kind,
        FailureKind::MemoryLimit
    );
}

#[tokio::test]
async fn a_panic_is_a_failure_with_its_message_logged() {
    capture_plugin_logs();
    let bench = bench();
    let plugin = bench.load("hostile-panic");
    let mut inspection = bench.start(&plugin, "panicking").await;
    let kind = failure_kind(inspection.feed(Bytes::from(text(64 << 10))).await);
    let FailureKind::Panic(message) = &kind else {
        panic!("expected a panic, got {kind:?}");
    };
    assert!(
        message.contains("hostile-panic: refusing a chunk of 65536 bytes"),
        "{message}"
    );
    assert!(message.contains("src/lib.rs"), "{message}");

    let logs = plugin_logs("panicking");
    assert!(
        logs.iter().any(|line| line.contains("ERROR")
            && line.contains("plugin=hostile-panic")
            && line.contains("plugin panicked at")),
        "{logs:#?}"
    );
}

#[tokio::test]
async fn log_spam_is_truncated_and_rate_limited() {
    capture_plugin_logs();
    let bench = bench();
    let plugin = bench.load("hostile-log-spam");
    let mut inspection = bench.start(&plugin, "spam").await;
    let started = Instant::now();
    assert_eq!(
        inspection.feed(Bytes::from(text(1024))).await,
        FeedResult::Enough
    );
    let took = started.elapsed();
    let outcome = inspection.finish(summary(b"")).await.expect("outcome");
    assert!(
        outcome
            .labels
            .contains(&("messages-logged".into(), "256".into()))
    );

    let stats = inspection.stats();
    println!("log spam (256 x 1 MB) handled in {took:?}: {stats:?}");
    assert!(stats.log_lines <= 100, "{stats:?}");
    assert!(stats.log_bytes <= 64 << 10, "{stats:?}");
    assert_eq!(stats.log_lines + stats.log_dropped, 256, "{stats:?}");

    let logs = plugin_logs("spam");
    let spam: Vec<_> = logs
        .iter()
        .filter(|line| line.contains("spam spam"))
        .collect();
    assert_eq!(spam.len(), stats.log_lines as usize);
    assert!(
        spam.iter().all(|line| line.len() < 1300),
        "a line was not truncated"
    );
    assert!(spam[0].contains("more bytes]"), "{}", spam[0]);
    assert_eq!(
        logs.iter()
            .filter(|line| line.contains("log limit reached"))
            .count(),
        1,
        "{logs:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_inspection_does_not_disturb_the_others() {
    let bench = bench();
    let inspector = bench.load("content-inspector");
    let looping = bench.load_with(
        "hostile-loop",
        PluginLimits {
            deadline: Duration::from_millis(300),
            ..PluginLimits::default()
        },
        "{}",
    );
    let panicking = bench.load("hostile-panic");
    let data = Arc::new(text(1 << 20));

    let mut tasks = Vec::new();
    for (index, plugin) in [
        &looping, &panicking, &inspector, &inspector, &inspector, &inspector,
    ]
    .into_iter()
    .enumerate()
    {
        let mut inspection = bench.start(plugin, &format!("isolation-{index}")).await;
        let data = Arc::clone(&data);
        tasks.push(tokio::spawn(async move {
            match feed_all(&mut inspection, &data, 64 << 10).await {
                FeedResult::Failed(failure) => Err(failure.kind),
                _ => inspection.finish(summary(&data)).await.map_err(|f| f.kind),
            }
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    assert_eq!(results[0], Err(FailureKind::Timeout));
    assert!(
        matches!(results[1], Err(FailureKind::Panic(_))),
        "{:?}",
        results[1]
    );
    for result in &results[2..] {
        assert_eq!(result.as_ref().map(|o| &o.verdict), Ok(&Verdict::Accept));
    }

    // And the same plugins still work for the next upload.
    let next = bench.start(&looping, "isolation-next").await;
    assert!(next.failure().is_none());
    let mut next = bench.start(&inspector, "isolation-after").await;
    assert_eq!(
        feed_all(&mut next, &data, 1 << 20).await,
        FeedResult::NeedMore
    );
    assert!(next.finish(summary(&data)).await.is_ok());
}

#[tokio::test]
async fn a_full_sandbox_answers_busy_until_a_slot_frees() {
    let bench = bench_with(|config| config.max_inspections = 2);
    let plugin = bench.load("content-inspector");
    let mut first = bench.start(&plugin, "busy-1").await;
    let second = bench.start(&plugin, "busy-2").await;
    assert!(first.failure().is_none() && second.failure().is_none());
    let third = bench.start(&plugin, "busy-3").await;
    assert_eq!(
        third.failure().map(|f| f.kind.clone()),
        Some(FailureKind::Busy)
    );
    // A finished inspection frees its slot on a worker once its answer is
    // out, and a dropped one likewise: both shortly after, never at once.
    first.finish(summary(b"")).await.expect("outcome");
    let fourth = start_once_a_slot_frees(&bench, &plugin, "busy-4").await;
    assert!(fourth.failure().is_none(), "{fourth:?}");
    drop(second);
    let fifth = start_once_a_slot_frees(&bench, &plugin, "busy-5").await;
    assert!(fifth.failure().is_none(), "{fifth:?}");
    // Both slots are taken again: the sandbox is still capped at two.
    let sixth = bench.start(&plugin, "busy-6").await;
    assert_eq!(
        sixth.failure().map(|f| f.kind.clone()),
        Some(FailureKind::Busy)
    );
}

/// Starts an inspection, retrying for up to half a second while the sandbox
/// answers busy (a freed slot is released on a worker, asynchronously).
async fn start_once_a_slot_frees(bench: &Bench, plugin: &Arc<Plugin>, upload: &str) -> Inspection {
    let mut inspection = bench.start(plugin, upload).await;
    for _ in 0..100 {
        if inspection.failure().map(|f| &f.kind) != Some(&FailureKind::Busy) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        inspection = bench.start(plugin, upload).await;
    }
    inspection
}

#[tokio::test]
async fn a_cancelled_call_loses_the_instance() {
    let bench = bench();
    let limits = PluginLimits {
        deadline: Duration::from_millis(200),
        ..PluginLimits::default()
    };
    let plugin = bench.load_with("hostile-loop", limits, "{}");
    let mut inspection = bench.start(&plugin, "cancelled").await;
    let feed = inspection.feed(Bytes::from_static(b"x"));
    assert!(
        tokio::time::timeout(Duration::from_millis(20), feed)
            .await
            .is_err()
    );
    let kind = failure_kind(inspection.feed(Bytes::from_static(b"x")).await);
    assert!(matches!(kind, FailureKind::Lost(_)), "{kind:?}");
}

// --- costs (printed) ------------------------------------------------------------------

#[tokio::test]
async fn measure_instantiation_and_feed_costs() {
    let bench = bench();

    // Instantiation alone, with a constructor that does nothing.
    let trivial = bench.load("hostile-loop");
    let rounds = 200u32;
    let (mut wall, mut worker) = (Duration::ZERO, Duration::ZERO);
    for round in 0..rounds {
        let t = Instant::now();
        let inspection = bench
            .start(&trivial, &format!("measure-bare-{round}"))
            .await;
        wall += t.elapsed();
        worker += inspection.stats().busy;
    }
    println!(
        "instantiate (trivial constructor): {:.1} µs on-worker, {:.1} µs incl. pool hop",
        micros(worker / rounds),
        micros(wall / rounds)
    );

    // Per upload with a real plugin: instantiate + constructor, one small
    // feed, finish.
    let plugin = bench.load("content-inspector");
    let small = text(1000);
    let mut start_total = Duration::ZERO;
    let mut worker_total = Duration::ZERO;
    let started = Instant::now();
    for round in 0..rounds {
        let t = Instant::now();
        let mut inspection = bench.start(&plugin, &format!("measure-{round}")).await;
        start_total += t.elapsed();
        inspection.feed(Bytes::copy_from_slice(&small)).await;
        inspection.finish(summary(&small)).await.expect("outcome");
        worker_total += inspection.stats().busy;
    }
    let per_upload = started.elapsed() / rounds;
    println!(
        "per upload: start {:.1} µs (incl. pool hop), whole upload {:.1} µs, on-worker {:.1} µs",
        micros(start_total / rounds),
        micros(per_upload),
        micros(worker_total / rounds)
    );

    for chunk in [64usize << 10, 1 << 20] {
        let data = Bytes::from(text(32 << 20));
        let mut inspection = bench
            .start(&plugin, &format!("measure-chunk-{chunk}"))
            .await;
        let before = inspection.stats().busy;
        let t = Instant::now();
        let mut chunks = 0u32;
        for start in (0..data.len()).step_by(chunk) {
            let result = inspection.feed(data.slice(start..start + chunk)).await;
            assert_eq!(result, FeedResult::NeedMore);
            chunks += 1;
        }
        let wall = t.elapsed();
        let busy = inspection.stats().busy - before;
        println!(
            "feed {} KiB chunks: {:.1} µs per chunk ({:.1} on-worker), {:.0} MB/s",
            chunk >> 10,
            micros(wall / chunks),
            micros(busy / chunks),
            data.len() as f64 / wall.as_secs_f64() / 1e6
        );
    }
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}
