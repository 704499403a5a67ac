//! End-to-end tests: real etcd, real binaries, real processes.

mod harness;
mod system;

mod agent;
mod cli;
mod config;
mod controller;
mod deploy;
mod docs;
mod run_local;
mod scale;
mod store;
