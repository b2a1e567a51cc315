//! Service instances: provisioning, ownership, logon URLs, orders, cleanup.

use crate::distribution::{derived_manifest, grant_manifest, resource_versions, service_manifest};
use crate::harness::*;
use computenest::api::*;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use std::time::Duration;

fn instance_manifest(
    name: &str,
    kind: &str,
    ns: &str,
    product: &str,
    plan: &str,
    params: serde_json::Value,
) -> ServiceInstance {
    serde_json::from_value(json!({
        "apiVersion": "computenest.dev/v1alpha1", "kind": "ServiceInstance",
        "metadata": {"name": name},
        "spec": {"serviceRef": {"kind": kind, "namespace": ns, "name": product}, "plan": plan, "parameters": params}
    }))
    .expect("instance manifest")
}

/// Three parties and one product chain; returns (isv, distributor, customer).
async fn parties(client: &Client) -> TestNamespaces {
    TestNamespaces::new(client, &["isv", "dist", "cust"]).await
}

async fn orders_in(client: &Client, ns: &str) -> Vec<Order> {
    Api::<Order>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("list orders")
        .items
}

async fn config_maps(client: &Client, ns: &str) -> Vec<String> {
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=computenest-controller"))
        .await
        .map(|l| l.items.iter().map(|c| c.name_any()).collect())
        .unwrap_or_default()
}

async fn namespace_exists(client: &Client, name: &str) -> bool {
    Api::<Namespace>::all(client.clone())
        .get_opt(name)
        .await
        .expect("get namespace")
        .is_some()
}

#[tokio::test]
async fn each_scenario_end_to_end_with_placement_ownership_url_and_orders() {
    let client = client().await;
    ensure_controller(&client).await;
    let t = parties(&client).await;
    let (isv, dist, cust) = (t.ns(0), t.ns(1), t.ns(2));
    for (name, type_, listed) in [
        ("priv", "Private", false),
        ("fml", "FullyManaged", true),
        ("fmu", "FullyManaged", false),
    ] {
        apply(
            &client,
            isv,
            &service_manifest(name, type_, listed, true, "Manual"),
        )
        .await
        .expect("service");
        apply(
            &client,
            isv,
            &grant_manifest(&format!("{name}-grant"), name, dist, "Approved"),
        )
        .await
        .expect("grant");
    }
    let products = [
        ("p1", "priv", "Private"),
        ("p2", "priv", "FullyManaged"),
        ("p3", "fml", "FullyManaged"),
        ("p4", "fmu", "FullyManaged"),
    ];
    for (name, source, type_) in products {
        apply(&client, dist, &derived_manifest(name, isv, source, type_))
            .await
            .expect("derived");
    }
    // (instance, kind, seller ns, product, scenario, owner party, owner ns, managed, orders)
    let rows = [
        (
            "i1",
            "DerivedService",
            dist,
            "p1",
            "Scenario1",
            Party::Customer,
            cust,
            false,
            0,
        ),
        (
            "i2",
            "DerivedService",
            dist,
            "p2",
            "Scenario2",
            Party::Distributor,
            dist,
            true,
            0,
        ),
        (
            "i3",
            "DerivedService",
            dist,
            "p3",
            "Scenario3",
            Party::Isv,
            isv,
            true,
            2,
        ),
        (
            "i4",
            "DerivedService",
            dist,
            "p4",
            "Scenario4",
            Party::Isv,
            isv,
            true,
            0,
        ),
        (
            "direct-private",
            "Service",
            isv,
            "priv",
            "DirectPrivate",
            Party::Customer,
            cust,
            false,
            0,
        ),
        (
            "direct-managed",
            "Service",
            isv,
            "fml",
            "DirectFullyManaged",
            Party::Isv,
            isv,
            true,
            0,
        ),
    ];
    for (name, kind, seller, product, ..) in rows {
        apply(
            &client,
            cust,
            &instance_manifest(name, kind, seller, product, "pro", json!({})),
        )
        .await
        .expect("instance");
    }
    for (name, _, _, _, scenario, party, owner_ns, managed, orders) in rows {
        let inst: ServiceInstance = wait_ready(&client, cust, name, "True", "Deployed").await;
        let s = inst.status.clone().expect("status");
        assert_eq!(s.phase, Some(Phase::Deployed), "{name}");
        assert_eq!(s.scenario.as_deref(), Some(scenario), "{name}");
        let owner = s.owner.clone().expect("owner");
        assert_eq!(
            (owner.party, owner.namespace.as_str()),
            (party, owner_ns),
            "{name}"
        );
        let target = owner.target_namespace.clone();
        assert_eq!(
            target != cust,
            managed,
            "{name}: managed instances live in their own namespace"
        );
        // Every object in the target namespace, labelled, owned as the scenario says.
        assert_eq!(s.applied_objects.len(), 4, "{name}");
        let cm = Api::<ConfigMap>::namespaced(client.clone(), &target)
            .get(&format!("{name}-config"))
            .await
            .expect("config map");
        assert_eq!(
            cm.data
                .as_ref()
                .and_then(|d| d.get("replicas"))
                .map(String::as_str),
            Some("n=3"),
            "{name}: plan pro"
        );
        assert_eq!(
            cm.labels()
                .get("computenest.dev/scenario")
                .map(String::as_str),
            Some(scenario)
        );
        let owners = cm.owner_references();
        if managed {
            assert!(
                owners.is_empty(),
                "{name}: no cross-namespace ownerReferences"
            );
            let ns = Api::<Namespace>::all(client.clone())
                .get(&target)
                .await
                .expect("managed namespace");
            let l = ns.labels();
            assert_eq!(
                l.get("computenest.dev/owner-party").map(String::as_str),
                Some(party.to_string().as_str())
            );
            assert_eq!(
                l.get("computenest.dev/owner-namespace").map(String::as_str),
                Some(owner_ns)
            );
            assert_eq!(
                l.get("computenest.dev/instance-name").map(String::as_str),
                Some(name)
            );
            assert_eq!(
                l.get("computenest.dev/scenario").map(String::as_str),
                Some(scenario)
            );
            assert!(
                inst.finalizers()
                    .iter()
                    .any(|f| f == "computenest.dev/managed-namespace")
            );
        } else {
            assert_eq!(owners.len(), 1, "{name}");
            assert_eq!(owners[0].uid, inst.uid().unwrap_or_default());
        }
        // The logon URL, in status and in the customer's Secret.
        let url = format!("https://{name}.{cust}.example.com");
        assert_eq!(s.logon_url.as_deref(), Some(url.as_str()));
        let secret = Api::<Secret>::namespaced(client.clone(), cust)
            .get(&format!("{name}-logon"))
            .await
            .expect("secret");
        let data = secret.data.expect("secret data");
        assert_eq!(
            data.get("logonUrl").map(|b| b.0.clone()),
            Some(url.into_bytes())
        );
        // Billing.
        let billing = s.billing.expect("billing");
        assert_eq!(billing.resource_fees_paid_by, party);
        assert_eq!(billing.orders.len(), orders, "{name}");
        assert_eq!(
            billing.settlement,
            if orders > 0 {
                Settlement::Online
            } else {
                Settlement::Offline
            }
        );
    }
    // Orders: exactly two, for i3 only, in the sellers' namespaces.
    let dist_orders = orders_in(&client, dist).await;
    let isv_orders = orders_in(&client, isv).await;
    assert_eq!(dist_orders.len(), 1, "one distributor->customer order");
    assert_eq!(isv_orders.len(), 1, "one ISV->distributor order");
    assert!(orders_in(&client, cust).await.is_empty());
    assert_eq!(
        (
            dist_orders[0].spec.seller.party,
            dist_orders[0].spec.buyer.namespace.as_str()
        ),
        (Party::Distributor, cust)
    );
    assert_eq!(
        (
            isv_orders[0].spec.seller.party,
            isv_orders[0].spec.buyer.namespace.as_str()
        ),
        (Party::Isv, dist)
    );
    assert_eq!(isv_orders[0].spec.instance.name, "i3");
    for o in dist_orders.iter().chain(isv_orders.iter()) {
        let ready = o
            .status
            .as_ref()
            .and_then(|s| computenest::controller::status::ready(&s.conditions))
            .map(|c| c.status.clone());
        assert_eq!(
            ready.as_deref(),
            Some("True"),
            "Order {} is Ready",
            o.name_any()
        );
    }
    // Nothing of the managed instances leaked into the customer's namespace.
    let mut in_customer = config_maps(&client, cust).await;
    in_customer.sort();
    assert_eq!(
        in_customer,
        vec!["direct-private-config".to_string(), "i1-config".to_string()]
    );
    t.cleanup().await;
}

#[tokio::test]
async fn deleting_instances_removes_everything_they_made() {
    let client = client().await;
    ensure_controller(&client).await;
    let t = parties(&client).await;
    let (isv, dist, cust) = (t.ns(0), t.ns(1), t.ns(2));
    apply(
        &client,
        isv,
        &service_manifest("fml", "FullyManaged", true, true, "Automatic"),
    )
    .await
    .expect("service");
    apply(
        &client,
        isv,
        &service_manifest("priv", "Private", false, true, "Automatic"),
    )
    .await
    .expect("service");
    apply(
        &client,
        dist,
        &derived_manifest("p3", isv, "fml", "FullyManaged"),
    )
    .await
    .expect("derived");
    wait_ready::<DerivedService>(&client, dist, "p3", "True", "Sellable").await;
    apply(
        &client,
        cust,
        &instance_manifest("managed", "DerivedService", dist, "p3", "basic", json!({})),
    )
    .await
    .expect("instance");
    apply(
        &client,
        cust,
        &instance_manifest("private", "Service", isv, "priv", "basic", json!({})),
    )
    .await
    .expect("instance");
    let managed: ServiceInstance = wait_ready(&client, cust, "managed", "True", "Deployed").await;
    wait_ready::<ServiceInstance>(&client, cust, "private", "True", "Deployed").await;
    let target = managed
        .status
        .and_then(|s| s.owner)
        .map(|o| o.target_namespace)
        .expect("target");
    assert!(namespace_exists(&client, &target).await);

    let instances = Api::<ServiceInstance>::namespaced(client.clone(), cust);
    instances
        .delete("managed", &DeleteParams::default())
        .await
        .expect("delete");
    wait_for(
        "managed instance and its namespace are gone",
        Duration::from_secs(90),
        || {
            let (client, instances, target) = (client.clone(), instances.clone(), target.clone());
            async move {
                let ns_gone = !namespace_exists(&client, &target).await;
                let inst_gone = instances.get_opt("managed").await.ok()?.is_none();
                (ns_gone && inst_gone).then_some(())
            }
        },
    )
    .await;
    // Orders are records: they outlive the instance.
    assert_eq!(orders_in(&client, dist).await.len(), 1);

    instances
        .delete("private", &DeleteParams::default())
        .await
        .expect("delete");
    // Garbage collection follows ownerReferences (the collector may need a discovery refresh for new CRDs).
    wait_for(
        "private instance's objects are garbage-collected",
        Duration::from_secs(90),
        || {
            let client = client.clone();
            let cust = cust.to_string();
            async move {
                let cms = config_maps(&client, &cust).await;
                let secret = Api::<Secret>::namespaced(client.clone(), &cust)
                    .get_opt("private-logon")
                    .await
                    .ok()?;
                (cms.is_empty() && secret.is_none()).then_some(())
            }
        },
    )
    .await;
    t.cleanup().await;
}

#[tokio::test]
async fn bad_parameters_and_hostile_templates_are_refused_and_nothing_is_written() {
    let client = client().await;
    ensure_controller(&client).await;
    let t = parties(&client).await;
    let (isv, cust) = (t.ns(0), t.ns(2));
    apply(
        &client,
        isv,
        &service_manifest("app", "FullyManaged", false, true, "Manual"),
    )
    .await
    .expect("service");
    let cases = [
        (
            "too-many",
            "pro",
            json!({"replicas": 9}),
            "InvalidParameter",
            "\"replicas\": is set by plan \"pro\"",
        ),
        (
            "wrong-type",
            "basic",
            json!({"replicas": "three"}),
            "InvalidParameter",
            "\"replicas\": must be a whole number, got a string",
        ),
        (
            "out-of-range",
            "basic",
            json!({"replicas": 9}),
            "InvalidParameter",
            "\"replicas\": must be at most 5",
        ),
        (
            "unknown",
            "basic",
            json!({"namespace": "kube-system"}),
            "InvalidParameter",
            "\"namespace\": is not a parameter",
        ),
        (
            "no-plan",
            "gold",
            json!({}),
            "InvalidPlan",
            "plan \"gold\" is not sold",
        ),
    ];
    for (name, plan, params, ..) in &cases {
        apply(
            &client,
            cust,
            &instance_manifest(name, "Service", isv, "app", plan, params.clone()),
        )
        .await
        .expect("instance");
    }
    for (name, _, _, reason, message) in &cases {
        let inst: ServiceInstance = wait_ready(&client, cust, name, "False", reason).await;
        assert_eq!(
            inst.status.as_ref().and_then(|s| s.phase),
            Some(Phase::DeployFailed)
        );
        assert!(
            ready_message(&inst).contains(message),
            "{name}: {}",
            ready_message(&inst)
        );
        assert!(
            !namespace_exists(
                &client,
                &computenest::provision::managed_namespace_name(
                    cust,
                    name,
                    inst.metadata.uid.as_deref().unwrap_or_default()
                )
            )
            .await
        );
    }

    // A hostile template: a cluster-scoped kind. Refused on the Service and on every instance.
    let mut hostile = service_manifest("hostile", "Private", false, true, "Manual");
    hostile.spec.template.objects.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "take-over"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "User", "name": "mallory"}]}));
    apply(&client, isv, &hostile)
        .await
        .expect("the API server stores it; the controller refuses it");
    let svc: Service = wait_ready(&client, isv, "hostile", "False", "InvalidTemplate").await;
    assert!(
        ready_message(&svc).contains("cluster-scoped"),
        "{}",
        ready_message(&svc)
    );
    let mut other_ns = service_manifest("other-ns", "Private", false, true, "Manual");
    other_ns.spec.template.objects[0]["metadata"]["namespace"] = json!("kube-system");
    apply(&client, isv, &other_ns).await.expect("stored");
    wait_ready::<Service>(&client, isv, "other-ns", "False", "InvalidTemplate").await;
    let mut outside = service_manifest("outside", "Private", false, true, "Manual");
    outside.spec.template.objects.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r"}}));
    apply(&client, isv, &outside).await.expect("stored");
    wait_ready::<Service>(&client, isv, "outside", "False", "InvalidTemplate").await;
    for product in ["hostile", "other-ns", "outside"] {
        apply(
            &client,
            cust,
            &instance_manifest(product, "Service", isv, product, "basic", json!({})),
        )
        .await
        .expect("instance");
        let inst: ServiceInstance =
            wait_ready(&client, cust, product, "False", "ProductInvalid").await;
        assert!(
            inst.status
                .map(|s| s.applied_objects.is_empty())
                .unwrap_or(true)
        );
    }
    assert!(
        config_maps(&client, cust).await.is_empty(),
        "nothing written in the customer's namespace"
    );
    assert!(
        Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(client.clone())
            .get_opt("take-over")
            .await
            .expect("get")
            .is_none()
    );

    // A parameter carrying YAML stays one string value.
    let mut text = service_manifest("text", "Private", false, true, "Manual");
    text.spec.parameters.push(
        serde_json::from_value(json!({"name": "motd", "type": "String", "default": ""}))
            .expect("param"),
    );
    text.spec.template.objects[0]["data"]["motd"] = json!("$(params.motd)");
    apply(&client, isv, &text).await.expect("service");
    let payload = "x\nmetadata:\n  namespace: kube-system\n---\nkind: ClusterRoleBinding";
    apply(
        &client,
        cust,
        &instance_manifest(
            "yaml",
            "Service",
            isv,
            "text",
            "basic",
            json!({"motd": payload}),
        ),
    )
    .await
    .expect("instance");
    wait_ready::<ServiceInstance>(&client, cust, "yaml", "True", "Deployed").await;
    let cm = Api::<ConfigMap>::namespaced(client.clone(), cust)
        .get("yaml-config")
        .await
        .expect("config map");
    assert_eq!(
        cm.data.and_then(|d| d.get("motd").cloned()).as_deref(),
        Some(payload)
    );
    t.cleanup().await;
}

#[tokio::test]
async fn a_second_reconcile_with_nothing_changed_writes_nothing() {
    let client = client().await;
    ensure_controller(&client).await;
    let t = parties(&client).await;
    let (isv, dist, cust) = (t.ns(0), t.ns(1), t.ns(2));
    apply(
        &client,
        isv,
        &service_manifest("fml", "FullyManaged", true, true, "Automatic"),
    )
    .await
    .expect("service");
    apply(
        &client,
        dist,
        &derived_manifest("p3", isv, "fml", "FullyManaged"),
    )
    .await
    .expect("derived");
    wait_ready::<DerivedService>(&client, dist, "p3", "True", "Sellable").await;
    apply(
        &client,
        cust,
        &instance_manifest("i", "DerivedService", dist, "p3", "basic", json!({})),
    )
    .await
    .expect("instance");
    let inst: ServiceInstance = wait_ready(&client, cust, "i", "True", "Deployed").await;
    let target = inst
        .status
        .and_then(|s| s.owner)
        .map(|o| o.target_namespace)
        .expect("target");
    let children = |client: Client, target: String| async move {
        let cms = Api::<ConfigMap>::namespaced(client.clone(), &target)
            .list(&ListParams::default())
            .await
            .expect("list");
        let ns = Api::<Namespace>::all(client.clone())
            .get(&target)
            .await
            .expect("ns");
        let mut v: Vec<String> = cms
            .items
            .iter()
            .map(|c| {
                format!(
                    "{}={}",
                    c.name_any(),
                    c.resource_version().unwrap_or_default()
                )
            })
            .collect();
        v.push(format!("ns={}", ns.resource_version().unwrap_or_default()));
        v
    };
    let before = (
        resource_versions(&client, &[isv, dist, cust]).await,
        children(client.clone(), target.clone()).await,
    );
    // Touch the instance without changing its spec: it is reconciled again.
    Api::<ServiceInstance>::namespaced(client.clone(), cust)
        .patch(
            "i",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": {"touched": "yes"}}})),
        )
        .await
        .expect("annotate");
    tokio::time::sleep(Duration::from_secs(4)).await; // an idle interval: the thing measured, not a wait
    let mut after = (
        resource_versions(&client, &[isv, dist, cust]).await,
        children(client.clone(), target.clone()).await,
    );
    // The annotation itself changed the instance's resourceVersion; nothing else may change.
    let touched = format!("ServiceInstance/{cust}/i");
    let strip = |v: &mut Vec<(String, String)>| v.retain(|(k, _)| k != &touched);
    let mut b = before.0.clone();
    strip(&mut b);
    strip(&mut after.0);
    assert_eq!(b, after.0, "computenest objects were rewritten");
    assert_eq!(
        before.1, after.1,
        "provisioned objects or the namespace were rewritten"
    );
    // The controller was looking all along: a later change to the same
    // instance is processed (events of one object are handled in order).
    Api::<ServiceInstance>::namespaced(client.clone(), cust)
        .patch(
            "i",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"plan": "no-such-plan"}})),
        )
        .await
        .expect("change the plan");
    wait_ready::<ServiceInstance>(&client, cust, "i", "False", "InvalidPlan").await;
    t.cleanup().await;
}

#[tokio::test]
async fn revocation_stops_new_sales_and_running_instances_follow_the_policy() {
    let client = client().await;
    ensure_controller(&client).await;
    let t = parties(&client).await;
    let (isv, dist, cust) = (t.ns(0), t.ns(1), t.ns(2));
    apply(
        &client,
        isv,
        &service_manifest("fml", "FullyManaged", true, true, "Manual"),
    )
    .await
    .expect("service");
    apply(&client, isv, &grant_manifest("g", "fml", dist, "Approved"))
        .await
        .expect("grant");
    apply(
        &client,
        dist,
        &derived_manifest("p3", isv, "fml", "FullyManaged"),
    )
    .await
    .expect("derived");
    wait_ready::<DerivedService>(&client, dist, "p3", "True", "Sellable").await;
    apply(
        &client,
        cust,
        &instance_manifest("running", "DerivedService", dist, "p3", "basic", json!({})),
    )
    .await
    .expect("instance");
    wait_ready::<ServiceInstance>(&client, cust, "running", "True", "Deployed").await;

    Api::<DistributionGrant>::namespaced(client.clone(), isv)
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"decision": "Revoked"}})),
        )
        .await
        .expect("revoke");
    // Default policy KeepRunning: still Deployed and Ready, GrantValid False.
    let grant_valid = |i: &ServiceInstance| {
        i.status.as_ref().and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == "GrantValid")
                .map(|c| (c.status.clone(), c.reason.clone()))
        })
    };
    let inst = wait_for("GrantValid=False on the running instance", DEADLINE, || {
        let api = Api::<ServiceInstance>::namespaced(client.clone(), cust);
        async move {
            let i = api.get("running").await.ok()?;
            (grant_valid(&i) == Some(("False".into(), "GrantRevoked".into()))).then_some(i)
        }
    })
    .await;
    assert_eq!(
        inst.status.as_ref().and_then(|s| s.phase),
        Some(Phase::Deployed)
    );
    assert_eq!(
        inst.status
            .as_ref()
            .and_then(|s| computenest::controller::status::ready(&s.conditions))
            .map(|c| c.status.clone())
            .as_deref(),
        Some("True")
    );
    // New sales are refused, nothing is deployed, no Order is written.
    apply(
        &client,
        cust,
        &instance_manifest("new", "DerivedService", dist, "p3", "basic", json!({})),
    )
    .await
    .expect("instance");
    let refused: ServiceInstance = wait_ready(&client, cust, "new", "False", "GrantRevoked").await;
    let refused_uid = refused.metadata.uid.clone().unwrap_or_default();
    assert_eq!(
        refused.status.and_then(|s| s.phase),
        Some(Phase::DeployFailed)
    );
    assert!(
        !namespace_exists(
            &client,
            &computenest::provision::managed_namespace_name(cust, "new", &refused_uid)
        )
        .await
    );
    assert_eq!(
        orders_in(&client, dist).await.len(),
        1,
        "only the running instance's order"
    );

    // Deprovision policy: the running instance's resources are removed.
    Api::<Service>::namespaced(client.clone(), isv)
        .patch(
            "fml",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"distribution": {"onRevoke": "Deprovision"}}})),
        )
        .await
        .expect("policy");
    let inst: ServiceInstance = wait_ready(&client, cust, "running", "False", "GrantRevoked").await;
    assert!(
        inst.status
            .map(|s| s.applied_objects.is_empty())
            .unwrap_or(false)
    );
    t.cleanup().await;
}

#[tokio::test]
async fn objects_that_leave_the_template_are_removed() {
    let client = client().await;
    ensure_controller(&client).await;
    let t = parties(&client).await;
    let (isv, cust) = (t.ns(0), t.ns(2));
    apply(
        &client,
        isv,
        &service_manifest("app", "Private", false, true, "Manual"),
    )
    .await
    .expect("service");
    apply(
        &client,
        cust,
        &instance_manifest("i", "Service", isv, "app", "basic", json!({})),
    )
    .await
    .expect("instance");
    wait_ready::<ServiceInstance>(&client, cust, "i", "True", "Deployed").await;
    assert_eq!(
        config_maps(&client, cust).await,
        vec!["i-config".to_string()]
    );
    let mut smaller = service_manifest("app", "Private", false, true, "Manual");
    smaller.spec.template.objects.remove(0);
    apply(&client, isv, &smaller).await.expect("service");
    wait_for(
        "the ConfigMap that left the template is deleted",
        DEADLINE,
        || {
            let (client, cust) = (client.clone(), cust.to_string());
            async move { config_maps(&client, &cust).await.is_empty().then_some(()) }
        },
    )
    .await;
    wait_for("status lists the 3 remaining objects", DEADLINE, || {
        let api = Api::<ServiceInstance>::namespaced(client.clone(), cust);
        async move {
            let s = api.get("i").await.ok()?.status?;
            (s.applied_objects.len() == 3 && s.phase == Some(Phase::Deployed)).then_some(())
        }
    })
    .await;
    t.cleanup().await;
}
