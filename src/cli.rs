//! Command-line interface: raw arguments parsed into typed commands. What the
//! commands do lives in `main.rs`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::telemetry::LogFormat;

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
    /// Verify every stored object and staged upload (every segment's tag, the
    /// file lengths, each object's SHA-256) on a data dir no server is using.
    /// Exits 2 if anything is damaged.
    Scrub {
        /// The data dir (storage.data_dir).
        #[arg(long, default_value = "./strongroom-data")]
        data_dir: PathBuf,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
}
