//! Access requests: pure rules, no API calls.
//!
//! A customer's AccessRequest is first checked on its own (refused outright
//! for escalation, wildcards, cluster-scoped resources, malformed rules and
//! subjects that are not the customer's), then against the instance (only a
//! fully managed instance of the request's namespace qualifies), then narrowed
//! to what the owner allows (its AccessPolicy), and finally decided: by an
//! AccessApproval in the owner's namespace, or by the owner's Automatic policy.
//! The controller (controller/access.rs) turns the outcome into one Role and
//! one RoleBinding in the instance's managed namespace, or removes them.

use super::conditions::{condition, format_time};
use super::naming::short_hash;
use crate::api::{
    AccessApproval, AccessApprovalStatus, AccessDecision, AccessPhase, AccessPolicy, AccessRequest,
    AccessRequestSpec, AccessRule, AccessSubject, Approval, Condition, Party, ServiceInstance,
    SubjectKind,
};
use jiff::{SignedDuration, Timestamp};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::LazyLock;

/// Longest access when the owner's AccessPolicy sets no maximum.
pub const DEFAULT_MAX_DURATION_SECONDS: i64 = 3600;

/// Verbs that may be granted. Everything else is refused.
pub const ALLOWED_VERBS: [&str; 8] = [
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

/// Verbs that grant or assume permissions beyond the rule itself: never granted.
pub const ESCALATION_VERBS: [&str; 4] = ["escalate", "bind", "impersonate", "*"];

/// Resources that would let the subject grant further permissions: never granted.
pub const RBAC_RESOURCES: [&str; 4] = [
    "roles",
    "rolebindings",
    "clusterroles",
    "clusterrolebindings",
];

/// The RBAC API group: nothing in it is ever granted.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Well-known cluster-scoped resources, by API group and resource. A Role in
/// a namespace cannot grant these (except `namespaces`, which would expose
/// the managed namespace object itself); asking for them is refused so that
/// the customer learns at once that such access is not on offer.
pub const CLUSTER_SCOPED: [(&str, &str); 33] = [
    ("", "namespaces"),
    ("", "nodes"),
    ("", "persistentvolumes"),
    ("", "componentstatuses"),
    ("rbac.authorization.k8s.io", "clusterroles"),
    ("rbac.authorization.k8s.io", "clusterrolebindings"),
    ("storage.k8s.io", "storageclasses"),
    ("storage.k8s.io", "csidrivers"),
    ("storage.k8s.io", "csinodes"),
    ("storage.k8s.io", "volumeattachments"),
    ("storage.k8s.io", "volumeattributesclasses"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
    ("apiregistration.k8s.io", "apiservices"),
    (
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
    ),
    (
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
    ),
    (
        "admissionregistration.k8s.io",
        "validatingadmissionpolicies",
    ),
    (
        "admissionregistration.k8s.io",
        "validatingadmissionpolicybindings",
    ),
    ("certificates.k8s.io", "certificatesigningrequests"),
    ("certificates.k8s.io", "clustertrustbundles"),
    ("scheduling.k8s.io", "priorityclasses"),
    ("node.k8s.io", "runtimeclasses"),
    ("networking.k8s.io", "ingressclasses"),
    ("networking.k8s.io", "ipaddresses"),
    ("networking.k8s.io", "servicecidrs"),
    ("flowcontrol.apiserver.k8s.io", "flowschemas"),
    (
        "flowcontrol.apiserver.k8s.io",
        "prioritylevelconfigurations",
    ),
    ("authentication.k8s.io", "tokenreviews"),
    ("authentication.k8s.io", "selfsubjectreviews"),
    ("authorization.k8s.io", "subjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectrulesreviews"),
    ("resource.k8s.io", "deviceclasses"),
    ("resource.k8s.io", "resourceslices"),
];

const READ: &[&str] = &["get", "list", "watch"];
const SCALE: &[&str] = &["get", "update", "patch"];
const WRITE: &[&str] = &["create", "update", "patch"];

/// One line of a built-in permission table: API group, resources, verbs.
pub type TableRow = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
);

/// The built-in safe set: what may be granted without the owner naming it,
/// because it reaches no Secret and runs nothing of the subject's choosing.
/// Reading the usual namespaced objects except Secrets (Kubernetes' own
/// `view` role, roughly), pod logs, deleting pods (their controller
/// re-creates them from the owner's template) and scaling. Everything else
/// (writes, Secrets, custom resources, which may run pods) is granted only
/// where the owner's AccessPolicy names it.
pub const SAFE: &[TableRow] = &[
    (
        "",
        &[
            "pods",
            "pods/log",
            "pods/status",
            "services",
            "services/status",
            "endpoints",
            "configmaps",
            "persistentvolumeclaims",
            "persistentvolumeclaims/status",
            "events",
            "serviceaccounts",
            "replicationcontrollers",
            "replicationcontrollers/status",
            "podtemplates",
            "limitranges",
            "resourcequotas",
            "resourcequotas/status",
        ],
        READ,
    ),
    ("", &["pods"], &["delete", "deletecollection"]),
    ("", &["replicationcontrollers/scale"], SCALE),
    (
        "apps",
        &[
            "deployments",
            "deployments/status",
            "replicasets",
            "replicasets/status",
            "statefulsets",
            "statefulsets/status",
            "daemonsets",
            "daemonsets/status",
            "controllerrevisions",
        ],
        READ,
    ),
    (
        "apps",
        &[
            "deployments/scale",
            "replicasets/scale",
            "statefulsets/scale",
        ],
        SCALE,
    ),
    (
        "batch",
        &["jobs", "jobs/status", "cronjobs", "cronjobs/status"],
        READ,
    ),
    (
        "autoscaling",
        &[
            "horizontalpodautoscalers",
            "horizontalpodautoscalers/status",
        ],
        READ,
    ),
    (
        "policy",
        &["poddisruptionbudgets", "poddisruptionbudgets/status"],
        READ,
    ),
    (
        "networking.k8s.io",
        &["ingresses", "ingresses/status", "networkpolicies"],
        READ,
    ),
    ("discovery.k8s.io", &["endpointslices"], READ),
    ("events.k8s.io", &["events"], READ),
];

/// What the owner's `allowSecrets: true` adds: Secrets themselves, getting
/// inside running pods (and so their mounted Secrets), minting
/// ServiceAccount tokens, and creating or changing the built-in workloads
/// (which can mount any Secret and run as any ServiceAccount of the
/// namespace). Custom resources that run pods are not here: the owner names
/// them in `allowedRules`.
pub const SECRETS: &[TableRow] = &[
    ("", &["secrets"], &ALLOWED_VERBS),
    (
        "",
        &["pods/exec", "pods/attach", "pods/portforward"],
        &["get", "create"],
    ),
    (
        "",
        &["pods/proxy", "services/proxy"],
        &["get", "create", "update", "patch", "delete"],
    ),
    (
        "",
        &["pods/ephemeralcontainers"],
        &["get", "update", "patch"],
    ),
    ("", &["serviceaccounts/token"], &["create"]),
    (
        "",
        &["pods", "replicationcontrollers", "podtemplates"],
        WRITE,
    ),
    (
        "apps",
        &["deployments", "replicasets", "statefulsets", "daemonsets"],
        WRITE,
    ),
    ("batch", &["jobs", "cronjobs"], WRITE),
];

/// Resources whose writes are never granted, whoever allows them: they let
/// the subject point a Service at any address, including other namespaces'
/// pods and the cluster's own endpoints (CVE-2021-25740).
pub const ENDPOINTS: [(&str, &str); 2] =
    [("", "endpoints"), ("discovery.k8s.io", "endpointslices")];

/// Verbs that change objects.
const WRITE_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

/// One grantable permission: API group, resource (with subresource), verb.
pub type Permission = (String, String, String);

/// A set of exact permissions (no wildcards: `*` matches only `*`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Permissions(BTreeSet<Permission>);

impl Permissions {
    /// Every (group, resource, verb) a list of rules names.
    pub fn of_rules(rules: &[AccessRule]) -> Self {
        let mut set = BTreeSet::new();
        for r in rules {
            for g in &r.api_groups {
                for res in &r.resources {
                    for v in &r.verbs {
                        set.insert((g.clone(), res.clone(), v.clone()));
                    }
                }
            }
        }
        Permissions(set)
    }
    /// Every permission of a built-in table.
    pub fn of_table(table: &[TableRow]) -> Self {
        let mut set = BTreeSet::new();
        for (g, resources, verbs) in table {
            for res in *resources {
                for v in *verbs {
                    set.insert((g.to_string(), res.to_string(), v.to_string()));
                }
            }
        }
        Permissions(set)
    }
    /// Whether the set holds this permission.
    pub fn contains(&self, group: &str, resource: &str, verb: &str) -> bool {
        self.0
            .contains(&(group.to_string(), resource.to_string(), verb.to_string()))
    }
    /// How many permissions.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The set as RBAC rules: one rule per API group and verb set, sorted.
    pub fn to_rules(&self) -> Vec<AccessRule> {
        merge(
            self.0
                .iter()
                .map(|(g, r, v)| (g.as_str(), r.as_str(), v.as_str())),
        )
    }
}

/// Groups (group, resource, verb) triples into rules: resources with the
/// same verbs in the same group share a rule. Sorted, duplicates collapse.
fn merge<'a>(triples: impl Iterator<Item = (&'a str, &'a str, &'a str)>) -> Vec<AccessRule> {
    // group -> resource -> verbs
    let mut keep: BTreeMap<&str, BTreeMap<&str, BTreeSet<&str>>> = BTreeMap::new();
    for (g, r, v) in triples {
        keep.entry(g).or_default().entry(r).or_default().insert(v);
    }
    // (group, verbs) -> resources
    let mut merged: BTreeMap<(&str, Vec<&str>), Vec<&str>> = BTreeMap::new();
    for (group, resources) in keep {
        for (resource, verbs) in resources {
            merged
                .entry((group, verbs.into_iter().collect()))
                .or_default()
                .push(resource);
        }
    }
    merged
        .into_iter()
        .map(|((group, verbs), resources)| AccessRule {
            api_groups: vec![group.to_string()],
            resources: resources.into_iter().map(String::from).collect(),
            verbs: verbs.into_iter().map(String::from).collect(),
        })
        .collect()
}

static SAFE_SET: LazyLock<Permissions> = LazyLock::new(|| Permissions::of_table(SAFE));
static SECRETS_SET: LazyLock<Permissions> = LazyLock::new(|| Permissions::of_table(SECRETS));

/// What the controller may grant when the platform says nothing
/// (`--grantable-rules` unset): the built-in safe set. The chart's default
/// `access.grantableRules` is the same list (a unit test keeps them equal).
pub fn default_grantable_rules() -> Vec<AccessRule> {
    SAFE_SET.to_rules()
}

/// Reads and checks the platform's grantable set (`--grantable-rules`): a
/// JSON or YAML list of RBAC rules with apiGroups, resources and verbs only
/// (no resourceNames, no nonResourceURLs), naming every permission exactly.
/// Refused: wildcards, escalation verbs, RBAC objects, cluster-scoped
/// resources, writes to endpoints, unknown verbs.
pub fn parse_grantable_rules(text: &str) -> Result<Vec<AccessRule>, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Rule {
        api_groups: Vec<String>,
        resources: Vec<String>,
        verbs: Vec<String>,
    }
    let rules: Vec<Rule> = serde_yaml::from_str(text)
        .map_err(|e| format!("not a list of rules with apiGroups, resources and verbs: {e}"))?;
    let rules: Vec<AccessRule> = rules
        .into_iter()
        .map(|r| AccessRule {
            api_groups: r.api_groups,
            resources: r.resources,
            verbs: r.verbs,
        })
        .collect();
    check_rules(&rules).map_err(|r| format!("{}: {}", r.reason, r.message))?;
    Ok(rules)
}
/// Labels and annotations on the Role and RoleBinding of a request.
pub mod labels {
    /// Namespace of the AccessRequest.
    pub const REQUEST_NAMESPACE: &str = "computenest.dev/access-request-namespace";
    /// Name of the AccessRequest (at most 63 characters of it).
    pub const REQUEST_NAME: &str = "computenest.dev/access-request-name";
    /// UID of the AccessRequest: the orphan sweep matches on it.
    pub const REQUEST_UID: &str = "computenest.dev/access-request-uid";
    /// Annotation: the full name of the AccessRequest (the label may be cut).
    pub const REQUEST: &str = "computenest.dev/access-request";
    /// Annotation: when the access ends.
    pub const EXPIRES_AT: &str = "computenest.dev/expires-at";
    /// Annotation: who decided.
    pub const DECIDED_BY: &str = "computenest.dev/decided-by";
}

/// Why a request is refused outright, whatever the owner decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Condition reason.
    pub reason: &'static str,
    /// What is wrong and what to do instead.
    pub message: String,
}

fn split_resource(resource: &str) -> (&str, Option<&str>) {
    match resource.split_once('/') {
        Some((base, sub)) => (base, Some(sub)),
        None => (resource, None),
    }
}

fn valid_resource(resource: &str) -> bool {
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    };
    match split_resource(resource) {
        (base, None) => ok(base),
        (base, Some(sub)) => ok(base) && ok(sub),
    }
}

fn valid_group(group: &str) -> bool {
    group.is_empty()
        || (group.len() <= 253
            && group
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'))
}

/// `pods`, `deployments.apps`: a resource as kubectl names it.
fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

fn joined(items: &BTreeSet<String>) -> String {
    items.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// Checks the subject: it must be the customer's own. A ServiceAccount must
/// live in the request's namespace; `system:` users and groups are refused
/// (`system:authenticated` is everyone, `system:serviceaccount:<ns>:<name>` is
/// another namespace's ServiceAccount in disguise).
pub fn check_subject(subject: &AccessSubject, customer_ns: &str) -> Result<(), Refusal> {
    match subject.kind {
        SubjectKind::ServiceAccount => {
            let ns = subject.namespace.as_deref().unwrap_or_default();
            if ns != customer_ns {
                return Err(Refusal {
                    reason: "InvalidSubject",
                    message: format!(
                        "ServiceAccount {ns}/{} is not in this namespace ({customer_ns}): access is granted only to the customer's own subjects; name a ServiceAccount of namespace {customer_ns}",
                        subject.name
                    ),
                });
            }
        }
        SubjectKind::User | SubjectKind::Group => {
            if subject.name.starts_with("system:") {
                return Err(Refusal {
                    reason: "InvalidSubject",
                    message: format!(
                        "{:?} {} is a Kubernetes system identity, never a customer's own (system:authenticated is every user, system:serviceaccount:... is a ServiceAccount of some namespace); name a user or group of yours, or a ServiceAccount with kind ServiceAccount",
                        subject.kind, subject.name
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Checks the rules on their own: escalation (verbs escalate, bind,
/// impersonate, `*`; wildcards; RBAC resources) first, then writes to
/// endpoints and endpointslices, then cluster-scoped resources, then
/// malformed or unknown verbs, resources and groups. Every offending item of
/// the first class found is named.
pub fn check_rules(rules: &[AccessRule]) -> Result<(), Refusal> {
    let mut offences = Offences::default();
    for rule in rules {
        offences.note_rule(rule);
    }
    offences.refusal()
}

/// What is wrong with a list of rules, by class; each item as a message
/// names it, sorted.
#[derive(Default)]
struct Offences {
    escalation: BTreeSet<String>,
    endpoints: BTreeSet<String>,
    cluster: BTreeSet<String>,
    invalid: BTreeSet<String>,
}

impl Offences {
    /// Notes what is wrong with one rule: its verbs, groups and resources.
    fn note_rule(&mut self, rule: &AccessRule) {
        for verb in &rule.verbs {
            if ESCALATION_VERBS.contains(&verb.as_str()) {
                self.escalation.insert(format!("verb '{verb}'"));
            } else if !ALLOWED_VERBS.contains(&verb.as_str()) {
                self.invalid.insert(format!("verb '{verb}'"));
            }
        }
        for group in &rule.api_groups {
            if group.contains('*') || group == RBAC_GROUP {
                self.escalation.insert(format!("API group '{group}'"));
            } else if !valid_group(group) {
                self.invalid.insert(format!("API group '{group}'"));
            }
        }
        for resource in &rule.resources {
            let (base, _) = split_resource(resource);
            if resource.contains('*') || RBAC_RESOURCES.contains(&base) {
                self.escalation.insert(format!("resource '{resource}'"));
            } else if !valid_resource(resource) {
                self.invalid.insert(format!("resource '{resource}'"));
            } else {
                self.note_scope(rule, resource);
            }
        }
    }

    /// Notes a well-formed resource of a rule that is cluster-scoped, or an
    /// endpoints resource the rule would write, in any of the rule's groups.
    fn note_scope(&mut self, rule: &AccessRule, resource: &str) {
        let (base, _) = split_resource(resource);
        for group in &rule.api_groups {
            if CLUSTER_SCOPED.contains(&(group.as_str(), base)) {
                self.cluster.insert(qualified(group, resource));
            }
            if ENDPOINTS.contains(&(group.as_str(), base)) {
                for verb in &rule.verbs {
                    if WRITE_VERBS.contains(&verb.as_str()) {
                        self.endpoints
                            .insert(format!("{verb} {}", qualified(group, resource)));
                    }
                }
            }
        }
    }

    /// The refusal for the first class with an offence, in the order of
    /// [`check_rules`].
    fn refusal(&self) -> Result<(), Refusal> {
        if !self.escalation.is_empty() {
            return Err(Refusal {
                reason: "EscalationRefused",
                message: format!(
                    "never granted: {}. Escalation verbs (escalate, bind, impersonate, '*'), wildcards and RBAC objects would let the subject reach beyond what is asked for or grant further; name the resources and verbs you need",
                    joined(&self.escalation)
                ),
            });
        }
        if !self.endpoints.is_empty() {
            return Err(Refusal {
                reason: "EndpointsWriteRefused",
                message: format!(
                    "never granted: {}. Writing endpoints or endpointslices lets a Service point at any address, other namespaces' pods included (CVE-2021-25740); reading them is fine",
                    joined(&self.endpoints)
                ),
            });
        }
        if !self.cluster.is_empty() {
            return Err(Refusal {
                reason: "ClusterScopedRefused",
                message: format!(
                    "cluster-scoped resources are never granted: {}. Access is limited to the objects in the instance's namespace",
                    joined(&self.cluster)
                ),
            });
        }
        if !self.invalid.is_empty() {
            return Err(Refusal {
                reason: "InvalidRule",
                message: format!(
                    "not understood: {}. Verbs are {}; resources and API groups are lower-case names such as pods, pods/log or apps",
                    joined(&self.invalid),
                    ALLOWED_VERBS.join(", ")
                ),
            });
        }
        Ok(())
    }
}

/// The rules narrowed to what may be granted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Narrowed {
    /// What may be granted: one rule per API group and verb set, sorted.
    pub rules: Vec<AccessRule>,
    /// Asked for, allowed by the owner, but outside what the platform lets
    /// the controller grant (`verb resource`), sorted.
    pub not_grantable: Vec<String>,
    /// Asked for and not allowed by the owner's AccessPolicy, sorted.
    pub not_allowed: Vec<String>,
}

impl Narrowed {
    /// What was left out and why, for a message: empty when nothing was.
    pub fn left_out(&self) -> String {
        let mut s = String::new();
        if !self.not_grantable.is_empty() {
            s.push_str(&format!(
                "; left out, because the platform does not let the controller grant them (its grantable set, the chart's access.grantableRules): {}",
                self.not_grantable.join(", ")
            ));
        }
        if !self.not_allowed.is_empty() {
            s.push_str(&format!(
                "; left out, because the owner's AccessPolicy does not allow them (built in are reads of the usual objects except Secrets, pod logs, deleting pods and scaling; Secrets, exec and workload writes need allowSecrets; anything else, custom resources included, must be named in allowedRules): {}",
                self.not_allowed.join(", ")
            ));
        }
        s
    }
}

/// What the owner allows: the built-in safe set, the Secret-reaching set
/// with `allowSecrets`, and what `allowedRules` names.
pub fn owner_allows(policy: &AccessPolicy, group: &str, resource: &str, verb: &str) -> bool {
    SAFE_SET.contains(group, resource, verb)
        || (policy.allow_secrets && SECRETS_SET.contains(group, resource, verb))
        || policy.allowed_rules.iter().any(|r| {
            r.api_groups.iter().any(|g| g == group)
                && r.resources.iter().any(|x| x == resource)
                && r.verbs.iter().any(|v| v == verb)
        })
}

/// Narrows checked rules to what may be granted: never more than asked
/// (every granted verb/resource pair was asked for), only what the owner
/// allows (an allow-list: [`owner_allows`]), and only what the platform lets
/// the controller grant (`grantable`, the same permissions the controller's
/// own RBAC holds, so that the API server never has to refuse a Role as an
/// escalation). Duplicates collapse.
pub fn narrow(rules: &[AccessRule], policy: &AccessPolicy, grantable: &Permissions) -> Narrowed {
    let mut keep = Vec::new();
    let mut not_grantable = BTreeSet::new();
    let mut not_allowed = BTreeSet::new();
    for rule in rules {
        for group in &rule.api_groups {
            for resource in &rule.resources {
                for verb in &rule.verbs {
                    if !grantable.contains(group, resource, verb) {
                        not_grantable.insert(format!("{verb} {}", qualified(group, resource)));
                    } else if !owner_allows(policy, group, resource, verb) {
                        not_allowed.insert(format!("{verb} {}", qualified(group, resource)));
                    } else {
                        keep.push((group.as_str(), resource.as_str(), verb.as_str()));
                    }
                }
            }
        }
    }
    Narrowed {
        rules: merge(keep.into_iter()),
        not_grantable: not_grantable.into_iter().collect(),
        not_allowed: not_allowed.into_iter().collect(),
    }
}

/// `get, list pods, services; get deployments.apps`
pub fn describe_rules(rules: &[AccessRule]) -> String {
    rules
        .iter()
        .map(|r| {
            let resources: Vec<String> = r
                .api_groups
                .iter()
                .flat_map(|g| r.resources.iter().map(move |res| qualified(g, res)))
                .collect();
            format!("{} {}", r.verbs.join(", "), resources.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `User alice`, `ServiceAccount cust/bot`
pub fn describe_subject(s: &AccessSubject) -> String {
    match (s.kind, &s.namespace) {
        (SubjectKind::ServiceAccount, Some(ns)) => format!("ServiceAccount {ns}/{}", s.name),
        (kind, _) => format!("{kind:?} {}", s.name),
    }
}

/// The longest access the owner allows, in seconds.
pub fn max_duration(policy: &AccessPolicy) -> i64 {
    policy
        .max_duration_seconds
        .unwrap_or(DEFAULT_MAX_DURATION_SECONDS)
        .max(1)
}

/// The access granted: what was asked, bounded by the owner's maximum.
pub fn granted_duration(requested: i64, policy: &AccessPolicy) -> i64 {
    requested.clamp(1, max_duration(policy))
}

/// Name of the Role and the RoleBinding of a request: from its name (for
/// people) and its UID (so that a re-created request of the same name never
/// shares, or removes, the grant of the old one).
pub fn grant_name(request_name: &str, uid: &str) -> String {
    let end = request_name
        .char_indices()
        .nth(40)
        .map(|(i, _)| i)
        .unwrap_or(request_name.len());
    format!(
        "computenest-access-{}-{}",
        request_name[..end].trim_end_matches(['-', '.']),
        short_hash(uid, 10)
    )
}

/// What the controller knows of the instance a request names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstanceState {
    /// No such ServiceInstance in the request's namespace.
    Missing,
    /// Being deleted: its managed namespace goes with everything in it.
    Deleting,
    /// Not deployed yet: owner and namespace unknown.
    NotReady,
    /// Customer-owned: the resources are in the customer's own namespace.
    Private,
    /// Fully managed, and suspended because its term ended: no access is
    /// granted (and any granted is removed) until it is renewed.
    Suspended {
        /// The managed namespace its grants were in.
        target_namespace: String,
    },
    /// Fully managed: the resources are in a namespace of the owner's.
    Managed {
        /// Party owning the resources.
        owner_party: Party,
        /// Its namespace: the only place an approval counts.
        owner_namespace: String,
        /// The managed namespace the Role goes into.
        target_namespace: String,
        /// Whether that namespace exists (for this instance) and is not terminating.
        namespace_ready: bool,
    },
}

/// Where an instance stands, from its status (written by the controller only).
pub fn instance_state(inst: Option<&ServiceInstance>) -> InstanceState {
    let Some(inst) = inst else {
        return InstanceState::Missing;
    };
    if inst.metadata.deletion_timestamp.is_some() {
        return InstanceState::Deleting;
    }
    let status = inst.status.as_ref();
    let ns = inst.metadata.namespace.as_deref().unwrap_or_default();
    let suspended = status
        .and_then(|s| s.commerce.as_ref())
        .is_some_and(|c| c.biz_status == crate::api::BizStatus::Suspended);
    match status.and_then(|s| s.owner.as_ref()) {
        Some(o) if suspended => InstanceState::Suspended {
            target_namespace: o.target_namespace.clone(),
        },
        Some(o) if o.party == Party::Customer || o.target_namespace == ns => InstanceState::Private,
        Some(o) => InstanceState::Managed {
            owner_party: o.party,
            owner_namespace: o.namespace.clone(),
            target_namespace: o.target_namespace.clone(),
            namespace_ready: false,
        },
        None => match status.and_then(|s| s.scenario.as_deref()) {
            Some("Scenario1") | Some("DirectPrivate") => InstanceState::Private,
            _ => InstanceState::NotReady,
        },
    }
}

/// Digest of what a request asks for: its instance, subject, rules and
/// duration (`sha256:` and 32 hex digits). An approval names it, with the
/// request's UID, so that it approves exactly what its author read.
pub fn request_digest(spec: &AccessRequestSpec) -> String {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Asked<'a> {
        instance_name: &'a str,
        subject: &'a AccessSubject,
        rules: &'a [AccessRule],
        duration_seconds: i64,
    }
    let json = serde_json::to_string(&Asked {
        instance_name: &spec.instance_name,
        subject: &spec.subject,
        rules: &spec.rules,
        duration_seconds: spec.duration_seconds,
    })
    .unwrap_or_default();
    format!("sha256:{}", short_hash(&json, 32))
}

/// Whether an approval, by where it was written and what it names, can
/// decide a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// It counts.
    Effective,
    /// Written outside the owner's namespace: no effect.
    NotOwner {
        /// The namespace that could decide.
        owner_namespace: String,
    },
    /// An unpinned rejection written before the request existed (for an
    /// earlier request of that name).
    WrittenBeforeRequest,
    /// Approved without naming the request (spec.requestUID and
    /// spec.requestDigest): no effect.
    NotPinned,
    /// Names another request: a different UID (the request was deleted and
    /// re-created) or a different digest.
    OtherRequest {
        /// `requestUID` or `requestDigest`.
        field: &'static str,
        /// What the approval names.
        pinned: String,
    },
}

/// Judges an approval: it counts only in the owner's namespace. An Approved
/// decision counts only if it names this request by UID and digest (so an
/// approval never carries over to another request of the same name, or to
/// wider rules); a Rejected one counts if it names this request, or names
/// none and is not older than the request.
pub fn standing(a: &ApprovalView<'_>, req: &RequestView<'_>, owner_ns: &str) -> Standing {
    if a.namespace != owner_ns {
        return Standing::NotOwner {
            owner_namespace: owner_ns.to_string(),
        };
    }
    if let Some(uid) = a.request_uid
        && Some(uid) != req.uid
    {
        return Standing::OtherRequest {
            field: "requestUID",
            pinned: uid.to_string(),
        };
    }
    if let Some(digest) = a.request_digest
        && digest != req.digest
    {
        return Standing::OtherRequest {
            field: "requestDigest",
            pinned: digest.to_string(),
        };
    }
    let pinned = a.request_uid.is_some() && a.request_digest.is_some();
    match a.decision {
        AccessDecision::Approved if !pinned => Standing::NotPinned,
        AccessDecision::Approved => Standing::Effective,
        AccessDecision::Rejected => match (a.created, req.created) {
            (Some(c), Some(r)) if c < r && a.request_uid.is_none() => {
                Standing::WrittenBeforeRequest
            }
            _ => Standing::Effective,
        },
    }
}

fn ignored_note(approval_ns: &str, request_ns: &str, owner_ns: &str) -> String {
    if approval_ns == request_ns {
        format!(
            "the customer cannot approve its own request; only the owner's namespace {owner_ns} can decide"
        )
    } else {
        format!(
            "namespace {approval_ns} does not own the instance's resources; only the owner's namespace {owner_ns} can decide"
        )
    }
}

/// An approval, as the decision sees it.
#[derive(Clone, Debug)]
pub struct ApprovalView<'a> {
    /// Its namespace.
    pub namespace: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Its creationTimestamp.
    pub created: Option<Timestamp>,
    /// Approved or Rejected.
    pub decision: AccessDecision,
    /// The owner's reason.
    pub reason: Option<&'a str>,
    /// spec.requestUID.
    pub request_uid: Option<&'a str>,
    /// spec.requestDigest.
    pub request_digest: Option<&'a str>,
}

impl<'a> ApprovalView<'a> {
    /// View of an AccessApproval object.
    pub fn of(a: &'a AccessApproval) -> Self {
        ApprovalView {
            namespace: a.metadata.namespace.as_deref().unwrap_or_default(),
            name: a.metadata.name.as_deref().unwrap_or_default(),
            created: a.metadata.creation_timestamp.as_ref().map(|t| t.0),
            decision: a.spec.decision,
            reason: a.spec.reason.as_deref(),
            request_uid: a.spec.request_uid.as_deref(),
            request_digest: a.spec.request_digest.as_deref(),
        }
    }
    fn label(&self) -> String {
        format!("AccessApproval {}/{}", self.namespace, self.name)
    }
}

/// A request, as the decision sees it.
#[derive(Clone, Debug)]
pub struct RequestView<'a> {
    /// Its namespace (the customer's).
    pub namespace: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Its UID.
    pub uid: Option<&'a str>,
    /// Its digest ([`request_digest`]).
    pub digest: String,
    /// Its creationTimestamp.
    pub created: Option<Timestamp>,
    /// What is asked for.
    pub spec: &'a AccessRequestSpec,
    /// status.expiresAt: set at the first grant, never moved.
    pub expires_at: Option<Timestamp>,
    /// status.decidedBy, kept in the final phases for the record.
    pub decided_by: Option<&'a str>,
}

impl<'a> RequestView<'a> {
    /// View of an AccessRequest object.
    pub fn of(r: &'a AccessRequest) -> Self {
        let status = r.status.as_ref();
        RequestView {
            namespace: r.metadata.namespace.as_deref().unwrap_or_default(),
            name: r.metadata.name.as_deref().unwrap_or_default(),
            uid: r.metadata.uid.as_deref(),
            digest: request_digest(&r.spec),
            created: r.metadata.creation_timestamp.as_ref().map(|t| t.0),
            spec: &r.spec,
            expires_at: status
                .and_then(|s| s.expires_at.as_deref())
                .and_then(|t| t.parse().ok()),
            decided_by: status.and_then(|s| s.decided_by.as_deref()),
        }
    }
    /// `requestUID <uid>, requestDigest <digest>`: how an approval names it.
    pub fn pins(&self) -> String {
        format!(
            "requestUID {}, requestDigest {}",
            self.uid.unwrap_or_default(),
            self.digest
        )
    }
}

/// Why an approval that names another request has no effect, for messages.
fn other_request_note(field: &str, pinned: &str, req: &RequestView<'_>) -> String {
    if field == "requestUID" {
        format!(
            "it approves the request with UID {pinned}, and AccessRequest {}/{} is another one (UID {}): it was deleted and re-created since the owner read it",
            req.namespace,
            req.name,
            req.uid.unwrap_or_default()
        )
    } else {
        format!(
            "it approves what a request with digest {pinned} asked for, and AccessRequest {}/{} asks for something else (digest {})",
            req.namespace, req.name, req.digest
        )
    }
}

/// What to have in the managed namespace while a request is Active.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The managed namespace.
    pub namespace: String,
    /// The narrowed rules.
    pub rules: Vec<AccessRule>,
    /// When it ends.
    pub expires_at: Timestamp,
}

/// The decision on a request at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Phase for status.
    pub phase: AccessPhase,
    /// Ready condition status (True only while Active).
    pub ready: bool,
    /// Ready condition reason.
    pub reason: &'static str,
    /// Ready condition message.
    pub message: String,
    /// The Role and RoleBinding to have; None means: have none.
    pub grant: Option<Grant>,
    /// status.expiresAt.
    pub expires_at: Option<Timestamp>,
    /// status.decidedBy.
    pub decided_by: Option<String>,
    /// When to look again (the expiry), if nothing else changes.
    pub requeue_at: Option<Timestamp>,
}

impl Outcome {
    fn not_granted(
        phase: AccessPhase,
        reason: &'static str,
        message: String,
        req: &RequestView<'_>,
    ) -> Self {
        Outcome {
            phase,
            ready: false,
            reason,
            message,
            grant: None,
            expires_at: req.expires_at,
            decided_by: None,
            requeue_at: None,
        }
    }
}

/// Decides a request: pure, from what the caches hold at `now`.
///
/// Order: withdrawn; expired (final once the first grant's time is up);
/// refused outright (subject, rules); the instance (must exist here and be
/// fully managed); narrowed by the policy; then the owner's decision
/// (a Rejected approval wins over an Approved one; then Automatic policy).
pub fn decide(
    req: &RequestView<'_>,
    instance: &InstanceState,
    policy: &AccessPolicy,
    grantable: &Permissions,
    approvals: &[ApprovalView<'_>],
    now: Timestamp,
) -> Outcome {
    let now = Timestamp::from_second(now.as_second()).unwrap_or(now);
    let (ControlFlow::Break(outcome) | ControlFlow::Continue(outcome)) =
        decide_in_stages(req, instance, policy, grantable, approvals, now);
    outcome
}

/// The stages of [`decide`], in its order: each one either lets the request
/// on to the next (Continue) or settles it (Break, with the outcome).
fn decide_in_stages(
    req: &RequestView<'_>,
    instance: &InstanceState,
    policy: &AccessPolicy,
    grantable: &Permissions,
    approvals: &[ApprovalView<'_>],
    now: Timestamp,
) -> ControlFlow<Outcome, Outcome> {
    ended(req, now)?;
    refused(req)?;
    let managed = managed_instance(req, instance)?;
    let narrowed = grantable_part(req, policy, grantable)?;
    let decided_by = owner_decision(req, &managed, policy, approvals)?;
    namespace_waited_for(req, &managed, &decided_by)?;
    ControlFlow::Continue(active(req, policy, &managed, narrowed, decided_by, now))
}

/// Settles a request that is over: withdrawn by the customer, or past the
/// expiry of its first grant (final: the clock is never restarted).
fn ended(req: &RequestView<'_>, now: Timestamp) -> ControlFlow<Outcome> {
    if req.spec.withdrawn {
        return ControlFlow::Break(Outcome {
            decided_by: req.decided_by.map(String::from),
            ..Outcome::not_granted(
                AccessPhase::Withdrawn,
                "Withdrawn",
                "withdrawn by the customer; any access granted is removed".into(),
                req,
            )
        });
    }
    if let Some(exp) = req.expires_at
        && exp <= now
    {
        return ControlFlow::Break(Outcome {
            decided_by: req.decided_by.map(String::from),
            ..Outcome::not_granted(
                AccessPhase::Expired,
                "Expired",
                format!(
                    "the access ended at {}; the permissions are removed. Write a new AccessRequest for more time",
                    format_time(exp)
                ),
                req,
            )
        });
    }
    ControlFlow::Continue(())
}

/// Rejects a request whose subject or rules are refused outright, whatever
/// the owner decides.
fn refused(req: &RequestView<'_>) -> ControlFlow<Outcome> {
    let spec = req.spec;
    match check_subject(&spec.subject, req.namespace).and_then(|_| check_rules(&spec.rules)) {
        Ok(()) => ControlFlow::Continue(()),
        Err(r) => ControlFlow::Break(Outcome::not_granted(
            AccessPhase::Rejected,
            r.reason,
            r.message,
            req,
        )),
    }
}

/// A fully managed instance, as the decision needs it.
struct Managed<'a> {
    /// Party owning the resources.
    owner_party: Party,
    /// Its namespace: the only place an approval counts.
    owner_namespace: &'a str,
    /// The managed namespace the Role goes into.
    target_namespace: &'a str,
    /// Whether that namespace is there to write into.
    namespace_ready: bool,
}

/// Lets on only a request for a fully managed instance of its own
/// namespace: any other instance state waits (missing, deleting, not
/// deployed) or is refused (private).
fn managed_instance<'a>(
    req: &RequestView<'_>,
    instance: &'a InstanceState,
) -> ControlFlow<Outcome, Managed<'a>> {
    let name = &req.spec.instance_name;
    let (phase, reason, message) = match instance {
        InstanceState::Managed {
            owner_party,
            owner_namespace,
            target_namespace,
            namespace_ready,
        } => {
            return ControlFlow::Continue(Managed {
                owner_party: *owner_party,
                owner_namespace,
                target_namespace,
                namespace_ready: *namespace_ready,
            });
        }
        InstanceState::Missing => (
            AccessPhase::Pending,
            "InstanceNotFound",
            format!(
                "there is no ServiceInstance {name} in namespace {}: access can only be asked for an instance of the request's own namespace",
                req.namespace
            ),
        ),
        InstanceState::Deleting => (
            AccessPhase::Pending,
            "InstanceDeleting",
            format!(
                "ServiceInstance {name} is being deleted; its managed namespace goes with everything in it"
            ),
        ),
        InstanceState::NotReady => (
            AccessPhase::Pending,
            "InstanceNotReady",
            format!(
                "ServiceInstance {name} is not deployed yet; waiting to learn who owns its resources"
            ),
        ),
        InstanceState::Suspended { .. } => (
            AccessPhase::Pending,
            "InstanceSuspended",
            format!(
                "ServiceInstance {name} is suspended: its term ended; no access is granted (and any granted is removed) until it is renewed"
            ),
        ),
        InstanceState::Private => (
            AccessPhase::Rejected,
            "NotManaged",
            format!(
                "ServiceInstance {name} is private: its resources are in this namespace ({}) and already belong to you; manage access to them with this namespace's own RBAC. Access requests are for fully managed instances",
                req.namespace
            ),
        ),
    };
    ControlFlow::Break(Outcome::not_granted(phase, reason, message, req))
}

/// The rules narrowed by the owner's policy and the platform's grantable
/// set; a request of which nothing is left is rejected.
fn grantable_part(
    req: &RequestView<'_>,
    policy: &AccessPolicy,
    grantable: &Permissions,
) -> ControlFlow<Outcome, Narrowed> {
    let narrowed = narrow(&req.spec.rules, policy, grantable);
    if narrowed.rules.is_empty() {
        return ControlFlow::Break(Outcome::not_granted(
            AccessPhase::Rejected,
            "NothingToGrant",
            format!("nothing asked for may be granted{}", narrowed.left_out()),
            req,
        ));
    }
    ControlFlow::Continue(narrowed)
}

/// The approvals that count, a Rejected one first, then by name (the same
/// whatever order the cache lists them in); and why the others have no
/// effect, sorted, as a message tail (`. ...`, empty when none).
fn judge_approvals<'v, 'a>(
    req: &RequestView<'_>,
    owner_ns: &str,
    approvals: &'v [ApprovalView<'a>],
) -> (Vec<&'v ApprovalView<'a>>, String) {
    let mut effective: Vec<&ApprovalView<'_>> = Vec::new();
    let mut ignored = Vec::new();
    for a in approvals {
        let why = match standing(a, req, owner_ns) {
            Standing::Effective => {
                effective.push(a);
                continue;
            }
            Standing::NotOwner { owner_namespace } => {
                ignored_note(a.namespace, req.namespace, &owner_namespace)
            }
            Standing::WrittenBeforeRequest => "it was written before this request (for an earlier request of the same name)".to_string(),
            Standing::NotPinned => "an approval must name the request it approves (spec.requestUID and spec.requestDigest)".to_string(),
            Standing::OtherRequest { field, pinned } => other_request_note(field, &pinned, req),
        };
        ignored.push(format!("{} has no effect: {why}", a.label()));
    }
    effective.sort_by_key(|a| (a.decision != AccessDecision::Rejected, a.name));
    ignored.sort();
    let ignored = if ignored.is_empty() {
        String::new()
    } else {
        format!(". {}", ignored.join(". "))
    };
    (effective, ignored)
}

/// Who decided for the request (an approval's label, or `Automatic`); a
/// rejection settles it, and so does no decision yet (Pending).
fn owner_decision(
    req: &RequestView<'_>,
    managed: &Managed<'_>,
    policy: &AccessPolicy,
    approvals: &[ApprovalView<'_>],
) -> ControlFlow<Outcome, String> {
    let (effective, ignored) = judge_approvals(req, managed.owner_namespace, approvals);
    match effective.first() {
        Some(a) if a.decision == AccessDecision::Rejected => ControlFlow::Break(Outcome {
            decided_by: Some(a.label()),
            ..Outcome::not_granted(
                AccessPhase::Rejected,
                "Rejected",
                format!(
                    "rejected by the owner ({}){}; any access granted is removed",
                    a.label(),
                    a.reason.map(|r| format!(": {r}")).unwrap_or_default()
                ),
                req,
            )
        }),
        Some(a) => ControlFlow::Continue(a.label()),
        None if policy.approval == Approval::Automatic => {
            ControlFlow::Continue("Automatic".to_string())
        }
        None => ControlFlow::Break(Outcome::not_granted(
            AccessPhase::Pending,
            "AwaitingApproval",
            format!(
                "waiting for the owner ({}, namespace {}) to write an AccessApproval with requestNamespace {}, requestName {}, {} and decision Approved or Rejected{ignored}",
                managed.owner_party,
                managed.owner_namespace,
                req.namespace,
                req.name,
                req.pins()
            ),
            req,
        )),
    }
}

/// Holds an approved request at Approved while the managed namespace is not
/// there: nothing is written and the clock does not start.
fn namespace_waited_for(
    req: &RequestView<'_>,
    managed: &Managed<'_>,
    decided_by: &str,
) -> ControlFlow<Outcome> {
    if managed.namespace_ready {
        return ControlFlow::Continue(());
    }
    ControlFlow::Break(Outcome {
        decided_by: Some(decided_by.to_string()),
        ..Outcome::not_granted(
            AccessPhase::Approved,
            "Approved",
            format!(
                "approved ({decided_by}); waiting for the instance's namespace {} to be ready",
                managed.target_namespace
            ),
            req,
        )
    })
}

/// The Active outcome: the narrowed rules in the managed namespace until
/// the expiry (kept from status once set, else now plus the granted
/// duration), looked at again then.
fn active(
    req: &RequestView<'_>,
    policy: &AccessPolicy,
    managed: &Managed<'_>,
    narrowed: Narrowed,
    decided_by: String,
    now: Timestamp,
) -> Outcome {
    let spec = req.spec;
    let target = managed.target_namespace;
    let duration = granted_duration(spec.duration_seconds, policy);
    let expires_at = req.expires_at.unwrap_or_else(|| {
        now.checked_add(SignedDuration::from_secs(duration))
            .unwrap_or(now)
    });
    let shortened = if spec.duration_seconds > duration {
        format!(
            " (shortened from {}s to the owner's maximum of {duration}s)",
            spec.duration_seconds
        )
    } else {
        String::new()
    };
    Outcome {
        phase: AccessPhase::Active,
        ready: true,
        reason: "Active",
        message: format!(
            "{} may {} in namespace {target} until {}{shortened} (decided by {decided_by}){}",
            describe_subject(&spec.subject),
            describe_rules(&narrowed.rules),
            format_time(expires_at),
            narrowed.left_out(),
        ),
        grant: Some(Grant {
            namespace: target.to_string(),
            rules: narrowed.rules,
            expires_at,
        }),
        expires_at: Some(expires_at),
        decided_by: Some(decided_by),
        requeue_at: Some(expires_at),
    }
}

/// The status of an AccessApproval: whether its decision counts, and how the
/// request it names stands. Only an approval in the owner's namespace learns
/// anything about the request; any other one is told that it has no effect,
/// without naming the owner or describing the customer's instance.
/// `previous` keeps condition transition times.
pub fn approval_status(
    approval: &AccessApproval,
    request: Option<&AccessRequest>,
    instance: Option<&ServiceInstance>,
    previous: &[Condition],
) -> AccessApprovalStatus {
    let generation = approval.metadata.generation;
    let a = ApprovalView::of(approval);
    let named = (
        approval.spec.request_namespace.as_str(),
        approval.spec.request_name.as_str(),
    );
    let judged = match request {
        None => Judged::of(request_not_found(named)),
        Some(req) => match instance_state(instance) {
            InstanceState::Managed {
                owner_namespace, ..
            } => judge_for_owner(&a, req, &owner_namespace, named),
            _ if a.namespace == named.0 => Judged::of(not_owner(&a, named)),
            _ => Judged::of(not_applicable(named)),
        },
    };
    let (ok, reason, message) = judged.verdict;
    let (request_uid, request_digest) = match judged.pins {
        Some((uid, digest)) => (uid, Some(digest)),
        None => (None, None),
    };
    AccessApprovalStatus {
        observed_generation: generation,
        request_phase: judged.request_phase,
        request_uid,
        request_digest,
        conditions: vec![condition(
            previous, "Ready", ok, reason, message, generation,
        )],
    }
}

/// An approval's Ready condition: status, reason, message.
type Verdict = (bool, &'static str, String);

/// The namespace and name of the request an approval names.
type NamedRequest<'a> = (&'a str, &'a str);

/// What an approval's status says of it and of the request it names.
struct Judged {
    verdict: Verdict,
    /// The request's phase: only for an approval that counts.
    request_phase: Option<AccessPhase>,
    /// The request's UID and digest: only for the owner's approvals.
    pins: Option<(Option<String>, String)>,
}

impl Judged {
    /// A verdict that tells nothing of the request.
    fn of(verdict: Verdict) -> Self {
        Judged {
            verdict,
            request_phase: None,
            pins: None,
        }
    }
}

fn request_not_found((rns, rname): NamedRequest<'_>) -> Verdict {
    (
        false,
        "RequestNotFound",
        format!(
            "there is no AccessRequest {rns}/{rname}; check spec.requestNamespace and spec.requestName"
        ),
    )
}

fn not_owner(a: &ApprovalView<'_>, (rns, rname): NamedRequest<'_>) -> Verdict {
    (
        false,
        "NotOwner",
        if a.namespace == rns {
            "this approval has no effect: the customer cannot approve its own request; only the namespace that owns the instance's resources can decide".to_string()
        } else {
            format!(
                "this approval has no effect: namespace {} does not own the resources of the instance AccessRequest {rns}/{rname} names; only the owner's namespace can decide",
                a.namespace
            )
        },
    )
}

fn not_applicable((rns, rname): NamedRequest<'_>) -> Verdict {
    (
        false,
        "NotApplicable",
        format!(
            "this approval has no effect: AccessRequest {rns}/{rname} does not name a fully managed instance whose resources this namespace owns (or no longer does)"
        ),
    )
}

/// Judges an approval of a request for a fully managed instance whose
/// resources `owner_ns` owns. The owner learns how to name the request it
/// reads about; an approval of the owner's that has no effect is told why,
/// what the request asks and how to approve exactly it.
fn judge_for_owner(
    a: &ApprovalView<'_>,
    req: &AccessRequest,
    owner_ns: &str,
    named: NamedRequest<'_>,
) -> Judged {
    let (rns, rname) = named;
    let view = RequestView::of(req);
    let standing = standing(a, &view, owner_ns);
    let pins = (!matches!(standing, Standing::NotOwner { .. }))
        .then(|| (view.uid.map(String::from), view.digest.clone()));
    let (reason, why) = match standing {
        Standing::NotOwner { .. } => return Judged::of(not_owner(a, named)),
        Standing::Effective => {
            return Judged {
                verdict: effective_status(a, req, rns, rname),
                request_phase: req.status.as_ref().and_then(|s| s.phase),
                pins,
            };
        }
        Standing::WrittenBeforeRequest => (
            "WrittenBeforeRequest",
            format!(
                "it is older than AccessRequest {rns}/{rname}, which was re-created since; write a new AccessApproval for the new request. "
            ),
        ),
        Standing::NotPinned => (
            "NotPinned",
            format!(
                "an Approved decision must name the request it approves, by spec.requestUID and spec.requestDigest. AccessRequest {rns}/{rname}: "
            ),
        ),
        Standing::OtherRequest { field, pinned } => (
            "RequestChanged",
            format!(
                "{}. Nothing is granted for it. It now ",
                other_request_note(field, &pinned, &view)
            ),
        ),
    };
    let message = format!(
        "this approval has no effect: {why}{}. To approve exactly this request, set spec.requestUID: {} and spec.requestDigest: {}",
        asked(req),
        view.uid.unwrap_or_default(),
        view.digest
    );
    Judged {
        verdict: (false, reason, message),
        request_phase: None,
        pins,
    }
}

/// `User alice asks to get pods for 600s: why`
fn asked(req: &AccessRequest) -> String {
    format!(
        "{} asks to {} for {}s: {}",
        describe_subject(&req.spec.subject),
        describe_rules(&req.spec.rules),
        req.spec.duration_seconds,
        req.spec.reason
    )
}

/// Status of an approval in the owner's namespace: what is asked, and whether
/// this approval is what decided it.
fn effective_status(
    a: &ApprovalView<'_>,
    req: &AccessRequest,
    rns: &str,
    rname: &str,
) -> (bool, &'static str, String) {
    let status = req.status.as_ref();
    let asked = asked(req);
    let processed = status
        .is_some_and(|s| s.observed_generation == req.metadata.generation && s.phase.is_some());
    if !processed {
        return (
            false,
            "Waiting",
            format!("the controller has not decided AccessRequest {rns}/{rname} yet. {asked}"),
        );
    }
    let phase = status
        .and_then(|s| s.phase)
        .map(|p| p.as_str())
        .unwrap_or_default();
    let state = status
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| format!("{phase} ({}): {}", c.reason, c.message))
        .unwrap_or_else(|| phase.to_string());
    if status.and_then(|s| s.decided_by.as_deref()) == Some(a.label().as_str()) {
        (
            true,
            "Applied",
            format!(
                "{:?}: AccessRequest {rns}/{rname} is {state}. {asked}",
                a.decision
            ),
        )
    } else {
        (
            false,
            "NotApplied",
            format!(
                "AccessRequest {rns}/{rname} is not decided by this approval; it is {state}. {asked}"
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AccessRequestStatus, ResourceOwner, ServiceInstanceSpec};
    use serde_json::json;

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> AccessRule {
        AccessRule {
            api_groups: groups.iter().map(|s| s.to_string()).collect(),
            resources: resources.iter().map(|s| s.to_string()).collect(),
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn user(name: &str) -> AccessSubject {
        AccessSubject {
            kind: SubjectKind::User,
            name: name.into(),
            namespace: None,
        }
    }

    fn spec(rules: Vec<AccessRule>, duration: i64) -> AccessRequestSpec {
        AccessRequestSpec {
            instance_name: "inst".into(),
            subject: user("alice"),
            rules,
            duration_seconds: duration,
            reason: "debugging".into(),
            withdrawn: false,
        }
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn managed(ready: bool) -> InstanceState {
        InstanceState::Managed {
            owner_party: Party::Isv,
            owner_namespace: "isv".into(),
            target_namespace: "cn-cust-inst-1234".into(),
            namespace_ready: ready,
        }
    }

    fn view<'a>(spec: &'a AccessRequestSpec, expires: Option<Timestamp>) -> RequestView<'a> {
        RequestView {
            namespace: "cust",
            name: "req",
            uid: Some("uid-1"),
            digest: request_digest(spec),
            created: Some(ts("2030-01-01T00:00:00Z")),
            spec,
            expires_at: expires,
            decided_by: None,
        }
    }

    /// An approval that names `req` (its UID and digest).
    fn approval<'a>(
        ns: &'a str,
        decision: AccessDecision,
        created: &str,
        req: &'a RequestView<'_>,
    ) -> ApprovalView<'a> {
        ApprovalView {
            namespace: ns,
            name: "ok",
            created: Some(ts(created)),
            decision,
            reason: Some("on call"),
            request_uid: req.uid,
            request_digest: Some(req.digest.as_str()),
        }
    }

    fn platform() -> Permissions {
        Permissions::of_rules(&default_grantable_rules())
    }

    const NOW: &str = "2030-01-01T00:10:00Z";

    #[test]
    fn escalation_verbs_wildcards_and_rbac_are_refused() {
        for r in [
            rule(&[""], &["pods"], &["get", "escalate"]),
            rule(&[""], &["pods"], &["bind"]),
            rule(&[""], &["users"], &["impersonate"]),
            rule(&[""], &["pods"], &["*"]),
            rule(&[""], &["*"], &["get"]),
            rule(&[""], &["pods/*"], &["get"]),
            rule(&["*"], &["pods"], &["get"]),
            rule(&["rbac.authorization.k8s.io"], &["roles"], &["create"]),
            rule(&["rbac.authorization.k8s.io"], &["clusterroles"], &["get"]),
            rule(&["example.com"], &["rolebindings"], &["get"]),
        ] {
            let e = check_rules(std::slice::from_ref(&r)).expect_err("refused");
            assert_eq!(e.reason, "EscalationRefused", "{r:?}: {}", e.message);
        }
    }

    #[test]
    fn cluster_scoped_resources_are_refused_and_named() {
        let e = check_rules(&[
            rule(&[""], &["pods"], &["get"]),
            rule(&[""], &["namespaces", "nodes"], &["get"]),
            rule(&["storage.k8s.io"], &["storageclasses"], &["list"]),
        ])
        .expect_err("refused");
        assert_eq!(e.reason, "ClusterScopedRefused");
        for name in ["namespaces", "nodes", "storageclasses.storage.k8s.io"] {
            assert!(e.message.contains(name), "{}", e.message);
        }
        let e = check_rules(&[rule(&[""], &["persistentvolumes"], &["get"])]).expect_err("pv");
        assert_eq!(e.reason, "ClusterScopedRefused");
        // A namespaced resource of the same name in another group is fine.
        assert!(check_rules(&[rule(&["example.com"], &["nodes"], &["get"])]).is_ok());
    }

    #[test]
    fn unknown_verbs_and_malformed_names_are_invalid() {
        for r in [
            rule(&[""], &["pods"], &["use"]),
            rule(&[""], &["Pods"], &["get"]),
            rule(&[""], &["pods/log/x"], &["get"]),
            rule(&["Apps"], &["deployments"], &["get"]),
        ] {
            let e = check_rules(std::slice::from_ref(&r)).expect_err("refused");
            assert_eq!(e.reason, "InvalidRule", "{r:?}");
        }
        assert!(
            check_rules(&[
                rule(&[""], &["pods", "pods/log"], &["get", "list", "watch"]),
                rule(&["apps"], &["deployments", "deployments/scale"], &["patch"]),
            ])
            .is_ok()
        );
    }

    #[test]
    fn escalation_is_reported_before_other_problems() {
        let e = check_rules(&[
            rule(&[""], &["namespaces"], &["get"]),
            rule(&[""], &["pods"], &["use", "bind"]),
        ])
        .expect_err("refused");
        assert_eq!(e.reason, "EscalationRefused");
        assert!(e.message.contains("verb 'bind'"), "{}", e.message);
    }

    #[test]
    fn subjects_must_be_the_customers_own() {
        assert!(check_subject(&user("alice"), "cust").is_ok());
        let sa = |ns: &str| AccessSubject {
            kind: SubjectKind::ServiceAccount,
            name: "bot".into(),
            namespace: Some(ns.into()),
        };
        assert!(check_subject(&sa("cust"), "cust").is_ok());
        assert_eq!(
            check_subject(&sa("isv"), "cust").unwrap_err().reason,
            "InvalidSubject"
        );
        assert_eq!(
            check_subject(&user("system:serviceaccount:isv:admin"), "cust")
                .unwrap_err()
                .reason,
            "InvalidSubject"
        );
        let everyone = AccessSubject {
            kind: SubjectKind::Group,
            name: "system:authenticated".into(),
            namespace: None,
        };
        assert!(check_subject(&everyone, "cust").is_err());
    }

    #[test]
    fn narrowing_never_grants_more_than_asked_and_merges() {
        let asked = vec![
            rule(&[""], &["pods", "services"], &["get", "list"]),
            rule(&[""], &["pods"], &["get", "delete"]),
            rule(&["apps"], &["deployments"], &["get"]),
        ];
        let n = narrow(&asked, &AccessPolicy::default(), &platform());
        assert!(n.left_out().is_empty(), "{:?}", n);
        assert_eq!(
            n.rules,
            vec![
                rule(&[""], &["pods"], &["delete", "get", "list"]),
                rule(&[""], &["services"], &["get", "list"]),
                rule(&["apps"], &["deployments"], &["get"]),
            ]
        );
        // Every granted triple was asked for.
        for r in &n.rules {
            for g in &r.api_groups {
                for res in &r.resources {
                    for v in &r.verbs {
                        assert!(asked.iter().any(|a| a.api_groups.contains(g)
                            && a.resources.contains(res)
                            && a.verbs.contains(v)));
                    }
                }
            }
        }
    }

    #[test]
    fn secrets_direct_and_indirect_are_left_out_unless_allowed() {
        let asked = vec![
            rule(&[""], &["pods", "secrets"], &["get", "create"]),
            rule(&[""], &["pods/exec", "pods/log"], &["create", "get"]),
            rule(&["apps"], &["deployments"], &["get", "patch"]),
            rule(&[""], &["serviceaccounts/token"], &["create"]),
        ];
        // A platform that lets the controller grant all of it.
        let everything = Permissions::of_rules(&asked);
        let n = narrow(&asked, &AccessPolicy::default(), &everything);
        assert!(n.not_grantable.is_empty());
        assert_eq!(
            n.not_allowed,
            vec![
                "create pods",
                "create pods/exec",
                "create pods/log",
                "create secrets",
                "create serviceaccounts/token",
                "get pods/exec",
                "get secrets",
                "patch deployments.apps",
            ]
        );
        assert_eq!(
            n.rules,
            vec![
                rule(&[""], &["pods", "pods/log"], &["get"]),
                rule(&["apps"], &["deployments"], &["get"]),
            ]
        );
        let secrets = AccessPolicy {
            allow_secrets: true,
            ..Default::default()
        };
        let all = narrow(&asked, &secrets, &everything);
        assert_eq!(all.not_allowed, vec!["create pods/log"], "{all:?}");
        assert!(
            all.rules
                .iter()
                .any(|r| r.resources.contains(&"secrets".to_string()))
        );
        // The default platform grants none of it, whatever the owner allows.
        let n = narrow(&asked, &secrets, &platform());
        assert!(
            n.not_grantable.contains(&"get secrets".to_string()),
            "{n:?}"
        );
        assert!(
            n.left_out()
                .contains("the platform does not let the controller grant them")
        );
    }

    #[test]
    fn custom_resources_and_unknown_kinds_need_the_owner_to_name_them() {
        let asked = vec![
            rule(&["argoproj.io"], &["rollouts"], &["get", "patch"]),
            rule(&["tekton.dev"], &["taskruns"], &["create"]),
            rule(&["example.com"], &["widgets"], &["get"]),
            rule(&[""], &["pods"], &["list"]),
        ];
        let everything = Permissions::of_rules(&asked);
        let n = narrow(&asked, &AccessPolicy::default(), &everything);
        assert_eq!(n.rules, vec![rule(&[""], &["pods"], &["list"])]);
        assert_eq!(
            n.not_allowed,
            vec![
                "create taskruns.tekton.dev",
                "get rollouts.argoproj.io",
                "get widgets.example.com",
                "patch rollouts.argoproj.io",
            ]
        );
        let named = AccessPolicy {
            allowed_rules: vec![rule(&["argoproj.io"], &["rollouts"], &["get"])],
            ..Default::default()
        };
        let n = narrow(&asked, &named, &everything);
        assert_eq!(
            n.rules,
            vec![
                rule(&[""], &["pods"], &["list"]),
                rule(&["argoproj.io"], &["rollouts"], &["get"]),
            ]
        );
        // ... and still only within the platform's set.
        let n = narrow(&asked, &named, &platform());
        assert_eq!(n.rules, vec![rule(&[""], &["pods"], &["list"])]);
        assert!(
            n.not_grantable
                .contains(&"get rollouts.argoproj.io".to_string())
        );
        // `*` in the owner's policy matches nothing but a literal `*`, which
        // check_rules refuses anyway.
        let star = AccessPolicy {
            allowed_rules: vec![rule(&["*"], &["*"], &["*"])],
            ..Default::default()
        };
        assert_eq!(
            narrow(&asked, &star, &everything).rules,
            vec![rule(&[""], &["pods"], &["list"])]
        );
    }

    #[test]
    fn endpoint_writes_are_refused_outright() {
        for r in [
            rule(&[""], &["endpoints"], &["create"]),
            rule(&[""], &["endpoints"], &["get", "patch"]),
            rule(&["discovery.k8s.io"], &["endpointslices"], &["update"]),
            rule(
                &["discovery.k8s.io"],
                &["endpointslices"],
                &["deletecollection"],
            ),
        ] {
            let e = check_rules(std::slice::from_ref(&r)).expect_err("refused");
            assert_eq!(e.reason, "EndpointsWriteRefused", "{r:?}");
            assert!(e.message.contains("CVE-2021-25740"));
        }
        assert!(check_rules(&[rule(&[""], &["endpoints"], &["get", "list", "watch"])]).is_ok());
        assert!(
            parse_grantable_rules(
                r#"[{"apiGroups": [""], "resources": ["endpoints"], "verbs": ["create"]}]"#
            )
            .is_err()
        );
    }

    #[test]
    fn the_platforms_grantable_set_is_checked() {
        let ok = parse_grantable_rules(
            "- apiGroups: ['']\n  resources: [pods, pods/log]\n  verbs: [get, list]\n",
        )
        .expect("valid");
        assert_eq!(Permissions::of_rules(&ok).len(), 4);
        for bad in [
            r#"[{"apiGroups": ["*"], "resources": ["pods"], "verbs": ["get"]}]"#,
            r#"[{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}]"#,
            r#"[{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["get"]}]"#,
            r#"[{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]"#,
            r#"[{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"], "resourceNames": ["x"]}]"#,
            r#"{"apiGroups": [""]}"#,
        ] {
            assert!(parse_grantable_rules(bad).is_err(), "{bad}");
        }
        // The built-in default is itself a valid grantable set, and safe.
        let default = default_grantable_rules();
        assert!(check_rules(&default).is_ok());
        let set = Permissions::of_rules(&default);
        assert!(!set.contains("", "secrets", "get"));
        assert!(!set.contains("", "pods/exec", "create"));
        assert!(!set.contains("apps", "deployments", "patch"));
        assert!(set.contains("", "pods/log", "get"));
    }

    #[test]
    fn the_charts_default_grantable_rules_are_the_built_in_default() {
        let values: serde_yaml::Value = serde_yaml::from_str(include_str!(
            "../../charts/computenest-controller/values.yaml"
        ))
        .expect("values.yaml");
        let rules = serde_yaml::to_string(&values["access"]["grantableRules"]).expect("yaml");
        let chart = parse_grantable_rules(&rules).expect("the chart's grantable rules are valid");
        assert_eq!(
            Permissions::of_rules(&chart),
            Permissions::of_rules(&default_grantable_rules()),
            "charts/computenest-controller/values.yaml access.grantableRules must equal default_grantable_rules()"
        );
    }

    #[test]
    fn durations_are_bounded_by_the_owners_maximum() {
        let default = AccessPolicy::default();
        assert_eq!(granted_duration(600, &default), 600);
        assert_eq!(granted_duration(7200, &default), 3600);
        let short = AccessPolicy {
            max_duration_seconds: Some(60),
            ..Default::default()
        };
        assert_eq!(granted_duration(600, &short), 60);
    }

    #[test]
    fn grant_names_are_stable_per_uid_and_valid() {
        let a = grant_name("debug-session", "uid-1");
        assert_eq!(a, grant_name("debug-session", "uid-1"));
        assert_ne!(a, grant_name("debug-session", "uid-2"));
        assert!(a.starts_with("computenest-access-debug-session-"));
        let long = grant_name(&"x".repeat(200), "u");
        assert!(long.len() < 80, "{long}");
    }

    #[test]
    fn pending_until_the_owner_decides_and_foreign_approvals_are_named() {
        let s = spec(vec![rule(&[""], &["pods"], &["get"])], 600);
        let req = view(&s, None);
        let approvals = [
            approval("dist", AccessDecision::Approved, NOW, &req),
            approval("cust", AccessDecision::Approved, NOW, &req),
        ];
        let o = decide(
            &req,
            &managed(true),
            &AccessPolicy::default(),
            &platform(),
            &approvals,
            ts(NOW),
        );
        assert_eq!(o.phase, AccessPhase::Pending);
        assert_eq!(o.reason, "AwaitingApproval");
        assert!(o.grant.is_none());
        assert!(
            o.message.contains("AccessApproval dist/ok has no effect")
                && o.message.contains("namespace dist does not own"),
            "{}",
            o.message
        );
        assert!(
            o.message
                .contains("the customer cannot approve its own request"),
            "{}",
            o.message
        );
    }

    #[test]
    fn the_owners_approval_grants_until_the_bounded_expiry() {
        let s = spec(vec![rule(&[""], &["pods", "secrets"], &["get"])], 7200);
        let req = view(&s, None);
        let approvals = [approval("isv", AccessDecision::Approved, NOW, &req)];
        let o = decide(
            &req,
            &managed(true),
            &AccessPolicy::default(),
            &platform(),
            &approvals,
            ts(NOW),
        );
        assert_eq!(o.phase, AccessPhase::Active);
        assert!(o.ready);
        let g = o.grant.expect("grant");
        assert_eq!(g.namespace, "cn-cust-inst-1234");
        assert_eq!(g.rules, vec![rule(&[""], &["pods"], &["get"])]);
        assert_eq!(g.expires_at, ts("2030-01-01T01:10:00Z"));
        assert_eq!(o.requeue_at, Some(g.expires_at));
        assert_eq!(o.decided_by.as_deref(), Some("AccessApproval isv/ok"));
        assert!(o.message.contains("shortened"), "{}", o.message);
        assert!(o.message.contains("get secrets"), "{}", o.message);
    }

    #[test]
    fn expiry_is_kept_from_status_and_final_once_passed() {
        let s = spec(vec![rule(&[""], &["pods"], &["get"])], 600);
        let kept = view(&s, Some(ts("2030-01-01T00:15:00Z")));
        let approvals = [approval("isv", AccessDecision::Approved, NOW, &kept)];
        let o = decide(
            &kept,
            &managed(true),
            &AccessPolicy::default(),
            &platform(),
            &approvals,
            ts(NOW),
        );
        assert_eq!(o.expires_at, Some(ts("2030-01-01T00:15:00Z")));
        let o = decide(
            &kept,
            &managed(true),
            &AccessPolicy::default(),
            &platform(),
            &approvals,
            ts("2030-01-01T00:15:00Z"),
        );
        assert_eq!(o.phase, AccessPhase::Expired);
        assert!(o.grant.is_none());
    }

    #[test]
    fn a_rejection_wins_and_carries_the_reason() {
        let s = spec(vec![rule(&[""], &["pods"], &["get"])], 600);
        let req = view(&s, None);
        let mut no = approval("isv", AccessDecision::Rejected, NOW, &req);
        no.name = "zz-no";
        let approvals = [approval("isv", AccessDecision::Approved, NOW, &req), no];
        let auto = AccessPolicy {
            approval: Approval::Automatic,
            ..Default::default()
        };
        let o = decide(
            &req,
            &managed(true),
            &auto,
            &platform(),
            &approvals,
            ts(NOW),
        );
        assert_eq!(o.phase, AccessPhase::Rejected);
        assert_eq!(o.reason, "Rejected");
        assert!(o.message.contains("on call"));
        assert_eq!(o.decided_by.as_deref(), Some("AccessApproval isv/zz-no"));
    }

    #[test]
    fn automatic_policy_approves_and_stale_approvals_do_not_count() {
        let s = spec(vec![rule(&[""], &["pods"], &["get"])], 600);
        let req = view(&s, None);
        let auto = AccessPolicy {
            approval: Approval::Automatic,
            ..Default::default()
        };
        let o = decide(&req, &managed(true), &auto, &platform(), &[], ts(NOW));
        assert_eq!(o.phase, AccessPhase::Active);
        assert_eq!(o.decided_by.as_deref(), Some("Automatic"));
        // Approvals that do not name this request do not count.
        let pending = |approvals: &[ApprovalView<'_>], text: &str| {
            let o = decide(
                &req,
                &managed(true),
                &AccessPolicy::default(),
                &platform(),
                approvals,
                ts(NOW),
            );
            assert_eq!(o.phase, AccessPhase::Pending, "{}", o.message);
            assert!(o.grant.is_none());
            assert!(o.message.contains(text), "{text}: {}", o.message);
        };
        let mut unpinned = approval("isv", AccessDecision::Approved, NOW, &req);
        (unpinned.request_uid, unpinned.request_digest) = (None, None);
        pending(&[unpinned.clone()], "must name the request it approves");
        let mut uid_only = unpinned.clone();
        uid_only.request_uid = Some("uid-1");
        pending(&[uid_only], "must name the request it approves");
        let mut recreated = approval("isv", AccessDecision::Approved, NOW, &req);
        recreated.request_uid = Some("uid-0");
        pending(&[recreated], "deleted and re-created");
        let mut wider = approval("isv", AccessDecision::Approved, NOW, &req);
        wider.request_digest = Some("sha256:0000");
        pending(&[wider], "asks for something else");
        // Even written long before: a pinned approval names this very request.
        let early = approval(
            "isv",
            AccessDecision::Approved,
            "2029-12-31T00:00:00Z",
            &req,
        );
        let o = decide(
            &req,
            &managed(true),
            &AccessPolicy::default(),
            &platform(),
            &[early],
            ts(NOW),
        );
        assert_eq!(o.phase, AccessPhase::Active);
        // An unpinned rejection counts, unless it is older than the request.
        let mut no = unpinned.clone();
        no.decision = AccessDecision::Rejected;
        let o = decide(
            &req,
            &managed(true),
            &auto,
            &platform(),
            &[no.clone()],
            ts(NOW),
        );
        assert_eq!(o.phase, AccessPhase::Rejected);
        no.created = Some(ts("2029-12-31T00:00:00Z"));
        let o = decide(&req, &managed(true), &auto, &platform(), &[no], ts(NOW));
        assert_eq!(o.phase, AccessPhase::Active, "{}", o.message);
        assert!(o.message.is_empty() || !o.message.contains("rejected"));
    }

    #[test]
    fn the_digest_covers_what_is_asked_and_nothing_else() {
        let s = spec(vec![rule(&[""], &["pods"], &["get"])], 600);
        let d = request_digest(&s);
        assert!(d.starts_with("sha256:") && d.len() == 39, "{d}");
        assert_eq!(d, request_digest(&s.clone()));
        let mut reason = s.clone();
        reason.reason = "another reason".into();
        reason.withdrawn = true;
        assert_eq!(d, request_digest(&reason));
        let wider = spec(vec![rule(&[""], &["pods", "configmaps"], &["get"])], 600);
        let longer = spec(vec![rule(&[""], &["pods"], &["get"])], 601);
        let mut other = s.clone();
        other.subject = user("mallory");
        let mut inst = s.clone();
        inst.instance_name = "other".into();
        for changed in [wider, longer, other, inst] {
            assert_ne!(d, request_digest(&changed), "{changed:?}");
        }
    }

    #[test]
    fn refusals_come_before_anything_is_granted() {
        let ok = spec(vec![rule(&[""], &["pods"], &["get"])], 600);
        let ok_view = view(&ok, None);
        let approvals = [approval("isv", AccessDecision::Approved, NOW, &ok_view)];
        let policy = AccessPolicy::default();
        let esc = spec(vec![rule(&[""], &["pods"], &["get", "escalate"])], 600);
        let o = decide(
            &view(&esc, None),
            &managed(true),
            &policy,
            &platform(),
            &approvals,
            ts(NOW),
        );
        assert_eq!(
            (o.phase, o.reason),
            (AccessPhase::Rejected, "EscalationRefused")
        );
        assert!(o.grant.is_none());
        let o = decide(
            &view(&ok, None),
            &InstanceState::Private,
            &policy,
            &platform(),
            &approvals,
            ts(NOW),
        );
        assert_eq!((o.phase, o.reason), (AccessPhase::Rejected, "NotManaged"));
        let o = decide(
            &view(&ok, None),
            &InstanceState::Missing,
            &policy,
            &platform(),
            &approvals,
            ts(NOW),
        );
        assert_eq!(
            (o.phase, o.reason),
            (AccessPhase::Pending, "InstanceNotFound")
        );
        let secrets = spec(vec![rule(&[""], &["secrets"], &["get"])], 600);
        let o = decide(
            &view(&secrets, None),
            &managed(true),
            &policy,
            &platform(),
            &approvals,
            ts(NOW),
        );
        assert_eq!(
            (o.phase, o.reason),
            (AccessPhase::Rejected, "NothingToGrant")
        );
        let mut gone = ok.clone();
        gone.withdrawn = true;
        let o = decide(
            &view(&gone, None),
            &managed(true),
            &policy,
            &platform(),
            &approvals,
            ts(NOW),
        );
        assert_eq!(o.phase, AccessPhase::Withdrawn);
        // Approved, but the namespace is not there yet: nothing written, no clock started.
        let o = decide(
            &view(&ok, None),
            &managed(false),
            &policy,
            &platform(),
            &approvals,
            ts(NOW),
        );
        assert_eq!(o.phase, AccessPhase::Approved);
        assert!(o.grant.is_none() && o.expires_at.is_none());
    }

    fn instance(owner: Option<(Party, &str, &str)>) -> ServiceInstance {
        let mut i = ServiceInstance::new(
            "inst",
            serde_json::from_value::<ServiceInstanceSpec>(json!({
                "serviceRef": {"kind": "Service", "namespace": "isv", "name": "svc"}
            }))
            .expect("spec"),
        );
        i.metadata.namespace = Some("cust".into());
        i.status = Some(crate::api::ServiceInstanceStatus {
            owner: owner.map(|(party, ns, target)| ResourceOwner {
                party,
                namespace: ns.into(),
                target_namespace: target.into(),
            }),
            ..Default::default()
        });
        i
    }

    #[test]
    fn instance_state_from_status() {
        assert_eq!(instance_state(None), InstanceState::Missing);
        assert_eq!(
            instance_state(Some(&instance(None))),
            InstanceState::NotReady
        );
        assert_eq!(
            instance_state(Some(&instance(Some((Party::Customer, "cust", "cust"))))),
            InstanceState::Private
        );
        assert!(matches!(
            instance_state(Some(&instance(Some((Party::Isv, "isv", "cn-x"))))),
            InstanceState::Managed { ref owner_namespace, .. } if owner_namespace == "isv"
        ));
    }

    #[test]
    fn approval_status_tells_a_foreign_approver_it_has_no_effect() {
        let inst = instance(Some((Party::Isv, "isv", "cn-x")));
        let mut req = AccessRequest::new("req", spec(vec![rule(&[""], &["pods"], &["get"])], 60));
        req.metadata.namespace = Some("cust".into());
        req.metadata.generation = Some(1);
        req.metadata.uid = Some("uid-1".into());
        let digest = request_digest(&req.spec);
        let mk_pinned = |ns: &str, uid: Option<&str>, digest: Option<&str>| {
            let mut a = AccessApproval::new(
                "ok",
                crate::api::AccessApprovalSpec {
                    request_namespace: "cust".into(),
                    request_name: "req".into(),
                    request_uid: uid.map(String::from),
                    request_digest: digest.map(String::from),
                    decision: AccessDecision::Approved,
                    reason: None,
                },
            );
            a.metadata.namespace = Some(ns.into());
            a
        };
        let mk = |ns: &str| mk_pinned(ns, Some("uid-1"), Some(&digest));
        let s = approval_status(&mk("dist"), Some(&req), Some(&inst), &[]);
        assert_eq!(s.conditions[0].reason, "NotOwner");
        assert_eq!(s.conditions[0].status, "False");
        // A foreign approver learns nothing of the request.
        assert_eq!((s.request_uid, s.request_digest), (None, None));
        let s = approval_status(&mk("isv"), None, None, &[]);
        assert_eq!(s.conditions[0].reason, "RequestNotFound");
        let s = approval_status(&mk("isv"), Some(&req), Some(&inst), &[]);
        assert_eq!(s.conditions[0].reason, "Waiting");
        // The owner is told how to name the request, next to what it asks.
        let s = approval_status(&mk_pinned("isv", None, None), Some(&req), Some(&inst), &[]);
        assert_eq!(s.conditions[0].reason, "NotPinned");
        assert_eq!(s.request_uid.as_deref(), Some("uid-1"));
        assert_eq!(s.request_digest.as_deref(), Some(digest.as_str()));
        assert!(
            s.conditions[0].message.contains("get pods"),
            "{}",
            s.conditions[0].message
        );
        let s = approval_status(
            &mk_pinned("isv", Some("uid-0"), Some(&digest)),
            Some(&req),
            Some(&inst),
            &[],
        );
        assert_eq!(s.conditions[0].reason, "RequestChanged");
        assert!(s.conditions[0].message.contains("deleted and re-created"));
        req.status = Some(AccessRequestStatus {
            observed_generation: Some(1),
            phase: Some(AccessPhase::Active),
            decided_by: Some("AccessApproval isv/ok".into()),
            ..Default::default()
        });
        let s = approval_status(&mk("isv"), Some(&req), Some(&inst), &[]);
        assert_eq!(s.conditions[0].reason, "Applied");
        assert_eq!(s.conditions[0].status, "True");
        assert_eq!(s.request_phase, Some(AccessPhase::Active));
    }
}
