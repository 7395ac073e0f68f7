//! End to end: a Gateway's HTTPS listener names a TLS Secret; the proxy terminates TLS
//! for the HTTPRoute's hostname with that certificate (verified by a client trusting
//! only the test CA, by SNI), and a host without it gets no certificate at all.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use podgate::demo::pods;
use podgate::demo::{Configure, Lab, LabOptions};
use podgate_sim::objects::{service, tls_secret};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;

const NS: &str = "secure";
const HOST: &str = "pay.gw.test";
const WAIT: Duration = Duration::from_secs(20);

/// A CA and a leaf for `HOST` it signed.
fn ca_and_leaf() -> (CertificateDer<'static>, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec![HOST.to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    (ca.der().clone(), leaf.pem(), leaf_key.serialize_pem())
}

async fn https_get(
    addr: std::net::SocketAddr,
    roots: &CertificateDer<'static>,
    sni: &str,
) -> Result<(u16, String), String> {
    let mut store = rustls::RootCertStore::empty();
    store.add(roots.clone()).map_err(|e| e.to_string())?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(store)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(sni.to_owned()).map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = http::Request::get("/checkout")
        .header("host", sni)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        status,
        String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_listener_terminates_tls_for_its_routes_with_the_named_certificate() {
    let lab = Lab::start(LabOptions {
        tls_listen: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        configure: Some(Configure::new(|_, sims| {
            sims[0]
                .register_crds(podgate_sim::GATEWAY_API_CRDS)
                .unwrap();
        })),
        ..LabOptions::default()
    })
    .await
    .unwrap();
    let https = lab.proxy.https_addr.expect("the proxy's HTTPS listener");
    let (ca, cert_pem, key_pem) = ca_and_leaf();
    let sim = lab.sim("idc");
    sim.apply_json(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}))
        .unwrap();
    let port = pods::free_port().await.unwrap();
    let pay = pods::start_many("idc", "pay", 232, 1, 1, port)
        .await
        .unwrap();
    lab.apply("idc", &service(NS, "pay").port("http", 80).build())
        .unwrap();
    lab.apply("idc", &pods::slice_of(NS, "pay-1", "pay", &pay, &[]))
        .unwrap();
    lab.apply("idc", &tls_secret(NS, "pay-tls", &cert_pem, &key_pem))
        .unwrap();
    for obj in [
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
               "metadata": {"name": "podgate"},
               "spec": {"controllerName": "podgate.io/gateway-controller"}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"namespace": NS, "name": "edge"},
               "spec": {"gatewayClassName": "podgate", "listeners": [
                   {"name": "https", "port": 443, "protocol": "HTTPS", "hostname": HOST,
                    "tls": {"certificateRefs": [{"name": "pay-tls"}]}}]}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
               "metadata": {"namespace": NS, "name": "pay"},
               "spec": {"parentRefs": [{"name": "edge", "sectionName": "https"}],
                        "rules": [{"backendRefs": [{"name": "pay", "port": 80}]}]}}),
    ] {
        sim.apply_json(obj).unwrap();
    }
    let answer = lab
        .eventually("the route over TLS", WAIT, || async {
            https_get(https, &ca, HOST).await.ok()
        })
        .await
        .unwrap();
    assert_eq!(answer, (200, "idc pay-1\n".to_owned()));
    // Another name has no certificate: the handshake is refused, not served with this one.
    let other = https_get(https, &ca, "other.gw.test").await;
    assert!(other.is_err(), "{other:?}");
}
