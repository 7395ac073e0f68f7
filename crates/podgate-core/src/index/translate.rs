//! Kubernetes objects → compact records. Every semantic decision about a single object
//! (class request, hosts, paths, backends, endpoint conditions) is made here, once, so
//! the rest of the Index works on plain values.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::model::{EndpointState, HostPattern, PathKind, PathMatch, Pem, PortRef, UpstreamKey};

use super::Diagnostic;
use super::intern::Interner;
use super::records::{
    ClassRecord, ClassRequest, IngressRecord, ObjectKey, RuleRecord, SecretRecord,
    ServicePortRecord, ServiceRecord, SliceEndpoint, SliceRecord,
};
use crate::model::HEALTH_CHECK_ANNOTATION;
use crate::model::shares::{ClusterWeights, WEIGHTS_ANNOTATION};

pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// `(namespace, name)`; `None` when the object has no name (nothing to key it by).
/// Namespaces are few and shared, so they are interned; names are not (slice names
/// churn with every rollout and would grow the interner without bound).
pub(crate) fn key_of(meta: &ObjectMeta, interner: &mut Interner) -> Option<ObjectKey> {
    let name = meta.name.as_deref()?;
    let namespace = interner.intern(meta.namespace.as_deref().unwrap_or(""));
    Some((namespace, Arc::from(name)))
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

fn weights(meta: &ObjectMeta, diagnostics: &mut Vec<Diagnostic>) -> Option<ClusterWeights> {
    let raw = annotation(meta, WEIGHTS_ANNOTATION)?;
    match ClusterWeights::parse(raw) {
        Ok(w) => Some(w),
        Err(e) => {
            diagnostics.push(Diagnostic::new(
                "InvalidWeights",
                format!("annotation {WEIGHTS_ANNOTATION} ignored: {e}"),
            ));
            None
        }
    }
}

fn health_check(
    meta: &ObjectMeta,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<crate::model::HealthCheck> {
    let raw = annotation(meta, HEALTH_CHECK_ANNOTATION)?;
    match crate::model::HealthCheck::parse(raw) {
        Ok(c) => Some(c),
        Err(e) => {
            diagnostics.push(Diagnostic::new(
                "InvalidHealthCheck",
                format!("annotation {HEALTH_CHECK_ANNOTATION} ignored: {e}"),
            ));
            None
        }
    }
}

pub(crate) fn ingress_class(class: &IngressClass) -> ClassRecord {
    ClassRecord {
        controller: class
            .spec
            .as_ref()
            .and_then(|s| s.controller.clone())
            .unwrap_or_default(),
        is_default: annotation(&class.metadata, DEFAULT_CLASS_ANNOTATION) == Some("true"),
    }
}

pub(crate) fn service(svc: &Service, interner: &mut Interner) -> ServiceRecord {
    let mut diagnostics = Vec::new();
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some(ServicePortRecord {
                name: interner.intern(p.name.as_deref().unwrap_or("")),
                port: u16::try_from(p.port).ok()?,
                node_port: p.node_port.and_then(|n| u16::try_from(n).ok()),
            })
        })
        .collect();
    let weights = weights(&svc.metadata, &mut diagnostics);
    let health_check = health_check(&svc.metadata, &mut diagnostics);
    let mut ports: Vec<ServicePortRecord> = ports;
    ports.shrink_to_fit();
    ServiceRecord {
        ports,
        weights,
        health_check,
        diagnostics,
    }
}

/// `None` for slices podgate ignores: FQDN slices and slices without the service label.
pub(crate) fn endpoint_slice(
    slice: &EndpointSlice,
    interner: &mut Interner,
) -> Option<SliceRecord> {
    if slice.address_type == "FQDN" {
        return None;
    }
    let service = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    let ports = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            Some((
                interner.intern(p.name.as_deref().unwrap_or("")),
                u16::try_from(p.port?).ok()?,
            ))
        })
        .collect::<Vec<_>>();
    let mut endpoints: Vec<SliceEndpoint> = Vec::with_capacity(slice.endpoints.len());
    let mut starting: Vec<SliceEndpoint> = Vec::new();
    for ep in &slice.endpoints {
        let (state, list) = match endpoint_state(ep.conditions.as_ref()) {
            Some(state) => (state, &mut endpoints),
            None if is_starting(ep.conditions.as_ref()) => (EndpointState::Active, &mut starting),
            None => continue,
        };
        let locality = interner.locality(ep.zone.as_deref(), ep.node_name.as_deref());
        // A pod has one address per family; Kubernetes uses only the first.
        let Some(address) = ep.addresses.first().and_then(|a| a.parse().ok()) else {
            continue;
        };
        list.push(SliceEndpoint {
            address,
            state,
            locality,
        });
    }
    let mut ports = ports;
    ports.shrink_to_fit();
    starting.shrink_to_fit();
    Some(SliceRecord {
        service: interner.intern(service),
        ports,
        endpoints,
        starting,
    })
}

/// ready (or unknown) → Active; not ready but serving and terminating → Draining;
/// anything else is not registered.
fn endpoint_state(
    conditions: Option<&k8s_openapi::api::discovery::v1::EndpointConditions>,
) -> Option<EndpointState> {
    let Some(c) = conditions else {
        return Some(EndpointState::Active);
    };
    if c.ready.unwrap_or(true) {
        Some(EndpointState::Active)
    } else if c.serving == Some(true) && c.terminating == Some(true) {
        Some(EndpointState::Draining)
    } else {
        None
    }
}

/// Not ready and not terminating: a pod starting, or one that only its readiness gates
/// hold back (see `gated`).
fn is_starting(conditions: Option<&k8s_openapi::api::discovery::v1::EndpointConditions>) -> bool {
    conditions.is_some_and(|c| c.ready == Some(false) && c.terminating != Some(true))
}

pub(crate) fn secret(secret: &Secret) -> SecretRecord {
    if secret.type_.as_deref() != Some("kubernetes.io/tls") {
        return SecretRecord::Invalid("Secret is not of type kubernetes.io/tls".to_owned());
    }
    let data = secret.data.as_ref();
    let get = |key: &str| data.and_then(|d| d.get(key)).map(|b| b.0.as_slice());
    let (Some(cert), Some(key)) = (get("tls.crt"), get("tls.key")) else {
        return SecretRecord::Invalid("Secret lacks tls.crt or tls.key".to_owned());
    };
    match super::tls_check::check_pem(cert, key) {
        Ok(()) => SecretRecord::Tls {
            cert_pem: Pem(Arc::from(String::from_utf8_lossy(cert).as_ref())),
            key_pem: Pem(Arc::from(String::from_utf8_lossy(key).as_ref())),
        },
        Err(reason) => SecretRecord::Invalid(reason),
    }
}

pub(crate) fn ingress(ing: &Ingress) -> IngressRecord {
    let mut diagnostics = Vec::new();
    let namespace = ing.metadata.namespace.as_deref().unwrap_or("");
    let spec = ing.spec.clone().unwrap_or_default();
    let class = match (
        &spec.ingress_class_name,
        annotation(&ing.metadata, LEGACY_CLASS_ANNOTATION),
    ) {
        (Some(name), _) => ClassRequest::Named(name.clone()),
        (None, Some(legacy)) => ClassRequest::Legacy(legacy.to_owned()),
        (None, None) => ClassRequest::Default,
    };
    let backend = |b: &IngressBackend, diagnostics: &mut Vec<Diagnostic>| {
        upstream_of(namespace, b, diagnostics)
    };
    let default_backend = spec
        .default_backend
        .as_ref()
        .and_then(|b| backend(b, &mut diagnostics));
    let mut rules = Vec::new();
    for rule in spec.rules.iter().flatten() {
        let host = match rule.host.as_deref() {
            None | Some("") => None,
            Some(raw) => match HostPattern::parse(raw) {
                Ok(h) => Some(h),
                Err(e) => {
                    diagnostics.push(Diagnostic::new("InvalidHost", format!("rule skipped: {e}")));
                    continue;
                }
            },
        };
        for p in rule.http.iter().flat_map(|h| &h.paths) {
            let kind = if p.path_type == "Exact" {
                PathKind::Exact
            } else {
                PathKind::Prefix // Prefix, and ImplementationSpecific treated as Prefix.
            };
            let path = match PathMatch::parse(kind, p.path.as_deref().unwrap_or("/")) {
                Ok(path) => path,
                Err(e) => {
                    diagnostics.push(Diagnostic::new("InvalidPath", format!("path skipped: {e}")));
                    continue;
                }
            };
            if let Some(upstream) = backend(&p.backend, &mut diagnostics) {
                rules.push(RuleRecord {
                    host: host.clone(),
                    path: Some(path),
                    upstream,
                });
            }
        }
    }
    let tls = spec
        .tls
        .iter()
        .flatten()
        .filter_map(|t| {
            let secret = t.secret_name.as_deref().filter(|s| !s.is_empty())?;
            let hosts: BTreeSet<HostPattern> = t
                .hosts
                .iter()
                .flatten()
                .filter_map(|h| HostPattern::parse(h).ok())
                .collect();
            Some((hosts.into_iter().collect(), Arc::from(secret)))
        })
        .collect();
    let weights = weights(&ing.metadata, &mut diagnostics);
    // Records live long: no spare capacity.
    rules.shrink_to_fit();
    IngressRecord {
        created: ing
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_second()),
        class,
        rules,
        default_backend,
        tls,
        weights,
        diagnostics,
    }
}

fn upstream_of(
    namespace: &str,
    backend: &IngressBackend,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<UpstreamKey> {
    if let Some(resource) = &backend.resource {
        diagnostics.push(Diagnostic::new(
            "ResourceBackend",
            format!(
                "backend refers to resource {} {}: podgate serves Service backends only",
                resource.kind, resource.name
            ),
        ));
        return None;
    }
    let Some(service) = &backend.service else {
        diagnostics.push(Diagnostic::new(
            "InvalidBackend",
            "backend names no Service",
        ));
        return None;
    };
    let port = service
        .port
        .as_ref()
        .and_then(|p| match (&p.number, &p.name) {
            (Some(n), _) => u16::try_from(*n).ok().map(PortRef::Number),
            (None, Some(name)) if !name.is_empty() => Some(PortRef::Name(Arc::from(name.as_str()))),
            _ => None,
        });
    let Some(port) = port else {
        diagnostics.push(Diagnostic::new(
            "InvalidBackend",
            format!("backend Service {} names no valid port", service.name),
        ));
        return None;
    };
    Some(UpstreamKey::new(namespace, &service.name, port))
}

/// A Gateway API object's metadata cut to what resolution reads (name, namespace,
/// generation, creation time, uid): `managedFields`, annotations and the
/// `resourceVersion` of every status write would otherwise be kept and compared.
pub(crate) fn gateway_meta(meta: &ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        generation: meta.generation,
        creation_timestamp: meta.creation_timestamp.clone(),
        uid: meta.uid.clone(),
        ..ObjectMeta::default()
    }
}
