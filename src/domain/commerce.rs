//! Pure commerce rules: money, periods, the terms of an instance (trial,
//! subscription, renewal, expiry), the decision on a usage record and the
//! rating of a period's usage. No API calls; the instance controller feeds
//! these from the cluster and writes what they decide.

use crate::api::{
    Aggregation, BillingMode, BizStatus, CommercePolicy, ExpiryAction, InstanceBilling, Ledger,
    OrderKind, PlanPriceOverride, PlanPricing, UsageRecordSpec, UsageResult, UsageTotal,
};
use jiff::{SignedDuration, Timestamp};
use std::collections::BTreeMap;
use std::time::Duration;

/// An amount in millionths of the currency's unit: exact, no floating point.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Money(pub i128);

impl Money {
    /// Parses a price as the CRD allows it (`12`, `12.5`, `0.000001`).
    pub fn parse(s: &str) -> Result<Money, String> {
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole)
            || whole.len() > 12
            || (!frac.is_empty() && (!digits(frac) || frac.len() > 6))
            || s.ends_with('.')
        {
            return Err(format!(
                "{s:?} is not a price (a decimal number with at most 12 digits before the point and 6 after it)"
            ));
        }
        let w: i128 = whole.parse().map_err(|_| format!("{s:?} is not a price"))?;
        let f: i128 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<6}")
                .parse()
                .map_err(|_| format!("{s:?} is not a price"))?
        };
        Ok(Money(w * 1_000_000 + f))
    }

    /// `quantity` units at this price (saturating: a quantity is at most 10^12
    /// by the CRD, a price at most 10^12, so the product fits an i128).
    pub fn times(self, quantity: i64) -> Money {
        Money(self.0.saturating_mul(i128::from(quantity)))
    }
}

impl std::ops::Add for Money {
    type Output = Money;
    fn add(self, o: Money) -> Money {
        Money(self.0.saturating_add(o.0))
    }
}

impl std::fmt::Display for Money {
    /// The shortest exact decimal: `12.5`, `0`, `0.000001`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let a = self.0.unsigned_abs();
        let (w, r) = (a / 1_000_000, a % 1_000_000);
        if r == 0 {
            write!(f, "{sign}{w}")
        } else {
            let frac = format!("{r:06}");
            write!(f, "{sign}{w}.{}", frac.trim_end_matches('0'))
        }
    }
}

/// Days in a period as written (`P1M` = 30 days, `P1Y` = 365).
pub fn period_days(p: &str) -> Result<u32, String> {
    let bad = || format!("{p:?} is not a period (P<n>D, P<n>W, P<n>M or P<n>Y)");
    let body = p.strip_prefix('P').ok_or_else(bad)?;
    let unit = body.chars().last().ok_or_else(bad)?;
    let n: u32 = body[..body.len() - 1].parse().map_err(|_| bad())?;
    let per = match unit {
        'D' => 1,
        'W' => 7,
        'M' => 30,
        'Y' => 365,
        _ => return Err(bad()),
    };
    if n == 0 || n > 999 {
        return Err(bad());
    }
    Ok(n * per)
}

/// How long a commercial day lasts: 86400 s, or less in tests and demos.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// Length of one day.
    pub day: Duration,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            day: Duration::from_secs(86_400),
        }
    }
}

impl Clock {
    /// `n` days.
    pub fn days(&self, n: u32) -> SignedDuration {
        SignedDuration::try_from(self.day * n).unwrap_or(SignedDuration::MAX)
    }
    /// `s` seconds of commercial time (a late window), scaled like days.
    pub fn seconds(&self, s: u32) -> SignedDuration {
        let scaled = self.day.as_secs_f64() * f64::from(s) / 86_400.0;
        SignedDuration::try_from_secs_f64(scaled).unwrap_or(SignedDuration::MAX)
    }
}

/// The prices one buyer pays (one tier of the chain).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tier {
    /// Price of one subscription period.
    pub subscription: Option<Money>,
    /// Price of one unit per dimension.
    pub units: BTreeMap<String, Money>,
    /// Trial length in days (0: none).
    pub trial_days: u32,
}

/// What a plan costs along the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pricing {
    /// Currency of every amount.
    pub currency: String,
    /// The customer's prices (the distributor's where it resells).
    pub customer: Tier,
    /// The ISV's prices to the distributor (resales only).
    pub resale: Option<Tier>,
    /// Length of a subscription period, in days.
    pub subscription_days: Option<u32>,
    /// Length of a usage period, in days.
    pub usage_days: Option<u32>,
    /// What happens when an unconverted trial ends.
    pub on_trial_expiry: ExpiryAction,
    /// Days a suspended trial is kept before Delete removes it.
    pub retention_days: u32,
    /// Dimensions usage may be reported in, with their aggregation.
    pub dimensions: BTreeMap<String, Aggregation>,
    /// Seconds (scaled) a record may be created after its window ended.
    pub late_window_seconds: u32,
    /// Days before expiry at which notices go out, largest first.
    pub notice_days: Vec<u32>,
}

/// Why an instance's billing cannot be honoured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Condition reason.
    pub reason: &'static str,
    /// What to do.
    pub message: String,
}

fn refuse(reason: &'static str, message: String) -> Refusal {
    Refusal { reason, message }
}

fn tier(p: &PlanPricing) -> Result<Tier, Refusal> {
    let money = |s: &str| {
        Money::parse(s).map_err(|e| {
            refuse(
                "InvalidPrice",
                format!("{e}; the seller must fix the plan's pricing"),
            )
        })
    };
    Ok(Tier {
        subscription: p
            .subscription
            .as_ref()
            .map(|s| money(&s.price))
            .transpose()?,
        units: p
            .pay_as_you_go
            .iter()
            .flat_map(|g| &g.prices)
            .map(|u| Ok((u.dimension.clone(), money(&u.price)?)))
            .collect::<Result<_, Refusal>>()?,
        trial_days: p.trial.as_ref().map_or(0, |t| t.duration_days),
    })
}

/// The prices of `plan` for its buyer: the ISV's plan pricing, and where a
/// distributor resells it, the distributor's override (which may shorten the
/// trial but never lengthen it, and may only price declared dimensions).
pub fn pricing(
    policy: Option<&CommercePolicy>,
    plan: &str,
    isv: Option<&PlanPricing>,
    reseller: Option<Option<&PlanPriceOverride>>,
) -> Result<Option<Pricing>, Refusal> {
    let Some(isv) = isv else {
        return Ok(None);
    };
    let policy = policy.cloned().unwrap_or_default();
    let dimensions: BTreeMap<String, Aggregation> = policy
        .dimensions
        .iter()
        .map(|d| (d.name.clone(), d.aggregation))
        .collect();
    let isv_tier = tier(isv)?;
    for d in isv_tier.units.keys() {
        if !dimensions.contains_key(d) {
            return Err(refuse(
                "InvalidPrice",
                format!(
                    "plan {plan:?} prices dimension {d:?}, which the Service's commerce.dimensions does not declare; the seller must declare it or remove the price"
                ),
            ));
        }
    }
    let (customer, resale) = match reseller {
        None => (isv_tier, None),
        Some(over) => {
            let mut own = isv_tier.clone();
            if let Some(o) = over {
                if let Some(p) = &o.subscription {
                    own.subscription = Some(Money::parse(p).map_err(|e| {
                        refuse(
                            "InvalidPrice",
                            format!("{e}; the distributor must fix overrides.prices"),
                        )
                    })?);
                }
                for u in &o.pay_as_you_go {
                    if !dimensions.contains_key(&u.dimension) {
                        return Err(refuse(
                            "InvalidPrice",
                            format!(
                                "overrides.prices of plan {plan:?} prices dimension {:?}, which the Service does not meter; the distributor must remove it",
                                u.dimension
                            ),
                        ));
                    }
                    own.units.insert(
                        u.dimension.clone(),
                        Money::parse(&u.price).map_err(|e| {
                            refuse(
                                "InvalidPrice",
                                format!("{e}; the distributor must fix overrides.prices"),
                            )
                        })?,
                    );
                }
                if let Some(days) = o.trial_days {
                    if days > isv_tier.trial_days {
                        return Err(refuse(
                            "TrialTooLong",
                            format!(
                                "the distributor's trial of plan {plan:?} is {days} days, longer than the ISV's {} days; a reseller may shorten a trial, never lengthen it",
                                isv_tier.trial_days
                            ),
                        ));
                    }
                    own.trial_days = days;
                }
            }
            (own, Some(isv_tier))
        }
    };
    let days = |p: &str| {
        period_days(p).map_err(|e| {
            refuse(
                "InvalidPrice",
                format!("{e}; the seller must fix the plan's pricing"),
            )
        })
    };
    let mut notice_days = if policy.expiry_notice_days.is_empty() {
        vec![7, 1]
    } else {
        policy.expiry_notice_days.clone()
    };
    notice_days.sort_unstable_by(|a, b| b.cmp(a));
    notice_days.dedup();
    Ok(Some(Pricing {
        currency: policy.currency.clone().unwrap_or_else(|| "USD".into()),
        customer,
        resale,
        subscription_days: isv
            .subscription
            .as_ref()
            .map(|s| days(&s.period))
            .transpose()?,
        usage_days: isv
            .pay_as_you_go
            .as_ref()
            .map(|s| days(&s.period))
            .transpose()?,
        on_trial_expiry: isv.trial.as_ref().map(|t| t.on_expiry).unwrap_or_default(),
        retention_days: isv
            .trial
            .as_ref()
            .and_then(|t| t.retention_days)
            .unwrap_or(7),
        dimensions,
        late_window_seconds: policy.late_window_seconds.unwrap_or(21_600),
        notice_days,
    }))
}

/// One term or usage period to settle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Period {
    /// Term or Usage.
    pub kind: OrderKind,
    /// 1 first.
    pub index: u32,
    /// Start.
    pub start: Timestamp,
    /// End.
    pub end: Timestamp,
    /// The free trial.
    pub trial: bool,
}

/// What the terms come to now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Terms {
    /// In the free trial.
    pub trial: bool,
    /// Start of the instance's terms.
    pub start: Timestamp,
    /// End of the current term (None: pay-as-you-go, no end).
    pub expire: Option<Timestamp>,
    /// Business state.
    pub biz: BizStatus,
    /// The ledger after this decision (unsealed).
    pub ledger: Ledger,
    /// Workloads must be scaled to zero (a fully managed instance whose term ended).
    pub suspend: bool,
    /// The term ended and its resources are to be removed (trial Delete).
    pub remove: bool,
    /// The next moment the terms change by themselves.
    pub wake: Option<Timestamp>,
    /// Terms begun so far (each settled once, at its start).
    pub terms: Vec<Period>,
    /// Renewals decided by this evaluation (periods).
    pub renewed_now: u32,
    /// The notice just passed (days before expiry), if any.
    pub notice: Option<u32>,
}

/// Inputs of [`terms`] that come from the cluster.
#[derive(Clone, Debug)]
pub struct TermInputs<'a> {
    /// Creation of the ServiceInstance (set by the API server).
    pub created: Timestamp,
    /// What the customer asked for.
    pub billing: &'a InstanceBilling,
    /// The plan's prices.
    pub pricing: &'a Pricing,
    /// The verified ledger (default when there is none or it does not verify).
    pub ledger: &'a Ledger,
    /// A trial is allowed (none used before in the namespace for the product).
    pub trial_allowed: bool,
    /// The product may still be sold (a renewal is a sale).
    pub renewable: bool,
    /// Fully managed (suspension scales to zero).
    pub managed: bool,
    /// Now.
    pub now: Timestamp,
    /// The commercial clock.
    pub clock: Clock,
}

fn ts(t: Timestamp) -> String {
    t.to_string()
}

/// Decides the instance's terms now. Monotone: the ledger it returns never
/// holds less than the one it was given.
pub fn terms(i: &TermInputs<'_>) -> Result<Terms, Refusal> {
    let p = i.pricing;
    let mut ledger = i.ledger.clone();
    let start = i.created;
    let mode = i.billing.mode;
    let period_days = match mode {
        BillingMode::Subscription => p
            .subscription_days
            .filter(|_| p.customer.subscription.is_some())
            .ok_or_else(|| {
                refuse(
                    "BillingModeNotOffered",
                    "the plan has no subscription price; choose PayAsYouGo or another plan".into(),
                )
            })?,
        BillingMode::PayAsYouGo => p.usage_days.ok_or_else(|| {
            refuse(
                "BillingModeNotOffered",
                "the plan has no pay-as-you-go prices; choose Subscription or another plan".into(),
            )
        })?,
    };
    let period = i.clock.days(period_days);
    // The trial: asked for, offered, and not used before (unless this
    // instance is the one that used it).
    let trial_len = p.customer.trial_days;
    let in_trial = i.billing.trial && ledger.paid_from.is_none();
    if in_trial && trial_len == 0 {
        return Err(refuse(
            "TrialNotOffered",
            "the plan offers no trial; set billing.trial to false".into(),
        ));
    }
    if in_trial && !i.trial_allowed {
        return Err(refuse("TrialAlreadyUsed", "this namespace already had the trial of this product; set billing.trial to false to buy it".into()));
    }
    let trial_end = start + i.clock.days(trial_len);
    if in_trial {
        ledger.trial_started = true;
    }
    let mut terms_list = Vec::new();
    if ledger.trial_started {
        terms_list.push(Period {
            kind: OrderKind::Term,
            index: 1,
            start,
            end: trial_end,
            trial: true,
        });
    }
    let mut renewed_now = 0;
    let (expire, biz, suspend, remove, trial) = if in_trial {
        let ended = i.now >= trial_end;
        let remove = ended
            && p.on_trial_expiry == ExpiryAction::Delete
            && i.now >= trial_end + i.clock.days(p.retention_days);
        let biz = if ended {
            if i.managed {
                BizStatus::Suspended
            } else {
                BizStatus::Expired
            }
        } else if notice_passed(&p.notice_days, trial_end, i.now, i.clock).is_some() {
            BizStatus::Expiring
        } else {
            BizStatus::Normal
        };
        (Some(trial_end), biz, ended && i.managed, remove, true)
    } else {
        // Paid: from the start, the trial's end, or the conversion.
        let paid_from = match ledger
            .paid_from
            .as_deref()
            .and_then(|s| s.parse::<Timestamp>().ok())
        {
            Some(t) => t,
            None => {
                // A converted trial pays from its end (the customer keeps
                // the trial's days), or from the conversion once it ended.
                let t = if ledger.trial_started {
                    trial_end.max(i.now)
                } else {
                    start
                };
                ledger.paid_from = Some(ts(t));
                t
            }
        };
        let first = terms_list.len() as u32;
        match mode {
            BillingMode::PayAsYouGo => (None, BizStatus::Normal, false, false, false),
            BillingMode::Subscription => {
                let bought = i.billing.periods();
                let mut total = bought.saturating_add(ledger.renewed);
                let end_of = |n: u32| paid_from + period * n as i32;
                if i.billing.auto_renew && i.renewable {
                    while i.now >= end_of(total) && total < 100_000 {
                        ledger.renewed += 1;
                        renewed_now += 1;
                        total += 1;
                    }
                }
                let expire = end_of(total);
                for n in 0..total {
                    let s = end_of(n);
                    if s <= i.now {
                        terms_list.push(Period {
                            kind: OrderKind::Term,
                            index: first + n + 1,
                            start: s,
                            end: end_of(n + 1),
                            trial: false,
                        });
                    }
                }
                let ended = i.now >= expire;
                let noticed = notice_passed(&p.notice_days, expire, i.now, i.clock).is_some();
                let biz = if ended {
                    if i.managed {
                        BizStatus::Suspended
                    } else {
                        BizStatus::Expired
                    }
                } else if noticed && i.billing.auto_renew && i.renewable {
                    BizStatus::Renewing
                } else if noticed && i.billing.auto_renew {
                    BizStatus::RenewFailed
                } else if noticed {
                    BizStatus::Expiring
                } else {
                    BizStatus::Normal
                };
                (Some(expire), biz, ended && i.managed, false, false)
            }
        }
    };
    let notice = expire.and_then(|e| notice_passed(&p.notice_days, e, i.now, i.clock));
    let wake = expire.and_then(|e| {
        let mut at: Vec<Timestamp> = p.notice_days.iter().map(|d| e - i.clock.days(*d)).collect();
        at.push(e);
        if trial && p.on_trial_expiry == ExpiryAction::Delete {
            at.push(e + i.clock.days(p.retention_days));
        }
        at.into_iter().filter(|t| *t > i.now).min()
    });
    Ok(Terms {
        trial,
        start,
        expire,
        biz,
        ledger,
        suspend,
        remove,
        wake,
        terms: terms_list,
        renewed_now,
        notice,
    })
}

/// The largest notice (days before `expire`) already passed, if any.
fn notice_passed(
    notice_days: &[u32],
    expire: Timestamp,
    now: Timestamp,
    clock: Clock,
) -> Option<u32> {
    if now >= expire {
        return None;
    }
    notice_days
        .iter()
        .copied()
        .filter(|d| now >= expire - clock.days(*d))
        .min()
}

/// The usage periods of a pay-as-you-go instance: period `n` (1 first).
pub fn usage_period(start: Timestamp, days: u32, clock: Clock, n: u32) -> (Timestamp, Timestamp) {
    let len = clock.days(days);
    (start + len * (n as i32 - 1), start + len * n as i32)
}

/// The usage period a moment falls in (1 first; 0 before the start).
pub fn usage_period_of(start: Timestamp, days: u32, clock: Clock, t: Timestamp) -> u32 {
    if t < start {
        return 0;
    }
    let len = clock.days(days).as_secs_f64().max(f64::MIN_POSITIVE);
    let since = t.duration_since(start).as_secs_f64();
    (since / len).floor() as u32 + 1
}

/// A usage record as the decision needs it.
#[derive(Clone, Debug)]
pub struct RecordView<'a> {
    /// The record's spec.
    pub spec: &'a UsageRecordSpec,
    /// When the API server created it.
    pub created: Timestamp,
}

/// An accepted record, for overlap and duplicate checks and for rating.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// Dimension.
    pub dimension: String,
    /// Window start.
    pub start: Timestamp,
    /// Window end.
    pub end: Timestamp,
    /// Quantity.
    pub quantity: i64,
}

/// The decision on one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Accepted, Duplicate or Rejected.
    pub result: UsageResult,
    /// Condition reason.
    pub reason: &'static str,
    /// For a person.
    pub message: String,
    /// The usage period it counts in (accepted only).
    pub period: Option<u32>,
}

/// How far in the future a window may end (clock skew between the
/// software's node and the API server), in real time.
pub const FUTURE_SKEW: SignedDuration = SignedDuration::from_secs(60);

/// Whether a record names another instance than the one with this UID and
/// name. The admission policy proves that the writer is the metering
/// account of the instance the record names by name; this ties that name to
/// the UID, so that a sibling's software cannot report under its own name
/// for another instance's UID.
pub fn names_another_instance(spec: &UsageRecordSpec, uid: &str, name: &str) -> bool {
    spec.instance != uid || spec.instance_name.as_deref().is_some_and(|n| n != name)
}

/// Decides a usage record of the instance `(uid, name)` against those
/// accepted before. `settled`: usage periods already rated (closed to new
/// records).
#[allow(clippy::too_many_arguments)]
pub fn decide(
    r: &RecordView<'_>,
    (uid, name): (&str, &str),
    instance_start: Timestamp,
    pricing: &Pricing,
    clock: Clock,
    settled: u32,
    accepted: &[Accepted],
) -> Decision {
    let reject = |reason: &'static str, message: String| Decision {
        result: UsageResult::Rejected,
        reason,
        message,
        period: None,
    };
    let s = r.spec;
    if names_another_instance(s, uid, name) {
        return reject(
            "NotThisInstance",
            format!(
                "the record names instance {:?} ({:?}), but it was decided for instance {uid} ({name:?}); software reports only for its own instance, by the UID and name in its license",
                s.instance,
                s.instance_name.as_deref().unwrap_or_default(),
            ),
        );
    }
    if s.quantity < 0 {
        return reject(
            "NegativeQuantity",
            format!("quantity {} is negative", s.quantity),
        );
    }
    if !pricing.dimensions.contains_key(&s.dimension) {
        let known: Vec<&str> = pricing.dimensions.keys().map(String::as_str).collect();
        return reject(
            "UnknownDimension",
            format!(
                "the product does not meter {:?} (it meters {known:?})",
                s.dimension
            ),
        );
    }
    let (Ok(start), Ok(end)) = (
        s.window_start.parse::<Timestamp>(),
        s.window_end.parse::<Timestamp>(),
    ) else {
        return reject(
            "InvalidWindow",
            "windowStart and windowEnd must be RFC 3339 times".into(),
        );
    };
    if start >= end {
        return reject(
            "InvalidWindow",
            "windowStart must be before windowEnd".into(),
        );
    }
    if end > r.created + FUTURE_SKEW {
        return reject(
            "FutureWindow",
            format!(
                "the window ends at {end}, after the record was written ({}); report usage once it happened",
                r.created
            ),
        );
    }
    if start < instance_start {
        return reject(
            "BeforeStart",
            format!("the window starts at {start}, before the instance existed ({instance_start})"),
        );
    }
    let late = clock.seconds(pricing.late_window_seconds);
    if r.created > end + late {
        return reject(
            "Late",
            format!(
                "the record was written at {}, later than the late window ({} s) after its window ended at {end}",
                r.created, pricing.late_window_seconds
            ),
        );
    }
    let Some(days) = pricing.usage_days.or(pricing.subscription_days) else {
        return reject("NotMetered", "the plan has no usage period".into());
    };
    let period = usage_period_of(instance_start, days, clock, start);
    let (_, period_end) = usage_period(instance_start, days, clock, period);
    if end > period_end {
        return reject(
            "SpansPeriods",
            format!(
                "the window ends at {end}, after the usage period it starts in ends ({period_end}); split it at the period's end"
            ),
        );
    }
    if period <= settled {
        return reject(
            "PeriodClosed",
            format!("usage period {period} is already rated and settled"),
        );
    }
    for a in accepted.iter().filter(|a| a.dimension == s.dimension) {
        if a.start == start && a.end == end {
            return Decision {
                result: UsageResult::Duplicate,
                reason: "Duplicate",
                message: format!(
                    "usage of {} for {start}..{end} was accepted before; not counted again",
                    s.dimension
                ),
                period: None,
            };
        }
        if a.start < end && start < a.end {
            return reject(
                "Overlap",
                format!(
                    "the window {start}..{end} overlaps an accepted window {}..{} of {}",
                    a.start, a.end, s.dimension
                ),
            );
        }
    }
    Decision {
        result: UsageResult::Accepted,
        reason: "Accepted",
        message: format!("counted in usage period {period}"),
        period: Some(period),
    }
}

/// A period's usage per dimension and its amount at `prices`; usage within
/// `free_until` (the trial) is rated at zero.
pub fn rate(
    records: &[Accepted],
    pricing: &Pricing,
    prices: &Tier,
    free_until: Option<Timestamp>,
) -> (Vec<UsageTotal>, Money) {
    let mut totals: BTreeMap<&str, (i64, i64)> = BTreeMap::new(); // (all, paid)
    for r in records {
        let free = free_until.is_some_and(|f| r.start < f);
        let e = totals.entry(r.dimension.as_str()).or_default();
        match pricing
            .dimensions
            .get(&r.dimension)
            .copied()
            .unwrap_or_default()
        {
            Aggregation::Sum => {
                e.0 = e.0.saturating_add(r.quantity);
                if !free {
                    e.1 = e.1.saturating_add(r.quantity);
                }
            }
            Aggregation::Max => {
                e.0 = e.0.max(r.quantity);
                if !free {
                    e.1 = e.1.max(r.quantity);
                }
            }
        }
    }
    let mut sum = Money::default();
    let out = totals
        .into_iter()
        .map(|(d, (all, paid))| {
            let amount = prices.units.get(d).copied().unwrap_or_default().times(paid);
            sum = sum + amount;
            UsageTotal {
                dimension: d.to_string(),
                quantity: all,
                amount: amount.to_string(),
            }
        })
        .collect();
    (out, sum)
}

/// The amount of one term at `prices`.
pub fn term_amount(p: &Period, prices: &Tier) -> Money {
    if p.trial {
        Money::default()
    } else {
        prices.subscription.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
