//! What the attachment cache holds for one attachment.

use std::path::PathBuf;

use ipnet::IpNet;
use jobnet_hw::PciAddr;
use jobnet_netlink::{MacAddr, VfSettings};

/// Version of the cache format; bump on incompatible changes.
pub const RECORD_FORMAT: u32 = 1;

/// The VF netdev as it was in the host before ADD touched it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostLinkState {
    /// Original name.
    pub name: String,
    /// Index in the host netns at ADD time.
    pub index: u32,
    /// Original MAC.
    pub mac: Option<MacAddr>,
    /// Original MTU.
    pub mtu: u32,
    /// Whether it was administratively up.
    pub admin_up: bool,
    /// Alternative names it carried (removed while in the pod).
    pub altnames: Vec<String>,
}

/// The interface as ADD left it in the pod.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PodLinkState {
    /// Index in the pod netns.
    pub index: u32,
    /// MAC in the pod.
    pub mac: Option<MacAddr>,
    /// MTU in the pod.
    pub mtu: u32,
    /// Addresses ADD configured.
    pub addresses: Vec<IpNet>,
    /// The full hardware address (20 bytes for IPoIB, which has no MAC).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hw_addr: Vec<u8>,
    /// Routes ADD added through this interface.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteRecord>,
    /// The MAC ADD set because the config asked for one (CHECK verifies
    /// only what jobnet set: a later plugin in a chain may change the rest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configured_mac: Option<MacAddr>,
    /// The MTU ADD set because the config or jobnetd gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configured_mtu: Option<u32>,
}

/// A route ADD added, as CHECK looks for it again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RouteRecord {
    /// Destination.
    pub dst: IpNet,
    /// Next hop, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<std::net::IpAddr>,
    /// Routing table, when not the main one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
}

/// PF-side VF settings: what ADD applied and what they were before.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PfSideState {
    /// The PF netdev through which settings are applied.
    pub pf_netdev: String,
    /// Settings ADD applied (only configured fields).
    pub applied: VfSettings,
    /// The same fields as they were before ADD (restored on DEL).
    pub original: VfSettings,
}

/// Everything needed to undo one attachment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AttachmentRecord {
    /// Cache format version.
    pub format: u32,
    /// Container ID.
    pub container_id: String,
    /// Interface name in the pod.
    pub ifname: String,
    /// Pod netns path given at ADD.
    pub netns: PathBuf,
    /// The VF.
    pub pci: PciAddr,
    /// Its PF.
    pub pf_pci: PciAddr,
    /// VF index on the PF.
    pub vf_index: u32,
    /// Bound to a userspace (DPDK) driver: no netdev work was done.
    pub dpdk: bool,
    /// Host-side state of the netdev before ADD (absent for DPDK VFs).
    pub host: Option<HostLinkState>,
    /// PF-side settings, when any were configured.
    pub pf_side: Option<PfSideState>,
    /// Pod-side state, once ADD got that far.
    pub pod: Option<PodLinkState>,
    /// RDMA device of the VF, if it has one.
    pub rdma_device: Option<String>,
    /// What ADD does with the RDMA device (absent: the VF has none).
    #[serde(default)]
    pub rdma: Option<RdmaRecord>,
    /// Device-info file written for this attachment.
    pub devinfo: Option<PathBuf>,
    /// The result printed by ADD (CHECK and idempotent ADD replay it).
    pub result: Option<serde_json::Value>,
    /// Interface names of the same attachment's other rails (`rails: all`);
    /// kept on the first rail's record so DEL and CHECK find them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub siblings: Vec<String>,
    /// Who keeps the VF's ownership while the attachment lives.
    #[serde(default)]
    pub ownership: Ownership,
    /// The CNI network (config `name`) the attachment belongs to: GC only
    /// collects its own network's attachments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The MAC ADD gives the pod interface (config `mac`), recorded before
    /// the move: a DEL after an ADD killed midway knows the VF in the pod by
    /// it as well as by its original MAC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_mac: Option<MacAddr>,
}

/// Who records that a VF belongs to an attachment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ownership {
    /// The plugin's own record (`vfs/<pci>.owner`), kept until DEL: configs
    /// with an `ipam` section, where no daemon knows the VF.
    #[default]
    Local,
    /// jobnetd's reservation: the plugin keeps no record of its own and
    /// only locks the VF while it works on it.
    Daemon,
}

/// How the RDMA device is isolated for this attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RdmaIsolationApplied {
    /// The device is moved into the pod netns (and back on DEL).
    Exclusive,
    /// The device stays where it is, visible to every netns.
    Shared,
}

/// The VF's RDMA device and what ADD does with it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RdmaRecord {
    /// Device name (`mlx5_3`).
    pub device: String,
    /// Isolation decided at ADD, before any change: restore moves the
    /// device out of the pod when this says exclusive.
    pub isolation: RdmaIsolationApplied,
    /// Kernel index in the host at ADD (exclusive only).
    pub index: Option<u32>,
    /// Character devices the pod needs (`/dev/infiniband/uverbsN`, `rdma_cm`).
    pub char_devices: Vec<PathBuf>,
}
