#!/usr/bin/env bash
# make soak: the reliability suite (tests/soak) on a throwaway control plane:
# SIGKILL crash consistency (creations and upgrades), kube-apiserver and etcd
# restarts, two replicas with leader election, conflicting edits. Takes
# several minutes.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
dir="$(mktemp -d /tmp/computenest-soak-cp.XXXXXX)"
rmdir "$dir"
cleanup() {
  local rc=$?
  "$here/controlplane.sh" stop "$dir" >/dev/null 2>&1 || true
  exit "$rc"
}
trap cleanup EXIT INT TERM
cd "$root"
cargo test --locked --test soak --no-run
"$here/controlplane.sh" start "$dir" >/dev/null
# shellcheck disable=SC1091
source "$dir/env"
export KUBECONFIG KUBECTL COMPUTENEST_CP_DIR="$dir"
# One at a time: the tests restart control-plane components and kill controllers.
cargo test --locked --test soak -- --test-threads=1 --nocapture "$@"
