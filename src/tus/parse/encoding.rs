//! Base64 as tus uses it (RFC 4648 §4, the standard alphabet): written with
//! padding, read with or without it. Non-canonical trailing bits are refused,
//! so each byte string has exactly one accepted padded and unpadded spelling.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

pub(super) const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
