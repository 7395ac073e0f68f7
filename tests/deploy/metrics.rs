//! Every metric the alerts and the Grafana dashboard name is exported by a running
//! controller and proxy (a `Lab`: simulated clusters, real proxy, real controller).

use std::collections::BTreeSet;

use podgate::demo::{Lab, LabOptions};

use super::root;

/// `podgate_…` names in `text`, as a query writes them (with `_total`, `_bucket`).
fn names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("podgate_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The metric families of a `/metrics` answer (`# TYPE` lines) and their sample names.
fn exported(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter_map(|l| {
            l.strip_prefix("# TYPE ")
                .map(|t| t.split(' ').next().unwrap_or_default().to_owned())
                .or_else(|| {
                    (!l.starts_with('#'))
                        .then(|| l.split(['{', ' ']).next().unwrap_or_default().to_owned())
                })
        })
        .filter(|n| !n.is_empty())
        .collect()
}

/// Whether `name` as a query writes it is one of `exported`: a counter `x` is
/// queried as `x_total`, a histogram as `x_bucket`, `x_sum`, `x_count`.
fn is_exported(name: &str, exported: &BTreeSet<String>) -> bool {
    exported.contains(name)
        || ["_total", "_bucket", "_sum", "_count"].iter().any(|s| {
            name.strip_suffix(s)
                .is_some_and(|base| exported.contains(base))
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_of_the_alerts_and_the_dashboard_is_exported() {
    let alerts = super::alerts::rule_file();
    let dashboard = std::fs::read_to_string(root().join("deploy/grafana/podgate.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&dashboard).expect("the dashboard is JSON");
    let wanted: BTreeSet<String> = names_in(&alerts)
        .into_iter()
        .chain(names_in(&dashboard))
        .collect();
    assert!(wanted.len() > 10, "{wanted:?}");

    let lab = Lab::start(LabOptions::default()).await.unwrap();
    // Traffic, so that per-upstream series exist.
    lab.deploy_pods("metrics", "metrics.example.com", 230, 1)
        .await
        .unwrap();
    let controller = lab.controller_metrics().await.unwrap();
    let proxy = lab.proxy_metrics().await.unwrap();
    let (controller, proxy) = (exported(&controller), exported(&proxy));
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|name| {
            let from = if name.starts_with("podgate_proxy_") {
                &proxy
            } else {
                &controller
            };
            !is_exported(name, from)
        })
        .collect();
    assert!(missing.is_empty(), "named but not exported: {missing:?}");
    // The check can fail.
    assert!(!is_exported("podgate_no_such_metric_total", &controller));
}
