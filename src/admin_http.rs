//! What the three admin routers share (the proxy's LB-contract API, the controller's
//! admin view and its weights API): a response with a content type, a JSON body, and
//! the bearer-token check (constant-time, so a token cannot be guessed byte by byte).

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use serde::Serialize;
use subtle::ConstantTimeEq as _;

/// A response of `status` with `body` of `content_type`.
pub(crate) fn respond<B>(status: StatusCode, content_type: &'static str, body: B) -> Response<B> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// How an answer is encoded: compact for programs, indented for people with curl.
#[derive(Clone, Copy)]
pub(crate) enum Style {
    Compact,
    Pretty,
}

/// `value` as a JSON body (`body` makes the router's body type from the bytes), or a
/// plain-text 500 when it cannot be encoded.
pub(crate) fn json<B>(
    status: StatusCode,
    value: &impl Serialize,
    style: Style,
    body: impl FnOnce(Bytes) -> B,
) -> Response<B> {
    let encoded = match style {
        Style::Pretty => serde_json::to_vec_pretty(value),
        Style::Compact => serde_json::to_vec(value),
    };
    match encoded {
        Ok(json) => respond(status, "application/json", body(Bytes::from(json))),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode an admin answer");
            respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                body(Bytes::from(format!("cannot encode: {e}\n"))),
            )
        }
    }
}

/// Whether `headers` carry `Authorization: Bearer <token>`.
pub(crate) fn bearer_matches(headers: &HeaderMap, token: &[u8]) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .is_some_and(|given| bool::from(given.ct_eq(token)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_needs_the_exact_token() {
        let with = |value: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            h
        };
        assert!(bearer_matches(&with("Bearer s3cret"), b"s3cret"));
        assert!(!bearer_matches(&with("Bearer s3cre"), b"s3cret"));
        assert!(!bearer_matches(&with("Basic s3cret"), b"s3cret"));
        assert!(!bearer_matches(&HeaderMap::new(), b"s3cret"));
    }
}
