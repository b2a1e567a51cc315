//! DistributionGrant controller: the effective state (with expiry, on time),
//! and an Event for each decision, in the ISV's namespace.

use super::status::{condition, write_status_if_changed};
use super::{Context, Error, ns_of};
use crate::api::{DistributionGrant, DistributionGrantStatus, GrantState};
use crate::distribution::grant_state;
use futures::StreamExt;
use jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::{ReflectHandle, Store};
use std::sync::Arc;
use std::time::{Duration, Instant};

const KIND: &str = "DistributionGrant";

/// The DistributionGrant controller, until `shutdown`.
pub async fn controller(
    trigger: ReflectHandle<DistributionGrant>,
    store: Store<DistributionGrant>,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let concurrency = ctx.settings.concurrency;
    Controller::for_shared_stream(trigger, store)
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

/// Pure: the status a grant should have at `now`, and when to look again.
pub fn desired_status(
    grant: &DistributionGrant,
    now: Timestamp,
) -> (DistributionGrantStatus, Option<Timestamp>) {
    let previous = grant
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let generation = grant.metadata.generation;
    let (state, expiry) = grant_state(grant, now);
    let (ok, reason, message) = match state {
        GrantState::Approved => (
            true,
            "Approved",
            format!(
                "{} may resell Service {}{}",
                grant.spec.distributor_namespace,
                grant.spec.service_name,
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
                "{} applied to resell Service {}; set spec.decision to Approved or Rejected",
                grant.spec.distributor_namespace, grant.spec.service_name
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
    };
    let status = DistributionGrantStatus {
        observed_generation: generation,
        state: Some(state),
        conditions: vec![condition(
            previous, "Ready", ok, reason, message, generation,
        )],
    };
    (status, expiry)
}

async fn reconcile(grant: Arc<DistributionGrant>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let ns = ns_of(grant.as_ref());
    if !ctx.settings.watches(&ns) {
        return Ok(Action::await_change());
    }
    if let Some(wait) = ctx.not_synced() {
        return Ok(wait);
    }
    let (status, expiry) = desired_status(&grant, Timestamp::now());
    let api = Api::<DistributionGrant>::namespaced(ctx.client.clone(), &ns);
    let before = grant.status.as_ref().and_then(|s| s.state);
    if write_status_if_changed(
        &api,
        &ctx.memo,
        grant.as_ref(),
        grant.status.as_ref(),
        &status,
    )
    .await?
    {
        ctx.metrics.wrote(KIND, "status");
        if before != status.state
            && let Some(state) = status.state
        {
            let note = status
                .conditions
                .first()
                .map(|c| c.message.clone())
                .unwrap_or_default();
            let reason = match state {
                GrantState::Pending => "Applied",
                GrantState::Approved => "Approved",
                GrantState::Rejected => "Rejected",
                GrantState::Revoked => "Revoked",
                GrantState::Expired => "Expired",
            };
            ctx.event(
                grant.as_ref(),
                state != GrantState::Approved && state != GrantState::Pending,
                reason,
                note,
            )
            .await;
        }
    }
    ctx.metrics.reconciled(KIND, started.elapsed());
    Ok(requeue_at(expiry))
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
