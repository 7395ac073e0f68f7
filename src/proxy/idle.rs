//! What a connection served by hyper has in flight, so that one with nothing in flight
//! can be closed: hyper bounds an HTTP/1 request head, but an HTTP/2 connection (h2c,
//! h2 over TLS, or a preface that never ends) has no deadline before its first stream
//! and none while it has no stream open; pings keep it alive. Without this, silent
//! connections fill the connection cap.
//!
//! A request counts from the service call until its response body has ended or was
//! dropped.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::watch;

use super::body::{BoxError, ProxyBody};

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
            Ok(response.map(|inner| {
                Tracked {
                    inner,
                    _guard: guard,
                }
                .boxed()
            }))
        }
    }
}

struct InFlight(Arc<watch::Sender<usize>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A response body that holds its request's place in [`Activity`].
struct Tracked {
    inner: ProxyBody,
    _guard: InFlight,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
