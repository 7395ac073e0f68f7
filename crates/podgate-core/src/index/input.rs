//! The closed vocabulary of the Index's writers. Every change to the Index is one
//! [`Input`] handed to [`Index::dispatch`](super::Index::dispatch): watchers, the floor
//! guard, the hold-down and stale timers, the routability watch and the weights
//! ConfigMap all speak it, so every change can be named in a log, replayed in a test
//! (the property test replays a `Vec<Input>`) and matched exhaustively.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::{ClusterName, ClusterWeights};

use super::{EndpointTarget, Hold, Kind, Object, Prepared};

/// One change to the Index. See the module documentation.
#[derive(Clone, Debug)]
pub enum Input {
    /// A watch event: `object` was added or changed in `cluster`.
    Apply {
        cluster: ClusterName,
        object: Object,
    },
    /// A watch event: the object `namespace/name` of `kind` was deleted in `cluster`.
    Delete {
        cluster: ClusterName,
        kind: Kind,
        namespace: String,
        name: String,
    },
    /// A completed list: `objects` are all of `kind` in `cluster` (others of that kind
    /// are gone). Objects of another kind are skipped.
    Reset {
        cluster: ClusterName,
        kind: Kind,
        objects: Vec<Object>,
    },
    /// [`Input::Reset`] for objects already prepared (what a watcher buffers during a
    /// relist).
    ResetPrepared {
        cluster: ClusterName,
        kind: Kind,
        objects: Vec<Prepared>,
    },
    /// Hold-down turned on or off.
    HoldDown(bool),
    /// The hold-down timer ended a hold (ignored when the hold was superseded).
    HoldReleased(Hold),
    /// `cluster` has been stale longer than `stale_ttl` (`true`), or is back (`false`).
    ClusterExpired { cluster: ClusterName, expired: bool },
    /// The routable CIDRs of `cluster` (configured or its kube-ovn Subnets); `None`
    /// turns the routability guard off.
    Routable {
        cluster: ClusterName,
        routable: Option<Vec<IpNet>>,
    },
    /// What `cluster`'s endpoints are registered as: pod IPs or node ports.
    Target {
        cluster: ClusterName,
        target: EndpointTarget,
    },
    /// `cluster`'s Ready nodes (`name`, address), a whole list.
    Nodes {
        cluster: ClusterName,
        nodes: Vec<(String, IpAddr)>,
    },
    /// A cluster's weight for every application without an override.
    ClusterWeight { cluster: ClusterName, weight: u32 },
    /// Run-time weights of one application (`namespace/service`); `None` clears them.
    AppWeights {
        namespace: String,
        service: String,
        weights: Option<ClusterWeights>,
    },
    /// A pod carrying podgate's readiness gate whose containers became ready (`ready`),
    /// or stopped being ready, started terminating or went away: its not-ready
    /// endpoints count as Active while `ready` (see `gated.rs`).
    GatedPod {
        cluster: ClusterName,
        address: IpAddr,
        ready: bool,
    },
    /// Every gated pod of `cluster` whose containers are ready, a whole list (a relist).
    GatedPods {
        cluster: ClusterName,
        ready: Vec<IpAddr>,
    },
}
