//! Cryptography. The only user of ring: SEG1 segment sealing, key derivation,
//! key wrapping, signature verification, digests and randomness. Never
//! touches sled, HTTP or the network.
//!
//! Owns the SEG1 on-disk format (`seg1`), the envelope keys that protect each
//! object's data key (`keys`) and the digests and randomness the rest of the
//! appliance uses (`digest`). It must never log, print or put key material in
//! an error message, and never hands out raw key bytes: callers get sealing
//! and opening operations, not keys.

mod digest;
pub mod ed25519;
mod keys;
mod secret_file;
pub mod seg1;
mod sign;

use std::path::PathBuf;

pub use digest::{DigestAlgorithm, Hasher, Sha256, constant_time_eq, random_array, sha256};
pub use keys::{Dek, Kek, KekId, LocalKeyring, WrappedDek};
pub use seg1::{
    Aead, HEADER_LEN, NONCE_LEN, ObjectKeys, SEALED_SEGMENT_LEN, SEGMENT_SIZE, TAG_LEN,
    committed_file_len, sealed_len, segment_count, segment_offset,
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

    #[error("unknown key encryption key {0}")]
    UnknownKek(KekId),

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
