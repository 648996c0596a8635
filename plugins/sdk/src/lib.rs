//! Strongroom plugin SDK. Owns the WIT bindings of `strongroom:plugin/inspector@0.1.0`
//! and everything that touches them; a plugin crate sees only the plain Rust types
//! here, implements [`Plugin`] once and exports it with [`export_plugin!`]. Never
//! reaches outside the sandbox except through the `host` interface.
//!
//! ```
//! use strongroom_plugin_sdk::{Config, Feed, Finding, Outcome, Plugin, Severity, Summary, UploadMeta};
//!
//! struct MaxSize { limit: u64, seen: u64 }
//!
//! impl Plugin for MaxSize {
//!     fn new(_meta: &UploadMeta, config: &Config) -> Self {
//!         MaxSize { limit: config.get_or("limit", 1 << 30), seen: 0 }
//!     }
//!     fn feed(&mut self, chunk: &[u8]) -> Feed {
//!         self.seen += chunk.len() as u64;
//!         if self.seen > self.limit {
//!             return Feed::Decided(Outcome::reject("too-large", "upload exceeds the limit"));
//!         }
//!         Feed::NeedMore
//!     }
//!     fn finish(&mut self, summary: &Summary) -> Outcome {
//!         Outcome::accept().label("size", summary.total_bytes.to_string())
//!     }
//! }
//!
//! strongroom_plugin_sdk::export_plugin!(MaxSize);
//! ```
//!
//! Natively (`cargo test` on the build machine) there are no bindings: [`host`]
//! functions talk to the [`testing::MockHost`] installed for the current thread and
//! [`testing::inspect`] drives a plugin the way the host does.

// The generated bindings name this crate by its path, as the export macro must
// from inside a plugin crate.
extern crate self as strongroom_plugin_sdk;

mod config;
mod driver;
pub mod host;
mod types;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod bindings;
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod guest;
#[cfg(target_arch = "wasm32")]
mod panic;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use config::{Config, ConfigError};
pub use types::{
    Feed, Finding, LogLevel, Outcome, Severity, Summary, TenantStats, UploadMeta, Verdict,
};

/// One inspection of one upload. The host creates a value per upload with `new`,
/// hands it every plaintext chunk in order through `feed` (64 KiB to 1 MiB each)
/// until it answers [`Feed::Enough`] or [`Feed::Decided`], then calls `finish` with
/// the size and SHA-256 it computed natively.
///
/// After `Enough` the SDK swallows further chunks; after `Decided(outcome)` it also
/// answers `finish` with that outcome without calling yours, so an implementation
/// never sees a call it has already declined.
///
/// A panic, an endless loop or running out of memory is not an error path: the
/// panic is logged to the host with file and line, then the instance traps and the
/// host records a `failed` verdict that the policy turns into a decision.
pub trait Plugin: Sized + 'static {
    /// Called once per upload, before any byte. `config` is this plugin's table
    /// from the policy.
    fn new(meta: &UploadMeta, config: &Config) -> Self;

    /// Called with each chunk in order. The default wants every chunk and decides
    /// nothing, which is right for a plugin that only looks at the summary.
    fn feed(&mut self, chunk: &[u8]) -> Feed {
        let _ = chunk;
        Feed::NeedMore
    }

    /// Called once after the last chunk (or after `Enough`) with what the host
    /// computed over the whole upload.
    fn finish(&mut self, summary: &Summary) -> Outcome;
}

/// Exports a [`Plugin`] implementation as the component's `inspect` interface.
/// Use it once, at the crate root of a `cdylib` plugin crate. Natively it expands
/// to nothing, so the crate's unit tests build on any target.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __StrongroomExport = $crate::guest::Component<$plugin>;
            $crate::bindings::__export_strongroom_inspector!(
                __StrongroomExport with_types_in $crate::bindings
            );
        };
    };
}

#[doc(hidden)]
#[cfg(target_arch = "wasm32")]
pub use wit_bindgen as __wit_bindgen;
