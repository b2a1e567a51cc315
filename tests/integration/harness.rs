//! Shared by every integration test: one control plane per run (started by
//! `make test`, found through KUBECONFIG), the CRDs installed once, one
//! controller process per run, and a fresh namespace set per test.

use computenest::api;
use futures::Future;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// Default deadline for a condition to hold.
pub const DEADLINE: Duration = Duration::from_secs(45);

fn require_cluster() -> String {
    match std::env::var("KUBECONFIG") {
        Ok(k) if std::path::Path::new(&k).exists() => k,
        _ => panic!(
            "integration tests need a Kubernetes control plane: run `make test`, or start one with \
             `hack/controlplane.sh start` and `source /tmp/computenest-cp-$(id -un)/env`, then run \
             `cargo test --test integration` (KUBECONFIG must point at a kubeconfig file)"
        ),
    }
}

/// A client for the test control plane (each test has its own runtime, so its own client).
pub async fn client() -> Client {
    require_cluster();
    Client::try_default()
        .await
        .expect("KUBECONFIG is set but the API server cannot be reached")
}

static CRDS: OnceCell<()> = OnceCell::const_new();
static CONTROLLER: OnceLock<Mutex<Option<Child>>> = OnceLock::new();
/// The controller's health/metrics address.
pub static CONTROLLER_ADDR: OnceLock<String> = OnceLock::new();

/// The test controller's limit of managed namespaces per customer.
pub const PLATFORM_MAX_MANAGED: usize = 6;
/// The test controller's operator ClusterRole: not the chart's name, so
/// that the chart test installs its own on the same control plane.
pub const OPERATOR_ROLE: &str = "computenest-test-operator";

/// An operator ClusterRole like the one the chart ships
/// (templates/operator-role.yaml; the chart test checks the chart's own
/// rules): here the part the tests use, under the test controller's name.
async fn install_operator_role(client: &Client) {
    use k8s_openapi::api::rbac::v1::ClusterRole;
    let role: ClusterRole = serde_json::from_value(serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": OPERATOR_ROLE},
        "rules": [
            {"apiGroups": [""], "resources": ["pods", "pods/log", "services", "configmaps", "events"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets"], "verbs": ["get", "list", "watch", "patch", "update"]}
        ]
    }))
    .expect("operator role");
    Api::<ClusterRole>::all(client.clone())
        .patch(
            OPERATOR_ROLE,
            &PatchParams::apply("computenest-tests").force(),
            &Patch::Apply(&role),
        )
        .await
        .expect("operator ClusterRole applies");
}

/// Installs the CRDs (once per run) and waits until they are Established.
pub async fn install_crds(client: &Client) {
    CRDS.get_or_init(|| async {
        install_operator_role(client).await;
        let api = Api::<CustomResourceDefinition>::all(client.clone());
        for crd in api::all_crds() {
            api.patch(
                &crd.name_any(),
                &PatchParams::apply("computenest-tests").force(),
                &Patch::Apply(&crd),
            )
            .await
            .expect("CRD applies");
        }
        for crd in api::all_crds() {
            let name = crd.name_any();
            wait_for(&format!("CRD {name} Established"), DEADLINE, || {
                let api = api.clone();
                let name = name.clone();
                async move {
                    let c = api.get(&name).await.ok()?;
                    c.status?
                        .conditions?
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                        .then_some(())
                }
            })
            .await;
        }
    })
    .await;
}

/// The chart's admission policy for UsageRecords, the same file, applied
/// under a name of the tests' own (`-tests`): the chart test installs the
/// chart into this control plane afterwards, and Helm refuses to adopt an
/// object it did not create.
const USAGE_RECORD_POLICY: &str =
    include_str!("../../charts/computenest-controller/templates/usage-record-policy.yaml");

/// Installs it; the tests that need it remove it when done
/// ([`remove_usage_record_policy`]), so that it is in force only while they run.
pub async fn install_usage_record_policy(client: &Client) {
    use k8s_openapi::api::admissionregistration::v1::{
        ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    };
    use serde::Deserialize;
    let pp = PatchParams::apply("computenest-tests").force();
    for doc in serde_yaml::Deserializer::from_str(USAGE_RECORD_POLICY) {
        let mut value = serde_json::Value::deserialize(doc).expect("policy YAML");
        let name = format!(
            "{}-tests",
            value["metadata"]["name"].as_str().unwrap_or_default()
        );
        value["metadata"]["name"] = name.clone().into();
        match value["kind"].as_str() {
            Some("ValidatingAdmissionPolicy") => {
                Api::<ValidatingAdmissionPolicy>::all(client.clone())
                    .patch(&name, &pp, &Patch::Apply(&value))
                    .await
                    .expect("the usage record policy applies");
            }
            Some("ValidatingAdmissionPolicyBinding") => {
                let policy = value["spec"]["policyName"].as_str().unwrap_or_default();
                value["spec"]["policyName"] = format!("{policy}-tests").into();
                Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
                    .patch(&name, &pp, &Patch::Apply(&value))
                    .await
                    .expect("the usage record policy binding applies");
            }
            other => panic!("unexpected kind {other:?} in usage-record-policy.yaml"),
        }
    }
}

/// Removes what [`install_usage_record_policy`] installed.
pub async fn remove_usage_record_policy(client: &Client) {
    use k8s_openapi::api::admissionregistration::v1::{
        ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    };
    let name = "computenest-usage-records-tests";
    let _ = Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await;
    let _ = Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await;
}

/// Starts the controller binary once per run (it exits with this process).
pub async fn ensure_controller(client: &Client) {
    install_crds(client).await;
    let cell = CONTROLLER.get_or_init(|| Mutex::new(None));
    let addr = {
        let mut guard = cell.lock().expect("controller lock");
        if guard.is_none() {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let log =
                std::fs::File::create(std::env::temp_dir().join("computenest-test-controller.log"))
                    .expect("controller log file");
            // COMPUTENEST_TEST_CONTROLLER runs the suite against another build
            // (for example the previous release, to see a new test fail there).
            let bin = std::env::var("COMPUTENEST_TEST_CONTROLLER")
                .unwrap_or_else(|_| env!("CARGO_BIN_EXE_computenest-controller").to_string());
            let child = Command::new(bin)
                .args(["run", "--health-addr", &addr, "--concurrency", "8"])
                .arg(format!("--exit-with-parent={}", std::process::id()))
                .env("RUST_LOG", "info,kube=warn")
                // The default kinds, and the two workload kinds with health
                // rules that the default leaves out (tests/integration/health.rs).
                .env(
                    "COMPUTENEST_ALLOWED_KINDS",
                    "v1/ConfigMap/configmaps,v1/Secret/secrets,v1/Service/services,\
                     v1/ServiceAccount/serviceaccounts,v1/PersistentVolumeClaim/persistentvolumeclaims,\
                     apps/v1/Deployment/deployments,apps/v1/StatefulSet/statefulsets,\
                     apps/v1/DaemonSet/daemonsets,apps/v1/ReplicaSet/replicasets,\
                     batch/v1/Job/jobs,batch/v1/CronJob/cronjobs,\
                     networking.k8s.io/v1/Ingress/ingresses,networking.k8s.io/v1/NetworkPolicy/networkpolicies,\
                     policy/v1/PodDisruptionBudget/poddisruptionbudgets",
                )
                // A commercial day of 6 s: trials and terms run in seconds.
                .env("COMPUTENEST_COMMERCE_DAY_SECONDS", "6")
                // Orphans are swept every few seconds, so tests see it happen.
                .env("COMPUTENEST_SWEEP_INTERVAL", "3")
                // A platform limit small enough for a test to reach.
                .env(
                    "COMPUTENEST_TENANCY_POLICY",
                    format!(
                        r#"{{"maxManagedNamespacesPerCustomer": {PLATFORM_MAX_MANAGED}, "operatorClusterRole": "{OPERATOR_ROLE}"}}"#
                    ),
                )
                .stdout(Stdio::from(log.try_clone().expect("log handle")))
                .stderr(Stdio::from(log))
                .spawn()
                .expect("the controller binary starts");
            *guard = Some(child);
            let _ = CONTROLLER_ADDR.set(addr.clone());
        }
        CONTROLLER_ADDR.get().cloned().unwrap_or_default()
    };
    wait_for("controller /readyz", DEADLINE, || {
        let addr = addr.clone();
        async move {
            http_get(&addr, "/readyz")
                .await
                .filter(|b| b.starts_with("ok"))
                .map(|_| ())
        }
    })
    .await;
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Minimal HTTP GET on loopback (the health server); None when it does not answer 200.
pub async fn http_get(addr: &str, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// Polls `check` until it returns Some, or panics with `what` after `deadline`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How every controller test begins: a client, the controller running, and
/// fresh namespaces for `roles`.
pub async fn controller_and_namespaces(roles: &[&str]) -> (Client, TestNamespaces) {
    let client = client().await;
    ensure_controller(&client).await;
    let namespaces = TestNamespaces::new(&client, roles).await;
    (client, namespaces)
}

/// A set of namespaces for one test, with random names; `cleanup` deletes them.
pub struct TestNamespaces {
    /// Client.
    pub client: Client,
    /// Names, in the order asked for.
    pub names: Vec<String>,
}

impl TestNamespaces {
    /// Creates namespaces named `<role>-<random>` for each role.
    pub async fn new(client: &Client, roles: &[&str]) -> Self {
        let api = Api::<Namespace>::all(client.clone());
        let suffix = format!("{:06x}", rand::random::<u32>() & 0xffffff);
        let mut names = Vec::new();
        for role in roles {
            let name = format!("{role}-{suffix}");
            let ns = Namespace {
                metadata: kube::api::ObjectMeta {
                    name: Some(name.clone()),
                    ..Default::default()
                },
                ..Default::default()
            };
            api.create(&PostParams::default(), &ns)
                .await
                .expect("test namespace is created");
            names.push(name);
        }
        TestNamespaces {
            client: client.clone(),
            names,
        }
    }

    /// Name of the i-th namespace.
    pub fn ns(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// Deletes the namespaces (and waits for nothing: the control plane is thrown away anyway).
    pub async fn cleanup(self) {
        let api = Api::<Namespace>::all(self.client.clone());
        for n in &self.names {
            let _ = api.delete(n, &DeleteParams::default()).await;
        }
    }
}

/// A namespaced kind the tests read and write as typed objects.
pub trait Namespaced:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
{
}

impl<K> Namespaced for K where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug
{
}

/// Server-side applies `obj` into `ns` with the tests' own field manager.
pub async fn apply<K: Namespaced>(client: &Client, ns: &str, obj: &K) -> Result<K, kube::Error> {
    let api = Api::<K>::namespaced(client.clone(), ns);
    let mut value = serde_json::to_value(obj).expect("serializable");
    value["apiVersion"] = K::api_version(&()).into();
    value["kind"] = K::kind(&()).into();
    if let Some(m) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        m.insert("namespace".into(), ns.into());
    }
    if let Some(m) = value.as_object_mut() {
        m.remove("status");
    }
    api.patch(
        &obj.name_any(),
        &PatchParams::apply("computenest-tests").force(),
        &Patch::Apply(&value),
    )
    .await
}

/// [`apply`] for set-up steps that must succeed: the applied object, or a
/// panic that names the object and the API server's answer.
pub async fn put<K: Namespaced>(client: &Client, ns: &str, obj: &K) -> K {
    apply(client, ns, obj)
        .await
        .unwrap_or_else(|e| panic!("{} {ns}/{}: {e}", K::kind(&()), obj.name_any()))
}

/// Merge-patches the object `name` in `ns` with `patch` (a JSON merge patch:
/// `{"spec": {...}}` changes only the fields it names).
pub async fn merge<K: Namespaced>(
    client: &Client,
    ns: &str,
    name: &str,
    patch: serde_json::Value,
) -> Result<K, kube::Error> {
    Api::<K>::namespaced(client.clone(), ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
}

/// Waits until the object `name` in `ns` no longer exists.
pub async fn wait_gone<K: Namespaced>(client: &Client, ns: &str, name: &str) {
    let api = Api::<K>::namespaced(client.clone(), ns);
    wait_for(
        &format!("{} {ns}/{name} is gone", K::kind(&())),
        DEADLINE,
        || async { api.get_opt(name).await.ok()?.is_none().then_some(()) },
    )
    .await;
}

/// How long a wait that includes the deletion of a namespace may take: the
/// controller manager's namespace controller, not ours, decides it, and on a
/// loaded two-core machine with many namespaces going at once it queues.
pub const NAMESPACE_DELETION: Duration = Duration::from_secs(150);

/// Waits until the object's Ready condition has `status` and `reason`; returns the object.
pub async fn wait_ready<K: Namespaced>(
    client: &Client,
    ns: &str,
    name: &str,
    status: &str,
    reason: &str,
) -> K {
    wait_ready_within(client, ns, name, status, reason, DEADLINE).await
}

/// [`wait_ready`] with a deadline of its own.
pub async fn wait_ready_within<K: Namespaced>(
    client: &Client,
    ns: &str,
    name: &str,
    status: &str,
    reason: &str,
    deadline: Duration,
) -> K {
    let api = Api::<K>::namespaced(client.clone(), ns);
    let what = format!(
        "{} {ns}/{name} Ready={status} reason={reason}",
        K::kind(&())
    );
    let mut last = String::new();
    let start = Instant::now();
    loop {
        if let Ok(obj) = api.get(name).await {
            let v = serde_json::to_value(&obj).unwrap_or_default();
            let cond = v["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                .cloned()
                .unwrap_or_default();
            let generation = v["metadata"]["generation"].as_i64();
            let observed = v["status"]["observedGeneration"].as_i64();
            if cond["status"] == status && cond["reason"] == reason && observed == generation {
                return obj;
            }
            last = cond.to_string();
        }
        if start.elapsed() > deadline {
            panic!("timed out waiting for {what}; last Ready condition: {last}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the instance is Deployed (Ready, reason Deployed); returns it.
pub async fn wait_deployed(client: &Client, ns: &str, name: &str) -> api::ServiceInstance {
    wait_ready(client, ns, name, "True", "Deployed").await
}

/// The customer buys: applies `instance` in `ns` and waits until it is Deployed.
pub async fn buy(
    client: &Client,
    ns: &str,
    instance: &api::ServiceInstance,
) -> api::ServiceInstance {
    put(client, ns, instance).await;
    wait_deployed(client, ns, &instance.name_any()).await
}

/// The distributor resells: applies `derived` in `ns` and waits until it is Sellable.
pub async fn resell(
    client: &Client,
    ns: &str,
    derived: &api::DerivedService,
) -> api::DerivedService {
    put(client, ns, derived).await;
    wait_ready(client, ns, &derived.name_any(), "True", "Sellable").await
}

/// The namespace an instance's objects were deployed into (its own managed
/// namespace, or the customer's for a private sale).
pub fn target_namespace(instance: &api::ServiceInstance) -> String {
    instance
        .status
        .as_ref()
        .and_then(|s| s.owner.as_ref())
        .map(|o| o.target_namespace.clone())
        .expect("the instance's status names its target namespace")
}

/// Names of the ConfigMaps the controller manages in `ns`.
pub async fn managed_config_maps(client: &Client, ns: &str) -> Vec<String> {
    use k8s_openapi::api::core::v1::ConfigMap;
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .list(
            &kube::api::ListParams::default()
                .labels("app.kubernetes.io/managed-by=computenest-controller"),
        )
        .await
        .map(|l| l.items.iter().map(|c| c.name_any()).collect())
        .unwrap_or_default()
}

/// Waits for an Event with `reason` about the object named `about` in `ns`.
pub async fn wait_event(client: &Client, ns: &str, reason: &str, about: &str) {
    use k8s_openapi::api::events::v1::Event;
    wait_for(
        &format!("an Event {reason} in {ns} about {about}"),
        DEADLINE,
        || async {
            Api::<Event>::namespaced(client.clone(), ns)
                .list(&Default::default())
                .await
                .ok()?
                .items
                .iter()
                .any(|e| {
                    e.reason.as_deref() == Some(reason)
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(about)
                })
                .then_some(())
        },
    )
    .await;
}

/// Asserts that the object's Ready message contains `text`; a failure shows the message.
#[track_caller]
pub fn assert_message_contains<K: Serialize>(obj: &K, text: &str) {
    let message = ready_message(obj);
    assert!(
        message.contains(text),
        "the Ready message does not contain {text:?}: {message}"
    );
}

/// The Ready condition's message of a JSON-serialized object.
pub fn ready_message<K: Serialize>(obj: &K) -> String {
    let v = serde_json::to_value(obj).unwrap_or_default();
    v["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// A client that acts as `user` (with `groups`), through impersonation by the
/// test's admin credentials: every request is authorized as that user.
pub async fn impersonate(user: &str, groups: &[&str]) -> Client {
    let mut config = kube::Config::infer().await.expect("kubeconfig");
    config.auth_info.impersonate = Some(user.to_string());
    if !groups.is_empty() {
        config.auth_info.impersonate_groups = Some(groups.iter().map(|g| g.to_string()).collect());
    }
    Client::try_from(config).expect("impersonating client")
}

/// Gives `user` the RBAC `rules` in `ns` (a Role and a RoleBinding named after the user).
pub async fn allow(client: &Client, ns: &str, user: &str, rules: serde_json::Value) {
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let role: Role = serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("test-{user}")}, "rules": rules
    }))
    .expect("role");
    let binding: RoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("test-{user}")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("test-{user}")},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]
    }))
    .expect("binding");
    let pp = PostParams::default();
    Api::<Role>::namespaced(client.clone(), ns)
        .create(&pp, &role)
        .await
        .expect("role is created");
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .create(&pp, &binding)
        .await
        .expect("role binding is created");
    // RBAC is served from the API server's caches: wait until it answers yes.
    use k8s_openapi::api::authorization::v1::SubjectAccessReview;
    let first = &rules[0];
    let review: SubjectAccessReview = serde_json::from_value(serde_json::json!({
        "spec": {"user": user, "resourceAttributes": {
            "namespace": ns,
            "group": first["apiGroups"][0],
            "resource": first["resources"][0].as_str().unwrap_or_default().split('/').next(),
            "verb": first["verbs"][0].as_str().map(|v| if v == "*" { "get" } else { v }),
        }}
    }))
    .expect("review");
    wait_for(&format!("RBAC allows {user} in {ns}"), DEADLINE, || {
        let api = Api::<SubjectAccessReview>::all(client.clone());
        let review = review.clone();
        async move {
            let r = api.create(&PostParams::default(), &review).await.ok()?;
            r.status.filter(|s| s.allowed).map(|_| ())
        }
    })
    .await;
}

/// Every object that matches `selector`, wherever a write could land: every
/// kind templates may create (the controller's default allow-list) plus
/// Roles, RoleBindings and Orders in every namespace, and the cluster-scoped
/// kinds a hostile template could aim at, through cluster-scoped URLs.
/// Each as `Kind namespace/name uid=<instance-uid label>`.
pub async fn everything_labelled(client: &Client, selector: &str) -> Vec<String> {
    use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
    let lp = kube::api::ListParams::default().labels(selector);
    let mut kinds: Vec<(ApiResource, bool)> = computenest::render::default_allowed_kinds()
        .iter()
        .map(|k| {
            (
                ApiResource::from_gvk_with_plural(
                    &GroupVersionKind::gvk(&k.group, &k.version, &k.kind),
                    &k.plural,
                ),
                true,
            )
        })
        .collect();
    for (g, v, k, plural, namespaced) in [
        ("rbac.authorization.k8s.io", "v1", "Role", "roles", true),
        (
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            true,
        ),
        ("computenest.dev", "v1alpha1", "Order", "orders", true),
        ("", "v1", "Namespace", "namespaces", false),
        ("", "v1", "PersistentVolume", "persistentvolumes", false),
        (
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            false,
        ),
        (
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
        ),
        (
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            false,
        ),
        (
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
            false,
        ),
        (
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
        ),
    ] {
        kinds.push((
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(g, v, k), plural),
            namespaced,
        ));
    }
    let mut found = Vec::new();
    for (ar, _namespaced) in kinds {
        // Api::all lists a namespaced kind across every namespace, and a
        // cluster-scoped kind through its cluster-scoped URL.
        let api = Api::<DynamicObject>::all_with(client.clone(), &ar);
        let list = api
            .list_metadata(&lp)
            .await
            .unwrap_or_else(|e| panic!("list {}: {e}", ar.plural));
        for m in list.items {
            found.push(format!(
                "{} {}/{} uid={}",
                ar.kind,
                m.metadata.namespace.clone().unwrap_or_default(),
                m.name_any(),
                m.labels()
                    .get("computenest.dev/instance-uid")
                    .cloned()
                    .unwrap_or_default()
            ));
        }
    }
    found
}
