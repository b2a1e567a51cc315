//! Tenancy for the ServiceInstance controller: whether a new sale may happen
//! (sales policy and limits), and the policy each managed namespace carries
//! (Pod Security labels, quota, limits, network policy, operators).
//!
//! Decisions come from the cluster, never from what a tenant can write: the
//! buyer's namespace labels and the seller's namespace annotations are the
//! platform's (tenants cannot write namespaces); instance counts come from
//! the watch-fed cache and, for managed namespaces, from a live list of the
//! namespaces the controller created.

use super::{Context, Error, MANAGED_BY, MANAGED_BY_LABEL, is_not_found};
use crate::api::{DerivedService, OperatorKind, Party, ProductKind, Service, ServiceInstance};
use crate::domain::provision::{Desired, labels};
use crate::domain::render::Offering;
use crate::domain::tenancy::{self, ManagedInput, NameableSubjects, PolicyError};
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::ObjectRef;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// A sale that may not happen now, and when to look again.
pub(super) struct Refusal {
    pub reason: &'static str,
    pub message: String,
    pub retry: Duration,
}

/// Whether a new sale of the product may happen: the seller's sales policy
/// and its limit of instances per customer. Only for instances not yet sold:
/// what was sold keeps running when a policy changes.
pub(super) async fn may_sell(
    inst: &ServiceInstance,
    ctx: &Context,
) -> Result<Option<Refusal>, Error> {
    let r = &inst.spec.service_ref;
    let sales = match r.kind {
        ProductKind::Service => ctx
            .stores
            .services
            .get(&ObjectRef::new(&r.name).within(&r.namespace))
            .map(|s| s.spec.sales.clone()),
        ProductKind::DerivedService => ctx
            .stores
            .derived
            .get(&ObjectRef::new(&r.name).within(&r.namespace))
            .map(|d| d.spec.sales.clone()),
    };
    let Some(sales) = sales else {
        return Ok(None);
    };
    let buyer = inst.namespace().unwrap_or_default();
    let labels = if tenancy::needs_buyer_labels(&sales) {
        Api::<Namespace>::all(ctx.client.clone())
            .get_metadata_opt(&buyer)
            .await?
            .map(|m| m.labels().clone())
    } else {
        None
    };
    if let Err(message) = tenancy::may_buy(
        &sales,
        &buyer,
        labels.as_ref(),
        r.kind == ProductKind::Service,
    ) {
        return Ok(Some(Refusal {
            reason: "NotAuthorizedToBuy",
            message: format!("{message}; nothing was created"),
            // The platform may label the namespace later; no event tells us.
            retry: Duration::from_secs(300),
        }));
    }
    if let Some(max) = sales.max_instances_per_customer {
        let older = older_instances_of_product(inst, ctx);
        if older >= max as usize {
            return Ok(Some(Refusal {
                reason: "QuotaExceeded",
                message: format!(
                    "namespace {buyer} already has {older} instance(s) of {:?} {}/{} and the seller sells at most {max} per customer; delete one, and this instance is deployed; nothing was created",
                    r.kind, r.namespace, r.name
                ),
                retry: Duration::from_secs(300),
            }));
        }
    }
    Ok(None)
}

/// Live instances of the same product in the same namespace created before
/// this one (by creation time, then name): the oldest count first, so two
/// instances created at once never both take the last place.
fn older_instances_of_product(inst: &ServiceInstance, ctx: &Context) -> usize {
    let r = &inst.spec.service_ref;
    let key = (r.kind, r.namespace.clone(), r.name.clone());
    let ns = inst.namespace().unwrap_or_default();
    let me = (inst.creation_timestamp(), inst.name_any());
    ctx.index
        .instances_of(&key)
        .into_iter()
        .filter(|o| o.namespace.as_deref() == Some(ns.as_str()))
        .filter_map(|o| ctx.stores.instances.get(&o))
        .filter(|other| other.metadata.deletion_timestamp.is_none())
        .filter(|other| other.uid() != inst.uid())
        .filter(|other| (other.creation_timestamp(), other.name_any()) < me)
        .count()
}

/// Adds the managed namespace's policy to the desired state: its labels,
/// and the ResourceQuota, LimitRange, NetworkPolicy and operators'
/// RoleBinding (labelled like the instance's objects, written first).
/// The digest covers them, so a change of the platform's policy or of the
/// operators reaches every managed namespace.
pub(super) async fn add_managed_policy(
    inst: &ServiceInstance,
    ctx: &Context,
    d: &mut Desired,
    offering: &Offering,
    isv: (&str, &str),
) -> Result<Result<(), PolicyError>, Error> {
    if d.managed_namespace_labels.is_none() {
        return Ok(Ok(()));
    }
    let service = ctx
        .stores
        .services
        .get(&ObjectRef::new(isv.1).within(isv.0));
    let r = &inst.spec.service_ref;
    let operators = match d.owner.party {
        Party::Isv => service.as_ref().map(|s| s.spec.operators.clone()),
        Party::Distributor => ctx
            .stores
            .derived
            .get(&ObjectRef::new(&r.name).within(&r.namespace))
            .map(|ds: Arc<DerivedService>| ds.spec.operators.clone()),
        Party::Customer => None,
    }
    .unwrap_or_default();
    let nameable = if operators
        .iter()
        .any(|o| o.kind != OperatorKind::ServiceAccount)
    {
        nameable_subjects(ctx, &d.owner.namespace).await?
    } else {
        NameableSubjects::default()
    };
    let subjects = tenancy::operator_subjects(&operators, &d.owner.namespace, &nameable);
    let plan = inst
        .spec
        .plan
        .as_deref()
        .and_then(|p| offering.plans.iter().find(|x| x.name == p))
        .and_then(|p| p.resources.as_ref());
    let customer = inst.namespace().unwrap_or_default();
    let product = tenancy::product_label(
        match r.kind {
            ProductKind::Service => "Service",
            ProductKind::DerivedService => "DerivedService",
        },
        &r.namespace,
        &r.name,
    );
    let input = ManagedInput {
        customer_namespace: &customer,
        product: &product,
        pod_security: service
            .as_ref()
            .and_then(|s: &Arc<Service>| s.spec.pod_security),
        plan_resources: plan,
        operator_subjects: &subjects.subjects,
    };
    if !subjects.refused.is_empty() {
        // The seller reads why on its own product's Ready condition.
        tracing::debug!(
            instance = %inst.name_any(),
            refused = ?subjects.refused,
            "operators left out of the binding"
        );
    }
    let policy = match tenancy::managed_policy(&ctx.settings.tenancy, &input) {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    Ok(tenancy::add_to_desired(d, policy))
}

/// The users and groups the platform lets a seller's namespace name, from
/// that namespace's annotations (only the platform writes namespaces).
pub(super) async fn nameable_subjects(
    ctx: &Context,
    namespace: &str,
) -> Result<NameableSubjects, Error> {
    Ok(Api::<Namespace>::all(ctx.client.clone())
        .get_metadata_opt(namespace)
        .await?
        .map(|m| NameableSubjects::from_annotations(m.annotations()))
        .unwrap_or_default())
}

/// For a seller's Ready message: the operators it names that the platform
/// does not let its namespace name (empty when all count). Reads the
/// seller's namespace only when users or groups are named.
pub(super) async fn operators_note(
    ctx: &Context,
    seller_ns: &str,
    operators: &[crate::api::Operator],
) -> Result<String, Error> {
    if operators
        .iter()
        .all(|o| o.kind == OperatorKind::ServiceAccount)
    {
        return Ok(String::new());
    }
    let nameable = nameable_subjects(ctx, seller_ns).await?;
    let refused = tenancy::operator_subjects(operators, seller_ns, &nameable).refused;
    Ok(if refused.is_empty() {
        String::new()
    } else {
        format!(
            "; note: operators not bound anywhere: {}",
            refused.join("; ")
        )
    })
}

/// Appends `note` to the Ready condition's message.
pub(super) fn note_on_ready(conditions: &mut [crate::api::Condition], note: &str) {
    if note.is_empty() {
        return;
    }
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == "Ready") {
        c.message.push_str(note);
    }
}

/// How soon a seller that names users or groups is looked at again: the
/// platform's annotations on its namespace may change, and no event says so.
pub(super) fn recheck_operators(operators: &[crate::api::Operator]) -> Option<Duration> {
    operators
        .iter()
        .any(|o| o.kind != OperatorKind::ServiceAccount)
        .then(|| Duration::from_secs(300))
}

/// Whether a template object is one of the managed namespace's policy
/// objects (written before the others).
pub(super) fn is_policy_object(kind: &str, name: &str) -> bool {
    tenancy::POLICY_KINDS.iter().any(|k| k.2 == kind)
        && (name == tenancy::POLICY_OBJECT_NAME || name == tenancy::OPERATORS_BINDING)
}

/// Serializes the creation of managed namespaces per customer, so that two
/// instances created at once cannot both take the last place under
/// `maxManagedNamespacesPerCustomer`.
#[derive(Default)]
pub struct CustomerLocks(std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl CustomerLocks {
    fn of(&self, customer: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(customer.to_string()).or_default().clone()
    }
}

/// Runs `create` (the creation of a managed namespace for `inst`) unless
/// the customer has its platform limit of managed namespaces already;
/// counted live, under a per-customer lock, from the namespaces the
/// controller created (labelled with the customer's namespace).
pub(super) async fn within_namespace_limit<F, Fut, T>(
    inst: &ServiceInstance,
    ctx: &Context,
    create: F,
) -> Result<Result<T, Refusal>, Error>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let Some(max) = ctx.settings.tenancy.max_managed_namespaces_per_customer else {
        return create().await.map(Ok);
    };
    let customer = inst.namespace().unwrap_or_default();
    let lock = ctx.customer_locks.of(&customer);
    let _held = lock.lock().await;
    let selector = format!(
        "{MANAGED_BY_LABEL}={MANAGED_BY},{}={customer}",
        labels::INSTANCE_NAMESPACE
    );
    let uid = inst.uid().unwrap_or_default();
    let listed = match Api::<Namespace>::all(ctx.client.clone())
        .list_metadata(&ListParams::default().labels(&selector))
        .await
    {
        Ok(l) => l.items,
        Err(e) if is_not_found(&e) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let used = listed
        .iter()
        .filter(|m| m.labels().get(labels::INSTANCE_UID) != Some(&uid))
        .count();
    if used >= max as usize {
        return Ok(Err(Refusal {
            reason: "QuotaExceeded",
            message: format!(
                "namespace {customer} has {used} fully managed instance(s) and the platform allows at most {max} per customer; delete one, and this instance is deployed; nothing was created"
            ),
            retry: Duration::from_secs(60),
        }));
    }
    create().await.map(Ok)
}
