//! Upload-Concat: `partial`, or `final;<url> <url> ...` naming the partial
//! uploads to join, in order.
//!
//! Each URL is absolute (`https://host/files/<id>`) or a path
//! (`/files/<id>`); its last segment is the upload id. The host and the
//! segments before the id are not compared with anything (the server may sit
//! behind a proxy that rewrites both), but the path must be plain: no
//! percent-encoding, no query or fragment, no empty, `.` or `..` segment.

use std::collections::HashSet;

use http::HeaderMap;

use super::error::{ParseError, snippet};
use super::headers::{Conflict, single};
use super::names;
use crate::id::UploadId;

/// The most partial uploads one final upload may join.
pub const MAX_CONCAT_PARTS: usize = 1024;

/// The role of an upload in concatenation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Concat {
    /// An ordinary upload.
    #[default]
    None,
    /// A part, to be joined into a final upload later.
    Partial,
    /// The join of these partial uploads, in this order: distinct, at least
    /// one, at most [`MAX_CONCAT_PARTS`].
    Final(Vec<UploadId>),
}

impl Concat {
    /// Parses an Upload-Concat value.
    pub fn parse(value: &[u8]) -> Result<Self, ParseError> {
        let text = std::str::from_utf8(value)
            .map_err(|_| invalid("contains bytes that are not ASCII".into()))?;
        if text == "partial" {
            return Ok(Concat::Partial);
        }
        match text.strip_prefix("final;") {
            Some(urls) => parse_parts(urls).map(Concat::Final),
            None => Err(invalid(
                "expected \"partial\" or \"final;<url> <url> ...\"".into(),
            )),
        }
    }
}

/// Reads Upload-Concat from the request; absent means [`Concat::None`].
pub(super) fn from_headers(headers: &HeaderMap) -> Result<Concat, ParseError> {
    match single(headers, names::UPLOAD_CONCAT) {
        Ok(None) => Ok(Concat::None),
        Ok(Some(value)) => Concat::parse(value.as_bytes()),
        Err(Conflict) => Err(invalid("sent more than once with different values".into())),
    }
}

/// The space-separated URL list of a final upload (runs of spaces allowed).
fn parse_parts(urls: &str) -> Result<Vec<UploadId>, ParseError> {
    let mut parts = Vec::new();
    let mut seen = HashSet::new();
    for url in urls.split(' ').filter(|url| !url.is_empty()) {
        if parts.len() == MAX_CONCAT_PARTS {
            return Err(invalid(format!("more than {MAX_CONCAT_PARTS} parts")));
        }
        let id = id_from_url(url)?;
        if !seen.insert(id) {
            return Err(invalid(format!("duplicate part {id}")));
        }
        parts.push(id);
    }
    if parts.is_empty() {
        return Err(invalid("final upload lists no parts".into()));
    }
    Ok(parts)
}

fn id_from_url(url: &str) -> Result<UploadId, ParseError> {
    let bad = |reason: &str| invalid(format!("part \"{}\": {reason}", snippet(url.as_bytes())));
    let path =
        path_of(url).ok_or_else(|| bad("expected an http(s) URL or a path starting with /"))?;
    if !path.bytes().all(|byte| byte == b'/' || is_pchar(byte)) {
        return Err(bad(
            "path may not hold percent-encoding, a query, a fragment or other special characters",
        ));
    }
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    if segments
        .iter()
        .any(|segment| matches!(*segment, "" | "." | ".."))
    {
        return Err(bad("path may not hold an empty, \".\" or \"..\" segment"));
    }
    segments
        .last()
        .and_then(|last| last.parse().ok())
        .ok_or_else(|| bad("last path segment is not an upload id"))
}

/// The path (starting with `/`) of a path or an absolute http(s) URL.
fn path_of(url: &str) -> Option<&str> {
    if url.starts_with('/') {
        return Some(url);
    }
    let rest = strip_prefix_ignore_case(url, "https://")
        .or_else(|| strip_prefix_ignore_case(url, "http://"))?;
    let (authority, path) = rest.split_at(rest.find('/')?);
    let plain_authority = !authority.is_empty()
        && authority
            .bytes()
            .all(|byte| is_pchar(byte) || byte == b'[' || byte == b']');
    plain_authority.then_some(path)
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// RFC 3986 `pchar` without `pct-encoded`: unreserved, sub-delims, `:`, `@`.
fn is_pchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&byte)
}

fn invalid(reason: String) -> ParseError {
    ParseError::InvalidConcat(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef0123456789abcdef";
    const B: &str = "fedcba9876543210fedcba9876543210";

    fn id(text: &str) -> UploadId {
        text.parse().expect("test id")
    }

    fn parse(text: &str) -> Result<Concat, ParseError> {
        Concat::parse(text.as_bytes())
    }

    fn reason(text: &str) -> String {
        match parse(text) {
            Err(ParseError::InvalidConcat(reason)) => reason,
            other => panic!("{text:?} gave {other:?}"),
        }
    }

    #[test]
    fn partial() {
        assert_eq!(parse("partial"), Ok(Concat::Partial));
    }

    #[test]
    fn final_with_paths_and_absolute_urls() {
        let expected = Ok(Concat::Final(vec![id(A), id(B)]));
        assert_eq!(parse(&format!("final;/files/{A} /files/{B}")), expected);
        assert_eq!(
            parse(&format!(
                "final;http://example.com/files/{A} https://example.com:8443/files/{B}"
            )),
            expected
        );
        assert_eq!(
            parse(&format!("final; HTTPS://[::1]:1080/tus/files/{A}  /{B} ")),
            expected
        );
    }

    #[test]
    fn rejects_other_forms() {
        for bad in [
            "",
            "Partial",
            "final",
            "final:/files/x",
            "partial;",
            "parallel",
        ] {
            assert!(reason(bad).starts_with("expected"), "{bad:?}");
        }
        assert_eq!(reason("final;"), "final upload lists no parts");
        assert_eq!(reason("final;   "), "final upload lists no parts");
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            format!("final;{A}"),
            format!("final;files/{A}"),
            format!("final;ftp://host/files/{A}"),
            format!("final;http:///files/{A}"),
            "final;http://host".to_owned(),
            format!("final;/files/{A}/"),
            format!("final;/files/{A}?x=1"),
            format!("final;/files/{A}#frag"),
            "final;/files/x".to_owned(),
            format!("final;/files/{}", A.to_uppercase()),
            format!("final;http://us@er@host\\/files/{A}"),
        ] {
            assert!(reason(&bad).starts_with("part \""), "{bad:?}");
        }
    }

    #[test]
    fn rejects_dot_segments_and_percent_encoding() {
        for bad in [
            format!("final;/files/../files/{A}"),
            format!("final;/files/./{A}"),
            format!("final;/files/{A}/.."),
            format!("final;http://host/files/../{A}"),
            format!("final;/files/%2e%2e/{A}"),
            format!("final;/files/%2E%2E/{A}"),
            format!("final;/files/{A}%2f"),
            format!("final;//host/files/{A}"),
        ] {
            assert!(reason(&bad).starts_with("part \""), "{bad:?}");
        }
    }

    #[test]
    fn rejects_duplicates_and_too_many_parts() {
        assert_eq!(
            reason(&format!("final;/files/{A} http://h/files/{A}")),
            format!("duplicate part {A}")
        );
        let many: Vec<String> = (0..=MAX_CONCAT_PARTS)
            .map(|i| format!("/files/{:032x}", i))
            .collect();
        assert_eq!(
            reason(&format!("final;{}", many.join(" "))),
            "more than 1024 parts"
        );
        let enough = many[..MAX_CONCAT_PARTS].join(" ");
        assert!(matches!(
            parse(&format!("final;{enough}")),
            Ok(Concat::Final(parts)) if parts.len() == MAX_CONCAT_PARTS
        ));
    }

    #[test]
    fn long_urls_are_not_echoed_whole() {
        let long = format!("final;/{}", "a".repeat(10_000));
        assert!(reason(&long).len() < 200);
    }
}
