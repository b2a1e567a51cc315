//! Service: what an ISV publishes.

use super::access::AccessPolicy;
use super::commerce::*;
use super::common::*;
use super::sync::SyncPolicy;
use super::tenancy::*;
use super::version::*;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A product that an ISV publishes in its own namespace: how to deploy it,
/// which parameters it takes, which plans it sells and whether distributors
/// may resell it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "computenest.dev",
    doc = "An ISV's product: type, version, listing, distribution policy, parameters, plans, deployment template and outputs.",
    version = "v1alpha1",
    kind = "Service",
    plural = "services",
    singular = "service",
    shortname = "cnsvc",
    category = "computenest",
    namespaced,
    status = "ServiceStatus",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.version"),
    printcolumn(
        name = "Listed",
        type_ = "boolean",
        json_path = ".spec.marketplace.listed"
    ),
    printcolumn(
        name = "Distribution",
        type_ = "boolean",
        json_path = ".spec.distribution.enabled"
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
pub struct ServiceSpec {
    /// Private (resources belong to the customer) or FullyManaged (resources
    /// belong to the ISV; the customer only gets a logon URL).
    #[serde(rename = "type")]
    pub type_: ServiceType,
    /// Version of the software, for example `1.4.2`.
    #[x_kube(validation = Rule::new("self.matches('^[0-9A-Za-z][0-9A-Za-z.+_-]*$')").message("version must start with a letter or digit and contain only letters, digits, '.', '+', '_' and '-'"))]
    #[schemars(length(min = 1, max = 64))]
    pub version: String,
    /// Marketplace listing. Decides between scenario 3 (listed, online
    /// settlement) and scenario 4 (not listed) for a FullyManaged Service.
    #[serde(default)]
    pub marketplace: Marketplace,
    /// Whether and how distributors may resell this Service.
    #[serde(default)]
    pub distribution: DistributionPolicy,
    /// Access requests by customers of fully managed instances sold directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessPolicy>,
    /// Parameters a buyer may set, with their types and limits.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self.all(p, self.exists_one(q, q.name == p.name))").message("parameter names must be unique"))]
    #[schemars(length(max = 64))]
    pub parameters: Vec<ParameterSpec>,
    /// Named parameter sets that can be bought. An instance picks one.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self.all(p, self.exists_one(q, q.name == p.name))").message("plan names must be unique"))]
    #[schemars(length(max = 32))]
    pub plans: Vec<Plan>,
    /// The objects to create for each instance.
    pub template: Template,
    /// What an instance shows its buyer.
    #[serde(default)]
    pub outputs: Outputs,
    /// Subjects of the ISV that operate the resources the ISV owns (scenarios
    /// 3 and 4, and direct fully managed purchases): bound to the platform's
    /// operator ClusterRole in each of those managed namespaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(o, self.exists_one(p, p.kind == o.kind && p.name == o.name))").message("operators must be unique"))]
    #[schemars(length(max = 32))]
    pub operators: Vec<Operator>,
    /// Who may buy this Service directly.
    #[serde(default)]
    pub sales: SalesPolicy,
    /// Pod Security level the Service's managed namespaces need; the
    /// platform's level applies when unset, and a less strict level than the
    /// platform's ceiling is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security: Option<PodSecurityLevel>,
    /// Drift detection of this Service's instances when bought directly (the
    /// default of their `spec.sync`; see ServiceInstance).
    #[serde(default, skip_serializing_if = "SyncPolicy::is_default")]
    pub sync: SyncPolicy,
    /// How long an instance's objects may take to become healthy after a
    /// write before the instance is DeployFailed with a Stalled condition
    /// naming them. Unset: 600 seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 86400))]
    pub progress_deadline_seconds: Option<u32>,
    /// How the version in `spec.version` is released: Draft or Published,
    /// its channels, and how instances upgrade to it. Unset: Published on
    /// `stable`. Each published version is kept as a ServiceVersion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<Release>,
    /// State and channels of older versions (Deprecated, Withdrawn).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(v, self.exists_one(w, w.version == v.version))").message("versions must be unique"))]
    #[schemars(length(max = 100))]
    pub versions: Vec<VersionLifecycle>,
    /// How automatic upgrades reach the instances that follow a range or a
    /// channel: a few at a time, halted by failures. Unset: 25% at once,
    /// halted by the first failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutPolicy>,
    /// How many published versions no instance runs are kept (the newest
    /// ones, besides the current version). Unset: 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub version_history_limit: Option<u32>,
    /// Currency, metering dimensions, the late window of usage records and
    /// expiry notices. Prices are per plan (`plans[].pricing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commerce: Option<CommercePolicy>,
}

/// Versions no instance runs that a Service keeps when it sets no limit.
pub const DEFAULT_VERSION_HISTORY_LIMIT: u32 = 10;

impl ServiceSpec {
    /// The release of the current version (the default when unset).
    pub fn release(&self) -> Release {
        self.release.clone().unwrap_or_default()
    }
    /// What the current version deploys.
    pub fn content(&self) -> VersionContent {
        VersionContent {
            parameters: self.parameters.clone(),
            plans: self.plans.clone(),
            template: self.template.clone(),
            outputs: self.outputs.clone(),
        }
    }
    /// This spec with the content of another version.
    pub fn at_version(&self, version: &str, content: &VersionContent) -> ServiceSpec {
        ServiceSpec {
            version: version.to_string(),
            parameters: content.parameters.clone(),
            plans: content.plans.clone(),
            template: content.template.clone(),
            outputs: content.outputs.clone(),
            ..self.clone()
        }
    }

    /// The progress deadline of the Service's instances.
    pub fn progress_deadline(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(
            self.progress_deadline_seconds
                .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS),
        ))
    }
}

/// The progress deadline when a Service sets none (as a Deployment's).
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: u32 = 600;

/// Distribution policy of a Service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DistributionPolicy {
    /// Whether distributors may resell this Service. Turning it off stops new
    /// sales through every distributor.
    #[serde(default)]
    pub enabled: bool,
    /// Manual: a distributor's application waits for the ISV's decision.
    /// Automatic: applications are approved at once.
    #[serde(default)]
    pub approval: Approval,
    /// What happens to running instances when their distribution grant is
    /// revoked, expires or is deleted. New sales stop in every case.
    #[serde(default)]
    pub on_revoke: RevocationPolicy,
    /// Which objects a distributor may add where the ISV owns the resources
    /// (scenarios 3 and 4). Default: none.
    #[serde(default)]
    pub extra_objects: ExtraObjectsPolicy,
}

/// What happens to running instances when distribution is revoked.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum RevocationPolicy {
    /// Instances keep running; their GrantValid condition turns False.
    #[default]
    KeepRunning,
    /// The instances' resources are removed; the instances stay, not Ready.
    Deprovision,
}

/// One parameter of a Service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.minimum) || !has(self.maximum) || self.minimum <= self.maximum").message("minimum must not be greater than maximum"))]
#[x_kube(validation = Rule::new("(!has(self.minimum) && !has(self.maximum)) || self.type == 'Integer' || self.type == 'Number'").message("minimum and maximum apply only to Integer and Number parameters; remove them or change the type"))]
#[x_kube(validation = Rule::new("!has(self.maxLength) || self.type == 'String'").message("maxLength applies only to String parameters; remove it or change the type"))]
#[x_kube(validation = Rule::new("!has(self.pattern) || self.type == 'String'").message("pattern applies only to String parameters; remove it or change the type"))]
pub struct ParameterSpec {
    /// Parameter name, as used in `$(params.NAME)`.
    #[x_kube(validation = Rule::new("self.matches('^[a-zA-Z][a-zA-Z0-9_]*$')").message("parameter names start with a letter and contain only letters, digits and '_'"))]
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Value type.
    #[serde(rename = "type")]
    pub type_: ParameterType,
    /// What the parameter means, for buyers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// Value used when neither the plan nor the buyer sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_value_schema")]
    pub default: Option<serde_json::Value>,
    /// Whether a value must be given (by default, plan or buyer).
    #[serde(default)]
    pub required: bool,
    /// Allowed values; empty means any value of the type.
    #[serde(default, rename = "enum", skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "any_list_schema")]
    pub allowed: Vec<serde_json::Value>,
    /// Smallest allowed number (Integer and Number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<f64>,
    /// Largest allowed number (Integer and Number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum: Option<f64>,
    /// Longest allowed string, in characters (String; default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 65536))]
    pub max_length: Option<u32>,
    /// Regular expression a String value must match in full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub pattern: Option<String>,
}

fn any_list_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": 256,
        "items": { "x-kubernetes-preserve-unknown-fields": true }
    })
}

/// Type of a parameter value.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum ParameterType {
    /// A string.
    String,
    /// A whole number.
    Integer,
    /// Any number.
    Number,
    /// true or false.
    Boolean,
    /// Name of a Secret in the buyer's namespace; only the buyer sets it
    /// (no default, no plan value). A template may use a Secret it does not
    /// create only when a parameter of this type names it.
    SecretRef,
    /// Name of a ConfigMap in the buyer's namespace (as SecretRef).
    ConfigMapRef,
    /// Name of a PersistentVolumeClaim in the buyer's namespace (as SecretRef).
    PersistentVolumeClaimRef,
    /// Name of a ServiceAccount in the buyer's namespace (as SecretRef).
    ServiceAccountRef,
}

impl ParameterType {
    /// The kind a reference parameter names, for reference types.
    pub fn referenced_kind(&self) -> Option<&'static str> {
        match self {
            ParameterType::SecretRef => Some("Secret"),
            ParameterType::ConfigMapRef => Some("ConfigMap"),
            ParameterType::PersistentVolumeClaimRef => Some("PersistentVolumeClaim"),
            ParameterType::ServiceAccountRef => Some("ServiceAccount"),
            _ => None,
        }
    }
}

/// A named set of parameter values that can be bought.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Plan name, as given in a ServiceInstance's `plan`.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("plan names are lower-case DNS labels (a-z, 0-9, '-')"))]
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// What the plan offers, for buyers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// Parameter values this plan sets. A buyer cannot override them.
    #[serde(default)]
    #[schemars(schema_with = "value_map_schema")]
    pub parameters: ParameterValues,
    /// What an instance of this plan may consume in a managed namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<PlanResources>,
    /// What the plan costs (subscription, pay-as-you-go) and its trial.
    /// Unset: free, as an instance that sets no billing is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<PlanPricing>,
}

/// The deployment template: Kubernetes objects created for each instance.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Template {
    /// Manifests of namespaced objects, of kinds in the controller's
    /// allow-list. They are always created in the instance's target namespace;
    /// a manifest that names a namespace is refused. In any string value,
    /// `$(params.NAME)`, `$(instance.name)`, `$(instance.namespace)` and
    /// `$(target.namespace)` are replaced; a string that is exactly
    /// `$(params.NAME)` becomes the parameter's typed value.
    #[schemars(schema_with = "object_list_schema")]
    pub objects: Vec<serde_json::Value>,
}

/// Observed state of a Service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    /// The metadata.generation last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready is True when the template and parameter schema are valid.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The current version, when it is published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_version: Option<String>,
    /// Every version kept, newest first, with its state, channels and the
    /// instances running it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<VersionSummary>,
}
