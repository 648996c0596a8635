//! Quotas: the bytes each tenant holds, staged and committed, checked
//! against its `quota` from the limits in force.
//!
//! Owns the usage book: per tenant, the bytes of committed objects, of
//! uploads not yet committed (durable plus arriving in a request now) and
//! of commits admitted but not finished; per uncommitted upload, its share
//! of that. It is rebuilt from the records at start, kept current by ingest
//! on every create, chunk, commit, termination, expiry and rejection, and
//! reconciled with the index on every expiry sweep for tenants that were
//! quiet during the sweep's scan (which catches removals made elsewhere,
//! such as a tenant's shredding). Never touches staging or HTTP, and holds
//! its lock only for arithmetic.
//!
//! The checks:
//! - creation with a declared length (or a length declared later): staged
//!   + committed + the new bytes must fit;
//! - a deferred-length upload: each arriving frame must fit; the body is
//!   cut at the byte that would not, the bytes before it are kept;
//! - finalize (the commit): committed + commits under way + the object must
//!   fit. Staged bytes of other uploads do not count here, so of uploads
//!   that together do not fit, those that commit first get in and the rest
//!   are refused with every byte kept staged, until the tenant frees space
//!   or the upload expires.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, stream};

use crate::id::UploadId;
use crate::policy::LiveLimits;
use crate::staging::UploadRecord;

use super::{BodyChunk, BodyError, BodyStream, Error, Ingest, blocking, drain, pipeline::Ending};

/// Which check refused the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaCheck {
    /// A new upload's declared length (also a length declared later).
    Creation,
    /// Bytes of a deferred-length upload as they arrived.
    Body,
    /// The commit of a complete upload.
    Finalize,
}

/// A tenant's quota would be exceeded. Every figure is in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaExceeded {
    pub check: QuotaCheck,
    pub quota: u64,
    /// What counted against the quota: staged + committed bytes for
    /// creations and bodies, committed bytes (and commits under way) at
    /// finalize.
    pub used: u64,
    /// What the refused step needed on top.
    pub needed: u64,
}

impl std::fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            quota,
            used,
            needed,
            ..
        } = self;
        match self.check {
            QuotaCheck::Creation => write!(
                f,
                "the upload needs {needed} bytes and the tenant's quota of {quota} bytes \
                 has {} left ({used} held by uploads and objects)",
                quota.saturating_sub(*used)
            ),
            QuotaCheck::Body => write!(
                f,
                "the tenant's quota of {quota} bytes is used up: the body was cut where it \
                 reached the quota, and the bytes before are kept"
            ),
            QuotaCheck::Finalize => write!(
                f,
                "committing this {needed}-byte upload would bring the tenant's objects to {} \
                 bytes, over its quota of {quota}; every byte is kept: free space, then \
                 complete it with HEAD or an empty PATCH",
                used + needed
            ),
        }
    }
}

impl std::error::Error for QuotaExceeded {}

/// One tenant's usage.
#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    committed: u64,
    /// Bytes of uploads not committed: durable plus arriving.
    staged: u64,
    /// Bytes of commits admitted and not yet finished.
    committing: u64,
    /// The book's clock at this tenant's last change.
    changed: u64,
}

/// An uncommitted upload's share of its tenant's `staged`.
#[derive(Debug)]
struct Staged {
    tenant: Arc<str>,
    durable: u64,
    arriving: u64,
}

impl Staged {
    fn bytes(&self) -> u64 {
        self.durable + self.arriving
    }
}

/// One tenant's records, as a scan of the index found them.
#[derive(Debug, Default)]
struct Scanned {
    committed: u64,
    /// Uncommitted uploads and their durable bytes.
    staged: Vec<(UploadId, u64)>,
}

#[derive(Debug, Default)]
struct Book {
    tenants: HashMap<Arc<str>, Usage>,
    uploads: HashMap<UploadId, Staged>,
    /// Counts changes; a reconcile replaces only tenants whose last change
    /// came before its scan began.
    clock: u64,
}

impl Book {
    /// The tenant's usage, marked as changed now.
    fn touch(&mut self, tenant: &str) -> &mut Usage {
        self.clock += 1;
        let clock = self.clock;
        let key = self.tenant_key(tenant);
        let usage = self.tenants.entry(key).or_default();
        usage.changed = clock;
        usage
    }

    fn tenant_key(&mut self, tenant: &str) -> Arc<str> {
        match self.tenants.get_key_value(tenant) {
            Some((key, _)) => key.clone(),
            None => {
                let key: Arc<str> = Arc::from(tenant);
                self.tenants.insert(key.clone(), Usage::default());
                key
            }
        }
    }
}

/// The usage book and the limits it checks against.
#[derive(Debug, Default)]
pub struct Quotas {
    limits: OnceLock<Arc<LiveLimits>>,
    book: Mutex<Book>,
}

impl Quotas {
    pub fn set_limits(&self, live: Arc<LiveLimits>) {
        let _ = self.limits.set(live);
    }

    /// The tenant's quota now; 0 is none.
    fn quota(&self, tenant: &str) -> u64 {
        self.limits
            .get()
            .map_or(0, |live| live.current().for_tenant(tenant).quota)
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().expect("quota book poisoned")
    }

    /// Refuses `needed` more bytes for a new upload (or one whose length is
    /// declared now) that would not fit. `None`: the length is deferred,
    /// which needs room for at least one byte.
    pub fn check_new(&self, tenant: &str, needed: Option<u64>) -> Result<(), QuotaExceeded> {
        let quota = self.quota(tenant);
        if quota == 0 {
            return Ok(());
        }
        let used = self
            .book()
            .tenants
            .get(tenant)
            .map_or(0, |u| u.committed + u.staged);
        let fits = match needed {
            Some(needed) => used.saturating_add(needed) <= quota,
            None => used < quota,
        };
        if fits {
            return Ok(());
        }
        Err(QuotaExceeded {
            check: QuotaCheck::Creation,
            quota,
            used,
            needed: needed.unwrap_or(1),
        })
    }

    /// Records where an upload stands after it was created or a request on
    /// it settled: its durable bytes, or that it is now an object.
    pub fn track(&self, record: &UploadRecord) {
        let mut book = self.book();
        let book = &mut *book;
        if record.is_committed() {
            // Without a staged entry the object is counted already.
            let Some(staged) = book.uploads.remove(&record.id) else {
                return;
            };
            let usage = book.touch(&record.tenant);
            usage.staged = usage.staged.saturating_sub(staged.bytes());
            usage.committed += record.offset;
            return;
        }
        let key = book.tenant_key(&record.tenant);
        let entry = book.uploads.entry(record.id).or_insert(Staged {
            tenant: key,
            durable: 0,
            arriving: 0,
        });
        let before = entry.bytes();
        entry.durable = record.offset;
        entry.arriving = 0;
        let usage = book.touch(&record.tenant);
        usage.staged = usage.staged.saturating_sub(before) + record.offset;
    }

    /// Records that an upload or object was removed.
    pub fn forget(&self, record: &UploadRecord) {
        let mut book = self.book();
        let book = &mut *book;
        let staged = book.uploads.remove(&record.id);
        let usage = book.touch(&record.tenant);
        match staged {
            Some(staged) => usage.staged = usage.staged.saturating_sub(staged.bytes()),
            None if record.is_committed() => {
                usage.committed = usage.committed.saturating_sub(record.offset);
            }
            None => {}
        }
    }

    /// Charges `len` arriving bytes of an upload. With `enforce` (a
    /// deferred length), only what fits is charged: `Err` carries how many
    /// bytes did and why the rest did not.
    fn charge(
        &self,
        id: UploadId,
        tenant: &str,
        len: u64,
        enforce: bool,
    ) -> Result<(), (u64, QuotaExceeded)> {
        let quota = if enforce { self.quota(tenant) } else { 0 };
        let mut book = self.book();
        let book = &mut *book;
        let key = book.tenant_key(tenant);
        let usage = book.touch(tenant);
        let used = usage.committed + usage.staged;
        let room = quota.saturating_sub(used);
        let charged = if quota > 0 && len > room { room } else { len };
        usage.staged += charged;
        book.uploads
            .entry(id)
            .or_insert(Staged {
                tenant: key,
                durable: 0,
                arriving: 0,
            })
            .arriving += charged;
        if charged == len {
            return Ok(());
        }
        Err((
            charged,
            QuotaExceeded {
                check: QuotaCheck::Body,
                quota,
                used,
                needed: len,
            },
        ))
    }

    /// Gives back arriving bytes that no settled record accounted for (the
    /// request was dropped before it settled).
    fn release(&self, id: &UploadId, len: u64) {
        let mut book = self.book();
        let book = &mut *book;
        let Some(entry) = book.uploads.get_mut(id) else {
            return;
        };
        let given = entry.arriving.min(len);
        if given == 0 {
            return;
        }
        entry.arriving -= given;
        let tenant = entry.tenant.clone();
        let usage = book.touch(&tenant);
        usage.staged = usage.staged.saturating_sub(given);
    }

    /// Admits the commit of a complete `bytes`-byte upload if the tenant's
    /// objects, with the commits under way, stay within its quota. Hold the
    /// ticket until the commit has settled.
    pub fn begin_commit(
        &self,
        tenant: &str,
        bytes: u64,
    ) -> Result<CommitTicket<'_>, QuotaExceeded> {
        let quota = self.quota(tenant);
        let mut book = self.book();
        let key = book.tenant_key(tenant);
        let usage = book.touch(tenant);
        let used = usage.committed + usage.committing;
        if quota > 0 && used.saturating_add(bytes) > quota {
            return Err(QuotaExceeded {
                check: QuotaCheck::Finalize,
                quota,
                used,
                needed: bytes,
            });
        }
        usage.committing += bytes;
        Ok(CommitTicket {
            quotas: self,
            tenant: key,
            bytes,
        })
    }

    /// At the end of a request body: when it completes a regular upload,
    /// admits the commit (hold the ticket until the request settled), or
    /// turns the ending into a refusal. The refused upload keeps every byte
    /// that arrived, unless its chunk carries a checksum, which makes the
    /// chunk all or nothing as for any interruption.
    pub fn admit_completion(
        &self,
        completion: &Completion,
        meter: &Meter,
        ending: Ending,
    ) -> (Ending, Option<CommitTicket<'_>>) {
        let completes = matches!(ending, Ending::Complete { .. })
            && completion.commits
            && completion.length == Some(completion.offset + meter.received());
        if !completes {
            return (ending, None);
        }
        let bytes = completion.offset + meter.received();
        match self.begin_commit(&completion.tenant, bytes) {
            Ok(ticket) => (ending, Some(ticket)),
            Err(exceeded) => (Ending::Interrupted(Error::QuotaExceeded(exceeded)), None),
        }
    }

    /// The clock before a scan of the index for `reconcile`.
    pub fn clock(&self) -> u64 {
        self.book().clock
    }

    /// Replaces the usage of every tenant unchanged since `since` with what
    /// `records` (read after `since`) say: exact for tenants quiet during the
    /// scan; the others are left to the events and the next reconcile.
    /// Arriving bytes and commits under way are kept.
    pub fn reconcile(&self, since: u64, records: &[UploadRecord]) {
        let mut fresh: HashMap<&str, Scanned> = HashMap::new();
        for record in records {
            let scanned = fresh.entry(record.tenant.as_str()).or_default();
            if record.is_committed() {
                scanned.committed += record.offset;
            } else {
                scanned.staged.push((record.id, record.offset));
            }
        }
        let mut book = self.book();
        let book = &mut *book;
        let replaced: HashSet<Arc<str>> = book
            .tenants
            .iter()
            .filter(|(_, usage)| usage.changed <= since)
            .map(|(tenant, _)| tenant.clone())
            .chain(
                fresh
                    .keys()
                    .filter(|tenant| !book.tenants.contains_key(**tenant))
                    .map(|tenant| Arc::from(*tenant)),
            )
            .collect();
        let mut arriving = HashMap::new();
        book.uploads.retain(|id, entry| {
            if !replaced.contains(&entry.tenant) {
                return true;
            }
            if entry.arriving > 0 {
                arriving.insert(*id, entry.arriving);
            }
            false
        });
        for tenant in replaced {
            let scanned = fresh.remove(&*tenant).unwrap_or_default();
            let usage = book.tenants.entry(tenant.clone()).or_default();
            usage.committed = scanned.committed;
            usage.staged = 0;
            for (id, durable) in scanned.staged {
                let arriving = arriving.remove(&id).unwrap_or(0);
                usage.staged += durable + arriving;
                let entry = Staged {
                    tenant: tenant.clone(),
                    durable,
                    arriving,
                };
                book.uploads.insert(id, entry);
            }
            if usage.committed == 0 && usage.staged == 0 && usage.committing == 0 {
                book.tenants.remove(&tenant);
            }
        }
    }

    /// Meters a request body of `record`: every frame is charged as it
    /// arrives; with `enforce` (a deferred length) the body is cut at the
    /// quota. The returned [`Meter`] says whether it was cut and gives back
    /// unsettled charges when dropped.
    pub fn meter(
        self: &Arc<Self>,
        record: &UploadRecord,
        enforce: bool,
        body: BodyStream,
        idle: Duration,
    ) -> (BodyStream, Meter) {
        let shared = Arc::new(Metered::default());
        let state = MeterStream {
            quotas: self.clone(),
            id: record.id,
            tenant: record.tenant.clone(),
            enforce,
            inner: body,
            shared: shared.clone(),
            idle,
            cut: false,
        };
        let stream = stream::unfold(state, |mut state| async move {
            let item = state.next().await?;
            Some((item, state))
        });
        let meter = Meter {
            quotas: self.clone(),
            id: record.id,
            shared,
        };
        (Box::pin(stream), meter)
    }
}

/// What a request on an upload needs known, before its record moves into
/// the write stage, to tell whether it completes (and so commits) it.
pub struct Completion {
    tenant: String,
    length: Option<u64>,
    offset: u64,
    /// Only regular uploads commit by a request of their own (a partial
    /// upload's bytes stay staged; a final concatenation is assembled).
    commits: bool,
}

impl Completion {
    pub fn of(record: &UploadRecord) -> Completion {
        Completion {
            tenant: record.tenant.clone(),
            length: record.length,
            offset: record.offset,
            commits: matches!(record.kind, crate::staging::UploadKind::Regular)
                && !record.is_committed(),
        }
    }
}

/// A commit admitted against the quota; dropping it ends the admission
/// (the settled record has by then moved the bytes to `committed`).
pub struct CommitTicket<'a> {
    quotas: &'a Quotas,
    tenant: Arc<str>,
    bytes: u64,
}

impl Drop for CommitTicket<'_> {
    fn drop(&mut self) {
        let mut book = self.quotas.book();
        let usage = book.touch(&self.tenant);
        usage.committing = usage.committing.saturating_sub(self.bytes);
    }
}

/// What the body stream and its request share.
#[derive(Debug, Default)]
struct Metered {
    charged: AtomicU64,
    cut: Mutex<Option<QuotaExceeded>>,
}

/// The request's side of a metered body.
pub struct Meter {
    quotas: Arc<Quotas>,
    id: UploadId,
    shared: Arc<Metered>,
}

impl Meter {
    /// Bytes of the body handed on so far.
    pub fn received(&self) -> u64 {
        self.shared.charged.load(Ordering::Relaxed)
    }

    /// How the request ended, given how the body ended: a body cut at the
    /// quota is an interruption (the bytes before the cut are kept).
    pub fn ending(&self, ending: Ending) -> Ending {
        match self.shared.cut.lock().expect("meter poisoned").take() {
            Some(exceeded) => Ending::Interrupted(Error::QuotaExceeded(exceeded)),
            None => ending,
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        // After a settled record, nothing is left to give back.
        self.quotas.release(&self.id, self.received());
    }
}

struct MeterStream {
    quotas: Arc<Quotas>,
    id: UploadId,
    tenant: String,
    enforce: bool,
    inner: BodyStream,
    shared: Arc<Metered>,
    idle: Duration,
    cut: bool,
}

impl MeterStream {
    async fn next(&mut self) -> Option<Result<BodyChunk, BodyError>> {
        if self.cut {
            // Read the rest so the client can finish sending and read the
            // answer, as for other failures mid-body.
            drain(&mut self.inner, self.idle).await;
            return None;
        }
        let mut bytes: Bytes = match self.inner.next().await? {
            Ok(BodyChunk::Data(bytes)) => bytes,
            other => return Some(other),
        };
        let len = bytes.len() as u64;
        match self.quotas.charge(self.id, &self.tenant, len, self.enforce) {
            Ok(()) => {
                self.shared.charged.fetch_add(len, Ordering::Relaxed);
                Some(Ok(BodyChunk::Data(bytes)))
            }
            Err((fits, exceeded)) => {
                self.cut = true;
                *self.shared.cut.lock().expect("meter poisoned") = Some(exceeded);
                self.shared.charged.fetch_add(fits, Ordering::Relaxed);
                if fits == 0 {
                    drain(&mut self.inner, self.idle).await;
                    return None;
                }
                Some(Ok(BodyChunk::Data(bytes.split_to(fits as usize))))
            }
        }
    }
}

impl Ingest {
    /// Wires in the limits in force, for each tenant's quota. Unset (tests
    /// that build ingest alone), no quota applies; usage is kept all the
    /// same.
    pub fn set_limits(&self, limits: Arc<LiveLimits>) {
        self.quota.set_limits(limits);
    }

    /// Reconciles the usage book with `records`, read after the book's
    /// clock showed `since` (see [`Quotas::reconcile`]). Off the reactor:
    /// it walks every record.
    pub(super) async fn reconcile_quotas(
        &self,
        since: u64,
        records: Vec<UploadRecord>,
    ) -> Result<Vec<UploadRecord>, Error> {
        let quota = self.quota.clone();
        blocking(move || {
            quota.reconcile(since, &records);
            Ok(records)
        })
        .await
    }

    /// Forgets an upload that a rejection just destroyed.
    pub(super) fn forget_if_rejected<T>(&self, record: &UploadRecord, result: &Result<T, Error>) {
        if let Err(Error::Rejected(_)) = result {
            self.quota.forget(record);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Limits, LimitsTable};

    fn quotas(quota: u64) -> Arc<Quotas> {
        let quotas = Arc::new(Quotas::default());
        quotas.set_limits(Arc::new(LiveLimits::new(LimitsTable::uniform(
            0,
            Limits {
                quota,
                ..Limits::UNLIMITED
            },
        ))));
        quotas
    }

    /// A record as the index would hold it (built from its stored form, so
    /// fields this module does not read keep their defaults).
    fn record(n: u8, tenant: &str, offset: u64, committed: bool) -> UploadRecord {
        let state = if committed {
            serde_json::json!({"state": "committed", "sha256": "", "committed_at": 0})
        } else {
            serde_json::json!({"state": "receiving"})
        };
        serde_json::from_value(serde_json::json!({
            "id": UploadId::from_bytes([n; 16]).to_string(),
            "tenant": tenant,
            "length": null,
            "offset": offset,
            "metadata": [],
            "kind": {"type": "regular"},
            "state": state,
            "created_at": 0,
            "updated_at": 0,
            "expires_at": null,
            "key": {"kek": "local:a:v1", "blob": ""},
        }))
        .expect("a record in its stored form")
    }

    fn used(quotas: &Quotas, tenant: &str) -> (u64, u64) {
        quotas
            .book()
            .tenants
            .get(tenant)
            .map_or((0, 0), |u| (u.committed, u.staged))
    }

    #[test]
    fn staged_and_committed_bytes_count_and_removal_frees_them() {
        let quotas = quotas(100);
        let upload = record(1, "a", 0, false);
        quotas.track(&upload);
        quotas.check_new("a", Some(100)).unwrap();
        quotas.track(&record(1, "a", 60, false));
        assert_eq!(used(&quotas, "a"), (0, 60));
        let err = quotas.check_new("a", Some(41)).unwrap_err();
        assert_eq!(
            (err.check, err.used, err.needed),
            (QuotaCheck::Creation, 60, 41)
        );
        quotas.track(&record(1, "a", 60, true));
        assert_eq!(used(&quotas, "a"), (60, 0));
        quotas.check_new("b", Some(100)).unwrap();
        quotas.forget(&record(1, "a", 60, true));
        assert_eq!(used(&quotas, "a"), (0, 0));
        quotas.check_new("a", Some(100)).unwrap();
    }

    #[test]
    fn a_deferred_upload_needs_room_for_a_byte() {
        let quotas = quotas(10);
        quotas.track(&record(1, "a", 0, false));
        quotas.track(&record(1, "a", 10, true));
        assert!(quotas.check_new("a", None).is_err());
        assert!(quotas.check_new("a", Some(0)).is_ok());
    }

    #[test]
    fn only_what_fits_is_charged_when_enforced() {
        let quotas = quotas(100);
        let id = UploadId::from_bytes([1; 16]);
        quotas.charge(id, "a", 70, true).unwrap();
        let (fits, err) = quotas.charge(id, "a", 50, true).unwrap_err();
        assert_eq!((fits, err.check), (30, QuotaCheck::Body));
        // Without a deferred length the bytes count but are not refused.
        quotas.charge(id, "a", 50, false).unwrap();
        assert_eq!(used(&quotas, "a"), (0, 150));
        quotas.release(&id, 150);
        assert_eq!(used(&quotas, "a"), (0, 0));
    }

    #[test]
    fn commits_are_admitted_against_objects_and_commits_under_way() {
        let quotas = quotas(100);
        quotas.track(&record(1, "a", 60, false));
        quotas.track(&record(2, "a", 60, false));
        let first = quotas.begin_commit("a", 60).unwrap();
        let err = quotas.begin_commit("a", 60).err().unwrap();
        assert_eq!((err.check, err.used), (QuotaCheck::Finalize, 60));
        quotas.track(&record(1, "a", 60, true));
        drop(first);
        assert!(quotas.begin_commit("a", 60).is_err());
        assert!(quotas.begin_commit("a", 40).is_ok());
    }

    #[test]
    fn reconcile_replaces_quiet_tenants_and_keeps_busy_ones() {
        let quotas = quotas(0);
        quotas.track(&record(1, "quiet", 50, false));
        quotas.track(&record(2, "busy", 10, false));
        let since = quotas.clock();
        // Changed after the scan began: left alone.
        quotas.track(&record(2, "busy", 20, false));
        // The index no longer has upload 1 (removed elsewhere), has an
        // object of "quiet" and one of a tenant the book never saw.
        let scanned = [
            record(3, "quiet", 7, true),
            record(2, "busy", 15, false),
            record(4, "new", 5, false),
        ];
        quotas.reconcile(since, &scanned);
        assert_eq!(used(&quotas, "quiet"), (7, 0));
        assert_eq!(used(&quotas, "busy"), (0, 20));
        assert_eq!(used(&quotas, "new"), (0, 5));
        assert!(
            !quotas
                .book()
                .uploads
                .contains_key(&UploadId::from_bytes([1; 16]))
        );
    }
}
