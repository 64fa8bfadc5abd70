//! GC.

use crate::protocol::error::CniError;
use crate::protocol::ipam::Delegate;
use crate::sriov;

use super::daemon;
use super::device;
use super::GcRequest;

/// GC: `cni.dev/valid-attachments` is required (without it every attachment
/// would look stale). The plugin's own attachments of this network that are
/// not listed are undone first (VF home, cache, owner record), as DEL
/// would; then jobnetd is told (no `ipam` section: after the releases DEL
/// queued while it was away), or the delegated IPAM plugin when it speaks
/// the config's version.
pub fn gc(req: &GcRequest) -> Result<(), CniError> {
    let valid = req
        .conf
        .valid_attachments
        .as_deref()
        .ok_or_else(|| CniError::invalid_config("GC requires \"cni.dev/valid-attachments\""))?;
    tracing::info!(network = %req.conf.name, valid = valid.len(), "GC");
    let env = device::DeviceEnv::new(&req.conf);
    let ctx = env.context(&sriov::NoFaults);
    let keys: Vec<sriov::gc::Key> = valid
        .iter()
        .map(|k| {
            (
                k.container_id.as_str().to_owned(),
                k.ifname.as_str().to_owned(),
            )
        })
        .collect();
    let report = device::block_on(sriov::gc::collect(&ctx, req.conf.name.as_str(), &keys))?;
    tracing::info!(
        collected = report.collected.len(),
        skipped = report.skipped.len(),
        files = report.files,
        "GC of the plugin's own attachments"
    );
    if req.conf.ipam.is_none() {
        let gc = jobnet_api::GcRequest {
            valid: valid
                .iter()
                .map(|k| jobnet_api::AttachmentKey::new(k.container_id.as_str(), k.ifname.as_str()))
                .collect(),
            network: Some(req.conf.name.as_str().to_owned()),
        };
        let client = daemon::client(&req.conf.jobnet.daemon_socket);
        let done = device::block_on(async {
            // Releases a DEL queued while jobnetd was away: GC may be the
            // last run the plugin gets on this node for a while.
            daemon::flush_releases_except(&client, env.state.root(), &gc.valid).await;
            client.gc(&gc).await
        })?
        .map_err(|e| daemon::api_error(&e))?;
        tracing::info!(released = done.released.len(), "jobnetd GC");
    }
    if let Some(d) = Delegate::for_ipam(&req.conf, Some(&req.env), &req.vars)? {
        if d.supports(req.conf.cni_version)? {
            d.gc()?;
        } else {
            tracing::info!(plugin = %d.plugin, "IPAM plugin predates GC; not forwarded");
        }
    }
    Ok(())
}
