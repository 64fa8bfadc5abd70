//! An ADD whose pod netns is removed while it runs, failing after the VF
//! moved in: the rollback cannot enter the netns any more (its path is
//! gone) and the VF comes back to the node only when the kernel destroys
//! the netns, under the pod's interface name, with the pod's MAC and MTU.
//! The attachment cache is then the only record of the VF's original
//! state: the rollback keeps it, so that the DEL that follows the failed
//! ADD restores the VF. (Found by tests/tests/fault_suite.rs.)
//!
//! The rollback must not take another VF for its own either: the pod's
//! interface name is every pod's, and a VF the kernel brought back from
//! another dead pod may carry it in the node.
//!
//! ADD runs in-process (`jobnet_cni::run_with_faults`) so that the netns
//! goes at an exact step; the configs name the node's sysfs root and state
//! dir (`sysfsRoot`, `stateDir`), so tests running side by side do not
//! share them through the process environment.

mod common;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;

use common::ipam::{FixedIpam, FIXED_IPAM};
use common::{CniCall, Node};
use jobnet_cni::sriov::{AttachError, FaultHook, Step};
use serde_json::json;

/// Removes the pod netns's name just before `at`, then fails that step.
struct RemoveNetnsAt {
    at: Step,
    netns: String,
}

impl FaultHook for RemoveNetnsAt {
    fn before(&self, step: Step) -> Result<(), AttachError> {
        if step != self.at {
            return Ok(());
        }
        let ok = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip netns del {}", self.netns);
        Err(AttachError::Injected(step))
    }
}

/// A pod netns the test removes itself; removed on drop only if still there
/// (a panicking test).
struct PodNetns {
    name: String,
}

impl PodNetns {
    fn new() -> Self {
        let name = common::unique("jnrg");
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip netns add {name}");
        Self { name }
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
}

impl Drop for PodNetns {
    fn drop(&mut self) {
        if std::path::Path::new(&self.path()).exists() {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name])
                .status();
        }
    }
}

/// Runs `ip args...` inside the netns held open by `ns`.
fn ip_in(ns: &File, args: &[&str]) {
    let path = format!("/proc/{}/fd/{}", std::process::id(), ns.as_raw_fd());
    let out = Command::new("nsenter")
        .arg(format!("--net={path}"))
        .arg("ip")
        .args(args)
        .output()
        .expect("run nsenter ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Everything one ADD in the node needs.
struct Add<'a> {
    node: &'a Node,
    vf: &'a jobnet_tests::fabric::FabricVf,
    cid: String,
    conf: serde_json::Value,
    ipam: FixedIpam,
}

impl<'a> Add<'a> {
    fn new(
        node: &'a Node,
        vf: &'a jobnet_tests::fabric::FabricVf,
        address: &str,
        mac: &str,
    ) -> Self {
        let cid = common::unique("rg");
        let mut conf = node.conf("1.1.0", "rollback-gone", vf, &cid, "net1");
        let ipam = FixedIpam::new(&json!({"cniVersion": "1.1.0", "ips": [{"address": address}]}));
        conf["ipam"] = json!({"type": FIXED_IPAM});
        conf["mac"] = json!(mac);
        conf["mtu"] = json!(1400);
        conf["sysfsRoot"] = json!(node.sysfs_root());
        conf["stateDir"] = json!(node.state_dir());
        Self {
            node,
            vf,
            cid,
            conf,
            ipam,
        }
    }

    fn call(&self, command: &str, netns: &str) -> CniCall {
        CniCall::new(command, &self.cid, netns, "net1").cni_path(&self.ipam.cni_path())
    }

    /// ADD in-process into `pod`, whose name is removed right before `at`.
    fn add_losing_netns(&self, pod: &PodNetns, at: Step) -> (i32, String) {
        let path = pod.path();
        let cni_path = self.ipam.cni_path();
        let vars: jobnet_cni::protocol::env::EnvMap = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", self.cid.as_str()),
            ("CNI_NETNS", path.as_str()),
            ("CNI_IFNAME", "net1"),
            ("CNI_PATH", cni_path.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let hook = RemoveNetnsAt {
            at,
            netns: pod.name.clone(),
        };
        let input = self.conf.to_string();
        self.node.in_netns(|| {
            let mut out = Vec::new();
            let code = jobnet_cni::run_with_faults(&vars, input.as_bytes(), &mut out, &hook);
            (code, String::from_utf8_lossy(&out).into_owned())
        })
    }

    fn del(&self, netns: &str) {
        self.node
            .call(&self.call("DEL", netns), &self.conf)
            .expect_silent_success();
        self.node.sync(self.vf);
    }
}

/// The kernel destroys the netns held by `holder`: the VF inside, `net1`,
/// comes back to the node as it is, named `name`.
fn netns_dies(node: &Node, vf: &jobnet_tests::fabric::FabricVf, holder: File, name: &str) {
    ip_in(&holder, &["link", "set", "dev", "net1", "down"]);
    ip_in(
        &holder,
        &[
            "link",
            "set",
            "dev",
            "net1",
            "netns",
            node.netns_name(),
            "name",
            name,
        ],
    );
    drop(holder);
    node.sync(vf);
}

#[test]
fn a_rollback_that_cannot_reach_the_pod_keeps_the_cache_for_del() {
    let node = Node::small(1);
    let vf = node.vf(0);
    let add = Add::new(&node, &vf, "10.66.9.5/24", "02:0b:0c:0d:0e:01");
    let pod = PodNetns::new();
    // What keeps the netns alive once its name is gone: here this handle,
    // in a runtime the sandbox's processes or the plugin itself.
    let holder = File::open(pod.path()).expect("open pod netns");
    let (code, out) = add.add_losing_netns(&pod, Step::LinkUp);
    assert_ne!(code, 0, "ADD succeeded: {out}");

    netns_dies(&node, &vf, holder, "net1");
    add.del(&pod.path());
    node.assert_vf_home(&vf);
    node.assert_no_state();
    assert!(!node.devinfo_path(&add.cid, "net1").exists());
}

#[test]
fn a_rollback_leaves_another_vf_with_the_pod_name_alone() {
    let node = Node::small(2);
    let (first, second) = (node.vf(0), node.vf(1));
    // A pod with the first VF dies without DEL: its VF is `net1` in the node.
    let old = Add::new(&node, &first, "10.66.9.6/24", "02:0b:0c:0d:0e:02");
    let mut old_pod = common::Netns::new("jnrg");
    node.call(&old.call("ADD", &old_pod.path()), &old.conf)
        .ok_json();
    node.sync(&first);
    node.kernel_return(&first, "net1");
    old_pod.delete();

    let add = Add::new(&node, &second, "10.66.9.7/24", "02:0b:0c:0d:0e:03");
    let pod = PodNetns::new();
    let holder = File::open(pod.path()).expect("open pod netns");
    let (code, out) = add.add_losing_netns(&pod, Step::LinkUp);
    assert_ne!(code, 0, "ADD succeeded: {out}");
    let (ns, link) = node.locate(&first).expect("first VF");
    assert_eq!(
        (ns.as_str(), link.name.as_str(), link.mac.as_str()),
        (node.netns_name(), "net1", "02:0b:0c:0d:0e:02"),
        "the rollback changed the other pod's VF"
    );

    netns_dies(&node, &second, holder, "dev0");
    add.del(&pod.path());
    old.del(&old_pod.path());
    node.assert_vf_home(&first);
    node.assert_vf_home(&second);
    node.assert_no_state();
}
