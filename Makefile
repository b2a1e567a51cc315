# computenest-controller: the two set-up commands are `make demo` and `make test`.
# Prerequisites: Rust (stable) with rustfmt and clippy; Go >= 1.26 (the local
# control plane's kwok v0.8.0 and the chart test's helm 3.22 are built from
# source and require it; CP_PODS=0, a control plane whose pods never start,
# builds with 1.25); openssl, curl, python3. No Docker. The first run builds
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and
# kwok from the Go module proxy: 15 to 30 minutes on 2 cores, then cached.

SHELL := /bin/bash
CARGO ?= cargo
export GOTOOLCHAIN := local

.PHONY: all build test fmt-check clippy unit integration crds demo bench soak image clean-cache help

all: build

help: ## This list.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## Build the controller (debug).
	$(CARGO) build --locked

test: fmt-check clippy unit integration ## Everything CI runs.
	@echo "make test: all checks passed"

fmt-check: ## cargo fmt --check.
	$(CARGO) fmt --all -- --check

clippy: ## Clippy with warnings as errors.
	$(CARGO) clippy --locked --all-targets -- -D warnings

unit: ## Unit tests and the CRD staleness check (no cluster needed).
	$(CARGO) test --locked --lib --bins --test crds --test layers --test render_memory

integration: ## Integration tests against a real control plane started and stopped here.
	hack/test-integration.sh

crds: ## Regenerate crds/ from the Rust types.
	$(CARGO) run --locked --quiet --bin computenest-controller -- crd > crds/computenest.dev.yaml

demo: ## Local control plane (or $$KUBECONFIG), CRDs, controller, examples, and a table.
	hack/demo.sh

bench: ## Provisioning benchmark: fresh control plane per arm, replayed floor (BENCH_QUICK=1 for a short run; see BENCHMARKS.md).
	hack/bench.sh

soak: ## Reliability suite: SIGKILLs (creations, upgrades), control-plane restarts, failover, conflicts (minutes).
	hack/soak.sh

image: ## Container image without Docker: target/image/computenest-controller-<version>.oci.tar, reproducible (docs/image.md).
	hack/build-image.sh

clean-cache: ## Remove the cached control-plane, kwok and helm binaries.
	rm -rf $${HOME}/.cache/computenest
