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
    /// Starts `strongroom serve --config <config>` with its output appended
    /// to `log`, and waits until `/readyz` answers 200 (recovery done).
    pub async fn serve(config: &Path, log: &Path, ready_within: Duration) -> Binary {
        let public = free_addr();
        let admin = free_addr();
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("server log");
        let child = Command::new(env!("CARGO_BIN_EXE_strongroom"))
            .arg("serve")
            .arg("--config")
            .arg(config)
            .arg("--listen")
            .arg(public.to_string())
            .arg("--admin-listen")
            .arg(admin.to_string())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log fd"))
            .stderr(out)
            .spawn()
            .expect("start the strongroom binary");
        let mut binary = Binary {
            child,
            public,
            admin,
        };
        binary.wait_ready(log, ready_within).await;
        binary
    }

    async fn wait_ready(&mut self, log: &Path, within: Duration) {
        let deadline = Instant::now() + within;
        let url = format!("http://{}/readyz", self.admin);
        let http = reqwest::Client::new();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "strongroom exited during start ({status}):\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            if let Ok(response) = http.get(&url).send().await
                && response.status() == 200
            {
                return;
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "{url} not ready within {within:?}:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
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

/// A loopback address nothing listens on (at the moment of asking).
pub fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr")
}
