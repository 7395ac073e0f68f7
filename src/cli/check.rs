//! `podgate check -c FILE`: validates a controller or proxy configuration with the
//! same code that starts them, and starts nothing (like `nginx -t`). Exit 0 when
//! valid, 2 with the offending field otherwise.

use std::path::Path;
use std::process::ExitCode;

/// Which configuration a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    Controller,
    Proxy,
}

impl Role {
    /// A controller configuration names `clusters`; a proxy's never does.
    fn guess(text: &str) -> Self {
        let has_clusters = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text)
            .ok()
            .and_then(|v| v.as_mapping().map(|m| m.contains_key("clusters")))
            .unwrap_or(false);
        if has_clusters {
            Self::Controller
        } else {
            Self::Proxy
        }
    }
}

/// Runs `podgate check`; prints one line saying what was checked.
pub fn run(path: &Path, role: Option<Role>) -> ExitCode {
    let role = match role {
        Some(role) => role,
        None => match std::fs::read_to_string(path) {
            Ok(text) => Role::guess(&text),
            Err(e) => {
                eprintln!("podgate check: cannot read {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
    };
    let summary = match role {
        Role::Controller => crate::controller::config::ControllerConfig::load(path)
            .map(|c| {
                format!(
                    "controller configuration, {} cluster(s), {} LB target(s)",
                    c.clusters.len(),
                    c.targets.len()
                )
            })
            .map_err(|e| e.to_string()),
        Role::Proxy => crate::proxy::ProxyConfig::check(path)
            .map(|c| format!("proxy configuration, HTTP on {}", c.listen))
            .map_err(|e| e.to_string()),
    };
    match summary {
        Ok(summary) => {
            println!("{}: ok ({summary})", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("podgate check: {}: {e}", path.display());
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Role;

    #[test]
    fn a_file_with_clusters_is_a_controller_configuration() {
        assert_eq!(Role::guess("clusters: []\n"), Role::Controller);
        assert_eq!(Role::guess("listen: 127.0.0.1:80\n"), Role::Proxy);
        assert_eq!(Role::guess(": not yaml ["), Role::Proxy);
    }
}
