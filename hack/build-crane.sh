#!/usr/bin/env bash
# Builds crane (github.com/google/go-containerregistry/cmd/crane) from the Go
# tool module hack/image and caches it under
# ~/.cache/computenest/crane/<hash of go.mod and go.sum>/crane. hack/build-image.sh
# uses it to assemble the controller's image without Docker. A warm cache builds
# nothing (0.03 s); the first run downloads go-containerregistry and its few
# dependencies from the Go module proxy and compiles them (measured: 31 s on
# 2 cores with empty Go module and build caches). Prints the path of the crane
# binary on stdout (last line).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mod="$here/image"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
fail() { echo "build-crane: $*" >&2; exit 1; }
command -v go >/dev/null 2>&1 || fail "Go is not installed; install Go $(awk '$1=="go"{print $2}' "$mod/go.mod" 2>/dev/null || echo 1.26) or newer (https://go.dev/doc/install) and retry."

crane_version="$(awk '$1=="github.com/google/go-containerregistry"{print $2; exit}' "$mod/go.mod")"
[ -n "$crane_version" ] || fail "cannot read the github.com/google/go-containerregistry version from $mod/go.mod"
key="$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -c1-16)"
cache_root="${COMPUTENEST_CACHE:-$HOME/.cache/computenest}"
out="$cache_root/crane/$key"

if [ -x "$out/crane" ]; then echo "$out/crane"; exit 0; fi

need="$(awk '$1=="go"{print $2}' "$mod/go.mod")"
have="$(go env GOVERSION 2>/dev/null || true)"
have="${have#go}"
if [ -n "$have" ] && [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n 1)" != "$need" ]; then
  fail "crane $crane_version is built with Go $need or newer; this is Go $have (GOTOOLCHAIN=local: nothing is downloaded). Install a newer Go and retry."
fi

mkdir -p "$out"
cd "$mod"
echo "build-crane: building crane $crane_version into $out (first run only; about 30 s on 2 cores)" >&2
# crane's Makefile stamps its version the same way (cmd/crane/cmd.Version).
part="$out/.crane.partial.$$"
go build -trimpath -ldflags "-s -w -X github.com/google/go-containerregistry/cmd/crane/cmd.Version=$crane_version" \
  -o "$part" github.com/google/go-containerregistry/cmd/crane || {
  rm -f "$part"
  fail "go build of crane $crane_version failed (see the compiler output above); check Go >= $need and that the Go module proxy is reachable (go env GOPROXY)."
}
mv -f "$part" "$out/crane"
echo "$out/crane"
