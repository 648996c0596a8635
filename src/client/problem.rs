//! The appliance's error answers (`application/problem+json`): status,
//! stable code, detail, and for a rejected upload the plugin, rule and
//! reason. Owns classifying them (transient, authentication); never
//! retries anything itself.

use std::fmt;
use std::time::{Duration, SystemTime};

use reqwest::Response;
use serde::Deserialize;

/// Problem documents are small; a longer body is cut, not read.
const MAX_PROBLEM: usize = 64 << 10;

/// Codes of a 403 that are about the credential, not the request.
const FORBIDDEN_AUTH_CODES: &[&str] = &[
    "scope_insufficient",
    "scope_not_grantable",
    "presign_invalid",
    "presign_expired",
    "credential_invalid",
];

/// An error status and what the server said about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problem {
    pub status: u16,
    pub code: Option<String>,
    pub detail: Option<String>,
    /// For `upload_rejected`: which plugin, its rule and its reason.
    pub plugin: Option<String>,
    pub rule: Option<String>,
    pub reason: Option<String>,
    /// From `Retry-After`.
    pub retry_after: Option<Duration>,
}

#[derive(Deserialize)]
struct Document {
    code: Option<String>,
    detail: Option<String>,
    plugin: Option<String>,
    rule: Option<String>,
    reason: Option<String>,
}

impl Problem {
    /// Reads the error answer (at most `MAX_PROBLEM` bytes of its body).
    pub async fn read(mut response: Response) -> Problem {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            body.extend_from_slice(&chunk);
            if body.len() >= MAX_PROBLEM {
                break;
            }
        }
        let mut problem = Problem::parse(status, &body);
        problem.retry_after = retry_after;
        problem
    }

    /// A problem from a status and body (a problem document, or anything).
    pub fn parse(status: u16, body: &[u8]) -> Problem {
        let document: Option<Document> = serde_json::from_slice(body).ok();
        let Some(document) = document else {
            return Problem {
                status,
                ..Problem::default()
            };
        };
        Problem {
            status,
            code: document.code,
            detail: document.detail,
            plugin: document.plugin,
            rule: document.rule,
            reason: document.reason,
            retry_after: None,
        }
    }

    /// A status with no body (the answer to HEAD).
    pub fn status_only(status: u16) -> Problem {
        Problem {
            status,
            ..Problem::default()
        }
    }

    /// 5xx, 408 (a body too slow or idle), 423 (the upload is busy with
    /// another request) and 429 (a rate limit): retried after a pause.
    pub fn is_transient(&self) -> bool {
        self.status >= 500 || matches!(self.status, 408 | 423 | 429)
    }

    /// 401, or a 403 about the credential's scope (not a quota or a
    /// quarantined object).
    pub fn is_auth(&self) -> bool {
        self.status == 401
            || self.status == 403
                && self
                    .code
                    .as_deref()
                    .is_none_or(|code| FORBIDDEN_AUTH_CODES.contains(&code))
    }

    pub fn has_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if let Some(code) = &self.code {
            write!(f, " {code}")?;
        }
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    if let Ok(seconds) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_carry_plugin_rule_and_reason() {
        let body = br#"{"type":"urn:strongroom:error:upload_rejected","status":422,
            "code":"upload_rejected","detail":"upload rejected by content-inspector: EICAR",
            "plugin":"content-inspector","rule":"malware-signature","reason":"EICAR"}"#;
        let problem = Problem::parse(422, body);
        assert!(problem.has_code("upload_rejected"));
        assert_eq!(problem.plugin.as_deref(), Some("content-inspector"));
        assert_eq!(problem.rule.as_deref(), Some("malware-signature"));
        assert!(!problem.is_transient() && !problem.is_auth());
    }

    #[test]
    fn classification() {
        assert!(Problem::status_only(503).is_transient());
        assert!(Problem::status_only(423).is_transient());
        assert!(Problem::status_only(429).is_transient());
        assert!(!Problem::status_only(409).is_transient());
        assert!(Problem::status_only(401).is_auth());
        assert!(Problem::parse(403, br#"{"code":"scope_insufficient"}"#).is_auth());
        assert!(!Problem::parse(403, br#"{"code":"quota_exceeded"}"#).is_auth());
        assert!(!Problem::parse(403, br#"{"code":"object_quarantined"}"#).is_auth());
        assert_eq!(
            Problem::parse(500, b"<html>").to_string(),
            "HTTP 500",
            "a body that is not a problem document is ignored"
        );
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
