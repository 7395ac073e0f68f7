//! Lists of the simulated Kubernetes API server (a test double).
//!
//! Owns LIST semantics as a kube-apiserver 1.26 answers them: `resourceVersion` unset
//! (most recent), `0` (any; like the watch cache it ignores `limit`), or `N` with
//! `resourceVersionMatch` `NotOlderThan` / `Exact` (410 Expired when `N` is compacted);
//! `limit` + `continue` with the real token format (base64url JSON
//! `{"v":"meta.k8s.io/v1","rv":N,"start":"<key>\u0000"}`), every page served from the
//! snapshot at the first page's version; `remainingItemCount` when no selector is
//! used; label and field selectors. Items are rendered without `kind`/`apiVersion`.

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::resources::ResourceKind;
use super::selector::{FieldSelector, LabelSelector};
use super::state::Shared;
use super::status::ApiError;

/// The query parameters a LIST understands.
#[derive(Clone, Debug, Default)]
pub(crate) struct ListQuery {
    pub(crate) resource_version: Option<String>,
    pub(crate) resource_version_match: Option<String>,
    pub(crate) limit: Option<usize>,
    pub(crate) continue_token: Option<String>,
    pub(crate) labels: LabelSelector,
    pub(crate) fields: FieldSelector,
}

/// The continue token, field for field as the real server writes it.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct ContinueToken {
    v: String,
    rv: i64,
    start: String,
}

fn encode_continue(rv: u64, start: &str) -> String {
    let token = ContinueToken {
        v: "meta.k8s.io/v1".into(),
        rv: i64::try_from(rv).unwrap_or(i64::MAX),
        start: start.to_owned(),
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).unwrap_or_default())
}

fn decode_continue(token: &str) -> Result<(u64, String), ApiError> {
    let bad = |why: &str| ApiError::bad_request(format!("continue key is not valid: {why}"));
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .or_else(|_| URL_SAFE.decode(token))
        .map_err(|_| bad("illegal base64 data"))?;
    let t: ContinueToken = serde_json::from_slice(&bytes)
        .map_err(|_| bad("incorrect encoded start resourceVersion (version meta.k8s.io/v1)"))?;
    if t.v != "meta.k8s.io/v1" {
        return Err(bad("server does not recognize this encoded key"));
    }
    let rv = u64::try_from(t.rv)
        .map_err(|_| bad("incorrect encoded start resourceVersion (version meta.k8s.io/v1)"))?;
    Ok((rv, t.start))
}

/// Parses a resourceVersion parameter; `Err` 400 when it is no number.
pub(crate) fn parse_rv(rv: &str) -> Result<u64, ApiError> {
    rv.parse::<u64>().map_err(|_| {
        ApiError::bad_request(format!(
            "resourceVersion: Invalid value: {}: strconv.ParseUint: parsing {}: invalid syntax",
            json!(rv),
            json!(rv)
        ))
    })
}

/// Which snapshot to serve, where to start in it, and whether `limit` applies.
fn plan(q: &ListQuery, current: u64) -> Result<(u64, String, bool), ApiError> {
    let rv = q.resource_version.as_deref().filter(|s| !s.is_empty());
    let rv_match = q
        .resource_version_match
        .as_deref()
        .filter(|s| !s.is_empty());
    if let Some(token) = &q.continue_token {
        if rv.is_some() {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        let (at, start) = decode_continue(token)?;
        return Ok((at, start, true));
    }
    match (rv, rv_match) {
        (None, Some(_)) => Err(ApiError::bad_request(
            "resourceVersionMatch is forbidden unless resourceVersion is provided",
        )),
        (None, None) => Ok((current, String::new(), true)),
        (Some("0"), Some("Exact")) => Err(ApiError::bad_request(
            "resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\"",
        )),
        (Some("0"), _) => Ok((current, String::new(), false)),
        (Some(rv), m) => {
            let n = parse_rv(rv)?;
            if n > current {
                return Err(ApiError::too_large_resource_version(n, current));
            }
            match m {
                Some("Exact") => Ok((n, String::new(), true)),
                // Without a match, a paginated list at N is served at exactly N.
                None if q.limit.is_some() => Ok((n, String::new(), true)),
                None | Some("NotOlderThan") => Ok((current, String::new(), true)),
                Some(other) => Err(ApiError::bad_request(format!(
                    "resourceVersionMatch: Unsupported value: {}",
                    json!(other)
                ))),
            }
        }
    }
}

/// Answers a LIST of `kind` in namespace `ns` (all namespaces when `None`).
pub(crate) fn list(
    shared: &Shared,
    kind: &ResourceKind,
    ns: Option<&str>,
    q: &ListQuery,
) -> Result<Value, ApiError> {
    let prefix = ns.map(|n| format!("{n}/")).unwrap_or_default();
    let store = shared.store();
    let (at, start, paged) = plan(q, store.current_rv())?;
    let snapshot = store.snapshot(&kind.gvr, &prefix, at).map_err(|_| {
        if q.continue_token.is_some() {
            ApiError::continue_expired()
        } else {
            ApiError::expired("list")
        }
    })?;
    drop(store);
    let from = format!("{prefix}{start}");
    let matching = snapshot
        .range(from..)
        .filter(|(_, obj)| q.labels.matches(obj) && q.fields.matches(obj));
    let limit = q.limit.filter(|l| *l > 0 && paged);
    let mut items = Vec::new();
    let mut last_key = None;
    for (key, obj) in matching {
        if limit.is_some_and(|l| items.len() >= l) {
            break;
        }
        let mut item = (**obj).clone();
        if let Some(m) = item.as_object_mut() {
            m.remove("kind");
            m.remove("apiVersion");
        }
        items.push(item);
        last_key = Some(key.clone());
    }
    let mut metadata = json!({ "resourceVersion": at.to_string() });
    if let (Some(_), Some(last)) = (limit, last_key) {
        let remaining = snapshot
            .range(format!("{last}\u{0}")..)
            .filter(|(_, obj)| q.labels.matches(obj) && q.fields.matches(obj))
            .count();
        if remaining > 0 {
            let relative = last.strip_prefix(&prefix).unwrap_or(&last);
            metadata["continue"] = json!(encode_continue(at, &format!("{relative}\u{0}")));
            if q.labels == LabelSelector::default() && q.fields == FieldSelector::default() {
                metadata["remainingItemCount"] = json!(remaining);
            }
        }
    }
    Ok(json!({
        "kind": kind.list_kind(),
        "apiVersion": kind.gvr.api_version(),
        "metadata": metadata,
        "items": items,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_token_matches_the_recorded_one() {
        let recorded = "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MTk2LCJzdGFydCI6IndlYi1iXHUwMDAwIn0";
        assert_eq!(encode_continue(196, "web-b\u{0}"), recorded);
        assert_eq!(
            decode_continue(recorded).unwrap(),
            (196, "web-b\u{0}".to_owned())
        );
    }

    #[test]
    fn bad_continue_tokens_are_400() {
        for t in [
            "!!!",
            "e30",
            &URL_SAFE_NO_PAD.encode(br#"{"v":"x","rv":1,"start":""}"#),
        ] {
            assert_eq!(decode_continue(t).unwrap_err().code, 400, "{t}");
        }
    }

    #[test]
    fn plan_follows_the_version_rules() {
        let q = |rv: Option<&str>, m: Option<&str>, limit: Option<usize>| ListQuery {
            resource_version: rv.map(str::to_owned),
            resource_version_match: m.map(str::to_owned),
            limit,
            ..ListQuery::default()
        };
        assert_eq!(
            plan(&q(None, None, Some(2)), 9).unwrap(),
            (9, String::new(), true)
        );
        assert_eq!(
            plan(&q(Some("0"), None, Some(2)), 9).unwrap(),
            (9, String::new(), false)
        );
        assert_eq!(plan(&q(Some("5"), Some("Exact"), None), 9).unwrap().0, 5);
        assert_eq!(
            plan(&q(Some("5"), Some("NotOlderThan"), None), 9)
                .unwrap()
                .0,
            9
        );
        assert_eq!(plan(&q(Some("12"), None, None), 9).unwrap_err().code, 504);
        assert_eq!(
            plan(&q(None, Some("Exact"), None), 9).unwrap_err().code,
            400
        );
        assert_eq!(plan(&q(Some("x"), None, None), 9).unwrap_err().code, 400);
    }
}
