//! Grants, applications, derived services and scenario enforcement, end to end.

use crate::fixtures::*;
use crate::harness::*;
use computenest::api::*;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use std::time::Duration;

async fn set_decision(client: &Client, ns: &str, grant: &str, spec: serde_json::Value) {
    merge::<DistributionGrant>(client, ns, grant, json!({ "spec": spec }))
        .await
        .expect("the ISV edits its grant");
}

async fn patch_service(client: &Client, ns: &str, name: &str, spec: serde_json::Value) {
    merge::<Service>(client, ns, name, json!({ "spec": spec }))
        .await
        .expect("the ISV edits its Service");
}

#[tokio::test]
async fn every_row_of_the_scenario_table_and_the_invalid_combination() {
    let (client, t) = controller_and_namespaces(&["isv", "dist"]).await;
    let (isv, dist) = (t.ns(0), t.ns(1));
    for svc in [
        service("priv"),
        service("fm-listed").fully_managed().listed(),
        service("fm-unlisted").fully_managed(),
    ] {
        put(&client, isv, &svc.automatic()).await;
    }
    let rows = [
        (
            "s1",
            "priv",
            "Private",
            "Scenario1",
            Settlement::Offline,
            Party::Customer,
        ),
        (
            "s2",
            "priv",
            "FullyManaged",
            "Scenario2",
            Settlement::Offline,
            Party::Distributor,
        ),
        (
            "s3",
            "fm-listed",
            "FullyManaged",
            "Scenario3",
            Settlement::Online,
            Party::Isv,
        ),
        (
            "s4",
            "fm-unlisted",
            "FullyManaged",
            "Scenario4",
            Settlement::Offline,
            Party::Isv,
        ),
    ];
    for (name, source, type_, ..) in rows {
        put(&client, dist, &derived_manifest(name, isv, source, type_)).await;
    }
    put(&client, dist, &derived("bad", isv, "fm-listed")).await;
    for (name, _, _, scenario, settlement, owner) in rows {
        let ds: DerivedService = wait_ready(&client, dist, name, "True", "Sellable").await;
        let s = ds.status.expect("status");
        assert_eq!(s.scenario.as_deref(), Some(scenario), "{name}");
        assert_eq!(s.settlement, Some(settlement), "{name}");
        assert_eq!(s.resource_owner, Some(owner), "{name}");
        assert_eq!(s.plans, vec!["basic".to_string(), "pro".to_string()]);
        assert_eq!(s.source_version.as_deref(), Some("1.0.0"), "{name}");
    }
    let bad: DerivedService = wait_ready(&client, dist, "bad", "False", "InvalidScenario").await;
    assert_message_contains(&bad, "cannot be resold as a Private DerivedService");
    // The invalid combination never applied for a grant.
    let grants = Api::<DistributionGrant>::namespaced(client.clone(), isv)
        .list(&Default::default())
        .await
        .expect("list");
    assert!(
        grants
            .items
            .iter()
            .all(|g| g.spec.service_name != "fm-listed"
                || g.spec.distributor_namespace != dist
                || !g.name_any().is_empty())
    );
    assert_eq!(
        grants.items.len(),
        3,
        "one automatic application per valid source: {:?}",
        grants
            .items
            .iter()
            .map(|g| g.name_any())
            .collect::<Vec<_>>()
    );
    t.cleanup().await;
}

#[tokio::test]
async fn apply_approve_reject_revoke_and_expire() {
    let (client, t) = controller_and_namespaces(&["isv", "dist"]).await;
    let (isv, dist) = (t.ns(0), t.ns(1));
    put(&client, isv, &service("db").fully_managed().listed()).await;
    let db_plus = derived("db-plus", isv, "db").fully_managed();
    put(&client, dist, &db_plus).await;

    // The application: a Pending grant with a deterministic name in the ISV's namespace.
    let ds: DerivedService = wait_ready(&client, dist, "db-plus", "False", "GrantPending").await;
    let grant_name = format!("db.{dist}");
    assert_eq!(
        ds.status.and_then(|s| s.grant).map(|g| g.name),
        Some(grant_name.clone())
    );
    let grants = Api::<DistributionGrant>::namespaced(client.clone(), isv);
    let g = grants
        .get(&grant_name)
        .await
        .expect("the application grant exists");
    assert_eq!(g.spec.decision, Decision::Pending);
    assert_eq!(g.spec.distributor_namespace, dist);
    wait_ready::<DistributionGrant>(&client, isv, &grant_name, "False", "Pending").await;

    // Approve.
    set_decision(&client, isv, &grant_name, json!({"decision": "Approved"})).await;
    wait_ready::<DerivedService>(&client, dist, "db-plus", "True", "Sellable").await;
    wait_ready::<DistributionGrant>(&client, isv, &grant_name, "True", "Approved").await;

    // Revoke: new sales stop.
    set_decision(
        &client,
        isv,
        &grant_name,
        json!({"decision": "Revoked", "reason": "contract ended"}),
    )
    .await;
    let ds: DerivedService = wait_ready(&client, dist, "db-plus", "False", "GrantRevoked").await;
    assert_message_contains(&ds, "contract ended");

    // Approve again, with an expiry a few seconds ahead: it takes effect on time.
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(4);
    let expires = expires.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    set_decision(
        &client,
        isv,
        &grant_name,
        json!({"decision": "Approved", "expiresAt": expires}),
    )
    .await;
    wait_ready::<DerivedService>(&client, dist, "db-plus", "True", "Sellable").await;
    wait_ready::<DerivedService>(&client, dist, "db-plus", "False", "GrantExpired").await;
    wait_ready::<DistributionGrant>(&client, isv, &grant_name, "False", "Expired").await;

    // Reject a second product's application; the ISV's decision stands.
    put(&client, isv, &service("cache")).await;
    put(&client, dist, &derived("cache-plus", isv, "cache")).await;
    wait_ready::<DerivedService>(&client, dist, "cache-plus", "False", "GrantPending").await;
    let cache_grant = format!("cache.{dist}");
    set_decision(
        &client,
        isv,
        &cache_grant,
        json!({"decision": "Rejected", "reason": "not a partner"}),
    )
    .await;
    wait_ready::<DerivedService>(&client, dist, "cache-plus", "False", "GrantRejected").await;
    // The distributor deletes and re-creates its product: the rejection is not overwritten.
    Api::<DerivedService>::namespaced(client.clone(), dist)
        .delete("cache-plus", &DeleteParams::default())
        .await
        .expect("delete");
    put(&client, dist, &derived("cache-plus", isv, "cache")).await;
    wait_ready::<DerivedService>(&client, dist, "cache-plus", "False", "GrantRejected").await;
    assert_eq!(
        grants.get(&cache_grant).await.expect("grant").spec.decision,
        Decision::Rejected
    );

    // Deleting an approved grant revokes: sales stop and no new application is written,
    // even where approval is Automatic.
    put(&client, isv, &service("auto").automatic()).await;
    resell(&client, dist, &derived("auto-plus", isv, "auto")).await;
    grants
        .delete(&format!("auto.{dist}"), &DeleteParams::default())
        .await
        .expect("delete grant");
    let ds: DerivedService = wait_ready(&client, dist, "auto-plus", "False", "GrantRevoked").await;
    assert_message_contains(&ds, "was deleted");
    assert!(
        grants
            .get_opt(&format!("auto.{dist}"))
            .await
            .expect("get")
            .is_none(),
        "no new application"
    );
    t.cleanup().await;
}

#[tokio::test]
async fn automatic_approval_and_distribution_disabled_after_grants_exist() {
    let (client, t) = controller_and_namespaces(&["isv", "dist"]).await;
    let (isv, dist) = (t.ns(0), t.ns(1));
    put(&client, isv, &service("app").automatic()).await;
    resell(&client, dist, &derived("app-plus", isv, "app")).await;
    let g = Api::<DistributionGrant>::namespaced(client.clone(), isv)
        .get(&format!("app.{dist}"))
        .await
        .expect("grant");
    assert_eq!(
        g.spec.decision,
        Decision::Approved,
        "Automatic approval writes an Approved grant"
    );

    patch_service(
        &client,
        isv,
        "app",
        json!({"distribution": {"enabled": false}}),
    )
    .await;
    let ds: DerivedService =
        wait_ready(&client, dist, "app-plus", "False", "DistributionDisabled").await;
    assert!(ready_message(&ds).contains("ask the ISV to enable it"));
    patch_service(
        &client,
        isv,
        "app",
        json!({"distribution": {"enabled": true}}),
    )
    .await;
    wait_ready::<DerivedService>(&client, dist, "app-plus", "True", "Sellable").await;
    t.cleanup().await;
}

#[tokio::test]
async fn isv_changes_type_or_listing_and_the_scenario_follows() {
    let (client, t) = controller_and_namespaces(&["isv", "dist"]).await;
    let (isv, dist) = (t.ns(0), t.ns(1));
    let svc = service("svc").fully_managed().listed().automatic();
    put(&client, isv, &svc).await;
    put(&client, dist, &derived("fm", isv, "svc").fully_managed()).await;
    put(&client, dist, &derived("pv", isv, "svc")).await;
    let scenario = |ds: DerivedService| ds.status.and_then(|s| s.scenario).unwrap_or_default();
    assert_eq!(
        scenario(wait_ready(&client, dist, "fm", "True", "Sellable").await),
        "Scenario3"
    );
    wait_ready::<DerivedService>(&client, dist, "pv", "False", "InvalidScenario").await;

    patch_service(
        &client,
        isv,
        "svc",
        json!({"marketplace": {"listed": false}}),
    )
    .await;
    let wait_scenario = |name: &'static str, want: &'static str| {
        let client = client.clone();
        let dist = dist.to_string();
        async move {
            wait_for(&format!("{name} becomes {want}"), DEADLINE, || {
                let api = Api::<DerivedService>::namespaced(client.clone(), &dist);
                async move {
                    api.get(name)
                        .await
                        .ok()
                        .and_then(|d| d.status)
                        .and_then(|s| s.scenario)
                        .filter(|s| s == want)
                }
            })
            .await
        }
    };
    wait_scenario("fm", "Scenario4").await;
    patch_service(&client, isv, "svc", json!({"type": "Private"})).await;
    wait_scenario("fm", "Scenario2").await;
    // The private derivation became valid (Private from Private: scenario 1).
    assert_eq!(
        scenario(wait_ready(&client, dist, "pv", "True", "Sellable").await),
        "Scenario1"
    );
    patch_service(&client, isv, "svc", json!({"type": "FullyManaged"})).await;
    let pv: DerivedService = wait_ready(&client, dist, "pv", "False", "InvalidScenario").await;
    assert!(ready_message(&pv).contains("FullyManaged Service cannot be resold as a Private"));
    t.cleanup().await;
}

#[tokio::test]
async fn source_deleted_and_recreated() {
    let (client, t) = controller_and_namespaces(&["isv", "dist"]).await;
    let (isv, dist) = (t.ns(0), t.ns(1));
    put(&client, isv, &service("svc")).await;
    put(&client, isv, &approved_grant("ahead", "svc", dist)).await; // ahead of time
    put(&client, dist, &derived("d", isv, "svc").fully_managed()).await;
    let ds: DerivedService = wait_ready(&client, dist, "d", "True", "Sellable").await;
    assert_eq!(
        ds.status.and_then(|s| s.grant).map(|g| g.name).as_deref(),
        Some("ahead"),
        "the ISV's own grant is used"
    );
    Api::<Service>::namespaced(client.clone(), isv)
        .delete("svc", &DeleteParams::default())
        .await
        .expect("delete");
    wait_ready::<DerivedService>(&client, dist, "d", "False", "SourceNotFound").await;
    put(&client, isv, &service("svc")).await; // again
    wait_ready::<DerivedService>(&client, dist, "d", "True", "Sellable").await;
    // No application was written: a grant existed all along.
    let grants = Api::<DistributionGrant>::namespaced(client.clone(), isv)
        .list(&Default::default())
        .await
        .expect("list");
    assert_eq!(grants.items.len(), 1);
    t.cleanup().await;
}

/// resourceVersion of every computenest object in the given namespaces.
pub async fn resource_versions(client: &Client, namespaces: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for ns in namespaces {
        macro_rules! collect {
            ($k:ty) => {
                for o in Api::<$k>::namespaced(client.clone(), ns)
                    .list(&Default::default())
                    .await
                    .expect("list")
                    .items
                {
                    out.push((
                        format!(
                            "{}/{}/{}",
                            <$k as kube::Resource>::kind(&()),
                            ns,
                            o.name_any()
                        ),
                        o.resource_version().unwrap_or_default(),
                    ));
                }
            };
        }
        collect!(Service);
        collect!(DistributionGrant);
        collect!(DerivedService);
        collect!(ServiceInstance);
        collect!(Order);
    }
    out.sort();
    out
}

#[tokio::test]
async fn nothing_is_written_after_convergence() {
    let (client, t) = controller_and_namespaces(&["isv", "dist"]).await;
    let (isv, dist) = (t.ns(0), t.ns(1));
    put(&client, isv, &service("svc").fully_managed().listed()).await;
    put(&client, dist, &derived("d", isv, "svc").fully_managed()).await;
    put(&client, dist, &derived("pending", isv, "svc")).await;
    wait_ready::<DerivedService>(&client, dist, "d", "False", "GrantPending").await;
    wait_ready::<DerivedService>(&client, dist, "pending", "False", "InvalidScenario").await;
    wait_ready::<DistributionGrant>(&client, isv, &format!("svc.{dist}"), "False", "Pending").await;
    let before = resource_versions(&client, &[isv, dist]).await;
    tokio::time::sleep(Duration::from_secs(4)).await; // an idle interval: the thing measured, not a wait
    let after = resource_versions(&client, &[isv, dist]).await;
    assert_eq!(before, after, "objects were written while idle");
    // The controller was looking all along: a later change is processed.
    let pending = derived("pending", isv, "svc").fully_managed();
    put(&client, dist, &pending).await;
    wait_ready::<DerivedService>(&client, dist, "pending", "False", "GrantPending").await;
    t.cleanup().await;
}

/// Every shared-watch subscriber must be polled: an idle one stalls the
/// reflector once its 1024-event buffer is full, and then nothing is
/// reconciled any more. Push well over a buffer of events through one kind
/// and check the controller still answers.
#[tokio::test]
async fn more_events_than_a_subscriber_buffer_do_not_stall_the_controller() {
    use futures::StreamExt;
    let (client, t) = controller_and_namespaces(&["isv", "dist"]).await;
    let (isv, dist) = (t.ns(0), t.ns(1));
    put(&client, isv, &service("busy").automatic()).await;
    let services = Api::<Service>::namespaced(client.clone(), isv);
    futures::stream::iter(0..1300)
        .for_each_concurrent(16, |i| {
            let services = services.clone();
            async move {
                let p = json!({"metadata": {"annotations": {"bump": i.to_string()}}});
                services
                    .patch("busy", &PatchParams::default(), &Patch::Merge(&p))
                    .await
                    .expect("bump");
            }
        })
        .await;
    // Still reconciling: a new product built on it becomes sellable.
    resell(&client, dist, &derived("after", isv, "busy")).await;
    t.cleanup().await;
}

/// A grant that names a Service which is not in its own namespace allows
/// nothing, and says so (the decision stays as the ISV wrote it); it turns
/// Ready when the Service appears, and says so again when it goes. A second
/// grant for the same pair that does not decide says that it does not, until
/// the one that decides is deleted.
#[tokio::test]
async fn a_grant_reports_a_missing_service_and_a_grant_that_overrides_it() {
    let (client, t) = controller_and_namespaces(&["isv", "dist"]).await;
    let (isv, dist) = (t.ns(0), t.ns(1));
    // A Service of that name exists, but in another namespace: it does not count.
    put(&client, dist, &service("later")).await;
    put(&client, isv, &approved_grant("g", "later", dist)).await;
    let g: DistributionGrant = wait_ready(&client, isv, "g", "False", "ServiceNotFound").await;
    let msg = ready_message(&g);
    assert!(
        msg.contains(&format!("Service later does not exist in namespace {isv}")),
        "{msg}"
    );
    assert_eq!(g.spec.decision, Decision::Approved, "the decision stands");
    assert_eq!(g.status.and_then(|s| s.state), Some(GrantState::Approved));
    wait_event(&client, isv, "ServiceNotFound", "g").await;

    // The Service appears: the grant is Ready without any edit of its own.
    put(&client, isv, &service("later")).await;
    wait_ready::<DistributionGrant>(&client, isv, "g", "True", "Approved").await;

    // Distribution disabled on the Service: the approval allows nothing, and says so.
    patch_service(
        &client,
        isv,
        "later",
        json!({"distribution": {"enabled": false}}),
    )
    .await;
    let g: DistributionGrant = wait_ready(&client, isv, "g", "False", "DistributionDisabled").await;
    assert_message_contains(&g, "spec.distribution.enabled is false");
    patch_service(
        &client,
        isv,
        "later",
        json!({"distribution": {"enabled": true}}),
    )
    .await;
    wait_ready::<DistributionGrant>(&client, isv, "g", "True", "Approved").await;

    // A second grant for the same pair, Revoked: g still decides (an approval
    // wins), so the second one must not claim that sales stopped.
    put(&client, isv, &approved_grant("h", "later", dist)).await;
    set_decision(&client, isv, "h", json!({"decision": "Revoked"})).await;
    let h: DistributionGrant = wait_ready(&client, isv, "h", "False", "Superseded").await;
    assert!(
        ready_message(&h).contains(&format!(
            "DistributionGrant {isv}/g also covers Service later for {dist}"
        )),
        "{}",
        ready_message(&h)
    );
    resell(&client, dist, &derived("d", isv, "later")).await;
    // g goes: h decides now, and says so; sales stop.
    Api::<DistributionGrant>::namespaced(client.clone(), isv)
        .delete("g", &DeleteParams::default())
        .await
        .expect("delete g");
    wait_ready::<DistributionGrant>(&client, isv, "h", "False", "Revoked").await;
    wait_ready::<DerivedService>(&client, dist, "d", "False", "GrantRevoked").await;

    // The Service is deleted: the remaining grant reports it.
    Api::<Service>::namespaced(client.clone(), isv)
        .delete("later", &DeleteParams::default())
        .await
        .expect("delete service");
    wait_ready::<DistributionGrant>(&client, isv, "h", "False", "ServiceNotFound").await;
    t.cleanup().await;
}

/// A distributor's default for a parameter that a plan it sells sets would be
/// ignored by that plan's instances: the DerivedService is refused
/// (InvalidOverride, naming the parameter and the plan), so is every sale of
/// it; selling only plans that leave the parameter open makes the default
/// apply; an ISV's later plan change that pins it refuses it again.
#[tokio::test]
async fn a_default_for_a_parameter_a_sold_plan_sets_is_refused() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let (client, t) = controller_and_namespaces(&["isv", "dist", "cust"]).await;
    let (isv, dist, cust) = (t.ns(0), t.ns(1), t.ns(2));
    // Plans: "basic" leaves replicas open, "pro" sets it to 3.
    put(&client, isv, &service("svc").automatic()).await;
    let mut ds = derived("pinned", isv, "svc");
    ds.spec.overrides.parameter_defaults = [("replicas".to_string(), json!(2))].into();
    put(&client, dist, &ds).await;
    let got: DerivedService = wait_ready(&client, dist, "pinned", "False", "InvalidOverride").await;
    let msg = ready_message(&got);
    assert!(msg.contains("override parameterDefaults.replicas"), "{msg}");
    assert!(
        msg.contains("plan \"pro\" of the source Service sets parameter \"replicas\""),
        "{msg}"
    );
    assert!(!msg.contains("basic"), "{msg}");
    wait_event(&client, dist, "InvalidOverride", "pinned").await;

    // A sale of the refused product deploys nothing.
    put(&client, cust, &derived_instance("site", dist, "pinned")).await;
    wait_ready::<ServiceInstance>(&client, cust, "site", "False", "InvalidOverride").await;
    let configs = Api::<ConfigMap>::namespaced(client.clone(), cust);
    assert!(
        configs.get_opt("site-config").await.expect("get").is_none(),
        "nothing deployed from a refused product"
    );

    // Selling only "basic": the default applies to every sale.
    ds.spec.overrides.plans = vec!["basic".into()];
    put(&client, dist, &ds).await;
    let got: DerivedService = wait_ready(&client, dist, "pinned", "True", "Sellable").await;
    assert_eq!(got.status.map(|s| s.plans), Some(vec!["basic".to_string()]));
    wait_deployed(&client, cust, "site").await;
    let cm = configs.get("site-config").await.expect("config map");
    assert_eq!(
        cm.data.and_then(|d| d.get("replicas").cloned()).as_deref(),
        Some("n=2"),
        "the distributor's default is used"
    );

    // The ISV pins replicas in "basic" too: the default would be ignored again, so it is refused.
    patch_service(
        &client,
        isv,
        "svc",
        json!({"plans": [{"name": "basic", "parameters": {"replicas": 1}}, {"name": "pro", "parameters": {"replicas": 3}}]}),
    )
    .await;
    let got: DerivedService = wait_ready(&client, dist, "pinned", "False", "InvalidOverride").await;
    assert!(
        ready_message(&got)
            .contains("plan \"basic\" of the source Service sets parameter \"replicas\""),
        "{}",
        ready_message(&got)
    );
    t.cleanup().await;
}

/// The API server's `date-time` check takes expiries that are not RFC 3339
/// (an offset of +99:00); such a grant must not allow sales for ever: it
/// allows none, and both the grant and the product say why.
#[tokio::test]
async fn an_expiry_the_controller_cannot_read_allows_no_sales() {
    let (client, t) = controller_and_namespaces(&["isv", "dist"]).await;
    let (isv, dist) = (t.ns(0), t.ns(1));
    put(&client, isv, &service("svc")).await;
    let mut g = approved_grant("g", "svc", dist);
    g.spec.expires_at = Some("2030-01-01T00:00:00+99:00".into());
    apply(&client, isv, &g)
        .await
        .expect("the API server takes this expiry");
    put(&client, dist, &derived("d", isv, "svc")).await;
    let got: DistributionGrant = wait_ready(&client, isv, "g", "False", "InvalidExpiry").await;
    assert_message_contains(&got, "+99:00");
    let ds: DerivedService = wait_ready(&client, dist, "d", "False", "GrantInvalid").await;
    assert_message_contains(&ds, "is not an RFC 3339 time");
    set_decision(
        &client,
        isv,
        "g",
        json!({"expiresAt": "2099-01-01T00:00:00+02:00"}),
    )
    .await;
    wait_ready::<DistributionGrant>(&client, isv, "g", "True", "Approved").await;
    wait_ready::<DerivedService>(&client, dist, "d", "True", "Sellable").await;
    t.cleanup().await;
}

/// An access policy where it cannot apply is accepted (the product still
/// sells) but named in the Ready message, never silently ignored.
#[tokio::test]
async fn an_access_policy_that_cannot_apply_is_named_on_the_object() {
    let (client, t) = controller_and_namespaces(&["isv", "dist"]).await;
    let (isv, dist) = (t.ns(0), t.ns(1));
    let policy: AccessPolicy =
        serde_json::from_value(json!({"approval": "Automatic"})).expect("policy");
    let mut private = service("priv").automatic();
    private.spec.access = Some(policy.clone());
    put(&client, isv, &private).await;
    let fm = service("fm").fully_managed().listed().automatic();
    put(&client, isv, &fm).await;
    let svc: Service = wait_ready(&client, isv, "priv", "True", "Valid").await;
    assert_message_contains(&svc, "spec.access has no effect on a Private Service");
    let mut s3 = derived("s3", isv, "fm").fully_managed();
    s3.spec.access = Some(policy.clone());
    put(&client, dist, &s3).await;
    let mut s2 = derived("s2", isv, "priv").fully_managed();
    s2.spec.access = Some(policy);
    put(&client, dist, &s2).await;
    let got: DerivedService = wait_ready(&client, dist, "s3", "True", "Sellable").await;
    assert_message_contains(&got, "spec.access has no effect in Scenario3");
    // In scenario 2 the distributor owns the resources: its policy applies, no note.
    let got: DerivedService = wait_ready(&client, dist, "s2", "True", "Sellable").await;
    assert!(
        !ready_message(&got).contains("note"),
        "{}",
        ready_message(&got)
    );
    t.cleanup().await;
}

/// Locking a required parameter that has no default and that a sold plan does
/// not set would leave every buyer of that plan with "is required" for a
/// parameter they may not set: the DerivedService is refused instead, and
/// accepted once the distributor gives the parameter a default.
#[tokio::test]
async fn locking_a_required_parameter_nobody_can_set_is_refused() {
    let (client, t) = controller_and_namespaces(&["isv", "dist"]).await;
    let (isv, dist) = (t.ns(0), t.ns(1));
    let mut svc = service("svc").automatic();
    svc.spec.parameters.push(
        serde_json::from_value(json!({"name": "adminEmail", "type": "String", "required": true}))
            .expect("parameter"),
    );
    put(&client, isv, &svc).await;
    let mut ds = derived("locked", isv, "svc");
    ds.spec.overrides.locked_parameters = vec!["adminEmail".into()];
    put(&client, dist, &ds).await;
    let got: DerivedService = wait_ready(&client, dist, "locked", "False", "InvalidOverride").await;
    let msg = ready_message(&got);
    assert!(
        msg.contains("parameter \"adminEmail\" is required, has no default and buyers may not set it, so no instance of plans \"basic\", \"pro\" could be deployed"),
        "{msg}"
    );
    ds.spec.overrides.parameter_defaults =
        [("adminEmail".to_string(), json!("ops@reseller.example"))].into();
    put(&client, dist, &ds).await;
    wait_ready::<DerivedService>(&client, dist, "locked", "True", "Sellable").await;
    t.cleanup().await;
}
