//! Where the plugin keeps its per-node state: attachment caches and VF
//! ownership records.

use std::path::{Path, PathBuf};

/// Environment variable that moves the state directory (tests, chroots).
pub const STATE_DIR_ENV: &str = "JOBNET_STATE_DIR";
/// Default state directory, next to other CNI plugins' caches.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/cni/jobnet";

/// The plugin's state directory with its two sub-directories.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// `$JOBNET_STATE_DIR` if set and non-empty, else [`DEFAULT_STATE_DIR`].
    pub fn from_env() -> Self {
        match std::env::var_os(STATE_DIR_ENV) {
            Some(p) if !p.is_empty() => Self::new(p),
            _ => Self::new(DEFAULT_STATE_DIR),
        }
    }

    /// Uses `root` as the state directory.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of attachment caches (one file per attachment).
    pub fn attachments(&self) -> PathBuf {
        self.root.join("attachments")
    }

    /// Directory of VF ownership records (one file per owned VF).
    pub fn owners(&self) -> PathBuf {
        self.root.join("vfs")
    }

    /// Creates both sub-directories (mode 0700: they name pods and devices).
    pub fn ensure(&self) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true).mode(0o700);
        b.create(self.attachments())?;
        b.create(self.owners())
    }
}
