//! anomaly driven as the host drives it, against synthetic tenant statistics.

use anomaly::Anomaly;
use strongroom_plugin_sdk::testing::{self, Inspected, MockHost};
use strongroom_plugin_sdk::{Severity, Summary, TenantStats, UploadMeta, Verdict};

const MIB: u64 = 1 << 20;

/// A tenant with a long history of ~1 MiB PDFs and PNGs, uploading calmly.
fn steady_tenant() -> TenantStats {
    TenantStats {
        uploads: 500,
        mean_size: MIB as f64,
        stddev_size: 200_000.0,
        types_seen: vec![
            ("pdf".into(), 300),
            ("png".into(), 180),
            ("text".into(), 20),
        ],
        uploads_last_minute: 2,
        uploads_last_hour: 40,
    }
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

fn prose(len: usize) -> Vec<u8> {
    b"The quarterly figures show steady growth across all regions, with costs flat. "
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

fn pdf(len: usize) -> Vec<u8> {
    let mut v = b"%PDF-1.7\n".to_vec();
    v.extend(prose(len - v.len()));
    v
}

fn run(stats: TenantStats, config: &str, meta: &UploadMeta, data: &[u8]) -> Inspected {
    testing::install(MockHost::new().with_config(config).with_tenant_stats(stats));
    let summary = Summary::new(data.len() as u64, [0u8; 32]);
    testing::inspect::<Anomaly>(meta, testing::chunks(data, 256 * 1024), &summary)
}

fn meta(name: &str, content_type: &str) -> UploadMeta {
    UploadMeta::new("acme", "up-9")
        .with_name(name)
        .with_content_type(content_type)
}

fn rules(run: &Inspected) -> Vec<(&str, Severity)> {
    run.outcome
        .findings
        .iter()
        .map(|f| (f.rule.as_str(), f.severity))
        .collect()
}

#[test]
fn an_ordinary_upload_raises_nothing() {
    let r = run(
        steady_tenant(),
        "{}",
        &meta("q3.pdf", "application/pdf"),
        &pdf(1_100_000),
    );
    assert_eq!(r.outcome.verdict, Verdict::Accept);
    assert!(r.outcome.findings.is_empty(), "{:#?}", r.outcome);
    assert_eq!(r.outcome.label_value("size-zscore"), Some("0.26"));
}

#[test]
fn a_size_far_from_the_mean_is_an_outlier() {
    let r = run(
        steady_tenant(),
        "{}",
        &meta("big.pdf", "application/pdf"),
        &pdf(3 * MIB as usize),
    );
    assert_eq!(rules(&r), [("size-outlier", Severity::High)]);
    assert!(matches!(r.outcome.verdict, Verdict::Quarantine(_)));

    let r = run(
        steady_tenant(),
        "{}",
        &meta("big.pdf", "application/pdf"),
        &pdf(2 * MIB as usize),
    );
    assert_eq!(rules(&r), [("size-outlier", Severity::Medium)], "z = 5.2");
    assert_eq!(
        r.outcome.verdict,
        Verdict::Accept,
        "medium findings do not quarantine by default"
    );
}

#[test]
fn history_checks_wait_for_enough_uploads() {
    let young = TenantStats {
        uploads: 5,
        ..steady_tenant()
    };
    let r = run(
        young,
        "{}",
        &meta("big.pdf", "application/pdf"),
        &pdf(3 * MIB as usize),
    );
    assert!(r.outcome.findings.is_empty(), "{:#?}", r.outcome);
    let r = run(
        TenantStats {
            uploads: 5,
            ..steady_tenant()
        },
        r#"{"min_uploads": 5}"#,
        &meta("big.pdf", "application/pdf"),
        &pdf(3 * MIB as usize),
    );
    assert!(r.outcome.has_finding("size-outlier"));
}

#[test]
fn a_type_the_tenant_never_uploaded_is_new() {
    let mut elf = b"\x7fELF\x02\x01\x01\0".to_vec();
    elf.extend(vec![0u8; 1_000_000]);
    let r = run(steady_tenant(), "{}", &meta("tool", ""), &elf);
    assert_eq!(rules(&r), [("new-type", Severity::High)]);
    assert!(matches!(r.outcome.verdict, Verdict::Quarantine(_)));

    let gif = [b"GIF89a".to_vec(), vec![0u8; 1_000_000]].concat();
    let r = run(steady_tenant(), "{}", &meta("a.gif", "image/gif"), &gif);
    assert_eq!(rules(&r), [("new-type", Severity::Medium)]);
}

#[test]
fn bursts_are_flagged_by_rate() {
    let busy = TenantStats {
        uploads_last_minute: 45,
        ..steady_tenant()
    };
    let r = run(
        busy,
        "{}",
        &meta("q3.pdf", "application/pdf"),
        &pdf(1_000_000),
    );
    assert_eq!(rules(&r), [("burst", Severity::Medium)]);
    let flood = TenantStats {
        uploads_last_minute: 400,
        uploads_last_hour: 9000,
        ..steady_tenant()
    };
    let r = run(
        flood,
        r#"{"burst_per_hour": 1000}"#,
        &meta("q3.pdf", "application/pdf"),
        &pdf(1_000_000),
    );
    assert_eq!(
        rules(&r),
        [("burst", Severity::High), ("burst", Severity::Medium)]
    );
}

#[test]
fn random_bytes_claiming_to_be_text_are_an_entropy_mismatch() {
    let data = noise(1_000_000);
    for (name, ct) in [
        ("export.csv", "text/csv"),
        ("data.json", "application/json"),
        ("notes", "text/plain"),
    ] {
        let r = run(steady_tenant(), "{}", &meta(name, ct), &data);
        let f = r
            .outcome
            .findings
            .iter()
            .find(|f| f.rule == "entropy-mismatch")
            .expect(name);
        assert_eq!(f.severity, Severity::High);
        assert!(
            matches!(r.outcome.verdict, Verdict::Quarantine(_)),
            "{name}"
        );
        let e: f64 = r.outcome.label_value("entropy").unwrap().parse().unwrap();
        assert!(e > 7.9, "{e}");
    }
    // Honest about being opaque: no claim, no finding.
    let r = run(
        steady_tenant(),
        "{}",
        &meta("blob.bin", "application/octet-stream"),
        &data,
    );
    assert!(!r.outcome.has_finding("entropy-mismatch"));
    // Real text has low entropy.
    let r = run(
        steady_tenant(),
        "{}",
        &meta("notes.txt", "text/plain"),
        &prose(1_000_000),
    );
    assert!(r.outcome.findings.is_empty(), "{:#?}", r.outcome);
    let e: f64 = r.outcome.label_value("entropy").unwrap().parse().unwrap();
    assert!(e < 5.0, "{e}");
}

#[test]
fn only_the_sample_is_read() {
    let data = noise(4 * MIB as usize);
    let r = run(
        steady_tenant(),
        r#"{"entropy_sample_bytes": 524288}"#,
        &meta("a.bin", ""),
        &data,
    );
    assert_eq!(r.chunks_fed, 2, "256 KiB chunks, 512 KiB sample");
}

#[test]
fn the_action_is_configurable() {
    let data = noise(100_000);
    let r = run(
        steady_tenant(),
        r#"{"action": "reject"}"#,
        &meta("a.txt", "text/plain"),
        &data,
    );
    match &r.outcome.verdict {
        Verdict::Reject { code, .. } => assert_eq!(code, "anomaly"),
        other => panic!("{other:?}"),
    }
    let r = run(
        steady_tenant(),
        r#"{"action": "accept"}"#,
        &meta("a.txt", "text/plain"),
        &data,
    );
    assert_eq!(r.outcome.verdict, Verdict::Accept);
    assert!(r.outcome.has_finding("entropy-mismatch"));
    let r = run(
        TenantStats {
            uploads_last_minute: 45,
            ..steady_tenant()
        },
        r#"{"action_severity": "medium"}"#,
        &meta("q3.pdf", "application/pdf"),
        &pdf(1_000_000),
    );
    assert!(matches!(r.outcome.verdict, Verdict::Quarantine(_)));
}
