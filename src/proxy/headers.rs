//! Header rewriting between client and upstream.
//!
//! Owns: removing hop-by-hop headers (RFC 9110 §7.6.1, plus those named in
//! `Connection`), keeping `Upgrade` for protocol switches, and the `X-Forwarded-For`,
//! `-Proto` and `-Host` headers. Must never touch end-to-end headers otherwise.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

// Constants, not strings: removing by `&str` would parse the name on every request.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The protocol a request asks to switch to (`websocket`), if it is an HTTP/1.1
/// upgrade: `Connection: upgrade` plus an `Upgrade` header.
pub(crate) fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if asks {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// Removes hop-by-hop headers; when `upgrade` is given, re-adds the two headers an
/// upgrade needs on the next hop.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: Option<HeaderValue>) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if let Some(protocol) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
}

/// Sets the `X-Forwarded-*` headers: appends the client address to `X-Forwarded-For`,
/// replaces `-Proto` and `-Host` (a client must not choose them).
pub(crate) fn add_forwarded(headers: &mut HeaderMap, client: IpAddr, tls: bool, host: HeaderValue) {
    const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
    const XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
    const XFH: HeaderName = HeaderName::from_static("x-forwarded-host");
    let mut value = String::new();
    for previous in headers.get_all(&XFF).iter().filter_map(|v| v.to_str().ok()) {
        value.push_str(previous);
        value.push_str(", ");
    }
    value.push_str(&client.to_string());
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(XFF, v);
    }
    headers.insert(
        XFP,
        HeaderValue::from_static(if tls { "https" } else { "http" }),
    );
    headers.insert(XFH, host);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h, None);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn upgrade_survives_as_two_headers() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        let proto = upgrade_protocol(&h);
        assert_eq!(proto, Some(HeaderValue::from_static("websocket")));
        strip_hop_by_hop(&mut h, proto);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(upgrade_protocol(&map(&[("upgrade", "websocket")])), None);
    }

    #[test]
    fn forwarded_headers_append_and_replace() {
        let mut h = map(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
        ]);
        let host = HeaderValue::from_static("a.example.com");
        add_forwarded(&mut h, [127, 0, 0, 1].into(), false, host);
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "a.example.com");
    }
}
