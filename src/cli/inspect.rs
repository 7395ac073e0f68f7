//! `podgate status`, `podgate get upstreams|hosts|pods`, `podgate explain URL` and
//! `podgate why pod NAME|IP`: clients of the controller's read API (`/v1/overview`,
//! `/v1/apps`, `/v1/explain`, `/v1/why`), printed like kubectl — upper-case columns,
//! `-o wide` for more, `-o json` for the controller's answer.

use std::fmt::Write as _;
use std::process::ExitCode;

use serde_json::Value;

use super::args::AdminArgs;
use super::{AdminClient, CliError};

/// `-o`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Columns.
    #[default]
    Table,
    /// More columns.
    Wide,
    /// The controller's JSON.
    Json,
}

/// `podgate get …`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Resource {
    /// Every upstream (`namespace/service:port`) with its hosts, shares and pods.
    Upstreams,
    /// Every host and path with the upstream it routes to.
    Hosts,
    /// Every registered pod with its upstream, state and share of requests.
    Pods,
}

/// `podgate get`.
#[derive(clap::Args)]
pub struct GetArgs {
    /// What to list.
    #[arg(value_enum)]
    pub(crate) resource: Resource,
    /// Only what matches every word (host, namespace, service, pod IP, cluster, node).
    #[arg(short = 'q', long, default_value = "")]
    pub(crate) filter: String,
    /// How to print it.
    #[arg(short, long, value_enum, default_value_t)]
    pub(crate) output: Output,
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
}

/// `podgate status`.
#[derive(clap::Args)]
pub struct StatusArgs {
    /// How to print it.
    #[arg(short, long, value_enum, default_value_t)]
    pub(crate) output: Output,
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
}

/// `podgate explain`.
#[derive(clap::Args)]
pub struct ExplainArgs {
    /// The URL, e.g. `https://shop.example.com/api/users`.
    pub(crate) url: String,
    /// How to print it.
    #[arg(short, long, value_enum, default_value_t)]
    pub(crate) output: Output,
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
}

/// `podgate why pod …`.
#[derive(clap::Args)]
pub struct WhyArgs {
    /// Always `pod`.
    #[arg(value_parser = ["pod"])]
    pub(crate) kind: String,
    /// The pod as `namespace/name`, or its IP address.
    pub(crate) pod: String,
    /// Only this cluster.
    #[arg(long)]
    pub(crate) cluster: Option<String>,
    /// How to print it.
    #[arg(short, long, value_enum, default_value_t)]
    pub(crate) output: Output,
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
}

fn block_on(
    admin: &AdminArgs,
    f: impl AsyncFnOnce(AdminClient) -> Result<Value, CliError>,
) -> Result<Value, CliError> {
    let client = AdminClient::new(&admin.controller, admin.token_file.as_deref())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Usage(format!("cannot start the runtime: {e}")))?;
    rt.block_on(f(client))
}

fn finish(outcome: Result<String, CliError>) -> ExitCode {
    match outcome {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("podgate: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn json(value: &Value) -> String {
    format!(
        "{}\n",
        serde_json::to_string_pretty(value).unwrap_or_default()
    )
}

fn query(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

pub fn run_status(args: &StatusArgs) -> ExitCode {
    finish(
        block_on(&args.admin, async |c| c.get("/v1/overview").await).map(|v| match args.output {
            Output::Json => json(&v),
            _ => status(&v, now_ms()),
        }),
    )
}

pub fn run_get(args: &GetArgs) -> ExitCode {
    let filter = query(&args.filter);
    let pages = block_on(&args.admin, async |c| {
        // Every page: the CLI lists everything that matches.
        let mut apps = Vec::new();
        let mut page = 1;
        loop {
            let v = c
                .get(&format!("/v1/apps?q={filter}&page={page}&per_page=200"))
                .await?;
            let got = v["apps"].as_array().cloned().unwrap_or_default();
            let total = v["total"].as_u64().unwrap_or(0);
            apps.extend(got);
            if apps.len() as u64 >= total || page > 10_000 {
                return Ok(Value::Array(apps));
            }
            page += 1;
        }
    });
    finish(pages.map(|apps| match args.output {
        Output::Json => json(&apps),
        output => get(
            args.resource,
            apps.as_array().map_or(&[][..], Vec::as_slice),
            output == Output::Wide,
            &args.filter,
        ),
    }))
}

pub fn run_explain(args: &ExplainArgs) -> ExitCode {
    let url = query(&args.url);
    finish(
        block_on(&args.admin, async |c| {
            c.get(&format!("/v1/explain?url={url}")).await
        })
        .map(|v| match args.output {
            Output::Json => json(&v),
            _ => explain(&v),
        }),
    )
}

pub fn run_why(args: &WhyArgs) -> ExitCode {
    let mut q = if args.pod.contains('/') {
        format!("pod={}", query(&args.pod))
    } else if args.pod.parse::<std::net::IpAddr>().is_ok() {
        format!("ip={}", query(&args.pod))
    } else {
        return finish(Err(CliError::Usage(format!(
            "{:?}: give the pod as namespace/name or its IP",
            args.pod
        ))));
    };
    if let Some(c) = &args.cluster {
        let _ = write!(q, "&cluster={}", query(c));
    }
    finish(
        block_on(&args.admin, async |c| c.get(&format!("/v1/why?{q}")).await).map(|v| {
            match args.output {
                Output::Json => json(&v),
                _ => why(&v),
            }
        }),
    )
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `3m12s`, like kubectl's AGE.
pub(crate) fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// Columns separated by three spaces, each as wide as its widest cell.
pub(crate) fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}   ", w = widths[i]);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut out, head.to_vec());
    for r in rows {
        line(&mut out, r.iter().map(String::as_str).collect());
    }
    out
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "<none>".to_owned(),
        Value::String(s) if s.is_empty() => "<none>".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn status(v: &Value, now: u64) -> String {
    let mut out = clusters_table(v, now);
    out.push('\n');
    out.push_str(&targets_table(v));
    status_tail(v, out)
}

fn clusters_table(v: &Value, now: u64) -> String {
    let since = |ms: &Value| {
        ms.as_u64()
            .map_or_else(|| "<none>".to_owned(), |m| age(now.saturating_sub(m)))
    };
    let clusters: Vec<Vec<String>> = v["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let objects = c["objects"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, n)| format!("{k}={n}"))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            vec![
                s(&c["name"]),
                s(&c["state"]),
                since(&c["since_ms"]),
                s(&c["weight"]),
                objects,
                s(&c["last_error"]),
            ]
        })
        .collect();
    table(
        &[
            "CLUSTER",
            "STATE",
            "SINCE",
            "WEIGHT",
            "OBJECTS",
            "LAST ERROR",
        ],
        &clusters,
    )
}

fn targets_table(v: &Value) -> String {
    let targets: Vec<Vec<String>> = v["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let ack = t["last_ack_ago_ms"]
                .as_u64()
                .map_or_else(|| "never".to_owned(), |ms| format!("{} ago", age(ms)));
            vec![
                s(&t["name"]),
                s(&t["state"]),
                s(&t["lag"]),
                ack,
                s(&t["pushes"]),
                s(&t["failures"]),
                t["quarantined"].as_array().map_or(0, Vec::len).to_string(),
                s(&t["last_error"]),
            ]
        })
        .collect();
    table(
        &[
            "TARGET",
            "STATE",
            "LAG",
            "LAST PUSH",
            "PUSHES",
            "FAILURES",
            "QUARANTINED",
            "LAST ERROR",
        ],
        &targets,
    )
}

fn status_tail(v: &Value, mut out: String) -> String {
    let c = &v["counts"];
    let _ = write!(
        out,
        "\n{} hosts, {} upstreams, {} endpoints, {} pods waiting for the LB; {}\n",
        s(&c["hosts"]),
        s(&c["upstreams"]),
        s(&c["endpoints"]),
        s(&c["gated_waiting"]),
        if v["pushing"] == true {
            "this replica pushes to the LBs"
        } else {
            "standby: another replica pushes"
        }
    );
    let problems = v["problems"].as_array().cloned().unwrap_or_default();
    if problems.is_empty() {
        out.push_str("No problems.\n");
    } else {
        let _ = writeln!(out, "\nPROBLEMS ({})", problems.len());
        for p in problems {
            let _ = writeln!(
                out,
                "  {:<8} {}: {}",
                s(&p["severity"]),
                s(&p["subject"]),
                s(&p["message"])
            );
        }
    }
    out
}

fn get(resource: Resource, apps: &[Value], wide: bool, filter: &str) -> String {
    match resource {
        Resource::Upstreams => get_upstreams(apps, wide),
        Resource::Hosts => get_hosts(apps),
        Resource::Pods => get_pods(apps, wide, filter),
    }
}

fn list(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

fn get_upstreams(apps: &[Value], wide: bool) -> String {
    let rows: Vec<Vec<String>> = apps
        .iter()
        .map(|a| {
            let pods = list(&a["pods"]);
            let active = pods.iter().filter(|p| p["state"] == "active").count();
            let hosts: Vec<String> = list(&a["routes"])
                .iter()
                .map(|r| s(&r["host"]))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let shares = a["shares"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(c, n)| format!("{c}={}%", n.as_u64().unwrap_or(0) / 10))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let mut row = vec![
                s(&a["upstream"]),
                hosts.join(","),
                if shares.is_empty() {
                    "<none>".to_owned()
                } else {
                    shares
                },
                format!("{active}/{}", pods.len()),
            ];
            if wide {
                row.push(s(&a["health_check"]));
                row.push(
                    a["targets"]
                        .as_object()
                        .map(|o| {
                            o.iter()
                                .map(|(t, st)| format!("{t}={}", s(st)))
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_default(),
                );
            }
            row
        })
        .collect();
    let mut head = vec!["UPSTREAM", "HOSTS", "SHARES", "ACTIVE/PODS"];
    if wide {
        head.extend(["HEALTH CHECK", "TARGETS"]);
    }
    table(&head, &rows)
}

fn get_hosts(apps: &[Value]) -> String {
    let mut rows: Vec<Vec<String>> = apps
        .iter()
        .flat_map(|a| {
            list(&a["routes"])
                .into_iter()
                .map(|r| vec![s(&r["host"]), s(&r["path"]), s(&a["upstream"])])
                .collect::<Vec<_>>()
        })
        .collect();
    rows.sort();
    table(&["HOST", "PATH", "UPSTREAM"], &rows)
}

/// Pods of the matching upstreams that match every word themselves too (an upstream
/// matches `tke` when one of its pods runs there; its idc pods do not).
fn get_pods(apps: &[Value], wide: bool, filter: &str) -> String {
    let words: Vec<String> = filter.split_whitespace().map(str::to_lowercase).collect();
    let rows: Vec<Vec<String>> = apps
        .iter()
        .flat_map(|a| {
            let hosts: String = list(&a["routes"])
                .iter()
                .map(|r| s(&r["host"]))
                .collect::<Vec<_>>()
                .join(" ");
            let words = &words;
            list(&a["pods"])
                .into_iter()
                .filter(move |p| {
                    let fields = format!(
                        "{} {} {} {} {} {} {}",
                        s(&p["cluster"]),
                        s(&p["address"]),
                        s(&p["node"]),
                        s(&p["zone"]),
                        s(&p["name"]),
                        s(&a["upstream"]),
                        hosts
                    )
                    .to_lowercase();
                    words.iter().all(|w| fields.contains(w.as_str()))
                })
                .map(|p| {
                    let mut row = vec![
                        s(&p["cluster"]),
                        address(&p),
                        s(&a["upstream"]),
                        s(&p["state"]),
                        percent(&p["probability"]),
                    ];
                    if wide {
                        row.extend([
                            s(&p["name"]),
                            s(&p["node"]),
                            s(&p["zone"]),
                            s(&p["weight"]),
                            s(&p["gate"]),
                        ]);
                    }
                    row
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let mut head = vec!["CLUSTER", "ADDRESS", "UPSTREAM", "STATE", "SHARE"];
    if wide {
        head.extend(["POD", "NODE", "ZONE", "WEIGHT", "GATE"]);
    }
    table(&head, &rows)
}

/// `10.0.0.5:8080`, or the address alone for one the LB does not get (no port).
fn address(p: &Value) -> String {
    match p["port"].as_u64() {
        Some(port) if port > 0 => format!("{}:{port}", s(&p["address"])),
        _ => s(&p["address"]),
    }
}

/// `50%`, `16.7%`.
fn percent(v: &Value) -> String {
    let n = v.as_f64().unwrap_or(0.0);
    if n.fract() == 0.0 {
        format!("{n:.0}%")
    } else {
        format!("{n:.1}%")
    }
}

fn upstream_name(u: &Value) -> String {
    if u.is_null() {
        return "<none>".to_owned();
    }
    format!(
        "{}/{}:{}",
        s(&u["namespace"]),
        s(&u["service"]),
        s(&u["port"]).trim_matches('"')
    )
}

/// The host's Gateway API rules, in the order they are tried, and the split of the
/// deciding one.
fn gateway_rules(v: &Value, out: &mut String) {
    let split = |backends: &Value| {
        backends
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| {
                let to = if b["upstream"].is_null() {
                    "500 (unresolved)".to_owned()
                } else {
                    upstream_name(&b["upstream"])
                };
                format!("{to} ×{}", s(&b["weight"]))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rows: Vec<Vec<String>> = v["gateway_rules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let needs: Vec<String> = r["needs"].as_array().into_iter().flatten().map(s).collect();
            let (path, kind) = if r["path_regex"].is_string() {
                (s(&r["path_regex"]), "RegularExpression".to_owned())
            } else {
                (
                    s(&r["path"]["path"]).replace("<none>", "/"),
                    s(&r["path"]["kind"]),
                )
            };
            vec![
                s(&r["source"]),
                path,
                kind,
                if needs.is_empty() {
                    "-".to_owned()
                } else {
                    needs.join(", ")
                },
                if r["redirects"] == true {
                    "redirect".to_owned()
                } else {
                    split(&r["backends"])
                },
                if r["path_matches"] == true {
                    "yes"
                } else {
                    "no"
                }
                .to_owned(),
            ]
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    out.push_str("\nGateway API rules of the host, in the order they are tried:\n");
    out.push_str(&table(
        &[
            "ROUTE",
            "PATH",
            "TYPE",
            "ALSO NEEDS",
            "BACKENDS",
            "PATH MATCHES",
        ],
        &rows,
    ));
    if v["backends"].as_array().is_some_and(|b| b.len() > 1) {
        let _ = writeln!(
            out,
            "\nSplit of the deciding rule: {}",
            split(&v["backends"])
        );
    }
}

fn explain(v: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "URL:       {}", s(&v["url"]));
    let pattern = if v["pattern"].is_null() {
        String::new()
    } else {
        format!(" ({})", s(&v["pattern"]))
    };
    let _ = writeln!(
        out,
        "Host:      {}: {}{pattern}",
        s(&v["host"]),
        s(&v["host_match"])
    );
    let rule = if v["via"] == "path rule" || v["via"] == "Gateway API rule" {
        let what = if v["via"] == "path rule" {
            "rule"
        } else {
            "Gateway API rule"
        };
        format!(
            "{what} {} {}",
            s(&v["rule"]["kind"]),
            s(&v["rule"]["path"]).replace("<none>", "/")
        )
    } else {
        s(&v["via"])
    };
    let _ = writeln!(out, "Path:      {}: decided by {rule}", s(&v["path"]));
    if let Some(first) = v["ingresses"].as_array().and_then(|a| a.first()) {
        let _ = writeln!(out, "Ingress:   {}", s(first));
        for lost in v["ingresses"].as_array().into_iter().flatten().skip(1) {
            let _ = writeln!(out, "           (won over {}: older first)", s(lost));
        }
    }
    let _ = writeln!(out, "Upstream:  {}", upstream_name(&v["upstream"]));
    if !v["tls"].is_null() {
        let _ = writeln!(out, "TLS:       certificate {}", s(&v["tls"]));
    }
    let rules: Vec<Vec<String>> = v["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            vec![
                s(&r["path"]["path"]).replace("<none>", "/"),
                s(&r["path"]["kind"]),
                upstream_name(&r["upstream"]),
                if r["matches"] == true {
                    "yes".to_owned()
                } else {
                    "no".to_owned()
                },
            ]
        })
        .collect();
    if !rules.is_empty() {
        out.push_str("\nRules of the host, in precedence order:\n");
        out.push_str(&table(&["PATH", "TYPE", "UPSTREAM", "MATCHES"], &rules));
    }
    gateway_rules(v, &mut out);
    let pods: Vec<Vec<String>> = v["pods"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            vec![
                s(&p["cluster"]),
                format!("{}:{}", s(&p["address"]), s(&p["port"])),
                s(&p["state"]),
                percent(&p["probability"]),
            ]
        })
        .collect();
    if !pods.is_empty() {
        out.push_str("\nPods that would serve it:\n");
        out.push_str(&table(
            &["CLUSTER", "ADDRESS", "STATE", "PROBABILITY"],
            &pods,
        ));
    }
    for d in v["diagnostics"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "warning: {}", s(d));
    }
    out
}

fn why(v: &Value) -> String {
    let mut out = format!("{}:\n", s(&v["query"]));
    for line in v["reasons"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "  - {}", s(line));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_like_kubectl() {
        let t = table(
            &["NAME", "STATE"],
            &[
                vec!["idc".into(), "synced".into()],
                vec!["tke-long".into(), "stale".into()],
            ],
        );
        assert_eq!(t, "NAME       STATE\nidc        synced\ntke-long   stale\n");
        assert_eq!(age(192_000), "3m12s");
        assert_eq!(age(5_000), "5s");
    }

    #[test]
    fn explain_lists_gateway_api_rules_with_what_they_need_and_the_split() {
        let key = |svc: &str| serde_json::json!({"namespace": "shop", "service": svc, "port": 80});
        let v = serde_json::json!({
            "url": "http://gw.example.com/x", "host": "gw.example.com", "host_match": "exact",
            "pattern": "gw.example.com", "path": "/x", "via": "Gateway API rule",
            "rule": {"kind": "Prefix", "path": ""}, "upstream": key("stable"), "rules": [],
            "gateway_rules": [
                {"source": "HTTPRoute shop/web rule 0", "path": {"kind": "Prefix", "path": ""},
                 "needs": ["header x-canary: true"], "backends": [{"upstream": key("canary"), "weight": 1}],
                 "redirects": false, "path_matches": true},
                {"source": "HTTPRoute shop/web rule 1", "path": {"kind": "Prefix", "path": ""},
                 "needs": [], "backends": [{"upstream": key("stable"), "weight": 3}, {"upstream": null, "weight": 1}],
                 "redirects": false, "path_matches": true},
            ],
            "backends": [{"upstream": key("stable"), "weight": 3}, {"upstream": null, "weight": 1}],
            "pods": [], "ingresses": [], "diagnostics": [],
        });
        let out = explain(&v);
        assert!(out.contains("decided by Gateway API rule"), "{out}");
        assert!(out.contains("header x-canary: true"), "{out}");
        assert!(
            out.contains("Split of the deciding rule: shop/stable:80 ×3"),
            "{out}"
        );
        assert!(out.contains("HTTPRoute shop/web rule 1"), "{out}");
    }
}
