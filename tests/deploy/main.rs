//! What an operator installs, checked with the real tools: the Kubernetes manifests
//! (`kubectl kustomize`, `kubernetes-validate --strict`), the alerts (`promtool`), every
//! metric the alerts and the dashboard name against a running controller and proxy,
//! the systemd unit (`systemd-analyze verify`) and the container image (`buildah`).
//! A missing tool skips its test loudly, and fails it with `CI=true`.

mod alerts;
mod image;
mod manifests;
mod metrics;
mod systemd;
#[path = "../shared/tool.rs"]
mod tool;

use tool::tool;

use std::path::Path;
use std::process::{Command, Output};

/// The repository's root.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `command`; the output, or a panic naming the command if it could not start.
fn output(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
