//! The served matches of every route on one port and hostname, in the order the
//! specification gives them: match precedence first (`rules::precedence`), then the
//! oldest route, then `namespace/name`, then rule and match order within a route. The
//! first match in this order that fits a request serves it.

use std::collections::BTreeMap;

use super::{Attachment, precedence};

/// One match of one attachment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleRef {
    /// Index into `Resolution::attachments`.
    pub attachment: usize,
    /// Index into that rule's `matches`.
    pub match_index: usize,
}

/// Everything served on one port for one hostname (`None`: any host).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostRules {
    pub port: i32,
    pub hostname: Option<String>,
    pub rules: Vec<RuleRef>,
}

/// Groups attachments by port and hostname and orders each group. A route attached
/// twice to one port and hostname (through two parentRefs) counts once.
pub fn host_rules(attachments: &[Attachment]) -> Vec<HostRules> {
    let mut groups: BTreeMap<(i32, Option<&str>), Vec<RuleRef>> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, a) in attachments.iter().enumerate() {
        let scope = (a.port, a.hostname.as_deref());
        for m in 0..a.rule.matches.len() {
            if seen.insert((scope, &a.route, a.rule_index, m)) {
                groups.entry(scope).or_default().push(RuleRef {
                    attachment: i,
                    match_index: m,
                });
            }
        }
    }
    groups
        .into_iter()
        .map(|((port, hostname), mut rules)| {
            rules.sort_by(|x, y| {
                let (a, b) = (&attachments[x.attachment], &attachments[y.attachment]);
                precedence(
                    &a.rule.matches[x.match_index],
                    &b.rule.matches[y.match_index],
                )
                .then(a.created.cmp(&b.created))
                .then(a.route.cmp(&b.route))
                .then(a.rule_index.cmp(&b.rule_index))
                .then(x.match_index.cmp(&y.match_index))
            });
            HostRules {
                port,
                hostname: hostname.map(str::to_owned),
                rules,
            }
        })
        .collect()
}
