//! The Caddy adapter: drives Debian's Caddy (2.6+) through its admin API.
//!
//! Owns: one server object in Caddy's `apps.http.servers` (key `podgate` by default,
//! `@id` `podgate-server`) and every `podgate-*` id inside it, the TLS server beside it
//! and podgate's entries of the TLS app's `load_pem` (see `tls`). With an owner
//! (`Batch::owner`, several controllers on one Caddy) the key and every id carry the
//! owner's tag (`podgate-o<tag>-server`, see `render::Ids`). Must never touch another
//! server, another app, the admin settings or another owner's ids.
//!
//! Cost: Caddy re-provisions its *whole* configuration on every change through the
//! admin API, whatever the size of the change. The adapter therefore sends one
//! request that changes config per batch (the whole podgate server, posted to
//! `/config/apps/http/servers/<name>`), so that the sync layer's batching under load
//! directly bounds Caddy's reload rate. With `tls_listen` a second one posts the TLS
//! server (`<name>-tls`: Caddy makes every listener of a server with TLS policies
//! TLS, so plain and TLS cannot share one), and a batch that changes certificates adds
//! one request for the new ones, one per replaced one and one per removed one (entries
//! of the shared `apps.tls.certificates.load_pem`, changed by `@id`). See `render` for the route encoding, the
//! weights approximation and what Caddy cannot do.

mod adapter;
mod client;
mod render;
mod tls;

use std::net::SocketAddr;
use std::time::Duration;

pub use adapter::CaddyAdapter;
pub use client::{AdminAddr, AdminClient, AdminError};
pub(crate) use render::default_server_name;

/// How to reach one Caddy instance and what podgate's server listens on.
#[derive(Clone, Debug)]
pub struct CaddySettings {
    pub admin: AdminAddr,
    /// Addresses of podgate's server inside Caddy (plain HTTP).
    pub(crate) listen: Vec<SocketAddr>,
    /// Addresses of podgate's TLS server (the same routes; certificates by SNI, see
    /// `tls`). Empty: no TLS server.
    pub tls_listen: Vec<SocketAddr>,
    /// The key of podgate's server under `apps.http.servers`.
    pub(crate) server_name: String,
    /// The controller this adapter pushes for (`Batch::owner`): its tag is part of every
    /// `@id`, so controllers sharing one Caddy never collide.
    pub(crate) owner: Option<String>,
    /// Timeout of one admin request (a config load on a big config can take a while).
    pub(crate) timeout: Duration,
}

impl CaddySettings {
    pub fn new(admin: AdminAddr, listen: Vec<SocketAddr>) -> Self {
        Self {
            admin,
            listen,
            tls_listen: Vec::new(),
            server_name: render::default_server_name(None),
            owner: None,
            timeout: Duration::from_secs(30),
        }
    }
}
