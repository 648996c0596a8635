//! Connections, for both listeners: the accept loop, the global and
//! per-address connection limits, the TLS handshake (in each connection's
//! own task, bounded), the send timeout that closes a connection whose peer
//! stopped reading, hyper's HTTP/1.1 and HTTP/2 limits, and the graceful
//! drain. Hands each connection's service a `Peer`. Never routes requests,
//! reads bodies or chooses statuses.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};

use super::Body;
use super::tls::{Alpn, Tls};
use crate::config::ServerConfig;

/// Who is on the other end of a connection.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// Set only after a handshake that verified it against `tls.client_ca`.
    pub client_cert: Option<ClientCert>,
}

/// Logs show a peer by its address.
impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.addr.fmt(f)
    }
}

/// A client certificate the TLS handshake verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// SHA-256 of the leaf certificate's DER.
    pub sha256: [u8; 32],
    /// The subject's common name, when it has a printable one.
    pub common_name: Option<String>,
}

/// hyper's connection settings, one per protocol a TLS client can pick with
/// ALPN; `auto` (which sniffs the HTTP/2 preface) serves plain connections.
struct Builders {
    auto: auto::Builder<TokioExecutor>,
    http1: auto::Builder<TokioExecutor>,
    http2: auto::Builder<TokioExecutor>,
}

impl Builders {
    fn new(limits: &ServerConfig) -> Builders {
        let auto = connection_builder(limits);
        Builders {
            http1: auto.clone().http1_only(),
            http2: auto.clone().http2_only(),
            auto,
        }
    }

    fn for_alpn(&self, alpn: Alpn) -> &auto::Builder<TokioExecutor> {
        match alpn {
            Alpn::Http2 => &self.http2,
            Alpn::Http1 => &self.http1,
            Alpn::None => &self.auto,
        }
    }
}

fn connection_builder(limits: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // The timer is what makes the header read timeout real; hyper starts
        // it whenever it waits for a request head, so it also bounds how long
        // an idle keep-alive connection stays open.
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.as_u64() as usize)
        .max_headers(limits.max_headers)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_pending_accept_reset_streams(limits.h2_max_pending_accept_reset_streams)
        .max_local_error_reset_streams(limits.h2_max_local_error_reset_streams)
        // The HTTP/2 header list limit is the same budget as HTTP/1.1's head.
        .max_header_list_size(limits.max_header_bytes.as_u64() as u32)
        .keep_alive_interval(limits.keep_alive_timeout)
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// What every connection task shares.
struct Shared<F> {
    builders: Builders,
    make_service: F,
    tls: Option<Arc<Tls>>,
    send_timeout: Duration,
}

/// Accepts on `listener` until `shutdown` resolves, then drains connections
/// for at most `limits.shutdown_grace`. `make_service` runs in each
/// connection's task, after the TLS handshake when there is one.
pub(super) async fn serve<S, F>(
    listener: TcpListener,
    limits: &ServerConfig,
    tls: Option<Arc<Tls>>,
    make_service: F,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn(Peer) -> S + Send + Sync + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    // One permit per socket: past the limit new connections are closed at
    // once instead of queueing unbounded work.
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let addresses = Arc::new(AddressSlots::new(limits.max_connections_per_address));
    let shared = Arc::new(Shared {
        builders: Builders::new(limits),
        make_service,
        tls,
        send_timeout: limits.send_timeout,
    });
    // The certificate watcher lives exactly as long as this listener.
    let _reloads = shared
        .tls
        .clone()
        .map(|tls| AbortOnDrop(tokio::spawn(tls.watch())));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of descriptors and similar: back off rather than spin.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(peer = %addr, "connection limit reached; closing new connection");
            continue;
        };
        let Some(slot) = addresses.claim(addr.ip()) else {
            // Debug, not warn: one line per refused connection would let a
            // single address flood the log.
            tracing::debug!(peer = %addr, "per-address connection limit reached; closing new connection");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            connection(stream, addr, &shared, watcher).await;
            drop(slot);
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period; closing them");
    }
}

/// One connection from accept to close: the handshake when TLS is on, then
/// HTTP until either side ends it or the drain does.
async fn connection<S, F>(stream: TcpStream, addr: SocketAddr, shared: &Shared<F>, watcher: Watcher)
where
    F: Fn(Peer) -> S,
    S: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let io = SendTimeout::new(stream, shared.send_timeout);
    let served = match &shared.tls {
        None => {
            let service = (shared.make_service)(Peer {
                addr,
                client_cert: None,
            });
            let connection = shared
                .builders
                .auto
                .serve_connection(TokioIo::new(io), service)
                .into_owned();
            watcher.watch(connection).await
        }
        Some(tls) => {
            let accepted = match tls.accept(io).await {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::debug!(peer = %addr, error = %err, "tls handshake failed");
                    return;
                }
            };
            if let Some(cert) = &accepted.client_cert {
                tracing::debug!(
                    peer = %addr,
                    client_cert_sha256 = %hex::encode(cert.sha256),
                    common_name = cert.common_name.as_deref().unwrap_or(""),
                    "client certificate verified"
                );
            }
            let service = (shared.make_service)(Peer {
                addr,
                client_cert: accepted.client_cert,
            });
            let connection = shared
                .builders
                .for_alpn(accepted.alpn)
                .serve_connection(TokioIo::new(accepted.stream), service)
                .into_owned();
            watcher.watch(connection).await
        }
    };
    if let Err(err) = served {
        tracing::debug!(peer = %addr, error = %err, "connection ended with an error");
    }
}

/// Open connections per client IP address.
struct AddressSlots {
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl AddressSlots {
    fn new(limit: usize) -> AddressSlots {
        AddressSlots {
            limit,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for one more connection from `ip`, or `None` at the limit.
    fn claim(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        // An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d.
        let ip = ip.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(ip).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            slots: self.clone(),
            ip,
        })
    }

    fn release(&self, ip: IpAddr) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                // Keeps the map as small as the set of connected addresses.
                open.remove(&ip);
            }
        }
    }
}

/// Released when the connection's task ends.
struct AddressSlot {
    slots: Arc<AddressSlots>,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        self.slots.release(self.ip);
    }
}

/// Aborts a task its owner no longer needs.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Connection IO whose writes fail once they have been blocked for `limit`:
/// a peer that stops reading (a download it never consumes) cannot hold a
/// connection and its buffers forever. Any progress restarts the clock.
pub(super) struct SendTimeout<T> {
    inner: T,
    limit: Duration,
    /// Allocated at the first stall and reused after.
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether a write or flush is blocked right now (the timer runs).
    stalled: bool,
}

impl<T> SendTimeout<T> {
    pub(super) fn new(inner: T, limit: Duration) -> SendTimeout<T> {
        SendTimeout {
            inner,
            limit,
            timer: None,
            stalled: false,
        }
    }

    /// Called when the inner write is pending: starts the clock at the
    /// first pending poll, and errors once it runs out. Polling the timer
    /// registers the task's waker, so a peer that never reads again still
    /// wakes the connection.
    fn poll_stalled(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let deadline = Instant::now() + self.limit;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.stalled {
            timer.as_mut().reset(deadline);
            self.stalled = true;
        }
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the peer read nothing for {:?} (server.send_timeout)",
                self.limit
            ),
        ))
    }

    fn after<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match polled {
            Poll::Ready(result) => {
                self.stalled = false;
                Poll::Ready(result)
            }
            Poll::Pending => self.poll_stalled(cx).map(Err),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for SendTimeout<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for SendTimeout<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.after(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.after(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.after(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_slots_close_past_the_limit_and_reopen_when_released() {
        let slots = Arc::new(AddressSlots::new(2));
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let first = slots.claim(ip).unwrap();
        let _second = slots.claim(ip).unwrap();
        assert!(slots.claim(ip).is_none());
        // Another address has its own budget; a mapped IPv4 address is the same one.
        assert!(slots.claim("192.0.2.8".parse().unwrap()).is_some());
        assert!(slots.claim("::ffff:192.0.2.7".parse().unwrap()).is_none());
        drop(first);
        assert!(slots.claim(ip).is_some());
    }

    #[test]
    fn released_addresses_leave_the_map() {
        let slots = Arc::new(AddressSlots::new(1));
        drop(slots.claim("192.0.2.9".parse().unwrap()).unwrap());
        assert!(slots.open.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_write_blocked_past_the_send_timeout_fails() {
        use tokio::io::AsyncWriteExt;
        // A peer that never reads: a 64-byte pipe fills at once.
        let (near, _far) = tokio::io::duplex(64);
        let limit = Duration::from_millis(300);
        let mut io = SendTimeout::new(near, limit);
        let started = Instant::now();
        let err = io.write_all(&[0u8; 4096]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= limit);
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_reading_is_not_cut() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (near, mut far) = tokio::io::duplex(64);
        let mut io = SendTimeout::new(near, Duration::from_millis(300));
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let mut total = 0;
            while total < 1024 {
                // Far slower than one timeout for the whole transfer, but
                // never stalled for a whole one.
                tokio::time::sleep(Duration::from_millis(50)).await;
                total += far.read(&mut buf).await.unwrap();
            }
        });
        io.write_all(&[0u8; 1024]).await.unwrap();
        reader.await.unwrap();
    }

    #[tokio::test]
    async fn an_idle_spell_does_not_count_against_the_next_write() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (near, mut far) = tokio::io::duplex(64);
        let limit = Duration::from_millis(300);
        let mut io = SendTimeout::new(near, limit);
        // A stall that ends in time arms the timer once...
        let drain = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut buf = [0u8; 128];
            far.read_exact(&mut buf).await.unwrap();
            far
        });
        io.write_all(&[0u8; 128]).await.unwrap();
        let mut far = drain.await.unwrap();
        // ...then nothing is written for longer than the limit...
        tokio::time::sleep(limit * 2).await;
        // ...and the next stall still gets its whole limit.
        let later = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut buf = [0u8; 128];
            far.read_exact(&mut buf).await.unwrap();
        });
        io.write_all(&[0u8; 128]).await.unwrap();
        later.await.unwrap();
    }
}
