//! An LB-contract server in front of the built-in proxy's admin API, for tests of LBs
//! that behave differently: it answers for itself whatever `answer` claims (a status
//! and a JSON body, given the path and the request body) and passes everything else
//! through to the lab's proxy, after `delay` for writes (an LB slow to acknowledge).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use podgate::demo::{Configure, Lab, LabOptions};

/// A Lab whose one target is the proxy behind a front LB that answers `answer`.
pub(crate) async fn lab(
    answer: impl Fn(&str, &[u8]) -> Option<(u16, &'static str)> + Clone + Send + Sync + 'static,
) -> Lab {
    slow_lab(Duration::ZERO, answer, LabOptions::default()).await
}

/// A Lab (`options`, with its own `configure` kept) whose proxy acknowledges every
/// write only after `delay`, behind a front LB that answers `answer`.
pub(crate) async fn slow_lab(
    delay: Duration,
    answer: impl Fn(&str, &[u8]) -> Option<(u16, &'static str)> + Clone + Send + Sync + 'static,
    options: LabOptions,
) -> Lab {
    let behind = Arc::new(OnceLock::new());
    let front = start(behind.clone(), answer, delay).await;
    let inner = options.configure.clone();
    let configure = Configure::new(move |config, sims| {
        let target = &mut config.targets[0];
        behind.set(target.url.clone().unwrap()).unwrap();
        target.url = Some(front.clone());
        if let Some(inner) = &inner {
            (inner.0)(config, sims);
        }
    });
    Lab::start(LabOptions {
        configure: Some(configure),
        ..options
    })
    .await
    .unwrap()
}

async fn start(
    behind: Arc<OnceLock<String>>,
    answer: impl Fn(&str, &[u8]) -> Option<(u16, &'static str)> + Clone + Send + Sync + 'static,
    delay: Duration,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            // Made here, once the lab has set up TLS for reqwest.
            let (client, behind, answer) = (reqwest::Client::new(), behind.clone(), answer.clone());
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (client, behind, answer) =
                            (client.clone(), behind.clone(), answer.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await?.to_bytes();
                            if let Some((status, text)) = answer(parts.uri.path(), &body) {
                                return Ok::<_, hyper::Error>(
                                    Response::builder()
                                        .status(status)
                                        .header("content-type", "application/json")
                                        .body(Full::new(Bytes::from_static(text.as_bytes())))
                                        .unwrap(),
                                );
                            }
                            if parts.method != hyper::Method::GET && !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            let target = format!("{}{}", behind.get().unwrap(), parts.uri);
                            let mut forward = client.request(parts.method, target).body(body);
                            if let Some(auth) = parts.headers.get("authorization") {
                                forward = forward.header("authorization", auth);
                            }
                            let answer = forward.send().await.unwrap();
                            let status = answer.status();
                            let bytes = answer.bytes().await.unwrap();
                            Ok(Response::builder()
                                .status(status)
                                .header("content-type", "application/json")
                                .body(Full::new(bytes))
                                .unwrap())
                        }
                    });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    url
}
