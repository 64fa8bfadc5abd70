//! One owner per VF after a missed DEL. Through jobnetd, its reservation is
//! the only owner: the plugin keeps no record of its own, so a VF jobnetd
//! freed and hands to another pod is attached, not refused. With delegated
//! IPAM the plugin's records heal: an owner whose netns is gone is stale and
//! taken over, and GC drops the records of attachments the runtime no
//! longer lists.

mod common;
mod fake_jobnetd;

use common::ipam::{FixedIpam, FIXED_IPAM};
use common::{kernel, CniCall, Netns, Node};
use fake_jobnetd::{daemon_conf, FakeJobnetd};
use jobnet_tests::fabric::FabricVf;
use serde_json::{json, Value};

fn owner_of(node: &Node, vf: &FabricVf) -> Option<String> {
    let body = std::fs::read(node.owner_file(vf)).ok()?;
    let v: Value = serde_json::from_slice(&body).ok()?;
    v["container_id"].as_str().map(str::to_owned)
}

#[test]
fn through_jobnetd_a_vf_freed_after_a_missed_del_is_attached_to_the_next_pod() {
    let node = Node::small(1);
    let vf = node.vf(0);
    let daemon = FakeJobnetd::start(vf.pci, vf.pf_pci, "10.70.0.5/24");
    let conf = daemon_conf(&daemon, node.state_dir(), &node.sysfs_root());
    let mut pod_a = Netns::new("jnowa");
    let cid_a = common::unique("oa");
    let call_a = CniCall::new("ADD", &cid_a, &pod_a.path(), "net1");
    let r = node.call(&call_a, &conf);
    node.sync(&vf);
    r.ok_json();
    node.assert_vf_in(&vf, &pod_a.name, "net1");

    // A's sandbox dies without a DEL; jobnetd's cleanup frees the VF and
    // its selector hands the VF to the next pod.
    let path_a = pod_a.path();
    node.kernel_return(&vf, "net1");
    pod_a.delete();
    daemon.forget(&cid_a, "net1");

    let pod_b = Netns::new("jnowb");
    let cid_b = common::unique("ob");
    let call_b = CniCall::new("ADD", &cid_b, &pod_b.path(), "net1");
    let r = node.call(&call_b, &conf);
    node.sync(&vf);
    r.ok_json();
    node.assert_vf_in(&vf, &pod_b.name, "net1");
    assert!(
        !node.owner_file(&vf).exists(),
        "the plugin keeps an owner record of its own next to jobnetd's: {:?}",
        owner_of(&node, &vf)
    );

    // A's DEL arrives late: B keeps its VF.
    let r = node.call(&call_a.cmd("DEL").netns(Some(&path_a)), &conf);
    node.sync(&vf);
    r.expect_silent_success();
    node.assert_vf_in(&vf, &pod_b.name, "net1");

    let r = node.call(&call_b.cmd("DEL"), &conf);
    node.sync(&vf);
    r.expect_silent_success();
    node.assert_vf_home(&vf);
    node.assert_no_state();
}

/// ADD of `cid` with delegated IPAM on `vf` in `pod`.
fn delegated(
    node: &Node,
    vf: &FabricVf,
    ipam: &FixedIpam,
    pod: &Netns,
    cid: &str,
) -> (CniCall, Value) {
    let call = CniCall::new("ADD", cid, &pod.path(), "net1").cni_path(&ipam.cni_path());
    let mut conf = node.conf("1.1.0", "owners", vf, cid, "net1");
    conf["ipam"] = json!({"type": FIXED_IPAM});
    conf["mtu"] = json!(1400);
    (call, conf)
}

#[test]
fn with_delegated_ipam_an_owner_whose_netns_is_gone_is_taken_over() {
    let node = Node::small(1);
    let vf = node.vf(0);
    let ipam =
        FixedIpam::new(&json!({"cniVersion": "1.1.0", "ips": [{"address": "10.71.0.5/24"}]}));
    let mut pod_a = Netns::new("jnsta");
    let cid_a = common::unique("sa");
    let (call_a, conf_a) = delegated(&node, &vf, &ipam, &pod_a, &cid_a);
    node.call(&call_a, &conf_a).ok_json();

    // A live owner is refused.
    let pod_b = Netns::new("jnstb");
    let cid_b = common::unique("sb");
    let (call_b, conf_b) = delegated(&node, &vf, &ipam, &pod_b, &cid_b);
    node.call(&call_b, &conf_b).expect_error(101);
    node.assert_vf_in(&vf, &pod_a.name, "net1");

    // A's sandbox dies without a DEL: its record is stale.
    let path_a = pod_a.path();
    node.kernel_return(&vf, "net1");
    pod_a.delete();
    node.call(&call_b, &conf_b).ok_json();
    node.assert_vf_in(&vf, &pod_b.name, "net1");
    assert_eq!(owner_of(&node, &vf).as_deref(), Some(cid_b.as_str()));
    assert!(
        !node.cache_file(&cid_a, "net1").exists(),
        "A's cache outlived the takeover"
    );

    // A's DEL arrives late: B keeps its VF and its record.
    node.call(&call_a.cmd("DEL").netns(Some(&path_a)), &conf_a)
        .expect_silent_success();
    node.assert_vf_in(&vf, &pod_b.name, "net1");
    assert_eq!(owner_of(&node, &vf).as_deref(), Some(cid_b.as_str()));

    node.call(&call_b.cmd("DEL"), &conf_b)
        .expect_silent_success();
    node.assert_vf_home(&vf);
    node.assert_no_state();
}

#[test]
fn gc_drops_the_records_of_attachments_the_runtime_no_longer_lists() {
    let node = Node::small(2);
    let (vf_a, vf_c) = (node.vf(0), node.vf(1));
    let ipam =
        FixedIpam::new(&json!({"cniVersion": "1.1.0", "ips": [{"address": "10.72.0.5/24"}]}));
    let pod_a = Netns::new("jngca");
    let pod_c = Netns::new("jngcc");
    let (cid_a, cid_c) = (common::unique("ga"), common::unique("gc"));
    let (call_a, conf_a) = delegated(&node, &vf_a, &ipam, &pod_a, &cid_a);
    let (call_c, conf_c) = delegated(&node, &vf_c, &ipam, &pod_c, &cid_c);
    node.call(&call_a, &conf_a).ok_json();
    let result_c = node.call(&call_c, &conf_c).ok_json();

    let mut gc = conf_c.clone();
    if let Some(o) = gc.as_object_mut() {
        o.remove("deviceID");
    }
    gc["cni.dev/valid-attachments"] = json!([{"containerID": cid_c, "ifname": "net1"}]);
    let gc_call = CniCall::new("GC", "unused", "/unused", "net1").cni_path(&ipam.cni_path());
    node.call(&gc_call, &gc).expect_silent_success();
    node.sync(&vf_a);

    // A: restored, no record, no cache.
    node.assert_vf_home(&vf_a);
    assert!(
        !node.cache_file(&cid_a, "net1").exists(),
        "A's cache survived GC"
    );
    assert_eq!(
        kernel::links(&pod_a.name).len(),
        1,
        "A's pod still has the VF"
    );
    // C: untouched.
    node.assert_vf_in(&vf_c, &pod_c.name, "net1");
    assert_eq!(owner_of(&node, &vf_c).as_deref(), Some(cid_c.as_str()));
    let mut check = conf_c.clone();
    check["prevResult"] = result_c;
    node.call(&call_c.cmd("CHECK"), &check)
        .expect_silent_success();

    node.call(&call_c.cmd("DEL"), &conf_c)
        .expect_silent_success();
    node.assert_vf_home(&vf_c);
    node.assert_no_state();
}

#[test]
fn gc_leaves_other_networks_alone() {
    let node = Node::small(2);
    let (vf_a, vf_b) = (node.vf(0), node.vf(1));
    let ipam =
        FixedIpam::new(&json!({"cniVersion": "1.1.0", "ips": [{"address": "10.74.0.5/24"}]}));
    let pod_a = Netns::new("jngoa");
    let pod_b = Netns::new("jngob");
    let (cid_a, cid_b) = (common::unique("gx"), common::unique("gy"));
    let (call_a, conf_a) = delegated(&node, &vf_a, &ipam, &pod_a, &cid_a);
    let (call_b, mut conf_b) = delegated(&node, &vf_b, &ipam, &pod_b, &cid_b);
    conf_b["name"] = json!("owners-other");
    node.call(&call_a, &conf_a).ok_json();
    node.call(&call_b, &conf_b).ok_json();

    // GC of network "owners" with nothing valid: only A goes.
    let mut gc = conf_a.clone();
    gc["cni.dev/valid-attachments"] = json!([]);
    let gc_call = CniCall::new("GC", "unused", "/unused", "net1").cni_path(&ipam.cni_path());
    node.call(&gc_call, &gc).expect_silent_success();
    node.sync(&vf_a);
    node.assert_vf_home(&vf_a);
    node.assert_vf_in(&vf_b, &pod_b.name, "net1");
    assert_eq!(owner_of(&node, &vf_b).as_deref(), Some(cid_b.as_str()));
    assert!(node.cache_file(&cid_b, "net1").exists());

    node.call(&call_b.cmd("DEL"), &conf_b)
        .expect_silent_success();
    node.assert_vf_home(&vf_b);
    node.assert_no_state();
}
