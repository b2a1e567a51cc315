//! AccessApproval: the owner's decision on a customer's AccessRequest.

use super::access::AccessPhase;
use super::common::*;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// The owner's decision on one AccessRequest, written in the owner's own
/// namespace: the namespace of the party that owns the instance's resources
/// (the distributor in scenario 2, the ISV in scenarios 3 and 4 and for a
/// direct fully managed purchase). An approval anywhere else has no effect, so
/// a distributor cannot decide for the ISV and a customer cannot approve its
/// own request.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "computenest.dev",
    doc = "The owner's decision (Approved or Rejected) on a customer's AccessRequest, written in the owner's namespace.",
    version = "v1alpha1",
    kind = "AccessApproval",
    plural = "accessapprovals",
    singular = "accessapproval",
    shortname = "cnapproval",
    category = "computenest",
    namespaced,
    status = "AccessApprovalStatus",
    printcolumn(
        name = "Request-Namespace",
        type_ = "string",
        json_path = ".spec.requestNamespace"
    ),
    printcolumn(name = "Request", type_ = "string", json_path = ".spec.requestName"),
    printcolumn(name = "Decision", type_ = "string", json_path = ".spec.decision"),
    printcolumn(
        name = "Request-Phase",
        type_ = "string",
        json_path = ".status.requestPhase"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AccessApprovalSpec {
    /// Namespace of the AccessRequest (the customer's). Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("requestNamespace is immutable; write a new approval instead"))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("requestNamespace must be a namespace name (a DNS label)"))]
    #[schemars(length(min = 1, max = 63))]
    pub request_namespace: String,
    /// Name of the AccessRequest. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("requestName is immutable; write a new approval instead"))]
    #[schemars(length(min = 1, max = 253))]
    pub request_name: String,
    /// UID (metadata.uid) of the AccessRequest this decision is about. An
    /// Approved decision counts only with requestUID and requestDigest both
    /// matching the request: a request deleted and re-created under the same
    /// name (possibly asking for more) is a different request, and this
    /// approval does not count for it. Read both from this approval's
    /// status (status.requestUID, status.requestDigest, shown with what the
    /// request asks for), from the AccessRequested Event on the owner's
    /// product, or from the request itself (metadata.uid, status.requestDigest).
    #[serde(
        default,
        rename = "requestUID",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = 128))]
    pub request_uid: Option<String>,
    /// Digest of what the request asks for (instance, subject, rules and
    /// duration), as in the request's status.requestDigest
    /// (`sha256:<32 hex digits>`). Required with requestUID to approve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub request_digest: Option<String>,
    /// Approved or Rejected. May be changed: Rejected after Approved ends the
    /// access at once; Approved again resumes it until the original expiry.
    /// Approved counts only with requestUID and requestDigest; Rejected
    /// counts without them (for the request of that name written before it).
    pub decision: AccessDecision,
    /// Why, shown to the customer in the request's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub reason: Option<String>,
}

/// The owner's decision on an AccessRequest.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum AccessDecision {
    /// Access is granted, within the owner's AccessPolicy.
    Approved,
    /// Access is refused (or ended, if it was granted).
    Rejected,
}

/// Observed state of an AccessApproval.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessApprovalStatus {
    /// The metadata.generation last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Phase of the AccessRequest this approval names, as last seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_phase: Option<AccessPhase>,
    /// UID of the AccessRequest this approval names, as last seen (only for
    /// an approval in the owner's namespace). Copy it to spec.requestUID to
    /// approve that request, after reading what it asks for in the Ready message.
    #[serde(
        default,
        rename = "requestUID",
        skip_serializing_if = "Option::is_none"
    )]
    pub request_uid: Option<String>,
    /// Digest of that request (its status.requestDigest), as last seen; copy
    /// it to spec.requestDigest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_digest: Option<String>,
    /// Ready is True when this decision is the one that counts for the
    /// request; False (with the reason) when it has no effect.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}
