//! Key rotation, key listing and crypto-shredding over the index. Owns the
//! order of steps that makes a rotation safe to interrupt at any point:
//!
//! 1. make a new KEK version current; the provider has made it durable
//!    before it returns, so no record ever names a key that could be lost;
//! 2. wait until no creation still holds a data key wrapped under an older
//!    version (the ingest's key gate);
//! 3. re-wrap, one record at a time under that upload's lock, every data key
//!    still under an older version: unwrap, wrap under the current key,
//!    write the record back (each write is durable on its own);
//! 4. scan the whole index again and retire only the older versions that no
//!    record names any more.
//!
//! Killed anywhere, every record still names a key that exists; running the
//! rotation again finds the older versions still there and finishes the job
//! instead of starting another. Data files are never read or written: a
//! rotation costs one small index write per object, whatever its size.
//!
//! Crypto-shredding destroys every key version of a tenant, which makes all
//! of its objects unreadable at once, then removes their records and files.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::crypto::{self, KekId, KeyProvider};
use crate::id::UploadId;
use crate::staging::{Staging, TailChange, UploadRecord};

use super::{Error, Ingest, blocking};

/// Rounds over uploads a request was busy with, and the pause between them.
/// A live upload holds its lock for one request; the ones still busy after
/// this keep their old key version, which is then not retired, and the next
/// rotation picks them up.
const BUSY_ROUNDS: usize = 5;
const BUSY_PAUSE: Duration = Duration::from_millis(200);

/// What one rotation did for one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantRotation {
    pub tenant: String,
    /// The key every record of the tenant is wrapped with afterwards.
    pub current: KekId,
    /// True when an earlier rotation had been interrupted (older versions
    /// were still present) and this run finished it instead of creating
    /// another version.
    pub resumed: bool,
    /// Records whose data key was re-wrapped under `current`.
    pub rewrapped: u64,
    /// Older versions deleted because no record used them any more.
    pub retired: Vec<KekId>,
    /// Records a request kept busy throughout; still under an older version.
    pub busy: u64,
    /// Records whose data key does not unwrap (damaged, or its key is gone):
    /// left as they are; scrub reports them.
    pub unreadable: u64,
}

/// What a rotation did, per tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RotationReport {
    pub tenants: Vec<TenantRotation>,
}

impl RotationReport {
    pub fn rewrapped(&self) -> u64 {
        self.tenants.iter().map(|t| t.rewrapped).sum()
    }

    pub fn retired(&self) -> usize {
        self.tenants.iter().map(|t| t.retired.len()).sum()
    }

    pub fn busy(&self) -> u64 {
        self.tenants.iter().map(|t| t.busy).sum()
    }

    pub fn unreadable(&self) -> u64 {
        self.tenants.iter().map(|t| t.unreadable).sum()
    }

    /// The admin API's answer: totals, each tenant's current key, details.
    pub fn to_json(&self) -> serde_json::Value {
        let current: BTreeMap<&str, &str> = self
            .tenants
            .iter()
            .map(|t| (t.tenant.as_str(), t.current.as_str()))
            .collect();
        serde_json::json!({
            "rewrapped": self.rewrapped(),
            "retired": self.retired(),
            "busy": self.busy(),
            "unreadable": self.unreadable(),
            "current": current,
            "tenants": self.tenants,
        })
    }
}

/// One KEK version and how many records its wraps protect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyUse {
    pub id: KekId,
    pub tenant: String,
    pub version: Option<u32>,
    pub current: bool,
    /// False for a version records name but the provider does not hold: its
    /// objects cannot be read (destroyed, or the wrong provider configured).
    pub present: bool,
    /// Committed objects whose data key it wraps.
    pub objects: u64,
    /// Unfinished uploads whose data key it wraps.
    pub uploads: u64,
}

/// Every key version the provider holds and every one records name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyListing {
    pub provider: &'static str,
    pub keys: Vec<KeyUse>,
}

impl KeyListing {
    /// The admin API's answer.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "provider": self.provider,
            "keys": self.keys,
            "records_under_missing_keys": self.records_under_missing_keys(),
        })
    }

    /// Records that name a key the provider does not hold.
    pub fn records_under_missing_keys(&self) -> u64 {
        self.keys
            .iter()
            .filter(|k| !k.present)
            .map(|k| k.objects + k.uploads)
            .sum()
    }
}

/// What crypto-shredding a tenant did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShredReport {
    pub tenant: String,
    pub keys_destroyed: usize,
    /// Records (and their files) removed after the keys were destroyed.
    pub removed: u64,
    /// Records a request held past the lock wait; unreadable already, they
    /// are removed by the next shred or by expiry.
    pub busy: u64,
}

/// How one record's re-wrap went.
enum Rewrap {
    Rewrapped,
    /// Already under the current key, or removed meanwhile.
    Nothing,
    Busy,
    Unreadable,
}

impl Ingest {
    /// The key provider, for callers that manage tenants' keys directly.
    pub fn key_provider(&self) -> &Arc<dyn KeyProvider> {
        &self.keys
    }

    /// Every key version with the number of objects and uploads it protects.
    pub async fn key_listing(&self) -> Result<KeyListing, Error> {
        let staging = self.staging.clone();
        let keys = self.keys.clone();
        blocking(move || {
            let versions = keys.versions()?;
            let mut uses: HashMap<KekId, (u64, u64)> = HashMap::new();
            for record in staging.records() {
                let record = record?;
                let counts = uses.entry(record.key.kek.clone()).or_default();
                if record.is_committed() {
                    counts.0 += 1;
                } else {
                    counts.1 += 1;
                }
            }
            let mut listed: Vec<KeyUse> = versions
                .into_iter()
                .map(|v| {
                    let (objects, uploads) = uses.remove(&v.id).unwrap_or_default();
                    KeyUse {
                        id: v.id,
                        tenant: v.tenant,
                        version: Some(v.version),
                        current: v.current,
                        present: true,
                        objects,
                        uploads,
                    }
                })
                .collect();
            listed.extend(uses.into_iter().map(|(id, (objects, uploads))| KeyUse {
                tenant: id.tenant().unwrap_or_default().to_owned(),
                version: id.parts().map(|(_, _, v)| v),
                id,
                current: false,
                present: false,
                objects,
                uploads,
            }));
            listed
                .sort_by(|a, b| (&a.tenant, a.version, &a.id).cmp(&(&b.tenant, b.version, &b.id)));
            Ok(KeyListing {
                provider: keys.kind(),
                keys: listed,
            })
        })
        .await
    }

    /// Rotates the KEK of one tenant, or of every tenant that has keys, and
    /// re-wraps every data key under it (see the module docs for the order
    /// that makes this safe to interrupt). One rotation runs at a time.
    pub async fn rotate_keys(&self, tenant: Option<&str>) -> Result<RotationReport, Error> {
        let _running = self
            .rotation
            .try_lock()
            .map_err(|_| Error::RotationInProgress)?;
        let tenants = self.tenants_to_rotate(tenant).await?;
        let mut current = BTreeMap::new();
        let mut report = RotationReport::default();
        for (tenant, versions) in &tenants {
            let (id, resumed) = self.make_current(tenant, versions).await?;
            current.insert(tenant.clone(), id.clone());
            report.tenants.push(TenantRotation {
                tenant: tenant.clone(),
                current: id,
                resumed,
                rewrapped: 0,
                retired: Vec::new(),
                busy: 0,
                unreadable: 0,
            });
        }
        // Every creation that wrapped its key before the new versions became
        // current has stored its record once this is granted.
        drop(self.key_gate.write().await);

        let stale = self.records_to_rewrap(&current).await?;
        let busy = self.rewrap_all(stale, &current, &mut report).await?;
        for (tenant, count) in busy {
            if let Some(entry) = report.tenants.iter_mut().find(|t| t.tenant == tenant) {
                entry.busy = count;
            }
        }
        self.retire_unused(&tenants, &current, &mut report).await?;
        for entry in &report.tenants {
            tracing::info!(
                tenant = %entry.tenant,
                current = %entry.current,
                resumed = entry.resumed,
                rewrapped = entry.rewrapped,
                retired = entry.retired.len(),
                busy = entry.busy,
                unreadable = entry.unreadable,
                "key rotation"
            );
        }
        // Audit hook: one record per tenant rotated (ingest/trail.rs).
        self.record_key_rotation(&report).await?;
        Ok(report)
    }

    /// The tenants to rotate with the versions each holds now.
    async fn tenants_to_rotate(
        &self,
        only: Option<&str>,
    ) -> Result<BTreeMap<String, Vec<KekId>>, Error> {
        let keys = self.keys.clone();
        let versions = blocking(move || Ok(keys.versions()?)).await?;
        let mut tenants: BTreeMap<String, Vec<KekId>> = BTreeMap::new();
        for version in versions {
            tenants.entry(version.tenant).or_default().push(version.id);
        }
        match only {
            None => Ok(tenants),
            Some(tenant) => {
                crypto::validate_tenant(tenant)?;
                let versions = tenants
                    .remove(tenant)
                    .ok_or_else(|| Error::NoKeysForTenant(tenant.to_owned()))?;
                Ok(BTreeMap::from([(tenant.to_owned(), versions)]))
            }
        }
    }

    /// Creates the tenant's next version, unless an interrupted rotation
    /// left older versions behind: then its newest (current) one is kept.
    async fn make_current(&self, tenant: &str, versions: &[KekId]) -> Result<(KekId, bool), Error> {
        if versions.len() > 1
            && let Some(newest) = versions.last()
        {
            return Ok((newest.clone(), true));
        }
        let keys = self.keys.clone();
        let tenant = tenant.to_owned();
        let id = blocking(move || Ok(keys.rotate(&tenant)?)).await?;
        Ok((id, false))
    }

    /// Records of the rotated tenants whose data key is under an older key.
    async fn records_to_rewrap(
        &self,
        current: &BTreeMap<String, KekId>,
    ) -> Result<Vec<(UploadId, String)>, Error> {
        let staging = self.staging.clone();
        let current = current.clone();
        blocking(move || {
            let mut stale = Vec::new();
            for record in staging.records() {
                let record = record?;
                if current
                    .get(&record.tenant)
                    .is_some_and(|id| *id != record.key.kek)
                {
                    stale.push((record.id, record.tenant));
                }
            }
            Ok(stale)
        })
        .await
    }

    /// Re-wraps `stale` one record at a time, retrying the ones a request
    /// kept busy a few times; returns how many stayed busy, per tenant.
    async fn rewrap_all(
        &self,
        mut stale: Vec<(UploadId, String)>,
        current: &BTreeMap<String, KekId>,
        report: &mut RotationReport,
    ) -> Result<BTreeMap<String, u64>, Error> {
        for round in 0..BUSY_ROUNDS {
            if round > 0 {
                if stale.is_empty() {
                    break;
                }
                tokio::time::sleep(BUSY_PAUSE).await;
            }
            let mut busy = Vec::new();
            for (id, tenant) in stale {
                let Some(target) = current.get(&tenant) else {
                    continue;
                };
                let entry = report.tenants.iter_mut().find(|t| t.tenant == tenant);
                match (self.rewrap_one(id, target).await?, entry) {
                    (Rewrap::Rewrapped, Some(entry)) => entry.rewrapped += 1,
                    (Rewrap::Unreadable, Some(entry)) => entry.unreadable += 1,
                    (Rewrap::Busy, _) => busy.push((id, tenant)),
                    _ => {}
                }
            }
            stale = busy;
        }
        let mut counts = BTreeMap::new();
        for (_, tenant) in stale {
            *counts.entry(tenant).or_default() += 1;
        }
        Ok(counts)
    }

    /// Re-wraps one record's data key under `target`, holding the upload's
    /// lock so no request writes back a copy of the record it read earlier
    /// (with the old key). An upload a request is working on is left for a
    /// later round rather than interrupting the request.
    async fn rewrap_one(&self, id: UploadId, target: &KekId) -> Result<Rewrap, Error> {
        if self.locks.is_held(&id) {
            return Ok(Rewrap::Busy);
        }
        let _guard = match self.locks.acquire(id).await {
            Ok(guard) => guard,
            Err(Error::Locked(_) | Error::Superseded(_)) => return Ok(Rewrap::Busy),
            Err(err) => return Err(err),
        };
        let staging = self.staging.clone();
        let keys = self.keys.clone();
        let target = target.clone();
        blocking(move || rewrap_record(&staging, keys.as_ref(), id, &target)).await
    }

    /// Retires every older version of the rotated tenants that a full scan
    /// finds no record using.
    async fn retire_unused(
        &self,
        tenants: &BTreeMap<String, Vec<KekId>>,
        current: &BTreeMap<String, KekId>,
        report: &mut RotationReport,
    ) -> Result<(), Error> {
        let staging = self.staging.clone();
        let in_use = blocking(move || {
            let mut in_use = BTreeSet::new();
            for record in staging.records() {
                in_use.insert(record?.key.kek);
            }
            Ok(in_use)
        })
        .await?;
        for (tenant, versions) in tenants {
            let Some(entry) = report.tenants.iter_mut().find(|t| &t.tenant == tenant) else {
                continue;
            };
            let retire: Vec<KekId> = versions
                .iter()
                .filter(|id| Some(*id) != current.get(tenant) && !in_use.contains(*id))
                .cloned()
                .collect();
            let keys = self.keys.clone();
            let done = retire.clone();
            blocking(move || {
                for id in &retire {
                    keys.retire(id)?;
                }
                Ok(())
            })
            .await?;
            entry.retired = done;
        }
        Ok(())
    }

    /// Destroys every key of `tenant`, making all of its objects unreadable
    /// at once, then removes its records and files. Safe to run again after
    /// an interruption: the keys are gone first, and what is left of the
    /// tenant's records is removed by the next run.
    ///
    /// The caller stops new uploads for the tenant first (a creation after
    /// the keys are gone would get a fresh key).
    pub async fn shred_tenant(&self, tenant: &str) -> Result<ShredReport, Error> {
        crypto::validate_tenant(tenant)?;
        // Not while a rotation could write a re-wrapped record back.
        let _running = self.rotation.lock().await;
        let keys = self.keys.clone();
        let owned = tenant.to_owned();
        let keys_destroyed = blocking(move || Ok(keys.destroy_tenant(&owned)?)).await?;
        tracing::info!(tenant, keys_destroyed, "tenant keys destroyed");

        let staging = self.staging.clone();
        let owned = tenant.to_owned();
        let ids = blocking(move || {
            let mut ids = Vec::new();
            for record in staging.records() {
                let record: UploadRecord = record?;
                if record.tenant == owned {
                    ids.push(record.id);
                }
            }
            Ok(ids)
        })
        .await?;
        let (mut removed, mut busy) = (0, 0);
        for id in ids {
            // Taking the lock stops a request still writing to the upload.
            let Ok(_guard) = self.locks.acquire(id).await else {
                busy += 1;
                continue;
            };
            let staging = self.staging.clone();
            blocking(move || Ok(staging.remove(&id)?)).await?;
            self.digests.lock().expect("digests poisoned").remove(&id);
            self.forget_screening(&id);
            removed += 1;
        }
        Ok(ShredReport {
            tenant: tenant.to_owned(),
            keys_destroyed,
            removed,
            busy,
        })
    }
}

/// Reads the record again (under its upload's lock) and re-wraps its data
/// key under `target`. The record is written back only once the new wrap
/// exists, with every other field as read, in one durable index write.
fn rewrap_record(
    staging: &Staging,
    keys: &dyn KeyProvider,
    id: UploadId,
    target: &KekId,
) -> Result<Rewrap, Error> {
    let Some(mut record) = staging.get(&id)? else {
        return Ok(Rewrap::Nothing);
    };
    if record.key.kek == *target {
        return Ok(Rewrap::Nothing);
    }
    let dek = match keys.unwrap(&record.key, *id.as_bytes()) {
        Ok(dek) => dek,
        Err(err) if err.is_key_provider_unavailable() => return Err(err.into()),
        Err(err) => {
            tracing::warn!(upload = %id, error = %err, "data key does not unwrap; left as it is");
            return Ok(Rewrap::Unreadable);
        }
    };
    let wrapped = keys.wrap(&record.tenant, &dek, *id.as_bytes())?;
    if wrapped.kek != *target {
        // Only a rotation changes a tenant's current key, and rotations run
        // one at a time: this would be a bug, so stop before writing.
        return Err(Error::Task(format!(
            "upload {id}: wrapped under {} while rotating to {target}",
            wrapped.kek
        )));
    }
    record.key = wrapped;
    staging.put(&record, TailChange::Keep)?;
    Ok(Rewrap::Rewrapped)
}
