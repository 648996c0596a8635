//! tus checksum, checksum-trailer and concatenation extensions; one writer per
//! upload; HTTP/2 prior knowledge; CORS for browser clients.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use strongroom::crypto::{DigestAlgorithm, Hasher};

use crate::support::feed::{fed_body, spawn_patch};
use crate::support::raw::{self, RawReply, chunk, tus_head};
use crate::support::*;

/// An `Upload-Checksum` value for `data`.
fn checksum(algorithm: DigestAlgorithm, data: &[u8]) -> String {
    let mut hasher = Hasher::new(algorithm);
    hasher.update(data);
    format!("{} {}", algorithm.name(), BASE64.encode(hasher.finish()))
}

// ---- checksum ---------------------------------------------------------

#[tokio::test]
async fn chunks_with_a_correct_sha1_sha256_or_md5_checksum_are_accepted() {
    let server = TestServer::start().await;
    let up = server.create(15).await;
    let chunks: [(DigestAlgorithm, &[u8]); 3] = [
        (DigestAlgorithm::Sha1, b"hello"),
        (DigestAlgorithm::Sha256, b"there"),
        (DigestAlgorithm::Md5, b"world"),
    ];
    let mut offset = 0;
    for (algorithm, data) in chunks {
        let value = checksum(algorithm, data);
        up.patch_with(offset, data, &[("Upload-Checksum", &value)])
            .await
            .assert_offset(offset + 5);
        offset += 5;
    }
    assert_eq!(up.get().await.body, b"hellothereworld");
}

#[tokio::test]
async fn a_chunk_with_a_wrong_checksum_is_460_and_discarded() {
    let server = TestServer::start().await;
    let data = bytes(200_000, 10);
    let up = server.create(200_000).await;
    up.patch(0, &data[..70_000]).await.assert_offset(70_000);
    let rest = &data[70_000..];
    for algorithm in DigestAlgorithm::ALL {
        let wrong = checksum(algorithm, &rest[1..]);
        up.patch_with(70_000, rest, &[("Upload-Checksum", &wrong)])
            .await
            .assert_problem(460, "checksum_mismatch");
        up.head().await.assert_offset(70_000);
    }
    let right = checksum(DigestAlgorithm::Sha256, rest);
    up.patch_with(70_000, rest, &[("Upload-Checksum", &right)])
        .await
        .assert_offset(200_000);
    assert_eq!(up.get().await.body, data);
}

#[tokio::test]
async fn an_unknown_checksum_algorithm_is_400() {
    let server = TestServer::start().await;
    let up = server.create(5).await;
    up.patch_with(0, b"hello", &[("Upload-Checksum", "crc32 NhCmhg==")])
        .await
        .assert_problem(400, "checksum_algorithm_unsupported");
    up.head().await.assert_offset(0);
}

// ---- checksum-trailer -------------------------------------------------

/// A chunked PATCH whose checksum follows the body as a trailer.
async fn patch_with_trailer(
    server: &TestServer,
    up: &Upload<'_>,
    offset: u64,
    data: &[u8],
    trailer: &str,
) -> RawReply {
    let offset = offset.to_string();
    let mut request = tus_head(
        "PATCH",
        &up.path,
        &[
            OCTETS,
            ("Upload-Offset", &offset),
            ("Transfer-Encoding", "chunked"),
            ("Trailer", "Upload-Checksum"),
        ],
    )
    .into_bytes();
    for piece in data.chunks(30_000) {
        request.extend(chunk(piece));
    }
    request.extend(format!("0\r\nUpload-Checksum: {trailer}\r\n\r\n").into_bytes());
    raw::exchange(server.appliance().public_addr, &request).await
}

#[tokio::test]
async fn a_checksum_trailer_is_verified_after_the_body() {
    let server = TestServer::start().await;
    let data = bytes(100_000, 11);
    let up = server.create(100_000).await;

    let right = checksum(DigestAlgorithm::Sha256, &data[..80_000]);
    let reply = patch_with_trailer(&server, &up, 0, &data[..80_000], &right).await;
    assert_eq!(reply.status, 204, "{reply:?}");
    assert_eq!(reply.header("upload-offset"), Some("80000"));
    up.head().await.assert_offset(80_000);

    let wrong = checksum(DigestAlgorithm::Sha256, &data[..20_000]);
    let reply = patch_with_trailer(&server, &up, 80_000, &data[80_000..], &wrong).await;
    assert_eq!(reply.status, 460, "{reply:?}");
    assert_eq!(reply.code(), "checksum_mismatch");
    up.head().await.assert_offset(80_000);

    let right = checksum(DigestAlgorithm::Md5, &data[80_000..]);
    let reply = patch_with_trailer(&server, &up, 80_000, &data[80_000..], &right).await;
    assert_eq!(reply.status, 204, "{reply:?}");
    assert_eq!(up.get().await.body, data);
}

// ---- concatenation ----------------------------------------------------

async fn create_partial(server: &TestServer, length: usize) -> Upload<'_> {
    server
        .create_with(&[
            ("Upload-Concat", "partial"),
            ("Upload-Length", &length.to_string()),
        ])
        .await
}

async fn create_final(server: &TestServer, urls: &[String]) -> Reply {
    let concat = format!("final;{}", urls.join(" "));
    server
        .send(
            "POST",
            "/files/",
            &[TUS, ("Upload-Concat", &concat)],
            Vec::new(),
        )
        .await
}

#[tokio::test]
async fn finished_partial_uploads_concatenate_in_the_order_named() {
    let server = TestServer::start().await;
    let a = bytes(70_000, 12);
    let b = bytes(100_000, 13);
    let part_a = create_partial(&server, a.len()).await;
    let part_b = create_partial(&server, b.len()).await;
    part_b.patch(0, &b).await.assert_offset(100_000);
    part_a.patch(0, &a).await.assert_offset(70_000);
    assert_eq!(part_a.head().await.header("upload-concat"), Some("partial"));

    let reply = create_final(&server, &[part_a.path.clone(), part_b.path.clone()]).await;
    reply.assert_status(201);
    let joined = Upload {
        server: &server,
        path: reply.header("location").expect("Location").to_owned(),
    };
    let head = joined.head().await;
    head.assert_offset(170_000);
    assert_eq!(head.header("upload-length"), Some("170000"));
    assert_eq!(
        head.header("upload-concat"),
        Some(format!("final;{} {}", part_a.path, part_b.path).as_str())
    );
    let got = joined.get().await;
    got.assert_status(200);
    assert_eq!(got.body, [a, b].concat());
}

#[tokio::test]
async fn a_final_upload_may_name_its_parts_by_absolute_url() {
    let server = TestServer::start().await;
    let part_a = create_partial(&server, 5).await;
    let part_b = create_partial(&server, 5).await;
    part_a.patch(0, b"hello").await.assert_offset(5);
    part_b.patch(0, b"world").await.assert_offset(5);
    let urls = [server.url(&part_b.path), server.url(&part_a.path)];
    let reply = create_final(&server, &urls).await;
    reply.assert_status(201);
    let location = reply.header("location").expect("Location");
    let got = server.send("GET", location, &[], Vec::new()).await;
    assert_eq!(got.body, b"worldhello");
}

#[tokio::test]
async fn a_final_upload_created_before_its_parts_finish_is_assembled_by_the_last_part() {
    let server = TestServer::start().await;
    let a = bytes(100_000, 14);
    let b = bytes(50_000, 15);
    let part_a = create_partial(&server, a.len()).await;
    let part_b = create_partial(&server, b.len()).await;
    part_a.patch(0, &a[..40_000]).await.assert_offset(40_000);
    part_b.patch(0, &b).await.assert_offset(50_000);

    let reply = create_final(&server, &[part_a.path.clone(), part_b.path.clone()]).await;
    reply.assert_status(201);
    assert_eq!(reply.header("upload-offset"), None);
    let joined = Upload {
        server: &server,
        path: reply.header("location").expect("Location").to_owned(),
    };
    let head = joined.head().await;
    head.assert_status(200);
    assert_eq!(head.header("upload-offset"), None);
    assert!(
        head.header("upload-concat")
            .is_some_and(|v| v.starts_with("final;")),
        "{head:?}"
    );
    joined.get().await.assert_problem(404, "object_not_found");

    part_a
        .patch(40_000, &a[40_000..])
        .await
        .assert_offset(100_000);
    joined.head().await.assert_offset(150_000);
    let got = joined.get().await;
    got.assert_status(200);
    assert_eq!(got.body, [a, b].concat());
}

#[tokio::test]
async fn a_final_upload_naming_a_regular_or_unknown_upload_is_400() {
    let server = TestServer::start().await;
    let part = create_partial(&server, 5).await;
    part.patch(0, b"hello").await.assert_offset(5);
    let regular = server.upload(b"plain").await;
    let before = server.census().await;
    let unknown = "/files/0123456789abcdef0123456789abcdef".to_owned();
    for other in [regular.path.clone(), unknown] {
        create_final(&server, &[part.path.clone(), other])
            .await
            .assert_problem(400, "invalid_concat");
    }
    create_final(&server, &["/files/not-an-id".to_owned()])
        .await
        .assert_problem(400, "invalid_concat");
    assert_eq!(server.census().await, before);
}

#[tokio::test]
async fn a_patch_on_a_final_upload_is_403() {
    let server = TestServer::start().await;
    let part = create_partial(&server, 10).await;
    let reply = create_final(&server, std::slice::from_ref(&part.path)).await;
    reply.assert_status(201);
    let joined = Upload {
        server: &server,
        path: reply.header("location").expect("Location").to_owned(),
    };
    joined
        .patch(0, b"hello")
        .await
        .assert_problem(403, "final_upload_immutable");
    part.patch(0, b"0123456789").await.assert_offset(10);
    assert_eq!(joined.get().await.body, b"0123456789");
}

// ---- one writer per upload --------------------------------------------

#[tokio::test]
async fn a_head_stops_a_stale_patch_and_reports_the_bytes_it_received() {
    let lock_wait = Duration::from_secs(2);
    let server = TestServer::start_with(|config| config.uploads.lock_wait = lock_wait).await;
    let data = bytes(200_000, 16);
    let up = server.create(200_000).await;

    let (feed, body) = fed_body();
    let stale = spawn_patch(&server, &up.path, 0, &[], body);
    feed.send(data[..60_000].to_vec()).await.unwrap();
    feed.send(data[60_000..100_000].to_vec()).await.unwrap();
    // Let the bytes reach the server; the request stays open.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let asked = Instant::now();
    let head = up.head().await;
    assert!(
        asked.elapsed() < lock_wait,
        "HEAD waited {:?}",
        asked.elapsed()
    );
    assert_eq!(head.offset(), 100_000);

    // The stale request goes on sending; none of it may land.
    let _ = feed.send(bytes(50_000, 99)).await;
    drop(feed);
    let stale = tokio::time::timeout(Duration::from_secs(10), stale)
        .await
        .expect("stale PATCH ends")
        .unwrap();
    if let Some(reply) = stale {
        assert!(!reply.status.is_success(), "stale PATCH: {reply:?}");
    }

    up.head().await.assert_offset(100_000);
    up.patch(100_000, &data[100_000..])
        .await
        .assert_offset(200_000);
    assert_eq!(up.get().await.body, data);
}

// ---- HTTP/2 -----------------------------------------------------------

#[tokio::test]
async fn an_http2_prior_knowledge_client_can_create_patch_and_download() {
    let server = TestServer::start().await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let data = bytes(150_000, 17);
    let created = h2
        .post(server.url("/files/"))
        .header(TUS.0, TUS.1)
        .header("Upload-Length", "150000")
        .send()
        .await
        .unwrap();
    assert_eq!(created.version(), reqwest::Version::HTTP_2);
    assert_eq!(created.status(), 201);
    let location = server.url(created.headers()["location"].to_str().unwrap());
    for (offset, piece) in [(0, &data[..80_000]), (80_000, &data[80_000..])] {
        let patched = h2
            .patch(&location)
            .header(TUS.0, TUS.1)
            .header(OCTETS.0, OCTETS.1)
            .header("Upload-Offset", offset.to_string())
            .body(piece.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(patched.status(), 204);
        let want = (offset + piece.len()).to_string();
        assert_eq!(patched.headers()["upload-offset"], want.as_str());
    }
    let got = h2.get(&location).send().await.unwrap();
    assert_eq!(got.version(), reqwest::Version::HTTP_2);
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap(), data);
}

// ---- CORS -------------------------------------------------------------

const APP: &str = "https://app.example";

async fn start_with_cors() -> TestServer {
    TestServer::start_with(|config| config.server.cors_allowed_origins = vec![APP.into()]).await
}

fn listed(value: Option<&str>, name: &str) -> bool {
    value.is_some_and(|v| {
        v.split(',')
            .any(|item| item.trim().eq_ignore_ascii_case(name))
    })
}

#[tokio::test]
async fn a_cors_preflight_from_the_allowed_origin_is_answered() {
    let server = start_with_cors().await;
    let reply = server
        .send(
            "OPTIONS",
            "/files/",
            &[
                ("Origin", APP),
                ("Access-Control-Request-Method", "PATCH"),
                (
                    "Access-Control-Request-Headers",
                    "tus-resumable,upload-offset,content-type",
                ),
            ],
            Vec::new(),
        )
        .await;
    assert!(reply.status.is_success(), "{reply:?}");
    assert_eq!(reply.header("access-control-allow-origin"), Some(APP));
    let allowed = reply.header("access-control-allow-headers");
    for name in [
        "Upload-Offset",
        "Upload-Length",
        "Upload-Metadata",
        "Upload-Checksum",
        "Upload-Concat",
        "Tus-Resumable",
        "Content-Type",
    ] {
        assert!(listed(allowed, name), "{name} not allowed: {allowed:?}");
    }
    let methods = reply.header("access-control-allow-methods");
    for method in ["POST", "PATCH", "HEAD", "DELETE"] {
        assert!(listed(methods, method), "{method} not allowed: {methods:?}");
    }
}

#[tokio::test]
async fn responses_to_the_allowed_origin_expose_the_tus_headers() {
    let server = start_with_cors().await;
    let reply = server
        .send(
            "POST",
            "/files/",
            &[TUS, ("Upload-Length", "5"), ("Origin", APP)],
            Vec::new(),
        )
        .await;
    reply.assert_status(201);
    assert_eq!(reply.header("access-control-allow-origin"), Some(APP));
    let exposed = reply.header("access-control-expose-headers");
    for name in [
        "Upload-Offset",
        "Location",
        "Upload-Expires",
        "Tus-Resumable",
    ] {
        assert!(listed(exposed, name), "{name} not exposed: {exposed:?}");
    }
}

#[tokio::test]
async fn other_origins_get_no_cors_headers() {
    let server = start_with_cors().await;
    let evil = "https://evil.example";
    let preflight = server
        .send(
            "OPTIONS",
            "/files/",
            &[("Origin", evil), ("Access-Control-Request-Method", "POST")],
            Vec::new(),
        )
        .await;
    assert_eq!(preflight.header("access-control-allow-origin"), None);
    assert_eq!(preflight.header("access-control-allow-headers"), None);
    let reply = server
        .send(
            "POST",
            "/files/",
            &[TUS, ("Upload-Length", "5"), ("Origin", evil)],
            Vec::new(),
        )
        .await;
    reply.assert_status(201);
    assert_eq!(reply.header("access-control-allow-origin"), None);
    assert_eq!(reply.header("access-control-expose-headers"), None);
}
