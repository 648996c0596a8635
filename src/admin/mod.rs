//! Admin surface state and actions: health and readiness, the plugin
//! chain's status and policy reloads, the quarantine list, key versions and
//! key rotation. Served on its own
//! listener (loopback by default) by the server module; never reachable from
//! the public listener. Knows no HTTP: the server maps its answers and errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::ingest::{self, Ingest};
use crate::staging::UploadRecord;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no policy is configured (set plugins.policy)")]
    NoPolicy,
    #[error("the new policy was refused and the old one stays in force: {0}")]
    PolicyRefused(String),
    #[error(transparent)]
    Ingest(#[from] ingest::Error),
    /// A key listing or rotation failed; answered like the ingest error it
    /// is (503 when the key provider is down, 409 while another rotation runs).
    #[error(transparent)]
    Keys(ingest::Error),
    #[error("invalid request body: {0}")]
    InvalidRequest(String),
    #[error("background task failed: {0}")]
    Task(String),
}

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

/// What the admin surface may ask of the plugin chain.
pub trait PolicyControl: Send + Sync {
    /// Loads the policy file again; on success, what is now in force.
    /// Blocking (plugins may compile).
    fn reload(&self) -> Result<serde_json::Value, String>;

    /// The policy, plugins, pins and their health.
    fn status(&self) -> serde_json::Value;
}

pub struct Admin {
    pub health: Arc<Health>,
    ingest: Arc<Ingest>,
    policy: Option<Arc<dyn PolicyControl>>,
}

impl Admin {
    /// The pipeline the admin API acts on.
    pub fn ingest(&self) -> &Arc<Ingest> {
        &self.ingest
    }

    pub fn new(
        health: Arc<Health>,
        ingest: Arc<Ingest>,
        policy: Option<Arc<dyn PolicyControl>>,
    ) -> Admin {
        Admin {
            health,
            ingest,
            policy,
        }
    }

    pub fn plugins(&self) -> Result<serde_json::Value, Error> {
        Ok(self.policy.as_ref().ok_or(Error::NoPolicy)?.status())
    }

    /// Reloads the policy off the reactor. Uploads in flight keep the chain
    /// they started with.
    pub async fn reload_policy(&self) -> Result<serde_json::Value, Error> {
        let policy = self.policy.clone().ok_or(Error::NoPolicy)?;
        let result = tokio::task::spawn_blocking(move || policy.reload())
            .await
            .map_err(|e| Error::Task(e.to_string()))?;
        match result {
            Ok(summary) => {
                tracing::info!(%summary, "policy reloaded");
                Ok(summary)
            }
            Err(reason) => {
                tracing::error!(error = %reason, "policy reload refused; the old policy stays");
                Err(Error::PolicyRefused(reason))
            }
        }
    }

    /// Quarantined objects with what the plugins found.
    pub async fn quarantine(&self) -> Result<serde_json::Value, Error> {
        let held = self.ingest.quarantined().await?;
        Ok(serde_json::json!({
            "objects": held.iter().map(quarantine_entry).collect::<Vec<_>>(),
        }))
    }
}

/// The body of `POST /admin/keys/rotate`: empty (every tenant) or
/// `{"tenant": "<name>"}`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateRequest {
    tenant: Option<String>,
}

impl Admin {
    /// Every key version, per tenant, with the objects and uploads it protects.
    pub async fn keys(&self) -> Result<serde_json::Value, Error> {
        let listing = self.ingest.key_listing().await.map_err(Error::Keys)?;
        Ok(listing.to_json())
    }

    /// Rotates the key of the tenant the body names, or of every tenant:
    /// a new version becomes current, every data key is re-wrapped under
    /// it, and versions nothing uses any more are retired.
    pub async fn rotate_keys(&self, body: &[u8]) -> Result<serde_json::Value, Error> {
        let tenant = if body.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            serde_json::from_slice::<RotateRequest>(body)
                .map_err(|err| Error::InvalidRequest(err.to_string()))?
                .tenant
        };
        let report = self
            .ingest
            .rotate_keys(tenant.as_deref())
            .await
            .map_err(Error::Keys)?;
        Ok(report.to_json())
    }
}

fn quarantine_entry(record: &UploadRecord) -> serde_json::Value {
    let commit = match &record.state {
        crate::staging::UploadState::Committed(commit) => Some(commit),
        _ => None,
    };
    serde_json::json!({
        "id": record.id.to_string(),
        "tenant": record.tenant,
        "size": record.offset,
        "sha256": commit.map(|c| c.sha256.as_str()),
        "committed_at": commit.map(|c| c.committed_at),
        "metadata": record.metadata,
        "screening": record.screening,
    })
}
