//! Command-line clients of the controller's admin API (`podgate weights`, `podgate
//! migrate`). Owns argument checking and how results read; never talks to Kubernetes
//! and never changes anything but through the admin API.

pub mod args;
pub(crate) mod weights;

pub use weights::{AdminClient, CliError};
