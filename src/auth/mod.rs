//! Who is asking, and may they: tenants and API keys (`credentials`),
//! scoped PASETO v4.public tokens (`tokens`, signed by `crypto::token`),
//! presigned download URLs (`presign`), and the per-address budget of
//! authentication failures (`failures`). The gateway asks `Auth` for a
//! `Principal` per request, and every layer below asks that principal
//! whether an action is allowed.
//!
//! Never sees HTTP types, never logs or returns a key, token or signature
//! (errors name what was wrong, not the credential), and compares every
//! secret in constant time.

pub mod credentials;
mod failures;
pub mod presign;
pub mod scope;
pub mod tokens;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::config::{AuthConfig, AuthMode};
use crate::crypto::ed25519::MacKey;
use crate::crypto::token::TokenKeys;
use crate::id::UploadId;

pub use credentials::{CredentialStore, KeyEntry, Listing, NewKey};
pub use presign::PresignedQuery;
pub use scope::{Action, Scope, ScopeClass};
pub use tokens::{Issued, Realm};

use failures::FailureLimiter;
use tokens::{Grant, Revocations};

/// The tenant every request acts for when authentication is off, and the
/// tenant the first start creates.
pub const DEFAULT_TENANT: &str = "default";

/// Verified tokens remembered at once (a few hundred bytes each).
const MAX_CACHED_TOKENS: usize = 4096;

/// The longest a presigned URL may live, whatever the configuration says.
pub const PRESIGN_MAX_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("this request needs a bearer token (Authorization: Bearer v4.public...)")]
    Missing,
    #[error("the Authorization header is not a bearer credential")]
    BadScheme,
    #[error("the token is not valid: {0}")]
    InvalidToken(&'static str),
    #[error("the token has expired; ask for a new one")]
    TokenExpired,
    #[error("the token has been revoked")]
    TokenRevoked,
    #[error("an API key is exchanged at POST /auth/token, not sent with requests")]
    ApiKeyNotAToken,
    #[error("the API key is not valid")]
    InvalidApiKey,
    #[error("the client certificate is not mapped to a tenant")]
    UnknownCertificate,
    #[error("the token does not allow this; it needs the scope {needed}")]
    Forbidden { needed: String },
    #[error("this credential may not be granted the scope {0}")]
    ScopeNotGrantable(String),
    #[error("the presigned URL's signature is not valid")]
    PresignInvalid,
    #[error("the presigned URL has expired")]
    PresignExpired,
    #[error("too many failed authentications from this address; retry later")]
    TooManyFailures { retry_after: Duration },
    #[error("bad token request: {0}")]
    BadRequest(String),
    #[error("tenant name {0:?} is not 1 to 64 of [a-z0-9_-]")]
    InvalidTenant(String),
    #[error("tenant {0:?} already exists")]
    TenantExists(String),
    #[error("no tenant {0:?}")]
    UnknownTenant(String),
    #[error("no API key {0:?}")]
    UnknownKey(String),
    #[error("no token signing key {0:?}")]
    UnknownSigningKey(String),
    #[error("credential store {}: {source}", path.display())]
    Store {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("credential store {} is damaged: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error(transparent)]
    Keys(#[from] crate::crypto::Error),
}

impl Error {
    /// Failures that count against the client's address: guesses, not
    /// honest clients holding an expired token.
    fn is_guess(&self) -> bool {
        matches!(
            self,
            Error::InvalidToken(_)
                | Error::InvalidApiKey
                | Error::PresignInvalid
                | Error::UnknownCertificate
                | Error::BadScheme
        )
    }
}

/// Who a request acts as.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub tenant: String,
    pub actor: Actor,
    grants: Grants,
    /// The last second (Unix) the credential may be used in, leeway
    /// included, if it ever stops being valid.
    pub usable_until: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Actor {
    /// Authentication is off (`auth.mode = "none"`, loopback only).
    Unauthenticated,
    Token {
        token_id: String,
        subject: String,
    },
    Presigned,
}

#[derive(Debug, Clone, PartialEq)]
enum Grants {
    Everything,
    Scopes(Vec<Scope>),
}

impl Principal {
    /// The principal of every request when authentication is off.
    pub fn unauthenticated() -> Principal {
        Principal {
            tenant: DEFAULT_TENANT.to_owned(),
            actor: Actor::Unauthenticated,
            grants: Grants::Everything,
            usable_until: None,
        }
    }

    /// Whether the principal may do `action`.
    pub fn require(&self, action: Action) -> Result<(), Error> {
        let allowed = match &self.grants {
            Grants::Everything => true,
            Grants::Scopes(scopes) => scopes.iter().any(|s| action.permitted_by(s)),
        };
        if allowed {
            return Ok(());
        }
        Err(Error::Forbidden {
            needed: action.needed_scope().to_string(),
        })
    }

    /// A short, secret-free name of who acted, for logs and the audit trail.
    pub fn actor_label(&self) -> String {
        match &self.actor {
            Actor::Unauthenticated => "unauthenticated".to_owned(),
            Actor::Token { token_id, subject } => format!("token:{token_id} ({subject})"),
            Actor::Presigned => "presigned-url".to_owned(),
        }
    }
}

/// What a client asks the token endpoint for.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

/// The credential presented to the token endpoint.
#[derive(Debug, Clone, Copy)]
pub enum Presented<'a> {
    /// The `Authorization` header's value.
    Authorization(&'a str),
    /// SHA-256 of a verified client certificate.
    ClientCertificate([u8; 32]),
    Nothing,
}

/// Public facts about a token signing key.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SigningKeyInfo {
    pub key_id: String,
    pub public_key: String,
    pub current: bool,
    pub revoked: bool,
}

pub struct Auth {
    config: AuthConfig,
    realm: Realm,
    credentials: CredentialStore,
    keys: RwLock<TokenKeys>,
    /// Tokens whose signature and claims were already checked, by the
    /// SHA-256 of the token text: a tus client sends one token with every
    /// PATCH, and an Ed25519 verification costs far more than this lookup.
    /// Revocation, expiry and the tenant are still checked on every use.
    verified: Mutex<HashMap<[u8; 32], tokens::Verified>>,
    revoked: Revocations,
    presign_key: MacKey,
    failures: FailureLimiter,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("mode", &self.config.mode)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Opens the credential store, token keys, revocations and presign key
    /// in `dir` (`<data_dir>/auth`). When tokens are enforced and the store
    /// is empty (the first start), creates tenant `default` and an admin
    /// API key for it, returned here so the caller can show it once.
    pub fn open(dir: &Path, config: &AuthConfig) -> Result<(Auth, Option<NewKey>), Error> {
        credentials::create_private_dir(dir)?;
        let credentials = CredentialStore::open(dir)?;
        let keys = TokenKeys::open_or_create(&dir.join("token-keys"))?;
        let presign_path = dir.join("presign.key");
        let presign_key = match MacKey::load(&presign_path)? {
            Some(key) => key,
            None => MacKey::create(&presign_path)?,
        };
        let first_key = if config.mode == AuthMode::Tokens && credentials.is_empty()? {
            credentials.add_tenant(DEFAULT_TENANT)?;
            Some(credentials.create_key(DEFAULT_TENANT, true, Some("first start".into()))?)
        } else {
            None
        };
        let auth = Auth {
            realm: Realm {
                issuer: config.issuer.clone(),
                audience: config.audience.clone(),
                leeway: config.leeway,
            },
            config: config.clone(),
            credentials,
            keys: RwLock::new(keys),
            verified: Mutex::new(HashMap::new()),
            revoked: Revocations::open(dir)?,
            presign_key,
            failures: FailureLimiter::new(config.failures_per_minute),
        };
        Ok((auth, first_key))
    }

    pub fn enforcing(&self) -> bool {
        self.config.mode == AuthMode::Tokens
    }

    pub fn leeway(&self) -> Duration {
        self.config.leeway
    }

    pub fn credentials(&self) -> &CredentialStore {
        &self.credentials
    }

    /// The principal of a request to the upload and download API, from its
    /// `Authorization` header.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        client: IpAddr,
    ) -> Result<Principal, Error> {
        if !self.enforcing() {
            return Ok(Principal::unauthenticated());
        }
        self.guarded(client, || {
            let bearer = bearer(authorization.ok_or(Error::Missing)?)?;
            if credentials::looks_like_api_key(bearer) {
                return Err(Error::ApiKeyNotAToken);
            }
            let verified = self.verify_token(bearer, now_secs())?;
            if !self.credentials.has_tenant(&verified.tenant)? {
                return Err(Error::InvalidToken("tenant no longer exists"));
            }
            Ok(Principal {
                tenant: verified.tenant,
                actor: Actor::Token {
                    token_id: verified.token_id,
                    subject: verified.subject,
                },
                grants: Grants::Scopes(verified.scopes),
                usable_until: Some(verified.expires_at + self.config.leeway.as_secs()),
            })
        })
    }

    /// A token's claims: from the cache of verified tokens when it is there
    /// and still within its lifetime, otherwise verified in full.
    fn verify_token(&self, token: &str, now: u64) -> Result<tokens::Verified, Error> {
        let digest = crate::crypto::sha256(token.as_bytes());
        let cached = self
            .verified
            .lock()
            .expect("verified tokens poisoned")
            .get(&digest)
            .cloned();
        if let Some(verified) = cached {
            if now > verified.expires_at + self.config.leeway.as_secs() {
                return Err(Error::TokenExpired);
            }
            if self
                .revoked
                .is_revoked(&verified.token_id, &verified.key_id)
            {
                return Err(Error::TokenRevoked);
            }
            return Ok(verified);
        }
        let keys = self.keys.read().expect("token keys poisoned");
        let verified = tokens::verify(&keys, &self.realm, &self.revoked, token, now)?;
        let mut cache = self.verified.lock().expect("verified tokens poisoned");
        if cache.len() >= MAX_CACHED_TOKENS {
            let leeway = self.config.leeway.as_secs();
            cache.retain(|_, v| now <= v.expires_at + leeway);
            if cache.len() >= MAX_CACHED_TOKENS {
                cache.clear();
            }
        }
        cache.insert(digest, verified.clone());
        Ok(verified)
    }

    /// The principal of a presigned download of `object`.
    pub fn authenticate_presigned(
        &self,
        object: UploadId,
        query: &PresignedQuery,
        client: IpAddr,
    ) -> Result<Principal, Error> {
        self.guarded(client, || {
            presign::check(&self.presign_key, object, query, now_secs())?;
            Ok(Principal {
                tenant: query.tenant.clone(),
                actor: Actor::Presigned,
                grants: Grants::Scopes(vec![Scope::ObjectRead(object)]),
                usable_until: Some(query.expires),
            })
        })
    }

    /// Exchanges an API key or a mapped client certificate for a token.
    pub fn issue_token(
        &self,
        presented: Presented<'_>,
        request: &TokenRequest,
        client: IpAddr,
    ) -> Result<Issued, Error> {
        let (subject, tenant, admin) = self.guarded(client, || self.token_subject(presented))?;
        let scopes = requested_scopes(request)?;
        if scopes.contains(&Scope::Admin) && !admin {
            return Err(Error::ScopeNotGrantable("admin".into()));
        }
        let ttl = self.ttl_for(&scopes, request.ttl_seconds);
        let keys = self.keys.read().expect("token keys poisoned");
        Ok(tokens::issue(
            &keys,
            &self.realm,
            Grant {
                subject: &subject,
                tenant: &tenant,
                scopes: &scopes,
                now: now_secs(),
                ttl,
            },
        ))
    }

    fn token_subject(&self, presented: Presented<'_>) -> Result<(String, String, bool), Error> {
        match presented {
            Presented::Authorization(value) => {
                let key = self.credentials.check(bearer(value)?)?;
                Ok((format!("key:{}", key.id), key.tenant, key.admin))
            }
            Presented::ClientCertificate(fingerprint) => {
                let hex = hex::encode(fingerprint);
                let tenant = self
                    .config
                    .client_certificates
                    .get(&hex)
                    .ok_or(Error::UnknownCertificate)?;
                Ok((format!("cert:{}", &hex[..16]), tenant.clone(), false))
            }
            Presented::Nothing => Err(Error::Missing),
        }
    }

    /// The shortest lifetime among the scopes' classes, shortened further
    /// if the client asked for less.
    fn ttl_for(&self, scopes: &[Scope], requested: Option<u64>) -> Duration {
        let class_ttl = |class: ScopeClass| match class {
            ScopeClass::Upload => self.config.upload_token_ttl,
            ScopeClass::Download => self.config.download_token_ttl,
            ScopeClass::Admin => self.config.admin_token_ttl,
        };
        let longest = scopes
            .iter()
            .map(|s| class_ttl(s.class()))
            .min()
            .unwrap_or(self.config.download_token_ttl);
        match requested {
            Some(secs) => longest.min(Duration::from_secs(secs.max(1))),
            None => longest,
        }
    }

    /// A presigned URL query for `object`, for a principal allowed to read
    /// it. Its lifetime is the configured one unless a shorter one is asked
    /// for, and never more than 24 hours.
    pub fn presign(
        &self,
        principal: &Principal,
        object: UploadId,
        ttl_seconds: Option<u64>,
    ) -> Result<PresignedQuery, Error> {
        principal.require(Action::ReadObject(object))?;
        let ttl = ttl_seconds
            .map(Duration::from_secs)
            .unwrap_or(self.config.presign_ttl)
            .min(PRESIGN_MAX_TTL);
        let expires = now_secs() + ttl.as_secs();
        Ok(presign::sign(
            &self.presign_key,
            object,
            &principal.tenant,
            expires,
        ))
    }

    /// Revokes one token by id until it would have expired anyway.
    pub fn revoke_token(&self, token_id: &str) -> Result<(), Error> {
        let now = now_secs();
        let longest = self
            .config
            .upload_token_ttl
            .max(self.config.admin_token_ttl)
            .max(self.config.download_token_ttl);
        let until = now + longest.as_secs() + self.config.leeway.as_secs();
        self.revoked.revoke_token(token_id, until, now)
    }

    /// Revokes every token a signing key has signed, for good. The current
    /// key is rotated first so new tokens keep being issued.
    pub fn revoke_signing_key(&self, key_id: &str) -> Result<(), Error> {
        let mut keys = self.keys.write().expect("token keys poisoned");
        if !keys.all().iter().any(|k| k.id() == key_id) {
            return Err(Error::UnknownSigningKey(key_id.chars().take(80).collect()));
        }
        if keys.current().id() == key_id {
            keys.rotate()?;
        }
        self.revoked.revoke_key(key_id, now_secs())
    }

    /// Makes a new token signing key current; returns its id.
    pub fn rotate_signing_key(&self) -> Result<String, Error> {
        let mut keys = self.keys.write().expect("token keys poisoned");
        Ok(keys.rotate()?.id().to_owned())
    }

    /// The public halves of every signing key, for anyone verifying tokens.
    pub fn signing_keys(&self) -> Vec<SigningKeyInfo> {
        let keys = self.keys.read().expect("token keys poisoned");
        let revoked = self.revoked.revoked_keys();
        keys.all()
            .iter()
            .map(|k| SigningKeyInfo {
                key_id: k.id().to_owned(),
                public_key: k.public_paserk(),
                current: k.id() == keys.current().id(),
                revoked: revoked.iter().any(|r| r == k.id()),
            })
            .collect()
    }

    /// Runs an authentication step under the client's failure budget.
    fn guarded<T>(
        &self,
        client: IpAddr,
        step: impl FnOnce() -> Result<T, Error>,
    ) -> Result<T, Error> {
        let now = Instant::now();
        self.failures
            .check(client, now)
            .map_err(|retry_after| Error::TooManyFailures { retry_after })?;
        let result = step();
        if let Err(err) = &result
            && err.is_guess()
        {
            self.failures.record_failure(client, now);
        }
        result
    }
}

fn bearer(value: &str) -> Result<&str, Error> {
    let (scheme, credential) = value.trim().split_once(' ').ok_or(Error::BadScheme)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Error::BadScheme);
    }
    let credential = credential.trim();
    if credential.is_empty() {
        return Err(Error::Missing);
    }
    Ok(credential)
}

fn requested_scopes(request: &TokenRequest) -> Result<Vec<Scope>, Error> {
    let Some(texts) = &request.scopes else {
        return Ok(vec![Scope::UploadCreate]);
    };
    if texts.is_empty() || texts.len() > 32 {
        return Err(Error::BadRequest("ask for 1 to 32 scopes".into()));
    }
    let mut scopes = Vec::with_capacity(texts.len());
    for text in texts {
        let scope: Scope = text
            .parse()
            .map_err(|e: scope::UnknownScope| Error::BadRequest(e.to_string()))?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    Ok(scopes)
}

pub(crate) fn valid_tenant_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
