//! What the `strongroom` admin subcommands do. Part of the binary, not the
//! library: with `main.rs` these are the only modules that use anyhow, print,
//! or choose exit statuses. Each command takes its parsed arguments, calls
//! the library, and reports for a human.

pub mod audit;
pub mod cert;
pub mod keys;
#[cfg(feature = "plugins")]
pub mod plugin;
pub mod policy;
pub mod tenant;
pub mod verify;

use std::io::Read;
use std::path::Path;

/// Read size when hashing a file: the hash streams, so memory stays fixed
/// whatever the file's size.
const HASH_BUFFER: usize = 64 << 10;

/// The SHA-256 and length of a file, read in fixed-size pieces.
pub fn hash_file(path: &Path) -> std::io::Result<([u8; 32], u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut buffer = vec![0u8; HASH_BUFFER];
    let mut hasher = strongroom::crypto::Sha256::new();
    let mut len = 0u64;
    loop {
        let n = match file.read(&mut buffer) {
            Ok(0) => return Ok((hasher.finish(), len)),
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        hasher.update(&buffer[..n]);
        len += n as u64;
    }
}
