//! `SimCluster`: the handle on one simulated Kubernetes cluster (a test double).
//!
//! Owns the life of one simulated API server: start on loopback, direct object access
//! for test setup (same validation as over HTTP, no HTTP), clients and kubeconfigs
//! pointed at it, and the fault switches. It never connects anywhere outside
//! 127.0.0.0/8.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;

use super::resources::{Gvr, ResourceKind};
use super::server::Server;
use super::state::Shared;
use super::status::ApiError;
use super::store::key;
use super::validate::Leniency;
use super::write::{self, Part};
use super::{SimError, SimOptions, SimStats, delete, kubeconfig};

/// One simulated cluster: its API server on `127.0.0.1` and its objects.
///
/// Objects live as long as the handle, across `stop`/`restart`. Dropping the handle
/// stops the server.
pub struct SimCluster {
    name: String,
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::sync::Mutex<Option<Server>>,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, SimError> {
    if !addr.ip().is_loopback() {
        return Err(SimError::NotLoopback(addr));
    }
    // Right after a stop the port may linger for a moment: retry briefly.
    let mut last = None;
    for _ in 0..50 {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && addr.port() != 0 => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(SimError::Bind { addr, source: e }),
        }
    }
    Err(SimError::Bind {
        addr,
        source: last.unwrap_or_else(|| std::io::ErrorKind::AddrInUse.into()),
    })
}

impl SimCluster {
    /// Starts a simulated cluster named `name` (used in kubeconfigs) with the
    /// namespaces a fresh cluster has: `default`, `kube-system`, `kube-public`,
    /// `kube-node-lease`.
    pub async fn start(name: &str, opts: SimOptions) -> Result<Self, SimError> {
        let lenient = Leniency {
            allow_loopback_endpoints: opts.allow_loopback_endpoints,
        };
        let mut shared = Shared::new(opts.history, lenient, opts.bookmark_interval);
        shared.bearer_token = opts.bearer_token.clone();
        let shared = Arc::new(shared);
        let listener = bind(
            opts.addr
                .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
        )
        .await?;
        let addr = listener.local_addr().map_err(|e| SimError::Bind {
            addr: opts
                .addr
                .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
            source: e,
        })?;
        let sim = Self {
            name: name.to_owned(),
            addr,
            shared: shared.clone(),
            server: tokio::sync::Mutex::new(Some(Server::spawn(listener, shared, addr))),
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            sim.apply_json(serde_json::json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": ns } }))?;
        }
        Ok(sim)
    }

    /// The name given at start.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address the API server listens on (kept across `restart`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A `kube::Client` for this cluster, default namespace `default`.
    /// Needs a tokio runtime.
    pub fn client(&self) -> Result<kube::Client, SimError> {
        let uri: http::Uri = self
            .url()
            .parse()
            .map_err(|e: http::uri::InvalidUri| SimError::Kubeconfig(e.to_string()))?;
        Ok(kube::Client::try_from(kube::Config::new(uri))?)
    }

    /// The kubeconfig that points at this cluster (context and cluster named after it).
    pub fn kubeconfig(&self) -> Result<kube::config::Kubeconfig, SimError> {
        kube::config::Kubeconfig::from_yaml(&self.kubeconfig_yaml())
            .map_err(|e| SimError::Kubeconfig(e.to_string()))
    }

    /// The kubeconfig as YAML text.
    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig::yaml(&self.name, self.addr)
    }

    /// Writes the kubeconfig to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), SimError> {
        std::fs::write(path, self.kubeconfig_yaml()).map_err(|source| SimError::Write {
            path: path.to_owned(),
            source,
        })
    }

    /// Serves a further kind, e.g. `ResourceKind::custom("kubeovn.io", "v1", "subnets", "Subnet", false)`.
    pub fn register(&self, kind: ResourceKind) {
        self.shared.with_registry(|r| r.register(kind));
    }

    fn kind(&self, gvr: &Gvr) -> Result<Arc<ResourceKind>, SimError> {
        self.shared
            .registry()
            .get(gvr)
            .ok_or_else(|| SimError::UnknownKind(gvr.to_string()))
    }

    /// Registers the kinds a CustomResourceDefinition's YAML (one document or several)
    /// defines, with their schemas, as applying it to a real server would; returns them.
    pub fn register_crds(&self, yaml: &str) -> Result<Vec<Gvr>, SimError> {
        let mut out = Vec::new();
        for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
            let value: Value = serde::Deserialize::deserialize(doc)
                .map_err(|e| SimError::Api(ApiError::bad_request(format!("CRD YAML: {e}"))))?;
            let kinds = ResourceKind::from_crd(&value).ok_or_else(|| {
                SimError::Api(ApiError::bad_request("not a CustomResourceDefinition"))
            })?;
            for k in kinds {
                if let Some(schema) = &k.schema {
                    // Compiles its CEL rules now, reporting those the sim skips.
                    super::cel::census(schema, &mut super::cel::Census::default());
                }
                out.push(k.gvr.clone());
                self.register(k);
            }
        }
        Ok(out)
    }

    /// Creates the object, or replaces it unconditionally if it exists (status
    /// included, when given). Validated like an HTTP write; watches see it. The kind
    /// comes from `apiVersion` and `kind`. Returns the stored object.
    pub fn apply_json(&self, obj: Value) -> Result<Value, SimError> {
        let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let k = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let kind = self
            .shared
            .registry()
            .by_kind(av, k)
            .ok_or_else(|| SimError::UnknownKind(format!("{av} {k}")))?;
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let ns = kind.namespaced.then(|| {
            obj.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_owned()
        });
        let status = obj.get("status").cloned();
        let mut obj = obj;
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        let exists = !name.is_empty()
            && self
                .shared
                .store()
                .get(&kind.gvr, &key(ns.as_deref(), &name))
                .is_some();
        let mut stored = if exists {
            write::replace(&self.shared, &kind, ns.as_deref(), &name, obj, Part::Main)?
        } else {
            write::create(&self.shared, &kind, ns.as_deref(), obj)?
        };
        if let Some(status) = status.filter(|_| kind.status_subresource) {
            let name = stored
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let body = serde_json::json!({ "status": status });
            stored = write::replace(
                &self.shared,
                &kind,
                ns.as_deref(),
                &name,
                body,
                Part::Status,
            )?;
        }
        Ok((*stored).clone())
    }

    /// `apply_json` for typed objects, e.g. k8s-openapi's (which carry apiVersion/kind).
    pub fn apply<T: serde::Serialize>(&self, obj: &T) -> Result<Value, SimError> {
        let value = serde_json::to_value(obj)
            .map_err(|e| SimError::Api(ApiError::bad_request(e.to_string())))?;
        self.apply_json(value)
    }

    /// The stored object, if any. `ns` is ignored for cluster-scoped kinds.
    pub fn get(&self, gvr: &Gvr, ns: Option<&str>, name: &str) -> Option<Value> {
        let kind = self.kind(gvr).ok()?;
        let ns = if kind.namespaced { ns } else { None };
        self.shared
            .store()
            .get(gvr, &key(ns, name))
            .map(|o| (*o).clone())
    }

    /// The stored objects of one kind, in one namespace or all (`None`), in key order.
    pub fn list(&self, gvr: &Gvr, ns: Option<&str>) -> Vec<Value> {
        // Copied after the store's lock is released: a test looking at thousands of
        // objects must not stall the API server it is measuring.
        self.shared_objects(gvr, ns)
            .into_iter()
            .map(|o| (*o).clone())
            .collect()
    }

    /// How many stored objects of one kind, in one namespace or all (`None`), satisfy
    /// `pred`; copies nothing.
    pub fn count(&self, gvr: &Gvr, ns: Option<&str>, pred: impl Fn(&Value) -> bool) -> usize {
        self.shared_objects(gvr, ns)
            .iter()
            .filter(|o| pred(o))
            .count()
    }

    fn shared_objects(&self, gvr: &Gvr, ns: Option<&str>) -> Vec<std::sync::Arc<Value>> {
        let prefix = ns.map(|n| format!("{n}/")).unwrap_or_default();
        let store = self.shared.store();
        let rv = store.current_rv();
        store
            .snapshot(gvr, &prefix, rv)
            .map(|s| s.into_values().collect())
            .unwrap_or_default()
    }

    /// Deletes an object (watches see DELETED). Returns its last state.
    pub fn delete(&self, gvr: &Gvr, ns: Option<&str>, name: &str) -> Result<Value, SimError> {
        let kind = self.kind(gvr)?;
        let ns = if kind.namespaced { ns } else { None };
        Ok((*delete::delete(&self.shared, &kind, ns, name, &Value::Null)?).clone())
    }

    /// What clients have asked so far: requests, lists, watches started and open.
    pub fn stats(&self) -> SimStats {
        self.shared.counters.snapshot()
    }

    /// The cluster's current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().current_rv()
    }

    /// Fault: ends every open watch abruptly (connection error mid-stream). Clients
    /// reconnect and resume from their last version.
    pub fn drop_watches(&self) {
        self.shared.control.send_modify(|c| c.drops += 1);
    }

    /// Fault: forgets every version older than the current one (like an etcd
    /// compaction), and ends every open watch with an ERROR 410 Expired event.
    /// Watches and exact lists at older versions, and old continue tokens, get 410:
    /// clients relist.
    pub fn expire_history(&self) {
        self.shared.store().compact();
        self.shared.control.send_modify(|c| c.expiries += 1);
    }

    /// Like `expire_history` but leaves open watches alone: only new requests for old
    /// versions get 410.
    pub fn compact_history(&self) {
        self.shared.store().compact();
    }

    /// Fault: answers every new request with a `Status` of this HTTP code (e.g. 503)
    /// until `clear_failure`. Open watches go on. Note that kube's default retry
    /// policy retries some 5xx on its own.
    pub fn fail_with(&self, code: u16) {
        self.shared.faults.fail_with(code);
    }

    /// Fault: like `fail_with`, but only for `period` (tokio time), e.g. an API server
    /// answering 503 for ten seconds.
    pub fn fail_for(&self, code: u16, period: Duration) {
        self.shared.faults.fail_for(code, period);
    }

    /// Ends `fail_with` / `fail_for`.
    pub fn clear_failure(&self) {
        self.shared.faults.clear_failure();
    }

    /// Fault: delays every new request by `latency` (tokio time; zero to end it).
    pub fn set_latency(&self, latency: Duration) {
        self.shared.faults.set_latency(latency);
    }

    /// Fault: stops the API server: the listener and every connection close; new
    /// connections are refused. Objects are kept. No-op when already stopped.
    pub async fn stop(&self) {
        if let Some(server) = self.server.lock().await.take() {
            server.shutdown().await;
        }
    }

    /// Starts a stopped API server again on the same address. No-op when running.
    pub async fn restart(&self) -> Result<(), SimError> {
        let mut slot = self.server.lock().await;
        if slot.is_none() {
            let listener = bind(self.addr).await?;
            *slot = Some(Server::spawn(listener, self.shared.clone(), self.addr));
        }
        Ok(())
    }
}
