//! Typed errors for namespace handling and netlink requests.

use std::{fmt, io, path::PathBuf};

use nix::errno::Errno;

/// Why a network namespace could not be opened, created or removed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The path does not exist.
    #[error("network namespace {path:?} does not exist")]
    NotFound {
        /// The path that was looked up.
        path: PathBuf,
    },
    /// The path exists but is not a network namespace (e.g. a leftover file
    /// whose bind mount is gone, or another namespace type).
    #[error("{path:?} is not a network namespace")]
    NotNetns {
        /// The path that was looked up.
        path: PathBuf,
    },
    /// A named namespace with this name already exists.
    #[error("network namespace {name:?} already exists")]
    AlreadyExists {
        /// The rejected name.
        name: String,
    },
    /// The name cannot be used as a file name under the netns directory.
    #[error("invalid network namespace name {name:?}")]
    InvalidName {
        /// The rejected name.
        name: String,
    },
    /// A system call failed.
    #[error("{op} {path:?}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl NetnsError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
        source: impl Into<io::Error>,
    ) -> Self {
        NetnsError::Io {
            op,
            path: path.into(),
            source: source.into(),
        }
    }
}

/// The cause of a failed netlink operation.
#[derive(Debug)]
pub enum ErrorKind {
    /// The kernel answered with an error code, possibly with an extended-ack
    /// message explaining it.
    Kernel {
        /// The errno the kernel returned.
        errno: Errno,
        /// The kernel's extended-ack text, when it sent one.
        message: Option<String>,
    },
    /// A link looked up by name or index is not there.
    LinkNotFound,
    /// A move with rename was half done: the kernel moved the link into the
    /// target namespace under its previous name, then refused the new name.
    MovedNotRenamed {
        /// The errno of the refused rename (usually EEXIST).
        errno: Errno,
        /// The kernel's extended-ack text, when it sent one.
        message: Option<String>,
    },
    /// Opening or entering a network namespace failed.
    Netns(NetnsError),
    /// A socket or thread operation failed locally.
    Io(io::Error),
    /// The netlink connection went away before the answer arrived.
    ConnectionClosed,
    /// The kernel answered with something the operation did not expect.
    UnexpectedReply(String),
    /// The caller passed a value the kernel would reject anyway.
    InvalidInput(String),
    /// The operation needs a Tokio runtime and none is running.
    NoRuntime,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Kernel {
                errno,
                message: Some(m),
            } => write!(f, "{} ({errno:?}): {m}", errno.desc()),
            ErrorKind::Kernel {
                errno,
                message: None,
            } => write!(f, "{} ({errno:?})", errno.desc()),
            ErrorKind::LinkNotFound => f.write_str("link not found"),
            ErrorKind::MovedNotRenamed { errno, .. } => write!(
                f,
                "link moved under its previous name, rename refused: {} ({errno:?})",
                errno.desc()
            ),
            ErrorKind::Netns(e) => write!(f, "{e}"),
            ErrorKind::Io(e) => write!(f, "{e}"),
            ErrorKind::ConnectionClosed => f.write_str("netlink connection closed"),
            ErrorKind::UnexpectedReply(s) => write!(f, "unexpected reply: {s}"),
            ErrorKind::InvalidInput(s) => write!(f, "invalid input: {s}"),
            ErrorKind::NoRuntime => f.write_str("no Tokio runtime is running"),
        }
    }
}

/// A failed netlink operation: what was attempted, on what, and why it failed.
#[derive(Debug, thiserror::Error)]
#[error("{op} {target}: {kind}")]
pub struct NetlinkError {
    /// The operation, e.g. "set mtu".
    pub op: &'static str,
    /// What it was applied to, e.g. a link name or index.
    pub target: String,
    /// Why it failed.
    pub kind: ErrorKind,
}

impl NetlinkError {
    /// Builds an error for `op` on `target`.
    pub fn new(op: &'static str, target: impl fmt::Display, kind: ErrorKind) -> Self {
        NetlinkError {
            op,
            target: target.to_string(),
            kind,
        }
    }

    /// The kernel's errno, when the failure came from the kernel or a system call.
    pub fn errno(&self) -> Option<Errno> {
        match &self.kind {
            ErrorKind::Kernel { errno, .. } | ErrorKind::MovedNotRenamed { errno, .. } => {
                Some(*errno)
            }
            ErrorKind::LinkNotFound => Some(Errno::ENODEV),
            ErrorKind::Io(e) => e.raw_os_error().map(Errno::from_raw),
            ErrorKind::Netns(NetnsError::Io { source, .. }) => {
                source.raw_os_error().map(Errno::from_raw)
            }
            _ => None,
        }
    }

    /// True when the link (or the object addressed) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self.kind, ErrorKind::LinkNotFound)
            || matches!(self.kind, ErrorKind::Netns(NetnsError::NotFound { .. }))
            || matches!(
                self.errno(),
                Some(Errno::ENODEV | Errno::ENOENT | Errno::ESRCH | Errno::EADDRNOTAVAIL)
            )
    }

    /// True when the object to create already exists (name or address taken).
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(Errno::EEXIST)
    }

    /// True when the device refused the change for now (retry may help).
    pub fn is_busy(&self) -> bool {
        self.errno() == Some(Errno::EBUSY)
    }

    /// True when the device or driver does not support the operation
    /// (e.g. VF settings on a PF without SR-IOV support).
    pub fn is_not_supported(&self) -> bool {
        matches!(self.errno(), Some(Errno::EOPNOTSUPP))
    }
}
