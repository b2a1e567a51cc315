#!/usr/bin/env bash
# Starts a throwaway control plane, runs the integration tests against it, then
# the Helm chart test (hack/test-chart.sh) against the same control plane, and
# stops it again whatever happens. Extra arguments go to the test binary
# (for example a test name filter); without any, the #[ignore]d heavy tests
# run afterwards, alone. CHART_TEST=0 skips the chart test.
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

# The controller manager's client is limited to 20 requests/s by default, and
# deleting one namespace costs it a list and a delete per served resource
# type (about 140 requests): with the tests' namespaces going at once that
# queue, not the controller, would decide how long a deletion takes.
export CP_KCM_EXTRA_ARGS="${CP_KCM_EXTRA_ARGS:---kube-api-qps=500 --kube-api-burst=1000 --concurrent-namespace-syncs=20}"
# Build first, so that the control plane is not idling while cargo compiles.
(cd "$root" && cargo test --locked --test integration --no-run)
"$here/controlplane.sh" start "$dir" >/dev/null
# shellcheck disable=SC1091
source "$dir/env"
export KUBECONFIG KUBECTL
cd "$root"
rc=0
cargo test --locked --test integration -- --test-threads="${TEST_THREADS:-4}" "$@" || rc=$?
# The heavy tests (#[ignore]d: 10,000 AccessRequests deleted at once) run
# alone, with a controller of their own, so that they starve no other test.
# The test that installs the usage record admission policy runs last, alone:
# whole runs with it among the others left instances of other tests
# unreconciled (not understood yet; see the closing note of 2026-12-04).
if [ "$#" -eq 0 ]; then
  cargo test --locked --test integration -- --ignored --test-threads=1 --skip a_sibling_instance_cannot_report_usage_for_another || rc=$?
  cargo test --locked --test integration -- --ignored --test-threads=1 --exact commerce::a_sibling_instance_cannot_report_usage_for_another || rc=$?
fi
# The tests' controller exits with the test binary (--exit-with-parent);
# test-chart.sh waits until it is gone before it runs its own replicas.
if [ "${CHART_TEST:-1}" != 0 ]; then
  "$here/test-chart.sh" || rc=1
fi
[ "$rc" -eq 0 ] || exit "$rc"
