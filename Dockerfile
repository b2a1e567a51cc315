# syntax=docker/dockerfile:1
# The computenest-controller image. Build (BuildKit) from the repository root:
#   docker build -t computenest-controller:0.1.0 .
# and deploy it with charts/computenest-controller (image.repository, image.tag).

# ---- build -------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
# Only what `cargo build` reads: add build.rs or other targets here if the
# manifest ever names them.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Cache mounts keep the registry and target/ between builds; the binary is
# copied out of the (unexported) cache into the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin computenest-controller \
 && cp target/release/computenest-controller /computenest-controller

# ---- runtime -----------------------------------------------------------------
# Which distroless base: the binary is built for the *-unknown-linux-gnu target,
# so it links glibc (libc, libm) and libgcc_s (unwinding) dynamically; TLS is
# rustls with ring, compiled in, so no OpenSSL. distroless/static has no glibc,
# and the binary would fail to start there ("no such file or directory" for the
# ELF interpreter); distroless/cc is static plus glibc and libgcc_s, exactly
# what it needs. (Only a *-unknown-linux-musl build could use static-debian12.)
# Builder and runtime are both Debian 12, so the glibc the binary was linked
# against is the one it runs with.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /computenest-controller /computenest-controller
# The distroless "nonroot" user; the chart runs it with runAsUser 65532 and a
# read-only root filesystem (the controller writes no files).
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/computenest-controller"]
CMD ["run"]
