//! Shared by the topology test files: the fake GPU-server layouts and a
//! discovered server on a temp sysfs tree.

#![allow(dead_code)]

#[path = "../../../tests/src/topo_layouts.rs"]
pub mod layouts;

use jobnet_hw::topology::Topology;
use jobnet_hw::{PciAddr, SysfsRoot};
use layouts::{write_layout, Layout, WrittenLayout};

/// A PCI address literal.
pub fn p(s: &str) -> PciAddr {
    s.parse().unwrap()
}

/// A node written to a temp dir (removed on drop) and discovered.
pub struct Server {
    pub _tmp: tempfile::TempDir,
    pub written: WrittenLayout,
    pub topo: Topology,
}

impl Server {
    pub fn new(layout: &Layout) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let written = write_layout(tmp.path(), layout).unwrap();
        let topo = Topology::discover(&SysfsRoot::new(tmp.path())).unwrap();
        Self {
            _tmp: tmp,
            written,
            topo,
        }
    }
}
