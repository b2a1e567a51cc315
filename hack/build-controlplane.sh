#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager and kubectl from the Go
# tool module hack/controlplane and caches them under
# ~/.cache/computenest/controlplane/<hash of go.sum>/. A warm cache builds nothing.
# Prints the directory holding the binaries on stdout (last line).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mod="$here/controlplane"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod

fail() { echo "build-controlplane: $*" >&2; exit 1; }
command -v go >/dev/null 2>&1 || fail "Go is not installed; install Go 1.25 or newer (https://go.dev/doc/install) and retry."

k8s_version="$(awk '$1=="k8s.io/kubernetes"{print $2; exit}' "$mod/go.mod")"
[ -n "$k8s_version" ] || fail "cannot read the k8s.io/kubernetes version from $mod/go.mod"
key="$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -c1-16)"
cache_root="${COMPUTENEST_CACHE:-$HOME/.cache/computenest}"
out="$cache_root/controlplane/$key"
bins=(etcd kube-apiserver kube-controller-manager kubectl)

have_all() { for b in "${bins[@]}"; do [ -x "$out/$b" ] || return 1; done; }
if have_all; then echo "$out"; exit 0; fi

mkdir -p "$out.tmp"
major="${k8s_version#v}"; major="${major%%.*}"
minor="${k8s_version#v*.}"; minor="${minor%%.*}"
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
cd "$mod"
echo "build-controlplane: building Kubernetes $k8s_version and etcd into $out (first run only; 10-25 min on 2 cores)" >&2
build() {
  local name="$1" pkg="$2"
  if [ -x "$out.tmp/$name" ]; then return 0; fi
  echo "build-controlplane: go build $pkg" >&2
  go build -trimpath -ldflags "$ldflags" -o "$out.tmp/$name.partial" "$pkg" \
    || fail "go build of $pkg failed (see the compiler output above); check Go >= $(awk '$1=="go"{print $2}' go.mod) and that the Go module proxy is reachable."
  mv "$out.tmp/$name.partial" "$out.tmp/$name"
}
build etcd go.etcd.io/etcd/server/v3
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
build kubectl k8s.io/kubernetes/cmd/kubectl
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out"
