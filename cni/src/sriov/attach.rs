//! Moving a VF into a pod and restoring it: the kernel work of ADD and DEL.
//!
//! ADD saves the VF's original state to the attachment cache before the
//! first kernel change. Undoing is one idempotent function, [`restore`], that
//! compares what the kernel shows with the cache and puts back whatever
//! differs; it serves both the rollback of a failed ADD (from any step) and
//! DEL (whatever state the pod, the netns or the VF are in).

use std::path::PathBuf;
use std::sync::Arc;

use ipnet::IpNet;
use jobnet_hw::sriov::{self, VfInfo};
use jobnet_hw::{PciAddr, SysfsRoot};
use jobnet_netlink::{AddressOptions, Handle, Link, MacAddr, Netns, Route, VfSettings};

use super::cache;
use super::detach::{detach, DetachOutcome};
use super::devinfo::{self, DeviceInfo, JobnetDeviceInfo, PciDeviceInfo};
use super::error::AttachError;
use super::owner::{self, OwnerError, OwnerRecord, Previous, VfClaim, ADD_LOCK_WAIT};
use super::rdma::{self, RdmaOps, RdmaPolicy};
use super::record::{
    AttachmentRecord, HostLinkState, Ownership, PfSideState, PodLinkState, RouteRecord,
    RECORD_FORMAT,
};
use super::state_dir::StateDir;
use super::steps::{FaultHook, Step};
use crate::timings;

/// What the caller wants attached.
#[derive(Debug, Clone)]
pub struct AttachSpec {
    /// Container ID (validated).
    pub container_id: String,
    /// Interface name in the pod (validated).
    pub ifname: String,
    /// The pod's netns path.
    pub netns: PathBuf,
    /// The VF.
    pub pci: PciAddr,
    /// MAC for the pod interface.
    pub mac: Option<MacAddr>,
    /// MTU for the pod interface.
    pub mtu: Option<u32>,
    /// PF-side settings to apply (only configured fields set).
    pub pf_settings: VfSettings,
    /// Addresses for the pod interface.
    pub addresses: Vec<IpNet>,
    /// Routes for the pod interface (`oif` is filled in here).
    pub routes: Vec<Route>,
    /// Where to write the device-info file.
    pub devinfo_path: PathBuf,
    /// What to do with the VF's RDMA device.
    pub rdma: RdmaPolicy,
}

/// A finished attach whose cache still has to be committed with the result.
#[derive(Debug)]
pub struct Attachment {
    /// What was done (and how to undo it).
    pub record: AttachmentRecord,
    cache_path: PathBuf,
    claim: VfClaim,
    rdma: Arc<dyn RdmaOps>,
}

/// Paths and hooks shared by every operation of one plugin run.
pub struct Context<'a> {
    /// Sysfs to read devices from.
    pub sysfs: &'a SysfsRoot,
    /// Where caches and ownership records live.
    pub state: &'a StateDir,
    /// Test hook called before each ADD step.
    pub faults: &'a dyn FaultHook,
    /// RDMA netlink (the kernel's in production, a recording one in tests).
    pub rdma: Arc<dyn RdmaOps>,
}

/// Length of an IPoIB hardware address (`INFINIBAND_ALEN`): 4 bytes of
/// flags and queue pair number, then the 16-byte port GID.
pub const IPOIB_HW_ADDR_LEN: usize = 20;

/// Formats a hardware address as the kernel and iproute2 print it:
/// lowercase hex bytes joined by colons (6 for Ethernet, 20 for IPoIB).
pub fn format_hw_addr(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Name the VF carries between the two netns moves: derived from its PCI
/// address so that it is unique on the node and never a pod's name.
pub fn temp_name(pci: PciAddr) -> String {
    format!(
        "jnv{:04x}{:02x}{:02x}{:x}",
        pci.domain, pci.bus, pci.device, pci.function
    )
}

/// The part of an attach that depends only on the VF and the pod's netns,
/// done ahead while something else waits (jobnetd's reserve, the IPAM
/// plugin): the VF as sysfs shows it, and netlink connections in the host
/// and in the pod. Nothing is locked or changed; what failed here is done
/// again, and reported, by the attach.
pub struct Prepared {
    pci: PciAddr,
    netns: PathBuf,
    vf: Option<VfInfo>,
    links: Option<Links>,
}

/// Netlink connections of one attach: the host's and the pod's.
struct Links {
    host: Handle,
    pod_ns: Netns,
    pod: Handle,
}

impl Links {
    fn open(netns: &std::path::Path) -> Result<Self, AttachError> {
        let host = Handle::new().map_err(AttachError::kernel(Step::MoveToPod))?;
        let pod_ns = Netns::open(netns)?;
        let pod = Handle::in_netns(&pod_ns).map_err(AttachError::kernel(Step::MoveToPod))?;
        Ok(Self { host, pod_ns, pod })
    }
}

impl Prepared {
    /// Reads `pci` from sysfs and connects in the host and in `netns`.
    /// Runs inside the runtime the attach will use (the connections are
    /// its tasks).
    pub fn new(sysfs: &SysfsRoot, pci: PciAddr, netns: &std::path::Path) -> Self {
        Self {
            pci,
            netns: netns.to_owned(),
            vf: sriov::resolve_vf(sysfs, pci).ok(),
            links: Links::open(netns).ok(),
        }
    }

    /// True when this was prepared for `spec`'s VF and netns.
    pub fn is_for(&self, spec: &AttachSpec) -> bool {
        self.pci == spec.pci && self.netns == spec.netns
    }
}

/// The pod's addresses and routes when they come while the VF moves (the
/// delegated IPAM plugin runs during the move): called once the netdev is
/// in the pod, before its first address, in place of the spec's. `None`
/// stops the attach with [`AttachError::AddressesWithheld`] and rolls it
/// back.
pub type LateAddresses<'a> = &'a (dyn Fn() -> Option<(Vec<IpNet>, Vec<Route>)> + Sync);

/// What an attach runs around the VF's move: `on_move` just before it,
/// `late` once the netdev is in the pod.
struct MoveHooks<'a> {
    on_move: Option<&'a dyn Fn()>,
    late: Option<LateAddresses<'a>>,
}

/// How an attach records the VF's ownership, and for which network.
#[derive(Debug, Clone, Default)]
pub struct AttachOptions {
    /// Who owns the VF while the attachment lives.
    pub ownership: Ownership,
    /// The CNI network (config `name`), kept for GC.
    pub network: Option<String>,
}

fn owner_record(spec: &AttachSpec, opts: &AttachOptions) -> OwnerRecord {
    OwnerRecord {
        container_id: spec.container_id.clone(),
        ifname: spec.ifname.clone(),
        netns: spec.netns.display().to_string(),
        network: opts.network.clone(),
    }
}

/// Attaches the VF of `spec` to the pod, with the plugin's own ownership
/// record (delegated IPAM). See [`attach_with`].
pub async fn attach(ctx: &Context<'_>, spec: &AttachSpec) -> Result<Attachment, AttachError> {
    attach_with(ctx, spec, &AttachOptions::default()).await
}

/// Attaches the VF of `spec` to the pod. A retried ADD whose earlier run
/// finished is replayed only when the kernel still shows that attachment;
/// anything else an earlier run left is undone first. On failure
/// everything done so far is undone and the VF's claim released before the
/// error is returned.
pub async fn attach_with(
    ctx: &Context<'_>,
    spec: &AttachSpec,
    opts: &AttachOptions,
) -> Result<Attachment, AttachError> {
    attach_overlapped(ctx, spec, opts, None, None, None).await
}

/// [`attach_with`], calling `on_move` (when given) just before the VF's
/// netdev moves into the pod, after every check that can refuse the
/// attach without a kernel change: work that takes the move's time
/// (jobnetd's commit) starts there. It is not called when the attach does
/// not move a netdev (a replay, a userspace-driver VF) or fails first.
/// `prepared`, when it is for this spec, saves the sysfs read and the
/// netlink connections; `late`, when given, supplies the addresses and
/// routes once the netdev is in the pod.
pub async fn attach_overlapped(
    ctx: &Context<'_>,
    spec: &AttachSpec,
    opts: &AttachOptions,
    on_move: Option<&dyn Fn()>,
    prepared: Option<Prepared>,
    late: Option<LateAddresses<'_>>,
) -> Result<Attachment, AttachError> {
    let (mut ready_vf, links) = match prepared.filter(|p| p.is_for(spec)) {
        Some(p) => (p.vf, p.links),
        None => (None, None),
    };
    let cache_path = cache::path_for(ctx.state, &spec.container_id, &spec.ifname);
    if let Ok(earlier) = cache::load::<AttachmentRecord>(&cache_path) {
        if earlier.pci != spec.pci {
            // The detach below changes what sysfs shows of the VFs.
            ready_vf = None;
            // This attachment held another VF (jobnetd chose again, the
            // config changed): that one goes home before this one is taken.
            let outcome = detach(ctx, &spec.container_id, &spec.ifname, None, None, None).await;
            if let DetachOutcome::Busy { pci, waited } = outcome {
                return Err(OwnerError::Busy { pci, waited }.into());
            }
        }
    }
    let resolve = || {
        sriov::resolve_vf(ctx.sysfs, spec.pci).map_err(|source| AttachError::Device {
            pci: spec.pci,
            source,
        })
    };
    let mut vf = match ready_vf {
        Some(vf) => vf,
        None => resolve()?,
    };
    timings::lap("sysfs");
    let want = owner_record(spec, opts);
    let claim = match opts.ownership {
        Ownership::Local => {
            owner::claim_with(ctx.state, spec.pci, want, ADD_LOCK_WAIT, ctx.faults)?
        }
        Ownership::Daemon => {
            owner::lock_transient(ctx.state, spec.pci, want, ADD_LOCK_WAIT, ctx.faults)?
        }
    };
    timings::lap("vf_lock");
    let earlier = cache::load::<AttachmentRecord>(&cache_path).ok();
    if let Some(rec) = &earlier {
        if rec.pci == spec.pci && rec.result.is_some() && still_attached(spec, &vf, rec).await {
            return Ok(Attachment {
                record: rec.clone(),
                cache_path,
                claim,
                rdma: Arc::clone(&ctx.rdma),
            });
        }
    }
    let mut undone = undo_leftovers(ctx, spec, &claim).await;
    if let Some(rec) = earlier {
        if rec.pci == spec.pci {
            // An earlier run died midway, or what it attached is gone (the
            // pod's netns vanished and the VF came back to the node): undo
            // what is left and attach anew.
            tracing::info!(pci = %spec.pci, complete = rec.result.is_some(),
                "earlier attachment is not in the kernel as recorded; attaching again");
            restore(ctx.sysfs, ctx.rdma.as_ref(), &rec).await;
            remove_devinfo(&rec);
            undone.extend(rec.host.map(|h| h.name));
        }
        if let Err(e) = cache::remove(&cache_path) {
            return Err(release_with(claim, e.into()));
        }
    }
    if !undone.is_empty() {
        // An exclusive RDMA device is only listed again now it is home.
        vf = match resolve() {
            Ok(v) => v,
            Err(e) => return Err(release_with(claim, e)),
        };
        // The names the undo just gave the netdev are where it is now,
        // whatever sysfs listed a moment ago.
        for name in undone {
            if !vf.netdevs.contains(&name) {
                vf.netdevs.push(name);
            }
        }
    }
    timings::lap("leftovers");
    // Decided before the first change (after the replay check: a finished
    // exclusive attachment's RDMA device is in the pod, not in the host).
    let rdma_plan = match rdma::plan(
        ctx.rdma.as_ref(),
        ctx.sysfs,
        spec.pci,
        spec.rdma,
        vf.rdma_devices.first().map(String::as_str),
    ) {
        Ok(p) => p,
        Err(e) => return Err(release_with(claim, e)),
    };
    timings::lap("rdma_plan");
    let mut rec = AttachmentRecord {
        format: RECORD_FORMAT,
        container_id: spec.container_id.clone(),
        ifname: spec.ifname.clone(),
        netns: spec.netns.clone(),
        pci: spec.pci,
        pf_pci: vf.pf_pci,
        vf_index: vf.vf_index,
        dpdk: vf.is_dpdk(),
        host: None,
        pf_side: None,
        pod: None,
        rdma_device: vf.rdma_devices.first().cloned(),
        rdma: rdma_plan,
        devinfo: Some(spec.devinfo_path.clone()),
        result: None,
        siblings: Vec::new(),
        ownership: opts.ownership,
        network: opts.network.clone(),
        pod_mac: spec.mac,
    };
    let hooks = MoveHooks { on_move, late };
    match attach_steps(ctx, spec, &vf, &mut rec, &cache_path, hooks, links).await {
        Ok(()) => Ok(Attachment {
            record: rec,
            cache_path,
            claim,
            rdma: Arc::clone(&ctx.rdma),
        }),
        Err(err) => {
            tracing::warn!(pci = %spec.pci, error = %err, "ADD failed; rolling back");
            let restored = restore(ctx.sysfs, ctx.rdma.as_ref(), &rec).await;
            if !restored {
                keep_for_del(&cache_path);
            } else if let Err(e) = cache::remove(&cache_path) {
                tracing::warn!(error = %e, "could not remove attachment cache during rollback");
            }
            if let Err(e) = claim.release() {
                tracing::warn!(error = %e, "could not release VF claim during rollback");
            }
            Err(err)
        }
    }
}

/// Undoes what other attachments left on this VF: the stale owner the
/// claim took over, and any other attachment's cache that still names the
/// VF (its DEL never came, or came after another pod took the VF). Their
/// caches hold the VF's original state, which a new attach must not
/// record as "original" in its stead. Returns the netdev names the undo
/// gave back (empty when there was nothing to undo).
async fn undo_leftovers(ctx: &Context<'_>, spec: &AttachSpec, claim: &VfClaim) -> Vec<String> {
    let mut undone = Vec::new();
    let stale = match &claim.previous {
        Previous::Stale(o) => Some((o.container_id.as_str(), o.ifname.as_str())),
        _ => None,
    };
    for (path, rec) in cache::list::<AttachmentRecord>(ctx.state) {
        let Some(rec) = rec else { continue };
        let mine = rec.container_id == spec.container_id && rec.ifname == spec.ifname;
        let stale_owner = stale == Some((rec.container_id.as_str(), rec.ifname.as_str()));
        if mine || rec.pci != spec.pci {
            if stale_owner {
                // The stale owner's cache names another VF: only its claim
                // on this one was stale.
                tracing::info!(owner = %rec.container_id, "stale owner's cache names another VF");
            }
            continue;
        }
        tracing::info!(pci = %spec.pci, owner = %rec.container_id, ifname = %rec.ifname,
            "undoing another attachment's leftovers on this VF before attaching it");
        restore(ctx.sysfs, ctx.rdma.as_ref(), &rec).await;
        remove_devinfo(&rec);
        if let Err(e) = cache::remove(&path) {
            tracing::warn!(error = %e, "cannot remove a stale attachment cache");
        }
        undone.extend(rec.host.map(|h| h.name));
    }
    undone
}

fn remove_devinfo(rec: &AttachmentRecord) {
    if let Some(p) = &rec.devinfo {
        if let Err(e) = devinfo::remove(p) {
            tracing::warn!(error = %e, "cannot remove device-info file");
        }
    }
}

/// True when the kernel still shows what `rec` says ADD did for `spec`:
/// the VF in the given netns under the ifname, with the recorded index,
/// hardware address and addresses. (An exclusive RDMA device follows its
/// netdev: it leaves the pod with it.)
async fn still_attached(spec: &AttachSpec, vf: &VfInfo, rec: &AttachmentRecord) -> bool {
    if rec.netns != spec.netns {
        return false;
    }
    if rec.dpdk {
        return vf.is_dpdk();
    }
    let Some(pod_state) = &rec.pod else {
        return false;
    };
    let Ok(ns) = Netns::open(&spec.netns) else {
        return false;
    };
    let Ok(pod) = Handle::in_netns(&ns) else {
        return false;
    };
    let Ok(link) = pod.link_by_name(&spec.ifname).await else {
        return false;
    };
    if link.index != pod_state.index {
        return false;
    }
    let same_address = if pod_state.hw_addr.is_empty() {
        link.mac() == pod_state.mac
    } else {
        link.hw_addr == pod_state.hw_addr
    };
    if !same_address {
        return false;
    }
    let Ok(have) = pod.addresses(Some(link.index)).await else {
        return false;
    };
    pod_state
        .addresses
        .iter()
        .all(|want| have.iter().any(|a| a.addr == *want))
}

async fn attach_steps(
    ctx: &Context<'_>,
    spec: &AttachSpec,
    vf: &VfInfo,
    rec: &mut AttachmentRecord,
    cache_path: &std::path::Path,
    hooks: MoveHooks<'_>,
    links: Option<Links>,
) -> Result<(), AttachError> {
    let MoveHooks { on_move, late } = hooks;
    let faults = ctx.faults;
    if rec.dpdk {
        // A userspace-driver VF has no netdev: the pod gets it through the
        // device plugin; we still record it and write the device info.
        faults.before(Step::SaveCache)?;
        cache::save(ctx.state, cache_path, rec)?;
        return write_devinfo(faults, spec, rec);
    }
    let Links { host, pod_ns, pod } = match links {
        Some(l) => l,
        None => Links::open(&spec.netns)?,
    };
    timings::lap("netlink_open");

    let link = find_host_netdev(&host, ctx.sysfs, spec.pci, &vf.netdevs, &[]).await?;
    rec.host = Some(HostLinkState {
        name: link.name.clone(),
        index: link.index,
        mac: link.mac(),
        mtu: link.mtu,
        admin_up: link.admin_up,
        altnames: link.altnames.clone(),
    });
    let pf_index = if spec.pf_settings.is_empty() {
        None
    } else {
        let pf_name = vf.pf_netdevs.first().ok_or(AttachError::PfNetdevMissing {
            pci: spec.pci,
            pf: vf.pf_pci,
        })?;
        let pf = host
            .link_by_name(pf_name)
            .await
            .map_err(AttachError::kernel(Step::PfSettings))?;
        let before = host
            .vf_states(pf.index)
            .await
            .map_err(AttachError::kernel(Step::PfSettings))?
            .into_iter()
            .find(|s| s.vf == vf.vf_index)
            .map(|s| s.settings)
            .unwrap_or_default();
        rec.pf_side = Some(PfSideState {
            pf_netdev: pf_name.clone(),
            applied: spec.pf_settings,
            original: before.restricted_to(&spec.pf_settings),
        });
        Some(pf.index)
    };
    timings::lap("host_link");

    // Nothing has changed yet; from here on DEL can undo from the cache.
    faults.before(Step::SaveCache)?;
    cache::save(ctx.state, cache_path, rec)?;
    timings::lap("cache_save");

    if let Some(pf_index) = pf_index {
        faults.before(Step::PfSettings)?;
        host.set_vf(pf_index, vf.vf_index, &spec.pf_settings)
            .await
            .map_err(AttachError::kernel(Step::PfSettings))?;
        timings::lap("pf_set");
    }
    faults.before(Step::LinkDown)?;
    if link.admin_up {
        host.set_down(link.index)
            .await
            .map_err(AttachError::kernel(Step::LinkDown))?;
        timings::lap("down");
    }
    faults.before(Step::DropAltnames)?;
    if !link.altnames.is_empty() {
        host.delete_altnames(link.index, &link.altnames)
            .await
            .map_err(AttachError::kernel(Step::DropAltnames))?;
    }
    // One request moves the netdev and names it `ifname` in the pod: the
    // kernel moves it under its host name (or straight under `ifname` when
    // the pod has the host name), then renames it, one rename and its
    // grace period instead of two through a temporary name. A pod that
    // already has `ifname` refuses the rename, not the move: the VF is then
    // in the pod under its host name, where `restore` finds it by its
    // index or hardware address (and never takes the pod's own `ifname`).
    faults.before(Step::MoveToPod)?;
    if let Some(f) = on_move {
        f();
    }
    host.move_to_netns(link.index, &pod_ns, Some(&spec.ifname))
        .await
        .map_err(|e| {
            if e.is_exists() {
                AttachError::IfnameTaken {
                    ifname: spec.ifname.clone(),
                }
            } else {
                AttachError::kernel(Step::MoveToPod)(e)
            }
        })?;
    timings::lap("move");
    faults.before(Step::Rename)?;
    let moved = pod
        .link_by_name(&spec.ifname)
        .await
        .map_err(AttachError::kernel(Step::Rename))?;
    // Until the full record below: a rollback from here on knows the VF in
    // the pod by this index, whatever its MAC becomes.
    rec.pod = Some(PodLinkState {
        index: moved.index,
        mac: moved.mac(),
        mtu: moved.mtu,
        addresses: Vec::new(),
        hw_addr: moved.hw_addr.clone(),
        routes: Vec::new(),
        configured_mac: None,
        configured_mtu: None,
    });
    timings::lap("rename");
    // Only now, with the netdev in the pod: a device the pod can use
    // through verbs must never be there before its interface is.
    faults.before(Step::RdmaMove)?;
    if let Some(r) = &rec.rdma {
        rdma::move_in(ctx.rdma.as_ref(), r, &pod_ns)?;
    }
    faults.before(Step::SetMac)?;
    let ipoib = moved.hw_addr.len() == IPOIB_HW_ADDR_LEN;
    if ipoib && spec.mac.is_some() {
        // IPoIB addresses come from the QP and port GID; the GUID set
        // through the PF is what identifies the VF.
        tracing::warn!(ifname = %spec.ifname, "IPoIB interface: configured MAC ignored");
    }
    if let Some(mac) = spec.mac.filter(|_| !ipoib) {
        pod.set_mac(moved.index, mac)
            .await
            .map_err(AttachError::kernel(Step::SetMac))?;
    }
    faults.before(Step::SetMtu)?;
    if let Some(mtu) = spec.mtu {
        pod.set_mtu(moved.index, mtu)
            .await
            .map_err(AttachError::kernel(Step::SetMtu))?;
    }
    timings::lap("mac_mtu");
    let arrived;
    let (addresses, routes) = match late {
        Some(f) => {
            arrived = f().ok_or(AttachError::AddressesWithheld)?;
            timings::lap("late_addresses");
            (&arrived.0, &arrived.1)
        }
        None => (&spec.addresses, &spec.routes),
    };
    faults.before(Step::Addresses)?;
    for addr in addresses {
        // No DAD: the address is ours by allocation, and DAD would delay
        // the pod's first packets by a second or more.
        pod.add_address_with(moved.index, *addr, AddressOptions { nodad: true })
            .await
            .map_err(AttachError::kernel(Step::Addresses))?;
    }
    timings::lap("addresses");
    if let Err(e) = jobnet_netlink::enable_kernel_announcements(&pod_ns, &spec.ifname) {
        // Best effort: neighbours learn the address on first traffic.
        tracing::info!(error = %e, "gratuitous ARP / unsolicited NA not enabled");
    }
    timings::lap("announce");
    faults.before(Step::LinkUp)?;
    pod.set_up(moved.index)
        .await
        .map_err(AttachError::kernel(Step::LinkUp))?;
    timings::lap("up");
    faults.before(Step::Routes)?;
    for route in routes {
        let mut r = route.clone();
        r.oif = Some(moved.index);
        pod.add_route(&r)
            .await
            .map_err(AttachError::kernel(Step::Routes))?;
    }
    timings::lap("routes");
    let now = pod
        .link_by_index(moved.index)
        .await
        .map_err(AttachError::kernel(Step::LinkUp))?;
    timings::lap("readback");
    rec.pod = Some(PodLinkState {
        index: now.index,
        mac: now.mac(),
        mtu: now.mtu,
        addresses: addresses.clone(),
        hw_addr: now.hw_addr.clone(),
        configured_mac: spec.mac.filter(|_| !ipoib),
        configured_mtu: spec.mtu,
        routes: routes
            .iter()
            .filter_map(|r| {
                Some(RouteRecord {
                    dst: r.dst?,
                    gateway: r.gateway,
                    table: r.table,
                })
            })
            .collect(),
    });
    write_devinfo(faults, spec, rec)
}

fn write_devinfo(
    faults: &dyn FaultHook,
    spec: &AttachSpec,
    rec: &AttachmentRecord,
) -> Result<(), AttachError> {
    faults.before(Step::DevInfo)?;
    let mut info = DeviceInfo::pci(PciDeviceInfo {
        pci_address: rec.pci,
        pf_pci_address: Some(rec.pf_pci),
        rdma_device: rec.rdma_device.clone(),
    });
    if let Some(r) = &rec.rdma {
        info.jobnet = Some(JobnetDeviceInfo {
            rdma_isolation: Some(r.isolation),
            char_devices: r.char_devices.clone(),
        });
    }
    let written = devinfo::write(&spec.devinfo_path, &info).map_err(AttachError::DevInfo);
    timings::lap("devinfo");
    written
}

/// A rollback that could not put the VF back (its pod's netns can no
/// longer be entered, e.g. removed under this ADD: the VF comes back to the
/// host only when the kernel destroys the netns) keeps the cache: it is the
/// only record of the VF's original state, for the DEL that follows a
/// failed ADD (or the VF's next attach) to restore from.
fn keep_for_del(cache_path: &std::path::Path) {
    tracing::warn!(cache = %cache_path.display(),
        "VF not restored; its attachment cache stays for DEL");
}

/// Gives the VF back before reporting `err` (nothing was changed).
fn release_with(claim: VfClaim, err: AttachError) -> AttachError {
    if let Err(e) = claim.release() {
        tracing::warn!(error = %e, "could not release VF claim");
    }
    err
}

/// Finds the VF's netdev in `host`: by the names sysfs lists for the PCI
/// function first (this is what follows the device through renames), then
/// by `extra` names, skipping any that sysfs says is another device's (a
/// pod's ifname is every pod's: another VF the kernel brought back from a
/// dead pod may carry it).
async fn find_host_netdev(
    host: &Handle,
    sysfs: &SysfsRoot,
    pci: PciAddr,
    sysfs_names: &[String],
    extra: &[&str],
) -> Result<Link, AttachError> {
    let mut tried = Vec::new();
    let others = extra
        .iter()
        .copied()
        .filter(|name| sriov::pci_by_netdev(sysfs, name).map_or(true, |owner| owner == pci));
    for name in sysfs_names.iter().map(String::as_str).chain(others) {
        if tried.iter().any(|t| t == name) {
            continue;
        }
        tried.push(name.to_owned());
        match host.link_by_name(name).await {
            Ok(l) => return Ok(l),
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(AttachError::kernel(Step::MoveToPod)(e)),
        }
    }
    Err(AttachError::NetdevMissing {
        pci,
        looked_for: tried,
    })
}

impl Attachment {
    /// Stores the printed result with the record and releases the lock
    /// (the VF stays owned by this attachment). If the cache cannot be
    /// written the attach is undone: an attachment DEL could not undo must
    /// not be reported as done.
    pub async fn commit(
        mut self,
        sysfs: &SysfsRoot,
        state: &StateDir,
        result: serde_json::Value,
    ) -> Result<AttachmentRecord, AttachError> {
        self.record.result = Some(result);
        if let Err(e) = cache::save(state, &self.cache_path, &self.record) {
            self.abort(sysfs).await;
            return Err(e.into());
        }
        Ok(self.record)
    }

    /// Undoes the attach (a later step of ADD failed).
    pub async fn abort(self, sysfs: &SysfsRoot) {
        let restored = restore(sysfs, self.rdma.as_ref(), &self.record).await;
        if let Some(p) = &self.record.devinfo {
            let _ = devinfo::remove(p);
        }
        if restored {
            let _ = cache::remove(&self.cache_path);
        } else {
            keep_for_del(&self.cache_path);
        }
        if let Err(e) = self.claim.release() {
            tracing::warn!(error = %e, "could not release VF claim");
        }
    }

    /// True when this is the replay of an ADD that had already finished.
    pub fn is_replay(&self) -> bool {
        self.record.result.is_some()
    }
}

/// Puts the VF back as the record says it was. Never fails: every step is
/// attempted, and what could not be done is logged (DEL must succeed).
/// Returns true when the VF's netdev (and RDMA device) was found and restored.
pub async fn restore(sysfs: &SysfsRoot, rdma: &dyn RdmaOps, rec: &AttachmentRecord) -> bool {
    restore_with(sysfs, rdma, rec, None).await
}

/// [`restore`], calling `on_move` (when given) just before the VF leaves
/// the pod: the pod's interface is down by then, so work that must not
/// overlap a live interface (releasing its address) may start.
pub async fn restore_with(
    sysfs: &SysfsRoot,
    rdma: &dyn RdmaOps,
    rec: &AttachmentRecord,
    on_move: Option<&dyn Fn()>,
) -> bool {
    if rec.dpdk {
        return true;
    }
    let Some(orig) = &rec.host else {
        // ADD failed before touching the kernel.
        return true;
    };
    let host = match Handle::new() {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "cannot open netlink in the host netns");
            return false;
        }
    };
    let host_ns = match Netns::current() {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the host netns");
            return false;
        }
    };
    let temp = temp_name(rec.pci);
    timings::lap("netlink_open");

    // 0. The RDMA device first: the pod must never hold a device whose
    // netdev is already gone (the reverse of ADD's order).
    let rdma_ok = rec
        .rdma
        .as_ref()
        .is_none_or(|r| rdma::move_out(rdma, r, &rec.netns));

    // 1. Out of the pod, if it is still there. `home` is the pod link's
    // hardware address when the move gave it its original name.
    let mut home: Option<Option<MacAddr>> = None;
    if let Ok(pod_ns) = Netns::open(&rec.netns) {
        if let Ok(pod) = Handle::in_netns(&pod_ns) {
            // Where ADD names it (or named it: a temporary name before this
            // version), then its host name (a pod that had `ifname` refused
            // the rename after the move).
            for name in [rec.ifname.as_str(), temp.as_str(), orig.name.as_str()] {
                let Ok(l) = pod.link_by_name(name).await else {
                    continue;
                };
                let ours = match &rec.pod {
                    // A finished ADD recorded the pod link's index.
                    Some(p) => p.index == l.index,
                    // Mid-ADD in another run (a rollback in the same run
                    // knows the index the move gave it): the VF's own MAC,
                    // or the one ADD was to give it. Not the index: the
                    // pod's own devices may have the one the VF had in the
                    // host.
                    None => match orig.mac {
                        Some(mac) => {
                            l.mac() == Some(mac) || (l.mac().is_some() && l.mac() == rec.pod_mac)
                        }
                        // IPoIB has no MAC to go by.
                        None => l.index == orig.index,
                    },
                };
                if !ours {
                    // Same name, another device: the pod's own.
                    continue;
                }
                timings::lap("pod_link");
                let _ = pod.set_down(l.index).await;
                timings::lap("down");
                if let Some(f) = on_move {
                    f();
                }
                // Renamed in the pod, then moved: measured about 0.7 ms
                // faster per DEL than a move that names it, which renames
                // it in the node's netns after the move (`bench.sh
                // attach`). A pod that has the name gets the named move.
                let back = match pod.set_link_name(l.index, &orig.name).await {
                    Ok(()) => pod.move_to_netns(l.index, &host_ns, None).await,
                    Err(_) => pod.move_to_netns(l.index, &host_ns, Some(&orig.name)).await,
                };
                if back.is_ok() {
                    home = Some(l.mac());
                }
                if let Err(e) = back {
                    tracing::info!(error = %e, "original name busy in host; moving under temporary name");
                    if let Err(e) = pod.move_to_netns(l.index, &host_ns, Some(&temp)).await {
                        tracing::error!(error = %e, "cannot move VF out of the pod");
                    }
                }
                timings::lap("move");
                break;
            }
        }
    }

    // 2. In the host: where the move just put it (the same netdev: the
    // kernel named it in the move, and it kept its hardware address), else
    // under whatever name it has now (the kernel may have brought it back
    // as the pod's ifname or devN when the netns died).
    let moved_home = match home {
        Some(mac) => host
            .link_by_name(&orig.name)
            .await
            .ok()
            .filter(|l| l.mac() == mac),
        None => None,
    };
    let link = match moved_home {
        Some(l) => l,
        None => match find_host_netdev(
            &host,
            sysfs,
            rec.pci,
            &sriov::resolve_vf(sysfs, rec.pci)
                .map(|v| v.netdevs)
                .unwrap_or_default(),
            &[orig.name.as_str(), temp.as_str(), rec.ifname.as_str()],
        )
        .await
        {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "VF netdev not found; cannot restore it");
                return false;
            }
        },
    };
    timings::lap("host_link");
    let mut ok = true;
    let mut warn = |what: &str, r: Result<(), jobnet_netlink::NetlinkError>| {
        if let Err(e) = r {
            ok = false;
            tracing::warn!(error = %e, "restore: {what}");
        }
    };
    if link.admin_up && (!orig.admin_up || link.name != orig.name) {
        warn("set down", host.set_down(link.index).await);
    }
    if link.name != orig.name {
        warn("rename", host.set_link_name(link.index, &orig.name).await);
    }
    if let Some(mac) = orig.mac {
        if link.mac() != Some(mac) {
            warn("restore MAC", host.set_mac(link.index, mac).await);
        }
    }
    if link.mtu != orig.mtu {
        warn("restore MTU", host.set_mtu(link.index, orig.mtu).await);
    }
    let missing: Vec<String> = orig
        .altnames
        .iter()
        .filter(|a| !link.altnames.contains(a))
        .cloned()
        .collect();
    if !missing.is_empty() {
        warn(
            "restore altnames",
            host.add_altnames(link.index, &missing).await,
        );
    }
    if orig.admin_up {
        warn("set up", host.set_up(link.index).await);
    }
    timings::lap("host_fixups");

    // 3. PF-side settings last: the VF is quiet again.
    if let Some(pf) = &rec.pf_side {
        if !pf.original.is_empty() {
            match host.link_by_name(&pf.pf_netdev).await {
                Ok(pf_link) => warn(
                    "restore PF-side VF settings",
                    host.set_vf(pf_link.index, rec.vf_index, &pf.original).await,
                ),
                Err(e) => warn("find PF", Err(e)),
            }
        }
        timings::lap("pf_restore");
    }
    ok && rdma_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardware_addresses_format_as_the_kernel_prints_them() {
        assert_eq!(
            format_hw_addr(&[0x02, 0xab, 0, 0, 0, 1]),
            "02:ab:00:00:00:01"
        );
        // IPoIB: QPN flags, then the port GID (as `ip link` shows link/infiniband).
        let ipoib: Vec<u8> = [0x80, 0x00, 0x01, 0x48]
            .into_iter()
            .chain([0xfe, 0x80, 0, 0, 0, 0, 0, 0])
            .chain([0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77])
            .collect();
        assert_eq!(ipoib.len(), IPOIB_HW_ADDR_LEN);
        assert_eq!(
            format_hw_addr(&ipoib),
            "80:00:01:48:fe:80:00:00:00:00:00:00:00:11:22:33:44:55:66:77"
        );
        assert_eq!(format_hw_addr(&[]), "");
    }

    #[test]
    fn temp_names_fit_and_differ() {
        let a = temp_name("0000:3b:00.2".parse().unwrap());
        let b = temp_name("0000:3b:00.3".parse().unwrap());
        assert_ne!(a, b);
        assert!(a.len() <= 15, "{a}");
    }
}
