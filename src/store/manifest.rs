//! Signed manifests: what a settled object is (id, tenant, size, SHA-256,
//! segments, key ids), what its inspection decided, and where its commit
//! sits in the audit log, signed with the appliance's manifest key
//! (Ed25519). Owns the manifest format, its canonical bytes, the key file
//! and verification. Never reads objects or the index: the caller hands it
//! the facts, and `strongroom verify` checks a file against the result
//! offline.
//!
//! # The document
//!
//! Served at `GET /objects/{id}/manifest`:
//!
//! ```text
//! {"manifest": {"audit_index": 17, "committed_at": 1750000000, ...},
//!  "signature": {"algorithm": "ed25519", "key_id": "<16 hex>", "value": "<base64>"}}
//! ```
//!
//! # What is signed
//!
//! The Ed25519 signature (RFC 8032, 64 bytes, standard base64 in `value`)
//! covers the bytes `strongroom-manifest/1` `\n` followed by the canonical
//! JSON of the `manifest` member: object members sorted by the UTF-8 bytes
//! of their names, no whitespace, strings as `serde_json` writes them (only
//! `"`, `\` and control characters escaped, everything else as UTF-8),
//! integers in decimal, no fractions or exponents, `null` for an absent
//! value. The rest of the document may be formatted any way (the appliance
//! pretty-prints it): a verifier parses the `manifest` member (refusing
//! unknown or duplicate members) and re-encodes it canonically. `key_id`
//! is the first 8 bytes of SHA-256 of the public key, in hex.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::crypto::ed25519::{PUBLIC_KEY_LEN, SIGNATURE_LEN, SigningKey};
use crate::crypto::{self, ed25519_verify};
use crate::id::UploadId;

/// The manifest format, also the signing context.
pub const FORMAT: &str = "strongroom-manifest/1";

/// The signing key's file name in the data dir (mode 0600, created once).
pub const KEY_FILE: &str = "manifest.key";

/// The signature algorithm named in documents and key documents.
pub const ALGORITHM: &str = "ed25519";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Key(#[from] crypto::Error),
    #[error("not a public manifest key: {0}")]
    BadKey(String),
    #[error("not a strongroom manifest: {0}")]
    Malformed(String),
    #[error("{0}")]
    BadSignature(String),
}

/// The facts a manifest signs for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    pub object: UploadId,
    pub tenant: String,
    /// Bytes of plaintext.
    pub size: u64,
    /// SHA-256 of the plaintext, hex.
    pub sha256: String,
    /// SEG1 segments the object is sealed in.
    pub segments: u64,
    /// The key-encryption keys its data key was wrapped with when signed.
    pub key_ids: Vec<String>,
    /// `released` or `quarantined`.
    pub disposition: String,
    /// What the plugin chain decided; `null` when nothing inspected it.
    pub screening: Option<Screening>,
    /// The provenance verdict, when a plugin gave one.
    pub provenance: Option<Provenance>,
    /// The index of the object's commit record in the audit log; `null`
    /// only when it could not be recorded and `audit.on_failure = "log"`.
    pub audit_index: Option<u64>,
    /// Unix seconds.
    pub committed_at: u64,
    pub signed_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Screening {
    /// `accept` or `quarantine` (a rejected upload has no manifest).
    pub decision: String,
    pub reasons: Vec<String>,
    pub plugins: Vec<PluginVerdict>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginVerdict {
    pub plugin: String,
    /// SHA-256 of the component that ran, hex.
    pub sha256: String,
    pub verdict: String,
    /// Rule and severity of each finding (details stay in the record).
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    pub rule: String,
    pub severity: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// The plugin that gave the `provenance` label.
    pub plugin: String,
    pub verdict: String,
    /// Its `provenance*` labels (`provenance`, `provenance-signer`, ...).
    pub labels: BTreeMap<String, String>,
}

/// A manifest and its signature: the stored and served document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedManifest {
    pub manifest: Manifest,
    pub signature: Signature,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    pub algorithm: String,
    pub key_id: String,
    /// Base64 of the 64-byte signature.
    pub value: String,
}

/// The appliance's manifest signing key.
pub struct ManifestKey {
    signer: SigningKey,
    public: PublicKey,
}

impl fmt::Debug for ManifestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManifestKey")
            .field("key_id", &self.public.id())
            .finish_non_exhaustive()
    }
}

impl ManifestKey {
    /// Loads the key in `path`, creating it (mode 0600) on first use; also
    /// says whether it was created. Refuses a file others can read.
    /// Blocking.
    pub fn open_or_create(path: &Path) -> Result<(ManifestKey, bool), Error> {
        let (signer, created) = match SigningKey::load(path)? {
            Some(key) => (key, false),
            None => (SigningKey::create(path)?, true),
        };
        let public = PublicKey(signer.public_key());
        Ok((ManifestKey { signer, public }, created))
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// Signs `manifest`.
    pub fn sign(&self, manifest: Manifest) -> SignedManifest {
        let message = signed_bytes(&manifest);
        SignedManifest {
            signature: Signature {
                algorithm: ALGORITHM.to_owned(),
                key_id: self.public.id(),
                value: BASE64.encode(self.signer.sign(&message)),
            },
            manifest,
        }
    }
}

/// A manifest verifying key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey([u8; PUBLIC_KEY_LEN]);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id())
    }
}

impl PublicKey {
    /// The first 8 bytes of SHA-256 of the key, hex.
    pub fn id(&self) -> String {
        hex::encode(&crypto::sha256(&self.0)[..8])
    }

    /// The key document served at `/.well-known/strongroom/manifest-key`.
    pub fn document(&self) -> Value {
        serde_json::json!({
            "algorithm": ALGORITHM,
            "key_id": self.id(),
            "public_key": BASE64.encode(self.0),
        })
    }

    /// Reads a key: the key document (JSON, as served), or the public key
    /// alone in base64.
    pub fn parse(text: &str) -> Result<PublicKey, Error> {
        let text = text.trim();
        if text.starts_with('{') {
            return Self::from_document(text);
        }
        Self::from_base64(text)
    }

    fn from_document(text: &str) -> Result<PublicKey, Error> {
        #[derive(Deserialize)]
        struct Document {
            algorithm: String,
            key_id: Option<String>,
            public_key: String,
        }
        let document: Document =
            serde_json::from_str(text).map_err(|err| Error::BadKey(err.to_string()))?;
        if document.algorithm != ALGORITHM {
            return Err(Error::BadKey(format!(
                "algorithm {:?} is not {ALGORITHM}",
                document.algorithm
            )));
        }
        let key = Self::from_base64(&document.public_key)?;
        match document.key_id {
            Some(id) if id != key.id() => Err(Error::BadKey(format!(
                "key_id {id:?} does not match its public key (whose id is {})",
                key.id()
            ))),
            _ => Ok(key),
        }
    }

    fn from_base64(text: &str) -> Result<PublicKey, Error> {
        let bytes = BASE64
            .decode(text)
            .map_err(|_| Error::BadKey("neither a key document nor base64".into()))?;
        let key: [u8; PUBLIC_KEY_LEN] = bytes.try_into().map_err(|bytes: Vec<u8>| {
            Error::BadKey(format!(
                "an Ed25519 public key is {PUBLIC_KEY_LEN} bytes, not {}",
                bytes.len()
            ))
        })?;
        Ok(PublicKey(key))
    }
}

impl SignedManifest {
    /// The document as JSON (for the record and the response).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a manifest serialises")
    }

    /// A document read back from a record.
    pub fn from_value(value: Value) -> Result<SignedManifest, Error> {
        serde_json::from_value(value).map_err(|err| Error::Malformed(err.to_string()))
    }

    /// Parses a document and checks its signature against `key`: the
    /// manifest it signs, or why it is not one (malformed, another key, a
    /// signature that does not verify).
    pub fn open(document: &[u8], key: &PublicKey) -> Result<Manifest, Error> {
        let signed: SignedManifest =
            serde_json::from_slice(document).map_err(|err| Error::Malformed(err.to_string()))?;
        signed.verify(key)?;
        Ok(signed.manifest)
    }

    /// Checks the signature against `key`.
    pub fn verify(&self, key: &PublicKey) -> Result<(), Error> {
        let signature = &self.signature;
        if signature.algorithm != ALGORITHM {
            return Err(Error::BadSignature(format!(
                "signature algorithm {:?} is not {ALGORITHM}",
                signature.algorithm
            )));
        }
        if signature.key_id != key.id() {
            return Err(Error::BadSignature(format!(
                "signed by key {:?}, not by the given key {}",
                signature.key_id,
                key.id()
            )));
        }
        let bytes = BASE64
            .decode(&signature.value)
            .ok()
            .filter(|bytes| bytes.len() == SIGNATURE_LEN)
            .ok_or_else(|| Error::Malformed("the signature is not 64 bytes of base64".into()))?;
        if self.manifest.format != FORMAT {
            return Err(Error::Malformed(format!(
                "format {:?} is not {FORMAT}",
                self.manifest.format
            )));
        }
        if !ed25519_verify(&key.0, &signed_bytes(&self.manifest), &bytes) {
            return Err(Error::BadSignature(format!(
                "the signature by key {} does not verify: the manifest was altered",
                key.id()
            )));
        }
        Ok(())
    }
}

/// What the signature covers: the context line and the canonical JSON.
pub fn signed_bytes(manifest: &Manifest) -> Vec<u8> {
    let mut bytes = format!("{FORMAT}\n").into_bytes();
    let value = serde_json::to_value(manifest).expect("a manifest serialises");
    // A manifest holds strings, integers, arrays and objects only.
    write_canonical(&value, &mut bytes).expect("a manifest is canonical");
    bytes
}

/// The canonical JSON encoding (see the module docs) of `value`.
pub fn canonical(value: &Value) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    write_canonical(value, &mut bytes).map_err(Error::Malformed)?;
    Ok(bytes)
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => match (number.as_u64(), number.as_i64()) {
            (Some(n), _) => out.extend_from_slice(n.to_string().as_bytes()),
            (None, Some(n)) => out.extend_from_slice(n.to_string().as_bytes()),
            (None, None) => return Err(format!("{number} is not an integer")),
        },
        Value::String(text) => write_string(text, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(members) => {
            let mut names: Vec<&String> = members.keys().collect();
            names.sort();
            out.push(b'{');
            for (i, name) in names.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(name, out);
                out.push(b':');
                write_canonical(&members[name], out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_string(text: &str, out: &mut Vec<u8>) {
    // Writing a string into a Vec cannot fail.
    serde_json::to_writer(&mut *out, text).expect("a string serialises");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            format: FORMAT.into(),
            object: UploadId::from_bytes([0xab; 16]),
            tenant: "acme".into(),
            size: 70_000,
            sha256: "11".repeat(32),
            segments: 2,
            key_ids: vec!["local:acme:v1".into()],
            disposition: "released".into(),
            screening: Some(Screening {
                decision: "accept".into(),
                reasons: vec![],
                plugins: vec![PluginVerdict {
                    plugin: "content-inspector".into(),
                    sha256: "22".repeat(32),
                    verdict: "accept".into(),
                    findings: vec![Finding {
                        rule: "declared-type".into(),
                        severity: "info".into(),
                    }],
                }],
            }),
            provenance: Some(Provenance {
                plugin: "provenance".into(),
                verdict: "accept".into(),
                labels: BTreeMap::from([("provenance".into(), "unsigned".into())]),
            }),
            audit_index: Some(17),
            committed_at: 1_750_000_000,
            signed_at: 1_750_000_001,
        }
    }

    fn key() -> ManifestKey {
        let signer = SigningKey::from_seed(&[9; 32]);
        let public = PublicKey(signer.public_key());
        ManifestKey { signer, public }
    }

    #[test]
    fn the_signed_bytes_are_the_context_and_sorted_compact_json() {
        let bytes = String::from_utf8(signed_bytes(&manifest())).unwrap();
        let (context, json) = bytes.split_once('\n').unwrap();
        assert_eq!(context, FORMAT);
        assert!(
            json.starts_with(r#"{"audit_index":17,"committed_at":1750000000,"disposition":"released","format":"strongroom-manifest/1","key_ids":["local:acme:v1"],"object":"abababababababababababababababab","provenance":{"labels":{"provenance":"unsigned"},"plugin":"provenance","verdict":"accept"},"screening":{"decision":"accept","plugins":[{"findings":[{"rule":"declared-type","severity":"info"}],"#),
            "{json}"
        );
        assert!(!json.contains([' ', '\n']), "{json}");
        let value: Value = serde_json::from_str(json).unwrap();
        assert_eq!(canonical(&value).unwrap(), json.as_bytes());
    }

    #[test]
    fn a_document_verifies_however_it_is_formatted() {
        let key = key();
        let signed = key.sign(manifest());
        let pretty = serde_json::to_vec_pretty(&signed.to_value()).unwrap();
        assert_eq!(
            SignedManifest::open(&pretty, key.public()).unwrap(),
            manifest()
        );
        let compact = serde_json::to_vec(&signed).unwrap();
        assert_eq!(
            SignedManifest::open(&compact, key.public()).unwrap(),
            manifest()
        );
        let stored = SignedManifest::from_value(signed.to_value()).unwrap();
        assert_eq!(stored, signed);
    }

    #[test]
    fn altered_documents_and_other_keys_are_refused() {
        let key = key();
        let document = serde_json::to_string(&key.sign(manifest())).unwrap();
        let refused = |text: &str, key: &PublicKey| SignedManifest::open(text.as_bytes(), key);

        let grown = document.replace("\"size\":70000", "\"size\":70001");
        assert!(matches!(
            refused(&grown, key.public()),
            Err(Error::BadSignature(_))
        ));
        let moved = document.replace("\"tenant\":\"acme\"", "\"tenant\":\"evil\"");
        assert!(matches!(
            refused(&moved, key.public()),
            Err(Error::BadSignature(_))
        ));
        let extra = document.replace("\"size\":70000", "\"size\":70000,\"note\":\"x\"");
        assert!(matches!(
            refused(&extra, key.public()),
            Err(Error::Malformed(_))
        ));
        let twice = document.replace("\"size\":70000", "\"size\":70000,\"size\":1");
        assert!(matches!(
            refused(&twice, key.public()),
            Err(Error::Malformed(_))
        ));
        let float = document.replace("\"size\":70000", "\"size\":70000.0");
        assert!(refused(&float, key.public()).is_err());

        let other = ManifestKey {
            signer: SigningKey::from_seed(&[8; 32]),
            public: PublicKey(SigningKey::from_seed(&[8; 32]).public_key()),
        };
        let err = refused(&document, other.public()).unwrap_err();
        assert!(err.to_string().contains("not by the given key"), "{err}");
        // Another key's signature relabelled with our key id.
        let mut forged = other.sign(manifest());
        forged.signature.key_id = key.public().id();
        let forged = serde_json::to_string(&forged).unwrap();
        assert!(matches!(
            refused(&forged, key.public()),
            Err(Error::BadSignature(_))
        ));
    }

    #[test]
    fn keys_parse_from_their_document_or_base64() {
        let key = key();
        let public = *key.public();
        let document = public.document().to_string();
        assert_eq!(PublicKey::parse(&document).unwrap(), public);
        let base64 = public.document()["public_key"].as_str().unwrap().to_owned();
        assert_eq!(PublicKey::parse(&format!("{base64}\n")).unwrap(), public);
        let wrong_id = document.replace(&public.id(), "0000000000000000");
        assert!(PublicKey::parse(&wrong_id).is_err());
        assert!(PublicKey::parse("not a key").is_err());
        assert!(PublicKey::parse(&BASE64.encode([1u8; 31])).is_err());
    }

    #[test]
    fn the_key_file_is_created_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        let (first, created) = ManifestKey::open_or_create(&path).unwrap();
        assert!(created);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (again, created) = ManifestKey::open_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(first.public(), again.public());
        assert!(!format!("{first:?}").contains(&hex::encode([9u8; 32])));
    }
}
