//! podgate: pod IPs from several Kubernetes clusters, straight into an L7 load balancer.
//!
//! Data flows one way: `cluster` (watchers) → `index` (pure) → `sync` (one worker per
//! LB target) → `lb` (adapters) → the load balancer, e.g. the built-in `proxy`.
//! `sim` is the simulated Kubernetes API server used by tests and `podgate demo`.

pub mod cli;
pub mod cluster;
pub mod controller;
pub mod demo;
pub mod duration;
pub mod index;
pub mod lb;
pub mod model;
pub mod objects;
pub mod proxy;
pub mod sim;
pub mod sync;
pub mod weights;
