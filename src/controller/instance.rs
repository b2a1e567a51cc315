//! ServiceInstance controller: deploys what a customer bought, in the right
//! place, owned by the right party, and writes the Orders of scenario 3.
//!
//! Stages: dereference the product in the caches; decide whether it may be
//! sold (the same pure rules as the DerivedService controller); build the
//! desired state (pure, `provision::build`); apply it with server-side apply
//! under one field manager; write status only when it changed. When the
//! desired state hashes to the digest already recorded in status, nothing is
//! written at all.

use super::grant::requeue_at;
use super::status::{condition, ready, write_status_if_changed};
use super::{
    Context, Error, MANAGED_BY, MANAGED_BY_LABEL, is_conflict, is_not_found, is_permanent, ns_of,
};
use crate::api::{
    DerivedService, FIELD_MANAGER, Order, Party, Phase, ProductKind, ProductRef, RevocationPolicy,
    Service, ServiceInstance, ServiceInstanceStatus,
};
use crate::domain::distribution::NotSellable;
use crate::domain::health;
use crate::domain::provision::{self, Desired, Product, Sale, labels};
use crate::domain::render::AllowedKind;
use crate::domain::scenario::Scenario;
use crate::runtime::metrics::{InstanceLabels, Metrics};
use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams, PostParams,
    Preconditions, PropagationPolicy,
};
use kube::core::{ApiResource, PartialObjectMeta};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

pub(super) const KIND: &str = "ServiceInstance";
/// Finalizer on managed instances: their namespace is removed before the instance goes.
pub const FINALIZER: &str = "computenest.dev/managed-namespace";

/// The instance a managed namespace was created for (its full name is in an
/// annotation: a label value stops at 63 characters).
fn instance_of_namespace(ns: &PartialObjectMeta<Namespace>) -> Option<ObjectRef<ServiceInstance>> {
    let l = ns.labels();
    let name = ns
        .annotations()
        .get(labels::INSTANCE_NAME_ANNOTATION)
        .or_else(|| l.get(labels::INSTANCE_NAME))?;
    let namespace = l.get(labels::INSTANCE_NAMESPACE)?;
    Some(ObjectRef::new(name).within(namespace))
}

/// Runs `sweep_orphaned_namespaces` once the caches are synced, then every
/// `settings.sweep_interval`.
pub(super) async fn sweeper(ctx: Arc<Context>) {
    while !ctx.readiness.is_ready() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    loop {
        match sweep_orphaned_namespaces(&ctx).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "orphaned managed namespaces removed"),
            Err(e) => tracing::warn!(error = %e, "could not sweep managed namespaces; retrying"),
        }
        // Instances deleted without a cleanup (customer-owned ones have no
        // finalizer) leave what drift remembered of them: forget it.
        let live: std::collections::HashSet<String> = ctx
            .stores
            .instances
            .state()
            .iter()
            .filter_map(|i| i.metadata.uid.clone())
            .collect();
        ctx.drift.retain(|uid| live.contains(uid));
        tokio::time::sleep(ctx.settings.sweep_interval).await;
    }
}

/// Pure: the health of an instance as its conditions tell it (kstatus).
fn instance_health(conditions: &[crate::api::Condition]) -> &'static str {
    let is_true = |t: &str| {
        conditions
            .iter()
            .any(|c| c.type_ == t && c.status == "True")
    };
    if is_true("Ready") {
        "Healthy"
    } else if is_true("Stalled") {
        "Degraded"
    } else if is_true("Reconciling") {
        "Progressing"
    } else {
        "Unknown"
    }
}

/// Refreshes the instances-by-phase-and-health gauge from the cache.
pub fn export_phase_gauge(store: &Store<ServiceInstance>, metrics: &Metrics) {
    let mut counts: HashMap<InstanceLabels, i64> = HashMap::new();
    for i in store.state() {
        let s = i.status.as_ref();
        let l = InstanceLabels {
            phase: s
                .and_then(|s| s.phase)
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "None".into()),
            scenario: s
                .and_then(|s| s.scenario.clone())
                .unwrap_or_else(|| "None".into()),
            health: s
                .map(|s| instance_health(&s.conditions))
                .unwrap_or("Unknown")
                .into(),
        };
        *counts.entry(l).or_default() += 1;
    }
    metrics.instances.clear();
    for (l, n) in counts {
        metrics.instances.get_or_create(&l).set(n);
    }
}

/// The product as resolved from the caches: sellable (with its offering) or not.
struct Resolved {
    product: String,
    scenario: Option<Scenario>,
    on_revoke: RevocationPolicy,
    outcome: Result<(ProductData, Arc<crate::domain::render::Offering>), NotSellable>,
    grant_expiry: Option<Timestamp>,
    /// The version chosen, when the product was found.
    versions: Option<Versions>,
}

/// The version an instance runs, with the offerings of the versions around it.
struct Versions {
    selection: super::version::Selection,
    /// The offering of the version a dry run is made for.
    preview: Option<Arc<crate::domain::render::Offering>>,
    /// The offering of the version a move starts from.
    from: Option<Arc<crate::domain::render::Offering>>,
}

impl Versions {
    fn of(
        selection: super::version::Selection,
        ctx: &Context,
        derived: Option<&DerivedService>,
    ) -> Self {
        let offering = |s: &Service| ctx.index.offering(s, derived).ok();
        Versions {
            preview: selection
                .preview
                .as_ref()
                .and_then(|p| offering(&p.service)),
            from: selection.from.as_ref().and_then(offering),
            selection,
        }
    }
}

/// Pure: a product whose versions cannot give the instance one.
fn no_version(e: crate::domain::versions::Refused, scenario: Option<Scenario>) -> NotSellable {
    NotSellable {
        reason: e.reason,
        message: e.message,
        scenario,
        grant: None,
        should_apply: false,
    }
}

struct ProductData {
    kind: ProductKind,
    namespace: String,
    name: String,
    isv_namespace: String,
    service_name: String,
    isv_product_code: Option<String>,
    product_code: Option<String>,
    price: Option<String>,
}

/// Dereferences the product an instance names, in the caches only (no API
/// calls), one kind of product at a time.
fn resolve(inst: &ServiceInstance, ctx: &Context, now: Timestamp) -> Resolved {
    let r = &inst.spec.service_ref;
    let product = format!("{:?} {}/{}", r.kind, r.namespace, r.name);
    match r.kind {
        ProductKind::Service => resolve_service(inst, r, ctx, product),
        ProductKind::DerivedService => resolve_derived(inst, r, ctx, now, product),
    }
}

/// Pure: a product that is not in the caches cannot be sold, and has no
/// scenario to show.
fn product_not_found(r: &ProductRef, product: String, what: &str) -> Resolved {
    Resolved {
        product,
        scenario: None,
        on_revoke: RevocationPolicy::default(),
        outcome: Err(NotSellable {
            reason: "ProductNotFound",
            message: format!(
                "{what} {}/{} does not exist; check spec.serviceRef",
                r.namespace, r.name
            ),
            scenario: None,
            grant: None,
            should_apply: false,
        }),
        grant_expiry: None,
        versions: None,
    }
}

/// A Service bought from the ISV directly: sellable when its offering is
/// valid; what runs keeps running if it is revoked (there is no grant).
fn resolve_service(
    inst: &ServiceInstance,
    r: &ProductRef,
    ctx: &Context,
    product: String,
) -> Resolved {
    let Some(svc) = ctx
        .stores
        .services
        .get(&ObjectRef::new(&r.name).within(&r.namespace))
    else {
        return product_not_found(r, product, "Service");
    };
    let scenario = Scenario::direct(svc.spec.type_);
    let selection = match super::version::select(inst, &svc, Default::default(), ctx) {
        Ok(s) => s,
        Err(e) => {
            return Resolved {
                product,
                scenario: Some(scenario),
                on_revoke: RevocationPolicy::KeepRunning,
                outcome: Err(no_version(e, Some(scenario))),
                grant_expiry: None,
                versions: None,
            };
        }
    };
    let outcome = ctx
        .index
        .offering(&selection.service, None)
        .map(|o| (ProductData::of_service(r, &svc), o))
        .map_err(|e| NotSellable {
            reason: "ProductInvalid",
            message: format!(
                "Service {}/{} is not valid: {e}; the ISV must fix it",
                r.namespace, r.name
            ),
            scenario: Some(scenario),
            grant: None,
            should_apply: false,
        });
    Resolved {
        product,
        scenario: Some(scenario),
        on_revoke: RevocationPolicy::KeepRunning,
        outcome,
        grant_expiry: None,
        versions: Some(Versions::of(selection, ctx, None)),
    }
}

/// A DerivedService bought from a distributor: sellable under the same
/// rules as the DerivedService controller applies; its source Service's
/// `onRevoke` says what happens to what runs when the grant goes.
fn resolve_derived(
    inst: &ServiceInstance,
    r: &ProductRef,
    ctx: &Context,
    now: Timestamp,
    product: String,
) -> Resolved {
    let Some(ds) = ctx
        .stores
        .derived
        .get(&ObjectRef::new(&r.name).within(&r.namespace))
    else {
        return product_not_found(r, product, "DerivedService");
    };
    let src = &ds.spec.source;
    let svc = ctx
        .stores
        .services
        .get(&ObjectRef::new(&src.name).within(&src.namespace));
    let on_revoke = svc
        .as_ref()
        .map(|s| s.spec.distribution.on_revoke)
        .unwrap_or_default();
    let selection = svc
        .as_deref()
        .map(|s| super::version::select(inst, s, super::version::resold(&ds), ctx));
    let (at, selection) = match selection {
        Some(Ok(sel)) => (Some(sel.service.clone()), Some(sel)),
        Some(Err(e)) => {
            // The grant and scenario first: a refusal of theirs says more.
            let n = match super::derived::evaluate(&ds, ctx, now) {
                Err(n) => n,
                Ok(s) => no_version(e, Some(s.scenario)),
            };
            return Resolved {
                product,
                scenario: n.scenario,
                on_revoke,
                outcome: Err(n),
                grant_expiry: None,
                versions: None,
            };
        }
        None => (None, None),
    };
    match super::derived::evaluate_at(&ds, at.as_ref(), ctx, now) {
        Ok(sellable) => Resolved {
            product,
            scenario: Some(sellable.scenario),
            on_revoke,
            grant_expiry: sellable.grant_expiry,
            outcome: Ok((
                ProductData::of_derived(r, &ds, svc.as_deref()),
                sellable.offering,
            )),
            versions: selection.map(|s| Versions::of(s, ctx, Some(&ds))),
        },
        Err(n) => Resolved {
            product,
            scenario: n.scenario,
            on_revoke,
            outcome: Err(n),
            grant_expiry: None,
            versions: None,
        },
    }
}

pub(super) async fn reconcile(
    inst: Arc<ServiceInstance>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let _ns = ns_of(inst.as_ref());
    let result = if inst.metadata.deletion_timestamp.is_some() {
        cleanup(&inst, &ctx).await
    } else {
        apply(&inst, &ctx).await
    };
    let key = super::failure_key(KIND, inst.as_ref());
    match &result {
        Ok(_) => ctx.failures.succeeded(&key),
        Err(e) => report_repeated_failure(&inst, &ctx, &key, e).await,
    }
    result
}

/// Failures in a row with the same error before the instance says so in its
/// Ready condition (a transient error clears before that).
const REPORT_AFTER: u32 = 3;

/// Turns repeated identical failures into a condition on the instance (and
/// an Event): a person sees what is wrong without reading the controller's logs.
async fn report_repeated_failure(inst: &ServiceInstance, ctx: &Context, key: &str, e: &Error) {
    let msg = e.to_string();
    // `on_error` records this failure after us: count the ones before it.
    if ctx.failures.repeated(key, &msg) + 1 < REPORT_AFTER
        || inst.metadata.deletion_timestamp.is_some()
    {
        return;
    }
    let mut status = inst.status.clone().unwrap_or_default();
    status.observed_generation = inst.metadata.generation;
    let previous = status.conditions.clone();
    let mut others: Vec<_> = previous
        .iter()
        .filter(|c| c.type_ != "Ready")
        .cloned()
        .collect();
    status.conditions = vec![condition(
        &previous,
        "Ready",
        false,
        "ReconcileError",
        format!(
            "the last attempts failed with the same error, retrying with backoff (at most every {}s): {msg}",
            super::MAX_BACKOFF.as_secs()
        ),
        inst.metadata.generation,
    )];
    status.conditions.append(&mut others);
    let api = Api::<ServiceInstance>::namespaced(ctx.client.clone(), &ns_of(inst));
    if let Err(e) = finish_status(inst, ctx, &api, status).await {
        tracing::warn!(error = %e, "could not report a repeated failure in status");
    }
}

struct StatusBuilder<'a> {
    inst: &'a ServiceInstance,
    status: ServiceInstanceStatus,
    /// Condition types whose transition time starts again now.
    restarted: Vec<&'static str>,
}

impl<'a> StatusBuilder<'a> {
    fn new(inst: &'a ServiceInstance, resolved: &Resolved, sold: Option<&Sale>) -> Self {
        let prev = inst.status.clone().unwrap_or_default();
        let status = ServiceInstanceStatus {
            observed_generation: inst.metadata.generation,
            product: Some(resolved.product.clone()),
            // An instance shows the scenario it was sold with; the product's
            // current one only until it is sold.
            scenario: sold
                .map(|s| s.scenario)
                .or(resolved.scenario)
                .map(|s| s.as_str().to_string()),
            // Kept from before unless this reconcile learns better.
            owner: prev.owner.clone(),
            billing: prev.billing.clone(),
            logon_url: prev.logon_url.clone(),
            credentials_secret: prev.credentials_secret.clone(),
            applied_objects: prev.applied_objects.clone(),
            applied_digest: prev.applied_digest.clone(),
            resources: prev.resources.clone(),
            phase: prev.phase,
            version: prev.version.clone(),
            available_upgrades: prev.available_upgrades.clone(),
            upgrade: prev.upgrade.clone(),
            history: prev.history.clone(),
            commerce: prev.commerce.clone(),
            conditions: Vec::new(),
        };
        StatusBuilder {
            inst,
            status,
            restarted: Vec::new(),
        }
    }

    /// The previous conditions, less those whose clock restarts now.
    fn previous(&self) -> Vec<crate::api::Condition> {
        self.inst
            .status
            .as_ref()
            .map(|s| {
                s.conditions
                    .iter()
                    .filter(|c| !self.restarted.contains(&c.type_.as_str()))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Starts the transition time of `type_` again (a new write restarts
    /// the progress deadline).
    fn restart(&mut self, type_: &'static str) {
        self.restarted.push(type_);
    }

    /// Sets the phase and the Ready condition, followed by the other
    /// conditions given as (type, status, reason, message).
    fn set(
        &mut self,
        phase: Phase,
        ready: bool,
        reason: &str,
        message: String,
        others: &[OtherCondition],
    ) {
        let generation = self.inst.metadata.generation;
        let previous = self.previous();
        let mut conditions = vec![condition(
            &previous, "Ready", ready, reason, message, generation,
        )];
        for (type_, ok, reason, message) in others {
            conditions.push(condition(
                &previous,
                type_,
                *ok,
                reason,
                message.clone(),
                generation,
            ));
        }
        self.status.phase = Some(phase);
        self.status.conditions = conditions;
    }
}

fn was_deployed(inst: &ServiceInstance) -> bool {
    inst.status
        .as_ref()
        .is_some_and(|s| !s.applied_objects.is_empty() || s.applied_digest.is_some())
}

/// The terms an instance was sold with, from the cluster where the cluster
/// shows them: the labels of its managed namespace, which only the controller
/// writes (tenants cannot write namespaces). Otherwise from status, checked:
/// a status that names a namespace or an owner this instance cannot have is
/// ignored, so that editing status can never point the controller elsewhere.
fn sold_terms(inst: &ServiceInstance, ctx: &Context, isv_namespace: Option<&str>) -> Option<Sale> {
    let ns = ns_of(inst);
    let uid = inst.metadata.uid.clone().unwrap_or_default();
    let derived = provision::managed_namespace_name(&ns, &inst.name_any(), &uid);
    let claimed = inst
        .status
        .as_ref()
        .and_then(|s| s.owner.as_ref())
        .map(|o| o.target_namespace.clone())
        .filter(|t| *t != ns);
    claimed
        .iter()
        .chain(std::iter::once(&derived))
        .find_map(|candidate| {
            let m = ctx.stores.namespaces.get(&ObjectRef::new(candidate))?;
            sale_in_namespace_labels(candidate, m.labels(), &uid)
        })
        .or_else(|| sale_in_status(inst, isv_namespace, &derived))
}

/// Pure: the terms the labels of managed namespace `name` show, if it is
/// this instance's (its UID label) and they are complete.
fn sale_in_namespace_labels(name: &str, l: &BTreeMap<String, String>, uid: &str) -> Option<Sale> {
    if l.get(labels::INSTANCE_UID).map(String::as_str) != Some(uid) {
        return None;
    }
    let scenario = l.get(labels::SCENARIO).and_then(|s| Scenario::parse(s))?;
    let party = l.get(labels::OWNER_PARTY).and_then(|p| Party::parse(p))?;
    let owner = l.get(labels::OWNER_NAMESPACE)?;
    Some(Sale {
        scenario,
        party,
        owner_namespace: owner.clone(),
        target_namespace: name.to_string(),
    })
}

/// Pure: the terms status shows, if this instance can have them: an owner
/// that fits the scenario and the product, and a target namespace that is
/// its own or the managed one it derives (`derived`).
fn sale_in_status(
    inst: &ServiceInstance,
    isv_namespace: Option<&str>,
    derived: &str,
) -> Option<Sale> {
    if !was_deployed(inst) {
        return None;
    }
    let ns = ns_of(inst);
    let s = inst.status.as_ref()?;
    let owner = s.owner.as_ref()?;
    let scenario = Scenario::parse(s.scenario.as_deref()?)?;
    if scenario.resource_owner() != owner.party {
        return None;
    }
    let owner_ok = match owner.party {
        Party::Customer => owner.namespace == ns,
        Party::Distributor => {
            inst.spec.service_ref.kind == ProductKind::DerivedService
                && owner.namespace == inst.spec.service_ref.namespace
        }
        Party::Isv => Some(owner.namespace.as_str()) == isv_namespace,
    };
    let target_ok = if scenario.is_managed() {
        // Its namespace is gone (deleted by hand): it is made again under
        // the name this instance derives, never under another.
        owner.target_namespace == derived
    } else {
        owner.target_namespace == ns
    };
    (owner_ok && target_ok).then(|| Sale {
        scenario,
        party: owner.party,
        owner_namespace: owner.namespace.clone(),
        target_namespace: owner.target_namespace.clone(),
    })
}

/// Whether a reason stops sales by revoking the grant (the only case the
/// Service's `onRevoke` policy is about).
fn is_revocation(reason: &str) -> bool {
    matches!(reason, "GrantRevoked" | "GrantExpired")
}

const DEPROVISIONED: &str = "resources removed (onRevoke: Deprovision)";

/// Reconciles a live instance in stages: dereference its product and the
/// terms it was sold with (caches only), decide and build the desired state
/// (pure), write it, write status.
async fn apply(inst: &ServiceInstance, ctx: &Context) -> Result<Action, Error> {
    let resolved = resolve(inst, ctx, Timestamp::now());
    let sold = sold_terms(inst, ctx, isv_namespace_of(inst, &resolved).as_deref());
    if sold.as_ref().is_some_and(|s| s.scenario.is_managed()) {
        // Its resources live outside the customer's namespace: the finalizer
        // must stay while it lives (restored if someone removed it).
        ensure_finalizer(inst, ctx).await?;
    }
    let mut sb = StatusBuilder::new(inst, &resolved, sold.as_ref());
    let api = Api::<ServiceInstance>::namespaced(ctx.client.clone(), &ns_of(inst));
    let (data, offering) = match &resolved.outcome {
        Ok(ok) => ok,
        Err(n) => {
            let verdict = unsellable(inst, n, resolved.on_revoke);
            if verdict.deprovision
                && let Some(sale) = &sold
            {
                remove_everything(inst, sale, ctx).await?;
            }
            verdict.into_status(&mut sb, inst, n);
            finish_status(inst, ctx, &api, sb.status).await?;
            return Ok(Action::await_change());
        }
    };
    let product = data.product(resolved.scenario, offering);
    let mut others = sale_conditions(inst, &product, sold.as_ref());
    let versions = resolved.versions.as_ref();
    let starting = versions.and_then(|v| starting_move(inst, &v.selection));
    if let Some(v) = versions {
        others.extend(version_conditions(&v.selection));
    }
    if sold.is_none()
        && let Some(refused) = super::tenancy::may_sell(inst, ctx).await?
    {
        sb.set(
            Phase::Pending,
            false,
            refused.reason,
            refused.message,
            &others,
        );
        finish_status(inst, ctx, &api, sb.status).await?;
        return Ok(Action::requeue(refused.retry));
    }
    // The terms of a priced plan: trial, subscription, expiry.
    let billed =
        match super::commerce::evaluate(inst, ctx, &product, true, Timestamp::now()).await? {
            Ok(b) => b,
            Err(refused) => {
                sb.set(
                    Phase::Pending,
                    false,
                    refused.reason,
                    refused.message,
                    &others,
                );
                finish_status(inst, ctx, &api, sb.status).await?;
                return Ok(Action::await_change());
            }
        };
    if let Some(b) = billed.as_ref().filter(|b| b.terms.remove) {
        // A trial that ended unconverted, past its retention: its resources
        // go; the instance stays, Expired, and converting it deploys anew.
        if let Some(sale) = &sold {
            remove_everything(inst, sale, ctx).await?;
        }
        let message = format!(
            "the trial ended at {} and its resources were removed after the retention days; set billing.trial to false to buy it",
            b.terms.expire.map(|t| t.to_string()).unwrap_or_default()
        );
        let target = sold
            .as_ref()
            .map(|s| s.target_namespace.clone())
            .unwrap_or_default();
        let settlement = product.scenario.settlement();
        if let Some(b) = billed {
            let settled = super::commerce::settle(
                inst,
                ctx,
                &product,
                settlement,
                b,
                &target,
                Timestamp::now(),
            )
            .await?;
            sb.status.commerce = Some(settled.status);
        }
        sb.status.applied_objects.clear();
        sb.status.resources.clear();
        sb.status.logon_url = None;
        sb.set(Phase::Pending, false, "Expired", message, &others);
        finish_status(inst, ctx, &api, sb.status).await?;
        return Ok(Action::await_change());
    }
    let mut desired = match provision::build(
        inst,
        &product,
        sold.as_ref(),
        &ctx.settings.tenancy.size_limits,
    )
    .and_then(|mut d| {
        if let Some(b) = &billed {
            d.add_own_objects(inst, b.objects.clone())?;
            if b.terms.suspend {
                d.suspend();
            }
        }
        Ok(d)
    }) {
        Ok(d) => d,
        Err(e) => {
            sb.set(Phase::DeployFailed, false, e.reason, e.message, &others);
            finish_status(inst, ctx, &api, sb.status).await?;
            return Ok(Action::await_change());
        }
    };
    if let Some(v) = versions {
        desired.record_version(&v.selection.version);
    }
    if let Err(e) = super::tenancy::add_managed_policy(
        inst,
        ctx,
        &mut desired,
        offering,
        (&data.isv_namespace, &data.service_name),
    )
    .await?
    {
        sb.set(Phase::DeployFailed, false, e.reason, e.message, &others);
        finish_status(inst, ctx, &api, sb.status).await?;
        return Ok(Action::await_change());
    }
    // A move writes only what differs between the two versions, and
    // removes only what the old version had and the new one has not.
    let plan = match (starting.as_ref(), versions.and_then(|v| v.from.as_ref())) {
        (Some(_), Some(from)) => move_plan(
            inst,
            data,
            resolved.scenario,
            from,
            sold.as_ref(),
            ctx,
            &desired,
            versions.is_some_and(|v| v.selection.delete_claims),
        ),
        _ => MovePlan::default(),
    };
    let (stopped, mut wrote) = write_unless_written(inst, &desired, ctx, &plan).await?;
    // Drift is looked for only when nothing was written just now (what was
    // just written is as written, and the caches may not have it yet).
    let stopped = match stopped {
        None if !wrote => {
            let (stopped, repaired) =
                keep_as_written(inst, &desired, ctx, &mut sb, &mut others).await?;
            wrote = repaired;
            stopped
        }
        other => other,
    };
    if let Some(stopped) = stopped {
        sb.set(
            stopped.phase,
            false,
            stopped.reason,
            stopped.message,
            &others,
        );
        finish_status(inst, ctx, &api, sb.status).await?;
        return Ok(Action::requeue(stopped.retry));
    }
    let out_of_sync = std::mem::take(&mut sb.status.resources);
    let healths = object_health(inst, &desired, ctx, wrote).await?;
    let now = Timestamp::now();
    // The progress deadline counts from the last write, or from when the
    // objects stopped being healthy (the Reconciling condition's transition).
    let deadline = progress_deadline(data, ctx);
    let since = if wrote {
        sb.restart("Reconciling");
        None
    } else {
        progressing_since(inst, deadline)
    };
    let rollup = health::rollup(&healths, since, now, deadline);
    let mut retry = match &rollup {
        health::Rollup::Progressing { retry_in, .. } => Some(*retry_in),
        _ => None,
    };
    // Waiting for a place in a version's rollout: nothing wakes it when
    // one frees, so it looks again shortly.
    if versions
        .and_then(|v| v.selection.blocked.as_ref())
        .is_some_and(|(_, why)| why.reason == "RolloutWaiting")
    {
        let wait = Duration::from_secs(5);
        retry = Some(retry.map_or(wait, |r| r.min(wait)));
    }
    let mut upgrading = None;
    if let Some(v) = versions {
        let said = version_status(
            &mut sb.status,
            inst,
            &v.selection,
            starting.as_ref(),
            &rollup,
            now,
        );
        sb.status.upgrade = preview_status(
            inst,
            data,
            resolved.scenario,
            v,
            sold.as_ref(),
            ctx,
            &desired,
        );
        if let Some((type_, reason, message)) = &said.condition {
            others.push((type_, true, reason, message.clone()));
        }
        upgrading = said.upgrading.clone();
        track_rollout(inst, v, &said, data, ctx).await?;
        for (warning, reason, message, change, result) in said.events {
            ctx.metrics.version_change(change, result);
            if !reason.is_empty() {
                ctx.event(inst, warning, reason, message).await;
            }
        }
    }
    let mut wake = None;
    if let Some(b) = billed {
        let settled = super::commerce::settle(
            inst,
            ctx,
            &product,
            desired.billing.settlement,
            b,
            &desired.owner.target_namespace,
            now,
        )
        .await?;
        if let Some(c) = super::commerce::conditions(&settled.status) {
            others.push(c);
        }
        wake = settled.wake;
        sb.status.commerce = Some(settled.status);
    } else {
        sb.status.commerce = None;
    }
    deployed_status(&mut sb, &desired, &others, rollup);
    if let Some(c) = &sb.status.commerce
        && matches!(
            c.biz_status,
            crate::api::BizStatus::Suspended | crate::api::BizStatus::Expired
        )
    {
        let how = if c.biz_status == crate::api::BizStatus::Suspended {
            "its workloads are scaled to zero and its logon URL withdrawn"
        } else {
            "its license says expired"
        };
        let what = if c.trial { "the trial" } else { "the term" };
        let message = format!(
            "{what} ended at {}: {how}; renew (raise billing.periods or set billing.autoRenew) or convert the trial (billing.trial: false) to resume",
            c.expire_time.clone().unwrap_or_default()
        );
        let reason = if c.biz_status == crate::api::BizStatus::Suspended {
            "Suspended"
        } else {
            "Expired"
        };
        let phase = sb.status.phase.unwrap_or(Phase::Deployed);
        sb.set(phase, false, reason, message, &others);
    }
    if let Some(message) = upgrading {
        // While a move progresses the phase says so (kstatus: Ready False
        // with Reconciling True, set above).
        sb.status.phase = Some(Phase::Upgrading);
        if let Some(c) = sb.status.conditions.iter_mut().find(|c| c.type_ == "Ready") {
            c.message = format!("{message}; {}", c.message);
        }
    }
    sb.status.resources = resources_status(inst, &desired, &out_of_sync, &healths);
    finish_status(inst, ctx, &api, sb.status).await?;
    // The terms change by themselves at known moments (a notice, the end
    // of a term, a usage period's close): the instance is woken then.
    let expiry = match (resolved.grant_expiry, wake) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let action = requeue_at(expiry);
    Ok(match retry {
        // Woken by the objects' watch events before then, as they progress;
        // this wakes it at the deadline if nothing happens.
        Some(r) => earliest(action, r, expiry, now),
        None => action,
    })
}

/// The earlier of the grant expiry's requeue and `retry`.
fn earliest(action: Action, retry: Duration, expiry: Option<Timestamp>, now: Timestamp) -> Action {
    let until_expiry: Option<Duration> =
        expiry.and_then(|e| Duration::try_from(now.duration_until(e)).ok());
    match until_expiry {
        Some(u) if u < retry => action,
        _ => Action::requeue(retry),
    }
}

/// When the instance's objects began to progress, from its Reconciling
/// condition (None: not progressing before this reconcile). An instance
/// already Stalled by the deadline stays past it (its Reconciling condition
/// is gone), until a write starts the clock again. Only this instance's own
/// progress report is read from status; a forged time can only make the
/// instance report Stalled sooner or later for itself.
fn progressing_since(inst: &ServiceInstance, deadline: Duration) -> Option<Timestamp> {
    let conditions = &inst.status.as_ref()?.conditions;
    let is_true = |t: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t && c.status == "True")
    };
    if let Some(c) = is_true("Reconciling") {
        return c.last_transition_time.parse().ok();
    }
    let stalled = is_true("Stalled").filter(|c| c.reason == "ProgressDeadlineExceeded")?;
    let at: Timestamp = stalled.last_transition_time.parse().ok()?;
    at.checked_sub(jiff::SignedDuration::try_from(deadline).ok()?)
        .ok()
}

/// The progress deadline of the ISV's Service the instance was made from.
fn progress_deadline(data: &ProductData, ctx: &Context) -> Duration {
    ctx.stores
        .services
        .get(&ObjectRef::new(&data.service_name).within(&data.isv_namespace))
        .map(|s| s.spec.progress_deadline())
        .unwrap_or(Duration::from_secs(u64::from(
            crate::api::DEFAULT_PROGRESS_DEADLINE_SECONDS,
        )))
}

/// The health of every object of the instance, in the order of
/// `desired_writes` (the logon Secret last).
async fn object_health(
    inst: &ServiceInstance,
    desired: &Desired,
    ctx: &Context,
    just_wrote: bool,
) -> Result<Vec<(String, health::Assessment)>, Error> {
    let uid = inst.metadata.uid.clone().unwrap_or_default();
    let writes = desired_writes(inst, desired, &ctx.settings.allowed_kinds)?;
    let targets: Vec<super::drift::Target<'_>> = writes.iter().map(Write::target).collect();
    super::health::assess(ctx, &uid, &targets, just_wrote).await
}

/// Pure: every object of the instance with its sync state (OutOfSync where
/// `out_of_sync`, from the drift check, says so, else Synced) and its
/// health (`healths`, in the same order).
fn resources_status(
    inst: &ServiceInstance,
    desired: &Desired,
    out_of_sync: &[crate::api::ResourceStatus],
    healths: &[(String, health::Assessment)],
) -> Vec<crate::api::ResourceStatus> {
    let customer = ns_of(inst);
    desired
        .objects
        .iter()
        .map(|o| {
            (
                o["apiVersion"].as_str().unwrap_or_default().to_string(),
                o["kind"].as_str().unwrap_or_default().to_string(),
                desired.owner.target_namespace.clone(),
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        // The logon Secret lives with the customer.
        .chain(std::iter::once((
            "v1".to_string(),
            "Secret".to_string(),
            customer,
            desired.secret_name.clone(),
        )))
        .enumerate()
        .map(|(i, (api_version, kind, namespace, name))| {
            let drifted = out_of_sync
                .iter()
                .find(|o| o.kind == kind && o.name == name && o.namespace == namespace);
            let assessed = healths.get(i).map(|(_, a)| a);
            let message = match (drifted, assessed) {
                (Some(o), _) => o.message.clone(),
                (None, Some(a)) => a.message.clone(),
                (None, None) => String::new(),
            };
            crate::api::ResourceStatus {
                sync: drifted.map_or(crate::api::SyncState::Synced, |o| o.sync),
                health: assessed.map_or(crate::api::HealthState::Unknown, |a| a.health),
                message,
                api_version,
                kind,
                namespace,
                name,
            }
        })
        .collect()
}

/// Keeps a written instance as written: finds what others changed or
/// deleted since, and repairs it or reports it as the instance's drift
/// mode says. Sets the OutOfSync objects in `sb.status.resources`, and the
/// Synced / SelfHealPaused conditions among `others` (through the builder).
async fn keep_as_written(
    inst: &ServiceInstance,
    desired: &Desired,
    ctx: &Context,
    sb: &mut StatusBuilder<'_>,
    others: &mut Vec<OtherCondition>,
) -> Result<(Option<Stopped>, bool), Error> {
    use crate::api::DriftDetection;
    let uid = inst.metadata.uid.clone().unwrap_or_default();
    let product_sync = product_sync(inst, ctx);
    let managed = desired.scenario.is_managed();
    let mode = crate::domain::drift::effective_mode(managed, &inst.spec.sync, &product_sync);
    sb.status.resources.clear();
    if mode == DriftDetection::Disabled {
        return Ok((None, false));
    }
    let paused = mode == DriftDetection::Enabled && self_heal_paused(inst, ctx);
    if paused {
        others.push((
            "SelfHealPaused",
            true,
            "WriteAccessActive",
            "an approved AccessRequest grants write access to this instance's resources; changes are reported, not repaired, until it ends".into(),
        ));
    }
    let writes = desired_writes(inst, desired, &ctx.settings.allowed_kinds)?;
    let rules: Vec<&crate::api::IgnoreRule> = product_sync
        .ignore
        .iter()
        .chain(inst.spec.sync.ignore.iter())
        .collect();
    let targets: Vec<super::drift::Target<'_>> = writes.iter().map(Write::target).collect();
    let ignored = |t: &super::drift::Target<'_>| -> Vec<String> {
        crate::domain::drift::ignored_pointers(
            rules.iter().copied(),
            t.body["apiVersion"].as_str().unwrap_or_default(),
            &t.ar.kind,
            t.name,
        )
        .into_iter()
        .map(str::to_string)
        .collect()
    };
    let mut found = Vec::new();
    if desired.managed_namespace_labels.is_some() {
        let target = &desired.owner.target_namespace;
        if ctx.stores.namespaces.get(&ObjectRef::new(target)).is_none()
            && Api::<Namespace>::all(ctx.client.clone())
                .get_metadata_opt(target)
                .await?
                .is_none()
        {
            found.push(format!("Namespace {target}: deleted"));
        }
    }
    let objects = if found.is_empty() {
        super::drift::find(ctx, &uid, &targets, &ignored).await?
    } else {
        // The namespace is gone, and everything in it.
        Vec::new()
    };
    found.extend(objects.iter().map(|f| format!("{}: {}", f.what, f.detail)));
    if found.is_empty() {
        return Ok((None, false));
    }
    let summary = found.join("; ");
    if mode == DriftDetection::Warn || paused {
        sb.status.resources = objects
            .iter()
            .map(|f| {
                out_of_sync(
                    f,
                    "not repaired: drift detection is Warn or self-heal is paused",
                )
            })
            .collect();
        // Told once per change of what is out of sync, not on every look.
        let before: Vec<(&str, &str)> = inst
            .status
            .as_ref()
            .map(|s| {
                s.resources
                    .iter()
                    .filter(|r| r.sync == crate::api::SyncState::OutOfSync)
                    .map(|r| (r.kind.as_str(), r.name.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        let now: Vec<(&str, &str)> = sb
            .status
            .resources
            .iter()
            .map(|r| (r.kind.as_str(), r.name.as_str()))
            .collect();
        if before != now {
            ctx.metrics.drift(KIND, "detected");
            let why = if paused {
                "self-heal paused while write access is active"
            } else {
                "drift detection Warn"
            };
            ctx.event(
                inst,
                true,
                "DriftDetected",
                format!("changed by someone else, not repaired ({why}): {summary}"),
            )
            .await;
        }
        return Ok((None, false));
    }
    if let Err(wait) = super::drift::repair_now(ctx, &uid) {
        sb.status.resources = objects
            .iter()
            .map(|f| out_of_sync(f, "something keeps undoing the repairs; the next one waits"))
            .collect();
        ctx.metrics.drift(KIND, "backoff");
        ctx.event(
            inst,
            true,
            "DriftFight",
            format!(
                "the objects keep being changed back; next repair in {}s: {summary}",
                wait.as_secs().max(1)
            ),
        )
        .await;
        return Ok((
            Some(Stopped {
                phase: Phase::Deployed,
                reason: "DriftBackoff",
                message: format!(
                    "repairs keep being undone; the next one in {}s: {summary}",
                    wait.as_secs().max(1)
                ),
                retry: wait,
            }),
            false,
        ));
    }
    ctx.event(
        inst,
        true,
        "DriftDetected",
        format!("changed by someone else: {summary}"),
    )
    .await;
    ctx.metrics.drift(KIND, "detected");
    // The repair writes what the instance writes, keeping the fields the
    // ignore rules leave to others as they are live.
    // A repair rewrites the whole instance, not only what drifted: every
    // object opted out by its annotation is left as it is, and every field
    // an ignore rule names keeps its live value. Repairs are rare: one read
    // per object is their price.
    let mut repair = desired.clone();
    let mut leave = BTreeSet::new();
    for (body, w) in repair.objects.iter_mut().zip(writes.iter()) {
        let live = match objects
            .iter()
            .find(|f| f.ar.kind == w.ar.kind && f.name == w.name)
        {
            Some(f) => f.live.clone(),
            None => w
                .api(ctx)
                .get_opt(&w.name)
                .await?
                .map(|o| serde_json::to_value(o).unwrap_or_default()),
        };
        let Some(live) = live else { continue };
        if crate::domain::drift::opted_out(&live) {
            leave.insert((w.ar.kind.clone(), w.name.clone()));
            continue;
        }
        let ignore = ignored(&w.target());
        let ignore: Vec<&str> = ignore.iter().map(String::as_str).collect();
        crate::domain::drift::keep_ignored(body, &live, &ignore);
    }
    match write_desired(inst, &repair, ctx, &leave, None).await? {
        WriteOutcome::Done => {
            ctx.metrics.drift(KIND, "corrected");
            ctx.event(
                inst,
                false,
                "DriftCorrected",
                format!("written again: {summary}"),
            )
            .await;
            Ok((None, true))
        }
        WriteOutcome::Wait(msg) => Ok((
            Some(Stopped {
                phase: Phase::Deploying,
                reason: "Deploying",
                message: msg,
                retry: Duration::from_secs(2),
            }),
            false,
        )),
        WriteOutcome::Rejected(msg) => Ok((
            Some(Stopped {
                phase: Phase::DeployFailed,
                reason: "ApplyFailed",
                message: msg,
                retry: Duration::from_secs(60),
            }),
            false,
        )),
        WriteOutcome::Conflict(msg) => Ok((
            Some(Stopped {
                phase: Phase::DeployFailed,
                reason: "ObjectConflict",
                message: msg,
                retry: Duration::from_secs(60),
            }),
            false,
        )),
        WriteOutcome::Refused { reason, message } => Ok((
            Some(Stopped {
                phase: Phase::Pending,
                reason,
                message,
                retry: Duration::from_secs(60),
            }),
            false,
        )),
    }
}

fn out_of_sync(f: &super::drift::Found, why: &str) -> crate::api::ResourceStatus {
    crate::api::ResourceStatus {
        api_version: f.ar.api_version.clone(),
        kind: f.ar.kind.clone(),
        namespace: f.namespace.clone(),
        name: f.name.clone(),
        sync: crate::api::SyncState::OutOfSync,
        health: crate::api::HealthState::Unknown,
        message: format!("{}; {why}", f.detail),
    }
}

/// The drift settings of the instance's product.
fn product_sync(inst: &ServiceInstance, ctx: &Context) -> crate::api::SyncPolicy {
    let r = &inst.spec.service_ref;
    match r.kind {
        ProductKind::Service => ctx
            .stores
            .services
            .get(&ObjectRef::new(&r.name).within(&r.namespace))
            .map(|s| s.spec.sync.clone()),
        ProductKind::DerivedService => ctx
            .stores
            .derived
            .get(&ObjectRef::new(&r.name).within(&r.namespace))
            .map(|d| d.spec.sync.clone()),
    }
    .unwrap_or_default()
}

/// Whether an approved AccessRequest grants write verbs on this instance
/// right now: the owner's hands-on work is not undone under them.
fn self_heal_paused(inst: &ServiceInstance, ctx: &Context) -> bool {
    const WRITES: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];
    ctx.index
        .requests_of(&ObjectRef::from_obj(inst))
        .iter()
        .filter_map(|r| ctx.stores.access_requests.get(r))
        .any(|r| {
            r.status.as_ref().is_some_and(|s| {
                s.phase == Some(crate::api::AccessPhase::Active)
                    && s.granted_rules
                        .iter()
                        .any(|rule| rule.verbs.iter().any(|v| WRITES.contains(&v.as_str())))
            })
        })
}

/// The ISV's namespace, as far as the product tells it (for checking an owner in status).
fn isv_namespace_of(inst: &ServiceInstance, resolved: &Resolved) -> Option<String> {
    match (&resolved.outcome, inst.spec.service_ref.kind) {
        (Ok((data, _)), _) => Some(data.isv_namespace.clone()),
        (Err(_), ProductKind::Service) => Some(inst.spec.service_ref.namespace.clone()),
        (Err(_), ProductKind::DerivedService) => None,
    }
}

impl ProductData {
    /// The product of a Service sold by its ISV directly.
    fn of_service(r: &ProductRef, svc: &Service) -> Self {
        ProductData {
            kind: ProductKind::Service,
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            isv_namespace: r.namespace.clone(),
            service_name: r.name.clone(),
            isv_product_code: svc.spec.marketplace.product_code.clone(),
            product_code: svc.spec.marketplace.product_code.clone(),
            price: svc.spec.marketplace.price.clone(),
        }
    }

    /// The product of a DerivedService: sold by the distributor, made from
    /// the ISV's Service (`svc`, when it is in the cache).
    fn of_derived(r: &ProductRef, ds: &DerivedService, svc: Option<&Service>) -> Self {
        let src = &ds.spec.source;
        ProductData {
            kind: ProductKind::DerivedService,
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            isv_namespace: src.namespace.clone(),
            service_name: src.name.clone(),
            isv_product_code: svc.and_then(|s| s.spec.marketplace.product_code.clone()),
            product_code: ds.spec.marketplace.product_code.clone(),
            price: ds.spec.marketplace.price.clone(),
        }
    }

    fn product<'a>(
        &'a self,
        scenario: Option<Scenario>,
        offering: &'a crate::domain::render::Offering,
    ) -> Product<'a> {
        Product {
            kind: self.kind,
            namespace: &self.namespace,
            name: &self.name,
            isv_namespace: &self.isv_namespace,
            service_name: &self.service_name,
            isv_product_code: self.isv_product_code.as_deref(),
            product_code: self.product_code.as_deref(),
            price: self.price.as_deref(),
            scenario: scenario.unwrap_or(Scenario::DirectPrivate),
            offering,
        }
    }
}

/// A condition besides Ready: (type, status, reason, message).
type OtherCondition = (&'static str, bool, &'static str, String);

/// Pure: the conditions of a sellable instance besides Ready: the grant of
/// a derived product, and a product whose terms changed since the sale.
fn sale_conditions(
    inst: &ServiceInstance,
    product: &Product<'_>,
    sold: Option<&Sale>,
) -> Vec<OtherCondition> {
    let mut others = Vec::new();
    if inst.spec.service_ref.kind == ProductKind::DerivedService {
        others.push((
            "GrantValid",
            true,
            "Approved",
            "the distribution grant is approved".to_string(),
        ));
    }
    if let Some(sale) = sold.filter(|s| s.scenario != product.scenario) {
        others.push((
            "ProductChanged",
            true,
            "ProductChanged",
            format!(
                "sold as {} (resources owned by the {} in namespace {}); new sales of this product are {}: this instance keeps the terms it was sold with",
                sale.scenario.as_str(),
                sale.party,
                sale.target_namespace,
                product.scenario.as_str()
            ),
        ));
    }
    others
}

/// What an instance shows, and whether its resources go, when its product
/// cannot be sold now.
struct Unsellable {
    /// Remove its resources (a revocation under onRevoke: Deprovision).
    deprovision: bool,
    phase: Phase,
    ready: bool,
    reason: String,
    message: String,
}

/// Pure: a deployed instance keeps running unless its grant was revoked
/// under Deprovision; an instance removed that way keeps saying so; one
/// never deployed says why not.
fn unsellable(inst: &ServiceInstance, n: &NotSellable, on_revoke: RevocationPolicy) -> Unsellable {
    if was_deployed(inst) {
        return deployed_unsellable(inst, n, on_revoke);
    }
    let prev_ready = inst.status.as_ref().and_then(|s| ready(&s.conditions));
    if let Some(prev) =
        prev_ready.filter(|c| c.status == "False" && c.message.starts_with(DEPROVISIONED))
    {
        // Removed on revocation: the Ready condition keeps saying so (and
        // why) while the resources stay removed.
        return Unsellable {
            deprovision: false,
            phase: Phase::DeployFailed,
            ready: false,
            reason: prev.reason.clone(),
            message: prev.message.clone(),
        };
    }
    Unsellable {
        deprovision: false,
        phase: if n.reason == "GrantPending" {
            Phase::Pending
        } else {
            Phase::DeployFailed
        },
        ready: false,
        reason: n.reason.into(),
        message: format!("not deployed: {}", n.message),
    }
}

/// Pure: `unsellable` for an instance that was deployed: removed on a
/// revocation under Deprovision, otherwise left running.
fn deployed_unsellable(
    inst: &ServiceInstance,
    n: &NotSellable,
    on_revoke: RevocationPolicy,
) -> Unsellable {
    if is_revocation(n.reason) && on_revoke == RevocationPolicy::Deprovision {
        return Unsellable {
            deprovision: true,
            phase: Phase::DeployFailed,
            ready: false,
            reason: n.reason.into(),
            message: format!("{DEPROVISIONED}: {}", n.message),
        };
    }
    // Sales stopped; what runs keeps running (KeepRunning, or a reason
    // that is not a revocation: a seller's edit never removes what a
    // customer bought).
    let phase = inst
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .unwrap_or(Phase::Deployed);
    let deployed = phase == Phase::Deployed;
    Unsellable {
        deprovision: false,
        phase,
        ready: deployed,
        reason: if deployed { "Deployed" } else { "NotSellable" }.into(),
        message: format!(
            "running; no longer sellable: {} ({})",
            n.message,
            if is_revocation(n.reason) {
                "onRevoke: KeepRunning"
            } else {
                "instances already sold keep running"
            }
        ),
    }
}

impl Unsellable {
    fn into_status(self, sb: &mut StatusBuilder<'_>, inst: &ServiceInstance, n: &NotSellable) {
        if self.deprovision {
            sb.status.applied_objects.clear();
            sb.status.applied_digest = None;
            sb.status.logon_url = None;
        }
        let grant: Vec<OtherCondition> = (inst.spec.service_ref.kind
            == ProductKind::DerivedService)
            .then(|| ("GrantValid", false, n.reason, n.message.clone()))
            .into_iter()
            .collect();
        // A spec edited after sales stopped is not applied: the instance
        // keeps reporting the generation that was, so that kubectl wait,
        // Argo CD and Flux do not take the edit for done.
        let applied = inst.status.as_ref().and_then(|s| s.observed_generation);
        let ignored_edit = !self.deprovision
            && applied.is_some()
            && applied < inst.metadata.generation
            && was_deployed(inst);
        let message = if ignored_edit {
            format!(
                "{}; the spec change of generation {} is not applied while the product is not sold",
                self.message,
                inst.metadata.generation.unwrap_or_default()
            )
        } else {
            self.message
        };
        sb.set(self.phase, self.ready, &self.reason, message, &grant);
        if ignored_edit {
            sb.status.observed_generation = applied;
            for c in &mut sb.status.conditions {
                c.observed_generation = applied;
            }
        }
    }
}

/// Why a deployment stopped short, and when to look again.
struct Stopped {
    phase: Phase,
    reason: &'static str,
    message: String,
    retry: Duration,
}

/// Writes the desired state unless status (or this process's memo of its
/// own last write) shows it written already; says what stopped it, if
/// anything did.
async fn write_unless_written(
    inst: &ServiceInstance,
    desired: &Desired,
    ctx: &Context,
    plan: &MovePlan,
) -> Result<(Option<Stopped>, bool), Error> {
    let digest_key = format!(
        "digest/{}",
        inst.metadata.uid.as_deref().unwrap_or_default()
    );
    let seen_in_cache = inst.status.as_ref().is_some_and(|s| {
        s.applied_digest.as_deref() == Some(desired.digest.as_str())
            && ready(&s.conditions).is_some_and(|c| WRITTEN_REASONS.contains(&c.reason.as_str()))
    });
    if seen_in_cache {
        // The cache has caught up with the write: the memo entry is no longer needed.
        ctx.memo.forget(&digest_key);
        return Ok((None, false));
    }
    if ctx.memo.is_same(&digest_key, &desired.digest) {
        return Ok((None, false));
    }
    let stopped = |phase, reason, message, secs| {
        Some(Stopped {
            phase,
            reason,
            message,
            retry: Duration::from_secs(secs),
        })
    };
    Ok((
        match write_desired(inst, desired, ctx, &plan.unchanged, plan.removed.as_deref()).await? {
            WriteOutcome::Done => {
                ctx.memo.record(&digest_key, &desired.digest);
                None
            }
            WriteOutcome::Wait(msg) => stopped(Phase::Deploying, "Deploying", msg, 2),
            // The cause may be outside the object (RBAC, a missing CRD): look again later, slowly.
            WriteOutcome::Rejected(msg) => stopped(Phase::DeployFailed, "ApplyFailed", msg, 60),
            // The other object may be removed or renamed; nothing of it is touched meanwhile.
            WriteOutcome::Conflict(msg) => stopped(Phase::DeployFailed, "ObjectConflict", msg, 60),
            // Another instance may go and free the place.
            WriteOutcome::Refused { reason, message } => {
                stopped(Phase::Pending, reason, message, 60)
            }
        },
        true,
    ))
}

/// Pure: the status of an instance whose desired state is written, by the
/// health of its objects: Deployed and Ready only when every object is
/// healthy; Deploying with a Reconciling condition while they progress;
/// DeployFailed with a Stalled condition when one failed, is missing, or
/// they are still not healthy at the progress deadline (kstatus).
fn deployed_status(
    sb: &mut StatusBuilder<'_>,
    desired: &Desired,
    others: &[OtherCondition],
    rollup: health::Rollup,
) {
    let s = &mut sb.status;
    s.owner = Some(desired.owner.clone());
    s.billing = Some(desired.billing.clone());
    s.logon_url = desired.logon_url.clone();
    s.credentials_secret = Some(desired.secret_name.clone());
    s.applied_objects = desired.applied.clone();
    s.applied_digest = Some(desired.digest.clone());
    let owner = &desired.owner;
    let written = format!(
        "{} objects written to namespace {} ({}, owned by the {})",
        desired.applied.len(),
        owner.target_namespace,
        desired.scenario.as_str(),
        owner.party
    );
    match rollup {
        health::Rollup::Healthy => sb.set(
            Phase::Deployed,
            true,
            "Deployed",
            format!("{written}; all healthy"),
            others,
        ),
        health::Rollup::Progressing { message, .. } => {
            let mut others = others.to_vec();
            others.push(("Reconciling", true, "Progressing", message.clone()));
            sb.set(
                Phase::Deploying,
                false,
                "Progressing",
                format!("{written}; waiting for: {message}"),
                &others,
            );
        }
        health::Rollup::Stalled { reason, message } => {
            let mut others = others.to_vec();
            others.push(("Stalled", true, reason, message.clone()));
            sb.set(Phase::DeployFailed, false, reason, message, &others);
        }
    }
}

/// Ready reasons of an instance whose desired state was written in full
/// (the health of what was written, or a drift backoff): nothing needs
/// writing again for the same digest.
const WRITTEN_REASONS: [&str; 6] = [
    "Deployed",
    "Progressing",
    "Degraded",
    "Missing",
    "ProgressDeadlineExceeded",
    "DriftBackoff",
];

async fn finish_status(
    inst: &ServiceInstance,
    ctx: &Context,
    api: &Api<ServiceInstance>,
    status: ServiceInstanceStatus,
) -> Result<(), Error> {
    if write_status_if_changed(api, &ctx.memo, inst, inst.status.as_ref(), &status).await? {
        ctx.metrics.wrote(KIND, "status");
        let before = inst
            .status
            .as_ref()
            .and_then(|s| ready(&s.conditions))
            .map(|c| c.reason.clone());
        if let Some(c) = ready(&status.conditions)
            && before.as_deref() != Some(c.reason.as_str())
            && c.reason != "Deploying"
            && c.reason != "Progressing"
            // A first deployment is told by the Ready condition alone (one write
            // less per instance); recoveries and failures get an Event.
            && !(c.reason == "Deployed"
                && matches!(before.as_deref(), None | Some("Deploying" | "Progressing")))
        {
            ctx.event(inst, c.status != "True", &c.reason, c.message.clone())
                .await;
        }
    }
    Ok(())
}

fn api_resource(kind: &AllowedKind) -> ApiResource {
    ApiResource {
        group: kind.group.clone(),
        version: kind.version.clone(),
        api_version: kind.api_version(),
        kind: kind.kind.clone(),
        plural: kind.plural.clone(),
    }
}

fn resource_for(allowed: &[AllowedKind], api_version: &str, kind: &str) -> ApiResource {
    match allowed
        .iter()
        .find(|a| a.api_version() == api_version && a.kind == kind)
    {
        Some(a) => api_resource(a),
        None => {
            let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
            ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(group, version, kind))
        }
    }
}

/// What writing the desired state came to.
pub(super) enum WriteOutcome {
    /// Everything is written.
    Done,
    /// Something must finish first (an old namespace of the same name terminating).
    Wait(String),
    /// The API server refused an object for good: retrying the same object cannot help.
    Rejected(String),
    /// An object of a desired name exists and was not created by this
    /// instance: nothing was written, and nothing of it changed.
    Conflict(String),
    /// A platform limit refused the sale: nothing was written.
    Refused {
        reason: &'static str,
        message: String,
    },
}

/// Whether live metadata proves that this instance created the object: its
/// UID label, and the controller's managed-by label.
fn owned_by(labels: &BTreeMap<String, String>, uid: &str) -> bool {
    !uid.is_empty()
        && labels.get(labels::INSTANCE_UID).map(String::as_str) == Some(uid)
        && labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
}

/// Who an object that is not ours seems to belong to, for the message only
/// (labels are whatever their writer put there; nothing is decided from them).
fn foreign_owner(labels: &BTreeMap<String, String>) -> String {
    match (
        labels.get(labels::INSTANCE_NAMESPACE),
        labels.get(labels::INSTANCE_NAME),
    ) {
        (Some(ns), Some(name)) if labels.contains_key(labels::INSTANCE_UID) => {
            format!("it belongs to ServiceInstance {ns}/{name}")
        }
        _ => "it was not created by the controller".into(),
    }
}

/// What exists in the cluster under a name the instance wants to write.
enum Live {
    /// Not looked at: a first deployment creates, and looks only if the
    /// create finds the name taken (no read for a fresh sale).
    Unknown,
    /// Nothing: the object is created.
    Absent,
    /// Created by this instance (UID label), with this UID: updated under a
    /// UID precondition, so that a re-created object of the same name is never hit.
    Ours(String),
    /// Being deleted: written once it is gone.
    Terminating,
    /// Someone else's: never touched.
    Foreign(String),
}

/// What writing one object came to.
enum Put {
    Written,
    /// The API server refused it for good.
    Refused(String),
    /// The name is taken by an object this instance did not create.
    Taken(String),
    /// The name is held by an object being deleted.
    Wait(String),
}

/// One object to write: where, and what.
struct Write {
    ar: ApiResource,
    namespace: String,
    name: String,
    body: serde_json::Value,
}

impl Write {
    /// The object as the drift and health checks look at it.
    fn target(&self) -> super::drift::Target<'_> {
        super::drift::Target {
            ar: &self.ar,
            namespace: &self.namespace,
            name: &self.name,
            body: &self.body,
        }
    }

    fn api(&self, ctx: &Context) -> Api<DynamicObject> {
        Api::namespaced_with(ctx.client.clone(), &self.namespace, &self.ar)
    }
    fn what(&self) -> String {
        format!("{} {}/{}", self.ar.kind, self.namespace, self.name)
    }
}

/// `look`, answered by the caches where they can: an object they hold with
/// this instance's UID label is ours (written under its UID, so a stale
/// copy fails the write instead of hitting another object). What they do
/// not hold (a new name, a kind not watched) is looked at live: only a read
/// can show a name someone else holds.
async fn look_cached(w: &Write, ctx: &Context, uid: &str) -> Result<Live, Error> {
    if let Some(m) = ctx
        .provisioned
        .get(&w.ar.group, &w.ar.kind, &w.namespace, &w.name)
        && m.deletion_timestamp.is_none()
        && owned_by(&m.labels.clone().unwrap_or_default(), uid)
        && let Some(live_uid) = m.uid
    {
        return Ok(Live::Ours(live_uid));
    }
    look(w, ctx, uid).await
}

async fn look(w: &Write, ctx: &Context, uid: &str) -> Result<Live, Error> {
    let meta = match w.api(ctx).get_metadata_opt(&w.name).await {
        Ok(m) => m,
        // The kind is not served or not readable: the write will say so.
        Err(kube::Error::Api(s)) if is_permanent(&s) => None,
        Err(e) => return Err(e.into()),
    };
    Ok(match meta {
        None => Live::Absent,
        Some(m) if !owned_by(m.labels(), uid) => Live::Foreign(format!(
            "{} exists and was not created by this instance ({}); nothing of it was changed. Rename the object in the product's template, or remove the existing one",
            w.what(),
            foreign_owner(m.labels())
        )),
        Some(m) if m.metadata.deletion_timestamp.is_some() => Live::Terminating,
        Some(m) => Live::Ours(m.metadata.uid.unwrap_or_default()),
    })
}

/// Creates or updates one object. Creation is a POST, never an apply: an
/// apply would take over an object of the same name; a POST fails on it.
async fn put(w: &Write, live: Live, ctx: &Context, uid: &str) -> Result<Put, Error> {
    let api = w.api(ctx);
    let result = match live {
        Live::Unknown | Live::Absent => {
            let obj: DynamicObject = serde_json::from_value(w.body.clone())?;
            let pp = PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            };
            match api
                .create(&pp, &obj)
                .await
                .inspect(|o| record_written(w, o, ctx, uid))
            {
                // The name is taken: look at what holds it, and decide from that.
                Err(e) if is_conflict(&e) => match look(w, ctx, uid).await? {
                    Live::Ours(live_uid) => return apply_ours(w, &live_uid, ctx, uid).await,
                    Live::Foreign(msg) => return Ok(Put::Taken(msg)),
                    Live::Terminating => return Ok(Put::Wait(terminating(w))),
                    Live::Absent | Live::Unknown => {
                        return Err(Error::Waiting(format!(
                            "{} appeared and went while it was being created; looking again",
                            w.what()
                        )));
                    }
                },
                r => r.map(|_| ()),
            }
        }
        Live::Ours(live_uid) => return apply_ours(w, &live_uid, ctx, uid).await,
        Live::Foreign(msg) => return Ok(Put::Taken(msg)),
        Live::Terminating => return Ok(Put::Wait(terminating(w))),
    };
    written(w, result, ctx)
}

/// Remembers the version of an object just written, so that its own watch
/// event is not taken for someone else's change.
fn record_written(w: &Write, o: &DynamicObject, ctx: &Context, uid: &str) {
    ctx.drift.record(
        uid,
        &super::drift::object_key(&w.ar, &w.namespace, &w.name),
        super::drift::version_of(&o.metadata),
    );
}

fn terminating(w: &Write) -> String {
    format!(
        "{} is being deleted; it is made again once it is gone",
        w.what()
    )
}

/// Updates an object this instance created, under its UID (a precondition:
/// an object deleted and re-created meanwhile is never hit).
async fn apply_ours(w: &Write, live_uid: &str, ctx: &Context, uid: &str) -> Result<Put, Error> {
    let mut body = w.body.clone();
    body["metadata"]["uid"] = json!(live_uid);
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let result = match w
        .api(ctx)
        .patch(&w.name, &pp, &Patch::Apply(&body))
        .await
        .inspect(|o| record_written(w, o, ctx, uid))
    {
        Err(e) if is_conflict(&e) => {
            return Err(Error::Waiting(format!(
                "{} was replaced while it was being written; looking again",
                w.what()
            )));
        }
        // A RoleBinding's roleRef cannot change (the platform renamed the
        // operator role): ours goes, under its UID, and is made again.
        Err(kube::Error::Api(s)) if s.code == 422 && w.ar.kind == "RoleBinding" => {
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: Some(live_uid.to_string()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match w.api(ctx).delete(&w.name, &dp).await {
                Ok(_) => ctx.metrics.wrote(KIND, "delete"),
                Err(e) if is_not_found(&e) || is_conflict(&e) => {}
                Err(e) => return Err(e.into()),
            }
            return Ok(Put::Wait(format!(
                "{} is made again: its roleRef cannot change ({})",
                w.what(),
                s.message
            )));
        }
        r => r.map(|_| ()),
    };
    written(w, result, ctx)
}

fn written(w: &Write, result: Result<(), kube::Error>, ctx: &Context) -> Result<Put, Error> {
    match result {
        Ok(()) => {
            ctx.metrics.wrote(KIND, "object");
            Ok(Put::Written)
        }
        Err(kube::Error::Api(s)) if is_permanent(&s) => Ok(Put::Refused(format!(
            "the API server refused {}: {} (HTTP {}); the seller must fix the template",
            w.what(),
            s.message,
            s.code
        ))),
        Err(e) => Err(Error::from(e)),
    }
}

/// The logon Secret in the customer's namespace.
fn logon_secret(inst: &ServiceInstance, d: &Desired) -> Result<Write, Error> {
    let mut data = BTreeMap::new();
    if let Some(url) = &d.logon_url {
        data.insert("logonUrl".to_string(), ByteString(url.clone().into_bytes()));
    }
    let uid = inst.metadata.uid.clone().unwrap_or_default();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(d.secret_name.clone()),
            namespace: Some(ns_of(inst)),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
                (labels::INSTANCE_NAMESPACE.to_string(), ns_of(inst)),
                (
                    labels::INSTANCE_NAME.to_string(),
                    crate::domain::naming::label_value(&inst.name_any()),
                ),
                (labels::INSTANCE_UID.to_string(), uid),
            ])),
            owner_references: inst.controller_owner_ref(&()).map(|r| vec![r]),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    };
    let mut body = serde_json::to_value(&secret)?;
    body["apiVersion"] = json!("v1");
    body["kind"] = json!("Secret");
    Ok(Write {
        ar: ApiResource::erase::<Secret>(&()),
        namespace: ns_of(inst),
        name: d.secret_name.clone(),
        body,
    })
}

/// Makes sure the managed namespace exists and belongs to this instance.
async fn ensure_managed_namespace(
    inst: &ServiceInstance,
    d: &Desired,
    ns_labels: &BTreeMap<String, String>,
    ctx: &Context,
) -> Result<Option<WriteOutcome>, Error> {
    let target = &d.owner.target_namespace;
    let uid = inst.metadata.uid.clone().unwrap_or_default();
    let ns_api = Api::<Namespace>::all(ctx.client.clone());
    let live = match ctx.stores.namespaces.get(&ObjectRef::new(target)) {
        Some(m) => Some((*m).clone()),
        None => {
            // Create, never take over: a namespace of that name that is not
            // in the cache (not labelled as ours) must not be written.
            let ns = Namespace {
                metadata: ObjectMeta {
                    name: Some(target.clone()),
                    labels: Some(ns_labels.clone()),
                    annotations: Some(BTreeMap::from([(
                        labels::INSTANCE_NAME_ANNOTATION.to_string(),
                        inst.name_any(),
                    )])),
                    ..Default::default()
                },
                ..Default::default()
            };
            let pp = PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            };
            let created = super::tenancy::within_namespace_limit(inst, ctx, || async {
                Ok(ns_api.create(&pp, &ns).await)
            })
            .await?;
            let created = match created {
                Ok(c) => c,
                Err(refused) => {
                    return Ok(Some(WriteOutcome::Refused {
                        reason: refused.reason,
                        message: refused.message,
                    }));
                }
            };
            match created {
                Ok(_) => {
                    ctx.metrics.wrote(KIND, "namespace");
                    return Ok(None);
                }
                Err(e) if is_conflict(&e) => ns_api.get_metadata_opt(target).await?,
                Err(kube::Error::Api(s)) if is_permanent(&s) => {
                    return Ok(Some(WriteOutcome::Rejected(format!(
                        "the API server refused namespace {target}: {} (HTTP {})",
                        s.message, s.code
                    ))));
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    Ok(match live {
        None => Some(WriteOutcome::Wait(format!(
            "namespace {target} is being created"
        ))),
        Some(m) if !owned_by(m.labels(), &uid) => Some(WriteOutcome::Conflict(format!(
            "namespace {target} exists and was not created by this instance ({}); nothing of it was changed",
            foreign_owner(m.labels())
        ))),
        Some(m) if m.metadata.deletion_timestamp.is_some() => Some(WriteOutcome::Wait(format!(
            "namespace {target} is being deleted; it is made again once it is gone"
        ))),
        Some(m) => relabel_managed_namespace(&ns_api, target, &m, ns_labels, ctx).await?,
    })
}

/// Brings the labels of a managed namespace this instance created (checked
/// by the caller) to what the platform's policy says now: Pod Security
/// levels, the instance's labels. Only the labels it sets are written.
async fn relabel_managed_namespace(
    ns_api: &Api<Namespace>,
    target: &str,
    live: &PartialObjectMeta<Namespace>,
    want: &BTreeMap<String, String>,
    ctx: &Context,
) -> Result<Option<WriteOutcome>, Error> {
    if want.iter().all(|(k, v)| live.labels().get(k) == Some(v)) {
        return Ok(None);
    }
    let body = json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        // The UID precondition: a namespace re-created meanwhile is never hit.
        "metadata": { "name": target, "uid": live.metadata.uid, "labels": want },
    });
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    match ns_api.patch(target, &pp, &Patch::Apply(&body)).await {
        Ok(_) => {
            ctx.metrics.wrote(KIND, "namespace");
            Ok(None)
        }
        Err(e) if is_conflict(&e) || is_not_found(&e) => Ok(Some(WriteOutcome::Wait(format!(
            "namespace {target} changed while its labels were being written; looking again"
        )))),
        Err(kube::Error::Api(s)) if is_permanent(&s) => Ok(Some(WriteOutcome::Rejected(format!(
            "the API server refused the labels of namespace {target}: {} (HTTP {})",
            s.message, s.code
        )))),
        Err(e) => Err(e.into()),
    }
}

/// Writes the desired state: looks at every name first, and writes nothing
/// at all when one of them is taken by an object this instance did not create.
async fn write_desired(
    inst: &ServiceInstance,
    d: &Desired,
    ctx: &Context,
    leave: &BTreeSet<(String, String)>,
    removed: Option<&[Removed]>,
) -> Result<WriteOutcome, Error> {
    let uid = inst.metadata.uid.clone().unwrap_or_default();
    let target = &d.owner.target_namespace;

    if let Some(ns_labels) = &d.managed_namespace_labels {
        // Finalizer first: from here on, something may exist outside the customer's namespace.
        ensure_finalizer(inst, ctx).await?;
        if let Some(outcome) = ensure_managed_namespace(inst, d, ns_labels, ctx).await? {
            return Ok(outcome);
        }
    }

    let writes = desired_writes(inst, d, &ctx.settings.allowed_kinds)?;
    let keep: BTreeSet<(String, String)> = writes
        .iter()
        .filter(|w| w.namespace == *target)
        .map(|w| (w.ar.kind.clone(), w.name.clone()))
        .collect();
    // The managed namespace's policy first: the quota and the limits must be
    // in place before anything can start a pod.
    let (policy, template): (Vec<Write>, Vec<Write>) = writes
        .into_iter()
        // Objects opted out of drift repair are kept, not written.
        .filter(|w| !leave.contains(&(w.ar.kind.clone(), w.name.clone())))
        .partition(|w| super::tenancy::is_policy_object(&w.ar.kind, &w.name));
    for batch in [policy, template] {
        if !batch.is_empty()
            && let Some(outcome) = write_objects(inst, &batch, ctx, &uid).await?
        {
            return Ok(outcome);
        }
    }
    // Orders come after: no sale is recorded for objects the API server refused.
    if let Some(outcome) = write_orders(d, ctx, &uid).await? {
        return Ok(outcome);
    }

    // Remove what left the template: found in the cluster by this instance's
    // UID label, never taken from status. Only an instance that was written
    // before can have such objects.
    match removed {
        // A move: what the old version had and the new one has not.
        Some(objects) => remove_objects(ctx, &uid, target, objects).await?,
        None if was_deployed(inst) => prune(ctx, &uid, target, &keep, false).await?,
        None => {}
    }

    Ok(WriteOutcome::Done)
}

/// Pure: the objects of the desired state, each with its API resource, and
/// the logon Secret last.
fn desired_writes(
    inst: &ServiceInstance,
    d: &Desired,
    allowed: &[AllowedKind],
) -> Result<Vec<Write>, Error> {
    let mut writes = Vec::with_capacity(d.objects.len() + 1);
    for obj in &d.objects {
        writes.push(Write {
            ar: resource_for(
                allowed,
                obj["apiVersion"].as_str().unwrap_or_default(),
                obj["kind"].as_str().unwrap_or_default(),
            ),
            namespace: d.owner.target_namespace.clone(),
            name: obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            body: obj.clone(),
        });
    }
    writes.push(logon_secret(inst, d)?);
    Ok(writes)
}

/// Writes the objects; says what stopped them, if anything did.
async fn write_objects(
    inst: &ServiceInstance,
    writes: &[Write],
    ctx: &Context,
    uid: &str,
) -> Result<Option<WriteOutcome>, Error> {
    // An instance written before looks at every name first, and writes
    // nothing at all if one is taken. A first deployment creates at once
    // (a create never takes anything over) and looks only where a name is
    // taken: no read for a fresh sale.
    let first = !was_deployed(inst);
    let lives = if first {
        writes.iter().map(|_| Live::Unknown).collect()
    } else {
        futures::future::try_join_all(writes.iter().map(|w| look_cached(w, ctx, uid))).await?
    };
    if let Some(msg) = lives.iter().find_map(|l| match l {
        Live::Foreign(m) => Some(m.clone()),
        _ => None,
    }) {
        return Ok(Some(WriteOutcome::Conflict(msg)));
    }
    let puts =
        futures::future::try_join_all(writes.iter().zip(lives).map(|(w, l)| put(w, l, ctx, uid)))
            .await?;
    Ok(stopped_by(puts))
}

/// Pure: what stopped a write of several objects, the worst first: a name
/// taken, then a refusal, then something to wait for.
fn stopped_by(puts: Vec<Put>) -> Option<WriteOutcome> {
    let mut refused = None;
    let mut waiting = None;
    for p in puts {
        match p {
            Put::Written => {}
            Put::Taken(msg) => return Some(WriteOutcome::Conflict(msg)),
            Put::Refused(msg) => refused = refused.or(Some(msg)),
            Put::Wait(msg) => waiting = waiting.or(Some(msg)),
        }
    }
    refused
        .map(WriteOutcome::Rejected)
        .or(waiting.map(WriteOutcome::Wait))
}

/// Orders: created once, never changed; an existing one stands if it is this instance's.
async fn write_orders(
    d: &Desired,
    ctx: &Context,
    uid: &str,
) -> Result<Option<WriteOutcome>, Error> {
    write_order_list(&d.orders, ctx, uid).await
}

/// Writes `orders` (each exactly once: created, or found written for this
/// instance); says what stopped them, if anything did.
pub(super) async fn write_order_list(
    orders: &[Order],
    ctx: &Context,
    uid: &str,
) -> Result<Option<WriteOutcome>, Error> {
    for order in orders {
        let ns = order.metadata.namespace.clone().unwrap_or_default();
        let name = order.metadata.name.clone().unwrap_or_default();
        let api = Api::<Order>::namespaced(ctx.client.clone(), &ns);
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        match api.create(&pp, order).await {
            Ok(created) => {
                ctx.metrics.wrote(KIND, "order");
                record_order(&api, &created, ctx).await?;
            }
            // Written before (a retry, or a crash after the create): it stands.
            // Its status may be missing if the crash came in between.
            Err(e) if is_conflict(&e) => {
                let Some(existing) = api.get_opt(&name).await? else {
                    return Err(Error::Waiting(format!(
                        "Order {ns}/{name} disappeared while it was being written"
                    )));
                };
                if !owned_by(existing.labels(), uid) {
                    return Ok(Some(WriteOutcome::Conflict(format!(
                        "Order {ns}/{name} exists and was not written for this instance ({}); nothing of it was changed",
                        foreign_owner(existing.labels())
                    ))));
                }
                if existing
                    .status
                    .as_ref()
                    .and_then(|s| ready(&s.conditions))
                    .is_none()
                {
                    record_order(&api, &existing, ctx).await?;
                }
            }
            Err(kube::Error::Api(s)) if is_permanent(&s) => {
                return Ok(Some(WriteOutcome::Rejected(format!(
                    "the API server refused Order {ns}/{name}: {} (HTTP {}); check the controller's permissions on orders",
                    s.message, s.code
                ))));
            }
            Err(e) => return Err(Error::from(e)),
        }
    }
    Ok(None)
}

/// Marks an Order as recorded (Ready=True); Orders have no other state.
async fn record_order(api: &Api<Order>, order: &Order, ctx: &Context) -> Result<(), Error> {
    let status = crate::api::OrderStatus {
        observed_generation: order.metadata.generation,
        conditions: vec![condition(
            &[],
            "Ready",
            true,
            "Recorded",
            "the order is recorded",
            order.metadata.generation,
        )],
    };
    if write_status_if_changed(api, &ctx.memo, order, order.status.as_ref(), &status).await? {
        ctx.metrics.wrote(KIND, "order-status");
    }
    Ok(())
}

/// Deletes, in `namespace`, every object of an allowed kind that carries this
/// instance's UID label and is not in `keep` (kind, name). The set comes from
/// the cluster (label-selected metadata), and each delete is guarded by the
/// object's UID, so a re-created object of the same name is never hit.
/// PersistentVolumeClaims are removed only when `all` (Deprovision).
async fn prune(
    ctx: &Context,
    uid: &str,
    namespace: &str,
    keep: &BTreeSet<(String, String)>,
    all: bool,
) -> Result<(), Error> {
    if uid.is_empty() {
        return Ok(());
    }
    let selector = format!(
        "{}={uid},{MANAGED_BY_LABEL}={MANAGED_BY}",
        labels::INSTANCE_UID
    );
    for ar in prunable_kinds(&ctx.settings.allowed_kinds) {
        let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), namespace, &ar);
        let list = match api
            .list_metadata(&ListParams::default().labels(&selector))
            .await
        {
            Ok(l) => l,
            // A kind that is not served (its CRD is gone) holds nothing to remove.
            Err(e) if is_not_found(&e) => continue,
            // A kind the controller may not list (Secrets, under the chart's
            // RBAC): what left the template of it stays, and is removed with
            // the instance (ownerReferences or its managed namespace).
            Err(kube::Error::Api(s)) if s.code == 403 => {
                tracing::debug!(kind = %ar.kind, "not allowed to list; nothing of it is pruned");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        for m in list.items {
            if is_left_over(&ar, &m, keep, uid, all) {
                delete_left_over(ctx, &api, &m).await?;
            }
        }
    }
    Ok(())
}

/// Pure: the kinds an instance's objects may have: the allowed kinds, and
/// Secrets (its logon Secret).
pub(super) fn prunable_kinds(allowed: &[AllowedKind]) -> Vec<ApiResource> {
    let mut kinds: Vec<ApiResource> = allowed.iter().map(api_resource).collect();
    let extra = std::iter::once(ApiResource::erase::<Secret>(&())).chain(
        // The managed namespace's policy objects (the operators' binding goes
        // when the seller names no operators any more).
        crate::domain::tenancy::POLICY_KINDS
            .iter()
            .map(|(group, version, kind, plural)| {
                api_resource(&AllowedKind {
                    group: group.to_string(),
                    version: version.to_string(),
                    kind: kind.to_string(),
                    plural: plural.to_string(),
                })
            }),
    );
    for k in extra {
        if !kinds.iter().any(|a| a.kind == k.kind && a.group == k.group) {
            kinds.push(k);
        }
    }
    kinds
}

/// Pure: whether `prune` deletes an object: this instance's, not being
/// deleted, not kept, and not a volume unless `all`.
fn is_left_over(
    ar: &ApiResource,
    m: &PartialObjectMeta<DynamicObject>,
    keep: &BTreeSet<(String, String)>,
    uid: &str,
    all: bool,
) -> bool {
    !(keep.contains(&(ar.kind.clone(), m.name_any()))
        // A product edit never deletes a customer's data: a volume
        // that left the template stays (it goes with the instance).
        || (ar.kind == "PersistentVolumeClaim" && ar.group.is_empty() && !all)
        || m.metadata.deletion_timestamp.is_some()
        || !owned_by(m.labels(), uid))
}

/// Deletes one object `prune` found, under its UID.
async fn delete_left_over(
    ctx: &Context,
    api: &Api<DynamicObject>,
    m: &PartialObjectMeta<DynamicObject>,
) -> Result<(), Error> {
    delete_with_uid(ctx, api, &m.name_any(), m.metadata.uid.clone()).await
}

/// Deletes `name` if it is still the object of `uid`.
async fn delete_with_uid(
    ctx: &Context,
    api: &Api<DynamicObject>,
    name: &str,
    uid: Option<String>,
) -> Result<(), Error> {
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: Some(Preconditions {
            uid,
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => ctx.metrics.wrote(KIND, "delete"),
        // Gone already, or replaced by another object of that name: not ours to delete.
        Err(e) if is_not_found(&e) || is_conflict(&e) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

async fn ensure_finalizer(inst: &ServiceInstance, ctx: &Context) -> Result<(), Error> {
    if inst.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let mut finalizers = inst.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    patch_finalizers(inst, ctx, finalizers).await
}

/// Merge patch guarded by resourceVersion: a concurrent change makes it fail with 409 and retry.
async fn patch_finalizers(
    inst: &ServiceInstance,
    ctx: &Context,
    finalizers: Vec<String>,
) -> Result<(), Error> {
    let api = Api::<ServiceInstance>::namespaced(ctx.client.clone(), &ns_of(inst));
    let patch =
        json!({"metadata": {"finalizers": finalizers, "resourceVersion": inst.resource_version()}});
    match api
        .patch(
            &inst.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => {
            ctx.metrics.wrote(KIND, "finalizer");
            Ok(())
        }
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes the objects of an instance (Deprovision) while it stays: what
/// carries its UID label in its target namespace, and its managed namespace.
async fn remove_everything(
    inst: &ServiceInstance,
    sale: &Sale,
    ctx: &Context,
) -> Result<(), Error> {
    let uid = inst.metadata.uid.clone().unwrap_or_default();
    if sale.target_namespace != ns_of(inst) {
        delete_managed_namespace(ctx, inst, &sale.target_namespace).await?;
    } else {
        // The logon Secret stays (it is rewritten without a URL on a redeploy).
        let keep = BTreeSet::from([(
            "Secret".to_string(),
            provision::logon_secret_name(&inst.name_any()),
        )]);
        prune(ctx, &uid, &sale.target_namespace, &keep, true).await?;
    }
    Ok(())
}

/// Deletes a managed namespace, only if the live namespace carries this
/// instance's UID label, and under a UID precondition. Ok(true) once it is gone.
async fn delete_managed_namespace(
    ctx: &Context,
    inst: &ServiceInstance,
    name: &str,
) -> Result<bool, Error> {
    let api = Api::<Namespace>::all(ctx.client.clone());
    let Some(meta) = api.get_metadata_opt(name).await? else {
        return Ok(true);
    };
    if !owned_by(
        meta.labels(),
        inst.metadata.uid.as_deref().unwrap_or_default(),
    ) {
        // Not ours (or no longer ours): never delete another party's namespace.
        return Ok(true);
    }
    if meta.metadata.deletion_timestamp.is_none() {
        delete_namespace_guarded(ctx, &api, name, meta.metadata.uid.clone()).await?;
    }
    Ok(false)
}

/// Deletes a namespace under a UID precondition (a namespace re-created under
/// the same name is never hit).
async fn delete_namespace_guarded(
    ctx: &Context,
    api: &Api<Namespace>,
    name: &str,
    uid: Option<String>,
) -> Result<(), Error> {
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: Some(Preconditions {
            uid,
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => {
            ctx.metrics.wrote(KIND, "delete");
            Ok(())
        }
        Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn cleanup(inst: &ServiceInstance, ctx: &Context) -> Result<Action, Error> {
    if !inst.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let ns = ns_of(inst);
    let uid = inst.metadata.uid.clone().unwrap_or_default();
    ctx.drift.forget(&uid);
    // Every namespace this instance may own: the one its status names (checked
    // against the live namespace's UID label before anything is deleted) and
    // the one its name and UID derive.
    let mut targets: Vec<String> = inst
        .status
        .as_ref()
        .and_then(|s| s.owner.as_ref())
        .map(|o| o.target_namespace.clone())
        .filter(|t| *t != ns)
        .into_iter()
        .collect();
    let derived = provision::managed_namespace_name(&ns, &inst.name_any(), &uid);
    if !targets.contains(&derived) {
        targets.push(derived);
    }
    let mut gone = true;
    for target in &targets {
        gone &= delete_managed_namespace(ctx, inst, target).await?;
    }
    if !gone {
        let target = targets.join(", ");
        if inst.status.as_ref().and_then(|s| s.phase) != Some(Phase::Deleting) {
            let api = Api::<ServiceInstance>::namespaced(ctx.client.clone(), &ns);
            let mut status = inst.status.clone().unwrap_or_default();
            status.phase = Some(Phase::Deleting);
            let previous = status.conditions.clone();
            status.conditions = vec![condition(
                &previous,
                "Ready",
                false,
                "Deleting",
                format!("removing namespace {target} and everything in it"),
                inst.metadata.generation,
            )];
            finish_status(inst, ctx, &api, status).await?;
        }
        // The namespace watch wakes us when it is gone; the requeue is a safety net.
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    let rest: Vec<String> = inst
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    patch_finalizers(inst, ctx, rest).await?;
    ctx.memo.forget(&format!("digest/{uid}"));
    Ok(Action::await_change())
}

/// Deletes managed namespaces whose instance no longer exists (its finalizer
/// was removed by hand, or it went while the controller was down): at start
/// and every `interval`. An instance is looked up live before its namespace
/// goes, and the delete is guarded by the namespace's UID.
pub async fn sweep_orphaned_namespaces(ctx: &Context) -> Result<usize, Error> {
    let api = Api::<Namespace>::all(ctx.client.clone());
    let mut removed = 0;
    for m in ctx.stores.namespaces.state() {
        let l = m.labels();
        let Some(uid) = l.get(labels::INSTANCE_UID) else {
            continue;
        };
        if m.metadata.deletion_timestamp.is_some()
            || l.get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGED_BY)
        {
            continue;
        }
        let Some(inst_ref) = instance_of_namespace(&m) else {
            continue;
        };
        let cached = ctx.stores.instances.get(&inst_ref);
        if cached.as_ref().and_then(|i| i.metadata.uid.as_ref()) == Some(uid) {
            continue;
        }
        // Not in the cache (or another UID): ask the API server, the cache may lag.
        let inst_api = Api::<ServiceInstance>::namespaced(
            ctx.client.clone(),
            inst_ref.namespace.as_deref().unwrap_or_default(),
        );
        let live = inst_api.get_metadata_opt(&inst_ref.name).await?;
        if live.as_ref().and_then(|i| i.metadata.uid.as_ref()) == Some(uid) {
            continue;
        }
        tracing::info!(namespace = %m.name_any(), instance = %inst_ref, "removing a managed namespace whose instance is gone");
        delete_namespace_guarded(ctx, &api, &m.name_any(), m.metadata.uid.clone()).await?;
        ctx.metrics.swept("namespace");
        removed += 1;
    }
    Ok(removed)
}

/// The move an instance starts in this reconcile (one not in its history yet).
fn starting_move(
    inst: &ServiceInstance,
    sel: &super::version::Selection,
) -> Option<super::version::Move> {
    let m = sel.moving.as_ref()?;
    let last = inst.status.as_ref().and_then(|s| s.history.last());
    let recorded = last.is_some_and(|h| {
        h.result == crate::api::VersionChangeResult::InProgress && h.from == m.from && h.to == m.to
    });
    (!recorded).then(|| m.clone())
}

/// Feeds the version's rollout with this instance's automatic move: under
/// way, or ended; a failure writes the version's status at once (a halt
/// must outlive the process).
async fn track_rollout(
    inst: &ServiceInstance,
    v: &Versions,
    said: &VersionSaid,
    data: &ProductData,
    ctx: &Context,
) -> Result<(), Error> {
    let uid = inst.metadata.uid.clone().unwrap_or_default();
    let (service_uid, generation) = v.selection.service_key.clone();
    if let Some((to, t)) = &said.under_way
        && super::version::is_automatic(inst, *t)
    {
        ctx.rollouts
            .moving((service_uid.clone(), to.clone()), generation, &uid);
    }
    if let Some((to, t, ok)) = &said.ended
        && super::version::is_automatic(inst, *t)
    {
        ctx.rollouts
            .finish((service_uid, to.clone()), generation, &uid, *ok);
        if !ok {
            super::version::note_rollout(ctx, &data.isv_namespace, &data.service_name, to).await?;
        }
    }
    Ok(())
}

/// Pure: the version conditions known before anything is written.
fn version_conditions(sel: &super::version::Selection) -> Vec<OtherCondition> {
    let mut out = Vec::new();
    if sel.available.is_empty() {
        out.push((
            "UpgradeAvailable",
            false,
            "UpToDate",
            "no newer version is published".to_string(),
        ));
    } else {
        out.push((
            "UpgradeAvailable",
            true,
            "NewerVersion",
            format!("newer published versions: {}", sel.available.join(", ")),
        ));
    }
    if let Some((to, why)) = &sel.blocked {
        out.push((
            "UpgradeBlocked",
            true,
            why.reason,
            format!(
                "stays at version {}, not {to}: {}",
                sel.version, why.message
            ),
        ));
    }
    out
}

/// What `version_status` found to say.
struct VersionSaid {
    /// A condition of the move (Upgrading or RolledBack).
    condition: Option<(&'static str, &'static str, String)>,
    /// The Ready message prefix while a move progresses.
    upgrading: Option<String>,
    /// Events: (warning, reason, message, change, result).
    events: Vec<(bool, &'static str, String, &'static str, &'static str)>,
    /// A move under way: (to, type).
    under_way: Option<(String, crate::api::VersionChangeType)>,
    /// A move that ended now: (to, type, succeeded).
    ended: Option<(String, crate::api::VersionChangeType, bool)>,
}

fn change_name(t: crate::api::VersionChangeType) -> &'static str {
    match t {
        crate::api::VersionChangeType::Upgrade => "Upgrade",
        crate::api::VersionChangeType::Rollback => "Rollback",
        crate::api::VersionChangeType::AutomaticRollback => "AutomaticRollback",
    }
}

/// Pure: the version fields of status after the objects were written and
/// their health rolled up: the version, the upgrades available, and the
/// history (a move recorded when it starts, ended when its objects are
/// healthy or stalled).
fn version_status(
    status: &mut ServiceInstanceStatus,
    inst: &ServiceInstance,
    sel: &super::version::Selection,
    starting: Option<&super::version::Move>,
    rollup: &health::Rollup,
    now: Timestamp,
) -> VersionSaid {
    use crate::api::{VersionChange, VersionChangeResult as R, VersionChangeType as T};
    let mut said = VersionSaid {
        condition: None,
        upgrading: None,
        events: Vec::new(),
        under_way: None,
        ended: None,
    };
    let previous_blocked = inst
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "UpgradeBlocked"))
        .map(|c| c.reason.clone());
    if let Some((to, why)) = &sel.blocked
        && previous_blocked.as_deref() != Some(why.reason)
    {
        said.events.push((
            true,
            "UpgradeBlocked",
            format!("not moved to version {to}: {}", why.message),
            "Upgrade",
            "Blocked",
        ));
    }
    status.version = Some(sel.version.clone());
    status.available_upgrades = sel.available.clone();
    let generation = inst.metadata.generation.unwrap_or_default();
    if let Some(m) = starting {
        status.history = crate::domain::versions::record(
            &status.history,
            VersionChange {
                from: m.from.clone(),
                to: m.to.clone(),
                type_: m.type_,
                result: R::InProgress,
                start_time: now.to_string(),
                end_time: None,
                message: String::new(),
                generation,
            },
        );
        // A move asked for is told by status.history (no Event: one write
        // less per instance, as for a first deployment); one the controller
        // starts by itself, an automatic rollback, gets an Event.
        said.events.push((
            m.type_ == T::AutomaticRollback,
            if m.type_ == T::AutomaticRollback {
                "RollbackStarted"
            } else {
                ""
            },
            format!("moving from version {} to {}", m.from, m.to),
            change_name(m.type_),
            "Started",
        ));
    }
    if let Some(last) = status.history.last_mut()
        && last.result == R::InProgress
        && last.to == sel.version
    {
        let change = change_name(last.type_);
        match rollup {
            health::Rollup::Healthy => {
                said.ended = Some((last.to.clone(), last.type_, true));
                last.result = R::Succeeded;
                last.end_time = Some(now.to_string());
                said.events.push((
                    false,
                    if last.type_ == T::AutomaticRollback {
                        "RolledBack"
                    } else {
                        ""
                    },
                    format!(
                        "moved from version {} to {}; every object is healthy",
                        last.from, last.to
                    ),
                    change,
                    "Succeeded",
                ));
            }
            health::Rollup::Stalled { message, .. } => {
                said.ended = Some((last.to.clone(), last.type_, false));
                last.result = R::Failed;
                last.end_time = Some(now.to_string());
                last.message = message.chars().take(512).collect();
                let back = inst.spec.rollback_on_failure && last.type_ == T::Upgrade;
                said.events.push((
                    true,
                    "UpgradeFailed",
                    format!(
                        "the move from version {} to {} failed: {message}{}",
                        last.from,
                        last.to,
                        if back { "; rolling back" } else { "" }
                    ),
                    change,
                    "Failed",
                ));
            }
            health::Rollup::Progressing { .. } => {
                said.under_way = Some((last.to.clone(), last.type_));
                said.condition = Some((
                    "Upgrading",
                    change,
                    format!("moving from version {} to {}", last.from, last.to),
                ));
                said.upgrading = Some(format!(
                    "upgrading from version {} to {}",
                    last.from, last.to
                ));
            }
        }
    }
    if said.condition.is_none()
        && let Some(last) = status.history.last()
        && last.type_ == T::AutomaticRollback
        && last.result == R::Succeeded
    {
        let failed = status
            .history
            .iter()
            .rev()
            .find(|h| h.type_ == T::Upgrade && h.result == R::Failed && h.to == last.from);
        said.condition = Some((
            "RolledBack",
            "UpgradeFailed",
            format!(
                "the upgrade to version {} failed{} and was rolled back to {}",
                last.from,
                failed
                    .map(|f| format!(" ({})", f.message))
                    .unwrap_or_default(),
                last.to
            ),
        ));
    }
    said
}

/// The desired objects of the instance at another version's offering.
fn desired_at(
    inst: &ServiceInstance,
    data: &ProductData,
    scenario: Option<Scenario>,
    offering: &crate::domain::render::Offering,
    sold: Option<&Sale>,
    ctx: &Context,
) -> Option<Desired> {
    let product = data.product(scenario, offering);
    provision::build(inst, &product, sold, &ctx.settings.tenancy.size_limits).ok()
}

/// What a move writes and removes.
#[derive(Default)]
struct MovePlan {
    /// Objects both versions write alike (`Kind`, name): not written again.
    unchanged: BTreeSet<(String, String)>,
    /// Objects only the old version has, to remove (None: not a move, or
    /// the old version's objects are unknown: prune by listing).
    removed: Option<Vec<Removed>>,
}

/// An object of the old version that the new one does not have.
struct Removed {
    ar: ApiResource,
    name: String,
}

/// Pure but for the rendering: what moving from the `from` offering to
/// `desired` writes and removes. Claims are removed only with `delete_claims`.
#[allow(clippy::too_many_arguments)]
fn move_plan(
    inst: &ServiceInstance,
    data: &ProductData,
    scenario: Option<Scenario>,
    from: &crate::domain::render::Offering,
    sold: Option<&Sale>,
    ctx: &Context,
    desired: &Desired,
    delete_claims: bool,
) -> MovePlan {
    let Some(old) = desired_at(inst, data, scenario, from, sold, ctx) else {
        return MovePlan::default();
    };
    let unchanged = unchanged_objects(&old, desired);
    let wanted: BTreeSet<(String, String)> = desired
        .objects
        .iter()
        .map(provision::kind_and_name)
        .collect();
    let removed = old
        .objects
        .iter()
        .filter_map(|o| {
            let (api_version, kind) = (o["apiVersion"].as_str()?, o["kind"].as_str()?);
            let name = o["metadata"]["name"].as_str()?;
            let claim = kind == "PersistentVolumeClaim" && api_version == "v1";
            (!wanted.contains(&(kind.to_string(), name.to_string())) && (!claim || delete_claims))
                .then(|| Removed {
                    ar: resource_for(&ctx.settings.allowed_kinds, api_version, kind),
                    name: name.to_string(),
                })
        })
        .collect();
    MovePlan {
        unchanged,
        removed: Some(removed),
    }
}

/// Deletes the objects a move removes: each only if it carries this
/// instance's UID label (from the cache, or one read), under its UID.
async fn remove_objects(
    ctx: &Context,
    uid: &str,
    namespace: &str,
    objects: &[Removed],
) -> Result<(), Error> {
    for r in objects {
        let meta = match ctx
            .provisioned
            .get(&r.ar.group, &r.ar.kind, namespace, &r.name)
        {
            Some(m) => Some(m),
            None => {
                let api =
                    Api::<DynamicObject>::namespaced_with(ctx.client.clone(), namespace, &r.ar);
                match api.get_metadata_opt(&r.name).await {
                    Ok(m) => m.map(|m| m.metadata),
                    Err(e) if is_not_found(&e) => None,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let Some(meta) = meta else { continue };
        if meta.deletion_timestamp.is_some()
            || !owned_by(&meta.labels.clone().unwrap_or_default(), uid)
        {
            continue;
        }
        let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), namespace, &r.ar);
        delete_with_uid(ctx, &api, &r.name, meta.uid).await?;
    }
    Ok(())
}

/// The objects both renderings write alike (not written again by a move).
fn unchanged_objects(old: &Desired, desired: &Desired) -> BTreeSet<(String, String)> {
    let key = provision::kind_and_name;
    let before: HashMap<(String, String), &serde_json::Value> =
        old.objects.iter().map(|o| (key(o), o)).collect();
    let mut same: BTreeSet<(String, String)> = desired
        .objects
        .iter()
        .filter(|o| before.get(&key(o)).is_some_and(|b| *b == *o))
        .map(key)
        .collect();
    // The logon Secret holds the logon URL: written again only if it changes.
    if old.logon_url == desired.logon_url && old.secret_name == desired.secret_name {
        same.insert(("Secret".to_string(), desired.secret_name.clone()));
    }
    same
}

/// The dry run of the version `Versions` previews, against what runs.
fn preview_status(
    inst: &ServiceInstance,
    data: &ProductData,
    scenario: Option<Scenario>,
    v: &Versions,
    sold: Option<&Sale>,
    ctx: &Context,
    desired: &Desired,
) -> Option<crate::api::UpgradePreview> {
    let p = v.selection.preview.as_ref()?;
    let to = p.version.clone();
    let delete_claims = false;
    let mut preview = match v
        .preview
        .as_ref()
        .and_then(|o| desired_at(inst, data, scenario, o, sold, ctx))
    {
        Some(next) => {
            crate::domain::versions::diff(&desired.objects, &next.objects, delete_claims, &to)
        }
        None => crate::api::UpgradePreview {
            to,
            ..Default::default()
        },
    };
    preview.missing_parameters = p.missing.clone();
    preview.blocked = p
        .blocked
        .as_ref()
        .map(|b| b.reason.to_string())
        .or_else(|| (!p.missing.is_empty()).then(|| "MissingParameters".to_string()));
    Some(preview)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(status: serde_json::Value) -> ServiceInstance {
        serde_json::from_value(json!({
            "apiVersion": "computenest.dev/v1alpha1", "kind": "ServiceInstance",
            "metadata": {"name": "db", "namespace": "cust", "uid": "u1"},
            "spec": {"serviceRef": {"kind": "Service", "namespace": "isv", "name": "s"}},
            "status": status
        }))
        .unwrap()
    }

    fn deployed_as(scenario: &str, party: &str, owner: &str, target: &str) -> ServiceInstance {
        instance(json!({
            "scenario": scenario, "appliedDigest": "d",
            "owner": {"party": party, "namespace": owner, "targetNamespace": target}
        }))
    }

    #[test]
    fn terms_in_status_count_only_where_this_instance_can_have_them() {
        let derived = provision::managed_namespace_name("cust", "db", "u1");
        let ok = deployed_as("DirectFullyManaged", "ISV", "isv", &derived);
        let sale = sale_in_status(&ok, Some("isv"), &derived).unwrap();
        assert_eq!(
            (sale.party, sale.target_namespace.as_str()),
            (Party::Isv, derived.as_str())
        );
        // Another target, another owner, an owner the scenario does not
        // give, or an instance never deployed: the status is ignored.
        for inst in [
            deployed_as("DirectFullyManaged", "ISV", "isv", "kube-system"),
            deployed_as("DirectFullyManaged", "ISV", "other", &derived),
            deployed_as("DirectFullyManaged", "Customer", "cust", &derived),
            deployed_as("DirectPrivate", "Customer", "cust", "elsewhere"),
            instance(json!({"scenario": "DirectPrivate",
                "owner": {"party": "Customer", "namespace": "cust", "targetNamespace": "cust"}})),
        ] {
            assert_eq!(sale_in_status(&inst, Some("isv"), &derived), None);
        }
        let own = deployed_as("DirectPrivate", "Customer", "cust", "cust");
        assert!(sale_in_status(&own, Some("isv"), &derived).is_some());
    }

    #[test]
    fn a_managed_namespace_shows_the_terms_only_for_its_own_instance() {
        let l = BTreeMap::from([
            (labels::INSTANCE_UID.to_string(), "u1".to_string()),
            (labels::SCENARIO.to_string(), "Scenario2".to_string()),
            (labels::OWNER_PARTY.to_string(), "Distributor".to_string()),
            (labels::OWNER_NAMESPACE.to_string(), "dist".to_string()),
        ]);
        let sale = sale_in_namespace_labels("cn-x", &l, "u1").unwrap();
        assert_eq!(
            (sale.scenario, sale.party, sale.owner_namespace.as_str()),
            (Scenario::Scenario2, Party::Distributor, "dist")
        );
        assert_eq!(sale.target_namespace, "cn-x");
        assert_eq!(sale_in_namespace_labels("cn-x", &l, "u2"), None);
        let mut partial = l.clone();
        partial.remove(labels::OWNER_NAMESPACE);
        assert_eq!(sale_in_namespace_labels("cn-x", &partial, "u1"), None);
    }

    #[test]
    fn a_taken_name_outweighs_a_refusal_which_outweighs_a_wait() {
        let outcome = |puts: Vec<Put>| match stopped_by(puts) {
            None => "done".to_string(),
            Some(WriteOutcome::Conflict(m)) => format!("conflict {m}"),
            Some(WriteOutcome::Rejected(m)) => format!("rejected {m}"),
            Some(WriteOutcome::Wait(m)) => format!("wait {m}"),
            Some(WriteOutcome::Done) => "Done".to_string(),
            Some(WriteOutcome::Refused { reason, .. }) => format!("refused {reason}"),
        };
        let wait = || Put::Wait("w".into());
        let refused = |m: &str| Put::Refused(m.into());
        assert_eq!(outcome(vec![Put::Written, Put::Written]), "done");
        assert_eq!(outcome(vec![wait(), Put::Written]), "wait w");
        assert_eq!(
            outcome(vec![wait(), refused("r1"), refused("r2")]),
            "rejected r1"
        );
        assert_eq!(
            outcome(vec![refused("r1"), wait(), Put::Taken("t".into())]),
            "conflict t"
        );
    }

    #[test]
    fn only_this_instances_objects_that_left_the_template_are_pruned() {
        let meta = |name: &str, uid: &str| -> PartialObjectMeta<DynamicObject> {
            serde_json::from_value(json!({
                "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                "metadata": {"name": name, "labels": {
                    labels::INSTANCE_UID: uid, MANAGED_BY_LABEL: MANAGED_BY
                }}
            }))
            .unwrap()
        };
        let cm = ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&());
        let pvc = ApiResource::erase::<k8s_openapi::api::core::v1::PersistentVolumeClaim>(&());
        let keep = BTreeSet::from([("ConfigMap".to_string(), "kept".to_string())]);
        assert!(is_left_over(&cm, &meta("gone", "u1"), &keep, "u1", false));
        assert!(!is_left_over(&cm, &meta("kept", "u1"), &keep, "u1", false));
        assert!(!is_left_over(&cm, &meta("gone", "u2"), &keep, "u1", false));
        // A customer's volume goes only with everything else (Deprovision).
        assert!(!is_left_over(&pvc, &meta("data", "u1"), &keep, "u1", false));
        assert!(is_left_over(&pvc, &meta("data", "u1"), &keep, "u1", true));
    }
}
