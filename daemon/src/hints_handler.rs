//! The API handler jobnetd serves: the engine, plus the topology around it.
//!
//! [`TopologyHandler`] passes every call to the engine and adds:
//! - on reserve: the pod's GPUs are checked against the node's topology
//!   (an unknown GPU is an `invalid-argument`), kept for the hints, and a
//!   given `deviceID` that is farther from the GPUs than the best free VF
//!   is logged as a warning;
//! - on commit: the pod's `nccl.env` and `topo.xml` are written before the
//!   commit answers (off the async workers, under a per-pod lock);
//! - on release and GC: they are rewritten without the attachment or removed;
//! - `GET /v1/topology` and `GET /v1/attachments/{cid}/{ifname}/hints`;
//! - [`TopologyHandler::refresh`]: at start and after each reconciliation,
//!   brings the files in line with the store a page at a time.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use jobnet_api::{
    ApiError, Attachment, AttachmentKey, AttachmentState, ErrorCode, ForgetNodeRequest,
    ForgetNodeResponse, GangReservation, GangReserveRequest, GcRequest, GcResponse, JobDetail,
    JobSummary, NodeView, Page, PageRequest, PodHints, ReleaseResponse, ReserveRequest,
    StatusResponse, VfInfo, VfState,
};
use jobnet_hw::topology::TopoView;
use jobnet_hw::PciAddr;

use crate::engine::Engine;
use crate::hints::{pod_dir_name, pod_hash, HintStore, PodMarker, SyncReport};
use crate::server::ApiHandler;
use crate::topology::NodeTopology;
use crate::validate;

/// Attachments read per page by the hints sync.
const PAGE: usize = 512;

/// One attachment as the store lists it: enough to tell whether its pod's
/// hints are current without building the full [`Attachment`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentStub {
    /// The attachment's key.
    pub key: AttachmentKey,
    /// Committed (reserved otherwise).
    pub committed: bool,
    /// When it was reserved: with the key, names one incarnation.
    pub reserved_at_ms: u64,
}

/// A paged listing of attachments in (containerID, ifname) order, so one
/// pod's attachments are adjacent.
pub trait AttachmentIndex: Send + Sync + 'static {
    /// Up to `limit` attachments after `after` (from the first when `None`).
    fn attachment_page(
        &self,
        after: Option<&AttachmentKey>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<AttachmentStub>, ApiError>> + Send;
}

impl<S: jobnet_ipam::Store> AttachmentIndex for Engine<S> {
    async fn attachment_page(
        &self,
        after: Option<&AttachmentKey>,
        limit: usize,
    ) -> Result<Vec<AttachmentStub>, ApiError> {
        let after = after
            .map(|k| jobnet_ipam::AttachmentKey::new(k.container_id.clone(), k.ifname.clone()));
        let page = self
            .ipam()
            .attachments_page(after.as_ref(), limit)
            .await
            .map_err(|e| ApiError::new(ErrorCode::StoreFailure, e.to_string()))?;
        Ok(page
            .into_iter()
            .map(|a| AttachmentStub {
                committed: matches!(a.state, jobnet_ipam::AttachmentState::Committed),
                reserved_at_ms: a.created_ms,
                key: AttachmentKey::new(a.key.container_id, a.key.ifname),
            })
            .collect())
    }
}

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

/// Groups committed stubs (in key order) into per-pod markers.
fn markers(stubs: Vec<AttachmentStub>) -> Vec<PodMarker> {
    let mut out: Vec<PodMarker> = Vec::new();
    for s in stubs {
        let entry = (s.key.ifname, s.reserved_at_ms);
        match out.last_mut() {
            Some((id, m)) if *id == s.key.container_id => m.push(entry),
            _ => out.push((s.key.container_id, vec![entry])),
        }
    }
    out
}

impl<H: ApiHandler + AttachmentIndex> TopologyHandler<H> {
    /// Wraps `inner`.
    pub fn new(inner: Arc<H>, topo: Arc<NodeTopology>, hints: Arc<HintStore>) -> Self {
        Self { inner, topo, hints }
    }

    /// Re-reads the topology, then brings the hints files in line with the
    /// engine's attachments (after a restart, and after reconciliation
    /// released attachments behind the API's back): pages through the
    /// store, rewrites only pods whose files are missing or were written
    /// for other attachments, and removes directories of pods that have
    /// none committed. Memory stays bounded: a page, and one hash per pod.
    pub async fn refresh(&self) -> Result<SyncReport, ApiError> {
        let topo = self.topo.clone();
        match tokio::task::spawn_blocking(move || topo.refresh()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "topology refresh failed; keeping the previous one");
            }
            Err(e) => tracing::warn!(error = %e, "topology refresh task failed"),
        }
        let started = Instant::now();
        let mut report = SyncReport::default();
        let mut live: HashSet<u64> = HashSet::new();
        let mut seen_pending: HashSet<AttachmentKey> = HashSet::new();
        let mut after: Option<AttachmentKey> = None;
        let mut carry: Vec<AttachmentStub> = Vec::new();
        loop {
            let page = self.inner.attachment_page(after.as_ref(), PAGE).await?;
            let full = page.len() == PAGE;
            after = page.last().map(|s| s.key.clone());
            for s in &page {
                if self.hints.is_pending(&s.key) {
                    seen_pending.insert(s.key.clone());
                }
            }
            carry.extend(
                page.into_iter()
                    .filter(|s| s.committed && pod_dir_name(&s.key.container_id).is_ok()),
            );
            // The page's last pod may go on in the next page: keep it back.
            let ready = match (&after, full) {
                (Some(last), true) => {
                    let pos = carry
                        .iter()
                        .position(|s| s.key.container_id == last.container_id)
                        .unwrap_or(carry.len());
                    let tail = carry.split_off(pos);
                    std::mem::replace(&mut carry, tail)
                }
                _ => std::mem::take(&mut carry),
            };
            let pods = markers(ready);
            live.extend(pods.iter().map(|(id, _)| pod_hash(id)));
            for id in self.hints.stale_pods(pods).await {
                match self.rebuild_pod(&id).await {
                    Ok(()) => report.written += 1,
                    Err(e) => tracing::warn!(container = %id, error = %e, "writing hints"),
                }
            }
            if !full {
                break;
            }
        }
        self.hints.prune_pending(&seen_pending, started);
        // Directories of pods that are gone (including ones from before a restart).
        let mut names = self.hints.pod_dir_names();
        while let Some(id) = names.recv().await {
            if live.contains(&pod_hash(&id)) {
                continue;
            }
            // Committed since the pass above went by: its commit wrote it.
            let guard = self.hints.lock_pod(&id).await;
            match self.committed_of(&id).await {
                Ok(atts) if atts.is_empty() => {
                    if self.hints.remove_pod(&guard, &id).await {
                        report.removed += 1;
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(container = %id, error = %e, "checking stale hints"),
            }
        }
        Ok(report)
    }

    /// Pod `id`'s committed attachments, read now.
    async fn committed_of(&self, id: &str) -> Result<Vec<Attachment>, ApiError> {
        let start = AttachmentKey::new(id, "");
        let mut out = Vec::new();
        let mut after = Some(start);
        loop {
            let page = self.inner.attachment_page(after.as_ref(), 16).await?;
            let full = page.len() == 16;
            let mut done = !full;
            for s in page {
                if s.key.container_id != id {
                    done = true;
                    break;
                }
                after = Some(s.key.clone());
                if !s.committed {
                    continue;
                }
                match self.inner.check(s.key).await {
                    Ok(a) if a.state == AttachmentState::Committed => out.push(a),
                    Ok(_) => {}
                    Err(e) if e.code == ErrorCode::UnknownAttachment => {}
                    Err(e) => return Err(e),
                }
            }
            if done {
                return Ok(out);
            }
        }
    }

    /// Rewrites pod `id`'s files from its attachments as the store has
    /// them now, under the pod's lock (so a commit or release in between
    /// is not undone).
    async fn rebuild_pod(&self, id: &str) -> Result<(), ApiError> {
        let guard = self.hints.lock_pod(id).await;
        let atts = self.committed_of(id).await?;
        self.hints
            .rebuild(&guard, id, atts, self.topo.snapshot())
            .await
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))
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

impl<H: ApiHandler + AttachmentIndex> ApiHandler for TopologyHandler<H> {
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
            if let Err(e) = self
                .hints
                .committed(att.clone(), self.topo.snapshot())
                .await
            {
                tracing::warn!(attachment = %att.key(), error = %e, "writing hints");
            }
        }
        Ok(att)
    }

    async fn release(&self, key: AttachmentKey) -> Result<ReleaseResponse, ApiError> {
        let r = self.inner.release(key.clone()).await?;
        if let Err(e) = self.hints.released(key.clone(), self.topo.snapshot()).await {
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
            if let Err(e) = self.hints.released(key.clone(), snap.clone()).await {
                tracing::warn!(attachment = %key, error = %e, "removing hints");
            }
        }
        Ok(r)
    }

    async fn jobs(&self, page: PageRequest) -> Result<Page<JobSummary>, ApiError> {
        self.inner.jobs(page).await
    }

    async fn job(&self, job: String) -> Result<JobDetail, ApiError> {
        self.inner.job(job).await
    }

    async fn attachments(&self, page: PageRequest) -> Result<Page<Attachment>, ApiError> {
        self.inner.attachments(page).await
    }

    async fn vfs(&self) -> Result<Vec<VfInfo>, ApiError> {
        self.inner.vfs().await
    }

    async fn gang_reserve(&self, req: GangReserveRequest) -> Result<GangReservation, ApiError> {
        self.inner.gang_reserve(req).await
    }

    async fn nodes(&self) -> Result<Vec<NodeView>, ApiError> {
        self.inner.nodes().await
    }

    async fn forget_node(&self, req: ForgetNodeRequest) -> Result<ForgetNodeResponse, ApiError> {
        self.inner.forget_node(req).await
    }

    async fn topology(&self) -> Result<TopoView, ApiError> {
        Ok(self.topo.snapshot().view.clone())
    }

    async fn hints(&self, key: AttachmentKey) -> Result<PodHints, ApiError> {
        validate::key(&key)?;
        // Unknown attachments answer as every other call does.
        let att = self.inner.check(key.clone()).await?;
        match self.hints.hints(&key).await {
            Err(e) if e.code == ErrorCode::NotFound && att.state == AttachmentState::Committed => {
                // Committed but its files are gone or were never written
                // (a failed write): render them now rather than lose them.
                self.rebuild_pod(&key.container_id).await?;
                self.hints.hints(&key).await
            }
            r => r,
        }
    }
}
