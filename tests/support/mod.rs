//! Support shared by the end-to-end tests (`tests/e2e/`, as `crate::support`) and the
//! benchmark programs (`benches/`, through `#[path = "../tests/support/mod.rs"]`):
//! a real etcd on tmpfs with random loopback ports, handles on the processes a test or
//! benchmark starts (stopped on drop, also while a panic unwinds), reapers for instance
//! processes that outlive their agent, scratch directories, free ports, a minimal HTTP
//! GET, polling with deadlines, and the benchmarks' measurements (CPU, RSS,
//! percentiles).
//!
//! No test framework and no async runtime here: everything is plain blocking code, so
//! a `harness = false` benchmark can use it as well as the test binary.

// Every binary that includes this module (the e2e tests, each benchmark) uses a
// different subset of it; what one of them leaves unused is not dead.
#![allow(dead_code)]

pub mod etcd;
pub mod measure;
pub mod net;
pub mod netns;
pub mod procs;
pub mod scratch;
pub mod wait;
