//! CHECK.

use crate::protocol::error::{CniError, ErrorCode};
use crate::protocol::ipam::Delegate;
use crate::sriov;

use super::daemon;
use super::device::{self, DeviceEnv};

use super::CheckRequest;

/// CHECK: prevResult must list jobnet's interface in this netns, the device
/// must still be as jobnet set it at ADD (only what jobnet set: later
/// plugins in a chain may change the rest), then the delegated IPAM plugin
/// checks its part.
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
    let expected: Vec<ipnet::IpNet> = prev
        .result
        .ips
        .iter()
        .filter(|ip| {
            ip.interface
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| prev.result.interfaces.get(i))
                .is_some_and(|i| i.name == att.ifname.as_str())
        })
        .map(|ip| ip.address)
        .collect();
    let env = DeviceEnv::new(&req.conf);
    let ctx = env.context(&sriov::NoFaults);
    if req.conf.ipam.is_none() {
        let key = jobnet_api::AttachmentKey::new(att.container_id.as_str(), att.ifname.as_str());
        let client = daemon::client(&req.conf.jobnet.daemon_socket);
        let recorded = device::block_on(client.check(&key))?.map_err(|e| daemon::api_error(&e))?;
        if recorded.state != jobnet_api::AttachmentState::Committed {
            return Err(CniError::new(
                ErrorCode::CheckFailed,
                format!("jobnetd has attachment {key} only reserved, not committed"),
            ));
        }
    }
    device::block_on(sriov::check(
        &ctx,
        att.container_id.as_str(),
        att.ifname.as_str(),
        std::path::Path::new(att.netns.as_str()),
        &expected,
    ))?
    .map_err(|e| device::check_error(&e))?;
    // The other rails of a `rails: all` attachment.
    let siblings = env.siblings(att.container_id.as_str(), att.ifname.as_str());
    for ifname in &siblings {
        device::block_on(sriov::check(
            &ctx,
            att.container_id.as_str(),
            ifname,
            std::path::Path::new(att.netns.as_str()),
            &[],
        ))?
        .map_err(|e| device::check_error(&e))?;
    }
    if let Some(d) = Delegate::for_ipam(&req.conf, att.cni_path.as_ref(), &req.vars)? {
        d.check()?;
    }
    Ok(())
}
