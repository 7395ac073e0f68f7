//! Pushing into real load balancers: the sync worker, the HAProxy and Caddy adapters against real processes, and a Lab driving them as extra targets.

mod caddy;
mod haproxy;
mod harness;
mod lab_targets;
mod programs;
mod sync_worker;
