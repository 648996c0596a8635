//! Policies: the TOML an admin writes, validated into a `Policy`, and the
//! pure decisions made from it (which plugins run for a tenant, what their
//! verdicts add up to, which rate limits and quota apply to it). Reads files
//! only at load; never runs plugins, never touches uploads or HTTP.
//!
//! The limits in force are one [`LimitsTable`] (the config's `[limits]` under
//! the policy's `[defaults.limits]` and `[tenants.<name>.limits]`), held in a
//! [`LiveLimits`] that the gateway and ingest read per request and a policy
//! reload swaps whole.
//!
//! Two steps, as everywhere at the edge: TOML → `RawPolicy` (serde, spans
//! kept for messages) → `Policy` (validated: every plugin named in a chain is
//! defined, pinned by a well-formed SHA-256, with sane limits).

mod decide;
mod raw;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub use decide::{DETECTED_TYPE, Decision, PluginReport, PluginVerdict, decide, rejects};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("policy {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("policy {path} line {line}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// What a plugin failure (trap, timeout, memory limit) means for the upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    Quarantine,
    Reject,
    Accept,
}

/// A validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub source: PathBuf,
    pub plugins: BTreeMap<String, PluginPolicy>,
    pub defaults: TenantPolicy,
    pub tenants: BTreeMap<String, TenantPolicy>,
    /// `[defaults.limits] ingress_bytes_per_second`: appliance-wide, so it
    /// has no tenant form.
    pub ingress_bytes_per_second: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PluginPolicy {
    pub name: String,
    /// The component file, resolved against the policy file's directory.
    pub path: PathBuf,
    /// Pinned SHA-256 of the component, lowercase hex.
    pub sha256: String,
    pub deadline: Duration,
    pub memory_limit: u64,
    pub on_failure: OnFailure,
    /// Consecutive failures after which the plugin is skipped (its failure
    /// rule still applies); 0 never disables it.
    pub disable_after_failures: u32,
    /// The plugin's own settings, handed to it as JSON.
    pub config_json: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TenantPolicy {
    /// Plugins in the order they see the bytes.
    pub chain: Vec<String>,
    /// Types allowed by content (a plugin's `detected-type` label); empty
    /// allows any.
    pub allowed_types: Vec<String>,
    /// The limits this section sets (a tenant's over `[defaults.limits]`);
    /// unset ones come from the config's `[limits]`.
    pub limits: LimitsOverride,
}

impl Policy {
    pub fn load(path: &Path) -> Result<Policy, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates policy text; `path` names the source in messages
    /// and anchors relative plugin paths.
    pub fn parse(path: &Path, text: &str) -> Result<Policy, Error> {
        raw::parse(path, text)
    }

    /// The policy in force for a tenant: its own section over the defaults.
    pub fn for_tenant(&self, tenant: &str) -> &TenantPolicy {
        self.tenants.get(tenant).unwrap_or(&self.defaults)
    }

    /// The limits in force under this policy: `base` (the config's
    /// `[limits]`) under `[defaults.limits]`, and each tenant's section over
    /// both.
    pub fn limits_table(&self, base: &LimitsTable) -> LimitsTable {
        LimitsTable {
            ingress_bytes_per_second: self
                .ingress_bytes_per_second
                .unwrap_or(base.ingress_bytes_per_second),
            defaults: self.defaults.limits.over(base.defaults),
            tenants: self
                .tenants
                .iter()
                .map(|(name, section)| (name.clone(), section.limits.over(base.defaults)))
                .collect(),
        }
    }

    /// The plugins a tenant's uploads run, in order.
    pub fn chain(&self, tenant: &str) -> Vec<&PluginPolicy> {
        self.for_tenant(tenant)
            .chain
            .iter()
            .filter_map(|name| self.plugins.get(name))
            .collect()
    }
}

/// One tenant's rate limits and quota, every value set. Zero turns a rate,
/// the concurrency limit or the quota off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Requests per second, sustained (token bucket refill).
    pub requests_per_second: f64,
    /// Requests allowed at once above the sustained rate (bucket size).
    pub requests_burst: u32,
    /// New uploads (creations) per second, sustained.
    pub uploads_per_second: f64,
    pub uploads_burst: u32,
    /// Upload bodies (PATCH, or POST with a body) received at once.
    pub concurrent_uploads: u32,
    /// Bytes of staged uploads and committed objects together.
    pub quota: u64,
    /// Weight in the division of `ingress_bytes_per_second` among the
    /// tenants that are uploading.
    pub share: u32,
}

impl Limits {
    /// Nothing limited: what ingest assumes until limits are wired in.
    pub const UNLIMITED: Limits = Limits {
        requests_per_second: 0.0,
        requests_burst: 1,
        uploads_per_second: 0.0,
        uploads_burst: 1,
        concurrent_uploads: 0,
        quota: 0,
        share: 1,
    };
}

/// The limits one policy section sets; `None` falls through to the section
/// below (tenant → `[defaults.limits]` → config `[limits]`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LimitsOverride {
    pub requests_per_second: Option<f64>,
    pub requests_burst: Option<u32>,
    pub uploads_per_second: Option<f64>,
    pub uploads_burst: Option<u32>,
    pub concurrent_uploads: Option<u32>,
    pub quota: Option<u64>,
    pub share: Option<u32>,
}

impl LimitsOverride {
    /// These settings over `base`.
    pub fn over(self, base: Limits) -> Limits {
        Limits {
            requests_per_second: self.requests_per_second.unwrap_or(base.requests_per_second),
            requests_burst: self.requests_burst.unwrap_or(base.requests_burst),
            uploads_per_second: self.uploads_per_second.unwrap_or(base.uploads_per_second),
            uploads_burst: self.uploads_burst.unwrap_or(base.uploads_burst),
            concurrent_uploads: self.concurrent_uploads.unwrap_or(base.concurrent_uploads),
            quota: self.quota.unwrap_or(base.quota),
            share: self.share.unwrap_or(base.share),
        }
    }

    /// These settings, with `fallback`'s where these are unset.
    pub fn or(self, fallback: LimitsOverride) -> LimitsOverride {
        LimitsOverride {
            requests_per_second: self.requests_per_second.or(fallback.requests_per_second),
            requests_burst: self.requests_burst.or(fallback.requests_burst),
            uploads_per_second: self.uploads_per_second.or(fallback.uploads_per_second),
            uploads_burst: self.uploads_burst.or(fallback.uploads_burst),
            concurrent_uploads: self.concurrent_uploads.or(fallback.concurrent_uploads),
            quota: self.quota.or(fallback.quota),
            share: self.share.or(fallback.share),
        }
    }
}

/// Every tenant's limits, resolved, and the appliance-wide ingress rate.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitsTable {
    /// Bytes per second all upload bodies together may arrive at; 0 is
    /// unlimited.
    pub ingress_bytes_per_second: u64,
    /// For tenants without a section of their own.
    pub defaults: Limits,
    pub tenants: BTreeMap<String, Limits>,
}

impl LimitsTable {
    /// The same limits for every tenant.
    pub fn uniform(ingress_bytes_per_second: u64, defaults: Limits) -> LimitsTable {
        LimitsTable {
            ingress_bytes_per_second,
            defaults,
            tenants: BTreeMap::new(),
        }
    }

    pub fn for_tenant(&self, tenant: &str) -> &Limits {
        self.tenants.get(tenant).unwrap_or(&self.defaults)
    }
}

/// The limits in force. Read on every request (a read lock and an `Arc`
/// clone); a policy reload replaces the table whole, so a request sees one
/// consistent table and the next request sees the new one.
#[derive(Debug)]
pub struct LiveLimits {
    table: RwLock<Arc<LimitsTable>>,
}

impl LiveLimits {
    pub fn new(table: LimitsTable) -> LiveLimits {
        LiveLimits {
            table: RwLock::new(Arc::new(table)),
        }
    }

    pub fn current(&self) -> Arc<LimitsTable> {
        self.table.read().expect("limits lock poisoned").clone()
    }

    pub fn replace(&self, table: LimitsTable) {
        *self.table.write().expect("limits lock poisoned") = Arc::new(table);
    }
}

/// The largest rate or burst a limit may name: far above anything one
/// appliance serves, low enough that the bucket arithmetic stays exact.
pub const MAX_RATE: f64 = 1e9;
pub const MAX_SHARE: u32 = 1000;

/// Checks a per-second rate (requests or uploads): 0 (off) to `MAX_RATE`.
pub fn check_rate(value: f64) -> Result<(), String> {
    if value.is_finite() && (0.0..=MAX_RATE).contains(&value) {
        Ok(())
    } else {
        Err(format!("must be a number from 0 (no limit) to {MAX_RATE}"))
    }
}

/// Checks a burst: at least one request must fit.
pub fn check_burst(value: u32) -> Result<(), String> {
    if value >= 1 && f64::from(value) <= MAX_RATE {
        Ok(())
    } else {
        Err(format!("must be from 1 to {MAX_RATE}"))
    }
}

/// Checks an ingress share (a weight).
pub fn check_share(value: u32) -> Result<(), String> {
    if (1..=MAX_SHARE).contains(&value) {
        Ok(())
    } else {
        Err(format!("must be from 1 to {MAX_SHARE}"))
    }
}
