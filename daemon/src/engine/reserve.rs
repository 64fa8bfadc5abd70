//! Reserve: choosing and claiming VFs, recording them with the addresses in
//! one IPAM transaction, and answering repeats.

use std::sync::Mutex;
use std::time::Instant;

use jobnet_api::{self as api, ApiError, ErrorCode};
use jobnet_hw::PciAddr;
use jobnet_ipam::{self as ipam, RailSelection, Store};

use super::convert::{api_err, to_ipam_key};
use super::records::{assignment, attachment_records, AttRecord};
use super::{lock, Engine};
use crate::inventory::{RailWant, VfBook, VfEntry};
use crate::validate;

/// Most uncommitted reservations remembered for their commit.
const RESERVED_VIEWS_MAX: usize = 65_536;

/// Releases in-flight VF claims when a reserve ends, whatever the outcome.
struct ClaimGuard<'a> {
    book: &'a Mutex<VfBook>,
    vfs: Vec<PciAddr>,
    owner: Option<api::AttachmentKey>,
}

impl Drop for ClaimGuard<'_> {
    fn drop(&mut self) {
        lock(self.book).unclaim(&self.vfs, self.owner.as_ref());
    }
}

impl<S: Store> Engine<S> {
    /// Picks and claims the VFs for a reserve; the guard un-claims on drop.
    fn claim_vfs(
        &self,
        pool: &str,
        req: &api::ReserveRequest,
        key: &api::AttachmentKey,
    ) -> Result<(Vec<VfEntry>, ClaimGuard<'_>), ApiError> {
        let settings = self.pool_settings(pool)?;
        let mut book = lock(&self.book);
        let inv = book.inventory().clone();
        let mut fixed: Option<&VfEntry> = None;
        if let Some(dev) = req.device_id {
            let e = inv.get(pool, dev).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::UnknownDevice,
                    format!("{dev} is not a VF of pool {pool:?} on node {}", self.node),
                )
            })?;
            if let Some(owner) = book.owner(dev) {
                if owner != key {
                    return Err(ApiError::new(
                        ErrorCode::DeviceBusy,
                        format!("VF {dev} is owned by {owner}"),
                    ));
                }
            }
            if book.is_claimed(dev) {
                return Err(ApiError::new(
                    ErrorCode::DeviceBusy,
                    format!("VF {dev} is being reserved by another request"),
                ));
            }
            if e.info.is_dpdk() {
                return Err(ApiError::new(
                    ErrorCode::DeviceUnavailable,
                    format!(
                        "VF {dev} is bound to {} (userspace)",
                        e.info.driver.as_deref().unwrap_or("?")
                    ),
                ));
            }
            fixed = Some(e);
        }
        let want = match (req.rails, fixed) {
            (api::Rails::One, Some(_)) => RailWant::Each(Vec::new()),
            (api::Rails::One, None) => RailWant::Any((0..settings.rails).collect()),
            (api::Rails::All, f) => RailWant::Each(
                (0..settings.rails)
                    .filter(|r| f.is_none_or(|e| e.rail != *r))
                    .collect(),
            ),
        };
        let free = book.free_vfs(pool);
        let picked = self
            .selector
            .select(&free, &want, &req.gpus)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::NoFreeDevice,
                    format!(
                        "pool {pool:?} has no free VF for {want} on node {}",
                        self.node
                    ),
                )
            })?;
        let mut chosen: Vec<VfEntry> = fixed.into_iter().chain(picked).cloned().collect();
        chosen.sort_by_key(|e| e.rail);
        let pcis: Vec<PciAddr> = chosen.iter().map(VfEntry::pci).collect();
        book.claim(&pcis);
        let guard = ClaimGuard {
            book: &self.book,
            vfs: pcis,
            owner: None,
        };
        Ok((chosen, guard))
    }

    /// Reserves addresses and VF(s) for an attachment (idempotent per key).
    pub async fn reserve(&self, req: api::ReserveRequest) -> Result<api::Attachment, ApiError> {
        validate::reserve(&req)?;
        let started = Instant::now();
        let key = req.key();
        let pool = req
            .pool
            .clone()
            .unwrap_or_else(|| self.default_pool.clone());
        self.pool_settings(&pool)?;
        let _key_guard = self.key_locks.lock(key.clone()).await;
        // Every recorded attachment owns its VFs in the book, so only a key
        // that owns one can be a repeat worth a read; any other repeat is
        // caught by the reservation's own compare below.
        let maybe_repeat = lock(&self.book).owns_any(&key);
        if maybe_repeat {
            if let Some(existing) = self
                .ipam
                .attachment(&to_ipam_key(&key))
                .await
                .map_err(api_err)?
            {
                return self.repeat(&req, &pool, &existing).await;
            }
        }
        if let Some(dev) = req.device_id {
            if self.inventory().get(&pool, dev).is_none() {
                // A VF created since the last scan: look again once, owners included
                // (the book only keeps owners of VFs it knows).
                match self.rescan() {
                    Ok(()) => self.reload_owners().await?,
                    Err(e) => tracing::warn!(error = %e, "rescan for an unknown deviceID failed"),
                }
            }
        }
        let (chosen, mut claim) = self.claim_vfs(&pool, &req, &key)?;
        let rails = match req.rails {
            api::Rails::All => RailSelection::All,
            api::Rails::One => RailSelection::One(chosen.first().map_or(0, |e| e.rail)),
        };
        let record = AttRecord {
            node: self.node.clone(),
            netns: req.netns.clone(),
            network: req.network.clone(),
            vfs: chosen.iter().map(assignment).collect(),
        };
        let records = attachment_records(&self.node, &key, &record)?;
        let (att, created) = self
            .ipam
            .reserve_new(ipam::ReserveRequest {
                pool: pool.clone(),
                job: req.job.clone(),
                key: to_ipam_key(&key),
                rank: req.rank,
                rails,
                records,
            })
            .await
            .map_err(api_err)?;
        if !created {
            // Recorded already: an earlier attempt of this very reserve that
            // the store applied without telling us, or a record the book has
            // not loaded. Answer as a repeat; the VFs are its owner's.
            let view = self.repeat(&req, &pool, &att).await;
            if let Ok(v) = &view {
                if v.vfs.iter().map(|x| x.pci).eq(claim.vfs.iter().copied()) {
                    claim.owner = Some(key.clone());
                }
            }
            drop(claim);
            return view;
        }
        claim.owner = Some(key.clone());
        drop(claim);
        self.metrics.attachments.inc();
        self.metrics
            .reserve_seconds
            .observe(started.elapsed().as_secs_f64());
        self.update_gauges();
        tracing::info!(attachment = %key, job = %req.job, rank = ?req.rank, pool = %pool,
            vfs = ?record.vfs.iter().map(|v| v.pci.to_string()).collect::<Vec<_>>(), "reserved");
        let view = self.view(&att, Some(&record));
        self.remember_reserved(&view);
        Ok(view)
    }

    /// Records a committed attachment exactly as reserve and commit would, with
    /// `vfs` as its devices, without looking at the inventory. For filling a
    /// store in benchmarks and tests (the devices need not exist).
    #[doc(hidden)]
    pub async fn import_committed(
        &self,
        req: api::ReserveRequest,
        vfs: Vec<api::VfAssignment>,
    ) -> Result<(), ApiError> {
        validate::reserve(&req)?;
        let key = req.key();
        let pool = req
            .pool
            .clone()
            .unwrap_or_else(|| self.default_pool.clone());
        let record = AttRecord {
            node: self.node.clone(),
            netns: req.netns.clone(),
            network: req.network.clone(),
            vfs,
        };
        let records = attachment_records(&self.node, &key, &record)?;
        self.ipam
            .reserve(ipam::ReserveRequest {
                pool,
                job: req.job.clone(),
                key: to_ipam_key(&key),
                rank: req.rank,
                rails: RailSelection::All,
                records,
            })
            .await
            .map_err(api_err)?;
        self.ipam
            .commit(&to_ipam_key(&key))
            .await
            .map_err(api_err)?;
        Ok(())
    }

    /// A reserve for a key that is already recorded: same answer, or a conflict.
    async fn repeat(
        &self,
        req: &api::ReserveRequest,
        pool: &str,
        existing: &ipam::Attachment,
    ) -> Result<api::Attachment, ApiError> {
        let key = req.key();
        if existing.pool != pool || existing.job != req.job {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "{key} is already reserved for job {:?} in pool {:?}",
                    existing.job, existing.pool
                ),
            ));
        }
        let rec = self.att_record(&key).await?;
        if let (Some(dev), Some(rec)) = (req.device_id, &rec) {
            if !rec.vfs.iter().any(|v| v.pci == dev) {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    format!("{key} is already reserved with another VF"),
                ));
            }
        }
        Ok(self.view(existing, rec.as_ref()))
    }

    fn remember_reserved(&self, view: &api::Attachment) {
        let mut r = lock(&self.reserved);
        if r.len() >= RESERVED_VIEWS_MAX {
            r.clear();
        }
        r.insert(view.key(), view.clone());
    }
}
