//! Request bodies the test feeds while the request is in flight: for stalls,
//! stale requests and chunked bodies of unknown length.

use reqwest::StatusCode;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{OCTETS, Reply, TUS, TestServer};

/// A streaming body and the sender that feeds it; dropping the sender ends
/// the body.
pub fn fed_body() -> (mpsc::Sender<Vec<u8>>, reqwest::Body) {
    let (tx, rx) = mpsc::channel::<Vec<u8>>(16);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let data = rx.recv().await?;
        Some((Ok::<_, std::io::Error>(bytes::Bytes::from(data)), rx))
    });
    (tx, reqwest::Body::wrap_stream(stream))
}

/// A PATCH of a fed body at `offset`, running in the background. No
/// Content-Length unless `extra` gives one, so HTTP/1.1 sends it chunked.
/// Resolves to the reply, or `None` when the connection failed first.
pub fn spawn_patch(
    server: &TestServer,
    path: &str,
    offset: u64,
    extra: &[(&str, &str)],
    body: reqwest::Body,
) -> JoinHandle<Option<Reply>> {
    let mut request = server
        .http
        .patch(server.url(path))
        .header(TUS.0, TUS.1)
        .header(OCTETS.0, OCTETS.1)
        .header("Upload-Offset", offset.to_string());
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let request = request.body(body);
    tokio::spawn(async move {
        match request.send().await {
            Ok(response) => Some(Reply::read(response).await),
            Err(_) => None,
        }
    })
}

impl Reply {
    /// The upload offset a successful HEAD reports.
    #[track_caller]
    pub fn offset(&self) -> u64 {
        assert_eq!(self.status, StatusCode::OK, "HEAD failed: {self:?}");
        self.header("upload-offset")
            .expect("Upload-Offset")
            .parse()
            .expect("numeric Upload-Offset")
    }
}
