//! Claims of one scope → its virtual host. The oldest claim on each path wins; the
//! others are recorded as conflicts. Deterministic for any order of events.

use std::collections::BTreeMap;

use crate::model::{PathMatch, Route, VirtualHost};

use super::claims::{Owner, RouteClaim, TlsClaim};

/// All claims on one scope, from every cluster.
#[derive(Clone, Debug, Default)]
pub(crate) struct ScopeClaims {
    pub(crate) routes: Vec<RouteClaim>,
    pub(crate) tls: Vec<TlsClaim>,
}

impl ScopeClaims {
    pub(crate) fn is_empty(&self) -> bool {
        self.routes.is_empty() && self.tls.is_empty()
    }

    pub(crate) fn withdraw(&mut self, owner: &Owner) {
        self.routes.retain(|c| c.owner != *owner);
        self.tls.retain(|c| c.owner != *owner);
    }

    /// The winning TLS claim (oldest owner).
    pub(crate) fn tls_winner(&self) -> Option<&TlsClaim> {
        self.tls.iter().min_by(|a, b| a.owner.cmp(&b.owner))
    }
}

/// A claim that lost to an older one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Conflict {
    pub(crate) path: Option<PathMatch>,
    pub(crate) loser: Owner,
    pub(crate) winner: Owner,
}

/// Builds the virtual host of one scope, without TLS (the caller resolves the Secret).
/// `None` when no route claim is left.
pub(crate) fn build(claims: &ScopeClaims) -> (Option<VirtualHost>, Vec<Conflict>) {
    let mut by_path: BTreeMap<Option<&PathMatch>, Vec<&RouteClaim>> = BTreeMap::new();
    for c in &claims.routes {
        by_path.entry(c.path.as_ref()).or_default().push(c);
    }
    let mut vhost = VirtualHost {
        routes: Vec::with_capacity(by_path.len()),
        ..VirtualHost::default()
    };
    let mut conflicts = Vec::new();
    for (path, mut contenders) in by_path {
        contenders.sort_by(|a, b| a.owner.cmp(&b.owner).then(a.upstream.cmp(&b.upstream)));
        let winner = contenders[0];
        for loser in &contenders[1..] {
            // The same Ingress seen in two clusters is one Ingress, unless the clusters
            // disagree on where the path goes.
            if !loser.owner.same_ingress(&winner.owner) || loser.upstream != winner.upstream {
                conflicts.push(Conflict {
                    path: path.cloned(),
                    loser: loser.owner.clone(),
                    winner: winner.owner.clone(),
                });
            }
        }
        match path {
            Some(p) => vhost.routes.push(Route {
                path: p.clone(),
                upstream: winner.upstream.clone(),
            }),
            None => vhost.default_backend = Some(winner.upstream.clone()),
        }
    }
    if vhost.routes.is_empty() && vhost.default_backend.is_none() {
        return (None, conflicts);
    }
    vhost.routes.sort_by(|a, b| a.path.precedence(&b.path));
    (Some(vhost), conflicts)
}
