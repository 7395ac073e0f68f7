//! Streaming bodies between client and upstream; never buffered whole.
//!
//! Owns: [`RetryBody`], which hands the client's request body to one upstream attempt
//! and gives it back untouched if that attempt failed before reading it (so a connect
//! error can be retried elsewhere, whatever the method) and records whether the client's
//! body ended or failed ([`ClientBody`]: a client's fault is not the endpoint's); [`Guarded`], which keeps
//! a guard (an endpoint's in-flight slot) until a body ends; and small error bodies.
//! Must never collect a body into memory.

use parking_lot::Mutex;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the proxy answers with.
pub(crate) type ProxyBody = BoxBody<Bytes, BoxError>;

/// A small, complete body (errors, admin answers).
pub(crate) fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into()).map_err(|e| match e {}).boxed()
}

/// The client's body, shared between attempts until one attempt starts reading it.
#[derive(Debug, Clone)]
pub(crate) struct BodySlot {
    inner: Arc<Shared>,
    hint: SizeHint,
    empty: bool,
}

#[derive(Debug)]
struct Shared {
    body: Mutex<Option<Incoming>>,
    /// How reading the client's body went ([`ClientBody`]).
    read: AtomicU8,
    /// Data bytes read from the client.
    received: AtomicU64,
}

/// How far the client's body got, as seen by the attempt reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClientBody {
    /// Not read to its end (yet).
    Pending,
    /// Read to its end (or there is none).
    Ended,
    /// The client's side failed: a bad chunk, an aborted upload. Not an upstream's
    /// fault.
    Failed,
}

impl BodySlot {
    pub(crate) fn new(body: Incoming) -> Self {
        let hint = body.size_hint();
        let empty = body.is_end_stream();
        Self {
            inner: Arc::new(Shared {
                body: Mutex::new(Some(body)),
                read: AtomicU8::new(ClientBody::Pending as u8),
                received: AtomicU64::new(0),
            }),
            hint,
            empty,
        }
    }

    pub(crate) fn client_body(&self) -> ClientBody {
        if self.empty {
            return ClientBody::Ended;
        }
        match self.inner.read.load(Ordering::Acquire) {
            1 => ClientBody::Ended,
            2 => ClientBody::Failed,
            _ => ClientBody::Pending,
        }
    }

    /// Data bytes read from the client so far.
    pub(crate) fn received(&self) -> u64 {
        self.inner.received.load(Ordering::Relaxed)
    }

    /// Whether no byte of the body has left for an upstream yet, so that the request
    /// can be sent again.
    pub(crate) fn unsent(&self) -> bool {
        self.empty || self.inner.body.lock().is_some()
    }

    /// A body for one attempt.
    pub(crate) fn attempt(&self) -> RetryBody {
        RetryBody {
            slot: self.clone(),
            taken: None,
        }
    }
}

/// One attempt's view of the client body: takes it from the slot on first read.
#[derive(Debug)]
pub(crate) struct RetryBody {
    slot: BodySlot,
    taken: Option<Incoming>,
}

impl Body for RetryBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.slot.empty {
            return Poll::Ready(None);
        }
        if self.taken.is_none() {
            let body = self.slot.inner.body.lock().take();
            match body {
                Some(b) => self.taken = Some(b),
                None => return Poll::Ready(Some(Err("request body already consumed".into()))),
            }
        }
        let Some(b) = self.taken.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = ready!(Pin::new(b).poll_frame(cx));
        let read = match &frame {
            None => Some(ClientBody::Ended),
            Some(Err(_)) => Some(ClientBody::Failed),
            Some(Ok(f)) => {
                if let Some(data) = f.data_ref() {
                    let n = data.len() as u64;
                    self.slot.inner.received.fetch_add(n, Ordering::Relaxed);
                }
                None
            }
        };
        if let Some(read) = read {
            self.slot.inner.read.store(read as u8, Ordering::Release);
        }
        Poll::Ready(frame.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.slot.empty
    }

    fn size_hint(&self) -> SizeHint {
        self.slot.hint
    }
}

/// A body that holds `guard` until it ends or is dropped: an endpoint's in-flight slot
/// (the upstream's response), a connection's count of requests in flight
/// (`idle::Activity`).
pub(crate) struct Guarded<B, G> {
    inner: B,
    _guard: G,
}

impl<B, G> Guarded<B, G>
where
    B: Body<Data = Bytes> + Unpin + Send + Sync + 'static,
    B::Error: Into<BoxError>,
    G: Unpin + Send + Sync + 'static,
{
    pub(crate) fn wrap(inner: B, guard: G) -> ProxyBody {
        Self {
            inner,
            _guard: guard,
        }
        .boxed()
    }
}

impl<B, G> Body for Guarded<B, G>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
    G: Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body that counts the data bytes it passes on and, when it ends or is dropped
/// (the client went away), hands the count to `done` once.
pub(crate) struct Counted<F: FnOnce(u64)> {
    inner: ProxyBody,
    sent: u64,
    done: Option<F>,
}

impl<F> Counted<F>
where
    F: FnOnce(u64) + Unpin + Send + Sync + 'static,
{
    pub(crate) fn wrap(inner: ProxyBody, done: F) -> ProxyBody {
        Self {
            inner,
            sent: 0,
            done: Some(done),
        }
        .boxed()
    }
}

impl<F: FnOnce(u64)> Drop for Counted<F> {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done(self.sent);
        }
    }
}

impl<F: FnOnce(u64) + Unpin> Body for Counted<F> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(f)) = &frame
            && let Some(data) = f.data_ref()
        {
            self.sent += data.len() as u64;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
