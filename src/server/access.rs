//! The HTTP side of authentication: which credential a request carries
//! (bearer token, presigned query, client certificate), the token and
//! presign endpoints, and the public signing keys. Decisions are
//! `auth`'s; this module only reads requests and writes answers, and never
//! logs a header value.

use std::net::IpAddr;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;

use std::sync::Arc;

use crate::auth::{Auth, Presented, PresignedQuery, Principal, TokenRequest};
use crate::id::UploadId;
use crate::ingest::Ingest;

use super::{Body, Problem, json_response};

/// Largest JSON body the token and presign endpoints read.
const MAX_REQUEST_JSON: usize = 4096;

/// The caller's address and, over mTLS, its certificate's SHA-256.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub ip: IpAddr,
    pub client_cert: Option<[u8; 32]>,
}

/// The principal of a request to the upload and download API (noted in
/// the request's audit scope).
pub fn principal(
    auth: &Auth,
    caller: &Caller,
    headers: &HeaderMap,
    presigned_object: Option<(UploadId, Option<&str>)>,
) -> Result<Principal, Problem> {
    let principal = identify(auth, caller, headers, presigned_object)?;
    super::audit_trail::note_principal(&principal);
    Ok(principal)
}

fn identify(
    auth: &Auth,
    caller: &Caller,
    headers: &HeaderMap,
    presigned_object: Option<(UploadId, Option<&str>)>,
) -> Result<Principal, Problem> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().map_err(|_| crate::auth::Error::BadScheme))
        .transpose()?;
    if let Some((object, query)) = presigned_object
        && authorization.is_none()
        && auth.enforcing()
        && let Some(parsed) = PresignedQuery::parse(query)
    {
        return Ok(auth.authenticate_presigned(object, &parsed?, caller.ip)?);
    }
    Ok(auth.authenticate(authorization, caller.ip)?)
}

/// `POST /auth/token`: an API key (`Authorization: Bearer srk_…`) or a
/// mapped client certificate in, a scoped token out.
pub async fn token(
    auth: &Auth,
    caller: &Caller,
    req: Request<Incoming>,
) -> Result<http::Response<Body>, Problem> {
    if req.method() != Method::POST {
        return Err(Problem::method_not_allowed(req.method()));
    }
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let request: TokenRequest = read_json(req).await?;
    let presented = match (&authorization, caller.client_cert) {
        (Some(value), _) => Presented::Authorization(value),
        (None, Some(fingerprint)) => Presented::ClientCertificate(fingerprint),
        (None, None) => Presented::Nothing,
    };
    let issued = auth.issue_token(presented, &request, caller.ip)?;
    super::audit_trail::note_actor(&issued.subject);
    super::audit_trail::note_subject(Some(&issued.tenant), &issued.token_id);
    tracing::info!(
        tenant = %issued.tenant,
        token_id = %issued.token_id,
        scopes = ?issued.scopes,
        "token issued"
    );
    Ok(json_response(
        StatusCode::OK,
        &serde_json::to_value(&issued).expect("issued token serialises"),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PresignRequest {
    object: String,
    #[serde(default)]
    ttl_seconds: Option<u64>,
}

/// `POST /auth/presign`: a principal that may read an object gets a URL
/// anyone can use to GET it until it expires.
pub async fn presign(
    auth: &Auth,
    caller: &Caller,
    public_url: &str,
    req: Request<Incoming>,
) -> Result<http::Response<Body>, Problem> {
    if req.method() != Method::POST {
        return Err(Problem::method_not_allowed(req.method()));
    }
    let principal = principal(auth, caller, req.headers(), None)?;
    let request: PresignRequest = read_json(req).await?;
    let object: UploadId = request.object.parse().map_err(|_| Problem::invalid_id())?;
    let query = auth.presign(&principal, object, request.ttl_seconds)?;
    super::audit_trail::note_subject(None, &format!("presign:{object}"));
    let url = format!(
        "{}/objects/{object}?{}",
        public_url.trim_end_matches('/'),
        query.to_query()
    );
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "url": url, "expires_at": query.expires }),
    ))
}

/// `GET /.well-known/strongroom/token-keys`: the public keys tokens are
/// signed with, so services can verify them offline.
pub fn signing_keys(auth: &Auth) -> http::Response<Body> {
    json_response(
        StatusCode::OK,
        &serde_json::json!({ "keys": auth.signing_keys() }),
    )
}

/// `DELETE /admin/tenants/<name>`: the tenant's keys are revoked, then its
/// KEKs destroyed (every object it had becomes unreadable at once:
/// crypto-shredding), then its records and files removed.
async fn delete_tenant(
    auth: &Auth,
    ingest: &Arc<Ingest>,
    tenant: &str,
) -> Result<http::Response<Body>, Problem> {
    super::audit_trail::note_subject(Some(tenant), &format!("tenant:{tenant}"));
    auth.credentials().remove_tenant(tenant)?;
    let report = ingest.shred_tenant(tenant).await?;
    tracing::info!(
        tenant,
        keys_destroyed = report.keys_destroyed,
        removed = report.removed,
        "tenant deleted"
    );
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "tenant": report.tenant,
            "keys_destroyed": report.keys_destroyed,
            "objects_removed": report.removed,
            "busy": report.busy,
        }),
    ))
}

async fn read_json<T: serde::de::DeserializeOwned + Default>(
    req: Request<Incoming>,
) -> Result<T, Problem> {
    let bytes: Bytes = Limited::new(req.into_body(), MAX_REQUEST_JSON)
        .collect()
        .await
        .map_err(|_| bad_request("the body must be JSON of at most 4 KiB"))?
        .to_bytes();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes).map_err(|err| bad_request(&format!("bad JSON body: {err}")))
}

fn bad_request(detail: &str) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, "invalid_request_body", detail)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    #[serde(default)]
    token_id: Option<String>,
    #[serde(default)]
    key_id: Option<String>,
}

/// Whether the admin listener routes `path` here.
pub fn is_admin_route(path: &str) -> bool {
    matches!(
        path,
        "/admin/tenants"
            | "/admin/tokens/revoke"
            | "/admin/token-keys"
            | "/admin/token-keys/rotate"
    ) || path.starts_with("/admin/tenants/")
}

/// The admin API for credentials: tenants and keys (the CLI adds them),
/// deleting a tenant, token revocation and signing-key rotation.
pub async fn admin(
    auth: &Auth,
    ingest: &Arc<Ingest>,
    admin: &crate::admin::Admin,
    req: Request<Incoming>,
) -> Result<http::Response<Body>, Problem> {
    let method = req.method().clone();
    if let Some(tenant) = req.uri().path().strip_prefix("/admin/tenants/") {
        if method != Method::DELETE {
            return Err(Problem::method_not_allowed(&method));
        }
        return delete_tenant(auth, ingest, tenant).await;
    }
    match (&method, req.uri().path()) {
        (&Method::GET, "/admin/tenants") => {
            let listing = auth.credentials().list()?;
            let keys: Vec<_> = listing
                .keys
                .iter()
                .map(|k| {
                    serde_json::json!({
                        "id": k.id, "tenant": k.tenant, "admin": k.admin, "label": k.label,
                        "created_at": k.created_at, "revoked_at": k.revoked_at,
                    })
                })
                .collect();
            let usage = admin.usage().await?;
            Ok(json_response(
                StatusCode::OK,
                &serde_json::json!({ "tenants": listing.tenants, "keys": keys, "usage": usage }),
            ))
        }
        (&Method::POST, "/admin/tokens/revoke") => {
            let request: RevokeRequest = read_json(req).await?;
            match (request.token_id, request.key_id) {
                (Some(token_id), None) => {
                    super::audit_trail::note_subject(None, &token_id);
                    auth.revoke_token(&token_id)?
                }
                (None, Some(key_id)) => {
                    super::audit_trail::note_subject(None, &key_id);
                    auth.revoke_signing_key(&key_id)?
                }
                _ => return Err(bad_request("give exactly one of token_id and key_id")),
            }
            tracing::info!("token revocation recorded");
            Ok(json_response(
                StatusCode::OK,
                &serde_json::json!({ "revoked": true }),
            ))
        }
        (&Method::GET, "/admin/token-keys") => Ok(signing_keys(auth)),
        (&Method::POST, "/admin/token-keys/rotate") => {
            let key_id = auth.rotate_signing_key()?;
            super::audit_trail::note_subject(None, &key_id);
            tracing::info!(%key_id, "token signing key rotated");
            Ok(json_response(
                StatusCode::OK,
                &serde_json::json!({ "current": key_id }),
            ))
        }
        _ => Err(Problem::method_not_allowed(&method)),
    }
}
