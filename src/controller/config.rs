//! `podgate.yaml`: the configuration users write for `podgate controller`. The field
//! names are part of the interface. Every error names the field it is about.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a configuration was refused. The message names the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

fn default_controller_name() -> String {
    "podgate.io/ingress-controller".to_owned()
}

fn default_legacy_class() -> String {
    "podgate".to_owned()
}

fn default_weight() -> u32 {
    100
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9900))
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerConfig {
    /// IngressClass `spec.controller` podgate serves.
    #[serde(default = "default_controller_name")]
    pub controller_name: String,
    /// Value of the legacy `kubernetes.io/ingress.class` annotation podgate accepts.
    #[serde(default = "default_legacy_class")]
    pub ingress_class: String,
    /// Written to `status.loadBalancer.ingress` of podgate's Ingresses (IPs or names).
    #[serde(default)]
    pub publish_addresses: Vec<String>,
    pub clusters: Vec<ClusterConfig>,
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
    #[serde(default)]
    pub admin: AdminConfig,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub name: String,
    /// Default: in-cluster configuration, then `$KUBECONFIG`, then `~/.kube/config`.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

/// One LB target: `kind: podgate` speaks the LB contract over HTTP.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub name: String,
    pub kind: TargetKind,
    /// One instance.
    #[serde(default)]
    pub url: Option<String>,
    /// Several instances, each synced on its own.
    #[serde(default)]
    pub urls: Vec<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Podgate,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: default_admin_listen(),
        }
    }
}

impl TargetConfig {
    /// Every instance URL, from `url` and `urls`.
    pub fn instances(&self) -> Vec<String> {
        self.url.iter().chain(&self.urls).cloned().collect()
    }

    /// Reads the bearer token, if any.
    pub fn token(&self) -> Result<Option<String>, ConfigError> {
        let Some(path) = &self.token_file else {
            return Ok(None);
        };
        let token = std::fs::read_to_string(path).map_err(|e| {
            invalid(
                format!("targets.{}.token_file", self.name),
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        Ok(Some(token.trim().to_owned()))
    }
}

impl ControllerConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config: Self = serde_yaml_ng::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: unique names, readable files, valid URLs.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.clusters.is_empty() {
            return Err(invalid("clusters", "at least one cluster is needed"));
        }
        let mut names = BTreeSet::new();
        for (i, c) in self.clusters.iter().enumerate() {
            let field = format!("clusters[{i}].name");
            if c.name.is_empty()
                || !c
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(invalid(
                    field,
                    format!("{:?} must be letters, digits and '-'", c.name),
                ));
            }
            if !names.insert(c.name.as_str()) {
                return Err(invalid(
                    field,
                    format!("duplicate cluster name {:?}", c.name),
                ));
            }
            if let Some(path) = &c.kubeconfig
                && let Err(e) = std::fs::metadata(path)
            {
                return Err(invalid(
                    format!("clusters[{i}].kubeconfig"),
                    format!("{}: {e}", path.display()),
                ));
            }
        }
        let mut names = BTreeSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            if !names.insert(t.name.as_str()) {
                return Err(invalid(
                    format!("targets[{i}].name"),
                    format!("duplicate target name {:?}", t.name),
                ));
            }
            let instances = t.instances();
            if instances.is_empty() {
                return Err(invalid(format!("targets[{i}]"), "needs `url` or `urls`"));
            }
            for url in &instances {
                let parsed = reqwest::Url::parse(url)
                    .map_err(|e| invalid(format!("targets[{i}].url"), format!("{url:?}: {e}")))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(invalid(
                        format!("targets[{i}].url"),
                        format!("{url:?} must be http or https"),
                    ));
                }
            }
            t.token()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<ControllerConfig, ConfigError> {
        let c: ControllerConfig =
            serde_yaml_ng::from_str(yaml).map_err(|e| ConfigError::Parse {
                path: "test.yaml".into(),
                message: e.to_string(),
            })?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn errors_name_the_field() {
        let err = parse("clusters: [{name: idc}]\nbogus: 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bogus"), "{err}");
        let err = parse("clusters: [{name: idc}, {name: idc}]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("clusters[1].name") && err.contains("duplicate"),
            "{err}"
        );
        let err = parse("clusters: [{name: idc, kubeconfig: /nonexistent/kc}]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("clusters[0].kubeconfig"), "{err}");
        let err = parse(
            "clusters: [{name: idc}]\ntargets: [{name: lb, kind: podgate, url: 'not a url'}]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("targets[0].url"), "{err}");
        let err =
            parse("clusters: [{name: idc}]\ntargets: [{name: lb, kind: nginx, url: 'http://x'}]\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("kind"), "{err}");
    }

    #[test]
    fn defaults() {
        let c = parse("clusters: [{name: idc}]\n").unwrap();
        assert_eq!(c.controller_name, "podgate.io/ingress-controller");
        assert_eq!(c.clusters[0].weight, 100);
        assert_eq!(c.admin.listen.port(), 9900);
    }
}
