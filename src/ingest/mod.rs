//! Upload lifecycle: creation, resumable chunks, concatenation, termination,
//! expiry, commit and opening objects for download. Owns the streaming
//! pipeline (network frames → hash → seal → append over a bounded channel)
//! and the per-upload writer lock. Never sees HTTP types: the tus layer hands
//! it typed requests and a stream of body chunks.

mod inventory;
mod locks;
mod pipeline;
mod quota;
mod rotation;
mod screening;
mod scrub;
mod trail;

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::crypto::{self, Aead, DigestAlgorithm, KeyProvider, ObjectKeys, Sha256, seg1};
use crate::events::{Bus, Detail};
use crate::id::UploadId;
use crate::metrics::Metrics;
use crate::staging::{
    self, Disposition, RecoveryReport, ScreeningReport, Staging, UploadKind, UploadRecord,
    UploadState,
};
use crate::store::{self, ByteRange, Layout, PlainReader};

use locks::UploadLocks;
use pipeline::{ChecksumRule, ChunkPlan, ChunkWriter, Ending, Settled, StageMsg};

pub use inventory::{Inventory, ObjectPage, ObjectQuery, TenantHoldings};
pub use quota::{QuotaCheck, QuotaExceeded};
pub use rotation::{KeyListing, KeyUse, RotationReport, ShredReport, TenantRotation};
pub use screening::{BoxFuture, ObjectDigest, Rejection, Screen, Screening, Unavailable, Verdict};
pub use scrub::{Damage, Fault, OpenError, ScrubReport};
pub use staging::{Census, CommitInfo};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("upload {0} not found")]
    NotFound(UploadId),
    #[error("upload {0} has expired")]
    Expired(UploadId),
    #[error("upload {id}: offset {got} does not match stored {expected}")]
    OffsetMismatch {
        id: UploadId,
        expected: u64,
        got: u64,
    },
    #[error("upload length {length} exceeds the maximum of {max} bytes")]
    TooLarge { length: u64, max: u64 },
    #[error("request body is longer than the {limit} bytes the upload still expects")]
    BodyTooLong { limit: u64 },
    #[error("upload {id}: length is already {length}")]
    LengthAlreadySet { id: UploadId, length: u64 },
    #[error("upload {id}: length {length} is below the {offset} bytes already received")]
    LengthBelowOffset {
        id: UploadId,
        length: u64,
        offset: u64,
    },
    #[error("{algorithm} checksum of the chunk does not match; the chunk was discarded")]
    ChecksumMismatch { algorithm: &'static str },
    #[error("the announced Upload-Checksum trailer was missing; the chunk was discarded")]
    MissingTrailerChecksum,
    #[error("upload {0} is a final concatenation and cannot be patched")]
    PatchOnFinal(UploadId),
    #[error("upload {0} is complete")]
    AlreadyComplete(UploadId),
    #[error("concatenation: {0}")]
    InvalidConcat(String),
    #[error("upload {0} is busy with another request")]
    Locked(UploadId),
    #[error("upload {0}: a newer request for this upload took over")]
    Superseded(UploadId),
    #[error("upload {0} is not complete")]
    NotDownloadable(UploadId),
    #[error("upload {0} is held in quarantine")]
    Quarantined(UploadId),
    #[error("object {0} is not in quarantine")]
    NotQuarantined(UploadId),
    #[error("upload {0} is complete and waiting for its inspection verdict")]
    VerdictPending(UploadId),
    #[error("upload rejected by {}: {} ({})", .0.plugin, .0.message, .0.code)]
    Rejected(Box<Rejection>),
    /// Stands for a rejection while the request unwinds; the rejection
    /// itself replaces it before the request answers.
    #[error("the upload's inspection stopped it")]
    StoppedByScreening,
    #[error(transparent)]
    ScreeningUnavailable(#[from] Unavailable),
    #[error("upload {0} failed on a storage error and is stopped until restart")]
    Stopped(UploadId),
    /// The credential that sent the last bytes expired before they could
    /// complete the upload; they are kept, and the next authorised request
    /// (HEAD or an empty PATCH) completes it.
    #[error("the credential expired before the upload could be completed; the bytes are kept")]
    AuthorizationExpired,
    #[error("request body: {0}")]
    Body(#[from] BodyError),
    #[error("request body stalled for longer than {0:?}")]
    BodyIdle(Duration),
    #[error("server is shutting down")]
    Shutdown,
    #[error(transparent)]
    Staging(#[from] staging::Error),
    #[error(transparent)]
    Crypto(#[from] crypto::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("background task failed: {0}")]
    Task(String),
    #[error("a key rotation is already running")]
    RotationInProgress,
    /// The tenant's quota refuses the bytes (see `quota`).
    #[error(transparent)]
    QuotaExceeded(#[from] QuotaExceeded),
    #[error("tenant {0:?} has no keys")]
    NoKeysForTenant(String),
    /// A record of this step could not be made durable and
    /// `audit.on_failure = "refuse"`: the step is not reported as done.
    #[error("audit trail: {0}")]
    Audit(#[from] crate::audit::Error),
    #[error("object {0} has no signed manifest (it was committed before manifests were kept)")]
    NoManifest(UploadId),
}

impl Error {
    /// Errors after which the chunk's bytes are thrown away.
    fn discards_chunk(&self) -> bool {
        matches!(
            self,
            Error::BodyTooLong { .. }
                | Error::ChecksumMismatch { .. }
                | Error::MissingTrailerChecksum
        ) || self.is_refused_write()
    }

    fn is_refused_write(&self) -> bool {
        matches!(self, Error::Staging(e) if e.is_refused_write())
    }

    /// Storage errors after which the upload's on-disk state is unknown: the
    /// upload stops (fail-stop) until a restart has reconciled it. Writes
    /// refused for space are not among them: a refused segment write is cut
    /// back, and after a refused index write the index and the file are
    /// consistent either way (`staging::Error::is_refused_index_write`).
    fn stops_upload(&self) -> bool {
        match self {
            Error::Staging(e) => !e.is_refused_write() && !e.is_refused_index_write(),
            Error::Crypto(_) | Error::Task(_) => true,
            _ => false,
        }
    }
}

/// A failure while reading the request body, reported by the protocol layer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BodyError {
    #[error("connection closed before the body ended: {0}")]
    Disconnected(String),
    #[error("bad trailer: {0}")]
    BadTrailer(String),
    /// Below the listener's minimum transfer speed for a whole window.
    #[error("slower than {min_bytes_per_sec} bytes/s over {window:?}")]
    TooSlow {
        min_bytes_per_sec: u64,
        window: Duration,
    },
}

/// A piece of a request body.
pub enum BodyChunk {
    Data(Bytes),
    /// The checksum delivered in an `Upload-Checksum` trailer.
    TrailerChecksum(ChunkChecksum),
}

pub type BodyStream = Pin<Box<dyn Stream<Item = Result<BodyChunk, BodyError>> + Send>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkChecksum {
    pub algorithm: DigestAlgorithm,
    pub digest: Vec<u8>,
}

/// The checksum a PATCH asks for.
pub enum ChecksumRequest {
    None,
    Header(ChunkChecksum),
    Trailer,
}

pub enum NewKind {
    Regular,
    Partial,
    Final(Vec<UploadId>),
}

pub struct NewUpload {
    pub tenant: String,
    /// `None` defers the length (or, for a final concatenation, sums the parts).
    pub length: Option<u64>,
    pub metadata: Vec<(String, Option<String>)>,
    pub kind: NewKind,
}

pub struct Chunk {
    pub offset: u64,
    /// Sets a deferred length.
    pub length: Option<u64>,
    /// The body's declared length, when known: enables mid-request checkpoints.
    pub content_length: Option<u64>,
    pub checksum: ChecksumRequest,
    /// Unix seconds after which the request's credential no longer allows
    /// completing the upload (checked again when the last byte arrives).
    pub authorized_until: Option<u64>,
}

/// What HEAD, POST and PATCH report about an upload.
#[derive(Debug, Clone)]
pub struct UploadStatus {
    pub id: UploadId,
    pub length: Option<u64>,
    /// `None` for a final concatenation whose parts are not all complete.
    pub offset: Option<u64>,
    pub metadata: Vec<(String, Option<String>)>,
    pub expires_at: Option<u64>,
    pub is_partial: bool,
    pub final_parts: Option<Vec<UploadId>>,
    pub commit: Option<CommitInfo>,
    /// The plugin chain's verdict and findings, once given.
    pub screening: Option<ScreeningReport>,
}

#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub max_size: u64,
    pub expiry: Duration,
    pub lock_wait: Duration,
    pub body_idle_timeout: Duration,
    pub checkpoint_every: u64,
    pub aead: Aead,
    /// Bytes of plaintext all uploads together may hold in flight.
    pub memory_budget: u64,
}

fn budget_units(bytes: u64) -> usize {
    bytes.div_ceil(1024) as usize
}

/// Frames queued between the request task and its write stage. Depth bounds
/// memory per upload: a few network frames.
const STAGE_QUEUE: usize = 4;

pub struct Ingest {
    config: IngestConfig,
    staging: Arc<Staging>,
    /// Holds every tenant's KEKs; calls may block (an HSM round trip), so
    /// they run on blocking threads.
    keys: Arc<dyn KeyProvider>,
    /// Held (shared) by a creation from wrapping its data key until its
    /// record is stored; a rotation takes it exclusively once after making
    /// a new key current, so no record wrapped under an older key can appear
    /// after the rotation's scans (see `rotation`).
    key_gate: tokio::sync::RwLock<()>,
    /// One key rotation at a time.
    rotation: tokio::sync::Mutex<()>,
    locks: UploadLocks,
    /// Running SHA-256 of each upload's acknowledged prefix, so commit needs no
    /// second pass. Lost on restart; then rebuilt by replaying staged bytes.
    digests: Mutex<HashMap<UploadId, (u64, Sha256)>>,
    /// Uploads stopped by a storage error (fail-stop until restart).
    stopped: Mutex<HashSet<UploadId>>,
    /// Plaintext in flight across all uploads, in KiB: a frame is reserved
    /// before it is queued, so memory stays bounded however many clients send.
    memory: Arc<Semaphore>,
    /// Where new upload ids come from: the OS RNG unless a simulation set a
    /// seeded source (`set_id_source`) so its runs replay exactly.
    id_source: Mutex<Option<IdSource>>,
    /// What screens uploads (the plugin chain) and how long an idle upload's
    /// screening is kept; unset, every complete upload commits released.
    screen: OnceLock<(Arc<dyn Screen>, Duration)>,
    /// Screenings of uploads between requests.
    screenings: Mutex<HashMap<UploadId, screening::Live>>,
    /// Bytes each tenant holds, against its quota.
    quota: Arc<quota::Quotas>,
    /// The audit trail and manifest key; unset, nothing is recorded and
    /// objects have no manifest.
    recorder: OnceLock<trail::Recorder>,
    /// Where counters and live events go; private ones until the appliance
    /// wires in its own (`set_observers`).
    metrics: OnceLock<Arc<Metrics>>,
    events: OnceLock<Arc<Bus>>,
}

type IdSource = Box<dyn FnMut() -> [u8; 16] + Send>;

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether an upload expiring at `expires_at` is gone at `now`. Both are
/// whole seconds, so the second `expires_at` names still counts: an upload
/// never expires before its full expiry period has passed.
fn is_expired(expires_at: Option<u64>, now: u64) -> bool {
    expires_at.is_some_and(|at| at < now)
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Task(e.to_string()))?
}

impl Ingest {
    pub fn new(
        config: IngestConfig,
        staging: Arc<Staging>,
        keys: Arc<dyn KeyProvider>,
    ) -> Arc<Ingest> {
        Arc::new(Ingest {
            locks: UploadLocks::new(config.lock_wait),
            staging,
            keys,
            key_gate: tokio::sync::RwLock::new(()),
            rotation: tokio::sync::Mutex::new(()),
            digests: Mutex::new(HashMap::new()),
            stopped: Mutex::new(HashSet::new()),
            memory: Arc::new(Semaphore::new(budget_units(config.memory_budget))),
            id_source: Mutex::new(None),
            screen: OnceLock::new(),
            screenings: Mutex::new(HashMap::new()),
            quota: Arc::default(),
            recorder: OnceLock::new(),
            metrics: OnceLock::new(),
            events: OnceLock::new(),
            config,
        })
    }

    /// Wires in the appliance's metrics and event bus. Set once, before the
    /// first request; until then each is a private one nobody reads.
    pub fn set_observers(&self, metrics: Arc<Metrics>, events: Arc<Bus>) {
        let _ = self.metrics.set(metrics);
        let _ = self.events.set(events);
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        self.metrics.get_or_init(Arc::default)
    }

    pub fn events(&self) -> &Arc<Bus> {
        self.events.get_or_init(Arc::default)
    }

    /// Replaces the OS RNG as the source of new upload ids, for deterministic
    /// simulations and their replays. Keys and nonces stay random.
    pub fn set_id_source(&self, source: impl FnMut() -> [u8; 16] + Send + 'static) {
        *self.id_source.lock().expect("id source poisoned") = Some(Box::new(source));
    }

    fn new_id(&self) -> UploadId {
        let mut source = self.id_source.lock().expect("id source poisoned");
        UploadId::from_bytes(
            source
                .as_mut()
                .map_or_else(crypto::random_array, |next| next()),
        )
    }

    /// Waits until `len` bytes fit in the memory budget.
    async fn reserve(&self, len: usize) -> OwnedSemaphorePermit {
        let units = budget_units(len as u64).clamp(1, budget_units(self.config.memory_budget));
        self.memory
            .clone()
            .acquire_many_owned(units as u32)
            .await
            .expect("the memory budget semaphore is never closed")
    }

    pub fn config(&self) -> &IngestConfig {
        &self.config
    }

    /// Reconciles staging after a start, then rolls forward what a crash
    /// interrupted: complete uploads are committed, ready concatenations
    /// assembled. Damaged uploads are stopped.
    pub async fn recover(self: &Arc<Self>) -> Result<RecoveryReport, Error> {
        let staging = self.staging.clone();
        let report = blocking(move || Ok(staging.recover()?)).await?;
        self.stopped
            .lock()
            .expect("stopped set poisoned")
            .extend(report.damaged.iter().copied());
        let since = self.quota.clock();
        let records = self.all_records().await?;
        for record in self.reconcile_quotas(since, records).await? {
            let receiving = record.state == UploadState::Receiving;
            let rolled = match &record.kind {
                UploadKind::Final { .. } if receiving => self.assemble_if_ready(record.id).await,
                _ if receiving && record.length == Some(record.offset) => {
                    self.finish_complete(record.id).await
                }
                _ => {
                    self.observe(&record);
                    Ok(())
                }
            };
            match rolled {
                // One its quota refuses stays staged, as it was.
                Err(Error::QuotaExceeded(_)) => {}
                other => other?,
            }
        }
        self.settle_all_pending().await?;
        let since = self.quota.clock();
        let records = self.all_records().await?;
        self.reconcile_quotas(since, records).await?;
        Ok(report)
    }

    async fn all_records(&self) -> Result<Vec<UploadRecord>, Error> {
        let staging = self.staging.clone();
        blocking(move || Ok(staging.records().collect::<Result<Vec<_>, _>>()?)).await
    }

    pub async fn census(&self) -> Result<Census, Error> {
        let staging = self.staging.clone();
        blocking(move || Ok(staging.census()?)).await
    }

    // ---- creation -------------------------------------------------------

    pub async fn create(self: &Arc<Self>, new: NewUpload) -> Result<UploadStatus, Error> {
        let (length, kind) = match new.kind {
            NewKind::Final(parts) => self.final_length(&new.tenant, parts).await?,
            NewKind::Partial => (new.length, UploadKind::Partial),
            NewKind::Regular => (new.length, UploadKind::Regular),
        };
        if let Some(length) = length {
            self.check_size(length)?;
        }
        self.quota.check_new(&new.tenant, length)?;
        let id = self.new_id();
        let dek = crypto::Dek::generate();
        let keys = ObjectKeys::derive(&dek, *id.as_bytes(), self.config.aead);
        // No upload exists without a wrapped key: a provider that is down
        // fails the creation before anything is stored.
        let gate = self.key_gate.read().await;
        let provider = self.keys.clone();
        let tenant = new.tenant.clone();
        let key = blocking(move || Ok(provider.wrap(&tenant, &dek, *id.as_bytes())?)).await?;
        let now = now_secs();
        let record = UploadRecord {
            id,
            tenant: new.tenant,
            length,
            offset: 0,
            metadata: new.metadata,
            kind,
            state: UploadState::Receiving,
            created_at: now,
            updated_at: now,
            expires_at: Some(now + self.config.expiry.as_secs()),
            key,
            generations: Default::default(),
            screening: None,
            manifest: None,
        };
        let staging = self.staging.clone();
        let header = keys.header_bytes().to_vec();
        let stored = record.clone();
        blocking(move || Ok(staging.create(&stored, &header)?)).await?;
        self.quota.track(&record);
        drop(gate);
        let created = Detail::Created {
            length,
            filename: metadata_text(&record, "filename"),
        };
        self.events().publish(id, &record.tenant, created);
        let finished = match &record.kind {
            UploadKind::Final { .. } => self.assemble_if_ready(id).await,
            UploadKind::Regular if length == Some(0) => self.finish_complete(id).await,
            UploadKind::Partial if length == Some(0) => self.finish_complete(id).await,
            _ => Ok(()),
        };
        if let Err(err) = finished {
            // The client gets an error and never learns the id: leave no
            // record that recovery would roll forward into an object nobody
            // can name. A file left behind is an orphan recovery removes.
            let staging = self.staging.clone();
            let _ = blocking(move || Ok(staging.remove(&id)?)).await;
            self.digests.lock().expect("digests poisoned").remove(&id);
            self.quota.forget(&record);
            return Err(err);
        }
        self.status(id).await
    }

    fn check_size(&self, length: u64) -> Result<(), Error> {
        if length > self.config.max_size {
            return Err(Error::TooLarge {
                length,
                max: self.config.max_size,
            });
        }
        Ok(())
    }

    /// Validates the parts of a final concatenation; its length is their sum
    /// once every part's length is known.
    async fn final_length(
        &self,
        tenant: &str,
        parts: Vec<UploadId>,
    ) -> Result<(Option<u64>, UploadKind), Error> {
        let mut total = Some(0u64);
        for part in &parts {
            let record = self
                .load(*part)
                .await
                .map_err(|_| Error::InvalidConcat(format!("part {part} does not exist")))?;
            if record.tenant != tenant || !matches!(record.kind, UploadKind::Partial) {
                return Err(Error::InvalidConcat(format!(
                    "upload {part} is not a partial upload"
                )));
            }
            total = match (total, record.length) {
                (Some(sum), Some(len)) => sum.checked_add(len),
                _ => None,
            };
        }
        Ok((total, UploadKind::Final { parts }))
    }

    // ---- status ---------------------------------------------------------

    /// The upload's state. Takes the writer lock first, so a stale request of
    /// the same client is stopped and its bytes counted before we answer.
    ///
    /// An upload whose bytes are all staged but which was left uncommitted
    /// (its sender's credential expired as the last byte arrived) is
    /// completed here, for the tenant asking now.
    pub async fn head(self: &Arc<Self>, id: UploadId, tenant: &str) -> Result<UploadStatus, Error> {
        let guard = self.locks.acquire(id).await?;
        let record = self.load_owned(id, tenant).await?;
        let unsealed = record.state == UploadState::Receiving
            && record.length == Some(record.offset)
            && !matches!(record.kind, UploadKind::Final { .. });
        if unsealed {
            drop(guard);
            self.finish_complete(id).await?;
        }
        self.status(id).await
    }

    /// Loads a record for `tenant`. Another tenant's upload is reported as
    /// missing, exactly like one that does not exist, so ids reveal nothing.
    async fn load_owned(&self, id: UploadId, tenant: &str) -> Result<UploadRecord, Error> {
        let record = self.load(id).await?;
        if record.tenant != tenant {
            return Err(Error::NotFound(id));
        }
        Ok(record)
    }

    async fn status(&self, id: UploadId) -> Result<UploadStatus, Error> {
        let record = self.load(id).await?;
        trail::note_reported(&record);
        let final_parts = match &record.kind {
            UploadKind::Final { parts } => Some(parts.clone()),
            _ => None,
        };
        let offset = match (&record.kind, &record.state) {
            (UploadKind::Final { .. }, UploadState::Receiving) => None,
            _ => Some(record.offset),
        };
        Ok(UploadStatus {
            id,
            length: record.length,
            offset,
            expires_at: record.expires_at,
            is_partial: matches!(record.kind, UploadKind::Partial),
            final_parts,
            commit: match record.state {
                UploadState::Committed(info) => Some(info),
                _ => None,
            },
            screening: record.screening,
            metadata: record.metadata,
        })
    }

    /// Loads a record that exists and has not expired.
    async fn load(&self, id: UploadId) -> Result<UploadRecord, Error> {
        if self
            .stopped
            .lock()
            .expect("stopped set poisoned")
            .contains(&id)
        {
            return Err(Error::Stopped(id));
        }
        let staging = self.staging.clone();
        let record = blocking(move || Ok(staging.get(&id)?))
            .await?
            .ok_or(Error::NotFound(id))?;
        if is_expired(record.expires_at, now_secs()) {
            return Err(Error::Expired(id));
        }
        Ok(record)
    }

    // ---- chunks ---------------------------------------------------------

    /// Appends one request body to an upload (PATCH, or the body of a
    /// creation-with-upload POST).
    pub async fn patch(
        self: &Arc<Self>,
        id: UploadId,
        tenant: &str,
        chunk: Chunk,
        body: BodyStream,
    ) -> Result<UploadStatus, Error> {
        tracing::Span::current().record("upload", tracing::field::display(id));
        let mut guard = self.locks.acquire(id).await?;
        let mut record = self.load_owned(id, tenant).await?;
        let deferred = record.length.is_none();
        self.check_chunk(&mut record, &chunk)?;
        if let (true, Some(length)) = (deferred, record.length) {
            self.quota.check_new(tenant, Some(length - record.offset))?;
        }
        if record.state != UploadState::Receiving {
            // Complete already: only an empty chunk at the end is acceptable.
            drop(guard);
            return self.status(id).await;
        }
        let mut plan = self.plan_chunk(record, &chunk).await?;
        let feeder = self
            .feeder_for(&plan.record, async || {
                self.staged_reader(&plan.record, plan.keys.clone(), plan.tail.clone())
                    .await
            })
            .await;
        self.forget_if_rejected(&plan.record, &feeder);
        let mut feeder = feeder?;
        let enforce = plan.record.length.is_none();
        let idle = self.config.body_idle_timeout;
        let (body, meter) = self.quota.meter(&plan.record, enforce, body, idle);
        let completion = quota::Completion::of(&plan.record);
        // Pending until the verdict is in and the commit is recorded.
        if feeder.is_some() || self.records_commits() {
            plan.disposition = Disposition::Pending;
        }
        let completes_partial = matches!(plan.record.kind, UploadKind::Partial);
        let _active = self.metrics().upload_body();
        let arrivals = Arrivals::of(&plan.record);
        let (tx, mut rx) = mpsc::channel(STAGE_QUEUE);
        let staging = self.staging.clone();
        // The write stage logs as part of the request (its id and upload).
        let span = tracing::Span::current();
        let stage = tokio::task::spawn_blocking(move || {
            let _request = span.enter();
            let fallback = (plan.record.clone(), plan.sha256.clone());
            match ChunkWriter::new(&staging, plan) {
                Ok(writer) => writer.run(&mut rx),
                Err(err) => Settled {
                    record: fallback.0,
                    sha256: fallback.1,
                    outcome: Err(err),
                },
            }
        });
        let pumped = self.pump(body, &tx, &mut guard, feeder.as_mut(), arrivals);
        let ending = meter.ending(pumped.await);
        let body_ended = std::time::Instant::now();
        let (ending, commit) = self.quota.admit_completion(&completion, &meter, ending);
        // The stage may have stopped early (an error): then it no longer listens.
        let _ = tx.send(StageMsg::End(ending)).await;
        drop(tx);
        let settled = stage.await.map_err(|e| Error::Task(e.to_string()))?;
        let stored = settled.record.clone();
        self.publish_durable(&stored);
        let outcome = self.absorb(id, settled);
        drop((meter, commit));
        let concluded = self.conclude(feeder, &stored, outcome).await;
        self.forget_if_rejected(&stored, &concluded);
        concluded?;
        if stored.is_committed() {
            self.metrics().finalized(body_ended.elapsed());
        }
        drop(guard);
        if completes_partial {
            self.assemble_finals_waiting_on(id).await?;
        }
        self.status(id).await
    }

    /// The offset a request left durable, for the live feed (before the
    /// commit and verdict it may lead to).
    fn publish_durable(&self, stored: &UploadRecord) {
        let durable = Detail::Progress {
            offset: stored.offset,
            length: stored.length,
            durable: true,
        };
        self.events().publish(stored.id, &stored.tenant, durable);
    }

    /// Moves body frames to the write stage until the body ends, stalls, fails
    /// or a newer request for the upload arrives.
    async fn pump(
        &self,
        mut body: BodyStream,
        tx: &mpsc::Sender<StageMsg>,
        guard: &mut locks::UploadGuard<'_>,
        mut feeder: Option<&mut screening::Feeder>,
        mut arrivals: Arrivals,
    ) -> Ending {
        let idle = self.config.body_idle_timeout;
        let mut trailer = None;
        loop {
            let next = tokio::select! {
                biased;
                () = guard.superseded() => return Ending::Interrupted(Error::Superseded(guard_id(guard))),
                () = screening::rejected(&mut feeder) => {
                    drain(&mut body, idle).await;
                    return Ending::Interrupted(Error::StoppedByScreening);
                }
                next = tokio::time::timeout(idle, body.next()) => next,
            };
            match next {
                Err(_) => return Ending::Interrupted(Error::BodyIdle(idle)),
                Ok(None) => return Ending::Complete { trailer },
                Ok(Some(Err(err))) => return Ending::Interrupted(err.into()),
                Ok(Some(Ok(BodyChunk::TrailerChecksum(c)))) => trailer = Some(c),
                Ok(Some(Ok(BodyChunk::Data(bytes)))) => {
                    self.arrived(&mut arrivals, bytes.len());
                    let budget = self.reserve(bytes.len()).await;
                    let copy = feeder.is_some().then(|| bytes.clone());
                    if tx.send(StageMsg::Data(bytes, budget)).await.is_err() {
                        // The stage failed; its own error is the answer.
                        drain(&mut body, idle).await;
                        return Ending::Complete { trailer };
                    }
                    if let (Some(feeder), Some(copy)) = (feeder.as_deref(), copy) {
                        feeder.send(copy).await;
                    }
                }
            }
        }
    }

    /// Counts a frame's bytes for metrics and the live feed.
    fn arrived(&self, arrivals: &mut Arrivals, len: usize) {
        arrivals.offset += len as u64;
        self.metrics().ingress(&arrivals.tenant, len as u64);
        self.events().publish_received(
            arrivals.id,
            &arrivals.tenant,
            arrivals.offset,
            arrivals.length,
        );
    }

    fn check_chunk(&self, record: &mut UploadRecord, chunk: &Chunk) -> Result<(), Error> {
        let id = record.id;
        if matches!(record.kind, UploadKind::Final { .. }) {
            return Err(Error::PatchOnFinal(id));
        }
        if chunk.offset != record.offset {
            return Err(Error::OffsetMismatch {
                id,
                expected: record.offset,
                got: chunk.offset,
            });
        }
        if let Some(length) = chunk.length {
            match record.length {
                Some(current) if current != length => {
                    return Err(Error::LengthAlreadySet {
                        id,
                        length: current,
                    });
                }
                Some(_) => {}
                None if length < record.offset => {
                    return Err(Error::LengthBelowOffset {
                        id,
                        length,
                        offset: record.offset,
                    });
                }
                None => {
                    self.check_size(length)?;
                    record.length = Some(length);
                }
            }
        }
        if record.state != UploadState::Receiving && chunk.content_length != Some(0) {
            return Err(Error::AlreadyComplete(id));
        }
        let remaining = self.remaining(record);
        if chunk.content_length.is_some_and(|len| len > remaining) {
            return Err(Error::BodyTooLong { limit: remaining });
        }
        Ok(())
    }

    fn remaining(&self, record: &UploadRecord) -> u64 {
        let end = record.length.unwrap_or(self.config.max_size);
        end.saturating_sub(record.offset)
    }

    async fn plan_chunk(&self, record: UploadRecord, chunk: &Chunk) -> Result<ChunkPlan, Error> {
        let keys = Arc::new(self.object_keys(&record).await?);
        let staging = self.staging.clone();
        let id = record.id;
        let tail = blocking(move || Ok(staging.tail(&id)?)).await?;
        let sha256 = self.digest_of_prefix(&record, &keys, tail.clone()).await?;
        let checksum = match &chunk.checksum {
            ChecksumRequest::None => ChecksumRule::None,
            ChecksumRequest::Header(c) => ChecksumRule::Header(c.clone()),
            ChecksumRequest::Trailer => ChecksumRule::Trailer,
        };
        // Checkpoints would make part of a chunk durable before it can be
        // verified, and without a declared length a too-long body is only
        // discovered at the end.
        let checkpoint_every = match (&checksum, chunk.content_length) {
            (ChecksumRule::None, Some(_)) => self.config.checkpoint_every,
            _ => 0,
        };
        Ok(ChunkPlan {
            limit: self.remaining(&record),
            record,
            tail,
            keys,
            sha256,
            checksum,
            checkpoint_every,
            expiry_secs: self.config.expiry.as_secs(),
            disposition: Disposition::Released,
            authorized_until: chunk.authorized_until,
        })
    }

    /// Records how a chunk settled: the digest for the next chunk, or a
    /// fail-stop after a storage error.
    fn absorb(&self, id: UploadId, settled: Settled) -> Result<(), Error> {
        match &settled.outcome {
            Err(err) if err.stops_upload() => {
                self.digests.lock().expect("digests poisoned").remove(&id);
                self.stopped
                    .lock()
                    .expect("stopped set poisoned")
                    .insert(id);
            }
            // The index may hold the record as it was or as the refused write
            // left it, so the stage's record and digest are not to be trusted:
            // the next request rebuilds both from what is on disk.
            Err(Error::Staging(e)) if e.is_refused_index_write() => {
                self.digests.lock().expect("digests poisoned").remove(&id);
            }
            _ => {
                self.quota.track(&settled.record);
                let mut digests = self.digests.lock().expect("digests poisoned");
                if settled.record.is_committed() {
                    digests.remove(&id);
                } else {
                    digests.insert(id, (settled.record.offset, settled.sha256));
                }
            }
        }
        settled.outcome
    }

    async fn object_keys(&self, record: &UploadRecord) -> Result<ObjectKeys, Error> {
        let staging = self.staging.clone();
        let provider = self.keys.clone();
        let wrapped = record.key.clone();
        let id = record.id;
        blocking(move || {
            let dek = provider.unwrap(&wrapped, *id.as_bytes())?;
            let file = staging.reader(&id)?;
            let mut header = vec![0u8; seg1::HEADER_LEN];
            file.read_at(0, &mut header).map_err(store::Error::Io)?;
            Ok(ObjectKeys::open(&dek, *id.as_bytes(), &header)?)
        })
        .await
    }

    /// The running digest of `[0, offset)`: kept from the previous chunk, or
    /// rebuilt by replaying the staged bytes after a restart.
    async fn digest_of_prefix(
        &self,
        record: &UploadRecord,
        keys: &Arc<ObjectKeys>,
        tail: Option<Vec<u8>>,
    ) -> Result<Sha256, Error> {
        let cached = self
            .digests
            .lock()
            .expect("digests poisoned")
            .get(&record.id)
            .filter(|(offset, _)| *offset == record.offset)
            .map(|(_, sha)| sha.clone());
        if let Some(sha) = cached {
            return Ok(sha);
        }
        let reader = self.staged_reader(record, keys.clone(), tail).await?;
        blocking(move || {
            let mut sha = Sha256::new();
            reader.for_each_segment(|plain| {
                sha.update(plain);
                Ok(())
            })?;
            Ok(sha)
        })
        .await
    }

    async fn staged_reader(
        &self,
        record: &UploadRecord,
        keys: Arc<ObjectKeys>,
        tail: Option<Vec<u8>>,
    ) -> Result<PlainReader, Error> {
        let staging = self.staging.clone();
        let id = record.id;
        let file = blocking(move || Ok(staging.reader(&id)?)).await?;
        let layout = Layout::Staged {
            offset: record.offset,
            tail: tail.map(Arc::new),
        };
        let generations = record.generations.clone();
        Ok(PlainReader::new(file, keys, layout, generations))
    }

    /// Commits an upload whose bytes are all staged (length set by an empty
    /// PATCH, a zero-length creation, or found complete at recovery).
    async fn finish_complete(self: &Arc<Self>, id: UploadId) -> Result<(), Error> {
        let chunk = Chunk {
            offset: self.load(id).await?.offset,
            length: None,
            content_length: Some(0),
            checksum: ChecksumRequest::None,
            authorized_until: None,
        };
        let empty: BodyStream = Box::pin(futures_util::stream::empty());
        let tenant = self.load(id).await?.tenant;
        self.patch(id, &tenant, chunk, empty).await.map(|_| ())
    }

    // ---- concatenation --------------------------------------------------

    async fn assemble_finals_waiting_on(self: &Arc<Self>, part: UploadId) -> Result<(), Error> {
        let waiting: Vec<UploadId> = self
            .all_records()
            .await?
            .into_iter()
            .filter(|r| !r.is_committed())
            .filter(|r| matches!(&r.kind, UploadKind::Final { parts } if parts.contains(&part)))
            .map(|r| r.id)
            .collect();
        for id in waiting {
            // The part's own request succeeded; a final that cannot be
            // assembled (a part terminated meanwhile) stays pending and
            // expires, and says why in the log.
            if let Err(err) = self.assemble_if_ready(id).await {
                tracing::warn!(upload = %id, error = %err, "final concatenation not assembled");
            }
        }
        Ok(())
    }

    /// Assembles a final concatenation once every part is complete: the parts'
    /// plaintext passes once, in order, through the same write stage a PATCH
    /// uses, so the object is hashed and sealed under its own key.
    async fn assemble_if_ready(self: &Arc<Self>, id: UploadId) -> Result<(), Error> {
        let _guard = self.locks.acquire(id).await?;
        let record = self.load(id).await?;
        let UploadKind::Final { parts } = &record.kind else {
            return Ok(());
        };
        if record.is_committed() {
            return Ok(());
        }
        let mut readers = Vec::with_capacity(parts.len());
        let mut total = 0u64;
        for part in parts {
            let part_record = self.load(*part).await?;
            if part_record.state != UploadState::PartComplete {
                return Ok(());
            }
            total += part_record.offset;
            let keys = Arc::new(self.object_keys(&part_record).await?);
            let staging = self.staging.clone();
            let part_id = *part;
            let tail = blocking(move || Ok(staging.tail(&part_id)?)).await?;
            readers.push(self.staged_reader(&part_record, keys, tail).await?);
        }
        let mut record = record;
        record.length = Some(total);
        self.check_size(total)?;
        let _commit = self.quota.begin_commit(&record.tenant, total)?;
        let keys = Arc::new(self.object_keys(&record).await?);
        let plan = ChunkPlan {
            limit: total,
            record,
            tail: None,
            keys,
            sha256: Sha256::new(),
            checksum: ChecksumRule::None,
            checkpoint_every: 0,
            expiry_secs: self.config.expiry.as_secs(),
            disposition: if self.screen().is_some() || self.records_commits() {
                Disposition::Pending
            } else {
                Disposition::Released
            },
            authorized_until: None,
        };
        let staging = self.staging.clone();
        let settled = blocking(move || {
            let mut writer = ChunkWriter::new(&staging, plan)?;
            let fed = readers.iter().try_for_each(|reader| {
                reader.for_each_segment(|plain| writer.push(plain).map_err(into_store_error))
            });
            let outcome = match fed {
                Ok(()) => writer.settle(Ending::Complete { trailer: None }),
                Err(err) => Err(Error::Store(err)),
            };
            Ok(writer.into_settled(outcome))
        })
        .await?;
        let assembled = settled.record.clone();
        self.absorb(id, settled)?;
        let verdict = self.settle_pending(assembled.clone()).await;
        self.forget_if_rejected(&assembled, &verdict);
        verdict
    }

    // ---- termination and expiry -----------------------------------------

    /// Removes an upload or object; its wrapped key goes with the record, so
    /// its bytes are unreadable from then on.
    pub async fn terminate(self: &Arc<Self>, id: UploadId, tenant: &str) -> Result<(), Error> {
        let tenant = tenant.to_owned();
        // Another tenant's upload is reported missing, like one that is.
        let owned = move |record: &UploadRecord| {
            if record.tenant == tenant {
                Ok(())
            } else {
                Err(Error::NotFound(id))
            }
        };
        self.remove(id, "terminated", owned).await.map(|_| ())
    }

    /// Removes an upload or object that `allowed` accepts (read under the
    /// upload's lock), record and wrapped key first, then its file;
    /// `reason` goes to the live feed.
    async fn remove(
        self: &Arc<Self>,
        id: UploadId,
        reason: &'static str,
        allowed: impl FnOnce(&UploadRecord) -> Result<(), Error> + Send + 'static,
    ) -> Result<UploadRecord, Error> {
        let _guard = self.locks.acquire(id).await?;
        let staging = self.staging.clone();
        let removed = blocking(move || {
            let record = staging.get(&id)?.ok_or(Error::NotFound(id))?;
            allowed(&record)?;
            staging.remove(&id)?;
            Ok(record)
        })
        .await?;
        self.quota.forget(&removed);
        self.digests.lock().expect("digests poisoned").remove(&id);
        self.forget_screening(&id);
        self.events()
            .publish(id, &removed.tenant, Detail::Deleted { reason });
        Ok(removed)
    }

    /// Removes unfinished uploads whose expiry has passed. Skips uploads a
    /// request is working on.
    pub async fn sweep_expired(self: &Arc<Self>) -> Result<usize, Error> {
        self.sweep_expired_at(now_secs()).await
    }

    /// `sweep_expired` as of `now` (Unix seconds): lets a test sweep as if
    /// the expiry period had passed, without waiting for it.
    pub async fn sweep_expired_at(self: &Arc<Self>, now: u64) -> Result<usize, Error> {
        // The same scan reconciles the quota book (removals made elsewhere).
        let since = self.quota.clock();
        let records = self.all_records().await?;
        let expired: Vec<UploadRecord> = self
            .reconcile_quotas(since, records)
            .await?
            .into_iter()
            .filter(|r| is_expired(r.expires_at, now))
            .collect();
        let mut removed = 0;
        for record in expired {
            let id = record.id;
            if self.locks.is_held(&id) {
                continue;
            }
            self.record_expiry(&record).await?;
            let staging = self.staging.clone();
            blocking(move || Ok(staging.remove(&id)?)).await?;
            self.quota.forget(&record);
            self.digests.lock().expect("digests poisoned").remove(&id);
            self.forget_screening(&id);
            let deleted = Detail::Deleted { reason: "expired" };
            self.events().publish(id, &record.tenant, deleted);
            removed += 1;
        }
        Ok(removed)
    }

    /// Committed objects held in quarantine.
    pub async fn quarantined(&self) -> Result<Vec<UploadRecord>, Error> {
        self.records_where(|r| r.disposition() == Some(Disposition::Quarantined))
            .await
    }

    /// The records `wanted` keeps, filtered as the index is read (only they
    /// are held in memory).
    async fn records_where(
        &self,
        wanted: impl Fn(&UploadRecord) -> bool + Send + 'static,
    ) -> Result<Vec<UploadRecord>, Error> {
        let staging = self.staging.clone();
        blocking(move || {
            let mut kept = Vec::new();
            for record in staging.records() {
                let record = record?;
                if wanted(&record) {
                    kept.push(record);
                }
            }
            Ok(kept)
        })
        .await
    }

    // ---- downloads ------------------------------------------------------

    /// The signed manifest document of a committed object of `tenant`.
    pub async fn manifest(&self, id: UploadId, tenant: &str) -> Result<serde_json::Value, Error> {
        let record = self.load_owned(id, tenant).await?;
        trail::manifest_document(&record)
    }

    /// Opens a committed object for reading.
    pub async fn open_object(&self, id: UploadId, tenant: &str) -> Result<Download, Error> {
        let record = self.load_owned(id, tenant).await?;
        let UploadState::Committed(commit) = &record.state else {
            return Err(Error::NotDownloadable(id));
        };
        match commit.disposition {
            Disposition::Released => {}
            Disposition::Pending => return Err(Error::VerdictPending(id)),
            Disposition::Quarantined => return Err(Error::Quarantined(id)),
        }
        self.open_record(record).await
    }

    /// A reader over a committed record's plaintext, whatever its
    /// disposition: the callers decide who may read what.
    async fn open_record(&self, record: UploadRecord) -> Result<Download, Error> {
        let id = record.id;
        let UploadState::Committed(commit) = &record.state else {
            return Err(Error::NotDownloadable(id));
        };
        let length = record.offset;
        let keys = Arc::new(self.object_keys(&record).await?);
        let staging = self.staging.clone();
        let file = blocking(move || Ok(staging.reader(&id)?)).await?;
        Ok(Download {
            id,
            length,
            sha256: commit.sha256.clone(),
            committed_at: commit.committed_at,
            filename: metadata_text(&record, "filename"),
            content_type: metadata_text(&record, "filetype")
                .or_else(|| metadata_text(&record, "content_type")),
            reader: Arc::new(PlainReader::new(
                file,
                keys,
                Layout::Committed { length },
                record.generations.clone(),
            )),
        })
    }
}

/// Where an upload's bytes stand as a request's frames arrive: for the
/// ingress counter and the live feed's (throttled) progress.
struct Arrivals {
    id: UploadId,
    tenant: String,
    /// Bytes received so far, the upload's earlier requests included.
    offset: u64,
    length: Option<u64>,
}

impl Arrivals {
    fn of(record: &UploadRecord) -> Arrivals {
        Arrivals {
            id: record.id,
            tenant: record.tenant.clone(),
            offset: record.offset,
            length: record.length,
        }
    }
}

/// Bytes of a request body read and thrown away after the request has
/// failed, so the client can finish sending and read the answer: HTTP/1.1
/// clients (Node's among them) that meet a closed socket mid-body report a
/// network error and retry instead of showing the answer. Larger rests are
/// cut off by closing the connection.
const DRAIN_LIMIT: u64 = 64 << 20;

/// Reads and discards the rest of a failed request's body, up to
/// `DRAIN_LIMIT` and while it keeps arriving.
async fn drain(body: &mut BodyStream, idle: Duration) {
    let mut drained = 0u64;
    while drained < DRAIN_LIMIT {
        match tokio::time::timeout(idle, body.next()).await {
            Ok(Some(Ok(BodyChunk::Data(bytes)))) => drained += bytes.len() as u64,
            Ok(Some(Ok(BodyChunk::TrailerChecksum(_)))) => {}
            Ok(None) | Ok(Some(Err(_))) | Err(_) => return,
        }
    }
}

fn into_store_error(err: Error) -> store::Error {
    match err {
        Error::Store(e) => e,
        other => store::Error::Io(std::io::Error::other(other.to_string())),
    }
}

fn guard_id(guard: &locks::UploadGuard<'_>) -> UploadId {
    guard.id()
}

/// A metadata value as text, when it is valid base64 of valid UTF-8.
fn metadata_text(record: &UploadRecord, key: &str) -> Option<String> {
    use base64::Engine;
    let encoded = record.metadata_value(key)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// A committed object opened for reading.
pub struct Download {
    pub id: UploadId,
    pub length: u64,
    /// SHA-256 of the plaintext, hex.
    pub sha256: String,
    pub committed_at: u64,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    reader: Arc<PlainReader>,
}

/// Decrypted chunks in flight per download: the backpressure window.
const DOWNLOAD_QUEUE: usize = 2;

impl Download {
    /// Streams `range` of the plaintext, verified segment by segment; the
    /// whole object is also checked against its SHA-256 before its last
    /// chunk leaves (a Range cannot be, short of reading everything).
    pub fn stream(&self, range: ByteRange) -> mpsc::Receiver<Result<Bytes, store::Error>> {
        let (tx, rx) = mpsc::channel(DOWNLOAD_QUEUE);
        let reader = self.reader.clone();
        let whole = (range == ByteRange::full(self.length))
            .then(|| hex::decode(&self.sha256).ok()?.try_into().ok())
            .flatten();
        tokio::task::spawn_blocking(move || match whole {
            Some(sha256) => reader.stream_whole(sha256, &tx),
            None => reader.stream(range, &tx),
        });
        rx
    }
}
