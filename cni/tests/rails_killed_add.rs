//! DEL of a `rails: "all"` attachment whose ADD was killed between rails:
//! the first rail's cache lists the other rails only once every rail is
//! attached, so DEL must also find the later rails by their own caches, or
//! their VFs stay in the pod (and their device-info files on the node).
//! (Found by tests/tests/fault_suite.rs.)

mod common;

use std::path::{Path, PathBuf};

use common::{CniCall, Netns, Node};
use jobnet_tests::fabric::FabricSpec;
use jobnet_tests::harness::{Daemon, DEFAULT_DEVINFO_DIR};
use serde_json::{json, Value};

const POOL: &str = r#"[[pools]]
name = "rdma"
cidrs = ["198.18.0.0/16"]
subnet_prefix = { v4 = 24 }
rails = 2
isolation = { mode = "none" }
"#;

/// Where ADD writes the device-info file of rail `ifname` (every rail after
/// the first has no path from the runtime).
fn default_devinfo(network: &str, cid: &str, ifname: &str) -> PathBuf {
    Path::new(DEFAULT_DEVINFO_DIR).join(format!("{network}-{cid}-{ifname}-device-info.json"))
}

/// Rewrites the cache at `path` as it was before its ADD finished: no
/// printed result, no list of the other rails.
fn unfinish(path: &Path) {
    let mut rec: Value =
        serde_json::from_slice(&std::fs::read(path).expect("read cache")).expect("cache JSON");
    rec["result"] = Value::Null;
    rec["siblings"] = json!([]);
    std::fs::write(path, rec.to_string()).expect("write cache");
}

#[test]
fn del_after_an_add_killed_between_rails_returns_every_rail() {
    let node = Node::build(FabricSpec {
        nodes: 1,
        nics_per_node: 2,
        vfs_per_nic: 1,
        ..FabricSpec::default()
    });
    let daemon = Daemon::start("rails-kill", &node.sysfs_root(), POOL);
    let network = common::unique("railskill");
    let pod = Netns::new("jnrk");
    let cid = common::unique("rk");
    let conf = json!({
        "cniVersion": "1.1.0", "name": network, "type": "jobnet", "rails": "all",
        "daemonSocket": daemon.socket, "args": {"cni": {"job": "rk", "rank": 0}},
    });
    let call = CniCall::new("ADD", &cid, &pod.path(), "net1");
    let add = node.call(&call, &conf).ok_json();
    assert_eq!(add["interfaces"].as_array().map(Vec::len), Some(2), "{add}");
    for vf in node.vfs() {
        node.sync(&vf);
    }
    let devinfo = |ifname: &str| default_devinfo(&network, &cid, ifname);
    assert!(devinfo("net1r1").exists());

    // The kernel work of both rails is done, the caches are not final: as a
    // SIGKILL after the second rail's attach leaves them.
    unfinish(&node.cache_file(&cid, "net1"));
    unfinish(&node.cache_file(&cid, "net1r1"));

    node.call(&call.cmd("DEL"), &conf).expect_silent_success();
    for vf in node.vfs() {
        node.sync(&vf);
        node.assert_vf_home(&vf);
    }
    node.assert_no_state();
    for ifname in ["net1", "net1r1"] {
        assert!(
            !devinfo(ifname).exists(),
            "device-info file of {ifname} left"
        );
    }
}

/// A later rail whose cache cannot be read: DEL cannot restore its VF (the
/// cache was the only record of its original state), but it still removes
/// the rail's device-info file, which sits where ADD always puts it.
#[test]
fn del_with_an_unreadable_later_rail_cache_removes_its_device_info_file() {
    let node = Node::build(FabricSpec {
        nodes: 1,
        nics_per_node: 2,
        vfs_per_nic: 1,
        ..FabricSpec::default()
    });
    let daemon = Daemon::start("rails-torn", &node.sysfs_root(), POOL);
    let network = common::unique("railstorn");
    let pod = Netns::new("jnrt");
    let cid = common::unique("rt");
    let conf = json!({
        "cniVersion": "1.1.0", "name": network, "type": "jobnet", "rails": "all",
        "daemonSocket": daemon.socket, "args": {"cni": {"job": "rt", "rank": 0}},
    });
    let call = CniCall::new("ADD", &cid, &pod.path(), "net1");
    node.call(&call, &conf).ok_json();
    for vf in node.vfs() {
        node.sync(&vf);
    }
    let devinfo = |ifname: &str| default_devinfo(&network, &cid, ifname);
    assert!(devinfo("net1r1").exists());
    std::fs::write(node.cache_file(&cid, "net1r1"), b"").expect("truncate cache");

    node.call(&call.cmd("DEL"), &conf).expect_silent_success();
    for vf in node.vfs() {
        node.sync(&vf);
    }
    node.assert_vf_home(&node.vf(0));
    node.assert_no_state();
    for ifname in ["net1", "net1r1"] {
        assert!(
            !devinfo(ifname).exists(),
            "device-info file of {ifname} left"
        );
    }
}
