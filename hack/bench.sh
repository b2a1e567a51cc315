#!/usr/bin/env bash
# make bench: the provisioning benchmark (benches/provision.rs). It starts a
# fresh throwaway control plane per arm itself (hack/controlplane.sh, with an
# audit policy), so nothing is started here. Output: the tables and a
# BENCH_JSON line, also saved to target/bench/last.txt. Sizes, repetitions,
# the floor's concurrency sweep etc. via BENCH_* (see benches/provision.rs and
# BENCHMARKS.md); BENCH_QUICK=1 for a short run.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
cd "$root"
t0="$EPOCHREALTIME"
cargo build --locked --release --bin computenest-controller
cargo bench --locked --bench provision --no-run
# kube-controller-manager's client is rate-limited to 20 requests/s by default;
# the peer runs it unthrottled, like our controller. Every control plane the
# bench starts inherits this.
export CP_KCM_EXTRA_ARGS="${CP_KCM_EXTRA_ARGS:---kube-api-qps=1000 --kube-api-burst=1000}"
work="$(mktemp -d /tmp/computenest-bench.XXXXXX)"
cleanup() {
  local rc=$? d
  # The bench stops its control planes; this catches an interrupted run.
  for d in "$work"/cp-*/; do
    [ -d "$d" ] && "$here/controlplane.sh" stop "${d%/}" >/dev/null 2>&1 || true
  done
  if [ "$rc" -eq 0 ]; then rm -rf -- "$work"; else echo "bench: failed (exit $rc); logs kept in $work" >&2; fi
  exit "$rc"
}
trap cleanup EXIT INT TERM
mkdir -p target/bench
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(uname -sr); $(date -u +%FT%TZ)" | tee target/bench/last.txt
BENCH_WORK="$work" BENCH_CONTROLLER="$root/target/release/computenest-controller" \
  cargo bench --locked --bench provision 2>&1 | tee -a target/bench/last.txt
awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "make bench: %.0f s in all, builds included\n", b - a }' | tee -a target/bench/last.txt
