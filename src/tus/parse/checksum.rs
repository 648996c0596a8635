//! Upload-Checksum (`<algorithm> <base64 digest>`), sent as a header or, when
//! announced with `Trailer: Upload-Checksum`, as a trailer after the body.

use base64::Engine as _;
use http::HeaderMap;

use super::encoding::BASE64;
use super::error::{ParseError, snippet};
use super::headers::{Conflict, joined, single};
use super::names;

/// A checksum algorithm from the checksum extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChecksumAlgorithm {
    Sha1,
    Sha256,
    Md5,
}

impl ChecksumAlgorithm {
    /// Every supported algorithm, in the order Tus-Checksum-Algorithm lists them.
    pub const ALL: &'static [ChecksumAlgorithm] = &[
        ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256,
        ChecksumAlgorithm::Md5,
    ];

    /// The name tus uses for it.
    pub fn name(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Sha1 => "sha1",
            ChecksumAlgorithm::Sha256 => "sha256",
            ChecksumAlgorithm::Md5 => "md5",
        }
    }

    /// The algorithm called `name`, in any ASCII case.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|algorithm| algorithm.name().eq_ignore_ascii_case(name))
    }

    /// The digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            ChecksumAlgorithm::Sha1 => 20,
            ChecksumAlgorithm::Sha256 => 32,
            ChecksumAlgorithm::Md5 => 16,
        }
    }
}

/// A checksum the client claims for a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    pub algorithm: ChecksumAlgorithm,
    /// Exactly `algorithm.digest_len()` bytes.
    pub digest: Vec<u8>,
}

impl Checksum {
    /// Parses an Upload-Checksum value.
    pub fn parse(value: &[u8]) -> Result<Self, ParseError> {
        let text = std::str::from_utf8(value)
            .map_err(|_| invalid("contains bytes that are not ASCII".into()))?;
        let parts = text.split_once(' ').filter(|(name, _)| !name.is_empty());
        let Some((name, digest)) = parts else {
            return Err(invalid(
                "expected \"<algorithm> <base64 digest>\" separated by one space".into(),
            ));
        };
        let algorithm = ChecksumAlgorithm::from_name(name).ok_or_else(|| {
            ParseError::UnsupportedChecksumAlgorithm {
                got: snippet(name.as_bytes()),
            }
        })?;
        let digest = BASE64
            .decode(digest)
            .map_err(|_| invalid(format!("{} digest is not base64", algorithm.name())))?;
        if digest.len() != algorithm.digest_len() {
            return Err(invalid(format!(
                "{} digest must be {} bytes, got {}",
                algorithm.name(),
                algorithm.digest_len(),
                digest.len()
            )));
        }
        Ok(Checksum { algorithm, digest })
    }
}

/// How the checksum for a body arrives, if at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChecksumSpec {
    None,
    /// In the Upload-Checksum request header.
    Header(Checksum),
    /// Announced by `Trailer: Upload-Checksum`; read it from the trailers with
    /// [`parse_trailer_checksum`] once the body is consumed.
    Trailer,
}

/// The checksum spec of a request carrying a body.
pub(super) fn spec_from_headers(headers: &HeaderMap) -> Result<ChecksumSpec, ParseError> {
    let header = single(headers, names::UPLOAD_CHECKSUM);
    let announced = trailer_announced(headers);
    match header {
        Ok(Some(_)) | Err(Conflict) if announced => Err(ParseError::ChecksumHeaderAndTrailer),
        Ok(None) if announced => Ok(ChecksumSpec::Trailer),
        Ok(None) => Ok(ChecksumSpec::None),
        Ok(Some(value)) => Checksum::parse(value.as_bytes()).map(ChecksumSpec::Header),
        Err(Conflict) => Err(conflict()),
    }
}

/// The Upload-Checksum trailer, once the body has been read.
pub fn parse_trailer_checksum(trailers: &HeaderMap) -> Result<Checksum, ParseError> {
    single(trailers, names::UPLOAD_CHECKSUM)
        .map_err(|Conflict| conflict())?
        .ok_or(ParseError::MissingHeader(names::UPLOAD_CHECKSUM))
        .and_then(|value| Checksum::parse(value.as_bytes()))
}

/// Whether a Trailer header lists Upload-Checksum (field names are
/// case-insensitive; the list may be spread over several Trailer headers).
fn trailer_announced(headers: &HeaderMap) -> bool {
    let listed = joined(headers, names::TRAILER);
    listed.split(|&byte| byte == b',').any(|name| {
        name.trim_ascii()
            .eq_ignore_ascii_case(names::UPLOAD_CHECKSUM.as_bytes())
    })
}

fn invalid(reason: String) -> ParseError {
    ParseError::InvalidChecksum(reason)
}

fn conflict() -> ParseError {
    invalid("sent more than once with different values".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const SHA1_OF_HELLO: &str = "qvTGHdzF6KLavt4PO0gs2a6pQ00=";

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|&(name, value)| {
                (
                    http::HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    #[test]
    fn names_and_lengths() {
        let names: Vec<_> = ChecksumAlgorithm::ALL.iter().map(|a| a.name()).collect();
        assert_eq!(names.join(","), super::super::checksum_algorithms());
        assert_eq!(
            ChecksumAlgorithm::from_name("SHA256"),
            Some(ChecksumAlgorithm::Sha256)
        );
        assert_eq!(ChecksumAlgorithm::from_name("md4"), None);
    }

    #[test]
    fn parses_each_algorithm() {
        let sha1 = Checksum::parse(format!("sha1 {SHA1_OF_HELLO}").as_bytes()).expect("valid");
        assert_eq!(sha1.algorithm, ChecksumAlgorithm::Sha1);
        assert_eq!(
            hex::encode(&sha1.digest),
            "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"
        );
        let sha256 = format!("sha256 {}", BASE64.encode([7u8; 32]));
        assert_eq!(
            Checksum::parse(sha256.as_bytes()).map(|c| c.algorithm),
            Ok(ChecksumAlgorithm::Sha256)
        );
        let md5 = format!("md5 {}", BASE64.encode([7u8; 16]).trim_end_matches('='));
        assert_eq!(
            Checksum::parse(md5.as_bytes()).map(|c| c.digest),
            Ok(vec![7u8; 16])
        );
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            "sha1",
            "sha1 ",
            " qvTGHdzF6KLavt4PO0gs2a6pQ00=",
            "sha1  qvTGHdzF6KLavt4PO0gs2a6pQ00=",
            "sha1 not*base64",
            "sha1 YQ==",
            "md5 qvTGHdzF6KLavt4PO0gs2a6pQ00=",
            "sha1 qvTGHdzF6KLavt4PO0gs2a6pQ00= ",
        ] {
            assert!(
                matches!(
                    Checksum::parse(bad.as_bytes()),
                    Err(ParseError::InvalidChecksum(_))
                ),
                "{bad:?}"
            );
        }
        assert_eq!(
            Checksum::parse(b"sha1 YQ=="),
            Err(ParseError::InvalidChecksum(
                "sha1 digest must be 20 bytes, got 1".into()
            ))
        );
    }

    #[test]
    fn unknown_algorithm_is_its_own_error() {
        assert_eq!(
            Checksum::parse(b"crc32 AAAAAA=="),
            Err(ParseError::UnsupportedChecksumAlgorithm {
                got: "crc32".into()
            })
        );
        assert_eq!(
            Checksum::parse(b"\x01sha1 qvTGHdzF6KLavt4PO0gs2a6pQ00="),
            Err(ParseError::UnsupportedChecksumAlgorithm {
                got: "\\x01sha1".into()
            })
        );
    }

    #[test]
    fn spec_reads_header_or_trailer_announcement() {
        assert_eq!(spec_from_headers(&headers(&[])), Ok(ChecksumSpec::None));
        assert!(matches!(
            spec_from_headers(&headers(&[(
                "upload-checksum",
                "sha1 qvTGHdzF6KLavt4PO0gs2a6pQ00="
            )])),
            Ok(ChecksumSpec::Header(_))
        ));
        for announcement in [
            "Upload-Checksum",
            "upload-checksum",
            "Expires, Upload-Checksum ",
        ] {
            let mut map = HeaderMap::new();
            map.insert("trailer", HeaderValue::from_static(announcement));
            assert_eq!(
                spec_from_headers(&map),
                Ok(ChecksumSpec::Trailer),
                "{announcement:?}"
            );
        }
        assert_eq!(
            spec_from_headers(&headers(&[("trailer", "Expires")])),
            Ok(ChecksumSpec::None)
        );
    }

    #[test]
    fn header_and_trailer_together_are_refused() {
        let both = headers(&[
            ("upload-checksum", "sha1 qvTGHdzF6KLavt4PO0gs2a6pQ00="),
            ("trailer", "Upload-Checksum"),
        ]);
        assert_eq!(
            spec_from_headers(&both),
            Err(ParseError::ChecksumHeaderAndTrailer)
        );
    }

    #[test]
    fn trailer_value_is_parsed_after_the_body() {
        let trailers = headers(&[("upload-checksum", "sha1 qvTGHdzF6KLavt4PO0gs2a6pQ00=")]);
        assert_eq!(
            parse_trailer_checksum(&trailers).map(|c| c.algorithm),
            Ok(ChecksumAlgorithm::Sha1)
        );
        assert_eq!(
            parse_trailer_checksum(&HeaderMap::new()),
            Err(ParseError::MissingHeader("Upload-Checksum"))
        );
        assert!(matches!(
            parse_trailer_checksum(&headers(&[("upload-checksum", "sha1 zz")])),
            Err(ParseError::InvalidChecksum(_))
        ));
    }
}
