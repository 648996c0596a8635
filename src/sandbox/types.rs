//! The sandbox's own vocabulary. Callers see only these types, never
//! wasmtime's or the generated bindings'.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How the appliance's one engine is sized. `max_inspections` and
/// `max_memory` size the pooling allocator, so they bound what any policy can
/// later ask for.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Where precompiled artifacts live. Created 0700; artifacts are 0600.
    /// Native code is loaded from here, so nothing else may write to it.
    pub cache_dir: PathBuf,
    /// Inspections alive at once, across all plugins. Each holds one
    /// instance slot (virtual address space, no memory until used) from
    /// `start` until it finishes, fails or is dropped.
    pub max_inspections: u32,
    /// The largest memory cap a plugin may be loaded with.
    pub max_memory: u64,
    /// Threads running plugin calls. Wasm never runs on the reactor.
    pub workers: usize,
    /// Calls waiting for a worker before callers wait in turn.
    pub queue_depth: usize,
    /// Granularity of deadlines: a call that overruns is stopped within one
    /// tick after its deadline.
    pub epoch_tick: Duration,
}

impl SandboxConfig {
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        SandboxConfig {
            cache_dir: cache_dir.into(),
            max_inspections: 256,
            max_memory: 256 << 20,
            workers: cores.max(2),
            // Enough to keep every worker busy while callers refill it; more
            // would only hide overload behind latency.
            queue_depth: 64,
            epoch_tick: Duration::from_millis(10),
        }
    }
}

/// Per-plugin resource limits, from the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    /// Wall-clock time one call (instantiate + constructor, one `feed`,
    /// `finish`) may take.
    pub deadline: Duration,
    /// Linear memory cap in bytes.
    pub memory: u64,
    /// Fuel (roughly, Wasm instructions) one call may burn. A backstop: the
    /// deadline should fire first.
    pub fuel: u64,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            deadline: Duration::from_secs(1),
            memory: 64 << 20,
            // About 5-10 s of straight-line Wasm: well past the deadline, so
            // it only matters if the epoch ticker were ever stuck.
            fuel: 10_000_000_000,
        }
    }
}

/// What the policy says to load.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// The policy's name for it; used in logs and failures.
    pub name: String,
    /// The admin-supplied `.wasm` component.
    pub wasm: PathBuf,
    /// The pin: loading fails unless the file's SHA-256 is exactly this.
    pub sha256: [u8; 32],
    /// Handed to the plugin verbatim by the `config` import.
    pub config_json: String,
    pub limits: PluginLimits,
}

/// What `Sandbox::install` learned about a component, independent of any
/// name a policy gives it.
#[derive(Debug, Clone)]
pub struct InstalledPlugin {
    pub sha256: [u8; 32],
    pub wasm_bytes: usize,
    pub artifact_bytes: usize,
    /// The component's imports, e.g. `strongroom:plugin/host@0.1.0`.
    pub imports: Vec<String>,
    /// Whether a precompiled artifact was already in the cache.
    pub cached: bool,
    /// Time spent validating and compiling (or loading the cached artifact).
    pub elapsed: Duration,
}

/// What the client declared for the upload. The plugin checks content
/// against it; nothing here is trusted.
#[derive(Debug, Clone, Default)]
pub struct UploadMeta {
    pub tenant: String,
    pub upload_id: String,
    pub declared_name: Option<String>,
    pub declared_content_type: Option<String>,
    pub declared_length: Option<u64>,
    pub attributes: Vec<(String, String)>,
}

/// Computed natively once every byte has been fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub total_bytes: u64,
    pub sha256: [u8; 32],
}

/// Statistics the appliance keeps per tenant, offered to plugins.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantStats {
    pub uploads: u64,
    pub mean_size: f64,
    pub stddev_size: f64,
    pub types_seen: Vec<(String, u64)>,
    pub uploads_last_minute: u32,
    pub uploads_last_hour: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Reject {
        code: String,
        message: String,
    },
    /// Stored but not downloadable until an admin releases it.
    Quarantine(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: String,
    pub severity: Severity,
    pub offset: Option<u64>,
    pub detail: String,
}

/// A plugin's decision. Every string in it came from untrusted code and has
/// been truncated and had control characters escaped (the bounds are in
/// `bindings.rs`: 256 findings, 64 labels, 128-byte names, 1 KiB texts), so
/// it is safe to log or show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub findings: Vec<Finding>,
    pub labels: Vec<(String, String)>,
}

/// The answer to one `feed`.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedResult {
    NeedMore,
    /// The plugin has seen enough: later chunks are not passed to it (the
    /// host may skip feeding), and `finish` is still called at the end.
    Enough,
    /// Decided early. A rejection should stop the upload now. The plugin is
    /// done: later `feed` and `finish` calls return this same outcome.
    Decided(Outcome),
    Failed(Failure),
}

/// The answer to `finish`.
pub type PluginResult = Result<Outcome, Failure>;

/// Why a plugin produced no verdict. The policy decides what it means for
/// the upload (quarantine by default); it is never a 500.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub plugin: Arc<str>,
    pub kind: FailureKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    /// The Wasm trapped: the message names the trap.
    Trap(String),
    /// A call ran past its deadline.
    Timeout,
    /// The plugin tried to grow its memory past its cap.
    MemoryLimit,
    /// A call burned its whole fuel budget (the backstop to the deadline).
    FuelExhausted,
    /// The guest panicked; the message is the one its panic hook logged.
    Panic(String),
    /// The plugin could not be instantiated for this upload.
    Instantiation(String),
    /// Every instance slot is in use (`SandboxConfig::max_inspections`). The
    /// appliance is overloaded, not the plugin broken: retry later.
    Busy,
    /// The instance is gone without a verdict: a call was cancelled (its
    /// future dropped) or its worker died. Replay into a fresh inspection.
    Lost(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plugin {}: {}", self.plugin, self.kind)
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureKind::Trap(message) => write!(f, "trapped: {message}"),
            FailureKind::Timeout => f.write_str("ran past its deadline"),
            FailureKind::MemoryLimit => f.write_str("hit its memory cap"),
            FailureKind::FuelExhausted => f.write_str("ran out of fuel"),
            FailureKind::Panic(message) => write!(f, "panicked: {message}"),
            FailureKind::Instantiation(message) => write!(f, "could not start: {message}"),
            FailureKind::Busy => f.write_str("no free instance slot (sandbox at capacity)"),
            FailureKind::Lost(why) => write!(f, "instance lost: {why}"),
        }
    }
}

impl std::error::Error for Failure {}

/// Counters for one inspection, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InspectionStats {
    /// Calls that entered Wasm (instantiation counts as one).
    pub calls: u32,
    /// Time spent on a worker running those calls, queueing excluded.
    pub busy: Duration,
    /// Log lines passed on to `tracing`.
    pub log_lines: u32,
    /// Bytes of those lines after truncation and escaping.
    pub log_bytes: u32,
    /// Lines dropped by the per-inspection log limits.
    pub log_dropped: u32,
}
