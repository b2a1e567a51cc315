//! Status writes shared by the controllers: written only when something
//! changed. (Conditions themselves are pure: `crate::domain::conditions`.)

use crate::api::FIELD_MANAGER;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

pub use crate::domain::conditions::{condition, now_rfc3339, ready};

/// What this process wrote and the cache has not shown yet, by object UID.
/// An entry is dropped as soon as the cache shows the written value. A watch
/// event can deliver an object older than our own last write (for example the event of our
/// finalizer patch, after we wrote status); comparing with the memo as well
/// as with the cache keeps such stale copies from causing a second write.
#[derive(Default)]
pub struct WriteMemo(Mutex<HashMap<String, u64>>);

impl WriteMemo {
    /// Whether `value` is what was last recorded under `key`.
    pub fn is_same<T: Serialize>(&self, key: &str, value: &T) -> bool {
        let h = hash_of(value);
        self.0
            .lock()
            .map(|m| m.get(key) == Some(&h))
            .unwrap_or(false)
    }
    /// Records `value` under `key`.
    pub fn record<T: Serialize>(&self, key: &str, value: &T) {
        let h = hash_of(value);
        if let Ok(mut m) = self.0.lock() {
            m.insert(key.to_string(), h);
        }
    }
    /// Forgets `key` (the object is gone).
    pub fn forget(&self, key: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(key);
        }
    }
}

/// Hash of a value without the times a reconcile stamps (condition
/// transitions, the start and end of a version change): a stale copy lacks
/// the previous ones, so those it builds afresh carry a newer time.
fn hash_of<T: Serialize>(value: &T) -> u64 {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("lastTransitionTime");
                m.remove("startTime");
                m.remove("endTime");
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(value).unwrap_or_default();
    strip(&mut v);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.to_string().hash(&mut h);
    h.finish()
}

/// Writes `status` with server-side apply when it differs from `current`
/// (and from what this process last wrote). Returns whether a write happened.
pub async fn write_status_if_changed<K, S>(
    api: &Api<K>,
    memo: &WriteMemo,
    obj: &K,
    current: Option<&S>,
    status: &S,
) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    S: Serialize + PartialEq,
{
    let key = format!("status/{}", obj.meta().uid.as_deref().unwrap_or_default());
    if current == Some(status) {
        // The cache shows what we want: nothing to remember. This keeps the
        // memo to writes not yet seen in the cache, however many objects exist.
        memo.forget(&key);
        return Ok(false);
    }
    if memo.is_same(&key, status) {
        return Ok(false);
    }
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    memo.record(&key, status);
    Ok(true)
}
