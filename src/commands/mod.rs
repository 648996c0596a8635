//! What the `strongroom` admin subcommands do. Part of the binary, not the
//! library: with `main.rs` these are the only modules that use anyhow, print,
//! or choose exit statuses. Each command takes its parsed arguments, calls
//! the library, and reports for a human.
//!
//! The client commands (`upload`, `download`, `token`, `status`) share the
//! helpers below: the connection from `ClientArgs`, the async runtime, and
//! the progress bar (drawn on a terminal only, never with --json/--quiet).

pub mod audit;
pub mod cert;
pub mod download;
pub mod keys;
#[cfg(feature = "plugins")]
pub mod plugin;
pub mod policy;
pub mod status;
pub mod tenant;
pub mod token;
pub mod upload;
pub mod verify;

use std::io::{IsTerminal, Read};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use strongroom::cli::ClientArgs;
use strongroom::client::{Client, Credential, Options, RetryPolicy, Secret};

/// Exit status of a client command whose credential the server refused.
pub const EXIT_AUTH: u8 = 6;

/// A client for the command's --server and credential.
pub fn connect(args: &ClientArgs, retries: u32) -> anyhow::Result<Client> {
    let options = Options {
        server: args.server.clone(),
        credential: credential(args)?,
        ca_cert: args.ca_cert.clone(),
        retry: RetryPolicy {
            retries,
            ..RetryPolicy::default()
        },
    };
    Ok(Client::new(options)?)
}

/// The credential: the options first (clap refuses two of them), then
/// STRONGROOM_TOKEN, then STRONGROOM_API_KEY; else none.
fn credential(args: &ClientArgs) -> anyhow::Result<Credential> {
    if let Some(token) = &args.token {
        return Ok(Credential::Token(Secret::new(token.clone())));
    }
    if let Some(path) = &args.api_key_file {
        return Ok(Credential::ApiKey(Secret::from_file(path)?));
    }
    if let Some(key) = &args.api_key {
        return Ok(Credential::ApiKey(Secret::new(key.clone())));
    }
    let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if let Some(token) = from_env("STRONGROOM_TOKEN") {
        return Ok(Credential::Token(Secret::new(token.trim().to_owned())));
    }
    if let Some(key) = from_env("STRONGROOM_API_KEY") {
        return Ok(Credential::ApiKey(Secret::new(key.trim().to_owned())));
    }
    Ok(Credential::None)
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// A byte progress bar with speed and ETA on stderr, when stderr is a
/// terminal and the output is for a human.
pub struct Bar {
    bar: Option<ProgressBar>,
    started: AtomicBool,
}

impl Bar {
    pub fn new(length: u64, label: &str, args: &ClientArgs) -> Bar {
        let shown = !args.json && !args.quiet && std::io::stderr().is_terminal();
        let bar = shown.then(|| {
            let bar = ProgressBar::new(length);
            let style = ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .expect("a valid progress template")
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(label.to_owned());
            bar
        });
        Bar {
            bar,
            started: AtomicBool::new(false),
        }
    }

    /// The bytes done so far. The first call may jump to where an earlier
    /// run stopped: that jump is not counted in the speed.
    pub fn set(&self, done: u64) {
        let Some(bar) = &self.bar else {
            return;
        };
        bar.set_position(done);
        if !self.started.swap(true, Ordering::Relaxed) {
            bar.reset_eta();
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Read size when hashing a file: the hash streams, so memory stays fixed
/// whatever the file's size.
const HASH_BUFFER: usize = 64 << 10;

/// The SHA-256 and length of a file, read in fixed-size pieces.
pub fn hash_file(path: &Path) -> std::io::Result<([u8; 32], u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut buffer = vec![0u8; HASH_BUFFER];
    let mut hasher = strongroom::crypto::Sha256::new();
    let mut len = 0u64;
    loop {
        let n = match file.read(&mut buffer) {
            Ok(0) => return Ok((hasher.finish(), len)),
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        hasher.update(&buffer[..n]);
        len += n as u64;
    }
}
