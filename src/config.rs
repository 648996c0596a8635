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
    pub tls: TlsConfig,
    pub auth: AuthConfig,
    pub keys: KeysConfig,
    pub limits: LimitsConfig,
    pub audit: AuditConfig,
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
    /// Open connections from one IP address at most; further ones from it
    /// are closed at once.
    pub max_connections_per_address: usize,
    /// A request body slower than this (bytes per second, averaged over
    /// `min_transfer_window` of waiting for the client) is cut; 0 turns the
    /// check off.
    pub min_transfer_speed: ByteSize,
    #[serde(with = "humantime_serde")]
    pub min_transfer_window: Duration,
    /// A connection whose writes make no progress for this long (the peer
    /// stopped reading) is closed.
    #[serde(with = "humantime_serde")]
    pub send_timeout: Duration,
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

/// TLS on the public listener. Without `cert` and `key` the listener speaks
/// plain HTTP (the quick start on loopback); the admin listener is always
/// plain HTTP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first. Re-read when it changes.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1). Re-read when it changes.
    pub key: Option<PathBuf>,
    pub min_version: TlsVersion,
    /// PEM bundle of CAs that client certificates are verified against.
    pub client_ca: Option<PathBuf>,
    /// Refuse handshakes without a client certificate (needs `client_ca`).
    pub require_client_cert: bool,
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// How often `cert` and `key` are checked for changes (also on SIGHUP).
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
}

/// The oldest TLS version the public listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TlsVersion {
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

impl TlsConfig {
    /// Whether the public listener speaks TLS.
    pub fn enabled(&self) -> bool {
        self.cert.is_some()
    }

    fn validate(&self) -> Result<(), String> {
        if self.cert.is_some() != self.key.is_some() {
            return Err("tls.cert and tls.key must be set together".into());
        }
        if self.client_ca.is_some() && !self.enabled() {
            return Err("tls.client_ca needs tls.cert and tls.key".into());
        }
        if self.require_client_cert && self.client_ca.is_none() {
            return Err("tls.require_client_cert needs tls.client_ca".into());
        }
        if self.handshake_timeout.is_zero() {
            return Err("tls.handshake_timeout must be more than 0".into());
        }
        if self.reload_interval < Duration::from_millis(100) {
            return Err("tls.reload_interval must be at least 100ms".into());
        }
        Ok(())
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: None,
            key: None,
            min_version: TlsVersion::Tls13,
            client_ca: None,
            require_client_cert: false,
            handshake_timeout: Duration::from_secs(10),
            reload_interval: Duration::from_secs(30),
        }
    }
}

/// Who may do what: scoped tokens (the default), or nothing at all on a
/// loopback-only development appliance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// `iss` of issued tokens; tokens naming another issuer are refused.
    pub issuer: String,
    /// `aud` of issued tokens; tokens meant for another audience are refused.
    pub audience: String,
    #[serde(with = "humantime_serde")]
    pub upload_token_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub download_token_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub admin_token_ttl: Duration,
    /// Clock skew tolerated either side of a token's validity window.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// Lifetime of presigned download URLs (at most 24h).
    #[serde(with = "humantime_serde")]
    pub presign_ttl: Duration,
    /// Failed authentications per client address per minute before that
    /// address is refused for the rest of the minute.
    pub failures_per_minute: u32,
    /// SHA-256 fingerprints (hex) of client certificates and the tenant each
    /// acts for at the token endpoint (needs `tls.client_ca`).
    pub client_certificates: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Every request carries a scoped token (or a presigned URL).
    Tokens,
    /// No authentication: every request acts as tenant `default` with every
    /// scope. Refused unless both listeners are on loopback.
    None,
}

impl AuthConfig {
    fn validate(&self, server: &ServerConfig) -> Result<(), String> {
        let loopback = server.listen.ip().is_loopback() && server.admin_listen.ip().is_loopback();
        if self.mode == AuthMode::None && !loopback {
            return Err(
                "auth.mode = \"none\" is only allowed when server.listen and \
                 server.admin_listen are loopback addresses"
                    .into(),
            );
        }
        if self.presign_ttl > Duration::from_secs(24 * 3600) || self.presign_ttl.is_zero() {
            return Err("auth.presign_ttl must be between 1s and 24h".into());
        }
        for (name, ttl) in [
            ("upload_token_ttl", self.upload_token_ttl),
            ("download_token_ttl", self.download_token_ttl),
            ("admin_token_ttl", self.admin_token_ttl),
        ] {
            if ttl < Duration::from_secs(10) || ttl > Duration::from_secs(24 * 3600) {
                return Err(format!("auth.{name} must be between 10s and 24h"));
            }
        }
        if self.leeway > Duration::from_secs(300) {
            return Err("auth.leeway must be at most 5m".into());
        }
        if self.failures_per_minute == 0 {
            return Err("auth.failures_per_minute must be at least 1".into());
        }
        for (fingerprint, tenant) in &self.client_certificates {
            let hex = fingerprint.len() == 64
                && fingerprint
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !hex {
                return Err(format!(
                    "auth.client_certificates: {fingerprint:?} is not a lowercase hex SHA-256"
                ));
            }
            if !crate::auth::valid_tenant_name(tenant) {
                return Err(format!(
                    "auth.client_certificates: bad tenant name {tenant:?}"
                ));
            }
        }
        Ok(())
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: AuthMode::Tokens,
            issuer: "strongroom".into(),
            audience: "strongroom".into(),
            upload_token_ttl: Duration::from_secs(15 * 60),
            download_token_ttl: Duration::from_secs(5 * 60),
            admin_token_ttl: Duration::from_secs(10 * 60),
            leeway: Duration::from_secs(60),
            presign_ttl: Duration::from_secs(15 * 60),
            failures_per_minute: 20,
            client_certificates: Default::default(),
        }
    }
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

/// Per-tenant rate limits and quota, and the appliance-wide ingress rate.
/// These are the embedded defaults: a policy's `[defaults.limits]` and
/// `[tenants.<name>.limits]` override them key by key. Zero turns a limit
/// off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Requests per second per tenant, sustained (429 `rate_limited`).
    pub requests_per_second: f64,
    /// Requests a tenant may make at once above that rate.
    pub requests_burst: u32,
    /// New uploads per second per tenant, sustained.
    pub uploads_per_second: f64,
    pub uploads_burst: u32,
    /// Upload bodies a tenant may send at once (429
    /// `too_many_concurrent_uploads`).
    pub concurrent_uploads: u32,
    /// Bytes of staged uploads and committed objects per tenant (403
    /// `quota_exceeded`).
    pub quota: ByteSize,
    /// A tenant's weight in `ingress_bytes_per_second`.
    pub share: u32,
    /// Bytes per second all upload bodies together may arrive at, divided
    /// among the tenants that are uploading by `share`.
    pub ingress_bytes_per_second: ByteSize,
}

impl LimitsConfig {
    /// The limits in force without a policy, and under one for what it
    /// leaves unset.
    pub fn table(&self) -> crate::policy::LimitsTable {
        crate::policy::LimitsTable::uniform(
            self.ingress_bytes_per_second.as_u64(),
            crate::policy::Limits {
                requests_per_second: self.requests_per_second,
                requests_burst: self.requests_burst,
                uploads_per_second: self.uploads_per_second,
                uploads_burst: self.uploads_burst,
                concurrent_uploads: self.concurrent_uploads,
                quota: self.quota.as_u64(),
                share: self.share,
            },
        )
    }

    fn validate(&self) -> Result<(), String> {
        use crate::policy::{check_burst, check_rate, check_share};
        let checks = [
            ("requests_per_second", check_rate(self.requests_per_second)),
            ("requests_burst", check_burst(self.requests_burst)),
            ("uploads_per_second", check_rate(self.uploads_per_second)),
            ("uploads_burst", check_burst(self.uploads_burst)),
            ("share", check_share(self.share)),
        ];
        for (key, check) in checks {
            check.map_err(|problem| format!("limits.{key} {problem}"))?;
        }
        Ok(())
    }
}

impl Default for LimitsConfig {
    /// Flood guards only: above what one tenant gets served on a small
    /// machine (the pipeline bench's 32 clients reach about 2,200 uploads
    /// and 4,400 requests a second on 2 cores), so real clients (one request
    /// per chunk), the test suite and the bench never meet them. Real
    /// per-tenant figures belong in the policy.
    fn default() -> Self {
        LimitsConfig {
            requests_per_second: 5000.0,
            requests_burst: 10000,
            uploads_per_second: 2000.0,
            uploads_burst: 4000,
            concurrent_uploads: 64,
            quota: ByteSize::b(0),
            share: 1,
            ingress_bytes_per_second: ByteSize::b(0),
        }
    }
}

/// The tamper-evident audit trail in `<data_dir>/audit`: one record per
/// request and state change, checkpoints signed every second.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// The log's name in its checkpoints and verifier key (e.g.
    /// `storage.example.com/audit`). Fixed for the life of the log: a data
    /// dir whose log has another origin does not start.
    pub origin: String,
    /// What a request whose record cannot be made durable gets: `refuse`
    /// (503 `audit_unavailable`; a completing upload stays pending) or
    /// `log` (logged at error level; the request goes on unrecorded).
    pub on_failure: crate::audit::OnFailure,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            origin: "strongroom/audit".into(),
            on_failure: crate::audit::OnFailure::Refuse,
        }
    }
}

impl AuditConfig {
    fn validate(&self) -> Result<(), String> {
        if !crate::audit::is_origin(&self.origin) {
            return Err(format!(
                "audit.origin {:?} must be 1 to 255 visible ASCII characters other than '+'",
                self.origin
            ));
        }
        Ok(())
    }
}

/// Where each tenant's key-encryption keys live: key files in
/// `<data_dir>/keys` (the default) or a PKCS#11 token (an HSM).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    pub provider: KeyProviderKind,
    /// The PKCS#11 module (.so), e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub pkcs11_module: Option<PathBuf>,
    /// The label of the token holding the keys.
    pub pkcs11_token: String,
    /// A file holding the token's user PIN, mode 0600 (the PIN is never
    /// taken from this config or the environment).
    pub pkcs11_pin_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyProviderKind {
    File,
    Pkcs11,
}

impl KeysConfig {
    fn validate(&self) -> Result<(), String> {
        if self.provider != KeyProviderKind::Pkcs11 {
            return Ok(());
        }
        if self.pkcs11_module.is_none() {
            return Err("keys.provider = \"pkcs11\" needs keys.pkcs11_module".into());
        }
        if self.pkcs11_pin_file.is_none() {
            return Err("keys.provider = \"pkcs11\" needs keys.pkcs11_pin_file".into());
        }
        if self.pkcs11_token.is_empty() {
            return Err("keys.pkcs11_token must not be empty".into());
        }
        Ok(())
    }
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            provider: KeyProviderKind::File,
            pkcs11_module: None,
            pkcs11_token: "strongroom".into(),
            pkcs11_pin_file: None,
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
            max_connections_per_address: 64,
            min_transfer_speed: ByteSize::kib(1),
            min_transfer_window: Duration::from_secs(30),
            send_timeout: Duration::from_secs(60),
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
        if limits.max_connections_per_address == 0 {
            return Err("server.max_connections_per_address must be at least 1".into());
        }
        if limits.min_transfer_window < Duration::from_secs(1) {
            return Err("server.min_transfer_window must be at least 1s".into());
        }
        if limits.send_timeout.is_zero() {
            return Err("server.send_timeout must be more than 0".into());
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
        self.tls.validate()?;
        self.keys.validate()?;
        self.limits.validate()?;
        self.audit.validate()?;
        self.auth.validate(&self.server)
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
    fn tls_is_off_by_default_and_needs_cert_and_key_together() {
        let config = parse("").unwrap();
        assert!(!config.tls.enabled());
        assert_eq!(config.tls.min_version, TlsVersion::Tls13);
        let err = parse("[tls]\ncert = \"c.pem\"\n").unwrap_err().to_string();
        assert!(err.contains("tls.cert and tls.key"), "{err}");
        let err = parse("[tls]\nrequire_client_cert = true\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("tls.require_client_cert"), "{err}");
        let config =
            parse("[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nmin_version = \"1.2\"\n").unwrap();
        assert_eq!(config.tls.min_version, TlsVersion::Tls12);
        assert!(parse("[tls]\nmin_version = \"1.1\"\n").is_err());
    }

    #[test]
    fn keys_default_to_files_and_pkcs11_needs_its_module_and_pin_file() {
        assert_eq!(parse("").unwrap().keys.provider, KeyProviderKind::File);
        let err = parse("[keys]\nprovider = \"pkcs11\"\n").unwrap_err();
        assert!(err.to_string().contains("keys.pkcs11_module"), "{err}");
        let config = parse(
            "[keys]\nprovider = \"pkcs11\"\npkcs11_module = \"/m.so\"\n\
             pkcs11_token = \"hsm\"\npkcs11_pin_file = \"/etc/pin\"\n",
        )
        .unwrap();
        assert_eq!(config.keys.provider, KeyProviderKind::Pkcs11);
        assert_eq!(config.keys.pkcs11_token, "hsm");
        let err = parse("[keys]\npkcs11_pin = \"1234\"\n").unwrap_err();
        assert!(err.to_string().contains("pkcs11_pin"), "{err}");
        assert!(!err.to_string().contains("1234"), "{err}");
    }

    #[test]
    fn limits_default_to_generous_rates_and_no_quota() {
        let table = parse("").unwrap().limits.table();
        assert_eq!(table.ingress_bytes_per_second, 0);
        assert_eq!(table.defaults.quota, 0);
        assert_eq!(table.defaults.requests_per_second, 5000.0);
        let config =
            parse("[limits]\nquota = \"5GiB\"\nuploads_per_second = 2.5\nshare = 4\n").unwrap();
        let table = config.limits.table();
        assert_eq!(table.defaults.quota, 5 << 30);
        assert_eq!(table.defaults.uploads_per_second, 2.5);
        assert_eq!(table.for_tenant("any").share, 4);
        let err = parse("[limits]\nrequests_burst = 0\n").unwrap_err();
        assert!(err.to_string().contains("limits.requests_burst"), "{err}");
        let err = parse("[limits]\nshare = 1001\n").unwrap_err();
        assert!(err.to_string().contains("limits.share"), "{err}");
    }

    #[test]
    fn audit_refuses_by_default_and_needs_a_plain_origin() {
        let config = parse("").unwrap();
        assert_eq!(config.audit.on_failure, crate::audit::OnFailure::Refuse);
        assert_eq!(config.audit.origin, "strongroom/audit");
        let config =
            parse("[audit]\non_failure = \"log\"\norigin = \"a.example/audit\"\n").unwrap();
        assert_eq!(config.audit.on_failure, crate::audit::OnFailure::Log);
        assert!(parse("[audit]\non_failure = \"ignore\"\n").is_err());
        let err = parse("[audit]\norigin = \"a+b\"\n").unwrap_err();
        assert!(err.to_string().contains("audit.origin"), "{err}");
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let err = parse("[server]\nmax_header_bytes = \"1KiB\"\n").unwrap_err();
        assert!(err.to_string().contains("server.max_header_bytes"), "{err}");
    }
}
