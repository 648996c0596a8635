//! Judges one upload against its tenant's history. Pure: the statistics come in as
//! a value (the plugin fetches them with `get-tenant-stats`).

use strongroom_magic::FileType;
use strongroom_plugin_sdk::{Config, Finding, Outcome, Severity, TenantStats, Verdict};

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// History-based checks (size, new type) need at least this many committed uploads.
    pub min_uploads: u64,
    pub size_z_threshold: f64,
    pub burst_per_minute: u32,
    pub burst_per_hour: Option<u32>,
    pub entropy_threshold: f64,
    /// Entropy is computed over the first this-many bytes...
    pub entropy_sample_bytes: u64,
    /// ...and judged only when at least this many were seen.
    pub entropy_min_bytes: u64,
    /// Findings at or above this severity get `action`.
    pub action_severity: Severity,
    pub action: Action,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Accept,
    Quarantine,
    Reject,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            min_uploads: 20,
            size_z_threshold: 4.0,
            burst_per_minute: 30,
            burst_per_hour: None,
            entropy_threshold: 7.5,
            entropy_sample_bytes: 1 << 20,
            entropy_min_bytes: 4096,
            action_severity: Severity::High,
            action: Action::Quarantine,
        }
    }
}

pub const KNOWN_KEYS: &[&str] = &[
    "min_uploads",
    "size_z_threshold",
    "burst_per_minute",
    "burst_per_hour",
    "entropy_threshold",
    "entropy_sample_bytes",
    "entropy_min_bytes",
    "action_severity",
    "action",
];

impl Settings {
    /// Panics (a `failed` verdict naming the key) on values that cannot be meant.
    pub fn from_config(c: &Config) -> Settings {
        let d = Settings::default();
        let action = match c.get::<String>("action").as_deref() {
            None => d.action,
            Some("accept") => Action::Accept,
            Some("quarantine") => Action::Quarantine,
            Some("reject") => Action::Reject,
            Some(other) => panic!(
                "plugin config key 'action': unknown action '{other}', expected accept, quarantine or reject"
            ),
        };
        let action_severity = c
            .get::<String>("action_severity")
            .map_or(d.action_severity, |s| {
                Severity::parse(&s).unwrap_or_else(|| {
                    panic!("plugin config key 'action_severity': unknown severity '{s}'")
                })
            });
        let s = Settings {
            min_uploads: c.get_or("min_uploads", d.min_uploads),
            size_z_threshold: c.get_or("size_z_threshold", d.size_z_threshold),
            burst_per_minute: c.get_or("burst_per_minute", d.burst_per_minute),
            burst_per_hour: c.get("burst_per_hour"),
            entropy_threshold: c.get_or("entropy_threshold", d.entropy_threshold),
            entropy_sample_bytes: c.get_or("entropy_sample_bytes", d.entropy_sample_bytes),
            entropy_min_bytes: c.get_or("entropy_min_bytes", d.entropy_min_bytes),
            action_severity,
            action,
        };
        assert!(
            s.size_z_threshold > 0.0,
            "plugin config key 'size_z_threshold': must be positive"
        );
        assert!(
            (0.0..=8.0).contains(&s.entropy_threshold),
            "plugin config key 'entropy_threshold': must be between 0 and 8 bits per byte"
        );
        assert!(
            s.entropy_sample_bytes > 0,
            "plugin config key 'entropy_sample_bytes': must be positive"
        );
        s
    }
}

/// What is known about this upload when it is judged.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub size: u64,
    pub detected: FileType,
    /// Bits per byte over `entropy_sampled` bytes.
    pub entropy: f64,
    pub entropy_sampled: u64,
    /// The client's declared media type (lowercase essence) and extension.
    pub declared_media: Option<String>,
    pub declared_ext: Option<String>,
}

const LOW_ENTROPY_MEDIA: &[&str] = &[
    "application/json",
    "application/xml",
    "application/csv",
    "application/x-ndjson",
    "application/yaml",
    "application/x-yaml",
    "application/toml",
    "application/sql",
    "application/rtf",
    "application/msword",
    "application/vnd.ms-excel",
    "application/vnd.ms-powerpoint",
    "image/bmp",
    "image/svg+xml",
];
const LOW_ENTROPY_EXTS: &[&str] = &[
    "txt", "text", "csv", "tsv", "json", "ndjson", "jsonl", "xml", "md", "log", "yaml", "yml",
    "toml", "ini", "cfg", "conf", "sql", "html", "htm", "svg", "rtf", "doc", "xls", "ppt", "bmp",
];

/// Whether the declaration or the content says "text or an uncompressed format",
/// which near-random bytes cannot honestly be.
fn expects_low_entropy(o: &Observed) -> Option<String> {
    if o.detected.is_textual() {
        return Some(format!("detected as {}", o.detected.name()));
    }
    if let Some(m) = &o.declared_media
        && (m.starts_with("text/") || LOW_ENTROPY_MEDIA.contains(&m.as_str()))
    {
        return Some(format!("declared as '{m}'"));
    }
    if let Some(e) = &o.declared_ext
        && LOW_ENTROPY_EXTS.contains(&e.as_str())
    {
        return Some(format!("named '*.{e}'"));
    }
    None
}

/// The plugin's decision.
pub fn judge(o: &Observed, stats: &TenantStats, s: &Settings) -> Outcome {
    let mut findings = Vec::new();
    let mut out = Outcome::accept();
    let history = stats.uploads >= s.min_uploads;

    if history {
        // A flat history (every upload the same size) still has a scale: one byte.
        let z = (o.size as f64 - stats.mean_size) / stats.stddev_size.max(1.0);
        out = out.label("size-zscore", format!("{z:.2}"));
        if z.abs() > s.size_z_threshold {
            let severity = if z.abs() >= 2.0 * s.size_z_threshold {
                Severity::High
            } else {
                Severity::Medium
            };
            findings.push(Finding::new("size-outlier", severity).detail(format!(
                "{} bytes is {z:.1} standard deviations from this tenant's mean of {:.0} over {} uploads",
                o.size, stats.mean_size, stats.uploads
            )));
        }
        let t = o.detected;
        if t != FileType::Unknown && !stats.types_seen.is_empty() && stats.times_seen(t.name()) == 0
        {
            let severity = if t.is_executable() {
                Severity::High
            } else {
                Severity::Medium
            };
            findings.push(Finding::new("new-type", severity).detail(format!(
                "first {} among {} uploads of this tenant",
                t.name(),
                stats.uploads
            )));
        }
    }

    let per_minute = stats.uploads_last_minute;
    if per_minute > s.burst_per_minute {
        let severity = if per_minute >= 2 * s.burst_per_minute {
            Severity::High
        } else {
            Severity::Medium
        };
        findings.push(Finding::new("burst", severity).detail(format!(
            "{per_minute} uploads in the last minute, threshold {}",
            s.burst_per_minute
        )));
    }
    if let Some(limit) = s.burst_per_hour.filter(|&l| stats.uploads_last_hour > l) {
        findings.push(Finding::new("burst", Severity::Medium).detail(format!(
            "{} uploads in the last hour, threshold {limit}",
            stats.uploads_last_hour
        )));
    }

    if o.entropy_sampled >= s.entropy_min_bytes {
        out = out.label("entropy", format!("{:.2}", o.entropy));
        if o.entropy > s.entropy_threshold
            && let Some(claim) = expects_low_entropy(o)
        {
            findings.push(Finding::new("entropy-mismatch", Severity::High).detail(format!(
                    "{:.2} bits/byte over the first {} bytes (compressed or encrypted data) but {claim}",
                    o.entropy, o.entropy_sampled
                )));
        }
    }

    if let Some(worst) = findings
        .iter()
        .filter(|f| f.severity >= s.action_severity)
        .max_by_key(|f| f.severity)
    {
        let reason = format!("{}: {}", worst.rule, worst.detail);
        out = out.escalate(match s.action {
            Action::Accept => Verdict::Accept,
            Action::Quarantine => Verdict::Quarantine(reason),
            Action::Reject => Verdict::Reject {
                code: "anomaly".into(),
                message: format!("the upload looks anomalous: {reason}"),
            },
        });
    }
    out.with_findings(findings)
}
