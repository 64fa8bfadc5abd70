//! DEL: undo an attachment whatever state it is in. Never fails: a DEL
//! that errors is retried by the runtime forever and the pod sticks.

use std::path::Path;

use jobnet_hw::PciAddr;
use jobnet_netlink::{Handle, Netns};

use super::attach::{restore, temp_name, Context};
use super::cache::{self, CacheError};
use super::devinfo;
use super::owner;
use super::record::AttachmentRecord;

/// What DEL found and did (for logs and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetachOutcome {
    /// The VF was restored from the cache and released.
    Restored,
    /// The cache existed but the VF netdev could not be fully restored
    /// (logged); records were still cleaned up.
    RestoredPartly,
    /// The VF now belongs to another attachment; only our own files were
    /// removed and the device left alone.
    VfOwnedByOther,
    /// No usable cache: the device was returned from the pod on a best-effort
    /// basis when the config named it.
    NoCache,
}

/// Undoes the attachment (`container_id`, `ifname`). `device_hint` is the
/// config's `deviceID` and `devinfo_hint` the device-info path the config
/// implies; both are used only when the cache is missing or corrupt.
pub async fn detach(
    ctx: &Context<'_>,
    container_id: &str,
    ifname: &str,
    netns: Option<&Path>,
    device_hint: Option<PciAddr>,
    devinfo_hint: Option<&Path>,
) -> DetachOutcome {
    let cache_path = cache::path_for(ctx.state, container_id, ifname);
    let rec = match cache::load::<AttachmentRecord>(&cache_path) {
        Ok(r) => Some(r),
        Err(CacheError::Missing(_)) => None,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring unusable attachment cache");
            None
        }
    };
    let Some(rec) = rec else {
        if let Some(pci) = device_hint {
            best_effort_return(ctx, container_id, ifname, netns, pci).await;
        }
        if let Some(p) = devinfo_hint {
            if let Err(e) = devinfo::remove(p) {
                tracing::warn!(error = %e, "cannot remove device-info file");
            }
        }
        let _ = cache::remove(&cache_path);
        return DetachOutcome::NoCache;
    };

    let claim = match owner::lock_existing_with_hook(ctx.state, rec.pci, ctx.faults) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot lock VF ownership record; restoring anyway");
            None
        }
    };
    if let Some(c) = &claim {
        if c.record.container_id != container_id || c.record.ifname != ifname {
            tracing::info!(
                pci = %rec.pci,
                owner = %c.record.container_id,
                "VF already belongs to another attachment; leaving the device alone"
            );
            remove_files(&rec, &cache_path);
            return DetachOutcome::VfOwnedByOther;
        }
    }
    let restored = restore(ctx.sysfs, ctx.rdma.as_ref(), &rec).await;
    remove_files(&rec, &cache_path);
    if let Some(c) = claim {
        if let Err(e) = c.release() {
            tracing::warn!(error = %e, "cannot remove VF ownership record");
        }
    }
    if restored {
        DetachOutcome::Restored
    } else {
        DetachOutcome::RestoredPartly
    }
}

fn remove_files(rec: &AttachmentRecord, cache_path: &Path) {
    if let Some(p) = &rec.devinfo {
        if let Err(e) = devinfo::remove(p) {
            tracing::warn!(error = %e, "cannot remove device-info file");
        }
    }
    if let Err(e) = cache::remove(cache_path) {
        tracing::warn!(error = %e, "cannot remove attachment cache");
    }
}

/// Without a cache we do not know the original name or settings; if this
/// attachment owns the VF, bring the pod's interface back to the host
/// under the VF's temporary name so it is at least usable again, and free
/// the VF. An RDMA device moved in exclusive mode is not known here; the
/// kernel returns it to init_net when the pod netns goes away.
async fn best_effort_return(
    ctx: &Context<'_>,
    container_id: &str,
    ifname: &str,
    netns: Option<&Path>,
    pci: PciAddr,
) {
    let Ok(Some(claim)) = owner::lock_existing_with_hook(ctx.state, pci, ctx.faults) else {
        return;
    };
    if claim.record.container_id != container_id || claim.record.ifname != ifname {
        return;
    }
    if let (Some(path), Ok(host_ns)) = (netns, Netns::current()) {
        if let Ok(pod_ns) = Netns::open(path) {
            if let Ok(pod) = Handle::in_netns(&pod_ns) {
                if let Ok(l) = pod.link_by_name(ifname).await {
                    let _ = pod.set_down(l.index).await;
                    if let Err(e) = pod
                        .move_to_netns(l.index, &host_ns, Some(&temp_name(pci)))
                        .await
                    {
                        tracing::warn!(error = %e, "cannot return VF to the host");
                    }
                }
            }
        }
    }
    if let Err(e) = claim.release() {
        tracing::warn!(error = %e, "cannot remove VF ownership record");
    }
}
