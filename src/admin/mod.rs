//! Admin surface state: health and readiness now; metrics, the admin API and
//! the console later. Served on its own listener (loopback by default) by the
//! server module. Never reachable from the public listener.

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    /// Recovery finished: the appliance accepts uploads.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}
