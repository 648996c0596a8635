//! Strongroom's one integration-test binary: every test starts a real server
//! on an ephemeral port (in-process, or the real binary for crash tests) with
//! its data on disk in a temporary directory.

mod clients;
mod crash;
mod downloads;
mod faults;
mod recovery;
mod robustness;
mod smoke;
mod support;
mod tus_core;
mod tus_extensions;
