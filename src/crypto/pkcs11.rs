//! The PKCS#11 key provider: each tenant's KEK versions are AES-256 secret
//! keys inside a token (an HSM, or SoftHSM2), labelled
//! `strongroom:<tenant>:v<N>`, created there as sensitive and not
//! extractable, so their bytes never leave it. A wrap is one `C_Encrypt`
//! with `CKM_AES_GCM` (fresh 96-bit IV, AAD = object id and KEK id, 128-bit
//! tag) of the DEK; an unwrap is one `C_Decrypt`.
//!
//! Owns the only use of the `cryptoki` crate, the token session and the
//! login. Fails closed: a module that does not load, a missing token, a
//! failed login or an operation the token refuses is
//! [`Error::KeyProviderUnavailable`]; nothing here ever falls back to
//! another provider or to unwrapped keys. The PIN is read from a file only
//! its owner can read and is never logged or put in an error.

use std::collections::{BTreeMap, HashMap};
use std::os::raw::c_ulong;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Function, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::types::{AuthPin, Ulong};

use super::Error;
use super::digest::random_array;
use super::keys::{
    Dek, KEY_LEN, KekId, KekVersion, KeyProvider, WRAPPED_LEN, WrappedDek, integrity,
    parse_version, validate_tenant, version_list, wrap_aad,
};
use super::seg1::{NONCE_LEN, TAG_LEN};

/// The provider part of a [`KekId`] for token keys.
pub const PKCS11_PROVIDER: &str = "pkcs11";
const PROVIDER_NAME: &str = "pkcs11";
const LABEL_PREFIX: &str = "strongroom:";
/// The longest PIN file read; PINs are far shorter.
const MAX_PIN_LEN: u64 = 256;

/// Where the token is and how to log in to it (`[keys]` in the config).
#[derive(Debug, Clone)]
pub struct Pkcs11Config {
    /// The PKCS#11 module (.so), e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// The token's label.
    pub token: String,
    /// A file holding the user PIN; it must not be readable by group or others.
    pub pin_file: PathBuf,
}

/// KEKs in a PKCS#11 token. One session, shared behind a mutex: token
/// operations on a 32-byte key take microseconds, so one session does not
/// limit throughput, and a single place re-opens it and logs in again after
/// the token was lost.
pub struct Pkcs11Keys {
    config: Pkcs11Config,
    pin: AuthPin,
    context: Pkcs11,
    state: Mutex<State>,
    /// Held while a key is created, so two first uploads of a tenant (or two
    /// rotations) cannot both create the same version.
    creating: Mutex<()>,
}

struct State {
    session: Option<Session>,
    /// Handles of keys already looked up, for the current session.
    handles: HashMap<KekId, ObjectHandle>,
    /// The versions the token holds, per tenant, ascending. Read from the
    /// token at start and kept in step by every change made here.
    versions: BTreeMap<String, Vec<u32>>,
}

impl std::fmt::Debug for Pkcs11Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Keys")
            .field("module", &self.config.module)
            .field("token", &self.config.token)
            .finish_non_exhaustive()
    }
}

fn unavailable(reason: impl Into<String>) -> Error {
    Error::KeyProviderUnavailable {
        provider: PROVIDER_NAME,
        reason: reason.into(),
    }
}

/// A token error as text: the function and the return value's name. Never
/// includes the PIN or key bytes (the token never hands those out).
fn describe(err: &CkError) -> String {
    match err {
        CkError::Pkcs11(rv, function) => format!("C_{function:?}: {rv:?}"),
        other => other.to_string(),
    }
}

/// Errors after which the session (or a handle from it) may be the cause:
/// the operation is tried once more on a fresh session, logged in again.
fn is_session_error(err: &CkError) -> bool {
    matches!(
        err,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::DeviceError
                | RvError::ObjectHandleInvalid
                | RvError::KeyHandleInvalid
                | RvError::GeneralError
                | RvError::FunctionFailed,
            _
        )
    )
}

/// What a token operation's failure means for the caller.
enum Failure {
    /// The token answered; this wrapped key does not open.
    Integrity(KekId),
    /// The token does not hold this key.
    UnknownKek(KekId),
    Token(CkError),
}

impl From<CkError> for Failure {
    fn from(err: CkError) -> Self {
        Failure::Token(err)
    }
}

impl Pkcs11Keys {
    /// Loads the module, finds the token, logs in and reads which KEK
    /// versions it holds. Any failure is an error naming what failed, so an
    /// appliance whose token cannot be opened does not start.
    pub fn open(config: Pkcs11Config) -> Result<Pkcs11Keys, Error> {
        let pin = read_pin(&config.pin_file)?;
        let context = Pkcs11::new(&config.module).map_err(|err| {
            unavailable(format!(
                "cannot load PKCS#11 module {}: {}",
                config.module.display(),
                describe(&err)
            ))
        })?;
        let keys = Pkcs11Keys {
            config,
            pin,
            context,
            state: Mutex::new(State {
                session: None,
                handles: HashMap::new(),
                versions: BTreeMap::new(),
            }),
            creating: Mutex::new(()),
        };
        keys.initialize()?;
        let versions = keys.with_session(|session, _| Ok(scan_versions(session)?))?;
        keys.lock().versions = versions;
        Ok(keys)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a cache of the token; a panic mid-update at worst
        // leaves a stale handle, which the retry path replaces.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Opens a read-write session on the token and logs in as its user.
    /// Called with the state locked and no session open.
    fn connect(&self) -> Result<Session, Error> {
        let label = self.config.token.as_str();
        let slot = match self.find_slot()? {
            Some(slot) => slot,
            None => {
                // A module may fix its slot list when initialised (SoftHSM2
                // does), so a token that went away and came back is only
                // seen again after finalising and initialising it anew.
                // Safe here: no session is open and the state is locked.
                self.reinitialize()?;
                self.find_slot()?
                    .ok_or_else(|| unavailable(format!("no token labelled {label:?} is present")))?
            }
        };
        let session = self.context.open_rw_session(slot).map_err(|err| {
            unavailable(format!(
                "opening a session on token {label:?}: {}",
                describe(&err)
            ))
        })?;
        match session.login(UserType::User, Some(&self.pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(err) => Err(unavailable(format!(
                "login to token {label:?} failed: {}",
                describe(&err)
            ))),
        }
    }

    fn find_slot(&self) -> Result<Option<cryptoki::slot::Slot>, Error> {
        let label = self.config.token.as_str();
        let slots = match self.context.get_slots_with_token() {
            // An earlier re-initialisation failed (the token's storage was
            // gone): initialise again now.
            Err(CkError::Pkcs11(RvError::CryptokiNotInitialized, _)) => {
                self.initialize()?;
                self.context.get_slots_with_token()
            }
            other => other,
        }
        .map_err(|err| unavailable(format!("listing token slots: {}", describe(&err))))?;
        Ok(slots.into_iter().find(|slot| {
            self.context
                .get_token_info(*slot)
                .is_ok_and(|info| info.label().trim_end() == label)
        }))
    }

    fn reinitialize(&self) -> Result<(), Error> {
        // Finalising a clone leaves this context usable for the new
        // initialisation (the module stays loaded while any clone lives).
        let _ = self.context.clone().finalize();
        self.initialize()
    }

    fn initialize(&self) -> Result<(), Error> {
        match self.context.initialize(init_args()) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(()),
            Err(err) => Err(unavailable(format!(
                "initialising PKCS#11 module {}: {}",
                self.config.module.display(),
                describe(&err)
            ))),
        }
    }

    /// Runs `op` on the logged-in session, opening one when there is none.
    /// A session-level failure is retried once on a fresh session (the
    /// token may have been reset or the login lost); anything else, or a
    /// second failure, is final.
    fn with_session<T>(
        &self,
        mut op: impl FnMut(&Session, &mut HashMap<KekId, ObjectHandle>) -> Result<T, Failure>,
    ) -> Result<T, Error> {
        let mut state = self.lock();
        let mut last = None;
        for attempt in 0..2 {
            if state.session.is_none() {
                if attempt > 0 {
                    tracing::warn!(token = %self.config.token, "PKCS#11 session lost; logging in again");
                }
                let session = self.connect()?;
                state.handles.clear();
                state.session = Some(session);
            }
            let State {
                session, handles, ..
            } = &mut *state;
            let Some(session) = session.as_ref() else {
                continue;
            };
            match op(session, handles) {
                Ok(value) => return Ok(value),
                Err(Failure::Token(err)) if is_session_error(&err) => {
                    state.session = None;
                    last = Some(err);
                }
                Err(Failure::Token(err)) => {
                    return Err(unavailable(format!(
                        "token {:?}: {}",
                        self.config.token,
                        describe(&err)
                    )));
                }
                Err(Failure::Integrity(id)) => return Err(integrity(&id)),
                Err(Failure::UnknownKek(id)) => return Err(Error::UnknownKek(id)),
            }
        }
        let reason = last.map_or_else(|| "no session".to_owned(), |err| describe(&err));
        Err(unavailable(format!(
            "token {:?}: {reason}",
            self.config.token
        )))
    }

    /// The tenant's current version, creating version 1 when it has none.
    fn current_or_create(&self, tenant: &str) -> Result<u32, Error> {
        validate_tenant(tenant)?;
        if let Some(version) = self.current_version(tenant) {
            return Ok(version);
        }
        self.create_version(tenant, |versions| versions.is_empty())
    }

    fn current_version(&self, tenant: &str) -> Option<u32> {
        self.lock()
            .versions
            .get(tenant)
            .and_then(|versions| versions.last().copied())
    }

    /// Generates the next version of the tenant's KEK in the token, unless
    /// `needed` says (checked under the creation lock) that another caller
    /// already did; returns the tenant's current version.
    fn create_version(&self, tenant: &str, needed: impl Fn(&[u32]) -> bool) -> Result<u32, Error> {
        let _creating = self
            .creating
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let known = self
            .lock()
            .versions
            .get(tenant)
            .cloned()
            .unwrap_or_default();
        if !needed(&known) {
            return known
                .last()
                .copied()
                .ok_or_else(|| unavailable("no key version"));
        }
        let version = known.last().map_or(1, |v| v + 1);
        let id = KekId::new(PKCS11_PROVIDER, tenant, version);
        let label = label_of(tenant, version);
        self.with_session(|session, handles| {
            // A retried creation may find the key its first try made.
            require_login(session)?;
            let handle = match find_key(session, &label)? {
                Some(handle) => handle,
                None => session.generate_key(&Mechanism::AesKeyGen, &key_template(&label))?,
            };
            handles.insert(id.clone(), handle);
            Ok(())
        })?;
        let mut state = self.lock();
        let versions = state.versions.entry(tenant.to_owned()).or_default();
        if !versions.contains(&version) {
            versions.push(version);
            versions.sort_unstable();
        }
        Ok(version)
    }

    /// The handle of the key `id` names; `UnknownKek` when the token lacks it.
    fn handle(
        session: &Session,
        handles: &mut HashMap<KekId, ObjectHandle>,
        id: &KekId,
        label: &str,
    ) -> Result<ObjectHandle, Failure> {
        if let Some(handle) = handles.get(id) {
            return Ok(*handle);
        }
        let Some(handle) = find_key(session, label)? else {
            // A session that lost its login sees no private object: that is
            // the token's state, not a missing key.
            require_login(session)?;
            return Err(Failure::UnknownKek(id.clone()));
        };
        handles.insert(id.clone(), handle);
        Ok(handle)
    }

    fn seal(
        &self,
        id: &KekId,
        label: &str,
        dek: &Dek,
        object_id: [u8; 16],
    ) -> Result<Vec<u8>, Error> {
        let aad = wrap_aad(object_id, id);
        let sealed = self.with_session(|session, handles| {
            let key = Self::handle(session, handles, id, label)?;
            let mut iv = random_array::<NONCE_LEN>();
            let params = GcmParams::new(&mut iv, &aad, tag_bits())?;
            let sealed = session.encrypt(&Mechanism::AesGcm(params), key, dek.expose())?;
            let mut blob = Vec::with_capacity(WRAPPED_LEN);
            blob.extend_from_slice(&iv);
            blob.extend_from_slice(&sealed);
            Ok(blob)
        })?;
        if sealed.len() != WRAPPED_LEN {
            return Err(unavailable(format!(
                "token {:?} returned {} bytes for a wrap, expected {WRAPPED_LEN}",
                self.config.token,
                sealed.len()
            )));
        }
        Ok(sealed)
    }
}

/// The module may use OS locks: sessions are used from several threads
/// (one at a time, behind the state lock).
fn init_args() -> CInitializeArgs {
    CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)
}

fn tag_bits() -> Ulong {
    Ulong::from((TAG_LEN * 8) as c_ulong)
}

fn label_of(tenant: &str, version: u32) -> String {
    format!("{LABEL_PREFIX}{tenant}:v{version}")
}

/// The tenant and version a key label names, for labels this provider made.
fn parse_label(label: &str) -> Option<(String, u32)> {
    let (tenant, version) = label.strip_prefix(LABEL_PREFIX)?.split_once(':')?;
    validate_tenant(tenant).ok()?;
    Some((
        tenant.to_owned(),
        parse_version(version.strip_prefix('v')?)?,
    ))
}

/// A KEK: AES-256, kept in the token (not a session object), usable only to
/// encrypt and decrypt, never readable or exportable.
fn key_template(label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(cryptoki::object::KeyType::AES),
        Attribute::ValueLen(Ulong::from(KEY_LEN as c_ulong)),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Label(label.as_bytes().to_vec()),
    ]
}

/// Whether `key` seals and opens a probe block on this session: tells a
/// healthy token that refused bad input from a failing one.
fn key_works(session: &Session, key: ObjectHandle) -> bool {
    const PROBE: &[u8] = b"strongroom pkcs11 probe";
    let probe = || -> Result<bool, CkError> {
        let mut iv = random_array::<NONCE_LEN>();
        let sealed = session.encrypt(
            &Mechanism::AesGcm(GcmParams::new(&mut iv, PROBE, tag_bits())?),
            key,
            PROBE,
        )?;
        let opened = session.decrypt(
            &Mechanism::AesGcm(GcmParams::new(&mut iv, PROBE, tag_bits())?),
            key,
            &sealed,
        )?;
        Ok(opened == PROBE)
    };
    probe().unwrap_or(false)
}

fn find_key(session: &Session, label: &str) -> Result<Option<ObjectHandle>, CkError> {
    let found = session.find_objects(&[
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::Label(label.as_bytes().to_vec()),
    ])?;
    Ok(found.into_iter().next())
}

/// Fails with `CKR_USER_NOT_LOGGED_IN` unless the session is logged in as
/// the user, so the caller logs in again instead of reading an absence of
/// private objects as an answer.
fn require_login(session: &Session) -> Result<(), CkError> {
    match session.get_session_info()?.session_state() {
        SessionState::RwUser | SessionState::RoUser => Ok(()),
        _ => Err(CkError::Pkcs11(
            RvError::UserNotLoggedIn,
            Function::GetSessionInfo,
        )),
    }
}

/// Every `strongroom:<tenant>:v<N>` key in the token.
fn scan_versions(session: &Session) -> Result<BTreeMap<String, Vec<u32>>, CkError> {
    require_login(session)?;
    let mut versions: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for handle in session.find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY)])? {
        for attribute in session.get_attributes(handle, &[AttributeType::Label])? {
            let Attribute::Label(bytes) = attribute else {
                continue;
            };
            let parsed = std::str::from_utf8(&bytes).ok().and_then(parse_label);
            if let Some((tenant, version)) = parsed {
                versions.entry(tenant).or_default().push(version);
            }
        }
    }
    for list in versions.values_mut() {
        list.sort_unstable();
        list.dedup();
    }
    Ok(versions)
}

/// Reads the user PIN from a file only its owner may read or write: the
/// text of the file, without a trailing newline.
fn read_pin(path: &Path) -> Result<AuthPin, Error> {
    let bad = |reason: &str| Error::KeyFile {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    };
    let mut bytes = super::secret_file::read_owner_only(path, MAX_PIN_LEN)?;
    let too_long = bytes.len() as u64 > MAX_PIN_LEN;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => {
            let mut bytes = err.into_bytes();
            bytes.fill(0);
            return Err(bad("the PIN is not UTF-8 text"));
        }
    };
    let empty = text.is_empty();
    // The secret type zeroes the text when dropped, on every path below.
    let pin = AuthPin::from(text);
    if too_long {
        return Err(bad("the PIN file is longer than 256 bytes"));
    }
    if empty {
        return Err(bad("the PIN file is empty"));
    }
    Ok(pin)
}

impl KeyProvider for Pkcs11Keys {
    fn kind(&self) -> &'static str {
        PROVIDER_NAME
    }

    fn wrap(&self, tenant: &str, dek: &Dek, object_id: [u8; 16]) -> Result<WrappedDek, Error> {
        let version = self.current_or_create(tenant)?;
        let id = KekId::new(PKCS11_PROVIDER, tenant, version);
        let blob = self.seal(&id, &label_of(tenant, version), dek, object_id)?;
        Ok(WrappedDek { kek: id, blob })
    }

    fn unwrap(&self, wrapped: &WrappedDek, object_id: [u8; 16]) -> Result<Dek, Error> {
        let id = &wrapped.kek;
        let (provider, tenant, version) =
            id.parts().ok_or_else(|| Error::UnknownKek(id.clone()))?;
        if provider != PKCS11_PROVIDER {
            return Err(Error::UnknownKek(id.clone()));
        }
        if wrapped.blob.len() != WRAPPED_LEN {
            return Err(integrity(id));
        }
        let (iv, sealed) = wrapped.blob.split_at(NONCE_LEN);
        let aad = wrap_aad(object_id, id);
        let label = label_of(tenant, version);
        let mut plain = self.with_session(|session, handles| {
            let key = Self::handle(session, handles, id, &label)?;
            let mut iv: [u8; NONCE_LEN] =
                iv.try_into().map_err(|_| Failure::Integrity(id.clone()))?;
            let params = GcmParams::new(&mut iv, &aad, tag_bits())?;
            match session.decrypt(&Mechanism::AesGcm(params), key, sealed) {
                Ok(plain) => Ok(plain),
                Err(CkError::Pkcs11(
                    RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange,
                    Function::Decrypt | Function::DecryptInit,
                )) => Err(Failure::Integrity(id.clone())),
                // Some tokens (SoftHSM2 among them) report a GCM tag that
                // does not verify as a general failure. If the same key
                // still seals and opens a probe, the token is healthy and
                // the wrapped key is what failed.
                Err(
                    err @ CkError::Pkcs11(
                        RvError::GeneralError | RvError::FunctionFailed,
                        Function::Decrypt,
                    ),
                ) => {
                    if key_works(session, key) {
                        Err(Failure::Integrity(id.clone()))
                    } else {
                        Err(Failure::Token(err))
                    }
                }
                Err(err) => Err(Failure::Token(err)),
            }
        })?;
        let dek = Dek::from_slice(&plain);
        plain.fill(0);
        dek.ok_or_else(|| integrity(id))
    }

    fn current(&self, tenant: &str) -> Result<Option<KekId>, Error> {
        Ok(self
            .current_version(tenant)
            .map(|version| KekId::new(PKCS11_PROVIDER, tenant, version)))
    }

    fn ensure(&self, tenant: &str) -> Result<(KekId, bool), Error> {
        validate_tenant(tenant)?;
        let existed = self.current_version(tenant).is_some();
        let version = self.current_or_create(tenant)?;
        Ok((KekId::new(PKCS11_PROVIDER, tenant, version), !existed))
    }

    fn rotate(&self, tenant: &str) -> Result<KekId, Error> {
        validate_tenant(tenant)?;
        let before = self.current_version(tenant);
        let version = self.create_version(tenant, |versions| versions.last() == before.as_ref())?;
        Ok(KekId::new(PKCS11_PROVIDER, tenant, version))
    }

    fn versions(&self) -> Result<Vec<KekVersion>, Error> {
        Ok(self
            .lock()
            .versions
            .iter()
            .flat_map(|(tenant, versions)| {
                version_list(
                    tenant,
                    versions
                        .iter()
                        .map(|v| (*v, KekId::new(PKCS11_PROVIDER, tenant, *v))),
                )
            })
            .collect())
    }

    fn retire(&self, id: &KekId) -> Result<(), Error> {
        let unknown = || Error::UnknownKek(id.clone());
        let (provider, tenant, version) = id.parts().ok_or_else(unknown)?;
        if provider != PKCS11_PROVIDER {
            return Err(unknown());
        }
        match self.current_version(tenant) {
            Some(current) if current == version => return Err(Error::RetireCurrent(id.clone())),
            None => return Err(unknown()),
            Some(_) => {}
        }
        let label = label_of(tenant, version);
        self.with_session(|session, handles| {
            require_login(session)?;
            if let Some(handle) = find_key(session, &label)? {
                session.destroy_object(handle)?;
            }
            handles.remove(id);
            Ok(())
        })?;
        if let Some(versions) = self.lock().versions.get_mut(tenant) {
            versions.retain(|v| *v != version);
        }
        Ok(())
    }

    fn destroy_tenant(&self, tenant: &str) -> Result<usize, Error> {
        validate_tenant(tenant)?;
        let destroyed = self.with_session(|session, handles| {
            // Read the token again: a shredded tenant must leave no key
            // behind, including one this process did not create.
            let versions = scan_versions(session)?.remove(tenant).unwrap_or_default();
            for version in &versions {
                if let Some(handle) = find_key(session, &label_of(tenant, *version))? {
                    session.destroy_object(handle)?;
                }
                handles.remove(&KekId::new(PKCS11_PROVIDER, tenant, *version));
            }
            Ok(versions.len())
        })?;
        self.lock().versions.remove(tenant);
        Ok(destroyed)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn pin_file(dir: &Path, text: &[u8], mode: u32) -> PathBuf {
        let path = dir.join("pin");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn labels_round_trip_and_foreign_labels_are_ignored() {
        assert_eq!(label_of("acme", 3), "strongroom:acme:v3");
        assert_eq!(parse_label("strongroom:acme:v3"), Some(("acme".into(), 3)));
        for foreign in [
            "other:acme:v3",
            "strongroom:acme",
            "strongroom:Acme:v1",
            "strongroom:a:v0",
        ] {
            assert_eq!(parse_label(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn the_pin_comes_from_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = pin_file(dir.path(), b"1234\n", 0o600);
        assert!(read_pin(&path).is_ok());

        let path = pin_file(dir.path(), b"1234\n", 0o640);
        let err = read_pin(&path).unwrap_err();
        assert!(matches!(err, Error::KeyFilePermissions { mode: 0o640, .. }));
        assert!(!err.to_string().contains("1234"));

        let path = pin_file(dir.path(), b"\n", 0o600);
        assert!(matches!(read_pin(&path), Err(Error::KeyFile { .. })));
    }

    #[test]
    fn a_module_that_does_not_load_fails_closed_without_the_pin() {
        let dir = tempfile::tempdir().unwrap();
        let config = Pkcs11Config {
            module: dir.path().join("missing.so"),
            token: "strongroom".into(),
            pin_file: pin_file(dir.path(), b"secret-pin\n", 0o600),
        };
        let err = Pkcs11Keys::open(config).unwrap_err();
        assert!(err.is_key_provider_unavailable(), "{err}");
        let message = err.to_string();
        assert!(message.contains("missing.so"), "{message}");
        assert!(!message.contains("secret-pin"), "{message}");
    }
}
