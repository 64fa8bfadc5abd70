//! CHECK.

use crate::protocol::error::{CniError, ErrorCode};
use crate::protocol::ipam::Delegate;

use super::CheckRequest;

/// CHECK: prevResult must list jobnet's interface in this netns, then the
/// delegated IPAM plugin checks its part.
pub fn check(req: &CheckRequest) -> Result<(), CniError> {
    let att = &req.env;
    tracing::info!(container = %att.container_id, ifname = %att.ifname, netns = %att.netns, "CHECK");
    let prev = req
        .conf
        .prev_result
        .as_ref()
        .ok_or_else(|| CniError::invalid_config("CHECK requires \"prevResult\""))?;
    if prev
        .result
        .find_interface(att.ifname.as_str(), Some(att.netns.as_str()))
        .is_none()
    {
        return Err(CniError::new(
            ErrorCode::CheckFailed,
            format!(
                "prevResult lists no interface {} in sandbox {}",
                att.ifname, att.netns
            ),
        ));
    }
    // Device checks plug in here.
    if let Some(d) = Delegate::for_ipam(&req.conf, att.cni_path.as_ref(), &req.vars)? {
        d.check()?;
    }
    Ok(())
}
