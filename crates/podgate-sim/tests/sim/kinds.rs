//! The other kinds podgate uses work through the real `kube` client (Lease, Events,
//! IngressClass, Secret, Node), as do server-side-apply-style patches,
//! `delete_collection`, kubeconfig files and the latency fault.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Node, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::IngressClass;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use podgate_sim::{SimCluster, SimOptions};
use serde_json::json;

async fn sim() -> (SimCluster, kube::Client) {
    let sim = SimCluster::start("kinds", SimOptions::default())
        .await
        .unwrap();
    let client = sim.client().unwrap();
    (sim, client)
}

fn code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn leases_support_optimistic_leader_election() {
    let (_sim, client) = sim().await;
    let api: Api<Lease> = Api::namespaced(client, "default");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": { "name": "podgate-leader" },
        "spec": { "holderIdentity": "replica-1", "leaseDurationSeconds": 15 }
    }))
    .unwrap();
    let held = api.create(&PostParams::default(), &lease).await.unwrap();
    assert_eq!(
        code(
            api.create(&PostParams::default(), &lease)
                .await
                .unwrap_err()
        ),
        409
    );

    // Two replicas race to take over from the same version: exactly one wins.
    let mut take = held.clone();
    take.spec.as_mut().unwrap().holder_identity = Some("replica-2".into());
    api.replace("podgate-leader", &PostParams::default(), &take)
        .await
        .unwrap();
    let mut late = held.clone();
    late.spec.as_mut().unwrap().holder_identity = Some("replica-3".into());
    assert_eq!(
        code(
            api.replace("podgate-leader", &PostParams::default(), &late)
                .await
                .unwrap_err()
        ),
        409
    );
    let now = api.get("podgate-leader").await.unwrap();
    assert_eq!(
        now.spec.unwrap().holder_identity.as_deref(),
        Some("replica-2")
    );
}

#[tokio::test]
async fn apply_patches_create_then_merge() {
    let (_sim, client) = sim().await;
    let api: Api<IngressClass> = Api::all(client);
    let pp = PatchParams::apply("podgate").force();
    let class = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": { "name": "podgate", "annotations": { "ingressclass.kubernetes.io/is-default-class": "true" } },
        "spec": { "controller": "podgate.io/ingress-controller" }
    });
    let created = api
        .patch("podgate", &pp, &Patch::Apply(&class))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let again = api
        .patch("podgate", &pp, &Patch::Apply(&class))
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version, created.metadata.resource_version,
        "no change, no new version"
    );
    let json_patch: json_patch::Patch = serde_json::from_value(json!([
        { "op": "replace", "path": "/spec/controller", "value": "example.com/other" }
    ]))
    .unwrap();
    let patched = api
        .patch(
            "podgate",
            &PatchParams::default(),
            &Patch::<()>::Json(json_patch),
        )
        .await
        .unwrap();
    assert_eq!(
        patched.spec.unwrap().controller.as_deref(),
        Some("example.com/other")
    );
    assert_eq!(patched.metadata.generation, Some(2));
}

#[tokio::test]
async fn events_secrets_nodes_and_delete_collection() {
    let (_sim, client) = sim().await;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let ev: Event = serde_json::from_value(json!({
        "metadata": { "generateName": "web." },
        "eventTime": "2026-11-25T19:52:20.000000Z",
        "reportingController": "podgate.io/ingress-controller", "reportingInstance": "podgate-1",
        "action": "Sync", "reason": "Conflict", "type": "Warning", "note": "path / is claimed by default/older",
        "regarding": { "kind": "Ingress", "namespace": "default", "name": "web", "apiVersion": "networking.k8s.io/v1" }
    }))
    .unwrap();
    let created = events.create(&PostParams::default(), &ev).await.unwrap();
    assert!(
        created.metadata.name.unwrap().starts_with("web."),
        "generateName filled in"
    );
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let cev: CoreEvent = serde_json::from_value(json!({
        "metadata": { "name": "web.1" }, "involvedObject": { "kind": "Ingress", "name": "web" }, "reason": "Sync"
    }))
    .unwrap();
    core.create(&PostParams::default(), &cev).await.unwrap();

    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    for (name, app) in [("tls-a", "web"), ("tls-b", "web"), ("keep", "db")] {
        let s: Secret = serde_json::from_value(json!({
            "metadata": { "name": name, "labels": { "app": app } },
            "type": "kubernetes.io/tls", "data": { "tls.crt": "", "tls.key": "" }
        }))
        .unwrap();
        secrets.create(&PostParams::default(), &s).await.unwrap();
    }
    let deleted = secrets
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("app=web"),
        )
        .await
        .unwrap();
    let deleted = deleted
        .left()
        .expect("the deleted objects come back as a list");
    assert_eq!(deleted.items.len(), 2);
    let left: Vec<_> = secrets
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    assert_eq!(left, ["keep"]);

    let nodes: Api<Node> = Api::all(client);
    let node: Node = serde_json::from_value(json!({ "metadata": { "name": "node-1" }, "status": { "addresses": [{ "type": "InternalIP", "address": "10.0.0.1" }] } })).unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    assert_eq!(
        nodes
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

#[tokio::test]
async fn a_written_kubeconfig_reaches_the_cluster() {
    let (sim, _) = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idc.kubeconfig");
    sim.write_kubeconfig(&path).unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(config.default_namespace, "default");
    let client = kube::Client::try_from(config).unwrap();
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "26")
    );
    assert_eq!(
        sim.kubeconfig().unwrap().current_context.as_deref(),
        Some("kinds")
    );
}

#[tokio::test]
async fn latency_delays_every_request_until_cleared() {
    let (sim, client) = sim().await;
    let api: Api<Secret> = Api::namespaced(client, "default");
    sim.set_latency(Duration::from_secs(1));
    let started = std::time::Instant::now();
    api.list(&ListParams::default()).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    sim.set_latency(Duration::ZERO);
    let started = std::time::Instant::now();
    api.list(&ListParams::default()).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn services_get_a_cluster_ip_and_node_ports_that_updates_keep() {
    let (_sim, client) = sim().await;
    let api: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client, "default");
    let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": { "type": "NodePort", "selector": { "app": "web" }, "ports": [{ "name": "http", "port": 80 }] }
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &svc).await.unwrap();
    let spec = created.spec.clone().unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.1"));
    let port = &spec.ports.unwrap()[0];
    assert_eq!(
        (port.node_port, port.protocol.as_deref()),
        (Some(30000), Some("TCP"))
    );
    assert_eq!(
        port.target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(80))
    );

    let mut update = svc.clone();
    update.metadata.resource_version = created.metadata.resource_version.clone();
    update.metadata.labels = Some([("tier".to_owned(), "front".to_owned())].into());
    let replaced = api
        .replace("web", &PostParams::default(), &update)
        .await
        .unwrap();
    let spec = replaced.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.1"));
    assert_eq!(spec.ports.unwrap()[0].node_port, Some(30000));
}

#[tokio::test]
async fn dry_runs_are_refused_rather_than_persisted() {
    let (sim, client) = sim().await;
    let api: Api<Secret> = Api::namespaced(client, "default");
    let s: Secret = serde_json::from_value(json!({ "metadata": { "name": "dry" } })).unwrap();
    let pp = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    assert_eq!(code(api.create(&pp, &s).await.unwrap_err()), 400);
    assert!(
        sim.get(&podgate_sim::Gvr::of::<Secret>(), Some("default"), "dry")
            .is_none()
    );
}
