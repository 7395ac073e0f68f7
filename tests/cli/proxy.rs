//! `podgate proxy -c proxy.yaml` as a real process: bad configuration exits with 2 and
//! names the field; a good one serves the admin API (single-threaded with --workers 1).

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::podgate_bin;
use std::time::{Duration, Instant};

#[test]
fn bad_configuration_exits_2_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("lb.token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let token = token.to_str().unwrap();
    let cases = [
        (
            format!("listen: 127.0.0.1:0\nlistn: 1\nadmin:\n  listen: 127.0.0.1:0\n  token_file: {token}\n"),
            "listn",
        ),
        (
            format!("listen: 127.0.0.1:0\nadmin:\n  listen: not-an-address\n  token_file: {token}\n"),
            "admin.listen",
        ),
        (
            "listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n  token_file: /nonexistent/lb.token\n".to_owned(),
            "admin.token_file",
        ),
    ];
    for (yaml, field) in cases {
        let path = dir.path().join("proxy.yaml");
        std::fs::write(&path, &yaml).unwrap();
        let out = podgate_bin()
            .args(["proxy", "-c", path.to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{yaml}: {stderr}");
        assert!(stderr.contains(field), "{field} not named in {stderr:?}");
        assert!(!stderr.contains("s3cret"));
    }
}

/// Drops ANSI colour sequences from a log line.
fn plain(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn a_single_threaded_proxy_process_serves_the_admin_api() {
    let (_dir, mut child) = spawn_proxy("", &[]);
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut admin = None;
    for line in stdout.lines() {
        let line = plain(&line.unwrap());
        if let Some(rest) = line.split("admin_addr=").nth(1) {
            admin = rest.split_whitespace().next().map(str::to_owned);
            break;
        }
        assert!(Instant::now() < deadline, "no 'proxy listening' line");
    }
    let admin = admin.expect("the proxy logs its admin address");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (health, state) = rt.block_on(async {
        let c = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<http_body_util::Empty<bytes::Bytes>>();
        let health = c
            .get(format!("http://{admin}/healthz").parse().unwrap())
            .await
            .unwrap()
            .status();
        let req = http::Request::get(format!("http://{admin}/v1/state"))
            .header("authorization", "Bearer s3cret")
            .body(http_body_util::Empty::new())
            .unwrap();
        (health, c.request(req).await.unwrap().status())
    });
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(health, http::StatusCode::OK);
    assert_eq!(state, http::StatusCode::OK, "the token from the file works");
}

/// What the operator must fix before a restart can help exits 2 and says why once:
/// a port already in use (the proxy's data plane, the controller's admin listener), a
/// kubeconfig that does not parse (named). Exit 1 and the cause printed twice before.
#[test]
fn a_port_in_use_or_a_broken_kubeconfig_exits_2_with_the_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap();
    let token = dir.path().join("lb.token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let proxy = dir.path().join("proxy.yaml");
    std::fs::write(
        &proxy,
        format!(
            "listen: {port}\nadmin:\n  listen: 127.0.0.1:0\n  token_file: {}\n",
            token.display()
        ),
    )
    .unwrap();
    let broken = dir.path().join("idc.kubeconfig");
    std::fs::write(&broken, "not: [a kubeconfig\n").unwrap();
    let controller = dir.path().join("podgate.yaml");
    std::fs::write(
        &controller,
        format!(
            "clusters:\n  - name: idc\n    kubeconfig: {}\nadmin:\n  listen: 127.0.0.1:0\n",
            broken.display()
        ),
    )
    .unwrap();
    let cases = [
        ("proxy", &proxy, vec!["Address already in use".to_owned()]),
        (
            "controller",
            &controller,
            vec![
                broken.display().to_string(),
                "failed to parse kubeconfig".to_owned(),
            ],
        ),
    ];
    for (role, config, said_once) in cases {
        let out = podgate_bin()
            .args([role, "-c", config.to_str().unwrap()])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{role}: {stderr}");
        for needle in said_once {
            assert_eq!(
                stderr.matches(&*needle).count(),
                1,
                "{role}: {needle}: {stderr}"
            );
        }
    }
    drop(taken);
}

/// `podgate proxy --workers 1` with `config_extra` atop a minimal configuration and
/// `args`, its log on a pipe (`RUST_LOG=info`, no format set from outside). The
/// directory holds its files: keep it while the process runs.
fn spawn_proxy(config_extra: &str, args: &[&str]) -> (tempfile::TempDir, std::process::Child) {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("lb.token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let path = dir.path().join("proxy.yaml");
    std::fs::write(
        &path,
        format!(
            "{config_extra}listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n  token_file: {}\n",
            token.display()
        ),
    )
    .unwrap();
    let child = podgate_bin()
        .args(["proxy", "-c", path.to_str().unwrap(), "--workers", "1"])
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .env_remove("PODGATE_LOG_FORMAT")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (dir, child)
}

/// The first log line of `podgate proxy` started with `args` (stdout is a pipe).
fn first_log_line(config_extra: &str, args: &[&str]) -> String {
    let (_dir, mut child) = spawn_proxy(config_extra, args);
    let line = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .next()
        .expect("a log line")
        .unwrap();
    child.kill().unwrap();
    let _ = child.wait();
    line
}

/// Logs into a pipe or a file carry no colour codes; `log_format: json` (or
/// `--log-format json`, which beats the file) writes one JSON object per line.
#[test]
fn logs_have_no_colours_in_a_pipe_and_come_as_json_on_request() {
    let text = first_log_line("", &[]);
    assert!(!text.contains('\u{1b}'), "{text:?}");
    assert!(text.contains("INFO"), "{text:?}");
    for (extra, args) in [
        ("log_format: json\n", &[][..]),
        ("", &["--log-format", "json"][..]),
    ] {
        let line = first_log_line(extra, args);
        let json: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
        assert_eq!(json["level"], "INFO", "{line}");
    }
    let text = first_log_line("log_format: json\n", &["--log-format", "text"]);
    assert!(
        serde_json::from_str::<serde_json::Value>(&text).is_err(),
        "{text}"
    );
}
