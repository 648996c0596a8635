//! `strongroom plugin install | list | test`: the admin's side of the plugin
//! platform. Everything Wasm goes through `strongroom::sandbox` with the
//! appliance's own engine settings, so what installs here loads there and
//! what `test` reports is what an upload would get. Never edits a policy:
//! `install` prints the section to paste.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use bytesize::ByteSize;
use strongroom::cli::{InstallArgs, ListArgs, PluginCommand, TestArgs};
use strongroom::config::Config;
use strongroom::crypto::{Sha256, random_array};
use strongroom::sandbox::{
    Failure, FailureKind, FeedResult, InspectionStats, Outcome, Plugin, PluginLimits, PluginResult,
    PluginSpec, Sandbox, SandboxConfig, Severity, Summary, TenantStats, UploadMeta, Verdict,
};
use tokio::io::AsyncReadExt;

use super::hash_file;

/// Exit statuses of `plugin test`, one per verdict (documented in its
/// `--help`; 1 is any other error, 2 a usage error).
const EXIT_REJECT: u8 = 3;
const EXIT_QUARANTINE: u8 = 4;
const EXIT_PLUGIN_FAILED: u8 = 5;

/// The largest `.wasm` read into memory to validate: `install` takes the
/// component as one slice. Far above any inspector (ours are 100-300 KiB).
const MAX_WASM: u64 = 64 << 20;

/// The upload id plugins see under `plugin test`.
const TEST_UPLOAD_ID: &str = "plugin-test";

pub fn run(command: PluginCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::Install(args) => install(args),
        PluginCommand::List(args) => list(args),
        PluginCommand::Test(args) => test(args),
    }
}

// --- install -------------------------------------------------------------------

fn install(args: InstallArgs) -> anyhow::Result<ExitCode> {
    let name = match args.name {
        Some(name) => name,
        None => file_stem(&args.wasm)?,
    };
    check_name(&name)?;
    let wasm = read_wasm(&args.wasm)?;
    let sandbox = data_dir_sandbox(&args.data_dir)?;
    // Blocking (a cold compile takes about a second), and nothing else runs.
    let installed = sandbox.install(&wasm)?;

    let plugins = plugins_dir(&args.data_dir);
    let target = plugins.join(format!("{name}.wasm"));
    let replaced = hash_file(&target)
        .ok()
        .filter(|(sha256, _)| *sha256 != installed.sha256);
    write_atomically(&target, &wasm)?;
    let shown = fs::canonicalize(&target).unwrap_or(target);
    let pin = hex::encode(installed.sha256);

    println!("installed {name} as {}", shown.display());
    println!("sha256    {pin}");
    println!("imports   {}", installed.imports.join(", "));
    println!(
        "size      {} wasm, {} precompiled",
        ByteSize(installed.wasm_bytes as u64),
        ByteSize(installed.artifact_bytes as u64)
    );
    if installed.cached {
        println!(
            "artifact  cached (reused in {})",
            Elapsed(installed.elapsed)
        );
    } else {
        println!("artifact  compiled in {}", Elapsed(installed.elapsed));
    }
    if let Some((old, _)) = replaced {
        println!(
            "replaced  the previous {name}.wasm (sha256 {}): policies pinning it no longer load it",
            hex::encode(old)
        );
    }
    // A TOML string, so any path quotes correctly.
    let path = toml::Value::String(shown.to_string_lossy().into_owned());
    println!("\nPin it in a policy:\n\n[plugins.{name}]\npath = {path}\nsha256 = \"{pin}\"");
    Ok(ExitCode::SUCCESS)
}

/// A policy's rule for plugin names, checked before anything is compiled so
/// the section `install` prints always loads.
fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !valid {
        bail!("plugin name {name:?} is not 1 to 64 of [a-z0-9_-]; choose one with --name");
    }
    Ok(())
}

/// Writes `bytes` to a private temporary file beside `target`, syncs it and
/// renames it into place: the appliance never sees half a component.
fn write_atomically(target: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        target.file_name().unwrap_or_default().to_string_lossy(),
        hex::encode(random_array::<8>())
    ));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(bytes)?;
        // Readable by the appliance's user whatever the umask; only we write.
        file.set_permissions(fs::Permissions::from_mode(0o644))?;
        file.sync_all()?;
        fs::rename(&temp, target)?;
        fs::File::open(dir)?.sync_all()
    })();
    written.map_err(|err| {
        let _ = fs::remove_file(&temp);
        anyhow::Error::new(err).context(format!("cannot write {}", target.display()))
    })
}

// --- list ----------------------------------------------------------------------

fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let dir = plugins_dir(&args.data_dir);
    let installed = installed_plugins(&dir)?;
    if installed.is_empty() {
        println!("no plugins installed in {}", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let sandbox = data_dir_sandbox(&args.data_dir)?;
    let mut invalid = 0;
    for (name, path) in &installed {
        let wasm = read_wasm(path)?;
        let sha256 = hex::encode(strongroom::crypto::sha256(&wasm));
        let size = ByteSize(wasm.len() as u64).to_string();
        // A cache hit only maps the artifact; a miss compiles and caches it.
        let status = match sandbox.install(&wasm) {
            Ok(plugin) if plugin.cached => "artifact cached".to_owned(),
            Ok(plugin) => format!("artifact compiled now ({})", Elapsed(plugin.elapsed)),
            Err(err) => {
                invalid += 1;
                format!("invalid: {err}")
            }
        };
        println!("{name:<24} {sha256}  {size:>10}  {status}");
    }
    if invalid > 0 {
        eprintln!(
            "error: {invalid} of {} installed plugins are invalid",
            installed.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `(name, path)` of every `<dir>/*.wasm`, by name. A missing dir has none.
fn installed_plugins(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut plugins = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot list {}", dir.display()))?
            .path();
        let is_wasm = path.extension().is_some_and(|ext| ext == "wasm");
        if let Some(stem) = path.file_stem().and_then(|s| s.to_str())
            && is_wasm
            && path.is_file()
        {
            plugins.push((stem.to_owned(), path.clone()));
        }
    }
    plugins.sort();
    Ok(plugins)
}

// --- test ----------------------------------------------------------------------

fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let config_json = config_json(&args.config)?;
    let name = file_stem(&args.wasm)?;
    let (sha256, _) =
        hash_file(&args.wasm).with_context(|| format!("cannot read {}", args.wasm.display()))?;
    let sample_len = fs::metadata(&args.sample)
        .with_context(|| format!("cannot read {}", args.sample.display()))?
        .len();
    let defaults = PluginLimits::default();
    let limits = PluginLimits {
        deadline: args.deadline.unwrap_or(defaults.deadline),
        memory: args.memory.map_or(defaults.memory, |m| m.as_u64()),
        ..defaults
    };

    // Declared before the sandbox, so dropped (removed) after it.
    let scratch;
    let cache_dir = match &args.data_dir {
        Some(data_dir) => Config::default().plugins.cache_dir_in(data_dir),
        None => {
            scratch = ScratchDir::create()?;
            scratch.path().join("cache")
        }
    };
    let sandbox = Sandbox::new(SandboxConfig::new(cache_dir))?;
    let plugin = sandbox.load(PluginSpec {
        name: name.clone(),
        wasm: args.wasm.clone(),
        sha256,
        config_json,
        limits,
    })?;
    println!(
        "plugin    {name} (sha256 {}), {} in {}",
        hex::encode(sha256),
        if plugin.was_cached() {
            "cached artifact loaded"
        } else {
            "compiled"
        },
        Elapsed(plugin.load_time())
    );

    let meta_value = |key: &str| {
        args.meta
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let meta = UploadMeta {
        tenant: args.tenant.clone(),
        upload_id: TEST_UPLOAD_ID.to_owned(),
        declared_name: meta_value("filename"),
        declared_content_type: meta_value("filetype"),
        declared_length: Some(sample_len),
        attributes: args.meta.clone(),
    };
    // One upload, one task: a current-thread runtime is all it needs (the
    // plugin runs on the sandbox's own workers).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let run = runtime.block_on(inspect(&sandbox, &plugin, meta, &args.sample, args.chunk))?;
    println!(
        "sample    {}: {} bytes, sha256 {}",
        args.sample.display(),
        run.summary.total_bytes,
        hex::encode(run.summary.sha256)
    );
    println!(
        "fed       {} bytes in {} {} of up to {}{}",
        run.fed,
        run.chunks,
        if run.chunks == 1 { "chunk" } else { "chunks" },
        ByteSize(args.chunk as u64),
        match run.stopped {
            Stopped::No => "",
            Stopped::Enough => " (then the plugin had seen enough)",
            Stopped::Decided => " (then the plugin decided)",
            Stopped::Failed => " (then the plugin failed)",
        }
    );
    let code = report(&run.result, &limits);
    print_stats(&run.stats);
    Ok(code)
}

/// What streaming a sample through one inspection gave.
struct Run {
    result: PluginResult,
    summary: Summary,
    /// Bytes passed to the plugin, and in how many `feed` calls.
    fed: u64,
    chunks: u64,
    stopped: Stopped,
    stats: InspectionStats,
}

/// Whether the plugin saw the whole sample.
enum Stopped {
    No,
    /// It answered `Enough`: the rest was only hashed.
    Enough,
    /// It decided early (nothing more was read).
    Decided,
    /// It failed (nothing more was read).
    Failed,
}

/// Streams `sample` into a fresh inspection as the upload pipeline does:
/// fixed-size chunks in order, SHA-256 computed natively on the way, then
/// `finish` with the summary.
async fn inspect(
    sandbox: &Sandbox,
    plugin: &Arc<Plugin>,
    meta: UploadMeta,
    sample: &Path,
    chunk: usize,
) -> anyhow::Result<Run> {
    let read_error = || format!("cannot read {}", sample.display());
    let mut file = tokio::fs::File::open(sample)
        .await
        .with_context(read_error)?;
    let mut inspection = sandbox.start(plugin, meta, TenantStats::default()).await;
    let mut buffer = vec![0u8; chunk];
    let mut hasher = Sha256::new();
    let (mut total, mut fed, mut chunks) = (0u64, 0u64, 0u64);
    let mut stopped = Stopped::No;
    loop {
        let n = read_full(&mut file, &mut buffer)
            .await
            .with_context(read_error)?;
        if n == 0 {
            break;
        }
        let piece = &buffer[..n];
        hasher.update(piece);
        total += n as u64;
        if !matches!(stopped, Stopped::No) {
            continue;
        }
        fed += n as u64;
        chunks += 1;
        match inspection.feed(Bytes::copy_from_slice(piece)).await {
            FeedResult::NeedMore => {}
            FeedResult::Enough => stopped = Stopped::Enough,
            // `finish` repeats the decision or failure.
            FeedResult::Decided(_) => {
                stopped = Stopped::Decided;
                break;
            }
            FeedResult::Failed(_) => {
                stopped = Stopped::Failed;
                break;
            }
        }
    }
    let summary = Summary {
        total_bytes: total,
        sha256: hasher.finish(),
    };
    let result = inspection.finish(summary).await;
    Ok(Run {
        result,
        summary,
        fed,
        chunks,
        stopped,
        stats: inspection.stats(),
    })
}

/// Fills `buffer` unless the file ends first, so every chunk but the last
/// is exactly `--chunk` bytes.
async fn read_full(file: &mut tokio::fs::File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Prints the verdict or failure and chooses the exit status.
fn report(result: &PluginResult, limits: &PluginLimits) -> ExitCode {
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(failure) => {
            println!("verdict   failed: {}", describe_failure(failure, limits));
            return ExitCode::from(failure_status(&failure.kind));
        }
    };
    let Outcome {
        verdict,
        findings,
        labels,
    } = outcome;
    let code = match verdict {
        Verdict::Accept => {
            println!("verdict   accept");
            ExitCode::SUCCESS
        }
        Verdict::Reject { code, message } => {
            println!("verdict   reject ({code}): {message}");
            ExitCode::from(EXIT_REJECT)
        }
        Verdict::Quarantine(reason) => {
            println!("verdict   quarantine: {reason}");
            ExitCode::from(EXIT_QUARANTINE)
        }
    };
    for finding in findings {
        let at = finding
            .offset
            .map(|offset| format!(" at byte {offset}"))
            .unwrap_or_default();
        println!(
            "finding   {} ({}){at}: {}",
            finding.rule,
            severity_name(finding.severity),
            finding.detail
        );
    }
    for (key, value) in labels {
        println!("label     {key} = {value}");
    }
    code
}

fn describe_failure(failure: &Failure, limits: &PluginLimits) -> String {
    match &failure.kind {
        FailureKind::Timeout => format!(
            "timed out (a call ran past its {} deadline)",
            humantime::format_duration(limits.deadline)
        ),
        FailureKind::MemoryLimit => format!("hit its memory cap of {}", ByteSize(limits.memory)),
        other => other.to_string(),
    }
}

/// The plugin's own failures are exit 5; the host's (no slot, a lost
/// worker) are errors like any other.
fn failure_status(kind: &FailureKind) -> u8 {
    match kind {
        FailureKind::Trap(_)
        | FailureKind::Timeout
        | FailureKind::MemoryLimit
        | FailureKind::FuelExhausted
        | FailureKind::Panic(_)
        | FailureKind::Instantiation(_) => EXIT_PLUGIN_FAILED,
        FailureKind::Busy | FailureKind::Lost(_) => 1,
    }
}

fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "info",
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

fn print_stats(stats: &InspectionStats) {
    println!(
        "stats     {} calls, {} busy, {} log lines ({} dropped)",
        stats.calls,
        Elapsed(stats.busy),
        stats.log_lines,
        stats.log_dropped
    );
}

/// `--config`: a JSON object inline, or `@FILE` holding one. Checked here so
/// a typo is a usage error, not a plugin failure.
fn config_json(raw: &str) -> anyhow::Result<String> {
    let (text, source) = match raw.strip_prefix('@') {
        Some(path) => (
            fs::read_to_string(path).with_context(|| format!("cannot read --config {path}"))?,
            path,
        ),
        None => (raw.to_owned(), "--config"),
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{source} is not valid JSON"))?;
    if !value.is_object() {
        bail!("{source} must be a JSON object (the plugin's config table)");
    }
    Ok(value.to_string())
}

/// A private directory for a throwaway artifact cache, removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn create() -> anyhow::Result<ScratchDir> {
        let path = std::env::temp_dir().join(format!(
            "strongroom-plugin-test-{}",
            hex::encode(random_array::<8>())
        ));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(ScratchDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

// --- shared ----------------------------------------------------------------------

fn plugins_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("plugins")
}

/// The engine the appliance would build for this data dir, on its artifact
/// cache, so what `install` compiles is what the appliance later maps.
fn data_dir_sandbox(data_dir: &Path) -> anyhow::Result<Sandbox> {
    let cache_dir = Config::default().plugins.cache_dir_in(data_dir);
    Ok(Sandbox::new(SandboxConfig::new(cache_dir))?)
}

fn read_wasm(path: &Path) -> anyhow::Result<Vec<u8>> {
    let context = || format!("cannot read {}", path.display());
    let len = fs::metadata(path).with_context(context)?.len();
    if len > MAX_WASM {
        bail!(
            "{} is {}, larger than any plugin we accept ({})",
            path.display(),
            ByteSize(len),
            ByteSize(MAX_WASM)
        );
    }
    fs::read(path).with_context(context)
}

fn file_stem(path: &Path) -> anyhow::Result<String> {
    path.file_stem()
        .and_then(|stem| stem.to_str())
        .map(str::to_owned)
        .with_context(|| format!("cannot name a plugin after {}", path.display()))
}

/// A duration as people read it: `850ms`, `1.2s`, `37µs`.
struct Elapsed(Duration);

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = self.0;
        if d >= Duration::from_secs(1) {
            write!(f, "{:.1}s", d.as_secs_f64())
        } else if d >= Duration::from_millis(1) {
            write!(f, "{}ms", d.as_millis())
        } else {
            write!(f, "{}µs", d.as_micros())
        }
    }
}
