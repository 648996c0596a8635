//! Scopes a token carries and the actions requests need. Pure: a scope is
//! text on the wire (`upload:create`, `upload:resume:<id>`,
//! `object:read:<id>`, `admin`) and a value here; nothing else is accepted.

use std::fmt;
use std::str::FromStr;

use crate::id::UploadId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Create uploads for the tenant, and act on the tenant's uploads.
    UploadCreate,
    /// Act (HEAD, PATCH, DELETE) on this one upload.
    UploadResume(UploadId),
    /// Download this one object.
    ObjectRead(UploadId),
    /// The admin API.
    Admin,
}

/// What a request is about to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    CreateUpload,
    UseUpload(UploadId),
    ReadObject(UploadId),
    Admin,
}

impl Action {
    /// Whether one scope alone permits the action.
    pub fn permitted_by(self, scope: &Scope) -> bool {
        match (self, scope) {
            (Action::CreateUpload, Scope::UploadCreate) => true,
            (Action::UseUpload(_), Scope::UploadCreate) => true,
            (Action::UseUpload(id), Scope::UploadResume(granted)) => id == *granted,
            (Action::ReadObject(id), Scope::ObjectRead(granted)) => id == *granted,
            (Action::Admin, Scope::Admin) => true,
            _ => false,
        }
    }

    /// The scope a client should ask for to be allowed this action.
    pub fn needed_scope(self) -> Scope {
        match self {
            Action::CreateUpload => Scope::UploadCreate,
            Action::UseUpload(id) => Scope::UploadResume(id),
            Action::ReadObject(id) => Scope::ObjectRead(id),
            Action::Admin => Scope::Admin,
        }
    }
}

impl Scope {
    /// Which lifetime class a token holding this scope falls in.
    pub fn class(&self) -> ScopeClass {
        match self {
            Scope::UploadCreate | Scope::UploadResume(_) => ScopeClass::Upload,
            Scope::ObjectRead(_) => ScopeClass::Download,
            Scope::Admin => ScopeClass::Admin,
        }
    }
}

/// Scope families with their own token lifetimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ScopeClass {
    Download,
    Upload,
    Admin,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown scope {0:?} (expected upload:create, upload:resume:<id>, object:read:<id> or admin)"
)]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let unknown = || UnknownScope(text.chars().take(80).collect());
        match text {
            "upload:create" => return Ok(Scope::UploadCreate),
            "admin" => return Ok(Scope::Admin),
            _ => {}
        }
        if let Some(id) = text.strip_prefix("upload:resume:") {
            return id.parse().map(Scope::UploadResume).map_err(|_| unknown());
        }
        if let Some(id) = text.strip_prefix("object:read:") {
            return id.parse().map(Scope::ObjectRead).map_err(|_| unknown());
        }
        Err(unknown())
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::UploadCreate => f.write_str("upload:create"),
            Scope::UploadResume(id) => write!(f, "upload:resume:{id}"),
            Scope::ObjectRead(id) => write!(f, "object:read:{id}"),
            Scope::Admin => f.write_str("admin"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";
    const OTHER: &str = "ffffffffffffffffffffffffffffffff";

    #[test]
    fn scopes_round_trip_through_text() {
        for text in [
            "upload:create".to_owned(),
            "admin".to_owned(),
            format!("upload:resume:{ID}"),
            format!("object:read:{ID}"),
        ] {
            let scope: Scope = text.parse().unwrap();
            assert_eq!(scope.to_string(), text);
        }
        for bad in [
            "",
            "upload",
            "upload:resume:",
            "upload:resume:xyz",
            "object:read:*",
            "ADMIN",
            "admin ",
        ] {
            assert!(bad.parse::<Scope>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn resume_and_read_scopes_name_one_id() {
        let id: UploadId = ID.parse().unwrap();
        let other: UploadId = OTHER.parse().unwrap();
        assert!(Action::UseUpload(id).permitted_by(&Scope::UploadResume(id)));
        assert!(!Action::UseUpload(other).permitted_by(&Scope::UploadResume(id)));
        assert!(Action::UseUpload(other).permitted_by(&Scope::UploadCreate));
        assert!(!Action::CreateUpload.permitted_by(&Scope::UploadResume(id)));
        assert!(Action::ReadObject(id).permitted_by(&Scope::ObjectRead(id)));
        assert!(!Action::ReadObject(other).permitted_by(&Scope::ObjectRead(id)));
        assert!(!Action::ReadObject(id).permitted_by(&Scope::UploadCreate));
        assert!(!Action::Admin.permitted_by(&Scope::UploadCreate));
        assert!(Action::Admin.permitted_by(&Scope::Admin));
        assert!(!Action::CreateUpload.permitted_by(&Scope::Admin));
    }
}
