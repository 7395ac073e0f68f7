//! The kinds that the simulated Kubernetes API server (a test double) serves.
//!
//! Owns the mapping group/version/resource ⇄ kind and the per-kind behaviour the real
//! API server has (namespaced or cluster-scoped, `status` subresource, whether
//! `metadata.generation` is maintained). It never stores objects; see `store`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A resource type addressed the way the API server's URLs address it:
/// group (empty for the core group), version and plural resource name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gvr {
    /// API group, `""` for the core group.
    pub group: String,
    /// API version within the group, e.g. `v1`.
    pub version: String,
    /// Plural lower-case resource name, e.g. `endpointslices`.
    pub resource: String,
}

impl Gvr {
    /// A resource type from its three parts.
    pub fn new(group: &str, version: &str, resource: &str) -> Self {
        Self {
            group: group.to_owned(),
            version: version.to_owned(),
            resource: resource.to_owned(),
        }
    }

    /// The resource type of a `kube`/k8s-openapi type, e.g. `Gvr::of::<EndpointSlice>()`.
    pub fn of<K: kube::Resource<DynamicType = ()>>() -> Self {
        Self::new(&K::group(&()), &K::version(&()), &K::plural(&()))
    }

    /// `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `endpointslices.discovery.k8s.io`, or just `services` for the core group, as
    /// the real server writes it in Status messages.
    pub(crate) fn qualified_resource(&self) -> String {
        qualify(&self.resource, &self.group)
    }
}

impl fmt::Display for Gvr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.api_version(), self.resource)
    }
}

/// `name.group`, or `name` for the core group.
pub(crate) fn qualify(name: &str, group: &str) -> String {
    if group.is_empty() {
        name.to_owned()
    } else {
        format!("{name}.{group}")
    }
}

/// One kind the simulated server serves, with the behaviour the real server has for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceKind {
    /// Where it lives in the URL space.
    pub gvr: Gvr,
    /// `kind` of one object, e.g. `EndpointSlice`.
    pub kind: String,
    /// Namespaced (true) or cluster-scoped (false).
    pub namespaced: bool,
    /// Has a `/status` subresource: writes to the main resource keep the old status,
    /// writes to `/status` change only the status.
    pub status_subresource: bool,
    /// The server maintains `metadata.generation` (1 on create, +1 when anything
    /// outside `metadata` and `status` changes).
    pub generation: bool,
    /// Built in or defined by a CRD: only built-in kinds accept strategic merge patches.
    pub origin: KindOrigin,
    /// The CRD's OpenAPI v3 schema of this version, when registered from a CRD: its
    /// defaults are filled in, its `maxItems` enforced (`schema.rs`) and its CEL rules
    /// evaluated (`cel.rs`).
    pub schema: Option<Arc<serde_json::Value>>,
}

/// Where a kind comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KindOrigin {
    /// A kind of Kubernetes itself.
    BuiltIn,
    /// A custom resource (served as a CRD would be).
    Custom,
}

impl ResourceKind {
    /// A custom kind, served like a CRD: generation maintained, with a `status`
    /// subresource. E.g. `ResourceKind::custom("kubeovn.io", "v1", "subnets", "Subnet", false)`.
    pub fn custom(
        group: &str,
        version: &str,
        resource: &str,
        kind: &str,
        namespaced: bool,
    ) -> Self {
        Self {
            gvr: Gvr::new(group, version, resource),
            kind: kind.to_owned(),
            namespaced,
            status_subresource: true,
            generation: true,
            origin: KindOrigin::Custom,
            schema: None,
        }
    }

    fn builtin(
        gvr: (&str, &str, &str),
        kind: &str,
        namespaced: bool,
        status: bool,
        generation: bool,
    ) -> Self {
        Self {
            gvr: Gvr::new(gvr.0, gvr.1, gvr.2),
            kind: kind.to_owned(),
            namespaced,
            status_subresource: status,
            generation,
            origin: KindOrigin::BuiltIn,
            schema: None,
        }
    }

    /// The kinds a CustomResourceDefinition (as JSON) serves: one per served version,
    /// with that version's schema. `None` for what is not a v1 CRD.
    pub fn from_crd(crd: &serde_json::Value) -> Option<Vec<Self>> {
        if crd.get("kind")?.as_str()? != "CustomResourceDefinition" {
            return None;
        }
        let spec = crd.get("spec")?;
        let group = spec.get("group")?.as_str()?;
        let names = spec.get("names")?;
        let (plural, kind) = (names.get("plural")?.as_str()?, names.get("kind")?.as_str()?);
        let namespaced =
            spec.get("scope").and_then(serde_json::Value::as_str) == Some("Namespaced");
        let mut out = Vec::new();
        for v in spec.get("versions")?.as_array()? {
            if v.get("served").and_then(serde_json::Value::as_bool) != Some(true) {
                continue;
            }
            let mut k = Self::custom(group, v.get("name")?.as_str()?, plural, kind, namespaced);
            k.status_subresource = v.pointer("/subresources/status").is_some();
            k.schema = v.pointer("/schema/openAPIV3Schema").cloned().map(Arc::new);
            out.push(k);
        }
        Some(out)
    }

    /// `EndpointSliceList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// `EndpointSlice.discovery.k8s.io`, as the real server writes it in 422 messages.
    pub(crate) fn qualified_kind(&self) -> String {
        qualify(&self.kind, &self.gvr.group)
    }
}

/// All kinds a simulated cluster serves; built-ins plus registered custom kinds.
#[derive(Clone, Debug)]
pub(crate) struct Registry {
    by_gvr: BTreeMap<Gvr, Arc<ResourceKind>>,
}

impl Registry {
    /// The built-in kinds podgate and its tests use.
    pub(crate) fn builtin() -> Self {
        let kinds = [
            ResourceKind::builtin(("", "v1", "namespaces"), "Namespace", false, true, false),
            ResourceKind::builtin(("", "v1", "nodes"), "Node", false, true, false),
            ResourceKind::builtin(("", "v1", "services"), "Service", true, true, false),
            ResourceKind::builtin(("", "v1", "endpoints"), "Endpoints", true, false, false),
            ResourceKind::builtin(("", "v1", "pods"), "Pod", true, true, false),
            ResourceKind::builtin(("", "v1", "secrets"), "Secret", true, false, false),
            ResourceKind::builtin(("", "v1", "configmaps"), "ConfigMap", true, false, false),
            ResourceKind::builtin(("", "v1", "events"), "Event", true, false, false),
            ResourceKind::builtin(
                ("discovery.k8s.io", "v1", "endpointslices"),
                "EndpointSlice",
                true,
                false,
                true,
            ),
            ResourceKind::builtin(
                ("networking.k8s.io", "v1", "ingresses"),
                "Ingress",
                true,
                true,
                true,
            ),
            ResourceKind::builtin(
                ("networking.k8s.io", "v1", "ingressclasses"),
                "IngressClass",
                false,
                false,
                true,
            ),
            ResourceKind::builtin(
                ("events.k8s.io", "v1", "events"),
                "Event",
                true,
                false,
                false,
            ),
            ResourceKind::builtin(
                ("coordination.k8s.io", "v1", "leases"),
                "Lease",
                true,
                false,
                false,
            ),
        ];
        let mut registry = Self {
            by_gvr: BTreeMap::new(),
        };
        for kind in kinds {
            registry.register(kind);
        }
        registry
    }

    /// Adds or replaces a kind.
    pub(crate) fn register(&mut self, kind: ResourceKind) {
        self.by_gvr.insert(kind.gvr.clone(), Arc::new(kind));
    }

    pub(crate) fn get(&self, gvr: &Gvr) -> Option<Arc<ResourceKind>> {
        self.by_gvr.get(gvr).cloned()
    }

    /// The kind named by an object's `apiVersion` and `kind`.
    pub(crate) fn by_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceKind>> {
        self.by_gvr
            .values()
            .find(|k| k.gvr.api_version() == api_version && k.kind == kind)
            .cloned()
    }

    /// The kinds of one group/version, in resource-name order.
    pub(crate) fn in_group_version(&self, group: &str, version: &str) -> Vec<Arc<ResourceKind>> {
        self.by_gvr
            .values()
            .filter(|k| k.gvr.group == group && k.gvr.version == version)
            .cloned()
            .collect()
    }

    /// Every (group, version) served, core group first.
    pub(crate) fn group_versions(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for k in self.by_gvr.values() {
            let gv = (k.gvr.group.clone(), k.gvr.version.clone());
            if !out.contains(&gv) {
                out.push(gv);
            }
        }
        out
    }
}
