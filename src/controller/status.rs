//! Status helpers shared by the controllers: conditions that keep their
//! transition time, and status writes that happen only when something changed.

use crate::api::{Condition, FIELD_MANAGER};
use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// Current time, to the second, as Kubernetes writes it.
pub fn now_rfc3339() -> String {
    Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Builds a condition; keeps the previous transition time when the status did not change.
pub fn condition(
    previous: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(now_rfc3339);
    Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message: message.into(),
        last_transition_time,
        observed_generation: generation,
    }
}

/// The Ready condition of a list, if any.
pub fn ready(conditions: &[Condition]) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == "Ready")
}

/// Writes `status` with server-side apply when it differs from `current`.
/// Returns whether a write happened.
pub async fn write_status_if_changed<K, S>(api: &Api<K>, obj: &K, current: Option<&S>, status: &S) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    S: Serialize + PartialEq,
{
    if current == Some(status) {
        return Ok(false);
    }
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(&obj.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_is_kept_while_status_is_unchanged() {
        let first = condition(&[], "Ready", false, "GrantPending", "waiting", Some(1));
        let mut old = first.clone();
        old.last_transition_time = "2020-01-01T00:00:00Z".into();
        let same = condition(std::slice::from_ref(&old), "Ready", false, "GrantRejected", "no", Some(2));
        assert_eq!(same.last_transition_time, "2020-01-01T00:00:00Z");
        let flipped = condition(&[old], "Ready", true, "Sellable", "ok", Some(2));
        assert_ne!(flipped.last_transition_time, "2020-01-01T00:00:00Z");
    }
}
