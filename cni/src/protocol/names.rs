//! Validated names that come from the runtime: interface names, container
//! IDs, network and plugin names, network-namespace paths. Each type can only
//! hold a value that is safe to use where jobnet uses it (netlink, file names).

use std::fmt;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Why a name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The value is empty.
    #[error("is empty")]
    Empty,
    /// The value is longer than allowed.
    #[error("is {len} bytes long, at most {max} allowed")]
    TooLong {
        /// Actual length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The value is `.` or `..`.
    #[error("must not be \".\" or \"..\"")]
    DotName,
    /// The value has a character that is not allowed.
    #[error("contains the character {0:?}, which is not allowed")]
    BadChar(char),
    /// The value must start with a letter or digit.
    #[error("must start with a letter or digit")]
    BadFirstChar,
    /// A path that should be absolute is not.
    #[error("is not an absolute path")]
    NotAbsolute,
}

/// Checks the charset `[A-Za-z0-9][A-Za-z0-9_.-]*` the spec uses for container
/// IDs and network names, with a length limit.
fn check_cni_name(s: &str, max: usize) -> Result<(), NameError> {
    let first = s.chars().next().ok_or(NameError::Empty)?;
    if s.len() > max {
        return Err(NameError::TooLong { len: s.len(), max });
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(NameError::BadChar(c));
    }
    if !first.is_ascii_alphanumeric() {
        return Err(NameError::BadFirstChar);
    }
    Ok(())
}

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            /// The validated string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A Linux interface name: 1-15 bytes, not `.`/`..`, no `/`, `:` or whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfName(String);
string_newtype!(IfName);

impl IfName {
    /// IFNAMSIZ - 1: the kernel's limit without the terminating NUL.
    pub const MAX_LEN: usize = 15;

    /// Validates an interface name as the kernel's `dev_valid_name` does.
    pub fn new(s: &str) -> Result<Self, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > Self::MAX_LEN {
            return Err(NameError::TooLong {
                len: s.len(),
                max: Self::MAX_LEN,
            });
        }
        if s == "." || s == ".." {
            return Err(NameError::DotName);
        }
        if let Some(c) = s
            .chars()
            .find(|&c| c == '/' || c == ':' || c == '\0' || c.is_whitespace())
        {
            return Err(NameError::BadChar(c));
        }
        Ok(Self(s.to_owned()))
    }
}

/// A container ID as the spec defines it (`[A-Za-z0-9][A-Za-z0-9_.-]*`), at
/// most [`ContainerId::MAX_LEN`] bytes: always a safe single file-name component.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId(String);
string_newtype!(ContainerId);

impl ContainerId {
    /// Leaves room for a prefix and an interface name within NAME_MAX (255).
    pub const MAX_LEN: usize = 200;

    /// Validates a container ID.
    pub fn new(s: &str) -> Result<Self, NameError> {
        check_cni_name(s, Self::MAX_LEN)?;
        Ok(Self(s.to_owned()))
    }
}

/// A network name (`name` in the config), same rules as a container ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetworkName(String);
string_newtype!(NetworkName);

impl NetworkName {
    /// Same bound as container IDs, so it is a safe file-name component too.
    pub const MAX_LEN: usize = 200;

    /// Validates a network name.
    pub fn new(s: &str) -> Result<Self, NameError> {
        check_cni_name(s, Self::MAX_LEN)?;
        Ok(Self(s.to_owned()))
    }
}

/// The name of a plugin executable (`type`, `ipam.type`): a plain file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PluginName(String);
string_newtype!(PluginName);

impl PluginName {
    /// NAME_MAX.
    pub const MAX_LEN: usize = 255;

    /// Validates that the name cannot point outside a CNI_PATH directory.
    pub fn new(s: &str) -> Result<Self, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > Self::MAX_LEN {
            return Err(NameError::TooLong {
                len: s.len(),
                max: Self::MAX_LEN,
            });
        }
        if s == "." || s == ".." {
            return Err(NameError::DotName);
        }
        if let Some(c) = s
            .chars()
            .find(|&c| c == '/' || c == '\\' || c == '\0' || c.is_control())
        {
            return Err(NameError::BadChar(c));
        }
        Ok(Self(s.to_owned()))
    }
}

/// Why a path is not a usable network namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The path could not be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not on nsfs (e.g. a plain file or directory).
    #[error("{0} is not a namespace file")]
    NotNsfs(PathBuf),
    /// The file is a namespace, but not a network namespace.
    #[error("{0} is a namespace but not a network namespace")]
    NotNetNamespace(PathBuf),
    /// The path is the plugin's own network namespace.
    #[error("{0} is jobnet's own network namespace")]
    OwnNamespace(PathBuf),
    /// A system call failed.
    #[error("{op} on {path}: {source}")]
    Sys {
        /// Which call.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// An absolute path that names a network namespace (`CNI_NETNS`). Only its
/// syntax is checked on construction; [`NetnsPath::verify`] checks the kernel object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NetnsPath(PathBuf);

impl NetnsPath {
    /// Accepts an absolute path without NUL bytes.
    pub fn new(s: &str) -> Result<Self, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.contains('\0') {
            return Err(NameError::BadChar('\0'));
        }
        if !s.starts_with('/') {
            return Err(NameError::NotAbsolute);
        }
        Ok(Self(PathBuf::from(s)))
    }

    /// The path.
    pub fn as_path(&self) -> &Path {
        &self.0
    }

    /// The path as the string the runtime passed (for `sandbox` in results).
    pub fn as_str(&self) -> &str {
        // Constructed from a &str, so this never falls back.
        self.0.to_str().unwrap_or_default()
    }

    /// Checks that the path is a network namespace on nsfs and not the one
    /// this process runs in (attaching a device there would hijack the host's).
    pub fn verify(&self) -> Result<(), NetnsError> {
        let path = self.0.clone();
        let file = File::open(&self.0).map_err(|source| NetnsError::Open {
            path: path.clone(),
            source,
        })?;
        let fs = nix::sys::statfs::fstatfs(&file).map_err(|e| NetnsError::Sys {
            op: "fstatfs",
            path: path.clone(),
            source: e.into(),
        })?;
        if fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC {
            return Err(NetnsError::NotNsfs(path));
        }
        // SAFETY: NS_GET_NSTYPE takes no argument and only reads the fd, which
        // stays open for the duration of the call.
        let ns_type = unsafe { libc::ioctl(file.as_raw_fd(), libc::NS_GET_NSTYPE) };
        if ns_type < 0 {
            return Err(NetnsError::Sys {
                op: "ioctl(NS_GET_NSTYPE)",
                path,
                source: std::io::Error::last_os_error(),
            });
        }
        if ns_type != libc::CLONE_NEWNET {
            return Err(NetnsError::NotNetNamespace(path));
        }
        let target = file.metadata().map_err(|source| NetnsError::Sys {
            op: "fstat",
            path: path.clone(),
            source,
        })?;
        if let Ok(own) = std::fs::metadata("/proc/thread-self/ns/net") {
            if own.dev() == target.dev() && own.ino() == target.ino() {
                return Err(NetnsError::OwnNamespace(path));
            }
        }
        Ok(())
    }
}

impl fmt::Display for NetnsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifname_rules() {
        for good in ["eth0", "net1", "a", "123456789012345", "rdma-0_x", "é"] {
            assert!(IfName::new(good).is_ok(), "{good}");
        }
        let cases: [(&str, NameError); 7] = [
            ("", NameError::Empty),
            ("1234567890123456", NameError::TooLong { len: 16, max: 15 }),
            (".", NameError::DotName),
            ("..", NameError::DotName),
            ("a/b", NameError::BadChar('/')),
            ("a:1", NameError::BadChar(':')),
            ("a b", NameError::BadChar(' ')),
        ];
        for (bad, want) in cases {
            assert_eq!(IfName::new(bad).unwrap_err(), want, "{bad:?}");
        }
        assert!(IfName::new("a\tb").is_err());
        assert!(IfName::new("a\nb").is_err());
        // Length counts bytes, as the kernel does: 8 two-byte chars = 16 bytes.
        assert!(IfName::new("éééééééé").is_err());
    }

    #[test]
    fn container_id_rules() {
        for good in ["abc", "0123abcdef", "a.b-c_d", &"a".repeat(200)] {
            assert!(ContainerId::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "../etc",
            "a/../b",
            ".hidden",
            "-x",
            "_x",
            "a b",
            "a/b",
            "ä",
            &"a".repeat(201),
        ] {
            assert!(ContainerId::new(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            ContainerId::new("../x").unwrap_err(),
            NameError::BadChar('/')
        );
    }

    #[test]
    fn plugin_name_rules() {
        for good in ["host-local", "static", "whereabouts", "my.ipam"] {
            assert!(PluginName::new(good).is_ok());
        }
        for bad in ["", ".", "..", "../bin/sh", "/usr/bin/x", "a\\b", "a\0b"] {
            assert!(PluginName::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn netns_path_syntax_and_kernel_checks() {
        assert_eq!(NetnsPath::new("").unwrap_err(), NameError::Empty);
        assert_eq!(
            NetnsPath::new("run/netns/x").unwrap_err(),
            NameError::NotAbsolute
        );
        let tmp = NetnsPath::new("/tmp").unwrap();
        assert!(matches!(tmp.verify(), Err(NetnsError::NotNsfs(_))));
        let missing = NetnsPath::new("/nonexistent/jobnet/ns").unwrap();
        assert!(matches!(missing.verify(), Err(NetnsError::Open { .. })));
        let own = NetnsPath::new("/proc/self/ns/net").unwrap();
        assert!(matches!(own.verify(), Err(NetnsError::OwnNamespace(_))));
        let uts = NetnsPath::new("/proc/self/ns/uts").unwrap();
        assert!(matches!(uts.verify(), Err(NetnsError::NotNetNamespace(_))));
    }
}
