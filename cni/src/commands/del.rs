//! DEL.

use crate::protocol::error::CniError;
use crate::protocol::ipam::Delegate;
use crate::sriov;

use super::device::{self, DeviceEnv};
use super::DelRequest;

/// DEL: the VF back to the host as it was, then IPAM release. Device work
/// never fails DEL (a missing or dead netns, a missing or corrupt cache, a
/// VF that came back under another name are all handled); the delegated
/// IPAM plugin's DEL error is returned as the spec asks.
pub fn del(req: &DelRequest) -> Result<(), CniError> {
    let att = &req.env;
    tracing::info!(container = %att.container_id, ifname = %att.ifname, netns = ?att.netns.as_ref().map(|n| n.as_str()), network = %req.conf.name, "DEL");
    let env = DeviceEnv::from_env();
    let ctx = env.context(&sriov::NoFaults);
    let netns = att.netns.as_ref().map(|n| std::path::Path::new(n.as_str()));
    let outcome = device::block_on(sriov::detach(
        &ctx,
        att.container_id.as_str(),
        att.ifname.as_str(),
        netns,
        req.conf.device(),
    ))?;
    tracing::info!(?outcome, "DEL device work done");
    if let Some(d) = Delegate::for_ipam(&req.conf, att.cni_path.as_ref(), &req.vars)? {
        d.del()?;
    }
    Ok(())
}
