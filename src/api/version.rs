//! ServiceVersion: an immutable snapshot of what a Service deploys at one
//! version, and the release fields of a Service that make them.

use super::common::*;
use super::service::{ParameterSpec, Plan, Template};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// One published version of an ISV's Service: what its instances deploy at
/// that version. Written by the controller (like a Deployment's
/// ReplicaSets) from the Service each time `spec.version` names a version
/// it has not published yet; its content never changes afterwards, so an
/// instance pinned to it keeps exactly what it bought. The ISV changes a
/// version's state and channels in the Service's `spec.versions`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "computenest.dev",
    doc = "A published version of an ISV's Service: an immutable snapshot of its parameters, plans, template and outputs, written by the controller.",
    version = "v1alpha1",
    kind = "ServiceVersion",
    plural = "serviceversions",
    singular = "serviceversion",
    shortname = "cnsv",
    category = "computenest",
    namespaced,
    status = "ServiceVersionStatus",
    printcolumn(name = "Service", type_ = "string", json_path = ".spec.service"),
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.version"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Channels", type_ = "string", json_path = ".status.channels"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.service == oldSelf.service && self.version == oldSelf.version && self.type == oldSelf.type").message("a published version is immutable; publish a new version instead"))]
pub struct ServiceVersionSpec {
    /// Name of the Service in the same namespace.
    #[schemars(length(min = 1, max = 253))]
    pub service: String,
    /// The version, as in the Service's `spec.version`.
    #[schemars(length(min = 1, max = 64))]
    pub version: String,
    /// The Service's type when the version was published (a version change
    /// that would change it is refused: ScenarioChange).
    #[serde(rename = "type")]
    pub type_: ServiceType,
    /// Channels the version was published on (the Service's
    /// `spec.versions` may move it to others).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub channels: Vec<String>,
    /// What the version deploys. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("the content of a published version is immutable; publish a new version instead"))]
    pub content: VersionContent,
    /// How instances move to this version. Immutable.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("the upgrade metadata of a published version is immutable"))]
    pub upgrade: UpgradeMetadata,
}

/// What a version deploys: the Service fields that change between versions.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionContent {
    /// Parameters a buyer may set.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub parameters: Vec<ParameterSpec>,
    /// Plans.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub plans: Vec<Plan>,
    /// The objects to create for each instance.
    pub template: Template,
    /// What an instance shows its buyer.
    #[serde(default)]
    pub outputs: Outputs,
}

/// How instances reach a version, after Compute Nest's UpgradeMetadata.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeMetadata {
    /// Versions an instance may upgrade from: exact versions or semver
    /// ranges (`^1.2`, `>=1.0, <2`). Empty: any older version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub from: Vec<String>,
    /// Whether an instance on this version may roll back to the version it
    /// came from. Default true.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub rollback: bool,
    /// Parameters an instance must have a value for (its own, its plan's or
    /// a default) before it may upgrade to this version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub required_parameters: Vec<String>,
    /// Whether claims that left the template are deleted by an upgrade to
    /// this version. Default false: a volume is kept until the instance goes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_persistent_volume_claims: bool,
}

impl Default for UpgradeMetadata {
    fn default() -> Self {
        UpgradeMetadata {
            from: Vec::new(),
            rollback: true,
            required_parameters: Vec::new(),
            delete_persistent_volume_claims: false,
        }
    }
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// The state of a version, after Compute Nest's version states.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, schemars::JsonSchema,
)]
pub enum VersionState {
    /// Being prepared: nothing can be bought or upgraded to it.
    Draft,
    /// Sold, and instances may upgrade to it.
    #[default]
    Published,
    /// Running instances keep it and may pin it; channels and ranges no
    /// longer choose it.
    Deprecated,
    /// No new instance and no upgrade to it; running instances keep running.
    Withdrawn,
}

impl VersionState {
    /// Name as written in status.
    pub fn as_str(&self) -> &'static str {
        match self {
            VersionState::Draft => "Draft",
            VersionState::Published => "Published",
            VersionState::Deprecated => "Deprecated",
            VersionState::Withdrawn => "Withdrawn",
        }
    }
}

/// How the Service's current `spec.version` is released.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    /// Draft: not published yet (no snapshot; nothing can be bought at it).
    /// Published: snapshotted as a ServiceVersion; its content can no longer
    /// change under this version.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == 'Draft' || self == 'Published'").message("the current version is Draft or Published; deprecate or withdraw older versions in spec.versions"))]
    pub state: VersionState,
    /// Channels the version is on. Default: `stable`.
    #[serde(default = "stable_channel")]
    #[schemars(length(max = 8))]
    pub channels: Vec<String>,
    /// How instances upgrade to this version.
    #[serde(default)]
    pub upgrade: UpgradeMetadata,
}

impl Default for Release {
    fn default() -> Self {
        Release {
            state: VersionState::Published,
            channels: stable_channel(),
            upgrade: UpgradeMetadata::default(),
        }
    }
}

/// The default channel.
pub fn stable_channel() -> Vec<String> {
    vec!["stable".to_string()]
}

/// The state and channels of an older version, set by the ISV.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionLifecycle {
    /// The version.
    #[schemars(length(min = 1, max = 64))]
    pub version: String,
    /// Published, Deprecated or Withdrawn.
    #[x_kube(validation = Rule::new("self != 'Draft'").message("a published version cannot go back to Draft"))]
    pub state: VersionState,
    /// Channels the version stays on; unset: those it was published on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    pub channels: Option<Vec<String>>,
}

/// Observed state of a ServiceVersion.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceVersionStatus {
    /// The metadata.generation last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Published, Deprecated or Withdrawn (from the Service's spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<VersionState>,
    /// Channels the version is on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// How the automatic upgrade of instances to this version goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
    /// Ready is True while the version can be bought or upgraded to.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// How instances that follow a range or channel automatically are moved to
/// a new version: a few at a time, stopping at the first failures.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutPolicy {
    /// Instances moving at once: a number (`2`) or a percentage of the
    /// instances that follow the Service automatically (`25%`), at least one.
    #[serde(default = "default_max_in_progress")]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]+%?$')").message("maxInProgress is a number or a percentage, for example 2 or 25%"))]
    #[schemars(length(min = 1, max = 8))]
    pub max_in_progress: String,
    /// Failed moves to a version that halt its rollout: the instances that
    /// have not moved yet stay where they are (UpgradeBlocked:
    /// RolloutHalted) until the Service's spec changes.
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 10000))]
    pub failure_threshold: u32,
}

fn default_max_in_progress() -> String {
    "25%".into()
}

fn default_failure_threshold() -> u32 {
    1
}

impl Default for RolloutPolicy {
    fn default() -> Self {
        RolloutPolicy {
            max_in_progress: default_max_in_progress(),
            failure_threshold: default_failure_threshold(),
        }
    }
}

impl RolloutPolicy {
    /// Moves at once among `followers` instances that follow automatically.
    pub fn max_at_once(&self, followers: usize) -> usize {
        let s = self.max_in_progress.trim();
        let n = match s.strip_suffix('%') {
            Some(p) => p
                .parse::<usize>()
                .map(|p| (followers * p.min(100)).div_ceil(100))
                .unwrap_or(1),
            None => s.parse::<usize>().unwrap_or(1),
        };
        n.max(1)
    }
}

/// The automatic rollout of a version.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// Progressing (instances are moving), Halted (too many failed) or
    /// Complete (nothing moving).
    pub state: String,
    /// Instances moving now.
    pub in_progress: u32,
    /// Instances moved (since the controller started).
    pub succeeded: u32,
    /// Instances whose move failed.
    pub failed: u32,
    /// The Service generation the rollout ran under (a halt holds until it changes).
    pub service_generation: i64,
    /// What happens next.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// An instance's version on its Service's version list.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionSummary {
    /// The version.
    pub version: String,
    /// Its state.
    pub state: VersionState,
    /// Its channels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
}

/// Whether an instance's version moves on its own.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum UpdatePolicy {
    /// The instance moves only when its pin changes (or when what it runs
    /// no longer matches the pin).
    #[default]
    Manual,
    /// The instance follows the newest published version its range or
    /// channel selects.
    Automatic,
}

/// One upgrade or rollback of an instance, after Compute Nest's upgrade history.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionChange {
    /// Version before.
    pub from: String,
    /// Version after (or attempted).
    pub to: String,
    /// Upgrade, Rollback (asked for by pinning an older version) or
    /// AutomaticRollback (after a failed upgrade).
    #[serde(rename = "type")]
    pub type_: VersionChangeType,
    /// InProgress, Succeeded or Failed.
    pub result: VersionChangeResult,
    /// When it started (RFC 3339).
    pub start_time: String,
    /// When it ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The instance generation that asked for it (a failed upgrade is tried
    /// again only for a new generation).
    #[serde(default)]
    pub generation: i64,
}

/// Kind of a version change.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum VersionChangeType {
    /// To a newer version.
    Upgrade,
    /// To an older version, asked for.
    Rollback,
    /// Back to the version before, after the upgrade failed.
    AutomaticRollback,
}

/// Outcome of a version change.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum VersionChangeResult {
    /// Objects written, not yet healthy.
    InProgress,
    /// Every object healthy at the new version.
    Succeeded,
    /// Not healthy within the progress deadline, or refused by the API server.
    Failed,
}

/// What moving to another version would do, computed before it is done.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradePreview {
    /// The version it would move to.
    pub to: String,
    /// Objects only the new version has (`Kind/name`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub create: Vec<String>,
    /// Objects both have, written differently.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub update: Vec<String>,
    /// Objects only the old version has (claims are kept unless the new
    /// version says otherwise; those are listed in `keep`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete: Vec<String>,
    /// Objects that left the template and stay (volumes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keep: Vec<String>,
    /// Parameters the new version requires that the instance lacks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_parameters: Vec<String>,
    /// Why it cannot happen, when it cannot: MissingParameters,
    /// UnsupportedFromVersion, NotPublished, ScenarioChange, RollbackUnsupported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
}
