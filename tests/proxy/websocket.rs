//! WebSocket through the real proxy: the Upgrade handshake is passed through and the
//! upgraded connection is spliced both ways (tokio-tungstenite on both ends).

use crate::harness;

use futures::{SinkExt, StreamExt};
use harness::{proxy, push, routes, upstream};
use podgate_core::model::{Batch, Endpoint, EndpointState, PathMatch};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn websocket_echo_through_the_proxy() {
    let listener = tokio::net::TcpListener::bind("127.1.12.1:0").await.unwrap();
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
    let proxy = proxy().await;
    push(
        &proxy,
        &Batch {
            upsert_upstreams: vec![upstream(
                "ws",
                &[],
                vec![Endpoint {
                    cluster: "idc".into(),
                    address: backend.ip(),
                    port: backend.port(),
                    zone: None,
                    node: None,
                    state: EndpointState::Active,
                    weight: 1,
                }],
            )],
            routes: Some(routes(&[(
                "ws.example.com",
                PathMatch::prefix("/chat"),
                "ws",
            )])),
            ..Batch::default()
        },
    )
    .await;

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
