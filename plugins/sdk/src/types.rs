//! The plugin-facing mirror of the WIT `types` interface: plain owned Rust values with
//! builders. Conversions to and from the generated bindings live in `guest`.

/// What the client declared when it created the upload. Never trust it: it is what
/// a plugin checks the content against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadMeta {
    pub tenant: String,
    pub upload_id: String,
    pub declared_name: Option<String>,
    pub declared_content_type: Option<String>,
    pub declared_length: Option<u64>,
    /// Every tus metadata pair whose value is valid UTF-8, in the client's order.
    pub attributes: Vec<(String, String)>,
}

impl UploadMeta {
    pub fn new(tenant: impl Into<String>, upload_id: impl Into<String>) -> Self {
        UploadMeta {
            tenant: tenant.into(),
            upload_id: upload_id.into(),
            ..Self::default()
        }
    }

    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.declared_name = Some(name.into());
        self
    }

    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.declared_content_type = Some(content_type.into());
        self
    }

    pub fn with_length(mut self, length: u64) -> Self {
        self.declared_length = Some(length);
        self
    }

    pub fn with_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.push((key.into(), value.into()));
        self
    }

    /// The first metadata value under `key`, compared exactly.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The declared file name's extension, lowercased, without the dot; `None`
    /// when there is no name, no dot, or the name ends in one.
    pub fn extension(&self) -> Option<String> {
        let name = self.declared_name.as_deref()?;
        let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
        let (stem, ext) = base.rsplit_once('.')?;
        if stem.is_empty() || ext.is_empty() {
            return None;
        }
        Some(ext.to_ascii_lowercase())
    }

    /// The declared media type without parameters, lowercased: `Text/Plain;
    /// charset=utf-8` is `text/plain`.
    pub fn media_type(&self) -> Option<String> {
        let raw = self.declared_content_type.as_deref()?;
        let essence = raw
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        (!essence.is_empty()).then_some(essence)
    }
}

/// What the host computed natively once every byte was fed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub total_bytes: u64,
    /// SHA-256 of the whole plaintext, 32 bytes.
    pub sha256: Vec<u8>,
}

impl Summary {
    pub fn new(total_bytes: u64, sha256: impl Into<Vec<u8>>) -> Self {
        Summary {
            total_bytes,
            sha256: sha256.into(),
        }
    }

    /// The digest as lowercase hex, the form statements and labels use.
    pub fn sha256_hex(&self) -> String {
        hex(&self.sha256)
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parses the lowercase names used in policy configs.
    pub fn parse(name: &str) -> Option<Severity> {
        Some(match name {
            "info" => Severity::Info,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
}

/// One observation about the upload, kept with the object record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Stable rule name, e.g. "eicar", "type-mismatch", "zip-bomb".
    pub rule: String,
    pub severity: Severity,
    /// Byte offset in the upload the finding refers to, if any.
    pub offset: Option<u64>,
    pub detail: String,
}

impl Finding {
    pub fn new(rule: impl Into<String>, severity: Severity) -> Self {
        Finding {
            rule: rule.into(),
            severity,
            offset: None,
            detail: String::new(),
        }
    }

    pub fn at(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// `code` is stable and machine-readable; `message` is shown to the uploader.
    Reject {
        code: String,
        message: String,
    },
    /// Stored but not downloadable until an admin releases it.
    Quarantine(String),
}

impl Verdict {
    /// Accept < quarantine < reject: the order in which verdicts override.
    fn strictness(&self) -> u8 {
        match self {
            Verdict::Accept => 0,
            Verdict::Quarantine(_) => 1,
            Verdict::Reject { .. } => 2,
        }
    }

    pub fn is_accept(&self) -> bool {
        matches!(self, Verdict::Accept)
    }

    pub fn is_reject(&self) -> bool {
        matches!(self, Verdict::Reject { .. })
    }
}

/// A plugin's decision with what it found and the facts it wants kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub findings: Vec<Finding>,
    /// Facts kept with the object record, e.g. ("detected-type", "pdf").
    pub labels: Vec<(String, String)>,
}

impl Outcome {
    fn with_verdict(verdict: Verdict) -> Self {
        Outcome {
            verdict,
            findings: Vec::new(),
            labels: Vec::new(),
        }
    }

    pub fn accept() -> Self {
        Self::with_verdict(Verdict::Accept)
    }

    pub fn reject(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::with_verdict(Verdict::Reject {
            code: code.into(),
            message: message.into(),
        })
    }

    pub fn quarantine(reason: impl Into<String>) -> Self {
        Self::with_verdict(Verdict::Quarantine(reason.into()))
    }

    pub fn with_finding(mut self, finding: Finding) -> Self {
        self.findings.push(finding);
        self
    }

    pub fn with_findings(mut self, findings: impl IntoIterator<Item = Finding>) -> Self {
        self.findings.extend(findings);
        self
    }

    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((key.into(), value.into()));
        self
    }

    /// Replaces the verdict with `verdict` if that one is stricter (reject beats
    /// quarantine beats accept); on a tie the verdict already there stays.
    pub fn escalate(mut self, verdict: Verdict) -> Self {
        if verdict.strictness() > self.verdict.strictness() {
            self.verdict = verdict;
        }
        self
    }

    /// The first label under `key`.
    pub fn label_value(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether a finding with this rule name is present.
    pub fn has_finding(&self, rule: &str) -> bool {
        self.findings.iter().any(|f| f.rule == rule)
    }
}

/// What `feed` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feed {
    /// Keep feeding.
    NeedMore,
    /// Seen enough; skip further chunks and call `finish` at the end.
    Enough,
    /// Decided early: the host stops the upload now if this rejects.
    Decided(Outcome),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Per-tenant statistics the host keeps across committed uploads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantStats {
    pub uploads: u64,
    pub mean_size: f64,
    pub stddev_size: f64,
    /// Detected types and how often each was seen.
    pub types_seen: Vec<(String, u64)>,
    pub uploads_last_minute: u32,
    pub uploads_last_hour: u32,
}

impl TenantStats {
    /// How many committed uploads of this tenant had `detected_type`.
    pub fn times_seen(&self, detected_type: &str) -> u64 {
        self.types_seen
            .iter()
            .filter(|(t, _)| t == detected_type)
            .map(|(_, n)| *n)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_takes_the_last_dot_of_the_base_name() {
        let meta = |n: &str| UploadMeta::new("t", "u").with_name(n);
        assert_eq!(meta("Report.PDF").extension().as_deref(), Some("pdf"));
        assert_eq!(meta("a.tar.gz").extension().as_deref(), Some("gz"));
        assert_eq!(meta("dir.d/README").extension(), None);
        assert_eq!(meta(".bashrc").extension(), None);
        assert_eq!(meta("trailing.").extension(), None);
        assert_eq!(meta(r"C:\x\evil.exe").extension().as_deref(), Some("exe"));
    }

    #[test]
    fn media_type_drops_parameters() {
        let meta = UploadMeta::new("t", "u").with_content_type("Text/Plain; charset=UTF-8");
        assert_eq!(meta.media_type().as_deref(), Some("text/plain"));
    }

    #[test]
    fn escalate_keeps_the_strictest_verdict() {
        let o = Outcome::accept().escalate(Verdict::Quarantine("q".into()));
        assert_eq!(o.verdict, Verdict::Quarantine("q".into()));
        let o = o
            .escalate(Verdict::Accept)
            .escalate(Verdict::Quarantine("later".into()));
        assert_eq!(o.verdict, Verdict::Quarantine("q".into()));
        let o = o.escalate(Verdict::Reject {
            code: "c".into(),
            message: "m".into(),
        });
        assert!(o.verdict.is_reject());
    }

    #[test]
    fn finding_builder_reads_like_the_report() {
        let f = Finding::new("eicar", Severity::Critical)
            .at(70_000)
            .detail("test signature");
        assert_eq!(
            (f.offset, f.detail.as_str()),
            (Some(70_000), "test signature")
        );
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
    }
}
