//! Transport limits against hostile clients, each spoken for real on
//! 127.0.0.1: slow headers (slowloris), a body below the minimum transfer
//! speed, a download that is never read, too many connections from one
//! address, HTTP/2 rapid reset, and header floods over HTTP/1.1 and HTTP/2.
//! Every test is bounded in time and checks the server still serves others.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::support::raw::{RawReply, read_to_close, tus_head};
use crate::support::*;

const MIB: usize = 1 << 20;

// ---- slow headers ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_cut_while_a_normal_upload_completes() {
    const ATTACKERS: usize = 100;
    let timeout = Duration::from_secs(1);
    let server = TestServer::start_with(|config| {
        config.server.header_read_timeout = timeout;
        // All attackers share 127.0.0.1 with the honest client.
        config.server.max_connections_per_address = 4 * ATTACKERS;
    })
    .await;
    let addr = server.appliance().public_addr;
    let mut attackers = JoinSet::new();
    for n in 0..ATTACKERS {
        attackers.spawn(trickle_headers(addr, n));
    }
    // Let every attacker connect and start trickling.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    let data = bytes(MIB, 41);
    let up = server.create(data.len() as u64).await;
    up.patch(0, &data).await.assert_offset(data.len() as u64);
    up.head().await.assert_offset(data.len() as u64);
    let latency = started.elapsed();
    println!(
        "upload of 1 MiB (POST, PATCH, HEAD) during {ATTACKERS} slowloris connections: {latency:?}"
    );
    assert!(
        latency < Duration::from_secs(10),
        "the upload took {latency:?}"
    );

    let mut cut_after = Vec::new();
    while let Some(outcome) = tokio::time::timeout(Duration::from_secs(15), attackers.join_next())
        .await
        .expect("every slowloris connection ends within 15 s")
    {
        cut_after.push(outcome.unwrap());
    }
    cut_after.sort();
    println!(
        "slowloris connections cut after {:?} (first) to {:?} (last)",
        cut_after[0],
        cut_after[ATTACKERS - 1]
    );
    assert!(
        cut_after[0] >= timeout - Duration::from_millis(200),
        "a connection was cut before the header read timeout: {:?}",
        cut_after[0]
    );
    assert!(
        cut_after[ATTACKERS - 1] < timeout + Duration::from_secs(5),
        "a connection lived {:?} with a header read timeout of {timeout:?}",
        cut_after[ATTACKERS - 1]
    );
}

/// Sends a request head one header line at a time, never finishing it;
/// returns how long the server kept the connection.
async fn trickle_headers(addr: SocketAddr, n: usize) -> Duration {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let started = Instant::now();
    let _ = stream
        .write_all(b"PATCH /files/00000000000000000000000000000000 HTTP/1.1\r\nHost: x\r\n")
        .await;
    let mut buf = [0u8; 1024];
    let mut line = 0;
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return started.elapsed(),
                // hyper answers nothing before the head is complete; a 408
                // would also count as the connection being cut.
                Ok(_) => {}
            },
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                line += 1;
                let header = format!("X-Trickle-{n}-{line}: y\r\n");
                if stream.write_all(header.as_bytes()).await.is_err() {
                    return started.elapsed();
                }
                // The server holds the connection far past any sane limit.
                assert!(started.elapsed() < Duration::from_secs(30), "never cut");
            }
        }
    }
}

// ---- slow bodies ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_below_the_minimum_speed_is_cut_and_its_prefix_kept() {
    let window = Duration::from_secs(2);
    let server = TestServer::start_with(|config| {
        config.server.min_transfer_window = window;
        // The idle timeout must not be what ends it.
        config.server.body_idle_timeout = Duration::from_secs(60);
    })
    .await;
    let data = bytes(100_000, 42);
    let up = server.create(data.len() as u64).await;
    let head = tus_head(
        "PATCH",
        &up.path,
        &[
            ("Content-Type", "application/offset+octet-stream"),
            ("Upload-Offset", "0"),
            ("Content-Length", "100000"),
        ],
    );
    let stream = TcpStream::connect(server.appliance().public_addr)
        .await
        .unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let fast = 10_000;
    let started = Instant::now();
    let sender = {
        let data = data.clone();
        tokio::spawn(async move {
            writer.write_all(head.as_bytes()).await?;
            // A healthy start, then 10 bytes every 300 ms: ~33 B/s against a
            // minimum of 1 KiB/s.
            writer.write_all(&data[..fast]).await?;
            let mut sent = fast;
            while sent < data.len() {
                tokio::time::sleep(Duration::from_millis(300)).await;
                writer.write_all(&data[sent..sent + 10]).await?;
                sent += 10;
            }
            Ok::<_, std::io::Error>(sent)
        })
    };
    let mut received = Vec::new();
    let answered = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
            if RawReply::parse(&received).is_some_and(|reply| {
                reply
                    .header("content-length")
                    .and_then(|len| len.parse::<usize>().ok())
                    .is_some_and(|len| reply.body.len() >= len)
            }) {
                break;
            }
        }
    })
    .await;
    let elapsed = started.elapsed();
    sender.abort();
    assert!(answered.is_ok(), "the slow PATCH was not cut within 20 s");
    let reply = RawReply::parse(&received).expect("an HTTP answer to the slow PATCH");
    println!("slow body cut after {elapsed:?} with {}", reply.status);
    assert_eq!(
        reply.status,
        408,
        "{:?}",
        String::from_utf8_lossy(&received)
    );
    assert_eq!(reply.code(), "body_too_slow");
    // A whole window of fast bytes, then at least one slow window.
    assert!(
        elapsed >= window * 2 - Duration::from_millis(300),
        "cut after {elapsed:?}"
    );

    // What was received is durable, HEAD says how much, and the upload
    // resumes from there to the exact bytes.
    let head = up.head().await;
    head.assert_status(200);
    let offset: usize = head.header("upload-offset").unwrap().parse().unwrap();
    assert!((fast..data.len()).contains(&offset), "offset {offset}");
    up.patch(offset as u64, &data[offset..])
        .await
        .assert_offset(data.len() as u64);
    assert_eq!(up.get().await.body, data);
}

// ---- slow readers --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_that_is_never_read_is_cut_after_the_send_timeout() {
    let size = 24 * MIB;
    let stall = Duration::from_secs(4);
    let cut = stalled_download(Duration::from_secs(1), size, stall).await;
    println!(
        "a download of {size} bytes not read for {stall:?}: {cut} bytes arrived with send_timeout 1s"
    );
    assert!(
        cut < size,
        "the whole object was delivered: the server waited for the reader"
    );
    // The same client with a send timeout longer than its pause gets it all:
    // the cut above is the send timeout's doing.
    let whole = stalled_download(Duration::from_secs(30), size, stall).await;
    assert_eq!(whole, size, "with send_timeout 30s");
}

/// Downloads a `size`-byte object on a connection that reads nothing for
/// `stall` after sending the request, then reads to the end; returns how
/// many body bytes arrived.
async fn stalled_download(send_timeout: Duration, size: usize, stall: Duration) -> usize {
    let server = TestServer::start_with(|config| {
        config.server.send_timeout = send_timeout;
    })
    .await;
    let data = bytes(size, 43);
    let up = server.create(size as u64).await;
    for (n, piece) in data.chunks(8 * MIB).enumerate() {
        up.patch((n * 8 * MIB) as u64, piece)
            .await
            .assert_status(204);
    }

    // A small receive window, so the server's writes block soon.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 << 10).unwrap();
    let mut stream = socket
        .connect(server.appliance().public_addr)
        .await
        .unwrap();
    let get = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        up.object_path()
    );
    stream.write_all(get.as_bytes()).await.unwrap();
    tokio::time::sleep(stall).await;
    let received = read_to_close(&mut stream).await;
    let reply = RawReply::parse(&received).expect("the response head arrived");
    assert_eq!(reply.status, 200);
    // Others are still served.
    server
        .send("OPTIONS", "/files/", &[], Vec::new())
        .await
        .assert_status(204);
    reply.body.len()
}

// ---- connections per address -----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_per_address_limit_are_closed_at_once() {
    const LIMIT: usize = 4;
    let server = TestServer::start_with(|config| {
        config.server.max_connections_per_address = LIMIT;
    })
    .await;
    let addr = server.appliance().public_addr;
    let mut held = Vec::new();
    for _ in 0..LIMIT {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // Served, and kept alive for the next request.
        assert_eq!(options(&mut stream).await, Some(204));
        held.push(stream);
    }

    let mut extra = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let answer = options(&mut extra).await;
    assert_eq!(answer, None, "a connection past the limit was served");
    println!(
        "connection past the limit closed after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    // Closing some frees their slots once the server sees them gone.
    held.truncate(LIMIT - 2);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        if options(&mut stream).await == Some(204) {
            break;
        }
        assert!(Instant::now() < deadline, "no slot was released within 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The connections still held were never disturbed.
    for stream in &mut held {
        assert_eq!(options(stream).await, Some(204));
    }
}

/// An OPTIONS request on a kept-alive connection: its status, or `None`
/// when the server closed the connection instead of answering.
async fn options(stream: &mut TcpStream) -> Option<u16> {
    let request = b"OPTIONS /files/ HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n\r\n";
    if stream.write_all(request).await.is_err() {
        return None;
    }
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
            // OPTIONS answers have no body: the head is the whole answer.
            if let Some(reply) = RawReply::parse(&received) {
                return Some(reply.status);
            }
        }
    })
    .await;
    read.expect("an answer or a close within 5 s")
}

// ---- HTTP/2 rapid reset ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_rapid_reset_gets_goaway_and_other_clients_are_served() {
    let server = TestServer::start().await;
    let addr = server.appliance().public_addr;
    let budget = server.config.server.h2_max_pending_accept_reset_streams;
    const PAIRS: u32 = 1000;
    let outcome = rapid_reset(addr, PAIRS).await;
    println!(
        "rapid reset: {PAIRS} HEADERS+RST_STREAM pairs in one burst (budget {budget}): {outcome:?}"
    );
    assert_eq!(
        outcome.goaway,
        Some(ENHANCE_YOUR_CALM),
        "the server did not answer the flood with GOAWAY ENHANCE_YOUR_CALM: {outcome:?}"
    );
    assert!(
        outcome.closed,
        "the flooding connection stayed open: {outcome:?}"
    );

    // A fresh, well-behaved HTTP/2 client is served.
    let request = Request::options(format!("http://{addr}/files/"))
        .body(())
        .unwrap();
    let (status, _) = h2_request(addr, request).await;
    assert_eq!(status.ok(), Some(204));

    // With the budget raised past the flood, the same burst is only
    // answered: the GOAWAY above is the budget's doing.
    let lenient = TestServer::start_with(|config| {
        config.server.h2_max_pending_accept_reset_streams = 10 * PAIRS as usize;
    })
    .await;
    let outcome = rapid_reset(lenient.appliance().public_addr, PAIRS).await;
    assert_eq!(outcome.goaway, None, "{outcome:?}");
    assert!(!outcome.closed, "{outcome:?}");
}

/// HTTP/2's error code for "you are abusing the connection".
const ENHANCE_YOUR_CALM: u32 = 0xb;

#[derive(Debug)]
struct FloodOutcome {
    /// The error code of the server's GOAWAY, if one came.
    goaway: Option<u32>,
    /// Whether the server closed the connection afterwards.
    closed: bool,
}

/// Speaks HTTP/2 (prior knowledge) frame by frame, as an attacker would:
/// `pairs` requests, each cancelled at once, written in one burst without
/// waiting for any answer. Client libraries pace themselves; this does not.
async fn rapid_reset(addr: SocketAddr, pairs: u32) -> FloodOutcome {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(0x4, 0, 0, &[])); // SETTINGS, none changed
    stream.write_all(&out).await.unwrap();
    // The server's SETTINGS come first; acknowledge them before the flood.
    let mut frames = H2Frames::default();
    let first = frames
        .next(&mut stream)
        .await
        .expect("the server's SETTINGS");
    assert_eq!(first.0, 0x4, "first frame from the server is SETTINGS");
    let mut burst = h2_frame(0x4, 0x1, 0, &[]);
    // GET / (HPACK static table: :method GET, :scheme http, :path /).
    let request = [0x82, 0x86, 0x84];
    for n in 0..pairs {
        let id = 2 * n + 1;
        burst.extend(h2_frame(0x1, 0x4 | 0x1, id, &request)); // HEADERS, END_HEADERS|END_STREAM
        burst.extend(h2_frame(0x3, 0, id, &8u32.to_be_bytes())); // RST_STREAM CANCEL
    }
    // The server may close before it has read all of it.
    let _ = stream.write_all(&burst).await;
    let mut goaway = None;
    let closed = loop {
        // A connection that stays quiet this long after the burst was
        // left open.
        match tokio::time::timeout(Duration::from_secs(2), frames.next(&mut stream)).await {
            Err(_) => break false,
            Ok(None) => break true,
            Ok(Some((0x7, payload))) if payload.len() >= 8 => {
                goaway = Some(u32::from_be_bytes([
                    payload[4], payload[5], payload[6], payload[7],
                ]));
            }
            Ok(Some(_)) => {}
        }
    };
    FloodOutcome { goaway, closed }
}

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut frame = len.to_be_bytes()[1..].to_vec();
    frame.extend([kind, flags]);
    frame.extend(stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Frames read off a raw HTTP/2 connection: (type, payload).
#[derive(Default)]
struct H2Frames {
    buffer: Vec<u8>,
}

impl H2Frames {
    /// The next frame, or `None` once the server closed (or reset) the
    /// connection.
    async fn next(&mut self, stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buffer.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buffer[0], self.buffer[1], self.buffer[2]]);
                let end = 9 + len as usize;
                if self.buffer.len() >= end {
                    let kind = self.buffer[3];
                    let payload = self.buffer[9..end].to_vec();
                    self.buffer.drain(..end);
                    return Some((kind, payload));
                }
            }
            let mut buf = [0u8; 16 << 10];
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buffer.extend_from_slice(&buf[..n]),
            }
        }
    }
}

/// One request on a new h2c (prior knowledge) connection: its status, or
/// the stream error, and the response body.
async fn h2_request(addr: SocketAddr, request: Request<()>) -> (Result<u16, h2::Error>, Bytes) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let exchange = async {
        let (client, connection) = h2::client::handshake(tcp).await?;
        tokio::spawn(connection);
        let mut client = client.ready().await?;
        let (response, _) = client.send_request(request, true)?;
        let response = response.await?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            let _ = body.flow_control().release_capacity(chunk.len());
            bytes.extend_from_slice(&chunk);
        }
        Ok::<_, h2::Error>((status, Bytes::from(bytes)))
    };
    match tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("an h2 answer within 10 s")
    {
        Ok((status, body)) => (Ok(status), body),
        Err(err) => (Err(err), Bytes::new()),
    }
}

// ---- header floods ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_or_too_large_headers_are_refused_over_http1_and_h2() {
    let server = TestServer::start().await;
    let addr = server.appliance().public_addr;
    let max_headers = server.config.server.max_headers;
    let many: Vec<(String, String)> = (0..max_headers + 10)
        .map(|n| (format!("x-flood-{n}"), "1".to_owned()))
        .collect();
    let huge = "a".repeat(server.config.server.max_header_bytes.as_u64() as usize + 1024);

    // HTTP/1.1: hyper answers 431 itself.
    let mut head = String::from("OPTIONS /files/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (name, value) in &many {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let reply = crate::support::raw::exchange(addr, head.as_bytes()).await;
    assert_eq!(reply.status, 431, "HTTP/1.1, {} headers", many.len());
    let head = format!(
        "OPTIONS /files/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Huge: {huge}\r\n\r\n"
    );
    let reply = crate::support::raw::exchange(addr, head.as_bytes()).await;
    assert_eq!(reply.status, 431, "HTTP/1.1, a {} byte header", huge.len());

    // HTTP/2: too many fields get a 431 problem on their stream.
    let mut request = Request::options(format!("http://{addr}/files/"));
    for (name, value) in &many {
        request = request.header(name.as_str(), value.as_str());
    }
    let (status, body) = h2_request(addr, request.body(()).unwrap()).await;
    assert_eq!(
        status.as_ref().ok(),
        Some(&431),
        "h2, {} headers: {status:?}",
        many.len()
    );
    let problem: serde_json::Value = serde_json::from_slice(&body).expect("problem json");
    assert_eq!(problem["code"], "too_many_headers");

    // HTTP/2: a header block over the limit is refused on its stream
    // (431, or the stream reset with REFUSED_STREAM), not the connection.
    let request = Request::options(format!("http://{addr}/files/"))
        .header("x-huge", huge.as_str())
        .body(())
        .unwrap();
    let (status, _) = h2_request(addr, request).await;
    match status {
        Ok(431) => {}
        Err(err) if err.reason() == Some(h2::Reason::REFUSED_STREAM) => {}
        other => panic!("h2, a {} byte header: {other:?}", huge.len()),
    }

    // And the server serves normal requests after all of it.
    let (status, _) = h2_request(
        addr,
        Request::options(format!("http://{addr}/files/"))
            .body(())
            .unwrap(),
    )
    .await;
    assert_eq!(status.ok(), Some(204));
    server
        .send("OPTIONS", "/files/", &[], Vec::new())
        .await
        .assert_status(204);
}
