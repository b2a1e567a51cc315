//! `kubectl computenest` (issue 18) against the real control plane, run as
//! the binary a person runs, as each party through impersonation (`--as`):
//! the chain as the customer sees it with its own rights, the whole chain
//! for the platform, grant and access decisions as plain writes, and a
//! purchase previewed and dry-run before buying.

use crate::fixtures::*;
use crate::harness::*;
use computenest::api::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::json;
use std::process::Command;

/// Runs the plugin with the tests' kubeconfig; returns (success, stdout, stderr).
pub(crate) fn plugin(args: &[&str]) -> (bool, String, String) {
    let kubeconfig = std::env::var("KUBECONFIG").expect("KUBECONFIG names the test control plane");
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-computenest"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("the plugin runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The line of the table that names `what` (`Kind/name`).
fn line<'a>(out: &'a str, what: &str) -> &'a str {
    out.lines()
        .find(|l| l.contains(what))
        .unwrap_or_else(|| panic!("no line for {what} in:\n{out}"))
}

/// A distributor resells an ISV's private product; a customer buys it. The
/// customer, who may read only its own namespace, traces its instance: it
/// sees its instance and the objects it runs, and the distributor's product
/// as an object it may not read, nothing of the ISV. The platform (admin)
/// traces the ISV's Service and sees the whole chain down to the Deployment.
#[tokio::test]
async fn each_party_traces_the_chain_with_its_own_rights() {
    let (client, t) = controller_and_namespaces(&["tr-isv", "tr-dist", "tr-cust"]).await;
    let (isv, dist, cust) = (t.ns(0), t.ns(1), t.ns(2));
    put(&client, isv, &service("db")).await;
    put(&client, isv, &approved_grant("g", "db", dist)).await;
    resell(&client, dist, &derived("db-plus", isv, "db")).await;
    buy(&client, cust, &derived_instance("shop", dist, "db-plus")).await;

    let carol = format!("carol-{cust}");
    allow(
        &client,
        cust,
        &carol,
        json!([{"apiGroups": ["computenest.dev"], "resources": ["serviceinstances", "accessrequests"], "verbs": ["get", "list"]}]),
    )
    .await;
    let (ok, out, err) = plugin(&["trace", "cnsi/shop", "-n", cust, "--as", &carol]);
    assert!(ok, "{err}");
    assert!(
        line(&out, "ServiceInstance/shop *").contains("True"),
        "{out}"
    );
    assert!(line(&out, "Deployment/shop").contains("Healthy"), "{out}");
    assert!(
        line(&out, "DerivedService/db-plus").contains("not allowed to read it with your rights"),
        "{out}"
    );
    assert!(
        !out.contains(isv),
        "nothing of the ISV is shown to the customer:\n{out}"
    );

    let (ok, out, err) = plugin(&["trace", "service/db", "-n", isv]);
    assert!(ok, "{err}");
    for what in [
        "Service/db *",
        "DistributionGrant/g",
        "DerivedService/db-plus",
        "ServiceInstance/shop",
        "Deployment/shop",
    ] {
        line(&out, what);
    }
    // Every other output names the same chain.
    let (ok, json_out, err) = plugin(&["trace", "service/db", "-n", isv, "-o", "json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json_out).expect("json");
    assert_eq!(
        v["children"][0]["children"][0]["children"][0]["name"],
        "shop"
    );
    let (ok, dot, _) = plugin(&["trace", "service/db", "-n", isv, "-o", "dot"]);
    assert!(ok && dot.contains("-> \"ServiceInstance/"), "{dot}");
    // A name that does not exist is an error that says so.
    let (ok, _, err) = plugin(&["trace", "cnsi/nothing", "-n", cust]);
    assert!(!ok && err.contains("not found"), "{err}");
    t.cleanup().await;
}

/// The ISV decides a distributor's application with `grant approve`: a
/// plain write of the grant's decision with the ISV's own rights, after
/// which the distributor's product sells.
#[tokio::test]
async fn the_isv_approves_an_application_with_the_plugin() {
    let (client, t) = controller_and_namespaces(&["pg-isv", "pg-dist"]).await;
    let (isv, dist) = (t.ns(0), t.ns(1));
    put(&client, isv, &service("db")).await;
    put(&client, dist, &derived("db-plus", isv, "db")).await;
    let _: DerivedService = wait_ready(&client, dist, "db-plus", "False", "GrantPending").await;
    let ivan = format!("ivan-{isv}");
    allow(
        &client,
        isv,
        &ivan,
        json!([{"apiGroups": ["computenest.dev"], "resources": ["distributiongrants"], "verbs": ["get", "patch"]}]),
    )
    .await;
    let grant = computenest::distribution::application_grant_name("db", dist);
    let (ok, out, err) = plugin(&["grant", "approve", &grant, "-n", isv, "--as", &ivan]);
    assert!(ok, "{err}");
    assert!(out.contains("Approved"), "{out}");
    let _: DerivedService = wait_ready(&client, dist, "db-plus", "True", "Sellable").await;
    // The distributor cannot decide its own application.
    let dora = format!("dora-{dist}");
    allow(
        &client,
        dist,
        &dora,
        json!([{"apiGroups": ["computenest.dev"], "resources": ["derivedservices"], "verbs": ["get"]}]),
    )
    .await;
    let (ok, _, err) = plugin(&["grant", "revoke", &grant, "-n", isv, "--as", &dora]);
    assert!(!ok && err.contains("forbidden"), "{err}");
    let g: DistributionGrant = Api::<DistributionGrant>::namespaced(client.clone(), isv)
        .get(&grant)
        .await
        .expect("grant");
    assert_eq!(g.spec.decision, Decision::Approved);
    t.cleanup().await;
}

/// A customer asks for access with `access request`; the owner approves
/// with `access approve`, which names the request's UID and digest as the
/// owner read them: the request becomes Active.
#[tokio::test]
async fn a_request_and_its_approval_through_the_plugin() {
    let (client, t) = controller_and_namespaces(&["pa-isv", "pa-cust"]).await;
    let (isv, cust) = (t.ns(0), t.ns(1));
    let app = service("app")
        .fully_managed()
        .not_distributed()
        .access(json!({"approval": "Manual"}));
    put(&client, isv, &app).await;
    buy(&client, cust, &service_instance("direct", isv, "app")).await;
    let (ok, _, err) = plugin(&[
        "access",
        "request",
        "look",
        "-n",
        cust,
        "--instance",
        "direct",
        "--user",
        "bob",
        "--rule",
        "pods:get,list",
        "--duration",
        "600",
        "--reason",
        "slow pages",
    ]);
    assert!(ok, "{err}");
    let _: AccessRequest = wait_ready(&client, cust, "look", "False", "AwaitingApproval").await;
    let (ok, out, err) = plugin(&[
        "access",
        "approve",
        "look",
        "--request-namespace",
        cust,
        "-n",
        isv,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("Approved"), "{out}");
    let req: AccessRequest = wait_ready(&client, cust, "look", "True", "Active").await;
    assert_eq!(
        req.status
            .and_then(|s| s.granted_rules.first().map(|r| r.resources.clone())),
        Some(vec!["pods".to_string()])
    );
    t.cleanup().await;
}

/// A customer reads what a private product would create in its namespace
/// before buying: the controller's rendering, dry-run by the API server.
/// An object the namespace already holds is refused by the dry run, and the
/// plugin says so and fails; nothing is ever written.
#[tokio::test]
async fn a_purchase_is_previewed_and_dry_run_before_buying() {
    let (client, t) = controller_and_namespaces(&["pv-isv", "pv-cust"]).await;
    let (isv, cust) = (t.ns(0), t.ns(1));
    put(&client, isv, &service("db")).await;
    let (ok, out, err) = plugin(&[
        "preview",
        "service/db",
        "--seller",
        isv,
        "-n",
        cust,
        "--plan",
        "pro",
    ]);
    assert!(ok, "{err}\n{out}");
    assert!(out.contains("scenario DirectPrivate"), "{out}");
    assert!(
        out.contains("# Deployment preview: accepted by a server-side dry run"),
        "{out}"
    );
    assert!(
        out.contains("replicas: 3"),
        "the plan's parameter is rendered:\n{out}"
    );
    assert!(
        Api::<ConfigMap>::namespaced(client.clone(), cust)
            .get_opt("preview-config")
            .await
            .expect("read")
            .is_none(),
        "a preview writes nothing"
    );
    // The name is taken: the dry run refuses it.
    let taken: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "preview-config"}})).expect("cm");
    Api::<ConfigMap>::namespaced(client.clone(), cust)
        .create(&PostParams::default(), &taken)
        .await
        .expect("taken");
    let (ok, out, err) = plugin(&[
        "preview",
        "service/db",
        "--seller",
        isv,
        "-n",
        cust,
        "--plan",
        "basic",
    ]);
    assert!(!ok, "{out}");
    assert!(out.contains("already exists"), "{out}\n{err}");
    assert!(err.contains("1 object(s) would be refused"), "{err}");
    // A parameter out of range is the controller's own message.
    let (ok, _, err) = plugin(&[
        "preview",
        "service/db",
        "--seller",
        isv,
        "-n",
        cust,
        "--plan",
        "basic",
        "--param",
        "replicas=9",
    ]);
    assert!(!ok && err.contains("InvalidParameter"), "{err}");
    t.cleanup().await;
}
