//! Shares one allocation among equal short strings (zones, nodes, port and service
//! names), so 150,000 endpoints cost pointers, not copies.

use std::sync::Arc;

use super::records::Set;

#[derive(Debug, Default)]
pub(crate) struct Interner(Set<Arc<str>>);

impl Interner {
    pub(crate) fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(found) = self.0.get(s) {
            return found.clone();
        }
        let new: Arc<str> = Arc::from(s);
        self.0.insert(new.clone());
        new
    }
}
