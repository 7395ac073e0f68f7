//! Ingress host rules: exact names and single-label wildcards, case-insensitive.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A validated, lower-cased Ingress host: `foo.example.com` or `*.example.com`.
/// Clones share one allocation.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostPattern(Arc<str>);

impl HostPattern {
    /// Parses an Ingress `host` field. Refuses what Kubernetes refuses: IP addresses,
    /// ports, empty labels, a `*` anywhere but as the whole first label.
    pub fn parse(raw: &str) -> Result<Self, HostError> {
        let host = raw.trim_end_matches('.').to_ascii_lowercase();
        if host.is_empty() || host.len() > 253 {
            return Err(HostError::Length(raw.to_owned()));
        }
        if host.parse::<std::net::IpAddr>().is_ok() {
            return Err(HostError::IpAddress(raw.to_owned()));
        }
        for (i, label) in host.split('.').enumerate() {
            let ok = if i == 0 && label == "*" {
                host.contains('.')
            } else {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            };
            if !ok {
                return Err(HostError::NotDnsName(raw.to_owned()));
            }
        }
        Ok(Self(Arc::from(host)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `*.example.com` → `Some("example.com")`.
    pub fn wildcard_suffix(&self) -> Option<&str> {
        self.0.strip_prefix("*.")
    }

    /// Whether a normalised request host (see [`normalize_request_host`]) matches.
    /// A wildcard matches exactly one extra label.
    pub fn matches(&self, request_host: &str) -> bool {
        match self.wildcard_suffix() {
            None => *self.0 == *request_host,
            Some(suffix) => request_host
                .split_once('.')
                .is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
        }
    }
}

/// Why a host is not a valid Ingress host.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("host {0:?} is empty or longer than 253 characters")]
    Length(String),
    #[error("host {0:?} is an IP address, which Ingress does not allow")]
    IpAddress(String),
    #[error("host {0:?} is not a valid DNS name or wildcard")]
    NotDnsName(String),
}

impl TryFrom<String> for HostPattern {
    type Error = HostError;
    fn try_from(raw: String) -> Result<Self, HostError> {
        Self::parse(&raw)
    }
}

impl From<HostPattern> for String {
    fn from(h: HostPattern) -> Self {
        h.0.to_string()
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Lower-cases a request's `Host` (or `:authority`) and strips the port and a trailing
/// dot. IPv6 literals keep their brackets.
pub fn normalize_request_host(raw: &str) -> String {
    let without_port = if raw.starts_with('[') {
        raw.find(']').map_or(raw, |end| &raw[..=end])
    } else {
        raw.rsplit_once(':').map_or(raw, |(h, _)| h)
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_matches_exactly_one_label() {
        let w = HostPattern::parse("*.foo.com").unwrap();
        assert!(w.matches("bar.foo.com"));
        assert!(!w.matches("baz.bar.foo.com"));
        assert!(!w.matches("foo.com"));
        assert!(!w.matches(".foo.com"));
    }

    #[test]
    fn request_host_ignores_case_and_port() {
        assert_eq!(
            normalize_request_host("Foo.Example.COM:8080"),
            "foo.example.com"
        );
        assert_eq!(normalize_request_host("[::1]:80"), "[::1]");
        assert_eq!(normalize_request_host("a.b."), "a.b");
    }

    #[test]
    fn invalid_hosts_are_refused() {
        for bad in [
            "",
            "1.2.3.4",
            "a..b",
            "*.",
            "a.*.b",
            "*",
            "-a.b",
            "a_b.c",
            "foo.com:80",
        ] {
            assert!(
                HostPattern::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
        assert_eq!(HostPattern::parse("Foo.COM").unwrap().as_str(), "foo.com");
    }
}
