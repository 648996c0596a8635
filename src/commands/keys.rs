//! `strongroom keys rotate` and `strongroom keys list`: key-encryption key
//! versions of a data dir no server is using, with the key provider its
//! config names. Rotation re-wraps data keys in the index and never touches
//! data files.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use strongroom::appliance::open_key_provider;
use strongroom::cli::{KeysAt, KeysCommand};
use strongroom::config::Config;
use strongroom::ingest::{Ingest, KeyListing, RotationReport};

/// Exit status of `keys rotate` when some data keys did not unwrap and were
/// left as they were (1 is left to errors that stopped the rotation).
const LEFT_UNREADABLE: u8 = 2;

pub fn run(command: KeysCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Rotate { at, tenant, json } => {
            let report = runtime()?.block_on(async {
                let ingest = open(&at)?;
                ingest
                    .rotate_keys(tenant.as_deref())
                    .await
                    .context("rotating keys")
            })?;
            print_rotation(&report, json);
            if report.unreadable() > 0 {
                return Ok(ExitCode::from(LEFT_UNREADABLE));
            }
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::List { at, json } => {
            let listing = runtime()?.block_on(async {
                let ingest = open(&at)?;
                ingest.key_listing().await.context("listing keys")
            })?;
            print_listing(&listing, json);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Opens the data dir with the key provider of its config (key files in
/// `<data_dir>/keys` without one). Checks the data dir first, so a wrong
/// path never gets a `keys/` directory created in it.
fn open(at: &KeysAt) -> anyhow::Result<Arc<Ingest>> {
    let mut config = match &at.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(dir) = &at.data_dir {
        config.storage.data_dir = dir.clone();
    }
    let data_dir: PathBuf = config.storage.data_dir.clone();
    if !data_dir.join("index").is_dir() {
        bail!(
            "{} is not a strongroom data dir (no index/)",
            data_dir.display()
        );
    }
    let keys = open_key_provider(&config.keys, &data_dir)
        .with_context(|| format!("opening the key provider of {}", data_dir.display()))?;
    Ok(Ingest::open_offline_with(&data_dir, keys)?)
}

fn print_rotation(report: &RotationReport, json: bool) {
    if json {
        println!("{}", report.to_json());
        return;
    }
    for tenant in &report.tenants {
        let retired: Vec<&str> = tenant.retired.iter().map(|id| id.as_str()).collect();
        println!(
            "tenant {}: current {}{}, {} re-wrapped, retired [{}]{}",
            tenant.tenant,
            tenant.current,
            if tenant.resumed {
                " (finishing an interrupted rotation)"
            } else {
                " (new)"
            },
            tenant.rewrapped,
            retired.join(", "),
            if tenant.unreadable > 0 {
                format!(", {} do not unwrap (left as they are)", tenant.unreadable)
            } else {
                String::new()
            }
        );
    }
    println!(
        "rotate: {} tenants, {} data keys re-wrapped, {} versions retired",
        report.tenants.len(),
        report.rewrapped(),
        report.retired()
    );
}

fn print_listing(listing: &KeyListing, json: bool) {
    if json {
        println!("{}", listing.to_json());
        return;
    }
    println!("provider: {}", listing.provider);
    println!(
        "{:<20} {:<40} {:<8} {:>8} {:>8}",
        "TENANT", "KEY", "STATE", "OBJECTS", "UPLOADS"
    );
    for key in &listing.keys {
        let state = match (key.present, key.current) {
            (false, _) => "MISSING",
            (true, true) => "current",
            (true, false) => "old",
        };
        println!(
            "{:<20} {:<40} {:<8} {:>8} {:>8}",
            key.tenant,
            key.id.as_str(),
            state,
            key.objects,
            key.uploads
        );
    }
    let missing = listing.records_under_missing_keys();
    if missing > 0 {
        println!("{missing} records name a key the provider does not hold: they cannot be read");
    }
}
