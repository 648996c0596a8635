//! TLS on the public listener, with real clients: curl over HTTP/2 and
//! HTTP/1.1, tus-js-client under Node, and a rustls client that reads which
//! certificate is served. Every certificate comes from the real binary's
//! `strongroom cert self-signed`. All on 127.0.0.1; every child process has
//! a deadline and is killed when it passes.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use strongroom::config::{Config, TlsVersion};
use tokio::time::Instant;

use crate::support::*;

/// Bound on one curl or `strongroom cert` run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one tus-js-client upload.
const NODE_TIMEOUT: Duration = Duration::from_secs(120);
const MIB: usize = 1 << 20;

// ---- curl over HTTP/2 and HTTP/1.1 ---------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_uploads_and_downloads_over_https_with_http2_and_http1() {
    let certs = Certs::make("server", &[]).await;
    let server = tls_server(&certs, |_| {}).await;
    for (flag, version, seed) in [("--http2", "2", 1), ("--http1.1", "1.1", 2)] {
        let data = bytes(3 * MIB + 123, seed);
        let half = data.len() / 2;
        let first = server.dir.path().join(format!("first-{seed}"));
        let second = server.dir.path().join(format!("second-{seed}"));
        std::fs::write(&first, &data[..half]).unwrap();
        std::fs::write(&second, &data[half..]).unwrap();

        let length = format!("Upload-Length: {}", data.len());
        let created = curl(&certs, flag)
            .args(["-X", "POST", "-H", "Tus-Resumable: 1.0.0", "-H", &length])
            .arg(https(&server, "/files/"))
            .run()
            .await;
        created.assert_answer(201, version);
        let location = created.header("location").expect("Location").to_owned();

        let patch = |offset: usize, file: &Path| {
            let mut request = curl(&certs, flag);
            request
                .args(["-X", "PATCH", "-H", "Tus-Resumable: 1.0.0"])
                .args(["-H", "Content-Type: application/offset+octet-stream"])
                .args(["-H", &format!("Upload-Offset: {offset}")])
                .arg("--data-binary")
                .arg(format!("@{}", file.display()))
                .arg(https(&server, &location));
            request
        };
        let patched = patch(0, &first).run().await;
        patched.assert_answer(204, version);
        assert_eq!(
            patched.header("upload-offset"),
            Some(half.to_string().as_str())
        );

        let head = curl(&certs, flag)
            .args(["-I", "-H", "Tus-Resumable: 1.0.0"])
            .arg(https(&server, &location))
            .run()
            .await;
        head.assert_answer(200, version);
        assert_eq!(
            head.header("upload-offset"),
            Some(half.to_string().as_str())
        );

        patch(half, &second).run().await.assert_answer(204, version);

        let fetched = server.dir.path().join(format!("fetched-{seed}"));
        let object = location.replace("/files/", "/objects/");
        curl(&certs, flag)
            .arg("-o")
            .arg(&fetched)
            .arg(https(&server, &object))
            .run()
            .await
            .assert_answer(200, version);
        assert!(
            std::fs::read(&fetched).unwrap() == data,
            "{flag}: the downloaded object differs from the upload"
        );
    }
}

// ---- tus-js-client --------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_js_client_uploads_over_https() {
    let certs = Certs::make("server", &[]).await;
    let server = tls_server(&certs, |_| {}).await;
    let data = bytes(8 * MIB + 77, 3);
    let file = server.dir.path().join("source.bin");
    std::fs::write(&file, &data).unwrap();

    let driver = repo_path("tests/clients/js");
    assert!(
        driver
            .join("node_modules/tus-js-client/package.json")
            .is_file(),
        "tus-js-client is not installed: run tests/clients/setup.sh (./tests/run.sh does)"
    );
    let mut node = Tool::new("node");
    node.arg(driver.join("upload.mjs"))
        .arg("--endpoint")
        .arg(https(&server, "/files/"))
        .arg("--file")
        .arg(&file)
        .args(["--chunk-size", &MIB.to_string()])
        .arg("--store")
        .arg(server.dir.path().join("url-store.json"));
    // Node trusts the self-signed certificate only through this variable.
    node.env("NODE_EXTRA_CA_CERTS", certs.path("cert.pem"));
    let ran = node.run_for(NODE_TIMEOUT).await;
    assert!(
        ran.status.success(),
        "tus-js-client failed:\n{}",
        ran.describe()
    );
    let last: serde_json::Value = ran
        .stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no JSON event from the driver:\n{}", ran.describe()));
    assert_eq!(last["event"], "success", "{}", ran.describe());
    let url = last["url"].as_str().expect("upload URL").to_owned();
    let chunks = ran.stdout.matches(r#""event":"chunk""#).count();
    assert_eq!(
        chunks,
        9,
        "8 full chunks and a short one\n{}",
        ran.describe()
    );

    let fetched = server.dir.path().join("fetched.bin");
    curl(&certs, "--http2")
        .arg("-o")
        .arg(&fetched)
        .arg(url.replace("/files/", "/objects/"))
        .run()
        .await
        .assert_answer(200, "2");
    assert!(
        std::fs::read(&fetched).unwrap() == data,
        "the object differs from the upload"
    );
}

// ---- protocol versions ------------------------------------------------------

/// The metrics page says when the certificate served now expires, the
/// figure the certificate-expiry alert watches.
#[tokio::test]
async fn the_served_certificates_expiry_is_on_the_metrics_page() {
    let certs = Certs::make("server", &[]).await;
    let server = tls_server(&certs, |_| {}).await;
    let cert = CertificateDer::from_pem_file(certs.path("cert.pem")).expect("cert.pem");
    let (_, parsed) = x509_parser::parse_x509_certificate(&cert).expect("a certificate");
    let not_after = parsed.validity().not_after.timestamp();
    assert!(not_after > strongroom::ingest::now_secs() as i64);
    let page = crate::support::ops::MetricsPage::scrape(&server).await;
    assert_eq!(
        page.value("strongroom_tls_certificate_expiry_timestamp_seconds", &[]),
        Some(not_after as f64),
        "{}",
        page.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_2_is_refused_by_default_and_accepted_when_allowed() {
    let certs = Certs::make("server", &[]).await;
    let strict = tls_server(&certs, |_| {}).await;
    let refused = curl(&certs, "--tls-max")
        .args(["1.2", "-X", "OPTIONS"])
        .arg(https(&strict, "/files/"))
        .run()
        .await;
    assert!(
        !refused.status.success(),
        "a TLS 1.2 client got through:\n{}",
        refused.describe()
    );
    curl(&certs, "--tlsv1.3")
        .args(["-X", "OPTIONS"])
        .arg(https(&strict, "/files/"))
        .run()
        .await
        .assert_answer(204, "2");

    let lenient = tls_server(&certs, |config| config.tls.min_version = TlsVersion::Tls12).await;
    curl(&certs, "--tls-max")
        .args(["1.2", "-X", "OPTIONS"])
        .arg(https(&lenient, "/files/"))
        .run()
        .await
        .assert_answer(204, "2");
}

// ---- client certificates ----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_client_certificate_admits_only_clients_that_present_one() {
    let certs = Certs::make("server", &["alice"]).await;
    let server = tls_server(&certs, |config| {
        config.tls.client_ca = Some(certs.path("ca.pem"));
        config.tls.require_client_cert = true;
    })
    .await;
    let without = curl(&certs, "--http2")
        .args(["-X", "OPTIONS"])
        .arg(https(&server, "/files/"))
        .run()
        .await;
    assert!(
        !without.status.success(),
        "a client without a certificate got through:\n{}",
        without.describe()
    );
    curl(&certs, "--http2")
        .args(["-X", "OPTIONS"])
        .arg("--cert")
        .arg(certs.path("client-alice.pem"))
        .arg("--key")
        .arg(certs.path("client-alice-key.pem"))
        .arg(https(&server, "/files/"))
        .run()
        .await
        .assert_answer(204, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optional_client_certificate_admits_both_but_not_a_stranger() {
    let certs = Certs::make("server", &["alice"]).await;
    let stranger = Certs::make("stranger", &["mallory"]).await;
    let server = tls_server(&certs, |config| {
        config.tls.client_ca = Some(certs.path("ca.pem"));
    })
    .await;
    let options = |cert: Option<(&Certs, &str)>| {
        let mut request = curl(&certs, "--http2");
        request.args(["-X", "OPTIONS"]);
        if let Some((set, name)) = cert {
            request
                .arg("--cert")
                .arg(set.path(&format!("client-{name}.pem")))
                .arg("--key")
                .arg(set.path(&format!("client-{name}-key.pem")));
        }
        request.arg(https(&server, "/files/"));
        request
    };
    options(None).run().await.assert_answer(204, "2");
    options(Some((&certs, "alice")))
        .run()
        .await
        .assert_answer(204, "2");
    // Optional means "may present one", not "may present any".
    let refused = options(Some((&stranger, "mallory"))).run().await;
    assert!(
        !refused.status.success(),
        "a certificate from another CA got through:\n{}",
        refused.describe()
    );
}

/// mTLS as a credential: a client certificate mapped to a tenant in
/// `[auth.client_certificates]` gets that tenant's token at the token
/// endpoint without an API key, and uploads with it; a certificate from the
/// same CA that is not mapped gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapped_client_certificate_is_exchanged_for_its_tenants_token() {
    let certs = Certs::make("server", &["alice", "bob"]).await;
    let alice = CertificateDer::from_pem_file(certs.path("client-alice.pem")).expect("alice");
    let alice_sha = hex::encode(strongroom::crypto::sha256(&alice));
    let server = TestServer::start_with_tokens(|config| {
        config.tls.cert = Some(certs.path("cert.pem"));
        config.tls.key = Some(certs.path("key.pem"));
        config.tls.client_ca = Some(certs.path("ca.pem"));
        config
            .auth
            .client_certificates
            .insert(alice_sha, "acme".into());
    })
    .await;
    server
        .appliance()
        .auth
        .credentials()
        .add_tenant("acme")
        .expect("tenant");
    let token_request = |name: &str| {
        let mut request = curl(&certs, "--http2");
        request
            .args(["-X", "POST", "-d", r#"{"scopes":["upload:create"]}"#])
            .arg("--cert")
            .arg(certs.path(&format!("client-{name}.pem")))
            .arg("--key")
            .arg(certs.path(&format!("client-{name}-key.pem")))
            .arg(https(&server, "/auth/token"));
        request
    };
    let ran = token_request("alice").run().await;
    ran.assert_answer(200, "2");
    let (start, end) = (ran.stdout.find('{'), ran.stdout.rfind('}'));
    let body = match (start, end) {
        (Some(start), Some(end)) => &ran.stdout[start..=end],
        _ => panic!("no JSON body:\n{}", ran.describe()),
    };
    let issued: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(issued["tenant"], "acme", "{}", ran.describe());
    let token = issued["token"].as_str().unwrap();

    let (status, _) = token_request("bob").run().await.answer();
    assert_eq!(status, 401, "an unmapped certificate is no credential");

    let mut create = curl(&certs, "--http2");
    create
        .args([
            "-X",
            "POST",
            "-H",
            "Tus-Resumable: 1.0.0",
            "-H",
            "Upload-Length: 3",
        ])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .arg(https(&server, "/files/"));
    create.run().await.assert_answer(201, "2");
}

// ---- certificate reload -----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_certificate_reaches_new_connections_and_garbage_is_ignored() {
    let certs = Certs::make("served", &[]).await;
    let next = Certs::make("next", &[]).await;
    let server = tls_server(&certs, |config| {
        config.tls.reload_interval = Duration::from_millis(200);
    })
    .await;
    let addr = server.appliance().public_addr;
    let (first, second) = (certs.fingerprint(), next.fingerprint());
    let served_old = certs.path("served-before.pem");
    std::fs::copy(certs.path("cert.pem"), &served_old).unwrap();
    let served_new = next.path("cert.pem");
    assert_eq!(served_fingerprint(addr, &served_old).await, Some(first));
    assert_eq!(served_fingerprint(addr, &served_new).await, None);

    // Replace both files the way a renewal tool does: write aside, rename over.
    for name in ["cert.pem", "key.pem"] {
        let aside = certs.path(&format!("{name}.new"));
        std::fs::copy(next.path(name), &aside).unwrap();
        std::fs::rename(&aside, certs.path(name)).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_fingerprint(addr, &served_new).await != Some(second) {
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served_fingerprint(addr, &served_old).await, None);
    // Clients that trust only the new certificate get answers.
    let request = |trust: &Certs| {
        let mut request = curl(trust, "--http2");
        request
            .args(["-X", "OPTIONS"])
            .arg(https(&server, "/files/"));
        request
    };
    request(&next).run().await.assert_answer(204, "2");

    std::fs::write(certs.path("cert.pem"), "garbage, not a certificate\n").unwrap();
    // Several reload intervals: each would have swapped a good pair in.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        served_fingerprint(addr, &served_new).await,
        Some(second),
        "a garbage certificate file replaced the served certificate"
    );
    request(&next).run().await.assert_answer(204, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_of_the_real_binary() {
    let certs = Certs::make("served", &[]).await;
    let next = Certs::make("next", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("strongroom.toml");
    let quoted = |path: PathBuf| format!("\"{}\"", path.display());
    std::fs::write(
        &config,
        format!(
            "[storage]\ndata_dir = {}\n\n[tls]\ncert = {}\nkey = {}\nreload_interval = \"1h\"\n",
            quoted(dir.path().join("data")),
            quoted(certs.path("cert.pem")),
            quoted(certs.path("key.pem")),
        ),
    )
    .unwrap();
    let log = dir.path().join("server.log");
    let mut binary = process::Binary::serve(&config, &log, Duration::from_secs(60)).await;
    let served_old = certs.path("served-before.pem");
    std::fs::copy(certs.path("cert.pem"), &served_old).unwrap();
    let (first, second) = (certs.fingerprint(), next.fingerprint());
    assert_eq!(
        served_fingerprint(binary.public, &served_old).await,
        Some(first)
    );

    for name in ["cert.pem", "key.pem"] {
        let aside = certs.path(&format!("{name}.new"));
        std::fs::copy(next.path(name), &aside).unwrap();
        std::fs::rename(&aside, certs.path(name)).unwrap();
    }
    // The next timed check is an hour away: only the signal can reload now.
    let pid = i32::try_from(binary.child.id()).expect("pid");
    // SAFETY: kill(2) with a valid signal number has no memory effects.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_fingerprint(binary.public, &next.path("cert.pem")).await != Some(second) {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload the certificate within 10 s:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        binary.child.try_wait().unwrap().is_none(),
        "the binary exited on SIGHUP"
    );
    let reloaded = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(reloaded.contains("tls certificate reloaded"), "{reloaded}");
    binary.kill();
}

// ---- the start refuses bad files -----------------------------------------------

#[tokio::test]
async fn a_start_with_a_broken_key_fails_naming_the_file() {
    let certs = Certs::make("server", &[]).await;
    std::fs::write(
        certs.path("key.pem"),
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0!!\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.storage.data_dir = dir.path().join("data");
    config.tls.cert = Some(certs.path("cert.pem"));
    config.tls.key = Some(certs.path("key.pem"));
    let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let disk = Arc::new(strongroom::disk::OsDisk);
    let Err(err) = strongroom::appliance::Appliance::start_on(config, public, admin, disk).await
    else {
        panic!("the appliance started with a broken key");
    };
    let message = err.to_string();
    assert!(message.contains("key.pem"), "{message}");
    assert!(
        !message.contains("c2VjcmV0"),
        "the error quotes the key file: {message}"
    );
}

// ---- `strongroom cert self-signed` ----------------------------------------------

#[tokio::test]
async fn cert_self_signed_writes_private_keys_0600_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let certs = Certs::make("server", &["alice"]).await;
    for key in ["key.pem", "ca-key.pem", "client-alice-key.pem"] {
        let mode = std::fs::metadata(certs.path(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key} has mode {mode:o}");
    }
    assert!(
        certs.printed.contains(&hex_colons(&certs.fingerprint())),
        "{}",
        certs.printed
    );
    let before = std::fs::read(certs.path("key.pem")).unwrap();
    let again = certs.command(&[]).run().await;
    assert!(
        !again.status.success(),
        "a second run overwrote:\n{}",
        again.describe()
    );
    assert!(
        again.stderr.contains("already exists"),
        "{}",
        again.describe()
    );
    assert_eq!(std::fs::read(certs.path("key.pem")).unwrap(), before);
}

// ---- helpers ------------------------------------------------------------------

/// A directory of certificates written by `strongroom cert self-signed`.
struct Certs {
    dir: tempfile::TempDir,
    /// What the command printed.
    printed: String,
}

impl Certs {
    async fn make(label: &str, clients: &[&str]) -> Certs {
        let dir = tempfile::Builder::new()
            .prefix(&format!("certs-{label}-"))
            .tempdir()
            .unwrap();
        let mut certs = Certs {
            dir,
            printed: String::new(),
        };
        let ran = certs.command(clients).run().await;
        assert!(
            ran.status.success(),
            "strongroom cert self-signed failed:\n{}",
            ran.describe()
        );
        certs.printed = ran.stdout;
        certs
    }

    fn command(&self, clients: &[&str]) -> Tool {
        let mut tool = Tool::new(env!("CARGO_BIN_EXE_strongroom"));
        tool.args(["cert", "self-signed", "--out"])
            .arg(self.dir.path());
        for client in clients {
            tool.args(["--client", client]);
        }
        tool
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// SHA-256 of the server certificate on disk.
    fn fingerprint(&self) -> [u8; 32] {
        let cert = CertificateDer::from_pem_file(self.path("cert.pem")).expect("cert.pem");
        strongroom::crypto::sha256(&cert)
    }
}

fn hex_colons(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

async fn tls_server(certs: &Certs, tweak: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_with(|config| {
        config.tls.cert = Some(certs.path("cert.pem"));
        config.tls.key = Some(certs.path("key.pem"));
        tweak(config);
    })
    .await
}

fn https(server: &TestServer, path: &str) -> String {
    format!("https://{}{path}", server.appliance().public_addr)
}

/// curl trusting `certs`' server certificate, printing the response head
/// and, on its last line, the status and HTTP version.
fn curl(certs: &Certs, flag: &str) -> Tool {
    let mut tool = Tool::new("curl");
    tool.args(["-sS", "--max-time", "20", "-D", "-"])
        .args(["-w", "\\n%{http_code} %{http_version}"])
        .arg("--cacert")
        .arg(certs.path("cert.pem"))
        .arg(flag);
    tool
}

/// The SHA-256 of the certificate a new TLS connection to `addr` is
/// served, if a rustls client that trusts only `trusted` accepts it.
async fn served_fingerprint(addr: std::net::SocketAddr, trusted: &Path) -> Option<[u8; 32]> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(trusted).expect("trusted certificate"))
        .expect("usable as a trust anchor");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::IpAddress(addr.ip().into());
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        connector.connect(name, tcp).await
    };
    let stream = tokio::time::timeout(TOOL_TIMEOUT, handshake)
        .await
        .expect("handshake within the timeout")
        .ok()?;
    let (_, session) = stream.get_ref();
    let leaf = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("a server certificate");
    Some(strongroom::crypto::sha256(leaf))
}

/// A child process with a deadline; its output goes to files, so a chatty
/// child can never block on a full pipe.
struct Tool {
    command: Command,
}

struct Ran {
    line: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Tool {
    fn new(program: impl AsRef<OsStr>) -> Tool {
        let mut command = Command::new(program);
        command.stdin(Stdio::null()).current_dir(repo_path(""));
        Tool { command }
    }

    fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Tool {
        self.command.arg(arg);
        self
    }

    fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(&mut self, args: I) -> &mut Tool {
        self.command.args(args);
        self
    }

    fn env(&mut self, key: &str, value: impl AsRef<OsStr>) -> &mut Tool {
        self.command.env(key, value);
        self
    }

    async fn run(&mut self) -> Ran {
        self.run_for(TOOL_TIMEOUT).await
    }

    async fn run_for(&mut self, limit: Duration) -> Ran {
        let line = format!("{:?}", self.command);
        let stdout = tempfile::NamedTempFile::new().unwrap();
        let stderr = tempfile::NamedTempFile::new().unwrap();
        self.command
            .stdout(stdout.reopen().unwrap())
            .stderr(stderr.reopen().unwrap());
        let mut child = self
            .command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {line}: {err}"));
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for child") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{line} did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                    std::fs::read_to_string(stdout.path()).unwrap_or_default(),
                    std::fs::read_to_string(stderr.path()).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Ran {
            line,
            status,
            stdout: std::fs::read_to_string(stdout.path()).unwrap_or_default(),
            stderr: std::fs::read_to_string(stderr.path()).unwrap_or_default(),
        }
    }
}

impl Ran {
    fn describe(&self) -> String {
        format!(
            "{} → {}\nstdout:\n{}\nstderr:\n{}",
            self.line, self.status, self.stdout, self.stderr
        )
    }

    /// curl's last line: `<status> <http version>`.
    fn answer(&self) -> (u16, String) {
        let last = self.stdout.lines().last().unwrap_or_default();
        let (code, version) = last.split_once(' ').unwrap_or((last, ""));
        (code.parse().unwrap_or(0), version.to_owned())
    }

    #[track_caller]
    fn assert_answer(&self, status: u16, version: &str) {
        assert!(self.status.success(), "curl failed:\n{}", self.describe());
        assert_eq!(
            self.answer(),
            (status, version.to_owned()),
            "{}",
            self.describe()
        );
    }

    /// A response header from curl's `-D -` output (the last response's).
    fn header(&self, name: &str) -> Option<&str> {
        self.stdout
            .lines()
            .filter_map(|line| line.split_once(':'))
            .filter(|(key, _)| key.trim().eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim())
            .next_back()
    }
}
