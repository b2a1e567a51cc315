//! AccessRequest controller: time-boxed permissions on the managed namespace
//! of a fully managed instance, decided by the owner of its resources.
//!
//! Stages: decide (pure, `crate::domain::access::decide`) from the caches: the
//! request, its instance, the owner's AccessPolicy and the AccessApprovals
//! naming it; then have exactly what the outcome says in the instance's
//! managed namespace: one Role and one RoleBinding (server-side apply) while
//! Active, none otherwise; write status only when it changed; look again at
//! the expiry instant (no polling).
//!
//! Cleanup needs no finalizer (a customer could remove one and keep the
//! access): the Role and RoleBinding are named after the request's UID and
//! labelled with it. The cleaner takes the deletion events (fast, but
//! dropped when their bounded broadcast lags) and compares the request cache
//! with itself every second (this sees a deletion even after a watch
//! restart, though not a request created and deleted between two looks:
//! the events and the sweep cover that), and removes the grants of the few
//! requests that left it. A sweep runs at start, every `--sweep-interval`, at once after a burst
//! of deletions and after a failed cleanup: it lists the labelled Roles and
//! RoleBindings, confirms with a live GET that their request is gone (or is
//! another one of the same name) and deletes them with a UID precondition.
//! When the instance is deleted, its managed namespace goes with everything
//! in it.
//!
//! Also here: the AccessApproval controller (its status says whether the
//! decision counts), and Events on both sides: on the request in the
//! customer's namespace, on the approval and on the owner's product in the
//! owner's namespace.

use super::grant::requeue_at;
use super::status::{condition, ready, write_status_if_changed};
use super::{
    Context, Error, MANAGED_BY, MANAGED_BY_LABEL, is_conflict, is_not_found, is_permanent, ns_of,
};
use crate::api::{
    AccessApproval, AccessPhase, AccessPolicy, AccessRequest, AccessRequestStatus, AccessSubject,
    DerivedService, FIELD_MANAGER, Party, ProductKind, Service, ServiceInstance, SubjectKind,
};
use crate::domain::access::{self, ApprovalView, InstanceState, Outcome, RequestView, labels};
use crate::domain::provision;
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

pub(super) const KIND: &str = "AccessRequest";
pub(super) const APPROVAL_KIND: &str = "AccessApproval";
const RBAC_API_VERSION: &str = "rbac.authorization.k8s.io/v1";

pub(super) async fn reconcile(req: Arc<AccessRequest>, ctx: Arc<Context>) -> Result<Action, Error> {
    if req.metadata.deletion_timestamp.is_some() {
        // Held by someone else's finalizer: the access ends now all the same.
        let targets = deletion_targets(&req, &ctx);
        revoke(&req, &ctx, &targets, true)
            .await
            .map(|_| Action::await_change())
    } else {
        apply(&req, &ctx).await
    }
}

/// The owner's product, for the owner-side Events.
enum Product {
    Service(Arc<Service>),
    Derived(Arc<DerivedService>),
}

/// The AccessPolicy that applies to an instance: the product of the party
/// that owns its resources (the DerivedService in scenario 2, the ISV's
/// Service otherwise). No policy (or no product any more) means the
/// defaults: Manual approval, at most 3600 s, no Secrets.
fn policy_of(inst: Option<&ServiceInstance>, ctx: &Context) -> (AccessPolicy, Option<Product>) {
    let Some(inst) = inst else {
        return (AccessPolicy::default(), None);
    };
    let r = &inst.spec.service_ref;
    let owner = inst
        .status
        .as_ref()
        .and_then(|s| s.owner.as_ref())
        .map(|o| o.party);
    let service = |ns: &str, name: &str| {
        ctx.stores
            .services
            .get(&ObjectRef::new(name).within(ns))
            .map(|s| {
                (
                    s.spec.access.clone().unwrap_or_default(),
                    Some(Product::Service(s)),
                )
            })
    };
    let found = match r.kind {
        ProductKind::Service => service(&r.namespace, &r.name),
        ProductKind::DerivedService => {
            let ds = ctx
                .stores
                .derived
                .get(&ObjectRef::new(&r.name).within(&r.namespace));
            match (owner, ds) {
                (Some(Party::Distributor), Some(ds)) => Some((
                    ds.spec.access.clone().unwrap_or_default(),
                    Some(Product::Derived(ds)),
                )),
                (_, Some(ds)) => service(&ds.spec.source.namespace, &ds.spec.source.name),
                (_, None) => None,
            }
        }
    };
    found.unwrap_or_default()
}

/// Whether the managed namespace exists for this instance (its UID label) and
/// is not terminating: from the cache, else from the API server (the
/// namespace's watch event may come after the instance's).
async fn namespace_ready(
    ctx: &Context,
    inst: &ServiceInstance,
    target: &str,
) -> Result<bool, Error> {
    let uid = inst.metadata.uid.as_deref();
    let fits = |labels: &BTreeMap<String, String>, deleting: bool| {
        !deleting
            && labels
                .get(provision::labels::INSTANCE_UID)
                .map(String::as_str)
                == uid
    };
    if let Some(m) = ctx.stores.namespaces.get(&ObjectRef::new(target))
        && fits(m.labels(), m.metadata.deletion_timestamp.is_some())
    {
        return Ok(true);
    }
    let live = Api::<Namespace>::all(ctx.client.clone())
        .get_metadata_opt(target)
        .await?;
    Ok(live.is_some_and(|m| fits(m.labels(), m.metadata.deletion_timestamp.is_some())))
}

/// What a request names, from the caches: its instance (where it stands),
/// the owner's AccessPolicy and product, and the AccessApprovals naming it.
struct Named {
    instance: InstanceState,
    policy: AccessPolicy,
    product: Option<Product>,
    approvals: Vec<Arc<AccessApproval>>,
}

/// Dereferences a request. Whether the managed namespace is ready may take
/// a live read (see [`namespace_ready`]); the rest comes from the caches.
async fn dereference(req: &AccessRequest, ctx: &Context) -> Result<Named, Error> {
    let ns = ns_of(req);
    let inst = ctx
        .stores
        .instances
        .get(&ObjectRef::new(&req.spec.instance_name).within(&ns));
    let mut instance = access::instance_state(inst.as_deref());
    if let (
        InstanceState::Managed {
            target_namespace,
            namespace_ready: ready,
            ..
        },
        Some(inst),
    ) = (&mut instance, inst.as_deref())
    {
        *ready = namespace_ready(ctx, inst, target_namespace).await?;
    }
    let (policy, product) = policy_of(inst.as_deref(), ctx);
    let approvals: Vec<_> = ctx
        .index
        .approvals_of(&ObjectRef::from_obj(req))
        .iter()
        .filter_map(|a| ctx.stores.access_approvals.get(a))
        .collect();
    Ok(Named {
        instance,
        policy,
        product,
        approvals,
    })
}

/// Reconciles a request that is not being deleted: dereference, decide
/// (pure: `access::decide` validates, narrows and weighs the approvals),
/// have what the outcome says in the managed namespace, write status.
async fn apply(req: &AccessRequest, ctx: &Context) -> Result<Action, Error> {
    let named = dereference(req, ctx).await?;
    let approvals: Vec<ApprovalView<'_>> = named
        .approvals
        .iter()
        .map(|a| ApprovalView::of(a))
        .collect();
    let view = RequestView::of(req);
    let outcome = access::decide(
        &view,
        &named.instance,
        &named.policy,
        &ctx.settings.grantable,
        &approvals,
        Timestamp::now(),
    );
    let applied = apply_outcome(req, ctx, &named.instance, outcome).await?;
    let status = request_status(
        req,
        &view.digest,
        &applied.outcome,
        applied.target_namespace,
    );
    write_request_status(req, ctx, &status, &applied.outcome, &named).await?;
    Ok(applied.action)
}

/// What was done in the managed namespace: the outcome as it stands after
/// the writes (a failed grant turns Active into Approved), the namespace to
/// record in status, and when to look again.
struct Applied {
    outcome: Outcome,
    target_namespace: Option<String>,
    action: Action,
}

/// Has what the outcome says in the managed namespace: its grant written,
/// or no grant anywhere the request's grant could be.
async fn apply_outcome(
    req: &AccessRequest,
    ctx: &Context,
    instance: &InstanceState,
    outcome: Outcome,
) -> Result<Applied, Error> {
    let recorded = req.status.as_ref().and_then(|s| s.target_namespace.clone());
    let action = requeue_at(outcome.requeue_at);
    let Some(grant) = outcome.grant.clone() else {
        revoke(
            req,
            ctx,
            &revoke_targets(recorded.as_ref(), instance),
            false,
        )
        .await?;
        return Ok(Applied {
            outcome,
            target_namespace: recorded,
            action,
        });
    };
    // When the grant fails for a cause outside the request: look again later, slowly.
    let slowly = Action::requeue(Duration::from_secs(60));
    match write_grant(req, &grant, &outcome, ctx).await {
        Ok(None) => Ok(Applied {
            outcome,
            target_namespace: Some(grant.namespace),
            action,
        }),
        // The target is recorded, so that a Role already written for the
        // request (its binding's name was the taken one) is removed with it.
        Ok(Some(taken)) => Ok(Applied {
            outcome: grant_conflict(req, outcome, &taken),
            target_namespace: Some(grant.namespace),
            action: slowly,
        }),
        Err(Error::Kube(kube::Error::Api(s))) if is_permanent(&s) => {
            // Nothing half-written stays behind.
            revoke(req, ctx, std::slice::from_ref(&grant.namespace), true).await?;
            Ok(Applied {
                outcome: grant_failed(req, outcome, &grant.namespace, &s),
                target_namespace: recorded,
                action: slowly,
            })
        }
        Err(e) => Err(e),
    }
}

/// Where a request without a grant must have none: the namespace recorded
/// in its status and its managed instance's.
fn revoke_targets(recorded: Option<&String>, instance: &InstanceState) -> Vec<String> {
    let mut targets: Vec<String> = recorded.into_iter().cloned().collect();
    if let InstanceState::Managed {
        target_namespace, ..
    }
    | InstanceState::Suspended { target_namespace } = instance
    {
        targets.push(target_namespace.clone());
    }
    targets
}

/// The outcome when the grant's name is taken by someone else's object:
/// nothing is granted, and nothing of that object changes.
fn grant_conflict(req: &AccessRequest, outcome: Outcome, taken: &str) -> Outcome {
    Outcome {
        phase: AccessPhase::Approved,
        ready: false,
        reason: "GrantConflict",
        message: format!(
            "approved ({}), but {taken}",
            outcome.decided_by.as_deref().unwrap_or_default()
        ),
        grant: None,
        expires_at: RequestView::of(req).expires_at,
        ..outcome
    }
}

/// The outcome when the API server refuses the grant for good (the
/// controller's own RBAC falls short of it).
fn grant_failed(
    req: &AccessRequest,
    outcome: Outcome,
    namespace: &str,
    refusal: &kube::core::Status,
) -> Outcome {
    Outcome {
        phase: AccessPhase::Approved,
        ready: false,
        reason: "GrantFailed",
        message: format!(
            "approved ({}), but the API server refused the Role or RoleBinding in namespace {}: {} (HTTP {}); the controller's own RBAC must hold every permission of its grantable set (the chart binds access.grantableRules to it), and create and patch on roles and rolebindings",
            outcome.decided_by.as_deref().unwrap_or_default(),
            namespace,
            refusal.message,
            refusal.code
        ),
        grant: None,
        expires_at: RequestView::of(req).expires_at,
        ..outcome
    }
}

/// The request's status for an outcome; conditions keep their transition
/// times from the current status.
fn request_status(
    req: &AccessRequest,
    digest: &str,
    outcome: &Outcome,
    target_namespace: Option<String>,
) -> AccessRequestStatus {
    let generation = req.metadata.generation;
    let previous = req
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    AccessRequestStatus {
        observed_generation: generation,
        request_digest: Some(digest.to_string()),
        phase: Some(outcome.phase),
        expires_at: outcome
            .expires_at
            .map(crate::domain::conditions::format_time),
        granted_rules: outcome
            .grant
            .as_ref()
            .map(|g| g.rules.clone())
            .unwrap_or_default(),
        decided_by: outcome.decided_by.clone(),
        target_namespace,
        conditions: vec![condition(
            previous,
            "Ready",
            outcome.ready,
            outcome.reason,
            outcome.message.clone(),
            generation,
        )],
    }
}

/// Writes the status if it changed; then an Event on the request when its
/// Ready reason or message changed, and one on the owner's product when its
/// phase did.
async fn write_request_status(
    req: &AccessRequest,
    ctx: &Context,
    status: &AccessRequestStatus,
    outcome: &Outcome,
    named: &Named,
) -> Result<(), Error> {
    let api = Api::<AccessRequest>::namespaced(ctx.client.clone(), &ns_of(req));
    if !write_status_if_changed(&api, &ctx.memo, req, req.status.as_ref(), status).await? {
        return Ok(());
    }
    ctx.metrics.wrote(KIND, "status");
    let prev = req.status.as_ref();
    let before = prev.and_then(|s| ready(&s.conditions));
    if before.map(|c| (c.reason.as_str(), c.message.as_str()))
        != Some((outcome.reason, outcome.message.as_str()))
    {
        ctx.event(
            req,
            is_warning(outcome.reason),
            outcome.reason,
            outcome.message.clone(),
        )
        .await;
    }
    if prev.and_then(|s| s.phase) != Some(outcome.phase) {
        owner_event(req, &named.instance, named.product.as_ref(), outcome, ctx).await;
    }
    Ok(())
}

fn is_warning(reason: &str) -> bool {
    !matches!(
        reason,
        "Active" | "AwaitingApproval" | "Approved" | "Withdrawn" | "Expired" | "InstanceNotReady"
    )
}

/// An Event on the owner's product, in the owner's namespace: a request
/// arrived, was granted, ended or was refused. With Automatic approval this
/// is the owner's only record; with Manual approval it is how the owner
/// learns that a request waits for a decision.
async fn owner_event(
    req: &AccessRequest,
    state: &InstanceState,
    product: Option<&Product>,
    outcome: &Outcome,
    ctx: &Context,
) {
    let InstanceState::Managed {
        owner_namespace, ..
    } = state
    else {
        return;
    };
    let (reason, warning) = match outcome.phase {
        AccessPhase::Pending if outcome.reason == "AwaitingApproval" => ("AccessRequested", false),
        AccessPhase::Active => ("AccessGranted", false),
        AccessPhase::Expired | AccessPhase::Withdrawn => ("AccessEnded", false),
        AccessPhase::Rejected => ("AccessRefused", true),
        _ => return,
    };
    let spec = &req.spec;
    let note = format!(
        "AccessRequest {}/{} for instance {}: {} asks to {} for {}s ({}). {}{}",
        ns_of(req),
        req.name_any(),
        spec.instance_name,
        access::describe_subject(&spec.subject),
        access::describe_rules(&spec.rules),
        spec.duration_seconds,
        spec.reason,
        outcome.message,
        if reason == "AccessRequested" {
            format!(
                ". Decide with an AccessApproval in namespace {owner_namespace}: requestNamespace {}, requestName {}, {}, decision Approved or Rejected",
                ns_of(req),
                req.name_any(),
                RequestView::of(req).pins()
            )
        } else {
            String::new()
        }
    );
    match product {
        Some(Product::Service(s)) => ctx.event(s.as_ref(), warning, reason, note).await,
        Some(Product::Derived(d)) => ctx.event(d.as_ref(), warning, reason, note).await,
        None => {}
    }
}

fn grant_labels(req: &AccessRequest) -> serde_json::Value {
    json!({
        MANAGED_BY_LABEL: MANAGED_BY,
        labels::REQUEST_NAMESPACE: ns_of(req),
        labels::REQUEST_NAME: req.name_any().chars().take(63).collect::<String>().trim_end_matches(['-', '.', '_']),
        labels::REQUEST_UID: req.metadata.uid.clone().unwrap_or_default(),
    })
}

fn subject_json(s: &AccessSubject) -> serde_json::Value {
    match s.kind {
        SubjectKind::ServiceAccount => json!({
            "kind": "ServiceAccount",
            "name": s.name,
            "namespace": s.namespace.clone().unwrap_or_default(),
        }),
        SubjectKind::User => {
            json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": s.name})
        }
        SubjectKind::Group => {
            json!({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": s.name})
        }
    }
}

fn memo_key(what: &str, req: &AccessRequest, ns: &str) -> String {
    format!(
        "access-{what}/{}/{ns}",
        req.metadata.uid.as_deref().unwrap_or_default()
    )
}

/// Writes the Role (the narrowed rules) and the RoleBinding (the subject) of
/// a request, Role first: a RoleBinding never points at a missing Role.
async fn write_grant(
    req: &AccessRequest,
    grant: &access::Grant,
    outcome: &Outcome,
    ctx: &Context,
) -> Result<Option<String>, Error> {
    let name = access::grant_name(
        &req.name_any(),
        req.metadata.uid.as_deref().unwrap_or_default(),
    );
    let metadata = json!({
        "name": name,
        "namespace": grant.namespace,
        "labels": grant_labels(req),
        "annotations": {
            labels::REQUEST: req.name_any(),
            labels::EXPIRES_AT: crate::domain::conditions::format_time(grant.expires_at),
            labels::DECIDED_BY: outcome.decided_by.clone().unwrap_or_default(),
        },
    });
    let role = json!({
        "apiVersion": RBAC_API_VERSION, "kind": "Role",
        "metadata": metadata,
        "rules": grant.rules,
    });
    let binding = json!({
        "apiVersion": RBAC_API_VERSION, "kind": "RoleBinding",
        "metadata": metadata,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [subject_json(&req.spec.subject)],
    });
    let key = memo_key("grant", req, &grant.namespace);
    let desired = json!([role, binding]);
    if ctx.memo.is_same(&key, &desired) {
        return Ok(None);
    }
    let request_uid = req.metadata.uid.clone().unwrap_or_default();
    let roles = Api::<Role>::namespaced(ctx.client.clone(), &grant.namespace);
    if let Some(taken) = put_owned(&roles, &name, &role, &request_uid).await? {
        return Ok(Some(taken));
    }
    ctx.metrics.wrote(KIND, "role");
    let bindings = Api::<RoleBinding>::namespaced(ctx.client.clone(), &grant.namespace);
    if let Some(taken) = put_owned(&bindings, &name, &binding, &request_uid).await? {
        return Ok(Some(taken));
    }
    ctx.metrics.wrote(KIND, "rolebinding");
    ctx.memo.record(&key, &desired);
    ctx.memo.forget(&memo_key("absent", req, &grant.namespace));
    Ok(None)
}

/// Creates `body` (POST: never takes over an object of that name), or, when
/// the name is taken by this request's own object (the controller's labels
/// with its UID), updates it by server-side apply under its UID. Some(message)
/// when the name is taken by anyone else's object: nothing of it is changed.
async fn put_owned<K>(
    api: &Api<K>,
    name: &str,
    body: &serde_json::Value,
    request_uid: &str,
) -> Result<Option<String>, Error>
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(body.clone())?;
    let pp = kube::api::PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api.create(&pp, &obj).await {
        Ok(_) => return Ok(None),
        Err(e) if super::is_conflict(&e) => {}
        Err(e) => return Err(e.into()),
    }
    let Some(live) = api.get_metadata_opt(name).await? else {
        return Err(Error::Waiting(format!(
            "{} {name} went while it was being written",
            K::kind(&())
        )));
    };
    let l = live.labels();
    let ours = l.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
        && l.get(labels::REQUEST_UID).map(String::as_str) == Some(request_uid);
    if !ours {
        return Ok(Some(format!(
            "{} {}/{name} exists and was not written for this request; nothing of it was changed, and nothing is granted until it is removed",
            K::kind(&()),
            live.metadata.namespace.clone().unwrap_or_default()
        )));
    }
    let mut body = body.clone();
    body["metadata"]["uid"] = json!(live.metadata.uid);
    match api
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
    {
        Ok(_) => Ok(None),
        Err(e) if super::is_conflict(&e) => Err(Error::Waiting(format!(
            "{} {name} was replaced while it was being written",
            K::kind(&())
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Removes the RoleBinding and the Role of a request from each namespace in
/// `targets` (never from the request's own namespace, where nothing is ever
/// written), binding first. Skipped where this process already removed them,
/// unless `force`.
async fn revoke(
    req: &AccessRequest,
    ctx: &Context,
    targets: &[String],
    force: bool,
) -> Result<(), Error> {
    let own = ns_of(req);
    let name = access::grant_name(
        &req.name_any(),
        req.metadata.uid.as_deref().unwrap_or_default(),
    );
    let targets: BTreeSet<&String> = targets.iter().filter(|t| **t != own).collect();
    for ns in targets {
        let absent = memo_key("absent", req, ns);
        if !force && ctx.memo.is_same(&absent, &true) {
            continue;
        }
        delete_grant(
            ctx,
            ns,
            &name,
            req.metadata.uid.as_deref().unwrap_or_default(),
        )
        .await?;
        ctx.memo.record(&absent, &true);
        ctx.memo.forget(&memo_key("grant", req, ns));
    }
    Ok(())
}

/// Deletes the RoleBinding and the Role `name` of request `request_uid` in
/// `ns`, binding first: only objects carrying the controller's labels with
/// this request's UID (an object of that name written by someone else stays),
/// each with a UID precondition.
async fn delete_grant(ctx: &Context, ns: &str, name: &str, request_uid: &str) -> Result<(), Error> {
    if request_uid.is_empty() {
        return Ok(());
    }
    let lp = ListParams::default()
        .labels(&format!(
            "{MANAGED_BY_LABEL}={MANAGED_BY},{}={request_uid}",
            labels::REQUEST_UID
        ))
        .fields(&format!("metadata.name={name}"));
    for (binding, m) in list_grants(ctx, Some(ns), &lp).await? {
        if let Some(uid) = m.uid {
            let g = Granted {
                binding,
                namespace: ns.to_string(),
                name: name.to_string(),
                uid,
            };
            delete_granted(ctx, &g).await?;
        }
    }
    Ok(())
}

/// Every namespace a request's grant could be in: the one recorded in its
/// status and its instance's.
fn deletion_targets(req: &AccessRequest, ctx: &Context) -> Vec<String> {
    let ns = ns_of(req);
    let mut targets: Vec<String> = req
        .status
        .as_ref()
        .and_then(|s| s.target_namespace.clone())
        .into_iter()
        .collect();
    if let InstanceState::Managed {
        target_namespace, ..
    } = access::instance_state(
        ctx.stores
            .instances
            .get(&ObjectRef::new(&req.spec.instance_name).within(&ns))
            .as_deref(),
    ) {
        targets.push(target_namespace);
    }
    // (A managed namespace's name derives from its instance's UID: with the
    // instance gone, its namespace goes too, grants included.)
    targets
}

/// Requests gone between two looks beyond which the cleaner sweeps (two
/// lists) rather than removing the grants of each (a few deletes each).
const BURST: usize = 32;
/// How often the cleaner compares the request cache with itself.
const TICK: Duration = Duration::from_secs(1);
/// When the grants of deleted requests are looked for again: a reconcile
/// that started before the deletion reached the cache may still write a
/// grant after it was removed.
const RECHECK: [Duration; 2] = [Duration::from_secs(5), Duration::from_secs(30)];
/// Deletes and live reads of a sweep in flight at once.
const SWEEP_CONCURRENCY: usize = 16;

/// The requests in the cache, by UID.
fn cached_requests(ctx: &Context) -> HashMap<String, Arc<AccessRequest>> {
    ctx.stores
        .access_requests
        .state()
        .into_iter()
        .filter_map(|r| r.metadata.uid.clone().map(|u| (u, r)))
        .collect()
}

/// Removes the grants of deleted requests. Not from the deletion events
/// alone (the index's channel loses none, but a watch restart reports no
/// deletions at all): also from the cache, compared with itself every
/// second. A few requests gone are cleaned up one by one, and
/// looked at again 5 s and 30 s later (a reconcile in flight may have
/// written the grant again); a burst, a failed cleanup, the start and every
/// `sweep_interval` run a sweep.
pub(super) async fn cleaner(
    deleted: Option<UnboundedReceiver<Arc<AccessRequest>>>,
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    // The deletion events are the fast path, and the only one for a request
    // created and deleted between two looks at the cache; a watch restart
    // misses some, which the comparison of the cache and the sweeps make up for.
    let mut deletions = deleted;
    let work = async {
        while !ctx.readiness.is_ready() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let mut cleaner = Cleaner::new(&ctx);
        loop {
            cleaner.sweep_if_due(&ctx).await;
            let events = deletions_in_one_tick(&mut deletions).await;
            let current = cached_requests(&ctx);
            let now = Instant::now();
            let (gone, due) = cleaner.look(current, events, now);
            if gone.is_empty() && due.is_empty() {
                continue;
            }
            tracing::debug!(
                deleted = gone.len(),
                rechecked = due.len(),
                "access requests left the cache"
            );
            if gone.len() > BURST {
                cleaner.sweep_soon(&ctx, &gone, now);
            } else {
                cleaner.clean_up(&ctx, gone, due, now).await;
            }
        }
    };
    tokio::select! {
        _ = work => {},
        _ = shutdown => {},
    }
}

/// The deletion events that arrive within one tick, by UID. The channel is
/// dropped (None) once it ends; then the tick is only waited for.
async fn deletions_in_one_tick(
    deletions: &mut Option<UnboundedReceiver<Arc<AccessRequest>>>,
) -> HashMap<String, Arc<AccessRequest>> {
    let mut events = HashMap::new();
    let tick = tokio::time::sleep(TICK);
    tokio::pin!(tick);
    loop {
        let Some(rx) = deletions.as_mut() else {
            tick.as_mut().await;
            break;
        };
        tokio::select! {
            _ = &mut tick => break,
            event = rx.recv() => match event {
                Some(r) => {
                    if let Some(uid) = r.metadata.uid.clone() {
                        events.insert(uid, r);
                    }
                }
                None => *deletions = None,
            },
        }
    }
    events
}

/// What the cleaner keeps from one tick to the next.
struct Cleaner {
    /// Time between two regular sweeps.
    interval: Duration,
    /// The requests in the cache at the last look, by UID.
    known: HashMap<String, Arc<AccessRequest>>,
    /// Deleted requests whose grants are looked for again, and when.
    recheck: Vec<(Instant, Arc<AccessRequest>)>,
    /// After a burst: more sweeps shortly after the first (see RECHECK).
    sweeps_after: Vec<Instant>,
    /// When the next sweep is due.
    next_sweep: Instant,
}

impl Cleaner {
    /// A sweep is due at once (the start).
    fn new(ctx: &Context) -> Self {
        Cleaner {
            interval: ctx.settings.sweep_interval.max(Duration::from_secs(1)),
            known: cached_requests(ctx),
            recheck: Vec::new(),
            sweeps_after: Vec::new(),
            next_sweep: Instant::now(),
        }
    }

    /// Sweeps if one is due; the next one is due after a burst's follow-up,
    /// else after the interval; sooner after a failure.
    async fn sweep_if_due(&mut self, ctx: &Context) {
        if Instant::now() < self.next_sweep {
            return;
        }
        let started = Instant::now();
        match sweep(ctx).await {
            Ok(n) => {
                tracing::info!(
                    removed = n,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "access grants swept"
                );
                let now = Instant::now();
                self.sweeps_after.retain(|at| *at > now);
                self.next_sweep =
                    (self.sweeps_after.iter().copied().min()).unwrap_or(now + self.interval);
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not sweep access grants; retrying");
                ctx.metrics.error(KIND, &e.metric_reason());
                self.next_sweep = Instant::now() + self.interval.min(Duration::from_secs(10));
            }
        }
    }

    /// Pure: the requests gone since the last look (the deletion events,
    /// and the known requests missing from the cache), and the rechecks due
    /// at `now`. The cache as it is now is remembered for the next look.
    fn look(
        &mut self,
        current: HashMap<String, Arc<AccessRequest>>,
        mut events: HashMap<String, Arc<AccessRequest>>,
        now: Instant,
    ) -> (Vec<Arc<AccessRequest>>, Vec<Arc<AccessRequest>>) {
        for (uid, r) in self.known.iter() {
            if !current.contains_key(uid) {
                events.entry(uid.clone()).or_insert_with(|| r.clone());
            }
        }
        self.known = current;
        let (due, later): (Vec<_>, Vec<_>) = self.recheck.drain(..).partition(|(at, _)| *at <= now);
        self.recheck = later;
        let due = due.into_iter().map(|(_, r)| r).collect();
        (events.into_values().collect(), due)
    }

    /// A burst of deletions: a sweep at once, and again after each RECHECK
    /// delay, instead of the requests' cleanups one by one.
    fn sweep_soon(&mut self, ctx: &Context, gone: &[Arc<AccessRequest>], now: Instant) {
        for req in gone {
            forget(req, ctx);
        }
        tracing::info!(
            deleted = gone.len(),
            "access requests deleted at once; sweeping"
        );
        self.next_sweep = Instant::now();
        self.sweeps_after.extend(RECHECK.iter().map(|d| now + *d));
    }

    /// Removes the grants of the requests gone and of the rechecks due; the
    /// ones gone are looked at again later. A sweep follows a failure soon.
    async fn clean_up(
        &mut self,
        ctx: &Arc<Context>,
        gone: Vec<Arc<AccessRequest>>,
        due: Vec<Arc<AccessRequest>>,
        now: Instant,
    ) {
        let work: Vec<Arc<AccessRequest>> = gone.iter().cloned().chain(due).collect();
        self.recheck.extend(
            gone.into_iter()
                .flat_map(|r| RECHECK.iter().map(move |d| (now + *d, r.clone()))),
        );
        let failed = futures::stream::iter(work)
            .map(|req| {
                let ctx = ctx.clone();
                async move {
                    let failed = !cleanup_deleted(&req, &ctx).await;
                    // After the cleanup, which records what it removed.
                    forget(&req, &ctx);
                    failed
                }
            })
            .buffer_unordered(8)
            .filter(|failed| futures::future::ready(*failed))
            .count()
            .await;
        if failed > 0 {
            self.next_sweep = self.next_sweep.min(Instant::now() + Duration::from_secs(5));
        }
    }
}

/// Removes the grant of a deleted request; false if that failed (a sweep follows).
async fn cleanup_deleted(req: &AccessRequest, ctx: &Context) -> bool {
    if !ctx.settings.watches(&ns_of(req)) {
        return true;
    }
    let targets = deletion_targets(req, ctx);
    tracing::debug!(namespace = %ns_of(req), name = %req.name_any(), ?targets, "cleanup of a deleted access request");
    match revoke(req, ctx, &targets, true).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(namespace = %ns_of(req), name = %req.name_any(), error = %e, "could not remove the grant of a deleted access request; a sweep follows");
            ctx.metrics.error(KIND, &e.metric_reason());
            false
        }
    }
}

/// Drops what this process remembers of a deleted request.
fn forget(req: &AccessRequest, ctx: &Context) {
    let uid = req.metadata.uid.as_deref().unwrap_or_default();
    ctx.memo.forget(&format!("status/{uid}"));
    for ns in &deletion_targets(req, ctx) {
        ctx.memo.forget(&memo_key("absent", req, ns));
        ctx.memo.forget(&memo_key("grant", req, ns));
    }
}

/// A labelled Role or RoleBinding, as listed.
struct Granted {
    binding: bool,
    namespace: String,
    name: String,
    uid: String,
}

/// The request a grant was written for: namespace, name (None when the
/// label was cut and no annotation says it), UID.
type RequestKey = (String, Option<String>, String);

fn request_key(meta: &kube::core::ObjectMeta) -> Option<RequestKey> {
    let l = meta.labels.as_ref()?;
    let ns = l.get(labels::REQUEST_NAMESPACE)?.clone();
    let uid = l.get(labels::REQUEST_UID)?.clone();
    if ns.is_empty() || uid.is_empty() {
        return None;
    }
    let name = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(labels::REQUEST))
        .cloned()
        .or_else(|| {
            l.get(labels::REQUEST_NAME)
                .filter(|n| !n.is_empty() && n.len() < 63)
                .cloned()
        });
    Some((ns, name, uid))
}

/// Whether the request a grant was written for is gone, by a live read (the
/// cache may lag): no such request, or one of that name with another UID.
async fn request_gone(ctx: &Context, key: &RequestKey) -> Result<bool, Error> {
    let (ns, name, uid) = key;
    let api = Api::<AccessRequest>::namespaced(ctx.client.clone(), ns);
    match name {
        Some(name) => Ok(match api.get_metadata_opt(name).await? {
            None => true,
            Some(m) => m.metadata.uid.as_deref() != Some(uid.as_str()),
        }),
        None => Ok(!api
            .list_metadata(&ListParams::default())
            .await?
            .items
            .iter()
            .any(|m| m.metadata.uid.as_deref() == Some(uid.as_str()))),
    }
}

/// Deletes one granted object, only if it is still the one listed (UID
/// precondition): a Role re-created under the same name is never hit.
async fn delete_granted(ctx: &Context, g: &Granted) -> Result<bool, Error> {
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(g.uid.clone()),
            resource_version: None,
        }),
        ..Default::default()
    };
    let result = if g.binding {
        Api::<RoleBinding>::namespaced(ctx.client.clone(), &g.namespace)
            .delete(&g.name, &dp)
            .await
            .map(|_| ())
    } else {
        Api::<Role>::namespaced(ctx.client.clone(), &g.namespace)
            .delete(&g.name, &dp)
            .await
            .map(|_| ())
    };
    match result {
        Ok(()) => {
            ctx.metrics.wrote(KIND, "delete");
            Ok(true)
        }
        Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The RoleBindings (true) and Roles (false) that `lp` selects, in `ns` or
/// in every namespace, as metadata; bindings first.
async fn list_grants(
    ctx: &Context,
    ns: Option<&str>,
    lp: &ListParams,
) -> Result<Vec<(bool, kube::api::ObjectMeta)>, Error> {
    let (bindings, roles) = match ns {
        Some(ns) => (
            Api::<RoleBinding>::namespaced(ctx.client.clone(), ns),
            Api::<Role>::namespaced(ctx.client.clone(), ns),
        ),
        None => (
            Api::<RoleBinding>::all(ctx.client.clone()),
            Api::<Role>::all(ctx.client.clone()),
        ),
    };
    let bindings = bindings.list_metadata(lp).await?;
    let roles = roles.list_metadata(lp).await?;
    Ok(bindings
        .items
        .into_iter()
        .map(|m| (true, m.metadata))
        .chain(roles.items.into_iter().map(|m| (false, m.metadata)))
        .collect())
}

/// Removes every Role and RoleBinding labelled with the UID of an
/// AccessRequest that no longer exists (confirmed by a live read), with a
/// UID precondition, bindings first. Only objects carrying the controller's
/// labels are listed. Returns how many were removed.
async fn sweep(ctx: &Context) -> Result<usize, Error> {
    let selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY},{}", labels::REQUEST_UID);
    let lp = ListParams::default().labels(&selector);
    let listed = list_grants(ctx, None, &lp).await?;
    let cached: HashSet<String> = ctx
        .stores
        .access_requests
        .state()
        .iter()
        .filter_map(|r| r.metadata.uid.clone())
        .collect();
    let orphans = orphans(listed, &cached, |ns| ctx.settings.watches(ns));
    if orphans.is_empty() {
        return Ok(0);
    }
    let mut first_error = None;
    let [bindings, roles] = confirm_gone(ctx, orphans, &mut first_error).await;
    let mut removed = 0;
    for batch in [bindings, roles] {
        removed += delete_all(ctx, batch, &mut first_error).await;
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(removed),
    }
}

/// Pure: the listed grants whose request is not in the cache (`cached`
/// holds the cached requests' UIDs), by request, in the namespaces this
/// controller watches. Objects without the request's labels are left alone.
fn orphans(
    listed: Vec<(bool, kube::api::ObjectMeta)>,
    cached: &HashSet<String>,
    watches: impl Fn(&str) -> bool,
) -> BTreeMap<RequestKey, Vec<Granted>> {
    let mut orphans: BTreeMap<RequestKey, Vec<Granted>> = BTreeMap::new();
    for (binding, m) in listed {
        let Some(key) = request_key(&m) else {
            continue;
        };
        if !watches(&key.0) || cached.contains(&key.2) {
            continue;
        }
        let (Some(namespace), Some(name), Some(uid)) = (m.namespace, m.name, m.uid) else {
            continue;
        };
        orphans.entry(key).or_default().push(Granted {
            binding,
            namespace,
            name,
            uid,
        });
    }
    orphans
}

/// The grants of the orphans whose request a live read confirms gone:
/// bindings, then roles. The first failed read is kept in `first_error`.
async fn confirm_gone(
    ctx: &Context,
    orphans: BTreeMap<RequestKey, Vec<Granted>>,
    first_error: &mut Option<Error>,
) -> [Vec<Granted>; 2] {
    let confirmed: Vec<Result<Option<Vec<Granted>>, Error>> = futures::stream::iter(orphans)
        .map(|(key, objects)| async move { Ok(request_gone(ctx, &key).await?.then_some(objects)) })
        .buffer_unordered(SWEEP_CONCURRENCY)
        .collect()
        .await;
    let mut bindings = Vec::new();
    let mut roles = Vec::new();
    for c in confirmed {
        match c {
            Ok(Some(objects)) => {
                for g in objects {
                    if g.binding {
                        bindings.push(g);
                    } else {
                        roles.push(g);
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    [bindings, roles]
}

/// Deletes a batch of granted objects; how many were removed. The first
/// failed delete is kept in `first_error`.
async fn delete_all(ctx: &Context, batch: Vec<Granted>, first_error: &mut Option<Error>) -> usize {
    let results: Vec<Result<bool, Error>> = futures::stream::iter(batch)
        .map(|g| async move { delete_granted(ctx, &g).await })
        .buffer_unordered(SWEEP_CONCURRENCY)
        .collect()
        .await;
    let mut removed = 0;
    for r in results {
        match r {
            Ok(true) => {
                removed += 1;
                ctx.metrics.swept("access-grant");
            }
            Ok(false) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    removed
}

pub(super) async fn reconcile_approval(
    approval: Arc<AccessApproval>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let ns = ns_of(approval.as_ref());
    if approval.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let request = ctx
        .stores
        .access_requests
        .get(&ObjectRef::new(&approval.spec.request_name).within(&approval.spec.request_namespace));
    let instance = request.as_ref().and_then(|r| {
        ctx.stores
            .instances
            .get(&ObjectRef::new(&r.spec.instance_name).within(&ns_of(r.as_ref())))
    });
    let previous = approval
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let status = access::approval_status(
        &approval,
        request.as_deref(),
        instance.as_deref(),
        &previous,
    );
    let api = Api::<AccessApproval>::namespaced(ctx.client.clone(), &ns);
    if write_status_if_changed(
        &api,
        &ctx.memo,
        approval.as_ref(),
        approval.status.as_ref(),
        &status,
    )
    .await?
    {
        ctx.metrics.wrote(APPROVAL_KIND, "status");
        if let Some(c) = ready(&status.conditions)
            && ready(&previous).map(|p| (&p.reason, &p.message)) != Some((&c.reason, &c.message))
        {
            ctx.event(
                approval.as_ref(),
                c.status != "True" && c.reason != "Waiting",
                &c.reason,
                c.message.clone(),
            )
            .await;
        }
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AccessRule, Party};
    use crate::domain::access::Grant;

    fn request(name: &str, uid: &str) -> Arc<AccessRequest> {
        let mut r: AccessRequest = serde_json::from_value(json!({
            "apiVersion": "computenest.dev/v1alpha1",
            "kind": "AccessRequest",
            "metadata": {"namespace": "cust", "name": name, "uid": uid, "generation": 2},
            "spec": {
                "instanceName": "inst",
                "subject": {"kind": "User", "name": "alice"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
                "durationSeconds": 600,
                "reason": "debugging"
            }
        }))
        .expect("request");
        r.metadata.uid = Some(uid.into());
        Arc::new(r)
    }

    fn by_uid(requests: &[Arc<AccessRequest>]) -> HashMap<String, Arc<AccessRequest>> {
        requests
            .iter()
            .map(|r| (r.metadata.uid.clone().unwrap_or_default(), r.clone()))
            .collect()
    }

    fn uids(requests: &[Arc<AccessRequest>]) -> Vec<String> {
        let mut u: Vec<String> = requests
            .iter()
            .filter_map(|r| r.metadata.uid.clone())
            .collect();
        u.sort();
        u
    }

    #[test]
    fn a_look_finds_the_requests_gone_and_the_rechecks_due() {
        let [a, b, c, d, e, f] = ["a", "b", "c", "d", "e", "f"].map(|u| request(u, u));
        let now = Instant::now();
        let mut cleaner = Cleaner {
            interval: Duration::from_secs(60),
            known: by_uid(&[a.clone(), b.clone()]),
            recheck: vec![(now, e.clone()), (now + Duration::from_secs(5), f.clone())],
            sweeps_after: Vec::new(),
            next_sweep: now,
        };
        let (gone, due) = cleaner.look(by_uid(&[b, c]), by_uid(&[d]), now);
        // Gone: left the cache (a), or reported deleted (d).
        assert_eq!(uids(&gone), ["a", "d"]);
        assert_eq!(uids(&due), ["e"]);
        // The cache as it is now is what the next look compares with.
        let known: BTreeSet<&str> = cleaner.known.keys().map(String::as_str).collect();
        assert_eq!(known, BTreeSet::from(["b", "c"]));
        assert_eq!(cleaner.recheck.len(), 1);
        assert_eq!(cleaner.recheck[0].1.metadata.uid.as_deref(), Some("f"));
    }

    fn grant_meta(ns: &str, uid: &str, request_uid: Option<&str>) -> kube::api::ObjectMeta {
        let mut labels = BTreeMap::new();
        if let Some(r) = request_uid {
            labels.insert(MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string());
            labels.insert(labels::REQUEST_NAMESPACE.to_string(), "cust".to_string());
            labels.insert(labels::REQUEST_UID.to_string(), r.to_string());
            labels.insert(labels::REQUEST_NAME.to_string(), "req".to_string());
        }
        kube::api::ObjectMeta {
            namespace: Some(ns.into()),
            name: Some("computenest-access-req-x".into()),
            uid: Some(uid.into()),
            labels: Some(labels),
            ..Default::default()
        }
    }

    #[test]
    fn orphans_are_the_grants_of_requests_not_in_the_cache() {
        let listed = vec![
            (true, grant_meta("cn-1", "b1", Some("gone"))),
            (false, grant_meta("cn-1", "r1", Some("gone"))),
            (true, grant_meta("cn-1", "b2", Some("cached"))),
            (true, grant_meta("cn-1", "b3", None)),
        ];
        let cached: HashSet<String> = ["cached".to_string()].into();
        let found = orphans(listed.clone(), &cached, |_| true);
        let key = (
            "cust".to_string(),
            Some("req".to_string()),
            "gone".to_string(),
        );
        assert_eq!(found.keys().collect::<Vec<_>>(), [&key]);
        let objects: Vec<(bool, &str)> = found[&key]
            .iter()
            .map(|g| (g.binding, g.uid.as_str()))
            .collect();
        assert_eq!(objects, [(true, "b1"), (false, "r1")]);
        // Requests of namespaces this controller does not watch are not its own.
        assert!(orphans(listed, &cached, |ns| ns != "cust").is_empty());
    }

    fn active(req: &AccessRequest) -> Outcome {
        let expires_at: Timestamp = "2030-01-01T01:00:00Z".parse().expect("time");
        let rules: Vec<AccessRule> = req.spec.rules.clone();
        Outcome {
            phase: AccessPhase::Active,
            ready: true,
            reason: "Active",
            message: "granted".into(),
            grant: Some(Grant {
                namespace: "cn-1".into(),
                rules,
                expires_at,
            }),
            expires_at: Some(expires_at),
            decided_by: Some("Automatic".into()),
            requeue_at: Some(expires_at),
        }
    }

    #[test]
    fn a_taken_name_turns_the_grant_into_approved_and_status_says_so() {
        let req = request("req", "u1");
        let taken = grant_conflict(&req, active(&req), "Role cn-1/x exists");
        assert_eq!(
            (taken.phase, taken.ready, taken.reason),
            (AccessPhase::Approved, false, "GrantConflict")
        );
        assert_eq!(
            taken.message,
            "approved (Automatic), but Role cn-1/x exists"
        );
        assert_eq!((taken.grant, taken.expires_at), (None, None));
        assert_eq!(taken.decided_by.as_deref(), Some("Automatic"));

        let granted = active(&req);
        let status = request_status(&req, "sha256:d", &granted, Some("cn-1".into()));
        assert_eq!(status.observed_generation, Some(2));
        assert_eq!(status.phase, Some(AccessPhase::Active));
        assert_eq!(status.expires_at.as_deref(), Some("2030-01-01T01:00:00Z"));
        assert_eq!(status.granted_rules, req.spec.rules);
        assert_eq!(status.target_namespace.as_deref(), Some("cn-1"));
        let c = ready(&status.conditions).expect("Ready");
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Active"));
    }

    #[test]
    fn no_grant_is_left_where_the_status_or_the_instance_puts_it() {
        let managed = InstanceState::Managed {
            owner_party: Party::Isv,
            owner_namespace: "isv".into(),
            target_namespace: "cn-2".into(),
            namespace_ready: true,
        };
        let recorded = "cn-1".to_string();
        assert_eq!(revoke_targets(Some(&recorded), &managed), ["cn-1", "cn-2"]);
        assert_eq!(
            revoke_targets(Some(&recorded), &InstanceState::Missing),
            ["cn-1"]
        );
        assert!(revoke_targets(None, &InstanceState::NotReady).is_empty());
    }
}
