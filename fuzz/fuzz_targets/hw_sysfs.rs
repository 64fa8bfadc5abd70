//! The sysfs readers of jobnet-hw: the string parsers for what attribute
//! files and link names hold, and the readers that walk a tree, run on a
//! small fixed-shape tree whose file contents come from the input.
//!
//! The input is split at NUL bytes (sysfs text has none). Every piece goes
//! through every string parser; piece N is also the content of the N-th
//! entry of [`FILES`], and an absent piece leaves that file out. The four
//! pieces after the files name an extra PF netdev, an extra RDMA device,
//! an extra `bus/pci/devices` entry, and give the extra netdev's
//! `phys_port_name`. Names are reduced to one safe path
//! component and every link points inside the tree, so nothing outside
//! the temporary directory is ever read.
#![no_main]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use jobnet_hw::rdma::{self, GidType, Guid, LinkLayer, NodeType, PhysState, PortState, Rate};
use jobnet_hw::sriov;
use jobnet_hw::topology::pci_tree::parse_device_path;
use jobnet_hw::topology::{CpuInfo, HostBridge, PciTree, Rails, TopoView, Topology};
use jobnet_hw::{PciAddr, SysfsRoot};
use libfuzzer_sys::fuzz_target;

const PF: &str = "0000:3b:00.0";
const VF: &str = "0000:3b:00.2";
const BRIDGE_DIR: &str = "devices/pci0000:00/0000:00:01.0";
const PF_DIR: &str = "devices/pci0000:00/0000:00:01.0/0000:3b:00.0";
const VF_DIR: &str = "devices/pci0000:00/0000:00:01.0/0000:3b:00.2";
const GPU_DIR: &str = "devices/pci0000:00/0000:00:01.0/0000:3c:00.0";
const IB_DIR: &str = "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/infiniband/mlx5_0";
const PORT_DIR: &str = "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/infiniband/mlx5_0/ports/1";

/// Attribute files whose contents the input gives, in input order.
const FILES: &[&str] = &[
    "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/sriov_totalvfs",
    "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/sriov_numvfs",
    "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/vendor",
    "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/device",
    "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/class",
    "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/numa_node",
    "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/current_link_speed",
    "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/current_link_width",
    "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/max_link_speed",
    "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/max_link_width",
    "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/subsystem_vendor",
    "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/subsystem_device",
    "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/net/eth0/phys_port_name",
    "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/net/eth0/phys_switch_id",
    "devices/pci0000:00/0000:00:01.0/0000:3b:00.2/vendor",
    "devices/pci0000:00/0000:00:01.0/0000:3b:00.2/device",
    "devices/pci0000:00/0000:00:01.0/0000:3b:00.2/class",
    "devices/pci0000:00/0000:00:01.0/0000:3b:00.2/numa_node",
    "devices/pci0000:00/0000:00:01.0/0000:3c:00.0/class",
    "devices/pci0000:00/0000:00:01.0/0000:3c:00.0/vendor",
    "devices/pci0000:00/0000:00:01.0/0000:3c:00.0/numa_node",
    "devices/pci0000:00/0000:00:01.0/class",
    "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/infiniband/mlx5_0/node_guid",
    "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/infiniband/mlx5_0/sys_image_guid",
    "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/infiniband/mlx5_0/node_type",
    "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/infiniband/mlx5_0/fw_ver",
    "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/infiniband/mlx5_0/ports/1/state",
    "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/infiniband/mlx5_0/ports/1/phys_state",
    "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/infiniband/mlx5_0/ports/1/rate",
    "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/infiniband/mlx5_0/ports/1/link_layer",
    "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/infiniband/mlx5_0/ports/1/gids/0",
    "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/infiniband/mlx5_0/ports/1/gids/1",
    "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/infiniband/mlx5_0/ports/1/gid_attrs/types/1",
    "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/infiniband/mlx5_0/ports/1/gid_attrs/ndevs/1",
    "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/infiniband_verbs/uverbs0/ibdev",
    "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/infiniband_mad/umad0/ibdev",
    "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/infiniband_mad/umad0/port",
    "devices/system/node/node0/cpulist",
    "devices/system/node/node0/cpumap",
];

/// Links of the tree, (link, target), as the kernel lays them out.
const LINKS: &[(&str, &str)] = &[
    (
        "bus/pci/devices/0000:00:01.0",
        "../../../devices/pci0000:00/0000:00:01.0",
    ),
    (
        "bus/pci/devices/0000:3b:00.0",
        "../../../devices/pci0000:00/0000:00:01.0/0000:3b:00.0",
    ),
    (
        "bus/pci/devices/0000:3b:00.2",
        "../../../devices/pci0000:00/0000:00:01.0/0000:3b:00.2",
    ),
    (
        "bus/pci/devices/0000:3c:00.0",
        "../../../devices/pci0000:00/0000:00:01.0/0000:3c:00.0",
    ),
    (
        "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/virtfn0",
        "../0000:3b:00.2",
    ),
    (
        "devices/pci0000:00/0000:00:01.0/0000:3b:00.2/physfn",
        "../0000:3b:00.0",
    ),
    (
        "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/driver",
        "../../../../bus/pci/drivers/mlx5_core",
    ),
    (
        "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/infiniband/mlx5_0/device",
        "../../../0000:3b:00.0",
    ),
    (
        "class/net/eth0",
        "../../devices/pci0000:00/0000:00:01.0/0000:3b:00.0/net/eth0",
    ),
    (
        "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/net/eth0/device",
        "../../../0000:3b:00.0",
    ),
    (
        "class/infiniband/mlx5_0",
        "../../devices/pci0000:00/0000:00:01.0/0000:3b:00.0/infiniband/mlx5_0",
    ),
];

/// Every string parser the readers apply to file contents and names.
fn parse_text(s: &str) {
    if let Ok(pci) = s.parse::<PciAddr>() {
        // Addresses are written back into paths and configs.
        assert_eq!(pci.to_string().parse::<PciAddr>().ok(), Some(pci));
    }
    if let Ok(g) = s.parse::<Guid>() {
        assert_eq!(g.to_string().parse::<Guid>().ok(), Some(g));
    }
    if let Ok(gid) = rdma::parse_gid(s) {
        let _ = gid.to_ipv4_mapped();
    }
    let _ = s.parse::<NodeType>();
    let _ = s.parse::<PortState>();
    let _ = s.parse::<PhysState>();
    let _ = s.parse::<LinkLayer>();
    let _ = s.parse::<GidType>();
    if let Ok(rate) = s.parse::<Rate>() {
        let _ = rate.detail;
    }
    if let Some(hb) = HostBridge::parse_dir_name(s) {
        assert_eq!(HostBridge::parse_dir_name(&hb.to_string()), Some(hb));
    }
    if let Some((_, chain)) = parse_device_path(Path::new(s)) {
        assert!(!chain.is_empty());
    }
    if let Ok(name) = rdma::RdmaDevName::new(s) {
        assert!(!name.as_str().contains('/'));
    }
    if sriov::validate_netdev_name(s).is_ok() {
        assert!(!s.contains('/') && s != "." && s != "..");
    }
    let _ = sriov::is_representor_port_name(s);
    let _ = CpuInfo::from_proc_cpuinfo(s, "x86_64");
}

/// `s` as one file name that stays inside its directory, or None.
fn component(s: &str) -> Option<&str> {
    let ok = !s.is_empty() && s.len() <= 64 && s != "." && s != ".." && !s.contains('/');
    ok.then_some(s)
}

fn build_tree(dir: &Path, pieces: &[&[u8]]) -> std::io::Result<()> {
    for d in [
        "bus/pci/devices",
        "bus/pci/drivers/mlx5_core",
        "class/net",
        "class/infiniband",
        BRIDGE_DIR,
        PF_DIR,
        VF_DIR,
        GPU_DIR,
        IB_DIR,
        PORT_DIR,
        "devices/pci0000:00/0000:00:01.0/0000:3b:00.0/net/eth0",
        "devices/system/node/node0",
    ] {
        fs::create_dir_all(dir.join(d))?;
    }
    for (link, target) in LINKS {
        symlink(target, dir.join(link))?;
    }
    for (file, content) in FILES.iter().zip(pieces) {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(path, content)?;
    }
    let mut extra = pieces
        .iter()
        .skip(FILES.len())
        .map(|p| std::str::from_utf8(p).ok().and_then(component));
    if let Some(Some(netdev)) = extra.next() {
        let d = dir.join(PF_DIR).join("net").join(netdev);
        fs::create_dir_all(&d)?;
        if let Some(port) = pieces.get(FILES.len() + 3) {
            fs::write(d.join("phys_port_name"), port)?;
        }
    }
    if let Some(Some(ibdev)) = extra.next() {
        let d = dir.join(PF_DIR).join("infiniband").join(ibdev);
        fs::create_dir_all(d.join("ports/1"))?;
        let _ = symlink(
            format!("../../{PF_DIR}/infiniband/{ibdev}"),
            dir.join("class/infiniband").join(ibdev),
        );
    }
    if let Some(Some(pci)) = extra.next() {
        let _ = symlink(
            format!("../../../devices/pci0000:00/{pci}"),
            dir.join("bus/pci/devices").join(pci),
        );
    }
    Ok(())
}

fn read_tree(root: &SysfsRoot) {
    let (Ok(pf), Ok(vf)) = (PF.parse::<PciAddr>(), VF.parse::<PciAddr>()) else {
        return;
    };
    let _ = sriov::list_pfs(root);
    let _ = sriov::read_pf(root, pf);
    let _ = sriov::virtfns(root, pf);
    let _ = sriov::list_vfs(root, pf);
    if let Ok(info) = sriov::resolve_vf(root, vf) {
        assert_eq!(info.pf_pci, pf);
    }
    let _ = sriov::pci_by_netdev(root, "eth0");
    let _ = sriov::pf_by_netdev(root, "eth0");
    let _ = rdma::all_devices(root);
    let _ = rdma::device(root, "mlx5_0");
    let _ = rdma::devices_of_pci(root, pf);
    let _ = rdma::auxiliary_devices_of_pci(root, pf);
    let _ = rdma::rdma_cm(root);
    let _ = PciTree::read(root);
    if let Ok(topo) = Topology::discover(root) {
        let rails = Rails::by_pci_order(&topo);
        let _ = rails.summary(&topo);
        // The view is what jobnetd serves as JSON (jobnetctl draws it).
        let _ = serde_json::to_string(&TopoView::build(&topo, &rails));
    }
}

fuzz_target!(|data: &[u8]| {
    // Raw bytes go into the files: the readers must cope with non-UTF-8 too.
    let pieces: Vec<&[u8]> = data.split(|&b| b == 0).collect();
    for p in &pieces {
        if let Ok(s) = std::str::from_utf8(p) {
            parse_text(s);
        }
    }
    let base = Path::new("/dev/shm");
    let made = if base.is_dir() {
        tempfile::Builder::new()
            .prefix("jobnet-fuzz-")
            .tempdir_in(base)
    } else {
        tempfile::tempdir()
    };
    let Ok(dir) = made else {
        return;
    };
    if build_tree(dir.path(), &pieces).is_ok() {
        read_tree(&SysfsRoot::new(dir.path()));
    }
});
