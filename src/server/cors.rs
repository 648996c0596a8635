//! CORS for browser clients (tus-js-client, Uppy): which origins may call the
//! public API, and which tus headers their scripts may read.

use http::{HeaderMap, HeaderValue, Method, header};

const ALLOW_METHODS: &str = "POST, GET, HEAD, PATCH, DELETE, OPTIONS";
const ALLOW_HEADERS: &str = "Authorization, Origin, X-Requested-With, X-Request-Id, \
    X-HTTP-Method-Override, Content-Type, Upload-Length, Upload-Offset, Tus-Resumable, \
    Upload-Metadata, Upload-Defer-Length, Upload-Concat, Upload-Checksum, Range, If-Range, \
    If-None-Match";
const EXPOSE_HEADERS: &str = "Upload-Offset, Location, Upload-Length, Tus-Version, \
    Tus-Resumable, Tus-Max-Size, Tus-Extension, Tus-Checksum-Algorithm, Upload-Metadata, \
    Upload-Defer-Length, Upload-Concat, Upload-Expires, X-Request-Id, Content-Range, \
    Content-Disposition, Repr-Digest, ETag, Strongroom-Disposition, Strongroom-Reason, \
    Strongroom-Audit-Index, Retry-After, WWW-Authenticate";
const MAX_AGE: &str = "86400";

#[derive(Debug, Clone, Default)]
pub struct Cors {
    any: bool,
    origins: Vec<HeaderValue>,
}

impl Cors {
    pub fn new(allowed: &[String]) -> Cors {
        Cors {
            any: allowed.iter().any(|o| o == "*"),
            origins: allowed
                .iter()
                .filter(|o| *o != "*")
                .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok())
                .collect(),
        }
    }

    fn allows(&self, origin: &HeaderValue) -> bool {
        self.any || self.origins.iter().any(|o| o == origin)
    }

    /// True for a CORS preflight the caller should answer with `preflight`.
    pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
        method == Method::OPTIONS
            && headers.contains_key(header::ORIGIN)
            && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    }

    pub fn preflight(&self, origin: Option<&HeaderValue>, out: &mut HeaderMap) {
        if let Some(origin) = origin.filter(|o| self.allows(o)) {
            self.allow_origin(origin, out);
            out.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(ALLOW_METHODS),
            );
            out.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOW_HEADERS),
            );
            out.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static(MAX_AGE),
            );
        }
    }

    /// Decorates an ordinary response for an allowed origin.
    pub fn decorate(&self, origin: Option<&HeaderValue>, out: &mut HeaderMap) {
        if let Some(origin) = origin.filter(|o| self.allows(o)) {
            self.allow_origin(origin, out);
            out.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSE_HEADERS),
            );
        }
    }

    fn allow_origin(&self, origin: &HeaderValue, out: &mut HeaderMap) {
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        out.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}
