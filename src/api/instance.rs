//! ServiceInstance: what a customer bought, running.

use super::commerce::*;
use super::common::*;
use super::sync::*;
use super::version::*;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A running copy of a product, bought by the customer whose namespace it
/// lives in. Buy a distributor's DerivedService or an ISV's Service directly.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "computenest.dev",
    doc = "A customer's purchase of a product (a DerivedService or a Service), deployed by the controller.",
    version = "v1alpha1",
    kind = "ServiceInstance",
    plural = "serviceinstances",
    singular = "serviceinstance",
    shortname = "cnsi",
    category = "computenest",
    namespaced,
    status = "ServiceInstanceStatus",
    printcolumn(
        name = "Product",
        type_ = "string",
        json_path = ".status.product",
        priority = 1
    ),
    printcolumn(name = "Scenario", type_ = "string", json_path = ".status.scenario"),
    printcolumn(name = "Owner", type_ = "string", json_path = ".status.owner.party"),
    printcolumn(
        name = "Target",
        type_ = "string",
        json_path = ".status.owner.targetNamespace",
        priority = 1
    ),
    printcolumn(name = "Version", type_ = "string", json_path = ".status.version"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.logonUrl"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ServiceInstanceSpec {
    /// What was bought. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("serviceRef is immutable; buy a new instance to change the product"))]
    pub service_ref: ProductRef,
    /// Plan to deploy; required when the product has plans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub plan: Option<String>,
    /// Parameter values, checked against the product's parameter schema.
    #[serde(default)]
    #[schemars(schema_with = "value_map_schema")]
    pub parameters: ParameterValues,
    /// What happens when the instance's objects are changed or deleted by
    /// someone else. The customer decides for the objects it owns (Private
    /// purchases); for fully managed instances the seller's product decides
    /// the mode and the customer's ignore rules still count.
    #[serde(default, skip_serializing_if = "SyncPolicy::is_default")]
    pub sync: SyncPolicy,
    /// The version to run: an exact version (`1.4.2`) or a semver range
    /// (`^1.4`, `~1.4`, `>=1.2, <2`). With `channel`, only versions on it.
    /// Neither: the product's current version, followed as it changes.
    /// Pinning an older version rolls back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub version: Option<String>,
    /// A release channel of the Service (for example `stable`, `beta`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("a channel is a lower-case DNS label"))]
    #[schemars(length(min = 1, max = 63))]
    pub channel: Option<String>,
    /// Manual (default): the instance keeps its version until the pin
    /// changes. Automatic: it follows the newest published version its
    /// range or channel selects.
    #[serde(default, skip_serializing_if = "is_manual")]
    pub update_policy: UpdatePolicy,
    /// Whether a failed upgrade (not healthy within the progress deadline)
    /// rolls back to the version before, where that version allows it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rollback_on_failure: bool,
    /// How the customer pays: Subscription or PayAsYouGo, a trial, periods
    /// bought and automatic renewal. Unset: free (the plan must have no
    /// pricing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing: Option<InstanceBilling>,
}

fn is_manual(p: &UpdatePolicy) -> bool {
    *p == UpdatePolicy::Manual
}

/// Reference to a product: a distributor's DerivedService or an ISV's Service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductRef {
    /// DerivedService (bought from a distributor) or Service (from the ISV directly).
    pub kind: ProductKind,
    /// Namespace of the seller.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("namespace must be a namespace name (a DNS label)"))]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    /// Name of the product.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Which kind of product was bought.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum ProductKind {
    /// A distributor's product.
    DerivedService,
    /// An ISV's product, bought directly.
    Service,
}

/// Lifecycle phase of an instance, after Compute Nest's instance states.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum Phase {
    /// Accepted, not yet deploying (for example waiting for a grant).
    Pending,
    /// Objects are being written.
    Deploying,
    /// Every object is written and ready.
    Deployed,
    /// The instance cannot be deployed; see the Ready condition.
    DeployFailed,
    /// The product changed and the objects are being rewritten.
    Upgrading,
    /// The instance is being deleted and its resources removed.
    Deleting,
}

impl Phase {
    /// Name as written in status.
    pub fn as_str(&self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Deploying => "Deploying",
            Phase::Deployed => "Deployed",
            Phase::DeployFailed => "DeployFailed",
            Phase::Upgrading => "Upgrading",
            Phase::Deleting => "Deleting",
        }
    }
}

/// Observed state of a ServiceInstance.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceInstanceStatus {
    /// The metadata.generation last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// `Kind namespace/name` of the product, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// Scenario1 to Scenario4 when bought from a distributor; DirectPrivate or
    /// DirectFullyManaged when bought from the ISV.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    /// Who owns the resources and where they live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<ResourceOwner>,
    /// Who pays whom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing: Option<Billing>,
    /// Logon URL of the running instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logon_url: Option<String>,
    /// Secret in this namespace that holds the logon URL (key `logonUrl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// The objects written for this instance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applied_objects: Vec<AppliedObject>,
    /// Digest of everything last written for this instance. When the desired
    /// objects hash to the same digest, nothing is written again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_digest: Option<String>,
    /// Every object of the instance as the cluster shows it: whether it is
    /// as written (`Synced`) or was changed or deleted (`OutOfSync`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceStatus>,
    /// The version the instance's objects were last written from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Newer published versions the instance's pin and channel allow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub available_upgrades: Vec<String>,
    /// What moving to the version the pin selects would do (a dry run),
    /// while the instance runs another version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<UpgradePreview>,
    /// The last upgrades and rollbacks, newest last (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub history: Vec<VersionChange>,
    /// Term, expiry, business state, license and usage, when billed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commerce: Option<CommerceStatus>,
    /// Ready, plus GrantValid for instances of a DerivedService.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// One object of an instance, as the cluster shows it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    /// apiVersion of the object.
    pub api_version: String,
    /// Kind of the object.
    pub kind: String,
    /// Namespace of the object.
    pub namespace: String,
    /// Name of the object.
    pub name: String,
    /// Synced (as written) or OutOfSync (changed or deleted by someone else,
    /// not repaired: drift detection Warn, or a repair that failed).
    pub sync: SyncState,
    /// Healthy, Progressing, Degraded, Missing, Suspended or Unknown, after
    /// Argo CD's health codes: the built-in rule of its kind, else kstatus
    /// conventions (a Ready condition, observedGeneration), else existence.
    #[serde(default)]
    pub health: HealthState,
    /// What differs, when OutOfSync; why, when not Healthy.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// How an object of an instance is doing, after Argo CD's health codes.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, schemars::JsonSchema,
)]
pub enum HealthState {
    /// Running as asked (or, for kinds with no status, present).
    Healthy,
    /// On its way: rolling out, pods starting, a claim waiting to bind.
    Progressing,
    /// Failed: a rollout past its deadline, a failed Job, a lost claim.
    Degraded,
    /// Not there.
    Missing,
    /// Paused or suspended on purpose (a suspended CronJob or Job, a paused Deployment).
    Suspended,
    /// Cannot be told yet (not observed).
    #[default]
    Unknown,
}

impl HealthState {
    /// Name as written in status.
    pub fn as_str(&self) -> &'static str {
        match self {
            HealthState::Healthy => "Healthy",
            HealthState::Progressing => "Progressing",
            HealthState::Degraded => "Degraded",
            HealthState::Missing => "Missing",
            HealthState::Suspended => "Suspended",
            HealthState::Unknown => "Unknown",
        }
    }
}

/// Whether an object is as the controller wrote it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum SyncState {
    /// As written.
    Synced,
    /// Changed or deleted by someone else.
    OutOfSync,
}

/// Who owns and pays for an instance's resources, and where they live.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceOwner {
    /// Customer, Distributor or ISV.
    pub party: Party,
    /// The owner party's namespace.
    pub namespace: String,
    /// Namespace the resources are created in: the customer's own namespace,
    /// or a namespace created for this instance on behalf of the owner.
    pub target_namespace: String,
}

/// Billing of an instance.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Billing {
    /// Party charged for the resources (cloud resource fees).
    pub resource_fees_paid_by: Party,
    /// Party the customer pays service fees to.
    pub service_fees_paid_to: Party,
    /// Online (Orders written) or Offline.
    pub settlement: Settlement,
    /// Orders written for this instance, as `namespace/name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orders: Vec<String>,
}

/// One object written for an instance.
#[derive(
    Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, KubeSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct AppliedObject {
    /// apiVersion of the object.
    pub api_version: String,
    /// Kind of the object.
    pub kind: String,
    /// Namespace of the object.
    pub namespace: String,
    /// Name of the object.
    pub name: String,
}
