//! The API as the API server enforces it: schema, CEL rules, pruning, examples.

use crate::harness::*;
use computenest::api::*;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

async fn create_json<K>(
    client: &kube::Client,
    ns: &str,
    v: serde_json::Value,
) -> Result<K, kube::Error>
where
    K: Namespaced,
{
    // Sent as raw JSON, so that values the Rust types would refuse reach the API server.
    let ar = kube::core::ApiResource::erase::<K>(&());
    let obj: kube::core::DynamicObject =
        serde_json::from_value(v).expect("test object is an object");
    let created = Api::<kube::core::DynamicObject>::namespaced_with(client.clone(), ns, &ar)
        .create(&PostParams::default(), &obj)
        .await?;
    Ok(
        serde_json::from_value(serde_json::to_value(created).expect("json"))
            .expect("stored object deserializes"),
    )
}

fn rejection(r: Result<impl std::fmt::Debug, kube::Error>) -> String {
    match r {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422, "expected a validation error, got {s:?}");
            s.message
        }
        other => panic!("expected the API server to reject this, got {other:?}"),
    }
}

fn service_json(name: &str, plans: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "computenest.dev/v1alpha1", "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "type": "Private", "version": "1.0.0",
            "parameters": [{"name": "size", "type": "Integer", "default": 1, "minimum": 1, "maximum": 3}],
            "plans": plans,
            "template": {"objects": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "$(params.size)"}}]},
            "outputs": {"logonUrl": "https://x"}
        }
    })
}

#[tokio::test]
async fn crd_is_established_and_an_object_round_trips_without_pruning() {
    let client = client().await;
    install_crds(&client).await;
    let t = TestNamespaces::new(&client, &["api"]).await;
    let v = service_json(
        "roundtrip",
        json!([{"name": "small", "description": "one", "parameters": {"size": 1}}]),
    );
    let created: Service = create_json(&client, t.ns(0), v.clone())
        .await
        .expect("valid Service is accepted");
    let read = Api::<Service>::namespaced(client.clone(), t.ns(0))
        .get("roundtrip")
        .await
        .expect("read back");
    assert_eq!(read.spec, created.spec);
    // Nothing pruned: the stored spec equals what was sent, field for field.
    let sent: ServiceSpec = serde_json::from_value(v["spec"].clone()).unwrap();
    assert_eq!(read.spec, sent);
    assert_eq!(
        serde_json::to_value(&read.spec).unwrap()["template"]["objects"][0]["data"]["k"],
        json!("$(params.size)")
    );

    // Every other kind round-trips too.
    let grant: DistributionGrant = create_json(&client, t.ns(0), json!({
        "apiVersion": "computenest.dev/v1alpha1", "kind": "DistributionGrant", "metadata": {"name": "g"},
        "spec": {"serviceName": "roundtrip", "distributorNamespace": "dist", "decision": "Approved", "expiresAt": "2030-01-01T00:00:00Z", "reason": "partner"}
    })).await.expect("grant");
    assert_eq!(
        grant.spec.expires_at.as_deref(),
        Some("2030-01-01T00:00:00Z")
    );
    let ds: DerivedService = create_json(&client, t.ns(0), json!({
        "apiVersion": "computenest.dev/v1alpha1", "kind": "DerivedService", "metadata": {"name": "d"},
        "spec": {"source": {"namespace": "isv", "name": "roundtrip", "version": "1.0.0"}, "type": "FullyManaged",
                 "marketplace": {"listed": true, "productCode": "p", "price": "1 USD"},
                 "overrides": {"parameterDefaults": {"size": 2}, "lockedParameters": ["size"], "plans": ["small"],
                               "extraObjects": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "brand"}, "data": {"a": "b"}}],
                               "outputs": {"logonUrl": "https://y"}},
                 "access": {"approval": "Automatic", "maxDurationSeconds": 600, "allowSecrets": false}}
    })).await.expect("derived");
    assert_eq!(ds.spec.overrides.parameter_defaults["size"], json!(2));
    assert_eq!(ds.spec.overrides.extra_objects.len(), 1);
    let si: ServiceInstance = create_json(&client, t.ns(0), json!({
        "apiVersion": "computenest.dev/v1alpha1", "kind": "ServiceInstance", "metadata": {"name": "i"},
        "spec": {"serviceRef": {"kind": "DerivedService", "namespace": "dist", "name": "d"}, "plan": "small",
                 "parameters": {"nested": {"a": [1, "two", true]}}}
    })).await.expect("instance");
    assert_eq!(si.spec.parameters["nested"], json!({"a": [1, "two", true]}));
    let ar: AccessRequest = create_json(&client, t.ns(0), json!({
        "apiVersion": "computenest.dev/v1alpha1", "kind": "AccessRequest", "metadata": {"name": "a"},
        "spec": {"instanceName": "i", "subject": {"kind": "User", "name": "alice"},
                 "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
                 "durationSeconds": 600, "reason": "debugging"}
    })).await.expect("access request");
    assert_eq!(ar.spec.rules[0].verbs, vec!["get".to_string()]);
    t.cleanup().await;
}

#[tokio::test]
async fn cel_rules_reject_bad_input_with_their_message_and_accept_good_input() {
    let client = client().await;
    install_crds(&client).await;
    let t = TestNamespaces::new(&client, &["cel"]).await;
    let ns = t.ns(0);

    // Unique plan names.
    let dup = service_json("dup", json!([{"name": "a"}, {"name": "a"}]));
    assert!(
        rejection(create_json::<Service>(&client, ns, dup).await)
            .contains("plan names must be unique")
    );
    // Name patterns and enums.
    let mut bad_version = service_json("v", json!([]));
    bad_version["spec"]["version"] = json!("-1");
    assert!(
        rejection(create_json::<Service>(&client, ns, bad_version).await)
            .contains("version must start with a letter or digit")
    );
    let mut bad_plan = service_json("p", json!([{"name": "Gold Plan"}]));
    bad_plan["spec"]["plans"][0]["name"] = json!("Gold Plan");
    assert!(
        rejection(create_json::<Service>(&client, ns, bad_plan).await)
            .contains("plan names are lower-case DNS labels")
    );
    let mut bad_type = service_json("t", json!([]));
    bad_type["spec"]["type"] = json!("Hybrid");
    assert!(
        rejection(create_json::<Service>(&client, ns, bad_type).await)
            .contains("Unsupported value: \"Hybrid\"")
    );
    let mut bad_range = service_json("r", json!([]));
    bad_range["spec"]["parameters"][0]["minimum"] = json!(5);
    assert!(
        rejection(create_json::<Service>(&client, ns, bad_range).await)
            .contains("minimum must not be greater than maximum")
    );
    // Limits that the parameter's type would never use are refused, not ignored.
    for (name, param, want) in [
        (
            "pattern-on-integer",
            json!({"name": "size", "type": "Integer", "pattern": "[0-9]+"}),
            "pattern applies only to String parameters",
        ),
        (
            "maxlength-on-integer",
            json!({"name": "size", "type": "Integer", "maxLength": 3}),
            "maxLength applies only to String parameters",
        ),
        (
            "minimum-on-string",
            json!({"name": "size", "type": "String", "minimum": 1}),
            "minimum and maximum apply only to Integer and Number parameters",
        ),
        (
            "maximum-on-boolean",
            json!({"name": "size", "type": "Boolean", "maximum": 1}),
            "minimum and maximum apply only to Integer and Number parameters",
        ),
    ] {
        let mut v = service_json(name, json!([]));
        v["spec"]["parameters"][0] = param;
        v["spec"]["template"]["objects"][0]["data"]["k"] = json!("x");
        let got = rejection(create_json::<Service>(&client, ns, v).await);
        assert!(got.contains(want), "{name}: {got}");
    }
    let mut fitting = service_json("fitting", json!([]));
    fitting["spec"]["parameters"] = json!([
        {"name": "size", "type": "Number", "minimum": 0.5, "maximum": 2},
        {"name": "tag", "type": "String", "pattern": "[a-z]+", "maxLength": 8}
    ]);
    create_json::<Service>(&client, ns, fitting)
        .await
        .expect("limits that fit their types are accepted");

    // Grant: immutable references and decision transitions.
    let grants = Api::<DistributionGrant>::namespaced(client.clone(), ns);
    let g = json!({"apiVersion": "computenest.dev/v1alpha1", "kind": "DistributionGrant", "metadata": {"name": "g"},
                   "spec": {"serviceName": "s", "distributorNamespace": "dist", "decision": "Pending"}});
    create_json::<DistributionGrant>(&client, ns, g)
        .await
        .expect("pending grant");
    let set = |spec: serde_json::Value| {
        let grants = grants.clone();
        async move {
            grants
                .patch(
                    "g",
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"spec": spec})),
                )
                .await
        }
    };
    assert!(
        rejection(set(json!({"serviceName": "other"})).await).contains("serviceName is immutable")
    );
    assert!(
        rejection(set(json!({"distributorNamespace": "other"})).await)
            .contains("distributorNamespace is immutable")
    );
    set(json!({"decision": "Rejected"}))
        .await
        .expect("Pending -> Rejected");
    assert!(
        rejection(set(json!({"decision": "Revoked"})).await)
            .contains("a Rejected grant was never approved")
    );
    assert!(
        rejection(set(json!({"decision": "Pending"})).await).contains("cannot go back to Pending")
    );
    set(json!({"decision": "Approved"}))
        .await
        .expect("Rejected -> Approved");
    set(json!({"decision": "Revoked"}))
        .await
        .expect("Approved -> Revoked");
    set(json!({"decision": "Approved"}))
        .await
        .expect("Revoked -> Approved");
    let bad_ns = json!({"apiVersion": "computenest.dev/v1alpha1", "kind": "DistributionGrant", "metadata": {"name": "g2"},
                        "spec": {"serviceName": "s", "distributorNamespace": "Not_A_Namespace"}});
    assert!(
        rejection(create_json::<DistributionGrant>(&client, ns, bad_ns).await)
            .contains("must be a namespace name")
    );

    // Instance: serviceRef is immutable.
    let si = json!({"apiVersion": "computenest.dev/v1alpha1", "kind": "ServiceInstance", "metadata": {"name": "i"},
                    "spec": {"serviceRef": {"kind": "Service", "namespace": "isv", "name": "s"}}});
    create_json::<ServiceInstance>(&client, ns, si)
        .await
        .expect("instance");
    let sis = Api::<ServiceInstance>::namespaced(client.clone(), ns);
    let r = sis
        .patch(
            "i",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"serviceRef": {"name": "other"}}})),
        )
        .await;
    assert!(rejection(r).contains("serviceRef is immutable"));
    sis.patch(
        "i",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"parameters": {"x": 1}}})),
    )
    .await
    .expect("parameters may change");

    // Order: immutable once written.
    let order = json!({"apiVersion": "computenest.dev/v1alpha1", "kind": "Order", "metadata": {"name": "o"},
        "spec": {"seller": {"party": "Distributor", "namespace": "d"}, "buyer": {"party": "Customer", "namespace": "c"},
                 "item": {"kind": "DerivedService", "namespace": "d", "name": "p"},
                 "instance": {"namespace": "c", "name": "i", "uid": "u"}, "settlement": "Online"}});
    create_json::<Order>(&client, ns, order)
        .await
        .expect("order");
    let r = Api::<Order>::namespaced(client.clone(), ns)
        .patch(
            "o",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"price": "0 USD"}})),
        )
        .await;
    assert!(rejection(r).contains("an Order is a record and cannot be changed"));

    // AccessRequest: a ServiceAccount subject needs a namespace.
    let ar = json!({"apiVersion": "computenest.dev/v1alpha1", "kind": "AccessRequest", "metadata": {"name": "a"},
        "spec": {"instanceName": "i", "subject": {"kind": "ServiceAccount", "name": "bot"},
                 "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}], "durationSeconds": 600, "reason": "x"}});
    assert!(
        rejection(create_json::<AccessRequest>(&client, ns, ar).await)
            .contains("a ServiceAccount subject needs its namespace")
    );
    // ... and a user or group has none: a namespace there would be ignored, so it is refused.
    let ar = json!({"apiVersion": "computenest.dev/v1alpha1", "kind": "AccessRequest", "metadata": {"name": "b"},
        "spec": {"instanceName": "i", "subject": {"kind": "User", "name": "jane", "namespace": "elsewhere"},
                 "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}], "durationSeconds": 600, "reason": "x"}});
    assert!(
        rejection(create_json::<AccessRequest>(&client, ns, ar).await)
            .contains("namespace applies only to a ServiceAccount subject")
    );
    t.cleanup().await;
}

#[tokio::test]
async fn short_names_category_and_explain_work_in_kubectl() {
    let client = client().await;
    install_crds(&client).await;
    let Ok(kubectl) = std::env::var("KUBECTL") else {
        panic!(
            "KUBECTL must name the built kubectl (make test sets it from the control plane's env file)"
        );
    };
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&kubectl)
            .args(args)
            .output()
            .expect("kubectl runs");
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let resources = run(&["api-resources", "--api-group=computenest.dev", "-o", "wide"]);
    for short in [
        "cnsvc",
        "cngrant",
        "cnds",
        "cnsi",
        "cnorder",
        "cnaccess",
        "cnapproval",
    ] {
        assert!(
            resources.contains(short),
            "short name {short} missing from:\n{resources}"
        );
    }
    assert!(resources.contains("computenest"), "category missing");
    let core = run(&["api-resources", "--api-group="]);
    assert!(
        core.lines()
            .any(|l| l.starts_with("services ") && l.contains(" svc ")),
        "svc still belongs to core Services"
    );
    let explain = run(&["explain", "serviceinstances.spec"]);
    assert!(
        explain.contains("serviceRef") && explain.contains("What was bought"),
        "{explain}"
    );
    let explain = run(&[
        "explain",
        "services.spec.distribution",
        "--api-version=computenest.dev/v1alpha1",
    ]);
    assert!(explain.contains("approval"), "{explain}");
    run(&["get", "computenest", "-A"]);
}

#[tokio::test]
async fn every_valid_example_passes_server_side_dry_run() {
    let client = client().await;
    install_crds(&client).await;
    let Ok(kubectl) = std::env::var("KUBECTL") else {
        panic!(
            "KUBECTL must name the built kubectl (make test sets it from the control plane's env file)"
        );
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)
            .expect("examples/ is readable")
            .flatten()
        {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml") {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(
        files.len() >= 4,
        "expected the scenario examples under {}",
        root.display()
    );
    for file in files {
        let text = std::fs::read_to_string(&file).expect("example is readable");
        // Namespaces for real (dry-run of namespaced objects needs them), then the rest as a dry run.
        let mut namespaces = String::new();
        for doc in text.split("\n---") {
            if doc.lines().any(|l| l.trim() == "kind: Namespace") {
                namespaces.push_str(doc);
                namespaces.push_str("\n---\n");
            }
        }
        if !namespaces.is_empty() {
            let ns_file =
                std::env::temp_dir().join(format!("cn-example-ns-{}.yaml", rand::random::<u32>()));
            std::fs::write(&ns_file, &namespaces).expect("temp file");
            let out = std::process::Command::new(&kubectl)
                .args(["apply", "-f"])
                .arg(&ns_file)
                .output()
                .expect("kubectl");
            assert!(
                out.status.success(),
                "{}: namespaces: {}",
                file.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            let _ = std::fs::remove_file(&ns_file);
        }
        let out = std::process::Command::new(&kubectl)
            .args(["apply", "--dry-run=server", "-f"])
            .arg(&file)
            .output()
            .expect("kubectl");
        assert!(
            out.status.success(),
            "{} fails server-side dry run: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The examples whose resources live in a managed namespace run there under
/// the platform's default Pod Security level (`restricted`): every pod
/// template of their Services and DerivedServices is admitted, as a Pod, by
/// the API server's Pod Security admission in a namespace enforcing it.
#[tokio::test]
async fn managed_examples_pass_restricted_pod_security() {
    use k8s_openapi::api::core::v1::{Namespace, Pod};
    use kube::api::{Api, PostParams};
    let client = client().await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let ns_name = format!("psa-{:06x}", rand::random::<u32>() & 0xffffff);
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": ns_name, "labels": {
        "pod-security.kubernetes.io/enforce": "restricted"}}}))
    .expect("namespace");
    let namespaces = Api::<Namespace>::all(client.clone());
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    let pods = Api::<Pod>::namespaced(client.clone(), &ns_name);
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let mut checked = 0;
    for dir in [
        "scenario2",
        "scenario3",
        "scenario4",
        "direct-fully-managed",
        "access-request",
    ] {
        let file = root.join(dir).join("all.yaml");
        let text = std::fs::read_to_string(&file).expect("example is readable");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: serde_json::Value =
                serde::Deserialize::deserialize(doc).expect("example is YAML");
            let objects = match v["kind"].as_str() {
                Some("Service") if v["apiVersion"] == "computenest.dev/v1alpha1" => {
                    v["spec"]["template"]["objects"].clone()
                }
                Some("DerivedService") => v["spec"]["overrides"]["extraObjects"].clone(),
                _ => continue,
            };
            for o in objects.as_array().into_iter().flatten() {
                let Some(template) = o["spec"]["template"].as_object() else {
                    continue;
                };
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {"name": format!("check-{checked}")},
                    "spec": template.get("spec").cloned().unwrap_or_default(),
                }))
                .expect("pod template");
                if let Err(e) = pods.create(&dry, &pod).await {
                    panic!(
                        "{}: the pod of {} {} is refused under restricted Pod Security: {e}",
                        file.display(),
                        o["kind"],
                        o["metadata"]["name"]
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 5,
        "expected a pod template in each managed example, found {checked}"
    );
    let _ = namespaces.delete(&ns_name, &Default::default()).await;
}

// ---- pods that run: kube-scheduler and kwok (hack/controlplane.sh) --------------

/// A pod template that passes Pod Security `restricted`, with extra labels.
fn restricted_pod_template(app: &str, labels: serde_json::Value) -> serde_json::Value {
    let mut all = json!({"app": app});
    if let (Some(all), Some(extra)) = (all.as_object_mut(), labels.as_object()) {
        all.extend(extra.clone());
    }
    json!({
        "metadata": {"labels": all},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "app", "image": "registry.example.com/app:1.0",
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}
            }]
        }
    })
}

fn deployment(name: &str, replicas: i32, labels: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": restricted_pod_template(name, labels)
        }
    })
}

fn job(name: &str, labels: serde_json::Value) -> serde_json::Value {
    let mut template = restricted_pod_template(name, labels);
    template["spec"]["restartPolicy"] = "Never".into();
    json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": template}
    })
}

/// A fresh namespace that enforces Pod Security `restricted`, as managed
/// namespaces do; panics with a hint when nothing in the cluster runs pods.
async fn namespace_that_runs_pods(client: &kube::Client, role: &str) -> TestNamespaces {
    use k8s_openapi::api::core::v1::{Namespace, Node};
    let nodes = Api::<Node>::all(client.clone())
        .list(&Default::default())
        .await
        .expect("nodes can be listed");
    assert!(
        !nodes.items.is_empty(),
        "this test needs pods to run, and the cluster has no Node: start the control plane \
         with pods (hack/controlplane.sh start; CP_PODS=0 leaves out kube-scheduler and kwok)"
    );
    let t = TestNamespaces::new(client, &[role]).await;
    Api::<Namespace>::all(client.clone())
        .patch(
            t.ns(0),
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}),
            ),
        )
        .await
        .expect("the namespace enforces Pod Security restricted");
    t
}

async fn create_workload(client: &kube::Client, ns: &str, v: serde_json::Value) {
    let (group, version) = match v["apiVersion"].as_str().unwrap_or_default().split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (
            String::new(),
            v["apiVersion"].as_str().unwrap_or_default().to_string(),
        ),
    };
    let kind = v["kind"].as_str().unwrap_or_default().to_string();
    let plural = format!("{}s", kind.to_lowercase());
    let ar = kube::core::ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk(&group, &version, &kind),
        &plural,
    );
    let obj: kube::core::DynamicObject = serde_json::from_value(v).expect("workload object");
    Api::<kube::core::DynamicObject>::namespaced_with(client.clone(), ns, &ar)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{kind} {ns}/{} is created: {e}",
                obj.metadata.name.clone().unwrap_or_default()
            )
        });
}

/// Polls `check` (Ok: done; Err: how things stand) until it is Ok, or panics
/// after DEADLINE with `what` and the last state seen.
async fn poll<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let start = std::time::Instant::now();
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) if start.elapsed() > DEADLINE => {
                panic!("timed out after {DEADLINE:?} waiting for: {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
        }
    }
}

fn condition_status(v: &serde_json::Value, type_: &str) -> Option<String> {
    v["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .and_then(|c| c["status"].as_str())
        .map(str::to_string)
}

async fn get_json<K: Namespaced>(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<serde_json::Value, String> {
    let obj = Api::<K>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .map_err(|e| format!("get {name}: {e}"))?;
    serde_json::to_value(obj).map_err(|e| e.to_string())
}

/// The pods of `app` in `ns`, as JSON.
async fn pods_of(
    client: &kube::Client,
    ns: &str,
    app: &str,
) -> Result<Vec<serde_json::Value>, String> {
    use k8s_openapi::api::core::v1::Pod;
    let list = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&kube::api::ListParams::default().labels(&format!("app={app}")))
        .await
        .map_err(|e| format!("list pods: {e}"))?;
    Ok(list
        .items
        .into_iter()
        .map(|p| serde_json::to_value(p).unwrap_or_default())
        .collect())
}

/// The local control plane runs pods (kube-scheduler binds them to kwok's
/// simulated Nodes, kwok makes them Running and Ready): a Deployment of two
/// replicas becomes Available with 2 ready replicas, and a Job completes, in a
/// namespace that enforces Pod Security `restricted`.
#[tokio::test]
async fn deployments_become_available_and_jobs_complete_on_the_simulated_nodes() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::batch::v1::Job;
    let client = client().await;
    let t = namespace_that_runs_pods(&client, "pods").await;
    let ns = t.ns(0).to_string();
    create_workload(&client, &ns, deployment("web", 2, json!({}))).await;
    create_workload(&client, &ns, job("migrate", json!({}))).await;

    poll("Deployment web Available with 2 ready replicas", || async {
        let d = get_json::<Deployment>(&client, &ns, "web").await?;
        let ready = d["status"]["readyReplicas"].as_i64().unwrap_or(0);
        let available = condition_status(&d, "Available");
        if ready == 2 && available.as_deref() == Some("True") {
            Ok(())
        } else {
            Err(format!(
                "readyReplicas {ready}, Available {available:?}; status {}",
                d["status"]
            ))
        }
    })
    .await;
    poll("Job migrate Complete", || async {
        let j = get_json::<Job>(&client, &ns, "migrate").await?;
        match condition_status(&j, "Complete").as_deref() {
            Some("True") if j["status"]["succeeded"] == 1 => Ok(()),
            _ => Err(format!("status {}", j["status"])),
        }
    })
    .await;
    // The pods really ran on the simulated Nodes, with an IP each.
    let pods = pods_of(&client, &ns, "web").await.expect("pods of web");
    assert_eq!(pods.len(), 2, "two pods of web: {pods:?}");
    for p in &pods {
        assert!(
            p["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| n.starts_with("kwok-node-")),
            "a pod bound to a simulated Node: {}",
            p["spec"]
        );
        assert_eq!(p["status"]["phase"], "Running", "{}", p["status"]);
        assert!(
            p["status"]["podIP"].is_string(),
            "a pod IP: {}",
            p["status"]
        );
    }
    t.cleanup().await;
}

/// Unhealthy workloads on demand (hack/kwok/stages.yaml): pods labelled
/// `computenest.dev/simulate: never-ready` run but never become Ready, so
/// their Deployment is not Available; `computenest.dev/simulate: fail` makes
/// a Job's pod end Failed (the Job fails) and a Deployment's pod crash-loop.
#[tokio::test]
async fn pods_labelled_never_ready_or_fail_stay_unhealthy() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::batch::v1::Job;
    let client = client().await;
    let t = namespace_that_runs_pods(&client, "unhealthy").await;
    let ns = t.ns(0).to_string();
    let never_ready = json!({"computenest.dev/simulate": "never-ready"});
    let fail = json!({"computenest.dev/simulate": "fail"});
    create_workload(&client, &ns, deployment("stuck", 1, never_ready)).await;
    create_workload(&client, &ns, deployment("crashing", 1, fail.clone())).await;
    create_workload(&client, &ns, job("broken", fail)).await;
    // A healthy Deployment next to them shows that kwok got that far.
    create_workload(&client, &ns, deployment("healthy", 1, json!({}))).await;

    poll("Job broken Failed", || async {
        let j = get_json::<Job>(&client, &ns, "broken").await?;
        match condition_status(&j, "Failed").as_deref() {
            Some("True") if j["status"]["failed"] == 1 => Ok(()),
            _ => Err(format!("status {}", j["status"])),
        }
    })
    .await;
    let failed = pods_of(&client, &ns, "broken")
        .await
        .expect("pods of broken");
    assert!(
        failed.iter().any(|p| p["status"]["phase"] == "Failed"
            && p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1),
        "the Job's pod ended Failed with exit code 1: {failed:?}"
    );

    poll("Deployment healthy Available", || async {
        let d = get_json::<Deployment>(&client, &ns, "healthy").await?;
        match condition_status(&d, "Available").as_deref() {
            Some("True") => Ok(()),
            _ => Err(format!("status {}", d["status"])),
        }
    })
    .await;
    poll("the pod of stuck Running and not Ready", || async {
        let pods = pods_of(&client, &ns, "stuck").await?;
        let p = pods.first().ok_or("no pod yet")?;
        if p["status"]["phase"] == "Running"
            && condition_status(p, "Ready").as_deref() == Some("False")
            && p["status"]["containerStatuses"][0]["state"]["running"].is_object()
        {
            Ok(())
        } else {
            Err(format!("status {}", p["status"]))
        }
    })
    .await;
    poll("the pod of crashing in CrashLoopBackOff", || async {
        let pods = pods_of(&client, &ns, "crashing").await?;
        let p = pods.first().ok_or("no pod yet")?;
        let waiting = &p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"];
        if condition_status(p, "Ready").as_deref() == Some("False") && waiting == "CrashLoopBackOff"
        {
            Ok(())
        } else {
            Err(format!("status {}", p["status"]))
        }
    })
    .await;
    // kwok has played its last Stage on these pods: nothing makes them Ready
    // later, and their Deployments report no ready or available replica.
    for name in ["stuck", "crashing"] {
        let d = get_json::<Deployment>(&client, &ns, name)
            .await
            .expect("deployment");
        assert_eq!(
            d["status"]["readyReplicas"].as_i64().unwrap_or(0),
            0,
            "{name}: {}",
            d["status"]
        );
        assert_ne!(
            condition_status(&d, "Available").as_deref(),
            Some("True"),
            "{name}: {}",
            d["status"]
        );
    }
    t.cleanup().await;
}
