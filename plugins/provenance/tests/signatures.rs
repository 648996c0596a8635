//! provenance driven as the host drives it, with fixed test keys signing with
//! ed25519-dalek and the same library standing in for the host's verifier.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use provenance::Provenance;
use provenance::verify::{self, Claims, Method, Status, TrustedKeys, pae, statement};
use serde_json::json;
use strongroom_plugin_sdk::testing::{self, Inspected, MockHost};
use strongroom_plugin_sdk::{Severity, Summary, UploadMeta, Verdict};

const RELEASE_KEY: [u8; 32] = [7; 32];
const CI_KEY: [u8; 32] = [9; 32];
const STRANGER_KEY: [u8; 32] = [13; 32];

fn sha256() -> Vec<u8> {
    (0u8..32)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect()
}

fn summary() -> Summary {
    Summary::new(1_048_576, sha256())
}

fn public_b64(secret: [u8; 32]) -> String {
    B64.encode(SigningKey::from_bytes(&secret).verifying_key().as_bytes())
}

fn dalek_verify(key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let (Ok(key), Ok(sig)) = (<[u8; 32]>::try_from(key), <[u8; 64]>::try_from(signature)) else {
        return false;
    };
    let Ok(key) = VerifyingKey::from_bytes(&key) else {
        return false;
    };
    key.verify(message, &ed25519_dalek::Signature::from_bytes(&sig))
        .is_ok()
}

fn config(required: bool) -> String {
    json!({
        "required": required,
        "trusted_keys": { "release": public_b64(RELEASE_KEY), "ci": public_b64(CI_KEY) },
    })
    .to_string()
}

fn sign_statement(secret: [u8; 32], summary: &Summary) -> String {
    let text = statement(&summary.sha256_hex(), summary.total_bytes);
    B64.encode(
        SigningKey::from_bytes(&secret)
            .sign(text.as_bytes())
            .to_bytes(),
    )
}

fn in_toto(digest_hex: &str) -> Vec<u8> {
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{ "name": "release.tar.gz", "digest": { "sha256": digest_hex } }],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {},
    })
    .to_string()
    .into_bytes()
}

fn envelope(secret: [u8; 32], keyid: &str, payload: &[u8]) -> String {
    let sig = SigningKey::from_bytes(&secret).sign(&pae("application/vnd.in-toto+json", payload));
    let env = json!({
        "payloadType": "application/vnd.in-toto+json",
        "payload": B64.encode(payload),
        "signatures": [{ "keyid": keyid, "sig": B64.encode(sig.to_bytes()) }],
    });
    B64.encode(env.to_string())
}

fn run(required: bool, meta: UploadMeta) -> Inspected {
    testing::install(
        MockHost::new()
            .with_config(config(required))
            .with_ed25519_verify(dalek_verify),
    );
    testing::inspect::<Provenance>(&meta, [&b"first chunk"[..], b"second chunk"], &summary())
}

fn upload() -> UploadMeta {
    UploadMeta::new("acme", "up-7").with_name("release.tar.gz")
}

fn assert_rejected(run: &Inspected, code: &str) {
    match &run.outcome.verdict {
        Verdict::Reject { code: got, .. } => assert_eq!(got, code, "{:#?}", run.outcome),
        other => panic!("expected reject {code}, got {other:?}"),
    }
}

#[test]
fn a_signed_statement_verifies_and_labels_the_signer() {
    let meta = upload()
        .with_attribute("signature", sign_statement(RELEASE_KEY, &summary()))
        .with_attribute("signer", "release");
    let run = run(true, meta);
    assert_eq!(run.outcome.verdict, Verdict::Accept, "{:#?}", run.outcome);
    assert_eq!(run.outcome.label_value("provenance"), Some("verified"));
    assert_eq!(
        run.outcome.label_value("provenance-signer"),
        Some("release")
    );
    assert_eq!(run.chunks_fed, 1, "provenance needs no content");
}

#[test]
fn a_signature_over_another_digest_or_size_is_invalid() {
    let other = Summary::new(1_048_576, vec![0xee; 32]);
    let meta = upload()
        .with_attribute("signature", sign_statement(RELEASE_KEY, &other))
        .with_attribute("signer", "release");
    let r = run(false, meta);
    assert_rejected(&r, "provenance-invalid");
    assert_eq!(r.outcome.label_value("provenance"), Some("invalid"));
    assert_eq!(r.outcome.findings[0].severity, Severity::High);

    let longer = Summary::new(1_048_577, sha256());
    let meta = upload()
        .with_attribute("signature", sign_statement(RELEASE_KEY, &longer))
        .with_attribute("signer", "release");
    assert_rejected(&run(false, meta), "provenance-invalid");
}

#[test]
fn a_signature_by_an_untrusted_or_wrong_key_is_invalid() {
    let meta = upload()
        .with_attribute("signature", sign_statement(STRANGER_KEY, &summary()))
        .with_attribute("signer", "stranger");
    let r = run(false, meta);
    assert_rejected(&r, "provenance-invalid");
    assert!(
        r.outcome.findings[0]
            .detail
            .contains("'stranger' is not a trusted key")
    );

    // Signed by ci, claimed as release.
    let meta = upload()
        .with_attribute("signature", sign_statement(CI_KEY, &summary()))
        .with_attribute("signer", "release");
    assert_rejected(&run(false, meta), "provenance-invalid");

    let meta = upload()
        .with_attribute("signature", "not base64!")
        .with_attribute("signer", "release");
    assert_rejected(&run(false, meta), "provenance-invalid");
    let meta = upload().with_attribute("signature", sign_statement(RELEASE_KEY, &summary()));
    assert_rejected(&run(false, meta), "provenance-invalid");
}

#[test]
fn unsigned_uploads_pass_only_when_provenance_is_optional() {
    let r = run(false, upload());
    assert_eq!(r.outcome.verdict, Verdict::Accept);
    assert_eq!(r.outcome.label_value("provenance"), Some("unsigned"));
    assert_eq!(r.outcome.findings[0].severity, Severity::Info);

    let r = run(true, upload());
    assert_rejected(&r, "provenance-required");
}

#[test]
fn a_dsse_in_toto_envelope_verifies_against_the_subject_digest() {
    let env = envelope(CI_KEY, "ci", &in_toto(&summary().sha256_hex()));
    let r = run(true, upload().with_attribute("dsse", env));
    assert_eq!(r.outcome.verdict, Verdict::Accept, "{:#?}", r.outcome);
    assert_eq!(r.outcome.label_value("provenance-signer"), Some("ci"));
    assert_eq!(
        r.outcome.label_value("provenance-method"),
        Some("dsse-in-toto")
    );

    // Upper-case hex and an empty key id (tried against every trusted key).
    let env = envelope(
        RELEASE_KEY,
        "",
        &in_toto(&summary().sha256_hex().to_uppercase()),
    );
    let r = run(true, upload().with_attribute("dsse", env));
    assert_eq!(
        r.outcome.label_value("provenance-signer"),
        Some("release"),
        "{:#?}",
        r.outcome
    );
}

#[test]
fn a_dsse_envelope_for_another_artifact_or_signer_is_invalid() {
    let env = envelope(CI_KEY, "ci", &in_toto(&"ab".repeat(32)));
    let r = run(false, upload().with_attribute("dsse", env));
    assert_rejected(&r, "provenance-invalid");
    assert!(
        r.outcome.findings[0].detail.contains("no subject"),
        "{:#?}",
        r.outcome
    );

    let env = envelope(STRANGER_KEY, "stranger", &in_toto(&summary().sha256_hex()));
    let r = run(false, upload().with_attribute("dsse", env));
    assert_rejected(&r, "provenance-invalid");
    assert!(
        r.outcome.findings[0]
            .detail
            .contains("untrusted 'stranger'")
    );

    // A valid signature over a payload that is then swapped.
    let good = in_toto(&summary().sha256_hex());
    let sig = SigningKey::from_bytes(&CI_KEY).sign(&pae("application/vnd.in-toto+json", &good));
    let forged = json!({
        "payloadType": "application/vnd.in-toto+json",
        "payload": B64.encode(in_toto(&"00".repeat(32))),
        "signatures": [{ "keyid": "ci", "sig": B64.encode(sig.to_bytes()) }],
    });
    let r = run(
        false,
        upload().with_attribute("dsse", B64.encode(forged.to_string())),
    );
    assert_rejected(&r, "provenance-invalid");

    let r = run(
        false,
        upload().with_attribute("dsse", B64.encode("{not json")),
    );
    assert_rejected(&r, "provenance-invalid");
}

#[test]
fn statement_and_pae_are_byte_exact() {
    assert_eq!(
        statement("00ff", 12),
        "strongroom-provenance-v1\n00ff\n12\n"
    );
    assert_eq!(pae("t/x", b"hello"), b"DSSEv1 3 t/x 5 hello");
}

#[test]
fn keys_may_be_raw_or_spki_and_bad_ones_are_reported() {
    let raw = SigningKey::from_bytes(&RELEASE_KEY)
        .verifying_key()
        .to_bytes();
    let mut spki = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    spki.extend_from_slice(&raw);
    let cfg = [
        ("spki".to_owned(), B64.encode(&spki)),
        ("short".to_owned(), B64.encode([1u8; 16])),
        ("junk".to_owned(), "%%%".to_owned()),
    ]
    .into_iter()
    .collect();
    let keys = TrustedKeys::parse(&cfg);
    assert_eq!(keys.problems().count(), 2);

    let s = summary();
    let claims_sig = sign_statement(RELEASE_KEY, &s);
    let claims = Claims {
        signature: Some(&claims_sig),
        signer: Some("spki"),
        dsse: None,
    };
    assert_eq!(
        verify::verify(claims, &keys, &s, &dalek_verify),
        Status::Verified {
            signer: "spki".into(),
            method: Method::Statement
        }
    );
    let claims = Claims {
        signature: Some(&claims_sig),
        signer: Some("short"),
        dsse: None,
    };
    let Status::Invalid { reason, .. } = verify::verify(claims, &keys, &s, &dalek_verify) else {
        panic!()
    };
    assert!(reason.contains("fix the policy"), "{reason}");
}
