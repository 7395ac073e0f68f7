//! `Status` failure bodies of the simulated Kubernetes API server (a test double).
//!
//! Owns the error answers: code, reason, message and details worded like a real
//! kube-apiserver 1.26 (see the recordings in `tests/fixtures/k8s-wire/`). Every input
//! the server refuses turns into one of these; nothing here panics.

use serde_json::{Value, json};

use super::resources::{Gvr, ResourceKind};

/// A refused request, rendered as a `v1 Status` body with the same HTTP code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// HTTP status code, repeated as `code` in the body.
    pub code: u16,
    /// Machine-readable reason, e.g. `NotFound`, `Conflict`, `Invalid`, `Expired`.
    pub reason: String,
    /// Human-readable message, worded like the real server's.
    pub message: String,
    /// `details`, when the real server sends them.
    pub details: Option<Value>,
}

/// One field error of a 422 answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FieldError {
    /// `FieldValueInvalid`, `FieldValueRequired`, ...
    pub(crate) reason: &'static str,
    /// e.g. `endpoints[0].addresses[0]`.
    pub(crate) field: String,
    /// e.g. `Invalid value: "127.1.0.1": may not be in the loopback range (...)`.
    pub(crate) message: String,
}

impl FieldError {
    pub(crate) fn invalid(field: String, value: &str, why: &str) -> Self {
        Self {
            reason: "FieldValueInvalid",
            field,
            message: format!("Invalid value: {}: {why}", json!(value)),
        }
    }

    pub(crate) fn too_many(field: String, len: usize, max: u64) -> Self {
        Self {
            reason: "FieldValueTooMany",
            field,
            message: format!("Too many: {len}: must have at most {max} items"),
        }
    }

    /// Whether this error keeps the CEL rules from running (the real server's
    /// `hasBlockingErr`: required, not supported, too long, too many, wrong type).
    pub(crate) fn blocks_cel(&self) -> bool {
        matches!(
            self.reason,
            "FieldValueRequired"
                | "FieldValueNotSupported"
                | "FieldValueTooLong"
                | "FieldValueTooMany"
                | "FieldValueTypeInvalid"
        )
    }

    /// What the server adds when CEL rules went unchecked because of other errors.
    pub(crate) fn cel_not_checked() -> Self {
        Self {
            reason: "FieldValueInvalid",
            field: "<nil>".to_owned(),
            message: "Invalid value: \"null\": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation".to_owned(),
        }
    }

    pub(crate) fn required(field: String, why: &str) -> Self {
        Self {
            reason: "FieldValueRequired",
            field,
            message: format!("Required value: {why}"),
        }
    }
}

fn details(name: &str, gvr: &Gvr) -> Value {
    let mut d = json!({ "name": name, "kind": gvr.resource });
    if !gvr.group.is_empty() {
        d["group"] = json!(gvr.group);
    }
    d
}

impl ApiError {
    fn new(code: u16, reason: &str, message: String, details: Option<Value>) -> Self {
        Self {
            code,
            reason: reason.to_owned(),
            message,
            details,
        }
    }

    pub(crate) fn not_found(gvr: &Gvr, name: &str) -> Self {
        let message = format!("{} {} not found", gvr.qualified_resource(), json!(name));
        Self::new(404, "NotFound", message, Some(details(name, gvr)))
    }

    /// The answer for a URL that names no resource the server knows.
    pub(crate) fn no_route() -> Self {
        let message = "the server could not find the requested resource".to_owned();
        Self::new(404, "NotFound", message, Some(json!({})))
    }

    pub(crate) fn already_exists(gvr: &Gvr, name: &str) -> Self {
        let message = format!(
            "{} {} already exists",
            gvr.qualified_resource(),
            json!(name)
        );
        Self::new(409, "AlreadyExists", message, Some(details(name, gvr)))
    }

    pub(crate) fn conflict(gvr: &Gvr, name: &str, why: &str) -> Self {
        let message = format!(
            "Operation cannot be fulfilled on {} {}: {why}",
            gvr.qualified_resource(),
            json!(name)
        );
        Self::new(409, "Conflict", message, Some(details(name, gvr)))
    }

    /// The 409 of an update whose `resourceVersion` is not the stored one.
    pub(crate) fn stale(gvr: &Gvr, name: &str) -> Self {
        Self::conflict(
            gvr,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub(crate) fn invalid(kind: &ResourceKind, name: &str, causes: &[FieldError]) -> Self {
        let parts: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let joined = match parts.as_slice() {
            [one] => one.clone(),
            _ => format!("[{}]", parts.join(", ")),
        };
        let message = format!(
            "{} {} is invalid: {joined}",
            kind.qualified_kind(),
            json!(name)
        );
        let causes: Vec<Value> = causes
            .iter()
            .map(|c| json!({ "reason": c.reason, "message": c.message, "field": c.field }))
            .collect();
        let mut d = json!({ "name": name, "kind": kind.kind, "causes": causes });
        if !kind.gvr.group.is_empty() {
            d["group"] = json!(kind.gvr.group);
        }
        Self::new(422, "Invalid", message, Some(d))
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message.into(), None)
    }

    /// A request without the bearer token the server was started with; the real
    /// server answers exactly this, with no details.
    pub(crate) fn unauthorized() -> Self {
        Self {
            code: 401,
            reason: "Unauthorized".to_owned(),
            message: "Unauthorized".to_owned(),
            details: None,
        }
    }

    pub(crate) fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource".into(),
            Some(json!({})),
        )
    }

    pub(crate) fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json; got {content_type:?}"
            ),
            None,
        )
    }

    /// A strategic merge patch on a custom resource (k8s-wire 16c).
    pub(crate) fn unsupported_media_type_custom() -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml".to_owned(),
            None,
        )
    }

    pub(crate) fn too_large() -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            "the request body is too large".into(),
            None,
        )
    }

    /// 410 Expired for a watch or list at a version older than the history kept.
    pub(crate) fn expired(what: &str) -> Self {
        Self::new(
            410,
            "Expired",
            format!("The resourceVersion for the provided {what} is too old."),
            None,
        )
    }

    /// 410 Expired for a continue token whose snapshot is no longer kept.
    pub(crate) fn continue_expired() -> Self {
        Self::new(410, "Expired", "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into(), None)
    }

    pub(crate) fn too_large_resource_version(asked: u64, current: u64) -> Self {
        let d = json!({ "causes": [{ "reason": "ResourceVersionTooLarge", "message": "Too large resource version" }], "retryAfterSeconds": 1 });
        Self::new(
            504,
            "Timeout",
            format!("Too large resource version: {asked}, current: {current}"),
            Some(d),
        )
    }

    /// An answer forced by fault injection.
    pub(crate) fn injected(code: u16) -> Self {
        let reason = match code {
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "InternalError",
        };
        Self::new(
            code,
            reason,
            format!("simulated failure (fault injection, HTTP {code})"),
            None,
        )
    }

    /// The `v1 Status` body.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v["code"] = json!(self.code);
        v
    }
}
