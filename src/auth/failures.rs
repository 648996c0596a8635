//! Authentication failures per client address: past a budget per minute an
//! address is refused before any credential is looked at, so guessing keys
//! or tokens costs the guesser time, not the appliance CPU.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked at once; past it, the oldest windows are dropped first.
const MAX_TRACKED: usize = 65_536;
const WINDOW: Duration = Duration::from_secs(60);

pub struct FailureLimiter {
    per_minute: u32,
    windows: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

impl FailureLimiter {
    pub fn new(per_minute: u32) -> FailureLimiter {
        FailureLimiter {
            per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(retry_after)` while `addr` has used up its failures.
    pub fn check(&self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        let windows = self.windows.lock().expect("failure windows poisoned");
        match windows.get(&addr) {
            Some(w) if now.duration_since(w.started) < WINDOW && w.failures >= self.per_minute => {
                Err(WINDOW - now.duration_since(w.started))
            }
            _ => Ok(()),
        }
    }

    pub fn record_failure(&self, addr: IpAddr, now: Instant) {
        let mut windows = self.windows.lock().expect("failure windows poisoned");
        if windows.len() >= MAX_TRACKED && !windows.contains_key(&addr) {
            windows.retain(|_, w| now.duration_since(w.started) < WINDOW);
            if windows.len() >= MAX_TRACKED {
                // Under a flood of addresses, forget everyone rather than
                // grow without bound; each address starts a fresh window.
                windows.clear();
            }
        }
        let window = windows.entry(addr).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now.duration_since(window.started) >= WINDOW {
            *window = Window {
                started: now,
                failures: 0,
            };
        }
        window.failures = window.failures.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_after_its_budget_until_the_window_ends() {
        let limiter = FailureLimiter::new(3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check(a, start).is_ok());
            limiter.record_failure(a, start);
        }
        let wait = limiter
            .check(a, start + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(
            limiter.check(b, start).is_ok(),
            "other addresses unaffected"
        );
        assert!(limiter.check(a, start + WINDOW).is_ok());
        limiter.record_failure(a, start + WINDOW);
        assert!(limiter.check(a, start + WINDOW).is_ok(), "a fresh window");
    }
}
