//! ADD.

use crate::protocol::config::NetConf;
use crate::protocol::error::CniError;
use crate::protocol::ipam::Delegate;
use crate::protocol::result::{CniResult, Interface, IpConfig};
use crate::protocol::version::CniVersion;
use crate::sriov::{self, FaultHook, NoFaults};

use super::device::{self, DeviceEnv};
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

/// ADD: delegated IPAM (if configured), then the VF into the pod, then the
/// result.
///
/// With a `prevResult` (jobnet later in a chain) its interfaces, ips, routes
/// and dns are kept and jobnet's interface and addresses are appended.
pub fn add(req: &AddRequest) -> Result<CniResult, CniError> {
    add_with(req, &NoFaults)
}

/// [`add`] with a hook that can fail any attach step (rollback tests).
pub fn add_with(req: &AddRequest, faults: &dyn FaultHook) -> Result<CniResult, CniError> {
    let att = &req.env;
    tracing::info!(container = %att.container_id, ifname = %att.ifname, netns = %att.netns, network = %req.conf.name, job = %req.job(), "ADD");
    let pci = req.conf.device().ok_or_else(|| {
        CniError::invalid_config(
            "no device to attach: set \"deviceID\" (or runtimeConfig.deviceID, as Multus does)",
        )
    })?;
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
    let ipam_routes = allocation
        .as_ref()
        .map(|a| a.routes.clone())
        .unwrap_or_default();
    let mut result = build_result(
        &req.conf,
        att.ifname.as_str(),
        att.netns.as_str(),
        allocation,
    );
    let own_index = result
        .find_interface(att.ifname.as_str(), Some(att.netns.as_str()))
        .and_then(|i| u32::try_from(i).ok());
    let own_ips: Vec<IpConfig> = result
        .ips
        .iter()
        .filter(|ip| ip.interface == own_index)
        .cloned()
        .collect();

    let env = DeviceEnv::from_env();
    let ctx = env.context(faults);
    let spec = device::attach_spec(
        &req.conf,
        att.container_id.as_str(),
        att.ifname.as_str(),
        att.netns.as_str(),
        pci,
        &own_ips,
        &ipam_routes,
    );
    let result = device::block_on(async {
        let attachment = sriov::attach(&ctx, &spec)
            .await
            .map_err(|e| device::attach_error(&e))?;
        if let Some(stored) = attachment.record.result.clone() {
            // A retried ADD that had finished: answer exactly as before.
            let (_, prev) = CniResult::parse(&stored, CniVersion::LATEST, "cached result")?;
            return Ok(prev);
        }
        device::describe_interface(&mut result, att.ifname.as_str(), &attachment.record);
        attachment
            .commit(&env.sysfs, &env.state, result.to_json(CniVersion::LATEST))
            .await
            .map_err(|e| device::attach_error(&e))?;
        Ok::<_, CniError>(result)
    })??;

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
