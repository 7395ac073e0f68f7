//! Builders for the Kubernetes objects podgate reads, so that tests and `podgate demo`
//! say `slice("shop", "web-1", "web").port("http", 8080).ready("10.0.0.1")` instead of
//! sixty lines of YAML. They build plain k8s-openapi values; nothing here does I/O.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressClass, IngressClassSpec,
    IngressRule, IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use podgate_core::model::PortRef;

fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: (!namespace.is_empty()).then(|| namespace.to_owned()),
        ..ObjectMeta::default()
    }
}

fn annotate(meta: &mut ObjectMeta, key: &str, value: &str) {
    meta.annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(key.to_owned(), value.to_owned());
}

/// An IngressClass named `name` for controller `controller`.
pub fn ingress_class(name: &str, controller: &str) -> IngressClass {
    IngressClass {
        metadata: meta("", name),
        spec: Some(IngressClassSpec {
            controller: Some(controller.to_owned()),
            parameters: None,
        }),
    }
}

/// Marks an IngressClass as the cluster's default class.
pub fn default_class(mut class: IngressClass) -> IngressClass {
    annotate(
        &mut class.metadata,
        podgate_core::index::DEFAULT_CLASS_ANNOTATION,
        "true",
    );
    class
}

/// A Service with ports added by [`ServiceBuilder::port`].
pub fn service(namespace: &str, name: &str) -> ServiceBuilder {
    ServiceBuilder(Service {
        metadata: meta(namespace, name),
        spec: Some(ServiceSpec::default()),
        status: None,
    })
}

pub struct ServiceBuilder(pub Service);

impl ServiceBuilder {
    /// Adds a port; `name` may be empty for a single unnamed port.
    pub fn port(mut self, name: &str, port: u16) -> Self {
        self.spec_ports().push(ServicePort {
            name: (!name.is_empty()).then(|| name.to_owned()),
            port: i32::from(port),
            ..ServicePort::default()
        });
        self
    }

    pub fn node_port(mut self, name: &str, port: u16, node_port: u16) -> Self {
        self = self.port(name, port);
        if let Some(p) = self.spec_ports().last_mut() {
            p.node_port = Some(i32::from(node_port));
        }
        self
    }

    pub fn annotate(mut self, key: &str, value: &str) -> Self {
        annotate(&mut self.0.metadata, key, value);
        self
    }

    fn spec_ports(&mut self) -> &mut Vec<ServicePort> {
        self.0
            .spec
            .get_or_insert_with(ServiceSpec::default)
            .ports
            .get_or_insert_with(Vec::new)
    }

    pub fn build(self) -> Service {
        self.0
    }
}

/// An EndpointSlice of service `service`.
pub fn slice(namespace: &str, name: &str, service: &str) -> SliceBuilder {
    let mut m = meta(namespace, name);
    m.labels = Some(BTreeMap::from([(
        podgate_core::index::SERVICE_NAME_LABEL.to_owned(),
        service.to_owned(),
    )]));
    SliceBuilder(EndpointSlice {
        metadata: m,
        address_type: "IPv4".to_owned(),
        endpoints: Vec::new(),
        ports: Some(Vec::new()),
    })
}

pub struct SliceBuilder(pub EndpointSlice);

impl SliceBuilder {
    pub fn port(mut self, name: &str, port: u16) -> Self {
        self.0
            .ports
            .get_or_insert_with(Vec::new)
            .push(EndpointPort {
                name: (!name.is_empty()).then(|| name.to_owned()),
                port: Some(i32::from(port)),
                protocol: Some("TCP".to_owned()),
                app_protocol: None,
            });
        self
    }

    pub fn address_type(mut self, t: &str) -> Self {
        t.clone_into(&mut self.0.address_type);
        self
    }

    fn endpoint(mut self, address: &str, ready: bool, serving: bool, terminating: bool) -> Self {
        self.0.endpoints.push(Endpoint {
            addresses: vec![address.to_owned()],
            conditions: Some(EndpointConditions {
                ready: Some(ready),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            ..Endpoint::default()
        });
        self
    }

    /// A ready endpoint: Active.
    pub fn ready(self, address: &str) -> Self {
        self.endpoint(address, true, true, false)
    }

    /// Not ready, still serving, terminating: Draining.
    pub fn terminating(self, address: &str) -> Self {
        self.endpoint(address, false, true, true)
    }

    /// Not ready and not terminating (starting, or failing its probe): not registered.
    pub fn not_ready(self, address: &str) -> Self {
        self.endpoint(address, false, false, false)
    }

    /// Sets zone and node of the last endpoint added.
    pub fn at(mut self, zone: &str, node: &str) -> Self {
        if let Some(e) = self.0.endpoints.last_mut() {
            e.zone = Some(zone.to_owned());
            e.node_name = Some(node.to_owned());
        }
        self
    }

    pub fn build(self) -> EndpointSlice {
        self.0
    }
}

/// An Ingress; add rules with [`IngressBuilder::route`].
pub fn ingress(namespace: &str, name: &str) -> IngressBuilder {
    IngressBuilder(Ingress {
        metadata: meta(namespace, name),
        spec: Some(IngressSpec::default()),
        status: None,
    })
}

pub struct IngressBuilder(pub Ingress);

fn backend(service: &str, port: PortRef) -> IngressBackend {
    let port = match port {
        PortRef::Number(n) => ServiceBackendPort {
            number: Some(i32::from(n)),
            name: None,
        },
        PortRef::Name(n) => ServiceBackendPort {
            number: None,
            name: Some(n.to_string()),
        },
    };
    IngressBackend {
        service: Some(IngressServiceBackend {
            name: service.to_owned(),
            port: Some(port),
        }),
        resource: None,
    }
}

impl IngressBuilder {
    fn spec(&mut self) -> &mut IngressSpec {
        self.0.spec.get_or_insert_with(IngressSpec::default)
    }

    /// `spec.ingressClassName`.
    pub fn class(mut self, name: &str) -> Self {
        self.spec().ingress_class_name = Some(name.to_owned());
        self
    }

    /// `metadata.creationTimestamp`, in seconds since the epoch.
    pub fn created(mut self, seconds: i64) -> Self {
        self.0.metadata.creation_timestamp = k8s_openapi::jiff::Timestamp::from_second(seconds)
            .ok()
            .map(Time);
        self
    }

    pub fn annotate(mut self, key: &str, value: &str) -> Self {
        annotate(&mut self.0.metadata, key, value);
        self
    }

    /// Adds a path rule. `host` may be empty (a rule without host); `path_type` is
    /// `Exact`, `Prefix` or `ImplementationSpecific`.
    pub fn route(
        mut self,
        host: &str,
        path_type: &str,
        path: &str,
        service: &str,
        port: impl Into<PortRef>,
    ) -> Self {
        let path = HTTPIngressPath {
            path: Some(path.to_owned()),
            path_type: path_type.to_owned(),
            backend: backend(service, port.into()),
        };
        let rules = self.spec().rules.get_or_insert_with(Vec::new);
        let host = (!host.is_empty()).then(|| host.to_owned());
        if let Some(rule) = rules.iter_mut().find(|r| r.host == host) {
            rule.http
                .get_or_insert_with(HTTPIngressRuleValue::default)
                .paths
                .push(path);
        } else {
            rules.push(IngressRule {
                host,
                http: Some(HTTPIngressRuleValue { paths: vec![path] }),
            });
        }
        self
    }

    /// `spec.defaultBackend`.
    pub fn default_backend(mut self, service: &str, port: impl Into<PortRef>) -> Self {
        self.spec().default_backend = Some(backend(service, port.into()));
        self
    }

    /// `spec.tls[]`: these hosts use Secret `secret` of the same namespace.
    pub fn tls(mut self, hosts: &[&str], secret: &str) -> Self {
        self.spec()
            .tls
            .get_or_insert_with(Vec::new)
            .push(IngressTLS {
                hosts: Some(hosts.iter().map(|h| (*h).to_owned()).collect()),
                secret_name: Some(secret.to_owned()),
            });
        self
    }

    pub fn build(self) -> Ingress {
        self.0
    }
}

/// A `kubernetes.io/tls` Secret.
pub fn tls_secret(namespace: &str, name: &str, cert_pem: &str, key_pem: &str) -> Secret {
    Secret {
        metadata: meta(namespace, name),
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(BTreeMap::from([
            (
                "tls.crt".to_owned(),
                ByteString(cert_pem.as_bytes().to_vec()),
            ),
            (
                "tls.key".to_owned(),
                ByteString(key_pem.as_bytes().to_vec()),
            ),
        ])),
        ..Secret::default()
    }
}

macro_rules! into_object {
    ($($builder:ident),*) => {$(
        impl From<$builder> for podgate_core::index::Object {
            fn from(b: $builder) -> Self {
                b.build().into()
            }
        }
    )*};
}
into_object!(ServiceBuilder, SliceBuilder, IngressBuilder);
