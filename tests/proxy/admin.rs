//! The admin API (the LB contract) of the real proxy: auth, all-or-nothing batches,
//! fencing epochs, health, and the HTTP adapter the controller drives it with.

use crate::harness;

use std::time::Duration;

use harness::{Backend, TOKEN, admin, client, get, proxy, push, routes, upstream};
use http::StatusCode;
use podgate::lb::{HttpLb, HttpLbConfig, LbAdapter, LbError};
use podgate::proxy::ProxyHandle;
use podgate_core::model::{Batch, EndpointState, LbState, PathMatch};

async fn state(proxy: &ProxyHandle) -> LbState {
    let (status, body) = admin(proxy, "GET", "/v1/state", Some(TOKEN), "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn configured(pod: &Backend) -> ProxyHandle {
    let proxy = proxy().await;
    push(
        &proxy,
        &Batch {
            epoch: 5,
            upsert_upstreams: vec![upstream(
                "web",
                &[],
                vec![pod.endpoint("idc", EndpointState::Active)],
            )],
            routes: Some(routes(&[("a.example.com", PathMatch::prefix("/"), "web")])),
            ..Batch::default()
        },
    )
    .await;
    proxy
}

#[tokio::test]
async fn requests_without_the_token_are_refused() {
    let proxy = proxy().await;
    let batch = r#"{"epoch": 1}"#;
    for token in [None, Some("wrong"), Some(""), Some("test-token-but-longer")] {
        for (method, path, body) in [
            ("POST", "/v1/batch", batch),
            ("GET", "/v1/state", ""),
            ("GET", "/v1/summary", ""),
            ("GET", "/v1/upstreams/default/web/80", ""),
            ("GET", "/metrics", ""),
        ] {
            let (status, text) = admin(&proxy, method, path, token, body).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} {token:?}: {text}"
            );
        }
    }
    assert_eq!(
        state(&proxy).await.generation,
        0,
        "a refused batch changed state"
    );
    // Health needs no token; readiness waits for a full state.
    assert_eq!(
        admin(&proxy, "GET", "/healthz", None, "").await.0,
        StatusCode::OK
    );
    assert_eq!(
        admin(&proxy, "GET", "/readyz", None, "").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let (status, _) = admin(&proxy, "POST", "/v1/batch", Some(TOKEN), batch).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        admin(&proxy, "GET", "/readyz", None, "").await.0,
        StatusCode::SERVICE_UNAVAILABLE,
        "a batch that does not complete a full sync"
    );
    let complete = r#"{"epoch": 1, "complete": true}"#;
    let (status, answer) = admin(&proxy, "POST", "/v1/batch", Some(TOKEN), complete).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        admin(&proxy, "GET", "/readyz", None, "").await.0,
        StatusCode::OK
    );
    // The summary is what the batch answered, and what the whole state says.
    let (status, summary) = admin(&proxy, "GET", "/v1/summary", Some(TOKEN), "").await;
    assert_eq!(status, StatusCode::OK);
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(
        summary,
        serde_json::from_str::<serde_json::Value>(&answer).unwrap()
    );
    let whole = state(&proxy).await;
    assert_eq!(
        (summary["instance"].as_str(), summary["generation"].as_u64()),
        (Some(whole.instance.as_str()), Some(whole.generation))
    );
    assert_eq!(
        admin(&proxy, "GET", "/nowhere", None, "").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        admin(&proxy, "DELETE", "/v1/state", Some(TOKEN), "")
            .await
            .0,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn one_upstream_can_be_read_alone_and_metrics_count_the_live_state() {
    let pod = Backend::start("web", 11, 2).await;
    let proxy = configured(&pod).await;
    let (status, body) = admin(
        &proxy,
        "GET",
        "/v1/upstreams/default/web/80",
        Some(TOKEN),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut read: serde_json::Value = serde_json::from_str(&body).unwrap();
    let live = read.as_object_mut().unwrap().remove("live").unwrap();
    assert_eq!(live[0]["port"], pod.addr.port(), "{live}");
    let read: podgate_core::model::Upstream = serde_json::from_value(read).unwrap();
    let whole = state(&proxy).await;
    assert_eq!(read, whole.upstreams[0]);
    assert!(!read.endpoints.is_empty());
    // Keys only: the same state, every upstream without its endpoints.
    let (status, body) = admin(&proxy, "GET", "/v1/state?endpoints=false", Some(TOKEN), "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let keys: podgate_core::model::LbState = serde_json::from_str(&body).unwrap();
    assert_eq!(keys.upstreams.len(), whole.upstreams.len());
    assert_eq!(keys.upstreams[0].key, whole.upstreams[0].key);
    assert!(keys.upstreams.iter().all(|u| u.endpoints.is_empty()));
    assert_eq!(
        (keys.instance, keys.generation),
        (whole.instance, whole.generation)
    );
    for missing in [
        "/v1/upstreams/default/web/81",
        "/v1/upstreams/default/other/80",
        "/v1/upstreams/default/web/http",
    ] {
        let (status, body) = admin(&proxy, "GET", missing, Some(TOKEN), "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}: {body}");
        assert!(body.contains("no upstream"), "{missing}: {body}");
    }
    for not_a_route in [
        "/v1/upstreams/default/web",
        "/v1/upstreams/default/web/80/x",
        "/v1/upstreams//web/80",
    ] {
        let (status, body) = admin(&proxy, "GET", not_a_route, Some(TOKEN), "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{not_a_route}: {body}");
        assert!(body.contains("no such admin path"), "{not_a_route}: {body}");
    }
    let (_, metrics) = admin(&proxy, "GET", "/metrics", Some(TOKEN), "").await;
    for line in [
        "podgate_proxy_upstreams 1",
        "podgate_proxy_endpoints 1",
        "podgate_proxy_hosts 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    // Removing the upstream takes its endpoints out of the count.
    let (status, _) = admin(
        &proxy,
        "POST",
        "/v1/batch",
        Some(TOKEN),
        r#"{"epoch": 5, "remove_upstreams": [{"namespace": "default", "service": "web", "port": 80}]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, metrics) = admin(&proxy, "GET", "/metrics", Some(TOKEN), "").await;
    assert!(
        metrics.lines().any(|l| l == "podgate_proxy_endpoints 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn malformed_batches_are_refused_and_change_nothing() {
    let pod = Backend::start("web", 11, 1).await;
    let proxy = configured(&pod).await;
    let before = state(&proxy).await;
    let ep = format!(
        r#"{{"cluster":"idc","address":"{}","port":{},"state":"active","weight":1}}"#,
        pod.addr.ip(),
        pod.addr.port()
    );
    let up = |name: &str, shares: &str, endpoints: &str| {
        format!(
            r#"{{"key":{{"namespace":"default","service":"{name}","port":80}},"shares":{shares},"endpoints":[{endpoints}]}}"#
        )
    };
    let rows: Vec<(&str, String, &str)> = vec![
        ("not JSON", "{{{".into(), "malformed"),
        ("wrong type", r#"{"upsert_upstreams": 5}"#.into(), "malformed"),
        ("unknown field", r#"{"epoch": 6, "bogus": 1}"#.into(), "bogus"),
        (
            "bad host",
            r#"{"epoch": 6, "routes": {"hosts": {"a..b": {"routes": []}}}}"#.into(),
            "a..b",
        ),
        (
            "bad certificate",
            r#"{"epoch": 6, "remove_upstreams": [], "upsert_certificates": [{"id": "ns/c", "cert_pem": "junk", "key_pem": "junk"}]}"#.into(),
            "ns/c",
        ),
        (
            "duplicate upstream",
            format!(
                r#"{{"epoch": 6, "upsert_upstreams": [{}, {}]}}"#,
                up("x", "[]", &ep),
                up("x", "[]", &ep)
            ),
            "twice",
        ),
        (
            "shares not summing to 1000",
            format!(
                r#"{{"epoch": 6, "upsert_upstreams": [{}]}}"#,
                up("x", r#"[["idc", 600]]"#, &ep)
            ),
            "1000",
        ),
        (
            // A valid upstream first: nothing of the batch may be applied.
            "one bad item after a good one",
            format!(
                r#"{{"epoch": 6, "upsert_upstreams": [{}, {}], "remove_upstreams": [{{"namespace":"default","service":"web","port":80}}]}}"#,
                up("fine", "[]", &ep),
                up("zero", "[]", &ep.replace(&format!("\"port\":{}", pod.addr.port()), "\"port\":0"))
            ),
            "port 0",
        ),
    ];
    for (what, body, reason) in rows {
        let (status, text) = admin(&proxy, "POST", "/v1/batch", Some(TOKEN), &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {text}");
        assert!(
            text.contains(reason),
            "{what}: the reason should mention {reason:?}: {text}"
        );
        assert_eq!(state(&proxy).await, before, "{what} changed the state");
    }
    // Traffic still flows as before.
    let a = get(&client(), &proxy, "a.example.com", "/").await;
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn an_oversized_batch_is_refused_with_413() {
    let proxy = harness::proxy_with(|c| c.limits.max_admin_body_bytes = 1024).await;
    let body = format!(
        r#"{{"epoch": 1, "remove_certificates": ["{}"]}}"#,
        "x".repeat(2048)
    );
    let (status, text) = admin(&proxy, "POST", "/v1/batch", Some(TOKEN), &body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    assert_eq!(state(&proxy).await.generation, 0);
}

#[tokio::test]
async fn a_stale_epoch_is_refused_with_409() {
    let pod = Backend::start("web", 11, 2).await;
    let proxy = configured(&pod).await;
    let before = state(&proxy).await;
    assert_eq!((before.epoch, before.generation), (5, 1));
    let stale =
        r#"{"epoch": 4, "remove_upstreams": [{"namespace":"default","service":"web","port":80}]}"#;
    let (status, text) = admin(&proxy, "POST", "/v1/batch", Some(TOKEN), stale).await;
    assert_eq!(status, StatusCode::CONFLICT, "{text}");
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["epoch"], 5);
    assert_eq!(state(&proxy).await, before);
    // The same epoch and a newer one are accepted; generation counts accepted batches.
    for epoch in [5, 7] {
        let (status, text) = admin(
            &proxy,
            "POST",
            "/v1/batch",
            Some(TOKEN),
            &format!(r#"{{"epoch": {epoch}}}"#),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{text}");
    }
    let after = state(&proxy).await;
    assert_eq!((after.epoch, after.generation), (7, 3));
    assert_eq!(after.instance, before.instance);
}

#[tokio::test]
async fn the_http_adapter_maps_answers_to_lb_errors() {
    let pod = Backend::start("web", 11, 3).await;
    let proxy = configured(&pod).await;
    let adapter = |token: &str, base: String| {
        HttpLb::new(
            "lb1",
            HttpLbConfig {
                base_url: base,
                token: token.to_owned(),
                timeout: Duration::from_secs(5),
                tls: None,
            },
        )
        .unwrap()
    };
    let lb = adapter(TOKEN, proxy.admin_url());
    let observed = lb.observe().await.unwrap();
    assert_eq!(observed.generation, 1);
    assert_eq!(observed.upstreams.len(), 1);

    let summary = lb
        .apply(&Batch {
            epoch: 6,
            remove_upstreams: vec![harness::key("web")],
            ..Batch::default()
        })
        .await
        .unwrap();
    assert_eq!((summary.generation, summary.epoch), (2, 6));
    assert_eq!(summary.instance, observed.instance);
    assert!(lb.observe().await.unwrap().upstreams.is_empty());

    match lb
        .apply(&Batch {
            epoch: 3,
            ..Batch::default()
        })
        .await
    {
        Err(LbError::Fenced(6)) => {}
        other => panic!("expected Fenced(6), got {other:?}"),
    }
    let bad = Batch {
        epoch: 6,
        upsert_upstreams: vec![upstream("x", &[("idc", 1)], vec![])],
        ..Batch::default()
    };
    match lb.apply(&bad).await {
        Err(e @ LbError::Rejected(_)) => assert!(!e.is_retryable()),
        other => panic!("expected Rejected, got {other:?}"),
    }
    match adapter("wrong", proxy.admin_url()).observe().await {
        // A wrong token is no batch's fault: retried, never quarantined.
        Err(e @ LbError::Transient(_)) => {
            assert!(e.to_string().contains("401"), "{e}");
            assert!(e.is_retryable());
        }
        other => panic!("expected Transient, got {other:?}"),
    }
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    match adapter(TOKEN, dead_url).observe().await {
        Err(e @ LbError::Transient(_)) => assert!(e.is_retryable()),
        other => panic!("expected Transient, got {other:?}"),
    }
}

/// A batch with a field the contract does not know, at any depth, is refused naming the
/// field: a typo must not be silently dropped (a misspelt `default_backend` would serve
/// 404s while the pusher believes it configured a fallback).
#[tokio::test]
#[allow(
    clippy::too_many_lines,
    reason = "one table of cases, one per nested type"
)]
async fn an_unknown_field_at_any_depth_is_refused_naming_it() {
    let pod = Backend::start("web", 11, 4).await;
    let proxy = configured(&pod).await;
    let before = state(&proxy).await;
    let key = r#"{"namespace":"default","service":"web","port":80}"#;
    let ep = format!(
        r#"{{"cluster":"idc","address":"{}","port":{},"state":"active","weight":1}}"#,
        pod.addr.ip(),
        pod.addr.port()
    );
    let with = |json: &str, field: &str| {
        let end = json.rfind('}').unwrap();
        format!(r#"{}, "{field}": 1}}"#, &json[..end])
    };
    let upstream =
        |key: &str, ep: &str| format!(r#"{{"key":{key},"shares":[],"endpoints":[{ep}]}}"#);
    let path = r#"{"kind":"Prefix","path":"/api"}"#;
    let route = |path: &str| format!(r#"{{"path":{path},"upstream":{key}}}"#);
    let vhost = |route: &str| format!(r#"{{"routes":[{route}]}}"#);
    let table = |vhost: &str| format!(r#"{{"hosts":{{"b.example.com":{vhost}}}}}"#);
    let rows: Vec<(&str, String)> = vec![
        (
            "upstream_extra",
            format!(
                r#"{{"epoch":6,"upsert_upstreams":[{}]}}"#,
                with(&upstream(key, &ep), "upstream_extra")
            ),
        ),
        (
            "key_extra",
            format!(
                r#"{{"epoch":6,"upsert_upstreams":[{}]}}"#,
                upstream(&with(key, "key_extra"), &ep)
            ),
        ),
        (
            "endpoint_extra",
            format!(
                r#"{{"epoch":6,"upsert_upstreams":[{}]}}"#,
                upstream(key, &with(&ep, "endpoint_extra"))
            ),
        ),
        (
            "removal_extra",
            format!(
                r#"{{"epoch":6,"remove_upstreams":[{}]}}"#,
                with(key, "removal_extra")
            ),
        ),
        (
            "patch_endpoint_extra",
            format!(
                r#"{{"epoch":6,"patch_upstreams":[{{"key":{key},"upsert_endpoints":[{}]}}]}}"#,
                with(&ep, "patch_endpoint_extra")
            ),
        ),
        (
            "table_extra",
            format!(
                r#"{{"epoch":6,"routes":{}}}"#,
                with(&table(&vhost(&route(path))), "table_extra")
            ),
        ),
        (
            "vhost_extra",
            format!(
                r#"{{"epoch":6,"routes":{}}}"#,
                table(&with(&vhost(&route(path)), "vhost_extra"))
            ),
        ),
        (
            "any_host_extra",
            format!(
                r#"{{"epoch":6,"routes":{{"hosts":{{}},"any_host":{}}}}}"#,
                with(&vhost(&route(path)), "any_host_extra")
            ),
        ),
        (
            "route_extra",
            format!(
                r#"{{"epoch":6,"routes":{}}}"#,
                table(&vhost(&with(&route(path), "route_extra")))
            ),
        ),
        (
            "path_extra",
            format!(
                r#"{{"epoch":6,"routes":{}}}"#,
                table(&vhost(&route(&with(path, "path_extra"))))
            ),
        ),
        (
            "certificate_extra",
            r#"{"epoch":6,"upsert_certificates":[{"id":"ns/c","cert_pem":"x","key_pem":"x","certificate_extra":1}]}"#.into(),
        ),
    ];
    for (field, body) in rows {
        let (status, text) = admin(&proxy, "POST", "/v1/batch", Some(TOKEN), &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {text}");
        assert!(
            text.contains(&format!("unknown field `{field}`")),
            "{field}: the answer should name the field: {text}"
        );
        assert_eq!(state(&proxy).await, before, "{field} changed the state");
    }
}

/// JSON allows an object key twice and serde keeps the last: for the route table that
/// would drop one host's rules without a word. Hosts are compared as the proxy matches
/// them (lower-cased, without a trailing dot).
#[tokio::test]
async fn a_host_given_twice_is_refused_naming_it() {
    let pod = Backend::start("web", 11, 5).await;
    let proxy = configured(&pod).await;
    let before = state(&proxy).await;
    let vhost = r#"{"routes":[{"path":{"kind":"Prefix","path":""},"upstream":{"namespace":"default","service":"web","port":80}}]}"#;
    for (first, second) in [
        ("b.example.com", "b.example.com"),
        ("b.example.com", "B.Example.com."),
        ("*.example.com", "*.EXAMPLE.com"),
    ] {
        let body = format!(
            r#"{{"epoch":6,"routes":{{"hosts":{{"{first}":{vhost},"{second}":{{"routes":[]}}}}}}}}"#
        );
        let (status, text) = admin(&proxy, "POST", "/v1/batch", Some(TOKEN), &body).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{first} + {second}: {text}"
        );
        let error: serde_json::Value = serde_json::from_str(&text).unwrap();
        let named = first.to_ascii_lowercase();
        assert!(
            error["error"]
                .as_str()
                .unwrap()
                .contains(&format!("host {named:?} appears twice")),
            "{first} + {second}: the answer should name the host: {text}"
        );
        assert_eq!(
            state(&proxy).await,
            before,
            "{first} + {second} changed the state"
        );
    }
    // Two different hosts are fine.
    let body = format!(
        r#"{{"epoch":6,"routes":{{"hosts":{{"b.example.com":{vhost},"c.example.com":{vhost}}}}}}}"#
    );
    let (status, text) = admin(&proxy, "POST", "/v1/batch", Some(TOKEN), &body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(state(&proxy).await.routes.hosts.len(), 2);
}

/// `health_listen`: metrics and probes without the token; nothing else, and nothing
/// that writes.
#[tokio::test]
async fn the_health_listener_serves_metrics_and_probes_without_the_token_and_nothing_else() {
    let proxy = harness::proxy_with(|c| {
        c.health_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    })
    .await;
    let health = proxy.health_addr.expect("health_listen is bound");
    let call = |method: &str, path: &str, body: &str| {
        let req = http::Request::builder()
            .method(method)
            .uri(format!("http://{health}{path}"))
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_owned(),
            )))
            .unwrap();
        async move { harness::send(&client(), req).await }
    };
    let metrics = call("GET", "/metrics", "").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics.body.contains("podgate_proxy_generation"),
        "{}",
        metrics.body
    );
    assert_eq!(call("GET", "/healthz", "").await.status, StatusCode::OK);
    assert_eq!(
        call("GET", "/readyz", "").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    for (method, path, body) in [
        ("POST", "/v1/batch", r#"{"complete": true}"#),
        ("GET", "/v1/state", ""),
        ("GET", "/v1/summary", ""),
        ("GET", "/", ""),
    ] {
        let answer = call(method, path, body).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert!(answer.body.contains("admin.listen"), "{}", answer.body);
    }
    assert_eq!(state(&proxy).await.generation, 0, "nothing changed");
    // The admin listener still wants its token for metrics.
    let (status, _) = admin(&proxy, "GET", "/metrics", None, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
