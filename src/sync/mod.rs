//! Sync: the desired state (the Index) → every LB target, each at its own pace.
//!
//! Owns: coalescing changes per target, building batches, retry with backoff, full
//! resync on restart or drift, the audit ring. Must never decide routing semantics
//! (the Index does) nor speak an LB's protocol (the adapters do).

pub mod audit;
pub mod batch;
pub mod metrics;
pub mod quarantine;
pub mod worker;

pub use audit::{Audit, AuditEntry};
pub use metrics::SyncMetrics;
pub use quarantine::{Item, Quarantined};
pub use worker::{SyncConfig, TargetState, TargetStatus, Term, Worker, set_term};
