//! A `metav1.LabelSelector` against a set of labels (for `allowedRoutes.namespaces`
//! with `from: Selector`). An operator this code does not know matches nothing: an
//! unreadable selector must never open a listener to every namespace.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::types::Labels;

/// Whether `labels` satisfy `selector` (every `matchLabels` pair and every expression).
pub(crate) fn matches(selector: &LabelSelector, labels: &Labels) -> bool {
    let pairs = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    pairs && expressions
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn expression(key: &str, operator: &str, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.to_owned(),
                operator: operator.to_owned(),
                values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
            }]),
            ..LabelSelector::default()
        }
    }

    #[test]
    fn pairs_and_expressions_must_all_hold_and_unknown_operators_match_nothing() {
        let shared = labels(&[("shared-gateway-access", "true"), ("team", "a")]);
        let by_pair = LabelSelector {
            match_labels: Some([("shared-gateway-access".to_owned(), "true".to_owned())].into()),
            ..LabelSelector::default()
        };
        assert!(matches(&by_pair, &shared));
        assert!(!matches(&by_pair, &labels(&[("team", "a")])));
        assert!(matches(&LabelSelector::default(), &Labels::new()));
        assert!(matches(&expression("team", "In", &["a", "b"]), &shared));
        assert!(!matches(&expression("team", "NotIn", &["a"]), &shared));
        assert!(matches(&expression("absent", "NotIn", &["a"]), &shared));
        assert!(matches(&expression("team", "Exists", &[]), &shared));
        assert!(!matches(&expression("team", "DoesNotExist", &[]), &shared));
        assert!(!matches(&expression("team", "Gt", &["1"]), &shared));
    }
}
