//! The controller is a deputy no tenant can steer (issue 12): each test drives
//! one attack through the API server as the attacking party (impersonation)
//! and checks that the victim is exactly as it was, and that the attacker's
//! object says what happened. Each test first proves that the controller
//! looked (a status it wrote, a condition), so none can pass with the
//! controller stopped.

use crate::fixtures::*;
use crate::harness::*;
use computenest::api::*;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolumeClaim};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

/// What a tenant may do with its own instances (and, as the premise of the
/// attacks on status, their status subresource), and with ConfigMaps.
fn customer_rules() -> serde_json::Value {
    json!([
        {"apiGroups": ["computenest.dev"], "resources": ["serviceinstances", "serviceinstances/status"], "verbs": ["*"]},
        {"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["*"]}
    ])
}

/// The identity of an object that must not change: UID and resourceVersion.
fn fingerprint<K: Resource>(obj: &K) -> (String, String) {
    (
        obj.meta().uid.clone().unwrap_or_default(),
        obj.meta().resource_version.clone().unwrap_or_default(),
    )
}

async fn victim_config_map(client: &Client, ns: &str, name: &str) -> ConfigMap {
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"owner": "victim"}},
        "data": {"precious": "data that must survive"}
    }))
    .expect("config map");
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &cm)
        .await
        .expect("victim config map")
}

async fn config_map(client: &Client, ns: &str, name: &str) -> Option<ConfigMap> {
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .expect("get config map")
}

/// A ConfigMap is exactly as it was: same UID, resourceVersion and data.
async fn assert_unchanged(client: &Client, before: &ConfigMap, what: &str) {
    let ns = before.namespace().unwrap_or_default();
    let after = config_map(client, &ns, &before.name_any())
        .await
        .unwrap_or_else(|| panic!("{what}: {ns}/{} was deleted", before.name_any()));
    assert_eq!(fingerprint(&after), fingerprint(before), "{what}: changed");
    assert_eq!(after.data, before.data, "{what}: data changed");
    assert_eq!(
        after.metadata.labels, before.metadata.labels,
        "{what}: labels changed"
    );
    assert_eq!(
        after.metadata.owner_references, before.metadata.owner_references,
        "{what}: ownerReferences changed"
    );
}

/// The ISV sells "web" directly, as a Private product.
async fn direct_private(client: &Client, isv: &str) {
    put(client, isv, &service("web").automatic()).await;
}

#[tokio::test]
async fn a_forged_status_never_makes_the_controller_delete_anything() {
    let (client, t) = controller_and_namespaces(&["own-isv", "own-cust", "own-victim"]).await;
    let (isv, cust, victim_ns) = (t.ns(0), t.ns(1), t.ns(2));
    direct_private(&client, isv).await;
    let victim = victim_config_map(&client, victim_ns, "precious").await;
    let neighbour = victim_config_map(&client, cust, "neighbour").await;
    let rb: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "ops"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "ops"}]
    }))
    .expect("binding");
    let rb = Api::<RoleBinding>::namespaced(client.clone(), victim_ns)
        .create(&PostParams::default(), &rb)
        .await
        .expect("victim binding");
    allow(&client, cust, "mallory", customer_rules()).await;
    let mallory = impersonate("mallory", &[]).await;

    put(&mallory, cust, &service_instance("shop", isv, "web")).await; // mallory buys
    let inst = wait_deployed(&client, cust, "shop").await;
    let real_digest = inst.status.as_ref().and_then(|s| s.applied_digest.clone());

    // The attack: status names other parties' objects as "applied", with a
    // digest that makes the controller think the template changed.
    let forged = json!({"status": {
        "appliedDigest": "forged",
        "appliedObjects": [
            {"apiVersion": "v1", "kind": "ConfigMap", "namespace": victim_ns, "name": "precious"},
            {"apiVersion": "v1", "kind": "ConfigMap", "namespace": cust, "name": "neighbour"},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "namespace": victim_ns, "name": "ops"}
        ]
    }});
    Api::<ServiceInstance>::namespaced(mallory.clone(), cust)
        .patch_status("shop", &PatchParams::default(), &Patch::Merge(&forged))
        .await
        .expect("mallory may write the status (the premise of the attack)");
    // The controller looked: it put the real digest back.
    wait_for(
        "the controller rewrites the forged status",
        DEADLINE,
        || {
            let api = Api::<ServiceInstance>::namespaced(client.clone(), cust);
            let real = real_digest.clone();
            async move {
                let i = api.get("shop").await.ok()?;
                (i.status?.applied_digest == real).then_some(())
            }
        },
    )
    .await;
    assert_unchanged(&client, &victim, "another tenant's ConfigMap").await;
    assert_unchanged(&client, &neighbour, "the customer's own ConfigMap").await;
    let rb_after = Api::<RoleBinding>::namespaced(client.clone(), victim_ns)
        .get("ops")
        .await
        .expect("the victim's RoleBinding still exists");
    assert_eq!(fingerprint(&rb_after), fingerprint(&rb));
    // And the instance's own objects are all still there.
    assert!(config_map(&client, cust, "shop-config").await.is_some());
    t.cleanup().await;
}

#[tokio::test]
async fn a_name_that_is_taken_stops_the_instance_and_the_owner_keeps_its_object() {
    let (client, t) = controller_and_namespaces(&["col-isv", "col-dist", "col-cust"]).await;
    let (isv, dist, cust) = (t.ns(0), t.ns(1), t.ns(2));
    direct_private(&client, isv).await;
    allow(&client, cust, "mallory", customer_rules()).await;
    let mallory = impersonate("mallory", &[]).await;

    // 1. The customer's own ConfigMap has the name the template renders.
    let own = victim_config_map(&client, cust, "taken-config").await;
    put(&mallory, cust, &service_instance("taken", isv, "web")).await;
    let inst: ServiceInstance = wait_ready(&client, cust, "taken", "False", "ObjectConflict").await;
    let msg = ready_message(&inst);
    assert!(
        msg.contains("ConfigMap") && msg.contains("taken-config") && msg.contains("not created by"),
        "{msg}"
    );
    assert_unchanged(&client, &own, "the customer's ConfigMap").await;
    // Deleting the instance does not garbage-collect it either.
    Api::<ServiceInstance>::namespaced(mallory.clone(), cust)
        .delete("taken", &DeleteParams::default())
        .await
        .expect("delete");
    wait_gone::<ServiceInstance>(&client, cust, "taken").await;

    // 2. Another instance's object: a product with a fixed object name.
    let mut fixed = service("fixed").automatic();
    fixed.spec.template.objects = vec![json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared-config"}, "data": {"who": "$(instance.name)"}
    })];
    put(&client, isv, &fixed).await;
    put(&mallory, cust, &service_instance("first", isv, "fixed")).await;
    wait_deployed(&client, cust, "first").await;
    let firsts = config_map(&client, cust, "shared-config")
        .await
        .expect("first's object");
    put(&mallory, cust, &service_instance("second", isv, "fixed")).await;
    let second: ServiceInstance =
        wait_ready(&client, cust, "second", "False", "ObjectConflict").await;
    assert!(
        ready_message(&second).contains(&format!("ServiceInstance {cust}/first")),
        "names the owner: {}",
        ready_message(&second)
    );
    assert_unchanged(&client, &firsts, "the first instance's object").await;
    Api::<ServiceInstance>::namespaced(mallory.clone(), cust)
        .delete("second", &DeleteParams::default())
        .await
        .expect("delete second");
    wait_gone::<ServiceInstance>(&client, cust, "second").await;
    // The first instance is told nothing changed: touch it and see it stay Deployed.
    assert_unchanged(
        &client,
        &firsts,
        "the first instance's object after the second went",
    )
    .await;

    // 3. A distributor's extra object that renders to the ISV's object's name.
    put(&client, isv, &approved_grant("g", "web", dist)).await;
    let mut ds = derived("web-plus", isv, "web");
    ds.spec.overrides.extra_objects = vec![json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "clash-config"}, "data": {"brand": "x"}
    })];
    resell(&client, dist, &ds).await;
    let clash = derived_instance("clash", dist, "web-plus");
    put(&mallory, cust, &clash).await;
    let clash: ServiceInstance =
        wait_ready(&client, cust, "clash", "False", "ObjectConflict").await;
    assert_message_contains(&clash, "both render to ConfigMap \"clash-config\"");
    assert!(config_map(&client, cust, "clash-config").await.is_none());
    t.cleanup().await;
}

/// The ISV sells "managed" directly, as a FullyManaged product.
async fn scenario_managed_direct(client: &Client, isv: &str) {
    put(client, isv, &service("managed").fully_managed().automatic()).await;
}

async fn namespace_gone(client: &Client, name: &str) -> Option<()> {
    let ns = Api::<Namespace>::all(client.clone())
        .get_opt(name)
        .await
        .ok()?;
    ns.is_none_or(|n| n.metadata.deletion_timestamp.is_some())
        .then_some(())
}

#[tokio::test]
async fn a_removed_finalizer_is_restored_and_an_orphaned_namespace_is_swept() {
    let (client, t) = controller_and_namespaces(&["fin-isv", "fin-cust"]).await;
    let (isv, cust) = (t.ns(0), t.ns(1));
    scenario_managed_direct(&client, isv).await;
    allow(&client, cust, "mallory", customer_rules()).await;
    let mallory = impersonate("mallory", &[]).await;
    let api = Api::<ServiceInstance>::namespaced(mallory.clone(), cust);
    let no_finalizers = json!({"metadata": {"finalizers": null}});

    put(&mallory, cust, &service_instance("m1", isv, "managed")).await;
    let target = target_namespace(&wait_deployed(&client, cust, "m1").await);
    // Remove the finalizer while the instance lives: it comes back.
    api.patch("m1", &PatchParams::default(), &Patch::Merge(&no_finalizers))
        .await
        .expect("mallory edits her instance");
    wait_for("the finalizer is restored", DEADLINE, || {
        let api = api.clone();
        async move {
            let i = api.get("m1").await.ok()?;
            (!i.finalizers().is_empty()).then_some(())
        }
    })
    .await;
    // Delete it and remove the finalizer at once: the instance is gone
    // before any cleanup, and the sweep removes the namespace it left.
    api.delete("m1", &DeleteParams::default())
        .await
        .expect("delete");
    let _ = api
        .patch("m1", &PatchParams::default(), &Patch::Merge(&no_finalizers))
        .await;
    wait_for(
        &format!("the orphaned namespace {target} is removed"),
        DEADLINE,
        || namespace_gone(&client, &target),
    )
    .await;
    // The same name can be bought again, and deploys into a namespace of its own.
    put(&mallory, cust, &service_instance("m1", isv, "managed")).await;
    let again_target = target_namespace(&wait_deployed(&client, cust, "m1").await);
    assert_ne!(again_target, target);
    t.cleanup().await;
}

#[tokio::test]
async fn a_product_edit_never_moves_deletes_or_bills_what_was_sold() {
    let (client, t) = controller_and_namespaces(&["pe-isv", "pe-dist", "pe-cust"]).await;
    let (isv, dist, cust) = (t.ns(0), t.ns(1), t.ns(2));
    // The attacker is the seller: the ISV edits its own Service.
    allow(
        &client,
        isv,
        "ivan",
        json!([{"apiGroups": ["computenest.dev"], "resources": ["services", "distributiongrants"], "verbs": ["*"]}]),
    )
    .await;
    let ivan = impersonate("ivan", &[]).await;
    // A private product with a volume: the customer's data.
    let mut svc = service("web").automatic();
    svc.spec.template.objects.push(json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "$(instance.name)-data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }));
    put(&client, isv, &svc).await;
    // The local cluster has no volume provisioner: a volume made for this
    // claim alone (pre-bound by claimRef) lets it bind, so that the
    // instance's objects are healthy and it is Deployed.
    let pv_name = format!("pv-{cust}");
    let pv: k8s_openapi::api::core::v1::PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": pv_name},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "hostPath": {"path": "/tmp/computenest-test-pv"},
                 "persistentVolumeReclaimPolicy": "Retain",
                 "claimRef": {"namespace": cust, "name": "mine-data"}}
    }))
    .expect("pv");
    let pvs = Api::<k8s_openapi::api::core::v1::PersistentVolume>::all(client.clone());
    pvs.create(&PostParams::default(), &pv)
        .await
        .expect("volume for the claim");
    buy(&client, cust, &service_instance("mine", isv, "web")).await;
    let pvc_api = Api::<PersistentVolumeClaim>::namespaced(client.clone(), cust);
    let pvc = pvc_api.get("mine-data").await.expect("pvc");
    let cm = config_map(&client, cust, "mine-config")
        .await
        .expect("config map");

    // The ISV makes the product fully managed (same template).
    let mut managed = svc.clone();
    managed.spec.type_ = ServiceType::FullyManaged;
    managed.spec.marketplace.listed = true;
    apply(&ivan, isv, &managed).await.expect("type change");
    let changed = wait_for("ProductChanged on the instance", DEADLINE, || {
        let api = Api::<ServiceInstance>::namespaced(client.clone(), cust);
        async move {
            let i = api.get("mine").await.ok()?;
            let c = i
                .status
                .as_ref()?
                .conditions
                .iter()
                .find(|c| c.type_ == "ProductChanged" && c.status == "True")?
                .clone();
            Some((i, c))
        }
    })
    .await;
    assert!(
        changed.1.message.contains("sold as DirectPrivate")
            && changed.1.message.contains("DirectFullyManaged"),
        "{}",
        changed.1.message
    );
    let s = changed.0.status.expect("status");
    assert_eq!(s.scenario.as_deref(), Some("DirectPrivate"));
    assert_eq!(
        s.owner.as_ref().map(|o| o.target_namespace.as_str()),
        Some(cust)
    );
    assert_eq!(
        fingerprint(
            &pvc_api
                .get("mine-data")
                .await
                .expect("the volume is still there")
        ),
        fingerprint(&pvc)
    );
    let cm_after = config_map(&client, cust, "mine-config")
        .await
        .expect("config map still there");
    assert_eq!(cm_after.uid(), cm.uid());
    let namespaces = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default().labels(&format!("computenest.dev/instance-namespace={cust}")))
        .await
        .expect("namespaces");
    assert!(
        namespaces.items.is_empty(),
        "no namespace was made for a private sale"
    );
    // The ISV drops the volume from its template: objects that left are
    // removed, but never a volume (the customer's data).
    managed
        .spec
        .template
        .objects
        .retain(|o| o["kind"] != "PersistentVolumeClaim" && o["kind"] != "ServiceAccount");
    apply(&ivan, isv, &managed).await.expect("template change");
    wait_for(
        "the ServiceAccount that left the template is removed",
        DEADLINE,
        || {
            let api =
                Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(client.clone(), cust);
            async move { api.get_opt("mine").await.ok()?.is_none().then_some(()) }
        },
    )
    .await;
    let pvc_after = pvc_api.get("mine-data").await.expect("the volume stays");
    assert_eq!(pvc_after.uid(), pvc.uid());
    assert!(pvc_after.metadata.deletion_timestamp.is_none());

    // An offline sale (scenario 4) stays offline when the ISV lists its Service:
    // no Order is written after the fact.
    let unlisted = service("unlisted").fully_managed().automatic();
    put(&client, isv, &unlisted).await;
    put(&client, isv, &approved_grant("g4", "unlisted", dist)).await;
    let resold = derived("resold", isv, "unlisted").fully_managed();
    put(&client, dist, &resold).await;
    let s4 = buy(&client, cust, &derived_instance("s4", dist, "resold")).await;
    assert_eq!(
        s4.status.as_ref().and_then(|s| s.scenario.as_deref()),
        Some("Scenario4")
    );
    put(&ivan, isv, &unlisted.listed()).await; // listed now
    wait_for("ProductChanged on s4", DEADLINE, || {
        let api = Api::<ServiceInstance>::namespaced(client.clone(), cust);
        async move {
            let i = api.get("s4").await.ok()?;
            i.status?
                .conditions
                .iter()
                .any(|c| c.type_ == "ProductChanged" && c.message.contains("Scenario3"))
                .then_some(())
        }
    })
    .await;
    for ns in [isv, dist] {
        let orders = Api::<Order>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .expect("orders");
        assert!(
            orders.items.is_empty(),
            "no Order in {ns}: {:?}",
            orders.items
        );
    }
    t.cleanup().await;
    let _ = pvs.delete(&pv_name, &DeleteParams::default()).await;
}

#[tokio::test]
async fn any_legal_instance_name_gets_valid_derived_names() {
    let (client, t) = controller_and_namespaces(&["dots-isv", "dots-cust"]).await;
    let (isv, cust) = (t.ns(0), t.ns(1));
    allow(&client, cust, "carol", customer_rules()).await;
    let carol = impersonate("carol", &[]).await;
    // Products whose objects take any name (a Service object could not: its
    // name must be a DNS-1035 label, which the API server says on the instance).
    for (product, type_) in [("cfgm", "FullyManaged"), ("cfg", "Private")] {
        let mut s = service_manifest(product, type_, false, true, "Automatic");
        s.spec.template.objects.retain(|o| o["kind"] == "ConfigMap");
        put(&client, isv, &s).await;
    }
    let long = format!("{}end", "long.name-x.".repeat(20));
    for (name, product) in [
        ("shop.v2", "cfgm"),
        ("a.b.c", "cfg"),
        (long.as_str(), "cfgm"),
    ] {
        put(&carol, cust, &service_instance(name, isv, product)).await;
    }
    for name in ["shop.v2", "a.b.c", long.as_str()] {
        let target = target_namespace(&wait_deployed(&client, cust, name).await);
        assert!(
            computenest::naming::is_dns_label(&target),
            "{name}: {target}"
        );
    }
    t.cleanup().await;
}

#[tokio::test]
async fn a_failure_that_repeats_backs_off_and_is_reported_on_the_instance() {
    use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
    let (client, t) = controller_and_namespaces(&["bo-isv", "bo-cust"]).await;
    let (isv, cust) = (t.ns(0), t.ns(1));
    direct_private(&client, isv).await;
    // Every ConfigMap write in the customer's namespace fails with a 500
    // (a webhook nobody answers): a failure that retrying does not fix.
    let hook_name = format!("computenest-test-{cust}");
    let hook: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": hook_name},
        "webhooks": [{
            "name": "deny.computenest.test",
            "clientConfig": {"url": "https://127.0.0.1:9/deny"},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["configmaps"]}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": cust}},
            "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"], "timeoutSeconds": 1
        }]
    }))
    .expect("webhook");
    let hooks = Api::<ValidatingWebhookConfiguration>::all(client.clone());
    hooks
        .create(&PostParams::default(), &hook)
        .await
        .expect("webhook is created");
    // The API server loads webhook configurations from a watch of its own:
    // an instance bought right away could be written before the hook is in
    // force. A dry-run create runs admission without writing anything.
    let probe: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "webhook-probe"}})).expect("probe");
    wait_for("the webhook to refuse ConfigMap writes", DEADLINE, || {
        let cms = Api::<ConfigMap>::namespaced(client.clone(), cust);
        let probe = probe.clone();
        async move {
            cms.create(
                &PostParams {
                    dry_run: true,
                    ..Default::default()
                },
                &probe,
            )
            .await
            .is_err()
            .then_some(())
        }
    })
    .await;
    put(&client, cust, &service_instance("stuck", isv, "web")).await;
    let inst: ServiceInstance = wait_ready(&client, cust, "stuck", "False", "ReconcileError").await;
    assert_message_contains(&inst, "retrying with backoff");
    // Backoff: each retry waits twice as long as the one before (the log
    // says how long; a constant short delay would say 200 ms every time).
    let log = std::env::temp_dir().join("computenest-test-controller.log");
    let field = |line: &str, key: &str| -> Option<u64> {
        let rest = line.split(&format!(" {key}=")).nth(1)?;
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let delays = wait_for("four failed attempts in the log", DEADLINE, || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let delays: Vec<(u64, u64)> = text
            .lines()
            .filter(|l| {
                l.contains("reconcile failed") && l.contains(cust) && l.contains("name=\"stuck\"")
            })
            .filter_map(|l| Some((field(l, "attempts")?, field(l, "retry_in_ms")?)))
            .collect();
        let done = delays.iter().any(|(n, _)| *n >= 4);
        async move { done.then_some(delays) }
    })
    .await;
    for (attempts, delay) in &delays {
        assert_eq!(
            *delay,
            (2000u64 << (attempts - 1)).min(300_000),
            "attempt {attempts} waits {delay} ms: {delays:?}"
        );
    }
    hooks
        .delete(&hook_name, &DeleteParams::default())
        .await
        .expect("webhook removed");
    // Once the cause is gone, the instance recovers by itself, at its next
    // retry: up to 5 minutes away by the backoff's rule, about a minute here
    // (the log shows the attempts).
    wait_ready_within::<ServiceInstance>(
        &client,
        cust,
        "stuck",
        "True",
        "Deployed",
        std::time::Duration::from_secs(180),
    )
    .await;
    t.cleanup().await;
}
