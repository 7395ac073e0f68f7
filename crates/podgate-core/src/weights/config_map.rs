//! The weights ConfigMap's `data`: `global` = `idc=20,tke=80`, `app.<ns>.<svc>` = the
//! same for one application, `migration.<ns>.<svc>` = a [`Migration`] as JSON.
//! Parsing never fails as a whole: a malformed value is reported as a [`Problem`] and the
//! previous value of that key stays.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::model::ClusterName;
use crate::model::shares::{ClusterWeights, WeightsError};

use super::Migration;

/// Data key of the global weights.
pub const GLOBAL_KEY: &str = "global";
const APP_PREFIX: &str = "app.";
const MIGRATION_PREFIX: &str = "migration.";

/// An application: `namespace/service`, the same in every cluster.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct App {
    pub namespace: String,
    pub service: String,
}

/// A DNS label (RFC 1123), as Kubernetes requires of namespace and Service names.
fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

impl App {
    /// Parses `namespace/service`.
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let (namespace, service) = raw
            .split_once('/')
            .ok_or_else(|| ValueError::NotAnApp(raw.to_owned()))?;
        for part in [namespace, service] {
            if !dns_label(part) {
                return Err(ValueError::NotAName {
                    part: part.to_owned(),
                    raw: raw.to_owned(),
                });
            }
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            service: service.to_owned(),
        })
    }

    /// `app.<ns>.<svc>`: names hold no dots, so the key is unambiguous.
    pub fn weights_key(&self) -> String {
        format!("{APP_PREFIX}{}.{}", self.namespace, self.service)
    }

    /// `migration.<ns>.<svc>`.
    pub fn migration_key(&self) -> String {
        format!("{MIGRATION_PREFIX}{}.{}", self.namespace, self.service)
    }

    fn from_key_suffix(suffix: &str) -> Option<Self> {
        let (namespace, service) = suffix.split_once('.')?;
        (dns_label(namespace) && dns_label(service)).then(|| Self {
            namespace: namespace.to_owned(),
            service: service.to_owned(),
        })
    }
}

impl fmt::Display for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.service)
    }
}

impl Serialize for App {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A value of the ConfigMap that was not applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

/// Everything the weights ConfigMap holds, validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WeightsDoc {
    /// Replaces every cluster's configured weight; `None`: configured weights.
    pub global: Option<ClusterWeights>,
    /// Per-application weights; they beat annotations and the global weights.
    pub apps: BTreeMap<App, ClusterWeights>,
    pub migrations: BTreeMap<App, Migration>,
}

/// Refuses weights that name a cluster podgate does not know: a typo would otherwise
/// silently give the real cluster weight 0.
pub fn check_clusters(
    weights: &ClusterWeights,
    clusters: &[ClusterName],
) -> Result<(), ValueError> {
    match weights.0.iter().find(|(c, _)| !clusters.contains(c)) {
        Some((c, _)) => Err(ValueError::UnknownCluster {
            cluster: c.as_str().to_owned(),
            configured: clusters
                .iter()
                .map(ClusterName::as_str)
                .collect::<Vec<_>>()
                .join(", "),
        }),
        None => Ok(()),
    }
}

/// Why a value for the weights ConfigMap (or the admin API that writes it) is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("{0:?} is not namespace/service")]
    NotAnApp(String),
    #[error("{part:?} in {raw:?} is not a Kubernetes name (lower-case letters, digits, '-')")]
    NotAName { part: String, raw: String },
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("unknown cluster {cluster:?} (configured: {configured})")]
    UnknownCluster { cluster: String, configured: String },
}

/// Parses weights and checks their clusters.
pub fn parse_weights(raw: &str, clusters: &[ClusterName]) -> Result<ClusterWeights, ValueError> {
    let weights = ClusterWeights::parse(raw)?;
    check_clusters(&weights, clusters)?;
    Ok(weights)
}

impl WeightsDoc {
    /// Reads the ConfigMap's data. A malformed value is reported and the value that
    /// `previous` holds for that key stays; an unknown key is reported and ignored.
    pub fn parse(
        data: &BTreeMap<String, String>,
        clusters: &[ClusterName],
        previous: &WeightsDoc,
    ) -> (Self, Vec<Problem>) {
        let mut doc = Self::default();
        let mut problems = Vec::new();
        for (key, value) in data {
            let mut problem = |message: String| {
                problems.push(Problem {
                    key: key.clone(),
                    message,
                });
            };
            if key == GLOBAL_KEY {
                match parse_weights(value, clusters) {
                    Ok(w) => doc.global = Some(w),
                    Err(e) => {
                        problem(e.to_string());
                        doc.global.clone_from(&previous.global);
                    }
                }
            } else if let Some(suffix) = key.strip_prefix(APP_PREFIX) {
                let Some(app) = App::from_key_suffix(suffix) else {
                    problem("expected app.<namespace>.<service>".to_owned());
                    continue;
                };
                match parse_weights(value, clusters) {
                    Ok(w) => {
                        doc.apps.insert(app, w);
                    }
                    Err(e) => {
                        problem(e.to_string());
                        if let Some(old) = previous.apps.get(&app) {
                            doc.apps.insert(app, old.clone());
                        }
                    }
                }
            } else if let Some(suffix) = key.strip_prefix(MIGRATION_PREFIX) {
                let Some(app) = App::from_key_suffix(suffix) else {
                    problem("expected migration.<namespace>.<service>".to_owned());
                    continue;
                };
                match Migration::from_json(value, clusters) {
                    Ok(m) => {
                        doc.migrations.insert(app, m);
                    }
                    Err(e) => {
                        problem(e.to_string());
                        if let Some(old) = previous.migrations.get(&app) {
                            doc.migrations.insert(app, old.clone());
                        }
                    }
                }
            } else {
                problem(format!(
                    "unknown key: expected {GLOBAL_KEY}, {APP_PREFIX}<ns>.<svc> or {MIGRATION_PREFIX}<ns>.<svc>"
                ));
            }
        }
        (doc, problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clusters() -> Vec<ClusterName> {
        vec!["idc".into(), "tke".into()]
    }

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn app_names() {
        let app = App::parse("shop/web").unwrap();
        assert_eq!(app.weights_key(), "app.shop.web");
        assert_eq!(app.to_string(), "shop/web");
        for bad in ["shop", "shop/", "/web", "Shop/web", "a.b/web", "shop/web/x"] {
            assert!(App::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reads_every_key() {
        let (doc, problems) = WeightsDoc::parse(
            &data(&[("global", "idc=20,tke=80"), ("app.shop.web", "tke=1")]),
            &clusters(),
            &WeightsDoc::default(),
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(doc.global.unwrap().to_string(), "idc=20,tke=80");
        assert_eq!(
            doc.apps[&App::parse("shop/web").unwrap()].to_string(),
            "tke=1"
        );
    }

    #[test]
    fn malformed_value_keeps_the_previous_one() {
        let (previous, _) = WeightsDoc::parse(
            &data(&[("global", "idc=20,tke=80"), ("app.shop.web", "tke=1")]),
            &clusters(),
            &WeightsDoc::default(),
        );
        let (doc, problems) = WeightsDoc::parse(
            &data(&[
                ("global", "idc=lots"),
                ("app.shop.web", "tkee=1"),
                ("bogus", "x"),
            ]),
            &clusters(),
            &previous,
        );
        assert_eq!(doc, previous);
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["app.shop.web", "bogus", "global"]);
        assert!(
            problems[0].message.contains("unknown cluster"),
            "{problems:?}"
        );
    }
}
