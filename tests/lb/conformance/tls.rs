//! TLS termination: two hosts with two certificates from a test CA, chosen by SNI and
//! verified by a client that trusts only that CA; the routed pod answers over TLS; a
//! rotated certificate is served without a reload; a certificate the LB refuses is
//! refused alone (the rest of a batch lands once it is left out, as the sync layer's
//! split does); a removed one is no longer served; `observe` reports what is held.

use super::under_test::{AfterRestart, Kind, Lb};
use crate::harness::{Pod, TestCa, TestCert, batch_of, https_get, table, vhost};

use podgate::lb::LbError;
use podgate_core::model::{Batch, HostPattern, PathMatch, Pem, RouteTable};

/// The route table: `a.example` → pod `a-app` with certificate `default/a`, `b.example`
/// → `b-app` with `default/b` (`b` set to `None`: plain only).
fn tls_routes(b_tls: Option<&str>) -> RouteTable {
    let mut routes = table(
        vec![
            (
                "a.example",
                vhost(&[(PathMatch::prefix("/"), "a-app")], None),
            ),
            (
                "b.example",
                vhost(&[(PathMatch::prefix("/"), "b-app")], None),
            ),
        ],
        None,
    );
    for (host, id) in [("a.example", Some("default/a")), ("b.example", b_tls)] {
        if let Some(v) = routes.hosts.get_mut(&HostPattern::parse(host).unwrap()) {
            v.tls = id.map(str::to_owned);
        }
    }
    routes
}

/// Each SNI name gets its own certificate and reaches its own pod.
async fn serves(lb: &Lb, ca: &TestCa, cases: &[(&str, &TestCert, &str)]) {
    let tls = lb.tls_addr();
    for (sni, cert, pod) in cases {
        match https_get(tls, ca, sni, "/").await {
            Ok((presented, 200, body)) => {
                assert!(
                    presented == cert.der,
                    "{sni}: another certificate was presented"
                );
                assert_eq!(body, *pod, "{sni}: routed to the wrong pod");
            }
            other => panic!("{sni}: {other:?}\nLB log:\n{}", lb.log()),
        }
    }
}

pub(crate) async fn terminates_tls_by_sni_and_rotates_without_reload(kind: Kind) {
    let lb = Lb::start(kind).await;
    let ip = |i: u8| format!("127.1.{}.{i}", kind.subnet(20));
    let pods = [
        Pod::start("a-app", &ip(1)).await,
        Pod::start("b-app", &ip(2)).await,
    ];
    let ca = TestCa::new();
    let (a1, b1) = (
        ca.leaf("default/a", "a.example"),
        ca.leaf("default/b", "b.example"),
    );
    let routes = tls_routes(Some("default/b"));
    let mut batch = batch_of(&pods, &routes);
    batch.upsert_certificates = vec![a1.certificate.clone(), b1.certificate.clone()];
    lb.apply(&batch).await;
    let worker = lb.worker().await;
    serves(
        &lb,
        &ca,
        &[("a.example", &a1, "a-app"), ("b.example", &b1, "b-app")],
    )
    .await;
    assert!(
        https_get(lb.tls_addr(), &ca, "c.example", "/")
            .await
            .is_err(),
        "a name no certificate is for is refused at the handshake"
    );

    let state = lb.observe().await;
    let ids: Vec<&str> = state.certificates.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        ["default/a", "default/b"],
        "observe reports the certificates"
    );
    assert!(
        state.certificates[0]
            .names
            .contains(&"a.example".to_owned())
    );
    assert_eq!(
        state.routes, routes,
        "observe reads each host's certificate back"
    );

    // Rotation: the same id, a new certificate.
    let a2 = ca.leaf("default/a", "a.example");
    lb.apply(&Batch {
        epoch: 1,
        upsert_certificates: vec![a2.certificate.clone()],
        ..Batch::default()
    })
    .await;
    serves(
        &lb,
        &ca,
        &[("a.example", &a2, "a-app"), ("b.example", &b1, "b-app")],
    )
    .await;
    assert_eq!(
        lb.worker().await,
        worker,
        "a rotated certificate needs no reload"
    );

    refuses_a_bad_certificate_alone(&lb, &ca, &a2, &b1).await;

    // Removal: b.example is no longer served over TLS; a.example is.
    let plain_b = tls_routes(None);
    lb.apply(&Batch {
        epoch: 1,
        routes: Some(plain_b.clone()),
        remove_certificates: vec!["default/b".into()],
        ..Batch::default()
    })
    .await;
    assert!(
        https_get(lb.tls_addr(), &ca, "b.example", "/")
            .await
            .is_err(),
        "a removed certificate is not served"
    );
    serves(&lb, &ca, &[("a.example", &a2, "a-app")]).await;
    let state = lb.observe().await;
    let ids: Vec<&str> = state.certificates.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["default/a"]);
    assert_eq!(state.routes, plain_b);
    assert_eq!(lb.worker().await, worker, "certificates never reload");
}

/// A certificate the LB cannot use is refused with its id and nothing else changes;
/// the rest of the batch lands without it.
async fn refuses_a_bad_certificate_alone(lb: &Lb, ca: &TestCa, a: &TestCert, b: &TestCert) {
    let mut bad = ca.leaf("default/bad", "a.example").certificate;
    bad.cert_pem =
        Pem("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n".into());
    let b2 = ca.leaf("default/b", "b.example");
    let refused = Batch {
        epoch: 1,
        upsert_certificates: vec![b2.certificate.clone(), bad],
        ..Batch::default()
    };
    match lb.adapter().apply(&refused).await {
        Err(LbError::Rejected(why)) => assert!(why.contains("default/bad"), "{why}"),
        other => panic!("a bad certificate must be rejected, got {other:?}"),
    }
    serves(
        lb,
        ca,
        &[("a.example", a, "a-app"), ("b.example", b, "b-app")],
    )
    .await;
    lb.apply(&Batch {
        epoch: 1,
        upsert_certificates: vec![b2.certificate.clone()],
        ..Batch::default()
    })
    .await;
    serves(
        lb,
        ca,
        &[("a.example", a, "a-app"), ("b.example", &b2, "b-app")],
    )
    .await;
}

/// A restarted LB serves the certificates again once podgate resynced (HAProxy: from the
/// files podgate wrote, before any push), and a full re-sync of an LB in sync changes
/// nothing.
pub(crate) async fn certificates_survive_a_restart(kind: Kind) {
    let mut lb = Lb::start(kind).await;
    let ip = |i: u8| format!("127.1.{}.{i}", kind.subnet(21));
    let pods = [
        Pod::start("a-app", &ip(1)).await,
        Pod::start("b-app", &ip(2)).await,
    ];
    let ca = TestCa::new();
    let (a, b) = (
        ca.leaf("default/a", "a.example"),
        ca.leaf("default/b", "b.example"),
    );
    let mut batch = batch_of(&pods, &tls_routes(Some("default/b")));
    batch.upsert_certificates = vec![a.certificate.clone(), b.certificate.clone()];
    lb.apply(&batch).await;
    lb.kill().await;
    lb.launch().await;
    if lb.after_restart() == AfterRestart::Everything {
        serves(
            &lb,
            &ca,
            &[("a.example", &a, "a-app"), ("b.example", &b, "b-app")],
        )
        .await;
    }
    // A new adapter (a restarted controller) pushes everything again.
    let fresh = lb.fresh_adapter();
    let full = Batch {
        complete: true,
        ..batch.clone()
    };
    fresh.apply(&full).await.expect("full resync");
    serves(
        &lb,
        &ca,
        &[("a.example", &a, "a-app"), ("b.example", &b, "b-app")],
    )
    .await;
    let before = lb.fingerprint().await.0;
    lb.fresh_adapter().apply(&full).await.expect("full resync");
    assert_eq!(
        lb.fingerprint().await.0,
        before,
        "a full re-sync of an LB in sync changes nothing"
    );
}
