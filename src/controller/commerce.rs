//! The commercial side of an instance's reconcile: its terms (trial,
//! subscription, renewal, expiry), its license, its metering account, the
//! decisions on its usage records, and the statements and Orders of each
//! term and usage period. The rules are pure (domain::commerce); this module
//! feeds them from the cluster and writes what they decide.
//!
//! What the controller decided is kept in the instance's status as a ledger
//! signed with the license key over the instance's UID: a ledger that does
//! not verify (forged, copied from another instance) is not believed.

use super::{Context, Error, is_conflict, ns_of};
use crate::api::{
    BillingMode, BizStatus, CommerceStatus, FIELD_MANAGER, Ledger, OrderKind, OrderPeriod,
    ServiceInstance, Settlement, Statement, UsageRecord, UsageRecordStatus, UsageResult,
};
use crate::domain::commerce::{self as rules, Accepted, Money, Pricing, Refusal, Terms};
use crate::domain::naming::short_hash;
use crate::domain::provision::Product;
use base64::Engine;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Name of the Secret (in the controller's namespace) holding the license key.
pub const KEY_SECRET: &str = "computenest-license-key";
/// Name of the ConfigMap (in the controller's namespace) publishing the
/// public key, readable by every party.
pub const PUBLIC_KEY_CONFIGMAP: &str = "computenest-license-public-key";
/// The label on the controller's own records (license key, public key,
/// trial markers). Not the managed-by label: that one marks what the
/// controller provisioned for an instance, and these belong to no instance.
const PART_OF_LABEL: &str = "app.kubernetes.io/part-of";
/// Its value; the component label says which record it is.
const PART_OF: &str = "computenest";
const COMPONENT_LABEL: &str = "app.kubernetes.io/component";

/// The labels of one of the controller's own records.
fn own_record_labels(component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (PART_OF_LABEL.to_string(), PART_OF.to_string()),
        (COMPONENT_LABEL.to_string(), component.to_string()),
    ])
}
/// Statements kept in status.
const STATEMENTS_KEPT: usize = 24;
/// Real time a usage period stays open after its late window, for the
/// records written just before it to reach the cache.
const CLOSE_GRACE: jiff::SignedDuration = jiff::SignedDuration::from_secs(5);

/// The key licenses and ledgers are signed with.
pub struct LicenseKey {
    signing: SigningKey,
    verifying: VerifyingKey,
}

impl LicenseKey {
    /// A key from 32 secret bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(bytes);
        LicenseKey {
            verifying: signing.verifying_key(),
            signing,
        }
    }

    /// A new random key.
    pub fn generate() -> Self {
        let signing = SigningKey::generate(&mut rand_core::OsRng);
        LicenseKey {
            verifying: signing.verifying_key(),
            signing,
        }
    }

    /// The public key as PEM (SubjectPublicKeyInfo), for `openssl` and any
    /// ed25519 library.
    pub fn public_pem(&self) -> String {
        self.verifying
            .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .unwrap_or_default()
    }

    /// Signature of `message`, base64.
    pub fn sign(&self, message: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.signing.sign(message).to_bytes())
    }

    /// Whether `signature` (base64) is this key's over `message`.
    pub fn verify(&self, message: &[u8], signature: &str) -> bool {
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(signature) else {
            return false;
        };
        let Ok(sig) = ed25519_dalek::Signature::from_slice(&bytes) else {
            return false;
        };
        self.verifying.verify(message, &sig).is_ok()
    }

    /// Loads the key from its Secret in `namespace`, creating both when there
    /// is none (the first start), and publishes the public key.
    pub async fn load_or_create(client: &kube::Client, namespace: &str) -> Result<Self, Error> {
        let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
        let key = match secrets.get_opt(KEY_SECRET).await? {
            Some(s) => Self::from_secret(&s)?,
            None => {
                let key = Self::generate();
                let pem = key
                    .signing
                    .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
                    .map_err(|e| Error::Waiting(format!("cannot encode the license key: {e}")))?;
                let secret = Secret {
                    metadata: kube::api::ObjectMeta {
                        name: Some(KEY_SECRET.into()),
                        labels: Some(own_record_labels("license-key")),
                        ..Default::default()
                    },
                    string_data: Some(BTreeMap::from([(
                        "private.pem".to_string(),
                        pem.to_string(),
                    )])),
                    ..Default::default()
                };
                match secrets.create(&PostParams::default(), &secret).await {
                    Ok(_) => key,
                    // Another replica made it first: use that one.
                    Err(e) if is_conflict(&e) => {
                        Self::from_secret(&secrets.get(KEY_SECRET).await?)?
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let cm = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": PUBLIC_KEY_CONFIGMAP, "labels": {PART_OF_LABEL: PART_OF, COMPONENT_LABEL: "license-public-key"}},
            "data": {"public.pem": key.public_pem(), "algorithm": "Ed25519"},
        });
        Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .patch(
                PUBLIC_KEY_CONFIGMAP,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(cm),
            )
            .await?;
        Ok(key)
    }

    fn from_secret(s: &Secret) -> Result<Self, Error> {
        let pem = s
            .data
            .as_ref()
            .and_then(|d| d.get("private.pem"))
            .map(|b| String::from_utf8_lossy(&b.0).to_string())
            .ok_or_else(|| Error::Waiting(format!("Secret {KEY_SECRET} has no private.pem")))?;
        let signing = SigningKey::from_pkcs8_pem(&pem)
            .map_err(|e| Error::Waiting(format!("Secret {KEY_SECRET}: not an Ed25519 key: {e}")))?;
        Ok(LicenseKey {
            verifying: signing.verifying_key(),
            signing,
        })
    }
}

/// What the seal covers: the instance's UID and the ledger without its seal.
fn seal_message(uid: &str, ledger: &Ledger) -> Vec<u8> {
    let unsealed = Ledger {
        seal: String::new(),
        ..ledger.clone()
    };
    let mut m = format!("computenest-ledger/v1\n{uid}\n").into_bytes();
    m.extend(serde_json::to_vec(&unsealed).unwrap_or_default());
    m
}

/// The instance's ledger, if its seal verifies.
fn verified_ledger(inst: &ServiceInstance, key: &LicenseKey) -> Option<Ledger> {
    let uid = inst.metadata.uid.as_deref()?;
    let ledger = inst.status.as_ref()?.commerce.as_ref()?.ledger.clone();
    key.verify(&seal_message(uid, &ledger), &ledger.seal)
        .then_some(ledger)
}

/// Pure: the plan's prices for this instance's buyer, if the plan is priced.
pub fn pricing_of(
    inst: &ServiceInstance,
    product: &Product<'_>,
) -> Result<Option<Pricing>, Refusal> {
    let offering = product.offering;
    let plan_name = inst.spec.plan.clone().unwrap_or_default();
    let plan = offering.plans.iter().find(|p| p.name == plan_name);
    let reseller = (product.kind == crate::api::ProductKind::DerivedService)
        .then(|| offering.prices.iter().find(|p| p.plan == plan_name));
    let pricing = rules::pricing(
        offering.commerce.as_ref(),
        &plan_name,
        plan.and_then(|p| p.pricing.as_ref()),
        reseller,
    )?;
    match (&pricing, &inst.spec.billing) {
        (Some(_), None) => Err(Refusal {
            reason: "BillingRequired",
            message: format!(
                "plan {plan_name:?} is sold by subscription or pay-as-you-go; set spec.billing (mode, and trial if you want the free trial)"
            ),
        }),
        (None, Some(_)) => Err(Refusal {
            reason: "PlanNotPriced",
            message: format!("plan {plan_name:?} has no price; remove spec.billing"),
        }),
        _ => Ok(pricing),
    }
}

/// An instance's commercial decision before its objects are written.
pub struct Billed {
    /// Its prices.
    pub pricing: Pricing,
    /// Its terms now.
    pub terms: Terms,
    /// Objects the controller adds to the instance: the license Secret and
    /// the metering ServiceAccount, Role and RoleBinding.
    pub objects: Vec<Value>,
    /// Name of the license Secret.
    pub license_secret: String,
}

/// Decides an instance's terms, and builds its license and metering account.
/// Ok(None): the plan is free. Err(Ok(refusal)): billing as asked cannot be
/// honoured (a condition for the customer).
pub async fn evaluate(
    inst: &ServiceInstance,
    ctx: &Context,
    product: &Product<'_>,
    renewable: bool,
    now: Timestamp,
) -> Result<Result<Option<Billed>, Refusal>, Error> {
    let pricing = match pricing_of(inst, product) {
        Ok(Some(p)) => p,
        Ok(None) => return Ok(Ok(None)),
        Err(r) => return Ok(Err(r)),
    };
    let Some(billing) = inst.spec.billing.as_ref() else {
        return Ok(Ok(None));
    };
    let Some(key) = ctx.license.as_ref() else {
        return Ok(Err(Refusal {
            reason: "LicenseKeyUnavailable",
            message: "the controller has no license key (see its log); it cannot sell priced plans until it has".into(),
        }));
    };
    let ledger = verified_ledger(inst, key).unwrap_or_default();
    let uid = inst.metadata.uid.clone().unwrap_or_default();
    let Some(created) = inst
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| t.0.to_string().parse::<Timestamp>().ok())
    else {
        return Err(Error::Waiting(
            "the instance has no creationTimestamp yet".into(),
        ));
    };
    let wants_trial = billing.trial && ledger.paid_from.is_none();
    // A verified ledger that says the trial began proves this instance holds
    // it: the marker is read only until then (not on every reconcile).
    let trial_allowed = if wants_trial && pricing.customer.trial_days > 0 && !ledger.trial_started {
        claim_trial(inst, ctx, product, &uid).await?
    } else {
        true
    };
    let terms = match rules::terms(&rules::TermInputs {
        created,
        billing,
        pricing: &pricing,
        ledger: &ledger,
        trial_allowed,
        renewable,
        managed: product.scenario.is_managed(),
        now,
        clock: ctx.settings.commerce_clock,
    }) {
        Ok(t) => t,
        Err(r) => return Ok(Err(r)),
    };
    let license_secret = format!("{}-license", inst.name_any());
    let objects = own_objects(inst, product, &pricing, &terms, key, &license_secret);
    Ok(Ok(Some(Billed {
        pricing,
        terms,
        objects,
        license_secret,
    })))
}

/// The customer namespace's one trial of the product: a marker in the
/// seller's namespace, created when the first trial starts. True when this
/// instance holds it.
async fn claim_trial(
    inst: &ServiceInstance,
    ctx: &Context,
    product: &Product<'_>,
    uid: &str,
) -> Result<bool, Error> {
    let customer = ns_of(inst);
    let key = format!(
        "{:?}/{}/{}/{customer}",
        product.kind, product.namespace, product.name
    );
    let name = format!("computenest-trial-{}", short_hash(&key, 20));
    let api = Api::<ConfigMap>::namespaced(ctx.client.clone(), product.namespace);
    let holder = |cm: &ConfigMap| {
        cm.data
            .as_ref()
            .and_then(|d| d.get("instanceUID"))
            .cloned()
            .unwrap_or_default()
    };
    if let Some(cm) = api.get_opt(&name).await? {
        return Ok(holder(&cm) == uid);
    }
    let cm = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.clone()),
            labels: Some(own_record_labels("trial")),
            ..Default::default()
        },
        data: Some(BTreeMap::from([
            ("product".to_string(), key),
            ("customerNamespace".to_string(), customer),
            ("instanceUID".to_string(), uid.to_string()),
        ])),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &cm).await {
        Ok(_) => {
            ctx.metrics.wrote(super::instance::KIND, "trial");
            Ok(true)
        }
        Err(e) if is_conflict(&e) => Ok(api
            .get_opt(&name)
            .await?
            .is_some_and(|cm| holder(&cm) == uid)),
        Err(e) => Err(e.into()),
    }
}

/// The license payload: what the software may rely on, signed.
fn license_payload(
    inst: &ServiceInstance,
    product: &Product<'_>,
    pricing: &Pricing,
    terms: &Terms,
) -> String {
    let billing = inst.spec.billing.as_ref();
    // Field order is fixed (serde_json keeps insertion order off; a struct would
    // too): the signature is over these exact bytes, shipped beside them.
    serde_json::to_string(&json!({
        "instance": inst.metadata.uid,
        "instanceName": inst.name_any(),
        "customerNamespace": ns_of(inst),
        "product": format!("{:?} {}/{}", product.kind, product.namespace, product.name),
        "plan": inst.spec.plan,
        "billingMode": billing.map(|b| b.mode),
        "trial": terms.trial,
        "startTime": terms.start.to_string(),
        "expireTime": terms.expire.map(|t| t.to_string()),
        "status": terms.biz.as_str(),
        "currency": pricing.currency,
    }))
    .unwrap_or_default()
}

/// The license Secret and the metering account (a ServiceAccount that may
/// only create UsageRecords in the target namespace).
fn own_objects(
    inst: &ServiceInstance,
    product: &Product<'_>,
    pricing: &Pricing,
    terms: &Terms,
    key: &LicenseKey,
    license_secret: &str,
) -> Vec<Value> {
    let payload = license_payload(inst, product, pricing, terms);
    let signature = key.sign(payload.as_bytes());
    let account = format!("{}-metering", inst.name_any());
    vec![
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": license_secret},
            "type": "Opaque",
            "stringData": {
                "license.json": payload,
                "signature": signature,
                "publicKey.pem": key.public_pem(),
            },
        }),
        json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": account},
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": account},
            "rules": [{"apiGroups": ["computenest.dev"], "resources": ["usagerecords"], "verbs": ["create"]}],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": account},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
            "subjects": [{"kind": "ServiceAccount", "name": account}],
        }),
    ]
}

/// What settling came to: the status to show, conditions, and the next wake.
pub struct Settled {
    /// status.commerce.
    pub status: CommerceStatus,
    /// The next moment something changes by itself.
    pub wake: Option<Timestamp>,
}

/// After the instance's objects are written: writes the Orders of every
/// begun term and closed usage period not settled yet (online settlement,
/// each exactly once by its name), decides the usage records waiting, and
/// builds the sealed status.
#[allow(clippy::too_many_arguments)]
pub async fn settle(
    inst: &ServiceInstance,
    ctx: &Context,
    product: &Product<'_>,
    settlement: Settlement,
    billed: Billed,
    target_namespace: &str,
    now: Timestamp,
) -> Result<Settled, Error> {
    let Some(key) = ctx.license.as_ref() else {
        return Err(Error::Waiting("no license key".into()));
    };
    let uid = inst.metadata.uid.clone().unwrap_or_default();
    let Billed {
        pricing,
        terms,
        license_secret,
        ..
    } = billed;
    persist_decision(inst, ctx, key, &pricing, &terms, &license_secret).await?;
    let mut ledger = terms.ledger.clone();
    // Online by the scenario the instance is sold in (the sale's, or the
    // product's until the sale is recorded: the first reconciles of a new
    // instance settle its first term before its namespace is in the cache).
    let online = settlement == Settlement::Online;
    let mut statements: Vec<Statement> = Vec::new();
    let currency = pricing.currency.clone();
    let order_period = |index,
                        start: Timestamp,
                        end: Timestamp,
                        trial,
                        amount: Money,
                        usage: Vec<crate::api::UsageTotal>| OrderPeriod {
        index,
        start: start.to_string(),
        end: end.to_string(),
        trial,
        amount: amount.to_string(),
        currency: currency.clone(),
        usage,
    };
    let mut charged = Money::default();
    // Terms: each settled at its start.
    if inst
        .spec
        .billing
        .as_ref()
        .is_some_and(|b| b.mode == BillingMode::Subscription || terms.trial)
    {
        for p in &terms.terms {
            let amount = rules::term_amount(p, &pricing.customer);
            let resale = pricing.resale.as_ref().map(|r| rules::term_amount(p, r));
            charged = charged + amount;
            let mut names = Vec::new();
            if online {
                let orders = crate::domain::provision::period_orders(
                    inst,
                    product,
                    OrderKind::Term,
                    order_period(p.index, p.start, p.end, p.trial, amount, Vec::new()),
                    order_period(
                        p.index,
                        p.start,
                        p.end,
                        p.trial,
                        resale.unwrap_or_default(),
                        Vec::new(),
                    ),
                );
                names = crate::domain::provision::order_refs(&orders);
                if p.index > ledger.terms_settled {
                    write_orders(&orders, ctx, &uid).await?;
                }
            }
            statements.push(Statement {
                kind: OrderKind::Term,
                index: p.index,
                start: p.start.to_string(),
                end: p.end.to_string(),
                amount: amount.to_string(),
                resale_amount: resale.map(|r| r.to_string()),
                usage: Vec::new(),
                orders: names,
            });
            ledger.terms_settled = ledger.terms_settled.max(p.index);
        }
    }
    // Usage: decide the records waiting, then settle the closed periods.
    let mut wake = terms.wake;
    // Every record naming the instance gets a result, whatever its billing
    // (a subscription's usage is reported, not rated).
    let records = decide_records(
        ctx,
        (&uid, &inst.name_any()),
        terms.start,
        &pricing,
        ledger.usage_periods_settled,
        target_namespace,
    )
    .await?;
    if let Some(days) = pricing.usage_days.filter(|_| {
        inst.spec
            .billing
            .as_ref()
            .is_some_and(|b| b.mode == BillingMode::PayAsYouGo)
    }) {
        let clock = ctx.settings.commerce_clock;
        // A period closes once every record that may count in it was written
        // (its end plus the late window, by the API server's clock) and has
        // reached the cache (CLOSE_GRACE): then the accepted set of the
        // period can no longer change, and rating it again after a crash
        // gives the same amounts as the Orders already written.
        let late = clock.seconds(pricing.late_window_seconds) + CLOSE_GRACE;
        let free_until = ledger
            .paid_from
            .as_deref()
            .and_then(|s| s.parse::<Timestamp>().ok())
            .or(terms.trial.then_some(Timestamp::MAX));
        let mut n = 1;
        loop {
            let (start, end) = rules::usage_period(terms.start, days, clock, n);
            if now < end + late {
                wake = [wake, Some(end + late)].into_iter().flatten().min();
                break;
            }
            let in_period: Vec<Accepted> = records
                .iter()
                .filter(|(p, _)| *p == n)
                .map(|(_, a)| a.clone())
                .collect();
            if in_period.is_empty() {
                // Nothing was used: nothing to rate, no statement, no Order.
                ledger.usage_periods_settled = ledger.usage_periods_settled.max(n);
                n += 1;
                continue;
            }
            let (usage, amount) = rules::rate(&in_period, &pricing, &pricing.customer, free_until);
            let resale = pricing
                .resale
                .as_ref()
                .map(|r| rules::rate(&in_period, &pricing, r, free_until).1);
            charged = charged + amount;
            let mut names = Vec::new();
            if online {
                let orders = crate::domain::provision::period_orders(
                    inst,
                    product,
                    OrderKind::Usage,
                    order_period(n, start, end, false, amount, usage.clone()),
                    order_period(
                        n,
                        start,
                        end,
                        false,
                        resale.unwrap_or_default(),
                        usage.clone(),
                    ),
                );
                names = crate::domain::provision::order_refs(&orders);
                if n > ledger.usage_periods_settled {
                    write_orders(&orders, ctx, &uid).await?;
                    for u in &usage {
                        ctx.metrics.usage_rated(&u.dimension, u.quantity);
                    }
                }
            } else if n > ledger.usage_periods_settled {
                for u in &usage {
                    ctx.metrics.usage_rated(&u.dimension, u.quantity);
                }
            }
            statements.push(Statement {
                kind: OrderKind::Usage,
                index: n,
                start: start.to_string(),
                end: end.to_string(),
                amount: amount.to_string(),
                resale_amount: resale.map(|r| r.to_string()),
                usage,
                orders: names,
            });
            ledger.usage_periods_settled = ledger.usage_periods_settled.max(n);
            n += 1;
        }
    }
    announce(inst, ctx, &terms).await;
    let skip = statements.len().saturating_sub(STATEMENTS_KEPT);
    let status = commerce_status(
        inst,
        &pricing,
        &terms,
        seal(key, &uid, ledger),
        statements.into_iter().skip(skip).collect(),
        charged,
        license_secret,
    );
    Ok(Settled { status, wake })
}

/// Events for what changed in the terms: a new business state (Expiring,
/// Renewing, RenewFailed, Suspended, Expired, and Normal again after a
/// renewal or a conversion) and each automatic renewal.
async fn announce(inst: &ServiceInstance, ctx: &Context, terms: &Terms) {
    let before = inst
        .status
        .as_ref()
        .and_then(|s| s.commerce.as_ref())
        .map(|c| c.biz_status);
    let expire = terms.expire.map(|t| t.to_string()).unwrap_or_default();
    if terms.renewed_now > 0 {
        ctx.event(
            inst,
            false,
            "Renewed",
            format!(
                "renewed automatically by {} period(s); the term now ends at {expire}",
                terms.renewed_now
            ),
        )
        .await;
    }
    // The first terms are news unless they are plainly Normal.
    if before == Some(terms.biz) || (before.is_none() && terms.biz == BizStatus::Normal) {
        return;
    }
    let (warning, reason, note) = match terms.biz {
        BizStatus::Expiring => (
            true,
            "Expiring",
            match terms.notice {
                Some(d) => format!(
                    "the term ends at {expire}, within {d} day(s); renew or convert to keep it running"
                ),
                None => format!("the term ends at {expire}; renew or convert to keep it running"),
            },
        ),
        BizStatus::Renewing => (
            false,
            "Renewing",
            format!("the term ends at {expire} and renews automatically"),
        ),
        BizStatus::RenewFailed => (
            true,
            "RenewFailed",
            format!(
                "the term ends at {expire} and cannot renew: the product can no longer be sold"
            ),
        ),
        BizStatus::Suspended => (
            true,
            "Suspended",
            format!(
                "the term ended at {expire}: workloads scaled to zero, logon URL withdrawn, access removed"
            ),
        ),
        BizStatus::Expired => (
            true,
            "Expired",
            format!("the term ended at {expire}: the license says expired"),
        ),
        BizStatus::Normal => (
            false,
            "TermResumed",
            format!("the term runs until {expire}"),
        ),
    };
    ctx.event(inst, warning, reason, note).await;
}

/// The ledger with its seal.
fn seal(key: &LicenseKey, uid: &str, mut ledger: Ledger) -> Ledger {
    ledger.seal = String::new();
    ledger.seal = key.sign(&seal_message(uid, &ledger));
    ledger
}

fn commerce_status(
    inst: &ServiceInstance,
    pricing: &Pricing,
    terms: &Terms,
    ledger: Ledger,
    statements: Vec<Statement>,
    charged: Money,
    license_secret: String,
) -> CommerceStatus {
    let billing = inst.spec.billing.as_ref();
    CommerceStatus {
        mode: billing.map_or(BillingMode::Subscription, |b| b.mode),
        trial: terms.trial,
        start_time: terms.start.to_string(),
        expire_time: terms.expire.map(|t| t.to_string()),
        biz_status: terms.biz,
        currency: pricing.currency.clone(),
        price: pricing.customer.subscription.map(|m| m.to_string()),
        period: match billing.map(|b| b.mode) {
            Some(BillingMode::PayAsYouGo) => pricing.usage_days,
            _ => pricing.subscription_days,
        }
        .map(|d| format!("P{d}D"))
        .unwrap_or_default(),
        amount: charged.to_string(),
        ledger,
        statements,
        license_secret: Some(license_secret),
    }
}

/// Records a new decision (a trial begun, a paid start, renewals) in status
/// before anything is written for it: an Order is the effect of a decision
/// the ledger already holds, so a crash in between leaves a decision whose
/// Orders the next reconcile writes, never an Order for a term the ledger
/// does not know (the customer may turn renewal off meanwhile).
async fn persist_decision(
    inst: &ServiceInstance,
    ctx: &Context,
    key: &LicenseKey,
    pricing: &Pricing,
    terms: &Terms,
    license_secret: &str,
) -> Result<(), Error> {
    let uid = inst.metadata.uid.clone().unwrap_or_default();
    let before = verified_ledger(inst, key).unwrap_or_default();
    let decided = &terms.ledger;
    if (decided.trial_started, &decided.paid_from, decided.renewed)
        == (before.trial_started, &before.paid_from, before.renewed)
    {
        return Ok(());
    }
    let ledger = seal(
        key,
        &uid,
        Ledger {
            terms_settled: before.terms_settled,
            usage_periods_settled: before.usage_periods_settled,
            ..decided.clone()
        },
    );
    let previous = inst.status.as_ref().and_then(|s| s.commerce.clone());
    let status = match previous {
        Some(p) => CommerceStatus { ledger, ..p },
        None => commerce_status(
            inst,
            pricing,
            terms,
            ledger,
            Vec::new(),
            Money::default(),
            license_secret.to_string(),
        ),
    };
    Api::<ServiceInstance>::namespaced(ctx.client.clone(), &ns_of(inst))
        .patch_status(
            &inst.name_any(),
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            },
            &Patch::Merge(json!({"status": {"commerce": status}})),
        )
        .await?;
    ctx.metrics.wrote(super::instance::KIND, "status");
    Ok(())
}

async fn write_orders(orders: &[crate::api::Order], ctx: &Context, uid: &str) -> Result<(), Error> {
    match super::instance::write_order_list(orders, ctx, uid).await? {
        None => Ok(()),
        Some(super::instance::WriteOutcome::Conflict(m)) => Err(Error::Waiting(m)),
        Some(super::instance::WriteOutcome::Rejected(m)) => Err(Error::Waiting(m)),
        Some(_) => Err(Error::Waiting("an Order could not be written".into())),
    }
}

/// Decides the instance's usage records that have no result yet, in the
/// order they were written, and returns the accepted ones with their period.
/// Records in the target namespace naming another instance, and records
/// elsewhere naming this one, are refused.
#[allow(clippy::too_many_arguments)]
async fn decide_records(
    ctx: &Context,
    (uid, name): (&str, &str),
    start: Timestamp,
    pricing: &Pricing,
    settled: u32,
    target_namespace: &str,
) -> Result<Vec<(u32, Accepted)>, Error> {
    let refs = ctx.index.usage_records_of(uid, target_namespace);
    // A customer namespace can hold several private instances: a record
    // there naming another instance that exists is that instance's to
    // decide (deciding it here too would race it, and reject its usage).
    let mut records: Vec<std::sync::Arc<UsageRecord>> = refs
        .iter()
        .filter_map(|r| ctx.stores.usage_records.get(r))
        .filter(|r| r.spec.instance == uid || !ctx.index.knows_instance(&r.spec.instance))
        .collect();
    let created = |r: &UsageRecord| {
        r.metadata
            .creation_timestamp
            .as_ref()
            .and_then(|t| t.0.to_string().parse::<Timestamp>().ok())
            .unwrap_or(Timestamp::MAX)
    };
    records.sort_by_key(|r| (created(r), r.name_any()));
    let mut accepted: Vec<(u32, Accepted)> = Vec::new();
    let mut writes = Vec::new();
    for r in &records {
        let as_accepted = |r: &UsageRecord| Accepted {
            dimension: r.spec.dimension.clone(),
            start: r.spec.window_start.parse().unwrap_or(Timestamp::MIN),
            end: r.spec.window_end.parse().unwrap_or(Timestamp::MIN),
            quantity: r.spec.quantity,
        };
        match r
            .status
            .as_ref()
            .and_then(|s| s.result.map(|res| (res, s.period)))
        {
            Some((UsageResult::Accepted, Some(p))) => {
                accepted.push((p, as_accepted(r)));
                continue;
            }
            Some(_) => continue,
            None => {}
        }
        // Whom a record names is the pure rule's; where it was written is
        // known here only.
        let decision = if ns_of(r.as_ref()) != target_namespace {
            rules::Decision {
                result: UsageResult::Rejected,
                reason: "NotThisInstance",
                message: format!(
                    "a record in {} naming instance {:?} is not this instance's: records are written in the instance's target namespace {target_namespace}",
                    ns_of(r.as_ref()),
                    r.spec.instance,
                ),
                period: None,
            }
        } else {
            let all: Vec<Accepted> = accepted.iter().map(|(_, a)| a.clone()).collect();
            rules::decide(
                &rules::RecordView {
                    spec: &r.spec,
                    created: created(r),
                },
                (uid, name),
                start,
                pricing,
                ctx.settings.commerce_clock,
                settled,
                &all,
            )
        };
        if let (UsageResult::Accepted, Some(p)) = (decision.result, decision.period) {
            accepted.push((p, as_accepted(r)));
        }
        ctx.metrics.usage_record(match decision.result {
            UsageResult::Accepted => "Accepted",
            UsageResult::Duplicate => "Duplicate",
            UsageResult::Rejected => decision.reason,
        });
        writes.push((r.clone(), decision));
    }
    // The decisions are made in order; their writes go out side by side.
    let results: Vec<Result<(), Error>> = futures::stream::iter(
        writes
            .into_iter()
            .map(|(r, d)| async move { write_record_status(ctx, &r, d).await }),
    )
    .buffer_unordered(16)
    .collect()
    .await;
    for r in results {
        r?;
    }
    Ok(accepted)
}

async fn write_record_status(
    ctx: &Context,
    r: &UsageRecord,
    d: rules::Decision,
) -> Result<(), Error> {
    let status = UsageRecordStatus {
        observed_generation: r.metadata.generation,
        result: Some(d.result),
        period: d.period,
        conditions: vec![crate::domain::conditions::condition(
            &[],
            "Ready",
            d.result == UsageResult::Accepted,
            d.reason,
            d.message,
            r.metadata.generation,
        )],
    };
    let api = Api::<UsageRecord>::namespaced(ctx.client.clone(), &ns_of(r));
    let body =
        json!({"apiVersion": "computenest.dev/v1alpha1", "kind": "UsageRecord", "status": status});
    match api
        .patch_status(
            &r.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await
    {
        Ok(_) => {
            ctx.metrics.wrote("UsageRecord", "status");
            Ok(())
        }
        // Deleted meanwhile: nothing to say on it.
        Err(e) if super::is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Routes a usage record to the instance it names, and to the instance
/// whose target namespace it is in.
pub fn record_instances(
    index: &super::index::Index,
    r: &UsageRecord,
) -> Vec<ObjectRef<ServiceInstance>> {
    let mut out = Vec::new();
    if let Some(i) = index.instance_by_uid(&r.spec.instance) {
        out.push(i);
    }
    if let Some(ns) = r.meta().namespace.as_deref()
        && let Some(i) = index.instance_of_namespace(ns)
        && !out.contains(&i)
    {
        out.push(i);
    }
    out
}

/// The conditions commerce adds: Expiring while a notice runs.
pub fn conditions(status: &CommerceStatus) -> Option<(&'static str, bool, &'static str, String)> {
    let expire = status.expire_time.clone().unwrap_or_default();
    match status.biz_status {
        BizStatus::Expiring => Some((
            "Expiring",
            true,
            "Expiring",
            format!(
                "the term ends at {expire}; renew (raise billing.periods, or set billing.autoRenew) or convert the trial (billing.trial: false) to keep it running"
            ),
        )),
        BizStatus::Renewing => Some((
            "Expiring",
            false,
            "Renewing",
            format!("the term ends at {expire} and renews automatically"),
        )),
        BizStatus::RenewFailed => Some((
            "Expiring",
            true,
            "RenewFailed",
            format!(
                "the term ends at {expire} and cannot renew: the product can no longer be sold"
            ),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_seal_binds_the_instance_and_every_field() {
        let key = LicenseKey::from_bytes(&[7; 32]);
        let ledger = Ledger {
            trial_started: true,
            paid_from: Some("2026-01-01T00:00:00Z".into()),
            renewed: 2,
            terms_settled: 3,
            usage_periods_settled: 0,
            seal: String::new(),
        };
        let seal = key.sign(&seal_message("uid-a", &ledger));
        let sealed = Ledger {
            seal: seal.clone(),
            ..ledger.clone()
        };
        assert!(key.verify(&seal_message("uid-a", &sealed), &seal));
        // Copied to another instance, or any field changed: not believed.
        assert!(!key.verify(&seal_message("uid-b", &sealed), &seal));
        let forged = Ledger {
            renewed: 20,
            ..sealed.clone()
        };
        assert!(!key.verify(&seal_message("uid-a", &forged), &seal));
        // Another key's seal is not ours.
        let other = LicenseKey::from_bytes(&[8; 32]);
        assert!(!other.verify(&seal_message("uid-a", &sealed), &seal));
        assert!(!key.verify(b"x", "not base64!"));
    }

    #[test]
    fn the_public_key_is_pem() {
        let key = LicenseKey::from_bytes(&[1; 32]);
        let pem = key.public_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    }
}
