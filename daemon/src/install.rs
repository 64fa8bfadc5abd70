//! Installs the `jobnet` CNI plugin binary into a host's CNI plugin directory.
//!
//! The container image has no shell, so the copy that a DaemonSet's init step
//! would usually do with `cp` lives here. The runtime may execute the plugin
//! at any moment, so it must never see a half-written file: the binary is
//! written to a temporary file in the target directory and renamed over the
//! old one, which is atomic within one filesystem and leaves a running old
//! binary untouched.

use std::fs::{self, File, Permissions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// File name of the plugin, as network configs name it in `"type"`.
pub const PLUGIN_NAME: &str = "jobnet";

/// Mode of the installed plugin: the runtime runs it, nobody edits it in place.
const PLUGIN_MODE: u32 = 0o755;

/// Why the plugin could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The plugin binary to copy could not be found or read.
    #[error("plugin binary {path}: {source}")]
    Source {
        /// The binary.
        path: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The plugin binary to copy is not a regular file.
    #[error("plugin binary {0} is not a regular file")]
    SourceNotFile(String),
    /// The target directory is missing or unusable.
    #[error("CNI directory {path}: {source}")]
    TargetDir {
        /// The directory.
        path: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The target path exists but is not a directory.
    #[error("CNI directory {0} is not a directory")]
    TargetNotDir(String),
    /// Writing or renaming the new file failed.
    #[error("installing {path}: {source}")]
    Write {
        /// The file being installed.
        path: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// The plugin binary shipped beside the running executable (the image keeps
/// `jobnet` and `jobnetd` in one directory).
pub fn plugin_beside_current_exe() -> Result<PathBuf, InstallError> {
    let exe = std::env::current_exe().map_err(|source| InstallError::Source {
        path: "<current executable>".into(),
        source,
    })?;
    let dir = exe.parent().unwrap_or_else(|| Path::new("/"));
    Ok(dir.join(PLUGIN_NAME))
}

/// Copies `source` to `dir/jobnet` atomically and returns the installed path.
///
/// On any error the directory is left as it was: the old plugin (if any) is
/// untouched and no temporary file remains.
pub fn install_plugin(source: &Path, dir: &Path) -> Result<PathBuf, InstallError> {
    let shown_dir = dir.display().to_string();
    let meta = fs::metadata(dir).map_err(|source| InstallError::TargetDir {
        path: shown_dir.clone(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(InstallError::TargetNotDir(shown_dir));
    }

    let shown_src = source.display().to_string();
    let src_err = |source| InstallError::Source {
        path: shown_src.clone(),
        source,
    };
    // Opened before the temporary file exists, so a missing binary creates nothing.
    let mut src = File::open(source).map_err(src_err)?;
    if !src.metadata().map_err(src_err)?.is_file() {
        return Err(InstallError::SourceNotFile(shown_src));
    }

    let target = dir.join(PLUGIN_NAME);
    let write_err = |source| InstallError::Write {
        path: target.display().to_string(),
        source,
    };
    // A leading dot and a suffix keep runtimes that list the directory from
    // mistaking the partial file for a plugin; dropping it on error removes it.
    let mut tmp = tempfile::Builder::new()
        .prefix(".jobnet-install-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(write_err)?;
    io::copy(&mut src, tmp.as_file_mut()).map_err(write_err)?;
    // fchmod on the open file: exact mode whatever the umask.
    tmp.as_file()
        .set_permissions(Permissions::from_mode(PLUGIN_MODE))
        .map_err(write_err)?;
    // Data on disk before the name points at it, so a crash after the rename
    // cannot leave an empty or truncated plugin.
    tmp.as_file().sync_all().map_err(write_err)?;
    tmp.persist(&target).map_err(|e| write_err(e.error))?;
    // The rename itself is durable only once the directory is synced.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(write_err)?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn source_file(dir: &Path, content: &[u8]) -> PathBuf {
        let p = dir.join("jobnet-src");
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, Permissions::from_mode(0o600)).unwrap();
        p
    }

    #[test]
    fn installs_with_exec_mode_and_same_bytes() {
        let src_dir = tempfile::tempdir().unwrap();
        let cni = tempfile::tempdir().unwrap();
        let src = source_file(src_dir.path(), b"\x7fELF new plugin");

        let got = install_plugin(&src, cni.path()).unwrap();

        assert_eq!(got, cni.path().join("jobnet"));
        assert_eq!(fs::read(&got).unwrap(), b"\x7fELF new plugin");
        assert_eq!(fs::metadata(&got).unwrap().mode() & 0o7777, 0o755);
        assert_eq!(entries(cni.path()), vec!["jobnet"]);
    }

    #[test]
    fn replaces_an_existing_plugin_by_rename() {
        let src_dir = tempfile::tempdir().unwrap();
        let cni = tempfile::tempdir().unwrap();
        let old = cni.path().join("jobnet");
        fs::write(&old, b"old plugin").unwrap();
        // A process still running the old binary keeps its inode: the new file
        // must be a new inode, not the old one rewritten in place.
        let held = File::open(&old).unwrap();
        let old_ino = held.metadata().unwrap().ino();
        let src = source_file(src_dir.path(), b"new plugin");

        install_plugin(&src, cni.path()).unwrap();

        let new_meta = fs::metadata(&old).unwrap();
        assert_ne!(new_meta.ino(), old_ino);
        assert_eq!(fs::read(&old).unwrap(), b"new plugin");
        assert_eq!(
            std::io::read_to_string(&held).unwrap(),
            "old plugin",
            "the old inode is unchanged"
        );
        assert_eq!(entries(cni.path()), vec!["jobnet"]);
    }

    #[test]
    fn missing_source_leaves_directory_untouched() {
        let cni = tempfile::tempdir().unwrap();
        fs::write(cni.path().join("jobnet"), b"old plugin").unwrap();

        let err = install_plugin(Path::new("/nonexistent/jobnet"), cni.path()).unwrap_err();

        assert!(matches!(err, InstallError::Source { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/jobnet"), "{err}");
        assert_eq!(entries(cni.path()), vec!["jobnet"]);
        assert_eq!(fs::read(cni.path().join("jobnet")).unwrap(), b"old plugin");
    }

    #[test]
    fn directory_as_source_is_refused() {
        let src_dir = tempfile::tempdir().unwrap();
        let cni = tempfile::tempdir().unwrap();

        let err = install_plugin(src_dir.path(), cni.path()).unwrap_err();

        assert!(matches!(err, InstallError::SourceNotFile(_)), "{err}");
        assert!(entries(cni.path()).is_empty());
    }

    #[test]
    fn failed_rename_leaves_no_temporary_file() {
        let src_dir = tempfile::tempdir().unwrap();
        let cni = tempfile::tempdir().unwrap();
        // A non-empty directory where the plugin goes: rename(2) refuses it
        // after the temporary file was fully written.
        fs::create_dir(cni.path().join("jobnet")).unwrap();
        fs::write(cni.path().join("jobnet/keep"), b"x").unwrap();
        let src = source_file(src_dir.path(), b"new plugin");

        let err = install_plugin(&src, cni.path()).unwrap_err();

        assert!(matches!(err, InstallError::Write { .. }), "{err}");
        assert_eq!(entries(cni.path()), vec!["jobnet"]);
        assert!(cni.path().join("jobnet/keep").exists());
    }

    #[test]
    fn missing_directory_is_a_clear_error() {
        let src_dir = tempfile::tempdir().unwrap();
        let src = source_file(src_dir.path(), b"plugin");
        let missing = src_dir.path().join("no-such-dir");

        let err = install_plugin(&src, &missing).unwrap_err();

        assert!(matches!(err, InstallError::TargetDir { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.starts_with("CNI directory "), "{msg}");
        assert!(msg.contains("no-such-dir"), "{msg}");
        assert!(msg.contains("No such file or directory"), "{msg}");
    }

    #[test]
    fn file_as_directory_is_a_clear_error() {
        let src_dir = tempfile::tempdir().unwrap();
        let src = source_file(src_dir.path(), b"plugin");

        let err = install_plugin(&src, &src).unwrap_err();

        assert!(matches!(err, InstallError::TargetNotDir(_)), "{err}");
        assert!(err.to_string().ends_with("is not a directory"), "{err}");
    }
}
