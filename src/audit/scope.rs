//! The request being served, as the audit trail sees it: its id, who acts,
//! and what the layers below learned while serving it.
//!
//! The gateway opens a scope around each request (a task-local, as a
//! tracing span is); the layers that learn more add [`Notes`] to it
//! (authentication the actor and tenant, ingest the upload, its size and
//! the index of its commit record); before it answers, the gateway turns
//! the notes into the request's record. Ingest labels the state changes it
//! records (a commit, a verdict) with the scope's request id and actor, so
//! they can be matched to the response that reported them. Outside a
//! request (recovery, the sweep) there is no scope, and those records name
//! the actor `system`.
//!
//! Holds only what a record may hold: identifiers, sizes and keyed names.
//! Never HTTP types, never a raw filename or a credential.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use super::KeyedName;
use crate::id::UploadId;

tokio::task_local! {
    static SCOPE: Arc<RequestScope>;
}

/// The actor of records no request caused (recovery, the sweep, a signal).
pub const SYSTEM: &str = "system";

/// What has been learned about a request so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notes {
    /// Who acts: the authenticated principal, else the client's address.
    pub actor: Option<String>,
    pub tenant: Option<String>,
    /// The upload or object the request is about.
    pub upload: Option<UploadId>,
    /// Its declared or final length.
    pub size: Option<u64>,
    /// Its offset when the request was answered.
    pub offset: Option<u64>,
    /// Its filename, keyed.
    pub name: Option<KeyedName>,
    /// What a request about something other than an upload is about (a
    /// token id, a signing key id).
    pub subject: Option<String>,
    /// The index of the commit record of the object the request reported
    /// on, once it has one.
    pub commit_index: Option<u64>,
}

/// One request's id and notes.
#[derive(Debug)]
pub struct RequestScope {
    request_id: String,
    notes: Mutex<Notes>,
}

impl RequestScope {
    pub fn new(request_id: &str, notes: Notes) -> Arc<RequestScope> {
        Arc::new(RequestScope {
            request_id: request_id.to_owned(),
            notes: Mutex::new(notes),
        })
    }

    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// A copy of the notes so far.
    pub fn notes(&self) -> Notes {
        self.lock().clone()
    }

    /// Runs `future` (the serving of the request) inside this scope.
    pub async fn run<F: Future>(self: &Arc<Self>, future: F) -> F::Output {
        SCOPE.scope(Arc::clone(self), future).await
    }

    fn lock(&self) -> MutexGuard<'_, Notes> {
        // Notes are plain values, consistent after any panic.
        self.notes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Adds to the notes of the request being served; does nothing outside one.
pub fn note(update: impl FnOnce(&mut Notes)) {
    let _ = SCOPE.try_with(|scope| update(&mut scope.lock()));
}

/// The request id and actor of the request being served, if any.
pub fn current() -> Option<(String, Option<String>)> {
    SCOPE
        .try_with(|scope| (scope.request_id.clone(), scope.lock().actor.clone()))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn notes_reach_the_scope_only_inside_it() {
        note(|notes| notes.size = Some(1));
        assert_eq!(current(), None);

        let scope = RequestScope::new("req-1", Notes::default());
        scope
            .run(async {
                note(|notes| notes.actor = Some("token:1".into()));
                tokio::task::yield_now().await;
                note(|notes| notes.size = Some(7));
                assert_eq!(
                    current(),
                    Some(("req-1".to_owned(), Some("token:1".to_owned())))
                );
            })
            .await;
        let notes = scope.notes();
        assert_eq!(notes.size, Some(7));
        assert_eq!(notes.actor.as_deref(), Some("token:1"));
        assert_eq!(scope.request_id(), "req-1");
    }
}
