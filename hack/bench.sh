#!/usr/bin/env bash
# make bench: the provisioning benchmark (benches/provision.rs) on a throwaway
# control plane. Output: the table and a BENCH_JSON line, also saved to
# target/bench/last.txt. Sizes etc. via BENCH_* (see benches/provision.rs).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
dir="$(mktemp -d /tmp/computenest-bench-cp.XXXXXX)"
rmdir "$dir"
cleanup() {
  local rc=$?
  "$here/controlplane.sh" stop "$dir" >/dev/null 2>&1 || true
  exit "$rc"
}
trap cleanup EXIT INT TERM
cd "$root"
cargo build --locked --release --bin computenest-controller
cargo bench --locked --bench provision --no-run
# kube-controller-manager's client is rate-limited to 20 requests/s by default;
# the peer baseline runs it unthrottled, like the bare client and our controller.
CP_KCM_EXTRA_ARGS="--kube-api-qps=1000 --kube-api-burst=1000" "$here/controlplane.sh" start "$dir" >/dev/null
# shellcheck disable=SC1091
source "$dir/env"
export KUBECONFIG
mkdir -p target/bench
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(uname -sr); $(date -u +%FT%TZ)" | tee target/bench/last.txt
BENCH_CONTROLLER="$root/target/release/computenest-controller" cargo bench --locked --bench provision 2>&1 | tee -a target/bench/last.txt
