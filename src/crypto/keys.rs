//! Envelope keys. Each object's data is sealed under its own data key (DEK);
//! the DEK is stored only wrapped by a key encryption key (KEK) kept in a
//! local keyring directory. Owns the key file format and its permission
//! rules; never prints, logs or returns key bytes.

use std::fmt;
use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};

use super::Error;
use super::digest::random_array;
use super::secret_file::{self, io_error};
use super::seg1::{NONCE_LEN, TAG_LEN};

const KEY_LEN: usize = 32;
const WRAPPED_LEN: usize = NONCE_LEN + KEY_LEN + TAG_LEN;
const MAX_TENANT_LEN: usize = 64;

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

    /// The raw key, for key derivation inside this module only.
    pub(super) fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
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

/// Names a key encryption key: `local:<tenant>:v<N>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KekId(String);

impl KekId {
    fn local(tenant: &str, version: u32) -> Self {
        KekId(format!("local:{tenant}:v{version}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KekId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
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

/// A key encryption key (AES-256-GCM).
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

    /// Seals `dek` for the object `object_id`. Binding the object id and the
    /// KEK id into the AAD means a wrapped DEK copied onto another object's
    /// record, or relabelled with another KEK id, fails to unwrap.
    pub fn wrap(&self, dek: &Dek, object_id: [u8; 16]) -> WrappedDek {
        let nonce = random_array::<NONCE_LEN>();
        let mut blob = Vec::with_capacity(WRAPPED_LEN);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(dek.expose());
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.aad(object_id)),
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
        let integrity = || Error::Integrity {
            what: format!("wrapped data key ({})", wrapped.kek),
        };
        if wrapped.blob.len() != WRAPPED_LEN {
            return Err(integrity());
        }
        let mut blob = wrapped.blob.clone();
        let (nonce, sealed) = blob.split_at_mut(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| integrity())?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(self.aad(object_id)), sealed)
            .map_err(|_| integrity())?;
        let mut dek = Dek([0u8; KEY_LEN]);
        dek.0.copy_from_slice(plain);
        plain.fill(0);
        Ok(dek)
    }

    fn aad(&self, object_id: [u8; 16]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(object_id.len() + self.id.0.len());
        aad.extend_from_slice(&object_id);
        aad.extend_from_slice(self.id.0.as_bytes());
        aad
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// KEKs kept as files in one directory, one file per version:
/// `<dir>/<tenant>.v<N>.kek`, holding the key as 64 hex digits and a newline,
/// mode 0600 in a 0700 directory. The highest version is current; older ones
/// stay so existing objects can still be unwrapped.
#[derive(Debug)]
pub struct LocalKeyring {
    dir: PathBuf,
    tenant: String,
    /// Sorted by version, ascending; never empty.
    keks: Vec<(u32, Kek)>,
}

impl LocalKeyring {
    /// Loads every key version of `tenant` in `dir`, creating the directory
    /// and a first key when there is none. Returns the path of the key file it
    /// created, if any, so the caller can tell the administrator once.
    pub fn open_or_create(
        dir: &Path,
        tenant: &str,
    ) -> Result<(LocalKeyring, Option<PathBuf>), Error> {
        validate_tenant(dir, tenant)?;
        create_private_dir(dir)?;
        let mut keks = load_keks(dir, tenant)?;
        let created = if keks.is_empty() {
            let (path, kek) = create_key_file(dir, tenant, 1)?;
            keks.push((1, kek));
            Some(path)
        } else {
            None
        };
        let keyring = LocalKeyring {
            dir: dir.to_path_buf(),
            tenant: tenant.to_owned(),
            keks,
        };
        Ok((keyring, created))
    }

    /// The key new objects are wrapped with.
    pub fn current(&self) -> &Kek {
        // Invariant: construction and rotate never leave `keks` empty.
        &self.keks.last().expect("keyring holds at least one key").1
    }

    pub fn get(&self, id: &KekId) -> Result<&Kek, Error> {
        self.keks
            .iter()
            .map(|(_, kek)| kek)
            .find(|kek| &kek.id == id)
            .ok_or_else(|| Error::UnknownKek(id.clone()))
    }

    /// Unwraps with whichever version of the key `wrapped` names.
    pub fn unwrap(&self, wrapped: &WrappedDek, object_id: [u8; 16]) -> Result<Dek, Error> {
        self.get(&wrapped.kek)?.unwrap(wrapped, object_id)
    }

    /// Writes a new key version and makes it current. Older versions stay
    /// loaded for unwrapping.
    pub fn rotate(&mut self) -> Result<&Kek, Error> {
        let version = self.current_version() + 1;
        let (_, kek) = create_key_file(&self.dir, &self.tenant, version)?;
        self.keks.push((version, kek));
        Ok(self.current())
    }

    fn current_version(&self) -> u32 {
        self.keks.last().map_or(0, |(version, _)| *version)
    }
}

fn validate_tenant(dir: &Path, tenant: &str) -> Result<(), Error> {
    let valid = (1..=MAX_TENANT_LEN).contains(&tenant.len())
        && tenant
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if valid {
        return Ok(());
    }
    Err(Error::KeyFile {
        path: dir.to_path_buf(),
        reason: format!("tenant name {tenant:?} is not 1 to 64 of [a-z0-9_-]"),
    })
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

/// The version in a file name of the form `<tenant>.v<N>.kek`. Leading zeros
/// are rejected so one version cannot have two files.
fn parse_key_file_name(name: &str, tenant: &str) -> Option<u32> {
    let digits = name
        .strip_prefix(tenant)?
        .strip_prefix(".v")?
        .strip_suffix(".kek")?;
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if canonical { digits.parse().ok() } else { None }
}

fn load_keks(dir: &Path, tenant: &str) -> Result<Vec<(u32, Kek)>, Error> {
    let mut keks = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name();
        let Some(version) = name.to_str().and_then(|n| parse_key_file_name(n, tenant)) else {
            continue;
        };
        let key = read_key_file(&entry.path())?;
        keks.push((version, Kek::new(KekId::local(tenant, version), &key)));
    }
    keks.sort_by_key(|(version, _)| *version);
    Ok(keks)
}

/// Reads one key file (see `secret_file` for the rules it must meet).
fn read_key_file(path: &Path) -> Result<[u8; KEY_LEN], Error> {
    secret_file::read(path)?.ok_or_else(|| io_error(path)(io::ErrorKind::NotFound.into()))
}

/// Creates key file `version` for `tenant` and returns its path and the key.
///
/// The key is written to a temporary file created with mode 0600 (never
/// widened and then narrowed), synced, then hard-linked into place. Linking
/// rather than renaming means an existing key file is never replaced: losing
/// a key would lose every object wrapped with it. The directory is synced so
/// the new name survives a crash.
fn create_key_file(dir: &Path, tenant: &str, version: u32) -> Result<(PathBuf, Kek), Error> {
    let path = dir.join(key_file_name(tenant, version));
    let key = random_array::<KEY_LEN>();
    secret_file::create(&path, &key)?;
    Ok((path, Kek::new(KekId::local(tenant, version), &key)))
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

        let wrapped = first.current().wrap(&Dek::generate(), OBJECT);
        let (second, created) = keyring(&dir);
        assert!(created.is_none());
        assert!(second.unwrap(&wrapped, OBJECT).is_ok());
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temp file left");
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
        let (mut ring, _) = keyring(dir.path());
        let old = ring.current().wrap(&Dek::generate(), OBJECT);
        let current = ring.rotate().unwrap().id().clone();
        assert_eq!(current.as_str(), "local:acme:v2");
        assert_eq!(file_mode(&dir.path().join("acme.v2.kek")), 0o600);
        assert!(ring.unwrap(&old, OBJECT).is_ok());

        let (reopened, _) = keyring(dir.path());
        assert_eq!(reopened.current().id(), &current);
        assert!(reopened.unwrap(&old, OBJECT).is_ok());
        let unknown = KekId::local("acme", 9);
        assert!(matches!(reopened.get(&unknown), Err(Error::UnknownKek(_))));
    }

    #[test]
    fn tenants_are_validated_and_kept_apart() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "Acme", "a/b", "a.b", &"x".repeat(65)] {
            let err = LocalKeyring::open_or_create(dir.path(), bad).unwrap_err();
            assert!(matches!(err, Error::KeyFile { .. }), "{bad:?}");
        }
        let (acme, _) = keyring(dir.path());
        let (other, created) = LocalKeyring::open_or_create(dir.path(), "acme-2").unwrap();
        assert!(created.is_some());
        assert_ne!(acme.current().id(), other.current().id());
    }

    #[test]
    fn key_file_names_parse_canonically() {
        assert_eq!(parse_key_file_name("acme.v12.kek", "acme"), Some(12));
        assert_eq!(parse_key_file_name("acme.v0.kek", "acme"), None);
        assert_eq!(parse_key_file_name("acme.v01.kek", "acme"), None);
        assert_eq!(parse_key_file_name("acme.v.kek", "acme"), None);
        assert_eq!(parse_key_file_name(".acme.v1.kek.tmp", "acme"), None);
        assert_eq!(parse_key_file_name("acme-2.v1.kek", "acme"), None);
    }
}
