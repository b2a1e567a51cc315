//! Conditions and timestamps as Kubernetes writes them: pure.

use crate::api::Condition;
use jiff::Timestamp;

/// RFC 3339, to the second, as Kubernetes writes it.
pub fn format_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The current time, formatted by `format_time`.
pub fn now_rfc3339() -> String {
    format_time(Timestamp::now())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_is_kept_while_status_is_unchanged() {
        let first = condition(&[], "Ready", false, "GrantPending", "waiting", Some(1));
        let mut old = first.clone();
        old.last_transition_time = "2020-01-01T00:00:00Z".into();
        let same = condition(
            std::slice::from_ref(&old),
            "Ready",
            false,
            "GrantRejected",
            "no",
            Some(2),
        );
        assert_eq!(same.last_transition_time, "2020-01-01T00:00:00Z");
        let flipped = condition(&[old], "Ready", true, "Sellable", "ok", Some(2));
        assert_ne!(flipped.last_transition_time, "2020-01-01T00:00:00Z");
    }

    #[test]
    fn times_are_written_to_the_second() {
        let t: Timestamp = "2026-11-25T12:00:00.123456Z".parse().unwrap_or_default();
        assert_eq!(format_time(t), "2026-11-25T12:00:00Z");
    }
}
