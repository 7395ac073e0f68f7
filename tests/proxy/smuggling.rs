//! Requests built to make the proxy and the upstream disagree (issue 13, fault 3): an
//! `h2c` upgrade, two `Host`s, a client describing itself in forwarding headers, and a
//! path whose dot-segments would route it by another rule. Raw TCP, real backends.

use crate::harness;

use std::time::Duration;

use harness::{Backend, proxy_with, push, routes, upstream};
use podgate::proxy::ProxyHandle;
use podgate_core::model::{Batch, EndpointState, PathMatch};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOST: &str = "s.example.com";

/// An answer read to the connection's end: status, lowercased head, body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn seen(&self, header: &str) -> Option<&str> {
        let prefix = format!("x-seen-{header}: ");
        self.head
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map(str::trim)
    }
}

async fn exchange(proxy: &ProxyHandle, request: &str) -> Answer {
    let mut s = TcpStream::connect(proxy.http_addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Answer {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

/// A proxy routing `/foo` of [`HOST`] to `public` and `/api` to `api`.
async fn two_rules(
    tweak: impl FnOnce(&mut podgate::proxy::ProxyConfig),
) -> (ProxyHandle, Backend, Backend) {
    let public = Backend::start("public", 81, 1).await;
    let api = Backend::start("api", 81, 2).await;
    let proxy = proxy_with(tweak).await;
    push(
        &proxy,
        &Batch {
            upsert_upstreams: vec![
                upstream(
                    "public",
                    &[],
                    vec![public.endpoint("idc", EndpointState::Active)],
                ),
                upstream("api", &[], vec![api.endpoint("idc", EndpointState::Active)]),
            ],
            routes: Some(routes(&[
                (HOST, PathMatch::prefix("/foo"), "public"),
                (HOST, PathMatch::prefix("/api"), "api"),
            ])),
            ..Batch::default()
        },
    )
    .await;
    (proxy, public, api)
}

fn get(target: &str, extra: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: {HOST}\r\n{extra}Connection: close\r\n\r\n")
}

#[tokio::test]
async fn dot_segments_and_repeated_slashes_are_resolved_before_routing_and_forwarding() {
    let (proxy, _public, api) = two_rules(|_| {}).await;
    for target in ["/foo/../api/x", "/foo/%2E%2E/api/x", "//api//x", "/api/./x"] {
        let answer = exchange(&proxy, &get(target, "")).await;
        assert_eq!(answer.status, 200, "{target}: {}", answer.head);
        assert_eq!(answer.body, "api /api/x", "{target}");
    }
    // The query is the query: its slashes and dots stay.
    let answer = exchange(&proxy, &get("/foo/../api/x?next=/a/../b", "")).await;
    assert_eq!(answer.body, "api /api/x");
    assert_eq!(api.hits(), 5);
}

#[tokio::test]
async fn without_normalisation_a_path_is_routed_as_sent() {
    let (proxy, _public, _api) = two_rules(|c| c.normalize_paths = false).await;
    let answer = exchange(&proxy, &get("/foo/../api/x", "")).await;
    assert_eq!(answer.body, "public /foo/../api/x");
}

#[tokio::test]
async fn two_host_headers_are_refused() {
    let (proxy, public, api) = two_rules(|_| {}).await;
    let request = format!(
        "GET /api HTTP/1.1\r\nHost: {HOST}\r\nHost: other.example.com\r\nConnection: close\r\n\r\n"
    );
    let answer = exchange(&proxy, &request).await;
    assert_eq!(answer.status, 400, "{}", answer.head);
    assert!(answer.body.contains("Host"), "{}", answer.body);
    assert_eq!(public.hits() + api.hits(), 0);
}

#[tokio::test]
async fn an_h2c_upgrade_is_never_forwarded() {
    let (proxy, _public, _api) = two_rules(|_| {}).await;
    let request = format!(
        "GET /api HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade, HTTP2-Settings, close\r\n\
         Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
    );
    let answer = exchange(&proxy, &request).await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert_eq!(answer.seen("upgrade"), None, "{}", answer.head);
    assert_eq!(answer.seen("http2-settings"), None, "{}", answer.head);
    assert_eq!(answer.body, "api /api");
}

/// The same request on the fast path (HTTP/1.1) and on the general one (HTTP/1.0).
fn both_paths(extra: &str) -> [String; 2] {
    let one = get("/api", extra);
    let zero = format!("GET /api HTTP/1.0\r\nHost: {HOST}\r\n{extra}\r\n");
    [one, zero]
}

const CLAIMS: &str = "X-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\n\
                      Forwarded: for=6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: 1\r\n";

#[tokio::test]
async fn a_client_cannot_describe_itself_in_forwarding_headers() {
    let (proxy, _public, _api) = two_rules(|_| {}).await;
    for request in both_paths(CLAIMS) {
        let answer = exchange(&proxy, &request).await;
        assert_eq!(answer.status, 200, "{}", answer.head);
        assert_eq!(
            answer.seen("x-forwarded-for"),
            Some("127.0.0.1"),
            "{}",
            answer.head
        );
        assert_eq!(
            answer.seen("x-real-ip"),
            Some("127.0.0.1"),
            "{}",
            answer.head
        );
        assert_eq!(
            answer.seen("x-forwarded-proto"),
            Some("http"),
            "{}",
            answer.head
        );
        assert_eq!(answer.seen("x-forwarded-port"), None, "{}", answer.head);
        assert_eq!(
            answer.seen("forwarded"),
            Some(r#"for=127.0.0.1;host="s.example.com";proto=http"#),
            "{}",
            answer.head
        );
    }
}

#[tokio::test]
async fn a_trusted_proxy_describes_its_client() {
    let (proxy, _public, _api) =
        two_rules(|c| c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()]).await;
    for request in both_paths(CLAIMS) {
        let answer = exchange(&proxy, &request).await;
        assert_eq!(
            answer.seen("x-forwarded-for"),
            Some("6.6.6.6, 127.0.0.1"),
            "{}",
            answer.head
        );
        assert_eq!(answer.seen("x-real-ip"), Some("6.6.6.6"), "{}", answer.head);
        assert_eq!(
            answer.seen("x-forwarded-proto"),
            Some("https"),
            "{}",
            answer.head
        );
        assert_eq!(
            answer.seen("x-forwarded-port"),
            Some("1"),
            "{}",
            answer.head
        );
        assert_eq!(
            answer.seen("forwarded"),
            Some(r#"for=6.6.6.6, for=127.0.0.1;host="s.example.com";proto=http"#),
            "{}",
            answer.head
        );
    }
}
