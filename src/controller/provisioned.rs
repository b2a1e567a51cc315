//! What the controller provisioned, watched: a cache per kind an instance's
//! objects can have, selected by the controller's labels, so that a change
//! or a deletion by someone else reaches the instance at once (drift), and
//! so that the instance can tell its objects' health, without listing
//! anything during a reconcile.
//!
//! Kinds whose health is their existence (ConfigMaps, RBAC objects, ...) are
//! watched as metadata only. Every other kind is watched in full, trimmed on
//! arrival to what the health rules read (`domain::health::trim`), so a
//! cache holds metadata, status and a few spec fields, never a ConfigMap's
//! data or a pod template.
//!
//! The caches are not kube's reflector stores: an entry holds only what is
//! read (identity, versions, deletion, the two labels that prove whose an
//! object is, and the trimmed body as JSON text), about 0.3 KiB, where a
//! stored `ObjectMeta` with its label map and key cost over 1.5 KiB. With
//! four objects per instance this was the largest part of the controller's
//! memory (BENCHMARKS.md, "Where the memory goes").

use super::index::Index;
use super::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::domain::health;
use crate::domain::provision::labels;
use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, ObjectMeta, PartialObjectMeta};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Config as WatcherConfig};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use tokio::sync::watch;

type Meta = PartialObjectMeta<DynamicObject>;

/// Namespace ("" for cluster-scoped objects) and name.
type Key = (Box<str>, Box<str>);

/// What is kept of one provisioned object.
#[derive(Clone, Debug, PartialEq)]
struct Cached {
    uid: Option<Box<str>>,
    resource_version: Option<Box<str>>,
    generation: Option<i64>,
    deletion_timestamp: Option<Time>,
    /// The instance UID label.
    instance_uid: Option<Box<str>>,
    /// The managed-by label.
    managed_by: Option<Box<str>>,
    /// Kinds watched in full: `{"spec": .., "status": ..}` as the health
    /// rules read them, as JSON text (a parsed map costs several times more).
    body: Option<Box<str>>,
}

impl Cached {
    /// Keeps of `meta` what is read; `body` is the trimmed object, if any.
    fn new(meta: &ObjectMeta, body: Option<Box<str>>) -> (Key, Self) {
        let label = |k: &str| {
            meta.labels
                .as_ref()
                .and_then(|l| l.get(k))
                .map(|v| v.as_str().into())
        };
        let key = (
            meta.namespace.as_deref().unwrap_or_default().into(),
            meta.name.as_deref().unwrap_or_default().into(),
        );
        let cached = Cached {
            uid: meta.uid.as_deref().map(Into::into),
            resource_version: meta.resource_version.as_deref().map(Into::into),
            generation: meta.generation,
            deletion_timestamp: meta.deletion_timestamp.clone(),
            instance_uid: label(labels::INSTANCE_UID),
            managed_by: label(MANAGED_BY_LABEL),
            body,
        };
        (key, cached)
    }

    /// The metadata as the callers read it: identity, versions, deletion
    /// and the two ownership labels; nothing else.
    fn meta(&self, key: &Key) -> ObjectMeta {
        let mut labels = BTreeMap::new();
        if let Some(v) = &self.instance_uid {
            labels.insert(labels::INSTANCE_UID.to_string(), v.to_string());
        }
        if let Some(v) = &self.managed_by {
            labels.insert(MANAGED_BY_LABEL.to_string(), v.to_string());
        }
        ObjectMeta {
            name: Some(key.1.to_string()),
            namespace: (!key.0.is_empty()).then(|| key.0.to_string()),
            uid: self.uid.as_deref().map(str::to_string),
            resource_version: self.resource_version.as_deref().map(str::to_string),
            generation: self.generation,
            deletion_timestamp: self.deletion_timestamp.clone(),
            labels: (!labels.is_empty()).then_some(labels),
            ..ObjectMeta::default()
        }
    }
}

/// The trimmed body of a full object, as JSON text.
fn trimmed_body(ar: &ApiResource, o: &DynamicObject) -> Box<str> {
    let mut body = serde_json::json!({
        "metadata": {},
        "spec": o.data.get("spec").cloned().unwrap_or(Value::Null),
        "status": o.data.get("status").cloned().unwrap_or(Value::Null),
    });
    health::trim(&ar.group, &ar.kind, &mut body);
    let mut data = serde_json::Map::new();
    for key in ["spec", "status"] {
        if let Some(v) = body.get(key).filter(|v| !v.is_null()) {
            data.insert(key.to_string(), v.clone());
        }
    }
    Value::Object(data).to_string().into_boxed_str()
}

/// The cache of one kind.
struct KindCache {
    ar: ApiResource,
    objects: RwLock<HashMap<Key, Cached>>,
    /// True once the first list is in.
    ready: watch::Sender<bool>,
}

impl KindCache {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Key, Cached>> {
        self.objects.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Key, Cached>> {
        self.objects.write().unwrap_or_else(|e| e.into_inner())
    }
    fn new(ar: ApiResource) -> Self {
        KindCache {
            ar,
            objects: RwLock::default(),
            ready: watch::Sender::new(false),
        }
    }
    /// `f` of the entry of an object, read in place (nothing cloned).
    fn with<R>(
        &self,
        namespace: &str,
        name: &str,
        f: impl FnOnce(&Key, &Cached) -> R,
    ) -> Option<R> {
        let key: Key = (namespace.into(), name.into());
        self.read().get(&key).map(|cached| f(&key, cached))
    }
}

/// Applies watch events to a cache, as a reflector does: a (re)list is
/// gathered apart and replaces the cache when complete, so that objects
/// deleted while the watch was down do not linger.
struct Applier {
    cache: Arc<KindCache>,
    relist: Option<HashMap<Key, Cached>>,
}

impl Applier {
    fn new(cache: Arc<KindCache>) -> Self {
        Applier {
            cache,
            relist: None,
        }
    }

    fn apply(&mut self, event: watcher::Event<(Key, Cached)>) {
        match event {
            watcher::Event::Init => self.relist = Some(HashMap::new()),
            watcher::Event::InitApply((k, v)) => {
                self.relist.get_or_insert_with(HashMap::new).insert(k, v);
            }
            watcher::Event::InitDone => {
                let mut listed = self.relist.take().unwrap_or_default();
                listed.shrink_to_fit();
                *self.cache.write() = listed;
                self.cache.ready.send_replace(true);
            }
            watcher::Event::Apply((k, v)) => {
                self.cache.write().insert(k, v);
            }
            watcher::Event::Delete((k, _)) => {
                self.cache.write().remove(&k);
            }
        }
    }
}

/// The caches of provisioned objects, one per kind (a handful: a lookup
/// scans them rather than building a key).
#[derive(Clone, Default)]
pub struct Provisioned {
    stores: Arc<Vec<Arc<KindCache>>>,
}

/// The streams that drive the caches; poll them all.
pub type Drivers = Vec<Pin<Box<dyn Stream<Item = ()> + Send>>>;

/// The event with its object made compact.
fn compact<T>(
    event: watcher::Event<T>,
    f: impl Fn(&T) -> (Key, Cached),
) -> watcher::Event<(Key, Cached)> {
    match event {
        watcher::Event::Apply(o) => watcher::Event::Apply(f(&o)),
        watcher::Event::Delete(o) => watcher::Event::Delete(f(&o)),
        watcher::Event::InitApply(o) => watcher::Event::InitApply(f(&o)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

/// The watch of one kind, each object made compact by `compact_one`,
/// driving its cache and routing its changes.
fn driver<T>(
    api: Api<T>,
    config: WatcherConfig,
    index: Arc<Index>,
    mut applier: Applier,
    compact_one: impl Fn(&T) -> (Key, Cached) + Send + 'static,
) -> Pin<Box<dyn Stream<Item = ()> + Send>>
where
    T: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    Box::pin(
        watcher::watcher(api, config)
            .default_backoff()
            .map(move |r| {
                let r = r.map(|e| compact(e, &compact_one));
                apply_and_route(&index, &mut applier, r)
            }),
    )
}

/// Applies a compacted event to the cache and routes a change or deletion
/// (after the first list) to the instance whose UID label the object
/// carries. The first list is not a change: instances are reconciled at
/// start anyway.
fn apply_and_route(
    index: &Index,
    applier: &mut Applier,
    r: Result<watcher::Event<(Key, Cached)>, watcher::Error>,
) {
    match r {
        Ok(event) => {
            let changed = match &event {
                watcher::Event::Apply((_, c)) | watcher::Event::Delete((_, c)) => {
                    c.instance_uid.clone()
                }
                _ => None,
            };
            // The cache first: the reconcile this routes must see the change.
            applier.apply(event);
            if let Some(uid) = changed {
                index.route_instance_by_uid(&uid);
            }
        }
        // A kind that is not served (a CRD in the allow-list not installed)
        // keeps retrying with backoff.
        Err(e) => {
            tracing::debug!(error = %e, kind = %applier.cache.ar.kind, "provisioned watch error; retrying")
        }
    }
}

impl Provisioned {
    /// Starts a labelled watch of every kind in `kinds`; each change or
    /// deletion (after the first list) is routed by the index to the
    /// instance whose UID label the object carries.
    pub fn start(client: &Client, kinds: Vec<ApiResource>, index: Arc<Index>) -> (Self, Drivers) {
        let selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY},{}", labels::INSTANCE_UID);
        let config = WatcherConfig::default().labels(&selector).any_semantic();
        let mut stores = Vec::new();
        let mut drivers: Drivers = Vec::new();
        for ar in kinds {
            let cache = Arc::new(KindCache::new(ar.clone()));
            let applier = Applier::new(cache.clone());
            // The drift opt-out annotation is read from the live object, never
            // from these caches.
            drivers.push(if health::by_existence(&ar.group, &ar.kind) {
                driver(
                    Api::<Meta>::all_with(client.clone(), &ar),
                    config.clone(),
                    index.clone(),
                    applier,
                    |o: &Meta| Cached::new(&o.metadata, None),
                )
            } else {
                let body_ar = ar.clone();
                driver(
                    Api::<DynamicObject>::all_with(client.clone(), &ar),
                    config.clone(),
                    index.clone(),
                    applier,
                    move |o: &DynamicObject| {
                        Cached::new(&o.metadata, Some(trimmed_body(&body_ar, o)))
                    },
                )
            });
            stores.push(cache);
        }
        (
            Provisioned {
                stores: Arc::new(stores),
            },
            drivers,
        )
    }

    fn cache(&self, group: &str, kind: &str) -> Option<&Arc<KindCache>> {
        self.stores
            .iter()
            .find(|c| c.ar.group == group && c.ar.kind == kind)
    }

    /// The cached metadata of a provisioned object (identity, versions,
    /// deletion and the two ownership labels); None when it is not cached
    /// (not there, not labelled as the controller's, or a kind not watched).
    pub fn get(&self, group: &str, kind: &str, namespace: &str, name: &str) -> Option<ObjectMeta> {
        self.cache(group, kind)?
            .with(namespace, name, |key, cached| cached.meta(key))
    }

    /// The cached object as JSON (for the health rules: metadata, and for
    /// kinds watched in full their status and the spec fields the rules
    /// read); None when it is not cached.
    pub fn object(&self, group: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let cache = self.cache(group, kind)?;
        cache.with(namespace, name, |key, cached| {
            let mut object = match cached.body.as_deref().map(serde_json::from_str::<Value>) {
                Some(Ok(Value::Object(m))) => m,
                _ => serde_json::Map::new(),
            };
            object.insert("apiVersion".into(), cache.ar.api_version.clone().into());
            object.insert("kind".into(), cache.ar.kind.clone().into());
            object.insert(
                "metadata".into(),
                serde_json::to_value(cached.meta(key)).unwrap_or(Value::Null),
            );
            Value::Object(object)
        })
    }

    /// Whether a kind is watched at all (Secrets are not: the controller
    /// does not read them).
    pub fn watches(&self, group: &str, kind: &str) -> bool {
        self.cache(group, kind).is_some()
    }

    /// Whether the cache of a kind has its first list (a kind not watched: no).
    pub fn is_ready(&self, group: &str, kind: &str) -> bool {
        self.cache(group, kind).is_some_and(|c| *c.ready.borrow())
    }

    /// Waits until every cache has its first list.
    pub async fn wait_until_ready(&self) {
        for cache in self.stores.iter() {
            let mut ready = cache.ready.subscribe();
            let _ = ready.wait_for(|r| *r).await;
        }
    }

    /// Objects in the caches, for the memory gauge and the benchmarks.
    pub fn len(&self) -> usize {
        self.stores.iter().map(|c| c.read().len()).sum()
    }

    /// Whether no object is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta_of(name: &str, uid: &str) -> ObjectMeta {
        serde_json::from_value(serde_json::json!({
            "name": name, "namespace": "cust", "uid": uid, "resourceVersion": "7", "generation": 3,
            "labels": {labels::INSTANCE_UID: "i1", MANAGED_BY_LABEL: MANAGED_BY},
        }))
        .unwrap_or_default()
    }

    #[test]
    fn cached_metadata_keeps_identity_versions_and_the_proof_of_ownership_only() {
        let meta: ObjectMeta = serde_json::from_value(serde_json::json!({
            "name": "web", "namespace": "cust", "uid": "u1", "resourceVersion": "7", "generation": 3,
            "deletionTimestamp": "2026-01-01T00:00:00Z",
            "labels": {labels::INSTANCE_UID: "i1", MANAGED_BY_LABEL: MANAGED_BY, "app": "web", labels::SCENARIO: "Scenario1"},
            "annotations": {"big": "x"}, "finalizers": ["f"],
            "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "x", "uid": "y"}],
            "managedFields": [{"manager": "m"}]
        }))
        .unwrap_or_default();
        let (key, cached) = Cached::new(&meta, None);
        let meta = cached.meta(&key);
        assert_eq!(meta.name.as_deref(), Some("web"));
        assert_eq!(meta.namespace.as_deref(), Some("cust"));
        assert_eq!(meta.uid.as_deref(), Some("u1"));
        assert_eq!(meta.generation, Some(3));
        assert_eq!(meta.resource_version.as_deref(), Some("7"));
        assert!(meta.deletion_timestamp.is_some());
        let labels = meta.labels.clone().unwrap_or_default();
        assert_eq!(labels.len(), 2, "{labels:?}");
        assert_eq!(
            labels.get(labels::INSTANCE_UID).map(String::as_str),
            Some("i1")
        );
        assert!(meta.annotations.is_none() && meta.finalizers.is_none());
        assert!(meta.owner_references.is_none() && meta.managed_fields.is_none());

        // A cluster-scoped object is found under the empty namespace.
        let (key, cached) = Cached::new(
            &ObjectMeta {
                name: Some("cr".into()),
                ..ObjectMeta::default()
            },
            None,
        );
        assert_eq!(key, ("".into(), "cr".into()));
        assert!(cached.meta(&key).namespace.is_none());
    }

    #[test]
    fn a_relist_replaces_the_cache_and_only_then_is_it_ready() {
        let ar = ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&());
        let cache = Arc::new(KindCache::new(ar));
        let mut applier = Applier::new(cache.clone());
        let provisioned = Provisioned {
            stores: Arc::new(vec![cache]),
        };
        applier.apply(watcher::Event::Init);
        applier.apply(watcher::Event::InitApply(Cached::new(
            &meta_of("a", "ua"),
            None,
        )));
        assert!(
            !provisioned.is_ready("", "ConfigMap"),
            "ready before the list is complete"
        );
        assert!(
            provisioned.get("", "ConfigMap", "cust", "a").is_none(),
            "a partial list is not served"
        );
        applier.apply(watcher::Event::InitDone);
        assert!(provisioned.is_ready("", "ConfigMap"));
        assert_eq!(
            provisioned
                .get("", "ConfigMap", "cust", "a")
                .and_then(|m| m.uid)
                .as_deref(),
            Some("ua")
        );

        applier.apply(watcher::Event::Apply(Cached::new(
            &meta_of("b", "ub"),
            None,
        )));
        assert_eq!(provisioned.len(), 2);
        applier.apply(watcher::Event::Delete(Cached::new(
            &meta_of("b", "ub"),
            None,
        )));
        assert!(provisioned.get("", "ConfigMap", "cust", "b").is_none());

        // "a" was deleted while the watch was down: the relist drops it.
        applier.apply(watcher::Event::Init);
        applier.apply(watcher::Event::InitApply(Cached::new(
            &meta_of("c", "uc"),
            None,
        )));
        applier.apply(watcher::Event::InitDone);
        assert!(provisioned.get("", "ConfigMap", "cust", "a").is_none());
        assert!(provisioned.get("", "ConfigMap", "cust", "c").is_some());
        assert_eq!(provisioned.len(), 1);
        assert!(!provisioned.watches("", "Secret") && !provisioned.is_ready("", "Secret"));
    }

    #[test]
    fn a_full_object_is_served_with_its_trimmed_spec_and_status() {
        let ar = ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&());
        let object = DynamicObject {
            types: None,
            metadata: meta_of("web", "uw"),
            data: serde_json::json!({
                "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "big"}]}}},
                "status": {"replicas": 2, "readyReplicas": 1, "observedGeneration": 3},
            }),
        };
        let cache = Arc::new(KindCache::new(ar.clone()));
        let (key, cached) = Cached::new(&object.metadata, Some(trimmed_body(&ar, &object)));
        cache.write().insert(key, cached);
        cache.ready.send_replace(true);
        let provisioned = Provisioned {
            stores: Arc::new(vec![cache]),
        };
        let served = provisioned
            .object("apps", "Deployment", "cust", "web")
            .unwrap_or_default();
        assert_eq!(served["kind"], "Deployment");
        assert_eq!(served["apiVersion"], "apps/v1");
        assert_eq!(served["metadata"]["uid"], "uw");
        assert_eq!(served["metadata"]["labels"][labels::INSTANCE_UID], "i1");
        assert_eq!(served["status"]["readyReplicas"], 1);
        assert!(
            served["spec"]["template"].is_null(),
            "the pod template is not kept: {served}"
        );
        assert_eq!(
            health::assess("apps", "Deployment", Some(&served)).health,
            crate::api::instance::HealthState::Progressing
        );
    }
}
