//! Test support: a real appliance on 127.0.0.1:0 and a small tus client that
//! reads like the protocol.

#![allow(dead_code)]

pub mod feed;
pub mod ops;
pub mod process;
pub mod raw;
pub mod simdisk;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use strongroom::appliance::Appliance;
use strongroom::config::Config;
use strongroom::disk::{Disk, OsDisk};

pub const TUS: (&str, &str) = ("Tus-Resumable", "1.0.0");
pub const OCTETS: (&str, &str) = ("Content-Type", "application/offset+octet-stream");

/// A running appliance with its own data directory.
pub struct TestServer {
    pub appliance: Option<Appliance>,
    pub disk: Arc<dyn Disk>,
    pub config: Config,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    /// The admin API key the first start printed (token mode only).
    pub admin_key: Option<String>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts with the test defaults, adjusted by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        Self::start_on_disk(Arc::new(OsDisk), tweak).await
    }

    /// Starts with every staging file operation going through `disk`.
    pub async fn start_on_disk(disk: Arc<dyn Disk>, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::default();
        config.storage.data_dir = dir.path().join("data");
        config.server.shutdown_grace = Duration::from_secs(2);
        // Most tests are about other things than authentication (tests/auth.rs
        // is): every request acts as tenant `default` unless `tweak` turns
        // tokens back on.
        config.auth.mode = strongroom::config::AuthMode::None;
        tweak(&mut config);
        let mut server = TestServer {
            appliance: None,
            disk,
            config,
            dir,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("http client"),
            admin_key: None,
        };
        server.boot().await;
        server
    }

    async fn boot(&mut self) {
        let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let appliance = Appliance::start_on(self.config.clone(), public, admin, self.disk.clone())
            .await
            .expect("appliance starts");
        if let Some(key) = &appliance.first_admin_key {
            self.admin_key = Some(key.secret.clone());
        }
        self.appliance = Some(appliance);
    }

    /// Stops the appliance gracefully and starts it again on the same data.
    pub async fn restart(&mut self) {
        if let Some(appliance) = self.appliance.take() {
            appliance.stop().await;
        }
        self.boot().await;
    }

    pub fn appliance(&self) -> &Appliance {
        self.appliance.as_ref().expect("running")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.config.storage.data_dir.clone()
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.appliance().public_addr)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.appliance().admin_addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// Sends a request with the given headers and body.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> Reply {
        let mut request = self.http.request(
            Method::from_bytes(method.as_bytes()).unwrap(),
            self.url(path),
        );
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.body(body).send().await.expect("request sent");
        Reply::read(response).await
    }

    /// POST /files/ with a known length; returns the upload.
    pub async fn create(&self, length: u64) -> Upload<'_> {
        self.create_with(&[("Upload-Length", &length.to_string())])
            .await
    }

    pub async fn create_with(&self, headers: &[(&str, &str)]) -> Upload<'_> {
        let mut all = vec![TUS];
        all.extend_from_slice(headers);
        let reply = self.send("POST", "/files/", &all, Vec::new()).await;
        reply.assert_status(201);
        let location = reply
            .header("location")
            .expect("Location on 201")
            .to_owned();
        Upload {
            server: self,
            path: location,
        }
    }

    /// Uploads `data` in one PATCH after creating; returns the committed upload.
    pub async fn upload(&self, data: &[u8]) -> Upload<'_> {
        let up = self.create(data.len() as u64).await;
        up.patch(0, data).await.assert_offset(data.len() as u64);
        up
    }

    /// Starts with authentication on (`auth.mode = "tokens"`), adjusted by
    /// `tweak`.
    pub async fn start_with_tokens(tweak: impl FnOnce(&mut Config)) -> TestServer {
        Self::start_with(|config| {
            config.auth.mode = strongroom::config::AuthMode::Tokens;
            tweak(config);
        })
        .await
    }

    /// Exchanges `api_key` for a token with `scopes` at POST /auth/token.
    pub async fn token(&self, api_key: &str, scopes: &[&str]) -> String {
        let body = serde_json::json!({ "scopes": scopes }).to_string();
        let reply = self
            .send(
                "POST",
                "/auth/token",
                &[("Authorization", &format!("Bearer {api_key}"))],
                body,
            )
            .await;
        reply.assert_status(200);
        reply.json()["token"]
            .as_str()
            .expect("token in the answer")
            .to_owned()
    }

    /// A token from the first start's admin key.
    pub async fn admin_token(&self, scopes: &[&str]) -> String {
        let key = self.admin_key.clone().expect("started with tokens");
        self.token(&key, scopes).await
    }

    pub async fn census(&self) -> strongroom::ingest::Census {
        self.appliance().ingest.census().await.expect("census")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(appliance) = self.appliance.take() {
            // Listeners stop with the runtime; nothing else to flush.
            drop(appliance);
        }
    }
}

/// An upload resource on a test server.
pub struct Upload<'a> {
    pub server: &'a TestServer,
    /// Path of the upload URL, e.g. `/files/<id>`.
    pub path: String,
}

impl Upload<'_> {
    pub fn id(&self) -> &str {
        self.path.rsplit('/').next().unwrap()
    }

    pub async fn patch(&self, offset: u64, data: &[u8]) -> Reply {
        self.patch_with(offset, data, &[]).await
    }

    pub async fn patch_with(&self, offset: u64, data: &[u8], extra: &[(&str, &str)]) -> Reply {
        let offset = offset.to_string();
        let mut headers = vec![TUS, OCTETS, ("Upload-Offset", offset.as_str())];
        headers.extend_from_slice(extra);
        self.server
            .send("PATCH", &self.path, &headers, data.to_vec())
            .await
    }

    pub async fn head(&self) -> Reply {
        self.server
            .send("HEAD", &self.path, &[TUS], Vec::new())
            .await
    }

    pub async fn delete(&self) -> Reply {
        self.server
            .send("DELETE", &self.path, &[TUS], Vec::new())
            .await
    }

    pub async fn get(&self) -> Reply {
        self.server.send("GET", &self.path, &[], Vec::new()).await
    }

    pub async fn get_range(&self, range: &str) -> Reply {
        self.server
            .send("GET", &self.path, &[("Range", range)], Vec::new())
            .await
    }

    pub fn object_path(&self) -> String {
        format!("/objects/{}", self.id())
    }
}

/// A response read whole (test bodies are small).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub async fn read(response: reqwest::Response) -> Reply {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map(|b| b.to_vec())
            .unwrap_or_default();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            String::from_utf8_lossy(&self.body)
        );
        self
    }

    #[track_caller]
    pub fn assert_offset(&self, offset: u64) -> &Self {
        assert!(
            self.status.is_success(),
            "expected success, got {}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(
            self.header("upload-offset"),
            Some(offset.to_string().as_str())
        );
        self
    }

    /// Asserts a problem+json error with the given status and stable code.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) -> &Self {
        self.assert_status(status);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        let json: serde_json::Value = serde_json::from_slice(&self.body).expect("problem json");
        assert_eq!(json["code"], code, "problem: {json}");
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("json body")
    }
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// An `Upload-Metadata` value: each key with its value in base64.
pub fn tus_metadata(pairs: &[(&str, &str)]) -> String {
    use base64::Engine;
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{k} {}",
                base64::engine::general_purpose::STANDARD.encode(v)
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(strongroom::crypto::sha256(data))
}

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}
