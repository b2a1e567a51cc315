//! The effective offering and template rendering: pure functions, no API calls.
//!
//! An offering is the ISV's Service with a distributor's overrides applied. It
//! is checked as a whole (template objects against the allow-list, overrides
//! against the parameter schema) before any instance is deployed from it.
//! Rendering substitutes parameters as *values* into the parsed objects; keys
//! are never touched and no text is ever re-parsed, so a parameter cannot add
//! fields or objects. Rendering counts its bytes as it goes and stops at the
//! platform's size limits; the rendered pods of a customer-owned instance may
//! use only what the instance creates or the buyer names
//! ([`check_pod_references`]).

use super::tenancy::SizeLimits;
use crate::api::{
    Outputs, Overrides, ParameterSpec, ParameterType, ParameterValues, Plan, ServiceSpec,
};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Default longest string parameter, when the schema sets none.
pub const DEFAULT_MAX_STRING: usize = 1024;

/// A kind that templates may create.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AllowedKind {
    /// API group, "" for the core group.
    pub group: String,
    /// Version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Plural resource name.
    pub plural: String,
}

impl AllowedKind {
    /// apiVersion as written in manifests.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Parses `group/version/Kind/plural` (group may be empty: `/v1/ConfigMap/configmaps`,
    /// or `v1/ConfigMap/configmaps` for the core group).
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let (group, rest) = match parts.len() {
            3 => ("", &parts[..]),
            4 => (parts[0], &parts[1..]),
            _ => return Err(format!("{s:?}: expected group/version/Kind/plural")),
        };
        if rest.iter().any(|p| p.is_empty()) {
            return Err(format!("{s:?}: version, Kind and plural must not be empty"));
        }
        Ok(AllowedKind {
            group: group.to_string(),
            version: rest[0].to_string(),
            kind: rest[1].to_string(),
            plural: rest[2].to_string(),
        })
    }
}

/// Kinds templates may create unless the operator configures another list.
/// Namespaced, and none of them can grant permissions (no Role or RoleBinding).
pub fn default_allowed_kinds() -> Vec<AllowedKind> {
    [
        "v1/ConfigMap/configmaps",
        "v1/Secret/secrets",
        "v1/Service/services",
        "v1/ServiceAccount/serviceaccounts",
        "v1/PersistentVolumeClaim/persistentvolumeclaims",
        "apps/v1/Deployment/deployments",
        "apps/v1/StatefulSet/statefulsets",
        "batch/v1/Job/jobs",
        "batch/v1/CronJob/cronjobs",
        "networking.k8s.io/v1/Ingress/ingresses",
        "networking.k8s.io/v1/NetworkPolicy/networkpolicies",
        "policy/v1/PodDisruptionBudget/poddisruptionbudgets",
    ]
    .iter()
    .filter_map(|s| AllowedKind::parse(s).ok())
    .collect()
}

/// Well-known cluster-scoped kinds, named in refusals so that the message says why.
const CLUSTER_SCOPED_KINDS: &[&str] = &[
    "Namespace",
    "Node",
    "PersistentVolume",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "StorageClass",
    "PriorityClass",
    "IngressClass",
    "RuntimeClass",
    "APIService",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "CSIDriver",
    "CSINode",
    "VolumeAttachment",
    "CertificateSigningRequest",
];

/// Why a template, an override or a set of parameters was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OfferingError {
    /// A template object breaks a placement rule.
    #[error("template object {index} ({what}): {rule}")]
    Template {
        index: usize,
        what: String,
        rule: String,
    },
    /// The parameter schema of the Service is inconsistent.
    #[error("parameter {name:?}: {rule}")]
    Schema { name: String, rule: String },
    /// A distributor override does not fit the source Service.
    #[error("override {field}: {rule}")]
    Override { field: String, rule: String },
}

/// Why an instance's plan or parameters were refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParameterError {
    /// The plan is missing or not sold.
    #[error("{0}")]
    Plan(String),
    /// A parameter value breaks its rule.
    #[error("parameter {name:?}: {rule}")]
    Value { name: String, rule: String },
    /// A parameter value is larger than the platform allows.
    #[error(
        "parameter {name:?}: {whose} is {bytes} bytes, more than the {limit} the platform allows (tenancy.sizeLimits.maxParameterBytes)"
    )]
    TooLarge {
        name: String,
        /// "the value" (the buyer's), or the seller's default or plan value.
        whose: &'static str,
        bytes: usize,
        limit: usize,
    },
}

/// Why rendering failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A placeholder names nothing known.
    #[error("template object {index}: unknown placeholder $({name}) in {path}")]
    UnknownPlaceholder {
        index: usize,
        name: String,
        path: String,
    },
    /// The rendered object is not acceptable.
    #[error("template object {index}: {rule}")]
    Invalid { index: usize, rule: String },
    /// Rendering produced more bytes than the platform allows; it stopped there.
    #[error(
        "{what} would render to more than {limit} bytes (stopped at {bytes}), the most the platform allows ({setting})"
    )]
    TooLarge {
        /// What was being rendered, for example `template object 3`.
        what: String,
        /// Bytes produced when rendering stopped (or the exact size, when done).
        bytes: usize,
        /// The limit.
        limit: usize,
        /// The chart value that sets the limit.
        setting: &'static str,
    },
    /// Two template objects render to the same object.
    #[error(
        "template objects {first} and {second} both render to {kind} {name:?}; the seller must give them different names"
    )]
    Collision {
        first: usize,
        second: usize,
        kind: String,
        name: String,
    },
}

/// The ISV's Service with a distributor's overrides applied, checked as a whole.
#[derive(Clone, Debug, PartialEq)]
pub struct Offering {
    /// Parameter schema, with the distributor's defaults applied.
    pub parameters: Vec<ParameterSpec>,
    /// Parameters buyers may not set.
    pub locked: BTreeSet<String>,
    /// Plans sold.
    pub plans: Vec<Plan>,
    /// Template objects: the ISV's followed by the distributor's extra objects.
    pub objects: Vec<Value>,
    /// Outputs (the distributor's replace the ISV's).
    pub outputs: Outputs,
    /// The ISV's commercial settings (currency, metering).
    pub commerce: Option<crate::api::CommercePolicy>,
    /// The distributor's prices, per plan (resales only).
    pub prices: Vec<crate::api::PlanPriceOverride>,
}

/// Resolves and checks the offering of a Service, with optional overrides.
pub fn resolve_offering(
    service: &ServiceSpec,
    overrides: Option<&Overrides>,
    allowed: &[AllowedKind],
) -> Result<Offering, OfferingError> {
    for p in &service.parameters {
        check_parameter_spec(p)?;
    }
    for (index, obj) in service.template.objects.iter().enumerate() {
        check_template_object(index, obj, allowed)?;
    }
    let mut offering = Offering {
        parameters: service.parameters.clone(),
        locked: BTreeSet::new(),
        plans: service.plans.clone(),
        objects: service.template.objects.clone(),
        outputs: service.outputs.clone(),
        commerce: service.commerce.clone(),
        prices: overrides.map(|o| o.prices.clone()).unwrap_or_default(),
    };
    for plan in &offering.plans {
        for (name, value) in &plan.parameters {
            let spec =
                find_param(&offering.parameters, name).ok_or_else(|| OfferingError::Schema {
                    name: name.clone(),
                    rule: format!(
                        "plan {:?} sets a parameter the Service does not declare",
                        plan.name
                    ),
                })?;
            if let Some(kind) = spec.type_.referenced_kind() {
                return Err(OfferingError::Schema {
                    name: name.clone(),
                    rule: format!(
                        "plan {:?} sets it, but it is a {:?} parameter: it names a {kind} in the buyer's namespace, so only the buyer sets it; remove it from the plan",
                        plan.name, spec.type_
                    ),
                });
            }
            check_value(spec, value).map_err(|rule| OfferingError::Schema {
                name: name.clone(),
                rule: format!("plan {:?}: {rule}", plan.name),
            })?;
        }
    }
    let Some(ov) = overrides else {
        return Ok(offering);
    };
    for (name, value) in &ov.parameter_defaults {
        let spec = offering
            .parameters
            .iter_mut()
            .find(|p| &p.name == name)
            .ok_or_else(|| OfferingError::Override {
                field: format!("parameterDefaults.{name}"),
                rule: "the source Service has no such parameter".into(),
            })?;
        if let Some(kind) = spec.type_.referenced_kind() {
            return Err(OfferingError::Override {
                field: format!("parameterDefaults.{name}"),
                rule: format!(
                    "{name:?} is a {:?} parameter: it names a {kind} in the buyer's namespace, so only the buyer sets it; remove this default",
                    spec.type_
                ),
            });
        }
        check_value(spec, value).map_err(|rule| OfferingError::Override {
            field: format!("parameterDefaults.{name}"),
            rule,
        })?;
        spec.default = Some(value.clone());
    }
    for name in &ov.locked_parameters {
        if find_param(&offering.parameters, name).is_none() {
            return Err(OfferingError::Override {
                field: "lockedParameters".into(),
                rule: format!("the source Service has no parameter {name:?}"),
            });
        }
        offering.locked.insert(name.clone());
    }
    if !ov.plans.is_empty() {
        let mut subset = Vec::new();
        for name in &ov.plans {
            let plan = offering
                .plans
                .iter()
                .find(|p| &p.name == name)
                .ok_or_else(|| OfferingError::Override {
                    field: "plans".into(),
                    rule: format!(
                        "the source Service has no plan {name:?} (it has: {})",
                        offering
                            .plans
                            .iter()
                            .map(|p| p.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                })?;
            subset.push(plan.clone());
        }
        offering.plans = subset;
    }
    // A default is refused, not half applied, when a plan this product sells
    // sets the same parameter: instances of that plan would silently ignore it.
    for name in ov.parameter_defaults.keys() {
        let pinning: Vec<&str> = offering
            .plans
            .iter()
            .filter(|p| p.parameters.contains_key(name))
            .map(|p| p.name.as_str())
            .collect();
        if !pinning.is_empty() {
            let plans = pinning
                .iter()
                .map(|p| format!("{p:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            let (noun, verb) = if pinning.len() == 1 {
                ("plan", "sets")
            } else {
                ("plans", "set")
            };
            return Err(OfferingError::Override {
                field: format!("parameterDefaults.{name}"),
                rule: format!(
                    "{noun} {plans} of the source Service {verb} parameter {name:?} and this product sells {}, so instances of {} would never use this default; remove the default, or leave {} out of overrides.plans",
                    if pinning.len() == 1 { "it" } else { "them" },
                    if pinning.len() == 1 {
                        "that plan"
                    } else {
                        "those plans"
                    },
                    if pinning.len() == 1 {
                        "that plan"
                    } else {
                        "those plans"
                    },
                ),
            });
        }
    }
    // A locked parameter that is required and has no default can only come
    // from the plan: where the plan does not set it, no buyer could ever buy.
    for name in &ov.locked_parameters {
        let Some(spec) = find_param(&offering.parameters, name) else {
            continue;
        };
        if !spec.required || spec.default.is_some() {
            continue;
        }
        let open: Vec<String> = offering
            .plans
            .iter()
            .filter(|p| !p.parameters.contains_key(name))
            .map(|p| format!("{:?}", p.name))
            .collect();
        let whom = match open.as_slice() {
            [] if !offering.plans.is_empty() => continue,
            [] => "no instance could be deployed".to_string(),
            [one] => format!("no instance of plan {one} could be deployed"),
            many => format!("no instance of plans {} could be deployed", many.join(", ")),
        };
        return Err(OfferingError::Override {
            field: "lockedParameters".into(),
            rule: format!(
                "parameter {name:?} is required, has no default and buyers may not set it, so {whom}; give it a default in overrides.parameterDefaults, or unlock it{}",
                if offering.plans.is_empty() {
                    ""
                } else {
                    ", or sell only plans that set it"
                }
            ),
        });
    }
    for (i, obj) in ov.extra_objects.iter().enumerate() {
        check_template_object(i, obj, allowed).map_err(|e| OfferingError::Override {
            field: format!("extraObjects[{i}]"),
            rule: match e {
                OfferingError::Template { what, rule, .. } => format!("{what}: {rule}"),
                other => other.to_string(),
            },
        })?;
    }
    offering.objects.extend(ov.extra_objects.iter().cloned());
    if let Some(outputs) = &ov.outputs {
        offering.outputs = outputs.clone();
    }
    // Extra objects may not collide with the ISV's (same kind and name).
    let mut seen = BTreeSet::new();
    for obj in &offering.objects {
        let key = (
            obj.get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            obj.get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            obj.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        );
        if !seen.insert(key.clone()) {
            return Err(OfferingError::Override {
                field: "extraObjects".into(),
                rule: format!("{} {:?} is already in the source template", key.1, key.2),
            });
        }
    }
    Ok(offering)
}

fn find_param<'a>(params: &'a [ParameterSpec], name: &str) -> Option<&'a ParameterSpec> {
    params.iter().find(|p| p.name == name)
}

fn check_parameter_spec(p: &ParameterSpec) -> Result<(), OfferingError> {
    if let Some(pattern) = &p.pattern {
        regex::Regex::new(pattern).map_err(|e| OfferingError::Schema {
            name: p.name.clone(),
            rule: format!("pattern is not a valid regular expression: {e}"),
        })?;
    }
    if let (Some(kind), Some(_)) = (p.type_.referenced_kind(), &p.default) {
        // The API server refuses this too (CEL); checked again for objects
        // stored before that rule.
        return Err(OfferingError::Schema {
            name: p.name.clone(),
            rule: format!(
                "a {:?} parameter names a {kind} in the buyer's namespace: only the buyer sets it, so it has no default; remove the default",
                p.type_
            ),
        });
    }
    if let Some(default) = &p.default {
        check_value(p, default).map_err(|rule| OfferingError::Schema {
            name: p.name.clone(),
            rule: format!("default: {rule}"),
        })?;
    }
    Ok(())
}

/// Checks one template manifest before anything is rendered or written.
pub fn check_template_object(
    index: usize,
    obj: &Value,
    allowed: &[AllowedKind],
) -> Result<(), OfferingError> {
    let err = |what: &str, rule: String| OfferingError::Template {
        index,
        what: what.to_string(),
        rule,
    };
    let map = obj
        .as_object()
        .ok_or_else(|| err("?", "must be an object".into()))?;
    let api_version = map
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or_default();
    if api_version.is_empty() || kind.is_empty() {
        return Err(err("?", "apiVersion and kind are required".into()));
    }
    let what = format!("{api_version} {kind}");
    if CLUSTER_SCOPED_KINDS.contains(&kind) {
        return Err(err(
            &what,
            "is cluster-scoped; templates may only create namespaced objects, inside the instance's namespace".into(),
        ));
    }
    if !allowed
        .iter()
        .any(|a| a.api_version() == api_version && a.kind == kind)
    {
        return Err(err(
            &what,
            format!(
                "is not in the controller's allow-list of kinds ({}); ask the platform team to allow it",
                allowed
                    .iter()
                    .map(|a| a.kind.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let meta = map
        .get("metadata")
        .and_then(Value::as_object)
        .ok_or_else(|| err(&what, "metadata.name is required".into()))?;
    match meta.get("name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => {}
        _ => return Err(err(&what, "metadata.name is required".into())),
    }
    if meta.contains_key("namespace") {
        return Err(err(
            &what,
            "names a namespace; remove metadata.namespace: objects are always created in the instance's target namespace".into(),
        ));
    }
    // Only what a seller may decide: the rest of metadata is the API server's
    // (uid, resourceVersion, managedFields, ...) or the controller's
    // (ownerReferences, finalizers), or changes write semantics (generateName).
    for key in meta.keys() {
        let why = match key.as_str() {
            "name" | "labels" | "annotations" => continue,
            "generateName" => {
                "uses metadata.generateName; a fixed name is needed so that retries never duplicate objects"
            }
            "ownerReferences" => {
                "sets metadata.ownerReferences; ownership is set by the controller"
            }
            "finalizers" => "sets metadata.finalizers; templates may not block deletion",
            _ => "",
        };
        let rule = if why.is_empty() {
            format!(
                "sets metadata.{key}; a template may set only metadata.name, labels and annotations (the rest belongs to the API server or the controller)"
            )
        } else {
            why.to_string()
        };
        return Err(err(&what, rule));
    }
    for field in ["labels", "annotations"] {
        let Some(map) = meta.get(field) else { continue };
        let map = map
            .as_object()
            .ok_or_else(|| err(&what, format!("metadata.{field} must be a map")))?;
        if let Some(key) = map.keys().find(|k| is_reserved_key(k)) {
            return Err(err(
                &what,
                format!(
                    "sets metadata.{field} key {key:?}; keys under computenest.dev/ are the controller's (it proves ownership with them)"
                ),
            ));
        }
    }
    Ok(())
}

/// Whether a label or annotation key is in the controller's own prefix
/// (`computenest.dev/...`, or a subdomain of it such as `x.computenest.dev/...`).
pub fn is_reserved_key(key: &str) -> bool {
    let prefix = key.split_once('/').map(|(p, _)| p).unwrap_or_default();
    let prefix = prefix.to_ascii_lowercase();
    prefix == "computenest.dev" || prefix.ends_with(".computenest.dev")
}

/// Checks a value against its parameter's type and limits; the error is the rule broken.
pub fn check_value(spec: &ParameterSpec, value: &Value) -> Result<(), String> {
    match spec.type_ {
        ParameterType::String => {
            let s = value
                .as_str()
                .ok_or_else(|| format!("must be a string, got {}", json_type(value)))?;
            let max = spec
                .max_length
                .map(|m| m as usize)
                .unwrap_or(DEFAULT_MAX_STRING);
            let len = s.chars().count();
            if len > max {
                return Err(format!("must be at most {max} characters, got {len}"));
            }
            if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
                return Err("must not contain control characters".into());
            }
            if let Some(pattern) = &spec.pattern {
                let re = regex::Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|e| format!("pattern is not a valid regular expression: {e}"))?;
                if !re.is_match(s) {
                    return Err(format!("must match the pattern {pattern:?}"));
                }
            }
        }
        ParameterType::Integer => {
            let is_int = value.as_i64().is_some() || value.as_u64().is_some();
            if !is_int {
                return Err(format!("must be a whole number, got {}", json_type(value)));
            }
            check_range(spec, value.as_f64().unwrap_or_default())?;
        }
        ParameterType::Number => {
            let n = value
                .as_f64()
                .ok_or_else(|| format!("must be a number, got {}", json_type(value)))?;
            check_range(spec, n)?;
        }
        ParameterType::Boolean => {
            if !value.is_boolean() {
                return Err(format!("must be true or false, got {}", json_type(value)));
            }
        }
        ParameterType::SecretRef
        | ParameterType::ConfigMapRef
        | ParameterType::PersistentVolumeClaimRef
        | ParameterType::ServiceAccountRef => {
            let kind = spec.type_.referenced_kind().unwrap_or("object");
            let s = value.as_str().ok_or_else(|| {
                format!(
                    "must be the name of a {kind} in the buyer's namespace, got {}",
                    json_type(value)
                )
            })?;
            if !is_dns_subdomain(s) {
                return Err(format!(
                    "must be the name of a {kind} in the buyer's namespace (lower-case letters, digits, '-' and '.'), got {s:?}"
                ));
            }
        }
    }
    if !spec.allowed.is_empty() && !spec.allowed.contains(value) {
        return Err(format!(
            "must be one of {}",
            spec.allowed
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(())
}

fn check_range(spec: &ParameterSpec, n: f64) -> Result<(), String> {
    if let Some(min) = spec.minimum
        && n < min
    {
        return Err(format!("must be at least {min}, got {n}"));
    }
    if let Some(max) = spec.maximum
        && n > max
    {
        return Err(format!("must be at most {max}, got {n}"));
    }
    Ok(())
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Bytes a parameter value counts for against `maxParameterBytes`: a
/// string's bytes, any other value's JSON.
pub fn parameter_bytes(value: &Value) -> usize {
    match value {
        Value::String(s) => s.len(),
        other => json_len(other),
    }
}

/// Length of `v` as compact JSON, counted without building the text.
pub fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, v) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

fn check_parameter_size(
    name: &str,
    value: &Value,
    whose: &'static str,
    limits: &SizeLimits,
) -> Result<(), ParameterError> {
    let bytes = parameter_bytes(value);
    if bytes > limits.max_parameter_bytes {
        return Err(ParameterError::TooLarge {
            name: name.to_string(),
            whose,
            bytes,
            limit: limits.max_parameter_bytes,
        });
    }
    Ok(())
}

/// Resolves an instance's parameters: default < plan < buyer, each checked,
/// none larger than `limits.max_parameter_bytes`.
pub fn resolve_parameters(
    offering: &Offering,
    plan: Option<&str>,
    given: &ParameterValues,
    limits: &SizeLimits,
) -> Result<ParameterValues, ParameterError> {
    let plan = match (plan, offering.plans.is_empty()) {
        (None, true) => None,
        (None, false) => {
            return Err(ParameterError::Plan(format!(
                "spec.plan is required; choose one of: {}",
                plan_names(offering)
            )));
        }
        (Some(name), _) => Some(offering.plans.iter().find(|p| p.name == name).ok_or_else(
            || {
                ParameterError::Plan(format!(
                    "plan {name:?} is not sold by this product; choose one of: {}",
                    if offering.plans.is_empty() {
                        "(no plans: leave spec.plan empty)".to_string()
                    } else {
                        plan_names(offering)
                    }
                ))
            },
        )?),
    };
    let mut values: BTreeMap<String, Value> = BTreeMap::new();
    for spec in &offering.parameters {
        if let Some(d) = &spec.default {
            values.insert(spec.name.clone(), d.clone());
        }
    }
    if let Some(plan) = plan {
        for (k, v) in &plan.parameters {
            values.insert(k.clone(), v.clone());
        }
    }
    for (name, value) in given {
        // Before any other check: a pattern is never run over a huge value.
        check_parameter_size(name, value, "the value", limits)?;
        let spec = find_param(&offering.parameters, name).ok_or_else(|| ParameterError::Value {
            name: name.clone(),
            rule: format!(
                "is not a parameter of this product (known: {})",
                offering
                    .parameters
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })?;
        if offering.locked.contains(name) {
            return Err(ParameterError::Value {
                name: name.clone(),
                rule: "is locked by the seller and cannot be set".into(),
            });
        }
        if let Some(plan) = plan
            && plan.parameters.contains_key(name)
        {
            return Err(ParameterError::Value {
                name: name.clone(),
                rule: format!(
                    "is set by plan {:?} and cannot be changed; choose another plan",
                    plan.name
                ),
            });
        }
        check_value(spec, value).map_err(|rule| ParameterError::Value {
            name: name.clone(),
            rule,
        })?;
        values.insert(name.clone(), value.clone());
    }
    for spec in &offering.parameters {
        match values.get(&spec.name) {
            None if spec.required => {
                return Err(ParameterError::Value {
                    name: spec.name.clone(),
                    rule: "is required".into(),
                });
            }
            None => {}
            Some(v) => {
                check_parameter_size(
                    &spec.name,
                    v,
                    "the seller's value (default or plan)",
                    limits,
                )?;
                check_value(spec, v).map_err(|rule| ParameterError::Value {
                    name: spec.name.clone(),
                    rule,
                })?
            }
        }
    }
    Ok(values)
}

fn plan_names(offering: &Offering) -> String {
    offering
        .plans
        .iter()
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Values available to placeholders besides the parameters.
#[derive(Clone, Debug)]
pub struct RenderContext<'a> {
    /// Name of the ServiceInstance.
    pub instance_name: &'a str,
    /// Namespace of the ServiceInstance (the customer).
    pub instance_namespace: &'a str,
    /// Namespace the objects are created in.
    pub target_namespace: &'a str,
    /// Resolved parameters.
    pub params: &'a ParameterValues,
}

impl RenderContext<'_> {
    fn lookup(&self, name: &str) -> Option<Cow<'_, Value>> {
        let own = |s: &str| Some(Cow::Owned(Value::String(s.to_string())));
        match name {
            "instance.name" => own(self.instance_name),
            "instance.namespace" => own(self.instance_namespace),
            "target.namespace" => own(self.target_namespace),
            _ => name
                .strip_prefix("params.")
                .and_then(|p| self.params.get(p))
                .map(Cow::Borrowed),
        }
    }
}

/// What may still be produced while rendering one instance. Every byte is
/// charged before it is copied, so an oversized object stops rendering as
/// soon as it passes a limit, without ever being built. The charge is the
/// object's compact JSON without escapes: never more than its real size, so
/// nothing within the limits is refused; the exact size of each finished
/// object is checked again.
struct Budget {
    limits: SizeLimits,
    /// Exact bytes of the objects already rendered.
    done: usize,
    /// Bytes charged for the object being rendered.
    current: usize,
    /// The object being rendered (None: a string template).
    index: Option<usize>,
}

impl Budget {
    fn new(limits: &SizeLimits) -> Self {
        Budget {
            limits: *limits,
            done: 0,
            current: 0,
            index: None,
        }
    }

    fn start(&mut self, index: Option<usize>) {
        self.index = index;
        self.current = 0;
    }

    fn charge(&mut self, bytes: usize) -> Result<(), RenderError> {
        self.current = self.current.saturating_add(bytes);
        self.check(self.current)
    }

    /// Checks an object's size (charged so far, or exact when finished).
    fn check(&self, object: usize) -> Result<(), RenderError> {
        let what = match self.index {
            Some(i) => format!("template object {i}"),
            None => "the string".to_string(),
        };
        if object > self.limits.max_object_bytes {
            return Err(RenderError::TooLarge {
                what,
                bytes: object,
                limit: self.limits.max_object_bytes,
                setting: "tenancy.sizeLimits.maxObjectBytes",
            });
        }
        let total = self.done.saturating_add(object);
        if self.index.is_some() && total > self.limits.max_instance_bytes {
            return Err(RenderError::TooLarge {
                what: match self.index {
                    Some(i) if i > 0 => format!("template objects 0 to {i} together"),
                    _ => what,
                },
                bytes: total,
                limit: self.limits.max_instance_bytes,
                setting: "tenancy.sizeLimits.maxInstanceBytes",
            });
        }
        Ok(())
    }

    /// Counts a finished object by its exact size.
    fn finish(&mut self, exact: usize) -> Result<(), RenderError> {
        self.check(exact)?;
        self.done = self.done.saturating_add(exact);
        self.current = 0;
        Ok(())
    }
}

/// Renders every template object for one instance: placeholders replaced,
/// namespace forced to the target, labels added. Stops with
/// [`RenderError::TooLarge`] as soon as one object passes
/// `limits.max_object_bytes` or all of them `limits.max_instance_bytes`.
pub fn render_objects(
    objects: &[Value],
    ctx: &RenderContext<'_>,
    labels: &BTreeMap<String, String>,
    limits: &SizeLimits,
) -> Result<Vec<Value>, RenderError> {
    let mut out = Vec::with_capacity(objects.len());
    let mut budget = Budget::new(limits);
    let mut path = String::new();
    for (index, obj) in objects.iter().enumerate() {
        budget.start(Some(index));
        path.clear();
        let mut rendered = substitute(obj, ctx, index, &mut path, &mut budget)?;
        let map = rendered
            .as_object_mut()
            .ok_or_else(|| RenderError::Invalid {
                index,
                rule: "must be an object".into(),
            })?;
        let meta = map
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .ok_or_else(|| RenderError::Invalid {
                index,
                rule: "metadata must be an object".into(),
            })?;
        let name = meta.get("name").and_then(Value::as_str).unwrap_or_default();
        if !is_dns_subdomain(name) {
            return Err(RenderError::Invalid {
                index,
                rule: format!(
                    "rendered metadata.name {name:?} is not a valid name (lower-case letters, digits, '-' and '.', at most 253)"
                ),
            });
        }
        meta.insert(
            "namespace".into(),
            Value::String(ctx.target_namespace.to_string()),
        );
        let label_map = meta
            .entry("labels")
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .ok_or_else(|| RenderError::Invalid {
                index,
                rule: "metadata.labels must be a map".into(),
            })?;
        for (k, v) in labels {
            label_map.insert(k.clone(), Value::String(v.clone()));
        }
        budget.finish(json_len(&rendered))?;
        out.push(rendered);
    }
    // After rendering: two template objects (the ISV's, or the ISV's and the
    // distributor's) must not become the same object, whatever their raw names.
    let mut seen: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for (index, obj) in out.iter().enumerate() {
        let api_version = obj["apiVersion"].as_str().unwrap_or_default();
        let group = api_version
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or_default();
        let kind = obj["kind"].as_str().unwrap_or_default().to_string();
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if let Some(first) = seen.insert((group.to_string(), kind.clone(), name.clone()), index) {
            return Err(RenderError::Collision {
                first,
                second: index,
                kind,
                name,
            });
        }
    }
    Ok(out)
}

/// Renders a string template (for example the logon URL); every placeholder
/// must resolve, and the result may not pass `limits.max_object_bytes`.
pub fn render_string(
    template: &str,
    ctx: &RenderContext<'_>,
    limits: &SizeLimits,
) -> Result<String, RenderError> {
    let mut budget = Budget::new(limits);
    match substitute_str(template, ctx, 0, "outputs", &mut budget)? {
        Value::String(s) => Ok(s),
        other => Ok(other.to_string()),
    }
}

fn substitute(
    v: &Value,
    ctx: &RenderContext<'_>,
    index: usize,
    path: &mut String,
    budget: &mut Budget,
) -> Result<Value, RenderError> {
    Ok(match v {
        Value::String(s) => substitute_str(s, ctx, index, path, budget)?,
        Value::Array(items) => {
            // Brackets and commas.
            budget.charge(items.len().max(1) + 1)?;
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                let _ = write!(path, "[{i}]");
                out.push(substitute(item, ctx, index, path, budget)?);
                path.truncate(len);
            }
            Value::Array(out)
        }
        Value::Object(map) => {
            budget.charge(map.len().max(1) + 1)?;
            let mut out = Map::new();
            for (k, item) in map {
                // The key, its quotes and the colon.
                budget.charge(k.len() + 3)?;
                let len = path.len();
                path.push('.');
                path.push_str(k);
                let value = substitute(item, ctx, index, path, budget)?;
                path.truncate(len);
                out.insert(k.clone(), value);
            }
            Value::Object(out)
        }
        other => {
            budget.charge(json_len(other))?;
            other.clone()
        }
    })
}

fn substitute_str(
    s: &str,
    ctx: &RenderContext<'_>,
    index: usize,
    path: &str,
    budget: &mut Budget,
) -> Result<Value, RenderError> {
    let unknown = |name: &str| RenderError::UnknownPlaceholder {
        index,
        name: name.to_string(),
        path: path.to_string(),
    };
    // A string that is exactly one placeholder takes the value's own type.
    if let Some(name) = s.strip_prefix("$(").and_then(|r| r.strip_suffix(')'))
        && !name.contains("$(")
        && !name.contains(')')
    {
        let value = ctx.lookup(name).ok_or_else(|| unknown(name))?;
        budget.charge(match value.as_ref() {
            Value::String(v) => v.len() + 2,
            other => json_len(other),
        })?;
        return Ok(value.into_owned());
    }
    // The quotes.
    budget.charge(2)?;
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("$(") {
        let after = &rest[start + 2..];
        let Some(end) = after.find(')') else {
            // No closing parenthesis: the rest is text.
            break;
        };
        budget.charge(start)?;
        out.push_str(&rest[..start]);
        let name = &after[..end];
        let value = ctx.lookup(name).ok_or_else(|| unknown(name))?;
        match value.as_ref() {
            Value::String(v) => {
                budget.charge(v.len())?;
                out.push_str(v);
            }
            other => {
                budget.charge(json_len(other))?;
                let _ = write!(out, "{other}");
            }
        }
        rest = &after[end + 1..];
    }
    budget.charge(rest.len())?;
    out.push_str(rest);
    Ok(Value::String(out))
}

/// A pod of a customer-owned instance names an object of the customer's
/// namespace that the instance neither creates nor was given by the buyer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForbiddenReference {
    /// Index of the rendered object (the ISV's objects, then the distributor's).
    pub index: usize,
    /// The object, as `apiVersion Kind "name"`.
    pub object: String,
    /// Where in the object, for example `spec.template.spec.volumes[0].secret.secretName`.
    pub path: String,
    /// Kind named: Secret, ConfigMap, PersistentVolumeClaim, ServiceAccount
    /// (or `group/Kind` for another data source).
    pub kind: String,
    /// Name given (the JSON text when it is not a string).
    pub name: String,
}

impl std::fmt::Display for ForbiddenReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "template object {} ({}): {} names {} {:?}, which this instance does not create and the buyer did not name; ",
            self.index, self.object, self.path, self.kind, self.name
        )?;
        if REFERENCE_KINDS.contains(&self.kind.as_str()) {
            write!(
                f,
                "create the {kind} in the template, or take its name from a {kind}Ref parameter that the buyer sets (\"$(params.NAME)\")",
                kind = self.kind
            )
        } else {
            write!(f, "create the {} in the template", self.kind)
        }
    }
}

impl std::error::Error for ForbiddenReference {}

/// Kinds a reference parameter may name.
const REFERENCE_KINDS: &[&str] = &[
    "Secret",
    "ConfigMap",
    "PersistentVolumeClaim",
    "ServiceAccount",
];

/// Checks that the pods of one instance's rendered objects use only what the
/// instance creates or the buyer hands over: for instances whose resources
/// live in the customer's own namespace, next to the customer's other
/// Secrets, ConfigMaps, PersistentVolumeClaims and ServiceAccounts.
///
/// Every pod spec is checked: a Pod's `spec`, and any object anywhere that
/// has a `containers` list (the pod templates of Deployments, StatefulSets,
/// Jobs, CronJobs and of any custom kind). It may name a ServiceAccount,
/// Secret, ConfigMap or PersistentVolumeClaim only when `objects` holds one of
/// that kind and name, or when the buyer's `given` values name it through a
/// parameter of the matching reference type (SecretRef, ...). Leaving out
/// `serviceAccountName` (or naming `default`) is allowed: the pod runs as
/// the namespace's `default` ServiceAccount, as any pod of the namespace may.
/// PersistentVolumeClaims anywhere (also outside pod specs) may clone from
/// (`dataSource`, `dataSourceRef`) only what the same rule allows.
pub fn check_pod_references(
    objects: &[Value],
    parameters: &[ParameterSpec],
    given: &ParameterValues,
) -> Result<(), ForbiddenReference> {
    // (API group, kind, name) of everything the instance may use.
    let mut usable: BTreeSet<(&str, &str, &str)> = BTreeSet::new();
    for obj in objects {
        let (group, kind, name) = identity(obj);
        usable.insert((group, kind, name));
    }
    for spec in parameters {
        if let Some(kind) = spec.type_.referenced_kind()
            && let Some(Value::String(name)) = given.get(&spec.name)
        {
            usable.insert(("", kind, name));
        }
    }
    let mut path = String::new();
    for (index, obj) in objects.iter().enumerate() {
        let mut found = Vec::new();
        path.clear();
        let (group, kind, _) = identity(obj);
        match obj.get("spec") {
            Some(spec) if group.is_empty() && kind == "Pod" && spec.is_object() => {
                path.push_str("spec");
                pod_references(spec, &mut path, &mut found);
            }
            _ => find_pod_specs(obj, &mut path, &mut found),
        }
        path.clear();
        data_sources(obj, &mut path, &mut found);
        for r in found {
            let allowed = match &r.name {
                Value::String(name) => {
                    usable.contains(&(r.group, r.kind, name.as_str()))
                        || (r.group.is_empty()
                            && r.kind == "ServiceAccount"
                            && (name.is_empty() || name == "default"))
                }
                _ => false,
            };
            if !allowed {
                let (_, _, name) = identity(obj);
                return Err(ForbiddenReference {
                    index,
                    object: format!(
                        "{} {kind} {name:?}",
                        obj.get("apiVersion")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                    ),
                    path: r.path,
                    kind: if r.group.is_empty() {
                        r.kind.to_string()
                    } else {
                        format!("{}/{}", r.group, r.kind)
                    },
                    name: match &r.name {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    },
                });
            }
        }
    }
    Ok(())
}

/// One name a pod spec (or a data source) gives.
struct Reference<'a> {
    path: String,
    group: &'a str,
    kind: &'a str,
    name: &'a Value,
}

/// (API group, kind, name) of a manifest; the core group is "".
fn identity(obj: &Value) -> (&str, &str, &str) {
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let group = api_version
        .rsplit_once('/')
        .map(|(g, _)| g)
        .unwrap_or_default();
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    (group, kind, name)
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

/// Finds every pod spec (an object with a `containers` list) under `v`.
fn find_pod_specs<'a>(v: &'a Value, path: &mut String, out: &mut Vec<Reference<'a>>) {
    match v {
        Value::Object(map) if map.get("containers").is_some_and(Value::is_array) => {
            pod_references(v, path, out);
        }
        Value::Object(map) => {
            for (k, item) in map {
                let len = path.len();
                push_key(path, k);
                find_pod_specs(item, path, out);
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                let _ = write!(path, "[{i}]");
                find_pod_specs(item, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// How a key of a pod spec names an object.
enum Slot {
    /// The value is the name (`serviceAccountName`, `secretName`, `claimName`).
    Direct(&'static str),
    /// The value is an object whose `name` is the name (`secretRef`, `configMap`, ...).
    Named(&'static str),
    /// The value is a list of objects with a `name` (`imagePullSecrets`).
    List(&'static str),
}

fn slot(key: &str) -> Option<Slot> {
    Some(match key {
        "serviceAccountName" | "serviceAccount" => Slot::Direct("ServiceAccount"),
        "secretName" => Slot::Direct("Secret"),
        "claimName" => Slot::Direct("PersistentVolumeClaim"),
        "imagePullSecrets" => Slot::List("Secret"),
        "secret" | "secretRef" | "secretKeyRef" => Slot::Named("Secret"),
        "configMap" | "configMapRef" | "configMapKeyRef" => Slot::Named("ConfigMap"),
        k if k.ends_with("SecretRef") => Slot::Named("Secret"),
        k if k.ends_with("ConfigMapRef") => Slot::Named("ConfigMap"),
        _ => return None,
    })
}

/// Every name of a ServiceAccount, Secret, ConfigMap or PersistentVolumeClaim
/// anywhere in one pod spec, wherever the field sits (volumes, projected
/// sources, env, envFrom, CSI secret references, image pull secrets, ...).
fn pod_references<'a>(v: &'a Value, path: &mut String, out: &mut Vec<Reference<'a>>) {
    match v {
        Value::Object(map) => {
            for (k, item) in map {
                let len = path.len();
                push_key(path, k);
                match (slot(k), item) {
                    (Some(Slot::Direct(kind)), item) if !item.is_object() && !item.is_array() => {
                        out.push(Reference {
                            path: path.clone(),
                            group: "",
                            kind,
                            name: item,
                        });
                    }
                    (Some(Slot::Named(kind)), Value::Object(inner)) => {
                        if let Some(name) = inner.get("name") {
                            out.push(Reference {
                                path: format!("{path}.name"),
                                group: "",
                                kind,
                                name,
                            });
                        }
                        pod_references(item, path, out);
                    }
                    (Some(Slot::List(kind)), Value::Array(items)) => {
                        for (i, entry) in items.iter().enumerate() {
                            if let Some(name) = entry.get("name") {
                                out.push(Reference {
                                    path: format!("{path}[{i}].name"),
                                    group: "",
                                    kind,
                                    name,
                                });
                            }
                        }
                    }
                    _ => pod_references(item, path, out),
                }
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                let _ = write!(path, "[{i}]");
                pod_references(item, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// `dataSource` and `dataSourceRef` anywhere (a PersistentVolumeClaim, a
/// StatefulSet's volumeClaimTemplates, an ephemeral volume): a volume cloned
/// from another claim or a snapshot reads what that one holds.
fn data_sources<'a>(v: &'a Value, path: &mut String, out: &mut Vec<Reference<'a>>) {
    match v {
        Value::Object(map) => {
            for (k, item) in map {
                let len = path.len();
                push_key(path, k);
                if matches!(k.as_str(), "dataSource" | "dataSourceRef")
                    && let Some(name) = item.get("name")
                {
                    out.push(Reference {
                        path: format!("{path}.name"),
                        group: item
                            .get("apiGroup")
                            .and_then(Value::as_str)
                            .unwrap_or_default(),
                        kind: item.get("kind").and_then(Value::as_str).unwrap_or_default(),
                        name,
                    });
                } else {
                    data_sources(item, path, out);
                }
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                let _ = write!(path, "[{i}]");
                data_sources(item, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Whether `s` is a valid Kubernetes object name (DNS subdomain).
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests;
