#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
# kubectl from the Go tool module hack/controlplane and caches them under
# ~/.cache/computenest/controlplane/<hash of go.mod and go.sum>/. The cache is
# incremental: a warm cache builds nothing, and one that lacks some binaries
# (for example kube-scheduler, added after the others) builds only those
# (kube-scheduler alone, 2 cores: 20 s measured with the Go build cache the
# other binaries left, 12.4 min with an empty Go build cache). Each
# binary is built to a temporary name and renamed, so a binary that is there is
# complete. Prints the directory holding the binaries on stdout (last line).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mod="$here/controlplane"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod

fail() { echo "build-controlplane: $*" >&2; exit 1; }
command -v go >/dev/null 2>&1 || fail "Go is not installed; install Go 1.26 or newer (1.25 is enough for this script alone) (https://go.dev/doc/install) and retry."

k8s_version="$(awk '$1=="k8s.io/kubernetes"{print $2; exit}' "$mod/go.mod")"
[ -n "$k8s_version" ] || fail "cannot read the k8s.io/kubernetes version from $mod/go.mod"
key="$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -c1-16)"
cache_root="${COMPUTENEST_CACHE:-$HOME/.cache/computenest}"
out="$cache_root/controlplane/$key"
# kube-scheduler is not in go.mod's tool block although it is built from the
# same module graph (go list -deps finds every package with go.mod and go.sum
# as they are): editing go.mod changes the cache key and would rebuild
# everything. Add it there with the next Kubernetes upgrade.
bins=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl)
declare -A pkgs=(
  [etcd]=go.etcd.io/etcd/server/v3
  [kube-apiserver]=k8s.io/kubernetes/cmd/kube-apiserver
  [kube-controller-manager]=k8s.io/kubernetes/cmd/kube-controller-manager
  [kube-scheduler]=k8s.io/kubernetes/cmd/kube-scheduler
  [kubectl]=k8s.io/kubernetes/cmd/kubectl
)

missing=()
for b in "${bins[@]}"; do [ -x "$out/$b" ] || missing+=("$b"); done
if [ "${#missing[@]}" -eq 0 ]; then echo "$out"; exit 0; fi

mkdir -p "$out"
major="${k8s_version#v}"; major="${major%%.*}"
minor="${k8s_version#v*.}"; minor="${minor%%.*}"
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
cd "$mod"
if [ "${#missing[@]}" -eq "${#bins[@]}" ]; then
  echo "build-controlplane: building Kubernetes $k8s_version and etcd into $out (first run only; 10-25 min on 2 cores)" >&2
else
  echo "build-controlplane: adding ${missing[*]} to $out (Kubernetes $k8s_version; on 2 cores about 20 s when the Go build cache still holds the other binaries' packages, 12 min with an empty one)" >&2
fi
build() {
  local name="$1" pkg="${pkgs[$1]}" part
  part="$out/.$name.partial.$$"
  echo "build-controlplane: go build $pkg" >&2
  go build -trimpath -ldflags "$ldflags" -o "$part" "$pkg" || {
    rm -f "$part"
    fail "go build of $pkg failed (see the compiler output above); check Go >= $(awk '$1=="go"{print $2}' go.mod) and that the Go module proxy is reachable."
  }
  mv -f "$part" "$out/$name"
}
for b in "${missing[@]}"; do build "$b"; done
echo "$out"
