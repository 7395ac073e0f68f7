//! Keep-alive connections from the fast path to one endpoint.
//!
//! Owns: [`UpstreamConn`] (a socket and the bytes read from it) and [`IdleConns`], the
//! endpoint's idle connections, newest first out. A connection is reused only if it is
//! younger than `upstream_idle` and the reactor has not seen it become readable (an
//! idle connection that is readable has been closed or sent garbage): no system call
//! in the common case. Must never hand out a connection that is in use or has unread
//! bytes.

use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// More idle connections than this to one endpoint are closed instead of kept.
const MAX_IDLE: usize = 512;
const BUF_BYTES: usize = 8 * 1024;

/// One connection to an endpoint.
#[derive(Debug)]
pub(crate) struct UpstreamConn {
    pub(crate) stream: TcpStream,
    /// Response bytes read and not yet relayed.
    pub(crate) buf: BytesMut,
    /// Whether it carried a request before (a failure on it may be a stale close).
    pub(crate) reused: bool,
}

impl UpstreamConn {
    pub(crate) async fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<Self> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: BytesMut::with_capacity(BUF_BYTES),
            reused: false,
        })
    }

    /// Whether the peer closed it (or sent something unasked) while it was idle.
    fn closed_while_idle(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => false,
            Poll::Ready(Err(_)) => true,
            // Readiness may be left over from the last response: ask the socket.
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                !matches!(
                    self.stream.try_read(&mut probe),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
                )
            }
        }
    }
}

/// The idle connections of one endpoint.
#[derive(Debug, Default)]
pub(crate) struct IdleConns {
    idle: Mutex<Vec<(UpstreamConn, Instant)>>,
}

impl IdleConns {
    /// The most recently used live connection, if any.
    pub(crate) fn checkout(&self, max_idle: Duration) -> Option<UpstreamConn> {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some((conn, since)) = idle.pop() {
            if now.duration_since(since) >= max_idle {
                // The rest are older still.
                idle.clear();
                return None;
            }
            if !conn.closed_while_idle() {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps a connection whose last exchange ended cleanly.
    pub(crate) fn checkin(&self, mut conn: UpstreamConn) {
        debug_assert!(conn.buf.is_empty());
        conn.reused = true;
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push((conn, Instant::now()));
        }
    }
}
