//! The weights ConfigMap in the home cluster: read it, and set or remove data keys
//! (merge-patch, or create when missing), optionally only if it is still at a given
//! `resourceVersion`. Owns the Kubernetes calls; never touches the Index: what is
//! written reaches the Index through the watcher, the same way for every replica.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("ConfigMap {0} changed meanwhile")]
    Conflict(String),
    #[error(
        "cluster {cluster}: namespace {namespace} does not exist; create it, podgate keeps its weights there"
    )]
    NoNamespace { cluster: String, namespace: String },
    #[error("cluster {cluster}: ConfigMap {object}: {source}")]
    Api {
        cluster: String,
        object: String,
        source: kube::Error,
    },
}

/// Where the ConfigMap lives, with a client for it.
#[derive(Clone)]
pub(crate) struct Store {
    api: Api<ConfigMap>,
    pub(crate) cluster: String,
    pub(crate) namespace: String,
    pub(crate) name: String,
}

/// Data keys to set (`Some`) or remove (`None`).
pub(crate) type Edits = BTreeMap<String, Option<String>>;

fn status_of(e: &kube::Error) -> Option<&kube::core::Status> {
    match e {
        kube::Error::Api(s) => Some(s),
        _ => None,
    }
}

impl Store {
    pub(crate) fn new(client: kube::Client, cluster: &str, namespace: &str, name: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            cluster: cluster.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    pub(crate) fn api(&self) -> Api<ConfigMap> {
        self.api.clone()
    }

    /// `namespace/name`, for messages.
    pub(crate) fn object(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn api_error(&self, source: kube::Error) -> StoreError {
        StoreError::Api {
            cluster: self.cluster.clone(),
            object: self.object(),
            source,
        }
    }

    /// The ConfigMap, or `None` when it does not exist.
    pub(crate) async fn get(&self) -> Result<Option<ConfigMap>, StoreError> {
        self.api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.api_error(e))
    }

    /// Applies `edits`; with `precondition`, only if the ConfigMap is still at that
    /// `resourceVersion` (else [`StoreError::Conflict`]). Returns the new
    /// `resourceVersion`.
    pub(crate) async fn write(
        &self,
        edits: &Edits,
        precondition: Option<&str>,
    ) -> Result<String, StoreError> {
        let mut body = json!({ "data": edits });
        if let Some(rv) = precondition {
            body["metadata"] = json!({ "resourceVersion": rv });
        }
        // Twice at most: a replica may create the ConfigMap between our patch and create.
        for _ in 0..2 {
            let patched = self
                .api
                .patch(&self.name, &PatchParams::default(), &Patch::Merge(&body))
                .await;
            match patched {
                Ok(cm) => return Ok(cm.metadata.resource_version.unwrap_or_default()),
                Err(e) if status_of(&e).is_some_and(kube::core::Status::is_conflict) => {
                    return Err(StoreError::Conflict(self.object()));
                }
                Err(e) if status_of(&e).is_some_and(kube::core::Status::is_not_found) => {
                    if precondition.is_some() {
                        return Err(StoreError::Conflict(self.object()));
                    }
                }
                Err(e) => return Err(self.api_error(e)),
            }
            match self.create(edits).await {
                Ok(rv) => return Ok(rv),
                Err(e) if status_of(&e).is_some_and(kube::core::Status::is_already_exists) => {}
                Err(e) if status_of(&e).is_some_and(kube::core::Status::is_not_found) => {
                    return Err(StoreError::NoNamespace {
                        cluster: self.cluster.clone(),
                        namespace: self.namespace.clone(),
                    });
                }
                Err(e) => return Err(self.api_error(e)),
            }
        }
        Err(StoreError::Conflict(self.object()))
    }

    async fn create(&self, edits: &Edits) -> Result<String, kube::Error> {
        let data: BTreeMap<String, String> = edits
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
            .collect();
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(
                    [(
                        "app.kubernetes.io/managed-by".to_owned(),
                        "podgate".to_owned(),
                    )]
                    .into_iter()
                    .collect(),
                ),
                ..ObjectMeta::default()
            },
            data: Some(data),
            ..ConfigMap::default()
        };
        let created = self.api.create(&PostParams::default(), &cm).await?;
        Ok(created.metadata.resource_version.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn edits(pairs: &[(&str, Option<&str>)]) -> Edits {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
            .collect()
    }

    /// Against the simulated API server: create when missing, merge-patch after,
    /// `Conflict` on a stale precondition, a clear error without the namespace.
    #[tokio::test]
    async fn create_patch_and_preconditions() {
        let sim = podgate_sim::SimCluster::start("idc", podgate_sim::SimOptions::default())
            .await
            .unwrap();
        let store = Store::new(sim.client().unwrap(), "idc", "podgate-system", "w");
        let err = store
            .write(&edits(&[("global", Some("idc=1"))]), None)
            .await;
        assert!(
            matches!(err, Err(StoreError::NoNamespace { .. })),
            "{err:?}"
        );
        sim.apply_json(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "podgate-system"}}))
            .unwrap();
        assert!(store.get().await.unwrap().is_none());

        let first = store
            .write(
                &edits(&[("global", Some("idc=1")), ("app.a.b", Some("tke=1"))]),
                None,
            )
            .await
            .unwrap();
        let second = store
            .write(&edits(&[("app.a.b", None)]), Some(&first))
            .await
            .unwrap();
        let stale = store
            .write(&edits(&[("global", Some("idc=2"))]), Some(&first))
            .await;
        assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
        let cm = store.get().await.unwrap().unwrap();
        assert_eq!(
            cm.metadata.resource_version.as_deref(),
            Some(second.as_str())
        );
        let data = cm.data.unwrap();
        assert_eq!(data.len(), 1, "{data:?}");
        assert_eq!(data["global"], "idc=1");
    }

    /// A JSON merge patch removes a key given as `null`.
    #[test]
    fn removals_are_null_in_the_patch() {
        let edits: Edits = [
            ("a".to_owned(), None),
            ("b".to_owned(), Some("x".to_owned())),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            json!({ "data": edits }),
            json!({"data": {"a": Value::Null, "b": "x"}})
        );
    }
}
