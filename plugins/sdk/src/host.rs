//! Calls into the host: the `strongroom:plugin/host` imports in the Wasm build, the
//! thread's [`crate::testing::MockHost`] natively.

use crate::{LogLevel, TenantStats};

/// SHA-256 computed natively by the host (much faster than hashing in Wasm).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = imp::sha256(data);
    digest
        .as_slice()
        .try_into()
        .unwrap_or_else(|_| panic!("host sha256 returned {} bytes, expected 32", digest.len()))
}

/// Verifies an Ed25519 `signature` over `message`. False for any malformed key or
/// signature, never an error.
pub fn ed25519_verify(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    imp::ed25519_verify(public_key, message, signature)
}

/// The statistics the host keeps for `tenant` over its committed uploads.
pub fn tenant_stats(tenant: &str) -> TenantStats {
    imp::tenant_stats(tenant)
}

/// This plugin's policy table as JSON text; the SDK parses it into the
/// [`crate::Config`] handed to [`crate::Plugin::new`].
pub fn config_json() -> String {
    imp::config()
}

/// The host log. Rate-limited and truncated by the host, so logging is never a
/// way to slow it down; messages go to the admin, never to the uploader.
pub mod log {
    use crate::LogLevel;

    pub fn log(level: LogLevel, message: &str) {
        super::imp::log(level, message)
    }

    pub fn trace(message: &str) {
        log(LogLevel::Trace, message)
    }

    pub fn debug(message: &str) {
        log(LogLevel::Debug, message)
    }

    pub fn info(message: &str) {
        log(LogLevel::Info, message)
    }

    pub fn warn(message: &str) {
        log(LogLevel::Warn, message)
    }

    pub fn error(message: &str) {
        log(LogLevel::Error, message)
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::{LogLevel, TenantStats};
    use crate::bindings::strongroom::plugin::host;
    use crate::bindings::strongroom::plugin::types as wit;

    pub(super) fn sha256(data: &[u8]) -> Vec<u8> {
        host::sha256(data)
    }

    pub(super) fn ed25519_verify(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
        host::ed25519_verify(public_key, message, signature)
    }

    pub(super) fn tenant_stats(tenant: &str) -> TenantStats {
        let s = host::get_tenant_stats(tenant);
        TenantStats {
            uploads: s.uploads,
            mean_size: s.mean_size,
            stddev_size: s.stddev_size,
            types_seen: s.types_seen,
            uploads_last_minute: s.uploads_last_minute,
            uploads_last_hour: s.uploads_last_hour,
        }
    }

    pub(super) fn config() -> String {
        host::config()
    }

    pub(super) fn log(level: LogLevel, message: &str) {
        let level = match level {
            LogLevel::Trace => wit::LogLevel::Trace,
            LogLevel::Debug => wit::LogLevel::Debug,
            LogLevel::Info => wit::LogLevel::Info,
            LogLevel::Warn => wit::LogLevel::Warn,
            LogLevel::Error => wit::LogLevel::Error,
        };
        host::log(level, message)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::{LogLevel, TenantStats};
    use crate::testing;

    pub(super) fn sha256(data: &[u8]) -> Vec<u8> {
        testing::with_host(|h| h.sha256(data).to_vec())
    }

    pub(super) fn ed25519_verify(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
        testing::with_host(|h| h.ed25519_verify(public_key, message, signature))
    }

    pub(super) fn tenant_stats(tenant: &str) -> TenantStats {
        testing::with_host(|h| h.tenant_stats(tenant))
    }

    pub(super) fn config() -> String {
        testing::with_host(|h| h.config.clone())
    }

    pub(super) fn log(level: LogLevel, message: &str) {
        testing::with_host(|h| h.record_log(level, message))
    }
}
