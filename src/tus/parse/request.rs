//! The typed requests that carry data (creation and PATCH), and how their
//! headers combine.

use http::HeaderMap;

use super::checksum::{self, ChecksumSpec};
use super::concat::{self, Concat};
use super::error::ParseError;
use super::headers::{self, ContentType};
use super::metadata::{self, Metadata};
use super::names;
use crate::id::UploadId;

/// The declared size of an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    Known(u64),
    /// `Upload-Defer-Length: 1`: a later PATCH will say.
    Deferred,
}

/// POST on the creation endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRequest {
    /// `None` only for a final concatenation, whose length is the sum of its
    /// parts.
    pub length: Option<Length>,
    pub metadata: Metadata,
    pub concat: Concat,
    /// creation-with-upload: the body holds the first bytes of the upload.
    pub body: Option<BodyInfo>,
}

/// PATCH on an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchRequest {
    pub id: UploadId,
    pub offset: u64,
    /// Upload-Length, which fixes a deferred length.
    pub length: Option<u64>,
    pub body: BodyInfo,
}

/// What the headers say about a body of upload bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyInfo {
    /// `None` when the body is streamed without a length (chunked, or HTTP/2
    /// without Content-Length).
    pub content_length: Option<u64>,
    pub checksum: ChecksumSpec,
}

pub(super) fn create(headers: &HeaderMap) -> Result<CreateRequest, ParseError> {
    let length = headers::optional_u64(headers, names::UPLOAD_LENGTH)?;
    let deferred = headers::defer_length(headers)?;
    let concat = concat::from_headers(headers)?;
    let metadata = metadata::from_headers(headers)?;
    let body = creation_body(headers)?;
    let length = match concat {
        Concat::Final(_) => final_length(length, deferred, body.is_some())?,
        Concat::None | Concat::Partial => Some(declared_length(length, deferred)?),
    };
    Ok(CreateRequest {
        length,
        metadata,
        concat,
        body,
    })
}

pub(super) fn patch(id: UploadId, headers: &HeaderMap) -> Result<PatchRequest, ParseError> {
    if headers::content_type(headers) != ContentType::OffsetOctetStream {
        return Err(ParseError::UnsupportedContentType);
    }
    let offset = headers::optional_u64(headers, names::UPLOAD_OFFSET)?
        .ok_or(ParseError::MissingHeader(names::UPLOAD_OFFSET))?;
    let length = headers::optional_u64(headers, names::UPLOAD_LENGTH)?;
    let content_length = headers::content_length(headers)?;
    let body = body_info(headers, content_length)?;
    Ok(PatchRequest {
        id,
        offset,
        length,
        body,
    })
}

/// creation-with-upload: a body counts only under the tus media type. A body
/// under another media type is refused rather than silently dropped; a POST
/// without Content-Type, or with an empty body, creates an empty upload.
fn creation_body(headers: &HeaderMap) -> Result<Option<BodyInfo>, ParseError> {
    let content_length = headers::content_length(headers)?;
    match headers::content_type(headers) {
        ContentType::OffsetOctetStream if content_length != Some(0) => {
            body_info(headers, content_length).map(Some)
        }
        ContentType::Other if headers::may_have_body(headers, content_length) => {
            Err(ParseError::UnsupportedContentType)
        }
        _ => Ok(None),
    }
}

fn body_info(headers: &HeaderMap, content_length: Option<u64>) -> Result<BodyInfo, ParseError> {
    Ok(BodyInfo {
        content_length,
        checksum: checksum::spec_from_headers(headers)?,
    })
}

fn declared_length(length: Option<u64>, deferred: bool) -> Result<Length, ParseError> {
    match (length, deferred) {
        (Some(_), true) => Err(ParseError::LengthAndDeferBoth),
        (Some(length), false) => Ok(Length::Known(length)),
        (None, true) => Ok(Length::Deferred),
        (None, false) => Err(ParseError::MissingLength),
    }
}

/// A final upload's length is the sum of its parts, and its content is
/// theirs: it may declare neither, nor carry bytes of its own.
fn final_length(
    length: Option<u64>,
    deferred: bool,
    has_body: bool,
) -> Result<Option<Length>, ParseError> {
    if length.is_some() || deferred {
        return Err(ParseError::InvalidConcat(
            "a final upload may not carry Upload-Length or Upload-Defer-Length".into(),
        ));
    }
    if has_body {
        return Err(ParseError::InvalidConcat(
            "a final upload may not carry a body".into(),
        ));
    }
    Ok(None)
}
