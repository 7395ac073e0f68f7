//! Kubeconfig files for a simulated cluster (a test double for a Kubernetes API server).
//!
//! Owns the kubeconfig text that points a client at one simulated cluster: plain
//! `http://127.0.0.1:<port>`, no credentials (the sim does not authenticate), cluster,
//! user and context all named after the simulated cluster, namespace `default`.

use std::net::SocketAddr;

/// The kubeconfig YAML for the simulated cluster `name` listening on `addr`.
pub(crate) fn yaml(name: &str, addr: SocketAddr) -> String {
    let name = serde_json::Value::String(name.to_owned());
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: {name}\n  cluster:\n    server: http://{addr}\n\
         users:\n\
         - name: {name}\n  user: {{}}\n\
         contexts:\n\
         - name: {name}\n  context:\n    cluster: {name}\n    user: {name}\n    namespace: default\n\
         current-context: {name}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_reads_it_back() {
        let addr: SocketAddr = "127.0.0.1:4567".parse().unwrap();
        let kc = kube::config::Kubeconfig::from_yaml(&yaml("idc", addr)).unwrap();
        assert_eq!(kc.current_context.as_deref(), Some("idc"));
        let server = kc.clusters[0]
            .cluster
            .as_ref()
            .and_then(|c| c.server.clone());
        assert_eq!(server.as_deref(), Some("http://127.0.0.1:4567"));
        assert_eq!(
            kc.contexts[0].context.as_ref().map(|c| c.user.clone()),
            Some(Some("idc".into()))
        );
    }
}
