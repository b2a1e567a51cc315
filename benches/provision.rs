//! Provisioning benchmark against real control planes (run by `make bench`,
//! which builds the controller in release mode; this program starts and
//! stops the control planes itself with hack/controlplane.sh).
//!
//! Every arm runs on a fresh control plane (etcd, kube-apiserver,
//! kube-controller-manager), all with the same audit policy: mutating
//! requests (create, update, patch, delete, subresources included) logged at
//! level Request, nothing for reads, watches, leases and events.
//!
//! Per round of N instances (mixed over the four scenarios and direct
//! purchases, 4 template objects each), repeated BENCH_REPS times:
//!
//! 1. **controller**: set up the products, start the controller (its own
//!    client certificate, user `computenest-controller`), create N instances,
//!    time until all are seen Deployed. Also: writes per instance (the
//!    controller's `computenest_api_writes_total`, cross-checked against
//!    `apiserver_request_total` and the audit log), reads per instance, p50/p99.
//! 2. **floor**: on a fresh control plane with the same set-up (products, no
//!    controller), replay exactly the mutating requests of the controller arm
//!    (the bench's own creates and every controller request received before
//!    convergence, from the audit log) as fast as the API server takes them,
//!    with a client concurrency sweep, keeping the best. Only the ordering the
//!    API needs is kept: a namespace's create before requests in it, an
//!    object's create before its other requests, and a create before any
//!    request naming the UID it produced (UIDs are substituted old -> new;
//!    resourceVersion preconditions are stripped). The floor fails loudly if
//!    it did not send the same number of requests per (verb, resource,
//!    subresource) as the recorded arm, or if a request that succeeded there
//!    fails here.
//! 3. **KCM peer**: N Deployments of 4 replicas; kube-controller-manager
//!    (unthrottled) creates N ReplicaSets and 4N Pods (no kubelet); time until
//!    all 4N Pods exist. **KCM floor**: the same replay of the bench's
//!    Deployment creates and kube-controller-manager's requests, on a fresh
//!    control plane whose kube-controller-manager runs neither the Deployment
//!    nor the ReplicaSet controller.
//!
//! Once, before any round, on its own fresh control plane: single-instance
//! create-to-Deployed latency on an idle system. After the last repetition
//! of the largest round: idle writes, drift repair latency (deletions of
//! provisioned objects, one at a time), peak RSS and CPU, and a restart over
//! everything converged.
//!
//! The upgrade round, on its own fresh control plane: N instances pinned to
//! 1.0.0 move to 2.0.0 and back (each direction timed until all run it, with
//! the controller's writes per instance); the floor makes the same writes
//! with a bare client from the same state (other instances of the same
//! Service converged at 1.0.0 on the same control plane, controller stopped).
//!
//! Environment:
//! - BENCH_CONTROLLER: controller binary (target/release/computenest-controller)
//! - BENCH_SIZES: rounds (100,1000,10000)
//! - BENCH_REPS: repetitions per round (3)
//! - BENCH_LARGE_FROM / BENCH_LARGE_REPS: rounds of at least this size (10000)
//!   run this many repetitions (1), their floor uses only the best
//!   concurrency of the largest smaller round, and their KCM peer is skipped
//!   when BENCH_KCM_LARGE=0 (default)
//! - BENCH_FLOOR_CONCURRENCY: the floor's sweep (16,64,256)
//! - BENCH_SWEEP_REPS: repetitions that sweep (1); later ones replay at the
//!   best concurrency found so far for that round
//! - BENCH_CONCURRENCY: the controller's --concurrency and the bench's create
//!   concurrency (16)
//! - BENCH_IDLE_SECS (60), BENCH_SINGLE_TRIES (50)
//! - BENCH_REPAIRS: provisioned objects deleted one at a time after the idle
//!   phase of the largest round, each timed until the controller has made it
//!   again (drift repair latency; 200, quick 50, 0 skips)
//! - BENCH_UPGRADES: instances of the upgrade round (1000, quick 200, 0
//!   skips): they move from one version to another that changes one object,
//!   adds one and removes one, and back; see [`upgrade_round`]
//! - BENCH_QUICK=1: sizes 100,1000, 1 repetition, floor concurrency 64 only,
//!   idle 10 s, 20 single tries (each still overridable by its own variable)
//! - BENCH_CP_SCRIPT: the control-plane script (hack/controlplane.sh); its
//!   CP_* variables (e.g. CP_KCM_EXTRA_ARGS, set by hack/bench.sh) pass through.
//!   Unless CP_PODS and CP_CONTROLLERS are set, every arm runs the bare control
//!   plane the published numbers were measured on: CP_PODS=0 (no
//!   kube-scheduler, no kwok: pods never start) and kube-controller-manager's
//!   five controllers of [`BARE_CONTROLLERS`]
//! - BENCH_WORK: scratch directory for control planes and logs (a temp dir)

use futures::{StreamExt, TryStreamExt, stream};
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Client, Config, ResourceExt};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const FM: &str = "bench.computenest.dev";
/// The bench's own requests carry this User-Agent (kube-rs sends none).
const BENCH_UA: &str = "computenest-bench";
/// The controller's user name (its own client certificate).
const CONTROLLER_USER: &str = "computenest-controller";
const GROUP: &str = "computenest.dev";
const VERSION: &str = "v1alpha1";

const AUDIT_POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: None
  resources:
  - group: coordination.k8s.io
    resources: ["leases"]
  - group: ""
    resources: ["events"]
  - group: events.k8s.io
    resources: ["events"]
- level: Request
  verbs: ["create", "update", "patch", "delete", "deletecollection"]
- level: None
"#;

/// Products: (kind, seller namespace, name); mixed round-robin.
const PRODUCTS: [(&str, &str, &str); 6] = [
    ("DerivedService", "bench-dist", "p1"),
    ("DerivedService", "bench-dist", "p2"),
    ("DerivedService", "bench-dist", "p3"),
    ("DerivedService", "bench-dist", "p4"),
    ("Service", "bench-isv", "priv"),
    ("Service", "bench-isv", "fml"),
];

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}

fn env_num<T: std::str::FromStr>(key: &str, default: &str) -> Res<T> {
    let v = env_or(key, default);
    v.trim()
        .parse()
        .map_err(|_| format!("{key}={v:?} is not a number").into())
}

fn env_list(key: &str, default: &str) -> Res<Vec<usize>> {
    let v = env_or(key, default);
    let out: Vec<usize> = v
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("{key}={v:?} is not a comma-separated list of numbers"))?;
    if out.is_empty() || out.contains(&0) {
        return Err(format!("{key}={v:?}: give at least one number, none of them 0").into());
    }
    Ok(out)
}

struct Cfg {
    script: String,
    bin: String,
    work: PathBuf,
    policy: PathBuf,
    sizes: Vec<usize>,
    reps: usize,
    large_from: usize,
    large_reps: usize,
    kcm_large: bool,
    floor_conc: Vec<usize>,
    sweep_reps: usize,
    conc: usize,
    idle_secs: u64,
    tries: usize,
    repairs: usize,
    upgrades: usize,
    usage_records: usize,
    usage_instances: usize,
    quick: bool,
    own_work: bool,
}

impl Cfg {
    fn from_env() -> Res<Cfg> {
        let quick = env_or("BENCH_QUICK", "0") == "1";
        let (sizes, reps, floor, idle, tries) = if quick {
            ("100,1000", "1", "64", "10", "20")
        } else {
            ("100,1000,10000", "3", "16,64,256", "60", "50")
        };
        let (work, own_work) = match std::env::var("BENCH_WORK") {
            Ok(w) => (PathBuf::from(w), false),
            Err(_) => (
                std::env::temp_dir().join(format!("computenest-bench-{}", std::process::id())),
                true,
            ),
        };
        std::fs::create_dir_all(&work)
            .map_err(|e| format!("cannot create the work directory {}: {e}", work.display()))?;
        let policy = work.join("audit-policy.yaml");
        std::fs::write(&policy, AUDIT_POLICY)
            .map_err(|e| format!("cannot write {}: {e}", policy.display()))?;
        Ok(Cfg {
            script: env_or("BENCH_CP_SCRIPT", "hack/controlplane.sh"),
            bin: env_or("BENCH_CONTROLLER", "target/release/computenest-controller"),
            work,
            policy,
            sizes: env_list("BENCH_SIZES", sizes)?,
            reps: env_num("BENCH_REPS", reps)?,
            large_from: env_num("BENCH_LARGE_FROM", "10000")?,
            large_reps: env_num("BENCH_LARGE_REPS", "1")?,
            kcm_large: env_or("BENCH_KCM_LARGE", "0") == "1",
            floor_conc: env_list("BENCH_FLOOR_CONCURRENCY", floor)?,
            sweep_reps: env_num("BENCH_SWEEP_REPS", "1")?,
            conc: env_num("BENCH_CONCURRENCY", "16")?,
            idle_secs: env_num("BENCH_IDLE_SECS", idle)?,
            tries: env_num("BENCH_SINGLE_TRIES", tries)?,
            repairs: env_num("BENCH_REPAIRS", if quick { "50" } else { "200" })?,
            upgrades: env_num("BENCH_UPGRADES", if quick { "200" } else { "1000" })?,
            usage_records: env_num(
                "BENCH_USAGE_RECORDS",
                if quick { "10000" } else { "100000" },
            )?,
            usage_instances: env_num("BENCH_USAGE_INSTANCES", "100")?,
            quick,
            own_work,
        })
    }
}

// ---- control planes ----------------------------------------------------------

/// kube-controller-manager's controllers when the numbers in BENCHMARKS.md
/// were measured (hack/controlplane.sh now runs more, for pods that start:
/// endpoints, quota, node lifecycle..., which would add their own writes).
const BARE_CONTROLLERS: &str = "garbage-collector-controller,namespace-controller,serviceaccount-token-controller,deployment-controller,replicaset-controller";

/// One throwaway control plane (hack/controlplane.sh), stopped on drop.
struct Cp {
    script: String,
    dir: PathBuf,
    start_s: f64,
    stopped: bool,
}

impl Cp {
    /// `controllers`: kube-controller-manager's --controllers, or its default.
    async fn start(cfg: &Cfg, tag: &str, controllers: Option<&str>) -> Res<Cp> {
        let dir = cfg.work.join(format!("cp-{tag}"));
        let log = cfg.work.join(format!("cp-{tag}.start.log"));
        let t = Instant::now();
        let mut cmd = tokio::process::Command::new(&cfg.script);
        cmd.arg("start")
            .arg(&dir)
            .env("CP_AUDIT_POLICY", &cfg.policy)
            .env("CP_EXTRA_CLIENTS", CONTROLLER_USER)
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log)?));
        // The bare control plane, unless the caller asked for more (see the
        // module documentation): the KCM peer's 4N pods are not scheduled or
        // simulated, and no controller the numbers were measured without writes.
        if std::env::var_os("CP_PODS").is_none() {
            cmd.env("CP_PODS", "0");
        }
        match controllers {
            Some(c) => {
                cmd.env("CP_CONTROLLERS", c);
            }
            None if std::env::var_os("CP_CONTROLLERS").is_none() => {
                cmd.env("CP_CONTROLLERS", BARE_CONTROLLERS);
            }
            None => {}
        }
        let status = cmd
            .status()
            .await
            .map_err(|e| format!("cannot run {}: {e}", cfg.script))?;
        if !status.success() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!(
                "{} start {} failed ({status}); its output:\n{text}",
                cfg.script,
                dir.display()
            )
            .into());
        }
        Ok(Cp {
            script: cfg.script.clone(),
            dir,
            start_s: t.elapsed().as_secs_f64(),
            stopped: false,
        })
    }

    fn controller_kubeconfig(&self) -> PathBuf {
        self.dir.join(format!("kubeconfig-{CONTROLLER_USER}"))
    }

    fn audit_log(&self) -> PathBuf {
        self.dir.join("logs/audit.log")
    }

    /// The bench's client: the admin certificate, User-Agent BENCH_UA.
    async fn client(&self) -> Res<Client> {
        let path = self.dir.join("kubeconfig");
        let kc = Kubeconfig::read_from(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .map_err(|e| format!("cannot use {}: {e}", path.display()))?;
        config.headers.push((
            http::header::USER_AGENT,
            http::HeaderValue::from_static(BENCH_UA),
        ));
        Ok(Client::try_from(config)?)
    }

    fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        match Command::new(&self.script)
            .arg("stop")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(s) if s.success() => {}
            other => eprintln!(
                "bench: stopping the control plane in {} failed ({other:?}); run: {} stop {}",
                self.dir.display(),
                self.script,
                self.dir.display()
            ),
        }
    }
}

impl Drop for Cp {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---- the workload ------------------------------------------------------------

fn template() -> Value {
    json!({"objects": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "$(instance.name)-config"}, "data": {"size": "$(params.size)"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "$(instance.name)-env"}, "data": {"mode": "production"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "$(instance.name)"}, "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "$(instance.name)"}}
    ]})
}

fn ar(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

fn cn(kind: &str, plural: &str) -> ApiResource {
    ar(GROUP, VERSION, kind, plural)
}

async fn apply(client: &Client, res: &ApiResource, ns: Option<&str>, v: Value) -> Res<()> {
    let name = v["metadata"]["name"]
        .as_str()
        .ok_or("apply: object without metadata.name")?
        .to_string();
    let api = match ns {
        Some(ns) => Api::<DynamicObject>::namespaced_with(client.clone(), ns, res),
        None => Api::<DynamicObject>::all_with(client.clone(), res),
    };
    api.patch(&name, &PatchParams::apply(FM).force(), &Patch::Apply(&v))
        .await
        .map_err(|e| format!("apply {} {name}: {e}", res.kind))?;
    Ok(())
}

async fn ensure_ns(client: &Client, name: &str) -> Res<()> {
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    apply(client, &ar("", "v1", "Namespace", "namespaces"), None, ns).await
}

async fn setup_products(client: &Client) -> Res<()> {
    let crd_ar = ar(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
    );
    for crd in computenest::api::all_crds() {
        apply(client, &crd_ar, None, serde_json::to_value(&crd)?).await?;
    }
    // Wait until every CRD is Established.
    let crds = Api::<DynamicObject>::all_with(client.clone(), &crd_ar);
    let want = computenest::api::all_crds().len();
    let start = Instant::now();
    loop {
        let established = crds
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|c| c.name_any().ends_with(GROUP) && condition_true(&c.data, "Established"))
            .count();
        if established >= want {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            return Err("the CRDs were not Established within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure_ns(client, "bench-isv").await?;
    ensure_ns(client, "bench-dist").await?;
    let svc = cn("Service", "services");
    let grant = cn("DistributionGrant", "distributiongrants");
    let derived = cn("DerivedService", "derivedservices");
    for (name, type_, listed) in [
        ("priv", "Private", false),
        ("fml", "FullyManaged", true),
        ("fmu", "FullyManaged", false),
    ] {
        apply(client, &svc, Some("bench-isv"), json!({
            "apiVersion": "computenest.dev/v1alpha1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": type_, "version": "1.0", "marketplace": {"listed": listed},
                     "distribution": {"enabled": true, "approval": "Manual"},
                     "parameters": [{"name": "size", "type": "String", "default": "small"}],
                     "template": template(), "outputs": {"logonUrl": "https://$(instance.name).$(instance.namespace).example.com"}}
        })).await?;
        apply(client, &grant, Some("bench-isv"), json!({
            "apiVersion": "computenest.dev/v1alpha1", "kind": "DistributionGrant", "metadata": {"name": format!("{name}-grant")},
            "spec": {"serviceName": name, "distributorNamespace": "bench-dist", "decision": "Approved"}
        })).await?;
    }
    for (name, source, type_) in [
        ("p1", "priv", "Private"),
        ("p2", "priv", "FullyManaged"),
        ("p3", "fml", "FullyManaged"),
        ("p4", "fmu", "FullyManaged"),
    ] {
        apply(client, &derived, Some("bench-dist"), json!({
            "apiVersion": "computenest.dev/v1alpha1", "kind": "DerivedService", "metadata": {"name": name},
            "spec": {"source": {"namespace": "bench-isv", "name": source}, "type": type_, "marketplace": {"listed": true}}
        })).await?;
    }
    Ok(())
}

fn condition_true(obj: &Value, type_: &str) -> bool {
    obj["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == type_ && c["status"] == "True")
    })
}

/// The ServiceVersions the controller published from the products, as
/// objects to make again (name, labels and spec; no status).
async fn published_versions(client: &Client) -> Res<Vec<(ApiResource, Value)>> {
    let res = cn("ServiceVersion", "serviceversions");
    let list = Api::<DynamicObject>::namespaced_with(client.clone(), "bench-isv", &res)
        .list(&ListParams::default())
        .await?;
    Ok(list
        .items
        .into_iter()
        .map(|v| {
            let obj = json!({"apiVersion": "computenest.dev/v1alpha1", "kind": "ServiceVersion",
                "metadata": {"name": v.name_any(), "namespace": "bench-isv", "labels": v.metadata.labels},
                "spec": v.data["spec"]});
            (res.clone(), obj)
        })
        .collect())
}

async fn wait_products_sellable(client: &Client) -> Res<()> {
    let api = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        "bench-dist",
        &cn("DerivedService", "derivedservices"),
    );
    let start = Instant::now();
    loop {
        let ready = api
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|d| condition_true(&d.data, "Ready"))
            .count();
        if ready == 4 {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(60) {
            return Err(format!("only {ready} of 4 derived products sellable after 60 s").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Records when each instance was first seen Deployed (watch-fed, like a user's kubectl --watch).
struct DeployedTimes {
    seen: Arc<Mutex<HashMap<String, Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl DeployedTimes {
    fn spawn(client: Client) -> Self {
        let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let inner = seen.clone();
        let task = tokio::spawn(async move {
            let api =
                Api::<DynamicObject>::all_with(client, &cn("ServiceInstance", "serviceinstances"));
            let mut s = watcher(api, watcher::Config::default()).boxed();
            while let Some(ev) = s.next().await {
                let o = match ev {
                    Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::InitApply(o)) => o,
                    _ => continue,
                };
                if o.data["status"]["phase"] == "Deployed"
                    && let Ok(mut m) = inner.lock()
                {
                    let key = format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any());
                    m.entry(key).or_insert_with(Instant::now);
                }
            }
        });
        DeployedTimes { seen, task }
    }
    fn get(&self, key: &str) -> Option<Instant> {
        self.seen.lock().ok().and_then(|m| m.get(key).copied())
    }
}

impl Drop for DeployedTimes {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn instance_json(name: &str, i: usize) -> Value {
    let (kind, ns, product) = PRODUCTS[i % PRODUCTS.len()];
    json!({"apiVersion": "computenest.dev/v1alpha1", "kind": "ServiceInstance", "metadata": {"name": name},
           "spec": {"serviceRef": {"kind": kind, "namespace": ns, "name": product}}})
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// (min, median, max)
fn spread(v: &[f64]) -> (f64, f64, f64) {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if s.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    let med = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    (s[0], med, s[n - 1])
}

fn median(v: &[f64]) -> f64 {
    spread(v).1
}

/// apiserver_request_total summed into (reads, writes).
async fn apiserver_requests(client: &Client) -> Res<(f64, f64)> {
    let req = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(req).await?;
    let (mut reads, mut writes) = (0.0, 0.0);
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let Some((labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let v: f64 = value.parse().unwrap_or(0.0);
        if labels.contains("verb=\"GET\"") || labels.contains("verb=\"LIST\"") {
            reads += v;
        } else if [
            "POST",
            "PUT",
            "PATCH",
            "DELETE",
            "APPLY",
            "DELETECOLLECTION",
        ]
        .iter()
        .any(|w| labels.contains(&format!("verb=\"{w}\"")))
        {
            writes += v;
        }
    }
    Ok((reads, writes))
}

/// Sum of a counter family on the controller's /metrics (with a label filter).
async fn controller_counter(addr: &str, name: &str, label: &str) -> f64 {
    let Some(body) = http_get(addr, "/metrics").await else {
        return f64::NAN;
    };
    body.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#') && l.contains(label))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum::<f64>()
        + 0.0 // an empty sum is -0.0; print it as 0
}

async fn http_get(addr: &str, path: &str) -> Option<String> {
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

struct Controller {
    child: Child,
    addr: String,
}

impl Controller {
    async fn start(
        bin: &str,
        concurrency: usize,
        kubeconfig: &Path,
        log: &Path,
        env: &[(&str, &str)],
    ) -> Res<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
        let child = Command::new(bin)
            .args([
                "run",
                "--health-addr",
                &addr,
                "--concurrency",
                &concurrency.to_string(),
                "--log-format",
                "json",
            ])
            .arg(format!("--exit-with-parent={}", std::process::id()))
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("cannot start the controller {bin}: {e}"))?;
        let mut c = Controller { child, addr };
        let start = Instant::now();
        while http_get(&c.addr, "/readyz").await.is_none() {
            if let Ok(Some(status)) = c.child.try_wait() {
                return Err(format!("the controller exited during startup ({status})").into());
            }
            if start.elapsed() > Duration::from_secs(60) {
                c.stop();
                return Err("the controller did not become ready within 60 s".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(c)
    }
    fn pid(&self) -> u32 {
        self.child.id()
    }
    /// (peak RSS MiB, CPU seconds)
    fn usage(&self) -> (f64, f64) {
        let pid = self.pid();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let hwm = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
            / 1024.0;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, r)| r.split_whitespace().collect())
            .unwrap_or_default();
        let tick = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (hwm, (tick(11) + tick(12)) / 100.0)
    }
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

// ---- the audit log -----------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Actor {
    Bench,
    Controller,
    Kcm,
    Other,
}

/// (API group, resource, namespace, name): one object.
type Key = (String, String, String, String);

/// One audited mutating request.
#[derive(Clone, Debug)]
struct Rec {
    verb: String,
    uri: String,
    group: String,
    version: String,
    resource: String,
    sub: String,
    ns: String,
    name: String,
    body: Option<Value>,
    code: u16,
    at_us: i64,
    actor: Actor,
}

impl Rec {
    /// A Namespace's requests carry its own name as their namespace: not part of the key.
    fn key(&self) -> Key {
        let ns = if self.group.is_empty() && self.resource == "namespaces" {
            String::new()
        } else {
            self.ns.clone()
        };
        (
            self.group.clone(),
            self.resource.clone(),
            ns,
            self.name.clone(),
        )
    }
    /// (verb, resource.group, subresource): what the floor must send as often.
    fn count_key(&self) -> String {
        let res = if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        };
        if self.sub.is_empty() {
            format!("{} {res}", self.verb)
        } else {
            format!("{} {res}/{}", self.verb, self.sub)
        }
    }
    fn ok(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

fn parse_audit_line(line: &str) -> Option<Rec> {
    let v: Value = serde_json::from_str(line).ok()?;
    if v["stage"] != "ResponseComplete" {
        return None;
    }
    let s = |x: &Value| x.as_str().unwrap_or_default().to_string();
    let o = &v["objectRef"];
    let ua = v["userAgent"].as_str().unwrap_or_default();
    let actor = if v["user"]["username"] == CONTROLLER_USER {
        Actor::Controller
    } else if ua == BENCH_UA {
        Actor::Bench
    } else if ua.starts_with("kube-controller-manager/") {
        Actor::Kcm
    } else {
        Actor::Other
    };
    let at_us = v["requestReceivedTimestamp"]
        .as_str()?
        .parse::<jiff::Timestamp>()
        .ok()?
        .as_microsecond();
    Some(Rec {
        verb: s(&v["verb"]),
        uri: s(&v["requestURI"]),
        group: s(&o["apiGroup"]),
        version: s(&o["apiVersion"]),
        resource: s(&o["resource"]),
        sub: s(&o["subresource"]),
        ns: s(&o["namespace"]),
        name: s(&o["name"]),
        body: v.get("requestObject").cloned(),
        code: v["responseStatus"]["code"].as_u64().unwrap_or(0) as u16,
        at_us,
        actor,
    })
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Makes the API server write out its buffered audit events (a sentinel
/// request, waited for), then reads every mutating request of `actors`
/// received in [from_us, to_us], in the order received.
async fn read_audit(
    client: &Client,
    cp: &Cp,
    actors: &[Actor],
    from_us: i64,
    to_us: i64,
) -> Res<(Vec<Rec>, usize)> {
    let sentinel = format!("bench-audit-sentinel-{}", now_us());
    ensure_ns(client, &sentinel).await?;
    let path = cp.audit_log();
    let start = Instant::now();
    let needle = format!("\"name\":\"{sentinel}\"");
    loop {
        if tail_contains(&path, &needle) {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            return Err(format!(
                "the audit log {} did not show the sentinel request within 60 s",
                path.display()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Batches may be written out of order: give stragglers a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let f =
        std::fs::File::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let (mut out, mut late) = (Vec::new(), 0);
    for line in std::io::BufReader::new(f).lines() {
        let line = line?;
        let Some(r) = parse_audit_line(&line) else {
            continue;
        };
        if !actors.contains(&r.actor) || r.at_us < from_us || r.name == sentinel {
            continue;
        }
        if r.at_us > to_us {
            late += 1;
            continue;
        }
        out.push(r);
    }
    out.sort_by_key(|r| r.at_us);
    Ok((out, late))
}

/// Whether the last MiB of the file holds `needle` (the audit log grows to
/// hundreds of MiB at 10,000 instances).
fn tail_contains(path: &Path, needle: &str) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if f.seek(SeekFrom::Start(len.saturating_sub(1 << 20)))
        .is_err()
    {
        return false;
    }
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).is_err() {
        return false;
    }
    String::from_utf8_lossy(&buf).contains(needle)
}

fn collection_path(group: &str, version: &str, resource: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}/{resource}")
    } else {
        format!("/apis/{group}/{version}/{resource}")
    }
}

/// UID -> object, for every object of the resources `recs` touch (and the
/// products'), listed now.
async fn uid_index(client: &Client, recs: &[Rec]) -> Res<HashMap<String, Key>> {
    let mut types: BTreeSet<(String, String, String)> = recs
        .iter()
        .map(|r| (r.group.clone(), r.version.clone(), r.resource.clone()))
        .collect();
    types.insert((String::new(), "v1".into(), "namespaces".into()));
    for r in [
        "services",
        "derivedservices",
        "distributiongrants",
        "serviceinstances",
        "orders",
    ] {
        types.insert((GROUP.into(), VERSION.into(), r.into()));
    }
    let mut out = HashMap::new();
    for (g, v, r) in types {
        let req = http::Request::get(collection_path(&g, &v, &r))
            .header(
                http::header::ACCEPT,
                "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
            )
            .body(Vec::new())?;
        let text = match client.request_text(req).await {
            Ok(t) => t,
            // Not served on this control plane (the KCM peer has no CRDs).
            Err(kube::Error::Api(e)) if e.code == 404 => continue,
            Err(e) => return Err(format!("listing {r}.{g} for the UID map: {e}").into()),
        };
        let list: Value = serde_json::from_str(&text)?;
        for item in list["items"].as_array().into_iter().flatten() {
            let m = &item["metadata"];
            if let Some(uid) = m["uid"].as_str() {
                let key = (
                    g.clone(),
                    r.clone(),
                    m["namespace"].as_str().unwrap_or_default().to_string(),
                    m["name"].as_str().unwrap_or_default().to_string(),
                );
                out.insert(uid.to_string(), key);
            }
        }
    }
    Ok(out)
}

// ---- the floor: replay -------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum PatchKind {
    Apply,
    Merge,
    Json,
}

struct Step {
    method: http::Method,
    uri: String,
    body: Option<String>,
    content_type: &'static str,
    count_key: String,
    /// The old UIDs this request names (substituted before sending).
    uids: Vec<String>,
    /// For a create: the old UID of the object it made.
    produces: Option<String>,
    deps: Vec<usize>,
    recorded_ok: bool,
}

/// The recorded requests as a dependency graph.
struct Plan {
    steps: Vec<Step>,
    /// Old UIDs of objects the plan does not create (set-up objects): looked
    /// up by key on the fresh control plane before the clock starts.
    external: Vec<(String, Key)>,
    counts: BTreeMap<String, usize>,
    patch_kinds: BTreeMap<String, usize>,
    unknown_uids: usize,
}

fn strip_resource_version(v: &mut Value) {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    if let Some(p) = v.get_mut("preconditions").and_then(Value::as_object_mut) {
        p.remove("resourceVersion");
    }
}

fn patch_kind(uri: &str, body: &Value) -> PatchKind {
    let query = uri.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let has = |p: &str| {
        query
            .split('&')
            .any(|kv| kv == p || kv.starts_with(&format!("{p}=")))
    };
    if query.split('&').any(|kv| kv == "force=true") {
        PatchKind::Apply
    } else if body.is_array() {
        PatchKind::Json
    } else if has("fieldManager") && body.get("apiVersion").is_some() && body.get("kind").is_some()
    {
        PatchKind::Apply
    } else {
        PatchKind::Merge
    }
}

fn find_uids(text: &str) -> Vec<String> {
    // 8-4-4-4-12 lower-case hex, as the API server makes them.
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 36 <= b.len() {
        let cand = &b[i..i + 36];
        let ok = cand.iter().enumerate().all(|(j, c)| match j {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        });
        let bounded = (i == 0 || !b[i - 1].is_ascii_alphanumeric())
            && (i + 36 == b.len() || !b[i + 36].is_ascii_alphanumeric());
        if ok && bounded {
            out.push(String::from_utf8_lossy(cand).into_owned());
            i += 36;
        } else {
            i += 1;
        }
    }
    out
}

fn build_plan(recs: &[Rec], index: &HashMap<String, Key>) -> Res<Plan> {
    let by_key: HashMap<&Key, &String> = index.iter().map(|(u, k)| (k, u)).collect();
    let mut steps = Vec::with_capacity(recs.len());
    // The step that created each object (and the latest create or delete).
    let mut creator: HashMap<Key, usize> = HashMap::new();
    let mut last_on: HashMap<Key, Vec<usize>> = HashMap::new();
    let mut producer_of: HashMap<String, usize> = HashMap::new();
    let mut counts = BTreeMap::new();
    let mut patch_kinds = BTreeMap::new();
    let mut external: BTreeMap<String, Key> = BTreeMap::new();
    let mut unknown_uids = 0;
    for (i, r) in recs.iter().enumerate() {
        let mut body = r.body.clone();
        if let Some(b) = body.as_mut() {
            if r.code == 409 && b["metadata"]["resourceVersion"].is_string() {
                // It lost a race there: make it lose here too (same work, no write).
                b["metadata"]["resourceVersion"] = json!("1");
            } else {
                strip_resource_version(b);
            }
        }
        let (method, content_type) = match r.verb.as_str() {
            "create" => (http::Method::POST, "application/json"),
            "update" => (http::Method::PUT, "application/json"),
            "delete" | "deletecollection" => (http::Method::DELETE, "application/json"),
            "patch" => {
                let kind = patch_kind(&r.uri, body.as_ref().unwrap_or(&Value::Null));
                *patch_kinds.entry(format!("{kind:?}")).or_insert(0) += 1;
                let ct = match kind {
                    PatchKind::Apply => "application/apply-patch+yaml",
                    PatchKind::Merge => "application/merge-patch+json",
                    PatchKind::Json => "application/json-patch+json",
                };
                (http::Method::PATCH, ct)
            }
            other => return Err(format!("replay: unexpected verb {other} in {}", r.uri).into()),
        };
        let body = body.map(|b| serde_json::to_string(&b)).transpose()?;
        let mut deps = BTreeSet::new();
        let key = r.key();
        let is_ns = r.group.is_empty() && r.resource == "namespaces";
        // The request that made its namespace (a create, or an apply that
        // created it), when the recording has it.
        if !r.ns.is_empty() && !is_ns {
            let ns_key = (
                String::new(),
                "namespaces".to_string(),
                String::new(),
                r.ns.clone(),
            );
            if let Some(&c) = creator.get(&ns_key) {
                deps.insert(c);
            }
        }
        // The object's creating request before anything else on it; a create
        // or delete after every earlier request on it.
        if !r.name.is_empty() {
            if r.verb == "create" || r.verb == "delete" {
                for &p in last_on.get(&key).into_iter().flatten() {
                    deps.insert(p);
                }
            }
            if let Some(&c) = creator.get(&key) {
                deps.insert(c);
            }
        }
        // The requests that produced the UIDs it names.
        let mut uids = BTreeSet::new();
        let text = format!("{} {}", r.uri, body.as_deref().unwrap_or_default());
        for u in find_uids(&text) {
            match (producer_of.get(&u), index.get(&u)) {
                (Some(&p), _) => {
                    deps.insert(p);
                    uids.insert(u);
                }
                (None, Some(k)) => {
                    external.insert(u.clone(), k.clone());
                    uids.insert(u);
                }
                (None, None) => unknown_uids += 1,
            }
        }
        deps.remove(&i);
        // The first successful create, apply or update of an object in the
        // recording made it (an apply can create); its response carries the
        // new UID.
        let mut produces = None;
        let writes = matches!(r.verb.as_str(), "create" | "patch" | "update");
        if writes && r.ok() && !r.name.is_empty() && r.sub.is_empty() && !creator.contains_key(&key)
        {
            // (Not for an object named earlier as a set-up object.)
            if let Some(u) = by_key.get(&key)
                && !external.contains_key(*u)
            {
                produces = Some((*u).clone());
                producer_of.insert((*u).clone(), i);
            }
            creator.insert(key.clone(), i);
        }
        if r.verb == "delete" {
            creator.remove(&key);
        }
        if !r.name.is_empty() {
            let e = last_on.entry(key).or_default();
            if r.verb == "create" || r.verb == "delete" {
                e.clear();
            }
            e.push(i);
        }
        *counts.entry(r.count_key()).or_insert(0) += 1;
        steps.push(Step {
            method,
            uri: r.uri.clone(),
            body,
            content_type,
            count_key: r.count_key(),
            uids: uids.into_iter().collect(),
            produces,
            deps: deps.into_iter().collect(),
            recorded_ok: r.ok(),
        });
    }
    Ok(Plan {
        steps,
        external: external.into_iter().collect(),
        counts,
        patch_kinds,
        unknown_uids,
    })
}

struct ReplayOut {
    seconds: f64,
    failed: Vec<String>,
    now_ok: usize,
}

async fn lookup_uid(
    client: &Client,
    key: &Key,
    index_types: &HashMap<(String, String), String>,
) -> Res<String> {
    let (g, r, ns, name) = key;
    let version = index_types
        .get(&(g.clone(), r.clone()))
        .ok_or_else(|| format!("no version known for {r}.{g}"))?;
    let base = collection_path(g, version, r);
    let path = if ns.is_empty() {
        format!("{base}/{name}")
    } else {
        let (prefix, rest) = base.rsplit_once('/').ok_or("bad collection path")?;
        format!("{prefix}/namespaces/{ns}/{rest}/{name}")
    };
    let text = client
        .request_text(http::Request::get(&path).body(Vec::new())?)
        .await
        .map_err(|e| format!("floor set-up: {path} (named by a recorded request): {e}"))?;
    let v: Value = serde_json::from_str(&text)?;
    v["metadata"]["uid"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("{path} has no metadata.uid").into())
}

/// Sends every step as soon as its dependencies are done, `concurrency` at a time.
async fn replay(
    client: &Client,
    plan: &Plan,
    versions: &HashMap<(String, String), String>,
    concurrency: usize,
) -> Res<ReplayOut> {
    let mut uid_map: HashMap<String, String> = HashMap::new();
    for (old, key) in &plan.external {
        uid_map.insert(old.clone(), lookup_uid(client, key, versions).await?);
    }
    let n = plan.steps.len();
    let mut waiting: Vec<usize> = plan.steps.iter().map(|s| s.deps.len()).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, s) in plan.steps.iter().enumerate() {
        for &d in &s.deps {
            dependents[d].push(i);
        }
    }
    let mut ready: VecDeque<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Result<String, String>)>();
    let (mut done, mut failed, mut now_ok) = (0usize, Vec::new(), 0usize);
    let t0 = Instant::now();
    while done < n {
        while let Some(i) = ready.pop_front() {
            let s = &plan.steps[i];
            let (mut uri, mut body) = (s.uri.clone(), s.body.clone());
            for u in &s.uids {
                let Some(new) = uid_map.get(u) else {
                    continue; // its create failed; the request will fail and be reported
                };
                uri = uri.replace(u.as_str(), new);
                body = body.map(|b| b.replace(u.as_str(), new));
            }
            let req = http::Request::builder()
                .method(s.method.clone())
                .uri(uri)
                .header(http::header::CONTENT_TYPE, s.content_type)
                .body(body.unwrap_or_default().into_bytes())?;
            let (client, sem, tx) = (client.clone(), sem.clone(), tx.clone());
            tokio::spawn(async move {
                let _permit = sem.acquire_owned().await;
                let res = client.request_text(req).await.map_err(|e| e.to_string());
                let _ = tx.send((i, res));
            });
        }
        let Some((i, res)) = rx.recv().await else {
            return Err("replay: the request tasks stopped".into());
        };
        done += 1;
        let s = &plan.steps[i];
        match res {
            Ok(text) => {
                if !s.recorded_ok {
                    now_ok += 1;
                }
                if let Some(old) = &s.produces {
                    let v: Value = serde_json::from_str(&text).unwrap_or_default();
                    if let Some(new) = v["metadata"]["uid"].as_str() {
                        uid_map.insert(old.clone(), new.to_string());
                    }
                }
            }
            Err(e) if s.recorded_ok => failed.push(format!("{} {}: {e}", s.method, s.uri)),
            Err(_) => {}
        }
        for &d in &dependents[i] {
            waiting[d] -= 1;
            if waiting[d] == 0 {
                ready.push_back(d);
            }
        }
    }
    Ok(ReplayOut {
        seconds: t0.elapsed().as_secs_f64(),
        failed,
        now_ok,
    })
}

/// A recorded arm's requests, ready to replay.
struct Recording {
    plan: Plan,
    versions: HashMap<(String, String), String>,
    late: usize,
    /// Objects the controller wrote before the recording began (the
    /// ServiceVersions it published from the products at start), made on
    /// the floor's control plane before its clock starts: the same state.
    before: Vec<(ApiResource, Value)>,
}

fn recording(recs: &[Rec], index: &HashMap<String, Key>, late: usize) -> Res<Recording> {
    let mut versions = HashMap::new();
    for r in recs {
        versions.insert((r.group.clone(), r.resource.clone()), r.version.clone());
    }
    versions.insert((String::new(), "namespaces".into()), "v1".into());
    for r in [
        "services",
        "derivedservices",
        "distributiongrants",
        "serviceinstances",
        "orders",
    ] {
        versions.insert((GROUP.into(), r.into()), VERSION.into());
    }
    Ok(Recording {
        plan: build_plan(recs, index)?,
        versions,
        late,
        before: Vec::new(),
    })
}

/// Replays `rec` on fresh control planes, once per concurrency; the best time wins.
async fn floor_sweep(
    cfg: &Cfg,
    tag: &str,
    rec: &Recording,
    concs: &[usize],
    controllers: Option<&str>,
    setup_ns: Option<&str>,
    cp_times: &mut Vec<f64>,
) -> Res<(f64, usize, Vec<(usize, f64)>)> {
    let mut results = Vec::new();
    for &c in concs {
        let mut cp = Cp::start(cfg, &format!("{tag}-c{c}"), controllers).await?;
        cp_times.push(cp.start_s);
        let client = cp.client().await?;
        match setup_ns {
            Some(ns) => ensure_ns(&client, ns).await?,
            None => setup_products(&client).await?,
        }
        for (res, obj) in &rec.before {
            let ns = obj["metadata"]["namespace"].as_str().map(str::to_string);
            apply(&client, res, ns.as_deref(), obj.clone()).await?;
        }
        let out = replay(&client, &rec.plan, &rec.versions, c).await?;
        cp.stop();
        let sent: usize = rec.plan.steps.len();
        let recorded: usize = rec.plan.counts.values().sum();
        let mut sent_counts: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &rec.plan.steps {
            *sent_counts.entry(s.count_key.as_str()).or_insert(0) += 1;
        }
        let same = sent == recorded
            && sent_counts.len() == rec.plan.counts.len()
            && rec
                .plan
                .counts
                .iter()
                .all(|(k, v)| sent_counts.get(k.as_str()) == Some(v));
        if !same {
            return Err(format!(
                "floor {tag}: sent {sent_counts:?}, the recorded arm made {:?}",
                rec.plan.counts
            )
            .into());
        }
        if !out.failed.is_empty() {
            return Err(format!(
                "floor {tag} at concurrency {c}: {} requests that succeeded in the recorded arm failed here, e.g. {}",
                out.failed.len(),
                out.failed.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
            )
            .into());
        }
        eprintln!(
            "bench: floor {tag} concurrency {c}: {sent} requests in {:.2} s ({} failed in the recording and succeeded here)",
            out.seconds, out.now_ok
        );
        results.push((c, out.seconds));
    }
    let (best_c, best) = results
        .iter()
        .copied()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .ok_or("floor: no concurrency to try")?;
    Ok((best, best_c, results))
}

// ---- the upgrade round ----------------------------------------------------------

/// Template of the upgrade round's Service at `v` (1 or 2): four ConfigMaps;
/// 2 changes `b`, removes `c` and adds `e`.
fn upgrade_template(v: u8) -> Value {
    let cm = |name: &str, value: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": format!("$(instance.name)-{name}")}, "data": {"v": value}})
    };
    if v == 1 {
        json!({"objects": [cm("a", "1"), cm("b", "1"), cm("c", "1"), cm("d", "1")]})
    } else {
        json!({"objects": [cm("a", "1"), cm("b", "2"), cm("d", "1"), cm("e", "1")]})
    }
}

fn upgrade_service(version: &str, v: u8) -> Value {
    json!({"apiVersion": "computenest.dev/v1alpha1", "kind": "Service", "metadata": {"name": "upg"},
           "spec": {"type": "Private", "version": version, "template": upgrade_template(v)}})
}

/// Records when each instance was first seen running `version` with its
/// move Succeeded (watch-fed).
struct MovedTimes {
    seen: Arc<Mutex<HashMap<String, Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl MovedTimes {
    fn spawn(client: Client, version: &'static str) -> Self {
        let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let inner = seen.clone();
        let task = tokio::spawn(async move {
            let api =
                Api::<DynamicObject>::all_with(client, &cn("ServiceInstance", "serviceinstances"));
            let mut s = watcher(api, watcher::Config::default()).boxed();
            while let Some(ev) = s.next().await {
                let o = match ev {
                    Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::InitApply(o)) => o,
                    _ => continue,
                };
                let st = &o.data["status"];
                let last = st["history"].as_array().and_then(|h| h.last());
                if st["version"] == version
                    && last.is_some_and(|h| h["to"] == version && h["result"] == "Succeeded")
                    && let Ok(mut m) = inner.lock()
                {
                    let key = format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any());
                    m.entry(key).or_insert_with(Instant::now);
                }
            }
        });
        MovedTimes { seen, task }
    }
    fn all_seen(&self, keys: &[String]) -> Option<Instant> {
        let m = self.seen.lock().ok()?;
        keys.iter()
            .map(|k| m.get(k).copied())
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .max()
    }
}

impl Drop for MovedTimes {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One direction of the upgrade round.
#[derive(Default, Debug)]
struct Move {
    seconds: f64,
    writes: f64,
    floor: Vec<(usize, f64)>,
}

impl Move {
    fn best_floor(&self) -> f64 {
        self.floor.iter().map(|f| f.1).fold(f64::INFINITY, f64::min)
    }
}

/// Instances `prefix-<i>` pinned to 1.0.0 in ten namespaces; their keys.
async fn create_pinned(client: &Client, prefix: &str, n: usize, conc: usize) -> Res<Vec<String>> {
    let customers: Vec<String> = (0..10).map(|k| format!("{prefix}-c{k}")).collect();
    for c in &customers {
        ensure_ns(client, c).await?;
    }
    let res = cn("ServiceInstance", "serviceinstances");
    stream::iter(0..n)
        .map(|i| {
            let (client, res) = (client.clone(), res.clone());
            let ns = customers[i % customers.len()].clone();
            async move {
                let name = format!("u{i}");
                let obj: DynamicObject = serde_json::from_value(json!({
                    "apiVersion": "computenest.dev/v1alpha1", "kind": "ServiceInstance", "metadata": {"name": name},
                    "spec": {"serviceRef": {"kind": "Service", "namespace": "bench-isv", "name": "upg"}, "version": "1.0.0"}}))?;
                Api::<DynamicObject>::namespaced_with(client, &ns, &res)
                    .create(&PostParams::default(), &obj)
                    .await
                    .map_err(|e| format!("create {ns}/{name}: {e}"))?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(format!("{ns}/{name}"))
            }
        })
        .buffer_unordered(conc)
        .try_collect()
        .await
}

/// Waits until `times` has every key, at most `secs`; returns the last time.
async fn wait_moved(times: &MovedTimes, keys: &[String], secs: u64) -> Res<Instant> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(t) = times.all_seen(keys) {
            return Ok(t);
        }
        if Instant::now() > deadline {
            return Err(format!("not every instance moved within {secs} s").into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until the controller has written nothing for `quiet`.
async fn wait_quiet(addr: &str, quiet: Duration) -> f64 {
    let mut last = controller_counter(addr, "computenest_api_writes_total", "").await;
    let mut since = Instant::now();
    let start = Instant::now();
    while since.elapsed() < quiet && start.elapsed() < Duration::from_secs(300) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = controller_counter(addr, "computenest_api_writes_total", "").await;
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
    last
}

/// The controller moves `keys` to `version` (the bench pins them); timed
/// until every one runs it; writes per instance from the controller's counter.
async fn controller_move(
    client: &Client,
    ctl: &Controller,
    keys: &[String],
    version: &'static str,
    conc: usize,
) -> Res<Move> {
    let times = MovedTimes::spawn(client.clone(), version);
    let w0 = wait_quiet(&ctl.addr, Duration::from_secs(2)).await;
    let res = cn("ServiceInstance", "serviceinstances");
    let t0 = Instant::now();
    stream::iter(keys.to_vec())
        .map(|k| {
            let (client, res) = (client.clone(), res.clone());
            async move {
                let (ns, name) = k.split_once('/').ok_or("key")?;
                Api::<DynamicObject>::namespaced_with(client, ns, &res)
                    .patch(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(&json!({"spec": {"version": version}})),
                    )
                    .await
                    .map_err(|e| format!("pin {k}: {e}"))?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            }
        })
        .buffer_unordered(conc)
        .try_collect::<Vec<()>>()
        .await?;
    let end = wait_moved(&times, keys, 900).await?;
    let seconds = end.saturating_duration_since(t0).as_secs_f64();
    let w1 = wait_quiet(&ctl.addr, Duration::from_secs(3)).await;
    Ok(Move {
        seconds,
        writes: (w1 - w0) / keys.len() as f64,
        floor: Vec::new(),
    })
}

/// The floor of one move of `keys` (from `from` to `to`, controller
/// stopped): the bench's pin and what the controller writes, made by a bare
/// client at concurrency `conc`: the pin, the changed ConfigMap applied, the
/// added one created, the removed one deleted, and each instance's status. Bodies are
/// built before the clock starts, from the live objects.
async fn floor_move(client: &Client, keys: &[String], from: u8, conc: usize) -> Res<f64> {
    let cms = ar("", "v1", "ConfigMap", "configmaps");
    let res = cn("ServiceInstance", "serviceinstances");
    // (changed, added, removed) names for the move.
    let (changed_value, added, removed) = if from == 1 {
        ("2", "e", "c")
    } else {
        ("1", "c", "e")
    };
    let (to_version, from_version) = if from == 1 {
        ("2.0.0", "1.0.0")
    } else {
        ("1.0.0", "2.0.0")
    };
    let mut work: Vec<(String, String, Value, Value, Value)> = Vec::with_capacity(keys.len());
    for k in keys {
        let (ns, name) = k.split_once('/').ok_or("key")?;
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &cms);
        let b = api.get(&format!("{name}-b")).await?;
        let mut meta =
            json!({"labels": b.metadata.labels, "ownerReferences": b.metadata.owner_references});
        meta["namespace"] = json!(ns);
        let mut changed = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta.clone(), "data": {"v": changed_value}});
        changed["metadata"]["name"] = json!(format!("{name}-b"));
        let mut add =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"v": "1"}});
        add["metadata"]["name"] = json!(format!("{name}-{added}"));
        let status = json!({"status": {"version": to_version, "history": [{
            "from": from_version, "to": to_version, "type": if from == 1 { "Upgrade" } else { "Rollback" },
            "result": "Succeeded", "startTime": "2026-01-01T00:00:00Z", "endTime": "2026-01-01T00:00:00Z", "generation": 2}]}});
        work.push((ns.to_string(), name.to_string(), changed, add, status));
    }
    // The pin (the bench's own write in the controller's arm) counts too.
    let pin = json!({"spec": {"version": to_version}});
    let t0 = Instant::now();
    stream::iter(
        work.into_iter()
            .flat_map(|(ns, name, changed, add, status)| {
                [
                    (4u8, ns.clone(), name.clone(), pin.clone()),
                    (0, ns.clone(), name.clone(), changed),
                    (1, ns.clone(), name.clone(), add),
                    (2, ns.clone(), name.clone(), Value::Null),
                    (3, ns, name, status),
                ]
            }),
    )
    .map(|(what, ns, name, body)| {
        let (client, cms, res) = (client.clone(), cms.clone(), res.clone());
        async move {
            let api = Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &cms);
            match what {
                0 => {
                    let n = format!("{name}-b");
                    api.patch(
                        &n,
                        &PatchParams::apply("computenest-controller").force(),
                        &Patch::Apply(&body),
                    )
                    .await
                    .map(|_| ())
                }
                1 => {
                    let obj: DynamicObject = serde_json::from_value(body)
                        .map_err(|e| format!("floor body for {ns}/{name}: {e}"))?;
                    api.create(&PostParams::default(), &obj).await.map(|_| ())
                }
                2 => api
                    .delete(&format!("{name}-{removed}"), &Default::default())
                    .await
                    .map(|_| ()),
                4 => Api::<DynamicObject>::namespaced_with(client, &ns, &res)
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&body))
                    .await
                    .map(|_| ()),
                _ => Api::<DynamicObject>::namespaced_with(client, &ns, &res)
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
                    .await
                    .map(|_| ()),
            }
            .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> {
                format!("floor write {what} for {ns}/{name}: {e}").into()
            })
        }
    })
    .buffer_unordered(conc)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(t0.elapsed().as_secs_f64())
}

/// The upgrade round: (upgrade, rollback), each with the floor per concurrency.
async fn upgrade_round(cfg: &Cfg, n: usize, cp_times: &mut Vec<f64>) -> Res<(Move, Move)> {
    let mut cp = Cp::start(cfg, "upgrade", None).await?;
    cp_times.push(cp.start_s);
    let client = cp.client().await?;
    setup_products(&client).await?;
    let svc = cn("Service", "services");
    apply(
        &client,
        &svc,
        Some("bench-isv"),
        upgrade_service("1.0.0", 1),
    )
    .await?;
    let deployed = DeployedTimes::spawn(client.clone());
    let mut ctl = start_controller(cfg, &cp, &client, "upgrade").await?;
    // The controller's set, and one set per floor concurrency, all at 1.0.0.
    let moved = create_pinned(&client, "bench-upg", n, cfg.conc).await?;
    let mut floor_sets = Vec::new();
    for (k, _) in cfg.floor_conc.iter().enumerate() {
        floor_sets.push(create_pinned(&client, &format!("bench-upf{k}"), n, cfg.conc).await?);
    }
    let everything: Vec<(String, Instant)> = moved
        .iter()
        .chain(floor_sets.iter().flatten())
        .map(|k| (k.clone(), Instant::now()))
        .collect();
    wait_deployed(&deployed, &everything, 1800).await?;
    drop(deployed);
    // Publish 2.0.0 (every instance learns of it: UpgradeAvailable and a dry run).
    apply(
        &client,
        &svc,
        Some("bench-isv"),
        upgrade_service("2.0.0", 2),
    )
    .await?;
    let versions = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        "bench-isv",
        &cn("ServiceVersion", "serviceversions"),
    );
    let start = Instant::now();
    while versions.list(&ListParams::default()).await?.items.len() < 2 {
        if start.elapsed() > Duration::from_secs(60) {
            return Err("version 2.0.0 was not published within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut up = controller_move(&client, &ctl, &moved, "2.0.0", cfg.conc).await?;
    eprintln!(
        "bench: upgrade of {n}: controller {:.2} s, {:.2} writes per instance",
        up.seconds, up.writes
    );
    let mut down = controller_move(&client, &ctl, &moved, "1.0.0", cfg.conc).await?;
    eprintln!(
        "bench: rollback of {n}: controller {:.2} s, {:.2} writes per instance",
        down.seconds, down.writes
    );
    ctl.stop();
    for (k, &c) in cfg.floor_conc.iter().enumerate() {
        let t_up = floor_move(&client, &floor_sets[k], 1, c).await?;
        let t_down = floor_move(&client, &floor_sets[k], 2, c).await?;
        eprintln!("bench: upgrade floor at concurrency {c}: up {t_up:.2} s, back {t_down:.2} s");
        up.floor.push((c, t_up));
        down.floor.push((c, t_down));
    }
    cp.stop();
    Ok((up, down))
}

// ---- usage: rating records ---------------------------------------------------

/// What the usage round measured.
struct Usage {
    records: usize,
    instances: usize,
    create_s: f64,
    decide_s: f64,
    decided: f64,
    accepted: f64,
    status_writes: f64,
    periods_closed: u64,
}

/// A commercial day of the usage round: usage periods of one day close every
/// `USAGE_DAY_S` seconds (plus the controller's 5 s grace), so a flood of
/// records spans several periods.
const USAGE_DAY_S: &str = "30";

/// Pay-as-you-go instances flooded with usage records (each a one-second
/// window just past, round robin over the instances, created by the bench at
/// its concurrency): how fast the controller decides them, and how many
/// status writes of the instances it costs per usage period closed. Records
/// are not in the instance's status until their period closes, so the
/// budget is one status write per instance per period, whatever the flood.
async fn usage_round(cfg: &Cfg, cp_times: &mut Vec<f64>) -> Res<Usage> {
    let (n, k) = (cfg.usage_records, cfg.usage_instances.max(1));
    let mut cp = Cp::start(cfg, "usage", None).await?;
    cp_times.push(cp.start_s);
    let client = cp.client().await?;
    setup_products(&client).await?;
    ensure_ns(&client, "bench-usage").await?;
    let svc = cn("Service", "services");
    apply(&client, &svc, Some("bench-isv"), json!({
        "apiVersion": "computenest.dev/v1alpha1", "kind": "Service", "metadata": {"name": "metered"},
        "spec": {"type": "Private", "version": "1.0",
                 "commerce": {"dimensions": [{"name": "Requests", "aggregation": "Sum"}], "lateWindowSeconds": 7200},
                 "plans": [{"name": "basic", "pricing": {"payAsYouGo": {"period": "P1D", "prices": [{"dimension": "Requests", "price": "0.001"}]}}}],
                 "template": {"objects": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "$(instance.name)"}, "data": {"k": "v"}}]}}
    })).await?;
    let log = cfg.work.join("controller-usage.log");
    let ctl = Controller::start(
        &cfg.bin,
        cfg.conc,
        &cp.controller_kubeconfig(),
        &log,
        &[("COMPUTENEST_COMMERCE_DAY_SECONDS", USAGE_DAY_S)],
    )
    .await?;
    let instances = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        "bench-usage",
        &cn("ServiceInstance", "serviceinstances"),
    );
    for i in 0..k {
        instances
            .create(&PostParams::default(), &serde_json::from_value(json!({
                "apiVersion": "computenest.dev/v1alpha1", "kind": "ServiceInstance", "metadata": {"name": format!("m{i}")},
                "spec": {"serviceRef": {"kind": "Service", "namespace": "bench-isv", "name": "metered"}, "plan": "basic",
                         "billing": {"mode": "PayAsYouGo"}}
            }))?)
            .await?;
    }
    let start = Instant::now();
    let uids: Vec<String> = loop {
        let l = instances.list(&ListParams::default()).await?;
        let ready: Vec<String> = l
            .items
            .iter()
            .filter(|i| i.data["status"]["phase"] == "Deployed")
            .filter_map(|i| i.uid())
            .collect();
        if ready.len() == k {
            break ready;
        }
        if start.elapsed() > Duration::from_secs(300) {
            return Err(format!(
                "{} of {k} metered instances Deployed within 300 s",
                ready.len()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let settled = |l: &[DynamicObject]| -> u64 {
        l.iter()
            .map(|i| {
                i.data["status"]["commerce"]["ledger"]["usagePeriodsSettled"]
                    .as_u64()
                    .unwrap_or(0)
            })
            .sum()
    };
    let settled0 = settled(&instances.list(&ListParams::default()).await?.items);
    let status_label = "kind=\"ServiceInstance\",target=\"status\"";
    let writes0 = controller_counter(&ctl.addr, "computenest_api_writes_total", status_label).await;
    let decided0 = controller_counter(&ctl.addr, "computenest_usage_records_total", "kind=").await;
    let records = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        "bench-usage",
        &cn("UsageRecord", "usagerecords"),
    );
    let t0 = Instant::now();
    let created: Vec<Res<()>> = futures::stream::iter((0..n).map(|j| {
        let records = records.clone();
        let uid = uids[j % k].clone();
        async move {
            let now = jiff::Timestamp::now();
            let body: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "computenest.dev/v1alpha1", "kind": "UsageRecord", "metadata": {"name": format!("r{j}")},
                "spec": {"instance": uid, "dimension": "Requests", "quantity": 1 + (j % 7) as i64,
                         "windowStart": (now - jiff::SignedDuration::from_millis(1200)).to_string(),
                         "windowEnd": (now - jiff::SignedDuration::from_millis(200)).to_string()}
            }))?;
            records.create(&PostParams::default(), &body).await?;
            Ok(())
        }
    }))
    .buffer_unordered(cfg.conc * 4)
    .collect()
    .await;
    let create_s = t0.elapsed().as_secs_f64();
    if let Some(Err(e)) = created.into_iter().find(|r| r.is_err()) {
        return Err(format!("a usage record could not be created: {e}").into());
    }
    let decided = loop {
        let d = controller_counter(&ctl.addr, "computenest_usage_records_total", "kind=").await
            - decided0;
        if d >= n as f64 {
            break d;
        }
        if t0.elapsed() > Duration::from_secs(1800) {
            return Err(format!("{d} of {n} usage records decided within 1800 s").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let decide_s = t0.elapsed().as_secs_f64();
    let accepted = controller_counter(
        &ctl.addr,
        "computenest_usage_records_total",
        "kind=\"Accepted\"",
    )
    .await;
    // Let the last period the flood reached close (a day, its late window
    // and the grace), then count.
    let day: f64 = USAGE_DAY_S.parse().unwrap_or(30.0);
    tokio::time::sleep(Duration::from_secs_f64(day * 1.1 + 8.0)).await;
    let status_writes =
        controller_counter(&ctl.addr, "computenest_api_writes_total", status_label).await - writes0;
    let periods_closed =
        settled(&instances.list(&ListParams::default()).await?.items).saturating_sub(settled0);
    drop(ctl);
    cp.stop();
    Ok(Usage {
        records: n,
        instances: k,
        create_s,
        decide_s,
        decided,
        accepted,
        status_writes,
        periods_closed,
    })
}

// ---- the arms ----------------------------------------------------------------

struct CtlArm {
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    ctl_writes: f64,
    ctl_errors: f64,
    reconciles: f64,
    api_writes: f64,
    api_reads: f64,
    audit_writes: f64,
    rec: Recording,
    after: Option<After>,
}

/// Measured once, after the largest round's last controller arm.
struct After {
    n: usize,
    idle_ctl: f64,
    idle_api: f64,
    rss1: f64,
    cpu1: f64,
    ready_s: f64,
    catch_up_s: f64,
    restart_writes: f64,
    restart_api_writes: f64,
    rss2: f64,
    cpu2: f64,
    /// Deletion-to-re-creation of provisioned objects (drift repair), ms, sorted.
    repairs: Vec<f64>,
}

async fn create_instances(
    client: &Client,
    prefix: &str,
    n: usize,
    concurrency: usize,
) -> Res<Vec<(String, Instant)>> {
    let customers: Vec<String> = (0..10).map(|k| format!("{prefix}-c{k}")).collect();
    for c in &customers {
        ensure_ns(client, c).await?;
    }
    let res = cn("ServiceInstance", "serviceinstances");
    stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            let ns = customers[i % customers.len()].clone();
            let res = res.clone();
            async move {
                let name = format!("i{i}");
                let obj: DynamicObject = serde_json::from_value(instance_json(&name, i))?;
                let t = Instant::now();
                Api::<DynamicObject>::namespaced_with(client, &ns, &res)
                    .create(&PostParams::default(), &obj)
                    .await
                    .map_err(|e| format!("create instance {ns}/{name}: {e}"))?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>((format!("{ns}/{name}"), t))
            }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await
}

async fn wait_deployed(
    times: &DeployedTimes,
    created: &[(String, Instant)],
    secs: u64,
) -> Res<Vec<f64>> {
    let mut lat = Vec::with_capacity(created.len());
    let deadline = Instant::now() + Duration::from_secs(secs);
    for (key, t) in created {
        loop {
            if let Some(d) = times.get(key) {
                lat.push(d.saturating_duration_since(*t).as_secs_f64() * 1000.0);
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("{key} not Deployed within {secs} s").into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    Ok(lat)
}

async fn start_controller(cfg: &Cfg, cp: &Cp, client: &Client, tag: &str) -> Res<Controller> {
    let log = cfg.work.join(format!("controller-{tag}.log"));
    let ctl = Controller::start(&cfg.bin, cfg.conc, &cp.controller_kubeconfig(), &log, &[]).await?;
    wait_products_sellable(client).await?;
    Ok(ctl)
}

/// Single-instance create-to-Deployed latency on an idle system (fresh control plane).
async fn single(cfg: &Cfg, cp_times: &mut Vec<f64>) -> Res<f64> {
    let mut cp = Cp::start(cfg, "single", None).await?;
    cp_times.push(cp.start_s);
    let client = cp.client().await?;
    setup_products(&client).await?;
    let times = DeployedTimes::spawn(client.clone());
    let mut ctl = start_controller(cfg, &cp, &client, "single").await?;
    ensure_ns(&client, "bench-single").await?;
    let res = cn("ServiceInstance", "serviceinstances");
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), "bench-single", &res);
    let mut lat = Vec::new();
    for i in 0..cfg.tries {
        let name = format!("s{i}");
        let obj: DynamicObject = serde_json::from_value(instance_json(&name, i))?;
        let t = Instant::now();
        api.create(&PostParams::default(), &obj).await?;
        lat.extend(wait_deployed(&times, &[(format!("bench-single/{name}"), t)], 30).await?);
    }
    ctl.stop();
    cp.stop();
    lat.sort_by(|a, b| a.total_cmp(b));
    Ok(percentile(&lat, 0.5))
}

async fn controller_arm(
    cfg: &Cfg,
    n: usize,
    tag: &str,
    last: bool,
    cp_times: &mut Vec<f64>,
) -> Res<CtlArm> {
    let mut cp = Cp::start(cfg, tag, None).await?;
    cp_times.push(cp.start_s);
    let client = cp.client().await?;
    setup_products(&client).await?;
    let times = DeployedTimes::spawn(client.clone());
    let mut ctl = start_controller(cfg, &cp, &client, tag).await?;
    let addr = ctl.addr.clone();
    let (r0, w0) = apiserver_requests(&client).await?;
    let c0 = controller_counter(&addr, "computenest_api_writes_total", "").await;
    let e0 = controller_counter(&addr, "computenest_reconcile_errors_total", "").await;
    let k0 = controller_counter(&addr, "computenest_reconciles_total", "").await;
    let from_us = now_us();
    let t0 = Instant::now();
    let created = create_instances(&client, &format!("bench-n{n}"), n, cfg.conc).await?;
    let mut lat = wait_deployed(&times, &created, 1800).await?;
    let end = created
        .iter()
        .filter_map(|(k, _)| times.get(k))
        .max()
        .unwrap_or(t0);
    let seconds = end.saturating_duration_since(t0).as_secs_f64();
    let to_us = from_us + end.saturating_duration_since(t0).as_micros() as i64;
    tokio::time::sleep(Duration::from_secs(2)).await; // let trailing status writes land before counting
    let (r1, w1) = apiserver_requests(&client).await?;
    let c1 = controller_counter(&addr, "computenest_api_writes_total", "").await;
    let e1 = controller_counter(&addr, "computenest_reconcile_errors_total", "").await;
    let k1 = controller_counter(&addr, "computenest_reconciles_total", "").await;
    if let Some(body) = http_get(&addr, "/metrics").await {
        for l in body
            .lines()
            .filter(|l| l.starts_with("computenest_reconcile_errors_total{"))
        {
            eprintln!("bench: {tag}: {l}");
        }
    }
    let (recs, late) = read_audit(
        &client,
        &cp,
        &[Actor::Bench, Actor::Controller],
        from_us,
        to_us,
    )
    .await?;
    let bench_creates = recs
        .iter()
        .filter(|r| {
            r.actor == Actor::Bench && r.verb == "create" && r.resource == "serviceinstances"
        })
        .count();
    if bench_creates != n {
        return Err(format!(
            "{tag}: the audit log holds {bench_creates} of the bench's {n} instance creates (events dropped?); see {}",
            cp.dir.join("logs/kube-apiserver.log").display()
        )
        .into());
    }
    let ctl_recs = recs.iter().filter(|r| r.actor == Actor::Controller).count();
    let index = uid_index(&client, &recs).await?;
    let mut rec = recording(&recs, &index, late)?;
    rec.before = published_versions(&client).await?;
    lat.sort_by(|a, b| a.total_cmp(b));
    let after = if last {
        Some(after_round(cfg, &cp, &client, &mut ctl, n, tag).await?)
    } else {
        None
    };
    ctl.stop();
    drop(times);
    cp.stop();
    Ok(CtlArm {
        seconds,
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        ctl_writes: (c1 - c0) / n as f64,
        ctl_errors: e1 - e0,
        reconciles: (k1 - k0) / n as f64,
        // The API server also counts this client's N creates and 10 namespaces.
        api_writes: (w1 - w0 - n as f64 - 10.0) / n as f64,
        api_reads: (r1 - r0) / n as f64,
        audit_writes: ctl_recs as f64 / n as f64,
        rec,
        after,
    })
}

/// Idle writes, RSS/CPU, and a restart over the n converged instances.
async fn after_round(
    cfg: &Cfg,
    cp: &Cp,
    client: &Client,
    ctl: &mut Controller,
    n: usize,
    tag: &str,
) -> Res<After> {
    let (_, iw0) = apiserver_requests(client).await?;
    let ic0 = controller_counter(&ctl.addr, "computenest_api_writes_total", "").await;
    tokio::time::sleep(Duration::from_secs(cfg.idle_secs)).await;
    let (_, iw1) = apiserver_requests(client).await?;
    let ic1 = controller_counter(&ctl.addr, "computenest_api_writes_total", "").await;
    let repairs = repair_latency(client, cfg.repairs).await?;
    let (rss1, cpu1) = ctl.usage();
    ctl.stop();
    let (_, rw0) = apiserver_requests(client).await?;
    let t = Instant::now();
    let log = cfg.work.join(format!("controller-{tag}-restart.log"));
    *ctl = Controller::start(&cfg.bin, cfg.conc, &cp.controller_kubeconfig(), &log, &[]).await?;
    let ready_s = t.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let reconciled = controller_counter(
            &ctl.addr,
            "computenest_reconciles_total",
            "kind=\"ServiceInstance\"",
        )
        .await;
        if reconciled >= n as f64 {
            break;
        }
        if Instant::now() > deadline {
            return Err(
                "restart: the controller did not reconcile every instance within 600 s".into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let catch_up_s = t.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let restart_writes = controller_counter(&ctl.addr, "computenest_api_writes_total", "").await;
    let (_, rw1) = apiserver_requests(client).await?;
    let (rss2, cpu2) = ctl.usage();
    Ok(After {
        n,
        idle_ctl: ic1 - ic0,
        idle_api: iw1 - iw0,
        rss1,
        cpu1,
        ready_s,
        catch_up_s,
        restart_writes,
        restart_api_writes: rw1 - rw0,
        rss2,
        cpu2,
        repairs,
    })
}

/// Drift repair latency: deletes `count` provisioned ConfigMaps of fully
/// managed instances (drift detection Enabled by default), one at a time,
/// each of a different instance, and times each from the delete's answer
/// until the controller's new object (a new UID) is there. Polled every
/// 5 ms, so the resolution is 5 ms.
async fn repair_latency(client: &Client, count: usize) -> Res<Vec<f64>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let cms = Api::<k8s_openapi::api::core::v1::ConfigMap>::all(client.clone());
    let list = cms
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=computenest-controller"))
        .await?;
    let mut seen_ns = HashSet::new();
    let targets: Vec<(String, String, String)> = list
        .items
        .iter()
        .filter_map(|c| {
            let ns = c.namespace()?;
            // Managed namespaces only, one object each (one per instance).
            (ns.starts_with("cn-") && seen_ns.insert(ns.clone()))
                .then(|| (ns, c.name_any(), c.metadata.uid.clone().unwrap_or_default()))
        })
        .take(count)
        .collect();
    if targets.len() < count {
        return Err(format!(
            "drift repair: only {} managed instances' ConfigMaps to delete, {count} wanted",
            targets.len()
        )
        .into());
    }
    let mut lat = Vec::with_capacity(count);
    for (ns, name, uid) in targets {
        let api = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), &ns);
        api.delete(&name, &Default::default()).await?;
        let t = Instant::now();
        let deadline = t + Duration::from_secs(60);
        loop {
            if let Some(c) = api.get_opt(&name).await?
                && c.metadata.uid.as_deref() != Some(uid.as_str())
            {
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("drift repair: {ns}/{name} not made again within 60 s").into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    Ok(lat)
}

/// kube-controller-manager's Deployment and ReplicaSet controllers creating 4n Pods.
async fn kcm_arm(cfg: &Cfg, n: usize, tag: &str, cp_times: &mut Vec<f64>) -> Res<(f64, Recording)> {
    let mut cp = Cp::start(cfg, tag, None).await?;
    cp_times.push(cp.start_s);
    let client = cp.client().await?;
    let ns = format!("bench-peer{n}");
    ensure_ns(&client, &ns).await?;
    let want = n * 4;
    let seen: Arc<Mutex<(HashSet<String>, Option<Instant>)>> = Arc::default();
    let inner = seen.clone();
    let pods = Api::<kube::core::PartialObjectMeta<k8s_openapi::api::core::v1::Pod>>::namespaced(
        client.clone(),
        &ns,
    );
    let task = tokio::spawn(async move {
        let mut s = watcher(pods, watcher::Config::default()).boxed();
        while let Some(ev) = s.next().await {
            let o = match ev {
                Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::InitApply(o)) => o,
                _ => continue,
            };
            if let Ok(mut g) = inner.lock() {
                g.0.insert(o.name_any());
                if g.0.len() >= want && g.1.is_none() {
                    g.1 = Some(Instant::now());
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await; // the watch is established
    let api = Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client.clone(), &ns);
    let from_us = now_us();
    let t0 = Instant::now();
    stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let d: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(json!({
                    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": format!("d{i}")},
                    "spec": {"replicas": 4, "selector": {"matchLabels": {"app": format!("d{i}")}},
                             "template": {"metadata": {"labels": {"app": format!("d{i}")}},
                                          "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
                }))?;
                api.create(&PostParams::default(), &d)
                    .await
                    .map_err(|e| format!("create deployment d{i}: {e}"))?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            }
        })
        .buffer_unordered(cfg.conc)
        .try_collect::<Vec<_>>()
        .await?;
    let deadline = Instant::now() + Duration::from_secs(1800);
    let end = loop {
        let (count, end) = seen.lock().map(|g| (g.0.len(), g.1)).unwrap_or((0, None));
        if let Some(e) = end {
            break e;
        }
        if Instant::now() > deadline {
            return Err(format!("KCM peer: only {count} of {want} pods after 1800 s").into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    task.abort();
    let seconds = end.saturating_duration_since(t0).as_secs_f64();
    let to_us = from_us + end.saturating_duration_since(t0).as_micros() as i64;
    let (recs, late) =
        read_audit(&client, &cp, &[Actor::Bench, Actor::Kcm], from_us, to_us).await?;
    let pod_creates = recs
        .iter()
        .filter(|r| r.actor == Actor::Kcm && r.verb == "create" && r.resource == "pods" && r.ok())
        .count();
    if pod_creates < want {
        return Err(format!(
            "{tag}: the audit log holds {pod_creates} of {want} pod creates (events dropped?)"
        )
        .into());
    }
    let index = uid_index(&client, &recs).await?;
    let rec = recording(&recs, &index, late)?;
    cp.stop();
    Ok((seconds, rec))
}

// ---- main --------------------------------------------------------------------

#[derive(Default)]
struct RoundStats {
    n: usize,
    reps: usize,
    ctl: Vec<f64>,
    floor: Vec<f64>,
    floor_conc: Vec<usize>,
    kcm_conc: Vec<usize>,
    sweeps: Vec<Vec<(usize, f64)>>,
    ratio: Vec<f64>,
    kcm: Vec<f64>,
    kcm_floor: Vec<f64>,
    kcm_ratio: Vec<f64>,
    per_inst_ms: Vec<f64>,
    ctl_writes: Vec<f64>,
    api_writes: Vec<f64>,
    audit_writes: Vec<f64>,
    reads: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    errors: Vec<f64>,
    reconciles: Vec<f64>,
    late: Vec<f64>,
    notes: Vec<String>,
}

fn fmt3(v: &[f64], prec: usize) -> String {
    let (a, b, c) = spread(v);
    if a.is_nan() {
        return "n/a | n/a | n/a".into();
    }
    format!("{a:.prec$} | {b:.prec$} | {c:.prec$}")
}

fn print_round(r: &RoundStats) {
    println!(
        "\n### N = {} ({} repetition{})\n",
        r.n,
        r.reps,
        if r.reps == 1 { "" } else { "s" }
    );
    for note in &r.notes {
        println!("{note}\n");
    }
    let concs: BTreeSet<usize> = r.floor_conc.iter().copied().collect();
    println!("| measure | min | median | max |");
    println!("|---|---|---|---|");
    println!(
        "| controller: first create to last Deployed (s) | {} |",
        fmt3(&r.ctl, 2)
    );
    println!(
        "| floor: the same requests replayed (s), best concurrency {:?} | {} |",
        concs,
        fmt3(&r.floor, 2)
    );
    println!("| ratio controller / floor | {} |", fmt3(&r.ratio, 2));
    println!(
        "| KCM peer: N Deployments to 4N Pods (s) | {} |",
        fmt3(&r.kcm, 2)
    );
    let kconcs: BTreeSet<usize> = r.kcm_conc.iter().copied().collect();
    println!(
        "| KCM floor (s), best concurrency {:?} | {} |",
        kconcs,
        fmt3(&r.kcm_floor, 2)
    );
    println!("| ratio KCM / KCM floor | {} |", fmt3(&r.kcm_ratio, 2));
    println!(
        "| controller time per instance (ms) | {} |",
        fmt3(&r.per_inst_ms, 2)
    );
    println!(
        "| writes/inst (controller's computenest_api_writes_total) | {} |",
        fmt3(&r.ctl_writes, 2)
    );
    println!(
        "| writes/inst (audit log, controller's user) | {} |",
        fmt3(&r.audit_writes, 2)
    );
    println!(
        "| writes/inst (apiserver_request_total, all clients, less the bench's) | {} |",
        fmt3(&r.api_writes, 2)
    );
    println!(
        "| reads/inst (apiserver_request_total, GET+LIST, all clients) | {} |",
        fmt3(&r.reads, 2)
    );
    println!("| reconciles/inst | {} |", fmt3(&r.reconciles, 2));
    println!("| reconcile errors | {} |", fmt3(&r.errors, 0));
    println!("| create-to-Deployed p50 (ms) | {} |", fmt3(&r.p50, 0));
    println!("| create-to-Deployed p99 (ms) | {} |", fmt3(&r.p99, 0));
    println!(
        "| controller requests after convergence (not replayed) | {} |",
        fmt3(&r.late, 0)
    );
    for (i, s) in r.sweeps.iter().enumerate() {
        let parts: Vec<String> = s.iter().map(|(c, t)| format!("{c}: {t:.2} s")).collect();
        println!("\nfloor sweep, repetition {}: {}", i + 1, parts.join(", "));
    }
}

/// The concurrency of the fastest floor so far.
fn best_of(concs: &[usize], times: &[f64]) -> usize {
    concs
        .iter()
        .zip(times)
        .min_by(|a, b| a.1.total_cmp(b.1))
        .map(|(c, _)| *c)
        .unwrap_or(64)
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "missed" }
}

/// A target stated for 10,000 instances, judged only where that many ran.
fn met_at_10000(n: usize, ok: bool) -> &'static str {
    if n < 10000 {
        "not judged (fewer than 10,000 instances)"
    } else {
        met(ok)
    }
}

/// A target judged only from `min` instances up.
fn met_from(min: usize, n: usize, ok: bool) -> &'static str {
    if n < min {
        "not judged (too few instances)"
    } else {
        met(ok)
    }
}

#[tokio::main]
async fn main() -> Res<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let cfg = Cfg::from_env()?;
    if !Path::new(&cfg.script).exists() {
        return Err(format!(
            "provision bench: {} not found; run `make bench` from the repository root",
            cfg.script
        )
        .into());
    }
    let wall = Instant::now();
    eprintln!(
        "bench: sizes {:?}, {} repetitions ({} from N={}), floor concurrency {:?}, work dir {}{}",
        cfg.sizes,
        cfg.reps,
        cfg.large_reps,
        cfg.large_from,
        cfg.floor_conc,
        cfg.work.display(),
        if cfg.quick { ", BENCH_QUICK" } else { "" }
    );
    let mut cp_times = Vec::new();
    let single_p50 = single(&cfg, &mut cp_times).await?;
    eprintln!(
        "bench: single-instance create->Deployed p50 {single_p50:.1} ms over {}",
        cfg.tries
    );

    let largest = cfg.sizes.iter().copied().max().unwrap_or(0);
    let mut rounds: Vec<RoundStats> = Vec::new();
    let mut after: Option<After> = None;
    // The best floor concurrencies of the largest small round (for large rounds).
    let mut best_small: Vec<usize> = cfg.floor_conc.clone();
    let mut best_small_kcm: Vec<usize> = cfg.floor_conc.clone();
    let mut sizes = cfg.sizes.clone();
    sizes.sort_unstable();
    for (si, &n) in sizes.iter().enumerate() {
        let large = n >= cfg.large_from;
        let reps = if large { cfg.large_reps } else { cfg.reps };
        let mut st = RoundStats {
            n,
            reps,
            ..Default::default()
        };
        let concs = if large {
            best_small.clone()
        } else {
            cfg.floor_conc.clone()
        };
        let kcm_concs_large = if large {
            best_small_kcm.clone()
        } else {
            cfg.floor_conc.clone()
        };
        if !large && cfg.sweep_reps < reps && concs.len() > 1 {
            st.notes.push(format!(
                "The floors sweep concurrency {concs:?} in the first {} repetition(s) (BENCH_SWEEP_REPS); later ones use the best concurrency found so far.",
                cfg.sweep_reps
            ));
        }
        if large {
            st.notes.push(format!(
                "Large round: {reps} repetition(s) (BENCH_LARGE_REPS), floor concurrency {concs:?} only (the best of the largest smaller round){}.",
                if cfg.kcm_large { "" } else { ", KCM peer skipped (BENCH_KCM_LARGE=1 runs it)" }
            ));
        }
        let last_size = n == largest && sizes[si + 1..].iter().all(|&m| m != n);
        for rep in 0..reps {
            let tag = format!("n{n}-r{rep}");
            let sweep_now = large || rep < cfg.sweep_reps;
            let ctl_concs = if sweep_now {
                concs.clone()
            } else {
                vec![best_of(&st.floor_conc, &st.floor)]
            };
            let kcm_concs = if sweep_now {
                kcm_concs_large.clone()
            } else {
                vec![best_of(&st.kcm_conc, &st.kcm_floor)]
            };
            let t_rep = Instant::now();
            let arm = controller_arm(
                &cfg,
                n,
                &format!("{tag}-ctl"),
                last_size && rep + 1 == reps,
                &mut cp_times,
            )
            .await?;
            eprintln!(
                "bench: N={n} rep {}: controller {:.2} s, p50 {:.0} ms, p99 {:.0} ms, writes/inst {:.2} (audit {:.2}, apiserver {:.2}), reads/inst {:.2}, reconciles/inst {:.2}, errors {}, {} requests to replay ({} after convergence left out; patches {:?}; {} unknown UIDs)",
                rep + 1,
                arm.seconds,
                arm.p50_ms,
                arm.p99_ms,
                arm.ctl_writes,
                arm.audit_writes,
                arm.api_writes,
                arm.api_reads,
                arm.reconciles,
                arm.ctl_errors,
                arm.rec.plan.steps.len(),
                arm.rec.late,
                arm.rec.plan.patch_kinds,
                arm.rec.plan.unknown_uids
            );
            let (floor, floor_c, sweep) = floor_sweep(
                &cfg,
                &format!("{tag}-floor"),
                &arm.rec,
                &ctl_concs,
                None,
                None,
                &mut cp_times,
            )
            .await?;
            let ratio = arm.seconds / floor;
            if ratio < 1.0 {
                eprintln!(
                    "bench: WARNING N={n} rep {}: the controller ({:.2} s) beat its floor ({floor:.2} s): the floor is not a floor here; investigate",
                    rep + 1,
                    arm.seconds
                );
            }
            st.ctl.push(arm.seconds);
            st.floor.push(floor);
            st.floor_conc.push(floor_c);
            st.sweeps.push(sweep);
            st.ratio.push(ratio);
            st.per_inst_ms.push(arm.seconds * 1000.0 / n as f64);
            st.ctl_writes.push(arm.ctl_writes);
            st.api_writes.push(arm.api_writes);
            st.audit_writes.push(arm.audit_writes);
            st.reads.push(arm.api_reads);
            st.p50.push(arm.p50_ms);
            st.p99.push(arm.p99_ms);
            st.errors.push(arm.ctl_errors);
            st.reconciles.push(arm.reconciles);
            st.late.push(arm.rec.late as f64);
            if let Some(a) = arm.after {
                after = Some(a);
            }
            drop(arm.rec);
            if !large || cfg.kcm_large {
                let (kcm, kcm_rec) = kcm_arm(&cfg, n, &format!("{tag}-kcm"), &mut cp_times).await?;
                let peer_ns = format!("bench-peer{n}");
                // Without the Deployment and ReplicaSet controllers: the replay does their work.
                let controllers = "garbage-collector-controller,namespace-controller,serviceaccount-token-controller";
                let (kf, kc, _) = floor_sweep(
                    &cfg,
                    &format!("{tag}-kcmfloor"),
                    &kcm_rec,
                    &kcm_concs,
                    Some(controllers),
                    Some(&peer_ns),
                    &mut cp_times,
                )
                .await?;
                eprintln!(
                    "bench: N={n} rep {}: KCM peer {kcm:.2} s, KCM floor {kf:.2} s (concurrency {kc}, {} requests: {:?})",
                    rep + 1,
                    kcm_rec.plan.steps.len(),
                    kcm_rec.plan.counts
                );
                st.kcm.push(kcm);
                st.kcm_floor.push(kf);
                st.kcm_conc.push(kc);
                st.kcm_ratio.push(kcm / kf);
            }
            eprintln!(
                "bench: N={n} rep {} took {:.0} s (total {:.0} s so far)",
                rep + 1,
                t_rep.elapsed().as_secs_f64(),
                wall.elapsed().as_secs_f64()
            );
        }
        if !large {
            // The concurrencies that won here, for the large rounds.
            best_small = vec![best_of(&st.floor_conc, &st.floor)];
            if !st.kcm_conc.is_empty() {
                best_small_kcm = vec![best_of(&st.kcm_conc, &st.kcm_floor)];
            }
        }
        rounds.push(st);
    }

    let upgrades = if cfg.upgrades > 0 {
        Some(upgrade_round(&cfg, cfg.upgrades, &mut cp_times).await?)
    } else {
        None
    };

    let usage = if cfg.usage_records > 0 {
        Some(usage_round(&cfg, &mut cp_times).await?)
    } else {
        None
    };

    // ---- report ----
    println!("\n## Rounds\n");
    if cfg.quick {
        println!(
            "BENCH_QUICK: sizes {:?}, {} repetition(s), floor concurrency {:?}; not for the record.\n",
            cfg.sizes, cfg.reps, cfg.floor_conc
        );
    }
    println!(
        "Every arm on a fresh control plane (start took {} s: min | median | max). Floor: the recorded arm's requests replayed; ratio = controller / floor per repetition.",
        fmt3(&cp_times, 1)
    );
    for r in &rounds {
        print_round(r);
    }
    let by_n = |n: usize| rounds.iter().find(|r| r.n == n);
    let small = rounds.first();
    let big = rounds.last();
    println!("\n## Targets\n");
    println!("| target | result | |");
    println!("|---|---|---|");
    for n in [1000, 10000] {
        match by_n(n) {
            Some(r) => {
                let m = median(&r.ratio);
                println!(
                    "| converge within 1.15x of the floor at {n} | median ratio {m:.2} ({}) | {} |",
                    fmt3(&r.ratio, 2).replace(" | ", " / "),
                    met(m <= 1.15)
                );
            }
            None => {
                println!("| converge within 1.15x of the floor at {n} | not run (BENCH_SIZES) | |")
            }
        }
    }
    if let (Some(s), Some(b)) = (small, big)
        && s.n != b.n
    {
        let (ts, tb) = (median(&s.per_inst_ms), median(&b.per_inst_ms));
        let dt = tb / ts - 1.0;
        println!(
            "| time per instance flat within 15% from {} to {} | {ts:.2} ms vs {tb:.2} ms ({:+.0}%) | {} |",
            s.n,
            b.n,
            dt * 100.0,
            met(dt.abs() <= 0.15)
        );
        let (qs, qb) = (
            median(&s.ctl_writes) + median(&s.reads),
            median(&b.ctl_writes) + median(&b.reads),
        );
        let dq = qb / qs - 1.0;
        println!(
            "| API requests per instance flat within 15% from {} to {} | {qs:.2} vs {qb:.2} (controller writes + all reads; {:+.0}%) | {} |",
            s.n,
            b.n,
            dq * 100.0,
            met(dq.abs() <= 0.15)
        );
    }
    if let Some(a) = &after {
        println!(
            "| controller peak RSS at most 96 MiB at {} instances | {:.1} MiB ({:.1} MiB after the restart) | {} |",
            a.n,
            a.rss1,
            a.rss2,
            // Issue 15 sets the budget at 3000 instances; issue 13 set
            // the same one at 10,000: judged from 3000 up.
            met_from(3000, a.n, a.rss1.max(a.rss2) <= 96.0)
        );
        println!(
            "| restart over {} converged instances ready in under 5 s with 0 writes | ready {:.2} s, all reconciled {:.2} s, {} writes | {} |",
            a.n,
            a.ready_s,
            a.catch_up_s,
            a.restart_writes,
            met_at_10000(a.n, a.catch_up_s < 5.0 && a.restart_writes == 0.0)
        );
        if !a.repairs.is_empty() {
            let (p50, p99) = (percentile(&a.repairs, 0.5), percentile(&a.repairs, 0.99));
            println!(
                "| drift repair p50 under 1 s and p99 under 3 s ({} deletions, {} instances) | p50 {p50:.0} ms, p99 {p99:.0} ms, max {:.0} ms | {} |",
                a.repairs.len(),
                a.n,
                a.repairs.last().copied().unwrap_or_default(),
                met(p50 < 1000.0 && p99 < 3000.0)
            );
        }
        println!(
            "| 0 writes while idle {} s after convergence | {} controller writes ({} API server writes, all clients) | {} |",
            cfg.idle_secs,
            a.idle_ctl,
            a.idle_api,
            met(a.idle_ctl == 0.0)
        );
    }
    println!(
        "| single create-to-Deployed p50 under 50 ms, idle system | {single_p50:.1} ms ({} tries) | {} |",
        cfg.tries,
        met(single_p50 < 50.0)
    );
    if let Some((up, down)) = &upgrades {
        for (what, m) in [("upgrade", up), ("rollback", down)] {
            let floor = m.best_floor();
            println!(
                "| {what} of {} instances (one object changed, one added, one removed) within 1.25x of the floor, writes per instance = 3 + status | {:.2} s vs floor {floor:.2} s (ratio {:.2}; floor by concurrency {:?}), {:.2} writes per instance | {} |",
                cfg.upgrades,
                m.seconds,
                m.seconds / floor,
                m.floor,
                m.writes,
                met(m.seconds / floor <= 1.25 && (m.writes - 4.0).abs() < 0.05)
            );
        }
    }
    if let Some(u) = &usage {
        let per_period = u.status_writes / (u.periods_closed.max(1) as f64);
        println!(
            "| rating {} usage records ({} pay-as-you-go instances): at most one instance status write per instance per usage period | {:.0} records/s decided ({:.1} s to create, {:.1} s to decide all; {:.0} accepted); {:.0} status writes for {} periods closed ({per_period:.2} per instance-period) | {} |",
            u.records,
            u.instances,
            u.decided / u.decide_s,
            u.create_s,
            u.decide_s,
            u.accepted,
            u.status_writes,
            u.periods_closed,
            met(u.periods_closed > 0 && per_period <= 1.0)
        );
    }
    if after.as_ref().is_some_and(|a| a.n < 3000) {
        println!(
            "\n(The RSS target is for 3000 instances and more, the restart target for 10,000; this run's largest round was smaller, so they are not judged.)"
        );
    } else if after.as_ref().is_some_and(|a| a.n < 10000) {
        println!(
            "\n(The restart target is for 10,000 instances; this run's largest round was smaller, so it is not judged.)"
        );
    }
    if let Some(a) = &after {
        println!(
            "\ncontroller CPU {:.1} s over the N={} arm; {:.1} s after the restart; restart: {} API server writes (all clients)",
            a.cpu1, a.n, a.cpu2, a.restart_api_writes
        );
    }
    let total_s = wall.elapsed().as_secs_f64();
    println!("bench wall time {total_s:.0} s (release build not included)");
    let json_rounds: Vec<Value> = rounds
        .iter()
        .map(|r| {
            let s3 = |v: &[f64]| {
                let (a, b, c) = spread(v);
                json!({"min": a, "median": b, "max": c})
            };
            json!({"n": r.n, "reps": r.reps, "seconds": s3(&r.ctl), "floor_seconds": s3(&r.floor),
                "floor_concurrency": r.floor_conc, "kcm_floor_concurrency": r.kcm_conc, "ratio": s3(&r.ratio), "kcm_seconds": s3(&r.kcm),
                "kcm_floor_seconds": s3(&r.kcm_floor), "kcm_ratio": s3(&r.kcm_ratio),
                "ms_per_instance": s3(&r.per_inst_ms), "writes_per_instance": s3(&r.ctl_writes),
                "audit_writes_per_instance": s3(&r.audit_writes), "apiserver_writes_per_instance": s3(&r.api_writes),
                "apiserver_reads_per_instance": s3(&r.reads), "p50_ms": s3(&r.p50), "p99_ms": s3(&r.p99)})
        })
        .collect();
    let mut summary = json!({"rounds": json_rounds, "single_p50_ms": single_p50, "concurrency": cfg.conc,
        "quick": cfg.quick, "wall_seconds": total_s, "controlplane_start_seconds": {
            "min": spread(&cp_times).0, "median": spread(&cp_times).1, "max": spread(&cp_times).2}});
    if let Some(a) = &after {
        summary["after"] = json!({"n": a.n, "idle_writes": a.idle_ctl, "idle_apiserver_writes": a.idle_api,
            "restart_ready_seconds": a.ready_s, "restart_catch_up_seconds": a.catch_up_s,
            "restart_writes": a.restart_writes, "peak_rss_mib": a.rss1, "cpu_seconds": a.cpu1,
            "restart_rss_mib": a.rss2, "restart_cpu_seconds": a.cpu2,
            "repairs": a.repairs.len(), "repair_p50_ms": percentile(&a.repairs, 0.5),
            "repair_p99_ms": percentile(&a.repairs, 0.99)});
    }
    if let Some((up, down)) = &upgrades {
        let j = |m: &Move| {
            json!({"seconds": m.seconds, "writes_per_instance": m.writes,
            "floor_seconds": m.best_floor(), "ratio": m.seconds / m.best_floor(), "floor_by_concurrency": m.floor})
        };
        summary["upgrade"] = json!({"n": cfg.upgrades, "up": j(up), "down": j(down)});
    }
    if let Some(u) = &usage {
        summary["usage"] = json!({"records": u.records, "instances": u.instances, "create_seconds": u.create_s,
            "decide_seconds": u.decide_s, "records_per_second": u.decided / u.decide_s, "accepted": u.accepted,
            "instance_status_writes": u.status_writes, "periods_closed": u.periods_closed});
    }
    println!("BENCH_JSON {summary}");
    if cfg.own_work {
        let _ = std::fs::remove_dir_all(&cfg.work);
    }
    Ok(())
}
