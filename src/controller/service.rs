//! Service controller: checks the ISV's template and parameter schema, so the
//! ISV learns about a mistake before any distributor or customer does.

use super::status::{condition, ready, write_status_if_changed};
use super::{Context, Error, ns_of};
use crate::api::{Service, ServiceStatus};
use crate::domain::render::resolve_offering;
use kube::api::Api;
use kube::runtime::controller::Action;
use std::sync::Arc;

pub(super) const KIND: &str = "Service";

/// Pure: the status a Service should have.
pub fn desired_status(
    svc: &Service,
    allowed: &[crate::domain::render::AllowedKind],
    tenancy: &crate::domain::tenancy::TenancyPolicy,
) -> ServiceStatus {
    let previous = svc
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let generation = svc.metadata.generation;
    let fits =
        crate::domain::tenancy::check_service(svc.spec.pod_security, &svc.spec.plans, tenancy);
    let ready = match resolve_offering(&svc.spec, None, allowed).map(|_| fits) {
        Ok(Err(e)) => condition(
            previous,
            "Ready",
            false,
            e.reason,
            format!(
                "{}; no instance can be sold from this Service until it is fixed",
                e.message
            ),
            generation,
        ),
        Ok(Ok(())) => condition(
            previous,
            "Ready",
            true,
            "Valid",
            format!(
                "template and parameter schema are valid{}",
                access_note(svc)
            ),
            generation,
        ),
        Err(e) => condition(
            previous,
            "Ready",
            false,
            match e {
                crate::domain::render::OfferingError::Template { .. } => "InvalidTemplate",
                _ => "InvalidSchema",
            },
            format!("{e}; nothing can be deployed from this Service until it is fixed"),
            generation,
        ),
    };
    ServiceStatus {
        observed_generation: generation,
        conditions: vec![ready],
        ..Default::default()
    }
}

/// The ISV's access policy counts only for instances whose resources the ISV
/// owns (a FullyManaged Service); on a Private one the Ready message says that
/// it has no effect, instead of keeping quiet.
pub fn access_note(svc: &Service) -> &'static str {
    if svc.spec.access.is_some() && svc.spec.type_ == crate::api::ServiceType::Private {
        "; note: spec.access has no effect on a Private Service: its instances' resources belong to the customer (or, in scenario 2, to the distributor, whose DerivedService's spec.access decides); remove spec.access"
    } else {
        ""
    }
}

pub(super) async fn reconcile(svc: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = ns_of(svc.as_ref());
    let mut status = desired_status(&svc, &ctx.settings.allowed_kinds, &ctx.settings.tenancy);
    let note = super::tenancy::operators_note(&ctx, &ns, &svc.spec.operators).await?;
    super::tenancy::note_on_ready(&mut status.conditions, &note);
    // Versions: only valid content is published.
    let catalog = super::version::catalog(&svc, &ctx);
    if ready(&status.conditions).is_some_and(|c| c.status == "True") {
        let published = super::version::publish(&svc, &ctx, &catalog).await?;
        status.published_version = published.version;
        if let Some(n) = published.note {
            super::tenancy::note_on_ready(&mut status.conditions, &format!("; note: {n}"));
        }
    }
    let (versions, again) = super::version::keep_versions(&svc, &ctx, &catalog).await?;
    status.versions = versions;
    let api = Api::<Service>::namespaced(ctx.client.clone(), &ns);
    if write_status_if_changed(&api, &ctx.memo, svc.as_ref(), svc.status.as_ref(), &status).await? {
        ctx.metrics.wrote(KIND, "status");
        let was = svc
            .status
            .as_ref()
            .and_then(|s| ready(&s.conditions))
            .map(|c| c.reason.clone());
        if let Some(c) = ready(&status.conditions)
            && c.status == "False"
            && was.as_deref() != Some(c.reason.as_str())
        {
            ctx.event(svc.as_ref(), true, &c.reason, c.message.clone())
                .await;
        }
    }
    Ok(super::tenancy::recheck_operators(&svc.spec.operators)
        .into_iter()
        .chain(again)
        .min()
        .map(Action::requeue)
        .unwrap_or_else(Action::await_change))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(type_: &str, access: bool) -> Service {
        let mut v = json!({
            "apiVersion": "computenest.dev/v1alpha1", "kind": "Service",
            "metadata": {"name": "s", "namespace": "isv"},
            "spec": {"type": type_, "version": "1", "template": {"objects": []}}
        });
        if access {
            v["spec"]["access"] = json!({"approval": "Automatic"});
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn an_access_policy_that_cannot_apply_is_named_in_the_message() {
        let allowed = crate::domain::render::default_allowed_kinds();
        let message = |s: &Service| {
            let st = desired_status(s, &allowed, &Default::default());
            let c = ready(&st.conditions).cloned().unwrap_or_default();
            assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Valid"));
            c.message
        };
        assert!(
            message(&service("Private", true))
                .contains("spec.access has no effect on a Private Service")
        );
        assert!(!message(&service("Private", false)).contains("note"));
        assert!(!message(&service("FullyManaged", true)).contains("note"));
    }
}
