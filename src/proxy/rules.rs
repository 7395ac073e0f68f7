//! Gateway API rules (`VirtualHost::rules`, contract version 2) on the general request
//! path: the first rule matching method, path, headers and query parameters; a
//! weighted choice between its upstreams; the redirect, rewrite and header filters.
//!
//! The fast path hands every request for a host with rules to this path, so the
//! semantics live here once. Checked when a batch arrives (`check`): a rule that could
//! break framing or answer nonsense is refused with 400 naming the field.

use std::borrow::Cow;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, header};
use podgate_core::model::{
    HeaderEdits, HttpRule, PathRewrite, Redirect, RouteTable, RuleFilter, UpstreamKey, VirtualHost,
    path_regex,
};

use super::body::{ProxyBody, full};

/// Headers a rule may not set or remove: they frame the message or the connection.
const FRAMING: [&str; 8] = [
    "connection",
    "content-length",
    "transfer-encoding",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Refuses rules the proxy could not serve as written, naming the field.
pub(crate) fn check(table: &RouteTable) -> Result<(), String> {
    let hosts = table
        .hosts
        .iter()
        .map(|(h, v)| (h.as_str().to_owned(), v))
        .chain(table.any_host.iter().map(|v| ("(any host)".to_owned(), v)));
    for (host, vhost) in hosts {
        for (i, rule) in vhost.rules.iter().enumerate() {
            check_rule(rule).map_err(|e| format!("routes.hosts[{host}].rules[{i}]: {e}"))?;
        }
    }
    Ok(())
}

fn check_rule(rule: &HttpRule) -> Result<(), String> {
    if let Some(p) = &rule.path_regex {
        path_regex(p).map_err(|e| format!("path_regex {p:?}: {e}"))?;
    }
    if let Some(m) = &rule.method
        && Method::from_bytes(m.as_bytes()).is_err()
    {
        return Err(format!("method {m:?} is not a method"));
    }
    for h in &rule.headers {
        HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| format!("headers: {:?} is not a header name", h.name))?;
    }
    let mut redirects = 0;
    for (i, f) in rule.filters.iter().enumerate() {
        let at = |e: String| format!("filters[{i}]: {e}");
        match f {
            RuleFilter::RequestHeaders(e) | RuleFilter::ResponseHeaders(e) => {
                check_edits(e).map_err(at)?;
            }
            RuleFilter::Redirect(r) => {
                redirects += 1;
                check_redirect(r).map_err(at)?;
            }
            RuleFilter::Rewrite(r) => {
                if let Some(h) = &r.hostname {
                    HeaderValue::from_str(h)
                        .map_err(|_| at(format!("hostname {h:?} is not a host")))?;
                }
                check_path(r.path.as_ref()).map_err(at)?;
            }
        }
    }
    if redirects > 1 {
        return Err("more than one redirect".to_owned());
    }
    if rule.backends.len() > 256 {
        return Err("more than 256 backends".to_owned());
    }
    Ok(())
}

fn check_edits(e: &HeaderEdits) -> Result<(), String> {
    for (name, value) in e
        .set
        .iter()
        .chain(&e.add)
        .map(|nv| (nv.name.as_str(), Some(nv.value.as_str())))
        .chain(e.remove.iter().map(|n| (n.as_str(), None)))
    {
        let parsed = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("{name:?} is not a header name"))?;
        if FRAMING.contains(&parsed.as_str()) {
            return Err(format!(
                "header {name} frames the message and cannot be edited"
            ));
        }
        if let Some(v) = value {
            HeaderValue::from_str(v).map_err(|_| format!("{v:?} is not a header value"))?;
        }
    }
    Ok(())
}

fn check_redirect(r: &Redirect) -> Result<(), String> {
    if ![301, 302, 303, 307, 308].contains(&r.status) {
        return Err(format!("status {} is not a redirect", r.status));
    }
    if let Some(s) = &r.scheme
        && s != "http"
        && s != "https"
    {
        return Err(format!("scheme {s:?} (http or https)"));
    }
    if let Some(h) = &r.hostname
        && (h.is_empty() || h.contains(['/', '?', '#', '@', ' ', ':']))
    {
        return Err(format!("hostname {h:?} is not a host"));
    }
    check_path(r.path.as_ref())
}

fn check_path(p: Option<&PathRewrite>) -> Result<(), String> {
    match p {
        Some(PathRewrite::Full(p) | PathRewrite::Prefix(p))
            if !p.starts_with('/') || p.contains(['?', '#']) || p.bytes().any(|b| b <= b' ') =>
        {
            Err(format!("path {p:?} must be an absolute path"))
        }
        _ => Ok(()),
    }
}

/// A rule with its `RegularExpression` path compiled once.
#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub(crate) rule: HttpRule,
    regex: Option<regex::Regex>,
    /// The pattern did not compile (`check` refuses such batches): never matches.
    broken: bool,
}

impl std::ops::Deref for CompiledRule {
    type Target = HttpRule;
    fn deref(&self) -> &HttpRule {
        &self.rule
    }
}

impl CompiledRule {
    fn new(rule: HttpRule) -> Self {
        let regex = rule.path_regex.as_deref().map(path_regex);
        let broken = matches!(regex, Some(Err(_)));
        Self {
            rule,
            regex: regex.and_then(Result::ok),
            broken,
        }
    }

    fn path_matches(&self, path: &str) -> bool {
        match &self.regex {
            Some(re) => re.is_match(path),
            None => !self.broken && self.rule.path.matches(path),
        }
    }
}

/// The rules of a host, shared by every request.
pub(crate) fn compile(vhost: &VirtualHost) -> Box<[Arc<CompiledRule>]> {
    vhost
        .rules
        .iter()
        .cloned()
        .map(|r| Arc::new(CompiledRule::new(r)))
        .collect()
}

/// The first rule matching the request.
pub(crate) fn first_match<'a>(
    rules: &'a [Arc<CompiledRule>],
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Option<&'a Arc<CompiledRule>> {
    let pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> = match query {
        Some(q) if rules.iter().any(|r| !r.query.is_empty()) => {
            form_urlencoded::parse(q.as_bytes()).collect()
        }
        _ => Vec::new(),
    };
    rules.iter().find(|r| {
        r.path_matches(path)
            && r.rule.matches_besides_path(
                method.as_str(),
                |name| headers.get_all(name).iter().find_map(|v| v.to_str().ok()),
                &pairs,
            )
    })
}

/// Where the request goes: an upstream chosen by weight, or `None` for the share of a
/// reference that did not resolve (and for a rule without a weight), answered 500.
pub(crate) fn pick_backend(rule: &HttpRule) -> Option<&UpstreamKey> {
    let total: u64 = rule.backends.iter().map(|b| u64::from(b.weight)).sum();
    if total == 0 {
        return None;
    }
    let mut ticket = rand::random_range(0..total);
    for b in &rule.backends {
        let w = u64::from(b.weight);
        if ticket < w {
            return b.upstream.as_ref();
        }
        ticket -= w;
    }
    None
}

/// Applies header edits: remove, then set, then add.
pub(crate) fn edit(headers: &mut HeaderMap, edits: &HeaderEdits) {
    for name in &edits.remove {
        if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
            headers.remove(n);
        }
    }
    for nv in &edits.set {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(nv.name.as_bytes()),
            HeaderValue::from_str(&nv.value),
        ) {
            headers.insert(n, v);
        }
    }
    for nv in &edits.add {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(nv.name.as_bytes()),
            HeaderValue::from_str(&nv.value),
        ) {
            headers.append(n, v);
        }
    }
}

/// The redirect's answer. What the filter leaves out is the request's: scheme, host,
/// path and query; the port is the scheme's well-known one when the scheme changes,
/// else the one the client used (the Host header's), and 80/443 are not written.
pub(crate) fn redirect(
    r: &Redirect,
    rule: &HttpRule,
    tls: bool,
    host: &str,
    path: &str,
    query: Option<&str>,
) -> Response<ProxyBody> {
    let (request_host, request_port) = split_port(host);
    let scheme = r
        .scheme
        .as_deref()
        .unwrap_or(if tls { "https" } else { "http" });
    let port = match (r.port, &r.scheme) {
        (Some(p), _) => Some(p),
        (None, Some(_)) => None,
        (None, None) => request_port,
    };
    let port = port.filter(|p| !matches!((scheme, p), ("http", 80) | ("https", 443)));
    let hostname = r.hostname.as_deref().unwrap_or(request_host);
    let path = r
        .path
        .as_ref()
        .map_or_else(|| path.to_owned(), |p| p.apply(&rule.path, path));
    let mut location = format!("{scheme}://{hostname}");
    if let Some(p) = port {
        location.push(':');
        location.push_str(&p.to_string());
    }
    location.push_str(&path);
    if let Some(q) = query {
        location.push('?');
        location.push_str(q);
    }
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FOUND);
    let mut resp = Response::new(full(""));
    *resp.status_mut() = status;
    match HeaderValue::from_str(&location) {
        Ok(v) => {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => {
            *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    resp
}

/// `host:port` → (`host`, port); IPv6 literals keep their brackets.
fn split_port(host: &str) -> (&str, Option<u16>) {
    match host.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => match p.parse() {
            Ok(port) => (h, Some(port)),
            Err(_) => (host, None),
        },
        _ => (host, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podgate_core::model::{NameValue, PathMatch, PortRef, WeightedBackend};

    fn rule(path: PathMatch, filters: Vec<RuleFilter>) -> HttpRule {
        HttpRule {
            filters,
            ..HttpRule::to(path, Vec::new())
        }
    }

    fn location(resp: &Response<ProxyBody>) -> (u16, &str) {
        let l = resp
            .headers()
            .get(header::LOCATION)
            .unwrap()
            .to_str()
            .unwrap();
        (resp.status().as_u16(), l)
    }

    #[test]
    fn redirects_keep_what_the_filter_leaves_out_and_drop_well_known_ports() {
        let to =
            |scheme: Option<&str>, port: Option<u16>, path: Option<PathRewrite>, status| Redirect {
                scheme: scheme.map(str::to_owned),
                hostname: None,
                port,
                path,
                status,
            };
        let prefix = rule(PathMatch::prefix("/old"), Vec::new());
        let cases = [
            (
                to(Some("https"), None, None, 301),
                false,
                "a.example:8080",
                "/old/x",
                Some("q=1"),
                (301, "https://a.example/old/x?q=1"),
            ),
            (
                to(None, None, None, 302),
                false,
                "a.example:8080",
                "/old",
                None,
                (302, "http://a.example:8080/old"),
            ),
            (
                to(None, None, None, 302),
                true,
                "a.example:443",
                "/old",
                None,
                (302, "https://a.example/old"),
            ),
            (
                to(Some("http"), Some(8081), None, 308),
                true,
                "a.example",
                "/",
                None,
                (308, "http://a.example:8081/"),
            ),
            (
                to(None, None, Some(PathRewrite::Prefix("/new".into())), 302),
                false,
                "a.example",
                "/old/x",
                None,
                (302, "http://a.example/new/x"),
            ),
            (
                to(None, None, Some(PathRewrite::Full("/".into())), 302),
                false,
                "[::1]:80",
                "/old/x",
                None,
                (302, "http://[::1]/"),
            ),
        ];
        for (r, tls, host, path, query, expected) in cases {
            let resp = redirect(&r, &prefix, tls, host, path, query);
            assert_eq!(location(&resp), expected, "{r:?} {host} {path}");
        }
    }

    #[test]
    fn edits_remove_then_set_then_add_and_framing_headers_are_refused() {
        let mut h = HeaderMap::new();
        h.insert("x-a", HeaderValue::from_static("old"));
        h.insert("x-gone", HeaderValue::from_static("1"));
        let nv = |n: &str, v: &str| NameValue {
            name: n.into(),
            value: v.into(),
        };
        let edits = HeaderEdits {
            set: vec![nv("X-A", "new")],
            add: vec![nv("x-a", "more"), nv("x-b", "1")],
            remove: vec!["X-Gone".into()],
        };
        edit(&mut h, &edits);
        let all = |n: &str| {
            h.get_all(n)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(all("x-a"), ["new", "more"]);
        assert_eq!(all("x-b"), ["1"]);
        assert!(all("x-gone").is_empty());
        let bad = HeaderEdits {
            set: vec![nv("Content-Length", "0")],
            ..HeaderEdits::default()
        };
        let err = check_rule(&rule(
            PathMatch::prefix("/"),
            vec![RuleFilter::RequestHeaders(bad)],
        ))
        .unwrap_err();
        assert!(err.contains("Content-Length"), "{err}");
    }

    #[test]
    fn weights_split_and_a_zero_total_or_unresolved_share_answers_500() {
        let key = |n: &str| UpstreamKey::new("ns", n, PortRef::Number(80));
        let mut r = rule(PathMatch::prefix("/"), Vec::new());
        assert_eq!(pick_backend(&r), None);
        r.backends = vec![
            WeightedBackend {
                upstream: Some(key("a")),
                weight: 3,
            },
            WeightedBackend {
                upstream: None,
                weight: 1,
            },
            WeightedBackend {
                upstream: Some(key("zero")),
                weight: 0,
            },
        ];
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..4000 {
            *counts
                .entry(pick_backend(&r).map(ToString::to_string))
                .or_insert(0) += 1;
        }
        assert!(
            !counts.contains_key(&Some(key("zero").to_string())),
            "{counts:?}"
        );
        let a = counts[&Some(key("a").to_string())];
        let none = counts[&None];
        // 3:1 within a wide margin (the chance of failing is far below 1e-9).
        assert!(
            (2700..3300).contains(&a) && (700..1300).contains(&none),
            "{counts:?}"
        );
    }
}
