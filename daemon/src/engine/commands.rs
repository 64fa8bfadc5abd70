//! The engine's changes after a reserve: commit, release, gang reservation,
//! CNI GC and forgetting a node.

use std::collections::HashSet;

use jobnet_api::{self as api, ApiError, ErrorCode};
use jobnet_ipam::{self as ipam, Store};

use super::convert::{api_err, isolation, rail_addresses, rail_subnets, to_api_key, to_ipam_key};
use super::records::{vf_of_record, vf_owner_prefix};
use super::{lock, Engine, PAGE};
use crate::validate;

/// The answer for a key nothing is recorded under.
pub(super) fn unknown(key: &api::AttachmentKey) -> ApiError {
    ApiError::new(
        ErrorCode::UnknownAttachment,
        format!("no attachment {key} is recorded"),
    )
}

impl<S: Store> Engine<S> {
    /// Commits a reservation (idempotent).
    pub async fn commit(&self, key: api::AttachmentKey) -> Result<api::Attachment, ApiError> {
        validate::key(&key)?;
        let _g = self.key_locks.lock(key.clone()).await;
        let ik = to_ipam_key(&key);
        // The reservation as this process answered it, else as recorded.
        let remembered = lock(&self.reserved).remove(&key);
        let mut view = match remembered {
            Some(v) => v,
            None => {
                let before = self
                    .ipam
                    .attachment(&ik)
                    .await
                    .map_err(api_err)?
                    .ok_or_else(|| unknown(&key))?;
                let rec = self.att_record(&key).await?;
                self.view(&before, rec.as_ref())
            }
        };
        let fresh = view.state == api::AttachmentState::Reserved;
        // vxlan: the VFs join their job rails' bridges before the attachment
        // is committed, so a committed attachment is always isolated.
        let joined = if self.has_vxlan {
            self.join_isolation(&view, fresh).await?
        } else {
            Vec::new()
        };
        let att = match self.ipam.commit(&ik).await {
            Ok(a) => a,
            Err(e) => {
                if fresh {
                    self.leave_isolation(&joined).await;
                }
                return Err(api_err(e));
            }
        };
        if fresh {
            let ms = self.clock.now_ms().saturating_sub(att.created_ms);
            self.metrics.attach_seconds.observe(ms as f64 / 1000.0);
            tracing::info!(attachment = %key, job = %att.job, "committed");
        }
        view.state = api::AttachmentState::Committed;
        Ok(view)
    }

    /// Releases an attachment and its VFs (idempotent).
    pub async fn release(&self, key: api::AttachmentKey) -> Result<api::ReleaseResponse, ApiError> {
        validate::key(&key)?;
        let _g = self.key_locks.lock(key.clone()).await;
        let r = self.release_locked(&key).await;
        if r.as_ref().is_err_and(|e| e.code == ErrorCode::Unavailable) {
            tracing::warn!(attachment = %key, "store unavailable: release queued for retry");
            lock(&self.retry_releases).insert(key);
        }
        r
    }

    /// Releases `key`, whose key lock the caller holds.
    pub(super) async fn release_locked(
        &self,
        key: &api::AttachmentKey,
    ) -> Result<api::ReleaseResponse, ApiError> {
        lock(&self.reserved).remove(key);
        // Device side first, so it is done even while the store cannot
        // record the release (a replica's copy of the attachment names its
        // job rails; the sweep catches what this misses).
        if self.has_vxlan {
            self.leave_isolation(&self.owned_vxlan_vfs(key).await).await;
        }
        let released = self
            .ipam
            .release(&to_ipam_key(key))
            .await
            .map_err(api_err)?;
        let Some(att) = released else {
            return Ok(api::ReleaseResponse { released: false });
        };
        let prefix = vf_owner_prefix(&self.node);
        {
            let mut book = lock(&self.book);
            for r in &att.records {
                if let Some(pci) = vf_of_record(&prefix, r) {
                    book.disown(pci, key);
                }
            }
        }
        self.metrics.attachments.dec();
        self.update_gauges();
        tracing::info!(attachment = %key, job = %att.job, "released");
        Ok(api::ReleaseResponse { released: true })
    }

    /// Reserves a whole job up front, all or nothing.
    pub async fn gang_reserve(
        &self,
        req: api::GangReserveRequest,
    ) -> Result<api::GangReservation, ApiError> {
        validate::job(&req.job)?;
        let pool = req
            .pool
            .clone()
            .unwrap_or_else(|| self.default_pool.clone());
        let settings = self.pool_settings(&pool)?;
        let g = self
            .ipam
            .gang_reserve(ipam::GangRequest {
                pool: pool.clone(),
                job: req.job.clone(),
                world_size: req.ranks,
            })
            .await
            .map_err(api_err)?;
        tracing::info!(job = %req.job, pool = %pool, ranks = req.ranks, "gang reserved");
        Ok(api::GangReservation {
            job: req.job,
            pool,
            isolation: isolation(settings.isolation, g.job.isolation),
            subnets: rail_subnets(&g.job.rails),
            ranks: g
                .ranks
                .iter()
                .map(|r| api::RankAddresses {
                    rank: r.rank,
                    addresses: rail_addresses(&r.rails),
                })
                .collect(),
        })
    }

    /// Releases everything `req.node` holds, for a node that will not return
    /// (its pods are gone with it). Refuses this node and, unless forced, a
    /// node whose jobnetd is alive.
    pub async fn forget_node(
        &self,
        req: api::ForgetNodeRequest,
    ) -> Result<api::ForgetNodeResponse, ApiError> {
        validate::job(&req.node).map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidArgument,
                format!("bad node name {:?}", req.node),
            )
        })?;
        if req.node == self.ipam.node() || req.node == self.node {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                "a node cannot forget itself: release its attachments with GC instead",
            ));
        }
        let report = self
            .ipam
            .forget_node(&req.node, req.force)
            .await
            .map_err(api_err)?;
        tracing::warn!(node = %req.node, released = report.released.len(), "node forgotten");
        Ok(api::ForgetNodeResponse {
            node: req.node,
            released: report.released.iter().map(to_api_key).collect(),
        })
    }

    /// Releases this node's attachments not in `req.valid` (CNI GC).
    pub async fn gc(&self, req: api::GcRequest) -> Result<api::GcResponse, ApiError> {
        let valid: HashSet<api::AttachmentKey> = req.valid.into_iter().collect();
        let mut released = Vec::new();
        let mut after = None;
        loop {
            let page = self.attachment_page(after.as_ref()).await?;
            let full = page.len() == PAGE;
            after = page.last().map(|(a, _)| a.key.clone());
            for (a, rec) in page {
                let key = to_api_key(&a.key);
                let ours = rec.as_ref().is_none_or(|r| r.node == self.node);
                let in_network = req.network.is_none()
                    || rec.as_ref().and_then(|r| r.network.as_ref()) == req.network.as_ref();
                if !ours || !in_network || valid.contains(&key) || self.in_grace(&a) {
                    continue;
                }
                let _g = self.key_locks.lock(key.clone()).await;
                if self.release_locked(&key).await?.released {
                    self.metrics.reconciled.inc();
                    tracing::info!(attachment = %key, "released by GC");
                    released.push(key);
                }
            }
            if !full {
                return Ok(api::GcResponse { released });
            }
        }
    }
}
