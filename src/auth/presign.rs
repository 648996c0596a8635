//! Presigned download URLs: `/objects/<id>?tenant=<t>&expires=<unix>&signature=<tag>`
//! where the tag is HMAC-SHA256 (base64url) over the method, object,
//! tenant and expiry. Anyone holding the URL may GET that one object until
//! it expires, and nothing else.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::Error;
use crate::crypto::constant_time_eq;
use crate::crypto::ed25519::MacKey;
use crate::id::UploadId;

/// The query parameters of a presigned URL, as parsed from a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedQuery {
    pub tenant: String,
    pub expires: u64,
    pub signature: String,
}

impl PresignedQuery {
    /// Parses the query string of a request; `None` when it carries no
    /// presigned parameters at all (the request uses a token instead).
    pub fn parse(query: Option<&str>) -> Option<Result<PresignedQuery, Error>> {
        let query = query?;
        let mut tenant = None;
        let mut expires = None;
        let mut signature = None;
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "tenant" => tenant = Some(value.to_owned()),
                "expires" => expires = Some(value.to_owned()),
                "signature" => signature = Some(value.to_owned()),
                _ => {}
            }
        }
        if tenant.is_none() && expires.is_none() && signature.is_none() {
            return None;
        }
        let parsed = (|| {
            Some(PresignedQuery {
                tenant: tenant?,
                expires: expires?.parse().ok()?,
                signature: signature?,
            })
        })();
        Some(parsed.ok_or(Error::PresignInvalid))
    }

    pub fn to_query(&self) -> String {
        format!(
            "tenant={}&expires={}&signature={}",
            self.tenant, self.expires, self.signature
        )
    }
}

fn message(method: &str, object: UploadId, tenant: &str, expires: u64) -> String {
    format!("strongroom-presign-v1\n{method}\n{object}\n{tenant}\n{expires}")
}

pub(super) fn sign(key: &MacKey, object: UploadId, tenant: &str, expires: u64) -> PresignedQuery {
    let tag = key.tag(message("GET", object, tenant, expires).as_bytes());
    PresignedQuery {
        tenant: tenant.to_owned(),
        expires,
        signature: URL_SAFE_NO_PAD.encode(tag),
    }
}

/// Checks the tag (in constant time) and then the expiry.
pub(super) fn check(
    key: &MacKey,
    object: UploadId,
    query: &PresignedQuery,
    now: u64,
) -> Result<(), Error> {
    let expected = sign(key, object, &query.tenant, query.expires);
    if !constant_time_eq(expected.signature.as_bytes(), query.signature.as_bytes()) {
        return Err(Error::PresignInvalid);
    }
    if now > query.expires {
        return Err(Error::PresignExpired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> UploadId {
        UploadId::from_bytes([n; 16])
    }

    #[test]
    fn signed_urls_verify_only_for_their_object_tenant_and_time() {
        let key = MacKey::from_bytes(&[9; 32]);
        let query = sign(&key, id(1), "acme", 1000);
        assert!(check(&key, id(1), &query, 999).is_ok());
        assert!(check(&key, id(1), &query, 1000).is_ok());
        assert!(matches!(
            check(&key, id(1), &query, 1001),
            Err(Error::PresignExpired)
        ));
        assert!(matches!(
            check(&key, id(2), &query, 999),
            Err(Error::PresignInvalid)
        ));
        let mut other_tenant = query.clone();
        other_tenant.tenant = "evil".into();
        assert!(matches!(
            check(&key, id(1), &other_tenant, 999),
            Err(Error::PresignInvalid)
        ));
        let mut later = query.clone();
        later.expires = 5000;
        assert!(matches!(
            check(&key, id(1), &later, 999),
            Err(Error::PresignInvalid)
        ));
        let other_key = MacKey::from_bytes(&[8; 32]);
        assert!(matches!(
            check(&other_key, id(1), &query, 999),
            Err(Error::PresignInvalid)
        ));
    }

    #[test]
    fn query_parsing() {
        assert!(PresignedQuery::parse(None).is_none());
        assert!(PresignedQuery::parse(Some("x=1")).is_none());
        let parsed = PresignedQuery::parse(Some("tenant=a&expires=5&signature=abc"))
            .unwrap()
            .unwrap();
        assert_eq!(parsed.to_query(), "tenant=a&expires=5&signature=abc");
        assert!(matches!(
            PresignedQuery::parse(Some("tenant=a&expires=soon&signature=abc")),
            Some(Err(Error::PresignInvalid))
        ));
        assert!(matches!(
            PresignedQuery::parse(Some("signature=abc")),
            Some(Err(Error::PresignInvalid))
        ));
    }
}
