//! Upload-Metadata: `key base64value,key2,key3 base64value`.
//!
//! Keys are non-empty runs of printable ASCII without space or comma; a value,
//! when present, follows its key after exactly one space and is standard
//! base64, padded or not. Whitespace around a pair is tolerated (some clients
//! write `a YQ==, b Yg==`); an empty or all-whitespace header is empty
//! metadata (tuspy sends `Upload-Metadata: `). Keys are case-sensitive and
//! must be unique.

use std::str::FromStr;

use base64::Engine as _;
use http::HeaderMap;

use super::encoding::BASE64;
use super::error::{ParseError, snippet};
use super::headers::{Conflict, single};
use super::names;

/// The longest Upload-Metadata header accepted, in bytes.
pub const MAX_METADATA_BYTES: usize = 4096;
/// The most key/value pairs accepted.
pub const MAX_METADATA_PAIRS: usize = 64;

/// Upload metadata, in the order the client sent it.
///
/// A key sent without a value reads back as an empty value: base64 of a
/// non-empty string is never empty, so the two cannot be confused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata(Vec<(String, Option<Vec<u8>>)>);

impl Metadata {
    /// Parses a header value; see the module documentation for the format.
    pub fn parse(header: &[u8]) -> Result<Self, ParseError> {
        if header.len() > MAX_METADATA_BYTES {
            return Err(invalid(format!("longer than {MAX_METADATA_BYTES} bytes")));
        }
        let header = std::str::from_utf8(header)
            .map_err(|_| invalid("contains bytes that are not ASCII".into()))?;
        let mut metadata = Metadata::default();
        if trim_ows(header).is_empty() {
            return Ok(metadata);
        }
        for pair in header.split(',') {
            let (key, value) = parse_pair(trim_ows(pair))?;
            metadata.push(key.to_owned(), value)?;
        }
        // Padding can make the encoding longer than an unpadded header; past
        // the limit it would not parse back (found by fuzzing).
        check_encoded_len(&metadata)?;
        Ok(metadata)
    }

    /// Builds metadata from pairs under the same rules as [`Metadata::parse`],
    /// so that its [`Metadata::encode`] always parses back to it.
    pub fn from_pairs<K, I>(pairs: I) -> Result<Self, ParseError>
    where
        K: Into<String>,
        I: IntoIterator<Item = (K, Option<Vec<u8>>)>,
    {
        let mut metadata = Metadata::default();
        for (key, value) in pairs {
            let key = key.into();
            check_key(&key)?;
            metadata.push(key, value.filter(|bytes| !bytes.is_empty()))?;
        }
        check_encoded_len(&metadata)?;
        Ok(metadata)
    }

    /// The value of `key`: empty for a key sent without a value, `None` for a
    /// key not sent.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(candidate, _)| candidate == key)
            .map(|(_, value)| value.as_deref().unwrap_or_default())
    }

    /// The value of `key` if it is valid UTF-8.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key)
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The pairs in the order sent; `None` for a key sent without a value.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
        self.0
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_deref()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The Upload-Metadata header value for this metadata (values padded,
    /// pairs joined by a bare comma), as a HEAD response carries it.
    pub fn encode(&self) -> String {
        self.0
            .iter()
            .map(|(key, value)| match value {
                Some(bytes) => format!("{key} {}", BASE64.encode(bytes)),
                None => key.clone(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    fn push(&mut self, key: String, value: Option<Vec<u8>>) -> Result<(), ParseError> {
        if self.0.len() == MAX_METADATA_PAIRS {
            return Err(invalid(format!("more than {MAX_METADATA_PAIRS} pairs")));
        }
        if self.contains_key(&key) {
            return Err(invalid(format!(
                "duplicate metadata key \"{}\"",
                snippet(key.as_bytes())
            )));
        }
        self.0.push((key, value));
        Ok(())
    }
}

/// Reads Upload-Metadata from the request; an absent header is empty metadata.
pub(super) fn from_headers(headers: &HeaderMap) -> Result<Metadata, ParseError> {
    match single(headers, names::UPLOAD_METADATA) {
        Ok(None) => Ok(Metadata::default()),
        Ok(Some(value)) => Metadata::parse(value.as_bytes()),
        Err(Conflict) => Err(invalid("sent more than once with different values".into())),
    }
}

impl FromStr for Metadata {
    type Err = ParseError;

    fn from_str(header: &str) -> Result<Self, Self::Err> {
        Metadata::parse(header.as_bytes())
    }
}

/// Stored as its header form, and validated again when read back.
impl serde::Serialize for Metadata {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.encode())
    }
}

impl<'de> serde::Deserialize<'de> for Metadata {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Every accepted value must encode within the limit, so [`Metadata::encode`]
/// always parses back.
fn check_encoded_len(metadata: &Metadata) -> Result<(), ParseError> {
    if metadata.encode().len() > MAX_METADATA_BYTES {
        return Err(invalid(format!(
            "encodes to more than {MAX_METADATA_BYTES} bytes"
        )));
    }
    Ok(())
}

fn invalid(reason: String) -> ParseError {
    ParseError::InvalidMetadata(reason)
}

/// Optional whitespace (RFC 9110 §5.6.3): spaces and tabs only.
fn trim_ows(text: &str) -> &str {
    text.trim_matches([' ', '\t'])
}

fn parse_pair(pair: &str) -> Result<(&str, Option<Vec<u8>>), ParseError> {
    if pair.is_empty() {
        return Err(invalid("empty pair".into()));
    }
    let (key, value) = match pair.split_once(' ') {
        Some((key, value)) => (key, Some(value)),
        None => (pair, None),
    };
    check_key(key)?;
    let value = value.map(|text| decode_value(key, text)).transpose()?;
    Ok((key, value))
}

fn check_key(key: &str) -> Result<(), ParseError> {
    let well_formed = !key.is_empty()
        && key
            .bytes()
            .all(|byte| byte.is_ascii_graphic() && byte != b',');
    if well_formed {
        Ok(())
    } else {
        Err(invalid(format!(
            "invalid metadata key \"{}\" (printable ASCII without space or comma expected)",
            snippet(key.as_bytes())
        )))
    }
}

fn decode_value(key: &str, text: &str) -> Result<Vec<u8>, ParseError> {
    if text.is_empty() || text.contains(' ') {
        return Err(invalid(format!(
            "key \"{}\" and its value must be separated by a single space",
            snippet(key.as_bytes())
        )));
    }
    BASE64.decode(text).map_err(|_| {
        invalid(format!(
            "value of key \"{}\" is not base64",
            snippet(key.as_bytes())
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(header: &str) -> Result<Metadata, ParseError> {
        header.parse()
    }

    fn error(header: &str) -> String {
        match parse(header) {
            Err(ParseError::InvalidMetadata(reason)) => reason,
            other => panic!("{header:?} gave {other:?}"),
        }
    }

    #[test]
    fn parses_keys_with_and_without_values() {
        let metadata =
            parse("filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential").expect("valid");
        assert_eq!(metadata.len(), 2);
        assert_eq!(
            metadata.get_str("filename"),
            Some("world_domination_plan.pdf")
        );
        assert_eq!(metadata.get("is_confidential"), Some(&b""[..]));
        assert!(metadata.contains_key("is_confidential"));
        assert_eq!(metadata.get("missing"), None);
        assert_eq!(
            metadata.iter().collect::<Vec<_>>(),
            vec![
                ("filename", Some(&b"world_domination_plan.pdf"[..])),
                ("is_confidential", None)
            ]
        );
    }

    #[test]
    fn empty_or_blank_header_is_empty_metadata() {
        for blank in ["", " ", "\t  "] {
            assert!(parse(blank).expect("blank").is_empty(), "{blank:?}");
        }
    }

    #[test]
    fn accepts_unpadded_values_and_spaces_around_pairs() {
        let metadata = parse("a YQ, b Yg==\t, c").expect("valid");
        assert_eq!(metadata.get("a"), Some(&b"a"[..]));
        assert_eq!(metadata.get("b"), Some(&b"b"[..]));
        assert_eq!(metadata.get("c"), Some(&b""[..]));
    }

    #[test]
    fn get_str_refuses_invalid_utf8() {
        let metadata = parse("bin //8=").expect("valid");
        assert_eq!(metadata.get("bin"), Some(&[0xff, 0xff][..]));
        assert_eq!(metadata.get_str("bin"), None);
    }

    #[test]
    fn rejects_bad_base64() {
        assert_eq!(error("name !!!!"), "value of key \"name\" is not base64");
        assert!(error("name YQ=x").contains("not base64"));
        assert!(error("name YR==").contains("not base64"), "trailing bits");
        assert!(error("name Y").contains("not base64"));
    }

    #[test]
    fn rejects_duplicate_keys() {
        assert_eq!(error("k YQ==,k Yg=="), "duplicate metadata key \"k\"");
        assert_eq!(error("k,k"), "duplicate metadata key \"k\"");
    }

    #[test]
    fn rejects_malformed_pairs() {
        assert_eq!(error("a YQ==,"), "empty pair");
        assert_eq!(error(",a"), "empty pair");
        assert_eq!(error("a,,b"), "empty pair");
        assert!(error("a  YQ==").contains("single space"));
        assert!(error("a YQ== Yg==").contains("single space"));
        assert!(error("ké dg==").contains("invalid metadata key"));
        assert!(error("a\u{7f} dg==").contains("\\x7f"));
    }

    #[test]
    fn rejects_oversized_headers() {
        let long = format!("k {}", "A".repeat(MAX_METADATA_BYTES));
        assert!(error(&long).contains("longer than 4096 bytes"));
        let many = (0..=MAX_METADATA_PAIRS)
            .map(|i| format!("k{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(error(&many).contains("more than 64 pairs"));
        let enough = (0..MAX_METADATA_PAIRS)
            .map(|i| format!("k{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(parse(&enough).map(|m| m.len()), Ok(MAX_METADATA_PAIRS));
        // Within the limit unpadded, past it once padded.
        let unpadded = format!("k {}", "A".repeat(MAX_METADATA_BYTES - 2));
        assert!(error(&unpadded).contains("encodes to more than 4096 bytes"));
    }

    #[test]
    fn encode_pads_and_joins_with_bare_commas() {
        let metadata = Metadata::from_pairs([
            ("filename", Some(b"a.txt".to_vec())),
            ("flag", None),
            ("one", Some(b"a".to_vec())),
        ])
        .expect("valid");
        assert_eq!(metadata.encode(), "filename YS50eHQ=,flag,one YQ==");
        assert_eq!(parse(&metadata.encode()), Ok(metadata));
    }

    #[test]
    fn from_pairs_applies_the_parse_rules() {
        assert!(Metadata::from_pairs([("a b", None)]).is_err());
        assert!(Metadata::from_pairs([("", None)]).is_err());
        assert!(Metadata::from_pairs([("a", None), ("a", None)]).is_err());
        let big = vec![0u8; MAX_METADATA_BYTES];
        assert!(Metadata::from_pairs([("a", Some(big))]).is_err());
        let empty_value = Metadata::from_pairs([("a", Some(Vec::new()))]).expect("valid");
        assert_eq!(parse(&empty_value.encode()), Ok(empty_value));
    }
}
