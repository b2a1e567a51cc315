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
use super::{Context, Error, MANAGED_BY, MANAGED_BY_LABEL, is_conflict, is_not_found, ns_of};
use crate::api::{
    AppliedObject, DerivedService, FIELD_MANAGER, Order, Phase, ProductKind, RevocationPolicy,
    Service, ServiceInstance, ServiceInstanceStatus,
};
use crate::distribution::NotSellable;
use crate::metrics::{InstanceLabels, Metrics};
use crate::provision::{self, Desired, Product, labels};
use crate::render::{AllowedKind, resolve_offering};
use crate::scenario::Scenario;
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{
    Api, DeleteParams, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams, PropagationPolicy,
};
use kube::core::{ApiResource, PartialObjectMeta};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::{ObjectRef, ReflectHandle, Store};
use kube::{Resource, ResourceExt};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

const KIND: &str = "ServiceInstance";
/// Finalizer on managed instances: their namespace is removed before the instance goes.
pub const FINALIZER: &str = "computenest.dev/managed-namespace";

/// The ServiceInstance controller, until `shutdown`. Reacts to its products
/// (derived services and services) and to the namespaces it created.
pub async fn controller(
    trigger: ReflectHandle<ServiceInstance>,
    store: Store<ServiceInstance>,
    derived: super::Trigger<DerivedService>,
    services: super::Trigger<Service>,
    namespaces: super::Trigger<PartialObjectMeta<Namespace>>,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let concurrency = ctx.settings.concurrency;
    let (d1, d2) = (store.clone(), store.clone());
    // A Service change concerns its direct buyers and the buyers of every
    // product derived from it (its template, its revocation policy).
    let of_service = {
        let instances = store.clone();
        let derived = ctx.stores.derived.clone();
        move |s: &Service| {
            let ns = s.metadata.namespace.clone().unwrap_or_default();
            let name = s.metadata.name.clone().unwrap_or_default();
            let mut refs = instances_of(&instances, ProductKind::Service, s);
            for d in derived
                .state_filter(|d| d.spec.source.namespace == ns && d.spec.source.name == name)
            {
                refs.extend(instances_of(
                    &instances,
                    ProductKind::DerivedService,
                    d.as_ref(),
                ));
            }
            refs
        }
    };
    let (s1, s2) = (of_service.clone(), of_service);
    // Handles are moved in, never cloned and kept: an idle one would stall the reflector.
    let (derived_gone, services_gone, namespaces_gone) = (
        derived.deletions(),
        services.deletions(),
        namespaces.deletions(),
    );
    Controller::for_shared_stream(trigger, store)
        .watches_shared_stream(derived.handle, move |d: Arc<DerivedService>| {
            instances_of(&d1, ProductKind::DerivedService, d.as_ref())
        })
        .watches_stream(derived_gone, move |d: DerivedService| {
            instances_of(&d2, ProductKind::DerivedService, &d)
        })
        .watches_shared_stream(services.handle, move |s: Arc<Service>| s1(&s))
        .watches_stream(services_gone, move |s: Service| s2(&s))
        .watches_shared_stream(
            namespaces.handle,
            |ns: Arc<PartialObjectMeta<Namespace>>| instance_of_namespace(&ns),
        )
        .watches_stream(namespaces_gone, |ns: PartialObjectMeta<Namespace>| {
            instance_of_namespace(&ns)
        })
        .with_config(Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(
            reconcile,
            |obj, e, ctx| super::on_error(KIND, obj.as_ref(), e, &ctx),
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

/// The instance a managed namespace was created for.
fn instance_of_namespace(ns: &PartialObjectMeta<Namespace>) -> Option<ObjectRef<ServiceInstance>> {
    let l = ns.labels();
    match (
        l.get(labels::INSTANCE_NAMESPACE),
        l.get(labels::INSTANCE_NAME),
    ) {
        (Some(n), Some(name)) => Some(ObjectRef::new(name).within(n)),
        _ => None,
    }
}

fn instances_of<K: Resource>(
    store: &Store<ServiceInstance>,
    kind: ProductKind,
    product: &K,
) -> Vec<ObjectRef<ServiceInstance>> {
    let ns = product.meta().namespace.clone().unwrap_or_default();
    let name = product.meta().name.clone().unwrap_or_default();
    store
        .state_filter(|i| {
            i.spec.service_ref.kind == kind
                && i.spec.service_ref.namespace == ns
                && i.spec.service_ref.name == name
        })
        .into_iter()
        .map(|i| ObjectRef::from_obj(i.as_ref()))
        .collect()
}

/// Refreshes the instances-by-phase gauge from the cache.
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
    outcome: Result<(ProductData, crate::render::Offering), NotSellable>,
    grant_expiry: Option<Timestamp>,
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

fn resolve(inst: &ServiceInstance, ctx: &Context, now: Timestamp) -> Resolved {
    let r = &inst.spec.service_ref;
    let product = format!("{:?} {}/{}", r.kind, r.namespace, r.name);
    let not_found = |what: &str| NotSellable {
        reason: "ProductNotFound",
        message: format!(
            "{what} {}/{} does not exist; check spec.serviceRef",
            r.namespace, r.name
        ),
        scenario: None,
        grant: None,
        should_apply: false,
    };
    match r.kind {
        ProductKind::Service => {
            let Some(svc) = ctx
                .stores
                .services
                .get(&ObjectRef::new(&r.name).within(&r.namespace))
            else {
                return Resolved {
                    product,
                    scenario: None,
                    on_revoke: RevocationPolicy::default(),
                    outcome: Err(not_found("Service")),
                    grant_expiry: None,
                };
            };
            let scenario = Scenario::direct(svc.spec.type_);
            let outcome = resolve_offering(&svc.spec, None, &ctx.settings.allowed_kinds)
                .map(|o| {
                    (
                        ProductData {
                            kind: ProductKind::Service,
                            namespace: r.namespace.clone(),
                            name: r.name.clone(),
                            isv_namespace: r.namespace.clone(),
                            service_name: r.name.clone(),
                            isv_product_code: svc.spec.marketplace.product_code.clone(),
                            product_code: svc.spec.marketplace.product_code.clone(),
                            price: svc.spec.marketplace.price.clone(),
                        },
                        o,
                    )
                })
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
            }
        }
        ProductKind::DerivedService => {
            let Some(ds) = ctx
                .stores
                .derived
                .get(&ObjectRef::new(&r.name).within(&r.namespace))
            else {
                return Resolved {
                    product,
                    scenario: None,
                    on_revoke: RevocationPolicy::default(),
                    outcome: Err(not_found("DerivedService")),
                    grant_expiry: None,
                };
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
            match super::derived::evaluate(&ds, ctx, now) {
                Ok(sellable) => Resolved {
                    product,
                    scenario: Some(sellable.scenario),
                    on_revoke,
                    grant_expiry: sellable.grant_expiry,
                    outcome: Ok((
                        ProductData {
                            kind: ProductKind::DerivedService,
                            namespace: r.namespace.clone(),
                            name: r.name.clone(),
                            isv_namespace: src.namespace.clone(),
                            service_name: src.name.clone(),
                            isv_product_code: svc
                                .as_ref()
                                .and_then(|s| s.spec.marketplace.product_code.clone()),
                            product_code: ds.spec.marketplace.product_code.clone(),
                            price: ds.spec.marketplace.price.clone(),
                        },
                        sellable.offering,
                    )),
                },
                Err(n) => Resolved {
                    product,
                    scenario: n.scenario,
                    on_revoke,
                    outcome: Err(n),
                    grant_expiry: None,
                },
            }
        }
    }
}

async fn reconcile(inst: Arc<ServiceInstance>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let ns = ns_of(inst.as_ref());
    if !ctx.settings.watches(&ns) {
        return Ok(Action::await_change());
    }
    if let Some(wait) = ctx.not_synced() {
        return Ok(wait);
    }
    let result = if inst.metadata.deletion_timestamp.is_some() {
        cleanup(&inst, &ctx).await
    } else {
        apply(&inst, &ctx).await
    };
    ctx.metrics.reconciled(KIND, started.elapsed());
    result
}

struct StatusBuilder<'a> {
    inst: &'a ServiceInstance,
    status: ServiceInstanceStatus,
}

impl<'a> StatusBuilder<'a> {
    fn new(inst: &'a ServiceInstance, resolved: &Resolved) -> Self {
        let prev = inst.status.clone().unwrap_or_default();
        let status = ServiceInstanceStatus {
            observed_generation: inst.metadata.generation,
            product: Some(resolved.product.clone()),
            scenario: resolved.scenario.map(|s| s.as_str().to_string()),
            // Kept from before unless this reconcile learns better.
            owner: prev.owner.clone(),
            billing: prev.billing.clone(),
            logon_url: prev.logon_url.clone(),
            credentials_secret: prev.credentials_secret.clone(),
            applied_objects: prev.applied_objects.clone(),
            applied_digest: prev.applied_digest.clone(),
            phase: prev.phase,
            conditions: Vec::new(),
        };
        StatusBuilder { inst, status }
    }

    fn previous(&self) -> &[crate::api::Condition] {
        self.inst
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default()
    }

    fn set(
        &mut self,
        phase: Phase,
        ready: bool,
        reason: &str,
        message: String,
        grant: Option<(bool, &str, String)>,
    ) {
        let generation = self.inst.metadata.generation;
        let mut conditions = vec![condition(
            self.previous(),
            "Ready",
            ready,
            reason,
            message,
            generation,
        )];
        if let Some((ok, reason, message)) = grant {
            conditions.push(condition(
                self.previous(),
                "GrantValid",
                ok,
                reason,
                message,
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

async fn apply(inst: &ServiceInstance, ctx: &Context) -> Result<Action, Error> {
    let now = Timestamp::now();
    let resolved = resolve(inst, ctx, now);
    let mut sb = StatusBuilder::new(inst, &resolved);
    let is_derived = inst.spec.service_ref.kind == ProductKind::DerivedService;
    let api = Api::<ServiceInstance>::namespaced(ctx.client.clone(), &ns_of(inst));

    let (data, offering) = match &resolved.outcome {
        Ok(ok) => ok,
        Err(n) => {
            if was_deployed(inst) {
                // Sales stopped; what runs follows the Service's revocation policy.
                match resolved.on_revoke {
                    RevocationPolicy::KeepRunning => {
                        let phase = inst
                            .status
                            .as_ref()
                            .and_then(|s| s.phase)
                            .unwrap_or(Phase::Deployed);
                        sb.set(
                            phase,
                            phase == Phase::Deployed,
                            if phase == Phase::Deployed {
                                "Deployed"
                            } else {
                                "NotSellable"
                            },
                            format!(
                                "running; no longer sellable: {} (onRevoke: KeepRunning)",
                                n.message
                            ),
                            Some((false, n.reason, n.message.clone())),
                        );
                    }
                    RevocationPolicy::Deprovision => {
                        remove_everything(inst, ctx).await?;
                        sb.status.applied_objects.clear();
                        sb.status.applied_digest = None;
                        sb.status.logon_url = None;
                        sb.set(
                            Phase::DeployFailed,
                            false,
                            n.reason,
                            format!("resources removed (onRevoke: Deprovision): {}", n.message),
                            Some((false, n.reason, n.message.clone())),
                        );
                    }
                }
            } else {
                let phase = if n.reason == "GrantPending" {
                    Phase::Pending
                } else {
                    Phase::DeployFailed
                };
                let grant = is_derived.then(|| (false, n.reason, n.message.clone()));
                sb.set(
                    phase,
                    false,
                    n.reason,
                    format!("not deployed: {}", n.message),
                    grant,
                );
            }
            finish_status(inst, ctx, &api, sb.status).await?;
            return Ok(Action::await_change());
        }
    };

    let product = Product {
        kind: data.kind,
        namespace: &data.namespace,
        name: &data.name,
        isv_namespace: &data.isv_namespace,
        service_name: &data.service_name,
        isv_product_code: data.isv_product_code.as_deref(),
        product_code: data.product_code.as_deref(),
        price: data.price.as_deref(),
        scenario: resolved.scenario.unwrap_or(Scenario::DirectPrivate),
        offering,
    };
    let grant_ok = is_derived.then(|| {
        (
            true,
            "Approved",
            "the distribution grant is approved".to_string(),
        )
    });
    let desired = match provision::build(inst, &product) {
        Ok(d) => d,
        Err(e) => {
            sb.set(Phase::DeployFailed, false, e.reason, e.message, grant_ok);
            finish_status(inst, ctx, &api, sb.status).await?;
            return Ok(Action::await_change());
        }
    };

    let prev = inst.status.as_ref();
    let digest_key = format!(
        "digest/{}",
        inst.metadata.uid.as_deref().unwrap_or_default()
    );
    let seen_in_cache = prev.is_some_and(|s| {
        s.applied_digest.as_deref() == Some(desired.digest.as_str())
            && s.phase == Some(Phase::Deployed)
    });
    if seen_in_cache {
        // The cache has caught up with the write: the memo entry is no longer needed.
        ctx.memo.forget(&digest_key);
    }
    let up_to_date = seen_in_cache || ctx.memo.is_same(&digest_key, &desired.digest);
    if !up_to_date {
        match write_desired(inst, &desired, ctx).await? {
            WriteOutcome::Done => ctx.memo.record(&digest_key, &desired.digest),
            WriteOutcome::Wait(msg) => {
                sb.set(Phase::Deploying, false, "Deploying", msg, grant_ok);
                finish_status(inst, ctx, &api, sb.status).await?;
                return Ok(Action::requeue(Duration::from_secs(2)));
            }
            WriteOutcome::Rejected(msg) => {
                sb.set(Phase::DeployFailed, false, "ApplyFailed", msg, grant_ok);
                finish_status(inst, ctx, &api, sb.status).await?;
                // The cause may be outside the object (RBAC, a missing CRD): look again later, slowly.
                return Ok(Action::requeue(Duration::from_secs(60)));
            }
        }
    }
    let s = &mut sb.status;
    s.owner = Some(desired.owner.clone());
    s.billing = Some(desired.billing.clone());
    s.logon_url = desired.logon_url.clone();
    s.credentials_secret = Some(desired.secret_name.clone());
    s.applied_objects = desired.applied.clone();
    s.applied_digest = Some(desired.digest.clone());
    let owner = &desired.owner;
    sb.set(
        Phase::Deployed,
        true,
        "Deployed",
        format!(
            "{} objects written to namespace {} ({}, owned by the {})",
            desired.applied.len(),
            owner.target_namespace,
            desired.scenario.as_str(),
            owner.party
        ),
        grant_ok,
    );
    finish_status(inst, ctx, &api, sb.status).await?;
    Ok(requeue_at(resolved.grant_expiry))
}

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
            // A first deployment is told by the Ready condition alone (one write
            // less per instance); recoveries and failures get an Event.
            && !(c.reason == "Deployed" && before.is_none())
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
enum WriteOutcome {
    /// Everything is written.
    Done,
    /// Something must finish first (an old namespace of the same name terminating).
    Wait(String),
    /// The API server refused an object for good: retrying the same object cannot help.
    Rejected(String),
}

/// Errors that retrying the same request cannot fix: the object itself is
/// wrong (400, 422, a typed-patch failure reported as 500), or the kind is
/// not served or not permitted (403, 404).
fn is_permanent(s: &kube::core::Status) -> bool {
    matches!(s.code, 400 | 403 | 404 | 415 | 422)
        || (s.code == 500 && s.message.contains("failed to create typed patch object"))
}

/// Writes the desired state.
async fn write_desired(
    inst: &ServiceInstance,
    d: &Desired,
    ctx: &Context,
) -> Result<WriteOutcome, Error> {
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let inst_ns = ns_of(inst);
    let uid = inst.metadata.uid.clone().unwrap_or_default();
    let target = &d.owner.target_namespace;

    if let Some(ns_labels) = &d.managed_namespace_labels {
        // Finalizer first: from here on, something may exist outside the customer's namespace.
        ensure_finalizer(inst, ctx).await?;
        let ns_api = Api::<Namespace>::all(ctx.client.clone());
        let uid_of = |m: &PartialObjectMeta<Namespace>| {
            m.labels()
                .get(labels::INSTANCE_UID)
                .cloned()
                .unwrap_or_default()
        };
        let owner_uid = match ctx.stores.namespaces.get(&ObjectRef::new(target)) {
            Some(m) => Some(uid_of(&m)),
            None => {
                // Create, never take over: a namespace of that name that is not
                // in the cache (not labelled as ours) must not be written.
                let ns = Namespace {
                    metadata: ObjectMeta {
                        name: Some(target.clone()),
                        labels: Some(ns_labels.clone()),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                let pp = PostParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                };
                match ns_api.create(&pp, &ns).await {
                    Ok(_) => {
                        ctx.metrics.wrote(KIND, "namespace");
                        Some(uid.clone())
                    }
                    Err(e) if is_conflict(&e) => {
                        ns_api.get_metadata_opt(target).await?.map(|m| uid_of(&m))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        if let Some(other) = owner_uid
            && other != uid
        {
            return Ok(WriteOutcome::Wait(format!(
                "namespace {target} exists and does not belong to this instance (instance uid label {other:?}); waiting for it to be removed"
            )));
        }
    }

    // The objects are independent of each other: write them at once.
    let writes = d.objects.iter().map(|obj| {
        let ar = resource_for(
            &ctx.settings.allowed_kinds,
            obj["apiVersion"].as_str().unwrap_or_default(),
            obj["kind"].as_str().unwrap_or_default(),
        );
        let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), target, &ar);
        let pp = &pp;
        async move {
            let name = obj["metadata"]["name"].as_str().unwrap_or_default();
            match api.patch(name, pp, &Patch::Apply(obj)).await {
                Ok(_) => {
                    ctx.metrics.wrote(KIND, "object");
                    Ok(None)
                }
                Err(kube::Error::Api(s)) if is_permanent(&s) => Ok(Some(format!(
                    "the API server refused {} {name}: {} (HTTP {}); the seller must fix the template",
                    ar.kind, s.message, s.code
                ))),
                Err(e) => Err(Error::from(e)),
            }
        }
    });
    let secret_write = async {
        // The logon URL, for the customer, in the customer's namespace.
        let mut data = BTreeMap::new();
        if let Some(url) = &d.logon_url {
            data.insert("logonUrl".to_string(), ByteString(url.clone().into_bytes()));
        }
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(d.secret_name.clone()),
                namespace: Some(inst_ns.clone()),
                labels: Some(BTreeMap::from([
                    (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
                    (
                        labels::INSTANCE_NAME.to_string(),
                        inst.name_any().chars().take(63).collect(),
                    ),
                ])),
                owner_references: inst.controller_owner_ref(&()).map(|r| vec![r]),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        };
        let mut secret_body = serde_json::to_value(&secret)?;
        secret_body["apiVersion"] = json!("v1");
        secret_body["kind"] = json!("Secret");
        Api::<Secret>::namespaced(ctx.client.clone(), &inst_ns)
            .patch(&d.secret_name, &pp, &Patch::Apply(&secret_body))
            .await?;
        ctx.metrics.wrote(KIND, "secret");
        Ok::<(), Error>(())
    };

    let order_writes = async {
        // Orders: created once, never changed; an existing one stands.
        for order in &d.orders {
            let ns = order.metadata.namespace.clone().unwrap_or_default();
            let api = Api::<Order>::namespaced(ctx.client.clone(), &ns);
            match api
                .create(
                    &PostParams {
                        field_manager: Some(FIELD_MANAGER.into()),
                        ..Default::default()
                    },
                    order,
                )
                .await
            {
                Ok(created) => {
                    ctx.metrics.wrote(KIND, "order");
                    record_order(&api, &created, ctx).await?;
                }
                // Written before (a retry, or a crash after the create): it stands.
                // Its status may be missing if the crash came in between.
                Err(e) if is_conflict(&e) => {
                    let name = order.metadata.name.as_deref().unwrap_or_default();
                    if let Some(existing) = api.get_opt(name).await?
                        && existing
                            .status
                            .as_ref()
                            .and_then(|s| ready(&s.conditions))
                            .is_none()
                    {
                        record_order(&api, &existing, ctx).await?;
                    }
                }
                Err(kube::Error::Api(s)) if is_permanent(&s) => {
                    let name = order.metadata.name.as_deref().unwrap_or_default();
                    return Ok(Some(format!(
                        "the API server refused Order {ns}/{name}: {} (HTTP {}); check the controller's permissions on orders",
                        s.message, s.code
                    )));
                }
                Err(e) => return Err(Error::from(e)),
            }
        }
        Ok::<Option<String>, Error>(None)
    };

    // The objects and the customer's Secret do not depend on each other. Orders
    // come after: no sale is recorded for objects the API server refused.
    let (refused, ()) = tokio::try_join!(futures::future::try_join_all(writes), secret_write)?;
    if let Some(msg) = refused.into_iter().flatten().next() {
        return Ok(WriteOutcome::Rejected(msg));
    }
    if let Some(msg) = order_writes.await? {
        return Ok(WriteOutcome::Rejected(msg));
    }

    // Remove what left the template.
    let keep: BTreeSet<&AppliedObject> = d.applied.iter().collect();
    if let Some(prev) = inst.status.as_ref() {
        for old in prev.applied_objects.iter().filter(|o| !keep.contains(o)) {
            delete_object(ctx, old).await?;
        }
    }

    Ok(WriteOutcome::Done)
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

async fn delete_object(ctx: &Context, o: &AppliedObject) -> Result<(), Error> {
    let ar = resource_for(&ctx.settings.allowed_kinds, &o.api_version, &o.kind);
    let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), &o.namespace, &ar);
    match api.delete(&o.name, &DeleteParams::background()).await {
        Ok(_) => {
            ctx.metrics.wrote(KIND, "delete");
            Ok(())
        }
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
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

/// Removes the objects of an instance (Deprovision) while it stays.
async fn remove_everything(inst: &ServiceInstance, ctx: &Context) -> Result<(), Error> {
    if let Some(s) = inst.status.as_ref() {
        for o in &s.applied_objects {
            delete_object(ctx, o).await?;
        }
        if let Some(owner) = &s.owner
            && owner.target_namespace != ns_of(inst)
        {
            delete_managed_namespace(ctx, inst, &owner.target_namespace).await?;
        }
    }
    Ok(())
}

/// Deletes a managed namespace, only if it carries this instance's UID.
async fn delete_managed_namespace(
    ctx: &Context,
    inst: &ServiceInstance,
    name: &str,
) -> Result<bool, Error> {
    let api = Api::<Namespace>::all(ctx.client.clone());
    let Some(meta) = api.get_metadata_opt(name).await? else {
        return Ok(true);
    };
    if meta.labels().get(labels::INSTANCE_UID).map(String::as_str) != inst.metadata.uid.as_deref() {
        // Not ours (or no longer ours): never delete another party's namespace.
        return Ok(true);
    }
    if meta.metadata.deletion_timestamp.is_none() {
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        match api.delete(name, &dp).await {
            Ok(_) => ctx.metrics.wrote(KIND, "delete"),
            Err(e) if is_not_found(&e) => return Ok(true),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(false)
}

async fn cleanup(inst: &ServiceInstance, ctx: &Context) -> Result<Action, Error> {
    if !inst.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let target = inst
        .status
        .as_ref()
        .and_then(|s| s.owner.as_ref())
        .map(|o| o.target_namespace.clone())
        .unwrap_or_else(|| provision::managed_namespace_name(&ns_of(inst), &inst.name_any()));
    let gone = target == ns_of(inst) || delete_managed_namespace(ctx, inst, &target).await?;
    if !gone {
        if inst.status.as_ref().and_then(|s| s.phase) != Some(Phase::Deleting) {
            let api = Api::<ServiceInstance>::namespaced(ctx.client.clone(), &ns_of(inst));
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
    let uid = inst.metadata.uid.as_deref().unwrap_or_default();
    ctx.memo.forget(&format!("digest/{uid}"));
    Ok(Action::await_change())
}
