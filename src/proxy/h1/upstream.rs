//! Keep-alive connections from the fast path to one endpoint.
//!
//! Owns: [`UpstreamConn`] (a socket and the bytes read from it) and [`IdleConns`], the
//! endpoint's idle connections, newest first out. A connection is reused only if it is
//! younger than `upstream_idle` and the reactor has not seen it become readable (an
//! idle connection that is readable has been closed or sent garbage): no system call
//! in the common case. Connections idle longer than `upstream_idle` are closed from the
//! oldest end whenever the endpoint is used. Must never hand out a connection that is
//! in use or has unread bytes.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::net::SocketAddr;
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
    /// Oldest at the front.
    idle: Mutex<VecDeque<(UpstreamConn, Instant)>>,
}

impl IdleConns {
    /// The most recently used live connection, if any.
    pub(crate) fn checkout(&self, max_idle: Duration) -> Option<UpstreamConn> {
        let now = Instant::now();
        let mut idle = self.idle.lock();
        expire(&mut idle, now, max_idle);
        while let Some((conn, _)) = idle.pop_back() {
            if !conn.closed_while_idle() {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps a connection whose last exchange ended cleanly.
    pub(crate) fn checkin(&self, mut conn: UpstreamConn, max_idle: Duration) {
        debug_assert!(conn.buf.is_empty());
        conn.reused = true;
        let now = Instant::now();
        let mut idle = self.idle.lock();
        expire(&mut idle, now, max_idle);
        if idle.len() < MAX_IDLE {
            idle.push_back((conn, now));
        }
    }

    /// How many are idle (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.idle.lock().len()
    }
}

/// Closes the connections idle for `max_idle` or longer (all at the front).
fn expire(idle: &mut VecDeque<(UpstreamConn, Instant)>, now: Instant, max_idle: Duration) {
    while idle
        .front()
        .is_some_and(|(_, since)| now.duration_since(*since) >= max_idle)
    {
        idle.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn connections_idle_too_long_are_closed_while_newer_ones_are_used() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accept = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let max_idle = Duration::from_mins(1);
        let idle = IdleConns::default();
        for _ in 0..3 {
            let conn = UpstreamConn::connect(addr, Duration::from_secs(5))
                .await
                .unwrap();
            idle.checkin(conn, max_idle);
        }
        tokio::time::advance(Duration::from_secs(61)).await;
        // A burst is over; one connection is used now and then: the three old ones go.
        let fresh = UpstreamConn::connect(addr, Duration::from_secs(5))
            .await
            .unwrap();
        idle.checkin(fresh, max_idle);
        assert_eq!(idle.len(), 1);
        let again = idle.checkout(max_idle).expect("the fresh one");
        assert!(again.reused);
        assert_eq!(idle.len(), 0);
        accept.abort();
    }
}
