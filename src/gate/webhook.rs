//! The mutating admission webhook that adds podgate's readiness gate to new pods in
//! opted-in namespaces, on its own TLS listener (`readiness_gate.webhook`).
//!
//! It answers every AdmissionReview it can read with `allowed: true` — with a JSON
//! patch adding `{conditionType: podgate.io/lb-registered}` to `spec.readinessGates`
//! when the pod lacks it and its namespace is opted in (the Namespace watch's view; the
//! `MutatingWebhookConfiguration`'s `namespaceSelector` says the same), without one
//! otherwise. It never denies: a pod must never fail to be created because of podgate
//! (`failurePolicy: Ignore` covers podgate being down or slow, k8s-wire 20e/20f). The
//! certificate files are re-read when they change (a renewed Secret).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionReview, Operation};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::pods::{CONDITION, Gated};
use crate::controller::config::WebhookConfig;

/// The path the `MutatingWebhookConfiguration` names.
pub const PATH: &str = "/mutate/pods";
/// An AdmissionReview of a Pod is a few KiB; this bounds a hostile one.
const MAX_BODY: usize = 4 << 20;
/// The API server's own timeout is at most 30 s (default 10 s, podgate's manifest 5 s).
const HEADER_READ: Duration = Duration::from_secs(5);
const MAX_CONNECTIONS: usize = 256;
/// How often the certificate files are checked for a change.
const RELOAD_EVERY: Duration = Duration::from_secs(10);

/// Why the webhook could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("readiness_gate.webhook: {0}")]
    Certificate(String),
    #[error("readiness_gate.webhook.listen {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Loads the certificate, binds the listener and serves until the task is aborted.
/// Returns the bound address.
pub(crate) async fn start(
    config: &WebhookConfig,
    clusters: Vec<(String, Arc<Gated>)>,
    tasks: &mut tokio::task::JoinSet<()>,
) -> Result<SocketAddr, WebhookError> {
    let files = CertFiles {
        cert: config.cert_file.clone(),
        key: config.key_file.clone(),
    };
    let (key, stamp) = files.load().map_err(WebhookError::Certificate)?;
    let current = Arc::new(ArcSwap::from_pointee(key));
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| WebhookError::Certificate(e.to_string()))?
    .with_no_client_auth()
    .with_cert_resolver(Arc::new(Current(current.clone())));
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener =
        TcpListener::bind(config.listen)
            .await
            .map_err(|source| WebhookError::Listen {
                addr: config.listen,
                source,
            })?;
    let bound = listener
        .local_addr()
        .map_err(|source| WebhookError::Listen {
            addr: config.listen,
            source,
        })?;
    tasks.spawn(files.watch(current, stamp));
    tasks.spawn(accept(listener, acceptor, Arc::new(clusters)));
    tracing::info!(%bound, path = PATH, "readiness gate webhook listening");
    Ok(bound)
}

async fn accept(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    clusters: Arc<Vec<(String, Arc<Gated>)>>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "webhook accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let (acceptor, clusters) = (acceptor.clone(), clusters.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let Ok(Ok(tls)) = tokio::time::timeout(HEADER_READ, acceptor.accept(stream)).await
            else {
                return;
            };
            let service = service_fn(move |req: Request<Incoming>| {
                let clusters = clusters.clone();
                async move { Ok::<_, Infallible>(handle(&clusters, req).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ);
            if let Err(e) = builder.serve_connection(TokioIo::new(tls), service).await {
                tracing::debug!(error = %e, "webhook connection ended");
            }
        });
    }
}

async fn handle(
    clusters: &[(String, Arc<Gated>)],
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: String| {
        crate::admin_http::respond(status, "text/plain; charset=utf-8", Full::new(body.into()))
    };
    // `/mutate/pods`: any cluster's view of the namespace; `/mutate/pods/<cluster>`
    // (for a webhook configuration in each of several clusters): that cluster's.
    let path = req.uri().path().to_owned();
    let only = match path.strip_prefix(PATH) {
        Some("") => None,
        Some(rest)
            if clusters
                .iter()
                .any(|(c, _)| rest.strip_prefix('/') == Some(c.as_str())) =>
        {
            Some(rest[1..].to_owned())
        }
        _ => {
            return text(
                StatusCode::NOT_FOUND,
                format!("not found; the webhook is {PATH} or {PATH}/<cluster>\n"),
            );
        }
    };
    if req.method() != Method::POST {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST an AdmissionReview\n".into(),
        );
    }
    let collect = Limited::new(req.into_body(), MAX_BODY).collect();
    let body = match tokio::time::timeout(HEADER_READ, collect).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => return text(StatusCode::BAD_REQUEST, format!("body: {e}\n")),
        Err(_) => {
            return text(
                StatusCode::REQUEST_TIMEOUT,
                "the body came too slowly\n".into(),
            );
        }
    };
    let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("not an AdmissionReview: {e}\n"),
            );
        }
    };
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("AdmissionReview without a request: {e}\n"),
            );
        }
    };
    let opted_in = |ns: &str| {
        clusters
            .iter()
            .filter(|(c, _)| only.as_ref().is_none_or(|o| o == c))
            .any(|(_, g)| g.opted_in(ns))
    };
    let body = review_response(&request, opted_in).to_string();
    crate::admin_http::respond(StatusCode::OK, "application/json", Full::new(body.into()))
}

/// The answer to one admission request: always allowed, with the gate added when due.
/// Written as the recorded answer is (k8s-wire 20c: the patch base64-encoded; kube's
/// `AdmissionResponse` writes it as an array of numbers).
pub(crate) fn review_response(
    request: &AdmissionRequest<DynamicObject>,
    opted_in: impl Fn(&str) -> bool,
) -> Value {
    let mut response = json!({ "uid": request.uid, "allowed": true });
    let is_pod = request.kind.group.is_empty() && request.kind.kind == "Pod";
    let namespace = request.namespace.as_deref().unwrap_or("");
    let patch = request
        .object
        .as_ref()
        .filter(|_| is_pod && request.operation == Operation::Create && opted_in(namespace))
        .and_then(|pod| gate_patch(&pod.data));
    if let Some(patch) = patch {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(patch.to_string());
        response["patchType"] = json!("JSONPatch");
        response["patch"] = json!(encoded);
    }
    json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response })
}

/// The JSON patch adding podgate's gate, or `None` when the pod has it (or is odd).
fn gate_patch(pod: &Value) -> Option<Value> {
    let spec = pod.get("spec")?.as_object()?;
    let gate = json!({ "conditionType": CONDITION });
    let op = match spec.get("readinessGates") {
        None | Some(Value::Null) => {
            json!({ "op": "add", "path": "/spec/readinessGates", "value": [gate] })
        }
        Some(Value::Array(gates)) => {
            if gates
                .iter()
                .any(|g| g.get("conditionType").and_then(Value::as_str) == Some(CONDITION))
            {
                return None;
            }
            json!({ "op": "add", "path": "/spec/readinessGates/-", "value": gate })
        }
        Some(_) => return None,
    };
    Some(json!([op]))
}

/// The certificate in use, swapped when the files change.
#[derive(Debug)]
struct Current(Arc<ArcSwap<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
}

type Stamp = (Option<SystemTime>, Option<SystemTime>);

impl CertFiles {
    fn stamp(&self) -> Stamp {
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        (modified(&self.cert), modified(&self.key))
    }

    fn load(&self) -> Result<(CertifiedKey, Stamp), String> {
        let stamp = self.stamp();
        let read =
            |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
        let cert = podgate_core::model::Certificate {
            id: "readiness-gate-webhook".to_owned(),
            cert_pem: podgate_core::model::Pem(read(&self.cert)?.into()),
            key_pem: podgate_core::model::Pem(read(&self.key)?.into()),
        };
        let entry = crate::proxy::tls::parse(&cert).map_err(|e| e.to_string())?;
        Ok((Arc::unwrap_or_clone(entry.key), stamp))
    }

    /// Re-reads the files whenever their modification times change; a bad new pair is
    /// reported and the old one kept.
    async fn watch(self, current: Arc<ArcSwap<CertifiedKey>>, mut stamp: Stamp) {
        loop {
            tokio::time::sleep(RELOAD_EVERY).await;
            if self.stamp() == stamp {
                continue;
            }
            match self.load() {
                Ok((key, new)) => {
                    current.store(Arc::new(key));
                    stamp = new;
                    tracing::info!("readiness gate webhook: certificate reloaded");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "readiness gate webhook: new certificate not usable; keeping the old one");
                    stamp = self.stamp();
                }
            }
        }
    }
}
