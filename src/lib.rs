//! computenest-controller: software distribution on Kubernetes.
//!
//! Layout: `api` (the custom resources), pure domain logic (`scenario`,
//! `render`), one controller module per kind under `controller`, and the
//! runtime concerns (`metrics`, `leader`, `health`) apart.

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
