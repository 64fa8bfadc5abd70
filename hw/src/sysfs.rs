//! The sysfs root that every read goes through.

use std::path::{Path, PathBuf};

/// Environment variable that points jobnet at another sysfs tree.
pub const SYSFS_ROOT_ENV: &str = "JOBNET_SYSFS_ROOT";

/// Root of a sysfs tree (`/sys` on a real node, a temp dir in tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysfsRoot(PathBuf);

impl SysfsRoot {
    /// Uses `path` as the sysfs root.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }

    /// `$JOBNET_SYSFS_ROOT` when set and non-empty, else `/sys`.
    pub fn from_env() -> Self {
        match std::env::var_os(SYSFS_ROOT_ENV) {
            Some(p) if !p.is_empty() => Self::new(p),
            _ => Self::new("/sys"),
        }
    }

    /// The root directory itself.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `rel` below the root (`rel` is relative, e.g. `bus/pci/devices`).
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.0.join(rel)
    }

    /// Reads a sysfs attribute file, trimmed; `None` when absent or unreadable.
    pub fn read_attr(&self, rel: impl AsRef<Path>) -> Option<String> {
        std::fs::read_to_string(self.join(rel))
            .ok()
            .map(|s| s.trim().to_owned())
    }
}

impl Default for SysfsRoot {
    fn default() -> Self {
        Self::new("/sys")
    }
}
