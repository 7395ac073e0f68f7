//! Routing and balancing through the real proxy over loopback TCP: Ingress host and path
//! semantics, wildcard hosts, cluster shares, draining, and header rewriting.

use crate::harness;

use bytes::Bytes;
use harness::{Backend, client, get, proxy, push, routed, routes, send, upstream};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use podgate_core::model::{Batch, EndpointState, PathMatch};

#[tokio::test]
async fn requests_are_routed_by_host_and_path() {
    let (api, web, wild) = tokio::join!(
        Backend::start("api", 1, 1),
        Backend::start("web", 1, 2),
        Backend::start("wild", 1, 3),
    );
    let proxy = proxy().await;
    push(
        &proxy,
        &Batch {
            epoch: 1,
            upsert_upstreams: vec![
                upstream("api", &[], vec![api.endpoint("idc", EndpointState::Active)]),
                upstream("web", &[], vec![web.endpoint("idc", EndpointState::Active)]),
                upstream(
                    "wild",
                    &[],
                    vec![wild.endpoint("idc", EndpointState::Active)],
                ),
            ],
            routes: Some(routes(&[
                ("shop.example.com", PathMatch::prefix("/"), "web"),
                ("shop.example.com", PathMatch::prefix("/api"), "api"),
                ("shop.example.com", PathMatch::exact("/exact"), "api"),
                ("*.example.com", PathMatch::prefix("/"), "wild"),
            ])),
            ..Batch::default()
        },
    )
    .await;

    let c = client();
    let rows = [
        ("shop.example.com", "/", Some("web")),
        ("shop.example.com", "/api", Some("api")),
        ("shop.example.com", "/api/v1/x?y=1", Some("api")),
        ("shop.example.com", "/apiv1", Some("web")),
        ("SHOP.Example.com:8080", "/api", Some("api")),
        ("shop.example.com", "/exact", Some("api")),
        ("shop.example.com", "/exact/more", Some("web")),
        ("other.example.com", "/anything", Some("wild")),
        ("a.b.example.com", "/", None),
        ("example.com", "/", None),
        ("unknown.org", "/", None),
    ];
    for (host, path, want) in rows {
        let a = get(&c, &proxy, host, path).await;
        match want {
            Some(backend) => {
                assert_eq!(a.status, StatusCode::OK, "{host}{path}: {}", a.body);
                assert_eq!(a.backend(), Some(backend), "{host}{path}");
            }
            None => assert_eq!(a.status, StatusCode::NOT_FOUND, "{host}{path}"),
        }
    }
    // The query string reaches the backend untouched.
    let a = get(&c, &proxy, "shop.example.com", "/api/v1/x?y=1").await;
    assert_eq!(a.body, "api /api/v1/x");
}

#[tokio::test]
async fn no_active_endpoint_is_503_with_a_reason() {
    let pod = Backend::start("draining", 2, 1).await;
    let proxy = proxy().await;
    push(
        &proxy,
        &Batch {
            upsert_upstreams: vec![upstream(
                "web",
                &[],
                vec![pod.endpoint("idc", EndpointState::Draining)],
            )],
            routes: Some(routes(&[
                ("a.example.com", PathMatch::prefix("/"), "web"),
                ("b.example.com", PathMatch::prefix("/"), "missing"),
            ])),
            ..Batch::default()
        },
    )
    .await;
    let c = client();
    let a = get(&c, &proxy, "a.example.com", "/").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(a.body.contains("no active endpoint"), "{}", a.body);
    let b = get(&c, &proxy, "b.example.com", "/").await;
    assert_eq!(b.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(b.body.contains("not configured"), "{}", b.body);
    assert_eq!(pod.hits(), 0);
}

#[tokio::test]
async fn cluster_shares_split_traffic_and_draining_gets_none() {
    let (a1, a2, b1, drain) = tokio::join!(
        Backend::start("a1", 3, 1),
        Backend::start("a2", 3, 2),
        Backend::start("b1", 3, 3),
        Backend::start("drain", 3, 4),
    );
    let proxy = proxy().await;
    push(
        &proxy,
        &Batch {
            upsert_upstreams: vec![upstream(
                "web",
                &[("idc", 750), ("tke", 250)],
                vec![
                    a1.endpoint("idc", EndpointState::Active),
                    a2.endpoint("idc", EndpointState::Active),
                    b1.endpoint("tke", EndpointState::Active),
                    drain.endpoint("tke", EndpointState::Draining),
                ],
            )],
            routes: Some(routes(&[("w.example.com", PathMatch::prefix("/"), "web")])),
            ..Batch::default()
        },
    )
    .await;
    let c = client();
    let n = 2_000;
    for _ in 0..n {
        let a = get(&c, &proxy, "w.example.com", "/").await;
        assert_eq!(a.status, StatusCode::OK);
    }
    let idc = a1.hits() + a2.hits();
    let tke = b1.hits();
    assert_eq!(drain.hits(), 0, "a draining endpoint got a new request");
    assert_eq!(idc + tke, n);
    // 75 % ± 4 % (more than 5 standard deviations at n = 2000).
    assert!((1_420..=1_580).contains(&idc), "idc got {idc} of {n}");
    // Within a cluster the split is even: 50 % ± 6 %.
    assert!(
        (idc * 44 / 100..=idc * 56 / 100).contains(&a1.hits()),
        "a1 {} of {idc}",
        a1.hits()
    );
}

#[tokio::test]
async fn a_draining_endpoint_finishes_in_flight_requests_and_gets_no_new_ones() {
    let (old, new) = tokio::join!(Backend::start("old", 3, 11), Backend::start("new", 3, 12));
    let proxy = std::sync::Arc::new(proxy().await);
    let batch = |old_state, new_endpoints: bool| Batch {
        upsert_upstreams: vec![upstream(
            "web",
            &[],
            std::iter::once(old.endpoint("idc", old_state))
                .chain(new_endpoints.then(|| new.endpoint("idc", EndpointState::Active)))
                .collect(),
        )],
        routes: Some(routes(&[("d.example.com", PathMatch::prefix("/"), "web")])),
        ..Batch::default()
    };
    push(&proxy, &batch(EndpointState::Active, false)).await;
    // A long request is in flight on the old endpoint...
    let p = std::sync::Arc::clone(&proxy);
    let held = tokio::spawn(async move { get(&client(), &p, "d.example.com", "/hold").await });
    harness::eventually(
        "the long request reached the old endpoint",
        std::time::Duration::from_secs(10),
        || {
            let hits = old.hits();
            async move { hits == 1 }
        },
    )
    .await;
    // ...when the endpoint starts draining.
    push(&proxy, &batch(EndpointState::Draining, true)).await;
    let c = client();
    for _ in 0..50 {
        let a = get(&c, &proxy, "d.example.com", "/").await;
        assert_eq!(
            a.backend(),
            Some("new"),
            "a draining endpoint got a new request"
        );
    }
    assert_eq!(old.hits(), 1);
    old.release.notify_one();
    let a = held.await.unwrap();
    assert_eq!(
        a.status,
        StatusCode::OK,
        "the in-flight request was cut: {}",
        a.body
    );
    assert_eq!(a.body, "old /hold");
}

#[tokio::test]
async fn forwarded_headers_are_set_and_hop_by_hop_removed() {
    let pod = Backend::start("web", 4, 1).await;
    let proxy = proxy().await;
    push(
        &proxy,
        &Batch {
            upsert_upstreams: vec![upstream(
                "web",
                &[],
                vec![pod.endpoint("idc", EndpointState::Active)],
            )],
            routes: Some(routes(&[("h.example.com", PathMatch::prefix("/"), "web")])),
            ..Batch::default()
        },
    )
    .await;
    let req = Request::post(format!("http://{}/echo", proxy.http_addr))
        .header("host", "h.example.com")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "https")
        .header("connection", "x-hop")
        .header("x-hop", "secret")
        .header("keep-alive", "timeout=5")
        .body(Full::new(Bytes::from("payload")))
        .unwrap();
    let a = send(&client(), req).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, "web /echo payload");
    let seen = |h: &str| {
        a.headers
            .get(format!("x-seen-{h}"))
            .map(|v| v.to_str().unwrap().to_owned())
    };
    // The client is no trusted proxy: its own X-Forwarded-For is replaced.
    assert_eq!(seen("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(seen("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(seen("x-forwarded-host").as_deref(), Some("h.example.com"));
    assert_eq!(seen("host").as_deref(), Some("h.example.com"));
    assert_eq!(
        seen("x-hop"),
        None,
        "a header named in Connection was forwarded"
    );
    assert_eq!(seen("keep-alive"), None);
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served() {
    let pod = Backend::start("web", 5, 1).await;
    let proxy = proxy().await;
    push(
        &proxy,
        &Batch {
            upsert_upstreams: vec![upstream(
                "web",
                &[],
                vec![pod.endpoint("idc", EndpointState::Active)],
            )],
            routes: Some(routes(&[("h2.example.com", PathMatch::prefix("/"), "web")])),
            ..Batch::default()
        },
    )
    .await;
    let mut sender = harness::h2c(&proxy).await;
    for _ in 0..3 {
        let req = Request::get("http://h2.example.com/two")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.expect("h2 answer");
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert_eq!(resp.status(), StatusCode::OK);
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(&body[..], b"web /two");
    }
}

#[tokio::test]
async fn response_bodies_are_streamed_not_buffered() {
    let pod = Backend::start("web", 4, 2).await;
    let proxy = proxy().await;
    push(
        &proxy,
        &Batch {
            upsert_upstreams: vec![upstream(
                "web",
                &[],
                vec![pod.endpoint("idc", EndpointState::Active)],
            )],
            routes: Some(routes(&[("s.example.com", PathMatch::prefix("/"), "web")])),
            ..Batch::default()
        },
    )
    .await;
    let req = Request::get(format!("http://{}/stream", proxy.http_addr))
        .header("host", "s.example.com")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client().request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), body.frame())
        .await
        .expect("the first chunk arrives while the backend still holds the rest")
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), Bytes::from_static(b"first"));
    pod.release.notify_one();
    let remainder = body.collect().await.unwrap().to_bytes();
    assert_eq!(remainder, Bytes::from_static(b"second"));
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_reused() {
    let pod = Backend::start("web", 58, 1).await;
    let proxy = routed("a.example.com", pod.endpoint("idc", EndpointState::Active)).await;
    // One request after the other, each on a new client connection: the proxy's
    // upstream connection outlives them all.
    for _ in 0..20 {
        let a = get(&client(), &proxy, "a.example.com", "/").await;
        assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "web /"));
    }
    assert_eq!(pod.hits(), 20);
    assert_eq!(
        pod.connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one upstream connection for 20 sequential requests"
    );
}
