//! The per-target checks, shared by the cargo-fuzz targets
//! (`fuzz/fuzz_targets/*.rs`) and the stable reproducer test
//! (`tests/fuzz_regressions.rs`), which both include this file with
//! `#[path]`. Each `check_*` takes one raw fuzz input and panics when an
//! invariant fails; input that does not decode into the target's shape is
//! ignored. Only crates both sides depend on are used: strongroom, http and
//! tempfile.
//!
//! Input formats (seeds in `fuzz/corpus/<target>/` are written in them):
//! - `tus_headers`: `METHOD TARGET\n`, then `Name: value` lines, then an
//!   empty line and trailer lines. TARGET ending in an upload id is that
//!   upload, anything else the collection.
//! - `tus_metadata`: the Upload-Metadata value itself.
//! - `range`: `LENGTH\nRANGE-VALUE`.
//! - `config_toml`: the file's text.
//! - `seg1_reader`: binary, see [`check_seg1_reader`].

#![allow(dead_code)]

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::sync::OnceLock;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use strongroom::config::{self, Config};
use strongroom::crypto::{
    self, Aead, Dek, Generation, HEADER_LEN, KeyProvider as _, LocalKeyring, ObjectKeys,
    SEGMENT_SIZE, WrappedDek,
};
use strongroom::id::UploadId;
use strongroom::store::{ByteRange, RangeRequest, parse_range};
use strongroom::tus::parse::{
    self as tus, Checksum, Concat, MAX_CONCAT_PARTS, MAX_METADATA_BYTES, MAX_METADATA_PAIRS,
    Metadata, ParseError, Target, TusRequest,
};

// ---------------------------------------------------------------- tus_headers

/// The upload a target that names no valid id stands for.
const SOME_UPLOAD: [u8; 16] = [0xab; 16];

/// A request as the parser sees it.
pub struct HeaderInput {
    pub method: Method,
    pub target: Target,
    pub headers: HeaderMap,
    pub trailers: HeaderMap,
}

impl HeaderInput {
    /// Decodes the text format; `None` when the method is not a token.
    pub fn decode(data: &[u8]) -> Option<HeaderInput> {
        let mut lines = data.split(|&b| b == b'\n');
        let request_line = lines.next()?;
        let (method, target) = match request_line.iter().position(|&b| b == b' ') {
            Some(at) => (&request_line[..at], &request_line[at + 1..]),
            None => (request_line, &b""[..]),
        };
        let method = Method::from_bytes(method).ok()?;
        let last_segment = target.rsplit(|&b| b == b'/').next().unwrap_or_default();
        let target = match std::str::from_utf8(last_segment).map(str::parse::<UploadId>) {
            Ok(Ok(id)) => Target::Upload(id),
            _ if target.ends_with(b"/files") || target.is_empty() => Target::Collection,
            _ => Target::Upload(UploadId::from_bytes(SOME_UPLOAD)),
        };
        let (mut headers, mut trailers) = (HeaderMap::new(), HeaderMap::new());
        let mut in_trailers = false;
        for line in lines {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                in_trailers = true;
                continue;
            }
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let value = &line[colon + 1..];
            let value = value.strip_prefix(b" ").unwrap_or(value);
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(&line[..colon]),
                HeaderValue::from_bytes(value),
            ) else {
                continue;
            };
            let map = if in_trailers {
                &mut trailers
            } else {
                &mut headers
            };
            map.append(name, value);
        }
        Some(HeaderInput {
            method,
            target,
            headers,
            trailers,
        })
    }
}

/// `parse` on any method, target and headers, and every single-value parser
/// on every value: no panic, and each result agrees with what was sent.
pub fn check_tus_headers(data: &[u8]) {
    let Some(input) = HeaderInput::decode(data) else {
        return;
    };
    let result = tus::parse(&input.method, &input.target, &input.headers);
    if input.method == Method::OPTIONS {
        assert_eq!(
            result,
            Ok(TusRequest::Options),
            "OPTIONS is always answered"
        );
    }
    match &result {
        Err(error) => check_error_message(error),
        Ok(TusRequest::Options) => assert_eq!(input.method, Method::OPTIONS),
        Ok(request) => {
            let version = input.headers.get_all("tus-resumable");
            assert!(
                version.iter().count() > 0 && version.iter().all(|v| v == "1.0.0"),
                "accepted without Tus-Resumable: 1.0.0: {request:?}"
            );
            check_request(&input, request);
        }
    }
    for value in input.headers.values().chain(input.trailers.values()) {
        check_value_parsers(value);
    }
    match tus::parse_trailer_checksum(&input.trailers) {
        Ok(checksum) => check_checksum(&checksum),
        Err(error) => check_error_message(&error),
    }
}

fn check_request(input: &HeaderInput, request: &TusRequest) {
    let upload = |id: UploadId| assert_eq!(input.target, Target::Upload(id), "{request:?}");
    match request {
        TusRequest::Options => {}
        TusRequest::Head(id) | TusRequest::Terminate(id) => upload(*id),
        TusRequest::Create(create) => {
            assert_eq!(input.target, Target::Collection);
            check_metadata_round_trip(&create.metadata);
            match &create.concat {
                Concat::Final(parts) => {
                    assert!(create.length.is_none() && create.body.is_none());
                    check_parts(parts);
                }
                Concat::None | Concat::Partial => assert!(create.length.is_some()),
            }
            if let Some(body) = &create.body {
                check_body(&body.checksum);
            }
        }
        TusRequest::Patch(patch) => {
            upload(patch.id);
            let sent = input.headers.get("upload-offset").expect("offset was sent");
            assert_eq!(tus::parse_u64("Upload-Offset", sent), Ok(patch.offset));
            check_body(&patch.body.checksum);
        }
    }
}

fn check_body(spec: &tus::ChecksumSpec) {
    if let tus::ChecksumSpec::Header(checksum) = spec {
        check_checksum(checksum);
    }
}

fn check_checksum(checksum: &Checksum) {
    assert_eq!(checksum.digest.len(), checksum.algorithm.digest_len());
}

fn check_parts(parts: &[UploadId]) {
    assert!((1..=MAX_CONCAT_PARTS).contains(&parts.len()));
    let distinct: std::collections::HashSet<_> = parts.iter().collect();
    assert_eq!(distinct.len(), parts.len(), "duplicate parts accepted");
}

/// The parsers of single header values, each on an arbitrary value.
fn check_value_parsers(value: &HeaderValue) {
    let bytes = value.as_bytes();
    // parse_u64 against a plain model: 1 to 20 ASCII digits that fit a u64.
    let model = std::str::from_utf8(bytes)
        .ok()
        .filter(|text| (1..=20).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|text| text.parse::<u64>().ok());
    assert_eq!(
        tus::parse_u64("Upload-Length", value).ok(),
        model,
        "{value:?}"
    );
    match Checksum::parse(bytes) {
        Ok(checksum) => check_checksum(&checksum),
        Err(error) => check_error_message(&error),
    }
    match Concat::parse(bytes) {
        Ok(Concat::Final(parts)) => check_parts(&parts),
        Ok(Concat::None) => panic!("Concat::parse never yields None"),
        Ok(Concat::Partial) => assert_eq!(bytes, b"partial"),
        Err(error) => check_error_message(&error),
    }
    check_metadata(bytes);
}

/// Error messages reach clients: bounded, and no control character (every
/// quoted client byte is escaped).
fn check_error_message(error: &ParseError) {
    let message = error.to_string();
    assert!(message.len() <= 512, "{} byte message", message.len());
    assert!(
        !message.chars().any(char::is_control),
        "unescaped control character in {message:?}"
    );
}

// --------------------------------------------------------------- tus_metadata

/// `Metadata::parse` on any bytes; what parses encodes and parses back to
/// itself.
pub fn check_metadata(data: &[u8]) {
    match Metadata::parse(data) {
        Ok(metadata) => {
            assert!(data.len() <= MAX_METADATA_BYTES);
            check_metadata_round_trip(&metadata);
        }
        Err(error) => check_error_message(&error),
    }
}

fn check_metadata_round_trip(metadata: &Metadata) {
    assert!(metadata.len() <= MAX_METADATA_PAIRS);
    for (key, _) in metadata.iter() {
        assert!(!key.is_empty() && key.bytes().all(|b| b.is_ascii_graphic() && b != b','));
    }
    let encoded = metadata.encode();
    assert_eq!(
        Metadata::parse(encoded.as_bytes()).as_ref(),
        Ok(metadata),
        "{encoded:?} does not parse back"
    );
    let pairs = metadata
        .iter()
        .map(|(key, value)| (key.to_owned(), value.map(<[u8]>::to_vec)));
    assert_eq!(Metadata::from_pairs(pairs).as_ref(), Ok(metadata));
}

// ---------------------------------------------------------------------- range

/// `parse_range` on any value and length: no panic; a partial range lies
/// within the representation, and only a well-formed header (RFC 9110) yields
/// one, with the positions it names.
pub fn check_range(data: &[u8]) {
    let (first, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b""[..]),
    };
    let Some(length) = std::str::from_utf8(first)
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
    else {
        return;
    };
    let value = String::from_utf8_lossy(rest);
    let result = parse_range(&value, length);
    let spec = value.trim().strip_prefix("bytes=").map(str::trim);
    match result {
        RangeRequest::Full => {}
        RangeRequest::Unsatisfiable => assert!(spec.is_some(), "416 for {value:?}"),
        RangeRequest::Partial(range) => {
            assert!(
                range.start < range.end && range.end <= length,
                "{range:?} of {length}"
            );
            assert_eq!(range.len(), range.end - range.start);
            let (first, last) = spec
                .and_then(|spec| spec.split_once('-'))
                .expect("a partial range has the form bytes=first-last");
            // RFC 9110 positions: any run of digits; past u64 is past the end.
            let digits = |text: &str| {
                let plain = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
                plain.then(|| text.parse::<u64>().unwrap_or(u64::MAX))
            };
            let last_pos =
                (!last.is_empty()).then(|| digits(last).expect("malformed last-byte-pos"));
            match (digits(first), last_pos) {
                (Some(start), last) => {
                    assert_eq!(range.start, start);
                    let end = last.map_or(length, |last| {
                        assert!(last >= start, "last-byte-pos before first-byte-pos");
                        last.saturating_add(1).min(length)
                    });
                    assert_eq!(range.end, end);
                }
                (None, Some(suffix)) => {
                    assert!(first.is_empty(), "{value:?}");
                    assert_eq!(range, suffix_of(suffix, length));
                }
                (None, None) => panic!("{range:?} from {value:?}"),
            }
        }
    }
}

fn suffix_of(suffix: u64, length: u64) -> ByteRange {
    ByteRange {
        start: length - suffix.min(length),
        end: length,
    }
}

// ---------------------------------------------------------------- config_toml

/// `Config::parse` on any UTF-8: no panic; what it accepts passes its own
/// validation, and a syntax error names a line of the file.
pub fn check_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(Path::new("fuzz.toml"), text) {
        Ok(config) => {
            assert!(config.server.max_header_bytes.as_u64() >= 8192);
            assert!(config.server.max_connections >= 1);
            assert!(config.uploads.lock_wait <= config.server.body_idle_timeout);
        }
        Err(config::Error::Syntax { line, .. }) => {
            assert!(
                (1..=text.split('\n').count()).contains(&line),
                "line {line}"
            );
        }
        Err(_) => {}
    }
}

// ---------------------------------------------------------------- seg1_reader

/// The object every fuzz input is opened as.
pub const OBJECT_ID: [u8; 16] = *b"strongroom fuzz!";

/// A key encryption key for tests only (the ASCII of "strongroom fuzz test
/// kek, not k!"), and a random DEK wrapped under it for [`OBJECT_ID`]
/// (`nonce || ciphertext || tag`). `Dek` has no public constructor from
/// bytes, so the fixed DEK comes out of a keyring holding that KEK.
const TEST_KEK_HEX: &str = "7374726f6e67726f6f6d2066757a7a2074657374206b656b2c206e6f74206b21";
const FIXED_WRAPPED_DEK: [u8; 60] = [
    219, 78, 104, 153, 2, 22, 71, 209, 49, 238, 45, 87, 154, 136, 137, 101, 102, 139, 191, 7, 43,
    157, 83, 151, 234, 106, 120, 208, 170, 9, 98, 231, 53, 144, 9, 102, 145, 46, 77, 244, 68, 15,
    153, 247, 53, 225, 121, 106, 144, 142, 21, 244, 111, 118, 191, 105, 240, 43, 33, 10,
];

/// The DEK every seg1_reader input is opened with.
pub fn fixed_dek() -> &'static Dek {
    static DEK: OnceLock<Dek> = OnceLock::new();
    DEK.get_or_init(|| {
        let (keyring, _dir) = test_keyring();
        let wrapped = WrappedDek {
            kek: keyring.current().id().clone(),
            blob: FIXED_WRAPPED_DEK.to_vec(),
        };
        keyring
            .unwrap(&wrapped, OBJECT_ID)
            .expect("the fixed DEK unwraps")
    })
}

/// A keyring holding only the test KEK, in a temporary directory.
pub fn test_keyring() -> (LocalKeyring, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("keyring dir");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.path().join("fuzz.v1.kek"))
        .expect("key file");
    writeln!(file, "{TEST_KEK_HEX}").expect("key file written");
    let (keyring, created) = LocalKeyring::open_or_create(dir.path(), "fuzz").expect("keyring");
    assert!(created.is_none());
    (keyring, dir)
}

/// The keys of [`OBJECT_ID`] under the fixed DEK.
pub fn fixed_keys(aead: Aead) -> &'static ObjectKeys {
    static KEYS: OnceLock<[ObjectKeys; 2]> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        [Aead::Aes256Gcm, Aead::ChaCha20Poly1305]
            .map(|aead| ObjectKeys::derive(fixed_dek(), OBJECT_ID, aead))
    });
    &keys[usize::from(aead == Aead::ChaCha20Poly1305)]
}

/// The plaintext every record sealed for these tests holds: it depends on
/// the record's index, so a genuine record opened anywhere else is caught.
pub fn pattern(index: u64, len: usize) -> Vec<u8> {
    let base = (index % 251) as usize * 89;
    (0..len).map(|i| ((base + i * 31) % 251) as u8).collect()
}

/// A committed object's file: header, full segments, final segment, all
/// sealed under `generation`.
pub fn seal_object(keys: &ObjectKeys, generation: Generation, plaintext: &[u8]) -> Vec<u8> {
    let mut file = keys.header_bytes().to_vec();
    let mut chunks = plaintext.chunks_exact(SEGMENT_SIZE);
    for (index, chunk) in chunks.by_ref().enumerate() {
        keys.seal_segment(index as u64, generation, false, chunk, &mut file);
    }
    let full = plaintext.len() / SEGMENT_SIZE;
    keys.seal_segment(full as u64, generation, true, chunks.remainder(), &mut file);
    file
}

/// [`pattern`] plaintext of an object of `length` bytes: segment by segment.
pub fn object_plaintext(length: usize) -> Vec<u8> {
    let mut plaintext = Vec::with_capacity(length);
    let mut index = 0;
    while plaintext.len() < length {
        let len = (length - plaintext.len()).min(SEGMENT_SIZE);
        plaintext.extend(pattern(index, len));
        index += 1;
    }
    plaintext
}

/// Opens a committed object of `length` bytes as the store would: the file
/// must be exactly as long as the layout says, the header must open under
/// `dek`, and every segment must open in its place under `generation`.
pub fn open_object(
    dek: &Dek,
    length: u64,
    generation: Generation,
    file: &[u8],
) -> Result<Vec<u8>, String> {
    if file.len() as u64 != crypto::committed_file_len(length) {
        return Err("file length does not match the object length".into());
    }
    let keys = ObjectKeys::open(dek, OBJECT_ID, &file[..HEADER_LEN]).map_err(|e| e.to_string())?;
    let count = crypto::segment_count(length);
    let mut plaintext = Vec::new();
    for index in 0..count {
        let is_final = index + 1 == count;
        let len = if is_final {
            (length % SEGMENT_SIZE as u64) as usize
        } else {
            SEGMENT_SIZE
        };
        let start = crypto::segment_offset(index) as usize;
        let mut sealed = file[start..start + crypto::sealed_len(len)].to_vec();
        let opened = keys
            .open_segment(index, generation, is_final, &mut sealed)
            .map_err(|e| e.to_string())?;
        plaintext.extend_from_slice(opened);
    }
    Ok(plaintext)
}

/// Reads fixed-size fields off the front of an input.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).first().copied()
    }

    fn be(&mut self, n: usize) -> Option<u64> {
        let bytes = self.take(n);
        (bytes.len() == n).then(|| bytes.iter().fold(0, |acc, &b| acc << 8 | u64::from(b)))
    }
}

/// SEG1 reading. The first byte picks the mode (bit 0) and the AEAD (bit 4).
///
/// Raw mode (bit 0 clear): byte 1 is a header length, that many header
/// bytes follow, then records `flags u8, index u8, len u24, bytes` (flags
/// bit 0: tail record, bit 1: final segment). Everything is opened with the
/// fixed DEK; a header that opens must be the genuine one, and a record that
/// opens must hold [`pattern`] plaintext for its index, which only records
/// sealed by these tests do: random bytes never open.
///
/// Raw records are opened under write generation 0 (the only one sealed
/// records in the seeds have).
///
/// Structured mode (bit 0 set): bits 1-2 of byte 0 give the full segments
/// (0 to 2), bit 3 picks a tail record instead of an object, bits 5-6 the
/// write generation it is sealed under; bytes 1-2 the remaining length
/// (u16), byte 3 a tail's index. The plaintext is sealed, then up to 16
/// mutations `op u8, pos u24, val u8` are applied (see [`mutate`]); opening
/// must give the plaintext back exactly when the mutations changed nothing,
/// and fail otherwise.
pub fn check_seg1_reader(data: &[u8]) {
    let mut input = Cursor(data);
    let Some(mode) = input.byte() else {
        return;
    };
    let aead = if mode & 0x10 == 0 {
        Aead::Aes256Gcm
    } else {
        Aead::ChaCha20Poly1305
    };
    if mode & 1 == 0 {
        check_seg1_raw(aead, input);
    } else {
        check_seg1_mutated(mode, aead, input);
    }
}

fn check_seg1_raw(aead: Aead, mut input: Cursor<'_>) {
    let header_len = input.byte().unwrap_or_default();
    let header = input.take(header_len.into());
    let opened = ObjectKeys::open(fixed_dek(), OBJECT_ID, header);
    if let Ok(keys) = &opened {
        let genuine = fixed_keys(keys.aead()).header_bytes();
        assert_eq!(header, &genuine[..], "a forged header opened");
    }
    let keys = opened.as_ref().unwrap_or_else(|_| fixed_keys(aead));
    while let (Some(flags), Some(index), Some(len)) = (input.byte(), input.byte(), input.be(3)) {
        let (index, sealed) = (u64::from(index), input.take(len as usize));
        let plaintext = if flags & 1 == 0 {
            let mut copy = sealed.to_vec();
            let opened = keys.open_segment(index, Generation::INITIAL, flags & 2 != 0, &mut copy);
            opened.map(<[u8]>::to_vec)
        } else {
            keys.open_tail(index, Generation::INITIAL, sealed)
        };
        if let Ok(plaintext) = plaintext {
            assert_eq!(
                plaintext,
                pattern(index, plaintext.len()),
                "record {index} (flags {flags:#x}) opened but was not sealed here"
            );
        }
    }
}

fn check_seg1_mutated(mode: u8, aead: Aead, mut input: Cursor<'_>) {
    let full = u64::from(mode >> 1 & 3) % 3;
    let rest = input.be(2).unwrap_or_default();
    let keys = fixed_keys(aead);
    let generation = Generation(u64::from(mode >> 5 & 3));
    let mut open_generation = generation;
    if mode & 8 != 0 {
        let index = u64::from(input.byte().unwrap_or_default());
        let plaintext = pattern(index, rest.max(1) as usize);
        let sealed = keys.seal_tail(index, generation, &plaintext);
        let (mut bytes, mut open_index) = (sealed.clone(), index);
        let mut relabel = |val: u8, pos: usize| match pos % 2 {
            0 => open_index ^= u64::from(val),
            _ => open_generation.0 ^= u64::from(val),
        };
        mutate(&mut bytes, &mut input, None, &mut relabel);
        let opened = keys.open_tail(open_index, open_generation, &bytes);
        if bytes == sealed && open_index == index && open_generation == generation {
            assert_eq!(opened.expect("untouched tail opens"), plaintext);
        } else {
            assert!(opened.is_err(), "tampered tail record opened");
        }
    } else {
        let length = full * SEGMENT_SIZE as u64 + rest;
        let plaintext = object_plaintext(length as usize);
        let file = seal_object(keys, generation, &plaintext);
        let (mut bytes, mut claimed) = (file.clone(), length);
        let mut relabel = |val: u8, pos: usize| match pos % 4 {
            3 => open_generation.0 ^= u64::from(val),
            byte => claimed ^= u64::from(val) << (8 * byte),
        };
        mutate(&mut bytes, &mut input, Some(aead), &mut relabel);
        let opened = open_object(fixed_dek(), claimed, open_generation, &bytes);
        if bytes == file && claimed == length && open_generation == generation {
            assert!(opened == Ok(plaintext), "untouched object does not open");
        } else {
            assert!(opened.is_err(), "tampered object opened");
        }
    }
}

/// Applies the mutations left in `input` to `bytes`. Ops (op % 7): 0 xor a
/// byte, 1 truncate, 2 insert a byte, 3 remove a byte, 4 swap two full
/// segments, 5 `relabel` (claim another length, index or generation), 6 put in the
/// genuine header of the other AEAD. `aead` is `None` for a tail record.
fn mutate(
    bytes: &mut Vec<u8>,
    input: &mut Cursor<'_>,
    aead: Option<Aead>,
    relabel: &mut dyn FnMut(u8, usize),
) {
    for _ in 0..16 {
        let (Some(op), Some(pos), Some(val)) = (input.byte(), input.be(3), input.byte()) else {
            return;
        };
        let pos = pos as usize % (bytes.len() + 1);
        match op % 7 {
            0 if pos < bytes.len() => bytes[pos] ^= val,
            1 => bytes.truncate(pos),
            2 => bytes.insert(pos, val),
            3 if pos < bytes.len() => drop(bytes.remove(pos)),
            4 if aead.is_some() => {
                let sealed = crypto::SEALED_SEGMENT_LEN;
                let record = |i: usize| HEADER_LEN + i * sealed..HEADER_LEN + (i + 1) * sealed;
                let (a, b) = (record(pos % 3), record(usize::from(val) % 3));
                if a != b && a.end.max(b.end) <= bytes.len() {
                    let copy = bytes[a.clone()].to_vec();
                    bytes.copy_within(b.clone(), a.start);
                    bytes[b].copy_from_slice(&copy);
                }
            }
            5 => relabel(val, pos),
            6 => {
                if let (Some(aead), true) = (aead, bytes.len() >= HEADER_LEN) {
                    let other = match aead {
                        Aead::Aes256Gcm => Aead::ChaCha20Poly1305,
                        Aead::ChaCha20Poly1305 => Aead::Aes256Gcm,
                    };
                    bytes[..HEADER_LEN].copy_from_slice(fixed_keys(other).header_bytes());
                }
            }
            _ => {}
        }
    }
}
