//! Errors of the RDMA netlink client.

use crate::message::DecodeError;

/// Everything that can go wrong talking RDMA netlink.
#[derive(Debug, thiserror::Error)]
pub enum RdmaError {
    /// The kernel has no RDMA subsystem (`socket()` gave `EPROTONOSUPPORT`).
    #[error("RDMA netlink is not available on this kernel (no RDMA subsystem)")]
    NotAvailable,
    /// A system call failed.
    #[error("RDMA netlink {op}: {source}")]
    Io {
        /// The failing operation (`socket`, `sendto`, `recvfrom`, `setns`...).
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel refused the request.
    #[error("RDMA netlink request failed: {}{}", std::io::Error::from_raw_os_error(*.errno), .message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Kernel {
        /// Positive errno.
        errno: i32,
        /// The kernel's extended-ack text, when it sent one.
        message: Option<String>,
    },
    /// A reply was not well-formed.
    #[error("malformed RDMA netlink reply: {0}")]
    Decode(#[from] DecodeError),
    /// A reply of a kind the request cannot produce.
    #[error("unexpected RDMA netlink reply: {0}")]
    Unexpected(String),
    /// No RDMA device has this name (in the socket's netns).
    #[error("no RDMA device named {0:?}")]
    NoSuchDevice(String),
    /// A name that the kernel would reject (empty, too long, `/`, NUL...).
    #[error("invalid RDMA device name {0:?}")]
    InvalidName(String),
}

impl RdmaError {
    /// The errno behind this error, if it came from the kernel or a syscall.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Kernel { errno, .. } => Some(*errno),
            Self::Io { source, .. } => source.raw_os_error(),
            Self::NotAvailable => Some(libc::EPROTONOSUPPORT),
            _ => None,
        }
    }

    /// Whether the error means "that device is not here" (`ENODEV`, or a
    /// name lookup that found nothing).
    pub fn is_no_device(&self) -> bool {
        matches!(self, Self::NoSuchDevice(_)) || self.errno() == Some(libc::ENODEV)
    }

    pub(crate) fn io(op: &'static str) -> impl FnOnce(std::io::Error) -> Self {
        move |source| Self::Io { op, source }
    }
}

/// Result alias of this crate.
pub type Result<T, E = RdmaError> = std::result::Result<T, E>;
