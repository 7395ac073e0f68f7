//! The `podgate weights` and `podgate migrate` binaries' contract: bad input exits 2
//! with a message naming what is wrong, before any request; an unreachable controller
//! exits 1. (What the commands do is tested through the same library code in
//! `tests/e2e/weights.rs` and `tests/e2e/migration.rs`.)

use std::process::Command;

/// Runs `podgate args…` against a controller address where nothing listens.
fn podgate(args: &[&str]) -> (Option<i32>, String) {
    // Bind and drop: a loopback port with nothing behind it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let output = Command::new(env!("CARGO_BIN_EXE_podgate"))
        .args(args)
        .env("PODGATE_CONTROLLER", format!("http://127.0.0.1:{port}"))
        .output()
        .expect("run podgate");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr)
}

#[test]
fn bad_input_exits_2_with_a_message() {
    for (args, says) in [
        (&["weights", "set", "idc=lots"][..], "not a whole number"),
        (&["weights", "set", "idc=0", "tke=0"], "above 0"),
        (
            &["weights", "set", "idc=1", "--app", "web"],
            "namespace/service",
        ),
        (&["weights", "set"], "required"),
        (&["migrate", "shop/web"], "--to"),
        (
            &["migrate", "shop/web", "--to", "tke", "--every", "soon"],
            "--every",
        ),
        (
            &["migrate", "shop/web", "--to", "tke", "--step", "0"],
            "--step",
        ),
        (&["migrate", "web", "--to", "tke"], "namespace/service"),
        (
            &["weights", "get", "--controller", "localhost:9900"],
            "--controller",
        ),
    ] {
        let (code, stderr) = podgate(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn unreachable_controller_exits_1() {
    for args in [
        &["weights", "get"][..],
        &["weights", "set", "idc=1", "tke=3"],
        &["weights", "set", "--clear", "--app", "shop/web"],
        &["migrate", "shop/web", "--to", "tke"],
        &["migrate", "--cancel", "shop/web"],
    ] {
        let (code, stderr) = podgate(args);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("cannot reach the controller"),
            "{args:?}: {stderr}"
        );
    }
}
