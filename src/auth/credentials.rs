//! Tenants and their API keys, kept in `<data_dir>/auth/credentials.json`
//! (mode 0600). A key is shown once, when created; the file holds only its
//! SHA-256. API keys are 256 random bits, so a plain hash is as strong as a
//! slow password hash would be, and checking one costs microseconds.
//!
//! The CLI and the appliance share the file: every change takes an
//! exclusive lock, rewrites the file atomically (temporary file, fsync,
//! rename, directory fsync), and readers reload it when its modification
//! time changes, so a key revoked by `strongroom key revoke` stops working
//! on a running appliance without a restart.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::{Error, now_secs, valid_tenant_name};
use crate::crypto::{constant_time_eq, random_array, sha256};

const FILE_NAME: &str = "credentials.json";
const LOCK_NAME: &str = "credentials.lock";
/// API keys look like `srk_<16 hex id>_<43 base64url secret>`.
const KEY_PREFIX: &str = "srk_";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Contents {
    #[serde(default)]
    tenants: BTreeMap<String, TenantEntry>,
    #[serde(default)]
    keys: Vec<KeyEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantEntry {
    pub created_at: u64,
}

/// What the file keeps about an API key: never the key itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyEntry {
    /// Public part of the key, safe to log and to revoke by.
    pub id: String,
    pub tenant: String,
    /// May ask for the `admin` scope.
    pub admin: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// SHA-256 of the secret part, hex.
    sha256: String,
    pub created_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
}

/// A freshly created key: the only moment its secret exists outside the
/// client that receives it.
pub struct NewKey {
    pub entry: KeyEntry,
    pub secret: String,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("entry", &self.entry)
            .finish_non_exhaustive()
    }
}

/// Tenants and keys as listed for an administrator.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    pub tenants: Vec<String>,
    pub keys: Vec<KeyEntry>,
}

pub struct CredentialStore {
    dir: PathBuf,
    cache: Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    /// Modification time and inode of the file last read: an atomic
    /// rewrite always changes the inode, even within one clock tick.
    modified: Option<(SystemTime, u64)>,
    contents: Contents,
}

impl CredentialStore {
    /// Opens (creating the 0700 directory) the store in `dir`.
    pub fn open(dir: &Path) -> Result<CredentialStore, Error> {
        create_private_dir(dir)?;
        let store = CredentialStore {
            dir: dir.to_path_buf(),
            cache: Mutex::new(Cached::default()),
        };
        store.read(|_| ())?;
        Ok(store)
    }

    fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Runs `look` over the file's contents, reloaded first if the file
    /// changed on disk (one `stat` per call; no copy of the contents).
    fn read<T>(&self, look: impl FnOnce(&Contents) -> T) -> Result<T, Error> {
        let path = self.path();
        let modified = match fs::metadata(&path) {
            Ok(meta) => meta.modified().ok().map(|time| (time, meta.ino())),
            Err(err) if err.kind() == io::ErrorKind::NotFound => None,
            Err(source) => return Err(Error::Store { path, source }),
        };
        let mut cache = self.cache.lock().expect("credential cache poisoned");
        if cache.modified != modified || modified.is_none() {
            cache.contents = read_contents(&path)?;
            cache.modified = modified;
        }
        Ok(look(&cache.contents))
    }

    pub fn is_empty(&self) -> Result<bool, Error> {
        self.read(|c| c.tenants.is_empty() && c.keys.is_empty())
    }

    pub fn has_tenant(&self, tenant: &str) -> Result<bool, Error> {
        self.read(|c| c.tenants.contains_key(tenant))
    }

    pub fn list(&self) -> Result<Listing, Error> {
        self.read(|c| Listing {
            tenants: c.tenants.keys().cloned().collect(),
            keys: c.keys.clone(),
        })
    }

    /// Adds a tenant; adding one that exists is an error, so a typo does not
    /// silently share a tenant.
    pub fn add_tenant(&self, tenant: &str) -> Result<(), Error> {
        if !valid_tenant_name(tenant) {
            return Err(Error::InvalidTenant(tenant.chars().take(80).collect()));
        }
        self.update(|contents| {
            if contents.tenants.contains_key(tenant) {
                return Err(Error::TenantExists(tenant.to_owned()));
            }
            contents.tenants.insert(
                tenant.to_owned(),
                TenantEntry {
                    created_at: now_secs(),
                },
            );
            Ok(())
        })
    }

    /// Removes a tenant and revokes its keys.
    pub fn remove_tenant(&self, tenant: &str) -> Result<(), Error> {
        self.update(|contents| {
            if contents.tenants.remove(tenant).is_none() {
                return Err(Error::UnknownTenant(tenant.to_owned()));
            }
            let now = now_secs();
            for key in contents.keys.iter_mut().filter(|k| k.tenant == tenant) {
                key.revoked_at.get_or_insert(now);
            }
            Ok(())
        })
    }

    /// Creates an API key for an existing tenant.
    pub fn create_key(
        &self,
        tenant: &str,
        admin: bool,
        label: Option<String>,
    ) -> Result<NewKey, Error> {
        let id = hex::encode(random_array::<8>());
        let secret_part = URL_SAFE_NO_PAD.encode(random_array::<32>());
        let entry = KeyEntry {
            id: id.clone(),
            tenant: tenant.to_owned(),
            admin,
            label,
            sha256: hex::encode(sha256(secret_part.as_bytes())),
            created_at: now_secs(),
            revoked_at: None,
        };
        let stored = entry.clone();
        self.update(move |contents| {
            if !contents.tenants.contains_key(&stored.tenant) {
                return Err(Error::UnknownTenant(stored.tenant.clone()));
            }
            contents.keys.push(stored);
            Ok(())
        })?;
        Ok(NewKey {
            entry,
            secret: format!("{KEY_PREFIX}{id}_{secret_part}"),
        })
    }

    pub fn revoke_key(&self, id: &str) -> Result<KeyEntry, Error> {
        let mut revoked = None;
        self.update(|contents| {
            let key = contents
                .keys
                .iter_mut()
                .find(|k| k.id == id)
                .ok_or_else(|| Error::UnknownKey(id.chars().take(40).collect()))?;
            key.revoked_at.get_or_insert(now_secs());
            revoked = Some(key.clone());
            Ok(())
        })?;
        Ok(revoked.expect("set by the update"))
    }

    /// The live key `presented` is, if it is one.
    pub fn check(&self, presented: &str) -> Result<KeyEntry, Error> {
        let (id, secret) = split_key(presented).ok_or(Error::InvalidApiKey)?;
        let digest = hex::encode(sha256(secret.as_bytes()));
        self.read(|contents| {
            let entry = contents
                .keys
                .iter()
                .find(|k| k.id == id)
                .ok_or(Error::InvalidApiKey)?;
            if !constant_time_eq(digest.as_bytes(), entry.sha256.as_bytes()) {
                return Err(Error::InvalidApiKey);
            }
            if entry.revoked_at.is_some() || !contents.tenants.contains_key(&entry.tenant) {
                return Err(Error::InvalidApiKey);
            }
            Ok(entry.clone())
        })?
    }

    /// Read, change and rewrite the file under the lock.
    fn update(&self, change: impl FnOnce(&mut Contents) -> Result<(), Error>) -> Result<(), Error> {
        let lock_path = self.dir.join(LOCK_NAME);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(store_error(&lock_path))?;
        lock.lock().map_err(store_error(&lock_path))?;
        let path = self.path();
        let mut contents = read_contents(&path)?;
        change(&mut contents)?;
        write_contents(&path, &contents)?;
        // Force the next snapshot to reload what was just written.
        self.cache
            .lock()
            .expect("credential cache poisoned")
            .modified = None;
        Ok(())
    }
}

fn split_key(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let plausible = id.len() == 16
        && id.bytes().all(|b| b.is_ascii_hexdigit())
        && (40..=64).contains(&secret.len());
    plausible.then_some((id, secret))
}

/// Whether a bearer credential has the shape of an API key (rather than a
/// token), so the gateway can tell a client it sent the wrong kind.
pub fn looks_like_api_key(presented: &str) -> bool {
    presented.starts_with(KEY_PREFIX)
}

fn store_error(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Store {
        path: path.to_path_buf(),
        source,
    }
}

fn read_contents(path: &Path) -> Result<Contents, Error> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|err| Error::Corrupt {
            path: path.to_path_buf(),
            reason: err.to_string(),
        }),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Contents::default()),
        Err(source) => Err(Error::Store {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn write_contents(path: &Path, contents: &Contents) -> Result<(), Error> {
    let bytes = serde_json::to_vec_pretty(contents).expect("credentials serialise");
    write_private_atomically(path, &bytes)
}

/// Replaces `path` with `bytes` (mode 0600) so a crash leaves the old or
/// the new file, never a mix: temporary file, fsync, rename, directory
/// fsync. Every file of the auth directory is written this way.
pub(super) fn write_private_atomically(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = path.parent().expect("auth files live in a directory");
    let name = path.file_name().expect("auth files have a name");
    let temp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let _ = fs::remove_file(&temp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .map_err(store_error(&temp))?;
    file.write_all(bytes).map_err(store_error(&temp))?;
    file.sync_all().map_err(store_error(&temp))?;
    fs::rename(&temp, path).map_err(store_error(path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(store_error(dir))
}

pub(super) fn create_private_dir(dir: &Path) -> Result<(), Error> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(store_error(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, CredentialStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::open(&dir.path().join("auth")).unwrap();
        (dir, store)
    }

    #[test]
    fn created_keys_check_and_revoked_keys_do_not() {
        let (dir, store) = store();
        assert!(store.is_empty().unwrap());
        store.add_tenant("acme").unwrap();
        let key = store.create_key("acme", false, Some("ci".into())).unwrap();
        assert!(key.secret.starts_with("srk_"));
        assert_eq!(store.check(&key.secret).unwrap().tenant, "acme");

        let text = fs::read_to_string(dir.path().join("auth/credentials.json")).unwrap();
        let secret_part = key.secret.rsplit('_').next().unwrap();
        assert!(!text.contains(secret_part), "the secret is never stored");

        // A second store (the CLI) revokes; the first notices without restart.
        let other = CredentialStore::open(&dir.path().join("auth")).unwrap();
        other.revoke_key(&key.entry.id).unwrap();
        assert!(matches!(
            store.check(&key.secret),
            Err(Error::InvalidApiKey)
        ));
    }

    #[test]
    fn wrong_or_malformed_keys_fail_alike() {
        let (_dir, store) = store();
        store.add_tenant("acme").unwrap();
        let key = store.create_key("acme", true, None).unwrap();
        let mut wrong = key.secret.clone();
        let last = wrong.pop().unwrap();
        wrong.push(if last == 'A' { 'B' } else { 'A' });
        for bad in [wrong.as_str(), "", "srk_", "srk_zz_zz", "v4.public.x"] {
            assert!(
                matches!(store.check(bad), Err(Error::InvalidApiKey)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn tenants_must_exist_be_valid_and_unique() {
        let (_dir, store) = store();
        assert!(matches!(
            store.create_key("ghost", false, None),
            Err(Error::UnknownTenant(_))
        ));
        assert!(matches!(
            store.add_tenant("Bad Name"),
            Err(Error::InvalidTenant(_))
        ));
        store.add_tenant("acme").unwrap();
        assert!(matches!(
            store.add_tenant("acme"),
            Err(Error::TenantExists(_))
        ));
        let key = store.create_key("acme", false, None).unwrap();
        store.remove_tenant("acme").unwrap();
        assert!(store.check(&key.secret).is_err());
    }
}
