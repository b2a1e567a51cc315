//! `kubectl computenest`: trace the distribution chain, preview a purchase,
//! decide grants and access requests, with the caller's own kubeconfig and
//! rights. Install with `cargo install --path . --bin kubectl-computenest`
//! (kubectl finds `kubectl-*` binaries on the PATH).

use clap::{Parser, Subcommand, ValueEnum};
use computenest::api::ProductKind;
use computenest::cli::{trace, tree, verbs};
use computenest::render::default_allowed_kinds;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use std::process::ExitCode;
use std::time::Duration;

/// Trace and operate software distribution (computenest.dev) from kubectl.
#[derive(Parser, Debug)]
#[command(name = "kubectl-computenest", version, about)]
struct Cli {
    /// Path of the kubeconfig (default: KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true)]
    kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    context: Option<String>,
    /// Namespace (default: the context's).
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    /// Act as this user (impersonation, as kubectl --as).
    #[arg(long = "as", global = true)]
    as_user: Option<String>,
    /// Act as this group too (as kubectl --as-group; repeatable).
    #[arg(long = "as-group", global = true)]
    as_group: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show the chain of an object, up to the ISV's Service and down to what it
    /// leads to: KIND/NAME, for example serviceinstance/shop, cnds/db-plus.
    Trace {
        /// KIND/NAME.
        target: String,
        /// Output: text, wide, json, yaml or dot (Graphviz).
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Watch: print the chain again whenever it changes.
        #[arg(short, long)]
        watch: bool,
    },
    /// What a purchase would create, rendered with the controller's code and
    /// dry-run by the API server in the buyer's namespace (-n).
    Preview {
        /// The product: service/NAME or derivedservice/NAME.
        product: String,
        /// The seller's namespace.
        #[arg(long)]
        seller: String,
        /// The plan.
        #[arg(long)]
        plan: Option<String>,
        /// A parameter, NAME=VALUE (a JSON value, else a string); repeatable.
        #[arg(long = "param")]
        params: Vec<String>,
    },
    /// Decide a distributor's grant (in the ISV's namespace, -n).
    Grant {
        /// approve, reject or revoke.
        #[arg(value_enum)]
        decision: GrantDecision,
        /// The grant's name.
        name: String,
        /// Why (shown to the distributor).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Move an instance to another version (pins spec.version; the
    /// controller checks the move, shows a blocked one in status, and records
    /// it in status.history).
    Upgrade {
        /// The instance (in -n).
        instance: String,
        /// The version: exact, or a semver range (^1.4).
        #[arg(long)]
        to: String,
    },
    /// Move an instance back to the version its last successful upgrade
    /// came from, or to --to.
    Rollback {
        /// The instance (in -n).
        instance: String,
        /// The version to return to.
        #[arg(long)]
        to: Option<String>,
    },
    /// Ask for, approve or reject access to a fully managed instance.
    Access {
        #[command(subcommand)]
        action: AccessAction,
    },
}

#[derive(Subcommand, Debug)]
enum AccessAction {
    /// Ask for access (the customer, in its namespace -n).
    Request {
        /// Name of the AccessRequest.
        name: String,
        /// The instance.
        #[arg(long)]
        instance: String,
        /// A user to grant it to.
        #[arg(long, conflicts_with = "service_account")]
        user: Option<String>,
        /// A ServiceAccount of the customer's namespace to grant it to.
        #[arg(long)]
        service_account: Option<String>,
        /// A rule, [group/]resources:verbs (pods:get,list); repeatable.
        #[arg(long = "rule", required = true)]
        rules: Vec<String>,
        /// How long, in seconds.
        #[arg(long, default_value_t = 3600)]
        duration: i64,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Approve a request (the owner, in its namespace -n).
    Approve {
        /// The request's name.
        request: String,
        /// The customer's namespace the request lives in.
        #[arg(long)]
        request_namespace: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Reject a request (the owner, in its namespace -n).
    Reject {
        /// The request's name.
        request: String,
        /// The customer's namespace the request lives in.
        #[arg(long)]
        request_namespace: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum GrantDecision {
    Approve,
    Reject,
    Revoke,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Wide,
    Json,
    Yaml,
    Dot,
}

async fn client(cli: &Cli) -> Result<(Client, String), String> {
    let options = KubeConfigOptions {
        context: cli.context.clone(),
        ..Default::default()
    };
    let mut config = match &cli.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &options).await
        }
        None => Config::from_kubeconfig(&options).await,
    }
    .map_err(|e| format!("kubeconfig: {e}"))?;
    if let Some(user) = &cli.as_user {
        config.auth_info.impersonate = Some(user.clone());
        if !cli.as_group.is_empty() {
            config.auth_info.impersonate_groups = Some(cli.as_group.clone());
        }
    }
    let ns = cli
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(|e| format!("client: {e}"))?;
    Ok((client, ns))
}

fn render(root: &tree::Node, output: Output) -> Result<String, String> {
    Ok(match output {
        Output::Text => tree::text(root, false),
        Output::Wide => tree::text(root, true),
        Output::Json => serde_json::to_string_pretty(root).map_err(|e| e.to_string())? + "\n",
        Output::Yaml => serde_yaml::to_string(root).map_err(|e| e.to_string())?,
        Output::Dot => tree::dot(root),
    })
}

fn parse_params(params: &[String]) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let mut out = serde_json::Map::new();
    for p in params {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| format!("--param {p:?}: expected NAME=VALUE"))?;
        let value = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.into()));
        out.insert(k.to_string(), value);
    }
    Ok(out)
}

async fn run(cli: Cli) -> Result<(), String> {
    let (client, ns) = client(&cli).await?;
    match &cli.command {
        Command::Trace {
            target,
            output,
            watch,
        } => {
            let (kind, name) = trace::parse_target(target).ok_or_else(|| {
                format!("{target:?}: expected KIND/NAME with KIND one of service, distributiongrant, derivedservice, serviceinstance, order, accessrequest")
            })?;
            let mut last = String::new();
            loop {
                let root = trace::trace(&client, kind, &ns, &name)
                    .await
                    .map_err(|e| e.to_string())?;
                let text = render(&root, *output)?;
                if text != last {
                    if *watch && !last.is_empty() {
                        println!();
                    }
                    print!("{text}");
                    last = text;
                }
                if !*watch {
                    return Ok(());
                }
                // The chain spans kinds and namespaces the caller may not
                // watch; reading it again every 2 s is what its rights allow.
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
        Command::Preview {
            product,
            seller,
            plan,
            params,
        } => {
            let (k, name) = product.split_once('/').ok_or_else(|| {
                format!("{product:?}: expected service/NAME or derivedservice/NAME")
            })?;
            let kind = match trace::Kind::parse(k) {
                Some(trace::Kind::Service) => ProductKind::Service,
                Some(trace::Kind::DerivedService) => ProductKind::DerivedService,
                _ => {
                    return Err(format!(
                        "{product:?}: a product is a service or a derivedservice"
                    ));
                }
            };
            let params = parse_params(params)?;
            let preview = verbs::preview(
                &client,
                (kind, seller, name),
                &ns,
                plan.as_deref(),
                &params,
                &default_allowed_kinds(),
            )
            .await
            .map_err(|e| e.to_string())??;
            println!(
                "scenario {}; objects go to {}",
                preview.scenario.as_str(),
                preview.target
            );
            let mut refused = 0;
            for (obj, verdict) in &preview.objects {
                let what = format!(
                    "{} {}",
                    obj["kind"].as_str().unwrap_or_default(),
                    obj["metadata"]["name"].as_str().unwrap_or_default()
                );
                match verdict {
                    None => println!("---\n# {what}: accepted by a server-side dry run"),
                    Some(why) => {
                        if !why.starts_with("not dry-run") {
                            refused += 1;
                        }
                        println!("---\n# {what}: {why}")
                    }
                }
                print!("{}", serde_yaml::to_string(obj).map_err(|e| e.to_string())?);
            }
            if refused > 0 {
                return Err(format!("{refused} object(s) would be refused"));
            }
            Ok(())
        }
        Command::Grant {
            decision,
            name,
            reason,
        } => {
            let d = match decision {
                GrantDecision::Approve => "Approved",
                GrantDecision::Reject => "Rejected",
                GrantDecision::Revoke => "Revoked",
            };
            verbs::decide_grant(&client, &ns, name, d, reason.as_deref())
                .await
                .map_err(|e| e.to_string())?;
            println!("distributiongrant/{name} {d}");
            Ok(())
        }
        Command::Upgrade { instance, to } => {
            verbs::pin_version(&client, &ns, instance, to)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "serviceinstance/{instance} pinned to {to}; follow it with: kubectl computenest trace serviceinstance/{instance} -n {ns} -w"
            );
            Ok(())
        }
        Command::Rollback { instance, to } => {
            let version = match to {
                Some(v) => v.clone(),
                None => {
                    let inst = kube::Api::<computenest::api::ServiceInstance>::namespaced(
                        client.clone(),
                        &ns,
                    )
                    .get(instance)
                    .await
                    .map_err(|e| e.to_string())?;
                    verbs::rollback_target(&inst)?
                }
            };
            verbs::pin_version(&client, &ns, instance, &version)
                .await
                .map_err(|e| e.to_string())?;
            println!("serviceinstance/{instance} pinned back to {version}");
            Ok(())
        }
        Command::Access { action } => match action {
            AccessAction::Request {
                name,
                instance,
                user,
                service_account,
                rules,
                duration,
                reason,
            } => {
                let subject = match (user, service_account) {
                    (Some(u), None) => ("User", u.as_str()),
                    (None, Some(sa)) => ("ServiceAccount", sa.as_str()),
                    _ => return Err("name the subject: --user or --service-account".into()),
                };
                let rules = rules
                    .iter()
                    .map(|r| verbs::parse_rule(r))
                    .collect::<Result<Vec<_>, _>>()?;
                verbs::request_access(
                    &client,
                    &ns,
                    &verbs::Request {
                        name,
                        instance,
                        subject,
                        rules,
                        duration_seconds: *duration,
                        reason,
                    },
                )
                .await
                .map_err(|e| e.to_string())?;
                println!("accessrequest/{name} written");
                Ok(())
            }
            AccessAction::Approve {
                request,
                request_namespace,
                reason,
            }
            | AccessAction::Reject {
                request,
                request_namespace,
                reason,
            } => {
                let decision = if matches!(action, AccessAction::Approve { .. }) {
                    "Approved"
                } else {
                    "Rejected"
                };
                let name = verbs::decide_access(
                    &client,
                    &ns,
                    request_namespace,
                    request,
                    decision,
                    reason.as_deref(),
                )
                .await
                .map_err(|e| e.to_string())??;
                println!("accessapproval/{name} {decision}");
                Ok(())
            }
        },
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
