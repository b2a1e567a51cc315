//! Who may sell what, now: pure rules over a Service, a DerivedService and a
//! DistributionGrant. Used by both the DerivedService and the ServiceInstance
//! controllers, so that both always agree.

use super::render::{AllowedKind, Offering, OfferingError, resolve_offering};
use super::scenario::Scenario;
use crate::api::{Decision, DerivedService, DistributionGrant, GrantState, Party, Service};
use jiff::Timestamp;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Name of the grant the controller writes when a distributor applies. Dots
/// cannot appear in a namespace name, so the pair is unambiguous.
pub fn application_grant_name(service: &str, distributor_namespace: &str) -> String {
    let name = format!("{service}.{distributor_namespace}");
    if name.len() <= 253 {
        return name;
    }
    // A Service name of up to 253 characters plus a namespace does not fit
    // an object name: keep a readable prefix and a hash of the whole.
    let keep = 253 - 1 - 63 - 1 - 16;
    let prefix: String = service.chars().take(keep).collect();
    let prefix = prefix.trim_end_matches(['-', '.']);
    format!(
        "{prefix}-{}.{distributor_namespace}",
        super::naming::short_hash(&name, 16)
    )
}

/// Effective state of a grant at `now`, and when it will expire (to requeue then).
pub fn grant_state(grant: &DistributionGrant, now: Timestamp) -> (GrantState, Option<Timestamp>) {
    let expiry = grant
        .spec
        .expires_at
        .as_deref()
        .and_then(|s| s.parse::<Timestamp>().ok());
    let state = match grant.spec.decision {
        Decision::Pending => GrantState::Pending,
        Decision::Rejected => GrantState::Rejected,
        Decision::Revoked => GrantState::Revoked,
        Decision::Approved => match expiry {
            Some(at) if at <= now => GrantState::Expired,
            _ => GrantState::Approved,
        },
    };
    let pending_expiry = expiry.filter(|at| *at > now && grant.spec.decision == Decision::Approved);
    (state, pending_expiry)
}

/// The grant's `expiresAt` when it is set but is not a time the controller
/// can read. The API server's `date-time` check is looser than RFC 3339 (it
/// takes offsets such as `+99:00`); such a grant must not allow sales for ever.
pub fn unreadable_expiry(grant: &DistributionGrant) -> Option<&str> {
    grant
        .spec
        .expires_at
        .as_deref()
        .filter(|s| s.parse::<Timestamp>().is_err())
}

/// Picks the grant for one distributor and Service among the grants of the
/// ISV's namespace: an effective approval wins, then the application, then
/// the others, by name, so the choice is stable.
pub fn select_grant<'a>(
    grants: impl IntoIterator<Item = &'a DistributionGrant>,
    service: &str,
    distributor_namespace: &str,
    now: Timestamp,
) -> Option<&'a DistributionGrant> {
    let rank = |g: &DistributionGrant| match grant_state(g, now).0 {
        GrantState::Approved => 0,
        GrantState::Pending => 1,
        GrantState::Expired => 2,
        GrantState::Revoked => 3,
        GrantState::Rejected => 4,
    };
    grants
        .into_iter()
        .filter(|g| {
            g.spec.service_name == service && g.spec.distributor_namespace == distributor_namespace
        })
        .min_by_key(|g| (rank(g), g.metadata.name.clone()))
}

/// A derived product that may be sold now.
#[derive(Clone, Debug)]
pub struct Sellable {
    /// Its scenario.
    pub scenario: Scenario,
    /// The checked offering.
    pub offering: Arc<Offering>,
    /// The grant it sells under.
    pub grant_name: String,
    /// When the grant expires, if it does.
    pub grant_expiry: Option<Timestamp>,
    /// Version of the source Service the offering was resolved from.
    pub source_version: String,
}

/// Why a derived product may not be sold now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotSellable {
    /// Condition reason.
    pub reason: &'static str,
    /// What happened and what to do.
    pub message: String,
    /// The scenario, when the types allow one.
    pub scenario: Option<Scenario>,
    /// The grant's name and state, when one was found.
    pub grant: Option<(String, String)>,
    /// Whether a distributor's application (a Pending grant) should be written.
    pub should_apply: bool,
}

impl NotSellable {
    fn new(reason: &'static str, message: String) -> Self {
        NotSellable {
            reason,
            message,
            scenario: None,
            grant: None,
            should_apply: false,
        }
    }
}

/// Where the offering of a product comes from: resolved on the spot from
/// the allowed kinds, or from a cache that resolved it once per generation.
pub trait Offerings {
    /// The checked offering of `service`, sold directly or through `derived`.
    fn offering(
        &self,
        service: &Service,
        derived: Option<&DerivedService>,
    ) -> Result<Arc<Offering>, OfferingError>;
}

impl Offerings for [AllowedKind] {
    fn offering(
        &self,
        service: &Service,
        derived: Option<&DerivedService>,
    ) -> Result<Arc<Offering>, OfferingError> {
        resolve_offering(&service.spec, derived.map(|d| &d.spec.overrides), self).map(Arc::new)
    }
}

/// A manifest's kind as `spec.distribution.extraObjects.allowedKinds` names
/// it: `Kind` for the core group, `group/Kind` otherwise.
pub fn kind_key(obj: &Value) -> String {
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    match api_version.rsplit_once('/') {
        Some((group, _)) => format!("{group}/{kind}"),
        None => kind.to_string(),
    }
}

/// Decides whether a DerivedService may be sold now. Where the ISV owns the
/// resources (scenarios 3 and 4), the distributor's extra objects must be of
/// kinds the ISV's Service allows (`spec.distribution.extraObjects`).
pub fn evaluate_derived(
    ds: &DerivedService,
    service: Option<&Service>,
    grant: Option<&DistributionGrant>,
    offerings: &(impl Offerings + ?Sized),
    now: Timestamp,
) -> Result<Sellable, NotSellable> {
    let src = &ds.spec.source;
    let Some(service) = service else {
        return Err(NotSellable::new(
            "SourceNotFound",
            format!(
                "Service {}/{} does not exist; check spec.source, or ask the ISV to publish it",
                src.namespace, src.name
            ),
        ));
    };
    let listed = service.spec.marketplace.listed;
    let scenario = Scenario::derived(service.spec.type_, listed, ds.spec.type_)
        .map_err(|e| NotSellable::new("InvalidScenario", e.to_string()))?;
    let with_scenario = |reason, message| NotSellable {
        scenario: Some(scenario),
        ..NotSellable::new(reason, message)
    };
    if let Some(want) = &src.version
        && want != &service.spec.version
        && !semver::VersionReq::parse(want).is_ok_and(|r| {
            semver::Version::parse(want).is_err()
                && crate::domain::versions::in_range(&r, &service.spec.version)
        })
    {
        return Err(with_scenario(
            "VersionMismatch",
            format!(
                "spec.source.version is {want} but Service {}/{} is at version {}; update spec.source.version or wait for the ISV to publish it",
                src.namespace, src.name, service.spec.version
            ),
        ));
    }
    if !service.spec.distribution.enabled {
        return Err(with_scenario(
            "DistributionDisabled",
            format!(
                "the ISV has not enabled distribution of Service {}/{} (spec.distribution.enabled is false); ask the ISV to enable it",
                src.namespace, src.name
            ),
        ));
    }
    let ds_ns = ds.metadata.namespace.as_deref().unwrap_or_default();
    let Some(grant) = grant else {
        // A grant this product sold under is gone: the ISV deleted it, which
        // revokes; the controller does not apply again behind its back.
        if let Some(previous) = ds.status.as_ref().and_then(|s| s.grant.as_ref())
            && matches!(
                previous.state.as_str(),
                "Approved" | "Revoked" | "Expired" | "Deleted"
            )
        {
            return Err(NotSellable {
                grant: Some((previous.name.clone(), "Deleted".into())),
                ..with_scenario(
                    "GrantRevoked",
                    format!(
                        "DistributionGrant {}/{} was deleted by the ISV: new sales are stopped; ask the ISV for a new grant",
                        src.namespace, previous.name
                    ),
                )
            });
        }
        return Err(NotSellable {
            should_apply: true,
            ..with_scenario(
                "GrantPending",
                format!(
                    "applied for distribution: waiting for the ISV to decide on DistributionGrant {}/{}",
                    src.namespace,
                    application_grant_name(&src.name, ds_ns)
                ),
            )
        });
    };
    let grant_name = grant.metadata.name.clone().unwrap_or_default();
    let (state, expiry) = grant_state(grant, now);
    let grant_info = Some((grant_name.clone(), format!("{state:?}")));
    let why = grant
        .spec
        .reason
        .as_deref()
        .map(|r| format!(" (reason given: {r})"))
        .unwrap_or_default();
    let refuse = |reason, message: String| NotSellable {
        grant: grant_info.clone(),
        ..with_scenario(reason, message)
    };
    match state {
        GrantState::Approved => {
            if let Some(bad) = unreadable_expiry(grant) {
                return Err(refuse(
                    "GrantInvalid",
                    format!(
                        "DistributionGrant {}/{grant_name} is Approved but its spec.expiresAt {bad:?} is not an RFC 3339 time (for example 2030-01-31T00:00:00Z), so when it ends cannot be known: no sales until the ISV fixes it",
                        src.namespace
                    ),
                ));
            }
        }
        GrantState::Pending => {
            return Err(refuse(
                "GrantPending",
                format!(
                    "DistributionGrant {}/{grant_name} is Pending: the ISV has not decided yet",
                    src.namespace
                ),
            ));
        }
        GrantState::Rejected => {
            return Err(refuse(
                "GrantRejected",
                format!(
                    "the ISV rejected DistributionGrant {}/{grant_name}{why}; this product cannot be sold",
                    src.namespace
                ),
            ));
        }
        GrantState::Revoked => {
            return Err(refuse(
                "GrantRevoked",
                format!(
                    "the ISV revoked DistributionGrant {}/{grant_name}{why}; new sales are stopped",
                    src.namespace
                ),
            ));
        }
        GrantState::Expired => {
            return Err(refuse(
                "GrantExpired",
                format!(
                    "DistributionGrant {}/{grant_name} expired at {}; ask the ISV to extend spec.expiresAt",
                    src.namespace,
                    grant.spec.expires_at.as_deref().unwrap_or("?")
                ),
            ));
        }
    }
    let offering = offerings.offering(service, Some(ds)).map_err(|e| match e {
        OfferingError::Override { .. } => {
            refuse("InvalidOverride", format!("{e}; fix spec.overrides"))
        }
        other => refuse(
            "SourceInvalid",
            format!(
                "Service {}/{} is not valid: {other}; the ISV must fix it",
                src.namespace, src.name
            ),
        ),
    })?;
    if scenario.resource_owner() == Party::Isv {
        let allowed = &service.spec.distribution.extra_objects.allowed_kinds;
        let refused: BTreeSet<String> = ds
            .spec
            .overrides
            .extra_objects
            .iter()
            .map(kind_key)
            .filter(|k| !allowed.contains(k))
            .collect();
        if !refused.is_empty() {
            return Err(refuse(
                "ExtraObjectsNotAllowed",
                format!(
                    "spec.overrides.extraObjects adds {} to instances whose resources the ISV owns ({}), and Service {}/{} allows {} (spec.distribution.extraObjects.allowedKinds); remove them from spec.overrides.extraObjects, or ask the ISV to allow them",
                    refused.into_iter().collect::<Vec<_>>().join(", "),
                    scenario.as_str(),
                    src.namespace,
                    src.name,
                    if allowed.is_empty() {
                        "no extra objects".to_string()
                    } else {
                        format!("only {}", allowed.join(", "))
                    }
                ),
            ));
        }
    }
    Ok(Sellable {
        scenario,
        offering,
        grant_name,
        grant_expiry: expiry,
        source_version: service.spec.version.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_names_are_valid_for_any_service_name() {
        assert_eq!(application_grant_name("web", "dist"), "web.dist");
        let long = "s".repeat(253);
        let a = application_grant_name(&long, &"d".repeat(63));
        assert!(
            a.len() <= 253 && crate::domain::render::is_dns_subdomain(&a),
            "{a}"
        );
        let b = application_grant_name(&format!("{}x", "s".repeat(252)), &"d".repeat(63));
        assert_ne!(a, b, "different services, different applications");
    }
    use crate::domain::render::default_allowed_kinds;
    use serde_json::json;

    fn service(type_: &str, listed: bool, enabled: bool) -> Service {
        serde_json::from_value(json!({
            "apiVersion": "computenest.dev/v1alpha1", "kind": "Service",
            "metadata": {"name": "db", "namespace": "isv"},
            "spec": {"type": type_, "version": "1.0", "marketplace": {"listed": listed},
                     "distribution": {"enabled": enabled},
                     "template": {"objects": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}]}}
        }))
        .unwrap()
    }

    fn derived(type_: &str) -> DerivedService {
        serde_json::from_value(json!({
            "apiVersion": "computenest.dev/v1alpha1", "kind": "DerivedService",
            "metadata": {"name": "db-plus", "namespace": "dist"},
            "spec": {"source": {"namespace": "isv", "name": "db"}, "type": type_}
        }))
        .unwrap()
    }

    fn grant(name: &str, decision: &str, expires: Option<&str>) -> DistributionGrant {
        serde_json::from_value(json!({
            "apiVersion": "computenest.dev/v1alpha1", "kind": "DistributionGrant",
            "metadata": {"name": name, "namespace": "isv"},
            "spec": {"serviceName": "db", "distributorNamespace": "dist", "decision": decision, "expiresAt": expires}
        }))
        .unwrap()
    }

    fn now() -> Timestamp {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    fn eval(
        s: Option<&Service>,
        d: &DerivedService,
        g: Option<&DistributionGrant>,
    ) -> Result<Sellable, NotSellable> {
        evaluate_derived(d, s, g, default_allowed_kinds().as_slice(), now())
    }

    #[test]
    fn reasons() {
        let fm_listed = service("FullyManaged", true, true);
        let approved = grant("g", "Approved", None);
        assert_eq!(
            eval(None, &derived("Private"), None).unwrap_err().reason,
            "SourceNotFound"
        );
        assert_eq!(
            eval(Some(&fm_listed), &derived("Private"), Some(&approved))
                .unwrap_err()
                .reason,
            "InvalidScenario"
        );
        assert_eq!(
            eval(
                Some(&service("Private", false, false)),
                &derived("Private"),
                Some(&approved)
            )
            .unwrap_err()
            .reason,
            "DistributionDisabled"
        );
        let none = eval(Some(&fm_listed), &derived("FullyManaged"), None).unwrap_err();
        assert_eq!((none.reason, none.should_apply), ("GrantPending", true));
        for (decision, reason) in [
            ("Pending", "GrantPending"),
            ("Rejected", "GrantRejected"),
            ("Revoked", "GrantRevoked"),
        ] {
            let e = eval(
                Some(&fm_listed),
                &derived("FullyManaged"),
                Some(&grant("g", decision, None)),
            )
            .unwrap_err();
            assert_eq!(e.reason, reason);
            assert!(!e.should_apply);
        }
        let expired = grant("g", "Approved", Some("2025-12-31T23:59:59Z"));
        assert_eq!(
            eval(Some(&fm_listed), &derived("FullyManaged"), Some(&expired))
                .unwrap_err()
                .reason,
            "GrantExpired"
        );
        let ok = eval(Some(&fm_listed), &derived("FullyManaged"), Some(&approved)).unwrap();
        assert_eq!(ok.scenario, Scenario::Scenario3);
        assert_eq!(ok.source_version, "1.0");
        let mut wrong_version = derived("FullyManaged");
        wrong_version.spec.source.version = Some("2.0".into());
        assert_eq!(
            eval(Some(&fm_listed), &wrong_version, Some(&approved))
                .unwrap_err()
                .reason,
            "VersionMismatch"
        );
        let mut bad_override = derived("FullyManaged");
        bad_override.spec.overrides.plans = vec!["gold".into()];
        assert_eq!(
            eval(Some(&fm_listed), &bad_override, Some(&approved))
                .unwrap_err()
                .reason,
            "InvalidOverride"
        );
    }

    #[test]
    fn a_deleted_grant_revokes_and_is_not_applied_for_again() {
        let fm_listed = service("FullyManaged", true, true);
        let mut ds = derived("FullyManaged");
        ds.status = Some(crate::api::DerivedServiceStatus {
            grant: Some(crate::api::GrantRef {
                name: "g".into(),
                state: "Approved".into(),
            }),
            ..Default::default()
        });
        let e = eval(Some(&fm_listed), &ds, None).unwrap_err();
        assert_eq!((e.reason, e.should_apply), ("GrantRevoked", false));
        assert!(e.message.contains("was deleted"), "{}", e.message);
        // A pending application that vanished is simply made again.
        ds.status = Some(crate::api::DerivedServiceStatus {
            grant: Some(crate::api::GrantRef {
                name: "g".into(),
                state: "Pending".into(),
            }),
            ..Default::default()
        });
        assert!(eval(Some(&fm_listed), &ds, None).unwrap_err().should_apply);
    }

    #[test]
    fn an_approval_with_an_unreadable_expiry_sells_nothing() {
        let fm_listed = service("FullyManaged", true, true);
        for bad in ["2030-01-01T00:00:00+99:00", "next tuesday"] {
            let g = grant("g", "Approved", Some(bad));
            assert_eq!(unreadable_expiry(&g), Some(bad));
            let e = eval(Some(&fm_listed), &derived("FullyManaged"), Some(&g)).unwrap_err();
            assert_eq!(e.reason, "GrantInvalid", "{bad}");
            assert!(
                e.message.contains("is not an RFC 3339 time"),
                "{}",
                e.message
            );
        }
        let good = grant("g", "Approved", Some("2030-01-01T00:00:00+02:00"));
        assert_eq!(unreadable_expiry(&good), None);
        assert!(eval(Some(&fm_listed), &derived("FullyManaged"), Some(&good)).is_ok());
    }

    #[test]
    fn expiry_is_reported_for_requeue() {
        let g = grant("g", "Approved", Some("2026-01-01T00:10:00Z"));
        let (state, at) = grant_state(&g, now());
        assert_eq!(state, GrantState::Approved);
        assert_eq!(at.unwrap().to_string(), "2026-01-01T00:10:00Z");
    }

    #[test]
    fn selection_prefers_approval_then_name() {
        let gs = [
            grant("b", "Rejected", None),
            grant("c", "Approved", None),
            grant("a", "Pending", None),
        ];
        assert_eq!(
            select_grant(gs.iter(), "db", "dist", now())
                .unwrap()
                .metadata
                .name
                .as_deref(),
            Some("c")
        );
        assert!(select_grant(gs.iter(), "db", "other", now()).is_none());
    }

    #[test]
    fn extra_objects_where_the_isv_owns_the_resources_need_its_permission() {
        let approved = grant("g", "Approved", None);
        let with_extra = |type_: &str| {
            let mut d = derived(type_);
            d.spec.overrides.extra_objects = vec![
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
                json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "np"}}),
            ];
            d
        };
        // Scenarios 1 and 2: the ISV's Service does not limit them.
        for (ds_type, scenario) in [
            ("Private", Scenario::Scenario1),
            ("FullyManaged", Scenario::Scenario2),
        ] {
            let ok = eval(
                Some(&service("Private", false, true)),
                &with_extra(ds_type),
                Some(&approved),
            )
            .unwrap();
            assert_eq!(ok.scenario, scenario);
            assert_eq!(ok.offering.objects.len(), 3);
        }
        // Scenarios 3 and 4: none by default, then only the kinds allowed.
        for (listed, scenario) in [(true, Scenario::Scenario3), (false, Scenario::Scenario4)] {
            let mut svc = service("FullyManaged", listed, true);
            let e = eval(Some(&svc), &with_extra("FullyManaged"), Some(&approved)).unwrap_err();
            assert_eq!(
                (e.reason, e.scenario),
                ("ExtraObjectsNotAllowed", Some(scenario))
            );
            assert_eq!(
                e.message,
                format!(
                    "spec.overrides.extraObjects adds ConfigMap, networking.k8s.io/NetworkPolicy to instances whose resources the ISV owns ({}), and Service isv/db allows no extra objects (spec.distribution.extraObjects.allowedKinds); remove them from spec.overrides.extraObjects, or ask the ISV to allow them",
                    scenario.as_str()
                )
            );
            // Without extra objects the product sells.
            assert!(eval(Some(&svc), &derived("FullyManaged"), Some(&approved)).is_ok());
            svc.spec.distribution.extra_objects.allowed_kinds = vec!["ConfigMap".into()];
            let e = eval(Some(&svc), &with_extra("FullyManaged"), Some(&approved)).unwrap_err();
            assert!(
                e.message.starts_with(
                    "spec.overrides.extraObjects adds networking.k8s.io/NetworkPolicy to"
                ) && e.message.contains("allows only ConfigMap ("),
                "{}",
                e.message
            );
            // The group counts: `NetworkPolicy` alone is the core group's.
            svc.spec.distribution.extra_objects.allowed_kinds =
                vec!["ConfigMap".into(), "NetworkPolicy".into()];
            assert_eq!(
                eval(Some(&svc), &with_extra("FullyManaged"), Some(&approved))
                    .unwrap_err()
                    .reason,
                "ExtraObjectsNotAllowed"
            );
            svc.spec.distribution.extra_objects.allowed_kinds =
                vec!["ConfigMap".into(), "networking.k8s.io/NetworkPolicy".into()];
            let ok = eval(Some(&svc), &with_extra("FullyManaged"), Some(&approved)).unwrap();
            assert_eq!(ok.offering.objects.len(), 3);
        }
    }

    #[test]
    fn kind_keys_name_the_group() {
        assert_eq!(
            kind_key(&json!({"apiVersion": "v1", "kind": "Secret"})),
            "Secret"
        );
        assert_eq!(
            kind_key(&json!({"apiVersion": "apps/v1", "kind": "Deployment"})),
            "apps/Deployment"
        );
        assert_eq!(kind_key(&json!({"kind": "Odd"})), "Odd");
    }
}
