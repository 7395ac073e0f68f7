//! A client for HAProxy's runtime API (the stats socket or the master CLI), over a unix
//! socket or loopback TCP.
//!
//! Owns: one connection per command, timeouts, escaping of arguments, and telling a
//! command's error text apart from its success text. Must never build a command from
//! an unvalidated string: callers pass names from `names` and paths that `maps`
//! validated; [`escape_arg`] is the last line of defence, not the first.

use crate::lb::SettingsError;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Where a runtime API listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuntimeAddr {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl RuntimeAddr {
    /// `unix:/path`, `/path`, `tcp:127.0.0.1:9999` or `127.0.0.1:9999`.
    pub(crate) fn parse(raw: &str) -> Result<Self, SettingsError> {
        if let Some(path) = raw.strip_prefix("unix:") {
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if raw.starts_with('/') {
            return Ok(Self::Unix(PathBuf::from(raw)));
        }
        let tcp = raw.strip_prefix("tcp:").unwrap_or(raw);
        tcp.parse()
            .map(Self::Tcp)
            .map_err(|_| SettingsError::HaproxyRuntime(raw.to_owned()))
    }
}

impl std::fmt::Display for RuntimeAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
            Self::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// What went wrong talking to the runtime API.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot reach HAProxy runtime API at {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("HAProxy runtime API at {addr} did not answer within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("HAProxy refused `{command}`: {answer}")]
    Command { command: String, answer: String },
}

/// Escapes one argument for the runtime CLI, which splits on spaces and `;`.
pub(crate) fn escape_arg(arg: &str) -> String {
    let mut out = String::with_capacity(arg.len());
    for c in arg.chars() {
        if matches!(c, ';' | '\\' | ' ') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One runtime API endpoint.
#[derive(Clone, Debug)]
pub struct RuntimeClient {
    addr: RuntimeAddr,
    timeout: Duration,
}

impl RuntimeClient {
    pub fn new(addr: RuntimeAddr, timeout: Duration) -> Self {
        Self { addr, timeout }
    }

    /// Sends one command (with an optional payload, already newline-terminated) and
    /// returns HAProxy's whole answer.
    pub async fn raw(&self, command: &str) -> Result<String, RuntimeError> {
        let fut = async {
            match &self.addr {
                RuntimeAddr::Unix(p) => {
                    exchange(tokio::net::UnixStream::connect(p).await?, command).await
                }
                RuntimeAddr::Tcp(a) => {
                    exchange(tokio::net::TcpStream::connect(a).await?, command).await
                }
            }
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(source)) => Err(RuntimeError::Io {
                addr: self.addr.to_string(),
                source,
            }),
            Err(_) => Err(RuntimeError::Timeout {
                addr: self.addr.to_string(),
                timeout: self.timeout,
            }),
        }
    }

    /// Runs a command whose success is silence or an answer starting with one of `ok`.
    pub async fn run(&self, command: &str, ok: &[&str]) -> Result<String, RuntimeError> {
        let answer = self.raw(command).await?;
        let trimmed = answer.trim();
        if trimmed.is_empty() || ok.iter().any(|p| trimmed.starts_with(p)) {
            Ok(answer)
        } else {
            Err(RuntimeError::Command {
                command: command.lines().next().unwrap_or_default().to_owned(),
                answer: trimmed.to_owned(),
            })
        }
    }

    /// The worker's pid from `show info`: changes on every reload and restart.
    pub async fn worker_pid(&self) -> Result<u32, RuntimeError> {
        let info = self.raw("show info").await?;
        info.lines()
            .find_map(|l| l.strip_prefix("Pid: "))
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| RuntimeError::Command {
                command: "show info".into(),
                answer: "no Pid line in the answer".into(),
            })
    }

    /// Names of all backends (`show backend`).
    pub(crate) async fn backends(&self) -> Result<Vec<String>, RuntimeError> {
        let answer = self.raw("show backend").await?;
        Ok(answer
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| l.trim().to_owned())
            .collect())
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    command: &str,
) -> std::io::Result<String> {
    let mut line = command.to_owned();
    if !line.ends_with('\n') {
        line.push('\n');
    }
    stream.write_all(line.as_bytes()).await?;
    stream.flush().await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!(
            RuntimeAddr::parse("/run/h.sock").unwrap(),
            RuntimeAddr::Unix("/run/h.sock".into())
        );
        assert_eq!(
            RuntimeAddr::parse("unix:/x").unwrap(),
            RuntimeAddr::Unix("/x".into())
        );
        assert!(matches!(
            RuntimeAddr::parse("tcp:127.0.0.1:9").unwrap(),
            RuntimeAddr::Tcp(_)
        ));
        assert!(RuntimeAddr::parse("localhost").is_err());
    }

    #[test]
    fn escaping_keeps_commands_whole() {
        assert_eq!(escape_arg("/a;b c\\"), "/a\\;b\\ c\\\\");
    }
}
