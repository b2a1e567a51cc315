//! The controllers: one module per kind, sharing watch-fed caches.
//!
//! Each kind is watched once. Its cache (a reflector store) is shared by
//! every controller that looks it up; its events go to its own controller
//! and to the index (`index`), which routes each change to the objects of
//! other kinds that depend on it. Every controller runs the same way
//! (`runner`). Nothing is listed during a reconcile.

pub mod access;
pub mod commerce;
pub mod derived;
pub mod drift;
pub mod grant;
pub mod health;
pub mod index;
pub mod instance;
pub mod provisioned;
pub mod runner;
pub mod service;
pub mod status;
pub mod tenancy;
pub mod version;

use crate::api::{
    AccessApproval, AccessRequest, DerivedService, DistributionGrant, Service, ServiceInstance,
    ServiceVersion, UsageRecord,
};
use crate::domain::render::AllowedKind;
use crate::runtime::metrics::Metrics;
use futures::{Stream, StreamExt};
use index::Index;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ReflectHandle, Store};
use runner::Reconciler;

use kube::runtime::watcher::{self, Config as WatcherConfig};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

pub use crate::domain::naming::{MANAGED_BY, MANAGED_BY_LABEL};
pub use crate::runtime::health::Readiness;

/// Operator settings that the controllers read.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Kinds templates may create.
    pub allowed_kinds: Vec<AllowedKind>,
    /// Namespaces whose objects are reconciled; empty means all.
    pub namespaces: Vec<String>,
    /// Reconciles run at once, per controller.
    pub concurrency: u16,
    /// Time between sweeps for orphans: managed namespaces whose instance is
    /// gone, access grants whose AccessRequest is gone (also run at start;
    /// the access sweep at once after a burst of deletions).
    pub sweep_interval: Duration,
    /// What the controller may grant through AccessRequests: the platform's
    /// grantable set, which the controller's own RBAC holds (no escalate).
    pub grantable: crate::domain::access::Permissions,
    /// The platform's tenancy policy for managed namespaces, sales limits
    /// and render size caps (chart values `tenancy`).
    pub tenancy: crate::domain::tenancy::TenancyPolicy,
    /// How long a commercial day lasts (shorter in tests and demos).
    pub commerce_clock: crate::domain::commerce::Clock,
    /// Namespace of the license key Secret and the public key ConfigMap.
    pub license_namespace: String,
}

impl Settings {
    /// Whether objects of `ns` are this controller's to reconcile.
    pub fn watches(&self, ns: &str) -> bool {
        self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == ns)
    }
}

/// The watch-fed caches.
#[derive(Clone)]
pub struct Stores {
    /// Services of every ISV.
    pub services: Store<Service>,
    /// Grants of every ISV.
    pub grants: Store<DistributionGrant>,
    /// Derived services of every distributor.
    pub derived: Store<DerivedService>,
    /// Instances of every customer.
    pub instances: Store<ServiceInstance>,
    /// Metadata of the namespaces the controller created.
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Access requests of every customer.
    pub access_requests: Store<AccessRequest>,
    /// Access approvals of every owner.
    pub access_approvals: Store<AccessApproval>,
    /// Published versions of every Service.
    pub versions: Store<ServiceVersion>,
    /// Usage records of every instance.
    pub usage_records: Store<UsageRecord>,
}

/// Shared by every reconcile.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Caches.
    pub stores: Stores,
    /// Relations between the cached objects, and resolved offerings.
    pub index: Arc<Index>,
    /// Event recorder.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Settings.
    pub settings: Settings,
    /// What this process last wrote.
    pub memo: status::WriteMemo,
    /// Whether every cache has its first full list. Until then a lookup may
    /// miss an object that exists (a grant, say), so nothing is decided.
    pub readiness: Readiness,
    /// Consecutive reconcile failures per object, for backoff.
    pub failures: Failures,
    /// Per-customer locks around the creation of managed namespaces.
    pub customer_locks: tenancy::CustomerLocks,
    /// Metadata caches of what the instances provisioned (drift).
    pub provisioned: provisioned::Provisioned,
    /// What the controller last wrote of each provisioned object, and the
    /// repairs in a row per instance.
    pub drift: drift::DriftState,
    /// The automatic rollouts of versions under way.
    pub rollouts: version::Rollouts,
    /// The key licenses and ledgers are signed with (None: it could not be
    /// loaded; priced plans are then refused with a condition).
    pub license: Option<Arc<commerce::LicenseKey>>,
}

impl Context {
    /// Requeue shortly when the caches are not synced yet.
    pub fn not_synced(&self) -> Option<kube::runtime::controller::Action> {
        (!self.readiness.is_ready())
            .then(|| kube::runtime::controller::Action::requeue(Duration::from_millis(500)))
    }
}

impl Context {
    /// Publishes an Event about `obj` in its own namespace; a failure is logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(note.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        self.metrics.wrote(&K::kind(&()), "event");
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "could not publish event");
        }
    }
}

/// Errors that make a reconcile retry with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A value could not be encoded.
    #[error("encoding: {0}")]
    Encode(#[from] serde_json::Error),
    /// Something the controller waits for is not there yet.
    #[error("waiting: {0}")]
    Waiting(String),
}

impl Error {
    /// Short class for metrics.
    pub fn metric_reason(&self) -> String {
        match self {
            Error::Kube(kube::Error::Api(s)) => format!("Api{}", s.code),
            Error::Kube(_) => "Transport".into(),
            Error::Encode(_) => "Encode".into(),
            Error::Waiting(_) => "Waiting".into(),
        }
    }
}

/// Whether an API error is a 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether the API server refused a request for good, so that retrying the
/// same request cannot help: the object itself is wrong (400, 422, a
/// typed-patch failure reported as 500), or the kind is not served or not
/// permitted (403, 404, 415). The one notion every controller uses.
pub fn is_permanent(s: &kube::core::Status) -> bool {
    matches!(s.code, 400 | 403 | 404 | 415 | 422)
        || (s.code == 500 && s.message.contains("failed to create typed patch object"))
}

/// Whether an API error is a 409 (already exists or conflict).
pub fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// A shared watch of one kind: its cache, the handle its own controller
/// subscribes to (none for a kind without a controller), and the stream
/// that must be polled to drive it.
struct SharedWatch<K: Resource + Clone + 'static>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store: Store<K>,
    handle: Option<ReflectHandle<K>>,
    driver: std::pin::Pin<Box<dyn Stream<Item = ()> + Send>>,
}

/// A kind the controllers watch into a shared cache and the index.
trait Watched:
    Resource<DynamicType = ()>
    + index::Indexed
    + Clone
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Watched for K where
    K: Resource<DynamicType = ()>
        + index::Indexed
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static
{
}

/// Watches every `K` selected by `config` into a cache, and feeds each
/// event to the index once the cache has it. `with_controller`: whether a
/// controller subscribes (a subscriber must then be polled, or the
/// reflector stalls once 1024 events are buffered).
fn shared_watch<K>(
    api: Api<K>,
    config: WatcherConfig,
    index: Arc<Index>,
    with_controller: bool,
) -> SharedWatch<K>
where
    K: Watched,
{
    let (store, writer) = reflector::store_shared::<K>(1024);
    let handle = if with_controller {
        writer.subscribe()
    } else {
        None
    };
    let driver = watcher::watcher(api, config.any_semantic())
        .default_backoff()
        .modify(|o: &mut K| trim_cached_meta(o.meta_mut()))
        .reflect_shared(writer)
        .map(move |r| match r {
            Ok(event) => index.observe(&event),
            Err(e) => tracing::warn!(error = %e, kind = %K::kind(&()), "watch error; retrying"),
        });
    SharedWatch {
        store,
        handle,
        driver: Box::pin(driver),
    }
}

/// What the caches keep of an object's metadata: everything the controllers
/// read. managedFields and kubectl's copy of the last applied object are
/// never read and are most of an object's size (the latter doubles every
/// object applied with client-side `kubectl apply`). The field is set to
/// None rather than emptied: an emptied Vec keeps its allocation (about
/// 0.7 KiB per object, 2 MiB per 3000 instances).
fn trim_cached_meta(meta: &mut kube::core::ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// The annotation in which client-side `kubectl apply` keeps the whole object.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The controller of a watch made `with_controller`: its handle, its
/// cache, and what the index routes to it.
fn reconciler<K>(
    kind: &'static str,
    w: &mut SharedWatch<K>,
    routed: Option<tokio::sync::mpsc::UnboundedReceiver<kube::runtime::reflector::ObjectRef<K>>>,
) -> Reconciler<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let Some(primary) = w.handle.take() else {
        unreachable!("a shared watch made with a controller has a handle")
    };
    Reconciler {
        kind,
        primary,
        store: w.store.clone(),
        routed,
    }
}

/// The shared watch of every kind the controllers read.
struct Watches {
    services: SharedWatch<Service>,
    grants: SharedWatch<DistributionGrant>,
    derived: SharedWatch<DerivedService>,
    instances: SharedWatch<ServiceInstance>,
    access_requests: SharedWatch<AccessRequest>,
    access_approvals: SharedWatch<AccessApproval>,
    versions: SharedWatch<ServiceVersion>,
    usage_records: SharedWatch<UsageRecord>,
    namespaces: SharedWatch<PartialObjectMeta<Namespace>>,
    provisioned: provisioned::Provisioned,
    provisioned_drivers: provisioned::Drivers,
}

impl Watches {
    fn start(client: &Client, index: &Arc<Index>, allowed: &[AllowedKind]) -> Self {
        fn all<K: Watched>(client: &Client, index: &Arc<Index>) -> SharedWatch<K> {
            shared_watch(
                Api::<K>::all(client.clone()),
                WatcherConfig::default(),
                index.clone(),
                true,
            )
        }
        let (provisioned, provisioned_drivers) = provisioned::Provisioned::start(
            client,
            instance::prunable_kinds(allowed)
                .into_iter()
                // The controller does not read Secrets (its RBAC holds no
                // get/list/watch on them): their drift is not looked for.
                .filter(|k| !(k.group.is_empty() && k.kind == "Secret"))
                .collect(),
            index.clone(),
        );
        Watches {
            services: all(client, index),
            grants: all(client, index),
            derived: all(client, index),
            instances: all(client, index),
            access_requests: all(client, index),
            access_approvals: all(client, index),
            // Published versions: read by the Service and instance
            // controllers, no controller of their own.
            versions: shared_watch(
                Api::<ServiceVersion>::all(client.clone()),
                WatcherConfig::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}")),
                index.clone(),
                false,
            ),
            // Usage records: decided by the instance controller.
            usage_records: shared_watch(
                Api::<UsageRecord>::all(client.clone()),
                WatcherConfig::default(),
                index.clone(),
                false,
            ),
            // Only the namespaces this controller created, and only their
            // metadata; no controller of their own.
            namespaces: shared_watch(
                Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
                WatcherConfig::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}")),
                index.clone(),
                false,
            ),
            provisioned,
            provisioned_drivers,
        }
    }

    fn stores(&self) -> Stores {
        Stores {
            services: self.services.store.clone(),
            grants: self.grants.store.clone(),
            derived: self.derived.store.clone(),
            instances: self.instances.store.clone(),
            namespaces: self.namespaces.store.clone(),
            access_requests: self.access_requests.store.clone(),
            access_approvals: self.access_approvals.store.clone(),
            versions: self.versions.store.clone(),
            usage_records: self.usage_records.store.clone(),
        }
    }

    /// Drives every watch (after the controllers have taken their handles).
    async fn drive(self) {
        let mut drivers = self.provisioned_drivers;
        drivers.extend(vec![
            self.services.driver,
            self.grants.driver,
            self.derived.driver,
            self.instances.driver,
            self.namespaces.driver,
            self.access_requests.driver,
            self.access_approvals.driver,
            self.versions.driver,
            self.usage_records.driver,
        ]);
        futures::stream::select_all(drivers)
            .for_each(|_| async {})
            .await
    }
}

/// Runs every controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    readiness: Readiness,
    reporter: Reporter,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let index = Arc::new(Index::new(settings.allowed_kinds.clone()));
    let mut watches = Watches::start(&client, &index, &settings.allowed_kinds);
    let provisioned = watches.provisioned.clone();
    let stores = watches.stores();
    let routed = index.take_receivers();
    let license = match commerce::LicenseKey::load_or_create(&client, &settings.license_namespace)
        .await
    {
        Ok(k) => Some(Arc::new(k)),
        Err(e) => {
            tracing::error!(error = %e, namespace = %settings.license_namespace, "cannot load or create the license key; priced plans are refused until a restart finds it");
            None
        }
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        stores: stores.clone(),
        index,
        recorder: Recorder::new(client, reporter),
        metrics: metrics.clone(),
        settings,
        memo: status::WriteMemo::default(),
        readiness: readiness.clone(),
        failures: Failures::default(),
        customer_locks: Default::default(),
        provisioned,
        drift: Default::default(),
        rollouts: Default::default(),
        license,
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let provisioned_caches = ctx.provisioned.clone();
    let controllers = run_controllers(&mut watches, routed, ctx, stopped);
    tokio::select! {
        _ = watches.drive() => tracing::error!("watch streams ended"),
        _ = keep_gauges(stores, provisioned_caches, metrics, readiness) => {},
        _ = controllers => {},
        _ = async {
            shutdown.await;
            let _ = stop_tx.send(true);
            // Let in-flight reconciles finish, bounded.
            tokio::time::sleep(Duration::from_secs(5)).await;
        } => tracing::info!("controllers stopped"),
    }
}

/// One controller per kind, each on its own watch and what the index
/// routes to it, and beside them the sweeps for what a missed event left.
/// Takes each controller's watch handle now; runs when awaited.
fn run_controllers<F, Fut>(
    w: &mut Watches,
    routed: index::Receivers,
    ctx: Arc<Context>,
    stopped: F,
) -> impl std::future::Future<Output = ()> + use<F, Fut>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + Sync + 'static,
{
    let c = || ctx.clone();
    let service_ctl =
        reconciler(service::KIND, &mut w.services, None).run(service::reconcile, c(), stopped());
    let grant_ctl =
        reconciler(grant::KIND, &mut w.grants, routed.grants).run(grant::reconcile, c(), stopped());
    let derived_ctl = reconciler(derived::KIND, &mut w.derived, routed.derived).run(
        derived::reconcile,
        c(),
        stopped(),
    );
    let instance_ctl = reconciler(instance::KIND, &mut w.instances, routed.instances).run(
        instance::reconcile,
        c(),
        stopped(),
    );
    let request_ctl = reconciler(access::KIND, &mut w.access_requests, routed.requests).run(
        access::reconcile,
        c(),
        stopped(),
    );
    let approval_ctl = reconciler(
        access::APPROVAL_KIND,
        &mut w.access_approvals,
        routed.approvals,
    )
    .run(access::reconcile_approval, c(), stopped());
    let cleaner = access::cleaner(routed.deleted_requests, ctx.clone(), stopped());
    async move {
        tokio::join!(
            service_ctl,
            grant_ctl,
            derived_ctl,
            instance_ctl,
            request_ctl,
            approval_ctl,
            instance::sweeper(ctx),
            cleaner,
        );
    }
}

/// Sets readiness once every cache has its first full list, then refreshes
/// the object gauges every 10 s.
async fn keep_gauges(
    stores: Stores,
    provisioned: provisioned::Provisioned,
    metrics: Arc<Metrics>,
    readiness: Readiness,
) {
    // The caches of what was provisioned count too: an instance whose
    // objects are not observed yet would report them Progressing (a status
    // written and taken back at every restart). Not for ever: a kind the
    // controller may not list (RBAC short of the allow-list) must not keep
    // every controller waiting; its objects then say "not observed yet".
    let provisioned_synced = async {
        if tokio::time::timeout(Duration::from_secs(30), provisioned.wait_until_ready())
            .await
            .is_err()
        {
            tracing::warn!(
                "the caches of provisioned objects are not synced after 30 s (can the controller list every allowed kind?); going on without them"
            );
        }
    };
    let _ = tokio::join!(
        provisioned_synced,
        stores.services.wait_until_ready(),
        stores.grants.wait_until_ready(),
        stores.derived.wait_until_ready(),
        stores.instances.wait_until_ready(),
        stores.namespaces.wait_until_ready(),
        stores.access_requests.wait_until_ready(),
        stores.access_approvals.wait_until_ready(),
        stores.versions.wait_until_ready(),
        stores.usage_records.wait_until_ready(),
    );
    readiness.set();
    tracing::info!("caches synced");
    loop {
        for (kind, n) in [
            ("Service", stores.services.len()),
            ("DistributionGrant", stores.grants.len()),
            ("DerivedService", stores.derived.len()),
            ("ServiceInstance", stores.instances.len()),
            ("AccessRequest", stores.access_requests.len()),
            ("AccessApproval", stores.access_approvals.len()),
            ("ServiceVersion", stores.versions.len()),
            ("UsageRecord", stores.usage_records.len()),
        ] {
            metrics
                .objects
                .get_or_create(&crate::runtime::metrics::KindLabels { kind: kind.into() })
                .set(n as i64);
        }
        instance::export_phase_gauge(&stores.instances, &metrics);
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

/// Error policy of every controller: log with the object's name, count, and
/// requeue with exponential backoff per object (a permanent failure ends up
/// retried every few minutes, not in a hot loop).
pub fn on_error<K: Resource<DynamicType = ()>>(
    kind: &str,
    obj: &K,
    err: &Error,
    ctx: &Context,
) -> kube::runtime::controller::Action {
    let meta = obj.meta();
    let attempts = ctx
        .failures
        .failed(&failure_key(kind, obj), &err.to_string());
    let delay = backoff_delay(err, attempts);
    tracing::warn!(
        kind,
        namespace = meta.namespace.as_deref().unwrap_or_default(),
        name = meta.name.as_deref().unwrap_or_default(),
        error = %err,
        attempts,
        retry_in_ms = delay.as_millis() as u64,
        "reconcile failed; retrying"
    );
    ctx.metrics.error(kind, &err.metric_reason());
    kube::runtime::controller::Action::requeue(delay)
}

/// Key of an object in `Failures`.
pub fn failure_key<K: Resource<DynamicType = ()>>(kind: &str, obj: &K) -> String {
    let meta = obj.meta();
    format!(
        "{kind}/{}/{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
        meta.uid.as_deref().unwrap_or_default()
    )
}

/// Longest wait between two retries of one object.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Delay before retry `attempts` (1 for the first failure): doubling from a
/// base that depends on the error, capped at `MAX_BACKOFF`.
pub fn backoff_delay(err: &Error, attempts: u32) -> Duration {
    let base = match err {
        // A conflict usually clears at once (a stale cache copy).
        Error::Kube(kube::Error::Api(s)) if s.code == 409 => Duration::from_millis(200),
        Error::Waiting(_) => Duration::from_secs(1),
        _ => Duration::from_secs(2),
    };
    let factor = 1u32 << attempts.saturating_sub(1).min(16);
    base.saturating_mul(factor).min(MAX_BACKOFF)
}

/// Consecutive failures per object, with the last error: the backoff's
/// state, and what tells a repeated identical failure apart. Success forgets.
#[derive(Default)]
pub struct Failures(std::sync::Mutex<std::collections::HashMap<String, (u32, String)>>);

impl Failures {
    /// Records a failure; returns how many in a row.
    pub fn failed(&self, key: &str, error: &str) -> u32 {
        let Ok(mut m) = self.0.lock() else { return 1 };
        let e = m.entry(key.to_string()).or_insert((0, String::new()));
        e.0 = e.0.saturating_add(1);
        e.1 = error.to_string();
        e.0
    }
    /// How many failures in a row, with the same error as `error`, `key` has
    /// had before this one.
    pub fn repeated(&self, key: &str, error: &str) -> u32 {
        self.0
            .lock()
            .ok()
            .and_then(|m| m.get(key).filter(|(_, e)| e == error).map(|(n, _)| *n))
            .unwrap_or(0)
    }
    /// Forgets `key` after a success.
    pub fn succeeded(&self, key: &str) {
        if let Ok(mut m) = self.0.lock()
            && !m.is_empty()
        {
            m.remove(key);
        }
    }
}

/// The namespace of a namespaced object (empty string for none).
pub fn ns_of<K: ResourceExt>(obj: &K) -> String {
    obj.namespace().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_metadata_drops_managed_fields_and_the_last_applied_copy_only() {
        let mut meta: kube::core::ObjectMeta = serde_json::from_value(serde_json::json!({
            "name": "db", "uid": "u1", "resourceVersion": "7",
            "labels": {"team": "a"},
            "annotations": {LAST_APPLIED: "{\"big\":1}", "computenest.dev/applicant": "alice"},
            "managedFields": [{"manager": "kubectl"}, {"manager": "computenest"}]
        }))
        .unwrap_or_default();
        trim_cached_meta(&mut meta);
        assert!(meta.managed_fields.is_none());
        let annotations = meta.annotations.clone().unwrap_or_default();
        assert_eq!(annotations.len(), 1, "{annotations:?}");
        assert!(annotations.contains_key("computenest.dev/applicant"));
        assert_eq!(meta.labels.clone().unwrap_or_default().len(), 1);
        assert_eq!(meta.uid.as_deref(), Some("u1"));

        let mut only_last_applied: kube::core::ObjectMeta = serde_json::from_value(
            serde_json::json!({"name": "x", "annotations": {LAST_APPLIED: "{}"}}),
        )
        .unwrap_or_default();
        trim_cached_meta(&mut only_last_applied);
        assert!(only_last_applied.annotations.is_none());
    }
}
