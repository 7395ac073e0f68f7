//! Browser sessions of the admin UI: a login with the admin token sets an `HttpOnly`,
//! `SameSite=Strict` cookie naming a session; every write from the page carries the
//! session's CSRF token in `X-CSRF-Token` (checked in constant time). Writes that carry
//! an `Origin` other than the listener's own are refused before anything else, so a
//! page elsewhere cannot drive this one even where no token is configured (loopback).
//! Sessions live in memory, per replica, for 12 hours; at most 256 (the oldest goes).

use std::collections::HashMap;
use std::time::Duration;

use http::HeaderMap;
use http::header;
use parking_lot::Mutex;
use subtle::ConstantTimeEq;
use tokio::time::Instant;

/// The cookie's name.
pub(crate) const COOKIE: &str = "podgate_session";
/// The header a write from the page carries.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";
const TTL: Duration = Duration::from_hours(12);
const MAX_SESSIONS: usize = 256;

#[derive(Debug)]
struct Session {
    csrf: String,
    expires: Instant,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

fn random_hex() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl Sessions {
    /// A new session: `(cookie value, csrf token)`.
    pub(crate) fn create(&self) -> (String, String) {
        let (id, csrf) = (random_hex(), random_hex());
        let mut sessions = self.by_id.lock();
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            id.clone(),
            Session {
                csrf: csrf.clone(),
                expires: now + TTL,
            },
        );
        (id, csrf)
    }

    /// The CSRF token of the request's live session, if it has one.
    pub(crate) fn csrf_of(&self, headers: &HeaderMap) -> Option<String> {
        let id = cookie(headers, COOKIE)?;
        let sessions = self.by_id.lock();
        let s = sessions.get(id)?;
        (s.expires > Instant::now()).then(|| s.csrf.clone())
    }

    /// A live session whose CSRF token the request carries.
    pub(crate) fn authenticates(&self, headers: &HeaderMap) -> bool {
        let Some(csrf) = self.csrf_of(headers) else {
            return false;
        };
        headers
            .get(CSRF_HEADER)
            .is_some_and(|given| bool::from(given.as_bytes().ct_eq(csrf.as_bytes())))
    }

    /// Ends the request's session.
    pub(crate) fn end(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, COOKIE) {
            self.by_id.lock().remove(id);
        }
    }
}

/// The `Set-Cookie` value for a session (`None`: clear it).
pub(crate) fn set_cookie(id: Option<&str>) -> String {
    match id {
        Some(id) => format!(
            "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
            TTL.as_secs()
        ),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the `Host` a request names is one the admin listener answers to: an IP
/// address, `localhost`, or one of `allowed` (DNS rebinding names an attacker's host).
/// A request without `Host` (HTTP/1.0 tools) is let through.
pub(crate) fn allowed_host(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return headers.get(header::HOST).is_none();
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        }),
    };
    name.parse::<std::net::IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
}

/// Whether a write may go on as far as its origin goes: no `Origin` (a CLI, curl) or
/// this listener's own (`http://` + the `Host` header).
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match (origin.to_str().ok(), host) {
        (Some(origin), Some(host)) => {
            origin == format!("http://{host}") || origin == format!("https://{host}")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_authenticates_with_its_csrf_token_only_and_expires() {
        let sessions = Sessions::default();
        let (id, csrf) = sessions.create();
        let cookie = format!("other=1; {COOKIE}={id}");
        assert!(sessions.authenticates(&headers(&[("cookie", &cookie), (CSRF_HEADER, &csrf)])));
        assert!(!sessions.authenticates(&headers(&[("cookie", &cookie)])));
        assert!(!sessions.authenticates(&headers(&[("cookie", &cookie), (CSRF_HEADER, "x")])));
        assert!(!sessions.authenticates(&headers(&[(CSRF_HEADER, &csrf)])));
        tokio::time::advance(TTL + Duration::from_secs(1)).await;
        assert!(!sessions.authenticates(&headers(&[("cookie", &cookie), (CSRF_HEADER, &csrf)])));
    }

    #[test]
    fn writes_from_another_origin_are_not_same_origin() {
        assert!(same_origin(&headers(&[("host", "127.0.0.1:9900")])));
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:9900"),
            ("origin", "http://127.0.0.1:9900")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:9900"),
            ("origin", "http://evil.test")
        ])));
        assert!(!same_origin(&headers(&[("origin", "null")])));
    }

    #[test]
    fn only_ip_addresses_localhost_and_allowed_names_are_answered() {
        let allowed = ["podgate.podgate-system".to_owned()];
        for (host, ok) in [
            ("127.0.0.1:9900", true),
            ("[::1]:9900", true),
            ("localhost:9900", true),
            ("10.0.0.7", true),
            ("podgate.podgate-system:9900", true),
            ("evil.test:9900", false),
            ("evil.test", false),
        ] {
            assert_eq!(
                allowed_host(&headers(&[("host", host)]), &allowed),
                ok,
                "{host}"
            );
        }
        assert!(allowed_host(&HeaderMap::new(), &allowed));
    }

    #[test]
    fn the_cookie_is_http_only_and_strict() {
        let c = set_cookie(Some("abc"));
        assert!(
            c.contains("HttpOnly")
                && c.contains("SameSite=Strict")
                && c.starts_with("podgate_session=abc;")
        );
    }
}
