//! A restarted proxy serves at once: its state file (`state_file:`) is written after
//! every accepted batch and restored at start; `/readyz` says 200 only with a full
//! state; a file that cannot be used is ignored and the proxy starts empty.

use crate::harness;

use std::path::Path;
use std::time::Duration;

use harness::{Backend, TOKEN, admin, client, eventually, get, proxy_with, push, routes, upstream};
use http::StatusCode;
use podgate::proxy::ProxyHandle;
use podgate_core::model::{Batch, Certificate, EndpointState, LbState, PathMatch, Pem};

async fn state(proxy: &ProxyHandle) -> LbState {
    let (status, body) = admin(proxy, "GET", "/v1/state", Some(TOKEN), "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn ready(proxy: &ProxyHandle) -> StatusCode {
    admin(proxy, "GET", "/readyz", None, "").await.0
}

async fn with_state_file(path: &Path) -> ProxyHandle {
    let path = path.to_owned();
    proxy_with(move |c| c.state_file = Some(path)).await
}

/// Waits until the file at `path` holds generation `generation`.
async fn written(path: &Path, generation: u64) {
    eventually(
        "the state file is written",
        Duration::from_secs(5),
        || async {
            std::fs::read(path)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .is_some_and(|v| v["generation"] == generation)
        },
    )
    .await;
}

fn certificate() -> Certificate {
    let made = rcgen::generate_simple_self_signed(vec!["a.example.com".to_owned()]).unwrap();
    Certificate {
        id: "default/a".into(),
        cert_pem: Pem(made.cert.pem().into()),
        key_pem: Pem(made.signing_key.serialize_pem().into()),
    }
}

#[tokio::test]
async fn a_restarted_proxy_serves_its_last_state_at_once_and_keeps_its_fencing_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let pod = Backend::start("pod-a", 30, 1).await;
    let proxy = with_state_file(&file).await;
    assert_eq!(ready(&proxy).await, StatusCode::SERVICE_UNAVAILABLE);
    let full = Batch {
        epoch: 7,
        owner: Some("podgate.io/ingress-controller".into()),
        upsert_upstreams: vec![upstream(
            "web",
            &[],
            vec![pod.endpoint("idc", EndpointState::Active)],
        )],
        routes: Some(routes(&[("a.example.com", PathMatch::prefix("/"), "web")])),
        upsert_certificates: vec![certificate()],
        complete: true,
        ..Batch::default()
    };
    push(&proxy, &full).await;
    assert_eq!(
        ready(&proxy).await,
        StatusCode::OK,
        "a full sync makes it ready"
    );
    // Another owner's items come back as theirs.
    push(
        &proxy,
        &Batch {
            epoch: 2,
            upsert_upstreams: vec![upstream("other", &[], vec![])],
            ..Batch::default()
        },
    )
    .await;
    written(&file, 2).await;
    let before = state(&proxy).await;
    proxy.shutdown().await;
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the file holds keys: owner only");

    let proxy = with_state_file(&file).await;
    // The very first request is served: no push happened.
    let answer = get(&client(), &proxy, "a.example.com", "/x").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(ready(&proxy).await, StatusCode::OK);
    let after = state(&proxy).await;
    assert_ne!(
        after.instance, before.instance,
        "a restart is a new instance"
    );
    assert_eq!(
        LbState {
            instance: String::new(),
            ..after
        },
        LbState {
            instance: String::new(),
            ..before
        }
    );
    let deposed = serde_json::to_string(&Batch {
        epoch: 6,
        ..full.clone()
    })
    .unwrap();
    let (status, body) = admin(&proxy, "POST", "/v1/batch", Some(TOKEN), &deposed).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "fencing survives a restart: {body}"
    );
}

#[tokio::test]
async fn a_partial_state_is_restored_but_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let pod = Backend::start("pod-a", 30, 2).await;
    let proxy = with_state_file(&file).await;
    // The first part of a full sync: upstreams, no routes, not complete.
    push(
        &proxy,
        &Batch {
            upsert_upstreams: vec![upstream(
                "web",
                &[],
                vec![pod.endpoint("idc", EndpointState::Active)],
            )],
            ..Batch::default()
        },
    )
    .await;
    assert_eq!(ready(&proxy).await, StatusCode::SERVICE_UNAVAILABLE);
    written(&file, 1).await;
    proxy.shutdown().await;
    let proxy = with_state_file(&file).await;
    assert_eq!(state(&proxy).await.upstreams.len(), 1);
    assert_eq!(
        ready(&proxy).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "half a full sync is not a full state"
    );
}

#[tokio::test]
async fn a_corrupt_or_invalid_state_file_is_ignored_and_then_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let invalid_shares = serde_json::json!({
        "format": 1, "generation": 4, "complete": true,
        "owners": [{"upsert_upstreams": [{
            "key": {"namespace": "default", "service": "web", "port": 80},
            "shares": [["idc", 999]], "endpoints": []}]}],
    });
    for content in [
        b"{\"format\": 1, \"generation\": 3, \"comp".to_vec(),
        b"\x00\x01garbage".to_vec(),
        br#"{"format": 99, "generation": 1, "complete": true, "owners": []}"#.to_vec(),
        serde_json::to_vec(&invalid_shares).unwrap(),
    ] {
        std::fs::write(&file, &content).unwrap();
        let proxy = with_state_file(&file).await;
        let held = state(&proxy).await;
        assert_eq!(
            (held.generation, held.upstreams.len()),
            (0, 0),
            "{}",
            String::from_utf8_lossy(&content)
        );
        assert_eq!(ready(&proxy).await, StatusCode::SERVICE_UNAVAILABLE);
        push(
            &proxy,
            &Batch {
                complete: true,
                ..Batch::default()
            },
        )
        .await;
        written(&file, 1).await;
        proxy.shutdown().await;
    }
}

/// A rollout's burst of batches costs a few writes of the whole state, not one each,
/// and the last batch still reaches the file.
#[tokio::test]
async fn a_burst_of_batches_is_coalesced_into_a_few_writes_and_the_last_one_lands() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let pod = Backend::start("pod-a", 31, 1).await;
    let proxy = with_state_file(&file).await;
    let batches: u64 = 40;
    for i in 0..batches {
        let mut endpoint = pod.endpoint("idc", EndpointState::Active);
        endpoint.weight = u32::try_from(i + 1).unwrap();
        push(
            &proxy,
            &Batch {
                epoch: 1,
                upsert_upstreams: vec![upstream("web", &[], vec![endpoint])],
                ..Batch::default()
            },
        )
        .await;
    }
    written(&file, batches).await;
    let (_, metrics) = admin(&proxy, "GET", "/metrics", Some(TOKEN), "").await;
    let writes: u64 = metrics
        .lines()
        .find(|l| l.starts_with("podgate_proxy_state_file_writes_total{result=\"ok\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no write count in {metrics}"));
    assert!(
        (1..=4).contains(&writes),
        "{writes} writes of the whole state for {batches} batches"
    );
}

/// Draining closes the listening sockets at once: a new client is refused (and goes
/// elsewhere) instead of waiting in a queue nobody accepts from, to be reset at exit.
#[tokio::test]
async fn a_draining_proxy_refuses_new_connections_while_requests_finish() {
    use tokio::io::AsyncWriteExt;
    let pod = Backend::start("pod-a", 32, 1).await;
    let proxy = harness::routed_with(
        |c| c.timeouts.shutdown_ms = 5_000,
        "a.example.com",
        pod.endpoint("idc", EndpointState::Active),
    )
    .await;
    // A request in flight: its body has not arrived yet.
    let mut busy = tokio::net::TcpStream::connect(proxy.http_addr)
        .await
        .unwrap();
    busy.write_all(b"POST /upload HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 10\r\n\r\n")
        .await
        .unwrap();
    let addr = proxy.http_addr;
    let draining = tokio::spawn(proxy.shutdown());
    eventually(
        "new connections are refused while the drain waits",
        Duration::from_secs(2),
        || async {
            matches!(
                tokio::net::TcpStream::connect(addr).await,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
            )
        },
    )
    .await;
    assert!(
        !draining.is_finished(),
        "the drain waits for the request in flight"
    );
    busy.write_all(b"0123456789").await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), draining)
        .await
        .expect("the drain ends when the request is done")
        .unwrap();
}

/// Reads one HTTP/1.1 response with a `Content-Length` body; `None` when the
/// connection closes first.
async fn one_response(conn: &mut tokio::net::TcpStream) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return Some(head);
            }
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A shutdown that begins while a keep-alive request waits for its upstream: that
/// answer went out without `Connection: close`, so the client may send its next request
/// at once — which is answered (with `Connection: close`), never met by a close.
#[tokio::test]
async fn a_shutdown_during_a_request_answers_the_clients_next_one_before_closing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pod = Backend::start("pod-a", 33, 1).await;
    let proxy = harness::routed_with(
        |c| c.timeouts.shutdown_ms = 5_000,
        "a.example.com",
        pod.endpoint("idc", EndpointState::Active),
    )
    .await;
    let addr = proxy.http_addr;
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /hold HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
        .await
        .unwrap();
    eventually(
        "the request reached the pod",
        Duration::from_secs(5),
        || async { pod.hits() == 1 },
    )
    .await;
    let draining = tokio::spawn(proxy.shutdown());
    eventually("the shutdown began", Duration::from_secs(2), || async {
        matches!(
            tokio::net::TcpStream::connect(addr).await,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
        )
    })
    .await;
    pod.release.notify_one();
    let first = one_response(&mut conn)
        .await
        .expect("the held request is answered");
    assert!(first.starts_with("http/1.1 200"), "{first}");
    assert!(!first.contains("connection: close"), "{first}");
    conn.write_all(b"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
        .await
        .unwrap();
    let second = one_response(&mut conn)
        .await
        .expect("the next request is answered, not met by a close");
    assert!(second.starts_with("http/1.1 200"), "{second}");
    assert!(second.contains("connection: close"), "{second}");
    let mut rest = [0u8; 16];
    assert!(
        matches!(conn.read(&mut rest).await, Ok(0)),
        "then the proxy closes"
    );
    tokio::time::timeout(Duration::from_secs(5), draining)
        .await
        .expect("the drain ends")
        .unwrap();
}
