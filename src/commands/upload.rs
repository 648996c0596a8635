//! `strongroom upload FILE...`: uploads files one after the other through
//! `strongroom::client::upload`, shows a progress bar, and prints one line
//! (or one JSON object) per file saying what became of it. Chooses the exit
//! status: the most severe of the files' (1, 6, 7, 3, 4, 5, 0).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use strongroom::cli::UploadArgs;
use strongroom::client::state::{Key, Store};
use strongroom::client::upload::{self, Outcome, Settings, Source, Uploaded};
use strongroom::client::{Client, Error};
use strongroom::crypto::provenance::ProvenanceKey;

use super::{Bar, EXIT_AUTH};

/// What became of one file, from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    Released,
    Pending,
    Quarantined,
    Rejected,
    Incomplete,
    Refused,
    Failed,
}

impl Verdict {
    fn exit_code(self) -> u8 {
        match self {
            Verdict::Released => 0,
            Verdict::Failed => 1,
            Verdict::Rejected => 3,
            Verdict::Quarantined => 4,
            Verdict::Pending => 5,
            Verdict::Refused => EXIT_AUTH,
            Verdict::Incomplete => 7,
        }
    }

    /// The `disposition` member of the JSON line.
    fn label(self) -> &'static str {
        match self {
            Verdict::Released => "released",
            Verdict::Pending => "pending",
            Verdict::Quarantined => "quarantined",
            Verdict::Rejected => "rejected",
            Verdict::Incomplete => "incomplete",
            Verdict::Refused => "unauthorized",
            Verdict::Failed => "error",
        }
    }
}

/// One file's line.
#[derive(Debug)]
struct Report {
    file: PathBuf,
    verdict: Verdict,
    id: Option<String>,
    url: Option<String>,
    size: Option<u64>,
    sha256: Option<String>,
    reason: Option<String>,
    /// The line for a human.
    message: String,
}

pub fn run(args: UploadArgs) -> anyhow::Result<ExitCode> {
    let client = super::connect(&args.client, args.retries)?;
    let store = Store::new(state_path(args.state.as_deref())?);
    let signer = match (&args.sign, &args.signer) {
        (Some(path), Some(id)) => Some(Signer {
            key: ProvenanceKey::load(path).with_context(|| format!("--sign {}", path.display()))?,
            id: id.clone(),
        }),
        _ => None,
    };
    let runtime = super::runtime()?;
    let mut worst = Verdict::Released;
    for file in &args.files {
        let job = Job {
            client: &client,
            store: &store,
            args: &args,
            signer: signer.as_ref(),
            file,
        };
        let report = runtime.block_on(job.run_interruptible());
        print(&report, &args);
        worst = worst.max(report.verdict);
        if report.verdict == Verdict::Incomplete && report.reason.as_deref() == Some(INTERRUPTED) {
            break;
        }
    }
    Ok(ExitCode::from(worst.exit_code()))
}

/// The state file: --state, else the default place.
pub fn state_path(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    match given {
        Some(path) => Ok(path.to_path_buf()),
        None => strongroom::client::state::default_path()
            .context("no state file: set XDG_STATE_HOME or HOME, or give --state FILE"),
    }
}

/// The reason recorded when the user stops the command.
const INTERRUPTED: &str = "interrupted";

struct Signer {
    key: ProvenanceKey,
    id: String,
}

struct Job<'a> {
    client: &'a Client,
    store: &'a Store,
    args: &'a UploadArgs,
    signer: Option<&'a Signer>,
    file: &'a Path,
}

impl Job<'_> {
    /// Stops at Ctrl-C: what the server acknowledged is in the state file,
    /// so a rerun continues from there.
    async fn run_interruptible(&self) -> Report {
        tokio::select! {
            report = self.run() => report,
            _ = tokio::signal::ctrl_c() => self.report(Verdict::Incomplete, INTERRUPTED,
                format!("{}: interrupted; run the same command again to continue", self.file.display())),
        }
    }

    async fn run(&self) -> Report {
        let server = self.client.base().to_string();
        let file = self.file.to_path_buf();
        let opened = tokio::task::spawn_blocking(move || {
            Key::of_file(&server, &file).and_then(|key| {
                Source::open(key.clone())
                    .map(|source| (key, source))
                    .map_err(std::io::Error::other)
            })
        })
        .await;
        let (key, source) = match opened {
            Ok(Ok(opened)) => opened,
            Ok(Err(err)) => {
                let message = format!("{}: cannot upload it: {err}", self.file.display());
                return self.report(Verdict::Failed, &err.to_string(), message);
            }
            Err(err) => return self.report(Verdict::Failed, &err.to_string(), err.to_string()),
        };
        let hashing = {
            let path = key.path.clone();
            tokio::task::spawn_blocking(move || super::hash_file(&path))
        };
        self.send(&key, &source, hashing).await
    }

    async fn send(
        &self,
        key: &Key,
        source: &Source,
        hashing: tokio::task::JoinHandle<std::io::Result<([u8; 32], u64)>>,
    ) -> Report {
        let mut metadata = self.metadata(key);
        // The file's SHA-256: computed while the upload runs (a separate
        // read on a blocking thread), or first when it is to be signed.
        let mut digest = None;
        let mut hashing = Some(hashing);
        if let Some(signer) = self.signer {
            let handle = hashing.take().expect("not awaited yet");
            let sha256 = match handle.await {
                Ok(Ok((sha256, _))) => sha256,
                Ok(Err(err)) => return self.failed_to_read(&err),
                Err(err) => return self.report(Verdict::Failed, &err.to_string(), err.to_string()),
            };
            metadata.push((
                "signature".into(),
                signer.key.sign_statement(&sha256, key.size),
            ));
            metadata.push(("signer".into(), signer.id.clone()));
            digest = Some(sha256);
        }
        let settings = Settings {
            chunk_size: self.args.chunk_size,
            parallel: usize::from(self.args.parallel),
            parallel_threshold: self.args.parallel_threshold.as_u64(),
            metadata,
        };
        let bar = Bar::new(key.size, &display_name(self.file), &self.args.client);
        let result = upload::upload(self.client, self.store, source, &settings, &|done| {
            bar.set(done)
        })
        .await;
        bar.finish();
        let sha256 = match (digest, hashing) {
            (Some(sha256), _) => Some(hex::encode(sha256)),
            // Only for the report (a failure to hash is not the upload's);
            // after a failed upload, not worth waiting for.
            (None, Some(handle)) if result.is_ok() || handle.is_finished() => match handle.await {
                Ok(Ok((sha256, _))) => Some(hex::encode(sha256)),
                _ => None,
            },
            _ => None,
        };
        match result {
            Ok(uploaded) => self.settled(key.size, sha256, uploaded),
            Err(err) => self.error(err),
        }
    }

    /// `filename` and `filetype` from the file, unless --meta gives them,
    /// then every --meta pair.
    fn metadata(&self, key: &Key) -> Vec<(String, String)> {
        let given = |name: &str| self.args.meta.iter().any(|(k, _)| k == name);
        let mut metadata = Vec::new();
        if !given("filename") {
            metadata.push(("filename".into(), display_name(&key.path)));
        }
        if !given("filetype")
            && let Some(filetype) = guess_type(&key.path)
        {
            metadata.push(("filetype".into(), filetype.into()));
        }
        metadata.extend(self.args.meta.iter().cloned());
        metadata
    }

    fn settled(&self, size: u64, sha256: Option<String>, uploaded: Uploaded) -> Report {
        let name = self.file.display();
        let id = &uploaded.id;
        let resumed = match uploaded.resumed_from {
            0 => String::new(),
            from => format!(" (continued from byte {from})"),
        };
        let (verdict, reason, message) = match &uploaded.outcome {
            Outcome::Released => (
                Verdict::Released,
                None,
                format!("{name}: uploaded {size} bytes{resumed}: object {id}, released"),
            ),
            Outcome::Pending { reason } => (
                Verdict::Pending,
                reason.clone(),
                format!(
                    "{name}: uploaded {size} bytes{resumed}: object {id}, verdict pending{}; \
                     check later with `strongroom status {id}`",
                    because(reason)
                ),
            ),
            Outcome::Quarantined { reason } => (
                Verdict::Quarantined,
                reason.clone(),
                format!(
                    "{name}: QUARANTINED: object {id} is stored but held for an admin{}",
                    because(reason)
                ),
            ),
            Outcome::Rejected {
                plugin,
                rule,
                reason,
                detail,
            } => {
                let plugin = plugin.as_deref().unwrap_or("an inspection plugin");
                let rule = rule.as_deref().unwrap_or("unnamed");
                let why = reason.clone().or_else(|| detail.clone());
                (
                    Verdict::Rejected,
                    Some(format!("{plugin}/{rule}: {}", why.as_deref().unwrap_or(""))),
                    format!(
                        "{name}: REJECTED by plugin {plugin} (rule {rule}){}; the upload was destroyed",
                        because(&why)
                    ),
                )
            }
        };
        Report {
            file: self.file.to_path_buf(),
            verdict,
            id: Some(uploaded.id.clone()),
            url: Some(uploaded.url),
            size: Some(size),
            sha256,
            reason,
            message,
        }
    }

    fn error(&self, err: Error) -> Report {
        let name = self.file.display();
        if err.is_auth() {
            let message = format!(
                "{name}: authentication refused: {err} (give --api-key-file, --api-key or \
                 --token with the upload:create scope)"
            );
            return self.report(Verdict::Refused, &err.to_string(), message);
        }
        if let Error::Incomplete { .. } = &err {
            let message =
                format!("{name}: incomplete: {err}; run the same command again to continue");
            return self.report(Verdict::Incomplete, &err.to_string(), message);
        }
        self.report(Verdict::Failed, &err.to_string(), format!("{name}: {err}"))
    }

    fn failed_to_read(&self, err: &std::io::Error) -> Report {
        let message = format!("{}: reading it failed: {err}", self.file.display());
        self.report(Verdict::Failed, &err.to_string(), message)
    }

    fn report(&self, verdict: Verdict, reason: &str, message: String) -> Report {
        Report {
            file: self.file.to_path_buf(),
            verdict,
            id: None,
            url: None,
            size: None,
            sha256: None,
            reason: Some(reason.to_owned()),
            message,
        }
    }
}

fn because(reason: &Option<String>) -> String {
    reason
        .as_deref()
        .filter(|r| !r.is_empty())
        .map(|r| format!(": {r}"))
        .unwrap_or_default()
}

/// Human lines go to stdout for settled files and to stderr for failures;
/// --quiet keeps only what is not a clean release; --json prints one
/// object per file on stdout and nothing else.
fn print(report: &Report, args: &UploadArgs) {
    if args.client.json {
        let line = serde_json::json!({
            "file": report.file,
            "id": report.id,
            "url": report.url,
            "size": report.size,
            "sha256": report.sha256,
            "disposition": report.verdict.label(),
            "reason": report.reason,
            "exit": report.verdict.exit_code(),
        });
        println!("{line}");
        return;
    }
    match report.verdict {
        Verdict::Released if args.client.quiet => {}
        Verdict::Released | Verdict::Pending | Verdict::Quarantined | Verdict::Rejected
            if !args.client.quiet =>
        {
            println!("{}", report.message);
        }
        _ => eprintln!("{}", report.message),
    }
}

fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// The declared content type, from the extension. Only a hint: the
/// appliance decides types by content, and a mismatch is a finding.
fn guess_type(path: &Path) -> Option<&'static str> {
    let extension = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match extension.as_str() {
        "txt" | "log" | "md" => "text/plain",
        "csv" => "text/csv",
        "json" => "application/json",
        "xml" => "application/xml",
        "html" | "htm" => "text/html",
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        "tar" => "application/x-tar",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_severe_file_decides_the_exit_status() {
        let order = [
            Verdict::Released,
            Verdict::Pending,
            Verdict::Quarantined,
            Verdict::Rejected,
            Verdict::Incomplete,
            Verdict::Refused,
            Verdict::Failed,
        ];
        let codes: Vec<u8> = order.iter().map(|v| v.exit_code()).collect();
        assert_eq!(codes, [0, 5, 4, 3, 7, 6, 1]);
        assert_eq!(Verdict::Pending.max(Verdict::Rejected), Verdict::Rejected);
    }

    #[test]
    fn types_come_from_the_extension_only() {
        assert_eq!(guess_type(Path::new("a/x.PDF")), Some("application/pdf"));
        assert_eq!(guess_type(Path::new("x.unknown")), None);
        assert_eq!(guess_type(Path::new("noext")), None);
    }
}
