//! The VF's RDMA device: which isolation applies, and moving the device
//! between the host and the pod netns.
//!
//! In exclusive netns mode an RDMA device is visible in exactly one netns,
//! and a netlink socket sees the devices of the netns it was created in.
//! So the device is looked up and moved into the pod from a socket in the
//! host netns, and looked up and moved back from a socket in the pod netns.
//! [`RdmaOps`] is that seam: [`KernelRdma`] talks to the kernel,
//! [`RecordingRdma`] plays the kernel for tests and records every request.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use jobnet_hw::{PciAddr, SysfsRoot};
use jobnet_netlink::Netns;
use jobnet_rdma::{kernel_reply, DeviceInfo, NetnsMode, RdmaClient, RdmaError, ReplayTransport};

use super::error::AttachError;
use super::record::{RdmaIsolationApplied, RdmaRecord};

/// The netns an RDMA netlink socket is opened in.
#[derive(Debug, Clone, Copy)]
pub enum RdmaNs<'a> {
    /// The calling thread's netns (the node's host netns).
    Host,
    /// The pod's netns.
    Pod(&'a Netns),
}

/// The RDMA netlink operations the attach engine needs.
pub trait RdmaOps: Send + Sync + std::fmt::Debug {
    /// The RDMA subsystem's netns mode (asked in the host netns).
    fn netns_mode(&self) -> Result<NetnsMode, RdmaError>;
    /// Kernel index of the RDMA device `name` as seen from `ns`
    /// ([`RdmaError::NoSuchDevice`] when it is not visible there).
    fn device_index(&self, ns: RdmaNs<'_>, name: &str) -> Result<u32, RdmaError>;
    /// Moves device `index`, visible from `ns`, into the netns `target`.
    fn move_to_netns(
        &self,
        ns: RdmaNs<'_>,
        index: u32,
        target: BorrowedFd<'_>,
    ) -> Result<(), RdmaError>;
}

/// [`RdmaOps`] on real `NETLINK_RDMA` sockets, one per operation, each
/// created in the netns the operation must see.
#[derive(Debug, Default, Clone, Copy)]
pub struct KernelRdma;

impl KernelRdma {
    fn client(ns: RdmaNs<'_>) -> Result<RdmaClient, RdmaError> {
        match ns {
            RdmaNs::Host => RdmaClient::open(),
            RdmaNs::Pod(pod) => RdmaClient::open_in_netns(pod),
        }
    }
}

impl RdmaOps for KernelRdma {
    fn netns_mode(&self) -> Result<NetnsMode, RdmaError> {
        RdmaClient::open()?.netns_mode()
    }

    fn device_index(&self, ns: RdmaNs<'_>, name: &str) -> Result<u32, RdmaError> {
        Ok(Self::client(ns)?.device_by_name(name)?.index)
    }

    fn move_to_netns(
        &self,
        ns: RdmaNs<'_>,
        index: u32,
        target: BorrowedFd<'_>,
    ) -> Result<(), RdmaError> {
        Self::client(ns)?.move_to_netns(index, target)
    }
}

const OP_MODE: &str = "read the RDMA netns mode";
const OP_FIND: &str = "find the RDMA device in the host netns";
/// Same words as [`super::Step::RdmaMove`], so errors name the step.
const OP_MOVE: &str = "move RDMA device into pod netns";

/// How the config wants the RDMA device handled (`rdma.isolation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RdmaIsolation {
    /// Follow the subsystem's netns mode; shared where RDMA netlink is absent.
    #[default]
    Auto,
    /// Move the device into the pod; fail when the kernel cannot.
    Exclusive,
    /// Leave the device where it is and report it.
    Shared,
}

/// The config's `rdma` section as the engine takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RdmaPolicy {
    /// Requested isolation.
    pub isolation: RdmaIsolation,
    /// Fail (code 104) when the VF has no RDMA device.
    pub required: bool,
}

/// Decides what happens to the VF's RDMA device `device` (the first one
/// sysfs lists), before anything is changed. `Ok(None)`: the VF has none.
pub fn plan(
    ops: &dyn RdmaOps,
    sysfs: &SysfsRoot,
    pci: PciAddr,
    policy: RdmaPolicy,
    device: Option<&str>,
) -> Result<Option<RdmaRecord>, AttachError> {
    let Some(device) = device else {
        if policy.required {
            return Err(AttachError::RdmaUnavailable(format!(
                "VF {pci} has no RDMA device and the config requires one (\"rdma\": {{\"required\": true}})"
            )));
        }
        return Ok(None);
    };
    let isolation = match policy.isolation {
        RdmaIsolation::Shared => Ok(RdmaIsolationApplied::Shared),
        requested => decide(ops, requested, device, pci),
    }?;
    let index = match isolation {
        RdmaIsolationApplied::Exclusive => Some(
            ops.device_index(RdmaNs::Host, device)
                .map_err(|e| missing_or(e, device, pci))?,
        ),
        RdmaIsolationApplied::Shared => None,
    };
    Ok(Some(RdmaRecord {
        device: device.to_owned(),
        isolation,
        index,
        char_devices: char_devices(sysfs, pci, device),
    }))
}

/// Auto or exclusive against the subsystem's netns mode.
fn decide(
    ops: &dyn RdmaOps,
    requested: RdmaIsolation,
    device: &str,
    pci: PciAddr,
) -> Result<RdmaIsolationApplied, AttachError> {
    Ok(match (requested, ops.netns_mode()) {
        (_, Ok(NetnsMode::Exclusive)) => RdmaIsolationApplied::Exclusive,
        (RdmaIsolation::Auto, Err(RdmaError::NotAvailable)) => {
            tracing::info!(
                rdma_device = device,
                "RDMA netlink not available on this kernel; RDMA device left shared"
            );
            RdmaIsolationApplied::Shared
        }
        (RdmaIsolation::Exclusive, Ok(NetnsMode::Shared)) => {
            return Err(AttachError::RdmaUnavailable(format!(
                "\"rdma\": {{\"isolation\": \"exclusive\"}} but the RDMA subsystem is in shared netns mode, so RDMA device {device} of VF {pci} cannot be moved into the pod (switch with `rdma system set netns exclusive` before pods start, or use \"shared\"/\"auto\")"
            )))
        }
        (RdmaIsolation::Exclusive, Err(RdmaError::NotAvailable)) => {
            return Err(AttachError::RdmaUnavailable(format!(
                "\"rdma\": {{\"isolation\": \"exclusive\"}} but this kernel has no RDMA netlink, so RDMA device {device} of VF {pci} cannot be moved into the pod"
            )))
        }
        (_, Ok(NetnsMode::Shared)) => RdmaIsolationApplied::Shared,
        (_, Err(source)) => return Err(AttachError::rdma(OP_MODE)(source)),
    })
}

fn missing_or(e: RdmaError, device: &str, pci: PciAddr) -> AttachError {
    if e.is_no_device() {
        AttachError::RdmaUnavailable(format!(
            "RDMA device {device} of VF {pci} is not in the host network namespace (attached to another pod?)"
        ))
    } else {
        AttachError::rdma(OP_FIND)(e)
    }
}

/// The character devices a pod needs to use `device`: its `uverbsN` and,
/// when the connection manager is loaded, `rdma_cm`.
pub fn char_devices(sysfs: &SysfsRoot, pci: PciAddr, device: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    match jobnet_hw::rdma::devices_of_pci(sysfs, pci) {
        Ok(devs) => {
            if let Some(uverbs) = devs
                .iter()
                .find(|d| d.name.as_str() == device)
                .and_then(|d| d.uverbs())
            {
                out.push(uverbs.path());
            }
        }
        Err(e) => tracing::info!(error = %e, "cannot read the RDMA device's character devices"),
    }
    if let Some(cm) = jobnet_hw::rdma::rdma_cm(sysfs) {
        out.push(cm.path());
    }
    out
}

/// Moves the RDMA device into the pod (exclusive isolation only).
pub fn move_in(ops: &dyn RdmaOps, rec: &RdmaRecord, pod: &Netns) -> Result<(), AttachError> {
    if rec.isolation != RdmaIsolationApplied::Exclusive {
        return Ok(());
    }
    let index = match rec.index {
        Some(i) => i,
        None => ops
            .device_index(RdmaNs::Host, &rec.device)
            .map_err(AttachError::rdma(OP_FIND))?,
    };
    ops.move_to_netns(RdmaNs::Host, index, pod.as_fd())
        .map_err(AttachError::rdma(OP_MOVE))
}

/// Brings an exclusively isolated RDMA device back to the host: from the
/// pod when it is still there; when the pod netns is gone the kernel has
/// returned it to init_net, and this only verifies it is visible. Never
/// fails; false when the device could not be found in the host afterwards.
pub fn move_out(ops: &dyn RdmaOps, rec: &RdmaRecord, pod_netns: &std::path::Path) -> bool {
    if rec.isolation != RdmaIsolationApplied::Exclusive {
        return true;
    }
    let dev = rec.device.as_str();
    match Netns::open(pod_netns) {
        Ok(pod) => match ops.device_index(RdmaNs::Pod(&pod), dev) {
            Ok(index) => match Netns::current() {
                Ok(host) => {
                    if let Err(e) = ops.move_to_netns(RdmaNs::Pod(&pod), index, host.as_fd()) {
                        tracing::error!(rdma_device = dev, error = %e, "cannot move the RDMA device out of the pod");
                        return false;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot open the host netns");
                    return false;
                }
            },
            Err(e) if e.is_no_device() => {
                tracing::info!(rdma_device = dev, "RDMA device not in the pod netns");
            }
            Err(e) => {
                tracing::warn!(rdma_device = dev, error = %e, "cannot look for the RDMA device in the pod netns");
            }
        },
        Err(e) => tracing::info!(
            rdma_device = dev,
            error = %e,
            "pod netns gone; the kernel returns the RDMA device to init_net by itself"
        ),
    }
    match ops.device_index(RdmaNs::Host, dev) {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(rdma_device = dev, error = %e, "RDMA device not visible in the host netns after restore");
            false
        }
    }
}

/// One request a [`RecordingRdma`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdmaCall {
    /// Where the socket was: true for the pod netns, false for the host.
    pub in_pod: bool,
    /// The request datagram, byte for byte.
    pub request: Vec<u8>,
    /// For a move: the inode of the netns its fd named.
    pub target_netns: Option<u64>,
}

/// Where a simulated RDMA device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimLocation {
    /// In the netns the engine runs in.
    Host,
    /// In the netns with this inode number.
    Netns(u64),
}

#[derive(Debug)]
struct SimDevice {
    index: u32,
    name: String,
    at: SimLocation,
}

#[derive(Debug)]
struct Sim {
    mode: Option<NetnsMode>,
    devices: Vec<SimDevice>,
    calls: Vec<RdmaCall>,
    move_errnos: VecDeque<i32>,
}

/// Observer called with each request before the simulated kernel answers.
type Observer = Box<dyn Fn(&RdmaCall) + Send + Sync>;

/// [`RdmaOps`] for tests: a simulated RDMA subsystem that answers through
/// [`ReplayTransport`] in the kernel's format and records every request.
/// Each operation is a fresh client (as [`KernelRdma`] opens a fresh
/// socket), so every request has sequence number 1.
pub struct RecordingRdma {
    sim: Mutex<Sim>,
    observer: Option<Observer>,
}

impl std::fmt::Debug for RecordingRdma {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingRdma").finish_non_exhaustive()
    }
}

/// The inode of the netns behind `fd`.
pub fn netns_inode(fd: BorrowedFd<'_>) -> std::io::Result<u64> {
    let file = std::fs::File::from(fd.try_clone_to_owned()?);
    Ok(file.metadata()?.ino())
}

fn current_netns_inode() -> std::io::Result<u64> {
    Ok(std::fs::metadata("/proc/thread-self/ns/net")?.ino())
}

impl RecordingRdma {
    /// A subsystem in `mode` (None: no RDMA netlink) whose devices
    /// `(index, name)` are all in the host.
    pub fn new(mode: Option<NetnsMode>, devices: &[(u32, &str)]) -> Self {
        Self {
            sim: Mutex::new(Sim {
                mode,
                devices: devices
                    .iter()
                    .map(|&(index, name)| SimDevice {
                        index,
                        name: name.to_owned(),
                        at: SimLocation::Host,
                    })
                    .collect(),
                calls: Vec::new(),
                move_errnos: VecDeque::new(),
            }),
            observer: None,
        }
    }

    /// Calls `f` with each request before it is answered (e.g. to look at
    /// where the netdev is at that moment).
    pub fn with_observer(mut self, f: impl Fn(&RdmaCall) + Send + Sync + 'static) -> Self {
        self.observer = Some(Box::new(f));
        self
    }

    fn sim(&self) -> MutexGuard<'_, Sim> {
        self.sim.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next move request is refused with `errno`.
    pub fn fail_next_move(&self, errno: i32) {
        self.sim().move_errnos.push_back(errno);
    }

    /// Every request so far, in order.
    pub fn calls(&self) -> Vec<RdmaCall> {
        self.sim().calls.clone()
    }

    /// Takes the requests recorded so far.
    pub fn take_calls(&self) -> Vec<RdmaCall> {
        std::mem::take(&mut self.sim().calls)
    }

    /// Where device `name` is.
    pub fn location(&self, name: &str) -> Option<SimLocation> {
        self.sim()
            .devices
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.at)
    }

    /// Plays the kernel when a netns dies: its RDMA devices return home.
    pub fn netns_died(&self, inode: u64) {
        for d in &mut self.sim().devices {
            if d.at == SimLocation::Netns(inode) {
                d.at = SimLocation::Host;
            }
        }
    }

    fn side(ns: RdmaNs<'_>) -> Result<(bool, SimLocation), RdmaError> {
        match ns {
            RdmaNs::Host => Ok((false, SimLocation::Host)),
            RdmaNs::Pod(n) => {
                let ino = netns_inode(n.as_fd()).map_err(|e| RdmaError::Io {
                    op: "fstat",
                    source: e,
                })?;
                Ok((true, SimLocation::Netns(ino)))
            }
        }
    }

    /// Runs `op` on a client whose transport answers with `script`, records
    /// what it sent.
    fn exchange<T>(
        &self,
        in_pod: bool,
        target_netns: Option<u64>,
        script: impl FnOnce(&Sim, &mut ReplayTransport),
        op: impl FnOnce(&mut RdmaClient<ReplayTransport>) -> Result<T, RdmaError>,
    ) -> Result<T, RdmaError> {
        let mut transport = ReplayTransport::new();
        script(&self.sim(), &mut transport);
        let mut client = RdmaClient::with_transport(transport);
        let out = op(&mut client);
        for request in client.into_transport().take_sent() {
            let call = RdmaCall {
                in_pod,
                request,
                target_netns,
            };
            if let Some(f) = &self.observer {
                f(&call);
            }
            self.sim().calls.push(call);
        }
        out
    }
}

fn visible(sim: &Sim, d: &SimDevice, from: SimLocation) -> bool {
    sim.mode == Some(NetnsMode::Shared) || d.at == from
}

impl RdmaOps for RecordingRdma {
    fn netns_mode(&self) -> Result<NetnsMode, RdmaError> {
        if self.sim().mode.is_none() {
            return Err(RdmaError::NotAvailable);
        }
        self.exchange(
            false,
            None,
            |sim, t| {
                if let Some(m) = sim.mode {
                    // The answer, then the ack NLM_F_ACK asked for.
                    t.push_reply(kernel_reply::sys(0, m)).push_ack();
                }
            },
            |c| c.netns_mode(),
        )
    }

    fn device_index(&self, ns: RdmaNs<'_>, name: &str) -> Result<u32, RdmaError> {
        if self.sim().mode.is_none() {
            return Err(RdmaError::NotAvailable);
        }
        let (in_pod, from) = Self::side(ns)?;
        self.exchange(
            in_pod,
            None,
            |sim, t| {
                let mut parts: Vec<Vec<u8>> = sim
                    .devices
                    .iter()
                    .filter(|d| visible(sim, d, from))
                    .map(|d| {
                        kernel_reply::device(
                            0,
                            true,
                            &DeviceInfo {
                                index: d.index,
                                name: d.name.clone(),
                                port_count: 1,
                                ..DeviceInfo::default()
                            },
                        )
                    })
                    .collect();
                parts.push(kernel_reply::done(0));
                t.push_reply(kernel_reply::datagram(&parts));
            },
            |c| c.device_by_name(name).map(|d| d.index),
        )
    }

    fn move_to_netns(
        &self,
        ns: RdmaNs<'_>,
        index: u32,
        target: BorrowedFd<'_>,
    ) -> Result<(), RdmaError> {
        if self.sim().mode.is_none() {
            return Err(RdmaError::NotAvailable);
        }
        let (in_pod, from) = Self::side(ns)?;
        let io = |source| RdmaError::Io {
            op: "fstat",
            source,
        };
        let target_ino = netns_inode(target).map_err(io)?;
        let dest = if target_ino == current_netns_inode().map_err(io)? {
            SimLocation::Host
        } else {
            SimLocation::Netns(target_ino)
        };
        // The kernel's answer: an injected refusal, EOPNOTSUPP in shared
        // mode, EINVAL for an index this netns cannot see, else success.
        let errno = {
            let mut sim = self.sim();
            let found = sim
                .devices
                .iter()
                .any(|d| d.index == index && visible(&sim, d, from));
            match sim.move_errnos.pop_front() {
                Some(e) => Some(e),
                None if sim.mode == Some(NetnsMode::Shared) => Some(libc::EOPNOTSUPP),
                None if !found => Some(libc::EINVAL),
                None => None,
            }
        };
        self.exchange(
            in_pod,
            Some(target_ino),
            |_, t| {
                match errno {
                    Some(e) => t.push_errno(e),
                    None => t.push_ack(),
                };
            },
            |c| c.move_to_netns(index, target),
        )?;
        if let Some(d) = self.sim().devices.iter_mut().find(|d| d.index == index) {
            d.at = dest;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobnet_rdma::consts::{attr, cmd, nl, rdma_nl_type, RDMA_NL_NLDEV};
    use jobnet_rdma::message::MessageBuilder;

    fn sysfs() -> SysfsRoot {
        SysfsRoot::new("/nonexistent-sysfs")
    }

    fn pci() -> PciAddr {
        "0000:3b:00.2".parse().unwrap()
    }

    fn policy(isolation: RdmaIsolation, required: bool) -> RdmaPolicy {
        RdmaPolicy {
            isolation,
            required,
        }
    }

    #[test]
    fn required_without_device_is_104() {
        let ops = RecordingRdma::new(Some(NetnsMode::Exclusive), &[]);
        let err = plan(
            &ops,
            &sysfs(),
            pci(),
            policy(RdmaIsolation::Auto, true),
            None,
        )
        .unwrap_err();
        assert_eq!(err.cni_code(), 104, "{err}");
        assert!(err.to_string().contains("requires"), "{err}");
        assert!(ops.calls().is_empty(), "nothing asked, nothing changed");
        let none = plan(
            &ops,
            &sysfs(),
            pci(),
            policy(RdmaIsolation::Auto, false),
            None,
        );
        assert_eq!(none.unwrap(), None);
    }

    #[test]
    fn auto_follows_the_mode_and_is_shared_without_rdma_netlink() {
        let cases = [
            (Some(NetnsMode::Exclusive), RdmaIsolationApplied::Exclusive),
            (Some(NetnsMode::Shared), RdmaIsolationApplied::Shared),
            (None, RdmaIsolationApplied::Shared),
        ];
        for (mode, want) in cases {
            let ops = RecordingRdma::new(mode, &[(7, "mlx5_7")]);
            let rec = plan(
                &ops,
                &sysfs(),
                pci(),
                policy(RdmaIsolation::Auto, true),
                Some("mlx5_7"),
            )
            .unwrap()
            .unwrap();
            assert_eq!(rec.isolation, want, "{mode:?}");
            let want_index = (want == RdmaIsolationApplied::Exclusive).then_some(7);
            assert_eq!(rec.index, want_index);
        }
    }

    #[test]
    fn explicit_exclusive_needs_rdma_netlink_in_exclusive_mode() {
        for (mode, needle) in [
            (None, "no RDMA netlink"),
            (Some(NetnsMode::Shared), "shared netns mode"),
        ] {
            let ops = RecordingRdma::new(mode, &[(7, "mlx5_7")]);
            let err = plan(
                &ops,
                &sysfs(),
                pci(),
                policy(RdmaIsolation::Exclusive, false),
                Some("mlx5_7"),
            )
            .unwrap_err();
            assert_eq!(err.cni_code(), 104);
            assert!(err.to_string().contains(needle), "{err}");
        }
        // Shared asks nothing.
        let ops = RecordingRdma::new(None, &[]);
        let rec = plan(
            &ops,
            &sysfs(),
            pci(),
            policy(RdmaIsolation::Shared, false),
            Some("mlx5_7"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(rec.isolation, RdmaIsolationApplied::Shared);
        assert!(ops.calls().is_empty());
    }

    #[test]
    fn exclusive_device_already_elsewhere_is_104() {
        let ops = RecordingRdma::new(Some(NetnsMode::Exclusive), &[(1, "mlx5_1")]);
        let err = plan(
            &ops,
            &sysfs(),
            pci(),
            policy(RdmaIsolation::Auto, false),
            Some("mlx5_9"),
        )
        .unwrap_err();
        assert_eq!(err.cni_code(), 104, "{err}");
    }

    #[test]
    fn recorded_requests_are_the_uapi_bytes() {
        let ops = RecordingRdma::new(Some(NetnsMode::Exclusive), &[(4, "mlx5_4")]);
        assert_eq!(ops.netns_mode().unwrap(), NetnsMode::Exclusive);
        assert_eq!(ops.device_index(RdmaNs::Host, "mlx5_4").unwrap(), 4);
        let here = Netns::current().unwrap();
        // A move to the netns we are in keeps the device in the host.
        ops.move_to_netns(RdmaNs::Host, 4, here.as_fd()).unwrap();
        let calls = ops.take_calls();
        let req = nl::NLM_F_REQUEST | nl::NLM_F_ACK;
        let sys_get =
            MessageBuilder::new(rdma_nl_type(RDMA_NL_NLDEV, cmd::SYS_GET), req, 1).finish();
        let get = MessageBuilder::new(
            rdma_nl_type(RDMA_NL_NLDEV, cmd::GET),
            req | nl::NLM_F_DUMP,
            1,
        )
        .finish();
        let fd = u32::try_from(std::os::fd::AsRawFd::as_raw_fd(&here)).unwrap();
        let set = MessageBuilder::new(rdma_nl_type(RDMA_NL_NLDEV, cmd::SET), req, 1)
            .attr_u32(attr::DEV_INDEX, 4)
            .attr_u32(attr::NET_NS_FD, fd)
            .finish();
        let got: Vec<&[u8]> = calls.iter().map(|c| c.request.as_slice()).collect();
        assert_eq!(got, [&sys_get[..], &get[..], &set[..]]);
        assert!(calls.iter().all(|c| !c.in_pod));
        assert_eq!(ops.location("mlx5_4"), Some(SimLocation::Host));
    }

    #[test]
    fn simulated_kernel_refuses_like_the_kernel() {
        let here = Netns::current().unwrap();
        let shared = RecordingRdma::new(Some(NetnsMode::Shared), &[(4, "mlx5_4")]);
        let e = shared
            .move_to_netns(RdmaNs::Host, 4, here.as_fd())
            .unwrap_err();
        assert_eq!(e.errno(), Some(libc::EOPNOTSUPP));
        let excl = RecordingRdma::new(Some(NetnsMode::Exclusive), &[(4, "mlx5_4")]);
        let e = excl
            .move_to_netns(RdmaNs::Host, 9, here.as_fd())
            .unwrap_err();
        assert_eq!(e.errno(), Some(libc::EINVAL));
        excl.fail_next_move(libc::EBUSY);
        let e = excl
            .move_to_netns(RdmaNs::Host, 4, here.as_fd())
            .unwrap_err();
        assert_eq!(e.errno(), Some(libc::EBUSY));
        let none = RecordingRdma::new(None, &[]);
        assert!(matches!(none.netns_mode(), Err(RdmaError::NotAvailable)));
        assert!(none.calls().is_empty());
    }

    #[test]
    fn kernel_rdma_reports_not_available_here_or_works() {
        // This kernel has no RDMA: a typed answer, never a crash. (On a
        // kernel with RDMA the mode is simply read.)
        match KernelRdma.netns_mode() {
            Ok(_) | Err(RdmaError::NotAvailable) => {}
            Err(e) => panic!("unexpected: {e}"),
        }
    }
}
