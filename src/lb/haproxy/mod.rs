//! The HAProxy adapter: drives Debian's HAProxy (2.6+) through its runtime API.
//!
//! Owns: everything podgate puts into one HAProxy instance — the rendered file
//! `podgate.cfg` (one `pg_be_<hash>` backend per upstream plus a routing frontend), the
//! map files beside it (hosts and paths, see [`maps`](self) for the encoding), and the
//! `pg-` servers inside those backends, and the TLS certificates of a crt-list beside
//! them (`certs`: changed through the runtime API, never by a reload). With an owner (`Batch::owner`, several
//! controllers on one HAProxy) every name carries the owner's tag (`pg_o<tag>_be_…`, see
//! `names::Names`) and each owner needs its own `config_dir`. Must never touch another
//! owner's backend, a backend it did not create, or a server without the `pg-` prefix, never reload HAProxy for an endpoint change (endpoints are
//! dynamic servers, routes are runtime map updates), and never write a user string into
//! the configuration (names are hashes, addresses are typed).
//!
//! Reloads happen only when an upstream appears whose backend the running worker lacks;
//! they go through the master CLI (`haproxy -W -S <socket>`), are spaced by
//! `min_reload_interval`, and are followed by a re-sync of every server, because a new
//! worker only knows the servers written into the file. For the same reason the file is
//! rewritten (not reloaded) after every batch that changes servers: a reload by anyone
//! else — another controller, the operator — then keeps podgate's current servers.

mod adapter;
mod certs;
mod maps;
pub(crate) mod names;
mod observe;
mod render;
mod runtime;
mod servers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use adapter::HaproxyAdapter;
pub use runtime::{RuntimeAddr, RuntimeClient, RuntimeError};

/// How to reach and configure one HAProxy instance.
#[derive(Clone, Debug)]
pub struct HaproxySettings {
    /// The worker's runtime API (`stats socket … level admin`).
    pub runtime: RuntimeAddr,
    /// The master CLI (`-S`), used only to reload. Without it, new upstreams cannot be
    /// created and such batches are refused.
    pub(crate) master: Option<RuntimeAddr>,
    /// Where podgate writes `podgate.cfg` and the map files; HAProxy must load
    /// `<config_dir>/podgate.cfg` after its own files (`-f main.cfg -f podgate.cfg`).
    pub config_dir: PathBuf,
    /// Addresses of the rendered routing frontend. Empty (and no `tls_binds`): no
    /// frontend is rendered.
    pub binds: Vec<SocketAddr>,
    /// TLS addresses of the same frontend: certificates by SNI from podgate's crt-list
    /// (`<config_dir>/certificates.list`, see `certs`).
    pub tls_binds: Vec<SocketAddr>,
    /// Least time between two reloads.
    pub min_reload_interval: Duration,
    /// How long a reload may take until the new worker answers with the new backends.
    pub reload_timeout: Duration,
    /// Timeout of one runtime API command.
    pub(crate) command_timeout: Duration,
    /// The controller this adapter pushes for (`Batch::owner`): its tag is part of every
    /// backend name, so controllers sharing one HAProxy never touch each other's.
    pub(crate) owner: Option<String>,
}

impl HaproxySettings {
    /// Defaults for everything but the addresses.
    pub fn new(runtime: RuntimeAddr, master: Option<RuntimeAddr>, config_dir: PathBuf) -> Self {
        Self {
            runtime,
            master,
            config_dir,
            binds: Vec::new(),
            tls_binds: Vec::new(),
            min_reload_interval: Duration::from_secs(2),
            reload_timeout: Duration::from_secs(15),
            command_timeout: Duration::from_secs(5),
            owner: None,
        }
    }

    /// The file HAProxy must load.
    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("podgate.cfg")
    }
}
