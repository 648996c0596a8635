//! Start-up recovery: the index is the truth; segment files are reconciled
//! with it after any crash.

use std::io::Write;

use crate::support::*;

fn segment_file(server: &TestServer, id: &str) -> std::path::PathBuf {
    server
        .data_dir()
        .join("segments")
        .join(&id[..2])
        .join(format!("{id}.seg"))
}

#[tokio::test]
async fn bytes_written_but_never_acknowledged_are_cut_back_on_restart() {
    let mut server = TestServer::start().await;
    let data = bytes(300_000, 7);
    let id = {
        let up = server.create(data.len() as u64).await;
        up.patch(0, &data[..150_000]).await.assert_offset(150_000);
        up.id().to_owned()
    };
    // A crash after appending a segment but before the index flush leaves the
    // file longer than its record.
    let path = segment_file(&server, &id);
    let acknowledged_len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&bytes(65_564, 8))
        .unwrap();

    server.restart().await;

    assert_eq!(server.appliance().recovery.truncated, 1);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), acknowledged_len);
    let up = Upload {
        server: &server,
        path: format!("/files/{id}"),
    };
    up.head().await.assert_offset(150_000);
    up.patch(150_000, &data[150_000..])
        .await
        .assert_offset(300_000);
    assert_eq!(up.get().await.body, data);
}

#[tokio::test]
async fn segment_files_without_a_record_are_removed_on_restart() {
    let mut server = TestServer::start().await;
    let kept = server.upload(b"kept").await.id().to_owned();
    let orphan_dir = server.data_dir().join("segments").join("ab");
    std::fs::create_dir_all(&orphan_dir).unwrap();
    std::fs::write(
        orphan_dir.join(format!("{}.seg", "ab".repeat(16))),
        b"half created",
    )
    .unwrap();

    server.restart().await;

    assert_eq!(server.appliance().recovery.orphans_removed, 1);
    let census = server.census().await;
    assert_eq!((census.records, census.objects, census.files), (1, 1, 1));
    let reply = server
        .send("GET", &format!("/objects/{kept}"), &[], Vec::new())
        .await;
    assert_eq!(reply.body, b"kept");
}

#[tokio::test]
async fn a_resumed_upload_after_restart_commits_the_right_digest() {
    // The running SHA-256 lives in memory; after a restart it is rebuilt by
    // replaying the staged bytes, so the object's ETag still matches.
    let mut server = TestServer::start().await;
    let data = bytes(200_001, 9);
    let id = {
        let up = server.create(data.len() as u64).await;
        up.patch(0, &data[..131_073]).await.assert_offset(131_073);
        up.id().to_owned()
    };
    server.restart().await;
    let up = Upload {
        server: &server,
        path: format!("/files/{id}"),
    };
    up.patch(131_073, &data[131_073..])
        .await
        .assert_offset(200_001);
    let got = up.get().await;
    assert_eq!(got.body, data);
    assert_eq!(
        got.header("etag"),
        Some(format!("\"{}\"", sha256_hex(&data)).as_str())
    );
}

#[tokio::test]
async fn a_world_readable_key_file_stops_the_start() {
    use std::os::unix::fs::PermissionsExt;
    let mut server = TestServer::start().await;
    let key = server.data_dir().join("keys").join("default.v1.kek");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    if let Some(appliance) = server.appliance.take() {
        appliance.stop().await;
    }
    let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let started = strongroom::appliance::Appliance::start_on(
        server.config.clone(),
        public,
        admin,
        std::sync::Arc::new(strongroom::disk::OsDisk),
    )
    .await;
    let err = started.err().expect("refuses to start").to_string();
    assert!(err.contains("chmod 600"), "{err}");
}
