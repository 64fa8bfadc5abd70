//! Creating bridges and VXLAN devices: the per-job bridges and tunnels of
//! `vxlan` isolation.

use std::net::IpAddr;

use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage,
};

use crate::{
    error::{ErrorKind, NetlinkError},
    handle::Handle,
};

/// IANA-assigned VXLAN UDP port.
pub const VXLAN_PORT: u16 = 4789;

/// Parameters of a VXLAN device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VxlanConfig {
    /// Device name.
    pub name: String,
    /// VXLAN network identifier (24 bits).
    pub vni: u32,
    /// Underlay device index the tunnel is bound to.
    pub underlay: Option<u32>,
    /// Local tunnel endpoint address.
    pub local: Option<IpAddr>,
    /// Remote endpoint or multicast group; `None` relies on FDB entries.
    pub remote: Option<IpAddr>,
    /// Destination UDP port.
    pub port: u16,
    /// Learn remote MACs from received traffic.
    pub learning: bool,
    /// MTU of the device.
    pub mtu: Option<u32>,
}

impl VxlanConfig {
    /// A config with the standard port, learning on, everything else unset.
    pub fn new(name: &str, vni: u32) -> Self {
        VxlanConfig {
            name: name.to_string(),
            vni,
            underlay: None,
            local: None,
            remote: None,
            port: VXLAN_PORT,
            learning: true,
            mtu: None,
        }
    }
}

/// Builds the RTM_NEWLINK for a bridge.
pub fn build_bridge(name: &str) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    msg.attributes
        .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
            InfoKind::Bridge,
        )]));
    msg
}

/// Builds the RTM_NEWLINK for a VXLAN device.
pub fn build_vxlan(cfg: &VxlanConfig) -> LinkMessage {
    let mut data = vec![InfoVxlan::Id(cfg.vni), InfoVxlan::Port(cfg.port)];
    if let Some(dev) = cfg.underlay {
        data.push(InfoVxlan::Link(dev));
    }
    match cfg.local {
        Some(IpAddr::V4(a)) => data.push(InfoVxlan::Local(a)),
        Some(IpAddr::V6(a)) => data.push(InfoVxlan::Local6(a)),
        None => {}
    }
    match cfg.remote {
        Some(IpAddr::V4(a)) => data.push(InfoVxlan::Group(a)),
        Some(IpAddr::V6(a)) => data.push(InfoVxlan::Group6(a)),
        None => {}
    }
    data.push(InfoVxlan::Learning(cfg.learning));
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(cfg.name.clone()));
    if let Some(mtu) = cfg.mtu {
        msg.attributes.push(LinkAttribute::Mtu(mtu));
    }
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Vxlan),
        LinkInfo::Data(InfoData::Vxlan(data)),
    ]));
    msg
}

impl Handle {
    /// Creates a bridge.
    pub async fn create_bridge(&self, name: &str) -> Result<(), NetlinkError> {
        self.create_link("create bridge", name, build_bridge(name))
            .await
    }

    /// Creates a VXLAN device.
    pub async fn create_vxlan(&self, cfg: &VxlanConfig) -> Result<(), NetlinkError> {
        if cfg.vni >= 1 << 24 {
            return Err(NetlinkError::new(
                "create vxlan",
                &cfg.name,
                ErrorKind::InvalidInput(format!("VNI {} does not fit 24 bits", cfg.vni)),
            ));
        }
        self.create_link("create vxlan", &cfg.name, build_vxlan(cfg))
            .await
    }
}
