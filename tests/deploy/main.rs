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

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's root.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `name` on `PATH`, or `None` after saying loudly that the test is skipped (a failure
/// with `CI=true`).
fn tool(name: &str, install: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let message = format!(
            "!!!!!!!! `{name}` is not installed: this test is SKIPPED. Install it with {install}. !!!!!!!!"
        );
        assert!(
            std::env::var("CI").is_err(),
            "{message}\n(CI=true: missing programs are a failure)"
        );
        eprintln!("{message}");
    }
    found
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
