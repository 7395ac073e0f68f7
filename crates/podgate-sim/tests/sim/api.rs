//! The simulated API server answers the real `kube` client like a real API server:
//! create/get/list with pagination, replace with 409 on a stale version, 404, 422 for
//! loopback EndpointSlice addresses, status patches, custom kinds, discovery.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use podgate_sim::{Gvr, ResourceKind, SimCluster, SimOptions};
use serde_json::json;

fn slice(name: &str, addrs: &[&str]) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some([("kubernetes.io/service-name".to_owned(), "web".to_owned())].into()),
            ..ObjectMeta::default()
        },
        address_type: "IPv4".into(),
        endpoints: addrs
            .iter()
            .map(|a| Endpoint {
                addresses: vec![(*a).to_owned()],
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    ..EndpointConditions::default()
                }),
                ..Endpoint::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            ..EndpointPort::default()
        }]),
    }
}

fn api_error(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error Status, got {other:?}"),
    }
}

async fn sim(opts: SimOptions) -> (SimCluster, kube::Client) {
    let sim = SimCluster::start("test", opts).await.expect("sim starts");
    let client = sim.client().expect("client");
    (sim, client)
}

#[tokio::test]
async fn create_fills_metadata_and_list_paginates_with_continue() {
    let (_sim, client) = sim(SimOptions::default()).await;
    let api: Api<EndpointSlice> = Api::namespaced(client, "default");
    for name in ["web-c", "web-a", "web-b"] {
        api.create(&PostParams::default(), &slice(name, &["10.1.0.1"]))
            .await
            .unwrap();
    }
    let a = api.get("web-a").await.unwrap();
    assert_eq!(a.metadata.uid.as_deref().map(str::len), Some(36));
    assert_eq!(a.metadata.generation, Some(1));
    assert!(a.metadata.creation_timestamp.is_some());
    assert_eq!(a.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(
        a.ports.unwrap()[0].protocol.as_deref(),
        Some("TCP"),
        "protocol defaulted like the real server"
    );

    let page1 = api.list(&ListParams::default().limit(2)).await.unwrap();
    let names: Vec<_> = page1
        .items
        .iter()
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    assert_eq!(names, ["web-a", "web-b"]);
    assert_eq!(page1.metadata.remaining_item_count, Some(1));
    let token = page1
        .metadata
        .continue_
        .clone()
        .expect("continue token on page 1");
    // A write between pages must not show up: every page is served from page 1's snapshot.
    api.create(&PostParams::default(), &slice("web-d", &["10.1.0.4"]))
        .await
        .unwrap();
    let page2 = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    let names: Vec<_> = page2
        .items
        .iter()
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    assert_eq!(names, ["web-c"]);
    assert_eq!(page2.metadata.continue_, None);
    assert_eq!(
        page2.metadata.resource_version,
        page1.metadata.resource_version
    );
    let all = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(all.items.len(), 4);
}

#[tokio::test]
async fn stale_replace_is_409_and_missing_is_404() {
    let (_sim, client) = sim(SimOptions::default()).await;
    let api: Api<EndpointSlice> = Api::namespaced(client, "default");
    let created = api
        .create(&PostParams::default(), &slice("web-a", &["10.1.0.1"]))
        .await
        .unwrap();
    let mut newer = created.clone();
    newer.endpoints = slice("web-a", &["10.1.0.9"]).endpoints;
    let replaced = api
        .replace("web-a", &PostParams::default(), &newer)
        .await
        .unwrap();
    assert_eq!(replaced.metadata.generation, Some(2));
    assert_ne!(
        replaced.metadata.resource_version,
        created.metadata.resource_version
    );

    let stale = api_error(
        api.replace("web-a", &PostParams::default(), &created)
            .await
            .unwrap_err(),
    );
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    assert!(
        stale.message.contains("the object has been modified"),
        "{}",
        stale.message
    );

    let missing = api_error(api.get("nope").await.unwrap_err());
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(
        missing.message,
        r#"endpointslices.discovery.k8s.io "nope" not found"#
    );

    let dup = api_error(
        api.create(&PostParams::default(), &slice("web-a", &["10.1.0.1"]))
            .await
            .unwrap_err(),
    );
    assert_eq!((dup.code, dup.reason.as_str()), (409, "AlreadyExists"));

    let other_ns: Api<EndpointSlice> = Api::namespaced(api.clone().into_client(), "no-such-ns");
    let no_ns = api_error(
        other_ns
            .create(&PostParams::default(), &slice("x", &["10.1.0.1"]))
            .await
            .unwrap_err(),
    );
    assert_eq!(no_ns.code, 404);

    api.delete("web-a", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_error(api.get("web-a").await.unwrap_err()).code, 404);
    assert_eq!(
        api_error(
            api.delete("web-a", &DeleteParams::default())
                .await
                .unwrap_err()
        )
        .code,
        404
    );
}

#[tokio::test]
async fn loopback_endpoints_are_422_unless_allowed() {
    let (_sim, client) = sim(SimOptions::default()).await;
    let api: Api<EndpointSlice> = Api::namespaced(client, "default");
    let err = api_error(
        api.create(&PostParams::default(), &slice("web-lo", &["127.1.0.1"]))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        err.message,
        r#"EndpointSlice.discovery.k8s.io "web-lo" is invalid: endpoints[0].addresses[0]: Invalid value: "127.1.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)"#
    );
    let err = api_error(
        api.create(&PostParams::default(), &slice("web-lo6", &["::1"]))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        err.code, 422,
        "IPv6 loopback in an IPv4 slice is refused too"
    );

    let (_lenient, client) = sim(SimOptions {
        allow_loopback_endpoints: true,
        ..SimOptions::default()
    })
    .await;
    let api: Api<EndpointSlice> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &slice("web-lo", &["127.1.0.1"]))
        .await
        .unwrap();
}

#[tokio::test]
async fn status_patch_sets_status_without_bumping_generation() {
    let (_sim, client) = sim(SimOptions::default()).await;
    let api: Api<Ingress> = Api::namespaced(client, "default");
    let ing: Ingress = serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": { "name": "web" },
        "spec": { "ingressClassName": "podgate", "rules": [{ "host": "web.example.com", "http": { "paths": [
            { "path": "/", "pathType": "Prefix", "backend": { "service": { "name": "web", "port": { "name": "http" } } } }
        ] } }] },
        "status": { "loadBalancer": { "ingress": [{ "hostname": "ignored-on-create" }] } }
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &ing).await.unwrap();
    assert!(
        created
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|l| l.ingress)
            .is_none(),
        "status is dropped on create"
    );

    let patch =
        json!({ "status": { "loadBalancer": { "ingress": [{ "hostname": "lb.example.com" }] } } });
    let patched = api
        .patch_status("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(patched.metadata.generation, Some(1));
    let lb = patched
        .status
        .and_then(|s| s.load_balancer)
        .and_then(|l| l.ingress)
        .unwrap();
    assert_eq!(lb[0].hostname.as_deref(), Some("lb.example.com"));

    // A main-resource patch cannot change status, and bumps generation when the spec changes.
    let spec_patch =
        json!({ "spec": { "ingressClassName": "other" }, "status": { "loadBalancer": {} } });
    let patched = api
        .patch("web", &PatchParams::default(), &Patch::Merge(&spec_patch))
        .await
        .unwrap();
    assert_eq!(patched.metadata.generation, Some(2));
    assert!(
        patched
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|l| l.ingress)
            .is_some()
    );

    // A merge patch carrying a stale resourceVersion is a conflict.
    let stale = json!({ "metadata": { "resourceVersion": created.metadata.resource_version }, "spec": { "ingressClassName": "x" } });
    let err = api_error(
        api.patch("web", &PatchParams::default(), &Patch::Merge(&stale))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 409);

    // No pathType: 422 like the real server.
    let bad = json!({ "spec": { "rules": [{ "http": { "paths": [{ "path": "/x", "backend": { "service": { "name": "web", "port": { "number": 80 } } } }] } }] } });
    let err = api_error(
        api.patch("web", &PatchParams::default(), &Patch::Merge(&bad))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists() {
    let (_sim, client) = sim(SimOptions::default()).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for (name, app) in [("a", "web"), ("b", "api"), ("c", "web")] {
        let cm: ConfigMap = serde_json::from_value(
            json!({ "metadata": { "name": name, "labels": { "app": app } } }),
        )
        .unwrap();
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
    let names = |l: kube::core::ObjectList<ConfigMap>| {
        l.items
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("app=web"))
                .await
                .unwrap()
        ),
        ["a", "c"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("app!=web"))
                .await
                .unwrap()
        ),
        ["b"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("metadata.name=b"))
                .await
                .unwrap()
        ),
        ["b"]
    );
    let all: Api<ConfigMap> = Api::all(client.clone());
    assert_eq!(
        all.list(&ListParams::default()).await.unwrap().items.len(),
        3
    );
    let bad = api_error(
        api.list(&ListParams::default().labels("a b"))
            .await
            .unwrap_err(),
    );
    assert_eq!(bad.code, 400);
    // Deleting a namespace deletes what is in it.
    let nss: Api<Namespace> = Api::all(client);
    nss.delete("default", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        all.list(&ListParams::default()).await.unwrap().items.len(),
        0
    );
}

#[tokio::test]
async fn custom_kinds_and_direct_access() {
    let (sim, client) = sim(SimOptions::default()).await;
    sim.register(ResourceKind::custom(
        "kubeovn.io",
        "v1",
        "subnets",
        "Subnet",
        false,
    ));
    sim.apply_json(json!({ "apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": { "name": "ovn-default" }, "spec": { "cidrBlock": "10.16.0.0/16" } }))
        .unwrap();
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kubeovn.io", "v1", "Subnet"),
        "subnets",
    );
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let subnets = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(subnets.items.len(), 1);
    assert_eq!(subnets.items[0].data["spec"]["cidrBlock"], "10.16.0.0/16");

    let gvr = Gvr::new("kubeovn.io", "v1", "subnets");
    assert!(sim.get(&gvr, None, "ovn-default").is_some());
    sim.delete(&gvr, None, "ovn-default").unwrap();
    assert!(sim.get(&gvr, None, "ovn-default").is_none());
    assert!(
        sim.apply_json(
            json!({ "apiVersion": "x.io/v1", "kind": "Nope", "metadata": { "name": "n" } })
        )
        .is_err()
    );

    // Test setup may use loopback-free typed objects directly; validation still applies.
    assert!(sim.apply(&slice("lo", &["127.0.0.1"])).is_err());
    sim.apply(&slice("ok", &["10.0.0.1"])).unwrap();
    assert_eq!(
        sim.list(&Gvr::of::<EndpointSlice>(), Some("default")).len(),
        1
    );

    let discovery = kube::Discovery::new(client).run().await.unwrap();
    assert!(discovery.has_group("discovery.k8s.io"));
    assert!(discovery.has_group("kubeovn.io"));
}

#[test]
fn the_handle_can_be_shared_between_tasks() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<SimCluster>();
    shareable::<podgate_sim::SimError>();
}

#[tokio::test]
async fn finalizers_hold_a_deletion_until_removed() {
    let (sim, client) = sim(SimOptions::default()).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let cm: ConfigMap = serde_json::from_value(
        json!({ "metadata": { "name": "held", "finalizers": ["podgate.io/cleanup"] } }),
    )
    .unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap();
    let marked = api
        .delete("held", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .expect("the object comes back");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert!(
        api.get("held")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some(),
        "still there while finalized"
    );
    let release = json!({ "metadata": { "finalizers": null } });
    api.patch("held", &PatchParams::default(), &Patch::Merge(&release))
        .await
        .unwrap();
    assert_eq!(api_error(api.get("held").await.unwrap_err()).code, 404);
    assert!(
        sim.get(&Gvr::of::<ConfigMap>(), Some("default"), "held")
            .is_none()
    );
}
