//! The shortest path through the product: create, patch, commit, download.

use crate::support::*;

#[tokio::test]
async fn upload_in_two_chunks_then_download_the_same_bytes() {
    let server = TestServer::start().await;
    let data = bytes(200_000, 1);
    let up = server.create(data.len() as u64).await;
    up.patch(0, &data[..100_000]).await.assert_offset(100_000);
    up.head().await.assert_status(200).assert_offset(100_000);
    up.patch(100_000, &data[100_000..])
        .await
        .assert_offset(200_000);
    let got = up.get().await;
    got.assert_status(200);
    assert_eq!(got.body, data);
    assert_eq!(
        got.header("etag"),
        Some(format!("\"{}\"", sha256_hex(&data)).as_str())
    );
}
