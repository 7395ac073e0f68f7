//! The proxy's fast HTTP/1.1 path, seen from raw TCP clients and backends: pipelined
//! requests, bodies larger than one read, a connection handed to the general path
//! mid-stream, upstream connections closed while idle, HEAD, and responses that end
//! with the connection.

use crate::harness;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use harness::{Backend, eventually, routed, routed_with};
use podgate_core::model::{Endpoint, EndpointState};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(10);

/// One response read off a raw connection.
#[derive(Debug)]
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response (Content-Length, chunked, or until close); `buf` keeps what
/// follows it.
async fn read_response<R: AsyncRead + Unpin>(
    s: &mut R,
    buf: &mut Vec<u8>,
    head_request: bool,
) -> Raw {
    tokio::time::timeout(WAIT, async {
        let (status, headers, head_len) = loop {
            let mut storage = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut storage);
            if let httparse::Status::Complete(n) = r.parse(buf).expect("a valid response head") {
                let headers = r
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                break (r.code.unwrap(), headers, n);
            }
            fill(s, buf).await.expect("the response head");
        };
        buf.drain(..head_len);
        let mut raw = Raw {
            status,
            headers,
            body: Vec::new(),
        };
        if head_request {
            return raw;
        }
        if let Some(len) = raw.header("content-length") {
            let len: usize = len.parse().unwrap();
            while buf.len() < len {
                fill(s, buf).await.expect("the whole body");
            }
            raw.body = buf.drain(..len).collect();
        } else if raw.header("transfer-encoding") == Some("chunked") {
            loop {
                let line_end = loop {
                    if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    fill(s, buf).await.expect("a chunk size");
                };
                let size =
                    usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).unwrap(), 16)
                        .unwrap();
                while buf.len() < line_end + 2 + size + 2 {
                    fill(s, buf).await.expect("a whole chunk");
                }
                raw.body
                    .extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
                buf.drain(..line_end + 2 + size + 2);
                if size == 0 {
                    break;
                }
            }
        } else {
            while fill(s, buf).await.is_some() {}
            raw.body = std::mem::take(buf);
        }
        raw
    })
    .await
    .expect("a response within 10 s")
}

/// Reads more; `None` at the end of the stream.
async fn fill<R: AsyncRead + Unpin>(s: &mut R, buf: &mut Vec<u8>) -> Option<usize> {
    buf.reserve(16 * 1024);
    match s.read_buf(buf).await {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let pod = Backend::start("web", 71, 1).await;
    let proxy = routed("p.example.com", pod.endpoint("idc", EndpointState::Active)).await;
    let mut s = TcpStream::connect(proxy.http_addr).await.unwrap();
    let mut all = Vec::new();
    for path in ["/a", "/b", "/c"] {
        all.extend_from_slice(
            format!("GET {path} HTTP/1.1\r\nHost: p.example.com\r\n\r\n").as_bytes(),
        );
    }
    s.write_all(&all).await.unwrap();
    let mut buf = Vec::new();
    for path in ["/a", "/b", "/c"] {
        let r = read_response(&mut s, &mut buf, false).await;
        assert_eq!(r.status, 200);
        assert_eq!(String::from_utf8_lossy(&r.body), format!("web {path}"));
    }
    assert_eq!(pod.hits(), 3);
}

#[tokio::test]
async fn a_request_body_larger_than_a_read_streams_through_intact() {
    let pod = Backend::start("web", 71, 2).await;
    let proxy = routed("b.example.com", pod.endpoint("idc", EndpointState::Active)).await;
    let body: Vec<u8> = (0..1_000_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut s = TcpStream::connect(proxy.http_addr).await.unwrap();
    let head = format!(
        "POST /up HTTP/1.1\r\nHost: b.example.com\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    for part in body.chunks(100_000) {
        s.write_all(part).await.unwrap();
    }
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false).await;
    assert_eq!(r.status, 200);
    let mut expected = b"web /up ".to_vec();
    expected.extend_from_slice(&body);
    assert!(r.body == expected, "the echoed body differs");
    // The connection carries on.
    s.write_all(b"GET /after HTTP/1.1\r\nHost: b.example.com\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut s, &mut buf, false).await;
    assert_eq!(String::from_utf8_lossy(&r.body), "web /after");
}

#[tokio::test]
async fn a_request_the_fast_path_declines_moves_the_connection_to_hyper() {
    let pod = Backend::start("web", 71, 3).await;
    let proxy = routed("h.example.com", pod.endpoint("idc", EndpointState::Active)).await;
    let mut s = TcpStream::connect(proxy.http_addr).await.unwrap();
    let mut buf = Vec::new();
    s.write_all(b"GET /fast HTTP/1.1\r\nHost: h.example.com\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut s, &mut buf, false).await;
    assert_eq!(String::from_utf8_lossy(&r.body), "web /fast");
    // A chunked upload is the general path's; the request after it stays there.
    s.write_all(
        b"POST /chunked HTTP/1.1\r\nHost: h.example.com\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n0\r\n\r\nGET /next HTTP/1.1\r\nHost: h.example.com\r\n\r\n",
    )
    .await
    .unwrap();
    let r = read_response(&mut s, &mut buf, false).await;
    assert_eq!(r.status, 200);
    assert_eq!(String::from_utf8_lossy(&r.body), "web /chunked hello");
    let r = read_response(&mut s, &mut buf, false).await;
    assert_eq!(String::from_utf8_lossy(&r.body), "web /next");
    assert_eq!(pod.hits(), 3);
}

#[tokio::test]
async fn a_head_response_ends_without_a_body() {
    let pod = Backend::start("web", 71, 4).await;
    let proxy = routed(
        "head.example.com",
        pod.endpoint("idc", EndpointState::Active),
    )
    .await;
    let mut s = TcpStream::connect(proxy.http_addr).await.unwrap();
    let mut buf = Vec::new();
    s.write_all(b"HEAD /x HTTP/1.1\r\nHost: head.example.com\r\n\r\nGET /y HTTP/1.1\r\nHost: head.example.com\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut s, &mut buf, true).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("6"), "{r:?}");
    let r = read_response(&mut s, &mut buf, false).await;
    assert_eq!(String::from_utf8_lossy(&r.body), "web /y");
}

/// A backend written by hand: answers each connection's first request with `reply`,
/// then closes it. Counts connections accepted and closed.
struct RawBackend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

impl RawBackend {
    async fn start(fourth: u8, reply: &'static [u8]) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::new(127, 1, 72, fourth), 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let (a, c) = (Arc::clone(&accepted), Arc::clone(&closed));
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                a.fetch_add(1, Ordering::SeqCst);
                let c = Arc::clone(&c);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        if fill(&mut s, &mut buf).await.is_none() {
                            return;
                        }
                    }
                    let _ = s.write_all(reply).await;
                    drop(s);
                    c.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            addr,
            accepted,
            closed,
            _task: task,
        }
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint {
            cluster: "idc".into(),
            address: self.addr.ip(),
            port: self.addr.port(),
            zone: None,
            node: None,
            state: EndpointState::Active,
            weight: 1,
        }
    }
}

#[tokio::test]
async fn an_upstream_connection_closed_while_idle_is_not_reused() {
    let pod = RawBackend::start(1, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
    let proxy = routed("i.example.com", pod.endpoint()).await;
    let mut buf = Vec::new();
    for round in 1..=3 {
        let mut s = TcpStream::connect(proxy.http_addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: i.example.com\r\n\r\n")
            .await
            .unwrap();
        let r = read_response(&mut s, &mut buf, false).await;
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, &b"ok"[..]),
            "round {round}"
        );
        let closed = Arc::clone(&pod.closed);
        eventually("the backend closed its connection", WAIT, || {
            let closed = Arc::clone(&closed);
            async move { closed.load(Ordering::SeqCst) == round }
        })
        .await;
    }
    assert_eq!(pod.accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_response_without_length_ends_with_the_connection() {
    let pod = RawBackend::start(2, b"HTTP/1.0 200 OK\r\nX-Old: 1\r\n\r\nuntil the end").await;
    let proxy = routed("c.example.com", pod.endpoint()).await;
    let mut s = TcpStream::connect(proxy.http_addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: c.example.com\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.header("x-old"), Some("1"));
    assert_eq!(String::from_utf8_lossy(&r.body), "until the end");
}

#[tokio::test]
async fn a_connection_header_naming_content_length_smuggles_nothing() {
    let pod = Backend::start("web", 71, 5).await;
    let proxy = routed("s.example.com", pod.endpoint("idc", EndpointState::Active)).await;
    let inner = "GET /admin HTTP/1.1\r\nHost: internal\r\n\r\n";
    let raw = format!(
        "POST /outer HTTP/1.1\r\nHost: s.example.com\r\nConnection: content-length\r\n\
         Content-Length: {}\r\n\r\n{inner}",
        inner.len()
    );
    let mut s = TcpStream::connect(proxy.http_addr).await.unwrap();
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        format!("web /outer {inner}"),
        "the body reached the pod as a body"
    );
    assert_eq!(pod.hits(), 1, "the pod saw a second, smuggled request");
}

#[tokio::test]
async fn a_client_stalling_mid_body_gets_a_timeout_not_a_stuck_connection() {
    let pod = Backend::start("web", 71, 6).await;
    let proxy = routed_with(
        |c| c.timeouts.upstream_response_ms = 300,
        "t.example.com",
        pod.endpoint("idc", EndpointState::Active),
    )
    .await;
    let mut s = TcpStream::connect(proxy.http_addr).await.unwrap();
    // 1,000 bytes announced, 1 sent, then nothing.
    s.write_all(b"POST / HTTP/1.1\r\nHost: t.example.com\r\nContent-Length: 1000\r\n\r\nx")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false).await;
    // The client's stall, not the upstream's: 408, and the endpoint is not blamed.
    assert_eq!(r.status, 408);
    assert_eq!(r.header("connection"), Some("close"));
}

#[tokio::test]
async fn an_upstream_refusing_an_upload_early_is_heard() {
    // The pod answers as soon as it has the head and closes without reading the body,
    // as servers do with a 413: the proxy's writes fail, but the answer must arrive.
    let pod = RawBackend::start(
        3,
        b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\n\r\ntoo big\n",
    )
    .await;
    let proxy = routed("u.example.com", pod.endpoint()).await;
    let (mut rd, mut wr) = TcpStream::connect(proxy.http_addr)
        .await
        .unwrap()
        .into_split();
    // More than every socket buffer on the way can hold.
    let len: usize = 16 << 20;
    let writer = tokio::spawn(async move {
        let head =
            format!("PUT /up HTTP/1.1\r\nHost: u.example.com\r\nContent-Length: {len}\r\n\r\n");
        wr.write_all(head.as_bytes()).await?;
        let chunk = vec![b'x'; 64 << 10];
        for _ in 0..len / chunk.len() {
            wr.write_all(&chunk).await?;
        }
        Ok::<_, std::io::Error>(())
    });
    let mut buf = Vec::new();
    let r = read_response(&mut rd, &mut buf, false).await;
    assert_eq!((r.status, r.body.as_slice()), (413, &b"too big\n"[..]));
    assert_eq!(r.header("connection"), Some("close"));
    writer.abort();
}

#[tokio::test]
async fn a_response_with_both_framings_is_read_by_transfer_encoding_on_both_paths() {
    let pod = RawBackend::start(
        3,
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
          a\r\n0123456789\r\n0\r\n\r\n",
    )
    .await;
    let proxy = routed("te.example.com", pod.endpoint()).await;
    // HTTP/1.1 takes the fast path, HTTP/1.0 the general one.
    for version in ["1.1", "1.0"] {
        let mut s = TcpStream::connect(proxy.http_addr).await.unwrap();
        let request =
            format!("GET / HTTP/{version}\r\nHost: te.example.com\r\nConnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let r = read_response(&mut s, &mut buf, false).await;
        assert_eq!(r.status, 200, "HTTP/{version}");
        assert_eq!(
            String::from_utf8_lossy(&r.body),
            "0123456789",
            "HTTP/{version}: {r:?}"
        );
    }
}
