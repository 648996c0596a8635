//! `strongroom audit export` and `strongroom audit verify`: a signed snapshot
//! of the audit log out of a data dir, and its offline check with nothing but
//! the verifier key. Neither writes to the data dir.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use strongroom::audit::{self, VerifierKey};
use strongroom::cli::AuditCommand;

/// Exit status of `audit verify` when the log was tampered with (1 is left
/// to errors that stopped the check itself).
const TAMPERED: u8 = 2;

pub fn run(command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Export { data_dir, out } => export(&data_dir, &out),
        AuditCommand::Verify { dir, key } => verify(&dir, &key),
    }
}

fn export(data_dir: &Path, out: &Path) -> anyhow::Result<ExitCode> {
    let audit_dir = audit::dir(data_dir);
    let exported = audit::export(&audit_dir, out)
        .with_context(|| format!("exporting the audit log in {}", audit_dir.display()))?;
    println!(
        "exported {} records and {} checkpoints to {}",
        exported.records,
        exported.checkpoints,
        out.display()
    );
    println!(
        "latest checkpoint: tree size {}, root {}",
        exported.latest.size(),
        BASE64.encode(exported.latest.root())
    );
    if exported.unsigned > 0 {
        println!(
            "left out {} newer records no checkpoint signs yet (the appliance signs them \
             within a second; export again to include them)",
            exported.unsigned
        );
    }
    println!(
        "verify with: strongroom audit verify {} --key <audit.pub obtained from the appliance>",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn verify(dir: &Path, key: &str) -> anyhow::Result<ExitCode> {
    let key = read_key(key)?;
    let verified = audit::verify(dir, &key)
        .with_context(|| format!("verifying the audit log in {}", dir.display()))?;
    if let Some(tampered) = &verified.tampered {
        println!("audit log {}: TAMPERED", dir.display());
        println!("{tampered}");
        println!(
            "before it: {} records in order, {} checkpoints signed by {} and consistent",
            tampered.index,
            verified.checkpoints,
            key.id()
        );
        return Ok(ExitCode::from(TAMPERED));
    }
    let latest = verified
        .latest
        .as_ref()
        .context("a clean verification has a checkpoint")?;
    println!(
        "audit log {}: ok: {} records, {} checkpoints signed by {}, each consistent with the last",
        dir.display(),
        verified.records,
        verified.checkpoints,
        key.id()
    );
    println!(
        "latest checkpoint: tree size {}, root {}",
        latest.size(),
        BASE64.encode(latest.root())
    );
    Ok(ExitCode::SUCCESS)
}

/// The key as given on the command line, or the contents of that file.
fn read_key(arg: &str) -> anyhow::Result<VerifierKey> {
    if let Ok(key) = arg.parse() {
        return Ok(key);
    }
    let text = std::fs::read_to_string(arg)
        .with_context(|| format!("--key {arg}: neither a verifier key nor a readable file"))?;
    text.parse()
        .with_context(|| format!("--key {arg}: the file does not hold a verifier key"))
}
