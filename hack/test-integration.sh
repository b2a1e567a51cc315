#!/usr/bin/env bash
# Starts a throwaway control plane, runs the integration tests against it, and
# stops it again whatever happens. Extra arguments go to the test binary
# (for example a test name filter).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
dir="$(mktemp -d /tmp/computenest-test-cp.XXXXXX)"
rmdir "$dir" # controlplane.sh creates it and marks it as its own

cleanup() {
  local rc=$?
  "$here/controlplane.sh" stop "$dir" >/dev/null 2>&1 || echo "test-integration: could not stop the control plane in $dir" >&2
  exit "$rc"
}
trap cleanup EXIT INT TERM

# Build first, so that the control plane is not idling while cargo compiles.
(cd "$root" && cargo test --locked --test integration --no-run)
"$here/controlplane.sh" start "$dir" >/dev/null
# shellcheck disable=SC1091
source "$dir/env"
export KUBECONFIG KUBECTL
cd "$root"
cargo test --locked --test integration -- --test-threads="${TEST_THREADS:-4}" "$@"
