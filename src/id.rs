//! Upload and object identifiers. Owns their textual form; never generates
//! randomness itself (the caller supplies the bytes, see `crypto::random_array`).

use std::fmt;
use std::str::FromStr;

/// 128 random bits naming an upload and, once committed, its object.
///
/// The textual form is exactly 32 lowercase hex digits, so an id can never
/// carry `/`, `.`, `%` or NUL into a path or a header.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct UploadId([u8; 16]);

impl UploadId {
    pub const TEXT_LEN: usize = 32;

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        UploadId(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// A short prefix for log lines and messages.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an upload id (expected 32 lowercase hex digits)")]
pub struct InvalidId;

impl FromStr for UploadId {
    type Err = InvalidId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let well_formed = text.len() == Self::TEXT_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !well_formed {
            return Err(InvalidId);
        }
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| InvalidId)?;
        Ok(UploadId(bytes))
    }
}

impl serde::Serialize for UploadId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for UploadId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        let id = UploadId::from_bytes([0xab; 16]);
        assert_eq!(id.to_string().parse::<UploadId>(), Ok(id));
    }

    #[test]
    fn rejects_traversal_and_odd_forms() {
        for bad in [
            "..",
            "%2e%2e",
            "ABABABABABABABABABABABABABABABAB",
            "abababababababababababababababa\0",
            &"a".repeat(1000),
            "",
        ] {
            assert_eq!(bad.parse::<UploadId>(), Err(InvalidId), "{bad:?}");
        }
    }
}
