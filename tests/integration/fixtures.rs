//! Manifests shared by the integration tests and the soak tests.

use computenest::api::*;
use serde_json::json;

pub fn service_manifest(
    name: &str,
    type_: &str,
    listed: bool,
    enabled: bool,
    approval: &str,
) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "computenest.dev/v1alpha1", "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "type": type_, "version": "1.0.0",
            "marketplace": {"listed": listed, "productCode": format!("isv-{name}")},
            "distribution": {"enabled": enabled, "approval": approval},
            "parameters": [{"name": "replicas", "type": "Integer", "default": 1, "minimum": 1, "maximum": 5}],
            "plans": [{"name": "basic"}, {"name": "pro", "parameters": {"replicas": 3}}],
            "template": {"objects": [
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "$(instance.name)-config"}, "data": {"replicas": "n=$(params.replicas)"}},
                {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "$(instance.name)"},
                 "spec": {"replicas": "$(params.replicas)", "selector": {"matchLabels": {"app": "web"}},
                          "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}},
                {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "$(instance.name)"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}},
                {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "$(instance.name)"}}
            ]},
            "outputs": {"logonUrl": "https://$(instance.name).$(instance.namespace).example.com"}
        }
    }))
    .expect("service manifest")
}

pub fn derived_manifest(name: &str, isv: &str, source: &str, type_: &str) -> DerivedService {
    serde_json::from_value(json!({
        "apiVersion": "computenest.dev/v1alpha1", "kind": "DerivedService",
        "metadata": {"name": name},
        "spec": {"source": {"namespace": isv, "name": source}, "type": type_,
                 "marketplace": {"listed": true, "productCode": format!("dist-{name}")}}
    }))
    .expect("derived manifest")
}

pub fn grant_manifest(
    name: &str,
    service: &str,
    distributor: &str,
    decision: &str,
) -> DistributionGrant {
    serde_json::from_value(json!({
        "apiVersion": "computenest.dev/v1alpha1", "kind": "DistributionGrant",
        "metadata": {"name": name},
        "spec": {"serviceName": service, "distributorNamespace": distributor, "decision": decision}
    }))
    .expect("grant manifest")
}

pub fn instance_of(name: &str, kind: &str, seller: &str, product: &str) -> ServiceInstance {
    serde_json::from_value(json!({
        "apiVersion": "computenest.dev/v1alpha1", "kind": "ServiceInstance",
        "metadata": {"name": name},
        "spec": {"serviceRef": {"kind": kind, "namespace": seller, "name": product}, "plan": "basic"}
    }))
    .expect("instance manifest")
}
