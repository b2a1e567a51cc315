//! The `computenest-controller` binary: `run` the controllers, or print the `crd`s.

use clap::{Parser, Subcommand, ValueEnum};
use computenest::api;
use computenest::controller::{self, Readiness, Settings};
use computenest::render::{AllowedKind, default_allowed_kinds};
use computenest::runtime::health::{self, HealthState};
use computenest::runtime::leader;
use computenest::runtime::metrics::Metrics;
use kube::runtime::events::Reporter;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Software distribution on Kubernetes: ISVs publish Services, distributors
/// resell them as DerivedServices, customers buy ServiceInstances; this
/// controller enforces who may sell what, where resources live, who owns and
/// pays for them, and which Orders are written.
#[derive(Parser, Debug)]
#[command(name = "computenest-controller", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controllers (uses KUBECONFIG, or the in-cluster ServiceAccount).
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions as YAML (the source of crds/).
    Crd,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Namespaces whose objects are reconciled, comma-separated; empty means all.
    /// The controller still watches cluster-wide (its RBAC must allow that).
    #[arg(
        long,
        env = "COMPUTENEST_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    namespaces: Vec<String>,
    /// Reconciles running at once, per kind.
    #[arg(long, env = "COMPUTENEST_CONCURRENCY", default_value_t = 16)]
    concurrency: u16,
    /// Address of the /healthz, /readyz and /metrics server.
    #[arg(long, env = "COMPUTENEST_HEALTH_ADDR", default_value = "0.0.0.0:8080")]
    health_addr: SocketAddr,
    /// Log format.
    #[arg(long, env = "COMPUTENEST_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log filter, in tracing's EnvFilter syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info,kube=warn")]
    log_filter: String,
    /// Elect a leader through a Lease so that only one replica writes.
    #[arg(long, env = "COMPUTENEST_LEADER_ELECTION", default_value_t = false, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Name of the leader Lease.
    #[arg(
        long,
        env = "COMPUTENEST_LEASE_NAME",
        default_value = "computenest-controller"
    )]
    lease_name: String,
    /// Namespace of the leader Lease (default: the pod's namespace, else `default`).
    #[arg(long, env = "COMPUTENEST_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Seconds a leader holds the lease without renewing it.
    #[arg(long, env = "COMPUTENEST_LEASE_DURATION", default_value_t = 15)]
    lease_duration: u64,
    /// Identity in the Lease and in Events (default: the pod name or the host name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Kinds templates may create, as group/version/Kind/plural (core group: v1/Kind/plural),
    /// comma-separated. Default: ConfigMap, Secret, Service, ServiceAccount,
    /// PersistentVolumeClaim, Deployment, StatefulSet, Job, CronJob, Ingress,
    /// NetworkPolicy, PodDisruptionBudget.
    #[arg(long, env = "COMPUTENEST_ALLOWED_KINDS", value_delimiter = ',')]
    allowed_kinds: Vec<String>,
    /// Seconds between sweeps for orphans: managed namespaces whose instance
    /// is gone (for example after its finalizer was removed by hand), and
    /// access grants (Roles and RoleBindings) whose AccessRequest is gone.
    /// The sweeps also run at start; the access sweep at once after a burst
    /// of deletions.
    #[arg(long, env = "COMPUTENEST_SWEEP_INTERVAL", default_value_t = 300)]
    sweep_interval: u64,
    /// Seconds in a commercial day: trials, terms, retention, expiry
    /// notices and usage periods are counted in these days (a late window's
    /// seconds scale with them). 86400 in production; tests and the demo
    /// shorten it so that a trial runs in seconds.
    #[arg(
        long,
        env = "COMPUTENEST_COMMERCE_DAY_SECONDS",
        default_value_t = 86_400.0
    )]
    commerce_day_seconds: f64,
    /// What AccessRequests may ever be granted: a JSON or YAML list of RBAC
    /// rules (apiGroups, resources, verbs; every permission named, no `*`).
    /// The controller's own RBAC must hold exactly these (the chart binds
    /// access.grantableRules to it); requests outside them are narrowed with
    /// a condition instead of failing at the API server. Default: the
    /// built-in safe set (reading the usual namespaced objects except
    /// Secrets, pod logs, deleting pods, scaling).
    #[arg(long, env = "COMPUTENEST_GRANTABLE_RULES")]
    grantable_rules: Option<String>,
    /// The platform's tenancy policy, as JSON (chart values `tenancy`):
    /// Pod Security levels and ceiling, quota defaults and ceilings,
    /// LimitRange, default NetworkPolicy, the operator ClusterRole, managed
    /// namespaces per customer, render size caps. Unknown fields are refused.
    /// Default: the built-in policy (docs/api.md, "Tenancy").
    #[arg(long, env = "COMPUTENEST_TENANCY_POLICY")]
    tenancy_policy: Option<String>,
    /// Exit when the process with this PID ends (used by the test harness so
    /// that no controller outlives its test run).
    #[arg(long, hide = true)]
    exit_with_parent: Option<u32>,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum LogFormat {
    Text,
    Json,
}

// The controller runs on jemalloc rather than glibc's malloc: its caches are
// many small objects decoded by one runtime worker and freed by another, a
// pattern on which glibc's per-thread arenas fragment the heap and hold the
// peak (BENCHMARKS.md, "Drift, health and versions": peak RSS at 3000
// instances). Only this binary: the plugin and the tests keep the system's.
#[cfg(all(target_os = "linux", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read by jemalloc when it starts (its `malloc_conf`,
/// named `_rjem_malloc_conf` in the crate's prefixed build): one arena, freed
/// pages returned to the kernel at once, by a background thread so that no
/// request waits for the purge. Measured at 3000 instances (BENCHMARKS.md):
/// the restart's peak fell from 105 to 100 MiB; turning the thread caches
/// off too saved 4 MiB more at 60% more CPU, so they stay on.
#[cfg(all(target_os = "linux", not(target_env = "msvc")))]
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: MallocConf =
    MallocConf(c"narenas:1,background_thread:true,dirty_decay_ms:0,muzzy_decay_ms:0".as_ptr());

/// A C string pointer jemalloc reads once; it is never written.
#[repr(transparent)]
struct MallocConf(*const std::ffi::c_char);
// SAFETY: the pointer is to a static, immutable C string.
unsafe impl Sync for MallocConf {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => match print_crds() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("computenest-controller crd: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("computenest-controller: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(*args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("computenest-controller: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn print_crds() -> Result<(), serde_yaml::Error> {
    for crd in api::all_crds() {
        print!("{}", api::crd_yaml(&crd)?);
    }
    Ok(())
}

fn init_logging(args: &RunArgs) {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log file or a collector gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    match args.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested");
}

/// Resolves when process `pid` is gone.
async fn parent_gone(pid: Option<u32>) {
    let Some(pid) = pid else {
        return std::future::pending().await;
    };
    let path = format!("/proc/{pid}");
    while std::path::Path::new(&path).exists() {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    tracing::info!(pid, "parent process ended");
}

async fn shutdown_or_parent(pid: Option<u32>) {
    tokio::select! {
        _ = shutdown_signal() => {},
        _ = parent_gone(pid) => {},
    }
}

/// Pure: the controllers' settings from the arguments; an argument that
/// does not parse is named in the error.
fn settings(args: &RunArgs) -> Result<Settings, String> {
    let allowed_kinds = if args.allowed_kinds.iter().all(|s| s.trim().is_empty()) {
        default_allowed_kinds()
    } else {
        args.allowed_kinds
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| AllowedKind::parse(s.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("--allowed-kinds: {e}"))?
    };
    let grantable_rules = match args.grantable_rules.as_deref() {
        Some(text) if !text.trim().is_empty() => computenest::access::parse_grantable_rules(text)
            .map_err(|e| format!("--grantable-rules: {e}"))?,
        _ => computenest::access::default_grantable_rules(),
    };
    Ok(Settings {
        allowed_kinds,
        namespaces: args
            .namespaces
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect(),
        concurrency: args.concurrency.max(1),
        sweep_interval: std::time::Duration::from_secs(args.sweep_interval.max(1)),
        grantable: computenest::access::Permissions::of_rules(&grantable_rules),
        tenancy: match args.tenancy_policy.as_deref() {
            Some(text) if !text.trim().is_empty() => {
                computenest::tenancy::TenancyPolicy::parse(text)
                    .map_err(|e| format!("--tenancy-policy: {e}"))?
            }
            _ => computenest::tenancy::TenancyPolicy::default(),
        },
        commerce_clock: computenest::domain::commerce::Clock {
            day: std::time::Duration::try_from_secs_f64(args.commerce_day_seconds)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    format!(
                        "--commerce-day-seconds: {} is not a positive number of seconds",
                        args.commerce_day_seconds
                    )
                })?,
        },
        license_namespace: lease_namespace(args.lease_namespace.as_deref(), pod_namespace),
    })
}

/// The namespace of the leader Lease: the argument, else the pod's
/// namespace (`in_pod`, asked only when there is no argument), else `default`.
fn lease_namespace(arg: Option<&str>, in_pod: impl FnOnce() -> Option<String>) -> String {
    arg.map(str::to_string)
        .or_else(in_pod)
        .unwrap_or_else(|| "default".into())
        .trim()
        .to_string()
}

/// The namespace of this pod, from its ServiceAccount (none outside a cluster).
fn pod_namespace() -> Option<String> {
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace").ok()
}

async fn run(args: RunArgs) -> Result<(), String> {
    init_logging(&args);
    let settings = settings(&args)?;
    tracing::info!(
        permissions = settings.grantable.len(),
        sweep_interval_s = settings.sweep_interval.as_secs(),
        "access: grantable set and sweep interval"
    );
    let client = kube::Client::try_default().await.map_err(|e| {
        format!("cannot reach Kubernetes (set KUBECONFIG or run in a cluster): {e}")
    })?;
    let identity = args
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("computenest-{}", std::process::id()));
    let metrics = Arc::new(Metrics::default());
    let readiness = Readiness::default();
    let standby = Arc::new(AtomicBool::new(args.leader_election));
    let health_state = HealthState {
        metrics: metrics.clone(),
        readiness: readiness.clone(),
        standby: standby.clone(),
    };
    let addr = args.health_addr;
    let server = tokio::spawn(async move { health::serve(addr, health_state).await });
    let reporter = Reporter {
        controller: "computenest-controller".into(),
        instance: Some(identity.clone()),
    };
    tracing::info!(%identity, leader_election = args.leader_election, "starting");

    if !args.leader_election {
        metrics.leader.set(1);
        tokio::select! {
            _ = controller::run(client, settings, metrics, readiness, reporter, shutdown_or_parent(args.exit_with_parent)) => {},
            r = server => return Err(format!("health server stopped: {r:?}")),
        }
        return Ok(());
    }

    let lease = leader::Lease {
        name: args.lease_name.clone(),
        namespace: lease_namespace(args.lease_namespace.as_deref(), pod_namespace),
        identity,
        duration_seconds: args.lease_duration,
    };
    leader::run_while_leader(
        client.clone(),
        lease,
        metrics.clone(),
        standby,
        shutdown_or_parent(args.exit_with_parent),
        move |stop| controller::run(client, settings, metrics, readiness, reporter, stop),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(flags: &[&str]) -> RunArgs {
        let argv = ["computenest-controller", "run"].iter().chain(flags);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Run(args) => *args,
            Command::Crd => unreachable!(),
        }
    }

    #[test]
    fn settings_come_from_the_arguments_with_safe_floors() {
        let s = settings(&run_args(&[
            "--namespaces=a,,b",
            "--concurrency=0",
            "--sweep-interval=0",
            "--allowed-kinds=v1/ConfigMap/configmaps, ",
        ]))
        .unwrap();
        assert_eq!(s.namespaces, ["a", "b"]);
        assert_eq!((s.concurrency, s.sweep_interval.as_secs()), (1, 1));
        assert_eq!(s.allowed_kinds.len(), 1);
        assert_eq!(s.allowed_kinds[0].kind, "ConfigMap");
        let blank = settings(&run_args(&["--allowed-kinds= ", "--grantable-rules= "])).unwrap();
        assert_eq!(blank.allowed_kinds, default_allowed_kinds());
        assert_eq!(
            blank.grantable.len(),
            computenest::access::Permissions::of_rules(
                &computenest::access::default_grantable_rules()
            )
            .len()
        );
    }

    #[test]
    fn an_argument_that_does_not_parse_is_named() {
        let err = settings(&run_args(&["--allowed-kinds=nonsense"])).err();
        assert!(err.is_some_and(|e| e.starts_with("--allowed-kinds: ")));
        let err = settings(&run_args(&["--grantable-rules=[{"])).err();
        assert!(err.is_some_and(|e| e.starts_with("--grantable-rules: ")));
    }

    #[test]
    fn the_lease_namespace_is_the_argument_else_the_pods_else_default() {
        let asked = std::cell::Cell::new(false);
        let pod = || {
            asked.set(true);
            Some("pods\n".to_string())
        };
        assert_eq!(lease_namespace(Some("ops"), pod), "ops");
        assert!(!asked.get(), "the pod's namespace is read only when needed");
        assert_eq!(lease_namespace(None, pod), "pods");
        assert_eq!(lease_namespace(None, || None), "default");
    }
}
