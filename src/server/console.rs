//! The web console's files, embedded in the binary (no CDN, nothing read
//! from disk at run time), served on the admin listener under `/console/`
//! with a Content-Security-Policy that allows only these files and calls to
//! the public listener.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use super::{Body, full_response};

struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../admin/console/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../admin/console/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../admin/console/app.css"),
    },
    Asset {
        name: "tus.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../admin/console/tus.min.js"),
    },
];

/// The console's file at `name` (the path after `/console/`; empty is the
/// page itself), if it is one.
pub fn asset(name: &str, public_url: &str) -> Option<Response<Body>> {
    let name = if name.is_empty() { "index.html" } else { name };
    let asset = ASSETS.iter().find(|asset| asset.name == name)?;
    let mut response = full_response(StatusCode::OK, Bytes::from_static(asset.bytes));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    // Revalidated on every load: a new appliance version brings new files.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    if let Ok(policy) = HeaderValue::from_str(&content_security_policy(public_url)) {
        headers.insert("content-security-policy", policy);
    }
    Some(response)
}

/// Scripts, styles and fetches from this origin only, plus fetches to the
/// public listener (uploads, tokens, events); nothing inline, no framing.
fn content_security_policy(public_url: &str) -> String {
    let public = origin_of(public_url);
    format!(
        "default-src 'self'; connect-src 'self' {public}; img-src 'self' data: blob:; \
         style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; \
         frame-ancestors 'none'; form-action 'none'"
    )
}

/// `scheme://host[:port]` of a URL, or nothing usable as a CSP source.
fn origin_of(url: &str) -> &str {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "";
    };
    let end = rest.find('/').map_or(url.len(), |i| scheme.len() + 3 + i);
    let origin = &url[..end];
    // A CSP source list is space-separated: anything else would smuggle in
    // more sources.
    if origin
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b":/.-[]_".contains(&b))
    {
        origin
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_served_with_its_type_and_a_policy() {
        for name in ["", "index.html", "app.js", "app.css", "tus.min.js"] {
            let response = asset(name, "http://127.0.0.1:8080").expect(name);
            let csp = response.headers()["content-security-policy"]
                .to_str()
                .unwrap();
            assert!(
                csp.contains("connect-src 'self' http://127.0.0.1:8080;"),
                "{csp}"
            );
        }
        assert!(asset("../Cargo.toml", "").is_none());
        assert!(asset("app.js.map", "").is_none());
    }

    #[test]
    fn a_public_url_cannot_smuggle_sources_into_the_policy() {
        assert_eq!(
            origin_of("https://up.example.com/base"),
            "https://up.example.com"
        );
        assert_eq!(origin_of("http://[::1]:8080"), "http://[::1]:8080");
        assert_eq!(origin_of("https://x.example *; script-src *"), "");
        assert_eq!(origin_of("not a url"), "");
    }
}
