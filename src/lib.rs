//! computenest-controller: software distribution on Kubernetes.
//!
//! Layers (docs/architecture.md): `api` (the custom resources) at the bottom;
//! `domain` (pure logic with no API calls: scenarios, rendering,
//! distribution, provisioning, access, names and conditions) on it;
//! `controller` (one module per kind, the watch-fed index, the shared
//! reconcile runner) on both; `runtime` (metrics, health, leader election)
//! beside the controllers; `cli` (the kubectl plugin) on `api` and
//! `domain`. The domain never imports `controller` or `runtime`.

pub mod api;
pub mod cli;
pub mod controller;
pub mod domain;
pub mod runtime;

// The domain and runtime modules by their short names, for the binary, the
// tests and the benchmark.
pub use domain::{access, conditions, distribution, naming, provision, render, scenario, tenancy};
pub use runtime::{health, metrics};
