//! tus request parsing: turns (method, target, headers) into a typed TusRequest. Pure: no I/O, no storage, no HTTP status codes (the server maps `ParseError` to statuses in one place).
//!
//! Covers tus 1.0.0 core and the creation, creation-with-upload,
//! creation-defer-length, termination, expiration, checksum,
//! checksum-trailer, concatenation and concatenation-unfinished extensions.
//! The server splits the path into a [`Target`] and reads bodies and
//! trailers; everything it needs from the headers comes out of [`parse`]
//! already typed.
//!
//! Rules that hold for every header read here: names are case-insensitive;
//! a header repeated with identical values counts once, repeated with
//! different values it is invalid; client values quoted in an error message
//! are escaped and cut to [`ECHO_LIMIT`] bytes.

mod checksum;
mod concat;
mod encoding;
mod error;
mod headers;
mod metadata;
mod method;
pub mod names;
mod request;

#[cfg(test)]
mod tests;

use http::{HeaderMap, Method};

pub use checksum::{Checksum, ChecksumAlgorithm, ChecksumSpec, parse_trailer_checksum};
pub use concat::{Concat, MAX_CONCAT_PARTS};
pub use error::{ECHO_LIMIT, ParseError};
pub use headers::{OFFSET_OCTET_STREAM, parse_u64};
pub use metadata::{MAX_METADATA_BYTES, MAX_METADATA_PAIRS, Metadata};
pub use method::effective_method;
pub use request::{BodyInfo, CreateRequest, Length, PatchRequest};

use crate::id::UploadId;

/// The only protocol version spoken, for Tus-Resumable and Tus-Version.
pub const TUS_VERSION: &str = "1.0.0";

/// The Tus-Extension value.
pub fn extensions() -> &'static str {
    "creation,creation-with-upload,creation-defer-length,termination,expiration,\
     checksum,checksum-trailer,concatenation,concatenation-unfinished"
}

/// The Tus-Checksum-Algorithm value: [`ChecksumAlgorithm::ALL`] by name.
pub fn checksum_algorithms() -> &'static str {
    "sha1,sha256,md5"
}

/// What the request path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The creation endpoint, `/files`.
    Collection,
    /// One upload, `/files/{id}`.
    Upload(UploadId),
}

/// A tus request, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TusRequest {
    /// OPTIONS on either target; needs no Tus-Resumable.
    Options,
    /// POST on the collection.
    Create(CreateRequest),
    /// HEAD on an upload.
    Head(UploadId),
    /// PATCH on an upload.
    Patch(PatchRequest),
    /// DELETE on an upload.
    Terminate(UploadId),
}

/// Parses a request from its method (before X-HTTP-Method-Override, which
/// this applies), target and headers.
///
/// OPTIONS is answered whatever its headers. Every other request is first
/// checked for `Tus-Resumable: 1.0.0`, so a client speaking another version
/// learns that before anything else; then the method override is applied
/// and the method must suit the target.
pub fn parse(
    method: &Method,
    target: &Target,
    headers: &HeaderMap,
) -> Result<TusRequest, ParseError> {
    if method == Method::OPTIONS {
        return Ok(TusRequest::Options);
    }
    headers::check_tus_resumable(headers)?;
    let method = effective_method(method, headers)?;
    match *target {
        Target::Collection if method == Method::POST => {
            request::create(headers).map(TusRequest::Create)
        }
        Target::Upload(id) if method == Method::HEAD => Ok(TusRequest::Head(id)),
        Target::Upload(id) if method == Method::PATCH => {
            request::patch(id, headers).map(TusRequest::Patch)
        }
        Target::Upload(id) if method == Method::DELETE => Ok(TusRequest::Terminate(id)),
        Target::Collection | Target::Upload(_) => Err(ParseError::method_not_allowed(&method)),
    }
}
