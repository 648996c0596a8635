//! `strongroom download ID|URL [-o FILE]`: fetches an object into
//! FILE.part through `strongroom::client::download` (continuing an existing
//! one), checks it against the object's signed manifest, and only then
//! renames it to FILE. A file that does not verify is never produced: its
//! .part stays for inspection. Chooses the exit status (see --help).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use strongroom::cli::DownloadArgs;
use strongroom::client::download::{self, Fetched, Target};
use strongroom::client::{Client, Error};
use strongroom::store::manifest::{Manifest, PublicKey};

use super::{Bar, EXIT_AUTH};

/// The bytes or the manifest did not verify.
const EXIT_VERIFICATION: u8 = 2;
const EXIT_QUARANTINED: u8 = 4;
const EXIT_PENDING: u8 = 5;

/// Where the manifest key came from, which the output states.
#[derive(Debug, Clone, Copy)]
enum KeySource {
    /// Given with --manifest-key: obtained out of band.
    Pinned,
    /// Fetched from the server the object came from.
    Fetched,
}

/// A verified download.
struct Done {
    output: PathBuf,
    manifest: Manifest,
    fetched: Fetched,
    key_id: String,
    key_source: KeySource,
}

pub fn run(args: DownloadArgs) -> anyhow::Result<ExitCode> {
    let client = super::connect(&args.client, args.retries)?;
    let pinned = args
        .manifest_key
        .as_deref()
        .map(|arg| super::verify::read_manifest_key("--manifest-key", arg))
        .transpose()?;
    let runtime = super::runtime()?;
    let result = runtime.block_on(async {
        tokio::select! {
            done = download(&client, &args, pinned) => done,
            _ = tokio::signal::ctrl_c() => Err(Error::Task(
                "interrupted; the .part file is kept and a rerun continues it".into(),
            )),
        }
    });
    match result {
        Ok(done) => {
            report(&done, &args);
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => Ok(ExitCode::from(failed(&err, &args))),
    }
}

async fn download(
    client: &Client,
    args: &DownloadArgs,
    pinned: Option<PublicKey>,
) -> Result<Done, Error> {
    let target = Target::parse(client, &args.object)?;
    let info = download::inspect(client, &target).await?;
    let output = output_path(args, &info.filename, &target).await?;
    // The manifest is checked before any byte is fetched: a forged one
    // stops the download before it starts.
    let document = download::manifest(client, &target).await?;
    let (key, key_source) = match pinned {
        Some(key) => (key, KeySource::Pinned),
        None => (download::published_key(client).await?, KeySource::Fetched),
    };
    let manifest = download::open_manifest(&document, &key, target.id)?;
    let part = part_path(&output);
    let bar = Bar::new(info.length, &target.id.short(), &args.client);
    let fetched = download::fetch(client, &target, &info, &part, &|done| bar.set(done)).await;
    bar.finish();
    let fetched = fetched?;
    download::check(&manifest, &fetched)?;
    tokio::fs::rename(&part, &output)
        .await
        .map_err(|source| Error::Io {
            path: output.clone(),
            source,
        })?;
    Ok(Done {
        output,
        manifest,
        fetched,
        key_id: key.id(),
        key_source,
    })
}

/// -o, else the server's name for it (already made harmless), else the id;
/// refuses to replace an existing file without --force.
async fn output_path(
    args: &DownloadArgs,
    server_name: &Option<String>,
    target: &Target,
) -> Result<PathBuf, Error> {
    let output = match (&args.output, server_name) {
        (Some(path), _) => path.clone(),
        (None, Some(name)) => PathBuf::from(name),
        (None, None) => PathBuf::from(target.id.to_string()),
    };
    let exists = tokio::fs::try_exists(&output).await.unwrap_or(false);
    if exists && !args.force {
        return Err(Error::Io {
            path: output,
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "already exists (give --force to replace it, or -o another name)",
            ),
        });
    }
    Ok(output)
}

fn part_path(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

fn report(done: &Done, args: &DownloadArgs) {
    let manifest = &done.manifest;
    let key = match done.key_source {
        KeySource::Pinned => "pinned",
        KeySource::Fetched => "fetched",
    };
    if args.client.json {
        let line = serde_json::json!({
            "file": done.output,
            "id": manifest.object.to_string(),
            "size": done.fetched.size,
            "sha256": hex::encode(done.fetched.sha256),
            "disposition": manifest.disposition,
            "resumed_from": done.fetched.resumed_from,
            "key_id": done.key_id,
            "key": key,
            "provenance": manifest.provenance.as_ref().map(provenance_summary),
            "exit": 0,
        });
        println!("{line}");
        return;
    }
    if args.client.quiet {
        return;
    }
    let resumed = match done.fetched.resumed_from {
        0 => String::new(),
        from => format!(" (continued from byte {from})"),
    };
    println!(
        "{}: {} bytes{resumed}, sha256 {}: object {} verified against its manifest",
        done.output.display(),
        done.fetched.size,
        hex::encode(done.fetched.sha256),
        manifest.object,
    );
    match done.key_source {
        KeySource::Pinned => println!("manifest signed by the pinned key {}", done.key_id),
        KeySource::Fetched => println!(
            "manifest signed by key {}, FETCHED from the server, not pinned: this proves \
             the bytes are what that server signed; pin the key with --manifest-key",
            done.key_id
        ),
    }
    if let Some(provenance) = &manifest.provenance {
        println!("provenance {}", provenance_summary(provenance));
    }
}

/// The provenance plugin's own word (its `provenance` label: verified,
/// invalid, unsigned...) and signer, else its verdict.
fn provenance_summary(provenance: &strongroom::store::manifest::Provenance) -> String {
    let word = provenance
        .labels
        .get("provenance")
        .unwrap_or(&provenance.verdict);
    match provenance.labels.get("provenance-signer") {
        Some(signer) => format!("{word}, signer {signer}"),
        None => word.clone(),
    }
}

/// Prints the failure and picks the exit status.
fn failed(err: &Error, args: &DownloadArgs) -> u8 {
    let (code, message) = match err {
        Error::Verification(detail) => (
            EXIT_VERIFICATION,
            format!("VERIFICATION FAILED: {detail}; the file was not produced"),
        ),
        _ if err.code() == Some("object_quarantined") => (
            EXIT_QUARANTINED,
            format!("the object is quarantined: it is held for an admin ({err})"),
        ),
        _ if err.code() == Some("verdict_pending") => (
            EXIT_PENDING,
            format!("the object's verdict is still pending; try again later ({err})"),
        ),
        _ if err.is_auth() => (
            EXIT_AUTH,
            format!(
                "authentication refused: {err} (give --api-key-file, --api-key, or a \
                 --token with object:read:<id>)"
            ),
        ),
        _ => (1, err.to_string()),
    };
    if args.client.json {
        let line = serde_json::json!({
            "id": args.object,
            "error": message,
            "exit": code,
        });
        println!("{line}");
    } else {
        eprintln!("error: {}: {message}", args.object);
    }
    code
}
