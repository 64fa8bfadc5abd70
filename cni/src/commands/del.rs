//! DEL.

use crate::protocol::error::CniError;
use crate::protocol::ipam::Delegate;

use super::DelRequest;

/// DEL: best effort and idempotent. A missing or dead netns is not an error
/// (the env layer already dropped an unusable CNI_NETNS); delegated IPAM DEL
/// runs regardless, and its error is returned as the spec asks.
pub fn del(req: &DelRequest) -> Result<(), CniError> {
    let att = &req.env;
    tracing::info!(container = %att.container_id, ifname = %att.ifname, netns = ?att.netns.as_ref().map(|n| n.as_str()), network = %req.conf.name, "DEL");
    // Device detach plugs in here, before IPAM release (reverse of ADD).
    if let Some(d) = Delegate::for_ipam(&req.conf, att.cni_path.as_ref(), &req.vars)? {
        d.del()?;
    }
    Ok(())
}
