//! The admin listener's routes besides credentials (`access`): health,
//! metrics, the web console, and the JSON admin API over [`Admin`]. Paths
//! and query strings are parsed here; `Admin` sees typed arguments only.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::sync::mpsc;

use crate::admin::Admin;
use crate::id::UploadId;
use crate::shutdown::Shutdown;

use super::{
    Body, BoxError, Problem, Tls, console, download, events, full_response, json_response,
    small_body, text_response,
};

/// What admin requests need beyond the `Admin` state.
pub struct Context {
    /// The public listener's TLS, for the certificate-expiry metric.
    pub tls: Option<Arc<Tls>>,
    /// Ends event streams when the appliance stops.
    pub shutdown: Shutdown,
}

/// An admin path's route in metrics.
pub fn route_label(path: &str) -> &'static str {
    match path {
        "/healthz" => "healthz",
        "/readyz" => "readyz",
        "/metrics" => "metrics",
        "/" | "/console" => "console",
        _ if path.starts_with("/console/") => "console",
        _ if path.starts_with("/admin/") => "admin",
        _ => "other",
    }
}

/// A parsed admin API path.
enum Route<'a> {
    Healthz,
    Readyz,
    Metrics,
    /// `/` and `/console`: redirected to `/console/`.
    ConsoleRoot,
    ConsoleAsset(&'a str),
    ConsoleConfig,
    Summary,
    Uploads,
    Objects,
    Object(UploadId),
    ObjectContent(UploadId),
    Quarantine,
    QuarantineRelease(UploadId),
    QuarantineEntry(UploadId),
    Plugins,
    Policy,
    PolicyReload,
    Keys,
    KeysRotate,
    AuditCheckpoint,
    AuditExport,
    Events,
    /// An id-shaped segment that is not an id.
    BadId,
    Unknown,
}

fn route(path: &str) -> Route<'_> {
    match path {
        "/healthz" => return Route::Healthz,
        "/readyz" => return Route::Readyz,
        "/metrics" => return Route::Metrics,
        "/" | "/console" => return Route::ConsoleRoot,
        "/console/config.json" => return Route::ConsoleConfig,
        "/admin/summary" => return Route::Summary,
        "/admin/uploads" => return Route::Uploads,
        "/admin/objects" => return Route::Objects,
        "/admin/quarantine" => return Route::Quarantine,
        "/admin/plugins" => return Route::Plugins,
        "/admin/policy" => return Route::Policy,
        "/admin/policy/reload" => return Route::PolicyReload,
        "/admin/keys" => return Route::Keys,
        "/admin/keys/rotate" => return Route::KeysRotate,
        "/admin/audit/checkpoint" => return Route::AuditCheckpoint,
        "/admin/audit/export" => return Route::AuditExport,
        "/admin/events" => return Route::Events,
        _ => {}
    }
    if let Some(name) = path.strip_prefix("/console/") {
        return Route::ConsoleAsset(name);
    }
    if let Some(rest) = path.strip_prefix("/admin/objects/") {
        return match rest.split_once('/') {
            None => with_id(rest, Route::Object),
            Some((id, "content")) => with_id(id, Route::ObjectContent),
            Some(_) => Route::Unknown,
        };
    }
    if let Some(rest) = path.strip_prefix("/admin/quarantine/") {
        return match rest.split_once('/') {
            None => with_id(rest, Route::QuarantineEntry),
            Some((id, "release")) => with_id(id, Route::QuarantineRelease),
            Some(_) => Route::Unknown,
        };
    }
    Route::Unknown
}

fn with_id<'a>(text: &str, route: impl FnOnce(UploadId) -> Route<'a>) -> Route<'a> {
    text.parse().map_or(Route::BadId, route)
}

/// `usable_until`: when the caller's credential expires (Unix seconds), if
/// it does; an event stream ends then.
pub async fn respond(
    admin: &Admin,
    req: Request<Incoming>,
    context: &Context,
    usable_until: Option<u64>,
) -> Result<Response<Body>, Problem> {
    let (parts, body) = req.into_parts();
    let method = &parts.method;
    let query = Query::parse(parts.uri.query());
    let read = method == Method::GET || method == Method::HEAD;
    let answer = match (route(parts.uri.path()), method) {
        (Route::Healthz, _) if read => return Ok(text_response(StatusCode::OK, "ok\n")),
        (Route::Readyz, _) if read && admin.health.is_ready() => {
            return Ok(text_response(StatusCode::OK, "ready\n"));
        }
        (Route::Readyz, _) if read => {
            return Ok(text_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "recovering\n",
            ));
        }
        (Route::Metrics, _) if read => {
            let not_after = context.tls.as_ref().and_then(|tls| tls.not_after());
            let text = admin.metrics_text(not_after).await?;
            return Ok(metrics_response(text));
        }
        (Route::ConsoleRoot, _) if read => return Ok(redirect("/console/")),
        (Route::ConsoleConfig, _) if read => admin.console_config(host(&parts.headers)),
        (Route::ConsoleAsset(name), _) if read => {
            let config = admin.console_config(host(&parts.headers));
            let public_url = config["public_url"].as_str().unwrap_or_default();
            return console::asset(name, public_url).ok_or_else(Problem::route_not_found);
        }
        (Route::Summary, &Method::GET) => admin.summary().await?,
        (Route::Uploads, &Method::GET) => admin.uploads(query.tenant()).await?,
        (Route::Objects, &Method::GET) => {
            admin
                .objects(
                    query.tenant(),
                    query.get("disposition"),
                    query.get("limit"),
                    query.get("after"),
                )
                .await?
        }
        (Route::Object(id), &Method::GET) => admin.object(id).await?,
        (Route::Object(id), &Method::DELETE) => admin.delete_object(id, false).await?,
        (Route::ObjectContent(id), _) if read => {
            let (download, tenant) = admin.ingest().open_object_for_admin(id).await?;
            let with_body = method == Method::GET;
            return download::respond(
                admin.ingest(),
                &download,
                &tenant,
                &parts.headers,
                with_body,
            );
        }
        (Route::Quarantine, &Method::GET) => admin.quarantine().await?,
        (Route::QuarantineRelease(id), &Method::POST) => admin.release(id).await?,
        (Route::QuarantineEntry(id), &Method::DELETE) => admin.delete_object(id, true).await?,
        (Route::Plugins, &Method::GET) => admin.plugins()?,
        (Route::Policy, &Method::GET) => admin.policy_document()?,
        (Route::PolicyReload, &Method::POST) => admin.reload_policy().await?,
        (Route::Keys, &Method::GET) => admin.keys().await?,
        (Route::KeysRotate, &Method::POST) => admin.rotate_keys(&small_body(body).await?).await?,
        (Route::AuditCheckpoint, &Method::GET) => {
            let mut response =
                full_response(StatusCode::OK, Bytes::from(admin.audit_checkpoint()?));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            return Ok(response);
        }
        (Route::AuditExport, &Method::GET) => return audit_export(admin).await,
        (Route::Events, &Method::GET) => {
            let subscription = admin.ingest().events().subscribe(query.tenant());
            let shutdown = context.shutdown.clone();
            return Ok(events::stream(subscription, shutdown, usable_until));
        }
        (Route::BadId, _) => return Err(Problem::invalid_id()),
        (Route::Unknown, _) => return Err(Problem::route_not_found()),
        _ => return Err(Problem::method_not_allowed(method)),
    };
    Ok(json_response(StatusCode::OK, &answer))
}

fn metrics_response(text: String) -> Response<Body> {
    let mut response = full_response(StatusCode::OK, Bytes::from(text));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

fn redirect(to: &'static str) -> Response<Body> {
    let mut response = full_response(StatusCode::FOUND, Bytes::new());
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    response
}

fn host(headers: &http::HeaderMap) -> Option<&str> {
    headers.get(header::HOST)?.to_str().ok()
}

/// A signed snapshot of the audit log as a tar archive of the files
/// `strongroom audit export` writes (`strongroom audit verify` checks it
/// once unpacked). The snapshot is written to the data dir's scratch space,
/// streamed with backpressure, then removed.
async fn audit_export(admin: &Admin) -> Result<Response<Body>, Problem> {
    let scratch = admin.scratch_dir();
    let dir = scratch.join(format!(
        "audit-export-{}",
        hex::encode(crate::crypto::random_array::<8>())
    ));
    tokio::fs::create_dir_all(&scratch)
        .await
        .map_err(|err| Problem::internal(&err))?;
    let exported = match admin.export_audit(dir.clone()).await {
        Ok(exported) => exported,
        Err(err) => {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            return Err(err.into());
        }
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, BoxError>>(4);
    tokio::task::spawn_blocking(move || {
        let written = write_tar(&dir, ChannelWriter { tx: tx.clone() });
        if let Err(err) = written {
            tracing::error!(error = %err, "audit export archive failed");
            let _ = tx.blocking_send(Err(Box::new(err)));
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((chunk.map(Frame::data), rx))
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    let name = format!(
        "attachment; filename=\"strongroom-audit-{}.tar\"",
        exported.records
    );
    if let Ok(value) = HeaderValue::from_str(&name) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(
        "strongroom-audit-records",
        HeaderValue::from(exported.records),
    );
    Ok(response)
}

fn write_tar(dir: &std::path::Path, out: ChannelWriter) -> std::io::Result<()> {
    let mut archive = tar::Builder::new(out);
    archive.mode(tar::HeaderMode::Deterministic);
    let mut names: Vec<_> = std::fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        archive.append_path_with_name(dir.join(&name), &name)?;
    }
    archive.into_inner().map(drop)
}

/// Bytes written into a bounded channel: the archive is produced only as
/// fast as the client reads it.
struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, BoxError>>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::other("the client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A query string's pairs, percent-decoded.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: Option<&str>) -> Query {
        let decode = |text: &str| {
            percent_encoding::percent_decode_str(&text.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        Query(
            query
                .unwrap_or_default()
                .split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    (decode(key), decode(value))
                })
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn tenant(&self) -> Option<String> {
        self.get("tenant")
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn admin_paths_parse_into_routes_with_ids() {
        assert!(matches!(
            route(&format!("/admin/objects/{ID}")),
            Route::Object(_)
        ));
        assert!(matches!(
            route(&format!("/admin/objects/{ID}/content")),
            Route::ObjectContent(_)
        ));
        assert!(matches!(
            route(&format!("/admin/quarantine/{ID}/release")),
            Route::QuarantineRelease(_)
        ));
        assert!(matches!(route("/admin/objects/.."), Route::BadId));
        assert!(matches!(route("/admin/objects/../keys"), Route::Unknown));
        assert!(matches!(
            route(&format!("/admin/objects/{ID}/x")),
            Route::Unknown
        ));
        assert!(matches!(
            route("/console/app.js"),
            Route::ConsoleAsset("app.js")
        ));
        assert_eq!(route_label("/console/app.js"), "console");
        assert_eq!(route_label("/admin/anything"), "admin");
        assert_eq!(route_label("/wp-login.php"), "other");
    }

    #[test]
    fn query_values_are_decoded() {
        let query = Query::parse(Some("tenant=acme%2Dco&limit=5&empty=&flag"));
        assert_eq!(query.tenant().as_deref(), Some("acme-co"));
        assert_eq!(query.get("limit"), Some("5"));
        assert_eq!(query.get("flag"), Some(""));
        assert!(Query::parse(Some("tenant=")).tenant().is_none());
    }
}
