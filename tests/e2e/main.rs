//! End-to-end tests: real etcd, real binaries, real processes.

mod harness;

mod cli;
mod config;
mod deploy;
mod docs;
