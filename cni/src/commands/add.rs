//! ADD.

use crate::protocol::config::NetConf;
use crate::protocol::ipam::Delegate;
use crate::protocol::result::{CniResult, Interface, IpConfig};

use super::AddRequest;

/// Releases an IPAM allocation unless disarmed: the undo of `Delegate::add`.
struct IpamRelease<'a> {
    delegate: Option<&'a Delegate<'a>>,
}

impl IpamRelease<'_> {
    fn disarm(mut self) {
        self.delegate = None;
    }
}

impl Drop for IpamRelease<'_> {
    fn drop(&mut self) {
        if let Some(d) = self.delegate {
            if let Err(e) = d.del() {
                tracing::warn!(plugin = %d.plugin, error = %e, "releasing IPAM allocation after a failed ADD");
            }
        }
    }
}

/// ADD: delegated IPAM (if configured), then the pod interface, then the result.
///
/// With a `prevResult` (jobnet later in a chain) its interfaces, ips, routes
/// and dns are kept and jobnet's interface and addresses are appended.
pub fn add(req: &AddRequest) -> Result<CniResult, crate::protocol::CniError> {
    let att = &req.env;
    tracing::info!(container = %att.container_id, ifname = %att.ifname, netns = %att.netns, network = %req.conf.name, job = %req.job(), "ADD");
    let delegate = Delegate::for_ipam(&req.conf, att.cni_path.as_ref(), &req.vars)?;
    let (allocation, release) = match &delegate {
        Some(d) => match d.add(req.conf.cni_version) {
            Ok(r) => (Some(r), IpamRelease { delegate: Some(d) }),
            Err(e) => {
                // Spec section 4: a failed delegated ADD is followed by its DEL.
                drop(IpamRelease { delegate: Some(d) });
                return Err(e);
            }
        },
        None => (None, IpamRelease { delegate: None }),
    };

    // The device attach plugs in here: on error, `release` undoes IPAM.
    let result = build_result(
        &req.conf,
        att.ifname.as_str(),
        att.netns.as_str(),
        allocation,
    );

    release.disarm();
    Ok(result)
}

/// The ADD result: prevResult (if any) plus the pod interface `ifname` in
/// `sandbox`, with the IPAM addresses (or, without IPAM, `runtimeConfig.ips`)
/// pointing at it. DNS comes from prevResult, else IPAM, else the config.
pub fn build_result(
    conf: &NetConf,
    ifname: &str,
    sandbox: &str,
    ipam: Option<CniResult>,
) -> CniResult {
    let mut result = conf
        .prev_result
        .as_ref()
        .map(|p| p.result.clone())
        .unwrap_or_default();
    let index = result.push_interface(Interface {
        name: ifname.to_owned(),
        mac: conf.mac().map(|m| m.to_string()),
        mtu: conf.jobnet.mtu.map(|m| m.get()),
        sandbox: Some(sandbox.to_owned()),
        pci_id: conf.device().map(|d| d.to_string()),
        ..Interface::default()
    });
    match ipam {
        Some(alloc) => {
            result.ips.extend(alloc.ips.into_iter().map(|ip| IpConfig {
                interface: Some(index),
                ..ip
            }));
            result.routes.extend(alloc.routes);
            if result.dns.is_empty() {
                result.dns = alloc.dns;
            }
        }
        None => result
            .ips
            .extend(conf.runtime.ips.iter().map(|&address| IpConfig {
                interface: Some(index),
                address,
                gateway: None,
            })),
    }
    if result.dns.is_empty() {
        result.dns = conf.dns.clone();
    }
    result
}
