//! DistributionGrant controller: the effective state (with expiry, on time),
//! whether the grant can allow anything (its Service exists and has
//! distribution enabled, and no other grant for the same pair takes
//! precedence), and an Event for each change, in the ISV's namespace.

use super::status::{condition, ready, write_status_if_changed};
use super::{Context, Error, ns_of};
use crate::api::{DistributionGrant, DistributionGrantStatus, GrantState, Service};
use crate::domain::distribution::{grant_state, select_grant, unreadable_expiry};
use jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use std::sync::Arc;
use std::time::Duration;

pub(super) const KIND: &str = "DistributionGrant";

/// What a grant's status is computed from, besides the grant itself.
#[derive(Clone, Copy, Debug)]
pub struct Surroundings<'a> {
    /// The Service the grant names, in the grant's namespace, if it exists.
    pub service: Option<&'a Service>,
    /// The grant in effect for the same Service and distributor (the one
    /// `select_grant` picks among every such grant, this one included).
    pub in_effect: Option<&'a DistributionGrant>,
}

/// Pure: the status a grant should have at `now`, and when its own expiry
/// falls (to look again then). The decision is reported as the ISV wrote it
/// (`status.state`); the Ready condition says whether the grant allows sales,
/// and if not, why: a missing Service or one with distribution disabled, or
/// another grant for the same pair that takes precedence, before the decision.
pub fn desired_status(
    grant: &DistributionGrant,
    around: Surroundings<'_>,
    now: Timestamp,
) -> (DistributionGrantStatus, Option<Timestamp>) {
    let previous = grant
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let generation = grant.metadata.generation;
    let (state, expiry) = grant_state(grant, now);
    let (ok, reason, message) = ready_verdict(grant, around, state, now);
    let status = DistributionGrantStatus {
        observed_generation: generation,
        state: Some(state),
        conditions: vec![condition(
            previous, "Ready", ok, reason, message, generation,
        )],
    };
    (status, expiry)
}

/// Whether a grant allows sales, with the reason and message of its Ready condition.
type ReadyVerdict = (bool, &'static str, String);

/// Pure: the Ready verdict of a grant in effective `state`: what surrounds
/// it first (its Service, its expiry, a grant that takes precedence), then
/// its decision.
fn ready_verdict(
    grant: &DistributionGrant,
    around: Surroundings<'_>,
    state: GrantState,
    now: Timestamp,
) -> ReadyVerdict {
    let ns = grant.metadata.namespace.as_deref().unwrap_or_default();
    let name = grant.metadata.name.as_deref().unwrap_or_default();
    let service = &grant.spec.service_name;
    let distributor = &grant.spec.distributor_namespace;
    let superseded_by = around
        .in_effect
        .filter(|other| other.metadata.name.as_deref() != Some(name));
    match (around.service, superseded_by) {
        (None, _) => (
            false,
            "ServiceNotFound",
            format!(
                "Service {service} does not exist in namespace {ns}: this grant (decision {:?}) allows nothing until it does; create the Service, or write a new grant that names an existing one (spec.serviceName is immutable)",
                grant.spec.decision
            ),
        ),
        (Some(_), _) if unreadable_expiry(grant).is_some() => (
            false,
            "InvalidExpiry",
            format!(
                "spec.expiresAt {:?} is not an RFC 3339 time (for example 2030-01-31T00:00:00Z): this grant allows no sales until it is fixed",
                grant.spec.expires_at.as_deref().unwrap_or_default()
            ),
        ),
        (Some(_), Some(other)) => (
            false,
            "Superseded",
            format!(
                "DistributionGrant {ns}/{} also covers Service {service} for {distributor} and takes precedence (it is {:?}; an Approved grant wins, then Pending, Expired, Revoked, Rejected, ties by name): this grant (decision {:?}) has no effect while both exist; delete one of them",
                other.metadata.name.as_deref().unwrap_or_default(),
                grant_state(other, now).0,
                grant.spec.decision
            ),
        ),
        (Some(svc), None) => decision_verdict(grant, svc, state),
    }
}

/// Pure: the Ready verdict of the grant in effect for its pair, whose
/// Service exists: its decision, as far as the Service lets it count.
fn decision_verdict(grant: &DistributionGrant, svc: &Service, state: GrantState) -> ReadyVerdict {
    let service = &grant.spec.service_name;
    let distributor = &grant.spec.distributor_namespace;
    match state {
        GrantState::Approved if !svc.spec.distribution.enabled => (
            false,
            "DistributionDisabled",
            format!(
                "{distributor} is approved to resell Service {service}, but its distribution is disabled (spec.distribution.enabled is false): no sales until it is enabled"
            ),
        ),
        GrantState::Approved => (
            true,
            "Approved",
            format!(
                "{distributor} may resell Service {service}{}",
                grant
                    .spec
                    .expires_at
                    .as_deref()
                    .map(|e| format!(" until {e}"))
                    .unwrap_or_default()
            ),
        ),
        GrantState::Pending => (
            false,
            "Pending",
            format!(
                "{distributor} applied to resell Service {service}; set spec.decision to Approved or Rejected{}",
                if svc.spec.distribution.approval == crate::api::Approval::Automatic {
                    " (the Service's approval is Automatic, which approves applications written from now on; this one was written before and waits for a decision)"
                } else {
                    ""
                }
            ),
        ),
        GrantState::Rejected => (
            false,
            "Rejected",
            "the application was rejected".to_string(),
        ),
        GrantState::Revoked => (
            false,
            "Revoked",
            "the grant was revoked: new sales stopped".to_string(),
        ),
        GrantState::Expired => (
            false,
            "Expired",
            format!(
                "the grant expired at {}; extend spec.expiresAt to allow sales again",
                grant.spec.expires_at.as_deref().unwrap_or("?")
            ),
        ),
    }
}

/// The Event reason for a Ready reason: an application is announced as `Applied`.
fn event_reason(reason: &str) -> &str {
    match reason {
        "Pending" => "Applied",
        other => other,
    }
}

pub(super) async fn reconcile(
    grant: Arc<DistributionGrant>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let ns = ns_of(grant.as_ref());
    let now = Timestamp::now();
    let service = ctx
        .stores
        .services
        .get(&ObjectRef::new(&grant.spec.service_name).within(&ns));
    let pair = grants_of_pair(&grant, &ctx, &ns);
    let in_effect = select_grant(
        pair.iter().map(|g| g.as_ref()),
        &grant.spec.service_name,
        &grant.spec.distributor_namespace,
        now,
    );
    let around = Surroundings {
        service: service.as_deref(),
        in_effect,
    };
    let (status, _) = desired_status(&grant, around, now);
    // Look again when this grant or another of the pair expires: precedence may change then.
    let next = pair.iter().filter_map(|g| grant_state(g, now).1).min();
    write_status(&grant, &ctx, &ns, &status).await?;
    Ok(requeue_at(next))
}

/// Every grant for the same Service and distributor in the caches, with
/// this very version of `grant` in place of the cached one.
fn grants_of_pair(
    grant: &Arc<DistributionGrant>,
    ctx: &Context,
    ns: &str,
) -> Vec<Arc<DistributionGrant>> {
    let mut pair: Vec<_> = ctx
        .index
        .grants_of(&(
            ns.to_string(),
            grant.spec.service_name.clone(),
            grant.spec.distributor_namespace.clone(),
        ))
        .iter()
        .filter_map(|g| ctx.stores.grants.get(g))
        .collect();
    // The cache may not show this very version yet: judge the one reconciled.
    pair.retain(|g| g.metadata.name != grant.metadata.name);
    pair.push(grant.clone());
    pair
}

/// Writes the status if it changed, with an Event when the Ready reason did.
async fn write_status(
    grant: &DistributionGrant,
    ctx: &Context,
    ns: &str,
    status: &DistributionGrantStatus,
) -> Result<(), Error> {
    let api = Api::<DistributionGrant>::namespaced(ctx.client.clone(), ns);
    let before = grant
        .status
        .as_ref()
        .and_then(|s| ready(&s.conditions))
        .map(|c| c.reason.clone());
    if write_status_if_changed(&api, &ctx.memo, grant, grant.status.as_ref(), status).await? {
        ctx.metrics.wrote(KIND, "status");
        if let Some(c) = ready(&status.conditions)
            && before.as_deref() != Some(c.reason.as_str())
        {
            ctx.event(
                grant,
                c.status != "True" && c.reason != "Pending",
                event_reason(&c.reason),
                c.message.clone(),
            )
            .await;
        }
    }
    Ok(())
}

/// Requeue at an instant (plus a second, so that the clock has passed it), or wait for a change.
pub fn requeue_at(at: Option<Timestamp>) -> Action {
    match at {
        Some(at) => {
            let wait = at.duration_since(Timestamp::now()).unsigned_abs() + Duration::from_secs(1);
            Action::requeue(wait)
        }
        None => Action::await_change(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(enabled: bool) -> Service {
        serde_json::from_value(json!({
            "apiVersion": "computenest.dev/v1alpha1", "kind": "Service",
            "metadata": {"name": "db", "namespace": "isv"},
            "spec": {"type": "Private", "version": "1.0", "distribution": {"enabled": enabled},
                     "template": {"objects": []}}
        }))
        .unwrap()
    }

    fn grant(name: &str, decision: &str) -> DistributionGrant {
        serde_json::from_value(json!({
            "apiVersion": "computenest.dev/v1alpha1", "kind": "DistributionGrant",
            "metadata": {"name": name, "namespace": "isv", "generation": 1},
            "spec": {"serviceName": "db", "distributorNamespace": "dist", "decision": decision}
        }))
        .unwrap()
    }

    fn now() -> Timestamp {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    fn ready_of(
        g: &DistributionGrant,
        service: Option<&Service>,
        in_effect: Option<&DistributionGrant>,
    ) -> (String, String, String, Option<GrantState>) {
        let (status, _) = desired_status(
            g,
            Surroundings {
                service,
                in_effect: in_effect.or(Some(g)),
            },
            now(),
        );
        let c = ready(&status.conditions).cloned().unwrap_or_default();
        (c.status, c.reason, c.message, status.state)
    }

    #[test]
    fn an_approved_grant_is_ready_only_while_its_service_exists_with_distribution_enabled() {
        let g = grant("g", "Approved");
        let svc = service(true);
        let (status, reason, _, state) = ready_of(&g, Some(&svc), None);
        assert_eq!(
            (status.as_str(), reason.as_str(), state),
            ("True", "Approved", Some(GrantState::Approved))
        );
        // No Service of that name in the grant's namespace: not Ready, and the
        // decision is still reported as the ISV wrote it.
        let (status, reason, message, state) = ready_of(&g, None, None);
        assert_eq!(
            (status.as_str(), reason.as_str(), state),
            ("False", "ServiceNotFound", Some(GrantState::Approved))
        );
        assert!(
            message.contains("Service db does not exist in namespace isv"),
            "{message}"
        );
        assert!(message.contains("decision Approved"), "{message}");
        // Whatever the decision, a missing Service is what the grant reports.
        for decision in ["Pending", "Rejected", "Revoked"] {
            let (_, reason, _, _) = ready_of(&grant("g", decision), None, None);
            assert_eq!(reason, "ServiceNotFound", "{decision}");
        }
        let off = service(false);
        let (status, reason, message, _) = ready_of(&g, Some(&off), None);
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "DistributionDisabled")
        );
        assert!(
            message.contains("spec.distribution.enabled is false"),
            "{message}"
        );
        // Distribution disabled changes nothing for a grant that allows nothing anyway.
        let (_, reason, message, _) = ready_of(&grant("g", "Pending"), Some(&off), None);
        assert_eq!(reason, "Pending");
        assert!(!message.contains("Automatic"), "{message}");
        // Automatic approval applies to new applications; a pending one says so.
        let mut auto = service(true);
        auto.spec.distribution.approval = crate::api::Approval::Automatic;
        let (_, reason, message, _) = ready_of(&grant("g", "Pending"), Some(&auto), None);
        assert_eq!(reason, "Pending");
        assert!(
            message
                .contains("approval is Automatic, which approves applications written from now on"),
            "{message}"
        );
    }

    #[test]
    fn an_unreadable_expiry_is_reported() {
        let mut g = grant("g", "Approved");
        g.spec.expires_at = Some("2030-01-01T00:00:00+99:00".into());
        let svc = service(true);
        let (status, reason, message, state) = ready_of(&g, Some(&svc), None);
        assert_eq!(
            (status.as_str(), reason.as_str(), state),
            ("False", "InvalidExpiry", Some(GrantState::Approved))
        );
        assert!(message.contains("+99:00"), "{message}");
    }

    #[test]
    fn a_grant_that_another_grant_overrides_says_so() {
        let svc = service(true);
        let approved = grant("a-approved", "Approved");
        let revoked = grant("b-revoked", "Revoked");
        let pair = [approved.clone(), revoked.clone()];
        let in_effect = select_grant(pair.iter(), "db", "dist", now());
        assert_eq!(
            in_effect.and_then(|g| g.metadata.name.as_deref()),
            Some("a-approved")
        );
        // The revoked one does not stop sales: it must not claim to.
        let (status, reason, message, state) = ready_of(&revoked, Some(&svc), in_effect);
        assert_eq!(
            (status.as_str(), reason.as_str(), state),
            ("False", "Superseded", Some(GrantState::Revoked))
        );
        assert!(
            message.contains("DistributionGrant isv/a-approved also covers Service db for dist"),
            "{message}"
        );
        assert!(message.contains("it is Approved"), "{message}");
        let (status, reason, _, _) = ready_of(&approved, Some(&svc), in_effect);
        assert_eq!((status.as_str(), reason.as_str()), ("True", "Approved"));
    }

    #[test]
    fn events_announce_applications() {
        assert_eq!(event_reason("Pending"), "Applied");
        assert_eq!(event_reason("ServiceNotFound"), "ServiceNotFound");
    }
}
