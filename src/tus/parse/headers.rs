//! Single-valued headers: numbers, Tus-Resumable, Upload-Defer-Length and the
//! media type of Content-Type.
//!
//! A header sent more than once counts as sent once when every copy is
//! byte-for-byte the same; copies that differ make it invalid, since no
//! choice between them would be safe.

use http::{HeaderMap, HeaderValue};

use super::error::{ParseError, snippet};
use super::names;

/// The media type of a tus body (`PATCH`, and `POST` with creation-with-upload).
pub const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";

/// The most digits a u64 can have.
const MAX_DIGITS: usize = 20;

/// Copies of one header that disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Conflict;

/// The value of `name`, if present and unambiguous.
pub(super) fn single<'a>(
    headers: &'a HeaderMap,
    name: &'static str,
) -> Result<Option<&'a HeaderValue>, Conflict> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.all(|other| other == first) {
        Ok(Some(first))
    } else {
        Err(Conflict)
    }
}

/// Strict decimal: 1 to 20 ASCII digits (leading zeros allowed) that fit a
/// u64; no sign, whitespace, exponent or radix prefix.
pub fn parse_u64(header: &'static str, value: &HeaderValue) -> Result<u64, ParseError> {
    let invalid = || ParseError::InvalidNumber { header };
    let digits = value.as_bytes();
    if digits.is_empty() || digits.len() > MAX_DIGITS || !digits.iter().all(u8::is_ascii_digit) {
        return Err(invalid());
    }
    digits
        .iter()
        .try_fold(0u64, |acc, &digit| {
            acc.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
        })
        .ok_or_else(invalid)
}

/// A numeric header that may be absent.
pub(super) fn optional_u64(
    headers: &HeaderMap,
    name: &'static str,
) -> Result<Option<u64>, ParseError> {
    single(headers, name)
        .map_err(|Conflict| ParseError::InvalidNumber { header: name })?
        .map(|value| parse_u64(name, value))
        .transpose()
}

/// Content-Length, if sent. Copies with different values are a conflict of
/// their own (a request-smuggling shape), not merely a bad number.
pub(super) fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ParseError> {
    single(headers, names::CONTENT_LENGTH)
        .map_err(|Conflict| ParseError::ConflictingLength)?
        .map(|value| parse_u64(names::CONTENT_LENGTH, value))
        .transpose()
}

/// Tus-Resumable must be present and exactly [`super::TUS_VERSION`].
pub(super) fn check_tus_resumable(headers: &HeaderMap) -> Result<(), ParseError> {
    let unsupported = |raw: &[u8]| ParseError::UnsupportedVersion { got: snippet(raw) };
    match single(headers, names::TUS_RESUMABLE) {
        Ok(None) => Err(ParseError::MissingTusResumable),
        Ok(Some(value)) if value.as_bytes() == super::TUS_VERSION.as_bytes() => Ok(()),
        Ok(Some(value)) => Err(unsupported(value.as_bytes())),
        Err(Conflict) => Err(unsupported(&joined(headers, names::TUS_RESUMABLE))),
    }
}

/// Whether Upload-Defer-Length was sent; its only valid value is `1`.
pub(super) fn defer_length(headers: &HeaderMap) -> Result<bool, ParseError> {
    match single(headers, names::UPLOAD_DEFER_LENGTH) {
        Ok(None) => Ok(false),
        Ok(Some(value)) if value.as_bytes() == b"1" => Ok(true),
        Ok(Some(_)) | Err(Conflict) => Err(ParseError::InvalidDeferLength),
    }
}

/// What Content-Type says about a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ContentType {
    /// No Content-Type, or an empty one.
    Absent,
    /// `application/offset+octet-stream`, in any case, with any parameters.
    OffsetOctetStream,
    /// Anything else, including disagreeing copies.
    Other,
}

pub(super) fn content_type(headers: &HeaderMap) -> ContentType {
    match single(headers, names::CONTENT_TYPE) {
        Ok(None) => ContentType::Absent,
        Ok(Some(value)) => classify_media_type(value.as_bytes()),
        Err(Conflict) => ContentType::Other,
    }
}

/// RFC 9110 §8.3.1: `type/subtype *( OWS ";" OWS parameter )`, the type and
/// subtype case-insensitive.
fn classify_media_type(value: &[u8]) -> ContentType {
    let essence = value
        .split(|&byte| byte == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if value.trim_ascii().is_empty() {
        ContentType::Absent
    } else if essence.eq_ignore_ascii_case(OFFSET_OCTET_STREAM.as_bytes()) {
        ContentType::OffsetOctetStream
    } else {
        ContentType::Other
    }
}

/// Whether the request may carry a body: a non-zero Content-Length, or none
/// with a Transfer-Encoding (HTTP/1.1 chunked).
pub(super) fn may_have_body(headers: &HeaderMap, content_length: Option<u64>) -> bool {
    content_length.map_or_else(|| headers.contains_key(names::TRANSFER_ENCODING), |n| n > 0)
}

/// Every copy of `name`, joined as one list value (RFC 9110 §5.3), for quoting.
pub(super) fn joined(headers: &HeaderMap, name: &'static str) -> Vec<u8> {
    headers
        .get_all(name)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect::<Vec<_>>()
        .join(&b", "[..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(text: &str) -> Result<u64, ParseError> {
        parse_u64(
            "Upload-Length",
            &HeaderValue::from_str(text).expect("test value"),
        )
    }

    #[test]
    fn accepts_plain_decimals() {
        assert_eq!(number("0"), Ok(0));
        assert_eq!(number("5"), Ok(5));
        assert_eq!(number("007"), Ok(7));
        assert_eq!(number("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(number("00000000000000000001"), Ok(1));
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "-1",
            "+5",
            "1e3",
            " 5",
            "5 ",
            "5 5",
            "18446744073709551616",
            "99999999999999999999",
            "000000000000000000001",
            "0x10",
            "5,5",
            "½",
            "５",
        ] {
            assert_eq!(
                number(bad),
                Err(ParseError::InvalidNumber {
                    header: "Upload-Length"
                }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn media_type_ignores_case_parameters_and_whitespace() {
        for good in [
            "application/offset+octet-stream",
            "Application/Offset+Octet-Stream",
            "application/offset+octet-stream; charset=binary",
            "application/offset+octet-stream ;x=y",
        ] {
            assert_eq!(
                classify_media_type(good.as_bytes()),
                ContentType::OffsetOctetStream,
                "{good:?}"
            );
        }
        assert_eq!(classify_media_type(b""), ContentType::Absent);
        assert_eq!(classify_media_type(b"  "), ContentType::Absent);
        for other in [
            "application/octet-stream",
            "application/offset+octet-streamx",
            "text/plain",
            ";application/offset+octet-stream",
        ] {
            assert_eq!(
                classify_media_type(other.as_bytes()),
                ContentType::Other,
                "{other:?}"
            );
        }
    }

    #[test]
    fn identical_copies_count_once_and_different_ones_conflict() {
        let mut headers = HeaderMap::new();
        headers.append("upload-length", HeaderValue::from_static("5"));
        headers.append("upload-length", HeaderValue::from_static("5"));
        assert_eq!(optional_u64(&headers, "Upload-Length"), Ok(Some(5)));
        headers.append("upload-length", HeaderValue::from_static("6"));
        assert_eq!(
            optional_u64(&headers, "Upload-Length"),
            Err(ParseError::InvalidNumber {
                header: "Upload-Length"
            })
        );
    }
}
