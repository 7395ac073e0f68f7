//! Rules of Gateway API routes (HTTPRoute) as the LB contract carries them: a match on
//! path, method, headers and query parameters, filters, and a weighted group of
//! upstreams. The control plane sends them already in the specification's precedence
//! order; the first rule that matches a request serves it.
//!
//! Part of contract version 2: an LB that only knows version 1 (Ingress routes)
//! refuses a host with `rules` as an unknown field, so a route is never served
//! differently from what it says.

use serde::{Deserialize, Serialize};

use super::{PathMatch, UpstreamKey};

/// One rule of a host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRule {
    /// `Prefix /` when `path_regex` is set.
    pub path: PathMatch,
    /// A `RegularExpression` path match: the whole path must match (RE2 syntax, see
    /// [`path_regex`]); when set it alone decides the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_regex: Option<String>,
    /// Upper case, as sent (`GET`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Exact values; names compared without case.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<NameValue>,
    /// Exact values of decoded query parameters; names compared with case.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query: Vec<NameValue>,
    /// Applied in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<RuleFilter>,
    /// Where matching requests go, split by weight. Empty (and no redirect), or every
    /// weight 0: answered 500, as the specification says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<WeightedBackend>,
    /// Who wrote the rule (`namespace/name`, rule index), for people reading state.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
}

impl HttpRule {
    /// A rule on `path` to `backends`, matching on nothing else, without filters.
    pub fn to(path: PathMatch, backends: Vec<WeightedBackend>) -> Self {
        Self {
            path,
            path_regex: None,
            method: None,
            headers: Vec::new(),
            query: Vec::new(),
            filters: Vec::new(),
            backends,
            source: String::new(),
        }
    }

    /// Whether a request matches every part of the rule. `headers` yields (name,
    /// value) pairs; `query` the decoded pairs of the query string.
    pub fn matches<'a>(
        &self,
        method: &str,
        path: &str,
        header: impl FnMut(&str) -> Option<&'a str>,
        query: &[(std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>)],
    ) -> bool {
        self.path_matches(path) && self.matches_besides_path(method, header, query)
    }

    /// Whether the path matches (compiling `path_regex` each time: a data plane
    /// compiles it once, with [`path_regex`]).
    pub fn path_matches(&self, path: &str) -> bool {
        match &self.path_regex {
            Some(re) => path_regex(re).is_ok_and(|re| re.is_match(path)),
            None => self.path.matches(path),
        }
    }

    /// Whether method, headers and query parameters match.
    pub fn matches_besides_path<'a>(
        &self,
        method: &str,
        mut header: impl FnMut(&str) -> Option<&'a str>,
        query: &[(std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>)],
    ) -> bool {
        self.method.as_deref().is_none_or(|m| m == method)
            && self
                .headers
                .iter()
                .all(|h| header(&h.name).is_some_and(|v| v == h.value))
            && self.query.iter().all(|q| {
                query
                    .iter()
                    .find(|(n, _)| *n == q.name)
                    .is_some_and(|(_, v)| *v == q.value)
            })
    }

    /// The redirect filter, if the rule answers with a redirect.
    pub fn redirect(&self) -> Option<&Redirect> {
        self.filters.iter().find_map(|f| match f {
            RuleFilter::Redirect(r) => Some(r),
            _ => None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameValue {
    pub name: String,
    pub value: String,
}

/// An upstream with its weight; `upstream: None` is a reference that did not resolve,
/// whose share is answered 500.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedBackend {
    #[serde(default)]
    pub upstream: Option<UpstreamKey>,
    pub weight: u32,
}

/// Longest `RegularExpression` path accepted, in bytes.
pub const PATH_REGEX_MAX_LEN: usize = 1024;

/// A `RegularExpression` path as podgate matches it: the whole path (anchored), RE2
/// syntax (the `regex` crate: linear time, no backreferences), at most
/// [`PATH_REGEX_MAX_LEN`] bytes and 256 KiB compiled, so a pattern can never make a
/// request slow.
pub fn path_regex(pattern: &str) -> Result<regex::Regex, String> {
    if pattern.len() > PATH_REGEX_MAX_LEN {
        return Err(format!("longer than {PATH_REGEX_MAX_LEN} bytes"));
    }
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(256 * 1024)
        .build()
        // One line: the crate's message draws a caret under the pattern.
        .map_err(|e| {
            e.to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
}

/// The four filters of the HTTPRoute specification podgate serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RuleFilter {
    RequestHeaders(#[serde(deserialize_with = "object")] HeaderEdits),
    ResponseHeaders(#[serde(deserialize_with = "object")] HeaderEdits),
    Redirect(#[serde(deserialize_with = "object")] Redirect),
    Rewrite(#[serde(deserialize_with = "object")] Rewrite),
}

/// Reads a struct from a JSON object only: serde also takes a struct whose fields
/// all have defaults from `[]`, which the contract does not allow.
fn object<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let map = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
    T::deserialize(serde_json::Value::Object(map)).map_err(serde::de::Error::custom)
}

/// `set` replaces, `add` appends, `remove` deletes; names compared without case.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderEdits {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<NameValue>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<NameValue>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// A redirect answer; what is not given is kept from the request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redirect {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathRewrite>,
    /// 301, 302 (the default), 303, 307 or 308.
    #[serde(default = "found")]
    pub status: u16,
}

fn found() -> u16 {
    302
}

/// The request as forwarded: another Host, another path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rewrite {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathRewrite>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PathRewrite {
    /// The whole path.
    Full(String),
    /// The part the rule's `Prefix` path matched; the rest is kept.
    Prefix(String),
}

impl PathRewrite {
    /// The new path for `path`, which matched `matched`.
    pub fn apply(&self, matched: &PathMatch, path: &str) -> String {
        match self {
            Self::Full(p) => p.clone(),
            Self::Prefix(replacement) => {
                let rest = path.get(matched.path.len()..).unwrap_or_default();
                let replacement = replacement.trim_end_matches('/');
                match (replacement.is_empty(), rest.is_empty()) {
                    (true, true) => "/".to_owned(),
                    (true, false) => rest.to_owned(),
                    (false, _) => format!("{replacement}{rest}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_rewrite_replaces_the_matched_elements_only() {
        // The examples of the specification's `ReplacePrefixMatch`.
        let cases = [
            ("/foo", "/foo/bar", "/xyz", "/xyz/bar"),
            ("/foo", "/foo", "/xyz", "/xyz"),
            ("/foo/", "/foo/bar", "/xyz", "/xyz/bar"),
            ("/foo", "/foo/bar", "/xyz/", "/xyz/bar"),
            ("/foo", "/foo", "/", "/"),
            ("/foo", "/foo/bar", "/", "/bar"),
            ("/", "/foo", "/xyz", "/xyz/foo"),
        ];
        for (prefix, path, replacement, expected) in cases {
            let matched = PathMatch::prefix(prefix);
            let got = PathRewrite::Prefix(replacement.to_owned()).apply(&matched, path);
            assert_eq!(got, expected, "{prefix} {path} {replacement}");
        }
    }
}
