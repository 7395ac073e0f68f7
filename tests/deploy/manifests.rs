//! `deploy/kubernetes`: every kustomization renders, validates strictly against the
//! schemas of Kubernetes 1.26 and the newest one `kubernetes-validate` ships, and holds
//! what the issue asks of an install (probes on the health listener, hardening, two
//! replicas with leader election, a PDB, the metrics Service and its ServiceMonitor),
//! and of the readiness gate `podgate.io/lb-registered` (a webhook that fails open,
//! RBAC whose only write on Pods is `pods/status` patch).

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

fn find_named<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

/// The strings of a YAML sequence (none if it is not one).
/// Every rule of every Role and ClusterRole in `docs`, with its role.
fn role_rules(docs: &[Value]) -> Vec<(&Value, &Value)> {
    docs.iter()
        .filter(|d| matches!(d["kind"].as_str(), Some("Role" | "ClusterRole")))
        .flat_map(|role| {
            role["rules"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(move |rule| (role, rule))
        })
        .collect()
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// The item of the sequence `list` whose `key` is `value`.
fn item<'a>(list: &'a Value, key: &str, value: &str) -> &'a Value {
    list.as_sequence()
        .into_iter()
        .flatten()
        .find(|i| i[key].as_str() == Some(value))
        .unwrap_or_else(|| panic!("no item with {key}: {value}"))
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
        let port = item(&container["ports"], "name", "metrics");
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
        let service = find_named(&docs, "Service", "podgate-metrics");
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

#[test]
fn the_readiness_gate_webhook_fails_open_and_reaches_the_controller_s_webhook_listener() {
    let Some(kubectl) = tool("kubectl", "`apt-get install -y kubernetes-client`") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The component is opt-in: the base alone has no webhook.
    let base = documents(&render(&kubectl, "base", dir.path()));
    assert!(
        !base
            .iter()
            .any(|d| d["kind"].as_str() == Some("MutatingWebhookConfiguration")),
        "the base must not inject readiness gates"
    );

    let docs = documents(&render(&kubectl, "overlays/two-clusters", dir.path()));
    let configuration = find_named(
        &docs,
        "MutatingWebhookConfiguration",
        "podgate-readiness-gate",
    );
    let webhooks = configuration["webhooks"].as_sequence().unwrap();
    assert_eq!(webhooks.len(), 1);
    let webhook = &webhooks[0];
    assert_eq!(webhook["name"].as_str(), Some("lb-registered.podgate.io"));
    // Down, slow or with a bad certificate, the webhook must never block Pod creation.
    assert_eq!(webhook["failurePolicy"].as_str(), Some("Ignore"));
    let timeout = webhook["timeoutSeconds"]
        .as_u64()
        .expect("timeoutSeconds set");
    assert!((1..=10).contains(&timeout), "timeoutSeconds {timeout}");
    assert_eq!(webhook["sideEffects"].as_str(), Some("None"));
    assert_eq!(strings(&webhook["admissionReviewVersions"]), ["v1"]);
    assert_eq!(webhook["reinvocationPolicy"].as_str(), Some("Never"));
    // Only the namespaces that opted in; podgate's own is not one of them.
    let selector = &webhook["namespaceSelector"];
    assert_eq!(
        selector["matchLabels"]["podgate.io/readiness-gate-inject"].as_str(),
        Some("enabled")
    );
    assert!(!labels_match(
        &selector["matchLabels"],
        &find(&docs, "Namespace")["metadata"]["labels"]
    ));
    // Only Pods, only on CREATE.
    let rules = webhook["rules"].as_sequence().unwrap();
    assert_eq!(rules.len(), 1);
    let rule = &rules[0];
    assert_eq!(strings(&rule["apiGroups"]), [""]);
    assert_eq!(strings(&rule["apiVersions"]), ["v1"]);
    assert_eq!(strings(&rule["resources"]), ["pods"]);
    assert_eq!(strings(&rule["operations"]), ["CREATE"]);

    // The API server reaches the controller pods' port `webhook` through the Service.
    let client = &webhook["clientConfig"]["service"];
    assert_eq!(client["path"].as_str(), Some("/mutate/pods"));
    let service = find_named(&docs, "Service", client["name"].as_str().unwrap());
    assert_eq!(client["namespace"], service["metadata"]["namespace"]);
    let client_port = client["port"]
        .as_u64()
        .expect("clientConfig.service.port set");
    let service_port = service["spec"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["port"].as_u64() == Some(client_port))
        .unwrap_or_else(|| panic!("the Service has no port {client_port}"));
    let pod = &find(&docs, "Deployment")["spec"]["template"];
    assert!(labels_match(
        &service["spec"]["selector"],
        &pod["metadata"]["labels"]
    ));
    let container = &pod["spec"]["containers"][0];
    let container_port = item(&container["ports"], "name", "webhook");
    let target = &service_port["targetPort"];
    assert!(
        target.as_str() == Some("webhook")
            || target.as_u64() == container_port["containerPort"].as_u64(),
        "targetPort {target:?} is not the container port webhook"
    );
    // Not scraped: the ServiceMonitor selects the metrics Service only.
    assert!(!labels_match(
        &find(&docs, "ServiceMonitor")["spec"]["selector"]["matchLabels"],
        &service["metadata"]["labels"]
    ));

    config_listens_where_the_pod_does(&docs, pod, container_port);
}

/// The configuration listens where the container port is and reads its certificate
/// from the Secret mounted read-only.
fn config_listens_where_the_pod_does(docs: &[Value], pod: &Value, container_port: &Value) {
    let container = &pod["spec"]["containers"][0];
    let yaml = find(docs, "ConfigMap")["data"]["podgate.yaml"]
        .as_str()
        .unwrap();
    let raw: Value = serde_yaml_ng::from_str(yaml).unwrap();
    let listener = &raw["readiness_gate"]["webhook"];
    let listen: std::net::SocketAddr = listener["listen"]
        .as_str()
        .expect("readiness_gate.webhook.listen set")
        .parse()
        .unwrap();
    assert_eq!(
        container_port["containerPort"].as_u64(),
        Some(u64::from(listen.port()))
    );
    let volume = pod["spec"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["secret"]["secretName"].as_str() == Some("podgate-webhook-tls"))
        .expect("the webhook's TLS Secret mounted");
    let mount = item(
        &container["volumeMounts"],
        "name",
        volume["name"].as_str().unwrap(),
    );
    assert_eq!(mount["readOnly"].as_bool(), Some(true));
    let mount_path = Path::new(mount["mountPath"].as_str().unwrap());
    for file in ["cert_file", "key_file"] {
        let path = Path::new(
            listener[file]
                .as_str()
                .unwrap_or_else(|| panic!("{file} set")),
        );
        assert_eq!(path.parent(), Some(mount_path), "{file}");
    }
}

#[test]
fn rbac_reads_namespaces_and_pods_and_writes_nothing_on_pods_but_their_status() {
    let Some(kubectl) = tool("kubectl", "`apt-get install -y kubernetes-client`") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for kustomization in KUSTOMIZATIONS {
        let docs = documents(&render(&kubectl, kustomization, dir.path()));
        // (resource, verb) of every core-group rule, and the ClusterRoles granting Pods.
        let mut granted = Vec::new();
        let mut pod_roles = Vec::new();
        for (role, rule) in role_rules(&docs) {
            let (groups, resources, verbs) = (
                strings(&rule["apiGroups"]),
                strings(&rule["resources"]),
                strings(&rule["verbs"]),
            );
            assert!(
                ![&groups, &resources, &verbs]
                    .iter()
                    .any(|l| l.contains(&"*")),
                "{kustomization}: wildcard in {rule:?}"
            );
            if !groups.contains(&"") {
                continue;
            }
            for resource in &resources {
                for verb in &verbs {
                    let allowed = match *resource {
                        "pods" | "namespaces" => ["get", "list", "watch"].contains(verb),
                        "pods/status" => *verb == "patch",
                        other => !other.starts_with("pods/"),
                    };
                    assert!(allowed, "{kustomization}: {verb} {resource} in {rule:?}");
                    granted.push((*resource, *verb));
                }
                if *resource == "pods" || resource.starts_with("pods/") {
                    pod_roles.push(role);
                }
            }
        }
        for (resource, verb) in [
            ("namespaces", "get"),
            ("namespaces", "list"),
            ("namespaces", "watch"),
            ("pods", "get"),
            ("pods", "list"),
            ("pods", "watch"),
            ("pods/status", "patch"),
        ] {
            assert!(
                granted.contains(&(resource, verb)),
                "{kustomization}: {verb} {resource} not granted"
            );
        }
        // Bound to the controller's ServiceAccount.
        let account = &find(&docs, "ServiceAccount")["metadata"]["name"];
        for role in pod_roles {
            assert!(
                docs.iter().any(|b| {
                    matches!(
                        b["kind"].as_str(),
                        Some("RoleBinding" | "ClusterRoleBinding")
                    ) && b["roleRef"]["kind"] == role["kind"]
                        && b["roleRef"]["name"] == role["metadata"]["name"]
                        && b["subjects"][0]["name"] == *account
                }),
                "{kustomization}: {:?} is not bound to {account:?}",
                role["metadata"]["name"]
            );
        }
    }
}

#[test]
fn rbac_reads_the_gateway_api_and_writes_only_its_status() {
    let Some(kubectl) = tool("kubectl", "`apt-get install -y kubernetes-client`") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for kustomization in KUSTOMIZATIONS {
        let docs = documents(&render(&kubectl, kustomization, dir.path()));
        let mut granted = Vec::new();
        for (_, rule) in role_rules(&docs) {
            if !strings(&rule["apiGroups"]).contains(&"gateway.networking.k8s.io") {
                continue;
            }
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    let allowed = if resource.ends_with("/status") {
                        verb == "patch"
                    } else {
                        ["get", "list", "watch"].contains(&verb)
                    };
                    assert!(allowed, "{kustomization}: {verb} {resource}");
                    granted.push(format!("{verb} {resource}"));
                }
            }
        }
        for kind in [
            "gatewayclasses",
            "gateways",
            "httproutes",
            "referencegrants",
        ] {
            for verb in ["get", "list", "watch"] {
                let want = format!("{verb} {kind}");
                assert!(granted.contains(&want), "{kustomization}: {want} missing");
            }
        }
        for kind in ["gatewayclasses", "gateways", "httproutes"] {
            let want = format!("patch {kind}/status");
            assert!(granted.contains(&want), "{kustomization}: {want} missing");
        }
    }
}
