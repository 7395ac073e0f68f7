//! Served matches → the LB contract's [`HttpRule`] (version 2), one per match: what the
//! Index puts into a virtual host's `rules`.

use crate::model::{
    HeaderEdits, HttpRule, NameValue, PathMatch, PathRewrite, PortRef, Redirect, Rewrite,
    RuleFilter, UpstreamKey, WeightedBackend,
};

use super::rules::{Backend, Filter, PathRule, RouteMatch};
use super::types::{HeaderModifier, PathModifier};
use super::{Attachment, Key};

/// The upstream a backend names: `namespace/service:port`, the same identity an
/// Ingress backend with that port number has (one upstream across clusters).
pub fn upstream_key(b: &Backend) -> Option<UpstreamKey> {
    let port = u16::try_from(b.port).ok().filter(|p| *p > 0)?;
    Some(UpstreamKey::new(
        &b.namespace,
        &b.service,
        PortRef::Number(port),
    ))
}

/// Match `match_index` of an attachment's rule; `None` for a path the contract cannot
/// carry (the API server's validation refuses such paths).
pub fn http_rule(a: &Attachment, match_index: usize) -> Option<HttpRule> {
    let m: &RouteMatch = a.rule.matches.get(match_index)?;
    let (path, path_regex) = match &m.path {
        PathRule::Exact(p) => (
            PathMatch::parse(crate::model::PathKind::Exact, p).ok()?,
            None,
        ),
        PathRule::Prefix(p) => (
            PathMatch::parse(crate::model::PathKind::Prefix, p).ok()?,
            None,
        ),
        PathRule::Regex(p) => (PathMatch::prefix("/"), Some(p.clone())),
    };
    let pairs = |v: &[(String, String)]| {
        v.iter()
            .map(|(name, value)| NameValue {
                name: name.clone(),
                value: value.clone(),
            })
            .collect()
    };
    Some(HttpRule {
        path,
        path_regex,
        method: m.method.clone(),
        headers: pairs(&m.headers),
        query: pairs(&m.query),
        filters: a.rule.filters.iter().map(filter).collect(),
        backends: a
            .rule
            .backends
            .iter()
            .map(|b| WeightedBackend {
                upstream: b.problem.is_none().then(|| upstream_key(b)).flatten(),
                weight: b.weight,
            })
            .collect(),
        source: source(&a.route, a.rule_index),
    })
}

fn source(route: &Key, rule_index: usize) -> String {
    format!("HTTPRoute {}/{} rule {rule_index}", route.0, route.1)
}

fn filter(f: &Filter) -> RuleFilter {
    match f {
        Filter::RequestHeaders(m) => RuleFilter::RequestHeaders(edits(m)),
        Filter::ResponseHeaders(m) => RuleFilter::ResponseHeaders(edits(m)),
        Filter::Redirect(r) => RuleFilter::Redirect(Redirect {
            scheme: r.scheme.clone(),
            hostname: r.hostname.clone(),
            port: r.port.and_then(|p| u16::try_from(p).ok()),
            path: r.path.as_ref().and_then(path),
            status: r
                .status_code
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(302),
        }),
        Filter::Rewrite(r) => RuleFilter::Rewrite(Rewrite {
            hostname: r.hostname.clone(),
            path: r.path.as_ref().and_then(path),
        }),
    }
}

fn edits(m: &HeaderModifier) -> HeaderEdits {
    let pairs = |v: &[super::types::HeaderValue]| {
        v.iter()
            .map(|h| NameValue {
                name: h.name.clone(),
                value: h.value.clone(),
            })
            .collect()
    };
    HeaderEdits {
        set: pairs(&m.set),
        add: pairs(&m.add),
        remove: m.remove.clone(),
    }
}

fn path(p: &PathModifier) -> Option<PathRewrite> {
    match p.kind.as_str() {
        "ReplaceFullPath" => p.replace_full_path.clone().map(PathRewrite::Full),
        "ReplacePrefixMatch" => p.replace_prefix_match.clone().map(PathRewrite::Prefix),
        _ => None,
    }
}
