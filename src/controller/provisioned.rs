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

use super::index::Index;
use super::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::domain::health;
use crate::domain::provision::labels;
use futures::{Stream, StreamExt};
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, ObjectMeta, PartialObjectMeta};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Config as WatcherConfig};
use kube::{Client, ResourceExt};
use serde_json::Value;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

type Meta = PartialObjectMeta<DynamicObject>;

/// The cache of one kind: metadata only, or the trimmed object.
#[derive(Clone)]
enum Cache {
    Meta(Store<Meta>),
    Full(Store<DynamicObject>),
}

/// The caches of provisioned objects, by (group, kind).
#[derive(Clone, Default)]
pub struct Provisioned {
    stores: HashMap<(String, String), (ApiResource, Cache)>,
}

/// The streams that drive the caches; poll them all.
pub type Drivers = Vec<Pin<Box<dyn Stream<Item = ()> + Send>>>;

/// Routes a change of a provisioned object to the instance whose UID label
/// it carries. The first list is not a change: instances are reconciled at
/// start anyway.
fn route<T: ResourceExt>(index: &Index, kind: &str, r: Result<watcher::Event<T>, watcher::Error>) {
    match r {
        Ok(watcher::Event::Apply(o) | watcher::Event::Delete(o)) => {
            if let Some(uid) = o.labels().get(labels::INSTANCE_UID) {
                index.route_instance_by_uid(uid);
            }
        }
        Ok(_) => {}
        // A kind that is not served (a CRD in the allow-list not installed)
        // keeps retrying with backoff.
        Err(e) => tracing::debug!(error = %e, kind = %kind, "provisioned watch error; retrying"),
    }
}

/// Keeps of an object's metadata only what the caches are read for: its
/// identity and versions (drift), its deletion (health), and the two labels
/// that prove whose it is. Everything else (other labels, annotations,
/// ownerReferences, finalizers, managedFields) is dropped: with thousands of
/// objects cached, they are most of the memory.
fn trim_meta(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    meta.annotations = None;
    meta.owner_references = None;
    meta.finalizers = None;
    meta.creation_timestamp = None;
    meta.generate_name = None;
    if let Some(labels) = meta.labels.as_mut() {
        labels.retain(|k, _| k == labels::INSTANCE_UID || k == MANAGED_BY_LABEL);
    }
}

/// Keeps of a full object only what the health rules read.
fn trim_object(ar: &ApiResource, o: &mut DynamicObject) {
    trim_meta(&mut o.metadata);
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
    o.data = Value::Object(data);
}

impl Provisioned {
    /// Starts a labelled watch of every kind in `kinds`; each change or
    /// deletion (after the first list) is routed by the index to the
    /// instance whose UID label the object carries.
    pub fn start(client: &Client, kinds: Vec<ApiResource>, index: Arc<Index>) -> (Self, Drivers) {
        let selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY},{}", labels::INSTANCE_UID);
        let config = WatcherConfig::default().labels(&selector).any_semantic();
        let mut stores = HashMap::new();
        let mut drivers: Drivers = Vec::new();
        for ar in kinds {
            let index = index.clone();
            let kind = ar.kind.clone();
            // The drift opt-out annotation is read from the live object, never
            // from these caches.
            let cache = if health::by_existence(&ar.group, &ar.kind) {
                let api = Api::<Meta>::all_with(client.clone(), &ar);
                let writer = reflector::store::Writer::<Meta>::new(ar.clone());
                let store = writer.as_reader();
                let driver = watcher::watcher(api, config.clone())
                    .default_backoff()
                    .modify(|o: &mut Meta| trim_meta(&mut o.metadata))
                    .reflect(writer)
                    .map(move |r| route(&index, &kind, r));
                drivers.push(Box::pin(driver));
                Cache::Meta(store)
            } else {
                let api = Api::<DynamicObject>::all_with(client.clone(), &ar);
                let writer = reflector::store::Writer::<DynamicObject>::new(ar.clone());
                let store = writer.as_reader();
                let trim_ar = ar.clone();
                let driver = watcher::watcher(api, config.clone())
                    .default_backoff()
                    .modify(move |o: &mut DynamicObject| trim_object(&trim_ar, o))
                    .reflect(writer)
                    .map(move |r| route(&index, &kind, r));
                drivers.push(Box::pin(driver));
                Cache::Full(store)
            };
            stores.insert((ar.group.clone(), ar.kind.clone()), (ar, cache));
        }
        (Provisioned { stores }, drivers)
    }

    /// The cached metadata of a provisioned object; None when it is not
    /// cached (not there, not labelled as the controller's, or a kind not watched).
    pub fn get(&self, group: &str, kind: &str, namespace: &str, name: &str) -> Option<ObjectMeta> {
        let (ar, cache) = self.stores.get(&(group.to_string(), kind.to_string()))?;
        match cache {
            Cache::Meta(s) => s
                .get(&ObjectRef::new_with(name, ar.clone()).within(namespace))
                .map(|o| o.metadata.clone()),
            Cache::Full(s) => s
                .get(&ObjectRef::new_with(name, ar.clone()).within(namespace))
                .map(|o| o.metadata.clone()),
        }
    }

    /// The cached object as JSON (for the health rules: metadata, and for
    /// kinds watched in full their status and the spec fields the rules
    /// read); None when it is not cached.
    pub fn object(&self, group: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let (ar, cache) = self.stores.get(&(group.to_string(), kind.to_string()))?;
        match cache {
            Cache::Meta(s) => s
                .get(&ObjectRef::new_with(name, ar.clone()).within(namespace))
                .map(|o| {
                    serde_json::json!({
                        "apiVersion": ar.api_version,
                        "kind": ar.kind,
                        "metadata": serde_json::to_value(&o.metadata).unwrap_or(Value::Null),
                    })
                }),
            Cache::Full(s) => s
                .get(&ObjectRef::new_with(name, ar.clone()).within(namespace))
                .and_then(|o| serde_json::to_value(&*o).ok()),
        }
    }

    /// Whether a kind is watched at all (Secrets are not: the controller
    /// does not read them).
    pub fn watches(&self, group: &str, kind: &str) -> bool {
        self.stores
            .contains_key(&(group.to_string(), kind.to_string()))
    }

    /// Whether the cache of a kind has its first list (a kind not watched: no).
    pub fn is_ready(&self, group: &str, kind: &str) -> bool {
        use futures::FutureExt;
        self.stores
            .get(&(group.to_string(), kind.to_string()))
            .is_some_and(|(_, c)| {
                match c {
                    Cache::Meta(s) => s.wait_until_ready().now_or_never(),
                    Cache::Full(s) => s.wait_until_ready().now_or_never(),
                }
                .is_some_and(|r| r.is_ok())
            })
    }

    /// Waits until every cache has its first list.
    pub async fn wait_until_ready(&self) {
        for (_, cache) in self.stores.values() {
            let _ = match cache {
                Cache::Meta(s) => s.wait_until_ready().await,
                Cache::Full(s) => s.wait_until_ready().await,
            };
        }
    }

    /// Objects in the caches, for the memory gauge and the benchmarks.
    pub fn len(&self) -> usize {
        self.stores
            .values()
            .map(|(_, c)| match c {
                Cache::Meta(s) => s.len(),
                Cache::Full(s) => s.len(),
            })
            .sum()
    }

    /// Whether no object is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_metadata_keeps_identity_versions_and_the_proof_of_ownership_only() {
        let mut meta: ObjectMeta = serde_json::from_value(serde_json::json!({
            "name": "web", "namespace": "cust", "uid": "u1", "resourceVersion": "7", "generation": 3,
            "deletionTimestamp": "2026-01-01T00:00:00Z",
            "labels": {labels::INSTANCE_UID: "i1", MANAGED_BY_LABEL: MANAGED_BY, "app": "web", labels::SCENARIO: "Scenario1"},
            "annotations": {"big": "x"}, "finalizers": ["f"],
            "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "x", "uid": "y"}],
            "managedFields": [{"manager": "m"}]
        }))
        .unwrap_or_default();
        trim_meta(&mut meta);
        assert_eq!(meta.name.as_deref(), Some("web"));
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
    }
}
