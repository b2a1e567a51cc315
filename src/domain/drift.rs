//! Drift: pure, no API calls. Which mode applies to an instance, whether a
//! live object still holds what the controller wrote, and how long to wait
//! when something keeps undoing the repairs.

use crate::api::{DriftDetection, IgnoreRule, SyncPolicy};
use serde_json::Value;
use std::time::Duration;

/// Annotation on a live object: `ignore` keeps drift detection off that object.
pub const OPT_OUT_ANNOTATION: &str = "computenest.dev/drift";

/// The mode of an instance. Fully managed (`managed`): the seller's product
/// decides (the customer does not own those objects), Enabled by default.
/// Customer-owned: the customer's instance decides, then the product, Warn
/// by default (the customer owns that namespace and may change its objects).
pub fn effective_mode(
    managed: bool,
    instance: &SyncPolicy,
    product: &SyncPolicy,
) -> DriftDetection {
    if managed {
        product.drift_detection.unwrap_or(DriftDetection::Enabled)
    } else {
        instance
            .drift_detection
            .or(product.drift_detection)
            .unwrap_or(DriftDetection::Warn)
    }
}

/// The JSON pointers ignored on one object, from the product's and the
/// instance's rules together.
pub fn ignored_pointers<'a>(
    rules: impl IntoIterator<Item = &'a IgnoreRule>,
    api_version: &str,
    kind: &str,
    name: &str,
) -> Vec<&'a str> {
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    rules
        .into_iter()
        .filter(|r| {
            let (rg, rk) = r.kind.rsplit_once('/').unwrap_or(("", r.kind.as_str()));
            rg == group && rk == kind && r.name.as_deref().is_none_or(|n| n == name)
        })
        .flat_map(|r| r.json_pointers.iter().map(String::as_str))
        .collect()
}

/// Where a live object no longer holds what was written (`desired`): the
/// JSON pointer of the first difference, or None. Only what the controller
/// wrote counts: fields the API server or others added are not drift, and
/// `ignored` pointers (and everything under them) are skipped.
pub fn first_difference(desired: &Value, live: &Value, ignored: &[&str]) -> Option<String> {
    fn walk(d: &Value, l: &Value, path: &mut String, ignored: &[&str]) -> Option<String> {
        if ignored.contains(&path.as_str()) {
            return None;
        }
        match (d, l) {
            (Value::Object(dm), Value::Object(lm)) => {
                for (k, dv) in dm {
                    let len = path.len();
                    path.push('/');
                    path.push_str(&k.replace('~', "~0").replace('/', "~1"));
                    let found = match lm.get(k) {
                        Some(lv) => walk(dv, lv, path, ignored),
                        // A null written is the same as nothing there.
                        None if dv.is_null() => None,
                        None if ignored.contains(&path.as_str()) => None,
                        None => Some(path.clone()),
                    };
                    path.truncate(len);
                    if found.is_some() {
                        return found;
                    }
                }
                None
            }
            (Value::Array(da), Value::Array(la)) => {
                if da.len() != la.len() {
                    return Some(path.clone());
                }
                for (i, (dv, lv)) in da.iter().zip(la).enumerate() {
                    let len = path.len();
                    path.push('/');
                    path.push_str(&i.to_string());
                    let found = walk(dv, lv, path, ignored);
                    path.truncate(len);
                    if found.is_some() {
                        return found;
                    }
                }
                None
            }
            (Value::Number(a), Value::Number(b)) => {
                (a.as_f64() != b.as_f64()).then(|| path.clone())
            }
            (a, b) => (a != b).then(|| path.clone()),
        }
    }
    let mut path = String::new();
    // Only the fields the controller writes in metadata count: labels and
    // annotations it set (others may add their own), and ownerReferences.
    let mut d = desired.clone();
    if let Some(m) = d.get_mut("metadata").and_then(Value::as_object_mut) {
        m.retain(|k, _| matches!(k.as_str(), "labels" | "annotations" | "ownerReferences"));
    }
    if let Some(m) = d.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
        m.remove("status");
    }
    walk(&d, live, &mut path, ignored)
}

/// Whether a live object's annotations opt it out of drift detection.
pub fn opted_out(live: &Value) -> bool {
    live.pointer("/metadata/annotations")
        .and_then(|a| a.get(OPT_OUT_ANNOTATION))
        .and_then(Value::as_str)
        == Some("ignore")
}

/// A repair body that leaves ignored fields as they are live: the repair
/// rewrites what drifted, never what the rules say someone else manages.
pub fn keep_ignored(body: &mut Value, live: &Value, ignored: &[&str]) {
    for p in ignored {
        match (live.pointer(p), body.pointer_mut(p)) {
            (Some(l), Some(b)) => *b = l.clone(),
            // Not live: leave it out of the repair rather than set it back.
            (None, Some(_)) => remove_pointer(body, p),
            _ => {}
        }
    }
}

fn remove_pointer(v: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let key = last.replace("~1", "/").replace("~0", "~");
    if let Some(Value::Object(m)) = v.pointer_mut(parent) {
        m.remove(&key);
    }
}

/// How long to wait before repairing again when the last repairs were
/// undone: nothing for the first three, then 2 s doubling up to 5 minutes.
pub fn fight_delay(repairs_in_a_row: u32) -> Duration {
    if repairs_in_a_row <= 3 {
        return Duration::ZERO;
    }
    let exp = (repairs_in_a_row - 3).min(9);
    Duration::from_secs((1u64 << exp).min(300))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sync(mode: Option<DriftDetection>) -> SyncPolicy {
        SyncPolicy {
            drift_detection: mode,
            ignore: vec![],
        }
    }

    #[test]
    fn the_owner_decides_the_mode() {
        use DriftDetection::*;
        assert_eq!(effective_mode(true, &sync(None), &sync(None)), Enabled);
        // The customer cannot turn off repair of resources it does not own.
        assert_eq!(
            effective_mode(true, &sync(Some(Disabled)), &sync(None)),
            Enabled
        );
        assert_eq!(effective_mode(true, &sync(None), &sync(Some(Warn))), Warn);
        assert_eq!(effective_mode(false, &sync(None), &sync(None)), Warn);
        assert_eq!(
            effective_mode(false, &sync(None), &sync(Some(Enabled))),
            Enabled
        );
        assert_eq!(
            effective_mode(false, &sync(Some(Disabled)), &sync(Some(Enabled))),
            Disabled
        );
    }

    #[test]
    fn only_what_was_written_counts_as_drift() {
        let desired = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "n", "labels": {"a": "1"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
        });
        let mut live = desired.clone();
        live["metadata"]["labels"]["added-by-someone"] = json!("x");
        live["metadata"]["resourceVersion"] = json!("7");
        live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!("Always");
        live["status"] = json!({"replicas": 2});
        assert_eq!(first_difference(&desired, &live, &[]), None);
        live["spec"]["replicas"] = json!(5);
        assert_eq!(
            first_difference(&desired, &live, &[]).as_deref(),
            Some("/spec/replicas")
        );
        assert_eq!(first_difference(&desired, &live, &["/spec/replicas"]), None);
        live["spec"]["replicas"] = json!(2.0);
        assert_eq!(first_difference(&desired, &live, &[]), None);
        live["spec"]["template"]["spec"]["containers"][0]["image"] = json!("evil");
        assert_eq!(
            first_difference(&desired, &live, &[]).as_deref(),
            Some("/spec/template/spec/containers/0/image")
        );
        let mut unlabelled = desired.clone();
        unlabelled["metadata"]["labels"] = json!({});
        assert_eq!(
            first_difference(&desired, &unlabelled, &[]).as_deref(),
            Some("/metadata/labels/a")
        );
        let mut gone = desired.clone();
        gone["spec"].as_object_mut().unwrap().remove("replicas");
        assert_eq!(
            first_difference(&desired, &gone, &[]).as_deref(),
            Some("/spec/replicas")
        );
    }

    #[test]
    fn ignore_rules_match_by_group_kind_and_name() {
        let rules = vec![
            IgnoreRule {
                kind: "apps/Deployment".into(),
                name: None,
                json_pointers: vec!["/spec/replicas".into()],
            },
            IgnoreRule {
                kind: "ConfigMap".into(),
                name: Some("settings".into()),
                json_pointers: vec!["/data/tuning".into()],
            },
        ];
        assert_eq!(
            ignored_pointers(&rules, "apps/v1", "Deployment", "web"),
            ["/spec/replicas"]
        );
        assert!(ignored_pointers(&rules, "v1", "ConfigMap", "other").is_empty());
        assert_eq!(
            ignored_pointers(&rules, "v1", "ConfigMap", "settings"),
            ["/data/tuning"]
        );
        assert!(ignored_pointers(&rules, "example.com/v1", "Deployment", "web").is_empty());
    }

    #[test]
    fn a_repair_keeps_ignored_fields_as_they_are_live() {
        let mut body = json!({"spec": {"replicas": 2, "paused": false}});
        let live = json!({"spec": {"replicas": 7}});
        keep_ignored(&mut body, &live, &["/spec/replicas", "/spec/paused"]);
        assert_eq!(body, json!({"spec": {"replicas": 7}}));
        assert!(opted_out(
            &json!({"metadata": {"annotations": {OPT_OUT_ANNOTATION: "ignore"}}})
        ));
        assert!(!opted_out(&json!({"metadata": {}})));
    }

    #[test]
    fn fights_back_off_to_five_minutes() {
        assert_eq!(fight_delay(1), Duration::ZERO);
        assert_eq!(fight_delay(3), Duration::ZERO);
        assert_eq!(fight_delay(4), Duration::from_secs(2));
        assert_eq!(fight_delay(5), Duration::from_secs(4));
        assert_eq!(fight_delay(20), Duration::from_secs(300));
    }
}
