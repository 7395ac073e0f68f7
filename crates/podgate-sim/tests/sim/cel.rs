//! The CEL rules of the Gateway API CRDs (`x-kubernetes-validations`) refuse what the
//! real kube-apiserver refuses, with its 422 (k8s-wire 15a), on creates, updates and
//! `/status` writes; a refused write stores nothing.

use podgate_sim::SimCluster;
use serde_json::{Value, json};

use super::wire::{ROUTES, assert_like, call, get, recording, request_body, with_gateway_api};

const MERGE: &str = "application/merge-patch+json";
const GATEWAYS: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/default/gateways";
const CLASSES: &str = "/apis/gateway.networking.k8s.io/v1/gatewayclasses";

fn route(name: &str, rules: &Value) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": { "name": name, "namespace": "default" },
        "spec": { "parentRefs": [{ "name": "gw" }], "rules": rules },
    })
}

fn gateway(name: &str, listeners: &Value) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": { "name": name, "namespace": "default" },
        "spec": { "gatewayClassName": "podgate", "listeners": listeners },
    })
}

/// The 422's message and its causes as (field, message) pairs.
async fn refused(
    sim: &SimCluster,
    method: &str,
    path: &str,
    ct: &str,
    body: &Value,
) -> (String, Vec<(String, String)>) {
    let answer = call(sim, method, path, ct, body).await;
    assert_eq!(answer.code, 422, "{:?}", answer.docs);
    let status = &answer.docs[0];
    assert_eq!(status["reason"], "Invalid");
    let causes = status["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["reason"], "FieldValueInvalid", "{c}");
            (
                c["field"].as_str().unwrap().to_owned(),
                c["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (status["message"].as_str().unwrap().to_owned(), causes)
}

fn cause(field: &str, ty: &str, message: &str) -> (String, String) {
    (
        field.to_owned(),
        format!("Invalid value: \"{ty}\": {message}"),
    )
}

#[tokio::test]
async fn a_path_not_starting_with_a_slash_answers_like_15a() {
    let sim = with_gateway_api().await;
    let body = request_body("15a-create-httproute-cel-422.txt");
    let answer = call(&sim, "POST", ROUTES, "application/json", &body).await;
    let rec = recording("15a-create-httproute-cel-422.txt");
    assert_like(&answer, &rec);
    assert_eq!(answer.docs, rec.docs);
    assert_eq!(get(&sim, &format!("{ROUTES}/bad-path")).await.code, 404);
}

#[tokio::test]
async fn several_failed_rules_are_listed_in_brackets() {
    let sim = with_gateway_api().await;
    let rules = json!([{ "matches": [
        { "path": { "type": "Exact", "value": "api" } },
        { "path": { "type": "PathPrefix", "value": "/a//b" } },
    ], "backendRefs": [{ "name": "web", "port": 80 }] }]);
    let (message, causes) = refused(
        &sim,
        "POST",
        ROUTES,
        "application/json",
        &route("two", &rules),
    )
    .await;
    let start = "value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']";
    let slashes = "must not contain '//' when type one of ['Exact', 'PathPrefix']";
    assert_eq!(
        causes,
        [
            cause("spec.rules[0].matches[0].path", "object", start),
            cause("spec.rules[0].matches[1].path", "object", slashes),
        ]
    );
    assert_eq!(
        message,
        format!(
            "HTTPRoute.gateway.networking.k8s.io \"two\" is invalid: [spec.rules[0].matches[0].path: Invalid value: \"object\": {start}, spec.rules[0].matches[1].path: Invalid value: \"object\": {slashes}]"
        )
    );
}

#[tokio::test]
async fn a_redirect_and_a_rewrite_in_one_rule_are_refused() {
    let sim = with_gateway_api().await;
    let rules = json!([{ "filters": [
        { "type": "RequestRedirect", "requestRedirect": { "statusCode": 302 } },
        { "type": "URLRewrite", "urlRewrite": { "hostname": "other.example.com" } },
    ] }]);
    let (_, causes) = refused(
        &sim,
        "POST",
        ROUTES,
        "application/json",
        &route("both", &rules),
    )
    .await;
    assert_eq!(
        causes,
        [cause(
            "spec.rules[0].filters",
            "array",
            "May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, but not both"
        )]
    );
    // Either one alone is fine.
    let one = json!([{ "filters": [{ "type": "URLRewrite", "urlRewrite": { "hostname": "other.example.com" } }] }]);
    let answer = call(
        &sim,
        "POST",
        ROUTES,
        "application/json",
        &route("one", &one),
    )
    .await;
    assert_eq!(answer.code, 201, "{:?}", answer.docs);
}

#[tokio::test]
async fn replace_prefix_match_needs_its_value() {
    let sim = with_gateway_api().await;
    let rewrite = |path: Value| {
        json!([{ "matches": [{ "path": { "type": "PathPrefix", "value": "/api" } }],
                 "filters": [{ "type": "URLRewrite", "urlRewrite": { "path": path } }],
                 "backendRefs": [{ "name": "web", "port": 80 }] }])
    };
    let bad = rewrite(json!({ "type": "ReplacePrefixMatch" }));
    let (_, causes) = refused(&sim, "POST", ROUTES, "application/json", &route("rw", &bad)).await;
    assert_eq!(
        causes,
        [cause(
            "spec.rules[0].filters[0].urlRewrite.path",
            "object",
            "replacePrefixMatch must be specified when type is set to 'ReplacePrefixMatch'"
        )]
    );
    let good = rewrite(json!({ "type": "ReplacePrefixMatch", "replacePrefixMatch": "/" }));
    let answer = call(
        &sim,
        "POST",
        ROUTES,
        "application/json",
        &route("rw", &good),
    )
    .await;
    assert_eq!(answer.code, 201, "{:?}", answer.docs);
}

#[tokio::test]
async fn an_https_listener_that_terminates_needs_certificates() {
    let sim = with_gateway_api().await;
    let https =
        |tls: Value| json!([{ "name": "https", "port": 443, "protocol": "HTTPS", "tls": tls }]);
    // `size(self.certificateRefs) > 0 || size(self.options) > 0`: the first side is
    // false, the second names a field that is not there, an error that refuses.
    let bad = gateway(
        "gw",
        &https(json!({ "mode": "Terminate", "certificateRefs": [] })),
    );
    let (_, causes) = refused(&sim, "POST", GATEWAYS, "application/json", &bad).await;
    assert_eq!(
        causes,
        [cause(
            "spec.listeners[0].tls",
            "object",
            "no such key: options evaluating rule: certificateRefs or options must be specified when mode is Terminate"
        )]
    );
    let good = gateway(
        "gw",
        &https(json!({ "certificateRefs": [{ "name": "web-tls" }] })),
    );
    let answer = call(&sim, "POST", GATEWAYS, "application/json", &good).await;
    assert_eq!(answer.code, 201, "{:?}", answer.docs);
    // An update breaking another rule is refused and changes nothing.
    let plain = json!({ "spec": { "listeners": [
        { "name": "https", "port": 443, "protocol": "HTTP", "tls": { "certificateRefs": [{ "name": "web-tls" }] } },
    ] } });
    let (_, causes) = refused(&sim, "PATCH", &format!("{GATEWAYS}/gw"), MERGE, &plain).await;
    assert_eq!(
        causes,
        [cause(
            "spec.listeners",
            "array",
            "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']"
        )]
    );
    let stored = get(&sim, &format!("{GATEWAYS}/gw")).await;
    assert_eq!(stored.docs[0]["spec"]["listeners"][0]["protocol"], "HTTPS");
}

#[tokio::test]
async fn a_gateway_class_controller_name_cannot_change() {
    let sim = with_gateway_api().await;
    let class = json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": { "name": "podgate" },
        "spec": { "controllerName": "podgate.io/gateway" },
    });
    assert_eq!(
        call(&sim, "POST", CLASSES, "application/json", &class)
            .await
            .code,
        201
    );
    let same = json!({ "spec": { "controllerName": "podgate.io/gateway", "description": "ok" } });
    assert_eq!(
        call(&sim, "PATCH", &format!("{CLASSES}/podgate"), MERGE, &same)
            .await
            .code,
        200
    );
    let other = json!({ "spec": { "controllerName": "example.com/other" } });
    let (_, causes) = refused(&sim, "PATCH", &format!("{CLASSES}/podgate"), MERGE, &other).await;
    assert_eq!(
        causes,
        [cause("spec.controllerName", "string", "Value is immutable")]
    );
}

#[tokio::test]
async fn status_rules_apply_to_status_writes() {
    let sim = with_gateway_api().await;
    let listeners = json!([{ "name": "http", "port": 80, "protocol": "HTTP" }]);
    let created = call(
        &sim,
        "POST",
        GATEWAYS,
        "application/json",
        &gateway("gw", &listeners),
    )
    .await;
    assert_eq!(created.code, 201, "{:?}", created.docs);
    let status = |value: &str| json!({ "status": { "addresses": [{ "type": "Hostname", "value": value }] } });
    let path = format!("{GATEWAYS}/gw/status");
    let (_, causes) = refused(&sim, "PATCH", &path, MERGE, &status("Not_A_Host")).await;
    let hostname = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
    assert_eq!(
        causes,
        [cause(
            "status.addresses[0]",
            "object",
            &format!("Hostname value must only contain valid characters (matching {hostname})")
        )]
    );
    assert_eq!(
        call(&sim, "PATCH", &path, MERGE, &status("lb.example.com"))
            .await
            .code,
        200
    );
}
