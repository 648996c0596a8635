//! tus 1.0 core and the creation, defer-length, termination and expiration
//! extensions, as a client sees them.

use std::time::{Duration, Instant, SystemTime};

use bytesize::ByteSize;

use crate::support::*;

const NO_SUCH_UPLOAD: &str = "/files/0123456789abcdef0123456789abcdef";

/// An `Upload-Expires` value, which must be an HTTP date in the future.
#[track_caller]
fn expires_in_the_future(reply: &Reply) -> SystemTime {
    let value = reply.header("upload-expires").expect("Upload-Expires");
    let when = httpdate::parse_http_date(value).expect("Upload-Expires is an HTTP date");
    assert!(
        when + Duration::from_secs(1) >= SystemTime::now(),
        "Upload-Expires {value} lies in the past"
    );
    when
}

// ---- OPTIONS and Tus-Resumable ----------------------------------------

#[tokio::test]
async fn options_advertises_version_extensions_max_size_and_checksums() {
    let server = TestServer::start().await;
    let reply = server.send("OPTIONS", "/files/", &[], Vec::new()).await;
    reply.assert_status(204);
    assert_eq!(reply.header("tus-version"), Some("1.0.0"));
    let mut extensions: Vec<&str> = reply
        .header("tus-extension")
        .expect("Tus-Extension")
        .split(',')
        .map(str::trim)
        .collect();
    extensions.sort_unstable();
    assert_eq!(
        extensions,
        [
            "checksum",
            "checksum-trailer",
            "concatenation",
            "concatenation-unfinished",
            "creation",
            "creation-defer-length",
            "creation-with-upload",
            "expiration",
            "termination",
        ]
    );
    let max = server.config.uploads.max_size.as_u64().to_string();
    assert_eq!(reply.header("tus-max-size"), Some(max.as_str()));
    assert_eq!(
        reply.header("tus-checksum-algorithm"),
        Some("sha1,sha256,md5")
    );
}

#[tokio::test]
async fn requests_without_tus_resumable_are_412_with_tus_version() {
    let server = TestServer::start().await;
    let up = server.create(10).await;
    let requests = [
        ("POST", "/files/", vec![("Upload-Length", "10")]),
        ("HEAD", &up.path, vec![]),
        ("PATCH", &up.path, vec![OCTETS, ("Upload-Offset", "0")]),
        ("DELETE", &up.path, vec![]),
    ];
    let before = server.census().await;
    for (method, path, headers) in &requests {
        let method = *method;
        let body: &'static [u8] = if method == "PATCH" { b"hello" } else { b"" };
        let reply = server.send(method, path, headers, body).await;
        assert_eq!(reply.status.as_u16(), 412, "{method}: {reply:?}");
        assert_eq!(reply.header("tus-version"), Some("1.0.0"), "{method}");
        if method != "HEAD" {
            reply.assert_problem(412, "tus_version_unsupported");
        }
    }
    assert_eq!(server.census().await, before);
    up.head().await.assert_offset(0);
}

#[tokio::test]
async fn requests_with_another_tus_version_are_412_with_tus_version() {
    let server = TestServer::start().await;
    let up = server.create(10).await;
    for version in ["0.2.2", "1.0", "2.0.0"] {
        let old = [("Tus-Resumable", version)];
        let reply = server
            .send(
                "POST",
                "/files/",
                &[old[0], ("Upload-Length", "10")],
                Vec::new(),
            )
            .await;
        reply.assert_problem(412, "tus_version_unsupported");
        assert_eq!(reply.header("tus-version"), Some("1.0.0"));
        let reply = server
            .send(
                "PATCH",
                &up.path,
                &[old[0], OCTETS, ("Upload-Offset", "0")],
                &b"hello"[..],
            )
            .await;
        reply.assert_problem(412, "tus_version_unsupported");
        let reply = server.send("DELETE", &up.path, &old, Vec::new()).await;
        reply.assert_problem(412, "tus_version_unsupported");
        let reply = server.send("HEAD", &up.path, &old, Vec::new()).await;
        reply.assert_status(412);
        assert_eq!(reply.header("tus-version"), Some("1.0.0"));
    }
    up.head().await.assert_offset(0);
}

// ---- creation ---------------------------------------------------------

#[tokio::test]
async fn creation_answers_201_with_location_offset_zero_and_expiry() {
    let server = TestServer::start().await;
    let reply = server
        .send(
            "POST",
            "/files/",
            &[TUS, ("Upload-Length", "10")],
            Vec::new(),
        )
        .await;
    reply.assert_status(201).assert_offset(0);
    let location = reply.header("location").expect("Location");
    let id = location
        .strip_prefix("/files/")
        .expect("Location under /files/");
    assert_eq!(id.len(), 32, "{location}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{location}");
    expires_in_the_future(&reply);
    assert_eq!(reply.header("tus-resumable"), Some("1.0.0"));
    let head = server.send("HEAD", location, &[TUS], Vec::new()).await;
    head.assert_status(200).assert_offset(0);
    assert_eq!(head.header("upload-length"), Some("10"));
}

#[tokio::test]
async fn upload_length_over_the_maximum_is_413() {
    let server = TestServer::start_with(|config| {
        config.uploads.max_size = ByteSize::b(1000);
    })
    .await;
    let before = server.census().await;
    let reply = server
        .send(
            "POST",
            "/files/",
            &[TUS, ("Upload-Length", "1001")],
            Vec::new(),
        )
        .await;
    reply.assert_problem(413, "upload_too_large");
    assert_eq!(server.census().await, before);
    server.create(1000).await.head().await.assert_offset(0);
}

#[tokio::test]
async fn a_zero_length_upload_is_committed_at_once_and_downloads_empty() {
    let server = TestServer::start().await;
    let up = server.create(0).await;
    let head = up.head().await;
    head.assert_status(200).assert_offset(0);
    assert_eq!(head.header("upload-length"), Some("0"));
    let got = up.get().await;
    got.assert_status(200);
    assert!(got.body.is_empty());
    assert_eq!(got.header("content-length"), Some("0"));
    assert_eq!(
        got.header("etag"),
        Some(format!("\"{}\"", sha256_hex(b"")).as_str())
    );
    assert_eq!(server.census().await.objects, 1);
}

// ---- creation-with-upload -------------------------------------------

#[tokio::test]
async fn creation_with_upload_stores_the_body_and_reports_its_length() {
    let server = TestServer::start().await;
    let reply = server
        .send(
            "POST",
            "/files/",
            &[TUS, OCTETS, ("Upload-Length", "10")],
            &b"hello"[..],
        )
        .await;
    reply.assert_status(201).assert_offset(5);
    let up = Upload {
        server: &server,
        path: reply.header("location").expect("Location").to_owned(),
    };
    up.head().await.assert_offset(5);
    up.get().await.assert_problem(404, "object_not_found");
    up.patch(5, b"world").await.assert_offset(10);
    assert_eq!(up.get().await.body, b"helloworld");
}

#[tokio::test]
async fn creation_with_upload_that_completes_the_upload_commits_it() {
    let server = TestServer::start().await;
    let data = bytes(200_000, 2);
    let reply = server
        .send(
            "POST",
            "/files/",
            &[TUS, OCTETS, ("Upload-Length", "200000")],
            data.clone(),
        )
        .await;
    reply.assert_status(201).assert_offset(200_000);
    let location = reply.header("location").expect("Location");
    let got = server.send("GET", location, &[], Vec::new()).await;
    got.assert_status(200);
    assert_eq!(got.body, data);
    assert_eq!(server.census().await.objects, 1);
}

// ---- creation-defer-length ------------------------------------------

#[tokio::test]
async fn a_deferred_length_is_reported_until_a_patch_sets_it() {
    let server = TestServer::start().await;
    let up = server.create_with(&[("Upload-Defer-Length", "1")]).await;
    let head = up.head().await;
    head.assert_offset(0);
    assert_eq!(head.header("upload-defer-length"), Some("1"));
    assert_eq!(head.header("upload-length"), None);

    up.patch(0, b"hello").await.assert_offset(5);
    let head = up.head().await;
    assert_eq!(head.header("upload-defer-length"), Some("1"));
    assert_eq!(head.header("upload-length"), None);

    up.patch_with(5, b"world", &[("Upload-Length", "10")])
        .await
        .assert_offset(10);
    let head = up.head().await;
    assert_eq!(head.header("upload-length"), Some("10"));
    assert_eq!(head.header("upload-defer-length"), None);
    assert_eq!(up.get().await.body, b"helloworld");
}

#[tokio::test]
async fn an_empty_patch_setting_the_length_completes_a_deferred_upload() {
    let server = TestServer::start().await;
    let up = server.create_with(&[("Upload-Defer-Length", "1")]).await;
    up.patch(0, b"hello").await.assert_offset(5);
    up.get().await.assert_problem(404, "object_not_found");
    up.patch_with(5, b"", &[("Upload-Length", "5")])
        .await
        .assert_offset(5);
    let got = up.get().await;
    got.assert_status(200);
    assert_eq!(got.body, b"hello");
}

#[tokio::test]
async fn a_deferred_length_below_the_offset_is_400() {
    let server = TestServer::start().await;
    let up = server.create_with(&[("Upload-Defer-Length", "1")]).await;
    up.patch(0, b"hello").await.assert_offset(5);
    up.patch_with(5, b"", &[("Upload-Length", "3")])
        .await
        .assert_problem(400, "invalid_upload_length");
    let head = up.head().await;
    head.assert_offset(5);
    assert_eq!(head.header("upload-defer-length"), Some("1"));
    up.patch_with(5, b"!", &[("Upload-Length", "6")])
        .await
        .assert_offset(6);
    assert_eq!(up.get().await.body, b"hello!");
}

// ---- PATCH ------------------------------------------------------------

#[tokio::test]
async fn a_patch_at_the_wrong_offset_is_409_and_stores_nothing() {
    let server = TestServer::start().await;
    let up = server.create(10).await;
    up.patch(0, b"hello").await.assert_offset(5);
    let before = server.census().await;
    up.patch(3, b"XXXXX")
        .await
        .assert_problem(409, "offset_mismatch");
    up.patch(6, b"XXXX")
        .await
        .assert_problem(409, "offset_mismatch");
    up.head().await.assert_offset(5);
    assert_eq!(server.census().await, before);
    up.patch(5, b"world").await.assert_offset(10);
    assert_eq!(up.get().await.body, b"helloworld");
}

#[tokio::test]
async fn a_patch_with_another_content_type_is_415() {
    let server = TestServer::start().await;
    let up = server.create(5).await;
    for content_type in ["application/octet-stream", "text/plain"] {
        let reply = server
            .send(
                "PATCH",
                &up.path,
                &[TUS, ("Content-Type", content_type), ("Upload-Offset", "0")],
                &b"hello"[..],
            )
            .await;
        reply.assert_problem(415, "unsupported_content_type");
    }
    up.head().await.assert_offset(0);
}

#[tokio::test]
async fn a_patch_to_an_unknown_upload_is_404() {
    let server = TestServer::start().await;
    let up = Upload {
        server: &server,
        path: NO_SUCH_UPLOAD.to_owned(),
    };
    up.patch(0, b"hello")
        .await
        .assert_problem(404, "upload_not_found");
    up.head().await.assert_status(404);
    assert_eq!(server.census().await.records, 0);
}

// ---- HEAD -------------------------------------------------------------

#[tokio::test]
async fn head_reports_offset_length_no_store_and_metadata() {
    let server = TestServer::start().await;
    let metadata = "filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential";
    let up = server
        .create_with(&[("Upload-Length", "10"), ("Upload-Metadata", metadata)])
        .await;
    up.patch(0, b"hello").await.assert_offset(5);
    let head = up.head().await;
    head.assert_status(200).assert_offset(5);
    assert_eq!(head.header("upload-length"), Some("10"));
    assert_eq!(head.header("cache-control"), Some("no-store"));
    assert_eq!(head.header("upload-metadata"), Some(metadata));
    assert_eq!(head.header("tus-resumable"), Some("1.0.0"));
    assert!(head.body.is_empty());
}

#[tokio::test]
async fn an_empty_upload_metadata_header_is_accepted() {
    let server = TestServer::start().await;
    let up = server
        .create_with(&[("Upload-Length", "5"), ("Upload-Metadata", "")])
        .await;
    let head = up.head().await;
    head.assert_offset(0);
    assert_eq!(head.header("upload-metadata"), None);
}

#[tokio::test]
async fn a_metadata_key_without_a_value_is_accepted() {
    let server = TestServer::start().await;
    let up = server
        .create_with(&[
            ("Upload-Length", "5"),
            ("Upload-Metadata", "is_confidential"),
        ])
        .await;
    assert_eq!(
        up.head().await.header("upload-metadata"),
        Some("is_confidential")
    );
}

// ---- X-HTTP-Method-Override ---------------------------------------------

#[tokio::test]
async fn post_overridden_to_patch_acts_as_patch() {
    let server = TestServer::start().await;
    let up = server.create(10).await;
    let reply = server
        .send(
            "POST",
            &up.path,
            &[
                TUS,
                OCTETS,
                ("X-HTTP-Method-Override", "PATCH"),
                ("Upload-Offset", "0"),
            ],
            &b"hello"[..],
        )
        .await;
    reply.assert_status(204).assert_offset(5);
    up.head().await.assert_offset(5);
    up.patch(5, b"world").await.assert_offset(10);
    assert_eq!(up.get().await.body, b"helloworld");
}

#[tokio::test]
async fn post_overridden_to_delete_terminates() {
    let server = TestServer::start().await;
    let before = server.census().await;
    let up = server.create(10).await;
    up.patch(0, b"hello").await.assert_offset(5);
    let reply = server
        .send(
            "POST",
            &up.path,
            &[TUS, ("X-HTTP-Method-Override", "DELETE")],
            Vec::new(),
        )
        .await;
    reply.assert_status(204);
    up.head().await.assert_status(404);
    assert_eq!(server.census().await, before);
}

// ---- termination ------------------------------------------------------

#[tokio::test]
async fn delete_removes_an_unfinished_upload_and_its_data() {
    let server = TestServer::start().await;
    let before = server.census().await;
    let up = server.create(200_000).await;
    up.patch(0, &bytes(100_000, 3)).await.assert_offset(100_000);
    let during = server.census().await;
    assert_eq!((during.records, during.files), (1, 1), "{during:?}");
    up.delete().await.assert_status(204);
    let head = up.head().await;
    assert!(
        matches!(head.status.as_u16(), 404 | 410),
        "HEAD after DELETE: {head:?}"
    );
    up.patch(100_000, b"more")
        .await
        .assert_problem(404, "upload_not_found");
    assert_eq!(server.census().await, before);
}

#[tokio::test]
async fn delete_removes_a_committed_object() {
    let server = TestServer::start().await;
    let before = server.census().await;
    let up = server.upload(&bytes(100_000, 4)).await;
    up.delete().await.assert_status(204);
    up.get().await.assert_status(404);
    server
        .send("GET", &up.object_path(), &[], Vec::new())
        .await
        .assert_status(404);
    assert_eq!(server.census().await, before);
}

#[tokio::test]
async fn delete_of_an_unknown_upload_is_404() {
    let server = TestServer::start().await;
    server
        .send("DELETE", NO_SUCH_UPLOAD, &[TUS], Vec::new())
        .await
        .assert_problem(404, "upload_not_found");
}

// ---- expiration -------------------------------------------------------

async fn start_expiring() -> TestServer {
    TestServer::start_with(|config| {
        config.uploads.expiry = Duration::from_secs(1);
        config.uploads.sweep_interval = Duration::from_millis(200);
    })
    .await
}

/// Polls `census` until it equals `want`, for at most `limit`.
async fn census_becomes(server: &TestServer, want: strongroom::ingest::Census, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let census = server.census().await;
        if census == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "census stuck at {census:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_unfinished_upload_expires_and_is_swept() {
    let server = start_expiring().await;
    let baseline = server.census().await;
    let up = server.create(200_000).await;
    let reply = up.patch(0, &bytes(100_000, 5)).await;
    reply.assert_offset(100_000);
    expires_in_the_future(&reply);

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let head = up.head().await;
        match head.status.as_u16() {
            200 => {}
            404 | 410 => break,
            other => panic!("HEAD on an expiring upload: {other}: {head:?}"),
        }
        assert!(Instant::now() < deadline, "upload never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let patch = up.patch(100_000, b"late").await;
    assert!(
        matches!(patch.status.as_u16(), 404 | 410),
        "PATCH after expiry: {patch:?}"
    );
    census_becomes(&server, baseline, Duration::from_secs(10)).await;
    assert_eq!(
        (baseline.records, baseline.tails, baseline.files),
        (0, 0, 0)
    );
}

/// Time left until the wall clock reaches the next whole second.
fn until_next_second() -> Duration {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    Duration::from_secs(1) - Duration::from_nanos(u64::from(now.subsec_nanos()))
}

/// Returns when the wall clock is less than `before` short of a whole second.
async fn just_before_a_second_boundary(before: Duration) {
    let margin = Duration::from_millis(20);
    while until_next_second() <= before {
        tokio::task::yield_now().await;
    }
    let left = until_next_second();
    if left > before + margin {
        tokio::time::sleep(left - before - margin).await;
    }
    while until_next_second() > before {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_new_upload_lives_for_its_whole_expiry_period() {
    let server = start_expiring().await;
    for _ in 0..3 {
        // Created in one second, answered in the next.
        just_before_a_second_boundary(Duration::from_millis(1)).await;
        let up = server.create(10).await;
        up.patch(0, b"hello").await.assert_offset(5);
        up.head().await.assert_offset(5);
    }
}

#[tokio::test]
async fn a_committed_object_never_expires() {
    let server = start_expiring().await;
    let data = bytes(1000, 6);
    let kept = server.upload(&data).await;
    let dropped = server.create(10).await;
    dropped.patch(0, b"hello").await.assert_offset(5);
    let want = strongroom::ingest::Census {
        records: 1,
        objects: 1,
        tails: 0,
        files: 1,
    };
    census_becomes(&server, want, Duration::from_secs(10)).await;
    let got = kept.get().await;
    got.assert_status(200);
    assert_eq!(got.body, data);
}
