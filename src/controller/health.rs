//! Health of an instance's objects, read from the watch-fed caches of what
//! was provisioned (`provisioned`) and judged by the pure rules of
//! `domain::health`. A status change of a watched object routes its
//! instance here, so health is current without polling.

use super::drift::{Target, object_key};
use super::{Context, Error, MANAGED_BY, MANAGED_BY_LABEL, is_not_found};
use crate::api::HealthState;
use crate::domain::health::{self, Assessment};
use crate::domain::provision::labels;
use kube::api::{Api, DynamicObject};
use serde_json::Value;

/// The generation a recorded version ("g7") names, if it names one.
fn recorded_generation(version: &str) -> Option<i64> {
    version.strip_prefix('g')?.parse().ok()
}

/// Whether `live` carries this instance's proof of creation: the UID label
/// and the managed-by label (health is never read from someone else's object).
fn ours(live: &Value, uid: &str) -> bool {
    let l = &live["metadata"]["labels"];
    l[labels::INSTANCE_UID].as_str() == Some(uid)
        && l[MANAGED_BY_LABEL].as_str() == Some(MANAGED_BY)
}

/// The health of each object of instance `uid`, in the order given, each
/// named `Kind namespace/name`. `just_wrote`: the objects were written in
/// this reconcile, so a cache that has not seen them yet is no sign that
/// they are gone (they are judged as written: fresh, with no status).
pub async fn assess(
    ctx: &Context,
    uid: &str,
    targets: &[Target<'_>],
    just_wrote: bool,
) -> Result<Vec<(String, Assessment)>, Error> {
    let mut out = Vec::with_capacity(targets.len());
    for t in targets {
        let (group, kind) = (t.ar.group.as_str(), t.ar.kind.as_str());
        let what = format!("{kind} {}/{}", t.namespace, t.name);
        // Secrets are not watched or read (the controller has no read
        // access to them): one that was written is taken as there.
        if !ctx.provisioned.watches(group, kind) {
            out.push((what, healthy()));
            continue;
        }
        if !ctx.provisioned.is_ready(group, kind) {
            out.push((what, unknown("not observed yet")));
            continue;
        }
        let recorded = ctx
            .drift
            .recorded(uid, &object_key(t.ar, t.namespace, t.name));
        let cached = ctx
            .provisioned
            .object(group, kind, t.namespace, t.name)
            .filter(|o| {
                // A cache behind the controller's own last write would
                // report the health of what was there before.
                let seen = o["metadata"]["generation"].as_i64();
                let wrote = recorded.as_deref().and_then(recorded_generation);
                !matches!((seen, wrote), (Some(s), Some(w)) if s < w)
            });
        let assessment = match cached {
            Some(o) if ours(&o, uid) => health::assess(group, kind, Some(&o)),
            Some(_) => degraded("replaced by an object this instance did not create"),
            None if just_wrote => health::assess(group, kind, Some(t.body)),
            // Not in the cache, and not just written: one read tells
            // whether it is gone or the cache is behind.
            None => {
                let api =
                    Api::<DynamicObject>::namespaced_with(ctx.client.clone(), t.namespace, t.ar);
                match api.get_opt(t.name).await {
                    Ok(Some(live)) => {
                        let mut live = serde_json::to_value(&live)?;
                        if ours(&live, uid) {
                            health::trim(group, kind, &mut live);
                            health::assess(group, kind, Some(&live))
                        } else {
                            degraded("replaced by an object this instance did not create")
                        }
                    }
                    Ok(None) => health::assess(group, kind, None),
                    Err(e) if is_not_found(&e) => health::assess(group, kind, None),
                    Err(e) => return Err(e.into()),
                }
            }
        };
        out.push((what, assessment));
    }
    Ok(out)
}

fn healthy() -> Assessment {
    Assessment {
        health: HealthState::Healthy,
        message: String::new(),
    }
}

fn unknown(why: &str) -> Assessment {
    Assessment {
        health: HealthState::Unknown,
        message: why.to_string(),
    }
}

fn degraded(why: &str) -> Assessment {
    Assessment {
        health: HealthState::Degraded,
        message: why.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_generations_are_compared() {
        assert_eq!(recorded_generation("g12"), Some(12));
        assert_eq!(recorded_generation("rv12"), None);
        assert_eq!(recorded_generation("gx"), None);
    }

    #[test]
    fn an_object_is_ours_only_with_both_labels() {
        let with = |l: Value| serde_json::json!({"metadata": {"labels": l}});
        let both =
            with(serde_json::json!({labels::INSTANCE_UID: "u", MANAGED_BY_LABEL: MANAGED_BY}));
        assert!(ours(&both, "u"));
        assert!(!ours(&both, "v"));
        assert!(!ours(
            &with(serde_json::json!({labels::INSTANCE_UID: "u"})),
            "u"
        ));
    }
}
