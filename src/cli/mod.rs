//! `kubectl computenest`: the plugin's logic, with the caller's own
//! kubeconfig and rights. `tree` is pure (the chain and its renderings);
//! `trace` reads the chain through the API; `verbs` writes the documented
//! fields (grant decisions, access requests and approvals) and previews a
//! purchase with the controller's own rendering code.
//!
//! May import `crate::api` and `crate::domain`; never `crate::controller`
//! or `crate::runtime` (the plugin is a client, not a deputy).

pub mod trace;
pub mod tree;
pub mod verbs;
