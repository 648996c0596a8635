//! `strongroom verify FILE MANIFEST --key KEY`: checks a file against its
//! signed manifest with nothing but the manifest key, offline. The
//! signature is checked first, then the file's size and SHA-256, read in
//! fixed-size pieces so memory stays the same whatever the file's size.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use strongroom::store::manifest::{PublicKey, SignedManifest};

/// Exit status for a file that does not match, or a manifest that is not
/// genuine (1 is left to errors that stopped the check itself).
const MISMATCH: u8 = 2;

/// The largest manifest read: real ones are a few KiB.
const MAX_MANIFEST: u64 = 1 << 20;

pub fn run(file: &Path, manifest_path: &Path, key: &str) -> anyhow::Result<ExitCode> {
    let key = read_manifest_key("--key", key)?;
    let document = read_bounded(manifest_path)?;
    let manifest = match SignedManifest::open(&document, &key) {
        Ok(manifest) => manifest,
        Err(err) => {
            println!("manifest {}: FORGED: {err}", manifest_path.display());
            return Ok(ExitCode::from(MISMATCH));
        }
    };
    let (sha256, size) =
        super::hash_file(file).with_context(|| format!("reading {}", file.display()))?;
    let sha256 = hex::encode(sha256);
    let mut mismatches = Vec::new();
    if size != manifest.size {
        mismatches.push(format!(
            "the file is {size} bytes, the manifest says {}",
            manifest.size
        ));
    }
    if sha256 != manifest.sha256 {
        mismatches.push(format!(
            "the file's SHA-256 is {sha256}, the manifest says {}",
            manifest.sha256
        ));
    }
    if !mismatches.is_empty() {
        println!(
            "{}: MISMATCH with the manifest of object {}: {}",
            file.display(),
            manifest.object,
            mismatches.join("; ")
        );
        return Ok(ExitCode::from(MISMATCH));
    }
    println!(
        "{}: ok: object {} of tenant {}, {} bytes, sha256 {}, signed by manifest key {}",
        file.display(),
        manifest.object,
        manifest.tenant,
        manifest.size,
        manifest.sha256,
        key.id()
    );
    let audit = manifest
        .audit_index
        .map_or_else(|| "none".to_owned(), |index| index.to_string());
    println!(
        "disposition {}, commit audit record {audit}, committed at {}",
        manifest.disposition,
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(manifest.committed_at)
        )
    );
    Ok(ExitCode::SUCCESS)
}

/// The manifest key given as `option` on the command line: the key itself,
/// or the name of a file holding it.
pub fn read_manifest_key(option: &str, arg: &str) -> anyhow::Result<PublicKey> {
    if let Ok(key) = PublicKey::parse(arg) {
        return Ok(key);
    }
    let text = std::fs::read_to_string(arg)
        .with_context(|| format!("{option} {arg}: neither a manifest key nor a readable file"))?;
    PublicKey::parse(&text)
        .with_context(|| format!("{option} {arg}: the file holds no manifest key"))
}

fn read_bounded(path: &Path) -> anyhow::Result<Vec<u8>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("reading the manifest {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading the manifest {}", path.display()))?;
    if bytes.len() as u64 > MAX_MANIFEST {
        anyhow::bail!(
            "the manifest {} is over {MAX_MANIFEST} bytes: not a manifest",
            path.display()
        );
    }
    Ok(bytes)
}
