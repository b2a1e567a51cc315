//! Runtime concerns of the process, apart from the domain and the
//! controllers: metrics, the health server, leader election.

pub mod health;
pub mod leader;
pub mod metrics;
