//! Screening: how an upload's bytes reach whatever inspects them (the Wasm
//! plugin chain the appliance wires in) while they stream in, and how the
//! verdict decides the upload. Ingest knows only the [`Screen`] and
//! [`Screening`] traits; it never sees a plugin, a policy or wasmtime.
//!
//! Owns: grouping network frames into 256 KiB–1 MiB feeds on a task beside
//! the write stage, keeping each upload's screening between requests (and
//! releasing it when idle), replaying staged bytes into a fresh screening
//! when the old one is gone, and applying verdicts: release, quarantine, or
//! reject, which destroys the upload with its key.
//!
//! Never lets a screening see bytes out of order or twice: a screening that
//! has not seen exactly the acknowledged prefix is dropped and replayed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::events::Detail;
use crate::id::UploadId;
use crate::staging::{Disposition, ScreeningReport, UploadRecord, UploadState};
use crate::store::{Layout, PlainReader};

use super::{Error, Ingest, blocking, now_secs};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Starts screenings. Implemented by the plugin chain.
pub trait Screen: Send + Sync {
    /// Starts screening `upload` from its first byte; `None` when nothing
    /// inspects this upload (an empty chain), which then commits at once.
    fn open<'a>(
        &'a self,
        upload: &'a UploadRecord,
    ) -> BoxFuture<'a, Result<Option<Box<dyn Screening>>, Unavailable>>;

    /// A committed object was released or quarantined: what later uploads'
    /// statistics are made of. Also called for every such object at start.
    fn observe(&self, record: &UploadRecord);
}

/// One upload being screened. Fed in order, each byte once.
pub trait Screening: Send {
    /// Feeds the next bytes; a rejection as soon as the chain decides one.
    fn feed(&mut self, bytes: Bytes) -> BoxFuture<'_, Result<(), Rejection>>;

    /// Every byte has been fed: the verdict.
    fn finish(&mut self, digest: ObjectDigest) -> BoxFuture<'_, Verdict>;
}

/// What the host computed over the whole upload, natively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectDigest {
    pub total_bytes: u64,
    pub sha256: [u8; 32],
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Release(ScreeningReport),
    Quarantine(ScreeningReport),
    Reject(Rejection),
}

/// Why the chain refused an upload. Every string came from the policy or
/// was sanitised by the sandbox, so it is safe to show the client.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub plugin: String,
    pub code: String,
    pub message: String,
    pub report: ScreeningReport,
}

/// No screening could start now (every plugin instance slot is busy).
#[derive(Debug, Clone, thiserror::Error)]
#[error("upload inspection is at capacity: {0}")]
pub struct Unavailable(pub String);

/// Feeds smaller than this wait for more frames while more are queued.
const MIN_FEED: usize = 256 << 10;
/// Feeds never grow past this.
const MAX_FEED: usize = 1 << 20;
/// Frames queued between the request and its feeder.
const FEED_QUEUE: usize = 8;

/// An upload's screening between requests.
pub(super) struct Live {
    screening: Box<dyn Screening>,
    /// Bytes fed so far: `[0, fed)`.
    fed: u64,
    parked_at: Instant,
}

/// The feeder task of one request: frames in, the screening (and any
/// rejection) back when the request's frames are all fed.
pub(super) struct Feeder {
    frames: mpsc::Sender<Bytes>,
    rejected: oneshot::Receiver<()>,
    rejected_seen: bool,
    task: JoinHandle<(Live, Option<Rejection>)>,
}

impl Feeder {
    fn spawn(live: Live) -> Feeder {
        let (frames, rx) = mpsc::channel(FEED_QUEUE);
        let (signal, rejected) = oneshot::channel();
        Feeder {
            frames,
            rejected,
            rejected_seen: false,
            task: tokio::spawn(async move {
                let (mut live, mut rx) = (live, rx);
                let rejection = feed_frames(&mut live, &mut rx).await;
                if rejection.is_some() {
                    let _ = signal.send(());
                }
                (live, rejection)
            }),
        }
    }

    /// Queues a frame. A feeder that stopped (it rejected) no longer listens.
    pub(super) async fn send(&self, frame: Bytes) {
        let _ = self.frames.send(frame).await;
    }

    /// Resolves once the chain has rejected the upload; never otherwise.
    pub(super) async fn rejected(&mut self) {
        if !self.rejected_seen && (&mut self.rejected).await.is_ok() {
            return;
        }
        self.rejected_seen = true;
        std::future::pending::<()>().await;
    }

    /// Waits until every queued frame is fed.
    async fn join(self) -> Result<(Live, Option<Rejection>), Error> {
        drop(self.frames);
        self.task.await.map_err(|e| Error::Task(e.to_string()))
    }
}

/// Resolves once the request's feeder (if any) saw the chain reject.
pub(super) async fn rejected(feeder: &mut Option<&mut Feeder>) {
    match feeder {
        Some(feeder) => feeder.rejected().await,
        None => std::future::pending().await,
    }
}

/// Groups frames into feeds: at least `MIN_FEED` unless the queue runs dry,
/// at most `MAX_FEED`. Stops at the first rejection.
async fn feed_frames(live: &mut Live, frames: &mut mpsc::Receiver<Bytes>) -> Option<Rejection> {
    let mut group = BytesMut::new();
    loop {
        // `None`: the queue ran dry with a group big enough to feed now.
        let next = if group.len() >= MIN_FEED {
            match frames.try_recv() {
                Ok(frame) => Some(Some(frame)),
                Err(mpsc::error::TryRecvError::Empty) => None,
                Err(mpsc::error::TryRecvError::Disconnected) => Some(None),
            }
        } else {
            Some(frames.recv().await)
        };
        let ended = match next {
            Some(Some(frame)) if group.is_empty() && frame.len() >= MIN_FEED => {
                if let Err(rejection) = live.feed(frame).await {
                    return Some(rejection);
                }
                continue;
            }
            Some(Some(frame)) => {
                group.extend_from_slice(&frame);
                if group.len() < MAX_FEED {
                    continue;
                }
                false
            }
            None => false,
            Some(None) => true,
        };
        if !group.is_empty()
            && let Err(rejection) = live.feed(group.split().freeze()).await
        {
            return Some(rejection);
        }
        if ended {
            return None;
        }
    }
}

impl Live {
    async fn feed(&mut self, bytes: Bytes) -> Result<(), Rejection> {
        let len = bytes.len() as u64;
        let result = self.screening.feed(bytes).await;
        self.fed += len;
        result
    }
}

impl Ingest {
    /// Wires in what screens uploads. Set once, before `recover`; an upload's
    /// screening is released after `idle_timeout` without a request.
    pub fn set_screen(&self, screen: Arc<dyn Screen>, idle_timeout: Duration) {
        let _ = self.screen.set((screen, idle_timeout));
    }

    pub(super) fn screen(&self) -> Option<&Arc<dyn Screen>> {
        self.screen.get().map(|(screen, _)| screen)
    }

    /// The feeder for a PATCH on `record` (not a partial upload: those are
    /// screened as part of their final concatenation). Reuses the parked
    /// screening when it has seen exactly the staged prefix, otherwise starts
    /// one and replays the staged bytes into it. `None`: nothing screens it.
    pub(super) async fn feeder_for(
        &self,
        record: &UploadRecord,
        reader: impl AsyncFnOnce() -> Result<PlainReader, Error>,
    ) -> Result<Option<Feeder>, Error> {
        if matches!(record.kind, crate::staging::UploadKind::Partial) {
            return Ok(None);
        }
        let parked = self.take_parked(&record.id);
        if let Some(live) = parked.filter(|live| live.fed == record.offset) {
            return Ok(Some(Feeder::spawn(live)));
        }
        let Some(mut live) = self.open_screening(record).await? else {
            return Ok(None);
        };
        if record.offset > 0 {
            let rejection = replay(&mut live, reader().await?).await?;
            if let Some(rejection) = rejection {
                return Err(self.reject(record.id, rejection).await);
            }
        }
        Ok(Some(Feeder::spawn(live)))
    }

    async fn open_screening(&self, record: &UploadRecord) -> Result<Option<Live>, Error> {
        let Some(screen) = self.screen() else {
            return Ok(None);
        };
        let screening = screen.open(record).await?;
        Ok(screening.map(|screening| Live {
            screening,
            fed: 0,
            parked_at: Instant::now(),
        }))
    }

    fn take_parked(&self, id: &UploadId) -> Option<Live> {
        self.screenings
            .lock()
            .expect("screenings poisoned")
            .remove(id)
    }

    fn park(&self, id: UploadId, mut live: Live) {
        live.parked_at = Instant::now();
        self.screenings
            .lock()
            .expect("screenings poisoned")
            .insert(id, live);
    }

    /// Tells the screen about a committed object (for its statistics).
    pub(super) fn observe(&self, record: &UploadRecord) {
        if let (Some(screen), Some(disposition)) = (self.screen(), record.disposition())
            && disposition != Disposition::Pending
        {
            screen.observe(record);
        }
    }

    /// Drops an upload's screening (terminated, expired, or its bytes are no
    /// longer what it saw).
    pub(super) fn forget_screening(&self, id: &UploadId) {
        self.take_parked(id);
    }

    /// Releases screenings idle for longer than the configured timeout: each
    /// holds plugin instances. Their uploads replay on their next request.
    pub fn release_idle_screenings(&self) -> usize {
        let Some((_, idle)) = self.screen.get() else {
            return 0;
        };
        let mut parked = self.screenings.lock().expect("screenings poisoned");
        let before = parked.len();
        parked.retain(|_, live| live.parked_at.elapsed() < *idle);
        before - parked.len()
    }

    /// After a request: a rejection destroys the upload; a committed upload
    /// gets its verdict; an unfinished one keeps its screening for the next
    /// request.
    pub(super) async fn conclude(
        &self,
        feeder: Option<Feeder>,
        record: &UploadRecord,
        outcome: Result<(), Error>,
    ) -> Result<(), Error> {
        let Some(feeder) = feeder else {
            if outcome.is_ok() && record.disposition() == Some(Disposition::Pending) {
                // Nothing screened it; held only until its commit is recorded.
                return self.settle_pending(record.clone()).await;
            }
            return outcome;
        };
        let (live, rejection) = feeder.join().await?;
        if let Some(rejection) = rejection {
            return Err(self.reject(record.id, rejection).await);
        }
        if outcome.is_ok() && record.disposition() == Some(Disposition::Pending) {
            return self.settle_verdict(record.clone(), live).await;
        }
        // An interrupted request keeps what arrived, so the screening usually
        // still matches the staged prefix; one that does not is replayed.
        if live.fed == record.offset {
            self.park(record.id, live);
        }
        outcome
    }

    /// Destroys a rejected upload: record and wrapped key first (so its
    /// bytes are unreadable from then on), then its file.
    async fn reject(&self, id: UploadId, rejection: Rejection) -> Error {
        tracing::info!(
            upload = %id,
            plugin = %rejection.plugin,
            code = %rejection.code,
            reason = %rejection.message,
            "upload rejected"
        );
        self.forget_screening(&id);
        self.digests.lock().expect("digests poisoned").remove(&id);
        let staging = self.staging.clone();
        let removed = blocking(move || {
            let record = staging.get(&id)?;
            staging.remove(&id)?;
            Ok(record)
        })
        .await;
        let record = match removed {
            Ok(record) => record,
            Err(err) => return err,
        };
        if let Some(record) = &record {
            self.announce_rejection(record, &rejection);
        }
        // Destroyed either way; a rejection that could not be recorded is
        // not reported as one.
        if let Err(err) = self.record_rejection(id, record.as_ref(), &rejection).await {
            return err;
        }
        Error::Rejected(Box::new(rejection))
    }

    /// Asks the screening for its verdict on a committed, pending upload and
    /// records it.
    async fn settle_verdict(&self, mut record: UploadRecord, mut live: Live) -> Result<(), Error> {
        let UploadState::Committed(info) = &mut record.state else {
            return Ok(());
        };
        let sha256 = hex::decode(&info.sha256)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| Error::Task(format!("upload {}: bad sha256 in record", record.id)))?;
        let digest = ObjectDigest {
            total_bytes: record.offset,
            sha256,
        };
        let (disposition, report) = match live.screening.finish(digest).await {
            Verdict::Release(report) => (Disposition::Released, Some(report)),
            Verdict::Quarantine(report) => (Disposition::Quarantined, Some(report)),
            Verdict::Reject(rejection) => return Err(self.reject(record.id, rejection).await),
        };
        info.disposition = disposition;
        record.screening = report.map(|report| ScreeningReport {
            decided_at: now_secs(),
            ..report
        });
        self.record_disposition(record).await
    }

    async fn record_disposition(&self, mut record: UploadRecord) -> Result<(), Error> {
        // Recorded and signed first: the object is settled only with them.
        self.seal(&mut record).await?;
        let staging = self.staging.clone();
        let stored = record.clone();
        blocking(move || Ok(staging.put(&stored, crate::staging::TailChange::Keep)?)).await?;
        if let Some(disposition) = record.disposition() {
            tracing::info!(upload = %record.id, ?disposition, "upload settled");
            self.announce_settled(&record, disposition);
        }
        self.observe(&record);
        Ok(())
    }

    /// A settled object for metrics and the live feed: its commit, then the
    /// verdict with the first plugin that did not accept it.
    fn announce_settled(&self, record: &UploadRecord, disposition: Disposition) {
        let UploadState::Committed(commit) = &record.state else {
            return;
        };
        let word = super::trail::disposition_word(disposition);
        let age = now_secs().saturating_sub(record.created_at);
        self.metrics()
            .committed(&record.tenant, word, Duration::from_secs(age));
        let committed = Detail::Committed {
            size: record.offset,
            sha256: commit.sha256.clone(),
            disposition: word,
        };
        self.events().publish(record.id, &record.tenant, committed);
        let report = record.screening.as_ref();
        let holder = report
            .into_iter()
            .flat_map(|report| &report.plugins)
            .find(|plugin| plugin.verdict != "accept");
        let verdict = Detail::Verdict {
            disposition: word,
            reason: report.and_then(|report| report.reasons.first().cloned()),
            plugin: holder.map(|plugin| plugin.plugin.clone()),
            rule: holder
                .and_then(|plugin| plugin.findings.first())
                .map(|finding| finding.rule.clone()),
        };
        self.events().publish(record.id, &record.tenant, verdict);
    }

    /// A rejected upload for metrics and the live feed: the verdict, then
    /// its deletion.
    fn announce_rejection(&self, record: &UploadRecord, rejection: &Rejection) {
        self.metrics().rejected(&record.tenant, &rejection.plugin);
        let verdict = Detail::Verdict {
            disposition: "rejected",
            reason: Some(rejection.message.clone()),
            plugin: Some(rejection.plugin.clone()),
            rule: Some(rejection.code.clone()),
        };
        self.events().publish(record.id, &record.tenant, verdict);
        let deleted = Detail::Deleted { reason: "rejected" };
        self.events().publish(record.id, &record.tenant, deleted);
    }

    /// Settles a committed upload still waiting for its verdict (found at
    /// recovery, or a concatenation just assembled): its bytes are replayed
    /// through a fresh screening. Without a screen it is released.
    pub(super) async fn settle_pending(&self, record: UploadRecord) -> Result<(), Error> {
        if record.disposition() != Some(Disposition::Pending) {
            return Ok(());
        }
        let Some(mut live) = self.open_screening(&record).await? else {
            let mut record = record;
            if let UploadState::Committed(info) = &mut record.state {
                info.disposition = Disposition::Released;
            }
            return self.record_disposition(record).await;
        };
        let reader = self.object_reader(&record).await?;
        if let Some(rejection) = replay(&mut live, reader).await? {
            return Err(self.reject(record.id, rejection).await);
        }
        self.settle_verdict(record, live).await
    }

    async fn object_reader(&self, record: &UploadRecord) -> Result<PlainReader, Error> {
        let keys = Arc::new(self.object_keys(record).await?);
        let staging = self.staging.clone();
        let id = record.id;
        let file = blocking(move || Ok(staging.reader(&id)?)).await?;
        Ok(PlainReader::new(
            file,
            keys,
            Layout::Committed {
                length: record.offset,
            },
            record.generations.clone(),
        ))
    }

    /// Settles every pending upload no request is working on. Run at start
    /// and by the sweep, so a verdict that could not be had (the sandbox was
    /// at capacity) is retried.
    pub async fn settle_all_pending(&self) -> Result<usize, Error> {
        let pending: Vec<UploadRecord> = self
            .all_records()
            .await?
            .into_iter()
            .filter(|r| r.disposition() == Some(Disposition::Pending))
            .collect();
        let mut settled = 0;
        for record in pending {
            let id = record.id;
            if self.locks.is_held(&id) {
                continue;
            }
            let _guard = self.locks.acquire(id).await?;
            match self.settle_pending(record).await {
                Ok(()) | Err(Error::Rejected(_)) => settled += 1,
                Err(err) => tracing::warn!(upload = %id, error = %err, "verdict still pending"),
            }
        }
        Ok(settled)
    }
}

/// Feeds the staged plaintext `[0, len)` to a fresh screening, segment by
/// segment, decrypted off the reactor.
async fn replay(live: &mut Live, reader: PlainReader) -> Result<Option<Rejection>, Error> {
    let (tx, rx) = mpsc::channel::<Bytes>(2);
    let producer = tokio::task::spawn_blocking(move || {
        reader.for_each_segment(|plain| {
            tx.blocking_send(Bytes::copy_from_slice(plain))
                .map_err(|_| crate::store::Error::Io(std::io::Error::other("replay stopped")))
        })
    });
    let mut rx = rx;
    if let Some(rejection) = feed_frames(live, &mut rx).await {
        // The producer sees the closed channel and stops.
        return Ok(Some(rejection));
    }
    producer
        .await
        .map_err(|e| Error::Task(e.to_string()))?
        .map_err(Error::Store)?;
    Ok(None)
}
