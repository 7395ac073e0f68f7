//! The audit ring: every push to every LB, what it changed and why. Never holds
//! secret material (certificates appear by id only).

use parking_lot::Mutex;
use std::collections::VecDeque;

use serde::Serialize;

/// One push to one LB instance.
#[derive(Clone, Debug, Serialize)]
pub struct AuditEntry {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// How long the LB took to answer the push (acknowledge it, or refuse it).
    pub took_ms: u64,
    pub(crate) target: String,
    pub(crate) full: bool,
    pub(crate) upserted: Vec<String>,
    pub(crate) removed: Vec<String>,
    pub(crate) routes: bool,
    pub(crate) certificates: Vec<String>,
    /// The objects whose events caused this push.
    pub(crate) causes: Vec<String>,
    /// `ok`, or the error.
    pub result: String,
}

/// A bounded ring of the latest entries.
#[derive(Debug)]
pub struct Audit {
    entries: Mutex<VecDeque<AuditEntry>>,
    capacity: usize,
}

impl Audit {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity,
        }
    }

    pub(crate) fn record(&self, mut entry: AuditEntry) {
        entry.at_ms = crate::clock::now_ms();
        tracing::info!(
            target: "podgate::audit",
            lb = %entry.target,
            upserted = entry.upserted.len(),
            removed = entry.removed.len(),
            routes = entry.routes,
            full = entry.full,
            causes = ?entry.causes,
            result = %entry.result,
            "push"
        );
        let mut entries = self.entries.lock();
        if entries.len() == self.capacity {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    /// Newest last.
    pub fn entries(&self) -> Vec<AuditEntry> {
        let entries = self.entries.lock();
        entries.iter().cloned().collect()
    }

    /// The newest `n` entries, newest first.
    pub(crate) fn latest(&self, n: usize) -> Vec<AuditEntry> {
        let entries = self.entries.lock();
        entries.iter().rev().take(n).cloned().collect()
    }

    /// When the newest entry was recorded (ms since the Unix epoch), 0 when none.
    pub(crate) fn last_at_ms(&self) -> u64 {
        self.entries.lock().back().map_or(0, |e| e.at_ms)
    }
}
