//! Manifest endpoints: `GET /objects/{id}/manifest`, the signed manifest of
//! a settled object, authorised like a download of it (`object:read:<id>`,
//! the principal's own tenant only); and `GET
//! /.well-known/strongroom/manifest-key`, the public key that verifies
//! manifests, open to anyone. The document format is `store::manifest`'s.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::auth::Action;
use crate::id::{InvalidId, UploadId};

use super::{App, Body, Problem, access, json_response};

/// The well-known path of the manifest key document.
pub const KEY_PATH: &str = "/.well-known/strongroom/manifest-key";

/// A manifest endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Manifest(Result<UploadId, InvalidId>),
    Key,
}

/// The manifest endpoint `path` names, if any.
pub fn route(path: &str) -> Option<Route> {
    if path == KEY_PATH {
        return Some(Route::Key);
    }
    let id = path.strip_prefix("/objects/")?.strip_suffix("/manifest")?;
    Some(Route::Manifest(id.parse()))
}

pub async fn serve(
    app: &Arc<App>,
    caller: &access::Caller,
    route: Route,
    req: Request<Incoming>,
) -> Result<Response<Body>, Problem> {
    if req.method() != Method::GET {
        return Err(Problem::method_not_allowed(req.method()));
    }
    let records = app.records.as_ref().ok_or_else(Problem::route_not_found)?;
    let id = match route {
        Route::Key => {
            return Ok(json_response(
                StatusCode::OK,
                &records.manifests.public().document(),
            ));
        }
        Route::Manifest(id) => id.map_err(|_| Problem::invalid_id())?,
    };
    let presignable = Some((id, req.uri().query()));
    let principal = access::principal(&app.auth, caller, req.headers(), presignable)?;
    principal.require(Action::ReadObject(id))?;
    let document = app.ingest.manifest(id, &principal.tenant).await?;
    Ok(json_response(StatusCode::OK, &document))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_paths_parse_strictly() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            route(&format!("/objects/{id}/manifest")),
            Some(Route::Manifest(Ok(id.parse().unwrap())))
        );
        assert_eq!(route(KEY_PATH), Some(Route::Key));
        assert_eq!(route(&format!("/objects/{id}")), None);
        assert_eq!(
            route("/objects/../manifest"),
            Some(Route::Manifest(Err(InvalidId)))
        );
        assert_eq!(route(&format!("/files/{id}/manifest")), None);
    }
}
