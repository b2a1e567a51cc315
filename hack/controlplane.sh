#!/usr/bin/env bash
# Runs a throwaway Kubernetes control plane on free loopback ports, for tests,
# the demo and benchmarks: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, and kwok (sigs.k8s.io/kwok, a kubelet simulator) with a few
# simulated Nodes, so that pods are scheduled and become Running and Ready
# (nothing is executed: no container runtime, no images). Binaries come from
# hack/build-controlplane.sh and hack/build-kwok.sh (cached under
# ~/.cache/computenest; the first run builds them, 10-25 minutes on 2 cores).
#
# Usage:
#   hack/controlplane.sh start  [DIR]   start (or reuse) one; prints the kubeconfig path last on stdout
#   hack/controlplane.sh stop   [DIR]   stop it and delete DIR (success if nothing runs)
#   hack/controlplane.sh status [DIR]   report processes and /readyz (exit 0 only if all healthy)
#   hack/controlplane.sh kubectl [DIR] -- ARGS...   run the built kubectl against it
#
# DIR defaults to $COMPUTENEST_CP_DIR, else /tmp/computenest-cp-$USER. It holds
# everything: pki/, etcd/, logs/, *.pid, kubeconfig, and env (source it to get
# KUBECONFIG, KUBECTL, CP_BIN_DIR, CP_APISERVER_URL).
#
# Environment knobs:
#   CP_READY_TIMEOUT=60         seconds to wait for each component to become ready
#   CP_APISERVER_EXTRA_ARGS=""  extra kube-apiserver flags (word-split)
#   CP_CONTROLLERS=...          kube-controller-manager --controllers value
#   CP_KCM_EXTRA_ARGS=""        extra kube-controller-manager flags (word-split)
#   CP_PODS=1                   0: the bare control plane (no kube-scheduler, no kwok, no
#                               Nodes: pods are created but never start)
#   CP_KWOK_NODES=3             simulated Nodes (kwok-node-0, ...), each with
#   CP_KWOK_NODE_CPU=128 CP_KWOK_NODE_MEMORY=512Gi CP_KWOK_NODE_PODS=1100
#                               allocatable (3 Nodes hold 3000 pods of the default
#                               request of a managed namespace, 100m CPU and 128Mi)
#   CP_SCHEDULER_EXTRA_ARGS=""  extra kube-scheduler flags (word-split)
#   CP_KWOK_EXTRA_ARGS=""       extra kwok flags (word-split)
#   CP_ETCD_PORT / CP_APISERVER_PORT / CP_KCM_PORT / CP_SCHEDULER_PORT / CP_KWOK_PORT
#                               fixed ports instead of free ones
#   CP_KEEP_ON_FAILURE=1        on a failed start, kill the processes but keep DIR (logs)
#   CP_AUDIT_POLICY=FILE        audit with this policy to DIR/logs/audit.log (JSON lines,
#                               batch mode with a large buffer; see audit_args)
#   CP_EXTRA_CLIENTS="a b"      also issue client certificates (group system:masters) for users
#                               a, b and write DIR/kubeconfig-a, DIR/kubeconfig-b
#
# Pods (CP_PODS=1): kube-scheduler binds them to the simulated Nodes, and kwok
# plays kwok.x-k8s.io Stage objects on them: its default Stages make a pod
# Running and Ready once bound, a Job's pod Succeeded, and a deleted pod gone.
# kube-controller-manager runs the workload controllers (Deployment,
# ReplicaSet, StatefulSet, DaemonSet, Job, CronJob, endpoints, quota, node
# lifecycle, ...), so workloads progress as in a real cluster. To make a pod
# unhealthy, label it (in the pod template):
#   computenest.dev/simulate: never-ready   Running but never Ready
#   computenest.dev/simulate: fail          restartPolicy Never/OnFailure: ends Failed
#                                           (exit code 1); Always: crash-loops, never Ready
# (Stages in hack/kwok/stages.yaml). More Stages can be added at run time with
# kubectl apply (kubectl get stages lists them). The Nodes carry the annotation
# kwok.x-k8s.io/node=fake (what kwok manages) and the label type=kwok, and no
# taint, so ordinary pods schedule on them.
set -Eeuo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
me="controlplane"
marker=".computenest-controlplane"
components=(kwok kube-scheduler kube-controller-manager kube-apiserver etcd)   # stop order
# The first five are what the controller itself needs; the rest make workloads
# progress as in a real cluster once pods run (node-lifecycle-controller removes
# the not-ready taint the API server puts on a new Node; resourcequota-controller
# computes quota usage, without which no pod is admitted into a namespace with a
# ResourceQuota, as every managed namespace has).
default_controllers="garbage-collector-controller,namespace-controller,serviceaccount-token-controller,deployment-controller,replicaset-controller"
default_controllers+=",statefulset-controller,daemonset-controller,job-controller,cronjob-controller,ttl-after-finished-controller"
default_controllers+=",endpoints-controller,endpointslice-controller,endpointslice-mirroring-controller,disruption-controller"
default_controllers+=",resourcequota-controller,node-lifecycle-controller,pod-garbage-collector-controller,replicationcontroller-controller"
# Binds claims to PersistentVolumes made by hand (there is no provisioner):
# a test or a demo that needs a Bound claim creates a PV for it.
default_controllers+=",persistentvolume-binder-controller"
ready_timeout="${CP_READY_TIMEOUT:-60}"
port_tries=5

say() { echo "$me: $*" >&2; }

usage() {
  sed -n '/^# Usage:/,/^#$/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
}

# Resolve DIR to an absolute path without a trailing slash, so "$dir/" is a
# reliable substring of every command line we start (used to find strays).
resolve_dir() {
  local d="${1:-${COMPUTENEST_CP_DIR:-/tmp/computenest-cp-${USER:-$(id -un)}}}"
  d="$(realpath -m -- "$d")"
  case "$d" in
    / | "$HOME" | /tmp | /root | /home | /usr | /etc | /var)
      say "refusing to use $d as a state directory (it gets deleted on stop); pass a dedicated DIR."
      exit 2 ;;
  esac
  echo "$d"
}

# A pid counts as ours only if it is alive, not a zombie (PID 1 in containers
# may never reap), and its command line mentions our state directory.
running() {
  local pid="$1" stat
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [ "${stat%% *}" != Z ]
}
alive() {
  local pid="$1" stat
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [ "${stat%% *}" != Z ] || return 1
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$dir/"
}

pid_of() { local f="$dir/$1.pid"; if [ -f "$f" ]; then cat "$f"; fi; }

# Every process started from one of our binaries (or only from binary $1)
# whose command line mentions $dir/, whether or not its pid file survived.
strays() {
  local only="${1:-}" p args exe
  for p in /proc/[0-9]*; do
    args="$(tr '\0' ' ' 2>/dev/null <"$p/cmdline")" || continue
    exe="${args%% *}"; exe="${exe##*/}"
    case "$exe" in etcd | kube-apiserver | kube-controller-manager | kube-scheduler | kwok) ;; *) continue ;; esac
    [ -z "$only" ] || [ "$exe" = "$only" ] || continue
    case "$args" in *"$dir/"*) alive "${p#/proc/}" && echo "${p#/proc/}" ;; esac
  done
  return 0
}

terminate() {
  local name="$1" pid="$2" i
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do alive "$pid" || return 0; sleep 0.1; done
  say "$name (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do alive "$pid" || return 0; sleep 0.1; done
  return 1
}

# Stops everything under $dir; with keep=1 leaves the directory (for logs).
stop_all() {
  local keep="${1:-0}" name pid
  # In order, each component with its strays (processes whose pid file is
  # gone) before the next: the apiserver hangs on shutdown once etcd is gone,
  # and for 10 s while kwok or the scheduler still talk to it.
  for name in "${components[@]}"; do
    pid="$(pid_of "$name")"
    [ -z "$pid" ] || terminate "$name" "$pid" || true
    for pid in $(strays "$name"); do terminate "$name" "$pid" || true; done
  done
  if [ -n "$(strays)" ]; then
    say "could not stop processes $(strays | tr '\n' ' ')under $dir; kill them by pid and retry."
    return 1
  fi
  if [ "$keep" = 1 ]; then
    rm -f "$dir"/*.pid
  elif [ -d "$dir" ]; then
    rm -rf -- "$dir"
  fi
}

# Refuse to delete or fill a directory we did not create.
check_ours() {
  if [ -d "$dir" ] && [ ! -e "$dir/$marker" ] && [ -n "$(ls -A -- "$dir")" ]; then
    say "$dir exists and is not a control-plane state directory; pass another DIR or remove it yourself."
    reported=1
    exit 2
  fi
}

cmd_stop() {
  check_ours
  if [ ! -e "$dir" ] && [ -z "$(strays)" ]; then
    say "nothing running in $dir"
    return 0
  fi
  stop_all 0 || exit 1
  say "stopped; removed $dir"
}

# /readyz with the admin client certificate; prints nothing.
apiserver_ready() {
  local url="$1"
  curl -fsS --max-time 2 --cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" \
    --key "$dir/pki/admin.key" "$url/readyz" >/dev/null 2>&1
}

# The components a start launched, in start order (DIR/components; older
# directories without it ran the first three).
started_components() {
  if [ -f "$dir/components" ]; then cat "$dir/components"; else echo etcd kube-apiserver kube-controller-manager; fi
}

cmd_status() {
  local name pid rc=0
  if [ ! -e "$dir/$marker" ]; then
    say "no control plane in $dir"
    exit 3
  fi
  for name in $(started_components); do
    pid="$(pid_of "$name")"
    if alive "$pid"; then echo "$name: running (pid $pid)"; else echo "$name: not running"; rc=1; fi
  done
  local url=""
  [ -f "$dir/env" ] && url="$(sed -n 's/^export CP_APISERVER_URL=//p' "$dir/env")"
  if [ -n "$url" ] && apiserver_ready "$url"; then
    echo "readyz: ok ($url)"
    echo "kubeconfig: $dir/kubeconfig"
    if [[ " $(started_components) " == *" kwok "* ]]; then
      echo "simulated nodes: $(nodes_ready_count "$url") Ready and schedulable"
    fi
  else
    echo "readyz: not answering${url:+ ($url)}"; rc=1
  fi
  exit "$rc"
}

cmd_kubectl() {
  [ -f "$dir/env" ] || { say "no control plane in $dir; run: $0 start $dir"; exit 3; }
  # shellcheck disable=SC1091
  source "$dir/env"
  exec "$KUBECTL" --kubeconfig "$dir/kubeconfig" "$@"
}

# ---- start -----------------------------------------------------------------

fail_msg="" reported=""
# Records the one-line summary; the EXIT trap prints it after cleaning up, so
# it is the last thing on stderr.
fail() { fail_msg="$*"; exit 1; }

on_start_exit() {
  local rc=$?
  trap - EXIT ERR INT TERM
  [ "$rc" -ne 0 ] || return 0
  if [ "$owns_dir" = 1 ]; then
    if [ "${CP_KEEP_ON_FAILURE:-0}" = 1 ]; then
      stop_all 1 >/dev/null 2>&1 || true
      fail_msg="${fail_msg:-start failed} (state kept in $dir; run: $0 stop $dir)"
    else
      stop_all 0 >/dev/null 2>&1 || true
    fi
  fi
  if [ -n "$fail_msg" ]; then
    say "$fail_msg"
  elif [ "$rc" -ge 128 ]; then
    say "start interrupted; processes stopped and $dir removed."
  elif [ -z "$reported" ]; then
    say "start failed at line $err_line ($err_cmd, exit $rc); processes stopped. Re-run with 'bash -x' to see more."
  fi
  exit "$rc"
}

tail_log() {
  local name="$1" f="$dir/logs/$1.log"
  [ -s "$f" ] || return 0
  echo "---- last 20 lines of $name.log ----" >&2
  tail -n 20 "$f" >&2
  echo "----" >&2
}

# Prints N distinct ports that were free a moment ago (the kernel picks them).
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

port_free() {
  python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null
}

# Where a fixed port was requested, fail early and clearly if it is taken.
check_fixed_port() {
  local var="$1" port="${!1:-}"
  [ -n "$port" ] || return 0
  port_free "$port" || fail "port $port from $var is already in use on 127.0.0.1; pick another or unset $var."
}

gen_pki() {
  local p="$dir/pki"
  mkdir -p "$p"
  cat >"$p/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
# rustls (kube-rs) rejects leaf certificates without SANs or marked as CA.
[v3_server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = IP:127.0.0.1, IP:::1, IP:10.0.0.1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local
[v3_client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
  # EC P-256 keys in PKCS#8 ("BEGIN PRIVATE KEY"): readable by Go, kubectl and rustls.
  ec_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
  ec_key "$p/ca.key"
  openssl req -x509 -new -config "$p/openssl.cnf" -extensions v3_ca -key "$p/ca.key" \
    -subj "/CN=computenest-local-ca" -days 3650 -sha256 -out "$p/ca.crt" 2>/dev/null
  leaf() {
    local name="$1" subj="$2" ext="$3"
    ec_key "$p/$name.key"
    openssl req -new -config "$p/openssl.cnf" -key "$p/$name.key" -subj "$subj" -out "$p/$name.csr" 2>/dev/null
    openssl x509 -req -in "$p/$name.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" \
      -set_serial "0x$(openssl rand -hex 16)" -days 365 -sha256 \
      -extfile "$p/openssl.cnf" -extensions "$ext" -out "$p/$name.crt" 2>/dev/null
    rm -f "$p/$name.csr"
  }
  leaf serving "/CN=kube-apiserver" v3_server
  leaf admin "/O=system:masters/CN=admin" v3_client
  local -a extra_clients=()
  read -r -a extra_clients <<<"${CP_EXTRA_CLIENTS:-}"
  local c
  for c in "${extra_clients[@]}"; do
    [[ "$c" =~ ^[a-z0-9][a-z0-9.-]*$ ]] || fail "CP_EXTRA_CLIENTS: '$c' is not a valid user name (lower case, digits, '.', '-')."
    leaf "client-$c" "/O=system:masters/CN=$c" v3_client
  done
  # Service-account token signing key (RSA for RS256, the usual default).
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$p/sa.key" 2>/dev/null
  openssl pkey -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
}

write_kubeconfig() {
  local url="$1" p="$dir/pki" f="$dir/${3:-kubeconfig}" cert="${2:-admin}"
  b64() { base64 -w0 <"$1"; }
  cat >"$f.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: computenest-local
  cluster:
    server: $url
    certificate-authority-data: $(b64 "$p/ca.crt")
users:
- name: computenest-admin
  user:
    client-certificate-data: $(b64 "$p/$cert.crt")
    client-key-data: $(b64 "$p/$cert.key")
contexts:
- name: computenest-local
  context:
    cluster: computenest-local
    user: computenest-admin
current-context: computenest-local
EOF
  chmod 600 "$f.tmp"
  mv "$f.tmp" "$f"
}

launch() {
  local name="$1"; shift
  # setsid: detach from the terminal so Ctrl-C in the caller's shell later does
  # not kill the control plane; stop does that.
  if [ "$name" = kwok ]; then
    # KWOK_WORKDIR: kwok also reads ~/.kwok/kwok.yaml when it exists; a
    # directory of our own keeps a user's kwok configuration out.
    KWOK_WORKDIR="$dir/kwok" setsid "$kwok_bin/kwok" "$@" </dev/null >>"$dir/logs/$name.log" 2>&1 &
  else
    setsid "$bin/$name" "$@" </dev/null >>"$dir/logs/$name.log" 2>&1 &
  fi
  echo $! >"$dir/$name.pid"
}

# Waits until "$check" succeeds. Returns 0 ready, 1 process died, 2 timed out.
wait_for() {
  local name="$1" check="$2" pid deadline
  pid="$(pid_of "$name")"
  deadline=$((SECONDS + ready_timeout))
  while ((SECONDS < deadline)); do
    # Our own child: exists and is not a zombie. (Its cmdline can be empty for
    # an instant right after exec, so alive() is not used here.)
    if ! running "$pid"; then wait "$pid" 2>/dev/null || true; return 1; fi
    if $check; then return 0; fi
    sleep 0.2
  done
  return 2
}

# Starts a component, retrying on a fresh port if its port was taken between
# picking and binding. $port_var names the variable holding the port;
# $args_fn prints the flags (one per line) for the current port.
start_component() {
  local name="$1" port_var="$2" fixed_var="$3" args_fn="$4" check="$5" try rc
  local -a args
  for ((try = 1; try <= port_tries; try++)); do
    mapfile -t args < <($args_fn)
    echo "== $(date -Is) attempt $try on port ${!port_var}" >>"$dir/logs/$name.log"
    launch "$name" "${args[@]}"
    rc=0; wait_for "$name" "$check" || rc=$?
    case "$rc" in
      0) return 0 ;;
      2)
        tail_log "$name"
        fail "$name did not become ready within $ready_timeout s; read its log above, or raise CP_READY_TIMEOUT on a slow machine." ;;
    esac
    if ! tail -n 50 "$dir/logs/$name.log" | grep -q "address already in use"; then
      tail_log "$name"
      local hint=""
      case "$name" in
        kube-apiserver) hint=" (check CP_APISERVER_EXTRA_ARGS)" ;;
        kube-controller-manager) hint=" (check CP_CONTROLLERS and CP_KCM_EXTRA_ARGS)" ;;
        kube-scheduler) hint=" (check CP_SCHEDULER_EXTRA_ARGS)" ;;
        kwok) hint=" (check CP_KWOK_EXTRA_ARGS)" ;;
      esac
      fail "$name exited during startup; read its log above and fix the cause$hint."
    fi
    [ -z "${!fixed_var:-}" ] ||
      fail "port ${!port_var} from $fixed_var is already in use on 127.0.0.1; pick another or unset $fixed_var."
    say "port ${!port_var} for $name was taken; retrying on another"
    printf -v "$port_var" '%s' "$(free_ports 1)"
  done
  fail "no free loopback port for $name after $port_tries tries; free some ports or set $fixed_var."
}

etcd_args() {
  printf '%s\n' \
    --name=computenest-local \
    --data-dir="$dir/etcd" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" \
    --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls=http://localhost:0 \
    --unsafe-no-fsync=true
}
etcd_ready() { curl -fsS --max-time 2 "http://127.0.0.1:$etcd_port/health" 2>/dev/null | grep -q '"health":"true"'; }

apiserver_args() {
  local p="$dir/pki"
  printf '%s\n' \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 \
    --secure-port="$api_port" \
    --cert-dir="$dir/pki" \
    --tls-cert-file="$p/serving.crt" \
    --tls-private-key-file="$p/serving.key" \
    --client-ca-file="$p/ca.crt" \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="$p/sa.pub" \
    --service-account-signing-key-file="$p/sa.key" \
    --service-cluster-ip-range=10.0.0.0/16 \
    --authorization-mode=RBAC \
    --disable-admission-plugins=ServiceAccount \
    --allow-privileged=true
  audit_args
  # A space-separated list of flags (no quoting inside values).
  local -a extra=()
  read -r -a extra <<<"${CP_APISERVER_EXTRA_ARGS:-}"
  [ "${#extra[@]}" -eq 0 ] || printf '%s\n' "${extra[@]}"
}
# With CP_AUDIT_POLICY: batch mode keeps auditing off the request path; the
# buffer is large because a full buffer drops events rather than waiting.
# maxsize 0 would not mean "never rotate" (the writer then rotates at its
# default 100 MB, and a 10,000-instance run loses its first requests to a
# backup file): 1 TB means never.
audit_args() {
  [ -n "${CP_AUDIT_POLICY:-}" ] || return 0
  printf '%s\n' \
    --audit-policy-file="$dir/audit-policy.yaml" \
    --audit-log-path="$dir/logs/audit.log" \
    --audit-log-format=json \
    --audit-log-maxsize=1000000 \
    --audit-log-mode=batch \
    --audit-log-batch-buffer-size=1000000 \
    --audit-log-batch-max-size=1000 \
    --audit-log-batch-max-wait=200ms
}
api_ready() { apiserver_ready "https://127.0.0.1:$api_port"; }

kcm_args() {
  local -a extra
  read -r -a extra <<<"${CP_KCM_EXTRA_ARGS:-}"
  [ "${#extra[@]}" -eq 0 ] || printf '%s\n' "${extra[@]}"
  printf '%s\n' \
    --kubeconfig="$dir/kubeconfig" \
    --controllers="${CP_CONTROLLERS:-$default_controllers}" \
    --leader-elect=false \
    --bind-address=127.0.0.1 \
    --secure-port="$kcm_port" \
    --cert-dir="$dir/pki/kcm" \
    --service-account-private-key-file="$dir/pki/sa.key" \
    --root-ca-file="$dir/pki/ca.crt"
}
kcm_ready() { curl -fsSk --max-time 2 "https://127.0.0.1:$kcm_port/healthz" >/dev/null 2>&1; }

# Like the controller manager's: the admin kubeconfig, no leader election, a
# self-signed serving certificate in its own directory, /healthz on loopback
# (always allowed). No --authentication-kubeconfig, as for the controller
# manager: with it the scheduler also looks for a request-header CA the API
# server does not have and logs an error about it every minute.
scheduler_args() {
  printf '%s\n' \
    --kubeconfig="$dir/kubeconfig" \
    --leader-elect=false \
    --bind-address=127.0.0.1 \
    --secure-port="$sched_port" \
    --cert-dir="$dir/pki/scheduler"
  local -a extra=()
  read -r -a extra <<<"${CP_SCHEDULER_EXTRA_ARGS:-}"
  [ "${#extra[@]}" -eq 0 ] || printf '%s\n' "${extra[@]}"
}
scheduler_ready() { curl -fsSk --max-time 2 "https://127.0.0.1:$sched_port/healthz" >/dev/null 2>&1; }

# kwok manages only the Nodes annotated kwok.x-k8s.io/node=fake and takes its
# Stages from the API (--enable-crds=Stage). It renews each Node's Lease (40 s,
# as kwokctl sets it; kwok's own default, 0, renews none, and the node
# lifecycle controller then marks the Nodes NotReady after its grace period,
# and every pod on them not Ready). Pod IPs come from 10.244.0.0/16 (not the
# service range 10.0.0.0/16). /healthz is served on loopback.
kwok_args() {
  printf '%s\n' \
    --kubeconfig="$dir/kubeconfig" \
    --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --enable-crds=Stage \
    --node-lease-duration-seconds=40 \
    --cidr=10.244.0.0/16 \
    --node-ip=10.243.0.1 \
    --server-address="127.0.0.1:$kwok_port"
  local -a extra=()
  read -r -a extra <<<"${CP_KWOK_EXTRA_ARGS:-}"
  [ "${#extra[@]}" -eq 0 ] || printf '%s\n' "${extra[@]}"
}
kwok_ready() { curl -fsS --max-time 2 "http://127.0.0.1:$kwok_port/healthz" >/dev/null 2>&1; }

kc() { "$bin/kubectl" --kubeconfig "$dir/kubeconfig" --request-timeout=30s "$@"; }

# The simulated Nodes: what kwok's documentation creates (the annotation kwok
# selects on, the label type=kwok), without its taint, so that ordinary pods
# schedule here; allocatable as large as the knobs say.
node_manifests() {
  local i
  for ((i = 0; i < kwok_nodes; i++)); do
    cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    node-role.kubernetes.io/agent: ""
status:
  allocatable: {cpu: "$node_cpu", memory: "$node_memory", pods: "$node_pods"}
  capacity: {cpu: "$node_cpu", memory: "$node_memory", pods: "$node_pods"}
EOF
  done
}

# kwok's Stage CRD, its default Stages and ours, and the Nodes; before kwok
# starts, so that it finds them all at once.
kwok_objects() {
  local log="$dir/logs/kwok-setup.log"
  if ! kc apply --server-side --force-conflicts -f "$kwok_bin/crd/stages.yaml" >>"$log" 2>&1 ||
    ! kc wait --for=condition=Established --timeout="${ready_timeout}s" crd/stages.kwok.x-k8s.io >>"$log" 2>&1; then
    tail_log kwok-setup
    fail "kwok's Stage CRD could not be installed or did not become Established; read the log above."
  fi
  kc apply --server-side --force-conflicts -f "$kwok_bin/stages/" -f "$here/kwok/stages.yaml" >>"$log" 2>&1 ||
    { tail_log kwok-setup; fail "the kwok Stages ($kwok_bin/stages/, hack/kwok/stages.yaml) could not be applied; read the log above."; }
  node_manifests | kc apply --server-side --force-conflicts -f - >>"$log" 2>&1 ||
    { tail_log kwok-setup; fail "the simulated Nodes could not be created; check CP_KWOK_NODE_CPU, CP_KWOK_NODE_MEMORY and CP_KWOK_NODE_PODS."; }
}

# How many simulated Nodes are Ready and schedulable: kwok marks them Ready,
# then the node lifecycle controller removes the API server's
# node.kubernetes.io/not-ready taint.
nodes_ready_count() {
  local url="${1:-https://127.0.0.1:$api_port}"
  curl -fsS --max-time 5 --cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" \
    --key "$dir/pki/admin.key" "$url/api/v1/nodes?labelSelector=type%3Dkwok" 2>/dev/null | python3 -c '
import json, sys
try:
    items = json.load(sys.stdin)["items"]
except Exception:
    items = []
def schedulable(n):
    spec, st = n.get("spec") or {}, n.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or [])
    taints = [t for t in spec.get("taints") or [] if t.get("key", "").startswith("node.kubernetes.io/")]
    return ready and not taints and not spec.get("unschedulable")
print(sum(1 for n in items if schedulable(n)))
'
}
nodes_ready() { [ "$(nodes_ready_count)" -ge "$kwok_nodes" ]; }

# Runs a build script that streams progress on stderr and prints its output
# directory last on stdout; sets $built. Keeps a copy of its stderr in
# DIR/logs/<log>.log to see whether it explained a failure itself.
run_build() {
  local script="$1" prefix="$2" log="$dir/logs/$3.log" out rc=0 last
  out="$({ "$here/$script" 2>&1 1>&3 3>&- | tee "$log" >&2; } 3>&1)" || rc=$?
  if [ "$rc" -ne 0 ]; then
    # Its own fail() lines are the clear summary; only add one if it gave none.
    last="$(tail -n 1 "$log")"
    if [[ "$last" == "$prefix: "* ]] &&
      ! [[ "$last" =~ ^$prefix:\ (building\ |adding\ |go\ build\ [^\ ]+$) ]]; then
      reported=1
      exit "$rc"
    fi
    fail "building with hack/$script failed (exit $rc); read the output above and re-run hack/$script."
  fi
  built="$(tail -n 1 <<<"$out")"
}

default_ns_exists() {
  curl -fsS --max-time 2 --cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" \
    --key "$dir/pki/admin.key" "https://127.0.0.1:$api_port/api/v1/namespaces/default" >/dev/null 2>&1
}

cmd_start() {
  local t0="$EPOCHREALTIME"
  owns_dir=0 err_line="?" err_cmd="?"
  trap 'err_line=$LINENO; err_cmd=$BASH_COMMAND' ERR
  trap on_start_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  check_ours
  pods="${CP_PODS:-1}"
  case "$pods" in 0 | 1) ;; *) fail "CP_PODS=$pods: use 1 (pods run on simulated Nodes, the default) or 0 (the bare control plane)." ;; esac
  local -a want=(etcd kube-apiserver kube-controller-manager)
  [ "$pods" = 0 ] || want+=(kube-scheduler kwok)
  if [ -e "$dir/$marker" ]; then
    local url="" c all=1
    [ -f "$dir/env" ] && url="$(sed -n 's/^export CP_APISERVER_URL=//p' "$dir/env")"
    for c in $(started_components); do alive "$(pid_of "$c")" || all=0; done
    if [ "$all" = 1 ] && [ -n "$url" ] && apiserver_ready "$url"; then
      say "a control plane is already running in $dir; reusing it (run '$0 stop $dir' for a fresh one)"
      [ "$(started_components)" = "${want[*]}" ] ||
        say "note: it runs $(started_components), not ${want[*]} as CP_PODS=$pods asks; stop it for a fresh one"
      echo "$dir/kubeconfig"
      return 0
    fi
    say "found a stale or partial control plane in $dir; stopping it and starting fresh"
    stop_all 0 || fail "could not clean up the stale control plane in $dir; stop its processes by pid and retry."
  fi
  for tool in openssl curl python3 setsid; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed; install it and retry."
  done
  check_fixed_port CP_ETCD_PORT
  check_fixed_port CP_APISERVER_PORT
  check_fixed_port CP_KCM_PORT
  if [ "$pods" = 1 ]; then
    check_fixed_port CP_SCHEDULER_PORT
    check_fixed_port CP_KWOK_PORT
    kwok_nodes="${CP_KWOK_NODES:-3}"
    [[ "$kwok_nodes" =~ ^[1-9][0-9]{0,3}$ ]] || fail "CP_KWOK_NODES=$kwok_nodes: give a number of simulated Nodes from 1 to 9999 (CP_PODS=0 for none)."
    node_cpu="${CP_KWOK_NODE_CPU:-128}" node_memory="${CP_KWOK_NODE_MEMORY:-512Gi}" node_pods="${CP_KWOK_NODE_PODS:-1100}"
    local q
    for q in "$node_cpu" "$node_memory" "$node_pods"; do
      [[ "$q" =~ ^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$ ]] ||
        fail "'$q' (CP_KWOK_NODE_CPU, CP_KWOK_NODE_MEMORY or CP_KWOK_NODE_PODS) is not a Kubernetes quantity such as 128, 512Gi or 1100."
    done
  fi

  mkdir -p "$dir/logs"
  touch "$dir/$marker"
  owns_dir=1
  echo "${want[*]}" >"$dir/components"

  say "building or locating binaries (hack/build-controlplane.sh)"
  local built=""
  run_build build-controlplane.sh build-controlplane build
  bin="$built"
  local b
  for b in etcd kube-apiserver kube-controller-manager kubectl $([ "$pods" = 0 ] || echo kube-scheduler); do
    [ -x "$bin/$b" ] || fail "build-controlplane.sh reported $bin but $b is missing there; delete that directory and retry."
  done
  kwok_bin=""
  if [ "$pods" = 1 ]; then
    say "building or locating kwok (hack/build-kwok.sh)"
    run_build build-kwok.sh build-kwok build-kwok
    kwok_bin="$built"
    [ -x "$kwok_bin/kwok" ] || fail "build-kwok.sh reported $kwok_bin but kwok is missing there; delete that directory and retry."
  fi

  if [ -n "${CP_AUDIT_POLICY:-}" ]; then
    [ -r "$CP_AUDIT_POLICY" ] || fail "CP_AUDIT_POLICY=$CP_AUDIT_POLICY is not a readable file."
    cp -- "$CP_AUDIT_POLICY" "$dir/audit-policy.yaml"
  fi

  say "generating throwaway certificates in $dir/pki"
  gen_pki || fail "openssl could not generate the certificates; check 'openssl version' (3.x expected)."

  read -r etcd_port api_port kcm_port sched_port kwok_port <<<"$(free_ports 5)"
  etcd_port="${CP_ETCD_PORT:-$etcd_port}"
  api_port="${CP_APISERVER_PORT:-$api_port}"
  kcm_port="${CP_KCM_PORT:-$kcm_port}"
  sched_port="${CP_SCHEDULER_PORT:-$sched_port}"
  kwok_port="${CP_KWOK_PORT:-$kwok_port}"

  say "starting etcd on 127.0.0.1:$etcd_port"
  start_component etcd etcd_port CP_ETCD_PORT etcd_args etcd_ready

  say "starting kube-apiserver on 127.0.0.1:$api_port"
  start_component kube-apiserver api_port CP_APISERVER_PORT apiserver_args api_ready
  local url="https://127.0.0.1:$api_port"
  write_kubeconfig "$url"
  local -a extra_clients=()
  read -r -a extra_clients <<<"${CP_EXTRA_CLIENTS:-}"
  local c
  for c in "${extra_clients[@]}"; do write_kubeconfig "$url" "client-$c" "kubeconfig-$c"; done
  local rc2=0
  wait_for kube-apiserver default_ns_exists || rc2=$?
  if [ "$rc2" -ne 0 ]; then
    tail_log kube-apiserver
    fail "namespace 'default' did not appear within $ready_timeout s; read the log above or raise CP_READY_TIMEOUT."
  fi

  say "starting kube-controller-manager on 127.0.0.1:$kcm_port"
  start_component kube-controller-manager kcm_port CP_KCM_PORT kcm_args kcm_ready

  if [ "$pods" = 1 ]; then
    say "starting kube-scheduler on 127.0.0.1:$sched_port"
    start_component kube-scheduler sched_port CP_SCHEDULER_PORT scheduler_args scheduler_ready
    say "installing kwok's Stages and creating $kwok_nodes simulated Nodes ($node_cpu CPU, $node_memory, $node_pods pods each)"
    kwok_objects
    say "starting kwok on 127.0.0.1:$kwok_port"
    start_component kwok kwok_port CP_KWOK_PORT kwok_args kwok_ready
    local rc3=0
    wait_for kwok nodes_ready || rc3=$?
    if [ "$rc3" -ne 0 ]; then
      tail_log kwok
      fail "only $(nodes_ready_count) of $kwok_nodes simulated Nodes became Ready and schedulable within $ready_timeout s; kwok's log is above. kube-controller-manager's node-lifecycle-controller removes the not-ready taint of a new Node: keep it in CP_CONTROLLERS (CP_KEEP_ON_FAILURE=1 keeps $dir/logs)."
    fi
  fi

  {
    printf 'export KUBECONFIG=%q\n' "$dir/kubeconfig"
    printf 'export KUBECTL=%q\n' "$bin/kubectl"
    printf 'export CP_BIN_DIR=%q\n' "$bin"
    printf 'export CP_APISERVER_URL=%s\n' "$url"
    printf 'export CP_ETCD_URL=%s\n' "http://127.0.0.1:$etcd_port"
    printf 'export CP_PODS=%s\n' "$pods"
    if [ "$pods" = 1 ]; then
      printf 'export CP_KWOK_DIR=%q\n' "$kwok_bin"
      printf 'export CP_KWOK_NODES=%s\n' "$kwok_nodes"
    fi
  } >"$dir/env"

  local elapsed
  elapsed="$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')"
  local what="no scheduler or Nodes: pods never start"
  [ "$pods" = 0 ] || what="pods run on $kwok_nodes simulated Nodes"
  say "ready in ${elapsed} s: $url, $what (source $dir/env for KUBECONFIG and KUBECTL)"
  echo "$dir/kubeconfig"
}

main() {
  local sub="${1:-}"
  [ $# -eq 0 ] || shift
  case "$sub" in
    start | stop | status)
      [ $# -le 1 ] || { usage; exit 2; }
      dir="$(resolve_dir "${1:-}")"
      "cmd_$sub" ;;
    kubectl)
      local d=""
      if [ $# -gt 0 ] && [ "$1" != "--" ]; then d="$1"; shift; fi
      [ $# -eq 0 ] || [ "$1" != "--" ] || shift
      dir="$(resolve_dir "$d")"
      cmd_kubectl "$@" ;;
    -h | --help | help) usage ;;
    *) usage; exit 2 ;;
  esac
}

main "$@"
