//! Job isolation in the node's own network namespace, for pools whose mode
//! is `vxlan` (switchdev NICs). jobnetd owns these node-wide objects: it
//! makes them when a job's first attachment on the node commits, removes
//! them when the job's last one is released, and sweeps orphans.
//!
//! A VF in switchdev mode reaches nothing by itself: its traffic leaves
//! through its representor netdev in the node. Every job rail with pods on
//! the node gets one bridge `jnb<VNI>` holding one VXLAN device `jnx<VNI>`
//! (VNI = the job's isolation ID on that rail, UDP port 4789, learning on,
//! bound to the rail's PF netdev as underlay, flooding through the multicast
//! group [`Vni::multicast_group`]); the representors of the job's VFs on that
//! rail are ports of that bridge. Pods of one job meet on the bridge (same
//! node) or through the tunnel (other nodes); pods of different jobs share
//! no L2 segment.
//!
//! [`Isolator`] serialises every change under one in-process lock: jobnetd
//! is the only writer, so two attachments never race to create or delete a
//! shared bridge and tunnel.
//!
//! The kernel allows one VXLAN device per VNI and port in a netns, so one
//! job rail's tunnel on a node runs over one PF; a second attachment of the
//! same VNI over another PF is refused (see [`IsolationError::UnderlayMismatch`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use jobnet_api::{ApiError, ErrorCode};
use jobnet_hw::{sriov, PciAddr, SysfsRoot};
use jobnet_netlink::rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use jobnet_netlink::{Handle, Link, NetlinkError, VxlanConfig, VXLAN_PORT};

/// Name prefix of the per-job bridges.
pub const BRIDGE_PREFIX: &str = "jnb";
/// Name prefix of the per-job VXLAN devices.
pub const VXLAN_PREFIX: &str = "jnx";
/// Bytes a VXLAN tunnel over IPv4 adds to every frame (outer Ethernet 14,
/// IPv4 20, UDP 8, VXLAN 8): the tunnel's MTU is the underlay's minus this.
pub const VXLAN_OVERHEAD_V4: u32 = 50;
/// Marker prefix in the VXLAN device's alias; the rest is the underlay netdev.
const UNDERLAY_ALIAS_PREFIX: &str = "jobnet underlay=";
/// Alias prefix on a representor whose MTU a join raised: the MTU it had
/// before, kept in the kernel so a leave after a jobnetd restart still
/// puts it back.
const REP_MTU_ALIAS_PREFIX: &str = "jobnet mtu=";

/// Why isolation could not be set up (or looked at).
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    /// The isolation ID does not fit a VNI.
    #[error("isolation ID {0} is not a VXLAN VNI (1..=16777215)")]
    BadVni(u32),
    /// sysfs does not know the VF.
    #[error("VF {pci}: {source}")]
    Device {
        /// The VF.
        pci: PciAddr,
        /// What sysfs said.
        #[source]
        source: sriov::SriovError,
    },
    /// The VF has no switchdev representor (the NIC is in legacy mode).
    #[error("VF {0} has no switchdev representor: vxlan isolation needs the NIC's eswitch in switchdev mode")]
    NoRepresentor(PciAddr),
    /// The VF's PF has no netdev to carry the tunnel.
    #[error("the PF of VF {0} has no netdev to carry the VXLAN tunnel")]
    NoUnderlay(PciAddr),
    /// The job's tunnel on this node already runs over another PF.
    #[error("VXLAN {vxlan} of this job already runs over {current} on this node, not {wanted}: vxlan isolation carries a job over one PF per node")]
    UnderlayMismatch {
        /// The tunnel device.
        vxlan: String,
        /// The underlay it has (or "unknown" when it carries no jobnet marker).
        current: String,
        /// The underlay this attachment needs.
        wanted: String,
    },
    /// The representor is a port of a master jobnet did not make.
    #[error("representor {representor} is already a port of {master}, which jobnet did not make")]
    ForeignMaster {
        /// The representor.
        representor: String,
        /// Its current master.
        master: String,
    },
    /// A kernel operation failed.
    #[error(transparent)]
    Kernel(#[from] NetlinkError),
    /// Setting the VXLAN device's alias failed.
    #[error("set alias of {name}: {detail}")]
    Alias {
        /// The device.
        name: String,
        /// What rtnetlink said.
        detail: String,
    },
}

impl IsolationError {
    /// The API error a commit answers with for this failure.
    pub fn to_api(&self) -> ApiError {
        let code = match self {
            Self::BadVni(_) => ErrorCode::Internal,
            Self::Device { .. } | Self::NoRepresentor(_) | Self::NoUnderlay(_) => {
                ErrorCode::UnknownDevice
            }
            Self::UnderlayMismatch { .. } | Self::ForeignMaster { .. } => ErrorCode::DeviceBusy,
            Self::Kernel(_) | Self::Alias { .. } => ErrorCode::KernelFailure,
        };
        ApiError::new(code, format!("vxlan isolation: {self}"))
    }
}

/// A VXLAN network identifier: 24 bits, never 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Vni(u32);

impl Vni {
    /// Largest VNI.
    pub const MAX: u32 = (1 << 24) - 1;

    /// The VNI for isolation ID `id`.
    pub fn new(id: u32) -> Result<Self, IsolationError> {
        if (1..=Self::MAX).contains(&id) {
            Ok(Self(id))
        } else {
            Err(IsolationError::BadVni(id))
        }
    }

    /// The number.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The job's bridge on the node: `jnb<VNI>` (at most 11 bytes).
    pub fn bridge_name(self) -> String {
        format!("{BRIDGE_PREFIX}{}", self.0)
    }

    /// The job's VXLAN device on the node: `jnx<VNI>`.
    pub fn vxlan_name(self) -> String {
        format!("{VXLAN_PREFIX}{}", self.0)
    }

    /// The multicast group that floods the job's broadcast and unknown
    /// traffic: 239.192.0.0 plus the VNI's low 18 bits, i.e.
    /// `239.(192 + (vni >> 16 & 3)).(vni >> 8 & 255).(vni & 255)`, always
    /// inside the organisation-local scope 239.192.0.0/14. VNIs equal modulo
    /// 2^18 share a group; that costs only flooding, never isolation (the
    /// receiver drops frames of VNIs it has no device for).
    pub fn multicast_group(self) -> Ipv4Addr {
        let low = self.0 & 0x3_ffff;
        Ipv4Addr::from(u32::from(Ipv4Addr::new(239, 192, 0, 0)) | low)
    }

    /// The VNI a jobnet bridge or VXLAN name stands for.
    pub fn from_name(name: &str) -> Option<Self> {
        let digits = name
            .strip_prefix(BRIDGE_PREFIX)
            .or_else(|| name.strip_prefix(VXLAN_PREFIX))?;
        if digits.is_empty()
            || digits.starts_with('0')
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        digits.parse().ok().and_then(|n| Self::new(n).ok())
    }
}

impl std::fmt::Display for Vni {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// True for the name of a bridge [`join`] makes.
pub fn is_job_bridge(name: &str) -> bool {
    name.starts_with(BRIDGE_PREFIX) && Vni::from_name(name).is_some()
}

/// Where a representor ended up after [`join`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The job's bridge.
    pub bridge: String,
    /// The job's VXLAN device.
    pub vxlan: String,
    /// The representor now on the bridge.
    pub representor: String,
}

/// What [`leave`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaveOutcome {
    /// The representor does not exist or is on no jobnet bridge.
    NotJoined,
    /// The representor was taken off `bridge`; with `removed` the bridge had
    /// no representor left and it and its tunnel were deleted.
    Left {
        /// The bridge it was on.
        bridge: String,
        /// Whether the bridge and tunnel were deleted.
        removed: bool,
    },
}

/// Kernel changes made so far by one [`join`], undone in reverse on failure.
#[derive(Default)]
struct Undo {
    steps: Vec<UndoStep>,
}

enum UndoStep {
    /// Delete a link we created.
    Delete(u32),
    /// Take a port off its master again.
    Unmaster(u32),
    /// Put a link's MTU back.
    Mtu(u32, u32),
    /// Remove the MTU stash from a representor's alias.
    ClearAlias(Link),
}

impl Undo {
    async fn run(self, h: &Handle) {
        for step in self.steps.into_iter().rev() {
            let r = match step {
                UndoStep::Delete(i) => h.delete_link(i).await,
                UndoStep::Unmaster(i) => h.set_master(i, None).await,
                UndoStep::Mtu(i, mtu) => h.set_mtu(i, mtu).await,
                UndoStep::ClearAlias(l) => match set_alias(h, &l, "").await {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        tracing::warn!(error = %e, "clearing a representor's MTU stash after a failed join");
                        Ok(())
                    }
                },
            };
            if let Err(e) = r {
                if !e.is_not_found() {
                    tracing::warn!(error = %e, "undoing vxlan isolation after a failed join");
                }
            }
        }
    }
}

/// Looks `name` up; None when there is no such link.
async fn find(h: &Handle, name: &str) -> Result<Option<Link>, NetlinkError> {
    match h.link_by_name(name).await {
        Ok(l) => Ok(Some(l)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Puts `representor` on the bridge of job `vni`, creating the bridge and
/// its VXLAN device over `underlay` (the PF netdev) when this is the job's
/// first attachment on the node. Idempotent: a representor already on the
/// job's bridge stays there. The caller serialises calls (see [`Isolator`]).
/// On failure everything this call changed is undone.
pub async fn join(
    h: &Handle,
    representor: &str,
    underlay: &str,
    vni: Vni,
) -> Result<Membership, IsolationError> {
    let mut undo = Undo::default();
    match join_locked(h, representor, underlay, vni, &mut undo).await {
        Ok(m) => Ok(m),
        Err(e) => {
            undo.run(h).await;
            Err(e)
        }
    }
}

async fn join_locked(
    h: &Handle,
    representor: &str,
    underlay: &str,
    vni: Vni,
    undo: &mut Undo,
) -> Result<Membership, IsolationError> {
    let bridge_name = vni.bridge_name();
    let vxlan_name = vni.vxlan_name();
    let rep = h.link_by_name(representor).await?;
    if let Some(m) = rep.master {
        let master = h.link_by_index(m).await?;
        if master.name == bridge_name {
            h.set_up(rep.index).await?;
            return Ok(Membership {
                bridge: bridge_name,
                vxlan: vxlan_name,
                representor: representor.to_owned(),
            });
        }
        if !is_job_bridge(&master.name) {
            return Err(IsolationError::ForeignMaster {
                representor: representor.to_owned(),
                master: master.name,
            });
        }
        // Left over from an attachment whose DEL never ran: the VF is ours
        // now (the caller holds its claim), so its old membership goes.
        tracing::info!(representor, stale = %master.name, "representor still on another job's bridge; leaving it first");
        leave_locked(h, representor).await?;
    }
    let pf = h.link_by_name(underlay).await?;

    let bridge = match find(h, &bridge_name).await? {
        Some(b) => b,
        None => {
            match h.create_bridge(&bridge_name).await {
                Ok(()) => {
                    let b = h.link_by_name(&bridge_name).await?;
                    undo.steps.push(UndoStep::Delete(b.index));
                    b
                }
                // Made by someone not holding our lock: use it.
                Err(e) if e.is_exists() => h.link_by_name(&bridge_name).await?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    let marker = format!("{UNDERLAY_ALIAS_PREFIX}{underlay}");
    let vxlan = match find(h, &vxlan_name).await? {
        Some(v) => v,
        None => {
            let cfg = VxlanConfig {
                underlay: Some(pf.index),
                remote: Some(vni.multicast_group().into()),
                port: VXLAN_PORT,
                learning: true,
                mtu: Some(pf.mtu.saturating_sub(VXLAN_OVERHEAD_V4)),
                ..VxlanConfig::new(&vxlan_name, vni.get())
            };
            match h.create_vxlan(&cfg).await {
                Ok(()) => {
                    let v = h.link_by_name(&vxlan_name).await?;
                    undo.steps.push(UndoStep::Delete(v.index));
                    set_alias(h, &v, &marker).await?;
                    h.link_by_name(&vxlan_name).await?
                }
                Err(e) if e.is_exists() => match find(h, &vxlan_name).await? {
                    Some(v) => v,
                    // Not our name: another VXLAN device on the node already
                    // uses this VNI and port.
                    None => return Err(e.into()),
                },
                Err(e) => return Err(e.into()),
            }
        }
    };
    if vxlan.alias.as_deref() != Some(marker.as_str()) {
        let current = vxlan
            .alias
            .as_deref()
            .and_then(|a| a.strip_prefix(UNDERLAY_ALIAS_PREFIX))
            .unwrap_or("unknown")
            .to_owned();
        return Err(IsolationError::UnderlayMismatch {
            vxlan: vxlan_name,
            current,
            wanted: underlay.to_owned(),
        });
    }
    if vxlan.master != Some(bridge.index) {
        h.set_master(vxlan.index, Some(bridge.index)).await?;
        undo.steps.push(UndoStep::Unmaster(vxlan.index));
    }
    h.set_up(vxlan.index).await?;
    h.set_up(bridge.index).await?;
    if rep.mtu > vxlan.mtu {
        tracing::warn!(representor, rep_mtu = rep.mtu, tunnel_mtu = vxlan.mtu, "representor MTU exceeds the tunnel's: larger frames will be dropped; raise the PF MTU or lower the pool MTU");
    } else if rep.mtu < vxlan.mtu {
        // The representor is the VF's port on the job's L2: it must carry
        // every frame the tunnel does, or the pod's jumbo frames die there.
        match rep.alias.as_deref().filter(|a| !a.is_empty()) {
            None => {
                let stash = format!("{REP_MTU_ALIAS_PREFIX}{}", rep.mtu);
                set_alias(h, &rep, &stash).await?;
                undo.steps.push(UndoStep::ClearAlias(rep.clone()));
            }
            // Raised before and not put back yet: the stash holds the original.
            Some(a) if a.starts_with(REP_MTU_ALIAS_PREFIX) => {}
            Some(a) => {
                tracing::warn!(representor, alias = a, "representor has a foreign alias: its MTU will not be put back when the job leaves");
            }
        }
        h.set_mtu(rep.index, vxlan.mtu).await?;
        undo.steps.push(UndoStep::Mtu(rep.index, rep.mtu));
    }
    h.set_master(rep.index, Some(bridge.index)).await?;
    undo.steps.push(UndoStep::Unmaster(rep.index));
    h.set_up(rep.index).await?;
    tracing::info!(representor, bridge = %bridge_name, vxlan = %vxlan_name, underlay, group = %vni.multicast_group(), "representor joined the job's bridge");
    Ok(Membership {
        bridge: bridge_name,
        vxlan: vxlan_name,
        representor: representor.to_owned(),
    })
}

/// Marks a VXLAN device with the underlay it was made for (the alias is
/// what the next [`join`] compares).
async fn set_alias(h: &Handle, link: &Link, alias: &str) -> Result<(), IsolationError> {
    let mut msg = LinkMessage::default();
    msg.header.index = link.index;
    msg.attributes
        .push(LinkAttribute::IfAlias(alias.to_owned()));
    h.rtnetlink()
        .link()
        .set(msg)
        .execute()
        .await
        .map_err(|e| IsolationError::Alias {
            name: link.name.clone(),
            detail: e.to_string(),
        })
}

/// Takes `representor` off its jobnet bridge; when no representor is left
/// on that bridge, deletes its VXLAN device and the bridge. Idempotent: a
/// missing representor or one on no jobnet bridge is [`LeaveOutcome::NotJoined`].
/// The representor's admin state is left as it is. The caller serialises
/// calls (see [`Isolator`]).
pub async fn leave(h: &Handle, representor: &str) -> Result<LeaveOutcome, IsolationError> {
    leave_locked(h, representor).await
}

async fn leave_locked(h: &Handle, representor: &str) -> Result<LeaveOutcome, IsolationError> {
    let Some(rep) = find(h, representor).await? else {
        return Ok(LeaveOutcome::NotJoined);
    };
    let Some(m) = rep.master else {
        return Ok(LeaveOutcome::NotJoined);
    };
    let bridge = match h.link_by_index(m).await {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Ok(LeaveOutcome::NotJoined),
        Err(e) => return Err(e.into()),
    };
    if !is_job_bridge(&bridge.name) {
        return Ok(LeaveOutcome::NotJoined);
    }
    h.set_master(rep.index, None).await?;
    restore_mtu(h, &rep).await?;
    let ports: Vec<Link> = h
        .links()
        .await?
        .into_iter()
        .filter(|l| l.master == Some(bridge.index))
        .collect();
    let tunnel = |l: &Link| l.kind.as_deref() == Some("vxlan") && l.name.starts_with(VXLAN_PREFIX);
    if ports.iter().any(|l| !tunnel(l)) {
        tracing::info!(representor, bridge = %bridge.name, "representor left the job's bridge; others remain");
        return Ok(LeaveOutcome::Left {
            bridge: bridge.name,
            removed: false,
        });
    }
    for t in ports.iter().filter(|l| tunnel(l)) {
        ignore_missing(h.delete_link(t.index).await)?;
    }
    ignore_missing(h.delete_link(bridge.index).await)?;
    tracing::info!(representor, bridge = %bridge.name, "last representor left; bridge and tunnel deleted");
    Ok(LeaveOutcome::Left {
        bridge: bridge.name,
        removed: true,
    })
}

/// The MTU a join stashed in `link`'s alias, if it did.
fn stashed_mtu(link: &Link) -> Option<u32> {
    link.alias
        .as_deref()?
        .strip_prefix(REP_MTU_ALIAS_PREFIX)?
        .parse()
        .ok()
}

/// Puts a representor's MTU back to what it had before a join raised it,
/// and removes the stash. A representor no join raised is left alone.
async fn restore_mtu(h: &Handle, rep: &Link) -> Result<(), IsolationError> {
    let Some(mtu) = stashed_mtu(rep) else {
        return Ok(());
    };
    ignore_missing(h.set_mtu(rep.index, mtu).await)?;
    match set_alias(h, rep, "").await {
        Err(IsolationError::Alias { .. }) if find(h, &rep.name).await?.is_none() => Ok(()),
        r => r,
    }?;
    tracing::info!(representor = %rep.name, mtu, "representor MTU put back");
    Ok(())
}

fn ignore_missing(r: Result<(), NetlinkError>) -> Result<(), NetlinkError> {
    match r {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    }
}

/// The netdevs isolation works with for one VF, found through sysfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfPorts {
    /// The VF's switchdev representor.
    pub representor: String,
    /// The PF netdev (the tunnel's underlay).
    pub underlay: String,
}

/// The representor and PF netdev of the VF at `pci`.
pub fn vf_ports(sysfs: &SysfsRoot, pci: PciAddr) -> Result<VfPorts, IsolationError> {
    let vf =
        sriov::resolve_vf(sysfs, pci).map_err(|source| IsolationError::Device { pci, source })?;
    let representor = vf.representor.ok_or(IsolationError::NoRepresentor(pci))?;
    let underlay = vf
        .pf_netdevs
        .into_iter()
        .next()
        .ok_or(IsolationError::NoUnderlay(pci))?;
    Ok(VfPorts {
        representor,
        underlay,
    })
}

/// The node's isolation objects, changed only through this (one per jobnetd).
#[derive(Debug)]
pub struct Isolator {
    sysfs: SysfsRoot,
    /// Which VFs use which job rail's bridge; the lock serialises every change.
    users: tokio::sync::Mutex<BTreeMap<Vni, BTreeSet<PciAddr>>>,
}

impl Isolator {
    /// An isolator for the VFs described under `sysfs`, in jobnetd's netns.
    pub fn new(sysfs: SysfsRoot) -> Self {
        Self {
            sysfs,
            users: tokio::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// Records VFs that committed attachments hold on job rails (from the
    /// store, at start), so [`Isolator::sweep`] keeps their bridges.
    pub async fn adopt(&self, vfs: impl IntoIterator<Item = (Vni, PciAddr)>) {
        let mut users = self.users.lock().await;
        for (vni, pci) in vfs {
            users.entry(vni).or_default().insert(pci);
        }
    }

    /// Puts the VF's representor on job rail `vni`'s bridge (made on first use).
    pub async fn join_vf(&self, pci: PciAddr, vni: Vni) -> Result<Membership, IsolationError> {
        let ports = vf_ports(&self.sysfs, pci)?;
        let h = Handle::new()?;
        let mut users = self.users.lock().await;
        let m = join(&h, &ports.representor, &ports.underlay, vni).await?;
        for set in users.values_mut() {
            set.remove(&pci);
        }
        users.entry(vni).or_default().insert(pci);
        Ok(m)
    }

    /// Takes the VF's representor off its jobnet bridge, if it is on `vni`'s
    /// (deleting bridge and tunnel with the last port). A representor on
    /// another job's bridge belongs to that attachment now and stays.
    pub async fn leave_vf(&self, pci: PciAddr, vni: Vni) -> Result<LeaveOutcome, IsolationError> {
        let mut users = self.users.lock().await;
        if let Some(set) = users.get_mut(&vni) {
            set.remove(&pci);
            if set.is_empty() {
                users.remove(&vni);
            }
        }
        let ports = match vf_ports(&self.sysfs, pci) {
            Ok(p) => p,
            // No representor (any more): nothing can be on a bridge.
            Err(_) => return Ok(LeaveOutcome::NotJoined),
        };
        let h = Handle::new()?;
        let Some(rep) = find(&h, &ports.representor).await? else {
            return Ok(LeaveOutcome::NotJoined);
        };
        let Some(m) = rep.master else {
            // Off every bridge (a sweep, or a leave cut short after the
            // unmaster): the MTU may still be the tunnel's.
            restore_mtu(&h, &rep).await?;
            return Ok(LeaveOutcome::NotJoined);
        };
        match h.link_by_index(m).await {
            Ok(b) if b.name == vni.bridge_name() => leave_locked(&h, &ports.representor).await,
            Ok(_) => Ok(LeaveOutcome::NotJoined),
            Err(e) if e.is_not_found() => Ok(LeaveOutcome::NotJoined),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes job bridges (with their tunnels) that no VF of a committed
    /// attachment uses: left behind by a release that never reached this
    /// node's kernel (a crash, an older jobnet). Takes the ports of those
    /// bridges off first. Returns the links removed.
    pub async fn sweep(&self) -> Result<Vec<String>, IsolationError> {
        let h = Handle::new()?;
        let users = self.users.lock().await;
        let keep: BTreeSet<Vni> = users.keys().copied().collect();
        let links = h.links().await?;
        let mut removed = Vec::new();
        for bridge in links.iter().filter(|l| is_job_bridge(&l.name)) {
            let Some(vni) = Vni::from_name(&bridge.name) else {
                continue;
            };
            if keep.contains(&vni) {
                continue;
            }
            for port in links.iter().filter(|l| l.master == Some(bridge.index)) {
                ignore_missing(h.set_master(port.index, None).await)?;
                restore_mtu(&h, port).await?;
            }
            let tunnel = vni.vxlan_name();
            if let Some(t) = links.iter().find(|l| l.name == tunnel) {
                ignore_missing(h.delete_link(t.index).await)?;
            }
            ignore_missing(h.delete_link(bridge.index).await)?;
            tracing::info!(bridge = %bridge.name, "orphaned job bridge and tunnel removed");
            removed.push(bridge.name.clone());
        }
        // A representor off every bridge whose MTU a join raised: its
        // leave was cut short between the unmaster and the restore.
        for rep in links
            .iter()
            .filter(|l| l.master.is_none() && stashed_mtu(l).is_some())
        {
            restore_mtu(&h, rep).await?;
        }
        // A tunnel whose bridge is gone is an orphan too.
        for t in links.iter().filter(|l| l.name.starts_with(VXLAN_PREFIX)) {
            if let Some(vni) = Vni::from_name(&t.name) {
                if !keep.contains(&vni) && t.master.is_none() {
                    ignore_missing(h.delete_link(t.index).await)?;
                    removed.push(t.name.clone());
                }
            }
        }
        Ok(removed)
    }
}

/// The VNI of a rail's isolation: Some for `vxlan` (whose answer must carry
/// a valid ID), None for every other mode.
pub fn vni_of(iso: &jobnet_api::Isolation) -> Result<Option<Vni>, IsolationError> {
    match iso.mode {
        jobnet_api::IsolationMode::Vxlan => iso
            .id
            .ok_or(IsolationError::BadVni(0))
            .and_then(Vni::new)
            .map(Some),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vni_bounds_names_and_group_formula() {
        assert!(Vni::new(0).is_err());
        assert!(Vni::new(Vni::MAX + 1).is_err());
        let v = Vni::new(1000).unwrap();
        assert_eq!(v.bridge_name(), "jnb1000");
        assert_eq!(v.vxlan_name(), "jnx1000");
        // 1000 = 0x0003e8.
        assert_eq!(v.multicast_group(), Ipv4Addr::new(239, 192, 3, 232));
        let max = Vni::new(Vni::MAX).unwrap();
        assert_eq!(max.multicast_group(), Ipv4Addr::new(239, 195, 255, 255));
        assert!(max.bridge_name().len() <= jobnet_netlink::MAX_IFNAME_LEN);
        // 2^18 + 1000 wraps onto 1000's group.
        let wrapped = Vni::new((1 << 18) + 1000).unwrap();
        assert_eq!(wrapped.multicast_group(), v.multicast_group());
        for id in [1, 77, 1 << 17, 1 << 20, Vni::MAX] {
            let g = Vni::new(id).unwrap().multicast_group().octets();
            assert_eq!(g[0], 239);
            assert!((192..=195).contains(&g[1]), "{id}: {g:?}");
        }
    }

    #[test]
    fn names_parse_back_and_strangers_do_not() {
        assert_eq!(Vni::from_name("jnb1000"), Vni::new(1000).ok());
        assert_eq!(Vni::from_name("jnx42"), Vni::new(42).ok());
        for bad in [
            "jnb",
            "jnb0",
            "jnb01",
            "jnbx1",
            "br0",
            "jnb16777216",
            "jnv1",
        ] {
            assert_eq!(Vni::from_name(bad), None, "{bad}");
        }
        assert!(is_job_bridge("jnb7"));
        assert!(!is_job_bridge("jnx7"));
    }

    #[test]
    fn errors_map_to_api_codes() {
        let pci: PciAddr = "0000:03:00.2".parse().unwrap();
        let e = IsolationError::NoRepresentor(pci).to_api();
        assert_eq!(e.code, ErrorCode::UnknownDevice);
        assert_eq!(e.code.cni_code(), 100);
        assert!(e.message.contains("switchdev"), "{}", e.message);
        assert_eq!(IsolationError::BadVni(0).to_api().code, ErrorCode::Internal);
        let k = IsolationError::Alias {
            name: "jnx1".into(),
            detail: "EPERM".into(),
        };
        assert_eq!(k.to_api().code.cni_code(), 102);
    }

    /// A private "node" netns with an underlay PF veth per entry of `pfs`
    /// and a representor veth (`r<i>`, peer `v<i>`) per entry of `reps`;
    /// removed on drop.
    struct NodeNs {
        guard: Option<jobnet_netlink::NetnsGuard>,
        rt: tokio::runtime::Runtime,
        h: Handle,
    }

    impl NodeNs {
        fn new(pfs: usize, reps: usize) -> Self {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let name = format!(
                "jniso-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            );
            let guard = jobnet_netlink::NetnsGuard::create(&name).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let ns = guard.open().unwrap();
            let h = rt.block_on(async {
                let h = Handle::in_netns(&ns).unwrap();
                for i in 0..pfs {
                    let pf = format!("pf{i}");
                    h.create_veth(&pf, &format!("up{i}"), None).await.unwrap();
                    let l = h.link_by_name(&pf).await.unwrap();
                    h.set_mtu(l.index, 9000).await.unwrap();
                    h.set_up(l.index).await.unwrap();
                }
                for i in 0..reps {
                    let rep = format!("r{i}");
                    h.create_veth(&rep, &format!("v{i}"), None).await.unwrap();
                }
                h
            });
            Self {
                guard: Some(guard),
                rt,
                h,
            }
        }

        fn join(&self, rep: &str, pf: &str, vni: u32) -> Result<Membership, IsolationError> {
            let vni = Vni::new(vni).unwrap();
            self.rt.block_on(join(&self.h, rep, pf, vni))
        }

        fn leave(&self, rep: &str) -> LeaveOutcome {
            self.rt.block_on(leave(&self.h, rep)).unwrap()
        }

        fn link(&self, name: &str) -> Option<Link> {
            self.rt.block_on(find(&self.h, name)).unwrap()
        }

        fn master_of(&self, name: &str) -> Option<String> {
            let m = self.link(name).unwrap().master?;
            Some(self.rt.block_on(self.h.link_by_index(m)).unwrap().name)
        }

        /// Names of the jobnet bridges and tunnels in the netns.
        fn job_links(&self) -> Vec<String> {
            let mut v: Vec<String> = self
                .rt
                .block_on(self.h.links())
                .unwrap()
                .into_iter()
                .map(|l| l.name)
                .filter(|n| Vni::from_name(n).is_some())
                .collect();
            v.sort();
            v
        }

        /// `ip -d -j link show dev <name>` in the netns.
        fn details(&self, name: &str) -> serde_json::Value {
            let path = self.guard.as_ref().unwrap().path().to_owned();
            let out = std::process::Command::new("nsenter")
                .arg(format!("--net={}", path.display()))
                .args(["ip", "-d", "-j", "link", "show", "dev", name])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            v[0].clone()
        }
    }

    impl Drop for NodeNs {
        fn drop(&mut self) {
            if let Some(g) = self.guard.take() {
                let _ = g.delete();
            }
        }
    }

    #[test]
    fn join_makes_the_bridge_and_tunnel_once_and_the_last_leave_removes_them() {
        let n = NodeNs::new(1, 2);
        let m = n.join("r0", "pf0", 1000).unwrap();
        assert_eq!(m.bridge, "jnb1000");
        assert_eq!(m.vxlan, "jnx1000");
        assert_eq!(n.job_links(), ["jnb1000", "jnx1000"]);
        assert_eq!(n.master_of("r0").as_deref(), Some("jnb1000"));
        assert_eq!(n.master_of("jnx1000").as_deref(), Some("jnb1000"));
        for dev in ["r0", "jnx1000", "jnb1000"] {
            assert!(n.link(dev).unwrap().admin_up, "{dev}");
        }
        let vx = n.details("jnx1000");
        let data = &vx["linkinfo"]["info_data"];
        assert_eq!(data["id"], 1000);
        assert_eq!(data["group"], "239.192.3.232");
        assert_eq!(data["port"], 4789);
        assert_eq!(data["link"], "pf0");
        assert_eq!(data["learning"], true);
        assert_eq!(vx["mtu"], 9000 - VXLAN_OVERHEAD_V4);
        // The representor carries what the tunnel carries.
        assert_eq!(n.link("r0").unwrap().mtu, 9000 - VXLAN_OVERHEAD_V4);

        // Idempotent for the same representor; a second one shares the bridge.
        assert_eq!(n.join("r0", "pf0", 1000).unwrap(), m);
        n.join("r1", "pf0", 1000).unwrap();
        assert_eq!(n.job_links(), ["jnb1000", "jnx1000"]);

        assert_eq!(
            n.leave("r0"),
            LeaveOutcome::Left {
                bridge: "jnb1000".into(),
                removed: false
            }
        );
        assert_eq!(n.master_of("r0"), None);
        assert_eq!(n.job_links(), ["jnb1000", "jnx1000"]);
        // The representor's MTU is what it was before the join, stash gone.
        let r0 = n.link("r0").unwrap();
        assert_eq!((r0.mtu, r0.alias), (1500, None));
        assert_eq!(
            n.leave("r1"),
            LeaveOutcome::Left {
                bridge: "jnb1000".into(),
                removed: true
            }
        );
        assert!(n.job_links().is_empty());
        assert_eq!(n.leave("r1"), LeaveOutcome::NotJoined);
        assert_eq!(n.leave("nosuchrep"), LeaveOutcome::NotJoined);
    }

    #[test]
    fn jobs_get_separate_bridges_and_a_stale_membership_moves() {
        let n = NodeNs::new(1, 2);
        n.join("r0", "pf0", 1000).unwrap();
        n.join("r1", "pf0", 1001).unwrap();
        assert_eq!(n.job_links(), ["jnb1000", "jnb1001", "jnx1000", "jnx1001"]);
        // r0 is handed to job 1001 without a DEL in between.
        n.join("r0", "pf0", 1001).unwrap();
        assert_eq!(n.master_of("r0").as_deref(), Some("jnb1001"));
        assert_eq!(n.job_links(), ["jnb1001", "jnx1001"]);
        n.leave("r0");
        n.leave("r1");
        assert!(n.job_links().is_empty());
        // Moved between jobs, still put back to the MTU before the first join.
        for rep in ["r0", "r1"] {
            let l = n.link(rep).unwrap();
            assert_eq!((l.mtu, l.alias), (1500, None), "{rep}");
        }
    }

    #[test]
    fn a_second_underlay_for_one_job_is_refused_and_changes_nothing() {
        let n = NodeNs::new(2, 2);
        n.join("r0", "pf0", 1000).unwrap();
        let e = n.join("r1", "pf1", 1000).unwrap_err();
        assert!(
            matches!(&e, IsolationError::UnderlayMismatch { current, wanted, .. } if current == "pf0" && wanted == "pf1"),
            "{e}"
        );
        assert_eq!(e.to_api().code.cni_code(), 101);
        assert_eq!(n.master_of("r1"), None);
        assert_eq!(n.job_links(), ["jnb1000", "jnx1000"]);
        n.leave("r0");
        assert!(n.job_links().is_empty());
    }

    #[test]
    fn a_failed_join_undoes_what_it_made() {
        let n = NodeNs::new(1, 1);
        // Someone else's VXLAN already uses VNI 2000 on port 4789.
        let foreign = VxlanConfig::new("other", 2000);
        n.rt.block_on(n.h.create_vxlan(&foreign)).unwrap();
        let e = n.join("r0", "pf0", 2000).unwrap_err();
        assert!(matches!(e, IsolationError::Kernel(_)), "{e}");
        assert!(n.job_links().is_empty(), "{:?}", n.job_links());
        assert_eq!(n.master_of("r0"), None);
        // A representor that does not exist: nothing made either.
        assert!(n.join("r9", "pf0", 2001).is_err());
        // A missing underlay fails after the representor lookup; nothing made.
        assert!(n.join("r0", "pf7", 2002).is_err());
        assert!(n.job_links().is_empty(), "{:?}", n.job_links());
    }

    #[test]
    fn a_representor_on_a_foreign_bridge_is_left_alone() {
        let n = NodeNs::new(1, 1);
        n.rt.block_on(async {
            n.h.create_bridge("br0").await.unwrap();
            let br = n.h.link_by_name("br0").await.unwrap();
            let r0 = n.h.link_by_name("r0").await.unwrap();
            n.h.set_master(r0.index, Some(br.index)).await.unwrap();
        });
        let e = n.join("r0", "pf0", 1000).unwrap_err();
        assert!(matches!(e, IsolationError::ForeignMaster { .. }), "{e}");
        assert_eq!(n.leave("r0"), LeaveOutcome::NotJoined);
        assert_eq!(n.master_of("r0").as_deref(), Some("br0"));
        assert!(n.job_links().is_empty());
    }
}
