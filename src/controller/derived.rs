//! DerivedService controller: applies for distribution, computes the scenario
//! and decides whether the product may be sold now.
//!
//! Safety: the only write this controller makes outside the distributor's
//! namespace is the application grant, created (never updated) in the ISV's
//! namespace with decision Pending, or Approved where the ISV chose Automatic.
//! A grant that exists is never touched, so an ISV's decision always stands.

use super::grant::requeue_at;
use super::status::{condition, ready, write_status_if_changed};
use super::{Context, Error, MANAGED_BY, MANAGED_BY_LABEL, is_conflict, ns_of};
use crate::api::{
    Approval, Condition, Decision, DerivedService, DerivedServiceStatus, DistributionGrant,
    DistributionGrantSpec, GrantRef,
};
use crate::domain::distribution::{
    NotSellable, Sellable, application_grant_name, evaluate_derived, select_grant,
};
use jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use std::collections::BTreeMap;
use std::sync::Arc;

pub(super) const KIND: &str = "DerivedService";

/// Looks up the source Service and the grant of a derived service in the
/// caches, at the newest published version the DerivedService resells
/// (`spec.source.version`: exact, a range, or unset for the Service's
/// current version).
pub fn evaluate(
    ds: &DerivedService,
    ctx: &Context,
    now: Timestamp,
) -> Result<Sellable, NotSellable> {
    let src = &ds.spec.source;
    let service = ctx
        .stores
        .services
        .get(&ObjectRef::new(&src.name).within(&src.namespace));
    let Some(svc) = service else {
        return evaluate_at(ds, None, ctx, now);
    };
    let catalog = super::version::catalog(&svc, ctx);
    let chosen = crate::domain::versions::parse_pin(src.version.as_deref(), &catalog.known)
        .and_then(|pin| {
            let ask = crate::domain::versions::Ask {
                pin: &pin,
                channel: src.channel.as_deref(),
                policy: crate::api::UpdatePolicy::Automatic,
                running: None,
                current: &catalog.current,
            };
            crate::domain::versions::choose(&ask, &catalog.known).map(|v| {
                let live = pin == crate::domain::versions::Pin::Current && src.channel.is_none();
                catalog.service_at(&svc, &v, live)
            })
        });
    match chosen {
        Ok(Some(at)) => evaluate_at(ds, Some(&at), ctx, now),
        Ok(None) => evaluate_at(ds, Some(&svc), ctx, now),
        Err(e) => {
            let scenario = evaluate_at(ds, Some(&svc), ctx, now)?.scenario;
            Err(NotSellable {
                reason: "VersionMismatch",
                message: format!("spec.source.version: {}", e.message),
                scenario: Some(scenario),
                grant: None,
                should_apply: false,
            })
        }
    }
}

/// `evaluate` with the source Service as it deploys one version.
pub fn evaluate_at(
    ds: &DerivedService,
    service: Option<&crate::api::Service>,
    ctx: &Context,
    now: Timestamp,
) -> Result<Sellable, NotSellable> {
    let src = &ds.spec.source;
    let distributor = ds.metadata.namespace.clone().unwrap_or_default();
    let grants: Vec<_> = ctx
        .index
        .grants_of(&(src.namespace.clone(), src.name.clone(), distributor.clone()))
        .iter()
        .filter_map(|g| ctx.stores.grants.get(g))
        .collect();
    let grant = select_grant(
        grants.iter().map(|g| g.as_ref()),
        &src.name,
        &distributor,
        now,
    );
    evaluate_derived(ds, service, grant, ctx.index.as_ref(), now)
}

/// Pure: the status of a derived service from its evaluation.
pub fn desired_status(
    ds: &DerivedService,
    eval: &Result<Sellable, NotSellable>,
) -> DerivedServiceStatus {
    let previous = ds
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let src = &ds.spec.source;
    let mut status = DerivedServiceStatus {
        observed_generation: ds.metadata.generation,
        source: Some(format!("{}/{}", src.namespace, src.name)),
        ..Default::default()
    };
    let scenario = match eval {
        Ok(s) => Some(s.scenario),
        Err(n) => n.scenario,
    };
    if let Some(sc) = scenario {
        status.scenario = Some(sc.as_str().to_string());
        status.settlement = Some(sc.settlement());
        status.resource_owner = Some(sc.resource_owner());
    }
    match eval {
        Ok(s) => sellable_status(ds, s, previous, &mut status),
        Err(n) => not_sellable_status(ds, n, previous, &mut status),
    }
    status
}

/// Pure: the grant, plans, source version and Ready condition of a derived
/// service that may be sold now (`status` holds its scenario already).
fn sellable_status(
    ds: &DerivedService,
    s: &Sellable,
    previous: &[Condition],
    status: &mut DerivedServiceStatus,
) {
    status.grant = Some(GrantRef {
        name: s.grant_name.clone(),
        state: "Approved".into(),
    });
    status.plans = s.offering.plans.iter().map(|p| p.name.clone()).collect();
    status.source_version = Some(s.source_version.clone());
    status.conditions = vec![condition(
        previous,
        "Ready",
        true,
        "Sellable",
        format!(
            "{} ({:?} settlement, resources owned by the {}); may be sold now{}",
            s.scenario.as_str(),
            status.settlement.unwrap_or(crate::api::Settlement::Offline),
            status
                .resource_owner
                .map(|p| p.to_string())
                .unwrap_or_default(),
            access_note(ds, s.scenario)
        ),
        ds.metadata.generation,
    )];
}

/// Pure: the grant and Ready condition of a derived service that may not
/// be sold now; an application about to be written shows as Pending.
fn not_sellable_status(
    ds: &DerivedService,
    n: &NotSellable,
    previous: &[Condition],
    status: &mut DerivedServiceStatus,
) {
    status.grant = n.grant.as_ref().map(|(name, state)| GrantRef {
        name: name.clone(),
        state: state.clone(),
    });
    if status.grant.is_none() && n.should_apply {
        let ds_ns = ds.metadata.namespace.as_deref().unwrap_or_default();
        status.grant = Some(GrantRef {
            name: application_grant_name(&ds.spec.source.name, ds_ns),
            state: "Pending".into(),
        });
    }
    status.conditions = vec![condition(
        previous,
        "Ready",
        false,
        n.reason,
        n.message.clone(),
        ds.metadata.generation,
    )];
}

/// A distributor's access policy counts only where the distributor owns the
/// resources (scenario 2); elsewhere the product is sellable, and its Ready
/// message says that `spec.access` has no effect, instead of keeping quiet.
pub fn access_note(ds: &DerivedService, scenario: crate::domain::scenario::Scenario) -> String {
    use crate::api::Party;
    let why = match scenario.resource_owner() {
        _ if ds.spec.access.is_none() => return String::new(),
        Party::Distributor => return String::new(),
        Party::Isv => {
            "the ISV owns the resources, so its Service's spec.access decides access requests"
        }
        Party::Customer => "the customer owns the resources and needs no access request",
    };
    format!(
        "; note: spec.access has no effect in {}: {why}; remove spec.access",
        scenario.as_str()
    )
}

pub(super) async fn reconcile(ds: Arc<DerivedService>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = ns_of(ds.as_ref());
    let now = Timestamp::now();
    let eval = evaluate(&ds, &ctx, now);
    if let Err(n) = &eval
        && n.should_apply
    {
        apply_for_distribution(&ds, &ctx).await?;
    }
    let mut status = desired_status(&ds, &eval);
    let note = super::tenancy::operators_note(&ctx, &ns, &ds.spec.operators).await?;
    super::tenancy::note_on_ready(&mut status.conditions, &note);
    let api = Api::<DerivedService>::namespaced(ctx.client.clone(), &ns);
    if write_status_if_changed(&api, &ctx.memo, ds.as_ref(), ds.status.as_ref(), &status).await? {
        ctx.metrics.wrote(KIND, "status");
        let before = ds
            .status
            .as_ref()
            .and_then(|s| ready(&s.conditions))
            .map(|c| c.reason.clone());
        if let Some(c) = ready(&status.conditions)
            && before.as_deref() != Some(c.reason.as_str())
        {
            ctx.event(
                ds.as_ref(),
                c.status != "True" && c.reason != "GrantPending",
                &c.reason,
                c.message.clone(),
            )
            .await;
        }
    }
    let action = requeue_at(eval.ok().and_then(|s| s.grant_expiry));
    Ok(
        match super::tenancy::recheck_operators(&ds.spec.operators) {
            // The sooner of the two: expiry or a look at the platform's annotations.
            Some(d) if action == Action::await_change() => Action::requeue(d),
            _ => action,
        },
    )
}

/// Writes the distributor's application into the ISV's namespace: create only.
async fn apply_for_distribution(ds: &DerivedService, ctx: &Context) -> Result<(), Error> {
    let src = &ds.spec.source;
    let distributor = ns_of(ds);
    let Some(service) = ctx
        .stores
        .services
        .get(&ObjectRef::new(&src.name).within(&src.namespace))
    else {
        return Ok(());
    };
    let automatic = service.spec.distribution.approval == Approval::Automatic;
    let grant = application(ds, &distributor, automatic);
    let api = Api::<DistributionGrant>::namespaced(ctx.client.clone(), &src.namespace);
    // The cache may lag behind a grant the ISV wrote a moment ago (a GitOps
    // sync applies everything at once): ask the API server before applying.
    // This read happens only on the way to an application, never per reconcile.
    let existing = api.list(&kube::api::ListParams::default()).await?;
    if existing
        .items
        .iter()
        .any(|g| g.spec.service_name == src.name && g.spec.distributor_namespace == distributor)
    {
        return Ok(());
    }
    let pp = PostParams {
        field_manager: Some(crate::api::FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api.create(&pp, &grant).await {
        Ok(_) => {
            ctx.metrics.wrote(KIND, "grant");
            let name = grant.metadata.name.as_deref().unwrap_or_default();
            ctx.event(
                ds,
                false,
                "AppliedForDistribution",
                format!(
                    "wrote DistributionGrant {}/{name} ({})",
                    src.namespace,
                    if automatic {
                        "approved automatically"
                    } else {
                        "Pending: waiting for the ISV"
                    }
                ),
            )
            .await;
            Ok(())
        }
        // Someone (the ISV, or an earlier reconcile) wrote it already: it stands.
        Err(e) if is_conflict(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Pure: the application grant of `distributor` for the source of `ds`:
/// Pending, or Approved when the ISV's approval is `automatic`.
fn application(ds: &DerivedService, distributor: &str, automatic: bool) -> DistributionGrant {
    let src = &ds.spec.source;
    DistributionGrant {
        metadata: ObjectMeta {
            name: Some(application_grant_name(&src.name, distributor)),
            namespace: Some(src.namespace.clone()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
                (
                    "computenest.dev/application".to_string(),
                    "true".to_string(),
                ),
            ])),
            annotations: Some(BTreeMap::from([(
                "computenest.dev/applicant".to_string(),
                format!(
                    "{distributor}/{}",
                    ds.metadata.name.as_deref().unwrap_or_default()
                ),
            )])),
            ..Default::default()
        },
        spec: DistributionGrantSpec {
            service_name: src.name.clone(),
            distributor_namespace: distributor.to_string(),
            decision: if automatic {
                Decision::Approved
            } else {
                Decision::Pending
            },
            expires_at: None,
            reason: automatic
                .then(|| "approved automatically: the Service's approval is Automatic".to_string()),
        },
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::scenario::Scenario;
    use kube::ResourceExt;
    use serde_json::json;

    #[test]
    fn an_access_policy_that_cannot_apply_is_named_in_the_message() {
        let mut ds: DerivedService = serde_json::from_value(json!({
            "apiVersion": "computenest.dev/v1alpha1", "kind": "DerivedService",
            "metadata": {"name": "d", "namespace": "dist"},
            "spec": {"source": {"namespace": "isv", "name": "s"}, "type": "FullyManaged",
                     "access": {"approval": "Automatic"}}
        }))
        .unwrap();
        assert_eq!(access_note(&ds, Scenario::Scenario2), "");
        for (scenario, owner) in [
            (Scenario::Scenario1, "the customer owns the resources"),
            (Scenario::Scenario3, "its Service's spec.access decides"),
            (Scenario::Scenario4, "its Service's spec.access decides"),
        ] {
            let note = access_note(&ds, scenario);
            assert!(
                note.contains(&format!(
                    "spec.access has no effect in {}",
                    scenario.as_str()
                )),
                "{note}"
            );
            assert!(note.contains(owner), "{note}");
        }
        ds.spec.access = None;
        assert_eq!(access_note(&ds, Scenario::Scenario3), "");
    }

    #[test]
    fn an_application_is_pending_unless_the_isv_approves_automatically() {
        let ds: DerivedService = serde_json::from_value(json!({
            "apiVersion": "computenest.dev/v1alpha1", "kind": "DerivedService",
            "metadata": {"name": "d", "namespace": "dist"},
            "spec": {"source": {"namespace": "isv", "name": "s"}, "type": "FullyManaged"}
        }))
        .unwrap();
        let pending = application(&ds, "dist", false);
        assert_eq!(
            pending.metadata.name,
            Some(application_grant_name("s", "dist"))
        );
        assert_eq!(pending.metadata.namespace.as_deref(), Some("isv"));
        assert_eq!(
            pending.annotations().get("computenest.dev/applicant"),
            Some(&"dist/d".to_string())
        );
        assert_eq!(
            (pending.spec.decision, pending.spec.reason),
            (Decision::Pending, None)
        );
        let approved = application(&ds, "dist", true);
        assert_eq!(approved.spec.decision, Decision::Approved);
        assert!(
            approved
                .spec
                .reason
                .is_some_and(|r| r.contains("Automatic"))
        );
    }
}
