//! The appliance's audit trail: the log, and what happens when a record
//! cannot be made durable (`audit.on_failure`). Owns that policy; the
//! callers (the gateway, ingest) decide what "refused" means for the step
//! they were taking.

use std::ops::Range;
use std::sync::Arc;

use serde::Deserialize;

use super::{Audit, Error, Event, KeyedName};

/// What a request whose record cannot be made durable gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// `503 audit_unavailable`, and nothing is reported as done: a commit
    /// stays pending (not downloadable) instead of being released. Once a
    /// write or sync has failed the log accepts nothing until the appliance
    /// restarts, so this trades availability for a complete record.
    #[default]
    Refuse,
    /// Logged at error level, and the request goes on unrecorded.
    Log,
}

/// The log and its failure policy. Shared by every listener and ingest.
#[derive(Debug)]
pub struct Trail {
    log: Arc<Audit>,
    on_failure: OnFailure,
}

impl Trail {
    pub fn new(log: Arc<Audit>, on_failure: OnFailure) -> Arc<Trail> {
        Arc::new(Trail { log, on_failure })
    }

    pub fn log(&self) -> &Arc<Audit> {
        &self.log
    }

    pub fn on_failure(&self) -> OnFailure {
        self.on_failure
    }

    /// Appends `event` off the reactor and returns its index once it is
    /// durable. `Ok(None)`: it failed and the policy is `log`.
    pub async fn record(&self, event: Event) -> Result<Option<u64>, Error> {
        let indexes = self.record_all(vec![event]).await?;
        Ok(indexes.map(|indexes| indexes.start))
    }

    /// Appends `events` as consecutive records with one sync, off the
    /// reactor. `Ok(None)`: they failed and the policy is `log`.
    pub async fn record_all(&self, events: Vec<Event>) -> Result<Option<Range<u64>>, Error> {
        let kinds: Vec<_> = events.iter().map(|event| event.kind).collect();
        match self.log.append_all_async(events).await {
            Ok(indexes) => Ok(Some(indexes)),
            Err(err) => self.failed(err, &kinds),
        }
    }

    /// A client's filename as records carry it.
    pub fn keyed_bytes(&self, name: &[u8]) -> KeyedName {
        self.log.keyed_bytes(name)
    }

    fn failed<T>(&self, err: Error, kinds: &[super::EventKind]) -> Result<Option<T>, Error> {
        if let Some(metrics) = self.log.metrics() {
            metrics.audit_failure();
        }
        match self.on_failure {
            OnFailure::Refuse => {
                tracing::error!(error = %err, ?kinds, "audit record failed; refusing the request");
                Err(err)
            }
            OnFailure::Log => {
                tracing::error!(
                    error = %err,
                    ?kinds,
                    "AUDIT RECORD LOST: it could not be made durable and audit.on_failure = \
                     \"log\", so the request goes on unrecorded"
                );
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{EventKind, Outcome};

    #[tokio::test]
    async fn a_stopped_log_refuses_or_is_logged_by_policy() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(Audit::open(dir.path(), "strongroom.test/audit").unwrap());
        let refuse = Trail::new(log.clone(), OnFailure::Refuse);
        let lenient = Trail::new(log.clone(), OnFailure::Log);
        let event = || Event::new(EventKind::Create, Outcome::Ok).tenant("acme");
        assert_eq!(refuse.record(event()).await.unwrap(), Some(0));
        assert_eq!(
            lenient.record_all(vec![event(), event()]).await.unwrap(),
            Some(1..3)
        );

        // An invalid event stands in for a failed write: both are errors
        // from the log, and the policy alone decides what the caller sees.
        let bad = || Event::new(EventKind::Create, Outcome::Ok).tenant("two words");
        assert!(matches!(
            refuse.record(bad()).await,
            Err(Error::InvalidEvent(_))
        ));
        assert_eq!(lenient.record(bad()).await.unwrap(), None);
        assert_eq!(log.stats().records, 3);
    }
}
