//! The public listener: connections (`listener`: accept loop, TLS, limits),
//! routing, CORS, request ids, each request's audit record (`audit_trail`),
//! and turning every error into a response (the only place that chooses
//! HTTP statuses). The only hyper and rustls user, for the admin listener
//! too.

mod access;
mod admin_api;
mod audit_trail;
mod body;
mod console;
mod cors;
mod download;
mod events;
mod limits;
mod listener;
mod manifest;
mod problem;
mod router;
mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::admin::Admin;
use crate::auth::{Action, Auth};
use crate::config::ServerConfig;
use crate::ingest::Ingest;
use crate::metrics::{Limit, Listener};
use crate::shutdown::Shutdown;
use crate::tus::{self, parse};

pub use audit_trail::Records;
pub use cors::{ConsoleOrigins, Cors};
pub use listener::{ClientCert, Peer};
pub use problem::Problem;
use router::Endpoint;
pub use tls::{Error as TlsError, Tls};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

/// Everything a public request can reach.
pub struct App {
    pub ingest: Arc<Ingest>,
    pub auth: Arc<Auth>,
    pub limits: ServerConfig,
    pub routes: tus::Routes,
    pub cors: Cors,
    /// Per-tenant rates, upload slots and ingress pacing.
    limiter: Arc<limits::Limiter>,
    /// The audit trail and manifest key; `None` records nothing.
    pub records: Option<Records>,
    /// Ends live event streams when the appliance stops.
    shutdown: Shutdown,
}

/// What the public listener is built from besides the pipeline.
pub struct AppParts {
    pub ingest: Arc<Ingest>,
    pub auth: Arc<Auth>,
    pub limits: ServerConfig,
    /// The per-tenant limits in force (a policy reload replaces them).
    pub live_limits: Arc<crate::policy::LiveLimits>,
    pub records: Option<Records>,
    /// Origins the web console is served from (the admin listener's), which
    /// CORS admits beside `limits.cors_allowed_origins`.
    pub console_origins: cors::ConsoleOrigins,
    pub shutdown: Shutdown,
}

impl App {
    pub fn new(parts: AppParts) -> Arc<App> {
        let AppParts {
            ingest,
            auth,
            limits,
            live_limits,
            records,
            console_origins,
            shutdown,
        } = parts;
        let upload_prefix = format!("{}/files/", limits.public_url.trim_end_matches('/'));
        Arc::new(App {
            ingest,
            auth,
            records,
            limiter: limits::Limiter::new(live_limits),
            cors: Cors::new(&limits.cors_allowed_origins).with_console(console_origins),
            routes: tus::Routes { upload_prefix },
            limits,
            shutdown,
        })
    }

    /// Admits a request under its tenant's limits, counting refusals.
    fn admit(&self, tenant: &str, demand: limits::Demand) -> Result<limits::Admission, Problem> {
        self.limiter.admit(tenant, demand).map_err(|refused| {
            let limit = match &refused {
                limits::Error::RateLimited {
                    rate: limits::Rate::Requests,
                    ..
                } => Limit::Requests,
                limits::Error::RateLimited {
                    rate: limits::Rate::Uploads,
                    ..
                } => Limit::Uploads,
                limits::Error::TooManyConcurrentUploads { .. } => Limit::ConcurrentUploads,
            };
            self.ingest.metrics().rate_limited(tenant, limit);
            Problem::from(refused)
        })
    }
}

/// Serves the public API on `listener`, over TLS when `tls` is set, until
/// `shutdown` resolves, then drains connections for at most
/// `limits.shutdown_grace`.
pub async fn run(
    listener: TcpListener,
    app: Arc<App>,
    tls: Option<Arc<Tls>>,
    shutdown: impl Future<Output = ()>,
) {
    if let Some(tls) = &tls {
        tracing::info!(
            sha256 = %hex::encode(tls.fingerprint()),
            "the public listener speaks TLS"
        );
    }
    let limits = app.limits.clone();
    let service = move |peer: Peer| {
        let app = app.clone();
        service_fn(move |req: Request<Incoming>| {
            let app = app.clone();
            let peer = peer.clone();
            async move {
                // hyper counts header fields for HTTP/1.1 only; HTTP/2 gets
                // the same limit here.
                let max_headers = app.limits.max_headers;
                if req.headers().len() > max_headers {
                    let problem = Problem::too_many_headers(max_headers);
                    return Ok(problem_response(&problem, &request_id(req.headers())));
                }
                Ok::<_, Infallible>(handle(app, peer, req).await)
            }
        })
    };
    listener::serve(listener, &limits, tls, service, shutdown).await;
}

/// Serves the admin surface on its own listener, always plain HTTP (it
/// binds loopback by default). `tls` is the public listener's, for the
/// certificate-expiry metric.
pub async fn run_admin(
    listener: TcpListener,
    admin: Arc<Admin>,
    auth: Arc<Auth>,
    limits: ServerConfig,
    records: Option<Records>,
    tls: Option<Arc<Tls>>,
    shutdown: Shutdown,
) {
    let stop = shutdown.wait();
    let service = move |peer: Peer| {
        let admin = admin.clone();
        let auth = auth.clone();
        let records = records.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        service_fn(move |req: Request<Incoming>| {
            let admin = admin.clone();
            let auth = auth.clone();
            let records = records.clone();
            let caller = caller(&peer);
            let context = admin_api::Context {
                tls: tls.clone(),
                shutdown: shutdown.clone(),
            };
            let request_id = request_id(req.headers());
            let span = tracing::info_span!(
                "admin",
                id = %request_id,
                method = %req.method(),
                path = %req.uri().path(),
                upload = tracing::field::Empty,
            );
            async move {
                let started = Instant::now();
                let method = req.method().clone();
                let route = admin_api::route_label(req.uri().path());
                let scope = audit_trail::scope(&request_id, &caller, None);
                let attempt = audit_trail::admin_attempt(req.method(), req.uri().path());
                let response = scope
                    .run(admin_request(
                        &admin,
                        &auth,
                        &caller,
                        req,
                        &request_id,
                        &context,
                    ))
                    .await;
                let mut response =
                    audit_trail::answer(records.as_ref(), &scope, attempt, response).await;
                if let Ok(value) = HeaderValue::from_str(&request_id) {
                    response.headers_mut().insert("x-request-id", value);
                }
                count(
                    admin.ingest(),
                    Listener::Admin,
                    route,
                    &method,
                    &response,
                    started,
                );
                Ok::<_, Infallible>(response)
            }
            .instrument(span)
        })
    };
    listener::serve(listener, &limits, None, service, stop).await;
}

/// One admin request. Health probes, metrics and the console stay open;
/// everything under /admin needs the admin scope.
async fn admin_request(
    admin: &Admin,
    auth: &Auth,
    caller: &access::Caller,
    req: Request<Incoming>,
    request_id: &str,
    context: &admin_api::Context,
) -> Response<Body> {
    // When the admin's credential stops being valid (an event stream ends then).
    let mut usable_until = None;
    if req.uri().path().starts_with("/admin/") {
        let admitted = access::principal(auth, caller, req.headers(), None)
            .and_then(|p| Ok(p.require(Action::Admin).map(|()| p)?));
        match admitted {
            Ok(principal) => usable_until = principal.usable_until,
            Err(problem) => return problem_response(&problem, request_id),
        }
    }
    if access::is_admin_route(req.uri().path()) {
        let answer = access::admin(auth, admin.ingest(), admin, req).await;
        return answer.unwrap_or_else(|p| problem_response(&p, request_id));
    }
    admin_api::respond(admin, req, context, usable_until)
        .await
        .unwrap_or_else(|problem| problem_response(&problem, request_id))
}

/// Counts an answered request, and an authentication failure by its code.
fn count(
    ingest: &Ingest,
    listener: Listener,
    route: &'static str,
    method: &Method,
    response: &Response<Body>,
    started: Instant,
) {
    let metrics = ingest.metrics();
    let status = response.status().as_u16();
    metrics.request(listener, route, method.as_str(), status, started.elapsed());
    if let Some(audit_trail::ProblemCode(code)) = response.extensions().get()
        && problem::is_auth_failure(code)
    {
        metrics.auth_failure(code);
    }
}

async fn handle(app: Arc<App>, peer: Peer, req: Request<Incoming>) -> Response<Body> {
    let request_id = request_id(req.headers());
    let span = tracing::info_span!(
        "request",
        id = %request_id,
        method = %req.method(),
        path = %req.uri().path(),
        upload = tracing::field::Empty,
    );
    let started = Instant::now();
    let method = req.method().clone();
    let route = route_label(req.uri().path());
    async move {
        let origin = req.headers().get(header::ORIGIN).cloned();
        let preflight = Cors::is_preflight(req.method(), req.headers());
        let is_tus = router::route(req.uri().path()).is_tus();
        let mut response = if preflight {
            let mut response = empty_response(StatusCode::NO_CONTENT);
            app.cors.preflight(origin.as_ref(), response.headers_mut());
            response
        } else {
            let caller = caller(&peer);
            let path = req.uri().path();
            let scope = audit_trail::scope(&request_id, &caller, Some(path));
            let attempt = audit_trail::public_attempt(req.method(), req.headers(), path);
            let response = scope
                .run(async {
                    dispatch(&app, &caller, req)
                        .await
                        .unwrap_or_else(|problem| problem_response(&problem, &request_id))
                })
                .await;
            // The record is durable before the response leaves.
            let mut response =
                audit_trail::answer(app.records.as_ref(), &scope, attempt, response).await;
            app.cors.decorate(origin.as_ref(), response.headers_mut());
            response
        };
        let headers = response.headers_mut();
        if is_tus {
            headers.insert(
                "tus-resumable",
                HeaderValue::from_static(parse::TUS_VERSION),
            );
        }
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            headers.insert("x-request-id", value);
        }
        tracing::debug!(%peer, status = response.status().as_u16(), "answered");
        count(
            &app.ingest,
            Listener::Public,
            route,
            &method,
            &response,
            started,
        );
        response
    }
    .instrument(span)
    .await
}

/// A public path's route in metrics.
fn route_label(path: &str) -> &'static str {
    match manifest::route(path) {
        Some(manifest::Route::Key) => "well_known",
        Some(manifest::Route::Manifest(_)) => "manifest",
        None => router::route(path).label(),
    }
}

fn caller(peer: &Peer) -> access::Caller {
    access::Caller {
        ip: peer.addr.ip(),
        client_cert: peer.client_cert.as_ref().map(|cert| cert.sha256),
    }
}

async fn dispatch(
    app: &Arc<App>,
    caller: &access::Caller,
    req: Request<Incoming>,
) -> Result<Response<Body>, Problem> {
    if let Some(route) = manifest::route(req.uri().path()) {
        return manifest::serve(app, caller, route, req).await;
    }
    let endpoint = router::route(req.uri().path());
    let method = req.method().clone();
    let auth = &app.auth;
    match (endpoint, &method) {
        (Endpoint::Token, _) => access::token(auth, caller, req).await,
        (Endpoint::Presign, _) => access::presign(auth, caller, &app.limits.public_url, req).await,
        (Endpoint::TokenKeys, &Method::GET) => Ok(access::signing_keys(auth)),
        (Endpoint::TokenKeys, _) => Err(Problem::method_not_allowed(&method)),
        // HEAD on /files/{id} is tus's offset query, not a download.
        (Endpoint::Object(Ok(id)), &Method::GET | &Method::HEAD)
        | (Endpoint::Upload(Ok(id)), &Method::GET) => {
            let presignable = Some((id, req.uri().query()));
            let principal = access::principal(auth, caller, req.headers(), presignable)?;
            app.admit(&principal.tenant, limits::Demand::REQUEST)?;
            let with_body = method == Method::GET;
            download::get(&app.ingest, &principal, id, req.headers(), with_body).await
        }
        (Endpoint::Events, &Method::GET) => {
            let principal = access::principal(auth, caller, req.headers(), None)?;
            principal
                .require(Action::CreateUpload)
                .or_else(|_| principal.require(Action::Admin))?;
            app.admit(&principal.tenant, limits::Demand::REQUEST)?;
            let until = principal.usable_until;
            let subscription = app.ingest.events().subscribe(Some(principal.tenant));
            Ok(events::stream(subscription, app.shutdown.clone(), until))
        }
        (Endpoint::Events, _) => Err(Problem::method_not_allowed(&method)),
        (Endpoint::Object(Ok(_)), _) => Err(Problem::method_not_allowed(&method)),
        (Endpoint::Upload(Err(_)) | Endpoint::Object(Err(_)), _) => Err(Problem::invalid_id()),
        (Endpoint::Collection, _) => tus_request(app, caller, parse::Target::Collection, req).await,
        (Endpoint::Upload(Ok(id)), _) => {
            tus_request(app, caller, parse::Target::Upload(id), req).await
        }
        (Endpoint::Unknown, _) => Err(Problem::route_not_found()),
    }
}

async fn tus_request(
    app: &Arc<App>,
    caller: &access::Caller,
    target: parse::Target,
    req: Request<Incoming>,
) -> Result<Response<Body>, Problem> {
    let (parts, incoming) = req.into_parts();
    let request = parse::parse(&parts.method, &target, &parts.headers).map_err(tus::Error::from)?;
    audit_trail::note_creation(app.records.as_ref(), &request);
    // OPTIONS only describes the server: tus clients send it without
    // credentials, as CORS preflights do.
    let principal = match &request {
        parse::TusRequest::Options => crate::auth::Principal::unauthenticated(),
        _ => access::principal(&app.auth, caller, &parts.headers, None)?,
    };
    // Held until the request is done: it holds the upload slot, if any.
    let admission = match limits::Demand::of(&request) {
        Some(demand) => app.admit(&principal.tenant, demand)?,
        None => limits::Admission::unlimited(),
    };
    let body = match &request {
        parse::TusRequest::Patch(_) | parse::TusRequest::Create(_) => app.limiter.pace(
            &admission,
            body::chunks(incoming, body::TransferLimits::from_config(&app.limits)),
        ),
        _ => body::empty(),
    };
    let reply = tus::handle(&app.ingest, &app.routes, &principal, request, body)
        .await
        .map_err(|err| {
            let problem = Problem::from(err);
            if problem.code == problem::QUOTA_EXCEEDED {
                app.ingest.metrics().quota_rejection(&principal.tenant);
            }
            problem
        })?;
    drop(admission);
    let mut response = empty_response(reply.status);
    response.headers_mut().extend(reply.headers);
    Ok(response)
}

/// The largest admin request body read (a small JSON object).
const MAX_ADMIN_BODY: usize = 4096;

/// Reads a small admin request body whole, refusing anything longer.
pub(crate) async fn small_body(body: Incoming) -> Result<Bytes, Problem> {
    http_body_util::Limited::new(body, MAX_ADMIN_BODY)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|err| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_body",
                format!("request body unreadable or over {MAX_ADMIN_BODY} bytes: {err}"),
            )
        })
}

pub(crate) fn text_response(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = full_response(status, Bytes::from_static(text.as_bytes()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

pub(crate) fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let bytes = serde_json::to_vec_pretty(value).expect("json values serialise");
    let mut response = full_response(status, Bytes::from(bytes));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Accepts a client's `X-Request-Id` when it is short and plain, otherwise
/// makes one: the id is echoed in headers and logs, so it must be safe there.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=64).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        })
        .map(str::to_owned)
        .unwrap_or_else(|| hex::encode(crate::crypto::random_array::<8>()))
}

pub fn empty_response(status: StatusCode) -> Response<Body> {
    full_response(status, Bytes::new())
}

pub fn full_response(status: StatusCode, bytes: Bytes) -> Response<Body> {
    let body = Full::new(bytes).map_err(|never| match never {}).boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}

fn problem_response(problem: &Problem, request_id: &str) -> Response<Body> {
    let mut response = full_response(problem.status, Bytes::from(problem.body_json(request_id)));
    response
        .extensions_mut()
        .insert(audit_trail::ProblemCode(problem.code));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if problem.status == StatusCode::PRECONDITION_FAILED {
        headers.insert("tus-version", HeaderValue::from_static(parse::TUS_VERSION));
    }
    if let Some(seconds) = problem.retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    } else if problem.status == StatusCode::SERVICE_UNAVAILABLE
        || problem.status == StatusCode::LOCKED
    {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if problem.status == StatusCode::UNAUTHORIZED {
        // RFC 6750: say which scheme, and for a bad token which error.
        let value = match problem.code {
            "authentication_required" => r#"Bearer realm="strongroom""#,
            _ => r#"Bearer realm="strongroom", error="invalid_token""#,
        };
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(value));
    }
    response
}
