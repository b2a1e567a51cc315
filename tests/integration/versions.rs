//! Versions (issue 16): each released version of a Service is published as
//! an immutable ServiceVersion; an instance pins a version, a range or a
//! channel; a move writes only what differs, is health-gated, recorded in
//! the history, rolled back automatically when asked; blocked moves say why
//! and change nothing; old versions no instance runs are collected.

use crate::harness::*;
use computenest::api::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use std::time::Duration;

fn config_map(name: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": format!("$(instance.name)-{name}")}, "data": {"v": value}})
}

/// A Service `name` at `version` whose template is `objects`; `extra`
/// is merged into its spec.
fn versioned(name: &str, type_: &str, version: &str, objects: Vec<Value>, extra: Value) -> Service {
    let mut spec = json!({"type": type_, "version": version, "template": {"objects": objects}});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({
        "apiVersion": "computenest.dev/v1alpha1", "kind": "Service",
        "metadata": {"name": name}, "spec": spec
    }))
    .expect("service")
}

fn pinned(name: &str, isv: &str, product: &str, spec: Value) -> ServiceInstance {
    let mut s = json!({"serviceRef": {"kind": "Service", "namespace": isv, "name": product}});
    if let (Some(m), Some(e)) = (s.as_object_mut(), spec.as_object()) {
        for (k, v) in e {
            m.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({
        "apiVersion": "computenest.dev/v1alpha1", "kind": "ServiceInstance",
        "metadata": {"name": name}, "spec": s
    }))
    .expect("instance")
}

fn status(inst: &ServiceInstance) -> ServiceInstanceStatus {
    inst.status.clone().unwrap_or_default()
}

fn condition(inst: &ServiceInstance, type_: &str) -> Option<Condition> {
    status(inst)
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_)
}

/// Waits until the instance satisfies `check`; returns it.
async fn wait_instance(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    check: impl Fn(&ServiceInstance) -> bool,
) -> ServiceInstance {
    let api = Api::<ServiceInstance>::namespaced(client.clone(), ns);
    let mut last = String::new();
    let found = tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            if let Ok(i) = api.get(name).await {
                let fresh = status(&i).observed_generation == i.metadata.generation;
                if fresh && check(&i) {
                    return i;
                }
                last = serde_json::to_string(&i.status).unwrap_or_default();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| {
        panic!("timed out waiting for {ns}/{name}: {what}; last status: {last}")
    })
}

async fn versions_of(client: &Client, ns: &str, service: &str) -> Vec<ServiceVersion> {
    Api::<ServiceVersion>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("list versions")
        .items
        .into_iter()
        .filter(|v| v.spec.service == service)
        .collect()
}

async fn wait_published(client: &Client, ns: &str, service: &str, version: &str) -> ServiceVersion {
    wait_for(
        &format!("version {version} of {ns}/{service} is published"),
        DEADLINE,
        || async {
            versions_of(client, ns, service)
                .await
                .into_iter()
                .find(|v| v.spec.version == version)
        },
    )
    .await
}

async fn config_map_data(client: &Client, ns: &str, name: &str) -> Option<(String, String)> {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .expect("get config map")?;
    let v = cm.data.as_ref()?.get("v")?.clone();
    Some((v, cm.resource_version().unwrap_or_default()))
}

async fn pin(client: &Client, ns: &str, name: &str, version: &str) {
    merge::<ServiceInstance>(client, ns, name, json!({"spec": {"version": version}}))
        .await
        .expect("pin the version");
}

fn last_change(inst: &ServiceInstance) -> Option<VersionChange> {
    status(inst).history.last().cloned()
}

#[tokio::test]
async fn an_instance_moves_between_versions_by_its_pin_writing_only_the_difference() {
    let (client, t) = controller_and_namespaces(&["isv", "cust"]).await;
    let (isv, cust) = (t.ns(0), t.ns(1));
    let v1 = vec![
        config_map("same", "1"),
        config_map("changed", "1"),
        config_map("gone", "1"),
    ];
    put(
        &client,
        isv,
        &versioned("app", "Private", "1.0.0", v1, json!({})),
    )
    .await;
    let snapshot = wait_published(&client, isv, "app", "1.0.0").await;
    // The snapshot is immutable: even the controller's own kind refuses an edit of its content.
    let edit = Api::<ServiceVersion>::namespaced(client.clone(), isv)
        .patch(
            &snapshot.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"content": {"template": {"objects": []}}}})),
        )
        .await;
    assert!(
        matches!(&edit, Err(kube::Error::Api(s)) if s.code == 422 && s.message.contains("immutable")),
        "a published version's content must be immutable: {edit:?}"
    );

    buy(
        &client,
        cust,
        &pinned("shop", isv, "app", json!({"version": "1.0.0"})),
    )
    .await;
    let (_, same_rv) = config_map_data(&client, cust, "shop-same")
        .await
        .expect("same");

    // Version 2 changes one object, adds one and drops one.
    let v2 = vec![
        config_map("same", "1"),
        config_map("changed", "2"),
        config_map("added", "1"),
    ];
    put(
        &client,
        isv,
        &versioned("app", "Private", "2.0.0", v2, json!({})),
    )
    .await;
    wait_published(&client, isv, "app", "2.0.0").await;
    let offered = wait_instance(&client, cust, "shop", "2.0.0 offered with a dry run", |i| {
        status(i).available_upgrades == ["2.0.0"] && status(i).upgrade.is_some()
    })
    .await;
    let preview = status(&offered).upgrade.expect("preview");
    assert_eq!(preview.to, "2.0.0");
    assert_eq!(preview.create, ["ConfigMap/shop-added"]);
    assert_eq!(preview.update, ["ConfigMap/shop-changed"]);
    assert_eq!(preview.delete, ["ConfigMap/shop-gone"]);
    assert_eq!(status(&offered).version.as_deref(), Some("1.0.0"));
    assert_eq!(
        condition(&offered, "UpgradeAvailable").map(|c| c.status),
        Some("True".into())
    );
    // A Manual instance pinned to 1.0.0 stays there.
    assert_eq!(
        config_map_data(&client, cust, "shop-changed")
            .await
            .map(|d| d.0),
        Some("1".into())
    );

    pin(&client, cust, "shop", "2.0.0").await;
    let up = wait_instance(&client, cust, "shop", "upgraded to 2.0.0", |i| {
        status(i).version.as_deref() == Some("2.0.0")
            && last_change(i).is_some_and(|h| h.result == VersionChangeResult::Succeeded)
    })
    .await;
    let h = last_change(&up).expect("history");
    assert_eq!(
        (h.from.as_str(), h.to.as_str(), h.type_),
        ("1.0.0", "2.0.0", VersionChangeType::Upgrade)
    );
    assert!(h.end_time.is_some());
    assert_eq!(status(&up).phase, Some(Phase::Deployed));
    wait_gone::<ConfigMap>(&client, cust, "shop-gone").await;
    assert_eq!(
        config_map_data(&client, cust, "shop-added")
            .await
            .map(|d| d.0),
        Some("1".into())
    );
    assert_eq!(
        config_map_data(&client, cust, "shop-changed")
            .await
            .map(|d| d.0),
        Some("2".into())
    );
    assert_eq!(
        config_map_data(&client, cust, "shop-same")
            .await
            .map(|d| d.1),
        Some(same_rv.clone()),
        "an object both versions write alike is not written by the upgrade"
    );

    // Rolling back is pinning the previous version.
    pin(&client, cust, "shop", "1.0.0").await;
    let back = wait_instance(&client, cust, "shop", "rolled back to 1.0.0", |i| {
        status(i).version.as_deref() == Some("1.0.0")
            && last_change(i).is_some_and(|h| {
                h.type_ == VersionChangeType::Rollback && h.result == VersionChangeResult::Succeeded
            })
    })
    .await;
    assert_eq!(status(&back).history.len(), 2);
    wait_gone::<ConfigMap>(&client, cust, "shop-added").await;
    assert_eq!(
        config_map_data(&client, cust, "shop-gone")
            .await
            .map(|d| d.0),
        Some("1".into())
    );
    assert_eq!(
        config_map_data(&client, cust, "shop-same")
            .await
            .map(|d| d.1),
        Some(same_rv)
    );
    t.cleanup().await;
}

#[tokio::test]
async fn a_blocked_move_says_why_shows_its_dry_run_and_changes_nothing() {
    let (client, t) = controller_and_namespaces(&["isv", "cust"]).await;
    let (isv, cust) = (t.ns(0), t.ns(1));
    put(
        &client,
        isv,
        &versioned(
            "app",
            "Private",
            "1.0.0",
            vec![config_map("c", "1")],
            json!({}),
        ),
    )
    .await;
    wait_published(&client, isv, "app", "1.0.0").await;
    buy(
        &client,
        cust,
        &pinned("shop", isv, "app", json!({"version": "1.0.0"})),
    )
    .await;

    // 2.0.0 may only be reached from 1.5 and later.
    let only_from = json!({"release": {"upgrade": {"from": ["^1.5"]}}});
    put(
        &client,
        isv,
        &versioned(
            "app",
            "Private",
            "2.0.0",
            vec![config_map("c", "2")],
            only_from,
        ),
    )
    .await;
    wait_published(&client, isv, "app", "2.0.0").await;
    pin(&client, cust, "shop", "2.0.0").await;
    let blocked = wait_instance(
        &client,
        cust,
        "shop",
        "UpgradeBlocked UnsupportedFromVersion",
        |i| condition(i, "UpgradeBlocked").is_some_and(|c| c.reason == "UnsupportedFromVersion"),
    )
    .await;
    assert_eq!(status(&blocked).version.as_deref(), Some("1.0.0"));
    assert_eq!(status(&blocked).phase, Some(Phase::Deployed));
    assert_eq!(
        status(&blocked).upgrade.and_then(|u| u.blocked).as_deref(),
        Some("UnsupportedFromVersion")
    );
    assert_eq!(
        config_map_data(&client, cust, "shop-c").await.map(|d| d.0),
        Some("1".into())
    );
    wait_event(&client, cust, "UpgradeBlocked", "shop").await;

    // 3.0.0 needs a parameter the instance does not set.
    let needs = json!({
        "parameters": [{"name": "region", "type": "String"}],
        "release": {"upgrade": {"requiredParameters": ["region"]}}
    });
    put(
        &client,
        isv,
        &versioned(
            "app",
            "Private",
            "3.0.0",
            vec![config_map("c", "$(params.region)")],
            needs,
        ),
    )
    .await;
    wait_published(&client, isv, "app", "3.0.0").await;
    pin(&client, cust, "shop", "3.0.0").await;
    let missing = wait_instance(
        &client,
        cust,
        "shop",
        "UpgradeBlocked MissingParameters",
        |i| condition(i, "UpgradeBlocked").is_some_and(|c| c.reason == "MissingParameters"),
    )
    .await;
    let preview = status(&missing).upgrade.expect("dry run");
    assert_eq!(preview.missing_parameters, ["region"]);
    assert_eq!(preview.to, "3.0.0");
    let why = condition(&missing, "UpgradeBlocked")
        .map(|c| c.message)
        .unwrap_or_default();
    assert!(
        why.contains("region") && why.contains("stays at version 1.0.0"),
        "{why}"
    );
    // Given the parameter, the move goes ahead.
    merge::<ServiceInstance>(
        &client,
        cust,
        "shop",
        json!({"spec": {"parameters": {"region": "eu"}}}),
    )
    .await
    .expect("set region");
    wait_instance(&client, cust, "shop", "upgraded to 3.0.0", |i| {
        status(i).version.as_deref() == Some("3.0.0") && condition(i, "UpgradeBlocked").is_none()
    })
    .await;
    assert_eq!(
        config_map_data(&client, cust, "shop-c").await.map(|d| d.0),
        Some("eu".into())
    );

    // A new purchase of a draft version is refused with NotPublished.
    let draft = json!({"release": {"state": "Draft"}});
    put(
        &client,
        isv,
        &versioned("app", "Private", "4.0.0", vec![config_map("c", "4")], draft),
    )
    .await;
    put(
        &client,
        cust,
        &pinned("early", isv, "app", json!({"version": "4.0.0"})),
    )
    .await;
    let refused: ServiceInstance =
        wait_ready(&client, cust, "early", "False", "NotPublished").await;
    assert!(status(&refused).applied_objects.is_empty());
    assert!(
        versions_of(&client, isv, "app")
            .await
            .iter()
            .all(|v| v.spec.version != "4.0.0")
    );
    t.cleanup().await;
}

#[tokio::test]
async fn a_channel_follows_new_versions_and_withdrawn_or_old_ones_go() {
    let (client, t) = controller_and_namespaces(&["isv", "cust"]).await;
    let (isv, cust) = (t.ns(0), t.ns(1));
    let stable_and_beta =
        json!({"release": {"channels": ["stable", "beta"]}, "versionHistoryLimit": 0});
    put(
        &client,
        isv,
        &versioned(
            "app",
            "Private",
            "1.0.0",
            vec![config_map("c", "1")],
            stable_and_beta,
        ),
    )
    .await;
    wait_published(&client, isv, "app", "1.0.0").await;
    let follow = json!({"channel": "beta", "updatePolicy": "Automatic"});
    buy(&client, cust, &pinned("beta", isv, "app", follow)).await;
    buy(
        &client,
        cust,
        &pinned("old", isv, "app", json!({"version": "1.0.0"})),
    )
    .await;

    // 1.1.0 on beta only: the Automatic beta instance moves by itself.
    let beta_only = json!({"release": {"channels": ["beta"]}, "versionHistoryLimit": 0});
    put(
        &client,
        isv,
        &versioned(
            "app",
            "Private",
            "1.1.0",
            vec![config_map("c", "1.1")],
            beta_only,
        ),
    )
    .await;
    let moved = wait_instance(&client, cust, "beta", "followed beta to 1.1.0", |i| {
        status(i).version.as_deref() == Some("1.1.0")
            && last_change(i).is_some_and(|h| h.result == VersionChangeResult::Succeeded)
    })
    .await;
    assert_eq!(
        last_change(&moved).map(|h| h.type_),
        Some(VersionChangeType::Upgrade)
    );
    assert_eq!(
        config_map_data(&client, cust, "beta-c").await.map(|d| d.0),
        Some("1.1".into())
    );

    // 1.2.0 as a draft is not followed; 1.0.0 withdrawn: a new purchase of
    // it is refused, the instance that runs it keeps running.
    let draft = json!({
        "release": {"state": "Draft", "channels": ["beta"]}, "versionHistoryLimit": 0,
        "versions": [{"version": "1.0.0", "state": "Withdrawn"}]
    });
    put(
        &client,
        isv,
        &versioned(
            "app",
            "Private",
            "1.2.0",
            vec![config_map("c", "1.2")],
            draft,
        ),
    )
    .await;
    let svc = wait_for("the Service lists its versions", DEADLINE, || async {
        let s = Api::<Service>::namespaced(client.clone(), isv)
            .get("app")
            .await
            .ok()?;
        let st = s.status.clone()?;
        (st.observed_generation == s.metadata.generation
            && st
                .versions
                .iter()
                .any(|v| v.version == "1.0.0" && v.state == VersionState::Withdrawn))
        .then_some(s)
    })
    .await;
    let states: Vec<(String, VersionState)> = svc
        .status
        .unwrap_or_default()
        .versions
        .into_iter()
        .map(|v| (v.version, v.state))
        .collect();
    assert!(
        states.contains(&("1.2.0".into(), VersionState::Draft)),
        "{states:?}"
    );
    put(
        &client,
        cust,
        &pinned("late", isv, "app", json!({"version": "1.0.0"})),
    )
    .await;
    wait_ready::<ServiceInstance>(&client, cust, "late", "False", "NotPublished").await;
    let old: ServiceInstance = wait_deployed(&client, cust, "old").await;
    assert_eq!(status(&old).version.as_deref(), Some("1.0.0"));
    assert_eq!(
        Api::<ServiceInstance>::namespaced(client.clone(), cust)
            .get("beta")
            .await
            .ok()
            .and_then(|i| i.status.and_then(|s| s.version))
            .as_deref(),
        Some("1.1.0")
    );

    // With no history kept, a version no instance runs goes once nothing
    // runs it: 1.0.0 stays while "old" runs it, and goes with it.
    Api::<ServiceInstance>::namespaced(client.clone(), cust)
        .delete("old", &Default::default())
        .await
        .expect("delete old");
    wait_gone::<ServiceInstance>(&client, cust, "old").await;
    // Deleting the refused instance too, so that no status names 1.0.0.
    Api::<ServiceInstance>::namespaced(client.clone(), cust)
        .delete("late", &Default::default())
        .await
        .expect("delete late");
    wait_gone::<ServiceInstance>(&client, cust, "late").await;
    // The Service looks again at least every minute; an edit wakes it at once.
    merge::<Service>(
        &client,
        isv,
        "app",
        json!({"metadata": {"annotations": {"touch": "1"}}}),
    )
    .await
    .expect("wake the Service");
    wait_for(
        "version 1.0.0 is collected",
        Duration::from_secs(90),
        || async {
            let vs = versions_of(&client, isv, "app").await;
            (!vs.iter().any(|v| v.spec.version == "1.0.0")).then_some(())
        },
    )
    .await;
    assert!(
        versions_of(&client, isv, "app")
            .await
            .iter()
            .any(|v| v.spec.version == "1.1.0"),
        "a version an instance runs is kept"
    );
    t.cleanup().await;
}

#[tokio::test]
async fn a_failed_upgrade_rolls_back_by_itself_when_asked() {
    let (client, t) = controller_and_namespaces(&["isv", "cust"]).await;
    let (isv, cust) = (t.ns(0), t.ns(1));
    let deployment = |simulate: Option<&str>| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "$(instance.name)"},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                        "template": crate::health::pod("web", simulate, "Always")}})
    };
    let fast = json!({"progressDeadlineSeconds": 10});
    put(
        &client,
        isv,
        &versioned(
            "app",
            "Private",
            "1.0.0",
            vec![deployment(None)],
            fast.clone(),
        ),
    )
    .await;
    wait_published(&client, isv, "app", "1.0.0").await;
    let spec = json!({"version": "1.0.0", "rollbackOnFailure": true});
    put(&client, cust, &pinned("shop", isv, "app", spec)).await;
    wait_ready_within::<ServiceInstance>(
        &client,
        cust,
        "shop",
        "True",
        "Deployed",
        Duration::from_secs(120),
    )
    .await;

    put(
        &client,
        isv,
        &versioned(
            "app",
            "Private",
            "2.0.0",
            vec![deployment(Some("never-ready"))],
            fast,
        ),
    )
    .await;
    wait_published(&client, isv, "app", "2.0.0").await;
    pin(&client, cust, "shop", "2.0.0").await;
    let upgrading = wait_instance(&client, cust, "shop", "Upgrading", |i| {
        status(i).phase == Some(Phase::Upgrading)
    })
    .await;
    assert_eq!(
        condition(&upgrading, "Upgrading").map(|c| c.status),
        Some("True".into())
    );
    assert_eq!(
        condition(&upgrading, "Reconciling").map(|c| c.status),
        Some("True".into())
    );
    let rolled = wait_instance(
        &client,
        cust,
        "shop",
        "rolled back after the failed upgrade",
        |i| {
            condition(i, "RolledBack").is_some_and(|c| c.status == "True")
                && status(i).phase == Some(Phase::Deployed)
        },
    )
    .await;
    assert_eq!(status(&rolled).version.as_deref(), Some("1.0.0"));
    let history = status(&rolled).history;
    let kinds: Vec<_> = history
        .iter()
        .map(|h| (h.type_, h.result, h.to.clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            (
                VersionChangeType::Upgrade,
                VersionChangeResult::Failed,
                "2.0.0".to_string()
            ),
            (
                VersionChangeType::AutomaticRollback,
                VersionChangeResult::Succeeded,
                "1.0.0".to_string()
            ),
        ]
    );
    assert!(
        history[0].message.contains("progress deadline"),
        "{}",
        history[0].message
    );
    // The failed version is not tried again for the same spec.
    assert_eq!(
        condition(&rolled, "UpgradeBlocked").map(|c| c.reason),
        Some("UpgradeFailed".into())
    );
    wait_event(&client, cust, "UpgradeFailed", "shop").await;
    t.cleanup().await;
}

/// Attack: a customer who can write its instance's status claims to run a
/// version it does not, to take an upgrade path the ISV ruled out for the
/// resources the ISV owns. The running version of a managed instance is
/// read from its namespace's label, which only the controller writes.
#[tokio::test]
async fn a_forged_running_version_does_not_open_an_upgrade_path() {
    let (client, t) = controller_and_namespaces(&["isv", "cust"]).await;
    let (isv, cust) = (t.ns(0), t.ns(1));
    let publish = |version: &str, extra: Value| {
        versioned(
            "app",
            "FullyManaged",
            version,
            vec![config_map("c", version)],
            extra,
        )
    };
    put(&client, isv, &publish("1.0.0", json!({}))).await;
    wait_published(&client, isv, "app", "1.0.0").await;
    buy(
        &client,
        cust,
        &pinned("shop", isv, "app", json!({"version": "1.0.0"})),
    )
    .await;
    put(&client, isv, &publish("1.5.0", json!({}))).await;
    wait_published(&client, isv, "app", "1.5.0").await;
    put(
        &client,
        isv,
        &publish("2.0.0", json!({"release": {"upgrade": {"from": ["^1.5"]}}})),
    )
    .await;
    wait_published(&client, isv, "app", "2.0.0").await;

    let mallory = "mallory";
    allow(&client, cust, mallory, json!([
        {"apiGroups": ["computenest.dev"], "resources": ["serviceinstances/status"], "verbs": ["patch", "get"]},
        {"apiGroups": ["computenest.dev"], "resources": ["serviceinstances"], "verbs": ["get", "patch"]}
    ]))
    .await;
    let as_customer = impersonate(mallory, &[]).await;
    let api = Api::<ServiceInstance>::namespaced(as_customer.clone(), cust);
    api.patch(
        "shop",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"version": "2.0.0"}})),
    )
    .await
    .expect("the customer pins 2.0.0");
    let blocked = wait_instance(
        &client,
        cust,
        "shop",
        "UpgradeBlocked UnsupportedFromVersion",
        |i| condition(i, "UpgradeBlocked").is_some_and(|c| c.reason == "UnsupportedFromVersion"),
    )
    .await;
    let target = target_namespace(&blocked);
    // The forgery: status says 1.5.0 runs.
    let forged = api
        .patch_status(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"version": "1.5.0"}})),
        )
        .await
        .expect("the customer writes its status");
    let forged_rv: u64 = forged
        .resource_version()
        .unwrap_or_default()
        .parse()
        .unwrap_or(0);
    // The controller answers the forged status (it writes status back);
    // the move stays blocked and nothing of the ISV's changes.
    let after = wait_instance(
        &client,
        cust,
        "shop",
        "status written again after the forgery",
        |i| {
            i.resource_version()
                .unwrap_or_default()
                .parse::<u64>()
                .unwrap_or(0)
                > forged_rv
                && status(i).version.as_deref() != Some("1.5.0")
        },
    )
    .await;
    assert_eq!(
        status(&after).version.as_deref(),
        Some("1.0.0"),
        "{:?}",
        status(&after)
    );
    assert!(
        status(&after).history.is_empty(),
        "{:?}",
        status(&after).history
    );
    assert_eq!(
        condition(&after, "UpgradeBlocked").map(|c| c.reason),
        Some("UnsupportedFromVersion".into())
    );
    assert_eq!(
        config_map_data(&client, &target, "shop-c")
            .await
            .map(|d| d.0),
        Some("1.0.0".into())
    );
    t.cleanup().await;
}

/// `kubectl computenest upgrade` and `rollback` as the customer, with its
/// own rights only: plain writes of spec.version, carried out by the
/// controller; the trace shows the version that runs.
#[tokio::test]
async fn the_customer_upgrades_and_rolls_back_with_the_plugin() {
    let (client, t) = controller_and_namespaces(&["isv", "cust"]).await;
    let (isv, cust) = (t.ns(0), t.ns(1));
    put(
        &client,
        isv,
        &versioned(
            "app",
            "Private",
            "1.0.0",
            vec![config_map("c", "1")],
            json!({}),
        ),
    )
    .await;
    wait_published(&client, isv, "app", "1.0.0").await;
    buy(
        &client,
        cust,
        &pinned("shop", isv, "app", json!({"version": "1.0.0"})),
    )
    .await;
    put(
        &client,
        isv,
        &versioned(
            "app",
            "Private",
            "2.0.0",
            vec![config_map("c", "2")],
            json!({}),
        ),
    )
    .await;
    wait_published(&client, isv, "app", "2.0.0").await;

    let carol = format!("carol-{cust}");
    allow(&client, cust, &carol, json!([
        {"apiGroups": ["computenest.dev"], "resources": ["serviceinstances"], "verbs": ["get", "list", "patch"]}
    ]))
    .await;
    let plugin = crate::plugin::plugin;
    let (ok, out, err) = plugin(&[
        "upgrade", "shop", "--to", "2.0.0", "-n", cust, "--as", &carol,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("pinned to 2.0.0"), "{out}");
    wait_instance(&client, cust, "shop", "upgraded to 2.0.0", |i| {
        status(i).version.as_deref() == Some("2.0.0")
            && last_change(i).is_some_and(|h| h.result == VersionChangeResult::Succeeded)
    })
    .await;
    let (ok, out, err) = plugin(&["trace", "cnsi/shop", "-n", cust, "--as", &carol]);
    assert!(ok, "{err}");
    let row = out
        .lines()
        .find(|l| l.contains("ServiceInstance/shop"))
        .unwrap_or_default();
    assert!(row.contains("2.0.0"), "{out}");

    let (ok, out, err) = plugin(&["rollback", "shop", "-n", cust, "--as", &carol]);
    assert!(ok, "{err}");
    assert!(out.contains("pinned back to 1.0.0"), "{out}");
    wait_instance(&client, cust, "shop", "rolled back to 1.0.0", |i| {
        status(i).version.as_deref() == Some("1.0.0")
            && last_change(i).is_some_and(|h| {
                h.type_ == VersionChangeType::Rollback && h.result == VersionChangeResult::Succeeded
            })
    })
    .await;
    assert_eq!(
        config_map_data(&client, cust, "shop-c").await.map(|d| d.0),
        Some("1".into())
    );
    // Nothing left to roll back: the plugin says so and writes nothing.
    let (ok, _, err) = plugin(&["rollback", "shop", "-n", cust, "--as", &carol]);
    assert!(!ok && err.contains("no successful upgrade"), "{err}");
    t.cleanup().await;
}

/// Automatic upgrades are rolled out in stages: at most `maxInProgress`
/// instances move at once, and the first failures halt the rollout; the
/// instances that have not moved stay where they are, and the halt shows on
/// the ServiceVersion.
#[tokio::test]
async fn an_automatic_rollout_moves_a_few_at_a_time_and_halts_on_failure() {
    let (client, t) = controller_and_namespaces(&["isv", "cust"]).await;
    let (isv, cust) = (t.ns(0), t.ns(1));
    let deployment = |simulate: Option<&str>| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "$(instance.name)"},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                        "template": crate::health::pod("web", simulate, "Always")}})
    };
    let staged = json!({"progressDeadlineSeconds": 10, "rollout": {"maxInProgress": "2", "failureThreshold": 1}});
    put(
        &client,
        isv,
        &versioned(
            "app",
            "Private",
            "1.0.0",
            vec![deployment(None)],
            staged.clone(),
        ),
    )
    .await;
    wait_published(&client, isv, "app", "1.0.0").await;
    let names: Vec<String> = (0..5).map(|i| format!("f{i}")).collect();
    for n in &names {
        put(
            &client,
            cust,
            &pinned(
                n,
                isv,
                "app",
                json!({"version": "^1", "updatePolicy": "Automatic"}),
            ),
        )
        .await;
    }
    for n in &names {
        wait_ready_within::<ServiceInstance>(
            &client,
            cust,
            n,
            "True",
            "Deployed",
            Duration::from_secs(120),
        )
        .await;
    }

    // 1.1.0 never becomes ready.
    put(
        &client,
        isv,
        &versioned(
            "app",
            "Private",
            "1.1.0",
            vec![deployment(Some("never-ready"))],
            staged,
        ),
    )
    .await;
    wait_published(&client, isv, "app", "1.1.0").await;
    let halted = wait_for(
        "the rollout of 1.1.0 is halted",
        Duration::from_secs(120),
        || async {
            let v = versions_of(&client, isv, "app")
                .await
                .into_iter()
                .find(|v| v.spec.version == "1.1.0")?;
            let r = v.status?.rollout?;
            (r.state == "Halted").then_some(r)
        },
    )
    .await;
    assert!(
        halted.failed >= 1 && halted.in_progress + halted.failed <= 2,
        "{halted:?}"
    );
    let api = Api::<ServiceInstance>::namespaced(client.clone(), cust);
    let mut tried = 0;
    for n in &names {
        let i = wait_instance(&client, cust, n, "settled on a version", |i| {
            !status(i)
                .history
                .iter()
                .any(|h| h.result == VersionChangeResult::InProgress)
        })
        .await;
        if status(&i).history.iter().any(|h| h.to == "1.1.0") {
            tried += 1;
        } else {
            // Never moved: still 1.0.0, told why.
            assert_eq!(status(&i).version.as_deref(), Some("1.0.0"));
            let c = condition(&i, "UpgradeBlocked").expect("blocked");
            assert!(
                c.reason == "RolloutHalted" || c.reason == "RolloutWaiting",
                "{c:?}"
            );
        }
    }
    assert!(
        (1..=2).contains(&tried),
        "at most maxInProgress=2 instances tried 1.1.0, got {tried}"
    );
    // Those that never moved say the rollout is halted (once they look again).
    for n in &names {
        let i = api.get(n).await.expect("instance");
        if status(&i).history.iter().any(|h| h.to == "1.1.0") {
            continue;
        }
        wait_instance(&client, cust, n, "UpgradeBlocked RolloutHalted", |i| {
            condition(i, "UpgradeBlocked").is_some_and(|c| c.reason == "RolloutHalted")
        })
        .await;
    }
    t.cleanup().await;
}

/// A distributor resells only the versions of its channel: its product's
/// source version is the newest there, its buyers get those, and a pin
/// outside it is refused.
#[tokio::test]
async fn a_distributor_resells_only_the_versions_of_its_channel() {
    use crate::fixtures::*;
    let (client, t) = controller_and_namespaces(&["isv", "dist", "cust"]).await;
    let (isv, dist, cust) = (t.ns(0), t.ns(1), t.ns(2));
    let both =
        json!({"release": {"channels": ["stable", "beta"]}, "distribution": {"enabled": true}});
    put(
        &client,
        isv,
        &versioned("app", "Private", "1.0.0", vec![config_map("c", "1")], both),
    )
    .await;
    wait_published(&client, isv, "app", "1.0.0").await;
    put(&client, isv, &approved_grant("g", "app", dist)).await;
    let mut product = derived("app-plus", isv, "app");
    product.spec.source.channel = Some("stable".into());
    resell(&client, dist, &product).await;
    let through = |name: &str, version: Option<&str>| -> ServiceInstance {
        let mut spec = json!({"serviceRef": {"kind": "DerivedService", "namespace": dist, "name": "app-plus"}});
        if let Some(v) = version {
            spec["version"] = json!(v);
        }
        serde_json::from_value(json!({
            "apiVersion": "computenest.dev/v1alpha1", "kind": "ServiceInstance",
            "metadata": {"name": name}, "spec": spec
        }))
        .expect("instance")
    };
    buy(&client, cust, &through("shop", None)).await;

    let beta = json!({"release": {"channels": ["beta"]}, "distribution": {"enabled": true}});
    put(
        &client,
        isv,
        &versioned(
            "app",
            "Private",
            "1.1.0",
            vec![config_map("c", "1.1")],
            beta,
        ),
    )
    .await;
    wait_published(&client, isv, "app", "1.1.0").await;
    let sold = wait_for("the product still resells 1.0.0", DEADLINE, || async {
        let d = Api::<DerivedService>::namespaced(client.clone(), dist)
            .get("app-plus")
            .await
            .ok()?;
        let st = d.status.clone()?;
        (st.observed_generation == d.metadata.generation).then_some(st)
    })
    .await;
    assert_eq!(sold.source_version.as_deref(), Some("1.0.0"));
    put(&client, cust, &through("early", Some("1.1.0"))).await;
    let refused: ServiceInstance =
        wait_ready(&client, cust, "early", "False", "VersionNotResold").await;
    assert!(status(&refused).applied_objects.is_empty());
    let shop: ServiceInstance = wait_deployed(&client, cust, "shop").await;
    assert_eq!(status(&shop).version.as_deref(), Some("1.0.0"));
    t.cleanup().await;
}

/// Writes of the controller's own counter, by target.
async fn writes_by_target() -> std::collections::BTreeMap<String, f64> {
    let addr = CONTROLLER_ADDR.get().cloned().unwrap_or_default();
    let body = http_get(&addr, "/metrics").await.unwrap_or_default();
    let mut out = std::collections::BTreeMap::new();
    for l in body
        .lines()
        .filter(|l| l.starts_with("computenest_api_writes_total{"))
    {
        if let Some((labels, v)) = l.rsplit_once(' ') {
            *out.entry(labels.to_string()).or_insert(0.0) += v.parse::<f64>().unwrap_or(0.0);
        }
    }
    out
}

/// Waits until the controller has written nothing for two seconds.
async fn quiet() -> std::collections::BTreeMap<String, f64> {
    let mut last = writes_by_target().await;
    let mut since = std::time::Instant::now();
    let start = std::time::Instant::now();
    while since.elapsed() < Duration::from_secs(2) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the controller never went quiet"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = writes_by_target().await;
        if now != last {
            last = now;
            since = std::time::Instant::now();
        }
    }
    last
}

/// An upgrade writes exactly what differs (one object changed, one added,
/// one removed) and the instance's status: 4 writes per instance. Alone
/// (ignored in the parallel run): the controller's counter is global.
#[tokio::test]
#[ignore = "counts the controller's writes: runs alone, after the parallel tests"]
async fn an_upgrade_writes_the_difference_and_the_status_only() {
    let (client, t) = controller_and_namespaces(&["isv", "cust"]).await;
    let (isv, cust) = (t.ns(0), t.ns(1));
    let v1 = vec![
        config_map("a", "1"),
        config_map("b", "1"),
        config_map("c", "1"),
    ];
    put(
        &client,
        isv,
        &versioned("app", "Private", "1.0.0", v1, json!({})),
    )
    .await;
    wait_published(&client, isv, "app", "1.0.0").await;
    let n = 20;
    for i in 0..n {
        buy(
            &client,
            cust,
            &pinned(&format!("u{i}"), isv, "app", json!({"version": "1.0.0"})),
        )
        .await;
    }
    let v2 = vec![
        config_map("a", "1"),
        config_map("b", "2"),
        config_map("e", "1"),
    ];
    put(
        &client,
        isv,
        &versioned("app", "Private", "2.0.0", v2, json!({})),
    )
    .await;
    wait_published(&client, isv, "app", "2.0.0").await;
    for i in 0..n {
        wait_instance(&client, cust, &format!("u{i}"), "offered 2.0.0", |i| {
            status(i).available_upgrades == ["2.0.0"]
        })
        .await;
    }
    let before = quiet().await;
    for i in 0..n {
        pin(&client, cust, &format!("u{i}"), "2.0.0").await;
    }
    for i in 0..n {
        wait_instance(&client, cust, &format!("u{i}"), "upgraded", |i| {
            status(i).version.as_deref() == Some("2.0.0")
                && last_change(i).is_some_and(|h| h.result == VersionChangeResult::Succeeded)
        })
        .await;
    }
    let after = quiet().await;
    let delta: std::collections::BTreeMap<&String, f64> = after
        .iter()
        .map(|(k, v)| (k, v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d > 0.0)
        .collect();
    let total: f64 = delta.values().sum();
    // The counter is the whole controller's: a few writes of what an earlier
    // test left behind (its namespaces going) may land in the window. One
    // write more per move would be n more.
    let slack = (n / 4) as f64;
    assert!(
        (4.0 * n as f64..=4.0 * n as f64 + slack).contains(&total),
        "writes per instance {} (want 3 objects + status): {delta:?}",
        total / n as f64
    );
    // And back: the same difference, the other way.
    for i in 0..n {
        pin(&client, cust, &format!("u{i}"), "1.0.0").await;
    }
    for i in 0..n {
        wait_instance(&client, cust, &format!("u{i}"), "rolled back", |i| {
            status(i).version.as_deref() == Some("1.0.0")
                && last_change(i).is_some_and(|h| {
                    h.type_ == VersionChangeType::Rollback
                        && h.result == VersionChangeResult::Succeeded
                })
        })
        .await;
    }
    let back = quiet().await;
    let delta: std::collections::BTreeMap<&String, f64> = back
        .iter()
        .map(|(k, v)| (k, v - after.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d > 0.0)
        .collect();
    let total: f64 = delta.values().sum();
    assert!(
        (4.0 * n as f64..=4.0 * n as f64 + slack).contains(&total),
        "rollback writes per instance {} (want 3 objects + status): {delta:?}",
        total / n as f64
    );
    t.cleanup().await;
}
