//! A proxy replaced by a new process without a refused connection or a dropped request
//! (`systemctl reload`, a binary upgrade): on SIGHUP the running process writes its
//! state file, starts a successor with its listening sockets (by the systemd
//! socket-activation protocol: `LISTEN_FDS`, `LISTEN_FDNAMES`), waits until the
//! successor says it is ready (`READY=1` on a private `NOTIFY_SOCKET`), and only then
//! stops accepting and drains. The sockets never close, so connections that arrive
//! meanwhile wait in the kernel's accept queue for whichever process accepts first.
//!
//! Owns: which sockets are handed over under which name, starting the successor, the
//! `sd_notify` messages (readiness, and the main PID for systemd). Must never close a
//! listening socket before the successor holds it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

/// Listening sockets this process was given (by its predecessor or by systemd), by name.
#[derive(Debug, Default)]
pub struct Inherited(BTreeMap<String, std::net::TcpListener>);

impl Inherited {
    /// The sockets in `LISTEN_FDS`/`LISTEN_FDNAMES` (none without them). Names other
    /// than [`NAMES`] and sockets that are not TCP listeners are reported and closed.
    pub fn from_env() -> Self {
        let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
            .map(|n| n.split(':').map(str::to_owned).collect())
            .unwrap_or_default();
        let mut fds = listenfd::ListenFd::from_env();
        let mut taken = BTreeMap::new();
        for index in 0..fds.len() {
            let name = names.get(index).cloned().unwrap_or_default();
            match fds.take_tcp_listener(index) {
                Ok(Some(listener)) if NAMES.contains(&name.as_str()) => {
                    taken.insert(name, listener);
                }
                Ok(_) => tracing::warn!(index, name, "inherited socket not used"),
                Err(e) => {
                    tracing::warn!(index, name, error = %e, "inherited socket is not a TCP listener");
                }
            }
        }
        // (A successor of this process gets its own list: the variables are set anew.)
        Self(taken)
    }

    /// The socket named `name` if it listens on `want` (a configured port 0 takes any
    /// port of the same address), else `None`: the caller binds `want` itself.
    pub(crate) fn take(&mut self, name: &str, want: SocketAddr) -> Option<std::net::TcpListener> {
        let listener = self.0.remove(name)?;
        let have = listener.local_addr().ok()?;
        let fits = have == want || (want.port() == 0 && have.ip() == want.ip());
        if fits {
            tracing::info!(name, addr = %have, "listening on an inherited socket");
            Some(listener)
        } else {
            tracing::info!(name, inherited = %have, configured = %want, "inherited socket not used: the configuration changed");
            None
        }
    }
}

/// The listeners a proxy hands over, in this order of child file descriptors.
pub(crate) const NAMES: [&str; 4] = ["http", "tls", "admin", "health"];

/// Why no successor took over; the running process keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("cannot start the successor: {0}")]
    Spawn(std::io::Error),
    #[error("the successor exited before it was ready ({0})")]
    Exited(std::process::ExitStatus),
    #[error("the successor was not ready within {0:?}")]
    NotReady(Duration),
    #[error("cannot pass the listening sockets: {0}")]
    Sockets(String),
}

/// How long a successor may take to restore its state and start.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Starts this program again with the same arguments and `sockets` (name, socket),
/// and waits until it is ready. Returns its process id. A successor that fails is
/// killed; the sockets stay open here either way.
pub async fn start_successor(sockets: Vec<(&'static str, OwnedFd)>) -> Result<u32, HandoverError> {
    use command_fds::{CommandFdExt, FdMapping};
    let dir = tempfile::tempdir().map_err(HandoverError::Spawn)?;
    let notify_path = dir.path().join("notify");
    let readiness = UnixDatagram::bind(&notify_path).map_err(HandoverError::Spawn)?;
    readiness
        .set_nonblocking(true)
        .map_err(HandoverError::Spawn)?;
    let readiness = tokio::net::UnixDatagram::from_std(readiness).map_err(HandoverError::Spawn)?;

    let mut args = std::env::args_os();
    let program = successor_program(args.next());
    let names: Vec<&str> = sockets.iter().map(|(name, _)| *name).collect();
    let mappings = sockets
        .into_iter()
        .zip(3..)
        .map(|((_, fd), child_fd)| FdMapping {
            parent_fd: fd,
            child_fd,
        })
        .collect();
    let mut command = tokio::process::Command::new(&program);
    command
        .args(args)
        .env("LISTEN_FDS", names.len().to_string())
        .env("LISTEN_FDNAMES", names.join(":"))
        .env_remove("LISTEN_PID")
        .env("NOTIFY_SOCKET", &notify_path)
        .env(SYSTEMD_NOTIFY, systemd_socket().unwrap_or_default())
        .stdin(std::process::Stdio::null());
    command
        .as_std_mut()
        .fd_mappings(mappings)
        .map_err(|e| HandoverError::Sockets(e.to_string()))?;
    let mut child = Unready(Some(command.spawn().map_err(HandoverError::Spawn)?));
    let pid = child
        .0
        .as_ref()
        .and_then(tokio::process::Child::id)
        .unwrap_or_default();
    tracing::info!(pid, program = %program.display(), "successor started: waiting until it is ready");

    let ready = async {
        let mut buf = vec![0u8; 4096];
        loop {
            let n = readiness.recv(&mut buf).await?;
            if String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1")
            {
                return Ok::<_, std::io::Error>(());
            }
        }
    };
    let outcome = tokio::select! {
        r = tokio::time::timeout(READY_WITHIN, ready) => match r {
            Ok(Ok(())) => Ok(pid),
            Ok(Err(e)) => Err(HandoverError::Spawn(e)),
            Err(_) => Err(HandoverError::NotReady(READY_WITHIN)),
        },
        status = child.wait() => Err(match status {
            Ok(s) => HandoverError::Exited(s),
            Err(e) => HandoverError::Spawn(e),
        }),
    };
    if outcome.is_ok() {
        // The successor now outlives this process: systemd follows it (MAINPID).
        child.0 = None;
        if let Some(socket) = systemd_socket() {
            notify(&socket, &format!("MAINPID={pid}\nREADY=1\n"));
        }
    }
    outcome
}

/// A successor not yet ready: killed if the handover is abandoned (it failed, or this
/// process was told to stop meanwhile), so that two processes never serve unasked.
struct Unready(Option<tokio::process::Child>);

impl Unready {
    async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        match &mut self.0 {
            Some(child) => child.wait().await,
            None => std::future::pending().await,
        }
    }
}

impl Drop for Unready {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.start_kill();
        }
    }
}

/// The program to start: argv[0] when it is a path (so that a replaced binary at that
/// path is the one started: an upgrade), else this executable.
fn successor_program(argv0: Option<std::ffi::OsString>) -> PathBuf {
    argv0
        .map(PathBuf::from)
        .filter(|p| p.components().count() > 1)
        .or_else(|| std::env::current_exe().ok())
        .unwrap_or_else(|| PathBuf::from("podgate"))
}

/// Where a successor finds systemd's notification socket: its own `NOTIFY_SOCKET` is
/// its predecessor's private one.
const SYSTEMD_NOTIFY: &str = "PODGATE_SYSTEMD_NOTIFY_SOCKET";

/// systemd's notification socket, if this process (or its first predecessor) was
/// started by systemd with `Type=notify`.
fn systemd_socket() -> Option<std::ffi::OsString> {
    match std::env::var_os(SYSTEMD_NOTIFY) {
        // Set by a predecessor: empty means "not under systemd".
        Some(socket) => (!socket.is_empty()).then_some(socket),
        None => std::env::var_os("NOTIFY_SOCKET"),
    }
}

/// Tells systemd, or the predecessor waiting for this process, that it is ready.
pub fn notify_ready() {
    if let Some(socket) = std::env::var_os("NOTIFY_SOCKET") {
        notify(
            &socket,
            &format!("READY=1\nMAINPID={}\n", std::process::id()),
        );
    }
}

/// Sends `message` to the `sd_notify(3)` socket `target`: a path, or `@name` in the
/// abstract namespace. Failures are logged: readiness is best effort.
fn notify(target: &std::ffi::OsStr, message: &str) {
    let sent = UnixDatagram::unbound().and_then(|socket| {
        let target = target.to_string_lossy();
        if let Some(name) = target.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            socket.send_to_addr(message.as_bytes(), &addr)
        } else {
            socket.send_to(message.as_bytes(), &*target)
        }
    });
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify NOTIFY_SOCKET");
    }
}
