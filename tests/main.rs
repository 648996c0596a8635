//! Strongroom's one integration-test binary: every test starts a real server
//! on an ephemeral port (in-process, or the real binary for crash tests) with
//! its data on disk in a temporary directory.

mod smoke;
mod support;
