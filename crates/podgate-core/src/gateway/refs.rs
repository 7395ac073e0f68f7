//! ReferenceGrants: a reference into another namespace is allowed only when a grant in
//! the target's namespace names the referring kind and namespace, and the target's
//! kind (and name, when the grant names one).

use super::types::ReferenceGrant;

/// Who refers: group, kind and namespace of the referring object.
pub(crate) struct From<'a> {
    pub(crate) group: &'a str,
    pub(crate) kind: &'a str,
    pub(crate) namespace: &'a str,
}

/// What is referred to: group, kind, namespace and name.
pub(crate) struct To<'a> {
    pub(crate) group: &'a str,
    pub(crate) kind: &'a str,
    pub(crate) namespace: &'a str,
    pub(crate) name: &'a str,
}

/// Whether the reference `from` → `to` is permitted: always within one namespace,
/// across namespaces only by a grant in `to`'s namespace.
pub(crate) fn permitted(grants: &[&ReferenceGrant], from: &From<'_>, to: &To<'_>) -> bool {
    if from.namespace == to.namespace {
        return true;
    }
    grants
        .iter()
        .filter(|g| g.metadata.namespace.as_deref() == Some(to.namespace))
        .any(|g| {
            let from_ok = g.spec.from.iter().any(|f| {
                f.group == from.group && f.kind == from.kind && f.namespace == from.namespace
            });
            let to_ok = g.spec.to.iter().any(|t| {
                t.group == to.group
                    && t.kind == to.kind
                    && t.name.as_deref().is_none_or(|n| n == to.name)
            });
            from_ok && to_ok
        })
}
