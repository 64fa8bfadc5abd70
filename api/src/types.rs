//! Request and response bodies of the jobnetd API, version 1.
//!
//! JSON field names are camelCase, with `containerID` and `deviceID` spelled
//! as the CNI spec spells them so the CNI side maps one-to-one.

use std::net::IpAddr;

use ipnet::IpNet;
use jobnet_hw::PciAddr;
use serde::{Deserialize, Serialize};

/// Identity of one attachment: the runtime's container plus the pod-side interface name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentKey {
    /// The runtime's container (sandbox) ID (`CNI_CONTAINERID`).
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// Interface name inside the pod (`CNI_IFNAME`).
    pub ifname: String,
}

impl AttachmentKey {
    /// Builds a key from its two parts.
    pub fn new(container_id: impl Into<String>, ifname: impl Into<String>) -> Self {
        Self {
            container_id: container_id.into(),
            ifname: ifname.into(),
        }
    }
}

impl std::fmt::Display for AttachmentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.container_id, self.ifname)
    }
}

/// Which rails an attachment spans.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rails {
    /// One VF on one rail (the rail of the chosen VF).
    #[default]
    One,
    /// One VF on every rail of the pool.
    All,
}

/// How a pool keeps one job's traffic away from another's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IsolationMode {
    /// VLAN set on the VF through the PF (legacy SR-IOV).
    VfVlan,
    /// Per-job VXLAN VNI behind the VF's switchdev representor.
    Vxlan,
    /// InfiniBand partition key.
    Pkey,
    /// No isolation.
    #[default]
    None,
}

/// A job's isolation: the pool's mode and the job's ID in it (VLAN, VNI or pkey).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Isolation {
    /// Isolation mode of the pool.
    pub mode: IsolationMode,
    /// The job's ID within the mode; absent for `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
}

/// `POST /v1/attachments/reserve`: reserve addresses and VF(s) for one attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReserveRequest {
    /// The runtime's container ID.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// Interface name inside the pod.
    pub ifname: String,
    /// Path of the pod's network namespace (`CNI_NETNS`).
    pub netns: String,
    /// Job the pod belongs to.
    pub job: String,
    /// The pod's rank in the job, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<u32>,
    /// GPUs of the pod (PCI addresses or indices), for the topology-aware VF choice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<String>,
    /// The VF chosen by the device plugin; the daemon picks one when absent.
    #[serde(rename = "deviceID", default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<PciAddr>,
    /// One rail or all rails.
    #[serde(default)]
    pub rails: Rails,
    /// Pool name; the daemon's default pool when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// CNI network name, so GC can be scoped to one network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

impl ReserveRequest {
    /// The attachment this request is about.
    pub fn key(&self) -> AttachmentKey {
        AttachmentKey::new(self.container_id.clone(), self.ifname.clone())
    }
}

/// Lifecycle of an attachment in the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachmentState {
    /// Reserved, waiting for the CNI's commit (released on timeout).
    Reserved,
    /// Committed: the pod interface exists.
    Committed,
}

/// One VF handed to an attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VfAssignment {
    /// Rail index the VF belongs to.
    pub rail: u32,
    /// PCI address of the VF.
    pub pci: PciAddr,
    /// PCI address of its PF.
    pub pf_pci: PciAddr,
    /// Netdev name of the PF, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pf: Option<String>,
    /// VF index on the PF (`virtfnN`).
    pub vf_index: u32,
    /// Host-side netdev of the VF when it was reserved, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netdev: Option<String>,
}

/// One address of an attachment on one rail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RailAddress {
    /// Rail index.
    pub rail: u32,
    /// The pod's address with the job subnet's prefix length (`10.1.0.5/24`).
    pub address: IpNet,
    /// Gateway of the job subnet, if the pool has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// The job's isolation ID on this rail, where IDs are per rail (`vxlan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation_id: Option<u32>,
}

/// Everything the CNI needs to build one pod interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// The runtime's container ID.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// Interface name inside the pod.
    pub ifname: String,
    /// Netns path given at reserve.
    pub netns: String,
    /// Node the attachment lives on.
    pub node: String,
    /// Job name.
    pub job: String,
    /// Rank in the job, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<u32>,
    /// Pool the attachment's addresses come from.
    pub pool: String,
    /// Reserved or committed.
    pub state: AttachmentState,
    /// VF(s), one per rail.
    pub vfs: Vec<VfAssignment>,
    /// Addresses, one per rail and address family.
    pub addresses: Vec<RailAddress>,
    /// The job's isolation (on the first rail; see [`Attachment::isolation_on`]).
    pub isolation: Isolation,
    /// MTU to set on the pod interface, if the pool fixes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// CNI network name given at reserve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// When it was reserved (ms since the Unix epoch).
    pub reserved_at_ms: u64,
}

impl Attachment {
    /// The job's isolation on `rail`: the rail's own ID where IDs are per
    /// rail, else the job's one ID.
    pub fn isolation_on(&self, rail: u32) -> Isolation {
        let id = self
            .addresses
            .iter()
            .find(|a| a.rail == rail && a.isolation_id.is_some())
            .and_then(|a| a.isolation_id)
            .or(self.isolation.id);
        Isolation {
            mode: self.isolation.mode,
            id,
        }
    }

    /// The attachment's key.
    pub fn key(&self) -> AttachmentKey {
        AttachmentKey::new(self.container_id.clone(), self.ifname.clone())
    }
}

/// Body of `commit`, `release` and `check`: which attachment.
pub type KeyRequest = AttachmentKey;

/// Answer to `release`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseResponse {
    /// False when there was nothing to release (release is idempotent).
    pub released: bool,
}

/// One pool in `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    /// Pool name.
    pub name: String,
    /// Isolation mode of the pool.
    pub isolation: IsolationMode,
    /// Number of rails.
    pub rails: u32,
    /// VFs usable by this pool in total.
    pub total_vfs: u32,
    /// VFs neither owned nor bound to a userspace driver.
    pub free_vfs: u32,
    /// Jobs with a subnet from this pool.
    pub jobs: u32,
    /// Job subnets still available, when the pool can tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_subnets: Option<u64>,
}

/// `GET /v1/status`: is the daemon healthy and does it have room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusResponse {
    /// Node name.
    pub node: String,
    /// Daemon version.
    pub version: String,
    /// API version served (`v1`).
    pub api_version: String,
    /// Seconds since the daemon started.
    pub uptime_secs: u64,
    /// Attachments recorded (reserved + committed).
    pub attachments: u32,
    /// Free VFs over all pools.
    pub free_vfs: u32,
    /// Per-pool figures.
    pub pools: Vec<PoolStatus>,
}

/// `POST /v1/gc`: release every attachment not in `valid` (CNI GC semantics).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GcRequest {
    /// Attachments still in use (`cni.dev/valid-attachments`).
    pub valid: Vec<AttachmentKey>,
    /// Only consider attachments reserved for this CNI network (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

/// Answer to `gc`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GcResponse {
    /// Attachments that were released.
    pub released: Vec<AttachmentKey>,
}

/// A job's subnet on one rail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RailSubnet {
    /// Rail index.
    pub rail: u32,
    /// The job subnet on this rail (one per address family).
    pub subnet: IpNet,
    /// Gateway, if the pool has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// The job's isolation ID on this rail, where IDs are per rail (`vxlan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation_id: Option<u32>,
}

/// One line of `GET /v1/jobs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSummary {
    /// Job name.
    pub job: String,
    /// Pool the job's subnets come from.
    pub pool: String,
    /// The job's isolation.
    pub isolation: Isolation,
    /// The job's subnets.
    pub subnets: Vec<RailSubnet>,
    /// Attachments of the job on this node.
    pub attachments: u32,
}

/// One member (attachment) of a job in `GET /v1/jobs/{job}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobMember {
    /// Rank, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<u32>,
    /// Node of the attachment.
    pub node: String,
    /// The attachment's key.
    #[serde(flatten)]
    pub key: AttachmentKey,
    /// Reserved or committed.
    pub state: AttachmentState,
    /// Addresses per rail.
    pub addresses: Vec<RailAddress>,
    /// VFs per rail.
    pub vfs: Vec<VfAssignment>,
}

/// `GET /v1/jobs/{job}`: a job with its members in rank order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobDetail {
    /// Summary line of the job.
    #[serde(flatten)]
    pub summary: JobSummary,
    /// Members, rank-ordered (unranked last).
    pub members: Vec<JobMember>,
}

/// Who holds a VF.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum VfState {
    /// Available for a new attachment.
    Free,
    /// Held by an attachment.
    Owned {
        /// The owner.
        owner: AttachmentKey,
    },
    /// Bound to a userspace (DPDK) driver (see `driver`), never handed out.
    Dpdk,
}

/// One line of `GET /v1/vfs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VfInfo {
    /// PCI address of the VF.
    pub pci: PciAddr,
    /// PCI address of the PF.
    pub pf_pci: PciAddr,
    /// PF netdev, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pf: Option<String>,
    /// VF index on the PF.
    pub vf_index: u32,
    /// Host-side netdev of the VF, if it has one in the host netns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netdev: Option<String>,
    /// Bound kernel driver, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Pool the VF serves.
    pub pool: String,
    /// Rail of the VF's PF.
    pub rail: u32,
    /// Free, owned or DPDK.
    #[serde(flatten)]
    pub state: VfState,
}

/// `POST /v1/gang`: reserve a whole job's network up front, all or nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GangReserveRequest {
    /// Job name.
    pub job: String,
    /// Number of ranks (0..ranks).
    pub ranks: u32,
    /// Pool name; the default pool when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
}

/// Addresses set aside for one rank by a gang reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RankAddresses {
    /// Rank.
    pub rank: u32,
    /// Addresses per rail.
    pub addresses: Vec<RailAddress>,
}

/// Answer to `gang`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GangReservation {
    /// Job name.
    pub job: String,
    /// Pool name.
    pub pool: String,
    /// The job's isolation.
    pub isolation: Isolation,
    /// The job's subnets.
    pub subnets: Vec<RailSubnet>,
    /// Every rank's addresses.
    pub ranks: Vec<RankAddresses>,
}

/// One `NAME=value` of a pod's NCCL environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    /// Variable name (`NCCL_IB_HCA`).
    pub name: String,
    /// Its value.
    pub value: String,
}

/// `GET /v1/attachments/{containerID}/{ifname}/hints`: the collective-ops
/// hints of the pod the attachment belongs to (all its committed jobnet
/// interfaces together, as NCCL sees one pod).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodHints {
    /// The pod's container (sandbox) ID.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// Attachments (pod interface names given at reserve) the hints cover.
    pub attachments: Vec<String>,
    /// Host directory holding `nccl.env` and `topo.xml`.
    pub dir: String,
    /// The NCCL variables, in file order.
    pub env: Vec<EnvVar>,
    /// `nccl.env` as written (variables plus comment lines).
    pub nccl_env: String,
    /// `topo.xml` as written (NCCL topology file).
    pub topo_xml: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_request_uses_cni_spelling_and_defaults() {
        let r: ReserveRequest = serde_json::from_str(
            r#"{"containerID":"c1","ifname":"net1","netns":"/var/run/netns/x","job":"j",
                "deviceID":"0000:3b:00.2"}"#,
        )
        .unwrap();
        assert_eq!(r.rails, Rails::One);
        assert_eq!(r.rank, None);
        assert_eq!(r.device_id.unwrap().to_string(), "0000:3b:00.2");
        let back = serde_json::to_value(&r).unwrap();
        assert_eq!(back["containerID"], "c1");
        assert_eq!(back["deviceID"], "0000:3b:00.2");
        assert!(back.get("rank").is_none());
    }

    #[test]
    fn reserve_request_rejects_unknown_fields_and_bad_pci() {
        assert!(serde_json::from_str::<ReserveRequest>(
            r#"{"containerID":"c","ifname":"i","netns":"n","job":"j","bogus":1}"#
        )
        .is_err());
        assert!(serde_json::from_str::<ReserveRequest>(
            r#"{"containerID":"c","ifname":"i","netns":"n","job":"j","deviceID":"../x"}"#
        )
        .is_err());
    }

    #[test]
    fn vf_state_is_flattened_with_a_tag() {
        let v = VfInfo {
            pci: "0000:3b:00.2".parse().unwrap(),
            pf_pci: "0000:3b:00.0".parse().unwrap(),
            pf: Some("ens1f0".into()),
            vf_index: 0,
            netdev: None,
            driver: Some("mlx5_core".into()),
            pool: "default".into(),
            rail: 0,
            state: VfState::Owned {
                owner: AttachmentKey::new("c", "net1"),
            },
        };
        let j = serde_json::to_value(&v).unwrap();
        assert_eq!(j["state"], "owned");
        assert_eq!(j["owner"]["containerID"], "c");
        let back: VfInfo = serde_json::from_value(j).unwrap();
        assert_eq!(back, v);
        // Every state round-trips next to the VF's own `driver` field.
        for state in [VfState::Free, VfState::Dpdk] {
            let v = VfInfo { state, ..v.clone() };
            let text = serde_json::to_string(&v).unwrap();
            assert_eq!(serde_json::from_str::<VfInfo>(&text).unwrap(), v, "{text}");
        }
    }

    #[test]
    fn isolation_mode_names() {
        assert_eq!(
            serde_json::to_string(&IsolationMode::VfVlan).unwrap(),
            "\"vf-vlan\""
        );
        let i: Isolation = serde_json::from_str(r#"{"mode":"vxlan","id":42}"#).unwrap();
        assert_eq!(i.id, Some(42));
    }
}

/// One node of the store, as `GET /v1/nodes` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    /// Node name.
    pub node: String,
    /// Whether its jobnetd holds its liveness lease; a stale node's records
    /// stay (its pods may still run) until it returns or is forgotten.
    pub alive: bool,
    /// jobnetd version it last registered with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// When its jobnetd last started (ms since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    /// Attachments it holds.
    pub attachments: u64,
    /// Whether this is the answering jobnetd's own node.
    pub this_node: bool,
}

/// `POST /v1/nodes/forget`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ForgetNodeRequest {
    /// The node to forget.
    pub node: String,
    /// Forget it even though its jobnetd is alive.
    #[serde(default)]
    pub force: bool,
}

/// What forgetting a node released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForgetNodeResponse {
    /// The node.
    pub node: String,
    /// Attachments released.
    pub released: Vec<AttachmentKey>,
}

/// Most items one page of a listing holds ([`PageRequest::limit`] is capped at it).
pub const MAX_PAGE: u32 = 5000;
/// Items per page when the request names no limit.
pub const DEFAULT_PAGE: u32 = 500;

/// Which page of a listing to answer (`?limit=N&continue=TOKEN`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// Items wanted (default [`DEFAULT_PAGE`], at most [`MAX_PAGE`]).
    pub limit: Option<u32>,
    /// The previous page's `continue` token.
    pub token: Option<String>,
}

impl PageRequest {
    /// The effective limit.
    pub fn limit(&self) -> usize {
        usize::try_from(self.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE)).unwrap_or(500)
    }

    /// Parses a URL query (`limit=10&continue=abc`); unknown keys are an error.
    pub fn from_query(query: Option<&str>) -> Result<Self, String> {
        let mut out = Self::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "limit" => {
                    out.limit = Some(
                        v.parse::<u32>()
                            .ok()
                            .filter(|n| *n >= 1)
                            .ok_or_else(|| format!("limit must be a positive number, not {v:?}"))?,
                    )
                }
                "continue" => {
                    out.token = Some(
                        crate::paths::decode_segment(v)
                            .ok_or_else(|| "continue token is not valid".to_string())?,
                    )
                }
                other => return Err(format!("unknown query parameter {other:?}")),
            }
        }
        Ok(out)
    }

    /// The query string for this request (empty when it has nothing).
    pub fn to_query(&self) -> String {
        let mut parts = Vec::new();
        if let Some(l) = self.limit {
            parts.push(format!("limit={l}"));
        }
        if let Some(t) = &self.token {
            parts.push(format!("continue={}", crate::paths::encode_segment(t)));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("?{}", parts.join("&"))
        }
    }
}

/// One page of a listing; `continue` is absent on the last page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items, in a stable order.
    pub items: Vec<T>,
    /// Token for the next page.
    #[serde(rename = "continue", default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}
