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
    console: ConsoleOrigins,
}

/// Where the web console is served from: the admin listener. Its pages call
/// the public listener (tokens, uploads, events), which must admit them.
/// Requests carry bearer tokens, never cookies, so admitting an origin
/// grants it nothing a script there does not already hold.
#[derive(Debug, Clone, Default)]
pub enum ConsoleOrigins {
    /// No console origin (tests of CORS itself).
    #[default]
    None,
    /// `http://<host>:<port>` for each host.
    Hosts { hosts: Vec<String>, port: u16 },
    /// The admin listener takes every address: any `http://<host>:<port>`.
    AnyHost { port: u16 },
}

impl ConsoleOrigins {
    /// The origins of an admin listener bound to `addr`.
    pub fn of_admin_listener(addr: std::net::SocketAddr) -> ConsoleOrigins {
        let port = addr.port();
        let ip = addr.ip();
        if ip.is_unspecified() {
            return ConsoleOrigins::AnyHost { port };
        }
        let mut hosts = vec![match ip {
            std::net::IpAddr::V4(v4) => v4.to_string(),
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        }];
        if ip.is_loopback() {
            hosts.push("localhost".into());
        }
        ConsoleOrigins::Hosts { hosts, port }
    }

    fn admits(&self, origin: &str) -> bool {
        let Some(authority) = origin.strip_prefix("http://") else {
            return false;
        };
        let Some((host, port)) = authority.rsplit_once(':') else {
            return false;
        };
        match self {
            ConsoleOrigins::None => false,
            ConsoleOrigins::Hosts { hosts, port: want } => {
                port == want.to_string() && hosts.iter().any(|h| h == host)
            }
            ConsoleOrigins::AnyHost { port: want } => {
                port == want.to_string() && !host.is_empty() && !host.contains(['/', '@'])
            }
        }
    }
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
            console: ConsoleOrigins::None,
        }
    }

    /// Also admits the web console's origins.
    pub fn with_console(mut self, console: ConsoleOrigins) -> Cors {
        self.console = console;
        self
    }

    fn allows(&self, origin: &HeaderValue) -> bool {
        self.any
            || self.origins.iter().any(|o| o == origin)
            || origin.to_str().is_ok_and(|o| self.console.admits(o))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(text: &str) -> HeaderValue {
        HeaderValue::from_str(text).unwrap()
    }

    #[test]
    fn the_console_on_loopback_is_admitted_by_ip_and_by_localhost() {
        let cors = Cors::new(&[]).with_console(ConsoleOrigins::of_admin_listener(
            "127.0.0.1:9090".parse().unwrap(),
        ));
        assert!(cors.allows(&origin("http://127.0.0.1:9090")));
        assert!(cors.allows(&origin("http://localhost:9090")));
        assert!(!cors.allows(&origin("http://localhost:9091")));
        assert!(!cors.allows(&origin("https://localhost:9090")));
        assert!(!cors.allows(&origin("http://evil.example:9090")));
    }

    #[test]
    fn a_console_on_every_address_is_admitted_on_its_port_only() {
        let cors = Cors::new(&[]).with_console(ConsoleOrigins::of_admin_listener(
            "0.0.0.0:9090".parse().unwrap(),
        ));
        assert!(cors.allows(&origin("http://appliance.lan:9090")));
        assert!(!cors.allows(&origin("http://appliance.lan:8080")));
        assert!(!cors.allows(&origin("http://a@b:9090")));
    }
}
