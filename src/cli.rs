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
    /// The tamper-evident audit log: export a signed snapshot, verify one.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
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
    #[arg(long, default_value = crate::tus::DEFAULT_TENANT)]
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
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
