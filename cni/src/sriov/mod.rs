//! SR-IOV VF attach and detach: the kernel work of ADD, DEL and CHECK,
//! the attachment cache, VF ownership and the device-info file.

pub mod attach;
pub mod cache;
pub mod check;
pub mod detach;
pub mod devinfo;
pub mod error;
pub mod gc;
pub mod lockfile;
pub mod owner;
pub mod rdma;
pub mod record;
pub mod state_dir;
pub mod steps;

pub use attach::{
    attach, attach_overlapped, attach_with, restore, AttachOptions, AttachSpec, Attachment,
    Context, LateAddresses, Prepared,
};
pub use check::{check, CheckError};
pub use detach::{detach, detach_with, DetachOutcome};
pub use error::AttachError;
pub use rdma::{KernelRdma, RdmaOps, RecordingRdma};
pub use record::Ownership;
pub use state_dir::StateDir;
pub use steps::{FailAt, FaultHook, NoFaults, Step};
