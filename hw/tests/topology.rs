//! Topology discovery, path classes and rails on fake sysfs trees of
//! real-looking GPU servers (see `tests/src/topo_layouts.rs`).

mod common;
use common::{layouts, p, Server};

use common::layouts::{eight_by_eight, uneven, write_layout};
use jobnet_hw::topology::{
    check_rails_agree, PathClass, RailError, RailMismatch, Rails, Topology, TopologyError,
};
use jobnet_hw::{PciAddr, SysfsRoot};

use PathClass::{Node as NODE, Phb as PHB, Pix as PIX, Pxb as PXB, Sys as SYS};

impl Server {
    fn rails(&self) -> Rails {
        Rails::by_pci_order(&self.topo)
    }

    fn gpu(&self, i: usize) -> PciAddr {
        self.topo.gpus[i].pci
    }

    /// The GPU x NIC matrix of path classes.
    fn matrix(&self) -> Vec<Vec<PathClass>> {
        let rails = self.rails();
        self.topo
            .gpus
            .iter()
            .map(|g| {
                rails
                    .pfs()
                    .iter()
                    .map(|n| self.topo.path_class(g.pci, *n).unwrap())
                    .collect()
            })
            .collect()
    }
}

const GPUS_8X8: [&str; 8] = [
    "0000:12:00.0",
    "0000:22:00.0",
    "0000:32:00.0",
    "0000:42:00.0",
    "0000:92:00.0",
    "0000:a2:00.0",
    "0000:b2:00.0",
    "0000:c2:00.0",
];
const NICS_8X8: [&str; 8] = [
    "0000:13:00.0",
    "0000:23:00.0",
    "0000:33:00.0",
    "0000:43:00.0",
    "0000:93:00.0",
    "0000:a3:00.0",
    "0000:b3:00.0",
    "0000:c3:00.0",
];

#[test]
fn eight_by_eight_discovery() {
    let s = Server::new(&eight_by_eight(0, 4));
    let gpus: Vec<String> = s.topo.gpus.iter().map(|g| g.pci.to_string()).collect();
    assert_eq!(gpus, GPUS_8X8);
    let nics: Vec<String> = s.rails().pfs().iter().map(|n| n.to_string()).collect();
    assert_eq!(nics, NICS_8X8);
    for (i, g) in s.topo.gpus.iter().enumerate() {
        assert_eq!(g.index, i);
        assert_eq!(g.numa_node, Some(u32::from(i >= 4)));
    }
    let nic0 = &s.topo.nics[0];
    assert_eq!(nic0.vfs.len(), 4);
    assert_eq!(nic0.vfs[0].info.pci, p("0000:13:00.2"));
    assert_eq!(nic0.vfs[3].info.pci, p("0000:13:00.5"));
    assert_eq!(nic0.rdma_name(), Some("mlx5_0"));
    assert_eq!(nic0.speed_mbps(), Some(200_000));
    assert_eq!(nic0.vfs[0].rdma[0].name.as_str(), "mlx5_8");
    assert_eq!(nic0.pf.netdevs, ["enp19s0f0np0"]);
    assert_eq!(s.topo.numa.len(), 2);
    assert_eq!(s.topo.numa[1].cpulist.as_deref(), Some("32-63,96-127"));
    // Links: GPUs gen5 x16; VFs report nothing, PFs gen4 x16.
    let g = s.topo.tree.get(s.gpu(0)).unwrap();
    assert_eq!(g.link.speed.as_deref(), Some("32.0 GT/s PCIe"));
    assert_eq!(g.link.width, Some(16));
    assert!(s
        .topo
        .tree
        .get(p("0000:13:00.2"))
        .unwrap()
        .link
        .is_unknown());
    // The switch above GPU0: root port, upstream, downstream.
    assert_eq!(
        g.ancestors,
        [p("0000:00:01.0"), p("0000:10:00.0"), p("0000:11:00.0")]
    );
}

#[test]
fn eight_by_eight_path_classes() {
    let s = Server::new(&eight_by_eight(0, 2));
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
    assert_eq!(s.matrix(), expected);
    // A VF sits where its PF sits.
    let vf = s.topo.nics[2].vfs[1].info.pci;
    assert_eq!(s.topo.path_class(s.gpu(2), vf), Some(PIX));
    assert_eq!(s.topo.path_class(s.gpu(6), vf), Some(SYS));
}

#[test]
fn uneven_discovery_and_path_classes() {
    let s = Server::new(&uneven(0, 3));
    let gpus: Vec<String> = s.topo.gpus.iter().map(|g| g.pci.to_string()).collect();
    // The BMC's VGA (ASPEED, 0a:00.0) is not a GPU; the AMD card is.
    assert_eq!(
        gpus,
        [
            "0000:03:00.0",
            "0000:07:00.0",
            "0000:08:00.0",
            "0000:41:00.0",
            "0000:81:00.0"
        ]
    );
    assert_eq!(s.topo.gpus[4].vendor, 0x1002);
    // The management NIC (no SR-IOV) is not a rail.
    let nics: Vec<String> = s.rails().pfs().iter().map(|n| n.to_string()).collect();
    assert_eq!(nics, ["0000:04:00.0", "0000:82:00.0"]);
    #[rustfmt::skip]
    let expected = vec![
        //    NIC0  NIC1
        vec![PIX,  SYS], // GPU0: same switch as NIC0
        vec![PXB,  SYS], // GPU1: behind a nested switch
        vec![PHB,  SYS], // GPU2: other root port, same host bridge
        vec![NODE, SYS], // GPU3: other host bridge, same NUMA node
        vec![SYS,  PHB], // GPU4: the other socket, with NIC1
    ];
    assert_eq!(s.matrix(), expected);
    // GPU to GPU.
    let t = &s.topo;
    assert_eq!(t.path_class(s.gpu(0), s.gpu(1)), Some(PXB));
    assert_eq!(t.path_class(s.gpu(0), s.gpu(2)), Some(PHB));
    assert_eq!(t.path_class(s.gpu(2), s.gpu(3)), Some(NODE));
    assert_eq!(t.path_class(s.gpu(3), s.gpu(4)), Some(SYS));
}

#[test]
fn rails_agree_across_generated_nodes() {
    let a = Server::new(&eight_by_eight(0, 4));
    let b = Server::new(&eight_by_eight(1, 4));
    assert_eq!(a.rails(), b.rails());
    // Different MACs/GUIDs, same rails.
    assert_ne!(a.written.nics[0].mac, b.written.nics[0].mac);
    let (sa, sb) = (a.rails().summary(&a.topo), b.rails().summary(&b.topo));
    assert_eq!(sa.rails.len(), 8);
    check_rails_agree("node-a", &sa, "node-b", &sb).unwrap();

    let u = Server::new(&uneven(0, 4));
    let su = u.rails().summary(&u.topo);
    let err = check_rails_agree("node-a", &sa, "node-u", &su).unwrap_err();
    assert_eq!(
        err,
        RailMismatch::Count {
            a_node: "node-a".into(),
            a: 8,
            b_node: "node-u".into(),
            b: 2
        }
    );
    assert_eq!(
        err.to_string(),
        "node node-a has 8 rails but node node-u has 2"
    );

    // A node whose rail 3 runs at 100G.
    let mut slow = eight_by_eight(2, 4);
    if let layouts::Slot::Switch(sw) = &mut slow.host_bridges[0].root_ports[3].slot {
        if let layouts::Slot::Nic(n) = &mut sw.ports[1].1 {
            n.rate = "100 Gb/sec (2X HDR)".into();
        }
    }
    let c = Server::new(&slow);
    let sc = c.rails().summary(&c.topo);
    let err = check_rails_agree("node-a", &sa, "node-c", &sc).unwrap_err();
    assert!(matches!(err, RailMismatch::Speed { rail: 3, .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "rail 3: node node-a runs at 200000 Mb/s but node node-c at 100000 Mb/s"
    );
}

#[test]
fn explicit_rail_lists() {
    let s = Server::new(&eight_by_eight(0, 1));
    let list = ["enp51s0f0np0", "0000:13:00.0", "23:00.0"];
    let rails = Rails::from_config(&s.topo, Some(&list[..])).unwrap();
    assert_eq!(
        rails.pfs(),
        [p("0000:33:00.0"), p("0000:13:00.0"), p("0000:23:00.0")]
    );
    assert_eq!(rails.rail_of(p("0000:13:00.0")), Some(1));
    let none: Option<&[&str]> = None;
    assert_eq!(Rails::from_config(&s.topo, none).unwrap(), s.rails());
    assert_eq!(
        Rails::from_config(&s.topo, Some(&["eth9"][..])),
        Err(RailError::UnknownNic("eth9".into()))
    );
    // A GPU is not a NIC.
    assert!(Rails::from_config(&s.topo, Some(&["0000:12:00.0"][..])).is_err());
    assert_eq!(
        Rails::from_config(&s.topo, Some(&["enp19s0f0np0", "0000:13:00.0"][..])),
        Err(RailError::Duplicate {
            entry: "0000:13:00.0".into(),
            rail: 0
        })
    );
}

#[test]
fn gpu_references() {
    let s = Server::new(&eight_by_eight(0, 1));
    let got = s
        .topo
        .resolve_gpus(&["3", "0000:92:00.0", "a2:00.0", "3"])
        .unwrap();
    assert_eq!(got, [p(GPUS_8X8[3]), p(GPUS_8X8[4]), p(GPUS_8X8[5])]);
    for bad in ["8", "0000:13:00.0", "gpu0", "", "99999"] {
        assert!(
            matches!(
                s.topo.resolve_gpus(&[bad]),
                Err(TopologyError::UnknownGpu(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn a_device_link_outside_any_pci_hierarchy_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    write_layout(tmp.path(), &uneven(0, 1)).unwrap();
    std::os::unix::fs::symlink(
        "../../../devices/virtual/0000:ee:00.0",
        tmp.path().join("bus/pci/devices/0000:ee:00.0"),
    )
    .unwrap();
    let err = Topology::discover(&SysfsRoot::new(tmp.path())).unwrap_err();
    assert!(
        matches!(err, TopologyError::BadDevicePath { pci, .. } if pci == p("0000:ee:00.0")),
        "{err}"
    );
}

#[test]
fn an_empty_tree_has_no_rails() {
    let tmp = tempfile::tempdir().unwrap();
    let topo = Topology::discover(&SysfsRoot::new(tmp.path())).unwrap();
    assert!(topo.gpus.is_empty() && topo.nics.is_empty());
    assert!(Rails::by_pci_order(&topo).is_empty());
}
