//! Health (issue 15): an instance is Deployed and Ready only when every
//! object it wrote is healthy, judged by the built-in rules of its kind with
//! real pods (kube-scheduler and kwok's simulated nodes run them); while
//! they progress it is Deploying with a Reconciling condition, and a
//! failure or the progress deadline makes it DeployFailed with a Stalled
//! condition naming the objects. Pods are made unhealthy by the kwok stages
//! of hack/kwok/stages.yaml (label `computenest.dev/simulate`).

use crate::harness::*;
use computenest::api::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use std::time::Duration;

/// Pods must be scheduled, started by kwok and seen Ready by the workload
/// controllers: more than a plain write.
const ROLLOUT: Duration = Duration::from_secs(120);

/// A pod template that passes the restricted Pod Security level, labelled
/// `app` and, when `simulate` is set, with kwok's failure label.
pub(crate) fn pod(app: &str, simulate: Option<&str>, restart: &str) -> Value {
    let mut labels = json!({"app": app});
    if let Some(s) = simulate {
        labels["computenest.dev/simulate"] = json!(s);
    }
    json!({
        "metadata": {"labels": labels},
        "spec": {
            "restartPolicy": restart,
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "image": "busybox",
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]
        }
    })
}

/// A Private Service (deployed into the buyer's namespace) whose template is
/// `objects`, with a String parameter `simulate` and a progress deadline.
fn workload_service(name: &str, objects: Vec<Value>, deadline: Option<u32>) -> Service {
    let mut spec = json!({
        "type": "Private", "version": "1.0.0",
        "parameters": [{"name": "simulate", "type": "String", "default": "never-ready"}],
        "template": {"objects": objects}
    });
    if let Some(d) = deadline {
        spec["progressDeadlineSeconds"] = json!(d);
    }
    serde_json::from_value(json!({
        "apiVersion": "computenest.dev/v1alpha1", "kind": "Service",
        "metadata": {"name": name}, "spec": spec
    }))
    .expect("service")
}

fn instance(name: &str, isv: &str, product: &str, params: Value) -> ServiceInstance {
    serde_json::from_value(json!({
        "apiVersion": "computenest.dev/v1alpha1", "kind": "ServiceInstance",
        "metadata": {"name": name},
        "spec": {"serviceRef": {"kind": "Service", "namespace": isv, "name": product}, "parameters": params}
    }))
    .expect("instance")
}

fn resources(inst: &ServiceInstance) -> Vec<ResourceStatus> {
    inst.status
        .as_ref()
        .map(|s| s.resources.clone())
        .unwrap_or_default()
}

fn condition<'a>(inst: &'a ServiceInstance, type_: &str) -> Option<&'a Condition> {
    inst.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// Waits until the instance's Ready condition has `reason` (for its current generation).
async fn wait_reason(client: &Client, ns: &str, name: &str, reason: &str) -> ServiceInstance {
    wait_ready_within(client, ns, name, "False", reason, ROLLOUT).await
}

/// Every kind with a built-in rule that runs pods or needs nothing from
/// outside the cluster becomes Healthy with real pods, and only then is the
/// instance Deployed.
#[tokio::test]
async fn every_built_in_kind_is_healthy_with_real_pods_and_only_then_deployed() {
    let (client, t) = controller_and_namespaces(&["hl-isv", "hl-cust"]).await;
    let (isv, cust) = (t.ns(0), t.ns(1));
    let objects = vec![
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "$(instance.name)-cfg"}, "data": {"a": "b"}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "$(instance.name)-web"},
               "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": pod("web", None, "Always")}}),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "$(instance.name)-db"},
               "spec": {"replicas": 2, "serviceName": "$(instance.name)-db", "selector": {"matchLabels": {"app": "db"}}, "template": pod("db", None, "Always")}}),
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "$(instance.name)-agent"},
               "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": pod("agent", None, "Always")}}),
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "$(instance.name)-rs"},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "rs"}}, "template": pod("rs", None, "Always")}}),
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "$(instance.name)-init"},
               "spec": {"backoffLimit": 0, "template": pod("init", None, "Never")}}),
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "$(instance.name)-nightly"},
               "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": pod("nightly", None, "Never")}}}}),
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "$(instance.name)-web"},
               "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "$(instance.name)-db"},
               "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"port": 5432}]}}),
    ];
    put(&client, isv, &workload_service("kinds", objects, None)).await;
    put(&client, cust, &instance("all", isv, "kinds", json!({}))).await;
    let inst: ServiceInstance =
        wait_ready_within(&client, cust, "all", "True", "Deployed", ROLLOUT).await;
    let rs = resources(&inst);
    assert_eq!(rs.len(), 10, "nine objects and the logon Secret: {rs:?}");
    for r in &rs {
        assert_eq!(
            r.health,
            HealthState::Healthy,
            "{} {}: {}",
            r.kind,
            r.name,
            r.message
        );
    }
    assert_eq!(
        inst.status.as_ref().and_then(|s| s.phase),
        Some(Phase::Deployed)
    );
    assert!(condition(&inst, "Stalled").is_none());
    assert!(condition(&inst, "Reconciling").is_none());
    // The pods really run: the Deployment says so itself.
    let d = Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client.clone(), cust)
        .get("all-web")
        .await
        .expect("deployment");
    assert_eq!(d.status.and_then(|s| s.available_replicas), Some(2));
    t.cleanup().await;
}

/// A workload whose pods never become ready keeps the instance Deploying
/// (Reconciling) and, at the Service's progress deadline, DeployFailed with
/// a Stalled condition and an Event naming it; a new write (the buyer fixes
/// the parameter) restarts the clock and the instance recovers.
#[tokio::test]
async fn a_workload_that_never_becomes_ready_stalls_at_the_deadline_and_names_it() {
    let (client, t) = controller_and_namespaces(&["st-isv", "st-cust"]).await;
    let (isv, cust) = (t.ns(0), t.ns(1));
    let objects = vec![
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "$(instance.name)"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": pod("web", Some("$(params.simulate)"), "Always")}}),
    ];
    put(&client, isv, &workload_service("slow", objects, Some(15))).await;
    put(&client, cust, &instance("stuck", isv, "slow", json!({}))).await;
    let progressing = wait_reason(&client, cust, "stuck", "Progressing").await;
    assert_eq!(
        progressing.status.as_ref().and_then(|s| s.phase),
        Some(Phase::Deploying)
    );
    let reconciling = condition(&progressing, "Reconciling").expect("Reconciling");
    assert_eq!(reconciling.status, "True");
    let stalled = wait_reason(&client, cust, "stuck", "ProgressDeadlineExceeded").await;
    assert_eq!(
        stalled.status.as_ref().and_then(|s| s.phase),
        Some(Phase::DeployFailed)
    );
    let c = condition(&stalled, "Stalled").expect("Stalled");
    assert_eq!(c.status, "True");
    let what = format!("Deployment {cust}/stuck");
    assert!(c.message.contains(&what), "{}", c.message);
    assert!(
        c.message.contains("progress deadline of 15s"),
        "{}",
        c.message
    );
    // It stays Stalled while nothing changes: no flapping back to
    // Progressing (each read over a few seconds shows the same condition).
    let instances = Api::<ServiceInstance>::namespaced(client.clone(), cust);
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        let again = instances.get("stuck").await.expect("read");
        assert_eq!(condition(&again, "Stalled"), Some(c), "flapped");
        assert!(condition(&again, "Reconciling").is_none(), "flapped");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = resources(&stalled)
        .into_iter()
        .find(|r| r.kind == "Deployment")
        .expect("listed");
    assert_eq!(r.health, HealthState::Progressing, "{}", r.message);
    wait_event(&client, cust, "ProgressDeadlineExceeded", "stuck").await;
    // The fix is a new write: the pods become ready, the instance recovers.
    merge::<ServiceInstance>(
        &client,
        cust,
        "stuck",
        json!({"spec": {"parameters": {"simulate": "none"}}}),
    )
    .await
    .expect("fix");
    let fixed: ServiceInstance =
        wait_ready_within(&client, cust, "stuck", "True", "Deployed", ROLLOUT).await;
    assert!(condition(&fixed, "Stalled").is_none());
    t.cleanup().await;
}

/// A Job that fails is Degraded: the instance is DeployFailed at once
/// (long before the default 10-minute deadline), naming the Job.
#[tokio::test]
async fn a_failed_job_fails_the_instance_at_once() {
    let (client, t) = controller_and_namespaces(&["fj-isv", "fj-cust"]).await;
    let (isv, cust) = (t.ns(0), t.ns(1));
    let objects = vec![
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "$(instance.name)-migrate"},
        "spec": {"backoffLimit": 0, "template": pod("migrate", Some("fail"), "Never")}}),
    ];
    put(&client, isv, &workload_service("migrating", objects, None)).await;
    put(&client, cust, &instance("m", isv, "migrating", json!({}))).await;
    let failed = wait_reason(&client, cust, "m", "Degraded").await;
    assert_eq!(
        failed.status.as_ref().and_then(|s| s.phase),
        Some(Phase::DeployFailed)
    );
    let c = condition(&failed, "Stalled").expect("Stalled");
    assert!(
        c.message.contains(&format!("Job {cust}/m-migrate")),
        "{}",
        c.message
    );
    let r = resources(&failed)
        .into_iter()
        .find(|r| r.kind == "Job")
        .expect("listed");
    assert_eq!(r.health, HealthState::Degraded, "{}", r.message);
    t.cleanup().await;
}

/// What the cluster must provide (a volume, a load balancer, an ingress
/// address) and does not here keeps each object Progressing, and the
/// deadline names all three.
#[tokio::test]
async fn claims_load_balancers_and_ingresses_wait_for_the_cluster() {
    let (client, t) = controller_and_namespaces(&["lb-isv", "lb-cust"]).await;
    let (isv, cust) = (t.ns(0), t.ns(1));
    let objects = vec![
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "$(instance.name)-data"},
               "spec": {"storageClassName": "", "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "$(instance.name)-lb"},
               "spec": {"type": "LoadBalancer", "selector": {"app": "x"}, "ports": [{"port": 80}]}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "$(instance.name)"},
               "spec": {"defaultBackend": {"service": {"name": "$(instance.name)-lb", "port": {"number": 80}}}}}),
    ];
    put(&client, isv, &workload_service("edge", objects, Some(10))).await;
    put(&client, cust, &instance("e", isv, "edge", json!({}))).await;
    let stalled = wait_reason(&client, cust, "e", "ProgressDeadlineExceeded").await;
    let c = condition(&stalled, "Stalled").expect("Stalled");
    for what in [
        format!("PersistentVolumeClaim {cust}/e-data"),
        format!("Service {cust}/e-lb"),
        format!("Ingress {cust}/e"),
    ] {
        assert!(c.message.contains(&what), "{what}: {}", c.message);
    }
    for r in resources(&stalled).iter().filter(|r| r.kind != "Secret") {
        assert_eq!(
            r.health,
            HealthState::Progressing,
            "{} {}: {}",
            r.kind,
            r.name,
            r.message
        );
    }
    t.cleanup().await;
}

/// Drift detection Warn (the default where the customer owns the
/// resources): a deleted object is not made again, and the instance says
/// it is Missing instead of Ready.
#[tokio::test]
async fn a_deleted_object_left_alone_is_missing_and_the_instance_not_ready() {
    let (client, t) = controller_and_namespaces(&["ms-isv", "ms-cust"]).await;
    let (isv, cust) = (t.ns(0), t.ns(1));
    let objects = vec![
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "$(instance.name)-cfg"}, "data": {"a": "b"}}),
    ];
    put(&client, isv, &workload_service("plain", objects, None)).await;
    put(&client, cust, &instance("p", isv, "plain", json!({}))).await;
    let deployed: ServiceInstance =
        wait_ready_within(&client, cust, "p", "True", "Deployed", ROLLOUT).await;
    assert!(
        resources(&deployed)
            .iter()
            .all(|r| r.health == HealthState::Healthy)
    );
    Api::<ConfigMap>::namespaced(client.clone(), cust)
        .delete("p-cfg", &DeleteParams::default())
        .await
        .expect("delete");
    let missing = wait_reason(&client, cust, "p", "Missing").await;
    let r = resources(&missing)
        .into_iter()
        .find(|r| r.name == "p-cfg")
        .expect("listed");
    assert_eq!(r.health, HealthState::Missing);
    assert_eq!(r.sync, SyncState::OutOfSync);
    assert!(
        Api::<ConfigMap>::namespaced(client.clone(), cust)
            .get_opt("p-cfg")
            .await
            .expect("read")
            .is_none(),
        "Warn touches nothing"
    );
    assert_eq!(missing.name_any(), "p");
    t.cleanup().await;
}
