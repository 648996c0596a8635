//! Request bodies as the pipeline wants them: data frames, plus the tus
//! checksum if it arrives as a trailer, cut with `BodyError::TooSlow` when
//! the client sends slower than `server.min_transfer_speed`. Never collects
//! a body.

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use tokio::time::Instant;

use crate::config::ServerConfig;
use crate::ingest::{BodyChunk, BodyError, BodyStream};
use crate::tus::{self, parse};

/// The minimum transfer speed a request body must keep up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferLimits {
    /// 0 turns the check off.
    pub min_bytes_per_sec: u64,
    pub window: Duration,
}

impl TransferLimits {
    pub fn from_config(limits: &ServerConfig) -> TransferLimits {
        TransferLimits {
            min_bytes_per_sec: limits.min_transfer_speed.as_u64(),
            window: limits.min_transfer_window,
        }
    }
}

impl Default for TransferLimits {
    fn default() -> Self {
        TransferLimits::from_config(&ServerConfig::default())
    }
}

pub fn chunks(body: Incoming, limits: TransferLimits) -> BodyStream {
    let reader = Reader {
        body,
        meter: SpeedMeter::new(limits),
    };
    Box::pin(stream::unfold(Some(reader), |state| async move {
        let mut reader = state?;
        loop {
            let frame = match reader.next_frame().await? {
                Ok(frame) => frame,
                Err(err) => return Some((Err(err), None)),
            };
            let frame = match frame.into_data() {
                Ok(data) if data.is_empty() => continue,
                Ok(data) => return Some((Ok(BodyChunk::Data(data)), Some(reader))),
                Err(frame) => frame,
            };
            if let Ok(trailers) = frame.into_trailers()
                && trailers.contains_key("upload-checksum")
            {
                let item = parse::parse_trailer_checksum(&trailers)
                    .map(|c| BodyChunk::TrailerChecksum(tus::chunk_checksum(&c)))
                    .map_err(|e| BodyError::BadTrailer(e.to_string()));
                return Some((item, Some(reader)));
            }
        }
    }))
}

/// A body for requests that have none (OPTIONS, HEAD, DELETE).
pub fn empty() -> BodyStream {
    Box::pin(stream::empty())
}

struct Reader {
    body: Incoming,
    meter: SpeedMeter,
}

impl Reader {
    /// The next frame; `None` at the end of the body.
    async fn next_frame(&mut self) -> Option<Result<Frame<Bytes>, BodyError>> {
        loop {
            let started = Instant::now();
            let frame = tokio::select! {
                // `frame()` only polls the body, so dropping it when the
                // window closes loses nothing.
                frame = self.body.frame() => frame,
                () = tokio::time::sleep(self.meter.time_left()), if self.meter.enabled() => {
                    if let Err(err) = self.meter.record(started.elapsed(), 0) {
                        return Some(Err(err));
                    }
                    continue;
                }
            };
            let frame = match frame? {
                Ok(frame) => frame,
                Err(err) => return Some(Err(BodyError::Disconnected(err.to_string()))),
            };
            let len = frame.data_ref().map_or(0, |data| data.len() as u64);
            if let Err(err) = self.meter.record(started.elapsed(), len) {
                return Some(Err(err));
            }
            return Some(Ok(frame));
        }
    }
}

/// Bytes received over time spent waiting for the client, in windows of
/// `limits.window`. Only the time this reader waits counts: while the
/// server itself is busy (storage, plugins, memory budget) the body is not
/// read, and that is not the client's slowness.
#[derive(Debug)]
struct SpeedMeter {
    limits: TransferLimits,
    waited: Duration,
    bytes: u64,
}

impl SpeedMeter {
    fn new(limits: TransferLimits) -> SpeedMeter {
        SpeedMeter {
            limits,
            waited: Duration::ZERO,
            bytes: 0,
        }
    }

    fn enabled(&self) -> bool {
        self.limits.min_bytes_per_sec > 0
    }

    fn time_left(&self) -> Duration {
        self.limits.window.saturating_sub(self.waited)
    }

    /// Adds `waited` and `bytes`; once a whole window has been waited, the
    /// window is judged and a new one starts.
    fn record(&mut self, waited: Duration, bytes: u64) -> Result<(), BodyError> {
        if !self.enabled() {
            return Ok(());
        }
        self.waited += waited;
        self.bytes += bytes;
        if self.waited < self.limits.window {
            return Ok(());
        }
        let needed = u128::from(self.limits.min_bytes_per_sec) * self.waited.as_millis() / 1000;
        if u128::from(self.bytes) < needed {
            return Err(BodyError::TooSlow {
                min_bytes_per_sec: self.limits.min_bytes_per_sec,
                window: self.limits.window,
            });
        }
        self.waited = Duration::ZERO;
        self.bytes = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter(min_bytes_per_sec: u64, window_secs: u64) -> SpeedMeter {
        SpeedMeter::new(TransferLimits {
            min_bytes_per_sec,
            window: Duration::from_secs(window_secs),
        })
    }

    #[test]
    fn a_window_at_the_minimum_speed_passes_and_starts_a_new_one() {
        let mut meter = meter(1024, 30);
        for _ in 0..30 {
            meter.record(Duration::from_secs(1), 1024).unwrap();
        }
        assert_eq!(meter.time_left(), Duration::from_secs(30));
    }

    #[test]
    fn a_window_below_the_minimum_speed_is_too_slow() {
        let mut meter = meter(1024, 30);
        meter
            .record(Duration::from_secs(29), 30 * 1024 - 1)
            .unwrap();
        let err = meter.record(Duration::from_secs(1), 0).unwrap_err();
        assert!(matches!(
            err,
            BodyError::TooSlow {
                min_bytes_per_sec: 1024,
                ..
            }
        ));
    }

    #[test]
    fn a_fast_burst_carries_a_quiet_rest_of_the_window() {
        let mut meter = meter(1024, 30);
        meter.record(Duration::from_millis(10), 1 << 20).unwrap();
        meter.record(meter.time_left(), 0).unwrap();
    }

    #[test]
    fn zero_turns_the_check_off() {
        let mut meter = meter(0, 30);
        assert!(!meter.enabled());
        meter.record(Duration::from_secs(3600), 0).unwrap();
    }
}
