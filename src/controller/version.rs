//! Versions of a Service: the Service controller publishes each released
//! version as an immutable ServiceVersion (like a Deployment's ReplicaSets),
//! keeps their state in status and garbage-collects the old ones no
//! instance runs; instances read the catalog to choose what they run.

use super::{Context, Error, is_conflict, is_not_found};
use crate::api::{
    Condition, Service, ServiceInstance, ServiceVersion, ServiceVersionSpec, ServiceVersionStatus,
    VersionChangeResult, VersionChangeType, VersionState, VersionSummary,
};
use crate::domain::naming::{self, MANAGED_BY, MANAGED_BY_LABEL};
use crate::domain::versions::{self, Known};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams, Preconditions};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Label with the UID of the Service a ServiceVersion was published from:
/// the controller's proof that it made the version, for that Service.
pub const SERVICE_UID_LABEL: &str = "computenest.dev/service-uid";

/// Name of the ServiceVersion of `version` of `service`: readable, valid
/// for any input, and different for different inputs (ends with a hash).
pub fn snapshot_name(service: &str, version: &str) -> String {
    let hash = naming::short_hash(&format!("{service}\n{version}"), 8);
    naming::join(&[
        &naming::label_fragment(service, 180),
        &naming::label_fragment(version, 50),
        &hash,
    ])
}

/// The versions of one Service: its published snapshots and its current spec.
pub struct Catalog {
    /// Every version, with its state.
    pub known: Vec<Known>,
    /// The snapshots by version.
    pub snapshots: BTreeMap<String, Arc<ServiceVersion>>,
    /// The Service's `spec.version`.
    pub current: String,
}

/// State of `version` of `svc`: the ISV's `spec.versions` entry, else the
/// release of the current version, else Published.
fn state_of(svc: &Service, version: &str) -> VersionState {
    if let Some(l) = svc.spec.versions.iter().find(|l| l.version == version) {
        return l.state;
    }
    if version == svc.spec.version {
        return svc.spec.release().state;
    }
    VersionState::Published
}

fn channels_of(svc: &Service, version: &str, published: &[String]) -> Vec<String> {
    svc.spec
        .versions
        .iter()
        .find(|l| l.version == version)
        .and_then(|l| l.channels.clone())
        .unwrap_or_else(|| published.to_vec())
}

/// The catalog of `svc` from the caches: the ServiceVersions labelled with
/// its UID (another object of that name made by anyone else counts for
/// nothing), and the current version.
pub fn catalog(svc: &Service, ctx: &Context) -> Catalog {
    let ns = svc.namespace().unwrap_or_default();
    let uid = svc.metadata.uid.clone().unwrap_or_default();
    let mut snapshots = BTreeMap::new();
    for r in ctx.index.versions_of(&ns, &svc.name_any()) {
        if let Some(v) = ctx.stores.versions.get(&r)
            && v.labels().get(SERVICE_UID_LABEL) == Some(&uid)
            && v.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
            && v.spec.service == svc.name_any()
        {
            snapshots.insert(v.spec.version.clone(), v);
        }
    }
    catalog_of(svc, snapshots)
}

/// Pure: the catalog of `svc` with these snapshots.
pub fn catalog_of(svc: &Service, snapshots: BTreeMap<String, Arc<ServiceVersion>>) -> Catalog {
    let mut known: Vec<Known> = snapshots
        .values()
        .map(|v| Known {
            version: v.spec.version.clone(),
            state: state_of(svc, &v.spec.version),
            channels: channels_of(svc, &v.spec.version, &v.spec.channels),
            upgrade: v.spec.upgrade.clone(),
            type_: v.spec.type_,
        })
        .collect();
    let current = svc.spec.version.clone();
    if !snapshots.contains_key(&current) {
        let release = svc.spec.release();
        known.push(Known {
            version: current.clone(),
            state: state_of(svc, &current),
            channels: channels_of(svc, &current, &release.channels),
            upgrade: release.upgrade,
            type_: svc.spec.type_,
        });
    }
    Catalog {
        known,
        snapshots,
        current,
    }
}

impl Catalog {
    /// The version's entry.
    pub fn get(&self, version: &str) -> Option<&Known> {
        self.known.iter().find(|k| k.version == version)
    }

    /// `svc` as it deploys `version`: the snapshot's content, with the
    /// snapshot's UID and generation (the offering cache's key), or the live
    /// spec for the current version when `live` or not yet snapshotted.
    pub fn service_at(&self, svc: &Service, version: &str, live: bool) -> Option<Service> {
        if live && version == self.current {
            return Some(svc.clone());
        }
        match self.snapshots.get(version) {
            Some(v) => {
                let mut s = svc.clone();
                s.spec = svc.spec.at_version(version, &v.spec.content);
                s.metadata.uid = v.metadata.uid.clone();
                s.metadata.generation = v.metadata.generation;
                Some(s)
            }
            None if version == self.current => Some(svc.clone()),
            None => None,
        }
    }
}

/// Pure: the ServiceVersion that publishes the current version of `svc`.
pub fn snapshot_of(svc: &Service) -> ServiceVersion {
    let release = svc.spec.release();
    let name = snapshot_name(&svc.name_any(), &svc.spec.version);
    let mut v = ServiceVersion::new(
        &name,
        ServiceVersionSpec {
            service: svc.name_any(),
            version: svc.spec.version.clone(),
            type_: svc.spec.type_,
            channels: release.channels,
            content: svc.spec.content(),
            upgrade: release.upgrade,
        },
    );
    v.metadata = ObjectMeta {
        name: Some(name),
        namespace: svc.namespace(),
        labels: Some(
            [
                (
                    SERVICE_UID_LABEL.to_string(),
                    svc.metadata.uid.clone().unwrap_or_default(),
                ),
                (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
            ]
            .into(),
        ),
        // Goes with the Service.
        owner_references: Some(vec![OwnerReference {
            api_version: "computenest.dev/v1alpha1".into(),
            kind: "Service".into(),
            name: svc.name_any(),
            uid: svc.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: None,
        }]),
        ..Default::default()
    };
    v
}

/// What publishing found, for the Service's status.
pub struct Published {
    /// The current version, when published.
    pub version: Option<String>,
    /// A note for the Ready message (the current version's content differs
    /// from what was published under it).
    pub note: Option<String>,
}

/// Publishes the current version when its release says Published and no
/// snapshot of it exists. A snapshot is never changed: content edited
/// under a published version is named in the Service's status instead.
pub async fn publish(svc: &Service, ctx: &Context, catalog: &Catalog) -> Result<Published, Error> {
    if svc.spec.release().state != VersionState::Published {
        return Ok(Published {
            version: None,
            note: None,
        });
    }
    let version = Some(svc.spec.version.clone());
    if let Some(v) = catalog.snapshots.get(&svc.spec.version) {
        let note = (v.spec.content != svc.spec.content()).then(|| {
            format!(
                "the content differs from what was published as version {}: instances that pin {} keep the published content, unpinned instances follow the spec; change spec.version to publish a new version",
                svc.spec.version, svc.spec.version
            )
        });
        return Ok(Published { version, note });
    }
    let ns = svc.namespace().unwrap_or_default();
    let api = Api::<ServiceVersion>::namespaced(ctx.client.clone(), &ns);
    let snapshot = snapshot_of(svc);
    match api.create(&PostParams::default(), &snapshot).await {
        Ok(_) => {
            ctx.metrics.wrote(KIND, "create");
            ctx.event(
                svc,
                false,
                "VersionPublished",
                format!(
                    "version {} published as ServiceVersion {}",
                    svc.spec.version,
                    snapshot.name_any()
                ),
            )
            .await;
            Ok(Published {
                version,
                note: None,
            })
        }
        Err(e) if is_conflict(&e) => {
            // A ServiceVersion of that name that is not this Service's
            // (the cache shows only those with its UID): left alone.
            let theirs = api.get_opt(&snapshot.name_any()).await?;
            let ours = theirs
                .as_ref()
                .is_some_and(|t| t.labels().get(SERVICE_UID_LABEL) == svc.metadata.uid.as_ref());
            if ours {
                return Ok(Published {
                    version,
                    note: None,
                });
            }
            Ok(Published {
                version: None,
                note: Some(format!(
                    "version {} cannot be published: ServiceVersion {ns}/{} exists and was not made for this Service; delete it",
                    svc.spec.version,
                    snapshot.name_any()
                )),
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Kind name for metrics.
pub const KIND: &str = "ServiceVersion";

/// The versions each instance of `svc` runs (from the instances' status).
fn running(svc: &Service, ctx: &Context) -> BTreeMap<String, u32> {
    let mut counts = BTreeMap::new();
    let ns = svc.namespace().unwrap_or_default();
    for r in ctx.index.instances_of_service(&ns, &svc.name_any()) {
        if let Some(v) = ctx
            .stores
            .instances
            .get(&r)
            .and_then(|i| i.status.as_ref().and_then(|s| s.version.clone()))
        {
            *counts.entry(v).or_insert(0) += 1;
        }
    }
    counts
}

/// Deletes the snapshots beyond the Service's history limit that no
/// instance runs, each under its UID; writes the status of those kept.
/// Returns the version list for the Service's status, and when to look
/// again: while a rollout moves instances (its counts), or while versions
/// beyond the limit are kept because instances run them (they may stop).
pub async fn keep_versions(
    svc: &Service,
    ctx: &Context,
    catalog: &Catalog,
) -> Result<(Vec<VersionSummary>, Option<std::time::Duration>), Error> {
    let counts = running(svc, ctx);
    let limit = svc
        .spec
        .version_history_limit
        .unwrap_or(crate::api::DEFAULT_VERSION_HISTORY_LIMIT) as usize;
    let in_use = |v: &str| counts.contains_key(v);
    let expired = versions::expired(
        catalog.snapshots.keys().map(String::as_str),
        &in_use,
        &catalog.current,
        limit,
    );
    let ns = svc.namespace().unwrap_or_default();
    let api = Api::<ServiceVersion>::namespaced(ctx.client.clone(), &ns);
    for version in &expired {
        let Some(v) = catalog.snapshots.get(version) else {
            continue;
        };
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: v.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&v.name_any(), &dp).await {
            Ok(_) => {
                ctx.metrics.wrote(KIND, "delete");
                ctx.event(
                    svc,
                    false,
                    "VersionCollected",
                    format!(
                        "version {version} removed: no instance runs it and {limit} newer versions are kept (spec.versionHistoryLimit)"
                    ),
                )
                .await;
            }
            Err(e) if is_not_found(&e) || is_conflict(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut summaries = Vec::new();
    for k in &catalog.known {
        if expired.contains(&k.version) {
            continue;
        }
        if let Some(v) = catalog.snapshots.get(&k.version) {
            write_status(v, k, svc, ctx).await?;
        }
        summaries.push(VersionSummary {
            version: k.version.clone(),
            state: k.state,
            channels: k.channels.clone(),
        });
    }
    summaries.sort_by(|a, b| versions::compare(&b.version, &a.version));
    let generation = svc.metadata.generation.unwrap_or_default();
    let moving = catalog.known.iter().any(|k| {
        !ctx.rollouts
            .get(&rollout_key(svc, &k.version), generation)
            .in_progress
            .is_empty()
    });
    let held = catalog.snapshots.len().saturating_sub(expired.len() + 1) > limit;
    let again = if moving {
        Some(std::time::Duration::from_secs(15))
    } else if held {
        Some(std::time::Duration::from_secs(300))
    } else {
        None
    };
    Ok((summaries, again))
}

async fn write_status(
    v: &ServiceVersion,
    k: &Known,
    svc: &Service,
    ctx: &Context,
) -> Result<(), Error> {
    let previous: &[Condition] = v
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let open = k.state == VersionState::Published;
    let ready = super::status::condition(
        previous,
        "Ready",
        open,
        k.state.as_str(),
        match k.state {
            VersionState::Published => "can be bought and upgraded to".to_string(),
            VersionState::Deprecated => {
                "deprecated: instances that run or pin it keep it; ranges and channels no longer choose it".to_string()
            }
            VersionState::Withdrawn => {
                "withdrawn: no new instance and no upgrade to it; running instances keep running".to_string()
            }
            VersionState::Draft => "draft".to_string(),
        },
        v.metadata.generation,
    );
    let generation = svc.metadata.generation.unwrap_or_default();
    let rollout = rollout_status(
        &ctx.rollouts.get(&rollout_key(svc, &k.version), generation),
        v.status.as_ref().and_then(|s| s.rollout.as_ref()),
        svc.spec
            .rollout
            .clone()
            .unwrap_or_default()
            .failure_threshold,
    );
    let status = ServiceVersionStatus {
        observed_generation: v.metadata.generation,
        state: Some(k.state),
        channels: k.channels.clone(),
        rollout,
        conditions: vec![ready],
    };
    let api =
        Api::<ServiceVersion>::namespaced(ctx.client.clone(), &v.namespace().unwrap_or_default());
    match super::status::write_status_if_changed(&api, &ctx.memo, v, v.status.as_ref(), &status)
        .await
    {
        Ok(true) => ctx.metrics.wrote(KIND, "status"),
        Ok(false) => {}
        // Collected meanwhile.
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// The automatic rollouts under way, by (Service UID, version): which
/// instances move now, and which moved or failed. Fed by the instance
/// controller as it starts and ends moves (facts it saw, not claims read
/// from status); a halt is also kept in the ServiceVersion's status, so
/// that it holds across restarts.
#[derive(Default)]
pub struct Rollouts(
    std::sync::Mutex<std::collections::HashMap<(String, String), Rollout>>,
    /// Instances following each Service (UID) automatically, counted at
    /// most every 10 s: a percentage's base, not worth a scan of every
    /// instance each time a waiting one looks again.
    std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, usize)>>,
);

/// One version's rollout.
#[derive(Default, Clone, Debug, PartialEq)]
pub struct Rollout {
    /// Instances (UIDs) moving now.
    pub in_progress: std::collections::BTreeSet<String>,
    /// Instances whose move succeeded.
    pub succeeded: std::collections::BTreeSet<String>,
    /// Instances whose move failed.
    pub failed: std::collections::BTreeSet<String>,
    /// The Service generation these counts belong to (a new one starts over).
    pub generation: i64,
}

impl Rollouts {
    fn with<T>(
        &self,
        key: (String, String),
        generation: i64,
        f: impl FnOnce(&mut Rollout) -> T,
    ) -> Option<T> {
        let mut m = self.0.lock().ok()?;
        let r = m.entry(key).or_default();
        if r.generation != generation {
            *r = Rollout {
                generation,
                ..Default::default()
            };
        }
        Some(f(r))
    }
    /// Takes a place for `uid` among at most `max` moving at once; true if it
    /// has one (already, or now).
    pub fn reserve(&self, key: (String, String), generation: i64, uid: &str, max: usize) -> bool {
        self.with(key, generation, |r| {
            if r.in_progress.contains(uid) {
                return true;
            }
            if r.in_progress.len() >= max {
                return false;
            }
            r.in_progress.insert(uid.to_string());
            true
        })
        .unwrap_or(false)
    }
    /// Records the end of `uid`'s move.
    pub fn finish(&self, key: (String, String), generation: i64, uid: &str, ok: bool) {
        self.with(key, generation, |r| {
            r.in_progress.remove(uid);
            if ok {
                r.succeeded.insert(uid.to_string());
            } else {
                r.failed.insert(uid.to_string());
            }
        });
    }
    /// Records that `uid` moves (a move found under way, after a restart).
    pub fn moving(&self, key: (String, String), generation: i64, uid: &str) {
        self.with(key, generation, |r| {
            r.in_progress.insert(uid.to_string());
        });
    }
    /// The instances following Service `uid` automatically, from `count`
    /// when the last count is older than 10 s.
    pub fn followers(&self, uid: &str, count: impl FnOnce() -> usize) -> usize {
        let Ok(mut m) = self.1.lock() else {
            return count();
        };
        match m.get(uid) {
            Some((at, n)) if at.elapsed() < std::time::Duration::from_secs(10) => *n,
            _ => {
                let n = count();
                m.insert(uid.to_string(), (std::time::Instant::now(), n));
                n
            }
        }
    }
    /// The rollout of `key`, for status.
    pub fn get(&self, key: &(String, String), generation: i64) -> Rollout {
        self.0
            .lock()
            .ok()
            .and_then(|m| m.get(key).filter(|r| r.generation == generation).cloned())
            .unwrap_or(Rollout {
                generation,
                ..Default::default()
            })
    }
}

/// Pure: the rollout status of a version from the tracker and the halt the
/// ServiceVersion's status keeps for this Service generation.
pub fn rollout_status(
    r: &Rollout,
    kept: Option<&crate::api::RolloutStatus>,
    threshold: u32,
) -> Option<crate::api::RolloutStatus> {
    let halted_before =
        kept.is_some_and(|k| k.state == "Halted" && k.service_generation == r.generation);
    let failed = r.failed.len().max(
        kept.filter(|k| k.service_generation == r.generation)
            .map(|k| k.failed as usize)
            .unwrap_or(0),
    );
    let halted = halted_before || failed >= threshold as usize;
    if !halted && r.in_progress.is_empty() && r.succeeded.is_empty() && failed == 0 {
        return None;
    }
    let (state, message) = if halted {
        (
            "Halted",
            format!(
                "{failed} move(s) to this version failed (failureThreshold {threshold}): instances that follow automatically and have not moved stay where they are; change the Service (for example spec.rollout, or publish a fixed version) to go on"
            ),
        )
    } else if r.in_progress.is_empty() {
        ("Complete", String::new())
    } else {
        ("Progressing", String::new())
    };
    Some(crate::api::RolloutStatus {
        state: state.into(),
        in_progress: r.in_progress.len() as u32,
        succeeded: r.succeeded.len() as u32,
        failed: failed as u32,
        service_generation: r.generation,
        message,
    })
}

/// The rollout key of `version` of `svc`.
pub fn rollout_key(svc: &Service, version: &str) -> (String, String) {
    (
        svc.metadata.uid.clone().unwrap_or_default(),
        version.to_string(),
    )
}

/// Whether an automatic move of `inst` to `to` may start now: not halted,
/// and a place among those moving at once. Takes the place.
fn rollout_gate(
    inst: &ServiceInstance,
    svc: &Service,
    cat: &Catalog,
    to: &str,
    ctx: &Context,
) -> Result<(), versions::Refused> {
    let policy = svc.spec.rollout.clone().unwrap_or_default();
    let generation = svc.metadata.generation.unwrap_or_default();
    let key = rollout_key(svc, to);
    let r = ctx.rollouts.get(&key, generation);
    let kept = cat
        .snapshots
        .get(to)
        .and_then(|v| v.status.as_ref())
        .and_then(|s| s.rollout.as_ref());
    if rollout_status(&r, kept, policy.failure_threshold).is_some_and(|s| s.state == "Halted") {
        return Err(versions::Refused {
            reason: "RolloutHalted",
            message: format!(
                "the rollout of version {to} is halted: {} move(s) to it failed (failureThreshold {}); the ISV changes the Service to go on",
                r.failed
                    .len()
                    .max(kept.map(|k| k.failed as usize).unwrap_or(0)),
                policy.failure_threshold
            ),
        });
    }
    // A percentage needs the number of followers; a plain number does not.
    let followers = if policy.max_in_progress.trim().ends_with('%') {
        ctx.rollouts.followers(&key.0, || {
            let ns = svc.namespace().unwrap_or_default();
            ctx.index
                .instances_of_service(&ns, &svc.name_any())
                .iter()
                .filter_map(|r| ctx.stores.instances.get(r))
                .filter(|i| i.spec.update_policy == crate::api::UpdatePolicy::Automatic)
                .count()
        })
    } else {
        0
    };
    let max = policy.max_at_once(followers);
    let uid = inst.metadata.uid.clone().unwrap_or_default();
    if ctx.rollouts.reserve(key, generation, &uid, max) {
        Ok(())
    } else {
        Err(versions::Refused {
            reason: "RolloutWaiting",
            message: format!(
                "version {to} is rolled out {max} instance(s) at a time (spec.rollout.maxInProgress {}); this one waits for its turn",
                policy.max_in_progress
            ),
        })
    }
}

/// Writes the status of `version` of Service `ns/name` now (a rollout was
/// halted: the halt must outlive this process).
pub async fn note_rollout(ctx: &Context, ns: &str, name: &str, version: &str) -> Result<(), Error> {
    let Some(svc) = ctx
        .stores
        .services
        .get(&kube::runtime::reflector::ObjectRef::new(name).within(ns))
    else {
        return Ok(());
    };
    let cat = catalog(&svc, ctx);
    if let (Some(v), Some(k)) = (cat.snapshots.get(version), cat.get(version)) {
        write_status(v, k, &svc, ctx).await?;
    }
    Ok(())
}

/// A move of an instance from one version to another.
#[derive(Clone, Debug, PartialEq)]
pub struct Move {
    /// Version before.
    pub from: String,
    /// Version after.
    pub to: String,
    /// Upgrade, Rollback or AutomaticRollback.
    pub type_: VersionChangeType,
}

/// What an instance runs now, and why it does not run what it asks for.
pub struct Selection {
    /// The Service as it deploys `version`.
    pub service: Service,
    /// The version to write.
    pub version: String,
    /// A move this reconcile makes or continues.
    pub moving: Option<Move>,
    /// The version asked for and why the instance does not move to it.
    pub blocked: Option<(String, versions::Refused)>,
    /// Newer published versions than `version` (set by `select_in`).
    pub available: Vec<String>,
    /// The version a dry run shows, with the Service as it deploys it and
    /// the parameters the instance lacks for it: the blocked one, else the
    /// newest available.
    pub preview: Option<Preview>,
    /// The Service as it deploys the version a move starts from (objects
    /// both versions write alike are not written again).
    pub from: Option<Service>,
    /// The upgrade metadata of `version` (claims deleted by the move).
    pub delete_claims: bool,
    /// The Service's UID and generation (the key of a rollout, with the version).
    pub service_key: (String, i64),
}

/// A version a dry run is made for.
pub struct Preview {
    /// The version.
    pub version: String,
    /// The Service as it deploys it.
    pub service: Service,
    /// Parameters the instance lacks for it.
    pub missing: Vec<String>,
    /// Why the instance does not move to it, when it does not.
    pub blocked: Option<versions::Refused>,
}

/// The versions a DerivedService resells: `spec.source.version` (exact or
/// a range) and `spec.source.channel`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Resold<'a> {
    /// The pin.
    pub version: Option<&'a str>,
    /// The channel.
    pub channel: Option<&'a str>,
}

/// What `ds` resells.
pub fn resold(ds: &crate::api::DerivedService) -> Resold<'_> {
    Resold {
        version: ds.spec.source.version.as_deref(),
        channel: ds.spec.source.channel.as_deref(),
    }
}

/// Chooses the version an instance runs: what it pins (or, for a product
/// of a distributor, what the distributor resells), checked against the
/// version it runs, the versions' metadata and its history. `resells`: the
/// distributor's pin, when bought through a DerivedService.
pub fn select(
    inst: &ServiceInstance,
    svc: &Service,
    resells: Resold<'_>,
    ctx: &Context,
) -> Result<Selection, versions::Refused> {
    let cat = catalog(svc, ctx);
    let recorded = recorded_version(inst, ctx);
    let gate = |to: &str| rollout_gate(inst, svc, &cat, to, ctx);
    select_in(
        inst,
        svc,
        resells,
        &cat,
        recorded.as_ref().map(|r| r.as_deref()),
        &gate,
    )
}

/// The version the managed namespace of `inst` records (its label), when
/// the instance has a managed namespace: there the running version is taken
/// from the cluster, not from status (which the customer can write, and
/// the ISV's resources must not follow a forged upgrade path).
fn recorded_version(inst: &ServiceInstance, ctx: &Context) -> Option<Option<String>> {
    let uid = inst.metadata.uid.clone().unwrap_or_default();
    let name = crate::domain::provision::managed_namespace_name(
        &inst.namespace().unwrap_or_default(),
        &inst.name_any(),
        &uid,
    );
    let ns = ctx
        .stores
        .namespaces
        .get(&kube::runtime::reflector::ObjectRef::new(&name))?;
    let l = ns.labels();
    (l.get(crate::domain::provision::labels::INSTANCE_UID) == Some(&uid))
        .then(|| l.get(crate::domain::provision::labels::VERSION).cloned())
}

/// Pure: the version an instance runs: from status, unless the cluster
/// records another (`recorded`: Some for a managed instance, with the
/// label's value if it has one); then the known version the label names.
fn running_version(
    inst: &ServiceInstance,
    cat: &Catalog,
    recorded: Option<Option<&str>>,
) -> Option<String> {
    let status = inst.status.as_ref()?;
    if status.applied_objects.is_empty() && status.applied_digest.is_none() {
        return None;
    }
    let claimed = status.version.clone();
    match recorded {
        // Written before versions were recorded: status is all there is.
        None | Some(None) => claimed,
        Some(Some(label)) => {
            if claimed
                .as_deref()
                .is_some_and(|c| naming::label_value(c) == label)
            {
                return claimed;
            }
            cat.known
                .iter()
                .find(|k| naming::label_value(&k.version) == label)
                .map(|k| k.version.clone())
        }
    }
}

/// Pure: `select` with the catalog given. Upgrades available are those
/// newer than the version the instance runs after this reconcile.
pub fn select_in(
    inst: &ServiceInstance,
    svc: &Service,
    resells: Resold<'_>,
    cat: &Catalog,
    recorded: Option<Option<&str>>,
    gate: &dyn Fn(&str) -> Result<(), versions::Refused>,
) -> Result<Selection, versions::Refused> {
    let mut sel = select_core(inst, svc, resells, cat, recorded, gate)?;
    let channel = inst.spec.channel.as_deref().or(resells.channel);
    sel.available = versions::available_upgrades(&cat.known, &sel.version, channel);
    // A pinned instance shows the dry run of its newest available upgrade,
    // from the version written now (so that a move's status is final at once).
    let live = inst.spec.version.as_deref().or(resells.version).is_none() && channel.is_none();
    if sel.preview.is_none() && sel.blocked.is_none() && !live {
        sel.preview = sel
            .available
            .first()
            .and_then(|v| preview_of(inst, svc, cat, v, None));
    }
    Ok(sel)
}

/// The dry run of moving `inst` to `version`: the Service as it deploys
/// it, the parameters the instance lacks for it, and why it is refused.
fn preview_of(
    inst: &ServiceInstance,
    svc: &Service,
    cat: &Catalog,
    version: &str,
    blocked: Option<versions::Refused>,
) -> Option<Preview> {
    let service = cat.service_at(svc, version, false)?;
    Some(Preview {
        version: version.to_string(),
        missing: missing_for(inst, cat, &service, version),
        service,
        blocked,
    })
}

/// Parameters `inst` lacks for `version` (deployed as `service`).
fn missing_for(
    inst: &ServiceInstance,
    cat: &Catalog,
    service: &Service,
    version: &str,
) -> Vec<String> {
    let upgrade = cat
        .get(version)
        .map(|k| k.upgrade.clone())
        .unwrap_or_default();
    versions::missing_parameters(
        &service.spec.content(),
        &upgrade,
        inst.spec.plan.as_deref(),
        &inst.spec.parameters,
    )
}

fn select_core(
    inst: &ServiceInstance,
    svc: &Service,
    resells: Resold<'_>,
    cat: &Catalog,
    recorded: Option<Option<&str>>,
    gate: &dyn Fn(&str) -> Result<(), versions::Refused>,
) -> Result<Selection, versions::Refused> {
    let status = inst.status.clone().unwrap_or_default();
    let service_key = (
        svc.metadata.uid.clone().unwrap_or_default(),
        svc.metadata.generation.unwrap_or_default(),
    );
    let asked = inst.spec.version.as_deref().or(resells.version);
    let channel = inst.spec.channel.as_deref().or(resells.channel);
    let pin = versions::parse_pin(asked, &cat.known)?;
    let live = pin == versions::Pin::Current && channel.is_none();
    let running_owned = running_version(inst, cat, recorded);
    let running = running_owned.as_deref();
    let ask = versions::Ask {
        pin: &pin,
        channel,
        policy: inst.spec.update_policy,
        running,
        current: &cat.current,
    };
    let chosen = versions::choose(&ask, &cat.known).and_then(|v| {
        // Through a distributor: only what it resells.
        let not_resold = || versions::Refused {
            reason: "VersionNotResold",
            message: format!(
                "version {v} is not among the versions the distributor resells ({}{}); pin one of those",
                resells.version.unwrap_or("the current version"),
                resells
                    .channel
                    .map(|c| format!(", channel {c}"))
                    .unwrap_or_default()
            ),
        };
        if let Some(c) = resells.channel
            && !cat.get(&v).is_some_and(|k| k.channels.iter().any(|x| x == c))
        {
            return Err(not_resold());
        }
        match resells.version.map(|r| versions::parse_pin(Some(r), &cat.known)) {
            Some(Ok(p)) if !pin_allows(&p, &v) => Err(not_resold()),
            Some(Err(e)) => Err(e),
            _ => Ok(v),
        }
    });
    let at = |v: &str| cat.service_at(svc, v, live);
    let last = status.history.last();
    // A move under way or just failed, per the history (the instance's own
    // record: a forged one can only make this instance move or stay).
    let failed_here = last.filter(|h| {
        h.result == VersionChangeResult::Failed
            && h.type_ != VersionChangeType::AutomaticRollback
            && Some(h.to.as_str()) == running
    });
    let keep = |target: String, why: versions::Refused| -> Result<Selection, versions::Refused> {
        let Some(r) = running else { return Err(why) };
        let service = at(r).ok_or_else(|| versions::Refused {
            reason: "VersionNotFound",
            message: format!(
                "the instance runs version {r}, which the product no longer has; {}",
                why.message
            ),
        })?;
        Ok(Selection {
            service,
            version: r.to_string(),
            moving: continuing(last, r),
            preview: preview_of(inst, svc, cat, &target, Some(why.clone())),
            blocked: Some((target, why)),
            available: Vec::new(),
            delete_claims: false,
            service_key: service_key.clone(),
            from: None,
        })
    };
    // A failed upgrade rolls back where the instance asks for it and the
    // failed version allows it.
    if let (Some(f), Some(r)) = (failed_here, running)
        && inst.spec.rollback_on_failure
        && f.generation == inst.metadata.generation.unwrap_or_default()
        && cat.get(r).is_some_and(|k| k.upgrade.rollback)
        && let Some(service) = at(&f.from)
    {
        return Ok(Selection {
            service,
            version: f.from.clone(),
            moving: Some(Move {
                from: r.to_string(),
                to: f.from.clone(),
                type_: VersionChangeType::AutomaticRollback,
            }),
            // Away from the failed version, and kept away: said at once, so
            // that the rollback's status is final when it is written.
            preview: preview_of(inst, svc, cat, &f.to, Some(upgrade_failed(&f.to))),
            blocked: Some((f.to.clone(), upgrade_failed(&f.to))),
            available: Vec::new(),
            delete_claims: false,
            service_key: service_key.clone(),
            from: None,
        });
    }
    let target = match chosen {
        Ok(t) => t,
        Err(e) => {
            let wanted = asked.unwrap_or(&cat.current).to_string();
            return keep(wanted, e);
        }
    };
    let Some(r) = running.filter(|r| *r != target) else {
        // Nothing to move: the first deployment, or the version it runs.
        let service = at(&target).ok_or_else(|| versions::Refused {
            reason: "VersionNotFound",
            message: format!("version {target} is not kept by the product"),
        })?;
        return Ok(Selection {
            service,
            moving: continuing(last, &target),
            version: target,
            blocked: None,
            preview: None,
            available: Vec::new(),
            delete_claims: false,
            service_key: service_key.clone(),
            from: None,
        });
    };
    // The same move failed for this generation: not tried again until the
    // instance asks anew (a new generation).
    if status.history.iter().any(|h| {
        h.to == target
            && h.result == VersionChangeResult::Failed
            && h.type_ != VersionChangeType::AutomaticRollback
            && h.generation == inst.metadata.generation.unwrap_or_default()
    }) {
        return keep(target.clone(), upgrade_failed(&target));
    }
    let (Some(from), Some(to)) = (cat.get(r), cat.get(&target)) else {
        return keep(
            target.clone(),
            versions::Refused {
                reason: "VersionNotFound",
                message: format!("version {r} or {target} is no longer kept by the product"),
            },
        );
    };
    let type_ = match versions::check_move(from, to) {
        Ok(t) => t,
        Err(e) => return keep(target, e),
    };
    let Some(service) = at(&target) else {
        return keep(
            target.clone(),
            versions::Refused {
                reason: "VersionNotFound",
                message: format!("version {target} is not kept by the product"),
            },
        );
    };
    let missing = missing_for(inst, cat, &service, &target);
    if !missing.is_empty() {
        return keep(
            target.clone(),
            versions::Refused {
                reason: "MissingParameters",
                message: format!(
                    "version {target} needs a value for {}; set them in spec.parameters",
                    missing.join(", ")
                ),
            },
        );
    }
    // An automatic upgrade (not one the instance's pin asked for) waits
    // for its turn in the version's rollout; checked last, as it takes a place.
    if is_automatic(inst, type_)
        && let Err(e) = gate(&target)
    {
        return keep(target, e);
    }
    Ok(Selection {
        service,
        moving: Some(Move {
            from: r.to_string(),
            to: target.clone(),
            type_,
        }),
        delete_claims: to.upgrade.delete_persistent_volume_claims,
        service_key: service_key.clone(),
        from: at(r),
        version: target,
        blocked: None,
        preview: None,
        available: Vec::new(),
    })
}

/// Why an instance does not move to `target` again: the move failed for
/// this generation.
fn upgrade_failed(target: &str) -> versions::Refused {
    versions::Refused {
        reason: "UpgradeFailed",
        message: format!(
            "the move to version {target} failed (see status.history); change spec.version, or edit the instance, to try again"
        ),
    }
}

/// Whether a move of `inst` is an automatic upgrade (rolled out in stages).
pub fn is_automatic(inst: &ServiceInstance, type_: VersionChangeType) -> bool {
    inst.spec.update_policy == crate::api::UpdatePolicy::Automatic
        && type_ == VersionChangeType::Upgrade
}

fn pin_allows(pin: &versions::Pin, v: &str) -> bool {
    match pin {
        versions::Pin::Current => true,
        versions::Pin::Exact(x) => x == v,
        versions::Pin::Range(r) => versions::in_range(r, v),
    }
}

/// The move under way to `version`, per the last history entry.
fn continuing(last: Option<&crate::api::VersionChange>, version: &str) -> Option<Move> {
    last.filter(|h| h.result == VersionChangeResult::InProgress && h.to == version)
        .map(|h| Move {
            from: h.from.clone(),
            to: h.to.clone(),
            type_: h.type_,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(version: &str, release: serde_json::Value, versions: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "apiVersion": "computenest.dev/v1alpha1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "isv", "uid": "svc-uid"},
            "spec": {"type": "Private", "version": version, "release": release,
                     "versions": versions, "template": {"objects": []}}
        }))
        .unwrap()
    }

    #[test]
    fn a_rollout_takes_at_most_its_share_and_halts_at_the_threshold() {
        let policy = |m: &str| crate::api::RolloutPolicy {
            max_in_progress: m.into(),
            failure_threshold: 2,
        };
        assert_eq!(policy("25%").max_at_once(10), 3);
        assert_eq!(policy("25%").max_at_once(0), 1);
        assert_eq!(policy("2").max_at_once(100), 2);
        assert_eq!(policy("150%").max_at_once(4), 4);
        let rollouts = Rollouts::default();
        let key = ("svc".to_string(), "2.0.0".to_string());
        assert!(rollouts.reserve(key.clone(), 1, "a", 2));
        assert!(rollouts.reserve(key.clone(), 1, "b", 2));
        assert!(!rollouts.reserve(key.clone(), 1, "c", 2), "a third at once");
        assert!(rollouts.reserve(key.clone(), 1, "a", 2), "a place is kept");
        rollouts.finish(key.clone(), 1, "a", false);
        assert!(rollouts.reserve(key.clone(), 1, "c", 2));
        let r = rollouts.get(&key, 1);
        let s = rollout_status(&r, None, 2).expect("status");
        assert_eq!(
            (s.state.as_str(), s.in_progress, s.failed),
            ("Progressing", 2, 1)
        );
        rollouts.finish(key.clone(), 1, "b", false);
        let s = rollout_status(&rollouts.get(&key, 1), None, 2).expect("status");
        assert_eq!(s.state, "Halted");
        // The halt outlives the process (kept in status) for this generation only.
        let fresh = Rollout {
            generation: 1,
            ..Default::default()
        };
        assert_eq!(
            rollout_status(&fresh, Some(&s), 2).map(|x| x.state),
            Some("Halted".into())
        );
        let next = Rollout {
            generation: 2,
            ..Default::default()
        };
        assert_eq!(rollout_status(&next, Some(&s), 2), None);
        // A new generation starts over.
        assert!(rollouts.reserve(key.clone(), 2, "d", 1));
        assert_eq!(rollouts.get(&key, 2).failed.len(), 0);
    }

    #[test]
    fn snapshot_names_are_valid_and_distinct_for_any_input() {
        let a = snapshot_name("web", "1.0.0+build_7");
        let b = snapshot_name("web", "1.0.0-build-7");
        assert_ne!(a, b);
        for n in [&a, &b, &snapshot_name(&"x".repeat(253), &"V".repeat(64))] {
            assert!(crate::domain::render::is_dns_subdomain(n), "{n}");
        }
    }

    #[test]
    fn the_catalog_has_the_snapshots_and_the_current_version_with_the_isvs_states() {
        let old = service("1.0.0", json!({}), json!([]));
        let snap = Arc::new(snapshot_of(&old));
        let svc = service(
            "2.0.0",
            json!({"state": "Draft", "channels": ["beta"]}),
            json!([{"version": "1.0.0", "state": "Deprecated", "channels": ["old"]}]),
        );
        let c = catalog_of(&svc, [("1.0.0".to_string(), snap)].into());
        let one = c.get("1.0.0").unwrap();
        assert_eq!(
            (one.state, one.channels.clone()),
            (VersionState::Deprecated, vec!["old".to_string()])
        );
        let two = c.get("2.0.0").unwrap();
        assert_eq!(
            (two.state, two.channels.clone()),
            (VersionState::Draft, vec!["beta".to_string()])
        );
        // A pinned version deploys its snapshot, under the snapshot's identity.
        assert!(
            c.service_at(&svc, "1.0.0", false)
                .is_some_and(|s| s.spec.version == "1.0.0")
        );
        assert!(c.service_at(&svc, "0.1.0", false).is_none());
    }

    #[test]
    fn a_snapshot_belongs_to_its_service_and_goes_with_it() {
        let v = snapshot_of(&service("1.0.0", json!({}), json!([])));
        assert_eq!(
            v.labels().get(SERVICE_UID_LABEL).map(String::as_str),
            Some("svc-uid")
        );
        assert_eq!(v.spec.channels, vec!["stable".to_string()]);
        assert!(v.spec.upgrade.rollback);
        let owner = v.metadata.owner_references.unwrap_or_default();
        assert_eq!(owner.first().map(|o| o.uid.as_str()), Some("svc-uid"));
    }
}
