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

async fn apply(req: &AccessRequest, ctx: &Context) -> Result<Action, Error> {
    let ns = ns_of(req);
    let inst = ctx
        .stores
        .instances
        .get(&ObjectRef::new(&req.spec.instance_name).within(&ns));
    let mut state = access::instance_state(inst.as_deref());
    if let (
        InstanceState::Managed {
            target_namespace,
            namespace_ready: ready,
            ..
        },
        Some(inst),
    ) = (&mut state, inst.as_deref())
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
    let views: Vec<ApprovalView<'_>> = approvals.iter().map(|a| ApprovalView::of(a)).collect();
    let view = RequestView::of(req);
    let mut outcome = access::decide(
        &view,
        &state,
        &policy,
        &ctx.settings.grantable,
        &views,
        Timestamp::now(),
    );

    let prev = req.status.clone().unwrap_or_default();
    let mut target_namespace = prev.target_namespace.clone();
    let mut action = requeue_at(outcome.requeue_at);
    match outcome.grant.clone() {
        Some(grant) => match write_grant(req, &grant, &outcome, ctx).await {
            Ok(None) => target_namespace = Some(grant.namespace.clone()),
            Ok(Some(taken)) => {
                // The name is taken by someone else's object: nothing is
                // granted, and nothing of that object changes. The target is
                // recorded, so that a Role already written for the request
                // (its binding's name was the taken one) is removed with it.
                target_namespace = Some(grant.namespace.clone());
                outcome = Outcome {
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
                };
                action = Action::requeue(Duration::from_secs(60));
            }
            Err(Error::Kube(kube::Error::Api(s))) if is_permanent(&s) => {
                // Nothing half-written stays behind.
                revoke(req, ctx, std::slice::from_ref(&grant.namespace), true).await?;
                outcome = Outcome {
                    phase: AccessPhase::Approved,
                    ready: false,
                    reason: "GrantFailed",
                    message: format!(
                        "approved ({}), but the API server refused the Role or RoleBinding in namespace {}: {} (HTTP {}); the controller's own RBAC must hold every permission of its grantable set (the chart binds access.grantableRules to it), and create and patch on roles and rolebindings",
                        outcome.decided_by.as_deref().unwrap_or_default(),
                        grant.namespace,
                        s.message,
                        s.code
                    ),
                    grant: None,
                    expires_at: RequestView::of(req).expires_at,
                    ..outcome
                };
                // The cause is outside the request: look again later, slowly.
                action = Action::requeue(Duration::from_secs(60));
            }
            Err(e) => return Err(e),
        },
        None => {
            let mut targets: Vec<String> = prev.target_namespace.iter().cloned().collect();
            if let InstanceState::Managed {
                target_namespace, ..
            } = &state
            {
                targets.push(target_namespace.clone());
            }
            revoke(req, ctx, &targets, false).await?;
        }
    }

    let generation = req.metadata.generation;
    let status = AccessRequestStatus {
        observed_generation: generation,
        request_digest: Some(view.digest.clone()),
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
            &prev.conditions,
            "Ready",
            outcome.ready,
            outcome.reason,
            outcome.message.clone(),
            generation,
        )],
    };
    let api = Api::<AccessRequest>::namespaced(ctx.client.clone(), &ns);
    if write_status_if_changed(&api, &ctx.memo, req, req.status.as_ref(), &status).await? {
        ctx.metrics.wrote(KIND, "status");
        let before = ready(&prev.conditions).map(|c| (c.reason.clone(), c.message.clone()));
        if before.as_ref().map(|(r, m)| (r.as_str(), m.as_str()))
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
        if prev.phase != Some(outcome.phase) {
            owner_event(req, &state, product.as_ref(), &outcome, ctx).await;
        }
    }
    Ok(action)
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
        let interval = ctx.settings.sweep_interval.max(Duration::from_secs(1));
        let mut known = cached_requests(&ctx);
        let mut recheck: Vec<(Instant, Arc<AccessRequest>)> = Vec::new();
        // After a burst: more sweeps shortly after the first (see RECHECK).
        let mut sweeps_after: Vec<Instant> = Vec::new();
        let mut next_sweep = Instant::now();
        loop {
            if Instant::now() >= next_sweep {
                let started = Instant::now();
                match sweep(&ctx).await {
                    Ok(n) => {
                        tracing::info!(
                            removed = n,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "access grants swept"
                        );
                        let now = Instant::now();
                        sweeps_after.retain(|at| *at > now);
                        next_sweep = sweeps_after.iter().copied().min().unwrap_or(now + interval);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not sweep access grants; retrying");
                        ctx.metrics.error(KIND, &e.metric_reason());
                        next_sweep = Instant::now() + interval.min(Duration::from_secs(10));
                    }
                }
            }
            // One tick, taking the deletion events that arrive meanwhile.
            let mut events: HashMap<String, Arc<AccessRequest>> = HashMap::new();
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
                        None => deletions = None,
                    },
                }
            }
            let current = cached_requests(&ctx);
            for (uid, r) in known.iter() {
                if !current.contains_key(uid) {
                    events.entry(uid.clone()).or_insert_with(|| r.clone());
                }
            }
            let gone: Vec<Arc<AccessRequest>> = events.into_values().collect();
            known = current;
            let now = Instant::now();
            let (due, later): (Vec<_>, Vec<_>) = recheck.drain(..).partition(|(at, _)| *at <= now);
            recheck = later;
            if gone.is_empty() && due.is_empty() {
                continue;
            }
            tracing::debug!(
                deleted = gone.len(),
                rechecked = due.len(),
                "access requests left the cache"
            );
            if gone.len() > BURST {
                for req in &gone {
                    forget(req, &ctx);
                }
                tracing::info!(
                    deleted = gone.len(),
                    "access requests deleted at once; sweeping"
                );
                next_sweep = Instant::now();
                sweeps_after.extend(RECHECK.iter().map(|d| now + *d));
                continue;
            }
            let work: Vec<Arc<AccessRequest>> = gone
                .iter()
                .cloned()
                .chain(due.into_iter().map(|(_, r)| r))
                .collect();
            recheck.extend(
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
                next_sweep = next_sweep.min(Instant::now() + Duration::from_secs(5));
            }
        }
    };
    tokio::select! {
        _ = work => {},
        _ = shutdown => {},
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
    let live: HashSet<String> = ctx
        .stores
        .access_requests
        .state()
        .iter()
        .filter_map(|r| r.metadata.uid.clone())
        .collect();
    let mut orphans: BTreeMap<RequestKey, Vec<Granted>> = BTreeMap::new();
    for (binding, m) in listed {
        let Some(key) = request_key(&m) else {
            continue;
        };
        if !ctx.settings.watches(&key.0) || live.contains(&key.2) {
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
    if orphans.is_empty() {
        return Ok(0);
    }
    // Confirm each request is gone, then delete its objects (bindings first).
    let confirmed: Vec<Result<Option<Vec<Granted>>, Error>> = futures::stream::iter(orphans)
        .map(|(key, objects)| async move { Ok(request_gone(ctx, &key).await?.then_some(objects)) })
        .buffer_unordered(SWEEP_CONCURRENCY)
        .collect()
        .await;
    let mut first_error = None;
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
    let mut removed = 0;
    for batch in [bindings, roles] {
        let results: Vec<Result<bool, Error>> = futures::stream::iter(batch)
            .map(|g| async move { delete_granted(ctx, &g).await })
            .buffer_unordered(SWEEP_CONCURRENCY)
            .collect()
            .await;
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
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(removed),
    }
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
