//! Wiring: opens the data dir, keys and staging, loads the policy and its
//! plugins (when one is configured), runs recovery, starts the expiry sweep,
//! the policy reload on SIGHUP and both listeners. The caller binds the listeners, so tests
//! pass `127.0.0.1:0`.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::admin::{Admin, AdminParts, ConsoleSettings, Health, PolicyControl};
use crate::auth::{self, Auth};
use crate::config::Config;
use crate::config::{KeyProviderKind, KeysConfig};
use crate::crypto::pkcs11::{Pkcs11Config, Pkcs11Keys};
use crate::crypto::{self, Aead, KeyProvider, LocalKeyring};
use crate::disk::{Disk, OsDisk};
use crate::events::Bus;
use crate::ingest::{self, Ingest, IngestConfig};
use crate::metrics::{MeteredDisk, Metrics};
use crate::policy::{LimitsTable, LiveLimits, Policy};
use crate::server::{self, App, AppParts, ConsoleOrigins};
use crate::shutdown::Shutdown;
use crate::staging::{self, RecoveryReport, Staging};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Keys(#[from] crypto::Error),
    #[error("opening the key provider: {0}")]
    KeysTask(String),
    #[error(transparent)]
    Staging(#[from] staging::Error),
    #[error("recovery: {0}")]
    Recovery(#[from] ingest::Error),
    #[cfg(feature = "plugins")]
    #[error("plugins: {0}")]
    Plugins(#[from] crate::screen::Error),
    #[error("plugins: {0}")]
    PluginsUnavailable(String),
    #[error(transparent)]
    Tls(#[from] server::TlsError),
    #[error(
        "auth.mode = \"none\" is refused: a listener is not on a loopback address \
         (use tokens, the default)"
    )]
    OpenNonLoopback,
    #[error("authentication: {0}")]
    Auth(#[from] auth::Error),
    #[error(transparent)]
    Audit(#[from] crate::audit::Error),
    #[error("manifest key: {0}")]
    Manifest(#[from] crate::store::manifest::Error),
    #[error("opening the audit trail: {0}")]
    AuditTask(String),
    #[error("limits: {0}")]
    Limits(#[from] crate::policy::Error),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// A running appliance.
pub struct Appliance {
    pub public_addr: std::net::SocketAddr,
    pub admin_addr: std::net::SocketAddr,
    pub ingest: Arc<Ingest>,
    pub recovery: RecoveryReport,
    /// Set when this start created the key-encryption key.
    pub created_key: Option<PathBuf>,
    /// The admin API key the first start creates; shown once, stored hashed.
    pub first_admin_key: Option<auth::NewKey>,
    pub auth: Arc<Auth>,
    /// The audit trail and the manifest key.
    pub records: server::Records,
    /// Its Prometheus metrics and live events.
    pub metrics: Arc<Metrics>,
    pub events: Arc<Bus>,
    shutdown: Shutdown,
    tasks: Vec<JoinHandle<()>>,
}

impl Appliance {
    /// Binds the configured addresses and starts.
    pub async fn start(config: Config) -> Result<Appliance, Error> {
        let public = bind(config.server.listen).await?;
        let admin = bind(config.server.admin_listen).await?;
        Self::start_on(config, public, admin, Arc::new(OsDisk)).await
    }

    /// Starts on listeners the caller bound, with the given disk.
    pub async fn start_on(
        config: Config,
        public: TcpListener,
        admin_listener: TcpListener,
        disk: Arc<dyn Disk>,
    ) -> Result<Appliance, Error> {
        // First, so a bad certificate stops the start before anything else.
        let tls = server::Tls::load(&config.tls).await?;
        let data_dir = config.storage.data_dir.clone();
        disk.create_dir_all(&data_dir)
            .map_err(|source| staging::Error::Io {
                op: "create",
                path: data_dir.clone(),
                source,
            })?;
        let (keys, created_key) = open_keys(&config.keys, &data_dir).await?;
        let (auth, first_admin_key) = Auth::open(&data_dir.join("auth"), &config.auth)?;
        let auth = Arc::new(auth);
        if !auth.enforcing() {
            tracing::warn!(
                "AUTHENTICATION IS OFF (auth.mode = \"none\"): every request acts as tenant \
                 `default` with every scope. Development only; allowed on loopback listeners only."
            );
        }
        let metrics = Arc::new(Metrics::new());
        let events = Arc::new(Bus::new());
        let disk: Arc<dyn Disk> = Arc::new(MeteredDisk::new(disk, metrics.clone()));
        let staging = Arc::new(Staging::open(&data_dir, disk)?);
        staging.set_metrics(metrics.clone());
        let ingest = Ingest::new(ingest_config(&config), staging, keys);
        ingest.set_observers(metrics.clone(), events.clone());
        // Before recovery, which may settle (and so record) commits.
        let records = open_records(&config, &data_dir).await?;
        records.trail.log().set_metrics(metrics.clone());
        ingest.set_audit(records.trail.clone(), records.manifests.clone());
        let policy = start_plugins(&config, &ingest).await?;
        let (live_limits, policy) = start_limits(&config, policy).await?;
        ingest.set_limits(live_limits.clone());
        let health = Arc::new(Health::default());
        let recovery = ingest.recover().await?;
        health.set_ready();

        let shutdown = Shutdown::default();
        let public_addr = public.local_addr().expect("bound listener has an address");
        let admin_addr = admin_listener
            .local_addr()
            .expect("bound listener has an address");
        let all_loopback = public_addr.ip().is_loopback() && admin_addr.ip().is_loopback();
        if !auth.enforcing() && !all_loopback {
            return Err(Error::OpenNonLoopback);
        }
        let admin = Arc::new(Admin::new(AdminParts {
            health,
            ingest: ingest.clone(),
            policy: policy.clone(),
            audit: Some(records.trail.log().clone()),
            data_dir: data_dir.clone(),
            console: console_settings(&config, public_addr, tls.is_some(), auth.enforcing()),
        }));
        let app = App::new(AppParts {
            ingest: ingest.clone(),
            auth: auth.clone(),
            limits: config.server.clone(),
            live_limits,
            records: Some(records.clone()),
            console_origins: ConsoleOrigins::of_admin_listener(admin_addr),
            shutdown: shutdown.clone(),
        });
        let mut tasks = vec![
            tokio::spawn(server::run(public, app, tls.clone(), shutdown.wait())),
            tokio::spawn(server::run_admin(
                admin_listener,
                admin.clone(),
                auth.clone(),
                config.server.clone(),
                Some(records.clone()),
                tls,
                shutdown.clone(),
            )),
            // Signs the records every second; a last time on shutdown.
            tokio::spawn(crate::audit::run_checkpoints(
                records.trail.log().clone(),
                shutdown.wait(),
            )),
            tokio::spawn(sweep_loop(
                ingest.clone(),
                config.uploads.sweep_interval,
                shutdown.clone(),
            )),
        ];
        if policy.is_some() {
            tasks.push(tokio::spawn(reload_on_sighup(
                admin,
                records.trail.clone(),
                shutdown.clone(),
            )));
        }
        Ok(Appliance {
            public_addr,
            admin_addr,
            ingest,
            recovery,
            created_key,
            first_admin_key,
            auth,
            records,
            metrics,
            events,
            shutdown,
            tasks,
        })
    }

    /// Stops accepting, drains connections (bounded by the grace period) and
    /// waits for every task.
    pub async fn stop(self) {
        self.shutdown.trigger();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Opens the configured key provider: key files in `<data_dir>/keys`, or a
/// PKCS#11 token. Blocking (files, loading the module, logging in to the
/// token). A token that cannot be opened is an error, so an appliance whose
/// keys are out of reach never starts (later outages answer 503 instead).
pub fn open_key_provider(
    keys: &KeysConfig,
    data_dir: &std::path::Path,
) -> Result<Arc<dyn KeyProvider>, crypto::Error> {
    match keys.provider {
        KeyProviderKind::File => Ok(Arc::new(LocalKeyring::open(&data_dir.join("keys"))?)),
        KeyProviderKind::Pkcs11 => {
            // Both are set: config validation requires them for pkcs11.
            let (Some(module), Some(pin_file)) = (&keys.pkcs11_module, &keys.pkcs11_pin_file)
            else {
                return Err(crypto::Error::KeyProviderUnavailable {
                    provider: "pkcs11",
                    reason: "keys.pkcs11_module and keys.pkcs11_pin_file must be set".into(),
                });
            };
            Ok(Arc::new(Pkcs11Keys::open(Pkcs11Config {
                module: module.clone(),
                token: keys.pkcs11_token.clone(),
                pin_file: pin_file.clone(),
            })?))
        }
    }
}

/// Opens the key provider off the reactor and makes sure tenant `default`
/// has a key. Returns the key file this start created, if any, so the
/// administrator is told once.
async fn open_keys(
    keys: &KeysConfig,
    data_dir: &std::path::Path,
) -> Result<(Arc<dyn KeyProvider>, Option<PathBuf>), Error> {
    let keys = keys.clone();
    let data_dir = data_dir.to_owned();
    tokio::task::spawn_blocking(move || {
        let tenant = crate::auth::DEFAULT_TENANT;
        if keys.provider == KeyProviderKind::File {
            let (keyring, created) = LocalKeyring::open_or_create(&data_dir.join("keys"), tenant)?;
            return Ok((Arc::new(keyring) as Arc<dyn KeyProvider>, created));
        }
        let provider = open_key_provider(&keys, &data_dir)?;
        let (id, created) = provider.ensure(tenant)?;
        if created {
            tracing::info!(key = %id, "created key-encryption key in the token");
        }
        Ok((provider, None))
    })
    .await
    .map_err(|e| Error::KeysTask(e.to_string()))?
}

/// How the console reaches the public listener: `server.public_url` when
/// set, else the listener's own address (a guess from the browser's host
/// when it listens on every address).
fn console_settings(
    config: &Config,
    public_addr: std::net::SocketAddr,
    tls: bool,
    tokens: bool,
) -> ConsoleSettings {
    let scheme = if tls { "https" } else { "http" };
    let configured = config.server.public_url.trim_end_matches('/');
    let public_url = if !configured.is_empty() {
        Some(configured.to_owned())
    } else if public_addr.ip().is_unspecified() {
        None
    } else {
        Some(format!("{scheme}://{public_addr}"))
    };
    ConsoleSettings {
        public_url,
        public_scheme: scheme,
        public_port: public_addr.port(),
        auth: if tokens { "tokens" } else { "none" },
        max_size: config.uploads.max_size.as_u64(),
    }
}

async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

fn ingest_config(config: &Config) -> IngestConfig {
    IngestConfig {
        max_size: config.uploads.max_size.as_u64(),
        expiry: config.uploads.expiry,
        lock_wait: config.uploads.lock_wait,
        body_idle_timeout: config.server.body_idle_timeout,
        checkpoint_every: config.storage.checkpoint_every.as_u64(),
        memory_budget: config.storage.memory_budget.as_u64(),
        aead: if config.storage.chacha20 {
            Aead::ChaCha20Poly1305
        } else {
            Aead::Aes256Gcm
        },
    }
}

/// Loads the configured policy and its plugins and hands the chain to
/// ingest. A policy that does not load stops the start: an appliance that
/// silently skipped inspection would be worse than one that is down.
#[cfg(feature = "plugins")]
async fn start_plugins(
    config: &Config,
    ingest: &Arc<Ingest>,
) -> Result<Option<Arc<dyn PolicyControl>>, Error> {
    let Some(policy) = config.plugins.policy.clone() else {
        tracing::warn!("no policy configured (plugins.policy): uploads are not inspected");
        return Ok(None);
    };
    let plugins = config.plugins.clone();
    let data_dir = config.storage.data_dir.clone();
    let metrics = ingest.metrics().clone();
    let screen = tokio::task::spawn_blocking(move || {
        crate::screen::PluginScreen::start(policy, &plugins, &data_dir, metrics)
    })
    .await
    .map_err(|e| Error::PluginsUnavailable(e.to_string()))??;
    let screen = Arc::new(screen);
    ingest.set_screen(screen.clone(), config.plugins.idle_timeout);
    Ok(Some(screen))
}

#[cfg(not(feature = "plugins"))]
async fn start_plugins(
    config: &Config,
    _ingest: &Arc<Ingest>,
) -> Result<Option<Arc<dyn PolicyControl>>, Error> {
    match &config.plugins.policy {
        Some(_) => Err(Error::PluginsUnavailable(
            "this build has no plugin platform (cargo feature `plugins`)".into(),
        )),
        None => Ok(None),
    }
}

/// The per-tenant limits in force: the config's `[limits]`, under the
/// policy's limits when a policy is configured. Then a policy reload also
/// replaces the limits (see `PolicyWithLimits`).
async fn start_limits(
    config: &Config,
    policy: Option<Arc<dyn PolicyControl>>,
) -> Result<(Arc<LiveLimits>, Option<Arc<dyn PolicyControl>>), Error> {
    let base = config.limits.table();
    let (Some(chain), Some(path)) = (policy, config.plugins.policy.clone()) else {
        return Ok((Arc::new(LiveLimits::new(base)), None));
    };
    let read = path.clone();
    let policy = tokio::task::spawn_blocking(move || Policy::load(&read))
        .await
        .map_err(|e| Error::PluginsUnavailable(e.to_string()))??;
    let live = Arc::new(LiveLimits::new(policy.limits_table(&base)));
    let control = PolicyWithLimits {
        chain,
        path,
        base,
        live: live.clone(),
    };
    Ok((live, Some(Arc::new(control))))
}

/// Policy reloads that replace the limits in force along with the plugin
/// chain. The file is read for its limits first, so a policy that does not
/// load leaves both chain and limits as they were; requests already
/// admitted keep the limits they were admitted under.
struct PolicyWithLimits {
    chain: Arc<dyn PolicyControl>,
    path: PathBuf,
    /// The config's `[limits]`, under the policy's.
    base: LimitsTable,
    live: Arc<LiveLimits>,
}

impl PolicyControl for PolicyWithLimits {
    fn reload(&self) -> Result<serde_json::Value, String> {
        let limits = Policy::load(&self.path)
            .map_err(|err| err.to_string())?
            .limits_table(&self.base);
        let summary = self.chain.reload()?;
        self.live.replace(limits);
        tracing::info!(policy = %self.path.display(), "limits reloaded with the policy");
        Ok(summary)
    }

    fn status(&self) -> serde_json::Value {
        self.chain.status()
    }

    fn document(&self) -> serde_json::Value {
        self.chain.document()
    }
}

/// Opens the audit log (recovering it after a crash) and the manifest
/// signing key (`<data_dir>/manifest.key`), creating both on first start.
async fn open_records(
    config: &Config,
    data_dir: &std::path::Path,
) -> Result<server::Records, Error> {
    let origin = config.audit.origin.clone();
    let on_failure = config.audit.on_failure;
    let data_dir = data_dir.to_owned();
    let (log, manifests) = tokio::task::spawn_blocking(move || -> Result<_, Error> {
        let log = crate::audit::Audit::open(&crate::audit::dir(&data_dir), &origin)?;
        let key_path = data_dir.join(crate::store::manifest::KEY_FILE);
        let (manifests, created) = crate::store::manifest::ManifestKey::open_or_create(&key_path)?;
        if created {
            tracing::info!(
                path = %key_path.display(),
                key_id = %manifests.public().id(),
                "created the manifest signing key (mode 0600); back it up with the data dir"
            );
        }
        Ok((log, manifests))
    })
    .await
    .map_err(|e| Error::AuditTask(e.to_string()))??;
    Ok(server::Records {
        trail: crate::audit::Trail::new(Arc::new(log), on_failure),
        manifests: Arc::new(manifests),
    })
}

/// SIGHUP reloads the policy; a bad one is refused and logged. Each reload
/// is recorded in the audit trail (actor `system`, subject `sighup`).
async fn reload_on_sighup(admin: Arc<Admin>, trail: Arc<crate::audit::Trail>, shutdown: Shutdown) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload with POST /admin/policy/reload");
        return;
    };
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            Some(()) = hangups.recv() => {
                // The outcome is logged by the reload itself.
                let reloaded = admin.reload_policy().await.is_ok();
                record_signal_reload(&trail, reloaded).await;
            }
        }
    }
}

async fn record_signal_reload(trail: &crate::audit::Trail, reloaded: bool) {
    use crate::audit::{Event, EventKind, Outcome};
    let event = if reloaded {
        Event::new(EventKind::PolicyReload, Outcome::Ok)
    } else {
        Event::new(EventKind::PolicyReload, Outcome::Denied).reason("policy_refused")
    };
    let event = event.actor(crate::audit::scope::SYSTEM).subject("sighup");
    // Nobody waits for an answer: a failure is logged by the trail.
    let _ = trail.record(event).await;
}

async fn sweep_loop(ingest: Arc<Ingest>, every: std::time::Duration, shutdown: Shutdown) {
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(every) => {}
        }
        match ingest.sweep_expired().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "expired uploads swept"),
            Err(err) => tracing::error!(error = %err, "expiry sweep failed"),
        }
        let released = ingest.release_idle_screenings();
        if released > 0 {
            tracing::debug!(released, "idle upload inspections released");
        }
        if let Err(err) = ingest.settle_all_pending().await {
            tracing::error!(error = %err, "settling pending verdicts failed");
        }
    }
}
