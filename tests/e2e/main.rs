//! End-to-end tests: real etcd, real binaries, real processes.

// Shared with the benchmarks (benches/): etcd, processes, reapers, ports, scratch dirs.
#[path = "../support/mod.rs"]
mod support;

mod harness;
mod system;

mod agent;
mod bad_input;
mod bounded;
mod cli;
mod config;
mod controller;
mod deploy;
mod docs;
mod endpoints;
mod events;
mod faults;
mod hollow;
mod isolation;
mod logs;
mod lost_nodes;
mod node_scope;
mod nodes;
mod operations;
mod rbac;
mod resources;
mod rolling;
mod rollout;
mod run_local;
mod scale;
mod secrets;
mod store;
mod traffic;
mod zero_downtime;
