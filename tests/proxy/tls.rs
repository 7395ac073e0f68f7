//! TLS termination through the real proxy: SNI certificate selection between two
//! certificates made with rcgen, live replacement through the admin API, an unknown name
//! refused at the handshake, and HTTP/2 negotiated by ALPN.

use crate::harness;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use harness::{Backend, TOKEN, admin, proxy_with, push, routes, upstream};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use podgate::proxy::ProxyHandle;
use podgate_core::model::{Batch, Certificate, EndpointState, HostPattern, PathMatch, Pem};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;

struct TestCert {
    certificate: Certificate,
    der: CertificateDer<'static>,
}

fn cert(id: &str, name: &str) -> TestCert {
    let made = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    TestCert {
        certificate: Certificate {
            id: id.to_owned(),
            cert_pem: Pem(made.cert.pem().into()),
            key_pem: Pem(made.signing_key.serialize_pem().into()),
        },
        der: made.cert.der().clone(),
    }
}

fn connector(roots: &[&TestCert], alpn: &[&[u8]]) -> TlsConnector {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.der.clone()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn handshake(
    connector: &TlsConnector,
    addr: SocketAddr,
    sni: &str,
) -> Result<Tls, std::io::Error> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    connector.connect(name, tcp).await
}

fn presented(tls: &Tls) -> CertificateDer<'static> {
    tls.get_ref().1.peer_certificates().unwrap()[0].clone()
}

async fn get_h1(tls: Tls, host: &str) -> (StatusCode, http::HeaderMap, String) {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/secure")
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

async fn tls_proxy(a: &TestCert, b: &TestCert, pod: &Backend) -> ProxyHandle {
    tls_proxy_with_default(a, b, pod, None).await
}

async fn tls_proxy_with_default(
    a: &TestCert,
    b: &TestCert,
    pod: &Backend,
    default: Option<&str>,
) -> ProxyHandle {
    let proxy = proxy_with(|c| {
        c.tls_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        c.tls_default_certificate = default.map(str::to_owned);
    })
    .await;
    let mut table = routes(&[
        ("a.example.com", PathMatch::prefix("/"), "web"),
        ("b.example.com", PathMatch::prefix("/"), "web"),
    ]);
    for (host, id) in [
        ("a.example.com", "default/a"),
        ("b.example.com", "default/b"),
    ] {
        table
            .hosts
            .get_mut(&HostPattern::parse(host).unwrap())
            .unwrap()
            .tls = Some(id.to_owned());
    }
    push(
        &proxy,
        &Batch {
            upsert_upstreams: vec![upstream(
                "web",
                &[],
                vec![pod.endpoint("idc", EndpointState::Active)],
            )],
            routes: Some(table),
            upsert_certificates: vec![a.certificate.clone(), b.certificate.clone()],
            ..Batch::default()
        },
    )
    .await;
    proxy
}

#[tokio::test]
async fn sni_selects_the_certificate_and_requests_are_forwarded() {
    let (a, b) = (
        cert("default/a", "a.example.com"),
        cert("default/b", "b.example.com"),
    );
    let pod = Backend::start("web", 10, 1).await;
    let proxy = tls_proxy(&a, &b, &pod).await;
    let https = proxy.https_addr.unwrap();
    let conn = connector(&[&a, &b], &[b"http/1.1"]);

    let tls_a = handshake(&conn, https, "a.example.com").await.unwrap();
    assert_eq!(presented(&tls_a), a.der);
    let tls_b = handshake(&conn, https, "b.example.com").await.unwrap();
    assert_eq!(presented(&tls_b), b.der);

    let (status, headers, body) = get_h1(tls_a, "a.example.com").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "web /secure");
    assert_eq!(headers["x-seen-x-forwarded-proto"], "https");

    // A name with no certificate fails the handshake cleanly.
    let unknown = connector(&[&a, &b], &[]);
    assert!(handshake(&unknown, https, "c.example.org").await.is_err());

    // The state shows names but never keys.
    let (status, state) = admin(&proxy, "GET", "/v1/state", Some(TOKEN), "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(state.contains("a.example.com"));
    assert!(
        !state.contains("PRIVATE KEY"),
        "key material leaked: {state}"
    );
}

#[tokio::test]
async fn a_replaced_certificate_serves_the_next_handshake() {
    let (a, b) = (
        cert("default/a", "a.example.com"),
        cert("default/b", "b.example.com"),
    );
    let pod = Backend::start("web", 10, 2).await;
    let proxy = tls_proxy(&a, &b, &pod).await;
    let https = proxy.https_addr.unwrap();
    let renewed = cert("default/a", "a.example.com");
    push(
        &proxy,
        &Batch {
            upsert_certificates: vec![renewed.certificate.clone()],
            ..Batch::default()
        },
    )
    .await;
    let conn = connector(&[&renewed], &[]);
    let tls = handshake(&conn, https, "a.example.com").await.unwrap();
    assert_eq!(presented(&tls), renewed.der);
    assert_ne!(renewed.der, a.der);

    // Removing it makes the name unknown again.
    push(
        &proxy,
        &Batch {
            remove_certificates: vec!["default/a".into()],
            ..Batch::default()
        },
    )
    .await;
    assert!(handshake(&conn, https, "a.example.com").await.is_err());
}

#[tokio::test]
async fn http2_is_negotiated_by_alpn() {
    let (a, b) = (
        cert("default/a", "a.example.com"),
        cert("default/b", "b.example.com"),
    );
    let pod = Backend::start("web", 10, 3).await;
    let proxy = tls_proxy(&a, &b, &pod).await;
    let conn = connector(&[&a], &[b"h2", b"http/1.1"]);
    let tls = handshake(&conn, proxy.https_addr.unwrap(), "a.example.com")
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, h2) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(h2);
    let req = Request::get("https://a.example.com/h2")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"web /h2");
}

/// Accepts any server certificate: the test looks at which one was presented.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[tokio::test]
async fn the_default_certificate_serves_unknown_names_and_clients_without_sni() {
    let (a, b) = (
        cert("default/a", "a.example.com"),
        cert("default/b", "b.example.com"),
    );
    let pod = Backend::start("web", 10, 4).await;
    let proxy = tls_proxy_with_default(&a, &b, &pod, Some("default/b")).await;
    let https = proxy.https_addr.unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    let conn = TlsConnector::from(Arc::new(config));
    let unknown = handshake(&conn, https, "c.example.org").await.unwrap();
    assert_eq!(presented(&unknown), b.der);
    let known = handshake(&conn, https, "a.example.com").await.unwrap();
    assert_eq!(
        presented(&known),
        a.der,
        "the default must not override SNI"
    );
    // An IP address as server name: rustls sends no SNI at all.
    let tcp = tokio::net::TcpStream::connect(https).await.unwrap();
    let ip = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let no_sni = conn.connect(ip, tcp).await.unwrap();
    assert_eq!(presented(&no_sni), b.der);
}
