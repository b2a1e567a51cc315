//! Types shared by several kinds: conditions, references, parties and the
//! enums that make up the distribution model.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// API group of every kind in this crate.
pub const GROUP: &str = "computenest.dev";
/// Field manager of every write the controller makes (server-side apply).
pub const FIELD_MANAGER: &str = "computenest-controller";

/// A standard Kubernetes condition (the shape of metav1.Condition), so that
/// `kubectl wait --for=condition=Ready`, Argo CD and Flux read it unchanged.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Type of the condition, for example `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// One CamelCase word a program can match on, for example `GrantRevoked`.
    pub reason: String,
    /// What happened and what to do about it, for a person.
    #[serde(default)]
    pub message: String,
    /// When the status last changed (RFC 3339).
    pub last_transition_time: String,
    /// The metadata.generation this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Marks a `Vec<Condition>` as a list map keyed by type, as Kubernetes does.
pub fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = <Vec<Condition>>::json_schema(generator);
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["type"]),
    );
    schema
}

/// Any JSON value (a parameter value or default). Kept as written.
pub fn any_value_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "x-kubernetes-preserve-unknown-fields": true })
}

/// An optional map of parameter name to any JSON value.
pub fn value_map_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": { "x-kubernetes-preserve-unknown-fields": true }
    })
}

/// A list of Kubernetes object manifests, kept as written.
pub fn object_list_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": 64,
        "items": { "type": "object", "x-kubernetes-preserve-unknown-fields": true }
    })
}

/// The kind of service an ISV or a distributor publishes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum ServiceType {
    /// Resources are created in the customer's namespace and belong to the customer.
    Private,
    /// Resources are created in a namespace of the publisher and belong to it;
    /// the customer only receives a logon URL.
    FullyManaged,
}

/// A party of the distribution model. A party is a namespace.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Party {
    /// The independent software vendor that publishes the Service.
    #[serde(rename = "ISV")]
    Isv,
    /// The distributor that resells the Service as a DerivedService.
    Distributor,
    /// The customer that buys a ServiceInstance.
    Customer,
}

impl Party {
    /// The party named `s` (as written by `Display`).
    pub fn parse(s: &str) -> Option<Self> {
        [Party::Isv, Party::Distributor, Party::Customer]
            .into_iter()
            .find(|p| p.to_string() == s)
    }
}

impl std::fmt::Display for Party {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Party::Isv => "ISV",
            Party::Distributor => "Distributor",
            Party::Customer => "Customer",
        })
    }
}

/// How service fees are settled between the parties.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Settlement {
    /// Orders are written by the controller (scenario 3 only).
    Online,
    /// The parties settle among themselves; no Order is written.
    Offline,
}

/// Who decides: a person (Manual) or the controller at once (Automatic).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Approval {
    /// The owner edits the decision by hand.
    #[default]
    Manual,
    /// The controller approves at once.
    Automatic,
}

/// A marketplace listing.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Marketplace {
    /// Whether the product is listed (and sold) on the marketplace. For an
    /// ISV's FullyManaged Service this decides between scenarios 3 and 4.
    #[serde(default)]
    pub listed: bool,
    /// Marketplace product code, when listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub product_code: Option<String>,
    /// Price as shown to buyers, free text (for example `99 USD/month`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub price: Option<String>,
}

/// Outputs that an instance shows its buyer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Outputs {
    /// Logon URL template. `$(instance.name)`, `$(instance.namespace)`,
    /// `$(target.namespace)` and `$(params.NAME)` are replaced by their values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub logon_url: Option<String>,
}

/// Common status fields helper: a map of plan name to parameters.
pub type ParameterValues = BTreeMap<String, serde_json::Value>;
