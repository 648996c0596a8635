//! Key management against a real appliance: per-tenant key-encryption keys,
//! rotation through the admin API and through `strongroom keys rotate` on a
//! stopped appliance's data dir (SIGKILLed at random moments and resumed),
//! crypto-shredding (a deleted object's wrapped key leaves the index; a
//! tenant's destroyed keys make only its objects unreadable), and the
//! PKCS#11 provider against a real SoftHSM2 token, including failing closed
//! while the token is unavailable.
//!
//! The SoftHSM2 tests need the Debian package `softhsm2` (tests/run.sh
//! installs it); without it they fail and say so.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use strongroom::disk::OsDisk;
use strongroom::staging::Staging;

use crate::support::{OCTETS, Reply, TUS, TestServer, bytes, sha256_hex};

const BIN: &str = env!("CARGO_BIN_EXE_strongroom");

// ---------------------------------------------------------------- helpers

/// A client holding one bearer token (or none, with authentication off).
struct Client<'a> {
    server: &'a TestServer,
    token: Option<String>,
}

impl<'a> Client<'a> {
    fn open(server: &'a TestServer) -> Client<'a> {
        Client {
            server,
            token: None,
        }
    }

    fn with_token(server: &'a TestServer, token: String) -> Client<'a> {
        Client {
            server,
            token: Some(token),
        }
    }

    async fn send(&self, method: &str, path: &str, extra: &[(&str, &str)], body: Vec<u8>) -> Reply {
        let bearer = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers = Vec::new();
        if let Some(bearer) = &bearer {
            headers.push(("Authorization", bearer.as_str()));
        }
        headers.extend_from_slice(extra);
        self.server.send(method, path, &headers, body).await
    }

    /// Creates an upload of `length` bytes; returns its path.
    async fn create(&self, length: usize) -> String {
        let length = length.to_string();
        let reply = self
            .send(
                "POST",
                "/files/",
                &[TUS, ("Upload-Length", &length)],
                Vec::new(),
            )
            .await;
        reply.assert_status(201);
        reply.header("location").expect("Location").to_owned()
    }

    async fn patch(&self, path: &str, offset: usize, data: &[u8]) -> Reply {
        let offset = offset.to_string();
        self.send(
            "PATCH",
            path,
            &[TUS, OCTETS, ("Upload-Offset", &offset)],
            data.to_vec(),
        )
        .await
    }

    /// Uploads `data` whole; returns the object's path.
    async fn upload(&self, data: &[u8]) -> String {
        let path = self.create(data.len()).await;
        if !data.is_empty() {
            self.patch(&path, 0, data)
                .await
                .assert_offset(data.len() as u64);
        }
        path
    }
}

fn id_of(path: &str) -> &str {
    path.rsplit('/').next().expect("an id")
}

/// Sends a request to the admin listener.
async fn admin(
    server: &TestServer,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: &str,
) -> Reply {
    let mut request = server.http.request(
        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
        server.admin_url(path),
    );
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .body(body.to_owned())
        .send()
        .await
        .expect("admin request");
    Reply::read(response).await
}

/// A second tenant with its own API key.
fn add_tenant(server: &TestServer, tenant: &str) -> String {
    let store = server.appliance().auth.credentials();
    store.add_tenant(tenant).expect("tenant added");
    store
        .create_key(tenant, false, None)
        .expect("key created")
        .secret
}

/// Names of the key files in a data dir, sorted.
fn key_files(data_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(data_dir.join("keys")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".kek"))
        .collect();
    names.sort();
    names
}

/// `{key id: (objects, uploads)}` of a key listing, with the missing ones.
fn key_uses(listing: &Value) -> BTreeMap<String, (u64, u64, bool, bool)> {
    listing["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| {
            (
                k["id"].as_str().unwrap().to_owned(),
                (
                    k["objects"].as_u64().unwrap(),
                    k["uploads"].as_u64().unwrap(),
                    k["current"].as_bool().unwrap(),
                    k["present"].as_bool().unwrap(),
                ),
            )
        })
        .collect()
}

fn random_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1
}

fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

// ---------------------------------------------------------------- rotation

#[tokio::test]
async fn rotation_rewraps_every_tenants_data_keys_and_retires_the_old_versions() {
    let mut server = TestServer::start_with_tokens(|_| {}).await;
    let acme_key = add_tenant(&server, "acme");
    let data_dir = server.data_dir();
    assert_eq!(
        key_files(&data_dir),
        ["default.v1.kek"],
        "acme has no key before its first upload"
    );

    // Three objects and one unfinished upload (a full segment and a tail)
    // per tenant; acme's key is created by its first upload.
    let mut objects = Vec::new();
    let mut unfinished = Vec::new();
    for (tenant, api_key) in [("default", None), ("acme", Some(acme_key.clone()))] {
        let token = match &api_key {
            None => server.admin_token(&["upload:create"]).await,
            Some(key) => server.token(key, &["upload:create"]).await,
        };
        let client = Client::with_token(&server, token);
        for (n, len) in [0usize, 1_000, 200_000].into_iter().enumerate() {
            let data = bytes(len, 10 * n as u64 + tenant.len() as u64);
            objects.push((tenant, api_key.clone(), client.upload(&data).await, data));
        }
        let data = bytes(100_000, 77 + tenant.len() as u64);
        let path = client.create(data.len()).await;
        client
            .patch(&path, 0, &data[..70_000])
            .await
            .assert_offset(70_000);
        unfinished.push((tenant, api_key.clone(), path, data));
    }
    assert_eq!(key_files(&data_dir), ["acme.v1.kek", "default.v1.kek"]);
    let admin_token = server.admin_token(&["admin"]).await;
    let listing = admin(&server, Some(&admin_token), "GET", "/admin/keys", "").await;
    listing.assert_status(200);
    let uses = key_uses(&listing.json());
    assert_eq!(uses["local:default:v1"], (3, 1, true, true));
    assert_eq!(uses["local:acme:v1"], (3, 1, true, true));

    let reply = admin(
        &server,
        Some(&admin_token),
        "POST",
        "/admin/keys/rotate",
        "",
    )
    .await;
    reply.assert_status(200);
    let report = reply.json();
    println!("rotation: {report}");
    assert_eq!(report["rewrapped"], 8, "{report}");
    assert_eq!(report["retired"], 2, "{report}");
    assert_eq!(
        report["current"],
        serde_json::json!({"acme": "local:acme:v2", "default": "local:default:v2"})
    );
    assert_eq!(key_files(&data_dir), ["acme.v2.kek", "default.v2.kek"]);
    let uses = key_uses(
        &admin(&server, Some(&admin_token), "GET", "/admin/keys", "")
            .await
            .json(),
    );
    assert_eq!(
        uses,
        BTreeMap::from([
            ("local:acme:v2".to_owned(), (3, 1, true, true)),
            ("local:default:v2".to_owned(), (3, 1, true, true)),
        ])
    );

    // Every object reads back byte for byte; the unfinished uploads resume.
    let read_all = async |server: &TestServer,
                          objects: &[(&str, Option<String>, String, Vec<u8>)]| {
        for (tenant, api_key, path, data) in objects {
            let scope = format!("object:read:{}", id_of(path));
            let token = match api_key {
                None => server.admin_token(&[&scope]).await,
                Some(key) => server.token(key, &[&scope]).await,
            };
            let got = Client::with_token(server, token)
                .send("GET", path, &[], Vec::new())
                .await;
            got.assert_status(200);
            assert_eq!(got.body.len(), data.len(), "{tenant} {path}");
            assert_eq!(sha256_hex(&got.body), sha256_hex(data), "{tenant} {path}");
        }
    };
    read_all(&server, &objects).await;
    for (tenant, api_key, path, data) in unfinished {
        let token = match &api_key {
            None => server.admin_token(&["upload:create"]).await,
            Some(key) => server.token(key, &["upload:create"]).await,
        };
        let client = Client::with_token(&server, token);
        client
            .patch(&path, 70_000, &data[70_000..])
            .await
            .assert_offset(100_000);
        objects.push((tenant, api_key, path, data));
    }
    read_all(&server, &objects).await;

    // The keys are files: a restart reads the same objects.
    server.restart().await;
    read_all(&server, &objects).await;

    // One tenant at a time; bad requests are refused with their code.
    let admin_token = server.admin_token(&["admin"]).await;
    let reply = admin(
        &server,
        Some(&admin_token),
        "POST",
        "/admin/keys/rotate",
        r#"{"tenant": "acme"}"#,
    )
    .await;
    reply.assert_status(200);
    let report = reply.json();
    assert_eq!(report["rewrapped"], 4, "{report}");
    assert_eq!(
        report["current"],
        serde_json::json!({"acme": "local:acme:v3"})
    );
    assert_eq!(key_files(&data_dir), ["acme.v3.kek", "default.v2.kek"]);
    admin(
        &server,
        Some(&admin_token),
        "POST",
        "/admin/keys/rotate",
        r#"{"tenant": "nobody"}"#,
    )
    .await
    .assert_problem(404, "tenant_has_no_keys");
    admin(
        &server,
        Some(&admin_token),
        "POST",
        "/admin/keys/rotate",
        r#"{"tenant": "No/pe"}"#,
    )
    .await
    .assert_problem(400, "invalid_tenant");
    admin(
        &server,
        Some(&admin_token),
        "POST",
        "/admin/keys/rotate",
        "{",
    )
    .await
    .assert_problem(400, "invalid_request_body");
    admin(&server, None, "POST", "/admin/keys/rotate", "")
        .await
        .assert_status(401);
    let upload_token = server.admin_token(&["upload:create"]).await;
    admin(&server, Some(&upload_token), "GET", "/admin/keys", "")
        .await
        .assert_status(403);
    read_all(&server, &objects).await;
}

/// Runs `strongroom keys <args>` on a data dir and returns its output.
fn keys_command(args: &[&str], data_dir: &Path) -> Output {
    Command::new(BIN)
        .arg("keys")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::null())
        .output()
        .expect("run strongroom keys")
}

/// `strongroom keys list --json` of a stopped appliance's data dir.
fn offline_listing(data_dir: &Path) -> Value {
    let out = keys_command(&["list", "--json"], data_dir);
    assert!(
        out.status.success(),
        "keys list failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("listing json")
}

/// Kills per run of the kill test: 8, or `STRONGROOM_KEYS_KILLS` for a
/// longer run.
fn kills_wanted() -> usize {
    std::env::var("STRONGROOM_KEYS_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
}

#[tokio::test]
async fn a_rotation_killed_at_random_moments_resumes_and_never_strands_an_object() {
    const OBJECTS: usize = 300;
    let kills_wanted = kills_wanted();
    let mut server = TestServer::start().await;
    let data_dir = server.data_dir();
    let client = Client::open(&server);
    let mut objects = Vec::with_capacity(OBJECTS);
    for n in 0..OBJECTS {
        // Small objects: a rotation's cost is one index write per object
        // whatever its size, and small ones make a run long enough to kill.
        let data = bytes(n % 97, n as u64);
        objects.push((client.upload(&data).await, data));
    }
    server.appliance.take().expect("running").stop().await;

    // A first, uninterrupted run gives the time a whole rotation takes.
    let started = Instant::now();
    let out = keys_command(&["rotate", "--json"], &data_dir);
    let full = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["rewrapped"], OBJECTS, "{report}");
    println!("an uninterrupted rotation of {OBJECTS} objects took {full:?}");

    let seed = random_seed();
    println!("kill seed {seed}");
    let mut rng = seed;
    let (mut kills, mut mid_rewrap, mut finished) = (0, 0, 0);
    for _ in 0..kills_wanted * 3 {
        if kills >= kills_wanted {
            break;
        }
        let mut child: Child = Command::new(BIN)
            .args(["keys", "rotate", "--json", "--data-dir"])
            .arg(&data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start keys rotate");
        let delay = full.mul_f64(0.05 + (next(&mut rng) % 1000) as f64 / 1100.0);
        tokio::time::sleep(delay).await;
        match child.try_wait().expect("child status") {
            Some(status) => {
                assert!(status.success(), "keys rotate failed: {status}");
                finished += 1;
            }
            None => {
                child.kill().expect("SIGKILL");
                child.wait().expect("reap");
                kills += 1;
            }
        }
        // After every kill: nothing names a key that is gone, and any
        // record not yet re-wrapped is still under a version that exists.
        let listing = offline_listing(&data_dir);
        assert_eq!(listing["records_under_missing_keys"], 0, "{listing}");
        let uses = key_uses(&listing);
        let total: u64 = uses.values().map(|(o, u, _, _)| o + u).sum();
        assert_eq!(total, OBJECTS as u64, "{listing}");
        assert!(
            uses.values().all(|(_, _, _, present)| *present),
            "{listing}"
        );
        if uses.values().filter(|(o, _, _, _)| *o > 0).count() > 1 {
            mid_rewrap += 1;
        }
    }
    println!(
        "{kills} kills ({mid_rewrap} left records under two versions), {finished} runs finished first"
    );
    assert_eq!(
        kills, kills_wanted,
        "the rotation kept finishing before the kill"
    );
    assert!(
        mid_rewrap >= 2,
        "too few kills landed mid-rewrap: {mid_rewrap}"
    );

    // One more run finishes what the last kill interrupted.
    let out = keys_command(&["rotate", "--json"], &data_dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = offline_listing(&data_dir);
    let uses = key_uses(&listing);
    assert_eq!(uses.len(), 1, "one version left: {listing}");
    let (id, (objects_under, _, current, present)) = uses.iter().next().unwrap();
    assert!(*current && *present);
    assert_eq!(*objects_under, OBJECTS as u64);
    assert_eq!(key_files(&data_dir).len(), 1, "{:?}", key_files(&data_dir));
    println!("final key {id}");

    server.restart().await;
    let client = Client::open(&server);
    for (path, data) in &objects {
        let got = client.send("GET", path, &[], Vec::new()).await;
        got.assert_status(200);
        assert_eq!(&got.body, data, "{path}");
    }
}

// ---------------------------------------------------------------- shredding

/// Every record's wrapped key blob (base64) in a stopped appliance's index.
fn wrapped_keys(data_dir: &Path) -> BTreeMap<String, String> {
    let staging = Staging::open(data_dir, Arc::new(OsDisk)).expect("index opens");
    staging
        .records()
        .map(|record| {
            let record = record.expect("record decodes");
            let json = serde_json::to_value(&record.key).unwrap();
            (
                record.id.to_string(),
                json["blob"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn deleted_and_expired_uploads_take_their_wrapped_keys_out_of_the_index() {
    let mut server = TestServer::start().await;
    let data_dir = server.data_dir();
    let client = Client::open(&server);
    let kept = client.upload(&bytes(1_000, 1)).await;
    let deleted = client.upload(&bytes(70_000, 2)).await;
    let expired = client.create(100_000).await;
    client
        .patch(&expired, 0, &bytes(70_000, 3))
        .await
        .assert_offset(70_000);
    server.appliance.take().expect("running").stop().await;
    let before = wrapped_keys(&data_dir);
    assert_eq!(before.len(), 3);

    server.restart().await;
    let client = Client::open(&server);
    client
        .send("DELETE", &deleted, &[TUS], Vec::new())
        .await
        .assert_status(204);
    let far_future = strongroom::ingest::now_secs() + 30 * 24 * 3600;
    let swept = server
        .appliance()
        .ingest
        .sweep_expired_at(far_future)
        .await
        .unwrap();
    assert_eq!(swept, 1, "only the unfinished upload expires");
    client
        .send("GET", &deleted, &[], Vec::new())
        .await
        .assert_problem(404, "upload_not_found");
    let census = server.census().await;
    assert_eq!((census.records, census.tails, census.files), (1, 0, 1));
    server.appliance.take().expect("running").stop().await;

    let after = wrapped_keys(&data_dir);
    assert_eq!(after.keys().collect::<Vec<_>>(), [id_of(&kept)]);
    for gone in [&deleted, &expired] {
        let blob = &before[id_of(gone)];
        assert!(
            after.values().all(|b| b != blob),
            "{gone}: its wrapped key is still in the index"
        );
        // The index engine is log-structured: say whether the removed
        // record's bytes are still physically in its files (README, Keys).
        let lingering = all_files(&data_dir.join("index"))
            .iter()
            .filter(|file| contains(&std::fs::read(file).unwrap(), blob.as_bytes()))
            .count();
        println!("{gone}: removed from the index; its old bytes remain in {lingering} index files");
    }
}

#[tokio::test]
async fn destroying_a_tenants_keys_makes_only_its_objects_unreadable() {
    let server = TestServer::start_with_tokens(|_| {}).await;
    let acme_key = add_tenant(&server, "acme");
    let data_dir = server.data_dir();
    let mine = Client::with_token(&server, server.admin_token(&["upload:create"]).await);
    let acme = Client::with_token(&server, server.token(&acme_key, &["upload:create"]).await);
    let ours = [
        mine.upload(&bytes(5_000, 1)).await,
        mine.upload(&bytes(80_000, 2)).await,
    ];
    let theirs = [
        acme.upload(&bytes(5_000, 3)).await,
        acme.upload(&bytes(80_000, 4)).await,
    ];
    let read = async |api_key: Option<&str>, path: &str| {
        let scope = format!("object:read:{}", id_of(path));
        let token = match api_key {
            None => server.admin_token(&[&scope]).await,
            Some(key) => server.token(key, &[&scope]).await,
        };
        Client::with_token(&server, token)
            .send("GET", path, &[], Vec::new())
            .await
    };
    for path in &theirs {
        read(Some(&acme_key), path).await.assert_status(200);
    }

    let provider = server.appliance().ingest.key_provider().clone();
    let destroyed = tokio::task::spawn_blocking(move || provider.destroy_tenant("acme"))
        .await
        .unwrap()
        .expect("keys destroyed");
    assert_eq!(destroyed, 1);
    assert_eq!(key_files(&data_dir), ["default.v1.kek"]);
    for path in &theirs {
        read(Some(&acme_key), path)
            .await
            .assert_problem(410, "object_key_destroyed");
    }
    for (n, path) in ours.iter().enumerate() {
        let got = read(None, path).await;
        got.assert_status(200);
        assert_eq!(got.body, bytes([5_000, 80_000][n], 1 + n as u64));
    }
    let admin_token = server.admin_token(&["admin"]).await;
    let listing = admin(&server, Some(&admin_token), "GET", "/admin/keys", "")
        .await
        .json();
    assert_eq!(listing["records_under_missing_keys"], 2, "{listing}");
    assert_eq!(key_uses(&listing)["local:acme:v1"], (2, 0, false, false));

    // Shredding the tenant also removes what is left of its objects.
    let report = server
        .appliance()
        .ingest
        .shred_tenant("acme")
        .await
        .unwrap();
    assert_eq!(
        (report.keys_destroyed, report.removed, report.busy),
        (0, 2, 0)
    );
    for path in &theirs {
        read(Some(&acme_key), path).await.assert_status(404);
    }
    let census = server.census().await;
    assert_eq!((census.records, census.files), (2, 2));
}

// ---------------------------------------------------------------- PKCS#11

const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const TOKEN: &str = "strongroom";
/// Distinctive, so a test can tell whether it leaked into a log.
const USER_PIN: &str = "pin-4f7a-strongroom";
const SO_PIN: &str = "so-pin-91c2";

/// A private SoftHSM2 token: its own config and token directory.
struct SoftHsm {
    dir: tempfile::TempDir,
}

impl SoftHsm {
    /// Initialises a token labelled `strongroom`. Panics, saying what to
    /// install, when SoftHSM2 is missing.
    fn new() -> SoftHsm {
        let util = Command::new("softhsm2-util").arg("--version").output();
        assert!(
            util.as_ref().is_ok_and(|o| o.status.success()),
            "softhsm2-util is not installed: install the Debian package softhsm2 \
             (tests/run.sh does) to run the PKCS#11 tests"
        );
        assert!(
            Path::new(SOFTHSM_MODULE).exists(),
            "{SOFTHSM_MODULE} is missing: install the Debian package softhsm2 (tests/run.sh does)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let hsm = SoftHsm { dir };
        std::fs::create_dir(hsm.token_dir()).unwrap();
        std::fs::write(
            hsm.conf(),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                hsm.token_dir().display()
            ),
        )
        .unwrap();
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", hsm.conf())
            .args([
                "--init-token",
                "--free",
                "--label",
                TOKEN,
                "--pin",
                USER_PIN,
                "--so-pin",
                SO_PIN,
            ])
            .output()
            .expect("softhsm2-util runs");
        assert!(
            out.status.success(),
            "softhsm2-util --init-token failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        hsm.write_pin("pin", USER_PIN);
        hsm
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    fn token_dir(&self) -> PathBuf {
        self.dir.path().join("tokens")
    }

    fn write_pin(&self, name: &str, pin: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, format!("{pin}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// An appliance config using this token.
    fn config(&self, data_dir: &Path, pin_file: &Path, token: &str) -> PathBuf {
        let path = data_dir.with_extension("toml");
        std::fs::write(
            &path,
            format!(
                "[storage]\ndata_dir = {data:?}\n[server]\nshutdown_grace = \"2s\"\n\
                 [keys]\nprovider = \"pkcs11\"\npkcs11_module = {SOFTHSM_MODULE:?}\n\
                 pkcs11_token = {token:?}\npkcs11_pin_file = {pin:?}\n",
                data = data_dir.display().to_string(),
                pin = pin_file.display().to_string(),
            ),
        )
        .unwrap();
        path
    }

    /// The token's storage disappears (an HSM unplugged or unreachable).
    fn take_away(&self) {
        std::fs::rename(self.token_dir(), self.dir.path().join("tokens.away")).unwrap();
    }

    fn bring_back(&self) {
        std::fs::rename(self.dir.path().join("tokens.away"), self.token_dir()).unwrap();
    }
}

/// The real binary with `SOFTHSM2_CONF` pointing at a private token.
struct HsmAppliance {
    child: Child,
    public: String,
    admin: String,
    http: reqwest::Client,
}

impl HsmAppliance {
    async fn start(hsm: &SoftHsm, config: &Path, log: &Path) -> HsmAppliance {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let from = out.metadata().unwrap().len() as usize;
        let mut child = Command::new(BIN)
            .env("SOFTHSM2_CONF", hsm.conf())
            .args([
                "--log-format",
                "json",
                "serve",
                "--auth",
                "none",
                "--config",
            ])
            .arg(config)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start strongroom");
        let deadline = Instant::now() + Duration::from_secs(30);
        let (public, admin) = loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let found = text.get(from..).unwrap_or("").lines().find_map(|line| {
                let value: Value = serde_json::from_str(line).ok()?;
                let fields = &value["fields"];
                (fields["message"] == "strongroom listening").then_some(())?;
                Some((
                    fields["public"].as_str()?.to_owned(),
                    fields["admin"].as_str()?.to_owned(),
                ))
            });
            if let Some(addrs) = found {
                break addrs;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("strongroom exited during start ({status}):\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "strongroom did not start:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        HsmAppliance {
            child,
            public: format!("http://{public}"),
            admin: format!("http://{admin}"),
            http: reqwest::Client::new(),
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        let mut request = self.http.request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", self.public),
        );
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Reply::read(request.body(body).send().await.expect("request sent")).await
    }

    async fn create(&self, length: usize) -> Reply {
        self.send(
            "POST",
            "/files/",
            &[TUS, ("Upload-Length", &length.to_string())],
            Vec::new(),
        )
        .await
    }

    async fn upload(&self, data: &[u8]) -> String {
        let reply = self.create(data.len()).await;
        reply.assert_status(201);
        let path = reply.header("location").unwrap().to_owned();
        if !data.is_empty() {
            self.patch(&path, 0, data)
                .await
                .assert_offset(data.len() as u64);
        }
        path
    }

    async fn patch(&self, path: &str, offset: usize, data: &[u8]) -> Reply {
        let offset = offset.to_string();
        self.send(
            "PATCH",
            path,
            &[TUS, OCTETS, ("Upload-Offset", &offset)],
            data.to_vec(),
        )
        .await
    }

    async fn admin(&self, method: &str, path: &str) -> Reply {
        let request = self.http.request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", self.admin),
        );
        Reply::read(request.send().await.expect("admin request")).await
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for HsmAppliance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every file under `dir`, for scanning what is at rest.
fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn keys_in_a_softhsm2_token_survive_restarts_rotate_and_fail_closed() {
    let hsm = SoftHsm::new();
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let log = root.path().join("server.log");
    let config = hsm.config(&data_dir, &hsm.dir.path().join("pin"), TOKEN);
    let appliance = HsmAppliance::start(&hsm, &config, &log).await;

    let mut objects = Vec::new();
    for (n, len) in [0usize, 1_000, 150_000].into_iter().enumerate() {
        let data = bytes(len, 40 + n as u64);
        objects.push((appliance.upload(&data).await, data));
    }
    let read_all = async |appliance: &HsmAppliance, objects: &[(String, Vec<u8>)]| {
        for (path, data) in objects {
            let got = appliance.send("GET", path, &[], Vec::new()).await;
            got.assert_status(200);
            assert_eq!(&got.body, data, "{path}");
        }
    };
    read_all(&appliance, &objects).await;
    assert!(
        key_files(&data_dir).is_empty(),
        "no key file with a token: {:?}",
        key_files(&data_dir)
    );
    let listing = appliance.admin("GET", "/admin/keys").await.json();
    assert_eq!(listing["provider"], "pkcs11");
    assert_eq!(key_uses(&listing)["pkcs11:default:v1"], (3, 0, true, true));

    // The keys live in the token: a new process reads the same objects.
    appliance.kill();
    let appliance = HsmAppliance::start(&hsm, &config, &log).await;
    read_all(&appliance, &objects).await;

    let reply = appliance.admin("POST", "/admin/keys/rotate").await;
    reply.assert_status(200);
    let report = reply.json();
    assert_eq!(report["rewrapped"], 3, "{report}");
    assert_eq!(report["retired"], 1, "{report}");
    assert_eq!(report["current"]["default"], "pkcs11:default:v2");
    let listing = appliance.admin("GET", "/admin/keys").await.json();
    assert_eq!(
        key_uses(&listing),
        BTreeMap::from([("pkcs11:default:v2".to_owned(), (3, 0, true, true))])
    );
    read_all(&appliance, &objects).await;

    // An upload in progress, then the token goes away.
    let marker: Vec<u8> = b"PLAINTEXT-MARKER-"
        .iter()
        .copied()
        .cycle()
        .take(4096)
        .collect();
    let pending = appliance.create(2 * marker.len()).await;
    pending.assert_status(201);
    let pending = pending.header("location").unwrap().to_owned();
    appliance
        .patch(&pending, 0, &marker)
        .await
        .assert_offset(marker.len() as u64);
    let files_before = all_files(&data_dir.join("segments")).len();
    hsm.take_away();

    let refused = appliance.create(10).await;
    refused.assert_problem(503, "key_provider_unavailable");
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(
        !String::from_utf8_lossy(&refused.body).contains("C_"),
        "no token details to clients"
    );
    appliance
        .patch(&pending, marker.len(), &marker)
        .await
        .assert_problem(503, "key_provider_unavailable");
    appliance
        .send("GET", &objects[2].0, &[], Vec::new())
        .await
        .assert_problem(503, "key_provider_unavailable");
    assert_eq!(
        all_files(&data_dir.join("segments")).len(),
        files_before,
        "no upload was created"
    );
    appliance
        .send("HEAD", &pending, &[TUS], Vec::new())
        .await
        .assert_offset(marker.len() as u64);
    // Nothing anywhere in the data dir holds the plaintext.
    for file in all_files(&data_dir) {
        let content = std::fs::read(&file).unwrap();
        assert!(
            !contains(&content, &marker[..64]),
            "{} holds plaintext",
            file.display()
        );
    }

    hsm.bring_back();
    let back = appliance.upload(&bytes(2_000, 9)).await;
    appliance
        .patch(&pending, marker.len(), &marker)
        .await
        .assert_offset(2 * marker.len() as u64);
    let got = appliance.send("GET", &pending, &[], Vec::new()).await;
    got.assert_status(200);
    assert_eq!(got.body, [marker.clone(), marker.clone()].concat());
    objects.push((back, bytes(2_000, 9)));
    read_all(&appliance, &objects).await;
    appliance.kill();

    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains("key provider unavailable"),
        "the outage is logged"
    );
    assert!(
        !log_text.contains(USER_PIN),
        "the PIN never reaches the log"
    );
}

#[test]
fn an_appliance_whose_token_cannot_be_opened_does_not_start() {
    let hsm = SoftHsm::new();
    let root = tempfile::tempdir().unwrap();
    let wrong_pin = "wrong-pin-5d0e";
    let cases = [
        (
            "wrong pin",
            hsm.write_pin("wrong", wrong_pin),
            TOKEN,
            "C_Login: PinIncorrect",
        ),
        (
            "no such token",
            hsm.dir.path().join("pin"),
            "absent",
            "no token labelled \"absent\"",
        ),
    ];
    for (n, (what, pin_file, token, expected)) in cases.into_iter().enumerate() {
        let data_dir = root.path().join(format!("data{n}"));
        let config = hsm.config(&data_dir, &pin_file, token);
        let out = refused_start(&hsm, &config, what);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: {stderr}");
        assert!(stderr.contains(expected), "{what}: {stderr}");
        assert!(
            !stderr.contains(wrong_pin) && !stderr.contains(USER_PIN),
            "{what}: {stderr}"
        );
    }
    // A PIN file others can read is refused before the token is touched.
    let loose = hsm.write_pin("loose", USER_PIN);
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = hsm.config(&root.path().join("data-loose"), &loose, TOKEN);
    let out = refused_start(&hsm, &config, "loose PIN file");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("chmod 600"), "{stderr}");
}

/// Runs `strongroom serve` expecting it to refuse to start: it must exit
/// within 30 s (it is killed, and the test fails, if it starts instead).
fn refused_start(hsm: &SoftHsm, config: &Path, what: &str) -> Output {
    let mut child = Command::new(BIN)
        .env("SOFTHSM2_CONF", hsm.conf())
        .args(["serve", "--auth", "none", "--config"])
        .arg(config)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start strongroom");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("child status").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: the appliance started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("child output")
}

/// Runs [`pkcs11_provider_in_process`] in a child process of this test
/// binary, alone, with `SOFTHSM2_CONF` set for it only: SoftHSM2 reads its
/// configuration from the environment once per process, and changing the
/// environment of this multi-threaded test process is not safe.
#[test]
fn the_pkcs11_provider_round_trips_and_keeps_tenants_apart_in_a_real_token() {
    let hsm = SoftHsm::new();
    let out = Command::new(std::env::current_exe().unwrap())
        .env("SOFTHSM2_CONF", hsm.conf())
        .env(
            "STRONGROOM_TEST_PKCS11_PIN_FILE",
            hsm.dir.path().join("pin"),
        )
        .args([
            "keys::pkcs11_provider_in_process",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the in-process PKCS#11 test failed");
    assert!(
        stdout.contains("1 passed"),
        "the in-process PKCS#11 test did not run"
    );
}

#[test]
#[ignore = "run by the_pkcs11_provider_round_trips_and_keeps_tenants_apart_in_a_real_token, in its own process"]
fn pkcs11_provider_in_process() {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::object::{Attribute, AttributeType, ObjectClass};
    use cryptoki::session::UserType;
    use cryptoki::types::AuthPin;
    use strongroom::crypto::pkcs11::{Pkcs11Config, Pkcs11Keys};
    use strongroom::crypto::{Dek, Error, KeyProvider};

    let pin_file = std::env::var_os("STRONGROOM_TEST_PKCS11_PIN_FILE").expect(
        "run through the_pkcs11_provider_round_trips_and_keeps_tenants_apart_in_a_real_token",
    );
    let keys = Pkcs11Keys::open(Pkcs11Config {
        module: SOFTHSM_MODULE.into(),
        token: TOKEN.into(),
        pin_file: pin_file.into(),
    })
    .expect("token opens");
    assert_eq!(keys.kind(), "pkcs11");
    assert!(keys.versions().unwrap().is_empty());

    let object = [7u8; 16];
    let dek = Dek::generate();
    let wrapped = keys
        .wrap("acme", &dek, object)
        .expect("first wrap creates acme's key");
    assert_eq!(wrapped.kek.as_str(), "pkcs11:acme:v1");
    assert_eq!(wrapped.blob.len(), 12 + 32 + 16);
    assert_ne!(
        keys.wrap("acme", &dek, object).unwrap().blob,
        wrapped.blob,
        "fresh IVs"
    );
    let back = keys.unwrap(&wrapped, object).expect("unwraps");
    assert_eq!(format!("{back:?}"), "Dek(<redacted>)");
    // The same DEK unwrapped must derive the same object keys.
    let header = strongroom::crypto::ObjectKeys::derive(&dek, object, Default::default())
        .header_bytes()
        .to_vec();
    strongroom::crypto::ObjectKeys::open(&back, object, &header).expect("same key");

    let integrity = |r: Result<Dek, Error>| matches!(r, Err(Error::Integrity { .. }));
    assert!(integrity(keys.unwrap(&wrapped, [8; 16])), "wrong object id");
    let other = keys.wrap("beta", &dek, object).unwrap();
    let mut forged = other.clone();
    forged.kek = wrapped.kek.clone();
    assert!(
        integrity(keys.unwrap(&forged, object)),
        "another tenant's wrap under acme's key"
    );
    let mut relabelled = wrapped.clone();
    relabelled.kek = other.kek.clone();
    assert!(
        integrity(keys.unwrap(&relabelled, object)),
        "acme's wrap named as beta's"
    );
    let mut flipped = wrapped.clone();
    flipped.blob[20] ^= 1;
    assert!(integrity(keys.unwrap(&flipped, object)), "tampered");

    // What one wrap and one unwrap cost in the token (printed, not judged).
    const ROUNDS: u32 = 500;
    let started = Instant::now();
    for _ in 0..ROUNDS {
        let sealed = keys.wrap("acme", &dek, object).unwrap();
        keys.unwrap(&sealed, object).unwrap();
    }
    println!(
        "SoftHSM2: wrap + unwrap {:?} per object ({ROUNDS} rounds)",
        started.elapsed() / ROUNDS
    );

    // Rotation, retirement, destruction.
    let v2 = keys.rotate("acme").unwrap();
    assert_eq!(v2.as_str(), "pkcs11:acme:v2");
    assert_eq!(keys.wrap("acme", &dek, object).unwrap().kek, v2);
    assert!(
        keys.unwrap(&wrapped, object).is_ok(),
        "old versions still unwrap"
    );
    assert!(matches!(keys.retire(&v2), Err(Error::RetireCurrent(_))));
    keys.retire(&wrapped.kek).unwrap();
    assert!(matches!(
        keys.unwrap(&wrapped, object),
        Err(Error::UnknownKek(_))
    ));
    let listed: Vec<String> = keys
        .versions()
        .unwrap()
        .iter()
        .map(|v| v.id.to_string())
        .collect();
    assert_eq!(listed, ["pkcs11:acme:v2", "pkcs11:beta:v1"]);

    // Concurrent first wraps of a new tenant make one key.
    let keys = Arc::new(keys);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let keys = keys.clone();
            std::thread::spawn(move || keys.wrap("gamma", &Dek::generate(), object).unwrap().kek)
        })
        .collect();
    for thread in threads {
        assert_eq!(thread.join().unwrap().as_str(), "pkcs11:gamma:v1");
    }

    // In the token: AES, sensitive, never extractable, its value unreadable.
    let pkcs11 = Pkcs11::new(SOFTHSM_MODULE).unwrap();
    let _ = pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = pkcs11
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| pkcs11.get_token_info(*s).unwrap().label() == TOKEN)
        .unwrap();
    let session = pkcs11.open_ro_session(slot).unwrap();
    let _ = session.login(UserType::User, Some(&AuthPin::from(USER_PIN)));
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(b"strongroom:acme:v2".to_vec()),
        ])
        .unwrap();
    assert_eq!(found.len(), 1);
    let attributes = session
        .get_attributes(
            found[0],
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::Token,
                AttributeType::ValueLen,
            ],
        )
        .unwrap();
    let text = format!("{attributes:?}");
    for expected in [
        "Sensitive(true)",
        "Extractable(false)",
        "Token(true)",
        "ValueLen(Ulong { val: 32 })",
    ] {
        assert!(text.contains(expected), "{expected} in {text}");
    }
    let value = session
        .get_attributes(found[0], &[AttributeType::Value])
        .unwrap_or_default();
    assert!(
        !value
            .iter()
            .any(|a| matches!(a, Attribute::Value(v) if !v.is_empty())),
        "the key's value must not be readable"
    );

    // A logout (the login is shared by every session of the process) is
    // noticed on the next operation, which logs in again.
    session.logout().expect("logout");
    keys.unwrap(&other, object)
        .expect("logged in again, not an unknown key");
    session.logout().expect("logout");
    assert_eq!(
        keys.versions().unwrap().len(),
        3,
        "versions are not forgotten"
    );
    let fresh = keys
        .wrap("delta", &dek, object)
        .expect("logged in again to create a key");
    assert!(keys.unwrap(&fresh, object).is_ok());
    drop(session);

    assert_eq!(keys.destroy_tenant("acme").unwrap(), 1);
    assert!(keys.versions().unwrap().iter().all(|v| v.tenant != "acme"));
    assert!(keys.unwrap(&other, object).is_ok(), "beta is unaffected");
}
