//! Generated bindings for `strongroom:plugin/inspector@0.1.0` and the
//! conversions between them and our own types. Everything coming out of the
//! guest is bounded and escaped here, once.

use super::types::{Finding, Outcome, Severity, Summary, TenantStats, UploadMeta, Verdict};

wasmtime::component::bindgen!({
    path: "plugins/wit",
    world: "inspector",
});

use self::strongroom::plugin::types as wit;

/// Findings kept from one outcome; the rest are dropped. A verdict needs a
/// handful; thousands would only bloat the object record.
const MAX_FINDINGS: usize = 256;
/// Labels kept from one outcome.
const MAX_LABELS: usize = 64;
/// Stable codes and names (reject code, finding rule, label key).
const MAX_NAME_BYTES: usize = 128;
/// Free text (messages, details, label values, quarantine reasons).
pub(super) const MAX_TEXT_BYTES: usize = 1024;

impl From<&UploadMeta> for wit::UploadMetadata {
    fn from(meta: &UploadMeta) -> Self {
        wit::UploadMetadata {
            tenant: meta.tenant.clone(),
            upload_id: meta.upload_id.clone(),
            declared_name: meta.declared_name.clone(),
            declared_content_type: meta.declared_content_type.clone(),
            declared_length: meta.declared_length,
            attributes: meta.attributes.clone(),
        }
    }
}

impl From<&Summary> for wit::UploadSummary {
    fn from(summary: &Summary) -> Self {
        wit::UploadSummary {
            total_bytes: summary.total_bytes,
            sha256: summary.sha256.to_vec(),
        }
    }
}

impl From<&TenantStats> for wit::TenantStats {
    fn from(stats: &TenantStats) -> Self {
        wit::TenantStats {
            uploads: stats.uploads,
            mean_size: stats.mean_size,
            stddev_size: stats.stddev_size,
            types_seen: stats.types_seen.clone(),
            uploads_last_minute: stats.uploads_last_minute,
            uploads_last_hour: stats.uploads_last_hour,
        }
    }
}

impl From<wit::Outcome> for Outcome {
    fn from(outcome: wit::Outcome) -> Self {
        let verdict = match outcome.verdict {
            wit::Verdict::Accept => Verdict::Accept,
            wit::Verdict::Reject(info) => Verdict::Reject {
                code: clean(&info.code, MAX_NAME_BYTES),
                message: clean(&info.message, MAX_TEXT_BYTES),
            },
            wit::Verdict::Quarantine(reason) => Verdict::Quarantine(clean(&reason, MAX_TEXT_BYTES)),
        };
        let findings = outcome
            .findings
            .into_iter()
            .take(MAX_FINDINGS)
            .map(|finding| Finding {
                rule: clean(&finding.rule, MAX_NAME_BYTES),
                severity: finding.severity.into(),
                offset: finding.offset,
                detail: clean(&finding.detail, MAX_TEXT_BYTES),
            })
            .collect();
        let labels = outcome
            .labels
            .into_iter()
            .take(MAX_LABELS)
            .map(|(key, value)| (clean(&key, MAX_NAME_BYTES), clean(&value, MAX_TEXT_BYTES)))
            .collect();
        Outcome {
            verdict,
            findings,
            labels,
        }
    }
}

impl From<wit::Severity> for Severity {
    fn from(severity: wit::Severity) -> Self {
        match severity {
            wit::Severity::Info => Severity::Info,
            wit::Severity::Low => Severity::Low,
            wit::Severity::Medium => Severity::Medium,
            wit::Severity::High => Severity::High,
            wit::Severity::Critical => Severity::Critical,
        }
    }
}

/// `text` made safe to log or show: control characters (newlines and ANSI
/// escapes included) are written as `\u{..}` escapes, and the result is cut
/// at a character boundary to at most `max_bytes` plus a short marker saying
/// how much was dropped.
pub(super) fn clean(text: &str, max_bytes: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_bytes));
    for (at, c) in text.char_indices() {
        let before = out.len();
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
        if out.len() > max_bytes {
            out.truncate(before);
            out.push_str(&format!("…[{} more bytes]", text.len() - at));
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_escapes_control_characters() {
        assert_eq!(
            clean("a\nb\x1b[31mc\u{85}", 100),
            "a\\u{a}b\\u{1b}[31mc\\u{85}"
        );
        assert_eq!(clean("plain text ünïcode", 100), "plain text ünïcode");
    }

    #[test]
    fn clean_truncates_at_a_char_boundary() {
        let cut = clean("ééééé", 5);
        assert_eq!(cut, "éé…[6 more bytes]");
        let long = "x".repeat(5000);
        let cut = clean(&long, 1024);
        assert!(cut.starts_with(&"x".repeat(1024)));
        assert!(cut.ends_with("…[3976 more bytes]"));
        // An escape is never cut in half.
        assert_eq!(clean("ab\n", 4), "ab…[1 more bytes]");
    }
}
