//! What a connection served by hyper has in flight, so that one with nothing in flight
//! can be closed: hyper bounds an HTTP/1 request head, but an HTTP/2 connection (h2c,
//! h2 over TLS, or a preface that never ends) has no deadline before its first stream
//! and none while it has no stream open; pings keep it alive. Without this, silent
//! connections fill the connection cap.
//!
//! A request counts from the service call until its response body has ended or was
//! dropped.

use std::sync::Arc;

use http::Response;
use tokio::sync::watch;

use super::body::{Guarded, ProxyBody};

/// Requests in flight on one connection.
#[derive(Clone)]
pub(crate) struct Activity {
    in_flight: Arc<watch::Sender<usize>>,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Self {
            in_flight: Arc::new(watch::Sender::new(0)),
        }
    }

    /// Sees every change of the count.
    pub(crate) fn subscribe(&self) -> watch::Receiver<usize> {
        self.in_flight.subscribe()
    }

    /// Counts one request until the guard is dropped.
    fn start(&self) -> InFlight {
        self.in_flight.send_modify(|n| *n += 1);
        InFlight(Arc::clone(&self.in_flight))
    }

    /// Counts the request from now until the response's body ends.
    pub(crate) fn track<E, F>(
        &self,
        answer: F,
    ) -> impl Future<Output = Result<Response<ProxyBody>, E>> + use<E, F>
    where
        F: Future<Output = Result<Response<ProxyBody>, E>>,
    {
        let guard = self.start();
        async move {
            let response = answer.await?;
            Ok(response.map(|inner| Guarded::wrap(inner, guard)))
        }
    }
}

struct InFlight(Arc<watch::Sender<usize>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}
