//! `podgate.yaml`: the configuration users write for `podgate controller`. The field
//! names are part of the interface. Every error names the field it is about.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::lb::LbAdapter;
use crate::lb::config::{Target, TargetConfig, build_adapters};
use podgate_core::duration;
use podgate_core::index::EndpointTarget;

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

/// A Kubernetes name of the strictest kind (namespace, ConfigMap, Lease).
fn is_dns_label(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
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

fn default_gateway_controller_name() -> String {
    podgate_core::gateway::DEFAULT_CONTROLLER_NAME.to_owned()
}

fn default_legacy_class() -> String {
    "podgate".to_owned()
}

fn default_weight() -> u32 {
    100
}

fn default_hold_down() -> Duration {
    Duration::from_secs(10)
}

fn default_withdraw_guard() -> f64 {
    0.5
}

fn default_confirm_after() -> Duration {
    Duration::from_secs(30)
}

fn default_initial_sync_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9900))
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerConfig {
    /// `text` (default) or `json` log lines; `--log-format` beats it.
    #[serde(default)]
    pub log_format: crate::logging::LogFormat,
    /// IngressClass `spec.controller` podgate serves.
    #[serde(default = "default_controller_name")]
    pub controller_name: String,
    /// Value of the legacy `kubernetes.io/ingress.class` annotation podgate accepts.
    #[serde(default = "default_legacy_class")]
    pub ingress_class: String,
    /// GatewayClass `spec.controllerName` podgate serves (`docs/gateway-api.md`).
    #[serde(default = "default_gateway_controller_name")]
    pub gateway_controller_name: String,
    /// Written to `status.loadBalancer.ingress` of podgate's Ingresses (IPs or names).
    #[serde(default)]
    pub publish_addresses: Vec<String>,
    pub clusters: Vec<ClusterConfig>,
    /// LBs to keep in sync (see `lb::config` for every kind's fields).
    #[serde(default)]
    pub targets: Vec<Target>,
    #[serde(default)]
    pub admin: AdminConfig,
    /// Optional second listener with `/metrics`, `/healthz` and `/readyz` only, no
    /// token and no writes: for the kubelet's probes and Prometheus on the pod's
    /// address while `admin.listen` stays on loopback. Shares `admin`'s limits.
    #[serde(default)]
    pub health_listen: Option<SocketAddr>,
    /// Where run-time weights and migrations are kept (see `controller::weights`).
    #[serde(default)]
    pub weights: WeightsConfig,
    /// Failover damping: a cluster that recovers Active endpoints for an upstream after
    /// losing them gets its share back only after this long (`0s`: at once).
    #[serde(default = "default_hold_down", deserialize_with = "duration::required")]
    pub(crate) hold_down: Duration,
    /// Floor guard: a relist that would withdraw more than this fraction (0.0–1.0) of
    /// one cluster's endpoints at once is held until confirmed (`1.0`: never held).
    #[serde(default = "default_withdraw_guard")]
    pub(crate) withdraw_guard: f64,
    /// How long a guarded relist is held before a fresh list confirms it.
    #[serde(
        default = "default_confirm_after",
        deserialize_with = "duration::required"
    )]
    pub(crate) confirm_after: Duration,
    /// How long the LB workers wait at start for every cluster's first complete list
    /// before pushing anyway. Until then nothing is pushed, so a restarted controller
    /// never withdraws what the LB serves while it lists; after it, a cluster still
    /// unlisted counts as having no endpoints.
    #[serde(
        default = "default_initial_sync_timeout",
        deserialize_with = "duration::required"
    )]
    pub initial_sync_timeout: Duration,
    /// Who this controller is on a shared LB (`Batch::owner`): it removes only what it
    /// registered. Default: `controller_name`. Replicas of one controller share it.
    #[serde(default)]
    pub lb_owner: Option<String>,
    /// Several replicas: only the holder of this Lease pushes to the LBs (see
    /// `controller::leader`). Without it every replica pushes, fenced by start time.
    #[serde(default)]
    pub leader_election: Option<LeaderElectionConfig>,
    /// The pod readiness gate `podgate.io/lb-registered` (see `src/gate`): always on
    /// for namespaces labelled `podgate.io/readiness-gate-inject=enabled`.
    #[serde(default)]
    pub readiness_gate: ReadinessGateConfig,
}

fn default_gate_timeout() -> Duration {
    Duration::from_mins(1)
}

/// How the readiness gate behaves, and where its admission webhook listens.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadinessGateConfig {
    /// A pod that every LB target has not acknowledged after this long gets the gate
    /// anyway, with a Warning Event (a failing LB must not hold rollouts forever).
    #[serde(
        default = "default_gate_timeout",
        deserialize_with = "duration::required"
    )]
    pub timeout: Duration,
    /// The mutating admission webhook that adds the gate to new pods; none without it
    /// (pod templates can carry the gate themselves).
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
}

impl Default for ReadinessGateConfig {
    fn default() -> Self {
        Self {
            timeout: default_gate_timeout(),
            webhook: None,
        }
    }
}

/// The webhook's own TLS listener (the API server calls it over HTTPS only).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub listen: SocketAddr,
    /// PEM certificate chain; re-read when the file changes (a renewed Secret).
    pub cert_file: PathBuf,
    /// PEM private key of the certificate.
    pub key_file: PathBuf,
}

fn default_lease_name() -> String {
    "podgate-leader".to_owned()
}

fn default_lease_duration() -> Duration {
    Duration::from_secs(15)
}

fn default_retry_period() -> Duration {
    Duration::from_secs(2)
}

/// The Lease replicas compete for (client-go's timings by default).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderElectionConfig {
    /// The cluster that holds the Lease. Default: the weights cluster.
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default = "default_weights_namespace")]
    pub namespace: String,
    #[serde(default = "default_lease_name")]
    pub name: String,
    /// A standby takes over once the Lease has not changed for this long.
    #[serde(
        default = "default_lease_duration",
        deserialize_with = "duration::required"
    )]
    pub lease_duration: Duration,
    /// How often every replica reads (and the leader renews) the Lease.
    #[serde(
        default = "default_retry_period",
        deserialize_with = "duration::required"
    )]
    pub retry_period: Duration,
    /// This replica's name in the Lease, before a random suffix (so that replicas given
    /// the same name, or a restarted pod, are distinct holders). Default: `$POD_NAME`,
    /// else `$HOSTNAME`.
    #[serde(default)]
    pub identity: Option<String>,
}

impl LeaderElectionConfig {
    /// With the defaults of every field.
    pub fn new() -> Self {
        Self {
            cluster: None,
            namespace: default_weights_namespace(),
            name: default_lease_name(),
            lease_duration: default_lease_duration(),
            retry_period: default_retry_period(),
            identity: None,
        }
    }

    pub(crate) fn identity(&self) -> String {
        let name = self.identity.clone().unwrap_or_else(|| {
            std::env::var("POD_NAME")
                .or_else(|_| std::env::var("HOSTNAME"))
                .unwrap_or_else(|_| "podgate".to_owned())
        });
        format!("{name}-{:08x}", rand::random::<u32>())
    }
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub(crate) name: String,
    /// Default: in-cluster configuration, then `$KUBECONFIG`, then `~/.kube/config`.
    #[serde(default)]
    pub(crate) kubeconfig: Option<PathBuf>,
    #[serde(default)]
    pub(crate) context: Option<String>,
    #[serde(default = "default_weight")]
    pub(crate) weight: u32,
    /// Withdraw this cluster's endpoints after it has been stale this long. Default:
    /// never (a stale cluster's pods are probably still serving).
    #[serde(default, deserialize_with = "duration::optional")]
    pub(crate) stale_ttl: Option<Duration>,
    /// Routability guard: CIDRs the LB can reach (`10.0.0.0/8`, `fd00::/8`). Endpoints
    /// outside them are not registered and are reported. Excludes `routable_from`.
    #[serde(default)]
    pub routable_cidrs: Option<Vec<String>>,
    /// Routability guard read from the cluster: `kube-ovn` follows its Subnets'
    /// `spec.cidrBlock`.
    #[serde(default)]
    pub routable_from: Option<RoutableFrom>,
    /// `pod` (default): pod IPs; `nodeport`: Ready nodes' InternalIP + the nodePort.
    #[serde(default)]
    pub target: EndpointTarget,
}

/// Where a cluster's routable CIDRs come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum RoutableFrom {
    /// kube-ovn `Subnet` objects (`kubeovn.io/v1`), `spec.cidrBlock`.
    #[serde(rename = "kube-ovn")]
    KubeOvn,
}

impl ClusterConfig {
    /// `routable_cidrs` parsed; `index` is the cluster's position, for the error.
    pub(crate) fn routable_nets(&self, index: usize) -> Result<Option<Vec<IpNet>>, ConfigError> {
        let Some(list) = &self.routable_cidrs else {
            return Ok(None);
        };
        list.iter()
            .enumerate()
            .map(|(j, raw)| {
                raw.trim().parse::<IpNet>().map_err(|e| {
                    invalid(
                        format!("clusters[{index}].routable_cidrs[{j}]"),
                        format!("{raw:?}: {e}"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default = "default_admin_listen")]
    pub(crate) listen: SocketAddr,
    /// File holding the bearer token that admin writes (PUT, POST, DELETE) require.
    /// Without it, writes are taken only when `listen` is a loopback address (refused
    /// with 403 otherwise).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Connections open at once; more wait in the kernel's backlog.
    #[serde(default = "default_admin_max_connections")]
    pub max_connections: usize,
    /// Time a client has to send a request head; also closes a connection idle this
    /// long, from its start.
    #[serde(
        default = "default_admin_header_read",
        deserialize_with = "duration::required"
    )]
    pub header_read_timeout: Duration,
    /// Host names the admin listener answers to besides IP addresses and `localhost`
    /// (e.g. a Service name someone port-forwards under). Any other `Host` is refused
    /// with 403, so that a web page cannot reach the admin view through DNS rebinding.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

fn default_admin_max_connections() -> usize {
    64
}

fn default_admin_header_read() -> Duration {
    Duration::from_secs(10)
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            listen: default_admin_listen(),
            token_file: None,
            max_connections: default_admin_max_connections(),
            header_read_timeout: default_admin_header_read(),
        }
    }
}

impl AdminConfig {
    /// The write token, trimmed; `None` when no `token_file` is configured.
    pub(crate) fn token(&self) -> Result<Option<String>, ConfigError> {
        let Some(path) = &self.token_file else {
            return Ok(None);
        };
        let token = std::fs::read_to_string(path)
            .map_err(|e| invalid("admin.token_file", format!("{}: {e}", path.display())))?;
        let token = token.trim();
        if token.is_empty() {
            return Err(invalid(
                "admin.token_file",
                format!("{} is empty", path.display()),
            ));
        }
        Ok(Some(token.to_owned()))
    }
}

fn default_weights_namespace() -> String {
    "podgate-system".to_owned()
}

fn default_weights_name() -> String {
    "podgate-weights".to_owned()
}

/// The ConfigMap holding run-time weights and migrations, shared by every replica.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsConfig {
    /// The home cluster that holds it. Default: the first cluster.
    #[serde(default)]
    pub(crate) cluster: Option<String>,
    #[serde(default = "default_weights_namespace")]
    pub(crate) namespace: String,
    #[serde(default = "default_weights_name")]
    pub name: String,
}

impl Default for WeightsConfig {
    fn default() -> Self {
        Self {
            cluster: None,
            namespace: default_weights_namespace(),
            name: default_weights_name(),
        }
    }
}

impl ControllerConfig {
    /// The cluster that holds the leader Lease, if leader election is on.
    pub(crate) fn lease_cluster(&self) -> Option<&ClusterConfig> {
        let election = self.leader_election.as_ref()?;
        match &election.cluster {
            Some(name) => self.clusters.iter().find(|c| c.name == *name),
            None => self.weights_cluster(),
        }
    }

    /// The cluster that holds the weights ConfigMap.
    pub(crate) fn weights_cluster(&self) -> Option<&ClusterConfig> {
        match &self.weights.cluster {
            Some(name) => self.clusters.iter().find(|c| c.name == *name),
            None => self.clusters.first(),
        }
    }
}

impl ControllerConfig {
    /// One adapter per LB instance of every target. Connects to nothing.
    /// Who this controller is on a shared LB: `lb_owner`, else `controller_name`.
    pub(crate) fn owner(&self) -> &str {
        self.lb_owner.as_deref().unwrap_or(&self.controller_name)
    }

    pub(crate) fn adapters(&self) -> Result<Vec<Box<dyn LbAdapter>>, ConfigError> {
        let targets = TargetConfig {
            targets: self.targets.clone(),
        };
        build_adapters(&targets, Some(self.owner())).map_err(|e| invalid("targets", e.to_string()))
    }

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
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
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
            if c.routable_cidrs.is_some() && c.routable_from.is_some() {
                return Err(invalid(
                    format!("clusters[{i}].routable_from"),
                    "give routable_cidrs or routable_from, not both",
                ));
            }
            c.routable_nets(i)?;
        }
        if !(0.0..=1.0).contains(&self.withdraw_guard) {
            return Err(invalid(
                "withdraw_guard",
                format!(
                    "{} is not a fraction between 0.0 and 1.0",
                    self.withdraw_guard
                ),
            ));
        }
        self.adapters()?;
        self.admin.token()?;
        self.validate_weights()?;
        self.validate_leader_election()
    }

    fn validate_leader_election(&self) -> Result<(), ConfigError> {
        let Some(election) = &self.leader_election else {
            return Ok(());
        };
        if self.lease_cluster().is_none() {
            return Err(invalid(
                "leader_election.cluster",
                format!(
                    "{:?} is not one of the configured clusters",
                    election.cluster.as_deref().unwrap_or("")
                ),
            ));
        }
        for (field, value) in [
            ("leader_election.namespace", &election.namespace),
            ("leader_election.name", &election.name),
        ] {
            if !is_dns_label(value) {
                return Err(invalid(
                    field,
                    format!("{value:?} must be lower-case letters, digits and '-'"),
                ));
            }
        }
        let d = &election;
        // A leader renews several times per lease_duration, so one slow answer does
        // not hand the Lease over.
        if d.retry_period.is_zero() || d.lease_duration < d.retry_period * 3 {
            return Err(invalid(
                "leader_election",
                "needs 0 < 3 × retry_period ≤ lease_duration".to_owned(),
            ));
        }
        Ok(())
    }

    fn validate_weights(&self) -> Result<(), ConfigError> {
        if self.weights_cluster().is_none() {
            return Err(invalid(
                "weights.cluster",
                format!(
                    "{:?} is not one of the configured clusters",
                    self.weights.cluster.as_deref().unwrap_or("")
                ),
            ));
        }
        for (field, value) in [
            ("weights.namespace", &self.weights.namespace),
            ("weights.name", &self.weights.name),
        ] {
            if !is_dns_label(value) {
                return Err(invalid(
                    field,
                    format!("{value:?} must be lower-case letters, digits and '-'"),
                ));
            }
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
    fn a_bad_duration_names_its_field_and_line() {
        let err = parse("clusters: [{name: idc}]\nconfirm_after: 10x\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("confirm_after") && err.contains("line 2") && err.contains("\"x\""),
            "{err}"
        );
        let err = parse("clusters:\n  - name: idc\n    stale_ttl: 5\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("clusters[0].stale_ttl") && err.contains("line 3"),
            "{err}"
        );
        let c = parse("clusters:\n  - name: idc\n    stale_ttl: null\n").unwrap();
        assert_eq!(c.clusters[0].stale_ttl, None);
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
        assert!(err.contains("targets") && err.contains("url"), "{err}");
        let err =
            parse("clusters: [{name: idc}]\ntargets: [{name: lb, kind: nginx, url: 'http://x'}]\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("kind"), "{err}");
    }

    #[test]
    fn routability_and_target_fields() {
        let c = parse(
            "clusters: [{name: idc, routable_cidrs: ['10.0.0.0/8', 'fd00::/8'], target: nodeport}, {name: tke, routable_from: kube-ovn}]\n",
        )
        .unwrap();
        assert_eq!(c.clusters[0].target, EndpointTarget::NodePort);
        assert_eq!(c.clusters[0].routable_nets(0).unwrap().unwrap().len(), 2);
        assert_eq!(c.clusters[1].routable_from, Some(RoutableFrom::KubeOvn));
        assert_eq!(c.clusters[1].target, EndpointTarget::Pod);
        let err = parse("clusters: [{name: idc, routable_cidrs: ['10.0.0.0/8', 'bogus']}]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("clusters[0].routable_cidrs[1]"), "{err}");
        let err = parse("clusters: [{name: idc, routable_cidrs: [], routable_from: kube-ovn}]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("clusters[0].routable_from"), "{err}");
        let err = parse("clusters: [{name: idc, target: vip}]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("target") || err.contains("vip"), "{err}");
        let err = parse("clusters: [{name: idc, routable_from: calico}]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("routable_from") || err.contains("calico"),
            "{err}"
        );
    }

    #[test]
    fn the_deploy_example_parses() {
        let c: ControllerConfig =
            serde_yaml_ng::from_str(include_str!("../../deploy/podgate.yaml")).unwrap();
        assert_eq!(c.clusters[0].routable_nets(0).unwrap().unwrap().len(), 1);
        assert_eq!(c.clusters[1].routable_from, Some(RoutableFrom::KubeOvn));
    }

    #[test]
    fn defaults() {
        let c = parse("clusters: [{name: idc}]\n").unwrap();
        assert_eq!(c.controller_name, "podgate.io/ingress-controller");
        assert_eq!(c.clusters[0].weight, 100);
        assert_eq!(c.admin.listen.port(), 9900);
        assert_eq!(c.weights_cluster().unwrap().name, "idc");
        assert_eq!(c.weights.namespace, "podgate-system");
        assert_eq!(c.weights.name, "podgate-weights");
        assert_eq!(c.admin.token().unwrap(), None);
        assert_eq!(c.hold_down, Duration::from_secs(10));
        assert!((c.withdraw_guard - 0.5).abs() < f64::EPSILON);
        assert_eq!(c.confirm_after, Duration::from_secs(30));
        assert_eq!(c.clusters[0].stale_ttl, None);
    }

    #[test]
    fn weights_and_token_fields() {
        let err = parse("clusters: [{name: idc}]\nweights: {cluster: tke}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("weights.cluster"), "{err}");
        let err = parse("clusters: [{name: idc}]\nweights: {namespace: Bad_NS}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("weights.namespace"), "{err}");
        let err = parse("clusters: [{name: idc}]\nadmin: {token_file: /nonexistent/t}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("admin.token_file"), "{err}");
        let c = parse("clusters: [{name: idc}, {name: tke}]\nweights: {cluster: tke, name: w}\n")
            .unwrap();
        assert_eq!(c.weights_cluster().unwrap().name, "tke");
    }

    #[test]
    fn the_example_configuration_parses() {
        // Not validated: its kubeconfig files exist only on a real installation.
        let c: ControllerConfig =
            serde_yaml_ng::from_str(include_str!("../../deploy/podgate.yaml")).unwrap();
        assert_eq!(c.clusters[1].stale_ttl, Some(Duration::from_mins(30)));
        assert_eq!(c.hold_down, Duration::from_secs(10));
        assert_eq!(c.confirm_after, Duration::from_secs(30));
        let election = c.leader_election.unwrap();
        assert_eq!(election.lease_duration, Duration::from_secs(15));
        assert_eq!(election.name, "podgate-leader");
    }

    #[test]
    fn leader_election_fields() {
        for (yaml, field) in [
            ("leader_election: {cluster: tke}", "leader_election.cluster"),
            ("leader_election: {name: Leader}", "leader_election.name"),
            (
                "leader_election: {lease_duration: 2s, retry_period: 1s}",
                "leader_election",
            ),
            ("leader_election: {renew: 1s}", "renew"),
        ] {
            let err = parse(&format!("clusters: [{{name: idc}}]\n{yaml}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{yaml}: {err}");
        }
        let c = parse("clusters: [{name: idc}, {name: tke}]\nleader_election: {}\n").unwrap();
        assert_eq!(c.lease_cluster().unwrap().name, "idc");
        assert!(
            parse("clusters: [{name: idc}]\n")
                .unwrap()
                .lease_cluster()
                .is_none()
        );
    }

    #[test]
    fn failover_settings() {
        let c = parse(
            "clusters: [{name: idc, stale_ttl: 5m}]\nhold_down: 1500ms\nwithdraw_guard: 0.8\nconfirm_after: 1m\n",
        )
        .unwrap();
        assert_eq!(c.clusters[0].stale_ttl, Some(Duration::from_mins(5)));
        assert_eq!(c.hold_down, Duration::from_millis(1500));
        assert_eq!(c.confirm_after, Duration::from_mins(1));
        let err = parse("clusters: [{name: idc}]\nhold_down: 10\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("hold_down") || err.contains("unit"), "{err}");
        let err = parse("clusters: [{name: idc}]\nwithdraw_guard: 1.5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("withdraw_guard"), "{err}");
    }
}
