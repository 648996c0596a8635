//! What a plugin can reach: the `strongroom:plugin/host` imports and the
//! per-store state behind them. Nothing here touches the file system, the
//! network or another upload.

use std::sync::Arc;

use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

use super::bindings::strongroom::plugin::{host, types as wit};
use super::bindings::{MAX_TEXT_BYTES, clean};
use super::types::TenantStats;

/// Log lines one inspection may emit; the rest are counted and dropped.
/// Hostile plugins spam, and every line costs the host formatting and I/O.
pub(super) const MAX_LOG_LINES: u32 = 100;
/// Bytes (after truncation and escaping) one inspection may log in total.
pub(super) const MAX_LOG_BYTES: u32 = 64 << 10;
/// Tracing target of plugin log lines, so operators can filter them apart.
pub(super) const GUEST_LOG_TARGET: &str = "strongroom::plugin";

/// The data of one inspection's `Store`.
pub(super) struct HostState {
    pub(super) limiter: Limiter,
    pub(super) log: GuestLog,
    config_json: Arc<str>,
    tenant: String,
    stats: TenantStats,
}

impl HostState {
    pub(super) fn new(
        plugin: Arc<str>,
        upload_id: String,
        tenant: String,
        stats: TenantStats,
        config_json: Arc<str>,
        memory_cap: usize,
    ) -> Self {
        HostState {
            limiter: Limiter::new(memory_cap),
            log: GuestLog::new(plugin, upload_id),
            config_json,
            tenant,
            stats,
        }
    }
}

/// `StoreLimits` with memory-limit hits remembered: a refused `memory.grow`
/// surfaces as a plain error, not a `Trap` code, so this is how a failure is
/// classified as `MemoryLimit`.
pub(super) struct Limiter {
    inner: StoreLimits,
    pub(super) hit: bool,
}

impl Limiter {
    fn new(memory_cap: usize) -> Self {
        Limiter {
            inner: StoreLimitsBuilder::new()
                .memory_size(memory_cap)
                // A plugin that cannot grow is stopped, not handed -1 to
                // mishandle: Rust guests abort on allocation failure anyway.
                .trap_on_grow_failure(true)
                .build(),
            hit: false,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum);
        if !matches!(allowed, Ok(true)) {
            self.hit = true;
        }
        allowed
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        // The pooling allocator's own slot size refused it.
        self.hit = true;
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.inner.table_growing(current, desired, maximum);
        if !matches!(allowed, Ok(true)) {
            self.hit = true;
        }
        allowed
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.hit = true;
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// The plugin's `log` import: rate-limited, truncated, escaped, tagged with
/// plugin and upload.
pub(super) struct GuestLog {
    plugin: Arc<str>,
    upload_id: String,
    pub(super) lines: u32,
    pub(super) bytes: u32,
    pub(super) dropped: u32,
    /// The first panic message the guest reported, kept even when the line
    /// itself is dropped by the limits, to name the failure.
    pub(super) panic: Option<String>,
}

impl GuestLog {
    fn new(plugin: Arc<str>, upload_id: String) -> Self {
        GuestLog {
            plugin,
            upload_id,
            lines: 0,
            bytes: 0,
            dropped: 0,
            panic: None,
        }
    }

    fn record(&mut self, level: wit::LogLevel, message: &str) {
        let text = clean(message, MAX_TEXT_BYTES);
        if level == wit::LogLevel::Error && self.panic.is_none() {
            // The guest SDK's panic hook logs "plugin panicked at FILE:L:C: MSG"
            // at error level just before the abort traps.
            let rest = message
                .strip_prefix("plugin panicked")
                .or_else(|| message.strip_prefix("panicked"));
            if let Some(rest) = rest {
                let detail = rest.trim_start_matches([' ', ':']);
                self.panic = Some(clean(detail, MAX_TEXT_BYTES));
            }
        }
        let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
        if self.lines >= MAX_LOG_LINES || self.bytes.saturating_add(len) > MAX_LOG_BYTES {
            self.dropped += 1;
            if self.dropped == 1 {
                tracing::warn!(
                    target: GUEST_LOG_TARGET,
                    plugin = %self.plugin,
                    upload = %self.upload_id,
                    "plugin log limit reached ({MAX_LOG_LINES} lines, {MAX_LOG_BYTES} bytes); \
                     dropping its further lines for this upload"
                );
            }
            return;
        }
        self.lines += 1;
        self.bytes += len;
        macro_rules! emit {
            ($level:expr) => {
                tracing::event!(
                    target: GUEST_LOG_TARGET,
                    $level,
                    plugin = %self.plugin,
                    upload = %self.upload_id,
                    "{text}"
                )
            };
        }
        match level {
            wit::LogLevel::Trace => emit!(tracing::Level::TRACE),
            wit::LogLevel::Debug => emit!(tracing::Level::DEBUG),
            wit::LogLevel::Info => emit!(tracing::Level::INFO),
            wit::LogLevel::Warn => emit!(tracing::Level::WARN),
            wit::LogLevel::Error => emit!(tracing::Level::ERROR),
        }
    }
}

impl wit::Host for HostState {}

impl host::Host for HostState {
    fn sha256(&mut self, data: Vec<u8>) -> Vec<u8> {
        crate::crypto::sha256(&data).to_vec()
    }

    fn ed25519_verify(
        &mut self,
        public_key: Vec<u8>,
        message: Vec<u8>,
        signature: Vec<u8>,
    ) -> bool {
        crate::crypto::ed25519_verify(&public_key, &message, &signature)
    }

    /// Only the upload's own tenant: a plugin must not learn about others,
    /// so any other name gets empty statistics.
    fn get_tenant_stats(&mut self, tenant: String) -> wit::TenantStats {
        if tenant == self.tenant {
            (&self.stats).into()
        } else {
            (&TenantStats::default()).into()
        }
    }

    fn log(&mut self, level: wit::LogLevel, message: String) {
        self.log.record(level, &message);
    }

    fn config(&mut self) -> String {
        self.config_json.to_string()
    }
}
