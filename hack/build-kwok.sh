#!/usr/bin/env bash
# Builds kwok (sigs.k8s.io/kwok/cmd/kwok, the kubelet simulator of Kubernetes
# SIG Scheduling) from the Go tool module hack/kwok and caches it under
# ~/.cache/computenest/kwok/<hash of go.mod and go.sum>/, together with files
# taken from the same kwok module version (not copied into this repository):
#   kwok                      the controller binary (not kwokctl, which needs Docker)
#   crd/stages.yaml           kwok's Stage CustomResourceDefinition
#   stages/*.yaml             kwok's default "fast" stages: nodes become Ready,
#                             pods Running and Ready, Job pods Succeeded,
#                             deleted pods go away
# A warm cache builds nothing (0.03 s). The first run downloads kwok's
# dependencies from the Go module proxy and compiles them: 5 to 7 minutes on 2
# cores (measured: 7.0 min with an empty Go build cache, 5.0 min after the
# control plane's build; kwok uses other Kubernetes library versions, so little
# is shared). Prints the directory last on stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mod="$here/kwok"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
# Bump when the layout of the cache directory changes.
layout=1

fail() { echo "build-kwok: $*" >&2; exit 1; }
command -v go >/dev/null 2>&1 || fail "Go is not installed; install Go $(awk '$1=="go"{print $2}' "$mod/go.mod") or newer (https://go.dev/doc/install) and retry."

kwok_version="$(awk '$1=="require" && $2=="sigs.k8s.io/kwok"{print $3; exit} $1=="sigs.k8s.io/kwok"{print $2; exit}' "$mod/go.mod")"
[ -n "$kwok_version" ] || fail "cannot read the sigs.k8s.io/kwok version from $mod/go.mod"
key="$( { echo "layout $layout"; cat "$mod/go.mod" "$mod/go.sum"; } | sha256sum | cut -c1-16)"
cache_root="${COMPUTENEST_CACHE:-$HOME/.cache/computenest}"
out="$cache_root/kwok/$key"
files=(kwok crd/stages.yaml stages/node-initialize.yaml stages/pod-ready.yaml stages/pod-complete.yaml stages/pod-delete.yaml)

have_all() { local f; for f in "${files[@]}"; do [ -s "$out/$f" ] || return 1; done; [ -x "$out/kwok" ]; }
if have_all; then echo "$out"; exit 0; fi

need="$(awk '$1=="go"{print $2}' "$mod/go.mod")"
have="$(go env GOVERSION 2>/dev/null || true)"
have="${have#go}"
if [ -n "$have" ] && [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n 1)" != "$need" ]; then
  fail "kwok $kwok_version needs Go $need or newer; this is Go $have (GOTOOLCHAIN=local: nothing is downloaded). Install a newer Go and retry."
fi

cd "$mod"
echo "build-kwok: building kwok $kwok_version into $out (first run only; 5-7 min on 2 cores)" >&2
tmp="$out.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp/crd" "$tmp/stages"
trap 'rm -rf "$tmp"' EXIT
src="$(go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)" ||
  fail "cannot download sigs.k8s.io/kwok $kwok_version; check that the Go module proxy is reachable (go env GOPROXY)."
[ -d "$src" ] || fail "go list did not report the directory of sigs.k8s.io/kwok $kwok_version"
take() {
  [ -f "$src/$1" ] || fail "sigs.k8s.io/kwok $kwok_version has no $1; update hack/build-kwok.sh for this kwok version."
  cp "$src/$1" "$tmp/$2"
  chmod 644 "$tmp/$2"
}
take kustomize/crd/bases/kwok.x-k8s.io_stages.yaml crd/stages.yaml
take kustomize/stage/node/fast/node-initialize.yaml stages/node-initialize.yaml
for s in pod-ready pod-complete pod-delete; do
  take "kustomize/stage/pod/fast/$s.yaml" "stages/$s.yaml"
done
echo "build-kwok: go build sigs.k8s.io/kwok/cmd/kwok" >&2
go build -trimpath -ldflags "-s -w" -o "$tmp/kwok" sigs.k8s.io/kwok/cmd/kwok ||
  fail "go build of sigs.k8s.io/kwok/cmd/kwok failed (see the compiler output above); check Go >= $need and that the Go module proxy is reachable."
# Another build may have finished first; either result is the same.
mkdir -p "$(dirname "$out")"
if ! mv -T "$tmp" "$out" 2>/dev/null; then
  have_all || { rm -rf "$out"; mv -T "$tmp" "$out"; }
fi
trap - EXIT
rm -rf "$tmp"
echo "$out"
