//! Per-tenant rate limits and quotas against a real appliance with tokens
//! on: request and new-upload rates (429 `rate_limited` with a
//! `Retry-After` that is long enough), upload bodies at once (429
//! `too_many_concurrent_uploads`), quotas at creation, as deferred-length
//! bytes arrive and at finalize (403 `quota_exceeded`), the usage rebuilt
//! after a restart, the ingress rate divided among tenants by share, and a
//! policy reload changing limits for the next request.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytesize::ByteSize;
use strongroom::config::Config;

use crate::support::feed::{fed_body, spawn_patch};
use crate::support::{OCTETS, Reply, TUS, TestServer, bytes, sha256_hex};

/// A client holding one tenant's API key and an `upload:create` token.
#[derive(Clone)]
struct Client<'a> {
    server: &'a TestServer,
    key: String,
    bearer: String,
}

impl<'a> Client<'a> {
    /// A new tenant with an API key and an `upload:create` token.
    async fn tenant(server: &'a TestServer, name: &str) -> Client<'a> {
        let store = server.appliance().auth.credentials();
        store.add_tenant(name).expect("tenant added");
        let key = store.create_key(name, false, None).expect("key created");
        let token = server.token(&key.secret, &["upload:create"]).await;
        Client {
            server,
            key: key.secret,
            bearer: format!("Bearer {token}"),
        }
    }

    async fn send(&self, method: &str, path: &str, extra: &[(&str, &str)], body: Vec<u8>) -> Reply {
        let mut headers = vec![("Authorization", self.bearer.as_str()), TUS];
        headers.extend_from_slice(extra);
        self.server.send(method, path, &headers, body).await
    }

    async fn create(&self, length: u64) -> Reply {
        let length = length.to_string();
        self.send("POST", "/files/", &[("Upload-Length", &length)], Vec::new())
            .await
    }

    /// Creates and returns the upload's path.
    async fn created(&self, length: u64) -> String {
        let reply = self.create(length).await;
        reply.assert_status(201);
        reply.header("location").expect("Location").to_owned()
    }

    async fn created_deferred(&self) -> String {
        let reply = self
            .send(
                "POST",
                "/files/",
                &[("Upload-Defer-Length", "1")],
                Vec::new(),
            )
            .await;
        reply.assert_status(201);
        reply.header("location").expect("Location").to_owned()
    }

    async fn patch(&self, path: &str, offset: u64, data: &[u8]) -> Reply {
        self.patch_with(path, offset, data, &[]).await
    }

    async fn patch_with(
        &self,
        path: &str,
        offset: u64,
        data: &[u8],
        extra: &[(&str, &str)],
    ) -> Reply {
        let offset = offset.to_string();
        let mut headers = vec![OCTETS, ("Upload-Offset", offset.as_str())];
        headers.extend_from_slice(extra);
        self.send("PATCH", path, &headers, data.to_vec()).await
    }

    async fn head(&self, path: &str) -> Reply {
        self.send("HEAD", path, &[], Vec::new()).await
    }

    async fn delete(&self, path: &str) -> Reply {
        self.send("DELETE", path, &[], Vec::new()).await
    }

    /// Downloads the object of the upload at `path`.
    async fn download(&self, path: &str) -> Reply {
        let id = path.rsplit('/').next().expect("an upload id");
        let scope = format!("object:read:{id}");
        let token = self.server.token(&self.key, &[&scope]).await;
        let bearer = format!("Bearer {token}");
        let headers = [("Authorization", bearer.as_str())];
        let path = format!("/objects/{id}");
        self.server.send("GET", &path, &headers, Vec::new()).await
    }

    /// Creates an upload of `data` and sends it in one PATCH.
    async fn upload(&self, data: &[u8]) -> String {
        let path = self.created(data.len() as u64).await;
        self.patch(&path, 0, data)
            .await
            .assert_offset(data.len() as u64);
        path
    }
}

/// The problem body's extension members.
fn problem(reply: &Reply) -> serde_json::Value {
    reply.json()
}

fn retry_after(reply: &Reply) -> u64 {
    reply
        .header("retry-after")
        .expect("Retry-After on a 429")
        .parse()
        .expect("Retry-After in whole seconds")
}

async fn server(tweak: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_with_tokens(tweak).await
}

/// A server whose `[plugins] policy` is `text` (no plugin in any chain: the
/// policy only sets limits), written where it outlives the server.
async fn server_with_policy(text: &str, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let dir = tempfile::tempdir().expect("policy dir");
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, text).expect("policy written");
    let server = server(|config| {
        config.plugins.policy = Some(path);
        config.plugins.workers = 2;
        tweak(config);
    })
    .await;
    // Reloads read the file again.
    std::mem::forget(dir);
    server
}

fn policy_path(server: &TestServer) -> PathBuf {
    server.config.plugins.policy.clone().expect("policy set")
}

async fn reload_policy(server: &TestServer, path: &Path, text: &str) {
    std::fs::write(path, text).expect("policy rewritten");
    let admin = server.admin_token(&["admin"]).await;
    let reply = server
        .http
        .post(server.admin_url("/admin/policy/reload"))
        .bearer_auth(admin)
        .send()
        .await
        .expect("reload sent");
    assert_eq!(
        reply.status(),
        200,
        "{}",
        reply.text().await.unwrap_or_default()
    );
}

#[tokio::test]
async fn requests_past_the_burst_get_429_until_the_retry_after_has_passed() {
    let server = server(|config| {
        config.limits.requests_per_second = 1.0;
        config.limits.requests_burst = 5;
    })
    .await;
    let alpha = Client::tenant(&server, "alpha").await;
    let beta = Client::tenant(&server, "beta").await;

    let path = alpha.created(10).await;
    let started = Instant::now();
    let mut passed = 1;
    let mut refused = Vec::new();
    for _ in 0..8 {
        let reply = alpha.head(&path).await;
        match reply.status.as_u16() {
            200 => passed += 1,
            429 => refused.push(reply),
            other => panic!("unexpected status {other}"),
        }
    }
    let elapsed = started.elapsed();
    println!(
        "alpha: {passed} of 9 requests passed in {elapsed:?}, {} refused",
        refused.len()
    );
    // The burst, plus at most what refilled at 1/s meanwhile.
    assert!(passed >= 5, "{passed} passed");
    assert!(
        passed <= 5 + elapsed.as_secs() as usize + 1,
        "{passed} passed"
    );
    let last = refused.last().expect("some requests refused");
    let wait = retry_after(last);
    assert_eq!(wait, 1, "one token at 1/s comes within a second");
    // HEAD answers carry no body: the problem itself, on a POST.
    let reply = alpha.create(10).await;
    reply.assert_problem(429, "rate_limited");
    assert_eq!(problem(&reply)["limit"], "requests_per_second");

    // Another tenant is unaffected meanwhile: its own burst passes whole.
    let other = beta.created(10).await;
    for _ in 0..4 {
        beta.head(&other).await.assert_status(200);
    }

    tokio::time::sleep(Duration::from_secs(wait)).await;
    alpha.head(&path).await.assert_status(200);
}

#[tokio::test]
async fn new_uploads_past_their_burst_get_429_under_concurrency() {
    let server = server(|config| {
        // Refills one token in 100 s: within the test, exactly the burst.
        config.limits.uploads_per_second = 0.01;
        config.limits.uploads_burst = 5;
    })
    .await;
    let alpha = Client::tenant(&server, "alpha").await;
    let beta = Client::tenant(&server, "beta").await;

    let replies = futures_util::future::join_all((0..12).map(|_| alpha.create(100))).await;
    let created = replies.iter().filter(|r| r.status == 201).count();
    let refused: Vec<&Reply> = replies.iter().filter(|r| r.status == 429).collect();
    println!(
        "12 concurrent creations: {created} created, {} refused",
        refused.len()
    );
    assert_eq!(created, 5);
    assert_eq!(refused.len(), 7);
    for reply in &refused {
        reply.assert_problem(429, "rate_limited");
        assert_eq!(problem(reply)["limit"], "uploads_per_second");
        // (1 token) / (0.01 per second), rounded up.
        let wait = retry_after(reply);
        assert!((99..=100).contains(&wait), "Retry-After {wait}");
    }
    alpha.create(3).await.assert_problem(429, "rate_limited");
    // Only creations are limited: a created upload still takes its bytes,
    // and another tenant still creates.
    let path = replies
        .iter()
        .find(|r| r.status == 201)
        .and_then(|r| r.header("location"))
        .expect("a created upload");
    alpha
        .patch(path, 0, &bytes(100, 1))
        .await
        .assert_offset(100);
    beta.created(3).await;
}

#[tokio::test]
async fn upload_bodies_past_the_concurrency_limit_get_429() {
    let server = server(|config| config.limits.concurrent_uploads = 3).await;
    let alpha = Client::tenant(&server, "alpha").await;
    let data = bytes(4096, 7);
    let mut paths = Vec::new();
    for _ in 0..8 {
        paths.push(alpha.created(data.len() as u64).await);
    }
    // Eight PATCHes whose bodies stay open until the test feeds them.
    let mut feeds = Vec::new();
    let mut patches = Vec::new();
    for path in &paths {
        let (feed, body) = fed_body();
        let bearer = alpha.bearer.clone();
        let auth = [("Authorization", bearer.as_str())];
        patches.push(spawn_patch(&server, path, 0, &auth, body));
        feeds.push(feed);
    }
    // The refused ones answer at once, without reading their bodies.
    let deadline = Instant::now() + Duration::from_secs(10);
    while patches.iter().filter(|p| p.is_finished()).count() < 5 {
        assert!(Instant::now() < deadline, "refusals did not arrive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let open: Vec<usize> = (0..8).filter(|&i| !patches[i].is_finished()).collect();
    assert_eq!(open.len(), 3, "three bodies are being received");
    // Their slots are held: another body is refused too.
    let late = alpha.patch(&paths[open[0]], 0, &data).await;
    late.assert_problem(429, "too_many_concurrent_uploads");
    assert_eq!(retry_after(&late), 1);
    for (i, feed) in feeds.into_iter().enumerate() {
        if open.contains(&i) {
            feed.send(data.clone()).await.expect("fed");
        }
    }
    let mut ok = 0;
    let mut limited = 0;
    for patch in patches {
        let reply = patch.await.expect("task").expect("a reply");
        match reply.status.as_u16() {
            204 => ok += 1,
            429 => {
                reply.assert_problem(429, "too_many_concurrent_uploads");
                assert_eq!(problem(&reply)["limit"], "concurrent_uploads");
                limited += 1;
            }
            other => panic!("unexpected {other}: {reply:?}"),
        }
    }
    println!("8 concurrent bodies, limit 3: {ok} received, {limited} refused");
    assert_eq!((ok, limited), (3, 5));
    // The slots are free again.
    let refused_path = (0..8)
        .find(|i| !open.contains(i))
        .expect("a refused upload");
    alpha
        .patch(&paths[refused_path], 0, &data)
        .await
        .assert_offset(data.len() as u64);
}

#[tokio::test]
async fn creation_over_the_quota_is_refused_committed_bytes_count_and_deleting_frees_them() {
    let server = server(|config| {
        config.limits.quota = ByteSize::b(1000);
        config.uploads.max_size = ByteSize::b(5000);
    })
    .await;
    let alpha = Client::tenant(&server, "alpha").await;

    let reply = alpha.create(1001).await;
    reply.assert_problem(403, "quota_exceeded");
    let body = problem(&reply);
    assert_eq!(body["check"], "creation");
    assert_eq!(body["quota_bytes"], 1000);
    assert_eq!(body["needed_bytes"], 1001);
    // Over the server's maximum is another error, another status.
    alpha
        .create(5001)
        .await
        .assert_problem(413, "upload_too_large");

    let first = alpha.upload(&bytes(600, 1)).await;
    let reply = alpha.create(401).await;
    reply.assert_problem(403, "quota_exceeded");
    assert_eq!(problem(&reply)["used_bytes"], 600);
    // Staged bytes count too.
    let staged = alpha.created(400).await;
    alpha
        .patch(&staged, 0, &bytes(100, 2))
        .await
        .assert_offset(100);
    alpha
        .create(301)
        .await
        .assert_problem(403, "quota_exceeded");
    alpha.created(300).await;

    // Another tenant has its own quota.
    let beta = Client::tenant(&server, "beta").await;
    beta.created(1000).await;

    alpha.delete(&first).await.assert_status(204);
    alpha.delete(&staged).await.assert_status(204);
    alpha.created(1000).await;
}

#[tokio::test]
async fn a_deferred_length_upload_is_cut_where_it_reaches_the_quota() {
    let server = server(|config| config.limits.quota = ByteSize::b(100_000)).await;
    let alpha = Client::tenant(&server, "alpha").await;
    let data = bytes(150_000, 3);
    let path = alpha.created_deferred().await;
    let reply = alpha.patch(&path, 0, &data).await;
    reply.assert_problem(403, "quota_exceeded");
    assert_eq!(problem(&reply)["check"], "body");
    // The bytes up to the quota are kept, exactly.
    let offset = alpha.head(&path).await;
    assert_eq!(offset.header("upload-offset"), Some("100000"));
    alpha
        .patch(&path, 100_000, b"x")
        .await
        .assert_problem(403, "quota_exceeded");
    // No room for another deferred upload, nor a declared one.
    alpha
        .send(
            "POST",
            "/files/",
            &[("Upload-Defer-Length", "1")],
            Vec::new(),
        )
        .await
        .assert_problem(403, "quota_exceeded");
    alpha.create(1).await.assert_problem(403, "quota_exceeded");
    // Declaring the length the bytes have completes it within the quota.
    alpha
        .patch_with(&path, 100_000, b"", &[("Upload-Length", "100000")])
        .await
        .assert_offset(100_000);
    let got = alpha.download(&path).await;
    got.assert_status(200);
    assert_eq!(sha256_hex(&got.body), sha256_hex(&data[..100_000]));
}

#[tokio::test]
async fn of_two_uploads_that_do_not_fit_together_the_second_to_finish_is_refused_and_kept() {
    let mut server = server(|config| config.limits.quota = ByteSize::b(1000)).await;
    let data = [bytes(600, 4), bytes(600, 5)];
    let (won, lost, before) = {
        let alpha = Client::tenant(&server, "alpha").await;
        // Both fit when they are created: nothing is held yet.
        let paths = [alpha.created(600).await, alpha.created(600).await];
        // Known lengths: their bytes are not refused as they arrive...
        for (path, data) in paths.iter().zip(&data) {
            alpha.patch(path, 0, &data[..599]).await.assert_offset(599);
        }
        // ...but only one of them can commit. Both last bytes at once.
        let (a, b) = tokio::join!(
            alpha.patch(&paths[0], 599, &data[0][599..]),
            alpha.patch(&paths[1], 599, &data[1][599..]),
        );
        let (won, lost, refusal) = match (a.status.as_u16(), b.status.as_u16()) {
            (204, 403) => (0, 1, b),
            (403, 204) => (1, 0, a),
            other => panic!("expected one 204 and one 403, got {other:?}"),
        };
        println!("finalize re-check: upload {won} committed, upload {lost} refused");
        refusal.assert_problem(403, "quota_exceeded");
        let body = problem(&refusal);
        assert_eq!(body["check"], "finalize");
        assert_eq!(body["used_bytes"], 600);
        assert_eq!(body["needed_bytes"], 600);
        // It stays refused: HEAD says so rather than report a finished
        // offset a client would take for a success.
        alpha.head(&paths[lost]).await.assert_status(403);
        (
            paths[won].clone(),
            (paths[lost].clone(), lost),
            alpha.clone(),
        )
    };

    // A restart does not roll the refused upload forward either.
    let (key, bearer) = (before.key, before.bearer);
    server.restart().await;
    let alpha = Client {
        server: &server,
        key,
        bearer,
    };
    let (lost_path, lost_index) = lost;
    alpha.head(&lost_path).await.assert_status(403);
    // Freeing space lets HEAD complete it, every byte kept.
    alpha.delete(&won).await.assert_status(204);
    let head = alpha.head(&lost_path).await;
    head.assert_status(200);
    assert_eq!(head.header("upload-offset"), Some("600"));
    let got = alpha.download(&lost_path).await;
    got.assert_status(200);
    assert_eq!(sha256_hex(&got.body), sha256_hex(&data[lost_index]));
}

#[tokio::test]
async fn quota_usage_is_rebuilt_after_a_restart() {
    let mut server = server(|config| config.limits.quota = ByteSize::b(1000)).await;
    let (key, bearer) = {
        let alpha = Client::tenant(&server, "alpha").await;
        alpha.upload(&bytes(400, 6)).await;
        let staged = alpha.created(500).await;
        alpha
            .patch(&staged, 0, &bytes(300, 7))
            .await
            .assert_offset(300);
        (alpha.key, alpha.bearer)
    };
    server.restart().await;
    let alpha = Client {
        server: &server,
        key,
        bearer,
    };
    let reply = alpha.create(301).await;
    reply.assert_problem(403, "quota_exceeded");
    assert_eq!(problem(&reply)["used_bytes"], 700);
    alpha.created(300).await;
}

#[tokio::test]
async fn tenants_uploading_at_once_share_the_ingress_rate_by_weight() {
    const RATE: u64 = 4 << 20;
    let policy = "[defaults]\nchain = []\n\n[tenants.heavy.limits]\nshare = 3\n";
    let server = server_with_policy(policy, |config| {
        config.limits.ingress_bytes_per_second = ByteSize::b(RATE);
    })
    .await;
    let light = Client::tenant(&server, "light").await;
    let heavy = Client::tenant(&server, "heavy").await;
    // Sized to take about as long at the expected shares: 1 and 3 MiB/s.
    let (light_data, heavy_data) = (bytes(2 << 20, 8), bytes(6 << 20, 9));
    let light_path = light.created(light_data.len() as u64).await;
    let heavy_path = heavy.created(heavy_data.len() as u64).await;

    let started = Instant::now();
    let ((light_rate, light_time), (heavy_rate, heavy_time)) =
        tokio::time::timeout(Duration::from_secs(30), async {
            tokio::join!(
                timed_upload(&light, &light_path, &light_data),
                timed_upload(&heavy, &heavy_path, &heavy_data),
            )
        })
        .await
        .expect("both uploads finish in time");
    let total = started.elapsed();
    let mib = |rate: f64| rate / f64::from(1u32 << 20);
    println!(
        "ingress limit 4 MiB/s, shares 1:3 — light {:.2} MiB/s ({light_time:?}), \
         heavy {:.2} MiB/s ({heavy_time:?}), 8 MiB in {total:?}",
        mib(light_rate),
        mib(heavy_rate)
    );
    let light_share = RATE as f64 / 4.0;
    assert!(
        light_rate >= light_share / 3.0,
        "the light tenant got less than a third of its share"
    );
    assert!(
        heavy_rate >= light_rate * 1.5,
        "the heavier share did not get more"
    );
    // The limit holds: 8 MiB at 4 MiB/s take about 2 s.
    assert!(total >= Duration::from_millis(1500), "{total:?}");
}

/// Sends `data` in one PATCH; its rate in bytes per second, and the time.
async fn timed_upload(client: &Client<'_>, path: &str, data: &[u8]) -> (f64, Duration) {
    let started = Instant::now();
    client
        .patch(path, 0, data)
        .await
        .assert_offset(data.len() as u64);
    let elapsed = started.elapsed();
    (data.len() as f64 / elapsed.as_secs_f64(), elapsed)
}

#[tokio::test]
async fn a_policy_reload_changes_limits_for_the_next_request() {
    let server = server_with_policy(
        "[defaults]\nchain = []\n\n[tenants.alpha.limits]\nquota = \"1000\"\n",
        |_| {},
    )
    .await;
    let alpha = Client::tenant(&server, "alpha").await;
    let beta = Client::tenant(&server, "beta").await;
    alpha
        .create(2000)
        .await
        .assert_problem(403, "quota_exceeded");
    beta.created(2000).await;

    reload_policy(
        &server,
        &policy_path(&server),
        "[defaults]\nchain = []\n\n[tenants.beta.limits]\nuploads_per_second = 0.01\nuploads_burst = 1\n",
    )
    .await;
    alpha.created(2000).await;
    // The bucket keeps its tokens, cut to the new burst of 1.
    beta.created(10).await;
    let reply = beta.create(10).await;
    reply.assert_problem(429, "rate_limited");
    assert_eq!(problem(&reply)["limit"], "uploads_per_second");

    // A policy whose limits do not validate is refused; the old one stays.
    let path = policy_path(&server);
    std::fs::write(&path, "[tenants.alpha.limits]\nshare = 0\n").expect("rewritten");
    let admin = server.admin_token(&["admin"]).await;
    let refused = server
        .http
        .post(server.admin_url("/admin/policy/reload"))
        .bearer_auth(admin)
        .send()
        .await
        .expect("reload sent");
    assert_eq!(refused.status(), 422);
    let body: serde_json::Value =
        serde_json::from_slice(&refused.bytes().await.expect("body")).expect("problem json");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("share"),
        "{body}"
    );
    beta.create(10).await.assert_problem(429, "rate_limited");
    alpha.created(10).await;
}
