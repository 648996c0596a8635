//! Provenance signatures made by clients: an uploader's Ed25519 key (PKCS#8,
//! PEM or DER, as `openssl genpkey -algorithm ed25519` writes it) signs the
//! statement the provenance plugin checks, `strongroom-provenance-v1\n{sha256
//! hex}\n{size}\n`. Owns reading that key file; never prints, logs or returns
//! the private key, and never decides whether a signature is trusted (the
//! plugin does, against its policy's keys).

use std::fmt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::signature::{Ed25519KeyPair, KeyPair};

use super::Error;
use super::ed25519::{PUBLIC_KEY_LEN, SIGNATURE_LEN};
use super::secret_file::{key_file_error, read_owner_only};

/// The statement format's first line; the plugin refuses any other.
pub const STATEMENT_VERSION: &str = "strongroom-provenance-v1";

/// Far above a PEM Ed25519 key (119 bytes); a bigger file is not one.
const MAX_KEY_FILE: u64 = 16 << 10;

/// The text a provenance signature covers: bound to the SHA-256 and size the
/// appliance computes itself, never to a name or anything else a client says.
pub fn statement(sha256_hex: &str, size: u64) -> String {
    format!("{STATEMENT_VERSION}\n{sha256_hex}\n{size}\n")
}

/// An uploader's Ed25519 signing key.
pub struct ProvenanceKey(Ed25519KeyPair);

impl ProvenanceKey {
    /// Reads a PKCS#8 key file (PEM `PRIVATE KEY`, or DER). Refuses a file
    /// group or others can read or write, as for every key we read.
    /// Blocking.
    pub fn load(path: &Path) -> Result<ProvenanceKey, Error> {
        let mut bytes = read_owner_only(path, MAX_KEY_FILE)?;
        if bytes.len() as u64 > MAX_KEY_FILE {
            return Err(key_file_error(path, "too large for an Ed25519 key"));
        }
        let parsed = Self::parse(&bytes).map_err(|reason| key_file_error(path, reason));
        bytes.fill(0);
        parsed
    }

    /// A key from PKCS#8 bytes, PEM or DER; the error says why not.
    pub fn parse(bytes: &[u8]) -> Result<ProvenanceKey, &'static str> {
        let der = match pem_body(bytes)? {
            Some(mut der) => {
                let pair = Self::from_der(&der);
                der.fill(0);
                return pair;
            }
            None => bytes,
        };
        Self::from_der(der)
    }

    fn from_der(der: &[u8]) -> Result<ProvenanceKey, &'static str> {
        // `maybe_unchecked` also takes PKCS#8 v1 (no public key inside),
        // which is what OpenSSL writes.
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map(ProvenanceKey)
            .map_err(|_| "not a PKCS#8 Ed25519 private key")
    }

    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        let mut public = [0u8; PUBLIC_KEY_LEN];
        public.copy_from_slice(self.0.public_key().as_ref());
        public
    }

    /// The signature over [`statement`] for a file of `size` bytes whose
    /// SHA-256 is `sha256`: what the `signature` metadata carries, in
    /// standard base64.
    pub fn sign_statement(&self, sha256: &[u8; 32], size: u64) -> String {
        let message = statement(&hex::encode(sha256), size);
        let mut signature = [0u8; SIGNATURE_LEN];
        signature.copy_from_slice(self.0.sign(message.as_bytes()).as_ref());
        BASE64.encode(signature)
    }
}

impl fmt::Debug for ProvenanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProvenanceKey")
            .field("public", &BASE64.encode(self.public_key()))
            .finish_non_exhaustive()
    }
}

/// The DER inside a PEM `PRIVATE KEY` block, `None` when the bytes are not
/// PEM at all (so they may be DER).
fn pem_body(bytes: &[u8]) -> Result<Option<Vec<u8>>, &'static str> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Ok(None);
    };
    if !text.contains("-----BEGIN") {
        return Ok(None);
    }
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        return Err("an encrypted key: decrypt it first (openssl pkey -in KEY -out PLAIN)");
    }
    let body = text
        .split_once("-----BEGIN PRIVATE KEY-----")
        .and_then(|(_, rest)| rest.split_once("-----END PRIVATE KEY-----"))
        .map(|(body, _)| body)
        .ok_or("a PEM file without a PRIVATE KEY block")?;
    let base64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    BASE64
        .decode(base64)
        .map(Some)
        .map_err(|_| "a PEM PRIVATE KEY block that is not base64")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::ed25519_verify;
    use std::os::unix::fs::PermissionsExt;

    /// `openssl genpkey -algorithm ed25519` output (PKCS#8 v1) and its
    /// public key from `openssl pkey -pubout`.
    const OPENSSL_PEM: &str = "-----BEGIN PRIVATE KEY-----\n\
        MC4CAQAwBQYDK2VwBCIEILxhNaTPxmxzrO5RX1shtFXNPPQSaqibWOh7QjUE2IJw\n\
        -----END PRIVATE KEY-----\n";
    const OPENSSL_PUBLIC: &str = "mNggMq22yJGhkWg1qVR+BiUk5twqpQhNODRbKpS3Qx0=";

    #[test]
    fn openssl_keys_load_as_pem_and_as_der() {
        let pem = ProvenanceKey::parse(OPENSSL_PEM.as_bytes()).unwrap();
        assert_eq!(BASE64.encode(pem.public_key()), OPENSSL_PUBLIC);
        let der = pem_body(OPENSSL_PEM.as_bytes()).unwrap().unwrap();
        let from_der = ProvenanceKey::parse(&der).unwrap();
        assert_eq!(from_der.public_key(), pem.public_key());
    }

    #[test]
    fn the_signature_covers_the_statement_the_plugin_checks() {
        let key = ProvenanceKey::parse(OPENSSL_PEM.as_bytes()).unwrap();
        let sha256 = crate::crypto::sha256(b"hello");
        let signature = BASE64.decode(key.sign_statement(&sha256, 5)).unwrap();
        let message = format!("strongroom-provenance-v1\n{}\n5\n", hex::encode(sha256));
        assert!(ed25519_verify(
            &key.public_key(),
            message.as_bytes(),
            &signature
        ));
        assert!(!ed25519_verify(
            &key.public_key(),
            statement(&hex::encode(sha256), 6).as_bytes(),
            &signature
        ));
    }

    #[test]
    fn other_inputs_are_refused_with_a_reason() {
        assert!(ProvenanceKey::parse(b"not a key").is_err());
        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let err = ProvenanceKey::parse(encrypted.as_bytes()).unwrap_err();
        assert!(err.contains("encrypted"), "{err}");
        let public = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        assert!(ProvenanceKey::parse(public.as_bytes()).is_err());
    }

    #[test]
    fn key_files_others_can_read_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signer.pem");
        std::fs::write(&path, OPENSSL_PEM).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = ProvenanceKey::load(&path).unwrap_err();
        assert!(matches!(err, Error::KeyFilePermissions { .. }), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let key = ProvenanceKey::load(&path).unwrap();
        assert!(!format!("{key:?}").contains("MC4CAQAw"));
    }
}
