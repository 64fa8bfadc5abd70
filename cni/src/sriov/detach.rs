//! DEL: undo an attachment whatever state it is in. It fails only when the
//! VF stays locked by another operation past the bound (the runtime then
//! retries DEL); everything else is handled: a DEL that errors is retried
//! by the runtime forever and the pod sticks.

use std::path::Path;
use std::time::Duration;

use jobnet_hw::PciAddr;
use jobnet_netlink::{Handle, Netns};

use super::attach::{restore_with, temp_name, Context};
use super::cache::{self, CacheError};
use super::devinfo;
use super::owner::{self, OwnerError, VfLock, DEL_LOCK_WAIT};
use super::record::AttachmentRecord;
use crate::timings;

/// How often DEL starts over when the cache changed while it waited for
/// the VF's lock (a retried ADD of the same attachment chose another VF).
const MAX_RESTARTS: usize = 3;

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
    /// Another operation held the VF for the whole wait: nothing was done.
    Busy {
        /// The VF.
        pci: PciAddr,
        /// How long DEL waited.
        waited: Duration,
    },
}

fn load_usable(path: &Path) -> Option<AttachmentRecord> {
    match cache::load::<AttachmentRecord>(path) {
        Ok(r) => Some(r),
        Err(CacheError::Missing(_)) => None,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring unusable attachment cache");
            None
        }
    }
}

/// Locks the VF for DEL; `Err` carries the outcome to return when it
/// cannot be locked in time. An I/O problem with the record does not stop
/// DEL: it restores without the lock.
fn lock_vf(
    ctx: &Context<'_>,
    pci: PciAddr,
    container_id: &str,
    ifname: &str,
) -> Result<Option<VfLock>, DetachOutcome> {
    match owner::lock_for_detach(
        ctx.state,
        pci,
        container_id,
        ifname,
        DEL_LOCK_WAIT,
        ctx.faults,
    ) {
        Ok(l) => Ok(Some(l)),
        Err(OwnerError::Busy { pci, waited }) => {
            tracing::warn!(%pci, ?waited, "VF stays locked by another operation; DEL must be retried");
            Err(DetachOutcome::Busy { pci, waited })
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot lock VF ownership record; restoring anyway");
            Ok(None)
        }
    }
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
    detach_with(
        ctx,
        container_id,
        ifname,
        netns,
        device_hint,
        devinfo_hint,
        None,
    )
    .await
}

/// [`detach`], calling `on_move` just before the VF leaves the pod (see
/// [`super::attach::restore_with`]); it is not called when there is no
/// such move (no cache, the netns or the interface gone, VF locked).
pub async fn detach_with(
    ctx: &Context<'_>,
    container_id: &str,
    ifname: &str,
    netns: Option<&Path>,
    device_hint: Option<PciAddr>,
    devinfo_hint: Option<&Path>,
    on_move: Option<&dyn Fn()>,
) -> DetachOutcome {
    let cache_path = cache::path_for(ctx.state, container_id, ifname);
    let mut last = None;
    for _ in 0..MAX_RESTARTS {
        let Some(first) = load_usable(&cache_path) else {
            return no_cache(ctx, container_id, ifname, netns, device_hint, devinfo_hint).await;
        };
        last = Some(first.pci);
        timings::lap("cache_read");
        let lock = match lock_vf(ctx, first.pci, container_id, ifname) {
            Ok(l) => l,
            Err(outcome) => return outcome,
        };
        timings::lap("vf_lock");
        // Read again under the lock: what we waited for may have changed it.
        let rec = match load_usable(&cache_path) {
            Some(r) if r.pci == first.pci => r,
            Some(_) => continue,
            None => {
                drop(lock);
                return no_cache(ctx, container_id, ifname, netns, device_hint, devinfo_hint).await;
            }
        };
        if lock
            .as_ref()
            .is_some_and(|l| l.owned_by_other(container_id, ifname))
        {
            tracing::info!(
                pci = %rec.pci,
                owner = ?lock.as_ref().and_then(|l| l.record.as_ref()).map(|r| &r.container_id),
                "VF already belongs to another attachment; leaving the device alone"
            );
            remove_files(&rec, &cache_path);
            return DetachOutcome::VfOwnedByOther;
        }
        let restored = restore_with(ctx.sysfs, ctx.rdma.as_ref(), &rec, on_move).await;
        remove_files(&rec, &cache_path);
        // Dropping the lock removes our record (or the lock file DEL made).
        drop(lock);
        timings::lap("files");
        return if restored {
            DetachOutcome::Restored
        } else {
            DetachOutcome::RestoredPartly
        };
    }
    tracing::warn!("the attachment's cache kept changing under DEL; DEL must be retried");
    match last {
        Some(pci) => DetachOutcome::Busy {
            pci,
            waited: DEL_LOCK_WAIT,
        },
        None => DetachOutcome::NoCache,
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

/// Without a cache nothing was changed in the kernel by this attachment
/// (the cache is written before the first change), except by a run that
/// predates the cache; what may be left are records naming it: a run
/// killed between claiming the VF and saving the cache, or one killed while
/// it held the VF's lock. Those are removed. If the config names the VF
/// and this attachment owns it, the pod's interface is also brought back
/// to the host under the VF's temporary name so it is at least usable
/// again; an RDMA device moved in exclusive mode is not known here (the
/// kernel returns it to init_net when the pod netns goes away).
async fn no_cache(
    ctx: &Context<'_>,
    container_id: &str,
    ifname: &str,
    netns: Option<&Path>,
    device_hint: Option<PciAddr>,
    devinfo_hint: Option<&Path>,
) -> DetachOutcome {
    let named = owner::records(ctx.state, |r| r.is(container_id, ifname));
    for (pci, _) in named {
        let lock = match lock_vf(ctx, pci, container_id, ifname) {
            Ok(Some(l)) => l,
            Ok(None) => continue,
            Err(outcome) => return outcome,
        };
        if !lock
            .record
            .as_ref()
            .is_some_and(|r| r.is(container_id, ifname))
        {
            continue;
        }
        if device_hint == Some(pci) {
            best_effort_return(ifname, netns, pci).await;
        }
        drop(lock);
    }
    if let Some(p) = devinfo_hint {
        if let Err(e) = devinfo::remove(p) {
            tracing::warn!(error = %e, "cannot remove device-info file");
        }
    }
    let _ = cache::remove(&cache::path_for(ctx.state, container_id, ifname));
    DetachOutcome::NoCache
}

async fn best_effort_return(ifname: &str, netns: Option<&Path>, pci: PciAddr) {
    let (Some(path), Ok(host_ns)) = (netns, Netns::current()) else {
        return;
    };
    let Ok(pod_ns) = Netns::open(path) else {
        return;
    };
    let Ok(pod) = Handle::in_netns(&pod_ns) else {
        return;
    };
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
