//! `deploy/kubernetes`: every kustomization renders, validates strictly against the
//! schemas of Kubernetes 1.26 and the newest one `kubernetes-validate` ships, and holds
//! what the issue asks of an install (probes on the health listener, hardening, two
//! replicas with leader election, a PDB, the metrics Service and its ServiceMonitor).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;

use super::{output, root, text, tool};

const KUSTOMIZATIONS: [&str; 3] = ["base", "overlays/two-clusters", "watched-cluster"];

/// `kubectl kustomize dir`, written to a file in `into`.
fn render(kubectl: &Path, dir: &str, into: &Path) -> PathBuf {
    let out = output(
        Command::new(kubectl)
            .arg("kustomize")
            .arg(root().join("deploy/kubernetes").join(dir)),
    );
    assert!(out.status.success(), "{dir}: {}", text(&out.stderr));
    let file = into.join(format!("{}.yaml", dir.replace('/', "-")));
    std::fs::write(&file, &out.stdout).unwrap();
    file
}

fn documents(file: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(file).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

/// `kubernetes-validate --strict` for 1.26 and the newest version; stdout and success.
fn validate(validator: &Path, files: &[PathBuf]) -> Vec<(String, bool, String)> {
    [Some("1.26.0"), None]
        .into_iter()
        .map(|version| {
            let mut command = Command::new(validator);
            command.args(["--strict", "--quiet"]);
            if let Some(v) = version {
                command.args(["-k", v]);
            }
            let out = output(command.args(files));
            let said = text(&out.stdout) + &text(&out.stderr);
            (
                version.unwrap_or("newest").to_owned(),
                out.status.success(),
                said,
            )
        })
        .collect()
}

#[test]
fn every_kustomization_renders_and_validates_strictly_for_1_26_and_the_newest() {
    let Some(kubectl) = tool("kubectl", "`apt-get install -y kubernetes-client`") else {
        return;
    };
    let Some(validator) = tool("kubernetes-validate", "`pip install kubernetes-validate`") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = KUSTOMIZATIONS
        .iter()
        .map(|k| render(&kubectl, k, dir.path()))
        .collect();
    for (version, ok, said) in validate(&validator, &files) {
        assert!(
            ok && !said.contains("ERROR"),
            "Kubernetes {version}: {said}"
        );
    }
    // The check can fail: a field Kubernetes does not know is refused.
    let bad = dir.path().join("bad.yaml");
    let base = std::fs::read_to_string(&files[0]).unwrap();
    std::fs::write(
        &bad,
        base.replacen("replicas: 2", "replicas: 2\n  replica: 3", 1),
    )
    .unwrap();
    for (version, ok, said) in validate(&validator, &[bad]) {
        assert!(
            !ok && said.contains("'replica' was unexpected"),
            "Kubernetes {version}: {said}"
        );
    }
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    selector
        .as_mapping()
        .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

#[test]
fn the_base_install_is_hardened_probed_on_the_health_listener_and_scraped() {
    let Some(kubectl) = tool("kubectl", "`apt-get install -y kubernetes-client`") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for kustomization in ["base", "overlays/two-clusters"] {
        let docs = documents(&render(&kubectl, kustomization, dir.path()));
        let deployment = find(&docs, "Deployment");
        let spec = &deployment["spec"];
        assert_eq!(spec["replicas"].as_u64(), Some(2));
        let pod = &spec["template"]["spec"];
        let pod_labels = &spec["template"]["metadata"]["labels"];
        assert!(labels_match(&spec["selector"]["matchLabels"], pod_labels));
        assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"].as_str(),
            Some("RuntimeDefault")
        );
        assert!(
            pod["topologySpreadConstraints"][0]["topologyKey"].as_str()
                == Some("kubernetes.io/hostname")
        );
        let container = &pod["containers"][0];
        let hardening = &container["securityContext"];
        assert_eq!(hardening["readOnlyRootFilesystem"].as_bool(), Some(true));
        assert_eq!(hardening["allowPrivilegeEscalation"].as_bool(), Some(false));
        assert_eq!(hardening["capabilities"]["drop"][0].as_str(), Some("ALL"));
        assert!(container["resources"]["requests"]["memory"].is_string());
        assert!(container["resources"]["limits"]["memory"].is_string());

        // The configuration the pod mounts: a valid controller configuration whose
        // health listener is the port the probes and the ServiceMonitor use, and
        // whose write API stays on loopback.
        let config_map = find(&docs, "ConfigMap");
        let yaml = config_map["data"]["podgate.yaml"].as_str().unwrap();
        let config: podgate::controller::config::ControllerConfig =
            serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{kustomization}: {e}"));
        assert!(
            config.leader_election.is_some(),
            "two replicas need leader election"
        );
        let health = config.health_listen.expect("health_listen set");
        let raw: Value = serde_yaml_ng::from_str(yaml).unwrap();
        let admin: std::net::SocketAddr = raw["admin"]["listen"].as_str().unwrap().parse().unwrap();
        assert!(
            admin.ip().is_loopback(),
            "the write API must not listen on the pod address"
        );
        let port = &container["ports"][0];
        assert_eq!(
            port["containerPort"].as_u64(),
            Some(u64::from(health.port()))
        );
        let port_name = port["name"].as_str().unwrap();
        for probe in ["livenessProbe", "readinessProbe"] {
            assert_eq!(
                container[probe]["httpGet"]["port"].as_str(),
                Some(port_name),
                "{probe}"
            );
        }
        assert_eq!(
            container["readinessProbe"]["httpGet"]["path"].as_str(),
            Some("/readyz")
        );
        let config_volume = pod["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["configMap"].is_mapping())
            .unwrap();
        assert_eq!(
            config_volume["configMap"]["name"],
            config_map["metadata"]["name"]
        );

        let pdb = find(&docs, "PodDisruptionBudget");
        assert!(labels_match(
            &pdb["spec"]["selector"]["matchLabels"],
            pod_labels
        ));
        let service = find(&docs, "Service");
        assert!(labels_match(&service["spec"]["selector"], pod_labels));
        assert_eq!(
            service["spec"]["ports"][0]["targetPort"].as_str(),
            Some(port_name)
        );
        let monitor = find(&docs, "ServiceMonitor");
        assert!(labels_match(
            &monitor["spec"]["selector"]["matchLabels"],
            &service["metadata"]["labels"]
        ));
        assert_eq!(
            monitor["spec"]["endpoints"][0]["port"],
            service["spec"]["ports"][0]["name"]
        );
        find(&docs, "PrometheusRule");
        assert_eq!(
            find(&docs, "Namespace")["metadata"]["name"].as_str(),
            Some("podgate-system")
        );
    }
}
