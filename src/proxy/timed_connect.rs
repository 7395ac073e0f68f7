//! The general path's upstream connector: hyper's `HttpConnector`, timing each new
//! connection. The time rides on the connection (`Connected::extra`), so hyper copies
//! it into every response over it; the first response takes it and counts it for its
//! upstream (`podgate_proxy_upstream_connect_duration_seconds`), as the fast path does
//! when it opens a connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

/// How long one connection took to open; taken once, by its first response.
#[derive(Clone, Debug)]
pub(crate) struct ConnectTime(Arc<(Duration, AtomicBool)>);

impl ConnectTime {
    /// The connect time, the first time it is asked for; `None` afterwards.
    pub(crate) fn take(&self) -> Option<Duration> {
        let (took, taken) = &*self.0;
        (!taken.swap(true, Ordering::Relaxed)).then_some(*took)
    }
}

/// [`HttpConnector`] with each connection's [`ConnectTime`].
#[derive(Clone, Debug)]
pub(crate) struct TimedConnector(pub(crate) HttpConnector);

/// A connection opened by [`TimedConnector`].
#[derive(Debug)]
pub(crate) struct Timed {
    io: TokioIo<TcpStream>,
    took: ConnectTime,
}

type ConnectFuture<E> = Pin<Box<dyn Future<Output = Result<Timed, E>> + Send>>;

impl Service<Uri> for TimedConnector {
    type Response = Timed;
    type Error = <HttpConnector as Service<Uri>>::Error;
    type Future = ConnectFuture<Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let started = tokio::time::Instant::now();
        let connecting = self.0.call(uri);
        Box::pin(async move {
            let io = connecting.await?;
            let took = ConnectTime(Arc::new((started.elapsed(), AtomicBool::new(false))));
            Ok(Timed { io, took })
        })
    }
}

impl Connection for Timed {
    fn connected(&self) -> Connected {
        self.io.connected().extra(self.took.clone())
    }
}

impl hyper::rt::Read for Timed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Timed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}
