//! Digests and randomness. Owns the choice of RNG (the OS one, through ring)
//! and of digest implementations; never keeps state between calls.

use md5::Digest as _;
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

/// `N` bytes from the operating system's CSPRNG.
///
/// # Panics
/// If the OS random number generator fails. There is no safe way to go on
/// without randomness (nonces and keys would repeat), so this is fatal.
pub fn random_array<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random number generator failed");
    bytes
}

/// SHA-256 of `data` in one call.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(data);
    hasher.finish()
}

/// Streaming SHA-256, for data that arrives in pieces.
#[derive(Clone)]
pub struct Sha256(digest::Context);

impl Sha256 {
    pub fn new() -> Self {
        Sha256(digest::Context::new(&digest::SHA256))
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(self) -> [u8; 32] {
        let digest = self.0.finish();
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        out
    }
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

/// The digests clients may ask for (checksums, ETags). SHA-1 and MD5 are
/// here for compatibility only and protect nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    Sha1,
    Sha256,
    Md5,
}

impl DigestAlgorithm {
    pub const ALL: [DigestAlgorithm; 3] = [
        DigestAlgorithm::Sha1,
        DigestAlgorithm::Sha256,
        DigestAlgorithm::Md5,
    ];

    /// The name tus uses (`Tus-Checksum-Algorithm`).
    pub fn name(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha1 => "sha1",
            DigestAlgorithm::Sha256 => "sha256",
            DigestAlgorithm::Md5 => "md5",
        }
    }

    /// Length of the digest in bytes.
    pub fn output_len(self) -> usize {
        match self {
            DigestAlgorithm::Sha1 => 20,
            DigestAlgorithm::Sha256 => 32,
            DigestAlgorithm::Md5 => 16,
        }
    }
}

/// Streaming digest over any [`DigestAlgorithm`].
#[derive(Clone)]
pub struct Hasher(HasherState);

#[derive(Clone)]
enum HasherState {
    Ring(digest::Context),
    Md5(md5::Md5),
}

impl Hasher {
    pub fn new(algorithm: DigestAlgorithm) -> Self {
        let state = match algorithm {
            DigestAlgorithm::Sha1 => {
                HasherState::Ring(digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY))
            }
            DigestAlgorithm::Sha256 => HasherState::Ring(digest::Context::new(&digest::SHA256)),
            DigestAlgorithm::Md5 => HasherState::Md5(md5::Md5::new()),
        };
        Hasher(state)
    }

    pub fn update(&mut self, data: &[u8]) {
        match &mut self.0 {
            HasherState::Ring(context) => context.update(data),
            HasherState::Md5(md5) => md5.update(data),
        }
    }

    pub fn finish(self) -> Vec<u8> {
        match self.0 {
            HasherState::Ring(context) => context.finish().as_ref().to_vec(),
            HasherState::Md5(md5) => md5.finalize().to_vec(),
        }
    }
}

/// Compares two byte strings in time that depends only on their lengths, so
/// comparing a secret (a MAC, a key commitment) leaks nothing about where the
/// first difference is. Different lengths compare unequal.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    // black_box keeps the optimizer from turning the fold into an early exit.
    let difference = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| std::hint::black_box(acc | (x ^ y)));
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_all(algorithm: DigestAlgorithm, data: &[u8]) -> String {
        let mut hasher = Hasher::new(algorithm);
        hasher.update(data);
        hex::encode(hasher.finish())
    }

    #[test]
    fn known_answers() {
        assert_eq!(
            hex::encode(sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hash_all(DigestAlgorithm::Sha1, b"abc"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hash_all(DigestAlgorithm::Md5, b"abc"),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(
            hash_all(DigestAlgorithm::Sha256, b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn streaming_matches_one_shot() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut streaming = Sha256::new();
        for chunk in data.chunks(777) {
            streaming.update(chunk);
        }
        assert_eq!(streaming.finish(), sha256(&data));

        for algorithm in [
            DigestAlgorithm::Sha1,
            DigestAlgorithm::Sha256,
            DigestAlgorithm::Md5,
        ] {
            let mut hasher = Hasher::new(algorithm);
            for chunk in data.chunks(1000) {
                hasher.update(chunk);
            }
            let digest = hasher.finish();
            assert_eq!(digest.len(), algorithm.output_len());
            assert_eq!(hex::encode(digest), hash_all(algorithm, &data));
        }
    }

    #[test]
    fn clones_continue_independently() {
        let mut first = Sha256::new();
        first.update(b"ab");
        let mut second = first.clone();
        first.update(b"c");
        second.update(b"c");
        assert_eq!(first.finish(), second.finish());
    }

    #[test]
    fn hashers_are_send() {
        fn assert_send<T: Send>() {}
        assert_send::<Sha256>();
        assert_send::<Hasher>();
    }

    #[test]
    fn random_arrays_differ() {
        assert_ne!(random_array::<32>(), random_array::<32>());
    }

    #[test]
    fn constant_time_eq_compares_bytes_and_lengths() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"same", b"same"));
        assert!(!constant_time_eq(b"same", b"sane"));
        assert!(!constant_time_eq(b"same", b"same!"));
    }
}
