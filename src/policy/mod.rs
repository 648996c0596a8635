//! Policies: the TOML an admin writes, validated into a `Policy`, and the
//! pure decisions made from it (which plugins run for a tenant, what their
//! verdicts add up to). Reads files only at load; never runs plugins, never
//! touches uploads or HTTP.
//!
//! Two steps, as everywhere at the edge: TOML → `RawPolicy` (serde, spans
//! kept for messages) → `Policy` (validated: every plugin named in a chain is
//! defined, pinned by a well-formed SHA-256, with sane limits).

mod decide;
mod raw;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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
    pub max_upload_size: Option<u64>,
    /// Types allowed by content (a plugin's `detected-type` label); empty
    /// allows any.
    pub allowed_types: Vec<String>,
    pub on_plugin_failure: OnFailure,
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

    /// The plugins a tenant's uploads run, in order.
    pub fn chain(&self, tenant: &str) -> Vec<&PluginPolicy> {
        self.for_tenant(tenant)
            .chain
            .iter()
            .filter_map(|name| self.plugins.get(name))
            .collect()
    }
}
