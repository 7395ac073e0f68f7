//! The fast path for HTTP/1.1: one task per client connection parses each request head,
//! routes it, and relays it over a pooled upstream connection, byte for byte.
//!
//! Owns: the client connection while its requests are plain HTTP/1.1 with known
//! framing — the common case, and the one the benchmarks measure. Everything else
//! (HTTP/2, h2c, Upgrade, chunked or `Expect` request bodies, HTTP/1.0, malformed or
//! oversized heads) is handed, with the bytes already read, to the general path
//! (`server.rs` → hyper → `forward.rs`), which keeps the connection from then on.
//! Routing, endpoint choice, retries and outlier accounting are the [`Forwarder`]'s,
//! shared with the general path. Not full duplex: the request body is sent before the
//! answer is read, except that an answer arriving early (a 413 from an upstream that
//! stops reading) is relayed, and then both connections close. Must never buffer a
//! body whole, relay bytes past a message's end, or reuse an upstream connection whose
//! last exchange did not end cleanly.
//!
//! Why by hand: hyper's server plus its pooled client cost 5.6 µs of user CPU per
//! proxied request against nginx's 2.2 µs (benches/README.md); relaying raw heads on one
//! task, with no per-request channel, task or header map, is what closes that gap.

mod framing;
mod handoff;
mod names;
mod request;
mod response;
pub(crate) mod upstream;

use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use self::framing::Framing;
use self::handoff::Prefixed;
use self::request::{Forwarded, Parsed};
use self::response::Head;
use self::upstream::UpstreamConn;
use super::access_log::AccessLog;
use super::balancer::{Backend, Pool};
use super::forward::{Forwarder, Peer, Refusal};
use super::record::{self, Record};
use podgate_core::model::UpstreamKey;

const READ_BYTES: usize = 8 * 1024;

/// How long an idle connection stays open once the proxy shuts down, for a request
/// that may already be on its way.
const LINGER: Duration = Duration::from_secs(1);

/// The status recorded when the client went away before an answer (as nginx logs it).
const CLIENT_GONE: u16 = 499;

/// How a connection left the fast path.
pub(crate) enum Ended<I> {
    Closed,
    /// The general path takes over, starting with the bytes already read.
    Handoff(Prefixed<I>),
}

/// Serves a client connection until it closes or needs the general path.
pub(crate) async fn serve<I>(
    io: I,
    peer: Peer,
    forwarder: &Forwarder,
    shutdown: watch::Receiver<bool>,
) -> Ended<I>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = ClientConn {
        io,
        buf: BytesMut::with_capacity(READ_BYTES),
        to_upstream: Vec::with_capacity(1024),
        to_client: Vec::with_capacity(2048),
        tried: Vec::new(),
        deadline: Box::pin(tokio::time::sleep(Duration::ZERO)),
        forwarded: Forwarded::new(
            peer.addr.ip(),
            peer.tls,
            forwarder.config().trusts(peer.addr.ip()),
        ),
        forwarder,
        peer: peer.addr,
        shutdown,
    };
    loop {
        let request = match conn.next_request().await {
            Next::Request(r) => r,
            Next::Handoff => {
                return Ended::Handoff(Prefixed::new(conn.buf.freeze(), conn.io));
            }
            Next::Closed => break,
        };
        // A shutdown that began after this answer was written without `Connection:
        // close` is `next_request`'s: it lingers for the request the client may already
        // have sent, and answers that one with the close.
        if !conn.exchange(request).await {
            break;
        }
    }
    conn.close().await;
    Ended::Closed
}

/// One client connection's state between requests.
struct ClientConn<'f, I> {
    io: I,
    /// Client bytes read and not yet consumed (pipelined requests stay here).
    buf: BytesMut,
    /// The upstream request head and buffered body, kept until an answer for retries.
    to_upstream: Vec<u8>,
    to_client: Vec<u8>,
    tried: Vec<SocketAddr>,
    /// Header-read and upstream-response timeouts; one timer per connection, re-armed.
    deadline: Pin<Box<Sleep>>,
    forwarded: Forwarded,
    forwarder: &'f Forwarder,
    /// The client, for the access log.
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
}

enum Next {
    Request(Exchange),
    Handoff,
    Closed,
}

/// One request, parsed; its upstream head is in `to_upstream`.
struct Exchange {
    head_len: usize,
    content_length: u64,
    idempotent: bool,
    is_head: bool,
    close: bool,
    target: Result<(UpstreamKey, Arc<Pool>), Refusal>,
    /// What the access log keeps of the head, when it is on.
    head: Option<Box<record::Head>>,
}

/// Why an attempt on one endpoint failed.
enum Failure {
    /// Nothing of a response arrived (a write failed, or the connection closed before
    /// a head): another endpoint may be tried if the request allows it.
    Lost(std::io::Error),
    TimedOut,
    Bad(response::BadResponse),
    /// The client went away while its body was relayed.
    ClientGone,
    /// The client stopped sending its body: its fault, not the endpoint's.
    ClientStalled,
}

impl<I> ClientConn<'_, I>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    /// Reads until the next request head is complete (pipelined ones may be here).
    async fn next_request(&mut self) -> Next {
        let limits = &self.forwarder.config().limits;
        let mut armed = false;
        // Shutting down while idle: wait a moment for the next request (answered with
        // `Connection: close`) rather than closing at once, where a request already on
        // its way would meet the close.
        let mut lingering = false;
        // Already shutting down (it began after the last answer went out): linger now.
        if *self.shutdown.borrow() && self.buf.is_empty() {
            lingering = true;
            armed = true;
            self.deadline.as_mut().reset(Instant::now() + LINGER);
        }
        loop {
            if !self.buf.is_empty() {
                match self.parse() {
                    Some(next) => return next,
                    None if self.buf.len() >= limits.max_header_bytes => return Next::Handoff,
                    None => {}
                }
            }
            if !armed {
                let timeout = self.forwarder.config().timeouts.header_read();
                self.deadline.as_mut().reset(Instant::now() + timeout);
                armed = true;
            }
            self.buf.reserve(READ_BYTES);
            let idle = self.buf.is_empty();
            let read = tokio::select! {
                biased;
                r = self.io.read_buf(&mut self.buf) => r,
                () = self.deadline.as_mut() => {
                    if !lingering {
                        tracing::debug!("client sent no whole request head in time");
                    }
                    return Next::Closed;
                }
                _ = self.shutdown.changed(), if idle && !lingering => {
                    lingering = true;
                    let until = Instant::now() + LINGER;
                    if until < self.deadline.deadline() {
                        self.deadline.as_mut().reset(until);
                    }
                    continue;
                }
            };
            match read {
                Ok(0) | Err(_) => return Next::Closed,
                Ok(_) => {}
            }
        }
    }

    /// `None` while the head is incomplete.
    fn parse(&mut self) -> Option<Next> {
        let mut storage = [const { MaybeUninit::uninit() }; request::MAX_HEADERS];
        let max = self.forwarder.config().limits.max_headers;
        let req = match request::parse(&self.buf, &mut storage[..max.min(request::MAX_HEADERS)]) {
            Parsed::Partial => return None,
            Parsed::Handoff => return Some(Next::Handoff),
            Parsed::Complete(req) => req,
        };
        let Some(target) = self.forwarder.route_fast(req.host, req.path()) else {
            return Some(Next::Handoff);
        };
        let log = self.forwarder.access_log();
        let head = log.is_on().then(|| Box::new(self.log_head(&req, log)));
        self.to_upstream.clear();
        if target.is_ok() {
            req.write_upstream_head(&mut self.to_upstream, &self.forwarded);
        }
        Some(Next::Request(Exchange {
            head_len: req.head_len,
            content_length: req.content_length,
            idempotent: req.idempotent(),
            is_head: req.is_head(),
            close: req.close,
            target,
            head,
        }))
    }

    fn log_head(&self, req: &request::Request<'_>, log: &AccessLog) -> record::Head {
        let query = log
            .query
            .then(|| req.target.split_once('?').map(|(_, q)| q.to_owned()))
            .flatten();
        record::Head {
            at: std::time::SystemTime::now(),
            client: self.peer,
            method: record::method_name(req.method),
            host: req.host.to_owned(),
            path: req.path().to_owned(),
            query,
            protocol: "HTTP/1.1",
            headers: record::logged_headers(log, |name| req.header(name.as_str())),
        }
    }

    /// Answers one request and records it; false when the client connection must close.
    async fn exchange(&mut self, mut x: Exchange) -> bool {
        let mut record = Record::new(x.head.take());
        // Body bytes still to read from the client.
        let mut body_left = x.content_length;
        let (keep, status) = self.answer(&x, &mut record, &mut body_left).await;
        record.received = x.content_length - body_left;
        record.finish(
            status,
            self.forwarder.metrics(),
            self.forwarder.access_log(),
        );
        keep
    }

    /// Answers one request: whether the client connection stays, and the status
    /// answered (499: the client went away first).
    async fn answer(
        &mut self,
        x: &Exchange,
        record: &mut Record,
        body_left: &mut u64,
    ) -> (bool, u16) {
        self.buf.advance(x.head_len);
        let (key, pool) = match &x.target {
            Ok(target) => target,
            Err(refusal) => return self.refuse(refusal, x, *body_left).await,
        };
        record.pool = Some(Arc::clone(pool));
        // A body that is already here goes with the head and can be sent again.
        if let Ok(n) = usize::try_from(*body_left)
            && n <= self.buf.len()
        {
            self.to_upstream.extend_from_slice(&self.buf[..n]);
            self.buf.advance(n);
            *body_left = 0;
        }
        let retries = self.forwarder.config().limits.retries;
        self.tried.clear();
        loop {
            let (backend, _in_flight) = match Forwarder::pick(key, pool, &self.tried) {
                Ok(chosen) => chosen,
                Err(refusal) => return self.refuse(&refusal, x, *body_left).await,
            };
            self.tried.push(backend.addr);
            record.endpoint = Some(Arc::clone(&backend));
            let attempts_left = self.tried.len() <= retries;
            let mut upstream = match self.upstream(pool, &backend).await {
                Ok(conn) => conn,
                Err(e) => {
                    // Nothing was sent: any request may go elsewhere.
                    self.forwarder.failed(pool, &backend);
                    crate::logging::warn_limited!(upstream = %key, endpoint = %backend.addr, error = %e,
                        retry = attempts_left, "upstream connect failed");
                    if attempts_left {
                        self.forwarder.retried(pool, record);
                        continue;
                    }
                    return self
                        .refuse(&Refusal::upstream_failed(), x, *body_left)
                        .await;
                }
            };
            let timeout = self.forwarder.config().timeouts.upstream_response();
            self.deadline.as_mut().reset(Instant::now() + timeout);
            let head = match self.send(&mut upstream, body_left).await {
                Ok(()) => self.response_head(&mut upstream, x, *body_left).await,
                // An upstream may answer before reading the whole body (a 413, a 401)
                // and close; the write fails then, but its answer is there to relay.
                Err(Failure::Lost(e)) => self
                    .response_head(&mut upstream, x, *body_left)
                    .await
                    .map_err(|_| Failure::Lost(e)),
                Err(failure) => Err(failure),
            };
            let failure = match head {
                Ok(mut resp) => {
                    if resp.status >= 500 {
                        self.forwarder.failed(pool, &backend);
                    } else {
                        backend.stats.success();
                    }
                    // An answer before the whole body: neither connection is at a
                    // message boundary any more.
                    let early = *body_left > 0;
                    resp.reusable &= !early;
                    let status = resp.status;
                    let (keep, sent) = self.relay(upstream, resp, &backend).await;
                    record.sent = sent;
                    return (keep && !early, status);
                }
                Err(failure) => failure,
            };
            let refusal = match failure {
                Failure::ClientGone => return (false, CLIENT_GONE),
                Failure::ClientStalled => Refusal::new(
                    http::StatusCode::REQUEST_TIMEOUT,
                    "request body not received in time".into(),
                ),
                Failure::TimedOut => {
                    self.forwarder.failed(pool, &backend);
                    crate::logging::warn_limited!(upstream = %key, endpoint = %backend.addr, "upstream response timed out");
                    Refusal::timed_out()
                }
                Failure::Bad(e) => {
                    self.forwarder.failed(pool, &backend);
                    tracing::warn!(upstream = %key, endpoint = %backend.addr, error = %e, "bad upstream response");
                    Refusal::upstream_failed()
                }
                Failure::Lost(e) => {
                    // A pooled connection the upstream closed as it was reused is no
                    // sign of a bad endpoint (keep-alive races); a fresh one failing is.
                    if !upstream.reused {
                        self.forwarder.failed(pool, &backend);
                    }
                    // `to_upstream` is emptied once a body starts to stream.
                    let retry = x.idempotent && attempts_left && !self.to_upstream.is_empty();
                    tracing::warn!(upstream = %key, endpoint = %backend.addr, error = %e,
                        retry, "upstream request failed");
                    if retry {
                        self.forwarder.retried(pool, record);
                        continue;
                    }
                    Refusal::upstream_failed()
                }
            };
            return self.refuse(&refusal, x, *body_left).await;
        }
    }

    /// A pooled connection to the endpoint, or a new one (its connect time counted
    /// for `pool`).
    async fn upstream(&self, pool: &Pool, backend: &Backend) -> std::io::Result<UpstreamConn> {
        let timeouts = &self.forwarder.config().timeouts;
        if let Some(conn) = backend.stats.idle.checkout(timeouts.upstream_idle()) {
            return Ok(conn);
        }
        let started = Instant::now();
        let conn = UpstreamConn::connect(backend.addr, timeouts.connect()).await?;
        if let Some(m) = pool.metrics(self.forwarder.metrics()) {
            m.connected(started.elapsed());
        }
        Ok(conn)
    }

    /// Sends the head (with the buffered body), then streams the rest of the body; all
    /// within the `upstream_response` deadline armed by the caller, so a client that
    /// stalls mid-body or an upstream that stops reading cannot hold the task forever.
    async fn send(&mut self, up: &mut UpstreamConn, body_left: &mut u64) -> Result<(), Failure> {
        tokio::select! {
            biased;
            r = up.stream.write_all(&self.to_upstream) => r.map_err(Failure::Lost)?,
            () = self.deadline.as_mut() => return Err(Failure::TimedOut),
        }
        if *body_left == 0 {
            return Ok(());
        }
        // Streamed from here on: the request can no longer be sent again.
        self.to_upstream.clear();
        let mut body = Framing::Length(*body_left);
        loop {
            if !self.buf.is_empty() {
                let n = body.take(&self.buf).unwrap_or(0);
                tokio::select! {
                    biased;
                    r = up.stream.write_all(&self.buf[..n]) => r.map_err(Failure::Lost)?,
                    () = self.deadline.as_mut() => return Err(Failure::TimedOut),
                }
                self.buf.advance(n);
                *body_left -= n as u64;
            }
            if body.is_done() {
                return Ok(());
            }
            self.buf.reserve(READ_BYTES);
            let read = tokio::select! {
                biased;
                r = self.io.read_buf(&mut self.buf) => r,
                () = self.deadline.as_mut() => return Err(Failure::ClientStalled),
            };
            match read {
                Ok(0) | Err(_) => return Err(Failure::ClientGone),
                Ok(_) => {}
            }
        }
    }

    /// Reads the final response head (relaying 1xx heads) within `upstream_response`
    /// of the request having been sent.
    async fn response_head(
        &mut self,
        up: &mut UpstreamConn,
        x: &Exchange,
        body_left: u64,
    ) -> Result<response::Response, Failure> {
        let timeout = self.forwarder.config().timeouts.upstream_response();
        self.deadline.as_mut().reset(Instant::now() + timeout);
        // The connection ends after this answer if the client asked, a shutdown is under
        // way, or the answer came before the whole request body.
        let close = x.close || *self.shutdown.borrow() || body_left > 0;
        loop {
            if !up.buf.is_empty() {
                self.to_client.clear();
                match response::parse(&up.buf, x.is_head, close, &mut self.to_client)
                    .map_err(Failure::Bad)?
                {
                    Head::Final(resp) => return Ok(resp),
                    Head::Interim { head_len } => {
                        self.io
                            .write_all(&up.buf[..head_len])
                            .await
                            .map_err(|_| Failure::ClientGone)?;
                        up.buf.advance(head_len);
                        continue;
                    }
                    Head::Partial => {}
                }
            }
            up.buf.reserve(READ_BYTES);
            let read = tokio::select! {
                biased;
                r = up.stream.read_buf(&mut up.buf) => r,
                () = self.deadline.as_mut() => return Err(Failure::TimedOut),
            };
            match read {
                Ok(0) if up.buf.is_empty() => {
                    return Err(Failure::Lost(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "connection closed before a response",
                    )));
                }
                Ok(0) => return Err(Failure::Bad(response::BadResponse::Malformed)),
                Ok(_) => {}
                Err(e) => return Err(Failure::Lost(e)),
            }
        }
    }

    /// Relays the response to the client; returns whether the client connection stays
    /// and the body bytes relayed.
    async fn relay(
        &mut self,
        mut up: UpstreamConn,
        resp: response::Response,
        backend: &Backend,
    ) -> (bool, u64) {
        self.forwarder.metrics().request(resp.status);
        up.buf.advance(resp.head_len);
        let mut body = resp.framing;
        let mut sent = 0u64;
        let mut ok = match body.take(&up.buf) {
            Ok(n) => {
                sent += n as u64;
                self.to_client.extend_from_slice(&up.buf[..n]);
                up.buf.advance(n);
                self.io.write_all(&self.to_client).await.is_ok()
            }
            Err(_) => false,
        };
        let until_close = matches!(body, Framing::UntilClose);
        while ok && !body.is_done() {
            up.buf.clear();
            up.buf.reserve(READ_BYTES);
            match up.stream.read_buf(&mut up.buf).await {
                Ok(0) => {
                    // The end of a body that ends with the connection; for any other,
                    // the upstream broke off and the client can only see a close.
                    ok = until_close;
                    break;
                }
                Ok(_) => match body.take(&up.buf) {
                    Ok(n) => {
                        sent += n as u64;
                        ok = self.io.write_all(&up.buf[..n]).await.is_ok();
                        up.buf.advance(n);
                    }
                    Err(_) => ok = false,
                },
                Err(_) => ok = false,
            }
        }
        if !ok {
            tracing::debug!(endpoint = %backend.addr, "response relay broke off");
            return (false, sent);
        }
        if self.io.flush().await.is_err() {
            return (false, sent);
        }
        if resp.reusable && body.is_done() && up.buf.is_empty() {
            let max_idle = self.forwarder.config().timeouts.upstream_idle();
            backend.stats.idle.checkin(up, max_idle);
        }
        // What the client was told decides, not the shutdown flag now: a shutdown that
        // began after the head went out leaves a keep-alive answer behind it.
        (!(resp.closes_client || until_close), sent)
    }

    /// Answers with the proxy's own short status; false when the client connection must
    /// close (its request body is not all here to skip).
    async fn refuse(&mut self, refusal: &Refusal, x: &Exchange, body_left: u64) -> (bool, u16) {
        let skippable = usize::try_from(body_left).is_ok_and(|n| n <= self.buf.len());
        if skippable {
            self.buf.advance(usize::try_from(body_left).unwrap_or(0));
        }
        let close = x.close || !skippable || *self.shutdown.borrow();
        let text = format!("{}\n", refusal.reason);
        let status = refusal.status;
        self.to_client.clear();
        self.to_client.extend_from_slice(
            format!(
                "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n{}\r\n",
                status.as_u16(),
                status.canonical_reason().unwrap_or(""),
                text.len(),
                if close { "connection: close\r\n" } else { "" },
            )
            .as_bytes(),
        );
        if !x.is_head {
            self.to_client.extend_from_slice(text.as_bytes());
        }
        self.forwarder.metrics().request(status.as_u16());
        let written =
            self.io.write_all(&self.to_client).await.is_ok() && self.io.flush().await.is_ok();
        (written && !close, status.as_u16())
    }

    async fn close(&mut self) {
        // A TLS close_notify or a FIN; a client that does not read gets no more time.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.io.shutdown()).await;
    }
}
