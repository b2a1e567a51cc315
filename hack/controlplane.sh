#!/usr/bin/env bash
# Runs a throwaway Kubernetes control plane (etcd, kube-apiserver,
# kube-controller-manager; no kubelet, no scheduler) on free loopback ports, for
# tests and benchmarks. Binaries come from hack/build-controlplane.sh.
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
#   CP_ETCD_PORT / CP_APISERVER_PORT / CP_KCM_PORT   fixed ports instead of free ones
#   CP_KEEP_ON_FAILURE=1        on a failed start, kill the processes but keep DIR (logs)
#   CP_AUDIT_POLICY=FILE        audit with this policy to DIR/logs/audit.log (JSON lines,
#                               batch mode with a large buffer; see audit_args)
#   CP_EXTRA_CLIENTS="a b"      also issue client certificates (group system:masters) for users
#                               a, b and write DIR/kubeconfig-a, DIR/kubeconfig-b
set -Eeuo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
me="controlplane"
marker=".computenest-controlplane"
components=(kube-controller-manager kube-apiserver etcd)   # stop order
default_controllers="garbage-collector-controller,namespace-controller,serviceaccount-token-controller,deployment-controller,replicaset-controller"
ready_timeout="${CP_READY_TIMEOUT:-60}"
port_tries=5

say() { echo "$me: $*" >&2; }

usage() {
  sed -n '6,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
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
    case "$exe" in etcd | kube-apiserver | kube-controller-manager) ;; *) continue ;; esac
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
  for name in "${components[@]}"; do
    pid="$(pid_of "$name")"
    [ -z "$pid" ] || terminate "$name" "$pid" || true
  done
  # Same order for processes whose pid file is gone: the apiserver hangs on
  # shutdown once etcd is gone.
  for name in "${components[@]}"; do
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

cmd_status() {
  local name pid rc=0
  if [ ! -e "$dir/$marker" ]; then
    say "no control plane in $dir"
    exit 3
  fi
  for name in etcd kube-apiserver kube-controller-manager; do
    pid="$(pid_of "$name")"
    if alive "$pid"; then echo "$name: running (pid $pid)"; else echo "$name: not running"; rc=1; fi
  done
  local url=""
  [ -f "$dir/env" ] && url="$(sed -n 's/^export CP_APISERVER_URL=//p' "$dir/env")"
  if [ -n "$url" ] && apiserver_ready "$url"; then
    echo "readyz: ok ($url)"
    echo "kubeconfig: $dir/kubeconfig"
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
  setsid "$bin/$name" "$@" </dev/null >>"$dir/logs/$name.log" 2>&1 &
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
        kube-controller-manager) hint=" (check CP_CONTROLLERS)" ;;
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
  if [ -e "$dir/$marker" ]; then
    local url=""
    [ -f "$dir/env" ] && url="$(sed -n 's/^export CP_APISERVER_URL=//p' "$dir/env")"
    if alive "$(pid_of etcd)" && alive "$(pid_of kube-apiserver)" &&
      alive "$(pid_of kube-controller-manager)" && [ -n "$url" ] && apiserver_ready "$url"; then
      say "a control plane is already running in $dir; reusing it (run '$0 stop $dir' for a fresh one)"
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

  mkdir -p "$dir/logs"
  touch "$dir/$marker"
  owns_dir=1

  # The build script streams progress on stderr and prints the binary directory
  # last on stdout; keep a copy of its stderr to see whether it explained a failure.
  say "building or locating binaries (hack/build-controlplane.sh)"
  local out rc=0
  out="$({ "$here/build-controlplane.sh" 2>&1 1>&3 3>&- | tee "$dir/logs/build.log" >&2; } 3>&1)" || rc=$?
  if [ "$rc" -ne 0 ]; then
    # Its own fail() lines are the clear summary; only add one if it gave none.
    local last
    last="$(tail -n 1 "$dir/logs/build.log")"
    if [[ "$last" == "build-controlplane: "* ]] &&
      ! [[ "$last" =~ ^build-controlplane:\ (building\ Kubernetes|go\ build\ [^\ ]+$) ]]; then
      reported=1
      exit "$rc"
    fi
    fail "building the control-plane binaries failed (exit $rc); read the output above and re-run hack/build-controlplane.sh."
  fi
  bin="$(tail -n 1 <<<"$out")"
  for b in etcd kube-apiserver kube-controller-manager kubectl; do
    [ -x "$bin/$b" ] || fail "build-controlplane.sh reported $bin but $b is missing there; delete that directory and retry."
  done

  if [ -n "${CP_AUDIT_POLICY:-}" ]; then
    [ -r "$CP_AUDIT_POLICY" ] || fail "CP_AUDIT_POLICY=$CP_AUDIT_POLICY is not a readable file."
    cp -- "$CP_AUDIT_POLICY" "$dir/audit-policy.yaml"
  fi

  say "generating throwaway certificates in $dir/pki"
  gen_pki || fail "openssl could not generate the certificates; check 'openssl version' (3.x expected)."

  read -r etcd_port api_port kcm_port <<<"$(free_ports 3)"
  etcd_port="${CP_ETCD_PORT:-$etcd_port}"
  api_port="${CP_APISERVER_PORT:-$api_port}"
  kcm_port="${CP_KCM_PORT:-$kcm_port}"

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

  {
    printf 'export KUBECONFIG=%q\n' "$dir/kubeconfig"
    printf 'export KUBECTL=%q\n' "$bin/kubectl"
    printf 'export CP_BIN_DIR=%q\n' "$bin"
    printf 'export CP_APISERVER_URL=%s\n' "$url"
    printf 'export CP_ETCD_URL=%s\n' "http://127.0.0.1:$etcd_port"
  } >"$dir/env"

  local elapsed
  elapsed="$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')"
  say "ready in ${elapsed} s: $url (source $dir/env for KUBECONFIG and KUBECTL)"
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
