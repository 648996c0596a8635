//! X-HTTP-Method-Override: for clients (and proxies) that can only send POST.

use http::{HeaderMap, Method};

use super::error::ParseError;
use super::headers::{Conflict, single};
use super::names;

/// The methods a POST may be turned into.
const OVERRIDABLE: [Method; 3] = [Method::PATCH, Method::DELETE, Method::HEAD];

/// The method the request stands for.
///
/// The override is honoured only on a real POST, and only towards PATCH,
/// DELETE or HEAD (spelled exactly so: methods are case-sensitive); any
/// other value is [`ParseError::InvalidMethodOverride`]. On any other real
/// method the header is ignored: it exists to get around POST-only clients,
/// and a request that already has a non-POST method needs no way around.
pub fn effective_method(method: &Method, headers: &HeaderMap) -> Result<Method, ParseError> {
    if *method != Method::POST {
        return Ok(method.clone());
    }
    let wanted = single(headers, names::X_HTTP_METHOD_OVERRIDE)
        .map_err(|Conflict| ParseError::InvalidMethodOverride)?;
    let Some(wanted) = wanted else {
        return Ok(Method::POST);
    };
    OVERRIDABLE
        .iter()
        .find(|candidate| candidate.as_str().as_bytes() == wanted.as_bytes())
        .cloned()
        .ok_or(ParseError::InvalidMethodOverride)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_override(method: Method, value: &'static str) -> Result<Method, ParseError> {
        let mut headers = HeaderMap::new();
        headers.insert("x-http-method-override", HeaderValue::from_static(value));
        effective_method(&method, &headers)
    }

    #[test]
    fn post_becomes_patch_delete_or_head() {
        assert_eq!(with_override(Method::POST, "PATCH"), Ok(Method::PATCH));
        assert_eq!(with_override(Method::POST, "DELETE"), Ok(Method::DELETE));
        assert_eq!(with_override(Method::POST, "HEAD"), Ok(Method::HEAD));
    }

    #[test]
    fn post_without_override_stays_post() {
        assert_eq!(
            effective_method(&Method::POST, &HeaderMap::new()),
            Ok(Method::POST)
        );
    }

    #[test]
    fn other_targets_of_override_are_refused() {
        for bad in ["GET", "POST", "OPTIONS", "PUT", "patch", "", " PATCH"] {
            assert_eq!(
                with_override(Method::POST, bad),
                Err(ParseError::InvalidMethodOverride),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn disagreeing_copies_are_refused() {
        let mut headers = HeaderMap::new();
        headers.append("x-http-method-override", HeaderValue::from_static("PATCH"));
        headers.append("x-http-method-override", HeaderValue::from_static("DELETE"));
        assert_eq!(
            effective_method(&Method::POST, &headers),
            Err(ParseError::InvalidMethodOverride)
        );
    }

    #[test]
    fn ignored_unless_the_real_method_is_post() {
        assert_eq!(with_override(Method::GET, "PATCH"), Ok(Method::GET));
        assert_eq!(with_override(Method::PATCH, "DELETE"), Ok(Method::PATCH));
        assert_eq!(with_override(Method::HEAD, "nonsense"), Ok(Method::HEAD));
    }
}
