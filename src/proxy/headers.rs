//! Header rewriting between client and upstream.
//!
//! Owns: removing hop-by-hop headers (RFC 9110 §7.6.1, plus those named in
//! `Connection`), keeping `Upgrade` for protocol switches (never `h2c`: a tunnel past
//! the router), and what the next hop learns about the client (`X-Forwarded-For`,
//! `-Proto`, `-Host`, `X-Real-IP`, `Forwarded`): a client describes itself only through
//! a trusted proxy ([`Forwarded`]). Must never touch end-to-end headers otherwise.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

// Constants, not strings: removing by `&str` would parse the name on every request.
const HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    // Connection-specific (RFC 9113 §3.1 of its predecessor): the h2c upgrade's.
    HeaderName::from_static("http2-settings"),
];

const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
const XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
const XFH: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// What the proxy tells the next hop about one client connection; made once per
/// connection.
#[derive(Debug)]
pub(crate) struct Forwarded {
    pub(crate) client_ip: String,
    /// The RFC 7239 `for=` value: the address, bracketed and quoted if IPv6.
    pub(crate) for_node: String,
    pub(crate) proto: &'static str,
    /// The peer is one of `trusted_proxies`: what it says about its client is kept
    /// (and appended to); from anyone else those headers are replaced.
    pub(crate) trusted: bool,
}

impl Forwarded {
    pub(crate) fn new(client: IpAddr, tls: bool, trusted: bool) -> Self {
        let for_node = match client {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("\"[{v6}]\""),
        };
        Self {
            client_ip: client.to_string(),
            for_node,
            proto: if tls { "https" } else { "http" },
            trusted,
        }
    }

    /// This hop's `Forwarded` element for a request to `host`.
    pub(crate) fn element(&self, host: &str) -> String {
        let mut out = Vec::with_capacity(32 + host.len());
        self.write_element(&mut out, host);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Appends [`Forwarded::element`] to `out` (the fast path's head, no allocation).
    pub(crate) fn write_element(&self, out: &mut Vec<u8>, host: &str) {
        out.extend_from_slice(b"for=");
        out.extend_from_slice(self.for_node.as_bytes());
        out.extend_from_slice(b";host=\"");
        // A quoted-string: what would end or escape it is left out.
        out.extend(host.bytes().filter(|b| !matches!(b, b'"' | b'\\')));
        out.extend_from_slice(b"\";proto=");
        out.extend_from_slice(self.proto.as_bytes());
    }
}

/// Whether `name` is a header in which a client describes itself (or a proxy before
/// us describes it): kept only from trusted proxies.
pub(crate) fn describes_client(name: &str) -> bool {
    const PREFIX: &str = "x-forwarded-";
    name.eq_ignore_ascii_case("forwarded")
        || name.eq_ignore_ascii_case("x-real-ip")
        || (name.len() > PREFIX.len()
            && name.as_bytes()[..PREFIX.len()].eq_ignore_ascii_case(PREFIX.as_bytes()))
}

/// The protocol a request asks to switch to (`websocket`), if it is an HTTP/1.1
/// upgrade: `Connection: upgrade` plus an `Upgrade` header. Never `h2c`: an HTTP/2
/// connection tunnelled to the upstream would carry requests the router never saw
/// (h2c smuggling); such a request goes on as a plain one.
pub(crate) fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if !asks {
        return None;
    }
    let protocol = headers.get(header::UPGRADE)?;
    let h2c = protocol.to_str().map_or(true, |v| {
        v.split(',').any(|t| t.trim().eq_ignore_ascii_case("h2c"))
    });
    (!h2c).then(|| protocol.clone())
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

/// Sets what the next hop learns about the client: `X-Forwarded-For` (appended to
/// when the peer is trusted), `Forwarded` (likewise), `X-Real-IP`, `X-Forwarded-Proto`
/// and `-Host` (a trusted peer's are kept). From an untrusted peer every header that
/// describes the client is replaced.
pub(crate) fn add_forwarded(headers: &mut HeaderMap, client: &Forwarded, host: HeaderValue) {
    if !client.trusted {
        let claimed: Vec<HeaderName> = headers
            .keys()
            .filter(|n| describes_client(n.as_str()))
            .cloned()
            .collect();
        for name in claimed {
            headers.remove(name);
        }
    }
    let mut xff = String::new();
    for previous in headers.get_all(&XFF).iter().filter_map(|v| v.to_str().ok()) {
        xff.push_str(previous);
        xff.push_str(", ");
    }
    xff.push_str(&client.client_ip);
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert(XFF, v);
    }
    let mut forwarded = String::new();
    for previous in headers
        .get_all(header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        forwarded.push_str(previous);
        forwarded.push_str(", ");
    }
    forwarded.push_str(&client.element(host.to_str().unwrap_or("")));
    if let Ok(v) = HeaderValue::from_str(&forwarded) {
        headers.insert(header::FORWARDED, v);
    }
    if let Ok(v) = HeaderValue::from_str(&client.client_ip) {
        headers.entry(X_REAL_IP).or_insert(v);
    }
    headers
        .entry(XFP)
        .or_insert(HeaderValue::from_static(client.proto));
    headers.entry(XFH).or_insert(host);
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

    fn claimed() -> HeaderMap {
        map(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-port", "443"),
            ("x-real-ip", "1.2.3.4"),
            ("forwarded", "for=1.2.3.4"),
            ("accept", "*/*"),
        ])
    }

    #[test]
    fn an_untrusted_client_cannot_describe_itself() {
        let mut h = claimed();
        let host = HeaderValue::from_static("a.example.com");
        add_forwarded(
            &mut h,
            &Forwarded::new([127, 0, 0, 9].into(), false, false),
            host,
        );
        assert_eq!(h["x-forwarded-for"], "127.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "a.example.com");
        assert_eq!(h["x-real-ip"], "127.0.0.9");
        assert_eq!(
            h["forwarded"],
            "for=127.0.0.9;host=\"a.example.com\";proto=http"
        );
        assert!(!h.contains_key("x-forwarded-port"));
        assert_eq!(h["accept"], "*/*");
    }

    #[test]
    fn a_trusted_proxy_describes_its_client_and_we_append() {
        let mut h = claimed();
        let host = HeaderValue::from_static("a.example.com");
        add_forwarded(
            &mut h,
            &Forwarded::new("::1".parse().unwrap(), true, true),
            host,
        );
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, ::1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-port"], "443");
        assert_eq!(h["x-real-ip"], "1.2.3.4");
        assert_eq!(
            h["forwarded"],
            "for=1.2.3.4, for=\"[::1]\";host=\"a.example.com\";proto=https"
        );
    }

    #[test]
    fn an_h2c_upgrade_is_never_kept() {
        let h = map(&[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAAQAAP__"),
        ]);
        assert_eq!(upgrade_protocol(&h), None);
        let mut h = h;
        strip_hop_by_hop(&mut h, None);
        assert!(h.is_empty(), "{h:?}");
    }
}
