//! Active health checks of an upstream's endpoints, as the Service annotation
//! `podgate.io/health-check` asks for them and the LB contract carries them:
//! `GET /healthz`, optionally followed by `interval=5s timeout=1s healthy=2 unhealthy=3`.
//!
//! Owns: the check's values, their defaults and bounds, and the annotation's grammar.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::duration;

/// The Service annotation that asks for active health checks.
pub const HEALTH_CHECK_ANNOTATION: &str = "podgate.io/health-check";

/// An HTTP check the LB sends to every endpoint of an upstream. An endpoint that fails
/// `unhealthy_threshold` checks in a row takes no new requests until it passes
/// `healthy_threshold` in a row; a new endpoint starts healthy (the pod is Ready).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// `GET` or `HEAD`.
    pub method: HealthMethod,
    /// Absolute path, with an optional query: `/healthz`, `/ready?full=1`.
    pub path: Arc<str>,
    pub interval_ms: u32,
    pub timeout_ms: u32,
    pub healthy_threshold: u8,
    pub unhealthy_threshold: u8,
}

/// The methods a check may use: neither has a body or changes anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HealthMethod {
    Get,
    Head,
}

impl HealthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
        }
    }
}

/// Defaults: every 5 s, 1 s to answer with a 2xx or 3xx, out after 3 failures in a
/// row, back after 2 successes.
const DEFAULT_INTERVAL_MS: u32 = 5_000;
const DEFAULT_TIMEOUT_MS: u32 = 1_000;
const DEFAULT_HEALTHY: u8 = 2;
const DEFAULT_UNHEALTHY: u8 = 3;

/// Why an annotation value is not a check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthCheckError {
    #[error("expected `GET /path` or `HEAD /path`, then optional key=value settings")]
    Shape,
    #[error("method {0:?}: only GET and HEAD")]
    Method(String),
    #[error(
        "path {0:?}: must start with / and hold only URL characters (no spaces, quotes, backslashes or #)"
    )]
    Path(String),
    #[error("{key}: {why}")]
    Setting { key: String, why: String },
}

impl HealthCheck {
    /// Parses `GET /healthz interval=2s timeout=500ms healthy=2 unhealthy=3`.
    pub fn parse(text: &str) -> Result<Self, HealthCheckError> {
        let mut words = text.split_whitespace();
        let (Some(method), Some(path)) = (words.next(), words.next()) else {
            return Err(HealthCheckError::Shape);
        };
        let method = match method {
            "GET" => HealthMethod::Get,
            "HEAD" => HealthMethod::Head,
            other => return Err(HealthCheckError::Method(other.to_owned())),
        };
        if !path_is_plain(path) {
            return Err(HealthCheckError::Path(path.to_owned()));
        }
        let mut check = Self {
            method,
            path: Arc::from(path),
            interval_ms: DEFAULT_INTERVAL_MS,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            healthy_threshold: DEFAULT_HEALTHY,
            unhealthy_threshold: DEFAULT_UNHEALTHY,
        };
        for word in words {
            let (key, value) = word.split_once('=').ok_or(HealthCheckError::Shape)?;
            let bad = |why: &str| HealthCheckError::Setting {
                key: key.to_owned(),
                why: why.to_owned(),
            };
            match key {
                "interval" | "timeout" => {
                    let d = duration::parse(value).map_err(|e| bad(&e.to_string()))?;
                    let ms = u32::try_from(d.as_millis()).map_err(|_| bad("too long"))?;
                    if key == "interval" {
                        check.interval_ms = ms;
                    } else {
                        check.timeout_ms = ms;
                    }
                }
                "healthy" | "unhealthy" => {
                    let n: u8 = value.parse().map_err(|_| bad("a count from 1 to 100"))?;
                    if key == "healthy" {
                        check.healthy_threshold = n;
                    } else {
                        check.unhealthy_threshold = n;
                    }
                }
                _ => {
                    return Err(bad(
                        "unknown setting (interval, timeout, healthy, unhealthy)",
                    ));
                }
            }
        }
        check.validate()?;
        Ok(check)
    }

    /// The bounds every LB can honour: an interval from 100 ms to 1 h, a timeout of at
    /// least 10 ms and below the interval, thresholds from 1 to 100.
    pub fn validate(&self) -> Result<(), HealthCheckError> {
        let bad = |key: &str, why: &str| {
            Err(HealthCheckError::Setting {
                key: key.to_owned(),
                why: why.to_owned(),
            })
        };
        if !(100..=3_600_000).contains(&self.interval_ms) {
            return bad("interval", "from 100ms to 1h");
        }
        if self.timeout_ms < 10 || self.timeout_ms >= self.interval_ms {
            return bad("timeout", "at least 10ms and shorter than the interval");
        }
        for (key, n) in [
            ("healthy", self.healthy_threshold),
            ("unhealthy", self.unhealthy_threshold),
        ] {
            if !(1..=100).contains(&n) {
                return bad(key, "a count from 1 to 100");
            }
        }
        if !path_is_plain(&self.path) {
            return Err(HealthCheckError::Path(self.path.to_string()));
        }
        Ok(())
    }
}

/// An absolute path with an optional query, of the characters RFC 3986 allows there
/// (percent-encoded otherwise) but the quote `'`: nothing an LB's configuration
/// language could read as syntax (no space, quote, backslash or `#`; HAProxy reads `'`
/// as the start of a quoted string).
fn path_is_plain(path: &str) -> bool {
    path.starts_with('/')
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&()*+,;=:@/?%".contains(&b))
}

impl fmt::Display for HealthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} interval={}ms timeout={}ms healthy={} unhealthy={}",
            self.method.as_str(),
            self.path,
            self.interval_ms,
            self.timeout_ms,
            self.healthy_threshold,
            self.unhealthy_threshold
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_short_form_takes_the_defaults() {
        let c = HealthCheck::parse("GET /healthz").unwrap();
        assert_eq!(c.method, HealthMethod::Get);
        assert_eq!(&*c.path, "/healthz");
        assert_eq!(
            (
                c.interval_ms,
                c.timeout_ms,
                c.healthy_threshold,
                c.unhealthy_threshold
            ),
            (5_000, 1_000, 2, 3)
        );
    }

    #[test]
    fn settings_override_the_defaults() {
        let c =
            HealthCheck::parse("HEAD /ready?x=1 interval=2s timeout=250ms healthy=1 unhealthy=5")
                .unwrap();
        assert_eq!(
            (
                c.method,
                c.interval_ms,
                c.timeout_ms,
                c.healthy_threshold,
                c.unhealthy_threshold
            ),
            (HealthMethod::Head, 2_000, 250, 1, 5)
        );
        assert_eq!(HealthCheck::parse(&c.to_string()).unwrap(), c);
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        for (text, want) in [
            ("", "expected"),
            ("GET", "expected"),
            ("POST /x", "only GET and HEAD"),
            ("GET healthz", "must start with /"),
            ("GET /a#b", "URL characters"),
            ("GET /a\"b", "URL characters"),
            ("GET /a'b", "URL characters"),
            ("GET /x interval=5", "interval"),
            ("GET /x interval=10ms", "from 100ms"),
            ("GET /x timeout=5s", "shorter than the interval"),
            ("GET /x healthy=0", "healthy"),
            ("GET /x unhealthy=300", "unhealthy"),
            ("GET /x every=1s", "unknown setting"),
            ("GET /x interval", "expected"),
        ] {
            let e = HealthCheck::parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
