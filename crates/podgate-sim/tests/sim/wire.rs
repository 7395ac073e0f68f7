//! The simulated API server answers on the wire like the recorded kube-apiserver 1.26
//! (`tests/fixtures/k8s-wire/`, copied from `shared/k8s-wire/`): same status codes,
//! same `Status` bodies, same list metadata and continue tokens, same watch lines.
//! Server-chosen values (uid, timestamps, resourceVersions, managedFields) are compared
//! by shape, everything else exactly.

use std::path::Path;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use podgate_sim::{SimCluster, SimOptions};
use serde_json::{Value, json};

/// One recorded answer: status code, headers (lower-case names), JSON documents of the body.
pub(super) struct Recording {
    pub(super) code: u16,
    headers: Vec<(String, String)>,
    pub(super) docs: Vec<Value>,
}

pub(super) fn recording(file: &str) -> Recording {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/k8s-wire")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .skip_while(|l| l.trim().is_empty());
    let status = lines.next().expect("status line");
    let code = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let mut headers = Vec::new();
    for line in lines.by_ref() {
        let Some((k, v)) = line.split_once(": ") else {
            break;
        };
        headers.push((k.to_ascii_lowercase(), v.to_owned()));
    }
    // Chunked bodies are shown de-chunked, sometimes with the chunk sizes: keep JSON lines.
    let docs = lines
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    Recording {
        code,
        headers,
        docs,
    }
}

pub(super) struct Answer {
    pub(super) code: u16,
    headers: http::HeaderMap,
    pub(super) docs: Vec<Value>,
}

pub(super) async fn call(
    sim: &SimCluster,
    method: &str,
    path: &str,
    content_type: &str,
    body: &Value,
) -> Answer {
    let stream = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let body = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", sim.addr().to_string())
        .header("content-type", content_type)
        .body(Full::new(body))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let code = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let docs = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).expect("JSON answer"))
        .collect();
    Answer {
        code,
        headers,
        docs,
    }
}

pub(super) async fn get(sim: &SimCluster, path: &str) -> Answer {
    call(sim, "GET", path, "application/json", &Value::Null).await
}

/// Replaces server-chosen values by their shape, so answers compare by structure.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => m
            .iter()
            .filter(|(k, _)| k.as_str() != "managedFields")
            .map(|(k, v)| {
                let v = match k.as_str() {
                    "uid" | "creationTimestamp" => json!(v.as_str().map(str::len)),
                    "resourceVersion" => {
                        json!(v.as_str().is_some_and(|s| s.parse::<u64>().is_ok()))
                    }
                    _ => shape(v),
                };
                (k.clone(), v)
            })
            .collect(),
        Value::Array(a) => a.iter().map(shape).collect(),
        other => other.clone(),
    }
}

pub(super) fn assert_like(answer: &Answer, rec: &Recording) {
    assert_eq!(answer.code, rec.code);
    for (name, value) in &rec.headers {
        if name == "content-type" || name == "cache-control" {
            assert_eq!(
                answer.headers.get(name).and_then(|v| v.to_str().ok()),
                Some(value.as_str()),
                "header {name}"
            );
        }
    }
}

fn slice(name: &str, addrs: &[&str]) -> Value {
    let endpoints: Vec<Value> = addrs
        .iter()
        .map(|a| json!({ "addresses": [a], "conditions": { "ready": true }, "nodeName": "node-1", "zone": "zone-a" }))
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": { "name": name, "labels": { "kubernetes.io/service-name": "web" } },
        "addressType": "IPv4", "endpoints": endpoints, "ports": [{ "name": "http", "port": 8080 }]
    })
}

const SLICES: &str = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";

async fn three_slices() -> SimCluster {
    let sim = SimCluster::start("wire", SimOptions::default())
        .await
        .unwrap();
    for (name, addrs) in [
        ("web-a", &["10.1.0.1", "10.1.0.2"][..]),
        ("web-b", &["10.1.0.3"]),
        ("web-c", &["10.1.0.4"]),
    ] {
        let answer = call(
            &sim,
            "POST",
            SLICES,
            "application/json",
            &slice(name, addrs),
        )
        .await;
        assert_eq!(answer.code, 201);
    }
    sim
}

#[tokio::test]
async fn create_answers_like_01() {
    let sim = SimCluster::start("wire", SimOptions::default())
        .await
        .unwrap();
    let rec = recording("01-create-endpointslice.txt");
    let answer = call(
        &sim,
        "POST",
        SLICES,
        "application/json",
        &slice("web-a", &["10.1.0.1", "10.1.0.2"]),
    )
    .await;
    assert_like(&answer, &rec);
    assert_eq!(shape(&answer.docs[0]), shape(&rec.docs[0]));
}

#[tokio::test]
async fn paginated_list_answers_like_02_and_03() {
    let sim = three_slices().await;
    let (rec1, rec2) = (
        recording("02-list-limit-2.txt"),
        recording("03-list-continue.txt"),
    );
    let page1 = get(&sim, &format!("{SLICES}?limit=2")).await;
    assert_like(&page1, &rec1);
    let mut doc = page1.docs[0].clone();
    let token = doc["metadata"]["continue"].as_str().unwrap().to_owned();
    let list_rv = doc["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    // The token is the real server's format, at the list's version, starting after web-b.
    let decoded: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&token)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        decoded,
        json!({ "v": "meta.k8s.io/v1", "rv": list_rv.parse::<u64>().unwrap(), "start": "web-b\u{0}" })
    );
    doc["metadata"]["continue"] = rec1.docs[0]["metadata"]["continue"].clone();
    assert_eq!(shape(&doc), shape(&rec1.docs[0]));

    let page2 = get(&sim, &format!("{SLICES}?limit=2&continue={token}")).await;
    assert_like(&page2, &rec2);
    assert_eq!(shape(&page2.docs[0]), shape(&rec2.docs[0]));
    assert_eq!(page2.docs[0]["metadata"]["resourceVersion"], json!(list_rv));
}

#[tokio::test]
async fn watch_answers_like_04() {
    let sim = three_slices().await;
    let rec = recording("04-watch-events.txt");
    let rv = sim.resource_version();
    let mut a = slice("web-a", &["10.1.0.1", "10.1.0.2", "10.1.0.9"]);
    a["metadata"]["namespace"] = json!("default");
    sim.apply_json(a).unwrap();
    assert_eq!(
        call(
            &sim,
            "DELETE",
            &format!("{SLICES}/web-c"),
            "application/json",
            &Value::Null
        )
        .await
        .code,
        200
    );
    let mut d = slice("web-d", &["10.1.0.5"]);
    d["metadata"]["namespace"] = json!("default");
    sim.apply_json(d).unwrap();

    let answer = get(
        &sim,
        &format!(
            "{SLICES}?watch=true&allowWatchBookmarks=true&resourceVersion={rv}&timeoutSeconds=3"
        ),
    )
    .await;
    assert_like(&answer, &rec);
    assert_eq!(
        answer
            .headers
            .get("transfer-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("chunked")
    );
    // Events, then the bookmark 2 s before the deadline, then the end: like the recording.
    let recorded: Vec<Value> = rec.docs.iter().map(shape).collect();
    let got: Vec<Value> = answer.docs.iter().map(shape).collect();
    assert_eq!(got, recorded);
    let rv_of = |i: usize| answer.docs[i]["object"]["metadata"]["resourceVersion"].clone();
    assert_eq!(
        rv_of(3),
        rv_of(2),
        "the bookmark carries the last event's version"
    );
    let deleted = &answer.docs[1]["object"]["metadata"]["resourceVersion"];
    assert_eq!(
        deleted,
        &json!((rv + 2).to_string()),
        "a DELETED event carries the deletion's version"
    );
}

#[tokio::test]
async fn refusals_answer_like_05_06_07() {
    let sim = three_slices().await;
    let mut stale = slice("web-a", &["10.1.0.7"]);
    stale["metadata"]["resourceVersion"] = json!("2");
    let answer = call(
        &sim,
        "PUT",
        &format!("{SLICES}/web-a"),
        "application/json",
        &stale,
    )
    .await;
    let rec = recording("05-put-stale-409.txt");
    assert_like(&answer, &rec);
    assert_eq!(answer.docs, rec.docs);

    let answer = get(&sim, &format!("{SLICES}/nope")).await;
    let rec = recording("06-get-404.txt");
    assert_like(&answer, &rec);
    assert_eq!(answer.docs, rec.docs);

    let answer = call(
        &sim,
        "POST",
        SLICES,
        "application/json",
        &slice("web-lo", &["127.1.0.1"]),
    )
    .await;
    let rec = recording("07-create-loopback-422.txt");
    assert_like(&answer, &rec);
    assert_eq!(answer.docs, rec.docs);
}

#[tokio::test]
async fn expired_versions_answer_like_08_and_11() {
    let sim = three_slices().await;
    sim.compact_history();
    let answer = get(
        &sim,
        &format!("{SLICES}?watch=true&allowWatchBookmarks=true&resourceVersion=2&timeoutSeconds=3"),
    )
    .await;
    let rec = recording("08-watch-too-old-410.txt");
    assert_like(&answer, &rec);
    assert_eq!(
        answer.docs, rec.docs,
        "one ERROR event, then the stream ends"
    );

    let answer = get(
        &sim,
        &format!("{SLICES}?resourceVersion=2&resourceVersionMatch=Exact"),
    )
    .await;
    let rec = recording("11-list-exact-too-old-410.txt");
    assert_like(&answer, &rec);
    assert_eq!(answer.docs, rec.docs);
}

#[tokio::test]
async fn status_patch_answers_like_09() {
    let sim = SimCluster::start("wire", SimOptions::default())
        .await
        .unwrap();
    let rec = recording("09-patch-ingress-status.txt");
    let mut ingress = rec.docs[0].clone();
    let status = ingress.as_object_mut().unwrap().remove("status").unwrap();
    let path = "/apis/networking.k8s.io/v1/namespaces/default/ingresses";
    assert_eq!(
        call(&sim, "POST", path, "application/json", &ingress)
            .await
            .code,
        201
    );
    let answer = call(
        &sim,
        "PATCH",
        &format!("{path}/web/status"),
        "application/merge-patch+json",
        &json!({ "status": status }),
    )
    .await;
    assert_like(&answer, &rec);
    assert_eq!(shape(&answer.docs[0]), shape(&rec.docs[0]));
}

#[tokio::test]
async fn list_at_version_zero_answers_like_10() {
    let sim = three_slices().await;
    let rec = recording("10-list-rv0.txt");
    let answer = get(&sim, &format!("{SLICES}?resourceVersion=0&limit=1")).await;
    assert_like(&answer, &rec);
    let names = |d: &Value| {
        let mut n: Vec<String> = d["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
            .collect();
        n.sort();
        n
    };
    assert_eq!(
        names(&answer.docs[0]),
        ["web-a", "web-b", "web-c"],
        "resourceVersion=0 ignores limit, like the watch cache"
    );
    assert!(answer.docs[0]["metadata"].get("continue").is_none());
    let keys = |v: &Value| {
        v.as_object()
            .map(|m| {
                m.keys()
                    .filter(|k| *k != "managedFields")
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let (ours, theirs) = (&answer.docs[0]["items"][1], &rec.docs[0]["items"][0]);
    assert_eq!(keys(ours), keys(theirs), "items have no kind/apiVersion");
    assert_eq!(keys(&ours["metadata"]), keys(&theirs["metadata"]));
}

#[tokio::test]
async fn bad_input_is_a_400_status_never_a_crash() {
    let sim = SimCluster::start("wire", SimOptions::default())
        .await
        .unwrap();
    for (method, path, ct, body) in [
        ("POST", SLICES, "application/json", json!("not an object")),
        (
            "POST",
            SLICES,
            "application/json",
            json!({ "apiVersion": "v1", "kind": "EndpointSlice" }),
        ),
        (
            "GET",
            &format!("{SLICES}?limit=abc")[..],
            "application/json",
            Value::Null,
        ),
        (
            "GET",
            &format!("{SLICES}?continue=%%%")[..],
            "application/json",
            Value::Null,
        ),
        (
            "GET",
            &format!("{SLICES}?watch=1&resourceVersion=abc")[..],
            "application/json",
            Value::Null,
        ),
        ("PATCH", &format!("{SLICES}/x")[..], "text/plain", json!({})),
    ] {
        let answer = call(&sim, method, path, ct, &body).await;
        assert!(
            matches!(answer.code, 400 | 415),
            "{method} {path}: {}",
            answer.code
        );
        assert_eq!(answer.docs[0]["kind"], "Status");
    }
    // An unknown resource of a served group (an unserved group is a plain-text 404: 13).
    let answer = get(&sim, "/apis/discovery.k8s.io/v1/things").await;
    assert_eq!(
        (answer.code, answer.docs[0]["reason"].clone()),
        (404, json!("NotFound"))
    );
    assert!(
        sim.get(
            &podgate_sim::Gvr::new("", "v1", "namespaces"),
            None,
            "default"
        )
        .is_some(),
        "still serving"
    );
}

/// The request body a recording shows in its `# body:` comment.
pub(super) fn request_body(file: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/k8s-wire")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("# body: "))
        .expect("a # body: line");
    serde_json::from_str(line).unwrap()
}

pub(super) const SMP: &str = "application/strategic-merge-patch+json";
const PODS: &str = "/api/v1/namespaces/shop/pods";

/// A Pod as 18a created it, with the kubelet's status of 18b.
async fn running_pod(sim: &SimCluster, name: &str, ip: &str) {
    let mut pod = request_body("18a-create-pod-readiness-gate.txt");
    pod["metadata"]["name"] = json!(name);
    let created = call(sim, "POST", PODS, "application/json", &pod).await;
    assert_eq!(created.code, 201);
    let rec = recording("18a-create-pod-readiness-gate.txt");
    assert_eq!(created.docs[0]["status"], rec.docs[0]["status"]);
    assert!(created.docs[0]["metadata"].get("generation").is_none());
    let mut kubelet = request_body("18b-patch-pod-status-kubelet.txt");
    kubelet["status"]["podIP"] = json!(ip);
    kubelet["status"]["podIPs"] = json!([{ "ip": ip }]);
    let patched = call(
        sim,
        "PATCH",
        &format!("{PODS}/{name}/status"),
        SMP,
        &kubelet,
    )
    .await;
    assert_eq!(patched.code, 200);
    // Nothing adds a Ready condition.
    assert_eq!(
        patched.docs[0]["status"]["conditions"],
        kubelet["status"]["conditions"]
    );
}

async fn shop() -> SimCluster {
    let sim = SimCluster::start("wire", SimOptions::default())
        .await
        .unwrap();
    for (name, labels) in [
        ("shop", json!({})),
        (
            "shop-gated",
            json!({ "podgate.io/readiness-gate-inject": "enabled" }),
        ),
        (
            "other",
            json!({ "podgate.io/readiness-gate-inject": "disabled" }),
        ),
    ] {
        let ns = json!({ "metadata": { "name": name, "labels": labels } });
        let answer = call(&sim, "POST", "/api/v1/namespaces", "application/json", &ns).await;
        assert_eq!(answer.code, 201);
    }
    sim
}

#[tokio::test]
async fn pod_status_patches_answer_like_18c_and_18d() {
    let sim = shop().await;
    running_pod(&sim, "web-1", "10.244.1.5").await;
    running_pod(&sim, "web-2", "10.244.1.6").await;
    let gate = request_body("18c-patch-pod-status-merge-replaces-conditions.txt");

    let merge = call(
        &sim,
        "PATCH",
        &format!("{PODS}/web-1/status"),
        "application/merge-patch+json",
        &gate,
    )
    .await;
    let rec = recording("18c-patch-pod-status-merge-replaces-conditions.txt");
    assert_like(&merge, &rec);
    assert_eq!(
        merge.docs[0]["status"]["conditions"],
        rec.docs[0]["status"]["conditions"]
    );

    let strategic = call(&sim, "PATCH", &format!("{PODS}/web-2/status"), SMP, &gate).await;
    let rec = recording("18d-patch-pod-status-strategic-merges-conditions.txt");
    assert_like(&strategic, &rec);
    assert_eq!(
        strategic.docs[0]["status"]["conditions"],
        rec.docs[0]["status"]["conditions"]
    );
    assert_eq!(strategic.docs[0]["status"]["podIP"], "10.244.1.6");
}

#[tokio::test]
async fn pod_and_namespace_selectors_answer_like_19a_19b_19c() {
    let sim = shop().await;
    running_pod(&sim, "web-1", "10.244.1.5").await;
    running_pod(&sim, "web-2", "10.244.1.6").await;

    let answer = get(
        &sim,
        "/api/v1/pods?labelSelector=app%3Dweb&fieldSelector=status.podIP%3D10.244.1.5",
    )
    .await;
    let rec = recording("19a-list-pods-fieldselector-podip.txt");
    assert_like(&answer, &rec);
    let names: Vec<&str> = answer.docs[0]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web-1"]);
    assert!(answer.docs[0]["items"][0].get("kind").is_none());

    let answer = get(
        &sim,
        "/api/v1/pods?fieldSelector=status.hostIP%3D192.168.1.10",
    )
    .await;
    let rec = recording("19b-list-pods-fieldselector-unsupported-400.txt");
    assert_like(&answer, &rec);
    assert_eq!(answer.docs, rec.docs);

    let answer = get(
        &sim,
        "/api/v1/namespaces?labelSelector=podgate.io%2Freadiness-gate-inject%3Denabled",
    )
    .await;
    let rec = recording("19c-list-namespaces-labelselector.txt");
    assert_like(&answer, &rec);
    let items = answer.docs[0]["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(
        items[0]["metadata"]["labels"],
        rec.docs[0]["items"][0]["metadata"]["labels"]
    );
}

#[tokio::test]
async fn custom_resources_refuse_strategic_merge_patches_like_16c() {
    let sim = SimCluster::start("wire", SimOptions::default())
        .await
        .unwrap();
    sim.register(podgate_sim::ResourceKind::custom(
        "kubeovn.io",
        "v1",
        "subnets",
        "Subnet",
        false,
    ));
    let path = "/apis/kubeovn.io/v1/subnets";
    let subnet =
        json!({ "metadata": { "name": "ovn-default" }, "spec": { "cidrBlock": "10.16.0.0/16" } });
    assert_eq!(
        call(&sim, "POST", path, "application/json", &subnet)
            .await
            .code,
        201
    );
    let answer = call(
        &sim,
        "PATCH",
        &format!("{path}/ovn-default/status"),
        SMP,
        &json!({ "status": {} }),
    )
    .await;
    let rec = recording("16c-patch-httproute-status-strategic-415.txt");
    assert_like(&answer, &rec);
    assert_eq!(answer.docs, rec.docs);
}

/// A simulated cluster with the Gateway API v1.6.1 standard-channel CRDs applied.
pub(super) async fn with_gateway_api() -> SimCluster {
    let sim = SimCluster::start("wire", SimOptions::default())
        .await
        .unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gateway-api");
    for crd in [
        "gatewayclasses",
        "gateways",
        "httproutes",
        "referencegrants",
    ] {
        let yaml = std::fs::read_to_string(dir.join(format!("{crd}.yaml"))).unwrap();
        assert!(!sim.register_crds(&yaml).unwrap().is_empty(), "{crd}");
    }
    sim
}

pub(super) const ROUTES: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes";

#[tokio::test]
async fn discovery_without_the_crds_is_a_plain_text_404_like_13() {
    let sim = SimCluster::start("wire", SimOptions::default())
        .await
        .unwrap();
    let stream = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    for path in ["/apis/gateway.networking.k8s.io/v1", ROUTES] {
        let req = http::Request::get(path)
            .header("host", "sim")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 404, "{path}");
        assert_eq!(
            resp.headers()["content-type"],
            "text/plain; charset=utf-8",
            "{path}"
        );
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"404 page not found", "{path}");
    }
}

#[tokio::test]
async fn an_httproute_gets_its_crd_defaults_and_sorted_keys_like_14() {
    let sim = with_gateway_api().await;
    let body = request_body("14-create-httproute-defaults.txt");
    let answer = call(&sim, "POST", ROUTES, "application/json", &body).await;
    let rec = recording("14-create-httproute-defaults.txt");
    assert_like(&answer, &rec);
    assert_eq!(answer.docs[0]["spec"], rec.docs[0]["spec"]);
    assert_eq!(shape(&answer.docs[0]), shape(&rec.docs[0]));
    let keys: Vec<&String> = answer.docs[0].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["apiVersion", "kind", "metadata", "spec"]);
}

#[tokio::test]
async fn too_many_rules_answer_like_15b() {
    let sim = with_gateway_api().await;
    let rule = json!({ "backendRefs": [{ "name": "web-v1", "port": 8080 }] });
    let body = json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": { "name": "many", "namespace": "default" },
        "spec": { "rules": vec![rule; 17] },
    });
    let answer = call(&sim, "POST", ROUTES, "application/json", &body).await;
    let rec = recording("15b-create-httproute-too-many-rules-422.txt");
    assert_like(&answer, &rec);
    assert_eq!(answer.docs, rec.docs);
}
