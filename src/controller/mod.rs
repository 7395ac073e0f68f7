//! The controller: configuration, wiring (clusters → Index → sync workers → LBs) and
//! the admin view.

pub mod admin;
pub mod config;
mod leader;
mod progress;
mod refusals;
mod run;
mod ui;
pub mod weights;

pub use run::{Controller, ControllerError, RunOptions, start};
mod metrics;
