//! Service address allocation of the simulated Kubernetes API server (a test double).
//!
//! Owns what the real server allocates for a Service on create: a `clusterIP` from
//! 10.96.0.0/12 (with `clusterIPs`, `ipFamilies`, `ipFamilyPolicy`) unless the
//! Service is headless or `ExternalName`, and a `nodePort` from 30000–32767 for each
//! port of a `NodePort` or `LoadBalancer` Service; and that updates keep them when the
//! client leaves them out. It never refuses a Service: clashes with addresses the
//! client chose itself are not checked.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::store::Snapshot;

const FIRST_IP: u32 = u32::from_be_bytes([10, 96, 0, 1]);
const LAST_IP: u32 = u32::from_be_bytes([10, 111, 255, 254]);

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn ports_mut(spec: &mut Value) -> impl Iterator<Item = &mut serde_json::Map<String, Value>> {
    spec.get_mut("ports")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// Fills `clusterIP` and `nodePort`s of a new Service, avoiding those of `existing`.
pub(crate) fn on_create(existing: &Snapshot, svc: &mut Value) {
    let service_type = str_at(svc, "/spec/type").unwrap_or("ClusterIP").to_owned();
    let Some(spec) = svc.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    if service_type != "ExternalName" {
        let ip = if let Some(ip) = str_at(spec, "/clusterIP") {
            Some(ip.to_owned())
        } else {
            let used: HashSet<&str> = existing
                .values()
                .filter_map(|s| str_at(s, "/spec/clusterIP"))
                .collect();
            (FIRST_IP..=LAST_IP)
                .map(|n| Ipv4Addr::from(n).to_string())
                .find(|ip| !used.contains(ip.as_str()))
        };
        if let Some(ip) = ip {
            spec["clusterIP"] = json!(ip);
            spec["clusterIPs"] = json!([ip]);
            if ip != "None" {
                spec["ipFamilies"] = json!(["IPv4"]);
                spec["ipFamilyPolicy"] = json!("SingleStack");
            }
        }
        spec["internalTrafficPolicy"] = json!("Cluster");
    }
    if service_type == "NodePort" || service_type == "LoadBalancer" {
        let mut used: HashSet<u64> = existing
            .values()
            .filter_map(|s| s.pointer("/spec/ports").and_then(Value::as_array))
            .flatten()
            .filter_map(|p| p.get("nodePort").and_then(Value::as_u64))
            .collect();
        used.extend(ports_mut(spec).filter_map(|p| p.get("nodePort").and_then(Value::as_u64)));
        let mut free = (30000_u64..=32767)
            .filter(|p| !used.contains(p))
            .collect::<Vec<_>>()
            .into_iter();
        for port in ports_mut(spec) {
            if port.get("nodePort").and_then(Value::as_u64).is_none()
                && let Some(p) = free.next()
            {
                port.insert("nodePort".into(), json!(p));
            }
        }
        spec["externalTrafficPolicy"] = json!("Cluster");
    }
}

/// Keeps the allocated addresses of `old` where an update left them out.
pub(crate) fn on_update(old: &Value, svc: &mut Value) {
    let Some(spec) = svc.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
        if spec.get(field).is_none_or(Value::is_null)
            && let Some(v) = old.pointer(&format!("/spec/{field}"))
        {
            spec[field] = v.clone();
        }
    }
    let old_ports = old
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for port in ports_mut(spec) {
        if port.get("nodePort").is_some() {
            continue;
        }
        let same = old_ports
            .iter()
            .find(|o| o.get("port") == port.get("port") && o.get("name") == port.get("name"));
        if let Some(node_port) = same.and_then(|o| o.get("nodePort")) {
            port.insert("nodePort".into(), node_port.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn allocates_distinct_cluster_ips_and_node_ports() {
        let mut existing = Snapshot::new();
        let mut a = json!({ "spec": { "type": "NodePort", "ports": [{ "port": 80 }] } });
        on_create(&existing, &mut a);
        assert_eq!(a["spec"]["clusterIP"], "10.96.0.1");
        assert_eq!(a["spec"]["ports"][0]["nodePort"], 30000);
        existing.insert("default/a".into(), Arc::new(a.clone()));
        let mut b = json!({ "spec": { "type": "NodePort", "ports": [{ "port": 80 }, { "port": 81, "nodePort": 30001 }] } });
        on_create(&existing, &mut b);
        assert_eq!(b["spec"]["clusterIP"], "10.96.0.2");
        assert_eq!(b["spec"]["ports"][0]["nodePort"], 30002);

        let mut headless = json!({ "spec": { "clusterIP": "None" } });
        on_create(&existing, &mut headless);
        assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));

        let mut update = json!({ "spec": { "type": "NodePort", "ports": [{ "port": 80 }] } });
        on_update(&a, &mut update);
        assert_eq!(update["spec"]["clusterIP"], "10.96.0.1");
        assert_eq!(update["spec"]["ports"][0]["nodePort"], 30000);
    }
}
