//! The plugin's verbs: each one a plain write of the documented field, with
//! the caller's own rights (grant decisions, access requests and
//! approvals), and `preview`, which renders a purchase with the
//! controller's own code and has the API server dry-run every object.

use crate::api::{
    AccessRequest, DerivedService, DistributionGrant, ProductKind, Service, ServiceInstance,
};
use crate::domain::provision::{self, Product};
use crate::domain::render::{self, AllowedKind};
use crate::domain::scenario::Scenario;
use crate::domain::tenancy::SizeLimits;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

/// The field manager of the plugin's writes.
pub const FIELD_MANAGER: &str = "kubectl-computenest";

/// Sets a grant's decision (the ISV decides in its own namespace).
pub async fn decide_grant(
    client: &Client,
    ns: &str,
    name: &str,
    decision: &str,
    reason: Option<&str>,
) -> Result<DistributionGrant, kube::Error> {
    let mut spec = json!({"decision": decision});
    if let Some(r) = reason {
        spec["reason"] = json!(r);
    }
    Api::<DistributionGrant>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": spec})),
        )
        .await
}

/// Pins an instance's version (`spec.version`): an upgrade or a rollback,
/// which the controller checks and carries out.
pub async fn pin_version(
    client: &Client,
    ns: &str,
    instance: &str,
    version: &str,
) -> Result<ServiceInstance, kube::Error> {
    Api::<ServiceInstance>::namespaced(client.clone(), ns)
        .patch(
            instance,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"version": version}})),
        )
        .await
}

/// The version a rollback returns to: the one the last successful upgrade
/// came from (status.history), unless it is what runs already.
pub fn rollback_target(inst: &ServiceInstance) -> Result<String, String> {
    use crate::api::{VersionChangeResult, VersionChangeType};
    let status = inst.status.clone().unwrap_or_default();
    let running = status.version.clone().unwrap_or_default();
    status
        .history
        .iter()
        .rev()
        .find(|h| h.type_ == VersionChangeType::Upgrade && h.result == VersionChangeResult::Succeeded)
        .map(|h| h.from.clone())
        .filter(|v| *v != running)
        .ok_or_else(|| {
            format!(
                "{} has no successful upgrade to roll back in its history; name the version with --to",
                inst.name_any()
            )
        })
}

/// One rule as typed, kubectl's way: `RESOURCES:VERBS`, resources
/// comma-separated as `resource[.group][/subresource]` (`pods`, `pods/log`,
/// `deployments.apps`, `deployments.apps/scale`), all of one group.
pub fn parse_rule(text: &str) -> Result<Value, String> {
    let usage = "expected resources:verbs, for example pods,pods/log:get,list or deployments.apps/scale:patch";
    let (what, verbs) = text
        .split_once(':')
        .ok_or_else(|| format!("rule {text:?}: {usage}"))?;
    let items = |s: &str| -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    };
    let (items_, verbs) = (items(what), items(verbs));
    if items_.is_empty() || verbs.is_empty() {
        return Err(format!(
            "rule {text:?}: names no resource or no verb; {usage}"
        ));
    }
    let mut group: Option<String> = None;
    let mut resources = Vec::new();
    for item in items_ {
        let (base, sub) = match item.split_once('/') {
            Some((b, s)) => (b.to_string(), Some(s.to_string())),
            None => (item.clone(), None),
        };
        let (resource, g) = match base.split_once('.') {
            Some((r, g)) => (r.to_string(), g.to_string()),
            None => (base, String::new()),
        };
        match &group {
            Some(prev) if *prev != g => {
                return Err(format!(
                    "rule {text:?}: resources of groups {prev:?} and {g:?}; write one rule per group"
                ));
            }
            _ => group = Some(g),
        }
        resources.push(match sub {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource,
        });
    }
    Ok(json!({"apiGroups": [group.unwrap_or_default()], "resources": resources, "verbs": verbs}))
}

/// What a customer asks for.
pub struct Request<'a> {
    /// Name of the AccessRequest.
    pub name: &'a str,
    /// The instance, in the same namespace.
    pub instance: &'a str,
    /// The subject: (kind, name).
    pub subject: (&'a str, &'a str),
    /// Rules, as JSON.
    pub rules: Vec<Value>,
    /// Seconds.
    pub duration_seconds: i64,
    /// Why.
    pub reason: &'a str,
}

/// Writes a customer's AccessRequest in its namespace (server-side apply:
/// running the same command again changes nothing).
pub async fn request_access(
    client: &Client,
    ns: &str,
    r: &Request<'_>,
) -> Result<AccessRequest, kube::Error> {
    let body = json!({
        "apiVersion": "computenest.dev/v1alpha1", "kind": "AccessRequest",
        "metadata": {"name": r.name},
        "spec": {"instanceName": r.instance, "subject": {"kind": r.subject.0, "name": r.subject.1},
                 "rules": r.rules, "durationSeconds": r.duration_seconds, "reason": r.reason}
    });
    Api::<AccessRequest>::namespaced(client.clone(), ns)
        .patch(
            r.name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&body),
        )
        .await
}

/// The name of the owner's approval of a request: one per request
/// (`<namespace>.<request>`; a namespace name has no dot, so no two requests
/// share it), hashed when too long for a name.
pub fn approval_name(request_namespace: &str, request: &str) -> String {
    let full = format!("{request_namespace}.{request}");
    if full.len() <= 253 {
        full
    } else {
        format!(
            "{request_namespace}.{}",
            crate::domain::naming::short_hash(request, 16)
        )
    }
}

/// Writes the owner's decision on a request, naming the request's UID and
/// its digest as the owner read them (the controller ignores a decision on
/// anything else).
pub async fn decide_access(
    client: &Client,
    owner_ns: &str,
    request_ns: &str,
    request: &str,
    decision: &str,
    reason: Option<&str>,
) -> Result<Result<String, String>, kube::Error> {
    let req = match Api::<AccessRequest>::namespaced(client.clone(), request_ns)
        .get_opt(request)
        .await?
    {
        Some(r) => r,
        None => {
            return Ok(Err(format!(
                "AccessRequest {request_ns}/{request} not found"
            )));
        }
    };
    let Some(digest) = req.status.as_ref().and_then(|s| s.request_digest.clone()) else {
        return Ok(Err(format!(
            "AccessRequest {request_ns}/{request} has no status.requestDigest yet: the controller has not read it; try again in a moment"
        )));
    };
    let name = approval_name(request_ns, request);
    let mut spec = json!({"requestNamespace": request_ns, "requestName": request,
        "requestUID": req.uid().unwrap_or_default(), "requestDigest": digest, "decision": decision});
    if let Some(r) = reason {
        spec["reason"] = json!(r);
    }
    let body = json!({"apiVersion": "computenest.dev/v1alpha1", "kind": "AccessApproval",
        "metadata": {"name": name}, "spec": spec});
    Api::<DynamicObject>::namespaced_with(
        client.clone(),
        owner_ns,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("computenest.dev", "v1alpha1", "AccessApproval"),
            "accessapprovals",
        ),
    )
    .patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(Ok(name))
}

/// What a purchase would create.
#[derive(Debug)]
pub struct Preview {
    /// The scenario it would be sold under.
    pub scenario: Scenario,
    /// Namespace the objects would go to ("(new managed namespace)" when managed).
    pub target: String,
    /// The rendered objects, each with the API server's dry-run answer
    /// (None: accepted).
    pub objects: Vec<(Value, Option<String>)>,
}

/// Renders the purchase of `product` (`Service` or `DerivedService` in
/// `seller_ns`) by `buyer_ns`, with the same code the controller uses, and
/// dry-runs each object where it would be created (customer-owned
/// purchases: in the buyer's namespace; fully managed ones are shown, not
/// dry-run, since their namespace does not exist before the sale).
pub async fn preview(
    client: &Client,
    product: (ProductKind, &str, &str),
    buyer_ns: &str,
    plan: Option<&str>,
    parameters: &serde_json::Map<String, Value>,
    allowed: &[AllowedKind],
) -> Result<Result<Preview, String>, kube::Error> {
    let (kind, seller_ns, name) = product;
    let (service, derived) = match kind {
        ProductKind::Service => {
            match Api::<Service>::namespaced(client.clone(), seller_ns)
                .get_opt(name)
                .await?
            {
                Some(s) => (s, None),
                None => return Ok(Err(format!("Service {seller_ns}/{name} not found"))),
            }
        }
        ProductKind::DerivedService => {
            let Some(d) = Api::<DerivedService>::namespaced(client.clone(), seller_ns)
                .get_opt(name)
                .await?
            else {
                return Ok(Err(format!("DerivedService {seller_ns}/{name} not found")));
            };
            let src = &d.spec.source;
            let Some(s) = Api::<Service>::namespaced(client.clone(), &src.namespace)
                .get_opt(&src.name)
                .await?
            else {
                return Ok(Err(format!(
                    "Service {}/{} (the DerivedService's source) not found",
                    src.namespace, src.name
                )));
            };
            (s, Some(d))
        }
    };
    let scenario = match &derived {
        None => Scenario::direct(service.spec.type_),
        Some(d) => match Scenario::derived(
            service.spec.type_,
            service.spec.marketplace.listed,
            d.spec.type_,
        ) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e.to_string())),
        },
    };
    let offering = match render::resolve_offering(
        &service.spec,
        derived.as_ref().map(|d| &d.spec.overrides),
        allowed,
    ) {
        Ok(o) => o,
        Err(e) => return Ok(Err(format!("the product is not valid: {e}"))),
    };
    let instance: ServiceInstance = match serde_json::from_value(json!({
        "apiVersion": "computenest.dev/v1alpha1", "kind": "ServiceInstance",
        "metadata": {"name": "preview", "namespace": buyer_ns, "uid": "00000000-0000-0000-0000-000000000000"},
        "spec": {"serviceRef": {"kind": match kind { ProductKind::Service => "Service", ProductKind::DerivedService => "DerivedService" },
                                "namespace": seller_ns, "name": name},
                 "plan": plan, "parameters": parameters}
    })) {
        Ok(i) => i,
        Err(e) => return Ok(Err(format!("the purchase is not valid: {e}"))),
    };
    let isv_ns = service.namespace().unwrap_or_default();
    let product = Product {
        kind,
        namespace: seller_ns,
        name,
        isv_namespace: &isv_ns,
        service_name: &service.name_any(),
        isv_product_code: service.spec.marketplace.product_code.as_deref(),
        product_code: derived
            .as_ref()
            .map_or(service.spec.marketplace.product_code.as_deref(), |d| {
                d.spec.marketplace.product_code.as_deref()
            }),
        price: None,
        scenario,
        offering: &offering,
    };
    let desired = match provision::build(&instance, &product, None, &SizeLimits::default()) {
        Ok(d) => d,
        Err(e) => return Ok(Err(format!("{}: {}", e.reason, e.message))),
    };
    let managed = scenario.is_managed();
    let mut objects = Vec::new();
    for obj in desired.objects {
        let verdict = if managed {
            Some(
                "not dry-run: it goes into a namespace made for the instance at purchase"
                    .to_string(),
            )
        } else {
            dry_run(client, buyer_ns, &obj, allowed).await?
        };
        objects.push((obj, verdict));
    }
    Ok(Ok(Preview {
        scenario,
        target: if managed {
            "(a namespace made for the instance, owned by the seller)".into()
        } else {
            buyer_ns.into()
        },
        objects,
    }))
}

/// The API server's dry-run answer for creating `obj` in `ns`: None when
/// it would be accepted, else why not.
async fn dry_run(
    client: &Client,
    ns: &str,
    obj: &Value,
    allowed: &[AllowedKind],
) -> Result<Option<String>, kube::Error> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    let ar = match allowed
        .iter()
        .find(|a| a.api_version() == api_version && a.kind == kind)
    {
        Some(a) => ApiResource {
            group: a.group.clone(),
            version: a.version.clone(),
            api_version: a.api_version(),
            kind: a.kind.clone(),
            plural: a.plural.clone(),
        },
        None => {
            return Ok(Some(format!(
                "{api_version} {kind} is not in the allow-list"
            )));
        }
    };
    let dynamic: DynamicObject = match serde_json::from_value(obj.clone()) {
        Ok(d) => d,
        Err(e) => return Ok(Some(e.to_string())),
    };
    let pp = PostParams {
        dry_run: true,
        field_manager: Some(FIELD_MANAGER.into()),
    };
    match Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ar)
        .create(&pp, &dynamic)
        .await
    {
        Ok(_) => Ok(None),
        // An object of that name exists already: the controller would refuse
        // it (ObjectConflict); the dry run says so.
        Err(kube::Error::Api(s)) => Ok(Some(format!("{} (HTTP {})", s.message, s.code))),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_with_or_without_a_group() {
        assert_eq!(
            parse_rule("pods,pods/log:get,list").ok(),
            Some(
                json!({"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]})
            )
        );
        assert_eq!(
            parse_rule("deployments.apps,deployments.apps/scale:get,patch").ok(),
            Some(
                json!({"apiGroups": ["apps"], "resources": ["deployments", "deployments/scale"], "verbs": ["get", "patch"]})
            )
        );
        assert!(parse_rule("pods,deployments.apps:get").is_err());
        assert!(parse_rule("pods").is_err());
        assert!(parse_rule("pods:").is_err());
    }

    #[test]
    fn a_rollback_returns_to_where_the_last_successful_upgrade_came_from() {
        let inst = |history: serde_json::Value, version: &str| -> ServiceInstance {
            serde_json::from_value(json!({
                "apiVersion": "computenest.dev/v1alpha1", "kind": "ServiceInstance",
                "metadata": {"name": "shop", "namespace": "c"},
                "spec": {"serviceRef": {"kind": "Service", "namespace": "isv", "name": "app"}},
                "status": {"version": version, "history": history}
            }))
            .unwrap()
        };
        let change = |from: &str, to: &str, t: &str, r: &str| json!({"from": from, "to": to, "type": t, "result": r, "startTime": "", "generation": 1});
        let h = json!([
            change("1.0.0", "2.0.0", "Upgrade", "Succeeded"),
            change("2.0.0", "3.0.0", "Upgrade", "Failed")
        ]);
        assert_eq!(rollback_target(&inst(h, "2.0.0")), Ok("1.0.0".into()));
        let h = json!([
            change("1.0.0", "2.0.0", "Upgrade", "Succeeded"),
            change("2.0.0", "1.0.0", "Rollback", "Succeeded")
        ]);
        assert!(rollback_target(&inst(h, "1.0.0")).is_err());
        assert!(rollback_target(&inst(json!([]), "1.0.0")).is_err());
    }

    #[test]
    fn one_approval_per_request() {
        assert_eq!(
            approval_name("cust", "debug"),
            approval_name("cust", "debug")
        );
        assert_ne!(approval_name("a-b", "c"), approval_name("a", "b-c"));
        assert!(approval_name("cust", &"r".repeat(253)).len() <= 253);
    }
}
