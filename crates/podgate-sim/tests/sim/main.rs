//! The simulated API server against the real kube client, and against answers recorded from a real kube-apiserver.

mod api;
mod cel;
mod kinds;
mod watch;
mod wire;
