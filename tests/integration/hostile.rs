//! Hostile and broken input, table-driven: every case gets a clear condition,
//! nothing is written outside its allowed place, and the controller keeps
//! working for everyone else.

use crate::fixtures::*;
use crate::harness::*;
use computenest::api::*;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

/// How a case breaks the Service (None: a valid Service).
type Mutate = fn(&mut Service);

struct Case {
    name: &'static str,
    mutate: Mutate,
    plan: &'static str,
    params: Value,
    service_reason: Option<&'static str>,
    instance_reason: &'static str,
    message: &'static str,
}

impl Case {
    /// A Service the controller refuses (`service_reason`, saying `message`)
    /// after `mutate`; its instance (plan basic, no parameters) is
    /// ProductInvalid and says the same.
    fn refused_product(
        name: &'static str,
        service_reason: &'static str,
        message: &'static str,
        mutate: Mutate,
    ) -> Case {
        Case {
            name,
            mutate,
            plan: "basic",
            params: json!({}),
            service_reason: Some(service_reason),
            instance_reason: "ProductInvalid",
            message,
        }
    }
}

fn push(s: &mut Service, obj: Value) {
    s.spec.template.objects.push(obj);
}

fn add_string_param(s: &mut Service, spec: Value) {
    s.spec
        .parameters
        .push(serde_json::from_value(spec).expect("parameter spec"));
}

fn cases() -> Vec<Case> {
    let valid: Mutate = |_| {};
    vec![
        Case::refused_product(
            "pinned-resource-version",
            "InvalidTemplate",
            "metadata.resourceVersion",
            |s| {
                push(
                    s,
                    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "$(instance.name)-pinned", "resourceVersion": "1"}}),
                )
            },
        ),
        Case::refused_product(
            "forged-ownership-label",
            "InvalidTemplate",
            "computenest.dev/",
            |s| {
                push(
                    s,
                    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "$(instance.name)-forged", "labels": {"computenest.dev/instance-uid": "someone-else"}}}),
                )
            },
        ),
        Case::refused_product("namespace-kind", "InvalidTemplate", "cluster-scoped", |s| {
            push(
                s,
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "evil"}}),
            )
        }),
        Case::refused_product("clusterrole", "InvalidTemplate", "cluster-scoped", |s| {
            push(
                s,
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "evil"}}),
            )
        }),
        Case::refused_product(
            "clusterrolebinding",
            "InvalidTemplate",
            "cluster-scoped",
            |s| {
                push(
                    s,
                    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "evil"}}),
                )
            },
        ),
        Case::refused_product("crd", "InvalidTemplate", "cluster-scoped", |s| {
            push(
                s,
                json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "evil"}}),
            )
        }),
        Case::refused_product("webhook", "InvalidTemplate", "cluster-scoped", |s| {
            push(
                s,
                json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration", "metadata": {"name": "evil"}}),
            )
        }),
        Case::refused_product(
            "other-namespace",
            "InvalidTemplate",
            "names a namespace",
            |s| s.spec.template.objects[0]["metadata"]["namespace"] = json!("kube-system"),
        ),
        Case::refused_product(
            "namespace-placeholder",
            "InvalidTemplate",
            "names a namespace",
            |s| s.spec.template.objects[0]["metadata"]["namespace"] = json!("$(params.target)"),
        ),
        Case::refused_product("role", "InvalidTemplate", "allow-list", |s| {
            push(
                s,
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r"}}),
            )
        }),
        Case::refused_product("rolebinding", "InvalidTemplate", "allow-list", |s| {
            push(
                s,
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "r"}}),
            )
        }),
        Case::refused_product("pod", "InvalidTemplate", "allow-list", |s| {
            push(
                s,
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}),
            )
        }),
        Case::refused_product("wrong-version", "InvalidTemplate", "allow-list", |s| {
            push(
                s,
                json!({"apiVersion": "apps/v1beta1", "kind": "Deployment", "metadata": {"name": "d"}}),
            )
        }),
        Case::refused_product("foreign-owner", "InvalidTemplate", "ownerReferences", |s| {
            s.spec.template.objects[0]["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "Namespace", "name": "kube-system", "uid": "x"}])
        }),
        Case::refused_product(
            "generate-name",
            "InvalidTemplate",
            "metadata.name is required",
            |s| {
                push(
                    s,
                    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "x-"}}),
                )
            },
        ),
        Case::refused_product("finalizers", "InvalidTemplate", "finalizers", |s| {
            s.spec.template.objects[0]["metadata"]["finalizers"] = json!(["block/me"])
        }),
        Case::refused_product(
            "no-kind",
            "InvalidTemplate",
            "apiVersion and kind are required",
            |s| push(s, json!({"apiVersion": "v1", "metadata": {"name": "x"}})),
        ),
        Case::refused_product(
            "bad-regex",
            "InvalidSchema",
            "not a valid regular expression",
            |s| add_string_param(s, json!({"name": "tag", "type": "String", "pattern": "(["})),
        ),
        Case::refused_product(
            "bad-default",
            "InvalidSchema",
            "default: must be at most 5",
            |s| s.spec.parameters[0].default = Some(json!(99)),
        ),
        Case::refused_product(
            "plan-undeclared",
            "InvalidSchema",
            "does not declare",
            |s| {
                s.spec.plans[0].parameters.insert("ghost".into(), json!(1));
            },
        ),
        Case {
            name: "wrong-type",
            mutate: valid,
            plan: "basic",
            params: json!({"replicas": "3"}),
            service_reason: None,
            instance_reason: "InvalidParameter",
            message: "must be a whole number, got a string",
        },
        Case {
            name: "float-for-int",
            mutate: valid,
            plan: "basic",
            params: json!({"replicas": 2.5}),
            service_reason: None,
            instance_reason: "InvalidParameter",
            message: "must be a whole number",
        },
        Case {
            name: "out-of-range",
            mutate: valid,
            plan: "basic",
            params: json!({"replicas": 1000000}),
            service_reason: None,
            instance_reason: "InvalidParameter",
            message: "must be at most 5",
        },
        Case {
            name: "too-long",
            mutate: |s| {
                add_string_param(
                    s,
                    json!({"name": "motd", "type": "String", "maxLength": 16}),
                )
            },
            plan: "basic",
            params: json!({"motd": "a".repeat(17)}),
            service_reason: None,
            instance_reason: "InvalidParameter",
            message: "at most 16 characters",
        },
        Case {
            name: "yaml-in-pattern-param",
            mutate: |s| {
                add_string_param(
                    s,
                    json!({"name": "tag", "type": "String", "pattern": "[a-z0-9.-]+"}),
                )
            },
            plan: "basic",
            params: json!({"tag": "x\nmetadata:\n  namespace: kube-system"}),
            service_reason: None,
            instance_reason: "InvalidParameter",
            message: "must match the pattern",
        },
        Case {
            name: "json-object-for-string",
            mutate: |s| add_string_param(s, json!({"name": "tag", "type": "String"})),
            plan: "basic",
            params: json!({"tag": {"apiVersion": "v1", "kind": "Secret"}}),
            service_reason: None,
            instance_reason: "InvalidParameter",
            message: "must be a string, got an object",
        },
        Case {
            name: "control-characters",
            mutate: |s| add_string_param(s, json!({"name": "tag", "type": "String"})),
            plan: "basic",
            params: json!({"tag": "ok\u{0000}\u{001b}[2J"}),
            service_reason: None,
            instance_reason: "InvalidParameter",
            message: "control characters",
        },
        Case {
            name: "namespace-parameter",
            mutate: valid,
            plan: "basic",
            params: json!({"namespace": "kube-system"}),
            service_reason: None,
            instance_reason: "InvalidParameter",
            message: "\"namespace\": is not a parameter",
        },
        Case {
            name: "required-missing",
            mutate: |s| {
                add_string_param(
                    s,
                    json!({"name": "owner", "type": "String", "required": true}),
                )
            },
            plan: "basic",
            params: json!({}),
            service_reason: None,
            instance_reason: "InvalidParameter",
            message: "\"owner\": is required",
        },
        Case {
            name: "unknown-plan",
            mutate: valid,
            plan: "platinum",
            params: json!({}),
            service_reason: None,
            instance_reason: "InvalidPlan",
            message: "plan \"platinum\" is not sold",
        },
        Case {
            name: "plan-locked",
            mutate: valid,
            plan: "pro",
            params: json!({"replicas": 1}),
            service_reason: None,
            instance_reason: "InvalidParameter",
            message: "is set by plan \"pro\"",
        },
        Case {
            name: "unicode-name",
            mutate: |s| {
                add_string_param(s, json!({"name": "tag", "type": "String"}));
                s.spec.template.objects[0]["metadata"]["name"] = json!("$(params.tag)");
            },
            plan: "basic",
            params: json!({"tag": "Ünïcode\u{202e}evil"}),
            service_reason: None,
            instance_reason: "RenderFailed",
            message: "is not a valid name",
        },
        Case {
            name: "unknown-placeholder",
            mutate: |s| s.spec.template.objects[0]["data"]["x"] = json!("$(params.nope)"),
            plan: "basic",
            params: json!({}),
            service_reason: None,
            instance_reason: "RenderFailed",
            message: "unknown placeholder $(params.nope)",
        },
        Case {
            name: "near-size-limit",
            mutate: |s| {
                add_string_param(
                    s,
                    json!({"name": "blob", "type": "String", "maxLength": 65536}),
                );
                for i in 0..20 {
                    s.spec.template.objects[0]["data"][format!("b{i}")] = json!("$(params.blob)");
                }
            },
            plan: "basic",
            // Each value within the parameter cap (16 KiB), the object over
            // the object cap (256 KiB): stopped while rendering.
            params: json!({"blob": "b".repeat(15_000)}),
            service_reason: None,
            instance_reason: "TooLarge",
            message: "tenancy.sizeLimits.maxObjectBytes",
        },
        Case {
            name: "typed-value-refused",
            mutate: |s| s.spec.template.objects[0]["data"]["n"] = json!("$(params.replicas)"),
            plan: "basic",
            params: json!({}),
            service_reason: None,
            instance_reason: "ApplyFailed",
            message: "the API server refused ConfigMap",
        },
    ]
}

/// Whether the cluster-scoped object `name` of kind `K` exists.
async fn cluster_object_exists<K>(client: &Client, name: &str) -> bool
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::all(client.clone())
        .get_opt(name)
        .await
        .expect("get")
        .is_some()
}

#[tokio::test]
async fn hostile_and_broken_input_gets_a_clear_condition_and_writes_nothing() {
    let (client, t) = controller_and_namespaces(&["isv", "dist", "cust", "other"]).await;
    let (isv, dist, cust, other) = (t.ns(0), t.ns(1), t.ns(2), t.ns(3));
    let cases = cases();
    assert!(cases.len() >= 30, "at least 30 hostile cases");
    for c in &cases {
        // Fully managed, so that a wrongly written object would land in a namespace of its own.
        let mut svc = service(c.name).fully_managed();
        (c.mutate)(&mut svc);
        apply(&client, isv, &svc)
            .await
            .unwrap_or_else(|e| panic!("{}: the API server refused the Service: {e}", c.name));
        let inst = service_instance(c.name, isv, c.name).plan(c.plan);
        apply(&client, cust, &inst.params(c.params.clone()))
            .await
            .unwrap_or_else(|e| panic!("{}: the API server refused the instance: {e}", c.name));
    }
    for c in &cases {
        if let Some(reason) = c.service_reason {
            let svc: Service = wait_ready(&client, isv, c.name, "False", reason).await;
            assert!(
                ready_message(&svc).contains(c.message),
                "{}: {}",
                c.name,
                ready_message(&svc)
            );
        }
        let inst: ServiceInstance =
            wait_ready(&client, cust, c.name, "False", c.instance_reason).await;
        assert!(
            ready_message(&inst).contains(c.message),
            "{}: {}",
            c.name,
            ready_message(&inst)
        );
        assert_eq!(
            inst.status.as_ref().and_then(|s| s.phase),
            Some(Phase::DeployFailed),
            "{}",
            c.name
        );
    }

    // References across tenants without a grant, missing objects, invalid combinations.
    put(&client, isv, &service("fm").fully_managed().listed()).await;
    // A grant for another distributor.
    put(&client, isv, &approved_grant("for-other", "fm", other)).await;
    let no_grant = derived("no-grant", isv, "fm").fully_managed();
    put(&client, dist, &no_grant).await;
    put(&client, dist, &derived("as-private", isv, "fm")).await;
    let missing = derived("missing", isv, "nope").fully_managed();
    put(&client, dist, &missing).await;
    wait_ready::<DerivedService>(&client, dist, "no-grant", "False", "GrantPending").await;
    wait_ready::<DerivedService>(&client, dist, "as-private", "False", "InvalidScenario").await;
    wait_ready::<DerivedService>(&client, dist, "missing", "False", "SourceNotFound").await;
    let refs = [
        (
            "buy-no-grant",
            "DerivedService",
            dist,
            "no-grant",
            "GrantPending",
        ),
        (
            "buy-as-private",
            "DerivedService",
            dist,
            "as-private",
            "InvalidScenario",
        ),
        (
            "buy-missing-ds",
            "DerivedService",
            dist,
            "ghost",
            "ProductNotFound",
        ),
        (
            "buy-missing-svc",
            "Service",
            isv,
            "ghost",
            "ProductNotFound",
        ),
        (
            "buy-other-tenant",
            "DerivedService",
            other,
            "no-grant",
            "ProductNotFound",
        ),
    ];
    for (name, kind, ns, product, _) in refs {
        put(&client, cust, &instance_of(name, kind, ns, product)).await;
    }
    for (name, _, _, _, reason) in refs {
        wait_ready::<ServiceInstance>(&client, cust, name, "False", reason).await;
    }
    // The grant for the other distributor was not used, and stayed as the ISV wrote it.
    let g = Api::<DistributionGrant>::namespaced(client.clone(), isv)
        .get("for-other")
        .await
        .expect("grant");
    assert_eq!(
        (g.spec.distributor_namespace.as_str(), g.spec.decision),
        (other, Decision::Approved)
    );

    // Nothing was written outside its place: no managed namespace for any refused instance,
    // nothing of ours in the customer's or a system namespace, no cluster-wide object.
    let managed = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default().labels(&format!("computenest.dev/instance-namespace={cust}")))
        .await
        .expect("list namespaces");
    // The one case that got as far as writing (the API server refused an object)
    // has its own managed namespace, its allowed place; no other case has one.
    let names: Vec<String> = managed.items.iter().map(|n| n.name_any()).collect();
    let typed_uid = Api::<ServiceInstance>::namespaced(client.clone(), cust)
        .get("typed-value-refused")
        .await
        .expect("instance")
        .metadata
        .uid
        .unwrap_or_default();
    assert!(
        names.len() == 1
            && names[0]
                == computenest::provision::managed_namespace_name(
                    cust,
                    "typed-value-refused",
                    &typed_uid
                ),
        "managed namespaces were created for refused instances: {names:?}"
    );
    assert!(managed_config_maps(&client, cust).await.is_empty());
    assert!(managed_config_maps(&client, "kube-system").await.is_empty());
    assert!(managed_config_maps(&client, "default").await.is_empty());
    // Everywhere a write could land (every allow-listed kind and the RBAC
    // kinds in every namespace, the cluster-scoped kinds through their own
    // URLs): only the one case that was written has anything.
    let written = everything_labelled(
        &client,
        &format!("computenest.dev/instance-namespace={cust}"),
    )
    .await;
    let stray: Vec<&String> = written
        .iter()
        .filter(|w| !w.ends_with(&format!("uid={typed_uid}")))
        .collect();
    assert!(stray.is_empty(), "written for refused instances: {stray:?}");
    assert!(
        written.iter().any(|w| w.starts_with("Namespace ")),
        "the written case is found (the search looks in the right places): {written:?}"
    );
    for name in ["evil"] {
        assert!(!cluster_object_exists::<ClusterRole>(&client, name).await);
        assert!(!cluster_object_exists::<ClusterRoleBinding>(&client, name).await);
        assert!(!cluster_object_exists::<Namespace>(&client, name).await);
    }

    // The controller keeps working for everyone else.
    put(&client, isv, &service("good")).await;
    buy(&client, cust, &service_instance("good", isv, "good")).await;

    // The ISV's namespace is deleted under a live instance: it keeps running, and says why it is no longer sellable.
    let t2 = TestNamespaces::new(&client, &["isv2", "dist2", "cust2"]).await;
    let (isv2, dist2, cust2) = (t2.ns(0), t2.ns(1), t2.ns(2));
    put(&client, isv2, &service("fm").fully_managed().automatic()).await;
    resell(&client, dist2, &derived("d", isv2, "fm").fully_managed()).await;
    buy(&client, cust2, &derived_instance("live", dist2, "d")).await;
    Api::<Namespace>::all(client.clone())
        .delete(isv2, &DeleteParams::default())
        .await
        .expect("delete ISV namespace");
    wait_ready_within::<DerivedService>(
        &client,
        dist2,
        "d",
        "False",
        "SourceNotFound",
        NAMESPACE_DELETION,
    )
    .await;
    wait_for(
        "the live instance says its product is gone",
        DEADLINE,
        || {
            let api = Api::<ServiceInstance>::namespaced(client.clone(), cust2);
            async move {
                let i = api.get("live").await.ok()?;
                let s = i.status?;
                let gv = s.conditions.iter().find(|c| c.type_ == "GrantValid")?;
                (gv.status == "False"
                    && gv.reason == "SourceNotFound"
                    && s.phase == Some(Phase::Deployed))
                .then_some(())
            }
        },
    )
    .await;
    t2.cleanup().await;
    t.cleanup().await;
}
