//! `GET /v1/events`: server-sent events for the web UI. Every 200 ms the admin state's
//! fingerprint (desired version, clusters, targets, audit ring, gated pods) is compared
//! with the last one sent; a change sends `event: changed` and the page re-reads what it
//! shows. A comment every 15 s keeps proxies from closing an idle stream. The stream
//! ends when the client goes.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Frame;

use super::super::admin::AdminState;

const POLL: Duration = Duration::from_millis(200);
const KEEPALIVE: Duration = Duration::from_secs(15);

/// A stream of SSE frames until the client disconnects.
/// `slot` (one of the listener's event-stream slots) is held until the stream ends.
pub(crate) fn stream(
    state: Arc<AdminState>,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> impl futures::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send {
    // Starts by telling the page where things stand, so it never waits for a change.
    let first = Bytes::from_static(b"retry: 1000\n\n");
    let frames = futures::stream::unfold(
        (
            state,
            None::<String>,
            tokio::time::Instant::now(),
            Some(first),
        ),
        |(state, last, mut quiet_since, first)| async move {
            if let Some(first) = first {
                return Some((Ok(Frame::data(first)), (state, last, quiet_since, None)));
            }
            loop {
                tokio::time::sleep(POLL).await;
                let now = fingerprint(&state);
                if last.as_ref() != Some(&now) {
                    let line = format!(
                        "event: changed\ndata: {{\"version\":{}}}\n\n",
                        state.desired.version()
                    );
                    return Some((
                        Ok(Frame::data(Bytes::from(line))),
                        (state, Some(now), tokio::time::Instant::now(), None),
                    ));
                }
                if quiet_since.elapsed() >= KEEPALIVE {
                    quiet_since = tokio::time::Instant::now();
                    return Some((
                        Ok(Frame::data(Bytes::from_static(b": keepalive\n\n"))),
                        (state, last, quiet_since, None),
                    ));
                }
            }
        },
    );
    // The slot goes with the stream.
    futures::StreamExt::map(frames, move |frame| {
        let _held = &slot;
        frame
    })
}

/// Everything the page shows changes this string.
fn fingerprint(state: &AdminState) -> String {
    use std::fmt::Write as _;
    let mut out = format!("{}", state.desired.version());
    for c in &state.clusters {
        let s = c.get();
        let _ = write!(out, "|{}:{:?}:{}", s.name, s.state, s.since_ms);
    }
    for t in &state.targets {
        let t = t.lock();
        let _ = write!(
            out,
            "|{}:{:?}:{}:{}:{}",
            t.name,
            t.state,
            t.pushes,
            t.failures,
            t.quarantined.len()
        );
    }
    let _ = write!(out, "|audit:{}", state.audit.last_at_ms());
    for p in crate::gate::pod_views(&state.gates) {
        let _ = write!(out, "|{}/{}/{}:{}", p.cluster, p.namespace, p.name, p.state);
    }
    out
}
