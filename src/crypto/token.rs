//! PASETO v4.public tokens (the `pasetors` crate): signs and verifies
//! opaque claim bytes under Ed25519 keys named by their PASERK id (`k4.pid.…`),
//! which travels in the token's footer as `kid`. Owns the token signing key
//! files; knows nothing of tenants, scopes or expiry (the `auth` module owns
//! the claims and their rules).
//!
//! Verification pins the version and purpose: a string that is not
//! `v4.public.` never reaches a verifier, so no `alg: none` or
//! key-confusion attack has a path in.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use pasetors::Public;
use pasetors::footer::Footer;
use pasetors::keys::{AsymmetricPublicKey, AsymmetricSecretKey};
use pasetors::paserk::{FormatAsPaserk, Id};
use pasetors::token::UntrustedToken;
use pasetors::version4::{PublicToken, V4};
use ring::signature::{Ed25519KeyPair, KeyPair};

use super::Error;
use super::digest::random_array;
use super::secret_file::{self, SECRET_LEN, io_error, key_file_error};

/// The longest token accepted for parsing; real ones are a few hundred bytes.
const MAX_TOKEN_LEN: usize = 4096;

/// One token signing key: an Ed25519 seed in a secret file.
pub struct TokenKey {
    id: String,
    version: u32,
    secret: AsymmetricSecretKey<V4>,
    public: AsymmetricPublicKey<V4>,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKey")
            .field("id", &self.id)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Why a token was not accepted. Deliberately coarse: the caller learns
/// "malformed", "unknown key" or "bad signature", never which byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a v4.public token")]
    Malformed,
    #[error("token signed by an unknown key")]
    UnknownKey,
    #[error("token signature does not verify")]
    BadSignature,
}

impl TokenKey {
    fn from_seed(path: &Path, version: u32, seed: &[u8; SECRET_LEN]) -> Result<TokenKey, Error> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|_| key_file_error(path, "not an Ed25519 seed"))?;
        let mut both = [0u8; 64];
        both[..32].copy_from_slice(seed);
        both[32..].copy_from_slice(pair.public_key().as_ref());
        let secret = AsymmetricSecretKey::<V4>::from(&both);
        both.fill(0);
        let secret = secret.map_err(|_| key_file_error(path, "not an Ed25519 seed"))?;
        let public = AsymmetricPublicKey::<V4>::from(pair.public_key().as_ref())
            .map_err(|_| key_file_error(path, "not an Ed25519 public key"))?;
        let mut id = String::new();
        Id::from(&public)
            .fmt(&mut id)
            .map_err(|_| key_file_error(path, "cannot name the key"))?;
        Ok(TokenKey {
            id,
            version,
            secret,
            public,
        })
    }

    /// The key's PASERK id (`k4.pid.…`): public, safe to log and to revoke by.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// The public key as a PASERK string (`k4.public.…`), for verifiers.
    pub fn public_paserk(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = self.public.fmt(&mut text);
        text
    }

    /// Signs `claims` (a JSON object) into a `v4.public` token whose footer
    /// names this key.
    pub fn sign(&self, claims: &[u8]) -> String {
        let footer = self.footer();
        PublicToken::sign(&self.secret, claims, Some(footer.as_bytes()), None)
            .expect("a valid key signs a non-empty payload")
    }

    fn footer(&self) -> String {
        serde_json::json!({ "kid": self.id }).to_string()
    }
}

/// Every token signing key, from `<dir>/token.v<N>.key`; the highest
/// version signs, all of them verify until an administrator revokes one.
#[derive(Debug)]
pub struct TokenKeys {
    dir: PathBuf,
    keys: Vec<TokenKey>,
}

impl TokenKeys {
    /// Loads the keys in `dir`, creating the directory (0700) and a first
    /// key when there is none.
    pub fn open_or_create(dir: &Path) -> Result<TokenKeys, Error> {
        secret_file::create_private_dir(dir)?;
        let mut keys = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_error(dir))? {
            let entry = entry.map_err(io_error(dir))?;
            let name = entry.file_name();
            let Some(version) = name.to_str().and_then(parse_key_file_name) else {
                continue;
            };
            let path = entry.path();
            let Some(mut seed) = secret_file::read(&path)? else {
                continue;
            };
            let key = TokenKey::from_seed(&path, version, &seed);
            seed.fill(0);
            keys.push(key?);
        }
        keys.sort_by_key(TokenKey::version);
        let mut ring = TokenKeys {
            dir: dir.to_path_buf(),
            keys,
        };
        if ring.keys.is_empty() {
            ring.rotate()?;
        }
        Ok(ring)
    }

    /// The key new tokens are signed with.
    pub fn current(&self) -> &TokenKey {
        self.keys.last().expect("a token keyring is never empty")
    }

    pub fn all(&self) -> &[TokenKey] {
        &self.keys
    }

    /// Creates the next key version and makes it current. Older keys keep
    /// verifying the tokens they signed until those expire or are revoked.
    pub fn rotate(&mut self) -> Result<&TokenKey, Error> {
        let version = self.keys.last().map_or(1, |k| k.version + 1);
        let path = self.dir.join(format!("token.v{version}.key"));
        let mut seed = random_array::<SECRET_LEN>();
        let written = secret_file::create(&path, &seed);
        let key = TokenKey::from_seed(&path, version, &seed);
        seed.fill(0);
        written?;
        self.keys.push(key?);
        Ok(self.current())
    }

    /// Verifies `token` against the key its footer names and returns its
    /// claim bytes and that key's id.
    pub fn verify(&self, token: &str) -> Result<(Vec<u8>, &str), TokenError> {
        if token.len() > MAX_TOKEN_LEN || !token.starts_with(PublicToken::HEADER) {
            return Err(TokenError::Malformed);
        }
        let untrusted =
            UntrustedToken::<Public, V4>::try_from(token).map_err(|_| TokenError::Malformed)?;
        let kid = footer_key_id(untrusted.untrusted_footer()).ok_or(TokenError::Malformed)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == kid)
            .ok_or(TokenError::UnknownKey)?;
        let trusted = PublicToken::verify(&key.public, &untrusted, None, None)
            .map_err(|_| TokenError::BadSignature)?;
        Ok((trusted.payload().as_bytes().to_vec(), key.id()))
    }
}

fn footer_key_id(footer: &[u8]) -> Option<String> {
    let mut parsed = Footer::new();
    parsed.parse_bytes(footer).ok()?;
    parsed.get_claim("kid")?.as_str().map(str::to_owned)
}

fn parse_key_file_name(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("token.v")?.strip_suffix(".key")?;
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if canonical { digits.parse().ok() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (tempfile::TempDir, TokenKeys) {
        let dir = tempfile::tempdir().unwrap();
        let keys = TokenKeys::open_or_create(&dir.path().join("tokens")).unwrap();
        (dir, keys)
    }

    #[test]
    fn signs_and_verifies_and_reopens() {
        let (dir, keys) = keys();
        let token = keys.current().sign(br#"{"a":1}"#);
        assert!(token.starts_with("v4.public."));
        let (claims, kid) = keys.verify(&token).unwrap();
        assert_eq!(claims, br#"{"a":1}"#);
        assert!(kid.starts_with("k4.pid."));
        let reopened = TokenKeys::open_or_create(&dir.path().join("tokens")).unwrap();
        assert_eq!(reopened.current().id(), keys.current().id());
        assert!(reopened.verify(&token).is_ok());
    }

    #[test]
    fn rejects_tampering_other_versions_and_unknown_keys() {
        let (_dir, keys) = keys();
        let token = keys.current().sign(br#"{"tenant":"a"}"#);
        // Flip one character of the signed body.
        let mut bytes = token.clone().into_bytes();
        let at = "v4.public.".len() + 3;
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(keys.verify(&tampered), Err(TokenError::BadSignature));
        let local = token.replacen("v4.public.", "v4.local.", 1);
        assert_eq!(keys.verify(&local), Err(TokenError::Malformed));
        let v2 = token.replacen("v4.public.", "v2.public.", 1);
        assert_eq!(keys.verify(&v2), Err(TokenError::Malformed));
        assert_eq!(keys.verify("garbage"), Err(TokenError::Malformed));

        let (_other_dir, other) = self::keys();
        let foreign = other.current().sign(br#"{"tenant":"a"}"#);
        assert_eq!(keys.verify(&foreign), Err(TokenError::UnknownKey));
    }

    #[test]
    fn rotation_keeps_old_tokens_verifiable() {
        let (_dir, mut keys) = keys();
        let old = keys.current().sign(b"{}");
        let first = keys.current().id().to_owned();
        keys.rotate().unwrap();
        assert_ne!(keys.current().id(), first);
        assert_eq!(keys.current().version(), 2);
        assert_eq!(keys.verify(&old).unwrap().1, first);
    }

    #[test]
    fn debug_hides_the_secret() {
        let (_dir, keys) = keys();
        let shown = format!("{:?}", keys.current());
        assert!(shown.contains("k4.pid."), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
