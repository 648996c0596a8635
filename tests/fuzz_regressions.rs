//! The fuzz targets' inputs on stable: every file in `fuzz/corpus/<target>/`
//! and `fuzz/artifacts/<target>/` (crash reproducers, kept once fixed) goes
//! through the same check the cargo-fuzz target runs (`fuzz/checks.rs`).
//! Plus property tests over the same code: a Range read through the store
//! decrypts to exactly that slice of the plaintext, and metadata survives
//! the header round trip.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method};
use proptest::prelude::*;
use strongroom::crypto::{Aead, Dek, Generation, Generations, ObjectKeys, SEGMENT_SIZE};
use strongroom::disk::{Disk, OpenMode, OsDisk};
use strongroom::store::{Layout, PlainReader, RangeRequest, parse_range};
use strongroom::tus::parse::{self as tus, Length, Metadata, Target, TusRequest};

/// A fuzz target's name and its check.
type FuzzTarget = (&'static str, fn(&[u8]));

const TARGETS: [FuzzTarget; 5] = [
    ("tus_headers", checks::check_tus_headers),
    ("tus_metadata", checks::check_metadata),
    ("range", checks::check_range),
    ("seg1_reader", checks::check_seg1_reader),
    ("config_toml", checks::check_config),
];

fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for kind in ["corpus", "artifacts"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(kind).join(target)) else {
            continue;
        };
        files.extend(entries.map(|entry| entry.expect("dir entry").path()));
    }
    files.sort();
    files
}

#[test]
fn corpora_and_reproducers_pass_their_checks() {
    let mut failed = Vec::new();
    for (target, check) in TARGETS {
        let files = inputs(target);
        assert!(!files.is_empty(), "no corpus for {target}");
        for path in files {
            let data = std::fs::read(&path).expect("fuzz input");
            if std::panic::catch_unwind(|| check(&data)).is_err() {
                failed.push(path.display().to_string());
            }
        }
    }
    assert!(
        failed.is_empty(),
        "fuzz inputs failing their check: {failed:#?}"
    );
}

/// Writes the raw-mode seg1_reader seeds: real objects sealed with the fixed
/// DEK, framed as header + records. Their nonces are random, so this is run
/// by hand (`cargo test --test main write_seg1_seeds -- --ignored`), not in CI.
#[test]
#[ignore = "writes fuzz/corpus/seg1_reader; run by hand"]
fn write_seg1_seeds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/seg1_reader");
    let raw = |aead: Aead, header: &[u8], records: &[(u8, u64, &[u8])]| {
        let mut out = vec![if aead == Aead::Aes256Gcm { 0 } else { 0x10 }];
        out.push(header.len() as u8);
        out.extend_from_slice(header);
        for &(flags, index, bytes) in records {
            out.extend([flags, index as u8]);
            out.extend_from_slice(&(bytes.len() as u32).to_be_bytes()[1..]);
            out.extend_from_slice(bytes);
        }
        out
    };
    let mut seeds = Vec::new();
    for (aead, name) in [(Aead::Aes256Gcm, "aes"), (Aead::ChaCha20Poly1305, "chacha")] {
        let keys = checks::fixed_keys(aead);
        for length in [0, 1000] {
            let plaintext = checks::object_plaintext(length);
            let file = checks::seal_object(keys, Generation::INITIAL, &plaintext);
            let (header, segment) = file.split_at(strongroom::crypto::HEADER_LEN);
            let bytes = raw(aead, header, &[(2, 0, segment)]);
            seeds.push((format!("raw-{name}-object-{length}"), bytes));
        }
        let tail = keys.seal_tail(3, Generation::INITIAL, &checks::pattern(3, 100));
        let bytes = raw(aead, keys.header_bytes(), &[(1, 3, &tail), (1, 4, &tail)]);
        seeds.push((format!("raw-{name}-tail"), bytes));
    }
    let random: Vec<u8> = (0..200u32).map(|i| (i * 97 % 256) as u8).collect();
    seeds.push((
        "raw-garbage".into(),
        raw(Aead::Aes256Gcm, &random[..64], &[(0, 0, &random)]),
    ));
    for (name, bytes) in seeds {
        checks::check_seg1_reader(&bytes);
        std::fs::write(dir.join(name), bytes).expect("seed written");
    }
}

/// Seals `plaintext` as a committed object file in `dir`, each segment under
/// the generation `generations` gives it, and opens it as the store does:
/// keys from the file's header, segments through `PlainReader` reading
/// `generations` (as it would from the object's record).
fn committed_reader(
    dir: &Path,
    plaintext: &[u8],
    aead: Aead,
    generations: Generations,
) -> PlainReader {
    let dek = Dek::generate();
    let id = [7u8; 16];
    let sealer = ObjectKeys::derive(&dek, id, aead);
    let mut sealed = sealer.header_bytes().to_vec();
    let full = plaintext.len() / SEGMENT_SIZE;
    for (index, chunk) in plaintext.chunks_exact(SEGMENT_SIZE).enumerate() {
        let generation = generations.of(index as u64);
        sealer.seal_segment(index as u64, generation, false, chunk, &mut sealed);
    }
    sealer.seal_segment(
        full as u64,
        generations.of(full as u64),
        true,
        &plaintext[full * SEGMENT_SIZE..],
        &mut sealed,
    );

    let disk = OsDisk;
    let path = dir.join("object.seg1");
    let file = disk.open(&path, OpenMode::CreateNew).expect("create");
    file.write_at(0, &sealed).expect("write");
    file.sync().expect("sync");
    let file = disk.open(&path, OpenMode::Read).expect("open");
    let mut header = [0u8; strongroom::crypto::HEADER_LEN];
    file.read_at(0, &mut header).expect("read header");
    let keys = ObjectKeys::open(&dek, id, &header).expect("header opens");
    let length = plaintext.len() as u64;
    PlainReader::new(
        file,
        Arc::new(keys),
        Layout::Committed { length },
        generations,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// A Range request, parsed as the download path parses it and streamed
    /// through `PlainReader` from a real sealed file whose segments were
    /// sealed under several write generations (cuts during the upload),
    /// yields exactly that slice of the plaintext.
    #[test]
    fn range_decrypt_equals_plaintext_slice(
        length in 0..=3 * SEGMENT_SIZE + 1,
        a in any::<prop::sample::Index>(),
        b in any::<prop::sample::Index>(),
        form in 0..3u8,
        chacha in any::<bool>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..3),
    ) {
        let plaintext = checks::object_plaintext(length);
        let aead = if chacha { Aead::ChaCha20Poly1305 } else { Aead::Aes256Gcm };
        let dir = tempfile::tempdir().expect("temp dir");
        let mut generations = Generations::default();
        let segments = length / SEGMENT_SIZE + 1;
        for cut in cuts {
            generations.cut(cut.index(segments) as u64);
        }
        let reader = committed_reader(dir.path(), &plaintext, aead, generations);

        let (x, y) = (a.index(length + 1), b.index(length + 1));
        let (first, last) = (x.min(y), x.max(y));
        let (header, expected) = match form {
            0 => (format!("bytes={first}-{last}"), first..(last + 1).min(length)),
            1 => (format!("bytes={first}-"), first..length),
            _ => (format!("bytes=-{last}"), length - last..length),
        };
        let range = match parse_range(&header, length as u64) {
            RangeRequest::Partial(range) => range,
            RangeRequest::Unsatisfiable => {
                let unsatisfiable = match form {
                    0 | 1 => first >= length,
                    _ => last == 0 || length == 0,
                };
                prop_assert!(unsatisfiable, "416 for {} of {}", header, length);
                return Ok(());
            }
            RangeRequest::Full => panic!("{header} parsed as no range"),
        };
        prop_assert_eq!(range.start..range.end, expected.start as u64..expected.end as u64);

        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        reader.stream(range, &tx);
        drop(tx);
        let mut streamed = Vec::new();
        while let Ok(chunk) = rx.try_recv() {
            streamed.extend_from_slice(&chunk.expect("segment opens"));
        }
        prop_assert_eq!(&streamed[..], &plaintext[expected]);

        let mut whole = Vec::new();
        reader
            .for_each_segment(|segment| {
                whole.extend_from_slice(segment);
                Ok(())
            })
            .expect("every segment opens");
        prop_assert_eq!(whole, plaintext);
    }

    /// Metadata built from any valid pairs comes back unchanged from a
    /// creation request carrying its encoding, along with the length.
    #[test]
    fn metadata_survives_a_creation_request(
        pairs in prop::collection::vec(
            ("[!-+\\x2D-~]{1,12}", prop::option::of(prop::collection::vec(any::<u8>(), 0..40))),
            0..8,
        ),
        length in any::<u64>(),
    ) {
        let Ok(metadata) = Metadata::from_pairs(pairs) else {
            return Ok(()); // duplicate keys
        };
        let mut headers = HeaderMap::new();
        headers.insert("tus-resumable", HeaderValue::from_static("1.0.0"));
        headers.insert("upload-length", HeaderValue::from(length));
        let encoded = HeaderValue::from_str(&metadata.encode()).expect("ascii");
        headers.insert("upload-metadata", encoded);
        let request = tus::parse(&Method::POST, &Target::Collection, &headers);
        let Ok(TusRequest::Create(create)) = request else {
            panic!("{request:?}");
        };
        prop_assert_eq!(create.length, Some(Length::Known(length)));
        checks::check_metadata(metadata.encode().as_bytes());
        prop_assert_eq!(create.metadata, metadata);
    }
}
