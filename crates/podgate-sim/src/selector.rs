//! Label and field selectors of the simulated Kubernetes API server (a test double).
//!
//! Owns parsing and matching of `labelSelector` (`k=v`, `k==v`, `k!=v`, `k`, `!k`,
//! `k in (a,b)`, `k notin (a,b)`, comma meaning AND) and `fieldSelector` on
//! `metadata.name`, `metadata.namespace` and the fields each kind supports (`=`, `==`,
//! `!=`). A selector it cannot parse or a field the kind lacks is a 400, never a panic.

use serde_json::Value;

use super::status::ApiError;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Req {
    Eq(String, String),
    NotEq(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LabelSelector(Vec<Req>);

/// Splits on commas that are not inside parentheses.
fn split_terms(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0_i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn set_values(s: &str) -> Option<Vec<String>> {
    let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

fn parse_term(term: &str) -> Option<Req> {
    let term = term.trim();
    if let Some((k, v)) = term.split_once("!=") {
        return Some(Req::NotEq(k.trim().to_owned(), v.trim().to_owned()));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Some(Req::Eq(k.trim().to_owned(), v.trim().to_owned()));
    }
    if let Some((k, rest)) = term.split_once(" notin ") {
        return Some(Req::NotIn(k.trim().to_owned(), set_values(rest)?));
    }
    if let Some((k, rest)) = term.split_once(" in ") {
        return Some(Req::In(k.trim().to_owned(), set_values(rest)?));
    }
    if let Some(k) = term.strip_prefix('!') {
        return Some(Req::NotExists(k.trim().to_owned()));
    }
    if term.is_empty() || term.contains(char::is_whitespace) || term.contains(['(', ')']) {
        return None;
    }
    Some(Req::Exists(term.to_owned()))
}

impl LabelSelector {
    pub(crate) fn parse(s: &str) -> Result<Self, ApiError> {
        if s.trim().is_empty() {
            return Ok(Self::default());
        }
        split_terms(s)
            .into_iter()
            .map(|t| {
                parse_term(t).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "unable to parse requirement: {t:?} in labelSelector {s:?}"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub(crate) fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Req::Eq(k, v) => get(k) == Some(v.as_str()),
            Req::NotEq(k, v) => get(k) != Some(v.as_str()),
            Req::Exists(k) => get(k).is_some(),
            Req::NotExists(k) => get(k).is_none(),
            Req::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Req::NotIn(k, vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
        })
    }
}

/// A parsed field selector: `metadata.name`, `metadata.namespace`, and the fields the
/// real server selects on for some kinds (Secrets' `type`; Pods' `status.podIP`,
/// `spec.nodeName`, … as in 1.26, k8s-wire 19a/19b); [`FieldSelector::check`] refuses
/// the others for a kind with the real server's 400.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FieldSelector(Vec<(String, bool, String)>);

/// The fields a kind can be selected on besides `metadata.name` and `metadata.namespace`.
fn kind_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "Secret" => &["type"],
        "Pod" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        "Event" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "reason",
            "type",
        ],
        _ => &[],
    }
}

impl FieldSelector {
    pub(crate) fn parse(s: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for term in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (f, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: {s:?}; can't understand {term:?}"
                )));
            };
            reqs.push((field.trim().to_owned(), equal, value.trim().to_owned()));
        }
        Ok(Self(reqs))
    }

    /// `Err` 400 `field label not supported: …` for a field `kind` cannot be selected on.
    pub(crate) fn check(&self, kind: &str) -> Result<(), ApiError> {
        for (field, _, _) in &self.0 {
            let known = matches!(field.as_str(), "metadata.name" | "metadata.namespace")
                || kind_fields(kind).contains(&field.as_str());
            if !known {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
        }
        Ok(())
    }

    /// Adds `metadata.name=name` (used by watches on a single object's URL).
    pub(crate) fn and_name(mut self, name: &str) -> Self {
        self.0.push(("metadata.name".into(), true, name.to_owned()));
        self
    }

    pub(crate) fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(field, equal, value)| {
            let pointer = format!("/{}", field.replace('.', "/"));
            let actual = obj.pointer(&pointer).and_then(Value::as_str).unwrap_or("");
            (actual == value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labelled(labels: &Value) -> Value {
        json!({ "metadata": { "name": "x", "namespace": "ns", "labels": labels } })
    }

    #[test]
    fn label_selector_table() {
        let obj = labelled(&json!({ "app": "web", "tier": "front" }));
        let rows = [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app=api", false),
            ("app!=api", true),
            ("app!=web", false),
            ("missing!=x", true),
            ("app", true),
            ("missing", false),
            ("!missing", true),
            ("!app", false),
            ("app=web,tier=front", true),
            ("app=web,tier=back", false),
            ("app in (api, web)", true),
            ("app notin (api, web)", false),
            ("missing notin (a)", true),
        ];
        for (sel, want) in rows {
            assert_eq!(
                LabelSelector::parse(sel).unwrap().matches(&obj),
                want,
                "{sel}"
            );
        }
    }

    #[test]
    fn bad_selectors_are_400() {
        for sel in ["a b", "app in web", "(x"] {
            assert_eq!(LabelSelector::parse(sel).unwrap_err().code, 400, "{sel}");
        }
        assert_eq!(FieldSelector::parse("nonsense").unwrap_err().code, 400);
        let unsupported = FieldSelector::parse("status.hostIP=192.168.1.10").unwrap();
        let e = unsupported.check("Pod").unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (400, "field label not supported: status.hostIP")
        );
        assert_eq!(
            FieldSelector::parse("type=kubernetes.io/tls")
                .unwrap()
                .check("Service")
                .unwrap_err()
                .code,
            400
        );
        FieldSelector::parse("status.podIP=10.244.1.5,spec.nodeName=n")
            .unwrap()
            .check("Pod")
            .unwrap();
    }

    #[test]
    fn field_selector_on_name_and_namespace() {
        let obj = labelled(&json!({}));
        assert!(
            FieldSelector::parse("metadata.name=x")
                .unwrap()
                .matches(&obj)
        );
        assert!(
            FieldSelector::parse("metadata.namespace==ns,metadata.name!=y")
                .unwrap()
                .matches(&obj)
        );
        assert!(
            !FieldSelector::parse("metadata.namespace=other")
                .unwrap()
                .matches(&obj)
        );
        assert!(!FieldSelector::default().and_name("y").matches(&obj));
        let pod = json!({ "metadata": { "name": "web-1" }, "status": { "podIP": "10.244.1.5" } });
        assert!(
            FieldSelector::parse("status.podIP=10.244.1.5")
                .unwrap()
                .matches(&pod)
        );
        assert!(
            !FieldSelector::parse("status.podIP=10.244.1.6")
                .unwrap()
                .matches(&pod)
        );
    }

    proptest::proptest! {
        #[test]
        fn any_selector_parses_or_is_a_400(sel in "[ -~]{0,40}") {
            let obj = labelled(&json!({ "app": "web" }));
            match LabelSelector::parse(&sel) {
                Ok(s) => { let _ = s.matches(&obj); }
                Err(e) => proptest::prop_assert_eq!(e.code, 400),
            }
            match FieldSelector::parse(&sel) {
                Ok(s) => { let _ = s.matches(&obj); }
                Err(e) => proptest::prop_assert_eq!(e.code, 400),
            }
        }
    }
}
