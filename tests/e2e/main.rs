//! End-to-end tests: real etcd, real binaries, real processes.

mod harness;

mod agent;
mod cli;
