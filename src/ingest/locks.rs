//! One writer per upload. A new request for an upload asks the current holder
//! to stop (the IETF resumable-upload draft's advice: a client that lost its
//! connection must not be blocked by its own stale request) and waits at most
//! `lock_wait` for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedMutexGuard, watch};

use crate::id::UploadId;

use super::Error;

#[derive(Default)]
struct Slot {
    writer: Arc<tokio::sync::Mutex<()>>,
    /// Bumped by every request that wants the upload; the holder watches it.
    wanted: watch::Sender<u64>,
}

pub struct UploadLocks {
    slots: Mutex<HashMap<UploadId, Arc<Slot>>>,
    wait: Duration,
}

/// Held while a request works on an upload.
pub struct UploadGuard<'a> {
    locks: &'a UploadLocks,
    id: UploadId,
    slot: Option<Arc<Slot>>,
    held: Option<OwnedMutexGuard<()>>,
    wanted: watch::Receiver<u64>,
}

impl UploadLocks {
    pub fn new(wait: Duration) -> UploadLocks {
        UploadLocks {
            slots: Mutex::new(HashMap::new()),
            wait,
        }
    }

    /// Takes the upload, first asking any current holder to stop.
    pub async fn acquire(&self, id: UploadId) -> Result<UploadGuard<'_>, Error> {
        let slot = {
            let mut slots = self.slots.lock().expect("lock table poisoned");
            slots.entry(id).or_default().clone()
        };
        let mut my_turn = 0;
        slot.wanted.send_modify(|n| {
            *n += 1;
            my_turn = *n;
        });
        let mut guard = UploadGuard {
            locks: self,
            id,
            wanted: slot.wanted.subscribe(),
            slot: Some(slot.clone()),
            held: None,
        };
        let held = tokio::time::timeout(self.wait, slot.writer.clone().lock_owned())
            .await
            .map_err(|_| Error::Locked(id))?;
        guard.held = Some(held);
        guard.wanted.mark_unchanged();
        if *guard.wanted.borrow() != my_turn {
            // An even newer request arrived while this one waited: let it go first.
            return Err(Error::Superseded(id));
        }
        Ok(guard)
    }

    pub fn is_held(&self, id: &UploadId) -> bool {
        let slots = self.slots.lock().expect("lock table poisoned");
        slots
            .get(id)
            .is_some_and(|slot| slot.writer.try_lock().is_err())
    }
}

impl UploadGuard<'_> {
    pub fn id(&self) -> UploadId {
        self.id
    }

    /// Resolves when another request wants this upload.
    pub async fn superseded(&mut self) {
        // The sender lives in the slot this guard keeps alive, so `changed`
        // only ends when a newer request bumps it.
        let _ = self.wanted.changed().await;
    }
}

impl Drop for UploadGuard<'_> {
    fn drop(&mut self) {
        self.held.take();
        let mut slots = self.locks.slots.lock().expect("lock table poisoned");
        if let Some(slot) = self.slot.take() {
            // The table and this guard are the only owners: nobody waits.
            if Arc::strong_count(&slot) == 2 {
                slots.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> UploadId {
        UploadId::from_bytes([n; 16])
    }

    #[tokio::test]
    async fn a_newer_request_stops_the_holder_and_takes_over() {
        let locks = Arc::new(UploadLocks::new(Duration::from_secs(2)));
        let mut first = locks.acquire(id(1)).await.unwrap();
        let locks2 = locks.clone();
        let second = tokio::spawn(async move { locks2.acquire(id(1)).await.map(|_| ()) });
        tokio::time::timeout(Duration::from_secs(1), first.superseded())
            .await
            .expect("holder is told to stop");
        drop(first);
        second
            .await
            .unwrap()
            .expect("newer request gets the upload");
        assert!(!locks.is_held(&id(1)));
    }

    #[tokio::test]
    async fn a_holder_that_does_not_stop_yields_locked_after_the_wait() {
        let locks = UploadLocks::new(Duration::from_millis(50));
        let _first = locks.acquire(id(2)).await.unwrap();
        assert!(matches!(locks.acquire(id(2)).await, Err(Error::Locked(_))));
    }

    #[tokio::test]
    async fn slots_are_released_when_free() {
        let locks = UploadLocks::new(Duration::from_millis(50));
        drop(locks.acquire(id(3)).await.unwrap());
        assert!(locks.slots.lock().unwrap().is_empty());
    }
}
