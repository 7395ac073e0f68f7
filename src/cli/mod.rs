//! The command lines besides the three roles: clients of the controller's admin API
//! (`podgate weights`, `podgate migrate`; `podgate status`, `get`, `explain`, `why` in
//! `inspect`), `podgate check` (a configuration, without
//! starting anything) and `podgate kubeconfig` (a watched cluster's kubeconfig). Owns
//! argument checking and how results read; never talks to Kubernetes and never
//! changes anything but through the admin API.

pub mod args;
pub mod check;
pub mod inspect;
pub mod kubeconfig;
pub(crate) mod weights;

pub use weights::{AdminClient, CliError};
