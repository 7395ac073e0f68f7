//! How one controller's objects are named inside a load balancer that several
//! controllers share (`Batch::owner`).
//!
//! Owns: the owner tag — a short hash of the owner name — that the HAProxy and Caddy
//! adapters put into every object name they create, so that each adapter sees, re-syncs
//! and removes only its own controller's backends, servers and routes. Must never let
//! the owner string itself reach an LB: it is operator input.

use ring::digest::{SHA256, digest};

/// `None` for the anonymous owner (a single controller, names as before ownership
/// existed), else `o` and 10 hex digits of SHA-256 of the owner name. Fixed length, so
/// no owner's names are a prefix of another owner's.
pub(crate) fn owner_tag(owner: Option<&str>) -> Option<String> {
    use std::fmt::Write as _;
    let owner = owner?;
    let d = digest(&SHA256, owner.as_bytes());
    Some(d.as_ref()[..5].iter().fold(String::from("o"), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_short_fixed_and_distinct() {
        assert_eq!(owner_tag(None), None);
        let a = owner_tag(Some("podgate.io/ingress-controller")).unwrap();
        let b = owner_tag(Some("team-b")).unwrap();
        assert_ne!(a, b);
        assert_eq!((a.len(), b.len()), (11, 11));
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
    }
}
