//! A DPDK VF (bound to vfio-pci, no netdev): ADD does no netdev work but
//! still runs IPAM, claims the VF, writes the result and the device-info
//! file; DEL cleans all of it up.

mod common;

use common::ipam::{FixedIpam, FIXED_IPAM};
use common::kernel;
use common::{CniCall, Netns, Node};
use jobnet_tests::fabric::FabricSpec;
use serde_json::{json, Value};

#[test]
fn dpdk_vf_attach_and_detach() {
    let node = Node::build(FabricSpec {
        nodes: 1,
        nics_per_node: 1,
        vfs_per_nic: 2,
        dpdk_vfs: 1,
        ..FabricSpec::default()
    });
    let dpdk = node
        .vfs()
        .into_iter()
        .find(|v| v.is_dpdk())
        .expect("a DPDK VF");
    assert!(dpdk.netdev.is_none());
    let netdev_vf = node.vf(0);
    let node_links = kernel::links(node.netns_name());
    let pod = Netns::new("jndpdk");
    let ipam = FixedIpam::new(&json!({"cniVersion": "1.1.0",
        "ips": [{"address": "10.68.0.5/24", "gateway": "10.68.0.1"}]}));
    let cid = common::unique("dp");
    let call = CniCall::new("ADD", &cid, &pod.path(), "net1").cni_path(&ipam.cni_path());
    let mut conf = node.conf("1.1.0", "dpdk", &dpdk, &cid, "net1");
    conf["ipam"] = json!({"type": FIXED_IPAM});

    let result = node.call(&call, &conf).ok_json();
    assert_eq!(
        result,
        json!({"cniVersion": "1.1.0",
               "interfaces": [{"name": "net1", "sandbox": pod.path(),
                               "pciID": dpdk.pci.to_string()}],
               "ips": [{"interface": 0, "address": "10.68.0.5/24", "gateway": "10.68.0.1"}]})
    );
    // No netdev work: the pod got nothing, the node lost nothing.
    assert_eq!(kernel::links(&pod.name).len(), 1);
    assert_eq!(kernel::links(node.netns_name()), node_links);
    let devinfo: Value = serde_json::from_str(
        &std::fs::read_to_string(node.devinfo_path(&cid, "net1")).expect("device-info"),
    )
    .expect("device-info JSON");
    assert_eq!(devinfo["type"], "pci");
    assert_eq!(devinfo["pci"]["pci-address"], dpdk.pci.to_string());
    assert_eq!(devinfo["pci"]["pf-pci-address"], dpdk.pf_pci.to_string());
    assert!(node.owner_file(&dpdk).exists(), "DPDK VF not claimed");

    // Claimed: another pod cannot have it.
    let other =
        CniCall::new("ADD", &common::unique("dp"), &pod.path(), "net2").cni_path(&ipam.cni_path());
    node.call(&other, &conf).expect_error(101);

    let mut with_prev = conf.clone();
    with_prev["prevResult"] = result.clone();
    node.call(&call.cmd("CHECK"), &with_prev)
        .expect_silent_success();

    node.call(&call.cmd("DEL"), &with_prev)
        .expect_silent_success();
    node.assert_no_state();
    assert!(!node.devinfo_path(&cid, "net1").exists());
    assert!(ipam.calls().contains(&format!("DEL {cid}")));
    assert_eq!(kernel::links(node.netns_name()), node_links);
    node.assert_vf_home(&netdev_vf);
}
