//! The engine's side of `vxlan` isolation: which VFs sit on which job
//! rail's bridge, joined at commit, left at release, adopted at start.

use jobnet_api::{self as api, ApiError};
use jobnet_hw::PciAddr;
use jobnet_ipam::{self as ipam, Store};

use super::convert::to_ipam_key;
use super::{lock, Engine, PAGE};
use crate::isolation::{vni_of, Vni};

impl<S: Store> Engine<S> {
    /// The `vxlan` job rails the attachment's VFs belong to.
    fn vxlan_vfs(view: &api::Attachment) -> Result<Vec<(PciAddr, Vni)>, ApiError> {
        let mut out = Vec::new();
        for vf in &view.vfs {
            if let Some(vni) = vni_of(&view.isolation_on(vf.rail)).map_err(|e| e.to_api())? {
                out.push((vf.pci, vni));
            }
        }
        Ok(out)
    }

    /// Joins every VF of `view` to its job rail's bridge; on failure undoes
    /// the joins of this call when the attachment is new (a repeated commit
    /// of a live attachment must not cut it off).
    pub(super) async fn join_isolation(
        &self,
        view: &api::Attachment,
        fresh: bool,
    ) -> Result<Vec<(PciAddr, Vni)>, ApiError> {
        let mut joined = Vec::new();
        for (pci, vni) in Self::vxlan_vfs(view)? {
            match self.isolator.join_vf(pci, vni).await {
                Ok(_) => joined.push((pci, vni)),
                Err(e) => {
                    if fresh {
                        self.leave_isolation(&joined).await;
                    }
                    return Err(e.to_api());
                }
            }
        }
        Ok(joined)
    }

    /// Takes VFs off their job rails' bridges; failures are logged (the
    /// reconciliation sweep removes what is left).
    pub(super) async fn leave_isolation(&self, vfs: &[(PciAddr, Vni)]) {
        for (pci, vni) in vfs {
            if let Err(e) = self.isolator.leave_vf(*pci, *vni).await {
                tracing::warn!(%pci, %vni, error = %e, "taking the VF off its job bridge failed");
            }
        }
    }

    /// The VFs `key` owns with their `vxlan` job rails, from the book and a
    /// replica's copy of the attachment.
    pub(super) async fn owned_vxlan_vfs(&self, key: &api::AttachmentKey) -> Vec<(PciAddr, Vni)> {
        let (pcis, inv) = {
            let book = lock(&self.book);
            (book.owned_by(key), book.inventory().clone())
        };
        if pcis.is_empty() {
            return Vec::new();
        }
        let att = match self.ipam.attachment_relaxed(&to_ipam_key(key)).await {
            Ok(Some(a)) => a,
            Ok(None) => return Vec::new(),
            Err(e) => {
                tracing::warn!(attachment = %key, error = %e, "cannot read the attachment's job rails; the sweep will clean its bridges");
                return Vec::new();
            }
        };
        pcis.into_iter()
            .filter_map(|pci| {
                let rail = inv.all().find(|e| e.pci() == pci)?.rail;
                let iso = att.rails.iter().find(|r| r.rail == rail)?.isolation?;
                (iso.mode == ipam::IsolationMode::Vxlan)
                    .then(|| Vni::new(iso.id).ok())
                    .flatten()
                    .map(|vni| (pci, vni))
            })
            .collect()
    }

    /// Tells the isolator which VFs recorded attachments hold on job rails,
    /// so the sweep keeps their bridges.
    pub(super) async fn adopt_isolation(&self) -> Result<(), ApiError> {
        if !self.has_vxlan {
            return Ok(());
        }
        let mut after = None;
        loop {
            let page = self.attachment_page(after.as_ref()).await?;
            let full = page.len() == PAGE;
            after = page.last().map(|(a, _)| a.key.clone());
            let mut vfs = Vec::new();
            for (a, rec) in &page {
                match Self::vxlan_vfs(&self.view(a, rec.as_ref())) {
                    Ok(v) => vfs.extend(v.into_iter().map(|(p, n)| (n, p))),
                    Err(e) => {
                        tracing::warn!(attachment = %a.key, error = %e, "recorded isolation unusable")
                    }
                }
            }
            self.isolator.adopt(vfs).await;
            if !full {
                return Ok(());
            }
        }
    }
}
