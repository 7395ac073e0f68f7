//! Keeps `docs/lb-contract.openapi.yaml` true: every admin route is documented and every
//! documented operation is served, auth is documented as enforced, schema property names
//! match the model's serde form, and the examples deserialize into the model types (the
//! request examples are also accepted by a running proxy).

use crate::harness;

use std::collections::{BTreeMap, BTreeSet};

use http::StatusCode;
use podgate::proxy::ADMIN_ROUTES;
use podgate_core::model::{
    Batch, Certificate, CertificateInfo, Endpoint, EndpointState, HeaderEdits, HealthCheck,
    HostPattern, HttpRule, LbState, NameValue, OwnerState, PathMatch, PathRewrite, Pem, PortRef,
    Redirect, Rewrite, Route, RouteTable, RuleFilter, StateSummary, Upstream, UpstreamKey,
    UpstreamPatch, VirtualHost, WeightedBackend,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn doc() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/lb-contract.openapi.yaml");
    let text = std::fs::read_to_string(path).expect("the OpenAPI file exists");
    serde_yaml_ng::from_str(&text).expect("the OpenAPI file is valid YAML")
}

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

#[test]
fn every_served_route_is_documented_and_vice_versa() {
    let doc = doc();
    let mut documented = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                // An operation is open only if it says `security: []`.
                let open = op
                    .get("security")
                    .is_some_and(|s| s.as_array().is_some_and(Vec::is_empty));
                documented.insert((method.to_uppercase(), path.clone()), !open);
            }
        }
    }
    let served: BTreeMap<_, _> = ADMIN_ROUTES
        .iter()
        .map(|(m, p, auth)| (((*m).to_owned(), (*p).to_owned()), *auth))
        .collect();
    assert_eq!(
        documented, served,
        "documented (left) vs served (right), with auth"
    );
    assert!(doc["security"][0].get("bearer").is_some());
}

fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, inner) in m {
                if k == "$ref" {
                    out.push(inner.as_str().unwrap().to_owned());
                } else {
                    refs(inner, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|i| refs(i, out)),
        _ => {}
    }
}

#[test]
fn every_reference_resolves() {
    let doc = doc();
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let pointer = r.strip_prefix('#').expect("local reference");
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }
}

fn key() -> UpstreamKey {
    UpstreamKey::new("shop", "web", PortRef::Number(80))
}

fn endpoint() -> Endpoint {
    Endpoint {
        cluster: "idc".into(),
        address: [127, 1, 0, 1].into(),
        port: 8080,
        zone: Some("a".into()),
        node: Some("n1".into()),
        state: EndpointState::Active,
        weight: 1000,
    }
}

fn upstream() -> Upstream {
    Upstream {
        health_check: Some(health_check()),
        key: key(),
        shares: vec![("idc".into(), 1000)],
        endpoints: vec![endpoint()],
    }
}

fn health_check() -> HealthCheck {
    HealthCheck::parse("GET /healthz interval=2s timeout=500ms healthy=2 unhealthy=3").unwrap()
}

fn patch() -> UpstreamPatch {
    UpstreamPatch {
        shares: Some(vec![("idc".into(), 1000)]),
        upsert_endpoints: vec![endpoint()],
        weights: vec![("10.1.2.3:8080".parse().unwrap(), 2)],
        remove_endpoints: vec!["[fd00::1]:8080".parse().unwrap()],
        ..UpstreamPatch::new(key())
    }
}

fn vhost() -> VirtualHost {
    VirtualHost {
        routes: vec![Route {
            path: PathMatch::prefix("/api"),
            upstream: key(),
        }],
        default_backend: Some(key()),
        tls: Some("shop/tls".into()),
        rules: vec![rule()],
    }
}

fn nv(name: &str, value: &str) -> NameValue {
    NameValue {
        name: name.into(),
        value: value.into(),
    }
}

fn edits() -> HeaderEdits {
    HeaderEdits {
        set: vec![nv("x-a", "1")],
        add: vec![nv("x-b", "2")],
        remove: vec!["x-c".into()],
    }
}

fn redirect() -> Redirect {
    Redirect {
        scheme: Some("https".into()),
        hostname: Some("b.example.com".into()),
        port: Some(8443),
        path: Some(PathRewrite::Full("/new".into())),
        status: 301,
    }
}

fn rewrite() -> Rewrite {
    Rewrite {
        hostname: Some("internal.example.com".into()),
        path: Some(PathRewrite::Prefix("/v2".into())),
    }
}

fn rule() -> HttpRule {
    HttpRule {
        path: PathMatch::prefix("/api"),
        path_regex: Some("/api/v[0-9]+/.*".into()),
        method: Some("GET".into()),
        headers: vec![nv("x-canary", "true")],
        query: vec![nv("debug", "1")],
        filters: vec![
            RuleFilter::RequestHeaders(edits()),
            RuleFilter::ResponseHeaders(edits()),
            RuleFilter::Rewrite(rewrite()),
        ],
        backends: vec![WeightedBackend {
            upstream: Some(key()),
            weight: 90,
        }],
        source: "shop/web rule 0".into(),
    }
}

fn table() -> RouteTable {
    RouteTable {
        any_host: Some(vhost()),
        hosts: [(HostPattern::parse("a.example.com").unwrap(), vhost())].into(),
        default_backend: Some(key()),
    }
}

/// The schema `name` lists exactly the keys `full` serialises to; its `required` keys
/// are enough to deserialize and each of them is needed.
fn check_schema<T: Serialize + DeserializeOwned>(doc: &Value, name: &str, full: &T) {
    let schema = &doc["components"]["schemas"][name];
    let props: BTreeSet<&String> = schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("schema {name} has properties"))
        .keys()
        .collect();
    let json = serde_json::to_value(full).unwrap();
    let obj = json.as_object().unwrap();
    let keys: BTreeSet<&String> = obj.keys().collect();
    assert_eq!(props, keys, "schema {name} (left) vs the model (right)");
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().map(|v| v.as_str().unwrap()).collect())
        .unwrap_or_default();
    let minimal: serde_json::Map<_, _> = obj
        .iter()
        .filter(|(k, _)| required.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    serde_json::from_value::<T>(Value::Object(minimal.clone()))
        .unwrap_or_else(|e| panic!("{name}: the required fields are not enough: {e}"));
    for r in &required {
        let mut missing = minimal.clone();
        missing.remove(*r);
        assert!(
            serde_json::from_value::<T>(Value::Object(missing)).is_err(),
            "{name}: {r} is documented as required but is optional"
        );
    }
}

#[test]
fn schemas_match_the_model() {
    let doc = doc();
    let batch = Batch {
        epoch: 1,
        owner: Some("podgate.io/ingress-controller".into()),
        upsert_upstreams: vec![upstream()],
        remove_upstreams: vec![key()],
        patch_upstreams: vec![patch()],
        routes: Some(table()),
        upsert_certificates: vec![Certificate {
            id: "shop/tls".into(),
            cert_pem: Pem("c".into()),
            key_pem: Pem("k".into()),
        }],
        remove_certificates: vec!["shop/old".into()],
        complete: true,
    };
    check_schema(&doc, "Batch", &batch);
    check_schema(&doc, "UpstreamKey", &key());
    check_schema(&doc, "UpstreamPatch", &patch());
    check_schema(&doc, "Upstream", &upstream());
    check_schema(&doc, "Endpoint", &endpoint());
    check_schema(&doc, "HealthCheck", &health_check());
    check_schema(&doc, "RouteTable", &table());
    check_schema(&doc, "VirtualHost", &vhost());
    check_schema(&doc, "Route", &vhost().routes[0]);
    check_schema(&doc, "HttpRule", &rule());
    check_schema(&doc, "NameValue", &nv("a", "b"));
    check_schema(&doc, "WeightedBackend", &rule().backends[0]);
    check_schema(&doc, "HeaderEdits", &edits());
    check_schema(&doc, "Redirect", &redirect());
    check_schema(&doc, "Rewrite", &rewrite());
    check_schema(&doc, "PathMatch", &PathMatch::exact("/x"));
    check_schema(&doc, "Certificate", &batch.upsert_certificates[0]);
    let info = CertificateInfo {
        id: "shop/tls".into(),
        names: vec!["a.example.com".into()],
    };
    check_schema(&doc, "CertificateInfo", &info);
    let summary = StateSummary {
        instance: "i".into(),
        generation: 1,
        epoch: 1,
    };
    check_schema(&doc, "StateSummary", &summary);
    let state = LbState {
        instance: "i".into(),
        generation: 1,
        epoch: 1,
        upstreams: vec![upstream()],
        routes: table(),
        certificates: vec![info],
        owners: vec![OwnerState {
            owner: "podgate.io/ingress-controller".into(),
            epoch: 1,
            upstreams: vec![key()],
            certificates: vec!["shop/tls".into()],
        }],
    };
    check_schema(&doc, "LbState", &state);
    check_schema(&doc, "OwnerState", &state.owners[0]);
}

fn examples(content: &Value) -> Vec<(String, Value)> {
    content["examples"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v["value"].clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ErrorBody {
    error: String,
    epoch: Option<u64>,
}

#[tokio::test]
async fn examples_deserialize_and_a_proxy_accepts_the_requests() {
    let doc = doc();
    let batch_op = &doc["paths"]["/v1/batch"]["post"];
    let requests = examples(&batch_op["requestBody"]["content"]["application/json"]);
    assert!(requests.len() >= 2);
    let proxy = harness::proxy().await;
    for (name, value) in &requests {
        let batch: Batch = serde_json::from_value(value.clone())
            .unwrap_or_else(|e| panic!("request example {name}: {e}"));
        let (status, text) = harness::admin(
            &proxy,
            "POST",
            "/v1/batch",
            Some(harness::TOKEN),
            &serde_json::to_string(&batch).unwrap(),
        )
        .await;
        // The full example names a certificate id that is not installed: still valid.
        assert_eq!(status, StatusCode::OK, "request example {name}: {text}");
    }
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(responses) = item.get(method).map(|op| &op["responses"]) else {
                continue;
            };
            for (code, resp) in responses.as_object().unwrap() {
                let content = &resp["content"]["application/json"];
                for (name, value) in examples(content) {
                    let what = format!("{method} {path} {code} example {name}");
                    let parsed = match (path.as_str(), code.as_str()) {
                        ("/v1/state", "200") => serde_json::from_value::<LbState>(value).map(drop),
                        ("/v1/batch" | "/v1/summary", "200") => {
                            serde_json::from_value::<StateSummary>(value).map(drop)
                        }
                        ("/v1/upstreams/{namespace}/{service}/{port}", "200") => {
                            let mut value = value;
                            let live = value.as_object_mut().and_then(|o| o.remove("live"));
                            assert!(live.is_some_and(|l| l.is_array()), "{what}: no live");
                            serde_json::from_value::<Upstream>(value).map(drop)
                        }
                        _ => serde_json::from_value::<ErrorBody>(value).map(drop),
                    };
                    parsed.unwrap_or_else(|e| panic!("{what}: {e}"));
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 4, "only {checked} response examples found");
}

/// A tool from PyPI the contract tests drive (`.ci/run` installs them). Missing: a loud
/// skip locally, a failure under CI.
fn python_tool(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(found) = std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
    {
        return Some(found);
    }
    let msg = format!(
        "\n!!!!!!!! `{program}` is not installed: this test is SKIPPED. \
         `pip install {program}` (or run .ci/run). !!!!!!!!\n"
    );
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{msg}(CI=true: missing programs are a failure)"
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes());
    None
}

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/lb-contract.openapi.yaml");

#[test]
fn the_document_passes_an_openapi_validator() {
    let Some(validator) = python_tool("openapi-spec-validator") else {
        return;
    };
    let out = std::process::Command::new(validator)
        .arg(DOC)
        .output()
        .expect("openapi-spec-validator runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A property-based fuzzer driven by the document, against a live proxy: no 5xx, no
/// answer the document does not allow, and no refused request changes the state
/// (`tests/contract/hooks.py`). Not checked: that every schema-valid batch is taken —
/// epochs and owners refuse valid batches on purpose, which a schema cannot say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fuzzer_driven_by_the_document_finds_nothing() {
    let Some(schemathesis) = python_tool("schemathesis") else {
        return;
    };
    let proxy = harness::proxy().await;
    // A full state first, as a controller's first sync gives it: `/readyz` answers 200
    // (its documented 503 before that is still a 5xx to the fuzzer).
    harness::push(
        &proxy,
        &Batch {
            complete: true,
            ..Batch::default()
        },
    )
    .await;
    let url = proxy.admin_url();
    let reports = tempfile::tempdir().unwrap();
    let hooks = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/contract");
    let out = tokio::process::Command::new(schemathesis)
        .args(["run", DOC, "--url", &url, "--checks", "all"])
        .args(["--exclude-checks", "positive_data_acceptance"])
        .args(["--max-examples", "40", "--seed", "1", "--workers", "1"])
        .args(["-H", &format!("Authorization: Bearer {}", harness::TOKEN)])
        .current_dir(reports.path())
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONPATH", hooks)
        .env("PODGATE_ADMIN_URL", &url)
        .env("PODGATE_TOKEN", harness::TOKEN)
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output()
        .await
        .expect("schemathesis runs");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("Tested: 7"), "{report}");
}
