//! Precompiled artifacts on disk. Loading one maps native code into the
//! process, so this only ever loads files this module wrote, from a
//! directory only we can write, named by what produced them: the engine's
//! compatibility hash (a different wasmtime or engine setting is a different
//! directory) and the SHA-256 of the `.wasm` they were compiled from.

use std::fs::{self, OpenOptions};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use super::Error;

pub(super) struct ArtifactCache {
    dir: PathBuf,
}

impl ArtifactCache {
    pub(super) fn open(root: &Path, engine: &Engine) -> Result<ArtifactCache, Error> {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let dir = root.join(format!("engine-{:016x}", hasher.finish()));
        for dir in [root, dir.as_path()] {
            create_private_dir(dir)?;
        }
        Ok(ArtifactCache { dir })
    }

    fn path(&self, sha256: &[u8; 32]) -> PathBuf {
        self.dir.join(format!("{}.cwasm", hex::encode(sha256)))
    }

    /// The cached component for this `.wasm`, if we compiled it before.
    /// Anything unreadable or stale is a miss (and will be overwritten);
    /// a file someone else could have written is an error.
    pub(super) fn get(
        &self,
        engine: &Engine,
        sha256: &[u8; 32],
    ) -> Result<Option<Component>, Error> {
        let path = self.path(sha256);
        let metadata = match fs::symlink_metadata(&path) {
            Ok(metadata) => metadata,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Io { path, source }),
        };
        let mode = metadata.permissions().mode() & 0o777;
        if !metadata.file_type().is_file() || mode & 0o022 != 0 {
            return Err(Error::CachePermissions { path, mode });
        }
        // SAFETY: wasmtime requires that the bytes were produced by
        // `Component::serialize` (or `Engine::precompile_component`) of a
        // compatible engine. They were: the file is named by our engine's
        // compatibility hash and the wasm's SHA-256, it is a regular file
        // only its owner can write, in a directory only we can write, and
        // only `put` below creates files there. wasmtime still checks the
        // header and engine settings and refuses a mismatch.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => Ok(Some(component)),
            Err(err) => {
                tracing::warn!(path = %path.display(), "discarding unusable plugin artifact: {err:#}");
                Ok(None)
            }
        }
    }

    /// Stores an artifact we just compiled: written to a private temporary
    /// file, synced, then renamed into place so a reader never sees half.
    pub(super) fn put(&self, sha256: &[u8; 32], artifact: &[u8]) -> Result<(), Error> {
        let path = self.path(sha256);
        let nonce: [u8; 8] = crate::crypto::random_array();
        let temp = self.dir.join(format!(
            ".{}.{}.tmp",
            hex::encode(sha256),
            hex::encode(nonce)
        ));
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io { path, source }
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(io(&temp))?;
        let written = file.write_all(artifact).and_then(|()| file.sync_all());
        if let Err(source) = written {
            let _ = fs::remove_file(&temp);
            return Err(Error::Io { path: temp, source });
        }
        fs::rename(&temp, &path).map_err(|source| {
            let _ = fs::remove_file(&temp);
            Error::Io {
                path: path.clone(),
                source,
            }
        })
    }
}

/// Creates `dir` as 0700 if missing; refuses an existing one that group or
/// others can write (they could plant native code).
fn create_private_dir(dir: &Path) -> Result<(), Error> {
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(source) => {
            return Err(Error::Io {
                path: dir.to_owned(),
                source,
            });
        }
    }
    let metadata = fs::metadata(dir).map_err(|source| Error::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(Error::CachePermissions {
            path: dir.to_owned(),
            mode,
        });
    }
    Ok(())
}
