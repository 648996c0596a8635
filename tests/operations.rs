//! What an operator sees, against a real appliance: the metrics page counts
//! what happened, the admin API lists and acts on uploads, objects and the
//! quarantine, live events follow each upload to its verdict (per tenant),
//! the audit log exports over HTTP and verifies offline, the console is
//! served from the admin listener, and request ids reach headers and logs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::ops::{EventReader, MetricsPage, WAIT, admin_ok, admin_send};
use crate::support::*;

const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

async fn create_named<'a>(server: &'a TestServer, len: usize, name: &str) -> Upload<'a> {
    server
        .create_with(&[
            ("Upload-Length", &len.to_string()),
            ("Upload-Metadata", &tus_metadata(&[("filename", name)])),
        ])
        .await
}

/// The shipped policy (policies/default.toml, the plugins built from
/// plugins/ and pinned there).
async fn server_with_default_policy() -> TestServer {
    let policy = repo_path("policies/default.toml");
    assert!(
        repo_path("plugins/dist/content-inspector.wasm").exists(),
        "build the plugins with plugins/build.sh (tests/run.sh does)"
    );
    TestServer::start_with(|config| {
        config.plugins.policy = Some(policy);
        config.plugins.workers = 2;
    })
    .await
}

/// 200 KB of this test binary: an ELF, which content-inspector quarantines
/// when its name says PDF.
fn elf() -> Vec<u8> {
    let binary = std::fs::read(std::env::current_exe().expect("test binary")).expect("readable");
    binary[..200_000].to_vec()
}

fn text(len: usize) -> Vec<u8> {
    b"lines of plain text for an upload\n"
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

/// Uploads an ELF named invoice.pdf and checks it was quarantined.
async fn quarantined_upload(server: &TestServer) -> Upload<'_> {
    let data = elf();
    let up = create_named(server, data.len(), "invoice.pdf").await;
    let done = up.patch(0, &data).await;
    done.assert_offset(data.len() as u64);
    assert_eq!(done.header("strongroom-disposition"), Some("quarantined"));
    up
}

// ---- metrics --------------------------------------------------------------------

#[tokio::test]
async fn the_metrics_page_counts_requests_bytes_latencies_and_holdings() {
    let server = TestServer::start().await;
    let data = bytes(100_000, 7);
    let up = create_named(&server, data.len(), "data.bin").await;
    up.patch(0, &data[..40_000]).await.assert_offset(40_000);
    up.patch(40_000, &data[40_000..])
        .await
        .assert_offset(100_000);
    let got = server.send("GET", &up.object_path(), &[], Vec::new()).await;
    assert_eq!(got.body, data);
    server
        .send("GET", "/no/such/route", &[], Vec::new())
        .await
        .assert_status(404);
    let unfinished = server.create(10).await;
    unfinished.patch(0, b"12345").await.assert_offset(5);

    let page = MetricsPage::scrape(&server).await;
    let requests = |route: &str, method: &str, status: &str| {
        page.count(
            "strongroom_http_requests_total",
            &[
                ("listener", "public"),
                ("route", route),
                ("method", method),
                ("status", status),
            ],
        )
    };
    assert_eq!(requests("files", "POST", "201"), 2.0);
    assert_eq!(requests("upload", "PATCH", "204"), 3.0);
    assert_eq!(requests("object", "GET", "200"), 1.0);
    assert_eq!(requests("other", "GET", "404"), 1.0);
    let tenant = [("tenant", "default")];
    assert_eq!(
        page.count("strongroom_ingress_bytes_total", &tenant),
        100_005.0
    );
    assert_eq!(
        page.count("strongroom_egress_bytes_total", &tenant),
        100_000.0
    );
    assert_eq!(page.count("strongroom_stored_bytes", &tenant), 100_000.0);
    assert_eq!(page.count("strongroom_staged_bytes", &tenant), 5.0);
    assert_eq!(page.count("strongroom_uploads_staged", &tenant), 1.0);
    assert_eq!(page.count("strongroom_key_versions", &tenant), 1.0);
    assert_eq!(
        page.count(
            "strongroom_objects",
            &[("tenant", "default"), ("disposition", "released")]
        ),
        1.0
    );
    assert_eq!(
        page.count(
            "strongroom_uploads_committed_total",
            &[("tenant", "default"), ("disposition", "released")]
        ),
        1.0
    );
    assert_eq!(
        page.count("strongroom_upload_duration_seconds_count", &[]),
        1.0
    );
    assert_eq!(
        page.count("strongroom_finalize_duration_seconds_count", &[]),
        1.0
    );
    assert_eq!(page.count("strongroom_uploads_active", &[]), 0.0);
    assert_eq!(page.count("strongroom_staging_files", &[]), 2.0);
    for file in ["segment", "index", "audit"] {
        assert!(
            page.count("strongroom_fsync_duration_seconds_count", &[("file", file)]) > 0.0,
            "no {file} fsync timed:\n{}",
            page.text
        );
    }
    assert!(page.count("strongroom_audit_records", &[]) >= 5.0);
    assert!(page.count("strongroom_audit_log_bytes", &[]) > 0.0);
    assert!(page.count("strongroom_data_dir_free_bytes", &[]) > 0.0);
    assert!(page.count("strongroom_data_dir_size_bytes", &[]) > 0.0);
    assert!(page.count("process_resident_memory_bytes", &[]) > 0.0);
    assert_eq!(
        page.count(
            "strongroom_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert_eq!(
        page.count("strongroom_tls_certificate_expiry_timestamp_seconds", &[]),
        0.0,
        "no TLS, no expiry"
    );

    // The scrape itself is counted on the admin listener by the next one.
    let again = MetricsPage::scrape(&server).await;
    assert_eq!(
        again.count(
            "strongroom_http_requests_total",
            &[
                ("listener", "admin"),
                ("route", "metrics"),
                ("status", "200")
            ]
        ),
        1.0
    );
}

#[tokio::test]
async fn plugin_verdicts_rules_rejections_and_call_latencies_are_counted() {
    let server = server_with_default_policy().await;
    server.upload(&text(50_000)).await;
    let mut infected = text(50_000);
    infected[1000..1000 + EICAR.len()].copy_from_slice(EICAR);
    let up = server.create(infected.len() as u64).await;
    up.patch(0, &infected)
        .await
        .assert_problem(422, "upload_rejected");
    quarantined_upload(&server).await;

    let page = MetricsPage::scrape(&server).await;
    let verdict = |verdict: &str, rule: &str| {
        page.count(
            "strongroom_plugin_verdicts_total",
            &[
                ("plugin", "content-inspector"),
                ("verdict", verdict),
                ("rule", rule),
            ],
        )
    };
    assert_eq!(verdict("reject", "malware-signature"), 1.0, "{}", page.text);
    assert_eq!(verdict("quarantine", "type-mismatch"), 1.0, "{}", page.text);
    assert_eq!(
        page.count(
            "strongroom_uploads_rejected_total",
            &[("tenant", "default"), ("plugin", "content-inspector")]
        ),
        1.0
    );
    assert_eq!(
        page.count(
            "strongroom_objects",
            &[("tenant", "default"), ("disposition", "quarantined")]
        ),
        1.0
    );
    for call in ["instantiate", "feed", "finish"] {
        assert!(
            page.count(
                "strongroom_plugin_call_duration_seconds_count",
                &[("plugin", "provenance"), ("call", call)]
            ) >= 2.0,
            "provenance {call}:\n{}",
            page.text
        );
    }
    let totals = admin_ok(&server, "GET", "/admin/summary").await;
    assert_eq!(totals["objects_quarantined"], 1, "{totals}");
    assert_eq!(totals["verdicts"]["reject"], 1, "{totals}");
}

// ---- admin API ------------------------------------------------------------------

#[tokio::test]
async fn admin_lists_uploads_in_progress_and_pages_through_objects() {
    let server = TestServer::start().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let up = create_named(&server, 3, &format!("file-{n}.txt")).await;
        up.patch(0, b"abc").await.assert_offset(3);
        ids.push(up.id().to_owned());
    }
    ids.sort();
    let unfinished = create_named(&server, 10, "half.bin").await;
    unfinished.patch(0, b"12345").await.assert_offset(5);

    let uploads = admin_ok(&server, "GET", "/admin/uploads").await;
    let uploads = uploads["uploads"].as_array().expect("uploads");
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    assert_eq!(uploads[0]["id"], unfinished.id());
    assert_eq!(uploads[0]["filename"], "half.bin");
    assert_eq!(uploads[0]["offset"], 5);
    assert_eq!(uploads[0]["length"], 10);

    let mut seen = Vec::new();
    let mut path = "/admin/objects?limit=2".to_owned();
    loop {
        let page = admin_ok(&server, "GET", &path).await;
        let objects = page["objects"].as_array().expect("objects");
        assert!(objects.len() <= 2);
        for object in objects {
            assert_eq!(object["disposition"], "released");
            assert_eq!(object["size"], 3);
            assert_eq!(object["sha256"], sha256_hex(b"abc"));
            seen.push(object["id"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(next) => path = format!("/admin/objects?limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every object once, in id order");

    let one = admin_ok(&server, "GET", &format!("/admin/objects/{}", ids[0])).await;
    assert!(one["filename"].as_str().unwrap().starts_with("file-"));
    assert!(one["manifest"]["signature"]["value"].is_string(), "{one}");
    let none = admin_ok(&server, "GET", "/admin/objects?tenant=nobody").await;
    assert_eq!(none["objects"], serde_json::json!([]));
    let quarantined = admin_ok(&server, "GET", "/admin/objects?disposition=quarantined").await;
    assert_eq!(quarantined["objects"], serde_json::json!([]));

    for (path, code) in [
        ("/admin/objects?limit=0", "invalid_query"),
        ("/admin/objects?limit=lots", "invalid_query"),
        ("/admin/objects?disposition=lost", "invalid_query"),
        ("/admin/objects?after=xyz", "invalid_query"),
        ("/admin/objects/not-an-id", "invalid_upload_id"),
    ] {
        let reply = Reply::read(admin_send(&server, "GET", path, None).await).await;
        reply.assert_problem(if code == "invalid_query" { 400 } else { 404 }, code);
    }
    let missing = format!("/admin/objects/{}", "0".repeat(32));
    Reply::read(admin_send(&server, "GET", &missing, None).await)
        .await
        .assert_problem(404, "upload_not_found");
    // An unfinished upload is not an object.
    let half = format!("/admin/objects/{}", unfinished.id());
    Reply::read(admin_send(&server, "GET", &half, None).await)
        .await
        .assert_problem(404, "upload_not_found");
}

#[tokio::test]
async fn an_admin_reviews_and_releases_a_quarantined_object_for_its_tenant() {
    let server = server_with_default_policy().await;
    let data = elf();
    let up = quarantined_upload(&server).await;
    up.get().await.assert_problem(403, "object_quarantined");

    // The admin can read it to decide.
    let content = admin_send(
        &server,
        "GET",
        &format!("/admin/objects/{}/content", up.id()),
        None,
    )
    .await;
    assert_eq!(content.status(), 200);
    assert_eq!(content.bytes().await.unwrap(), data);

    let mut events =
        EventReader::open(&server.http, &server.admin_url("/admin/events"), None).await;
    let released = admin_ok(
        &server,
        "POST",
        &format!("/admin/quarantine/{}/release", up.id()),
    )
    .await;
    assert_eq!(released["disposition"], "released");
    let event = events.next().await;
    assert_eq!(event.kind, "object.released");
    assert_eq!(event.data["upload"], up.id());

    let got = up.get().await;
    got.assert_status(200);
    assert_eq!(got.body, data);
    assert_eq!(
        up.head().await.header("strongroom-disposition"),
        Some("released")
    );
    let listed = admin_ok(&server, "GET", "/admin/quarantine").await;
    assert_eq!(listed["objects"], serde_json::json!([]));

    // Its manifest is signed again, as released, and still verifies.
    let manifest = server
        .send(
            "GET",
            &format!("{}/manifest", up.object_path()),
            &[],
            Vec::new(),
        )
        .await;
    manifest.assert_status(200);
    let key = server
        .send(
            "GET",
            "/.well-known/strongroom/manifest-key",
            &[],
            Vec::new(),
        )
        .await;
    let key = strongroom::store::manifest::PublicKey::parse(&String::from_utf8(key.body).unwrap())
        .expect("manifest key");
    let opened = strongroom::store::manifest::SignedManifest::open(&manifest.body, &key)
        .expect("the re-signed manifest verifies");
    assert_eq!(opened.disposition, "released");
    assert_eq!(opened.sha256, sha256_hex(&data));

    // Releasing again is refused: it is not in quarantine any more.
    let again = admin_send(
        &server,
        "POST",
        &format!("/admin/quarantine/{}/release", up.id()),
        None,
    )
    .await;
    Reply::read(again)
        .await
        .assert_problem(409, "object_not_quarantined");
}

#[tokio::test]
async fn an_admin_deletes_a_quarantined_object_and_nothing_of_it_remains() {
    let server = server_with_default_policy().await;
    let before = server.census().await;
    let clean = server.upload(&text(1000)).await;
    let held = quarantined_upload(&server).await;

    // The quarantine route deletes only what is in quarantine.
    let wrong = admin_send(
        &server,
        "DELETE",
        &format!("/admin/quarantine/{}", clean.id()),
        None,
    )
    .await;
    Reply::read(wrong)
        .await
        .assert_problem(409, "object_not_quarantined");
    let deleted = admin_ok(
        &server,
        "DELETE",
        &format!("/admin/quarantine/{}", held.id()),
    )
    .await;
    assert_eq!(deleted["deleted"], held.id());
    Reply::read(
        admin_send(
            &server,
            "GET",
            &format!("/admin/objects/{}", held.id()),
            None,
        )
        .await,
    )
    .await
    .assert_problem(404, "upload_not_found");
    held.head().await.assert_status(404);

    // And any object through /admin/objects.
    admin_ok(&server, "DELETE", &format!("/admin/objects/{}", clean.id())).await;
    clean.get().await.assert_status(404);
    let after = server.census().await;
    assert_eq!((after.records, after.files), (before.records, before.files));
}

#[tokio::test]
async fn admin_routes_need_the_admin_scope_but_health_metrics_and_console_do_not() {
    let server = TestServer::start_with_tokens(|_| {}).await;
    for path in [
        "/admin/summary",
        "/admin/objects",
        "/admin/uploads",
        "/admin/events",
    ] {
        let reply = Reply::read(admin_send(&server, "GET", path, None).await).await;
        reply.assert_problem(401, "authentication_required");
    }
    let uploader = server.admin_token(&["upload:create"]).await;
    let reply =
        Reply::read(admin_send(&server, "GET", "/admin/objects", Some(&uploader)).await).await;
    reply.assert_problem(403, "scope_insufficient");
    let admin = server.admin_token(&["admin"]).await;
    let ok = admin_send(&server, "GET", "/admin/objects", Some(&admin)).await;
    assert_eq!(ok.status(), 200);
    let tenants = admin_send(&server, "GET", "/admin/tenants", Some(&admin)).await;
    let tenants: Value = serde_json::from_slice(&tenants.bytes().await.unwrap()).unwrap();
    assert!(tenants["usage"].is_object(), "{tenants}");
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/console/",
        "/console/config.json",
    ] {
        assert_eq!(
            admin_send(&server, "GET", path, None).await.status(),
            200,
            "{path}"
        );
    }
    let page = MetricsPage::scrape(&server).await;
    assert_eq!(
        page.count(
            "strongroom_auth_failures_total",
            &[("code", "authentication_required")]
        ),
        4.0
    );
    assert_eq!(
        page.count(
            "strongroom_auth_failures_total",
            &[("code", "scope_insufficient")]
        ),
        1.0
    );
}

// ---- live events ----------------------------------------------------------------

#[tokio::test]
async fn live_events_follow_each_upload_to_its_verdict_for_its_own_tenant_only() {
    let server = TestServer::start_with_tokens(|_| {}).await;
    let store = server.appliance().auth.credentials();
    store.add_tenant("acme").expect("tenant added");
    let acme_key = store.create_key("acme", false, None).expect("key").secret;
    let default_token = server.admin_token(&["upload:create"]).await;
    let acme_token = server.token(&acme_key, &["upload:create"]).await;

    // Without a token, or with only a read scope: refused.
    let anonymous = server.send("GET", "/events", &[], Vec::new()).await;
    anonymous.assert_problem(401, "authentication_required");
    let reader = server
        .admin_token(&[&format!("object:read:{}", "0".repeat(32))])
        .await;
    let bearer = format!("Bearer {reader}");
    server
        .send("GET", "/events", &[("Authorization", &bearer)], Vec::new())
        .await
        .assert_problem(403, "scope_insufficient");

    let mut mine =
        EventReader::open(&server.http, &server.url("/events"), Some(&default_token)).await;
    let mut theirs =
        EventReader::open(&server.http, &server.url("/events"), Some(&acme_token)).await;
    let mut everyone = EventReader::open(
        &server.http,
        &server.admin_url("/admin/events"),
        Some(&server.admin_token(&["admin"]).await),
    )
    .await;

    let auth = format!("Bearer {default_token}");
    let meta = tus_metadata(&[("filename", "report.txt")]);
    let created = server
        .send(
            "POST",
            "/files/",
            &[
                TUS,
                ("Authorization", &auth),
                ("Upload-Length", "10"),
                ("Upload-Metadata", &meta),
            ],
            Vec::new(),
        )
        .await;
    created.assert_status(201);
    let id = created
        .header("location")
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    for (offset, chunk) in [(0u64, &b"hello"[..]), (5, &b"world"[..])] {
        server
            .send(
                "PATCH",
                &format!("/files/{id}"),
                &[
                    TUS,
                    OCTETS,
                    ("Authorization", &auth),
                    ("Upload-Offset", &offset.to_string()),
                ],
                chunk.to_vec(),
            )
            .await
            .assert_offset(offset + 5);
    }

    let seen = mine.until("upload.verdict").await;
    let kinds: Vec<&str> = seen.iter().map(|e| e.kind.as_str()).collect();
    let durable: Vec<u64> = seen
        .iter()
        .filter(|e| e.kind == "upload.progress" && e.data["durable"] == true)
        .map(|e| e.data["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"upload.created"), "{kinds:?}");
    assert_eq!(durable, [5, 10], "{kinds:?}");
    let committed = seen
        .iter()
        .find(|e| e.kind == "upload.committed")
        .expect("committed");
    assert_eq!(committed.data["size"], 10);
    assert_eq!(committed.data["sha256"], sha256_hex(b"helloworld"));
    assert_eq!(committed.data["disposition"], "released");
    assert_eq!(seen[0].data["filename"], "report.txt");
    assert_eq!(seen.last().unwrap().data["disposition"], "released");
    for event in &seen {
        assert_eq!(event.data["upload"], id.as_str());
        assert_eq!(event.data["tenant"], "default");
        assert!(event.data["at"].as_u64().is_some());
    }
    let all = everyone.until("upload.verdict").await;
    assert_eq!(
        all.len(),
        seen.len(),
        "the admin stream sees the same events"
    );

    // acme's stream saw none of that: its first event is its own upload.
    let acme_upload = format!("Bearer {acme_token}");
    server
        .send(
            "POST",
            "/files/",
            &[TUS, ("Authorization", &acme_upload), ("Upload-Length", "3")],
            Vec::new(),
        )
        .await
        .assert_status(201);
    let first = theirs.next().await;
    assert_eq!(
        (first.kind.as_str(), &first.data["tenant"]),
        ("upload.created", &Value::from("acme"))
    );
    assert_eq!(everyone.next().await.data["tenant"], "acme");

    // The subscriber gauge sees the open streams.
    let page = MetricsPage::scrape(&server).await;
    assert_eq!(page.count("strongroom_events_subscribers", &[]), 3.0);
}

/// A stream lasts no longer than the token that opened it: the client
/// reconnects with a fresh one (as after any drop).
#[tokio::test]
async fn an_event_stream_ends_when_its_token_expires() {
    let server = TestServer::start_with_tokens(|config| {
        config.auth.leeway = Duration::ZERO;
    })
    .await;
    let key = server.admin_key.clone().expect("tokens mode");
    let body = serde_json::json!({ "scopes": ["upload:create"], "ttl_seconds": 2 }).to_string();
    let answer = server
        .send(
            "POST",
            "/auth/token",
            &[("Authorization", &format!("Bearer {key}"))],
            body,
        )
        .await;
    answer.assert_status(200);
    let token = answer.json()["token"].as_str().unwrap().to_owned();
    let opened = Instant::now();
    let mut response = server
        .http
        .get(server.url("/events"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let ended = tokio::time::timeout(WAIT, async {
        while response.chunk().await.expect("a clean end").is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the stream outlived its token");
    let lasted = opened.elapsed();
    assert!(
        lasted >= Duration::from_secs(1) && lasted < Duration::from_secs(6),
        "{lasted:?}"
    );
    // The same token no longer opens one.
    let bearer = format!("Bearer {token}");
    server
        .send("GET", "/events", &[("Authorization", &bearer)], Vec::new())
        .await
        .assert_problem(401, "token_expired");
}

#[tokio::test]
async fn a_rejection_and_a_deletion_are_events_too() {
    let server = server_with_default_policy().await;
    let mut events =
        EventReader::open(&server.http, &server.admin_url("/admin/events"), None).await;
    let mut infected = text(10_000);
    infected[100..100 + EICAR.len()].copy_from_slice(EICAR);
    let up = server.create(infected.len() as u64).await;
    up.patch(0, &infected)
        .await
        .assert_problem(422, "upload_rejected");
    let seen = events.until("upload.deleted").await;
    let verdict = seen
        .iter()
        .find(|e| e.kind == "upload.verdict")
        .expect("a verdict");
    assert_eq!(verdict.data["disposition"], "rejected");
    assert_eq!(verdict.data["plugin"], "content-inspector");
    assert_eq!(verdict.data["rule"], "malware-signature");
    assert_eq!(seen.last().unwrap().data["reason"], "rejected");

    let gone = server.create(4).await;
    assert_eq!(events.next().await.kind, "upload.created");
    gone.delete().await.assert_status(204);
    let deleted = events.next().await;
    assert_eq!(
        (deleted.kind.as_str(), &deleted.data["reason"]),
        ("upload.deleted", &Value::from("terminated"))
    );
}

// ---- audit export and checkpoint ------------------------------------------------

#[tokio::test]
async fn the_audit_log_exports_over_http_and_verifies_offline() {
    let server = TestServer::start().await;
    for n in 0..3 {
        server.upload(format!("object {n}").as_bytes()).await;
    }
    let log = server.appliance().records.trail.log().clone();
    let total = log.stats().records;
    let deadline = Instant::now() + WAIT;
    while log.latest_checkpoint().map_or(0, |c| c.size()) < total {
        assert!(Instant::now() < deadline, "no checkpoint in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let checkpoint = admin_send(&server, "GET", "/admin/audit/checkpoint", None).await;
    assert_eq!(checkpoint.status(), 200);
    let note = checkpoint.text().await.unwrap();
    assert!(
        note.lines()
            .nth(1)
            .is_some_and(|size| size.parse::<u64>().unwrap() >= total),
        "{note}"
    );

    let export = admin_send(&server, "GET", "/admin/audit/export", None).await;
    assert_eq!(export.status(), 200);
    assert_eq!(export.headers()["content-type"], "application/x-tar");
    let archive = export.bytes().await.unwrap();
    let out = tempfile::tempdir().unwrap();
    tar::Archive::new(&archive[..]).unpack(out.path()).unwrap();
    let key = strongroom::audit::dir(&server.data_dir()).join(strongroom::audit::PUBLIC_KEY_FILE);
    let verified = run_cli(&[
        "audit".as_ref(),
        "verify".as_ref(),
        out.path().as_os_str(),
        "--key".as_ref(),
        key.as_os_str(),
    ]);
    assert!(verified.status.success(), "{verified:?}");
    assert!(
        String::from_utf8_lossy(&verified.stdout).contains(": ok: "),
        "{verified:?}"
    );
    // The scratch copy is gone once sent.
    let scratch = server.data_dir().join("tmp");
    let left: Vec<PathBuf> = std::fs::read_dir(&scratch)
        .map(|dir| dir.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

fn run_cli(args: &[&std::ffi::OsStr]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_strongroom"))
        .args(args)
        .output()
        .expect("strongroom runs")
}

// ---- console --------------------------------------------------------------------

#[tokio::test]
async fn the_console_is_served_from_the_admin_listener_and_may_call_the_public_one() {
    let server = TestServer::start().await;
    let root = server.http.get(server.admin_url("/")).send().await.unwrap();
    assert_eq!(root.status(), 200, "the redirect to /console/ is followed");
    assert!(root.url().path().ends_with("/console/"));
    let csp = root.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains(&format!("connect-src 'self' {}", server.base())),
        "{csp}"
    );
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(root.text().await.unwrap().contains("tus.min.js"));
    for (name, kind) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
        ("tus.min.js", "text/javascript; charset=utf-8"),
    ] {
        let asset = admin_send(&server, "GET", &format!("/console/{name}"), None).await;
        assert_eq!(asset.status(), 200, "{name}");
        assert_eq!(asset.headers()["content-type"], kind);
        assert!(asset.bytes().await.unwrap().len() > 1000, "{name}");
    }
    assert_eq!(
        admin_send(&server, "GET", "/console/secret.key", None)
            .await
            .status(),
        404
    );
    let config = admin_ok(&server, "GET", "/console/config.json").await;
    assert_eq!(config["public_url"], server.base());
    assert_eq!(config["auth"], "none");
    assert_eq!(config["version"], env!("CARGO_PKG_VERSION"));

    // A browser on the console's page may call the public listener.
    let console_origin = format!("http://{}", server.appliance().admin_addr);
    for (origin, allowed) in [
        (console_origin.as_str(), true),
        ("http://elsewhere.example", false),
    ] {
        let preflight = server
            .send(
                "OPTIONS",
                "/files/",
                &[
                    ("Origin", origin),
                    ("Access-Control-Request-Method", "POST"),
                    (
                        "Access-Control-Request-Headers",
                        "authorization,tus-resumable",
                    ),
                ],
                Vec::new(),
            )
            .await;
        assert_eq!(
            preflight.header("access-control-allow-origin"),
            allowed.then_some(origin),
            "{origin}"
        );
    }
}

// ---- request ids and logs -------------------------------------------------------

/// Every log line of a request carries its id (the client's `X-Request-Id`
/// when it sent a usable one), lines about an upload carry the upload's id,
/// the id comes back on every response and lands in the audit record; and
/// no token, API key or Authorization value reaches the log, even at the
/// most verbose level of our own code.
#[tokio::test]
async fn request_ids_reach_responses_logs_and_audit_and_secrets_never_reach_the_log() {
    use crate::support::process::Binary;

    let dir = tempfile::tempdir().unwrap();
    let config = crate::support::process::config_in(dir.path());
    let log = dir.path().join("server.log");
    let verbose = [("RUST_LOG", "info,strongroom=trace")];
    let stdout = dir.path().join("stdout.txt");
    let (mut binary, key) = Binary::serve_with_tokens(&config, &verbose, &stdout, &log, WAIT).await;
    let key = key.expect("the first start shows its API key");
    let http = reqwest::Client::new();
    let answer = http
        .post(binary.url("/auth/token"))
        .bearer_auth(&key)
        .header("X-Request-Id", "req-token-1")
        .body(r#"{"scopes":["upload:create","admin"]}"#)
        .send()
        .await
        .unwrap();
    let token: Value = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
    let token = token["token"].as_str().expect("token").to_owned();

    let created = http
        .post(binary.url("/files/"))
        .bearer_auth(&token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", "4")
        .header("X-Request-Id", "req-create-1")
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["x-request-id"], "req-create-1");
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let id = location.rsplit('/').next().unwrap().to_owned();
    let patched = http
        .patch(binary.url(&location))
        .bearer_auth(&token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .header("X-Request-Id", "req-patch-1")
        .body("data")
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 204);
    assert_eq!(patched.headers()["x-request-id"], "req-patch-1");
    // An unusable id is replaced by one the appliance makes.
    let odd = http
        .get(format!("http://{}/admin/summary", binary.admin))
        .bearer_auth(&token)
        .header("X-Request-Id", "has spaces and\ttabs")
        .send()
        .await
        .unwrap();
    assert_eq!(odd.status(), 200);
    let made = odd.headers()["x-request-id"].to_str().unwrap();
    assert!(
        made.len() == 16 && made.bytes().all(|b| b.is_ascii_hexdigit()),
        "{made}"
    );
    binary.kill();

    let logged = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = logged
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let in_request = |id: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|line| {
                line["span"]["id"] == id
                    || line["spans"]
                        .as_array()
                        .is_some_and(|s| s.iter().any(|s| s["id"] == id))
            })
            .collect()
    };
    let patch_lines = in_request("req-patch-1");
    assert!(
        !patch_lines.is_empty(),
        "no log line of the PATCH:\n{logged}"
    );
    for line in &patch_lines {
        assert_eq!(line["span"]["upload"], id.as_str(), "{line}");
    }
    assert!(!in_request("req-create-1").is_empty(), "{logged}");

    // The audit record of the PATCH names the same request id.
    let records = std::fs::read_to_string(
        strongroom::audit::dir(&dir.path().join("data")).join(strongroom::audit::RECORDS_FILE),
    )
    .unwrap();
    assert!(
        records
            .lines()
            .any(|r| r.contains("\"req-patch-1\"") && r.contains(&id)),
        "{records}"
    );

    let key_secret = key.rsplit('_').next().unwrap();
    let signature = &token[token.len() - 40..];
    for secret in [token.as_str(), signature, key_secret, "Bearer "] {
        assert!(!logged.contains(secret), "{secret:?} reached the log");
    }
}
