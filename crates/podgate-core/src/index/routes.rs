//! Claims of one scope → its virtual host. The oldest claim on each path wins; the
//! others are recorded as conflicts. Deterministic for any order of events.

use std::collections::BTreeMap;

use crate::model::{PathMatch, Route, VirtualHost};

use super::claims::{Owner, RouteClaim, RuleClaim, TlsClaim};

/// All claims on one scope, from every cluster.
#[derive(Clone, Debug, Default)]
pub(crate) struct ScopeClaims {
    pub(crate) routes: Vec<RouteClaim>,
    pub(crate) tls: Vec<TlsClaim>,
    /// Gateway API rules (HTTPRoutes).
    pub(crate) rules: Vec<RuleClaim>,
}

impl ScopeClaims {
    pub(crate) fn is_empty(&self) -> bool {
        self.routes.is_empty() && self.tls.is_empty() && self.rules.is_empty()
    }

    pub(crate) fn withdraw(&mut self, owner: &Owner) {
        self.routes.retain(|c| c.owner != *owner);
        self.tls.retain(|c| c.owner != *owner);
        self.rules.retain(|c| c.owner != *owner);
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
    vhost.rules = ordered_rules(&claims.rules);
    if vhost.routes.is_empty() && vhost.default_backend.is_none() && vhost.rules.is_empty() {
        return (None, conflicts);
    }
    vhost.routes.sort_by(|a, b| a.path.precedence(&b.path));
    (Some(vhost), conflicts)
}

/// The Gateway API rules of one scope in the specification's order (match precedence,
/// then the oldest route, `namespace/name`, rule and match order). The same route seen
/// in several clusters (namespace sameness) counts once where its copies agree.
fn ordered_rules(claims: &[RuleClaim]) -> Vec<crate::model::HttpRule> {
    let mut sorted: Vec<&RuleClaim> = claims.iter().collect();
    sorted.sort_by(|a, b| {
        a.rank
            .cmp(&b.rank)
            .then(a.owner.created.cmp(&b.owner.created))
            .then_with(|| a.owner.namespace.cmp(&b.owner.namespace))
            .then_with(|| a.owner.name.cmp(&b.owner.name))
            .then(a.rule_index.cmp(&b.rule_index))
            .then(a.match_index.cmp(&b.match_index))
            .then_with(|| a.owner.cluster.cmp(&b.owner.cluster))
    });
    sorted.dedup_by(|b, a| {
        a.owner.same_ingress(&b.owner)
            && a.rule_index == b.rule_index
            && a.match_index == b.match_index
            && a.rule == b.rule
    });
    sorted.into_iter().map(|c| (*c.rule).clone()).collect()
}
