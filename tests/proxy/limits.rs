//! Limits of the real proxy: request head size and header count, the header-read
//! timeout (slowloris), and the connection cap.

use crate::harness;

use std::time::Duration;

use harness::{Backend, proxy_with, push, routes, upstream};
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
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
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
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "an idle keep-alive connection stayed open");
}
