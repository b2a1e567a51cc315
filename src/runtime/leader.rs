//! Leader election: only the holder of the lease runs the controllers, so
//! that no two replicas write. Built on kube-lease-manager.

use crate::runtime::metrics::Metrics;
use kube::Client;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Which lease, held by whom, for how long.
#[derive(Clone, Debug)]
pub struct Lease {
    /// Name of the Lease object.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// This replica's identity.
    pub identity: String,
    /// Seconds a leader holds the lease without renewing it.
    pub duration_seconds: u64,
}

/// Waits for the lease, then runs `controllers` (given a future that
/// resolves when they must stop) until leadership is lost or `shutdown`
/// resolves. Losing the lease is an error: the caller exits, and the
/// controllers are aborted at once, because another replica may already
/// be writing. `standby` is true until this replica leads.
pub async fn run_while_leader<C, CF>(
    client: Client,
    lease: Lease,
    metrics: Arc<Metrics>,
    standby: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()>,
    controllers: C,
) -> Result<(), String>
where
    C: FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> CF,
    CF: Future<Output = ()> + Send + 'static,
{
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client, &lease.name)
        .with_namespace(&lease.namespace)
        .with_identity(&lease.identity)
        .with_duration(lease.duration_seconds.max(2))
        .with_grace((lease.duration_seconds / 3).max(1))
        // Per replica: server-side apply detects a competing holder only between different managers.
        .with_field_manager(format!("computenest-lease-{}", lease.identity))
        .build()
        .await
        .map_err(|e| {
            format!(
                "cannot set up the leader lease {}/{}: {e}",
                lease.namespace, lease.name
            )
        })?;
    let (mut leader_rx, lease_task) = manager.watch().await;
    tracing::info!(lease = %lease.name, "waiting for the leader lease");

    tokio::pin!(shutdown);
    loop {
        if *leader_rx.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = leader_rx.changed() => if changed.is_err() { return Err("the lease manager stopped".into()) },
            _ = &mut shutdown => {
                drop(leader_rx);
                let _ = lease_task.await;
                return Ok(());
            }
        }
    }
    tracing::info!("became the leader");
    standby.store(false, Ordering::Relaxed);
    metrics.leader.set(1);

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(controllers(Box::pin(async {
        let _ = stop_rx.await;
    })));
    let lost = async {
        loop {
            if leader_rx.changed().await.is_err() || !*leader_rx.borrow() {
                return;
            }
        }
    };
    let outcome = tokio::select! {
        _ = lost => Err("lost the leader lease; exiting so that no two replicas write".to_string()),
        _ = &mut shutdown => Ok(()),
    };
    metrics.leader.set(0);
    if outcome.is_err() {
        running.abort();
    } else {
        let _ = stop_tx.send(());
    }
    let _ = running.await;
    // Dropping the receiver makes the lease manager release the lease, so a standby takes over at once.
    drop(leader_rx);
    let _ = lease_task.await;
    outcome
}
