//! Hostnames as the Gateway API defines them: precise (`foo.example.com`) or a wildcard
//! prefix (`*.example.com`, a suffix match of any depth: it matches `a.example.com` and
//! `a.b.example.com`, never `example.com`), and the intersection of a listener's
//! hostname with a route's.

/// Whether `host` (precise or wildcard) lies within `pattern`.
pub fn within(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        None => pattern == host,
        Some(suffix) => {
            let under = |name: &str| {
                name.len() > suffix.len()
                    && name.ends_with(suffix)
                    && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
            };
            match host.strip_prefix("*.") {
                // `*.example.com` holds itself and `*.a.example.com`.
                Some(host_suffix) => host_suffix == suffix || under(host_suffix),
                None => under(host),
            }
        }
    }
}

/// The hostnames a route serves through a listener: `Some(vec![None])` for any host,
/// `None` when both name hostnames and none intersect (the route is not accepted by
/// that listener). Each intersecting pair gives the more specific of the two; route
/// hostnames outside the listener's are ignored, as the specification says.
pub fn intersect(listener: Option<&str>, route: &[String]) -> Option<Vec<Option<String>>> {
    let listener = listener.map(str::to_ascii_lowercase);
    let route: Vec<String> = route.iter().map(|h| h.to_ascii_lowercase()).collect();
    match (listener, route.is_empty()) {
        (None, true) => Some(vec![None]),
        (None, false) => Some(dedup(route.into_iter().map(Some).collect())),
        (Some(l), true) => Some(vec![Some(l)]),
        (Some(l), false) => {
            let found: Vec<Option<String>> = route
                .into_iter()
                .filter_map(|r| {
                    if within(&l, &r) {
                        Some(Some(r))
                    } else if within(&r, &l) {
                        Some(Some(l.clone()))
                    } else {
                        None
                    }
                })
                .collect();
            (!found.is_empty()).then(|| dedup(found))
        }
    }
}

fn dedup(mut hosts: Vec<Option<String>>) -> Vec<Option<String>> {
    hosts.sort();
    hosts.dedup();
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(hosts: &[&str]) -> Vec<String> {
        hosts.iter().map(|h| (*h).to_owned()).collect()
    }

    #[allow(clippy::unnecessary_wraps)] // compared with `intersect`'s answer
    fn some(hosts: &[&str]) -> Option<Vec<Option<String>>> {
        Some(hosts.iter().map(|h| Some((*h).to_owned())).collect())
    }

    #[test]
    fn a_wildcard_is_a_suffix_match_of_any_depth_but_not_the_bare_domain() {
        assert!(within("*.example.com", "test.example.com"));
        assert!(within("*.example.com", "foo.test.example.com"));
        assert!(within("*.example.com", "*.test.example.com"));
        assert!(within("*.example.com", "*.example.com"));
        assert!(!within("*.example.com", "example.com"));
        assert!(!within("*.example.com", "test.example.net"));
        assert!(!within("*.example.com", "testexample.com"));
        assert!(!within("test.example.com", "*.example.com"));
        assert!(within("test.example.com", "test.example.com"));
    }

    // The examples of the HTTPRoute `hostnames` documentation, one by one.
    #[test]
    fn the_specification_examples_intersect_as_written() {
        // A listener `test.example.com` matches routes with no hostnames, or with
        // `test.example.com` or `*.example.com`.
        assert_eq!(
            intersect(Some("test.example.com"), &[]),
            some(&["test.example.com"])
        );
        assert_eq!(
            intersect(Some("test.example.com"), &owned(&["test.example.com"])),
            some(&["test.example.com"])
        );
        assert_eq!(
            intersect(Some("test.example.com"), &owned(&["*.example.com"])),
            some(&["test.example.com"])
        );
        // A listener `*.example.com` matches `*.example.com`, `test.example.com` and
        // `foo.test.example.com`, not `example.com` nor `test.example.net`.
        for host in ["*.example.com", "test.example.com", "foo.test.example.com"] {
            assert_eq!(
                intersect(Some("*.example.com"), &owned(&[host])),
                some(&[host]),
                "{host}"
            );
        }
        for host in ["example.com", "test.example.net"] {
            assert_eq!(intersect(Some("*.example.com"), &owned(&[host])), None);
        }
        // Route hostnames outside the listener's are ignored.
        assert_eq!(
            intersect(
                Some("*.example.com"),
                &owned(&["test.example.com", "test.example.net"])
            ),
            some(&["test.example.com"])
        );
        // Neither names one: any host.
        assert_eq!(intersect(None, &[]), Some(vec![None]));
        assert_eq!(
            intersect(None, &owned(&["B.example.com", "b.example.com"])),
            some(&["b.example.com"])
        );
    }
}
