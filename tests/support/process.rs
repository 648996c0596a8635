//! The real `strongroom` binary as a child process on free loopback ports,
//! for tests that must SIGKILL it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `strongroom serve`; SIGKILLed when dropped.
pub struct Binary {
    pub child: Child,
    pub public: SocketAddr,
    pub admin: SocketAddr,
}

impl Binary {
    /// Starts `strongroom serve --config <config>` on ports the kernel picks
    /// (read back from its JSON "strongroom listening" line, so parallel
    /// tests never race for a port) with its output appended to `log`, and
    /// waits until `/readyz` answers 200 (recovery done).
    ///
    /// These tests are about other things than authentication (see
    /// tests/auth.rs): every request acts as tenant `default`.
    pub async fn serve(config: &Path, log: &Path, ready_within: Duration) -> Binary {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("server log");
        let stdout = out.try_clone().expect("log fd");
        Self::serve_with(config, &["--auth", "none"], &[], stdout, log, ready_within).await
    }

    /// Like `serve`, with `extra` arguments to `serve`, `env` added to its
    /// environment, stdout to `stdout` and the log (stderr) appended to `log`.
    pub async fn serve_with(
        config: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        stdout: std::fs::File,
        log: &Path,
        ready_within: Duration,
    ) -> Binary {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("server log");
        let log_start = out.metadata().expect("log metadata").len();
        let child = Command::new(env!("CARGO_BIN_EXE_strongroom"))
            .args(["--log-format", "json", "serve", "--config"])
            .arg(config)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(out)
            .spawn()
            .expect("start the strongroom binary");
        let mut binary = Binary {
            child,
            public: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let deadline = Instant::now() + ready_within;
        (binary.public, binary.admin) = loop {
            if let Some(addrs) = listening_addrs(log, log_start) {
                break addrs;
            }
            binary.check_alive(log, deadline);
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        binary.wait_ready(log, deadline).await;
        binary
    }

    /// Starts with authentication on (the config's default), stdout to the
    /// file `stdout`, and returns the admin API key the start printed there
    /// (only a first start prints one).
    pub async fn serve_with_tokens(
        config: &Path,
        env: &[(&str, &str)],
        stdout: &Path,
        log: &Path,
        ready_within: Duration,
    ) -> (Binary, Option<String>) {
        let file = std::fs::File::create(stdout).expect("stdout file");
        let binary = Self::serve_with(config, &[], env, file, log, ready_within).await;
        let shown = std::fs::read_to_string(stdout).expect("stdout readable");
        let key = shown
            .split_whitespace()
            .find(|word| word.starts_with("srk_"))
            .map(str::to_owned);
        (binary, key)
    }

    fn check_alive(&mut self, log: &Path, deadline: Instant) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "strongroom exited during start ({status}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if Instant::now() >= deadline {
            self.kill();
            panic!(
                "strongroom not ready in time:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    }

    async fn wait_ready(&mut self, log: &Path, deadline: Instant) {
        let url = format!("http://{}/readyz", self.admin);
        let http = reqwest::Client::new();
        loop {
            if let Ok(response) = http.get(&url).send().await
                && response.status() == 200
            {
                return;
            }
            self.check_alive(log, deadline);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.public)
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The (public, admin) addresses from the JSON "strongroom listening" line
/// written after `from` bytes of the log.
fn listening_addrs(log: &Path, from: u64) -> Option<(SocketAddr, SocketAddr)> {
    let text = std::fs::read(log).ok()?;
    let text = String::from_utf8_lossy(text.get(from as usize..)?);
    text.lines().find_map(|line| {
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        let fields = &value["fields"];
        (fields["message"] == "strongroom listening").then_some(())?;
        let public = fields["public"].as_str()?.parse().ok()?;
        let admin = fields["admin"].as_str()?.parse().ok()?;
        Some((public, admin))
    })
}

/// A config file in `dir` keeping the appliance's data in `dir/data`, every
/// other key at its default.
pub fn config_in(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("strongroom.toml");
    std::fs::write(
        &config,
        format!("[storage]\ndata_dir = {:?}\n", dir.join("data")),
    )
    .expect("config written");
    config
}
