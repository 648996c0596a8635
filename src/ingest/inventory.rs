//! What the admin surface reads and does across tenants: uploads in
//! progress, objects (paged), per-tenant usage for metrics, releasing a
//! quarantined object and deleting any object. Every read here scans the
//! index once; nothing is cached (the caller decides how often to ask).
//! Never answers for a tenant: that is `mod.rs`'s `load_owned`, and nothing
//! here is reachable from the public listener.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::events::Detail;
use crate::id::UploadId;
use crate::staging::{Disposition, UploadRecord, UploadState};

use super::{Download, Error, Ingest, blocking};

/// Every tenant's holdings, from one scan.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub tenants: BTreeMap<String, TenantHoldings>,
    /// Segment files on disk (objects and unfinished uploads).
    pub staging_files: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantHoldings {
    /// Unfinished uploads and their durable bytes.
    pub uploads: u64,
    pub staged_bytes: u64,
    pub released: u64,
    pub quarantined: u64,
    pub pending: u64,
    /// Bytes of committed objects.
    pub stored_bytes: u64,
    /// KEK versions wrapping at least one of the tenant's data keys.
    pub key_versions: BTreeSet<String>,
}

impl TenantHoldings {
    pub fn objects(&self) -> u64 {
        self.released + self.quarantined + self.pending
    }

    fn count(&mut self, record: &UploadRecord) {
        self.key_versions.insert(record.key.kek.to_string());
        match record.disposition() {
            None => {
                self.uploads += 1;
                self.staged_bytes += record.offset;
                return;
            }
            Some(Disposition::Released) => self.released += 1,
            Some(Disposition::Quarantined) => self.quarantined += 1,
            Some(Disposition::Pending) => self.pending += 1,
        }
        self.stored_bytes += record.offset;
    }
}

/// Which objects a listing wants.
#[derive(Debug, Clone, Default)]
pub struct ObjectQuery {
    pub tenant: Option<String>,
    pub disposition: Option<Disposition>,
    /// Objects with ids after this one (the previous page's `next`).
    pub after: Option<UploadId>,
    pub limit: usize,
}

/// One page of objects, by id; `next` is where the following page starts.
#[derive(Debug, Clone, Default)]
pub struct ObjectPage {
    pub objects: Vec<UploadRecord>,
    pub next: Option<UploadId>,
}

impl Ingest {
    /// Every tenant's uploads, objects, bytes and key versions.
    pub async fn inventory(&self) -> Result<Inventory, Error> {
        let staging = self.staging.clone();
        blocking(move || {
            let mut inventory = Inventory::default();
            for record in staging.records() {
                let record = record?;
                inventory
                    .tenants
                    .entry(record.tenant.clone())
                    .or_default()
                    .count(&record);
            }
            inventory.staging_files = staging.segment_file_count()? as u64;
            Ok(inventory)
        })
        .await
    }

    /// Unfinished uploads, of one tenant or all, oldest first.
    pub async fn uploads_in_progress(
        &self,
        tenant: Option<String>,
    ) -> Result<Vec<UploadRecord>, Error> {
        let mut uploads = self
            .records_where(move |r| {
                !r.is_committed() && tenant.as_deref().is_none_or(|t| r.tenant == t)
            })
            .await?;
        uploads.sort_by_key(|r| (r.created_at, r.id));
        Ok(uploads)
    }

    /// A page of committed objects in id order. Reads the index from the
    /// page's start and stops one match past its end: memory holds one
    /// page, however many objects there are.
    pub async fn objects(&self, query: ObjectQuery) -> Result<ObjectPage, Error> {
        let staging = self.staging.clone();
        blocking(move || {
            let mut objects = Vec::with_capacity(query.limit.min(1024));
            let mut next = None;
            for record in staging.records_after(query.after.as_ref()) {
                let record = record?;
                let wanted = record.is_committed()
                    && query.tenant.as_deref().is_none_or(|t| record.tenant == t)
                    && query
                        .disposition
                        .is_none_or(|d| record.disposition() == Some(d));
                if !wanted {
                    continue;
                }
                if objects.len() == query.limit {
                    next = objects.last().map(|last: &UploadRecord| last.id);
                    break;
                }
                objects.push(record);
            }
            Ok(ObjectPage { objects, next })
        })
        .await
    }

    /// Any tenant's committed object.
    pub async fn object(&self, id: UploadId) -> Result<UploadRecord, Error> {
        let record = self.load(id).await?;
        if !record.is_committed() {
            return Err(Error::NotFound(id));
        }
        super::trail::note_reported(&record);
        Ok(record)
    }

    /// Opens any tenant's object for an admin, quarantined ones included
    /// (reviewing them is what quarantine is for). A pending object has no
    /// verdict yet and stays closed.
    pub async fn open_object_for_admin(&self, id: UploadId) -> Result<(Download, String), Error> {
        let record = self.object(id).await?;
        if record.disposition() == Some(Disposition::Pending) {
            return Err(Error::VerdictPending(id));
        }
        let tenant = record.tenant.clone();
        Ok((self.open_record(record).await?, tenant))
    }

    /// Releases a quarantined object: recorded in the audit trail, its
    /// manifest signed again as released, then stored. From then on its
    /// tenant can download it.
    pub async fn release(self: &Arc<Self>, id: UploadId) -> Result<UploadRecord, Error> {
        let _guard = self.locks.acquire(id).await?;
        let mut record = self.object(id).await?;
        if record.disposition() != Some(Disposition::Quarantined) {
            return Err(Error::NotQuarantined(id));
        }
        if let UploadState::Committed(commit) = &mut record.state {
            commit.disposition = Disposition::Released;
        }
        self.record_release(&mut record).await?;
        let staging = self.staging.clone();
        let stored = record.clone();
        blocking(move || Ok(staging.put(&stored, crate::staging::TailChange::Keep)?)).await?;
        tracing::info!(upload = %id, "quarantined object released");
        self.events()
            .publish(id, &record.tenant, Detail::Released {});
        Ok(record)
    }

    /// Deletes any tenant's object (with `quarantined_only`, only one held
    /// in quarantine); its wrapped key goes with the record.
    pub async fn delete_object(
        self: &Arc<Self>,
        id: UploadId,
        quarantined_only: bool,
    ) -> Result<UploadRecord, Error> {
        // Checked under the upload's lock, on the record being removed: a
        // release in between cannot slip an object out of quarantine first.
        self.remove(id, "admin", move |record| {
            if !record.is_committed() {
                return Err(Error::NotFound(id));
            }
            if quarantined_only && record.disposition() != Some(Disposition::Quarantined) {
                return Err(Error::NotQuarantined(id));
            }
            Ok(())
        })
        .await
    }
}
