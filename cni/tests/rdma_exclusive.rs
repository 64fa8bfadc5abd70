//! Exclusive RDMA isolation, end to end on the simulated fabric (with RDMA
//! devices in its sysfs): the netdev moves for real, the RDMA netlink side
//! is a simulated kernel (`RecordingRdma`, this machine has no RDMA) that
//! records every request, which is asserted byte for byte against messages
//! built independently from the uapi numbers of `<rdma/rdma_netlink.h>`.
//!
//! The engine runs on a thread that entered the node's netns, as the plugin
//! runs in the host's.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use common::kernel;
use common::{Netns, Node};
use jobnet_cni::commands::device::block_on;
use jobnet_cni::sriov::rdma::{
    netns_inode, RdmaCall, RdmaIsolation, RdmaPolicy, RecordingRdma, SimLocation,
};
use jobnet_cni::sriov::{
    self, AttachError, AttachSpec, Context, DetachOutcome, FailAt, FaultHook, NoFaults, StateDir,
    Step,
};
use jobnet_hw::SysfsRoot;
use jobnet_netlink::VfSettings;
use jobnet_rdma::NetnsMode;
use jobnet_tests::fabric::{FabricSpec, FabricVf};

// The uapi, written out here rather than taken from the client under test.
const RDMA_NL_NLDEV: u16 = 5;
const RDMA_NLDEV_CMD_GET: u16 = 1;
const RDMA_NLDEV_CMD_SET: u16 = 2;
const RDMA_NLDEV_CMD_SYS_GET: u16 = 6;
const RDMA_NLDEV_ATTR_DEV_INDEX: u16 = 1;
const RDMA_NLDEV_NET_NS_FD: u16 = 68;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;

/// A request as the kernel expects it: nlmsghdr (seq 1, pid 0) and u32
/// attributes.
fn request(op: u16, flags: u16, attrs: &[(u16, u32)]) -> Vec<u8> {
    let mut body = Vec::new();
    for &(kind, v) in attrs {
        body.extend_from_slice(&8u16.to_ne_bytes());
        body.extend_from_slice(&kind.to_ne_bytes());
        body.extend_from_slice(&v.to_ne_bytes());
    }
    let mut m = Vec::new();
    m.extend_from_slice(&(16 + body.len() as u32).to_ne_bytes());
    m.extend_from_slice(&((RDMA_NL_NLDEV << 10) + op).to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&body);
    m
}

fn sys_get() -> Vec<u8> {
    request(RDMA_NLDEV_CMD_SYS_GET, NLM_F_REQUEST | NLM_F_ACK, &[])
}

fn dump() -> Vec<u8> {
    request(
        RDMA_NLDEV_CMD_GET,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_DUMP,
        &[],
    )
}

fn set_netns(index: u32, fd: u32) -> Vec<u8> {
    request(
        RDMA_NLDEV_CMD_SET,
        NLM_F_REQUEST | NLM_F_ACK,
        &[
            (RDMA_NLDEV_ATTR_DEV_INDEX, index),
            (RDMA_NLDEV_NET_NS_FD, fd),
        ],
    )
}

/// The fd a recorded SET carried (it was open only during the call; the
/// simulated kernel resolved it to `target_netns`).
fn fd_of(call: &RdmaCall) -> u32 {
    let b = &call.request;
    u32::from_ne_bytes([b[28], b[29], b[30], b[31]])
}

/// What the observer saw at each RDMA request: was the VF netdev in the pod?
type Seen = Arc<Mutex<Vec<bool>>>;

struct Setup {
    node: Node,
    vf: FabricVf,
    pod: Netns,
    pod_inode: u64,
    rdma: Arc<RecordingRdma>,
    seen: Seen,
    dev: String,
    index: u32,
    sysfs: SysfsRoot,
    state: StateDir,
}

impl Setup {
    fn new(prefix: &str) -> Self {
        let node = Node::build(FabricSpec {
            vfs_per_nic: 2,
            rdma: true,
            ..FabricSpec::default()
        });
        let vf = node.vf(0);
        let dev = vf
            .rdma_device
            .clone()
            .expect("fabric VF has an RDMA device");
        let other = node.vf(1).rdma_device.expect("second RDMA device");
        let index = 40;
        let pod = Netns::new(prefix);
        let pod_inode = std::fs::metadata(pod.path())
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .expect("pod netns inode");
        let seen: Seen = Arc::default();
        let (seen2, pod_name) = (Arc::clone(&seen), pod.name.clone());
        let rdma = RecordingRdma::new(
            Some(NetnsMode::Exclusive),
            &[(index, dev.as_str()), (index + 1, other.as_str())],
        )
        .with_observer(move |_| {
            let in_pod = kernel::links_if_any(&pod_name)
                .iter()
                .any(|l| l.name == "net1");
            seen2.lock().unwrap().push(in_pod);
        });
        let sysfs = SysfsRoot::new(node.sysfs_root());
        let state = StateDir::new(node.state_dir());
        Self {
            node,
            vf,
            pod,
            pod_inode,
            rdma: Arc::new(rdma),
            seen,
            dev,
            index,
            sysfs,
            state,
        }
    }

    fn spec(&self, cid: &str, isolation: RdmaIsolation) -> AttachSpec {
        AttachSpec {
            container_id: cid.to_owned(),
            ifname: "net1".to_owned(),
            netns: PathBuf::from(self.pod.path()),
            pci: self.vf.pci,
            mac: None,
            mtu: None,
            pf_settings: VfSettings::default(),
            addresses: vec!["10.70.0.5/24".parse().unwrap()],
            routes: Vec::new(),
            devinfo_path: self.node.devinfo_path(cid, "net1"),
            rdma: RdmaPolicy {
                isolation,
                required: true,
            },
        }
    }

    fn ctx<'a>(&'a self, faults: &'a dyn FaultHook) -> Context<'a> {
        Context {
            sysfs: &self.sysfs,
            state: &self.state,
            faults,
            rdma: self.rdma.clone(),
        }
    }

    fn add(
        &self,
        spec: &AttachSpec,
        faults: &(dyn FaultHook + Sync),
    ) -> Result<sriov::record::AttachmentRecord, AttachError> {
        let out = self.node.in_netns(|| {
            block_on(async {
                let ctx = self.ctx(faults);
                let a = sriov::attach(&ctx, spec).await?;
                a.commit(&self.sysfs, &self.state, serde_json::json!({}))
                    .await
            })
            .expect("runtime")
        });
        // No sysfs sync: the VF always comes home under its build-time
        // name, which the fake sysfs keeps listing.
        out
    }

    fn del(&self, cid: &str) -> DetachOutcome {
        let netns = PathBuf::from(self.pod.path());
        self.node.in_netns(|| {
            block_on(async {
                let ctx = self.ctx(&NoFaults);
                sriov::detach(&ctx, cid, "net1", Some(&netns), None, None).await
            })
            .expect("runtime")
        })
    }

    fn check(&self, cid: &str) -> Result<(), sriov::CheckError> {
        let netns = PathBuf::from(self.pod.path());
        self.node.in_netns(|| {
            block_on(async {
                let ctx = self.ctx(&NoFaults);
                sriov::check(&ctx, cid, "net1", &netns, &[]).await
            })
            .expect("runtime")
        })
    }

    fn node_inode(&self) -> u64 {
        std::fs::metadata(self.node.netns_path())
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .expect("node netns inode")
    }

    fn take_seen(&self) -> Vec<bool> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// Requests as (in pod?, bytes) for comparison; SETs keep the fd they had.
fn shape(calls: &[RdmaCall]) -> Vec<(bool, Vec<u8>)> {
    calls
        .iter()
        .map(|c| (c.in_pod, c.request.clone()))
        .collect()
}

#[test]
fn exclusive_add_moves_netdev_then_rdma_device_and_del_reverses() {
    let s = Setup::new("jnrx");
    let cid = common::unique("rx");
    let rec = s
        .add(&s.spec(&cid, RdmaIsolation::Exclusive), &NoFaults)
        .expect("ADD");
    s.node.assert_vf_in(&s.vf, &s.pod.name, "net1");
    assert_eq!(
        s.rdma.location(&s.dev),
        Some(SimLocation::Netns(s.pod_inode))
    );

    let calls = s.rdma.take_calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    let move_in = &calls[2];
    assert_eq!(
        move_in.target_netns,
        Some(s.pod_inode),
        "moved into the pod"
    );
    assert_eq!(
        shape(&calls),
        [
            (false, sys_get()),
            (false, dump()),
            (false, set_netns(s.index, fd_of(move_in))),
        ]
    );
    // Netdev first: the move request came when net1 was already in the pod.
    assert_eq!(s.take_seen(), [false, false, true]);

    // Recorded, and named in the device-info file with its char devices.
    let r = rec.rdma.as_ref().expect("RDMA recorded");
    assert_eq!(
        (r.device.as_str(), r.index),
        (s.dev.as_str(), Some(s.index))
    );
    let info: serde_json::Value = serde_json::from_slice(
        &std::fs::read(s.node.devinfo_path(&cid, "net1")).expect("device-info file"),
    )
    .expect("json");
    assert_eq!(info["pci"]["rdma-device"], s.dev.as_str());
    assert_eq!(info["jobnet"]["rdma-isolation"], "exclusive");
    let uverbs = info["jobnet"]["char-devices"][0].as_str().expect("uverbs");
    assert!(uverbs.starts_with("/dev/infiniband/uverbs"), "{info}");

    // A retried ADD replays the finished one without asking for the device
    // (which the host cannot see any more).
    let again = s
        .add(&s.spec(&cid, RdmaIsolation::Exclusive), &NoFaults)
        .expect("retried ADD");
    assert_eq!(again, rec);
    assert!(s.rdma.take_calls().is_empty(), "replay sends nothing");
    s.take_seen();

    // CHECK sees the device in the pod (asked from a socket there).
    s.check(&cid).expect("CHECK");
    let calls = s.rdma.take_calls();
    assert_eq!(shape(&calls), [(true, dump())]);
    s.take_seen();

    assert_eq!(s.del(&cid), DetachOutcome::Restored);
    let calls = s.rdma.take_calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    let move_out = &calls[1];
    assert_eq!(
        move_out.target_netns,
        Some(s.node_inode()),
        "back to the node"
    );
    assert_eq!(
        shape(&calls),
        [
            (true, dump()),
            (true, set_netns(s.index, fd_of(move_out))),
            (false, dump()),
        ]
    );
    // RDMA device out while net1 was still in the pod.
    assert_eq!(&s.take_seen()[..2], [true, true]);
    assert_eq!(s.rdma.location(&s.dev), Some(SimLocation::Host));
    s.node.assert_vf_home(&s.vf);
    s.node.assert_no_state();
}

#[test]
fn del_after_the_pod_netns_vanished_only_verifies() {
    let mut s = Setup::new("jnrg");
    let cid = common::unique("rg");
    s.add(&s.spec(&cid, RdmaIsolation::Auto), &NoFaults)
        .expect("ADD");
    assert_eq!(
        s.rdma.location(&s.dev),
        Some(SimLocation::Netns(s.pod_inode))
    );
    s.rdma.take_calls();
    // The sandbox dies: the kernel returns the netdev (as net1) and the
    // RDMA device on its own.
    s.node.kernel_return(&s.vf, "net1");
    s.rdma.netns_died(s.pod_inode);
    s.pod.delete();

    assert_eq!(s.del(&cid), DetachOutcome::Restored);
    // Nothing to move: one look in the host, nothing sent to the pod.
    assert_eq!(shape(&s.rdma.take_calls()), [(false, dump())]);
    assert_eq!(s.rdma.location(&s.dev), Some(SimLocation::Host));
    s.node.assert_vf_home(&s.vf);
    s.node.assert_no_state();
}

#[test]
fn del_reports_a_device_that_never_came_back() {
    let mut s = Setup::new("jnrl");
    let cid = common::unique("rl");
    s.add(&s.spec(&cid, RdmaIsolation::Exclusive), &NoFaults)
        .expect("ADD");
    s.node.kernel_return(&s.vf, "net1");
    s.pod.delete();
    // The device is still in the dead netns (the simulated kernel was not
    // told): DEL still succeeds and cleans up, but says restore was partial.
    assert_eq!(s.del(&cid), DetachOutcome::RestoredPartly);
    s.node.assert_vf_home(&s.vf);
    s.node.assert_no_state();
}

#[test]
fn a_refused_rdma_move_rolls_everything_back() {
    let s = Setup::new("jnrf");
    let cid = common::unique("rf");
    s.rdma.fail_next_move(libc::EBUSY);
    let err = s
        .add(&s.spec(&cid, RdmaIsolation::Exclusive), &NoFaults)
        .expect_err("ADD must fail");
    assert_eq!(err.cni_code(), 102, "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&Step::RdmaMove.to_string()), "{msg}");
    assert!(msg.contains("busy"), "the kernel's answer is lost: {msg}");

    let calls = s.rdma.take_calls();
    assert_eq!(calls.len(), 5, "{calls:?}");
    assert_eq!(
        shape(&calls),
        [
            (false, sys_get()),
            (false, dump()),
            (false, set_netns(s.index, fd_of(&calls[2]))),
            // Rollback: not in the pod, so nothing to move; it is home.
            (true, dump()),
            (false, dump()),
        ]
    );
    assert_eq!(s.rdma.location(&s.dev), Some(SimLocation::Host));
    s.node.assert_vf_home(&s.vf);
    s.node.assert_no_state();
    assert!(!s.node.devinfo_path(&cid, "net1").exists());
    assert_eq!(kernel::links(&s.pod.name).len(), 1, "pod not empty");
}

#[test]
fn rollback_after_the_rdma_move_takes_the_device_out_first() {
    let s = Setup::new("jnrb");
    for step in [Step::SetMac, Step::Addresses, Step::Routes, Step::DevInfo] {
        let cid = common::unique("rb");
        let err = s
            .add(&s.spec(&cid, RdmaIsolation::Exclusive), &FailAt(step))
            .expect_err("ADD must fail");
        assert!(
            matches!(err, AttachError::Injected(st) if st == step),
            "{err}"
        );
        let calls = s.rdma.take_calls();
        assert_eq!(calls.len(), 6, "{step}: {calls:?}");
        assert_eq!(calls[2].target_netns, Some(s.pod_inode));
        assert_eq!(calls[4].target_netns, Some(s.node_inode()));
        assert_eq!(
            shape(&calls),
            [
                (false, sys_get()),
                (false, dump()),
                (false, set_netns(s.index, fd_of(&calls[2]))),
                (true, dump()),
                (true, set_netns(s.index, fd_of(&calls[4]))),
                (false, dump()),
            ],
            "{step}"
        );
        // In after the netdev, out before it.
        assert_eq!(
            &s.take_seen()[..5],
            [false, false, true, true, true],
            "{step}"
        );
        assert_eq!(s.rdma.location(&s.dev), Some(SimLocation::Host), "{step}");
        s.node.assert_vf_home(&s.vf);
        s.node.assert_no_state();
    }
}

#[test]
fn shared_mode_leaves_the_device_and_reports_it() {
    let s = Setup::new("jnrs");
    let cid = common::unique("rs");
    let rec = s
        .add(&s.spec(&cid, RdmaIsolation::Shared), &NoFaults)
        .expect("ADD");
    s.node.assert_vf_in(&s.vf, &s.pod.name, "net1");
    assert!(s.rdma.calls().is_empty(), "shared mode sends nothing");
    assert_eq!(rec.rdma_device.as_deref(), Some(s.dev.as_str()));
    assert_eq!(s.del(&cid), DetachOutcome::Restored);
    assert!(s.rdma.calls().is_empty());
    s.node.assert_vf_home(&s.vf);
}

#[test]
fn an_rdma_device_already_in_another_pod_is_refused_untouched() {
    let s = Setup::new("jnro");
    let other = Netns::new("jnro");
    let other_ns = jobnet_netlink::Netns::open(other.path()).expect("open");
    let other_inode = netns_inode(std::os::fd::AsFd::as_fd(&other_ns)).expect("inode");
    // Someone else's pod holds it (the host sysfs of a real kernel would not
    // even list it then; the fake sysfs still does).
    let sim = &s.rdma;
    s.node.in_netns(|| {
        use jobnet_cni::sriov::rdma::{RdmaNs, RdmaOps};
        sim.move_to_netns(RdmaNs::Host, s.index, std::os::fd::AsFd::as_fd(&other_ns))
            .expect("simulated move");
    });
    assert_eq!(sim.location(&s.dev), Some(SimLocation::Netns(other_inode)));
    sim.take_calls();
    let cid = common::unique("ro");
    let err = s
        .add(&s.spec(&cid, RdmaIsolation::Exclusive), &NoFaults)
        .expect_err("ADD must fail");
    assert_eq!(err.cni_code(), 104, "{err}");
    assert_eq!(
        shape(&sim.take_calls()),
        [(false, sys_get()), (false, dump())]
    );
    assert_eq!(s.node.snapshot(&s.vf), *s.node.original(&s.vf));
    s.node.assert_no_state();
}
