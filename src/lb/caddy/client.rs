//! A minimal HTTP/1.1 client for Caddy's admin API, over loopback TCP or a unix socket.
//!
//! Owns: one request per connection, timeouts, and sorting answers into success,
//! refusal (4xx: the config was invalid) and trouble (connection errors, 5xx). Must
//! never follow redirects or talk to anything but the configured admin address.

use crate::lb::SettingsError;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// Where Caddy's admin API listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl AdminAddr {
    /// `http://127.0.0.1:2019`, `127.0.0.1:2019`, `unix:/path` or `/path`.
    pub(crate) fn parse(raw: &str) -> Result<Self, SettingsError> {
        if let Some(p) = raw.strip_prefix("unix:") {
            return Ok(Self::Unix(PathBuf::from(p)));
        }
        if raw.starts_with('/') {
            return Ok(Self::Unix(PathBuf::from(raw)));
        }
        let hostport = raw
            .strip_prefix("http://")
            .unwrap_or(raw)
            .trim_end_matches('/');
        hostport
            .parse()
            .map(Self::Tcp)
            .map_err(|_| SettingsError::CaddyAdmin(raw.to_owned()))
    }
}

impl std::fmt::Display for AdminAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(a) => write!(f, "http://{a}"),
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// What an admin request came back with.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("Caddy admin API at {addr} unreachable: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("Caddy admin API answered {status} to {method} {path}: {body}")]
    Status {
        method: &'static str,
        path: String,
        status: u16,
        body: String,
    },
}

impl AdminError {
    /// A 4xx: the request itself was refused.
    pub(crate) fn is_refusal(&self) -> bool {
        matches!(self, Self::Status { status, .. } if (400..500).contains(status))
    }

    /// Caddy's answer (500) when a parent of the path does not exist yet.
    pub(crate) fn is_missing_path(&self) -> bool {
        matches!(self, Self::Status { body, .. } if body.contains("invalid traversal path"))
            || self.is_not_found()
    }

    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, Self::Status { status: 404, .. })
            || matches!(self, Self::Status { body, .. } if body.contains("unknown object ID"))
    }
}

/// One admin endpoint.
#[derive(Clone, Debug)]
pub struct AdminClient {
    addr: AdminAddr,
    timeout: Duration,
}

impl AdminClient {
    pub fn new(addr: AdminAddr, timeout: Duration) -> Self {
        Self { addr, timeout }
    }

    /// Sends one request; `Ok(body)` for 2xx.
    pub async fn request(
        &self,
        method: &'static str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, AdminError> {
        let unreachable = |reason: String| AdminError::Unreachable {
            addr: self.addr.to_string(),
            reason,
        };
        // Caddy checks Host against its listen address (DNS-rebinding protection); on a
        // unix socket the only accepted origin is the empty one.
        let host = match &self.addr {
            AdminAddr::Tcp(a) => a.to_string(),
            AdminAddr::Unix(_) => String::new(),
        };
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", host);
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| unreachable(e.to_string()))?;
        let fut = async {
            match &self.addr {
                AdminAddr::Tcp(a) => send(tokio::net::TcpStream::connect(a).await?, req).await,
                AdminAddr::Unix(p) => send(tokio::net::UnixStream::connect(p).await?, req).await,
            }
        };
        let (status, bytes) = tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| unreachable(format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| unreachable(e.to_string()))?;
        if (200..300).contains(&status) {
            Ok(bytes)
        } else {
            Err(AdminError::Status {
                method,
                path: path.to_owned(),
                status,
                body: String::from_utf8_lossy(&bytes).trim().to_owned(),
            })
        }
    }
}

async fn send<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    req: Request<Full<Bytes>>,
) -> std::io::Result<(u16, Bytes)> {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    let driver = tokio::spawn(conn);
    let resp = sender
        .send_request(req)
        .await
        .map_err(std::io::Error::other)?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    driver.abort();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_addresses_parse() {
        assert_eq!(
            AdminAddr::parse("http://127.0.0.1:2019/").unwrap(),
            AdminAddr::Tcp("127.0.0.1:2019".parse().unwrap())
        );
        assert_eq!(
            AdminAddr::parse("unix:/run/caddy.sock").unwrap(),
            AdminAddr::Unix("/run/caddy.sock".into())
        );
        assert!(AdminAddr::parse("https://example.com").is_err());
    }
}
