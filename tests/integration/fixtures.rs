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
                          // Restricted Pod Security (enforced in managed namespaces).
                          "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                              "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                              "containers": [{"name": "web", "image": "nginx",
                                  "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}}}},
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

/// The ISV's Service most tests sell: `service_manifest`'s template, plans
/// and parameter, as a Private, unlisted product that distributors may
/// resell once the ISV approves by hand. Each test changes only what it is
/// about, through [`ServiceEdits`].
pub fn service(name: &str) -> Service {
    service_manifest(name, "Private", false, true, "Manual")
}

/// Chained edits of a [`service`], each naming the one property a test cares
/// about: `service("db").fully_managed().listed().automatic()`.
pub trait ServiceEdits: Sized {
    /// Deployed into a namespace of the seller's instead of the customer's.
    fn fully_managed(self) -> Self;
    /// Listed on the marketplace (billed online where the scenario allows).
    fn listed(self) -> Self;
    /// Distributors' applications are approved at once.
    fn automatic(self) -> Self;
    /// Distributors may not resell it (spec.distribution.enabled false).
    fn not_distributed(self) -> Self;
    /// The owner's policy for access requests (spec.access), as JSON.
    fn access(self, policy: serde_json::Value) -> Self;
}

impl ServiceEdits for Service {
    fn fully_managed(mut self) -> Self {
        self.spec.type_ = ServiceType::FullyManaged;
        self
    }
    fn listed(mut self) -> Self {
        self.spec.marketplace.listed = true;
        self
    }
    fn automatic(mut self) -> Self {
        self.spec.distribution.approval = Approval::Automatic;
        self
    }
    fn not_distributed(mut self) -> Self {
        self.spec.distribution.enabled = false;
        self
    }
    fn access(mut self, policy: serde_json::Value) -> Self {
        self.spec.access = Some(serde_json::from_value(policy).expect("access policy"));
        self
    }
}

/// A distributor's DerivedService `name` reselling the Service `source` of
/// namespace `isv`, listed, as a Private product unless [`DerivedEdits`]
/// say otherwise.
pub fn derived(name: &str, isv: &str, source: &str) -> DerivedService {
    derived_manifest(name, isv, source, "Private")
}

/// Chained edits of a [`derived`] product.
pub trait DerivedEdits: Sized {
    /// Resold as FullyManaged.
    fn fully_managed(self) -> Self;
    /// The distributor's policy for access requests (spec.access), as JSON.
    fn access(self, policy: serde_json::Value) -> Self;
}

impl DerivedEdits for DerivedService {
    fn fully_managed(mut self) -> Self {
        self.spec.type_ = ServiceType::FullyManaged;
        self
    }
    fn access(mut self, policy: serde_json::Value) -> Self {
        self.spec.access = Some(serde_json::from_value(policy).expect("access policy"));
        self
    }
}

/// The ISV's grant `name`, approving the distributor `distributor` for its
/// Service `service`.
pub fn approved_grant(name: &str, service: &str, distributor: &str) -> DistributionGrant {
    grant_manifest(name, service, distributor, "Approved")
}

/// A customer's instance `name` of the Service `product` that the ISV in
/// `isv` sells directly (plan "basic").
pub fn service_instance(name: &str, isv: &str, product: &str) -> ServiceInstance {
    instance_of(name, "Service", isv, product)
}

/// A customer's instance `name` of the DerivedService `product` that the
/// distributor in `dist` sells (plan "basic").
pub fn derived_instance(name: &str, dist: &str, product: &str) -> ServiceInstance {
    instance_of(name, "DerivedService", dist, product)
}

/// Chained edits of an [`instance_of`].
pub trait InstanceEdits: Sized {
    /// Another plan than "basic".
    fn plan(self, plan: &str) -> Self;
    /// The buyer's parameter values, as a JSON object.
    fn params(self, params: serde_json::Value) -> Self;
}

impl InstanceEdits for ServiceInstance {
    fn plan(mut self, plan: &str) -> Self {
        self.spec.plan = Some(plan.to_string());
        self
    }
    fn params(mut self, params: serde_json::Value) -> Self {
        self.spec.parameters = serde_json::from_value(params).expect("parameters object");
        self
    }
}
