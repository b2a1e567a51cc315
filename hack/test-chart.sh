#!/usr/bin/env bash
# The Helm chart, tested against a real control plane (the one in $KUBECONFIG;
# hack/test-integration.sh runs this after the Rust integration tests):
#
#  - helm lint --strict; helm template --include-crds | kubectl apply --dry-run=server;
#  - helm install into computenest-system (its pods are only simulated by kwok);
#  - the image (hack/build-image.sh, as `make image`): two builds give the same
#    digest and bytes; the archive names the chart's default image; its config
#    (user 65532, entrypoint, cmd, port, labels) and its root filesystem (the
#    static binary, /etc/passwd, /tmp, nothing else), unpacked from the layers;
#  - the chart's RBAC is enough: two controller processes run on this machine
#    with a token of the chart's ServiceAccount (and the Deployment's own
#    environment), with leader election in the chart's Lease; replica-a is the
#    image's binary, run from its unpacked root filesystem (chroot, as the
#    image's user, when this runs as root), replica-b target/debug; examples
#    scenario2 and scenario3 deploy, with their Orders; the image's binary leads
#    (first, or after the SIGKILL of the other) and deploys;
#  - an AccessRequest is granted under the chart's RBAC (no bind, no escalate:
#    the Role holds only permissions of access.grantableRules, Secrets are left
#    out with a message) and its Role goes with it;
#  - exactly one replica leads (Lease holder, computenest_leader on /metrics);
#  - SIGKILL of the leader: the standby takes over within the lease duration
#    plus a few seconds and deploys a new instance; SIGTERM of the last one
#    releases the Lease;
#  - kubectl auth can-i as the ServiceAccount: what it may and may not do;
#  - tenancy: the values schema refuses a misspelt tenancy key, the Deployment
#    passes exactly the TenancyPolicy keys; the controller may bind the operator
#    ClusterRole and no other (a RoleBinding written as the ServiceAccount),
#    and write the ResourceQuota, LimitRange and NetworkPolicy of a namespace;
#    no tenant role may write a namespace; the operator role, bound in one
#    namespace, gives what an owner needs there, nothing elsewhere, and nothing
#    that undoes the platform's policy.
#
# Prints one line per check and, last, "chart: N passed, M failed"; exits 1 on
# any failure. Needs KUBECONFIG (cluster admin), helm (hack/build-helm.sh builds
# it), and target/debug/computenest-controller (built if missing); the image
# step builds the static release binary in target/image (10 minutes on 2 cores
# the first time, seconds when nothing changed) and crane (hack/build-crane.sh).
#
# Environment: KUBECTL (default: kubectl from PATH), CHART_TEST_TIMEOUT=60
# (seconds per wait), CHART_TEST_KEEP=1 (leave the release and namespaces),
# CHART_TEST_IMAGE=0 (skip the image: both replicas run target/debug).
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
chart="$root/charts/computenest-controller"
release=computenest-controller
ns=computenest-system
timeout="${CHART_TEST_TIMEOUT:-60}"
kubectl="${KUBECTL:-$(command -v kubectl || true)}"
work="$(mktemp -d "${TMPDIR:-/tmp}/computenest-chart-test.XXXXXX")"
passed=0 failed=0
pids=()
installed=0

say() { echo "test-chart: $*" >&2; }
pass() { passed=$((passed + 1)); echo "ok    $*"; }
fail() { failed=$((failed + 1)); echo "FAIL  $*"; }
# check "what" command...: pass or fail on the command's exit status.
check() {
  local what="$1"; shift
  local out
  if out="$("$@" 2>&1)"; then pass "$what"; else fail "$what"; indent <<<"$out" | tail -n 15; fi
}
kc() { "$kubectl" "$@"; }
indent() { sed 's/^/      /'; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

finish() {
  local rc=$?
  trap - EXIT INT TERM
  local p
  for p in "${pids[@]}"; do
    if kill -0 "$p" 2>/dev/null; then kill -KILL "$p" 2>/dev/null || true; fi
    wait "$p" 2>/dev/null || true
  done
  if [ "${CHART_TEST_KEEP:-0}" != 1 ] && [ -n "$kubectl" ]; then
    cleanup_cluster >/dev/null 2>&1 || true
  fi
  if [ "$failed" -gt 0 ] || [ "$rc" -ne 0 ]; then
    say "logs kept in $work"
  else
    rm -rf -- "$work"
  fi
  echo "chart: $passed passed, $failed failed"
  if [ "$failed" -gt 0 ] || [ "$rc" -ne 0 ]; then exit 1; fi
  exit 0
}
trap finish EXIT
trap 'fail "interrupted"; exit 130' INT
trap 'fail "terminated"; exit 143' TERM

# No controller runs now, so nothing reconciles the managed instances' finalizers:
# remove their namespaces and finalizers directly, then the example namespaces.
cleanup_cluster() {
  local si target
  if [ "$installed" = 1 ]; then "$helm" uninstall "$release" -n "$ns" --wait=false; fi
  local n
  for n in s2-customer s3-customer; do
    for si in $(kc get serviceinstances.computenest.dev -n "$n" -o name 2>/dev/null); do
      target="$(kc get "$si" -n "$n" -o jsonpath='{.status.owner.targetNamespace}' 2>/dev/null)"
      [ -z "$target" ] || [ "$target" = "$n" ] || kc delete ns "$target" --wait=false --ignore-not-found
      kc patch "$si" -n "$n" --type merge -p '{"metadata":{"finalizers":null}}'
    done
  done
  kc delete ns s2-isv s2-distributor s2-customer s3-isv s3-distributor s3-customer "$ns" \
    chart-tenant chart-op-a chart-op-b --wait=false --ignore-not-found
  kc delete clusterrole chart-test-namespace-patch --ignore-not-found
}

# ---- prerequisites ---------------------------------------------------------------

[ -n "$kubectl" ] || { fail "kubectl not found (set KUBECTL)"; exit 1; }
[ -n "${KUBECONFIG:-}" ] || { fail "KUBECONFIG is not set; run hack/test-integration.sh, or start hack/controlplane.sh and source its env"; exit 1; }
kc --request-timeout=5s get --raw /readyz >/dev/null 2>&1 || { fail "the API server in $KUBECONFIG does not answer"; exit 1; }
for tool in curl python3; do
  command -v "$tool" >/dev/null 2>&1 || { fail "$tool is not installed"; exit 1; }
done

bin="$root/target/debug/computenest-controller"
if ! [ -x "$bin" ]; then
  say "building $bin"
  (cd "$root" && cargo build --locked --bin computenest-controller) || { fail "cargo build failed"; exit 1; }
fi

# The integration tests' controller ends with its test binary (--exit-with-parent);
# make sure none is left that talks to this cluster, so that only ours write.
test_controllers() {
  local p args env
  for p in /proc/[0-9]*; do
    args="$(tr '\0' ' ' 2>/dev/null <"$p/cmdline")" || continue
    case "$args" in *computenest-controller\ run\ *--exit-with-parent*) ;; *) continue ;; esac
    env="$(tr '\0' '\n' 2>/dev/null <"$p/environ")" || continue
    grep -qxF "KUBECONFIG=$KUBECONFIG" <<<"$env" && echo "${p#/proc/}"
  done
  return 0
}
deadline=$((SECONDS + 30))
while [ -n "$(test_controllers)" ] && ((SECONDS < deadline)); do sleep 0.5; done
if [ -n "$(test_controllers)" ]; then
  fail "a test controller still runs against this cluster after 30 s (pids $(test_controllers | tr '\n' ' '))"
  exit 1
fi
pass "no other controller runs against this cluster"

helm="$("$here/build-helm.sh" | tail -n 1)" || true
[ -x "$helm" ] || { fail "hack/build-helm.sh did not produce helm (Go >= 1.25 and the Go module proxy are needed once)"; exit 1; }

# ---- the image -----------------------------------------------------------------------

# replica-a runs the image's binary from the image's own root filesystem,
# unpacked from the archive's layers (image_bin, the entrypoint there).
image_bin="" image_name="" image_user="" rootfs="$work/rootfs"
archive="" digest_1="" digest_2="" time_1="" time_2=""
# build_image N: hack/build-image.sh; sets archive, digest_N and time_N.
build_image() {
  local t0 out
  t0="$(now)"
  if out="$("$here/build-image.sh" 2>"$work/build-image-$1.log")"; then
    archive="$(tail -n 2 <<<"$out" | head -n 1)"
    printf -v "digest_$1" '%s' "$(tail -n 1 <<<"$out")"
    printf -v "time_$1" '%s' "$(since "$t0")"
  else
    fail "hack/build-image.sh (build $1) failed; log $work/build-image-$1.log"; tail -n 20 "$work/build-image-$1.log" | indent
    return 1
  fi
}
# What the image is, from the archive alone: index.json (OCI layout) -> the
# manifest -> the config and the layers, unpacked in order into $rootfs. Prints
# name, user and entrypoint, then a line per problem with the config or the
# files.
read -r -d '' inspect_py <<'PY' || true
import gzip, io, json, os, stat, sys, tarfile
archive, rootfs, digest = sys.argv[1:]
problems = []
with tarfile.open(archive) as a:
    def blob(d):
        return a.extractfile("blobs/%s/%s" % tuple(d.split(":", 1))).read()
    index = json.loads(a.extractfile("index.json").read())
    [desc] = index["manifests"]
    name = desc.get("annotations", {}).get("io.containerd.image.name", "")
    if desc["digest"] != digest:
        problems.append("index.json names %s, the build printed %s" % (desc["digest"], digest))
    docker = json.loads(a.extractfile("manifest.json").read())
    if docker[0]["RepoTags"] != [name]:
        problems.append("manifest.json tags %s, index.json %s" % (docker[0]["RepoTags"], name))
    manifest = json.loads(blob(desc["digest"]))
    config = json.loads(blob(manifest["config"]["digest"]))
    os.makedirs(rootfs)
    os.chmod(rootfs, 0o755)  # the root directory of a container
    for layer in manifest["layers"]:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob(layer["digest"])))) as t:
            if any(os.path.basename(m.name).startswith(".wh.") for m in t.getmembers()):
                problems.append("whiteouts in a layer: more than one layer was not expected")
            try:  # our own archive: modes as they are (/tmp 1777), owners numeric
                t.extractall(rootfs, numeric_owner=True, filter="fully_trusted")
            except TypeError:  # Python without extraction filters
                t.extractall(rootfs, numeric_owner=True)
c = config.get("config", {})
labels = c.get("Labels") or {}
want = {
    "User": "65532:65532", "Entrypoint": ["/computenest-controller"], "Cmd": ["run"],
    "ExposedPorts": {"8080/tcp": {}},
}
for k, v in want.items():
    if c.get(k) != v:
        problems.append("config %s is %r, want %r" % (k, c.get(k), v))
for k, v in {"org.opencontainers.image.title": "computenest-controller",
             "org.opencontainers.image.version": os.environ["VERSION"],
             "org.opencontainers.image.licenses": "Apache-2.0",
             "org.opencontainers.image.source": os.environ["SOURCE"]}.items():
    if labels.get(k) != v:
        problems.append("label %s is %r, want %r" % (k, labels.get(k), v))
if (config.get("os"), config.get("architecture")) != ("linux", os.environ["ARCH"]):
    problems.append("platform %s/%s" % (config.get("os"), config.get("architecture")))
files = sorted(os.path.relpath(os.path.join(d, f), rootfs) for d, ds, fs in os.walk(rootfs) for f in ds + fs)
if files != ["computenest-controller", "etc", "etc/group", "etc/passwd", "tmp"]:
    problems.append("root filesystem holds %s" % files)
entry = os.path.join(rootfs, c["Entrypoint"][0].lstrip("/")) if c.get("Entrypoint") else ""
if entry and os.path.exists(entry):
    st = os.stat(entry)
    if stat.S_IMODE(st.st_mode) != 0o755 or st.st_uid != 0:
        problems.append("%s has mode %o, uid %d" % (c["Entrypoint"][0], stat.S_IMODE(st.st_mode), st.st_uid))
    if b"\x7fELF" != open(entry, "rb").read(4):
        problems.append("%s is not an ELF file" % c["Entrypoint"][0])
passwd = open(os.path.join(rootfs, "etc/passwd")).read() if os.path.exists(os.path.join(rootfs, "etc/passwd")) else ""
if "nonroot:x:65532:65532:" not in passwd:
    problems.append("/etc/passwd has no nonroot user 65532")
if os.path.isdir(os.path.join(rootfs, "tmp")) and stat.S_IMODE(os.stat(os.path.join(rootfs, "tmp")).st_mode) != 0o1777:
    problems.append("/tmp is not mode 1777")
print(name)
print(c.get("User", ""))
print(c["Entrypoint"][0] if c.get("Entrypoint") else "")
for p in problems:
    print(p)
PY
if [ "${CHART_TEST_IMAGE:-1}" = 0 ]; then
  say "CHART_TEST_IMAGE=0: no image; both replicas run $bin"
elif build_image 1 && build_image 2; then
  size="$(du -h "$archive" | cut -f1)"
  pass "hack/build-image.sh: ${archive#"$root"/} ($size), $digest_1 (${time_1}s; again: ${time_2}s)"
  # Twice from the same sources: the same image, byte for byte. (Only if the
  # sources did not change in between: the digest covers the last commit's time.)
  if [ "$digest_1" = "$digest_2" ]; then
    pass "a second build gives the same digest ($digest_2)"
  else
    fail "two builds from the same sources gave $digest_1 and $digest_2"
  fi
  crane="$("$here/build-crane.sh" | tail -n 1)"
  tar_digest="$("$crane" digest --tarball "$archive" 2>&1)"
  if [ "$tar_digest" = "$digest_2" ]; then
    pass "read as a docker-save tarball (crane digest --tarball) the archive has the same digest"
  else
    fail "read as a docker-save tarball the archive has digest '$tar_digest', not $digest_2"
  fi
  arch="$(uname -m)"; arch="${arch/x86_64/amd64}"; arch="${arch/aarch64/arm64}"
  cargo_field() { awk -v k="$1" '/^\[/ { p = ($0 == "[package]") } p && $1 == k && $2 == "=" { v = $3; gsub(/"/, "", v); print v; exit }' "$root/Cargo.toml"; }
  if inspect="$(VERSION="$(cargo_field version)" SOURCE="$(cargo_field repository)" ARCH="$arch" \
    python3 -c "$inspect_py" "$archive" "$rootfs" "$digest_2" 2>&1)"; then
    { read -r image_name; read -r image_user; read -r image_entry; } <<<"$inspect"
    problems="$(tail -n +4 <<<"$inspect")"
    if [ -z "$problems" ]; then
      pass "image config: user $image_user, entrypoint [$image_entry], cmd [run], port 8080/tcp, linux/$arch, labels title, version $(cargo_field version), source, licenses Apache-2.0"
      pass "its layer unpacked: $image_entry (0755, ELF), /etc/passwd (nonroot 65532), /etc/group, /tmp (1777), nothing else"
      image_bin="$rootfs$image_entry"
    else
      fail "the image's config or files are wrong:"; indent <<<"$problems"
    fi
  else
    fail "cannot read or unpack $archive"; indent <<<"$inspect" | tail -n 15
  fi
  if [ -n "$image_bin" ] && "$image_bin" --version >/dev/null 2>&1; then
    pass "$image_entry from the unpacked root filesystem runs on this machine (statically linked)"
  elif [ -n "$image_bin" ]; then
    fail "$image_bin does not run"; image_bin=""
  fi
fi

# ---- static checks -----------------------------------------------------------------

check "helm lint --strict" "$helm" lint --strict "$chart"

kc create namespace "$ns" --dry-run=client -o yaml | kc apply -f - >/dev/null
render_and_dry_run() {
  "$helm" template "$release" "$chart" -n "$ns" --include-crds >"$work/rendered.yaml" 2>"$work/template.err" || { cat "$work/template.err"; return 1; }
  kc apply --dry-run=server -f "$work/rendered.yaml"
}
check "helm template --include-crds | kubectl apply --dry-run=server" render_and_dry_run

# refuses "what" PATTERN ARGS...: helm template with ARGS fails, saying PATTERN.
refuses() {
  local what="$1" pattern="$2" out; shift 2
  if out="$("$helm" template "$release" "$chart" -n "$ns" "$@" 2>&1)"; then
    fail "$what: helm template succeeded"
  elif grep -qE -- "$pattern" <<<"$out"; then
    pass "$what"
  else
    fail "$what: failed without saying /$pattern/"; grep -v 'symbolic link' <<<"$out" | indent | tail -n 5
  fi
}
refuses "the values schema refuses a misspelt tenancy key (tenancy.podSecurty)" \
  "additional properties 'podSecurty' not allowed" --set tenancy.podSecurty.enforce=baseline
refuses "the values schema refuses a misspelt nested tenancy key (tenancy.quota.defaults.cpus)" \
  "additional properties 'cpus' not allowed" --set-string tenancy.quota.defaults.cpus=4
refuses "the values schema refuses an unknown Pod Security level" \
  "value must be one of" --set tenancy.podSecurity.enforce=lax
refuses "the values schema refuses an unquoted quantity (tenancy.quota.defaults.cpu=4)" \
  "/tenancy/quota/defaults/cpu" --set tenancy.quota.defaults.cpu=4
refuses "tenancy.operatorClusterRole other than operatorRole.name fails rendering" \
  "differs from operatorRole.name" --set tenancy.operatorClusterRole=admin
refuses "operatorRole.name naming a built-in ClusterRole fails rendering" \
  "is a built-in ClusterRole" --set operatorRole.name=cluster-admin
printf 'operatorRole:\n  rules:\n    - {apiGroups: [""], resources: [resourcequotas], verbs: [get, delete]}\n' >"$work/operator-quota.yaml"
refuses "operator rules that write a ResourceQuota fail rendering" \
  "may only read resourcequotas" -f "$work/operator-quota.yaml"
printf 'operatorRole:\n  rules:\n    - {apiGroups: [rbac.authorization.k8s.io], resources: [rolebindings], verbs: [create]}\n' >"$work/operator-rbac.yaml"
refuses "operator rules on RBAC objects fail rendering" \
  "never get RBAC objects" -f "$work/operator-rbac.yaml"
# The policy the Deployment passes: exactly the TenancyPolicy keys (the controller
# refuses unknown ones), its operatorClusterRole the ClusterRole the chart ships.
tenancy_keys() {
  python3 - "$work/rendered.yaml" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
m = re.search(r'name: COMPUTENEST_TENANCY_POLICY\n\s+value: (".*")\n', text)
if not m:
    sys.exit("no COMPUTENEST_TENANCY_POLICY in the Deployment")
p = json.loads(json.loads(m.group(1)))
want = {"podSecurity", "quota", "limitRange", "networkPolicy", "operatorClusterRole",
        "maxManagedNamespacesPerCustomer", "sizeLimits"}
if set(p) != want:
    sys.exit("keys %s, want %s" % (sorted(p), sorted(want)))
if p["operatorClusterRole"] != "computenest-operator":
    sys.exit("operatorClusterRole %r" % p["operatorClusterRole"])
PY
}
check "COMPUTENEST_TENANCY_POLICY holds exactly the TenancyPolicy keys, operatorClusterRole computenest-operator" tenancy_keys

# ---- install -----------------------------------------------------------------------

if "$helm" install "$release" "$chart" -n "$ns" >"$work/install.log" 2>&1; then
  installed=1
  pass "helm install $release -n $ns"
else
  fail "helm install $release -n $ns"; indent <"$work/install.log"
  exit 1
fi

sa="$(kc get deployment "$release" -n "$ns" -o jsonpath='{.spec.template.spec.serviceAccountName}')"
lease_name="$(kc get deployment "$release" -n "$ns" -o jsonpath='{.spec.template.spec.containers[0].env[?(@.name=="COMPUTENEST_LEASE_NAME")].value}')"
lease_ns="$(kc get deployment "$release" -n "$ns" -o jsonpath='{.spec.template.spec.containers[0].env[?(@.name=="COMPUTENEST_LEASE_NAMESPACE")].value}')"
lease_duration="$(kc get deployment "$release" -n "$ns" -o jsonpath='{.spec.template.spec.containers[0].env[?(@.name=="COMPUTENEST_LEASE_DURATION")].value}')"
if [ -n "$sa" ] && [ -n "$lease_name" ] && [ "$lease_ns" = "$ns" ] && [ -n "$lease_duration" ]; then
  pass "Deployment: ServiceAccount $sa, Lease $lease_ns/$lease_name, duration ${lease_duration}s"
else
  fail "Deployment lacks the ServiceAccount or the lease settings (sa '$sa', lease '$lease_ns/$lease_name', duration '$lease_duration')"
  exit 1
fi
if [ -n "$image_name" ]; then
  deploy_image="$(kc get deployment "$release" -n "$ns" -o jsonpath='{.spec.template.spec.containers[0].image}')"
  if [ "$deploy_image" = "$image_name" ]; then
    pass "the archive names the chart's default image: $deploy_image (image.repository:appVersion)"
  else
    fail "the archive names $image_name, the chart's Deployment $deploy_image"
  fi
fi

# ---- RBAC, asked of the API server -------------------------------------------------

as="system:serviceaccount:$ns:$sa"
can() { # can yes|no ARGS... (kubectl auth can-i ARGS --as the ServiceAccount)
  local want="$1" got; shift
  got="$(kc auth can-i "$@" --as="$as" 2>/dev/null)"
  got="${got:-no}"
  if [ "$got" = "$want" ]; then pass "can-i $*: $got"; else fail "can-i $*: expected $want, got $got"; fi
}
# What the controller does (see templates/rbac.yaml) ...
can yes create orders.computenest.dev -n x
can yes patch orders.computenest.dev --subresource=status -n x
can yes list serviceinstances.computenest.dev -A
can yes patch serviceinstances.computenest.dev --subresource=status -n x
can yes create distributiongrants.computenest.dev -n x
can yes list accessrequests.computenest.dev -A
can yes patch accessrequests.computenest.dev --subresource=status -n x
can yes create roles.rbac.authorization.k8s.io -n x
can yes create rolebindings.rbac.authorization.k8s.io -n x
can yes list roles.rbac.authorization.k8s.io -A
can yes list rolebindings.rbac.authorization.k8s.io -A
can yes get accessrequests.computenest.dev -n x
# The grantable set (access.grantableRules), held by the controller itself so
# that it can write Roles with it without "escalate" ...
can yes get pods --subresource=log -n x
can yes list deployments.apps -n x
can yes patch deployments.apps --subresource=scale -n x
can yes delete pods -n x
can yes patch secrets -n x
can yes create deployments.apps -n x
can yes create namespaces
can yes delete namespaces
can yes create events.events.k8s.io -n x
can yes get leases.coordination.k8s.io/"$lease_name" -n "$lease_ns"
can yes patch leases.coordination.k8s.io/"$lease_name" -n "$lease_ns"
# ... and what it never needs.
can no update orders.computenest.dev -n x
can no delete orders.computenest.dev -n x
can no update services.computenest.dev -n x
can no patch derivedservices.computenest.dev -n x
can no patch distributiongrants.computenest.dev -n x
can no get secrets -n x
can no list secrets -A
can no create clusterroles.rbac.authorization.k8s.io
can no create clusterrolebindings.rbac.authorization.k8s.io
# ... and never "escalate", nor "bind" but on the operator ClusterRole (checked
# by name below): no bug can grant more than it holds, or than that role.
can no escalate roles.rbac.authorization.k8s.io -n x
can no bind roles.rbac.authorization.k8s.io -n x
can no escalate clusterroles.rbac.authorization.k8s.io
can no bind clusterroles.rbac.authorization.k8s.io
can no create pods --subresource=exec -n x
can no create serviceaccounts --subresource=token -n x
can no create endpoints -n x
can no patch leases.coordination.k8s.io/other -n "$lease_ns"
can no get leases.coordination.k8s.io/"$lease_name" -n kube-system

# ---- tenancy: the controller's part ------------------------------------------------

operator_role="$(kc get deployment "$release" -n "$ns" -o jsonpath='{.spec.template.spec.containers[0].env[?(@.name=="COMPUTENEST_TENANCY_POLICY")].value}' |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["operatorClusterRole"])' 2>/dev/null)"
if [ -n "$operator_role" ] && kc get clusterrole "$operator_role" >/dev/null 2>&1; then
  pass "the Deployment's tenancy policy names the operator ClusterRole $operator_role, which the chart ships"
else
  fail "the Deployment's tenancy policy names operator ClusterRole '$operator_role', which does not exist"
  operator_role=computenest-operator
fi
# "bind" on the operator ClusterRole alone: the controller writes the
# RoleBinding computenest-operators without holding the operators' rights ...
can yes bind clusterroles.rbac.authorization.k8s.io/"$operator_role"
can no bind clusterroles.rbac.authorization.k8s.io/cluster-admin
can no bind clusterroles.rbac.authorization.k8s.io/admin
can no bind clusterroles.rbac.authorization.k8s.io/edit
can no escalate clusterroles.rbac.authorization.k8s.io/"$operator_role"
can no impersonate users
# ... the ResourceQuota, LimitRange and NetworkPolicy computenest-tenancy:
# server-side apply, and the label-selected prune (list, then delete), by
# name: no other quota or limit range (the platform's own) may be touched ...
for kind in resourcequotas limitranges networkpolicies.networking.k8s.io; do
  can yes create "$kind" -n x
  can yes list "$kind" -n x
  # Drift: watched (metadata, label-selected) and read when they change.
  can yes watch "$kind" -A
  can yes get "$kind"/computenest-tenancy -n x
  can yes patch "$kind"/computenest-tenancy -n x
  can yes delete "$kind"/computenest-tenancy -n x
done
can no patch resourcequotas/platform-quota -n x
can no delete resourcequotas/platform-quota -n x
can no delete limitranges/platform-limits -n x
can no deletecollection resourcequotas -n x
# ... and namespaces: the seller's annotations and the buyer's labels (get),
# a customer's managed namespaces counted by label (list), the labels of its
# own managed namespaces, Pod Security's included (patch).
can yes get namespaces/s3-isv -n s3-isv
can yes list namespaces
can yes patch namespaces

for n in chart-op-a chart-op-b chart-tenant; do
  kc create namespace "$n" --dry-run=client -o yaml | kc apply -f - >/dev/null
done
# What the API server really does with the ServiceAccount's requests (the
# escalation check of a RoleBinding is made on the object, not by can-i).
bind_as_sa() { # bind_as_sa NAMESPACE CLUSTERROLE: a RoleBinding written as the controller
  kc create rolebinding "chart-test-${2//:/-}" --clusterrole="$2" --user=chart-test-operator \
    -n "$1" --as="$as" -o name
}
check "the ServiceAccount writes a RoleBinding to $operator_role (chart-op-a, user chart-test-operator)" \
  bind_as_sa chart-op-a "$operator_role"
refused_as_sa() { ! bind_as_sa "$@"; }
# Not admin, edit or view by name: they are aggregated, and a control plane
# without the clusterrole-aggregation controller (hack/controlplane.sh) leaves
# them empty, which anyone may bind. system:aggregate-to-edit holds the
# built-in edit role's own rules (exec, Secrets, workload writes).
check "the ServiceAccount cannot write a RoleBinding to system:aggregate-to-edit (escalation refused)" \
  refused_as_sa chart-op-a system:aggregate-to-edit
check "the ServiceAccount cannot write a RoleBinding to cluster-admin (escalation refused)" refused_as_sa chart-op-a cluster-admin
cat >"$work/tenancy-objects.yaml" <<'EOF'
apiVersion: v1
kind: ResourceQuota
metadata: { name: computenest-tenancy, namespace: chart-op-a, labels: { app.kubernetes.io/managed-by: computenest-controller } }
spec: { hard: { pods: "20", requests.cpu: "2" } }
---
apiVersion: v1
kind: LimitRange
metadata: { name: computenest-tenancy, namespace: chart-op-a, labels: { app.kubernetes.io/managed-by: computenest-controller } }
spec: { limits: [ { type: Container, defaultRequest: { cpu: 100m }, default: { cpu: 500m } } ] }
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: computenest-tenancy, namespace: chart-op-a, labels: { app.kubernetes.io/managed-by: computenest-controller } }
spec: { podSelector: {}, policyTypes: [Ingress], ingress: [ { from: [ { podSelector: {} } ] } ] }
EOF
check "the ServiceAccount applies a ResourceQuota, LimitRange and NetworkPolicy (server-side)" \
  kc apply --server-side --field-manager=computenest-chart-test -f "$work/tenancy-objects.yaml" --as="$as"
listed_as_sa() {
  local n
  n="$(kc get resourcequotas,limitranges,networkpolicies.networking.k8s.io -n chart-op-a \
    -l app.kubernetes.io/managed-by=computenest-controller -o name --as="$as" | grep -c .)"
  [ "$n" = 3 ] || { echo "listed $n objects, expected 3"; return 1; }
}
check "the ServiceAccount lists them by label (the prune)" listed_as_sa

# ---- tenancy: tenants never write namespaces ---------------------------------------

# Each tenant ClusterRole bound to a user of its own in chart-tenant, as the
# README tells a platform to; and the built-in admin role, which the -edit
# roles aggregate into, as its parts system:aggregate-to-{admin,edit,view}
# (this control plane may run no aggregation controller: admin is then empty).
tenant_users=()
for role in computenest-isv-edit computenest-isv-view computenest-distributor-edit \
  computenest-distributor-view computenest-customer-edit computenest-customer-view; do
  kc create rolebinding "chart-test-$role" --clusterrole="$role" --user="chart-test-$role" \
    -n chart-tenant --dry-run=client -o yaml | kc apply -f - >/dev/null
  tenant_users+=("chart-test-$role")
done
for part in admin edit view; do
  kc create rolebinding "chart-test-admin-$part" --clusterrole="system:aggregate-to-$part" \
    --user=chart-test-admin -n chart-tenant --dry-run=client -o yaml | kc apply -f - >/dev/null
done
tenant_users+=(chart-test-admin)
user_can() { # user_can yes|no USER ARGS... (kubectl auth can-i ARGS --as USER)
  local want="$1" user="$2" got; shift 2
  got="$(kc auth can-i "$@" --as="$user" 2>/dev/null)"
  got="${got:-no}"
  if [ "$got" = "$want" ]; then pass "$user can-i $*: $got"; else fail "$user can-i $*: expected $want, got $got"; fi
}
# The bindings take effect (else the "no" below would prove nothing) ...
user_can yes chart-test-computenest-isv-edit create services.computenest.dev -n chart-tenant
user_can yes chart-test-computenest-customer-edit create serviceinstances.computenest.dev -n chart-tenant
user_can yes chart-test-admin create rolebindings.rbac.authorization.k8s.io -n chart-tenant
# ... and a binding in a namespace does reach the Namespace object itself (a
# request for namespaces/N carries namespace N): a control that the checks
# below would see a role granting it.
kc create clusterrole chart-test-namespace-patch --verb=patch --resource=namespaces \
  --dry-run=client -o yaml | kc apply -f - >/dev/null
kc create rolebinding chart-test-namespace-patch --clusterrole=chart-test-namespace-patch \
  --user=chart-test-namespace-patch -n chart-tenant --dry-run=client -o yaml | kc apply -f - >/dev/null
user_can yes chart-test-namespace-patch patch namespaces/chart-tenant -n chart-tenant
# Namespace labels and annotations are the platform's decisions (sales policy
# selectors, operator users and groups, Pod Security): no tenant role writes
# its own namespace, or any other.
for user in "${tenant_users[@]}"; do
  user_can no "$user" patch namespaces/chart-tenant -n chart-tenant
  user_can no "$user" update namespaces/chart-tenant -n chart-tenant
  user_can no "$user" patch namespaces
done

# ---- tenancy: the operator role, bound in one namespace ----------------------------

op="chart-test-operator"
user_can yes "$op" get pods -n chart-op-a
user_can yes "$op" get pods --subresource=log -n chart-op-a
user_can yes "$op" get secrets -n chart-op-a
user_can yes "$op" patch deployments.apps -n chart-op-a
user_can yes "$op" patch statefulsets.apps --subresource=scale -n chart-op-a
user_can yes "$op" patch configmaps -n chart-op-a
user_can yes "$op" delete pods -n chart-op-a
user_can yes "$op" get resourcequotas -n chart-op-a
# Only there.
user_can no "$op" get pods -n chart-op-b
user_can no "$op" patch deployments.apps -n chart-op-b
user_can no "$op" get secrets -n chart-op-b
# Never what would grant more or undo the platform's policy.
user_can no "$op" create rolebindings.rbac.authorization.k8s.io -n chart-op-a
user_can no "$op" create roles.rbac.authorization.k8s.io -n chart-op-a
user_can no "$op" patch namespaces/chart-op-a -n chart-op-a
user_can no "$op" delete resourcequotas -n chart-op-a
user_can no "$op" patch resourcequotas -n chart-op-a
user_can no "$op" delete limitranges -n chart-op-a
user_can no "$op" delete networkpolicies.networking.k8s.io -n chart-op-a
user_can no "$op" bind clusterroles.rbac.authorization.k8s.io/"$operator_role"
user_can no "$op" impersonate users
user_can no "$op" create pods --subresource=exec -n chart-op-a
refused_as_operator() { ! kc delete resourcequota computenest-tenancy -n chart-op-a --wait=false --as="$op"; }
check "$op cannot delete the ResourceQuota computenest-tenancy (a real request)" refused_as_operator
deleted_as_sa() {
  kc delete resourcequotas,limitranges,networkpolicies.networking.k8s.io computenest-tenancy \
    -n chart-op-a --wait=false --as="$as"
}
check "the ServiceAccount deletes them (the prune)" deleted_as_sa

# ---- two replicas with the ServiceAccount's token -----------------------------------

token="$(kc create token "$sa" -n "$ns" --duration=1h 2>"$work/token.err")" || { fail "kubectl create token $sa"; cat "$work/token.err"; exit 1; }
server="$(kc config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')"
ca="$(kc config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')"
sa_kubeconfig="$work/sa.kubeconfig"
umask 077
cat >"$sa_kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: chart-test
  cluster:
    server: $server
    certificate-authority-data: $ca
users:
- name: $sa
  user:
    token: $token
contexts:
- name: chart-test
  context: {cluster: chart-test, user: $sa}
current-context: chart-test
EOF
umask 022
whoami="$(KUBECONFIG="$sa_kubeconfig" kc auth whoami -o jsonpath='{.status.userInfo.username}' 2>&1)"
if [ "$whoami" = "$as" ]; then pass "the token authenticates as $as"; else fail "the token authenticates as '$whoami', not $as"; fi

# The Deployment's environment, as the pods would get it (POD_NAME is set per replica).
mapfile -t deploy_env < <(kc get deployment "$release" -n "$ns" -o json | python3 -c '
import json, sys
c = json.load(sys.stdin)["spec"]["template"]["spec"]["containers"][0]
for e in c.get("env", []):
    if "value" in e:
        print(e["name"] + "=" + e["value"])
')
if [ "${#deploy_env[@]}" -gt 0 ]; then pass "the Deployment's environment: ${deploy_env[*]}"; else fail "no environment in the Deployment"; fi

declare -A pid_of addr_of what_of
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
chroot_cmd="$(command -v chroot || true)"
start_replica() { # start_replica ID [image]
  local id="$1" addr flags
  addr="127.0.0.1:$(free_port)"
  # Only the Deployment's environment and the ServiceAccount's kubeconfig;
  # the flags repeat what the chart sets, so the leader election is explicit.
  flags=(run --leader-election=true --lease-name "$lease_name" --lease-namespace "$lease_ns"
    --health-addr "$addr" --identity "$id")
  if [ "${2:-}" != image ]; then
    env -i PATH="$PATH" HOME="$HOME" "${deploy_env[@]}" POD_NAME="$id" KUBECONFIG="$sa_kubeconfig" \
      "$bin" "${flags[@]}" --exit-with-parent "$$" >"$work/$id.log" 2>&1 &
    what_of[$id]="${bin#"$root"/}"
  elif [ "$(id -u)" = 0 ] && [ -n "$chroot_cmd" ]; then
    # As in a container: the image's files only (no CA bundle, no /proc), its
    # user, the environment a runtime gives it (PATH, HOME of /etc/passwd),
    # the kubeconfig where a volume would put it.
    install -m 0600 -o "${image_user%%:*}" -g "${image_user##*:}" "$sa_kubeconfig" "$rootfs/tmp/kubeconfig"
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/home/nonroot \
      "${deploy_env[@]}" POD_NAME="$id" KUBECONFIG=/tmp/kubeconfig \
      "$chroot_cmd" --userspec="$image_user" "$rootfs" "$image_entry" "${flags[@]}" >"$work/$id.log" 2>&1 &
    local child=$! parent=$$
    what_of[$id]="the image's $image_entry, chroot into its root filesystem as $image_user"
    pid_of[$id]=$child
    addr_of[$id]="$addr"
    pids+=("$child")
    # --exit-with-parent watches /proc, which the chroot lacks: a watcher ends
    # the replica if this script is killed.
    (
      while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 1; done
      kill -KILL "$child" 2>/dev/null
    ) >/dev/null 2>&1 </dev/null &
    pids+=("$!")
    return 0
  else
    env -i PATH="$PATH" HOME="$HOME" "${deploy_env[@]}" POD_NAME="$id" KUBECONFIG="$sa_kubeconfig" \
      "$image_bin" "${flags[@]}" --exit-with-parent "$$" >"$work/$id.log" 2>&1 &
    what_of[$id]="the image's $image_entry, from its unpacked root filesystem"
  fi
  pid_of[$id]=$!
  addr_of[$id]="$addr"
  pids+=("$!")
}
reconciles() { curl -fsS --max-time 2 "http://${addr_of[$1]}/metrics" | awk '$1 ~ /^computenest_reconciles_total/ { s += $2 } END { print s + 0 }'; }
metric() { curl -fsS --max-time 2 "http://${addr_of[$1]}/metrics" 2>/dev/null | awk -v m="$2" '$1 == m { print $2 }'; }
holder() { kc get lease "$lease_name" -n "$lease_ns" -o jsonpath='{.spec.holderIdentity}' 2>/dev/null; }
# wait_until SECONDS command...: polls every 0.2 s.
wait_until() {
  local limit="$1"; shift
  local end; end="$(awk -v a="$(now)" -v l="$limit" 'BEGIN { printf "%.3f", a + l }')"
  until "$@"; do
    awk -v e="$end" -v n="$(now)" 'BEGIN { exit !(n > e) }' && return 1
    sleep 0.2
  done
}
ready_ok() { curl -fsS --max-time 2 "http://${addr_of[$1]}/readyz" >/dev/null 2>&1; }
health_ok() { curl -fsS --max-time 2 "http://${addr_of[$1]}/healthz" >/dev/null 2>&1; }
# The distinct permissions refused to the replicas, from their logs.
forbidden() {
  cat "$work"/replica-*.log 2>/dev/null | python3 -c "$forbidden_py"
}
read -r -d '' forbidden_py <<'PY' || true
import re, sys
pat = re.compile(r'cannot (\w+) resource "([^"]+)" in API group "([^"]*)"( at the cluster scope)?')
seen = {}
for line in sys.stdin:
    # The logs are JSON lines: the API server's message is quoted once or twice.
    for m in pat.finditer(line.replace("\\", "").replace('\\"', '"')):
        k = "cannot %s %s%s%s" % (m.group(1), m.group(2), "." + m.group(3) if m.group(3) else "",
                                  " (cluster-wide)" if m.group(4) else "")
        seen[k] = seen.get(k, 0) + 1
for k, n in seen.items():
    print("%s (%d times)" % (k, n))
PY
has_holder() { local h; h="$(holder)"; [ "$h" = replica-a ] || [ "$h" = replica-b ]; }

# replica-a is the image's binary (unless CHART_TEST_IMAGE=0 or the image failed).
if [ -n "$image_bin" ]; then start_replica replica-a image; else start_replica replica-a; fi
start_replica replica-b
for id in replica-a replica-b; do
  if wait_until "$timeout" health_ok "$id"; then pass "$id runs and answers /healthz (pid ${pid_of[$id]}; ${what_of[$id]})"; else fail "$id never answered /healthz; log $work/$id.log"; tail -n 20 "$work/$id.log" | indent; exit 1; fi
done
if wait_until "$timeout" has_holder; then pass "Lease $lease_ns/$lease_name is held by $(holder)"; else fail "nobody took Lease $lease_ns/$lease_name within ${timeout}s (holder '$(holder)')"; exit 1; fi
leader="$(holder)"
if [ "$leader" = replica-a ]; then standby=replica-b; else standby=replica-a; fi
if ready_ok "$standby"; then pass "the standby $standby is ready (/readyz 200 while waiting)"; else fail "the standby $standby does not answer /readyz 200"; fi
# The leader is ready once every cache has listed its kind: with too little
# RBAC a list is refused and it never is.
if wait_until "$timeout" ready_ok "$leader"; then
  pass "the leader $leader is ready (caches synced with the ServiceAccount's permissions)"
else
  fail "the leader $leader did not become ready within ${timeout}s; refused requests in its log:"
  forbidden | indent
  exit 1
fi

# ---- examples deploy under the chart's RBAC -----------------------------------------

for f in scenario2 scenario3; do
  check "kubectl apply examples/$f/all.yaml" kc apply --server-side -f "$root/examples/$f/all.yaml"
done
check "scenario2 instance Ready" kc wait --for=condition=Ready serviceinstance/source -n s2-customer --timeout="${timeout}s"
check "scenario3 instance Ready" kc wait --for=condition=Ready serviceinstance/reports -n s3-customer --timeout="${timeout}s"
phases="$(kc get serviceinstances.computenest.dev -n s2-customer source -o jsonpath='{.status.phase}') $(kc get serviceinstances.computenest.dev -n s3-customer reports -o jsonpath='{.status.phase}')"
if [ "$phases" = "Deployed Deployed" ]; then pass "both instances Deployed"; else fail "instance phases are '$phases', expected Deployed Deployed"; fi
orders_of() { kc get serviceinstances.computenest.dev -n s3-customer "$1" -o jsonpath='{range .status.billing.orders[*]}{@}{"\n"}{end}' 2>/dev/null; }
check_orders() { # check_orders INSTANCE
  local list n o missing=""
  list="$(orders_of "$1")"
  n="$(grep -c . <<<"$list")"
  for o in $list; do kc get orders.computenest.dev -n "${o%%/*}" "${o#*/}" >/dev/null 2>&1 || missing="$missing $o"; done
  if [ "$n" = 2 ] && [ -z "$missing" ]; then
    pass "scenario3 $1: 2 Orders exist ($(paste -sd' ' <<<"$list"))"
  else
    fail "scenario3 $1: expected 2 Orders in status.billing.orders, all existing; got $n${missing:+, missing:$missing}"
  fi
}
check_orders reports

# ---- an access request is granted under the chart's RBAC (no escalate, no bind) --------

target3="$(kc get serviceinstances.computenest.dev -n s3-customer reports -o jsonpath='{.status.owner.targetNamespace}')"
cat >"$work/access-request.yaml" <<'EOF'
apiVersion: computenest.dev/v1alpha1
kind: AccessRequest
metadata: { name: chart-test, namespace: s3-customer }
spec:
  instanceName: reports
  subject: { kind: User, name: chart-test-jane }
  rules:
    - { apiGroups: [""], resources: [pods, pods/log], verbs: [get, list] }
    - { apiGroups: [apps], resources: [deployments/scale], verbs: [patch] }
    - { apiGroups: [""], resources: [secrets], verbs: [get] }
  durationSeconds: 600
  reason: chart test
EOF
check "apply an AccessRequest in s3-customer" kc apply --server-side -f "$work/access-request.yaml"
digest_of() { kc get accessrequests.computenest.dev -n s3-customer chart-test -o jsonpath='{.status.requestDigest}' 2>/dev/null; }
has_digest() { [ -n "$(digest_of)" ]; }
if wait_until "$timeout" has_digest; then pass "the AccessRequest has status.requestDigest"; else fail "no status.requestDigest on the AccessRequest"; fi
req_uid="$(kc get accessrequests.computenest.dev -n s3-customer chart-test -o jsonpath='{.metadata.uid}')"
cat >"$work/access-approval.yaml" <<EOF
apiVersion: computenest.dev/v1alpha1
kind: AccessApproval
metadata: { name: chart-test, namespace: s3-isv }
spec:
  requestNamespace: s3-customer
  requestName: chart-test
  requestUID: "$req_uid"
  requestDigest: "$(digest_of)"
  decision: Approved
  reason: chart test
EOF
check "the owner (s3-isv) approves it, naming its UID and digest" kc apply --server-side -f "$work/access-approval.yaml"
check "the AccessRequest is Active (its Role written with the ServiceAccount's own permissions)" \
  kc wait --for=condition=Ready accessrequests.computenest.dev/chart-test -n s3-customer --timeout="${timeout}s"
access_msg="$(kc get accessrequests.computenest.dev -n s3-customer chart-test -o jsonpath='{.status.conditions[?(@.type=="Ready")].message}')"
case "$access_msg" in
  *"platform does not let the controller grant them"*"get secrets"*) pass "get secrets is left out: outside the grantable set" ;;
  *) fail "the Ready message does not say that get secrets is outside the grantable set: $access_msg" ;;
esac
subject_can() { # subject_can yes|no ARGS...
  local want="$1" got; shift
  got="$(kc auth can-i "$@" -n "$target3" --as=chart-test-jane 2>/dev/null)"
  got="${got:-no}"
  if [ "$got" = "$want" ]; then pass "the subject can-i $* in $target3: $got"; else fail "the subject can-i $* in $target3: expected $want, got $got"; fi
}
subject_can yes get pods --subresource=log
subject_can yes patch deployments.apps --subresource=scale
subject_can no get secrets
check "the AccessRequest is deleted" kc delete accessrequests.computenest.dev -n s3-customer chart-test
no_grant() { [ -z "$(kc get roles.rbac.authorization.k8s.io -n "$target3" -l "computenest.dev/access-request-uid=$req_uid" -o name 2>/dev/null)" ]; }
if wait_until "$timeout" no_grant; then pass "its Role is removed with it"; else fail "the Role of the deleted AccessRequest is still in $target3"; fi
order_ready="$(kc get orders.computenest.dev -n s3-distributor -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{end}')"
if [ "$order_ready" = True ]; then pass "the Order in s3-distributor is Ready"; else fail "the Order in s3-distributor has Ready '$order_ready' (status not written: RBAC for orders/status?)"; fi

# ---- one leader ----------------------------------------------------------------------

ml="$(metric "$leader" computenest_leader)"; ms="$(metric "$standby" computenest_leader)"
if [ "$ml" = 1 ] && [ "$ms" = 0 ]; then
  pass "exactly one leader: $leader (computenest_leader 1), $standby (computenest_leader 0)"
else
  fail "computenest_leader is '$ml' on the holder $leader and '$ms' on $standby; expected 1 and 0"
fi
reconciles_standby="$(reconciles "$standby")"
reconciles_leader="$(reconciles "$leader")"
if [ "$reconciles_standby" = 0 ]; then pass "the standby reconciled nothing"; else fail "the standby $standby counts $reconciles_standby reconciles"; fi

# ---- the leader dies -------------------------------------------------------------------

t_kill="$(now)"
kill -KILL "${pid_of[$leader]}"
wait "${pid_of[$leader]}" 2>/dev/null
new_leader() { [ "$(holder)" = "$standby" ]; }
limit=$((lease_duration + 10))
if wait_until "$limit" new_leader; then
  takeover="$(since "$t_kill")"
  if awk -v t="$takeover" -v l="$lease_duration" 'BEGIN { exit !(t <= l + 5) }'; then
    pass "after SIGKILL of $leader, $standby holds the Lease in ${takeover}s (lease duration ${lease_duration}s)"
  else
    fail "after SIGKILL of $leader, $standby took ${takeover}s to take the Lease (more than ${lease_duration}s + 5s)"
  fi
else
  takeover="never"
  fail "after SIGKILL of $leader, $standby did not take the Lease within ${limit}s (holder '$(holder)')"
fi
leads() { [ "$(metric "$standby" computenest_leader)" = 1 ]; }
if wait_until 10 leads; then pass "$standby reports computenest_leader 1"; else fail "$standby does not report computenest_leader 1"; fi

cat >"$work/reports-2.yaml" <<'EOF'
apiVersion: computenest.dev/v1alpha1
kind: ServiceInstance
metadata: { name: reports-2, namespace: s3-customer }
spec:
  serviceRef: { kind: DerivedService, namespace: s3-distributor, name: analytics-plus }
  plan: enterprise
EOF
check "apply a new scenario3 instance reports-2" kc apply --server-side -f "$work/reports-2.yaml"
check "the new leader deploys reports-2" kc wait --for=condition=Ready serviceinstance/reports-2 -n s3-customer --timeout="${timeout}s"
check_orders reports-2

# ---- the image's binary led and deployed ----------------------------------------------

if [ -n "$image_bin" ]; then
  # replica-a led first (scenario2 and scenario3 were deployed while the
  # standby reconciled nothing) or took over after the SIGKILL (reports-2).
  if [ "$leader" = replica-a ]; then
    when="as the first leader" insts="s2-customer/source s3-customer/reports" image_reconciles="$reconciles_leader"
  else
    when="after the SIGKILL of $leader" insts="s3-customer/reports-2" image_reconciles="$(reconciles replica-a)"
  fi
  deployed_by_image() {
    local i phase
    [ "$leader" = replica-a ] || [ "$takeover" != never ] || { echo "replica-a never held the Lease"; return 1; }
    [ "${image_reconciles:-0}" -gt 0 ] || { echo "replica-a counts no reconciles"; return 1; }
    for i in $insts; do
      phase="$(kc get serviceinstances.computenest.dev -n "${i%%/*}" "${i#*/}" -o jsonpath='{.status.phase}')"
      [ "$phase" = Deployed ] || { echo "$i is $phase, not Deployed"; return 1; }
    done
  }
  check "the image's binary (replica-a) led $when and deployed $insts ($image_reconciles reconciles)" deployed_by_image
fi

# ---- the last replica stops --------------------------------------------------------------

kill -TERM "${pid_of[$standby]}"
exited() { ! kill -0 "${pid_of[$standby]}" 2>/dev/null; }
if wait_until 15 exited; then
  wait "${pid_of[$standby]}"; code=$?
  if [ "$code" = 0 ]; then pass "$standby exits 0 on SIGTERM"; else fail "$standby exited $code on SIGTERM"; fi
else
  fail "$standby did not exit within 15 s of SIGTERM"
fi
renew_time() { kc get lease "$lease_name" -n "$lease_ns" -o jsonpath='{.spec.renewTime}'; }
h="$(holder)"
if [ -z "$h" ]; then
  pass "the Lease was released on SIGTERM (holderIdentity empty)"
else
  # Not released; at least the renewals must stop (a successor then waits for expiry).
  r1="$(renew_time)"; sleep $((lease_duration / 3 + 2)); r2="$(renew_time)"
  if [ "$r1" = "$r2" ]; then
    pass "after SIGTERM the Lease is no longer renewed (still names $h until it expires; not released)"
  else
    fail "the Lease is still renewed after $standby exited (holder $h, renewTime $r1 -> $r2)"
  fi
fi

# ---- the logs ------------------------------------------------------------------------------

denied="$(forbidden)"
if [ -z "$denied" ]; then
  pass "no request of either replica was forbidden"
else
  fail "the API server refused requests of the ServiceAccount (the chart's RBAC is too narrow):"
  indent <<<"$denied"
fi
echo "takeover: ${takeover}s after SIGKILL (lease duration ${lease_duration}s)"
