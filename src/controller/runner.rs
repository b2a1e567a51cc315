//! The one way every controller runs: its own kind's shared watch plus the
//! objects the index routes to it; the namespace filter and the readiness
//! gate before any reconcile; the reconcile timed and counted; failures
//! counted and retried with exponential backoff per object (`on_error`),
//! and forgotten after a success.

use super::{Context, Error, failure_key, on_error};
use futures::StreamExt;
use kube::Resource;
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::{ObjectRef, ReflectHandle, Store};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedReceiver;

/// A controller of kind `K`, ready to run.
pub struct Reconciler<K: Resource<DynamicType = ()> + Clone + 'static> {
    /// The kind, for logs and metrics.
    pub kind: &'static str,
    /// Its own objects, from the kind's shared watch.
    pub primary: ReflectHandle<K>,
    /// The kind's cache.
    pub store: Store<K>,
    /// Objects of the kind that the index says depend on a change elsewhere.
    pub routed: Option<UnboundedReceiver<ObjectRef<K>>>,
}

impl<K> Reconciler<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// Runs `reconcile` for every object that changed or was routed here,
    /// until `shutdown` resolves.
    pub async fn run<R, Fut>(
        self,
        reconcile: R,
        ctx: Arc<Context>,
        shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    ) where
        R: Fn(Arc<K>, Arc<Context>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, Error>> + Send + 'static,
    {
        let kind = self.kind;
        let reconcile = Arc::new(reconcile);
        let mut controller = Controller::for_shared_stream(self.primary, self.store)
            .with_config(Config::default().concurrency(ctx.settings.concurrency))
            .graceful_shutdown_on(shutdown);
        if let Some(routed) = self.routed {
            controller = controller
                .reconcile_on(futures::stream::unfold(routed, |mut rx| async move {
                    rx.recv().await.map(|r| (r, rx))
                }));
        }
        controller
            .run(
                move |obj, ctx| guarded(kind, obj, ctx, reconcile.clone()),
                move |obj, e, ctx| on_error(kind, obj.as_ref(), e, &ctx),
                ctx,
            )
            .for_each(|_| async {})
            .await;
    }
}

/// What runs around every reconcile.
async fn guarded<K, R, Fut>(
    kind: &'static str,
    obj: Arc<K>,
    ctx: Arc<Context>,
    reconcile: Arc<R>,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()>,
    R: Fn(Arc<K>, Arc<Context>) -> Fut,
    Fut: Future<Output = Result<Action, Error>>,
{
    let ns = obj.meta().namespace.as_deref().unwrap_or_default();
    if !ctx.settings.watches(ns) {
        return Ok(Action::await_change());
    }
    // Until every cache has its first full list a lookup may miss an
    // object that exists (a grant, say), so nothing is decided.
    if let Some(wait) = ctx.not_synced() {
        return Ok(wait);
    }
    let started = Instant::now();
    let key = failure_key(kind, obj.as_ref());
    let result = reconcile(obj, ctx.clone()).await;
    ctx.metrics.reconciled(kind, started.elapsed());
    if result.is_ok() {
        ctx.failures.succeeded(&key);
    }
    result
}
