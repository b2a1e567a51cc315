//! Order: an immutable sales record written by the controller.

use super::commerce::*;
use super::common::*;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A sale, written by the controller into the seller's namespace when an
/// instance is bought with online settlement (scenario 3). Immutable once
/// written; its name is derived from the instance, so a retry never writes a
/// second one. Orders are records: they outlive the instance.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "computenest.dev",
    doc = "An immutable sales record written by the controller into the seller's namespace (online settlement only).",
    version = "v1alpha1",
    kind = "Order",
    plural = "orders",
    singular = "order",
    shortname = "cnorder",
    category = "computenest",
    namespaced,
    status = "OrderStatus",
    printcolumn(
        name = "Seller",
        type_ = "string",
        json_path = ".spec.seller.namespace"
    ),
    printcolumn(name = "Buyer", type_ = "string", json_path = ".spec.buyer.namespace"),
    printcolumn(name = "Item", type_ = "string", json_path = ".spec.item.name"),
    printcolumn(name = "Instance", type_ = "string", json_path = ".spec.instance.name"),
    printcolumn(name = "Settlement", type_ = "string", json_path = ".spec.settlement"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("an Order is a record and cannot be changed once written"))]
#[serde(rename_all = "camelCase")]
pub struct OrderSpec {
    /// Who sells.
    pub seller: PartyRef,
    /// Who buys.
    pub buyer: PartyRef,
    /// What was sold.
    pub item: ItemRef,
    /// The instance this sale is for.
    pub instance: InstanceRef,
    /// Always Online: offline settlement writes no Order.
    pub settlement: Settlement,
    /// Price as listed when sold, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub price: Option<String>,
    /// What is sold: the instance (Sale), a term of it, or a period's usage.
    #[serde(default, skip_serializing_if = "is_sale")]
    pub kind: OrderKind,
    /// The term or usage period, with its amount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<OrderPeriod>,
}

fn is_sale(k: &OrderKind) -> bool {
    *k == OrderKind::Sale
}

/// The term or usage period an Order is for.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderPeriod {
    /// Which term or usage period of the instance (1 first).
    pub index: u32,
    /// Start (RFC 3339).
    pub start: String,
    /// End (RFC 3339).
    pub end: String,
    /// Whether it is the free trial.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trial: bool,
    /// Amount the buyer owes the seller.
    pub amount: String,
    /// Currency of the amount.
    pub currency: String,
    /// Usage rated, per dimension (Usage orders).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub usage: Vec<UsageTotal>,
}

/// A party, by role and namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartyRef {
    /// Role of the party in this sale.
    pub party: Party,
    /// The party's namespace.
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
}

/// The product sold.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemRef {
    /// Service or DerivedService.
    pub kind: String,
    /// Namespace of the product.
    pub namespace: String,
    /// Name of the product.
    pub name: String,
    /// Marketplace product code, if listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_code: Option<String>,
}

/// The instance a sale is for.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceRef {
    /// Namespace of the ServiceInstance (the customer).
    pub namespace: String,
    /// Name of the ServiceInstance.
    pub name: String,
    /// UID of the ServiceInstance.
    pub uid: String,
}

/// Observed state of an Order.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderStatus {
    /// The metadata.generation last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready is True once the order is recorded.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}
