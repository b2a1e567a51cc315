//! What an instance should have in the cluster: pure, no API calls.
//!
//! From a sellable product, its scenario and the instance's parameters this
//! builds the desired state: where the objects go and who owns them, the
//! rendered objects, the logon URL, the Orders, and a digest of it all.

use super::naming::{self, short_hash};
use super::render::{
    Offering, ParameterError, RenderContext, RenderError, check_pod_references, render_objects,
    render_string, resolve_parameters,
};
use super::scenario::Scenario;
use super::tenancy::SizeLimits;
use crate::api::{
    AppliedObject, Billing, InstanceRef, ItemRef, Order, OrderSpec, Party, PartyRef, ProductKind,
    ResourceOwner, ServiceInstance, Settlement,
};
use kube::api::ObjectMeta;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Labels on every object and namespace written for an instance.
pub mod labels {
    /// Namespace of the instance.
    pub const INSTANCE_NAMESPACE: &str = "computenest.dev/instance-namespace";
    /// Name of the instance.
    pub const INSTANCE_NAME: &str = "computenest.dev/instance-name";
    /// UID of the instance.
    pub const INSTANCE_UID: &str = "computenest.dev/instance-uid";
    /// Party that owns the resources.
    pub const OWNER_PARTY: &str = "computenest.dev/owner-party";
    /// Namespace of that party.
    pub const OWNER_NAMESPACE: &str = "computenest.dev/owner-namespace";
    /// Scenario.
    pub const SCENARIO: &str = "computenest.dev/scenario";
    /// Version the instance's objects were written from (on its managed
    /// namespace: a record of what runs that only the controller writes).
    pub const VERSION: &str = "computenest.dev/version";
    /// Annotation with the full name of the instance (label values stop at 63 characters).
    pub const INSTANCE_NAME_ANNOTATION: &str = "computenest.dev/instance-name";
}

/// The terms an instance was sold with. They hold for its whole life: a
/// seller's later edit of the product applies to new sales only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sale {
    /// Scenario at the time of sale.
    pub scenario: Scenario,
    /// Party that owns (and pays for) the resources.
    pub party: Party,
    /// That party's namespace.
    pub owner_namespace: String,
    /// Where the resources live.
    pub target_namespace: String,
}

/// A product that may be sold now, as the instance controller sees it.
#[derive(Clone, Debug)]
pub struct Product<'a> {
    /// DerivedService or Service.
    pub kind: ProductKind,
    /// Namespace of the seller (distributor or ISV).
    pub namespace: &'a str,
    /// Name of the product.
    pub name: &'a str,
    /// Namespace of the ISV.
    pub isv_namespace: &'a str,
    /// Name of the ISV's Service.
    pub service_name: &'a str,
    /// Marketplace product code of the ISV's Service.
    pub isv_product_code: Option<&'a str>,
    /// Marketplace product code of the distributor's product.
    pub product_code: Option<&'a str>,
    /// Listed price of the product.
    pub price: Option<&'a str>,
    /// Scenario.
    pub scenario: Scenario,
    /// Checked offering.
    pub offering: &'a Offering,
}

/// The desired state of one instance.
#[derive(Clone, Debug)]
pub struct Desired {
    /// Scenario.
    pub scenario: Scenario,
    /// Owner and placement.
    pub owner: ResourceOwner,
    /// Billing.
    pub billing: Billing,
    /// Labels of the managed namespace, when the resources are managed.
    pub managed_namespace_labels: Option<BTreeMap<String, String>>,
    /// Rendered objects, each in the target namespace.
    pub objects: Vec<Value>,
    /// What `objects` are, for status.
    pub applied: Vec<AppliedObject>,
    /// Logon URL, when the product has one.
    pub logon_url: Option<String>,
    /// Name of the Secret (in the customer's namespace) that holds the URL.
    pub secret_name: String,
    /// Orders to write (scenario 3 only).
    pub orders: Vec<Order>,
    /// Digest of all of the above.
    pub digest: String,
}

/// Why an instance cannot be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildError {
    /// Condition reason.
    pub reason: &'static str,
    /// What to do.
    pub message: String,
}

/// Deterministic name of the namespace created for a managed instance, so a
/// retry after a crash finds the same one. The hash covers the instance's
/// UID: a re-created instance of the same name gets a namespace of its own,
/// and nobody can know the name before the instance exists (no squatting).
/// A valid namespace name whatever the instance is called (`shop.v2`).
pub fn managed_namespace_name(customer_ns: &str, instance: &str, uid: &str) -> String {
    naming::join(&[
        "cn",
        &naming::label_fragment(customer_ns, 20),
        &naming::label_fragment(instance, 24),
        &short_hash(&format!("{customer_ns}/{instance}/{uid}"), 12),
    ])
}

/// Deterministic name of an Order: one per instance (by UID) and role.
pub fn order_name(customer_ns: &str, instance: &str, uid: &str, role: &str) -> String {
    naming::join(&[
        &naming::label_fragment(customer_ns, 40),
        &naming::label_fragment(instance, 60),
        role,
        &short_hash(uid, 10),
    ])
}

/// Orders as `namespace/name`, as status lists them.
pub fn order_refs(orders: &[Order]) -> Vec<String> {
    orders
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o.metadata.namespace.as_deref().unwrap_or_default(),
                o.metadata.name.as_deref().unwrap_or_default()
            )
        })
        .collect()
}

/// Name of the Secret in the customer's namespace that holds the logon URL.
pub fn logon_secret_name(instance: &str) -> String {
    let base = naming::label_fragment(instance, 200);
    if base.is_empty() {
        format!("logon-{}", short_hash(instance, 10))
    } else {
        format!("{base}-logon")
    }
}

/// The terms of a new sale of `product` to `instance`.
pub fn new_sale(instance: &ServiceInstance, product: &Product<'_>) -> Sale {
    let inst_ns = instance.metadata.namespace.as_deref().unwrap_or_default();
    let inst_name = instance.metadata.name.as_deref().unwrap_or_default();
    let uid = instance.metadata.uid.as_deref().unwrap_or_default();
    let scenario = product.scenario;
    let party = scenario.resource_owner();
    let owner_namespace = match party {
        Party::Customer => inst_ns,
        Party::Distributor => product.namespace,
        Party::Isv => product.isv_namespace,
    };
    Sale {
        scenario,
        party,
        owner_namespace: owner_namespace.to_string(),
        target_namespace: if scenario.is_managed() {
            managed_namespace_name(inst_ns, inst_name, uid)
        } else {
            inst_ns.to_string()
        },
    }
}

/// Builds the desired state of `instance` from a sellable product, under the
/// terms it was sold with (`sale`; a new sale's when None). Rendering stops
/// as soon as it passes `limits`. Where the customer owns the resources, the
/// pods may use only what the instance creates or the buyer names
/// ([`check_pod_references`]). Nothing is to be written when this fails.
pub fn build(
    instance: &ServiceInstance,
    product: &Product<'_>,
    sale: Option<&Sale>,
    limits: &SizeLimits,
) -> Result<Desired, BuildError> {
    let inst_ns = instance.metadata.namespace.as_deref().unwrap_or_default();
    let inst_name = instance.metadata.name.as_deref().unwrap_or_default();
    let uid = instance.metadata.uid.as_deref().unwrap_or_default();
    let sale = sale.cloned().unwrap_or_else(|| new_sale(instance, product));
    let scenario = sale.scenario;
    let party = sale.party;
    let owner_ns = sale.owner_namespace.as_str();
    let target = sale.target_namespace.clone();

    let params = resolve_parameters(
        product.offering,
        instance.spec.plan.as_deref(),
        &instance.spec.parameters,
        limits,
    )
    .map_err(|e| match e {
        ParameterError::TooLarge {
            whose: "the value", ..
        } => BuildError {
            reason: "TooLarge",
            message: format!("{e}; fix the ServiceInstance spec"),
        },
        ParameterError::TooLarge { .. } => BuildError {
            reason: "TooLarge",
            message: format!("{e}; the seller must shorten it"),
        },
        ParameterError::Plan(_) => BuildError {
            reason: "InvalidPlan",
            message: format!("{e}; fix the ServiceInstance spec"),
        },
        ParameterError::Value { .. } => BuildError {
            reason: "InvalidParameter",
            message: format!("{e}; fix the ServiceInstance spec"),
        },
    })?;
    let ctx = RenderContext {
        instance_name: inst_name,
        instance_namespace: inst_ns,
        target_namespace: &target,
        params: &params,
    };
    let mut common = BTreeMap::from([
        (
            naming::MANAGED_BY_LABEL.to_string(),
            naming::MANAGED_BY.to_string(),
        ),
        (labels::INSTANCE_NAMESPACE.to_string(), inst_ns.to_string()),
        (
            labels::INSTANCE_NAME.to_string(),
            naming::label_value(inst_name),
        ),
        // The proof of ownership: the controller touches no object without it.
        (labels::INSTANCE_UID.to_string(), uid.to_string()),
        (labels::SCENARIO.to_string(), scenario.as_str().to_string()),
    ]);
    let mut objects = render_objects(&product.offering.objects, &ctx, &common, limits).map_err(
        |e| match e {
            RenderError::Collision { .. } => BuildError {
                reason: "ObjectConflict",
                message: e.to_string(),
            },
            RenderError::TooLarge { .. } => BuildError {
                reason: "TooLarge",
                message: format!(
                    "{e}; the seller must make the template smaller, or the buyer give shorter parameter values"
                ),
            },
            other => BuildError {
                reason: "RenderFailed",
                message: format!("{other}; the seller must fix the template"),
            },
        },
    )?;
    if !scenario.is_managed() {
        // In the customer's own namespace the pods could name any of the
        // customer's Secrets: they may use only what the instance creates or
        // the buyer hands over.
        check_pod_references(
            &objects,
            &product.offering.parameters,
            &instance.spec.parameters,
        )
        .map_err(|e| BuildError {
            reason: "ForbiddenReference",
            message: format!("{e}; the seller must fix the template"),
        })?;
        // Customer-owned: garbage collection follows the instance.
        let owner = json!([{
            "apiVersion": "computenest.dev/v1alpha1",
            "kind": "ServiceInstance",
            "name": inst_name,
            "uid": uid,
            "controller": true,
            "blockOwnerDeletion": true,
        }]);
        for o in &mut objects {
            o["metadata"]["ownerReferences"] = owner.clone();
        }
    }
    let applied = objects
        .iter()
        .map(|o| AppliedObject {
            api_version: o["apiVersion"].as_str().unwrap_or_default().to_string(),
            kind: o["kind"].as_str().unwrap_or_default().to_string(),
            namespace: target.clone(),
            name: o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        })
        .collect();
    let logon_url = match &product.offering.outputs.logon_url {
        Some(t) => Some(render_string(t, &ctx, limits).map_err(|e| BuildError {
            reason: match e {
                RenderError::TooLarge { .. } => "TooLarge",
                _ => "RenderFailed",
            },
            message: format!("logon URL: {e}; the seller must fix outputs.logonUrl"),
        })?),
        None => None,
    };
    let managed_namespace_labels = scenario.is_managed().then(|| {
        common.insert(labels::OWNER_PARTY.to_string(), party.to_string());
        common.insert(labels::OWNER_NAMESPACE.to_string(), owner_ns.to_string());
        common
    });
    // Orders follow the terms of the sale, never a later edit of the product.
    let orders = if scenario.settlement() == Settlement::Online {
        orders(instance, product)
    } else {
        Vec::new()
    };
    let billing = Billing {
        resource_fees_paid_by: party,
        service_fees_paid_to: scenario.service_fees_paid_to(),
        settlement: scenario.settlement(),
        orders: order_refs(&orders),
    };
    let mut desired = Desired {
        scenario,
        owner: ResourceOwner {
            party,
            namespace: owner_ns.to_string(),
            target_namespace: target,
        },
        billing,
        managed_namespace_labels,
        objects,
        applied,
        logon_url,
        secret_name: logon_secret_name(inst_name),
        orders,
        digest: String::new(),
    };
    desired.digest = digest(&desired);
    Ok(desired)
}

/// (kind, name) of a rendered object: what names it in its namespace.
pub fn kind_and_name(o: &Value) -> (String, String) {
    (
        o["kind"].as_str().unwrap_or_default().to_string(),
        o["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

impl Desired {
    /// Records `version` on the managed namespace, if there is one.
    pub fn record_version(&mut self, version: &str) {
        if let Some(l) = self.managed_namespace_labels.as_mut() {
            l.insert(
                labels::VERSION.to_string(),
                crate::domain::naming::label_value(version),
            );
            self.digest = digest(self);
        }
    }
}

impl Desired {
    /// Adds objects the controller itself makes for the instance (its
    /// license, its metering account) to the rendered ones: in the target
    /// namespace, labelled like them (the UID label is the proof of
    /// ownership), owned by the instance where the customer owns the
    /// resources. A template object of the same kind and name is refused:
    /// the seller must rename it.
    pub fn add_own_objects(
        &mut self,
        instance: &ServiceInstance,
        objects: Vec<Value>,
    ) -> Result<(), BuildError> {
        let inst_ns = instance.metadata.namespace.clone().unwrap_or_default();
        let inst_name = instance.metadata.name.clone().unwrap_or_default();
        let uid = instance.metadata.uid.clone().unwrap_or_default();
        let labels = json!({
            naming::MANAGED_BY_LABEL: naming::MANAGED_BY,
            labels::INSTANCE_NAMESPACE: inst_ns,
            labels::INSTANCE_NAME: naming::label_value(&inst_name),
            labels::INSTANCE_UID: uid,
            labels::SCENARIO: self.scenario.as_str(),
        });
        let taken: std::collections::BTreeSet<(String, String)> =
            self.objects.iter().map(kind_and_name).collect();
        for mut o in objects {
            let (kind, name) = kind_and_name(&o);
            if taken.contains(&(kind.clone(), name.clone())) {
                return Err(BuildError {
                    reason: "ObjectConflict",
                    message: format!(
                        "the template has a {kind} named {name:?}, a name the controller uses for the instance's own {kind}; the seller must rename it"
                    ),
                });
            }
            o["metadata"]["namespace"] = json!(self.owner.target_namespace);
            o["metadata"]["labels"] = labels.clone();
            if !self.scenario.is_managed() {
                o["metadata"]["ownerReferences"] = json!([{
                    "apiVersion": "computenest.dev/v1alpha1",
                    "kind": "ServiceInstance",
                    "name": inst_name,
                    "uid": uid,
                    "controller": true,
                    "blockOwnerDeletion": true,
                }]);
            }
            self.applied.push(AppliedObject {
                api_version: o["apiVersion"].as_str().unwrap_or_default().to_string(),
                kind,
                namespace: self.owner.target_namespace.clone(),
                name,
            });
            self.objects.push(o);
        }
        self.digest = digest(self);
        Ok(())
    }

    /// Suspends the instance's software (its term ended): workloads scaled
    /// to zero, Jobs and CronJobs suspended, the logon URL withdrawn. The
    /// data (claims, Secrets) stays, so renewing resumes it as it was.
    pub fn suspend(&mut self) {
        for o in &mut self.objects {
            match o["kind"].as_str() {
                Some("Deployment" | "StatefulSet" | "ReplicaSet") => {
                    o["spec"]["replicas"] = json!(0)
                }
                Some("CronJob" | "Job") => o["spec"]["suspend"] = json!(true),
                _ => {}
            }
        }
        self.logon_url = None;
        self.digest = digest(self);
    }
}

/// The Orders of one term or usage period of a scenario 3 instance: as the
/// sale's two (distributor to customer, ISV to distributor), named after the
/// period so that each is written exactly once, with each tier's amount.
pub fn period_orders(
    instance: &ServiceInstance,
    product: &Product<'_>,
    kind: crate::api::OrderKind,
    customer: crate::api::OrderPeriod,
    resale: crate::api::OrderPeriod,
) -> Vec<Order> {
    let inst_ns = instance.metadata.namespace.clone().unwrap_or_default();
    let inst_name = instance.metadata.name.clone().unwrap_or_default();
    let uid = instance.metadata.uid.clone().unwrap_or_default();
    let what = match kind {
        crate::api::OrderKind::Usage => "usage",
        _ => "term",
    };
    orders(instance, product)
        .into_iter()
        .zip([("sale", customer), ("resale", resale)])
        .map(|(mut o, (role, period))| {
            let role = format!("{role}-{what}{}", period.index);
            o.metadata.name = Some(order_name(&inst_ns, &inst_name, &uid, &role));
            o.spec.kind = kind;
            o.spec.period = Some(period);
            o
        })
        .collect()
}

fn digest(d: &Desired) -> String {
    let material = json!({
        "ns": d.managed_namespace_labels,
        "objects": d.objects,
        "url": d.logon_url,
        "secret": d.secret_name,
        "orders": d.billing.orders,
    });
    short_hash(&material.to_string(), 16)
}

/// Scenario 3: the distributor sells to the customer, and the ISV to the distributor.
fn orders(instance: &ServiceInstance, product: &Product<'_>) -> Vec<Order> {
    let inst_ns = instance.metadata.namespace.clone().unwrap_or_default();
    let inst_name = instance.metadata.name.clone().unwrap_or_default();
    let uid = instance.metadata.uid.clone().unwrap_or_default();
    let instance_ref = InstanceRef {
        namespace: inst_ns.clone(),
        name: inst_name.clone(),
        uid: uid.clone(),
    };
    let meta = |ns: &str, role: &str| ObjectMeta {
        name: Some(order_name(&inst_ns, &inst_name, &uid, role)),
        namespace: Some(ns.to_string()),
        labels: Some(BTreeMap::from([
            (
                naming::MANAGED_BY_LABEL.to_string(),
                naming::MANAGED_BY.to_string(),
            ),
            (labels::INSTANCE_NAMESPACE.to_string(), inst_ns.clone()),
            (
                labels::INSTANCE_NAME.to_string(),
                naming::label_value(&inst_name),
            ),
            (labels::INSTANCE_UID.to_string(), uid.clone()),
        ])),
        ..Default::default()
    };
    vec![
        Order {
            metadata: meta(product.namespace, "sale"),
            spec: OrderSpec {
                seller: PartyRef {
                    party: Party::Distributor,
                    namespace: product.namespace.to_string(),
                },
                buyer: PartyRef {
                    party: Party::Customer,
                    namespace: inst_ns.clone(),
                },
                item: ItemRef {
                    kind: "DerivedService".into(),
                    namespace: product.namespace.to_string(),
                    name: product.name.to_string(),
                    product_code: product.product_code.map(str::to_string),
                },
                instance: instance_ref.clone(),
                settlement: Settlement::Online,
                price: product.price.map(str::to_string),
                kind: Default::default(),
                period: None,
            },
            status: None,
        },
        Order {
            metadata: meta(product.isv_namespace, "resale"),
            spec: OrderSpec {
                seller: PartyRef {
                    party: Party::Isv,
                    namespace: product.isv_namespace.to_string(),
                },
                buyer: PartyRef {
                    party: Party::Distributor,
                    namespace: product.namespace.to_string(),
                },
                item: ItemRef {
                    kind: "Service".into(),
                    namespace: product.isv_namespace.to_string(),
                    name: product.service_name.to_string(),
                    product_code: product.isv_product_code.map(str::to_string),
                },
                instance: instance_ref,
                settlement: Settlement::Online,
                price: None,
                kind: Default::default(),
                period: None,
            },
            status: None,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ServiceSpec;
    use crate::domain::render::{default_allowed_kinds, resolve_offering};

    fn instance() -> ServiceInstance {
        serde_json::from_value(json!({
            "apiVersion": "computenest.dev/v1alpha1", "kind": "ServiceInstance",
            "metadata": {"name": "shop", "namespace": "acme", "uid": "u-1"},
            "spec": {"serviceRef": {"kind": "DerivedService", "namespace": "dist", "name": "web-plus"},
                     "plan": "basic", "parameters": {"adminEmail": "ops@acme.io"}}
        }))
        .unwrap()
    }

    fn offering() -> Offering {
        let spec: ServiceSpec =
            serde_yaml::from_str(include_str!("../../tests/fixtures/service-web.yaml")).unwrap();
        resolve_offering(&spec, None, &default_allowed_kinds()).unwrap()
    }

    fn product<'a>(scenario: Scenario, offering: &'a Offering) -> Product<'a> {
        Product {
            kind: ProductKind::DerivedService,
            namespace: "dist",
            name: "web-plus",
            isv_namespace: "isv",
            service_name: "web",
            isv_product_code: Some("isv-1"),
            product_code: Some("dist-1"),
            price: Some("9 USD"),
            scenario,
            offering,
        }
    }

    #[test]
    fn placement_per_scenario() {
        let o = offering();
        let rows = [
            (Scenario::Scenario1, Party::Customer, "acme", false, 0),
            (Scenario::Scenario2, Party::Distributor, "dist", true, 0),
            (Scenario::Scenario3, Party::Isv, "isv", true, 2),
            (Scenario::Scenario4, Party::Isv, "isv", true, 0),
        ];
        for (sc, party, owner_ns, managed, orders) in rows {
            let d = build(&instance(), &product(sc, &o), None, &SizeLimits::default()).unwrap();
            assert_eq!(d.owner.party, party, "{sc:?}");
            assert_eq!(d.owner.namespace, owner_ns, "{sc:?}");
            assert_eq!(d.managed_namespace_labels.is_some(), managed, "{sc:?}");
            assert_eq!(d.orders.len(), orders, "{sc:?}");
            let target = if managed {
                managed_namespace_name("acme", "shop", "u-1")
            } else {
                "acme".to_string()
            };
            assert_eq!(d.owner.target_namespace, target);
            for obj in &d.objects {
                assert_eq!(obj["metadata"]["namespace"], json!(target));
                assert_eq!(
                    obj["metadata"]["ownerReferences"].is_array(),
                    !managed,
                    "{sc:?}: ownerReferences only when private"
                );
            }
            assert_eq!(d.logon_url.as_deref(), Some("https://shop.example.com/"));
        }
    }

    #[test]
    fn scenario3_orders_go_to_the_sellers() {
        let o = offering();
        let d = build(
            &instance(),
            &product(Scenario::Scenario3, &o),
            None,
            &SizeLimits::default(),
        )
        .unwrap();
        let sale = &d.orders[0];
        assert_eq!(sale.metadata.namespace.as_deref(), Some("dist"));
        assert_eq!(
            (sale.spec.seller.party, sale.spec.buyer.party),
            (Party::Distributor, Party::Customer)
        );
        let resale = &d.orders[1];
        assert_eq!(resale.metadata.namespace.as_deref(), Some("isv"));
        assert_eq!(
            (resale.spec.seller.party, resale.spec.buyer.party),
            (Party::Isv, Party::Distributor)
        );
        assert_eq!(d.billing.settlement, Settlement::Online);
        assert_ne!(sale.metadata.name, resale.metadata.name);
    }

    #[test]
    fn deterministic_names_and_digest() {
        let o = offering();
        let a = build(
            &instance(),
            &product(Scenario::Scenario3, &o),
            None,
            &SizeLimits::default(),
        )
        .unwrap();
        let b = build(
            &instance(),
            &product(Scenario::Scenario3, &o),
            None,
            &SizeLimits::default(),
        )
        .unwrap();
        assert_eq!(a.digest, b.digest);
        assert_eq!(a.billing.orders, b.billing.orders);
        let mut other = instance();
        other
            .spec
            .parameters
            .insert("domain".into(), json!("other.io"));
        assert_ne!(
            build(
                &other,
                &product(Scenario::Scenario3, &o),
                None,
                &SizeLimits::default()
            )
            .unwrap()
            .digest,
            a.digest
        );
        assert_ne!(
            managed_namespace_name("a-b", "c", "u"),
            managed_namespace_name("a", "b-c", "u")
        );
        // A re-created instance of the same name gets a namespace of its own.
        assert_ne!(
            managed_namespace_name("a", "b", "u-1"),
            managed_namespace_name("a", "b", "u-2")
        );
        for name in ["shop.v2", "a.b.c", &"y.".repeat(126)] {
            let ns = managed_namespace_name("acme", name, "u");
            assert!(crate::domain::naming::is_dns_label(&ns), "{ns}");
            let order = order_name("acme", name, "u", "sale");
            assert!(crate::domain::render::is_dns_subdomain(&order), "{order}");
            let secret = logon_secret_name(name);
            assert!(crate::domain::render::is_dns_subdomain(&secret), "{secret}");
        }
        let long = managed_namespace_name(&"x".repeat(63), &"y".repeat(253), "u");
        assert!(
            long.len() <= 63 && crate::domain::render::is_dns_subdomain(&long),
            "{long}"
        );
        let order = order_name(&"x".repeat(63), &"y".repeat(253), "uid", "resale");
        assert!(
            order.len() <= 253 && crate::domain::render::is_dns_subdomain(&order),
            "{order}"
        );
    }

    #[test]
    fn bad_parameters_are_named() {
        let o = offering();
        let mut i = instance();
        i.spec.parameters.insert("replicas".into(), json!("many"));
        let e = build(
            &i,
            &product(Scenario::Scenario1, &o),
            None,
            &SizeLimits::default(),
        )
        .unwrap_err();
        assert_eq!(e.reason, "InvalidParameter");
        assert!(
            e.message.contains("\"replicas\": must be a whole number"),
            "{}",
            e.message
        );
        i.spec.plan = Some("gold".into());
        assert_eq!(
            build(
                &i,
                &product(Scenario::Scenario1, &o),
                None,
                &SizeLimits::default()
            )
            .unwrap_err()
            .reason,
            "InvalidPlan"
        );
    }

    /// The fixture with a Deployment that mounts the Secret `secret`.
    fn offering_using(secret: &str) -> Offering {
        let mut spec: ServiceSpec =
            serde_yaml::from_str(include_str!("../../tests/fixtures/service-web.yaml")).unwrap();
        spec.parameters.push(
            serde_json::from_value(json!({"name": "dbSecret", "type": "SecretRef"})).unwrap(),
        );
        spec.template.objects.push(json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "$(instance.name)-db"},
            "spec": {"template": {"spec": {"containers": [{"name": "db", "image": "db"}],
                "volumes": [{"name": "creds", "secret": {"secretName": secret}}]}}}
        }));
        resolve_offering(&spec, None, &default_allowed_kinds()).unwrap()
    }

    #[test]
    fn customer_owned_pods_may_use_only_what_the_instance_creates_or_the_buyer_names() {
        let foreign = offering_using("payroll");
        for sc in [Scenario::Scenario1, Scenario::DirectPrivate] {
            let e = build(
                &instance(),
                &product(sc, &foreign),
                None,
                &SizeLimits::default(),
            )
            .unwrap_err();
            assert_eq!(e.reason, "ForbiddenReference", "{sc:?}");
            assert!(
                e.message.starts_with("template object 2 (apps/v1 Deployment \"shop-db\"): spec.template.spec.volumes[0].secret.secretName names Secret \"payroll\""),
                "{}",
                e.message
            );
            assert!(
                e.message.ends_with("; the seller must fix the template"),
                "{}",
                e.message
            );
        }
        // Managed namespaces hold no Secret of the customer's: not checked.
        for sc in [
            Scenario::Scenario2,
            Scenario::Scenario3,
            Scenario::Scenario4,
            Scenario::DirectFullyManaged,
        ] {
            assert!(
                build(
                    &instance(),
                    &product(sc, &foreign),
                    None,
                    &SizeLimits::default()
                )
                .is_ok(),
                "{sc:?}"
            );
        }
        // The buyer hands its Secret over by a SecretRef parameter.
        let named = offering_using("$(params.dbSecret)");
        let mut i = instance();
        i.spec.parameters.insert("dbSecret".into(), json!("my-db"));
        let d = build(
            &i,
            &product(Scenario::Scenario1, &named),
            None,
            &SizeLimits::default(),
        )
        .unwrap();
        assert_eq!(
            d.objects[2]["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"],
            json!("my-db")
        );
        // Without it, the template names no Secret at all: refused.
        let e = build(
            &instance(),
            &product(Scenario::Scenario1, &named),
            None,
            &SizeLimits::default(),
        )
        .unwrap_err();
        assert_eq!(e.reason, "RenderFailed", "{}", e.message);
    }

    #[test]
    fn sizes_past_the_limits_are_refused_with_too_large() {
        let o = offering();
        let tiny = |object: usize, parameter: usize| SizeLimits {
            max_object_bytes: object,
            max_instance_bytes: 1 << 20,
            max_parameter_bytes: parameter,
        };
        let e = build(
            &instance(),
            &product(Scenario::Scenario1, &o),
            None,
            &tiny(100, 1024),
        )
        .unwrap_err();
        assert_eq!(e.reason, "TooLarge");
        assert!(
            e.message.starts_with("template object 0 would render to more than 100 bytes (stopped at ")
                && e.message.ends_with("(tenancy.sizeLimits.maxObjectBytes); the seller must make the template smaller, or the buyer give shorter parameter values"),
            "{}",
            e.message
        );
        let e = build(
            &instance(),
            &product(Scenario::Scenario1, &o),
            None,
            &tiny(1 << 20, 5),
        )
        .unwrap_err();
        assert_eq!(
            (e.reason, e.message.as_str()),
            (
                "TooLarge",
                "parameter \"adminEmail\": the value is 11 bytes, more than the 5 the platform allows (tenancy.sizeLimits.maxParameterBytes); fix the ServiceInstance spec"
            )
        );
        // The logon URL: the objects fit 1000 bytes, the URL does not.
        let mut url = o.clone();
        url.outputs.logon_url =
            Some("https://$(params.adminEmail)$(params.adminEmail)$(params.adminEmail)/".into());
        let mut long = instance();
        long.spec
            .parameters
            .insert("adminEmail".into(), json!("a".repeat(400)));
        let fits = SizeLimits {
            max_object_bytes: 1000,
            max_instance_bytes: 1 << 20,
            max_parameter_bytes: 1024,
        };
        assert!(build(&long, &product(Scenario::Scenario1, &o), None, &fits).is_ok());
        let e = build(&long, &product(Scenario::Scenario1, &url), None, &fits).unwrap_err();
        assert_eq!(e.reason, "TooLarge");
        assert!(
            e.message
                .starts_with("logon URL: the string would render to more than 1000 bytes (stopped at ")
                && e.message.contains(
                    "the most the platform allows (tenancy.sizeLimits.maxObjectBytes); the seller must fix outputs.logonUrl"
                ),
            "{}",
            e.message
        );
    }
}
