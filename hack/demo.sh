#!/usr/bin/env bash
# `make demo`: the whole product in one command.
#
#  1. a cluster: a throwaway local control plane (hack/controlplane.sh, in a
#     dedicated directory), or the cluster $KUBECONFIG points at when it answers;
#  2. the CRDs (kubectl apply --server-side -f crds/) and the chart's admission
#     policy for UsageRecords;
#  3. the controller, built with `cargo build --release --locked` and run from
#     this machine (log in the demo directory);
#  4. every example: scenario1..4, the two direct purchases, and examples/invalid/;
#  5. once every instance has a phase and every product a Ready condition (and,
#     on the local control plane, the pods of every valid instance are Ready:
#     kube-scheduler and kwok run them on simulated Nodes), a table of products
#     and instances (scenario, owner, where the resources live, how many of
#     their pods are ready, who pays, Orders, URL) and one line per refused
#     object;
#  6. then it keeps running until Ctrl-C, and cleans up: controller stopped,
#     local control plane stopped and deleted; on an existing cluster the
#     example namespaces the demo created are deleted (the CRDs stay).
#
# Environment:
#   DEMO_EXIT=1       print the table, clean up and exit (also when stdin is not a terminal)
#   DEMO_LOCAL=1      always use a local control plane, even when KUBECONFIG is set
#   DEMO_TIMEOUT=90   seconds to wait for the examples to settle
#   DEMO_FORCE=1      run even if another controller seems to hold the leader Lease
#   DEMO_WAIT_PODS=1  also wait until the pods of every valid instance are Ready (default: 1
#                     on the local control plane, whose pods are simulated; 0 on an existing
#                     cluster, where images are pulled); the table shows them either way
#   CARGO=cargo       cargo command
# Exit status: 0 when every example ended as its file says, 1 otherwise.
set -Eeuo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
t_start="$EPOCHREALTIME"
timeout="${DEMO_TIMEOUT:-90}"
cargo="${CARGO:-cargo}"

say() { echo "demo: $*" >&2; }
die() { say "$*"; exit 1; }
elapsed() { awk -v a="$t_start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# The examples, in the order they are applied. The invalid ones are expected
# to be refused (or, for no-grant.yaml, to wait for the ISV).
example_files=(
  examples/scenario1/all.yaml
  examples/scenario2/all.yaml
  examples/scenario3/all.yaml
  examples/scenario4/all.yaml
  examples/direct-private/all.yaml
  examples/direct-fully-managed/all.yaml
  examples/commerce/all.yaml
  examples/invalid/fully-managed-as-private.yaml
  examples/invalid/no-grant.yaml
  examples/invalid/cluster-scoped-template.yaml
  examples/invalid/bad-parameter.yaml
  examples/versions/01-publish-1.0.0.yaml
)
# Applied one after the other once everything above settled: the ISV
# publishes new versions, the customer's instances move (or do not).
version_steps=(
  examples/versions/02-publish-2.0.0.yaml
  examples/versions/03-publish-3.0.0.yaml
)

interactive=1
if [ "${DEMO_EXIT:-0}" = 1 ] || ! [ -t 0 ]; then interactive=0; fi

command -v python3 >/dev/null 2>&1 || die "python3 is not installed; install it and retry."
command -v curl >/dev/null 2>&1 || die "curl is not installed; install it and retry."
command -v "$cargo" >/dev/null 2>&1 || die "cargo is not installed; install Rust stable (https://rustup.rs) and retry."

# Everything of this run lives here; the controller log stays after cleanup.
work="$(mktemp -d "${TMPDIR:-/tmp}/computenest-demo.XXXXXX")"
cp_dir="$work/controlplane"
controller_log="$work/controller.log"
mode=""            # local | existing
controller_pid=""
created_ns=()      # namespaces this run created (deleted on cleanup of an existing cluster)
cleaning=0

# ---- cleanup -----------------------------------------------------------------

stop_controller() {
  local i
  [ -n "$controller_pid" ] || return 0
  if kill -0 "$controller_pid" 2>/dev/null; then
    kill -TERM "$controller_pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$controller_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$controller_pid" 2>/dev/null; then
      say "the controller (pid $controller_pid) ignored SIGTERM for 10 s; sending SIGKILL"
      kill -KILL "$controller_pid" 2>/dev/null || true
    fi
  fi
  wait "$controller_pid" 2>/dev/null || true
  controller_pid=""
}

# Waits until none of the namespaces "$@" exists, for at most $1 seconds.
wait_ns_gone() {
  local limit="$1"; shift
  local deadline=$((SECONDS + limit)) left
  while ((SECONDS < deadline)); do
    left="$(kc get ns "$@" --ignore-not-found -o name 2>/dev/null || true)"
    [ -n "$left" ] || return 0
    sleep 1
  done
  say "still terminating after ${limit} s: $(echo "$left" | tr '\n' ' ')(delete them later with kubectl delete ns ...)"
  return 1
}

delete_example_namespaces() {
  [ "${#created_ns[@]}" -gt 0 ] || return 0
  # Customers first, while the controller still runs: deleting a managed
  # ServiceInstance waits for the controller to remove its namespace (finalizer).
  local customers=() others=() ns
  for ns in "${created_ns[@]}"; do
    case "$ns" in *-customer) customers+=("$ns") ;; *) others+=("$ns") ;; esac
  done
  say "deleting the example namespaces this demo created (${#created_ns[@]}); the CRDs stay"
  if [ "${#customers[@]}" -gt 0 ]; then
    kc delete ns "${customers[@]}" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    wait_ns_gone 120 "${customers[@]}" || true
  fi
  if [ "${#others[@]}" -gt 0 ]; then
    kc delete ns "${others[@]}" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    wait_ns_gone 60 "${others[@]}" || true
  fi
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ "$cleaning" = 0 ] || exit "$rc"
  cleaning=1
  [ "$interactive" = 1 ] && echo >&2
  say "cleaning up"
  if [ "$mode" = existing ]; then
    delete_example_namespaces || true
  fi
  stop_controller
  if [ "$mode" = local ]; then
    "$here/controlplane.sh" stop "$cp_dir" >/dev/null 2>&1 ||
      say "could not stop the control plane in $cp_dir; run: hack/controlplane.sh stop $cp_dir"
  fi
  # Keep the controller log when it may be wanted: after a failure or a session.
  if [ -s "$controller_log" ] && { [ "$rc" -ne 0 ] || [ "$interactive" = 1 ]; }; then
    say "controller log kept in $controller_log"
  else
    rm -rf -- "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- 1. build ------------------------------------------------------------------

say "building the controller (cargo build --release --locked)"
(cd "$root" && "$cargo" build --release --locked --bin computenest-controller) ||
  die "cargo build --release failed; read the compiler output above."
controller_bin="$root/target/release/computenest-controller"
t_built="$EPOCHREALTIME"

# ---- 2. cluster ----------------------------------------------------------------

kc() { "$kubectl" "$@"; }

reachable() {
  "$kubectl" --request-timeout=5s get --raw /readyz >/dev/null 2>&1 ||
    "$kubectl" --request-timeout=5s get --raw /version >/dev/null 2>&1
}

if [ -n "${KUBECONFIG:-}" ] && [ "${DEMO_LOCAL:-0}" != 1 ]; then
  if command -v kubectl >/dev/null 2>&1; then
    kubectl="$(command -v kubectl)"
  else
    say "kubectl is not on PATH; using the one hack/build-controlplane.sh builds"
    kubectl="$("$here/build-controlplane.sh" | tail -n 1)/kubectl"
  fi
  if reachable; then
    mode=existing
    say "using the cluster of KUBECONFIG=$KUBECONFIG (context $(kc config current-context 2>/dev/null || echo '?'))"
  else
    say "KUBECONFIG=$KUBECONFIG does not answer; starting a local control plane instead (unset KUBECONFIG to skip this check)"
  fi
fi

if [ -z "$mode" ]; then
  say "starting a local control plane in $cp_dir"
  "$here/controlplane.sh" start "$cp_dir" >/dev/null ||
    die "the local control plane did not start; read the lines above (Go >= 1.26, or 1.25 with CP_PODS=0; openssl, curl and python3 are needed)."
  mode=local
  # shellcheck disable=SC1091
  source "$cp_dir/env"
  export KUBECONFIG
  # shellcheck disable=SC2153 # KUBECTL comes from the env file
  kubectl="$KUBECTL"
fi

# ---- 3. CRDs -------------------------------------------------------------------

say "installing the CRDs"
kc apply --server-side --force-conflicts -f "$root/crds/" >/dev/null ||
  die "kubectl apply of crds/ failed; you need cluster-admin rights to install CRDs."
kc wait --for=condition=Established --timeout=60s -f "$root/crds/" >/dev/null ||
  die "the CRDs did not become Established within 60 s."
# The chart's admission policy: a UsageRecord only from its instance's
# metering account (plain YAML, the same file the chart installs).
kc apply --server-side --force-conflicts \
  -f "$root/charts/computenest-controller/templates/usage-record-policy.yaml" >/dev/null ||
  die "kubectl apply of the usage record admission policy failed (Kubernetes 1.30 or later is needed)."

# Another controller (for example the Helm chart's) would fight this one.
if [ "$mode" = existing ] && [ "${DEMO_FORCE:-0}" != 1 ]; then
  holder="$(kc get leases -A -o json 2>/dev/null | python3 -c '
import json, sys, datetime
now = datetime.datetime.now(datetime.timezone.utc)
for l in json.load(sys.stdin).get("items", []):
    if l["metadata"]["name"] != "computenest-controller":
        continue
    s = l.get("spec", {})
    h, r = s.get("holderIdentity"), s.get("renewTime")
    if not h or not r:
        continue
    t = datetime.datetime.fromisoformat(r.replace("Z", "+00:00"))
    if (now - t).total_seconds() < 2 * (s.get("leaseDurationSeconds") or 15):
        print(l["metadata"]["namespace"] + "/" + h)
' 2>/dev/null || true)"
  [ -z "$holder" ] || die "a computenest-controller already runs in this cluster (Lease holder $holder); the demo would run a second one. Set DEMO_FORCE=1 to run anyway, or use a local control plane (DEMO_LOCAL=1)."
fi

# ---- 4. controller -------------------------------------------------------------

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
health="127.0.0.1:$port"
say "starting the controller (health and metrics on http://$health, log $controller_log)"
# setsid: Ctrl-C goes to this script only, which stops the controller after
# deleting the example namespaces (their finalizers need it). --exit-with-parent:
# the controller ends with this script even if the script is killed.
# A commercial day of DEMO_COMMERCE_DAY_SECONDS (10 s): the commerce
# example's one-day trial ends and its usage is settled while you watch.
COMPUTENEST_COMMERCE_DAY_SECONDS="${DEMO_COMMERCE_DAY_SECONDS:-10}" \
  setsid "$controller_bin" run --health-addr "$health" --exit-with-parent "$$" \
  </dev/null >"$controller_log" 2>&1 &
controller_pid=$!
deadline=$((SECONDS + 60))
until curl -fsS --max-time 2 "http://$health/readyz" >/dev/null 2>&1; do
  if ! kill -0 "$controller_pid" 2>/dev/null; then
    tail -n 20 "$controller_log" >&2 || true
    controller_pid=""
    die "the controller exited during start-up; its log is above (port $port taken? cluster unreachable?)."
  fi
  ((SECONDS < deadline)) || die "the controller did not report ready within 60 s; read $controller_log."
  sleep 0.2
done

# ---- 5. examples ---------------------------------------------------------------

# Which objects each file holds (file, kind, namespace, name), for the table.
manifest="$work/manifest.tsv"
: >"$manifest"
for f in "${example_files[@]}"; do
  kc create --dry-run=client -o json -f "$root/$f" | python3 -c '
import json, sys
# One JSON object per document, concatenated.
text, dec, pos, objs = sys.stdin.read(), json.JSONDecoder(), 0, []
while text[pos:].strip():
    while text[pos].isspace():
        pos += 1
    doc, pos = dec.raw_decode(text, pos)
    objs += doc.get("items", [doc])
for o in objs:
    # The products, grants and purchases (what the table reads back) and the
    # namespaces of the parties; not the plain objects some files also hold (a
    # ServiceAccount of the operators, ...).
    if o["kind"] != "Namespace" and not o["apiVersion"].startswith("computenest.dev/"):
        continue
    m = o["metadata"]
    print("\t".join([sys.argv[1], o["kind"], m.get("namespace", ""), m["name"]]))
' "$f" >>"$manifest" || die "cannot read $f"
done

# Namespaces that exist before the demo are left alone on cleanup.
mapfile -t example_ns < <(awk -F'\t' '$2 == "Namespace" { print $4 }' "$manifest")
if [ "$mode" = existing ]; then
  for ns in "${example_ns[@]}"; do
    if kc get ns "$ns" >/dev/null 2>&1; then
      say "namespace $ns exists already: using it, and leaving it in place afterwards"
    else
      created_ns+=("$ns")
    fi
  done
fi

say "applying ${#example_files[@]} example files"
for f in "${example_files[@]}"; do
  kc apply --server-side -f "$root/$f" >/dev/null || die "kubectl apply of $f failed (see above)."
done

# ---- 6. wait, then the table -----------------------------------------------------

state="$work/state.json"
report="$work/report.py"
cat >"$report" <<'PY'
"""Reads the example objects and either checks that they settled (check) or prints the table (table)."""
import json, os, sys, textwrap

mode, manifest_path, state_path = sys.argv[1:4]
wait_pods = os.environ.get("DEMO_WAIT_PODS") == "1"
manifest = [l.rstrip("\n").split("\t") for l in open(manifest_path) if l.strip()]
file_of = {(k, ns, n): f for f, k, ns, n in manifest}
namespaces = {n for f, k, ns, n in manifest if k == "Namespace"}
everything = json.load(open(state_path))["items"]
items = [o for o in everything if o["kind"] not in ("Deployment", "StatefulSet") and o["metadata"]["namespace"] in namespaces]
# Deployments and StatefulSets anywhere (managed namespaces too), by (kind, namespace, name).
workloads = {(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]): o
             for o in everything if o["kind"] in ("Deployment", "StatefulSet")}

def key(o):
    return (o["kind"], o["metadata"]["namespace"], o["metadata"]["name"])

def ref(o):
    return o["metadata"]["namespace"] + "/" + o["metadata"]["name"]

def ready(o):
    for c in (o.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c
    return None

def expected_ok(o):
    f = file_of.get(key(o))
    return f is not None and "/invalid/" not in f

def term_ended(o):
    """An instance whose term ended (the commerce example's trial): Ready is
    False on purpose, with the business state as its reason."""
    st = o.get("status") or {}
    return (o["kind"] == "ServiceInstance"
            and (st.get("commerce") or {}).get("bizStatus") in ("Suspended", "Expired")
            and (ready(o) or {}).get("reason") in ("Suspended", "Expired"))

def pods(si):
    """(ready, desired) over the Deployments and StatefulSets the instance's
    status.appliedObjects lists, or None when it lists none."""
    objs = [a for a in (si.get("status") or {}).get("appliedObjects") or [] if a.get("kind") in ("Deployment", "StatefulSet")]
    if not objs:
        return None
    ready = desired = 0
    for a in objs:
        w = workloads.get((a["kind"], a.get("namespace", ""), a.get("name", "")))
        if w is None:
            desired += 1  # listed but not seen (yet): count one pod not ready
            continue
        desired += (w.get("spec") or {}).get("replicas", 1)
        ready += (w.get("status") or {}).get("readyReplicas") or 0
    return ready, desired

def settled(o):
    """Why o has not settled yet, or None."""
    st = o.get("status") or {}
    if o["kind"] in ("Service", "DerivedService", "ServiceInstance", "DistributionGrant"):
        if ready(o) is None:
            return "no Ready condition yet"
        if st.get("observedGeneration") != o["metadata"].get("generation"):
            return "observedGeneration behind"
    if o["kind"] == "ServiceInstance" and not st.get("phase"):
        return "no phase yet"
    if o["kind"] == "ServiceInstance" and st.get("phase") == "Upgrading":
        return "upgrading"
    if o["kind"] == "ServiceInstance" and any(h.get("result") == "InProgress" for h in st.get("history") or []):
        return "moving between versions"
    if expected_ok(o) and o["kind"] != "Order" and ready(o)["status"] != "True" and not term_ended(o):
        return "Ready=%s (%s)" % (ready(o)["status"], ready(o).get("reason"))
    if wait_pods and expected_ok(o) and o["kind"] == "ServiceInstance":
        p = pods(o)
        if p is not None and p[0] < p[1]:
            return "%d of %d pods ready" % p
    return None

kinds = {}
for o in items:
    kinds.setdefault(o["kind"], []).append(o)
missing = [k for k in file_of if k[0] != "Namespace" and k not in {key(o) for o in items}]

if mode == "check":
    waiting = ["%s %s/%s: not found" % k for k in missing]
    waiting += ["%s %s: %s" % (o["kind"], ref(o), why) for o in items if (why := settled(o))]
    # Scenario 3 instances are Deployed only with their Orders; check they are listed.
    for si in kinds.get("ServiceInstance", []):
        b = (si.get("status") or {}).get("billing") or {}
        if b.get("settlement") == "Online" and si["status"].get("phase") == "Deployed" and not b.get("orders"):
            waiting.append("ServiceInstance %s: Online settlement but no Orders yet" % ref(si))
    print("\n".join(waiting))
    sys.exit(1 if waiting else 0)

# ---- table ----
services = {ref(o): o for o in kinds.get("Service", [])}
derived = {ref(o): o for o in kinds.get("DerivedService", [])}
orders = {ref(o): o for o in kinds.get("Order", [])}

def short(f):
    if f.startswith("examples/versions/"):
        return "versions"
    return f.replace("examples/", "").replace("/all.yaml", "")

def term_of(si):
    c = (si.get("status") or {}).get("commerce")
    if not c:
        return "free"
    what = "trial" if c.get("trial") else c.get("mode", "?")
    return "%s %s (%s)" % (what, c.get("period", ""), c.get("bizStatus", "?"))

rows, notes = [], []
for si in sorted(kinds.get("ServiceInstance", []), key=lambda o: (file_of.get(key(o), "~"), ref(o))):
    st = si.get("status") or {}
    c = ready(si) or {}
    if c.get("status") != "True" and not term_ended(si):
        continue
    sref = si["spec"]["serviceRef"]
    product = sref["namespace"] + "/" + sref["name"]
    owner = st.get("owner") or {}
    bill = st.get("billing") or {}
    rows.append([
        short(file_of.get(key(si), "?")),
        st.get("scenario", ""),
        product,
        ref(si),
        "%s (%s)" % (owner.get("party", "?"), owner.get("namespace", "?")),
        owner.get("targetNamespace", ""),
        "%d/%d" % pods(si) if pods(si) is not None else "-",
        st.get("version", "-"),
        bill.get("resourceFeesPaidBy", ""),
        bill.get("serviceFeesPaidTo", ""),
        bill.get("settlement", ""),
        st.get("phase", ""),
        term_of(si),
        (st.get("commerce") or {}).get("expireTime", "-") or "-",
        ("%s %s" % (st["commerce"]["amount"], st["commerce"]["currency"])) if st.get("commerce") else "-",
    ])
    extra = []
    if sref["kind"] == "DerivedService":
        ds = derived.get(product)
        src = (ds or {}).get("spec", {}).get("source", {})
        grant = ((ds or {}).get("status") or {}).get("grant") or {}
        extra.append("product: DerivedService %s (%s), built on Service %s/%s, grant %s: %s" % (
            product, (ds or {}).get("spec", {}).get("type", "?"), src.get("namespace"), src.get("name"),
            grant.get("name", "-"), grant.get("state", "-")))
    else:
        svc = services.get(product) or {}
        extra.append("product: Service %s (%s), bought directly from the ISV" % (product, svc.get("spec", {}).get("type", "?")))
    extra.append("url: %s" % (st.get("logonUrl") or "-"))
    if bill.get("orders"):
        for oref in bill["orders"]:
            o = orders.get(oref)
            if o:
                sp = o["spec"]
                party = lambda p: "%s %s" % (p.get("party", "?"), p.get("namespace", "?"))
                item = sp.get("item", {})
                extra.append("order: %s: %s sells %s %s/%s to %s%s" % (
                    oref, party(sp.get("seller", {})), item.get("kind", "?"), item.get("namespace", "?"),
                    item.get("name", "?"), party(sp.get("buyer", {})),
                    ", price " + sp["price"] if sp.get("price") else ""))
            else:
                extra.append("order: %s" % oref)
    else:
        extra.append("orders: none (%s settlement)" % (bill.get("settlement") or "?").lower())
    com = st.get("commerce")
    if com:
        extra.append("term: %s from %s%s; license Secret %s" % (
            term_of(si), com.get("startTime", "?"),
            ", ends " + com["expireTime"] if com.get("expireTime") else "", com.get("licenseSecret", "-")))
        for stmt in com.get("statements") or []:
            extra.append("statement: %s %d %s..%s: %s %s%s%s" % (
                stmt["kind"], stmt["index"], stmt["start"], stmt["end"], stmt["amount"], com.get("currency", ""),
                " (resale %s)" % stmt["resaleAmount"] if stmt.get("resaleAmount") else "",
                "; Orders " + ", ".join(stmt["orders"]) if stmt.get("orders") else ""))
    pin = si["spec"].get("version") or ("channel " + si["spec"]["channel"] if si["spec"].get("channel") else "")
    if pin or st.get("history"):
        extra.append("version: %s (asks for %s, %s)%s" % (
            st.get("version", "-"), pin or "the current version", si["spec"].get("updatePolicy", "Manual"),
            "; newer: " + ", ".join(st["availableUpgrades"]) if st.get("availableUpgrades") else ""))
        for h in st.get("history") or []:
            extra.append("history: %s %s -> %s %s%s" % (h["type"], h["from"], h["to"], h["result"],
                         ": " + h["message"][:80] if h.get("message") else ""))
        for c in st.get("conditions") or []:
            if c["type"] in ("UpgradeBlocked", "RolledBack") and c["status"] == "True":
                extra.append("%s: %s: %s" % (c["type"], c["reason"], c["message"][:100]))
    notes.append(extra)

head = ["EXAMPLE", "SCENARIO", "PRODUCT", "INSTANCE", "OWNER", "RESOURCES IN", "PODS READY", "VERSION", "RESOURCE FEES", "SERVICE FEES TO", "SETTLEMENT", "PHASE", "TERM", "EXPIRES", "AMOUNT"]
# Three tables keep the lines short: where things run, who pays, and the details.
where = [0, 3, 1, 2, 4, 5, 6, 7]
pays = [0, 3, 8, 9, 10, 11, 12, 13, 14]

def table(cols, rows):
    w = [max(len(head[c]), *(len(r[c]) for r in rows)) for c in cols]
    out = ["  ".join(head[c].ljust(w[i]) for i, c in enumerate(cols)).rstrip()]
    for r in rows:
        out.append("  ".join(r[c].ljust(w[i]) for i, c in enumerate(cols)).rstrip())
    return "\n".join(out)

print()
print("=== Products and instances: who owns the resources, and where they live")
print()
print(table(where, rows) if rows else "(none)")
print()
print("=== Who pays")
print()
print(table(pays, rows) if rows else "(none)")
print()
print("=== Product, URL and Orders of each instance")
for r, extra in zip(rows, notes):
    print()
    print("%s  [%s, %s]" % (r[3], r[1], r[0]))
    for e in extra:
        print("    " + e)

print()
print("=== Refused or waiting (every object whose Ready condition is not True)")
print()
bad = [o for o in items if o["kind"] != "Order" and (ready(o) or {}).get("status") != "True"]
ns_file = {n: f for (k, ns, n), f in file_of.items() if k == "Namespace"}
def source_file(o):
    # Objects the controller wrote (application grants) belong to the file of their namespace.
    return file_of.get(key(o)) or ns_file.get(o["metadata"]["namespace"], "?")
order = ["Service", "DistributionGrant", "DerivedService", "ServiceInstance"]
bad.sort(key=lambda o: (source_file(o), order.index(o["kind"]) if o["kind"] in order else 9, ref(o)))
for o in bad:
    c = ready(o) or {}
    phase = (o.get("status") or {}).get("phase")
    f = source_file(o)
    by = "" if key(o) in file_of else " (written by the controller)"
    line = "%s: %s %s%s%s -> %s" % (short(f), o["kind"], ref(o), by, " (%s)" % phase if phase else "", c.get("reason", "no condition"))
    print(line)
    print(textwrap.fill(c.get("message", ""), width=100, initial_indent="    ", subsequent_indent="    "))
unexpected = [o for o in bad if expected_ok(o) and not term_ended(o)]
if unexpected:
    print()
    print("UNEXPECTED: %d object(s) of the valid examples are not Ready (listed above)." % len(unexpected))
    sys.exit(1)
PY

# The example objects, and every Deployment and StatefulSet (the instances'
# pods; managed namespaces are not in the manifest).
fetch_state() {
  kc get services.computenest.dev,distributiongrants.computenest.dev,derivedservices.computenest.dev,serviceinstances.computenest.dev,orders.computenest.dev,deployments.apps,statefulsets.apps \
    -A -o json >"$state.tmp" 2>/dev/null && mv "$state.tmp" "$state"
}

# Wait for pods only where they start quickly: the local control plane with
# kwok (CP_PODS from its env file), unless DEMO_WAIT_PODS says otherwise.
if [ -z "${DEMO_WAIT_PODS:-}" ]; then
  DEMO_WAIT_PODS=0
  [ "$mode" = local ] && [ "${CP_PODS:-0}" = 1 ] && DEMO_WAIT_PODS=1
fi
export DEMO_WAIT_PODS

what_pods=""
[ "$DEMO_WAIT_PODS" = 1 ] && what_pods=", and the pods of every valid instance are Ready"
say "waiting (at most ${timeout} s) until every instance has a phase and every Service, grant and DerivedService a Ready condition$what_pods"
# Sets settled=1 once every example object settled (pending: what has not),
# within $timeout seconds.
wait_settled() {
  local deadline=$((SECONDS + timeout))
  settled=0
  while ((SECONDS < deadline)); do
    if fetch_state && pending="$(python3 "$report" check "$manifest" "$state")"; then
      settled=1
      return
    fi
    kill -0 "$controller_pid" 2>/dev/null || die "the controller exited; read $controller_log."
    sleep 1
  done
}
wait_settled
if [ "$settled" = 1 ]; then
  for f in "${version_steps[@]}"; do
    say "versions: applying $f and waiting until every instance has moved (or not)"
    kc apply --server-side -f "$root/$f" >/dev/null || die "kubectl apply of $f failed (see above)."
    wait_settled
    [ "$settled" = 1 ] || break
  done
fi
# Commerce: the customer renews a subscription by hand, the software of a
# pay-as-you-go instance reports usage with its own metering account, and the
# trial runs out; then every instance's term, expiry and amount are in the table.
commerce_steps() {
  local cust=shop-customer target uid deadline now records
  say "commerce: 'monthly' renewed by hand (billing.periods 2); the software of 'metered' reports usage; waiting for the trial to end and the usage period to be settled"
  kc patch serviceinstance -n "$cust" monthly --type merge -p '{"spec":{"billing":{"periods":2}}}' >/dev/null ||
    die "cannot renew the subscription 'monthly'."
  target="$(kc get serviceinstance -n "$cust" metered -o jsonpath='{.status.owner.targetNamespace}')"
  uid="$(kc get serviceinstance -n "$cust" metered -o jsonpath='{.metadata.uid}')"
  [ -n "$target" ] && [ -n "$uid" ] || die "the instance 'metered' has no target namespace yet."
  records="$(python3 - "$uid" <<'PYREC'
import datetime, json, sys
now = datetime.datetime.now(datetime.timezone.utc)
ts = lambda s: (now - datetime.timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
items = [{"apiVersion": "computenest.dev/v1alpha1", "kind": "UsageRecord",
          "metadata": {"name": "metered-%s" % name},
          "spec": {"instance": sys.argv[1], "instanceName": "metered", "dimension": dim, "quantity": q,
                   "windowStart": ts(start), "windowEnd": ts(end)}}
         for name, dim, q, start, end in [("cpu-1", "VirtualCpu", 4, 3.0, 2.0),
                                           ("cpu-2", "VirtualCpu", 6, 2.0, 1.0),
                                           ("disk", "Storage", 20, 3.0, 1.0)]]
print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
PYREC
)"
  kc create -n "$target" --as "system:serviceaccount:$target:metered-metering" \
    --as-group system:serviceaccounts --as-group "system:serviceaccounts:$target" \
    -f - <<<"$records" >/dev/null || die "the metering account of 'metered' could not report usage."
  deadline=$((SECONDS + 120))
  while ((SECONDS < deadline)); do
    now="$(kc get serviceinstance -n "$cust" trial metered -o jsonpath='{.items[0].status.commerce.bizStatus} {.items[1].status.commerce.statements[*].kind}' 2>/dev/null || true)"
    case "$now" in Suspended*Usage*) return 0 ;; esac
    sleep 1
  done
  say "commerce: still waiting after 120 s ($now); the table shows where it stands"
}
if [ "$settled" = 1 ]; then
  commerce_steps
fi
fetch_state || die "cannot read the example objects back from the cluster."

rc=0
python3 "$report" table "$manifest" "$state" || rc=1
echo
if [ "$settled" = 1 ]; then
  echo "Everything settled $(elapsed) s after the demo started ($(awk -v a="$t_start" -v b="$t_built" 'BEGIN { printf "%.1f", b - a }') s of it in cargo build)."
else
  rc=1
  echo "NOT SETTLED after ${timeout} s; still waiting for:"
  while IFS= read -r line; do echo "    $line"; done <<<"${pending:-?}"
  echo "Read the controller log: $controller_log"
fi

if [ "$interactive" = 0 ]; then
  exit "$rc"
fi

cat <<EOF

The controller keeps running. In another terminal:

  export KUBECONFIG=$KUBECONFIG
  $kubectl get computenest -A
  $kubectl get cnsi -A -o wide
  $kubectl get pods -A -o wide
  curl -s http://$health/metrics | grep '^computenest_'
  tail -f $controller_log

Walk through examples/README.md from step 8 (approve the pending application,
revoke a grant, delete an instance). Press Ctrl-C here to stop and clean up.
EOF
# Ctrl-C is the normal way out from here on.
trap 'exit 0' INT
while :; do
  if ! kill -0 "$controller_pid" 2>/dev/null; then
    say "the controller exited; read $controller_log"
    exit 1
  fi
  sleep 1
done
