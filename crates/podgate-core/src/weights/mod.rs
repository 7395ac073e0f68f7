//! Run-time traffic weights and migrations as plain values: what the weights ConfigMap
//! says (`config_map`) and how a migration ramps (`migration`).
//!
//! Owns: the ConfigMap's key and value formats, the ramp arithmetic, duration parsing.
//! Pure and synchronous: never talks to Kubernetes, never touches the Index, never reads
//! a clock (callers pass the time in). The controller's `weights` module does the I/O.

pub mod config_map;
pub mod migration;

pub use config_map::{App, GLOBAL_KEY, Problem, ValueError, WeightsDoc};
pub use migration::{Migration, MigrationError, Next, Pacing, format_duration, parse_duration};
