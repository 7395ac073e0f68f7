//! deploy/systemd/podgate-proxy.service passes `systemd-analyze verify` without a word
//! of complaint (it exits 0 even for values it ignores, so its stderr must be empty).

use std::process::Command;

use super::{output, root, text, tool};

fn verify(analyze: &std::path::Path, unit: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("podgate-proxy.service");
    // The unit names the installed path; verify checks that it is executable.
    std::fs::write(
        &file,
        unit.replace("/usr/local/bin/podgate", env!("CARGO_BIN_EXE_podgate")),
    )
    .unwrap();
    let out = output(Command::new(analyze).arg("verify").arg(&file));
    let said = text(&out.stderr)
        .lines()
        // The test machine's own units, not ours.
        .filter(|l| l.contains("podgate-proxy.service"))
        .collect::<Vec<_>>()
        .join("\n");
    (out.status.success() && said.is_empty(), said)
}

#[test]
fn the_proxy_unit_verifies_and_is_locked_down() {
    let Some(analyze) = tool("systemd-analyze", "`apt-get install -y systemd`") else {
        return;
    };
    let unit =
        std::fs::read_to_string(root().join("deploy/systemd/podgate-proxy.service")).unwrap();
    let (ok, said) = verify(&analyze, &unit);
    assert!(ok, "{said}");
    for line in [
        "User=podgate",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "LimitNOFILE=",
        "ExecReload=",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(line)), "missing {line}");
    }
    // The check can fail: a value systemd cannot parse is reported.
    let (ok, said) = verify(
        &analyze,
        &unit.replace("ProtectSystem=strict", "ProtectSystem=bogus"),
    );
    assert!(!ok && said.contains("bogus"), "{said}");
}
