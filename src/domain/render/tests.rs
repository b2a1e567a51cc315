use super::*;
use crate::api::ServiceSpec;
use crate::domain::tenancy::SizeLimits;
use serde_json::json;

fn service() -> ServiceSpec {
    serde_yaml::from_str(include_str!("../../../tests/fixtures/service-web.yaml"))
        .expect("fixture parses")
}

fn params(v: Value) -> ParameterValues {
    serde_json::from_value(v).expect("params")
}

fn offering() -> Offering {
    resolve_offering(&service(), None, &default_allowed_kinds()).expect("valid offering")
}

#[test]
fn allowed_kind_parsing() {
    let k = AllowedKind::parse("apps/v1/Deployment/deployments").unwrap();
    assert_eq!(k.api_version(), "apps/v1");
    assert_eq!(
        AllowedKind::parse("v1/ConfigMap/configmaps")
            .unwrap()
            .api_version(),
        "v1"
    );
    assert!(AllowedKind::parse("Deployment").is_err());
    assert!(AllowedKind::parse("apps//Deployment/deployments").is_err());
}

#[test]
fn resolves_defaults_then_plan_then_buyer() {
    let o = offering();
    let got = resolve_parameters(
        &o,
        Some("pro"),
        &params(json!({"adminEmail": "a@b.c", "domain": "shop.io"})),
        &SizeLimits::default(),
    )
    .unwrap();
    assert_eq!(got["replicas"], json!(3));
    assert_eq!(got["tier"], json!("large"));
    assert_eq!(got["domain"], json!("shop.io"));
    assert_eq!(got["debug"], json!(false));
}

#[test]
fn parameter_errors_name_the_parameter_and_rule() {
    let o = offering();
    let cases = [
        (Some("basic"), json!({}), "\"adminEmail\": is required"),
        (None, json!({"adminEmail": "x"}), "spec.plan is required"),
        (
            Some("gold"),
            json!({"adminEmail": "x"}),
            "plan \"gold\" is not sold",
        ),
        (
            Some("basic"),
            json!({"adminEmail": "x", "replicas": "3"}),
            "\"replicas\": must be a whole number, got a string",
        ),
        (
            Some("basic"),
            json!({"adminEmail": "x", "replicas": 11}),
            "must be at most 10",
        ),
        (
            Some("basic"),
            json!({"adminEmail": "x", "replicas": 2.5}),
            "must be a whole number",
        ),
        (
            Some("basic"),
            json!({"adminEmail": "x", "domain": "a b"}),
            "must match the pattern",
        ),
        (
            Some("basic"),
            json!({"adminEmail": "x", "domain": "a".repeat(101)}),
            "at most 100 characters",
        ),
        (
            Some("basic"),
            json!({"adminEmail": "x", "tier": "large"}),
            "is set by plan \"basic\"",
        ),
        (
            Some("basic"),
            json!({"adminEmail": "x", "nope": 1}),
            "\"nope\": is not a parameter",
        ),
        (
            Some("basic"),
            json!({"adminEmail": {"a": 1}}),
            "must be a string, got an object",
        ),
        (
            Some("basic"),
            json!({"adminEmail": "x\u{0000}y"}),
            "control characters",
        ),
        (
            Some("basic"),
            json!({"adminEmail": "x", "debug": "true"}),
            "must be true or false",
        ),
    ];
    for (plan, given, want) in cases {
        let err = resolve_parameters(&o, plan, &params(given.clone()), &SizeLimits::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{given}: got {err:?}, want {want:?}");
    }
}

#[test]
fn renders_typed_values_and_forces_namespace() {
    let o = offering();
    let p = resolve_parameters(
        &o,
        Some("pro"),
        &params(json!({"adminEmail": "ops@acme.io"})),
        &SizeLimits::default(),
    )
    .unwrap();
    let ctx = RenderContext {
        instance_name: "shop",
        instance_namespace: "acme",
        target_namespace: "acme",
        params: &p,
    };
    let labels = BTreeMap::from([("computenest.dev/instance".to_string(), "shop".to_string())]);
    let objs = render_objects(&o.objects, &ctx, &labels, &SizeLimits::default()).unwrap();
    assert_eq!(objs.len(), 2);
    assert_eq!(objs[0]["metadata"]["name"], json!("shop-config"));
    assert_eq!(objs[0]["metadata"]["namespace"], json!("acme"));
    assert_eq!(
        objs[0]["data"]["greeting"],
        json!("hello ops@acme.io at acme")
    );
    assert_eq!(
        objs[1]["spec"]["replicas"],
        json!(3),
        "whole-string placeholder keeps the integer type"
    );
    assert_eq!(objs[1]["metadata"]["labels"]["app"], json!("web"));
    assert_eq!(
        objs[1]["metadata"]["labels"]["computenest.dev/instance"],
        json!("shop")
    );
    assert_eq!(
        objs[1]["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"],
        json!(false)
    );
    let url = render_string(
        o.outputs.logon_url.as_deref().unwrap(),
        &ctx,
        &SizeLimits::default(),
    )
    .unwrap();
    assert_eq!(url, "https://shop.example.com/");
}

#[test]
fn parameters_cannot_inject_structure() {
    let mut s = service();
    s.parameters[1].pattern = None; // domain: any string
    let o = resolve_offering(&s, None, &default_allowed_kinds()).unwrap();
    let hostile = "x\"\nmetadata:\n  namespace: kube-system\n---\napiVersion: v1\nkind: Secret";
    let p = resolve_parameters(
        &o,
        Some("basic"),
        &params(json!({"adminEmail": "a", "domain": hostile})),
        &SizeLimits::default(),
    )
    .unwrap();
    let ctx = RenderContext {
        instance_name: "i",
        instance_namespace: "c",
        target_namespace: "c",
        params: &p,
    };
    let objs = render_objects(&o.objects, &ctx, &BTreeMap::new(), &SizeLimits::default()).unwrap();
    assert_eq!(objs.len(), 2, "no object was added");
    assert_eq!(
        objs[0]["data"]["domain"],
        json!(hostile),
        "the text stays one string value"
    );
    assert_eq!(objs[0]["metadata"]["namespace"], json!("c"));
}

#[test]
fn placeholder_in_name_must_render_to_a_valid_name() {
    let mut s = service();
    s.template.objects[0]["metadata"]["name"] = json!("$(params.domain)");
    s.parameters[1].pattern = None;
    let o = resolve_offering(&s, None, &default_allowed_kinds()).unwrap();
    let p = resolve_parameters(
        &o,
        Some("basic"),
        &params(json!({"adminEmail": "a", "domain": "../Etc"})),
        &SizeLimits::default(),
    )
    .unwrap();
    let ctx = RenderContext {
        instance_name: "i",
        instance_namespace: "c",
        target_namespace: "c",
        params: &p,
    };
    let err =
        render_objects(&o.objects, &ctx, &BTreeMap::new(), &SizeLimits::default()).unwrap_err();
    assert!(err.to_string().contains("is not a valid name"), "{err}");
}

#[test]
fn unknown_placeholder_is_an_error() {
    let p = ParameterValues::new();
    let ctx = RenderContext {
        instance_name: "i",
        instance_namespace: "c",
        target_namespace: "c",
        params: &p,
    };
    let err =
        render_string("https://$(params.missing)/", &ctx, &SizeLimits::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown placeholder $(params.missing)"),
        "{err}"
    );
    assert_eq!(
        render_string("cost: $(5", &ctx, &SizeLimits::default()).unwrap(),
        "cost: $(5"
    );
}

#[test]
fn hostile_templates_are_refused_before_rendering() {
    let allowed = default_allowed_kinds();
    let cases = [
        (
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}),
            "cluster-scoped",
        ),
        (
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "x"}}),
            "cluster-scoped",
        ),
        (
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "x"}}),
            "not in the controller's allow-list",
        ),
        (
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "kube-system"}}),
            "names a namespace",
        ),
        (
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "x-"}}),
            "metadata.name is required",
        ),
        (
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "ownerReferences": []}}),
            "ownerReferences",
        ),
        (
            json!({"apiVersion": "v1", "kind": "ConfigMap"}),
            "metadata.name is required",
        ),
        (
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "generateName": "x-"}}),
            "generateName",
        ),
        (
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "finalizers": ["a/b"]}}),
            "finalizers",
        ),
        (
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "resourceVersion": "1"}}),
            "metadata.resourceVersion",
        ),
        (
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "uid": "u"}}),
            "metadata.uid",
        ),
        (
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "managedFields": []}}),
            "metadata.managedFields",
        ),
        (
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "deletionTimestamp": "2020-01-01T00:00:00Z"}}),
            "metadata.deletionTimestamp",
        ),
        (
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "labels": {"computenest.dev/instance-uid": "other"}}}),
            "computenest.dev/",
        ),
        (
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "annotations": {"evil.computenest.dev/x": "1"}}}),
            "computenest.dev/",
        ),
        (
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "labels": "not-a-map"}}),
            "metadata.labels must be a map",
        ),
        (
            json!({"kind": "ConfigMap", "metadata": {"name": "x"}}),
            "apiVersion and kind are required",
        ),
        (json!("just a string"), "must be an object"),
        (
            json!({"apiVersion": "apps/v2", "kind": "Deployment", "metadata": {"name": "x"}}),
            "allow-list",
        ),
    ];
    for (obj, want) in cases {
        let mut s = service();
        s.template.objects.push(obj.clone());
        let err = resolve_offering(&s, None, &allowed)
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{obj}: got {err:?}, want {want:?}");
    }
}

#[test]
fn overrides_apply_and_are_checked() {
    let s = service();
    let allowed = default_allowed_kinds();
    let ov: Overrides = serde_json::from_value(json!({
        "parameterDefaults": {"domain": "reseller.io"},
        "lockedParameters": ["domain"],
        "plans": ["pro"],
        "extraObjects": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "$(instance.name)-brand"}, "data": {"logo": "r.png"}}],
        "outputs": {"logonUrl": "https://$(instance.name).reseller.io"}
    }))
    .unwrap();
    let o = resolve_offering(&s, Some(&ov), &allowed).unwrap();
    assert_eq!(o.plans.len(), 1);
    assert_eq!(o.objects.len(), 3);
    assert!(o.locked.contains("domain"));
    let err = resolve_parameters(
        &o,
        Some("pro"),
        &params(json!({"adminEmail": "a", "domain": "x.io"})),
        &SizeLimits::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("locked by the seller"), "{err}");
    let p = resolve_parameters(
        &o,
        Some("pro"),
        &params(json!({"adminEmail": "a"})),
        &SizeLimits::default(),
    )
    .unwrap();
    assert_eq!(p["domain"], json!("reseller.io"));

    let bad = [
        (
            json!({"parameterDefaults": {"nope": 1}}),
            "no such parameter",
        ),
        (
            json!({"parameterDefaults": {"replicas": 100}}),
            "must be at most 10",
        ),
        (
            json!({"lockedParameters": ["nope"]}),
            "no parameter \"nope\"",
        ),
        (json!({"plans": ["gold"]}), "no plan \"gold\""),
        (
            json!({"extraObjects": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}]}),
            "cluster-scoped",
        ),
        (
            json!({"extraObjects": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "$(instance.name)-config"}}]}),
            "already in the source template",
        ),
    ];
    for (ov, want) in bad {
        let ov: Overrides = serde_json::from_value(ov.clone()).unwrap();
        let err = resolve_offering(&s, Some(&ov), &allowed)
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "got {err:?}, want {want:?}");
    }
}

/// A distributor's default for a parameter that a sold plan sets would be
/// ignored by that plan's instances: it is refused, naming the parameter and
/// every such plan. Plans the product does not sell do not count.
#[test]
fn a_default_for_a_parameter_a_sold_plan_sets_is_refused() {
    let s = service();
    let allowed = default_allowed_kinds();
    let resolve = |ov: Value| {
        let ov: Overrides = serde_json::from_value(ov).unwrap();
        resolve_offering(&s, Some(&ov), &allowed)
    };
    // "pro" sets replicas; "basic" does not. Selling both: refused, naming "pro" only.
    let err = resolve(json!({"parameterDefaults": {"replicas": 2}})).unwrap_err();
    let OfferingError::Override { field, rule } = &err else {
        panic!("not an override error: {err:?}");
    };
    assert_eq!(field, "parameterDefaults.replicas");
    assert!(
        rule.contains("plan \"pro\" of the source Service sets parameter \"replicas\""),
        "{rule}"
    );
    assert!(!rule.contains("basic"), "{rule}");
    assert!(
        rule.contains("leave that plan out of overrides.plans"),
        "{rule}"
    );
    // Selling only "basic": the default applies to every sale, so it is accepted and used.
    let o = resolve(json!({"parameterDefaults": {"replicas": 2}, "plans": ["basic"]})).unwrap();
    let p = resolve_parameters(
        &o,
        Some("basic"),
        &params(json!({"adminEmail": "a"})),
        &SizeLimits::default(),
    )
    .unwrap();
    assert_eq!(p["replicas"], json!(2));
    // Both plans set tier: both are named.
    let err = resolve(json!({"parameterDefaults": {"tier": "large"}}))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("plans \"basic\", \"pro\" of the source Service set parameter \"tier\""),
        "{err}"
    );
    // Selling only "pro": still refused (every sale would ignore it), naming "pro".
    let err = resolve(json!({"parameterDefaults": {"tier": "large"}, "plans": ["pro"]}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("plan \"pro\""), "{err}");
    assert!(!err.contains("basic"), "{err}");
    // Locking a parameter a plan sets is harmless (the plan's value stands) and accepted.
    assert!(resolve(json!({"lockedParameters": ["replicas"]})).is_ok());
    // A Service without plans: any default applies.
    let mut no_plans = service();
    no_plans.plans.clear();
    let ov: Overrides =
        serde_json::from_value(json!({"parameterDefaults": {"replicas": 2, "tier": "large"}}))
            .unwrap();
    assert!(resolve_offering(&no_plans, Some(&ov), &allowed).is_ok());
}

/// Locking a required parameter that has no default leaves only the plan to
/// set it: a product that sells a plan which does not is refused (no buyer
/// could ever buy it), instead of telling every buyer "is required" for a
/// parameter they are not allowed to set.
#[test]
fn a_locked_required_parameter_without_a_value_is_refused() {
    let s = service(); // adminEmail: required, no default, set by no plan
    let allowed = default_allowed_kinds();
    let resolve = |ov: Value| {
        let ov: Overrides = serde_json::from_value(ov).unwrap();
        resolve_offering(&s, Some(&ov), &allowed)
    };
    let err = resolve(json!({"lockedParameters": ["adminEmail"]}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("override lockedParameters: parameter \"adminEmail\" is required, has no default and buyers may not set it"), "{err}");
    assert!(
        err.contains("no instance of plans \"basic\", \"pro\" could be deployed"),
        "{err}"
    );
    // With the distributor's default, the lock is fine and the default is used.
    let o = resolve(json!({"lockedParameters": ["adminEmail"], "parameterDefaults": {"adminEmail": "ops@reseller.io"}}))
        .unwrap();
    let p = resolve_parameters(
        &o,
        Some("basic"),
        &params(json!({})),
        &SizeLimits::default(),
    )
    .unwrap();
    assert_eq!(p["adminEmail"], json!("ops@reseller.io"));
    // Without plans.
    let mut no_plans = service();
    no_plans.plans.clear();
    let ov: Overrides =
        serde_json::from_value(json!({"lockedParameters": ["adminEmail"]})).unwrap();
    let err = resolve_offering(&no_plans, Some(&ov), &allowed)
        .unwrap_err()
        .to_string();
    assert!(err.contains("so no instance could be deployed"), "{err}");
    // Every sold plan sets it: fine.
    let mut pinned = service();
    for plan in &mut pinned.plans {
        plan.parameters
            .insert("adminEmail".into(), json!("isv@x.io"));
    }
    let ov: Overrides =
        serde_json::from_value(json!({"lockedParameters": ["adminEmail"]})).unwrap();
    assert!(resolve_offering(&pinned, Some(&ov), &allowed).is_ok());
}

#[test]
fn schema_errors_in_the_service() {
    let allowed = default_allowed_kinds();
    let mut s = service();
    s.parameters[0].default = Some(json!(0));
    assert!(
        resolve_offering(&s, None, &allowed)
            .unwrap_err()
            .to_string()
            .contains("default: must be at least 1")
    );
    let mut s = service();
    s.parameters[1].pattern = Some("(".into());
    assert!(
        resolve_offering(&s, None, &allowed)
            .unwrap_err()
            .to_string()
            .contains("not a valid regular expression")
    );
    let mut s = service();
    s.plans[0].parameters.insert("ghost".into(), json!(1));
    assert!(
        resolve_offering(&s, None, &allowed)
            .unwrap_err()
            .to_string()
            .contains("does not declare")
    );
}

#[test]
fn dns_names() {
    assert!(is_dns_subdomain("a-b.c"));
    assert!(!is_dns_subdomain("A"));
    assert!(!is_dns_subdomain("-a"));
    assert!(!is_dns_subdomain(""));
    assert!(!is_dns_subdomain(&"a".repeat(254)));
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            ".{0,40}".prop_map(Value::String),
            "\\$\\((params|instance|target)\\.[a-z]{0,8}\\)?.{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z$()]{0,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn parameter_validation_never_panics(plan in prop::option::of("[a-z]{0,6}"), given in prop::collection::btree_map("[a-zA-Z]{0,10}", arb_json(), 0..6)) {
            let o = offering();
            let _ = resolve_parameters(&o, plan.as_deref(), &given, &SizeLimits::default());
        }

        #[test]
        fn rendering_never_panics_and_keeps_namespace(obj in arb_json(), domain in ".{0,64}") {
            let mut s = service();
            s.parameters[1].pattern = None;
            s.template.objects = vec![json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "n"}, "data": obj})];
            if let Ok(o) = resolve_offering(&s, None, &default_allowed_kinds())
                && let Ok(p) = resolve_parameters(&o, Some("basic"), &params(json!({"adminEmail": "a", "domain": domain})), &SizeLimits::default()) {
                let ctx = RenderContext { instance_name: "i", instance_namespace: "c", target_namespace: "t", params: &p };
                if let Ok(objs) = render_objects(&o.objects, &ctx, &BTreeMap::new(), &SizeLimits::default()) {
                    prop_assert_eq!(objs.len(), 1);
                    prop_assert_eq!(&objs[0]["metadata"]["namespace"], &json!("t"));
                }
            }
        }

        #[test]
        fn template_check_never_panics(obj in arb_json()) {
            let _ = check_template_object(0, &obj, &default_allowed_kinds());
        }
    }
}

/// The committed seed corpus (tests/fixtures/fuzz-seeds.json): strings and
/// values that have broken template engines elsewhere, fed through every
/// entry point. None may panic, add an object, or move one out of its namespace.
#[test]
fn seed_corpus_never_panics_nor_escapes() {
    let corpus: Value =
        serde_json::from_str(include_str!("../../../tests/fixtures/fuzz-seeds.json"))
            .expect("corpus parses");
    let strings: Vec<Value> = corpus["strings"].as_array().cloned().unwrap_or_default();
    let values: Vec<Value> = corpus["values"].as_array().cloned().unwrap_or_default();
    assert!(
        strings.len() + values.len() >= 40,
        "the corpus is committed"
    );
    let mut s = service();
    s.parameters[1].pattern = None;
    s.parameters[1].max_length = Some(4096);
    let o = resolve_offering(&s, None, &default_allowed_kinds()).expect("offering");
    for input in strings.iter().chain(values.iter()) {
        // As a parameter value.
        if let Ok(p) = resolve_parameters(
            &o,
            Some("basic"),
            &params(json!({"adminEmail": "a", "domain": input})),
            &SizeLimits::default(),
        ) {
            let ctx = RenderContext {
                instance_name: "i",
                instance_namespace: "c",
                target_namespace: "t",
                params: &p,
            };
            if let Ok(objs) =
                render_objects(&o.objects, &ctx, &BTreeMap::new(), &SizeLimits::default())
            {
                assert_eq!(objs.len(), o.objects.len(), "{input}");
                assert!(
                    objs.iter()
                        .all(|x| x["metadata"]["namespace"] == json!("t")),
                    "{input}"
                );
            }
            let _ = render_string("https://$(params.domain)/", &ctx, &SizeLimits::default());
        }
        // As template content and as a whole template object.
        let mut t = s.clone();
        t.template.objects[0]["data"]["seed"] = input.clone();
        let _ = resolve_offering(&t, None, &default_allowed_kinds());
        let _ = check_template_object(0, input, &default_allowed_kinds());
        // As a plan name and an unknown parameter name.
        if let Some(name) = input.as_str() {
            let _ = resolve_parameters(
                &o,
                Some(name),
                &ParameterValues::new(),
                &SizeLimits::default(),
            );
            let _ = resolve_parameters(
                &o,
                Some("basic"),
                &params(json!({ name: 1 })),
                &SizeLimits::default(),
            );
        }
    }
}

#[test]
fn objects_that_render_to_the_same_name_collide_after_rendering() {
    // Raw names differ; rendered with instance "a" and parameter "b" they are both "a-b".
    let objects = vec![
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "$(instance.name)-b"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a-$(params.suffix)"}}),
    ];
    let params = ParameterValues::from([("suffix".to_string(), json!("b"))]);
    let ctx = RenderContext {
        instance_name: "a",
        instance_namespace: "acme",
        target_namespace: "acme",
        params: &params,
    };
    let err = render_objects(&objects, &ctx, &BTreeMap::new(), &SizeLimits::default()).unwrap_err();
    assert!(
        matches!(&err, RenderError::Collision { first: 0, second: 1, kind, name } if kind == "ConfigMap" && name == "a-b"),
        "{err}"
    );
    // Same name, different kinds: no collision.
    let mixed = vec![
        objects[0].clone(),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "a-b"}}),
    ];
    assert!(render_objects(&mixed, &ctx, &BTreeMap::new(), &SizeLimits::default()).is_ok());
}
