//! computenest-controller: software distribution on Kubernetes.
//!
//! Layout: `api` (the custom resources); pure domain logic with no API calls
//! (`scenario`, `render`, `distribution`, `provision`, `access`, and `naming`
//! for the names, labels and hashes they derive); one controller module per
//! kind under `controller`; the runtime concerns (`metrics`, `health`) apart.
//! Pure modules never import `controller`.

pub mod access;
pub mod api;
pub mod controller;
pub mod distribution;
pub mod health;
pub mod metrics;
pub mod naming;
pub mod provision;
pub mod render;
pub mod scenario;
