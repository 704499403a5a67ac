//! rune: a service controller whose desired state lives in etcd.
//!
//! See ARCHITECTURE.md for the map. In short: [`model`] is the data and its rules,
//! [`store`] owns every etcd key and request, [`cli`] is the `rune` command,
//! [`controller`] reconciles, [`agent`] runs processes, [`probe`] checks them.

pub mod agent;
pub mod cli;
pub mod controller;
pub mod events;
pub mod exit;
pub mod host;
pub mod logging;
pub mod model;
pub mod probe;
pub mod secrets;
pub mod serve;
pub mod store;
