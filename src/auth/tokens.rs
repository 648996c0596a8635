//! Token claims and their rules: what a token says (issuer, audience,
//! tenant, scopes, validity window, token id) and when it is believed.
//! Signing and signature checks are `crypto::token`'s; revocations are
//! kept here, in `<data_dir>/auth/revoked.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::Error;
use super::scope::Scope;
use crate::crypto::random_array;
use crate::crypto::token::{TokenError, TokenKeys};

/// The claims of every token this appliance issues (PASETO registered
/// claims plus `tenant` and `scopes`). Times are RFC 3339, as PASETO asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Claims {
    iss: String,
    aud: String,
    /// Who the token was issued to: an API key id or a certificate fingerprint.
    sub: String,
    tenant: String,
    scopes: Vec<String>,
    iat: String,
    nbf: String,
    exp: String,
    jti: String,
}

/// Who issues tokens and for whom they are meant.
#[derive(Debug, Clone)]
pub struct Realm {
    pub issuer: String,
    pub audience: String,
    pub leeway: Duration,
}

/// What a verified token grants.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub tenant: String,
    pub subject: String,
    pub scopes: Vec<Scope>,
    pub expires_at: u64,
    pub token_id: String,
    pub key_id: String,
}

/// A token as handed to a client.
#[derive(Debug, Clone, Serialize)]
pub struct Issued {
    pub token: String,
    pub token_id: String,
    /// Who it was issued to: `key:<API key id>` or `cert:<fingerprint>`.
    pub subject: String,
    pub tenant: String,
    pub scopes: Vec<String>,
    pub expires_at: u64,
    pub key_id: String,
}

pub(super) struct Grant<'a> {
    pub subject: &'a str,
    pub tenant: &'a str,
    pub scopes: &'a [Scope],
    pub now: u64,
    pub ttl: Duration,
}

pub(super) fn issue(keys: &TokenKeys, realm: &Realm, grant: Grant<'_>) -> Issued {
    let expires_at = grant.now + grant.ttl.as_secs();
    let token_id = hex::encode(random_array::<16>());
    let scopes: Vec<String> = grant.scopes.iter().map(Scope::to_string).collect();
    let claims = Claims {
        iss: realm.issuer.clone(),
        aud: realm.audience.clone(),
        sub: grant.subject.to_owned(),
        tenant: grant.tenant.to_owned(),
        scopes: scopes.clone(),
        iat: rfc3339(grant.now),
        nbf: rfc3339(grant.now),
        exp: rfc3339(expires_at),
        jti: token_id.clone(),
    };
    let bytes = serde_json::to_vec(&claims).expect("claims serialise");
    let key = keys.current();
    Issued {
        token: key.sign(&bytes),
        token_id,
        subject: grant.subject.to_owned(),
        tenant: grant.tenant.to_owned(),
        scopes,
        expires_at,
        key_id: key.id().to_owned(),
    }
}

/// Checks signature, issuer, audience and validity window (with the
/// realm's leeway either side), then revocation.
pub(super) fn verify(
    keys: &TokenKeys,
    realm: &Realm,
    revoked: &Revocations,
    token: &str,
    now: u64,
) -> Result<Verified, Error> {
    let (bytes, key_id) = keys.verify(token).map_err(|err| match err {
        TokenError::Malformed => Error::InvalidToken("malformed"),
        TokenError::UnknownKey => Error::InvalidToken("signed by an unknown key"),
        TokenError::BadSignature => Error::InvalidToken("bad signature"),
    })?;
    let claims: Claims =
        serde_json::from_slice(&bytes).map_err(|_| Error::InvalidToken("malformed claims"))?;
    if claims.iss != realm.issuer {
        return Err(Error::InvalidToken("wrong issuer"));
    }
    if claims.aud != realm.audience {
        return Err(Error::InvalidToken("wrong audience"));
    }
    let leeway = realm.leeway.as_secs();
    let not_before = parse_time(&claims.nbf)?;
    let expires_at = parse_time(&claims.exp)?;
    if now + leeway < not_before {
        return Err(Error::InvalidToken("not valid yet"));
    }
    if now > expires_at + leeway {
        return Err(Error::TokenExpired);
    }
    if revoked.is_revoked(&claims.jti, key_id) {
        return Err(Error::TokenRevoked);
    }
    let scopes = claims
        .scopes
        .iter()
        .map(|s| s.parse())
        .collect::<Result<Vec<Scope>, _>>()
        .map_err(|_| Error::InvalidToken("unknown scope"))?;
    Ok(Verified {
        tenant: claims.tenant,
        subject: claims.sub,
        scopes,
        expires_at,
        token_id: claims.jti,
        key_id: key_id.to_owned(),
    })
}

fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

fn parse_time(text: &str) -> Result<u64, Error> {
    humantime::parse_rfc3339(text)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .ok_or(Error::InvalidToken("malformed time"))
}

/// Revoked token ids (kept until they would have expired anyway) and
/// revoked signing keys (kept for good).
pub struct Revocations {
    path: PathBuf,
    state: RwLock<Revoked>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Revoked {
    /// Token id → its expiry (Unix seconds).
    #[serde(default)]
    tokens: BTreeMap<String, u64>,
    #[serde(default)]
    signing_keys: BTreeSet<String>,
}

impl Revocations {
    pub(super) fn open(dir: &Path) -> Result<Revocations, Error> {
        let path = dir.join("revoked.json");
        let state = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|err| Error::Corrupt {
                path: path.clone(),
                reason: err.to_string(),
            })?,
            Err(err) if err.kind() == io::ErrorKind::NotFound => Revoked::default(),
            Err(source) => return Err(Error::Store { path, source }),
        };
        Ok(Revocations {
            path,
            state: RwLock::new(state),
        })
    }

    pub(super) fn is_revoked(&self, token_id: &str, key_id: &str) -> bool {
        let state = self.state.read().expect("revocations poisoned");
        state.tokens.contains_key(token_id) || state.signing_keys.contains(key_id)
    }

    /// Revokes a token until `expires_at`, durably, before returning.
    pub(super) fn revoke_token(
        &self,
        token_id: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<(), Error> {
        self.change(now, |state| {
            state.tokens.insert(token_id.to_owned(), expires_at);
        })
    }

    pub(super) fn revoke_key(&self, key_id: &str, now: u64) -> Result<(), Error> {
        self.change(now, |state| {
            state.signing_keys.insert(key_id.to_owned());
        })
    }

    pub(super) fn revoked_keys(&self) -> Vec<String> {
        let state = self.state.read().expect("revocations poisoned");
        state.signing_keys.iter().cloned().collect()
    }

    fn change(&self, now: u64, edit: impl FnOnce(&mut Revoked)) -> Result<(), Error> {
        let mut state = self.state.write().expect("revocations poisoned");
        let mut next = state.clone();
        edit(&mut next);
        // Entries for tokens that have expired anyway are no longer needed;
        // an hour's margin covers any leeway.
        next.tokens.retain(|_, expires| *expires + 3600 > now);
        super::credentials::write_private_atomically(
            &self.path,
            &serde_json::to_vec_pretty(&next).expect("serialises"),
        )?;
        *state = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        _dir: tempfile::TempDir,
        keys: TokenKeys,
        realm: Realm,
        revoked: Revocations,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        Fixture {
            keys: TokenKeys::open_or_create(&dir.path().join("tokens")).unwrap(),
            revoked: Revocations::open(dir.path()).unwrap(),
            realm: Realm {
                issuer: "strongroom".into(),
                audience: "strongroom".into(),
                leeway: Duration::from_secs(60),
            },
            _dir: dir,
        }
    }

    const NOW: u64 = 1_800_000_000;

    fn token(f: &Fixture, scopes: &[Scope], ttl: u64) -> Issued {
        issue(
            &f.keys,
            &f.realm,
            Grant {
                subject: "key1",
                tenant: "acme",
                scopes,
                now: NOW,
                ttl: Duration::from_secs(ttl),
            },
        )
    }

    #[test]
    fn a_token_verifies_within_its_window_and_leeway() {
        let f = fixture();
        let issued = token(&f, &[Scope::UploadCreate], 900);
        let check = |now| verify(&f.keys, &f.realm, &f.revoked, &issued.token, now);
        let verified = check(NOW).unwrap();
        assert_eq!(verified.tenant, "acme");
        assert_eq!(verified.scopes, vec![Scope::UploadCreate]);
        assert_eq!(verified.expires_at, NOW + 900);
        assert!(check(NOW - 60).is_ok(), "leeway before nbf");
        assert!(matches!(
            check(NOW - 61),
            Err(Error::InvalidToken("not valid yet"))
        ));
        assert!(check(NOW + 960).is_ok(), "leeway after exp");
        assert!(matches!(check(NOW + 961), Err(Error::TokenExpired)));
    }

    #[test]
    fn other_realms_are_refused() {
        let f = fixture();
        let issued = token(&f, &[Scope::Admin], 60);
        let mut other = f.realm.clone();
        other.audience = "elsewhere".into();
        assert!(matches!(
            verify(&f.keys, &other, &f.revoked, &issued.token, NOW),
            Err(Error::InvalidToken("wrong audience"))
        ));
        let mut other = f.realm.clone();
        other.issuer = "someone".into();
        assert!(matches!(
            verify(&f.keys, &other, &f.revoked, &issued.token, NOW),
            Err(Error::InvalidToken("wrong issuer"))
        ));
    }

    #[test]
    fn revocation_by_token_and_key_is_durable() {
        let f = fixture();
        let one = token(&f, &[Scope::UploadCreate], 60);
        let two = token(&f, &[Scope::UploadCreate], 60);
        f.revoked
            .revoke_token(&one.token_id, one.expires_at, NOW)
            .unwrap();
        let check = |t: &Issued, r: &Revocations| verify(&f.keys, &f.realm, r, &t.token, NOW);
        assert!(matches!(check(&one, &f.revoked), Err(Error::TokenRevoked)));
        assert!(check(&two, &f.revoked).is_ok());

        f.revoked.revoke_key(&two.key_id, NOW).unwrap();
        let reopened = Revocations::open(f.revoked.path.parent().unwrap()).unwrap();
        assert!(matches!(check(&one, &reopened), Err(Error::TokenRevoked)));
        assert!(matches!(check(&two, &reopened), Err(Error::TokenRevoked)));
    }
}
