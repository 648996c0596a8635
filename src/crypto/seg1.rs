//! SEG1, the encrypted object format. Owns the header layout, the per-object
//! key schedule and the sealing of segments and tail records; never does I/O
//! (callers read and write the bytes) and never exposes derived keys.
//!
//! An object's plaintext is cut into 64 KiB segments. A committed object's
//! file is the header followed by its sealed segments: every segment but the
//! last is full, and the last one, marked final, holds the remainder and may
//! be empty. Each sealed segment is `nonce || ciphertext || tag`.
//!
//! Keys come from the object's DEK through HKDF-SHA256, salted with the
//! object id, so two objects never share a segment key even if a DEK were
//! reused. The header carries a key commitment, so a wrong DEK is reported as
//! such before any segment is opened, and the AAD of every segment binds the
//! header hash, its index, its final flag and its length: a segment moved to
//! another position, another object or across the end of the object fails
//! authentication.

use std::fmt;

use ring::aead::{self, AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce};
use ring::hkdf::{self, HKDF_SHA256, Salt};

use super::Error;
use super::digest::{constant_time_eq, random_array, sha256};
use super::keys::Dek;

pub const SEGMENT_SIZE: usize = 65536;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
pub const SEALED_SEGMENT_LEN: usize = NONCE_LEN + SEGMENT_SIZE + TAG_LEN;
pub const HEADER_LEN: usize = 64;

const MAGIC: &[u8; 4] = b"SEG1";
const VERSION: u8 = 1;
const COMMITMENT_LEN: usize = 32;

// Header layout; the bytes from RESERVED to HEADER_LEN are zero.
const VERSION_AT: usize = 4;
const AEAD_AT: usize = 5;
const SEGMENT_SIZE_AT: usize = 6;
const OBJECT_ID_AT: usize = 10;
const COMMITMENT_AT: usize = 26;
const RESERVED_AT: usize = COMMITMENT_AT + COMMITMENT_LEN;
const _: () = assert!(RESERVED_AT <= HEADER_LEN);

const SEGMENT_KEY_INFO: &[u8] = b"strongroom seg1 segment key";
const TAIL_KEY_INFO: &[u8] = b"strongroom seg1 tail key";
const COMMITMENT_INFO: &[u8] = b"strongroom seg1 key commitment";

const SEGMENT_DOMAIN: u8 = b'S';
const TAIL_DOMAIN: u8 = b'T';

// header hash, index, [final flag], plaintext length, domain byte.
const SEGMENT_AAD_LEN: usize = 32 + 8 + 1 + 4 + 1;
const TAIL_AAD_LEN: usize = 32 + 8 + 4 + 1;

/// The AEAD sealing an object's segments, recorded in its header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Aead {
    #[default]
    Aes256Gcm,
    ChaCha20Poly1305,
}

impl Aead {
    fn code(self) -> u8 {
        match self {
            Aead::Aes256Gcm => 1,
            Aead::ChaCha20Poly1305 => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Aead::Aes256Gcm),
            2 => Some(Aead::ChaCha20Poly1305),
            _ => None,
        }
    }

    fn algorithm(self) -> &'static aead::Algorithm {
        match self {
            Aead::Aes256Gcm => &AES_256_GCM,
            Aead::ChaCha20Poly1305 => &CHACHA20_POLY1305,
        }
    }
}

/// Byte offset of segment `index` in an object's file. Every segment before
/// the final one is full, so this also locates the final segment.
pub fn segment_offset(index: u64) -> u64 {
    HEADER_LEN as u64 + index * SEALED_SEGMENT_LEN as u64
}

/// Length of a sealed segment or tail record holding `plaintext_len` bytes.
pub fn sealed_len(plaintext_len: usize) -> usize {
    NONCE_LEN + plaintext_len + TAG_LEN
}

/// Number of segments of a committed object of `total_len` bytes: the full
/// segments plus exactly one final segment, which is empty when `total_len`
/// is a multiple of [`SEGMENT_SIZE`] (including 0).
pub fn segment_count(total_len: u64) -> u64 {
    total_len / SEGMENT_SIZE as u64 + 1
}

/// Length of a committed object's file: header, full segments, final segment.
pub fn committed_file_len(total_len: u64) -> u64 {
    let full = total_len / SEGMENT_SIZE as u64;
    // The remainder is below SEGMENT_SIZE, so it fits in usize.
    let final_len = (total_len % SEGMENT_SIZE as u64) as usize;
    segment_offset(full) + sealed_len(final_len) as u64
}

/// The keys and header of one object, ready to seal and open its segments.
pub struct ObjectKeys {
    aead: Aead,
    segment_key: LessSafeKey,
    tail_key: LessSafeKey,
    header: [u8; HEADER_LEN],
    header_hash: [u8; 32],
}

impl ObjectKeys {
    /// Derives the keys of a new object and builds its header.
    pub fn derive(dek: &Dek, object_id: [u8; 16], aead: Aead) -> ObjectKeys {
        let prk = Salt::new(HKDF_SHA256, &object_id).extract(dek.expose());
        let commitment = expand_commitment(&prk);
        let header = build_header(aead, object_id, &commitment);
        ObjectKeys {
            aead,
            segment_key: expand_aead_key(&prk, SEGMENT_KEY_INFO, aead),
            tail_key: expand_aead_key(&prk, TAIL_KEY_INFO, aead),
            header_hash: sha256(&header),
            header,
        }
    }

    /// Parses the header of an existing object and derives its keys, checking
    /// that `dek` is the key the object was sealed with.
    pub fn open(dek: &Dek, object_id: [u8; 16], header: &[u8]) -> Result<ObjectKeys, Error> {
        let aead = parse_header(header, object_id)?;
        let keys = ObjectKeys::derive(dek, object_id, aead);
        let expected = &keys.header[COMMITMENT_AT..RESERVED_AT];
        if !constant_time_eq(expected, &header[COMMITMENT_AT..RESERVED_AT]) {
            return Err(Error::KeyCommitmentMismatch);
        }
        Ok(keys)
    }

    pub fn header_bytes(&self) -> &[u8; HEADER_LEN] {
        &self.header
    }

    pub fn header_hash(&self) -> &[u8; 32] {
        &self.header_hash
    }

    pub fn aead(&self) -> Aead {
        self.aead
    }

    /// Appends segment `index`, sealed, to `out`: `nonce || ciphertext || tag`.
    ///
    /// The nonce is random rather than a counter because a resumed upload may
    /// seal the same index again with different bytes; a 96-bit random nonce
    /// per seal stays far below the collision bound for the few segments one
    /// object's key ever seals.
    ///
    /// # Panics
    /// Unless a non-final segment holds exactly [`SEGMENT_SIZE`] bytes and a
    /// final one fewer: that is a caller bug, and catching it here beats
    /// finding an unreadable object later (see [`segment_count`]).
    pub fn seal_segment(&self, index: u64, is_final: bool, plaintext: &[u8], out: &mut Vec<u8>) {
        assert!(
            segment_len_is_valid(is_final, plaintext.len()),
            "segment {index} (final: {is_final}) must not hold {} bytes: \
             non-final segments hold exactly SEGMENT_SIZE, final ones fewer",
            plaintext.len()
        );
        let aad = self.segment_aad(index, is_final, plaintext.len());
        seal_into(&self.segment_key, &aad, plaintext, out);
    }

    /// Opens sealed segment `index` in place and returns its plaintext, a
    /// subslice of `sealed`; no copy is made. On error nothing is returned
    /// and the contents of `sealed` are unspecified.
    pub fn open_segment<'a>(
        &self,
        index: u64,
        is_final: bool,
        sealed: &'a mut [u8],
    ) -> Result<&'a [u8], Error> {
        let integrity = || Error::Integrity {
            what: format!("segment {index}"),
        };
        let len = plaintext_len(sealed.len()).ok_or_else(integrity)?;
        if !segment_len_is_valid(is_final, len) {
            return Err(integrity());
        }
        let aad = self.segment_aad(index, is_final, len);
        open_in_place(&self.segment_key, &aad, sealed).ok_or_else(integrity)
    }

    /// Seals the tail record of an upload in progress: the `0 < len <
    /// SEGMENT_SIZE` bytes past its last full segment, which will become
    /// segment `index` once more data or the commit arrives. A separate key
    /// and domain keep a tail record from ever passing as a segment.
    ///
    /// # Panics
    /// If `plaintext` is empty or not shorter than [`SEGMENT_SIZE`].
    pub fn seal_tail(&self, index: u64, plaintext: &[u8]) -> Vec<u8> {
        assert!(
            !plaintext.is_empty() && plaintext.len() < SEGMENT_SIZE,
            "tail record {index} must hold 1 to SEGMENT_SIZE - 1 bytes"
        );
        let aad = self.tail_aad(index, plaintext.len());
        let mut out = Vec::with_capacity(sealed_len(plaintext.len()));
        seal_into(&self.tail_key, &aad, plaintext, &mut out);
        out
    }

    /// Opens the tail record sealed for segment `index`.
    pub fn open_tail(&self, index: u64, sealed: &[u8]) -> Result<Vec<u8>, Error> {
        let integrity = || Error::Integrity {
            what: format!("tail record {index}"),
        };
        let len = plaintext_len(sealed.len()).ok_or_else(integrity)?;
        if len == 0 || len >= SEGMENT_SIZE {
            return Err(integrity());
        }
        let aad = self.tail_aad(index, len);
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at(len);
        // Decrypting a copy of just the ciphertext keeps this to one copy.
        let mut plaintext = ciphertext.to_vec();
        open_separate_tag(&self.tail_key, &aad, nonce, tag, &mut plaintext)
            .ok_or_else(integrity)?;
        Ok(plaintext)
    }

    fn segment_aad(&self, index: u64, is_final: bool, len: usize) -> [u8; SEGMENT_AAD_LEN] {
        self.aad(index, &[u8::from(is_final)], len, SEGMENT_DOMAIN)
    }

    fn tail_aad(&self, index: u64, len: usize) -> [u8; TAIL_AAD_LEN] {
        self.aad(index, &[], len, TAIL_DOMAIN)
    }

    /// `header_hash || index (u64 BE) || flags || len (u32 BE) || domain`.
    fn aad<const N: usize>(&self, index: u64, flags: &[u8], len: usize, domain: u8) -> [u8; N] {
        // Invariant: callers bound len by SEGMENT_SIZE, far below u32::MAX.
        let len = u32::try_from(len).expect("segment length fits in u32");
        let mut aad = [0u8; N];
        let parts: [&[u8]; 5] = [
            &self.header_hash,
            &index.to_be_bytes(),
            flags,
            &len.to_be_bytes(),
            &[domain],
        ];
        let mut at = 0;
        for part in parts {
            aad[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        debug_assert_eq!(at, N, "aad length");
        aad
    }
}

impl fmt::Debug for ObjectKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectKeys")
            .field("aead", &self.aead)
            .field("header_hash", &hex::encode(self.header_hash))
            .finish_non_exhaustive()
    }
}

/// HKDF output length for the key commitment.
struct CommitmentLen;

impl hkdf::KeyType for CommitmentLen {
    fn len(&self) -> usize {
        COMMITMENT_LEN
    }
}

fn expand_commitment(prk: &hkdf::Prk) -> [u8; COMMITMENT_LEN] {
    let mut commitment = [0u8; COMMITMENT_LEN];
    // Invariant: HKDF-SHA256 can expand up to 255 * 32 bytes; we ask for 32.
    prk.expand(&[COMMITMENT_INFO], CommitmentLen)
        .and_then(|okm| okm.fill(&mut commitment))
        .expect("hkdf expands 32 bytes");
    commitment
}

fn expand_aead_key(prk: &hkdf::Prk, info: &[u8], aead: Aead) -> LessSafeKey {
    // Invariant: AEAD keys are at most 32 bytes, well within HKDF's limit.
    let info = [info];
    let okm = prk
        .expand(&info, aead.algorithm())
        .expect("hkdf expands an aead key");
    LessSafeKey::new(okm.into())
}

fn build_header(aead: Aead, object_id: [u8; 16], commitment: &[u8; 32]) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..VERSION_AT].copy_from_slice(MAGIC);
    header[VERSION_AT] = VERSION;
    header[AEAD_AT] = aead.code();
    header[SEGMENT_SIZE_AT..OBJECT_ID_AT].copy_from_slice(&segment_size_bytes());
    header[OBJECT_ID_AT..COMMITMENT_AT].copy_from_slice(&object_id);
    header[COMMITMENT_AT..RESERVED_AT].copy_from_slice(commitment);
    header
}

fn segment_size_bytes() -> [u8; 4] {
    // SEGMENT_SIZE is a constant far below u32::MAX.
    (SEGMENT_SIZE as u32).to_be_bytes()
}

/// Checks everything in the header except the key commitment and returns the
/// AEAD it names.
fn parse_header(header: &[u8], object_id: [u8; 16]) -> Result<Aead, Error> {
    let bad = |reason: &str| Err(Error::BadHeader(reason.to_owned()));
    if header.len() != HEADER_LEN {
        return bad(&format!(
            "expected {HEADER_LEN} bytes, got {}",
            header.len()
        ));
    }
    if &header[..VERSION_AT] != MAGIC {
        return bad("not a seg1 file (wrong magic)");
    }
    if header[VERSION_AT] != VERSION {
        return bad(&format!("unsupported version {}", header[VERSION_AT]));
    }
    let Some(aead) = Aead::from_code(header[AEAD_AT]) else {
        return bad(&format!("unknown aead {}", header[AEAD_AT]));
    };
    if header[SEGMENT_SIZE_AT..OBJECT_ID_AT] != segment_size_bytes() {
        return bad("unsupported segment size");
    }
    if header[OBJECT_ID_AT..COMMITMENT_AT] != object_id {
        return bad("object id does not match");
    }
    if header[RESERVED_AT..].iter().any(|&b| b != 0) {
        return bad("reserved bytes are not zero");
    }
    Ok(aead)
}

/// The one valid layout: full segments, then a final one shorter than full
/// (possibly empty), so each object length has exactly one encoding.
fn segment_len_is_valid(is_final: bool, len: usize) -> bool {
    if is_final {
        len < SEGMENT_SIZE
    } else {
        len == SEGMENT_SIZE
    }
}

/// Plaintext length of a sealed record of `sealed_len` bytes, if it can hold
/// a nonce and a tag at all.
fn plaintext_len(sealed_len: usize) -> Option<usize> {
    sealed_len.checked_sub(NONCE_LEN + TAG_LEN)
}

/// Appends `nonce || ciphertext || tag`, encrypting the plaintext after it
/// has been copied into `out` so it is copied exactly once.
fn seal_into(key: &LessSafeKey, aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) {
    let nonce = random_array::<NONCE_LEN>();
    out.reserve(sealed_len(plaintext.len()));
    out.extend_from_slice(&nonce);
    let start = out.len();
    out.extend_from_slice(plaintext);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut out[start..],
        )
        // Invariant: ring only refuses plaintexts of gigabytes; ours are
        // at most SEGMENT_SIZE.
        .expect("sealing a segment-sized plaintext cannot fail");
    out.extend_from_slice(tag.as_ref());
}

/// Decrypts `nonce || ciphertext || tag` in place, returning the plaintext.
fn open_in_place<'a>(key: &LessSafeKey, aad: &[u8], sealed: &'a mut [u8]) -> Option<&'a [u8]> {
    let (nonce, ciphertext) = sealed.split_at_mut(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let plaintext = key.open_in_place(nonce, Aad::from(aad), ciphertext).ok()?;
    Some(plaintext)
}

/// Decrypts `ciphertext` in place given its nonce and tag separately.
fn open_separate_tag(
    key: &LessSafeKey,
    aad: &[u8],
    nonce: &[u8],
    tag: &[u8],
    ciphertext: &mut [u8],
) -> Option<()> {
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let tag = aead::Tag::try_from(tag).ok()?;
    key.open_in_place_separate_tag(nonce, Aad::from(aad), tag, ciphertext, 0..)
        .ok()?;
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OBJECT: [u8; 16] = [0x42; 16];

    fn keys() -> ObjectKeys {
        ObjectKeys::derive(&Dek::generate(), OBJECT, Aead::default())
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    /// Seals `plaintext` as a committed object: header, full segments, final.
    fn seal_object(keys: &ObjectKeys, plaintext: &[u8]) -> Vec<u8> {
        let mut file = keys.header_bytes().to_vec();
        let full = plaintext.len() / SEGMENT_SIZE;
        for (index, chunk) in plaintext.chunks_exact(SEGMENT_SIZE).enumerate() {
            keys.seal_segment(index as u64, false, chunk, &mut file);
        }
        let rest = &plaintext[full * SEGMENT_SIZE..];
        keys.seal_segment(full as u64, true, rest, &mut file);
        file
    }

    /// The sealed bytes of segment `index` within a committed object file.
    fn segment_range(file_len: usize, index: u64) -> std::ops::Range<usize> {
        let start = segment_offset(index) as usize;
        start..(start + SEALED_SEGMENT_LEN).min(file_len)
    }

    /// Opens segments `first..=last` of `file` and concatenates them.
    fn open_range(keys: &ObjectKeys, file: &[u8], first: u64, last: u64) -> Result<Vec<u8>, Error> {
        let total = segment_count_of_file(file.len());
        let mut plaintext = Vec::new();
        for index in first..=last {
            let mut sealed = file[segment_range(file.len(), index)].to_vec();
            let is_final = index + 1 == total;
            plaintext.extend_from_slice(keys.open_segment(index, is_final, &mut sealed)?);
        }
        Ok(plaintext)
    }

    fn segment_count_of_file(file_len: usize) -> u64 {
        ((file_len - HEADER_LEN) / SEALED_SEGMENT_LEN + 1) as u64
    }

    fn open_object(keys: &ObjectKeys, file: &[u8]) -> Result<Vec<u8>, Error> {
        let last = segment_count_of_file(file.len()) - 1;
        open_range(keys, file, 0, last)
    }

    fn is_integrity<T: fmt::Debug>(result: Result<T, Error>) -> bool {
        matches!(result, Err(Error::Integrity { .. }))
    }

    #[test]
    fn round_trips_every_length_class() {
        for aead in [Aead::Aes256Gcm, Aead::ChaCha20Poly1305] {
            let keys = ObjectKeys::derive(&Dek::generate(), OBJECT, aead);
            for len in [0, 1, 65535, 65536, 65537, 3 * 65536 + 1] {
                let plaintext = pattern(len);
                let file = seal_object(&keys, &plaintext);
                assert_eq!(file.len() as u64, committed_file_len(len as u64), "{len}");
                assert_eq!(segment_count_of_file(file.len()), segment_count(len as u64));
                assert_eq!(open_object(&keys, &file).unwrap(), plaintext, "{len}");
            }
        }
    }

    #[test]
    fn layout_arithmetic() {
        assert_eq!(SEALED_SEGMENT_LEN, 65564);
        assert_eq!(segment_count(0), 1);
        assert_eq!(segment_count(65535), 1);
        assert_eq!(segment_count(65536), 2);
        assert_eq!(committed_file_len(0), 64 + 28);
        assert_eq!(committed_file_len(65536), 64 + 65564 + 28);
        assert_eq!(segment_offset(2), 64 + 2 * 65564);
    }

    #[test]
    fn header_layout() {
        let keys = keys();
        let header = keys.header_bytes();
        assert_eq!(&header[..4], b"SEG1");
        assert_eq!(header[4], 1);
        assert_eq!(header[5], 1);
        assert_eq!(header[6..10], 65536u32.to_be_bytes());
        assert_eq!(header[10..26], OBJECT);
        assert_eq!(keys.header_hash(), &sha256(header));
    }

    #[test]
    fn open_with_header_reproduces_keys() {
        let dek = Dek::generate();
        let sealer = ObjectKeys::derive(&dek, OBJECT, Aead::ChaCha20Poly1305);
        let file = seal_object(&sealer, &pattern(70_000));
        let opener = ObjectKeys::open(&dek, OBJECT, &file[..HEADER_LEN]).unwrap();
        assert_eq!(opener.aead(), Aead::ChaCha20Poly1305);
        assert_eq!(open_object(&opener, &file).unwrap(), pattern(70_000));
    }

    #[test]
    fn wrong_key_is_a_commitment_mismatch() {
        let header = *keys().header_bytes();
        let result = ObjectKeys::open(&Dek::generate(), OBJECT, &header);
        assert!(matches!(result, Err(Error::KeyCommitmentMismatch)));
    }

    #[test]
    fn malformed_headers_are_rejected() {
        let dek = Dek::generate();
        let header = *ObjectKeys::derive(&dek, OBJECT, Aead::default()).header_bytes();
        let bad = |at: usize| {
            let mut copy = header;
            copy[at] ^= 0x80;
            ObjectKeys::open(&dek, OBJECT, &copy)
        };
        for at in [
            0,
            VERSION_AT,
            AEAD_AT,
            SEGMENT_SIZE_AT,
            OBJECT_ID_AT,
            RESERVED_AT,
        ] {
            assert!(matches!(bad(at), Err(Error::BadHeader(_))), "byte {at}");
        }
        assert!(matches!(
            bad(COMMITMENT_AT),
            Err(Error::KeyCommitmentMismatch)
        ));
        let short = ObjectKeys::open(&dek, OBJECT, &header[..HEADER_LEN - 1]);
        assert!(matches!(short, Err(Error::BadHeader(_))));
        let other_object = ObjectKeys::open(&dek, [1; 16], &header);
        assert!(matches!(other_object, Err(Error::BadHeader(_))));
    }

    #[test]
    fn seals_use_fresh_nonces() {
        let keys = keys();
        let (mut first, mut second) = (Vec::new(), Vec::new());
        keys.seal_segment(0, true, b"same", &mut first);
        keys.seal_segment(0, true, b"same", &mut second);
        assert_ne!(first[..NONCE_LEN], second[..NONCE_LEN]);
        assert_ne!(first, second);
    }

    #[test]
    fn seal_appends_to_existing_buffer() {
        let keys = keys();
        let mut out = b"prefix".to_vec();
        keys.seal_segment(3, true, b"data", &mut out);
        assert_eq!(&out[..6], b"prefix");
        assert_eq!(out.len(), 6 + sealed_len(4));
        assert_eq!(keys.open_segment(3, true, &mut out[6..]).unwrap(), b"data");
    }

    #[test]
    fn every_bit_flip_in_a_small_segment_is_detected() {
        let keys = keys();
        let mut sealed = Vec::new();
        keys.seal_segment(0, true, b"hello", &mut sealed);
        for bit in 0..sealed.len() * 8 {
            let mut copy = sealed.clone();
            copy[bit / 8] ^= 1 << (bit % 8);
            assert!(
                is_integrity(keys.open_segment(0, true, &mut copy)),
                "bit {bit}"
            );
        }
    }

    #[test]
    fn misplaced_segments_are_detected() {
        let keys = keys();
        let file = seal_object(&keys, &pattern(2 * SEGMENT_SIZE + 10));
        let seg = |i: u64| file[segment_range(file.len(), i)].to_vec();

        // Swapped: segment 1's bytes opened as segment 0 and vice versa.
        assert!(is_integrity(keys.open_segment(0, false, &mut seg(1))));
        assert!(is_integrity(keys.open_segment(1, false, &mut seg(0))));
        // Wrong index.
        assert!(is_integrity(keys.open_segment(5, true, &mut seg(2))));
        // Final flag flipped either way.
        assert!(is_integrity(keys.open_segment(2, false, &mut seg(2))));
        assert!(is_integrity(keys.open_segment(1, true, &mut seg(1))));
    }

    #[test]
    fn truncation_is_detected() {
        let keys = keys();
        let file = seal_object(&keys, &pattern(SEGMENT_SIZE + 100));
        let mut last = file[segment_range(file.len(), 1)].to_vec();
        for cut in [1, TAG_LEN, last.len() - NONCE_LEN, last.len()] {
            let keep = last.len() - cut;
            assert!(
                is_integrity(keys.open_segment(1, true, &mut last[..keep])),
                "{cut}"
            );
        }
        // Dropping the final segment entirely and calling a full one final.
        let mut first = file[segment_range(file.len(), 0)].to_vec();
        assert!(is_integrity(keys.open_segment(0, true, &mut first)));
        // A whole file cut at a segment boundary no longer opens.
        let cut = &file[..segment_offset(1) as usize];
        assert!(is_integrity(open_object(&keys, cut)));
        last.clear();
        assert!(is_integrity(keys.open_segment(1, true, &mut last)));
    }

    #[test]
    fn segments_do_not_splice_across_objects() {
        let dek = Dek::generate();
        let mine = ObjectKeys::derive(&dek, OBJECT, Aead::default());
        // Same DEK, other object id: the object id salt must still separate them.
        let same_dek = ObjectKeys::derive(&dek, [9; 16], Aead::default());
        let other = keys();
        for sealer in [&same_dek, &other] {
            let mut sealed = Vec::new();
            sealer.seal_segment(0, true, b"theirs", &mut sealed);
            assert!(is_integrity(mine.open_segment(0, true, &mut sealed)));
        }
    }

    #[test]
    #[should_panic(expected = "must not hold 5 bytes")]
    fn short_non_final_segment_panics() {
        keys().seal_segment(0, false, b"short", &mut Vec::new());
    }

    #[test]
    #[should_panic(expected = "must not hold 65536 bytes")]
    fn full_final_segment_panics() {
        keys().seal_segment(0, true, &pattern(SEGMENT_SIZE), &mut Vec::new());
    }

    #[test]
    #[should_panic(expected = "must not hold 65537 bytes")]
    fn oversized_segment_panics() {
        keys().seal_segment(0, true, &pattern(SEGMENT_SIZE + 1), &mut Vec::new());
    }

    #[test]
    fn tail_round_trip_and_tamper() {
        let keys = keys();
        for len in [1, 1000, SEGMENT_SIZE - 1] {
            let sealed = keys.seal_tail(4, &pattern(len));
            assert_eq!(sealed.len(), sealed_len(len));
            assert_eq!(keys.open_tail(4, &sealed).unwrap(), pattern(len));
        }
        let sealed = keys.seal_tail(4, b"tail bytes");
        assert!(is_integrity(keys.open_tail(5, &sealed)));
        assert!(is_integrity(keys.open_tail(4, &sealed[..sealed.len() - 1])));
        assert!(is_integrity(
            keys.open_tail(4, &sealed[..NONCE_LEN + TAG_LEN])
        ));
        for at in [0, NONCE_LEN, sealed.len() - 1] {
            let mut copy = sealed.clone();
            copy[at] ^= 1;
            assert!(is_integrity(keys.open_tail(4, &copy)), "byte {at}");
        }
    }

    #[test]
    fn tails_and_segments_do_not_substitute() {
        let keys = keys();
        let mut tail = keys.seal_tail(0, b"partial");
        assert!(is_integrity(keys.open_segment(0, true, &mut tail)));
        let mut segment = Vec::new();
        keys.seal_segment(0, true, b"partial", &mut segment);
        assert!(is_integrity(keys.open_tail(0, &segment)));
    }

    #[test]
    fn object_keys_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ObjectKeys>();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn round_trip_any_length(len in 0..=3 * SEGMENT_SIZE + 1) {
            let keys = keys();
            let plaintext = pattern(len);
            let file = seal_object(&keys, &plaintext);
            prop_assert_eq!(file.len() as u64, committed_file_len(len as u64));
            prop_assert_eq!(open_object(&keys, &file).unwrap(), plaintext);
        }

        #[test]
        fn range_decrypt_matches_slice(
            len in 0..=3 * SEGMENT_SIZE + 1,
            a in any::<prop::sample::Index>(),
            b in any::<prop::sample::Index>(),
        ) {
            let keys = keys();
            let plaintext = pattern(len);
            let file = seal_object(&keys, &plaintext);
            let (x, y) = (a.index(len + 1), b.index(len + 1));
            let (start, end) = (x.min(y), x.max(y));
            // Segments covering [start, end); an empty range still reads one.
            let first = (start / SEGMENT_SIZE) as u64;
            let last = (end.saturating_sub(1).max(start) / SEGMENT_SIZE) as u64;
            let opened = open_range(&keys, &file, first, last).unwrap();
            let base = first as usize * SEGMENT_SIZE;
            prop_assert_eq!(&opened[start - base..end - base], &plaintext[start..end]);
        }

        #[test]
        fn any_bit_flip_is_detected(
            len in 0..=SEGMENT_SIZE,
            bit in any::<prop::sample::Index>(),
        ) {
            let keys = keys();
            let mut sealed = Vec::new();
            keys.seal_segment(0, true, &pattern(len), &mut sealed);
            let bit = bit.index(sealed.len() * 8);
            sealed[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(is_integrity(keys.open_segment(0, true, &mut sealed)));
        }
    }
}
