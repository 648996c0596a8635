//! The public listener: accept loop, HTTP/1.1 and HTTP/2 (h2c) limits,
//! routing, CORS, request ids, and turning every error into a response (the
//! only place that chooses HTTP statuses). The only hyper user besides the
//! admin listener it also serves.

mod body;
mod cors;
mod download;
mod problem;
mod router;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::admin::Admin;
use crate::config::ServerConfig;
use crate::ingest::Ingest;
use crate::tus::{self, parse};

pub use cors::Cors;
pub use problem::Problem;
use router::Endpoint;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

/// Everything a public request can reach.
pub struct App {
    pub ingest: Arc<Ingest>,
    pub limits: ServerConfig,
    pub routes: tus::Routes,
    pub cors: Cors,
}

impl App {
    pub fn new(ingest: Arc<Ingest>, limits: ServerConfig) -> Arc<App> {
        let upload_prefix = format!("{}/files/", limits.public_url.trim_end_matches('/'));
        Arc::new(App {
            ingest,
            cors: Cors::new(&limits.cors_allowed_origins),
            routes: tus::Routes { upload_prefix },
            limits,
        })
    }
}

/// Serves the public API on `listener` until `shutdown` resolves, then drains
/// connections for at most `limits.shutdown_grace`.
pub async fn run(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let builder = connection_builder(&app.limits);
    let limits = app.limits.clone();
    let service = move |peer: SocketAddr| {
        let app = app.clone();
        service_fn(move |req| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(handle(app, peer, req).await) }
        })
    };
    serve(listener, &builder, &limits, service, shutdown).await;
}

/// Serves the admin surface (health now) on its own listener.
pub async fn run_admin(
    listener: TcpListener,
    admin: Arc<Admin>,
    limits: ServerConfig,
    shutdown: impl Future<Output = ()>,
) {
    let builder = connection_builder(&limits);
    let service = move |_peer: SocketAddr| {
        let admin = admin.clone();
        service_fn(move |req: Request<Incoming>| {
            let admin = admin.clone();
            async move {
                let request_id = request_id(req.headers());
                Ok::<_, Infallible>(
                    admin_response(&admin, req.method(), req.uri().path(), &request_id).await,
                )
            }
        })
    };
    serve(listener, &builder, &limits, service, shutdown).await;
}

fn connection_builder(limits: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // The timer is what makes the header read timeout real; hyper starts
        // it whenever it waits for a request head, so it also bounds how long
        // an idle keep-alive connection stays open.
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.as_u64() as usize)
        .max_headers(limits.max_headers)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_pending_accept_reset_streams(limits.h2_max_pending_accept_reset_streams)
        .max_local_error_reset_streams(limits.h2_max_local_error_reset_streams)
        .max_header_list_size(limits.max_header_bytes.as_u64() as u32)
        .keep_alive_interval(limits.keep_alive_timeout)
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

async fn serve<S, F>(
    listener: TcpListener,
    builder: &auto::Builder<TokioExecutor>,
    limits: &ServerConfig,
    make_service: F,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn(SocketAddr) -> S,
    S: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    // One permit per socket: past the limit new connections are closed at
    // once instead of queueing unbounded work.
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of descriptors and similar: back off rather than spin.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection limit reached; closing new connection");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = builder
            .serve_connection(TokioIo::new(stream), make_service(peer))
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period; closing them");
    }
}

async fn handle(app: Arc<App>, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let request_id = request_id(req.headers());
    let span = tracing::info_span!("request", id = %request_id, method = %req.method(), path = %req.uri().path());
    async move {
        let origin = req.headers().get(header::ORIGIN).cloned();
        let preflight = Cors::is_preflight(req.method(), req.headers());
        let is_tus = router::route(req.uri().path()).is_tus();
        let mut response = if preflight {
            let mut response = empty_response(StatusCode::NO_CONTENT);
            app.cors.preflight(origin.as_ref(), response.headers_mut());
            response
        } else {
            let result = dispatch(&app, req).await;
            let mut response =
                result.unwrap_or_else(|problem| problem_response(&problem, &request_id));
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
        response
    }
    .instrument(span)
    .await
}

async fn dispatch(app: &Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, Problem> {
    let endpoint = router::route(req.uri().path());
    let method = req.method().clone();
    match (endpoint, &method) {
        (Endpoint::Upload(Ok(id)) | Endpoint::Object(Ok(id)), &Method::GET) => {
            download::get(&app.ingest, id, req.headers(), true).await
        }
        (Endpoint::Object(Ok(id)), &Method::HEAD) => {
            download::get(&app.ingest, id, req.headers(), false).await
        }
        (Endpoint::Object(Ok(_)), _) => Err(Problem::method_not_allowed(&method)),
        (Endpoint::Upload(Err(_)) | Endpoint::Object(Err(_)), _) => Err(Problem::invalid_id()),
        (Endpoint::Collection, _) => tus_request(app, parse::Target::Collection, req).await,
        (Endpoint::Upload(Ok(id)), _) => tus_request(app, parse::Target::Upload(id), req).await,
        (Endpoint::Unknown, _) => Err(Problem::route_not_found()),
    }
}

async fn tus_request(
    app: &Arc<App>,
    target: parse::Target,
    req: Request<Incoming>,
) -> Result<Response<Body>, Problem> {
    let (parts, incoming) = req.into_parts();
    let request = parse::parse(&parts.method, &target, &parts.headers).map_err(tus::Error::from)?;
    let body = match &request {
        parse::TusRequest::Patch(_) | parse::TusRequest::Create(_) => body::chunks(incoming),
        _ => body::empty(),
    };
    let reply = tus::handle(&app.ingest, &app.routes, request, body).await?;
    let mut response = empty_response(reply.status);
    response.headers_mut().extend(reply.headers);
    Ok(response)
}

async fn admin_response(
    admin: &Admin,
    method: &Method,
    path: &str,
    request_id: &str,
) -> Response<Body> {
    let answer = match (method, path) {
        (&Method::GET | &Method::HEAD, "/healthz") => return text_response(StatusCode::OK, "ok\n"),
        (&Method::GET | &Method::HEAD, "/readyz") if admin.health.is_ready() => {
            return text_response(StatusCode::OK, "ready\n");
        }
        (&Method::GET | &Method::HEAD, "/readyz") => {
            return text_response(StatusCode::SERVICE_UNAVAILABLE, "recovering\n");
        }
        (&Method::GET, "/admin/plugins") => admin.plugins(),
        (&Method::POST, "/admin/policy/reload") => admin.reload_policy().await,
        (&Method::GET, "/admin/quarantine") => admin.quarantine().await,
        (
            _,
            "/healthz"
            | "/readyz"
            | "/admin/plugins"
            | "/admin/policy/reload"
            | "/admin/quarantine",
        ) => {
            return problem_response(&Problem::method_not_allowed(method), request_id);
        }
        _ => return problem_response(&Problem::route_not_found(), request_id),
    };
    match answer {
        Ok(value) => json_response(StatusCode::OK, &value),
        Err(err) => problem_response(&Problem::from(err), request_id),
    }
}

fn text_response(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = full_response(status, Bytes::from_static(text.as_bytes()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
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
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if problem.status == StatusCode::PRECONDITION_FAILED {
        headers.insert("tus-version", HeaderValue::from_static(parse::TUS_VERSION));
    }
    if problem.status == StatusCode::SERVICE_UNAVAILABLE || problem.status == StatusCode::LOCKED {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}
