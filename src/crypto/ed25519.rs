//! Signing keys kept in files: an Ed25519 key that signs (the audit log's
//! checkpoints) and an HMAC-SHA256 key that hides names (the audit log's
//! keyed filenames). Owns their key file format and permission rules; never
//! prints, logs or returns key bytes. Verification stays in `sign`.
//!
//! A key file is the 32-byte secret as 64 hex digits and a newline, mode
//! 0600, the same shape as a KEK file (`keys`). It is created once, never
//! replaced: losing the signing key would orphan every checkpoint signed so
//! far, so creating over an existing file is an error, not an overwrite.

use std::fmt;
use std::path::Path;

use ring::hmac;
use ring::signature::{Ed25519KeyPair, KeyPair};

use super::Error;
use super::digest::random_array;
use super::secret_file::{self, SECRET_LEN, key_file_error};

/// Length of an Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;

/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// An Ed25519 private key (RFC 8032), loaded from its seed file.
pub struct SigningKey(Ed25519KeyPair);

impl SigningKey {
    /// Loads the key in `path`, or `None` if there is no such file.
    pub fn load(path: &Path) -> Result<Option<SigningKey>, Error> {
        let Some(mut seed) = secret_file::read(path)? else {
            return Ok(None);
        };
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed);
        seed.fill(0);
        let pair = pair.map_err(|_| key_file_error(path, "not an Ed25519 seed"))?;
        Ok(Some(SigningKey(pair)))
    }

    /// Creates a fresh key in `path` (mode 0600); fails if the file exists.
    pub fn create(path: &Path) -> Result<SigningKey, Error> {
        let mut seed = random_array::<SECRET_LEN>();
        let written = secret_file::create(path, &seed);
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed);
        seed.fill(0);
        written?;
        let pair = pair.map_err(|_| key_file_error(path, "not an Ed25519 seed"))?;
        Ok(SigningKey(pair))
    }

    /// A key from a known seed, for tests that need stable signatures.
    #[cfg(test)]
    pub fn from_seed(seed: &[u8; SECRET_LEN]) -> SigningKey {
        SigningKey(Ed25519KeyPair::from_seed_unchecked(seed).expect("32-byte seed"))
    }

    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        let mut public = [0u8; PUBLIC_KEY_LEN];
        public.copy_from_slice(self.0.public_key().as_ref());
        public
    }

    /// The Ed25519 signature of `message` (deterministic, RFC 8032).
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut signature = [0u8; SIGNATURE_LEN];
        signature.copy_from_slice(self.0.sign(message).as_ref());
        signature
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &hex::encode(self.public_key()))
            .finish_non_exhaustive()
    }
}

/// An HMAC-SHA256 key (RFC 2104), loaded from its key file.
pub struct MacKey(hmac::Key);

impl MacKey {
    /// Loads the key in `path`, or `None` if there is no such file.
    pub fn load(path: &Path) -> Result<Option<MacKey>, Error> {
        let Some(mut secret) = secret_file::read(path)? else {
            return Ok(None);
        };
        let key = hmac::Key::new(hmac::HMAC_SHA256, &secret);
        secret.fill(0);
        Ok(Some(MacKey(key)))
    }

    /// Creates a fresh key in `path` (mode 0600); fails if the file exists.
    pub fn create(path: &Path) -> Result<MacKey, Error> {
        let mut secret = random_array::<SECRET_LEN>();
        let written = secret_file::create(path, &secret);
        let key = hmac::Key::new(hmac::HMAC_SHA256, &secret);
        secret.fill(0);
        written?;
        Ok(MacKey(key))
    }

    /// A key from known bytes, for tests that need stable tags.
    #[cfg(test)]
    pub fn from_bytes(secret: &[u8; SECRET_LEN]) -> MacKey {
        MacKey(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// HMAC-SHA256 of `data` under this key.
    pub fn tag(&self, data: &[u8]) -> [u8; 32] {
        let mut tag = [0u8; 32];
        tag.copy_from_slice(hmac::sign(&self.0, data).as_ref());
        tag
    }
}

impl fmt::Debug for MacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MacKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::secret_file::write_private_file;
    use super::*;
    use crate::crypto::ed25519_verify;

    fn file_mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn rfc8032_test_1_public_key_and_signature() {
        // RFC 8032 section 7.1, TEST 1 (empty message).
        let seed = hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap();
        let key = SigningKey::from_seed(&seed.try_into().unwrap());
        assert_eq!(
            hex::encode(key.public_key()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        assert_eq!(
            hex::encode(key.sign(b"")),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb882\
             1590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
    }

    #[test]
    fn rfc4231_test_case_2() {
        // RFC 4231 test case 2 uses the 4-byte key "Jefe"; ring pads short
        // keys with zeros as HMAC does, so the 32-byte zero-padded key agrees.
        let mut secret = [0u8; 32];
        secret[..4].copy_from_slice(b"Jefe");
        let key = MacKey::from_bytes(&secret);
        assert_eq!(
            hex::encode(key.tag(b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn created_keys_are_private_reload_and_are_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        assert!(SigningKey::load(&path).unwrap().is_none());
        let created = SigningKey::create(&path).unwrap();
        assert_eq!(file_mode(&path), 0o600);
        assert_eq!(fs::read(&path).unwrap().len(), 65);
        let loaded = SigningKey::load(&path).unwrap().unwrap();
        assert_eq!(created.public_key(), loaded.public_key());
        let signature = loaded.sign(b"checkpoint");
        assert!(ed25519_verify(
            &created.public_key(),
            b"checkpoint",
            &signature
        ));

        let err = SigningKey::create(&path).unwrap_err();
        assert!(err.to_string().contains("refusing to replace"), "{err}");
        assert_eq!(
            SigningKey::load(&path).unwrap().unwrap().public_key(),
            created.public_key()
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );

        let mac_path = dir.path().join("names.key");
        let mac = MacKey::create(&mac_path).unwrap();
        assert_eq!(file_mode(&mac_path), 0o600);
        let reloaded = MacKey::load(&mac_path).unwrap().unwrap();
        assert_eq!(mac.tag(b"report.pdf"), reloaded.tag(b"report.pdf"));
        assert_ne!(
            mac.tag(b"report.pdf"),
            MacKey::from_bytes(&[0; 32]).tag(b"report.pdf")
        );
    }

    #[test]
    fn key_files_others_can_read_or_that_are_malformed_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        SigningKey::create(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = SigningKey::load(&path).unwrap_err();
        assert!(matches!(err, Error::KeyFilePermissions { mode: 0o640, .. }));

        let bad = dir.path().join("names.key");
        write_private_file(&bad, b"secretsecret\n").unwrap();
        let err = MacKey::load(&bad).unwrap_err();
        assert!(matches!(err, Error::KeyFile { .. }));
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn debug_output_hides_secrets() {
        let key = SigningKey::from_seed(&[7; 32]);
        let shown = format!("{key:?}");
        assert!(shown.contains(&hex::encode(key.public_key())), "{shown}");
        assert!(!shown.contains(&hex::encode([7u8; 32])), "{shown}");
        assert_eq!(
            format!("{:?}", MacKey::from_bytes(&[7; 32])),
            "MacKey(<redacted>)"
        );
    }
}
