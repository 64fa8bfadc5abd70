//! `jobnetctl rdma`: RDMA devices from sysfs, and a clean "no RDMA" from
//! libibverbs where the kernel has none.

use std::process::Command;

use jobnet_tests::topo_layouts::{eight_by_eight, write_layout};

#[test]
fn lists_sysfs_devices_and_reports_missing_kernel_rdma_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let written = write_layout(dir.path(), &eight_by_eight(0, 2)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_jobnetctl"))
        .args(["rdma", "--json", "--sysfs-root"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let devices = v["sysfs"].as_array().expect("sysfs devices");
    // Every PF and VF of the layout has one RDMA device.
    let expected: usize = written.nics.iter().map(|n| 1 + n.vfs.len()).sum();
    assert_eq!(devices.len(), expected, "{v}");
    // This code path must never crash: either the kernel has RDMA and
    // libibverbs lists devices, or it says so.
    let kernel_has_rdma = std::fs::read_dir("/sys/class/infiniband")
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    assert_eq!(v["verbs"]["available"], kernel_has_rdma, "{v}");

    let text = Command::new(env!("CARGO_BIN_EXE_jobnetctl"))
        .args(["rdma", "--sysfs-root"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("DEVICE"), "{text}");
    if !kernel_has_rdma {
        assert!(text.contains("no RDMA support"), "{text}");
    }
}
