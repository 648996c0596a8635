//! The tus 1.0 protocol. `parse` turns headers into typed requests; this
//! module carries them out against `ingest` and describes the reply (status
//! and tus headers). Knows the protocol's rules, not sockets: the server
//! turns a `Reply` into a response and every error into its status.

pub mod parse;

use std::sync::Arc;

use http::{HeaderName, HeaderValue, StatusCode};

use crate::auth::{self, Action, Principal};
use crate::crypto::DigestAlgorithm;
use crate::id::UploadId;
use crate::ingest::{
    self, BodyStream, ChecksumRequest, Chunk, ChunkChecksum, Ingest, NewKind, NewUpload,
    UploadStatus,
};
use crate::staging::Disposition;

pub use parse::{ParseError, Target, TusRequest};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Ingest(#[from] ingest::Error),
    #[error(transparent)]
    Auth(#[from] auth::Error),
}

/// What the server needs to answer a tus request.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// Where uploads live, for `Location` headers.
#[derive(Debug, Clone)]
pub struct Routes {
    /// Prefix of upload URLs, ending in `/` (e.g. `/files/` or
    /// `https://host/files/`).
    pub upload_prefix: String,
}

/// Carries out one tus request for `principal`: creation needs
/// `upload:create`; HEAD, PATCH and DELETE need `upload:create` or that
/// upload's `upload:resume:<id>`, and only ever reach the principal's own
/// tenant's uploads.
pub async fn handle(
    ingest: &Arc<Ingest>,
    routes: &Routes,
    principal: &Principal,
    request: TusRequest,
    body: BodyStream,
) -> Result<Reply, Error> {
    let tenant = principal.tenant.as_str();
    match request {
        TusRequest::Options => Ok(options(ingest)),
        TusRequest::Create(create) => {
            principal.require(Action::CreateUpload)?;
            creation(ingest, routes, principal, create, body).await
        }
        TusRequest::Head(id) => {
            principal.require(Action::UseUpload(id))?;
            head(ingest, routes, id, tenant).await
        }
        TusRequest::Patch(patch) => {
            let id = patch.id;
            principal.require(Action::UseUpload(id))?;
            let chunk = Chunk {
                offset: patch.offset,
                length: patch.length,
                content_length: patch.body.content_length,
                checksum: checksum_request(&patch.body.checksum),
                authorized_until: principal.usable_until,
            };
            let status = ingest.patch(id, tenant, chunk, body).await?;
            Ok(progress_reply(StatusCode::NO_CONTENT, &status))
        }
        TusRequest::Terminate(id) => {
            principal.require(Action::UseUpload(id))?;
            ingest.terminate(id, tenant).await?;
            Ok(Reply {
                status: StatusCode::NO_CONTENT,
                headers: Vec::new(),
            })
        }
    }
}

fn options(ingest: &Ingest) -> Reply {
    let max = ingest.config().max_size.to_string();
    Reply {
        status: StatusCode::NO_CONTENT,
        headers: vec![
            header("tus-version", parse::TUS_VERSION),
            header("tus-extension", parse::extensions()),
            header("tus-max-size", &max),
            header("tus-checksum-algorithm", parse::checksum_algorithms()),
        ],
    }
}

async fn creation(
    ingest: &Arc<Ingest>,
    routes: &Routes,
    principal: &Principal,
    create: parse::CreateRequest,
    body: BodyStream,
) -> Result<Reply, Error> {
    let kind = match create.concat {
        parse::Concat::None => NewKind::Regular,
        parse::Concat::Partial => NewKind::Partial,
        parse::Concat::Final(parts) => NewKind::Final(parts),
    };
    let new = NewUpload {
        tenant: principal.tenant.clone(),
        length: match create.length {
            Some(parse::Length::Known(n)) => Some(n),
            _ => None,
        },
        metadata: stored_metadata(&create.metadata),
        kind,
    };
    let mut status = ingest.create(new).await?;
    if let Some(body_info) = create.body {
        let chunk = Chunk {
            offset: 0,
            length: None,
            content_length: body_info.content_length,
            checksum: checksum_request(&body_info.checksum),
            authorized_until: principal.usable_until,
        };
        status = ingest
            .patch(status.id, &principal.tenant, chunk, body)
            .await?;
    }
    let mut reply = progress_reply(StatusCode::CREATED, &status);
    let location = format!("{}{}", routes.upload_prefix, status.id);
    reply.headers.push(header("location", &location));
    Ok(reply)
}

async fn head(
    ingest: &Arc<Ingest>,
    routes: &Routes,
    id: UploadId,
    tenant: &str,
) -> Result<Reply, Error> {
    let status = ingest.head(id, tenant).await?;
    let mut reply = progress_reply(StatusCode::OK, &status);
    reply.headers.push(header("cache-control", "no-store"));
    match status.length {
        Some(length) => reply
            .headers
            .push(header("upload-length", &length.to_string())),
        None if status.final_parts.is_none() => {
            reply.headers.push(header("upload-defer-length", "1"))
        }
        None => {}
    }
    if !status.metadata.is_empty() {
        let encoded = metadata_header(&status.metadata);
        if let Ok(value) = HeaderValue::from_str(&encoded) {
            reply
                .headers
                .push((HeaderName::from_static("upload-metadata"), value));
        }
    }
    if status.is_partial {
        reply.headers.push(header("upload-concat", "partial"));
    }
    if let Some(parts) = &status.final_parts {
        // tus lists the parts as upload URLs, not bare ids.
        let list: Vec<String> = parts
            .iter()
            .map(|p| format!("{}{p}", routes.upload_prefix))
            .collect();
        reply.headers.push(header(
            "upload-concat",
            &format!("final;{}", list.join(" ")),
        ));
    }
    Ok(reply)
}

/// Offset and expiry headers shared by POST, HEAD and PATCH replies.
fn progress_reply(status: StatusCode, upload: &UploadStatus) -> Reply {
    let mut headers = Vec::new();
    if let Some(offset) = upload.offset {
        headers.push(header("upload-offset", &offset.to_string()));
    }
    if let Some(expires) = upload.expires_at {
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(expires);
        headers.push(header("upload-expires", &httpdate::fmt_http_date(when)));
    }
    headers.extend(verdict_headers(upload));
    Reply { status, headers }
}

/// Where a complete upload stands: `Strongroom-Disposition` (released,
/// pending, quarantined) and, when held, why, in `Strongroom-Reason`.
fn verdict_headers(upload: &UploadStatus) -> Vec<(HeaderName, HeaderValue)> {
    let Some(commit) = &upload.commit else {
        return Vec::new();
    };
    let disposition = match commit.disposition {
        Disposition::Released => "released",
        Disposition::Pending => "pending",
        Disposition::Quarantined => "quarantined",
    };
    let mut headers = vec![header("strongroom-disposition", disposition)];
    let reasons = upload
        .screening
        .as_ref()
        .map(|report| report.reasons.join("; "))
        .filter(|reasons| !reasons.is_empty());
    if let Some(reasons) = reasons
        && commit.disposition == Disposition::Quarantined
    {
        // Plugin text is sanitised but may hold non-ASCII: keep it readable
        // and always a valid header value.
        let ascii: String = reasons
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .take(512)
            .collect();
        headers.push(header("strongroom-reason", &ascii));
    }
    headers
}

fn checksum_request(spec: &parse::ChecksumSpec) -> ChecksumRequest {
    match spec {
        parse::ChecksumSpec::None => ChecksumRequest::None,
        parse::ChecksumSpec::Header(c) => ChecksumRequest::Header(chunk_checksum(c)),
        parse::ChecksumSpec::Trailer => ChecksumRequest::Trailer,
    }
}

/// Maps the protocol's checksum to the digest the pipeline computes.
pub fn chunk_checksum(checksum: &parse::Checksum) -> ChunkChecksum {
    ChunkChecksum {
        algorithm: match checksum.algorithm {
            parse::ChecksumAlgorithm::Sha1 => DigestAlgorithm::Sha1,
            parse::ChecksumAlgorithm::Sha256 => DigestAlgorithm::Sha256,
            parse::ChecksumAlgorithm::Md5 => DigestAlgorithm::Md5,
        },
        digest: checksum.digest.clone(),
    }
}

fn header(name: &'static str, value: &str) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static(name),
        HeaderValue::from_str(value).expect("tus header values are ASCII we produced"),
    )
}

/// Metadata as the index keeps it: values base64-encoded, as on the wire.
fn stored_metadata(metadata: &parse::Metadata) -> Vec<(String, Option<String>)> {
    use base64::Engine;
    metadata
        .iter()
        .map(|(key, value)| {
            let encoded = value.map(|v| base64::engine::general_purpose::STANDARD.encode(v));
            (key.to_owned(), encoded)
        })
        .collect()
}

/// The `Upload-Metadata` value for stored metadata.
fn metadata_header(stored: &[(String, Option<String>)]) -> String {
    let pairs: Vec<String> = stored
        .iter()
        .map(|(key, value)| match value {
            Some(value) => format!("{key} {value}"),
            None => key.clone(),
        })
        .collect();
    pairs.join(",")
}
