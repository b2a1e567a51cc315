//! The custom resources of group `computenest.dev`, version `v1alpha1`.
//! One file per kind; these Rust types are the one source of the CRDs in crds/.

// kube's `printcolumn(name = .., type_ = ..)` repeats keys by design.
#![allow(clippy::duplicated_attributes)]

pub mod access;
pub mod approval;
pub mod commerce;
pub mod common;
pub mod derived;
pub mod grant;
pub mod instance;
pub mod order;
pub mod service;
pub mod sync;
pub mod tenancy;
pub mod version;

pub use access::*;
pub use approval::*;
pub use commerce::*;
pub use common::*;
pub use derived::*;
pub use grant::*;
pub use instance::*;
pub use order::*;
pub use service::*;
pub use sync::*;
pub use tenancy::*;
pub use version::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Every CRD of the project, in a stable order.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![
        Service::crd(),
        DistributionGrant::crd(),
        DerivedService::crd(),
        ServiceInstance::crd(),
        Order::crd(),
        AccessRequest::crd(),
        AccessApproval::crd(),
        ServiceVersion::crd(),
        UsageRecord::crd(),
    ]
}

/// Renders one CRD as YAML (with a leading document marker).
pub fn crd_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_yaml::Error> {
    Ok(format!("---\n{}", serde_yaml::to_string(crd)?))
}
