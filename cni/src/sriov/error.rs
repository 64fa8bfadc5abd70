//! Errors of the VF attach, each with the CNI error code it maps to.

use jobnet_hw::sriov::SriovError;
use jobnet_hw::PciAddr;
use jobnet_netlink::{NetlinkError, NetnsError};

use super::cache::CacheError;
use super::owner::OwnerError;
use super::steps::Step;

/// CNI code: try again later.
pub const CODE_TRY_AGAIN: u32 = 11;
/// CNI code: I/O failure.
pub const CODE_IO: u32 = 5;
/// CNI code: invalid network config.
pub const CODE_INVALID_CONFIG: u32 = 7;
/// jobnet code: the device named by the config does not exist or is unusable.
pub const CODE_DEVICE_NOT_FOUND: u32 = 100;
/// jobnet code: the VF is owned by another attachment.
pub const CODE_DEVICE_OWNED: u32 = 101;
/// jobnet code: a kernel operation failed.
pub const CODE_KERNEL: u32 = 102;
/// jobnet code: RDMA is required or exclusive but not available.
pub const CODE_RDMA_UNAVAILABLE: u32 = 104;

/// Why attaching, checking or detaching a VF failed.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The addresses due while the VF moved did not come (the caller that
    /// withheld them knows why, and reports that instead).
    #[error("the pod's addresses did not come")]
    AddressesWithheld,
    /// `deviceID` does not name a usable SR-IOV VF.
    #[error("device {pci}: {source}")]
    Device {
        /// The VF named by the config.
        pci: PciAddr,
        /// What sysfs said.
        source: SriovError,
    },
    /// The VF has no netdev in the host namespace (attached elsewhere, or
    /// the driver is not bound).
    #[error("VF {pci} has no network interface in the host namespace (looked for {looked_for:?}); is it attached to another pod?")]
    NetdevMissing {
        /// The VF.
        pci: PciAddr,
        /// Names tried.
        looked_for: Vec<String>,
    },
    /// PF-side settings were configured but the PF has no netdev.
    #[error("VF {pci}: PF {pf} has no network interface to apply VF settings through")]
    PfNetdevMissing {
        /// The VF.
        pci: PciAddr,
        /// Its PF.
        pf: PciAddr,
    },
    /// The pod already has an interface with the requested name.
    #[error("interface {ifname:?} already exists in the pod network namespace")]
    IfnameTaken {
        /// The requested name.
        ifname: String,
    },
    /// Ownership claim failed.
    #[error(transparent)]
    Owner(#[from] OwnerError),
    /// The attachment cache could not be used.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// A network namespace could not be opened.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// A kernel operation failed at `step`.
    #[error("{step}: {source}")]
    Kernel {
        /// Where it failed.
        step: Step,
        /// The kernel's answer.
        source: NetlinkError,
    },
    /// An RDMA netlink operation failed.
    #[error("{op}: RDMA netlink: {source}")]
    Rdma {
        /// What was being done.
        op: &'static str,
        /// The RDMA netlink error.
        source: jobnet_rdma::RdmaError,
    },
    /// The config asks for RDMA isolation or an RDMA device that this VF
    /// or kernel cannot give (nothing was changed).
    #[error("{0}")]
    RdmaUnavailable(String),
    /// The device-info file could not be written.
    #[error("device-info file: {0}")]
    DevInfo(std::io::Error),
    /// A failure injected by a test at `step`.
    #[error("injected failure at {0}")]
    Injected(Step),
}

impl AttachError {
    /// The CNI error code for this error.
    pub fn cni_code(&self) -> u32 {
        match self {
            AttachError::Device { .. }
            | AttachError::NetdevMissing { .. }
            | AttachError::PfNetdevMissing { .. } => CODE_DEVICE_NOT_FOUND,
            AttachError::IfnameTaken { .. } => CODE_INVALID_CONFIG,
            AttachError::Owner(OwnerError::Busy { .. }) => CODE_TRY_AGAIN,
            AttachError::Owner(OwnerError::OwnedByOther { .. }) => CODE_DEVICE_OWNED,
            AttachError::Owner(OwnerError::Io { .. }) | AttachError::Cache(_) => CODE_IO,
            AttachError::DevInfo(_) => CODE_IO,
            AttachError::Netns(_) => CODE_IO,
            AttachError::Kernel { .. } | AttachError::Injected(_) | AttachError::Rdma { .. } => {
                CODE_KERNEL
            }
            AttachError::RdmaUnavailable(_) => CODE_RDMA_UNAVAILABLE,
            AttachError::AddressesWithheld => CODE_IO,
        }
    }

    /// An RDMA netlink error.
    pub fn rdma(op: &'static str) -> impl FnOnce(jobnet_rdma::RdmaError) -> AttachError {
        move |source| AttachError::Rdma { op, source }
    }

    /// A kernel error at `step`.
    pub fn kernel(step: Step) -> impl FnOnce(NetlinkError) -> AttachError {
        move |source| AttachError::Kernel { step, source }
    }
}
