//! GC.

use crate::protocol::error::CniError;
use crate::protocol::ipam::Delegate;

use super::daemon;
use super::device;
use super::GcRequest;

/// GC: `cni.dev/valid-attachments` is required (without it every attachment
/// would look stale); forwarded to the delegated IPAM plugin when it speaks
/// the config's version.
pub fn gc(req: &GcRequest) -> Result<(), CniError> {
    let valid = req
        .conf
        .valid_attachments
        .as_deref()
        .ok_or_else(|| CniError::invalid_config("GC requires \"cni.dev/valid-attachments\""))?;
    tracing::info!(network = %req.conf.name, valid = valid.len(), "GC");
    if req.conf.ipam.is_none() {
        let gc = jobnet_api::GcRequest {
            valid: valid
                .iter()
                .map(|k| jobnet_api::AttachmentKey::new(k.container_id.as_str(), k.ifname.as_str()))
                .collect(),
            network: Some(req.conf.name.as_str().to_owned()),
        };
        let client = daemon::client(&req.conf.jobnet.daemon_socket);
        let done = device::block_on(client.gc(&gc))?.map_err(|e| daemon::api_error(&e))?;
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
