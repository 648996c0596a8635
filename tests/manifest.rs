//! Signed manifests end to end: a real appliance with tokens on and the
//! shipped chain signs a manifest when an object settles; it is served to
//! readers of that object only, the key is public at a well-known URL, and
//! the real `strongroom verify` accepts the file it describes and nothing
//! else (exit 2 for a changed file, a changed field, another key's
//! signature, another object's manifest).

use std::path::Path;

use serde_json::Value;
use strongroom::store::manifest::{ManifestKey, SignedManifest};

use crate::audit_trail::{filename_metadata, send_as, server_with_chain, strongroom};
use crate::support::*;

/// Uploads `data` with `token`; returns the object id and the commit's
/// audit index.
async fn upload(server: &TestServer, token: &str, data: &[u8], name: &str) -> (String, u64) {
    let length = data.len().to_string();
    let meta = filename_metadata(name);
    let created = send_as(
        server,
        token,
        "m-create",
        "POST",
        "/files/",
        &[TUS, ("Upload-Length", &length), ("Upload-Metadata", &meta)],
        Vec::new(),
    )
    .await;
    created.assert_status(201);
    let path = created.header("location").unwrap().to_owned();
    let done = send_as(
        server,
        token,
        "m-patch",
        "PATCH",
        &path,
        &[TUS, OCTETS, ("Upload-Offset", "0")],
        data.to_vec(),
    )
    .await;
    done.assert_offset(data.len() as u64);
    let index = done
        .header("strongroom-audit-index")
        .expect("audit index")
        .parse()
        .unwrap();
    (path.rsplit('/').next().unwrap().to_owned(), index)
}

async fn manifest_of(server: &TestServer, token: &str, id: &str) -> Reply {
    let path = format!("/objects/{id}/manifest");
    let bearer = format!("Bearer {token}");
    server
        .send("GET", &path, &[("Authorization", &bearer)], Vec::new())
        .await
}

fn verify(file: &Path, manifest: &Path, key: &str) -> crate::audit_trail::Ran {
    strongroom([
        "verify".as_ref(),
        file.as_os_str(),
        manifest.as_os_str(),
        "--key".as_ref(),
        key.as_ref(),
    ])
}

fn text(len: usize) -> Vec<u8> {
    b"plain words for a plain text file\n"
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

#[tokio::test]
async fn a_manifest_verifies_its_file_offline_and_nothing_else() {
    let (server, _policy) = server_with_chain().await;
    let uploader = server.admin_token(&["upload:create"]).await;
    let data = text(200_000);
    let (id, commit_index) = upload(&server, &uploader, &data, "notes.txt").await;
    let reader = server.admin_token(&[&format!("object:read:{id}")]).await;
    let served = manifest_of(&server, &reader, &id).await;
    served.assert_status(200);
    assert_eq!(served.header("content-type"), Some("application/json"));

    let key = server
        .send(
            "GET",
            "/.well-known/strongroom/manifest-key",
            &[],
            Vec::new(),
        )
        .await;
    key.assert_status(200);
    let key_text = String::from_utf8(key.body.clone()).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.txt");
    let manifest = dir.path().join("notes.manifest.json");
    let key_file = dir.path().join("manifest-key.json");
    std::fs::write(&file, &data).unwrap();
    std::fs::write(&manifest, &served.body).unwrap();
    std::fs::write(&key_file, &key_text).unwrap();

    verify(&file, &manifest, key_file.to_str().unwrap())
        .assert_code(0)
        .assert_stdout(&format!("ok: object {id} of tenant default, 200000 bytes"))
        .assert_stdout(&format!("commit audit record {commit_index}"));
    verify(&file, &manifest, &key_text).assert_code(0);

    // What it signs for.
    let document = served.json();
    let facts = &document["manifest"];
    assert_eq!(facts["format"], "strongroom-manifest/1");
    assert_eq!(facts["object"], id.as_str());
    assert_eq!(facts["tenant"], "default");
    assert_eq!(facts["size"], 200_000);
    assert_eq!(facts["sha256"], sha256_hex(&data));
    assert_eq!(
        facts["segments"], 4,
        "three full 64 KiB segments and a final one"
    );
    assert!(
        facts["key_ids"][0]
            .as_str()
            .is_some_and(|kek| kek.starts_with("local:default:v")),
        "{facts}"
    );
    assert_eq!(facts["disposition"], "released");
    assert_eq!(facts["audit_index"], commit_index);
    assert_eq!(facts["screening"]["decision"], "accept");
    assert_eq!(facts["screening"]["plugins"].as_array().unwrap().len(), 3);
    assert_eq!(facts["provenance"]["plugin"], "provenance");
    assert_eq!(facts["provenance"]["labels"]["provenance"], "unsigned");
    let key_document: Value = serde_json::from_str(&key_text).unwrap();
    assert_eq!(document["signature"]["key_id"], key_document["key_id"]);
    assert_eq!(
        key_document,
        server.appliance().records.manifests.public().document(),
        "the well-known key is the appliance's"
    );
    // The audit record it names is this object's commit.
    let records = crate::audit_trail::live_records(&server.data_dir());
    assert_eq!(records[commit_index as usize]["kind"], "commit");
    assert_eq!(records[commit_index as usize]["upload"], id.as_str());

    let key_arg = key_file.to_str().unwrap();
    let rejected = |file: &Path, manifest: &Path, says: &str| {
        verify(file, manifest, key_arg)
            .assert_code(2)
            .assert_stdout(says);
    };

    // A changed file: one flipped byte, or one byte short.
    let flipped = dir.path().join("flipped.txt");
    let mut changed = data.clone();
    changed[123_456] ^= 0x01;
    std::fs::write(&flipped, &changed).unwrap();
    rejected(&flipped, &manifest, "MISMATCH");
    let short = dir.path().join("short.txt");
    std::fs::write(&short, &data[..data.len() - 1]).unwrap();
    rejected(&short, &manifest, "the file is 199999 bytes");

    // A changed manifest field.
    let edited = dir.path().join("edited.json");
    let mut altered = document.clone();
    altered["manifest"]["disposition"] = "quarantined".into();
    std::fs::write(&edited, serde_json::to_vec(&altered).unwrap()).unwrap();
    rejected(&file, &edited, "FORGED");

    // Another key's signature over the same facts, as it is and relabelled
    // with the appliance's key id.
    let mallory_path = dir.path().join("mallory.key");
    let (mallory, _) = ManifestKey::open_or_create(&mallory_path).unwrap();
    let facts = SignedManifest::from_value(document.clone())
        .unwrap()
        .manifest;
    let mut forged = mallory.sign(facts);
    let other_key = dir.path().join("other-key.json");
    std::fs::write(&other_key, forged.to_value().to_string()).unwrap();
    rejected(&file, &other_key, "not by the given key");
    forged.signature.key_id = key_document["key_id"].as_str().unwrap().to_owned();
    let relabelled = dir.path().join("relabelled.json");
    std::fs::write(&relabelled, forged.to_value().to_string()).unwrap();
    rejected(&file, &relabelled, "does not verify");

    // Another object's manifest.
    let other = text(200_001);
    let (other_id, _) = upload(&server, &uploader, &other, "other.txt").await;
    let other_reader = server
        .admin_token(&[&format!("object:read:{other_id}")])
        .await;
    let other_manifest = dir.path().join("other.manifest.json");
    let served = manifest_of(&server, &other_reader, &other_id).await;
    served.assert_status(200);
    std::fs::write(&other_manifest, &served.body).unwrap();
    rejected(
        &file,
        &other_manifest,
        &format!("MISMATCH with the manifest of object {other_id}"),
    );

    // Errors that stop the check itself exit 1.
    verify(&file, &manifest, "not-a-key").assert_code(1);
    verify(&dir.path().join("missing"), &manifest, key_arg).assert_code(1);
    strongroom(["verify", file.to_str().unwrap()]).assert_code(1);
}

#[tokio::test]
async fn manifests_are_read_like_downloads() {
    let server = TestServer::start_with_tokens(|_| {}).await;
    let uploader = server.admin_token(&["upload:create"]).await;
    let (id, _) = upload(&server, &uploader, b"sealed and signed", "a.txt").await;

    server
        .send("GET", &format!("/objects/{id}/manifest"), &[], Vec::new())
        .await
        .assert_problem(401, "authentication_required");
    manifest_of(&server, &uploader, &id)
        .await
        .assert_problem(403, "scope_insufficient");
    let (other, _) = upload(&server, &uploader, b"another", "b.txt").await;
    let other_reader = server.admin_token(&[&format!("object:read:{other}")]).await;
    manifest_of(&server, &other_reader, &id)
        .await
        .assert_problem(403, "scope_insufficient");

    // Another tenant may hold a token naming this id: the object is not
    // theirs, and looks like no object at all.
    let store = server.appliance().auth.credentials();
    store.add_tenant("intruder").unwrap();
    let intruder_key = store.create_key("intruder", false, None).unwrap().secret;
    let intruder = server
        .token(&intruder_key, &[&format!("object:read:{id}")])
        .await;
    manifest_of(&server, &intruder, &id)
        .await
        .assert_problem(404, "upload_not_found");

    let reader = server.admin_token(&[&format!("object:read:{id}")]).await;
    let served = manifest_of(&server, &reader, &id).await;
    served.assert_status(200);
    assert_eq!(served.json()["manifest"]["object"], id.as_str());

    // An upload still receiving has no manifest.
    let pending = send_as(
        &server,
        &uploader,
        "m-pending",
        "POST",
        "/files/",
        &[TUS, ("Upload-Length", "10")],
        Vec::new(),
    )
    .await;
    let pending_id = pending
        .header("location")
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let admin = server
        .admin_token(&[&format!("object:read:{pending_id}")])
        .await;
    manifest_of(&server, &admin, &pending_id)
        .await
        .assert_problem(404, "object_not_found");

    // The key needs no credentials.
    server
        .send(
            "GET",
            "/.well-known/strongroom/manifest-key",
            &[],
            Vec::new(),
        )
        .await
        .assert_status(200);
}
