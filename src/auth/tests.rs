use std::net::{IpAddr, Ipv4Addr};

use super::*;

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

fn enforcing() -> AuthConfig {
    AuthConfig {
        failures_per_minute: 5,
        ..AuthConfig::default()
    }
}

fn open(config: &AuthConfig) -> (tempfile::TempDir, Auth, Option<NewKey>) {
    let dir = tempfile::tempdir().unwrap();
    let (auth, first) = Auth::open(&dir.path().join("auth"), config).unwrap();
    (dir, auth, first)
}

fn bearer(secret: &str) -> String {
    format!("Bearer {secret}")
}

fn token(auth: &Auth, key: &NewKey, scopes: &[&str]) -> Issued {
    let request = TokenRequest {
        scopes: Some(scopes.iter().map(|s| s.to_string()).collect()),
        ttl_seconds: None,
    };
    auth.issue_token(
        Presented::Authorization(&bearer(&key.secret)),
        &request,
        CLIENT,
    )
    .unwrap()
}

#[test]
fn first_start_creates_one_admin_key_for_the_default_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let (auth, first) = Auth::open(&dir.path().join("auth"), &enforcing()).unwrap();
    let first = first.expect("an admin key on first start");
    assert!(first.entry.admin);
    assert_eq!(first.entry.tenant, DEFAULT_TENANT);
    drop(auth);
    let (_auth, again) = Auth::open(&dir.path().join("auth"), &enforcing()).unwrap();
    assert!(again.is_none(), "shown once, never again");
}

#[test]
fn tokens_carry_tenant_scopes_and_class_lifetimes() {
    let (_dir, auth, first) = open(&enforcing());
    let key = first.unwrap();
    let upload = token(&auth, &key, &["upload:create"]);
    let principal = auth
        .authenticate(Some(&bearer(&upload.token)), CLIENT)
        .unwrap();
    assert_eq!(principal.tenant, DEFAULT_TENANT);
    assert!(principal.require(Action::CreateUpload).is_ok());
    let id = UploadId::from_bytes([1; 16]);
    assert!(matches!(
        principal.require(Action::ReadObject(id)),
        Err(Error::Forbidden { .. })
    ));
    let now = now_secs();
    assert!((now + 899..=now + 901).contains(&upload.expires_at));

    let read = token(&auth, &key, &[&format!("object:read:{id}")]);
    assert!(read.expires_at <= now_secs() + 300);
    let admin = token(&auth, &key, &["admin"]);
    assert!(admin.expires_at <= now_secs() + 600);
}

#[test]
fn non_admin_keys_cannot_get_the_admin_scope() {
    let (_dir, auth, _first) = open(&enforcing());
    auth.credentials().add_tenant("acme").unwrap();
    let key = auth.credentials().create_key("acme", false, None).unwrap();
    let request = TokenRequest {
        scopes: Some(vec!["admin".into()]),
        ttl_seconds: None,
    };
    assert!(matches!(
        auth.issue_token(
            Presented::Authorization(&bearer(&key.secret)),
            &request,
            CLIENT
        ),
        Err(Error::ScopeNotGrantable(_))
    ));
}

#[test]
fn api_keys_are_not_bearer_tokens_and_garbage_is_refused() {
    let (_dir, auth, first) = open(&enforcing());
    let key = first.unwrap();
    assert!(matches!(
        auth.authenticate(Some(&bearer(&key.secret)), CLIENT),
        Err(Error::ApiKeyNotAToken)
    ));
    assert!(matches!(
        auth.authenticate(None, CLIENT),
        Err(Error::Missing)
    ));
    assert!(matches!(
        auth.authenticate(Some("Basic dXNlcjpwYXNz"), CLIENT),
        Err(Error::BadScheme)
    ));
    assert!(matches!(
        auth.authenticate(Some("Bearer v4.public.AAAA"), CLIENT),
        Err(Error::InvalidToken(_))
    ));
}

#[test]
fn repeated_guesses_lock_out_the_address_only() {
    let (_dir, auth, first) = open(&enforcing());
    let key = first.unwrap();
    let good = token(&auth, &key, &["upload:create"]);
    for _ in 0..5 {
        assert!(matches!(
            auth.authenticate(Some("Bearer v4.public.bogus"), CLIENT),
            Err(Error::InvalidToken(_))
        ));
    }
    assert!(matches!(
        auth.authenticate(Some(&bearer(&good.token)), CLIENT),
        Err(Error::TooManyFailures { .. })
    ));
    let elsewhere = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
    assert!(
        auth.authenticate(Some(&bearer(&good.token)), elsewhere)
            .is_ok()
    );
}

#[test]
fn revoked_tokens_keys_and_tenants_stop_working() {
    let (_dir, auth, first) = open(&enforcing());
    let key = first.unwrap();
    let one = token(&auth, &key, &["upload:create"]);
    let two = token(&auth, &key, &["upload:create"]);
    auth.revoke_token(&one.token_id).unwrap();
    assert!(matches!(
        auth.authenticate(Some(&bearer(&one.token)), CLIENT),
        Err(Error::TokenRevoked)
    ));
    assert!(auth.authenticate(Some(&bearer(&two.token)), CLIENT).is_ok());

    auth.revoke_signing_key(&two.key_id).unwrap();
    assert!(matches!(
        auth.authenticate(Some(&bearer(&two.token)), CLIENT),
        Err(Error::TokenRevoked)
    ));
    let three = token(&auth, &key, &["upload:create"]);
    assert_ne!(three.key_id, two.key_id, "a new key signs after revocation");
    assert!(
        auth.authenticate(Some(&bearer(&three.token)), CLIENT)
            .is_ok()
    );

    auth.credentials().add_tenant("gone").unwrap();
    let gone = auth.credentials().create_key("gone", false, None).unwrap();
    let orphan = token(&auth, &gone, &["upload:create"]);
    auth.credentials().remove_tenant("gone").unwrap();
    assert!(
        auth.authenticate(Some(&bearer(&orphan.token)), CLIENT)
            .is_err()
    );
}

#[test]
fn presigned_urls_are_bounded_and_bound_to_one_object() {
    let (_dir, auth, first) = open(&enforcing());
    let key = first.unwrap();
    let id = UploadId::from_bytes([3; 16]);
    let reader = token(&auth, &key, &[&format!("object:read:{id}")]);
    let principal = auth
        .authenticate(Some(&bearer(&reader.token)), CLIENT)
        .unwrap();
    let query = auth.presign(&principal, id, Some(10 * 24 * 3600)).unwrap();
    assert!(query.expires <= now_secs() + PRESIGN_MAX_TTL.as_secs());
    let presigned = auth.authenticate_presigned(id, &query, CLIENT).unwrap();
    assert!(presigned.require(Action::ReadObject(id)).is_ok());
    assert!(presigned.require(Action::UseUpload(id)).is_err());
    let other = UploadId::from_bytes([4; 16]);
    assert!(matches!(
        auth.presign(&principal, other, None),
        Err(Error::Forbidden { .. })
    ));
    assert!(matches!(
        auth.authenticate_presigned(other, &query, CLIENT),
        Err(Error::PresignInvalid)
    ));
}

#[test]
fn client_certificates_map_to_their_tenant() {
    let fingerprint = [0xab; 32];
    let mut config = enforcing();
    config
        .client_certificates
        .insert(hex::encode(fingerprint), "acme".into());
    let (_dir, auth, _first) = open(&config);
    auth.credentials().add_tenant("acme").unwrap();
    let issued = auth
        .issue_token(
            Presented::ClientCertificate(fingerprint),
            &TokenRequest::default(),
            CLIENT,
        )
        .unwrap();
    assert_eq!(issued.tenant, "acme");
    assert!(matches!(
        auth.issue_token(
            Presented::ClientCertificate([1; 32]),
            &TokenRequest::default(),
            CLIENT
        ),
        Err(Error::UnknownCertificate)
    ));
}

#[test]
fn dev_mode_grants_everything_as_default() {
    let config = AuthConfig {
        mode: AuthMode::None,
        ..AuthConfig::default()
    };
    let (_dir, auth, first) = open(&config);
    assert!(first.is_none(), "no key is made when nothing checks keys");
    let principal = auth.authenticate(None, CLIENT).unwrap();
    assert_eq!(principal, Principal::unauthenticated());
    assert!(principal.require(Action::Admin).is_ok());
}

#[test]
fn a_cached_token_still_expires_and_is_still_revocable() {
    let (_dir, auth, first) = open(&enforcing());
    let key = first.unwrap();
    let issued = token(&auth, &key, &["upload:create"]);
    let header = bearer(&issued.token);
    // Twice: the second use is served from the cache of verified tokens.
    assert!(auth.authenticate(Some(&header), CLIENT).is_ok());
    assert!(auth.authenticate(Some(&header), CLIENT).is_ok());
    let later = issued.expires_at + 61;
    assert!(matches!(
        auth.verify_token(&issued.token, later),
        Err(Error::TokenExpired)
    ));
    auth.revoke_token(&issued.token_id).unwrap();
    assert!(matches!(
        auth.authenticate(Some(&header), CLIENT),
        Err(Error::TokenRevoked)
    ));
}
