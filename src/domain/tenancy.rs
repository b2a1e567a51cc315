//! Managed namespaces as tenancy: pure, no API calls.
//!
//! The platform's policy (chart values `tenancy`) and what it makes of each
//! managed namespace: Pod Security labels, a ResourceQuota sized by the plan,
//! a LimitRange, a default NetworkPolicy, and the RoleBinding of the owner
//! party's operators. Also who may buy (sales policy) and the checks of
//! operators against what the platform lets a namespace name.

use crate::api::{
    Operator, OperatorKind, Party, PlanResources, PodSecurityLevel, SalesPolicy, SalesVisibility,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// Annotation on a seller's namespace, set by the platform: the users its
/// Services may name as operators (comma-separated). Tenants cannot write
/// namespaces, so only the platform decides.
pub const OPERATOR_USERS_ANNOTATION: &str = "computenest.dev/operator-users";
/// As OPERATOR_USERS_ANNOTATION, for groups.
pub const OPERATOR_GROUPS_ANNOTATION: &str = "computenest.dev/operator-groups";
/// Label of a managed namespace: the customer's namespace.
pub const CUSTOMER_NAMESPACE_LABEL: &str = "computenest.dev/customer-namespace";
/// Label of a managed namespace: the product, `Kind.namespace.name` (hashed when long).
pub const PRODUCT_LABEL: &str = "computenest.dev/product";
/// Name of the RoleBinding of the owner's operators in a managed namespace.
pub const OPERATORS_BINDING: &str = "computenest-operators";
/// Name of the ResourceQuota, LimitRange and NetworkPolicy of a managed namespace.
pub const POLICY_OBJECT_NAME: &str = "computenest-tenancy";

/// The platform's tenancy policy: chart values `tenancy`, passed to the
/// controller as JSON (`--tenancy-policy`). Every field has a safe default.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct TenancyPolicy {
    /// Pod Security Admission levels of every managed namespace.
    pub pod_security: PodSecurityPolicy,
    /// ResourceQuota of every managed namespace.
    pub quota: QuotaPolicy,
    /// LimitRange of every managed namespace.
    pub limit_range: LimitRangePolicy,
    /// Default NetworkPolicy of every managed namespace.
    pub network_policy: NetworkPolicyConfig,
    /// ClusterRole bound to the owner party's operators in its managed namespaces.
    pub operator_cluster_role: String,
    /// Most managed namespaces one customer namespace may have; unset: no limit.
    pub max_managed_namespaces_per_customer: Option<u32>,
    /// Caps on what one Service may make the controller write and hold.
    pub size_limits: SizeLimits,
}

impl Default for TenancyPolicy {
    fn default() -> Self {
        TenancyPolicy {
            pod_security: PodSecurityPolicy::default(),
            quota: QuotaPolicy::default(),
            limit_range: LimitRangePolicy::default(),
            network_policy: NetworkPolicyConfig::default(),
            operator_cluster_role: "computenest-operator".into(),
            max_managed_namespaces_per_customer: None,
            size_limits: SizeLimits::default(),
        }
    }
}

/// Pod Security Admission levels.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct PodSecurityPolicy {
    /// Level enforced unless a Service asks for another.
    pub enforce: PodSecurityLevel,
    /// Level audited.
    pub audit: PodSecurityLevel,
    /// Level warned about.
    pub warn: PodSecurityLevel,
    /// The least strict level a Service may ask for (`spec.podSecurity`).
    pub ceiling: PodSecurityLevel,
}

impl Default for PodSecurityPolicy {
    fn default() -> Self {
        PodSecurityPolicy {
            enforce: PodSecurityLevel::Restricted,
            audit: PodSecurityLevel::Restricted,
            warn: PodSecurityLevel::Restricted,
            ceiling: PodSecurityLevel::Baseline,
        }
    }
}

/// ResourceQuota: defaults for what a plan leaves unset, and ceilings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct QuotaPolicy {
    /// Whether managed namespaces get a ResourceQuota.
    pub enabled: bool,
    /// What a plan that declares nothing gets.
    pub defaults: PlanResources,
    /// The most a plan may declare; a plan above it is refused.
    pub ceilings: PlanResources,
}

impl Default for QuotaPolicy {
    fn default() -> Self {
        QuotaPolicy {
            enabled: true,
            defaults: PlanResources {
                cpu: Some("2".into()),
                memory: Some("4Gi".into()),
                storage: Some("20Gi".into()),
                pods: Some(20),
                services: Some(10),
                persistent_volume_claims: Some(10),
                config_maps: Some(50),
                secrets: Some(50),
            },
            ceilings: PlanResources {
                cpu: Some("32".into()),
                memory: Some("128Gi".into()),
                storage: Some("1Ti".into()),
                pods: Some(500),
                services: Some(100),
                persistent_volume_claims: Some(100),
                config_maps: Some(500),
                secrets: Some(500),
            },
        }
    }
}

/// LimitRange: per-container defaults, so that pods that declare no
/// resources still fit a quota on CPU and memory.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct LimitRangePolicy {
    /// Whether managed namespaces get a LimitRange.
    pub enabled: bool,
    /// Default container request.
    pub default_request: ComputeResources,
    /// Default container limit.
    pub default_limit: ComputeResources,
}

impl Default for LimitRangePolicy {
    fn default() -> Self {
        LimitRangePolicy {
            enabled: true,
            default_request: ComputeResources {
                cpu: "100m".into(),
                memory: "128Mi".into(),
            },
            default_limit: ComputeResources {
                cpu: "500m".into(),
                memory: "512Mi".into(),
            },
        }
    }
}

/// CPU and memory.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ComputeResources {
    /// CPU quantity.
    pub cpu: String,
    /// Memory quantity.
    pub memory: String,
}

/// The default NetworkPolicy of a managed namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct NetworkPolicyConfig {
    /// Whether managed namespaces get it.
    pub enabled: bool,
    /// Namespaces with these labels may still send traffic in (the
    /// platform's ingress controllers); every other namespace may not.
    pub ingress_namespace_labels: BTreeMap<String, String>,
}

impl Default for NetworkPolicyConfig {
    fn default() -> Self {
        NetworkPolicyConfig {
            enabled: true,
            ingress_namespace_labels: BTreeMap::from([(
                "computenest.dev/ingress".to_string(),
                "true".to_string(),
            )]),
        }
    }
}

/// Caps on rendering: what one Service may make the controller write to
/// etcd and hold in memory per instance.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct SizeLimits {
    /// Largest rendered object, in bytes of JSON.
    pub max_object_bytes: usize,
    /// Largest total of one instance's rendered objects.
    pub max_instance_bytes: usize,
    /// Largest parameter value (a string's bytes, or a value's JSON).
    pub max_parameter_bytes: usize,
}

impl Default for SizeLimits {
    fn default() -> Self {
        SizeLimits {
            max_object_bytes: 256 * 1024,
            max_instance_bytes: 1024 * 1024,
            max_parameter_bytes: 16 * 1024,
        }
    }
}

impl TenancyPolicy {
    /// Parses the policy from JSON; unknown fields are refused so that a
    /// misspelt chart value is an error at start, not a silent default.
    pub fn parse(text: &str) -> Result<Self, String> {
        let p: TenancyPolicy = serde_json::from_str(text).map_err(|e| e.to_string())?;
        p.check()?;
        Ok(p)
    }

    /// Checks the policy's own consistency.
    pub fn check(&self) -> Result<(), String> {
        if self.operator_cluster_role.trim().is_empty() {
            return Err("operatorClusterRole must not be empty".into());
        }
        for (what, r) in [
            ("quota.defaults", &self.quota.defaults),
            ("quota.ceilings", &self.quota.ceilings),
        ] {
            for (field, q) in quantities(r) {
                if let Some(q) = q {
                    parse_quantity(q).map_err(|e| format!("{what}.{field}: {e}"))?;
                }
            }
        }
        for (what, c) in [
            (
                "limitRange.defaultRequest",
                &self.limit_range.default_request,
            ),
            ("limitRange.defaultLimit", &self.limit_range.default_limit),
        ] {
            parse_quantity(&c.cpu).map_err(|e| format!("{what}.cpu: {e}"))?;
            parse_quantity(&c.memory).map_err(|e| format!("{what}.memory: {e}"))?;
        }
        if let Err(e) = effective_resources(None, &self.quota) {
            return Err(format!("quota.defaults exceed quota.ceilings: {e}"));
        }
        let s = &self.size_limits;
        if s.max_object_bytes == 0 || s.max_instance_bytes < s.max_object_bytes {
            return Err(
                "sizeLimits: maxObjectBytes must be positive and at most maxInstanceBytes".into(),
            );
        }
        Ok(())
    }
}

fn quantities(r: &PlanResources) -> [(&'static str, Option<&String>); 3] {
    [
        ("cpu", r.cpu.as_ref()),
        ("memory", r.memory.as_ref()),
        ("storage", r.storage.as_ref()),
    ]
}

fn counts(r: &PlanResources) -> [(&'static str, &'static str, Option<u32>); 5] {
    [
        ("pods", "pods", r.pods),
        ("services", "services", r.services),
        (
            "persistentVolumeClaims",
            "persistentvolumeclaims",
            r.persistent_volume_claims,
        ),
        ("configMaps", "configmaps", r.config_maps),
        ("secrets", "secrets", r.secrets),
    ]
}

/// Parses a Kubernetes quantity (`2`, `500m`, `4Gi`, `1e3`, `1.5k`) to a number.
pub fn parse_quantity(q: &str) -> Result<f64, String> {
    let q = q.trim();
    let bad = || format!("{q:?} is not a quantity (for example 2, 500m or 4Gi)");
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => {
            let e: i32 = s[1..].parse().map_err(|_| bad())?;
            10f64.powi(e)
        }
        _ => return Err(bad()),
    };
    if n < 0.0 || !n.is_finite() {
        return Err(bad());
    }
    Ok(n * factor)
}

/// What an instance's managed namespace may consume: the plan's resources,
/// the platform's defaults where the plan says nothing, refused above the
/// ceilings (a message naming each field).
pub fn effective_resources(
    plan: Option<&PlanResources>,
    quota: &QuotaPolicy,
) -> Result<PlanResources, String> {
    let empty = PlanResources::default();
    let plan = plan.unwrap_or(&empty);
    let d = &quota.defaults;
    let out = PlanResources {
        cpu: plan.cpu.clone().or_else(|| d.cpu.clone()),
        memory: plan.memory.clone().or_else(|| d.memory.clone()),
        storage: plan.storage.clone().or_else(|| d.storage.clone()),
        pods: plan.pods.or(d.pods),
        services: plan.services.or(d.services),
        persistent_volume_claims: plan.persistent_volume_claims.or(d.persistent_volume_claims),
        config_maps: plan.config_maps.or(d.config_maps),
        secrets: plan.secrets.or(d.secrets),
    };
    let mut over = Vec::new();
    for ((field, want), (_, ceiling)) in quantities(&out)
        .into_iter()
        .zip(quantities(&quota.ceilings))
    {
        if let (Some(w), Some(c)) = (want, ceiling) {
            let wn = parse_quantity(w).map_err(|e| format!("{field}: {e}"))?;
            let cn = parse_quantity(c).map_err(|e| format!("{field}: {e}"))?;
            if wn > cn {
                over.push(format!("{field} {w} (at most {c})"));
            }
        }
    }
    for ((field, _, want), (_, _, ceiling)) in counts(&out).into_iter().zip(counts(&quota.ceilings))
    {
        if let (Some(w), Some(c)) = (want, ceiling)
            && w > c
        {
            over.push(format!("{field} {w} (at most {c})"));
        }
    }
    if over.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "the plan asks for more than the platform allows per instance: {}",
            over.join(", ")
        ))
    }
}

/// The Pod Security level enforced in a Service's managed namespaces: the
/// platform's, or the Service's when it asks for a stricter one, or a less
/// strict one up to the ceiling. Above the ceiling: refused, with why.
pub fn effective_pod_security(
    asked: Option<PodSecurityLevel>,
    policy: &PodSecurityPolicy,
) -> Result<PodSecurityLevel, String> {
    let Some(asked) = asked else {
        return Ok(policy.enforce);
    };
    // Ord: Restricted < Baseline < Privileged (less strict is greater).
    if asked > policy.enforce && asked > policy.ceiling {
        return Err(format!(
            "spec.podSecurity {} is less strict than the platform allows (at most {}); ask for {} or stricter",
            asked.as_str(),
            policy.ceiling.max(policy.enforce).as_str(),
            policy.ceiling.max(policy.enforce).as_str()
        ));
    }
    Ok(asked)
}

/// Pod Security Admission labels of a managed namespace.
pub fn pod_security_labels(
    enforce: PodSecurityLevel,
    policy: &PodSecurityPolicy,
) -> BTreeMap<String, String> {
    // Audit and warn never say less than what is enforced.
    let audit = policy.audit.min(enforce);
    let warn = policy.warn.min(enforce);
    BTreeMap::from([
        (
            "pod-security.kubernetes.io/enforce".to_string(),
            enforce.as_str().to_string(),
        ),
        (
            "pod-security.kubernetes.io/audit".to_string(),
            audit.as_str().to_string(),
        ),
        (
            "pod-security.kubernetes.io/warn".to_string(),
            warn.as_str().to_string(),
        ),
    ])
}

/// The ResourceQuota of a managed namespace.
pub fn resource_quota(r: &PlanResources) -> Value {
    let mut hard = serde_json::Map::new();
    if let Some(cpu) = &r.cpu {
        hard.insert("requests.cpu".into(), json!(cpu));
        hard.insert("limits.cpu".into(), json!(cpu));
    }
    if let Some(mem) = &r.memory {
        hard.insert("requests.memory".into(), json!(mem));
        hard.insert("limits.memory".into(), json!(mem));
    }
    if let Some(storage) = &r.storage {
        hard.insert("requests.storage".into(), json!(storage));
    }
    for (_, name, n) in counts(r) {
        if let Some(n) = n {
            hard.insert(name.into(), json!(n.to_string()));
        }
    }
    json!({
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": { "name": POLICY_OBJECT_NAME },
        "spec": { "hard": hard },
    })
}

/// The LimitRange of a managed namespace.
pub fn limit_range(p: &LimitRangePolicy) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": { "name": POLICY_OBJECT_NAME },
        "spec": { "limits": [{
            "type": "Container",
            "defaultRequest": { "cpu": p.default_request.cpu, "memory": p.default_request.memory },
            "default": { "cpu": p.default_limit.cpu, "memory": p.default_limit.memory },
        }]},
    })
}

/// The default NetworkPolicy: ingress only from pods of the same namespace
/// and from namespaces the platform labelled as ingress.
pub fn network_policy(p: &NetworkPolicyConfig) -> Value {
    let mut from = vec![json!({ "podSelector": {} })];
    if !p.ingress_namespace_labels.is_empty() {
        from.push(json!({ "namespaceSelector": { "matchLabels": p.ingress_namespace_labels } }));
    }
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": { "name": POLICY_OBJECT_NAME },
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress"],
            "ingress": [{ "from": from }],
        },
    })
}

/// What the platform lets a seller's namespace name as operators besides
/// its own ServiceAccounts: from the namespace's annotations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameableSubjects {
    /// Users.
    pub users: BTreeSet<String>,
    /// Groups.
    pub groups: BTreeSet<String>,
}

impl NameableSubjects {
    /// From a namespace's annotations.
    pub fn from_annotations(a: &BTreeMap<String, String>) -> Self {
        let list = |key: &str| -> BTreeSet<String> {
            a.get(key)
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        NameableSubjects {
            users: list(OPERATOR_USERS_ANNOTATION),
            groups: list(OPERATOR_GROUPS_ANNOTATION),
        }
    }
}

/// The operators bound, and those left out with why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OperatorSubjects {
    /// RoleBinding subjects.
    pub subjects: Vec<Value>,
    /// Operators the platform does not let this seller name.
    pub refused: Vec<String>,
}

/// Which of `operators` (of the party whose namespace is `seller_ns`) are
/// bound: its ServiceAccounts always (they live in its namespace), users and
/// groups only when the platform lists them on that namespace.
pub fn operator_subjects(
    operators: &[Operator],
    seller_ns: &str,
    nameable: &NameableSubjects,
) -> OperatorSubjects {
    let mut out = OperatorSubjects::default();
    for o in operators {
        match o.kind {
            OperatorKind::ServiceAccount => out.subjects.push(json!({
                "kind": "ServiceAccount", "name": o.name, "namespace": seller_ns,
            })),
            OperatorKind::User if nameable.users.contains(&o.name) => out.subjects.push(json!({
                "kind": "User", "name": o.name, "apiGroup": "rbac.authorization.k8s.io",
            })),
            OperatorKind::Group if nameable.groups.contains(&o.name) => out.subjects.push(json!({
                "kind": "Group", "name": o.name, "apiGroup": "rbac.authorization.k8s.io",
            })),
            OperatorKind::User | OperatorKind::Group => out.refused.push(format!(
                "{:?} {:?} (namespace {seller_ns} may not name it: the platform lists the users and groups a namespace may name in its annotations {OPERATOR_USERS_ANNOTATION} and {OPERATOR_GROUPS_ANNOTATION})",
                o.kind, o.name
            )),
        }
    }
    out
}

/// The RoleBinding of the owner's operators, or None when there are none.
pub fn operators_binding(subjects: &[Value], cluster_role: &str) -> Option<Value> {
    if subjects.is_empty() {
        return None;
    }
    Some(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": { "name": OPERATORS_BINDING },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role },
        "subjects": subjects,
    }))
}

/// Whose operators run a managed namespace: the owner party's product.
/// Private instances (the customer owns them) have none.
pub fn operators_of(party: Party) -> Option<Party> {
    match party {
        Party::Customer => None,
        p => Some(p),
    }
}

/// What decides the policy of one managed namespace.
#[derive(Clone, Debug)]
pub struct ManagedInput<'a> {
    /// The customer's namespace.
    pub customer_namespace: &'a str,
    /// The product, as a label value (`product_label`).
    pub product: &'a str,
    /// What the ISV's Service asks for (`spec.podSecurity`).
    pub pod_security: Option<PodSecurityLevel>,
    /// What the instance's plan declares.
    pub plan_resources: Option<&'a PlanResources>,
    /// RoleBinding subjects of the owner's operators (`operator_subjects`).
    pub operator_subjects: &'a [Value],
}

/// The policy of one managed namespace: labels to add to it, and objects to
/// write in it (without namespace and labels: the controller adds those).
#[derive(Clone, Debug, PartialEq)]
pub struct ManagedPolicy {
    /// Labels of the namespace besides the instance's own.
    pub labels: BTreeMap<String, String>,
    /// ResourceQuota, LimitRange, NetworkPolicy, RoleBinding, as enabled.
    pub objects: Vec<Value>,
}

/// Why a managed namespace's policy cannot be built: nothing is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    /// Condition reason.
    pub reason: &'static str,
    /// What happened and who can fix it.
    pub message: String,
}

/// Pure: the policy of a managed namespace under the platform's `policy`.
pub fn managed_policy(
    policy: &TenancyPolicy,
    input: &ManagedInput<'_>,
) -> Result<ManagedPolicy, PolicyError> {
    let level = effective_pod_security(input.pod_security, &policy.pod_security).map_err(|m| {
        PolicyError {
            reason: "PodSecurityNotAllowed",
            message: format!("{m}; the ISV must change its Service"),
        }
    })?;
    let mut labels = pod_security_labels(level, &policy.pod_security);
    labels.insert(
        CUSTOMER_NAMESPACE_LABEL.to_string(),
        input.customer_namespace.to_string(),
    );
    labels.insert(PRODUCT_LABEL.to_string(), input.product.to_string());
    let mut objects = Vec::new();
    if policy.quota.enabled {
        let r =
            effective_resources(input.plan_resources, &policy.quota).map_err(|m| PolicyError {
                reason: "PlanExceedsPlatformLimits",
                message: format!("{m}; the seller must change the plan"),
            })?;
        objects.push(resource_quota(&r));
    }
    if policy.limit_range.enabled {
        objects.push(limit_range(&policy.limit_range));
    }
    if policy.network_policy.enabled {
        objects.push(network_policy(&policy.network_policy));
    }
    if let Some(binding) = operators_binding(input.operator_subjects, &policy.operator_cluster_role)
    {
        objects.push(binding);
    }
    Ok(ManagedPolicy { labels, objects })
}

/// Pure: adds a managed namespace's policy to an instance's desired state:
/// the namespace's labels, and the policy objects (in the target namespace,
/// labelled like the instance's objects, first, so that they are written
/// before anything can start a pod). The digest covers them: a change of the
/// platform's policy or of the operators reaches every managed namespace.
pub fn add_to_desired(
    d: &mut crate::domain::provision::Desired,
    policy: ManagedPolicy,
) -> Result<(), PolicyError> {
    use crate::domain::naming::{MANAGED_BY_LABEL, short_hash};
    use crate::domain::provision::labels;
    let Some(ns_labels) = d.managed_namespace_labels.as_mut() else {
        return Ok(());
    };
    let object_labels: serde_json::Map<String, Value> = [
        MANAGED_BY_LABEL,
        labels::INSTANCE_NAMESPACE,
        labels::INSTANCE_NAME,
        labels::INSTANCE_UID,
        labels::SCENARIO,
    ]
    .iter()
    .filter_map(|k| ns_labels.get(*k).map(|v| (k.to_string(), json!(v))))
    .collect();
    ns_labels.extend(policy.labels);
    let taken: BTreeSet<(String, String)> = d
        .objects
        .iter()
        .map(crate::domain::provision::kind_and_name)
        .collect();
    let target = d.owner.target_namespace.clone();
    let mut objects = Vec::with_capacity(policy.objects.len() + d.objects.len());
    for mut o in policy.objects {
        let kind = o["kind"].as_str().unwrap_or_default().to_string();
        let name = o["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if taken.contains(&(kind.clone(), name.clone())) {
            return Err(PolicyError {
                reason: "ObjectConflict",
                message: format!(
                    "the template has a {kind} named {name:?}, a name the platform's policy of every managed namespace uses; the seller must rename it"
                ),
            });
        }
        o["metadata"]["namespace"] = json!(target);
        o["metadata"]["labels"] = Value::Object(object_labels.clone());
        d.applied.push(crate::api::AppliedObject {
            api_version: o["apiVersion"].as_str().unwrap_or_default().to_string(),
            kind,
            namespace: target.clone(),
            name,
        });
        objects.push(o);
    }
    objects.append(&mut d.objects);
    d.objects = objects;
    d.digest = short_hash(
        &format!(
            "{}/{}",
            d.digest,
            json!({ "labels": d.managed_namespace_labels, "objects": d.objects })
        ),
        16,
    );
    Ok(())
}

/// Pure: whether a Service fits the platform's policy: its Pod Security
/// level and every plan's resources (checked before any instance is sold,
/// so that the ISV learns of it on its own Service).
pub fn check_service(
    pod_security: Option<PodSecurityLevel>,
    plans: &[crate::api::Plan],
    policy: &TenancyPolicy,
) -> Result<(), PolicyError> {
    effective_pod_security(pod_security, &policy.pod_security).map_err(|message| PolicyError {
        reason: "PodSecurityNotAllowed",
        message,
    })?;
    if policy.quota.enabled {
        for plan in plans {
            effective_resources(plan.resources.as_ref(), &policy.quota).map_err(|m| {
                PolicyError {
                    reason: "PlanExceedsPlatformLimits",
                    message: format!("plan {:?}: {m}", plan.name),
                }
            })?;
        }
    }
    Ok(())
}

/// The kinds of the policy objects, as (group, version, kind, plural): the
/// controller prunes them like template objects.
pub const POLICY_KINDS: [(&str, &str, &str, &str); 4] = [
    ("", "v1", "ResourceQuota", "resourcequotas"),
    ("", "v1", "LimitRange", "limitranges"),
    (
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
    ),
];

/// Pure: the product as a label value: `Kind.namespace.name`, or a
/// shortened form with a hash of the whole when that is too long.
pub fn product_label(kind: &str, namespace: &str, name: &str) -> String {
    let full = format!("{kind}.{namespace}.{name}");
    if crate::domain::naming::is_label_value(&full) {
        return full;
    }
    let hash = crate::domain::naming::short_hash(&full, 10);
    let head = crate::domain::naming::label_value(&full.chars().take(52).collect::<String>());
    format!("{head}-{hash}")
}

/// Whether a buyer namespace (with its platform-set labels) may buy under `policy`.
/// `direct` is a purchase from the ISV itself (not through a distributor).
pub fn may_buy(
    policy: &SalesPolicy,
    buyer_ns: &str,
    buyer_labels: Option<&BTreeMap<String, String>>,
    direct: bool,
) -> Result<(), String> {
    match policy.policy {
        SalesVisibility::Public => Ok(()),
        SalesVisibility::Hidden if direct => Err(
            "this Service is Hidden: it is not sold directly, only through its distributors".into(),
        ),
        SalesVisibility::Hidden => Ok(()),
        SalesVisibility::Restricted => {
            if policy.namespaces.iter().any(|n| n == buyer_ns) {
                return Ok(());
            }
            if let (Some(sel), Some(labels)) = (&policy.namespace_selector, buyer_labels)
                && selector_matches(sel, labels)
            {
                return Ok(());
            }
            Err(format!(
                "this product is Restricted and namespace {buyer_ns} is not among its buyers; ask the seller to add it"
            ))
        }
    }
}

/// Whether a label selector matches labels (matchLabels and matchExpressions).
pub fn selector_matches(
    sel: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    labels: &BTreeMap<String, String>,
) -> bool {
    let labels_ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let has = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => has.is_some_and(|v| values.contains(v)),
            "NotIn" => has.is_none_or(|v| !values.contains(v)),
            "Exists" => has.is_some(),
            "DoesNotExist" => has.is_none(),
            // An operator the API server would refuse matches nothing.
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

/// Whether a selector needs the buyer's labels at all (Restricted with a selector).
pub fn needs_buyer_labels(policy: &SalesPolicy) -> bool {
    policy.policy == SalesVisibility::Restricted && policy.namespace_selector.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_in_every_suffix() {
        assert_eq!(parse_quantity("2").unwrap(), 2.0);
        assert_eq!(parse_quantity("500m").unwrap(), 0.5);
        assert_eq!(
            parse_quantity("4Gi").unwrap(),
            4.0 * 1024.0 * 1024.0 * 1024.0
        );
        assert_eq!(parse_quantity("1.5k").unwrap(), 1500.0);
        assert_eq!(parse_quantity("1e3").unwrap(), 1000.0);
        assert!(parse_quantity("lots").is_err());
        assert!(parse_quantity("4GB").is_err());
        assert!(parse_quantity("").is_err());
    }

    #[test]
    fn a_plan_gets_the_defaults_it_leaves_out_and_is_refused_above_a_ceiling() {
        let q = QuotaPolicy::default();
        let plan = PlanResources {
            cpu: Some("4".into()),
            pods: Some(30),
            ..Default::default()
        };
        let r = effective_resources(Some(&plan), &q).unwrap();
        assert_eq!(r.cpu.as_deref(), Some("4"));
        assert_eq!(r.memory, q.defaults.memory);
        assert_eq!(r.pods, Some(30));
        let greedy = PlanResources {
            cpu: Some("64".into()),
            secrets: Some(10_000),
            ..Default::default()
        };
        let e = effective_resources(Some(&greedy), &q).unwrap_err();
        assert!(e.contains("cpu 64 (at most 32)"), "{e}");
        assert!(e.contains("secrets 10000 (at most 500)"), "{e}");
    }

    #[test]
    fn the_quota_holds_every_declared_resource() {
        let r = effective_resources(None, &QuotaPolicy::default()).unwrap();
        let q = resource_quota(&r);
        let hard = &q["spec"]["hard"];
        assert_eq!(hard["requests.cpu"], "2");
        assert_eq!(hard["limits.memory"], "4Gi");
        assert_eq!(hard["requests.storage"], "20Gi");
        assert_eq!(hard["pods"], "20");
        assert_eq!(hard["persistentvolumeclaims"], "10");
    }

    #[test]
    fn a_service_may_loosen_pod_security_only_up_to_the_ceiling() {
        let p = PodSecurityPolicy::default();
        assert_eq!(
            effective_pod_security(None, &p).unwrap(),
            PodSecurityLevel::Restricted
        );
        assert_eq!(
            effective_pod_security(Some(PodSecurityLevel::Baseline), &p).unwrap(),
            PodSecurityLevel::Baseline
        );
        let e = effective_pod_security(Some(PodSecurityLevel::Privileged), &p).unwrap_err();
        assert!(e.contains("at most baseline"), "{e}");
        let strict = PodSecurityPolicy {
            enforce: PodSecurityLevel::Baseline,
            ceiling: PodSecurityLevel::Restricted,
            ..p
        };
        // Asking for stricter than the platform is always fine.
        assert_eq!(
            effective_pod_security(Some(PodSecurityLevel::Restricted), &strict).unwrap(),
            PodSecurityLevel::Restricted
        );
        let labels = pod_security_labels(PodSecurityLevel::Baseline, &p);
        assert_eq!(labels["pod-security.kubernetes.io/enforce"], "baseline");
        assert_eq!(labels["pod-security.kubernetes.io/warn"], "restricted");
    }

    #[test]
    fn users_and_groups_are_bound_only_where_the_platform_lists_them() {
        let ops = vec![
            Operator {
                kind: OperatorKind::ServiceAccount,
                name: "ops".into(),
            },
            Operator {
                kind: OperatorKind::User,
                name: "alice".into(),
            },
            Operator {
                kind: OperatorKind::Group,
                name: "system:masters".into(),
            },
        ];
        let nameable = NameableSubjects::from_annotations(&BTreeMap::from([(
            OPERATOR_USERS_ANNOTATION.to_string(),
            " alice , bob".to_string(),
        )]));
        let s = operator_subjects(&ops, "isv", &nameable);
        assert_eq!(s.subjects.len(), 2);
        assert_eq!(s.subjects[0]["namespace"], "isv");
        assert_eq!(s.subjects[1]["name"], "alice");
        assert_eq!(s.refused.len(), 1);
        assert!(s.refused[0].contains("system:masters"));
        assert!(operators_binding(&[], "r").is_none());
    }

    #[test]
    fn sales_policy_decides_who_may_buy() {
        let public = SalesPolicy::default();
        assert!(may_buy(&public, "c", None, true).is_ok());
        let hidden = SalesPolicy {
            policy: SalesVisibility::Hidden,
            ..Default::default()
        };
        assert!(may_buy(&hidden, "c", None, true).is_err());
        assert!(may_buy(&hidden, "c", None, false).is_ok());
        let restricted = SalesPolicy {
            policy: SalesVisibility::Restricted,
            namespaces: vec!["gold".into()],
            namespace_selector: Some(
                serde_json::from_value(json!({"matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["gold", "silver"]}
                ]}))
                .unwrap(),
            ),
            ..Default::default()
        };
        assert!(may_buy(&restricted, "gold", None, true).is_ok());
        let silver = BTreeMap::from([("tier".to_string(), "silver".to_string())]);
        let bronze = BTreeMap::from([("tier".to_string(), "bronze".to_string())]);
        assert!(may_buy(&restricted, "x", Some(&silver), true).is_ok());
        let e = may_buy(&restricted, "x", Some(&bronze), true).unwrap_err();
        assert!(e.contains("namespace x"), "{e}");
        assert!(may_buy(&restricted, "x", None, false).is_err());
    }

    #[test]
    fn the_policy_refuses_unknown_fields_and_inconsistent_values() {
        assert_eq!(
            TenancyPolicy::parse("{}").unwrap(),
            TenancyPolicy::default()
        );
        assert!(TenancyPolicy::parse(r#"{"podSecurty": {}}"#).is_err());
        let e = TenancyPolicy::parse(
            r#"{"quota": {"defaults": {"cpu": "64"}, "ceilings": {"cpu": "8"}}}"#,
        )
        .unwrap_err();
        assert!(e.contains("exceed"), "{e}");
        assert!(TenancyPolicy::parse(r#"{"podSecurity": {"enforce": "baseline"}}"#).is_ok());
    }

    #[test]
    fn a_managed_namespace_gets_labels_quota_limits_network_policy_and_operators() {
        let subjects = vec![json!({"kind": "ServiceAccount", "name": "ops", "namespace": "isv"})];
        let input = ManagedInput {
            customer_namespace: "acme",
            product: "Service.isv.db",
            pod_security: None,
            plan_resources: None,
            operator_subjects: &subjects,
        };
        let p = managed_policy(&TenancyPolicy::default(), &input).unwrap();
        assert_eq!(p.labels["pod-security.kubernetes.io/enforce"], "restricted");
        assert_eq!(p.labels[CUSTOMER_NAMESPACE_LABEL], "acme");
        let kinds: Vec<&str> = p
            .objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "ResourceQuota",
                "LimitRange",
                "NetworkPolicy",
                "RoleBinding"
            ]
        );
        assert_eq!(p.objects[3]["roleRef"]["name"], "computenest-operator");
        let none = ManagedInput {
            operator_subjects: &[],
            ..input.clone()
        };
        let off = TenancyPolicy {
            network_policy: NetworkPolicyConfig {
                enabled: false,
                ..Default::default()
            },
            ..Default::default()
        };
        let p = managed_policy(&off, &none).unwrap();
        assert_eq!(p.objects.len(), 2);
        let privileged = ManagedInput {
            pod_security: Some(PodSecurityLevel::Privileged),
            ..input
        };
        let e = managed_policy(&TenancyPolicy::default(), &privileged).unwrap_err();
        assert_eq!(e.reason, "PodSecurityNotAllowed");
    }

    fn desired() -> crate::domain::provision::Desired {
        use crate::api::{Billing, ResourceOwner, Settlement};
        crate::domain::provision::Desired {
            scenario: crate::domain::scenario::Scenario::DirectFullyManaged,
            owner: ResourceOwner {
                party: Party::Isv,
                namespace: "isv".into(),
                target_namespace: "cn-acme-db-1".into(),
            },
            billing: Billing {
                resource_fees_paid_by: Party::Isv,
                service_fees_paid_to: Party::Isv,
                settlement: Settlement::Offline,
                orders: vec![],
            },
            managed_namespace_labels: Some(BTreeMap::from([
                ("computenest.dev/instance-uid".to_string(), "u1".to_string()),
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    "computenest-controller".to_string(),
                ),
            ])),
            objects: vec![
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}}),
            ],
            applied: vec![],
            logon_url: None,
            secret_name: "db-logon".into(),
            orders: vec![],
            digest: "d0".into(),
        }
    }

    #[test]
    fn the_policy_is_written_first_labelled_and_a_change_of_it_changes_the_digest() {
        let input = ManagedInput {
            customer_namespace: "acme",
            product: "Service.isv.db",
            pod_security: None,
            plan_resources: None,
            operator_subjects: &[],
        };
        let with = |policy: &TenancyPolicy| {
            let mut d = desired();
            add_to_desired(&mut d, managed_policy(policy, &input).unwrap()).unwrap();
            d
        };
        let d = with(&TenancyPolicy::default());
        assert_eq!(d.objects[0]["kind"], "ResourceQuota");
        assert_eq!(d.objects[0]["metadata"]["namespace"], "cn-acme-db-1");
        assert_eq!(
            d.objects[0]["metadata"]["labels"]["computenest.dev/instance-uid"],
            "u1"
        );
        assert_eq!(d.objects.last().unwrap()["kind"], "ConfigMap");
        assert_eq!(d.applied.len(), 3);
        let labels = d.managed_namespace_labels.as_ref().unwrap();
        assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
        // Same policy, same digest: nothing is written again.
        assert_eq!(with(&TenancyPolicy::default()).digest, d.digest);
        // The platform changes a default: every managed namespace is rewritten.
        let mut bigger = TenancyPolicy::default();
        bigger.quota.defaults.pods = Some(25);
        assert_ne!(with(&bigger).digest, d.digest);
        let mut baseline = TenancyPolicy::default();
        baseline.pod_security.enforce = PodSecurityLevel::Baseline;
        assert_ne!(with(&baseline).digest, d.digest);
        // A template object that takes a policy object's name is refused.
        let mut clash = desired();
        clash.objects.push(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": POLICY_OBJECT_NAME}}));
        let e = add_to_desired(
            &mut clash,
            managed_policy(&TenancyPolicy::default(), &input).unwrap(),
        )
        .unwrap_err();
        assert_eq!(e.reason, "ObjectConflict");
    }

    #[test]
    fn product_labels_are_valid_and_distinct_when_long() {
        assert_eq!(product_label("Service", "isv", "db"), "Service.isv.db");
        let a = product_label("DerivedService", "d", &"x".repeat(80));
        let b = product_label("DerivedService", "d", &format!("{}y", "x".repeat(80)));
        assert!(crate::domain::naming::is_label_value(&a), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn the_network_policy_admits_the_namespace_and_the_platform_ingress() {
        let np = network_policy(&NetworkPolicyConfig::default());
        let from = np["spec"]["ingress"][0]["from"].as_array().unwrap();
        assert_eq!(from.len(), 2);
        assert_eq!(
            from[1]["namespaceSelector"]["matchLabels"]["computenest.dev/ingress"],
            "true"
        );
    }
}
