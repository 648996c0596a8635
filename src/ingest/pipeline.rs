//! The write stage of one PATCH: hash, seal and append, on a blocking thread.
//!
//! Plaintext arrives as network frames; full 64 KiB segments are sealed and
//! appended in small batches, the remainder is kept and, when the request
//! ends, sealed into the tail record. Nothing is acknowledged until the
//! segment file is synced and the record flushed.
//!
//! Every segment and tail record is sealed under the write generation the
//! record gives for its index. Discarding a chunk cuts sealed segments off,
//! so it starts a new generation there first (`crypto::seg1::Generations`):
//! the bytes sent again at those offsets are sealed under it, and the cut
//! segments never open again, even put back from an old copy of the file.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use crate::crypto::{DigestAlgorithm, Hasher, ObjectKeys, Sha256, seg1};
use crate::staging::{
    CommitInfo, Disposition, SegmentWriter, Staging, TailChange, UploadKind, UploadRecord,
    UploadState,
};

use super::{ChunkChecksum, Error, now_secs};

/// Segments sealed before one write call: large enough to amortise the
/// syscall, small enough that 32 concurrent uploads stay within a few MiB.
const SEGMENTS_PER_WRITE: usize = 4;

pub enum StageMsg {
    /// A frame and its share of the memory budget, released once sealed.
    Data(Bytes, OwnedSemaphorePermit),
    End(Ending),
}

/// How the request body ended.
pub enum Ending {
    /// The body ended normally; a trailer may carry the chunk checksum.
    Complete { trailer: Option<ChunkChecksum> },
    /// The client went away, stalled or was superseded: keep what arrived
    /// (unless the chunk carries a checksum, which can't be verified now).
    Interrupted(Error),
}

/// What the client asked us to verify for this chunk.
pub enum ChecksumRule {
    None,
    Header(ChunkChecksum),
    /// Announced as a trailer: the algorithm is only known at the end, so all
    /// supported digests run.
    Trailer,
}

pub struct ChunkPlan {
    pub record: UploadRecord,
    pub tail: Option<Vec<u8>>,
    pub keys: Arc<ObjectKeys>,
    pub sha256: Sha256,
    pub checksum: ChecksumRule,
    /// Bytes beyond `record.offset` this chunk may carry.
    pub limit: u64,
    /// Make progress durable this often mid-request; 0 disables.
    pub checkpoint_every: u64,
    pub expiry_secs: u64,
    /// What the commit makes of the object: released, or pending while the
    /// plugin chain has yet to give its verdict.
    pub disposition: Disposition,
    /// Unix seconds after which the sender may no longer complete the
    /// upload; the chunk is then kept but not committed.
    pub authorized_until: Option<u64>,
}

/// How a chunk settled: the record as durably stored, the digest of
/// `[0, record.offset)` for the next chunk, and whether the request succeeded.
/// After an I/O error `record` and `sha256` are unreliable: the caller must
/// stop using the upload (fail-stop).
pub struct Settled {
    pub record: UploadRecord,
    pub sha256: Sha256,
    pub outcome: Result<(), Error>,
}

pub struct ChunkWriter<'a> {
    staging: &'a Staging,
    plan: ChunkPlan,
    writer: SegmentWriter,
    start_index: u64,
    start_offset: u64,
    received: u64,
    last_durable: u64,
    durable_sha256: Sha256,
    pending: Vec<u8>,
    batch: Vec<u8>,
    batch_count: u64,
    checksums: Vec<(DigestAlgorithm, Hasher)>,
}

impl<'a> ChunkWriter<'a> {
    pub fn new(staging: &'a Staging, mut plan: ChunkPlan) -> Result<ChunkWriter<'a>, Error> {
        let writer = staging.writer(&mut plan.record)?;
        let start_index = writer.next_index();
        let pending = match &plan.tail {
            Some(sealed) => {
                let generation = plan.record.generations.tail();
                plan.keys.open_tail(start_index, generation, sealed)?
            }
            None => Vec::with_capacity(seg1::SEGMENT_SIZE),
        };
        let checksums = match &plan.checksum {
            ChecksumRule::None => Vec::new(),
            ChecksumRule::Header(c) => vec![(c.algorithm, Hasher::new(c.algorithm))],
            ChecksumRule::Trailer => DigestAlgorithm::ALL
                .iter()
                .map(|&alg| (alg, Hasher::new(alg)))
                .collect(),
        };
        let start_offset = plan.record.offset;
        Ok(ChunkWriter {
            staging,
            writer,
            start_index,
            start_offset,
            received: start_offset,
            last_durable: start_offset,
            durable_sha256: plan.sha256.clone(),
            pending,
            batch: Vec::with_capacity(SEGMENTS_PER_WRITE * seg1::SEALED_SEGMENT_LEN),
            batch_count: 0,
            checksums,
            plan,
        })
    }

    /// Runs the stage until the request ends: feeds every frame, then settles.
    pub fn run(mut self, rx: &mut mpsc::Receiver<StageMsg>) -> Settled {
        while let Some(msg) = rx.blocking_recv() {
            match msg {
                StageMsg::Data(bytes, _budget) => {
                    if let Err(err) = self.push(&bytes) {
                        let outcome = self.fail(err);
                        return self.into_settled(outcome);
                    }
                }
                StageMsg::End(ending) => {
                    let outcome = self.settle(ending);
                    return self.into_settled(outcome);
                }
            }
        }
        // The request task vanished (shutdown): treat like a lost connection.
        let outcome = self.settle(Ending::Interrupted(Error::Shutdown));
        self.into_settled(outcome)
    }

    pub fn into_settled(self, outcome: Result<(), Error>) -> Settled {
        Settled {
            record: self.plan.record,
            sha256: self.durable_sha256,
            outcome,
        }
    }

    /// Feeds bytes that did not come from the network (concatenation).
    pub fn push(&mut self, mut data: &[u8]) -> Result<(), Error> {
        let room = self.plan.limit - (self.received - self.start_offset);
        if data.len() as u64 > room {
            return Err(Error::BodyTooLong {
                limit: self.plan.limit,
            });
        }
        self.plan.sha256.update(data);
        for (_, hasher) in &mut self.checksums {
            hasher.update(data);
        }
        self.received += data.len() as u64;
        while !data.is_empty() {
            let take = (seg1::SEGMENT_SIZE - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() == seg1::SEGMENT_SIZE {
                self.seal_full_segment()?;
            }
        }
        if self.plan.checkpoint_every > 0
            && self.received - self.last_durable >= self.plan.checkpoint_every
        {
            self.persist()?;
        }
        Ok(())
    }

    fn seal_full_segment(&mut self) -> Result<(), Error> {
        let index = self.writer.next_index() + self.batch_count;
        let generation = self.plan.record.generations.of(index);
        self.plan
            .keys
            .seal_segment(index, generation, false, &self.pending, &mut self.batch);
        self.pending.clear();
        self.batch_count += 1;
        if self.batch_count as usize == SEGMENTS_PER_WRITE {
            self.write_batch()?;
        }
        Ok(())
    }

    fn write_batch(&mut self) -> Result<(), Error> {
        if self.batch_count > 0 {
            self.writer.append(&self.batch, self.batch_count)?;
            self.batch.clear();
            self.batch_count = 0;
        }
        Ok(())
    }

    /// Makes `[0, received)` durable: segments synced, then tail and record in
    /// one flushed batch.
    fn persist(&mut self) -> Result<(), Error> {
        self.write_batch()?;
        self.writer.sync()?;
        let record = &mut self.plan.record;
        let tail = if self.pending.is_empty() {
            TailChange::Remove
        } else {
            let index = self.writer.next_index();
            let generation = record.generations.of(index);
            record.generations.set_tail(generation);
            TailChange::Set(self.plan.keys.seal_tail(index, generation, &self.pending))
        };
        record.offset = self.received;
        touch(record, self.plan.expiry_secs);
        self.staging.put(record, tail)?;
        self.last_durable = self.received;
        self.durable_sha256 = self.plan.sha256.clone();
        Ok(())
    }

    pub fn settle(&mut self, ending: Ending) -> Result<(), Error> {
        match ending {
            Ending::Complete { trailer } => {
                if let Err(err) = self.verify_checksum(trailer) {
                    return self.fail(err);
                }
                self.finish()
            }
            Ending::Interrupted(reason) => {
                if self.checksums.is_empty() && self.received > self.last_durable {
                    self.persist()?;
                } else if !self.checksums.is_empty() {
                    self.discard()?;
                }
                Err(reason)
            }
        }
    }

    fn verify_checksum(&mut self, trailer: Option<ChunkChecksum>) -> Result<(), Error> {
        let expected = match (&self.plan.checksum, trailer) {
            (ChecksumRule::None, _) => return Ok(()),
            (ChecksumRule::Header(c), _) => c.clone(),
            (ChecksumRule::Trailer, Some(c)) => c,
            (ChecksumRule::Trailer, None) => return Err(Error::MissingTrailerChecksum),
        };
        let index = self
            .checksums
            .iter()
            .position(|(alg, _)| *alg == expected.algorithm)
            .expect("every supported algorithm is hashed");
        let (algorithm, hasher) = self.checksums.swap_remove(index);
        self.checksums.clear();
        // Keep the list non-empty so a failure below still discards the chunk.
        self.checksums.push((algorithm, Hasher::new(algorithm)));
        if hasher.finish() == expected.digest {
            Ok(())
        } else {
            Err(Error::ChecksumMismatch {
                algorithm: algorithm.name(),
            })
        }
    }

    /// Ends the chunk normally: commits if the upload is now complete,
    /// otherwise makes the chunk durable.
    fn finish(&mut self) -> Result<(), Error> {
        let complete = self.plan.record.length == Some(self.received);
        match (&self.plan.record.kind, complete) {
            (UploadKind::Partial, true) => {
                self.persist()?;
                self.plan.record.state = UploadState::PartComplete;
                self.staging.put(&self.plan.record, TailChange::Keep)?;
            }
            (_, true) if self.authorization_lapsed() => {
                self.persist()?;
                return Err(Error::AuthorizationExpired);
            }
            (_, true) => self.commit()?,
            (_, false) => {
                if self.received > self.last_durable || self.plan.record.offset != self.received {
                    self.persist()?;
                } else {
                    // Nothing new (an empty PATCH, perhaps setting the length).
                    touch(&mut self.plan.record, self.plan.expiry_secs);
                    self.staging.put(&self.plan.record, TailChange::Keep)?;
                }
            }
        }
        Ok(())
    }

    fn authorization_lapsed(&self) -> bool {
        self.plan
            .authorized_until
            .is_some_and(|until| super::now_secs() > until)
    }

    /// The commit: seal the final segment, sync, then one flushed index batch
    /// turns the upload into an object. No second pass over the data.
    fn commit(&mut self) -> Result<(), Error> {
        self.write_batch()?;
        let index = self.writer.next_index();
        let generation = self.plan.record.generations.of(index);
        let mut sealed = Vec::with_capacity(seg1::sealed_len(self.pending.len()));
        self.plan
            .keys
            .seal_segment(index, generation, true, &self.pending, &mut sealed);
        self.writer.append(&sealed, 1)?;
        self.writer.sync()?;
        let record = &mut self.plan.record;
        record.offset = self.received;
        record.expires_at = None;
        record.updated_at = now_secs();
        record.state = UploadState::Committed(CommitInfo {
            sha256: hex::encode(self.plan.sha256.clone().finish()),
            committed_at: record.updated_at,
            disposition: self.plan.disposition,
        });
        self.staging.put(record, TailChange::Remove)?;
        self.last_durable = self.received;
        self.durable_sha256 = self.plan.sha256.clone();
        Ok(())
    }

    /// Throws away everything this chunk wrote; the record never counted it.
    ///
    /// The segments cut off authenticate at their indexes as well as those
    /// the client may send there next, so a new generation starts at the
    /// cut, and it is durable before the cut: a crash in between leaves a
    /// file longer than its record, which recovery cuts (starting another
    /// generation), never cut-off segments whose generation is still
    /// current. The tail record stays valid: it is the record's, at the cut
    /// index, and keeps the generation it was sealed under.
    fn discard(&mut self) -> Result<(), Error> {
        self.batch.clear();
        self.batch_count = 0;
        let cut = self.start_index.max(self.last_durable_index());
        // The stored record, not ours: this request may have changed ours
        // (a deferred length it set) and must leave nothing behind but the cut.
        let id = self.plan.record.id;
        let mut stored = self.staging.get(&id)?.ok_or(Error::NotFound(id))?;
        stored.generations.cut(cut);
        self.staging.put(&stored, TailChange::Keep)?;
        self.plan.record.generations = stored.generations;
        self.writer.rewind(cut)?;
        Ok(())
    }

    fn last_durable_index(&self) -> u64 {
        self.last_durable / seg1::SEGMENT_SIZE as u64
    }

    fn fail(&mut self, err: Error) -> Result<(), Error> {
        if err.discards_chunk() {
            self.discard()?;
        }
        Err(err)
    }
}

fn touch(record: &mut UploadRecord, expiry_secs: u64) {
    record.updated_at = now_secs();
    record.expires_at = Some(record.updated_at.saturating_add(expiry_secs));
}
