//! Provisioning benchmark against a real control plane (run by `make bench`,
//! which starts the control plane and builds the controller in release mode).
//!
//! Measures, in one run: convergence time and per-instance latency for N
//! instances (mixed over the four scenarios and direct purchases, 4 template
//! objects each), single-instance latency on an idle system, API requests per
//! instance (the controller's own counters, cross-checked against the API
//! server's apiserver_request_total), writes while idle and after a restart,
//! the controller's peak RSS and CPU seconds; and two baselines on the same
//! control plane: a bare client writing the same objects with the same
//! concurrency, and kube-controller-manager's Deployment and ReplicaSet
//! controllers creating N*4 pods from N Deployments.
//!
//! Environment: KUBECONFIG (required), BENCH_CONTROLLER (controller binary),
//! BENCH_SIZES (default 100,1000,3000), BENCH_CONCURRENCY (default 16),
//! BENCH_IDLE_SECS (default 60), BENCH_SINGLE_TRIES (default 50).

use computenest::api::*;
use computenest::provision::managed_namespace_name;
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, CustomResourceExt, ResourceExt};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}

const FM: &str = "bench.computenest.dev";

/// Products: (kind, seller namespace, name); mixed round-robin.
const PRODUCTS: [(&str, &str, &str); 6] = [
    ("DerivedService", "bench-dist", "p1"),
    ("DerivedService", "bench-dist", "p2"),
    ("DerivedService", "bench-dist", "p3"),
    ("DerivedService", "bench-dist", "p4"),
    ("Service", "bench-isv", "priv"),
    ("Service", "bench-isv", "fml"),
];

fn template() -> Value {
    json!({"objects": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "$(instance.name)-config"}, "data": {"size": "$(params.size)"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "$(instance.name)-env"}, "data": {"mode": "production"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "$(instance.name)"}, "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "$(instance.name)"}}
    ]})
}

async fn apply_json<K>(client: &Client, ns: &str, v: Value) -> Res<()>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let name = v["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    Api::<K>::namespaced(client.clone(), ns)
        .patch(&name, &PatchParams::apply(FM).force(), &Patch::Apply(&v))
        .await?;
    Ok(())
}

async fn ensure_ns(client: &Client, name: &str) -> Res<()> {
    let api = Api::<Namespace>::all(client.clone());
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    api.patch(name, &PatchParams::apply(FM).force(), &Patch::Apply(&ns))
        .await?;
    Ok(())
}

async fn setup_products(client: &Client) -> Res<()> {
    let crds = Api::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>::all(client.clone());
    for crd in all_crds() {
        crds.patch(
            &crd.name_any(),
            &PatchParams::apply(FM).force(),
            &Patch::Apply(&crd),
        )
        .await?;
    }
    tokio::time::sleep(Duration::from_secs(3)).await; // let the CRDs become Established
    ensure_ns(client, "bench-isv").await?;
    ensure_ns(client, "bench-dist").await?;
    for (name, type_, listed) in [
        ("priv", "Private", false),
        ("fml", "FullyManaged", true),
        ("fmu", "FullyManaged", false),
    ] {
        apply_json::<Service>(client, "bench-isv", json!({
            "apiVersion": "computenest.dev/v1alpha1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": type_, "version": "1.0", "marketplace": {"listed": listed},
                     "distribution": {"enabled": true, "approval": "Manual"},
                     "parameters": [{"name": "size", "type": "String", "default": "small"}],
                     "template": template(), "outputs": {"logonUrl": "https://$(instance.name).$(instance.namespace).example.com"}}
        })).await?;
        apply_json::<DistributionGrant>(client, "bench-isv", json!({
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
        apply_json::<DerivedService>(client, "bench-dist", json!({
            "apiVersion": "computenest.dev/v1alpha1", "kind": "DerivedService", "metadata": {"name": name},
            "spec": {"source": {"namespace": "bench-isv", "name": source}, "type": type_, "marketplace": {"listed": true}}
        })).await?;
    }
    Ok(())
}

/// Records when each instance was first seen Deployed (watch-fed, like a user's kubectl --watch).
#[derive(Clone, Default)]
struct DeployedTimes(Arc<Mutex<HashMap<String, Instant>>>);

impl DeployedTimes {
    fn spawn(client: Client) -> Self {
        let me = DeployedTimes::default();
        let inner = me.clone();
        tokio::spawn(async move {
            let api = Api::<ServiceInstance>::all(client);
            let mut s = watcher(api, watcher::Config::default()).boxed();
            while let Some(ev) = s.next().await {
                let objs = match ev {
                    Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::InitApply(o)) => vec![o],
                    _ => continue,
                };
                for o in objs {
                    if o.status.as_ref().and_then(|s| s.phase) == Some(Phase::Deployed)
                        && let Ok(mut m) = inner.0.lock()
                    {
                        let key = format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any());
                        m.entry(key).or_insert_with(Instant::now);
                    }
                }
            }
        });
        me
    }
    fn get(&self, key: &str) -> Option<Instant> {
        self.0.lock().ok().and_then(|m| m.get(key).copied())
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

/// Sum of a counter family on the controller's /metrics.
async fn controller_counter(addr: &str, name: &str) -> f64 {
    let Some(body) = http_get(addr, "/metrics").await else {
        return f64::NAN;
    };
    body.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum::<f64>()
        + 0.0 // an empty sum is -0.0; print it as 0
}

async fn controller_counter_with(addr: &str, name: &str, label: &str) -> f64 {
    let Some(body) = http_get(addr, "/metrics").await else {
        return f64::NAN;
    };
    body.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
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
    async fn start(bin: &str, concurrency: usize) -> Res<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let log =
            std::fs::File::create(std::env::temp_dir().join("computenest-bench-controller.log"))?;
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
            .env("RUST_LOG", "warn")
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()?;
        let c = Controller { child, addr };
        let start = Instant::now();
        while http_get(&c.addr, "/readyz").await.is_none() {
            if start.elapsed() > Duration::from_secs(60) {
                return Err("the controller did not become ready within 60 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
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
        let ticks: f64 = fields
            .get(11)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            + fields
                .get(12)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
        (hwm, ticks / 100.0)
    }
    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let _ = self.child.wait();
    }
}

struct Round {
    n: usize,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    ctl_writes: f64,
    ctl_errors: f64,
    reconciles: f64,
    api_writes: f64,
    api_reads: f64,
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
    let created: Vec<(String, Instant)> = stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            let ns = customers[i % customers.len()].clone();
            async move {
                let name = format!("i{i}");
                let obj: ServiceInstance = serde_json::from_value(instance_json(&name, i))?;
                let t = Instant::now();
                Api::<ServiceInstance>::namespaced(client, &ns)
                    .create(&PostParams::default(), &obj)
                    .await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>((format!("{ns}/{name}"), t))
            }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    Ok(created)
}

async fn converge_round(
    client: &Client,
    times: &DeployedTimes,
    ctl: &Controller,
    n: usize,
    concurrency: usize,
) -> Res<Round> {
    let (r0, w0) = apiserver_requests(client).await?;
    let c0 = controller_counter(&ctl.addr, "computenest_api_writes_total").await;
    let e0 = controller_counter(&ctl.addr, "computenest_reconcile_errors_total").await;
    let k0 = controller_counter(&ctl.addr, "computenest_reconciles_total").await;
    let t0 = Instant::now();
    let created = create_instances(client, &format!("bench-n{n}"), n, concurrency).await?;
    let mut lat = Vec::with_capacity(n);
    let deadline = Instant::now() + Duration::from_secs(900);
    for (key, t) in &created {
        loop {
            if let Some(d) = times.get(key) {
                lat.push(d.saturating_duration_since(*t).as_secs_f64() * 1000.0);
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("{key} not Deployed within 900 s").into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let end = created
        .iter()
        .filter_map(|(k, _)| times.get(k))
        .max()
        .unwrap_or(t0);
    let seconds = end.saturating_duration_since(t0).as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await; // let trailing status writes land before counting
    let (r1, w1) = apiserver_requests(client).await?;
    let c1 = controller_counter(&ctl.addr, "computenest_api_writes_total").await;
    let e1 = controller_counter(&ctl.addr, "computenest_reconcile_errors_total").await;
    let k1 = controller_counter(&ctl.addr, "computenest_reconciles_total").await;
    if let Some(body) = http_get(&ctl.addr, "/metrics").await {
        for l in body
            .lines()
            .filter(|l| l.starts_with("computenest_reconcile_errors_total{"))
        {
            eprintln!("bench: N={n}: {l}");
        }
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    Ok(Round {
        n,
        seconds,
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        ctl_writes: (c1 - c0) / n as f64,
        ctl_errors: e1 - e0,
        reconciles: (k1 - k0) / n as f64,
        // The API server also counts this client's N creates: subtract them.
        api_writes: (w1 - w0 - n as f64) / n as f64,
        api_reads: (r1 - r0) / n as f64,
    })
}

/// The limit: a bare client writing the same objects as the controller, as fast as it can.
async fn bare_client(client: &Client, n: usize, concurrency: usize) -> Res<f64> {
    let prefix = format!("bench-bare{n}");
    let customers: Vec<String> = (0..10).map(|k| format!("{prefix}-c{k}")).collect();
    for c in &customers {
        ensure_ns(client, c).await?;
    }
    let t0 = Instant::now();
    stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            let ns = customers[i % customers.len()].clone();
            async move {
                let name = format!("i{i}");
                let (kind, _, product) = PRODUCTS[i % PRODUCTS.len()];
                let managed = matches!(product, "p2" | "p3" | "p4" | "fml");
                let online = product == "p3";
                let obj: ServiceInstance = serde_json::from_value(instance_json(&name, i))?;
                let created = Api::<ServiceInstance>::namespaced(client.clone(), &ns).create(&PostParams::default(), &obj).await?;
                let uid = created.metadata.uid.unwrap_or_default();
                let target = if managed { managed_namespace_name(&ns, &name, &uid) } else { ns.clone() };
                if managed {
                    ensure_ns(&client, &target).await?;
                }
                for o in template()["objects"].as_array().cloned().unwrap_or_default() {
                    let s = serde_json::to_string(&o)?.replace("$(instance.name)", &name).replace("$(params.size)", "small");
                    let mut o: Value = serde_json::from_str(&s)?;
                    o["metadata"]["namespace"] = json!(target);
                    let ar = kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk("", "v1", o["kind"].as_str().unwrap_or_default()));
                    let oname = o["metadata"]["name"].as_str().unwrap_or_default().to_string();
                    Api::<kube::core::DynamicObject>::namespaced_with(client.clone(), &target, &ar)
                        .patch(&oname, &PatchParams::apply(FM).force(), &Patch::Apply(&o))
                        .await?;
                }
                let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("{name}-logon"), "namespace": ns},
                                    "stringData": {"logonUrl": "https://x"}});
                Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns)
                    .patch(&format!("{name}-logon"), &PatchParams::apply(FM).force(), &Patch::Apply(&secret))
                    .await?;
                if online {
                    for (seller, role) in [("bench-dist", "sale"), ("bench-isv", "resale")] {
                        let order: Order = serde_json::from_value(json!({
                            "apiVersion": "computenest.dev/v1alpha1", "kind": "Order",
                            "metadata": {"name": format!("bare-{ns}-{name}-{role}")},
                            "spec": {"seller": {"party": "Distributor", "namespace": seller}, "buyer": {"party": "Customer", "namespace": ns},
                                     "item": {"kind": kind, "namespace": seller, "name": product},
                                     "instance": {"namespace": ns, "name": name, "uid": "u"}, "settlement": "Online"}
                        }))?;
                        Api::<Order>::namespaced(client.clone(), seller).create(&PostParams::default(), &order).await?;
                    }
                }
                let status = json!({"apiVersion": "computenest.dev/v1alpha1", "kind": "ServiceInstance",
                                    "status": {"phase": "Deployed", "logonUrl": "https://x"}});
                Api::<ServiceInstance>::namespaced(client.clone(), &ns)
                    .patch_status(&name, &PatchParams::apply(FM).force(), &Patch::Apply(&status))
                    .await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(t0.elapsed().as_secs_f64())
}

/// The peer: kube-controller-manager's Deployment and ReplicaSet controllers creating n*4 pods.
async fn peer(client: &Client, n: usize, concurrency: usize) -> Res<f64> {
    let ns = format!("bench-peer{n}");
    ensure_ns(client, &ns).await?;
    let api = Api::<Deployment>::namespaced(client.clone(), &ns);
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let t0 = Instant::now();
    stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let d: Deployment = serde_json::from_value(json!({
                    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": format!("d{i}")},
                    "spec": {"replicas": 4, "selector": {"matchLabels": {"app": format!("d{i}")}},
                             "template": {"metadata": {"labels": {"app": format!("d{i}")}},
                                          "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
                }))?;
                api.create(&PostParams::default(), &d).await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let count = pods
            .list_metadata(&ListParams::default())
            .await?
            .items
            .len();
        if count >= n * 4 {
            return Ok(t0.elapsed().as_secs_f64());
        }
        if Instant::now() > deadline {
            return Err(format!("peer: only {count} of {} pods after 900 s", n * 4).into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::main]
async fn main() -> Res<()> {
    if std::env::args().any(|a| a == "--bench" || a == "--list")
        && std::env::var("KUBECONFIG").is_err()
    {
        eprintln!(
            "provision bench: KUBECONFIG is not set; run `make bench`, which starts a control plane"
        );
        std::process::exit(1);
    }
    let bin = env_or("BENCH_CONTROLLER", "target/release/computenest-controller");
    let sizes: Vec<usize> = env_or("BENCH_SIZES", "100,1000,3000")
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let concurrency: usize = env_or("BENCH_CONCURRENCY", "16").parse()?;
    let idle_secs: u64 = env_or("BENCH_IDLE_SECS", "60").parse()?;
    let tries: usize = env_or("BENCH_SINGLE_TRIES", "50").parse()?;
    let client = Client::try_default().await?;
    let _ = ServiceInstance::crd();
    setup_products(&client).await?;
    let times = DeployedTimes::spawn(client.clone());
    let mut ctl = Controller::start(&bin, concurrency).await?;
    eprintln!("bench: controller {} ready (pid {})", bin, ctl.pid());
    // Products sellable.
    let dsapi = Api::<DerivedService>::namespaced(client.clone(), "bench-dist");
    let start = Instant::now();
    loop {
        let ready = dsapi
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|d| {
                d.status
                    .as_ref()
                    .and_then(|s| computenest::controller::status::ready(&s.conditions))
                    .is_some_and(|c| c.status == "True")
            })
            .count();
        if ready == 4 {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            return Err("derived products not sellable within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Single-instance latency on an idle system.
    ensure_ns(&client, "bench-single").await?;
    let mut single = Vec::new();
    for i in 0..tries {
        let name = format!("s{i}");
        let obj: ServiceInstance = serde_json::from_value(instance_json(&name, i))?;
        let t = Instant::now();
        Api::<ServiceInstance>::namespaced(client.clone(), "bench-single")
            .create(&PostParams::default(), &obj)
            .await?;
        let key = format!("bench-single/{name}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(d) = times.get(&key) {
                single.push(d.saturating_duration_since(t).as_secs_f64() * 1000.0);
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("{key} not Deployed within 30 s").into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    single.sort_by(|a, b| a.total_cmp(b));
    let single_p50 = percentile(&single, 0.5);
    eprintln!("bench: single-instance create->Deployed p50 {single_p50:.1} ms over {tries}");

    let mut rounds = Vec::new();
    let mut total = tries;
    for &n in &sizes {
        let r = converge_round(&client, &times, &ctl, n, concurrency).await?;
        total += n;
        eprintln!(
            "bench: N={n}: {:.1} s, p50 {:.0} ms, p99 {:.0} ms, controller writes/instance {:.2}, apiserver writes/instance {:.2}, reads/instance {:.2}, reconciles/instance {:.2}, reconcile errors {}",
            r.seconds,
            r.p50_ms,
            r.p99_ms,
            r.ctl_writes,
            r.api_writes,
            r.api_reads,
            r.reconciles,
            r.ctl_errors
        );
        rounds.push(r);
    }

    // Idle.
    let (_, iw0) = apiserver_requests(&client).await?;
    let ic0 = controller_counter(&ctl.addr, "computenest_api_writes_total").await;
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let (_, iw1) = apiserver_requests(&client).await?;
    let ic1 = controller_counter(&ctl.addr, "computenest_api_writes_total").await;
    let idle_ctl = ic1 - ic0;
    let idle_api = iw1 - iw0;
    let (rss1, cpu1) = ctl.usage();
    eprintln!(
        "bench: idle {idle_secs} s: controller writes {idle_ctl}, apiserver writes {idle_api}; peak RSS {rss1:.1} MiB, CPU {cpu1:.1} s"
    );

    // Restart over everything converged.
    ctl.stop();
    let (_, rw0) = apiserver_requests(&client).await?;
    let t_restart = Instant::now();
    ctl = Controller::start(&bin, concurrency).await?;
    let ready_s = t_restart.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let reconciled = controller_counter_with(
            &ctl.addr,
            "computenest_reconciles_total",
            "kind=\"ServiceInstance\"",
        )
        .await;
        if reconciled >= total as f64 {
            break;
        }
        if Instant::now() > deadline {
            return Err(
                "restart: the controller did not reconcile every instance within 600 s".into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let catch_up_s = t_restart.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let restart_ctl = controller_counter(&ctl.addr, "computenest_api_writes_total").await;
    let (_, rw1) = apiserver_requests(&client).await?;
    let (rss2, cpu2) = ctl.usage();
    eprintln!(
        "bench: restart over {total} instances: ready {ready_s:.1} s, all reconciled {catch_up_s:.1} s, controller writes {restart_ctl}, apiserver writes {}; RSS {rss2:.1} MiB, CPU {cpu2:.1} s",
        rw1 - rw0
    );
    ctl.stop();

    // Baselines, with the controller stopped.
    let mut baselines = BTreeMap::new();
    for &n in &sizes {
        let bare = bare_client(&client, n, concurrency).await?;
        let peer_s = peer(&client, n, concurrency).await?;
        eprintln!(
            "bench: baselines N={n}: bare client {bare:.1} s, kube-controller-manager peer {peer_s:.1} s"
        );
        baselines.insert(n, (bare, peer_s));
    }

    // Report.
    println!(
        "\n| N | converge (s) | bare client (s) | ratio | KCM peer (s) | ratio | p50 (ms) | p99 (ms) | writes/inst (controller) | writes/inst (apiserver) | reads/inst (apiserver) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut json_rounds = Vec::new();
    for r in &rounds {
        let (bare, peer_s) = baselines.get(&r.n).copied().unwrap_or((f64::NAN, f64::NAN));
        println!(
            "| {} | {:.1} | {:.1} | {:.2} | {:.1} | {:.2} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} |",
            r.n,
            r.seconds,
            bare,
            r.seconds / bare,
            peer_s,
            r.seconds / peer_s,
            r.p50_ms,
            r.p99_ms,
            r.ctl_writes,
            r.api_writes,
            r.api_reads
        );
        json_rounds.push(json!({"n": r.n, "seconds": r.seconds, "bare_seconds": bare, "peer_seconds": peer_s,
            "ratio_bare": r.seconds / bare, "ratio_peer": r.seconds / peer_s, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms,
            "writes_per_instance": r.ctl_writes, "apiserver_writes_per_instance": r.api_writes, "apiserver_reads_per_instance": r.api_reads}));
    }
    println!("\nsingle-instance create->Deployed p50: {single_p50:.1} ms ({tries} tries)");
    println!(
        "idle {idle_secs} s after convergence: {idle_ctl} controller writes, {idle_api} API server writes (all clients)"
    );
    println!(
        "restart over {total} converged instances: ready in {ready_s:.1} s, all reconciled in {catch_up_s:.1} s, {restart_ctl} controller writes"
    );
    println!(
        "controller peak RSS {rss1:.1} MiB and CPU {cpu1:.1} s (first run); after restart RSS {rss2:.1} MiB, CPU {cpu2:.1} s"
    );
    let summary = json!({"rounds": json_rounds, "single_p50_ms": single_p50, "idle_writes": idle_ctl, "idle_apiserver_writes": idle_api,
        "restart_ready_seconds": ready_s, "restart_catch_up_seconds": catch_up_s, "restart_writes": restart_ctl,
        "peak_rss_mib": rss1, "cpu_seconds": cpu1, "restart_rss_mib": rss2, "concurrency": concurrency, "total_instances": total});
    println!("BENCH_JSON {summary}");
    Ok(())
}
