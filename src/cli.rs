//! Command-line interface: raw arguments parsed into typed commands. What the
//! commands do lives in the binary (`main.rs` and `src/commands/`), which is
//! the only place that prints or decides exit statuses.

use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use clap::{Args, Parser, Subcommand};

use crate::telemetry::LogFormat;

/// What `--data-dir` means when not given: `storage.data_dir`'s default.
const DEFAULT_DATA_DIR: &str = "./strongroom-data";

/// The largest `plugin test --chunk`: the tool holds one chunk in its read
/// buffer and one copy in flight to the plugin.
pub const MAX_TEST_CHUNK: usize = 64 << 20;

#[derive(Debug, Parser)]
#[command(
    name = "strongroom",
    version,
    about = "Self-hosted storage appliance: resumable uploads, encryption at rest"
)]
pub struct Cli {
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value = "human")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the appliance (embedded defaults unless --config is given).
    Serve {
        /// TOML config file; every key is optional (see examples/strongroom.toml).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Override storage.data_dir.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Override server.listen (public API address).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Override server.admin_listen.
        #[arg(long)]
        admin_listen: Option<std::net::SocketAddr>,
        /// Override auth.mode: `tokens`, or `none` (development only; refused
        /// unless both listeners are on loopback).
        #[arg(long, value_parser = ["tokens", "none"])]
        auth: Option<String>,
    },
    /// Validate a config file and print the effective settings.
    CheckConfig { config: PathBuf },
    /// Policy files: which plugins run for which tenant.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Wasm inspection plugins: install, list, try one on a file.
    #[cfg(feature = "plugins")]
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Verify every stored object and staged upload (every segment's tag, the
    /// file lengths, each object's SHA-256) on a data dir no server is using.
    /// Exits 2 if anything is damaged.
    Scrub {
        /// The data dir (storage.data_dir).
        #[arg(long, default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Tenants, kept hashed with their API keys in the data dir; a running
    /// appliance sees changes at once.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// API keys: exchanged at POST /auth/token for short-lived scoped tokens.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Key-encryption keys (KEKs): list versions, rotate them. Works on the
    /// data dir of a stopped appliance; a running one rotates with
    /// POST /admin/keys/rotate on its admin listener.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// The tamper-evident audit log: export a signed snapshot, verify one.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Check a file against its signed manifest, offline: the signature
    /// (with the appliance's manifest key), then the file's size and SHA-256,
    /// read in fixed-size pieces.
    #[command(after_help = "\
Exit status:
  0  the signature verifies and the file matches the manifest
  2  mismatch or forgery: another size or SHA-256, an altered manifest, a
     signature by another key, or not a manifest at all
  1  any other error (an unreadable file, an unusable key, bad usage)")]
    Verify {
        /// The file: the object's bytes (e.g. as downloaded).
        file: PathBuf,
        /// The manifest document (GET /objects/{id}/manifest).
        manifest: PathBuf,
        /// The manifest key: a file holding it, or the text itself. Either
        /// the JSON served at /.well-known/strongroom/manifest-key or the
        /// base64 public key alone. Obtain it out of band.
        #[arg(long, value_name = "KEY")]
        key: String,
    },
    /// TLS certificates to try HTTPS and client certificates without openssl.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
    /// Upload files to an appliance (tus: chunked, checksummed, resumable).
    ///
    /// Each file is sent in chunks of --chunk-size, each with its SHA-256 in
    /// Upload-Checksum. An interrupted upload is remembered in the state
    /// file; running the same command again continues it where the server
    /// stopped. Files over --parallel-threshold are sent as --parallel
    /// parts at once and joined on the server. Prints one line per file
    /// with its object id and what inspection decided.
    #[command(after_help = UPLOAD_EXIT_STATUS)]
    Upload(UploadArgs),
    /// Download an object and check it against its signed manifest.
    ///
    /// Streams into FILE.part (continued with Range if it already exists),
    /// hashing as it writes; then checks the manifest's signature, the size
    /// and the SHA-256, and only then renames FILE.part to FILE.
    #[command(after_help = DOWNLOAD_EXIT_STATUS)]
    Download(DownloadArgs),
    /// Exchange an API key for a scoped token and print it.
    #[command(after_help = SIMPLE_EXIT_STATUS)]
    Token(TokenArgs),
    /// Where an upload stands, or which uploads the state file has
    /// unfinished.
    ///
    /// With an ID (or upload URL): its offset, length, and once complete its
    /// disposition and reason. Without: each unfinished upload in the state
    /// file with the offset the server has now.
    #[command(after_help = SIMPLE_EXIT_STATUS)]
    Status(StatusArgs),
}

/// Exit statuses of `upload`, shown by its --help.
pub const UPLOAD_EXIT_STATUS: &str = "\
Exit status (with several files, the most severe: 1, 6, 7, 3, 4, 5, 0):
  0  every file was uploaded and released
  3  rejected by inspection (the plugin and rule are printed); destroyed
  4  quarantined: stored, but held for an admin
  5  accepted, but the verdict is still pending
  7  interrupted or incomplete: run the same command again to continue
  6  authentication or authorisation refused
  2  bad usage
  1  any other error";

/// Exit statuses of `download`, shown by its --help.
pub const DOWNLOAD_EXIT_STATUS: &str = "\
Exit status:
  0  downloaded, and it matches its signed manifest
  2  verification failed: a forged or altered manifest, or bytes that do not
     match it; FILE.part is kept and FILE is not produced
  4  the object is quarantined
  5  the object's verdict is still pending
  6  authentication or authorisation refused
  1  any other error (including bad usage)";

/// Exit statuses of `token` and `status`.
pub const SIMPLE_EXIT_STATUS: &str = "\
Exit status:
  0  done
  6  authentication or authorisation refused
  2  bad usage
  1  any other error";

/// How the client commands reach the appliance and what they print.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The appliance's public URL.
    #[arg(
        long,
        env = "STRONGROOM_URL",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    pub server: String,
    /// API key, exchanged at POST /auth/token for tokens with the scopes
    /// the command needs. Prefer --api-key-file or STRONGROOM_API_KEY:
    /// other users can see command lines.
    #[arg(long, value_name = "KEY", conflicts_with_all = ["api_key_file", "token"])]
    pub api_key: Option<String>,
    /// Read the API key from FILE (mode 0600).
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    pub api_key_file: Option<PathBuf>,
    /// A token to send as is, instead of an API key. Without any of these
    /// options, STRONGROOM_TOKEN, else STRONGROOM_API_KEY, is used; with
    /// none, no credential is sent (an `--auth none` appliance).
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Also trust this CA or self-signed certificate (PEM), e.g. the
    /// cert.pem of `strongroom cert self-signed`.
    #[arg(long, value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,
    /// Print results as JSON, one object per line, and no progress.
    #[arg(long)]
    pub json: bool,
    /// Print only problems: no progress, no result lines for successes.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `upload`.
#[derive(Debug, Args)]
pub struct UploadArgs {
    /// The files to upload, one after the other.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Bytes per PATCH request (held in memory once per part in flight).
    #[arg(long, value_name = "SIZE", default_value = "8MiB", value_parser = parse_upload_chunk)]
    pub chunk_size: usize,
    /// Extra upload metadata as plain text, repeatable (`filename` and
    /// `filetype` are set from the file unless given here).
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_meta)]
    pub meta: Vec<(String, String)>,
    /// The state file that remembers unfinished uploads [default:
    /// $XDG_STATE_HOME/strongroom/uploads.json, else
    /// ~/.local/state/strongroom/uploads.json].
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Sign each file for the provenance plugin with this Ed25519 private
    /// key (PKCS#8, PEM or DER, e.g. from `openssl genpkey -algorithm
    /// ed25519`; mode 0600). The file's SHA-256 is computed first.
    #[arg(long, value_name = "KEYFILE", requires = "signer")]
    pub sign: Option<PathBuf>,
    /// The signer's key id, as named in the policy's trusted_keys.
    #[arg(long, value_name = "ID", requires = "sign")]
    pub signer: Option<String>,
    /// Parts sent at once for a file over --parallel-threshold.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=MAX_PARALLEL))]
    pub parallel: u16,
    /// Files larger than this are split into --parallel parts.
    #[arg(long, value_name = "SIZE", default_value = "256MiB")]
    pub parallel_threshold: ByteSize,
    /// Tries after a failure (connection lost, 5xx, 423, 429) before the
    /// command gives up with status 7; each waits longer.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub retries: u32,
}

/// The most parts `upload --parallel` sends at once: each holds a chunk in
/// memory.
pub const MAX_PARALLEL: i64 = 16;

/// `download`.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// The object: its id, or its URL (a presigned URL needs no credential).
    #[arg(value_name = "ID|URL")]
    pub object: String,
    /// Where to write it [default: the server's file name for it, made
    /// safe, else the id, in the current directory].
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The manifest key: a file holding it, or the text itself (the JSON of
    /// /.well-known/strongroom/manifest-key or the base64 key), obtained
    /// out of band. Without it the key is fetched from the same server,
    /// which only proves the bytes match what that server signed.
    #[arg(long, value_name = "KEY")]
    pub manifest_key: Option<String>,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
    /// Tries after a failure before giving up; each continues the .part.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub retries: u32,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// A scope to ask for, repeatable: upload:create, upload:resume:<id>,
    /// object:read:<id>, admin.
    #[arg(long = "scope", value_name = "SCOPE", required = true)]
    pub scopes: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// An upload or object id, or an upload URL.
    #[arg(value_name = "ID|URL")]
    pub upload: Option<String>,
    /// The state file to list [default: as for `upload`].
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new KEK version current, re-wrap every object's data key under
    /// it, then retire the versions no object uses any more.
    ///
    /// Data files are never touched: each object costs one index write.
    /// Safe to interrupt at any point: no object is left under a key that
    /// does not exist, and running it again finishes the interrupted
    /// rotation (its new version stays current) instead of starting another.
    #[command(after_help = "\
Exit status:
  0  every data key is under its tenant's current version
  2  some data keys do not unwrap and were left as they are (run scrub)
  1  any other error (a server holds the data dir, the key provider is down)")]
    Rotate {
        #[command(flatten)]
        at: KeysAt,
        /// Only this tenant [default: every tenant that has keys].
        #[arg(long)]
        tenant: Option<String>,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List every key version and how many objects and uploads each protects.
    ///
    /// Versions that records name but the key provider does not hold are
    /// listed as missing: those objects cannot be read.
    List {
        #[command(flatten)]
        at: KeysAt,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Where `keys` commands find the data dir and its key provider.
#[derive(Debug, Args)]
pub struct KeysAt {
    /// The data dir [default: the config's storage.data_dir, else
    /// ./strongroom-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The appliance's config file, for its [keys] section (the key
    /// provider) and data dir.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Add a tenant (1 to 64 of [a-z0-9_-]); fails if it exists.
    Add {
        name: String,
        /// The data dir (storage.data_dir).
        #[arg(long, default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
    /// Remove a tenant from the credential store: its API keys and tokens
    /// stop working at once. Its objects and KEKs stay; to destroy them
    /// (crypto-shredding) use `DELETE /admin/tenants/<name>` on the admin
    /// listener, which does both.
    Remove {
        name: String,
        #[arg(long, default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
    /// List tenants.
    List {
        #[arg(long, default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create an API key for a tenant and print it (shown this once; only
    /// its hash is kept).
    Create {
        #[arg(long)]
        tenant: String,
        /// The key may ask for the `admin` scope.
        #[arg(long)]
        admin: bool,
        /// A note to tell keys apart in `key list`.
        #[arg(long)]
        label: Option<String>,
        #[arg(long, default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// Print one JSON object (with the key) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API key by its id; tokens already issued with it keep
    /// working until they expire (revoke those with the admin API).
    Revoke {
        id: String,
        #[arg(long, default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
    /// List API keys (ids, tenants, labels; never the keys).
    List {
        #[arg(long, default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy as the appliance would load it, then check that
    /// every plugin's .wasm exists and matches its sha256 pin (the files are
    /// hashed, not compiled). Prints each plugin and each tenant's chain.
    /// Exits 1, naming the file and line, if anything is wrong.
    Check {
        /// The policy file.
        #[arg(default_value = "policies/default.toml")]
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Copy the records, checkpoints and verifier key into a directory an
    /// auditor can take away.
    ///
    /// Only reads the data dir, so it is safe while the appliance runs. The
    /// copy ends at the latest checkpoint and holds exactly the records it
    /// signs; records appended after it are left for the next export.
    Export {
        /// The data dir (storage.data_dir).
        #[arg(long, default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// Where to write the copy (created; must not already hold one).
        #[arg(long, default_value = "strongroom-audit-export")]
        out: PathBuf,
    },
    /// Check an exported audit log offline against its verifier key.
    ///
    /// Checks every record's form, index and chain, every checkpoint's
    /// signature, each checkpoint's root against the tree rebuilt from the
    /// records, and consistency between consecutive checkpoints. Prints the
    /// first failing record index.
    #[command(after_help = "\
Exit status:
  0  every record is signed for and nothing was altered
  2  tampered: the first failing index is printed
  1  any other error (a missing file, an unreadable key)")]
    Verify {
        /// The exported directory (records, checkpoints).
        dir: PathBuf,
        /// The verifier key: the text `<name>+<hash>+<key>`, or a file holding
        /// it (audit.pub, obtained from the appliance out of band).
        #[arg(long, value_name = "PUB")]
        key: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Write a self-signed server certificate and key (cert.pem, key.pem).
    ///
    /// The key is ECDSA P-256, written with mode 0600; existing files are
    /// never overwritten. Prints the paths, the certificate's SHA-256
    /// fingerprint and the [tls] lines that serve it. With --client, also
    /// writes a client CA (ca.pem, ca-key.pem) and a client certificate
    /// signed by it per name (client-NAME.pem, client-NAME-key.pem), for
    /// tls.client_ca. Meant for trying TLS out: use a real CA's certificate
    /// in production.
    SelfSigned(SelfSignedArgs),
}

/// `cert self-signed`.
#[derive(Debug, Args)]
pub struct SelfSignedArgs {
    /// The directory to write into (created if missing).
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    /// A DNS name or IP address the server certificate is for, repeatable
    /// [default: localhost, 127.0.0.1, ::1].
    #[arg(long = "name", value_name = "NAME")]
    pub names: Vec<String>,
    /// Also issue a client certificate whose common name is NAME (1 to 64
    /// of [A-Za-z0-9._-]), repeatable.
    #[arg(long = "client", value_name = "NAME", value_parser = parse_client_name)]
    pub clients: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Validate, precompile and install a plugin component; print its pin.
    ///
    /// The component is checked (a component, only allowed imports, the
    /// inspector world), precompiled into the data dir's artifact cache and
    /// copied to <DATA_DIR>/plugins/<NAME>.wasm. Prints the SHA-256 to pin
    /// and a policy section to paste. Exits 1 if it is not a valid plugin.
    Install(InstallArgs),
    /// List the plugins installed in a data dir.
    ///
    /// Shows each one's name, SHA-256, size and whether its precompiled
    /// artifact is cached (a missing one is compiled and cached now, as the
    /// appliance would at its next policy load). Exits 1 if one is invalid.
    List(ListArgs),
    /// Run a plugin on a file as an upload would; the exit status is the verdict.
    ///
    /// The sample is streamed from disk in chunks, its SHA-256 computed
    /// natively, and the plugin's verdict, findings, labels and call
    /// statistics printed.
    Test(TestArgs),
}

/// `plugin install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The plugin component (.wasm).
    pub wasm: PathBuf,
    /// The data dir (storage.data_dir).
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// The plugin's name in policies: 1 to 64 of [a-z0-9_-]. Defaults to the
    /// file's stem.
    #[arg(long)]
    pub name: Option<String>,
}

/// `plugin list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The data dir (storage.data_dir).
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
}

/// `plugin test`.
#[derive(Debug, Args)]
#[command(after_help = "\
Exit status:
  0  the plugin accepted the sample
  3  the plugin rejected it
  4  the plugin quarantined it
  5  the plugin failed (trap, timeout, memory cap, fuel, panic)
  1  any other error (the plugin did not load, the sample is unreadable)
  2  bad usage")]
pub struct TestArgs {
    /// The plugin component (.wasm).
    pub wasm: PathBuf,
    /// The file to upload to it.
    pub sample: PathBuf,
    /// Upload metadata as plain text (not base64), repeatable. `filename`
    /// and `filetype` are also the declared name and content type.
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_meta)]
    pub meta: Vec<(String, String)>,
    /// The tenant the upload is for.
    #[arg(long, default_value = crate::auth::DEFAULT_TENANT)]
    pub tenant: String,
    /// The plugin's settings (its policy `config` table) as a JSON object,
    /// inline or as @FILE.
    #[arg(long, value_name = "JSON|@FILE", default_value = "{}")]
    pub config: String,
    /// Bytes per call to the plugin's feed.
    #[arg(long, value_name = "SIZE", default_value = "256KiB", value_parser = parse_chunk)]
    pub chunk: usize,
    /// Wall-clock limit of each plugin call, e.g. 200ms [default: 1s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub deadline: Option<Duration>,
    /// The plugin's memory cap, e.g. 32MiB [default: 64MiB].
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<ByteSize>,
    /// Use (and fill) this data dir's artifact cache instead of compiling
    /// into a temporary one.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

fn parse_meta(raw: &str) -> Result<(String, String), String> {
    let Some((key, value)) = raw.split_once('=') else {
        return Err(format!("expected KEY=VALUE, got {raw:?}"));
    };
    // The tus Upload-Metadata rules for keys.
    if key.is_empty() || key.contains([' ', ',']) {
        return Err(format!(
            "metadata key {key:?} must be non-empty, without spaces or commas"
        ));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// Client names become file names (client-NAME.pem), so only plain ones.
fn parse_client_name(raw: &str) -> Result<String, String> {
    let plain = raw
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if (1..=64).contains(&raw.len()) && plain && !raw.starts_with('.') {
        Ok(raw.to_owned())
    } else {
        Err(format!(
            "client name {raw:?} must be 1 to 64 of [A-Za-z0-9._-], not starting with '.'"
        ))
    }
}

fn parse_upload_chunk(raw: &str) -> Result<usize, String> {
    let size: ByteSize = raw.parse()?;
    let max = crate::client::upload::MAX_CHUNK;
    usize::try_from(size.as_u64())
        .ok()
        .filter(|size| (1..=max).contains(size))
        .ok_or_else(|| format!("chunk size must be between 1 byte and {max} bytes"))
}

fn parse_chunk(raw: &str) -> Result<usize, String> {
    let size: ByteSize = raw.parse()?;
    usize::try_from(size.as_u64())
        .ok()
        .filter(|size| (1..=MAX_TEST_CHUNK).contains(size))
        .ok_or_else(|| format!("chunk size must be between 1 byte and {MAX_TEST_CHUNK} bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_splits_at_the_first_equals_sign() {
        assert_eq!(
            parse_meta("note=a=b"),
            Ok(("note".to_owned(), "a=b".to_owned()))
        );
        assert_eq!(
            parse_meta("empty="),
            Ok(("empty".to_owned(), String::new()))
        );
        assert!(parse_meta("novalue").is_err());
        assert!(parse_meta("=x").is_err());
        assert!(parse_meta("two words=x").is_err());
    }

    #[test]
    fn chunk_sizes_are_human_and_bounded() {
        assert_eq!(parse_chunk("256KiB"), Ok(256 << 10));
        assert_eq!(parse_chunk("7"), Ok(7));
        assert!(parse_chunk("0").is_err());
        assert!(parse_chunk("1GiB").is_err());
        assert!(parse_chunk("lots").is_err());
    }

    #[test]
    fn client_names_are_plain_file_name_parts() {
        assert_eq!(parse_client_name("alice-01"), Ok("alice-01".to_owned()));
        assert!(parse_client_name("").is_err());
        assert!(parse_client_name("../etc").is_err());
        assert!(parse_client_name(".hidden").is_err());
        assert!(parse_client_name("a b").is_err());
        assert!(parse_client_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
