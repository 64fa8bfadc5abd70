//! STATUS.

use crate::protocol::error::{CniError, ErrorCode};
use crate::protocol::ipam::Delegate;

use super::daemon;
use super::device;
use super::StatusRequest;

/// STATUS without an `ipam` section asks jobnetd: 50 when it cannot be
/// reached or has no free VF (no new ADD can succeed; pods already attached
/// keep their VFs, so this is not 51). With one: ready unless the delegated
/// IPAM plugin is missing (50) or reports an error (its code is kept).
/// Plugins older than 1.1.0 have no STATUS and are taken as ready when
/// they exist.
pub fn status(req: &StatusRequest) -> Result<(), CniError> {
    let Some(ipam) = &req.conf.ipam else {
        return daemon_status(req);
    };
    let d =
        Delegate::find(&ipam.plugin, req.env.as_ref(), &req.vars, &req.conf.raw).map_err(|e| {
            CniError::new(
                ErrorCode::PluginNotAvailable,
                format!("IPAM plugin {} is not available", ipam.plugin),
            )
            .with_details(e.to_string())
        })?;
    if d.supports(req.conf.cni_version)? {
        d.status()
    } else {
        tracing::info!(plugin = %ipam.plugin, version = %req.conf.cni_version, "IPAM plugin predates STATUS; not forwarded");
        Ok(())
    }
}

fn daemon_status(req: &StatusRequest) -> Result<(), CniError> {
    let client = daemon::client(&req.conf.jobnet.daemon_socket);
    let status = device::block_on(client.status())?.map_err(|e| {
        CniError::new(
            ErrorCode::PluginNotAvailable,
            format!(
                "jobnetd is not reachable at {}",
                req.conf.jobnet.daemon_socket.display()
            ),
        )
        .with_details(e.to_string())
    })?;
    if status.free_vfs == 0 {
        return Err(CniError::new(
            ErrorCode::PluginNotAvailable,
            format!("jobnetd on {} has no free VF", status.node),
        ));
    }
    Ok(())
}
