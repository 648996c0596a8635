//! Every error the public API can answer with, mapped to its HTTP status and
//! stable code in one place. Bodies are RFC 9457 `application/problem+json`.
//! A 500 says only "internal error" and the request id; the cause is logged
//! once, here.
//!
//! The codes are a public contract (README "Error codes"): never rename one.

use http::StatusCode;
use serde::Serialize;

use crate::ingest::{self, BodyError};
use crate::store;
use crate::tus::{self, ParseError};

/// A client-facing error: status, stable code, human detail.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    /// RFC 9457 extension members, e.g. which plugin rejected an upload.
    pub extensions: serde_json::Map<String, serde_json::Value>,
    /// Seconds for `Retry-After`, when the client should come back later.
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    code: &'a str,
    detail: &'a str,
    request_id: &'a str,
    #[serde(flatten)]
    extensions: &'a serde_json::Map<String, serde_json::Value>,
}

/// 460 is tus's "Checksum Mismatch".
pub const CHECKSUM_MISMATCH: u16 = 460;

/// A tenant's quota refused the bytes.
pub const QUOTA_EXCEEDED: &str = "quota_exceeded";

/// Whether a problem code is a refusal by authentication or authorisation
/// (counted in `strongroom_auth_failures_total`).
pub fn is_auth_failure(code: &str) -> bool {
    matches!(
        code,
        "authentication_required"
            | "token_invalid"
            | "token_expired"
            | "token_revoked"
            | "api_key_not_a_token"
            | "credential_invalid"
            | "scope_insufficient"
            | "scope_not_grantable"
            | "presign_invalid"
            | "presign_expired"
            | "authentication_rate_limited"
    )
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            code,
            detail: detail.into(),
            extensions: serde_json::Map::new(),
            retry_after: None,
        }
    }

    fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Problem {
        self.extensions.insert(key.to_owned(), value.into());
        self
    }

    pub(crate) fn internal(cause: &dyn std::fmt::Display) -> Problem {
        tracing::error!(error = %cause, "internal error");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    pub fn route_not_found() -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "route_not_found", "no such endpoint")
    }

    pub fn method_not_allowed(method: &http::Method) -> Problem {
        Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("method {method} is not allowed here"),
        )
    }

    pub fn invalid_id() -> Problem {
        Problem::new(
            StatusCode::NOT_FOUND,
            "invalid_upload_id",
            "not an upload id (expected 32 lowercase hex digits)",
        )
    }

    /// More header fields than `server.max_headers`. hyper answers 431 itself
    /// for HTTP/1.1 (no body); this is the same limit for HTTP/2, which
    /// only bounds the header block's size.
    pub fn too_many_headers(limit: usize) -> Problem {
        Problem::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too_many_headers",
            format!("more than {limit} header fields"),
        )
    }

    /// 503: a record of this request could not be made durable and
    /// `audit.on_failure = "refuse"`. The cause (a file and an errno) is
    /// logged where it happened; the client learns only that nothing it
    /// asked for is confirmed.
    pub fn audit_unavailable() -> Problem {
        let mut problem = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            "the audit trail cannot record this request, so it is not confirmed; \
             an upload that was completing stays pending",
        );
        problem.retry_after = Some(60);
        problem
    }

    pub fn range_not_satisfiable(length: u64) -> Problem {
        Problem::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "range_not_satisfiable",
            format!("the range lies outside the object's {length} bytes"),
        )
    }

    pub fn body_json(&self, request_id: &str) -> Vec<u8> {
        let title = self
            .status
            .canonical_reason()
            .unwrap_or("Checksum Mismatch");
        let body = ProblemBody {
            kind: format!("urn:strongroom:error:{}", self.code),
            title,
            status: self.status.as_u16(),
            code: self.code,
            detail: &self.detail,
            request_id,
            extensions: &self.extensions,
        };
        serde_json::to_vec(&body).expect("problem serialises")
    }
}

impl From<tus::Error> for Problem {
    fn from(err: tus::Error) -> Problem {
        match err {
            tus::Error::Parse(e) => from_parse(e),
            tus::Error::Ingest(e) => e.into(),
            tus::Error::Auth(e) => e.into(),
        }
    }
}

fn from_parse(err: ParseError) -> Problem {
    use ParseError as P;
    let (status, code) = match &err {
        P::MissingTusResumable | P::UnsupportedVersion { .. } => {
            (StatusCode::PRECONDITION_FAILED, "tus_version_unsupported")
        }
        P::MissingHeader(_) => (StatusCode::BAD_REQUEST, "missing_header"),
        P::InvalidNumber { .. } | P::ConflictingLength => {
            (StatusCode::BAD_REQUEST, "invalid_number")
        }
        P::LengthAndDeferBoth | P::InvalidDeferLength | P::MissingLength => {
            (StatusCode::BAD_REQUEST, "invalid_upload_length")
        }
        P::InvalidMetadata(_) => (StatusCode::BAD_REQUEST, "invalid_metadata"),
        P::UnsupportedContentType => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_content_type",
        ),
        P::InvalidChecksum(_) | P::ChecksumHeaderAndTrailer => {
            (StatusCode::BAD_REQUEST, "invalid_checksum")
        }
        P::UnsupportedChecksumAlgorithm { .. } => {
            (StatusCode::BAD_REQUEST, "checksum_algorithm_unsupported")
        }
        P::InvalidConcat(_) => (StatusCode::BAD_REQUEST, "invalid_concat"),
        P::MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        P::InvalidMethodOverride => (StatusCode::BAD_REQUEST, "invalid_method_override"),
    };
    Problem::new(status, code, err.to_string())
}

impl From<ingest::Error> for Problem {
    fn from(err: ingest::Error) -> Problem {
        use ingest::Error as I;
        let (status, code) = match &err {
            I::NotFound(_) => (StatusCode::NOT_FOUND, "upload_not_found"),
            I::Expired(_) => (StatusCode::GONE, "upload_expired"),
            I::OffsetMismatch { .. } => (StatusCode::CONFLICT, "offset_mismatch"),
            I::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "upload_too_large"),
            I::BodyTooLong { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "body_exceeds_upload_length"),
            I::LengthAlreadySet { .. } | I::LengthBelowOffset { .. } => {
                (StatusCode::BAD_REQUEST, "invalid_upload_length")
            }
            I::ChecksumMismatch { .. } | I::MissingTrailerChecksum => (
                StatusCode::from_u16(CHECKSUM_MISMATCH).expect("460 is a valid status"),
                "checksum_mismatch",
            ),
            I::PatchOnFinal(_) => (StatusCode::FORBIDDEN, "final_upload_immutable"),
            I::AlreadyComplete(_) => (StatusCode::CONFLICT, "upload_complete"),
            I::InvalidConcat(_) => (StatusCode::BAD_REQUEST, "invalid_concat"),
            I::Locked(_) => (StatusCode::LOCKED, "upload_locked"),
            I::Superseded(_) => (StatusCode::CONFLICT, "upload_superseded"),
            I::NotDownloadable(_) => (StatusCode::NOT_FOUND, "object_not_found"),
            I::Stopped(_) => (StatusCode::SERVICE_UNAVAILABLE, "upload_stopped"),
            I::AuthorizationExpired => (StatusCode::UNAUTHORIZED, "token_expired"),
            I::Body(BodyError::Disconnected(_)) => (StatusCode::BAD_REQUEST, "body_incomplete"),
            I::Body(BodyError::BadTrailer(_)) => (StatusCode::BAD_REQUEST, "invalid_checksum"),
            I::Body(BodyError::TooSlow { .. }) => (StatusCode::REQUEST_TIMEOUT, "body_too_slow"),
            I::BodyIdle(_) => (StatusCode::REQUEST_TIMEOUT, "body_timeout"),
            I::Shutdown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            I::Quarantined(_) => (StatusCode::FORBIDDEN, "object_quarantined"),
            I::NotQuarantined(_) => (StatusCode::CONFLICT, "object_not_quarantined"),
            I::VerdictPending(_) => (StatusCode::CONFLICT, "verdict_pending"),
            I::ScreeningUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "inspection_busy"),
            I::Rejected(rejection) => return rejected(rejection),
            // Replaced by the rejection before a request answers; if it ever
            // were not, the upload was still stopped by its inspection.
            I::StoppedByScreening => (StatusCode::UNPROCESSABLE_ENTITY, "upload_rejected"),
            I::Staging(e) if e.is_storage_full() => {
                (StatusCode::INSUFFICIENT_STORAGE, "storage_full")
            }
            I::Crypto(e) if e.is_key_provider_unavailable() => return key_provider_unavailable(e),
            I::Crypto(crate::crypto::Error::UnknownKek(_)) => {
                (StatusCode::GONE, "object_key_destroyed")
            }
            I::Crypto(crate::crypto::Error::InvalidTenant(_)) => {
                (StatusCode::BAD_REQUEST, "invalid_tenant")
            }
            I::RotationInProgress => (StatusCode::CONFLICT, "rotation_in_progress"),
            I::NoManifest(_) => (StatusCode::NOT_FOUND, "manifest_not_found"),
            I::Audit(_) => return Problem::audit_unavailable(),
            I::NoKeysForTenant(_) => (StatusCode::NOT_FOUND, "tenant_has_no_keys"),
            I::QuotaExceeded(exceeded) => return quota_exceeded(exceeded),
            I::Staging(_) | I::Crypto(_) | I::Store(_) | I::Task(_) => {
                return Problem::internal(&err);
            }
        };
        Problem::new(status, code, err.to_string())
    }
}

impl From<crate::auth::Error> for Problem {
    fn from(err: crate::auth::Error) -> Problem {
        use crate::auth::Error as A;
        let (status, code) = match &err {
            A::Missing => (StatusCode::UNAUTHORIZED, "authentication_required"),
            A::BadScheme | A::InvalidToken(_) => (StatusCode::UNAUTHORIZED, "token_invalid"),
            A::TokenExpired => (StatusCode::UNAUTHORIZED, "token_expired"),
            A::TokenRevoked => (StatusCode::UNAUTHORIZED, "token_revoked"),
            A::ApiKeyNotAToken => (StatusCode::UNAUTHORIZED, "api_key_not_a_token"),
            A::InvalidApiKey | A::UnknownCertificate => {
                (StatusCode::UNAUTHORIZED, "credential_invalid")
            }
            A::Forbidden { .. } => (StatusCode::FORBIDDEN, "scope_insufficient"),
            A::ScopeNotGrantable(_) => (StatusCode::FORBIDDEN, "scope_not_grantable"),
            A::PresignInvalid => (StatusCode::FORBIDDEN, "presign_invalid"),
            A::PresignExpired => (StatusCode::FORBIDDEN, "presign_expired"),
            A::TooManyFailures { retry_after } => {
                let mut problem = Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "authentication_rate_limited",
                    err.to_string(),
                );
                problem.retry_after = Some(retry_after.as_secs().max(1));
                return problem;
            }
            A::BadRequest(_) => (StatusCode::BAD_REQUEST, "token_request_invalid"),
            A::InvalidTenant(_) => (StatusCode::BAD_REQUEST, "invalid_tenant"),
            A::TenantExists(_) => (StatusCode::CONFLICT, "tenant_exists"),
            A::UnknownTenant(_) => (StatusCode::NOT_FOUND, "tenant_not_found"),
            A::UnknownKey(_) | A::UnknownSigningKey(_) => (StatusCode::NOT_FOUND, "key_not_found"),
            A::Store { .. } | A::Corrupt { .. } | A::Keys(_) => return Problem::internal(&err),
        };
        Problem::new(status, code, err.to_string())
    }
}

impl From<crate::admin::Error> for Problem {
    fn from(err: crate::admin::Error) -> Problem {
        use crate::admin::Error as A;
        let err = match err {
            A::Keys(inner) | A::Ingest(inner) => return Problem::from(inner),
            other => other,
        };
        let (status, code) = match &err {
            A::NoPolicy => (StatusCode::NOT_FOUND, "no_policy_configured"),
            A::NoAudit => (StatusCode::NOT_FOUND, "no_audit_checkpoint"),
            A::PolicyRefused(_) => (StatusCode::UNPROCESSABLE_ENTITY, "policy_refused"),
            A::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request_body"),
            A::InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            A::Keys(_) | A::Ingest(_) | A::Task(_) => return Problem::internal(&err),
        };
        Problem::new(status, code, err.to_string())
    }
}

/// 403, not 413: the request is well formed and within `Tus-Max-Size`
/// (413 `upload_too_large`); the tenant's allowance refuses it, and sending
/// it again does not help until the tenant frees space. The figures let a
/// client say how much.
fn quota_exceeded(exceeded: &ingest::QuotaExceeded) -> Problem {
    let check = match exceeded.check {
        ingest::QuotaCheck::Creation => "creation",
        ingest::QuotaCheck::Body => "body",
        ingest::QuotaCheck::Finalize => "finalize",
    };
    Problem::new(StatusCode::FORBIDDEN, QUOTA_EXCEEDED, exceeded.to_string())
        .with("quota_bytes", exceeded.quota)
        .with("used_bytes", exceeded.used)
        .with("needed_bytes", exceeded.needed)
        .with("check", check)
}

/// 429 for a tenant's request rate, new-upload rate or upload bodies at
/// once. Rates say when a token will be there (`Retry-After`, from the
/// bucket); a full set of upload slots frees when an upload ends, so
/// clients come back in a second.
impl From<super::limits::Error> for Problem {
    fn from(err: super::limits::Error) -> Problem {
        use super::limits::Error as L;
        let (code, retry_after, limit) = match &err {
            L::RateLimited {
                rate, retry_after, ..
            } => (
                "rate_limited",
                super::limits::retry_secs(*retry_after),
                rate.key(),
            ),
            L::TooManyConcurrentUploads { .. } => {
                ("too_many_concurrent_uploads", 1, "concurrent_uploads")
            }
        };
        let mut problem =
            Problem::new(StatusCode::TOO_MANY_REQUESTS, code, err.to_string()).with("limit", limit);
        problem.retry_after = Some(retry_after);
        problem
    }
}

/// 503: the key provider (an HSM) cannot be reached. Nothing was stored
/// unencrypted; the client retries. The cause names the token and its error
/// code, so it is logged for the operator rather than sent to clients.
fn key_provider_unavailable(err: &crate::crypto::Error) -> Problem {
    tracing::warn!(error = %err, "key provider unavailable");
    let mut problem = Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "key_provider_unavailable",
        "the key provider is unavailable; nothing was stored; retry later",
    );
    problem.retry_after = Some(1);
    problem
}

/// 422: the content was understood and refused. Names the plugin, its rule
/// and its reason (all sanitised by the sandbox) so a client can show them.
fn rejected(rejection: &ingest::Rejection) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "upload_rejected",
        format!(
            "upload rejected by {}: {}",
            rejection.plugin, rejection.message
        ),
    )
    .with("plugin", rejection.plugin.as_str())
    .with("rule", rejection.code.as_str())
    .with("reason", rejection.message.as_str())
}

impl From<store::Error> for Problem {
    fn from(err: store::Error) -> Problem {
        match err {
            store::Error::Io(_) | store::Error::Crypto(_) => Problem::internal(&err),
        }
    }
}
