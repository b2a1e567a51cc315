//! What the controller provisioned, watched: a metadata-only cache per kind
//! an instance's objects can have, selected by the controller's labels, so
//! that a change or a deletion by someone else reaches the instance at once
//! (drift) without listing anything during a reconcile.

use super::index::Index;
use super::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::domain::provision::labels;
use futures::{Stream, StreamExt};
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, PartialObjectMeta};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Config as WatcherConfig};
use kube::{Client, ResourceExt};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

type Meta = PartialObjectMeta<DynamicObject>;

/// The caches of provisioned objects, by (group, kind).
#[derive(Clone, Default)]
pub struct Provisioned {
    stores: HashMap<(String, String), (ApiResource, Store<Meta>)>,
}

/// The streams that drive the caches; poll them all.
pub type Drivers = Vec<Pin<Box<dyn Stream<Item = ()> + Send>>>;

impl Provisioned {
    /// Starts a labelled metadata watch of every kind in `kinds`; each
    /// change or deletion (after the first list) is routed by the index to
    /// the instance whose UID label the object carries.
    pub fn start(client: &Client, kinds: Vec<ApiResource>, index: Arc<Index>) -> (Self, Drivers) {
        let selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY},{}", labels::INSTANCE_UID);
        let mut stores = HashMap::new();
        let mut drivers: Drivers = Vec::new();
        for ar in kinds {
            let api = Api::<Meta>::all_with(client.clone(), &ar);
            let writer = reflector::store::Writer::<Meta>::new(ar.clone());
            let store = writer.as_reader();
            let index = index.clone();
            let kind = ar.kind.clone();
            let driver = watcher::watcher(
                api,
                WatcherConfig::default().labels(&selector).any_semantic(),
            )
            .default_backoff()
            .modify(|o: &mut Meta| o.managed_fields_mut().clear())
            .reflect(writer)
            .map(move |r| match r {
                // The first list is not a change: the instances are
                // reconciled at start anyway.
                Ok(watcher::Event::Apply(o) | watcher::Event::Delete(o)) => {
                    if let Some(uid) = o.labels().get(labels::INSTANCE_UID) {
                        index.route_instance_by_uid(uid);
                    }
                }
                Ok(_) => {}
                // A kind that is not served (a CRD in the allow-list not
                // installed) keeps retrying with backoff; say so once per try.
                Err(e) => {
                    tracing::debug!(error = %e, kind = %kind, "provisioned watch error; retrying")
                }
            });
            stores.insert((ar.group.clone(), ar.kind.clone()), (ar, store));
            drivers.push(Box::pin(driver));
        }
        (Provisioned { stores }, drivers)
    }

    /// The cached metadata of a provisioned object; None when it is not
    /// cached (not there, not labelled as the controller's, or a kind not watched).
    pub fn get(&self, group: &str, kind: &str, namespace: &str, name: &str) -> Option<Arc<Meta>> {
        let (ar, store) = self.stores.get(&(group.to_string(), kind.to_string()))?;
        store.get(&ObjectRef::new_with(name, ar.clone()).within(namespace))
    }

    /// Whether the cache of a kind has its first list (a kind not watched: no).
    pub fn is_ready(&self, group: &str, kind: &str) -> bool {
        use futures::FutureExt;
        self.stores
            .get(&(group.to_string(), kind.to_string()))
            .is_some_and(|(_, s)| {
                s.wait_until_ready()
                    .now_or_never()
                    .is_some_and(|r| r.is_ok())
            })
    }

    /// Waits until every cache has its first list.
    pub async fn wait_until_ready(&self) {
        for (_, store) in self.stores.values() {
            let _ = store.wait_until_ready().await;
        }
    }
}
