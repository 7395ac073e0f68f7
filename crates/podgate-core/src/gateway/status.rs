//! Status as the Gateway API defines it, shaped like the API objects' `status` so that
//! a writer can send it as a merge patch. `lastTransitionTime` is the writer's: it
//! keeps the time of a condition whose status did not change.

use serde::Serialize;

use super::types::{ParentReference, RouteGroupKind};

/// One `metav1.Condition` without its transition time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `"True"` or `"False"`.
    pub status: &'static str,
    pub reason: &'static str,
    pub message: String,
    pub observed_generation: i64,
}

impl Condition {
    pub fn new(kind: &'static str, ok: bool, reason: &'static str, message: String) -> Self {
        Self {
            kind,
            status: if ok { "True" } else { "False" },
            reason,
            message,
            observed_generation: 0,
        }
    }

    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// Sets `generation` on every condition (the generation the decision was made at).
pub(crate) fn at_generation(mut conditions: Vec<Condition>, generation: i64) -> Vec<Condition> {
    for c in &mut conditions {
        c.observed_generation = generation;
    }
    conditions
}

/// The status of one of podgate's GatewayClasses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GatewayClassStatus {
    pub conditions: Vec<Condition>,
}

/// The status of one of podgate's Gateways.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GatewayStatus {
    pub conditions: Vec<Condition>,
    pub listeners: Vec<ListenerStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    pub name: String,
    pub supported_kinds: Vec<RouteGroupKind>,
    pub attached_routes: i32,
    pub conditions: Vec<Condition>,
}

/// One entry of an HTTPRoute's `status.parents`: podgate writes those of the parents
/// it controls and leaves other controllers' entries alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteParentStatus {
    pub parent_ref: ParentReference,
    pub controller_name: String,
    pub conditions: Vec<Condition>,
}

impl RouteParentStatus {
    /// The condition of `kind`, if set.
    pub fn condition(&self, kind: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }
}
