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
//!
//! Write generations close the one replay those bindings leave open: a
//! segment sealed for bytes that were later cut off (a discarded chunk)
//! authenticates at its index as well as the segment sealed there since.
//! Each cut starts a new [`Generation`] at the index it cut to, and the AAD
//! of every segment and tail record binds the generation it was sealed
//! under ([`Generations`] records which that is), so a segment from before
//! the cut no longer opens. Generation 0 adds nothing to the AAD: objects
//! sealed before generations existed open unchanged.

use std::fmt;

use ring::aead::{self, AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce};
use ring::hkdf::{self, HKDF_SHA256, Salt};
use serde::{Deserialize, Serialize};

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

// header hash, index, [final flag], plaintext length, domain byte, then the
// generation unless it is 0.
const SEGMENT_AAD_LEN: usize = 32 + 8 + 1 + 4 + 1;
const TAIL_AAD_LEN: usize = 32 + 8 + 4 + 1;
const GENERATION_LEN: usize = 8;
const MAX_AAD_LEN: usize = SEGMENT_AAD_LEN + GENERATION_LEN;

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

/// A write generation of an upload's segments (see the module docs).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Generation(pub u64);

impl Generation {
    /// Every segment's generation until its upload's first cut, and that of
    /// every segment sealed before generations existed.
    pub const INITIAL: Generation = Generation(0);

    fn is_initial(self) -> bool {
        self == Generation::INITIAL
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Which generation each segment of one upload or object was sealed under,
/// and which its tail record was. Kept in the upload's record; readers open
/// every segment with [`of`](Self::of) and the tail with
/// [`tail`](Self::tail).
///
/// Invariant: a cut only ever removes a suffix of the segments (everything
/// from the first byte not acknowledged), so the generation never decreases
/// with the index. The map is a list of starts `(first index, generation)`,
/// strictly increasing in both, with generation 0 before the first. A cut
/// at index `i` drops the starts at or past `i` and adds `(i, g + 1)`, `g`
/// being the highest generation so far: no index is ever sealed again under
/// a generation it was sealed under before a cut. The list holds at most one
/// start per cut and per segment, and repeated cuts at one index replace
/// each other.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StoredGenerations", into = "StoredGenerations")]
pub struct Generations {
    starts: Vec<(u64, Generation)>,
    tail: Generation,
}

impl Generations {
    /// Generation 0 everywhere: no cut has happened.
    pub fn is_initial(&self) -> bool {
        self.starts.is_empty() && self.tail.is_initial()
    }

    /// The generation segment `index` is sealed under.
    pub fn of(&self, index: u64) -> Generation {
        let after = self.starts.partition_point(|&(first, _)| first <= index);
        after
            .checked_sub(1)
            .map_or(Generation::INITIAL, |at| self.starts[at].1)
    }

    /// The generation the stored tail record was sealed under.
    pub fn tail(&self) -> Generation {
        self.tail
    }

    /// Notes that the tail record is now sealed under `generation`.
    pub fn set_tail(&mut self, generation: Generation) {
        self.tail = generation;
    }

    /// Starts a new generation at `first_index` because the segments from it
    /// on are being cut off. The tail record keeps the generation it was
    /// sealed under until it is sealed again.
    pub fn cut(&mut self, first_index: u64) -> Generation {
        // The highest generation is the last start's (strictly increasing).
        // Reaching u64::MAX would take that many discarded chunks.
        let highest = self.starts.last().map_or(Generation::INITIAL, |s| s.1);
        let next = Generation(highest.0.saturating_add(1));
        self.starts.retain(|&(first, _)| first < first_index);
        self.starts.push((first_index, next));
        next
    }

    /// `(first index, generation)` of every start, in order.
    pub fn starts(&self) -> &[(u64, Generation)] {
        &self.starts
    }
}

/// How [`Generations`] is stored: checked on the way in, so a map that is
/// not strictly increasing is a corrupt record, never a wrong generation.
#[derive(Serialize, Deserialize)]
struct StoredGenerations {
    #[serde(default)]
    starts: Vec<(u64, Generation)>,
    #[serde(default)]
    tail: Generation,
}

impl TryFrom<StoredGenerations> for Generations {
    type Error = String;

    fn try_from(stored: StoredGenerations) -> Result<Self, Self::Error> {
        let mut previous: Option<(u64, Generation)> = None;
        for &(first, generation) in &stored.starts {
            let increasing = match previous {
                None => generation > Generation::INITIAL,
                Some((prev_first, prev_gen)) => first > prev_first && generation > prev_gen,
            };
            if !increasing {
                return Err(format!(
                    "generation starts must increase strictly (start ({first}, {generation}))"
                ));
            }
            previous = Some((first, generation));
        }
        let highest = previous.map_or(Generation::INITIAL, |(_, g)| g);
        if stored.tail > highest {
            return Err(format!(
                "tail generation {} is above the highest, {highest}",
                stored.tail
            ));
        }
        Ok(Generations {
            starts: stored.starts,
            tail: stored.tail,
        })
    }
}

impl From<Generations> for StoredGenerations {
    fn from(generations: Generations) -> Self {
        StoredGenerations {
            starts: generations.starts,
            tail: generations.tail,
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

    /// Appends segment `index`, sealed under `generation`, to `out`:
    /// `nonce || ciphertext || tag`.
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
    pub fn seal_segment(
        &self,
        index: u64,
        generation: Generation,
        is_final: bool,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) {
        assert!(
            segment_len_is_valid(is_final, plaintext.len()),
            "segment {index} (final: {is_final}) must not hold {} bytes: \
             non-final segments hold exactly SEGMENT_SIZE, final ones fewer",
            plaintext.len()
        );
        let aad = self.segment_aad(index, generation, is_final, plaintext.len());
        seal_into(&self.segment_key, aad.as_slice(), plaintext, out);
    }

    /// Opens sealed segment `index` (sealed under `generation`) in place and
    /// returns its plaintext, a subslice of `sealed`; no copy is made. On
    /// error nothing is returned and the contents of `sealed` are unspecified.
    pub fn open_segment<'a>(
        &self,
        index: u64,
        generation: Generation,
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
        let aad = self.segment_aad(index, generation, is_final, len);
        open_in_place(&self.segment_key, aad.as_slice(), sealed).ok_or_else(integrity)
    }

    /// Seals the tail record of an upload in progress: the `0 < len <
    /// SEGMENT_SIZE` bytes past its last full segment, which will become
    /// segment `index` once more data or the commit arrives, sealed under
    /// `generation`. A separate key and domain keep a tail record from ever
    /// passing as a segment.
    ///
    /// # Panics
    /// If `plaintext` is empty or not shorter than [`SEGMENT_SIZE`].
    pub fn seal_tail(&self, index: u64, generation: Generation, plaintext: &[u8]) -> Vec<u8> {
        assert!(
            !plaintext.is_empty() && plaintext.len() < SEGMENT_SIZE,
            "tail record {index} must hold 1 to SEGMENT_SIZE - 1 bytes"
        );
        let aad = self.tail_aad(index, generation, plaintext.len());
        let mut out = Vec::with_capacity(sealed_len(plaintext.len()));
        seal_into(&self.tail_key, aad.as_slice(), plaintext, &mut out);
        out
    }

    /// Opens the tail record sealed for segment `index` under `generation`.
    pub fn open_tail(
        &self,
        index: u64,
        generation: Generation,
        sealed: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let integrity = || Error::Integrity {
            what: format!("tail record {index}"),
        };
        let len = plaintext_len(sealed.len()).ok_or_else(integrity)?;
        if len == 0 || len >= SEGMENT_SIZE {
            return Err(integrity());
        }
        let aad = self.tail_aad(index, generation, len);
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at(len);
        // Decrypting a copy of just the ciphertext keeps this to one copy.
        let mut plaintext = ciphertext.to_vec();
        open_separate_tag(&self.tail_key, aad.as_slice(), nonce, tag, &mut plaintext)
            .ok_or_else(integrity)?;
        Ok(plaintext)
    }

    fn segment_aad(
        &self,
        index: u64,
        generation: Generation,
        is_final: bool,
        len: usize,
    ) -> AadBytes {
        let aad = self.aad(
            index,
            generation,
            &[u8::from(is_final)],
            len,
            SEGMENT_DOMAIN,
        );
        debug_assert_eq!(aad.len, aad_len(SEGMENT_AAD_LEN, generation));
        aad
    }

    fn tail_aad(&self, index: u64, generation: Generation, len: usize) -> AadBytes {
        let aad = self.aad(index, generation, &[], len, TAIL_DOMAIN);
        debug_assert_eq!(aad.len, aad_len(TAIL_AAD_LEN, generation));
        aad
    }

    /// `header_hash || index (u64 BE) || flags || len (u32 BE) || domain`,
    /// then `generation (u64 BE)` unless it is 0. Generation 0 thus gives
    /// the AAD of the original format, and any other generation an AAD 8
    /// bytes longer (both AEADs authenticate the AAD's length), so the two
    /// never coincide.
    fn aad(
        &self,
        index: u64,
        generation: Generation,
        flags: &[u8],
        len: usize,
        domain: u8,
    ) -> AadBytes {
        // Invariant: callers bound len by SEGMENT_SIZE, far below u32::MAX.
        let len = u32::try_from(len).expect("segment length fits in u32");
        let generation_bytes = generation.0.to_be_bytes();
        let generation: &[u8] = if generation.is_initial() {
            &[]
        } else {
            &generation_bytes
        };
        let mut aad = AadBytes {
            bytes: [0u8; MAX_AAD_LEN],
            len: 0,
        };
        let parts: [&[u8]; 6] = [
            &self.header_hash,
            &index.to_be_bytes(),
            flags,
            &len.to_be_bytes(),
            &[domain],
            generation,
        ];
        for part in parts {
            aad.bytes[aad.len..aad.len + part.len()].copy_from_slice(part);
            aad.len += part.len();
        }
        aad
    }
}

/// One AAD, on the stack: its length depends on the generation.
struct AadBytes {
    bytes: [u8; MAX_AAD_LEN],
    len: usize,
}

impl AadBytes {
    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The AAD length of a record whose generation-0 AAD is `base` bytes.
fn aad_len(base: usize, generation: Generation) -> usize {
    if generation.is_initial() {
        base
    } else {
        base + GENERATION_LEN
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
    const G0: Generation = Generation::INITIAL;
    const G1: Generation = Generation(1);

    /// `(aead, header, segment 3 (final), tail record 2)` from an
    /// independent implementation, DEK = 00 01 .. 1f, fixed nonces.
    const FROZEN: [(Aead, &str, &str, &str); 2] = [
        (
            Aead::Aes256Gcm,
            "5345473101010001000042424242424242424242424242424242497940b1c4905979aa3b\
             1e07e3cbef5117a0c0ad99d0e73dee5afd5f4a0afb32000000000000",
            "a0a1a2a3a4a5a6a7a8a9aaab05c8c94f426284b9b64a95d0b60a70798162f7a0f7a7e5e8\
             c6d17e1c7c402cfe40fd1ab5236e50b7a36f5654bac2800f76",
            "b0b1b2b3b4b5b6b7b8b9babb65302adb3b2dd7acd197c522c4d066c8148e821b2afd1b3d0680",
        ),
        (
            Aead::ChaCha20Poly1305,
            "5345473101020001000042424242424242424242424242424242497940b1c4905979aa3b\
             1e07e3cbef5117a0c0ad99d0e73dee5afd5f4a0afb32000000000000",
            "a0a1a2a3a4a5a6a7a8a9aaabdae7a02db2ab6df6e0498ac5699317e7b46c5683b08b8099\
             43d51c4ceb0fa092f49d5a5665227c5be14e8a8dcd10185402",
            "b0b1b2b3b4b5b6b7b8b9babba7449adf16ae0e4bffa4d7a73ac785b42eaeec24484579eff7f3",
        ),
    ];

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
            keys.seal_segment(index as u64, G0, false, chunk, &mut file);
        }
        let rest = &plaintext[full * SEGMENT_SIZE..];
        keys.seal_segment(full as u64, G0, true, rest, &mut file);
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
            plaintext.extend_from_slice(keys.open_segment(index, G0, is_final, &mut sealed)?);
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

    /// The AAD of the format before generations existed, built from its
    /// description rather than by the code under test.
    fn original_aad(
        keys: &ObjectKeys,
        index: u64,
        flags: &[u8],
        len: usize,
        domain: u8,
    ) -> Vec<u8> {
        let len = u32::try_from(len).unwrap().to_be_bytes();
        [
            &keys.header_hash()[..],
            &index.to_be_bytes(),
            flags,
            &len,
            &[domain],
        ]
        .concat()
    }

    /// One step of a writer: append segments, seal the tail record, or cut
    /// back to an index (a discarded chunk, or recovery after a crash).
    #[derive(Debug, Clone)]
    enum Step {
        Append(u8),
        SealTail,
        Cut(prop::sample::Index),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (1u8..5).prop_map(Step::Append),
            Just(Step::SealTail),
            any::<prop::sample::Index>().prop_map(Step::Cut),
        ]
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
        keys.seal_segment(0, G0, true, b"same", &mut first);
        keys.seal_segment(0, G0, true, b"same", &mut second);
        assert_ne!(first[..NONCE_LEN], second[..NONCE_LEN]);
        assert_ne!(first, second);
    }

    #[test]
    fn seal_appends_to_existing_buffer() {
        let keys = keys();
        let mut out = b"prefix".to_vec();
        keys.seal_segment(3, G0, true, b"data", &mut out);
        assert_eq!(&out[..6], b"prefix");
        assert_eq!(out.len(), 6 + sealed_len(4));
        assert_eq!(
            keys.open_segment(3, G0, true, &mut out[6..]).unwrap(),
            b"data"
        );
    }

    #[test]
    fn every_bit_flip_in_a_small_segment_is_detected() {
        let keys = keys();
        let mut sealed = Vec::new();
        keys.seal_segment(0, G0, true, b"hello", &mut sealed);
        for bit in 0..sealed.len() * 8 {
            let mut copy = sealed.clone();
            copy[bit / 8] ^= 1 << (bit % 8);
            assert!(
                is_integrity(keys.open_segment(0, G0, true, &mut copy)),
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
        assert!(is_integrity(keys.open_segment(0, G0, false, &mut seg(1))));
        assert!(is_integrity(keys.open_segment(1, G0, false, &mut seg(0))));
        // Wrong index.
        assert!(is_integrity(keys.open_segment(5, G0, true, &mut seg(2))));
        // Final flag flipped either way.
        assert!(is_integrity(keys.open_segment(2, G0, false, &mut seg(2))));
        assert!(is_integrity(keys.open_segment(1, G0, true, &mut seg(1))));
    }

    #[test]
    fn truncation_is_detected() {
        let keys = keys();
        let file = seal_object(&keys, &pattern(SEGMENT_SIZE + 100));
        let mut last = file[segment_range(file.len(), 1)].to_vec();
        for cut in [1, TAG_LEN, last.len() - NONCE_LEN, last.len()] {
            let keep = last.len() - cut;
            assert!(
                is_integrity(keys.open_segment(1, G0, true, &mut last[..keep])),
                "{cut}"
            );
        }
        // Dropping the final segment entirely and calling a full one final.
        let mut first = file[segment_range(file.len(), 0)].to_vec();
        assert!(is_integrity(keys.open_segment(0, G0, true, &mut first)));
        // A whole file cut at a segment boundary no longer opens.
        let cut = &file[..segment_offset(1) as usize];
        assert!(is_integrity(open_object(&keys, cut)));
        last.clear();
        assert!(is_integrity(keys.open_segment(1, G0, true, &mut last)));
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
            sealer.seal_segment(0, G0, true, b"theirs", &mut sealed);
            assert!(is_integrity(mine.open_segment(0, G0, true, &mut sealed)));
        }
    }

    #[test]
    #[should_panic(expected = "must not hold 5 bytes")]
    fn short_non_final_segment_panics() {
        keys().seal_segment(0, G0, false, b"short", &mut Vec::new());
    }

    #[test]
    #[should_panic(expected = "must not hold 65536 bytes")]
    fn full_final_segment_panics() {
        keys().seal_segment(0, G0, true, &pattern(SEGMENT_SIZE), &mut Vec::new());
    }

    #[test]
    #[should_panic(expected = "must not hold 65537 bytes")]
    fn oversized_segment_panics() {
        keys().seal_segment(0, G0, true, &pattern(SEGMENT_SIZE + 1), &mut Vec::new());
    }

    #[test]
    fn tail_round_trip_and_tamper() {
        let keys = keys();
        for len in [1, 1000, SEGMENT_SIZE - 1] {
            let sealed = keys.seal_tail(4, G0, &pattern(len));
            assert_eq!(sealed.len(), sealed_len(len));
            assert_eq!(keys.open_tail(4, G0, &sealed).unwrap(), pattern(len));
        }
        let sealed = keys.seal_tail(4, G0, b"tail bytes");
        assert!(is_integrity(keys.open_tail(5, G0, &sealed)));
        assert!(is_integrity(keys.open_tail(
            4,
            G0,
            &sealed[..sealed.len() - 1]
        )));
        assert!(is_integrity(keys.open_tail(
            4,
            G0,
            &sealed[..NONCE_LEN + TAG_LEN]
        )));
        for at in [0, NONCE_LEN, sealed.len() - 1] {
            let mut copy = sealed.clone();
            copy[at] ^= 1;
            assert!(is_integrity(keys.open_tail(4, G0, &copy)), "byte {at}");
        }
    }

    #[test]
    fn tails_and_segments_do_not_substitute() {
        let keys = keys();
        let mut tail = keys.seal_tail(0, G0, b"partial");
        assert!(is_integrity(keys.open_segment(0, G0, true, &mut tail)));
        let mut segment = Vec::new();
        keys.seal_segment(0, G0, true, b"partial", &mut segment);
        assert!(is_integrity(keys.open_tail(0, G0, &segment)));
    }

    /// Sealed by an independent implementation of the format as it was
    /// before write generations existed: what is on disk today must keep
    /// opening, byte for byte, at generation 0.
    #[test]
    fn frozen_vectors_of_the_original_format_open() {
        let dek = Dek::from_slice(&(0u8..32).collect::<Vec<u8>>()).unwrap();
        for (aead, header, segment, tail) in FROZEN {
            let keys = ObjectKeys::derive(&dek, OBJECT, aead);
            assert_eq!(keys.header_bytes()[..], hex::decode(header).unwrap()[..]);
            let mut sealed = hex::decode(segment).unwrap();
            let opened = keys.open_segment(3, G0, true, &mut sealed).unwrap();
            assert_eq!(opened, b"generation zero is today's format");
            let tail = hex::decode(tail).unwrap();
            assert_eq!(keys.open_tail(2, G0, &tail).unwrap(), b"tail bytes");
            // The same bytes claimed for a later generation do not open.
            let mut sealed = hex::decode(segment).unwrap();
            assert!(is_integrity(keys.open_segment(3, G1, true, &mut sealed)));
            assert!(is_integrity(keys.open_tail(2, G1, &tail)));
        }
    }

    #[test]
    fn a_cut_starts_a_generation_at_its_index() {
        let mut generations = Generations::default();
        assert!(generations.is_initial());
        assert_eq!(generations.of(0), G0);
        assert_eq!(generations.of(u64::MAX), G0);

        assert_eq!(generations.cut(5), Generation(1));
        assert_eq!((generations.of(4), generations.of(5)), (G0, Generation(1)));
        assert_eq!(
            generations.tail(),
            G0,
            "the stored tail keeps its generation"
        );
        generations.set_tail(generations.of(5));
        assert_eq!(generations.cut(9), Generation(2));
        assert_eq!(generations.of(8), Generation(1));
        assert_eq!(generations.of(9), Generation(2));
        // Cutting below an earlier start replaces the starts it cuts off.
        assert_eq!(generations.cut(3), Generation(3));
        assert_eq!(generations.starts(), &[(3, Generation(3))]);
        assert_eq!(generations.of(2), G0);
        assert_eq!(generations.of(9), Generation(3));
        // Repeated cuts at one index do not grow the map.
        generations.cut(3);
        generations.cut(3);
        assert_eq!(generations.starts(), &[(3, Generation(5))]);
        assert!(!generations.is_initial());
    }

    #[test]
    fn stored_generations_round_trip_and_are_checked() {
        let mut generations = Generations::default();
        generations.cut(2);
        generations.set_tail(Generation(1));
        generations.cut(7);
        let json = serde_json::to_string(&generations).unwrap();
        assert_eq!(json, r#"{"starts":[[2,1],[7,2]],"tail":1}"#);
        assert_eq!(
            serde_json::from_str::<Generations>(&json).unwrap(),
            generations
        );
        assert_eq!(
            serde_json::from_str::<Generations>("{}").unwrap(),
            Generations::default()
        );
        for bad in [
            r#"{"starts":[[2,0]]}"#,
            r#"{"starts":[[2,1],[2,2]]}"#,
            r#"{"starts":[[2,2],[3,1]]}"#,
            r#"{"starts":[[3,1],[2,2]]}"#,
            r#"{"starts":[[2,1]],"tail":2}"#,
            r#"{"tail":1}"#,
        ] {
            assert!(serde_json::from_str::<Generations>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generations_bind_tails_and_segments_alike() {
        let keys = keys();
        let mut sealed = Vec::new();
        keys.seal_segment(4, G1, false, &pattern(SEGMENT_SIZE), &mut sealed);
        let opened = keys
            .open_segment(4, G1, false, &mut sealed.clone())
            .unwrap()
            .to_vec();
        assert_eq!(opened, pattern(SEGMENT_SIZE));
        for other in [G0, Generation(2), Generation(u64::MAX)] {
            assert!(is_integrity(keys.open_segment(
                4,
                other,
                false,
                &mut sealed.clone()
            )));
        }
        let tail = keys.seal_tail(4, G1, b"tail");
        assert_eq!(keys.open_tail(4, G1, &tail).unwrap(), b"tail");
        assert!(is_integrity(keys.open_tail(4, G0, &tail)));
        assert!(is_integrity(keys.open_tail(4, Generation(2), &tail)));
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

        /// A record sealed under one generation opens under that one only.
        #[test]
        fn a_record_opens_only_under_its_generation(
            index in any::<u64>(),
            sealed_under in prop_oneof![Just(0u64), 1u64..4, any::<u64>()],
            opened_under in prop_oneof![Just(0u64), 1u64..4, any::<u64>()],
            len in 0..=SEGMENT_SIZE,
        ) {
            let keys = keys();
            let (sealed_under, opened_under) = (Generation(sealed_under), Generation(opened_under));
            let is_final = len < SEGMENT_SIZE;
            let plaintext = pattern(len);
            let mut sealed = Vec::new();
            keys.seal_segment(index, sealed_under, is_final, &plaintext, &mut sealed);
            let opened = keys.open_segment(index, opened_under, is_final, &mut sealed);
            if sealed_under == opened_under {
                prop_assert_eq!(opened.unwrap(), &plaintext[..]);
            } else {
                prop_assert!(is_integrity(opened));
            }
            if (1..SEGMENT_SIZE).contains(&len) {
                let tail = keys.seal_tail(index, sealed_under, &plaintext);
                let opened = keys.open_tail(index, opened_under, &tail);
                prop_assert_eq!(opened.is_ok(), sealed_under == opened_under);
            }
        }

        /// Generation 0 is the original format, byte for byte: its records
        /// open under the original AAD with no knowledge of generations, so
        /// everything sealed before generations existed stays readable.
        #[test]
        fn generation_zero_is_the_original_format(
            index in any::<u64>(),
            len in 0..=SEGMENT_SIZE,
        ) {
            let keys = keys();
            let is_final = len < SEGMENT_SIZE;
            let plaintext = pattern(len);
            let mut sealed = Vec::new();
            keys.seal_segment(index, G0, is_final, &plaintext, &mut sealed);
            prop_assert_eq!(sealed.len(), sealed_len(len));
            let aad = original_aad(&keys, index, &[u8::from(is_final)], len, SEGMENT_DOMAIN);
            let opened = open_in_place(&keys.segment_key, &aad, &mut sealed);
            prop_assert_eq!(opened, Some(&plaintext[..]));
            if (1..SEGMENT_SIZE).contains(&len) {
                let tail = keys.seal_tail(index, G0, &plaintext);
                let aad = original_aad(&keys, index, &[], len, TAIL_DOMAIN);
                let (nonce, rest) = tail.split_at(NONCE_LEN);
                let (ciphertext, tag) = rest.split_at(len);
                let mut opened = ciphertext.to_vec();
                prop_assert!(open_separate_tag(&keys.tail_key, &aad, nonce, tag, &mut opened).is_some());
                prop_assert_eq!(opened, plaintext);
            }
        }

        /// Whatever the writer does, every segment it holds opens under the
        /// generation the map gives for its index, no index is ever sealed
        /// twice under one generation, and the map survives being stored.
        #[test]
        fn cuts_never_reuse_a_generation_at_an_index(
            steps in prop::collection::vec(step(), 1..40),
        ) {
            let mut generations = Generations::default();
            // The generation each live segment was sealed under, by index.
            let mut live: Vec<Generation> = Vec::new();
            let mut sealed = std::collections::HashSet::new();
            let mut tail = None;
            for step in steps {
                match step {
                    Step::Append(count) => {
                        for _ in 0..count {
                            let index = live.len() as u64;
                            let generation = generations.of(index);
                            prop_assert!(sealed.insert((index, generation)), "{index} resealed under {generation}");
                            live.push(generation);
                        }
                        tail = None;
                    }
                    Step::SealTail => {
                        let generation = generations.of(live.len() as u64);
                        generations.set_tail(generation);
                        tail = Some(generation);
                    }
                    Step::Cut(at) => {
                        let at = at.index(live.len() + 1);
                        generations.cut(at as u64);
                        live.truncate(at);
                    }
                }
                for (index, generation) in live.iter().enumerate() {
                    prop_assert_eq!(generations.of(index as u64), *generation);
                }
                if let Some(generation) = tail {
                    prop_assert_eq!(generations.tail(), generation);
                }
                prop_assert!(generations.starts().len() <= live.len() + 1);
                let json = serde_json::to_string(&generations).unwrap();
                prop_assert_eq!(serde_json::from_str::<Generations>(&json).unwrap(), generations.clone());
            }
        }

        #[test]
        fn any_bit_flip_is_detected(
            len in 0..=SEGMENT_SIZE,
            bit in any::<prop::sample::Index>(),
        ) {
            let keys = keys();
            let mut sealed = Vec::new();
            keys.seal_segment(0, G0, true, &pattern(len), &mut sealed);
            let bit = bit.index(sealed.len() * 8);
            sealed[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(is_integrity(keys.open_segment(0, G0, true, &mut sealed)));
        }
    }
}
