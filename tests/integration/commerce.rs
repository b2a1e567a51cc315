//! Commerce (issue 17): trials that expire and suspend, conversion in place,
//! subscriptions renewed, usage reported by the instance's own account,
//! decided and rated, and the Orders of each term and usage period at both
//! tiers of scenario 3, written once. The test controller's commercial day
//! lasts DAY (harness: COMPUTENEST_COMMERCE_DAY_SECONDS).

use crate::fixtures::*;
use crate::harness::*;
use base64::Engine;
use computenest::api::*;
use ed25519_dalek::pkcs8::DecodePublicKey;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use std::time::Duration;

/// A priced Service: plan basic by subscription (10 per day), pay-as-you-go
/// (0.5 per vCPU, rated every 3 days, records up to a day late) and a
/// one-day trial.
fn priced(name: &str, trial_on_expiry: &str) -> Service {
    let mut s = service(name).fully_managed().listed().automatic();
    s.spec.commerce = Some(
        serde_json::from_value(json!({
            "currency": "EUR",
            "dimensions": [{"name": "VirtualCpu", "unit": "vCPU-hour", "aggregation": "Sum"}],
            "lateWindowSeconds": 86400
        }))
        .expect("commerce"),
    );
    if let Some(basic) = s.spec.plans.iter_mut().find(|p| p.name == "basic") {
        basic.pricing = Some(
            serde_json::from_value(json!({
                "subscription": {"price": "10", "period": "P1D"},
                "payAsYouGo": {"prices": [{"dimension": "VirtualCpu", "price": "0.5"}], "period": "P3D"},
                "trial": {"durationDays": 1, "onExpiry": trial_on_expiry, "retentionDays": 1}
            }))
            .expect("pricing"),
        );
    }
    s
}

fn billed(mut i: ServiceInstance, billing: Value) -> ServiceInstance {
    i.spec.billing = Some(serde_json::from_value(billing).expect("billing"));
    i
}

/// The set-up most commerce tests share: the ISV's priced Service `db` (its
/// trial ending with `on_expiry`) and the customer's instance `shop` of it,
/// billed as `billing`, Deployed.
async fn priced_purchase(
    on_expiry: &str,
    billing: Value,
) -> (Client, crate::harness::TestNamespaces, ServiceInstance) {
    let (client, ns) = controller_and_namespaces(&["isv", "cust"]).await;
    put(&client, ns.ns(0), &priced("db", on_expiry)).await;
    let shop = buy(
        &client,
        ns.ns(1),
        &billed(service_instance("shop", ns.ns(0), "db"), billing),
    )
    .await;
    (client, ns, shop)
}

/// Waits (at most a minute: the test's days are 6 s) until the instance's
/// term ended and it is suspended; returns it.
async fn wait_suspended(client: &Client, ns: &str, name: &str) -> ServiceInstance {
    wait_ready_within(
        client,
        ns,
        name,
        "False",
        "Suspended",
        Duration::from_secs(60),
    )
    .await
}

fn commerce(i: &ServiceInstance) -> CommerceStatus {
    i.status
        .as_ref()
        .and_then(|s| s.commerce.clone())
        .expect("the instance shows its commerce status")
}

/// Checks the license Secret's signature against the public key the
/// controller publishes; returns the license.
async fn verified_license(client: &Client, ns: &str, name: &str) -> Value {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), "default")
        .get("computenest-license-public-key")
        .await
        .expect("the public key is published");
    let pem = cm
        .data
        .and_then(|d| d.get("public.pem").cloned())
        .expect("public.pem");
    let key = VerifyingKey::from_public_key_pem(&pem).expect("an Ed25519 public key");
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .expect("the license Secret exists");
    let data = secret.data.expect("license data");
    let payload = data.get("license.json").expect("license.json").0.clone();
    let sig = base64::engine::general_purpose::STANDARD
        .decode(&data.get("signature").expect("signature").0)
        .expect("base64 signature");
    key.verify(&payload, &Signature::from_slice(&sig).expect("64 bytes"))
        .expect("the license verifies with the published key");
    serde_json::from_slice(&payload).expect("license JSON")
}

async fn deployment_replicas(client: &Client, ns: &str, name: &str) -> Option<i32> {
    Api::<Deployment>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .ok()
        .and_then(|d| d.spec)
        .and_then(|s| s.replicas)
}

#[tokio::test]
async fn a_trial_expires_suspended_and_converting_it_resumes_in_place() {
    let (client, ns, shop) =
        priced_purchase("Suspend", json!({"mode": "Subscription", "trial": true})).await;
    let (isv, cust) = (ns.ns(0), ns.ns(1));
    let c = commerce(&shop);
    assert!(c.trial, "{c:?}");
    assert_eq!(c.amount, "0");
    // A one-day trial is within the default notice (7 and 1 days).
    assert_eq!(c.biz_status, BizStatus::Expiring);
    wait_event(&client, cust, "Expiring", "shop").await;
    let target = target_namespace(&shop);
    let license = verified_license(&client, &target, "shop-license").await;
    assert_eq!(license["trial"], true);
    assert_eq!(license["instance"], json!(shop.uid()));
    assert_eq!(license["expireTime"], json!(c.expire_time));
    assert_eq!(deployment_replicas(&client, &target, "shop").await, Some(1));

    // The day passes: suspended, scaled to zero, no logon URL, license says so.
    let suspended = wait_suspended(&client, cust, "shop").await;
    assert_eq!(commerce(&suspended).biz_status, BizStatus::Suspended);
    assert_eq!(
        suspended.status.as_ref().and_then(|s| s.logon_url.clone()),
        None
    );
    assert_eq!(deployment_replicas(&client, &target, "shop").await, Some(0));
    assert_eq!(
        verified_license(&client, &target, "shop-license").await["status"],
        "Suspended"
    );
    wait_event(&client, cust, "Suspended", "shop").await;

    // Converted: the same objects, scaled back, paid from the conversion.
    merge::<ServiceInstance>(
        &client,
        cust,
        "shop",
        json!({"spec": {"billing": {"trial": false}}}),
    )
    .await
    .expect("convert");
    let paid = wait_deployed(&client, cust, "shop").await;
    let c = commerce(&paid);
    assert!(!c.trial);
    assert!(c.ledger.paid_from.is_some(), "{c:?}");
    assert_eq!(
        target_namespace(&paid),
        target,
        "converted in place, not redeployed elsewhere"
    );
    assert_eq!(deployment_replicas(&client, &target, "shop").await, Some(1));
    assert_eq!(
        c.amount, "10",
        "the trial term is free, the first paid one 10: {c:?}"
    );

    // The namespace had its trial of the product: a second one is refused.
    put(
        &client,
        cust,
        &billed(
            service_instance("again", isv, "db"),
            json!({"mode": "Subscription", "trial": true}),
        ),
    )
    .await;
    let again: ServiceInstance =
        wait_ready(&client, cust, "again", "False", "TrialAlreadyUsed").await;
    assert!(
        again.status.and_then(|s| s.owner).is_none(),
        "nothing was deployed"
    );
    ns.cleanup().await;
}

/// Orders of `kind` for the instance `uid` in `ns`.
async fn orders_of(client: &Client, ns: &str, uid: &str, kind: OrderKind) -> Vec<Order> {
    Api::<Order>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("orders")
        .items
        .into_iter()
        .filter(|o| o.spec.instance.uid == uid && o.spec.kind == kind)
        .collect()
}

/// A record of the instance named `meter` (every metered instance of these
/// tests is), with the UID `uid`.
fn usage_record(name: &str, uid: &str, q: i64, start: &str, end: &str) -> UsageRecord {
    usage_record_of("meter", name, uid, q, start, end)
}

fn usage_record_of(
    instance_name: &str,
    name: &str,
    uid: &str,
    q: i64,
    start: &str,
    end: &str,
) -> UsageRecord {
    serde_json::from_value(json!({
        "apiVersion": "computenest.dev/v1alpha1", "kind": "UsageRecord",
        "metadata": {"name": name},
        "spec": {"instance": uid, "instanceName": instance_name, "dimension": "VirtualCpu", "quantity": q, "windowStart": start, "windowEnd": end}
    }))
    .expect("usage record")
}

async fn record_result(client: &Client, ns: &str, name: &str) -> (UsageResult, String) {
    let api = Api::<UsageRecord>::namespaced(client.clone(), ns);
    wait_for(
        &format!("UsageRecord {ns}/{name} decided"),
        DEADLINE,
        || {
            let api = api.clone();
            async move {
                let r = api.get(name).await.ok()?;
                let s = r.status?;
                let reason = s.conditions.first()?.reason.clone();
                Some((s.result?, reason))
            }
        },
    )
    .await
}

#[tokio::test]
async fn scenario_3_usage_is_reported_decided_rated_and_settled_once_at_both_tiers() {
    let (client, ns) = controller_and_namespaces(&["isv", "dist", "cust"]).await;
    let (isv, dist, cust) = (ns.ns(0), ns.ns(1), ns.ns(2));
    put(&client, isv, &priced("db", "Suspend")).await;
    let mut product = derived("shop", isv, "db").fully_managed();
    product.spec.overrides.prices = vec![
        serde_json::from_value(json!({"plan": "basic", "subscription": "15",
            "payAsYouGo": [{"dimension": "VirtualCpu", "price": "0.75"}]}))
        .expect("prices"),
    ];
    resell(&client, dist, &product).await;
    let meter = buy(
        &client,
        cust,
        &billed(
            derived_instance("meter", dist, "shop"),
            json!({"mode": "PayAsYouGo"}),
        ),
    )
    .await;
    let sub = buy(
        &client,
        cust,
        &billed(
            derived_instance("sub", dist, "shop"),
            json!({"mode": "Subscription", "autoRenew": true}),
        ),
    )
    .await;
    let (uid, target) = (meter.uid().expect("uid"), target_namespace(&meter));
    let created: jiff::Timestamp = meter
        .creation_timestamp()
        .map(|t| t.0.to_string())
        .and_then(|t| t.parse().ok())
        .expect("created");
    let at = |ms: i64| (created + jiff::SignedDuration::from_millis(ms)).to_string();
    // The software reports with the instance's metering account: create only.
    let reporter = impersonate(
        &format!("system:serviceaccount:{target}:meter-metering"),
        &[
            "system:serviceaccounts",
            &format!("system:serviceaccounts:{target}"),
            "system:authenticated",
        ],
    )
    .await;
    let records = Api::<UsageRecord>::namespaced(reporter.clone(), &target);
    let pp = PostParams::default();
    wait_for("the metering account may create records", DEADLINE, || {
        let records = records.clone();
        let r = usage_record("r1", &uid, 4, &at(100), &at(600));
        let pp = pp.clone();
        async move { records.create(&pp, &r).await.ok().map(|_| ()) }
    })
    .await;
    for r in [
        usage_record("r2-duplicate", &uid, 4, &at(100), &at(600)),
        usage_record("r3-overlap", &uid, 9, &at(500), &at(700)),
        usage_record(
            "r4-other-instance",
            &sub.uid().expect("uid"),
            9,
            &at(800),
            &at(900),
        ),
        usage_record("r5", &uid, 2, &at(1000), &at(1200)),
    ] {
        records
            .create(&pp, &r)
            .await
            .expect("the metering account creates a record");
    }
    // Create only: it cannot change or delete what it reported.
    let denied = records
        .delete("r1", &Default::default())
        .await
        .expect_err("no delete");
    assert!(
        matches!(denied, kube::Error::Api(ref s) if s.code == 403),
        "{denied:?}"
    );
    // The customer cannot report in the seller's namespace.
    let customer = impersonate("mallory", &["system:authenticated"]).await;
    let refused = Api::<UsageRecord>::namespaced(customer, &target)
        .create(&pp, &usage_record("forged", &uid, 1, &at(1300), &at(1400)))
        .await
        .expect_err("the customer may not report");
    assert!(
        matches!(refused, kube::Error::Api(ref s) if s.code == 403),
        "{refused:?}"
    );
    assert_eq!(
        record_result(&client, &target, "r1").await,
        (UsageResult::Accepted, "Accepted".into())
    );
    assert_eq!(
        record_result(&client, &target, "r2-duplicate").await,
        (UsageResult::Duplicate, "Duplicate".into())
    );
    assert_eq!(
        record_result(&client, &target, "r3-overlap").await,
        (UsageResult::Rejected, "Overlap".into())
    );
    assert_eq!(
        record_result(&client, &target, "r4-other-instance").await,
        (UsageResult::Rejected, "NotThisInstance".into())
    );
    assert_eq!(
        record_result(&client, &target, "r5").await,
        (UsageResult::Accepted, "Accepted".into())
    );
    // A negative quantity never reaches the controller.
    let negative = records
        .create(
            &pp,
            &usage_record("negative", &uid, -1, &at(1300), &at(1400)),
        )
        .await
        .expect_err("negative quantity");
    assert!(
        matches!(negative, kube::Error::Api(ref s) if s.code == 422),
        "{negative:?}"
    );

    // The first usage period (3 days, and the late day) closes: one Order at each tier, with
    // each tier's amount (6 vCPU at 0.75 to the customer, 0.5 to the distributor).
    // (Both tiers' Orders are looked for together: the second is written
    // just after the first.)
    let (sale, resale) = wait_for(
        "the usage Orders of period 1 at both tiers",
        Duration::from_secs(90),
        || {
            let client = client.clone();
            let uid = uid.clone();
            async move {
                let sale = orders_of(&client, dist, &uid, OrderKind::Usage).await;
                let resale = orders_of(&client, isv, &uid, OrderKind::Usage).await;
                (!sale.is_empty() && !resale.is_empty()).then_some((sale, resale))
            }
        },
    )
    .await;
    assert_eq!(sale.len(), 1, "{sale:?}");
    let p = sale[0].spec.period.clone().expect("period");
    assert_eq!(
        (p.index, p.amount.as_str(), p.currency.as_str()),
        (1, "4.5", "EUR")
    );
    assert_eq!(p.usage.first().map(|u| u.quantity), Some(6));
    assert_eq!(resale.len(), 1, "{resale:?}");
    assert_eq!(
        resale[0].spec.period.as_ref().map(|p| p.amount.as_str()),
        Some("3")
    );
    assert_eq!(resale[0].spec.buyer.party, Party::Distributor);
    // A record for the closed period is refused.
    records
        .create(&pp, &usage_record("r6-late", &uid, 1, &at(1500), &at(1600)))
        .await
        .expect("created");
    let (result, reason) = record_result(&client, &target, "r6-late").await;
    assert_eq!(result, UsageResult::Rejected);
    assert!(reason == "Late" || reason == "PeriodClosed", "{reason}");

    // The subscription renews by itself each day: a term Order per day at
    // each tier (15 and 10), never two for the same term.
    let sub_uid = sub.uid().expect("uid");
    let terms = wait_for(
        "two term Orders of the subscription",
        Duration::from_secs(60),
        || {
            let client = client.clone();
            let sub_uid = sub_uid.clone();
            async move {
                let o = orders_of(&client, dist, &sub_uid, OrderKind::Term).await;
                (o.len() >= 2).then_some(o)
            }
        },
    )
    .await;
    let mut indexes: Vec<u32> = terms
        .iter()
        .filter_map(|o| o.spec.period.as_ref().map(|p| p.index))
        .collect();
    indexes.sort_unstable();
    indexes.dedup();
    assert_eq!(indexes.len(), terms.len(), "one Order per term: {terms:?}");
    assert!(
        terms
            .iter()
            .all(|o| o.spec.period.as_ref().is_some_and(|p| p.amount == "15"))
    );
    let isv_terms = orders_of(&client, isv, &sub_uid, OrderKind::Term).await;
    assert!(
        isv_terms
            .iter()
            .all(|o| o.spec.period.as_ref().is_some_and(|p| p.amount == "10"))
    );
    wait_event(&client, cust, "Renewed", "sub").await;
    let renewed: ServiceInstance = Api::namespaced(client.clone(), cust)
        .get("sub")
        .await
        .expect("sub");
    let c = commerce(&renewed);
    assert!(c.ledger.renewed >= 1, "{c:?}");
    assert!(
        matches!(c.biz_status, BizStatus::Normal | BizStatus::Renewing),
        "{c:?}"
    );
    ns.cleanup().await;
}

/// Attack: a customer who can write its instance's status (a platform that
/// grants more than the chart's roles) forges the ledger to add renewals it
/// never bought. The ledger is sealed with the controller's key over the
/// instance's UID: the forgery is not believed and the term ends on time.
#[tokio::test]
async fn a_forged_ledger_does_not_extend_a_term() {
    let (client, ns, shop) = priced_purchase("Suspend", json!({"mode": "Subscription"})).await;
    let cust = ns.ns(1);
    let before = commerce(&shop);
    allow(
        &client,
        cust,
        "mallory",
        json!([{"apiGroups": ["computenest.dev"], "resources": ["serviceinstances/status", "serviceinstances"], "verbs": ["get", "patch", "update"]}]),
    )
    .await;
    let mallory = impersonate("mallory", &["system:authenticated"]).await;
    let api = Api::<ServiceInstance>::namespaced(mallory, cust);
    let mut forged = before.ledger.clone();
    forged.renewed = 100;
    api.patch_status(
        "shop",
        &Default::default(),
        &kube::api::Patch::Merge(json!({"status": {"commerce": {"ledger": forged, "expireTime": "2099-01-01T00:00:00Z"}}})),
    )
    .await
    .expect("mallory writes status");
    // Something makes the controller look again.
    api.patch(
        "shop",
        &Default::default(),
        &kube::api::Patch::Merge(json!({"metadata": {"annotations": {"touch": "1"}}})),
    )
    .await
    .expect("mallory touches the instance");
    let repaired = wait_for("the forged ledger is replaced", DEADLINE, || {
        let client = client.clone();
        let cust = cust.to_string();
        let expected = before.expire_time.clone();
        async move {
            let i: ServiceInstance = Api::namespaced(client, &cust).get("shop").await.ok()?;
            let c = i.status.as_ref()?.commerce.clone()?;
            (c.ledger.renewed == 0 && c.expire_time == expected).then_some(c)
        }
    })
    .await;
    assert_eq!(repaired.ledger, before.ledger);
    // And the term ends when it was bought to end.
    wait_suspended(&client, cust, "shop").await;
    ns.cleanup().await;
}

/// A metered instance of `priced` in scenario "direct fully managed", with
/// its UID, target namespace, creation time and a client acting as its
/// metering ServiceAccount.
async fn metered_instance(
    client: &Client,
    isv: &str,
    cust: &str,
    name: &str,
) -> (String, String, jiff::Timestamp, Client) {
    let inst = buy(
        client,
        cust,
        &billed(
            service_instance(name, isv, "db"),
            json!({"mode": "PayAsYouGo"}),
        ),
    )
    .await;
    let target = target_namespace(&inst);
    let created: jiff::Timestamp = inst
        .creation_timestamp()
        .map(|t| t.0.to_string())
        .and_then(|t| t.parse().ok())
        .expect("created");
    let reporter = impersonate(
        &format!("system:serviceaccount:{target}:{name}-metering"),
        &[
            "system:serviceaccounts",
            &format!("system:serviceaccounts:{target}"),
            "system:authenticated",
        ],
    )
    .await;
    // RBAC is served from caches: wait until the account may create.
    let records = Api::<UsageRecord>::namespaced(reporter.clone(), &target);
    let uid = inst.uid().expect("uid");
    let at = |ms: i64| (created + jiff::SignedDuration::from_millis(ms)).to_string();
    wait_for("the metering account may create records", DEADLINE, || {
        let records = records.clone();
        let r = usage_record("probe", &uid, 1, &at(10), &at(20));
        async move {
            records
                .create(&PostParams::default(), &r)
                .await
                .ok()
                .map(|_| ())
        }
    })
    .await;
    (uid, target, created, reporter)
}

/// Two private instances in one customer namespace: both metering accounts
/// may create UsageRecords there (RBAC cannot limit create by name). The
/// attacker is instance b's software, reporting usage for its sibling a.
/// Before the admission policy and `spec.instanceName`, its record naming
/// a's UID was accepted and billed to a.
#[tokio::test]
#[ignore = "changes cluster-wide admission (installs the usage record policy): run last and alone, cargo test --test integration -- --ignored a_sibling"]
async fn a_sibling_instance_cannot_report_usage_for_another() {
    let (client, ns) = controller_and_namespaces(&["isv", "cust"]).await;
    install_usage_record_policy(&client).await;
    let (isv, cust) = (ns.ns(0), ns.ns(1));
    let mut private = priced("db", "Suspend");
    private.spec.type_ = ServiceType::Private;
    put(&client, isv, &private).await;
    let pay_as_you_go = |name: &str| {
        billed(
            service_instance(name, isv, "db"),
            json!({"mode": "PayAsYouGo"}),
        )
    };
    let a = buy(&client, cust, &pay_as_you_go("a")).await;
    let b = buy(&client, cust, &pay_as_you_go("b")).await;
    assert_eq!(
        target_namespace(&a),
        cust,
        "a private instance lives in the customer's namespace"
    );
    assert_eq!(target_namespace(&b), cust);
    let (a_uid, b_uid) = (a.uid().expect("uid"), b.uid().expect("uid"));
    let created: jiff::Timestamp = a
        .creation_timestamp()
        .max(b.creation_timestamp())
        .map(|t| t.0.to_string())
        .and_then(|t| t.parse().ok())
        .expect("created");
    let at = |ms: i64| (created + jiff::SignedDuration::from_millis(ms)).to_string();
    let b_software = impersonate(
        &format!("system:serviceaccount:{cust}:b-metering"),
        &[
            "system:serviceaccounts",
            &format!("system:serviceaccounts:{cust}"),
            "system:authenticated",
        ],
    )
    .await;
    let records = Api::<UsageRecord>::namespaced(b_software.clone(), cust);
    let pp = PostParams::default();
    // b reports its own usage: allowed (RBAC is served from caches, so wait).
    wait_for("b's metering account may report for b", DEADLINE, || {
        let records = records.clone();
        let r = usage_record_of("b", "b-own", &b_uid, 1, &at(10), &at(20));
        let pp = pp.clone();
        async move { records.create(&pp, &r).await.ok().map(|_| ()) }
    })
    .await;
    // The policy is loaded by the API server from a watch of its own: wait
    // until it is in force (a dry run writes nothing).
    wait_for("the usage record policy is in force", DEADLINE, || {
        let records = records.clone();
        let r = usage_record_of("a", "probe-as-a", &a_uid, 50, &at(30), &at(40));
        async move {
            let dry = PostParams {
                dry_run: true,
                ..Default::default()
            };
            records.create(&dry, &r).await.is_err().then_some(())
        }
    })
    .await;
    // b names a, by name and UID, or by UID alone: refused by the API server.
    for (name, r) in [
        (
            "as-a",
            usage_record_of("a", "as-a", &a_uid, 50, &at(30), &at(40)),
        ),
        ("uid-only", {
            let mut r = usage_record_of("a", "uid-only", &a_uid, 50, &at(30), &at(40));
            r.spec.instance_name = None;
            r
        }),
    ] {
        let refused = records
            .create(&pp, &r)
            .await
            .expect_err("b's software may not report for a");
        assert!(
            matches!(refused, kube::Error::Api(ref s) if s.code == 403 || s.code == 422),
            "{name}: {refused:?}"
        );
    }
    // b under its own name with a's UID passes admission, and is rejected
    // by the controller: that UID is not b's.
    records
        .create(
            &pp,
            &usage_record_of("b", "b-with-a-uid", &a_uid, 50, &at(50), &at(60)),
        )
        .await
        .expect("admission lets b write under its own name");
    let (result, reason) = record_result(&client, cust, "b-with-a-uid").await;
    assert_eq!(
        (result, reason.as_str()),
        (UsageResult::Rejected, "NotThisInstance")
    );
    let (result, _) = record_result(&client, cust, "b-own").await;
    assert_eq!(result, UsageResult::Accepted, "b's own record counts");
    // The customer, with every right on records in its namespace, is not a
    // metering account either.
    put(
        &client,
        cust,
        &serde_json::from_value::<k8s_openapi::api::rbac::v1::Role>(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "records-admin"},
            "rules": [{"apiGroups": ["computenest.dev"], "resources": ["usagerecords"], "verbs": ["*"]}]
        }))
        .expect("role"),
    )
    .await;
    put(
        &client,
        cust,
        &serde_json::from_value::<k8s_openapi::api::rbac::v1::RoleBinding>(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "records-admin"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "records-admin"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "customer-admin"}]
        }))
        .expect("binding"),
    )
    .await;
    let customer = Api::<UsageRecord>::namespaced(
        impersonate("customer-admin", &["system:authenticated"]).await,
        cust,
    );
    // RBAC first allows the list (served from caches), then the create is
    // refused by the policy alone.
    wait_for("the customer's role is in effect", DEADLINE, || {
        let customer = customer.clone();
        async move { customer.list(&ListParams::default()).await.ok().map(|_| ()) }
    })
    .await;
    let refused = customer
        .create(
            &pp,
            &usage_record_of("a", "by-customer", &a_uid, 50, &at(70), &at(80)),
        )
        .await
        .expect_err("the customer may not report usage");
    assert!(
        matches!(refused, kube::Error::Api(ref s) if s.code == 403 || s.code == 422),
        "{refused:?}"
    );
    // Nothing was counted for a.
    let all = Api::<UsageRecord>::namespaced(client.clone(), cust)
        .list(&ListParams::default())
        .await
        .expect("records");
    assert!(
        all.items.iter().all(|r| r.spec.instance != a_uid
            || r.status.as_ref().and_then(|s| s.result) != Some(UsageResult::Accepted)),
        "a record for a was accepted: {:?}",
        all.items
            .iter()
            .map(|r| (r.name_any(), r.status.clone()))
            .collect::<Vec<_>>()
    );
    remove_usage_record_policy(&client).await;
    ns.cleanup().await;
}

/// The hostile table of usage records: each refused at the API server or
/// decided with a reason, none counted.
#[tokio::test]
async fn hostile_usage_records_are_refused_or_rejected_with_a_reason() {
    let (client, ns) = controller_and_namespaces(&["isv", "cust"]).await;
    let (isv, cust) = (ns.ns(0), ns.ns(1));
    put(&client, isv, &priced("db", "Suspend")).await;
    let (uid, target, created, reporter) = metered_instance(&client, isv, cust, "meter").await;
    let records = Api::<UsageRecord>::namespaced(reporter.clone(), &target);
    let pp = PostParams::default();
    let at = |ms: i64| (created + jiff::SignedDuration::from_millis(ms)).to_string();
    let refused_by_api = |e: kube::Error| matches!(e, kube::Error::Api(ref s) if s.code == 422 || s.code == 400 || s.code == 413);
    // Refused by the API server: negative, above 10^12, beyond an i64, a
    // window that ends before it starts, and a 1 MB record.
    for (name, quantity) in [
        ("negative", json!(-1)),
        ("too-large", json!(1_000_000_000_001i64)),
        ("overflow", json!(9_223_372_036_854_775_808u64)),
    ] {
        let body = json!({"apiVersion": "computenest.dev/v1alpha1", "kind": "UsageRecord", "metadata": {"name": name},
            "spec": {"instance": uid, "instanceName": "meter", "dimension": "VirtualCpu", "quantity": quantity, "windowStart": at(100), "windowEnd": at(200)}});
        let r = Api::<kube::api::DynamicObject>::namespaced_with(
            reporter.clone(),
            &target,
            &kube::api::ApiResource::erase::<UsageRecord>(&()),
        )
        .create(&pp, &serde_json::from_value(body).expect("body"))
        .await;
        assert!(
            r.is_err_and(refused_by_api),
            "{name} must be refused by the API server"
        );
    }
    let backwards = records
        .create(&pp, &usage_record("backwards", &uid, 1, &at(300), &at(200)))
        .await;
    assert!(
        backwards.is_err_and(refused_by_api),
        "a window ending before it starts is refused"
    );
    let mut huge = usage_record("huge", &uid, 1, &at(100), &at(200));
    huge.metadata.annotations = Some([("padding".to_string(), "x".repeat(1024 * 1024))].into());
    assert!(
        records.create(&pp, &huge).await.is_err_and(refused_by_api),
        "a 1 MB record is refused"
    );
    // Decided and rejected, each with its reason.
    let future = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600);
    let cases = [
        (
            "future",
            usage_record("future", &uid, 1, &at(100), &future.to_string()),
            "FutureWindow",
        ),
        (
            "before-start",
            usage_record("before-start", &uid, 1, &at(-5000), &at(100)),
            "BeforeStart",
        ),
        (
            "unknown-dimension",
            {
                let mut r = usage_record("unknown-dimension", &uid, 1, &at(100), &at(200));
                r.spec.dimension = "Gpu".into();
                r
            },
            "UnknownDimension",
        ),
        (
            "no-such-instance",
            usage_record(
                "no-such-instance",
                "00000000-0000-0000-0000-000000000000",
                1,
                &at(100),
                &at(200),
            ),
            "NotThisInstance",
        ),
    ];
    for (name, r, _) in &cases {
        records
            .create(&pp, r)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for (name, _, reason) in &cases {
        assert_eq!(
            record_result(&client, &target, name).await,
            (UsageResult::Rejected, reason.to_string()),
            "{name}"
        );
    }
    // The customer cannot decide a record either: its status is the controller's.
    let customer = impersonate("mallory", &["system:authenticated"]).await;
    let forged = Api::<UsageRecord>::namespaced(customer, &target)
        .patch_status(
            "future",
            &Default::default(),
            &kube::api::Patch::Merge(json!({"status": {"result": "Accepted"}})),
        )
        .await;
    assert!(
        matches!(forged, Err(kube::Error::Api(ref s)) if s.code == 403),
        "{forged:?}"
    );
    ns.cleanup().await;
}

/// A flood of 10,000 records in a minute for one instance: every one gets a
/// result, and meanwhile another customer's purchase deploys as fast as
/// ever (the records are decided inside their own instance's reconcile).
#[tokio::test]
#[ignore = "heavy (10,000 records): run alone, cargo test --test integration -- --ignored"]
async fn a_flood_of_10000_records_is_decided_without_holding_up_other_work() {
    const RECORDS: usize = 10_000;
    let (client, ns) = controller_and_namespaces(&["isv", "cust", "other"]).await;
    let (isv, cust, other) = (ns.ns(0), ns.ns(1), ns.ns(2));
    put(&client, isv, &priced("db", "Suspend")).await;
    let (uid, target, _, reporter) = metered_instance(&client, isv, cust, "meter").await;
    let records = Api::<UsageRecord>::namespaced(reporter.clone(), &target);
    let started = std::time::Instant::now();
    let flood = {
        let records = records.clone();
        let uid = uid.clone();
        tokio::spawn(async move {
            use futures::StreamExt;
            futures::stream::iter(0..RECORDS)
                .map(|i| {
                    let records = records.clone();
                    let uid = uid.clone();
                    async move {
                        let now = jiff::Timestamp::now();
                        // Every tenth repeats a window (a retry): Duplicate or Overlap.
                        let end = now
                            - jiff::SignedDuration::from_millis(if i % 10 == 0 { 500 } else { 1 });
                        let start = end - jiff::SignedDuration::from_millis(1);
                        let r = usage_record(
                            &format!("f{i:05}"),
                            &uid,
                            1,
                            &start.to_string(),
                            &end.to_string(),
                        );
                        records.create(&PostParams::default(), &r).await.is_ok()
                    }
                })
                .buffer_unordered(32)
                .filter(|ok| futures::future::ready(*ok))
                .count()
                .await
        })
    };
    // Meanwhile another customer buys: deployed within the usual deadline.
    let bought = std::time::Instant::now();
    buy(
        &client,
        other,
        &service_instance("calm", isv, "db").plan("pro"),
    )
    .await;
    let calm = bought.elapsed();
    let created = flood.await.expect("flood");
    assert_eq!(created, RECORDS, "every record was written");
    let written = started.elapsed();
    let all = Api::<UsageRecord>::namespaced(client.clone(), &target);
    let decided = wait_for(
        "every record of the flood decided",
        Duration::from_secs(240),
        || {
            let all = all.clone();
            async move {
                let l = all.list(&ListParams::default()).await.ok()?;
                let undecided = l
                    .items
                    .iter()
                    .filter(|r| r.status.as_ref().and_then(|s| s.result).is_none())
                    .count();
                (undecided == 0).then_some(l.items.len())
            }
        },
    )
    .await;
    eprintln!(
        "flood: {created} records written in {:.1} s, all {decided} decided after {:.1} s; another purchase deployed in {:.1} s meanwhile",
        written.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        calm.as_secs_f64()
    );
    assert!(
        calm < Duration::from_secs(30),
        "another purchase waited {calm:?} behind the flood"
    );
    // Leave nothing for the controller to do: the heavy tests after this one
    // count its writes.
    for (namespace, name) in [(cust, "meter"), (other, "calm")] {
        Api::<ServiceInstance>::namespaced(client.clone(), namespace)
            .delete(name, &Default::default())
            .await
            .expect("delete the instance");
    }
    for (namespace, name) in [(cust, "meter"), (other, "calm")] {
        let api = Api::<ServiceInstance>::namespaced(client.clone(), namespace);
        wait_for(
            &format!("{namespace}/{name} is gone"),
            NAMESPACE_DELETION,
            || {
                let api = api.clone();
                async move { api.get_opt(name).await.ok()?.is_none().then_some(()) }
            },
        )
        .await;
    }
    ns.cleanup().await;
}

/// Suspension withdraws access the owner granted to the customer; renewing
/// gives it back (the request's own expiry still counts).
#[tokio::test]
async fn a_suspended_instance_grants_no_access_until_renewed() {
    use k8s_openapi::api::rbac::v1::Role;
    let (client, ns) = controller_and_namespaces(&["isv", "cust"]).await;
    let (isv, cust) = (ns.ns(0), ns.ns(1));
    put(
        &client,
        isv,
        &priced("db", "Suspend").access(json!({"approval": "Automatic"})),
    )
    .await;
    let shop = buy(
        &client,
        cust,
        &billed(
            service_instance("shop", isv, "db"),
            json!({"mode": "Subscription"}),
        ),
    )
    .await;
    let target = target_namespace(&shop);
    let request: AccessRequest = serde_json::from_value(json!({
        "apiVersion": "computenest.dev/v1alpha1", "kind": "AccessRequest", "metadata": {"name": "debug"},
        "spec": {"instanceName": "shop", "subject": {"kind": "User", "name": "operator-ann"},
                 "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
                 "durationSeconds": 3600, "reason": "investigating"}
    }))
    .expect("request");
    put(&client, cust, &request).await;
    let _: AccessRequest = wait_ready(&client, cust, "debug", "True", "Active").await;
    let roles = Api::<Role>::namespaced(client.clone(), &target);
    let granted = || async {
        roles
            .list(&ListParams::default().labels("computenest.dev/access-request-name=debug"))
            .await
            .map(|l| l.items.len())
            .unwrap_or(0)
    };
    assert_eq!(
        granted().await,
        1,
        "the grant's Role is in the managed namespace"
    );
    // The one-day term ends: suspended, and the grant is removed.
    wait_suspended(&client, cust, "shop").await;
    let _: AccessRequest = wait_ready(&client, cust, "debug", "False", "InstanceSuspended").await;
    wait_for(
        "the suspended instance's grant is removed",
        DEADLINE,
        || async { (granted().await == 0).then_some(()) },
    )
    .await;
    // Renewed by hand: running again, and the access is back.
    merge::<ServiceInstance>(
        &client,
        cust,
        "shop",
        json!({"spec": {"billing": {"periods": 100}}}),
    )
    .await
    .expect("renew");
    wait_deployed(&client, cust, "shop").await;
    let _: AccessRequest = wait_ready(&client, cust, "debug", "True", "Active").await;
    ns.cleanup().await;
}

/// A trial whose product says Delete: suspended at its end, its resources
/// removed after the retention days; the instance stays, Expired.
#[tokio::test]
async fn an_unconverted_trial_is_removed_after_its_retention() {
    let (client, ns, shop) =
        priced_purchase("Delete", json!({"mode": "Subscription", "trial": true})).await;
    let cust = ns.ns(1);
    let target = target_namespace(&shop);
    wait_suspended(&client, cust, "shop").await;
    // A day of retention later: removed, the instance kept and saying so.
    let expired: ServiceInstance = wait_ready_within(
        &client,
        cust,
        "shop",
        "False",
        "Expired",
        Duration::from_secs(60),
    )
    .await;
    let st = expired.status.clone().unwrap_or_default();
    assert_eq!(st.phase, Some(Phase::Pending));
    assert!(st.applied_objects.is_empty(), "{:?}", st.applied_objects);
    wait_for(
        "the managed namespace is gone or going",
        NAMESPACE_DELETION,
        || {
            let client = client.clone();
            let target = target.clone();
            async move {
                let ns = Api::<k8s_openapi::api::core::v1::Namespace>::all(client)
                    .get_opt(&target)
                    .await
                    .ok()?;
                ns.is_none_or(|n| n.metadata.deletion_timestamp.is_some())
                    .then_some(())
            }
        },
    )
    .await;
    ns.cleanup().await;
}
