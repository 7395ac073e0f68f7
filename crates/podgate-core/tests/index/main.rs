//! The Index: table-driven Ingress and EndpointSlice semantics, failover, reachability and a property test of event orders.

mod common;
mod endpoints;
mod failover;
mod gated;
mod gateway;
mod paths;
mod props;
mod reach;
mod routes;
