//! Drift of an instance's objects: found from the watch-fed metadata caches
//! of what was provisioned (a change or a deletion routes the instance here
//! at once), confirmed with one read of the object that changed, and
//! compared with what the controller wrote. Repairs go through the
//! instance's own write path (the same ownership checks as any write).

use super::{Context, Error, is_not_found};
use crate::domain::drift;
use crate::domain::provision::labels;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, ObjectMeta};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Per instance: the version of each object as the controller last wrote or
/// accepted it, and the repairs made in a row.
#[derive(Default)]
pub struct DriftState {
    versions: Mutex<HashMap<String, HashMap<String, String>>>,
    fights: Mutex<HashMap<String, (u32, Instant)>>,
}

/// How long repairs count as "in a row": a repair after a quiet spell of
/// this long starts the count again.
const FIGHT_WINDOW: Duration = Duration::from_secs(600);

impl DriftState {
    /// Records the version of an object the instance `uid` wrote (or found as written).
    pub fn record(&self, uid: &str, key: &str, version: String) {
        if let Ok(mut m) = self.versions.lock() {
            m.entry(uid.to_string())
                .or_default()
                .insert(key.to_string(), version);
        }
    }

    pub fn recorded(&self, uid: &str, key: &str) -> Option<String> {
        self.versions
            .lock()
            .ok()
            .and_then(|m| m.get(uid).and_then(|o| o.get(key)).cloned())
    }

    /// Forgets an instance (it is gone).
    pub fn forget(&self, uid: &str) {
        if let Ok(mut m) = self.versions.lock() {
            m.remove(uid);
        }
        if let Ok(mut m) = self.fights.lock() {
            m.remove(uid);
        }
    }

    /// Keeps only the instances for which `keep` holds (the live ones).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        if let Ok(mut m) = self.versions.lock() {
            m.retain(|uid, _| keep(uid));
        }
        if let Ok(mut m) = self.fights.lock() {
            m.retain(|uid, _| keep(uid));
        }
    }

    /// How long to wait before the next repair of instance `uid`, counting
    /// this one; Duration::ZERO means now (and the repair is counted).
    fn next_repair(&self, uid: &str) -> Duration {
        let Ok(mut m) = self.fights.lock() else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        let (count, last) = m.get(uid).copied().unwrap_or((0, now - FIGHT_WINDOW));
        let count = if now.duration_since(last) >= FIGHT_WINDOW {
            0
        } else {
            count
        };
        let wait = drift::fight_delay(count + 1).saturating_sub(now.duration_since(last));
        if wait.is_zero() {
            m.insert(uid.to_string(), (count + 1, now));
        }
        wait
    }
}

/// The key of an object in the drift state.
pub fn object_key(ar: &ApiResource, namespace: &str, name: &str) -> String {
    format!("{}/{}/{namespace}/{name}", ar.group, ar.kind)
}

/// The version of an object that tells a change of what was written: the
/// generation where the API server keeps one (a status update does not
/// change it), else the resourceVersion.
pub fn version_of(meta: &ObjectMeta) -> String {
    match meta.generation {
        Some(g) if g > 0 => format!("g{g}"),
        _ => format!("rv{}", meta.resource_version.clone().unwrap_or_default()),
    }
}

/// One object to check: where it is and what was written.
pub struct Target<'a> {
    /// Its API resource.
    pub ar: &'a ApiResource,
    /// Namespace.
    pub namespace: &'a str,
    /// Name.
    pub name: &'a str,
    /// What the controller writes.
    pub body: &'a Value,
}

/// What differs on one object.
#[derive(Clone, Debug)]
pub struct Found {
    /// `Kind namespace/name`.
    pub what: String,
    /// Its API resource, namespace and name.
    pub ar: ApiResource,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// What differs: a JSON pointer, or "deleted".
    pub detail: String,
    /// The live object, when it exists (to keep ignored fields in a repair).
    pub live: Option<Value>,
}

/// Finds the objects of instance `uid` that are no longer as written.
/// Objects of a kind whose cache has not finished its first list are
/// skipped (nothing can be told of them yet).
pub async fn find(
    ctx: &Context,
    uid: &str,
    targets: &[Target<'_>],
    ignored: &(dyn Fn(&Target<'_>) -> Vec<String> + Sync),
) -> Result<Vec<Found>, Error> {
    let mut found = Vec::new();
    for t in targets {
        let key = object_key(t.ar, t.namespace, t.name);
        let what = format!("{} {}/{}", t.ar.kind, t.namespace, t.name);
        if !ctx.provisioned.is_ready(&t.ar.group, &t.ar.kind) {
            continue;
        }
        let cached = ctx
            .provisioned
            .get(&t.ar.group, &t.ar.kind, t.namespace, t.name);
        let recorded = ctx.drift.recorded(uid, &key);
        if let Some(m) = &cached {
            let version = version_of(m);
            match &recorded {
                // As written, or as found when this process first saw it.
                Some(v) if *v == version => continue,
                None => {
                    ctx.drift.record(uid, &key, version);
                    continue;
                }
                Some(_) => {}
            }
        }
        // Changed, or not in the cache: one read says what it is now.
        let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), t.namespace, t.ar);
        let live = match api.get_opt(t.name).await {
            Ok(l) => l,
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(e.into()),
        };
        let Some(live) = live else {
            found.push(Found {
                what,
                ar: t.ar.clone(),
                namespace: t.namespace.to_string(),
                name: t.name.to_string(),
                detail: "deleted".into(),
                live: None,
            });
            continue;
        };
        // The same proof as every write: the UID label and the managed-by label.
        let l = live.metadata.labels.clone().unwrap_or_default();
        let ours = l.get(labels::INSTANCE_UID).map(String::as_str) == Some(uid)
            && l.get(super::MANAGED_BY_LABEL).map(String::as_str) == Some(super::MANAGED_BY);
        let version = version_of(&live.metadata);
        let live = serde_json::to_value(&live)?;
        if !ours {
            // Not ours (any more): the write path says so, and touches nothing.
            found.push(Found {
                what,
                ar: t.ar.clone(),
                namespace: t.namespace.to_string(),
                name: t.name.to_string(),
                detail: "replaced by an object this instance did not create".into(),
                live: None,
            });
            continue;
        }
        if drift::opted_out(&live) {
            ctx.drift.record(uid, &key, version);
            continue;
        }
        let ignore = ignored(t);
        let ignore: Vec<&str> = ignore.iter().map(String::as_str).collect();
        match drift::first_difference(t.body, &live, &ignore) {
            None => ctx.drift.record(uid, &key, version),
            Some(path) => found.push(Found {
                what,
                ar: t.ar.clone(),
                namespace: t.namespace.to_string(),
                name: t.name.to_string(),
                detail: format!("{path} changed"),
                live: Some(live),
            }),
        }
    }
    Ok(found)
}

/// Whether a repair may happen now for instance `uid`, or how long to wait
/// (something keeps undoing the repairs).
pub fn repair_now(ctx: &Context, uid: &str) -> Result<(), Duration> {
    let wait = ctx.drift.next_repair(uid);
    if wait.is_zero() { Ok(()) } else { Err(wait) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repairs_back_off_after_three_in_a_row_and_forgetting_resets() {
        let s = DriftState::default();
        for _ in 0..3 {
            assert_eq!(s.next_repair("u"), Duration::ZERO);
        }
        // The fourth right after: wait.
        assert!(s.next_repair("u") > Duration::ZERO);
        assert_eq!(s.next_repair("other"), Duration::ZERO);
        s.record("u", "k", "g1".into());
        assert_eq!(s.recorded("u", "k").as_deref(), Some("g1"));
        s.retain(|uid| uid != "u");
        assert_eq!(s.recorded("u", "k"), None);
        assert_eq!(s.next_repair("u"), Duration::ZERO);
    }

    #[test]
    fn the_version_is_the_generation_where_there_is_one() {
        let with = ObjectMeta {
            generation: Some(3),
            resource_version: Some("99".into()),
            ..Default::default()
        };
        assert_eq!(version_of(&with), "g3");
        let without = ObjectMeta {
            resource_version: Some("99".into()),
            ..Default::default()
        };
        assert_eq!(version_of(&without), "rv99");
    }
}
