//! ADD, CHECK and DEL of one VF on a simulated fabric node, compared with
//! what the kernel shows in the pod and in the node.

mod common;

use common::ipam::{FixedIpam, FIXED_IPAM};
use common::kernel;
use common::{CniCall, Netns, Node};
use serde_json::{json, Value};

/// The addresses and routes the IPAM plugin hands out in these tests.
fn ipam_result() -> Value {
    json!({"cniVersion": "1.1.0",
           "ips": [{"address": "10.60.0.5/24", "gateway": "10.60.0.1"},
                   {"address": "fd00:60::5/64"}],
           "routes": [{"dst": "10.61.0.0/16", "gw": "10.60.0.1"},
                      {"dst": "0.0.0.0/0", "gw": "10.60.0.1"},
                      {"dst": "fd00:61::/64", "gw": "fd00:60::1"}]})
}

fn with_ipam(mut conf: Value) -> Value {
    conf["ipam"] = json!({"type": FIXED_IPAM});
    conf
}

fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}

/// Addresses of the result, as `address/prefix`, sorted.
fn result_addresses(result: &Value) -> Vec<String> {
    let mut v: Vec<String> = result["ips"]
        .as_array()
        .expect("ips")
        .iter()
        .map(|ip| ip["address"].as_str().expect("address").to_owned())
        .collect();
    v.sort();
    v
}

/// Routes of the result as (dst, gw), sorted.
fn result_routes(result: &Value) -> Vec<kernel::RouteView> {
    let mut v: Vec<kernel::RouteView> = result["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .map(|r| {
            (
                r["dst"].as_str().expect("dst").to_owned(),
                r["gw"].as_str().map(str::to_owned),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn attach_check_detach() {
    let node = Node::small(2);
    let vf = node.vf(0);
    let other = node.vf(1);
    let pod = Netns::new("jnlc");
    let ipam = FixedIpam::new(&ipam_result());
    let cid = common::unique("lc");
    let call = CniCall::new("ADD", &cid, &pod.path(), "net1").cni_path(&ipam.cni_path());
    let conf = with_ipam(node.conf("1.1.0", "lifecycle", &vf, &cid, "net1"));

    let result = node.call(&call, &conf).ok_json();

    // The VF left the node and is the pod's net1.
    let link = node.assert_vf_in(&vf, &pod.name, "net1");
    assert!(link.up, "net1 is down in the pod");
    // The result describes what the kernel shows.
    assert_eq!(result["cniVersion"], "1.1.0");
    assert_eq!(
        result["interfaces"],
        json!([{"name": "net1", "sandbox": pod.path(), "mac": link.mac,
                "mtu": link.mtu, "pciID": vf.pci.to_string()}])
    );
    assert_eq!(link.mac, node.original(&vf).mac, "no config MAC: kept");
    for ip in result["ips"].as_array().expect("ips") {
        assert_eq!(ip["interface"], 0, "{ip}");
    }
    assert_eq!(
        result_addresses(&result),
        kernel::addresses(&pod.name, "net1")
    );
    assert_eq!(result_addresses(&result), ["10.60.0.5/24", "fd00:60::5/64"]);
    assert_eq!(result_routes(&result), kernel::routes(&pod.name, "net1"));
    assert_eq!(result_routes(&result).len(), 3);
    // The other VF is untouched.
    assert_eq!(&node.snapshot(&other), node.original(&other));

    // Device info for Multus.
    let devinfo_path = node.devinfo_path(&cid, "net1");
    let devinfo: Value =
        serde_json::from_str(&std::fs::read_to_string(&devinfo_path).expect("device-info file"))
            .expect("device-info JSON");
    assert_eq!(devinfo["type"], "pci");
    assert_eq!(devinfo["version"], "1.1.0");
    assert_eq!(devinfo["pci"]["pci-address"], vf.pci.to_string());
    assert_eq!(devinfo["pci"]["pf-pci-address"], vf.pf_pci.to_string());
    assert!(node.owner_file(&vf).exists());
    assert!(node.cache_file(&cid, "net1").exists());

    // CHECK: fine as attached.
    let check = call.cmd("CHECK");
    let check_conf = with_prev(&conf, &result);
    node.call(&check, &check_conf).expect_silent_success();

    // The config sets no MTU: a later plugin (tuning) may set one, and
    // CHECK leaves it to that plugin (tests/chain_check.rs covers both).
    kernel::ip(&pod.name, &["link", "set", "dev", "net1", "mtu", "1280"]);
    node.call(&check, &check_conf).expect_silent_success();
    kernel::ip(
        &pod.name,
        &["link", "set", "dev", "net1", "mtu", &link.mtu.to_string()],
    );
    node.call(&check, &check_conf).expect_silent_success();

    // CHECK notices a removed address.
    kernel::ip(&pod.name, &["addr", "del", "fd00:60::5/64", "dev", "net1"]);
    let err = node.call(&check, &check_conf).expect_error(106);
    let msg = err["msg"].as_str().expect("msg");
    assert!(
        msg.contains("fd00:60::5/64") && msg.contains("missing"),
        "{msg}"
    );

    // CHECK for an attachment this node never made: unknown container (3).
    let unknown =
        CniCall::new("CHECK", "never-added", &pod.path(), "net1").cni_path(&ipam.cni_path());
    node.call(&unknown, &check_conf).expect_error(3);

    // DEL: everything back.
    node.call(&call.cmd("DEL"), &check_conf)
        .expect_silent_success();
    node.assert_vf_home(&vf);
    assert_eq!(&node.snapshot(&other), node.original(&other));
    node.assert_no_state();
    assert!(!devinfo_path.exists(), "device-info file left behind");
    assert_eq!(
        kernel::links(&pod.name)
            .iter()
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>(),
        ["lo"]
    );
    assert_eq!(
        ipam.calls(),
        [
            format!("ADD {cid}"),
            format!("CHECK {cid}"),
            format!("CHECK {cid}"),
            format!("CHECK {cid}"),
            format!("DEL {cid}")
        ]
    );
}

/// The issue asks CHECK to verify routes as well as addresses.
#[test]

fn check_notices_a_removed_route() {
    let node = Node::small(1);
    let vf = node.vf(0);
    let pod = Netns::new("jnlc");
    let ipam = FixedIpam::new(&ipam_result());
    let cid = common::unique("lr");
    let call = CniCall::new("ADD", &cid, &pod.path(), "net1").cni_path(&ipam.cni_path());
    let conf = with_ipam(node.conf("1.1.0", "lifecycle", &vf, &cid, "net1"));
    let result = node.call(&call, &conf).ok_json();
    let check_conf = with_prev(&conf, &result);
    node.call(&call.cmd("CHECK"), &check_conf)
        .expect_silent_success();
    kernel::ip(&pod.name, &["route", "del", "10.61.0.0/16", "dev", "net1"]);
    let checked = node.call(&call.cmd("CHECK"), &check_conf);
    node.call(&call.cmd("DEL"), &check_conf)
        .expect_silent_success();
    node.assert_vf_home(&vf);
    node.assert_no_state();
    let err = checked.expect_error(106);
    let msg = err["msg"].as_str().expect("msg");
    assert!(msg.contains("10.61.0.0/16"), "{msg}");
}

#[test]
fn config_mac_and_mtu_are_applied_and_reported() {
    let node = Node::small(1);
    let vf = node.vf(0);
    let pod = Netns::new("jnlc");
    let ipam = FixedIpam::new(&ipam_result());
    let cid = common::unique("mm");
    let call = CniCall::new("ADD", &cid, &pod.path(), "eth1").cni_path(&ipam.cni_path());
    let mut conf = with_ipam(node.conf("1.1.0", "macmtu", &vf, &cid, "eth1"));
    conf["mac"] = json!("02:5a:00:00:00:42");
    conf["mtu"] = json!(9000);
    assert_ne!(node.original(&vf).mac, "02:5a:00:00:00:42");
    assert_ne!(node.original(&vf).mtu, 9000);

    let result = node.call(&call, &conf).ok_json();
    let link = node.assert_vf_in(&vf, &pod.name, "eth1");
    assert_eq!(link.mac, "02:5a:00:00:00:42");
    assert_eq!(link.mtu, 9000);
    assert_eq!(result["interfaces"][0]["mac"], "02:5a:00:00:00:42");
    assert_eq!(result["interfaces"][0]["mtu"], 9000);
    assert_eq!(result["interfaces"][0]["name"], "eth1");
    node.call(&call.cmd("CHECK"), &with_prev(&conf, &result))
        .expect_silent_success();

    node.call(&call.cmd("DEL"), &conf).expect_silent_success();
    // Original MAC and MTU are back.
    node.assert_vf_home(&vf);
    node.assert_no_state();
}
