//! provenance: verifies an Ed25519 signature supplied in the upload metadata over
//! the SHA-256 and size the host computed, either as a plain signed statement or as
//! a DSSE envelope carrying an in-toto Statement v1. Needs no content bytes: it
//! answers `Enough` to the first chunk and decides in `finish`.
//!
//! Config: `trusted_keys` (key id -> base64 Ed25519 public key, raw or SPKI DER),
//! `required` (bool, default false).

pub mod verify;

use std::collections::BTreeMap;

use strongroom_plugin_sdk::{Config, Feed, Outcome, Plugin, Summary, UploadMeta, host};

use crate::verify::{Claims, DSSE_KEY, SIGNATURE_KEY, SIGNER_KEY, TrustedKeys};

pub struct Provenance {
    keys: TrustedKeys,
    required: bool,
    signature: Option<String>,
    signer: Option<String>,
    dsse: Option<String>,
}

impl Plugin for Provenance {
    fn new(meta: &UploadMeta, config: &Config) -> Self {
        for key in config
            .keys()
            .filter(|k| !["trusted_keys", "required"].contains(k))
        {
            host::log::warn(&format!("provenance: unknown config key '{key}' ignored"));
        }
        let keys = TrustedKeys::parse(
            &config
                .get::<BTreeMap<String, String>>("trusted_keys")
                .unwrap_or_default(),
        );
        for problem in keys.problems() {
            host::log::warn(&format!("provenance: {problem}"));
        }
        let attribute = |k: &str| meta.attribute(k).map(str::to_owned);
        Provenance {
            keys,
            required: config.get_or("required", false),
            signature: attribute(SIGNATURE_KEY),
            signer: attribute(SIGNER_KEY),
            dsse: attribute(DSSE_KEY),
        }
    }

    fn feed(&mut self, _chunk: &[u8]) -> Feed {
        Feed::Enough
    }

    fn finish(&mut self, summary: &Summary) -> Outcome {
        let claims = Claims {
            signature: self.signature.as_deref(),
            signer: self.signer.as_deref(),
            dsse: self.dsse.as_deref(),
        };
        let status = verify::verify(claims, &self.keys, summary, &host::ed25519_verify);
        verify::outcome(&status, self.required)
    }
}

strongroom_plugin_sdk::export_plugin!(Provenance);
