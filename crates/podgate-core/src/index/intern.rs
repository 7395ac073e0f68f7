//! Shares one allocation among equal short strings (zones, nodes, port and service
//! names), so 150,000 endpoints cost pointers, not copies.

use std::sync::Arc;

use super::records::{Locality, Map, Set};

#[derive(Debug, Default)]
pub(crate) struct Interner {
    strings: Set<Arc<str>>,
    /// Keyed by `zone \0 node` (`\x01` marks an absent part), so that a hit costs one
    /// hash of the raw strings and nothing else.
    localities: Map<Box<str>, Arc<Locality>>,
    key: String,
}

impl Interner {
    pub(crate) fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(found) = self.strings.get(s) {
            return found.clone();
        }
        let new: Arc<str> = Arc::from(s);
        self.strings.insert(new.clone());
        new
    }

    /// One shared value per (zone, node) pair; `None` when neither is known.
    pub(crate) fn locality(
        &mut self,
        zone: Option<&str>,
        node: Option<&str>,
    ) -> Option<Arc<Locality>> {
        if zone.is_none() && node.is_none() {
            return None;
        }
        self.key.clear();
        self.key.push_str(zone.unwrap_or("\x01"));
        self.key.push('\0');
        self.key.push_str(node.unwrap_or("\x01"));
        if let Some(found) = self.localities.get(self.key.as_str()) {
            return Some(found.clone());
        }
        let locality = Arc::new(Locality {
            zone: zone.map(|z| self.intern(z)),
            node: node.map(|n| self.intern(n)),
        });
        self.localities
            .insert(self.key.as_str().into(), locality.clone());
        Some(locality)
    }
}
