//! The domain: pure logic with no API calls, unit-tested without a server.
//!
//! May import `crate::api` and each other; never `crate::controller` or
//! `crate::runtime`. `naming` and `conditions` are the leaves every other
//! module here builds on.

pub mod access;
pub mod commerce;
pub mod conditions;
pub mod distribution;
pub mod drift;
pub mod health;
pub mod naming;
pub mod provision;
pub mod render;
pub mod scenario;
pub mod tenancy;
pub mod versions;
