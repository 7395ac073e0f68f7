//! The PrometheusRule's groups pass `promtool check rules` and the unit tests in
//! deploy/prometheus/podgate.rules.test.yaml, one firing and one quiet case per alert.

use std::process::Command;

use super::{output, root, text, tool};

/// The PrometheusRule's `spec` (a Prometheus rule file) as YAML.
pub(crate) fn rule_file() -> String {
    let rule =
        std::fs::read_to_string(root().join("deploy/kubernetes/base/prometheusrule.yaml")).unwrap();
    let rule: serde_yaml_ng::Value = serde_yaml_ng::from_str(&rule).unwrap();
    serde_yaml_ng::to_string(&rule["spec"]).unwrap()
}

#[test]
fn every_alert_passes_promtool_and_its_unit_tests() {
    let Some(promtool) = tool("promtool", "`apt-get install -y prometheus`") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("podgate.rules.yaml"), rule_file()).unwrap();
    let tests = root().join("deploy/prometheus/podgate.rules.test.yaml");
    std::fs::copy(&tests, dir.path().join("podgate.rules.test.yaml")).unwrap();
    for args in [
        ["check", "rules", "podgate.rules.yaml"],
        ["test", "rules", "podgate.rules.test.yaml"],
    ] {
        let out = output(Command::new(&promtool).args(args).current_dir(dir.path()));
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }

    // Every alert has a unit test and a runbook entry.
    let tests = std::fs::read_to_string(&tests).unwrap();
    let runbook = std::fs::read_to_string(root().join("docs/operating.md")).unwrap();
    let rules: serde_yaml_ng::Value = serde_yaml_ng::from_str(&rule_file()).unwrap();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let name = rule["alert"].as_str().unwrap();
            assert!(
                tests.contains(&format!("alertname: {name}")),
                "{name} has no unit test"
            );
            assert!(
                runbook.contains(&format!("### {name}")),
                "{name} has no runbook entry"
            );
            let url = rule["annotations"]["runbook_url"].as_str().unwrap();
            assert_eq!(url, format!("docs/operating.md#{}", name.to_lowercase()));
        }
    }
}
