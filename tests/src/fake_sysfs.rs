//! A tiny fake sysfs tree with SR-IOV PFs and VFs, for the daemon's tests and benchmarks.
//!
//! Lays out what `jobnet_hw::sriov` reads: `bus/pci/devices/<pci>` links to
//! function directories, `sriov_*` files and `virtfnN`/`physfn` links,
//! `net/<netdev>` entries and `class/net/<netdev>/device` links.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use jobnet_hw::{PciAddr, SysfsRoot};

/// A fake sysfs tree in a temporary directory (removed on drop).
#[derive(Debug)]
pub struct FakeSysfs {
    dir: tempfile::TempDir,
}

impl Default for FakeSysfs {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeSysfs {
    /// An empty tree.
    ///
    /// # Panics
    /// When the temporary directory cannot be created (test helper).
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir for fake sysfs");
        for d in [
            "devices/pci0000:00",
            "bus/pci/devices",
            "bus/pci/drivers",
            "class/net",
        ] {
            fs::create_dir_all(dir.path().join(d)).expect("fake sysfs dirs");
        }
        Self { dir }
    }

    /// The tree's root path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The tree as a [`SysfsRoot`].
    pub fn root(&self) -> SysfsRoot {
        SysfsRoot::new(self.dir.path())
    }

    fn func_dir(&self, pci: &str) -> PathBuf {
        self.path().join("devices/pci0000:00").join(pci)
    }

    /// Address of VF `n` of the PF at `pf` (same bus, devices after the PF's).
    ///
    /// # Panics
    /// When `pf` is not a PCI address or `n` does not fit (test helper).
    pub fn vf_addr(pf: &str, n: u32) -> String {
        let pf: PciAddr = pf.parse().expect("PF address");
        let dev = u8::try_from(u32::from(pf.device) + 1 + n / 8).expect("VF device number");
        let func = u8::try_from(n % 8).expect("VF function");
        PciAddr::new(pf.domain, pf.bus, dev, func)
            .expect("VF address in range")
            .to_string()
    }

    fn function(&self, pci: &str, driver: &str, netdev: Option<&str>) {
        let dir = self.func_dir(pci);
        fs::create_dir_all(&dir).expect("function dir");
        fs::write(dir.join("vendor"), "0x15b3\n").expect("vendor");
        fs::write(dir.join("device"), "0x101e\n").expect("device");
        fs::write(dir.join("numa_node"), "0\n").expect("numa_node");
        symlink(
            format!("../../../devices/pci0000:00/{pci}"),
            self.path().join("bus/pci/devices").join(pci),
        )
        .expect("bus link");
        self.set_driver(pci, driver);
        if let Some(name) = netdev {
            self.add_netdev(pci, name);
        }
    }

    /// Binds `pci` to `driver` (replacing the previous binding).
    ///
    /// # Panics
    /// On I/O errors (test helper).
    pub fn set_driver(&self, pci: &str, driver: &str) {
        fs::create_dir_all(self.path().join("bus/pci/drivers").join(driver)).expect("driver dir");
        let link = self.func_dir(pci).join("driver");
        let _ = fs::remove_file(&link);
        symlink(format!("../../../bus/pci/drivers/{driver}"), link).expect("driver link");
    }

    /// Gives `pci` the netdev `name` (with its `class/net` entry).
    ///
    /// # Panics
    /// On I/O errors (test helper).
    pub fn add_netdev(&self, pci: &str, name: &str) {
        let ndir = self.func_dir(pci).join("net").join(name);
        fs::create_dir_all(&ndir).expect("net dir");
        symlink(format!("../../../{pci}"), ndir.join("device")).expect("device link");
        symlink(
            format!("../../devices/pci0000:00/{pci}/net/{name}"),
            self.path().join("class/net").join(name),
        )
        .expect("class/net link");
    }

    /// Adds an SR-IOV PF with netdev `netdev` and `vfs` VFs (netdevs `<netdev>v<N>`).
    ///
    /// # Panics
    /// On I/O errors or bad addresses (test helper).
    pub fn pf(&self, pci: &str, netdev: &str, vfs: u32) {
        self.function(pci, "mlx5_core", Some(netdev));
        let dir = self.func_dir(pci);
        fs::write(dir.join("sriov_totalvfs"), format!("{}\n", vfs.max(8))).expect("totalvfs");
        fs::write(dir.join("sriov_numvfs"), format!("{vfs}\n")).expect("numvfs");
        for n in 0..vfs {
            let vf = Self::vf_addr(pci, n);
            self.function(&vf, "mlx5_core", Some(&format!("{netdev}v{n}")));
            symlink(format!("../{vf}"), dir.join(format!("virtfn{n}"))).expect("virtfn");
            symlink(format!("../{pci}"), self.func_dir(&vf).join("physfn")).expect("physfn");
        }
    }
}
