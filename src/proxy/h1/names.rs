//! Header fields both directions of the fast path read the same way: hop-by-hop names,
//! the `Connection` header's tokens, `Content-Length`, and writing one field.
//!
//! Owns: byte-level header helpers for raw HTTP/1.1 heads. Must never allocate: they run
//! for every header of every request.

/// Hop-by-hop fields (RFC 9110 §7.6.1) plus the legacy ones proxies also drop. The
/// framing field `Transfer-Encoding` is not here: each direction decides about it.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "http2-settings",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

pub(crate) fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// The most field names one message may list in `Connection` on the fast path.
const MAX_CONNECTION_NAMES: usize = 8;

/// The tokens of a message's `Connection` headers.
#[derive(Default)]
pub(crate) struct Connection<'b> {
    pub(crate) close: bool,
    pub(crate) keep_alive: bool,
    pub(crate) upgrade: bool,
    named: [&'b str; MAX_CONNECTION_NAMES],
    count: usize,
}

impl<'b> Connection<'b> {
    /// Adds one `Connection` value; false when it names more fields than the fast path
    /// keeps track of or is not text.
    pub(crate) fn add(&mut self, value: &'b [u8]) -> bool {
        let Ok(value) = std::str::from_utf8(value) else {
            return false;
        };
        for token in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if token.eq_ignore_ascii_case("close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case("keep-alive") {
                self.keep_alive = true;
            } else if token.eq_ignore_ascii_case("upgrade") {
                self.upgrade = true;
            } else if self.count == MAX_CONNECTION_NAMES {
                return false;
            } else {
                self.named[self.count] = token;
                self.count += 1;
            }
        }
        true
    }

    /// Whether `name` is one of the fields this message marked hop-by-hop.
    pub(crate) fn names(&self, name: &str) -> bool {
        self.named[..self.count]
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name))
    }
}

/// A `Content-Length` value: digits only, no sign, no list (RFC 9110 §8.6).
pub(crate) fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

pub(crate) fn write_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_tokens_are_read_case_insensitively() {
        let mut c = Connection::default();
        assert!(c.add(b"Keep-Alive, X-Secret"));
        assert!(c.add(b"CLOSE"));
        assert!(c.close && c.keep_alive && !c.upgrade);
        assert!(c.names("x-secret"));
        assert!(!c.names("accept"));
        let mut many = Connection::default();
        assert!(!many.add(b"a,b,c,d,e,f,g,h,i"));
    }

    #[test]
    fn content_length_is_digits_only() {
        assert_eq!(content_length(b"1024"), Some(1024));
        for bad in [&b""[..], b"+1", b"1,1", b" 1", b"99999999999999999999"] {
            assert_eq!(content_length(bad), None, "{bad:?}");
        }
    }
}
