//! Why the Index changed: the typed cause every write into the hub carries, shown in
//! the audit ring (`/v1/state`, the timeline) as one line.

use std::fmt;

use podgate_core::index::Kind;
use podgate_core::model::{ClusterName, UpstreamKey};

/// What made a write into the Index happen. `Display` is the audit log's line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// A watch event on one object (`deleted`: a DELETED event).
    Event {
        cluster: ClusterName,
        kind: Kind,
        namespace: String,
        name: String,
        deleted: bool,
    },
    /// A watcher's completed list of one kind.
    Relist {
        cluster: ClusterName,
        kind: Kind,
        objects: usize,
    },
    /// The floor guard's fresh list, after `confirm_after`, of a held withdrawal.
    Confirmation {
        cluster: ClusterName,
        what: &'static str,
        objects: usize,
    },
    /// The cluster was stale longer than `stale_ttl`.
    StaleTooLong {
        cluster: ClusterName,
        stale_ttl_ms: u128,
    },
    /// An expired cluster answered a list again.
    RelistedAfterExpiry {
        cluster: ClusterName,
        objects: usize,
    },
    /// The Ready nodes of a cluster (NodePort target).
    Nodes { cluster: ClusterName, ready: usize },
    /// A cluster's kube-ovn Subnets.
    Subnets { cluster: ClusterName, cidrs: usize },
    /// A fresh list of a cluster's kube-ovn Subnets, after a held withdrawal.
    SubnetsConfirmed { cluster: ClusterName, cidrs: usize },
    /// The hold-down of a recovered cluster's share is over.
    HoldDownOver {
        cluster: ClusterName,
        upstream: UpstreamKey,
    },
    /// The weights ConfigMap (`namespace/name`) in the home cluster.
    WeightsConfigMap {
        cluster: ClusterName,
        object: String,
    },
    /// A gated pod's containers became ready (`ready`), or it stopped counting.
    GatedPod {
        cluster: ClusterName,
        namespace: String,
        name: String,
        ready: bool,
    },
    /// The gated pods of a cluster, after a relist of one opted-in namespace.
    GatedPods {
        cluster: ClusterName,
        namespace: String,
        ready: usize,
    },
    /// A test or benchmark driving the hub directly.
    Test(&'static str),
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Event {
                cluster,
                kind,
                namespace,
                name,
                deleted,
            } => {
                write!(f, "{cluster}: {kind} {namespace}/{name}")?;
                if *deleted {
                    f.write_str(" deleted")?;
                }
                Ok(())
            }
            Self::Relist {
                cluster,
                kind,
                objects,
            } => write!(f, "{cluster}: {kind} relist ({objects} objects)"),
            Self::Confirmation {
                cluster,
                what,
                objects,
            } => write!(
                f,
                "{cluster}: {what} list confirming a held withdrawal ({objects} objects)"
            ),
            Self::StaleTooLong {
                cluster,
                stale_ttl_ms,
            } => write!(f, "{cluster}: stale for {stale_ttl_ms}ms (stale_ttl)"),
            Self::RelistedAfterExpiry { cluster, objects } => {
                write!(f, "{cluster}: relisted after expiry ({objects} objects)")
            }
            Self::Nodes { cluster, ready } => write!(f, "{cluster}: Nodes ({ready} ready)"),
            Self::Subnets { cluster, cidrs } => {
                write!(f, "{cluster}: kube-ovn Subnets ({cidrs} CIDRs)")
            }
            Self::SubnetsConfirmed { cluster, cidrs } => write!(
                f,
                "{cluster}: kube-ovn Subnets confirmed by a fresh list ({cidrs} CIDRs)"
            ),
            Self::HoldDownOver { cluster, upstream } => {
                write!(f, "{cluster}: hold-down over for {upstream}")
            }
            Self::WeightsConfigMap { cluster, object } => {
                write!(f, "{cluster}: ConfigMap {object}")
            }
            Self::GatedPod {
                cluster,
                namespace,
                name,
                ready,
            } => {
                let now = if *ready {
                    "containers ready, waiting for the LB"
                } else {
                    "no longer waiting for the LB"
                };
                write!(f, "{cluster}: Pod {namespace}/{name} {now}")
            }
            Self::GatedPods {
                cluster,
                namespace,
                ready,
            } => write!(
                f,
                "{cluster}: Pods relist in {namespace} ({ready} gated pods with ready containers in the cluster)"
            ),
            Self::Test(what) => f.write_str(what),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_lines_read_as_before() {
        let idc = ClusterName::new("idc");
        let event = |deleted| Cause::Event {
            cluster: idc.clone(),
            kind: Kind::EndpointSlice,
            namespace: "shop".into(),
            name: "web-1".into(),
            deleted,
        };
        assert_eq!(event(false).to_string(), "idc: EndpointSlice shop/web-1");
        assert_eq!(
            event(true).to_string(),
            "idc: EndpointSlice shop/web-1 deleted"
        );
        let relist = Cause::Relist {
            cluster: idc.clone(),
            kind: Kind::Ingress,
            objects: 3,
        };
        assert_eq!(relist.to_string(), "idc: Ingress relist (3 objects)");
        let confirmation = Cause::Confirmation {
            cluster: idc,
            what: "EndpointSlice",
            objects: 2,
        };
        assert_eq!(
            confirmation.to_string(),
            "idc: EndpointSlice list confirming a held withdrawal (2 objects)"
        );
    }
}
