//! The admin API over TLS with client certificates (optional mTLS), driven by the HTTP
//! adapter: a client certificate signed by the configured CA is let in, a client
//! without one is refused at the handshake, and the bearer token is still required.

use crate::harness;

use std::sync::Arc;
use std::time::Duration;

use podgate::lb::{HttpLb, HttpLbConfig, LbAdapter, LbError};
use podgate::proxy::AdminTls;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

struct Pki {
    ca: CertificateDer<'static>,
    client_chain: Vec<CertificateDer<'static>>,
    client_key: PrivateKeyDer<'static>,
    dir: tempfile::TempDir,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        (cert, key)
    };
    let (server, server_key) = leaf(vec!["127.0.0.1".into()]);
    let (client, client_key) = leaf(vec!["controller".into()]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("server.pem"), server.pem()).unwrap();
    std::fs::write(dir.path().join("server.key"), server_key.serialize_pem()).unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    Pki {
        ca: ca.der().clone(),
        client_chain: vec![client.der().clone()],
        client_key: PrivatePkcs8KeyDer::from(client_key.serialize_der()).into(),
        dir,
    }
}

fn adapter(base_url: String, pki: &Pki, with_client_cert: bool) -> HttpLb {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let tls = if with_client_cert {
        builder
            .with_client_auth_cert(pki.client_chain.clone(), pki.client_key.clone_key())
            .unwrap()
    } else {
        builder.with_no_client_auth()
    };
    HttpLb::new(
        "lb-mtls",
        HttpLbConfig {
            base_url,
            token: harness::TOKEN.into(),
            timeout: Duration::from_secs(5),
            tls: Some(tls),
        },
    )
    .unwrap()
}

#[tokio::test]
async fn the_admin_api_requires_a_client_certificate_when_configured() {
    let pki = pki();
    let path = |f: &str| pki.dir.path().join(f);
    let proxy = harness::proxy_with(|c| {
        c.admin.tls = Some(AdminTls {
            cert_file: path("server.pem"),
            key_file: path("server.key"),
            client_ca_file: Some(path("ca.pem")),
        });
    })
    .await;
    assert!(proxy.admin_url().starts_with("https://"));

    let trusted = adapter(proxy.admin_url(), &pki, true);
    let state = trusted
        .observe()
        .await
        .expect("a client with a certificate gets in");
    assert_eq!(state.generation, 0);

    match adapter(proxy.admin_url(), &pki, false).observe().await {
        Err(LbError::Transient(m)) => assert!(!m.is_empty()),
        other => panic!("a client without a certificate got {other:?}"),
    }
}

#[tokio::test]
async fn an_unreadable_admin_certificate_names_the_field() {
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let mut config = podgate::proxy::ProxyConfig::new(local, local, "t");
    config.admin.tls = Some(AdminTls {
        cert_file: "/nonexistent/cert.pem".into(),
        key_file: "/nonexistent/key.pem".into(),
        client_ca_file: None,
    });
    let err = podgate::proxy::start(config).await.unwrap_err().to_string();
    assert!(err.contains("admin.tls.cert_file"), "{err}");
}
