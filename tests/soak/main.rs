//! Reliability suite (`make soak`): crashes, control-plane faults, high
//! availability and conflicts, against a real control plane started by
//! hack/soak.sh. Each test runs its own controller processes.

#[allow(dead_code)]
#[path = "../integration/fixtures.rs"]
mod fixtures;
#[allow(dead_code)]
#[path = "../integration/harness.rs"]
mod harness;

use computenest::api::*;
use fixtures::*;
use harness::*;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A controller process of this test.
struct Ctl {
    child: Child,
    addr: String,
}

impl Ctl {
    fn start(extra: &[&str], log_name: &str) -> Self {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(std::env::temp_dir().join(format!("computenest-soak-{log_name}.log")))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_computenest-controller"))
            .args(["run", "--health-addr", &addr, "--concurrency", "16"])
            .args(extra)
            .arg(format!("--exit-with-parent={}", std::process::id()))
            .env("RUST_LOG", "info,kube=warn")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("controller starts");
        Ctl { child, addr }
    }
    fn pid(&self) -> u32 {
        self.child.id()
    }
    fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    fn term(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let _ = self.child.wait();
    }
    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
    async fn metric(&self, name: &str) -> Option<f64> {
        let body = http_get(&self.addr, "/metrics").await?;
        Some(
            body.lines()
                .filter(|l| l.starts_with(name) && !l.starts_with('#'))
                .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
                .sum(),
        )
    }
}

fn cp_dir() -> String {
    std::env::var("COMPUTENEST_CP_DIR").unwrap_or_else(|_| {
        panic!("the soak suite needs COMPUTENEST_CP_DIR (the control plane's state directory): run `make soak`")
    })
}

/// Restarts a control-plane component with its own command line (kill, then start again).
fn restart_component(name: &str) {
    let dir = cp_dir();
    let pid_file = format!("{dir}/{name}.pid");
    let pid = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .to_string();
    let argv: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
        .expect("cmdline")
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).to_string())
        .collect();
    let _ = Command::new("kill").arg("-TERM").arg(&pid).status();
    let start = Instant::now();
    while std::path::Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
    {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = Command::new("kill").arg("-KILL").arg(&pid).status();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(format!("{dir}/logs/{name}.log"))
        .expect("log");
    // Detached on purpose: the control plane's stop script ends it, not this test.
    #[allow(clippy::zombie_processes)]
    let child = Command::new("setsid")
        .args(&argv)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().expect("log")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("component restarts");
    std::fs::write(&pid_file, child.id().to_string()).expect("pid file");
}

const PRODUCTS: [(&str, &str); 6] = [
    ("DerivedService", "p1"),
    ("DerivedService", "p2"),
    ("DerivedService", "p3"),
    ("DerivedService", "p4"),
    ("Service", "priv"),
    ("Service", "fml"),
];

/// ISV and distributor with the four derived products and two direct ones.
async fn products(client: &Client, isv: &str, dist: &str) {
    for (name, type_, listed) in [
        ("priv", "Private", false),
        ("fml", "FullyManaged", true),
        ("fmu", "FullyManaged", false),
    ] {
        apply(
            client,
            isv,
            &service_manifest(name, type_, listed, true, "Manual"),
        )
        .await
        .expect("service");
        apply(
            client,
            isv,
            &grant_manifest(&format!("{name}-grant"), name, dist, "Approved"),
        )
        .await
        .expect("grant");
    }
    for (name, source, type_) in [
        ("p1", "priv", "Private"),
        ("p2", "priv", "FullyManaged"),
        ("p3", "fml", "FullyManaged"),
        ("p4", "fmu", "FullyManaged"),
    ] {
        apply(client, dist, &derived_manifest(name, isv, source, type_))
            .await
            .expect("derived");
    }
}

async fn create_instance(client: &Client, cust: &str, isv: &str, dist: &str, i: usize) -> String {
    let (kind, product) = PRODUCTS[i % PRODUCTS.len()];
    let seller = if kind == "Service" { isv } else { dist };
    let name = format!("i{i}");
    let inst: ServiceInstance = serde_json::from_value(json!({
        "apiVersion": "computenest.dev/v1alpha1", "kind": "ServiceInstance", "metadata": {"name": name},
        "spec": {"serviceRef": {"kind": kind, "namespace": seller, "name": product}, "plan": "basic"}
    }))
    .expect("instance");
    Api::<ServiceInstance>::namespaced(client.clone(), cust)
        .create(&PostParams::default(), &inst)
        .await
        .expect("create instance");
    name
}

async fn all_deployed(client: &Client, cust: &str, n: usize, deadline: Duration) {
    wait_for(
        &format!("{n} instances Deployed in {cust}"),
        deadline,
        || {
            let api = Api::<ServiceInstance>::namespaced(client.clone(), cust);
            async move {
                let l = api.list(&ListParams::default()).await.ok()?;
                let done = l
                    .items
                    .iter()
                    .filter(|i| i.status.as_ref().and_then(|s| s.phase) == Some(Phase::Deployed))
                    .count();
                (done == n && l.items.len() == n).then_some(())
            }
        },
    )
    .await;
}

/// Checks the invariants: exactly two Orders per scenario-3 instance and none
/// elsewhere; exactly one managed namespace per fully managed instance.
async fn check_invariants(client: &Client, isv: &str, dist: &str, cust: &str) -> (usize, usize) {
    let instances = Api::<ServiceInstance>::namespaced(client.clone(), cust)
        .list(&ListParams::default())
        .await
        .expect("list")
        .items;
    let mut orders_by_uid: HashMap<String, usize> = HashMap::new();
    for ns in [isv, dist, cust] {
        for o in Api::<Order>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .expect("orders")
            .items
        {
            *orders_by_uid
                .entry(o.spec.instance.uid.clone())
                .or_default() += 1;
        }
    }
    let namespaces = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default().labels(&format!("computenest.dev/instance-namespace={cust}")))
        .await
        .expect("namespaces")
        .items;
    let mut ns_by_uid: HashMap<String, usize> = HashMap::new();
    for n in &namespaces {
        *ns_by_uid
            .entry(
                n.labels()
                    .get("computenest.dev/instance-uid")
                    .cloned()
                    .unwrap_or_default(),
            )
            .or_default() += 1;
    }
    let (mut s3, mut managed) = (0, 0);
    for i in &instances {
        let uid = i.uid().unwrap_or_default();
        let s = i.status.as_ref().expect("status");
        let scenario = s.scenario.as_deref().unwrap_or_default();
        let want_orders = if scenario == "Scenario3" { 2 } else { 0 };
        s3 += usize::from(want_orders == 2);
        assert_eq!(
            orders_by_uid.get(&uid).copied().unwrap_or(0),
            want_orders,
            "{}: orders",
            i.name_any()
        );
        let is_managed = s.owner.as_ref().is_some_and(|o| o.target_namespace != cust);
        managed += usize::from(is_managed);
        assert_eq!(
            ns_by_uid.get(&uid).copied().unwrap_or(0),
            usize::from(is_managed),
            "{}: managed namespaces",
            i.name_any()
        );
    }
    assert_eq!(
        orders_by_uid.values().sum::<usize>(),
        2 * s3,
        "no Order without its instance"
    );
    assert_eq!(
        namespaces.len(),
        managed,
        "no managed namespace without its instance"
    );
    (s3, managed)
}

/// Deletes every instance and checks that nothing is left behind.
async fn delete_all_and_check_empty(client: &Client, cust: &str) {
    let api = Api::<ServiceInstance>::namespaced(client.clone(), cust);
    api.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .expect("delete instances");
    wait_for(
        "every instance, managed namespace and provisioned object is gone",
        Duration::from_secs(240),
        || {
            let (client, api, cust) = (client.clone(), api.clone(), cust.to_string());
            async move {
                let left = api.list(&ListParams::default()).await.ok()?.items.len();
                let namespaces = Api::<Namespace>::all(client.clone())
                    .list(
                        &ListParams::default()
                            .labels(&format!("computenest.dev/instance-namespace={cust}")),
                    )
                    .await
                    .ok()?
                    .items
                    .len();
                let objects = Api::<ConfigMap>::namespaced(client.clone(), &cust)
                    .list(
                        &ListParams::default()
                            .labels("app.kubernetes.io/managed-by=computenest-controller"),
                    )
                    .await
                    .ok()?
                    .items
                    .len();
                (left == 0 && namespaces == 0 && objects == 0).then_some(())
            }
        },
    )
    .await;
}

#[tokio::test]
async fn crash_consistency_under_repeated_sigkill() {
    let client = client().await;
    install_crds(&client).await;
    let t = TestNamespaces::new(&client, &["isv", "dist", "cust"]).await;
    let (isv, dist, cust) = (t.ns(0), t.ns(1), t.ns(2));
    products(&client, isv, dist).await;
    let n: usize = std::env::var("SOAK_INSTANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let mut ctl = Ctl::start(&[], "crash");
    let creator = {
        let (client, isv, dist, cust) = (
            client.clone(),
            isv.to_string(),
            dist.to_string(),
            cust.to_string(),
        );
        tokio::spawn(async move {
            for i in 0..n {
                create_instance(&client, &cust, &isv, &dist, i).await;
            }
        })
    };
    let mut kills = 0;
    let mut rng_state = 0x9e3779b97f4a7c15u64 ^ u64::from(std::process::id());
    let mut next = || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };
    while kills < 6 {
        tokio::time::sleep(Duration::from_millis(300 + next() % 2200)).await;
        ctl.kill9();
        kills += 1;
        ctl = Ctl::start(&[], "crash");
    }
    creator.await.expect("creator");
    // A last kill after every instance exists, then let it converge.
    tokio::time::sleep(Duration::from_millis(next() % 1500)).await;
    ctl.kill9();
    kills += 1;
    let ctl = Ctl::start(&[], "crash");
    all_deployed(&client, cust, n, Duration::from_secs(300)).await;
    let (s3, managed) = check_invariants(&client, isv, dist, cust).await;
    eprintln!(
        "soak: {n} instances, {kills} SIGKILLs survived, {s3} scenario-3 instances with 2 Orders each, {managed} managed namespaces, 0 lost or misplaced"
    );
    delete_all_and_check_empty(&client, cust).await;
    ctl.term();
    t.cleanup().await;
}

#[tokio::test]
async fn control_plane_faults_apiserver_and_etcd_restarts() {
    let client = client().await;
    install_crds(&client).await;
    let t = TestNamespaces::new(&client, &["isv", "dist", "cust"]).await;
    let (isv, dist, cust) = (t.ns(0), t.ns(1), t.ns(2));
    products(&client, isv, dist).await;
    let mut ctl = Ctl::start(&[], "faults");
    wait_for("controller ready", DEADLINE, || {
        let addr = ctl.addr.clone();
        async move { http_get(&addr, "/readyz").await.map(|_| ()) }
    })
    .await;
    let pid = ctl.pid();
    let mut total = 0;
    for (round, component) in ["kube-apiserver", "etcd"].iter().enumerate() {
        for i in 0..30 {
            create_instance(&client, cust, isv, dist, round * 100 + i).await;
        }
        total += 30;
        restart_component(component);
        // Meanwhile the process stays healthy (it serves /healthz) and keeps its caches.
        let health = http_get(&ctl.addr, "/healthz").await;
        assert_eq!(
            health.as_deref(),
            Some("ok"),
            "/healthz during the {component} restart"
        );
        // The API server comes back (etcd's restart makes it unready for a while).
        let fresh = wait_for(
            &format!("API server answers after the {component} restart"),
            Duration::from_secs(90),
            || async {
                let c = Client::try_default().await.ok()?;
                c.apiserver_version().await.ok().map(|_| c)
            },
        )
        .await;
        for i in 30..40 {
            create_instance(&fresh, cust, isv, dist, round * 100 + i).await;
        }
        total += 10;
        all_deployed(&fresh, cust, total, Duration::from_secs(180)).await;
        assert!(
            ctl.alive(),
            "the controller reconnected by itself, without a restart"
        );
        assert_eq!(ctl.pid(), pid);
        assert_eq!(http_get(&ctl.addr, "/readyz").await.as_deref(), Some("ok"));
        eprintln!("soak: survived a {component} restart; {total} instances Deployed");
    }
    let client = Client::try_default().await.expect("client");
    check_invariants(&client, isv, dist, cust).await;
    delete_all_and_check_empty(&client, cust).await;
    ctl.term();
    t.cleanup().await;
}

#[tokio::test]
async fn high_availability_one_writer_and_failover() {
    let client = client().await;
    install_crds(&client).await;
    let t = TestNamespaces::new(&client, &["isv", "dist", "cust", "lease"]).await;
    let (isv, dist, cust, lease_ns) = (t.ns(0), t.ns(1), t.ns(2), t.ns(3));
    products(&client, isv, dist).await;
    let args = [
        "--leader-election=true",
        "--lease-namespace",
        lease_ns,
        "--lease-duration",
        "6",
    ];
    let a = Ctl::start(&[&args[..], &["--identity", "replica-a"]].concat(), "ha-a");
    let b = Ctl::start(&[&args[..], &["--identity", "replica-b"]].concat(), "ha-b");
    let (leader, _) = wait_for("exactly one leader", DEADLINE, || {
        let (aa, ba) = (a.addr.clone(), b.addr.clone());
        async move {
            let la = http_get(&aa, "/metrics")
                .await
                .map(|b| b.lines().any(|l| l == "computenest_leader 1"))?;
            let lb = http_get(&ba, "/metrics")
                .await
                .map(|b| b.lines().any(|l| l == "computenest_leader 1"))?;
            match (la, lb) {
                (true, false) => Some(('a', 'b')),
                (false, true) => Some(('b', 'a')),
                _ => None,
            }
        }
    })
    .await;
    let (leader, standby) = if leader == 'a' { (a, b) } else { (b, a) };
    let _ = standby.pid();
    for i in 0..40 {
        create_instance(&client, cust, isv, dist, i).await;
    }
    all_deployed(&client, cust, 40, Duration::from_secs(120)).await;
    assert_eq!(
        standby.metric("computenest_api_writes_total").await,
        Some(0.0),
        "the standby wrote nothing"
    );
    // One field manager on every status: ours, written by whichever replica leads.
    let inst = Api::<ServiceInstance>::namespaced(client.clone(), cust)
        .get("i0")
        .await
        .expect("instance");
    // Status has exactly one field manager, whichever replica wrote it.
    let status_managers: Vec<String> = inst
        .managed_fields()
        .iter()
        .filter(|m| m.subresource.as_deref() == Some("status"))
        .filter_map(|m| m.manager.clone())
        .collect();
    assert_eq!(status_managers, vec!["computenest-controller".to_string()]);

    // Kill the leader in the middle of a batch; the standby finishes within the lease duration plus a reconcile.
    for i in 40..80 {
        create_instance(&client, cust, isv, dist, i).await;
        if i == 50 {
            leader.kill9();
            break;
        }
    }
    let killed_at = Instant::now();
    for i in 51..80 {
        create_instance(&client, cust, isv, dist, i).await;
    }
    all_deployed(&client, cust, 80, Duration::from_secs(60)).await;
    let took = killed_at.elapsed();
    eprintln!("soak: standby finished the work {took:?} after the leader was killed (lease 6 s)");
    assert!(took < Duration::from_secs(6 + 20), "failover took {took:?}");
    assert_eq!(standby.metric("computenest_leader").await, Some(1.0));
    check_invariants(&client, isv, dist, cust).await;
    standby.term();
    t.cleanup().await;
}

#[tokio::test]
async fn conflicts_edits_during_status_writes_lose_nothing() {
    let client = client().await;
    install_crds(&client).await;
    let t = TestNamespaces::new(&client, &["isv", "dist", "cust"]).await;
    let (isv, dist, cust) = (t.ns(0), t.ns(1), t.ns(2));
    products(&client, isv, dist).await;
    let ctl = Ctl::start(&[], "conflicts");
    for i in 0..30 {
        create_instance(&client, cust, isv, dist, i * 6 + 4).await; // direct private: objects in the customer's namespace
    }
    // Customers change parameters and ISVs edit the Service while the controller writes.
    let api = Api::<ServiceInstance>::namespaced(client.clone(), cust);
    let svc = Api::<Service>::namespaced(client.clone(), isv);
    for round in 1..=5 {
        for i in 0..30 {
            let name = format!("i{}", i * 6 + 4);
            let p = json!({"spec": {"parameters": {"replicas": 1 + (round + i) % 5}}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&p))
                .await
                .expect("customer edit");
        }
        let p = json!({"spec": {"marketplace": {"price": format!("{round} USD")}}});
        svc.patch("priv", &PatchParams::default(), &Patch::Merge(&p))
            .await
            .expect("ISV edit");
    }
    // Every last edit is reflected: status observed the last generation and the objects carry the last value.
    wait_for(
        "every instance reflects its customer's last edit",
        Duration::from_secs(120),
        || {
            let (api, client, cust) = (api.clone(), client.clone(), cust.to_string());
            async move {
                let list = api.list(&ListParams::default()).await.ok()?;
                let mut values = BTreeMap::new();
                for cm in Api::<ConfigMap>::namespaced(client.clone(), &cust)
                    .list(&ListParams::default())
                    .await
                    .ok()?
                    .items
                {
                    values.insert(
                        cm.name_any(),
                        cm.data
                            .and_then(|d| d.get("replicas").cloned())
                            .unwrap_or_default(),
                    );
                }
                list.items
                    .iter()
                    .all(|i| {
                        let s = i.status.as_ref();
                        let want = i.spec.parameters.get("replicas").map(|v| format!("n={v}"));
                        s.and_then(|s| s.observed_generation) == i.metadata.generation
                            && s.and_then(|s| s.phase) == Some(Phase::Deployed)
                            && values.get(&format!("{}-config", i.name_any())) == want.as_ref()
                    })
                    .then_some(())
            }
        },
    )
    .await;
    let errors = ctl
        .metric("computenest_reconcile_errors_total")
        .await
        .unwrap_or(f64::NAN);
    let reconciles = ctl
        .metric("computenest_reconciles_total")
        .await
        .unwrap_or(f64::NAN);
    eprintln!("soak: conflicts: {reconciles} reconciles, {errors} errors");
    assert!(
        errors <= reconciles * 0.1,
        "an error loop: {errors} errors in {reconciles} reconciles"
    );
    ctl.term();
    t.cleanup().await;
}

/// The upgrade round's Service: three ConfigMaps at 1.0.0; 2.0.0 changes
/// `b`, removes `c` and adds `e`.
fn upgrade_service(version: &str) -> Service {
    let cm = |name: &str, value: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": format!("$(instance.name)-{name}")}, "data": {"v": value}})
    };
    let objects = if version == "1.0.0" {
        vec![cm("a", "1"), cm("b", "1"), cm("c", "1")]
    } else {
        vec![cm("a", "1"), cm("b", "2"), cm("e", "1")]
    };
    serde_json::from_value(json!({
        "apiVersion": "computenest.dev/v1alpha1", "kind": "Service", "metadata": {"name": "upg"},
        "spec": {"type": "Private", "version": version, "template": {"objects": objects}}
    }))
    .expect("service")
}

/// SIGKILLs at random moments while every instance moves from 1.0.0 to
/// 2.0.0: each ends entirely on one version (its objects are exactly that
/// version's: never a mix), with a history that says which.
#[tokio::test]
async fn upgrades_are_all_or_nothing_under_repeated_sigkill() {
    let client = client().await;
    install_crds(&client).await;
    let t = TestNamespaces::new(&client, &["uisv", "ucust"]).await;
    let (isv, cust) = (t.ns(0), t.ns(1));
    let n: usize = std::env::var("SOAK_UPGRADES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    apply(&client, isv, &upgrade_service("1.0.0"))
        .await
        .expect("service");
    let mut ctl = Ctl::start(&[], "upgrade");
    let api = Api::<ServiceInstance>::namespaced(client.clone(), cust);
    for i in 0..n {
        let inst: ServiceInstance = serde_json::from_value(json!({
            "apiVersion": "computenest.dev/v1alpha1", "kind": "ServiceInstance", "metadata": {"name": format!("u{i}")},
            "spec": {"serviceRef": {"kind": "Service", "namespace": isv, "name": "upg"}, "version": "1.0.0"}
        }))
        .expect("instance");
        api.create(&PostParams::default(), &inst)
            .await
            .expect("create instance");
    }
    all_deployed(&client, cust, n, Duration::from_secs(300)).await;
    apply(&client, isv, &upgrade_service("2.0.0"))
        .await
        .expect("service 2.0.0");
    let versions = Api::<ServiceVersion>::namespaced(client.clone(), isv);
    wait_for("2.0.0 is published", Duration::from_secs(60), || {
        let versions = versions.clone();
        async move {
            let l = versions.list(&ListParams::default()).await.ok()?;
            l.items
                .iter()
                .any(|v| v.spec.version == "2.0.0")
                .then_some(())
        }
    })
    .await;
    let pinner = {
        let api = api.clone();
        tokio::spawn(async move {
            for i in 0..n {
                let patch = json!({"spec": {"version": "2.0.0"}});
                api.patch(
                    &format!("u{i}"),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .expect("pin 2.0.0");
            }
        })
    };
    let mut kills = 0;
    let mut rng_state = 0x2545f4914f6cdd1du64 ^ u64::from(std::process::id());
    let mut next = || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };
    while kills < 5 || !pinner.is_finished() {
        tokio::time::sleep(Duration::from_millis(200 + next() % 1500)).await;
        ctl.kill9();
        kills += 1;
        ctl = Ctl::start(&[], "upgrade");
    }
    pinner.await.expect("pinner");
    tokio::time::sleep(Duration::from_millis(next() % 1000)).await;
    ctl.kill9();
    kills += 1;
    let ctl = Ctl::start(&[], "upgrade");
    // Every instance ends at 2.0.0 (its pin), its move recorded as done.
    wait_for(
        &format!("{n} instances moved to 2.0.0"),
        Duration::from_secs(300),
        || {
            let api = api.clone();
            async move {
                let l = api.list(&ListParams::default()).await.ok()?;
                l.items
                    .iter()
                    .all(|i| {
                        let s = i.status.clone().unwrap_or_default();
                        s.version.as_deref() == Some("2.0.0")
                            && s.history.last().is_some_and(|h| {
                                h.to == "2.0.0" && h.result == VersionChangeResult::Succeeded
                            })
                    })
                    .then_some(())
            }
        },
    )
    .await;
    // Never a mix: each instance's ConfigMaps are exactly 2.0.0's.
    let cms = Api::<ConfigMap>::namespaced(client.clone(), cust)
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=computenest-controller"))
        .await
        .expect("config maps");
    let by_name: HashMap<String, String> = cms
        .items
        .iter()
        .map(|c| {
            (
                c.name_any(),
                c.data
                    .as_ref()
                    .and_then(|d| d.get("v").cloned())
                    .unwrap_or_default(),
            )
        })
        .collect();
    let mut mixed = Vec::new();
    for i in 0..n {
        let want = [
            ("a", Some("1")),
            ("b", Some("2")),
            ("c", None),
            ("e", Some("1")),
        ];
        for (suffix, value) in want {
            let got = by_name.get(&format!("u{i}-{suffix}")).map(String::as_str);
            if got != value {
                mixed.push(format!("u{i}-{suffix}: {got:?}, want {value:?}"));
            }
        }
    }
    assert!(
        mixed.is_empty(),
        "objects of a mix of versions: {:?}",
        &mixed[..mixed.len().min(10)]
    );
    let moves: usize = api
        .list(&ListParams::default())
        .await
        .expect("instances")
        .items
        .iter()
        .map(|i| i.status.clone().unwrap_or_default().history.len())
        .sum();
    eprintln!(
        "soak: {n} upgrades, {kills} SIGKILLs survived, every instance entirely on 2.0.0 ({moves} history entries)"
    );
    delete_all_and_check_empty(&client, cust).await;
    ctl.term();
    t.cleanup().await;
}

/// A priced Service resold in scenario 3: a subscription of one day (2 s
/// here) and pay-as-you-go rated every two days, no late window.
fn priced_service() -> Service {
    let mut s = service("metered").fully_managed().listed().automatic();
    s.spec.commerce = Some(
        serde_json::from_value(json!({
            "dimensions": [{"name": "VirtualCpu", "aggregation": "Sum"}],
            "lateWindowSeconds": 0
        }))
        .expect("commerce"),
    );
    for p in &mut s.spec.plans {
        p.pricing = Some(
            serde_json::from_value(json!({
                "subscription": {"price": "10", "period": "P1D"},
                "payAsYouGo": {"prices": [{"dimension": "VirtualCpu", "price": "0.5"}], "period": "P2D"}
            }))
            .expect("pricing"),
        );
    }
    s
}

fn record_of(
    name: &str,
    uid: &str,
    q: i64,
    start: jiff::Timestamp,
    end: jiff::Timestamp,
) -> UsageRecord {
    serde_json::from_value(json!({
        "apiVersion": "computenest.dev/v1alpha1", "kind": "UsageRecord", "metadata": {"name": name},
        "spec": {"instance": uid, "dimension": "VirtualCpu", "quantity": q,
                 "windowStart": start.to_string(), "windowEnd": end.to_string()}
    }))
    .expect("record")
}

/// Renewals and usage reports while the controller is SIGKILLed at random:
/// afterwards every record has a result, no window is counted twice, each
/// settled usage period has exactly one Order per tier whose quantity is the
/// sum of the records accepted into it, and each subscription has exactly
/// one Order per begun term per tier: none missing, none twice.
#[tokio::test]
async fn renewals_and_usage_settle_exactly_once_under_repeated_sigkill() {
    let client = client().await;
    install_crds(&client).await;
    let t = TestNamespaces::new(&client, &["cisv", "cdist", "ccust"]).await;
    let (isv, dist, cust) = (t.ns(0), t.ns(1), t.ns(2));
    let n: usize = std::env::var("SOAK_COMMERCE_INSTANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let day = ["--commerce-day-seconds", "2"];
    apply(&client, isv, &priced_service())
        .await
        .expect("service");
    let mut product = derived("shop", isv, "metered").fully_managed();
    product.spec.overrides.prices = vec![
        serde_json::from_value(json!({"plan": "basic", "subscription": "15",
            "payAsYouGo": [{"dimension": "VirtualCpu", "price": "0.75"}]}))
        .expect("prices"),
    ];
    apply(&client, dist, &product).await.expect("derived");
    let mut ctl = Ctl::start(&day, "commerce");
    let api = Api::<ServiceInstance>::namespaced(client.clone(), cust);
    for i in 0..n {
        let mode = if i % 2 == 0 {
            "PayAsYouGo"
        } else {
            "Subscription"
        };
        let mut inst = derived_instance(&format!("c{i}"), dist, "shop");
        inst.spec.billing = Some(
            serde_json::from_value(json!({"mode": mode, "autoRenew": true})).expect("billing"),
        );
        apply(&client, cust, &inst).await.expect("instance");
    }
    all_deployed(&client, cust, n, Duration::from_secs(180)).await;
    let instances: Vec<(String, String, jiff::Timestamp, String)> = api
        .list(&ListParams::default())
        .await
        .expect("instances")
        .items
        .iter()
        .map(|i| {
            let s = i.status.clone().unwrap_or_default();
            (
                i.name_any(),
                i.uid().unwrap_or_default(),
                i.creation_timestamp()
                    .and_then(|t| t.0.to_string().parse().ok())
                    .unwrap_or_default(),
                s.owner.map(|o| o.target_namespace).unwrap_or_default(),
            )
        })
        .collect();
    let metered: Vec<_> = instances
        .iter()
        .filter(|(name, ..)| name.trim_start_matches('c').parse::<usize>().unwrap_or(1) % 2 == 0)
        .cloned()
        .collect();
    // The reporter: a record per metered instance every 300 ms, each fifth
    // sent twice under another name (a retry of the software).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reporter = {
        let client = client.clone();
        let stop = stop.clone();
        let metered = metered.clone();
        tokio::spawn(async move {
            let mut sent = 0usize;
            let mut k = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let now = jiff::Timestamp::now();
                let (start, end) = (
                    now - jiff::SignedDuration::from_millis(280),
                    now - jiff::SignedDuration::from_millis(30),
                );
                for (name, uid, _, target) in &metered {
                    let records = Api::<UsageRecord>::namespaced(client.clone(), target);
                    let q = (k % 5 + 1) as i64;
                    let r = record_of(&format!("{name}-{k}"), uid, q, start, end);
                    if records.create(&PostParams::default(), &r).await.is_ok() {
                        sent += 1;
                    }
                    if k.is_multiple_of(5) {
                        let again = record_of(&format!("{name}-{k}-retry"), uid, q, start, end);
                        if records.create(&PostParams::default(), &again).await.is_ok() {
                            sent += 1;
                        }
                    }
                }
                k += 1;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            sent
        })
    };
    let mut kills = 0;
    let mut rng_state = 0x9e3779b97f4a7c15u64 ^ u64::from(std::process::id());
    let mut next = || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };
    let began = Instant::now();
    while kills < 6 || began.elapsed() < Duration::from_secs(25) {
        tokio::time::sleep(Duration::from_millis(500 + next() % 3000)).await;
        ctl.kill9();
        kills += 1;
        ctl = Ctl::start(&day, "commerce");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = reporter.await.expect("reporter");
    let last_report = jiff::Timestamp::now();
    // The subscriptions stop renewing, so that their terms come to an end
    // (Suspended) and the count of terms is final when checked.
    for (name, ..) in instances
        .iter()
        .filter(|i| !metered.iter().any(|m| m.0 == i.0))
    {
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"billing": {"autoRenew": false}}})),
        )
        .await
        .expect("stop renewing");
    }
    wait_for(
        "every subscription's last term ended",
        Duration::from_secs(60),
        || {
            let api = api.clone();
            let metered = metered.clone();
            async move {
                let l = api.list(&ListParams::default()).await.ok()?;
                l.items
                    .iter()
                    .filter(|i| !metered.iter().any(|m| m.0 == i.name_any()))
                    .all(|i| {
                        i.status
                            .as_ref()
                            .and_then(|s| s.commerce.as_ref())
                            .is_some_and(|c| c.biz_status == BizStatus::Suspended)
                    })
                    .then_some(())
            }
        },
    )
    .await;
    // Every record decided, and every period the reports fell in settled
    // (a period of 4 s closes 5 s after its end).
    let records_of = |ns: String| {
        let client = client.clone();
        async move {
            Api::<UsageRecord>::namespaced(client, &ns)
                .list(&ListParams::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default()
        }
    };
    wait_for(
        "every usage period with reports is settled",
        Duration::from_secs(120),
        || {
            let api = api.clone();
            let metered = metered.clone();
            async move {
                let l = api.list(&ListParams::default()).await.ok()?;
                let settled_past = |i: &ServiceInstance| {
                    let c = i.status.as_ref()?.commerce.clone()?;
                    let created = metered.iter().find(|m| m.0 == i.name_any())?.2;
                    let last = computenest::domain::commerce::usage_period_of(
                        created,
                        2,
                        computenest::domain::commerce::Clock {
                            day: Duration::from_secs(2),
                        },
                        last_report,
                    );
                    (c.ledger.usage_periods_settled >= last).then_some(())
                };
                l.items
                    .iter()
                    .filter(|i| metered.iter().any(|m| m.0 == i.name_any()))
                    .all(|i| settled_past(i).is_some())
                    .then_some(())
            }
        },
    )
    .await;
    let orders_in = |ns: &str| {
        let client = client.clone();
        let ns = ns.to_string();
        async move {
            Api::<Order>::namespaced(client, &ns)
                .list(&ListParams::default())
                .await
                .expect("orders")
                .items
        }
    };
    let (sale_orders, resale_orders) = (orders_in(dist).await, orders_in(isv).await);
    let mut problems = Vec::new();
    let mut accepted_total = 0usize;
    let mut decided_total = 0usize;
    for (name, uid, _, target) in &metered {
        let records: Vec<UsageRecord> = records_of(target.clone())
            .await
            .into_iter()
            .filter(|r| r.spec.instance == *uid)
            .collect();
        let mut windows = std::collections::BTreeSet::new();
        let mut per_period: BTreeMap<u32, i64> = BTreeMap::new();
        for r in &records {
            let Some(s) = r
                .status
                .as_ref()
                .and_then(|s| s.result.map(|x| (x, s.period)))
            else {
                problems.push(format!("{name}: record {} has no result", r.name_any()));
                continue;
            };
            decided_total += 1;
            if s.0 == UsageResult::Accepted {
                accepted_total += 1;
                if !windows.insert((r.spec.window_start.clone(), r.spec.window_end.clone())) {
                    problems.push(format!(
                        "{name}: window {} accepted twice",
                        r.spec.window_start
                    ));
                }
                *per_period.entry(s.1.unwrap_or(0)).or_default() += r.spec.quantity;
            }
        }
        for (tier, orders) in [("sale", &sale_orders), ("resale", &resale_orders)] {
            let mine: Vec<&Order> = orders
                .iter()
                .filter(|o| o.spec.instance.uid == *uid && o.spec.kind == OrderKind::Usage)
                .collect();
            let mut seen = BTreeMap::new();
            for o in &mine {
                let p = o
                    .spec
                    .period
                    .clone()
                    .unwrap_or_else(|| panic!("usage Order without period"));
                if seen.insert(p.index, p.clone()).is_some() {
                    problems.push(format!(
                        "{name}: two {tier} Orders for usage period {}",
                        p.index
                    ));
                }
                let rated: i64 = p.usage.iter().map(|u| u.quantity).sum();
                let accepted = per_period.get(&p.index).copied().unwrap_or(0);
                if rated != accepted {
                    problems.push(format!("{name}: {tier} Order of period {} rates {rated}, records accepted {accepted}", p.index));
                }
            }
            for (period, q) in &per_period {
                if *q > 0 && !seen.contains_key(period) {
                    problems.push(format!(
                        "{name}: no {tier} Order for usage period {period} ({q} accepted)"
                    ));
                }
            }
        }
    }
    let subs = api
        .list(&ListParams::default())
        .await
        .expect("instances")
        .items;
    let mut terms_total = 0u32;
    for i in subs
        .iter()
        .filter(|i| !metered.iter().any(|m| m.0 == i.name_any()))
    {
        let uid = i.uid().unwrap_or_default();
        let settled = i
            .status
            .as_ref()
            .and_then(|s| s.commerce.as_ref())
            .map(|c| c.ledger.terms_settled)
            .unwrap_or(0);
        for (tier, orders, price) in [
            ("sale", &sale_orders, "15"),
            ("resale", &resale_orders, "10"),
        ] {
            let mut indexes: Vec<u32> = orders
                .iter()
                .filter(|o| o.spec.instance.uid == uid && o.spec.kind == OrderKind::Term)
                .filter_map(|o| o.spec.period.as_ref())
                .inspect(|p| {
                    if p.amount != price {
                        problems.push(format!(
                            "{}: {tier} term {} at {}",
                            i.name_any(),
                            p.index,
                            p.amount
                        ));
                    }
                })
                .map(|p| p.index)
                .collect();
            indexes.sort_unstable();
            let expected: Vec<u32> = (1..=settled).collect();
            if indexes != expected {
                let st = i.status.clone().unwrap_or_default();
                problems.push(format!(
                    "{}: {tier} term Orders {indexes:?}, ledger says {settled}; phase {:?}, conditions {:?}",
                    i.name_any(),
                    st.phase,
                    st.conditions
                        .iter()
                        .map(|c| format!("{}={} {}: {}", c.type_, c.status, c.reason, c.message))
                        .collect::<Vec<_>>()
                ));
            }
        }
        terms_total += settled;
    }
    assert!(
        problems.is_empty(),
        "{} problems: {:?}",
        problems.len(),
        &problems[..problems.len().min(10)]
    );
    assert!(
        accepted_total > 0 && terms_total > n as u32 / 2,
        "the round did something: {accepted_total} accepted, {terms_total} terms"
    );
    eprintln!(
        "soak: {n} instances, {sent} records sent ({decided_total} decided, {accepted_total} accepted), {terms_total} terms, {kills} SIGKILLs; every period settled once at both tiers"
    );
    delete_all_and_check_empty(&client, cust).await;
    ctl.term();
    t.cleanup().await;
}
