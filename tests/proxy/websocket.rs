//! WebSocket through the real proxy: the Upgrade handshake is passed through and the
//! upgraded connection is spliced both ways (tokio-tungstenite on both ends).

use crate::harness;

use futures::{SinkExt, StreamExt};
use podgate_core::model::EndpointState;
use tokio_tungstenite::tungstenite::Message;

/// A WebSocket echo server on `ip`; the task serving it.
async fn echo_backend(ip: &str) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let backend = listener.local_addr().unwrap();
    let echo = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_close() {
                        break;
                    }
                    if ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (backend, echo)
}

/// A proxy routing `ws.example.com` to `backend`.
async fn ws_proxy(
    backend: std::net::SocketAddr,
    configure: impl FnOnce(&mut podgate::proxy::ProxyConfig),
) -> podgate::proxy::ProxyHandle {
    let endpoint = harness::endpoint_at(backend, "idc", EndpointState::Active);
    harness::routed_with(configure, "ws.example.com", endpoint).await
}

#[tokio::test]
async fn websocket_echo_through_the_proxy() {
    let (backend, echo) = echo_backend("127.1.12.1").await;
    let proxy = ws_proxy(backend, |_| {}).await;

    let tcp = tokio::net::TcpStream::connect(proxy.http_addr)
        .await
        .unwrap();
    let (mut ws, response) = tokio_tungstenite::client_async("ws://ws.example.com/chat", tcp)
        .await
        .expect("the upgrade goes through");
    assert_eq!(response.status(), http::StatusCode::SWITCHING_PROTOCOLS);
    for i in 0..20 {
        let text = format!("hello {i}");
        ws.send(Message::text(text.clone())).await.unwrap();
        let back = ws.next().await.unwrap().unwrap();
        assert_eq!(back, Message::text(text));
    }
    let blob = vec![7u8; 100_000];
    ws.send(Message::binary(blob.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(blob));
    ws.close(None).await.unwrap();
    echo.abort();
}

/// An open WebSocket is a request in flight: the drain at shutdown waits for it (up to
/// `timeouts.shutdown_ms`) instead of ending as soon as hyper let go of the connection.
#[tokio::test]
async fn a_draining_proxy_waits_for_open_websockets() {
    let (backend, echo) = echo_backend("127.1.12.2").await;
    let proxy = ws_proxy(backend, |c| c.timeouts.shutdown_ms = 10_000).await;
    let tcp = tokio::net::TcpStream::connect(proxy.http_addr)
        .await
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async("ws://ws.example.com/chat", tcp)
        .await
        .expect("the upgrade goes through");
    let mut draining = tokio::spawn(proxy.shutdown());
    ws.send(Message::text("still here")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("still here")
    );
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), &mut draining)
            .await
            .is_err(),
        "the drain ended with a WebSocket open"
    );
    ws.close(None).await.unwrap();
    while ws.next().await.is_some_and(|m| m.is_ok()) {}
    drop(ws);
    tokio::time::timeout(std::time::Duration::from_secs(5), draining)
        .await
        .expect("the drain ends once the WebSocket closed")
        .unwrap();
    echo.abort();
}
