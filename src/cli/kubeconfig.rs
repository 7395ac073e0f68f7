//! `podgate kubeconfig`: prints the kubeconfig the controller uses for one watched
//! cluster, from that cluster's API address, its CA and a ServiceAccount token (see
//! docs/operating.md, "Watching a remote cluster"). The result goes into a Secret in
//! the home cluster, mounted where `clusters[].kubeconfig` points.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine as _;

/// `podgate kubeconfig …`.
#[derive(clap::Args)]
pub struct KubeconfigArgs {
    /// The cluster's name in podgate.yaml (`clusters[].name`); names the cluster,
    /// user and context of the kubeconfig.
    #[arg(long)]
    pub(crate) cluster: String,
    /// The watched cluster's API server, e.g. `https://10.0.0.1:6443`.
    #[arg(long)]
    pub(crate) server: String,
    /// PEM file with the API server's CA (`ca.crt` of the token Secret). Without it
    /// the system's roots are trusted.
    #[arg(long)]
    pub(crate) ca_file: Option<PathBuf>,
    /// File holding the ServiceAccount token (`token` of the token Secret).
    #[arg(long)]
    pub(crate) token_file: PathBuf,
    /// Accept an `http://` server (the token then crosses the network in clear text):
    /// for a local test cluster only.
    #[arg(long)]
    pub(crate) allow_http: bool,
}

/// Why no kubeconfig could be printed.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("--cluster: {0}")]
    Name(&'static str),
    #[error("--server: {0}")]
    Server(String),
    #[error("{flag}: cannot read {}: {source}", path.display())]
    Read {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--token-file: the token is empty")]
    EmptyToken,
    #[error("--ca-file: no PEM certificate in {}", .0.display())]
    NotPem(PathBuf),
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, KubeconfigError> {
    std::fs::read(path).map_err(|source| KubeconfigError::Read {
        flag,
        path: path.to_owned(),
        source,
    })
}

/// The kubeconfig as YAML: one cluster, one user with the token inline, one context.
pub fn render(args: &KubeconfigArgs) -> Result<String, KubeconfigError> {
    if args.cluster.is_empty()
        || !args
            .cluster
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(KubeconfigError::Name("letters, digits and '-' only"));
    }
    let uri: http::Uri = args
        .server
        .parse()
        .map_err(|e: http::uri::InvalidUri| KubeconfigError::Server(e.to_string()))?;
    if !matches!(uri.scheme_str(), Some("https" | "http")) || uri.host().is_none() {
        return Err(KubeconfigError::Server(
            "must be an https URL with a host".to_owned(),
        ));
    }
    if uri.scheme_str() == Some("http") && !args.allow_http {
        return Err(KubeconfigError::Server(
            "http:// would send the token in clear text; use https:// (or --allow-http for a local test cluster)".to_owned(),
        ));
    }
    let token = String::from_utf8_lossy(&read("--token-file", &args.token_file)?)
        .trim()
        .to_owned();
    if token.is_empty() {
        return Err(KubeconfigError::EmptyToken);
    }
    let mut cluster = serde_json::json!({ "server": args.server });
    if let Some(path) = &args.ca_file {
        let pem = read("--ca-file", path)?;
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
            return Err(KubeconfigError::NotPem(path.clone()));
        }
        cluster["certificate-authority-data"] =
            base64::engine::general_purpose::STANDARD.encode(pem).into();
    }
    let name = &args.cluster;
    let user = format!("podgate@{name}");
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": name, "cluster": cluster }],
        "users": [{ "name": user, "user": { "token": token } }],
        "contexts": [{ "name": name, "context": { "cluster": name, "user": user } }],
        "current-context": name,
    });
    Ok(serde_yaml_ng::to_string(&config).expect("a JSON value serialises as YAML"))
}

/// Runs `podgate kubeconfig`: the kubeconfig on stdout, or the error and exit 2.
pub fn run(args: &KubeconfigArgs) -> ExitCode {
    match render(args) {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("podgate kubeconfig: {e}");
            ExitCode::from(2)
        }
    }
}
