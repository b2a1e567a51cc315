//! crds/ is generated from the Rust types; this fails when it is stale.

#[test]
fn committed_crds_match_the_rust_types() {
    let mut generated = String::new();
    for crd in computenest::api::all_crds() {
        generated.push_str(&computenest::api::crd_yaml(&crd).expect("CRD serializes"));
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/computenest.dev.yaml");
    let committed = std::fs::read_to_string(&path).expect("crds/computenest.dev.yaml exists");
    assert!(
        committed == generated,
        "crds/computenest.dev.yaml is stale: run `make crds` and commit the result"
    );
}

#[test]
fn every_kind_has_status_ready_and_the_category() {
    for crd in computenest::api::all_crds() {
        let v = serde_json::to_value(&crd).expect("json");
        let name = v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert_eq!(v["spec"]["scope"], "Namespaced", "{name}");
        assert_eq!(v["spec"]["names"]["categories"][0], "computenest", "{name}");
        let version = &v["spec"]["versions"][0];
        assert!(
            version["subresources"]["status"].is_object(),
            "{name} has a status subresource"
        );
        let status = &version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"];
        assert!(
            status["observedGeneration"].is_object(),
            "{name} has status.observedGeneration"
        );
        assert_eq!(
            status["conditions"]["x-kubernetes-list-type"], "map",
            "{name} conditions are a list map"
        );
        let short = v["spec"]["names"]["shortNames"][0]
            .as_str()
            .unwrap_or_default();
        assert!(
            short.starts_with("cn"),
            "{name}: short names never collide with built-ins (got {short})"
        );
    }
}
