//! Cryptography. The only user of ring: SEG1 segment sealing, key derivation,
//! key wrapping, signature verification, digests and randomness. Never
//! touches sled, HTTP or the network.
//!
//! Owns the SEG1 on-disk format (`seg1`), the envelope keys that protect each
//! object's data key (`keys`) and the digests and randomness the rest of the
//! appliance uses (`digest`), and the key providers that hold each tenant's
//! key encryption keys (`LocalKeyring` for key files, `pkcs11` for a token).
//! It must never log, print or put key material in
//! an error message, and never hands out raw key bytes: callers get sealing
//! and opening operations, not keys.

mod digest;
pub mod ed25519;
mod keys;
pub mod pkcs11;
pub mod provenance;
mod secret_file;
pub mod seg1;
mod sign;
pub mod token;

use std::path::PathBuf;

pub use digest::{DigestAlgorithm, Hasher, Sha256, constant_time_eq, random_array, sha256};
pub use keys::{
    Dek, Kek, KekId, KekVersion, KeyProvider, LOCAL_PROVIDER, LocalKeyring, WrappedDek,
    validate_tenant,
};
pub use seg1::{
    Aead, Generation, Generations, HEADER_LEN, NONCE_LEN, ObjectKeys, SEALED_SEGMENT_LEN,
    SEGMENT_SIZE, TAG_LEN, committed_file_len, sealed_len, segment_count, segment_offset,
};
pub use sign::ed25519_verify;

/// Everything that can go wrong in this module. Messages name the thing that
/// failed and never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Authentication failed: the bytes were tampered with, truncated, moved
    /// to another position or object, or opened with the wrong key.
    #[error("integrity check failed for {what}")]
    Integrity { what: String },

    #[error("bad seg1 header: {0}")]
    BadHeader(String),

    /// The data key does not match the one the object was sealed with.
    #[error("seg1 key commitment mismatch: wrong data key for this object")]
    KeyCommitmentMismatch,

    /// The provider holds no key of that name: it was never created there,
    /// or it was destroyed (its tenant crypto-shredded).
    #[error("unknown key encryption key {0}")]
    UnknownKek(KekId),

    /// The key provider cannot be reached or refused the operation (module
    /// not loaded, token missing, login failed, a token error). Nothing is
    /// wrapped or unwrapped any other way: the caller fails closed.
    #[error("key provider {provider} unavailable: {reason}")]
    KeyProviderUnavailable {
        provider: &'static str,
        reason: String,
    },

    #[error("refusing to retire {0}: it is its tenant's current key")]
    RetireCurrent(KekId),

    #[error("tenant name {0:?} is not 1 to 64 of [a-z0-9_-]")]
    InvalidTenant(String),

    #[error("key file {}: {reason}", path.display())]
    KeyFile { path: PathBuf, reason: String },

    #[error(
        "key file {path} has mode {mode:03o}, so group or others can read or write it; \
         refusing to use it (fix with `chmod 600 {path}`)",
        path = path.display()
    )]
    KeyFilePermissions { path: PathBuf, mode: u32 },

    #[error("i/o error on {}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Error {
    /// The key provider is down: a retry later may succeed (503).
    pub fn is_key_provider_unavailable(&self) -> bool {
        matches!(self, Error::KeyProviderUnavailable { .. })
    }
}
