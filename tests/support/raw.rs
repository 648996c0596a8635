//! HTTP/1.1 spoken by hand over a `TcpStream`, for what reqwest will not send:
//! trailers, unnormalised paths, conflicting framing headers, cut bodies.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a raw exchange may take before the test fails.
pub const RAW_TIMEOUT: Duration = Duration::from_secs(10);

/// A response parsed just enough for assertions.
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    /// Header lines, `name: value`, as received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawReply {
    /// Parses the first response in `bytes` (status line, headers, the rest
    /// as body). `None` when not even a status line arrived.
    pub fn parse(bytes: &[u8]) -> Option<RawReply> {
        let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&bytes[..end]).ok()?;
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        Some(RawReply {
            status,
            headers,
            body: bytes[end + 4..].to_vec(),
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(candidate, _)| *candidate == name)
            .map(|(_, value)| value.as_str())
    }

    /// The stable error code of a problem+json body.
    pub fn code(&self) -> String {
        let json: serde_json::Value =
            serde_json::from_slice(&self.body).expect("problem json body");
        json["code"].as_str().unwrap_or_default().to_owned()
    }
}

/// Sends `request` (which should carry `Connection: close`) and reads until
/// the server closes the connection.
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> RawReply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("request written");
    let received = read_to_close(&mut stream).await;
    RawReply::parse(&received).unwrap_or_else(|| {
        panic!(
            "no HTTP response in {:?}",
            String::from_utf8_lossy(&received)
        )
    })
}

/// Everything the server sends until it closes (or resets) the connection.
pub async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(RAW_TIMEOUT, async {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "server did not close the connection in time");
    received
}

/// The head of a tus request on `path`, ending with the blank line.
pub fn tus_head(method: &str, path: &str, extra: &[(&str, &str)]) -> String {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nTus-Resumable: 1.0.0\r\nConnection: close\r\n"
    );
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// `data` as one chunk of chunked transfer coding (without the last chunk).
pub fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}
