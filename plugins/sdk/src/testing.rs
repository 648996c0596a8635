//! Native test support (not compiled into Wasm): a stand-in for the host and a driver
//! that runs a [`Plugin`] the way the host does, so a plugin crate tests its glue and
//! logic with plain `cargo test`.
//!
//! ```
//! use strongroom_plugin_sdk::testing::{self, MockHost};
//! use strongroom_plugin_sdk::{Config, Outcome, Plugin, Summary, UploadMeta};
//!
//! struct Labeller;
//! impl Plugin for Labeller {
//!     fn new(_: &UploadMeta, _: &Config) -> Self { Labeller }
//!     fn finish(&mut self, s: &Summary) -> Outcome {
//!         Outcome::accept().label("bytes", s.total_bytes.to_string())
//!     }
//! }
//!
//! testing::install(MockHost::new().with_config(r#"{"any": 1}"#));
//! let run = testing::inspect::<Labeller>(
//!     &UploadMeta::new("acme", "u1"),
//!     [&b"hello"[..]],
//!     &Summary::new(5, [0u8; 32]),
//! );
//! assert_eq!(run.outcome.label_value("bytes"), Some("5"));
//! ```

use std::cell::RefCell;

use crate::driver::Driver;
use crate::{Feed, LogLevel, Outcome, Plugin, Summary, TenantStats, UploadMeta, Verdict};

type Sha256Fn = Box<dyn Fn(&[u8]) -> [u8; 32]>;
type VerifyFn = Box<dyn Fn(&[u8], &[u8], &[u8]) -> bool>;

/// What the `host` functions answer natively. Install one per test thread.
pub struct MockHost {
    /// This plugin's config as JSON text, as `host.config()` returns it.
    pub config: String,
    pub stats: TenantStats,
    sha256: Option<Sha256Fn>,
    ed25519_verify: Option<VerifyFn>,
    logs: Vec<(LogLevel, String)>,
}

impl Default for MockHost {
    fn default() -> Self {
        MockHost {
            config: "{}".to_owned(),
            stats: TenantStats::default(),
            sha256: None,
            ed25519_verify: None,
            logs: Vec::new(),
        }
    }
}

impl MockHost {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_config(mut self, json: impl Into<String>) -> Self {
        self.config = json.into();
        self
    }

    pub fn with_tenant_stats(mut self, stats: TenantStats) -> Self {
        self.stats = stats;
        self
    }

    /// The SDK has no SHA-256 of its own; tests that call `host::sha256` supply one.
    pub fn with_sha256(mut self, f: impl Fn(&[u8]) -> [u8; 32] + 'static) -> Self {
        self.sha256 = Some(Box::new(f));
        self
    }

    /// Tests that call `host::ed25519_verify` supply a verifier (e.g. ed25519-dalek).
    pub fn with_ed25519_verify(
        mut self,
        f: impl Fn(&[u8], &[u8], &[u8]) -> bool + 'static,
    ) -> Self {
        self.ed25519_verify = Some(Box::new(f));
        self
    }

    pub(crate) fn sha256(&self, data: &[u8]) -> [u8; 32] {
        let f = self
            .sha256
            .as_ref()
            .expect("MockHost has no sha256: use MockHost::with_sha256");
        f(data)
    }

    pub(crate) fn ed25519_verify(&self, key: &[u8], message: &[u8], signature: &[u8]) -> bool {
        let f = self
            .ed25519_verify
            .as_ref()
            .expect("MockHost has no ed25519 verifier: use MockHost::with_ed25519_verify");
        f(key, message, signature)
    }

    pub(crate) fn tenant_stats(&self, _tenant: &str) -> TenantStats {
        self.stats.clone()
    }

    pub(crate) fn record_log(&mut self, level: LogLevel, message: &str) {
        self.logs.push((level, message.to_owned()));
    }
}

thread_local! {
    static HOST: RefCell<MockHost> = RefCell::new(MockHost::default());
}

/// Makes `host` the answer to every host call on this thread (cargo runs each test
/// on its own thread, so tests do not see each other's host).
pub fn install(host: MockHost) {
    HOST.with(|h| *h.borrow_mut() = host);
}

/// Everything logged on this thread since the last `install`.
pub fn logs() -> Vec<(LogLevel, String)> {
    HOST.with(|h| h.borrow().logs.clone())
}

pub(crate) fn with_host<R>(f: impl FnOnce(&mut MockHost) -> R) -> R {
    HOST.with(|h| f(&mut h.borrow_mut()))
}

/// How a native run went.
#[derive(Debug, Clone)]
pub struct Inspected {
    pub outcome: Outcome,
    /// `feed` answered `Decided` (the outcome is that decision).
    pub decided_early: bool,
    /// Chunks handed to `feed` before it answered `Enough` or `Decided`.
    pub chunks_fed: usize,
}

/// Runs `P` over `chunks` as the host does: config from the installed
/// [`MockHost`], chunks in order until `Enough` or `Decided`; an early reject stops
/// the upload without `finish`, anything else ends with `finish(summary)`.
pub fn inspect<'a, P: Plugin>(
    meta: &UploadMeta,
    chunks: impl IntoIterator<Item = &'a [u8]>,
    summary: &Summary,
) -> Inspected {
    let config = with_host(|h| h.config.clone());
    let mut driver = Driver::<P>::new(meta, &config);
    let mut chunks_fed = 0;
    for chunk in chunks {
        chunks_fed += 1;
        match driver.feed(chunk) {
            Feed::NeedMore => continue,
            Feed::Enough => break,
            Feed::Decided(outcome) if matches!(outcome.verdict, Verdict::Reject { .. }) => {
                return Inspected {
                    outcome,
                    decided_early: true,
                    chunks_fed,
                };
            }
            Feed::Decided(_) => {
                let outcome = driver.finish(summary);
                return Inspected {
                    outcome,
                    decided_early: true,
                    chunks_fed,
                };
            }
        }
    }
    Inspected {
        outcome: driver.finish(summary),
        decided_early: false,
        chunks_fed,
    }
}

/// Splits `data` into chunks of `size` bytes (the last may be shorter), the shape
/// `inspect` takes.
pub fn chunks(data: &[u8], size: usize) -> impl Iterator<Item = &[u8]> {
    data.chunks(size.max(1))
}
