//! Gateway API rules (contract version 2) through the real proxy: matches on method,
//! headers and query parameters in the order pushed, weighted upstream groups with a
//! 500 share for an unresolved reference, the four filters, and a rule the proxy cannot
//! serve refused with 400 and nothing changed. Over HTTP/1.1 (the fast path hands these
//! hosts to the general path) and h2c.

use crate::harness;

use bytes::Bytes;
use harness::{Backend, admin, client, get, key, proxy, push, send, upstream};
use http::{Request, StatusCode};
use http_body_util::Full;
use podgate_core::model::{
    Batch, EndpointState, HeaderEdits, HostPattern, HttpRule, NameValue, PathMatch, PathRewrite,
    Redirect, Rewrite, RouteTable, RuleFilter, VirtualHost, WeightedBackend,
};

fn rule(path: PathMatch, to: &[(&str, u32)]) -> HttpRule {
    HttpRule {
        source: "default/web rule 0".to_owned(),
        ..HttpRule::to(
            path,
            to.iter()
                .map(|(service, weight)| WeightedBackend {
                    upstream: (!service.is_empty()).then(|| key(service)),
                    weight: *weight,
                })
                .collect(),
        )
    }
}

type Headers = &'static [(&'static str, &'static str)];

fn nv(name: &str, value: &str) -> NameValue {
    NameValue {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

fn table(host: &str, rules: Vec<HttpRule>) -> RouteTable {
    let mut t = RouteTable::default();
    t.hosts.insert(
        HostPattern::parse(host).unwrap(),
        VirtualHost {
            rules,
            ..VirtualHost::default()
        },
    );
    t
}

struct Pods {
    a: Backend,
    b: Backend,
}

async fn start(third: u8) -> (Pods, podgate::proxy::ProxyHandle) {
    let (a, b) = tokio::join!(Backend::start("a", third, 1), Backend::start("b", third, 2));
    (Pods { a, b }, proxy().await)
}

fn upstreams(p: &Pods) -> Vec<podgate_core::model::Upstream> {
    vec![
        upstream("a", &[], vec![p.a.endpoint("idc", EndpointState::Active)]),
        upstream("b", &[], vec![p.b.endpoint("idc", EndpointState::Active)]),
    ]
}

/// Pushes the pods' upstreams and `rules` on `host`; panics unless accepted.
async fn serve(proxy: &podgate::proxy::ProxyHandle, pods: &Pods, host: &str, rules: Vec<HttpRule>) {
    let batch = Batch {
        epoch: 1,
        upsert_upstreams: upstreams(pods),
        routes: Some(table(host, rules)),
        ..Batch::default()
    };
    push(proxy, &batch).await;
}

/// Pushes `rules` on `host`, which the proxy must refuse with 400; its answer.
async fn refused(proxy: &podgate::proxy::ProxyHandle, host: &str, rules: Vec<HttpRule>) -> String {
    let batch = Batch {
        epoch: 1,
        routes: Some(table(host, rules)),
        ..Batch::default()
    };
    let body = serde_json::to_string(&batch).unwrap();
    let (status, text) = admin(proxy, "POST", "/v1/batch", Some(harness::TOKEN), &body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    text
}

#[tokio::test]
async fn the_first_rule_matching_method_headers_and_query_serves_and_none_is_a_404() {
    let (pods, proxy) = start(90).await;
    let mut canary = rule(PathMatch::prefix("/"), &[("b", 1)]);
    canary.headers = vec![nv("x-canary", "true")];
    let mut post = rule(PathMatch::prefix("/api"), &[("b", 1)]);
    post.method = Some("POST".to_owned());
    let mut debug = rule(PathMatch::exact("/api/v1"), &[("b", 1)]);
    debug.query = vec![nv("debug", "on air")];
    let rules = vec![
        debug,
        post,
        rule(PathMatch::prefix("/api"), &[("a", 1)]),
        canary,
    ];
    serve(&proxy, &pods, "web.example.com", rules).await;
    let c = client();
    let send_one = |method: &str, path: &str, headers: &[(&str, &str)]| {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", proxy.http_addr))
            .header("host", "web.example.com");
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        send(&c, req.body(Full::new(Bytes::new())).unwrap())
    };
    let rows: [(&str, &str, Headers, Option<&str>); 8] = [
        ("GET", "/api/x", &[], Some("a")),
        ("POST", "/api/x", &[], Some("b")),
        ("GET", "/api/v1?debug=on+air", &[], Some("b")),
        ("GET", "/api/v1?debug=on%20air&x=1", &[], Some("b")),
        ("GET", "/api/v1?Debug=on+air", &[], Some("a")),
        ("GET", "/other", &[("X-Canary", "true")], Some("b")),
        ("GET", "/other", &[("x-canary", "false")], None),
        ("GET", "/apix", &[], None),
    ];
    for (method, path, headers, want) in rows {
        let a = send_one(method, path, headers).await;
        match want {
            Some(b) => assert_eq!(a.backend(), Some(b), "{method} {path} {headers:?}: {a:?}"),
            None => assert_eq!(a.status, StatusCode::NOT_FOUND, "{method} {path}: {a:?}"),
        }
    }
    // The same over h2c (the general path from the first byte).
    let mut h2 = harness::h2c(&proxy).await;
    let req = Request::get("http://web.example.com/api/v1?debug=on+air")
        .body(http_body_util::Empty::new())
        .unwrap();
    let resp = h2.send_request(req).await.expect("h2c answer");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers().get("x-backend").unwrap(), "b");
}

#[tokio::test]
async fn weights_split_a_rule_between_upstreams_and_an_unresolved_share_answers_500() {
    let (pods, proxy) = start(91).await;
    let rules = vec![rule(PathMatch::prefix("/"), &[("a", 3), ("b", 1), ("", 1)])];
    serve(&proxy, &pods, "web.example.com", rules).await;
    let c = client();
    let (mut a, mut b, mut failed) = (0, 0, 0);
    for _ in 0..1000 {
        let answer = get(&c, &proxy, "web.example.com", "/").await;
        match (answer.status, answer.backend()) {
            (StatusCode::OK, Some("a")) => a += 1,
            (StatusCode::OK, Some("b")) => b += 1,
            (StatusCode::INTERNAL_SERVER_ERROR, None) => failed += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    // 3:1:1 of 1000; the bounds are wide (a failure by chance is far below 1e-6).
    assert!((520..680).contains(&a), "a {a} b {b} 500 {failed}");
    assert!((130..270).contains(&b), "a {a} b {b} 500 {failed}");
    assert!((130..270).contains(&failed), "a {a} b {b} 500 {failed}");
}

#[tokio::test]
async fn header_edits_rewrites_and_redirects_apply_as_written() {
    let (pods, proxy) = start(92).await;
    let mut edited = rule(PathMatch::prefix("/edit"), &[("a", 1)]);
    edited.filters = vec![
        RuleFilter::RequestHeaders(HeaderEdits {
            set: vec![nv("x-edit-set", "set")],
            add: vec![nv("x-edit-add", "added")],
            remove: vec!["x-edit-gone".to_owned()],
        }),
        RuleFilter::ResponseHeaders(HeaderEdits {
            add: vec![nv("x-served-by", "podgate")],
            remove: vec!["x-backend-only".to_owned()],
            ..HeaderEdits::default()
        }),
    ];
    let mut rewritten = rule(PathMatch::prefix("/old"), &[("b", 1)]);
    rewritten.filters = vec![RuleFilter::Rewrite(Rewrite {
        hostname: Some("internal.example.com".to_owned()),
        path: Some(PathRewrite::Prefix("/new".to_owned())),
    })];
    let mut moved = rule(PathMatch::prefix("/moved"), &[]);
    moved.filters = vec![RuleFilter::Redirect(Redirect {
        scheme: Some("https".to_owned()),
        hostname: None,
        port: None,
        path: Some(PathRewrite::Full("/here".to_owned())),
        status: 301,
    })];
    serve(
        &proxy,
        &pods,
        "web.example.com",
        vec![edited, rewritten, moved],
    )
    .await;
    let c = client();
    let req = Request::get(format!("http://{}/edit", proxy.http_addr))
        .header("host", "web.example.com")
        .header("x-edit-set", "client")
        .header("x-edit-gone", "secret")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let a = send(&c, req).await;
    let seen = |h: &str| a.headers.get(h).and_then(|v| v.to_str().ok());
    assert_eq!(seen("x-seen-x-edit-set"), Some("set"), "{a:?}");
    assert_eq!(seen("x-seen-x-edit-add"), Some("added"));
    assert_eq!(seen("x-seen-x-edit-gone"), None);
    assert_eq!(seen("x-served-by"), Some("podgate"));
    assert_eq!(seen("x-backend"), Some("a"));

    let a = get(&c, &proxy, "web.example.com:8080", "/old/page?x=1").await;
    assert_eq!(a.backend(), Some("b"), "{a:?}");
    assert_eq!(a.body, "b /new/page");
    assert_eq!(
        a.headers.get("x-seen-host").unwrap(),
        "internal.example.com"
    );

    let a = get(&c, &proxy, "web.example.com:8080", "/moved/x?q=1").await;
    assert_eq!(a.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        a.headers.get("location").unwrap(),
        "https://web.example.com/here?q=1"
    );
    assert_eq!(
        pods.a.hits() + pods.b.hits(),
        2,
        "a redirect reaches no pod"
    );
}

#[tokio::test]
async fn a_rule_the_proxy_cannot_serve_is_refused_naming_the_field_and_nothing_changes() {
    let (pods, proxy) = start(93).await;
    serve(
        &proxy,
        &pods,
        "web.example.com",
        vec![rule(PathMatch::prefix("/"), &[("a", 1)])],
    )
    .await;
    let mut framing = rule(PathMatch::prefix("/"), &[("b", 1)]);
    framing.filters = vec![RuleFilter::RequestHeaders(HeaderEdits {
        set: vec![nv("Transfer-Encoding", "chunked")],
        ..HeaderEdits::default()
    })];
    let mut teapot = rule(PathMatch::prefix("/"), &[("b", 1)]);
    teapot.filters = vec![RuleFilter::Redirect(Redirect {
        scheme: None,
        hostname: None,
        port: None,
        path: None,
        status: 418,
    })];
    for (bad, field) in [(framing, "Transfer-Encoding"), (teapot, "status 418")] {
        let text = refused(&proxy, "web.example.com", vec![bad]).await;
        assert!(
            text.contains("routes.hosts[web.example.com].rules[0]") && text.contains(field),
            "{text}"
        );
        let a = get(&client(), &proxy, "web.example.com", "/").await;
        assert_eq!(a.backend(), Some("a"), "the previous rules still serve");
    }
    // An unknown field in a rule is refused too (an LB of contract version 1 refuses
    // `rules` itself the same way).
    let (status, text) = admin(
        &proxy,
        "POST",
        "/v1/batch",
        Some(harness::TOKEN),
        r#"{"epoch": 1, "routes": {"hosts": {"web.example.com": {"routes": [],
            "rules": [{"path": {"kind": "Prefix", "path": ""}, "regex": ".*"}]}}}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("regex"), "{text}");
}

#[tokio::test]
async fn a_gateway_wildcard_serves_names_at_any_depth_through_both_request_paths() {
    let (pods, proxy) = start(94).await;
    serve(
        &proxy,
        &pods,
        "*.gw.example.com",
        vec![rule(PathMatch::prefix("/"), &[("b", 1)])],
    )
    .await;
    let c = client();
    for host in [
        "a.gw.example.com",
        "a.b.gw.example.com",
        "x.y.z.gw.example.com",
    ] {
        assert_eq!(
            get(&c, &proxy, host, "/").await.backend(),
            Some("b"),
            "{host}"
        );
    }
    assert_eq!(
        get(&c, &proxy, "gw.example.com", "/").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_regular_expression_path_matches_the_whole_path_and_a_bad_one_is_refused() {
    let (pods, proxy) = start(95).await;
    let mut versioned = rule(PathMatch::prefix("/"), &[("b", 1)]);
    versioned.path_regex = Some("/api/v[0-9]+/.*".to_owned());
    serve(
        &proxy,
        &pods,
        "web.example.com",
        vec![versioned, rule(PathMatch::prefix("/"), &[("a", 1)])],
    )
    .await;
    let c = client();
    for (path, want) in [
        ("/api/v2/users", "b"),
        ("/api/vx/users", "a"),
        ("/x/api/v2/users", "a"),
    ] {
        assert_eq!(
            get(&c, &proxy, "web.example.com", path).await.backend(),
            Some(want),
            "{path}"
        );
    }
    let mut bad = rule(PathMatch::prefix("/"), &[("b", 1)]);
    bad.path_regex = Some("/api/(".to_owned());
    let text = refused(&proxy, "web.example.com", vec![bad]).await;
    assert!(text.contains("path_regex"), "{text}");
    assert_eq!(
        get(&c, &proxy, "web.example.com", "/api/v2/x")
            .await
            .backend(),
        Some("b")
    );
}
