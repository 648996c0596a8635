//! When to try again: exponential backoff with jitter, stretched to what
//! the server asks for in `Retry-After`. Owns only the arithmetic; the
//! callers decide what is worth retrying and re-sync before they resume.

use std::time::Duration;

/// A server asking for longer than this is not waited for: the command
/// stops, and a rerun continues.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries after the first failure of one step (0: never retry).
    pub retries: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 5,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The pause before retry number `attempt` (1 for the first retry), or
    /// `None` when the retries are used up or the server asks for more
    /// than we wait.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
        if attempt == 0 || attempt > self.retries {
            return None;
        }
        if retry_after.is_some_and(|after| after > MAX_RETRY_AFTER) {
            return None;
        }
        let doubling = 2u32.saturating_pow(attempt - 1);
        let backoff = self
            .first_delay
            .saturating_mul(doubling)
            .min(self.max_delay);
        // Up to a quarter more, so that clients that failed together do not
        // come back together.
        let jitter = backoff.mul_f64(jitter_fraction() * 0.25);
        Some((backoff + jitter).max(retry_after.unwrap_or(Duration::ZERO)))
    }
}

/// A number in [0, 1) from the clock: jitter needs spread, not secrecy.
fn jitter_fraction() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1000) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_honours_retry_after() {
        let policy = RetryPolicy {
            retries: 10,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
        };
        let first = policy.delay(1, None).unwrap();
        assert!(first >= Duration::from_secs(1) && first < Duration::from_millis(1250));
        let fourth = policy.delay(4, None).unwrap();
        assert!(fourth >= Duration::from_secs(8) && fourth <= Duration::from_secs(10));
        assert!(policy.delay(9, None).unwrap() <= Duration::from_secs(10));
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(20))),
            Some(Duration::from_secs(20))
        );
        assert_eq!(policy.delay(1, Some(Duration::from_secs(3600))), None);
        assert_eq!(policy.delay(11, None), None);
        assert_eq!(policy.delay(0, None), None);
    }
}
