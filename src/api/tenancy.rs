//! Tenancy fields shared by Service and DerivedService: who operates the
//! resources a seller owns, who may buy, how strict the managed namespace's
//! Pod Security is, and what a plan may consume.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// A subject of the seller's own party, bound to the platform's operator
/// ClusterRole in every managed namespace whose resources that party owns.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Operator {
    /// ServiceAccount (always in the seller's own namespace), User or Group.
    /// Users and groups count only when the platform lists them on the
    /// seller's namespace (annotations `computenest.dev/operator-users` and
    /// `computenest.dev/operator-groups`).
    pub kind: OperatorKind,
    /// Name of the ServiceAccount, user or group.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Kind of an operator subject.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    schemars::JsonSchema,
)]
pub enum OperatorKind {
    /// A ServiceAccount in the seller's namespace.
    ServiceAccount,
    /// A user, as the platform authenticates it.
    User,
    /// A group, as the platform authenticates it.
    Group,
}

/// Who may buy a product, after Compute Nest's share types.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.policy == 'Restricted' || ((!has(self.namespaces) || size(self.namespaces) == 0) && !has(self.namespaceSelector))").message("namespaces and namespaceSelector apply only to policy Restricted"))]
pub struct SalesPolicy {
    /// Public (anyone), Restricted (the namespaces listed or selected) or
    /// Hidden (not sold directly: a Service sold only through distributors).
    #[serde(default)]
    pub policy: SalesVisibility,
    /// Buyer namespaces, by name (Restricted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub namespaces: Vec<String>,
    /// Buyer namespaces, by the labels the platform put on them (Restricted).
    /// Tenants cannot label namespaces, so the platform decides who matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    /// Most live instances of this product one customer namespace may have;
    /// unset means no limit. The oldest instances count first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_instances_per_customer: Option<u32>,
}

/// Share type of a product.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, schemars::JsonSchema,
)]
pub enum SalesVisibility {
    /// Anyone may buy.
    #[default]
    Public,
    /// Only the namespaces listed or selected may buy.
    Restricted,
    /// Not sold directly; only through distributors (Service only).
    Hidden,
}

/// Pod Security Standard level, as in the `pod-security.kubernetes.io` labels.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PodSecurityLevel {
    /// Strictest (the default).
    #[default]
    Restricted,
    /// Known privilege escalations refused.
    Baseline,
    /// Unrestricted.
    Privileged,
}

impl PodSecurityLevel {
    /// Value of the `pod-security.kubernetes.io/*` labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            PodSecurityLevel::Restricted => "restricted",
            PodSecurityLevel::Baseline => "baseline",
            PodSecurityLevel::Privileged => "privileged",
        }
    }
}

/// What a plan's instance may consume in its managed namespace: the
/// ResourceQuota. Unset fields take the platform's defaults; every field is
/// capped by the platform's ceilings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanResources {
    /// CPU requests and limits, for example `2` or `500m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isQuantity(self)").message("cpu must be a quantity such as 2 or 500m"))]
    #[schemars(length(max = 32))]
    pub cpu: Option<String>,
    /// Memory requests and limits, for example `4Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isQuantity(self)").message("memory must be a quantity such as 4Gi"))]
    #[schemars(length(max = 32))]
    pub memory: Option<String>,
    /// Total storage requested by PersistentVolumeClaims, for example `20Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isQuantity(self)").message("storage must be a quantity such as 20Gi"))]
    #[schemars(length(max = 32))]
    pub storage: Option<String>,
    /// Most pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub pods: Option<u32>,
    /// Most Services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub services: Option<u32>,
    /// Most PersistentVolumeClaims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub persistent_volume_claims: Option<u32>,
    /// Most ConfigMaps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub config_maps: Option<u32>,
    /// Most Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub secrets: Option<u32>,
}

/// Which objects a distributor may add to instances whose resources the ISV
/// owns (scenarios 3 and 4): they run next to the ISV's Secrets.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExtraObjectsPolicy {
    /// Kinds a distributor may add, as `Kind` (core group) or `group/Kind`,
    /// for example `ConfigMap` or `networking.k8s.io/Ingress`. Empty (the
    /// default): none. Instances whose resources the distributor or the
    /// customer owns are not limited by this.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub allowed_kinds: Vec<String>,
}
