//! Appliance configuration. Owns the TOML schema, its embedded defaults and
//! validation into `Config`. Never opens sockets or touches the data dir.
//!
//! Every key is optional: `Config::default()` is the embedded configuration the
//! quick start runs with, and `examples/strongroom.toml` documents each key with
//! the same default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path} line {line}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub uploads: UploadConfig,
    pub plugins: PluginsConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Public API listener (tus and downloads).
    pub listen: SocketAddr,
    /// Admin listener (health, later metrics and the admin API). Loopback by default.
    pub admin_listen: SocketAddr,
    /// Absolute URL prefix put in `Location` headers; empty means a path-only
    /// `Location`, which every tus client resolves against its endpoint.
    pub public_url: String,
    pub max_connections: usize,
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub keep_alive_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub body_idle_timeout: Duration,
    pub max_header_bytes: ByteSize,
    pub max_headers: usize,
    pub h2_max_concurrent_streams: u32,
    pub h2_max_pending_accept_reset_streams: usize,
    pub h2_max_local_error_reset_streams: usize,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Browser origins allowed by CORS; `["*"]` allows any.
    pub cors_allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    /// During one long PATCH, make the bytes received so far durable this often,
    /// so a crash mid-request loses at most this much.
    pub checkpoint_every: ByteSize,
    /// Plaintext held in flight by all uploads together before readers wait.
    pub memory_budget: ByteSize,
    /// Use ChaCha20-Poly1305 instead of AES-256-GCM for new objects.
    pub chacha20: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadConfig {
    pub max_size: ByteSize,
    /// An unfinished upload is removed this long after its last write.
    #[serde(with = "humantime_serde")]
    pub expiry: Duration,
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// How long a request waits for the upload's previous request to stop.
    #[serde(with = "humantime_serde")]
    pub lock_wait: Duration,
}

/// The Wasm plugin platform. Without a policy no plugin runs and every
/// complete upload commits; with one, its plugin chain decides.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// The policy file (see policies/default.toml); relative paths resolve
    /// against the working directory. Reloaded on SIGHUP and by
    /// `POST /admin/policy/reload`.
    pub policy: Option<PathBuf>,
    /// Precompiled plugin artifacts; empty means `<data_dir>/plugins/cache`.
    pub cache_dir: PathBuf,
    /// Threads running plugin calls; 0 means one per core (at least 2).
    pub workers: usize,
    /// Plugin instances alive at once across all uploads (each upload holds
    /// one per plugin in its chain while it is being received).
    pub max_inspections: u32,
    /// The largest memory cap a policy may give a plugin.
    pub max_memory: ByteSize,
    /// An upload's plugin instances are released after this long without a
    /// request; its next request replays the staged bytes into new ones.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl PluginsConfig {
    /// Where precompiled artifacts live for a data dir.
    pub fn cache_dir_in(&self, data_dir: &Path) -> PathBuf {
        if self.cache_dir.as_os_str().is_empty() {
            data_dir.join("plugins").join("cache")
        } else {
            self.cache_dir.clone()
        }
    }
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            policy: None,
            cache_dir: PathBuf::new(),
            workers: 0,
            max_inspections: 256,
            max_memory: ByteSize::mib(256),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            public_url: String::new(),
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(60),
            body_idle_timeout: Duration::from_secs(30),
            max_header_bytes: ByteSize::kib(16),
            max_headers: 64,
            h2_max_concurrent_streams: 64,
            h2_max_pending_accept_reset_streams: 20,
            h2_max_local_error_reset_streams: 256,
            shutdown_grace: Duration::from_secs(20),
            cors_allowed_origins: Vec::new(),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./strongroom-data"),
            checkpoint_every: ByteSize::mib(16),
            memory_budget: ByteSize::mib(32),
            chacha20: false,
        }
    }
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            max_size: ByteSize::gib(10),
            expiry: Duration::from_secs(24 * 3600),
            sweep_interval: Duration::from_secs(60),
            lock_wait: Duration::from_secs(5),
        }
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses config text; `path` only names the source in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Config, Error> {
        let config: Config = toml::from_str(text).map_err(|err| Error::Syntax {
            path: path.to_owned(),
            line: err.span().map_or(1, |span| line_of(text, span.start)),
            message: err.message().trim_end_matches('.').to_owned(),
        })?;
        config.validate().map_err(|message| Error::Invalid {
            path: path.to_owned(),
            message,
        })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let limits = &self.server;
        if limits.max_header_bytes.as_u64() < 8192 {
            return Err("server.max_header_bytes must be at least 8KiB".into());
        }
        if limits.max_connections == 0 {
            return Err("server.max_connections must be at least 1".into());
        }
        if self.storage.memory_budget.as_u64() < 1024 * 1024 {
            return Err("storage.memory_budget must be at least 1MiB".into());
        }
        if self.uploads.lock_wait > limits.body_idle_timeout {
            return Err("uploads.lock_wait must not exceed server.body_idle_timeout".into());
        }
        if self.plugins.max_inspections == 0 {
            return Err("plugins.max_inspections must be at least 1".into());
        }
        if !limits.public_url.is_empty() && !limits.public_url.starts_with("http") {
            return Err("server.public_url must start with http:// or https://".into());
        }
        Ok(())
    }
}

pub(crate) fn line_of(text: &str, byte_offset: usize) -> usize {
    let end = byte_offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, Error> {
        Config::parse(Path::new("test.toml"), text)
    }

    #[test]
    fn empty_file_is_the_embedded_default() {
        let config = parse("").unwrap();
        assert_eq!(config.server.listen.port(), 8080);
        assert_eq!(config.uploads.max_size, ByteSize::gib(10));
    }

    #[test]
    fn the_documented_example_is_exactly_the_embedded_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/strongroom.toml");
        let example = Config::load(&path).unwrap();
        assert_eq!(format!("{example:?}"), format!("{:?}", Config::default()));
    }

    #[test]
    fn human_sizes_and_durations() {
        let config = parse("[uploads]\nmax_size = \"2GiB\"\nexpiry = \"90m\"\n").unwrap();
        assert_eq!(config.uploads.max_size.as_u64(), 2 << 30);
        assert_eq!(config.uploads.expiry, Duration::from_secs(5400));
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err = parse("[uploads]\n\nmax_sise = \"1GiB\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("config test.toml line 3: "), "{err}");
        assert!(err.contains("max_sise"), "{err}");
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let err = parse("[server]\nmax_header_bytes = \"1KiB\"\n").unwrap_err();
        assert!(err.to_string().contains("server.max_header_bytes"), "{err}");
    }
}
