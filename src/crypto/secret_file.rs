//! Secret files: a 32-byte secret as 64 hex digits and a newline, mode 0600,
//! created once and never replaced. The one format for every key this
//! appliance keeps on disk (KEKs, the audit signing and naming keys).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::Error;

pub(super) const SECRET_LEN: usize = 32;

pub(super) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(super) fn key_file_error(path: &Path, reason: &str) -> Error {
    Error::KeyFile {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    }
}

/// Reads a secret file, refusing it unless only its owner can read or write
/// it: a key others can read protects nothing, and one others can write
/// could have been swapped.
pub(super) fn read(path: &Path) -> Result<Option<[u8; SECRET_LEN]>, Error> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(io_error(path)(err)),
    };
    check_owner_only(path, &file)?;
    let mut text = Vec::with_capacity(2 * SECRET_LEN + 1);
    // One byte past the longest valid content, to notice oversized files.
    file.take(2 * SECRET_LEN as u64 + 2)
        .read_to_end(&mut text)
        .map_err(io_error(path))?;
    let digits = text.strip_suffix(b"\n").unwrap_or(&text);
    let mut secret = [0u8; SECRET_LEN];
    let parsed = hex::decode_to_slice(digits, &mut secret);
    text.fill(0);
    parsed.map_err(|_| {
        key_file_error(path, "expected exactly 64 hex digits followed by a newline")
    })?;
    Ok(Some(secret))
}

/// Writes `secret` to a temporary file created with mode 0600 (never widened
/// and then narrowed), syncs it, then hard-links it into place so an
/// existing key is never replaced, and syncs the directory so the new name
/// survives a crash.
/// Reads a file only its owner may read or write (as `read` insists), up
/// to `max` bytes: the result is one byte longer when the file is too long.
/// Callers zero the bytes once they have parsed them.
pub(super) fn read_owner_only(path: &Path, max: u64) -> Result<Vec<u8>, Error> {
    let file = File::open(path).map_err(io_error(path))?;
    check_owner_only(path, &file)?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error(path))?;
    Ok(bytes)
}

/// Refuses an opened file that is not a regular file or that group or
/// others may read or write. The opened file is checked, not the path, so
/// the checked file is the one read.
fn check_owner_only(path: &Path, file: &File) -> Result<(), Error> {
    let metadata = file.metadata().map_err(io_error(path))?;
    if !metadata.is_file() {
        return Err(key_file_error(path, "not a regular file"));
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(Error::KeyFilePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

pub(super) fn create(path: &Path, secret: &[u8; SECRET_LEN]) -> Result<(), Error> {
    let dir = path
        .parent()
        .ok_or_else(|| key_file_error(path, "has no parent directory"))?;
    let name = path
        .file_name()
        .ok_or_else(|| key_file_error(path, "has no file name"))?;
    let temp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let mut text = hex::encode(secret).into_bytes();
    text.push(b'\n');
    let written = write_private_file(&temp, &text);
    text.fill(0);
    written?;
    let linked = fs::hard_link(&temp, path).map_err(|err| {
        if err.kind() == io::ErrorKind::AlreadyExists {
            key_file_error(path, "already exists; refusing to replace a key")
        } else {
            io_error(path)(err)
        }
    });
    fs::remove_file(&temp).map_err(io_error(&temp))?;
    linked?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

/// Creates `dir` (and its parents) with mode 0700 when missing.
pub(super) fn create_private_dir(dir: &Path) -> Result<(), Error> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error(dir))
}

pub(super) fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), Error> {
    // A temp file left by a crash may have any content; start afresh.
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(io_error(path)(err)),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error(path))?;
    file.write_all(contents).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))
}
