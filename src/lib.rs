//! podgate: pod IPs from several Kubernetes clusters, straight into an L7 load balancer.
//!
//! Data flows one way: `cluster` (watchers) → the pure core (`podgate_core::index`) →
//! `sync` (one worker per LB target) → `lb` (adapters) → the load balancer, e.g. the
//! built-in `proxy`. The simulated Kubernetes API server (`podgate_sim`) stands in for
//! real clusters in tests and `podgate demo`.

mod admin_http;
pub mod cli;
mod clock;
pub mod cluster;
pub mod controller;
pub mod demo;
pub mod gate;
pub mod hub;
pub mod lb;
pub mod logging;
mod process_metrics;
pub mod proxy;
pub mod sync;
