//! Managed namespaces as tenancy, driven through impersonation: the owner's
//! operators run what their party owns and nothing else; the customer gets
//! nothing there; Pod Security, quota, limits and network policy travel with
//! every managed namespace; sellers choose their buyers; limits hold.

use crate::fixtures::*;
use crate::harness::*;
use computenest::api::*;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, Pod, ResourceQuota, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

/// The groups Kubernetes gives a ServiceAccount's tokens.
fn service_account(ns: &str, name: &str) -> (String, Vec<String>) {
    (
        format!("system:serviceaccount:{ns}:{name}"),
        vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{ns}"),
            "system:authenticated".into(),
        ],
    )
}

async fn as_service_account(ns: &str, name: &str) -> Client {
    let (user, groups) = service_account(ns, name);
    let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
    impersonate(&user, &groups).await
}

fn operators(list: serde_json::Value) -> Vec<Operator> {
    serde_json::from_value(list).expect("operators")
}

/// Whether `client` may list pods in `ns` (a 403 is a no; anything else fails the test).
async fn can_list_pods(client: &Client, ns: &str) -> bool {
    match Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
    {
        Ok(_) => true,
        Err(kube::Error::Api(s)) if s.code == 403 => false,
        Err(e) => panic!("listing pods in {ns}: {e}"),
    }
}

/// Waits until `client`'s answer to "may I list pods in `ns`" is `want`
/// (RBAC is served from the API server's caches).
async fn wait_can_list_pods(client: &Client, ns: &str, want: bool) {
    wait_for(
        &format!("list pods in {ns} allowed={want}"),
        DEADLINE,
        || async { (can_list_pods(client, ns).await == want).then_some(()) },
    )
    .await;
}

async fn patch_deployment(client: &Client, ns: &str, name: &str) -> Result<(), kube::Error> {
    Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"operated": "yes"}}})),
        )
        .await
        .map(|_| ())
}

/// The owner party's ServiceAccount operates its managed namespace (reads
/// pods, patches deployments) and nothing else: not the customer's namespace,
/// not another managed namespace. The customer cannot read the managed
/// namespace at all. Removing the operator removes the binding.
#[tokio::test]
async fn the_owners_operators_run_their_managed_namespace_and_nothing_else() {
    let (client, t) = controller_and_namespaces(&["isv", "cust", "other"]).await;
    let (isv, cust, other) = (t.ns(0), t.ns(1), t.ns(2));
    let mut svc = service("db").fully_managed();
    svc.spec.operators = operators(json!([{"kind": "ServiceAccount", "name": "ops"}]));
    put(&client, isv, &svc).await;
    let inst = buy(&client, cust, &service_instance("mine", isv, "db")).await;
    let managed = target_namespace(&inst);
    // Another customer's instance of another ISV: its namespace is not ours to operate.
    put(&client, other, &service("else").fully_managed()).await;
    let theirs = buy(&client, cust, &service_instance("theirs", other, "else")).await;
    let foreign = target_namespace(&theirs);

    let ops = as_service_account(isv, "ops").await;
    wait_can_list_pods(&ops, &managed, true).await;
    patch_deployment(&ops, &managed, "mine")
        .await
        .expect("the ISV's operator patches a deployment of its managed namespace");
    assert!(
        !can_list_pods(&ops, cust).await,
        "not the customer's namespace"
    );
    assert!(
        !can_list_pods(&ops, &foreign).await,
        "not another ISV's namespace"
    );
    let err = patch_deployment(&ops, &foreign, "theirs")
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 403),
        "{err}"
    );

    // The customer, with every right in its own namespace, has none in the managed one.
    allow(
        &client,
        cust,
        "buyer",
        json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
    )
    .await;
    let buyer = impersonate("buyer", &[]).await;
    assert!(can_list_pods(&buyer, cust).await);
    assert!(
        !can_list_pods(&buyer, &managed).await,
        "the customer gets nothing in a managed namespace"
    );

    // A binding of ours whose role was changed behind the controller's back
    // (roleRef cannot be patched) is made again when the operators change.
    let rbs = Api::<RoleBinding>::namespaced(client.clone(), &managed);
    let mut forged = rbs.get("computenest-operators").await.expect("binding");
    forged.metadata.resource_version = None;
    forged.metadata.uid = None;
    forged.metadata.managed_fields = None;
    forged.role_ref.name = "view".into();
    rbs.delete("computenest-operators", &DeleteParams::default())
        .await
        .expect("delete");
    rbs.create(&PostParams::default(), &forged)
        .await
        .expect("re-create with another role");
    merge::<Service>(
        &client,
        isv,
        "db",
        json!({"spec": {"operators": [{"kind": "ServiceAccount", "name": "ops"}, {"kind": "ServiceAccount", "name": "ops2"}]}}),
    )
    .await
    .expect("second operator");
    wait_for(
        "the binding names both operators and the operator role",
        DEADLINE,
        || async {
            let rb = rbs.get("computenest-operators").await.ok()?;
            (rb.role_ref.name == OPERATOR_ROLE && rb.subjects.unwrap_or_default().len() == 2)
                .then_some(())
        },
    )
    .await;
    wait_can_list_pods(&as_service_account(isv, "ops2").await, &managed, true).await;

    // The ISV names no operators any more: the binding goes.
    merge::<Service>(&client, isv, "db", json!({"spec": {"operators": null}}))
        .await
        .expect("operators removed");
    wait_can_list_pods(&ops, &managed, false).await;
    wait_gone::<RoleBinding>(&client, &managed, "computenest-operators").await;
    t.cleanup().await;
}

/// Scenario 2: the distributor owns the resources, so its operators are
/// bound and the ISV's are not; a private purchase binds nobody.
#[tokio::test]
async fn operators_are_the_owner_partys_per_scenario() {
    let (client, t) = controller_and_namespaces(&["isv", "dist", "cust"]).await;
    let (isv, dist, cust) = (t.ns(0), t.ns(1), t.ns(2));
    let mut svc = service("db").automatic();
    svc.spec.operators = operators(json!([{"kind": "ServiceAccount", "name": "isv-ops"}]));
    put(&client, isv, &svc).await;
    let mut ds = derived("managed-db", isv, "db").fully_managed();
    ds.spec.operators = operators(json!([{"kind": "ServiceAccount", "name": "dist-ops"}]));
    resell(&client, dist, &ds).await;
    let inst = buy(&client, cust, &derived_instance("s2", dist, "managed-db")).await;
    assert_eq!(
        inst.status.as_ref().and_then(|s| s.scenario.as_deref()),
        Some("Scenario2")
    );
    let managed = target_namespace(&inst);
    wait_can_list_pods(&as_service_account(dist, "dist-ops").await, &managed, true).await;
    assert!(!can_list_pods(&as_service_account(isv, "isv-ops").await, &managed).await);

    // A private purchase: the customer owns its namespace; nothing is bound there.
    let private = buy(&client, cust, &service_instance("own", isv, "db")).await;
    assert_eq!(target_namespace(&private), cust);
    let bound = Api::<RoleBinding>::namespaced(client.clone(), cust)
        .get_opt("computenest-operators")
        .await
        .expect("read");
    assert!(
        bound.is_none(),
        "nothing is bound in the customer's namespace"
    );
    assert!(!can_list_pods(&as_service_account(isv, "isv-ops").await, cust).await);
    t.cleanup().await;
}

/// Users and groups count only where the platform lists them on the
/// seller's namespace: an ISV that names `system:masters`-like groups or
/// another party's users gets nothing bound for them.
#[tokio::test]
async fn a_seller_names_users_and_groups_only_where_the_platform_lets_it() {
    let (client, t) = controller_and_namespaces(&["isv", "cust"]).await;
    let (isv, cust) = (t.ns(0), t.ns(1));
    let mut svc = service("db").fully_managed();
    svc.spec.operators = operators(json!([
        {"kind": "User", "name": "alice"},
        {"kind": "User", "name": "mallory"},
        {"kind": "Group", "name": "isv-oncall"}
    ]));
    // The platform (not the tenant: tenants cannot write namespaces) lists alice and the group.
    Api::<Namespace>::all(client.clone())
        .patch(
            isv,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": {
                "computenest.dev/operator-users": "alice",
                "computenest.dev/operator-groups": "isv-oncall"
            }}})),
        )
        .await
        .expect("annotate");
    put(&client, isv, &svc).await;
    let inst = buy(&client, cust, &service_instance("i", isv, "db")).await;
    let managed = target_namespace(&inst);
    wait_can_list_pods(&impersonate("alice", &[]).await, &managed, true).await;
    wait_can_list_pods(
        &impersonate("someone", &["isv-oncall"]).await,
        &managed,
        true,
    )
    .await;
    assert!(!can_list_pods(&impersonate("mallory", &[]).await, &managed).await);
    let rb = Api::<RoleBinding>::namespaced(client.clone(), &managed)
        .get("computenest-operators")
        .await
        .expect("binding");
    let names: Vec<String> = rb
        .subjects
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["alice", "isv-oncall"]);
    // The ISV is told on its own Service which operators count for nothing.
    let svc = wait_ready::<Service>(&client, isv, "db", "True", "Valid").await;
    assert_message_contains(&svc, "operators not bound anywhere: User \"mallory\"");
    t.cleanup().await;
}

/// Every managed namespace enforces Pod Security (restricted by default): a
/// privileged pod with the node's root mounted is refused by the API
/// server's admission. A Service may ask for baseline (the default
/// ceiling), never privileged.
#[tokio::test]
async fn a_privileged_pod_in_a_managed_namespace_is_refused_by_pod_security() {
    let (client, t) = controller_and_namespaces(&["isv", "cust"]).await;
    let (isv, cust) = (t.ns(0), t.ns(1));
    put(&client, isv, &service("db").fully_managed()).await;
    let inst = buy(&client, cust, &service_instance("i", isv, "db")).await;
    let managed = target_namespace(&inst);
    let ns = Api::<Namespace>::all(client.clone())
        .get(&managed)
        .await
        .expect("ns");
    let labels = ns.labels();
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
    assert_eq!(labels["computenest.dev/customer-namespace"], cust);
    assert_eq!(labels["computenest.dev/owner-party"], "ISV");
    assert_eq!(labels["computenest.dev/scenario"], "DirectFullyManaged");
    assert_eq!(
        labels["computenest.dev/product"],
        format!("Service.{isv}.db")
    );
    assert_eq!(
        labels["computenest.dev/instance-uid"],
        inst.uid().unwrap_or_default()
    );

    let root: Pod = serde_json::from_value(json!({
        "metadata": {"name": "root"},
        "spec": {
            "containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": true},
                            "volumeMounts": [{"name": "root", "mountPath": "/host"}]}],
            "volumes": [{"name": "root", "hostPath": {"path": "/"}}]
        }
    }))
    .expect("pod");
    let err = Api::<Pod>::namespaced(client.clone(), &managed)
        .create(&PostParams::default(), &root)
        .await
        .expect_err("Pod Security admission refuses a privileged pod, even for an admin");
    assert!(err.to_string().contains("violates PodSecurity"), "{err}");

    // Baseline is within the ceiling: the namespace follows the Service.
    merge::<Service>(
        &client,
        isv,
        "db",
        json!({"spec": {"podSecurity": "baseline"}}),
    )
    .await
    .expect("baseline");
    wait_for("enforce=baseline", DEADLINE, || async {
        let ns = Api::<Namespace>::all(client.clone())
            .get(&managed)
            .await
            .ok()?;
        (ns.labels()
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str)
            == Some("baseline"))
        .then_some(())
    })
    .await;
    // Privileged is above it: the ISV is told on its Service, and the namespace keeps baseline.
    merge::<Service>(
        &client,
        isv,
        "db",
        json!({"spec": {"podSecurity": "privileged"}}),
    )
    .await
    .expect("privileged");
    let svc = wait_ready::<Service>(&client, isv, "db", "False", "PodSecurityNotAllowed").await;
    assert_message_contains(&svc, "at most baseline");
    let inst =
        wait_ready::<ServiceInstance>(&client, cust, "i", "False", "PodSecurityNotAllowed").await;
    assert_eq!(
        inst.status.as_ref().and_then(|s| s.phase),
        Some(Phase::DeployFailed)
    );
    let ns = Api::<Namespace>::all(client.clone())
        .get(&managed)
        .await
        .expect("ns");
    assert_eq!(
        ns.labels()["pod-security.kubernetes.io/enforce"],
        "baseline"
    );
    t.cleanup().await;
}

/// The quota of a managed namespace is the plan's (platform defaults where
/// it says nothing), with a LimitRange and the default NetworkPolicy; a plan
/// above the platform's ceilings is refused on the Service and the instance.
#[tokio::test]
async fn quota_objects_match_the_plan() {
    let (client, t) = controller_and_namespaces(&["isv", "cust"]).await;
    let (isv, cust) = (t.ns(0), t.ns(1));
    let mut svc = service("db").fully_managed();
    svc.spec.plans[1].resources = Some(
        serde_json::from_value(json!({"cpu": "4", "memory": "8Gi", "pods": 40})).expect("res"),
    );
    put(&client, isv, &svc).await;
    let inst = buy(
        &client,
        cust,
        &service_instance("pro", isv, "db").plan("pro"),
    )
    .await;
    let managed = target_namespace(&inst);
    let q = Api::<ResourceQuota>::namespaced(client.clone(), &managed)
        .get("computenest-tenancy")
        .await
        .expect("quota");
    let hard = q.spec.and_then(|s| s.hard).unwrap_or_default();
    let get = |k: &str| hard.get(k).map(|q| q.0.clone()).unwrap_or_default();
    assert_eq!(get("requests.cpu"), "4");
    assert_eq!(get("limits.memory"), "8Gi");
    assert_eq!(get("pods"), "40");
    // Not declared by the plan: the platform's default.
    assert_eq!(get("requests.storage"), "20Gi");
    Api::<LimitRange>::namespaced(client.clone(), &managed)
        .get("computenest-tenancy")
        .await
        .expect("limit range");
    let np = Api::<NetworkPolicy>::namespaced(client.clone(), &managed)
        .get("computenest-tenancy")
        .await
        .expect("network policy");
    let np = serde_json::to_value(np).expect("json");
    assert_eq!(
        np["spec"]["ingress"][0]["from"][1]["namespaceSelector"]["matchLabels"]["computenest.dev/ingress"],
        "true"
    );
    // The customer cannot lift its own quota: the policy objects are the controller's.
    allow(
        &client,
        cust,
        "buyer",
        json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
    )
    .await;
    let buyer = impersonate("buyer", &[]).await;
    let err = Api::<ResourceQuota>::namespaced(buyer, &managed)
        .delete("computenest-tenancy", &DeleteParams::default())
        .await
        .expect_err("the customer may not delete the quota");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 403),
        "{err}"
    );

    // A plan above the platform's ceiling (32 CPU by default).
    merge::<Service>(
        &client,
        isv,
        "db",
        json!({"spec": {"plans": [{"name": "basic", "resources": {"cpu": "64"}}, {"name": "pro", "parameters": {"replicas": 3}}]}}),
    )
    .await
    .expect("greedy plan");
    let svc = wait_ready::<Service>(&client, isv, "db", "False", "PlanExceedsPlatformLimits").await;
    assert_message_contains(&svc, "cpu 64 (at most 32)");
    put(&client, cust, &service_instance("greedy", isv, "db")).await;
    let greedy = wait_ready::<ServiceInstance>(
        &client,
        cust,
        "greedy",
        "False",
        "PlanExceedsPlatformLimits",
    )
    .await;
    assert!(
        greedy.status.and_then(|s| s.owner).is_none(),
        "nothing was created"
    );
    t.cleanup().await;
}

/// A Restricted product refuses a buyer that is neither listed nor selected
/// (NotAuthorizedToBuy, nothing created), and sells once the platform labels
/// the buyer's namespace with what the seller selects. A Hidden Service is
/// not sold directly but is sold through a distributor.
#[tokio::test]
async fn a_restricted_product_refuses_an_unlisted_buyer() {
    let (client, t) = controller_and_namespaces(&["isv", "dist", "gold", "cust"]).await;
    let (isv, dist, gold, cust) = (t.ns(0), t.ns(1), t.ns(2), t.ns(3));
    let mut svc = service("db").automatic();
    svc.spec.sales = serde_json::from_value(json!({
        "policy": "Restricted", "namespaces": [gold],
        "namespaceSelector": {"matchLabels": {"tier": format!("gold-{isv}")}}
    }))
    .expect("sales");
    put(&client, isv, &svc).await;
    buy(&client, gold, &service_instance("ok", isv, "db")).await;
    put(&client, cust, &service_instance("no", isv, "db")).await;
    let refused =
        wait_ready::<ServiceInstance>(&client, cust, "no", "False", "NotAuthorizedToBuy").await;
    assert_message_contains(
        &refused,
        &format!("namespace {cust} is not among its buyers"),
    );
    assert!(
        managed_config_maps(&client, cust).await.is_empty(),
        "nothing was created"
    );
    let logon = Api::<Secret>::namespaced(client.clone(), cust)
        .get_opt("no-logon")
        .await
        .expect("read");
    assert!(logon.is_none(), "no logon Secret either");
    wait_event(&client, cust, "NotAuthorizedToBuy", "no").await;

    // The customer cannot label itself in: only the platform writes namespaces
    // (tenant roles, like Kubernetes' own admin role, never include
    // `namespaces`; a RoleBinding that did would reach the namespace itself).
    allow(
        &client,
        cust,
        "buyer",
        json!([{"apiGroups": ["", "apps", "computenest.dev"],
                "resources": ["pods", "secrets", "configmaps", "deployments", "serviceinstances"],
                "verbs": ["*"]}]),
    )
    .await;
    let buyer = impersonate("buyer", &[]).await;
    let err = Api::<Namespace>::all(buyer)
        .patch(
            cust,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"tier": format!("gold-{isv}")}}})),
        )
        .await
        .expect_err("a tenant cannot label its namespace");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 403),
        "{err}"
    );
    // The platform does; the seller's selector picks it, and a touch of the Service re-evaluates.
    Api::<Namespace>::all(client.clone())
        .patch(
            cust,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"tier": format!("gold-{isv}")}}})),
        )
        .await
        .expect("platform labels");
    merge::<Service>(
        &client,
        isv,
        "db",
        json!({"metadata": {"annotations": {"touched": "1"}}}),
    )
    .await
    .expect("touch");
    wait_deployed(&client, cust, "no").await;

    // Hidden: not sold directly, sold through a distributor.
    merge::<Service>(&client, isv, "db", json!({"spec": {"sales": {"policy": "Hidden", "namespaces": null, "namespaceSelector": null}}}))
        .await
        .expect("hidden");
    put(&client, gold, &service_instance("direct", isv, "db")).await;
    let direct =
        wait_ready::<ServiceInstance>(&client, gold, "direct", "False", "NotAuthorizedToBuy").await;
    assert_message_contains(&direct, "Hidden");
    resell(&client, dist, &derived("resold", isv, "db")).await;
    buy(&client, gold, &derived_instance("via-dist", dist, "resold")).await;
    // What was sold before keeps running.
    wait_deployed(&client, gold, "ok").await;
    t.cleanup().await;
}

/// The seller's limit per customer: the oldest instances count first, one
/// over is QuotaExceeded with nothing created, and deleting one lets the
/// next deploy. The platform's limit of managed namespaces per customer
/// (6 in the test controller's policy) holds the same way.
#[tokio::test]
async fn the_limits_hold() {
    let (client, t) = controller_and_namespaces(&["isv", "cust", "many"]).await;
    let (isv, cust, many) = (t.ns(0), t.ns(1), t.ns(2));
    let mut svc = service("db");
    svc.spec.sales.max_instances_per_customer = Some(1);
    put(&client, isv, &svc).await;
    buy(&client, cust, &service_instance("first", isv, "db")).await;
    put(&client, cust, &service_instance("second", isv, "db")).await;
    let over =
        wait_ready::<ServiceInstance>(&client, cust, "second", "False", "QuotaExceeded").await;
    assert_message_contains(&over, "at most 1 per customer");
    assert!(
        !managed_config_maps(&client, cust)
            .await
            .contains(&"second-config".to_string())
    );
    Api::<ServiceInstance>::namespaced(client.clone(), cust)
        .delete("first", &DeleteParams::default())
        .await
        .expect("delete first");
    wait_deployed(&client, cust, "second").await;

    // The platform's limit of managed namespaces per customer.
    put(&client, isv, &service("fm").fully_managed()).await;
    for i in 0..PLATFORM_MAX_MANAGED {
        put(
            &client,
            many,
            &service_instance(&format!("fm{i}"), isv, "fm"),
        )
        .await;
    }
    for i in 0..PLATFORM_MAX_MANAGED {
        wait_deployed(&client, many, &format!("fm{i}")).await;
    }
    put(&client, many, &service_instance("one-too-many", isv, "fm")).await;
    let over =
        wait_ready::<ServiceInstance>(&client, many, "one-too-many", "False", "QuotaExceeded")
            .await;
    assert_message_contains(
        &over,
        &format!("at most {PLATFORM_MAX_MANAGED} per customer"),
    );
    let namespaces = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default().labels(&format!("computenest.dev/instance-namespace={many}")))
        .await
        .expect("list");
    assert_eq!(namespaces.items.len(), PLATFORM_MAX_MANAGED);
    t.cleanup().await;
}

/// Tenant rights of an ISV or distributor over its products (as the chart's
/// tenant roles give them), for driving a seller as an attacker.
async fn seller(client: &Client, ns: &str, user: &str) -> Client {
    allow(
        client,
        ns,
        user,
        json!([{"apiGroups": ["computenest.dev"],
                "resources": ["services", "derivedservices", "distributiongrants"],
                "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}]),
    )
    .await;
    impersonate(user, &[]).await
}

/// A Private product runs in the customer's namespace, next to the
/// customer's Secrets: a template that mounts a Secret it does not create is
/// refused before anything is written, whoever's Secret it is; the same
/// template with the name taken from a SecretRef parameter the buyer sets
/// deploys.
#[tokio::test]
async fn a_template_cannot_reach_the_customers_secrets() {
    let (client, t) = controller_and_namespaces(&["isv", "cust"]).await;
    let (isv, cust) = (t.ns(0), t.ns(1));
    let attacker = seller(&client, isv, "isv-dev").await;
    let db: Secret = serde_json::from_value(json!({
        "metadata": {"name": "customer-db"}, "stringData": {"password": "hunter2"}
    }))
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), cust)
        .create(&PostParams::default(), &db)
        .await
        .expect("the customer's own Secret");
    let mut svc = service("thief");
    svc.spec.template.objects[1]["spec"]["template"]["spec"]["containers"][0]["env"] = json!([
        {"name": "STOLEN", "valueFrom": {"secretKeyRef": {"name": "customer-db", "key": "password"}}}
    ]);
    put(&attacker, isv, &svc).await;
    put(&client, cust, &service_instance("victim", isv, "thief")).await;
    let refused =
        wait_ready::<ServiceInstance>(&client, cust, "victim", "False", "ForbiddenReference").await;
    assert_message_contains(&refused, "customer-db");
    assert!(
        managed_config_maps(&client, cust).await.is_empty(),
        "nothing was written"
    );
    let deployments =
        Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client.clone(), cust)
            .get_opt("victim")
            .await
            .expect("read");
    assert!(
        deployments.is_none(),
        "no Deployment reads the customer's Secret"
    );

    // The buyer names the Secret itself, through a reference parameter: allowed.
    let mut honest = service("honest");
    honest.spec.parameters.push(
        serde_json::from_value(json!({"name": "dbSecret", "type": "SecretRef", "required": true}))
            .expect("param"),
    );
    honest.spec.template.objects[1]["spec"]["template"]["spec"]["containers"][0]["env"] = json!([
        {"name": "DB", "valueFrom": {"secretKeyRef": {"name": "$(params.dbSecret)", "key": "password"}}}
    ]);
    put(&attacker, isv, &honest).await;
    buy(
        &client,
        cust,
        &service_instance("mine", isv, "honest").params(json!({"dbSecret": "customer-db"})),
    )
    .await;
    // A default for a reference parameter would let the seller pick the Secret: refused.
    let mut sneaky = honest.clone();
    sneaky.metadata.name = Some("sneaky".into());
    sneaky.spec.parameters[1].default = Some(json!("customer-db"));
    sneaky.spec.parameters[1].required = false;
    put(&attacker, isv, &sneaky).await;
    let svc = wait_ready::<Service>(&client, isv, "sneaky", "False", "InvalidSchema").await;
    assert_message_contains(&svc, "dbSecret");
    t.cleanup().await;
}

/// Where the ISV owns the resources (scenario 3), a distributor adds objects
/// only of the kinds the ISV allows; nothing is sold until then.
#[tokio::test]
async fn a_distributor_adds_objects_next_to_the_isvs_only_where_allowed() {
    let (client, t) = controller_and_namespaces(&["isv", "dist"]).await;
    let (isv, dist) = (t.ns(0), t.ns(1));
    put(
        &client,
        isv,
        &service("db").fully_managed().listed().automatic(),
    )
    .await;
    let attacker = seller(&client, dist, "dist-dev").await;
    let mut ds = derived("db-plus", isv, "db").fully_managed();
    ds.spec.overrides.extra_objects = vec![json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "exfiltrate"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}
    })];
    put(&attacker, dist, &ds).await;
    let refused =
        wait_ready::<DerivedService>(&client, dist, "db-plus", "False", "ExtraObjectsNotAllowed")
            .await;
    assert_message_contains(&refused, "batch/Job");
    // The ISV allows Jobs: the product sells.
    merge::<Service>(
        &client,
        isv,
        "db",
        json!({"spec": {"distribution": {"extraObjects": {"allowedKinds": ["batch/Job"]}}}}),
    )
    .await
    .expect("allow jobs");
    wait_ready::<DerivedService>(&client, dist, "db-plus", "True", "Sellable").await;
    t.cleanup().await;
}

/// One Service cannot make the controller write megabytes per instance: a
/// parameter over the platform's cap is refused with the sizes, and nothing
/// is written.
#[tokio::test]
async fn an_oversized_parameter_is_refused_before_anything_is_written() {
    let (client, t) = controller_and_namespaces(&["isv", "cust"]).await;
    let (isv, cust) = (t.ns(0), t.ns(1));
    let mut svc = service("big");
    svc.spec.parameters.push(
        serde_json::from_value(json!({"name": "blob", "type": "String", "maxLength": 65536}))
            .expect("param"),
    );
    svc.spec.template.objects[0]["data"]["blob"] = json!("$(params.blob)");
    put(&client, isv, &svc).await;
    let blob = "x".repeat(20 * 1024);
    put(
        &client,
        cust,
        &service_instance("huge", isv, "big").params(json!({"blob": blob})),
    )
    .await;
    let refused = wait_ready::<ServiceInstance>(&client, cust, "huge", "False", "TooLarge").await;
    assert_message_contains(&refused, "16384");
    assert!(
        managed_config_maps(&client, cust).await.is_empty(),
        "nothing was written"
    );
    t.cleanup().await;
}
