//! The Gateway API watchers of one cluster: GatewayClass, Gateway and HTTPRoute
//! (`gateway.networking.k8s.io/v1`) and ReferenceGrant (`v1beta1`), started once
//! discovery shows their CRDs. A cluster without them is fine and says so
//! (`gateway_api: absent` in `/v1/clusters`); discovery is asked again every
//! `RECHECK`, so CRDs installed later are picked up without a restart.
//!
//! The watchers have their own status cell: a Gateway API watch that fails (its CRD
//! was deleted) never marks the cluster stale, and the cluster's sync never waits for
//! kinds that may not exist.

use std::borrow::Cow;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{ClusterResourceScope, NamespaceResourceScope};
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;

use super::status::StatusCell;
use crate::hub::Desired;
use podgate_core::gateway::{Gateway, GatewayClass, HttpRoute, ReferenceGrant};
use podgate_core::index::{Kind, Object};
use podgate_core::model::ClusterName;

/// How often discovery is asked again while the CRDs are absent.
const RECHECK: Duration = Duration::from_secs(30);

pub(crate) const GROUP: &str = "gateway.networking.k8s.io";

/// One Gateway API kind as kube's client sees it.
pub(crate) trait GatewayKind:
    Clone + Debug + DeserializeOwned + Send + Sync + 'static
{
    const KIND: &'static str;
    const VERSION: &'static str;
    const PLURAL: &'static str;
    type Scope;
    fn meta(&self) -> &ObjectMeta;
    fn meta_mut(&mut self) -> &mut ObjectMeta;
    fn into_object(self) -> Object;
}

macro_rules! gateway_kind {
    ($ty:ty, $kind:literal, $version:literal, $plural:literal, $scope:ty) => {
        impl GatewayKind for $ty {
            const KIND: &'static str = $kind;
            const VERSION: &'static str = $version;
            const PLURAL: &'static str = $plural;
            type Scope = $scope;
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
            fn into_object(self) -> Object {
                self.into()
            }
        }
    };
}

gateway_kind!(
    GatewayClass,
    "GatewayClass",
    "v1",
    "gatewayclasses",
    ClusterResourceScope
);
gateway_kind!(Gateway, "Gateway", "v1", "gateways", NamespaceResourceScope);
gateway_kind!(
    HttpRoute,
    "HTTPRoute",
    "v1",
    "httproutes",
    NamespaceResourceScope
);
gateway_kind!(
    ReferenceGrant,
    "ReferenceGrant",
    "v1beta1",
    "referencegrants",
    NamespaceResourceScope
);

/// A Gateway API object, typed by podgate-core, as a kube `Resource`.
#[derive(Clone, Debug, Deserialize)]
#[serde(transparent)]
pub(crate) struct Watched<T>(pub(crate) T);

impl<T: GatewayKind> Resource for Watched<T> {
    type DynamicType = ();
    type Scope = T::Scope;

    fn kind((): &()) -> Cow<'_, str> {
        Cow::Borrowed(T::KIND)
    }
    fn group((): &()) -> Cow<'_, str> {
        Cow::Borrowed(GROUP)
    }
    fn version((): &()) -> Cow<'_, str> {
        Cow::Borrowed(T::VERSION)
    }
    fn plural((): &()) -> Cow<'_, str> {
        Cow::Borrowed(T::PLURAL)
    }
    fn meta(&self) -> &ObjectMeta {
        self.0.meta()
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        self.0.meta_mut()
    }
}

impl<T: GatewayKind> From<Watched<T>> for Object {
    fn from(w: Watched<T>) -> Self {
        w.0.into_object()
    }
}

/// Which Gateway API kinds a cluster serves, from discovery. `None`: discovery
/// could not be asked (the API server is away), ask again.
async fn served(client: &Client) -> Option<Vec<&'static str>> {
    let mut found = Vec::new();
    for version in ["v1", "v1beta1"] {
        match client
            .list_api_group_resources(&format!("{GROUP}/{version}"))
            .await
        {
            Ok(list) => found.extend(
                [
                    "gatewayclasses",
                    "gateways",
                    "httproutes",
                    "referencegrants",
                ]
                .into_iter()
                .filter(|p| {
                    list.resources.iter().any(|r| r.name == *p)
                        && (*p == "referencegrants") == (version == "v1beta1")
                }),
            ),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                tracing::debug!(error = %crate::logging::causes(&e), "Gateway API discovery failed");
                return None;
            }
        }
    }
    Some(found)
}

/// What the Gateway API watchers of one cluster work with.
pub(crate) struct Context {
    pub(crate) cluster: ClusterName,
    pub(crate) client: Client,
    pub(crate) desired: Arc<Desired>,
    /// The cluster's status (for `gateway_api`).
    pub(crate) status: StatusCell,
    /// The watchers' own cell.
    pub(crate) cell: StatusCell,
}

/// Waits for the CRDs (see the module documentation), then watches every kind found
/// and, with a `term`, writes status while it is held.
pub(crate) async fn run(
    ctx: Context,
    controller_name: String,
    term: Option<(
        tokio::sync::watch::Receiver<Option<u64>>,
        Option<super::gateway_status::RoutesLeftOut>,
    )>,
) {
    let Context {
        cluster,
        client,
        desired,
        status,
        cell,
    } = ctx;
    let kinds = loop {
        match served(&client).await {
            Some(kinds) if kinds.contains(&"httproutes") && kinds.contains(&"gateways") => {
                break kinds;
            }
            Some(_) => {
                if status.set_gateway_api("absent") {
                    tracing::info!(%cluster, "Gateway API CRDs are not installed: HTTPRoutes are not watched (checked again every 30 s)");
                }
                tokio::time::sleep(RECHECK).await;
            }
            None => tokio::time::sleep(Duration::from_secs(5)).await,
        }
    };
    status.set_gateway_api("watched");
    tracing::info!(%cluster, kinds = ?kinds, "watching the Gateway API");
    let mut tasks = JoinSet::new();
    if let Some((term, left_out)) = term {
        tasks.spawn(super::gateway_status::run(
            super::gateway_status::Writer {
                cluster: cluster.clone(),
                client: client.clone(),
                desired: desired.clone(),
                controller_name,
                left_out,
            },
            term,
        ));
    }
    let ctx = (cluster, desired, cell);
    spawn::<GatewayClass>(&mut tasks, &client, &ctx, Kind::GatewayClass, &kinds);
    spawn::<Gateway>(&mut tasks, &client, &ctx, Kind::Gateway, &kinds);
    spawn::<HttpRoute>(&mut tasks, &client, &ctx, Kind::HTTPRoute, &kinds);
    spawn::<ReferenceGrant>(&mut tasks, &client, &ctx, Kind::ReferenceGrant, &kinds);
    // Namespace labels, for listeners that admit routes by a namespace `Selector`.
    let (cluster, desired, cell) = ctx;
    tasks.spawn(super::watch::run(
        Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone()),
        watcher::Config::default(),
        Kind::Namespace,
        cluster,
        desired,
        cell,
        None,
        None,
    ));
    while tasks.join_next().await.is_some() {}
}

fn spawn<T>(
    tasks: &mut JoinSet<()>,
    client: &Client,
    (cluster, desired, cell): &(ClusterName, Arc<Desired>, StatusCell),
    kind: Kind,
    served: &[&str],
) where
    T: GatewayKind,
    Watched<T>: Resource<DynamicType = ()>,
{
    if !served.contains(&T::PLURAL) {
        return;
    }
    tasks.spawn(super::watch::run(
        Api::<Watched<T>>::all(client.clone()),
        watcher::Config::default(),
        kind,
        cluster.clone(),
        desired.clone(),
        cell.clone(),
        None,
        None,
    ));
}
