//! Glue between the CNI verbs and the VF attach engine (`crate::sriov`):
//! builds the engine's inputs from the request and maps its errors to CNI
//! error codes.

use std::future::Future;
use std::sync::Arc;

use jobnet_hw::SysfsRoot;
use jobnet_netlink::{
    MacAddr, Route, RouteScope, VfLinkStateConfig, VfSettings, VfVlanConfig, VlanProto,
};

use crate::protocol::config::NetConf;
use crate::protocol::error::{CniError, ErrorCode};
use crate::protocol::result::{CniResult, IpConfig, Route as CniRoute};
use crate::protocol::values::{
    LinkState, RdmaIsolation as ConfRdmaIsolation, VlanProto as ConfVlanProto,
};
use crate::sriov::rdma::{RdmaIsolation, RdmaPolicy};
use crate::sriov::{
    self, AttachError, AttachSpec, CheckError, FaultHook, KernelRdma, RdmaOps, StateDir,
};

/// Everything the engine needs from the environment, fixed per run.
pub struct DeviceEnv {
    /// Sysfs root (config `sysfsRoot`, else `JOBNET_SYSFS_ROOT`, else `/sys`).
    pub sysfs: SysfsRoot,
    /// State directory (config `stateDir`, else `JOBNET_STATE_DIR`, else
    /// `/var/lib/cni/jobnet`).
    pub state: StateDir,
    /// RDMA netlink.
    pub rdma: Arc<dyn RdmaOps>,
}

impl DeviceEnv {
    /// From the config, falling back to the process environment. The config
    /// wins because a runtime may run DEL from another process (e.g. a
    /// cleanup helper) that does not carry the environment ADD had.
    pub fn new(conf: &NetConf) -> Self {
        Self {
            sysfs: conf
                .jobnet
                .sysfs_root
                .clone()
                .map_or_else(SysfsRoot::from_env, SysfsRoot::new),
            state: conf
                .jobnet
                .state_dir
                .clone()
                .map_or_else(StateDir::from_env, StateDir::new),
            rdma: Arc::new(KernelRdma),
        }
    }

    /// The engine context with `faults` as the test hook.
    pub fn context<'a>(&'a self, faults: &'a dyn FaultHook) -> sriov::Context<'a> {
        sriov::Context {
            sysfs: &self.sysfs,
            state: &self.state,
            faults,
            rdma: Arc::clone(&self.rdma),
        }
    }
}

impl DeviceEnv {
    /// Interface names of the other rails of attachment (`container_id`,
    /// `ifname`) (`rails: all`), from its cache; empty when there are none.
    pub fn siblings(&self, container_id: &str, ifname: &str) -> Vec<String> {
        sriov::cache::load::<sriov::record::AttachmentRecord>(&sriov::cache::path_for(
            &self.state,
            container_id,
            ifname,
        ))
        .map(|r| r.siblings)
        .unwrap_or_default()
    }

    /// The other rails' interfaces DEL of (`container_id`, `ifname`) in
    /// `network` must undo: those the first rail's cache names, and every
    /// other rail's cache of the same container and network. The first
    /// rail's cache names them only once ADD has attached every rail, so an
    /// ADD killed before that (or a first-rail cache that cannot be read)
    /// leaves rails only their own caches know of.
    pub fn rails_to_undo(&self, container_id: &str, ifname: &str, network: &str) -> Vec<String> {
        let mut rails = self.siblings(container_id, ifname);
        let mut found: Vec<(u32, String)> =
            sriov::cache::list::<sriov::record::AttachmentRecord>(&self.state)
                .into_iter()
                .filter_map(|(_, rec)| rec)
                .filter(|r| r.container_id == container_id && r.network.as_deref() == Some(network))
                .filter_map(|r| rail_of(&r.ifname, ifname).map(|rail| (rail, r.ifname)))
                .filter(|(_, name)| !rails.contains(name))
                .collect();
        found.sort();
        rails.extend(found.into_iter().map(|(_, name)| name));
        rails
    }
}

/// The rail `name` is the interface of when it is a later rail's name for
/// the first rail's `first` (see `jobnet_api::rail_ifname`).
fn rail_of(name: &str, first: &str) -> Option<u32> {
    let digits = name.len() - name.bytes().rev().take_while(u8::is_ascii_digit).count();
    let rail: u32 = name.get(digits..)?.parse().ok()?;
    (name != first && jobnet_api::rail_ifname(first, 1, rail) == name).then_some(rail)
}

/// Runs one async operation on a single-threaded runtime: a CNI run does
/// one attachment, so there is nothing to gain from worker threads.
pub fn block_on<F: Future>(f: F) -> Result<F::Output, CniError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CniError::new(ErrorCode::IoFailure, format!("cannot start runtime: {e}")))?;
    crate::timings::lap("runtime");
    Ok(rt.block_on(f))
}

/// The CNI error for an engine error.
pub fn attach_error(e: &AttachError) -> CniError {
    CniError::new(ErrorCode::from_number(e.cni_code()), e.to_string())
}

/// The CNI error for a failed CHECK.
pub fn check_error(e: &CheckError) -> CniError {
    let code = match e {
        CheckError::Unknown { .. } => ErrorCode::UnknownContainer,
        CheckError::Netns(_) | CheckError::Mismatch(_) => ErrorCode::CheckFailed,
    };
    CniError::new(code, e.to_string())
}

fn netlink_mac(m: crate::protocol::values::MacAddr) -> MacAddr {
    MacAddr(m.0)
}

/// PF-side VF settings the config asks for (only configured fields).
pub fn pf_settings(conf: &NetConf) -> VfSettings {
    let j = &conf.jobnet;
    VfSettings {
        vlan: j.vlan.map(|v| VfVlanConfig {
            id: v.id.get(),
            qos: v.qos.get(),
            proto: match v.proto {
                ConfVlanProto::Dot1Q => VlanProto::Dot1Q,
                ConfVlanProto::Dot1Ad => VlanProto::Dot1Ad,
            },
        }),
        spoofchk: j.spoofchk,
        trust: j.trust,
        min_tx_rate: j.min_tx_rate,
        max_tx_rate: j.max_tx_rate,
        link_state: j.link_state.map(|s| match s {
            LinkState::Auto => VfLinkStateConfig::Auto,
            LinkState::Enable => VfLinkStateConfig::Enable,
            LinkState::Disable => VfLinkStateConfig::Disable,
        }),
        // An InfiniBand VF is identified by its GUIDs; node and port get
        // the same one, as the IB SR-IOV device plugins hand out.
        ib_node_guid: ib_guid(conf),
        ib_port_guid: ib_guid(conf),
        ..VfSettings::default()
    }
}

/// The pod's InfiniBand GUID as the kernel takes it (big-endian u64).
fn ib_guid(conf: &NetConf) -> Option<u64> {
    conf.ib_guid().map(|g| u64::from_be_bytes(g.0))
}

/// The engine's RDMA policy from the config's `rdma` section.
pub fn rdma_policy(conf: &NetConf) -> RdmaPolicy {
    RdmaPolicy {
        isolation: match conf.jobnet.rdma.isolation {
            ConfRdmaIsolation::Auto => RdmaIsolation::Auto,
            ConfRdmaIsolation::Exclusive => RdmaIsolation::Exclusive,
            ConfRdmaIsolation::Shared => RdmaIsolation::Shared,
        },
        required: conf.jobnet.rdma.required,
    }
}

fn route_scope(scope: u32) -> Option<RouteScope> {
    u8::try_from(scope).ok().map(RouteScope::from)
}

/// An IPAM route as the engine's route (the engine fills in the interface),
/// installed as the reference plugins install it from the same result.
///
/// The spec lets a route without `gw` use the `gateway` of the `ips`: like
/// the reference plugins, the first gateway of the route's family among
/// `ips` is its next hop. Only without one is the destination on-link.
/// The scope is universe unless the route names one: that is what the
/// reference plugins send (`ip route add` would pick link scope for an
/// on-link route), and the pod must see the same table whichever plugin
/// attached it.
pub fn engine_route(r: &CniRoute, ips: &[IpConfig]) -> Route {
    let v4 = r.dst.addr().is_ipv4();
    let gateway = r.gw.or_else(|| {
        ips.iter()
            .filter_map(|ip| ip.gateway)
            .find(|g| g.is_ipv4() == v4)
    });
    Route {
        dst: Some(r.dst),
        gateway,
        mtu: r.mtu,
        advmss: r.advmss,
        priority: r.priority,
        table: r.table,
        scope: Some(
            r.scope
                .and_then(route_scope)
                .unwrap_or(RouteScope::Universe),
        ),
        ..Route::default()
    }
}

/// The attach spec for an ADD whose addresses and routes are `ips`/`routes`.
pub fn attach_spec(
    conf: &NetConf,
    container_id: &str,
    ifname: &str,
    netns: &str,
    pci: jobnet_hw::PciAddr,
    ips: &[IpConfig],
    routes: &[CniRoute],
) -> AttachSpec {
    AttachSpec {
        container_id: container_id.to_owned(),
        ifname: ifname.to_owned(),
        netns: netns.into(),
        pci,
        mac: conf.mac().map(netlink_mac),
        mtu: conf.jobnet.mtu.map(|m| m.get()),
        pf_settings: pf_settings(conf),
        addresses: ips.iter().map(|ip| ip.address).collect(),
        routes: routes.iter().map(|r| engine_route(r, ips)).collect(),
        devinfo_path: sriov::devinfo::path_for(
            conf.runtime.device_info_file.as_deref(),
            conf.name.as_str(),
            container_id,
            ifname,
        ),
        rdma: rdma_policy(conf),
    }
}

/// Fills the pod interface of `result` with what the kernel reports.
pub fn describe_interface(
    result: &mut CniResult,
    ifname: &str,
    rec: &sriov::record::AttachmentRecord,
) {
    if let Some(iface) = result
        .interfaces
        .iter_mut()
        .rev()
        .find(|i| i.name == ifname)
    {
        if let Some(pod) = &rec.pod {
            // IPoIB has no MAC: its 20-byte address is what the kernel shows.
            iface.mac = pod.mac.map(|m| m.to_string()).or_else(|| {
                (!pod.hw_addr.is_empty()).then(|| sriov::attach::format_hw_addr(&pod.hw_addr))
            });
            iface.mtu = Some(pod.mtu);
        }
        iface.pci_id = Some(rec.pci.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(address: &str, gateway: Option<&str>) -> IpConfig {
        IpConfig {
            interface: Some(0),
            address: address.parse().unwrap(),
            gateway: gateway.map(|g| g.parse().unwrap()),
        }
    }

    fn route(dst: &str, gw: Option<&str>) -> CniRoute {
        CniRoute::new(dst.parse().unwrap(), gw.map(|g| g.parse().unwrap()))
    }

    #[test]
    fn later_rails_are_recognised_by_their_names() {
        assert_eq!(rail_of("net1r1", "net1"), Some(1));
        assert_eq!(rail_of("net1r12", "net1"), Some(12));
        assert_eq!(rail_of("net1", "net1"), None);
        assert_eq!(rail_of("net2", "net1"), None);
        assert_eq!(rail_of("net1r", "net1"), None);
        assert_eq!(rail_of("eth0r1", "net1"), None);
        // Long first names are cut to leave room for the rail.
        let long = jobnet_api::rail_ifname("abcdefghijklmno", 1, 3);
        assert_eq!(rail_of(&long, "abcdefghijklmno"), Some(3));
    }

    #[test]
    fn a_route_without_gw_takes_the_first_gateway_of_its_family() {
        let ips = [
            ip("10.66.0.5/24", None),
            ip("fd66::5/64", Some("fd66::1")),
            ip("10.67.0.5/24", Some("10.67.0.1")),
            ip("10.68.0.5/24", Some("10.68.0.1")),
        ];
        let v4 = engine_route(&route("0.0.0.0/0", None), &ips);
        assert_eq!(v4.gateway, Some("10.67.0.1".parse().unwrap()));
        assert_eq!(v4.scope, Some(RouteScope::Universe));
        let v6 = engine_route(&route("::/0", None), &ips);
        assert_eq!(v6.gateway, Some("fd66::1".parse().unwrap()));
        // An explicit gw wins.
        let own = engine_route(&route("10.9.0.0/16", Some("10.66.0.7")), &ips);
        assert_eq!(own.gateway, Some("10.66.0.7".parse().unwrap()));
    }

    #[test]
    fn without_a_gateway_of_its_family_a_route_is_on_link_with_universe_scope() {
        let ips = [
            ip("10.66.0.5/24", Some("10.66.0.1")),
            ip("fd66::5/64", None),
        ];
        let r = engine_route(&route("fd99::/48", None), &ips);
        assert_eq!(r.gateway, None);
        assert_eq!(r.scope, Some(RouteScope::Universe));
        let r = engine_route(&route("10.99.0.0/16", None), &[]);
        assert_eq!(r.gateway, None);
        assert_eq!(r.scope, Some(RouteScope::Universe));
        // A scope the route names is kept.
        let mut linked = route("10.98.0.0/16", None);
        linked.scope = Some(253);
        assert_eq!(engine_route(&linked, &[]).scope, Some(RouteScope::Link));
    }
}
