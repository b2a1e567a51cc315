//! Drift: what others change or delete of an instance's objects is written
//! again (fully managed, by default), or reported and left alone (Warn, the
//! default for what the customer owns), within seconds, without polling.

use crate::fixtures::*;
use crate::harness::*;
use computenest::api::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use std::time::Duration;

/// Repairs must start within 2 s of the change; the deadline here leaves
/// room for a loaded CI machine, and the soak/bench measure the latency.
const REPAIR: Duration = Duration::from_secs(30);

async fn config_value(client: &Client, ns: &str, name: &str) -> Option<String> {
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .ok()
        .flatten()?
        .data?
        .get("replicas")
        .cloned()
}

async fn edit_config(client: &Client, ns: &str, name: &str, value: &str) {
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"data": {"replicas": value}})),
        )
        .await
        .expect("edit");
}

async fn wait_config(client: &Client, ns: &str, name: &str, want: &str) {
    wait_for(
        &format!("ConfigMap {ns}/{name} holds {want}"),
        REPAIR,
        || async { (config_value(client, ns, name).await.as_deref() == Some(want)).then_some(()) },
    )
    .await;
}

/// A fully managed instance (Enabled by default): an edit, a deletion and
/// the deletion of the whole managed namespace are each written again, with
/// DriftDetected and DriftCorrected Events.
#[tokio::test]
async fn a_managed_instance_is_repaired_after_an_edit_a_deletion_and_its_namespace_deleted() {
    let (client, t) = controller_and_namespaces(&["isv", "cust"]).await;
    let (isv, cust) = (t.ns(0), t.ns(1));
    put(&client, isv, &service("db").fully_managed()).await;
    let inst = buy(&client, cust, &service_instance("i", isv, "db")).await;
    let managed = target_namespace(&inst);
    wait_config(&client, &managed, "i-config", "n=1").await;

    edit_config(&client, &managed, "i-config", "n=999").await;
    wait_config(&client, &managed, "i-config", "n=1").await;
    wait_event(&client, cust, "DriftCorrected", "i").await;

    Api::<ConfigMap>::namespaced(client.clone(), &managed)
        .delete("i-config", &DeleteParams::default())
        .await
        .expect("delete");
    wait_config(&client, &managed, "i-config", "n=1").await;

    Api::<Namespace>::all(client.clone())
        .delete(&managed, &DeleteParams::default())
        .await
        .expect("delete the managed namespace");
    // Made again (once the old one is gone), with everything in it.
    wait_for(
        "the managed namespace and its objects are back",
        Duration::from_secs(90),
        || async {
            let ns = Api::<Namespace>::all(client.clone())
                .get_opt(&managed)
                .await
                .ok()??;
            if ns.metadata.deletion_timestamp.is_some() {
                return None;
            }
            (config_value(&client, &managed, "i-config").await.as_deref() == Some("n=1"))
                .then_some(())
        },
    )
    .await;
    let inst = wait_deployed(&client, cust, "i").await;
    let resources = inst.status.expect("status").resources;
    assert!(!resources.is_empty());
    assert!(
        resources.iter().all(|r| r.sync == SyncState::Synced),
        "{resources:?}"
    );
    t.cleanup().await;
}

/// What the customer owns is reported, not touched (Warn, the default of a
/// Private purchase): the edit stays, the object shows OutOfSync with what
/// changed, and an Event says so.
#[tokio::test]
async fn warn_reports_drift_and_touches_nothing() {
    let (client, t) = controller_and_namespaces(&["isv", "cust"]).await;
    let (isv, cust) = (t.ns(0), t.ns(1));
    put(&client, isv, &service("db")).await;
    buy(&client, cust, &service_instance("i", isv, "db")).await;
    edit_config(&client, cust, "i-config", "n=42").await;
    wait_event(&client, cust, "DriftDetected", "i").await;
    let inst: ServiceInstance = wait_for("the edited object is OutOfSync", REPAIR, || async {
        let i = Api::<ServiceInstance>::namespaced(client.clone(), cust)
            .get("i")
            .await
            .ok()?;
        i.status
            .as_ref()?
            .resources
            .iter()
            .any(|r| r.name == "i-config" && r.sync == SyncState::OutOfSync)
            .then_some(i)
    })
    .await;
    let r = inst
        .status
        .as_ref()
        .and_then(|s| s.resources.iter().find(|r| r.name == "i-config").cloned())
        .expect("listed");
    assert!(r.message.contains("/data/replicas"), "{}", r.message);
    assert_eq!(
        config_value(&client, cust, "i-config").await.as_deref(),
        Some("n=42")
    );
    // The customer turns repair on for its own instance: written again.
    merge::<ServiceInstance>(
        &client,
        cust,
        "i",
        json!({"spec": {"sync": {"driftDetection": "Enabled"}}}),
    )
    .await
    .expect("enable");
    wait_config(&client, cust, "i-config", "n=1").await;
    t.cleanup().await;
}

/// An ignore rule holds (the seller leaves replicas to an autoscaler): a
/// scaled Deployment stays scaled, while another edit of the same instance
/// is repaired, and the repair keeps the replicas as they are.
#[tokio::test]
async fn an_ignore_rule_holds_while_the_rest_is_repaired() {
    let (client, t) = controller_and_namespaces(&["isv", "cust"]).await;
    let (isv, cust) = (t.ns(0), t.ns(1));
    let mut svc = service("db").fully_managed();
    svc.spec.sync = serde_json::from_value(json!({
        "ignore": [{"kind": "apps/Deployment", "jsonPointers": ["/spec/replicas"]}]
    }))
    .expect("sync");
    put(&client, isv, &svc).await;
    let inst = buy(&client, cust, &service_instance("i", isv, "db")).await;
    let managed = target_namespace(&inst);
    let deployments = Api::<Deployment>::namespaced(client.clone(), &managed);
    deployments
        .patch(
            "i",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 4}})),
        )
        .await
        .expect("scale");
    edit_config(&client, &managed, "i-config", "n=7").await;
    wait_config(&client, &managed, "i-config", "n=1").await;
    let d = deployments.get("i").await.expect("deployment");
    assert_eq!(
        d.spec.and_then(|s| s.replicas),
        Some(4),
        "the ignored field was kept"
    );
    // An object opted out by annotation is left alone.
    Api::<ConfigMap>::namespaced(client.clone(), &managed)
        .patch(
            "i-config",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": {"computenest.dev/drift": "ignore"}}, "data": {"replicas": "mine"}})),
        )
        .await
        .expect("opt out");
    // Something else of the instance changes (and is repaired): the
    // opted-out edit stays, and the replicas too.
    let image = |d: &Deployment| {
        d.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .map(|p| p.containers[0].image.clone())
    };
    deployments
        .patch(
            "i",
            &PatchParams::default(),
            &Patch::Strategic(&json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "evil"}]}}}})),
        )
        .await
        .expect("swap the image");
    wait_for("the image is written again", REPAIR, || async {
        let d = deployments.get("i").await.ok()?;
        (image(&d) == Some(Some("nginx".to_string()))).then_some(d)
    })
    .await;
    let d = deployments.get("i").await.expect("deployment");
    assert_eq!(
        d.spec.and_then(|s| s.replicas),
        Some(4),
        "the ignored field was kept"
    );
    assert_eq!(
        config_value(&client, &managed, "i-config").await.as_deref(),
        Some("mine")
    );
    let _ = inst.name_any();
    t.cleanup().await;
}

/// While an approved AccessRequest grants write verbs on a fully managed
/// instance, self-heal pauses (SelfHealPaused, drift reported) so that the
/// owner's approved hands-on work is not undone; when the access expires,
/// the drift is repaired.
#[tokio::test]
async fn approved_write_access_pauses_self_heal_until_it_expires() {
    let (client, t) = controller_and_namespaces(&["isv", "cust"]).await;
    let (isv, cust) = (t.ns(0), t.ns(1));
    put(
        &client,
        isv,
        &service("db")
            .fully_managed()
            .access(json!({"approval": "Automatic"})),
    )
    .await;
    let inst = buy(&client, cust, &service_instance("i", isv, "db")).await;
    let managed = target_namespace(&inst);
    let req: AccessRequest = serde_json::from_value(json!({
        "apiVersion": "computenest.dev/v1alpha1", "kind": "AccessRequest",
        "metadata": {"name": "fix-it"},
        "spec": {"instanceName": "i", "subject": {"kind": "User", "name": "jane"},
                 "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}],
                 "durationSeconds": 15, "reason": "restart a stuck pod"}
    }))
    .expect("request");
    put(&client, cust, &req).await;
    wait_for("self-heal paused", REPAIR, || async {
        let i = Api::<ServiceInstance>::namespaced(client.clone(), cust)
            .get("i")
            .await
            .ok()?;
        i.status?
            .conditions
            .iter()
            .any(|c| c.type_ == "SelfHealPaused" && c.status == "True")
            .then_some(())
    })
    .await;
    edit_config(&client, &managed, "i-config", "n=hands-on").await;
    wait_event(&client, cust, "DriftDetected", "i").await;
    assert_eq!(
        config_value(&client, &managed, "i-config").await.as_deref(),
        Some("n=hands-on"),
        "not undone while the access is active"
    );
    // The access expires: the drift is repaired and the pause ends.
    wait_config(&client, &managed, "i-config", "n=1").await;
    wait_for("the pause ends with the access", REPAIR, || async {
        let i = Api::<ServiceInstance>::namespaced(client.clone(), cust)
            .get("i")
            .await
            .ok()?;
        let s = i.status?;
        (!s.conditions.iter().any(|c| c.type_ == "SelfHealPaused")
            && s.phase == Some(Phase::Deployed))
        .then_some(())
    })
    .await;
    t.cleanup().await;
}
