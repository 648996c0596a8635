//! Live events as server-sent events (`text/event-stream`): one frame per
//! event (`id`, `event`, `data` as one line of JSON), a comment every
//! `KEEP_ALIVE` so proxies and clients know the stream is alive, and a
//! `lagged` event when the subscriber fell behind. The stream ends when the
//! appliance shuts down, and when the credential that opened it expires (a
//! client reconnects with a fresh token, as it would after any drop).

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

use crate::events::{Received, Subscription};
use crate::shutdown::Shutdown;

use super::{Body, BoxError};

/// How often an idle stream sends a comment. Well under the usual 60 s
/// proxy read timeouts.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How long a client waits before reconnecting after the stream ends.
const RETRY_MS: u64 = 3000;

/// `usable_until`: the Unix second after which the opening credential is no
/// longer valid, if it ever stops being.
pub fn stream(
    subscription: Subscription,
    shutdown: Shutdown,
    usable_until: Option<u64>,
) -> Response<Body> {
    let hello = Bytes::from(format!(": strongroom events\nretry: {RETRY_MS}\n\n"));
    // The credential is good through the whole second `until`.
    let expiry = usable_until.map_or(Duration::MAX, |until| {
        let end = std::time::UNIX_EPOCH + Duration::from_secs(until.saturating_add(1));
        end.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO)
    });
    let end = tokio::time::Instant::now()
        .checked_add(expiry)
        .unwrap_or_else(far_future);
    let stop = async move {
        tokio::select! {
            () = shutdown.wait() => {}
            () = tokio::time::sleep_until(end) => {}
        }
    };
    let state = (subscription, Some(hello), Box::pin(stop));
    let frames = stream::unfold(state, |(mut subscription, hello, mut stop)| async move {
        if let Some(hello) = hello {
            return Some((Ok(Frame::data(hello)), (subscription, None, stop)));
        }
        let frame = tokio::select! {
            () = &mut stop => return None,
            received = tokio::time::timeout(KEEP_ALIVE, subscription.next()) => match received {
                Err(_) => Bytes::from_static(b": keep-alive\n\n"),
                Ok(Received::Event(event)) => Bytes::from(format!(
                    "id: {}\nevent: {}\ndata: {}\n\n",
                    event.seq,
                    event.detail.kind(),
                    event.data_json()
                )),
                Ok(Received::Missed(missed)) => Bytes::from(format!(
                    "event: lagged\ndata: {{\"missed\":{missed}}}\n\n"
                )),
                Ok(Received::Closed) => return None,
            },
        };
        Some((
            Ok::<_, BoxError>(Frame::data(frame)),
            (subscription, None, stop),
        ))
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // nginx buffers responses unless told not to; events must arrive at once.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// A deadline no stream reaches (a year from now).
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600)
}
