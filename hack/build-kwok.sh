#!/usr/bin/env bash
# Builds kwok (sigs.k8s.io/kwok/cmd/kwok, the kubelet simulator of Kubernetes
# SIG Scheduling) from the Go tool module hack/kwok and caches it under
# ~/.cache/computenest/kwok/<hash of go.mod and go.sum>/, together with files
# taken from the same kwok module version (not copied into this repository):
#   kwok                      the controller binary (not kwokctl, which needs Docker)
#   crd/stages.yaml           kwok's Stage CustomResourceDefinition
#   stages/*.yaml             the Stages kwokctl uses by default: nodes become
#                             Ready (and their status is refreshed now and then;
#                             kwok renews their Leases), pods Running and Ready,
#                             Job pods Succeeded, deleted pods go away
# A warm cache builds nothing (0.03 s); a cache that lacks some of these files
# gets only those. The first run downloads kwok's dependencies from the Go
# module proxy and compiles them: 5 to 7 minutes on 2 cores (measured: 7.0 min
# with an empty Go build cache, 5.0 min after the control plane's build; kwok
# uses other Kubernetes library versions, so little is shared; 20 s when the
# Go build cache already holds kwok's packages). Prints the directory last on
# stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mod="$here/kwok"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
fail() { echo "build-kwok: $*" >&2; exit 1; }
command -v go >/dev/null 2>&1 || fail "Go is not installed; install Go $(awk '$1=="go"{print $2}' "$mod/go.mod") or newer (https://go.dev/doc/install) and retry."

kwok_version="$(awk '$1=="require" && $2=="sigs.k8s.io/kwok"{print $3; exit} $1=="sigs.k8s.io/kwok"{print $2; exit}' "$mod/go.mod")"
[ -n "$kwok_version" ] || fail "cannot read the sigs.k8s.io/kwok version from $mod/go.mod"
key="$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -c1-16)"
cache_root="${COMPUTENEST_CACHE:-$HOME/.cache/computenest}"
out="$cache_root/kwok/$key"
# Files taken from the kwok module: cache path -> path in the module.
declare -A files=(
  [crd/stages.yaml]=kustomize/crd/bases/kwok.x-k8s.io_stages.yaml
  [stages/node-initialize.yaml]=kustomize/stage/node/fast/node-initialize.yaml
  [stages/node-heartbeat-with-lease.yaml]=kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
  [stages/pod-ready.yaml]=kustomize/stage/pod/fast/pod-ready.yaml
  [stages/pod-complete.yaml]=kustomize/stage/pod/fast/pod-complete.yaml
  [stages/pod-delete.yaml]=kustomize/stage/pod/fast/pod-delete.yaml
)

have_all() { local f; for f in "${!files[@]}"; do [ -s "$out/$f" ] || return 1; done; [ -x "$out/kwok" ]; }
if have_all; then echo "$out"; exit 0; fi

need="$(awk '$1=="go"{print $2}' "$mod/go.mod")"
have="$(go env GOVERSION 2>/dev/null || true)"
have="${have#go}"
if [ -n "$have" ] && [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n 1)" != "$need" ]; then
  fail "kwok $kwok_version needs Go $need or newer; this is Go $have (GOTOOLCHAIN=local: nothing is downloaded). Install a newer Go and retry, or run the control plane without pods (CP_PODS=0)."
fi

cd "$mod"
mkdir -p "$out/crd" "$out/stages"
src="$(go mod download sigs.k8s.io/kwok && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)" ||
  fail "cannot download sigs.k8s.io/kwok $kwok_version; check that the Go module proxy is reachable (go env GOPROXY)."
[ -d "$src" ] || fail "go list did not report the directory of sigs.k8s.io/kwok $kwok_version"
# Like the binary, each file is written under a temporary name and renamed:
# a file that is there is complete, and only what is missing is redone.
for f in "${!files[@]}"; do
  [ -s "$out/$f" ] && continue
  [ -f "$src/${files[$f]}" ] || fail "sigs.k8s.io/kwok $kwok_version has no ${files[$f]}; update hack/build-kwok.sh for this kwok version."
  cp "$src/${files[$f]}" "$out/$f.partial.$$"
  chmod 644 "$out/$f.partial.$$"
  mv -f "$out/$f.partial.$$" "$out/$f"
done
if [ ! -x "$out/kwok" ]; then
  echo "build-kwok: building kwok $kwok_version into $out (first run only; 5-7 min on 2 cores)" >&2
  echo "build-kwok: go build sigs.k8s.io/kwok/cmd/kwok" >&2
  part="$out/.kwok.partial.$$"
  go build -trimpath -ldflags "-s -w" -o "$part" sigs.k8s.io/kwok/cmd/kwok || {
    rm -f "$part"
    fail "go build of sigs.k8s.io/kwok/cmd/kwok failed (see the compiler output above); check Go >= $need and that the Go module proxy is reachable."
  }
  mv -f "$part" "$out/kwok"
fi
echo "$out"
