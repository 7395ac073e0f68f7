//! The pure core of podgate: the values everyone speaks (`model`), the Index that turns
//! Kubernetes objects of several clusters into the desired L7 state (`index`), run-time
//! weights and migrations as values (`weights`), and the duration grammar (`duration`).
//!
//! Must never do I/O: this crate depends on no async runtime, Kubernetes client, HTTP
//! stack or clock, so the rule holds by construction, not by discipline. Every Ingress
//! rule can be tested in microseconds.

pub mod duration;
pub mod gateway;
pub mod guard;
pub mod index;
pub mod model;
pub mod weights;
