//! End to end: simulated clusters + controller + proxy + simulated pods (the Lab), over real TCP.

mod admin_ui;
mod controller;
mod events;
mod failover;
mod failover_lab;
mod front_lb;
mod gateway_api;
mod gateway_tls;
mod health_checks;
mod leader;
mod lifecycle;
mod migration;
mod nodeport;
mod ownership;
mod proxy_process;
mod proxy_reload;
mod proxy_restart;
mod quarantine;
mod readiness_gate;
mod rollout;
mod routability;
mod stale;
#[path = "../shared/tool.rs"]
mod tool;
mod weights;
mod weights_harness;
