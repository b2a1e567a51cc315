//! Versions, pure: which version an instance runs, whether it may move from
//! one version to another, what the move writes, and which old versions go.

use crate::api::{
    ParameterValues, ServiceType, UpdatePolicy, UpgradeMetadata, UpgradePreview, VersionChange,
    VersionChangeType, VersionContent, VersionState,
};
use serde_json::Value;
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// Upgrades and rollbacks an instance's status keeps.
pub const HISTORY_LIMIT: usize = 10;

/// A version of a Service as the controller knows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Known {
    /// The version string.
    pub version: String,
    /// Its state (from the Service's spec).
    pub state: VersionState,
    /// Its channels.
    pub channels: Vec<String>,
    /// How instances move to it.
    pub upgrade: UpgradeMetadata,
    /// The Service's type when it was published.
    pub type_: ServiceType,
}

/// A refusal, with a reason a program can match and a message for a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// CamelCase reason.
    pub reason: &'static str,
    /// What and what to do.
    pub message: String,
}

fn refused(reason: &'static str, message: String) -> Refused {
    Refused { reason, message }
}

/// A version string as semver, leniently: `1` is 1.0.0, `1.2` is 1.2.0, a
/// leading `v` is dropped.
pub fn parse_version(s: &str) -> Option<semver::Version> {
    let s = s.strip_prefix('v').unwrap_or(s);
    semver::Version::parse(s).ok().or_else(|| {
        let dots = s.split('+').next().unwrap_or(s).matches('.').count();
        let padded = match dots {
            0 => format!("{s}.0.0"),
            1 => format!("{s}.0"),
            _ => return None,
        };
        semver::Version::parse(&padded).ok()
    })
}

/// Orders two versions: by semver where both are, else semver ones after
/// the others, else by text.
pub fn compare(a: &str, b: &str) -> Ordering {
    match (parse_version(a), parse_version(b)) {
        (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.cmp(b)),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => a.cmp(b),
    }
}

/// What an instance's `spec.version` asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Pin {
    /// Nothing: the product's current version.
    Current,
    /// One version.
    Exact(String),
    /// A semver range.
    Range(semver::VersionReq),
}

/// Reads `spec.version`: a full version (or one that is not semver at all)
/// is exact; anything with an operator, a wildcard, or fewer than three
/// numbers is a range. `known` decides first: a string that names a known
/// version exactly is that version.
pub fn parse_pin(s: Option<&str>, known: &[Known]) -> Result<Pin, Refused> {
    let Some(s) = s.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(Pin::Current);
    };
    if known.iter().any(|k| k.version == s) || semver::Version::parse(s).is_ok() {
        return Ok(Pin::Exact(s.to_string()));
    }
    let looks_like_range = s.chars().any(|c| "^~<>=*xX,".contains(c))
        || s.split('.')
            .all(|p| p.chars().all(|c| c.is_ascii_digit()) && !p.is_empty());
    if looks_like_range {
        return semver::VersionReq::parse(s).map(Pin::Range).map_err(|e| {
            refused(
                "InvalidVersion",
                format!("spec.version {s:?} is neither a version nor a semver range: {e}"),
            )
        });
    }
    Ok(Pin::Exact(s.to_string()))
}

/// Whether `version` satisfies a semver range (a version that is not semver never does).
pub fn in_range(req: &semver::VersionReq, version: &str) -> bool {
    parse_version(version).is_some_and(|v| req.matches(&v))
}

fn pin_allows(pin: &Pin, version: &str) -> bool {
    match pin {
        Pin::Current => true,
        Pin::Exact(v) => v == version,
        Pin::Range(r) => in_range(r, version),
    }
}

fn on_channel(k: &Known, channel: Option<&str>) -> bool {
    channel.is_none_or(|c| k.channels.iter().any(|x| x == c))
}

/// What an instance asks for, with what it runs.
pub struct Ask<'a> {
    /// `spec.version`, read.
    pub pin: &'a Pin,
    /// `spec.channel`.
    pub channel: Option<&'a str>,
    /// `spec.updatePolicy`.
    pub policy: UpdatePolicy,
    /// The version its objects were written from, if any.
    pub running: Option<&'a str>,
    /// The product's current version (the Service's `spec.version`).
    pub current: &'a str,
}

/// The version an instance should run.
pub fn choose(ask: &Ask<'_>, known: &[Known]) -> Result<String, Refused> {
    let find = |v: &str| known.iter().find(|k| k.version == v);
    let keeps = |v: &str| ask.running == Some(v);
    match ask.pin {
        Pin::Current if ask.channel.is_none() => {
            let k = find(ask.current);
            match k.map(|k| k.state) {
                Some(VersionState::Published | VersionState::Deprecated) => {
                    Ok(ask.current.to_string())
                }
                // The current version is a draft: what runs keeps running.
                _ => match ask.running.and_then(find) {
                    Some(r) => Ok(r.version.clone()),
                    None => Err(refused(
                        "NotPublished",
                        format!(
                            "version {} of the product is not published yet (Draft); buy it once the ISV publishes it, or pin a published version",
                            ask.current
                        ),
                    )),
                },
            }
        }
        Pin::Exact(v) => match find(v).map(|k| k.state) {
            Some(VersionState::Published | VersionState::Deprecated) => Ok(v.clone()),
            Some(VersionState::Withdrawn) if keeps(v) => Ok(v.clone()),
            Some(VersionState::Withdrawn) => Err(refused(
                "NotPublished",
                format!("version {v} was withdrawn by the ISV; pin another version"),
            )),
            Some(VersionState::Draft) => Err(refused(
                "NotPublished",
                format!("version {v} is a draft, not published yet; pin a published version"),
            )),
            None => Err(refused(
                "VersionNotFound",
                format!(
                    "the product has no version {v}{}; versions: {}",
                    if ask.running.is_some() {
                        " (never published, or no longer kept)"
                    } else {
                        ""
                    },
                    list(known)
                ),
            )),
        },
        pin => {
            let selects = |k: &Known| pin_allows(pin, &k.version) && on_channel(k, ask.channel);
            if ask.policy == UpdatePolicy::Manual
                && let Some(r) = ask.running.and_then(find)
                && selects(r)
                && r.state != VersionState::Draft
            {
                return Ok(r.version.clone());
            }
            known
                .iter()
                .filter(|k| k.state == VersionState::Published && selects(k))
                .max_by(|a, b| compare(&a.version, &b.version))
                .map(|k| k.version.clone())
                .or_else(|| {
                    // Nothing newer is published: what runs and still matches stays.
                    ask.running
                        .and_then(find)
                        .filter(|r| selects(r) && r.state != VersionState::Draft)
                        .map(|r| r.version.clone())
                })
                .ok_or_else(|| {
                    refused(
                        "NoMatchingVersion",
                        format!(
                            "no published version matches {}{}; versions: {}",
                            match pin {
                                Pin::Range(r) => format!("range {r}"),
                                _ => "the product".to_string(),
                            },
                            ask.channel
                                .map(|c| format!(" on channel {c}"))
                                .unwrap_or_default(),
                            list(known)
                        ),
                    )
                })
        }
    }
}

fn list(known: &[Known]) -> String {
    if known.is_empty() {
        return "none".into();
    }
    let mut v: Vec<&Known> = known.iter().collect();
    v.sort_by(|a, b| compare(&a.version, &b.version));
    v.iter()
        .map(|k| format!("{} ({})", k.version, k.state.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Newer published versions than `running`, on `channel` if one is given, newest first.
pub fn available_upgrades(known: &[Known], running: &str, channel: Option<&str>) -> Vec<String> {
    let mut v: Vec<&Known> = known
        .iter()
        .filter(|k| {
            k.state == VersionState::Published
                && on_channel(k, channel)
                && compare(&k.version, running) == Ordering::Greater
        })
        .collect();
    v.sort_by(|a, b| compare(&b.version, &a.version));
    v.into_iter().map(|k| k.version.clone()).collect()
}

/// Whether an instance may move from one version to another, and how the
/// move is called.
pub fn check_move(from: &Known, to: &Known) -> Result<VersionChangeType, Refused> {
    if from.type_ != to.type_ {
        return Err(refused(
            "ScenarioChange",
            format!(
                "version {} is {:?} and {} is {:?}: a version change cannot change where the resources live or who owns them; buy a new instance",
                from.version, from.type_, to.version, to.type_
            ),
        ));
    }
    if compare(&to.version, &from.version) == Ordering::Less {
        if !from.upgrade.rollback {
            return Err(refused(
                "RollbackUnsupported",
                format!(
                    "version {} does not support rolling back; pin {} again",
                    from.version, from.version
                ),
            ));
        }
        return Ok(VersionChangeType::Rollback);
    }
    let from_ok = to.upgrade.from.is_empty()
        || to.upgrade.from.iter().any(|f| {
            f == &from.version
                || semver::VersionReq::parse(f).is_ok_and(|r| in_range(&r, &from.version))
        });
    if !from_ok {
        return Err(refused(
            "UnsupportedFromVersion",
            format!(
                "version {} can be reached only from {}; upgrade to one of those first",
                to.version,
                to.upgrade.from.join(", ")
            ),
        ));
    }
    Ok(VersionChangeType::Upgrade)
}

/// Parameters `content` requires (required ones without a default, and the
/// upgrade's required parameters) that neither the instance nor its plan sets.
pub fn missing_parameters(
    content: &VersionContent,
    upgrade: &UpgradeMetadata,
    plan: Option<&str>,
    given: &ParameterValues,
) -> Vec<String> {
    let plan_values = plan
        .and_then(|p| content.plans.iter().find(|x| x.name == p))
        .map(|p| &p.parameters);
    let has = |name: &str| {
        given.contains_key(name)
            || plan_values.is_some_and(|v| v.contains_key(name))
            || content
                .parameters
                .iter()
                .any(|p| p.name == name && p.default.is_some())
    };
    let mut missing: Vec<String> = content
        .parameters
        .iter()
        .filter(|p| p.required)
        .map(|p| p.name.clone())
        .chain(upgrade.required_parameters.iter().cloned())
        .filter(|n| !has(n))
        .collect();
    missing.sort();
    missing.dedup();
    missing
}

/// Pure: what writing `new` over `old` does, object by object (`Kind/name`):
/// created, updated (written differently), deleted, or kept (claims that
/// left the template, unless `delete_claims`).
pub fn diff(old: &[Value], new: &[Value], delete_claims: bool, to: &str) -> UpgradePreview {
    let key = |o: &Value| {
        format!(
            "{}/{}",
            o["kind"].as_str().unwrap_or_default(),
            o["metadata"]["name"].as_str().unwrap_or_default()
        )
    };
    let old_by: BTreeMap<String, &Value> = old.iter().map(|o| (key(o), o)).collect();
    let new_by: BTreeMap<String, &Value> = new.iter().map(|o| (key(o), o)).collect();
    let mut p = UpgradePreview {
        to: to.to_string(),
        ..Default::default()
    };
    for (k, n) in &new_by {
        match old_by.get(k) {
            None => p.create.push(k.clone()),
            Some(o) if o != n => p.update.push(k.clone()),
            Some(_) => {}
        }
    }
    for (k, o) in &old_by {
        if new_by.contains_key(k) {
            continue;
        }
        let claim = o["kind"] == "PersistentVolumeClaim" && o["apiVersion"] == "v1";
        if claim && !delete_claims {
            p.keep.push(k.clone());
        } else {
            p.delete.push(k.clone());
        }
    }
    p
}

/// Pure: the versions to delete: published versions no instance runs and
/// that are not current, beyond the newest `limit` of them.
pub fn expired<'a>(
    kept: impl IntoIterator<Item = &'a str>,
    in_use: &dyn Fn(&str) -> bool,
    current: &str,
    limit: usize,
) -> Vec<String> {
    let mut idle: Vec<&str> = kept
        .into_iter()
        .filter(|v| *v != current && !in_use(v))
        .collect();
    idle.sort_by(|a, b| compare(b, a));
    idle.into_iter().skip(limit).map(str::to_string).collect()
}

/// Pure: `history` with `change` added last, at most `HISTORY_LIMIT` kept.
pub fn record(history: &[VersionChange], change: VersionChange) -> Vec<VersionChange> {
    let mut h: Vec<VersionChange> = history.to_vec();
    h.push(change);
    let excess = h.len().saturating_sub(HISTORY_LIMIT);
    h.drain(..excess);
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{VersionChangeResult, VersionContent};
    use serde_json::json;

    fn known(v: &str, state: VersionState, channels: &[&str]) -> Known {
        Known {
            version: v.into(),
            state,
            channels: channels.iter().map(|c| c.to_string()).collect(),
            upgrade: UpgradeMetadata {
                rollback: true,
                ..Default::default()
            },
            type_: ServiceType::Private,
        }
    }

    fn catalog() -> Vec<Known> {
        vec![
            known("1.0.0", VersionState::Deprecated, &["stable"]),
            known("1.1.0", VersionState::Published, &["stable"]),
            known("1.2.0", VersionState::Published, &["stable"]),
            known("2.0.0-rc.1", VersionState::Published, &["beta"]),
            known("2.0.0", VersionState::Draft, &["stable"]),
            known("0.9.0", VersionState::Withdrawn, &["stable"]),
        ]
    }

    fn ask<'a>(pin: &'a Pin, running: Option<&'a str>, policy: UpdatePolicy) -> Ask<'a> {
        Ask {
            pin,
            channel: None,
            policy,
            running,
            current: "1.2.0",
        }
    }

    #[test]
    fn versions_order_by_semver_and_read_leniently() {
        assert_eq!(compare("1.10.0", "1.9.0"), Ordering::Greater);
        assert_eq!(compare("2", "1.9"), Ordering::Greater);
        // Two spellings of one version still sort apart (a total order).
        assert_ne!(compare("v1.2", "1.2.0"), Ordering::Equal);
        assert_eq!(compare("2.0.0-rc.1", "2.0.0"), Ordering::Less);
        assert_eq!(compare("nightly", "1.0.0"), Ordering::Less);
        assert_eq!(
            parse_version("1").map(|v| v.to_string()).as_deref(),
            Some("1.0.0")
        );
    }

    #[test]
    fn a_pin_is_exact_for_a_full_or_known_version_and_a_range_otherwise() {
        let k = vec![known("1", VersionState::Published, &[])];
        assert_eq!(parse_pin(Some("1"), &k), Ok(Pin::Exact("1".into())));
        assert_eq!(
            parse_pin(Some("1.2.0"), &[]),
            Ok(Pin::Exact("1.2.0".into()))
        );
        assert!(matches!(parse_pin(Some("^1.2"), &[]), Ok(Pin::Range(_))));
        assert!(matches!(parse_pin(Some("1.2"), &[]), Ok(Pin::Range(_))));
        assert!(matches!(parse_pin(Some(">=1, <2"), &[]), Ok(Pin::Range(_))));
        assert_eq!(parse_pin(None, &[]), Ok(Pin::Current));
        assert_eq!(
            parse_pin(Some("nightly-build"), &[]),
            Ok(Pin::Exact("nightly-build".into()))
        );
        assert_eq!(
            parse_pin(Some(">=x.y"), &[]).map_err(|e| e.reason),
            Err("InvalidVersion")
        );
    }

    #[test]
    fn an_unpinned_instance_follows_the_current_version_and_keeps_its_own_while_it_is_a_draft() {
        let k = catalog();
        let pin = Pin::Current;
        assert_eq!(
            choose(&ask(&pin, None, UpdatePolicy::Manual), &k),
            Ok("1.2.0".into())
        );
        let mut a = ask(&pin, Some("1.1.0"), UpdatePolicy::Manual);
        a.current = "2.0.0";
        assert_eq!(choose(&a, &k), Ok("1.1.0".into()));
        a.running = None;
        assert_eq!(choose(&a, &k).map_err(|e| e.reason), Err("NotPublished"));
    }

    #[test]
    fn an_exact_pin_takes_published_and_deprecated_and_keeps_a_withdrawn_one_only_where_it_runs() {
        let k = catalog();
        let pin = |v: &str| Pin::Exact(v.into());
        let m = UpdatePolicy::Manual;
        assert_eq!(choose(&ask(&pin("1.0.0"), None, m), &k), Ok("1.0.0".into()));
        assert_eq!(
            choose(&ask(&pin("0.9.0"), None, m), &k).map_err(|e| e.reason),
            Err("NotPublished")
        );
        assert_eq!(
            choose(&ask(&pin("0.9.0"), Some("0.9.0"), m), &k),
            Ok("0.9.0".into())
        );
        assert_eq!(
            choose(&ask(&pin("2.0.0"), None, m), &k).map_err(|e| e.reason),
            Err("NotPublished")
        );
        let e = choose(&ask(&pin("3.0.0"), Some("1.0.0"), m), &k).unwrap_err();
        assert_eq!(e.reason, "VersionNotFound");
        assert!(e.message.contains("no longer kept"), "{}", e.message);
    }

    #[test]
    fn a_range_picks_the_newest_published_and_manual_keeps_what_runs_while_it_matches() {
        let k = catalog();
        let pin = Pin::Range(semver::VersionReq::parse("^1").unwrap());
        assert_eq!(
            choose(&ask(&pin, None, UpdatePolicy::Manual), &k),
            Ok("1.2.0".into())
        );
        assert_eq!(
            choose(&ask(&pin, Some("1.1.0"), UpdatePolicy::Manual), &k),
            Ok("1.1.0".into())
        );
        assert_eq!(
            choose(&ask(&pin, Some("1.1.0"), UpdatePolicy::Automatic), &k),
            Ok("1.2.0".into())
        );
        // A deprecated version is never chosen by a range, but kept where it runs.
        assert_eq!(
            choose(&ask(&pin, Some("1.0.0"), UpdatePolicy::Manual), &k),
            Ok("1.0.0".into())
        );
        let none = Pin::Range(semver::VersionReq::parse("^3").unwrap());
        assert_eq!(
            choose(&ask(&none, None, UpdatePolicy::Manual), &k).map_err(|e| e.reason),
            Err("NoMatchingVersion")
        );
    }

    #[test]
    fn a_channel_selects_only_its_versions() {
        let k = catalog();
        let pin = Pin::Current;
        let mut a = ask(&pin, None, UpdatePolicy::Automatic);
        a.channel = Some("beta");
        assert_eq!(choose(&a, &k), Ok("2.0.0-rc.1".into()));
        a.channel = Some("stable");
        assert_eq!(choose(&a, &k), Ok("1.2.0".into()));
        assert_eq!(
            available_upgrades(&k, "1.0.0", Some("stable")),
            vec!["1.2.0", "1.1.0"]
        );
        assert_eq!(available_upgrades(&k, "1.2.0", None), vec!["2.0.0-rc.1"]);
    }

    #[test]
    fn moves_are_checked_against_the_versions_metadata() {
        let mut from = known("1.0.0", VersionState::Published, &[]);
        let mut to = known("2.0.0", VersionState::Published, &[]);
        assert_eq!(check_move(&from, &to), Ok(VersionChangeType::Upgrade));
        to.upgrade.from = vec!["^1.1".into()];
        assert_eq!(
            check_move(&from, &to).map_err(|e| e.reason),
            Err("UnsupportedFromVersion")
        );
        to.upgrade.from = vec!["1.0.0".into()];
        assert_eq!(check_move(&from, &to), Ok(VersionChangeType::Upgrade));
        assert_eq!(check_move(&to, &from), Ok(VersionChangeType::Rollback));
        to.upgrade.rollback = false;
        assert_eq!(
            check_move(&to, &from).map_err(|e| e.reason),
            Err("RollbackUnsupported")
        );
        from.type_ = ServiceType::FullyManaged;
        assert_eq!(
            check_move(&from, &to).map_err(|e| e.reason),
            Err("ScenarioChange")
        );
    }

    #[test]
    fn missing_parameters_count_the_instance_the_plan_and_defaults() {
        let content: VersionContent = serde_json::from_value(json!({
            "parameters": [
                {"name": "size", "type": "Integer", "required": true},
                {"name": "tier", "type": "String", "required": true, "default": "s"},
                {"name": "region", "type": "String"},
                {"name": "zone", "type": "String", "required": true}
            ],
            "plans": [{"name": "basic", "parameters": {"zone": "a"}}],
            "template": {"objects": []}
        }))
        .unwrap();
        let upgrade = UpgradeMetadata {
            required_parameters: vec!["region".into()],
            rollback: true,
            ..Default::default()
        };
        let given: ParameterValues = [("size".to_string(), json!(3))].into();
        assert_eq!(
            missing_parameters(&content, &upgrade, Some("basic"), &given),
            vec!["region"]
        );
        assert_eq!(
            missing_parameters(&content, &upgrade, None, &Default::default()),
            vec!["region", "size", "zone"]
        );
    }

    #[test]
    fn a_diff_names_what_is_created_updated_deleted_and_kept() {
        let cm = |n: &str, v: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n}, "data": {"v": v}});
        let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"}});
        let old = vec![
            cm("same", "1"),
            cm("changed", "1"),
            cm("gone", "1"),
            pvc.clone(),
        ];
        let new = vec![cm("same", "1"), cm("changed", "2"), cm("added", "1")];
        let p = diff(&old, &new, false, "2.0.0");
        assert_eq!(p.create, vec!["ConfigMap/added"]);
        assert_eq!(p.update, vec!["ConfigMap/changed"]);
        assert_eq!(p.delete, vec!["ConfigMap/gone"]);
        assert_eq!(p.keep, vec!["PersistentVolumeClaim/data"]);
        let p = diff(&old, &new, true, "2.0.0");
        assert_eq!(
            p.delete,
            vec!["ConfigMap/gone", "PersistentVolumeClaim/data"]
        );
    }

    #[test]
    fn old_versions_beyond_the_limit_go_unless_current_or_running() {
        let kept = ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "2.0.0"];
        let in_use = |v: &str| v == "1.0.0";
        let mut gone = expired(kept, &in_use, "2.0.0", 2);
        gone.sort();
        assert_eq!(gone, vec!["1.1.0"]);
        assert!(expired(kept, &in_use, "2.0.0", 10).is_empty());
        assert_eq!(expired(kept, &|_| false, "2.0.0", 0).len(), 4);
    }

    #[test]
    fn history_keeps_the_last_ten() {
        let change = |i: i64| VersionChange {
            from: "1".into(),
            to: "2".into(),
            type_: VersionChangeType::Upgrade,
            result: VersionChangeResult::Succeeded,
            start_time: String::new(),
            end_time: None,
            message: String::new(),
            generation: i,
        };
        let mut h = Vec::new();
        for i in 0..15 {
            h = record(&h, change(i));
        }
        assert_eq!(h.len(), HISTORY_LIMIT);
        assert_eq!(h.first().map(|c| c.generation), Some(5));
        assert_eq!(h.last().map(|c| c.generation), Some(14));
    }
}
