//! Limits of the real proxy: request head size and header count, the header-read
//! timeout (slowloris), and the connection cap.

use crate::harness;

use std::time::Duration;

use harness::{Backend, proxy_with, push, routed_with, routes, upstream};
use podgate_core::model::{Batch, EndpointState, PathMatch};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn exchange(stream: &mut TcpStream, request: &[u8]) -> String {
    stream.write_all(request).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("an answer within 10 s")
        .unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn oversized_heads_get_431() {
    let proxy = proxy_with(|c| {
        c.limits.max_header_bytes = 16 * 1024;
        c.limits.max_headers = 20;
    })
    .await;
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a.example.com\r\nX-Big: {}\r\n\r\n",
        "x".repeat(20 * 1024)
    );
    let mut s = TcpStream::connect(proxy.http_addr).await.unwrap();
    let answer = exchange(&mut s, big.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");

    let mut many = String::from("GET / HTTP/1.1\r\nHost: a.example.com\r\n");
    for i in 0..30 {
        many += &["X-H", &i.to_string(), ": v\r\n"].concat();
    }
    many.push_str("\r\n");
    let mut s = TcpStream::connect(proxy.http_addr).await.unwrap();
    let answer = exchange(&mut s, many.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");

    // Within the limits the same request is routed (404: no routes installed).
    let mut s = TcpStream::connect(proxy.http_addr).await.unwrap();
    let answer = exchange(&mut s, b"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer:?}");
}

#[tokio::test]
async fn a_slow_request_head_is_cut_off() {
    let proxy = proxy_with(|c| c.timeouts.header_read_ms = 200).await;
    let mut s = TcpStream::connect(proxy.http_addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a.exa").await.unwrap();
    assert!(
        closed_within(&mut s, Duration::from_secs(10)).await,
        "a connection that never finished its head stayed open"
    );
}

#[tokio::test]
async fn connections_over_the_cap_wait_for_a_free_slot() {
    let pod = Backend::start("web", 13, 1).await;
    let proxy = proxy_with(|c| c.limits.max_connections = 1).await;
    push(
        &proxy,
        &Batch {
            upsert_upstreams: vec![upstream(
                "web",
                &[],
                vec![pod.endpoint("idc", EndpointState::Active)],
            )],
            routes: Some(routes(&[("c.example.com", PathMatch::prefix("/"), "web")])),
            ..Batch::default()
        },
    )
    .await;
    let request = b"GET / HTTP/1.1\r\nHost: c.example.com\r\n\r\n";
    let mut first = TcpStream::connect(proxy.http_addr).await.unwrap();
    assert!(
        exchange(&mut first, request)
            .await
            .starts_with("HTTP/1.1 200")
    );

    let mut second = TcpStream::connect(proxy.http_addr).await.unwrap();
    second.write_all(request).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let early = tokio::time::timeout(Duration::from_millis(300), second.read(&mut buf)).await;
    assert!(early.is_err(), "a connection over the cap was served");
    assert_eq!(pod.hits(), 1);

    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(10), second.read(&mut buf))
        .await
        .expect("served once the first connection closed")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let proxy = proxy_with(|c| c.timeouts.header_read_ms = 300).await;
    let mut s = TcpStream::connect(proxy.http_addr).await.unwrap();
    let answer = exchange(&mut s, b"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer:?}");
    assert!(
        closed_within(&mut s, Duration::from_secs(10)).await,
        "an idle keep-alive connection stayed open"
    );
}

/// Reads until the peer closes; `false` if it is still open after `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_h2_prefaces_that_fill_the_cap_are_closed_and_a_normal_client_is_served() {
    const CAP: usize = 20;
    let pod = Backend::start("web", 14, 1).await;
    let proxy = routed_with(
        |c| {
            c.limits.max_connections = CAP;
            c.timeouts.header_read_ms = 500;
        },
        "d.example.com",
        pod.endpoint("idc", EndpointState::Active),
    )
    .await;
    // Each sends 16 bytes of the HTTP/2 preface and nothing more.
    let mut silent = Vec::new();
    for _ in 0..CAP {
        let mut s = TcpStream::connect(proxy.http_addr).await.unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        silent.push(s);
    }
    // A normal client behind them: served once the header-read time has closed them.
    let mut normal = TcpStream::connect(proxy.http_addr).await.unwrap();
    let request = b"GET / HTTP/1.1\r\nHost: d.example.com\r\n\r\n";
    normal.write_all(request).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_millis(1_500), normal.read(&mut buf))
        .await
        .expect("a normal client served within 1 s of the header-read timeout")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    for s in &mut silent {
        assert!(
            closed_within(s, Duration::from_secs(2)).await,
            "a silent preface stayed open"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_connection_without_streams_is_closed_even_when_it_pings() {
    let proxy = proxy_with(|c| c.timeouts.header_read_ms = 400).await;
    let stream = TcpStream::connect(proxy.http_addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Duration::from_millis(100))
            .keep_alive_while_idle(true)
            .handshake::<_, http_body_util::Empty<bytes::Bytes>>(hyper_util::rt::TokioIo::new(
                stream,
            ))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    // One request: a stream in flight is not idle, and its end restarts the clock.
    let req = http::Request::get(format!("http://{}/", proxy.http_addr))
        .header("host", "a.example.com")
        .body(http_body_util::Empty::new())
        .unwrap();
    let answer = sender.send_request(req).await.unwrap();
    assert_eq!(answer.status(), 404);
    drop(answer);
    tokio::time::timeout(Duration::from_secs(3), conn)
        .await
        .expect("an idle h2 connection closed despite its pings")
        .unwrap()
        .ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_admin_connections_cannot_starve_the_admin_api_or_the_data_plane() {
    let proxy = proxy_with(|c| {
        c.timeouts.header_read_ms = 500;
        c.admin.max_connections = 8;
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(TcpStream::connect(proxy.admin_addr).await.unwrap());
    }
    // The data plane serves meanwhile (404: no routes installed) …
    let mut s = TcpStream::connect(proxy.http_addr).await.unwrap();
    let answer = exchange(&mut s, b"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer:?}");
    // … and the admin API answers once the idle ones are closed.
    let mut admin = TcpStream::connect(proxy.admin_addr).await.unwrap();
    admin
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let early = tokio::time::timeout(Duration::from_millis(200), admin.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "an admin connection over the admin cap was served"
    );
    let n = tokio::time::timeout(Duration::from_millis(1_500), admin.read(&mut buf))
        .await
        .expect("the admin API served within 1 s of the header-read timeout")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    for s in &mut idle {
        assert!(
            closed_within(s, Duration::from_secs(2)).await,
            "an idle admin connection stayed open"
        );
    }
}
