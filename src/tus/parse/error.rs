//! The client faults a tus request can have, one variant each.
//!
//! Messages name the header and the problem. Any part of the client's value
//! that they quote has passed through [`snippet`]: at most [`ECHO_LIMIT`]
//! bytes, with quotes, backslashes and every non-printable byte escaped.

/// How many bytes of a client's value an error message may quote.
pub const ECHO_LIMIT: usize = 64;

/// A client fault found while parsing a tus request. The server maps each
/// variant to a status in one place; nothing here knows about statuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("missing Tus-Resumable header")]
    MissingTusResumable,

    /// `got` is already escaped and truncated.
    #[error(
        "unsupported Tus-Resumable version \"{got}\" (expected {})",
        super::TUS_VERSION
    )]
    UnsupportedVersion { got: String },

    #[error("missing {0} header")]
    MissingHeader(&'static str),

    #[error("invalid {header} header: expected a decimal integer from 0 to 2^64-1")]
    InvalidNumber { header: &'static str },

    #[error("conflicting Content-Length headers")]
    ConflictingLength,

    #[error("both Upload-Length and Upload-Defer-Length given")]
    LengthAndDeferBoth,

    #[error("invalid Upload-Defer-Length header: the only allowed value is 1")]
    InvalidDeferLength,

    #[error("missing Upload-Length or Upload-Defer-Length header")]
    MissingLength,

    #[error("invalid Upload-Metadata header: {0}")]
    InvalidMetadata(String),

    #[error("unsupported Content-Type: expected application/offset+octet-stream")]
    UnsupportedContentType,

    #[error("invalid Upload-Checksum: {0}")]
    InvalidChecksum(String),

    /// `got` is already escaped and truncated.
    #[error(
        "unsupported Upload-Checksum algorithm \"{got}\" (supported: {})",
        super::checksum_algorithms()
    )]
    UnsupportedChecksumAlgorithm { got: String },

    #[error("both an Upload-Checksum header and a Trailer announcing it given")]
    ChecksumHeaderAndTrailer,

    #[error("invalid Upload-Concat header: {0}")]
    InvalidConcat(String),

    /// `method` is already escaped and truncated.
    #[error("method \"{method}\" not allowed on this resource")]
    MethodNotAllowed { method: String },

    #[error("invalid X-HTTP-Method-Override header: only PATCH, DELETE or HEAD may override POST")]
    InvalidMethodOverride,
}

impl ParseError {
    pub(super) fn method_not_allowed(method: &http::Method) -> Self {
        ParseError::MethodNotAllowed {
            method: snippet(method.as_str().as_bytes()),
        }
    }
}

/// A client's value made safe to quote in a message: the first
/// [`ECHO_LIMIT`] bytes, escaped like a byte string literal (so no control
/// character and no bare `"` survives), with `...` marking a cut.
pub fn snippet(raw: &[u8]) -> String {
    let kept = raw.len().min(ECHO_LIMIT);
    let mut text = raw[..kept].escape_ascii().to_string();
    if kept < raw.len() {
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_escapes_and_truncates() {
        assert_eq!(snippet(b"1.0.0"), "1.0.0");
        assert_eq!(snippet(b"a\"b\\c\x01\xff"), "a\\\"b\\\\c\\x01\\xff");
        let long = snippet(&[b'x'; 1000]);
        assert_eq!(long, format!("{}...", "x".repeat(ECHO_LIMIT)));
    }

    #[test]
    fn messages_are_lowercase_without_trailing_period() {
        let samples = [
            ParseError::MissingTusResumable,
            ParseError::UnsupportedVersion {
                got: "0.2.2".into(),
            },
            ParseError::MissingHeader("Upload-Offset"),
            ParseError::InvalidNumber {
                header: "Upload-Length",
            },
            ParseError::ConflictingLength,
            ParseError::LengthAndDeferBoth,
            ParseError::InvalidDeferLength,
            ParseError::MissingLength,
            ParseError::InvalidMetadata("x".into()),
            ParseError::UnsupportedContentType,
            ParseError::InvalidChecksum("x".into()),
            ParseError::UnsupportedChecksumAlgorithm { got: "md4".into() },
            ParseError::ChecksumHeaderAndTrailer,
            ParseError::InvalidConcat("x".into()),
            ParseError::MethodNotAllowed {
                method: "GET".into(),
            },
            ParseError::InvalidMethodOverride,
        ];
        for error in samples {
            let message = error.to_string();
            let first = message.chars().next().unwrap_or('?');
            assert!(first.is_ascii_lowercase(), "{message}");
            assert!(!message.ends_with('.'), "{message}");
        }
    }
}
