//! The shipped plugins as the appliance runs them: the components in
//! `plugins/dist/` (built by plugins/build.sh), loaded by the real sandbox
//! with the limits and settings of policies/default.toml, over a corpus of
//! real files built here. Every file is fed in the chunk sizes uploads arrive
//! in (64 KiB and 1 MiB groups) and in an odd pattern whose boundaries fall
//! inside magic numbers, the 64 KiB typing head and the scanner's 8 KiB
//! overlap; the outcome must be exactly the same whatever the chunking.
//!
//! `plugins/*/tests` check the same rules natively through the SDK's mock
//! host. These check what ships: the Wasm build, the host's SHA-256, Ed25519
//! and tenant statistics, and the outcome as the host reads it back.

use std::fmt;
use std::io::Read as _;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};
use strongroom::policy::Policy;
use strongroom::sandbox::{
    FeedResult, Finding, Outcome, Plugin, PluginLimits, PluginSpec, Sandbox, SandboxConfig,
    Severity, Summary, TenantStats, UploadMeta, Verdict,
};

const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

// --- the host ------------------------------------------------------------------

/// One engine for the module, as an appliance has one. Its artifact cache
/// lives in the target directory, so each plugin is compiled once (a second
/// of a 2-core machine) and later runs map the artifact; the cache is keyed
/// by the engine's compatibility hash, so a changed engine recompiles.
fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| {
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-corpus");
        let mut config = SandboxConfig::new(cache);
        // Tests run in parallel; each holds one or two inspections at a time.
        config.max_inspections = 32;
        config.max_memory = 128 << 20;
        Sandbox::new(config).expect("sandbox")
    })
}

/// The shipped policy, as the appliance reads it.
fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/default.toml");
        Policy::load(&path).unwrap_or_else(|err| panic!("{err}"))
    })
}

/// A shipped plugin with the default policy's limits and config table, the
/// keys of `overrides` replacing the policy's. Pinned to the built file.
fn shipped(name: &str, overrides: Value) -> Arc<Plugin> {
    let entry = policy()
        .plugins
        .get(name)
        .unwrap_or_else(|| panic!("policies/default.toml defines no plugin {name}"));
    let mut config: Value = serde_json::from_str(&entry.config_json).expect("config is JSON");
    if let (Some(table), Value::Object(overrides)) = (config.as_object_mut(), overrides) {
        table.extend(overrides);
    }
    let wasm = std::fs::read(&entry.path).unwrap_or_else(|err| {
        panic!(
            "{}: {err}: run plugins/build.sh first (it builds the plugins these tests load)",
            entry.path.display()
        )
    });
    let spec = PluginSpec {
        name: name.into(),
        wasm: entry.path.clone(),
        sha256: strongroom::crypto::sha256(&wasm),
        config_json: config.to_string(),
        limits: PluginLimits {
            deadline: entry.deadline,
            memory: entry.memory_limit,
            ..PluginLimits::default()
        },
    };
    // One load at a time, so parallel tests wait for the first compile and
    // then map its artifact instead of compiling the same plugin twice.
    static LOADING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = LOADING.lock().unwrap_or_else(PoisonError::into_inner);
    sandbox()
        .load(spec)
        .unwrap_or_else(|err| panic!("loading {name}: {err}"))
}

/// How an upload's bytes reach the plugins.
#[derive(Debug, Clone, Copy)]
struct Chunking {
    name: &'static str,
    /// Piece sizes, repeated until the upload ends.
    sizes: &'static [usize],
}

const CHUNKINGS: [Chunking; 3] = [
    Chunking {
        name: "64 KiB chunks",
        sizes: &[64 * KIB],
    },
    Chunking {
        name: "1 MiB chunks",
        sizes: &[MIB],
    },
    // A 1-byte first chunk splits every magic number; the others straddle
    // the typing head (64 KiB) and the scanner's overlap (8 KiB).
    Chunking {
        name: "odd chunks",
        sizes: &[1, 7, 8_191, 65_537, 4_093],
    },
];

impl Chunking {
    fn pieces(self, len: usize) -> Vec<Range<usize>> {
        let mut pieces = Vec::new();
        let mut start = 0;
        for &size in self.sizes.iter().cycle() {
            if start >= len {
                break;
            }
            let end = (start + size).min(len);
            pieces.push(start..end);
            start = end;
        }
        pieces
    }
}

impl fmt::Display for Chunking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// What one inspection came to.
#[derive(Debug)]
struct Run {
    outcome: Outcome,
    /// Bytes passed before the plugin decided or had enough (else all).
    fed: usize,
    /// Decided during `feed`: a reject the host acts on before the upload ends.
    early: bool,
    /// Calls that entered Wasm: instantiation, each feed, finish.
    calls: u32,
}

fn summary(data: &[u8]) -> Summary {
    Summary {
        total_bytes: data.len() as u64,
        sha256: strongroom::crypto::sha256(data),
    }
}

/// Inspects `data` as the host does: feeds pieces until the plugin decides
/// or has enough, then finishes with the natively computed summary.
async fn inspect(
    plugin: &Arc<Plugin>,
    mut meta: UploadMeta,
    stats: TenantStats,
    data: &[u8],
    chunking: Chunking,
) -> Run {
    meta.declared_length = Some(data.len() as u64);
    let mut inspection = sandbox().start(plugin, meta, stats).await;
    let bytes = Bytes::copy_from_slice(data);
    let (mut fed, mut decided) = (0, None);
    for piece in chunking.pieces(data.len()) {
        fed = piece.end;
        match inspection.feed(bytes.slice(piece)).await {
            FeedResult::NeedMore => {}
            FeedResult::Enough => break,
            FeedResult::Decided(outcome) => {
                decided = Some(outcome);
                break;
            }
            FeedResult::Failed(failure) => {
                panic!("{} failed with {chunking}: {failure:?}", plugin.name())
            }
        }
    }
    let outcome = inspection
        .finish(summary(data))
        .await
        .unwrap_or_else(|failure| panic!("{} failed in finish: {failure:?}", plugin.name()));
    if let Some(decided) = &decided {
        assert_eq!(&outcome, decided, "finish repeats the early decision");
    }
    Run {
        outcome,
        fed,
        early: decided.is_some(),
        calls: inspection.stats().calls,
    }
}

/// Inspects `data` in every chunking; each outcome must be `expected`.
async fn expect(
    plugin: &Arc<Plugin>,
    meta: &UploadMeta,
    stats: &TenantStats,
    data: &[u8],
    expected: &Outcome,
) -> Vec<(Chunking, Run)> {
    let mut runs = Vec::new();
    for chunking in CHUNKINGS {
        let run = inspect(plugin, meta.clone(), stats.clone(), data, chunking).await;
        assert_eq!(
            &run.outcome,
            expected,
            "{} on {:?} ({} bytes, {chunking})",
            plugin.name(),
            meta.declared_name,
            data.len()
        );
        runs.push((chunking, run));
    }
    runs
}

fn upload(name: &str, content_type: &str) -> UploadMeta {
    UploadMeta {
        tenant: "acme".into(),
        upload_id: format!("corpus-{name}"),
        declared_name: Some(name.into()),
        declared_content_type: (!content_type.is_empty()).then(|| content_type.into()),
        ..UploadMeta::default()
    }
}

fn signed(mut meta: UploadMeta, attributes: &[(&str, &str)]) -> UploadMeta {
    meta.attributes = attributes
        .iter()
        .map(|(key, value)| ((*key).into(), (*value).into()))
        .collect();
    meta
}

fn outcome(verdict: Verdict, findings: Vec<Finding>, labels: &[(&str, &str)]) -> Outcome {
    Outcome {
        verdict,
        findings,
        labels: labels
            .iter()
            .map(|(key, value)| ((*key).into(), (*value).into()))
            .collect(),
    }
}

fn finding(rule: &str, severity: Severity, offset: Option<usize>, detail: &str) -> Finding {
    Finding {
        rule: rule.into(),
        severity,
        offset: offset.map(|o| o as u64),
        detail: detail.into(),
    }
}

fn reject(code: &str, message: &str) -> Verdict {
    Verdict::Reject {
        code: code.into(),
        message: message.into(),
    }
}

fn position(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
        .expect("needle present")
}

// --- the corpus ------------------------------------------------------------------

const PROSE: &[u8] =
    b"The quarterly figures show steady growth across all regions, with costs flat. ";

/// English text: the filler that makes files span several chunks.
fn prose(len: usize) -> Vec<u8> {
    PROSE.iter().copied().cycle().take(len).collect()
}

/// Deterministic bytes that look random (xorshift64*).
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A one-page PDF with a font and a correct cross-reference table; comment
/// lines in its content stream make it at least `filler` bytes.
fn pdf(filler: usize) -> Vec<u8> {
    let mut content = String::from("BT /F1 12 Tf 20 100 Td (Quarterly report) Tj ET\n");
    while content.len() < filler {
        content.push_str(
            "% The quarterly figures show steady growth across all regions, with costs flat.\n",
        );
    }
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] \
         /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>"
            .to_owned(),
        format!(
            "<< /Length {} >>\nstream\n{content}\nendstream",
            content.len()
        ),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

/// A valid 1x1 grey PNG with a `filler`-byte comment, and `hidden` bytes
/// (if any) in a private ancillary chunk after it.
fn png(filler: usize, hidden: &[u8]) -> Vec<u8> {
    fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut out = (data.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc32(&[&kind[..], data].concat()).to_be_bytes());
        out
    }
    let ihdr = [0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0];
    // zlib: one stored block holding the scanline [filter 0, pixel 0x80].
    let idat = [
        0x78, 0x01, 0x01, 0x02, 0x00, 0xfd, 0xff, 0x00, 0x80, 0x00, 0x82, 0x00, 0x81,
    ];
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(chunk(b"IHDR", &ihdr));
    out.extend(chunk(b"IDAT", &idat));
    out.extend(chunk(
        b"tEXt",
        &[&b"Comment\0"[..], &prose(filler)].concat(),
    ));
    if !hidden.is_empty() {
        out.extend(chunk(b"prVt", hidden));
    }
    out.extend(chunk(b"IEND", &[]));
    out
}

/// A baseline 1x1 grey JFIF: comment segments of `filler` bytes, a flat
/// quantisation table, one-code Huffman tables and a one-block scan (DC
/// difference 0, then end of block).
fn jpeg(filler: usize) -> Vec<u8> {
    fn segment(marker: u8, data: &[u8]) -> Vec<u8> {
        let mut out = vec![0xff, marker];
        out.extend_from_slice(&(data.len() as u16 + 2).to_be_bytes());
        out.extend_from_slice(data);
        out
    }
    let mut out = vec![0xff, 0xd8];
    out.extend(segment(0xe0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"));
    for comment in prose(filler).chunks(65_533) {
        out.extend(segment(0xfe, comment));
    }
    out.extend(segment(0xdb, &[&[0u8][..], &[1; 64]].concat()));
    out.extend(segment(0xc0, &[8, 0, 1, 0, 1, 1, 1, 0x11, 0]));
    let one_code = |class: u8| [&[class, 1][..], &[0; 15], &[0]].concat();
    out.extend(segment(0xc4, &one_code(0x00)));
    out.extend(segment(0xc4, &one_code(0x10)));
    out.extend(segment(0xda, &[1, 1, 0x00, 0, 63, 0]));
    // Codes '0' (DC) and '0' (EOB), padded with ones; then end of image.
    out.extend_from_slice(&[0x3f, 0xff, 0xd9]);
    out
}

/// A 1x1 GIF89a with a `filler`-byte comment extension.
fn gif(filler: usize) -> Vec<u8> {
    let mut out = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff".to_vec();
    out.extend_from_slice(&[0x21, 0xfe]);
    for block in prose(filler).chunks(255) {
        out.push(block.len() as u8);
        out.extend_from_slice(block);
    }
    out.push(0);
    out.extend_from_slice(b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00\x3b");
    out
}

/// A gzip member whose deflate stream is stored blocks.
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    let blocks: Vec<&[u8]> = data.chunks(0xffff).collect();
    for (i, block) in blocks.iter().enumerate() {
        out.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// A ZIP entry: stored honestly (`declared: None`), or deflated with a
/// declared uncompressed size the data need not match (ZIP64 at 4 GiB).
struct Entry<'a> {
    name: &'a str,
    data: &'a [u8],
    declared: Option<u64>,
}

impl<'a> Entry<'a> {
    fn stored(name: &'a str, data: &'a [u8]) -> Self {
        Entry {
            name,
            data,
            declared: None,
        }
    }
}

/// A ZIP with local headers, data, central directory and end record (ZIP64
/// records when needed). `overlapping` points every central entry at the
/// first local header, as the overlapping-files bomb does.
fn zip(entries: &[Entry<'_>], overlapping: bool) -> Vec<u8> {
    const SATURATED: u32 = 0xffff_ffff;
    let mut out = Vec::new();
    let mut central = Vec::new();
    let mut zip64 = false;
    for entry in entries {
        let offset = if overlapping { 0 } else { out.len() as u32 };
        let (method, crc, uncompressed) = match entry.declared {
            None => (0u16, crc32(entry.data), entry.data.len() as u64),
            Some(declared) => (8, 0, declared),
        };
        let big = uncompressed >= u64::from(SATURATED);
        zip64 |= big;
        let (compressed32, uncompressed32, extra) = if big {
            let mut extra = vec![1, 0, 16, 0];
            extra.extend_from_slice(&uncompressed.to_le_bytes());
            extra.extend_from_slice(&(entry.data.len() as u64).to_le_bytes());
            (SATURATED, SATURATED, extra)
        } else {
            (entry.data.len() as u32, uncompressed as u32, Vec::new())
        };
        let version: u16 = if big { 45 } else { 20 };
        // Shared by the local and central headers: version needed, flags,
        // method, time and date, CRC, sizes, name and extra lengths.
        let common = |out: &mut Vec<u8>| {
            out.extend_from_slice(&version.to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(&method.to_le_bytes());
            out.extend_from_slice(&[0, 0, 0x21, 0]);
            out.extend_from_slice(&crc.to_le_bytes());
            out.extend_from_slice(&compressed32.to_le_bytes());
            out.extend_from_slice(&uncompressed32.to_le_bytes());
            out.extend_from_slice(&(entry.name.len() as u16).to_le_bytes());
            out.extend_from_slice(&(extra.len() as u16).to_le_bytes());
        };
        out.extend_from_slice(b"PK\x03\x04");
        common(&mut out);
        out.extend_from_slice(entry.name.as_bytes());
        out.extend_from_slice(&extra);
        out.extend_from_slice(entry.data);
        central.extend_from_slice(b"PK\x01\x02");
        central.extend_from_slice(&(0x0300 | version).to_le_bytes());
        common(&mut central);
        central.extend_from_slice(&[0; 6]); // comment length, disk, internal attributes
        central.extend_from_slice(&(0o100644u32 << 16).to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(entry.name.as_bytes());
        central.extend_from_slice(&extra);
    }
    let cd_offset = out.len() as u64;
    out.extend_from_slice(&central);
    let count = entries.len() as u64;
    if zip64 {
        let record = out.len() as u64;
        out.extend_from_slice(b"PK\x06\x06");
        out.extend_from_slice(&44u64.to_le_bytes());
        out.extend_from_slice(&[45, 3, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&(central.len() as u64).to_le_bytes());
        out.extend_from_slice(&cd_offset.to_le_bytes());
        out.extend_from_slice(b"PK\x06\x07\0\0\0\0");
        out.extend_from_slice(&record.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
    }
    out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
    let count16 = if zip64 { 0xffff } else { count as u16 };
    out.extend_from_slice(&count16.to_le_bytes());
    out.extend_from_slice(&count16.to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    let offset32 = if zip64 { SATURATED } else { cd_offset as u32 };
    out.extend_from_slice(&offset32.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// A DOS header pointing at a PE header, with the stub text linkers write.
fn pe() -> Vec<u8> {
    let mut v = vec![0u8; 0x200];
    v[..2].copy_from_slice(b"MZ");
    v[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
    v[0x4e..0x4e + 38].copy_from_slice(b"This program cannot be run in DOS mode");
    v[0x80..0x84].copy_from_slice(b"PE\0\0");
    v
}

/// The first 64 KiB of our own binary: a real ELF executable's head.
fn elf_head() -> Vec<u8> {
    let mut head = vec![0u8; 64 * KIB];
    std::fs::File::open(env!("CARGO_BIN_EXE_strongroom"))
        .and_then(|mut file| file.read_exact(&mut head))
        .expect("own binary readable");
    head
}

// --- content-inspector -------------------------------------------------------------

/// A corpus file: name, declared type, bytes, labels beyond `detected-type`.
type CorpusFile<'a> = (&'a str, &'a str, Vec<u8>, &'a [(&'a str, &'a str)]);

#[tokio::test]
async fn inspector_accepts_real_files_with_their_type() {
    let plugin = shipped("content-inspector", json!({}));
    let report = prose(1_200_000);
    let bundle = zip(
        &[
            Entry::stored("report.txt", &report),
            Entry::stored("README.md", b"# Bundle\n"),
            Entry::stored("data/table.csv", b"region,growth\nnorth,3\n"),
        ],
        false,
    );
    let uncompressed = (report.len() + 9 + 22).to_string();
    let corpus: [CorpusFile; 6] = [
        ("report.pdf", "application/pdf", pdf(1_200_000), &[]),
        ("pixel.png", "image/png", png(300_000, b""), &[]),
        ("photo.jpg", "image/jpeg", jpeg(300_000), &[]),
        ("spinner.gif", "image/gif", gif(300_000), &[]),
        (
            "bundle.zip",
            "application/zip",
            bundle,
            &[
                ("zip-entries", "3"),
                ("zip-uncompressed-bytes", uncompressed.as_str()),
            ],
        ),
        ("logs.txt.gz", "application/gzip", gzip(&report), &[]),
    ];
    let types = ["pdf", "png", "jpeg", "gif", "zip", "gzip"];
    for ((name, content_type, data, extra), detected) in corpus.iter().zip(types) {
        let mut labels = vec![("detected-type", detected)];
        labels.extend_from_slice(extra);
        let expected = outcome(Verdict::Accept, vec![], &labels);
        let meta = upload(name, content_type);
        for (chunking, run) in
            expect(&plugin, &meta, &TenantStats::default(), data, &expected).await
        {
            // Every byte is read (a signature may be anywhere): instantiate,
            // each piece, finish.
            let pieces = chunking.pieces(data.len()).len() as u32;
            assert!(!run.early, "{name} with {chunking}");
            assert_eq!(run.fed, data.len(), "{name} with {chunking}");
            assert_eq!(run.calls, 1 + pieces + 1, "{name} with {chunking}");
        }
    }
}

#[tokio::test]
async fn inspector_quarantines_an_elf_named_invoice_pdf() {
    let plugin = shipped("content-inspector", json!({}));
    let data = elf_head();
    let claims = "was named 'invoice.pdf' and was declared as 'application/pdf'";
    // The default policy sets no mismatch_action: the plugin's default,
    // quarantine; executables make the finding high.
    let expected = outcome(
        Verdict::Quarantine(format!("the content is elf but {claims}")),
        vec![finding("type-mismatch", Severity::High, None, claims)],
        &[("detected-type", "elf")],
    );
    let meta = upload("invoice.pdf", "application/pdf");
    expect(&plugin, &meta, &TenantStats::default(), &data, &expected).await;

    // The same ELF, honestly named, is just an ELF.
    let honest = outcome(Verdict::Accept, vec![], &[("detected-type", "elf")]);
    let meta = upload("strongroom", "application/x-executable");
    expect(&plugin, &meta, &TenantStats::default(), &data, &honest).await;
}

fn eicar_rejection(offset: usize) -> Outcome {
    outcome(
        reject(
            "malware-signature",
            "the upload contains a malware signature (EICAR test file)",
        ),
        vec![finding(
            "eicar",
            Severity::Critical,
            Some(offset),
            "EICAR anti-malware test signature",
        )],
        &[("detected-type", "text")],
    )
}

#[tokio::test]
async fn inspector_rejects_eicar_split_across_two_chunks_at_every_point() {
    let plugin = shipped("content-inspector", json!({}));
    for chunk in [64 * KIB, MIB] {
        let clean = prose(3 * chunk);
        let mut data = clean.clone();
        for split in 1..EICAR.len() {
            // `split` bytes of the signature end the first chunk, the rest
            // starts the second.
            let at = chunk - split;
            data[at..at + EICAR.len()].copy_from_slice(EICAR);
            let piece = |n: usize| Bytes::copy_from_slice(&data[n * chunk..(n + 1) * chunk]);
            let meta = upload("notes.txt", "text/plain");
            let mut inspection = sandbox().start(&plugin, meta, TenantStats::default()).await;
            let context = format!(
                "{split} of {} bytes in the first {chunk}-byte chunk",
                EICAR.len()
            );
            assert_eq!(
                inspection.feed(piece(0)).await,
                FeedResult::NeedMore,
                "{context}"
            );
            let expected = eicar_rejection(at);
            assert_eq!(
                inspection.feed(piece(1)).await,
                FeedResult::Decided(expected.clone()),
                "{context}"
            );
            // Decided by the second chunk: the third never reaches Wasm.
            assert_eq!(
                inspection.feed(piece(2)).await,
                FeedResult::Decided(expected.clone()),
                "{context}"
            );
            assert_eq!(inspection.finish(summary(&data)).await, Ok(expected));
            assert_eq!(inspection.stats().calls, 1 + 2, "{context}");
            data[at..at + EICAR.len()].copy_from_slice(&clean[at..at + EICAR.len()]);
        }
    }
}

#[tokio::test]
async fn inspector_rejects_eicar_at_the_very_end_in_finish() {
    let plugin = shipped("content-inspector", json!({}));
    let mut data = prose(300_000);
    data.extend_from_slice(EICAR);
    let meta = upload("notes.txt", "text/plain");
    for (chunking, run) in expect(
        &plugin,
        &meta,
        &TenantStats::default(),
        &data,
        &eicar_rejection(300_000),
    )
    .await
    {
        // The last 8 KiB are judged only when the upload ends.
        assert!(!run.early, "{chunking}");
        assert_eq!(run.fed, data.len(), "{chunking}");
    }

    // The classic test file: the signature alone.
    let meta = upload("eicar.com", "application/octet-stream");
    for (chunking, run) in expect(
        &plugin,
        &meta,
        &TenantStats::default(),
        EICAR,
        &eicar_rejection(0),
    )
    .await
    {
        assert!(!run.early, "{chunking}");
    }
}

#[tokio::test]
async fn inspector_flags_executables_and_archives_hidden_in_documents() {
    let plugin = shipped("content-inspector", json!({}));

    // A PE inside a private PNG chunk, 300 KB in.
    let data = png(300_000, &pe());
    let at = position(&data, b"MZ");
    let header = format!("a Windows PE executable header inside a png at offset {at}");
    let stub = format!(
        "a Windows executable stub inside a png at offset {}",
        at + 0x4e
    );
    let expected = outcome(
        Verdict::Quarantine(format!("the file hides {header}")),
        vec![
            finding("polyglot", Severity::High, Some(at), &header),
            finding("polyglot", Severity::High, Some(at + 0x4e), &stub),
        ],
        &[("detected-type", "png")],
    );
    let meta = upload("cat.png", "image/png");
    expect(&plugin, &meta, &TenantStats::default(), &data, &expected).await;

    // A real ELF appended to a PDF. Its later bytes vary by build, so only
    // the first finding (the ELF header) is pinned.
    let mut data = pdf(300_000);
    let at = data.len();
    data.extend(elf_head());
    let hides = format!("an ELF executable header inside a pdf at offset {at}");
    for chunking in CHUNKINGS {
        let meta = upload("statement.pdf", "application/pdf");
        let run = inspect(&plugin, meta, TenantStats::default(), &data, chunking).await;
        let found = &run.outcome;
        assert_eq!(
            found.verdict,
            Verdict::Quarantine(format!("the file hides {hides}")),
            "{chunking}"
        );
        assert_eq!(
            found.findings.first(),
            Some(&finding("polyglot", Severity::High, Some(at), &hides)),
            "{chunking}"
        );
        assert!(
            found.findings.iter().all(|f| f.rule == "polyglot"),
            "{chunking}: {found:?}"
        );
        assert_eq!(
            found.labels,
            [("detected-type".to_owned(), "pdf".to_owned())],
            "{chunking}"
        );
    }

    // A ZIP appended to a PDF: quarantined by default, rejected when the
    // policy says so.
    let mut data = pdf(300_000);
    let at = data.len();
    data.extend(zip(&[Entry::stored("payload.js", b"alert(1)")], false));
    let hides = format!("a ZIP archive of 1 entries appended to a pdf at offset {at}");
    let findings = vec![finding("polyglot", Severity::High, Some(at), &hides)];
    let message = format!("the file hides {hides}");
    let meta = upload("statement.pdf", "application/pdf");
    let quarantined = outcome(
        Verdict::Quarantine(message.clone()),
        findings.clone(),
        &[("detected-type", "pdf")],
    );
    expect(&plugin, &meta, &TenantStats::default(), &data, &quarantined).await;
    let strict = shipped("content-inspector", json!({"polyglot_action": "reject"}));
    let rejected = outcome(
        reject("polyglot", &message),
        findings,
        &[("detected-type", "pdf")],
    );
    expect(&strict, &meta, &TenantStats::default(), &data, &rejected).await;
}

#[tokio::test]
async fn inspector_rejects_zip_bombs_from_the_central_directory() {
    let plugin = shipped("content-inspector", json!({}));
    // Every bomb's "compressed" data is 0xff bytes, a reserved deflate block
    // type: inflating any of it fails at once. The verdicts below can only
    // come from the declared sizes and offsets in the central directory.
    let garbage = vec![0xffu8; 20_000];
    let filler = prose(1_100_000);
    let bomb = |reason: &str, entries: &str, uncompressed: &str| {
        outcome(
            reject(
                "zip-bomb",
                &format!("the archive looks like a decompression bomb: {reason}"),
            ),
            vec![finding("zip-bomb", Severity::Critical, None, reason)],
            &[
                ("detected-type", "zip"),
                ("zip-entries", entries),
                ("zip-uncompressed-bytes", uncompressed),
            ],
        )
    };

    // One entry declaring 2 GiB from 20 000 bytes (107 374:1, the policy
    // allows 100:1), behind 1.1 MB of honest data.
    let data = zip(
        &[
            Entry::stored("readme.txt", &filler),
            Entry {
                name: "zeros.bin",
                data: &garbage,
                declared: Some(2 << 30),
            },
        ],
        false,
    );
    let total = (filler.len() as u64 + (2 << 30)).to_string();
    let expected = bomb(
        "entry 'zeros.bin' expands 107374:1, limit 100:1",
        "2",
        &total,
    );
    let meta = upload("backup.zip", "application/zip");
    for (chunking, run) in expect(&plugin, &meta, &TenantStats::default(), &data, &expected).await {
        assert!(!run.early, "judged at the end, {chunking}");
    }

    // ZIP64: 5 TiB declared from 1000 bytes, past the 4 GiB total.
    let data = zip(
        &[
            Entry::stored("readme.txt", b"nothing to see\n"),
            Entry {
                name: "huge.bin",
                data: &garbage[..1000],
                declared: Some(5 << 40),
            },
        ],
        false,
    );
    let total = (5u64 << 40) + 15;
    let reason = format!("declares {total} bytes uncompressed, limit 4294967296");
    let expected = bomb(&reason, "2", &total.to_string());
    expect(&plugin, &meta, &TenantStats::default(), &data, &expected).await;

    // Overlapping entries: three names for the same bytes.
    let entry = |name| Entry::stored(name, &garbage[..1000]);
    let data = zip(&[entry("kernel"), entry("a"), entry("b")], true);
    let expected = bomb("2 entries overlap other entries' data", "3", "3000");
    expect(&plugin, &meta, &TenantStats::default(), &data, &expected).await;
}

// --- provenance -----------------------------------------------------------------------

fn keypair() -> Ed25519KeyPair {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("key generated");
    Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key parsed")
}

fn public_key(pair: &Ed25519KeyPair) -> String {
    BASE64.encode(pair.public_key().as_ref())
}

/// The shipped provenance plugin trusting `release` under that key id.
fn provenance(release: &Ed25519KeyPair, required: bool) -> Arc<Plugin> {
    shipped(
        "provenance",
        json!({"trusted_keys": {"release": public_key(release)}, "required": required}),
    )
}

/// What a plain signature covers: the host-computed SHA-256 and size.
fn statement(data: &[u8]) -> String {
    format!(
        "strongroom-provenance-v1\n{}\n{}\n",
        hex::encode(strongroom::crypto::sha256(data)),
        data.len()
    )
}

fn sign_statement(pair: &Ed25519KeyPair, data: &[u8]) -> String {
    BASE64.encode(pair.sign(statement(data).as_bytes()).as_ref())
}

const IN_TOTO: &str = "application/vnd.in-toto+json";

/// A DSSE envelope (base64, as the `dsse` attribute carries it) over an
/// in-toto Statement v1 whose one subject has `data`'s SHA-256.
fn dsse(pair: &Ed25519KeyPair, keyid: &str, data: &[u8]) -> String {
    let payload = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{
            "name": "release.tar.gz",
            "digest": {"sha256": hex::encode(strongroom::crypto::sha256(data))},
        }],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {},
    })
    .to_string();
    // DSSE's pre-authentication encoding.
    let pae = format!(
        "DSSEv1 {} {IN_TOTO} {} {payload}",
        IN_TOTO.len(),
        payload.len()
    );
    let envelope = json!({
        "payloadType": IN_TOTO,
        "payload": BASE64.encode(&payload),
        "signatures": [{"keyid": keyid, "sig": BASE64.encode(pair.sign(pae.as_bytes()).as_ref())}],
    });
    BASE64.encode(envelope.to_string())
}

fn verified(method: &str) -> Outcome {
    outcome(
        Verdict::Accept,
        vec![],
        &[
            ("provenance", "verified"),
            ("provenance-signer", "release"),
            ("provenance-method", method),
        ],
    )
}

fn invalid(method: &str, reason: &str) -> Outcome {
    outcome(
        reject(
            "provenance-invalid",
            &format!("the provenance signature is invalid: {reason}"),
        ),
        vec![finding("provenance-invalid", Severity::High, None, reason)],
        &[("provenance", "invalid"), ("provenance-method", method)],
    )
}

/// Runs provenance in every chunking: it reads no content, so it has
/// enough after the first chunk and decides in `finish`.
async fn expect_provenance(
    plugin: &Arc<Plugin>,
    meta: UploadMeta,
    data: &[u8],
    expected: &Outcome,
) {
    for (chunking, run) in expect(plugin, &meta, &TenantStats::default(), data, expected).await {
        let first = chunking.pieces(data.len())[0].end;
        assert_eq!(run.fed, first, "{chunking}");
        assert_eq!(run.calls, 1 + 1 + 1, "{chunking}");
    }
}

#[tokio::test]
async fn provenance_accepts_a_statement_signed_by_a_trusted_key() {
    let release = keypair();
    let data = gzip(&prose(300_000));
    let signature = sign_statement(&release, &data);
    let meta = signed(
        upload("release.tar.gz", "application/gzip"),
        &[("signer", "release"), ("signature", signature.as_str())],
    );
    let plugin = provenance(&release, true);
    expect_provenance(&plugin, meta.clone(), &data, &verified("ed25519-statement")).await;

    // The same key as `openssl pkey -pubout` prints it (SPKI DER).
    let mut spki = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    spki.extend_from_slice(release.public_key().as_ref());
    let plugin = shipped(
        "provenance",
        json!({"trusted_keys": {"release": BASE64.encode(&spki)}, "required": true}),
    );
    expect_provenance(&plugin, meta, &data, &verified("ed25519-statement")).await;
}

#[tokio::test]
async fn provenance_passes_unsigned_uploads_with_a_finding_unless_required() {
    let release = keypair();
    let data = prose(100_000);
    let meta = upload("notes.txt", "text/plain");
    let unsigned = outcome(
        Verdict::Accept,
        vec![finding(
            "provenance-unsigned",
            Severity::Info,
            None,
            "no signature or dsse metadata",
        )],
        &[("provenance", "unsigned")],
    );
    // The shipped policy: no keys, required = false.
    expect_provenance(
        &shipped("provenance", json!({})),
        meta.clone(),
        &data,
        &unsigned,
    )
    .await;
    expect_provenance(&provenance(&release, false), meta.clone(), &data, &unsigned).await;

    let required = outcome(
        reject(
            "provenance-required",
            "a provenance signature is required for this upload",
        ),
        vec![finding(
            "provenance-unsigned",
            Severity::High,
            None,
            "no signature or dsse metadata",
        )],
        &[("provenance", "unsigned")],
    );
    expect_provenance(&provenance(&release, true), meta, &data, &required).await;
}

#[tokio::test]
async fn provenance_rejects_signatures_by_untrusted_keys() {
    let (release, stranger) = (keypair(), keypair());
    let plugin = provenance(&release, false);
    let data = prose(100_000);
    let signature = sign_statement(&stranger, &data);

    // Claiming a trusted key id does not make a stranger's signature verify.
    let meta = signed(
        upload("notes.txt", "text/plain"),
        &[("signer", "release"), ("signature", signature.as_str())],
    );
    let expected = invalid(
        "ed25519-statement",
        "the signature by 'release' does not match this upload's sha256 and size",
    );
    expect_provenance(&plugin, meta, &data, &expected).await;

    // Naming a key the policy does not trust.
    let meta = signed(
        upload("notes.txt", "text/plain"),
        &[("signer", "stranger"), ("signature", signature.as_str())],
    );
    let expected = invalid(
        "ed25519-statement",
        "signer 'stranger' is not a trusted key",
    );
    expect_provenance(&plugin, meta, &data, &expected).await;
}

#[tokio::test]
async fn provenance_rejects_a_signature_over_other_bytes() {
    let release = keypair();
    let plugin = provenance(&release, false);
    let original = prose(100_000);
    let signature = sign_statement(&release, &original);
    let meta = signed(
        upload("notes.txt", "text/plain"),
        &[("signer", "release"), ("signature", signature.as_str())],
    );
    let expected = invalid(
        "ed25519-statement",
        "the signature by 'release' does not match this upload's sha256 and size",
    );
    // One byte changed (same size), and one byte cut off.
    let mut changed = original.clone();
    changed[50_000] ^= 0x20;
    expect_provenance(&plugin, meta.clone(), &changed, &expected).await;
    expect_provenance(
        &plugin,
        meta.clone(),
        &original[..original.len() - 1],
        &expected,
    )
    .await;
    // And the untouched bytes still verify.
    expect_provenance(&plugin, meta, &original, &verified("ed25519-statement")).await;
}

#[tokio::test]
async fn provenance_checks_dsse_in_toto_subjects() {
    let (release, stranger) = (keypair(), keypair());
    let plugin = provenance(&release, true);
    let data = gzip(&prose(300_000));
    let with = |envelope: String| {
        signed(
            upload("release.tar.gz", "application/gzip"),
            &[("dsse", envelope.as_str())],
        )
    };

    let meta = with(dsse(&release, "release", &data));
    expect_provenance(&plugin, meta, &data, &verified("dsse-in-toto")).await;
    // An empty key id is tried against every trusted key.
    let meta = with(dsse(&release, "", &data));
    expect_provenance(&plugin, meta, &data, &verified("dsse-in-toto")).await;

    // A genuine statement about other bytes.
    let meta = with(dsse(&release, "release", &prose(300_000)));
    let expected = invalid(
        "dsse-in-toto",
        "no subject of the statement signed by 'release' has this upload's sha256 \
         (subjects: [\"release.tar.gz\"])",
    );
    expect_provenance(&plugin, meta, &data, &expected).await;

    // The right subject, signed by a key the policy does not trust.
    let meta = with(dsse(&stranger, "stranger", &data));
    let expected = invalid(
        "dsse-in-toto",
        "no DSSE signature verifies with a trusted key (signed by untrusted 'stranger')",
    );
    expect_provenance(&plugin, meta, &data, &expected).await;
}

// --- anomaly ----------------------------------------------------------------------------

/// 200 uploads of about 100 KB (stddev 10 KB), PDFs, PNGs and some text,
/// at about two a minute.
fn steady_tenant() -> TenantStats {
    TenantStats {
        uploads: 200,
        mean_size: 100_000.0,
        stddev_size: 10_000.0,
        types_seen: vec![("pdf".into(), 120), ("png".into(), 60), ("text".into(), 20)],
        uploads_last_minute: 2,
        uploads_last_hour: 120,
    }
}

fn zscore(len: usize) -> f64 {
    (len as f64 - 100_000.0) / 10_000.0
}

/// Shannon entropy in bits per byte over what anomaly samples by default
/// (the first MiB).
fn entropy(data: &[u8]) -> f64 {
    let sample = &data[..data.len().min(MIB)];
    let mut histogram = [0u64; 256];
    for &b in sample {
        histogram[usize::from(b)] += 1;
    }
    let n = sample.len() as f64;
    histogram
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// The labels anomaly puts on every upload of a tenant with history.
fn anomaly_labels(data: &[u8]) -> (String, String) {
    (
        format!("{:.2}", zscore(data.len())),
        format!("{:.2}", entropy(data)),
    )
}

async fn expect_anomaly(
    plugin: &Arc<Plugin>,
    meta: &UploadMeta,
    stats: &TenantStats,
    data: &[u8],
    verdict: Verdict,
    findings: Vec<Finding>,
) -> Vec<(Chunking, Run)> {
    let (z, bits) = anomaly_labels(data);
    let expected = outcome(
        verdict,
        findings,
        &[("size-zscore", &z), ("entropy", &bits)],
    );
    expect(plugin, meta, stats, data, &expected).await
}

#[tokio::test]
async fn anomaly_accepts_an_ordinary_upload_without_findings() {
    let plugin = shipped("anomaly", json!({}));
    // A little over one standard deviation above the mean: ordinary.
    let data = pdf(112_000);
    let meta = upload("q3.pdf", "application/pdf");
    let z = zscore(data.len());
    assert!((1.0..2.0).contains(&z), "{z}");
    expect_anomaly(
        &plugin,
        &meta,
        &steady_tenant(),
        &data,
        Verdict::Accept,
        vec![],
    )
    .await;
}

#[tokio::test]
async fn anomaly_flags_a_size_outlier() {
    let plugin = shipped("anomaly", json!({}));
    let meta = upload("q3.pdf", "application/pdf");

    // 10 MB against 100 ± 10 KB: z = 990, past twice the policy's 4.0.
    let data = pdf(10_000_000);
    let z = zscore(data.len());
    let detail = format!(
        "{} bytes is {z:.1} standard deviations from this tenant's mean of 100000 over 200 uploads",
        data.len()
    );
    let runs = expect_anomaly(
        &plugin,
        &meta,
        &steady_tenant(),
        &data,
        Verdict::Quarantine(format!("size-outlier: {detail}")),
        vec![finding("size-outlier", Severity::High, None, &detail)],
    )
    .await;
    // Only the first MiB is sampled; the host stops passing chunks after.
    for (chunking, run) in runs {
        let sampled = chunking
            .pieces(data.len())
            .into_iter()
            .find(|piece| piece.end >= MIB)
            .expect("a piece reaches 1 MiB");
        assert_eq!(run.fed, sampled.end, "{chunking}");
    }

    // z = 5: past the threshold but not twice it, so a medium finding that
    // does not change the verdict.
    let data = pdf(150_000);
    let z = zscore(data.len());
    assert!((4.0..8.0).contains(&z), "{z}");
    let detail = format!(
        "{} bytes is {z:.1} standard deviations from this tenant's mean of 100000 over 200 uploads",
        data.len()
    );
    expect_anomaly(
        &plugin,
        &meta,
        &steady_tenant(),
        &data,
        Verdict::Accept,
        vec![finding("size-outlier", Severity::Medium, None, &detail)],
    )
    .await;
}

#[tokio::test]
async fn anomaly_flags_a_type_new_to_the_tenant() {
    let plugin = shipped("anomaly", json!({}));

    let data = gif(100_000);
    let meta = upload("spinner.gif", "image/gif");
    let detail = "first gif among 200 uploads of this tenant";
    expect_anomaly(
        &plugin,
        &meta,
        &steady_tenant(),
        &data,
        Verdict::Accept,
        vec![finding("new-type", Severity::Medium, None, detail)],
    )
    .await;

    // A first executable is high: quarantined.
    let data = elf_head();
    let meta = upload("tool", "");
    let detail = "first elf among 200 uploads of this tenant";
    expect_anomaly(
        &plugin,
        &meta,
        &steady_tenant(),
        &data,
        Verdict::Quarantine(format!("new-type: {detail}")),
        vec![finding("new-type", Severity::High, None, detail)],
    )
    .await;
}

#[tokio::test]
async fn anomaly_flags_a_burst() {
    // The shipped policy raises the threshold for its single default tenant;
    // this tenant uses the plugin's own default.
    let plugin = shipped("anomaly", json!({"burst_per_minute": 30}));
    let data = pdf(100_000);
    let meta = upload("q3.pdf", "application/pdf");

    // 90 in the last minute from a tenant averaging two: three times the
    // default 30 per minute.
    let flood = TenantStats {
        uploads_last_minute: 90,
        ..steady_tenant()
    };
    let detail = "90 uploads in the last minute, threshold 30";
    expect_anomaly(
        &plugin,
        &meta,
        &flood,
        &data,
        Verdict::Quarantine(format!("burst: {detail}")),
        vec![finding("burst", Severity::High, None, detail)],
    )
    .await;

    let busy = TenantStats {
        uploads_last_minute: 45,
        ..steady_tenant()
    };
    let detail = "45 uploads in the last minute, threshold 30";
    expect_anomaly(
        &plugin,
        &meta,
        &busy,
        &data,
        Verdict::Accept,
        vec![finding("burst", Severity::Medium, None, detail)],
    )
    .await;
}

#[tokio::test]
async fn anomaly_flags_random_bytes_declared_as_text() {
    let plugin = shipped("anomaly", json!({}));
    let data = noise(100_000);
    let bits = entropy(&data);
    assert!(bits > 7.5, "{bits}");

    let meta = upload("export.csv", "text/csv");
    let detail = format!(
        "{bits:.2} bits/byte over the first 100000 bytes (compressed or encrypted data) \
         but declared as 'text/csv'"
    );
    expect_anomaly(
        &plugin,
        &meta,
        &steady_tenant(),
        &data,
        Verdict::Quarantine(format!("entropy-mismatch: {detail}")),
        vec![finding("entropy-mismatch", Severity::High, None, &detail)],
    )
    .await;

    // Honest about being opaque: nothing to flag.
    let meta = upload("blob.bin", "application/octet-stream");
    expect_anomaly(
        &plugin,
        &meta,
        &steady_tenant(),
        &data,
        Verdict::Accept,
        vec![],
    )
    .await;
}
