//! Object store: reads sealed bytes back as plaintext — committed objects for
//! downloads, staged bytes for replays and concatenation. Opens every segment
//! (tag verified) before a byte of it leaves; serves byte ranges. Never
//! writes, never sees HTTP types or the index.
//!
//! Its callers hand it an open segment file, the object's keys, layout and
//! write generations (from its record), so a later object-store backend (an
//! S3-compatible cluster) only has to supply a different `DiskFile`.
//!
//! `manifest` signs and verifies objects' manifests; its key file is the one
//! thing here that is ever written (once, when it is created).

pub mod manifest;
mod range;

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::crypto::{self, Generations, ObjectKeys, Sha256, seg1};
use crate::disk::DiskFile;

pub use range::{ByteRange, RangeRequest, parse_range};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading segment file: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Crypto(#[from] crypto::Error),
}

/// Where an object's or upload's plaintext lives.
#[derive(Clone)]
pub enum Layout {
    /// A committed object: `length` bytes, ending with a final segment.
    Committed { length: u64 },
    /// An upload in progress: full segments in the file plus an optional
    /// sealed tail record holding the rest.
    Staged {
        offset: u64,
        tail: Option<Arc<Vec<u8>>>,
    },
}

impl Layout {
    pub fn len(&self) -> u64 {
        match self {
            Layout::Committed { length } => *length,
            Layout::Staged { offset, .. } => *offset,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads plaintext segments of one object. Blocking: use from blocking threads.
pub struct PlainReader {
    file: Arc<dyn DiskFile>,
    keys: Arc<ObjectKeys>,
    layout: Layout,
    /// The generation each segment and the tail record were sealed under.
    generations: Generations,
}

const SEGMENT: u64 = seg1::SEGMENT_SIZE as u64;

impl PlainReader {
    pub fn new(
        file: Arc<dyn DiskFile>,
        keys: Arc<ObjectKeys>,
        layout: Layout,
        generations: Generations,
    ) -> PlainReader {
        PlainReader {
            file,
            keys,
            layout,
            generations,
        }
    }

    pub fn len(&self) -> u64 {
        self.layout.len()
    }

    pub fn is_empty(&self) -> bool {
        self.layout.is_empty()
    }

    /// The plaintext of segment `index`, verified.
    pub fn segment(&self, index: u64) -> Result<Bytes, Error> {
        match &self.layout {
            Layout::Committed { length } => {
                let last = length / SEGMENT;
                let plain_len = if index == last {
                    (length % SEGMENT) as usize
                } else {
                    seg1::SEGMENT_SIZE
                };
                self.open_from_file(index, index == last, plain_len)
            }
            Layout::Staged { offset, tail } => {
                if index < offset / SEGMENT {
                    self.open_from_file(index, false, seg1::SEGMENT_SIZE)
                } else {
                    let sealed = tail.as_ref().ok_or_else(|| crypto::Error::Integrity {
                        what: format!("missing tail record at segment {index}"),
                    })?;
                    let generation = self.generations.tail();
                    Ok(Bytes::from(self.keys.open_tail(index, generation, sealed)?))
                }
            }
        }
    }

    fn open_from_file(&self, index: u64, is_final: bool, plain_len: usize) -> Result<Bytes, Error> {
        let mut sealed = vec![0u8; seg1::sealed_len(plain_len)];
        self.file
            .read_at(seg1::segment_offset(index), &mut sealed)?;
        let generation = self.generations.of(index);
        let plain_len = self
            .keys
            .open_segment(index, generation, is_final, &mut sealed)?
            .len();
        // Decrypted in place (SEG1 lays out nonce || ciphertext || tag): hand
        // out the plaintext part of the same buffer.
        Ok(Bytes::from(sealed).slice(seg1::NONCE_LEN..seg1::NONCE_LEN + plain_len))
    }

    /// Sends `range` of the plaintext as chunks, one segment at a time. The
    /// channel's capacity is the backpressure: a slow reader stalls this loop
    /// instead of growing memory. Stops quietly when the receiver is gone and
    /// sends an error (never unverified bytes) when a segment fails to open.
    pub fn stream(&self, range: ByteRange, tx: &mpsc::Sender<Result<Bytes, Error>>) {
        if range.is_empty() {
            return;
        }
        let first = range.start / SEGMENT;
        let last = (range.end - 1) / SEGMENT;
        for index in first..=last {
            let chunk = self.segment(index).map(|plain| {
                let segment_start = index * SEGMENT;
                let from = range.start.saturating_sub(segment_start) as usize;
                let to = ((range.end - segment_start).min(plain.len() as u64)) as usize;
                plain.slice(from..to)
            });
            let failed = chunk.is_err();
            if tx.blocking_send(chunk).is_err() || failed {
                return;
            }
        }
    }

    /// Sends the whole plaintext of a committed object like
    /// [`stream`](Self::stream), but holds the last chunk back until the
    /// object is proven whole: the final segment opened (even when empty) and
    /// the SHA-256 of everything sent equal to `sha256`, the digest recorded
    /// at commit. Write generations make a stale copy of a segment's own
    /// index (sealed for a chunk that was later discarded, then replayed from
    /// an old copy of the file) fail its tag; the digest still covers what
    /// they cannot, such as objects whose chunks were discarded before
    /// generations existed. On a mismatch the last chunk is replaced by an
    /// error, so a transfer of wrong bytes never completes.
    pub fn stream_whole(&self, sha256: [u8; 32], tx: &mpsc::Sender<Result<Bytes, Error>>) {
        let Layout::Committed { length } = self.layout else {
            return self.stream(ByteRange::full(self.len()), tx);
        };
        // The last segment holding data; the final segment may be empty.
        let last_data = length.saturating_sub(1) / SEGMENT;
        let mut digest = Sha256::new();
        let mut held: Option<Bytes> = None;
        for index in 0..seg1::segment_count(length) {
            let plain = match self.segment(index) {
                Ok(plain) => plain,
                Err(err) => {
                    let _ = tx.blocking_send(Err(err));
                    return;
                }
            };
            digest.update(&plain);
            if index < last_data {
                if tx.blocking_send(Ok(plain)).is_err() {
                    return;
                }
            } else if !plain.is_empty() {
                held = Some(plain);
            }
        }
        let last = if digest.finish() == sha256 {
            held.map(Ok)
        } else {
            Some(Err(Error::Crypto(crypto::Error::Integrity {
                what: "object digest (SHA-256 differs from the committed one)".into(),
            })))
        };
        if let Some(last) = last {
            let _ = tx.blocking_send(last);
        }
    }

    /// Calls `each` with every plaintext segment in order (replays and
    /// concatenation).
    pub fn for_each_segment(
        &self,
        mut each: impl FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let len = self.len();
        let count = match &self.layout {
            Layout::Committed { .. } => len / SEGMENT + 1,
            Layout::Staged { tail, .. } => len / SEGMENT + u64::from(tail.is_some()),
        };
        for index in 0..count {
            each(&self.segment(index)?)?;
        }
        Ok(())
    }
}
