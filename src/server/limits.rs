//! Per-tenant admission at the public gateway: request and new-upload rates
//! (token buckets: 429 `rate_limited` with a `Retry-After` computed from the
//! bucket), upload bodies received at once (429
//! `too_many_concurrent_uploads`), and pacing of upload bodies so that
//! `ingress_bytes_per_second` is divided among the tenants that are
//! uploading, by their `share`.
//!
//! Owns the limiter state per tenant, bounded by `MAX_TENANTS`. Reads the
//! limits in force from [`LiveLimits`] on every request, so a policy reload
//! applies from the next request on. Never blocks the reactor: its locks
//! guard a few lines of arithmetic, and pacing sleeps asynchronously between
//! reads of the body, so what a paced client sends waits in its socket, not
//! in a buffer here. Never decides quotas (ingest does, with the bytes).
//!
//! The buckets are written out rather than taken from a crate (governor):
//! rates change at run time (reloads, and an ingress share changes whenever
//! a tenant starts or stops uploading), and `Retry-After` needs the
//! bucket's own arithmetic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use tokio::time::Instant;

use crate::ingest::{BodyChunk, BodyError, BodyStream};
use crate::policy::{Limits, LiveLimits};
use crate::tus::TusRequest;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("more than {per_second} {} per second (burst {burst}); retry in {} s", .rate.noun(), retry_secs(*.retry_after))]
    RateLimited {
        rate: Rate,
        per_second: f64,
        burst: u32,
        retry_after: Duration,
    },
    #[error("{limit} uploads of this tenant are already being received; retry when one ends")]
    TooManyConcurrentUploads { limit: u32 },
}

/// Which bucket refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    Requests,
    Uploads,
}

impl Rate {
    /// The limit's key, as in the config and the policy.
    pub fn key(self) -> &'static str {
        match self {
            Rate::Requests => "requests_per_second",
            Rate::Uploads => "uploads_per_second",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Rate::Requests => "requests",
            Rate::Uploads => "new uploads",
        }
    }
}

/// Whole seconds for `Retry-After`: rounded up, at least 1, so a client
/// that waits that long finds a token.
pub fn retry_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// What a request asks of its tenant's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    /// It creates an upload (takes from the new-upload bucket too).
    pub creates_upload: bool,
    /// It carries upload bytes (holds an upload slot while it runs).
    pub carries_body: bool,
}

impl Demand {
    /// A request with no upload bytes (HEAD, DELETE, GET).
    pub const REQUEST: Demand = Demand {
        creates_upload: false,
        carries_body: false,
    };

    /// What a tus request asks; `None` for OPTIONS, which only describes
    /// the server and belongs to no tenant.
    pub fn of(request: &TusRequest) -> Option<Demand> {
        let carries = |content_length: Option<u64>| content_length != Some(0);
        match request {
            TusRequest::Options => None,
            TusRequest::Create(create) => Some(Demand {
                creates_upload: true,
                carries_body: create
                    .body
                    .as_ref()
                    .is_some_and(|body| carries(body.content_length)),
            }),
            TusRequest::Patch(patch) => Some(Demand {
                creates_upload: false,
                carries_body: carries(patch.body.content_length),
            }),
            TusRequest::Head(_) | TusRequest::Terminate(_) => Some(Demand::REQUEST),
        }
    }
}

/// Tenants tracked at most. Tenants are few (an admin creates each one);
/// past this, idle ones are forgotten, and if none is idle the rest share
/// one state (coarser, never unlimited).
const MAX_TENANTS: usize = 10_000;
/// A tenant with no upload in progress and no request for this long is
/// forgotten first when the table is full: by then its buckets have refilled
/// for any sensible rate.
const IDLE_FORGET: Duration = Duration::from_secs(600);
/// Ingress pacing hands out a paced body in pieces of about this much time
/// at the tenant's rate, so pieces keep arriving (well inside
/// `body_idle_timeout`) however low the rate is.
const PIECE_TIME: Duration = Duration::from_millis(50);
const MIN_PIECE: usize = 1024;
const MAX_PIECE: usize = 256 << 10;
/// How far ahead of its rate a tenant may send (bucket size, in time).
const INGRESS_BURST_TIME: Duration = Duration::from_millis(100);

/// Per-tenant limiter state for the public listener.
pub struct Limiter {
    live: Arc<LiveLimits>,
    tenants: Mutex<HashMap<String, Arc<Tenant>>>,
    /// Shared by tenants past `MAX_TENANTS`.
    overflow: Arc<Tenant>,
    /// The overflow is logged once, not per request.
    overflow_logged: AtomicBool,
    /// Sum of the shares of the tenants receiving an upload now: the
    /// denominator of every tenant's part of the ingress rate.
    active_weight: AtomicU64,
}

struct Tenant {
    state: Mutex<TenantState>,
}

struct TenantState {
    requests: Bucket,
    uploads: Bucket,
    ingress: Bucket,
    /// Upload bodies being received now.
    receiving: u32,
    /// The share this tenant added to `active_weight` while it receives.
    weight: u64,
    last_seen: Instant,
}

impl Tenant {
    fn new(limits: &Limits, now: Instant) -> Tenant {
        Tenant {
            state: Mutex::new(TenantState {
                requests: Bucket::full(limits.requests_burst, now),
                uploads: Bucket::full(limits.uploads_burst, now),
                ingress: Bucket::full(0, now),
                receiving: 0,
                weight: 0,
                last_seen: now,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TenantState> {
        self.state.lock().expect("tenant limiter poisoned")
    }
}

/// A token bucket: `tokens` refill at a rate up to a capacity. The rate and
/// capacity are passed on every use, so a reload or a new ingress share
/// takes effect at once; tokens above a lowered capacity are cut.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(capacity: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(capacity),
            at: now,
        }
    }

    fn refill(&mut self, now: Instant, rate: f64, capacity: f64) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(capacity);
        self.at = now;
    }

    /// How long until `n` tokens are there (zero: they are).
    fn shortfall(&self, n: f64, rate: f64) -> Duration {
        if self.tokens >= n {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((n - self.tokens) / rate)
        }
    }
}

/// What a request was admitted to; hold it until the request has ended.
/// Dropping it frees the upload slot it holds, if any.
pub struct Admission {
    slot: Option<Slot>,
}

struct Slot {
    limiter: Arc<Limiter>,
    tenant: Arc<Tenant>,
}

impl Admission {
    /// For requests outside any tenant's limits (OPTIONS).
    pub fn unlimited() -> Admission {
        Admission { slot: None }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.tenant.lock();
        state.receiving = state.receiving.saturating_sub(1);
        if state.receiving == 0 {
            self.limiter
                .active_weight
                .fetch_sub(state.weight, Ordering::Relaxed);
            state.weight = 0;
        }
    }
}

impl Limiter {
    pub fn new(live: Arc<LiveLimits>) -> Arc<Limiter> {
        let now = Instant::now();
        let overflow = Arc::new(Tenant::new(&live.current().defaults, now));
        Arc::new(Limiter {
            live,
            tenants: Mutex::new(HashMap::new()),
            overflow,
            overflow_logged: AtomicBool::new(false),
            active_weight: AtomicU64::new(0),
        })
    }

    /// Admits a request of `tenant` or says why not. An upload slot is
    /// checked first (it can be given back), then both buckets, and tokens
    /// are only taken when every check passed.
    pub fn admit(self: &Arc<Self>, tenant: &str, demand: Demand) -> Result<Admission, Error> {
        let limits = *self.live.current().for_tenant(tenant);
        let now = Instant::now();
        let entry = self.tenant(tenant, &limits, now);
        let mut state = entry.lock();
        state.last_seen = now;
        if demand.carries_body
            && limits.concurrent_uploads > 0
            && state.receiving >= limits.concurrent_uploads
        {
            return Err(Error::TooManyConcurrentUploads {
                limit: limits.concurrent_uploads,
            });
        }
        let requests = (limits.requests_per_second, limits.requests_burst);
        let uploads = (limits.uploads_per_second, limits.uploads_burst);
        check(&mut state.requests, requests, now, Rate::Requests)?;
        if demand.creates_upload {
            check(&mut state.uploads, uploads, now, Rate::Uploads)?;
            take(&mut state.uploads, uploads.0);
        }
        take(&mut state.requests, requests.0);
        if !demand.carries_body {
            return Ok(Admission { slot: None });
        }
        state.receiving += 1;
        if state.receiving == 1 {
            state.weight = u64::from(limits.share);
            self.active_weight
                .fetch_add(state.weight, Ordering::Relaxed);
        }
        drop(state);
        Ok(Admission {
            slot: Some(Slot {
                limiter: self.clone(),
                tenant: entry,
            }),
        })
    }

    /// The body of an admitted upload request, paced to its tenant's part
    /// of `ingress_bytes_per_second` (unchanged when that is 0).
    pub fn pace(&self, admission: &Admission, body: BodyStream) -> BodyStream {
        let Some(slot) = &admission.slot else {
            return body;
        };
        if self.live.current().ingress_bytes_per_second == 0 {
            return body;
        }
        let pacer = Pacer {
            limiter: slot.limiter.clone(),
            tenant: slot.tenant.clone(),
            inner: body,
            held: Bytes::new(),
        };
        Box::pin(stream::unfold(pacer, |mut pacer| async move {
            let item = pacer.next().await?;
            Some((item, pacer))
        }))
    }

    /// The tenant's state, made on first use. The table is bounded: when it
    /// is full, idle tenants are forgotten, and if none is, the overflow
    /// state stands in.
    fn tenant(&self, name: &str, limits: &Limits, now: Instant) -> Arc<Tenant> {
        let mut tenants = self.tenants.lock().expect("limiter table poisoned");
        if let Some(tenant) = tenants.get(name) {
            return tenant.clone();
        }
        if tenants.len() >= MAX_TENANTS {
            tenants.retain(|_, tenant| Arc::strong_count(tenant) > 1 || !is_idle(tenant, now));
        }
        if tenants.len() >= MAX_TENANTS {
            if !self.overflow_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    max = MAX_TENANTS,
                    "limiter table full: tenants beyond it share one set of buckets"
                );
            }
            return self.overflow.clone();
        }
        let tenant = Arc::new(Tenant::new(limits, now));
        tenants.insert(name.to_owned(), tenant.clone());
        tenant
    }

    /// The tenant's part of the ingress rate now, in bytes per second (0:
    /// unlimited).
    fn ingress_rate(&self, weight: u64) -> f64 {
        let total = self.live.current().ingress_bytes_per_second;
        if total == 0 {
            return 0.0;
        }
        let all = self
            .active_weight
            .load(Ordering::Relaxed)
            .max(weight)
            .max(1);
        total as f64 * weight.max(1) as f64 / all as f64
    }

    /// Takes `len` bytes from the tenant's ingress bucket, into debt if need
    /// be, and says how long to wait before handing them on: the debt at the
    /// tenant's rate. Concurrent bodies of one tenant queue behind each
    /// other's debt.
    fn debit(&self, tenant: &Tenant, len: usize) -> Duration {
        let mut state = tenant.lock();
        let rate = self.ingress_rate(state.weight);
        if rate <= 0.0 {
            return Duration::ZERO;
        }
        let capacity = (rate * INGRESS_BURST_TIME.as_secs_f64()).max(piece_len(rate) as f64);
        state.ingress.refill(Instant::now(), rate, capacity);
        state.ingress.tokens -= len as f64;
        if state.ingress.tokens < 0.0 {
            Duration::from_secs_f64(-state.ingress.tokens / rate)
        } else {
            Duration::ZERO
        }
    }

    /// The current piece size for a tenant's paced body.
    fn piece(&self, tenant: &Tenant) -> usize {
        let weight = tenant.lock().weight;
        match self.ingress_rate(weight) {
            rate if rate <= 0.0 => usize::MAX,
            rate => piece_len(rate),
        }
    }
}

fn piece_len(rate: f64) -> usize {
    ((rate * PIECE_TIME.as_secs_f64()) as usize).clamp(MIN_PIECE, MAX_PIECE)
}

fn is_idle(tenant: &Tenant, now: Instant) -> bool {
    let state = tenant.lock();
    state.receiving == 0 && now.saturating_duration_since(state.last_seen) >= IDLE_FORGET
}

/// Refills `bucket` and refuses when it lacks a token. `(rate, burst)`;
/// a rate of 0 is no limit.
fn check(
    bucket: &mut Bucket,
    (rate, burst): (f64, u32),
    now: Instant,
    which: Rate,
) -> Result<(), Error> {
    if rate <= 0.0 {
        return Ok(());
    }
    bucket.refill(now, rate, f64::from(burst));
    let wait = bucket.shortfall(1.0, rate);
    if wait.is_zero() {
        return Ok(());
    }
    Err(Error::RateLimited {
        rate: which,
        per_second: rate,
        burst,
        retry_after: wait,
    })
}

fn take(bucket: &mut Bucket, rate: f64) {
    if rate > 0.0 {
        bucket.tokens -= 1.0;
    }
}

/// Hands a body on in pieces, each after its tenant's ingress bucket had
/// room for it. Holds at most the one network frame it is handing on; the
/// next frame is not read until that one is through, so a paced client is
/// held back by TCP (or HTTP/2) flow control.
struct Pacer {
    limiter: Arc<Limiter>,
    tenant: Arc<Tenant>,
    inner: BodyStream,
    held: Bytes,
}

impl Pacer {
    async fn next(&mut self) -> Option<Result<BodyChunk, BodyError>> {
        while self.held.is_empty() {
            match self.inner.next().await? {
                Ok(BodyChunk::Data(bytes)) => self.held = bytes,
                other => return Some(other),
            }
        }
        let size = self.limiter.piece(&self.tenant).min(self.held.len());
        let piece = self.held.split_to(size);
        let wait = self.limiter.debit(&self.tenant, piece.len());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Some(Ok(BodyChunk::Data(piece)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::LimitsTable;

    fn limiter(limits: Limits, ingress: u64) -> Arc<Limiter> {
        Limiter::new(Arc::new(LiveLimits::new(LimitsTable::uniform(
            ingress, limits,
        ))))
    }

    fn rated(per_second: f64, burst: u32) -> Limits {
        Limits {
            requests_per_second: per_second,
            requests_burst: burst,
            ..Limits::UNLIMITED
        }
    }

    const BODY: Demand = Demand {
        creates_upload: false,
        carries_body: true,
    };
    const CREATE: Demand = Demand {
        creates_upload: true,
        carries_body: false,
    };

    #[test]
    fn a_burst_passes_then_the_bucket_says_when_to_come_back() {
        let limiter = limiter(rated(2.0, 3), 0);
        for _ in 0..3 {
            limiter.admit("a", Demand::REQUEST).unwrap();
        }
        let Err(Error::RateLimited {
            rate, retry_after, ..
        }) = limiter.admit("a", Demand::REQUEST)
        else {
            panic!("the fourth request must be refused");
        };
        assert_eq!(rate, Rate::Requests);
        // One token at 2/s: at most half a second, rounded up to 1 s.
        assert!(retry_after <= Duration::from_millis(500), "{retry_after:?}");
        assert_eq!(retry_secs(retry_after), 1);
        // Another tenant has its own bucket.
        limiter.admit("b", Demand::REQUEST).unwrap();
    }

    #[test]
    fn a_refused_upload_creation_takes_no_request_token() {
        let limits = Limits {
            uploads_per_second: 0.001,
            uploads_burst: 1,
            ..rated(0.001, 2)
        };
        let limiter = limiter(limits, 0);
        limiter.admit("a", CREATE).unwrap();
        assert!(matches!(
            limiter.admit("a", CREATE),
            Err(Error::RateLimited {
                rate: Rate::Uploads,
                ..
            })
        ));
        // The second request token is still there.
        limiter.admit("a", Demand::REQUEST).unwrap();
    }

    #[test]
    fn upload_slots_are_counted_and_given_back() {
        let limits = Limits {
            concurrent_uploads: 2,
            share: 3,
            ..Limits::UNLIMITED
        };
        let limiter = limiter(limits, 1000);
        let first = limiter.admit("a", BODY).unwrap();
        let second = limiter.admit("a", BODY).unwrap();
        assert!(matches!(
            limiter.admit("a", BODY),
            Err(Error::TooManyConcurrentUploads { limit: 2 })
        ));
        // Requests without a body are not uploads being received.
        limiter.admit("a", Demand::REQUEST).unwrap();
        assert_eq!(limiter.active_weight.load(Ordering::Relaxed), 3);
        drop(first);
        let _third = limiter.admit("a", BODY).unwrap();
        drop(second);
        drop(_third);
        assert_eq!(limiter.active_weight.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_ingress_rate_is_divided_by_the_shares_of_tenants_uploading() {
        let live = Arc::new(LiveLimits::new(LimitsTable::uniform(
            4000,
            Limits::UNLIMITED,
        )));
        let mut table = (*live.current()).clone();
        table.tenants.insert(
            "heavy".into(),
            Limits {
                share: 3,
                ..Limits::UNLIMITED
            },
        );
        live.replace(table);
        let limiter = Limiter::new(live);
        let light = limiter.admit("light", BODY).unwrap();
        assert_eq!(limiter.ingress_rate(1), 4000.0);
        let heavy = limiter.admit("heavy", BODY).unwrap();
        assert_eq!(limiter.ingress_rate(1), 1000.0);
        assert_eq!(limiter.ingress_rate(3), 3000.0);
        drop(heavy);
        assert_eq!(limiter.ingress_rate(1), 4000.0);
        drop(light);
    }

    #[test]
    fn the_tenant_table_is_bounded() {
        let limiter = limiter(rated(0.001, 1), 0);
        for n in 0..MAX_TENANTS {
            limiter.admit(&format!("t{n}"), Demand::REQUEST).unwrap();
        }
        // None is idle yet: the next one shares the overflow buckets, which
        // still limit.
        limiter.admit("late", Demand::REQUEST).unwrap();
        assert!(limiter.admit("later", Demand::REQUEST).is_err());
        assert_eq!(limiter.tenants.lock().unwrap().len(), MAX_TENANTS);
    }

    #[test]
    fn debt_turns_into_a_wait_at_the_tenants_rate() {
        let limiter = limiter(Limits::UNLIMITED, 100_000);
        let admission = limiter.admit("a", BODY).unwrap();
        let tenant = admission.slot.as_ref().unwrap().tenant.clone();
        // The bucket starts empty: 50,000 bytes at 100,000 B/s is half a second.
        let wait = limiter.debit(&tenant, 50_000);
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        // Pieces of 50 ms at the rate.
        assert_eq!(limiter.piece(&tenant), 5000);
    }
}
