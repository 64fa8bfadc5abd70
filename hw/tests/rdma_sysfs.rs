//! RDMA discovery against fake sysfs trees laid out as the kernel does:
//! PCI VF with and without RDMA, a sub-function on the auxiliary bus,
//! InfiniBand and RoCE, several ports, GID tables with v1/v2 and empty
//! entries, software devices, and files with garbage in them.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use jobnet_hw::rdma::{
    self, CharDevKind, CharDevice, GidType, Guid, LinkLayer, NodeType, PhysState, PortState,
    RdmaParent, RdmaSysfsError,
};
use jobnet_hw::{PciAddr, SysfsRoot};

const ZERO_GID: &str = "0000:0000:0000:0000:0000:0000:0000:0000";

/// A fake sysfs tree in a temp dir (removed on drop).
struct Tree {
    dir: tempfile::TempDir,
}

/// One port of a fake RDMA device.
struct PortSpec<'a> {
    state: &'a str,
    phys: &'a str,
    rate: Option<&'a str>,
    link_layer: &'a str,
    /// (index, gid, type file, ndev file); `None` files are absent.
    gids: &'a [(u32, &'a str, Option<&'a str>, Option<&'a str>)],
}

impl Tree {
    fn new() -> Self {
        let t = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        for d in [
            "devices/pci0000:00",
            "devices/virtual/infiniband",
            "bus/pci/devices",
            "bus/auxiliary/devices",
            "class/infiniband",
            "class/infiniband_verbs",
        ] {
            fs::create_dir_all(t.abs(d)).unwrap();
        }
        t
    }

    fn root(&self) -> SysfsRoot {
        SysfsRoot::new(self.dir.path())
    }

    fn abs(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: impl AsRef<Path>, content: &str) {
        let p = self.abs(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, format!("{content}\n")).unwrap();
    }

    fn link(&self, rel: impl AsRef<Path>, target: impl AsRef<Path>) {
        let p = self.abs(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        symlink(target, p).unwrap();
    }

    /// A PCI function under the host bridge, linked from `bus/pci/devices`.
    fn pci(&self, addr: &str) -> PathBuf {
        let rel = PathBuf::from("devices/pci0000:00").join(addr);
        fs::create_dir_all(self.abs(&rel)).unwrap();
        self.write(rel.join("vendor"), "0x15b3");
        self.link(
            format!("bus/pci/devices/{addr}"),
            format!("../../../devices/pci0000:00/{addr}"),
        );
        rel
    }

    /// An auxiliary device of PCI function `pci_rel`, linked from the bus.
    fn aux(&self, pci_rel: &Path, name: &str) -> PathBuf {
        let rel = pci_rel.join(name);
        fs::create_dir_all(self.abs(&rel)).unwrap();
        self.link(
            format!("bus/auxiliary/devices/{name}"),
            Path::new("../../..").join(&rel),
        );
        rel
    }

    /// `<parent>/infiniband/<name>` with attributes, ports, `device` and
    /// `class/infiniband/<name>` links.
    fn rdma(&self, parent_rel: &Path, name: &str, guid: &str, ports: &[PortSpec<'_>]) {
        let dev = parent_rel.join("infiniband").join(name);
        self.write(dev.join("node_guid"), guid);
        self.write(dev.join("sys_image_guid"), guid);
        self.write(dev.join("node_type"), "1: CA");
        self.write(dev.join("fw_ver"), "22.36.1010");
        for (i, p) in ports.iter().enumerate() {
            let port = dev.join("ports").join((i + 1).to_string());
            self.write(port.join("state"), p.state);
            self.write(port.join("phys_state"), p.phys);
            if let Some(r) = p.rate {
                self.write(port.join("rate"), r);
            }
            self.write(port.join("link_layer"), p.link_layer);
            fs::create_dir_all(self.abs(port.join("gids"))).unwrap();
            for (idx, gid, ty, ndev) in p.gids {
                self.write(port.join("gids").join(idx.to_string()), gid);
                if let Some(ty) = ty {
                    self.write(port.join("gid_attrs/types").join(idx.to_string()), ty);
                }
                if let Some(nd) = ndev {
                    self.write(port.join("gid_attrs/ndevs").join(idx.to_string()), nd);
                }
            }
        }
        let parent_name = parent_rel.file_name().unwrap();
        self.link(dev.join("device"), Path::new("../../..").join(parent_name));
        self.link(
            format!("class/infiniband/{name}"),
            Path::new("../..").join(&dev),
        );
    }

    /// `<parent>/infiniband_verbs/<cdev>/ibdev`.
    fn uverbs(&self, parent_rel: &Path, cdev: &str, ibdev: &str) {
        let rel = parent_rel.join("infiniband_verbs").join(cdev);
        self.write(rel.join("ibdev"), ibdev);
        self.write(rel.join("dev"), "231:192");
        self.link(
            format!("class/infiniband_verbs/{cdev}"),
            Path::new("../..").join(&rel),
        );
    }
}

fn pci(s: &str) -> PciAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A RoCE VF port: link-local v1/v2, IPv4 v1/v2, IPv6 v2, empty entries.
const ROCE_GIDS: &[(u32, &str, Option<&str>, Option<&str>)] = &[
    (
        0,
        "fe80:0000:0000:0000:0202:c9ff:fe00:0001",
        Some("IB/RoCE v1"),
        Some("ens1f0v0"),
    ),
    (
        1,
        "fe80:0000:0000:0000:0202:c9ff:fe00:0001",
        Some("RoCE v2"),
        Some("ens1f0v0"),
    ),
    (
        2,
        "0000:0000:0000:0000:0000:ffff:0a00:0001",
        Some("IB/RoCE v1"),
        Some("ens1f0v0"),
    ),
    (
        3,
        "0000:0000:0000:0000:0000:ffff:0a00:0001",
        Some("RoCE v2"),
        Some("ens1f0v0"),
    ),
    // Unpopulated: the kernel shows zeros and refuses to read the attrs.
    (4, ZERO_GID, None, None),
    (5, ZERO_GID, None, None),
    (
        10,
        "fd00:0000:0000:0000:0000:0000:0000:0005",
        Some("RoCE v2"),
        Some("ens1f0v0"),
    ),
];

fn roce_port<'a>() -> PortSpec<'a> {
    PortSpec {
        state: "4: ACTIVE",
        phys: "5: LinkUp",
        rate: Some("100 Gb/sec (2X HDR)"),
        link_layer: "Ethernet",
        gids: ROCE_GIDS,
    }
}

#[test]
fn pci_vf_with_roce_device() {
    let t = Tree::new();
    let vf = t.pci("0000:3b:00.2");
    t.rdma(&vf, "mlx5_3", "0202:c9ff:fe00:0001", &[roce_port()]);
    t.uverbs(&vf, "uverbs3", "mlx5_3");
    // Another function's char device must not be attributed to mlx5_3.
    let other = t.pci("0000:3b:00.3");
    t.uverbs(&other, "uverbs4", "mlx5_4");
    // Nor one in the same dir that belongs to another device.
    t.uverbs(&vf, "uverbs9", "mlx5_9");

    let devs = rdma::devices_of_pci(&t.root(), pci("0000:3b:00.2")).unwrap();
    assert_eq!(devs.len(), 1);
    let d = &devs[0];
    assert_eq!(d.name.as_str(), "mlx5_3");
    assert_eq!(d.parent, RdmaParent::Pci(pci("0000:3b:00.2")));
    assert_eq!(d.parent.pci(), Some(pci("0000:3b:00.2")));
    assert_eq!(d.node_guid, Some(Guid(0x0202_c9ff_fe00_0001)));
    assert_eq!(d.node_type, Some(NodeType::Ca));
    assert_eq!(d.fw_ver.as_deref(), Some("22.36.1010"));
    assert!(d.is_roce());
    assert_eq!(d.link_layer(), Some(LinkLayer::Ethernet));

    let p = d.port(1).unwrap();
    assert!(p.is_active());
    assert_eq!(p.phys_state, Some(PhysState::LinkUp));
    assert_eq!(p.rate.as_ref().unwrap().mbit_per_s, 100_000);
    assert_eq!(p.rate.as_ref().unwrap().detail.as_deref(), Some("2X HDR"));
    let indexes: Vec<u32> = p.gids.iter().map(|g| g.index).collect();
    assert_eq!(
        indexes,
        [0, 1, 2, 3, 10],
        "zero GIDs skipped, numeric order"
    );
    assert_eq!(p.gids[1].kind, Some(GidType::RoceV2));
    assert_eq!(p.gids[2].kind, Some(GidType::IbRoceV1));
    assert_eq!(p.gids[3].ndev.as_deref(), Some("ens1f0v0"));

    assert_eq!(d.roce_v2_gid_index(ip("10.0.0.1")), Some((1, 3)));
    assert_eq!(d.roce_v2_gid_index(ip("fd00::5")), Some((1, 10)));
    assert_eq!(d.roce_v2_gid_index(ip("10.0.0.2")), None);
    // A v1-only address is not a RoCE v2 GID.
    assert_eq!(
        p.roce_v2_gid_index(IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped())),
        Some(3)
    );

    assert_eq!(
        d.char_devices,
        vec![CharDevice {
            kind: CharDevKind::Uverbs,
            name: "uverbs3".into(),
            port: None
        }]
    );
    assert_eq!(
        d.uverbs().unwrap().path(),
        Path::new("/dev/infiniband/uverbs3")
    );

    // The same device through class/infiniband reads the same.
    let by_name = rdma::device(&t.root(), "mlx5_3").unwrap();
    assert_eq!(&by_name, d);
}

#[test]
fn pci_vf_without_rdma() {
    let t = Tree::new();
    t.pci("0000:3b:00.4");
    let devs = rdma::devices_of_pci(&t.root(), pci("0000:3b:00.4")).unwrap();
    assert!(devs.is_empty());
    assert!(
        rdma::auxiliary_devices_of_pci(&t.root(), pci("0000:3b:00.4"))
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        rdma::devices_of_pci(&t.root(), pci("0000:3b:00.5")),
        Err(RdmaSysfsError::NoSuchPci(p)) if p == pci("0000:3b:00.5")
    ));
    assert!(matches!(
        rdma::device(&t.root(), "mlx5_3"),
        Err(RdmaSysfsError::NoSuchDevice(_))
    ));
}

#[test]
fn sub_function_on_auxiliary_bus() {
    let t = Tree::new();
    let pf = t.pci("0000:08:00.0");
    t.rdma(&pf, "mlx5_0", "0202:c9ff:fe00:0010", &[roce_port()]);
    t.uverbs(&pf, "uverbs0", "mlx5_0");
    let sf = t.aux(&pf, "mlx5_core.sf.2");
    t.rdma(&sf, "mlx5_2", "0202:c9ff:fe00:0012", &[roce_port()]);
    t.uverbs(&sf, "uverbs2", "mlx5_2");
    // An auxiliary device without RDMA, and one of another PF.
    t.aux(&pf, "mlx5_core.eth.0");
    let pf2 = t.pci("0000:09:00.0");
    let sf9 = t.aux(&pf2, "mlx5_core.sf.9");
    t.rdma(&sf9, "mlx5_9", "0202:c9ff:fe00:0019", &[roce_port()]);

    let root = t.root();
    let own = rdma::devices_of_pci(&root, pci("0000:08:00.0")).unwrap();
    let names: Vec<&str> = own.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        ["mlx5_0"],
        "sub-function devices are not the PF's own"
    );

    let aux = rdma::auxiliary_devices_of_pci(&root, pci("0000:08:00.0")).unwrap();
    assert_eq!(aux.len(), 1);
    assert_eq!(aux[0].name, "mlx5_core.sf.2");
    assert_eq!(aux[0].rdma.len(), 1);
    let sf_dev = &aux[0].rdma[0];
    assert_eq!(sf_dev.name.as_str(), "mlx5_2");
    assert_eq!(
        sf_dev.parent,
        RdmaParent::Auxiliary {
            name: "mlx5_core.sf.2".into(),
            pci: Some(pci("0000:08:00.0"))
        }
    );
    assert_eq!(sf_dev.uverbs().unwrap().name, "uverbs2");

    // Through the class directory the parent is found from the device link.
    let by_name = rdma::device(&root, "mlx5_2").unwrap();
    assert_eq!(&by_name, sf_dev);
    assert_eq!(by_name.parent.pci(), Some(pci("0000:08:00.0")));

    let direct = rdma::devices_of_auxiliary(&root, "mlx5_core.sf.9").unwrap();
    assert_eq!(direct[0].parent.pci(), Some(pci("0000:09:00.0")));
    assert!(matches!(
        rdma::devices_of_auxiliary(&root, "../../class"),
        Err(RdmaSysfsError::InvalidName(_))
    ));
    assert!(matches!(
        rdma::devices_of_auxiliary(&root, "mlx5_core.sf.7"),
        Err(RdmaSysfsError::NoSuchAuxiliary(_))
    ));
}

#[test]
fn infiniband_versus_roce() {
    let t = Tree::new();
    let hca = t.pci("0000:af:00.0");
    let ib_gids = [
        (
            0,
            "fe80:0000:0000:0000:0002:c903:0031:7c11",
            Some("IB/RoCE v1"),
            None,
        ),
        (1, ZERO_GID, None, None),
    ];
    t.rdma(
        &hca,
        "mlx5_0",
        "0002:c903:0031:7c10",
        &[PortSpec {
            state: "4: ACTIVE",
            phys: "5: LinkUp",
            rate: Some("100 Gb/sec (4X EDR)"),
            link_layer: "InfiniBand",
            gids: &ib_gids,
        }],
    );
    t.uverbs(&hca, "uverbs0", "mlx5_0");
    t.write(hca.join("infiniband_mad/umad0/ibdev"), "mlx5_0");
    t.write(hca.join("infiniband_mad/umad0/port"), "1");
    let roce = t.pci("0000:af:00.1");
    t.rdma(&roce, "mlx5_1", "0202:c9ff:fe00:0001", &[roce_port()]);

    let ib = rdma::device(&t.root(), "mlx5_0").unwrap();
    assert_eq!(ib.link_layer(), Some(LinkLayer::InfiniBand));
    assert!(!ib.is_roce());
    let p = ib.port(1).unwrap();
    assert_eq!(p.rate.as_ref().unwrap().detail.as_deref(), Some("4X EDR"));
    assert_eq!(p.gids.len(), 1);
    assert_eq!(p.gids[0].ndev, None, "IB GIDs have no netdev");
    assert_eq!(
        p.gids[0].gid,
        "fe80::2:c903:31:7c11".parse::<Ipv6Addr>().unwrap()
    );
    assert_eq!(ib.roce_v2_gid_index(ip("10.0.0.1")), None);
    assert_eq!(
        ib.char_devices,
        vec![
            CharDevice {
                kind: CharDevKind::Uverbs,
                name: "uverbs0".into(),
                port: None
            },
            CharDevice {
                kind: CharDevKind::Umad,
                name: "umad0".into(),
                port: Some(1)
            },
        ]
    );

    let roce = rdma::device(&t.root(), "mlx5_1").unwrap();
    assert_eq!(roce.link_layer(), Some(LinkLayer::Ethernet));
    assert!(roce.is_roce());
}

#[test]
fn multiple_ports_in_numeric_order() {
    let t = Tree::new();
    let f = t.pci("0000:5e:00.0");
    let gids: Vec<(u32, String)> = (0..12)
        .map(|i| {
            (
                i,
                format!("fe80:0000:0000:0000:0000:0000:0000:{:04x}", i + 1),
            )
        })
        .collect();
    let gid_refs: Vec<(u32, &str, Option<&str>, Option<&str>)> = gids
        .iter()
        .map(|(i, g)| (*i, g.as_str(), Some("RoCE v2"), Some("eth1")))
        .collect();
    t.rdma(
        &f,
        "mlx4_0",
        "0002:c903:00aa:bb00",
        &[
            roce_port(),
            PortSpec {
                state: "1: DOWN",
                phys: "2: Polling",
                rate: None,
                link_layer: "Ethernet",
                gids: &gid_refs,
            },
        ],
    );
    let d = rdma::device(&t.root(), "mlx4_0").unwrap();
    let numbers: Vec<u32> = d.ports.iter().map(|p| p.number).collect();
    assert_eq!(numbers, [1, 2]);
    let p2 = d.port(2).unwrap();
    assert_eq!(p2.state, Some(PortState::Down));
    assert_eq!(p2.phys_state, Some(PhysState::Polling));
    assert!(!p2.is_active());
    assert_eq!(p2.rate, None);
    let idx: Vec<u32> = p2.gids.iter().map(|g| g.index).collect();
    assert_eq!(idx, (0..12).collect::<Vec<_>>(), "10 and 11 sort after 9");
    assert!(d.port(3).is_none());
    // An address only on port 2's table is found there.
    assert_eq!(d.roce_v2_gid_index(ip("fe80::c")), Some((2, 11)));
}

#[test]
fn gid_table_with_odd_entries() {
    let t = Tree::new();
    let f = t.pci("0000:3b:00.6");
    let gids = [
        (
            0,
            "fe80:0000:0000:0000:0202:c9ff:fe00:0001",
            Some("IB/RoCE v1"),
            Some("eth0"),
        ),
        (1, "not a gid", Some("RoCE v2"), Some("eth0")),
        (
            2,
            "0000:0000:0000:0000:0000:ffff:c0a8:0001",
            Some("RoCE v3"),
            Some("eth0"),
        ),
        (
            3,
            "0000:0000:0000:0000:0000:ffff:c0a8:0002",
            Some("RoCE v2"),
            Some("../../etc"),
        ),
        (4, ZERO_GID, Some("RoCE v2"), Some("eth0")),
    ];
    t.rdma(
        &f,
        "mlx5_6",
        "0202:c9ff:fe00:0006",
        &[PortSpec {
            state: "4: ACTIVE",
            phys: "5: LinkUp",
            rate: Some("25 Gb/sec (1X EDR)"),
            link_layer: "Ethernet",
            gids: &gids,
        }],
    );
    // A non-numeric entry in gids/ is ignored.
    t.write(f.join("infiniband/mlx5_6/ports/1/gids/README"), "x");
    let d = rdma::device(&t.root(), "mlx5_6").unwrap();
    let p = d.port(1).unwrap();
    let idx: Vec<u32> = p.gids.iter().map(|g| g.index).collect();
    assert_eq!(idx, [0, 2, 3]);
    assert_eq!(p.gids[1].kind, None, "unknown type text");
    assert_eq!(p.gids[2].ndev, None, "path-like ndev rejected");
    assert_eq!(p.roce_v2_gid_index(ip("192.168.0.1")), None);
    assert_eq!(p.roce_v2_gid_index(ip("192.168.0.2")), Some(3));
}

#[test]
fn garbage_files_give_none_not_panics() {
    let t = Tree::new();
    let f = t.pci("0000:3b:00.7");
    let dev = f.join("infiniband/mlx5_7");
    let junk = "\u{0}\u{7f}ÿ::::99999999999999999999: ACTIVE Gb/sec ((";
    for file in ["node_guid", "sys_image_guid", "node_type"] {
        t.write(dev.join(file), junk);
    }
    for file in [
        "state",
        "phys_state",
        "rate",
        "link_layer",
        "gids/0",
        "gid_attrs/types/0",
    ] {
        t.write(dev.join("ports/1").join(file), junk);
    }
    fs::write(t.abs(dev.join("fw_ver")), [0xff, 0xfe, 0x00]).unwrap();
    let devs = rdma::devices_of_pci(&t.root(), pci("0000:3b:00.7")).unwrap();
    let d = &devs[0];
    assert_eq!(d.node_guid, None);
    assert_eq!(d.node_type, None);
    assert_eq!(d.fw_ver, None);
    let p = d.port(1).unwrap();
    assert_eq!((p.state, p.phys_state, p.link_layer), (None, None, None));
    assert_eq!(p.rate, None);
    assert!(p.gids.is_empty());
    // Serializes for the daemon's API without trouble.
    let json = serde_json::to_value(d).unwrap();
    assert_eq!(json["name"], "mlx5_7");
}

#[test]
fn class_listing_software_devices_and_rdma_cm() {
    let t = Tree::new();
    let f = t.pci("0000:3b:00.2");
    t.rdma(&f, "mlx5_3", "0202:c9ff:fe00:0001", &[roce_port()]);
    // rxe: a device with no parent, its uverbs only under class/.
    let rxe = Path::new("devices/virtual/infiniband/rxe0");
    t.write(rxe.join("node_type"), "1: CA");
    t.write(rxe.join("ports/1/link_layer"), "Ethernet");
    t.write(rxe.join("ports/1/state"), "4: ACTIVE");
    t.link(
        "class/infiniband/rxe0",
        "../../devices/virtual/infiniband/rxe0",
    );
    t.write("devices/virtual/infiniband_verbs/uverbs5/ibdev", "rxe0");
    t.link(
        "class/infiniband_verbs/uverbs5",
        "../../devices/virtual/infiniband_verbs/uverbs5",
    );
    // Names that cannot be devices are skipped.
    fs::create_dir_all(t.abs("class/infiniband/bad name")).unwrap();

    let all = rdma::all_devices(&t.root()).unwrap();
    let names: Vec<&str> = all.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["mlx5_3", "rxe0"]);
    assert_eq!(all[1].parent, RdmaParent::Virtual);
    assert_eq!(all[1].uverbs().unwrap().name, "uverbs5");
    assert_eq!(all[1].parent.pci(), None);

    assert_eq!(rdma::rdma_cm(&t.root()), None);
    fs::create_dir_all(t.abs("class/misc/rdma_cm")).unwrap();
    assert_eq!(
        rdma::rdma_cm(&t.root()).unwrap().path(),
        Path::new("/dev/infiniband/rdma_cm")
    );
    assert!(matches!(
        rdma::device(&t.root(), "../net"),
        Err(RdmaSysfsError::InvalidName(_))
    ));
}

#[test]
fn empty_tree_has_no_devices() {
    let dir = tempfile::tempdir().unwrap();
    let root = SysfsRoot::new(dir.path());
    assert!(rdma::all_devices(&root).unwrap().is_empty());
    assert!(rdma::auxiliary_devices_of_pci(&root, pci("0000:00:01.0"))
        .unwrap()
        .is_empty());
}
