//! Integration tests against a real control plane (etcd, kube-apiserver,
//! kube-controller-manager) started by `make test`. One binary, so that one
//! controller process serves every test of a run.

mod fixtures;
mod harness;

mod access;
mod api_server;
mod commerce;
mod distribution;
mod drift;
mod health;
mod hostile;
mod instances;
mod ownership;
mod plugin;
mod tenancy;
mod versions;
