//! The controller: configuration, wiring (clusters → Index → sync workers → LBs) and
//! the admin view.

pub mod admin;
pub mod config;
mod metrics;
