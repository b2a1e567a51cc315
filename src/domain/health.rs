//! Health of the objects an instance provisioned: pure rules, no API calls.
//!
//! The rules follow Argo CD's built-in health checks for the workload kinds
//! (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, ...) and the kstatus
//! conventions (observedGeneration, Stalled, Reconciling, Ready) for every
//! other kind. Objects arrive as the JSON of a live object; anything missing
//! or of the wrong type is read as absent, so no input can panic.
//! `trim` cuts a live object down to what the rules read, for watch caches;
//! `rollup` turns the objects' health into the instance's.

use crate::api::HealthState;
use serde_json::{Map, Value};
use std::time::Duration;

/// What one object's health is, and why (empty message when Healthy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assessment {
    pub health: HealthState,
    pub message: String,
}

impl Assessment {
    fn healthy() -> Self {
        Self::new(HealthState::Healthy, "")
    }

    fn new(health: HealthState, message: impl Into<String>) -> Self {
        Self {
            health,
            message: message.into(),
        }
    }

    fn progressing(message: impl Into<String>) -> Self {
        Self::new(HealthState::Progressing, message)
    }

    fn degraded(message: impl Into<String>) -> Self {
        Self::new(HealthState::Degraded, message)
    }

    fn suspended(message: impl Into<String>) -> Self {
        Self::new(HealthState::Suspended, message)
    }
}

/// Whether the health of kind (group "" for core) can be told from metadata
/// alone (existence): core ConfigMap, Secret, ServiceAccount, Endpoints,
/// LimitRange, ResourceQuota; rbac.authorization.k8s.io Role, RoleBinding;
/// networking.k8s.io NetworkPolicy. Every other kind needs its status.
pub fn by_existence(group: &str, kind: &str) -> bool {
    matches!(
        (group, kind),
        (
            "",
            "ConfigMap"
                | "Secret"
                | "ServiceAccount"
                | "Endpoints"
                | "LimitRange"
                | "ResourceQuota"
        ) | ("rbac.authorization.k8s.io", "Role" | "RoleBinding")
            | ("networking.k8s.io", "NetworkPolicy")
    )
}

/// Metadata fields kept by `trim`: identity, what the controller matches on
/// (labels), and what the rules read (generation, deletion). Annotations
/// are not read from the caches (the drift opt-out is read from the live
/// object) and can be large, so they go.
const METADATA_KEPT: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "labels",
    "generation",
    "resourceVersion",
    "deletionTimestamp",
];

/// The spec fields the rules of a kind read.
fn spec_read(group: &str, kind: &str) -> &'static [&'static str] {
    match (group, kind) {
        ("apps", "Deployment") => &["replicas", "paused"],
        ("apps", "StatefulSet") => &["replicas", "updateStrategy"],
        ("apps", "DaemonSet") => &["updateStrategy"],
        ("apps", "ReplicaSet") => &["replicas"],
        ("batch", "Job") => &["suspend", "completions"],
        ("batch", "CronJob") => &["suspend"],
        ("", "Service") => &["type"],
        _ => &[],
    }
}

/// The status fields some rule reads; every other one is dropped (a
/// tenant's custom resource may carry a status of any size).
const STATUS_READ: &[&str] = &[
    "availableReplicas",
    "conditions",
    "currentHealthy",
    "currentRevision",
    "desiredHealthy",
    "desiredNumberScheduled",
    "loadBalancer",
    "message",
    "numberAvailable",
    "observedGeneration",
    "phase",
    "readyReplicas",
    "reason",
    "replicas",
    "succeeded",
    "updateRevision",
    "updatedNumberScheduled",
    "updatedReplicas",
];

/// The condition types some rule reads.
const CONDITIONS_READ: &[&str] = &[
    "Complete",
    "Failed",
    "PodScheduled",
    "Progressing",
    "Ready",
    "Reconciling",
    "ReplicaFailure",
    "Stalled",
    "SuccessCriteriaMet",
];

/// The longest string kept of a status text (a condition's reason or
/// message, status.message): enough to say why, bounded whoever wrote it.
const TEXT_KEPT: usize = 1024;

fn cut(v: &mut Value) {
    if let Value::String(t) = v
        && let Some((at, _)) = t.char_indices().nth(TEXT_KEPT)
    {
        t.truncate(at);
    }
}

/// Keeps of a status only what the rules read, each text bounded.
fn trim_status(status: &mut Map<String, Value>) {
    status.retain(|k, _| STATUS_READ.contains(&k.as_str()));
    for key in ["message", "reason"] {
        if let Some(v) = status.get_mut(key) {
            cut(v);
        }
    }
    if let Some(Value::Array(conditions)) = status.get_mut("conditions") {
        let mut seen = Vec::new();
        conditions.retain_mut(|c| {
            let Value::Object(c) = c else { return false };
            let Some(type_) = c.get("type").and_then(Value::as_str).map(str::to_string) else {
                return false;
            };
            // The rules read the first condition of a type.
            if !CONDITIONS_READ.contains(&type_.as_str()) || seen.contains(&type_) {
                return false;
            }
            seen.push(type_);
            c.retain(|k, _| matches!(k.as_str(), "type" | "status" | "reason" | "message"));
            for v in c.values_mut() {
                cut(v);
            }
            true
        });
    }
    // Only whether there is an address is read.
    if let Some(Value::Array(ingress)) = status
        .get_mut("loadBalancer")
        .and_then(|lb| lb.get_mut("ingress"))
    {
        ingress.truncate(1);
    }
}

/// Strips a live object (serde_json of a DynamicObject: apiVersion, kind,
/// metadata, spec, status, ...) down to what `assess` reads, to keep a watch
/// cache small: metadata keeps name, namespace, uid, labels, annotations,
/// generation, resourceVersion, deletionTimestamp (drop managedFields and
/// everything else); `status` kept whole except large lists that no rule
/// reads; from `spec` keep only the fields the rules of that kind read
/// (replicas, paused, suspend, type, updateStrategy, completions...). Any
/// other top-level keys are dropped (ConfigMap data etc.), except apiVersion
/// and kind, which are small and name the object.
pub fn trim(group: &str, kind: &str, obj: &mut Value) {
    let Value::Object(map) = obj else {
        return;
    };
    let mut kept = Map::new();
    for key in ["apiVersion", "kind"] {
        if let Some(v) = map.remove(key) {
            kept.insert(key.to_string(), v);
        }
    }
    // A metadata or spec that is not an object has nothing the rules can
    // read, so dropping it does not change the assessment.
    if let Some(Value::Object(mut meta)) = map.remove("metadata") {
        meta.retain(|k, _| METADATA_KEPT.contains(&k.as_str()));
        kept.insert("metadata".to_string(), Value::Object(meta));
    }
    if let Some(Value::Object(mut spec)) = map.remove("spec") {
        let read = spec_read(group, kind);
        spec.retain(|k, _| read.contains(&k.as_str()));
        if !spec.is_empty() {
            kept.insert("spec".to_string(), Value::Object(spec));
        }
    }
    if let Some(mut status) = map.remove("status").filter(|s| !s.is_null()) {
        if let Value::Object(s) = &mut status {
            trim_status(s);
        }
        kept.insert("status".to_string(), status);
    }
    *map = kept;
}

/// The value at `path`, if every step is an object holding the next key.
fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn int(v: &Value, path: &[&str]) -> Option<i64> {
    at(v, path)?.as_i64()
}

/// A status count: Kubernetes omits zero counts, so absent reads as 0.
fn count(v: &Value, path: &[&str]) -> i64 {
    int(v, path).unwrap_or(0)
}

fn flag(v: &Value, path: &[&str]) -> bool {
    at(v, path).and_then(Value::as_bool).unwrap_or(false)
}

fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path)?.as_str()
}

/// spec.replicas, defaulted to 1 as the API server does.
fn replicas(obj: &Value) -> i64 {
    int(obj, &["spec", "replicas"]).unwrap_or(1)
}

/// One entry of status.conditions.
struct Condition<'a> {
    status: &'a str,
    reason: &'a str,
    message: &'a str,
}

impl Condition<'_> {
    fn is_true(&self) -> bool {
        self.status == "True"
    }

    /// The message, else the reason, else `fallback`.
    fn why(&self, fallback: &str) -> String {
        [self.message, self.reason]
            .into_iter()
            .find(|s| !s.is_empty())
            .unwrap_or(fallback)
            .to_string()
    }
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<Condition<'a>> {
    let c = at(obj, &["status", "conditions"])?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))?;
    let field = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("");
    Some(Condition {
        status: field("status"),
        reason: field("reason"),
        message: field("message"),
    })
}

fn condition_true<'a>(obj: &'a Value, type_: &str) -> Option<Condition<'a>> {
    condition(obj, type_).filter(Condition::is_true)
}

/// Whether the kind's controller has not yet seen the latest spec. Workload
/// controllers always write observedGeneration, so its absence means not seen.
fn unobserved(obj: &Value) -> bool {
    let generation = int(obj, &["metadata", "generation"]).unwrap_or(0);
    int(obj, &["status", "observedGeneration"]).is_none_or(|o| o < generation)
}

fn waiting_to_be_observed() -> Assessment {
    Assessment::progressing("waiting for the rollout to be observed")
}

/// Whether status.loadBalancer.ingress names at least one address.
fn has_lb_address(obj: &Value) -> bool {
    at(obj, &["status", "loadBalancer", "ingress"])
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

/// Health of one object; `None` means it does not exist (Missing).
pub fn assess(group: &str, kind: &str, live: Option<&Value>) -> Assessment {
    let Some(obj) = live else {
        return Assessment::new(HealthState::Missing, "not found");
    };
    if at(obj, &["metadata", "deletionTimestamp"]).is_some_and(|t| !t.is_null()) {
        return Assessment::progressing("being deleted");
    }
    if by_existence(group, kind) {
        return Assessment::healthy();
    }
    match (group, kind) {
        ("apps", "Deployment") => deployment(obj),
        ("apps", "StatefulSet") => stateful_set(obj),
        ("apps", "DaemonSet") => daemon_set(obj),
        ("apps", "ReplicaSet") => replica_set(obj),
        ("batch", "Job") => job(obj),
        ("batch", "CronJob") => {
            if flag(obj, &["spec", "suspend"]) {
                Assessment::suspended("suspended")
            } else {
                Assessment::healthy()
            }
        }
        ("", "PersistentVolumeClaim") => match text(obj, &["status", "phase"]) {
            Some("Bound") => Assessment::healthy(),
            Some("Lost") => Assessment::degraded("claim lost its volume"),
            _ => Assessment::progressing("waiting to be bound"),
        },
        ("", "Service") => {
            if text(obj, &["spec", "type"]) != Some("LoadBalancer") || has_lb_address(obj) {
                Assessment::healthy()
            } else {
                Assessment::progressing("waiting for a load balancer address")
            }
        }
        ("networking.k8s.io", "Ingress") => {
            if has_lb_address(obj) {
                Assessment::healthy()
            } else {
                Assessment::progressing("waiting for an address")
            }
        }
        ("policy", "PodDisruptionBudget") => pod_disruption_budget(obj),
        ("", "Pod") => pod(obj),
        _ => kstatus(obj),
    }
}

fn deployment(obj: &Value) -> Assessment {
    if flag(obj, &["spec", "paused"]) {
        return Assessment::suspended("rollout paused");
    }
    if unobserved(obj) {
        return waiting_to_be_observed();
    }
    if let Some(c) = condition(obj, "Progressing")
        && c.reason == "ProgressDeadlineExceeded"
    {
        return Assessment::degraded(format!(
            "progress deadline exceeded: {}",
            c.why("no progress")
        ));
    }
    let want = replicas(obj);
    let total = count(obj, &["status", "replicas"]);
    let updated = count(obj, &["status", "updatedReplicas"]);
    let available = count(obj, &["status", "availableReplicas"]);
    if updated < want {
        Assessment::progressing(format!("{updated} of {want} replicas updated"))
    } else if total > updated {
        Assessment::progressing(format!(
            "old replicas are terminating ({} left)",
            total - updated
        ))
    } else if available < updated {
        Assessment::progressing(format!("{available} of {updated} replicas available"))
    } else {
        Assessment::healthy()
    }
}

fn stateful_set(obj: &Value) -> Assessment {
    if unobserved(obj) {
        return waiting_to_be_observed();
    }
    let want = replicas(obj);
    let ready = count(obj, &["status", "readyReplicas"]);
    if ready < want {
        return Assessment::progressing(format!("{ready} of {want} replicas ready"));
    }
    // The API server defaults the type to RollingUpdate.
    let strategy = text(obj, &["spec", "updateStrategy", "type"]).unwrap_or("RollingUpdate");
    if strategy == "OnDelete" {
        // Pods are replaced only when someone deletes them: ready is all there is.
        return Assessment::healthy();
    }
    let updated = count(obj, &["status", "updatedReplicas"]);
    let partition = int(
        obj,
        &["spec", "updateStrategy", "rollingUpdate", "partition"],
    );
    match partition {
        Some(p) if strategy == "RollingUpdate" => {
            // Pods below the partition keep the old revision on purpose.
            let target = want - p;
            if updated < target {
                Assessment::progressing(format!(
                    "{updated} of {target} replicas updated (partition {p})"
                ))
            } else {
                Assessment::healthy()
            }
        }
        _ => {
            let current = text(obj, &["status", "currentRevision"]);
            let update = text(obj, &["status", "updateRevision"]);
            if current != update {
                Assessment::progressing(format!("{updated} of {want} replicas updated"))
            } else {
                Assessment::healthy()
            }
        }
    }
}

fn daemon_set(obj: &Value) -> Assessment {
    if unobserved(obj) {
        return waiting_to_be_observed();
    }
    let desired = count(obj, &["status", "desiredNumberScheduled"]);
    let updated = count(obj, &["status", "updatedNumberScheduled"]);
    let available = count(obj, &["status", "numberAvailable"]);
    // With OnDelete, old pods stay until someone deletes them: not a rollout
    // the controller waits for (as Argo CD).
    let on_delete = text(obj, &["spec", "updateStrategy", "type"]) == Some("OnDelete");
    if !on_delete && updated < desired {
        Assessment::progressing(format!("{updated} of {desired} pods updated"))
    } else if available < desired {
        Assessment::progressing(format!("{available} of {desired} pods available"))
    } else {
        Assessment::healthy()
    }
}

fn replica_set(obj: &Value) -> Assessment {
    if unobserved(obj) {
        return waiting_to_be_observed();
    }
    if let Some(c) = condition_true(obj, "ReplicaFailure") {
        return Assessment::degraded(c.why("replica failure"));
    }
    let want = replicas(obj);
    let available = count(obj, &["status", "availableReplicas"]);
    if available < want {
        Assessment::progressing(format!("{available} of {want} replicas available"))
    } else {
        Assessment::healthy()
    }
}

fn job(obj: &Value) -> Assessment {
    if let Some(c) = condition_true(obj, "Failed") {
        return Assessment::degraded(match (c.reason, c.message) {
            ("", "") => "failed".to_string(),
            (r, "") | ("", r) => r.to_string(),
            (r, m) => format!("{r}: {m}"),
        });
    }
    if condition_true(obj, "Complete").is_some()
        || condition_true(obj, "SuccessCriteriaMet").is_some()
    {
        return Assessment::healthy();
    }
    if flag(obj, &["spec", "suspend"]) {
        return Assessment::suspended("suspended");
    }
    match int(obj, &["spec", "completions"]) {
        Some(n) => {
            let succeeded = count(obj, &["status", "succeeded"]);
            Assessment::progressing(format!("running: {succeeded} of {n} succeeded"))
        }
        None => Assessment::progressing("running"),
    }
}

fn pod_disruption_budget(obj: &Value) -> Assessment {
    if unobserved(obj) {
        return waiting_to_be_observed();
    }
    let current = count(obj, &["status", "currentHealthy"]);
    let desired = count(obj, &["status", "desiredHealthy"]);
    // Too few healthy pods is the normal state while they first start: the
    // workload's own health says whether they fail.
    if current < desired {
        Assessment::progressing(format!("{current} of {desired} pods healthy"))
    } else {
        Assessment::healthy()
    }
}

fn pod(obj: &Value) -> Assessment {
    let reason_or = |fallback: &str| {
        text(obj, &["status", "message"])
            .or_else(|| text(obj, &["status", "reason"]))
            .filter(|s| !s.is_empty())
            .unwrap_or(fallback)
            .to_string()
    };
    match text(obj, &["status", "phase"]) {
        Some("Succeeded") => Assessment::healthy(),
        Some("Failed") => Assessment::degraded(reason_or("failed")),
        Some("Running") => match condition(obj, "Ready") {
            Some(c) if c.is_true() => Assessment::healthy(),
            Some(c) => Assessment::progressing(c.why("not ready")),
            None => Assessment::progressing("not ready"),
        },
        _ => match condition(obj, "PodScheduled") {
            // An unschedulable pod says why ("0/3 nodes are available: ...").
            Some(c) if !c.is_true() => Assessment::progressing(c.why("not scheduled")),
            _ => Assessment::progressing(reason_or("pending")),
        },
    }
}

/// Any other kind, by the kstatus conventions; no status means it is there
/// and has nothing to report.
fn kstatus(obj: &Value) -> Assessment {
    let generation = int(obj, &["metadata", "generation"]).unwrap_or(0);
    if int(obj, &["status", "observedGeneration"]).is_some_and(|o| o < generation) {
        return waiting_to_be_observed();
    }
    if let Some(c) = condition_true(obj, "Stalled") {
        return Assessment::degraded(c.why("stalled"));
    }
    if let Some(c) = condition_true(obj, "Reconciling") {
        return Assessment::progressing(c.why("reconciling"));
    }
    match condition(obj, "Ready") {
        Some(c) if !c.is_true() => Assessment::progressing(c.why("not ready")),
        _ => Assessment::healthy(),
    }
}

/// The instance's roll-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rollup {
    /// Every object Healthy or Suspended.
    Healthy,
    /// Some object Progressing or Unknown, within the deadline; `retry_in` is
    /// the time left until the deadline.
    Progressing { message: String, retry_in: Duration },
    /// Some object Degraded or Missing, or still not healthy at the deadline.
    /// `reason` is "Degraded", "Missing" or "ProgressDeadlineExceeded".
    Stalled {
        reason: &'static str,
        message: String,
    },
}

/// How many unhealthy objects a roll-up message names before "and N more".
const NAMED: usize = 5;

/// Longest object message quoted in a roll-up, in characters: a condition
/// message can be a paragraph, and the roll-up is read in `kubectl get`.
const QUOTED_CHARS: usize = 200;

/// Which unhealthy objects come first in a message: the cause of the reason.
fn severity(h: HealthState) -> u8 {
    match h {
        HealthState::Degraded => 0,
        HealthState::Missing => 1,
        _ => 2,
    }
}

/// `Kind ns/name: Health: message; ...`, at most `NAMED` objects.
fn describe(unhealthy: &[&(String, Assessment)]) -> String {
    let mut parts: Vec<String> = unhealthy
        .iter()
        .take(NAMED)
        .map(|(what, a)| {
            let mut part = format!("{what}: {}", a.health.as_str());
            if !a.message.is_empty() {
                part.push_str(": ");
                match a.message.char_indices().nth(QUOTED_CHARS) {
                    Some((cut, _)) => {
                        part.push_str(&a.message[..cut]);
                        part.push('…');
                    }
                    None => part.push_str(&a.message),
                }
            }
            part
        })
        .collect();
    if unhealthy.len() > NAMED {
        parts.push(format!("and {} more", unhealthy.len() - NAMED));
    }
    parts.join("; ")
}

/// objects: ("Kind namespace/name", its assessment), in the instance's order.
/// progressing_since: when the instance started waiting for health (None = now).
pub fn rollup(
    objects: &[(String, Assessment)],
    progressing_since: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
    deadline: Duration,
) -> Rollup {
    let mut unhealthy: Vec<&(String, Assessment)> = objects
        .iter()
        .filter(|(_, a)| !matches!(a.health, HealthState::Healthy | HealthState::Suspended))
        .collect();
    // Stable: the instance's order within each severity.
    unhealthy.sort_by_key(|(_, a)| severity(a.health));
    let Some((_, worst)) = unhealthy.first() else {
        return Rollup::Healthy;
    };
    let message = describe(&unhealthy);
    match worst.health {
        HealthState::Degraded => {
            return Rollup::Stalled {
                reason: "Degraded",
                message,
            };
        }
        HealthState::Missing => {
            return Rollup::Stalled {
                reason: "Missing",
                message,
            };
        }
        _ => {}
    }
    // A start in the future (clock skew) counts as now.
    let waited = progressing_since
        .and_then(|since| Duration::try_from(now.duration_since(since)).ok())
        .unwrap_or(Duration::ZERO);
    if waited >= deadline {
        Rollup::Stalled {
            reason: "ProgressDeadlineExceeded",
            // The deadline, not the time waited: the message must not change
            // on every look, or each status write would trigger the next.
            message: format!(
                "not healthy within the progress deadline of {}s: {message}",
                deadline.as_secs()
            ),
        }
    } else {
        Rollup::Progressing {
            message,
            retry_in: deadline - waited,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use HealthState::*;

    fn parse(yaml: &str) -> Value {
        serde_yaml::from_str(yaml).expect("fixture is valid YAML")
    }

    fn check(group: &str, kind: &str, yaml: &str) -> (HealthState, String) {
        let a = assess(group, kind, Some(&parse(yaml)));
        (a.health, a.message)
    }

    fn is(health: HealthState, message: &str) -> (HealthState, String) {
        (health, message.to_string())
    }

    // ---- Fixtures, shaped as `kubectl get -o yaml` prints them ----

    const DEPLOYMENT_HEALTHY: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  annotations:
    deployment.kubernetes.io/revision: "2"
  creationTimestamp: "2024-05-01T10:00:00Z"
  generation: 2
  labels:
    app: web
    computenest.dev/instance-uid: 5f1c2a7e-0000-4000-8000-000000000001
  managedFields:
  - apiVersion: apps/v1
    fieldsType: FieldsV1
    fieldsV1:
      f:spec:
        f:replicas: {}
    manager: computenest
    operation: Apply
    time: "2024-05-01T10:00:00Z"
  name: web
  namespace: shop
  resourceVersion: "48213"
  uid: 9a3f0a64-4c1e-4c52-9a5c-0c6fd5a0b7a1
spec:
  progressDeadlineSeconds: 600
  replicas: 3
  revisionHistoryLimit: 10
  selector:
    matchLabels:
      app: web
  strategy:
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 25%
    type: RollingUpdate
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - image: nginx:1.27
        name: web
        ports:
        - containerPort: 80
          protocol: TCP
status:
  availableReplicas: 3
  conditions:
  - lastTransitionTime: "2024-05-01T10:00:20Z"
    lastUpdateTime: "2024-05-01T10:00:20Z"
    message: Deployment has minimum availability.
    reason: MinimumReplicasAvailable
    status: "True"
    type: Available
  - lastTransitionTime: "2024-05-01T10:00:00Z"
    lastUpdateTime: "2024-05-01T10:00:25Z"
    message: ReplicaSet "web-6d4cf56db6" has successfully progressed.
    reason: NewReplicaSetAvailable
    status: "True"
    type: Progressing
  observedGeneration: 2
  readyReplicas: 3
  replicas: 3
  updatedReplicas: 3
"#;

    const DEPLOYMENT_UNAVAILABLE: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  generation: 1
  name: web
  namespace: shop
spec:
  replicas: 3
  template:
    spec:
      containers:
      - image: nginx:1.27
        name: web
status:
  availableReplicas: 1
  conditions:
  - message: Deployment does not have minimum availability.
    reason: MinimumReplicasUnavailable
    status: "False"
    type: Available
  - message: ReplicaSet "web-6d4cf56db6" is progressing.
    reason: ReplicaSetUpdated
    status: "True"
    type: Progressing
  observedGeneration: 1
  readyReplicas: 1
  replicas: 3
  unavailableReplicas: 2
  updatedReplicas: 3
"#;

    const DEPLOYMENT_UPDATING: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  generation: 3
  name: web
  namespace: shop
spec:
  replicas: 3
status:
  availableReplicas: 3
  observedGeneration: 3
  readyReplicas: 3
  replicas: 4
  updatedReplicas: 1
"#;

    const DEPLOYMENT_OLD_TERMINATING: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  generation: 3
  name: web
  namespace: shop
spec:
  replicas: 3
status:
  availableReplicas: 3
  observedGeneration: 3
  readyReplicas: 4
  replicas: 4
  updatedReplicas: 3
"#;

    const DEPLOYMENT_UNOBSERVED: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  generation: 4
  name: web
  namespace: shop
spec:
  replicas: 3
status:
  availableReplicas: 3
  observedGeneration: 3
  readyReplicas: 3
  replicas: 3
  updatedReplicas: 3
"#;

    const DEPLOYMENT_NO_STATUS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 3
  selector:
    matchLabels:
      app: web
"#;

    const DEPLOYMENT_DEADLINE: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  generation: 2
  name: web
  namespace: shop
spec:
  replicas: 3
status:
  availableReplicas: 2
  conditions:
  - message: ReplicaSet "web-7b9d8c5f4" has timed out progressing.
    reason: ProgressDeadlineExceeded
    status: "False"
    type: Progressing
  observedGeneration: 2
  replicas: 4
  updatedReplicas: 1
"#;

    const DEPLOYMENT_PAUSED: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  generation: 5
  name: web
  namespace: shop
spec:
  paused: true
  replicas: 3
status:
  observedGeneration: 4
  replicas: 3
  updatedReplicas: 1
"#;

    const DEPLOYMENT_DELETING: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  deletionGracePeriodSeconds: 0
  deletionTimestamp: "2024-05-01T11:00:00Z"
  finalizers:
  - foregroundDeletion
  generation: 3
  name: web
  namespace: shop
spec:
  replicas: 3
status:
  availableReplicas: 3
  observedGeneration: 3
  replicas: 3
  updatedReplicas: 3
"#;

    /// Wrong types everywhere: a string replica count (defaults to 1), a
    /// string count in status, conditions not a list.
    const DEPLOYMENT_MALFORMED: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  generation: 1
  name: web
  namespace: shop
spec:
  paused: "yes"
  replicas: three
status:
  availableReplicas: 2
  conditions: not-a-list
  observedGeneration: 1
  replicas: many
  updatedReplicas: 2
"#;

    const STATEFULSET_HEALTHY: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata:
  generation: 1
  name: db
  namespace: shop
spec:
  persistentVolumeClaimRetentionPolicy:
    whenDeleted: Retain
    whenScaled: Retain
  podManagementPolicy: OrderedReady
  replicas: 3
  serviceName: db
  template:
    spec:
      containers:
      - image: postgres:16
        name: postgres
  updateStrategy:
    rollingUpdate:
      partition: 0
    type: RollingUpdate
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes:
      - ReadWriteOnce
      resources:
        requests:
          storage: 10Gi
status:
  availableReplicas: 3
  collisionCount: 0
  currentReplicas: 3
  currentRevision: db-5c8b9d7f6
  observedGeneration: 1
  readyReplicas: 3
  replicas: 3
  updateRevision: db-5c8b9d7f6
  updatedReplicas: 3
"#;

    const STATEFULSET_NOT_READY: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata:
  generation: 1
  name: db
  namespace: shop
spec:
  replicas: 3
  updateStrategy:
    rollingUpdate:
      partition: 0
    type: RollingUpdate
status:
  availableReplicas: 1
  currentReplicas: 1
  currentRevision: db-5c8b9d7f6
  observedGeneration: 1
  readyReplicas: 1
  replicas: 2
  updateRevision: db-5c8b9d7f6
  updatedReplicas: 1
"#;

    const STATEFULSET_PARTITION_DONE: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata:
  generation: 2
  name: db
  namespace: shop
spec:
  replicas: 3
  updateStrategy:
    rollingUpdate:
      partition: 2
    type: RollingUpdate
status:
  currentReplicas: 2
  currentRevision: db-5c8b9d7f6
  observedGeneration: 2
  readyReplicas: 3
  replicas: 3
  updateRevision: db-7f4d6b8c9
  updatedReplicas: 1
"#;

    const STATEFULSET_PARTITION_ROLLING: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata:
  generation: 2
  name: db
  namespace: shop
spec:
  replicas: 3
  updateStrategy:
    rollingUpdate:
      partition: 1
    type: RollingUpdate
status:
  currentReplicas: 2
  currentRevision: db-5c8b9d7f6
  observedGeneration: 2
  readyReplicas: 3
  replicas: 3
  updateRevision: db-7f4d6b8c9
  updatedReplicas: 1
"#;

    const STATEFULSET_REVISION_BEHIND: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata:
  generation: 2
  name: db
  namespace: shop
spec:
  replicas: 3
  updateStrategy:
    type: RollingUpdate
status:
  currentReplicas: 2
  currentRevision: db-5c8b9d7f6
  observedGeneration: 2
  readyReplicas: 3
  replicas: 3
  updateRevision: db-7f4d6b8c9
  updatedReplicas: 1
"#;

    const STATEFULSET_ON_DELETE: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata:
  generation: 2
  name: db
  namespace: shop
spec:
  replicas: 3
  updateStrategy:
    type: OnDelete
status:
  currentReplicas: 3
  currentRevision: db-5c8b9d7f6
  observedGeneration: 2
  readyReplicas: 3
  replicas: 3
  updateRevision: db-7f4d6b8c9
"#;

    const STATEFULSET_ON_DELETE_NOT_READY: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata:
  generation: 2
  name: db
  namespace: shop
spec:
  replicas: 3
  updateStrategy:
    type: OnDelete
status:
  observedGeneration: 2
  readyReplicas: 2
  replicas: 3
"#;

    const STATEFULSET_UNOBSERVED: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata:
  generation: 1
  name: db
  namespace: shop
spec:
  replicas: 1
status:
  replicas: 0
  availableReplicas: 0
"#;

    const DAEMONSET_HEALTHY: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata:
  generation: 1
  name: agent
  namespace: shop
spec:
  revisionHistoryLimit: 10
  selector:
    matchLabels:
      app: agent
  template:
    spec:
      containers:
      - image: fluent/fluent-bit:3.0
        name: agent
  updateStrategy:
    rollingUpdate:
      maxSurge: 0
      maxUnavailable: 1
    type: RollingUpdate
status:
  currentNumberScheduled: 3
  desiredNumberScheduled: 3
  numberAvailable: 3
  numberMisscheduled: 0
  numberReady: 3
  observedGeneration: 1
  updatedNumberScheduled: 3
"#;

    const DAEMONSET_UPDATING: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata:
  generation: 2
  name: agent
  namespace: shop
spec:
  updateStrategy:
    type: RollingUpdate
status:
  currentNumberScheduled: 3
  desiredNumberScheduled: 3
  numberAvailable: 3
  numberReady: 3
  observedGeneration: 2
  updatedNumberScheduled: 1
"#;

    const DAEMONSET_UNAVAILABLE: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata:
  generation: 1
  name: agent
  namespace: shop
spec:
  updateStrategy:
    type: RollingUpdate
status:
  currentNumberScheduled: 3
  desiredNumberScheduled: 3
  numberAvailable: 2
  numberReady: 2
  numberUnavailable: 1
  observedGeneration: 1
  updatedNumberScheduled: 3
"#;

    const DAEMONSET_ON_DELETE: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata:
  generation: 2
  name: agent
  namespace: shop
spec:
  updateStrategy:
    type: OnDelete
status:
  currentNumberScheduled: 3
  desiredNumberScheduled: 3
  numberAvailable: 3
  numberReady: 3
  observedGeneration: 2
  updatedNumberScheduled: 0
"#;

    const REPLICASET_HEALTHY: &str = r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  generation: 1
  name: web-6d4cf56db6
  namespace: shop
  ownerReferences:
  - apiVersion: apps/v1
    blockOwnerDeletion: true
    controller: true
    kind: Deployment
    name: web
    uid: 9a3f0a64-4c1e-4c52-9a5c-0c6fd5a0b7a1
spec:
  replicas: 2
  template:
    spec:
      containers:
      - image: nginx:1.27
        name: web
status:
  availableReplicas: 2
  fullyLabeledReplicas: 2
  observedGeneration: 1
  readyReplicas: 2
  replicas: 2
"#;

    const REPLICASET_FAILURE: &str = r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  generation: 1
  name: web-6d4cf56db6
  namespace: shop
spec:
  replicas: 2
status:
  conditions:
  - lastTransitionTime: "2024-05-01T10:00:00Z"
    message: 'pods "web-6d4cf56db6-" is forbidden: exceeded quota: compute'
    reason: FailedCreate
    status: "True"
    type: ReplicaFailure
  observedGeneration: 1
  replicas: 0
"#;

    const REPLICASET_STARTING: &str = r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  generation: 1
  name: web-6d4cf56db6
  namespace: shop
spec:
  replicas: 2
status:
  availableReplicas: 1
  observedGeneration: 1
  readyReplicas: 1
  replicas: 2
"#;

    const JOB_COMPLETE: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  generation: 1
  labels:
    batch.kubernetes.io/job-name: init
  name: init
  namespace: shop
spec:
  backoffLimit: 6
  completionMode: NonIndexed
  completions: 1
  parallelism: 1
  suspend: false
  template:
    spec:
      containers:
      - command: ["sh", "-c", "migrate up"]
        image: migrate:4
        name: migrate
      restartPolicy: Never
status:
  completionTime: "2024-05-01T10:01:00Z"
  conditions:
  - lastProbeTime: "2024-05-01T10:01:00Z"
    lastTransitionTime: "2024-05-01T10:01:00Z"
    message: Reached expected number of succeeded pods
    reason: CompletionsReached
    status: "True"
    type: SuccessCriteriaMet
  - lastProbeTime: "2024-05-01T10:01:00Z"
    lastTransitionTime: "2024-05-01T10:01:00Z"
    message: Reached expected number of succeeded pods
    reason: CompletionsReached
    status: "True"
    type: Complete
  ready: 0
  startTime: "2024-05-01T10:00:00Z"
  succeeded: 1
  terminating: 0
  uncountedTerminatedPods: {}
"#;

    /// Kubernetes 1.31+: SuccessCriteriaMet is set before Complete.
    const JOB_SUCCESS_CRITERIA_MET: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: init
  namespace: shop
spec:
  completions: 3
status:
  conditions:
  - reason: CompletionsReached
    status: "True"
    type: SuccessCriteriaMet
  succeeded: 3
  terminating: 1
"#;

    const JOB_FAILED: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: init
  namespace: shop
spec:
  backoffLimit: 2
  completions: 1
status:
  conditions:
  - message: Job has reached the specified backoff limit
    reason: BackoffLimitExceeded
    status: "True"
    type: FailureTarget
  - message: Job has reached the specified backoff limit
    reason: BackoffLimitExceeded
    status: "True"
    type: Failed
  failed: 3
  startTime: "2024-05-01T10:00:00Z"
  uncountedTerminatedPods:
    failed:
    - 0c1d2e3f-0000-4000-8000-000000000001
"#;

    const JOB_SUSPENDED: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: init
  namespace: shop
spec:
  completions: 1
  suspend: true
status:
  conditions:
  - message: Job suspended
    reason: JobSuspended
    status: "True"
    type: Suspended
"#;

    const JOB_RUNNING: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: init
  namespace: shop
spec:
  completions: 3
  parallelism: 1
  suspend: false
status:
  active: 1
  ready: 1
  startTime: "2024-05-01T10:00:00Z"
  succeeded: 1
  uncountedTerminatedPods:
    succeeded:
    - 0c1d2e3f-0000-4000-8000-000000000002
"#;

    const CRONJOB_ACTIVE: &str = r#"
apiVersion: batch/v1
kind: CronJob
metadata:
  name: backup
  namespace: shop
spec:
  concurrencyPolicy: Forbid
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - image: backup:1
            name: backup
          restartPolicy: OnFailure
  schedule: 0 3 * * *
  suspend: false
status:
  lastScheduleTime: "2024-05-01T03:00:00Z"
"#;

    const CRONJOB_SUSPENDED: &str = r#"
apiVersion: batch/v1
kind: CronJob
metadata:
  name: backup
  namespace: shop
spec:
  schedule: 0 3 * * *
  suspend: true
status: {}
"#;

    const PVC_BOUND: &str = r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  annotations:
    pv.kubernetes.io/bind-completed: "yes"
  finalizers:
  - kubernetes.io/pvc-protection
  name: data
  namespace: shop
spec:
  accessModes:
  - ReadWriteOnce
  resources:
    requests:
      storage: 10Gi
  storageClassName: standard
  volumeMode: Filesystem
  volumeName: pvc-1b2c3d4e
status:
  accessModes:
  - ReadWriteOnce
  capacity:
    storage: 10Gi
  phase: Bound
"#;

    const PVC_PENDING: &str = r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
  namespace: shop
spec:
  accessModes:
  - ReadWriteOnce
  resources:
    requests:
      storage: 10Gi
status:
  phase: Pending
"#;

    const PVC_LOST: &str = r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
  namespace: shop
spec:
  volumeName: pvc-1b2c3d4e
status:
  phase: Lost
"#;

    const SERVICE_CLUSTER_IP: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  clusterIP: 10.96.12.34
  clusterIPs:
  - 10.96.12.34
  internalTrafficPolicy: Cluster
  ipFamilies:
  - IPv4
  ports:
  - name: http
    port: 80
    protocol: TCP
    targetPort: 8080
  selector:
    app: web
  type: ClusterIP
status:
  loadBalancer: {}
"#;

    const SERVICE_LB_PENDING: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  allocateLoadBalancerNodePorts: true
  clusterIP: 10.96.12.35
  externalTrafficPolicy: Cluster
  ports:
  - nodePort: 31080
    port: 80
    protocol: TCP
    targetPort: 8080
  selector:
    app: web
  type: LoadBalancer
status:
  loadBalancer: {}
"#;

    const SERVICE_LB_READY: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  ports:
  - port: 80
    protocol: TCP
    targetPort: 8080
  type: LoadBalancer
status:
  loadBalancer:
    ingress:
    - ip: 203.0.113.10
      ipMode: VIP
"#;

    const INGRESS_READY: &str = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  generation: 1
  name: web
  namespace: shop
spec:
  ingressClassName: nginx
  rules:
  - host: shop.example.com
    http:
      paths:
      - backend:
          service:
            name: web
            port:
              number: 80
        path: /
        pathType: Prefix
status:
  loadBalancer:
    ingress:
    - hostname: lb-123.example.net
"#;

    const INGRESS_PENDING: &str = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  generation: 1
  name: web
  namespace: shop
spec:
  ingressClassName: nginx
status:
  loadBalancer: {}
"#;

    const PDB_HEALTHY: &str = r#"
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  generation: 1
  name: web
  namespace: shop
spec:
  minAvailable: 2
  selector:
    matchLabels:
      app: web
status:
  conditions:
  - message: ""
    observedGeneration: 1
    reason: SufficientPods
    status: "True"
    type: DisruptionAllowed
  currentHealthy: 3
  desiredHealthy: 2
  disruptionsAllowed: 1
  expectedPods: 3
  observedGeneration: 1
"#;

    const PDB_STARTING: &str = r#"
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  generation: 1
  name: web
  namespace: shop
spec:
  minAvailable: 2
status:
  conditions:
  - message: ""
    reason: InsufficientPods
    status: "False"
    type: DisruptionAllowed
  currentHealthy: 0
  desiredHealthy: 2
  disruptionsAllowed: 0
  expectedPods: 3
  observedGeneration: 1
"#;

    const PDB_UNOBSERVED: &str = r#"
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  generation: 1
  name: web
  namespace: shop
spec:
  minAvailable: 2
"#;

    const POD_READY: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web-6d4cf56db6-x2x7k
  namespace: shop
spec:
  containers:
  - image: nginx:1.27
    name: web
  nodeName: node-1
  restartPolicy: Always
status:
  conditions:
  - status: "True"
    type: PodReadyToStartContainers
  - status: "True"
    type: Initialized
  - status: "True"
    type: Ready
  - status: "True"
    type: ContainersReady
  - status: "True"
    type: PodScheduled
  containerStatuses:
  - containerID: containerd://4f5e6d
    image: docker.io/library/nginx:1.27
    imageID: docker.io/library/nginx@sha256:abcd
    lastState: {}
    name: web
    ready: true
    restartCount: 0
    started: true
    state:
      running:
        startedAt: "2024-05-01T10:00:10Z"
  hostIP: 10.0.0.11
  hostIPs:
  - ip: 10.0.0.11
  phase: Running
  podIP: 10.244.1.7
  podIPs:
  - ip: 10.244.1.7
  qosClass: BestEffort
  startTime: "2024-05-01T10:00:05Z"
"#;

    const POD_NOT_READY: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web-6d4cf56db6-x2x7k
  namespace: shop
spec:
  restartPolicy: Always
status:
  conditions:
  - message: 'containers with unready status: [web]'
    reason: ContainersNotReady
    status: "False"
    type: Ready
  - status: "True"
    type: PodScheduled
  containerStatuses:
  - name: web
    ready: false
    restartCount: 4
    state:
      waiting:
        reason: CrashLoopBackOff
  phase: Running
"#;

    const POD_UNSCHEDULABLE: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web-6d4cf56db6-x2x7k
  namespace: shop
spec:
  restartPolicy: Always
status:
  conditions:
  - message: '0/3 nodes are available: 3 Insufficient cpu.'
    reason: Unschedulable
    status: "False"
    type: PodScheduled
  phase: Pending
  qosClass: Burstable
"#;

    const POD_FAILED: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: init-abcde
  namespace: shop
spec:
  restartPolicy: Never
status:
  message: 'Pod ephemeral local storage usage exceeds the total limit of containers 1Gi.'
  phase: Failed
  reason: Evicted
"#;

    const POD_SUCCEEDED: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: init-abcde
  namespace: shop
spec:
  restartPolicy: Never
status:
  phase: Succeeded
"#;

    const CONFIGMAP: &str = r#"
apiVersion: v1
kind: ConfigMap
data:
  app.properties: |
    color=blue
    size=large
binaryData:
  logo.png: iVBORw0KGgo=
metadata:
  creationTimestamp: "2024-05-01T10:00:00Z"
  labels:
    app: web
  managedFields:
  - apiVersion: v1
    fieldsType: FieldsV1
    fieldsV1:
      f:data:
        f:app.properties: {}
    manager: computenest
    operation: Apply
  name: web-config
  namespace: shop
  resourceVersion: "48100"
  uid: 1d2e3f40-0000-4000-8000-000000000003
"#;

    const CERTIFICATE_READY: &str = r#"
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  generation: 1
  name: web-tls
  namespace: shop
spec:
  dnsNames:
  - shop.example.com
  issuerRef:
    kind: ClusterIssuer
    name: letsencrypt
  secretName: web-tls
status:
  conditions:
  - lastTransitionTime: "2024-05-01T10:02:00Z"
    message: Certificate is up to date and has not expired
    observedGeneration: 1
    reason: Ready
    status: "True"
    type: Ready
  notAfter: "2024-07-30T10:02:00Z"
"#;

    const CERTIFICATE_NOT_READY: &str = r#"
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  generation: 1
  name: web-tls
  namespace: shop
spec:
  secretName: web-tls
status:
  conditions:
  - message: Issuing certificate as Secret does not exist
    observedGeneration: 1
    reason: DoesNotExist
    status: "False"
    type: Ready
"#;

    const KSTATUS_STALLED: &str = r#"
apiVersion: example.com/v1
kind: Database
metadata:
  generation: 2
  name: orders
  namespace: shop
spec:
  size: small
status:
  conditions:
  - message: 'quota exceeded: 0 of 2 instances left'
    reason: QuotaExceeded
    status: "True"
    type: Stalled
  - message: ""
    reason: QuotaExceeded
    status: "False"
    type: Ready
  observedGeneration: 2
"#;

    const KSTATUS_RECONCILING: &str = r#"
apiVersion: example.com/v1
kind: Database
metadata:
  generation: 2
  name: orders
  namespace: shop
status:
  conditions:
  - message: provisioning storage
    reason: Provisioning
    status: "True"
    type: Reconciling
  observedGeneration: 2
"#;

    const KSTATUS_UNOBSERVED: &str = r#"
apiVersion: example.com/v1
kind: Database
metadata:
  generation: 3
  name: orders
  namespace: shop
status:
  conditions:
  - status: "True"
    type: Ready
  observedGeneration: 2
"#;

    const KSTATUS_NO_STATUS: &str = r#"
apiVersion: example.com/v1
kind: Database
metadata:
  generation: 1
  name: orders
  namespace: shop
spec:
  size: small
"#;

    /// Every fixture, with its (group, kind), for the properties over all.
    const FIXTURES: &[(&str, &str, &str)] = &[
        ("apps", "Deployment", DEPLOYMENT_HEALTHY),
        ("apps", "Deployment", DEPLOYMENT_UNAVAILABLE),
        ("apps", "Deployment", DEPLOYMENT_UPDATING),
        ("apps", "Deployment", DEPLOYMENT_OLD_TERMINATING),
        ("apps", "Deployment", DEPLOYMENT_UNOBSERVED),
        ("apps", "Deployment", DEPLOYMENT_NO_STATUS),
        ("apps", "Deployment", DEPLOYMENT_DEADLINE),
        ("apps", "Deployment", DEPLOYMENT_PAUSED),
        ("apps", "Deployment", DEPLOYMENT_DELETING),
        ("apps", "Deployment", DEPLOYMENT_MALFORMED),
        ("apps", "StatefulSet", STATEFULSET_HEALTHY),
        ("apps", "StatefulSet", STATEFULSET_NOT_READY),
        ("apps", "StatefulSet", STATEFULSET_PARTITION_DONE),
        ("apps", "StatefulSet", STATEFULSET_PARTITION_ROLLING),
        ("apps", "StatefulSet", STATEFULSET_REVISION_BEHIND),
        ("apps", "StatefulSet", STATEFULSET_ON_DELETE),
        ("apps", "StatefulSet", STATEFULSET_ON_DELETE_NOT_READY),
        ("apps", "StatefulSet", STATEFULSET_UNOBSERVED),
        ("apps", "DaemonSet", DAEMONSET_HEALTHY),
        ("apps", "DaemonSet", DAEMONSET_UPDATING),
        ("apps", "DaemonSet", DAEMONSET_UNAVAILABLE),
        ("apps", "DaemonSet", DAEMONSET_ON_DELETE),
        ("apps", "ReplicaSet", REPLICASET_HEALTHY),
        ("apps", "ReplicaSet", REPLICASET_FAILURE),
        ("apps", "ReplicaSet", REPLICASET_STARTING),
        ("batch", "Job", JOB_COMPLETE),
        ("batch", "Job", JOB_SUCCESS_CRITERIA_MET),
        ("batch", "Job", JOB_FAILED),
        ("batch", "Job", JOB_SUSPENDED),
        ("batch", "Job", JOB_RUNNING),
        ("batch", "CronJob", CRONJOB_ACTIVE),
        ("batch", "CronJob", CRONJOB_SUSPENDED),
        ("", "PersistentVolumeClaim", PVC_BOUND),
        ("", "PersistentVolumeClaim", PVC_PENDING),
        ("", "PersistentVolumeClaim", PVC_LOST),
        ("", "Service", SERVICE_CLUSTER_IP),
        ("", "Service", SERVICE_LB_PENDING),
        ("", "Service", SERVICE_LB_READY),
        ("networking.k8s.io", "Ingress", INGRESS_READY),
        ("networking.k8s.io", "Ingress", INGRESS_PENDING),
        ("policy", "PodDisruptionBudget", PDB_HEALTHY),
        ("policy", "PodDisruptionBudget", PDB_STARTING),
        ("policy", "PodDisruptionBudget", PDB_UNOBSERVED),
        ("", "Pod", POD_READY),
        ("", "Pod", POD_NOT_READY),
        ("", "Pod", POD_UNSCHEDULABLE),
        ("", "Pod", POD_FAILED),
        ("", "Pod", POD_SUCCEEDED),
        ("", "ConfigMap", CONFIGMAP),
        ("cert-manager.io", "Certificate", CERTIFICATE_READY),
        ("cert-manager.io", "Certificate", CERTIFICATE_NOT_READY),
        ("example.com", "Database", KSTATUS_STALLED),
        ("example.com", "Database", KSTATUS_RECONCILING),
        ("example.com", "Database", KSTATUS_UNOBSERVED),
        ("example.com", "Database", KSTATUS_NO_STATUS),
    ];

    // ---- assess ----

    #[test]
    fn deployment_rolled_out_is_healthy() {
        assert_eq!(
            check("apps", "Deployment", DEPLOYMENT_HEALTHY),
            is(Healthy, "")
        );
    }

    #[test]
    fn deployment_rollout_stages_are_progressing() {
        assert_eq!(
            check("apps", "Deployment", DEPLOYMENT_UNAVAILABLE),
            is(Progressing, "1 of 3 replicas available")
        );
        assert_eq!(
            check("apps", "Deployment", DEPLOYMENT_UPDATING),
            is(Progressing, "1 of 3 replicas updated")
        );
        assert_eq!(
            check("apps", "Deployment", DEPLOYMENT_OLD_TERMINATING),
            is(Progressing, "old replicas are terminating (1 left)")
        );
    }

    #[test]
    fn deployment_not_yet_observed_is_progressing() {
        let want = is(Progressing, "waiting for the rollout to be observed");
        assert_eq!(check("apps", "Deployment", DEPLOYMENT_UNOBSERVED), want);
        assert_eq!(check("apps", "Deployment", DEPLOYMENT_NO_STATUS), want);
    }

    #[test]
    fn deployment_past_its_progress_deadline_is_degraded() {
        assert_eq!(
            check("apps", "Deployment", DEPLOYMENT_DEADLINE),
            is(
                Degraded,
                "progress deadline exceeded: ReplicaSet \"web-7b9d8c5f4\" has timed out progressing."
            )
        );
    }

    #[test]
    fn paused_deployment_is_suspended_even_mid_rollout() {
        assert_eq!(check("apps", "Deployment", DEPLOYMENT_PAUSED).0, Suspended);
    }

    #[test]
    fn object_being_deleted_is_progressing() {
        assert_eq!(
            check("apps", "Deployment", DEPLOYMENT_DELETING),
            is(Progressing, "being deleted")
        );
        // Whatever the kind, even one judged by existence.
        let mut cm = parse(CONFIGMAP);
        cm["metadata"]["deletionTimestamp"] = "2024-05-01T11:00:00Z".into();
        assert_eq!(assess("", "ConfigMap", Some(&cm)).health, Progressing);
    }

    #[test]
    fn statefulset_rules() {
        let sts = |y| check("apps", "StatefulSet", y);
        assert_eq!(sts(STATEFULSET_HEALTHY), is(Healthy, ""));
        assert_eq!(
            sts(STATEFULSET_NOT_READY),
            is(Progressing, "1 of 3 replicas ready")
        );
        assert_eq!(sts(STATEFULSET_PARTITION_DONE), is(Healthy, ""));
        assert_eq!(
            sts(STATEFULSET_PARTITION_ROLLING),
            is(Progressing, "1 of 2 replicas updated (partition 1)")
        );
        assert_eq!(
            sts(STATEFULSET_REVISION_BEHIND),
            is(Progressing, "1 of 3 replicas updated")
        );
        assert_eq!(
            sts(STATEFULSET_UNOBSERVED),
            is(Progressing, "waiting for the rollout to be observed")
        );
    }

    #[test]
    fn statefulset_on_delete_is_healthy_once_ready() {
        let sts = |y| check("apps", "StatefulSet", y);
        // Revisions differ, but OnDelete waits for someone to delete pods.
        assert_eq!(sts(STATEFULSET_ON_DELETE), is(Healthy, ""));
        assert_eq!(
            sts(STATEFULSET_ON_DELETE_NOT_READY),
            is(Progressing, "2 of 3 replicas ready")
        );
    }

    #[test]
    fn daemonset_rules() {
        let ds = |y| check("apps", "DaemonSet", y);
        assert_eq!(ds(DAEMONSET_HEALTHY), is(Healthy, ""));
        assert_eq!(
            ds(DAEMONSET_UPDATING),
            is(Progressing, "1 of 3 pods updated")
        );
        assert_eq!(
            ds(DAEMONSET_UNAVAILABLE),
            is(Progressing, "2 of 3 pods available")
        );
        assert_eq!(ds(DAEMONSET_ON_DELETE), is(Healthy, ""));
        let mut unobserved = parse(DAEMONSET_HEALTHY);
        unobserved["metadata"]["generation"] = 2.into();
        assert_eq!(
            assess("apps", "DaemonSet", Some(&unobserved)).health,
            Progressing
        );
    }

    #[test]
    fn replicaset_rules() {
        let rs = |y| check("apps", "ReplicaSet", y);
        assert_eq!(rs(REPLICASET_HEALTHY), is(Healthy, ""));
        assert_eq!(
            rs(REPLICASET_FAILURE),
            is(
                Degraded,
                "pods \"web-6d4cf56db6-\" is forbidden: exceeded quota: compute"
            )
        );
        assert_eq!(
            rs(REPLICASET_STARTING),
            is(Progressing, "1 of 2 replicas available")
        );
    }

    #[test]
    fn job_rules() {
        let job = |y| check("batch", "Job", y);
        assert_eq!(job(JOB_COMPLETE), is(Healthy, ""));
        assert_eq!(job(JOB_SUCCESS_CRITERIA_MET), is(Healthy, ""));
        assert_eq!(
            job(JOB_FAILED),
            is(
                Degraded,
                "BackoffLimitExceeded: Job has reached the specified backoff limit"
            )
        );
        assert_eq!(job(JOB_SUSPENDED), is(Suspended, "suspended"));
        assert_eq!(
            job(JOB_RUNNING),
            is(Progressing, "running: 1 of 3 succeeded")
        );
    }

    #[test]
    fn cronjob_rules() {
        assert_eq!(check("batch", "CronJob", CRONJOB_ACTIVE), is(Healthy, ""));
        assert_eq!(
            check("batch", "CronJob", CRONJOB_SUSPENDED),
            is(Suspended, "suspended")
        );
    }

    #[test]
    fn pvc_rules() {
        let pvc = |y| check("", "PersistentVolumeClaim", y);
        assert_eq!(pvc(PVC_BOUND), is(Healthy, ""));
        assert_eq!(pvc(PVC_PENDING), is(Progressing, "waiting to be bound"));
        assert_eq!(pvc(PVC_LOST).0, Degraded);
    }

    #[test]
    fn service_rules() {
        let svc = |y| check("", "Service", y);
        assert_eq!(svc(SERVICE_CLUSTER_IP), is(Healthy, ""));
        assert_eq!(
            svc(SERVICE_LB_PENDING),
            is(Progressing, "waiting for a load balancer address")
        );
        assert_eq!(svc(SERVICE_LB_READY), is(Healthy, ""));
    }

    #[test]
    fn ingress_rules() {
        let ing = |y| check("networking.k8s.io", "Ingress", y);
        assert_eq!(ing(INGRESS_READY), is(Healthy, ""));
        assert_eq!(
            ing(INGRESS_PENDING),
            is(Progressing, "waiting for an address")
        );
    }

    #[test]
    fn pdb_rules() {
        let pdb = |y| check("policy", "PodDisruptionBudget", y);
        assert_eq!(pdb(PDB_HEALTHY), is(Healthy, ""));
        // Never Degraded: its pods may simply still be starting.
        assert_eq!(pdb(PDB_STARTING), is(Progressing, "0 of 2 pods healthy"));
        assert_eq!(pdb(PDB_UNOBSERVED).0, Progressing);
    }

    #[test]
    fn pod_rules() {
        let pod = |y| check("", "Pod", y);
        assert_eq!(pod(POD_READY), is(Healthy, ""));
        assert_eq!(pod(POD_SUCCEEDED), is(Healthy, ""));
        assert_eq!(
            pod(POD_NOT_READY),
            is(Progressing, "containers with unready status: [web]")
        );
        assert_eq!(
            pod(POD_UNSCHEDULABLE),
            is(Progressing, "0/3 nodes are available: 3 Insufficient cpu.")
        );
        assert_eq!(
            pod(POD_FAILED),
            is(
                Degraded,
                "Pod ephemeral local storage usage exceeds the total limit of containers 1Gi."
            )
        );
    }

    #[test]
    fn existence_kinds_are_healthy_when_present() {
        assert_eq!(check("", "ConfigMap", CONFIGMAP), is(Healthy, ""));
        let role = parse(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: reader\n  namespace: shop\nrules: []\n",
        );
        assert_eq!(
            assess("rbac.authorization.k8s.io", "Role", Some(&role)).health,
            Healthy
        );
    }

    #[test]
    fn by_existence_lists_only_the_status_less_kinds() {
        for (g, k) in [
            ("", "ConfigMap"),
            ("", "Secret"),
            ("", "ServiceAccount"),
            ("", "Endpoints"),
            ("", "LimitRange"),
            ("", "ResourceQuota"),
            ("rbac.authorization.k8s.io", "Role"),
            ("rbac.authorization.k8s.io", "RoleBinding"),
            ("networking.k8s.io", "NetworkPolicy"),
        ] {
            assert!(by_existence(g, k), "{g}/{k}");
        }
        for (g, k) in [
            ("apps", "Deployment"),
            ("", "Service"),
            ("", "PersistentVolumeClaim"),
            // The group matters, not just the kind.
            ("apps", "ConfigMap"),
            ("", "Role"),
            ("networking.k8s.io", "Ingress"),
        ] {
            assert!(!by_existence(g, k), "{g}/{k}");
        }
    }

    #[test]
    fn other_kinds_follow_kstatus() {
        let cert = |y| check("cert-manager.io", "Certificate", y);
        assert_eq!(cert(CERTIFICATE_READY), is(Healthy, ""));
        assert_eq!(
            cert(CERTIFICATE_NOT_READY),
            is(Progressing, "Issuing certificate as Secret does not exist")
        );
        let db = |y| check("example.com", "Database", y);
        assert_eq!(
            db(KSTATUS_STALLED),
            is(Degraded, "quota exceeded: 0 of 2 instances left")
        );
        assert_eq!(
            db(KSTATUS_RECONCILING),
            is(Progressing, "provisioning storage")
        );
        assert_eq!(
            db(KSTATUS_UNOBSERVED),
            is(Progressing, "waiting for the rollout to be observed")
        );
        assert_eq!(db(KSTATUS_NO_STATUS), is(Healthy, ""));
    }

    #[test]
    fn absent_object_is_missing() {
        for (g, k) in [("apps", "Deployment"), ("", "ConfigMap"), ("x.io", "Thing")] {
            assert_eq!(
                assess(g, k, None),
                Assessment {
                    health: Missing,
                    message: "not found".into()
                }
            );
        }
    }

    #[test]
    fn malformed_values_read_as_absent() {
        // replicas "three" defaults to 1; "many" replicas reads as 0;
        // paused "yes" is not true; conditions not a list are none.
        assert_eq!(
            check("apps", "Deployment", DEPLOYMENT_MALFORMED),
            is(Healthy, "")
        );
        // A string observedGeneration is no observedGeneration.
        let mut d = parse(DEPLOYMENT_HEALTHY);
        d["status"]["observedGeneration"] = "2".into();
        assert_eq!(
            assess("apps", "Deployment", Some(&d)).message,
            "waiting for the rollout to be observed"
        );
        // Conditions that are not objects are skipped, not a panic.
        let mut job = parse(JOB_RUNNING);
        job["status"]["conditions"] = serde_json::json!(["Failed", 3, null, {"type": 7}]);
        assert_eq!(assess("batch", "Job", Some(&job)).health, Progressing);
    }

    #[test]
    fn non_object_input_never_panics() {
        let kinds = FIXTURES
            .iter()
            .map(|(g, k, _)| (*g, *k))
            .chain([("example.com", "Database")]);
        for (g, k) in kinds {
            for v in [
                Value::Null,
                Value::from("Deployment"),
                Value::from(3),
                serde_json::json!([1, 2]),
                serde_json::json!({"metadata": "x", "spec": [], "status": 5}),
            ] {
                let a = assess(g, k, Some(&v));
                assert_ne!(a.health, Missing, "{g}/{k} {v}");
                let mut trimmed = v.clone();
                trim(g, k, &mut trimmed);
                assert_eq!(assess(g, k, Some(&trimmed)), a, "{g}/{k} {v}");
            }
        }
    }

    // ---- trim ----

    #[test]
    fn trim_keeps_what_assess_reads() {
        for (g, k, y) in FIXTURES {
            let full = parse(y);
            let mut trimmed = full.clone();
            trim(g, k, &mut trimmed);
            assert_eq!(
                assess(g, k, Some(&trimmed)),
                assess(g, k, Some(&full)),
                "{g}/{k}:\n{y}"
            );
        }
    }

    #[test]
    fn trim_drops_data_and_managed_fields() {
        let mut cm = parse(CONFIGMAP);
        trim("", "ConfigMap", &mut cm);
        assert_eq!(
            cm,
            serde_json::json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "labels": {"app": "web"},
                    "name": "web-config",
                    "namespace": "shop",
                    "resourceVersion": "48100",
                    "uid": "1d2e3f40-0000-4000-8000-000000000003",
                },
            })
        );
    }

    #[test]
    fn trim_keeps_identity_and_only_the_spec_fields_read() {
        let mut d = parse(DEPLOYMENT_HEALTHY);
        let status = d["status"].clone();
        trim("apps", "Deployment", &mut d);
        let meta = &d["metadata"];
        for key in [
            "name",
            "namespace",
            "uid",
            "labels",
            "generation",
            "resourceVersion",
        ] {
            assert!(meta.get(key).is_some(), "metadata.{key} kept");
        }
        assert!(meta.get("annotations").is_none());
        assert!(meta.get("managedFields").is_none());
        assert!(meta.get("creationTimestamp").is_none());
        assert_eq!(d["spec"], serde_json::json!({"replicas": 3}));
        for key in [
            "replicas",
            "updatedReplicas",
            "availableReplicas",
            "observedGeneration",
        ] {
            assert_eq!(d["status"][key], status[key], "status.{key} kept");
        }

        let mut deleting = parse(DEPLOYMENT_DELETING);
        trim("apps", "Deployment", &mut deleting);
        assert_eq!(
            deleting["metadata"]["deletionTimestamp"],
            "2024-05-01T11:00:00Z"
        );
        assert!(deleting["metadata"].get("finalizers").is_none());

        let mut sts = parse(STATEFULSET_PARTITION_DONE);
        trim("apps", "StatefulSet", &mut sts);
        assert_eq!(
            sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"],
            2
        );
    }

    #[test]
    fn trim_drops_unread_status_lists_and_whole_specs() {
        let mut pod = parse(POD_READY);
        trim("", "Pod", &mut pod);
        let status = pod["status"].as_object().expect("status kept");
        assert!(status.get("containerStatuses").is_none());
        assert!(status.get("podIPs").is_none());
        assert!(status.get("conditions").is_some());
        // No Pod rule reads its spec.
        assert!(pod.get("spec").is_none());

        let mut job = parse(JOB_RUNNING);
        trim("batch", "Job", &mut job);
        assert!(job["status"].get("uncountedTerminatedPods").is_none());
        assert_eq!(
            job["spec"],
            serde_json::json!({"completions": 3, "suspend": false})
        );
    }

    #[test]
    fn trim_accepts_what_the_watch_cache_passes() {
        // The controller hands over `{"metadata": {}, "spec": null, "status": null}`
        // for an object without spec or status.
        let mut body = serde_json::json!({"metadata": {}, "spec": null, "status": null});
        trim("apps", "Deployment", &mut body);
        assert_eq!(body, serde_json::json!({"metadata": {}}));
    }

    // ---- rollup ----

    fn obj(what: &str, health: HealthState, message: &str) -> (String, Assessment) {
        (what.to_string(), Assessment::new(health, message))
    }

    fn at_secs(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_714_557_600 + s).expect("in range")
    }

    const DEADLINE: Duration = Duration::from_secs(600);

    #[test]
    fn rollup_of_healthy_and_suspended_is_healthy() {
        let objects = [
            obj("Deployment shop/web", Healthy, ""),
            obj("CronJob shop/backup", Suspended, "suspended"),
        ];
        assert_eq!(
            rollup(&objects, Some(at_secs(0)), at_secs(10_000), DEADLINE),
            Rollup::Healthy
        );
        assert_eq!(rollup(&[], None, at_secs(0), DEADLINE), Rollup::Healthy);
    }

    #[test]
    fn rollup_within_deadline_is_progressing_with_time_left() {
        let objects = [
            obj(
                "Deployment shop/web",
                Progressing,
                "1 of 3 replicas available",
            ),
            obj("ConfigMap shop/web-config", Healthy, ""),
            obj("Job shop/init", Progressing, "running"),
        ];
        assert_eq!(
            rollup(&objects, Some(at_secs(0)), at_secs(100), DEADLINE),
            Rollup::Progressing {
                message: "Deployment shop/web: Progressing: 1 of 3 replicas available; \
                          Job shop/init: Progressing: running"
                    .into(),
                retry_in: Duration::from_secs(500),
            }
        );
        // Not waiting yet: the whole deadline is left.
        assert!(matches!(
            rollup(&objects, None, at_secs(100), DEADLINE),
            Rollup::Progressing { retry_in, .. } if retry_in == DEADLINE
        ));
        // A start in the future (clock skew) is taken as now.
        assert!(matches!(
            rollup(&objects, Some(at_secs(200)), at_secs(100), DEADLINE),
            Rollup::Progressing { retry_in, .. } if retry_in == DEADLINE
        ));
    }

    #[test]
    fn rollup_counts_unknown_as_progressing() {
        let objects = [obj("Widget shop/w", Unknown, "not observed yet")];
        assert_eq!(
            rollup(&objects, Some(at_secs(0)), at_secs(1), DEADLINE),
            Rollup::Progressing {
                message: "Widget shop/w: Unknown: not observed yet".into(),
                retry_in: Duration::from_secs(599),
            }
        );
    }

    #[test]
    fn rollup_past_deadline_is_stalled() {
        let objects = [
            obj(
                "Deployment shop/web",
                Progressing,
                "1 of 3 replicas available",
            ),
            obj("Service shop/web", Healthy, ""),
        ];
        assert_eq!(
            rollup(&objects, Some(at_secs(0)), at_secs(700), DEADLINE),
            Rollup::Stalled {
                reason: "ProgressDeadlineExceeded",
                message: "not healthy within the progress deadline of 600s: \
                          Deployment shop/web: Progressing: 1 of 3 replicas available"
                    .into(),
            }
        );
        // Exactly at the deadline counts as past it.
        assert!(matches!(
            rollup(&objects, Some(at_secs(0)), at_secs(600), DEADLINE),
            Rollup::Stalled {
                reason: "ProgressDeadlineExceeded",
                ..
            }
        ));
    }

    #[test]
    fn rollup_degraded_beats_missing_and_deadline() {
        let objects = [
            obj(
                "Deployment shop/web",
                Progressing,
                "1 of 3 replicas available",
            ),
            obj("ConfigMap shop/web-config", Missing, "not found"),
            obj("Job shop/init", Degraded, "BackoffLimitExceeded"),
        ];
        assert_eq!(
            rollup(&objects, Some(at_secs(0)), at_secs(700), DEADLINE),
            Rollup::Stalled {
                reason: "Degraded",
                // The cause first, then the rest.
                message: "Job shop/init: Degraded: BackoffLimitExceeded; \
                          ConfigMap shop/web-config: Missing: not found; \
                          Deployment shop/web: Progressing: 1 of 3 replicas available"
                    .into(),
            }
        );
        // Without the Degraded one, Missing wins, even within the deadline.
        assert!(matches!(
            rollup(&objects[..2], Some(at_secs(0)), at_secs(1), DEADLINE),
            Rollup::Stalled {
                reason: "Missing",
                ..
            }
        ));
    }

    #[test]
    fn rollup_names_at_most_five() {
        let objects: Vec<_> = (1..=7)
            .map(|i| obj(&format!("Pod shop/p{i}"), Progressing, "not ready"))
            .collect();
        let Rollup::Progressing { message, .. } =
            rollup(&objects, Some(at_secs(0)), at_secs(1), DEADLINE)
        else {
            panic!("expected Progressing");
        };
        assert!(message.contains("Pod shop/p5: Progressing"), "{message}");
        assert!(!message.contains("p6"), "{message}");
        assert!(message.ends_with("; and 2 more"), "{message}");
        assert_eq!(message.matches("Pod shop/").count(), 5);
        // Exactly five: all named, nothing more.
        let Rollup::Progressing { message, .. } =
            rollup(&objects[..5], Some(at_secs(0)), at_secs(1), DEADLINE)
        else {
            panic!("expected Progressing");
        };
        assert!(
            message.ends_with("Pod shop/p5: Progressing: not ready"),
            "{message}"
        );
    }

    #[test]
    fn rollup_shortens_long_object_messages() {
        let long = "x".repeat(1000);
        let objects = [obj("Widget shop/w", Degraded, &long)];
        let Rollup::Stalled { message, .. } = rollup(&objects, None, at_secs(0), DEADLINE) else {
            panic!("expected Stalled");
        };
        assert!(message.chars().count() < 300, "{}", message.len());
        assert!(message.ends_with('…'));
    }

    #[test]
    fn trim_bounds_a_status_whoever_wrote_it() {
        let long = "x".repeat(100_000);
        let conditions: Vec<Value> = (0..1000)
            .map(|i| serde_json::json!({"type": format!("T{i}"), "status": "True", "message": long}))
            .chain(std::iter::once(serde_json::json!({
                "type": "Ready", "status": "False", "message": long, "lastTransitionTime": "2026-01-01T00:00:00Z"
            })))
            .collect();
        let mut obj = serde_json::json!({
            "apiVersion": "example.com/v1", "kind": "Database",
            "metadata": {"name": "db", "generation": 1, "annotations": {"big": long}},
            "status": {"observedGeneration": 1, "conditions": conditions, "blob": long,
                       "loadBalancer": {"ingress": vec![serde_json::json!({"ip": "10.0.0.1"}); 1000]}}
        });
        let before = assess("example.com", "Database", Some(&obj));
        trim("example.com", "Database", &mut obj);
        assert!(
            obj.to_string().len() < 4096,
            "{} bytes kept",
            obj.to_string().len()
        );
        assert_eq!(
            obj["status"]["conditions"].as_array().map(Vec::len),
            Some(1)
        );
        assert!(obj["status"].get("blob").is_none());
        let after = assess("example.com", "Database", Some(&obj));
        assert_eq!(after.health, before.health);
        assert_eq!(after.health, HealthState::Progressing);
        assert!(after.message.starts_with("xxx"));
    }
}
