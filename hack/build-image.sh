#!/usr/bin/env bash
# Builds the controller's container image without Docker (make image; see
# docs/image.md) and writes it, reproducibly, to
#   target/image/computenest-controller-<version>.oci.tar
#
#  1. cargo builds the controller statically linked against glibc (static-pie,
#     -C target-feature=+crt-static; getrandom(2) rather than /dev/urandom),
#     stripped, in target/image (not target/);
#     source paths are remapped to /src and /cargo so the binary does not
#     depend on where the checkout or ~/.cargo are.
#  2. One layer tarball, written by python3's tarfile: /computenest-controller
#     (0755), /etc/passwd and /etc/group with root and the nonroot user 65532,
#     an empty /tmp (1777); sorted entries, uid/gid 0 and numeric owners,
#     mtimes = SOURCE_DATE_EPOCH (default: the last commit's time, 0 outside
#     git).
#  3. crane (hack/build-crane.sh, from the Go module proxy) assembles the image
#     in a registry of its own that lives only while this script runs
#     (`crane registry serve` on 127.0.0.1; crane mutate and crane edit work
#     only on images in a registry): append the layer to the empty base, set
#     created = SOURCE_DATE_EPOCH, then entrypoint ["/computenest-controller"],
#     cmd ["run"], user 65532:65532, port 8080/tcp, platform linux/<arch> and
#     the org.opencontainers.image.* labels; then pull it as an OCI layout.
#  4. The archive is that OCI image layout (oci-layout, index.json, blobs/) plus
#     the manifest.json of `docker save`, both naming <image.repository of the
#     chart's values.yaml>:<version>, like the archives Docker 25 writes: kind
#     load image-archive, ctr images import, podman load, docker load and
#     crane push all read it. The manifest has Docker v2 media types, so that
#     the digest is the same whichever of the two an importer reads (crane
#     push of a docker-save tarball always writes Docker media types); the
#     script checks that.
#
# Same sources, same digest (and the same archive bytes). The version is
# Cargo.toml's, which must equal the chart's appVersion.
#
# Prints the archive's path, then the image (manifest) digest, as the last two
# lines on stdout; everything else goes to stderr.
#
# Environment: IMAGE_REPOSITORY (default: image.repository in the chart's
# values.yaml), IMAGE_TAG (default: the version), SOURCE_DATE_EPOCH, CARGO.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
chart="$root/charts/computenest-controller"
fail() { echo "build-image: $*" >&2; exit 1; }
say() { echo "build-image: $*" >&2; }
cargo="${CARGO:-cargo}"
for tool in "$cargo" rustc python3; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed"
done

# ---- what to build -----------------------------------------------------------------

toml_field() { # toml_field KEY: KEY = "value" in Cargo.toml's [package]
  awk -v k="$1" '/^\[/ { p = ($0 == "[package]") } p && $1 == k && $2 == "=" { v = $3; gsub(/"/, "", v); print v; exit }' "$root/Cargo.toml"
}
version="$(toml_field version)"
source_url="$(toml_field repository)"
license="$(toml_field license)"
[ -n "$version" ] || fail "no version in Cargo.toml"
app_version="$(awk '$1 == "appVersion:" { v = $2; gsub(/"/, "", v); print v; exit }' "$chart/Chart.yaml")"
[ "$app_version" = "$version" ] || fail "Cargo.toml says version $version, $chart/Chart.yaml appVersion '$app_version'; make them equal"
values_repository="$(awk '/^image:/ { i = 1; next } /^[^ #]/ { i = 0 } i && $1 == "repository:" { print $2; exit }' "$chart/values.yaml")"
repository="${IMAGE_REPOSITORY:-$values_repository}"
[ -n "$repository" ] || fail "no image.repository in $chart/values.yaml (set IMAGE_REPOSITORY)"
tag="${IMAGE_TAG:-$version}"
image="$repository:$tag"
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH="$(git -C "$root" log -1 --format=%ct 2>/dev/null || true)"
  SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-0}"
fi
[[ "$SOURCE_DATE_EPOCH" =~ ^[0-9]+$ ]] || fail "SOURCE_DATE_EPOCH '$SOURCE_DATE_EPOCH' is not a number of seconds"
export SOURCE_DATE_EPOCH

host="$(rustc -vV | awk '$1 == "host:" { print $2 }')"
case "$host" in
  x86_64-unknown-linux-gnu) arch=amd64 ;;
  aarch64-unknown-linux-gnu) arch=arm64 ;;
  *) fail "building the image needs a glibc Linux host (x86_64 or aarch64); this is $host" ;;
esac

target_dir="$root/target/image"
out="$target_dir/computenest-controller-$tag.oci.tar"
mkdir -p "$target_dir"
work="$(mktemp -d "${TMPDIR:-/tmp}/computenest-image.XXXXXX")"
registry_pid=""
cleanup() {
  if [ -n "$registry_pid" ]; then
    kill "$registry_pid" 2>/dev/null || true
    wait "$registry_pid" 2>/dev/null || true
  fi
  rm -rf -- "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- 1. the static binary ----------------------------------------------------------

say "cargo build --release --target $host (static, stripped) in $target_dir"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
# RUSTFLAGS with --target apply to the target only, not to build scripts and
# proc macros (which cannot be linked statically). getrandom (0.3, 0.4: rand,
# ring's users) looks up glibc's getrandom() with dlsym, which finds nothing in
# a static binary, and then reads /dev/urandom; the cfg makes it call the
# getrandom(2) system call, so the binary needs no /dev (the chart test runs it
# in a chroot of the image's files, which has none). The profile overrides
# strip the binary and skip the line tables that Cargo.toml's release profile
# keeps.
# SOURCE_DATE_EPOCH is kept from cargo: build scripts (ring's, psm's, through
# cc) rerun when it changes, and with them half of the dependencies, on every
# commit; they build the same bytes without it.
unset CARGO_ENCODED_RUSTFLAGS
(cd "$root" && unset SOURCE_DATE_EPOCH &&
  RUSTFLAGS="-C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\" --remap-path-prefix=$root=/src --remap-path-prefix=$cargo_home=/cargo" \
  CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=symbols \
  "$cargo" build --release --locked --bin computenest-controller --target "$host" --target-dir "$target_dir" >&2) ||
  fail "cargo build failed (see above)"
bin="$target_dir/$host/release/computenest-controller"
[ -x "$bin" ] || fail "cargo did not produce $bin"
# Static: no ELF interpreter (PT_INTERP) and no shared libraries (DT_NEEDED).
python3 - "$bin" <<'PY' || fail "$bin is not statically linked"
import struct, sys
b = open(sys.argv[1], "rb").read()
assert b[:4] == b"\x7fELF" and b[4] == 2, "not a 64-bit ELF file"
phoff, = struct.unpack_from("<Q", b, 0x20)
phentsize, phnum = struct.unpack_from("<HH", b, 0x36)
for i in range(phnum):
    ptype, = struct.unpack_from("<I", b, phoff + i * phentsize)
    if ptype == 3:
        sys.exit("it has an ELF interpreter (dynamically linked)")
PY
"$bin" --version >/dev/null || fail "$bin does not run"

# ---- 2. the layer ------------------------------------------------------------------

python3 - "$bin" "$work/layer.tar" <<'PY'
import io, os, sys, tarfile
binary, out = sys.argv[1], sys.argv[2]
mtime = int(os.environ["SOURCE_DATE_EPOCH"])
files = {
    "etc/passwd": (0o644, b"root:x:0:0:root:/root:/sbin/nologin\n"
                          b"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"),
    "etc/group": (0o644, b"root:x:0:\nnonroot:x:65532:\n"),
    "computenest-controller": (0o755, open(binary, "rb").read()),
}
dirs = {"etc": 0o755, "tmp": 0o1777}
def info(name, mode, kind, size=0):
    t = tarfile.TarInfo(name)
    t.type, t.mode, t.size, t.mtime = kind, mode, size, mtime
    t.uid = t.gid = 0
    t.uname = t.gname = ""
    return t
with open(out, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
    for name in sorted(set(files) | set(dirs)):
        if name in dirs:
            tar.addfile(info(name, dirs[name], tarfile.DIRTYPE))
        else:
            mode, data = files[name]
            tar.addfile(info(name, mode, tarfile.REGTYPE, len(data)), io.BytesIO(data))
PY

# ---- 3. crane ----------------------------------------------------------------------

crane="$("$here/build-crane.sh" | tail -n 1)"
[ -x "$crane" ] || fail "hack/build-crane.sh did not produce crane"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$crane" registry serve --address "127.0.0.1:$port" >"$work/registry.log" 2>&1 </dev/null &
registry_pid=$!
registry="127.0.0.1:$port"
for _ in $(seq 1 100); do
  "$crane" catalog "$registry" >/dev/null 2>&1 && break
  kill -0 "$registry_pid" 2>/dev/null || { cat "$work/registry.log" >&2; fail "crane registry serve exited"; }
  sleep 0.1
done
"$crane" catalog "$registry" >/dev/null 2>&1 || { cat "$work/registry.log" >&2; fail "crane registry serve does not answer on $registry"; }
staging="$registry/computenest-controller:$tag"

# The empty base has Docker media types (no --oci-empty-base): see 4.
"$crane" append -f "$work/layer.tar" -t "$staging" >/dev/null 2>"$work/append.log" || { cat "$work/append.log" >&2; fail "crane append failed"; }
# No crane flag sets the creation time; crane edit config takes a whole config.
# (It rewrites the manifest with sorted keys: crane mutate below writes it again
# in the usual field order.)
"$crane" config "$staging" | python3 -c '
import json, os, sys, time
created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(os.environ["SOURCE_DATE_EPOCH"])))
c = json.load(sys.stdin)
c["created"] = created
for h in c.get("history") or []:
    h["created"] = created
    h["created_by"] = "hack/build-image.sh"
json.dump(c, sys.stdout, separators=(",", ":"))
' >"$work/config.json"
"$crane" edit config "$staging" <"$work/config.json" >/dev/null 2>"$work/edit.log" || { cat "$work/edit.log" >&2; fail "crane edit config failed"; }
"$crane" mutate "$staging" -t "$staging" \
  --entrypoint=/computenest-controller --cmd=run --user=65532:65532 --exposed-ports=8080/tcp \
  --set-platform="linux/$arch" \
  --label="org.opencontainers.image.title=computenest-controller" \
  --label="org.opencontainers.image.version=$version" \
  --label="org.opencontainers.image.source=$source_url" \
  --label="org.opencontainers.image.licenses=$license" >/dev/null 2>"$work/mutate.log" || { cat "$work/mutate.log" >&2; fail "crane mutate failed"; }
digest="$("$crane" digest "$staging")"
"$crane" pull --format=oci "$staging" "$work/layout" 2>"$work/pull.log" || { cat "$work/pull.log" >&2; fail "crane pull --format=oci failed"; }
kill "$registry_pid" 2>/dev/null || true
wait "$registry_pid" 2>/dev/null || true
registry_pid=""

# ---- 4. the archive ----------------------------------------------------------------

python3 - "$work/layout" "$out.partial.$$" "$digest" "$image" "$tag" <<'PY'
import io, json, os, sys, tarfile
layout, out, digest, image, tag = sys.argv[1:]
mtime = int(os.environ["SOURCE_DATE_EPOCH"])
def blob(d):
    algo, hexd = d.split(":", 1)
    return "blobs/%s/%s" % (algo, hexd)
index = json.load(open(os.path.join(layout, "index.json")))
[desc] = index["manifests"]
assert desc["digest"] == digest, "the layout holds %s, the registry %s" % (desc["digest"], digest)
manifest = json.load(open(os.path.join(layout, blob(digest))))
desc.pop("artifactType", None)  # crane's layout copies the config's media type there; not for images
desc["annotations"] = {
    "io.containerd.image.name": image,
    "org.opencontainers.image.ref.name": tag,
}
files = {
    "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
    "index.json": json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                              "manifests": [desc]}, sort_keys=True).encode(),
    # docker save's format, for docker load and crane push of the file.
    "manifest.json": json.dumps([{
        "Config": blob(manifest["config"]["digest"]),
        "RepoTags": [image],
        "Layers": [blob(l["digest"]) for l in manifest["layers"]],
    }]).encode(),
}
blobs = [digest, manifest["config"]["digest"]] + [l["digest"] for l in manifest["layers"]]
for d in blobs:
    files[blob(d)] = open(os.path.join(layout, blob(d)), "rb").read()
dirs = {os.path.dirname(n) for n in files if "/" in n}
dirs |= {os.path.dirname(d) for d in dirs if "/" in d}
def info(name, mode, kind, size=0):
    t = tarfile.TarInfo(name)
    t.type, t.mode, t.size, t.mtime = kind, mode, size, mtime
    t.uid = t.gid = 0
    t.uname = t.gname = ""
    return t
with open(out, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
    for name in sorted(set(files) | dirs):
        if name in dirs:
            tar.addfile(info(name, 0o755, tarfile.DIRTYPE))
        else:
            tar.addfile(info(name, 0o644, tarfile.REGTYPE, len(files[name])), io.BytesIO(files[name]))
PY
# The docker-save view of the same file must name the same image.
tar_digest="$("$crane" digest --tarball "$out.partial.$$")" || { rm -f "$out.partial.$$"; fail "crane cannot read the archive as a docker-save tarball"; }
if [ "$tar_digest" != "$digest" ]; then
  rm -f "$out.partial.$$"
  fail "the archive's manifest.json gives digest $tar_digest, its index.json $digest"
fi
mv -f "$out.partial.$$" "$out"
say "$image@$digest ($(du -h "$out" | cut -f1), created $(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ))"
echo "$out"
echo "$digest"
