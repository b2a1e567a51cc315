#!/usr/bin/env bash
# Builds the helm v3 CLI from the Go tool module hack/helm and caches it under
# ~/.cache/computenest/helm/<hash of go.mod+go.sum>/helm. A warm cache builds nothing.
# Prints the path of the helm binary on stdout (last line).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mod="$here/helm"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0

fail() { echo "build-helm: $*" >&2; exit 1; }
command -v go >/dev/null 2>&1 || fail "Go is not installed; install Go $(awk '$1=="go"{print $2}' "$mod/go.mod" 2>/dev/null || echo 1.26) or newer (https://go.dev/doc/install) and retry."

helm_version="$(awk '$1=="helm.sh/helm/v3"{print $2; exit}' "$mod/go.mod")"
[ -n "$helm_version" ] || fail "cannot read the helm.sh/helm/v3 version from $mod/go.mod"
key="$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -c1-16)"
cache_root="${COMPUTENEST_CACHE:-$HOME/.cache/computenest}"
out="$cache_root/helm/$key"

if [ -x "$out/helm" ]; then echo "$out/helm"; exit 0; fi

# helm's Makefile stamps its version and the Kubernetes version it assumes
# (client-go v0.X.Y => Kubernetes 1.X) into the binary; do the same.
client_go="$(awk '$1=="k8s.io/client-go"{print $2; exit}' "$mod/go.mod")"
k8s_minor="${client_go#v0.}"; k8s_minor="${k8s_minor%%.*}"
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
if [ -n "$k8s_minor" ]; then
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags="$ldflags -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
  done
fi

mkdir -p "$out"
cd "$mod"
echo "build-helm: building helm $helm_version into $out (first run only; a few minutes on 2 cores)" >&2
go build -trimpath -ldflags "$ldflags" -o "$out/helm.partial" helm.sh/helm/v3/cmd/helm \
  || { rm -f "$out/helm.partial"; fail "go build of helm $helm_version failed (see the compiler output above); check Go >= $(awk '$1=="go"{print $2}' go.mod) and that the Go module proxy is reachable."; }
mv "$out/helm.partial" "$out/helm"
echo "$out/helm"
