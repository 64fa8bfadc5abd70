//! `jobnet_hw::sriov` against sysfs trees laid out like the kernel's, built
//! in a temp dir (a small local builder: the fabric lives in a crate that
//! depends on this one).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use jobnet_hw::sriov::{self, SriovError};
use jobnet_hw::{PciAddr, SysfsRoot};

fn pci(s: &str) -> PciAddr {
    s.parse().unwrap()
}

/// Writes functions under `devices/pci0000:00/0000:00:02.0/` like the kernel.
struct Tree {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

const PARENT: &str = "devices/pci0000:00/0000:00:02.0";

impl Tree {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_owned();
        for d in ["bus/pci/devices", "bus/pci/drivers", "class/net", PARENT] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        Self { _tmp: tmp, root }
    }

    fn sysfs(&self) -> SysfsRoot {
        SysfsRoot::new(&self.root)
    }

    fn dir(&self, pci: &str) -> PathBuf {
        self.root.join(PARENT).join(pci)
    }

    fn function(&self, pci: &str, device: &str, numa: &str, driver: Option<&str>) -> &Self {
        let d = self.dir(pci);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("vendor"), "0x15b3\n").unwrap();
        fs::write(d.join("device"), format!("{device}\n")).unwrap();
        fs::write(d.join("class"), "0x020000\n").unwrap();
        fs::write(d.join("numa_node"), format!("{numa}\n")).unwrap();
        symlink(
            format!("../../../{PARENT}/{pci}"),
            self.root.join("bus/pci/devices").join(pci),
        )
        .unwrap();
        if let Some(drv) = driver {
            fs::create_dir_all(self.root.join("bus/pci/drivers").join(drv)).unwrap();
            symlink(
                format!("../../../../bus/pci/drivers/{drv}"),
                d.join("driver"),
            )
            .unwrap();
        }
        self
    }

    fn pf(&self, pci: &str, total: u32, num: u32) -> &Self {
        self.function(pci, "0x101d", "0", Some("mlx5_core"));
        fs::write(self.dir(pci).join("sriov_totalvfs"), format!("{total}\n")).unwrap();
        fs::write(self.dir(pci).join("sriov_numvfs"), format!("{num}\n")).unwrap();
        self
    }

    fn vf(&self, pf: &str, n: u32, vf: &str, driver: &str) -> &Self {
        self.function(vf, "0x101e", "1", Some(driver));
        symlink(format!("../{vf}"), self.dir(pf).join(format!("virtfn{n}"))).unwrap();
        symlink(format!("../{pf}"), self.dir(vf).join("physfn")).unwrap();
        self
    }

    fn netdev(&self, pci: &str, name: &str, port: Option<&str>) -> &Self {
        let d = self.dir(pci).join("net").join(name);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("address"), "02:00:00:00:00:01\n").unwrap();
        if let Some(p) = port {
            fs::write(d.join("phys_port_name"), format!("{p}\n")).unwrap();
            fs::write(d.join("phys_switch_id"), "abcd0001\n").unwrap();
        }
        symlink(format!("../../../{pci}"), d.join("device")).unwrap();
        symlink(
            format!("../../{PARENT}/{pci}/net/{name}"),
            self.root.join("class/net").join(name),
        )
        .unwrap();
        self
    }

    fn rdma(&self, pci: &str, dev: &str) -> &Self {
        fs::create_dir_all(self.dir(pci).join("infiniband").join(dev).join("ports/1")).unwrap();
        self
    }
}

/// A PF with uplink `ens1np0`, VFs 0..=2 plus 10 (to check numeric order),
/// representors for VF0 and VF1, and a DPDK VF2.
fn nic() -> Tree {
    let t = Tree::new();
    t.pf("0000:3b:00.0", 16, 4)
        .netdev("0000:3b:00.0", "ens1np0", Some("p0"))
        .netdev("0000:3b:00.0", "pf0vf0rep", Some("pf0vf0"))
        .netdev("0000:3b:00.0", "pf0vf1rep", Some("pf0vf1"))
        .vf("0000:3b:00.0", 0, "0000:3b:00.2", "mlx5_core")
        .netdev("0000:3b:00.2", "ens1v0", None)
        .rdma("0000:3b:00.2", "mlx5_2")
        .vf("0000:3b:00.0", 1, "0000:3b:00.3", "mlx5_core")
        .netdev("0000:3b:00.3", "ens1v1", None)
        .vf("0000:3b:00.0", 2, "0000:3b:00.4", "vfio-pci")
        .vf("0000:3b:00.0", 10, "0000:3b:01.4", "mlx5_core");
    t
}

#[test]
fn resolves_a_netdev_vf_completely() {
    let t = nic();
    let vf = sriov::resolve_vf(&t.sysfs(), pci("0000:3b:00.2")).unwrap();
    assert_eq!(vf.pci, pci("0000:3b:00.2"));
    assert_eq!(vf.pf_pci, pci("0000:3b:00.0"));
    assert_eq!(vf.pf_netdevs, vec!["ens1np0".to_owned()]);
    assert_eq!(vf.vf_index, 0);
    assert_eq!(vf.netdevs, vec!["ens1v0".to_owned()]);
    assert_eq!(vf.driver.as_deref(), Some("mlx5_core"));
    assert!(!vf.is_dpdk());
    assert_eq!(vf.numa_node, Some(1));
    assert_eq!((vf.vendor, vf.device), (0x15b3, 0x101e));
    assert_eq!(vf.rdma_devices, vec!["mlx5_2".to_owned()]);
    assert_eq!(vf.representor.as_deref(), Some("pf0vf0rep"));
    let vf1 = sriov::resolve_vf(&t.sysfs(), pci("0000:3b:00.3")).unwrap();
    assert_eq!(vf1.vf_index, 1);
    assert_eq!(vf1.representor.as_deref(), Some("pf0vf1rep"));
    assert!(vf1.rdma_devices.is_empty());
}

#[test]
fn a_vfio_vf_is_dpdk_and_has_no_netdev() {
    let t = nic();
    let vf = sriov::resolve_vf(&t.sysfs(), pci("0000:3b:00.4")).unwrap();
    assert!(vf.is_dpdk());
    assert_eq!(vf.driver.as_deref(), Some("vfio-pci"));
    assert!(vf.netdevs.is_empty());
    assert_eq!(vf.vf_index, 2);
    assert_eq!(vf.representor, None);
}

#[test]
fn numa_minus_one_and_unbound_driver_are_none() {
    let t = Tree::new();
    t.pf("0000:3b:00.0", 4, 1);
    t.function("0000:3b:00.2", "0x101e", "-1", None);
    symlink("../0000:3b:00.2", t.dir("0000:3b:00.0").join("virtfn0")).unwrap();
    symlink("../0000:3b:00.0", t.dir("0000:3b:00.2").join("physfn")).unwrap();
    let vf = sriov::resolve_vf(&t.sysfs(), pci("0000:3b:00.2")).unwrap();
    assert_eq!(vf.numa_node, None);
    assert_eq!(vf.driver, None);
    assert!(!vf.is_dpdk());
}

#[test]
fn lists_pfs_and_vfs_in_order() {
    let t = nic();
    t.pf("0000:af:00.0", 8, 0)
        .netdev("0000:af:00.0", "ens2np0", Some("p0"));
    // A device without SR-IOV and a junk entry are not PFs.
    t.function("0000:00:1f.6", "0x15bb", "0", Some("e1000e"));
    fs::create_dir_all(t.root.join("bus/pci/devices/not-a-pci")).unwrap();
    let pfs = sriov::list_pfs(&t.sysfs()).unwrap();
    let addrs: Vec<String> = pfs.iter().map(|p| p.pci.to_string()).collect();
    assert_eq!(addrs, ["0000:3b:00.0", "0000:af:00.0"]);
    assert_eq!((pfs[0].total_vfs, pfs[0].num_vfs), (16, 4));
    assert_eq!(pfs[0].netdevs, vec!["ens1np0".to_owned()]);
    assert_eq!(pfs[0].switch_id.as_deref(), Some("abcd0001"));
    assert_eq!(pfs[0].driver.as_deref(), Some("mlx5_core"));
    assert_eq!(pfs[1].num_vfs, 0);

    let vfs = sriov::list_vfs(&t.sysfs(), pci("0000:3b:00.0")).unwrap();
    let idx: Vec<u32> = vfs.iter().map(|v| v.vf_index).collect();
    assert_eq!(idx, [0, 1, 2, 10]);
    assert_eq!(vfs[3].pci, pci("0000:3b:01.4"));
    assert!(sriov::list_vfs(&t.sysfs(), pci("0000:af:00.0"))
        .unwrap()
        .is_empty());
    assert!(matches!(
        sriov::list_vfs(&t.sysfs(), pci("0000:00:1f.6")),
        Err(SriovError::NotPf(_))
    ));
}

#[test]
fn finds_the_pf_of_a_netdev() {
    let t = nic();
    let root = t.sysfs();
    assert_eq!(
        sriov::pf_by_netdev(&root, "ens1np0").unwrap(),
        pci("0000:3b:00.0")
    );
    assert_eq!(
        sriov::pci_by_netdev(&root, "ens1v1").unwrap(),
        pci("0000:3b:00.3")
    );
    assert!(matches!(
        sriov::pf_by_netdev(&root, "ens1v1"),
        Err(SriovError::NotPf(p)) if p == pci("0000:3b:00.3")
    ));
    assert!(matches!(
        sriov::pf_by_netdev(&root, "nosuch0"),
        Err(SriovError::NoSuchNetdev(_))
    ));
    for bad in ["../../etc", "", "a/b", "way-too-long-name0"] {
        assert!(matches!(
            sriov::pf_by_netdev(&root, bad),
            Err(SriovError::InvalidNetdevName(_))
        ));
    }
    // A netdev whose device is not a PCI function (e.g. a virtual one).
    let d = t.root.join("devices/virtual/net/br0");
    fs::create_dir_all(&d).unwrap();
    symlink(
        "../../devices/virtual/net/br0",
        t.root.join("class/net/br0"),
    )
    .unwrap();
    assert!(matches!(
        sriov::pf_by_netdev(&root, "br0"),
        Err(SriovError::NetdevNotPci { .. })
    ));
}

#[test]
fn each_failure_has_its_own_error() {
    let t = nic();
    let root = t.sysfs();
    assert!(matches!(
        sriov::resolve_vf(&root, pci("0000:99:00.0")),
        Err(SriovError::NotPciDevice(_))
    ));
    assert!(matches!(
        sriov::resolve_vf(&root, pci("0000:3b:00.0")),
        Err(SriovError::NotVf(_))
    ));

    // physfn pointing at a PF that is not on the node.
    t.function("0000:3b:02.0", "0x101e", "0", Some("mlx5_core"));
    symlink("../0000:3b:07.0", t.dir("0000:3b:02.0").join("physfn")).unwrap();
    assert!(matches!(
        sriov::resolve_vf(&root, pci("0000:3b:02.0")),
        Err(SriovError::PfMissing { .. })
    ));

    // physfn pointing outside the tree is refused, never followed.
    t.function("0000:3b:02.1", "0x101e", "0", Some("mlx5_core"));
    symlink(
        "../../../../../../etc",
        t.dir("0000:3b:02.1").join("physfn"),
    )
    .unwrap();
    assert!(matches!(
        sriov::resolve_vf(&root, pci("0000:3b:02.1")),
        Err(SriovError::PfMissing { .. })
    ));

    // The PF exists but does not list the VF.
    t.function("0000:3b:02.2", "0x101e", "0", Some("mlx5_core"));
    symlink("../0000:3b:00.0", t.dir("0000:3b:02.2").join("physfn")).unwrap();
    assert!(matches!(
        sriov::resolve_vf(&root, pci("0000:3b:02.2")),
        Err(SriovError::VfIndexNotFound { vf, pf })
            if vf == pci("0000:3b:02.2") && pf == pci("0000:3b:00.0")
    ));

    // A garbled attribute.
    fs::write(t.dir("0000:3b:00.3").join("vendor"), "mellanox\n").unwrap();
    assert!(matches!(
        sriov::resolve_vf(&root, pci("0000:3b:00.3")),
        Err(SriovError::BadAttribute { attr: "vendor", .. })
    ));
    fs::write(t.dir("0000:3b:00.2").join("numa_node"), "x\n").unwrap();
    assert!(matches!(
        sriov::resolve_vf(&root, pci("0000:3b:00.2")),
        Err(SriovError::BadAttribute {
            attr: "numa_node",
            ..
        })
    ));
}

#[test]
fn reads_the_real_sysfs_without_failing() {
    // Whatever this machine has (usually no SR-IOV): listing must not error.
    let root = SysfsRoot::new(Path::new("/sys"));
    let pfs = sriov::list_pfs(&root).unwrap();
    for pf in pfs {
        assert!(sriov::list_vfs(&root, pf.pci).is_ok());
    }
}
