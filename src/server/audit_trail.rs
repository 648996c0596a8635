//! The HTTP side of the audit trail: which requests are attempts that get a
//! record, the audit scope each request is served in, and its record,
//! appended and durable before the response leaves. Under
//! `audit.on_failure = "refuse"` a request whose record fails is answered
//! `503 audit_unavailable` instead of what it would have got. Also puts
//! `Strongroom-Audit-Index` on answers about committed objects.
//!
//! Records name the actor (the principal, else the client's address), the
//! tenant, the request id, the upload and the outcome with its error code;
//! never a header value, a credential or a raw filename (only its keyed
//! form).

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

use crate::audit::scope::{self, Notes, RequestScope};
use crate::audit::{Event, EventKind, Outcome, Trail, identifier, reason_code};
use crate::auth::Principal;
use crate::store::manifest::ManifestKey;
use crate::tus::TusRequest;

use super::router::{self, Endpoint};
use super::{Body, Problem, access::Caller, problem_response};

/// The audit trail and manifest key, shared by both listeners.
#[derive(Debug, Clone)]
pub struct Records {
    pub trail: Arc<Trail>,
    pub manifests: Arc<ManifestKey>,
}

/// An error response's stable code, carried to the recorder in the
/// response's extensions (hyper never sends them).
#[derive(Debug, Clone, Copy)]
pub struct ProblemCode(pub &'static str);

/// The header naming the commit record of the object a response is about.
pub const AUDIT_INDEX: &str = "strongroom-audit-index";

/// The longest token or key id noted as a subject; anything longer (a whole
/// token pasted by mistake) is left out, so no credential reaches the log.
const MAX_ID_SUBJECT: usize = 64;

/// The scope a request is served in: its id, the caller's address as the
/// actor until a principal is known, and the upload its path names.
pub fn scope(request_id: &str, caller: &Caller, path: Option<&str>) -> Arc<RequestScope> {
    let upload = match path.map(router::route) {
        Some(Endpoint::Upload(Ok(id)) | Endpoint::Object(Ok(id))) => Some(id),
        _ => None,
    };
    RequestScope::new(
        request_id,
        Notes {
            actor: Some(format!("ip:{}", caller.ip)),
            upload,
            ..Notes::default()
        },
    )
}

/// What a request to the public listener attempts, if it is something the
/// trail records.
pub fn public_attempt(method: &Method, headers: &HeaderMap, path: &str) -> Option<EventKind> {
    let method = effective_method(method, headers);
    match (router::route(path), method) {
        (Endpoint::Collection, Method::POST) => Some(EventKind::Create),
        (Endpoint::Upload(_), Method::PATCH) => Some(EventKind::Resume),
        (Endpoint::Upload(_), Method::DELETE) => Some(EventKind::Delete),
        (Endpoint::Upload(_) | Endpoint::Object(_), Method::GET) => Some(EventKind::Download),
        (Endpoint::Token | Endpoint::Presign, Method::POST) => Some(EventKind::TokenIssue),
        _ => None,
    }
}

/// tus clients may send PATCH and DELETE as POST with an override header.
fn effective_method(method: &Method, headers: &HeaderMap) -> Method {
    if method != Method::POST {
        return method.clone();
    }
    headers
        .get("x-http-method-override")
        .and_then(|value| Method::from_bytes(value.as_bytes()).ok())
        .unwrap_or(Method::POST)
}

/// What a request to the admin listener attempts, if the trail records it.
pub fn admin_attempt(method: &Method, path: &str) -> Option<EventKind> {
    // Deleting a tenant destroys its keys and objects.
    if method == Method::DELETE && path.starts_with("/admin/tenants/") {
        return Some(EventKind::Delete);
    }
    if method != Method::POST {
        return None;
    }
    match path {
        "/admin/tokens/revoke" => Some(EventKind::TokenRevoke),
        "/admin/token-keys/rotate" | "/admin/keys/rotate" => Some(EventKind::KeyRotation),
        "/admin/policy/reload" => Some(EventKind::PolicyReload),
        _ => None,
    }
}

/// Notes who acts when it is not an authenticated principal (the API key
/// or certificate presented at the token endpoint).
pub fn note_actor(actor: &str) {
    let actor = identifier(actor);
    scope::note(|notes| notes.actor = actor);
}

/// Notes who a request acts as.
pub fn note_principal(principal: &Principal) {
    // The label is "token:<id> (<subject>)": records hold no spaces.
    let actor = identifier(&principal.actor_label().replace(' ', ""));
    let tenant = identifier(&principal.tenant);
    scope::note(|notes| {
        notes.actor = actor;
        notes.tenant = tenant;
    });
}

/// Notes a creation's declared length and its filename, keyed.
pub fn note_creation(records: Option<&Records>, request: &TusRequest) {
    let TusRequest::Create(create) = request else {
        return;
    };
    let size = match create.length {
        Some(crate::tus::parse::Length::Known(length)) => Some(length),
        _ => None,
    };
    let name = records
        .zip(create.metadata.get("filename"))
        .map(|(records, name)| records.trail.keyed_bytes(name));
    scope::note(|notes| {
        notes.size = size;
        notes.name = name;
    });
}

/// Notes what a request about a token or key was about: its id, when it
/// looks like one.
pub fn note_subject(tenant: Option<&str>, subject: &str) {
    let plain = subject.len() <= MAX_ID_SUBJECT
        && subject
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'.'));
    let subject = plain.then(|| identifier(subject)).flatten();
    let tenant = tenant.and_then(identifier);
    scope::note(|notes| {
        notes.subject = subject;
        if tenant.is_some() {
            notes.tenant = tenant;
        }
    });
}

/// Records the request `response` answers (when it is an attempt the trail
/// records, or an authentication failure) and returns the response to
/// send: the same one, or `503 audit_unavailable` when the record failed
/// and the policy is `refuse`.
///
/// Two refusals are not recorded, so that nobody can make the appliance
/// write (and fsync) a record per request without a credential: a request
/// that presented none (`authentication_required`), and one refused by the
/// per-address failure budget (`authentication_rate_limited`), which is what
/// bounds the failures that are recorded.
pub async fn answer(
    records: Option<&Records>,
    scope: &RequestScope,
    attempt: Option<EventKind>,
    mut response: Response<Body>,
) -> Response<Body> {
    let notes = scope.notes();
    let code = response
        .extensions()
        .get::<ProblemCode>()
        .map(|code| code.0);
    let status = response.status();
    let kind = match code {
        Some("authentication_required" | "authentication_rate_limited") => None,
        _ if status == StatusCode::UNAUTHORIZED => Some(EventKind::AuthFailure),
        _ => attempt,
    };
    if let (Some(records), Some(kind)) = (records, kind) {
        let event = event(kind, status, code, &notes, scope.request_id());
        if records.trail.record(event).await.is_err() {
            return problem_response(&Problem::audit_unavailable(), scope.request_id());
        }
    }
    if let Some(index) = notes.commit_index
        && status.is_success()
    {
        response
            .headers_mut()
            .insert(AUDIT_INDEX, HeaderValue::from(index));
    }
    response
}

fn event(
    kind: EventKind,
    status: StatusCode,
    code: Option<&str>,
    notes: &Notes,
    request_id: &str,
) -> Event {
    let outcome = if status.is_server_error() {
        Outcome::Failed
    } else if status.is_client_error() {
        Outcome::Denied
    } else {
        Outcome::Ok
    };
    let mut event = Event::new(kind, outcome).request_id(request_id);
    event.actor = notes.actor.clone();
    event.tenant = notes.tenant.clone();
    event.upload = notes.upload;
    event.size = notes.size;
    event.offset = notes.offset;
    event.name = notes.name.clone();
    event.subject = notes.subject.clone();
    event.reason = code.and_then(reason_code);
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_the_state_changing_requests() {
        let none = HeaderMap::new();
        let id = "0123456789abcdef0123456789abcdef";
        let upload = format!("/files/{id}");
        let object = format!("/objects/{id}");
        let cases = [
            (Method::POST, "/files/", Some(EventKind::Create)),
            (Method::PATCH, upload.as_str(), Some(EventKind::Resume)),
            (Method::DELETE, upload.as_str(), Some(EventKind::Delete)),
            (Method::GET, upload.as_str(), Some(EventKind::Download)),
            (Method::GET, object.as_str(), Some(EventKind::Download)),
            (Method::POST, "/auth/token", Some(EventKind::TokenIssue)),
            (Method::HEAD, upload.as_str(), None),
            (Method::OPTIONS, "/files/", None),
            (Method::GET, "/.well-known/strongroom/token-keys", None),
        ];
        for (method, path, kind) in cases {
            assert_eq!(
                public_attempt(&method, &none, path),
                kind,
                "{method} {path}"
            );
        }
        let mut overridden = HeaderMap::new();
        overridden.insert("x-http-method-override", HeaderValue::from_static("DELETE"));
        assert_eq!(
            public_attempt(&Method::POST, &overridden, &upload),
            Some(EventKind::Delete)
        );
        assert_eq!(
            admin_attempt(&Method::POST, "/admin/policy/reload"),
            Some(EventKind::PolicyReload)
        );
        assert_eq!(admin_attempt(&Method::GET, "/admin/keys"), None);
    }

    #[tokio::test]
    async fn long_or_odd_subjects_are_left_out() {
        let scope = RequestScope::new("r", Notes::default());
        scope
            .run(async {
                note_subject(Some("acme"), &"v4.public.".repeat(20));
                assert_eq!(scope.notes().subject, None);
                note_subject(None, "0123456789abcdef0123456789abcdef");
            })
            .await;
        let notes = scope.notes();
        assert_eq!(
            notes.subject.as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert_eq!(notes.tenant.as_deref(), Some("acme"));
    }
}
