//! Endpoints as HAProxy servers: read what a backend holds, diff it against the desired
//! upstream, and run the runtime commands between them.
//!
//! Owns: `show servers state` parsing, the server diff, and the add / weight / drain /
//! delete commands. Must never touch a server whose name lacks podgate's prefix, and
//! never `del server` one that is not in maintenance first (HAProxy also refuses while
//! connections remain; such a server stays in maintenance and is retried later).

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::names::{SERVER_PREFIX, WeightScale, haproxy_addr, parse_server_name, server_name};
use super::runtime::{RuntimeClient, RuntimeError};
use podgate_core::model::{EndpointState, Upstream};

/// Options of every podgate server (file and `add server` alike). Idle pooled
/// connections keep HAProxy from deleting a server, and by default they are purged only
/// every 5 s (half at a time): purge faster so that removed endpoints go soon after
/// their last request, while keep-alive to pods is still used.
pub(crate) const SERVER_OPTIONS: &str = "pool-purge-delay 1s";

/// `srv_admin_state` bits (HAProxy's `SRV_ADMF_*`).
const ADMIN_MAINT: u32 = 0x01 | 0x02 | 0x04 | 0x20;
const ADMIN_DRAIN: u32 = 0x08 | 0x10;

/// One server as `show servers state` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LiveServer {
    pub(crate) backend: String,
    pub(crate) name: String,
    pub(crate) address: IpAddr,
    pub(crate) port: u16,
    pub(crate) admin: u32,
    pub(crate) weight: u32,
}

impl LiveServer {
    pub(crate) fn in_maint(&self) -> bool {
        self.admin & ADMIN_MAINT != 0
    }
    pub(crate) fn draining(&self) -> bool {
        self.admin & ADMIN_DRAIN != 0
    }
}

/// Parses `show servers state [backend]`, keeping only podgate's servers.
pub(crate) fn parse_servers_state(answer: &str) -> Vec<LiveServer> {
    answer
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 19 || !f[3].starts_with(SERVER_PREFIX) {
                return None;
            }
            Some(LiveServer {
                backend: f[1].to_owned(),
                name: f[3].to_owned(),
                address: f[4].parse().ok()?,
                admin: f[6].parse().ok()?,
                weight: f[7].parse().ok()?,
                port: f[18].parse().ok()?,
            })
        })
        .collect()
}

/// One runtime change to one server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ServerOp {
    Add {
        name: String,
        addr: String,
        weight: u32,
        draining: bool,
        /// ` check inter … rise … fall …` when the upstream has health checks.
        check: String,
    },
    Weight {
        name: String,
        weight: u32,
    },
    Ready {
        name: String,
    },
    Drain {
        name: String,
    },
    Remove {
        name: String,
    },
}

/// The `check` options of every server of `up` (HAProxy's own checks: `inter`, `rise`,
/// `fall`), empty without a health check. The backend's `option httpchk` lines come
/// from `render.rs`.
pub(crate) fn check_options(up: &Upstream) -> String {
    up.health_check.as_ref().map_or_else(String::new, |c| {
        format!(
            " check inter {}ms rise {} fall {}",
            c.interval_ms, c.healthy_threshold, c.unhealthy_threshold
        )
    })
}

/// The operations that turn `live` (one backend's podgate servers) into `desired`.
/// `desired == None` removes every podgate server (the upstream is gone).
pub(crate) fn diff_servers(desired: Option<&Upstream>, live: &[LiveServer]) -> Vec<ServerOp> {
    let mut ops = Vec::new();
    let check = desired.map(check_options).unwrap_or_default();
    let mut want: BTreeMap<String, (String, u32, bool)> = BTreeMap::new();
    if let Some(up) = desired {
        let scale = WeightScale::for_weights(up.endpoints.iter().map(|e| e.weight));
        for e in &up.endpoints {
            let draining = e.state == EndpointState::Draining;
            let w = if draining {
                0
            } else {
                scale.to_haproxy(e.weight)
            };
            want.insert(
                server_name(e),
                (haproxy_addr(e.address, e.port), w, draining),
            );
        }
    }
    for s in live {
        match want.remove(&s.name) {
            None => ops.push(ServerOp::Remove {
                name: s.name.clone(),
            }),
            Some((_, w, draining)) => {
                if !draining && s.weight != w {
                    ops.push(ServerOp::Weight {
                        name: s.name.clone(),
                        weight: w,
                    });
                }
                if draining && (!s.draining() || s.in_maint()) {
                    ops.push(ServerOp::Drain {
                        name: s.name.clone(),
                    });
                } else if !draining && s.admin != 0 {
                    ops.push(ServerOp::Ready {
                        name: s.name.clone(),
                    });
                }
            }
        }
    }
    for (name, (addr, weight, draining)) in want {
        ops.push(ServerOp::Add {
            name,
            addr,
            weight,
            draining,
            check: check.clone(),
        });
    }
    ops
}

/// Runs the operations on one backend. Returns the servers whose deletion HAProxy
/// refused for now (still connected): they stay in maintenance, to be retried.
pub(crate) async fn run_ops(
    rt: &RuntimeClient,
    backend: &str,
    ops: &[ServerOp],
) -> Result<Vec<String>, RuntimeError> {
    let mut deferred = Vec::new();
    for op in ops {
        match op {
            ServerOp::Add {
                name,
                addr,
                weight,
                draining,
                check,
            } => {
                rt.run(
                    &format!(
                        "add server {backend}/{name} {addr} weight {weight} {SERVER_OPTIONS}{check}"
                    ),
                    &["New server registered"],
                )
                .await?;
                // A server added at run time starts with its checks off.
                if !check.is_empty() {
                    rt.run(&format!("enable health {backend}/{name}"), &[])
                        .await?;
                }
                let state = if *draining { "drain" } else { "ready" };
                rt.run(&format!("set server {backend}/{name} state {state}"), &[])
                    .await?;
            }
            ServerOp::Weight { name, weight } => {
                rt.run(&format!("set server {backend}/{name} weight {weight}"), &[])
                    .await?;
            }
            ServerOp::Ready { name } => {
                rt.run(&format!("set server {backend}/{name} state ready"), &[])
                    .await?;
            }
            ServerOp::Drain { name } => {
                rt.run(&format!("set server {backend}/{name} state drain"), &[])
                    .await?;
            }
            ServerOp::Remove { name } => {
                if !remove_server(rt, backend, name).await? {
                    deferred.push(name.clone());
                }
            }
        }
    }
    Ok(deferred)
}

/// Maintenance, then `del server`. `Ok(false)` when HAProxy keeps it for now.
pub(crate) async fn remove_server(
    rt: &RuntimeClient,
    backend: &str,
    name: &str,
) -> Result<bool, RuntimeError> {
    if parse_server_name(name).is_none() {
        return Ok(true); // not podgate's: never touched
    }
    rt.run(&format!("set server {backend}/{name} state maint"), &[])
        .await?;
    let answer = rt.raw(&format!("del server {backend}/{name}")).await?;
    Ok(answer.contains("Server deleted") || answer.contains("No such server"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use podgate_core::model::{ClusterName, Endpoint, PortRef, UpstreamKey};

    fn ep(addr: &str, state: EndpointState, weight: u32) -> Endpoint {
        Endpoint {
            cluster: ClusterName::new("idc"),
            address: addr.parse().unwrap(),
            port: 80,
            zone: None,
            node: None,
            state,
            weight,
        }
    }

    #[test]
    fn diff_adds_reweights_drains_and_removes() {
        let up = Upstream {
            health_check: None,
            key: UpstreamKey::new("ns", "web", PortRef::Number(80)),
            shares: vec![],
            endpoints: vec![
                ep("10.0.0.1", EndpointState::Active, 5),
                ep("10.0.0.2", EndpointState::Draining, 0),
                ep("10.0.0.3", EndpointState::Active, 5),
            ],
        };
        let answer = "1\n# be_id be_name srv_id srv_name ...\n\
            3 pg_be_x 1 pg-idc-10.0.0.1-80 10.0.0.1 2 0 7 7 0 1 0 0 0 0 0 0 - 80 - 0 0 - - 0\n\
            3 pg_be_x 2 pg-idc-10.0.0.2-80 10.0.0.2 2 0 5 5 0 1 0 0 0 0 0 0 - 80 - 0 0 - - 0\n\
            3 pg_be_x 3 pg-idc-10.0.0.9-80 10.0.0.9 2 0 5 5 0 1 0 0 0 0 0 0 - 80 - 0 0 - - 0\n\
            3 pg_be_x 4 static1 10.0.0.8 2 0 5 5 0 1 0 0 0 0 0 0 - 80 - 0 0 - - 0\n";
        let live = parse_servers_state(answer);
        assert_eq!(live.len(), 3, "the operator's server is invisible");
        let ops = diff_servers(Some(&up), &live);
        assert_eq!(
            ops,
            vec![
                ServerOp::Weight {
                    name: "pg-idc-10.0.0.1-80".into(),
                    weight: 5
                },
                ServerOp::Drain {
                    name: "pg-idc-10.0.0.2-80".into()
                },
                ServerOp::Remove {
                    name: "pg-idc-10.0.0.9-80".into()
                },
                ServerOp::Add {
                    name: "pg-idc-10.0.0.3-80".into(),
                    addr: "10.0.0.3:80".into(),
                    weight: 5,
                    draining: false,
                    check: String::new(),
                },
            ]
        );
        assert!(
            diff_servers(None, &live)
                .iter()
                .all(|o| matches!(o, ServerOp::Remove { .. }))
        );
    }
}
