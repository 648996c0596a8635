//! `strongroom policy check`: a policy validated exactly as the appliance
//! loads it, then every plugin's `.wasm` hashed and compared with its pin.
//! Reads files only; never compiles or runs a plugin.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bytesize::ByteSize;
use serde::Deserialize;
use strongroom::policy::{PluginPolicy, Policy};
use toml::Spanned;

use super::hash_file;

pub fn check(file: &Path) -> anyhow::Result<ExitCode> {
    // Its errors already read `policy FILE line N: message`.
    let policy = Policy::load(file)?;
    let lines = PinLines::read(file);

    let mut failed = 0;
    for plugin in policy.plugins.values() {
        match check_pin(plugin) {
            Ok(len) => println!(
                "plugin {}: {} ({}), pin ok",
                plugin.name,
                plugin.path.display(),
                ByteSize(len)
            ),
            Err(problem) => {
                failed += 1;
                let line = lines.line_for(&plugin.name, &problem);
                let at = line.map(|n| format!(" line {n}")).unwrap_or_default();
                eprintln!(
                    "error: policy {}{at}: plugin {}: {problem}",
                    file.display(),
                    plugin.name
                );
            }
        }
    }
    println!("chain (defaults): {}", Chain(&policy.defaults.chain));
    for (tenant, section) in &policy.tenants {
        println!("chain {tenant}: {}", Chain(&section.chain));
    }

    if failed > 0 {
        eprintln!(
            "error: policy {}: {failed} of {} plugins failed the pin check",
            file.display(),
            policy.plugins.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "policy {}: ok ({} plugins, {} tenant sections)",
        file.display(),
        policy.plugins.len(),
        policy.tenants.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Why a plugin's file does not satisfy its pin.
enum PinProblem {
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    Mismatch {
        path: PathBuf,
        actual: String,
        expected: String,
    },
}

impl fmt::Display for PinProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PinProblem::Unreadable { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            PinProblem::Mismatch {
                path,
                actual,
                expected,
            } => write!(
                f,
                "sha256 of {} is {actual}, but the policy pins {expected}",
                path.display()
            ),
        }
    }
}

/// Hashes the plugin's file; its length if the pin matches.
fn check_pin(plugin: &PluginPolicy) -> Result<u64, PinProblem> {
    let (sha256, len) = hash_file(&plugin.path).map_err(|source| PinProblem::Unreadable {
        path: plugin.path.clone(),
        source,
    })?;
    let actual = hex::encode(sha256);
    // `Policy` keeps pins lowercase.
    if actual != plugin.sha256 {
        return Err(PinProblem::Mismatch {
            path: plugin.path.clone(),
            actual,
            expected: plugin.sha256.clone(),
        });
    }
    Ok(len)
}

/// `a -> b -> c`, in the order the plugins see the bytes.
struct Chain<'a>(&'a [String]);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no plugins (uploads commit uninspected)");
        }
        f.write_str(&self.0.join(" -> "))
    }
}

/// Where each plugin's `path` and `sha256` are written, so a pin problem
/// points at its line. `Policy` drops spans once validated, so the text is
/// read again for just these two keys; if that fails, messages go without
/// a line.
struct PinLines {
    text: String,
    plugins: BTreeMap<String, PluginSpans>,
}

#[derive(Deserialize)]
struct Spans {
    #[serde(default)]
    plugins: BTreeMap<String, PluginSpans>,
}

#[derive(Deserialize)]
struct PluginSpans {
    path: Spanned<String>,
    sha256: Spanned<String>,
}

impl PinLines {
    fn read(file: &Path) -> PinLines {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let plugins = toml::from_str::<Spans>(&text)
            .map(|spans| spans.plugins)
            .unwrap_or_default();
        PinLines { text, plugins }
    }

    fn line_for(&self, plugin: &str, problem: &PinProblem) -> Option<usize> {
        let spans = self.plugins.get(plugin)?;
        let offset = match problem {
            PinProblem::Unreadable { .. } => spans.path.span().start,
            PinProblem::Mismatch { .. } => spans.sha256.span().start,
        };
        let before = self.text.get(..offset)?;
        Some(before.bytes().filter(|&b| b == b'\n').count() + 1)
    }
}
