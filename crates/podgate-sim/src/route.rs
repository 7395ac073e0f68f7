//! URL routing of the simulated Kubernetes API server (a test double).
//!
//! Owns the mapping from a request path and query to what it addresses: a discovery
//! document, or a collection / object / subresource of one resource type, namespaced or
//! not, with the legacy `/watch/` path prefix. Pure: no I/O, no state.

use std::time::Duration;

use super::list::ListQuery;
use super::resources::Gvr;
use super::selector::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::watch::WatchQuery;

/// What a path addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    Version,
    CoreVersions,
    GroupList,
    Group(String),
    ResourceList { group: String, version: String },
    Resource(Target),
    Unknown,
}

/// A collection, object or subresource of one resource type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) gvr: Gvr,
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) subresource: Option<String>,
    /// Addressed through the `/watch/` prefix.
    pub(crate) watch_path: bool,
}

pub(crate) fn parse(path: &str) -> Route {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["version"] => Route::Version,
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::GroupList,
        ["apis", group] => Route::Group((*group).to_owned()),
        ["api", version] => Route::ResourceList {
            group: String::new(),
            version: (*version).to_owned(),
        },
        ["apis", group, version] => Route::ResourceList {
            group: (*group).to_owned(),
            version: (*version).to_owned(),
        },
        ["api", version, rest @ ..] => target("", version, rest),
        ["apis", group, version, rest @ ..] => target(group, version, rest),
        _ => Route::Unknown,
    }
}

fn target(group: &str, version: &str, rest: &[&str]) -> Route {
    let (watch_path, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    let owned = |s: &&str| Some((*s).to_owned());
    let (namespace, resource, name, subresource) = match rest {
        ["namespaces", ns, resource, tail @ ..]
            if *resource != "status" && *resource != "finalize" =>
        {
            match tail {
                [] => (owned(ns), *resource, None, None),
                [name] => (owned(ns), *resource, owned(name), None),
                [name, sub] => (owned(ns), *resource, owned(name), owned(sub)),
                _ => return Route::Unknown,
            }
        }
        [resource] => (None, *resource, None, None),
        [resource, name] => (None, *resource, owned(name), None),
        [resource, name, sub] => (None, *resource, owned(name), owned(sub)),
        _ => return Route::Unknown,
    };
    Route::Resource(Target {
        gvr: Gvr::new(group, version, resource),
        namespace,
        name,
        subresource,
        watch_path,
    })
}

/// The query parameters of a GET on a collection.
#[derive(Clone, Debug, Default)]
pub(crate) struct Query {
    pub(crate) watch: bool,
    pub(crate) list: ListQuery,
    pub(crate) timeout: Option<Duration>,
    pub(crate) bookmarks: bool,
}

impl Query {
    pub(crate) fn parse(query: &str) -> Result<Self, ApiError> {
        let mut q = Self::default();
        let mut labels = String::new();
        let mut fields = String::new();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let v = v.into_owned();
            match k.as_ref() {
                "watch" => q.watch = v == "true" || v == "1",
                "resourceVersion" => q.list.resource_version = Some(v),
                "resourceVersionMatch" => q.list.resource_version_match = Some(v),
                "limit" => q.list.limit = Some(number("limit", &v)?),
                "continue" => q.list.continue_token = Some(v).filter(|s| !s.is_empty()),
                "labelSelector" => labels = v,
                "fieldSelector" => fields = v,
                "timeoutSeconds" => {
                    // 0 means "not given", as on the real server.
                    let secs = number("timeoutSeconds", &v)? as u64;
                    q.timeout = (secs > 0).then(|| Duration::from_secs(secs));
                }
                "allowWatchBookmarks" => q.bookmarks = v == "true" || v == "1",
                _ => {}
            }
        }
        q.list.labels = LabelSelector::parse(&labels)?;
        q.list.fields = FieldSelector::parse(&fields)?;
        Ok(q)
    }

    pub(crate) fn watch_query(&self) -> WatchQuery {
        WatchQuery {
            resource_version: self.list.resource_version.clone(),
            timeout: self.timeout,
            bookmarks: self.bookmarks,
            labels: self.list.labels.clone(),
            fields: self.list.fields.clone(),
        }
    }
}

fn number(name: &str, v: &str) -> Result<usize, ApiError> {
    v.parse::<usize>().map_err(|_| {
        ApiError::bad_request(format!(
            "{name}: Invalid value: {v:?}: must be a non-negative integer"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(
        gvr: (&str, &str, &str),
        ns: Option<&str>,
        name: Option<&str>,
        sub: Option<&str>,
        watch: bool,
    ) -> Route {
        Route::Resource(Target {
            gvr: Gvr::new(gvr.0, gvr.1, gvr.2),
            namespace: ns.map(str::to_owned),
            name: name.map(str::to_owned),
            subresource: sub.map(str::to_owned),
            watch_path: watch,
        })
    }

    #[test]
    fn paths_route_like_the_real_server() {
        let es = ("discovery.k8s.io", "v1", "endpointslices");
        let rows = [
            ("/version", Route::Version),
            ("/api", Route::CoreVersions),
            ("/apis", Route::GroupList),
            (
                "/apis/discovery.k8s.io",
                Route::Group("discovery.k8s.io".into()),
            ),
            (
                "/api/v1",
                Route::ResourceList {
                    group: String::new(),
                    version: "v1".into(),
                },
            ),
            (
                "/apis/discovery.k8s.io/v1/endpointslices",
                t(es, None, None, None, false),
            ),
            (
                "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
                t(es, Some("default"), None, None, false),
            ),
            (
                "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/web-a",
                t(es, Some("default"), Some("web-a"), None, false),
            ),
            (
                "/apis/discovery.k8s.io/v1/watch/namespaces/default/endpointslices",
                t(es, Some("default"), None, None, true),
            ),
            (
                "/api/v1/namespaces",
                t(("", "v1", "namespaces"), None, None, None, false),
            ),
            (
                "/api/v1/namespaces/default",
                t(("", "v1", "namespaces"), None, Some("default"), None, false),
            ),
            (
                "/api/v1/namespaces/default/status",
                t(
                    ("", "v1", "namespaces"),
                    None,
                    Some("default"),
                    Some("status"),
                    false,
                ),
            ),
            (
                "/apis/networking.k8s.io/v1/namespaces/d/ingresses/web/status",
                t(
                    ("networking.k8s.io", "v1", "ingresses"),
                    Some("d"),
                    Some("web"),
                    Some("status"),
                    false,
                ),
            ),
            ("/healthz/x/y/z", Route::Unknown),
            ("/api/v1/namespaces/a/b/c/d/e", Route::Unknown),
        ];
        for (path, want) in rows {
            assert_eq!(parse(path), want, "{path}");
        }
    }

    #[test]
    fn query_parses_what_kube_sends() {
        let q = Query::parse("&watch=true&timeoutSeconds=290&allowWatchBookmarks=true&resourceVersion=0&labelSelector=app%3Dweb").unwrap();
        assert!(q.watch && q.bookmarks);
        assert_eq!(q.timeout, Some(Duration::from_secs(290)));
        assert_eq!(q.list.resource_version.as_deref(), Some("0"));
        assert_eq!(Query::parse("limit=x").unwrap_err().code, 400);
        assert_eq!(Query::parse("labelSelector=a%20b").unwrap_err().code, 400);
    }

    proptest::proptest! {
        #[test]
        fn any_path_or_query_is_routed_or_refused_without_panicking(path in "(/[a-z0-9.%=&?-]{0,12}){0,8}", query in "[ -~]{0,60}") {
            let _ = parse(&path);
            if let Ok(q) = Query::parse(&query) {
                let _ = q.watch_query();
            }
        }
    }
}
