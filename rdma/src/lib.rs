//! A client for RDMA netlink (`NETLINK_RDMA`, the NLDEV interface that the
//! `rdma` tool of iproute2 speaks): list RDMA devices and ports, read and
//! set the subsystem's netns mode, and move a device into a network
//! namespace.
//!
//! Layers, bottom up:
//! - [`consts`]: numbers of the uapi (`<rdma/rdma_netlink.h>`),
//! - [`message`]: `nlmsghdr`/`nlattr` encoding and a decoder that treats
//!   its input as untrusted,
//! - [`transport`]: the [`Transport`] trait, the real [`RdmaSocket`], and
//!   [`ReplayTransport`] which records requests for tests,
//! - [`client`]: [`RdmaClient`] with typed requests and replies.
//!
//! A kernel without RDMA refuses the socket with `EPROTONOSUPPORT`; that
//! is [`RdmaError::NotAvailable`].
//!
//! ```no_run
//! use jobnet_rdma::{NetnsMode, RdmaClient, RdmaError};
//! # fn main() -> Result<(), RdmaError> {
//! let mut rdma = match RdmaClient::open() {
//!     Err(RdmaError::NotAvailable) => return Ok(()), // no RDMA here
//!     other => other?,
//! };
//! if rdma.netns_mode()? == NetnsMode::Exclusive {
//!     let dev = rdma.device_by_name("mlx5_3")?;
//!     let pod_netns = std::fs::File::open("/proc/1234/ns/net").map_err(|e| RdmaError::Io { op: "open", source: e })?;
//!     rdma.move_to_netns(dev.index, &pod_netns)?;
//! }
//! # Ok(()) }
//! ```

pub mod client;
pub mod consts;
pub mod error;
pub mod message;
pub mod transport;
#[cfg(feature = "verbs")]
pub mod verbs;

pub use client::{ChardevInfo, DeviceInfo, Guid, NetnsMode, PortInfo, RdmaClient, SystemInfo};
pub use error::{RdmaError, Result};
pub use message::DecodeError;
pub use transport::{kernel_reply, RdmaSocket, ReplayTransport, Transport};
