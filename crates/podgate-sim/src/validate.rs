//! Defaulting and validation of the simulated Kubernetes API server (a test double).
//!
//! Owns the checks the real API server makes where podgate could depend on them:
//! EndpointSlice addresses (loopback refused unless the sim was started with
//! `allow_loopback_endpoints`, `addressType` required), Ingress `pathType` required,
//! names present. And the defaults the real server fills in that clients read back
//! (`protocol: TCP` on ports, a Service's `targetPort`). Custom resources get their
//! CRD schema's defaults, `maxItems` and CEL rules (`schema`, `cel`). It does not try
//! to be the full Kubernetes validation; unknown kinds are stored as given.

use std::net::IpAddr;

use serde_json::{Value, json};

use super::resources::ResourceKind;
use super::status::{ApiError, FieldError};

/// What the validation may accept beyond the real server.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Leniency {
    pub(crate) allow_loopback_endpoints: bool,
}

/// Fills defaults in place, then validates; `old` is the stored object, on updates (for
/// CEL transition rules). `Err` is the 422 answer.
pub(crate) fn admit(
    kind: &ResourceKind,
    obj: &mut Value,
    old: Option<&Value>,
    lenient: Leniency,
) -> Result<(), ApiError> {
    default(kind, obj);
    let mut errors = Vec::new();
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if name.is_empty() {
        errors.push(FieldError::required(
            "metadata.name".into(),
            "name or generateName is required",
        ));
    }
    match (kind.gvr.group.as_str(), kind.kind.as_str()) {
        ("discovery.k8s.io", "EndpointSlice") => endpoint_slice(obj, lenient, &mut errors),
        ("networking.k8s.io", "Ingress") => ingress(obj, &mut errors),
        _ => {}
    }
    if let Some(schema) = &kind.schema {
        super::schema::fill_defaults(schema, obj);
        super::schema::too_many(schema, obj, "", &mut errors);
        if super::schema::has_cel(schema) {
            // As the real server: CEL runs only on an object without "blocking" errors.
            if errors.iter().any(FieldError::blocks_cel) {
                errors.push(FieldError::cel_not_checked());
            } else {
                super::cel::check(schema, obj, old, &mut errors);
            }
        }
        // Custom resources come back with their keys sorted (k8s-wire 14).
        *obj = super::schema::sorted(obj);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(kind, &name, &errors))
    }
}

fn each_mut(v: Option<&mut Value>, mut f: impl FnMut(&mut Value)) {
    if let Some(items) = v.and_then(Value::as_array_mut) {
        items.iter_mut().for_each(&mut f);
    }
}

fn default_protocol(port: &mut Value) {
    if let Some(p) = port.as_object_mut() {
        p.entry("protocol").or_insert_with(|| json!("TCP"));
    }
}

fn default(kind: &ResourceKind, obj: &mut Value) {
    match (kind.gvr.group.as_str(), kind.kind.as_str()) {
        ("discovery.k8s.io", "EndpointSlice") => {
            each_mut(obj.get_mut("ports"), default_protocol);
            each_mut(obj.get_mut("endpoints"), |ep| {
                if let Some(ep) = ep.as_object_mut() {
                    ep.entry("conditions").or_insert_with(|| json!({}));
                }
            });
        }
        ("", "Service") => {
            let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
                return;
            };
            spec.entry("type").or_insert_with(|| json!("ClusterIP"));
            spec.entry("sessionAffinity")
                .or_insert_with(|| json!("None"));
            each_mut(spec.get_mut("ports"), |port| {
                default_protocol(port);
                if let Some(p) = port.as_object_mut()
                    && let Some(number) = p.get("port").cloned()
                {
                    p.entry("targetPort").or_insert(number);
                }
            });
        }
        _ => {}
    }
}

fn is_loopback(addr: &str) -> bool {
    addr.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn endpoint_slice(obj: &Value, lenient: Leniency, errors: &mut Vec<FieldError>) {
    let address_type = obj.get("addressType").and_then(Value::as_str).unwrap_or("");
    if address_type.is_empty() {
        errors.push(FieldError::required("addressType".into(), ""));
    }
    let endpoints = obj
        .get("endpoints")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, ep) in endpoints.iter().enumerate() {
        let addresses = ep
            .get("addresses")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (j, a) in addresses.iter().enumerate() {
            let field = format!("endpoints[{i}].addresses[{j}]");
            let Some(addr) = a.as_str() else {
                errors.push(FieldError::invalid(
                    field,
                    &a.to_string(),
                    "must be a string",
                ));
                continue;
            };
            let parsed = addr.parse::<IpAddr>();
            let wrong_family = matches!(
                (address_type, &parsed),
                ("IPv4", Ok(IpAddr::V6(_)))
                    | ("IPv6", Ok(IpAddr::V4(_)))
                    | ("IPv4" | "IPv6", Err(_))
            );
            if wrong_family {
                errors.push(FieldError::invalid(
                    field,
                    addr,
                    &format!("must be a valid {address_type} address"),
                ));
            } else if is_loopback(addr) && !lenient.allow_loopback_endpoints {
                errors.push(FieldError::invalid(
                    field,
                    addr,
                    "may not be in the loopback range (127.0.0.0/8, ::1/128)",
                ));
            }
        }
    }
}

fn ingress(obj: &Value, errors: &mut Vec<FieldError>) {
    let rules = obj
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, rule) in rules.iter().enumerate() {
        let paths = rule
            .pointer("/http/paths")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (j, path) in paths.iter().enumerate() {
            let field = format!("spec.rules[{i}].http.paths[{j}].pathType");
            match path.get("pathType").and_then(Value::as_str) {
                None => errors.push(FieldError::required(field, "pathType must be specified")),
                Some("Exact" | "Prefix" | "ImplementationSpecific") => {}
                Some(other) => errors.push(FieldError {
                    reason: "FieldValueNotSupported",
                    field,
                    message: format!(
                        "Unsupported value: {}: supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\"",
                        json!(other)
                    ),
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::resources::{Gvr, Registry};
    use super::*;

    fn slice(addr: &str) -> Value {
        json!({ "metadata": { "name": "web-lo" }, "addressType": "IPv4",
                "endpoints": [{ "addresses": [addr] }], "ports": [{ "port": 80 }] })
    }

    fn es_kind() -> std::sync::Arc<ResourceKind> {
        Registry::builtin()
            .get(&Gvr::new("discovery.k8s.io", "v1", "endpointslices"))
            .unwrap()
    }

    #[test]
    fn loopback_is_refused_unless_allowed() {
        for addr in ["127.1.0.1", "127.0.0.1"] {
            let err = admit(&es_kind(), &mut slice(addr), None, Leniency::default()).unwrap_err();
            assert_eq!(err.code, 422);
            assert!(
                err.message.contains("may not be in the loopback range"),
                "{}",
                err.message
            );
            let ok = Leniency {
                allow_loopback_endpoints: true,
            };
            admit(&es_kind(), &mut slice(addr), None, ok).unwrap();
        }
        admit(
            &es_kind(),
            &mut slice("10.0.0.1"),
            None,
            Leniency::default(),
        )
        .unwrap();
    }

    #[test]
    fn defaults_are_filled() {
        let mut s = slice("10.0.0.1");
        admit(&es_kind(), &mut s, None, Leniency::default()).unwrap();
        assert_eq!(s["ports"][0]["protocol"], "TCP");
        assert_eq!(s["endpoints"][0]["conditions"], json!({}));
    }

    #[test]
    fn ingress_path_type_is_required() {
        let kind = Registry::builtin()
            .get(&Gvr::new("networking.k8s.io", "v1", "ingresses"))
            .unwrap();
        let mut ing = json!({ "metadata": { "name": "web" }, "spec": { "rules": [{ "http": { "paths": [{ "path": "/" }] } }] } });
        let err = admit(&kind, &mut ing, None, Leniency::default()).unwrap_err();
        assert_eq!(err.code, 422);
        assert!(
            err.message
                .contains("spec.rules[0].http.paths[0].pathType: Required value"),
            "{}",
            err.message
        );
    }
}
