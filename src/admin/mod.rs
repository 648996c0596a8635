//! Admin surface state and actions: health and readiness, metrics samples,
//! the console's summary and settings, uploads and objects across tenants,
//! the quarantine queue (list, release, delete), the plugin chain's status
//! and policy, key versions and key rotation. Served on its own listener
//! (loopback by default) by the server module; never reachable from the
//! public listener. Knows no HTTP: the server maps its answers and errors.

mod views;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::id::UploadId;
use crate::ingest::{self, Ingest, Inventory, ObjectQuery};
use crate::metrics::{AuditSample, Sample, TenantSample};
use crate::staging::Disposition;

/// An inventory (one scan of the index) is reused for this long, so a
/// scrape every few seconds and a console polling beside it cost one scan.
const INVENTORY_MAX_AGE: Duration = Duration::from_secs(5);

/// The largest page of objects an admin request gets.
pub const MAX_PAGE: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no policy is configured (set plugins.policy)")]
    NoPolicy,
    #[error("the audit trail is not open or has no checkpoint yet")]
    NoAudit,
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
    #[error("invalid query: {0}")]
    InvalidQuery(String),
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

    /// The policy in force: its path, the SHA-256 and text of the file as
    /// loaded, and when.
    fn document(&self) -> serde_json::Value;
}

/// What the console needs to know to reach the public listener.
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    /// The public listener as the browser should reach it; `None` when it
    /// listens on every address, so the host the browser used for the
    /// admin listener is the best guess.
    pub public_url: Option<String>,
    /// `https` or `http`, and the port, for that guess.
    pub public_scheme: &'static str,
    pub public_port: u16,
    /// `tokens` or `none`.
    pub auth: &'static str,
    pub max_size: u64,
}

/// Everything the admin surface is built from.
pub struct AdminParts {
    pub health: Arc<Health>,
    pub ingest: Arc<Ingest>,
    pub policy: Option<Arc<dyn PolicyControl>>,
    pub audit: Option<Arc<crate::audit::Audit>>,
    pub data_dir: PathBuf,
    pub console: ConsoleSettings,
}

pub struct Admin {
    pub health: Arc<Health>,
    ingest: Arc<Ingest>,
    policy: Option<Arc<dyn PolicyControl>>,
    audit: Option<Arc<crate::audit::Audit>>,
    data_dir: PathBuf,
    console: ConsoleSettings,
    started: Instant,
    /// The latest inventory and when it was taken.
    inventory: tokio::sync::Mutex<Option<(Instant, Arc<Inventory>)>>,
}

impl Admin {
    /// The pipeline the admin API acts on.
    pub fn ingest(&self) -> &Arc<Ingest> {
        &self.ingest
    }

    pub fn new(parts: AdminParts) -> Admin {
        Admin {
            health: parts.health,
            ingest: parts.ingest,
            policy: parts.policy,
            audit: parts.audit,
            data_dir: parts.data_dir,
            console: parts.console,
            started: Instant::now(),
            inventory: tokio::sync::Mutex::new(None),
        }
    }

    /// An inventory at most `INVENTORY_MAX_AGE` old.
    async fn inventory(&self) -> Result<Arc<Inventory>, Error> {
        let mut cached = self.inventory.lock().await;
        if let Some((taken, inventory)) = &*cached
            && taken.elapsed() < INVENTORY_MAX_AGE
        {
            return Ok(inventory.clone());
        }
        let inventory = Arc::new(self.ingest.inventory().await?);
        *cached = Some((Instant::now(), inventory.clone()));
        Ok(inventory)
    }

    /// The metrics page, with the figures read now: holdings per tenant,
    /// the audit log, the data dir's file system, live event streams.
    /// `tls_not_after` is the public certificate's expiry, when it has one.
    pub async fn metrics_text(&self, tls_not_after: Option<i64>) -> Result<String, Error> {
        let inventory = self.inventory().await?;
        let sample = Sample {
            tenants: inventory
                .tenants
                .iter()
                .map(|(tenant, held)| TenantSample {
                    tenant: tenant.clone(),
                    uploads_staged: held.uploads,
                    staged_bytes: held.staged_bytes,
                    stored_bytes: held.stored_bytes,
                    objects_released: held.released,
                    objects_quarantined: held.quarantined,
                    objects_pending: held.pending,
                    key_versions: held.key_versions.len() as u64,
                })
                .collect(),
            staging_files: inventory.staging_files,
            audit: self.audit.as_ref().map(|audit| audit_sample(audit)),
            data_dir_space: data_dir_space(&self.data_dir),
            tls_not_after,
            event_subscribers: self.ingest.events().subscribers() as u64,
        };
        Ok(self.ingest.metrics().render(&sample))
    }

    /// A few figures for the console.
    pub async fn summary(&self) -> Result<serde_json::Value, Error> {
        let inventory = self.inventory().await?;
        let totals = self.ingest.metrics().totals();
        let held = inventory.tenants.values();
        let sum = |field: fn(&ingest::TenantHoldings) -> u64| held.clone().map(field).sum::<u64>();
        Ok(serde_json::json!({
            "uploads_active": totals.uploads_active,
            "uploads_staged": sum(|h| h.uploads),
            "objects": sum(ingest::TenantHoldings::objects),
            "objects_quarantined": sum(|h| h.quarantined),
            "objects_pending": sum(|h| h.pending),
            "bytes_stored": sum(|h| h.stored_bytes),
            "bytes_staged": sum(|h| h.staged_bytes),
            "verdicts": totals.verdicts,
            "requests_total": totals.requests,
            "ingress_bytes_total": totals.ingress_bytes,
            "egress_bytes_total": totals.egress_bytes,
            "uptime_seconds": self.started.elapsed().as_secs(),
            "tenants": inventory.tenants.len(),
        }))
    }

    /// What the console loads first. `admin_host` is the host the browser
    /// used to reach the admin listener (from its `Host` header).
    pub fn console_config(&self, admin_host: Option<&str>) -> serde_json::Value {
        let settings = &self.console;
        let public_url = settings.public_url.clone().unwrap_or_else(|| {
            let host = admin_host.map_or("127.0.0.1", strip_port);
            format!(
                "{}://{host}:{}",
                settings.public_scheme, settings.public_port
            )
        });
        serde_json::json!({
            "public_url": public_url,
            "auth": settings.auth,
            "version": env!("CARGO_PKG_VERSION"),
            "max_size": settings.max_size,
        })
    }

    /// Per-tenant usage for the tenants listing.
    pub async fn usage(&self) -> Result<serde_json::Value, Error> {
        let inventory = self.inventory().await?;
        let usage: serde_json::Map<String, serde_json::Value> = inventory
            .tenants
            .iter()
            .map(|(tenant, held)| (tenant.clone(), views::usage(held)))
            .collect();
        Ok(serde_json::Value::Object(usage))
    }

    pub async fn uploads(&self, tenant: Option<String>) -> Result<serde_json::Value, Error> {
        let uploads = self.ingest.uploads_in_progress(tenant).await?;
        Ok(serde_json::json!({
            "uploads": uploads.iter().map(views::upload).collect::<Vec<_>>(),
        }))
    }

    /// A page of objects. `disposition`, `limit` and `after` come from the
    /// query string and are checked here.
    pub async fn objects(
        &self,
        tenant: Option<String>,
        disposition: Option<&str>,
        limit: Option<&str>,
        after: Option<&str>,
    ) -> Result<serde_json::Value, Error> {
        let query = ObjectQuery {
            tenant,
            disposition: disposition.map(parse_disposition).transpose()?,
            after: after
                .map(|id| {
                    id.parse::<UploadId>()
                        .map_err(|_| Error::InvalidQuery(format!("after: {id:?} is not an id")))
                })
                .transpose()?,
            limit: limit.map(parse_limit).transpose()?.unwrap_or(100),
        };
        let page = self.ingest.objects(query).await?;
        Ok(serde_json::json!({
            "objects": page.objects.iter().map(views::object).collect::<Vec<_>>(),
            "next": page.next.map(|id| id.to_string()),
        }))
    }

    pub async fn object(&self, id: UploadId) -> Result<serde_json::Value, Error> {
        let record = self.ingest.object(id).await?;
        let mut view = views::object(&record);
        view["manifest"] = record.manifest.clone().unwrap_or(serde_json::Value::Null);
        Ok(view)
    }

    pub async fn release(&self, id: UploadId) -> Result<serde_json::Value, Error> {
        let record = self.ingest.release(id).await?;
        self.forget_inventory().await;
        Ok(serde_json::json!({
            "id": record.id.to_string(),
            "disposition": "released",
        }))
    }

    pub async fn delete_object(
        &self,
        id: UploadId,
        quarantined_only: bool,
    ) -> Result<serde_json::Value, Error> {
        self.ingest.delete_object(id, quarantined_only).await?;
        self.forget_inventory().await;
        Ok(serde_json::json!({ "deleted": id.to_string() }))
    }

    /// After a change an admin will want to see at once.
    async fn forget_inventory(&self) {
        *self.inventory.lock().await = None;
    }

    pub fn policy_document(&self) -> Result<serde_json::Value, Error> {
        Ok(self.policy.as_ref().ok_or(Error::NoPolicy)?.document())
    }

    /// The latest signed checkpoint of the audit log, in its text form.
    pub fn audit_checkpoint(&self) -> Result<String, Error> {
        let audit = self.audit.as_ref().ok_or(Error::NoAudit)?;
        audit
            .latest_checkpoint()
            .map(|checkpoint| checkpoint.note().to_owned())
            .ok_or(Error::NoAudit)
    }

    /// Exports a signed snapshot of the audit log into `out` (a new dir),
    /// as `strongroom audit export` does. Blocking work, run off the reactor.
    pub async fn export_audit(&self, out: PathBuf) -> Result<crate::audit::Exported, Error> {
        let audit = self.audit.clone().ok_or(Error::NoAudit)?;
        tokio::task::spawn_blocking(move || crate::audit::export(audit.dir(), &out))
            .await
            .map_err(|e| Error::Task(e.to_string()))?
            .map_err(|e| Error::Task(e.to_string()))
    }

    /// Where temporary admin files (audit exports) go: inside the data dir,
    /// so they never cross file systems or land somewhere world-readable.
    pub fn scratch_dir(&self) -> PathBuf {
        self.data_dir.join("tmp")
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
            "objects": held.iter().map(views::quarantined).collect::<Vec<_>>(),
        }))
    }
}

fn audit_sample(audit: &crate::audit::Audit) -> AuditSample {
    let stats = audit.stats();
    AuditSample {
        records: stats.records,
        bytes: audit.records_bytes(),
        checkpoint_age: Some(stats.unsigned_for.as_secs_f64()),
    }
}

/// (free, size) of the data dir's file system.
fn data_dir_space(dir: &std::path::Path) -> Option<(u64, u64)> {
    Some((fs2::available_space(dir).ok()?, fs2::total_space(dir).ok()?))
}

fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        // An IPv6 literal keeps its brackets; a bare one has no port.
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.ends_with(':') => {
            name
        }
        _ => host,
    }
}

fn parse_disposition(text: &str) -> Result<Disposition, Error> {
    match text {
        "released" => Ok(Disposition::Released),
        "quarantined" => Ok(Disposition::Quarantined),
        "pending" => Ok(Disposition::Pending),
        other => Err(Error::InvalidQuery(format!(
            "disposition: {other:?} is not released, quarantined or pending"
        ))),
    }
}

fn parse_limit(text: &str) -> Result<usize, Error> {
    match text.parse::<usize>() {
        Ok(limit) if (1..=MAX_PAGE).contains(&limit) => Ok(limit),
        _ => Err(Error::InvalidQuery(format!(
            "limit: {text:?} is not a number from 1 to {MAX_PAGE}"
        ))),
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
