//! DistributionGrant: the ISV's permission for one distributor to resell one Service.

use super::common::*;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Permission for one distributor namespace to resell one Service. Lives in
/// the ISV's namespace, so only the ISV's RBAC can decide it. The ISV writes
/// one ahead of time, or the controller writes a Pending one when a
/// distributor applies (by creating a DerivedService).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "computenest.dev",
    doc = "Permission for one distributor namespace to resell one Service of this (the ISV's) namespace.",
    version = "v1alpha1",
    kind = "DistributionGrant",
    plural = "distributiongrants",
    singular = "distributiongrant",
    shortname = "cngrant",
    category = "computenest",
    namespaced,
    status = "DistributionGrantStatus",
    printcolumn(name = "Service", type_ = "string", json_path = ".spec.serviceName"),
    printcolumn(
        name = "Distributor",
        type_ = "string",
        json_path = ".spec.distributorNamespace"
    ),
    printcolumn(name = "Decision", type_ = "string", json_path = ".spec.decision"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".spec.expiresAt"),
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
#[x_kube(validation = Rule::new("self.decision == oldSelf.decision || self.decision != 'Pending'").message("a decision cannot go back to Pending once made"))]
#[x_kube(validation = Rule::new("!(oldSelf.decision == 'Rejected' && self.decision == 'Revoked')").message("a Rejected grant was never approved, so it cannot be Revoked; leave it Rejected or approve it"))]
#[serde(rename_all = "camelCase")]
pub struct DistributionGrantSpec {
    /// Name of the Service (in this namespace) that may be resold. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("serviceName is immutable; write a new grant instead"))]
    #[schemars(length(min = 1, max = 253))]
    pub service_name: String,
    /// Namespace of the distributor allowed to resell. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("distributorNamespace is immutable; write a new grant instead"))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("distributorNamespace must be a namespace name (a DNS label)"))]
    #[schemars(length(min = 1, max = 63))]
    pub distributor_namespace: String,
    /// The ISV's decision. Pending may become Approved or Rejected; Approved
    /// may become Revoked; Revoked and Rejected may be Approved again.
    #[serde(default)]
    pub decision: Decision,
    /// When the grant stops allowing new sales (RFC 3339). Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub expires_at: Option<String>,
    /// Why the decision was made, shown to the distributor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub reason: Option<String>,
}

/// The ISV's decision on a distribution grant.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum Decision {
    /// Waiting for the ISV.
    #[default]
    Pending,
    /// The distributor may resell.
    Approved,
    /// The application was turned down.
    Rejected,
    /// A former approval was withdrawn: new sales stop at once.
    Revoked,
}

/// Observed state of a DistributionGrant.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DistributionGrantStatus {
    /// The metadata.generation last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Effective state: the decision, or Expired once expiresAt has passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<GrantState>,
    /// Ready is True while the grant allows sales.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// Effective state of a grant.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum GrantState {
    /// Waiting for the ISV.
    Pending,
    /// Sales allowed.
    Approved,
    /// Turned down.
    Rejected,
    /// Withdrawn.
    Revoked,
    /// expiresAt has passed.
    Expired,
}
