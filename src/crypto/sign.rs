//! Signature verification. Owns the choice of Ed25519 implementation (ring);
//! holds no keys and never signs.

use ring::signature::{ED25519, UnparsedPublicKey};

/// Whether `signature` is a valid Ed25519 signature (RFC 8032) of `message`
/// under `public_key`. Wrong lengths and malformed keys are simply invalid:
/// this is called with bytes from untrusted plugins and uploads, so there is
/// nothing to report beyond "no".
pub fn ed25519_verify(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(message, signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    // RFC 8032 section 7.1, TEST 2.
    const PUBLIC: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
    const MESSAGE: &[u8] = &[0x72];
    const SIGNATURE: &str = "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da\
                             085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00";

    #[test]
    fn rfc8032_vector_verifies() {
        let public = hex::decode(PUBLIC).unwrap();
        let signature = hex::decode(SIGNATURE).unwrap();
        assert!(ed25519_verify(&public, MESSAGE, &signature));
    }

    #[test]
    fn tampering_is_rejected() {
        let public = hex::decode(PUBLIC).unwrap();
        let signature = hex::decode(SIGNATURE).unwrap();
        assert!(!ed25519_verify(&public, b"s", &signature));
        let mut flipped = signature.clone();
        flipped[10] ^= 1;
        assert!(!ed25519_verify(&public, MESSAGE, &flipped));
        let mut other_key = public.clone();
        other_key[0] ^= 1;
        assert!(!ed25519_verify(&other_key, MESSAGE, &signature));
    }

    #[test]
    fn malformed_inputs_are_invalid_not_errors() {
        let public = hex::decode(PUBLIC).unwrap();
        let signature = hex::decode(SIGNATURE).unwrap();
        assert!(!ed25519_verify(&[], MESSAGE, &signature));
        assert!(!ed25519_verify(&public[..31], MESSAGE, &signature));
        assert!(!ed25519_verify(&public, MESSAGE, &signature[..63]));
        assert!(!ed25519_verify(&public, MESSAGE, &[]));
    }

    #[test]
    fn round_trip_with_a_fresh_key() {
        let seed: [u8; 32] = crate::crypto::random_array();
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
        let signature = pair.sign(b"manifest");
        let public = pair.public_key().as_ref();
        assert!(ed25519_verify(public, b"manifest", signature.as_ref()));
        assert!(!ed25519_verify(public, b"manifesto", signature.as_ref()));
    }
}
