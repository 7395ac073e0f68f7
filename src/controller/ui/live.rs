//! Live counters of the built-in proxy for the admin view: for the upstreams on the page,
//! `GET /v1/upstreams/{ns}/{svc}/{port}` of every `kind: podgate` target, turned into
//! rates and percentiles against the previous read of the same endpoint (the proxy's
//! counters are cumulative). Read on demand, in parallel, at most 1 s per target; a
//! target that does not answer just has no live figures.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use podgate_core::model::UpstreamKey;

const TIMEOUT: Duration = Duration::from_secs(1);
/// Older samples are not compared with (the rate would mean little).
const MAX_AGE: Duration = Duration::from_mins(2);
const MAX_SAMPLES: usize = 200_000;

/// One `kind: podgate` target instance.
#[derive(Clone, Debug)]
pub(crate) struct Source {
    /// As its `TargetStatus` names it (`name/url`).
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) token: String,
}

/// One endpoint as one target sees it now.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct LiveRow {
    pub(crate) target: String,
    pub(crate) in_flight: u64,
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    /// Since the previous read (none on the first).
    pub(crate) requests_per_s: Option<f64>,
    pub(crate) errors_per_s: Option<f64>,
    /// Bucket upper bounds (ms) of the answers since the previous read.
    pub(crate) p50_ms: Option<u64>,
    pub(crate) p99_ms: Option<u64>,
    pub(crate) ejected_for_ms: Option<u64>,
    pub(crate) unhealthy: bool,
}

struct Sample {
    at: Instant,
    requests: u64,
    errors: u64,
    latency: Vec<u64>,
}

type Key = (String, UpstreamKey, IpAddr, u16);

/// See the module documentation.
pub(crate) struct Live {
    sources: Vec<Source>,
    http: reqwest::Client,
    previous: Mutex<HashMap<Key, Sample>>,
}

impl Live {
    pub(crate) fn new(sources: Vec<Source>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .unwrap_or_default();
        Self {
            sources,
            http,
            previous: Mutex::new(HashMap::new()),
        }
    }

    /// Live rows by (upstream, address, port), one per target that answered.
    pub(crate) async fn read(
        &self,
        upstreams: &[UpstreamKey],
    ) -> HashMap<(UpstreamKey, IpAddr, u16), Vec<LiveRow>> {
        let mut asks = Vec::new();
        for s in &self.sources {
            for key in upstreams {
                asks.push(self.ask(s, key));
            }
        }
        let answers = futures::future::join_all(asks).await;
        let now = Instant::now();
        let mut out: HashMap<(UpstreamKey, IpAddr, u16), Vec<LiveRow>> = HashMap::new();
        let mut previous = self.previous.lock();
        previous.retain(|_, s| now.duration_since(s.at) < MAX_AGE);
        for (source, key, answer) in answers.into_iter().flatten() {
            for e in answer["live"].as_array().into_iter().flatten() {
                let (Some(address), Some(port)) = (
                    e["address"].as_str().and_then(|a| a.parse::<IpAddr>().ok()),
                    e["port"].as_u64().and_then(|p| u16::try_from(p).ok()),
                ) else {
                    continue;
                };
                let number = |k: &str| e[k].as_u64().unwrap_or(0);
                let sample = Sample {
                    at: now,
                    requests: number("requests"),
                    errors: number("errors"),
                    latency: e["latency"]["counts"]
                        .as_array()
                        .map(|c| c.iter().map(|n| n.as_u64().unwrap_or(0)).collect())
                        .unwrap_or_default(),
                };
                let bounds: Vec<u64> = e["latency"]["bounds_ms"]
                    .as_array()
                    .map(|c| c.iter().filter_map(Value::as_u64).collect())
                    .unwrap_or_default();
                let id = (source.clone(), key.clone(), address, port);
                let mut row = LiveRow {
                    target: source.clone(),
                    in_flight: number("in_flight"),
                    requests: sample.requests,
                    errors: sample.errors,
                    requests_per_s: None,
                    errors_per_s: None,
                    p50_ms: None,
                    p99_ms: None,
                    ejected_for_ms: e["ejected_for_ms"].as_u64(),
                    unhealthy: e["unhealthy"] == true,
                };
                if let Some(before) = previous.get(&id) {
                    let secs = now.duration_since(before.at).as_secs_f64();
                    if secs >= 0.05 {
                        let per_s = |now: u64, then: u64| {
                            let d = f64::from(
                                u32::try_from(now.saturating_sub(then)).unwrap_or(u32::MAX),
                            );
                            (d / secs * 10.0).round() / 10.0
                        };
                        row.requests_per_s = Some(per_s(sample.requests, before.requests));
                        row.errors_per_s = Some(per_s(sample.errors, before.errors));
                        let delta: Vec<u64> = sample
                            .latency
                            .iter()
                            .zip(before.latency.iter().chain(std::iter::repeat(&0)))
                            .map(|(n, b)| n.saturating_sub(*b))
                            .collect();
                        row.p50_ms = percentile(&delta, &bounds, 500);
                        row.p99_ms = percentile(&delta, &bounds, 990);
                    }
                }
                // Keep the older sample until the next one is worth comparing with.
                let keep_old = previous
                    .get(&id)
                    .is_some_and(|b| now.duration_since(b.at) < Duration::from_millis(50));
                if !keep_old && previous.len() < MAX_SAMPLES {
                    previous.insert(id, sample);
                }
                out.entry((key.clone(), address, port))
                    .or_default()
                    .push(row);
            }
        }
        out
    }

    async fn ask(
        &self,
        source: &Source,
        key: &UpstreamKey,
    ) -> Option<(String, UpstreamKey, Value)> {
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let url = format!(
            "{}/v1/upstreams/{}/{}/{}",
            source.url.trim_end_matches('/'),
            enc(&key.namespace),
            enc(&key.service),
            enc(&key.port.to_string())
        );
        let mut request = self.http.get(url);
        if !source.token.is_empty() {
            request = request.bearer_auth(&source.token);
        }
        let answer = request.send().await.ok()?.error_for_status().ok()?;
        let value = answer.json::<Value>().await.ok()?;
        Some((source.name.clone(), key.clone(), value))
    }
}

/// The upper bound (ms) of the bucket holding the quantile `permille`/1000 of `counts`.
fn percentile(counts: &[u64], bounds: &[u64], permille: u64) -> Option<u64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let want = total.saturating_mul(permille).div_ceil(1000).max(1);
    let mut seen = 0;
    for (i, n) in counts.iter().enumerate() {
        seen += n;
        if seen >= want {
            // The last bucket has no upper bound: say its lower one.
            return bounds.get(i).or(bounds.last()).copied();
        }
    }
    bounds.last().copied()
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_name_the_bucket_bound() {
        let bounds = [1, 2, 5, 10];
        assert_eq!(percentile(&[0, 90, 9, 1, 0], &bounds, 500), Some(2));
        assert_eq!(percentile(&[0, 90, 9, 1, 0], &bounds, 990), Some(5));
        assert_eq!(percentile(&[0, 0, 0, 0, 3], &bounds, 500), Some(10));
        assert_eq!(percentile(&[0, 0, 0, 0, 0], &bounds, 500), None);
    }
}
