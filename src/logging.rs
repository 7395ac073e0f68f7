//! How podgate logs: text for people (colours only on a terminal) or JSON lines for a
//! log pipeline, and a rate limit for warnings that a request can cause, so a flood of
//! requests for a broken upstream costs one line per interval, not one per request.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// `log_format` in the configuration, `--log-format` on the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One line per event, `key=value` fields; ANSI colours only on a terminal.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber. `RUST_LOG` sets the levels (default `info`).
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // `try_init`: a second call (tests starting several roles) keeps the first.
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stdout().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// `e` with its causes, each once: some errors name their cause in their own message,
/// some leave it to `source()`, and a plain chain would print those twice.
pub fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A call site that may log at most once per `every`; what it skipped meanwhile is
/// counted and reported with the next line it lets through.
#[derive(Debug)]
pub(crate) struct RateLimited {
    every: Duration,
    /// When the last line went out, in ms since `origin`; `u64::MAX`: never.
    last_ms: AtomicU64,
    suppressed: AtomicU64,
    origin: std::sync::OnceLock<std::time::Instant>,
}

impl RateLimited {
    pub(crate) const fn new(every: Duration) -> Self {
        Self {
            every,
            last_ms: AtomicU64::new(u64::MAX),
            suppressed: AtomicU64::new(0),
            origin: std::sync::OnceLock::new(),
        }
    }

    /// `Some(skipped)` when a line may go out now (with how many were skipped since the
    /// last one), `None` to stay quiet.
    pub(crate) fn admit(&self) -> Option<u64> {
        let origin = *self.origin.get_or_init(std::time::Instant::now);
        self.admit_at(u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX - 1))
    }

    /// [`Self::admit`] at `now_ms` (ms since the first call).
    fn admit_at(&self, now_ms: u64) -> Option<u64> {
        let every = u64::try_from(self.every.as_millis()).unwrap_or(u64::MAX);
        let last = self.last_ms.load(Ordering::Relaxed);
        let due = last == u64::MAX || now_ms.saturating_sub(last) >= every;
        if due
            && self
                .last_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// `tracing::warn!` for a warning a request can cause: at most one line per 10 s from
/// this call site, with `skipped` saying how many were held back since the last one.
macro_rules! warn_limited {
    ($($arg:tt)+) => {{
        static LIMIT: $crate::logging::RateLimited =
            $crate::logging::RateLimited::new(std::time::Duration::from_secs(10));
        if let Some(skipped) = LIMIT.admit() {
            tracing::warn!(skipped, $($arg)+);
        }
    }};
}
pub(crate) use warn_limited;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_the_rest_counted() {
        let limit = RateLimited::new(Duration::from_secs(10));
        assert_eq!(limit.admit_at(0), Some(0));
        for ms in [1, 500, 9_999] {
            assert_eq!(limit.admit_at(ms), None, "at {ms} ms");
        }
        assert_eq!(
            limit.admit_at(10_000),
            Some(3),
            "due again, with the skipped count"
        );
        assert_eq!(limit.admit_at(10_001), None);
        assert_eq!(limit.admit_at(25_000), Some(1));
    }
}
