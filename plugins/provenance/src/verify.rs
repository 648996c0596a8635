//! Provenance checks. Pure: the Ed25519 verification is passed in (the host's in the
//! plugin, ed25519-dalek in tests), so nothing here needs the sandbox.
//!
//! Two forms, both bound to the SHA-256 and size the host computed (never to
//! anything the client claims):
//! - a plain signature: metadata `signature` (base64 Ed25519 signature) and `signer`
//!   (a key id from the policy) over [`statement`];
//! - a DSSE envelope: metadata `dsse` (base64 of the envelope JSON) whose payload is
//!   an in-toto Statement v1 with a subject whose `digest.sha256` is the upload's.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;
use strongroom_plugin_sdk::{Finding, Outcome, Severity, Summary};

pub const STATEMENT_VERSION: &str = "strongroom-provenance-v1";
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
pub const IN_TOTO_STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";

/// Metadata keys the client uses.
pub const SIGNATURE_KEY: &str = "signature";
pub const SIGNER_KEY: &str = "signer";
pub const DSSE_KEY: &str = "dsse";

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (what `openssl pkey -pubout` prints
/// inside its PEM armour); the raw 32-byte key follows it.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// An Ed25519 verifier: (public key, message, signature) -> valid.
pub type Verifier<'a> = &'a dyn Fn(&[u8], &[u8], &[u8]) -> bool;

/// The text a plain signature covers.
pub fn statement(sha256_hex: &str, size: u64) -> String {
    format!("{STATEMENT_VERSION}\n{sha256_hex}\n{size}\n")
}

/// DSSE pre-authentication encoding: what a DSSE signature covers.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Standard or URL-safe base64, padded or not, surrounding whitespace ignored.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    const CONFIG: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, CONFIG);
    const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, CONFIG);
    let text: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD
        .decode(&text)
        .or_else(|_| URL_SAFE.decode(&text))
        .ok()
}

/// Trusted signers from the policy: key id -> public key, or why the configured
/// value is unusable (reported when a signature names that key).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedKeys {
    keys: BTreeMap<String, Result<[u8; 32], String>>,
}

impl TrustedKeys {
    /// Parses `id -> base64` where the base64 is a raw 32-byte key or its SPKI DER.
    pub fn parse(config: &BTreeMap<String, String>) -> TrustedKeys {
        let keys = config
            .iter()
            .map(|(id, text)| {
                let key = match decode_base64(text) {
                    None => Err(format!("trusted key '{id}' is not base64")),
                    Some(raw) => {
                        let raw = raw.strip_prefix(&ED25519_SPKI_PREFIX[..]).unwrap_or(&raw);
                        <[u8; 32]>::try_from(raw).map_err(|_| {
                            format!(
                                "trusted key '{id}' is {} bytes, not a 32-byte Ed25519 key",
                                raw.len()
                            )
                        })
                    }
                };
                (id.clone(), key)
            })
            .collect();
        TrustedKeys { keys }
    }

    /// Why each unusable key is unusable, for the plugin log.
    pub fn problems(&self) -> impl Iterator<Item = &str> {
        self.keys
            .values()
            .filter_map(|k| k.as_ref().err().map(String::as_str))
    }

    fn get(&self, id: &str) -> Option<&Result<[u8; 32], String>> {
        self.keys.get(id)
    }

    fn usable(&self) -> impl Iterator<Item = (&str, &[u8; 32])> {
        self.keys
            .iter()
            .filter_map(|(id, k)| k.as_ref().ok().map(|k| (id.as_str(), k)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Statement,
    Dsse,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Statement => "ed25519-statement",
            Method::Dsse => "dsse-in-toto",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Verified { signer: String, method: Method },
    Unsigned,
    Invalid { method: Method, reason: String },
}

/// What the client supplied, from the upload metadata.
#[derive(Debug, Clone, Copy, Default)]
pub struct Claims<'a> {
    pub signature: Option<&'a str>,
    pub signer: Option<&'a str>,
    pub dsse: Option<&'a str>,
}

/// Checks every form present; one invalid form makes the whole upload invalid.
pub fn verify(
    claims: Claims<'_>,
    keys: &TrustedKeys,
    summary: &Summary,
    ed25519: Verifier<'_>,
) -> Status {
    let mut verified = None;
    if claims.signature.is_some() || claims.signer.is_some() {
        match verify_statement(claims, keys, summary, ed25519) {
            Ok(signer) => {
                verified = Some(Status::Verified {
                    signer,
                    method: Method::Statement,
                })
            }
            Err(reason) => {
                return Status::Invalid {
                    method: Method::Statement,
                    reason,
                };
            }
        }
    }
    if let Some(envelope) = claims.dsse {
        match verify_dsse(envelope, keys, summary, ed25519) {
            Ok(signer) => {
                verified.get_or_insert(Status::Verified {
                    signer,
                    method: Method::Dsse,
                });
            }
            Err(reason) => {
                return Status::Invalid {
                    method: Method::Dsse,
                    reason,
                };
            }
        }
    }
    verified.unwrap_or(Status::Unsigned)
}

fn verify_statement(
    claims: Claims<'_>,
    keys: &TrustedKeys,
    summary: &Summary,
    ed25519: Verifier<'_>,
) -> Result<String, String> {
    let signer = claims
        .signer
        .ok_or("a signature without a 'signer' key id")?;
    let signature = claims
        .signature
        .ok_or_else(|| format!("signer '{signer}' named without a 'signature'"))?;
    let key = match keys.get(signer) {
        None => return Err(format!("signer '{signer}' is not a trusted key")),
        Some(Err(problem)) => return Err(format!("{problem} (fix the policy)")),
        Some(Ok(key)) => key,
    };
    let signature = decode_base64(signature).ok_or("the signature is not base64")?;
    let message = statement(&summary.sha256_hex(), summary.total_bytes);
    if signature.len() == 64 && ed25519(key, message.as_bytes(), &signature) {
        Ok(signer.to_owned())
    } else {
        Err(format!(
            "the signature by '{signer}' does not match this upload's sha256 and size"
        ))
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "payloadType")]
    payload_type: String,
    payload: String,
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Deserialize)]
struct EnvelopeSignature {
    #[serde(default)]
    keyid: String,
    sig: String,
}

#[derive(Deserialize)]
struct InTotoStatement {
    #[serde(rename = "_type")]
    type_: String,
    subject: Vec<Subject>,
}

#[derive(Deserialize)]
struct Subject {
    #[serde(default)]
    name: String,
    #[serde(default)]
    digest: BTreeMap<String, String>,
}

/// At most this many signatures are tried (each costs a host call).
const MAX_ENVELOPE_SIGNATURES: usize = 8;

fn verify_dsse(
    envelope: &str,
    keys: &TrustedKeys,
    summary: &Summary,
    ed25519: Verifier<'_>,
) -> Result<String, String> {
    let json = decode_base64(envelope).ok_or("the DSSE envelope is not base64")?;
    let envelope: Envelope = serde_json::from_slice(&json)
        .map_err(|e| format!("the DSSE envelope is not valid JSON: {e}"))?;
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(format!(
            "DSSE payloadType is '{}', expected '{IN_TOTO_PAYLOAD_TYPE}'",
            envelope.payload_type
        ));
    }
    let payload = decode_base64(&envelope.payload).ok_or("the DSSE payload is not base64")?;
    let signed = pae(&envelope.payload_type, &payload);

    // The key id is a hint: a named trusted key is tried alone, an empty or unknown
    // one against every trusted key.
    let mut signer = None;
    let mut named_untrusted = Vec::new();
    'sigs: for s in envelope.signatures.iter().take(MAX_ENVELOPE_SIGNATURES) {
        let Some(sig) = decode_base64(&s.sig).filter(|sig| sig.len() == 64) else {
            continue;
        };
        match keys.get(&s.keyid) {
            Some(Ok(key)) => {
                if ed25519(key, &signed, &sig) {
                    signer = Some(s.keyid.clone());
                    break;
                }
            }
            Some(Err(_)) => {}
            None => {
                for (id, key) in keys.usable() {
                    if ed25519(key, &signed, &sig) {
                        signer = Some(id.to_owned());
                        break 'sigs;
                    }
                }
                if !s.keyid.is_empty() {
                    named_untrusted.push(s.keyid.as_str());
                }
            }
        }
    }
    let Some(signer) = signer else {
        return Err(if named_untrusted.is_empty() {
            "no DSSE signature verifies with a trusted key".to_owned()
        } else {
            format!(
                "no DSSE signature verifies with a trusted key (signed by untrusted '{}')",
                named_untrusted.join("', '")
            )
        });
    };

    // Only now, with the payload authenticated, is it worth reading.
    let statement: InTotoStatement = serde_json::from_slice(&payload)
        .map_err(|e| format!("the in-toto statement is not valid: {e}"))?;
    if statement.type_ != IN_TOTO_STATEMENT_V1 {
        return Err(format!(
            "statement _type is '{}', expected '{IN_TOTO_STATEMENT_V1}'",
            statement.type_
        ));
    }
    let ours = summary.sha256_hex();
    if statement.subject.iter().any(|s| {
        s.digest
            .get("sha256")
            .is_some_and(|d| d.eq_ignore_ascii_case(&ours))
    }) {
        Ok(signer)
    } else {
        let names: Vec<&str> = statement.subject.iter().map(|s| s.name.as_str()).collect();
        Err(format!(
            "no subject of the statement signed by '{signer}' has this upload's sha256 (subjects: {names:?})"
        ))
    }
}

/// The plugin's decision for `status`.
pub fn outcome(status: &Status, required: bool) -> Outcome {
    match status {
        Status::Verified { signer, method } => Outcome::accept()
            .label("provenance", "verified")
            .label("provenance-signer", signer.clone())
            .label("provenance-method", method.as_str()),
        Status::Unsigned if required => Outcome::reject(
            "provenance-required",
            "a provenance signature is required for this upload",
        )
        .label("provenance", "unsigned")
        .with_finding(
            Finding::new("provenance-unsigned", Severity::High)
                .detail("no signature or dsse metadata"),
        ),
        Status::Unsigned => Outcome::accept()
            .label("provenance", "unsigned")
            .with_finding(
                Finding::new("provenance-unsigned", Severity::Info)
                    .detail("no signature or dsse metadata"),
            ),
        Status::Invalid { method, reason } => Outcome::reject(
            "provenance-invalid",
            format!("the provenance signature is invalid: {reason}"),
        )
        .label("provenance", "invalid")
        .label("provenance-method", method.as_str())
        .with_finding(Finding::new("provenance-invalid", Severity::High).detail(reason.clone())),
    }
}
