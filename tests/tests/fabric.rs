//! The simulated fabric against the real kernel: objects exist, the fake
//! sysfs parses back through `jobnet_hw::sriov` to the spec, VFs on one rail
//! reach each other across nodes, and teardown leaves nothing behind.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use jobnet_hw::sriov::{self, VfInfo};
use jobnet_tests::fabric::ip::{self, IpLink, Netns};
use jobnet_tests::fabric::probe::udp_echo;
use jobnet_tests::fabric::{Fabric, FabricId, FabricLayout, FabricSpec, VfId};
use jobnet_tests::harness::{
    ip_batch, links_by_name, udp_echo_within, wait_oper_up, Pod, STATE_DEADLINE,
};

/// Everything named after `id` that still exists: netns, host links, dirs, state.
fn leftovers(l: &FabricLayout) -> Vec<String> {
    let mut left: Vec<String> = ip::named_netns()
        .into_iter()
        .filter(|n| FabricId::of_netns(n).as_ref() == Some(&l.id))
        .collect();
    let prefix = format!("jf{}", l.id);
    left.extend(
        ip::links(&Netns::Host)
            .unwrap()
            .into_iter()
            .map(|k| k.ifname)
            .filter(|n| n.starts_with(&prefix)),
    );
    if l.base_dir.exists() {
        left.push(l.base_dir.display().to_string());
    }
    let state = Path::new("/run/jobnet-fabric").join(format!("{}.json", l.id));
    if state.exists() {
        left.push(state.display().to_string());
    }
    left
}

/// Waits (up to [`STATE_DEADLINE`]) for the kernel's asynchronous netns
/// cleanup, then lists leftovers.
fn leftovers_after_settling(l: &FabricLayout) -> Vec<String> {
    let deadline = Instant::now() + STATE_DEADLINE;
    loop {
        let left = leftovers(l);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn vf_info(f: &Fabric, id: VfId) -> VfInfo {
    let vf = f.vf(id).unwrap();
    sriov::resolve_vf(&f.node(id.node).unwrap().sysfs(), vf.pci).unwrap()
}

#[test]
fn kernel_objects_exist_and_are_wired_to_the_rail_bridges() {
    let spec = FabricSpec {
        nodes: 2,
        nics_per_node: 2,
        vfs_per_nic: 3,
        dpdk_vfs: 1,
        ..Default::default()
    };
    let f = Fabric::build(spec).unwrap();
    let netns = ip::named_netns();
    for n in f.nodes() {
        assert!(netns.contains(n.netns.as_ref().unwrap()));
        let here = links_by_name(&n.ip_netns());
        for pf in &n.pfs {
            let l = &here[&pf.netdev];
            assert!(l.flags.iter().any(|f| f == "UP"), "{l:?}");
            assert_eq!(l.address.as_deref(), Some(pf.mac.as_str()));
        }
        let vfs: Vec<_> = f.vfs().iter().filter(|v| v.id.node == n.index).collect();
        assert_eq!(vfs.len(), 6);
        for vf in vfs {
            match &vf.netdev {
                Some(nd) => {
                    let l = &here[nd];
                    assert!(l.flags.iter().any(|f| f == "LOWER_UP"), "{l:?}");
                }
                None => assert!(vf.is_dpdk() && vf.representor.is_none()),
            }
        }
        // Exactly PFs + netdev VFs (+ lo) were made in the node.
        assert_eq!(here.len(), 1 + 2 + 2 * 2);
    }
    for r in f.rails() {
        let sw = links_by_name(&Netns::Named(r.netns.clone()));
        let ports: Vec<&IpLink> = sw
            .values()
            .filter(|l| l.master.as_deref() == Some(r.bridge.as_str()))
            .collect();
        // One uplink per node plus 2 netdev VFs per node on this rail.
        assert_eq!(ports.len(), 2 * (1 + 2), "{ports:?}");
        for vf in f.vfs().iter().filter(|v| v.rail() == r.index) {
            if let Some(rep) = &vf.representor {
                assert_eq!(sw[rep].master.as_deref(), Some(r.bridge.as_str()));
            }
        }
    }
    let l = f.layout().clone();
    f.teardown().unwrap();
    assert_eq!(leftovers_after_settling(&l), Vec::<String>::new());
}

#[test]
fn sysfs_parses_back_to_exactly_the_spec() {
    let spec = FabricSpec {
        nodes: 2,
        nics_per_node: 2,
        vfs_per_nic: 4,
        rdma: true,
        dpdk_vfs: 1,
        ..Default::default()
    };
    let f = Fabric::build(spec.clone()).unwrap();
    for node in f.nodes() {
        let root = node.sysfs();
        let kernel = links_by_name(&node.ip_netns());
        let pfs = sriov::list_pfs(&root).unwrap();
        assert_eq!(pfs.len(), spec.nics_per_node);
        for (pf, want) in pfs.iter().zip(&node.pfs) {
            assert_eq!(pf.pci, want.pci);
            assert_eq!(pf.netdevs, vec![want.netdev.clone()]);
            assert_eq!(pf.num_vfs as usize, spec.vfs_per_nic);
            assert!(pf.total_vfs as usize >= spec.vfs_per_nic);
            assert_eq!(pf.switch_id.as_deref(), Some(want.switch_id.as_str()));
            assert_eq!(pf.rdma_devices, vec![want.rdma_device.clone().unwrap()]);
            assert_eq!(pf.numa_node, Some(want.numa_node));
            assert_eq!(sriov::pf_by_netdev(&root, &want.netdev).unwrap(), want.pci);

            let vfs = sriov::list_vfs(&root, pf.pci).unwrap();
            assert_eq!(vfs.len(), spec.vfs_per_nic);
            for (k, got) in vfs.iter().enumerate() {
                let want_vf = f
                    .vf(VfId {
                        node: node.index,
                        nic: want.nic,
                        index: k,
                    })
                    .unwrap();
                assert_eq!(got.vf_index as usize, k);
                assert_eq!(got.pci, want_vf.pci);
                assert_eq!(got.pf_pci, pf.pci);
                assert_eq!(got.pf_netdevs, vec![want.netdev.clone()]);
                assert_eq!((got.vendor, got.device), (0x15b3, 0x101e));
                assert_eq!(got.numa_node, Some(want_vf.numa_node));
                assert_eq!(got.driver.as_deref(), Some(want_vf.driver.as_str()));
                assert_eq!(got.is_dpdk(), k >= spec.vfs_per_nic - spec.dpdk_vfs);
                assert_eq!(
                    got.netdevs,
                    want_vf.netdev.clone().into_iter().collect::<Vec<_>>()
                );
                assert_eq!(got.representor, want_vf.representor);
                assert_eq!(
                    got.rdma_devices,
                    want_vf.rdma_device.clone().into_iter().collect::<Vec<_>>()
                );
                assert_eq!(sriov::resolve_vf(&root, got.pci).unwrap(), *got);
                if let Some(nd) = &want_vf.netdev {
                    // sysfs carries the real veth's MAC and ifindex.
                    let dir = root.join("class/net").join(nd);
                    let mac = std::fs::read_to_string(dir.join("address")).unwrap();
                    let ifindex = std::fs::read_to_string(dir.join("ifindex")).unwrap();
                    assert_eq!(Some(mac.trim()), kernel[nd].address.as_deref());
                    assert_eq!(ifindex.trim(), kernel[nd].ifindex.to_string());
                    assert_eq!(sriov::pci_by_netdev(&root, nd).unwrap(), got.pci);
                    let dev = want_vf.rdma_device.as_ref().unwrap();
                    let port = root.join("class/infiniband").join(dev).join("ports/1");
                    let ndev = std::fs::read_to_string(port.join("gid_attrs/ndevs/1")).unwrap();
                    assert_eq!(ndev.trim(), nd);
                    let ty = std::fs::read_to_string(port.join("gid_attrs/types/1")).unwrap();
                    assert_eq!(ty.trim(), "RoCE v2");
                    // The RDMA reader sees one active RoCE port bound to the VF netdev.
                    let rdma = jobnet_hw::rdma::devices_of_pci(&root, got.pci).unwrap();
                    assert_eq!(rdma.len(), 1);
                    assert_eq!(rdma[0].name.as_str(), dev);
                    assert!(rdma[0].is_roce());
                    let p1 = rdma[0].port(1).unwrap();
                    assert!(p1.is_active());
                    assert!(p1
                        .gids
                        .iter()
                        .any(|g| g.ndev.as_deref() == Some(nd.as_str())));
                    assert!(rdma[0].uverbs().is_some());
                }
            }
        }
        // A VF is not a PF and a PF is not a VF.
        let vf0 = f.vfs()[0].pci;
        assert!(matches!(
            sriov::pf_by_netdev(&root, f.vfs()[0].netdev.as_ref().unwrap()),
            Err(sriov::SriovError::NotPf(p)) if p == vf0
        ));
        assert!(matches!(
            sriov::resolve_vf(&root, node.pfs[0].pci),
            Err(sriov::SriovError::NotVf(_))
        ));
    }
}

#[test]
fn vfs_on_one_rail_reach_each_other_across_nodes_and_not_across_rails() {
    let spec = FabricSpec {
        nodes: 2,
        nics_per_node: 2,
        vfs_per_nic: 2,
        ..Default::default()
    };
    let f = Fabric::build(spec).unwrap();
    // Each VF goes into its own pod, as jobnet attaches them: a node netns
    // owning several addresses would answer for all of them on any port.
    let attach = |id: VfId, addr: &str| -> Pod {
        let pod = Pod::new("fabtest");
        let nd = f.vf(id).unwrap().netdev.clone().unwrap();
        let node = f.node(id.node).unwrap().ip_netns();
        ip_batch(
            &node,
            &[&format!("link set dev {nd} netns {} name net1", pod.name)],
        );
        let ns = pod.ns();
        ip_batch(
            &ns,
            &[
                &format!("addr add {addr}/24 dev net1"),
                "link set net1 up",
                "link set lo up",
            ],
        );
        // Probes are meaningful only once the link passes frames.
        wait_oper_up(&ns, &["net1"]);
        pod
    };
    let vf = |node, nic, index| VfId { node, nic, index };
    let a = attach(vf(0, 0, 1), "192.168.77.1");
    let b = attach(vf(1, 0, 0), "192.168.77.2");
    let c = attach(vf(1, 1, 1), "192.168.77.3");
    let to_b: SocketAddr = "192.168.77.2:7001".parse().unwrap();
    assert!(udp_echo_within(&a.path(), &b.path(), to_b, STATE_DEADLINE));
    let to_a: SocketAddr = "192.168.77.1:7002".parse().unwrap();
    assert!(udp_echo_within(&b.path(), &a.path(), to_a, STATE_DEADLINE));
    // C is on rail 1: nothing connects it to rail 0. Silence has no state
    // to wait for: C's link is up and the probe works (above), so a short
    // look suffices.
    let to_c: SocketAddr = "192.168.77.3:7003".parse().unwrap();
    let t = Duration::from_millis(700);
    assert!(!udp_echo(&a.path(), &c.path(), to_c, t).unwrap());
}

#[test]
fn teardown_leaves_nothing() {
    let f = Fabric::build(FabricSpec {
        nodes: 3,
        nics_per_node: 2,
        vfs_per_nic: 4,
        rdma: true,
        ..Default::default()
    })
    .unwrap();
    let l = f.layout().clone();
    assert!(!leftovers(&l).is_empty());
    f.teardown().unwrap();
    assert_eq!(leftovers_after_settling(&l), Vec::<String>::new());
}

#[test]
fn a_panicking_test_still_removes_its_fabric() {
    let (tx, rx) = std::sync::mpsc::channel();
    let r = std::thread::spawn(move || {
        let f = Fabric::build(FabricSpec::default()).unwrap();
        tx.send(f.layout().clone()).unwrap();
        panic!("test failure while the fabric is up");
    })
    .join();
    assert!(r.is_err());
    let l = rx.recv().unwrap();
    assert_eq!(leftovers_after_settling(&l), Vec::<String>::new());
}

#[test]
fn host_node_fabric_lives_in_the_host_netns() {
    let f = Fabric::build(FabricSpec {
        host_node: true,
        vfs_per_nic: 3,
        ..Default::default()
    })
    .unwrap();
    let node = f.node(0).unwrap();
    assert!(node.netns.is_none());
    let host = links_by_name(&Netns::Host);
    for vf in f.vfs() {
        assert!(host.contains_key(vf.netdev.as_ref().unwrap()));
    }
    assert!(host.contains_key(&node.pfs[0].netdev));
    let info = vf_info(&f, f.vfs()[2].id);
    assert_eq!(info.netdevs, vec![f.vfs()[2].netdev.clone().unwrap()]);
    let l = f.layout().clone();
    f.teardown().unwrap();
    // Host links are deleted synchronously, not by netns cleanup.
    assert_eq!(leftovers(&l), Vec::<String>::new());
}

#[test]
fn kernel_return_vf_brings_a_vf_back_renamed_and_sysfs_follows() {
    let mut f = Fabric::build(FabricSpec {
        vfs_per_nic: 2,
        rdma: true,
        ..Default::default()
    })
    .unwrap();
    let id = VfId {
        node: 0,
        nic: 0,
        index: 1,
    };
    let vf = f.vf(id).unwrap().clone();
    let orig = vf.netdev.clone().unwrap();
    let node_ns = f.node(0).unwrap().ip_netns();
    let pod = Pod::new("fabtest");
    // What a CNI ADD does: move the VF into the pod under the pod's ifname.
    ip_batch(
        &node_ns,
        &[&format!("link set dev {orig} netns {} name net1", pod.name)],
    );
    let loc = f.vf_location(id).unwrap().unwrap();
    assert_eq!(loc.netns, pod.ns());
    assert_eq!(loc.link.ifname, "net1");
    // Until told, the fake tree still shows the old name; sync hides it.
    assert_eq!(vf_info(&f, id).netdevs, vec![orig.clone()]);
    f.sync_vf_sysfs(id).unwrap();
    assert!(vf_info(&f, id).netdevs.is_empty());

    f.kernel_return_vf(id, "net1").unwrap();
    let back = links_by_name(&node_ns);
    assert!(!back.contains_key(&orig));
    let l = &back["net1"];
    assert!(
        !l.flags.iter().any(|f| f == "UP"),
        "returned VF must be down"
    );
    assert!(!links_by_name(&pod.ns()).contains_key("net1"));
    let info = vf_info(&f, id);
    assert_eq!(info.netdevs, vec!["net1".to_owned()]);
    let root = f.node(0).unwrap().sysfs();
    assert_eq!(sriov::pci_by_netdev(&root, "net1").unwrap(), vf.pci);
    assert!(matches!(
        sriov::pci_by_netdev(&root, &orig),
        Err(sriov::SriovError::NoSuchNetdev(_))
    ));
    let ifindex = std::fs::read_to_string(root.join("class/net/net1/ifindex")).unwrap();
    assert_eq!(ifindex.trim(), l.ifindex.to_string());
    let dev = vf.rdma_device.unwrap();
    let ndev = root
        .join("class/infiniband")
        .join(dev)
        .join("ports/1/gid_attrs/ndevs/0");
    assert_eq!(std::fs::read_to_string(ndev).unwrap().trim(), "net1");

    // Already in the node: a second return just renames (the kernel's devN).
    f.kernel_return_vf(id, "dev7").unwrap();
    assert_eq!(vf_info(&f, id).netdevs, vec!["dev7".to_owned()]);
    assert!(links_by_name(&node_ns).contains_key("dev7"));
    assert!(f.kernel_return_vf(id, "../x").is_err());
}

#[test]
fn fabrics_build_in_parallel_with_distinct_names() {
    let handles: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                Fabric::build(FabricSpec {
                    nodes: 2,
                    vfs_per_nic: 2,
                    ..Default::default()
                })
            })
        })
        .collect();
    let fabrics: Vec<Fabric> = handles
        .into_iter()
        .map(|h| h.join().unwrap().unwrap())
        .collect();
    let mut ids: Vec<String> = fabrics.iter().map(|f| f.id().to_string()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4);
    let layouts: Vec<FabricLayout> = fabrics.iter().map(|f| f.layout().clone()).collect();
    drop(fabrics);
    for l in &layouts {
        assert_eq!(leftovers_after_settling(l), Vec::<String>::new());
    }
}

#[test]
fn thirty_two_vfs_build_fast() {
    let start = Instant::now();
    let f = Fabric::build(FabricSpec {
        nodes: 2,
        nics_per_node: 2,
        vfs_per_nic: 8,
        rdma: true,
        ..Default::default()
    })
    .unwrap();
    let built = start.elapsed();
    assert_eq!(f.vfs().len(), 32);
    let start = Instant::now();
    let l = f.layout().clone();
    f.teardown().unwrap();
    let down = start.elapsed();
    eprintln!("32 VFs: build {built:?}, teardown {down:?}");
    // Generous bound for a loaded 2-core machine; typically ~0.3 s.
    assert!(built < Duration::from_secs(5), "build took {built:?}");
    assert_eq!(leftovers_after_settling(&l), Vec::<String>::new());
}

#[test]
fn a_persisted_fabric_is_found_and_removed_by_id() {
    let f = Fabric::build(FabricSpec::default()).unwrap();
    let id = f.id().clone();
    let l = f.persist().unwrap();
    // The handle is gone but the fabric stays, owned by nobody.
    assert!(ip::named_netns().contains(&l.nodes[0].netns.clone().unwrap()));
    let again = Fabric::load(&id).unwrap();
    assert_eq!(again.vfs(), l.vfs.as_slice());
    drop(again);
    assert!(ip::named_netns().contains(&l.rails[0].netns));
    let st = jobnet_tests::fabric::list()
        .into_iter()
        .find(|s| s.layout.id == id)
        .unwrap();
    assert!(st.owner.is_none());
    jobnet_tests::fabric::down(&id).unwrap();
    assert_eq!(leftovers_after_settling(&l), Vec::<String>::new());
    assert!(Fabric::load(&id).is_err());
}

/// Run only as the child of `a_crashed_process_leaves_a_fabric_down_can_remove`.
#[test]
#[ignore = "helper: aborts the process on purpose"]
fn crash_child_builds_then_aborts() {
    let f = Fabric::build(FabricSpec::default()).unwrap();
    println!("FABRIC_ID={}", f.id());
    std::process::abort();
}

#[test]
fn a_crashed_process_leaves_a_fabric_down_can_remove() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_builds_then_aborts",
            "--ignored",
            "--nocapture",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("FABRIC_ID="))
        .and_then(FabricId::parse)
        .unwrap_or_else(|| panic!("child printed no id: {stdout}"));
    let st = jobnet_tests::fabric::list()
        .into_iter()
        .find(|s| s.layout.id == id)
        .unwrap();
    // No Drop ran: everything is still there, and the owner is known dead.
    assert!(!st.owner.as_ref().unwrap().alive());
    assert!(!leftovers(&st.layout).is_empty());
    jobnet_tests::fabric::down(&id).unwrap();
    assert_eq!(leftovers_after_settling(&st.layout), Vec::<String>::new());
}
