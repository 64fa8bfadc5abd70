//! The values the allocator hands out and takes in.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::config::IsolationMode;

/// IP address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(addr: &IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// Address width in bits.
    pub fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        })
    }
}

/// Identity of one attachment: the CNI (containerID, ifname) pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AttachmentKey {
    /// CNI_CONTAINERID.
    pub container_id: String,
    /// CNI_IFNAME.
    pub ifname: String,
}

impl AttachmentKey {
    /// A key from its two parts.
    pub fn new(container_id: impl Into<String>, ifname: impl Into<String>) -> Self {
        Self {
            container_id: container_id.into(),
            ifname: ifname.into(),
        }
    }
}

impl fmt::Display for AttachmentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.container_id, self.ifname)
    }
}

/// Which rails an attachment wants addresses on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RailSelection {
    /// One address set on every rail of the pool.
    #[default]
    All,
    /// Only the rail with this index.
    One(u16),
}

/// A daemon record written in the same transaction as the allocation (e.g. VF ownership).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordWrite {
    /// Caller-chosen key (any string up to 512 bytes; stored under a private prefix).
    pub key: String,
    /// The value.
    pub value: serde_json::Value,
    /// Fail with [`crate::IpamError::RecordExists`] if the key already exists.
    #[serde(default)]
    pub if_absent: bool,
}

/// A request to reserve addresses for one attachment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReserveRequest {
    /// Pool name.
    pub pool: String,
    /// Job name (the job network is per pool and job).
    pub job: String,
    /// Attachment identity; a repeated reserve with the same key returns the same answer.
    pub key: AttachmentKey,
    /// The pod's rank in the job, when known.
    #[serde(default)]
    pub rank: Option<u32>,
    /// Rails to allocate on.
    #[serde(default)]
    pub rails: RailSelection,
    /// Records owned by this attachment: written with the reservation, deleted with its release.
    #[serde(default)]
    pub records: Vec<RecordWrite>,
}

/// A job's isolation: mode and ID (VLAN, VNI or P_Key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Isolation {
    /// Isolation mode of the pool.
    pub mode: IsolationMode,
    /// The job's ID in the pool's range.
    pub id: u32,
}

/// Addresses of one attachment on one rail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RailAddresses {
    /// Rail index.
    pub rail: u16,
    /// Rail name from the pool config.
    pub rail_name: String,
    /// The addresses with the job subnet's prefix length (IPv4 first).
    pub ips: Vec<IpNet>,
    /// Gateways of the job subnets (empty with gateway policy `none`).
    pub gateways: Vec<IpAddr>,
    /// The job's isolation on this rail (None with mode `none`).
    #[serde(default)]
    pub isolation: Option<Isolation>,
}

/// Whether a reservation has been committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "state")]
pub enum AttachmentState {
    /// Reserved; released by [`crate::Ipam::expire`] after `expires_at_ms` unless committed.
    Reserved {
        /// Deadline in ms since the Unix epoch.
        expires_at_ms: u64,
    },
    /// Committed: held until released.
    Committed,
}

/// One attachment's allocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// Attachment identity.
    pub key: AttachmentKey,
    /// Pool name.
    pub pool: String,
    /// Job name.
    pub job: String,
    /// Rank, when given.
    pub rank: Option<u32>,
    /// The job's isolation on the attachment's first rail (None with mode
    /// `none`); each rail's own is in [`RailAddresses::isolation`].
    pub isolation: Option<Isolation>,
    /// Addresses per rail.
    pub rails: Vec<RailAddresses>,
    /// Reservation state.
    pub state: AttachmentState,
    /// Keys of the records owned by this attachment.
    pub records: Vec<String>,
    /// When it was reserved (ms since the Unix epoch).
    pub created_ms: u64,
}

/// A job's subnets on one rail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RailSubnet {
    /// Rail index.
    pub rail: u16,
    /// Rail name.
    pub rail_name: String,
    /// One subnet per configured family (IPv4 first).
    pub subnets: Vec<IpNet>,
    /// Gateways (empty with policy `none`).
    pub gateways: Vec<IpAddr>,
    /// The job's isolation on this rail (None with mode `none`).
    #[serde(default)]
    pub isolation: Option<Isolation>,
}

/// A job's network in one pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobNetwork {
    /// Pool name.
    pub pool: String,
    /// Job name.
    pub job: String,
    /// Isolation on the first rail (None with mode `none`); each rail's own
    /// is in [`RailSubnet::isolation`].
    pub isolation: Option<Isolation>,
    /// Subnets per rail.
    pub rails: Vec<RailSubnet>,
    /// Ranks reserved up front by a gang reservation (0 if none).
    pub world_size: u32,
    /// Set while the job has no attachment: the time it became empty.
    pub draining_since_ms: Option<u64>,
    /// When the job network was created.
    pub created_ms: u64,
}

/// A request to reserve a whole job up front.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GangRequest {
    /// Pool name.
    pub pool: String,
    /// Job name.
    pub job: String,
    /// Number of ranks: ranks `0..world_size` get their addresses reserved.
    pub world_size: u32,
}

/// Addresses of one rank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankAddresses {
    /// The rank.
    pub rank: u32,
    /// Its addresses per rail.
    pub rails: Vec<RailAddresses>,
}

/// Result of a gang reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gang {
    /// The job network.
    pub job: JobNetwork,
    /// Every rank's addresses.
    pub ranks: Vec<RankAddresses>,
}

/// What one [`crate::Ipam::expire`] sweep released.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepReport {
    /// Reservations released because they were not committed in time.
    pub expired_reservations: usize,
    /// Jobs whose subnets and isolation ID were released after the grace period.
    pub released_jobs: usize,
}

/// What a node's jobnetd says of itself in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// jobnetd version.
    pub version: String,
    /// When it last started (ms since the Unix epoch).
    pub started_ms: u64,
}

/// A registered node as the store sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Node name.
    pub node: String,
    /// Its registry entry (None if unreadable).
    pub info: Option<NodeInfo>,
    /// Whether its liveness key is present (its jobnetd runs).
    pub alive: bool,
    /// Attachments it holds.
    pub attachments: u64,
}

/// What forgetting a node released.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgetReport {
    /// Attachments released.
    pub released: Vec<AttachmentKey>,
    /// Whether the node's records and registry entry were removed.
    pub removed: bool,
}
