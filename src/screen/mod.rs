//! The plugin chain behind ingest's [`Screen`]: the policy in force, the
//! plugins it pins (loaded into the sandbox), per-plugin health and the
//! per-tenant statistics plugins may ask for. Turns each upload into one
//! sandbox inspection per plugin of its tenant's chain and their outcomes
//! into a verdict by the policy's rules.
//!
//! Owns policy reloads: a new policy (SIGHUP or the admin endpoint) is
//! parsed and every plugin it names loaded before it replaces the old one;
//! a bad one is refused and the old one stays. Uploads in flight keep the
//! chain they started with. Never touches staging or HTTP.

mod chain;
mod stats;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use base64::Engine;

use crate::config::PluginsConfig;
use crate::ingest::{BoxFuture, Screen, Screening, Unavailable};
use crate::metrics::Metrics;
use crate::policy::{self, PluginPolicy, Policy};
use crate::sandbox::{self, Plugin, PluginLimits, PluginSpec, Sandbox, SandboxConfig, UploadMeta};
use crate::staging::UploadRecord;

use chain::ChainScreening;
use stats::TenantBook;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Policy(#[from] policy::Error),
    #[error(transparent)]
    Sandbox(#[from] sandbox::Error),
    #[error("plugin {name}: the pin {pin:?} is not a SHA-256 in hex")]
    BadPin { name: String, pin: String },
}

/// The chain in force: a validated policy and its loaded plugins.
struct Loaded {
    policy: Policy,
    /// The policy file's text as loaded, for admins to read what is in force.
    text: String,
    plugins: BTreeMap<String, Arc<Plugin>>,
    health: BTreeMap<String, Arc<PluginHealth>>,
    loaded_at: u64,
}

/// How one plugin has fared since it was loaded (kept across reloads while
/// its pin is unchanged).
#[derive(Debug)]
pub struct PluginHealth {
    /// The pin these figures are for.
    sha256: String,
    runs: AtomicU64,
    failures: AtomicU64,
    /// Time its calls spent on a worker (instantiation, feeds, finish),
    /// queueing excluded: the plugin's own cost.
    busy_micros: AtomicU64,
    consecutive_failures: AtomicU32,
}

impl PluginHealth {
    fn new(sha256: &str) -> PluginHealth {
        PluginHealth {
            sha256: sha256.to_owned(),
            runs: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            busy_micros: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
        }
    }

    fn record(&self, failed: bool, busy: std::time::Duration) {
        self.runs.fetch_add(1, Ordering::Relaxed);
        self.busy_micros
            .fetch_add(busy.as_micros() as u64, Ordering::Relaxed);
        if failed {
            self.failures.fetch_add(1, Ordering::Relaxed);
            self.consecutive_failures.fetch_add(1, Ordering::Relaxed);
        } else {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// Disabled by `disable_after_failures` consecutive failures (0: never).
    fn is_disabled(&self, policy: &PluginPolicy) -> bool {
        policy.disable_after_failures > 0
            && self.consecutive_failures.load(Ordering::Relaxed) >= policy.disable_after_failures
    }
}

/// The plugin chain as a [`Screen`].
pub struct PluginScreen {
    sandbox: Sandbox,
    policy_path: PathBuf,
    loaded: RwLock<Arc<Loaded>>,
    tenants: TenantBook,
    metrics: Arc<Metrics>,
}

impl PluginScreen {
    /// Starts the sandbox and loads the policy and its plugins. Blocking
    /// (loading may compile a plugin): call from a blocking context.
    pub fn start(
        policy_path: PathBuf,
        config: &PluginsConfig,
        data_dir: &Path,
        metrics: Arc<Metrics>,
    ) -> Result<PluginScreen, Error> {
        let mut sandbox_config = SandboxConfig::new(config.cache_dir_in(data_dir));
        sandbox_config.max_inspections = config.max_inspections;
        sandbox_config.max_memory = config.max_memory.as_u64();
        if config.workers > 0 {
            sandbox_config.workers = config.workers;
        }
        let sandbox = Sandbox::new(sandbox_config)?;
        let loaded = load(&sandbox, &policy_path, &BTreeMap::new())?;
        Ok(PluginScreen {
            sandbox,
            policy_path,
            loaded: RwLock::new(Arc::new(loaded)),
            tenants: TenantBook::default(),
            metrics,
        })
    }

    /// Re-reads the policy file and swaps it in if it and every plugin it
    /// names load; otherwise the old policy stays. Blocking.
    pub fn reload(&self) -> Result<ReloadSummary, Error> {
        let started = Instant::now();
        let health = self.current().health.clone();
        let loaded = load(&self.sandbox, &self.policy_path, &health)?;
        let summary = ReloadSummary {
            policy: self.policy_path.clone(),
            plugins: loaded.plugins.keys().cloned().collect(),
            elapsed_ms: started.elapsed().as_millis() as u64,
        };
        *self.loaded.write().expect("policy lock poisoned") = Arc::new(loaded);
        Ok(summary)
    }

    fn current(&self) -> Arc<Loaded> {
        self.loaded.read().expect("policy lock poisoned").clone()
    }

    /// The chain's state for admins: policy, plugins, pins, health.
    pub fn status(&self) -> serde_json::Value {
        let loaded = self.current();
        let plugins: Vec<_> = loaded
            .policy
            .plugins
            .values()
            .map(|policy| {
                let health = &loaded.health[&policy.name];
                let runs = health.runs.load(Ordering::Relaxed);
                let busy = health.busy_micros.load(Ordering::Relaxed);
                serde_json::json!({
                    "name": policy.name,
                    "path": policy.path,
                    "sha256": policy.sha256,
                    "deadline_ms": policy.deadline.as_millis() as u64,
                    "memory_limit": policy.memory_limit,
                    "on_failure": format!("{:?}", policy.on_failure).to_lowercase(),
                    "runs": runs,
                    "busy_us_total": busy,
                    "busy_us_per_run": busy.checked_div(runs).unwrap_or(0),
                    "failures": health.failures.load(Ordering::Relaxed),
                    "consecutive_failures": health.consecutive_failures.load(Ordering::Relaxed),
                    "disabled": health.is_disabled(policy),
                })
            })
            .collect();
        let mut chains = serde_json::Map::new();
        chains.insert(
            "defaults".into(),
            serde_json::json!(loaded.policy.defaults.chain),
        );
        for (tenant, section) in &loaded.policy.tenants {
            chains.insert(tenant.clone(), serde_json::json!(section.chain));
        }
        serde_json::json!({
            "policy": loaded.policy.source,
            "loaded_at": loaded.loaded_at,
            "plugins": plugins,
            "chains": chains,
        })
    }
}

/// What a reload put in force.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadSummary {
    pub policy: PathBuf,
    pub plugins: Vec<String>,
    pub elapsed_ms: u64,
}

/// Loads a policy and every plugin it defines (not only those in a chain:
/// a typo'd plugin should fail the reload, not the first upload that needs
/// it). Health carries over for plugins whose pin is unchanged.
fn load(
    sandbox: &Sandbox,
    path: &Path,
    previous: &BTreeMap<String, Arc<PluginHealth>>,
) -> Result<Loaded, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| crate::policy::Error::Read {
        path: path.to_owned(),
        source,
    })?;
    let policy = Policy::parse(path, &text)?;
    let mut plugins = BTreeMap::new();
    let mut health = BTreeMap::new();
    for (name, spec) in &policy.plugins {
        let plugin = sandbox.load(plugin_spec(spec)?)?;
        let kept = previous
            .get(name)
            .filter(|health| health.sha256 == spec.sha256)
            .cloned();
        health.insert(
            name.clone(),
            kept.unwrap_or_else(|| Arc::new(PluginHealth::new(&spec.sha256))),
        );
        plugins.insert(name.clone(), plugin);
    }
    tracing::info!(
        policy = %path.display(),
        plugins = ?plugins.keys().collect::<Vec<_>>(),
        "policy loaded"
    );
    Ok(Loaded {
        policy,
        text,
        plugins,
        health,
        loaded_at: crate::ingest::now_secs(),
    })
}

fn plugin_spec(spec: &PluginPolicy) -> Result<PluginSpec, Error> {
    let sha256 = hex::decode(&spec.sha256)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| Error::BadPin {
            name: spec.name.clone(),
            pin: spec.sha256.clone(),
        })?;
    Ok(PluginSpec {
        name: spec.name.clone(),
        wasm: spec.path.clone(),
        sha256,
        config_json: spec.config_json.clone(),
        limits: PluginLimits {
            deadline: spec.deadline,
            memory: spec.memory_limit,
            ..PluginLimits::default()
        },
    })
}

impl Screen for PluginScreen {
    fn open<'a>(
        &'a self,
        upload: &'a UploadRecord,
    ) -> BoxFuture<'a, Result<Option<Box<dyn Screening>>, Unavailable>> {
        Box::pin(async move {
            let loaded = self.current();
            if loaded.policy.for_tenant(&upload.tenant).chain.is_empty() {
                return Ok(None);
            }
            let meta = upload_meta(upload);
            let stats = self.tenants.stats(&upload.tenant);
            let metrics = self.metrics.clone();
            let screening =
                ChainScreening::start(&self.sandbox, loaded, &upload.tenant, meta, stats, metrics)
                    .await?;
            Ok(Some(Box::new(screening) as Box<dyn Screening>))
        })
    }

    fn observe(&self, record: &UploadRecord) {
        self.tenants.observe(record);
    }
}

/// What the client declared, decoded from tus metadata. Uppy and
/// tus-js-client send `filename`/`name` and `filetype`/`type`.
fn upload_meta(record: &UploadRecord) -> UploadMeta {
    let attributes: Vec<(String, String)> = record
        .metadata
        .iter()
        .filter_map(|(key, value)| {
            let decoded = match value {
                Some(encoded) => base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())?,
                None => String::new(),
            };
            Some((key.clone(), decoded))
        })
        .collect();
    let first = |keys: &[&str]| {
        keys.iter().find_map(|key| {
            attributes
                .iter()
                .find(|(k, v)| k == key && !v.is_empty())
                .map(|(_, v)| v.clone())
        })
    };
    UploadMeta {
        tenant: record.tenant.clone(),
        upload_id: record.id.to_string(),
        declared_name: first(&["filename", "name"]),
        declared_content_type: first(&["filetype", "type", "content_type"]),
        declared_length: record.length,
        attributes,
    }
}

impl crate::admin::PolicyControl for PluginScreen {
    fn reload(&self) -> Result<serde_json::Value, String> {
        let summary = PluginScreen::reload(self).map_err(|err| err.to_string())?;
        Ok(serde_json::to_value(summary).expect("a reload summary serialises"))
    }

    fn status(&self) -> serde_json::Value {
        PluginScreen::status(self)
    }

    fn document(&self) -> serde_json::Value {
        let loaded = self.current();
        serde_json::json!({
            "path": loaded.policy.source,
            "sha256": hex::encode(crate::crypto::sha256(loaded.text.as_bytes())),
            "loaded_at": loaded.loaded_at,
            "source": loaded.text,
        })
    }
}
