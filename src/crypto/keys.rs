//! Envelope keys. Each object's data is sealed under its own data key (DEK);
//! the DEK is stored only wrapped by a tenant's key encryption key (KEK).
//! KEKs are versioned per tenant and live in a key provider: key files in a
//! local directory ([`LocalKeyring`]) or a PKCS#11 token (`pkcs11`).
//!
//! Owns the [`KeyProvider`] contract, the wrapped-key format, the key file
//! layout and its permission rules. Never prints, logs or returns key bytes,
//! and never chooses a provider: the appliance wires exactly one.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, DirBuilder, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};

use super::Error;
use super::digest::random_array;
use super::secret_file::{self, io_error};
use super::seg1::{NONCE_LEN, TAG_LEN};

pub(super) const KEY_LEN: usize = 32;
/// `nonce || sealed DEK || tag`, whichever provider sealed it.
pub(super) const WRAPPED_LEN: usize = NONCE_LEN + KEY_LEN + TAG_LEN;
const MAX_TENANT_LEN: usize = 64;

/// The provider part of a [`KekId`] for key files.
pub const LOCAL_PROVIDER: &str = "local";

/// A per-object data encryption key: 32 random bytes.
///
/// The bytes are zeroed when the value is dropped. Moves may leave copies on
/// the stack that Rust gives no way to clear; zeroing on drop only shortens
/// the time the key lingers in memory.
#[derive(Clone)]
pub struct Dek([u8; KEY_LEN]);

impl Dek {
    pub fn generate() -> Self {
        Dek(random_array())
    }

    /// The raw key, for key derivation and wrapping inside this module only.
    pub(super) fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// A DEK from unwrapped bytes; `None` unless exactly 32 bytes.
    pub(super) fn from_slice(bytes: &[u8]) -> Option<Dek> {
        let mut dek = Dek([0u8; KEY_LEN]);
        if bytes.len() != KEY_LEN {
            return None;
        }
        dek.0.copy_from_slice(bytes);
        Some(dek)
    }
}

impl fmt::Debug for Dek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Dek(<redacted>)")
    }
}

impl Drop for Dek {
    fn drop(&mut self) {
        for byte in &mut self.0 {
            // SAFETY: `byte` is a valid, aligned, exclusive reference. A
            // volatile write is used so the compiler cannot remove the store
            // as dead just because the value is about to be freed.
            unsafe { std::ptr::write_volatile(byte, 0) };
        }
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    }
}

/// Names one version of a tenant's key encryption key:
/// `<provider>:<tenant>:v<N>`, e.g. `local:acme:v3` or `pkcs11:acme:v1`.
/// The name is bound into every wrap, so a wrapped key relabelled with
/// another id does not unwrap.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KekId(String);

impl KekId {
    pub(super) fn new(provider: &str, tenant: &str, version: u32) -> Self {
        KekId(format!("{provider}:{tenant}:v{version}"))
    }

    fn local(tenant: &str, version: u32) -> Self {
        Self::new(LOCAL_PROVIDER, tenant, version)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The provider, tenant and version this id names; `None` for an id
    /// that is not of the form `<provider>:<tenant>:v<N>`.
    pub fn parts(&self) -> Option<(&str, &str, u32)> {
        let mut fields = self.0.split(':');
        let (provider, tenant, version) = (fields.next()?, fields.next()?, fields.next()?);
        if fields.next().is_some() || validate_tenant(tenant).is_err() {
            return None;
        }
        Some((provider, tenant, parse_version(version.strip_prefix('v')?)?))
    }

    pub fn tenant(&self) -> Option<&str> {
        self.parts().map(|(_, tenant, _)| tenant)
    }
}

impl fmt::Display for KekId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A version number without sign or leading zeros, so one version has one
/// spelling (and one key file).
pub(super) fn parse_version(digits: &str) -> Option<u32> {
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if canonical { digits.parse().ok() } else { None }
}

/// A DEK sealed under a KEK, as stored next to the object's metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedDek {
    pub kek: KekId,
    /// `nonce || ciphertext || tag`.
    #[serde(with = "base64_blob")]
    pub blob: Vec<u8>,
}

/// Serializes bytes as a standard-alphabet, padded base64 string.
mod base64_blob {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// The AAD of a wrap: the object id and the KEK's id. A wrapped DEK copied
/// onto another object's record, or relabelled with another KEK id, fails
/// to unwrap.
pub(super) fn wrap_aad(object_id: [u8; 16], kek: &KekId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(object_id.len() + kek.0.len());
    aad.extend_from_slice(&object_id);
    aad.extend_from_slice(kek.0.as_bytes());
    aad
}

/// The error for a wrapped key that does not open; names only the KEK.
pub(super) fn integrity(kek: &KekId) -> Error {
    Error::Integrity {
        what: format!("wrapped data key ({kek})"),
    }
}

/// What every key provider offers. Calls may block (file I/O, a round trip
/// to an HSM): callers run them on blocking threads, never on the reactor.
///
/// A provider fails closed: when its keys cannot be reached it returns
/// [`Error::KeyProviderUnavailable`], never a plaintext key or a key from
/// another provider.
pub trait KeyProvider: Send + Sync {
    /// `file` or `pkcs11`, as configured (`keys.provider`).
    fn kind(&self) -> &'static str;

    /// Seals `dek` for `object_id` under the tenant's current KEK, creating
    /// the tenant's first KEK when it has none yet.
    fn wrap(&self, tenant: &str, dek: &Dek, object_id: [u8; 16]) -> Result<WrappedDek, Error>;

    /// Opens a wrapped DEK with whichever KEK version it names.
    fn unwrap(&self, wrapped: &WrappedDek, object_id: [u8; 16]) -> Result<Dek, Error>;

    /// The tenant's current KEK; `None` when the tenant has no key.
    fn current(&self, tenant: &str) -> Result<Option<KekId>, Error>;

    /// Makes sure the tenant has a KEK; true when this call created it.
    fn ensure(&self, tenant: &str) -> Result<(KekId, bool), Error>;

    /// Creates a new KEK version and makes it current. The new key is
    /// durable before this returns; older versions stay for unwrapping.
    fn rotate(&self, tenant: &str) -> Result<KekId, Error>;

    /// Every KEK version held, ordered by tenant and version.
    fn versions(&self) -> Result<Vec<KekVersion>, Error>;

    /// Deletes one old KEK version for good. Refuses a tenant's current KEK.
    /// Every DEK still wrapped by it becomes unreadable: callers retire a
    /// version only after checking that nothing uses it.
    fn retire(&self, id: &KekId) -> Result<(), Error>;

    /// Deletes every KEK version of the tenant (crypto-shredding: all of its
    /// objects become unreadable). Returns how many versions were deleted.
    fn destroy_tenant(&self, tenant: &str) -> Result<usize, Error>;
}

/// One KEK version a provider holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KekVersion {
    pub id: KekId,
    pub tenant: String,
    pub version: u32,
    /// New objects of the tenant are wrapped with it.
    pub current: bool,
}

/// Checks a tenant name: 1 to 64 of `[a-z0-9_-]`, so it is safe in file
/// names, token labels and key ids.
pub fn validate_tenant(tenant: &str) -> Result<(), Error> {
    let valid = (1..=MAX_TENANT_LEN).contains(&tenant.len())
        && tenant
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidTenant(tenant.to_owned()))
    }
}

/// Lists `versions` (ascending) of one tenant as [`KekVersion`]s.
pub(super) fn version_list(
    tenant: &str,
    versions: impl Iterator<Item = (u32, KekId)>,
) -> Vec<KekVersion> {
    let mut list: Vec<KekVersion> = versions
        .map(|(version, id)| KekVersion {
            id,
            tenant: tenant.to_owned(),
            version,
            current: false,
        })
        .collect();
    if let Some(last) = list.last_mut() {
        last.current = true;
    }
    list
}

/// A key encryption key held in memory (AES-256-GCM).
pub struct Kek {
    id: KekId,
    key: LessSafeKey,
}

impl Kek {
    fn new(id: KekId, key_bytes: &[u8; KEY_LEN]) -> Self {
        // Invariant: AES-256-GCM takes exactly KEY_LEN bytes.
        let unbound = UnboundKey::new(&AES_256_GCM, key_bytes).expect("aes-256 key is 32 bytes");
        Kek {
            id,
            key: LessSafeKey::new(unbound),
        }
    }

    pub fn id(&self) -> &KekId {
        &self.id
    }

    /// Seals `dek` for the object `object_id` (see [`wrap_aad`]).
    pub fn wrap(&self, dek: &Dek, object_id: [u8; 16]) -> WrappedDek {
        let nonce = random_array::<NONCE_LEN>();
        let mut blob = Vec::with_capacity(WRAPPED_LEN);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(dek.expose());
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(wrap_aad(object_id, &self.id)),
                &mut blob[NONCE_LEN..],
            )
            // Invariant: ring only refuses inputs far longer than 32 bytes.
            .expect("sealing a 32-byte key cannot fail");
        blob.extend_from_slice(tag.as_ref());
        WrappedDek {
            kek: self.id.clone(),
            blob,
        }
    }

    pub fn unwrap(&self, wrapped: &WrappedDek, object_id: [u8; 16]) -> Result<Dek, Error> {
        if wrapped.blob.len() != WRAPPED_LEN || wrapped.kek != self.id {
            return Err(integrity(&wrapped.kek));
        }
        let mut blob = wrapped.blob.clone();
        let (nonce, sealed) = blob.split_at_mut(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| integrity(&wrapped.kek))?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(wrap_aad(object_id, &self.id)), sealed)
            .map_err(|_| integrity(&wrapped.kek))?;
        let dek = Dek::from_slice(plain);
        plain.fill(0);
        dek.ok_or_else(|| integrity(&wrapped.kek))
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Per tenant, its key versions in ascending order.
type Tenants = BTreeMap<String, Vec<(u32, Arc<Kek>)>>;

/// The file key provider: KEKs kept as files in one directory, one file per
/// tenant and version: `<dir>/<tenant>.v<N>.kek`, holding the key as 64 hex
/// digits and a newline, mode 0600 in a 0700 directory. A tenant's highest
/// version is current; older ones stay until rotation retires them.
///
/// Every key file is loaded (and its permissions checked) when the keyring
/// opens; files are created once and never replaced, and deleting one
/// (retire, destroy) syncs the directory so the deletion survives a crash.
#[derive(Debug)]
pub struct LocalKeyring {
    dir: PathBuf,
    /// The tenant `open_or_create` was asked for; see [`LocalKeyring::current`].
    home: String,
    /// Per tenant, its versions in ascending order; never an empty list.
    tenants: Mutex<Tenants>,
}

impl LocalKeyring {
    /// Loads every key file in `dir`, creating the directory (mode 0700)
    /// when missing. Creates no key.
    pub fn open(dir: &Path) -> Result<LocalKeyring, Error> {
        Self::load(dir, "default")
    }

    /// Loads every key file in `dir` and makes sure `tenant` has a key.
    /// Returns the path of the key file it created, if any, so the caller
    /// can tell the administrator once.
    pub fn open_or_create(
        dir: &Path,
        tenant: &str,
    ) -> Result<(LocalKeyring, Option<PathBuf>), Error> {
        validate_tenant(tenant)?;
        let keyring = Self::load(dir, tenant)?;
        let (id, created) = keyring.ensure(tenant)?;
        let created = created.then(|| keyring.path_of(tenant, id.parts().map_or(1, |p| p.2)));
        Ok((keyring, created))
    }

    fn load(dir: &Path, home: &str) -> Result<LocalKeyring, Error> {
        create_private_dir(dir)?;
        Ok(LocalKeyring {
            dir: dir.to_path_buf(),
            home: home.to_owned(),
            tenants: Mutex::new(load_keks(dir)?),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current key of the tenant this keyring was opened for with
    /// [`LocalKeyring::open_or_create`], for tools that work with one
    /// tenant's keys directly.
    ///
    /// # Panics
    /// If that tenant's keys were destroyed through this keyring since.
    pub fn current(&self) -> Arc<Kek> {
        let tenants = self.lock();
        let versions = tenants
            .get(&self.home)
            .expect("the keyring's own tenant keeps its keys");
        versions[versions.len() - 1].1.clone()
    }

    /// The key `id` names.
    pub fn get(&self, id: &KekId) -> Result<Arc<Kek>, Error> {
        let unknown = || Error::UnknownKek(id.clone());
        let (provider, tenant, version) = id.parts().ok_or_else(unknown)?;
        if provider != LOCAL_PROVIDER {
            return Err(unknown());
        }
        let tenants = self.lock();
        let versions = tenants.get(tenant).ok_or_else(unknown)?;
        versions
            .iter()
            .find(|(v, _)| *v == version)
            .map(|(_, kek)| kek.clone())
            .ok_or_else(unknown)
    }

    fn lock(&self) -> MutexGuard<'_, Tenants> {
        // A panic while holding the lock cannot leave the map half-updated:
        // every change is one insert or remove after the file work is done.
        self.tenants
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn path_of(&self, tenant: &str, version: u32) -> PathBuf {
        self.dir.join(key_file_name(tenant, version))
    }

    /// The tenant's current key, creating version 1 when it has none.
    fn current_or_create(&self, tenant: &str) -> Result<(Arc<Kek>, bool), Error> {
        validate_tenant(tenant)?;
        let mut tenants = self.lock();
        if let Some(versions) = tenants.get(tenant) {
            return Ok((versions[versions.len() - 1].1.clone(), false));
        }
        let kek = Arc::new(create_key_file(&self.dir, tenant, 1)?);
        tenants.insert(tenant.to_owned(), vec![(1, kek.clone())]);
        Ok((kek, true))
    }
}

impl KeyProvider for LocalKeyring {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn wrap(&self, tenant: &str, dek: &Dek, object_id: [u8; 16]) -> Result<WrappedDek, Error> {
        let (kek, _) = self.current_or_create(tenant)?;
        Ok(kek.wrap(dek, object_id))
    }

    fn unwrap(&self, wrapped: &WrappedDek, object_id: [u8; 16]) -> Result<Dek, Error> {
        self.get(&wrapped.kek)?.unwrap(wrapped, object_id)
    }

    fn current(&self, tenant: &str) -> Result<Option<KekId>, Error> {
        Ok(self
            .lock()
            .get(tenant)
            .map(|versions| versions[versions.len() - 1].1.id.clone()))
    }

    fn ensure(&self, tenant: &str) -> Result<(KekId, bool), Error> {
        let (kek, created) = self.current_or_create(tenant)?;
        Ok((kek.id.clone(), created))
    }

    fn rotate(&self, tenant: &str) -> Result<KekId, Error> {
        validate_tenant(tenant)?;
        let mut tenants = self.lock();
        let version = tenants
            .get(tenant)
            .and_then(|versions| versions.last())
            .map_or(1, |(v, _)| v + 1);
        // The file is durable before the version is used for anything.
        let kek = Arc::new(create_key_file(&self.dir, tenant, version)?);
        let id = kek.id.clone();
        tenants
            .entry(tenant.to_owned())
            .or_default()
            .push((version, kek));
        Ok(id)
    }

    fn versions(&self) -> Result<Vec<KekVersion>, Error> {
        Ok(self
            .lock()
            .iter()
            .flat_map(|(tenant, versions)| {
                version_list(tenant, versions.iter().map(|(v, k)| (*v, k.id.clone())))
            })
            .collect())
    }

    fn retire(&self, id: &KekId) -> Result<(), Error> {
        let unknown = || Error::UnknownKek(id.clone());
        let (_, tenant, version) = id.parts().ok_or_else(unknown)?;
        let mut tenants = self.lock();
        let versions = tenants.get_mut(tenant).ok_or_else(unknown)?;
        let index = versions
            .iter()
            .position(|(v, kek)| *v == version && &kek.id == id)
            .ok_or_else(unknown)?;
        if index + 1 == versions.len() {
            return Err(Error::RetireCurrent(id.clone()));
        }
        delete_key_files(&self.dir, &[self.path_of(tenant, version)])?;
        versions.remove(index);
        Ok(())
    }

    fn destroy_tenant(&self, tenant: &str) -> Result<usize, Error> {
        validate_tenant(tenant)?;
        let mut tenants = self.lock();
        // Also any file of the tenant this keyring did not load: a shredded
        // tenant must leave no key behind.
        let mut paths = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_error(&self.dir))? {
            let entry = entry.map_err(io_error(&self.dir))?;
            let name = entry.file_name();
            if name
                .to_str()
                .and_then(parse_key_file_name)
                .is_some_and(|(t, _)| t == tenant)
            {
                paths.push(entry.path());
            }
        }
        delete_key_files(&self.dir, &paths)?;
        tenants.remove(tenant);
        Ok(paths.len())
    }
}

fn create_private_dir(dir: &Path) -> Result<(), Error> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error(dir))
}

fn key_file_name(tenant: &str, version: u32) -> String {
    format!("{tenant}.v{version}.kek")
}

/// The tenant and version in a file name of the form `<tenant>.v<N>.kek`.
/// Temporary files (a leading dot) and other names are not key files.
fn parse_key_file_name(name: &str) -> Option<(&str, u32)> {
    let (tenant, digits) = name.strip_suffix(".kek")?.rsplit_once(".v")?;
    validate_tenant(tenant).ok()?;
    Some((tenant, parse_version(digits)?))
}

fn load_keks(dir: &Path) -> Result<Tenants, Error> {
    let mut tenants = Tenants::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name();
        let Some((tenant, version)) = name.to_str().and_then(parse_key_file_name) else {
            continue;
        };
        let key = read_key_file(&entry.path())?;
        let kek = Kek::new(KekId::local(tenant, version), &key);
        tenants
            .entry(tenant.to_owned())
            .or_default()
            .push((version, Arc::new(kek)));
    }
    for versions in tenants.values_mut() {
        versions.sort_by_key(|(version, _)| *version);
    }
    Ok(tenants)
}

/// Reads one key file (see `secret_file` for the rules it must meet).
fn read_key_file(path: &Path) -> Result<[u8; KEY_LEN], Error> {
    secret_file::read(path)?.ok_or_else(|| io_error(path)(io::ErrorKind::NotFound.into()))
}

/// Creates key file `version` for `tenant` and returns the key.
///
/// The key is written to a temporary file created with mode 0600 (never
/// widened and then narrowed), synced, then hard-linked into place. Linking
/// rather than renaming means an existing key file is never replaced: losing
/// a key would lose every object wrapped with it. The directory is synced so
/// the new name survives a crash before any object is wrapped with the key.
fn create_key_file(dir: &Path, tenant: &str, version: u32) -> Result<Kek, Error> {
    let path = dir.join(key_file_name(tenant, version));
    let key = random_array::<KEY_LEN>();
    secret_file::create(&path, &key)?;
    Ok(Kek::new(KekId::local(tenant, version), &key))
}

/// Deletes key files and syncs the directory, so a deleted key stays
/// deleted after a crash.
fn delete_key_files(dir: &Path, paths: &[PathBuf]) -> Result<(), Error> {
    for path in paths {
        match fs::remove_file(path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(io_error(path)(err)),
            _ => {}
        }
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::secret_file::write_private_file;
    use super::*;

    const OBJECT: [u8; 16] = [7; 16];

    fn keyring(dir: &Path) -> (LocalKeyring, Option<PathBuf>) {
        LocalKeyring::open_or_create(dir, "acme").expect("keyring opens")
    }

    fn file_mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn wrap_unwrap_round_trip() {
        let kek = Kek::new(KekId::local("t", 1), &[1; 32]);
        let dek = Dek::generate();
        let wrapped = kek.wrap(&dek, OBJECT);
        assert_eq!(wrapped.blob.len(), WRAPPED_LEN);
        assert_eq!(kek.unwrap(&wrapped, OBJECT).unwrap().0, dek.0);
    }

    #[test]
    fn wraps_use_fresh_nonces() {
        let kek = Kek::new(KekId::local("t", 1), &[1; 32]);
        let dek = Dek::generate();
        assert_ne!(kek.wrap(&dek, OBJECT).blob, kek.wrap(&dek, OBJECT).blob);
    }

    #[test]
    fn unwrap_rejects_wrong_object_key_or_tampering() {
        let kek = Kek::new(KekId::local("t", 1), &[1; 32]);
        let other = Kek::new(KekId::local("t", 2), &[2; 32]);
        let wrapped = kek.wrap(&Dek::generate(), OBJECT);
        let integrity = |r: Result<Dek, Error>| matches!(r, Err(Error::Integrity { .. }));

        assert!(integrity(kek.unwrap(&wrapped, [8; 16])));
        assert!(integrity(other.unwrap(&wrapped, OBJECT)));
        let mut flipped = wrapped.clone();
        flipped.blob[20] ^= 1;
        assert!(integrity(kek.unwrap(&flipped, OBJECT)));
        let mut short = wrapped.clone();
        short.blob.pop();
        assert!(integrity(kek.unwrap(&short, OBJECT)));
        // The same key under another name: the id is bound into the wrap.
        let renamed = Kek::new(KekId::local("t", 3), &[1; 32]);
        let mut relabelled = wrapped.clone();
        relabelled.kek = renamed.id.clone();
        assert!(integrity(renamed.unwrap(&relabelled, OBJECT)));
    }

    #[test]
    fn wrapped_dek_serializes_blob_as_base64() {
        let wrapped = WrappedDek {
            kek: KekId::local("acme", 3),
            blob: vec![0xfb, 0xff, 0x00],
        };
        let json = serde_json::to_string(&wrapped).unwrap();
        assert_eq!(json, r#"{"kek":"local:acme:v3","blob":"+/8A"}"#);
        let back: WrappedDek = serde_json::from_str(&json).unwrap();
        assert_eq!(back, wrapped);
        assert!(serde_json::from_str::<WrappedDek>(r#"{"kek":"x","blob":"%%"}"#).is_err());
    }

    #[test]
    fn kek_ids_parse_strictly() {
        let id = KekId::new("pkcs11", "acme-2", 12);
        assert_eq!(id.as_str(), "pkcs11:acme-2:v12");
        assert_eq!(id.parts(), Some(("pkcs11", "acme-2", 12)));
        for bad in [
            "local:acme",
            "local:acme:v0",
            "local:acme:v01",
            "local:acme:12",
            "local:Acme:v1",
            "local:acme:v1:x",
        ] {
            assert_eq!(KekId(bad.into()).parts(), None, "{bad}");
        }
    }

    #[test]
    fn dek_debug_hides_bytes() {
        assert_eq!(format!("{:?}", Dek([0xab; 32])), "Dek(<redacted>)");
    }

    #[test]
    fn keyring_creates_private_key_and_reopens_it() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("keys");
        let (first, created) = keyring(&dir);
        let path = created.expect("first open creates a key");
        assert_eq!(path, dir.join("acme.v1.kek"));
        assert_eq!(file_mode(&path), 0o600);
        assert_eq!(file_mode(&dir), 0o700);
        assert_eq!(fs::read(&path).unwrap().len(), 65);
        assert_eq!(first.current().id().as_str(), "local:acme:v1");

        let wrapped = first.wrap("acme", &Dek::generate(), OBJECT).unwrap();
        let (second, created) = keyring(&dir);
        assert!(created.is_none());
        assert!(KeyProvider::unwrap(&second, &wrapped, OBJECT).is_ok());
        assert_eq!(names(&dir), ["acme.v1.kek"], "no temp file left");
    }

    #[test]
    fn keyring_refuses_group_readable_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let (_, created) = keyring(dir.path());
        let path = created.unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = LocalKeyring::open_or_create(dir.path(), "acme").unwrap_err();
        assert!(matches!(err, Error::KeyFilePermissions { mode: 0o644, .. }));
        let message = err.to_string();
        assert!(
            message.contains(&format!("chmod 600 {}", path.display())),
            "{message}"
        );
        // Any tenant's key file is checked when the keyring opens.
        assert!(LocalKeyring::open(dir.path()).is_err());
    }

    #[test]
    fn keyring_rejects_malformed_key_file_without_echoing_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acme.v1.kek");
        write_private_file(&path, b"secretsecret\n").unwrap();
        let err = LocalKeyring::open_or_create(dir.path(), "acme").unwrap_err();
        assert!(matches!(err, Error::KeyFile { .. }));
        assert!(!err.to_string().contains("secret"));
    }

    #[test]
    fn rotate_makes_new_current_and_keeps_old_keys() {
        let dir = tempfile::tempdir().unwrap();
        let (ring, _) = keyring(dir.path());
        let old = ring.wrap("acme", &Dek::generate(), OBJECT).unwrap();
        let current = ring.rotate("acme").unwrap();
        assert_eq!(current.as_str(), "local:acme:v2");
        assert_eq!(file_mode(&dir.path().join("acme.v2.kek")), 0o600);
        assert!(KeyProvider::unwrap(&ring, &old, OBJECT).is_ok());
        let new = ring.wrap("acme", &Dek::generate(), OBJECT).unwrap();
        assert_eq!(new.kek, current);

        let reopened = LocalKeyring::open(dir.path()).unwrap();
        assert_eq!(
            KeyProvider::current(&reopened, "acme").unwrap(),
            Some(current)
        );
        assert!(KeyProvider::unwrap(&reopened, &old, OBJECT).is_ok());
        let unknown = KekId::local("acme", 9);
        assert!(matches!(reopened.get(&unknown), Err(Error::UnknownKek(_))));
    }

    #[test]
    fn retire_deletes_old_versions_only() {
        let dir = tempfile::tempdir().unwrap();
        let (ring, _) = keyring(dir.path());
        let old = ring.wrap("acme", &Dek::generate(), OBJECT).unwrap();
        let current = ring.rotate("acme").unwrap();
        assert!(matches!(
            ring.retire(&current),
            Err(Error::RetireCurrent(_))
        ));
        ring.retire(&old.kek).unwrap();
        assert_eq!(names(dir.path()), ["acme.v2.kek"]);
        assert!(matches!(
            KeyProvider::unwrap(&ring, &old, OBJECT),
            Err(Error::UnknownKek(_))
        ));
        assert!(matches!(ring.retire(&old.kek), Err(Error::UnknownKek(_))));
        // The next version follows the highest, never reusing a number.
        assert_eq!(ring.rotate("acme").unwrap().as_str(), "local:acme:v3");
    }

    #[test]
    fn tenants_get_their_own_keys_on_first_wrap() {
        let dir = tempfile::tempdir().unwrap();
        let ring = LocalKeyring::open(dir.path()).unwrap();
        assert!(names(dir.path()).is_empty(), "opening creates no key");
        assert_eq!(KeyProvider::current(&ring, "acme").unwrap(), None);
        let a = ring.wrap("acme", &Dek::generate(), OBJECT).unwrap();
        let b = ring.wrap("beta", &Dek::generate(), OBJECT).unwrap();
        assert_eq!(a.kek.as_str(), "local:acme:v1");
        assert_eq!(b.kek.as_str(), "local:beta:v1");
        assert_eq!(names(dir.path()), ["acme.v1.kek", "beta.v1.kek"]);
        // Another tenant's KEK under this tenant's name does not open it.
        let forged = WrappedDek {
            kek: a.kek.clone(),
            blob: b.blob.clone(),
        };
        assert!(matches!(
            KeyProvider::unwrap(&ring, &forged, OBJECT),
            Err(Error::Integrity { .. })
        ));
        let listed: Vec<String> = ring
            .versions()
            .unwrap()
            .iter()
            .map(|v| format!("{} {}", v.id, v.current))
            .collect();
        assert_eq!(listed, ["local:acme:v1 true", "local:beta:v1 true"]);
    }

    #[test]
    fn destroy_tenant_shreds_only_that_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let ring = LocalKeyring::open(dir.path()).unwrap();
        let a = ring.wrap("acme", &Dek::generate(), OBJECT).unwrap();
        ring.rotate("acme").unwrap();
        let b = ring.wrap("beta", &Dek::generate(), OBJECT).unwrap();
        assert_eq!(ring.destroy_tenant("acme").unwrap(), 2);
        assert_eq!(names(dir.path()), ["beta.v1.kek"]);
        assert!(KeyProvider::unwrap(&ring, &a, OBJECT).is_err());
        assert!(KeyProvider::unwrap(&ring, &b, OBJECT).is_ok());
        let reopened = LocalKeyring::open(dir.path()).unwrap();
        assert!(KeyProvider::unwrap(&reopened, &a, OBJECT).is_err());
        assert_eq!(KeyProvider::current(&reopened, "acme").unwrap(), None);
    }

    #[test]
    fn tenants_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let ring = LocalKeyring::open(dir.path()).unwrap();
        for bad in ["", "Acme", "a/b", "a.b", "a:b", &"x".repeat(65)] {
            let err = LocalKeyring::open_or_create(dir.path(), bad).unwrap_err();
            assert!(matches!(err, Error::InvalidTenant(_)), "{bad:?}");
            assert!(ring.wrap(bad, &Dek::generate(), OBJECT).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn key_file_names_parse_canonically() {
        assert_eq!(parse_key_file_name("acme.v12.kek"), Some(("acme", 12)));
        assert_eq!(parse_key_file_name("acme-2.v1.kek"), Some(("acme-2", 1)));
        assert_eq!(parse_key_file_name("acme.v0.kek"), None);
        assert_eq!(parse_key_file_name("acme.v01.kek"), None);
        assert_eq!(parse_key_file_name("acme.v.kek"), None);
        assert_eq!(parse_key_file_name(".acme.v1.kek.tmp"), None);
        assert_eq!(parse_key_file_name(".acme.v1.kek"), None);
        assert_eq!(parse_key_file_name("audit.key"), None);
    }
}
