//! What the proxy shows of its traffic: per-upstream metrics on both request paths
//! (bounded: at most `metrics_upstreams` upstreams, series gone with their upstream),
//! per-endpoint counters in `GET /v1/upstreams/...`, build and process metrics, and
//! the access log (JSON or text; no query strings or headers unless configured).

use crate::harness;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use harness::{Backend, TOKEN, admin, client, eventually, get, proxy_with, push, routes, upstream};
use http::{Request, StatusCode};
use podgate::proxy::{AccessLogConfig, ProxyHandle};
use podgate_core::model::{Batch, EndpointState, PathMatch};

async fn metrics(proxy: &ProxyHandle) -> String {
    let (status, text) = admin(proxy, "GET", "/metrics", Some(TOKEN), "").await;
    assert_eq!(status, StatusCode::OK);
    text
}

/// The value of the sample `series` (name and labels exactly as exported).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// `web` → `pod`, `other` → `pod`, on `web.example.com` and `other.example.com`.
async fn two_upstreams(proxy: &ProxyHandle, pod: &Backend) {
    let ep = || vec![pod.endpoint("idc", EndpointState::Active)];
    push(
        proxy,
        &Batch {
            upsert_upstreams: vec![upstream("web", &[], ep()), upstream("other", &[], ep())],
            routes: Some(routes(&[
                ("web.example.com", PathMatch::prefix("/"), "web"),
                ("other.example.com", PathMatch::prefix("/"), "other"),
            ])),
            ..Batch::default()
        },
    )
    .await;
}

/// One request over h2c (the general path through hyper).
async fn h2c_get(proxy: &ProxyHandle, host: &str, path: &str) -> StatusCode {
    let mut sender = harness::h2c(proxy).await;
    let req = Request::get(format!("http://{host}{path}"))
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status();
    let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
    status
}

#[tokio::test]
async fn each_upstream_has_its_own_series_on_both_paths_and_they_go_with_it() {
    let pod = Backend::start("pod", 40, 1).await;
    let proxy = proxy_with(|_| {}).await;
    two_upstreams(&proxy, &pod).await;
    for _ in 0..3 {
        let answer = get(&client(), &proxy, "web.example.com", "/a").await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    assert_eq!(
        h2c_get(&proxy, "web.example.com", "/b").await,
        StatusCode::OK
    );
    pod.failing.store(true, Ordering::SeqCst);
    let failed = get(&client(), &proxy, "other.example.com", "/").await;
    assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
    pod.failing.store(false, Ordering::SeqCst);

    // Counted once the last byte is out: poll, the h2 body may still be in flight.
    let web = r#"upstream="default/web:80""#;
    eventually(
        "four requests of web counted",
        Duration::from_secs(5),
        || async {
            sample(
                &metrics(&proxy).await,
                &format!("podgate_proxy_request_duration_seconds_count{{{web}}}"),
            ) == Some(4.0)
        },
    )
    .await;
    let text = metrics(&proxy).await;
    for (series, want) in [
        (
            format!("podgate_proxy_upstream_requests_total{{{web},class=\"2xx\"}}"),
            4.0,
        ),
        (
            r#"podgate_proxy_upstream_requests_total{upstream="default/other:80",class="5xx"}"#
                .to_owned(),
            1.0,
        ),
        // One connection each path opened to the pod: the fast path's (reused for
        // three requests) and hyper's, for the h2c request.
        (
            format!("podgate_proxy_upstream_connect_duration_seconds_count{{{web}}}"),
            2.0,
        ),
    ] {
        assert_eq!(sample(&text, &series), Some(want), "{series} in\n{text}");
    }
    // "pod /a" three times and "pod /b": the bodies the pod answered.
    let received = sample(
        &text,
        &format!("podgate_proxy_upstream_received_bytes_total{{{web}}}"),
    );
    assert_eq!(received, Some(4.0 * 6.0), "{text}");
    assert!(text.contains("podgate_build_info{"), "{text}");
    assert!(text.contains("process_resident_memory_bytes "), "{text}");

    // Each endpoint's counters, for the admin view.
    let (_, body) = admin(
        &proxy,
        "GET",
        "/v1/upstreams/default/other/80",
        Some(TOKEN),
        "",
    )
    .await;
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&view["live"][0]["requests"], &view["live"][0]["errors"]),
        (&serde_json::json!(1), &serde_json::json!(1)),
        "{view}"
    );

    // The upstream goes: so do its series.
    push(
        &proxy,
        &Batch {
            remove_upstreams: vec![harness::key("web")],
            ..Batch::default()
        },
    )
    .await;
    let text = metrics(&proxy).await;
    assert!(
        !text.contains(web),
        "series of a removed upstream remain:\n{text}"
    );
    assert!(text.contains(r#"upstream="default/other:80""#), "{text}");
}

#[tokio::test]
async fn upstreams_beyond_the_cap_share_one_series() {
    let pod = Backend::start("pod", 40, 2).await;
    let proxy = proxy_with(|c| c.limits.metrics_upstreams = 1).await;
    two_upstreams(&proxy, &pod).await;
    for host in ["web.example.com", "other.example.com", "other.example.com"] {
        assert_eq!(
            get(&client(), &proxy, host, "/").await.status,
            StatusCode::OK
        );
    }
    let text = metrics(&proxy).await;
    let per_upstream: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("podgate_proxy_upstream_requests_total{"))
        .filter(|l| l.contains("class=\"2xx\""))
        .collect();
    assert_eq!(
        per_upstream.len(),
        2,
        "one upstream and _other: {per_upstream:?}"
    );
    assert!(
        per_upstream
            .iter()
            .any(|l| l.contains(r#"upstream="_other""#)),
        "{per_upstream:?}"
    );
}

async fn logged_proxy(dir: &Path, config: AccessLogConfig) -> ProxyHandle {
    let path = dir.join("access.log");
    proxy_with(move |c| {
        c.access_log = AccessLogConfig {
            path: Some(path),
            ..config
        };
    })
    .await
}

/// Lines of the access log, once `n` are there.
async fn lines(dir: &Path, n: usize) -> Vec<String> {
    let path = dir.join("access.log");
    eventually("access log lines", Duration::from_secs(5), || async {
        std::fs::read_to_string(&path).is_ok_and(|t| t.lines().count() >= n)
    })
    .await;
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn the_access_log_has_a_json_line_per_request_without_queries_or_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let pod = Backend::start("pod", 40, 3).await;
    let config: AccessLogConfig =
        serde_yaml_ng::from_str("to: file\nformat: json\nheaders: [user-agent]").unwrap();
    let proxy = logged_proxy(dir.path(), config).await;
    two_upstreams(&proxy, &pod).await;
    let req = Request::get(format!("http://{}/a?token=s3cret", proxy.http_addr))
        .header("host", "web.example.com")
        .header("authorization", "Bearer s3cret")
        .header("user-agent", "probe/1")
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(harness::send(&client(), req).await.status, StatusCode::OK);
    assert_eq!(
        h2c_get(&proxy, "nowhere.example.com", "/x?y=1").await,
        StatusCode::NOT_FOUND
    );
    let lines = lines(dir.path(), 2).await;
    assert!(lines.iter().all(|l| !l.contains("s3cret")), "{lines:?}");
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    for (field, want) in [
        ("method", serde_json::json!("GET")),
        ("host", serde_json::json!("web.example.com")),
        ("path", serde_json::json!("/a")),
        ("status", serde_json::json!(200)),
        ("bytes_sent", serde_json::json!(6)),
        ("upstream", serde_json::json!("default/web:80")),
        ("endpoint", serde_json::json!(format!("idc/{}", pod.addr))),
        ("retries", serde_json::json!(0)),
        ("protocol", serde_json::json!("HTTP/1.1")),
        ("headers", serde_json::json!([["user-agent", "probe/1"]])),
    ] {
        assert_eq!(first[field], want, "{field} in {first}");
    }
    assert!(first["query"].is_null(), "{first}");
    assert!(first["time"].as_str().unwrap().ends_with('Z'), "{first}");
    assert!(first["duration"].as_f64().unwrap() > 0.0, "{first}");
    let second: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(
        (&second["status"], &second["protocol"], &second["path"]),
        (
            &serde_json::json!(404),
            &serde_json::json!("HTTP/2"),
            &serde_json::json!("/x")
        ),
        "{second}"
    );
    assert!(second["upstream"].is_null(), "{second}");
}

#[tokio::test]
async fn the_text_access_log_reads_as_a_fixed_format_and_survives_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let pod = Backend::start("pod", 40, 4).await;
    let config: AccessLogConfig =
        serde_yaml_ng::from_str("to: file\nformat: text\nquery: true").unwrap();
    let proxy = logged_proxy(dir.path(), config).await;
    two_upstreams(&proxy, &pod).await;
    assert_eq!(
        get(&client(), &proxy, "web.example.com", "/a?x=1")
            .await
            .status,
        StatusCode::OK
    );
    let line = lines(dir.path(), 1).await.remove(0);
    let client_part = line.split(' ').nth(1).unwrap();
    assert!(client_part.starts_with("127.0.0.1:"), "{line}");
    assert!(
        line.contains("\"GET web.example.com /a?x=1 HTTP/1.1\" 200 6 "),
        "{line}"
    );
    assert!(
        line.ends_with(&format!(" default/web:80 idc/{} retries=0", pod.addr)),
        "{line}"
    );
    // Rotated away: the next lines go to a new file at the same path.
    std::fs::rename(
        dir.path().join("access.log"),
        dir.path().join("access.log.1"),
    )
    .unwrap();
    eventually(
        "a new access log after rotation",
        Duration::from_secs(10),
        || async {
            let _ = get(&client(), &proxy, "web.example.com", "/after").await;
            std::fs::read_to_string(dir.path().join("access.log"))
                .is_ok_and(|t| t.contains("/after"))
        },
    )
    .await;
}
