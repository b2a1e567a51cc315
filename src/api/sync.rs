//! Drift: what happens when an object the controller wrote for an instance
//! is changed or deleted by someone else.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// How an instance's objects are kept as written.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncPolicy {
    /// Enabled (repair), Warn (report OutOfSync and an Event, touch
    /// nothing) or Disabled. Unset: the product's setting, else Enabled for
    /// fully managed instances and Warn for customer-owned ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_detection: Option<DriftDetection>,
    /// Fields whose changes are not drift (for example `/spec/replicas`
    /// under an autoscaler).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub ignore: Vec<IgnoreRule>,
}

impl SyncPolicy {
    /// Whether nothing is set (left out of serialized specs).
    pub fn is_default(&self) -> bool {
        *self == SyncPolicy::default()
    }
}

/// What is done about drift.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum DriftDetection {
    /// Changed or deleted objects are written again.
    Enabled,
    /// Drift is reported (OutOfSync, an Event); nothing is touched.
    Warn,
    /// Drift is neither looked for nor reported.
    Disabled,
}

impl DriftDetection {
    /// Name as written in spec and status.
    pub fn as_str(&self) -> &'static str {
        match self {
            DriftDetection::Enabled => "Enabled",
            DriftDetection::Warn => "Warn",
            DriftDetection::Disabled => "Disabled",
        }
    }
}

/// Fields of some objects whose changes are not drift.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct IgnoreRule {
    /// Kind of the objects, as `Kind` (core group) or `group/Kind`, for
    /// example `apps/Deployment`.
    #[schemars(length(min = 1, max = 317))]
    pub kind: String,
    /// Name of the object; unset: every object of the kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub name: Option<String>,
    /// JSON pointers (RFC 6901) of the fields, for example `/spec/replicas`.
    #[x_kube(validation = Rule::new("self.all(p, p.startsWith('/'))").message("each path is a JSON pointer starting with '/', for example /spec/replicas"))]
    #[schemars(length(min = 1, max = 16))]
    pub json_pointers: Vec<String>,
}
