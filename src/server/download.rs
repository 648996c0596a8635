//! Object downloads: headers (ETag, Repr-Digest, Content-Disposition, Range)
//! and a streamed body fed segment by segment with backpressure. A segment
//! that fails its integrity check ends the stream with an error, so the
//! client sees a broken transfer, never wrong bytes.

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::auth::{Action, Principal};
use crate::id::UploadId;
use crate::ingest::{Download, Ingest};
use crate::metrics::Metrics;
use crate::store::{ByteRange, RangeRequest, parse_range};

use super::{Body, BoxError, Problem, empty_response};

pub async fn get(
    ingest: &Arc<Ingest>,
    principal: &Principal,
    id: UploadId,
    request: &HeaderMap,
    with_body: bool,
) -> Result<Response<Body>, Problem> {
    principal.require(Action::ReadObject(id))?;
    let download = ingest.open_object(id, &principal.tenant).await?;
    respond(ingest, &download, &principal.tenant, request, with_body)
}

/// Answers a GET or HEAD of an opened object: conditional requests, Range,
/// and the body streamed with backpressure, its bytes counted as the
/// tenant's egress.
pub fn respond(
    ingest: &Ingest,
    download: &Download,
    tenant: &str,
    request: &HeaderMap,
    with_body: bool,
) -> Result<Response<Body>, Problem> {
    let etag = format!("\"{}\"", download.sha256);
    if request
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes() || v == "*")
    {
        let mut response = empty_response(StatusCode::NOT_MODIFIED);
        response
            .headers_mut()
            .insert(header::ETAG, header_value(&etag));
        return Ok(response);
    }
    let range = requested_range(request, &etag, download.length);
    let (status, range) = match range {
        RangeRequest::Full => (StatusCode::OK, ByteRange::full(download.length)),
        RangeRequest::Partial(range) => (StatusCode::PARTIAL_CONTENT, range),
        RangeRequest::Unsatisfiable => {
            return Err(Problem::range_not_satisfiable(download.length));
        }
    };
    let body = if with_body && !range.is_empty() {
        stream_body(download, range, ingest.metrics().clone(), tenant.to_owned())
    } else {
        super::full_response(status, Bytes::new()).into_body()
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    describe(response.headers_mut(), download, &etag, status, range);
    Ok(response)
}

/// The range to serve: `If-Range` with another validator means the client's
/// copy is stale, so it gets everything.
fn requested_range(request: &HeaderMap, etag: &str, length: u64) -> RangeRequest {
    let Some(range) = request.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeRequest::Full;
    };
    if request
        .get(header::IF_RANGE)
        .is_some_and(|v| v.as_bytes() != etag.as_bytes())
    {
        return RangeRequest::Full;
    }
    parse_range(range, length)
}

fn stream_body(
    download: &Download,
    range: ByteRange,
    metrics: Arc<Metrics>,
    tenant: String,
) -> Body {
    let rx = download.stream(range);
    let frames = tokio_stream_from(rx).map(move |chunk| {
        if let Ok(bytes) = &chunk {
            metrics.egress(&tenant, bytes.len() as u64);
        }
        chunk.map(Frame::data).map_err(|err| -> BoxError {
            tracing::error!(error = %err, "download aborted: segment failed verification");
            Box::new(err)
        })
    });
    BodyExt::boxed(StreamBody::new(frames))
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn describe(
    headers: &mut HeaderMap,
    download: &Download,
    etag: &str,
    status: StatusCode,
    range: ByteRange,
) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(range.len()));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::ETAG, header_value(etag));
    headers.insert("repr-digest", header_value(&repr_digest(&download.sha256)));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-transform"),
    );
    let modified = std::time::UNIX_EPOCH + std::time::Duration::from_secs(download.committed_at);
    headers.insert(
        header::LAST_MODIFIED,
        header_value(&httpdate::fmt_http_date(modified)),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        header_value(&content_disposition(download.filename.as_deref())),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        let value = format!(
            "bytes {}-{}/{}",
            range.start,
            range.end - 1,
            download.length
        );
        headers.insert(header::CONTENT_RANGE, header_value(&value));
    }
}

/// RFC 9530 `Repr-Digest` for the whole representation (also on 206).
fn repr_digest(sha256_hex: &str) -> String {
    let bytes = hex::decode(sha256_hex).unwrap_or_default();
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    format!("sha-256=:{b64}:")
}

/// Characters escaped in the RFC 8187 `filename*` parameter.
const ATTR_CHAR_ESCAPES: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'%')
    .add(b'\'')
    .add(b'(')
    .add(b')')
    .add(b'*')
    .add(b',')
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'<')
    .add(b'=')
    .add(b'>')
    .add(b'?')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'{')
    .add(b'}');

/// `attachment` with the client's filename reduced to a harmless base name:
/// no path, no control characters (so never CR/LF/NUL in a header), an ASCII
/// fallback and the exact name in `filename*`.
pub fn content_disposition(filename: Option<&str>) -> String {
    let name = filename.map(sanitize_filename).filter(|n| !n.is_empty());
    let Some(name) = name else {
        return "attachment".to_owned();
    };
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = utf8_percent_encode(&name, ATTR_CHAR_ESCAPES);
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

fn sanitize_filename(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base.chars().filter(|c| !c.is_control()).take(200).collect();
    cleaned.trim().trim_start_matches('.').to_owned()
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_lose_paths_and_control_characters() {
        assert_eq!(
            content_disposition(Some("../../etc/pass\r\nwd.txt")),
            "attachment; filename=\"passwd.txt\"; filename*=UTF-8''passwd.txt"
        );
        assert_eq!(content_disposition(Some("..")), "attachment");
        assert_eq!(content_disposition(None), "attachment");
    }

    #[test]
    fn non_ascii_names_get_an_ascii_fallback_and_an_exact_form() {
        let value = content_disposition(Some("résumé \"v2\".pdf"));
        assert_eq!(
            value,
            "attachment; filename=\"r_sum_ _v2_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22v2%22.pdf"
        );
    }
}
