//! Builds the chain of an object, up to the ISV's Service and down to what
//! it leads to, with the caller's own rights: an object the caller may not
//! read is shown as such, never fetched another way. The chain comes from
//! spec references, labels and status (ownerReferences cannot cross
//! namespaces): an instance's `spec.serviceRef`, a DerivedService's
//! `spec.source`, a grant's `spec.serviceName` and `spec.distributorNamespace`,
//! an Order's `spec.instance`, an AccessRequest's `spec.instanceName`, an
//! instance's `status.resources` and `status.billing.orders`.

use super::tree::{Access, Node};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde_json::Value;

/// The computenest kinds the chain is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An ISV's Service.
    Service,
    /// An ISV's grant to a distributor.
    DistributionGrant,
    /// A distributor's product.
    DerivedService,
    /// A customer's purchase.
    ServiceInstance,
    /// A sale.
    Order,
    /// A customer's request for access.
    AccessRequest,
}

impl Kind {
    /// The kind a command-line word names (kind, plural, short name).
    pub fn parse(word: &str) -> Option<Kind> {
        Some(match word.to_ascii_lowercase().as_str() {
            "service" | "services" | "cnsvc" | "services.computenest.dev" => Kind::Service,
            "distributiongrant" | "distributiongrants" | "grant" | "grants" | "cngrant" => {
                Kind::DistributionGrant
            }
            "derivedservice" | "derivedservices" | "cnds" => Kind::DerivedService,
            "serviceinstance" | "serviceinstances" | "instance" | "cnsi" => Kind::ServiceInstance,
            "order" | "orders" | "cnorder" => Kind::Order,
            "accessrequest" | "accessrequests" | "cnar" => Kind::AccessRequest,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Service => "Service",
            Kind::DistributionGrant => "DistributionGrant",
            Kind::DerivedService => "DerivedService",
            Kind::ServiceInstance => "ServiceInstance",
            Kind::Order => "Order",
            Kind::AccessRequest => "AccessRequest",
        }
    }

    /// The API resource of the kind.
    pub fn resource(self) -> ApiResource {
        let plural = match self {
            Kind::Service => "services",
            Kind::DistributionGrant => "distributiongrants",
            Kind::DerivedService => "derivedservices",
            Kind::ServiceInstance => "serviceinstances",
            Kind::Order => "orders",
            Kind::AccessRequest => "accessrequests",
        };
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("computenest.dev", "v1alpha1", self.name()),
            plural,
        )
    }
}

/// What went wrong, other than an object the caller may not read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The traced object itself could not be read.
    #[error("{kind} {namespace}/{name}: {why}")]
    Root {
        /// Its kind.
        kind: &'static str,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Not found, or not allowed.
        why: String,
    },
    /// The API server failed.
    #[error("{0}")]
    Api(#[from] kube::Error),
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Reads one object with the caller's rights.
async fn get(
    client: &Client,
    kind: Kind,
    ns: &str,
    name: &str,
) -> Result<Result<Value, Access>, kube::Error> {
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &kind.resource());
    match api.get(name).await {
        Ok(o) => Ok(Ok(serde_json::to_value(o).unwrap_or_default())),
        Err(e) if status_code(&e) == Some(404) => Ok(Err(Access::NotFound)),
        Err(e) if status_code(&e) == Some(403) => Ok(Err(Access::Forbidden)),
        Err(e) => Err(e),
    }
}

/// Lists objects of `kind` in `ns` (None: every namespace) with the
/// caller's rights; Err(note) when the caller may not.
async fn list(
    client: &Client,
    kind: Kind,
    ns: Option<&str>,
) -> Result<Result<Vec<Value>, Node>, kube::Error> {
    let api = match ns {
        Some(ns) => Api::<DynamicObject>::namespaced_with(client.clone(), ns, &kind.resource()),
        None => Api::<DynamicObject>::all_with(client.clone(), &kind.resource()),
    };
    match api.list(&ListParams::default()).await {
        Ok(l) => Ok(Ok(l
            .items
            .into_iter()
            .map(|o| serde_json::to_value(o).unwrap_or_default())
            .collect())),
        Err(e) if status_code(&e) == Some(403) => Ok(Err(Node::note(format!(
            "{}s: not allowed to list them {} with your rights",
            kind.name(),
            ns.map_or("in all namespaces".to_string(), |n| format!(
                "in namespace {n}"
            ))
        )))),
        Err(e) => Err(e),
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn node_of(kind: Kind, ns: &str, name: &str, got: Result<Value, Access>) -> (Node, Option<Value>) {
    match got {
        Ok(obj) => (Node::from_object(kind.name(), &obj), Some(obj)),
        Err(access) => (Node::unreadable(kind.name(), ns, name, access), None),
    }
}

/// The parent of an object in the chain: (kind, namespace, name).
fn parent(kind: Kind, obj: &Value) -> Option<(Kind, String, String)> {
    let ns = s(&obj["metadata"]["namespace"]).to_string();
    let spec = &obj["spec"];
    match kind {
        Kind::Service => None,
        Kind::DistributionGrant => Some((Kind::Service, ns, s(&spec["serviceName"]).into())),
        Kind::DerivedService => Some((
            Kind::Service,
            s(&spec["source"]["namespace"]).into(),
            s(&spec["source"]["name"]).into(),
        )),
        Kind::ServiceInstance => {
            let r = &spec["serviceRef"];
            let k = Kind::parse(s(&r["kind"]))?;
            Some((k, s(&r["namespace"]).into(), s(&r["name"]).into()))
        }
        Kind::Order => Some((
            Kind::ServiceInstance,
            s(&spec["instance"]["namespace"]).into(),
            s(&spec["instance"]["name"]).into(),
        )),
        Kind::AccessRequest => Some((Kind::ServiceInstance, ns, s(&spec["instanceName"]).into())),
    }
}

/// Traces `kind` `ns`/`name`: the path up to its Service, and everything
/// below it.
pub async fn trace(client: &Client, kind: Kind, ns: &str, name: &str) -> Result<Node, TraceError> {
    let root = match get(client, kind, ns, name).await? {
        Ok(obj) => obj,
        Err(access) => {
            return Err(TraceError::Root {
                kind: kind.name(),
                namespace: ns.into(),
                name: name.into(),
                why: match access {
                    Access::Forbidden => "not allowed to read it with your rights".into(),
                    _ => "not found".into(),
                },
            });
        }
    };
    let mut node = Node::from_object(kind.name(), &root);
    node.traced = true;
    node.children = children(client, kind, &root).await?;
    // Up: one path of ancestors, no siblings (the caller traced one object).
    let (mut k, mut obj) = (kind, root);
    let mut guard = 0;
    while let Some((pk, pns, pname)) = parent(k, &obj) {
        guard += 1;
        if guard > 5 || pname.is_empty() {
            break;
        }
        let (mut up, got) = node_of(pk, &pns, &pname, get(client, pk, &pns, &pname).await?);
        up.children = vec![node];
        node = up;
        // A DerivedService's grant sits between it and the Service.
        if k == Kind::DerivedService && pk == Kind::Service {
            let distributor = s(&obj["metadata"]["namespace"]).to_string();
            let grant_name = s(&obj["status"]["grant"]["name"]).to_string();
            if !grant_name.is_empty() {
                let (mut g, _) = node_of(
                    Kind::DistributionGrant,
                    &pns,
                    &grant_name,
                    get(client, Kind::DistributionGrant, &pns, &grant_name).await?,
                );
                g.children = std::mem::take(&mut node.children);
                node.children = vec![g];
            } else {
                node.children.push(Node::note(format!(
                    "no grant for namespace {distributor} is named in the DerivedService's status"
                )));
            }
        }
        match got {
            Some(o) => {
                k = pk;
                obj = o;
            }
            None => break,
        }
    }
    Ok(node)
}

/// What an object leads to.
async fn children(client: &Client, kind: Kind, obj: &Value) -> Result<Vec<Node>, kube::Error> {
    let ns = s(&obj["metadata"]["namespace"]).to_string();
    let name = s(&obj["metadata"]["name"]).to_string();
    let mut out = Vec::new();
    match kind {
        Kind::Service => {
            match list(client, Kind::DistributionGrant, Some(&ns)).await? {
                Ok(grants) => {
                    for g in grants
                        .iter()
                        .filter(|g| s(&g["spec"]["serviceName"]) == name)
                    {
                        let mut node = Node::from_object("DistributionGrant", g);
                        node.children =
                            Box::pin(children(client, Kind::DistributionGrant, g)).await?;
                        out.push(node);
                    }
                }
                Err(note) => out.push(note),
            }
            out.extend(instances_of(client, "Service", &ns, &name).await?);
        }
        Kind::DistributionGrant => {
            let distributor = s(&obj["spec"]["distributorNamespace"]).to_string();
            let service = s(&obj["spec"]["serviceName"]).to_string();
            match list(client, Kind::DerivedService, Some(&distributor)).await? {
                Ok(products) => {
                    for d in products.iter().filter(|d| {
                        s(&d["spec"]["source"]["namespace"]) == ns
                            && s(&d["spec"]["source"]["name"]) == service
                    }) {
                        let mut node = Node::from_object("DerivedService", d);
                        node.children = Box::pin(children(client, Kind::DerivedService, d)).await?;
                        out.push(node);
                    }
                }
                Err(note) => out.push(note),
            }
        }
        Kind::DerivedService => {
            out.extend(instances_of(client, "DerivedService", &ns, &name).await?);
        }
        Kind::ServiceInstance => out.extend(instance_children(client, obj).await?),
        Kind::Order | Kind::AccessRequest => {}
    }
    Ok(out)
}

/// The instances of a product, in every namespace the caller may list.
async fn instances_of(
    client: &Client,
    kind: &str,
    ns: &str,
    name: &str,
) -> Result<Vec<Node>, kube::Error> {
    let mut out = Vec::new();
    match list(client, Kind::ServiceInstance, None).await? {
        Ok(items) => {
            for i in items.iter().filter(|i| {
                let r = &i["spec"]["serviceRef"];
                s(&r["kind"]) == kind && s(&r["namespace"]) == ns && s(&r["name"]) == name
            }) {
                let mut node = Node::from_object("ServiceInstance", i);
                node.children = instance_children(client, i).await?;
                out.push(node);
            }
        }
        Err(note) => out.push(note),
    }
    Ok(out)
}

/// An instance's objects (from its status, with their health), its Orders
/// and its AccessRequests.
async fn instance_children(client: &Client, inst: &Value) -> Result<Vec<Node>, kube::Error> {
    let ns = s(&inst["metadata"]["namespace"]).to_string();
    let name = s(&inst["metadata"]["name"]).to_string();
    let mut out = Vec::new();
    for r in inst["status"]["resources"].as_array().into_iter().flatten() {
        out.push(Node {
            kind: s(&r["kind"]).into(),
            namespace: s(&r["namespace"]).into(),
            name: s(&r["name"]).into(),
            version: String::new(),
            phase: s(&r["health"]).into(),
            ready: s(&r["sync"]).into(),
            reason: String::new(),
            message: s(&r["message"]).into(),
            access: Access::Read,
            traced: false,
            children: Vec::new(),
        });
    }
    for order in inst["status"]["billing"]["orders"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some((ons, oname)) = s(order).split_once('/') else {
            continue;
        };
        let (node, _) = node_of(
            Kind::Order,
            ons,
            oname,
            get(client, Kind::Order, ons, oname).await?,
        );
        out.push(node);
    }
    match list(client, Kind::AccessRequest, Some(&ns)).await? {
        Ok(reqs) => {
            for r in reqs
                .iter()
                .filter(|r| s(&r["spec"]["instanceName"]) == name)
            {
                out.push(Node::from_object("AccessRequest", r));
            }
        }
        Err(note) => out.push(note),
    }
    Ok(out)
}

/// `KIND/NAME` as typed on the command line.
pub fn parse_target(arg: &str) -> Option<(Kind, String)> {
    let (k, n) = arg.split_once('/')?;
    (!n.is_empty()).then(|| Kind::parse(k).map(|k| (k, n.to_string())))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn targets_parse_by_kind_plural_or_short_name() {
        assert_eq!(
            parse_target("cnsi/shop"),
            Some((Kind::ServiceInstance, "shop".into()))
        );
        assert_eq!(
            parse_target("DerivedService/x"),
            Some((Kind::DerivedService, "x".into()))
        );
        assert_eq!(parse_target("pods/x"), None);
        assert_eq!(parse_target("cnsi/"), None);
        assert_eq!(parse_target("cnsi"), None);
    }

    #[test]
    fn parents_come_from_spec_references() {
        let inst = json!({"metadata": {"namespace": "c", "name": "i"},
            "spec": {"serviceRef": {"kind": "DerivedService", "namespace": "d", "name": "p"}}});
        assert_eq!(
            parent(Kind::ServiceInstance, &inst),
            Some((Kind::DerivedService, "d".into(), "p".into()))
        );
        let req =
            json!({"metadata": {"namespace": "c", "name": "r"}, "spec": {"instanceName": "i"}});
        assert_eq!(
            parent(Kind::AccessRequest, &req),
            Some((Kind::ServiceInstance, "c".into(), "i".into()))
        );
        let grant =
            json!({"metadata": {"namespace": "isv", "name": "g"}, "spec": {"serviceName": "db"}});
        assert_eq!(
            parent(Kind::DistributionGrant, &grant),
            Some((Kind::Service, "isv".into(), "db".into()))
        );
        assert_eq!(parent(Kind::Service, &grant), None);
    }
}
