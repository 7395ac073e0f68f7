//! Cluster weights → per-cluster traffic shares → integer per-endpoint weights.

use std::fmt;

use crate::model::ClusterName;

/// The `podgate.io/cluster-weights` annotation.
pub const WEIGHTS_ANNOTATION: &str = "podgate.io/cluster-weights";

/// Per-mille total of an upstream's cluster shares.
pub const SHARE_TOTAL: u32 = 1000;

/// Sum of the derived endpoint weights of a cluster holding the whole share; a cluster
/// with share `s` per-mille gets endpoint weights summing to `s * ENDPOINT_SCALE`.
pub const ENDPOINT_SCALE: u32 = 1000;

/// Why a cluster weights value (`idc=80,tke=20`) does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WeightsError {
    #[error("{0:?} is not cluster=weight")]
    NotAPair(String),
    #[error("weight in {0:?} is not a whole number")]
    NotAWholeNumber(String),
    #[error("{0:?} has no cluster name")]
    NoClusterName(String),
    #[error("weight in {0:?} is above 1000000")]
    TooHeavy(String),
    #[error("cluster {0:?} is listed twice")]
    ListedTwice(String),
    #[error("at least one cluster needs a weight above 0")]
    AllZero,
}

/// Relative cluster weights, e.g. `idc=80,tke=20`. Clusters not listed weigh 0.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterWeights(pub Vec<(ClusterName, u32)>);

impl ClusterWeights {
    /// Parses `idc=80,tke=20`. Refuses empty names, non-numbers, duplicates and an
    /// all-zero list.
    pub fn parse(raw: &str) -> Result<Self, WeightsError> {
        let mut out: Vec<(ClusterName, u32)> = Vec::new();
        for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, weight) = item
                .split_once('=')
                .ok_or_else(|| WeightsError::NotAPair(item.to_owned()))?;
            let name = name.trim();
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| WeightsError::NotAWholeNumber(item.to_owned()))?;
            if name.is_empty() {
                return Err(WeightsError::NoClusterName(item.to_owned()));
            }
            if weight > 1_000_000 {
                return Err(WeightsError::TooHeavy(item.to_owned()));
            }
            if out.iter().any(|(c, _)| c.as_str() == name) {
                return Err(WeightsError::ListedTwice(name.to_owned()));
            }
            out.push((ClusterName::new(name), weight));
        }
        if out.iter().all(|(_, w)| *w == 0) {
            return Err(WeightsError::AllZero);
        }
        Ok(Self(out))
    }

    pub fn get(&self, cluster: &ClusterName) -> u32 {
        self.0
            .iter()
            .find(|(c, _)| c == cluster)
            .map_or(0, |(_, w)| *w)
    }
}

impl fmt::Display for ClusterWeights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (c, w)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{c}={w}")?;
        }
        Ok(())
    }
}

/// Splits `total` in proportion to `weights` with the largest-remainder method, so the
/// parts are integers that sum to exactly `total` (ties go to the earlier entry).
pub fn apportion(weights: &[u32], total: u32) -> Vec<u32> {
    let sum: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    if sum == 0 {
        return vec![0; weights.len()];
    }
    let exact: Vec<u64> = weights
        .iter()
        .map(|w| u64::from(*w) * u64::from(total))
        .collect();
    let mut parts: Vec<u32> = exact
        .iter()
        .map(|e| u32::try_from(e / sum).unwrap_or(u32::MAX))
        .collect();
    let given: u32 = parts.iter().sum();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(exact[i] % sum));
    for &i in order.iter().take((total - given) as usize) {
        parts[i] += 1;
    }
    parts
}

/// Shares (per-mille) of the clusters that have Active endpoints. `active` lists those
/// clusters with their weight. If all of them weigh 0, they share equally: serving
/// traffic beats answering 503 because of a weight setting.
pub fn shares(active: &[(ClusterName, u32)]) -> Vec<(ClusterName, u32)> {
    let mut weights: Vec<u32> = active.iter().map(|(_, w)| *w).collect();
    if weights.iter().all(|w| *w == 0) {
        weights.fill(1);
    }
    let parts = apportion(&weights, SHARE_TOTAL);
    active
        .iter()
        .zip(parts)
        .filter(|(_, p)| *p > 0)
        .map(|((c, _), p)| (c.clone(), p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apportion_sums_exactly() {
        assert_eq!(apportion(&[1, 1, 1], 1000), vec![334, 333, 333]);
        assert_eq!(apportion(&[80, 20], 1000), vec![800, 200]);
        assert_eq!(apportion(&[0, 0], 10), vec![0, 0]);
        assert_eq!(apportion(&[1; 7], 100).iter().sum::<u32>(), 100);
    }

    #[test]
    fn annotation_parsing() {
        let w = ClusterWeights::parse("idc=80, tke=20").unwrap();
        assert_eq!(w.get(&"idc".into()), 80);
        assert_eq!(w.get(&"other".into()), 0);
        assert_eq!(w.to_string(), "idc=80,tke=20");
        for bad in ["idc", "idc=x", "=3", "idc=0", "a=1,a=2", ""] {
            assert!(ClusterWeights::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn zero_weights_share_equally() {
        let s = shares(&[("a".into(), 0), ("b".into(), 0)]);
        assert_eq!(s, vec![("a".into(), 500), ("b".into(), 500)]);
        let s = shares(&[("a".into(), 0), ("b".into(), 5)]);
        assert_eq!(s, vec![("b".into(), 1000)]);
    }
}
