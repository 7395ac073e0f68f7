//! The real LB programs the tests drive: `haproxy -W` and `caddy run`, each in a tempdir
//! of its own with its log appended across restarts, stopped (with everything it
//! started) on drop. They start bare: whoever drives them (an adapter in the
//! conformance suite, a controller in the Lab stories) brings podgate's configuration.

use crate::harness::{eventually, find_program, free_addr, stop_child};

use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use podgate::lb::caddy::{AdminAddr, AdminClient};
use podgate::lb::haproxy::{RuntimeAddr, RuntimeClient};

/// How long a program may take to answer on its API after a start.
const START: Duration = Duration::from_secs(30);

fn append_log(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open the program's log")
}

/// A `haproxy -W` process: the operator's `main.cfg` (runtime API, logging) and one
/// `<dir>/podgate.cfg` per podgate config directory, each empty until podgate renders
/// it.
pub(crate) struct Haproxy {
    dir: tempfile::TempDir,
    child: Option<Child>,
    runtime: RuntimeAddr,
    podgate_dirs: Vec<PathBuf>,
}

impl Haproxy {
    /// The runtime API on a unix socket (`rt.sock`), or on a loopback TCP address with
    /// `tcp_runtime`; `podgate_dirs` are folder names inside the tempdir.
    pub(crate) fn new(tcp_runtime: bool, podgate_dirs: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (socket, runtime) = if tcp_runtime {
            let a = free_addr();
            (format!("ipv4@{a}"), RuntimeAddr::Tcp(a))
        } else {
            let p = d.join("rt.sock");
            (p.display().to_string(), RuntimeAddr::Unix(p))
        };
        std::fs::write(
            d.join("main.cfg"),
            format!(
                "global\n    stats socket {socket} level admin\n    \
                 log stderr format short local0 notice\n"
            ),
        )
        .unwrap();
        let podgate_dirs: Vec<PathBuf> = podgate_dirs.iter().map(|p| d.join(p)).collect();
        for p in &podgate_dirs {
            std::fs::create_dir_all(p).unwrap();
            std::fs::write(p.join("podgate.cfg"), "").unwrap();
        }
        Self {
            dir,
            child: None,
            runtime,
            podgate_dirs,
        }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn runtime_addr(&self) -> RuntimeAddr {
        self.runtime.clone()
    }

    pub(crate) fn master_addr(&self) -> RuntimeAddr {
        RuntimeAddr::Unix(self.path("master.sock"))
    }

    pub(crate) fn runtime(&self) -> RuntimeClient {
        RuntimeClient::new(self.runtime_addr(), START)
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.path("haproxy.log")).unwrap_or_default()
    }

    /// Starts HAProxy and waits until its runtime API answers.
    pub(crate) async fn launch(&mut self) {
        let log = append_log(&self.path("haproxy.log"));
        let child = Command::new(find_program("haproxy").expect("haproxy is installed"))
            .process_group(0)
            .arg("-W")
            .arg("-S")
            .arg(self.path("master.sock"))
            .arg("-f")
            .arg(self.path("main.cfg"))
            .args(
                self.podgate_dirs
                    .iter()
                    .flat_map(|p| ["-f".into(), p.join("podgate.cfg").into_os_string()]),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start haproxy");
        self.child = Some(child);
        let me = &*self;
        eventually(
            "haproxy answers on its runtime socket",
            START,
            || async move {
                me.runtime()
                    .worker_pid()
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("{e}; log: {}", me.log()))
            },
        )
        .await;
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c);
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `caddy run` process with only its admin API configured and nothing persisted, so
/// that a restart comes back empty.
pub(crate) struct Caddy {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// The admin API's TCP address; with a unix admin socket, unused.
    pub(crate) admin: SocketAddr,
    admin_addr: AdminAddr,
}

impl Caddy {
    /// The admin API on a loopback TCP address, or on a unix socket with `unix_admin`.
    pub(crate) fn new(unix_admin: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let admin = free_addr();
        let sock = dir.path().join("admin.sock");
        let (listen, admin_addr) = if unix_admin {
            (format!("unix/{}", sock.display()), AdminAddr::Unix(sock))
        } else {
            (admin.to_string(), AdminAddr::Tcp(admin))
        };
        std::fs::write(
            dir.path().join("caddy.json"),
            format!(r#"{{"admin":{{"listen":"{listen}","config":{{"persist":false}}}}}}"#),
        )
        .unwrap();
        Self {
            dir,
            child: None,
            admin,
            admin_addr,
        }
    }

    pub(crate) fn admin_addr(&self) -> AdminAddr {
        self.admin_addr.clone()
    }

    pub(crate) fn client(&self) -> AdminClient {
        AdminClient::new(self.admin_addr(), START)
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("caddy.log")).unwrap_or_default()
    }

    /// Starts Caddy and waits until its admin API answers.
    pub(crate) async fn launch(&mut self) {
        let d = self.dir.path();
        let log = append_log(&d.join("caddy.log"));
        let child = Command::new(find_program("caddy").expect("caddy is installed"))
            .arg("run")
            .arg("--config")
            .arg(d.join("caddy.json"))
            .env("HOME", d)
            .env("XDG_DATA_HOME", d.join("data"))
            .env("XDG_CONFIG_HOME", d.join("config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start caddy");
        self.child = Some(child);
        let me = &*self;
        eventually("caddy answers on its admin API", START, || async move {
            me.client()
                .request("GET", "/config/", None)
                .await
                .map(|_| ())
                .map_err(|e| format!("{e}; log: {}", me.log()))
        })
        .await;
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c);
        }
    }
}

impl Drop for Caddy {
    fn drop(&mut self) {
        self.kill();
    }
}
