//! The switchdev flavour of the simulated fabric: representors in the node
//! netns and on no bridge, sysfs naming them as mlx5 does, PFs with underlay
//! addresses that reach each other over the rail, and VFs that reach nothing
//! until their representors are bridged (here by hand, over a VXLAN tunnel).

use std::net::SocketAddr;
use std::time::Duration;

use jobnet_hw::sriov;
use jobnet_tests::fabric::ip::{self, Netns};
use jobnet_tests::fabric::plan::{underlay_addr, UNDERLAY_MTU};
use jobnet_tests::fabric::probe::udp_echo;
use jobnet_tests::fabric::{Fabric, FabricId, FabricSpec, VfId};
use jobnet_tests::harness::{
    ip_batch, ip_json, link_details, links_by_name, udp_echo_within, wait_oper_up, Pod,
    STATE_DEADLINE,
};

/// IPv4 addresses (with prefix) on `dev`.
fn ipv4_addrs(ns: &Netns, dev: &str) -> Vec<String> {
    ip_json(ns, &["-4", "addr", "show", "dev", dev])[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

fn spec() -> FabricSpec {
    FabricSpec {
        nodes: 2,
        nics_per_node: 2,
        vfs_per_nic: 3,
        dpdk_vfs: 1,
        switchdev: true,
        ..Default::default()
    }
}

#[test]
fn representors_live_unbridged_in_the_node_and_sysfs_names_them() {
    let f = Fabric::build(spec()).unwrap();
    for n in f.nodes() {
        let ns = n.ip_netns();
        let here = links_by_name(&ns);
        for pf in &n.pfs {
            let want = underlay_addr(pf.nic, n.index);
            assert_eq!(pf.underlay, Some(want));
            assert_eq!(ipv4_addrs(&ns, &pf.netdev), [format!("{want}/24")]);
            assert_eq!(here[&pf.netdev].mtu, Some(UNDERLAY_MTU));
        }
        for vf in f.vfs().iter().filter(|v| v.id.node == n.index) {
            let info = sriov::resolve_vf(&n.sysfs(), vf.pci).unwrap();
            assert_eq!(info.representor, vf.representor, "{}", vf.id);
            assert_eq!(info.pf_netdevs, vec![vf.pf_netdev.clone()], "{}", vf.id);
            let Some(rep) = &vf.representor else {
                assert!(vf.is_dpdk());
                continue;
            };
            let l = &here[rep];
            assert!(l.flags.iter().any(|f| f == "UP"), "{l:?}");
            assert_eq!(l.master, None, "{l:?}");
            // The representor is the VF netdev's veth peer, in the same netns.
            let vf_link = link_details(&ns, vf.netdev.as_ref().unwrap());
            assert_eq!(vf_link["link"].as_str(), Some(rep.as_str()));
        }
        // lo + 2 PFs + 2 netdev VFs per NIC, each with its representor.
        assert_eq!(here.len(), 1 + 2 + 2 * 2 * 2);
    }
    for r in f.rails() {
        let rail = Netns::Named(r.netns.clone());
        let sw = links_by_name(&rail);
        let ports: Vec<&str> = sw
            .values()
            .filter(|l| l.master.as_deref() == Some(r.bridge.as_str()))
            .map(|l| l.ifname.as_str())
            .collect();
        // Only the two nodes' uplinks: no representor is on a rail.
        assert_eq!(ports.len(), 2, "{ports:?}");
        assert_eq!(
            link_details(&rail, &r.bridge)["linkinfo"]["info_data"]["mcast_snooping"],
            0
        );
    }
    // The underlay of each rail connects the nodes' PFs, and only on that rail.
    for n in f.nodes() {
        let pfs: Vec<&str> = n.pfs.iter().map(|p| p.netdev.as_str()).collect();
        wait_oper_up(&n.ip_netns(), &pfs);
    }
    let n0 = f.node(0).unwrap().netns_path();
    let n1 = f.node(1).unwrap().netns_path();
    for rail in 0..2 {
        let to: SocketAddr = (underlay_addr(rail, 1), 7100 + rail as u16).into();
        assert!(udp_echo_within(&n0, &n1, to, STATE_DEADLINE), "rail {rail}");
    }
    let l = f.layout().clone();
    f.teardown().unwrap();
    assert!(!ip::named_netns()
        .iter()
        .any(|n| FabricId::of_netns(n).as_ref() == Some(&l.id)));
}

#[test]
fn vfs_reach_nothing_until_their_representors_are_bridged_over_vxlan() {
    let f = Fabric::build(FabricSpec {
        nodes: 2,
        nics_per_node: 1,
        vfs_per_nic: 2,
        switchdev: true,
        ..Default::default()
    })
    .unwrap();
    let attach = |id: VfId, addr: &str| -> Pod {
        let pod = Pod::new("fabsd");
        let nd = f.vf(id).unwrap().netdev.clone().unwrap();
        let node = f.node(id.node).unwrap().ip_netns();
        ip_batch(
            &node,
            &[&format!("link set dev {nd} netns {} name net1", pod.name)],
        );
        ip_batch(
            &pod.ns(),
            &[
                &format!("addr add {addr}/24 dev net1"),
                "link set net1 up",
                "link set lo up",
            ],
        );
        // Probes are meaningful only once the link passes frames.
        wait_oper_up(&pod.ns(), &["net1"]);
        pod
    };
    let vf = |node, index| VfId {
        node,
        nic: 0,
        index,
    };
    let a = attach(vf(0, 0), "198.18.250.1");
    let b = attach(vf(1, 0), "198.18.250.2");
    let to_b: SocketAddr = "198.18.250.2:7201".parse().unwrap();
    // Silence has no state to wait for: both links are up, so a short look
    // suffices (the same probe succeeds below once the path exists).
    let short = Duration::from_millis(700);
    assert!(!udp_echo(&a.path(), &b.path(), to_b, short).unwrap());

    // What jobnet's vxlan isolation does, by hand: one bridge + VXLAN per node.
    for n in 0..2 {
        let node = f.node(n).unwrap();
        let rep = f.vf(vf(n, 0)).unwrap().representor.clone().unwrap();
        ip_batch(
            &node.ip_netns(),
            &[
                "link add jftbr type bridge",
                &format!(
                    "link add jftvx type vxlan id 4242 group 239.192.16.146 dev {} dstport 4789",
                    node.pfs[0].netdev
                ),
                "link set jftvx master jftbr up",
                &format!("link set {rep} master jftbr up"),
                "link set jftbr up",
            ],
        );
        // A VXLAN link has no carrier to report (its state stays UNKNOWN);
        // the bridge is up once a port forwards.
        wait_oper_up(&node.ip_netns(), &[rep.as_str(), "jftbr"]);
    }
    assert!(udp_echo_within(&a.path(), &b.path(), to_b, STATE_DEADLINE));
    let to_a: SocketAddr = "198.18.250.1:7202".parse().unwrap();
    assert!(udp_echo_within(&b.path(), &a.path(), to_a, STATE_DEADLINE));
    // The other VF of node 1, unbridged, still reaches nothing.
    let c = attach(vf(1, 1), "198.18.250.3");
    let to_c: SocketAddr = "198.18.250.3:7203".parse().unwrap();
    assert!(!udp_echo(&a.path(), &c.path(), to_c, short).unwrap());
    // Veth VFs die with their pod netns: delete the pods before the fabric.
    drop((a, b, c));
}
