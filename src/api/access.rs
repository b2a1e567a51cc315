//! AccessRequest: a customer's time-boxed request for permissions on the
//! resources of one of its fully managed instances.

use super::common::*;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A customer's request, written in its own namespace, for permissions on the
/// managed namespace of one of its fully managed instances. The owner of the
/// resources decides; access ends on time.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "computenest.dev",
    doc = "A customer's time-boxed request for permissions on the resources of one of its fully managed instances.",
    version = "v1alpha1",
    kind = "AccessRequest",
    plural = "accessrequests",
    singular = "accessrequest",
    shortname = "cnaccess",
    category = "computenest",
    namespaced,
    status = "AccessRequestStatus",
    printcolumn(name = "Instance", type_ = "string", json_path = ".spec.instanceName"),
    printcolumn(name = "Subject", type_ = "string", json_path = ".spec.subject.name"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".status.expiresAt"),
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
#[x_kube(validation = Rule::new("self.instanceName == oldSelf.instanceName && self.subject == oldSelf.subject && self.rules == oldSelf.rules && self.durationSeconds == oldSelf.durationSeconds").message("instanceName, subject, rules and durationSeconds are immutable; write a new request instead"))]
#[x_kube(validation = Rule::new("!oldSelf.withdrawn || self.withdrawn").message("a withdrawn request stays withdrawn; write a new request instead"))]
#[serde(rename_all = "camelCase")]
pub struct AccessRequestSpec {
    /// Name of the ServiceInstance (in this namespace).
    #[schemars(length(min = 1, max = 253))]
    pub instance_name: String,
    /// Who gets the access: a user, group or ServiceAccount of the customer.
    pub subject: AccessSubject,
    /// What is asked for.
    #[schemars(length(min = 1, max = 16))]
    pub rules: Vec<AccessRule>,
    /// How long, in seconds, from the moment access is granted; bounded by
    /// the owner's maximum (AccessPolicy.maxDurationSeconds, default 3600).
    /// At least 10 seconds, so that short grants can be tried out and tested.
    #[schemars(range(min = 10, max = 2592000))]
    pub duration_seconds: i64,
    /// Why access is needed, shown to the owner.
    #[schemars(length(min = 1, max = 1024))]
    pub reason: String,
    /// Set to true to give the access back early. Cannot be undone.
    #[serde(default)]
    pub withdrawn: bool,
}

/// The subject access is granted to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.kind != 'ServiceAccount' || has(self.namespace)").message("a ServiceAccount subject needs its namespace"))]
#[x_kube(validation = Rule::new("self.kind == 'ServiceAccount' || !has(self.namespace)").message("namespace applies only to a ServiceAccount subject; users and groups have none: remove it"))]
pub struct AccessSubject {
    /// User, Group or ServiceAccount.
    pub kind: SubjectKind,
    /// Name of the subject.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of a ServiceAccount (must be the customer's); refused for a User or Group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Kind of an RBAC subject.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum SubjectKind {
    /// A user.
    User,
    /// A group.
    Group,
    /// A ServiceAccount.
    ServiceAccount,
}

/// One permission asked for, as in an RBAC PolicyRule (namespaced only).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessRule {
    /// API groups ("" is the core group).
    #[schemars(length(min = 1, max = 16))]
    pub api_groups: Vec<String>,
    /// Resources, for example `pods` or `pods/log`.
    #[schemars(length(min = 1, max = 32))]
    pub resources: Vec<String>,
    /// Verbs: get, list, watch, create, update, patch, delete, deletecollection.
    /// escalate, bind, impersonate and `*` are never granted, nor writes to
    /// endpoints or endpointslices.
    #[schemars(length(min = 1, max = 8))]
    pub verbs: Vec<String>,
}

/// Observed state of an AccessRequest.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessRequestStatus {
    /// The metadata.generation last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Digest of what is asked for (instance, subject, rules, duration):
    /// `sha256:<32 hex digits>`. The owner's AccessApproval must name it
    /// (spec.requestDigest), with this request's metadata.uid
    /// (spec.requestUID), to approve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_digest: Option<String>,
    /// Pending, Approved, Active, Expired, Rejected or Withdrawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<AccessPhase>,
    /// When the access ends (RFC 3339). Set when access is first granted and
    /// never moved: a later approval does not restart the clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The permissions in force while Active: what was asked for, narrowed to
    /// what the owner allows. Empty when nothing is granted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub granted_rules: Vec<AccessRule>,
    /// Who decided: `AccessApproval <namespace>/<name>`, or `Automatic` (the
    /// owner's AccessPolicy). Kept after the access ends, for the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// The instance's managed namespace, where the Role and RoleBinding of
    /// this request are written. Set when access is first granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_namespace: Option<String>,
    /// Ready is True while access is granted (phase Active).
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// Where an AccessRequest stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum AccessPhase {
    /// Waiting: for the owner's decision, or for the instance.
    Pending,
    /// Approved, but the permissions are not written yet.
    Approved,
    /// The permissions are written, until expiresAt.
    Active,
    /// The time is up; the permissions are removed.
    Expired,
    /// Refused: by the owner, or by the controller's rules (see the Ready condition).
    Rejected,
    /// Given back by the customer; the permissions are removed.
    Withdrawn,
}

impl AccessPhase {
    /// Name as written in status.
    pub fn as_str(&self) -> &'static str {
        match self {
            AccessPhase::Pending => "Pending",
            AccessPhase::Approved => "Approved",
            AccessPhase::Active => "Active",
            AccessPhase::Expired => "Expired",
            AccessPhase::Rejected => "Rejected",
            AccessPhase::Withdrawn => "Withdrawn",
        }
    }
}

/// Whether and how buyers of a fully managed product may ask for access to the
/// resources of their instance (see AccessRequest).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessPolicy {
    /// Manual: the owner approves each request; Automatic: approved at once.
    #[serde(default)]
    pub approval: Approval,
    /// Longest time an approved request lasts, in seconds (default 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60, max = 2592000))]
    pub max_duration_seconds: Option<i64>,
    /// Whether access to Secrets may be granted: reading and writing
    /// Secrets, exec, attach, port-forward and proxy into pods, ServiceAccount
    /// tokens, and creating or changing the built-in workloads (pods,
    /// deployments, statefulsets, jobs...), which can mount any Secret.
    /// Still limited to what the platform lets the controller grant.
    #[serde(default)]
    pub allow_secrets: bool,
    /// Permissions, beyond the built-in safe set (reading the usual
    /// namespaced objects except Secrets, pod logs, deleting pods, scaling),
    /// that customers may be granted on request, each named exactly (no
    /// `*`): for example `{apiGroups: [argoproj.io], resources: [rollouts],
    /// verbs: [get, list, patch]}`. Anything neither built in nor named here
    /// is left out of every grant, custom resources included (a custom
    /// resource may run pods). Still limited to what the platform lets the
    /// controller grant; writes to endpoints and endpointslices are never
    /// granted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub allowed_rules: Vec<AccessRule>,
}
