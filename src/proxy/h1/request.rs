//! A client's HTTP/1.1 request head on the fast path: parsing it, deciding whether the
//! fast path may carry it, and writing the head that goes upstream.
//!
//! Owns: the fast path's admission rule and the upstream request head (hop-by-hop
//! headers and those named in `Connection` removed, `Host` and `X-Forwarded-*` set —
//! the same rewriting as `headers.rs` does for the general path). Must never accept a
//! request whose framing it does not fully understand: HTTP/1.0, `Transfer-Encoding`,
//! several `Content-Length`s, `Expect`, `Upgrade`, `CONNECT`, non-origin-form targets
//! and anything malformed go to the general (hyper) path, which answers them.

use std::mem::MaybeUninit;

use super::names::{self, Connection};

/// The most headers the fast path parses; a request with more goes to hyper, which
/// applies the configured limit.
pub(crate) const MAX_HEADERS: usize = 100;

/// What the buffered bytes hold.
#[expect(
    clippy::large_enum_variant,
    reason = "lives on the stack for one parse; boxing would allocate per request"
)]
pub(crate) enum Parsed<'b> {
    /// Not a whole head yet.
    Partial,
    /// For the general path (see the module comment).
    Handoff,
    Complete(Request<'b>),
}

/// A request head the fast path carries.
pub(crate) struct Request<'b> {
    pub(crate) head_len: usize,
    pub(crate) method: &'b str,
    pub(crate) target: &'b str,
    pub(crate) host: &'b str,
    pub(crate) content_length: u64,
    /// The client asked to close the connection after this exchange.
    pub(crate) close: bool,
    connection: Connection<'b>,
    headers: &'b [httparse::Header<'b>],
}

pub(crate) use crate::proxy::headers::Forwarded;

pub(crate) fn parse<'b>(
    buf: &'b [u8],
    storage: &'b mut [MaybeUninit<httparse::Header<'b>>],
) -> Parsed<'b> {
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(buf, storage) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Handoff,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Parsed::Handoff;
    };
    // A fragment never belongs in a request target; hyper's URI parser drops it, so the
    // general path routes such a target the way the two paths should agree on.
    if method == "CONNECT" || !target.starts_with('/') || target.contains('#') {
        return Parsed::Handoff;
    }
    // Dot-segments or repeated slashes: the general path normalises them (when
    // configured) before routing, and both paths must route a target alike.
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    if crate::proxy::path::needs_normalizing(path) {
        return Parsed::Handoff;
    }
    let headers: &'b [httparse::Header<'b>] = req.headers;
    let mut host = None;
    let mut content_length = None;
    let mut connection = Connection::default();
    for h in headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            if host.is_some() {
                return Parsed::Handoff;
            }
            host = Some(visible_ascii(h.value));
        } else if name.eq_ignore_ascii_case("content-length") {
            if content_length.is_some() {
                return Parsed::Handoff;
            }
            content_length = Some(names::content_length(h.value));
        } else if name.eq_ignore_ascii_case("connection") {
            if !connection.add(h.value) {
                return Parsed::Handoff;
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("upgrade")
            || name.eq_ignore_ascii_case("expect")
        {
            return Parsed::Handoff;
        }
    }
    let content_length = match content_length {
        None => 0,
        Some(Some(n)) => n,
        Some(None) => return Parsed::Handoff,
    };
    let Some(Some(host)) = host else {
        return Parsed::Handoff;
    };
    // `Connection` naming a framing field or Host would make the next hop read this
    // message differently (a body without its length is a smuggled request).
    if connection.upgrade
        || host.is_empty()
        || ["content-length", "transfer-encoding", "host"]
            .iter()
            .any(|n| connection.names(n))
    {
        return Parsed::Handoff;
    }
    Parsed::Complete(Request {
        head_len,
        method,
        target,
        host,
        content_length,
        close: connection.close,
        connection,
        headers,
    })
}

impl<'b> Request<'b> {
    /// The value of the first header `name` (lower case), for the access log.
    pub(crate) fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// The path the request is routed by (the target without its query).
    pub(crate) fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(self.target, |(path, _)| path)
    }

    pub(crate) fn idempotent(&self) -> bool {
        crate::proxy::forward::idempotent(self.method)
    }

    pub(crate) fn is_head(&self) -> bool {
        self.method == "HEAD"
    }

    /// Appends the head to send upstream to `out`.
    pub(crate) fn write_upstream_head(&self, out: &mut Vec<u8>, forwarded: &Forwarded) {
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        // What a trusted peer said about its client; from others it is dropped.
        let mut previous_for: Vec<&[u8]> = Vec::new();
        let mut previous_forwarded: Vec<&[u8]> = Vec::new();
        let (mut real_ip, mut proto, mut host) = (false, false, false);
        for h in self.headers {
            let name = h.name;
            if names::is_hop_by_hop(name)
                || self.connection.names(name)
                || name.eq_ignore_ascii_case("host")
            {
                continue;
            }
            if crate::proxy::headers::describes_client(name) {
                if !forwarded.trusted {
                    continue;
                }
                let Some(v) = visible_ascii(h.value) else {
                    continue;
                };
                if name.eq_ignore_ascii_case("x-forwarded-for") {
                    previous_for.push(v.as_bytes());
                    continue;
                }
                if name.eq_ignore_ascii_case("forwarded") {
                    previous_forwarded.push(v.as_bytes());
                    continue;
                }
                real_ip |= name.eq_ignore_ascii_case("x-real-ip");
                proto |= name.eq_ignore_ascii_case("x-forwarded-proto");
                host |= name.eq_ignore_ascii_case("x-forwarded-host");
            }
            names::write_header(out, name.as_bytes(), h.value);
        }
        names::write_header(out, b"host", self.host.as_bytes());
        let list = |out: &mut Vec<u8>, name: &[u8], previous: &[&[u8]]| {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            for v in previous {
                out.extend_from_slice(v);
                out.extend_from_slice(b", ");
            }
        };
        list(out, b"x-forwarded-for", &previous_for);
        out.extend_from_slice(forwarded.client_ip.as_bytes());
        out.extend_from_slice(b"\r\n");
        list(out, b"forwarded", &previous_forwarded);
        forwarded.write_element(out, self.host);
        out.extend_from_slice(b"\r\n");
        if !real_ip {
            names::write_header(out, b"x-real-ip", forwarded.client_ip.as_bytes());
        }
        if !proto {
            names::write_header(out, b"x-forwarded-proto", forwarded.proto.as_bytes());
        }
        if !host {
            names::write_header(out, b"x-forwarded-host", self.host.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// The value as text if it is visible ASCII (what `HeaderValue::to_str` accepts).
fn visible_ascii(value: &[u8]) -> Option<&str> {
    if value
        .iter()
        .all(|&b| (b' '..0x7f).contains(&b) || b == b'\t')
    {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream_head(raw: &str) -> Option<String> {
        upstream_head_from(raw, false)
    }

    fn upstream_head_from(raw: &str, trusted: bool) -> Option<String> {
        let mut storage = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let Parsed::Complete(req) = parse(raw.as_bytes(), &mut storage) else {
            return None;
        };
        let mut out = Vec::new();
        let fwd = Forwarded::new([127, 0, 0, 9].into(), false, trusted);
        req.write_upstream_head(&mut out, &fwd);
        Some(String::from_utf8(out).unwrap())
    }

    #[test]
    fn the_upstream_head_drops_hop_by_hop_and_sets_forwarded_headers() {
        let head = upstream_head(
            "GET /a?b=1 HTTP/1.1\r\nHost: A.example.com\r\nConnection: keep-alive, x-secret\r\n\
             X-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nX-Forwarded-For: 1.2.3.4\r\n\
             X-Forwarded-Proto: https\r\nAccept: */*\r\n\r\n",
        )
        .unwrap();
        // The client's own X-Forwarded-* are not believed: it is no trusted proxy.
        assert_eq!(
            head,
            "GET /a?b=1 HTTP/1.1\r\nAccept: */*\r\nhost: A.example.com\r\n\
             x-forwarded-for: 127.0.0.9\r\n\
             forwarded: for=127.0.0.9;host=\"A.example.com\";proto=http\r\n\
             x-real-ip: 127.0.0.9\r\nx-forwarded-proto: http\r\n\
             x-forwarded-host: A.example.com\r\n\r\n"
        );
    }

    #[test]
    fn a_trusted_proxy_keeps_what_it_says_about_its_client() {
        let head = upstream_head_from(
            "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\nX-Real-IP: 1.2.3.4\r\n\
             X-Forwarded-Proto: https\r\nForwarded: for=1.2.3.4\r\nX-Forwarded-Port: 443\r\n\r\n",
            true,
        )
        .unwrap();
        assert_eq!(
            head,
            "GET / HTTP/1.1\r\nX-Real-IP: 1.2.3.4\r\nX-Forwarded-Proto: https\r\n\
             X-Forwarded-Port: 443\r\nhost: a\r\nx-forwarded-for: 1.2.3.4, 127.0.0.9\r\n\
             forwarded: for=1.2.3.4, for=127.0.0.9;host=\"a\";proto=http\r\n\
             x-forwarded-host: a\r\n\r\n"
        );
    }

    #[test]
    fn a_path_to_normalise_goes_to_the_general_path() {
        for raw in [
            "GET /foo/../api HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET //api HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /%2e%2e/api?x=1 HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert_eq!(upstream_head(raw), None, "{raw}");
        }
        assert!(upstream_head("GET /api?next=/../x HTTP/1.1\r\nHost: a\r\n\r\n").is_some());
    }

    #[test]
    fn a_forwarded_for_named_in_connection_is_dropped_like_on_the_general_path() {
        let head = upstream_head(
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: x-forwarded-for\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
        )
        .unwrap();
        assert!(head.contains("x-forwarded-for: 127.0.0.9\r\n"), "{head}");
    }

    #[test]
    fn requests_the_fast_path_does_not_frame_go_to_the_general_path() {
        for raw in [
            "GET / HTTP/1.0\r\nHost: a\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n",
            // A body whose length the next hop would not see: a smuggled request.
            "POST / HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: Host\r\n\r\n",
            "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n",
        ] {
            let mut storage = [const { MaybeUninit::uninit() }; MAX_HEADERS];
            assert!(
                matches!(parse(raw.as_bytes(), &mut storage), Parsed::Handoff),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn a_request_is_complete_only_with_its_whole_head() {
        let raw =
            b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc";
        let mut storage = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        assert!(matches!(parse(&raw[..20], &mut storage), Parsed::Partial));
        let mut storage = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let Parsed::Complete(req) = parse(raw, &mut storage) else {
            panic!("not complete");
        };
        assert_eq!(req.head_len, raw.len() - 3);
        assert_eq!((req.content_length, req.close), (3, true));
        assert_eq!(req.path(), "/x");
        assert!(!req.idempotent());
    }

    proptest::proptest! {
        /// A head with arbitrary bytes in it parses, is declined, or is partial: never
        /// a panic, and a complete head never claims more bytes than it was given.
        #[test]
        fn arbitrary_heads_never_panic(
            value in proptest::collection::vec(proptest::num::u8::ANY, 0..60),
            tail in proptest::collection::vec(proptest::num::u8::ANY, 0..60),
        ) {
            let mut raw = b"GET /p HTTP/1.1\r\nHost: a\r\nConnection: ".to_vec();
            raw.extend_from_slice(&value);
            raw.extend_from_slice(b"\r\n\r\n");
            raw.extend_from_slice(&tail);
            for input in [&raw[..], &tail[..]] {
                let mut storage = [const { MaybeUninit::uninit() }; MAX_HEADERS];
                if let Parsed::Complete(req) = parse(input, &mut storage) {
                    proptest::prop_assert!(req.head_len <= input.len());
                    let mut out = Vec::new();
                    req.write_upstream_head(&mut out, &Forwarded::new("::1".parse().unwrap(), false, false));
                }
            }
        }
    }
}
