//! Pushing into real load balancers: the conformance suite every LB kind passes (the
//! built-in proxy, real HAProxy, real Caddy), what is HAProxy's own, the sync worker,
//! and a Lab driving HAProxy and Caddy as extra targets of a whole controller.

mod conformance;
mod haproxy;
mod harness;
mod lab_targets;
mod programs;
mod sync_worker;
