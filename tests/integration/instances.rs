//! Service instances: provisioning, ownership, logon URLs, orders, cleanup.

use crate::distribution::resource_versions;
use crate::fixtures::*;
use crate::harness::*;
use computenest::api::*;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use std::time::Duration;

/// The three parties of a product chain, each its own namespace: the ISV,
/// the distributor and the customer, in that order.
const PARTIES: [&str; 3] = ["isv", "dist", "cust"];

async fn orders_in(client: &Client, ns: &str) -> Vec<Order> {
    Api::<Order>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("list orders")
        .items
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
    let (client, t) = controller_and_namespaces(&PARTIES).await;
    let (isv, dist, cust) = (t.ns(0), t.ns(1), t.ns(2));
    for (name, type_, listed) in [
        ("priv", "Private", false),
        ("fml", "FullyManaged", true),
        ("fmu", "FullyManaged", false),
    ] {
        let svc = service_manifest(name, type_, listed, true, "Manual");
        put(&client, isv, &svc).await;
        let grant = approved_grant(&format!("{name}-grant"), name, dist);
        put(&client, isv, &grant).await;
    }
    let products = [
        ("p1", "priv", "Private"),
        ("p2", "priv", "FullyManaged"),
        ("p3", "fml", "FullyManaged"),
        ("p4", "fmu", "FullyManaged"),
    ];
    for (name, source, type_) in products {
        put(&client, dist, &derived_manifest(name, isv, source, type_)).await;
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
        let inst = instance_of(name, kind, seller, product).plan("pro");
        put(&client, cust, &inst).await;
    }
    for (name, _, _, _, scenario, party, owner_ns, managed, orders) in rows {
        let inst = wait_deployed(&client, cust, name).await;
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
        // Every object in the target namespace, labelled, owned as the scenario says:
        // the template's four, and in a managed namespace its policy (quota,
        // limits, network policy; no operators are named here).
        let policy: Vec<&str> = s
            .applied_objects
            .iter()
            .filter(|o| o.name == "computenest-tenancy")
            .map(|o| o.kind.as_str())
            .collect();
        let want: &[&str] = if managed {
            &["ResourceQuota", "LimitRange", "NetworkPolicy"]
        } else {
            &[]
        };
        assert_eq!(policy, want, "{name}");
        assert_eq!(s.applied_objects.len(), 4 + want.len(), "{name}");
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
    let mut in_customer = managed_config_maps(&client, cust).await;
    in_customer.sort();
    assert_eq!(
        in_customer,
        vec!["direct-private-config".to_string(), "i1-config".to_string()]
    );
    t.cleanup().await;
}

#[tokio::test]
async fn deleting_instances_removes_everything_they_made() {
    let (client, t) = controller_and_namespaces(&PARTIES).await;
    let (isv, dist, cust) = (t.ns(0), t.ns(1), t.ns(2));
    let fml = service("fml").fully_managed().listed().automatic();
    put(&client, isv, &fml).await;
    put(&client, isv, &service("priv").automatic()).await;
    resell(&client, dist, &derived("p3", isv, "fml").fully_managed()).await;
    put(&client, cust, &derived_instance("managed", dist, "p3")).await;
    put(&client, cust, &service_instance("private", isv, "priv")).await;
    let managed = wait_deployed(&client, cust, "managed").await;
    wait_deployed(&client, cust, "private").await;
    let target = target_namespace(&managed);
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
                let cms = managed_config_maps(&client, &cust).await;
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
    let (client, t) = controller_and_namespaces(&PARTIES).await;
    let (isv, cust) = (t.ns(0), t.ns(2));
    put(&client, isv, &service("app").fully_managed()).await;
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
        let inst = service_instance(name, isv, "app").plan(plan);
        put(&client, cust, &inst.params(params.clone())).await;
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
    let mut hostile = service("hostile");
    hostile.spec.template.objects.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "take-over"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "User", "name": "mallory"}]}));
    // The API server stores it; the controller refuses it.
    put(&client, isv, &hostile).await;
    let svc: Service = wait_ready(&client, isv, "hostile", "False", "InvalidTemplate").await;
    assert_message_contains(&svc, "cluster-scoped");
    let mut other_ns = service("other-ns");
    other_ns.spec.template.objects[0]["metadata"]["namespace"] = json!("kube-system");
    put(&client, isv, &other_ns).await;
    wait_ready::<Service>(&client, isv, "other-ns", "False", "InvalidTemplate").await;
    let mut outside = service("outside");
    outside.spec.template.objects.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r"}}));
    put(&client, isv, &outside).await;
    wait_ready::<Service>(&client, isv, "outside", "False", "InvalidTemplate").await;
    for product in ["hostile", "other-ns", "outside"] {
        put(&client, cust, &service_instance(product, isv, product)).await;
        let inst: ServiceInstance =
            wait_ready(&client, cust, product, "False", "ProductInvalid").await;
        assert!(
            inst.status
                .map(|s| s.applied_objects.is_empty())
                .unwrap_or(true)
        );
    }
    assert!(
        managed_config_maps(&client, cust).await.is_empty(),
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
    let mut text = service("text");
    text.spec.parameters.push(
        serde_json::from_value(json!({"name": "motd", "type": "String", "default": ""}))
            .expect("param"),
    );
    text.spec.template.objects[0]["data"]["motd"] = json!("$(params.motd)");
    put(&client, isv, &text).await;
    let payload = "x\nmetadata:\n  namespace: kube-system\n---\nkind: ClusterRoleBinding";
    let yaml = service_instance("yaml", isv, "text").params(json!({"motd": payload}));
    buy(&client, cust, &yaml).await;
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
    let (client, t) = controller_and_namespaces(&PARTIES).await;
    let (isv, dist, cust) = (t.ns(0), t.ns(1), t.ns(2));
    let fml = service("fml").fully_managed().listed().automatic();
    put(&client, isv, &fml).await;
    resell(&client, dist, &derived("p3", isv, "fml").fully_managed()).await;
    let inst = buy(&client, cust, &derived_instance("i", dist, "p3")).await;
    let target = target_namespace(&inst);
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
    let touch = json!({"metadata": {"annotations": {"touched": "yes"}}});
    merge::<ServiceInstance>(&client, cust, "i", touch)
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
    let no_such_plan = json!({"spec": {"plan": "no-such-plan"}});
    merge::<ServiceInstance>(&client, cust, "i", no_such_plan)
        .await
        .expect("change the plan");
    wait_ready::<ServiceInstance>(&client, cust, "i", "False", "InvalidPlan").await;
    t.cleanup().await;
}

#[tokio::test]
async fn revocation_stops_new_sales_and_running_instances_follow_the_policy() {
    let (client, t) = controller_and_namespaces(&PARTIES).await;
    let (isv, dist, cust) = (t.ns(0), t.ns(1), t.ns(2));
    put(&client, isv, &service("fml").fully_managed().listed()).await;
    put(&client, isv, &approved_grant("g", "fml", dist)).await;
    resell(&client, dist, &derived("p3", isv, "fml").fully_managed()).await;
    buy(&client, cust, &derived_instance("running", dist, "p3")).await;

    let revoke = json!({"spec": {"decision": "Revoked"}});
    merge::<DistributionGrant>(&client, isv, "g", revoke)
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
    // An edit of the running instance's spec is not applied while it is not
    // sold: observedGeneration stays where it was, and the message says why.
    let before = inst.status.as_ref().and_then(|s| s.observed_generation);
    merge::<ServiceInstance>(
        &client,
        cust,
        "running",
        json!({"spec": {"parameters": {"replicas": 2}}}),
    )
    .await
    .expect("edit");
    let edited = wait_for("the edit is reported as not applied", DEADLINE, || {
        let api = Api::<ServiceInstance>::namespaced(client.clone(), cust);
        async move {
            let i = api.get("running").await.ok()?;
            ready_message(&i).contains("is not applied").then_some(i)
        }
    })
    .await;
    assert_eq!(
        edited.status.as_ref().and_then(|s| s.observed_generation),
        before
    );
    assert!(edited.metadata.generation > before);
    // New sales are refused, nothing is deployed, no Order is written.
    put(&client, cust, &derived_instance("new", dist, "p3")).await;
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
    let deprovision = json!({"spec": {"distribution": {"onRevoke": "Deprovision"}}});
    merge::<Service>(&client, isv, "fml", deprovision)
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
    let (client, t) = controller_and_namespaces(&PARTIES).await;
    let (isv, cust) = (t.ns(0), t.ns(2));
    put(&client, isv, &service("app")).await;
    buy(&client, cust, &service_instance("i", isv, "app")).await;
    assert_eq!(
        managed_config_maps(&client, cust).await,
        vec!["i-config".to_string()]
    );
    let mut smaller = service("app");
    smaller.spec.template.objects.remove(0);
    put(&client, isv, &smaller).await;
    wait_for(
        "the ConfigMap that left the template is deleted",
        DEADLINE,
        || {
            let (client, cust) = (client.clone(), cust.to_string());
            async move {
                managed_config_maps(&client, &cust)
                    .await
                    .is_empty()
                    .then_some(())
            }
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
