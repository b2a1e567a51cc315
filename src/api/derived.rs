//! DerivedService: a distributor's product built on an ISV's Service.

use super::access::AccessPolicy;
use super::commerce::*;
use super::common::*;
use super::sync::SyncPolicy;
use super::tenancy::*;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A distributor's product built on an ISV's Service (secondary development):
/// its own type, listing, defaults, plan subset, extra objects and outputs.
/// Creating one applies for distribution when no grant exists yet.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "computenest.dev",
    doc = "A distributor's product built on an ISV's Service, with the distributor's own type, listing and overrides.",
    version = "v1alpha1",
    kind = "DerivedService",
    plural = "derivedservices",
    singular = "derivedservice",
    shortname = "cnds",
    category = "computenest",
    namespaced,
    status = "DerivedServiceStatus",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Source", type_ = "string", json_path = ".status.source"),
    printcolumn(name = "Scenario", type_ = "string", json_path = ".status.scenario"),
    printcolumn(
        name = "Settlement",
        type_ = "string",
        json_path = ".status.settlement"
    ),
    printcolumn(name = "Grant", type_ = "string", json_path = ".status.grant.state"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DerivedServiceSpec {
    /// The ISV's Service this product is built on. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("source is immutable; create a new DerivedService to resell another Service"))]
    pub source: SourceRef,
    /// Private or FullyManaged. With the source's type and listing this
    /// decides the scenario (1 to 4); FullyManaged derived as Private is refused.
    #[serde(rename = "type")]
    pub type_: ServiceType,
    /// The distributor's own marketplace listing.
    #[serde(default)]
    pub marketplace: Marketplace,
    /// The distributor's secondary development.
    #[serde(default)]
    pub overrides: Overrides,
    /// Access requests by customers, when the distributor owns the resources (scenario 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessPolicy>,
    /// Subjects of the distributor that operate the resources the
    /// distributor owns (scenario 2): bound to the platform's operator
    /// ClusterRole in each of those managed namespaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(o, self.exists_one(p, p.kind == o.kind && p.name == o.name))").message("operators must be unique"))]
    #[schemars(length(max = 32))]
    pub operators: Vec<Operator>,
    /// Who may buy this product (Public or Restricted; a distributor's
    /// product cannot be Hidden).
    #[serde(default)]
    #[x_kube(validation = Rule::new("self.policy != 'Hidden'").message("a DerivedService is sold by its distributor: policy Hidden applies only to a Service"))]
    pub sales: SalesPolicy,
    /// Drift detection of this product's instances (the default of their
    /// `spec.sync`; see ServiceInstance).
    #[serde(default, skip_serializing_if = "SyncPolicy::is_default")]
    pub sync: SyncPolicy,
}

/// Reference to the ISV's Service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceRef {
    /// Namespace of the ISV.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("namespace must be a namespace name (a DNS label)"))]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    /// Name of the Service.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The versions of the Service this product resells: an exact version
    /// or a semver range; unset, the Service's current version. Sold at the
    /// newest published version it selects (`status.sourceVersion`); none:
    /// not Ready (VersionMismatch). Also the pin of instances that set none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub version: Option<String>,
    /// A release channel of the Service: only versions on it are resold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("a channel is a lower-case DNS label"))]
    #[schemars(length(min = 1, max = 63))]
    pub channel: Option<String>,
}

/// What the distributor changes on top of the ISV's Service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Overrides {
    /// New defaults for the ISV's parameters.
    #[serde(default)]
    #[schemars(schema_with = "value_map_schema")]
    pub parameter_defaults: ParameterValues,
    /// Parameters buyers may not set (they keep the default or the plan's value).
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub locked_parameters: Vec<String>,
    /// The ISV plans this product sells; empty means all of them.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub plans: Vec<String>,
    /// Extra objects added to every instance (same rules as the ISV's template).
    #[serde(default)]
    #[schemars(schema_with = "object_list_schema")]
    pub extra_objects: Vec<serde_json::Value>,
    /// Outputs replacing the ISV's (for example a branded logon URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Outputs>,
    /// The distributor's own prices per plan (the ISV's where unset), and
    /// shorter trials.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(p, self.exists_one(q, q.plan == p.plan))").message("one price override per plan"))]
    #[schemars(length(max = 32))]
    pub prices: Vec<PlanPriceOverride>,
}

/// Observed state of a DerivedService.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DerivedServiceStatus {
    /// The metadata.generation last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `namespace/name` of the source Service, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Distribution scenario (computed): Scenario1 to Scenario4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    /// Online or Offline (computed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement: Option<Settlement>,
    /// Who owns and pays for instance resources (computed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_owner: Option<Party>,
    /// The grant this product sells under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<GrantRef>,
    /// Plans this product sells (after the plan subset).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plans: Vec<String>,
    /// Version of the source Service the offering was resolved from (set while Ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_version: Option<String>,
    /// Ready is True when the product may be sold now.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// The grant a DerivedService sells under.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantRef {
    /// Name of the DistributionGrant in the source's namespace.
    pub name: String,
    /// Its effective state (Pending, Approved, Rejected, Revoked, Expired), or
    /// Deleted once the ISV deleted the grant the product sold under.
    pub state: String,
}
