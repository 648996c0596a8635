//! Prometheus metrics. Owns the registry and every metric family: the only
//! `prometheus` user. Like `tracing`, any module may record into it through
//! the typed methods below (a request answered, bytes received, a plugin
//! call, an fsync); it calls no other module. Figures that are cheaper to
//! read than to track (bytes per tenant, objects, the audit log's size)
//! arrive as a [`Sample`] at scrape time.
//!
//! One registry per appliance, never the global default: tests run many
//! appliances in one process, and each must count only its own requests.
//!
//! Label values are bounded: listeners, routes, methods, calls and fsync
//! targets are closed sets; tenants and plugins are named by the admin; a
//! plugin's rule names are capped per plugin (`MAX_RULES_PER_PLUGIN`).

mod disk;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub use disk::MeteredDisk;

/// Distinct `rule` label values kept per plugin; later rules count as
/// `other`. A plugin is untrusted and could otherwise invent a new rule
/// name per upload and grow every scrape without bound.
const MAX_RULES_PER_PLUGIN: usize = 32;
/// Longest `rule` label value kept, in bytes.
const MAX_RULE_LEN: usize = 64;

/// Request latency buckets (seconds): from a cached HEAD to a slow upload body.
const REQUEST_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];
/// Whole-upload buckets (seconds): a small file to a multi-hour transfer.
const UPLOAD_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0,
];
/// Plugin call and finalize buckets (seconds): microseconds to a deadline.
const FAST_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0,
];
/// fsync buckets (seconds): page cache on NVMe to a struggling disk.
const FSYNC_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Public,
    Admin,
}

impl Listener {
    fn label(self) -> &'static str {
        match self {
            Listener::Public => "public",
            Listener::Admin => "admin",
        }
    }
}

/// A plugin call, as timed by the chain (queueing on the pool included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginCall {
    Instantiate,
    Feed,
    Finish,
}

impl PluginCall {
    fn label(self) -> &'static str {
        match self {
            PluginCall::Instantiate => "instantiate",
            PluginCall::Feed => "feed",
            PluginCall::Finish => "finish",
        }
    }
}

/// Which file an fsync made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncFile {
    /// An upload's segment file.
    Segment,
    /// The index (sled's log).
    Index,
    /// The audit log's records or checkpoints.
    Audit,
}

impl FsyncFile {
    fn label(self) -> &'static str {
        match self {
            FsyncFile::Segment => "segment",
            FsyncFile::Index => "index",
            FsyncFile::Audit => "audit",
        }
    }
}

/// Which per-tenant limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Requests,
    Uploads,
    ConcurrentUploads,
}

impl Limit {
    fn label(self) -> &'static str {
        match self {
            Limit::Requests => "requests",
            Limit::Uploads => "uploads",
            Limit::ConcurrentUploads => "concurrent_uploads",
        }
    }
}

/// What one plugin concluded about one upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginVerdict {
    Accept,
    Reject,
    Quarantine,
    Failed,
}

impl PluginVerdict {
    fn label(self) -> &'static str {
        match self {
            PluginVerdict::Accept => "accept",
            PluginVerdict::Reject => "reject",
            PluginVerdict::Quarantine => "quarantine",
            PluginVerdict::Failed => "failed",
        }
    }
}

/// Figures read at scrape time rather than tracked.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub tenants: Vec<TenantSample>,
    /// Segment files on disk.
    pub staging_files: u64,
    pub audit: Option<AuditSample>,
    /// The data dir's file system: (free, size) in bytes.
    pub data_dir_space: Option<(u64, u64)>,
    /// When the public listener's certificate expires (Unix seconds).
    pub tls_not_after: Option<i64>,
    pub event_subscribers: u64,
}

#[derive(Debug, Clone, Default)]
pub struct TenantSample {
    pub tenant: String,
    pub uploads_staged: u64,
    pub staged_bytes: u64,
    pub stored_bytes: u64,
    pub objects_released: u64,
    pub objects_quarantined: u64,
    pub objects_pending: u64,
    /// KEK versions that wrap at least one data key.
    pub key_versions: u64,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct AuditSample {
    pub records: u64,
    pub bytes: u64,
    /// Seconds durable records have waited for a signed checkpoint (0 when
    /// none wait).
    pub checkpoint_age: Option<f64>,
}

/// Running totals for the console's summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    pub requests: u64,
    pub ingress_bytes: u64,
    pub egress_bytes: u64,
    pub uploads_active: i64,
    pub verdicts: VerdictTotals,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerdictTotals {
    pub accept: u64,
    pub reject: u64,
    pub quarantine: u64,
    pub failed: u64,
}

pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    ingress: IntCounterVec,
    egress: IntCounterVec,
    upload_duration: Histogram,
    finalize_duration: Histogram,
    uploads_active: IntGauge,
    committed: IntCounterVec,
    rejected: IntCounterVec,
    plugin_calls: HistogramVec,
    verdicts: IntCounterVec,
    traps: IntCounterVec,
    rate_limited: IntCounterVec,
    quota_rejections: IntCounterVec,
    auth_failures: IntCounterVec,
    audit_failures: IntCounter,
    fsync: HistogramVec,
    sampled: Sampled,
    /// Rule names seen per plugin, for the cardinality cap.
    rules: Mutex<HashMap<String, HashSet<String>>>,
}

/// The gauges a [`Sample`] sets.
struct Sampled {
    uploads_staged: IntGaugeVec,
    staged_bytes: IntGaugeVec,
    stored_bytes: IntGaugeVec,
    objects: IntGaugeVec,
    key_versions: IntGaugeVec,
    staging_files: IntGauge,
    audit_records: IntGauge,
    audit_bytes: IntGauge,
    audit_checkpoint_age: prometheus::Gauge,
    data_dir_free: IntGauge,
    data_dir_size: IntGauge,
    tls_expiry: IntGauge,
    event_subscribers: IntGauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let reg = Registrar(&registry);
        let build_info = reg.int_gauge_vec(
            "strongroom_build_info",
            "Always 1; the version label names the running build.",
            &["version"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        #[cfg(target_os = "linux")]
        reg.collector(prometheus::process_collector::ProcessCollector::for_self());
        Metrics {
            http_requests: reg.counter_vec(
                "strongroom_http_requests_total",
                "Requests answered, by listener, route, method and status.",
                &["listener", "route", "method", "status"],
            ),
            http_duration: reg.histogram_vec(
                "strongroom_http_request_duration_seconds",
                "Time from a request's head to its answer (bodies of uploads included).",
                &["listener", "route", "method"],
                REQUEST_BUCKETS,
            ),
            ingress: reg.counter_vec(
                "strongroom_ingress_bytes_total",
                "Upload body bytes received.",
                &["tenant"],
            ),
            egress: reg.counter_vec(
                "strongroom_egress_bytes_total",
                "Object bytes sent to downloads.",
                &["tenant"],
            ),
            upload_duration: reg.histogram(
                "strongroom_upload_duration_seconds",
                "Time from an upload's creation to its commit (second resolution at the start).",
                UPLOAD_BUCKETS,
            ),
            finalize_duration: reg.histogram(
                "strongroom_finalize_duration_seconds",
                "Time from an upload's last byte to its commit (verdicts, seal, records).",
                FAST_BUCKETS,
            ),
            uploads_active: reg.int_gauge(
                "strongroom_uploads_active",
                "Upload bodies streaming in right now.",
            ),
            committed: reg.counter_vec(
                "strongroom_uploads_committed_total",
                "Uploads committed, by tenant and disposition (released, quarantined, pending).",
                &["tenant", "disposition"],
            ),
            rejected: reg.counter_vec(
                "strongroom_uploads_rejected_total",
                "Uploads destroyed by a plugin's rejection.",
                &["tenant", "plugin"],
            ),
            plugin_calls: reg.histogram_vec(
                "strongroom_plugin_call_duration_seconds",
                "Plugin calls (instantiate, feed, finish), queueing on the plugin pool included.",
                &["plugin", "call"],
                FAST_BUCKETS,
            ),
            verdicts: reg.counter_vec(
                "strongroom_plugin_verdicts_total",
                "Each plugin's verdict on each upload, with its rule (a rejection's code, else \
                 the first finding's rule).",
                &["plugin", "verdict", "rule"],
            ),
            traps: reg.counter_vec(
                "strongroom_sandbox_traps_total",
                "Plugin failures by kind (trap, timeout, memory, fuel, panic, busy, lost).",
                &["plugin", "kind"],
            ),
            rate_limited: reg.counter_vec(
                "strongroom_rate_limited_total",
                "Requests refused with 429 by a per-tenant limit.",
                &["tenant", "limit"],
            ),
            quota_rejections: reg.counter_vec(
                "strongroom_quota_rejections_total",
                "Requests refused because the tenant's quota was used up.",
                &["tenant"],
            ),
            auth_failures: reg.counter_vec(
                "strongroom_auth_failures_total",
                "Requests refused by authentication or authorisation, by error code.",
                &["code"],
            ),
            audit_failures: reg.int_counter(
                "strongroom_audit_failures_total",
                "Audit records that could not be made durable.",
            ),
            fsync: reg.histogram_vec(
                "strongroom_fsync_duration_seconds",
                "fsync latency by file (segment, index, audit).",
                &["file"],
                FSYNC_BUCKETS,
            ),
            sampled: Sampled::register(&reg),
            rules: Mutex::new(HashMap::new()),
            registry,
        }
    }

    // ---- recording --------------------------------------------------------

    /// One request answered.
    pub fn request(
        &self,
        listener: Listener,
        route: &'static str,
        method: &str,
        status: u16,
        took: Duration,
    ) {
        let method = method_label(method);
        let status = status.to_string();
        self.http_requests
            .with_label_values(&[listener.label(), route, method, &status])
            .inc();
        self.http_duration
            .with_label_values(&[listener.label(), route, method])
            .observe(took.as_secs_f64());
    }

    pub fn ingress(&self, tenant: &str, bytes: u64) {
        self.ingress.with_label_values(&[tenant]).inc_by(bytes);
    }

    pub fn egress(&self, tenant: &str, bytes: u64) {
        self.egress.with_label_values(&[tenant]).inc_by(bytes);
    }

    /// An upload body started streaming; the gauge drops when the guard does.
    pub fn upload_body(&self) -> ActiveUpload<'_> {
        self.uploads_active.inc();
        ActiveUpload(&self.uploads_active)
    }

    /// An upload settled (committed with its verdict), `age` after its creation.
    pub fn committed(&self, tenant: &str, disposition: &str, age: Duration) {
        self.committed
            .with_label_values(&[tenant, disposition])
            .inc();
        self.upload_duration.observe(age.as_secs_f64());
    }

    /// The time from an upload's last byte to its commit being answered.
    pub fn finalized(&self, took: Duration) {
        self.finalize_duration.observe(took.as_secs_f64());
    }

    /// A plugin's verdict on an upload, with its rule: a rejection's code,
    /// else the rule of its first finding.
    pub fn verdict(&self, plugin: &str, verdict: PluginVerdict, rule: Option<&str>) {
        let rule = self.rule_label(plugin, rule.unwrap_or(""));
        self.verdicts
            .with_label_values(&[plugin, verdict.label(), &rule])
            .inc();
    }

    /// An upload destroyed by a plugin's rejection.
    pub fn rejected(&self, tenant: &str, plugin: &str) {
        self.rejected.with_label_values(&[tenant, plugin]).inc();
    }

    pub fn plugin_call(&self, plugin: &str, call: PluginCall, took: Duration) {
        self.plugin_calls
            .with_label_values(&[plugin, call.label()])
            .observe(took.as_secs_f64());
    }

    /// A plugin failure; `kind` is its class (`trap`, `timeout`, `memory`, …).
    pub fn trap(&self, plugin: &str, kind: &'static str) {
        self.traps.with_label_values(&[plugin, kind]).inc();
    }

    pub fn rate_limited(&self, tenant: &str, limit: Limit) {
        self.rate_limited
            .with_label_values(&[tenant, limit.label()])
            .inc();
    }

    pub fn quota_rejection(&self, tenant: &str) {
        self.quota_rejections.with_label_values(&[tenant]).inc();
    }

    /// A request refused by authentication or authorisation; `code` is its
    /// stable error code.
    pub fn auth_failure(&self, code: &'static str) {
        self.auth_failures.with_label_values(&[code]).inc();
    }

    pub fn audit_failure(&self) {
        self.audit_failures.inc();
    }

    pub fn fsync(&self, file: FsyncFile, took: Duration) {
        self.fsync
            .with_label_values(&[file.label()])
            .observe(took.as_secs_f64());
    }

    /// Times `sync`, an fsync of `file`, whatever it returns.
    pub fn time_fsync<T>(&self, file: FsyncFile, sync: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let result = sync();
        self.fsync(file, started.elapsed());
        result
    }

    // ---- reading ----------------------------------------------------------

    /// The text exposition format, with `sample` applied first.
    pub fn render(&self, sample: &Sample) -> String {
        self.sampled.apply(sample);
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("the text encoder writes into a Vec");
        String::from_utf8(out).expect("the text format is UTF-8")
    }

    /// Running totals across every label.
    pub fn totals(&self) -> Totals {
        let verdict = |name: &str| sum_where(&self.verdicts, "verdict", name);
        Totals {
            requests: sum(&self.http_requests),
            ingress_bytes: sum(&self.ingress),
            egress_bytes: sum(&self.egress),
            uploads_active: self.uploads_active.get(),
            verdicts: VerdictTotals {
                accept: verdict("accept"),
                reject: verdict("reject"),
                quarantine: verdict("quarantine"),
                failed: verdict("failed"),
            },
        }
    }

    /// The `rule` label for a plugin's rule: truncated, and `other` once the
    /// plugin has used up its share of distinct rules.
    fn rule_label(&self, plugin: &str, rule: &str) -> String {
        let rule = truncate(rule, MAX_RULE_LEN);
        let mut rules = self.rules.lock().expect("rule names poisoned");
        let seen = rules.entry(plugin.to_owned()).or_default();
        if seen.contains(rule) {
            return rule.to_owned();
        }
        if seen.len() >= MAX_RULES_PER_PLUGIN {
            return "other".to_owned();
        }
        seen.insert(rule.to_owned());
        rule.to_owned()
    }
}

/// Holds `strongroom_uploads_active` up while an upload body streams.
pub struct ActiveUpload<'a>(&'a IntGauge);

impl Drop for ActiveUpload<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Sampled {
    fn register(reg: &Registrar<'_>) -> Sampled {
        Sampled {
            uploads_staged: reg.int_gauge_vec(
                "strongroom_uploads_staged",
                "Unfinished uploads held in staging.",
                &["tenant"],
            ),
            staged_bytes: reg.int_gauge_vec(
                "strongroom_staged_bytes",
                "Bytes of unfinished uploads held in staging.",
                &["tenant"],
            ),
            stored_bytes: reg.int_gauge_vec(
                "strongroom_stored_bytes",
                "Bytes of committed objects.",
                &["tenant"],
            ),
            objects: reg.int_gauge_vec(
                "strongroom_objects",
                "Committed objects, by disposition (released, quarantined, pending).",
                &["tenant", "disposition"],
            ),
            key_versions: reg.int_gauge_vec(
                "strongroom_key_versions",
                "Key-encryption key versions that wrap at least one data key.",
                &["tenant"],
            ),
            staging_files: reg.int_gauge(
                "strongroom_staging_files",
                "Segment files on disk (objects and unfinished uploads).",
            ),
            audit_records: reg.int_gauge(
                "strongroom_audit_records",
                "Durable records in the audit log.",
            ),
            audit_bytes: reg.int_gauge(
                "strongroom_audit_log_bytes",
                "Size of the audit log's records file.",
            ),
            audit_checkpoint_age: reg.gauge(
                "strongroom_audit_checkpoint_age_seconds",
                "Seconds durable audit records have waited for a signed checkpoint (0 when none \
                 wait).",
            ),
            data_dir_free: reg.int_gauge(
                "strongroom_data_dir_free_bytes",
                "Free bytes on the data dir's file system (for unprivileged writers).",
            ),
            data_dir_size: reg.int_gauge(
                "strongroom_data_dir_size_bytes",
                "Size of the data dir's file system.",
            ),
            tls_expiry: reg.int_gauge(
                "strongroom_tls_certificate_expiry_timestamp_seconds",
                "When the public listener's certificate expires (0 without TLS).",
            ),
            event_subscribers: reg
                .int_gauge("strongroom_events_subscribers", "Open live event streams."),
        }
    }

    fn apply(&self, sample: &Sample) {
        // Reset first, so a tenant that is gone drops out of the scrape.
        for vec in [
            &self.uploads_staged,
            &self.staged_bytes,
            &self.stored_bytes,
            &self.objects,
            &self.key_versions,
        ] {
            vec.reset();
        }
        for tenant in &sample.tenants {
            let name = tenant.tenant.as_str();
            set(&self.uploads_staged, &[name], tenant.uploads_staged);
            set(&self.staged_bytes, &[name], tenant.staged_bytes);
            set(&self.stored_bytes, &[name], tenant.stored_bytes);
            set(&self.key_versions, &[name], tenant.key_versions);
            set(&self.objects, &[name, "released"], tenant.objects_released);
            set(
                &self.objects,
                &[name, "quarantined"],
                tenant.objects_quarantined,
            );
            set(&self.objects, &[name, "pending"], tenant.objects_pending);
        }
        self.staging_files.set(clamp(sample.staging_files));
        let audit = sample.audit.unwrap_or_default();
        self.audit_records.set(clamp(audit.records));
        self.audit_bytes.set(clamp(audit.bytes));
        self.audit_checkpoint_age
            .set(audit.checkpoint_age.unwrap_or(0.0));
        let (free, size) = sample.data_dir_space.unwrap_or_default();
        self.data_dir_free.set(clamp(free));
        self.data_dir_size.set(clamp(size));
        self.tls_expiry.set(sample.tls_not_after.unwrap_or(0));
        self.event_subscribers.set(clamp(sample.event_subscribers));
    }
}

/// Registers metrics as it makes them. Every name and label set here is a
/// constant, so a failure is a programming error caught by the first test.
struct Registrar<'a>(&'a Registry);

impl Registrar<'_> {
    fn collector<C: Collector + 'static>(&self, collector: C) {
        self.0
            .register(Box::new(collector))
            .expect("metric registers");
    }

    fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        let vec = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
        self.collector(vec.clone());
        vec
    }

    fn int_counter(&self, name: &str, help: &str) -> IntCounter {
        let counter = IntCounter::new(name, help).expect("valid metric");
        self.collector(counter.clone());
        counter
    }

    fn int_gauge(&self, name: &str, help: &str) -> IntGauge {
        let gauge = IntGauge::new(name, help).expect("valid metric");
        self.collector(gauge.clone());
        gauge
    }

    fn gauge(&self, name: &str, help: &str) -> prometheus::Gauge {
        let gauge = prometheus::Gauge::new(name, help).expect("valid metric");
        self.collector(gauge.clone());
        gauge
    }

    fn int_gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        let vec = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
        self.collector(vec.clone());
        vec
    }

    fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        let histogram = Histogram::with_opts(opts).expect("valid metric");
        self.collector(histogram.clone());
        histogram
    }

    fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> HistogramVec {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        let vec = HistogramVec::new(opts, labels).expect("valid metric");
        self.collector(vec.clone());
        vec
    }
}

fn set(vec: &IntGaugeVec, labels: &[&str], value: u64) {
    vec.with_label_values(labels).set(clamp(value));
}

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The sum of a counter family over all its labels.
fn sum(vec: &IntCounterVec) -> u64 {
    sum_where(vec, "", "")
}

/// The sum of a counter family over the series whose `label` is `value`
/// (every series when `label` is empty).
fn sum_where(vec: &IntCounterVec, label: &str, value: &str) -> u64 {
    vec.collect()
        .iter()
        .flat_map(|family| family.get_metric())
        .filter(|metric| {
            label.is_empty()
                || metric
                    .get_label()
                    .iter()
                    .any(|pair| pair.name() == label && pair.value() == value)
        })
        .map(|metric| metric.get_counter().get_value() as u64)
        .sum()
}

/// HTTP methods as label values: the ones we serve, the rest as `other`, so
/// a client cannot mint label values.
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PATCH" => "PATCH",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_route_method_and_status() {
        let metrics = Metrics::new();
        let took = Duration::from_millis(3);
        metrics.request(Listener::Public, "files", "POST", 201, took);
        metrics.request(Listener::Public, "files", "POST", 201, took);
        metrics.request(Listener::Public, "upload", "BREW", 405, took);
        let text = metrics.render(&Sample::default());
        assert!(text.contains(
            r#"strongroom_http_requests_total{listener="public",method="POST",route="files",status="201"} 2"#
        ), "{text}");
        assert!(text.contains(r#"method="other",route="upload",status="405"} 1"#));
        assert_eq!(metrics.totals().requests, 3);
    }

    #[test]
    fn a_plugin_cannot_mint_unbounded_rule_labels() {
        let metrics = Metrics::new();
        for n in 0..(MAX_RULES_PER_PLUGIN + 10) {
            let rule = format!("rule-{n}");
            metrics.verdict("noisy", PluginVerdict::Quarantine, Some(&rule));
        }
        metrics.verdict("noisy", PluginVerdict::Quarantine, Some("rule-0"));
        let long = "x".repeat(500);
        metrics.verdict("other-plugin", PluginVerdict::Reject, Some(&long));
        let text = metrics.render(&Sample::default());
        let series = text
            .lines()
            .filter(|l| l.starts_with("strongroom_plugin_verdicts_total{") && l.contains("noisy"))
            .count();
        assert_eq!(series, MAX_RULES_PER_PLUGIN + 1, "{text}");
        assert!(text.contains(r#"plugin="noisy",rule="other",verdict="quarantine"} 10"#));
        assert!(text.contains(r#"plugin="noisy",rule="rule-0",verdict="quarantine"} 2"#));
        assert!(text.contains(&format!(r#"rule="{}""#, "x".repeat(MAX_RULE_LEN))));
        assert_eq!(
            metrics.totals().verdicts.quarantine,
            MAX_RULES_PER_PLUGIN as u64 + 11
        );
        assert_eq!(metrics.totals().verdicts.reject, 1);
    }

    #[test]
    fn a_tenant_missing_from_the_next_sample_drops_out() {
        let metrics = Metrics::new();
        let tenant = |name: &str| TenantSample {
            tenant: name.into(),
            stored_bytes: 42,
            ..TenantSample::default()
        };
        let first = Sample {
            tenants: vec![tenant("acme"), tenant("globex")],
            ..Sample::default()
        };
        assert!(
            metrics
                .render(&first)
                .contains(r#"strongroom_stored_bytes{tenant="globex"} 42"#)
        );
        let second = Sample {
            tenants: vec![tenant("acme")],
            ..Sample::default()
        };
        let text = metrics.render(&second);
        assert!(text.contains(r#"strongroom_stored_bytes{tenant="acme"} 42"#));
        assert!(!text.contains("globex"), "{text}");
    }

    #[test]
    fn the_active_upload_gauge_follows_its_guards() {
        let metrics = Metrics::new();
        let first = metrics.upload_body();
        let second = metrics.upload_body();
        assert_eq!(metrics.totals().uploads_active, 2);
        drop(first);
        drop(second);
        assert_eq!(metrics.totals().uploads_active, 0);
    }

    #[test]
    fn two_appliances_in_one_process_count_apart() {
        let (one, two) = (Metrics::new(), Metrics::new());
        one.ingress("acme", 10);
        assert_eq!(one.totals().ingress_bytes, 10);
        assert_eq!(two.totals().ingress_bytes, 0);
    }
}
