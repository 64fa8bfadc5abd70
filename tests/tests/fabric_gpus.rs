//! Fabrics laid out as GPU servers: topology discovery over a fabric node's
//! sysfs sees the same GPUs, PCIe hierarchy, NICs, RDMA devices and path
//! classes as over the server layout written alone, while the NICs are the
//! fabric's real veth PFs and VFs (legacy and switchdev).

use jobnet_hw::topology::{PathClass, Rails, TopoView, Topology};
use jobnet_hw::{rdma, sriov, PciAddr};
use jobnet_tests::fabric::plan::GpuLayout;
use jobnet_tests::fabric::{Fabric, FabricSpec};
use jobnet_tests::harness::links_by_name;
use jobnet_tests::topo_layouts::write_layout;

use PathClass::{Node as NODE, Phb as PHB, Pix as PIX, Pxb as PXB, Sys as SYS};

/// The layout written alone into a temp dir (removed on drop), discovered.
fn server_alone(g: GpuLayout, vfs: usize) -> (tempfile::TempDir, Topology) {
    let tmp = tempfile::tempdir().unwrap();
    write_layout(tmp.path(), &g.server(0, vfs)).unwrap();
    let topo = Topology::discover(&jobnet_hw::SysfsRoot::new(tmp.path())).unwrap();
    (tmp, topo)
}

/// The GPU x NIC matrix of path classes, NICs in rail order.
fn matrix(topo: &Topology) -> Vec<Vec<PathClass>> {
    let rails = Rails::by_pci_order(topo);
    topo.gpus
        .iter()
        .map(|g| {
            rails
                .pfs()
                .iter()
                .map(|n| topo.path_class(g.pci, *n).unwrap())
                .collect()
        })
        .collect()
}

/// The view without PF netdev names (the fabric's are real veths, the
/// layout's are made up).
fn view_without_netdevs(topo: &Topology) -> TopoView {
    let mut v = TopoView::build(topo, &Rails::by_pci_order(topo));
    for n in &mut v.nics {
        n.netdevs.clear();
    }
    v
}

/// What must agree between the fabric node and the server alone, per NIC:
/// PF address, class, ids, NUMA node, PCIe link, RDMA device, rate, link
/// layer, and per VF: address, class, NUMA node, RDMA device.
fn nic_facts(topo: &Topology) -> Vec<String> {
    let mut out = Vec::new();
    for n in &topo.nics {
        let link = &topo.tree.get(n.pci()).unwrap().link;
        let port = n.rdma.first().and_then(|d| d.ports.first());
        out.push(format!(
            "PF {} class {:06x} {:04x}:{:04x} numa {:?} link {:?} x{:?} rdma {:?} rate {:?} {:?} roce {}",
            n.pci(),
            n.class,
            n.vendor,
            n.device,
            n.pf.numa_node,
            link.effective_speed(),
            link.effective_width(),
            n.rdma_name(),
            n.speed_mbps(),
            n.link_layer(),
            port.is_some_and(|p| p
                .gids
                .iter()
                .any(|g| g.kind == Some(rdma::GidType::RoceV2))),
        ));
        for vf in &n.vfs {
            let f = topo.tree.get(vf.info.pci).unwrap();
            out.push(format!(
                "  VF{} {} class {:06x} numa {:?} link unknown {} rdma {:?}",
                vf.info.vf_index,
                vf.info.pci,
                f.class,
                vf.info.numa_node,
                f.link.is_unknown(),
                vf.rdma.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            ));
        }
    }
    out
}

/// Discovery over every node of `spec`'s fabric equals discovery over the
/// server alone; returns the first node's topology.
fn same_as_server(spec: FabricSpec) -> Topology {
    let g = spec.gpus.unwrap();
    let (_tmp, alone) = server_alone(g, spec.vfs_per_nic);
    let f = Fabric::build(spec.clone()).unwrap();
    let mut first = None;
    for node in f.nodes() {
        let topo = Topology::discover(&node.sysfs()).unwrap();
        assert_eq!(matrix(&topo), matrix(&alone), "node {}", node.index);
        assert_eq!(view_without_netdevs(&topo), view_without_netdevs(&alone));
        assert_eq!(nic_facts(&topo), nic_facts(&alone), "node {}", node.index);
        assert_eq!(topo.gpus, alone.gpus);
        assert_eq!(topo.numa, alone.numa);
        let gpus: Vec<PciAddr> = topo.gpus.iter().map(|g| g.pci).collect();
        assert_eq!(node.gpus, gpus);

        // ...and the NICs are the fabric's: real netdevs, by PCI address.
        let kernel = links_by_name(&node.ip_netns());
        let root = node.sysfs();
        for (nic, pf) in topo.nics.iter().zip(&node.pfs) {
            assert_eq!(nic.pci(), pf.pci);
            assert_eq!(nic.pf.netdevs, vec![pf.netdev.clone()]);
            assert_eq!(nic.pf.switch_id.as_deref(), Some(pf.switch_id.as_str()));
            assert_eq!(nic.pf.numa_node, Some(pf.numa_node));
            assert_eq!(nic.rdma_name(), pf.rdma_device.as_deref());
            assert!(kernel.contains_key(&pf.netdev), "{}", pf.netdev);
            for (k, vf) in nic.vfs.iter().enumerate() {
                let want = f
                    .vfs()
                    .iter()
                    .find(|v| v.id.node == node.index && v.id.nic == pf.nic && v.id.index == k)
                    .unwrap();
                assert_eq!(vf.info.pci, want.pci);
                assert_eq!(vf.info.representor, want.representor);
                let nd = want.netdev.as_ref().unwrap();
                assert_eq!(vf.info.netdevs, vec![nd.clone()]);
                assert_eq!(sriov::pci_by_netdev(&root, nd).unwrap(), want.pci);
                let ifindex =
                    std::fs::read_to_string(root.join("class/net").join(nd).join("ifindex"))
                        .unwrap();
                assert_eq!(ifindex.trim(), kernel[nd].ifindex.to_string());
                let devs = rdma::devices_of_pci(&root, want.pci).unwrap();
                assert_eq!(devs[0].name.as_str(), want.rdma_device.as_deref().unwrap());
                assert!(devs[0].is_roce());
                // A VF shares its PF's system image GUID, as on real NICs.
                assert_eq!(devs[0].sys_image_guid, nic.rdma[0].sys_image_guid);
            }
        }
        first.get_or_insert(topo);
    }
    f.teardown().unwrap();
    first.unwrap()
}

#[test]
fn an_eight_by_eight_fabric_discovers_as_the_server_legacy() {
    let topo = same_as_server(FabricSpec {
        nodes: 1,
        nics_per_node: 8,
        vfs_per_nic: 2,
        rdma: true,
        gpus: Some(GpuLayout::EightByEight),
        ..Default::default()
    });
    #[rustfmt::skip]
    let expected = vec![
        //     NIC0 NIC1 NIC2 NIC3 NIC4 NIC5 NIC6 NIC7
        vec![PIX, PHB, PHB, PHB, SYS, SYS, SYS, SYS], // GPU0
        vec![PHB, PIX, PHB, PHB, SYS, SYS, SYS, SYS], // GPU1
        vec![PHB, PHB, PIX, PHB, SYS, SYS, SYS, SYS], // GPU2
        vec![PHB, PHB, PHB, PIX, SYS, SYS, SYS, SYS], // GPU3
        vec![SYS, SYS, SYS, SYS, PIX, PHB, PHB, PHB], // GPU4
        vec![SYS, SYS, SYS, SYS, PHB, PIX, PHB, PHB], // GPU5
        vec![SYS, SYS, SYS, SYS, PHB, PHB, PIX, PHB], // GPU6
        vec![SYS, SYS, SYS, SYS, PHB, PHB, PHB, PIX], // GPU7
    ];
    assert_eq!(matrix(&topo), expected);
    assert_eq!(topo.nics[5].speed_mbps(), Some(200_000));
}

#[test]
fn an_uneven_switchdev_fabric_discovers_as_the_server_on_every_node() {
    let topo = same_as_server(FabricSpec {
        nodes: 2,
        nics_per_node: 2,
        vfs_per_nic: 3,
        rdma: true,
        switchdev: true,
        gpus: Some(GpuLayout::Uneven),
        ..Default::default()
    });
    #[rustfmt::skip]
    let expected = vec![
        //   NIC0  NIC1
        vec![PIX,  SYS], // GPU0
        vec![PXB,  SYS], // GPU1
        vec![PHB,  SYS], // GPU2
        vec![NODE, SYS], // GPU3
        vec![SYS,  PHB], // GPU4
    ];
    assert_eq!(matrix(&topo), expected);
}

#[test]
fn gpu_layouts_refuse_a_nic_count_they_do_not_have() {
    let err = Fabric::build(FabricSpec {
        nics_per_node: 4,
        vfs_per_nic: 2,
        rdma: true,
        gpus: Some(GpuLayout::EightByEight),
        ..Default::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("8 NICs"), "{err}");
}
