//! The hub: the one place where everything that changes the desired state meets the
//! Index — watchers, the floor guards, the weights ConfigMap, the stale and hold-down
//! timers — and where each change fans out to every LB target's inbox.
//!
//! Owns: the Index behind its lock (`desired`), the typed cause of every write
//! (`cause`), the per-target inboxes (`inbox`) and the hold-down timer (`hold_down`).
//! Every write is an [`Input`](podgate_core::index::Input); a guard may veto one
//! after reading the Index under the same lock, never write through a closure. Must
//! never decide routing semantics (the Index does) nor push to an LB (the sync
//! workers do).

mod cause;
mod desired;
pub(crate) mod hold_down;
mod inbox;

pub use cause::Cause;
pub use desired::Desired;
pub(crate) use inbox::{Pending, Work};
