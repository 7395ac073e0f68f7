//! The command-line conventions an operator expects: `podgate check` (like `nginx -t`),
//! `--version` with commit and date, shell completions, and `podgate kubeconfig`,
//! whose output the controller can use against a token-protected API server.

use std::process::Command;

use crate::podgate_bin;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = podgate_bin().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_a_valid_configuration_of_either_role_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    std::fs::write(path("token"), "t0ken\n").unwrap();
    std::fs::write(path("kubeconfig"), "apiVersion: v1\nkind: Config\n").unwrap();
    // Ports that are surely in use by nothing: check must not bind them anyway.
    let controller = format!(
        "clusters:\n  - name: idc\n    kubeconfig: {}\ntargets:\n  - name: lb1\n    kind: podgate\n    url: http://127.0.0.1:1\n    token_file: {}\n",
        path("kubeconfig"),
        path("token")
    );
    std::fs::write(path("podgate.yaml"), controller).unwrap();
    let (code, out, err) = run(&["check", "-c", &path("podgate.yaml")]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("ok (controller configuration, 1 cluster(s), 1 LB target(s))"),
        "{out}"
    );

    let proxy = format!(
        "listen: 127.0.0.1:1\nadmin:\n  listen: 127.0.0.1:1\n  token_file: {}\n",
        path("token")
    );
    std::fs::write(path("proxy.yaml"), proxy).unwrap();
    let (code, out, err) = run(&["check", "-c", &path("proxy.yaml")]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok (proxy configuration"), "{out}");
    // The same file read as a controller's is wrong, and says why.
    let (code, _, err) = run(&["check", "--role", "controller", "-c", &path("proxy.yaml")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("listen"), "{err}");
}

#[test]
fn check_exits_2_naming_the_field_of_a_bad_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("podgate.yaml");
    std::fs::write(&file, "clusters:\n  - name: idc\n    weight: lots\n").unwrap();
    let (code, out, err) = run(&["check", "-c", &file.to_string_lossy()]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("weight"), "{err}");
    assert!(out.is_empty(), "{out}");

    let proxy = dir.path().join("proxy.yaml");
    std::fs::write(
        &proxy,
        "listen: 127.0.0.1:1\nadmin:\n  listen: 127.0.0.1:1\n  token_file: /nonexistent/token\n",
    )
    .unwrap();
    let (code, _, err) = run(&["check", "-c", &proxy.to_string_lossy()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("admin.token_file"), "{err}");

    let (code, _, err) = run(&["check", "-c", "/nonexistent/podgate.yaml"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn version_names_the_commit_and_the_build_date() {
    let (code, out, _) = run(&["--version"]);
    assert_eq!(code, 0);
    let line = out.trim();
    assert!(
        line.starts_with(&format!("podgate {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{line}"
    );
    let date = line.rsplit("built ").next().unwrap().trim_end_matches(')');
    assert!(
        date == "unknown" || (date.len() == 10 && date.as_bytes()[4] == b'-'),
        "{line}"
    );
}

#[test]
fn completions_are_printed_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = run(&["completions", shell]);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("podgate") && out.contains("kubeconfig"),
            "{shell}: {out}"
        );
    }
    // The bash script is valid bash.
    let (_, script, _) = run(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("podgate.bash");
    std::fs::write(&file, script).unwrap();
    let status = Command::new("bash").arg("-n").arg(&file).status().unwrap();
    assert!(status.success());
    let (code, _, err) = run(&["completions", "powershell-7"]);
    assert_eq!(code, 2, "{err}");
}

/// The documented path for a remote cluster: a ServiceAccount token and the API
/// server's address become a kubeconfig that the controller's client loader accepts,
/// and the API server (simulated, requiring the token) serves it; without the token it
/// answers 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_prints_one_the_controller_can_watch_a_token_protected_cluster_with() {
    use k8s_openapi::api::networking::v1::Ingress;
    use kube::api::{Api, ListParams};
    let sim = podgate_sim::SimCluster::start(
        "tke",
        podgate_sim::SimOptions {
            bearer_token: Some("tke-token-123".to_owned()),
            ..podgate_sim::SimOptions::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "tke-token-123\n").unwrap();
    let out = podgate_bin()
        .args([
            "kubeconfig",
            "--allow-http",
            "--cluster",
            "tke",
            "--server",
            &sim.url(),
            "--token-file",
        ])
        .arg(&token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = dir.path().join("tke.kubeconfig");
    std::fs::write(&file, &out.stdout).unwrap();

    let kubeconfig = kube::config::Kubeconfig::read_from(&file).unwrap();
    assert_eq!(kubeconfig.current_context.as_deref(), Some("tke"));
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let listed = Api::<Ingress>::all(client)
        .list(&ListParams::default())
        .await;
    assert!(listed.is_ok(), "{listed:?}");

    let anonymous = Api::<Ingress>::all(sim.client().unwrap())
        .list(&ListParams::default())
        .await;
    match anonymous {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 401, "{status:?}"),
        other => panic!("expected 401 without the token: {other:?}"),
    }
}

#[test]
fn kubeconfig_refuses_bad_input_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "  \n").unwrap();
    let token = token.to_string_lossy().into_owned();
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "--cluster",
                "tke",
                "--server",
                "http://x",
                "--token-file",
                &token,
            ],
            "clear text",
        ),
        (
            &[
                "--cluster",
                "a b",
                "--server",
                "https://x",
                "--token-file",
                &token,
            ],
            "--cluster",
        ),
        (
            &[
                "--cluster",
                "tke",
                "--server",
                "ftp://x",
                "--token-file",
                &token,
            ],
            "--server",
        ),
        (
            &[
                "--cluster",
                "tke",
                "--server",
                "https://x",
                "--token-file",
                &token,
            ],
            "--token-file",
        ),
        (
            &[
                "--cluster",
                "tke",
                "--server",
                "https://x",
                "--token-file",
                "/none",
                "--ca-file",
                "/none",
            ],
            "--token-file",
        ),
    ];
    for (args, flag) in cases {
        let mut all = vec!["kubeconfig"];
        all.extend_from_slice(args);
        let (code, out, err) = run(&all);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(flag), "{args:?}: {err}");
        assert!(out.is_empty(), "{out}");
    }
}
