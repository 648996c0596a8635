//! The `strongroom` binary: parses the command line, runs one command and
//! turns its result into an exit status. The admin commands live in
//! `commands/`; errors are printed once, here.

mod commands;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use strongroom::appliance::Appliance;
use strongroom::cli::{Cli, Command, PolicyCommand};
use strongroom::config::Config;
use strongroom::ingest::{Ingest, ScrubReport};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err),
    };
    strongroom::telemetry::init(cli.log_format);
    match run(cli.command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve {
            config,
            data_dir,
            listen,
            admin_listen,
            auth,
        } => {
            let mut config = match config {
                Some(path) => Config::load(&path)?,
                None => Config::default(),
            };
            if let Some(dir) = data_dir {
                config.storage.data_dir = dir;
            }
            if let Some(addr) = listen {
                config.server.listen = addr;
            }
            if let Some(addr) = admin_listen {
                config.server.admin_listen = addr;
            }
            match auth.as_deref() {
                Some("none") => config.auth.mode = strongroom::config::AuthMode::None,
                Some(_) => config.auth.mode = strongroom::config::AuthMode::Tokens,
                None => {}
            }
            serve(config)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { config } => {
            let parsed = Config::load(&config)?;
            println!("{}: ok\n{parsed:#?}", config.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy {
            command: PolicyCommand::Check { file },
        } => commands::policy::check(&file),
        #[cfg(feature = "plugins")]
        Command::Plugin { command } => commands::plugin::run(command),
        Command::Audit { command } => commands::audit::run(command),
        Command::Keys { command } => commands::keys::run(command),
        Command::Tenant { command } => commands::tenant::run_tenant(command),
        Command::Key { command } => commands::tenant::run_key(command),
        Command::Cert { command } => commands::cert::run(command),
        Command::Verify {
            file,
            manifest,
            key,
        } => commands::verify::run(&file, &manifest, &key),
        Command::Upload(args) => commands::upload::run(args),
        Command::Download(args) => commands::download::run(args),
        Command::Token(args) => commands::token::run(args),
        Command::Status(args) => commands::status::run(args),
        Command::Scrub { data_dir, json } => {
            let report = scrub(&data_dir)?;
            print_scrub(&report, json);
            if !report.is_clean() {
                return Ok(ExitCode::from(SCRUB_DAMAGED));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Prints a command-line error as clap does and picks the exit status:
/// clap's own (2 for bad usage, 0 for --help), except that `verify` and
/// `download`, whose 2 means a forged or mismatched manifest, exit 1 for
/// bad usage.
fn usage_error(err: &clap::Error) -> ExitCode {
    let _ = err.print();
    let code = err.exit_code();
    if code != 0 && matches!(subcommand().as_deref(), Some("verify" | "download")) {
        return ExitCode::FAILURE;
    }
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// The first argument that is not a global option or its value.
fn subcommand() -> Option<String> {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--log-format" {
            args.next();
        } else if !arg.starts_with('-') {
            return Some(arg);
        }
    }
    None
}

/// Exit status of `strongroom scrub` when something is damaged (1 is left to
/// errors that stopped the scrub itself).
const SCRUB_DAMAGED: u8 = 2;

fn scrub(data_dir: &std::path::Path) -> anyhow::Result<ScrubReport> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let ingest = Ingest::open_offline(data_dir)?;
        ingest
            .scrub()
            .await
            .with_context(|| format!("scrubbing {}", data_dir.display()))
    })
}

fn print_scrub(report: &ScrubReport, json: bool) {
    if json {
        let damaged: Vec<_> = report
            .damaged
            .iter()
            .map(|d| {
                serde_json::json!({
                    "id": d.id.map(|id| id.to_string()),
                    "kind": if d.committed { "object" } else { "upload" },
                    "faults": d.faults.iter().map(ToString::to_string).collect::<Vec<_>>(),
                })
            })
            .collect();
        let value = serde_json::json!({
            "objects": report.objects,
            "uploads": report.uploads,
            "bytes_verified": report.bytes_verified,
            "damaged": damaged,
            "clean": report.is_clean(),
        });
        println!("{value}");
        return;
    }
    for damage in &report.damaged {
        println!("damaged {damage}");
    }
    println!(
        "scrub: {} objects checked, {} staged uploads checked, {} bytes verified, {} damaged",
        report.objects,
        report.uploads,
        report.bytes_verified,
        report.damaged.len()
    );
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let appliance = Appliance::start(config).await?;
        if let Some(path) = &appliance.created_key {
            println!(
                "created key-encryption key {} (mode 0600); back it up with the data dir",
                path.display()
            );
        }
        if let Some(key) = &appliance.first_admin_key {
            // Printed to stdout, not logged: the one time this secret is shown.
            println!(
                "created tenant `default` and its admin API key (shown once, stored hashed):\n\n    {}\n\n\
                 exchange it for a token:\n    curl -s -X POST -H 'Authorization: Bearer <key>' \
                 -d '{{\"scopes\":[\"upload:create\"]}}' http://{}/auth/token",
                key.secret, appliance.public_addr
            );
        }
        let report = &appliance.recovery;
        tracing::info!(
            public = %appliance.public_addr,
            admin = %appliance.admin_addr,
            console = %format!("http://{}/console/", appliance.admin_addr),
            metrics = %format!("http://{}/metrics", appliance.admin_addr),
            uploads = report.uploads,
            objects = report.objects,
            truncated = report.truncated,
            orphans_removed = report.orphans_removed,
            damaged = report.damaged.len(),
            "strongroom listening"
        );
        strongroom::shutdown::signal().await;
        tracing::info!("shutting down");
        appliance.stop().await;
        Ok(())
    })
}
