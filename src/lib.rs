//! Strongroom: a self-hosted storage appliance. Clients upload over tus 1.0;
//! bytes are sealed (SEG1) into durable staging as they arrive, inspected by
//! the policy's sandboxed Wasm plugins on the way, and commit atomically into
//! objects that stream back with Range support.
//!
//! Data flows one way: server → tus → ingest (→ screen → sandbox) →
//! {staging, store, crypto}. Two cross-cutting leaves take records from
//! anywhere and call nobody: `metrics` (Prometheus) and `events` (the live
//! feed), as `tracing` does for logs.

pub mod admin;
pub mod appliance;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod crypto;
pub mod disk;
pub mod events;
pub mod id;
pub mod ingest;
pub mod metrics;
pub mod policy;
#[cfg(feature = "plugins")]
pub mod sandbox;
#[cfg(feature = "plugins")]
pub mod screen;
pub mod server;
pub mod shutdown;
pub mod staging;
pub mod store;
pub mod telemetry;
pub mod tus;
