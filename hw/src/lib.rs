//! Hardware inventory read from sysfs: PCI addresses, SR-IOV PFs and VFs,
//! RDMA devices and (later) the GPU/NIC topology.
//!
//! Everything here reads files under a [`SysfsRoot`], so the same code runs
//! against the real `/sys` and against the simulated fabric's fake tree.

pub mod pci;
pub mod rdma;
pub mod sriov;
pub mod sysfs;
pub mod topology;

pub use pci::{PciAddr, PciAddrError};
pub use sysfs::SysfsRoot;
