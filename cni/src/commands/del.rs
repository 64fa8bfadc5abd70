//! DEL.

use crate::protocol::error::{CniError, ErrorCode};
use crate::protocol::ipam::Delegate;
use crate::sriov;

use jobnet_api::AttachmentKey;

use super::daemon;
use super::device::{self, DeviceEnv};
use super::overlap::Overlapped;
use super::DelRequest;
use crate::timings;

/// DEL: the VF back to the host as it was, then the addresses released
/// (in jobnetd, or by the delegated IPAM plugin). The device work comes
/// first and does not fail DEL for a missing or dead netns, a missing or
/// corrupt cache, or a VF that came back under another name; only a VF (or
/// this attachment) that another operation keeps locked past the bound is
/// "try again" (11), and then nothing is released. A delegated IPAM plugin
/// that cannot be run (no CNI_PATH, plugin gone) is logged, not an error:
/// DEL must succeed when resources are gone; the plugin's own DEL error is
/// returned as the spec asks.
pub fn del(req: &DelRequest) -> Result<(), CniError> {
    del_with(req, &sriov::NoFaults)
}

/// [`del`] with the engine's test hook (race tests pause it at a lock).
pub fn del_with(req: &DelRequest, faults: &dyn sriov::FaultHook) -> Result<(), CniError> {
    let att = &req.env;
    tracing::info!(container = %att.container_id, ifname = %att.ifname, netns = ?att.netns.as_ref().map(|n| n.as_str()), network = %req.conf.name, "DEL");
    let env = DeviceEnv::new(&req.conf);
    let ctx = env.context(faults);
    let lock = lock_attachment(&env, req, faults);
    timings::lap("lock");
    let _lock = lock?;
    let netns = att.netns.as_ref().map(|n| std::path::Path::new(n.as_str()));
    // The other rails' interfaces of a `rails: all` attachment go first
    // (reverse of ADD).
    let siblings = env.rails_to_undo(
        att.container_id.as_str(),
        att.ifname.as_str(),
        req.conf.name.as_str(),
    );
    timings::lap("rails_scan");
    let delegate = if req.conf.ipam.is_some() {
        Delegate::for_ipam(&req.conf, att.cni_path.as_ref(), &req.vars).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "DEL: the IPAM plugin cannot be run; its allocation, if any, stays with it");
            None
        })
    } else {
        None
    };
    std::thread::scope(|s| {
        // The release (jobnetd's, or the IPAM plugin's DEL) takes the time
        // the first rail's VF spends in the kernel's move home: it starts
        // once every later rail is home, the VF is locked (a VF another
        // operation holds releases nothing) and the pod's interface is
        // down, so no live interface holds a released address.
        let release = Overlapped::new(s, || release(req, &env, delegate.as_ref()));
        let mut busy = None;
        for ifname in siblings.iter().rev() {
            // Where ADD puts a later rail's device-info file, for a cache
            // that cannot be read.
            let devinfo = sriov::devinfo::path_for(
                None,
                req.conf.name.as_str(),
                att.container_id.as_str(),
                ifname,
            );
            let outcome = detach_one(
                &ctx,
                att.container_id.as_str(),
                ifname,
                netns,
                None,
                Some(&devinfo),
                None,
            )?;
            busy = busy.or(busy_of(&outcome));
        }
        let devinfo = sriov::devinfo::path_for(
            req.conf.runtime.device_info_file.as_deref(),
            req.conf.name.as_str(),
            att.container_id.as_str(),
            att.ifname.as_str(),
        );
        let start = || {
            if busy.is_none() {
                release.start();
            }
        };
        let outcome = detach_one(
            &ctx,
            att.container_id.as_str(),
            att.ifname.as_str(),
            netns,
            req.conf.device(),
            Some(&devinfo),
            Some(&start),
        )?;
        tracing::info!(?outcome, "DEL device work done");
        if let Some(e) = busy.or(busy_of(&outcome)) {
            // Nothing is released (the work never started).
            drop(release.wait());
            return Err(e);
        }
        let released = release.finish();
        timings::lap("release_wait");
        released.unwrap_or_else(|| {
            tracing::error!("DEL: the release did not run to its end");
            Ok(())
        })
    })
}

/// Gives the attachment's addresses back: to jobnetd, or through the
/// delegated IPAM plugin's DEL (whose error DEL returns, as the spec asks).
fn release(req: &DelRequest, env: &DeviceEnv, delegate: Option<&Delegate>) -> Result<(), CniError> {
    if req.conf.ipam.is_none() {
        release_in_daemon(req, env);
        return Ok(());
    }
    delegate.map_or(Ok(()), Delegate::del)
}

/// Holds the attachment against another run on it for the whole DEL. Past
/// the bound it is "try again"; a lock file that cannot be used at all
/// does not stop DEL (the VF's own lock still serialises the device work).
fn lock_attachment(
    env: &DeviceEnv,
    req: &DelRequest,
    faults: &dyn sriov::FaultHook,
) -> Result<Option<sriov::lockfile::LockedFile>, CniError> {
    let att = &req.env;
    match sriov::lockfile::lock_attachment(
        &env.state,
        att.container_id.as_str(),
        att.ifname.as_str(),
        sriov::owner::DEL_LOCK_WAIT,
        faults,
    ) {
        Ok(l) => Ok(Some(l)),
        Err(sriov::lockfile::LockError::Timeout { waited, .. }) => Err(CniError::new(
            ErrorCode::TryAgainLater,
            format!(
                "attachment {}/{} is being added or deleted by another operation (waited {waited:?}); nothing was done",
                att.container_id, att.ifname
            ),
        )),
        Err(e) => {
            tracing::warn!(error = %e, "DEL goes on without the attachment lock");
            Ok(None)
        }
    }
}

/// The "try again" error for a detach that could not lock its VF.
fn busy_of(outcome: &sriov::DetachOutcome) -> Option<CniError> {
    match outcome {
        sriov::DetachOutcome::Busy { pci, waited } => Some(CniError::new(
            ErrorCode::TryAgainLater,
            format!(
                "VF {pci} stays locked by another operation (waited {waited:?}); it was not restored and nothing was released"
            ),
        )),
        _ => None,
    }
}

/// Undoes one pod interface: the VF back to the host (the job's VXLAN
/// bridge membership is jobnetd's, undone by the release).
fn detach_one(
    ctx: &sriov::Context<'_>,
    container_id: &str,
    ifname: &str,
    netns: Option<&std::path::Path>,
    device_hint: Option<jobnet_hw::PciAddr>,
    devinfo: Option<&std::path::Path>,
    on_move: Option<&dyn Fn()>,
) -> Result<sriov::DetachOutcome, CniError> {
    device::block_on(sriov::detach_with(
        ctx,
        container_id,
        ifname,
        netns,
        device_hint,
        devinfo,
        on_move,
    ))
}

/// Releases the attachment in jobnetd; when the daemon cannot be reached the
/// release is queued (DEL must not fail for that: the runtime would retry
/// forever and the pod would never go away).
fn release_in_daemon(req: &DelRequest, env: &DeviceEnv) {
    let att = &req.env;
    let key = AttachmentKey::new(att.container_id.as_str(), att.ifname.as_str());
    let client = daemon::client(&req.conf.jobnet.daemon_socket);
    let sent = device::block_on(async {
        let r = client.release(&key).await;
        if r.is_ok() {
            daemon::flush_releases(&client, env.state.root()).await;
        }
        r
    });
    match sent {
        Ok(Ok(_)) => daemon::drop_queued(env.state.root(), &key),
        Ok(Err(e)) if daemon::unreachable(&e) => {
            tracing::warn!(attachment = %key, error = %e, "jobnetd unreachable; release queued");
            if let Err(e) = daemon::queue_release(env.state.root(), &key) {
                tracing::error!(attachment = %key, error = %e, "cannot queue the release; jobnetd's reconciliation will release it");
            }
        }
        Ok(Err(e)) => tracing::warn!(attachment = %key, error = %e, "jobnetd refused the release"),
        Err(e) => tracing::error!(error = %e, "cannot run the release"),
    }
}
