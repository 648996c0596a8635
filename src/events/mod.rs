//! Live events: what happens to uploads (created, progress, committed,
//! verdicts, deletions, releases) as it happens, for the console and for
//! integrators (served as server-sent events). Owns the event types and the
//! bus; ingest publishes, the server subscribes. Never blocks a publisher:
//! the bus is a bounded ring, and a subscriber that falls behind is told how
//! many events it missed instead of slowing anyone down. Knows no HTTP.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::broadcast;

use crate::id::UploadId;

/// Events kept for subscribers that are behind. A subscriber further back
/// than this gets `Missed` and goes on from the oldest kept.
const BUS_CAPACITY: usize = 1024;

/// Progress events per upload are at most this frequent: a 10 GiB upload
/// must not flood the bus with one event per network frame.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// Uploads whose last progress time is remembered; past this many, the
/// oldest are forgotten (they then may send one event early).
const MAX_THROTTLED_UPLOADS: usize = 4096;

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Detail {
    Created {
        length: Option<u64>,
        filename: Option<String>,
    },
    Progress {
        offset: u64,
        length: Option<u64>,
        /// Whether `offset` bytes are durable (acknowledged) or only received.
        durable: bool,
    },
    Committed {
        size: u64,
        sha256: String,
        disposition: &'static str,
    },
    Verdict {
        disposition: &'static str,
        reason: Option<String>,
        plugin: Option<String>,
        rule: Option<String>,
    },
    Deleted {
        reason: &'static str,
    },
    Released {},
}

impl Detail {
    pub fn kind(&self) -> &'static str {
        match self {
            Detail::Created { .. } => "upload.created",
            Detail::Progress { .. } => "upload.progress",
            Detail::Committed { .. } => "upload.committed",
            Detail::Verdict { .. } => "upload.verdict",
            Detail::Deleted { .. } => "upload.deleted",
            Detail::Released {} => "object.released",
        }
    }
}

/// One event, as published.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Increasing per appliance run.
    #[serde(skip)]
    pub seq: u64,
    pub upload: UploadId,
    pub tenant: String,
    /// Unix milliseconds.
    pub at: u64,
    #[serde(flatten)]
    pub detail: Detail,
}

impl Event {
    /// The event's data as one line of JSON.
    pub fn data_json(&self) -> String {
        serde_json::to_string(self).expect("events serialise")
    }
}

/// What a subscriber receives next.
#[derive(Debug)]
pub enum Received {
    Event(Event),
    /// The subscriber fell behind and this many events were dropped for it.
    Missed(u64),
    Closed,
}

pub struct Bus {
    sender: broadcast::Sender<Event>,
    seq: AtomicU64,
    /// When each upload last published progress.
    progress: Mutex<HashMap<UploadId, Instant>>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("subscribers", &self.sender.receiver_count())
            .finish_non_exhaustive()
    }
}

impl Default for Bus {
    fn default() -> Self {
        Bus::new()
    }
}

impl Bus {
    pub fn new() -> Bus {
        Bus {
            sender: broadcast::Sender::new(BUS_CAPACITY),
            seq: AtomicU64::new(0),
            progress: Mutex::new(HashMap::new()),
        }
    }

    pub fn publish(&self, upload: UploadId, tenant: &str, detail: Detail) {
        if matches!(detail, Detail::Committed { .. } | Detail::Deleted { .. }) {
            self.progress
                .lock()
                .expect("progress times poisoned")
                .remove(&upload);
        }
        // Nobody listening is the common case: skip the allocation.
        if self.sender.receiver_count() == 0 {
            return;
        }
        let event = Event {
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            upload,
            tenant: tenant.to_owned(),
            at: unix_millis(),
            detail,
        };
        // An error only means every subscriber left meanwhile.
        let _ = self.sender.send(event);
    }

    /// Publishes bytes received so far, unless this upload did less than
    /// `PROGRESS_INTERVAL` ago. Durable progress (an acknowledged offset)
    /// goes through `publish` and is never dropped.
    pub fn publish_received(
        &self,
        upload: UploadId,
        tenant: &str,
        offset: u64,
        length: Option<u64>,
    ) {
        if self.sender.receiver_count() == 0 || !self.progress_due(upload) {
            return;
        }
        let detail = Detail::Progress {
            offset,
            length,
            durable: false,
        };
        self.publish(upload, tenant, detail);
    }

    fn progress_due(&self, upload: UploadId) -> bool {
        let now = Instant::now();
        let mut times = self.progress.lock().expect("progress times poisoned");
        if let Some(last) = times.get(&upload)
            && now.duration_since(*last) < PROGRESS_INTERVAL
        {
            return false;
        }
        if times.len() >= MAX_THROTTLED_UPLOADS {
            times.retain(|_, last| now.duration_since(*last) < PROGRESS_INTERVAL);
        }
        times.insert(upload, now);
        true
    }

    /// A stream of events for one tenant, or for all with `None`.
    pub fn subscribe(&self, tenant: Option<String>) -> Subscription {
        Subscription {
            receiver: self.sender.subscribe(),
            tenant,
        }
    }

    pub fn subscribers(&self) -> usize {
        self.sender.receiver_count()
    }
}

pub struct Subscription {
    receiver: broadcast::Receiver<Event>,
    tenant: Option<String>,
}

impl Subscription {
    /// The next event for this subscriber's tenant.
    pub async fn next(&mut self) -> Received {
        loop {
            match self.receiver.recv().await {
                Ok(event) if self.wants(&event) => return Received::Event(event),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    return Received::Missed(missed);
                }
                Err(broadcast::error::RecvError::Closed) => return Received::Closed,
            }
        }
    }

    fn wants(&self, event: &Event) -> bool {
        self.tenant.as_deref().is_none_or(|t| t == event.tenant)
    }
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> UploadId {
        UploadId::from_bytes([n; 16])
    }

    #[tokio::test]
    async fn a_tenant_subscriber_sees_only_its_own_events_in_order() {
        let bus = Bus::new();
        let mut acme = bus.subscribe(Some("acme".into()));
        let mut all = bus.subscribe(None);
        bus.publish(
            id(1),
            "globex",
            Detail::Deleted {
                reason: "terminated",
            },
        );
        bus.publish(id(2), "acme", Detail::Released {});
        let Received::Event(event) = acme.next().await else {
            panic!("an event")
        };
        assert_eq!(
            (event.upload, event.detail.kind()),
            (id(2), "object.released")
        );
        let Received::Event(first) = all.next().await else {
            panic!("an event")
        };
        let Received::Event(second) = all.next().await else {
            panic!("an event")
        };
        assert_eq!(
            (first.tenant.as_str(), second.tenant.as_str()),
            ("globex", "acme")
        );
        assert!(first.seq < second.seq);
    }

    #[tokio::test]
    async fn received_progress_is_throttled_but_durable_progress_is_not() {
        let bus = Bus::new();
        let mut sub = bus.subscribe(None);
        for offset in 0..100 {
            bus.publish_received(id(1), "acme", offset, Some(1000));
        }
        let durable = Detail::Progress {
            offset: 100,
            length: Some(1000),
            durable: true,
        };
        bus.publish(id(1), "acme", durable);
        let Received::Event(first) = sub.next().await else {
            panic!("an event")
        };
        let Received::Event(second) = sub.next().await else {
            panic!("an event")
        };
        assert!(
            first.data_json().contains(r#""offset":0"#),
            "{}",
            first.data_json()
        );
        assert!(second.data_json().contains(r#""durable":true"#));
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_what_it_missed() {
        let bus = Bus::new();
        let mut sub = bus.subscribe(None);
        for _ in 0..(BUS_CAPACITY + 10) {
            bus.publish(id(1), "acme", Detail::Released {});
        }
        assert!(matches!(sub.next().await, Received::Missed(10)));
        assert!(matches!(sub.next().await, Received::Event(_)));
    }

    #[test]
    fn event_data_is_flat_json_with_the_contract_fields() {
        let event = Event {
            seq: 7,
            upload: id(3),
            tenant: "acme".into(),
            at: 1,
            detail: Detail::Committed {
                size: 5,
                sha256: "ab".into(),
                disposition: "released",
            },
        };
        let value: serde_json::Value = serde_json::from_str(&event.data_json()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "upload": "03030303030303030303030303030303", "tenant": "acme", "at": 1,
                "size": 5, "sha256": "ab", "disposition": "released"
            })
        );
    }
}
