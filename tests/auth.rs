//! Authentication and authorisation against a real appliance with tokens
//! on: scoped PASETO tokens from API keys, per-request tenant checks on
//! every tus request and download, presigned URLs, revocation, the
//! failure budget per address, the admin scope, and the token attacks a
//! client could try (expired, not yet valid, wrong audience, issuer or
//! tenant, tampered, foreign key, other token versions).

use std::time::Duration;

use strongroom::crypto::token::TokenKeys;

use crate::support::{OCTETS, Reply, TUS, TestServer, bytes, sha256_hex};

/// A client holding one bearer token.
struct Client<'a> {
    server: &'a TestServer,
    token: String,
}

impl<'a> Client<'a> {
    fn new(server: &'a TestServer, token: String) -> Client<'a> {
        Client { server, token }
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    async fn send(&self, method: &str, path: &str, extra: &[(&str, &str)], body: Vec<u8>) -> Reply {
        let bearer = self.bearer();
        let mut headers = vec![("Authorization", bearer.as_str())];
        headers.extend_from_slice(extra);
        self.server.send(method, path, &headers, body).await
    }

    async fn create(&self, length: u64) -> Reply {
        let length = length.to_string();
        self.send(
            "POST",
            "/files/",
            &[TUS, ("Upload-Length", &length)],
            Vec::new(),
        )
        .await
    }

    /// Creates and returns the upload's path.
    async fn created(&self, length: u64) -> String {
        let reply = self.create(length).await;
        reply.assert_status(201);
        reply.header("location").expect("Location").to_owned()
    }

    async fn patch(&self, path: &str, offset: u64, data: &[u8]) -> Reply {
        let offset = offset.to_string();
        self.send(
            "PATCH",
            path,
            &[TUS, OCTETS, ("Upload-Offset", &offset)],
            data.to_vec(),
        )
        .await
    }

    async fn head(&self, path: &str) -> Reply {
        self.send("HEAD", path, &[TUS], Vec::new()).await
    }

    async fn delete(&self, path: &str) -> Reply {
        self.send("DELETE", path, &[TUS], Vec::new()).await
    }

    async fn get(&self, path: &str) -> Reply {
        self.send("GET", path, &[], Vec::new()).await
    }
}

fn id_of(path: &str) -> &str {
    path.rsplit('/').next().expect("an id")
}

/// A second tenant with its own API key, made through the CLI's store.
fn add_tenant(server: &TestServer, tenant: &str) -> String {
    let store = server.appliance().auth.credentials();
    store.add_tenant(tenant).expect("tenant added");
    store
        .create_key(tenant, false, None)
        .expect("key created")
        .secret
}

async fn server() -> TestServer {
    TestServer::start_with_tokens(|_| {}).await
}

#[tokio::test]
async fn requests_without_a_token_get_401_and_the_bearer_challenge() {
    let server = server().await;
    let reply = server
        .send(
            "POST",
            "/files/",
            &[TUS, ("Upload-Length", "5")],
            Vec::new(),
        )
        .await;
    reply.assert_problem(401, "authentication_required");
    assert_eq!(
        reply.header("www-authenticate"),
        Some(r#"Bearer realm="strongroom""#)
    );
    let reply = server
        .send(
            "POST",
            "/files/",
            &[
                TUS,
                ("Upload-Length", "5"),
                ("Authorization", "Bearer nonsense"),
            ],
            Vec::new(),
        )
        .await;
    reply.assert_problem(401, "token_invalid");
    assert!(
        reply
            .header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );
    // tus capability discovery needs no credentials.
    server
        .send("OPTIONS", "/files/", &[TUS], Vec::new())
        .await
        .assert_status(204);
}

#[tokio::test]
async fn an_upload_token_uploads_and_a_read_token_downloads_that_object_only() {
    let server = server().await;
    let uploader = Client::new(&server, server.admin_token(&["upload:create"]).await);
    let data = bytes(200_000, 1);
    let path = uploader.created(data.len() as u64).await;
    uploader
        .patch(&path, 0, &data)
        .await
        .assert_offset(data.len() as u64);
    uploader.head(&path).await.assert_status(200);

    let id = id_of(&path);
    uploader
        .get(&path)
        .await
        .assert_problem(403, "scope_insufficient");
    let reader = Client::new(
        &server,
        server.admin_token(&[&format!("object:read:{id}")]).await,
    );
    let got = reader.get(&format!("/objects/{id}")).await;
    got.assert_status(200);
    assert_eq!(sha256_hex(&got.body), sha256_hex(&data));
    reader
        .create(10)
        .await
        .assert_problem(403, "scope_insufficient");
    reader.head(&path).await.assert_status(403);

    let other = uploader.created(3).await;
    reader
        .get(&format!("/objects/{}", id_of(&other)))
        .await
        .assert_problem(403, "scope_insufficient");
}

#[tokio::test]
async fn another_tenants_upload_and_object_are_invisible() {
    let server = server().await;
    let owner = Client::new(&server, server.admin_token(&["upload:create"]).await);
    let path = owner.created(10).await;
    owner.patch(&path, 0, b"01234").await.assert_offset(5);
    let done = owner.created(3).await;
    owner.patch(&done, 0, b"abc").await.assert_offset(3);

    let key = add_tenant(&server, "intruder");
    let intruder = Client::new(&server, server.token(&key, &["upload:create"]).await);
    intruder.head(&path).await.assert_status(404);
    intruder
        .patch(&path, 5, b"EVIL!")
        .await
        .assert_problem(404, "upload_not_found");
    intruder
        .delete(&path)
        .await
        .assert_problem(404, "upload_not_found");
    let reader = Client::new(
        &server,
        server
            .token(&key, &[&format!("object:read:{}", id_of(&done))])
            .await,
    );
    reader
        .get(&format!("/objects/{}", id_of(&done)))
        .await
        .assert_problem(404, "upload_not_found");
    // A final concatenation cannot borrow another tenant's parts.
    let part = owner
        .send(
            "POST",
            "/files/",
            &[TUS, ("Upload-Length", "2"), ("Upload-Concat", "partial")],
            Vec::new(),
        )
        .await;
    let part_url = server.url(part.header("location").unwrap());
    intruder
        .send(
            "POST",
            "/files/",
            &[TUS, ("Upload-Concat", &format!("final;{part_url}"))],
            Vec::new(),
        )
        .await
        .assert_problem(400, "invalid_concat");

    // The owner's upload is untouched.
    owner.head(&path).await.assert_offset(5);
    owner.patch(&path, 5, b"56789").await.assert_offset(10);
}

#[tokio::test]
async fn a_resume_token_acts_on_its_one_upload() {
    let server = server().await;
    let creator = Client::new(&server, server.admin_token(&["upload:create"]).await);
    let mine = creator.created(6).await;
    let other = creator.created(6).await;
    let scope = format!("upload:resume:{}", id_of(&mine));
    let resumer = Client::new(&server, server.admin_token(&[&scope]).await);
    resumer.patch(&mine, 0, b"abc").await.assert_offset(3);
    resumer.head(&mine).await.assert_offset(3);
    resumer.head(&other).await.assert_status(403);
    resumer
        .patch(&other, 0, b"abc")
        .await
        .assert_problem(403, "scope_insufficient");
    resumer
        .create(1)
        .await
        .assert_problem(403, "scope_insufficient");
    resumer
        .delete(&other)
        .await
        .assert_problem(403, "scope_insufficient");
    resumer.delete(&mine).await.assert_status(204);
}

/// Claims as the appliance writes them, to forge variants with its key.
fn claims(audience: &str, issuer: &str, tenant: &str, nbf: u64, exp: u64) -> Vec<u8> {
    let time = |secs: u64| {
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(secs))
            .to_string()
    };
    serde_json::json!({
        "iss": issuer, "aud": audience, "sub": "test", "tenant": tenant,
        "scopes": ["upload:create"], "iat": time(nbf), "nbf": time(nbf), "exp": time(exp),
        "jti": "00112233445566778899aabbccddeeff",
    })
    .to_string()
    .into_bytes()
}

fn now() -> u64 {
    strongroom::ingest::now_secs()
}

#[tokio::test]
async fn forged_expired_premature_and_foreign_tokens_are_refused() {
    let server = server().await;
    let keys = TokenKeys::open_or_create(&server.data_dir().join("auth/token-keys")).unwrap();
    let sign = |claims: Vec<u8>| keys.current().sign(&claims);
    let now = now();
    let attempt = |token: String| {
        let server = &server;
        async move { Client::new(server, token).create(1).await }
    };

    // The server's own key, with honest claims, works: the forgeries below
    // fail for what they change, not for how they were made.
    attempt(sign(claims(
        "strongroom",
        "strongroom",
        "default",
        now,
        now + 600,
    )))
    .await
    .assert_status(201);
    attempt(sign(claims(
        "strongroom",
        "strongroom",
        "default",
        now - 900,
        now - 120,
    )))
    .await
    .assert_problem(401, "token_expired");
    attempt(sign(claims(
        "strongroom",
        "strongroom",
        "default",
        now + 600,
        now + 900,
    )))
    .await
    .assert_problem(401, "token_invalid");
    attempt(sign(claims(
        "elsewhere",
        "strongroom",
        "default",
        now,
        now + 600,
    )))
    .await
    .assert_problem(401, "token_invalid");
    attempt(sign(claims(
        "strongroom",
        "mallory",
        "default",
        now,
        now + 600,
    )))
    .await
    .assert_problem(401, "token_invalid");
    attempt(sign(claims(
        "strongroom",
        "strongroom",
        "no-such-tenant",
        now,
        now + 600,
    )))
    .await
    .assert_problem(401, "token_invalid");

    let good = server.admin_token(&["upload:create"]).await;
    // Tamper with the payload (the tenant is in there) and the signature.
    let body_start = "v4.public.".len();
    for at in [body_start + 10, good.rfind('.').unwrap() - 5] {
        let mut forged = good.clone().into_bytes();
        forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
        attempt(String::from_utf8(forged).unwrap())
            .await
            .assert_problem(401, "token_invalid");
    }
    // Other PASETO versions and purposes, and a key of our own making.
    for forged in [
        good.replacen("v4.public.", "v4.local.", 1),
        good.replacen("v4.public.", "v3.public.", 1),
        good.replacen("v4.public.", "v2.public.", 1),
    ] {
        attempt(forged).await.assert_problem(401, "token_invalid");
    }
    let dir = tempfile::tempdir().unwrap();
    let mallory = TokenKeys::open_or_create(dir.path()).unwrap();
    attempt(mallory.current().sign(&claims(
        "strongroom",
        "strongroom",
        "default",
        now,
        now + 600,
    )))
    .await
    .assert_problem(401, "token_invalid");
}

#[tokio::test]
async fn revoked_tokens_and_signing_keys_stop_working() {
    let server = server().await;
    let admin = server.admin_token(&["admin"]).await;
    let key = server.admin_key.clone().unwrap();
    let issue = || {
        let server = &server;
        let authorization = format!("Bearer {key}");
        async move {
            let reply = server
                .send(
                    "POST",
                    "/auth/token",
                    &[("Authorization", &authorization)],
                    r#"{"scopes":["upload:create"]}"#,
                )
                .await;
            reply.json()
        }
    };
    let doomed = issue().await;
    let kept = issue().await;
    let revoke = |body: serde_json::Value| {
        let http = server.http.clone();
        let url = server.admin_url("/admin/tokens/revoke");
        let admin = admin.clone();
        async move {
            http.post(url)
                .bearer_auth(admin)
                .body(body.to_string())
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(
        revoke(serde_json::json!({ "token_id": doomed["token_id"] })).await,
        200
    );
    let token = |v: &serde_json::Value| v["token"].as_str().unwrap().to_owned();
    Client::new(&server, token(&doomed))
        .create(1)
        .await
        .assert_problem(401, "token_revoked");
    Client::new(&server, token(&kept))
        .create(1)
        .await
        .assert_status(201);

    // Revoking the signing key ends every token it signed; new ones are
    // signed by a fresh key.
    assert_eq!(
        revoke(serde_json::json!({ "key_id": kept["key_id"] })).await,
        200
    );
    Client::new(&server, token(&kept))
        .create(1)
        .await
        .assert_problem(401, "token_revoked");
    let fresh = issue().await;
    assert_ne!(fresh["key_id"], kept["key_id"]);
    Client::new(&server, token(&fresh))
        .create(1)
        .await
        .assert_status(201);
}

#[tokio::test]
async fn presigned_urls_read_one_object_until_they_expire() {
    let server = server().await;
    let uploader = Client::new(&server, server.admin_token(&["upload:create"]).await);
    let data = bytes(70_000, 7);
    let path = uploader.created(data.len() as u64).await;
    uploader.patch(&path, 0, &data).await.assert_status(204);
    let id = id_of(&path).to_owned();
    let other = uploader.created(1).await;
    uploader.patch(&other, 0, b"x").await.assert_status(204);

    let reader = Client::new(
        &server,
        server.admin_token(&[&format!("object:read:{id}")]).await,
    );
    let presign = |ttl: u64| {
        let body = serde_json::json!({ "object": id, "ttl_seconds": ttl }).to_string();
        let reader = &reader;
        async move {
            reader
                .send("POST", "/auth/presign", &[], body.into_bytes())
                .await
        }
    };
    let answer = presign(60).await;
    answer.assert_status(200);
    let url = answer.json()["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("/objects/{id}?")), "{url}");
    let fetched = server.send("GET", &url, &[], Vec::new()).await;
    fetched.assert_status(200);
    assert_eq!(fetched.body, data);

    // Bound to the object, the tenant and the expiry it was signed for.
    let elsewhere = url.replacen(&id, id_of(&other), 1);
    server
        .send("GET", &elsewhere, &[], Vec::new())
        .await
        .assert_problem(403, "presign_invalid");
    let relabelled = url.replacen("tenant=default", "tenant=evil", 1);
    server
        .send("GET", &relabelled, &[], Vec::new())
        .await
        .assert_problem(403, "presign_invalid");
    let mut tampered = url.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    server
        .send("GET", &tampered, &[], Vec::new())
        .await
        .assert_problem(403, "presign_invalid");
    // It reads; it does not write.
    server
        .send(
            "DELETE",
            &url.replacen("/objects/", "/files/", 1),
            &[TUS],
            Vec::new(),
        )
        .await
        .assert_problem(401, "authentication_required");
    // A token without object:read for it gets no URL.
    uploader
        .send(
            "POST",
            "/auth/presign",
            &[],
            serde_json::json!({ "object": id }).to_string().into_bytes(),
        )
        .await
        .assert_problem(403, "scope_insufficient");

    let short = presign(1).await.json()["url"].as_str().unwrap().to_owned();
    server
        .send("GET", &short, &[], Vec::new())
        .await
        .assert_status(200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    server
        .send("GET", &short, &[], Vec::new())
        .await
        .assert_problem(403, "presign_expired");
}

#[tokio::test]
async fn guessing_is_cut_off_per_address_with_retry_after() {
    let server = TestServer::start_with_tokens(|config| config.auth.failures_per_minute = 5).await;
    let good = server.admin_token(&["upload:create"]).await;
    for _ in 0..5 {
        Client::new(&server, "v4.public.guess".into())
            .create(1)
            .await
            .assert_problem(401, "token_invalid");
    }
    let blocked = Client::new(&server, good).create(1).await;
    blocked.assert_problem(429, "authentication_rate_limited");
    let retry: u64 = blocked.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
}

#[tokio::test]
async fn api_keys_are_exchanged_not_sent_and_only_admin_keys_get_admin() {
    let server = server().await;
    let admin_key = server.admin_key.clone().unwrap();
    Client::new(&server, admin_key.clone())
        .create(1)
        .await
        .assert_problem(401, "api_key_not_a_token");
    let key = add_tenant(&server, "acme");
    let reply = server
        .send(
            "POST",
            "/auth/token",
            &[("Authorization", &format!("Bearer {key}"))],
            r#"{"scopes":["admin"]}"#,
        )
        .await;
    reply.assert_problem(403, "scope_not_grantable");
    let reply = server
        .send(
            "POST",
            "/auth/token",
            &[(
                "Authorization",
                "Bearer srk_0011223344556677_not-a-real-key-at-all-not-a-real-key-at-all",
            )],
            "",
        )
        .await;
    reply.assert_problem(401, "credential_invalid");
    let reply = server
        .send(
            "POST",
            "/auth/token",
            &[("Authorization", &format!("Bearer {key}"))],
            r#"{"scopes":["object:read:*"]}"#,
        )
        .await;
    reply.assert_problem(400, "token_request_invalid");
    // Defaults: upload:create for 15 minutes.
    let reply = server
        .send(
            "POST",
            "/auth/token",
            &[("Authorization", &format!("Bearer {key}"))],
            "",
        )
        .await;
    reply.assert_status(200);
    let issued = reply.json();
    assert_eq!(issued["scopes"], serde_json::json!(["upload:create"]));
    assert_eq!(issued["tenant"], "acme");
    let ttl = issued["expires_at"].as_u64().unwrap() - now();
    assert!((895..=900).contains(&ttl), "{ttl}");
}

#[tokio::test]
async fn the_admin_api_needs_the_admin_scope() {
    let server = server().await;
    let get = |token: Option<String>| {
        let request = server.http.get(server.admin_url("/admin/tenants"));
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        async move { request.send().await.unwrap() }
    };
    assert_eq!(get(None).await.status(), 401);
    let upload = server.admin_token(&["upload:create"]).await;
    assert_eq!(get(Some(upload)).await.status(), 403);
    let admin = server.admin_token(&["admin"]).await;
    let answer = get(Some(admin)).await;
    assert_eq!(answer.status(), 200);
    let listing: serde_json::Value =
        serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
    assert_eq!(listing["tenants"], serde_json::json!(["default"]));
    assert!(
        !listing.to_string().contains("sha256"),
        "no key hashes: {listing}"
    );
    // Health probes stay open.
    let health = server
        .http
        .get(server.admin_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn an_upload_finished_after_its_token_expired_is_kept_and_completed_later() {
    let server = TestServer::start_with_tokens(|config| config.auth.leeway = Duration::ZERO).await;
    let key = server.admin_key.clone().unwrap();
    let client = Client::new(&server, server.admin_token(&["upload:create"]).await);
    let data = bytes(100_000, 3);
    let path = client.created(data.len() as u64).await;
    client
        .patch(&path, 0, &data[..50_000])
        .await
        .assert_offset(50_000);
    // Now one that expires mid-request: the body arrives, the commit does not.
    let ttl2 = server
        .send(
            "POST",
            "/auth/token",
            &[("Authorization", &format!("Bearer {key}"))],
            r#"{"scopes":["upload:create"],"ttl_seconds":1}"#,
        )
        .await
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    let tail = data[50_000..].to_vec();
    tokio::spawn(async move {
        tx.send(Ok(tail[..10].to_vec())).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2200)).await;
        tx.send(Ok(tail[10..].to_vec())).await.unwrap();
    });
    let body = reqwest::Body::wrap_stream(tokio_stream(rx));
    let answer = server
        .http
        .patch(server.url(&path))
        .header("Authorization", format!("Bearer {ttl2}"))
        .header("Tus-Resumable", "1.0.0")
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Offset", "50000")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    let problem: serde_json::Value =
        serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
    assert_eq!(problem["code"], "token_expired");

    // Nothing is visible yet; a fresh token's HEAD completes the upload.
    let fresh = Client::new(&server, server.admin_token(&["upload:create"]).await);
    let head = fresh.head(&path).await;
    head.assert_offset(data.len() as u64);
    assert_eq!(head.header("strongroom-disposition"), Some("released"));
    let reader = Client::new(
        &server,
        server
            .admin_token(&[&format!("object:read:{}", id_of(&path))])
            .await,
    );
    assert_eq!(reader.get(&path).await.body, data);
}

fn tokio_stream(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn tenants_and_keys_made_by_the_cli_work_at_once_and_revoke_at_once() {
    let server = server().await;
    let data_dir = server.data_dir();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_strongroom"))
            .args(args)
            .arg("--data-dir")
            .arg(&data_dir)
            .output()
            .expect("run strongroom");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    cli(&["tenant", "add", "acme"]);
    let created: serde_json::Value =
        serde_json::from_str(&cli(&["key", "create", "--tenant", "acme", "--json"])).unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let token = server.token(&key, &["upload:create"]).await;
    Client::new(&server, token)
        .create(1)
        .await
        .assert_status(201);
    let listed = cli(&["key", "list"]);
    assert!(listed.contains(created["id"].as_str().unwrap()), "{listed}");
    assert!(!listed.contains(&key), "keys are never listed");

    cli(&["key", "revoke", created["id"].as_str().unwrap()]);
    let reply = server
        .send(
            "POST",
            "/auth/token",
            &[("Authorization", &format!("Bearer {key}"))],
            "",
        )
        .await;
    reply.assert_problem(401, "credential_invalid");
}

/// The quick start with tokens on: the first start prints an admin API key
/// once on stdout, it works at the token endpoint, a restart prints none,
/// and no key, token or signature reaches the log (debug level), whatever
/// the requests got.
#[tokio::test]
async fn first_start_shows_the_admin_key_once_and_no_secret_is_ever_logged() {
    use crate::support::process::Binary;

    let dir = tempfile::tempdir().unwrap();
    let config = crate::support::process::config_in(dir.path());
    let log = dir.path().join("server.log");
    let debug = [("RUST_LOG", "debug")];
    let start = |stdout: std::path::PathBuf| {
        let (config, log) = (&config, &log);
        async move {
            Binary::serve_with_tokens(config, &debug, &stdout, log, Duration::from_secs(60)).await
        }
    };
    let (mut binary, key) = start(dir.path().join("stdout.txt")).await;
    let key = key.unwrap_or_else(|| panic!("no API key on stdout"));

    let http = reqwest::Client::new();
    let token_answer: serde_json::Value = serde_json::from_slice(
        &http
            .post(binary.url("/auth/token"))
            .bearer_auth(&key)
            .body(r#"{"scopes":["upload:create"]}"#)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    let token = token_answer["token"].as_str().expect("a token").to_owned();
    let created = http
        .post(binary.url("/files/"))
        .bearer_auth(&token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", "3")
        .header("Upload-Metadata", "filename c2VjcmV0LXBsYW5zLnBkZg==")
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    // Failures log too: a tampered token, a key sent as a token, a wrong key.
    let mut tampered = token.clone();
    tampered.pop();
    for bearer in [
        tampered.as_str(),
        key.as_str(),
        "srk_0011223344556677_wrongwrongwrongwrongwrongwrongwrongwrong",
    ] {
        let answer = http
            .post(binary.url("/files/"))
            .bearer_auth(bearer)
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Length", "3")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 401);
        let body = answer.text().await.unwrap();
        assert!(!body.contains(bearer), "the credential is echoed: {body}");
    }
    binary.kill();

    let (mut second, shown_again) = start(dir.path().join("stdout-2.txt")).await;
    second.kill();
    assert_eq!(shown_again, None, "the key is shown twice");

    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("token issued"),
        "the log is at debug level:\n{logged}"
    );
    let signature = &token[token.len() - 40..];
    let key_secret = key.rsplit('_').next().unwrap();
    for secret in [token.as_str(), signature, key_secret, "secret-plans.pdf"] {
        assert!(!logged.contains(secret), "{secret:?} reached the log");
    }
    let stored = std::fs::read_to_string(dir.path().join("data/auth/credentials.json")).unwrap();
    assert!(
        !stored.contains(key_secret),
        "the key is stored only hashed"
    );
}

#[tokio::test]
async fn deleting_a_tenant_ends_its_access_and_shreds_its_objects_only() {
    let server = server().await;
    let key = add_tenant(&server, "leaving");
    let leaving = Client::new(&server, server.token(&key, &["upload:create"]).await);
    let gone = leaving.created(4).await;
    leaving.patch(&gone, 0, b"bye!").await.assert_offset(4);
    let stays = Client::new(&server, server.admin_token(&["upload:create"]).await);
    let kept = stays.created(4).await;
    stays.patch(&kept, 0, b"stay").await.assert_offset(4);

    let admin = server.admin_token(&["admin"]).await;
    let answer = server
        .http
        .delete(server.admin_url("/admin/tenants/leaving"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let report: serde_json::Value = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
    assert_eq!(report["objects_removed"], 1, "{report}");
    assert!(report["keys_destroyed"].as_u64().unwrap() >= 1, "{report}");

    leaving.head(&gone).await.assert_status(401);
    let record = server.appliance().ingest.census().await.unwrap();
    assert_eq!(
        record.records, 1,
        "only the other tenant's object is left: {record:?}"
    );
    let reader = Client::new(
        &server,
        server
            .admin_token(&[&format!("object:read:{}", id_of(&kept))])
            .await,
    );
    assert_eq!(reader.get(&kept).await.body, b"stay");
    let again = server
        .http
        .delete(server.admin_url("/admin/tenants/leaving"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
}
