//! The index: maps between related objects, fed by the watches, so that
//! every "which objects depend on this one" question is a hash lookup
//! instead of a scan of a cache (after linkerd2's policy controller).
//!
//! The index sees every watch event of every kind, right after the cache
//! has it. From each event it updates its maps and sends the objects that
//! depend on the changed one to the controller that reconciles them, on an
//! unbounded channel: nothing is dropped when a controller is busy, and a
//! deletion is routed from the index's own record of the deleted object's
//! links (the deleted object itself carries them too, but a watch restart
//! reports deletions only as absences, which the index finds by comparing
//! the new list with what it knew).
//!
//! It also holds the resolved offering of each product, resolved once per
//! generation of the Service (and of the DerivedService), not per reconcile.

use crate::api::{
    AccessApproval, AccessRequest, DerivedService, DistributionGrant, ProductKind, Service,
    ServiceInstance, ServiceVersion, UsageRecord,
};
use crate::domain::distribution::Offerings;
use crate::domain::provision::labels;
use crate::domain::render::{AllowedKind, Offering, OfferingError, resolve_offering};
use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// A product: what a ServiceInstance's `spec.serviceRef` names.
pub type ProductKey = (ProductKind, String, String);
/// An ISV's Service: (namespace, name).
pub type ServiceKey = (String, String);
/// A grant's pair: (ISV namespace, Service name, distributor namespace).
pub type PairKey = (String, String, String);

/// A many-to-one relation kept both ways: each value points to one key, and
/// each key knows its values. Setting a value's key moves it.
struct Links<K, V> {
    by_key: HashMap<K, HashSet<V>>,
    key_of: HashMap<V, K>,
}

impl<K, V> Default for Links<K, V> {
    fn default() -> Self {
        Links {
            by_key: HashMap::new(),
            key_of: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash + Clone, V: Eq + Hash + Clone> Links<K, V> {
    /// Points `value` to `key`; returns the key it pointed to before, if another.
    fn set(&mut self, value: V, key: K) -> Option<K> {
        let old = self.key_of.insert(value.clone(), key.clone());
        if old.as_ref() == Some(&key) {
            return None;
        }
        if let Some(old) = &old {
            self.detach(old, &value);
        }
        self.by_key.entry(key).or_default().insert(value);
        old
    }
    /// Forgets `value`; returns the key it pointed to.
    fn remove(&mut self, value: &V) -> Option<K> {
        let old = self.key_of.remove(value)?;
        self.detach(&old, value);
        Some(old)
    }
    fn detach(&mut self, key: &K, value: &V) {
        if let Some(set) = self.by_key.get_mut(key) {
            set.remove(value);
            if set.is_empty() {
                self.by_key.remove(key);
            }
        }
    }
    fn get(&self, key: &K) -> impl Iterator<Item = &V> {
        self.by_key.get(key).into_iter().flatten()
    }
    fn key(&self, value: &V) -> Option<&K> {
        self.key_of.get(value)
    }
    fn values(&self) -> impl Iterator<Item = &V> {
        self.key_of.keys()
    }
}

/// Every relation the controllers route by.
#[derive(Default)]
struct Maps {
    /// Each Service with a fingerprint of its generation, labels and
    /// annotations as last routed (a change of status alone reaches nobody:
    /// nothing downstream reads a Service's status; a touch of its metadata
    /// does, as the documented way to have its buyers looked at again).
    services: HashMap<ObjectRef<Service>, u64>,
    /// Each ServiceVersion with the generation last routed (as Services).
    version_generations: HashMap<ObjectRef<ServiceVersion>, i64>,
    instances_by_product: Links<ProductKey, ObjectRef<ServiceInstance>>,
    derived_by_source: Links<ServiceKey, ObjectRef<DerivedService>>,
    grants_by_pair: Links<PairKey, ObjectRef<DistributionGrant>>,
    grants_by_service: Links<ServiceKey, ObjectRef<DistributionGrant>>,
    requests_by_instance: Links<ObjectRef<ServiceInstance>, ObjectRef<AccessRequest>>,
    approvals_by_request: Links<ObjectRef<AccessRequest>, ObjectRef<AccessApproval>>,
    instance_by_namespace: Links<ObjectRef<ServiceInstance>, String>,
    /// Each instance by its UID (the label on everything it provisioned).
    instance_by_uid: Links<ObjectRef<ServiceInstance>, String>,
    /// The published versions of each Service.
    versions_by_service: Links<ServiceKey, ObjectRef<ServiceVersion>>,
    /// Usage records by the instance UID they name.
    usage_by_instance: Links<String, ObjectRef<UsageRecord>>,
    /// Usage records by their namespace.
    usage_by_namespace: Links<String, ObjectRef<UsageRecord>>,
}

/// The channels to the controllers, and their receiving ends until taken.
struct Routes {
    grants: UnboundedSender<ObjectRef<DistributionGrant>>,
    derived: UnboundedSender<ObjectRef<DerivedService>>,
    instances: UnboundedSender<ObjectRef<ServiceInstance>>,
    requests: UnboundedSender<ObjectRef<AccessRequest>>,
    approvals: UnboundedSender<ObjectRef<AccessApproval>>,
    deleted_requests: UnboundedSender<Arc<AccessRequest>>,
}

/// What the controllers receive from the index; each part is taken once.
#[derive(Default)]
pub struct Receivers {
    /// Grants to reconcile.
    pub grants: Option<UnboundedReceiver<ObjectRef<DistributionGrant>>>,
    /// Derived services to reconcile.
    pub derived: Option<UnboundedReceiver<ObjectRef<DerivedService>>>,
    /// Instances to reconcile.
    pub instances: Option<UnboundedReceiver<ObjectRef<ServiceInstance>>>,
    /// Access requests to reconcile.
    pub requests: Option<UnboundedReceiver<ObjectRef<AccessRequest>>>,
    /// Access approvals to reconcile.
    pub approvals: Option<UnboundedReceiver<ObjectRef<AccessApproval>>>,
    /// Access requests deleted, for the grant cleaner.
    pub deleted_requests: Option<UnboundedReceiver<Arc<AccessRequest>>>,
}

/// Identity of a product's offering: the Service and, for a derived
/// product, the DerivedService, each by UID and generation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct OfferingKey {
    service: (String, i64),
    derived: Option<(String, i64)>,
}

/// An offering as resolved: checked, or why not.
type Resolution = Result<Arc<Offering>, OfferingError>;

/// The index. Cheap to share: every method takes `&self`.
pub struct Index {
    maps: RwLock<Maps>,
    routes: Routes,
    receivers: Mutex<Receivers>,
    /// Objects listed since a watch (re)started, per kind, until its list is complete.
    relisting: Mutex<HashMap<&'static str, HashSet<String>>>,
    /// Kinds whose first list is complete.
    listed: Mutex<HashSet<&'static str>>,
    /// Resolved offerings by product UID (the DerivedService's, else the Service's).
    offerings: Mutex<HashMap<String, (OfferingKey, Resolution)>>,
    allowed: Vec<AllowedKind>,
}

impl Index {
    /// An empty index; `allowed` are the kinds templates may create.
    pub fn new(allowed: Vec<AllowedKind>) -> Self {
        let (grants, grants_rx) = unbounded_channel();
        let (derived, derived_rx) = unbounded_channel();
        let (instances, instances_rx) = unbounded_channel();
        let (requests, requests_rx) = unbounded_channel();
        let (approvals, approvals_rx) = unbounded_channel();
        let (deleted_requests, deleted_rx) = unbounded_channel();
        Index {
            maps: RwLock::default(),
            routes: Routes {
                grants,
                derived,
                instances,
                requests,
                approvals,
                deleted_requests,
            },
            receivers: Mutex::new(Receivers {
                grants: Some(grants_rx),
                derived: Some(derived_rx),
                instances: Some(instances_rx),
                requests: Some(requests_rx),
                approvals: Some(approvals_rx),
                deleted_requests: Some(deleted_rx),
            }),
            relisting: Mutex::default(),
            listed: Mutex::default(),
            offerings: Mutex::default(),
            allowed,
        }
    }

    /// Takes what the controllers receive (once; later calls get nothing).
    pub fn take_receivers(&self) -> Receivers {
        self.receivers
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Maps> {
        self.maps.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Maps> {
        self.maps.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Feeds one watch event of kind `K` (after the cache has applied it).
    pub fn observe<K: Indexed>(&self, event: &watcher::Event<K>) {
        match event {
            watcher::Event::Apply(obj) => {
                let moved = K::link(self, obj);
                K::route(self, obj, moved);
            }
            watcher::Event::Delete(obj) => self.deleted::<K>(obj),
            watcher::Event::Init => {
                if let Ok(mut r) = self.relisting.lock() {
                    r.insert(K::KIND, HashSet::new());
                }
            }
            watcher::Event::InitApply(obj) => {
                // The first list: every controller reconciles each of its
                // objects anyway, so only the maps change. A relist after a
                // watch restart may carry changes nobody heard of: route them.
                let moved = K::link(self, obj);
                if self.listed.lock().is_ok_and(|l| l.contains(K::KIND)) {
                    K::route(self, obj, moved);
                }
                if let Ok(mut r) = self.relisting.lock()
                    && let Some(seen) = r.get_mut(K::KIND)
                {
                    seen.insert(object_key(obj));
                }
            }
            watcher::Event::InitDone => {
                let seen = self
                    .relisting
                    .lock()
                    .ok()
                    .and_then(|mut r| r.remove(K::KIND))
                    .unwrap_or_default();
                if let Ok(mut l) = self.listed.lock() {
                    l.insert(K::KIND);
                }
                // What the index knew and the new list lacks was deleted
                // while the watch was down: route it as a deletion.
                for gone in K::known(self)
                    .into_iter()
                    .filter(|r| !seen.contains(&ref_key(r)))
                {
                    K::unlink_and_route(self, &gone);
                }
            }
        }
    }

    fn deleted<K: Indexed>(&self, obj: &K) {
        K::on_delete(self, obj);
        K::unlink_and_route(self, &ObjectRef::from_obj(obj));
    }

    fn send<T>(tx: &UnboundedSender<T>, items: impl IntoIterator<Item = T>) {
        for item in items {
            // A closed channel means the controllers are stopping.
            let _ = tx.send(item);
        }
    }

    // ---- lookups used by the reconcilers: O(1) plus the size of the answer ----

    /// Instances bought from `product`.
    pub fn instances_of(&self, product: &ProductKey) -> Vec<ObjectRef<ServiceInstance>> {
        self.read()
            .instances_by_product
            .get(product)
            .cloned()
            .collect()
    }

    /// DerivedServices built on the Service `source`.
    pub fn derived_of(&self, source: &ServiceKey) -> Vec<ObjectRef<DerivedService>> {
        self.read().derived_by_source.get(source).cloned().collect()
    }

    /// Grants of a pair (ISV namespace, Service, distributor namespace).
    pub fn grants_of(&self, pair: &PairKey) -> Vec<ObjectRef<DistributionGrant>> {
        self.read().grants_by_pair.get(pair).cloned().collect()
    }

    /// AccessRequests naming `instance`.
    pub fn requests_of(
        &self,
        instance: &ObjectRef<ServiceInstance>,
    ) -> Vec<ObjectRef<AccessRequest>> {
        self.read()
            .requests_by_instance
            .get(instance)
            .cloned()
            .collect()
    }

    /// AccessApprovals naming `request`.
    pub fn approvals_of(
        &self,
        request: &ObjectRef<AccessRequest>,
    ) -> Vec<ObjectRef<AccessApproval>> {
        self.read()
            .approvals_by_request
            .get(request)
            .cloned()
            .collect()
    }

    /// The instance of UID `uid`, if known.
    pub fn instance_by_uid(&self, uid: &str) -> Option<ObjectRef<ServiceInstance>> {
        self.read().instance_by_uid.key(&uid.to_string()).cloned()
    }

    /// The usage records an instance decides: those naming its UID, and
    /// those in its target namespace naming no known instance.
    pub fn usage_records_of(
        &self,
        uid: &str,
        target_namespace: &str,
    ) -> Vec<ObjectRef<UsageRecord>> {
        let m = self.read();
        let mut out: Vec<ObjectRef<UsageRecord>> =
            m.usage_by_instance.get(&uid.to_string()).cloned().collect();
        out.extend(
            m.usage_by_namespace
                .get(&target_namespace.to_string())
                .filter(|r| {
                    m.usage_by_instance
                        .key(r)
                        .is_none_or(|named| m.instance_by_uid.key(named).is_none())
                })
                .filter(|r| m.usage_by_instance.key(r).map(String::as_str) != Some(uid))
                .cloned(),
        );
        out
    }

    /// Whether an instance of UID `uid` is known.
    pub fn knows_instance(&self, uid: &str) -> bool {
        self.read().instance_by_uid.key(&uid.to_string()).is_some()
    }

    /// Sends the instance of UID `uid` (from the label of an object it
    /// provisioned) to its controller, if the instance is known.
    pub fn route_instance_by_uid(&self, uid: &str) {
        let found = self.read().instance_by_uid.key(&uid.to_string()).cloned();
        Self::send(&self.routes.instances, found);
    }

    /// The instance a managed namespace was created for, by its labels
    /// (for routing only: no decision is taken from them).
    pub fn instance_of_namespace(&self, namespace: &str) -> Option<ObjectRef<ServiceInstance>> {
        self.read()
            .instance_by_namespace
            .key(&namespace.to_string())
            .cloned()
    }

    /// Instances of a product and, for a Service, of every DerivedService built on it.
    fn instances_of_product(
        &self,
        m: &Maps,
        kind: ProductKind,
        ns: &str,
        name: &str,
    ) -> Vec<ObjectRef<ServiceInstance>> {
        let mut out: Vec<_> = m
            .instances_by_product
            .get(&(kind, ns.to_string(), name.to_string()))
            .cloned()
            .collect();
        if kind == ProductKind::Service {
            for d in m.derived_by_source.get(&(ns.to_string(), name.to_string())) {
                let key = (
                    ProductKind::DerivedService,
                    d.namespace.clone().unwrap_or_default(),
                    d.name.clone(),
                );
                out.extend(m.instances_by_product.get(&key).cloned());
            }
        }
        out
    }

    /// The instances of a Service, bought directly or through the products built on it.
    pub fn instances_of_service(&self, ns: &str, name: &str) -> Vec<ObjectRef<ServiceInstance>> {
        let m = self.read();
        self.instances_of_product(&m, ProductKind::Service, ns, name)
    }

    /// The published versions of a Service.
    pub fn versions_of(&self, ns: &str, name: &str) -> Vec<ObjectRef<ServiceVersion>> {
        self.read()
            .versions_by_service
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
            .collect()
    }

    fn requests_of_instances<'a>(
        m: &Maps,
        instances: impl IntoIterator<Item = &'a ObjectRef<ServiceInstance>>,
    ) -> Vec<ObjectRef<AccessRequest>> {
        instances
            .into_iter()
            .flat_map(|i| m.requests_by_instance.get(i).cloned())
            .collect()
    }

    /// The offering of a Service sold directly (`derived` None) or through
    /// a DerivedService: resolved once per generation of both, then shared.
    pub fn offering(
        &self,
        service: &Service,
        derived: Option<&DerivedService>,
    ) -> Result<Arc<Offering>, OfferingError> {
        let key = OfferingKey {
            service: uid_generation(service),
            derived: derived.map(uid_generation),
        };
        // One entry per product and content: a pinned version's Service
        // carries its ServiceVersion's UID (`controller::version`).
        let product_uid = format!(
            "{}@{}",
            key.derived.as_ref().unwrap_or(&key.service).0,
            key.service.0
        );
        if let Ok(cache) = self.offerings.lock()
            && let Some((k, offering)) = cache.get(&product_uid)
            && *k == key
        {
            return offering.clone();
        }
        // Resolved outside the lock: two reconciles may both resolve a new
        // generation once; the result is the same.
        let resolved = resolve_offering(
            &service.spec,
            derived.map(|d| &d.spec.overrides),
            &self.allowed,
        )
        .map(Arc::new);
        if let Ok(mut cache) = self.offerings.lock() {
            cache.insert(product_uid, (key, resolved.clone()));
        }
        resolved
    }

    fn forget_offering(&self, uid: Option<&str>) {
        if let (Some(uid), Ok(mut cache)) = (uid, self.offerings.lock()) {
            cache.retain(|k, _| !k.starts_with(&format!("{uid}@")));
        }
    }
}

impl Offerings for Index {
    fn offering(
        &self,
        service: &Service,
        derived: Option<&DerivedService>,
    ) -> Result<Arc<Offering>, OfferingError> {
        Index::offering(self, service, derived)
    }
}

fn uid_generation<K: Resource>(obj: &K) -> (String, i64) {
    (
        obj.meta().uid.clone().unwrap_or_default(),
        obj.meta().generation.unwrap_or_default(),
    )
}

fn object_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default()
    )
}

fn ref_key<K: Resource<DynamicType = ()>>(r: &ObjectRef<K>) -> String {
    format!("{}/{}", r.namespace.as_deref().unwrap_or_default(), r.name)
}

fn ns_name<K: Resource>(obj: &K) -> (String, String) {
    (
        obj.meta().namespace.clone().unwrap_or_default(),
        obj.meta().name.clone().unwrap_or_default(),
    )
}

/// How one watched kind feeds the index.
pub trait Indexed: Resource<DynamicType = ()> + Sized {
    /// Name for the relist bookkeeping.
    const KIND: &'static str;
    /// Records the object's links; says whether a link moved (its old
    /// dependents must hear of it too).
    fn link(index: &Index, obj: &Self) -> bool;
    /// Sends the dependents of an applied object to their controllers.
    fn route(index: &Index, obj: &Self, moved: bool);
    /// Forgets a deleted object, sending its dependents to their controllers.
    fn unlink_and_route(index: &Index, gone: &ObjectRef<Self>);
    /// Every object of the kind the index knows of.
    fn known(index: &Index) -> Vec<ObjectRef<Self>>;
    /// Anything a deletion needs beyond the links (the object is still whole here).
    fn on_delete(_index: &Index, _obj: &Self) {}
}

impl Indexed for Service {
    const KIND: &'static str = "Service";
    fn link(index: &Index, obj: &Self) -> bool {
        // "Moved" here: new, or its spec or metadata changed.
        let fingerprint = {
            use std::hash::{DefaultHasher, Hash, Hasher};
            let mut h = DefaultHasher::new();
            obj.metadata.generation.hash(&mut h);
            obj.metadata.labels.hash(&mut h);
            obj.metadata.annotations.hash(&mut h);
            obj.metadata.deletion_timestamp.is_some().hash(&mut h);
            h.finish()
        };
        index
            .write()
            .services
            .insert(ObjectRef::from_obj(obj), fingerprint)
            != Some(fingerprint)
    }
    fn route(index: &Index, obj: &Self, changed: bool) {
        if !changed {
            return;
        }
        let (ns, name) = ns_name(obj);
        index.route_service(&ns, &name);
    }
    fn unlink_and_route(index: &Index, gone: &ObjectRef<Self>) {
        index.write().services.remove(gone);
        index.route_service(gone.namespace.as_deref().unwrap_or_default(), &gone.name);
    }
    fn known(index: &Index) -> Vec<ObjectRef<Self>> {
        index.read().services.keys().cloned().collect()
    }
    fn on_delete(index: &Index, obj: &Self) {
        index.forget_offering(obj.meta().uid.as_deref());
    }
}

impl Indexed for ServiceVersion {
    const KIND: &'static str = "ServiceVersion";
    fn link(index: &Index, obj: &Self) -> bool {
        let service = (
            obj.metadata.namespace.clone().unwrap_or_default(),
            obj.spec.service.clone(),
        );
        let generation = obj.metadata.generation.unwrap_or_default();
        let mut m = index.write();
        m.versions_by_service.set(ObjectRef::from_obj(obj), service);
        // New, or a new generation: its status (counts, rollout) alone reaches nobody.
        m.version_generations
            .insert(ObjectRef::from_obj(obj), generation)
            != Some(generation)
    }
    fn route(index: &Index, obj: &Self, changed: bool) {
        if !changed {
            return;
        }
        let ns = obj.metadata.namespace.clone().unwrap_or_default();
        index.route_service(&ns, &obj.spec.service);
    }
    fn unlink_and_route(index: &Index, gone: &ObjectRef<Self>) {
        let service = {
            let mut m = index.write();
            m.version_generations.remove(gone);
            m.versions_by_service.remove(gone)
        };
        if let Some((ns, name)) = service {
            index.route_service(&ns, &name);
        }
    }
    fn known(index: &Index) -> Vec<ObjectRef<Self>> {
        index.read().versions_by_service.values().cloned().collect()
    }
    fn on_delete(index: &Index, obj: &Self) {
        index.forget_offering(obj.meta().uid.as_deref());
    }
}

impl Index {
    /// A Service changed or went: its grants, the products built on it,
    /// their buyers and the buyers' access requests hear of it.
    fn route_service(&self, ns: &str, name: &str) {
        let m = self.read();
        let key = (ns.to_string(), name.to_string());
        let grants: Vec<_> = m.grants_by_service.get(&key).cloned().collect();
        let derived: Vec<_> = m.derived_by_source.get(&key).cloned().collect();
        let instances = self.instances_of_product(&m, ProductKind::Service, ns, name);
        let requests = Self::requests_of_instances(&m, &instances);
        drop(m);
        Self::send(&self.routes.grants, grants);
        Self::send(&self.routes.derived, derived);
        Self::send(&self.routes.instances, instances);
        Self::send(&self.routes.requests, requests);
    }

    /// A grant changed or went: the other grants of its pair (precedence)
    /// and the distributor's products on that Service hear of it.
    fn route_pair(&self, pair: &PairKey, except: &ObjectRef<DistributionGrant>) {
        let m = self.read();
        let siblings: Vec<_> = m
            .grants_by_pair
            .get(pair)
            .filter(|g| *g != except)
            .cloned()
            .collect();
        let derived: Vec<_> = m
            .derived_by_source
            .get(&(pair.0.clone(), pair.1.clone()))
            .filter(|d| d.namespace.as_deref() == Some(pair.2.as_str()))
            .cloned()
            .collect();
        drop(m);
        Self::send(&self.routes.grants, siblings);
        Self::send(&self.routes.derived, derived);
    }

    fn route_derived(&self, ns: &str, name: &str) {
        let m = self.read();
        let instances = self.instances_of_product(&m, ProductKind::DerivedService, ns, name);
        let requests = Self::requests_of_instances(&m, &instances);
        drop(m);
        Self::send(&self.routes.instances, instances);
        Self::send(&self.routes.requests, requests);
    }
}

impl Indexed for DistributionGrant {
    const KIND: &'static str = "DistributionGrant";
    fn link(index: &Index, obj: &Self) -> bool {
        let pair = pair_of(obj);
        let service = (pair.0.clone(), pair.1.clone());
        let mut m = index.write();
        m.grants_by_service.set(ObjectRef::from_obj(obj), service);
        m.grants_by_pair
            .set(ObjectRef::from_obj(obj), pair)
            .is_some()
    }
    fn route(index: &Index, obj: &Self, _moved: bool) {
        // A moved grant's old pair is rare (the fields are fixed by CEL);
        // its siblings settle on their own next change or resync.
        index.route_pair(&pair_of(obj), &ObjectRef::from_obj(obj));
    }
    fn unlink_and_route(index: &Index, gone: &ObjectRef<Self>) {
        let pair = {
            let mut m = index.write();
            m.grants_by_service.remove(gone);
            m.grants_by_pair.remove(gone)
        };
        if let Some(pair) = pair {
            index.route_pair(&pair, gone);
        }
    }
    fn known(index: &Index) -> Vec<ObjectRef<Self>> {
        index.read().grants_by_pair.values().cloned().collect()
    }
}

fn pair_of(g: &DistributionGrant) -> PairKey {
    (
        g.metadata.namespace.clone().unwrap_or_default(),
        g.spec.service_name.clone(),
        g.spec.distributor_namespace.clone(),
    )
}

impl Indexed for DerivedService {
    const KIND: &'static str = "DerivedService";
    fn link(index: &Index, obj: &Self) -> bool {
        let source = (
            obj.spec.source.namespace.clone(),
            obj.spec.source.name.clone(),
        );
        index
            .write()
            .derived_by_source
            .set(ObjectRef::from_obj(obj), source)
            .is_some()
    }
    fn route(index: &Index, obj: &Self, _moved: bool) {
        let (ns, name) = ns_name(obj);
        index.route_derived(&ns, &name);
    }
    fn unlink_and_route(index: &Index, gone: &ObjectRef<Self>) {
        index.write().derived_by_source.remove(gone);
        index.route_derived(gone.namespace.as_deref().unwrap_or_default(), &gone.name);
    }
    fn known(index: &Index) -> Vec<ObjectRef<Self>> {
        index.read().derived_by_source.values().cloned().collect()
    }
    fn on_delete(index: &Index, obj: &Self) {
        index.forget_offering(obj.meta().uid.as_deref());
    }
}

impl Indexed for ServiceInstance {
    const KIND: &'static str = "ServiceInstance";
    fn link(index: &Index, obj: &Self) -> bool {
        let r = &obj.spec.service_ref;
        let mut m = index.write();
        if let Some(uid) = obj.meta().uid.clone() {
            m.instance_by_uid.set(uid, ObjectRef::from_obj(obj));
        }
        m.instances_by_product
            .set(
                ObjectRef::from_obj(obj),
                (r.kind, r.namespace.clone(), r.name.clone()),
            )
            .is_some()
    }
    fn route(index: &Index, obj: &Self, _moved: bool) {
        let requests = index.requests_of(&ObjectRef::from_obj(obj));
        Index::send(&index.routes.requests, requests);
    }
    fn unlink_and_route(index: &Index, gone: &ObjectRef<Self>) {
        let product = {
            let mut m = index.write();
            let uids: Vec<String> = m.instance_by_uid.get(gone).cloned().collect();
            for uid in uids {
                m.instance_by_uid.remove(&uid);
            }
            m.instances_by_product.remove(gone)
        };
        let requests = index.requests_of(gone);
        Index::send(&index.routes.requests, requests);
        // A place under the seller's limit per customer may have come free:
        // the same customer's other instances of the product hear of it.
        if let Some(product) = product {
            let siblings: Vec<_> = index
                .read()
                .instances_by_product
                .get(&product)
                .filter(|i| i.namespace == gone.namespace)
                .cloned()
                .collect();
            Index::send(&index.routes.instances, siblings);
        }
    }
    fn known(index: &Index) -> Vec<ObjectRef<Self>> {
        index
            .read()
            .instances_by_product
            .values()
            .cloned()
            .collect()
    }
}

impl Indexed for AccessRequest {
    const KIND: &'static str = "AccessRequest";
    fn link(index: &Index, obj: &Self) -> bool {
        let instance = ObjectRef::new(&obj.spec.instance_name)
            .within(obj.meta().namespace.as_deref().unwrap_or_default());
        index
            .write()
            .requests_by_instance
            .set(ObjectRef::from_obj(obj), instance)
            .is_some()
    }
    fn route(index: &Index, obj: &Self, _moved: bool) {
        let approvals = index.approvals_of(&ObjectRef::from_obj(obj));
        Index::send(&index.routes.approvals, approvals);
        // Its instance pauses self-heal while write access is active, and
        // resumes when it ends.
        let instance = ObjectRef::new(&obj.spec.instance_name)
            .within(obj.meta().namespace.as_deref().unwrap_or_default());
        Index::send(&index.routes.instances, [instance]);
    }
    fn unlink_and_route(index: &Index, gone: &ObjectRef<Self>) {
        index.write().requests_by_instance.remove(gone);
        let approvals = index.approvals_of(gone);
        Index::send(&index.routes.approvals, approvals);
    }
    fn known(index: &Index) -> Vec<ObjectRef<Self>> {
        index
            .read()
            .requests_by_instance
            .values()
            .cloned()
            .collect()
    }
    fn on_delete(index: &Index, obj: &Self) {
        Index::send(&index.routes.deleted_requests, [Arc::new(obj.clone())]);
    }
}

impl Indexed for UsageRecord {
    const KIND: &'static str = "UsageRecord";
    fn link(index: &Index, obj: &Self) -> bool {
        let me = ObjectRef::from_obj(obj);
        let mut m = index.write();
        m.usage_by_namespace
            .set(me.clone(), obj.meta().namespace.clone().unwrap_or_default());
        m.usage_by_instance.set(me, obj.spec.instance.clone());
        false
    }
    fn route(index: &Index, obj: &Self, _moved: bool) {
        // Only records waiting for a decision: the controller's own status
        // writes on them reach nobody.
        if obj.status.as_ref().is_none_or(|s| s.result.is_none()) {
            let to = super::commerce::record_instances(index, obj);
            Index::send(&index.routes.instances, to);
        }
    }
    fn unlink_and_route(index: &Index, gone: &ObjectRef<Self>) {
        let mut m = index.write();
        m.usage_by_instance.remove(gone);
        m.usage_by_namespace.remove(gone);
    }
    fn known(index: &Index) -> Vec<ObjectRef<Self>> {
        index.read().usage_by_instance.values().cloned().collect()
    }
}

impl Indexed for AccessApproval {
    const KIND: &'static str = "AccessApproval";
    fn link(index: &Index, obj: &Self) -> bool {
        let request = ObjectRef::new(&obj.spec.request_name).within(&obj.spec.request_namespace);
        index
            .write()
            .approvals_by_request
            .set(ObjectRef::from_obj(obj), request)
            .is_some()
    }
    fn route(index: &Index, obj: &Self, _moved: bool) {
        let request = ObjectRef::new(&obj.spec.request_name).within(&obj.spec.request_namespace);
        Index::send(&index.routes.requests, [request]);
    }
    fn unlink_and_route(index: &Index, gone: &ObjectRef<Self>) {
        let request = index.write().approvals_by_request.remove(gone);
        Index::send(&index.routes.requests, request);
    }
    fn known(index: &Index) -> Vec<ObjectRef<Self>> {
        index
            .read()
            .approvals_by_request
            .values()
            .cloned()
            .collect()
    }
}

impl Indexed for PartialObjectMeta<Namespace> {
    const KIND: &'static str = "Namespace";
    fn link(index: &Index, obj: &Self) -> bool {
        let l = obj.labels();
        let name = obj
            .annotations()
            .get(labels::INSTANCE_NAME_ANNOTATION)
            .or_else(|| l.get(labels::INSTANCE_NAME));
        let mut m = index.write();
        match (name, l.get(labels::INSTANCE_NAMESPACE)) {
            (Some(name), Some(ns)) => m
                .instance_by_namespace
                .set(obj.name_any(), ObjectRef::new(name).within(ns))
                .is_some(),
            _ => {
                m.instance_by_namespace.remove(&obj.name_any());
                false
            }
        }
    }
    fn route(index: &Index, obj: &Self, _moved: bool) {
        let instance = index.instance_of_namespace(&obj.name_any());
        Index::send(&index.routes.instances, instance);
    }
    fn unlink_and_route(index: &Index, gone: &ObjectRef<Self>) {
        let instance = index.write().instance_by_namespace.remove(&gone.name);
        Index::send(&index.routes.instances, instance);
    }
    fn known(index: &Index) -> Vec<ObjectRef<Self>> {
        index
            .read()
            .instance_by_namespace
            .values()
            .map(|n| ObjectRef::new(n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::render::default_allowed_kinds;

    fn instance(
        ns: &str,
        name: &str,
        kind: ProductKind,
        pns: &str,
        pname: &str,
    ) -> ServiceInstance {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "computenest.dev/v1alpha1", "kind": "ServiceInstance",
            "metadata": {"namespace": ns, "name": name, "uid": format!("uid-{name}")},
            "spec": {"serviceRef": {"kind": kind, "namespace": pns, "name": pname}}
        }))
        .unwrap_or_else(|e| panic!("fixture: {e}"))
    }

    fn derived(ns: &str, name: &str, src_ns: &str, src: &str) -> DerivedService {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "computenest.dev/v1alpha1", "kind": "DerivedService",
            "metadata": {"namespace": ns, "name": name, "uid": format!("uid-{name}")},
            "spec": {"source": {"namespace": src_ns, "name": src}, "type": "Private"}
        }))
        .unwrap_or_else(|e| panic!("fixture: {e}"))
    }

    fn drain<T>(rx: &mut UnboundedReceiver<T>) -> Vec<T> {
        let mut out = Vec::new();
        while let Ok(x) = rx.try_recv() {
            out.push(x);
        }
        out
    }

    #[test]
    fn a_service_change_reaches_direct_and_derived_buyers_only() {
        let index = Index::new(default_allowed_kinds());
        let mut rx = index.take_receivers();
        let Some(instances_rx) = rx.instances.as_mut() else {
            panic!("receivers taken twice")
        };
        index.observe(&watcher::Event::Apply(derived("dist", "p1", "isv", "svc")));
        index.observe(&watcher::Event::Apply(instance(
            "c1",
            "direct",
            ProductKind::Service,
            "isv",
            "svc",
        )));
        index.observe(&watcher::Event::Apply(instance(
            "c2",
            "resold",
            ProductKind::DerivedService,
            "dist",
            "p1",
        )));
        index.observe(&watcher::Event::Apply(instance(
            "c3",
            "other",
            ProductKind::Service,
            "isv",
            "another",
        )));
        drain(instances_rx);
        index.route_service("isv", "svc");
        let mut got: Vec<String> = drain(instances_rx).iter().map(|r| r.name.clone()).collect();
        got.sort();
        assert_eq!(got, ["direct", "resold"]);
    }

    fn grant(ns: &str, name: &str, service: &str, distributor: &str) -> DistributionGrant {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "computenest.dev/v1alpha1", "kind": "DistributionGrant",
            "metadata": {"namespace": ns, "name": name},
            "spec": {"serviceName": service, "distributorNamespace": distributor, "decision": "Approved"}
        }))
        .unwrap_or_else(|e| panic!("fixture: {e}"))
    }

    #[test]
    fn a_service_reaches_its_grants_and_a_grant_its_siblings_only() {
        let index = Index::new(default_allowed_kinds());
        let mut rx = index.take_receivers();
        let Some(grants_rx) = rx.grants.as_mut() else {
            panic!("receivers taken twice")
        };
        for g in [
            grant("isv", "to-a", "svc", "dist-a"),
            grant("isv", "to-a-too", "svc", "dist-a"),
            grant("isv", "to-b", "svc", "dist-b"),
            grant("isv", "other", "another", "dist-a"),
        ] {
            index.observe(&watcher::Event::Apply(g));
        }
        drain(grants_rx);
        index.route_service("isv", "svc");
        let mut got: Vec<String> = drain(grants_rx).iter().map(|r| r.name.clone()).collect();
        got.sort();
        assert_eq!(got, ["to-a", "to-a-too", "to-b"]);
        index.observe(&watcher::Event::Delete(grant(
            "isv", "to-a", "svc", "dist-a",
        )));
        let got: Vec<String> = drain(grants_rx).iter().map(|r| r.name.clone()).collect();
        assert_eq!(got, ["to-a-too"], "only the other grant of the same pair");
        index.route_service("isv", "svc");
        assert_eq!(drain(grants_rx).len(), 2, "the deleted grant is forgotten");
    }

    #[test]
    fn a_changed_service_ref_moves_the_instance() {
        let index = Index::new(default_allowed_kinds());
        let i = instance("c1", "i", ProductKind::Service, "isv", "a");
        index.observe(&watcher::Event::Apply(i));
        let moved = instance("c1", "i", ProductKind::Service, "isv", "b");
        index.observe(&watcher::Event::Apply(moved));
        assert!(
            index
                .instances_of(&(ProductKind::Service, "isv".into(), "a".into()))
                .is_empty()
        );
        assert_eq!(
            index
                .instances_of(&(ProductKind::Service, "isv".into(), "b".into()))
                .len(),
            1
        );
    }

    #[test]
    fn an_object_missing_from_a_relist_is_routed_as_deleted() {
        let index = Index::new(default_allowed_kinds());
        let mut rx = index.take_receivers();
        let Some(instances_rx) = rx.instances.as_mut() else {
            panic!("receivers taken twice")
        };
        index.observe(&watcher::Event::Apply(derived("dist", "p1", "isv", "svc")));
        index.observe(&watcher::Event::Apply(instance(
            "c2",
            "resold",
            ProductKind::DerivedService,
            "dist",
            "p1",
        )));
        drain(instances_rx);
        // The watch restarts; the DerivedService was deleted meanwhile.
        index.observe(&watcher::Event::<DerivedService>::Init);
        index.observe(&watcher::Event::<DerivedService>::InitDone);
        let got: Vec<String> = drain(instances_rx).iter().map(|r| r.name.clone()).collect();
        assert_eq!(got, ["resold"]);
        assert!(index.derived_of(&("isv".into(), "svc".into())).is_empty());
    }

    #[test]
    fn deleted_requests_reach_the_cleaner_and_their_approvals() {
        let index = Index::new(default_allowed_kinds());
        let mut rx = index.take_receivers();
        let req: AccessRequest = serde_json::from_value(serde_json::json!({
            "apiVersion": "computenest.dev/v1alpha1", "kind": "AccessRequest",
            "metadata": {"namespace": "c1", "name": "r", "uid": "uid-r"},
            "spec": {"instanceName": "i", "subject": {"kind": "User", "name": "alice"},
                     "rules": [], "durationSeconds": 60, "reason": "debugging"}
        }))
        .unwrap_or_else(|e| panic!("fixture: {e}"));
        let approval: AccessApproval = serde_json::from_value(serde_json::json!({
            "apiVersion": "computenest.dev/v1alpha1", "kind": "AccessApproval",
            "metadata": {"namespace": "isv", "name": "a"},
            "spec": {"requestNamespace": "c1", "requestName": "r", "decision": "Approved", "reason": "ok"}
        }))
        .unwrap_or_else(|e| panic!("fixture: {e}"));
        index.observe(&watcher::Event::Apply(approval));
        index.observe(&watcher::Event::Apply(req.clone()));
        if let Some(a) = rx.approvals.as_mut() {
            drain(a);
        }
        index.observe(&watcher::Event::Delete(req));
        let deleted = rx.deleted_requests.as_mut().map(drain).unwrap_or_default();
        assert_eq!(deleted.len(), 1);
        let approvals = rx.approvals.as_mut().map(drain).unwrap_or_default();
        assert_eq!(approvals.len(), 1);
        assert!(
            index
                .requests_of(&ObjectRef::new("i").within("c1"))
                .is_empty()
        );
    }

    #[test]
    fn an_offering_is_resolved_once_per_generation() {
        let index = Index::new(default_allowed_kinds());
        let spec = serde_yaml::from_str(include_str!("../../tests/fixtures/service-web.yaml"))
            .unwrap_or_else(|e| panic!("fixture: {e}"));
        let mut svc = Service::new("web", spec);
        svc.metadata.uid = Some("svc-uid".into());
        svc.metadata.generation = Some(1);
        let a = index.offering(&svc, None).unwrap_or_else(|e| panic!("{e}"));
        let b = index.offering(&svc, None).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            Arc::ptr_eq(&a, &b),
            "same generation: the same resolved offering"
        );
        svc.metadata.generation = Some(2);
        let c = index.offering(&svc, None).unwrap_or_else(|e| panic!("{e}"));
        assert!(!Arc::ptr_eq(&a, &c), "a new generation is resolved again");
    }
}
