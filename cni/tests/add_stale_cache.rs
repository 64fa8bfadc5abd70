//! A retried ADD trusts its attachment cache only when the kernel agrees:
//! after the pod's netns vanished without a DEL (the kernel gave the VF
//! back to the node), an ADD for the same container and ifname attaches the
//! VF again instead of printing the old result for a device that is gone.

mod common;
mod fake_jobnetd;

use std::process::Command;

use common::ipam::{FixedIpam, FIXED_IPAM};
use common::{kernel, CniCall, Node};
use fake_jobnetd::{daemon_conf, FakeJobnetd};
use serde_json::json;

/// A netns under an exact name, so a test can make "the same" sandbox path
/// again after deleting it; deleted on drop.
struct NamedNetns {
    name: String,
    live: bool,
}

impl NamedNetns {
    fn add(name: &str) -> Self {
        let ok = Command::new("ip")
            .args(["netns", "add", name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip netns add {name}");
        Self {
            name: name.to_owned(),
            live: true,
        }
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    fn delete(&mut self) {
        let ok = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip netns del {}", self.name);
        self.live = false;
    }
}

impl Drop for NamedNetns {
    fn drop(&mut self) {
        if self.live {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name])
                .status();
        }
    }
}

const MAC: &str = "02:5e:a1:e0:00:01";

/// The pod interface is the VF, configured as the result says.
fn assert_attached(node: &Node, vf: &jobnet_tests::fabric::FabricVf, pod: &str, addr: &str) {
    let link = node.assert_vf_in(vf, pod, "net1");
    assert_eq!(link.mac, MAC);
    assert_eq!(link.mtu, 1400);
    assert!(link.up, "net1 is down");
    assert_eq!(kernel::addresses(pod, "net1"), [addr.to_owned()]);
}

#[test]
fn add_after_the_netns_vanished_attaches_the_vf_again() {
    let node = Node::small(1);
    let vf = node.vf(0);
    let ipam = FixedIpam::new(&json!({"cniVersion": "1.1.0",
        "ips": [{"address": "10.66.0.5/24"}]}));
    let name = common::unique("jnstale");
    let mut pod = NamedNetns::add(&name);
    let cid = common::unique("st");
    let call = CniCall::new("ADD", &cid, &pod.path(), "net1").cni_path(&ipam.cni_path());
    let mut conf = node.conf("1.1.0", "stale", &vf, &cid, "net1");
    conf["ipam"] = json!({"type": FIXED_IPAM});
    conf["mtu"] = json!(1400);
    conf["mac"] = json!(MAC);

    let first = node.call(&call, &conf).ok_json();
    assert_attached(&node, &vf, &name, "10.66.0.5/24");

    // The sandbox dies without a DEL: the VF comes back to the node, down,
    // named like the pod interface; then the runtime makes the sandbox
    // again at the same path and repeats the ADD.
    node.kernel_return(&vf, "net1");
    pod.delete();
    let _pod = NamedNetns::add(&name);
    let again = node.call(&call, &conf).ok_json();
    assert_attached(&node, &vf, &name, "10.66.0.5/24");
    assert_eq!(again["interfaces"], first["interfaces"]);
    assert_eq!(again["ips"], first["ips"]);

    node.call(&call.cmd("DEL"), &conf).expect_silent_success();
    node.assert_vf_home(&vf);
    node.assert_no_state();
}

#[test]
fn add_into_a_new_sandbox_path_attaches_there() {
    let node = Node::small(1);
    let vf = node.vf(0);
    let ipam = FixedIpam::new(&json!({"cniVersion": "1.1.0",
        "ips": [{"address": "10.66.1.5/24"}]}));
    let mut old = NamedNetns::add(&common::unique("jnold"));
    let cid = common::unique("sn");
    let mut conf = node.conf("1.1.0", "stale", &vf, &cid, "net1");
    conf["ipam"] = json!({"type": FIXED_IPAM});
    conf["mtu"] = json!(1400);
    conf["mac"] = json!(MAC);
    let call = CniCall::new("ADD", &cid, &old.path(), "net1").cni_path(&ipam.cni_path());
    node.call(&call, &conf).ok_json();
    node.kernel_return(&vf, "dev3");
    old.delete();

    let new = NamedNetns::add(&common::unique("jnnew"));
    let call = CniCall::new("ADD", &cid, &new.path(), "net1").cni_path(&ipam.cni_path());
    let r = node.call(&call, &conf).ok_json();
    assert_attached(&node, &vf, &new.name, "10.66.1.5/24");
    assert_eq!(r["interfaces"][0]["sandbox"], json!(new.path()));

    node.call(&call.cmd("DEL"), &conf).expect_silent_success();
    node.assert_vf_home(&vf);
    node.assert_no_state();
}

#[test]
fn add_through_jobnetd_after_the_netns_vanished_attaches_again() {
    let node = Node::small(1);
    let vf = node.vf(0);
    let daemon = FakeJobnetd::start(vf.pci, vf.pf_pci, "10.66.2.5/24");
    let mut conf = daemon_conf(&daemon, node.state_dir(), &node.sysfs_root());
    conf["mtu"] = json!(1400);
    conf["mac"] = json!(MAC);
    let name = common::unique("jnstd");
    let mut pod = NamedNetns::add(&name);
    let cid = common::unique("sd");
    let call = CniCall::new("ADD", &cid, &pod.path(), "net1");

    let first = node.call(&call, &conf);
    node.sync(&vf);
    first.ok_json();
    assert_attached(&node, &vf, &name, "10.66.2.5/24");

    node.kernel_return(&vf, "net1");
    pod.delete();
    let _pod = NamedNetns::add(&name);
    let again = node.call(&call, &conf);
    node.sync(&vf);
    again.ok_json();
    assert_attached(&node, &vf, &name, "10.66.2.5/24");

    let del = node.call(&call.cmd("DEL"), &conf);
    node.sync(&vf);
    del.expect_silent_success();
    node.assert_vf_home(&vf);
    node.assert_no_state();
}
