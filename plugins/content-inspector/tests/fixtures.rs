//! content-inspector driven the way the host drives it (through the SDK's native
//! test driver), over real minimal files built here.

use content_inspector::ContentInspector;
use content_inspector::scan::EICAR;
use content_inspector::zip::build::{Entry, zip};
use strongroom_plugin_sdk::testing::{self, Inspected, MockHost};
use strongroom_plugin_sdk::{LogLevel, Severity, Summary, UploadMeta, Verdict};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

fn meta(name: &str, content_type: &str) -> UploadMeta {
    UploadMeta::new("acme", "up-1")
        .with_name(name)
        .with_content_type(content_type)
}

/// Runs the plugin with `config` over `data` cut into `chunk`-byte chunks.
fn inspect(meta: &UploadMeta, config: &str, data: &[u8], chunk: usize) -> Inspected {
    testing::install(MockHost::new().with_config(config));
    let summary = Summary::new(data.len() as u64, [0u8; 32]);
    testing::inspect::<ContentInspector>(meta, testing::chunks(data, chunk), &summary)
}

fn assert_rejected(run: &Inspected, code: &str) {
    match &run.outcome.verdict {
        Verdict::Reject { code: got, .. } => assert_eq!(got, code, "{:#?}", run.outcome),
        other => panic!("expected reject {code}, got {other:?}: {:#?}", run.outcome),
    }
}

fn assert_quarantined(run: &Inspected) {
    assert!(
        matches!(run.outcome.verdict, Verdict::Quarantine(_)),
        "{:#?}",
        run.outcome
    );
}

fn detected(run: &Inspected) -> &str {
    run.outcome.label_value("detected-type").unwrap_or("(none)")
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

/// A valid 1x1 grey PNG: signature, IHDR, IDAT (zlib stored block), IEND.
fn png() -> Vec<u8> {
    fn chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        let crc = crc32(&[kind, data].concat());
        c.extend_from_slice(&crc.to_be_bytes());
        c
    }
    let ihdr = [0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0];
    // zlib header, one stored block holding the scanline [filter 0, pixel 0x80], adler32.
    let idat = [
        0x78, 0x01, 0x01, 0x02, 0x00, 0xfd, 0xff, 0x00, 0x80, 0x00, 0x82, 0x00, 0x81,
    ];
    [
        b"\x89PNG\r\n\x1a\n".to_vec(),
        chunk(b"IHDR", &ihdr),
        chunk(b"IDAT", &idat),
        chunk(b"IEND", &[]),
    ]
    .concat()
}

/// A minimal PDF with a correct xref table.
fn pdf(page_content: &str) -> Vec<u8> {
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R >>".to_owned(),
        format!(
            "<< /Length {} >>\nstream\n{page_content}\nendstream",
            page_content.len() + 1
        ),
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
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
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

/// A 64-bit little-endian ELF header (enough for any loader to recognise it).
fn elf() -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..16].copy_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    h[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    h[18..20].copy_from_slice(&0x3eu16.to_le_bytes()); // x86-64
    h[20..24].copy_from_slice(&1u32.to_le_bytes());
    h
}

/// A DOS header pointing at a PE header, with the usual stub text.
fn pe() -> Vec<u8> {
    let mut v = vec![0u8; 0x200];
    v[..2].copy_from_slice(b"MZ");
    v[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
    v[0x4e..0x4e + 38].copy_from_slice(b"This program cannot be run in DOS mode");
    v[0x80..0x84].copy_from_slice(b"PE\0\0");
    v
}

fn docx() -> Vec<u8> {
    zip(
        &[
            Entry::stored(
                "[Content_Types].xml",
                b"<Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\"/>",
            ),
            Entry::stored("_rels/.rels", b"<Relationships/>"),
            Entry::stored("word/document.xml", b"<w:document/>"),
        ],
        b"",
        false,
    )
}

#[test]
fn a_minimal_pdf_is_accepted_and_labelled() {
    let run = inspect(
        &meta("report.pdf", "application/pdf"),
        "{}",
        &pdf("BT /F1 12 Tf (hi) Tj ET"),
        64 * KIB,
    );
    assert_eq!(run.outcome.verdict, Verdict::Accept, "{:#?}", run.outcome);
    assert_eq!(detected(&run), "pdf");
    assert!(run.outcome.findings.is_empty());
}

#[test]
fn a_minimal_png_is_accepted_and_labelled() {
    let run = inspect(&meta("pixel.png", "image/png"), "{}", &png(), 64 * KIB);
    assert_eq!(run.outcome.verdict, Verdict::Accept, "{:#?}", run.outcome);
    assert_eq!(detected(&run), "png");
}

#[test]
fn a_zip_is_judged_from_its_central_directory() {
    let data = zip(
        &[
            Entry::stored("a.txt", b"alpha"),
            Entry::stored("b/c.txt", b"charlie"),
        ],
        b"",
        false,
    );
    let run = inspect(&meta("files.zip", "application/zip"), "{}", &data, 64 * KIB);
    assert_eq!(run.outcome.verdict, Verdict::Accept, "{:#?}", run.outcome);
    assert_eq!(detected(&run), "zip");
    assert_eq!(run.outcome.label_value("zip-entries"), Some("2"));
    assert_eq!(
        run.outcome.label_value("zip-uncompressed-bytes"),
        Some("12")
    );
}

#[test]
fn ooxml_is_told_apart_from_zip() {
    let run = inspect(
        &meta("memo.docx", ""),
        r#"{"allowed_types": ["office"]}"#,
        &docx(),
        64 * KIB,
    );
    assert_eq!(run.outcome.verdict, Verdict::Accept, "{:#?}", run.outcome);
    assert_eq!(detected(&run), "docx");
    // The same allow-list turns a plain ZIP away once its directory is read.
    let plain = zip(&[Entry::stored("a.txt", b"alpha")], b"", false);
    let run = inspect(
        &meta("memo.docx", ""),
        r#"{"allowed_types": ["office"]}"#,
        &plain,
        64 * KIB,
    );
    assert_rejected(&run, "type-not-allowed");
}

#[test]
fn an_elf_named_pdf_is_a_high_severity_mismatch() {
    let mut data = elf();
    data.extend(vec![0u8; 100 * KIB]);
    let run = inspect(
        &meta("invoice.pdf", "application/pdf"),
        "{}",
        &data,
        64 * KIB,
    );
    assert_eq!(detected(&run), "elf");
    assert_quarantined(&run);
    let f = run
        .outcome
        .findings
        .iter()
        .find(|f| f.rule == "type-mismatch")
        .expect("mismatch finding");
    assert_eq!(f.severity, Severity::High);
    assert!(
        f.detail.contains("'invoice.pdf'") && f.detail.contains("application/pdf"),
        "{}",
        f.detail
    );

    let run = inspect(
        &meta("invoice.pdf", "application/pdf"),
        r#"{"mismatch_action": "reject"}"#,
        &data,
        64 * KIB,
    );
    assert_rejected(&run, "type-mismatch");
    let run = inspect(
        &meta("invoice.pdf", "application/pdf"),
        r#"{"mismatch_action": "accept"}"#,
        &data,
        64 * KIB,
    );
    assert_eq!(run.outcome.verdict, Verdict::Accept);
    assert!(run.outcome.has_finding("type-mismatch"));
}

#[test]
fn honest_or_generic_declarations_are_not_mismatches() {
    for (name, ct) in [
        ("pixel.png", "image/png"),
        ("pixel", "application/octet-stream"),
        ("pixel.PNG", ""),
    ] {
        let run = inspect(&meta(name, ct), "{}", &png(), 64 * KIB);
        assert!(
            !run.outcome.has_finding("type-mismatch"),
            "{name} {ct}: {:#?}",
            run.outcome
        );
    }
    let run = inspect(&meta("pixel.jpg", "image/png"), "{}", &png(), 64 * KIB);
    let f = run
        .outcome
        .findings
        .iter()
        .find(|f| f.rule == "type-mismatch")
        .unwrap();
    assert_eq!(f.severity, Severity::Medium);
}

#[test]
fn eicar_split_across_two_chunks_rejects_early() {
    let mut data = vec![b'a'; 2 * 64 * KIB];
    let at = 64 * KIB - 30; // 30 bytes in the first chunk, 38 in the second
    data[at..at + EICAR.len()].copy_from_slice(EICAR);
    let mut more = data.clone();
    more.extend(vec![b'a'; 4 * MIB]); // the host never gets this far
    let run = inspect(&meta("notes.txt", "text/plain"), "{}", &more, 64 * KIB);
    assert!(run.decided_early);
    assert!(
        run.chunks_fed <= 3,
        "decided after {} chunks",
        run.chunks_fed
    );
    assert_rejected(&run, "malware-signature");
    let f = &run.outcome.findings[0];
    assert_eq!(
        (f.rule.as_str(), f.severity, f.offset),
        ("eicar", Severity::Critical, Some(at as u64))
    );
}

#[test]
fn eicar_at_the_very_end_is_caught_by_finish() {
    let mut data = b"harmless text ".to_vec();
    data.extend_from_slice(EICAR);
    let run = inspect(&meta("eicar.txt", ""), "{}", &data, 64 * KIB);
    assert!(!run.decided_early);
    assert_rejected(&run, "malware-signature");
    let run = inspect(
        &meta("eicar.txt", ""),
        r#"{"eicar": false}"#,
        &data,
        64 * KIB,
    );
    assert_eq!(run.outcome.verdict, Verdict::Accept, "{:#?}", run.outcome);
}

#[test]
fn an_executable_inside_an_image_is_a_polyglot() {
    let mut data = png();
    data.extend(vec![0x42; 200 * KIB]);
    let pe_at = data.len();
    data.extend(pe());
    data.extend(vec![0x42; 10 * KIB]);
    let run = inspect(&meta("cat.png", "image/png"), "{}", &data, 64 * KIB);
    assert_eq!(detected(&run), "png");
    assert_quarantined(&run);
    let f = run
        .outcome
        .findings
        .iter()
        .find(|f| f.rule == "polyglot")
        .expect("polyglot finding");
    assert_eq!(f.offset, Some(pe_at as u64));
    assert!(
        f.detail.contains("PE executable header inside a png"),
        "{}",
        f.detail
    );
}

#[test]
fn an_elf_or_script_inside_a_pdf_is_a_polyglot() {
    let mut data = pdf("BT ET");
    data.extend(elf());
    let run = inspect(
        &meta("doc.pdf", "application/pdf"),
        r#"{"polyglot_action": "reject"}"#,
        &data,
        64 * KIB,
    );
    assert_rejected(&run, "polyglot");

    let mut data = pdf("BT ET");
    data.extend_from_slice(b"<SCRIPT>fetch('//evil')</SCRIPT>");
    let run = inspect(&meta("doc.pdf", "application/pdf"), "{}", &data, 64 * KIB);
    assert_quarantined(&run);
    assert!(
        run.outcome
            .findings
            .iter()
            .any(|f| f.rule == "polyglot" && f.detail.contains("<script>"))
    );
}

#[test]
fn a_zip_appended_to_a_pdf_is_a_polyglot() {
    let mut data = pdf("BT ET");
    let prefix = data.len();
    data.extend(zip(&[Entry::stored("payload.js", b"alert(1)")], b"", false));
    let run = inspect(&meta("doc.pdf", "application/pdf"), "{}", &data, 64 * KIB);
    assert_eq!(detected(&run), "pdf");
    assert_quarantined(&run);
    let f = run
        .outcome
        .findings
        .iter()
        .find(|f| f.rule == "polyglot")
        .unwrap();
    assert_eq!(f.offset, Some(prefix as u64));
}

#[test]
fn a_scripted_svg_is_active_content() {
    let svg = br#"<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#;
    let run = inspect(&meta("logo.svg", "image/svg+xml"), "{}", svg, 64 * KIB);
    assert_eq!(detected(&run), "svg");
    assert_quarantined(&run);
    assert!(run.outcome.has_finding("svg-script"));
    let plain = br#"<svg xmlns="http://www.w3.org/2000/svg"><circle r="4"/></svg>"#;
    let run = inspect(&meta("logo.svg", "image/svg+xml"), "{}", plain, 64 * KIB);
    assert_eq!(run.outcome.verdict, Verdict::Accept, "{:#?}", run.outcome);
}

#[test]
fn a_zip_bomb_is_rejected_from_its_central_directory() {
    // 3 MiB of stored filler, then directory entries that declare 10 GiB from 10 MiB.
    let filler = vec![0u8; 3 * MIB];
    let data = zip(
        &[
            Entry::stored("readme.txt", b"nothing to see"),
            Entry {
                name: "zeros.bin",
                compressed: filler.len() as u64,
                uncompressed: 10 << 30,
                data: &filler,
            },
        ],
        b"",
        false,
    );
    let run = inspect(&meta("backup.zip", "application/zip"), "{}", &data, MIB);
    assert_rejected(&run, "zip-bomb");
    let f = run
        .outcome
        .findings
        .iter()
        .find(|f| f.rule == "zip-bomb")
        .unwrap();
    assert!(f.detail.contains("uncompressed"), "{}", f.detail);

    // The same archive passes once the policy allows it.
    let lenient = r#"{"zip_max_total_uncompressed": 20000000000, "zip_max_ratio": 5000}"#;
    let run = inspect(&meta("backup.zip", "application/zip"), lenient, &data, MIB);
    assert_eq!(run.outcome.verdict, Verdict::Accept, "{:#?}", run.outcome);
}

#[test]
fn nested_archives_and_overlapping_entries_are_bombs() {
    let names: Vec<String> = (0..16).map(|i| format!("{i:x}.zip")).collect();
    let entries: Vec<Entry<'_>> = names
        .iter()
        .map(|n| Entry::stored(n, b"PK\x05\x06"))
        .collect();
    let run = inspect(
        &meta("42.zip", "application/zip"),
        "{}",
        &zip(&entries, b"", false),
        64 * KIB,
    );
    assert_rejected(&run, "zip-bomb");

    let data = [7u8; 1000];
    let e = |name| Entry {
        name,
        compressed: 1000,
        uncompressed: 1000,
        data: &data,
    };
    let run = inspect(
        &meta("o.zip", ""),
        "{}",
        &zip(&[e("a"), e("b")], b"", true),
        64 * KIB,
    );
    assert_rejected(&run, "zip-bomb");
}

#[test]
fn a_type_outside_the_allow_list_is_rejected_on_the_first_chunk() {
    let mut data = png();
    data.extend(vec![0u8; 4 * MIB]);
    let run = inspect(
        &meta("cat.png", "image/png"),
        r#"{"allowed_types": ["pdf", "text"]}"#,
        &data,
        64 * KIB,
    );
    assert!(run.decided_early);
    assert_eq!(run.chunks_fed, 1);
    assert_rejected(&run, "type-not-allowed");
    assert_eq!(detected(&run), "png");
}

#[test]
fn a_truncated_zip_cannot_be_inspected_and_is_quarantined() {
    let mut data = zip(&[Entry::stored("a.txt", b"alpha")], b"", false);
    data.truncate(data.len() - 10);
    let run = inspect(&meta("a.zip", ""), "{}", &data, 64 * KIB);
    assert_quarantined(&run);
    assert!(run.outcome.has_finding("zip-uninspectable"));
}

#[test]
fn unknown_config_keys_are_logged_and_bad_values_fail_loudly() {
    let run = inspect(
        &meta("a.txt", "text/plain"),
        r#"{"alowed_types": ["pdf"]}"#,
        b"hello",
        64 * KIB,
    );
    assert_eq!(run.outcome.verdict, Verdict::Accept);
    let logs = testing::logs();
    assert!(
        logs.iter()
            .any(|(l, m)| *l == LogLevel::Warn && m.contains("'alowed_types'")),
        "{logs:?}"
    );

    let result = std::panic::catch_unwind(|| {
        inspect(&meta("a.txt", ""), r#"{"zip_max_ratio": "lots"}"#, b"x", 1)
    });
    assert!(result.is_err());
}
