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
        fn the_budget_refuses_nothing_that_fits(obj in arb_json(), domain in ".{0,64}") {
            let mut s = service();
            s.parameters[1].pattern = None;
            s.template.objects.push(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "n"}, "data": obj}));
            if let Ok(o) = resolve_offering(&s, None, &default_allowed_kinds())
                && let Ok(p) = resolve_parameters(&o, Some("basic"), &params(json!({"adminEmail": "a", "domain": domain})), &SizeLimits::default()) {
                let ctx = RenderContext { instance_name: "i", instance_namespace: "c", target_namespace: "t", params: &p };
                if let Ok(objs) = render_objects(&o.objects, &ctx, &BTreeMap::new(), &SizeLimits::default()) {
                    let sizes: Vec<usize> = objs.iter().map(|x| serde_json::to_vec(x).map(|b| b.len()).unwrap_or_default()).collect();
                    let largest = sizes.iter().copied().max().unwrap_or_default();
                    let total: usize = sizes.iter().sum();
                    let exact = SizeLimits { max_object_bytes: largest, max_instance_bytes: total, ..SizeLimits::default() };
                    prop_assert!(render_objects(&o.objects, &ctx, &BTreeMap::new(), &exact).is_ok());
                    let under = SizeLimits { max_instance_bytes: total - 1, ..exact };
                    prop_assert!(render_objects(&o.objects, &ctx, &BTreeMap::new(), &under).is_err());
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

// ---- Pod references (customer-owned instances) ----

fn spec_of(v: Value) -> ParameterSpec {
    serde_json::from_value(v).expect("parameter spec")
}

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
}

fn core(kind: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"name": name}})
}

/// A container that takes every variable of the Secret `name`.
fn container_env_from_secret(name: &str) -> Value {
    json!({"name": "c", "image": "i", "envFrom": [{"secretRef": {"name": name}}]})
}

#[test]
fn pod_references_are_found_in_every_workload_kind() {
    let pod_spec = json!({"containers": [container_env_from_secret("payroll")]});
    let template = json!({"metadata": {"labels": {"a": "b"}}, "spec": pod_spec.clone()});
    let cases = [
        (
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                   "spec": {"template": template.clone()}}),
            "spec.template.spec",
            "apps/v1 Deployment \"d\"",
        ),
        (
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s"},
                   "spec": {"template": template.clone()}}),
            "spec.template.spec",
            "apps/v1 StatefulSet \"s\"",
        ),
        (
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
                   "spec": {"template": template.clone()}}),
            "spec.template.spec",
            "batch/v1 Job \"j\"",
        ),
        (
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "cj"},
                   "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template.clone()}}}}),
            "spec.jobTemplate.spec.template.spec",
            "batch/v1 CronJob \"cj\"",
        ),
        (pod(pod_spec.clone()), "spec", "v1 Pod \"p\""),
        (
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
                   "spec": {"workers": [{"template": template.clone()}]}}),
            "spec.workers[0].template.spec",
            "example.com/v1 Widget \"w\"",
        ),
    ];
    for (obj, at, what) in cases {
        let objects = vec![core("ConfigMap", "unrelated"), obj];
        let err = check_pod_references(&objects, &[], &ParameterValues::new()).unwrap_err();
        assert_eq!(err.index, 1, "{what}");
        assert_eq!(err.object, what);
        assert_eq!(
            err.path,
            format!("{at}.containers[0].envFrom[0].secretRef.name")
        );
        assert_eq!(
            (err.kind.as_str(), err.name.as_str()),
            ("Secret", "payroll")
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("template object 1 ({what}): {at}.containers[0]")),
            "{msg}"
        );
        assert!(
            msg.contains("names Secret \"payroll\", which this instance does not create and the buyer did not name; create the Secret in the template, or take its name from a SecretRef parameter that the buyer sets"),
            "{msg}"
        );
    }
    // A Pod's spec is a pod spec even without containers.
    let bare = pod(json!({"volumes": [{"name": "v", "secret": {"secretName": "payroll"}}]}));
    let err = check_pod_references(&[bare], &[], &ParameterValues::new()).unwrap_err();
    assert_eq!(err.path, "spec.volumes[0].secret.secretName");
}

/// Every place a pod spec can name a Secret, ConfigMap, PersistentVolumeClaim
/// or ServiceAccount: (pod spec naming "x", path from the spec, kind).
fn reference_cases() -> Vec<(Value, &'static str, &'static str)> {
    let c = |extra: Value| {
        let mut c = json!({"name": "c", "image": "i"});
        if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
            c.extend(extra.clone());
        }
        json!({"containers": [c]})
    };
    let vol = |v: Value| {
        let mut entry = json!({"name": "v"});
        if let (Some(e), Some(v)) = (entry.as_object_mut(), v.as_object()) {
            e.extend(v.clone());
        }
        json!({"containers": [{"name": "c", "image": "i"}], "volumes": [entry]})
    };
    vec![
        (
            json!({"containers": [], "serviceAccountName": "x"}),
            "serviceAccountName",
            "ServiceAccount",
        ),
        (
            json!({"containers": [], "serviceAccount": "x"}),
            "serviceAccount",
            "ServiceAccount",
        ),
        (
            json!({"containers": [], "imagePullSecrets": [{"name": "x"}]}),
            "imagePullSecrets[0].name",
            "Secret",
        ),
        (
            vol(json!({"secret": {"secretName": "x"}})),
            "volumes[0].secret.secretName",
            "Secret",
        ),
        (
            vol(json!({"azureFile": {"secretName": "x", "shareName": "s"}})),
            "volumes[0].azureFile.secretName",
            "Secret",
        ),
        (
            vol(json!({"cephfs": {"monitors": ["m"], "secretRef": {"name": "x"}}})),
            "volumes[0].cephfs.secretRef.name",
            "Secret",
        ),
        (
            vol(json!({"csi": {"driver": "d", "nodePublishSecretRef": {"name": "x"}}})),
            "volumes[0].csi.nodePublishSecretRef.name",
            "Secret",
        ),
        (
            vol(json!({"csi": {"driver": "d", "controllerExpandSecretRef": {"name": "x"}}})),
            "volumes[0].csi.controllerExpandSecretRef.name",
            "Secret",
        ),
        (
            vol(
                json!({"projected": {"sources": [{"serviceAccountToken": {"path": "t"}}, {"secret": {"name": "x"}}]}}),
            ),
            "volumes[0].projected.sources[1].secret.name",
            "Secret",
        ),
        (
            vol(json!({"projected": {"sources": [{"configMap": {"name": "x"}}]}})),
            "volumes[0].projected.sources[0].configMap.name",
            "ConfigMap",
        ),
        (
            vol(json!({"configMap": {"name": "x", "optional": true}})),
            "volumes[0].configMap.name",
            "ConfigMap",
        ),
        (
            vol(json!({"persistentVolumeClaim": {"claimName": "x"}})),
            "volumes[0].persistentVolumeClaim.claimName",
            "PersistentVolumeClaim",
        ),
        (
            vol(
                json!({"ephemeral": {"volumeClaimTemplate": {"spec": {"dataSource": {"kind": "PersistentVolumeClaim", "name": "x"}}}}}),
            ),
            "volumes[0].ephemeral.volumeClaimTemplate.spec.dataSource.name",
            "PersistentVolumeClaim",
        ),
        (
            c(json!({"envFrom": [{"secretRef": {"name": "x"}}]})),
            "containers[0].envFrom[0].secretRef.name",
            "Secret",
        ),
        (
            c(
                json!({"env": [{"name": "E", "valueFrom": {"secretKeyRef": {"name": "x", "key": "k"}}}]}),
            ),
            "containers[0].env[0].valueFrom.secretKeyRef.name",
            "Secret",
        ),
        (
            c(json!({"envFrom": [{"configMapRef": {"name": "x"}}]})),
            "containers[0].envFrom[0].configMapRef.name",
            "ConfigMap",
        ),
        (
            c(
                json!({"env": [{"name": "E", "valueFrom": {"configMapKeyRef": {"name": "x", "key": "k"}}}]}),
            ),
            "containers[0].env[0].valueFrom.configMapKeyRef.name",
            "ConfigMap",
        ),
        (
            json!({"containers": [], "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "x"}}]}]}),
            "initContainers[0].envFrom[0].secretRef.name",
            "Secret",
        ),
    ]
}

#[test]
fn every_reference_path_is_refused_unless_created_or_named_by_the_buyer() {
    let ref_param = |kind: &str| spec_of(json!({"name": "ref", "type": format!("{kind}Ref")}));
    let other_kind = |kind: &str| {
        if kind == "Secret" {
            "ConfigMap"
        } else {
            "Secret"
        }
    };
    for (spec, at, kind) in reference_cases() {
        let objects = vec![pod(spec.clone())];
        let err = check_pod_references(&objects, &[], &ParameterValues::new()).expect_err(at);
        assert_eq!(err.path, format!("spec.{at}"));
        assert_eq!((err.kind.as_str(), err.name.as_str()), (kind, "x"), "{at}");

        // (a) the same rendered set creates it.
        let created = vec![pod(spec.clone()), core(kind, "x")];
        assert_eq!(
            check_pod_references(&created, &[], &ParameterValues::new()),
            Ok(()),
            "{at}"
        );
        // A same-named object of another group or kind is not it.
        let lookalike = vec![
            pod(spec.clone()),
            json!({"apiVersion": "example.com/v1", "kind": kind, "metadata": {"name": "x"}}),
            core(other_kind(kind), "x"),
        ];
        assert!(
            check_pod_references(&lookalike, &[], &ParameterValues::new()).is_err(),
            "{at}"
        );

        // (b) the buyer names it in a reference parameter of the matching type.
        let given = params(json!({"ref": "x"}));
        assert_eq!(
            check_pod_references(&objects, &[ref_param(kind)], &given),
            Ok(()),
            "{at}"
        );
        // A parameter of another reference type, or of type String, is not enough.
        for wrong in [
            ref_param(other_kind(kind)),
            spec_of(json!({"name": "ref", "type": "String"})),
        ] {
            assert!(
                check_pod_references(&objects, &[wrong], &given).is_err(),
                "{at}"
            );
        }
        // Declared but not set by the buyer: not named.
        assert!(
            check_pod_references(&objects, &[ref_param(kind)], &ParameterValues::new()).is_err(),
            "{at}"
        );
    }
}

#[test]
fn the_customers_other_secret_is_refused() {
    let deployment = |secret: &str| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [
            {"name": "c", "image": "i",
             "envFrom": [{"secretRef": {"name": "app-creds"}}, {"secretRef": {"name": secret}}]}
        ]}}}})
    };
    let parameters = [spec_of(json!({"name": "dbSecret", "type": "SecretRef"}))];
    let given = params(json!({"dbSecret": "db-creds"}));
    let created = core("Secret", "app-creds");
    // Created by the instance and named by the buyer: fine.
    assert_eq!(
        check_pod_references(
            &[created.clone(), deployment("db-creds")],
            &parameters,
            &given
        ),
        Ok(())
    );
    // Anything else of the customer's namespace: refused, naming it.
    let err =
        check_pod_references(&[created, deployment("payroll")], &parameters, &given).unwrap_err();
    assert_eq!(
        (err.index, err.path.as_str(), err.name.as_str()),
        (
            1,
            "spec.template.spec.containers[0].envFrom[1].secretRef.name",
            "payroll"
        )
    );
}

#[test]
fn the_default_service_account_and_unreferenced_pods_are_allowed() {
    for spec in [
        json!({"containers": [{"name": "c", "image": "i"}]}),
        json!({"containers": [{"name": "c", "image": "i"}], "serviceAccountName": "default"}),
        json!({"containers": [{"name": "c", "image": "i"}], "serviceAccountName": ""}),
        json!({"containers": [{"name": "c", "image": "i"}], "automountServiceAccountToken": false,
               "volumes": [{"name": "t", "emptyDir": {}}]}),
    ] {
        assert_eq!(
            check_pod_references(&[pod(spec.clone())], &[], &ParameterValues::new()),
            Ok(()),
            "{spec}"
        );
    }
    // `default` is not a wildcard for other kinds.
    let secret = pod(json!({"containers": [container_env_from_secret("default")]}));
    assert!(check_pod_references(&[secret], &[], &ParameterValues::new()).is_err());
}

#[test]
fn a_name_that_is_not_a_string_is_refused() {
    for name in [json!(5), json!(null), json!(true)] {
        let p = pod(json!({"containers": [
            {"name": "c", "image": "i", "envFrom": [{"secretRef": {"name": name.clone()}}]}
        ]}));
        let err = check_pod_references(&[p], &[], &ParameterValues::new()).unwrap_err();
        assert_eq!(err.name, name.to_string());
    }
}

#[test]
fn claims_may_clone_only_what_the_instance_may_use() {
    let pvc = |source: Value| {
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
               "spec": {"accessModes": ["ReadWriteOnce"], "dataSource": source}})
    };
    // The customer's claim, cloned: refused.
    let err = check_pod_references(
        &[pvc(
            json!({"kind": "PersistentVolumeClaim", "name": "customer-db"}),
        )],
        &[],
        &ParameterValues::new(),
    )
    .unwrap_err();
    assert_eq!(
        (err.path.as_str(), err.kind.as_str()),
        ("spec.dataSource.name", "PersistentVolumeClaim")
    );
    // Named by the buyer: allowed.
    assert_eq!(
        check_pod_references(
            &[pvc(
                json!({"kind": "PersistentVolumeClaim", "name": "customer-db"})
            )],
            &[spec_of(
                json!({"name": "seed", "type": "PersistentVolumeClaimRef"})
            )],
            &params(json!({"seed": "customer-db"}))
        ),
        Ok(())
    );
    // A snapshot: only one the instance creates.
    let snap =
        json!({"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "s1"});
    let err = check_pod_references(&[pvc(snap.clone())], &[], &ParameterValues::new()).unwrap_err();
    assert_eq!(err.kind, "snapshot.storage.k8s.io/VolumeSnapshot");
    assert!(
        err.to_string()
            .ends_with("create the snapshot.storage.k8s.io/VolumeSnapshot in the template"),
        "{err}"
    );
    let own = json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot", "metadata": {"name": "s1"}});
    assert_eq!(
        check_pod_references(&[pvc(snap), own], &[], &ParameterValues::new()),
        Ok(())
    );
}

#[test]
fn reference_parameters_come_only_from_the_buyer() {
    let mut s = service();
    s.parameters
        .push(spec_of(json!({"name": "db", "type": "SecretRef"})));
    // A plan may not set one.
    let mut plan_sets = s.clone();
    plan_sets.plans[0]
        .parameters
        .insert("db".into(), json!("creds"));
    let err = resolve_offering(&plan_sets, None, &default_allowed_kinds()).unwrap_err();
    assert!(
        matches!(&err, OfferingError::Schema { name, .. } if name == "db"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("plan \"basic\" sets it, but it is a SecretRef parameter: it names a Secret in the buyer's namespace, so only the buyer sets it"),
        "{err}"
    );
    // Nor a distributor's default.
    let ov: Overrides =
        serde_json::from_value(json!({"parameterDefaults": {"db": "creds"}})).expect("overrides");
    let err = resolve_offering(&s, Some(&ov), &default_allowed_kinds()).unwrap_err();
    assert_eq!(
        err,
        OfferingError::Override {
            field: "parameterDefaults.db".into(),
            rule: "\"db\" is a SecretRef parameter: it names a Secret in the buyer's namespace, so only the buyer sets it; remove this default".into()
        }
    );
    // Nor the ISV's default (refused by the API server too).
    let mut with_default = s.clone();
    with_default.parameters.last_mut().expect("db").default = Some(json!("creds"));
    assert!(matches!(
        resolve_offering(&with_default, None, &default_allowed_kinds()),
        Err(OfferingError::Schema { .. })
    ));
    // So only the buyer's value is ever resolved.
    let o = resolve_offering(&s, None, &default_allowed_kinds()).expect("offering");
    let got = resolve_parameters(
        &o,
        Some("basic"),
        &params(json!({"adminEmail": "a", "db": "creds"})),
        &SizeLimits::default(),
    )
    .expect("buyer's value");
    assert_eq!(got["db"], json!("creds"));
    let none = resolve_parameters(
        &o,
        Some("basic"),
        &params(json!({"adminEmail": "a"})),
        &SizeLimits::default(),
    )
    .expect("optional");
    assert!(!none.contains_key("db"));
}

// ---- Size limits ----

fn ctx_with(p: &ParameterValues) -> RenderContext<'_> {
    RenderContext {
        instance_name: "i",
        instance_namespace: "c",
        target_namespace: "t",
        params: p,
    }
}

fn limits(object: usize, instance: usize) -> SizeLimits {
    SizeLimits {
        max_object_bytes: object,
        max_instance_bytes: instance,
        max_parameter_bytes: 16 * 1024,
    }
}

/// A ConfigMap with `n` values, each `$(params.p)` (or `text` when given).
fn config_map(name: &str, n: usize, text: &str) -> Value {
    let data: Map<String, Value> = (0..n)
        .map(|i| (format!("k{i}"), Value::String(text.to_string())))
        .collect();
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

#[test]
fn an_oversized_object_stops_while_rendering() {
    let p = params(json!({"p": "x".repeat(1024)}));
    // 10,000 values of 1 KiB: 10 MB if rendered in full.
    let objects = vec![config_map("big", 10_000, "a$(params.p)b")];
    let err = render_objects(
        &objects,
        &ctx_with(&p),
        &BTreeMap::new(),
        &limits(64 * 1024, 1 << 20),
    )
    .unwrap_err();
    let RenderError::TooLarge {
        what,
        bytes,
        limit,
        setting,
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(
        (what.as_str(), *limit, *setting),
        (
            "template object 0",
            64 * 1024,
            "tenancy.sizeLimits.maxObjectBytes"
        )
    );
    // Stopped at the first value past the limit, not after building 10 MB.
    assert!(
        *bytes > 64 * 1024 && *bytes <= 64 * 1024 + 1024,
        "stopped at {bytes}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "template object 0 would render to more than 65536 bytes (stopped at {bytes}), the most the platform allows (tenancy.sizeLimits.maxObjectBytes)"
        )
    );
    // A single string stops as well, inside its own substitution.
    let one = vec![
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "one"},
                          "data": {"k": "$(params.p)".repeat(10_000)}}),
    ];
    let err = render_objects(
        &one,
        &ctx_with(&p),
        &BTreeMap::new(),
        &limits(64 * 1024, 1 << 20),
    )
    .unwrap_err();
    assert!(
        matches!(err, RenderError::TooLarge { bytes, .. } if bytes <= 64 * 1024 + 1024),
        "{err}"
    );
}

#[test]
fn the_instance_total_stops_while_rendering() {
    let p = params(json!({"p": "x".repeat(1024)}));
    // Five objects of about 30 KiB: each fits 64 KiB, together not 100 KiB.
    let objects: Vec<Value> = (0..5)
        .map(|i| config_map(&format!("c{i}"), 30, "$(params.p)"))
        .collect();
    let err = render_objects(
        &objects,
        &ctx_with(&p),
        &BTreeMap::new(),
        &limits(64 * 1024, 100 * 1024),
    )
    .unwrap_err();
    let RenderError::TooLarge {
        what,
        bytes,
        limit,
        setting,
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(
        (what.as_str(), *limit, *setting),
        (
            "template objects 0 to 3 together",
            100 * 1024,
            "tenancy.sizeLimits.maxInstanceBytes"
        )
    );
    assert!(
        *bytes > 100 * 1024 && *bytes <= 100 * 1024 + 1100,
        "{bytes}"
    );
    // The same objects fit a larger total.
    assert_eq!(
        render_objects(
            &objects,
            &ctx_with(&p),
            &BTreeMap::new(),
            &limits(64 * 1024, 200 * 1024)
        )
        .map(|o| o.len()),
        Ok(5)
    );
}

#[test]
fn limits_measure_the_exact_json_and_refuse_nothing_that_fits() {
    // Quotes, backslashes and newlines grow when escaped: the budget charges
    // them unescaped, the finished object is measured exactly.
    let p = params(json!({"p": "\"\\\n".repeat(300), "n": 12345}));
    let objects = vec![
        config_map("a", 3, "x $(params.p) y"),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b"},
               "spec": {"ports": [{"port": "$(params.n)"}], "note": "$(params.p)"}}),
    ];
    let labels = BTreeMap::from([("l".to_string(), "v".to_string())]);
    let big = limits(1 << 20, 1 << 20);
    let rendered = render_objects(&objects, &ctx_with(&p), &labels, &big).expect("fits");
    let sizes: Vec<usize> = rendered
        .iter()
        .map(|o| serde_json::to_vec(o).map(|b| b.len()).unwrap_or_default())
        .collect();
    assert_eq!(sizes[0], json_len(&rendered[0]));
    let largest = sizes.iter().copied().max().unwrap_or_default();
    let total: usize = sizes.iter().sum();
    assert!(
        render_objects(&objects, &ctx_with(&p), &labels, &limits(largest, total)).is_ok(),
        "exactly at the limits"
    );
    for tight in [limits(largest - 1, total), limits(largest, total - 1)] {
        assert!(
            matches!(
                render_objects(&objects, &ctx_with(&p), &labels, &tight),
                Err(RenderError::TooLarge { .. })
            ),
            "{tight:?}"
        );
    }
}

#[test]
fn a_rendered_string_is_limited() {
    let p = params(json!({"p": "x".repeat(1000)}));
    let t = "https://$(params.p)$(params.p)$(params.p)/";
    assert_eq!(
        render_string(t, &ctx_with(&p), &limits(4000, 10)).map(|s| s.len()),
        Ok(3009),
        "an output is not part of the objects' total"
    );
    let err = render_string(t, &ctx_with(&p), &limits(2500, 1 << 20)).unwrap_err();
    assert!(
        matches!(&err, RenderError::TooLarge { what, limit: 2500, .. } if what == "the string"),
        "{err}"
    );
}

#[test]
fn parameter_values_are_limited() {
    let mut s = service();
    s.parameters[0].maximum = None;
    s.parameters[1].pattern = None;
    s.parameters[1].max_length = Some(65536);
    let o = resolve_offering(&s, None, &default_allowed_kinds()).expect("offering");
    let small = SizeLimits {
        max_parameter_bytes: 100,
        ..SizeLimits::default()
    };
    let given = |domain: Value| params(json!({"adminEmail": "a", "domain": domain}));
    // A string counts its bytes (not characters): 50 two-byte characters fit, 51 do not.
    assert!(resolve_parameters(&o, Some("basic"), &given(json!("é".repeat(50))), &small).is_ok());
    let err =
        resolve_parameters(&o, Some("basic"), &given(json!("é".repeat(51))), &small).unwrap_err();
    assert_eq!(
        err,
        ParameterError::TooLarge {
            name: "domain".into(),
            whose: "the value",
            bytes: 102,
            limit: 100
        }
    );
    assert_eq!(
        err.to_string(),
        "parameter \"domain\": the value is 102 bytes, more than the 100 the platform allows (tenancy.sizeLimits.maxParameterBytes)"
    );
    // Checked before the type: any value counts its JSON.
    let err = resolve_parameters(
        &o,
        Some("basic"),
        &params(json!({"adminEmail": "a", "replicas": vec!["x"; 40]})),
        &small,
    )
    .unwrap_err();
    assert!(
        matches!(err, ParameterError::TooLarge { bytes: 161, .. }),
        "{err}"
    );
    // The seller's values are held to it too.
    let mut seller = s.clone();
    seller.parameters[1].default = Some(json!("d".repeat(101)));
    let o = resolve_offering(&seller, None, &default_allowed_kinds()).expect("offering");
    let err = resolve_parameters(
        &o,
        Some("basic"),
        &params(json!({"adminEmail": "a"})),
        &small,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            ParameterError::TooLarge {
                whose: "the seller's value (default or plan)",
                bytes: 101,
                ..
            }
        ),
        "{err}"
    );
}
