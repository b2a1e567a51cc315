//! Commerce: prices, trials, terms, metering and the usage records the ISV's
//! software reports. Amounts are decimal strings (at most six decimals) so
//! that nothing is lost to floating point; durations are whole days, scaled
//! by the controller's `--commerce-day-seconds` (86400 unless a test or a
//! demo shortens it).

use super::common::*;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A price: a decimal number with at most six decimals, for example `12.5`.
pub const PRICE_RULE: &str = "^[0-9]{1,12}([.][0-9]{1,6})?$";

/// What a plan costs, per billing mode, and its trial.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanPricing {
    /// Price per period of a subscription. Unset: the plan cannot be bought
    /// by subscription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription: Option<SubscriptionPrice>,
    /// Prices per unit of each metering dimension. Unset: the plan cannot be
    /// bought pay-as-you-go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pay_as_you_go: Option<PayAsYouGoPrice>,
    /// A free trial of the plan. Unset: no trial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial: Option<Trial>,
}

/// A subscription's price.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionPrice {
    /// Price of one period, in the Service's currency.
    #[x_kube(validation = Rule::new("self.matches('^[0-9]{1,12}([.][0-9]{1,6})?$')").message("a price is a decimal number with at most 12 digits before the point and 6 after it, for example 12.5"))]
    #[schemars(length(min = 1, max = 20))]
    pub price: String,
    /// Length of one period: `P<n>D`, `P<n>W`, `P<n>M` (30 days) or `P<n>Y`
    /// (365 days). Unset: `P1M`.
    #[serde(default = "default_period")]
    #[x_kube(validation = Rule::new("self.matches('^P[1-9][0-9]{0,2}[DWMY]$')").message("a period is P<n>D, P<n>W, P<n>M or P<n>Y with n from 1 to 999, for example P1M"))]
    #[schemars(length(min = 3, max = 5))]
    pub period: String,
}

fn default_period() -> String {
    "P1M".into()
}

/// Pay-as-you-go prices.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PayAsYouGoPrice {
    /// Price of one unit of each dimension; a dimension without a price is
    /// free.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self.all(p, self.exists_one(q, q.dimension == p.dimension))").message("one price per dimension"))]
    #[schemars(length(max = 16))]
    pub prices: Vec<UnitPrice>,
    /// How often usage is rated and settled: as a subscription's period.
    /// Unset: `P1M`.
    #[serde(default = "default_period")]
    #[x_kube(validation = Rule::new("self.matches('^P[1-9][0-9]{0,2}[DWMY]$')").message("a period is P<n>D, P<n>W, P<n>M or P<n>Y with n from 1 to 999, for example P1M"))]
    #[schemars(length(min = 3, max = 5))]
    pub period: String,
}

/// The price of one unit of a dimension.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnitPrice {
    /// A dimension of the Service's metering.
    #[schemars(length(min = 1, max = 63))]
    pub dimension: String,
    /// Price of one unit.
    #[x_kube(validation = Rule::new("self.matches('^[0-9]{1,12}([.][0-9]{1,6})?$')").message("a price is a decimal number with at most 12 digits before the point and 6 after it, for example 0.02"))]
    #[schemars(length(min = 1, max = 20))]
    pub price: String,
}

/// A free trial.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Trial {
    /// Length of the trial in days, at most 30.
    #[schemars(range(min = 1, max = 30))]
    pub duration_days: u32,
    /// What happens when the trial ends unconverted: Suspend (default) or
    /// Delete (the instance's resources are removed after `retentionDays`).
    #[serde(default)]
    pub on_expiry: ExpiryAction,
    /// Days a suspended instance's resources are kept before Delete removes
    /// them. Unset: 7.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 365))]
    pub retention_days: Option<u32>,
}

/// What happens to an instance whose term ended.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum ExpiryAction {
    /// Fully managed: workloads scaled to zero, the logon URL withdrawn.
    /// Private: the license says expired. Renewing resumes it.
    #[default]
    Suspend,
    /// As Suspend, then the resources are removed after the retention days
    /// (the ServiceInstance stays, Expired).
    Delete,
}

/// A Service's commercial settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommercePolicy {
    /// Currency of every price of the Service and of its resellers. Unset: USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[A-Z]{3}$')").message("a currency is a three-letter ISO 4217 code, for example USD"))]
    #[schemars(length(min = 3, max = 3))]
    pub currency: Option<String>,
    /// What the software reports usage of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(d, self.exists_one(e, e.name == d.name))").message("dimension names must be unique"))]
    #[schemars(length(max = 16))]
    pub dimensions: Vec<MeteringDimension>,
    /// How late a usage record may be created after its window ended, in
    /// seconds (scaled like days). Unset: 21600 (6 hours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 604800))]
    pub late_window_seconds: Option<u32>,
    /// Days before the end of a term at which the instance says Expiring
    /// (an event each, and the Expiring condition from the first). Unset: 7
    /// and 1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub expiry_notice_days: Vec<u32>,
}

/// One dimension usage is reported in.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeteringDimension {
    /// Name, for example `VirtualCpu` or `Storage`.
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z][A-Za-z0-9]*$')").message("dimension names start with a letter and contain only letters and digits"))]
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Unit, for example `vCPU-hour` or `GiB-month`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub unit: Option<String>,
    /// How the records of one period add up.
    #[serde(default)]
    pub aggregation: Aggregation,
}

/// How a period's usage records of a dimension add up.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum Aggregation {
    /// The sum of the quantities (requests, vCPU-hours).
    #[default]
    Sum,
    /// The largest quantity (peak storage, seats).
    Max,
}

/// A distributor's prices for one plan of its product.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanPriceOverride {
    /// The plan.
    #[schemars(length(min = 1, max = 63))]
    pub plan: String,
    /// The distributor's subscription price per period (the period is the
    /// ISV's). Unset: the ISV's price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]{1,12}([.][0-9]{1,6})?$')").message("a price is a decimal number with at most 12 digits before the point and 6 after it, for example 12.5"))]
    #[schemars(length(min = 1, max = 20))]
    pub subscription: Option<String>,
    /// The distributor's unit prices; a dimension not listed keeps the ISV's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub pay_as_you_go: Vec<UnitPrice>,
    /// A shorter trial, in days (never longer than the ISV's; 0: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 30))]
    pub trial_days: Option<u32>,
}

/// How a customer pays for an instance.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceBilling {
    /// Subscription (a price per period, paid ahead) or PayAsYouGo (usage,
    /// rated per period).
    pub mode: BillingMode,
    /// Start with the plan's free trial. Setting it to false later converts
    /// the trial to a paid term in place (no redeploy).
    #[serde(default)]
    pub trial: bool,
    /// Periods bought (Subscription). Raising it renews by hand. Unset: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1200))]
    pub periods: Option<u32>,
    /// Renew by one period at each end of term (Subscription).
    #[serde(default)]
    pub auto_renew: bool,
}

impl InstanceBilling {
    /// Periods bought by hand.
    pub fn periods(&self) -> u32 {
        self.periods.unwrap_or(1).max(1)
    }
}

/// Billing mode of an instance.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum BillingMode {
    /// A price per period.
    Subscription,
    /// Usage rated at unit prices.
    PayAsYouGo,
}

/// Business state of an instance, apart from its deploy phase.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum BizStatus {
    /// Within its term.
    Normal,
    /// At the end of its term, renewing.
    Renewing,
    /// Renewal failed (the product can no longer be sold); expires at the end of the term.
    RenewFailed,
    /// Within the notice before the end of its term.
    Expiring,
    /// The term ended (a private instance's license says so).
    Expired,
    /// The term ended; a fully managed instance's workloads are scaled to zero.
    Suspended,
}

impl BizStatus {
    /// The name as written.
    pub fn as_str(&self) -> &'static str {
        match self {
            BizStatus::Normal => "Normal",
            BizStatus::Renewing => "Renewing",
            BizStatus::RenewFailed => "RenewFailed",
            BizStatus::Expiring => "Expiring",
            BizStatus::Expired => "Expired",
            BizStatus::Suspended => "Suspended",
        }
    }
}

/// Commercial state of an instance.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommerceStatus {
    /// Billing mode in force.
    pub mode: BillingMode,
    /// Whether the current term is the free trial.
    pub trial: bool,
    /// Start of the instance's term (RFC 3339; the instance's creation).
    pub start_time: String,
    /// End of the term (RFC 3339). Pay-as-you-go: unset (no end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_time: Option<String>,
    /// Business state.
    pub biz_status: BizStatus,
    /// Currency of every amount.
    pub currency: String,
    /// Price of one period (Subscription), at the customer's tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<String>,
    /// Length of a period.
    pub period: String,
    /// What the customer was charged in all (terms and rated usage).
    pub amount: String,
    /// The controller's ledger: what was decided, sealed by its key.
    pub ledger: Ledger,
    /// Statements per term and rated usage period, newest last (at most 24):
    /// the Orders of online settlement, or what the parties settle
    /// themselves offline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statements: Vec<Statement>,
    /// Name of the license Secret in the target namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_secret: Option<String>,
}

/// What the controller decided about an instance's terms. It only grows, and
/// it is signed with the controller's license key (over the instance's UID):
/// a ledger that does not verify is not believed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ledger {
    /// The free trial began (the customer's one trial of the product).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trial_started: bool,
    /// When the paid term began (the trial's end or its conversion), RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paid_from: Option<String>,
    /// Periods renewed automatically beyond those bought.
    #[serde(default)]
    pub renewed: u32,
    /// Terms whose statements (and Orders) are written.
    #[serde(default)]
    pub terms_settled: u32,
    /// Usage periods rated and settled.
    #[serde(default)]
    pub usage_periods_settled: u32,
    /// Signature (ed25519, base64) over the fields above and the instance UID.
    #[serde(default)]
    pub seal: String,
}

/// One settled statement.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Statement {
    /// Term or Usage.
    pub kind: OrderKind,
    /// Which term or usage period (1 first).
    pub index: u32,
    /// Start of the period (RFC 3339).
    pub start: String,
    /// End of the period (RFC 3339).
    pub end: String,
    /// What the customer owes its seller.
    pub amount: String,
    /// What the distributor owes the ISV (resale), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resale_amount: Option<String>,
    /// Usage rated, per dimension (usage periods).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usage: Vec<UsageTotal>,
    /// Orders written for it (online settlement), as namespace/name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orders: Vec<String>,
}

/// Usage of one dimension in a period.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageTotal {
    /// The dimension.
    pub dimension: String,
    /// Quantity, aggregated per the dimension.
    pub quantity: i64,
    /// Amount at the customer's tier.
    pub amount: String,
}

/// What an Order records.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum OrderKind {
    /// The sale of an instance.
    #[default]
    Sale,
    /// A term of a subscription (or a trial, at no charge).
    Term,
    /// Rated usage of one period.
    Usage,
}

/// Usage the ISV's software reports for its instance.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "computenest.dev",
    doc = "Usage of one metering dimension in one time window, reported by an instance's software in its target namespace. Immutable.",
    version = "v1alpha1",
    kind = "UsageRecord",
    plural = "usagerecords",
    singular = "usagerecord",
    shortname = "cnusage",
    category = "computenest",
    namespaced,
    status = "UsageRecordStatus",
    printcolumn(name = "Instance", type_ = "string", json_path = ".spec.instance"),
    printcolumn(name = "Dimension", type_ = "string", json_path = ".spec.dimension"),
    printcolumn(name = "Quantity", type_ = "integer", json_path = ".spec.quantity"),
    printcolumn(name = "Result", type_ = "string", json_path = ".status.result"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("a usage record cannot be changed once written; write a record for another window"))]
#[x_kube(validation = Rule::new("timestamp(self.windowStart) < timestamp(self.windowEnd)").message("windowStart must be before windowEnd"))]
#[serde(rename_all = "camelCase")]
pub struct UsageRecordSpec {
    /// UID of the ServiceInstance the usage is of (the software reads it
    /// from its license Secret).
    #[schemars(length(min = 1, max = 64))]
    pub instance: String,
    /// Name of that ServiceInstance. Required of every writer but a cluster
    /// administrator by the admission policy `computenest-usage-records`:
    /// the record must be created by the ServiceAccount `<instanceName>-metering`
    /// of its namespace, so that one instance's software cannot report for
    /// another instance in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 244))]
    pub instance_name: Option<String>,
    /// A dimension of the Service's metering.
    #[schemars(length(min = 1, max = 63))]
    pub dimension: String,
    /// Quantity used, a whole number of the dimension's unit.
    #[schemars(range(min = 0, max = 1_000_000_000_000i64))]
    pub quantity: i64,
    /// Start of the window (RFC 3339).
    #[schemars(schema_with = "date_time_schema")]
    pub window_start: String,
    /// End of the window (RFC 3339); not in the future.
    #[schemars(schema_with = "date_time_schema")]
    pub window_end: String,
}

fn date_time_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "format": "date-time", "maxLength": 64 })
}

/// What became of a usage record.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageRecordStatus {
    /// The metadata.generation last decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Accepted, Duplicate (the same instance, dimension and window was
    /// accepted before: not counted again) or Rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<UsageResult>,
    /// Which usage period it counts in (1 first), when accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<u32>,
    /// Ready is True once accepted; False with the reason otherwise.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// The decision on a usage record.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum UsageResult {
    /// Counted in its period.
    Accepted,
    /// The same window was accepted in another record; not counted.
    Duplicate,
    /// Refused; the Ready condition says why.
    Rejected,
}
