//! The appliance's HTTP client: tus uploads (`upload`), downloads checked
//! against their signed manifest (`download`), token exchange (`auth`) and
//! the local record of unfinished uploads (`state`). The only reqwest user.
//!
//! Never prints, never reads the terminal and never picks an exit status:
//! progress is reported through callbacks and outcomes are values that the
//! `strongroom` commands turn into words and codes. API keys and tokens
//! never appear in an error, a log line or a `Debug` output.

mod auth;
pub mod download;
mod problem;
mod retry;
pub mod state;
pub mod upload;

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, Url};

pub use auth::{Credential, Secret, TokenGrant};
pub use problem::Problem;
pub use retry::RetryPolicy;

/// The tus version every request speaks.
pub const TUS_VERSION: &str = "1.0.0";

/// A connection that sees nothing within this is down: retried, not waited on.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// No byte from the server for this long ends a request. Long enough for the
/// appliance to commit a large upload (which it answers without streaming),
/// short enough that a dead peer is noticed and retried.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("server URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("CA certificate {}: {reason}", path.display())]
    CaCert { path: PathBuf, reason: String },
    #[error("{0}")]
    Credential(String),
    /// The server could not be reached or the exchange broke off: worth
    /// retrying.
    #[error("{what}: {}", transport_reason(source))]
    Transport {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status.
    #[error("{what}: {problem}")]
    Refused { what: String, problem: Box<Problem> },
    /// The server answered something the protocol does not allow.
    #[error("{what}: {reason}")]
    Protocol { what: String, reason: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file being uploaded could not be read where it should have bytes.
    #[error("{}: reading at byte {position} failed (did the file change?): {source}", path.display())]
    FileRead {
        path: PathBuf,
        position: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("state file {}: {reason}", path.display())]
    State { path: PathBuf, reason: String },
    #[error(transparent)]
    Crypto(#[from] crate::crypto::Error),
    /// A download that does not match its signed manifest, or a manifest
    /// whose signature does not verify.
    #[error("{0}")]
    Verification(String),
    #[error("{0}")]
    Task(String),
    /// An upload stopped before it was complete after the retries ran out;
    /// the state file has what a rerun needs to continue.
    #[error("{url}: stopped at byte {offset} of {length}: {source}")]
    Incomplete {
        url: String,
        offset: u64,
        length: u64,
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// Worth trying again after a pause: the server is unreachable, busy,
    /// locked the upload, failed on its side, or the body broke off.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Transport { .. } => true,
            Error::Refused { problem, .. } => problem.is_transient(),
            _ => false,
        }
    }

    /// The server refused the credential or its scope.
    pub fn is_auth(&self) -> bool {
        match self {
            Error::Refused { problem, .. } => problem.is_auth(),
            Error::Incomplete { source, .. } => source.is_auth(),
            _ => false,
        }
    }

    /// How long the server asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Refused { problem, .. } => problem.retry_after,
            _ => None,
        }
    }

    /// The problem code the server answered with, if any.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Refused { problem, .. } => problem.code.as_deref(),
            Error::Incomplete { source, .. } => source.code(),
            _ => None,
        }
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// reqwest's own message names only the outermost layer ("error sending
/// request"); the cause (refused, reset, timed out) is what a user needs.
fn transport_reason(err: &reqwest::Error) -> String {
    let mut reason = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        reason = format!("{reason}: {cause}");
        source = cause.source();
    }
    reason
}

/// How to reach the appliance.
#[derive(Debug)]
pub struct Options {
    /// The public listener's URL, e.g. `https://vault.example:8443`.
    pub server: String,
    pub credential: Credential,
    /// Extra trusted roots (PEM), e.g. a self-signed appliance's certificate.
    pub ca_cert: Option<PathBuf>,
    pub retry: RetryPolicy,
}

/// An HTTP client for one appliance.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    auth: auth::Authorizer,
    retry: RetryPolicy,
}

impl Client {
    /// Builds the client. Reads the CA file, so call it before (or off) the
    /// async runtime.
    pub fn new(options: Options) -> Result<Client, Error> {
        let base = parse_base(&options.server)?;
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("strongroom/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            // A bearer token must never follow a redirect elsewhere; the
            // appliance never redirects its public API.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = &options.ca_cert {
            for certificate in read_ca(path)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build().map_err(|err| Error::Transport {
            what: "setting up the HTTP client".into(),
            source: err,
        })?;
        Ok(Client {
            http,
            base,
            auth: auth::Authorizer::new(options.credential),
            retry: options.retry,
        })
    }

    /// The server's base URL, always ending in `/`.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `path` (or an absolute URL) resolved against the server's URL.
    pub fn url(&self, path: &str) -> Result<Url, Error> {
        self.base.join(path).map_err(|err| Error::BadUrl {
            url: path.to_owned(),
            reason: err.to_string(),
        })
    }

    /// `url` moved onto the server's own origin. An appliance behind a
    /// proxy may name its public address in `Location` (server.public_url);
    /// we keep talking to the address we were given, at the same path.
    pub fn on_our_origin(&self, mut url: Url) -> Url {
        if url.origin() != self.base.origin() {
            let _ = url.set_scheme(self.base.scheme());
            let _ = url.set_host(self.base.host_str());
            let _ = url.set_port(self.base.port());
        }
        url
    }

    pub fn retry(&self) -> RetryPolicy {
        self.retry
    }

    /// Exchanges the API key for a token with `scopes` (`POST /auth/token`).
    pub async fn token(&self, scopes: &[String]) -> Result<TokenGrant, Error> {
        self.auth.exchange(self, scopes).await
    }

    /// A request carrying a bearer token good for `scopes` (exchanged from
    /// the API key, cached until shortly before it expires), the given
    /// token, or nothing when no credential was given.
    async fn request(
        &self,
        method: Method,
        url: Url,
        scopes: &[String],
    ) -> Result<RequestBuilder, Error> {
        if url.origin() != self.base.origin() {
            // A token is for the appliance it came from, never for a URL
            // that points elsewhere (a typo, or a hostile Location).
            return Err(Error::BadUrl {
                url: url.to_string(),
                reason: format!(
                    "not on {}: refusing to send it the credential",
                    self.base.origin().ascii_serialization()
                ),
            });
        }
        let builder = self.http.request(method, url);
        Ok(match self.auth.header(self, scopes).await? {
            Some(value) => builder.header(reqwest::header::AUTHORIZATION, value),
            None => builder,
        })
    }

    /// Forgets exchanged tokens, so that the next request gets a fresh one
    /// (after the server said one expired).
    pub fn forget_tokens(&self) {
        self.auth.forget();
    }

    /// Sends and turns any status of 400 or more into `Refused` with the
    /// server's problem document.
    async fn send(&self, what: &str, builder: RequestBuilder) -> Result<Response, Error> {
        let response = builder.send().await.map_err(|source| Error::Transport {
            what: what.to_owned(),
            source,
        })?;
        if response.status().is_client_error() || response.status().is_server_error() {
            let problem = Box::new(Problem::read(response).await);
            return Err(Error::Refused {
                what: what.to_owned(),
                problem,
            });
        }
        Ok(response)
    }
}

fn parse_base(server: &str) -> Result<Url, Error> {
    let bad = |reason: &str| Error::BadUrl {
        url: server.to_owned(),
        reason: reason.to_owned(),
    };
    let mut url = Url::parse(server).map_err(|err| bad(&err.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("must start with http:// or https://"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(bad("must not carry a query, a fragment or credentials"));
    }
    // A base without a trailing slash would lose its last segment in joins.
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

fn read_ca(path: &Path) -> Result<Vec<reqwest::Certificate>, Error> {
    let pem = std::fs::read(path).map_err(Error::io(path))?;
    let certificates =
        reqwest::Certificate::from_pem_bundle(&pem).map_err(|err| Error::CaCert {
            path: path.to_path_buf(),
            reason: err.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(Error::CaCert {
            path: path.to_path_buf(),
            reason: "no PEM CERTIFICATE block in it".into(),
        });
    }
    Ok(certificates)
}

/// Reads the whole body, refusing more than `limit` bytes (manifests, key
/// documents and token answers are small; anything larger is not one).
async fn read_small(what: &str, mut response: Response, limit: usize) -> Result<Vec<u8>, Error> {
    let mut body = Vec::new();
    loop {
        let chunk = response.chunk().await.map_err(|source| Error::Transport {
            what: what.to_owned(),
            source,
        })?;
        let Some(chunk) = chunk else {
            return Ok(body);
        };
        if body.len() + chunk.len() > limit {
            return Err(Error::Protocol {
                what: what.to_owned(),
                reason: format!("the answer is over {limit} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
}

/// A spawned blocking task's failure (a panic) as our error.
fn joined<T>(result: Result<T, tokio::task::JoinError>) -> Result<T, Error> {
    result.map_err(|err| Error::Task(format!("a background task failed: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_locations_are_brought_onto_our_origin() {
        let client = Client::new(Options {
            server: "http://127.0.0.1:8080".into(),
            credential: Credential::None,
            ca_cert: None,
            retry: RetryPolicy::default(),
        })
        .unwrap();
        let foreign = Url::parse("https://public.example/files/abc").unwrap();
        assert_eq!(
            client.on_our_origin(foreign).as_str(),
            "http://127.0.0.1:8080/files/abc"
        );
    }

    #[test]
    fn server_urls_become_bases_that_join() {
        let base = parse_base("http://127.0.0.1:8080").unwrap();
        assert_eq!(base.as_str(), "http://127.0.0.1:8080/");
        let base = parse_base("https://vault.example/strongroom").unwrap();
        assert_eq!(
            base.join("files/").unwrap().as_str(),
            "https://vault.example/strongroom/files/"
        );
        assert!(parse_base("ftp://x").is_err());
        assert!(parse_base("http://u:p@x/").is_err());
        assert!(parse_base("not a url").is_err());
    }
}
