//! The API handler jobnetd serves: the engine, plus the topology around it.
//!
//! [`TopologyHandler`] passes every call to the engine and adds:
//! - on reserve: the pod's GPUs are checked against the node's topology
//!   (an unknown GPU is an `invalid-argument`), kept for the hints, and a
//!   given `deviceID` that is farther from the GPUs than the best free VF
//!   is logged as a warning;
//! - on commit: the pod's `nccl.env` and `topo.xml` are written;
//! - on release and GC: they are rewritten without the attachment or removed;
//! - `GET /v1/topology` and `GET /v1/attachments/{cid}/{ifname}/hints`.

use std::sync::Arc;

use jobnet_api::{
    ApiError, Attachment, AttachmentKey, AttachmentState, ErrorCode, GangReservation,
    GangReserveRequest, GcRequest, GcResponse, JobDetail, JobSummary, PodHints, ReleaseResponse,
    ReserveRequest, StatusResponse, VfInfo, VfState,
};
use jobnet_hw::topology::TopoView;
use jobnet_hw::PciAddr;

use crate::hints::{HintStore, SyncReport};
use crate::server::ApiHandler;
use crate::topology::NodeTopology;
use crate::validate;

/// The engine (`H`) with topology checks, hints and the topology API.
pub struct TopologyHandler<H> {
    inner: Arc<H>,
    topo: Arc<NodeTopology>,
    hints: Arc<HintStore>,
}

impl<H> std::fmt::Debug for TopologyHandler<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopologyHandler").finish_non_exhaustive()
    }
}

impl<H: ApiHandler> TopologyHandler<H> {
    /// Wraps `inner`.
    pub fn new(inner: Arc<H>, topo: Arc<NodeTopology>, hints: Arc<HintStore>) -> Self {
        Self { inner, topo, hints }
    }

    /// Re-reads the topology, then brings the hints files in line with the
    /// engine's attachments (after a restart, and after reconciliation
    /// released attachments behind the API's back).
    pub async fn refresh(&self) -> Result<SyncReport, ApiError> {
        if let Err(e) = self.topo.refresh() {
            tracing::warn!(error = %e, "topology refresh failed; keeping the previous one");
        }
        let all = self.inner.attachments().await?;
        Ok(self.hints.sync(&all, &self.topo.snapshot()))
    }

    /// The request's GPUs as addresses; unknown GPUs are the caller's error.
    fn resolve_gpus(&self, req: &ReserveRequest) -> Result<Vec<PciAddr>, ApiError> {
        if req.gpus.is_empty() {
            return Ok(Vec::new());
        }
        let (gpus, uuids) = self
            .topo
            .snapshot()
            .resolve_gpus(&req.gpus)
            .map_err(|e| ApiError::new(ErrorCode::InvalidArgument, e.to_string()))?;
        if !uuids.is_empty() {
            tracing::warn!(attachment = %req.key(), ?uuids,
                "GPU UUIDs cannot be placed from sysfs; give PCI addresses or indexes for a topology-aware choice");
        }
        Ok(gpus)
    }

    /// Warns when a given deviceID is farther from the GPUs than the best free VF.
    async fn check_placement(&self, req: &ReserveRequest, gpus: &[PciAddr], att: &Attachment) {
        let Some(dev) = req.device_id else { return };
        if gpus.is_empty() {
            return;
        }
        let snap = self.topo.snapshot();
        let Some(given) = snap.class(gpus, dev) else {
            return;
        };
        let free = match self.inner.vfs().await {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(error = %e, "listing VFs for the placement check");
                return;
            }
        };
        let best = snap.best_class(
            gpus,
            free.iter()
                .filter(|v| v.pool == att.pool && v.state == VfState::Free)
                .map(|v| v.pci)
                .chain(std::iter::once(dev)),
        );
        if let Some(best) = best.filter(|b| *b < given) {
            tracing::warn!(
                attachment = %att.key(),
                device = %dev,
                class = %given.as_str(),
                best = %best.as_str(),
                "deviceID is badly placed for the pod's GPUs: a free VF is closer"
            );
        }
    }
}

impl<H: ApiHandler> ApiHandler for TopologyHandler<H> {
    async fn reserve(&self, req: ReserveRequest) -> Result<Attachment, ApiError> {
        let gpus = self.resolve_gpus(&req)?;
        let att = self.inner.reserve(req.clone()).await?;
        self.hints.remember_gpus(&att.key(), gpus.clone());
        self.check_placement(&req, &gpus, &att).await;
        Ok(att)
    }

    async fn commit(&self, key: AttachmentKey) -> Result<Attachment, ApiError> {
        let att = self.inner.commit(key).await?;
        if att.state == AttachmentState::Committed {
            // Hints are advice to NCCL: failing to write them must not fail the pod.
            if let Err(e) = self.hints.committed(&att, &self.topo.snapshot()) {
                tracing::warn!(attachment = %att.key(), error = %e, "writing hints");
            }
        }
        Ok(att)
    }

    async fn release(&self, key: AttachmentKey) -> Result<ReleaseResponse, ApiError> {
        let r = self.inner.release(key.clone()).await?;
        if let Err(e) = self.hints.released(&key, &self.topo.snapshot()) {
            tracing::warn!(attachment = %key, error = %e, "removing hints");
        }
        Ok(r)
    }

    async fn check(&self, key: AttachmentKey) -> Result<Attachment, ApiError> {
        self.inner.check(key).await
    }

    async fn status(&self) -> Result<StatusResponse, ApiError> {
        self.inner.status().await
    }

    async fn gc(&self, req: GcRequest) -> Result<GcResponse, ApiError> {
        let r = self.inner.gc(req).await?;
        let snap = self.topo.snapshot();
        for key in &r.released {
            if let Err(e) = self.hints.released(key, &snap) {
                tracing::warn!(attachment = %key, error = %e, "removing hints");
            }
        }
        Ok(r)
    }

    async fn jobs(&self) -> Result<Vec<JobSummary>, ApiError> {
        self.inner.jobs().await
    }

    async fn job(&self, job: String) -> Result<JobDetail, ApiError> {
        self.inner.job(job).await
    }

    async fn attachments(&self) -> Result<Vec<Attachment>, ApiError> {
        self.inner.attachments().await
    }

    async fn vfs(&self) -> Result<Vec<VfInfo>, ApiError> {
        self.inner.vfs().await
    }

    async fn gang_reserve(&self, req: GangReserveRequest) -> Result<GangReservation, ApiError> {
        self.inner.gang_reserve(req).await
    }

    async fn topology(&self) -> Result<TopoView, ApiError> {
        Ok(self.topo.snapshot().view.clone())
    }

    async fn hints(&self, key: AttachmentKey) -> Result<PodHints, ApiError> {
        validate::key(&key)?;
        // Unknown attachments answer as every other call does.
        self.inner.check(key.clone()).await?;
        self.hints.hints(&key)
    }
}
