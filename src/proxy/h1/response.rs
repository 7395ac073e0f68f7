//! An upstream's HTTP/1.1 response head on the fast path: parsing it, finding how its
//! body is framed, and writing the head the client gets.
//!
//! Owns: response framing (RFC 9112 §6.3) and the client-facing head (hop-by-hop
//! headers and those named in `Connection` removed; `Transfer-Encoding` kept because the
//! body is relayed as it came; `Connection: close` added when the client connection
//! ends after it). Must never let a response with contradictory framing through.

use super::framing::{Chunked, Framing};
use super::names::{self, Connection};

/// Upstream response heads larger than this are refused (502).
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;

/// What the upstream's buffered bytes hold.
pub(crate) enum Head {
    Partial,
    /// A 1xx other than 101: relayed as it is, and the final response follows.
    Interim {
        head_len: usize,
    },
    Final(Response),
}

/// A final response head, its client-facing copy already written.
pub(crate) struct Response {
    pub(crate) head_len: usize,
    pub(crate) status: u16,
    pub(crate) framing: Framing,
    /// Whether the upstream connection may carry another request afterwards.
    pub(crate) reusable: bool,
    /// The client was told `Connection: close`: the client connection ends after it.
    pub(crate) closes_client: bool,
}

/// Why a response cannot be relayed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BadResponse {
    #[error("malformed response head")]
    Malformed,
    #[error("response head too large")]
    TooLarge,
    #[error("upstream switched protocols unasked")]
    SwitchedProtocols,
    #[error("invalid Content-Length in the response")]
    ContentLength,
}

/// Parses the head at the start of `buf`. For a final response, writes the client's
/// head to `out`, with `Connection: close` when `close_client` or when the body ends
/// with the upstream connection.
pub(crate) fn parse(
    buf: &[u8],
    request_is_head: bool,
    close_client: bool,
    out: &mut Vec<u8>,
) -> Result<Head, BadResponse> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut storage);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
            return Err(BadResponse::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(Head::Partial),
        Err(_) => return Err(BadResponse::Malformed),
    };
    let (Some(version), Some(status)) = (resp.version, resp.code) else {
        return Err(BadResponse::Malformed);
    };
    if status == 101 {
        return Err(BadResponse::SwitchedProtocols);
    }
    if (100..200).contains(&status) {
        return Ok(Head::Interim { head_len });
    }
    let headers: &[httparse::Header<'_>] = resp.headers;
    let mut connection = Connection::default();
    let mut chunked = None;
    let mut length = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("connection") {
            if !connection.add(h.value) {
                return Err(BadResponse::Malformed);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only the last coding says whether the body is chunked.
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or_default();
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let n = names::content_length(h.value).ok_or(BadResponse::ContentLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(BadResponse::ContentLength);
            }
            length = Some(n);
        }
    }
    let framing = if request_is_head || status == 204 || status == 304 {
        Framing::Length(0)
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked(Chunked::new()),
            (Some(false), _) | (None, None) => Framing::UntilClose,
            (None, Some(n)) => Framing::Length(n),
        }
    };
    let until_close = matches!(framing, Framing::UntilClose);
    let both_framings = chunked.is_some() && length.is_some();

    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&three_digits(status));
    out.push(b' ');
    out.extend_from_slice(resp.reason.unwrap_or_default().as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in headers {
        let name = h.name;
        // Framing fields stay whatever `Connection` says: the body is relayed as framed.
        let framing_field = name.eq_ignore_ascii_case("transfer-encoding");
        if name.eq_ignore_ascii_case("content-length")
            || names::is_hop_by_hop(name)
            || (connection.names(name) && !framing_field)
        {
            continue;
        }
        names::write_header(out, name.as_bytes(), h.value);
    }
    // One Content-Length however many equal ones came (RFC 9110 §8.6), none with a
    // Transfer-Encoding (RFC 9112 §6.3 ¶3).
    if let (None, Some(n)) = (chunked, length) {
        names::write_header(out, b"content-length", n.to_string().as_bytes());
    }
    if close_client || until_close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Head::Final(Response {
        head_len,
        status,
        framing,
        // Both framings at once smells of a confused or malicious upstream.
        reusable: version == 1 && !connection.close && !until_close && !both_framings,
        closes_client: close_client || until_close,
    }))
}

/// A status code as text; httparse only yields three-digit codes.
fn three_digits(status: u16) -> [u8; 3] {
    let digit = |n: u16| b'0' + u8::try_from(n % 10).unwrap_or(0);
    [digit(status / 100), digit(status / 10), digit(status)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_head(raw: &str, request_is_head: bool) -> (String, Response) {
        let mut out = Vec::new();
        match parse(raw.as_bytes(), request_is_head, false, &mut out) {
            Ok(Head::Final(r)) => (String::from_utf8(out).unwrap(), r),
            _ => panic!("not a final response: {raw:?}"),
        }
    }

    #[test]
    fn hop_by_hop_headers_are_dropped_and_framing_kept() {
        let (head, r) = client_head(
            "HTTP/1.1 200 OK\r\nConnection: x-up\r\nX-Up: 1\r\nKeep-Alive: 5\r\n\
             Transfer-Encoding: chunked\r\nContent-Length: 9\r\nServer: pod\r\n\r\n",
            false,
        );
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nServer: pod\r\n\r\n"
        );
        assert!(matches!(r.framing, Framing::Chunked(_)));
        assert!(!r.reusable, "both framings: not reused");
    }

    #[test]
    fn framing_fields_survive_a_connection_header_naming_them() {
        let (head, r) = client_head(
            "HTTP/1.1 200 OK\r\nConnection: content-length, transfer-encoding\r\n\
             Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            false,
        );
        assert_eq!(head, "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n");
        assert!(matches!(r.framing, Framing::Length(5)));
        let (head, _) = client_head(
            "HTTP/1.1 200 OK\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        );
        assert!(head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let length = |raw: &str, head: bool| match client_head(raw, head).1.framing {
            Framing::Length(n) => Some(n),
            _ => None,
        };
        assert_eq!(
            length("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false),
            Some(5)
        );
        assert_eq!(
            length("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true),
            Some(0)
        );
        assert_eq!(length("HTTP/1.1 204 No Content\r\n\r\n", false), Some(0));
        assert_eq!(length("HTTP/1.1 304 Not Modified\r\n\r\n", false), Some(0));
        let (head, r) = client_head("HTTP/1.0 200 OK\r\n\r\n", false);
        assert!(matches!(r.framing, Framing::UntilClose));
        assert!(!r.reusable);
        assert!(head.ends_with("connection: close\r\n\r\n"), "{head}");
        let (_, r) = client_head(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        assert!(!r.reusable);
    }

    #[test]
    fn contradictory_or_unasked_responses_are_refused() {
        for raw in [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
        ] {
            let mut out = Vec::new();
            assert!(
                parse(raw.as_bytes(), false, false, &mut out).is_err(),
                "{raw:?}"
            );
        }
        let mut out = Vec::new();
        assert!(matches!(
            parse(
                b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
                false,
                false,
                &mut out
            ),
            Ok(Head::Interim { head_len: 40 })
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_heads_never_panic(
            value in proptest::collection::vec(proptest::num::u8::ANY, 0..60),
            tail in proptest::collection::vec(proptest::num::u8::ANY, 0..60),
        ) {
            let mut raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: ".to_vec();
            raw.extend_from_slice(&value);
            raw.extend_from_slice(b"\r\nContent-Length: 3\r\n\r\n");
            raw.extend_from_slice(&tail);
            for input in [&raw[..], &tail[..]] {
                let mut out = Vec::new();
                if let Ok(Head::Final(r)) = parse(input, false, false, &mut out) {
                    proptest::prop_assert!(r.head_len <= input.len());
                }
            }
        }
    }
}
