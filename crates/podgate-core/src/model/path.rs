//! Ingress path rules: `Exact` and element-wise `Prefix`, with the precedence order that
//! every consumer (the built-in proxy, adapters, tests) must share.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// `ImplementationSpecific` is folded into `Prefix` when an Ingress is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PathKind {
    Exact,
    Prefix,
}

/// Why a path is not a valid Ingress path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path {0:?} must start with '/'")]
    NotAbsolute(String),
    #[error("path {0:?} contains a character not allowed in a path")]
    ForbiddenCharacter(String),
}

/// A validated path rule. For `Prefix` the stored path has no trailing slash (`/` is
/// stored as the empty string), because Kubernetes ignores it.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathMatch {
    pub kind: PathKind,
    pub path: Arc<str>,
}

impl PathMatch {
    /// Parses an Ingress path. It must be absolute and free of characters that the
    /// Kubernetes API refuses for `Prefix`/`Exact` paths.
    pub fn parse(kind: PathKind, raw: &str) -> Result<Self, PathError> {
        if !raw.starts_with('/') {
            return Err(PathError::NotAbsolute(raw.to_owned()));
        }
        if raw
            .bytes()
            .any(|b| b.is_ascii_control() || b == b' ' || b == b'?' || b == b'#')
        {
            return Err(PathError::ForbiddenCharacter(raw.to_owned()));
        }
        let path = match kind {
            PathKind::Exact => Arc::from(raw),
            PathKind::Prefix => Arc::from(raw.trim_end_matches('/')),
        };
        Ok(Self { kind, path })
    }

    pub fn exact(raw: &str) -> Self {
        Self::parse(PathKind::Exact, raw).expect("valid exact path")
    }

    pub fn prefix(raw: &str) -> Self {
        Self::parse(PathKind::Prefix, raw).expect("valid prefix path")
    }

    /// Whether a request path (no query string) matches. `Exact` is case-sensitive and
    /// literal; `Prefix` matches whole `/`-separated elements: `/foo` matches `/foo`,
    /// `/foo/` and `/foo/bar`, never `/foobar`.
    pub fn matches(&self, request_path: &str) -> bool {
        match self.kind {
            PathKind::Exact => request_path == &*self.path,
            PathKind::Prefix => request_path
                .strip_prefix(&*self.path)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
        }
    }

    /// Precedence among rules of one host: longer paths first; at equal length `Exact`
    /// before `Prefix`. Sorting a host's rules by this and taking the first match is the
    /// Ingress "longest match wins" rule.
    pub fn precedence(&self, other: &Self) -> Ordering {
        other
            .path
            .len()
            .cmp(&self.path.len())
            .then(self.kind.cmp(&other.kind))
            .then_with(|| self.path.cmp(&other.path))
    }
}

impl fmt::Display for PathMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            PathKind::Exact => write!(f, "={}", self.path),
            PathKind::Prefix if self.path.is_empty() => f.write_str("/*"),
            PathKind::Prefix => write!(f, "{}/*", self.path),
        }
    }
}

impl fmt::Debug for PathMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl PartialOrd for PathMatch {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PathMatch {
    fn cmp(&self, other: &Self) -> Ordering {
        self.precedence(other)
    }
}
