//! Strongroom's one integration-test binary: every test starts a real server
//! on an ephemeral port (in-process, or the real binary for crash tests) with
//! its data on disk in a temporary directory.

mod audit;
mod audit_trail;
mod auth;
mod browser_console;
mod cli;
mod cli_client;
mod clients;
mod crash;
mod disk_full;
mod downloads;
mod faults;
mod fuzz_regressions;
mod keys;
mod limits;
mod manifest;
mod observability;
mod operations;
mod plugin_corpus;
mod recovery;
mod robustness;
mod sandbox;
mod screening;
mod simulation;
mod smoke;
mod support;
mod tampering;
mod tls;
mod transport;
mod tus_core;
mod tus_extensions;
