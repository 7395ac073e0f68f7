//! One HTTPRoute rule → what podgate serves: its matches (defaults filled in), filters
//! and backends. A rule podgate cannot serve exactly is refused with a reason, never
//! served differently; a backend that cannot be resolved keeps its weight and answers
//! 500 for that share, as the specification says.

use std::cmp::{Ordering, Reverse};

use super::refs::{self, From, To};
use super::types::{
    GROUP, HeaderModifier, HttpBackendRef, HttpRouteFilter, HttpRouteMatch, HttpRouteRule,
    RequestRedirect, UrlRewrite,
};
use super::{Lookup, World};

/// A path match.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathRule {
    Exact(String),
    /// Element-wise: `/foo` matches `/foo` and `/foo/bar`, not `/foobar`.
    Prefix(String),
    /// The whole path matches the pattern (`model::path_regex`).
    Regex(String),
}

/// One match of a rule: every part must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteMatch {
    pub path: PathRule,
    pub method: Option<String>,
    /// Header names in lower case; the first of equivalent names counts.
    pub headers: Vec<(String, String)>,
    /// Query parameter names as written (case-sensitive); the first counts.
    pub query: Vec<(String, String)>,
}

/// A filter podgate applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    RequestHeaders(HeaderModifier),
    ResponseHeaders(HeaderModifier),
    Redirect(RequestRedirect),
    Rewrite(UrlRewrite),
}

/// One `backendRef`: a Service port with a weight. `problem` set: the reference does
/// not resolve, and requests sent to this share are answered 500.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    pub namespace: String,
    pub service: String,
    pub port: i32,
    pub weight: u32,
    pub problem: Option<(&'static str, String)>,
}

/// A rule podgate serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedRule {
    pub matches: Vec<RouteMatch>,
    pub filters: Vec<Filter>,
    pub backends: Vec<Backend>,
}

/// Why something is not served: a status reason (`UnsupportedValue`,
/// `IncompatibleFilters`, `InvalidCertificateRef`, …) and a message naming the field.
pub(crate) type Refusal = (&'static str, String);

pub(crate) fn serve(
    rule: &HttpRouteRule,
    namespace: &str,
    world: &World<'_>,
    lookup: &dyn Lookup,
) -> Result<ServedRule, Refusal> {
    let matches = if rule.matches.is_empty() {
        vec![RouteMatch {
            path: PathRule::Prefix("/".to_owned()),
            method: None,
            headers: Vec::new(),
            query: Vec::new(),
        }]
    } else {
        rule.matches
            .iter()
            .map(route_match)
            .collect::<Result<_, _>>()?
    };
    let filters = rule
        .filters
        .iter()
        .map(filter)
        .collect::<Result<Vec<_>, _>>()?;
    let redirects = filters.iter().any(|f| matches!(f, Filter::Redirect(_)));
    let rewrites: Vec<&UrlRewrite> = filters
        .iter()
        .filter_map(|f| match f {
            Filter::Rewrite(r) => Some(r),
            _ => None,
        })
        .collect();
    if redirects && !rewrites.is_empty() {
        return Err((
            "IncompatibleFilters",
            "RequestRedirect and URLRewrite cannot be combined in one rule".to_owned(),
        ));
    }
    let prefix_rewrite = rewrites.iter().any(|r| {
        r.path
            .as_ref()
            .is_some_and(|p| p.kind == "ReplacePrefixMatch")
    });
    if prefix_rewrite
        && !matches
            .iter()
            .all(|m| matches!(m.path, PathRule::Prefix(_)))
    {
        return Err((
            "IncompatibleFilters",
            "URLRewrite ReplacePrefixMatch needs PathPrefix matches".to_owned(),
        ));
    }
    for f in &filters {
        let modifier = match f {
            Filter::Redirect(r) => r.path.as_ref(),
            Filter::Rewrite(r) => r.path.as_ref(),
            Filter::RequestHeaders(_) | Filter::ResponseHeaders(_) => None,
        };
        if let Some(p) = modifier {
            let given = match p.kind.as_str() {
                "ReplaceFullPath" => p.replace_full_path.is_some(),
                "ReplacePrefixMatch" => p.replace_prefix_match.is_some(),
                _ => false,
            };
            if !given {
                return Err(unsupported(&format!(
                    "path modifier {:?} without its value",
                    p.kind
                )));
            }
        }
    }
    let backends = rule
        .backend_refs
        .iter()
        .map(|b| backend(b, namespace, world, lookup))
        .collect::<Result<_, _>>()?;
    Ok(ServedRule {
        matches,
        filters,
        backends,
    })
}

fn route_match(m: &HttpRouteMatch) -> Result<RouteMatch, Refusal> {
    let path = m.path.as_ref();
    let value = path
        .and_then(|p| p.value.clone())
        .unwrap_or_else(|| "/".to_owned());
    let path = match path.and_then(|p| p.kind.as_deref()).unwrap_or("PathPrefix") {
        "Exact" => PathRule::Exact(value),
        "PathPrefix" => {
            // `/foo/` and `/foo` are one prefix (element-wise matching).
            let trimmed = value.trim_end_matches('/');
            PathRule::Prefix(if trimmed.is_empty() {
                "/".to_owned()
            } else {
                trimmed.to_owned()
            })
        }
        "RegularExpression" => match crate::model::path_regex(&value) {
            Ok(_) => PathRule::Regex(value),
            Err(e) => {
                let message = format!("path regular expression {value:?} is not valid: {e}");
                return Err(("UnsupportedValue", message));
            }
        },
        other => return Err(unsupported(&format!("path match type {other:?}"))),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for h in &m.headers {
        exact_only(h.kind.as_deref(), "header")?;
        let name = h.name.to_ascii_lowercase();
        if !headers.iter().any(|(n, _)| *n == name) {
            headers.push((name, h.value.clone()));
        }
    }
    let mut query: Vec<(String, String)> = Vec::new();
    for q in &m.query_params {
        exact_only(q.kind.as_deref(), "query parameter")?;
        if !query.iter().any(|(n, _)| *n == q.name) {
            query.push((q.name.clone(), q.value.clone()));
        }
    }
    Ok(RouteMatch {
        path,
        method: m.method.clone(),
        headers,
        query,
    })
}

fn exact_only(kind: Option<&str>, what: &str) -> Result<(), Refusal> {
    match kind.unwrap_or("Exact") {
        "Exact" => Ok(()),
        other => Err(unsupported(&format!("{what} match type {other:?}"))),
    }
}

fn unsupported(what: &str) -> Refusal {
    (
        "UnsupportedValue",
        format!("{what} is not supported by podgate"),
    )
}

fn filter(f: &HttpRouteFilter) -> Result<Filter, Refusal> {
    let missing = || unsupported(&format!("filter {} without its settings", f.kind));
    match f.kind.as_str() {
        "RequestHeaderModifier" => f
            .request_header_modifier
            .clone()
            .map(Filter::RequestHeaders)
            .ok_or_else(missing),
        "ResponseHeaderModifier" => f
            .response_header_modifier
            .clone()
            .map(Filter::ResponseHeaders)
            .ok_or_else(missing),
        "RequestRedirect" => f
            .request_redirect
            .clone()
            .map(Filter::Redirect)
            .ok_or_else(missing),
        "URLRewrite" => f
            .url_rewrite
            .clone()
            .map(Filter::Rewrite)
            .ok_or_else(missing),
        other => Err(unsupported(&format!("filter type {other:?}"))),
    }
}

fn backend(
    b: &HttpBackendRef,
    namespace: &str,
    world: &World<'_>,
    lookup: &dyn Lookup,
) -> Result<Backend, Refusal> {
    if !b.filters.is_empty() {
        return Err(unsupported("filters on a backendRef"));
    }
    let r = &b.reference;
    let service_ns = r.namespace.as_deref().unwrap_or(namespace);
    let group = r.group.as_deref().unwrap_or_default();
    let kind = r.kind.as_deref().unwrap_or("Service");
    let problem = if !group.is_empty() || kind != "Service" {
        Some((
            "InvalidKind",
            format!(
                "backendRef {} is a {kind} of group {group:?}; podgate serves Services",
                r.name
            ),
        ))
    } else if !refs::permitted(
        world.grants,
        &From {
            group: GROUP,
            kind: "HTTPRoute",
            namespace,
        },
        &To {
            group: "",
            kind: "Service",
            namespace: service_ns,
            name: &r.name,
        },
    ) {
        Some((
            "RefNotPermitted",
            format!(
                "no ReferenceGrant in {service_ns} lets this HTTPRoute use Service {}",
                r.name
            ),
        ))
    } else if b.port.is_none() {
        Some((
            "UnsupportedValue",
            format!("backendRef {} has no port", r.name),
        ))
    } else if !lookup.service(service_ns, &r.name) {
        Some((
            "BackendNotFound",
            format!("Service {service_ns}/{} not found", r.name),
        ))
    } else {
        None
    };
    Ok(Backend {
        namespace: service_ns.to_owned(),
        service: r.name.clone(),
        port: b.port.unwrap_or_default(),
        weight: u32::try_from(b.weight.unwrap_or(1)).unwrap_or(0),
        problem,
    })
}

/// The specification's order between matches of all routes on one hostname: an Exact
/// path, then the longest prefix, then a method, then more headers, then more query
/// parameters. Ties go to the caller (oldest route, namespace/name, rule order).
pub fn precedence(a: &RouteMatch, b: &RouteMatch) -> Ordering {
    a.rank().cmp(&b.rank())
}

/// A match's place in [`precedence`] as a value: smaller goes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rank {
    /// Exact, then regular expressions (their order is the implementation's to choose:
    /// podgate puts them before prefixes, so that one can carve out part of a prefix),
    /// then prefixes.
    class: u8,
    path_len: Reverse<usize>,
    method: Reverse<bool>,
    headers: Reverse<usize>,
    query: Reverse<usize>,
}

impl RouteMatch {
    pub fn rank(&self) -> Rank {
        let (class, len) = match &self.path {
            PathRule::Exact(p) => (0, p.len()),
            PathRule::Regex(p) => (1, p.len()),
            PathRule::Prefix(p) => (2, p.len()),
        };
        Rank {
            class,
            path_len: Reverse(len),
            method: Reverse(self.method.is_some()),
            headers: Reverse(self.headers.len()),
            query: Reverse(self.query.len()),
        }
    }
}
