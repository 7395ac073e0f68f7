//! The access log: one line per answered request (`access_log:` in `proxy.yaml`), off
//! by default, to stdout or a file, as JSON lines or a fixed text format.
//!
//! Owns: the configuration, what a line holds ([`Entry`]), both formats, and the writer
//! thread. Must never block a request: entries go through a bounded queue to one
//! thread that writes and flushes; when the queue is full the entry is dropped and
//! counted (`podgate_proxy_access_log_dropped_total`). Query strings and request headers
//! are left out unless configured: they may carry tokens. A log file moved away (log
//! rotation) is reopened within a second.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::metrics::Metrics;
use super::record::Head;
use podgate_core::model::{ClusterName, UpstreamKey};

/// Where lines go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Destination {
    #[default]
    Off,
    Stdout,
    File,
}

/// How a line reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One JSON object per line.
    #[default]
    Json,
    /// `time client "METHOD host path protocol" status bytes duration upstream endpoint retries`.
    Text,
}

/// `access_log:` in `proxy.yaml`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogConfig {
    pub to: Destination,
    /// The file, with `to: file`.
    pub path: Option<PathBuf>,
    pub format: Format,
    /// Log the query string too (it may carry tokens).
    pub query: bool,
    /// Request headers to log, by name (e.g. `user-agent`); none by default, since
    /// headers may carry credentials.
    pub headers: Vec<String>,
}

/// One answered request, as the request path hands it over: no formatting there.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) head: Box<Head>,
    pub(crate) status: u16,
    /// Response body bytes sent to the client.
    pub(crate) sent: u64,
    /// Request body bytes read from the client.
    pub(crate) received: u64,
    /// From the request head to the last byte of the answer.
    pub(crate) took: Duration,
    pub(crate) upstream: Option<UpstreamKey>,
    /// The endpoint that answered (or was tried last).
    pub(crate) endpoint: Option<(ClusterName, SocketAddr)>,
    pub(crate) retries: u32,
}

/// One line, as written (the JSON fields; the text format prints the same values).
/// Borrows everything from its [`Entry`]; values that are not strings already are
/// formatted straight into the output (`Shown`), so writing a line allocates nothing.
#[derive(Debug, Serialize)]
struct Line<'a> {
    /// RFC 3339, UTC, milliseconds: when the request head arrived.
    time: Shown<Time>,
    client: SocketAddr,
    method: &'a str,
    host: &'a str,
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<&'a str>,
    protocol: &'static str,
    status: u16,
    bytes_sent: u64,
    bytes_received: u64,
    /// Seconds.
    duration: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream: Option<Shown<&'a UpstreamKey>>,
    /// `cluster/address:port`.
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint: Option<Shown<EndpointName<'a>>>,
    retries: u32,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    headers: &'a [(String, String)],
}

/// A value serialised as the string its `Display` writes, without an allocation.
#[derive(Debug)]
struct Shown<T>(T);

impl<T: std::fmt::Display> Serialize for Shown<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<T: std::fmt::Display> std::fmt::Display for Shown<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// When the request head arrived, as RFC 3339 with milliseconds (empty if the clock
/// is before 1970).
#[derive(Debug)]
struct Time(Option<jiff::Timestamp>);

impl std::fmt::Display for Time {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(t) => write!(f, "{t:.3}"),
            None => Ok(()),
        }
    }
}

/// `cluster/address:port`.
#[derive(Debug)]
struct EndpointName<'a>(&'a ClusterName, SocketAddr);

impl std::fmt::Display for EndpointName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.0, self.1)
    }
}

impl Entry {
    fn line(&self) -> Line<'_> {
        let h = &self.head;
        Line {
            time: Shown(Time(jiff::Timestamp::try_from(h.at).ok())),
            client: h.client,
            method: &h.method,
            host: &h.host,
            path: &h.path,
            query: h.query.as_deref(),
            protocol: h.protocol,
            status: self.status,
            bytes_sent: self.sent,
            bytes_received: self.received,
            duration: self.took.as_secs_f64(),
            upstream: self.upstream.as_ref().map(Shown),
            endpoint: self
                .endpoint
                .as_ref()
                .map(|(c, a)| Shown(EndpointName(c, *a))),
            retries: self.retries,
            headers: &h.headers,
        }
    }
}

impl Line<'_> {
    fn write_text(&self, out: &mut Vec<u8>) -> std::io::Result<()> {
        let (mark, query) = self.query.map_or(("", ""), |q| ("?", q));
        write!(
            out,
            "{} {} \"{} {} {}{}{} {}\" {} {} {:.6} ",
            self.time,
            self.client,
            self.method,
            self.host,
            self.path,
            mark,
            query,
            self.protocol,
            self.status,
            self.bytes_sent,
            self.duration,
        )?;
        match &self.upstream {
            Some(u) => write!(out, "{u} ")?,
            None => out.extend_from_slice(b"- "),
        }
        match &self.endpoint {
            Some(e) => write!(out, "{e}")?,
            None => out.push(b'-'),
        }
        write!(out, " retries={}", self.retries)?;
        for (name, value) in self.headers {
            write!(out, " {name}={value:?}")?;
        }
        out.push(b'\n');
        Ok(())
    }
}

/// Entries waiting for the writer; beyond this they are dropped.
const QUEUE: usize = 65_536;

/// The request side of the access log: cheap to ask whether it is on.
#[derive(Debug)]
pub(crate) struct AccessLog {
    queue: Option<SyncSender<Entry>>,
    pub(crate) query: bool,
    pub(crate) headers: Vec<http::HeaderName>,
}

/// Why the access log could not start.
#[derive(Debug, thiserror::Error)]
pub enum AccessLogError {
    #[error("access_log.path: is required with `to: file`")]
    NoPath,
    #[error("access_log.headers: {0:?} is not a header name")]
    BadHeader(String),
    #[error("access_log.path: cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl AccessLog {
    /// Starts the writer thread when the log is on.
    pub(crate) fn start(
        config: &AccessLogConfig,
        metrics: std::sync::Arc<Metrics>,
    ) -> Result<Self, AccessLogError> {
        let headers = config
            .headers
            .iter()
            .map(|h| {
                http::HeaderName::try_from(h.as_str())
                    .map_err(|_| AccessLogError::BadHeader(h.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let sink = match config.to {
            Destination::Off => None,
            Destination::Stdout => Some(Sink::Stdout),
            Destination::File => {
                let path = config.path.clone().ok_or(AccessLogError::NoPath)?;
                let file = open(&path).map_err(|source| AccessLogError::Open {
                    path: path.clone(),
                    source,
                })?;
                Some(Sink::File { path, file })
            }
        };
        let queue = sink.map(|sink| {
            let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
            let format = config.format;
            std::thread::Builder::new()
                .name("access-log".into())
                .spawn(move || write_lines(&rx, sink, format, &metrics))
                .map(|_| tx)
        });
        let queue = match queue {
            Some(Ok(tx)) => Some(tx),
            Some(Err(e)) => {
                tracing::error!(error = %e, "cannot start the access log writer: access log off");
                None
            }
            None => None,
        };
        Ok(Self {
            queue,
            query: config.query,
            headers,
        })
    }

    pub(crate) fn is_on(&self) -> bool {
        self.queue.is_some()
    }

    /// Queues `entry`; drops it when the writer is behind. Returns whether queued.
    pub(crate) fn write(&self, entry: Entry) -> bool {
        match &self.queue {
            Some(q) => match q.try_send(entry) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            },
            None => false,
        }
    }
}

enum Sink {
    Stdout,
    File { path: PathBuf, file: std::fs::File },
}

fn open(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// Whether `file` is still the one at `path` (not moved away by log rotation).
fn still_there(path: &std::path::Path, file: &std::fs::File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(path), file.metadata()) {
        (Ok(at_path), Ok(open)) => at_path.ino() == open.ino() && at_path.dev() == open.dev(),
        _ => false,
    }
}

/// How often the writer drains the queue and flushes. Requests never wake it: a
/// wake-up and a write per request cost more than the request itself.
const FLUSH_EVERY: Duration = Duration::from_millis(10);

/// The writer thread: every [`FLUSH_EVERY`] it formats what was queued into one buffer
/// and writes that at once; every second it checks that the file was not rotated away.
/// Ends (after a last write) when the proxy drops the queue.
fn write_lines(rx: &Receiver<Entry>, mut sink: Sink, format: Format, metrics: &Metrics) {
    let mut batch = Vec::with_capacity(BUFFER);
    let mut checked = std::time::Instant::now();
    loop {
        std::thread::sleep(FLUSH_EVERY);
        let ended = loop {
            match rx.try_recv() {
                Ok(entry) => {
                    let line = entry.line();
                    let start = batch.len();
                    let written = match format {
                        Format::Json => serde_json::to_writer(&mut batch, &line)
                            .map(|()| batch.push(b'\n'))
                            .map_err(std::io::Error::from),
                        Format::Text => line.write_text(&mut batch),
                    };
                    if written.is_err() {
                        batch.truncate(start);
                        metrics.access_log_dropped();
                    }
                    if batch.len() >= BUFFER {
                        flush(&mut sink, &mut batch, metrics);
                    }
                }
                Err(TryRecvError::Empty) => break false,
                Err(TryRecvError::Disconnected) => break true,
            }
        };
        flush(&mut sink, &mut batch, metrics);
        if ended {
            return;
        }
        if checked.elapsed() >= Duration::from_secs(1) {
            checked = std::time::Instant::now();
            if let Sink::File { path, file } = &mut sink
                && !still_there(path, file)
            {
                match open(path) {
                    Ok(reopened) => *file = reopened,
                    Err(e) => crate::logging::warn_limited!(
                        path = %path.display(), error = %e, "cannot reopen the access log"
                    ),
                }
            }
        }
    }
}

/// Writes the formatted lines in one call (the file is opened for appending, so the
/// lines of one batch stay together) and empties the buffer; a failure drops the batch.
fn flush(sink: &mut Sink, batch: &mut Vec<u8>, metrics: &Metrics) {
    if batch.is_empty() {
        return;
    }
    let written = match sink {
        Sink::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(batch).and_then(|()| out.flush())
        }
        Sink::File { file, .. } => file.write_all(batch),
    };
    if written.is_err() {
        // Every line of the batch is lost (a partial write may leave a cut one).
        #[allow(clippy::naive_bytecount)] // on a failed write only
        let lines = batch.iter().filter(|b| **b == b'\n').count();
        metrics.access_log_dropped_lines(u64::try_from(lines).unwrap_or(u64::MAX));
    }
    batch.clear();
}

/// The writer's buffer: a flush every 10 ms is one write for hundreds of lines.
const BUFFER: usize = 256 * 1024;
