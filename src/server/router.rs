//! Paths to endpoints. Ids are parsed here, strictly, so no handler ever sees
//! a raw path segment (`..`, `%2e%2e`, NUL and friends never parse).

use crate::id::{InvalidId, UploadId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/files` — the tus creation endpoint.
    Collection,
    /// `/files/{id}` — an upload (tus), and its object once committed.
    Upload(Result<UploadId, InvalidId>),
    /// `/objects/{id}` — a committed object.
    Object(Result<UploadId, InvalidId>),
    /// `/auth/token` — exchanges an API key for a scoped token.
    Token,
    /// `/auth/presign` — makes a presigned download URL.
    Presign,
    /// `/.well-known/strongroom/token-keys` — public token signing keys.
    TokenKeys,
    /// `/events` — the tenant's live events (server-sent events).
    Events,
    Unknown,
}

impl Endpoint {
    pub fn is_tus(&self) -> bool {
        matches!(self, Endpoint::Collection | Endpoint::Upload(_))
    }

    /// The route's name in metrics: a closed set, whatever the path.
    pub fn label(&self) -> &'static str {
        match self {
            Endpoint::Collection => "files",
            Endpoint::Upload(_) => "upload",
            Endpoint::Object(_) => "object",
            Endpoint::Token => "token",
            Endpoint::Presign => "presign",
            Endpoint::TokenKeys => "well_known",
            Endpoint::Events => "events",
            Endpoint::Unknown => "other",
        }
    }
}

pub fn route(path: &str) -> Endpoint {
    match path {
        "/files" | "/files/" => return Endpoint::Collection,
        "/auth/token" => return Endpoint::Token,
        "/auth/presign" => return Endpoint::Presign,
        "/.well-known/strongroom/token-keys" => return Endpoint::TokenKeys,
        "/events" => return Endpoint::Events,
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/files/") {
        return Endpoint::Upload(rest.parse());
    }
    if let Some(rest) = path.strip_prefix("/objects/") {
        return Endpoint::Object(rest.parse());
    }
    Endpoint::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_tus_and_object_paths() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(route("/files/"), Endpoint::Collection);
        assert_eq!(
            route(&format!("/files/{id}")),
            Endpoint::Upload(Ok(id.parse().unwrap()))
        );
        assert_eq!(
            route(&format!("/objects/{id}")),
            Endpoint::Object(Ok(id.parse().unwrap()))
        );
        assert_eq!(route("/elsewhere"), Endpoint::Unknown);
    }

    #[test]
    fn hostile_ids_never_parse() {
        for path in [
            "/files/..",
            "/files/%2e%2e",
            "/files/a/b",
            "/objects/../../etc/passwd",
        ] {
            assert!(
                matches!(
                    route(path),
                    Endpoint::Upload(Err(_)) | Endpoint::Object(Err(_))
                ),
                "{path}"
            );
        }
    }
}
