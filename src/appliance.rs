//! Wiring: opens the data dir, keys and staging, runs recovery, starts the
//! expiry sweep and both listeners. The caller binds the listeners, so tests
//! pass `127.0.0.1:0`.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::admin::Health;
use crate::config::Config;
use crate::crypto::{self, Aead, LocalKeyring};
use crate::disk::{Disk, OsDisk};
use crate::ingest::{self, Ingest, IngestConfig};
use crate::server::{self, App};
use crate::shutdown::Shutdown;
use crate::staging::{self, RecoveryReport, Staging};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Keys(#[from] crypto::Error),
    #[error(transparent)]
    Staging(#[from] staging::Error),
    #[error("recovery: {0}")]
    Recovery(#[from] ingest::Error),
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
        admin: TcpListener,
        disk: Arc<dyn Disk>,
    ) -> Result<Appliance, Error> {
        let data_dir = config.storage.data_dir.clone();
        disk.create_dir_all(&data_dir)
            .map_err(|source| staging::Error::Io {
                op: "create",
                path: data_dir.clone(),
                source,
            })?;
        let (keyring, created_key) =
            LocalKeyring::open_or_create(&data_dir.join("keys"), "default")?;
        let staging = Arc::new(Staging::open(&data_dir, disk)?);
        let ingest = Ingest::new(ingest_config(&config), staging, Arc::new(keyring));
        let health = Arc::new(Health::default());
        let recovery = ingest.recover().await?;
        health.set_ready();

        let shutdown = Shutdown::default();
        let public_addr = public.local_addr().expect("bound listener has an address");
        let admin_addr = admin.local_addr().expect("bound listener has an address");
        let app = App::new(ingest.clone(), config.server.clone());
        let tasks = vec![
            tokio::spawn(server::run(public, app, shutdown.wait())),
            tokio::spawn(server::run_admin(
                admin,
                health,
                config.server.clone(),
                shutdown.wait(),
            )),
            tokio::spawn(sweep_loop(
                ingest.clone(),
                config.uploads.sweep_interval,
                shutdown.clone(),
            )),
        ];
        Ok(Appliance {
            public_addr,
            admin_addr,
            ingest,
            recovery,
            created_key,
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
    }
}
