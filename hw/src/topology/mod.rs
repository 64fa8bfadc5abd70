//! GPU/NIC/PCIe topology for collective operations.
//!
//! - [`pci_tree`]: every PCI function with its place in the PCI hierarchy,
//!   read from the device paths under `devices/pci<domain>:<bus>/...`;
//! - [`path_class`]: NCCL's path classes (PIX, PXB, PHB, NODE, SYS) between
//!   two functions;
//! - [`discover`]: GPUs, SR-IOV NICs (with VFs and RDMA devices) and NUMA
//!   nodes of a node, as a [`Topology`];
//! - [`rails`]: NIC *i* is rail *i*, and rails must agree across nodes;
//! - [`hints`]: the `nccl.env` a pod is given;
//! - [`nccl_xml`]: the NCCL topology file restricted to a pod;
//! - [`view`]: the GPU/NIC matrix and PCI tree as plain data (the API's
//!   topology answer);
//! - [`cpu`]: the CPU identity NCCL's topology file needs.
//!
//! Which VF a pod gets is the daemon's policy and how the view is drawn
//! is `jobnetctl`'s: neither lives here.
//!
//! Everything except discovery is a pure function of its inputs.

pub mod cpu;
pub mod discover;
pub mod hints;
pub mod nccl_xml;
pub mod path_class;
pub mod pci_tree;
pub mod rails;
pub mod view;

use std::path::PathBuf;

pub use cpu::CpuInfo;
pub use discover::{Gpu, Nic, NumaNode, Topology, Vf};
pub use hints::{nccl_env, HintOptions, PodNic, PodView};
pub use nccl_xml::topo_xml;
pub use path_class::{path_class, Hop, PathClass, Placement};
pub use pci_tree::{HostBridge, PciFunction, PciTree, PcieLink};
pub use rails::{check_rails_agree, RailError, RailInfo, RailMismatch, RailSummary, Rails};
pub use view::{Cell, TopoView};

use crate::pci::PciAddr;
use crate::rdma::RdmaSysfsError;
use crate::sriov::SriovError;

/// Why the topology could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// A directory that must be listable could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `bus/pci/devices/<pci>` does not lead to `devices/pci<dom>:<bus>/.../<pci>`.
    #[error("{pci}: device link does not lead into a PCI hierarchy ({target})")]
    BadDevicePath {
        /// The function.
        pci: PciAddr,
        /// The link target as read.
        target: String,
    },
    /// SR-IOV information could not be read.
    #[error(transparent)]
    Sriov(#[from] SriovError),
    /// RDMA information could not be read.
    #[error(transparent)]
    Rdma(#[from] RdmaSysfsError),
    /// A GPU reference names no GPU of this node.
    #[error("no GPU {0:?} on this node (give a PCI address or an index by PCI order)")]
    UnknownGpu(String),
}
