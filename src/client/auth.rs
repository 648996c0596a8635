//! Credentials: an API key exchanged at `POST /auth/token` for short-lived
//! scoped tokens, a token given as is, or nothing (an `--auth none`
//! appliance). Owns the token cache; never lets a secret into a message,
//! a log line or a `Debug` output.

use std::collections::HashMap;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use reqwest::header::HeaderValue;
use serde::Deserialize;

use super::{Client, Error, read_small};

/// A token this close to its expiry is replaced before use, so that it does
/// not run out during a request (an upload PATCH may take a while).
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// Token answers are a few hundred bytes.
const MAX_TOKEN_ANSWER: usize = 64 << 10;

/// Far above any API key file (one line).
const MAX_KEY_FILE: u64 = 4 << 10;

/// A secret string: shown as `<redacted>` by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: String) -> Secret {
        Secret(text)
    }

    /// The secret in `path` (surrounding whitespace ignored). Refuses a file
    /// group or others can read or write: a key others can read protects
    /// nothing. Blocking.
    pub fn from_file(path: &Path) -> Result<Secret, Error> {
        use std::io::Read;
        let file = std::fs::File::open(path).map_err(Error::io(path))?;
        let mode = file
            .metadata()
            .map_err(Error::io(path))?
            .permissions()
            .mode()
            & 0o7777;
        if mode & 0o077 != 0 {
            return Err(Error::Credential(format!(
                "API key file {} has mode {mode:03o}, so group or others can read or \
                 write it; refusing to use it (fix with `chmod 600 {}`)",
                path.display(),
                path.display()
            )));
        }
        let mut text = String::new();
        file.take(MAX_KEY_FILE)
            .read_to_string(&mut text)
            .map_err(Error::io(path))?;
        let key = text.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(Error::Credential(format!(
                "API key file {} does not hold one key on one line",
                path.display()
            )));
        }
        Ok(Secret(key.to_owned()))
    }

    /// The secret itself, for the one place it is sent.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn bearer(&self) -> Result<HeaderValue, Error> {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", self.0)).map_err(|_| {
            Error::Credential("the credential holds characters a header cannot carry".into())
        })?;
        // Keeps it out of hyper's and reqwest's debug output.
        value.set_sensitive(true);
        Ok(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What authenticates requests.
#[derive(Debug, Clone)]
pub enum Credential {
    /// No header: the appliance runs with `--auth none`.
    None,
    /// An API key (`srk_...`), exchanged for scoped tokens.
    ApiKey(Secret),
    /// A token, sent as is (its scopes are whatever it was issued with).
    Token(Secret),
}

/// The answer of `POST /auth/token`.
#[derive(Clone)]
pub struct TokenGrant {
    pub token: Secret,
    /// Unix seconds.
    pub expires_at: u64,
    /// The whole JSON answer, for `strongroom token --json`.
    pub document: serde_json::Value,
}

impl fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The document holds the token too.
        f.debug_struct("TokenGrant")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Answer {
    token: String,
    expires_at: u64,
}

/// Hands out authorisation headers, exchanging the API key when needed.
#[derive(Debug)]
pub(super) struct Authorizer {
    credential: Credential,
    /// Tokens by the scopes they were asked for. A std mutex: held for a
    /// lookup or an insert, never across an await.
    tokens: Mutex<HashMap<Vec<String>, TokenGrant>>,
    /// One exchange at a time: parallel parts starting together then share
    /// one token instead of each asking for its own.
    exchanging: tokio::sync::Mutex<()>,
}

impl Authorizer {
    pub(super) fn new(credential: Credential) -> Authorizer {
        Authorizer {
            credential,
            tokens: Mutex::new(HashMap::new()),
            exchanging: tokio::sync::Mutex::new(()),
        }
    }

    pub(super) async fn header(
        &self,
        client: &Client,
        scopes: &[String],
    ) -> Result<Option<HeaderValue>, Error> {
        match &self.credential {
            Credential::None => Ok(None),
            Credential::Token(token) => token.bearer().map(Some),
            Credential::ApiKey(_) => {
                if let Some(token) = self.cached(scopes) {
                    return token.bearer().map(Some);
                }
                let _turn = self.exchanging.lock().await;
                if let Some(token) = self.cached(scopes) {
                    return token.bearer().map(Some);
                }
                let grant = self.exchange(client, scopes).await?;
                let header = grant.token.bearer()?;
                self.lock().insert(scopes.to_vec(), grant);
                Ok(Some(header))
            }
        }
    }

    fn cached(&self, scopes: &[String]) -> Option<Secret> {
        let now = unix_now();
        self.lock()
            .get(scopes)
            .filter(|grant| grant.expires_at > now + REFRESH_MARGIN.as_secs())
            .map(|grant| grant.token.clone())
    }

    pub(super) fn forget(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<String>, TokenGrant>> {
        // The map holds no invariant a panic could break halfway.
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `POST /auth/token` with the API key.
    pub(super) async fn exchange(
        &self,
        client: &Client,
        scopes: &[String],
    ) -> Result<TokenGrant, Error> {
        let Credential::ApiKey(key) = &self.credential else {
            return Err(Error::Credential(
                "a token exchange needs an API key (--api-key, --api-key-file or \
                 STRONGROOM_API_KEY)"
                    .into(),
            ));
        };
        let what = format!("asking for a token with scopes {}", scopes.join(" "));
        let url = client.url("auth/token")?;
        let body = serde_json::json!({ "scopes": scopes }).to_string();
        let request = client
            .http
            .request(Method::POST, url)
            .header(reqwest::header::AUTHORIZATION, key.bearer()?)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let response = client.send(&what, request).await?;
        let bytes = read_small(&what, response, MAX_TOKEN_ANSWER).await?;
        let protocol = |reason: String| Error::Protocol {
            what: what.clone(),
            reason,
        };
        let document: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|err| protocol(err.to_string()))?;
        let answer: Answer = serde_json::from_value(document.clone())
            .map_err(|err| protocol(format!("not a token answer: {err}")))?;
        Ok(TokenGrant {
            token: Secret(answer.token),
            expires_at: answer.expires_at,
            document,
        })
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_output() {
        let secret = Secret::new("srk_live_secret".into());
        assert_eq!(format!("{secret:?}"), "<redacted>");
        let credential = Credential::ApiKey(secret);
        assert!(!format!("{credential:?}").contains("srk_live"));
    }

    #[test]
    fn key_files_must_be_private_and_hold_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "srk_abc\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Secret::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("mode 644"), "{err}");
        assert!(!err.contains("srk_abc"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Secret::from_file(&path).unwrap().expose(), "srk_abc");
        std::fs::write(&path, "two keys\n").unwrap();
        assert!(Secret::from_file(&path).is_err());
    }
}
