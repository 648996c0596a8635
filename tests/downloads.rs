//! Downloads of committed objects: integrity headers, safe filenames, ranges,
//! conditional requests, and never wrong bytes from a tampered segment.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use strongroom::crypto::{HEADER_LEN, SEALED_SEGMENT_LEN};

use crate::support::*;

/// Uploads `data` with `filename` in its metadata.
async fn upload_named<'a>(server: &'a TestServer, data: &[u8], filename: &str) -> Upload<'a> {
    let metadata = format!("filename {}", BASE64.encode(filename));
    let up = server
        .create_with(&[
            ("Upload-Length", &data.len().to_string()),
            ("Upload-Metadata", &metadata),
        ])
        .await;
    up.patch(0, data).await.assert_offset(data.len() as u64);
    up
}

#[tokio::test]
async fn a_download_serves_the_exact_bytes_with_integrity_headers() {
    let server = TestServer::start().await;
    let data = bytes(200_000, 20);
    let up = upload_named(&server, &data, "report.pdf").await;
    let repr_digest = format!(
        "sha-256=:{}:",
        BASE64.encode(strongroom::crypto::sha256(&data))
    );
    for path in [up.path.clone(), up.object_path()] {
        let got = server.send("GET", &path, &[], Vec::new()).await;
        got.assert_status(200);
        assert_eq!(got.body, data, "{path}");
        assert_eq!(got.header("content-length"), Some("200000"));
        assert_eq!(
            got.header("etag"),
            Some(format!("\"{}\"", sha256_hex(&data)).as_str())
        );
        assert_eq!(got.header("repr-digest"), Some(repr_digest.as_str()));
        assert_eq!(got.header("x-content-type-options"), Some("nosniff"));
        let disposition = got.header("content-disposition").expect("disposition");
        assert!(disposition.starts_with("attachment;"), "{disposition}");
        assert!(
            disposition.contains("filename=\"report.pdf\""),
            "{disposition}"
        );
    }
}

#[tokio::test]
async fn a_download_filename_loses_its_path_and_line_breaks() {
    let server = TestServer::start().await;
    let up = upload_named(&server, b"payload", "../../evil\r\nname.txt").await;
    let got = up.get().await;
    got.assert_status(200);
    let disposition = got.header("content-disposition").expect("disposition");
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    for bad in ["/", "\\", "..", "\r", "\n", "%0D", "%0A", "%2F"] {
        assert!(!disposition.contains(bad), "{bad:?} in {disposition:?}");
    }
    assert!(
        disposition.contains("filename=\"evilname.txt\""),
        "{disposition}"
    );
    assert_eq!(got.body, b"payload");
}

#[tokio::test]
async fn ranges_are_served_as_206_with_the_exact_slice() {
    let server = TestServer::start().await;
    let data = bytes(200_000, 21);
    let up = server.upload(&data).await;
    let cases: [(&str, usize, usize); 4] = [
        ("bytes=0-4", 0, 5),
        ("bytes=70000-140000", 70_000, 140_001),
        ("bytes=-10", 199_990, 200_000),
        ("bytes=5-", 5, 200_000),
    ];
    for (range, start, end) in cases {
        let got = up.get_range(range).await;
        got.assert_status(206);
        let content_range = format!("bytes {start}-{}/200000", end - 1);
        assert_eq!(
            got.header("content-range"),
            Some(content_range.as_str()),
            "{range}"
        );
        let length = (end - start).to_string();
        assert_eq!(
            got.header("content-length"),
            Some(length.as_str()),
            "{range}"
        );
        assert!(got.body == data[start..end], "{range}: wrong slice");
    }
}

#[tokio::test]
async fn a_range_past_the_end_is_416() {
    let server = TestServer::start().await;
    let up = server.upload(&bytes(200_000, 22)).await;
    up.get_range("bytes=999999-")
        .await
        .assert_problem(416, "range_not_satisfiable");
}

#[tokio::test]
async fn if_none_match_with_the_etag_is_304() {
    let server = TestServer::start().await;
    let data = bytes(1000, 23);
    let up = server.upload(&data).await;
    let etag = format!("\"{}\"", sha256_hex(&data));
    let got = server
        .send(
            "GET",
            &up.object_path(),
            &[("If-None-Match", &etag)],
            Vec::new(),
        )
        .await;
    got.assert_status(304);
    assert!(got.body.is_empty());
    let stale = server
        .send(
            "GET",
            &up.object_path(),
            &[("If-None-Match", "\"0000\"")],
            Vec::new(),
        )
        .await;
    stale.assert_status(200);
    assert_eq!(stale.body, data);
}

#[tokio::test]
async fn an_incomplete_upload_is_not_downloadable() {
    let server = TestServer::start().await;
    let up = server.create(10).await;
    up.patch(0, b"hello").await.assert_offset(5);
    up.get().await.assert_problem(404, "object_not_found");
    server
        .send("GET", &up.object_path(), &[], Vec::new())
        .await
        .assert_problem(404, "object_not_found");
}

#[tokio::test]
async fn head_on_an_object_gives_its_headers_without_a_body() {
    let server = TestServer::start().await;
    let data = bytes(100_000, 24);
    let up = server.upload(&data).await;
    let head = server
        .send("HEAD", &up.object_path(), &[], Vec::new())
        .await;
    head.assert_status(200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), Some("100000"));
    assert_eq!(
        head.header("etag"),
        Some(format!("\"{}\"", sha256_hex(&data)).as_str())
    );
    assert!(head.header("repr-digest").is_some());
}

#[tokio::test]
async fn a_tampered_segment_breaks_the_download_instead_of_serving_wrong_bytes() {
    let server = TestServer::start().await;
    let data = bytes(200_000, 25);
    let other = bytes(200_000, 26);
    let up = server.upload(&data).await;
    let fine = server.upload(&other).await;

    let id = up.id();
    let file = server
        .data_dir()
        .join("segments")
        .join(&id[..2])
        .join(format!("{id}.seg"));
    let mut sealed = std::fs::read(&file).expect("segment file");
    // A byte in the middle of the second segment.
    let at = HEADER_LEN + SEALED_SEGMENT_LEN + 1000;
    sealed[at] ^= 0x01;
    std::fs::write(&file, &sealed).expect("tamper");

    let response = server.http.get(server.url(&up.path)).send().await.unwrap();
    let status = response.status();
    match response.bytes().await {
        Err(_) => {}
        Ok(body) if status.is_server_error() => {
            assert!(body.len() < 1000, "5xx with a body of {}", body.len())
        }
        Ok(body) => {
            assert!(
                body.len() < data.len(),
                "a full {status} body from a tampered object"
            );
            assert!(body[..] == data[..body.len()], "wrong bytes served");
        }
    }

    let got = fine.get().await;
    got.assert_status(200);
    assert_eq!(got.body, other);
}
