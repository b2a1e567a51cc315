# syntax=docker/dockerfile:1
# The computenest-controller image, for those who build with Docker or BuildKit:
#   docker build --build-arg VERSION=0.1.0 -t ghcr.io/computenest/computenest-controller:0.1.0 .
# and deploy it with charts/computenest-controller (image.repository, image.tag).
#
# The reference build is `make image` (hack/build-image.sh, docs/image.md): no
# Docker, reproducible (same sources, same digest), checked by the chart test,
# which runs its binary from its unpacked root filesystem. This file is kept so
# that Docker users and CI systems built around Dockerfiles get the same image
# contents: the same static binary, built the same way, and the same files
# (/computenest-controller, /etc/passwd and /etc/group with the nonroot user
# 65532, an empty /tmp), on an empty base. Its digest differs from make image's
# (file times, layer order of the builder); keep the two in step.

# ---- build -------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
# Only what `cargo build` reads: add build.rs or other targets here if the
# manifest ever names them.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# As hack/build-image.sh: linked statically against glibc (static-pie; libc.a
# is in the builder's libc6-dev), randomness from getrandom(2) rather than
# /dev/urandom (glibc's getrandom() cannot be found with dlsym in a static
# binary), stripped. TLS is rustls, so no OpenSSL and no
# shared library at all: the runtime image needs no libc. Cache mounts keep
# the registry and target/ between builds; the binary is copied out of the
# (unexported) cache.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(rustc -vV | sed -n 's/^host: //p')" \
 && RUSTFLAGS="-C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\" --remap-path-prefix=/usr/local/cargo=/cargo" \
    CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release --locked --bin computenest-controller --target "$target" \
 && mkdir -p /rootfs/etc /rootfs/tmp \
 && cp "target/$target/release/computenest-controller" /rootfs/computenest-controller \
 && chmod 0755 /rootfs/computenest-controller \
 && chmod 1777 /rootfs/tmp \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >/rootfs/etc/passwd \
 && printf 'root:x:0:\nnonroot:x:65532:\n' >/rootfs/etc/group

# ---- runtime -----------------------------------------------------------------
# Nothing but the files above: the binary needs no libc, no CA bundle (the
# in-cluster API server's CA comes with the ServiceAccount token) and no DNS
# (the API server is an IP).
FROM scratch
# Cargo.toml's version (hack/build-image.sh reads it from there).
ARG VERSION=0.1.0
COPY --from=build /rootfs/ /
# The chart runs it as 65532 with a read-only root filesystem (the controller
# writes no files).
USER 65532:65532
EXPOSE 8080
LABEL org.opencontainers.image.title="computenest-controller" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/computenest/computenest-controller" \
      org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT ["/computenest-controller"]
CMD ["run"]
