//! Is a network namespace path still a live namespace, certainly gone, or
//! something jobnetd cannot tell from where it runs?

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `f_type` of the nsfs filesystem that namespace files live on.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// What jobnetd can say about a pod's netns path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetnsState {
    /// A namespace is mounted there.
    Alive,
    /// Certainly no namespace any more: a plain file where the bind mount
    /// was, a missing entry in a netns directory jobnetd sees (a mount point
    /// or one holding other namespaces), or a missing `/proc/<pid>`.
    Gone,
    /// jobnetd cannot see the path's directory as the runtime does (not
    /// mounted into its container), or the check itself failed: never a
    /// reason to release.
    Unknown,
}

fn statfs(path: &Path) -> Result<i64, std::io::Error> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated string; `st` is plain old data the call fills.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the duration of the call.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_type as i64)
}

/// Whether `dir` is a mount point in jobnetd's mount namespace.
fn is_mount_point(dir: &Path) -> bool {
    let Ok(canon) = dir.canonicalize() else {
        return false;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    // Field 5 is the mount point (octal escapes for spaces are rare here).
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| Path::new(m) == canon)
}

/// Whether `dir` holds at least one mounted namespace (it is the runtime's
/// netns directory as the runtime sees it).
fn holds_a_namespace(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries
        .flatten()
        .take(256)
        .any(|e| statfs(&e.path()).is_ok_and(|t| t == NSFS_MAGIC))
}

/// The state of the netns at `path` (a runtime's `CNI_NETNS`).
pub fn state(path: &str) -> NetnsState {
    if path.is_empty() {
        return NetnsState::Unknown;
    }
    let p = Path::new(path);
    match statfs(p) {
        Ok(NSFS_MAGIC) => NetnsState::Alive,
        // The file is there but the bind mount on it is not.
        Ok(_) => NetnsState::Gone,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
            let Some(dir) = p.parent() else {
                return NetnsState::Unknown;
            };
            // /proc/<pid>/ns/net: the process is gone (jobnetd shares the
            // host's PID namespace, as deploy/ runs it).
            if p.starts_with("/proc") {
                return NetnsState::Gone;
            }
            if dir.is_dir() && (is_mount_point(dir) || holds_a_namespace(dir)) {
                NetnsState::Gone
            } else {
                NetnsState::Unknown
            }
        }
        Err(_) => NetnsState::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alive_gone_and_unknown_are_told_apart() {
        assert_eq!(state("/proc/self/ns/net"), NetnsState::Alive);
        // A plain file: the namespace was unmounted from it.
        let f = tempfile::NamedTempFile::new().unwrap();
        assert_eq!(state(f.path().to_str().unwrap()), NetnsState::Gone);
        // A directory jobnetd cannot see, or one that is not a netns dir.
        assert_eq!(state("/nonexistent/jobnet/netns"), NetnsState::Unknown);
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("cni-1234");
        assert_eq!(state(missing.to_str().unwrap()), NetnsState::Unknown);
        assert_eq!(state(""), NetnsState::Unknown);
        // A process that is gone.
        assert_eq!(state("/proc/999999999/ns/net"), NetnsState::Gone);
    }

    #[test]
    fn a_missing_entry_of_a_mounted_netns_dir_is_gone() {
        if !nix::unistd::geteuid().is_root() {
            jobnet_tests::skip(
                "netns::a_missing_entry_of_a_mounted_netns_dir_is_gone",
                "needs root for ip netns",
            );
            return;
        }
        // `ip netns add` makes /run/netns a mount point holding namespaces.
        let name = format!("jnstate{}", std::process::id());
        let ok = std::process::Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip netns add {name}");
        let path = format!("/run/netns/{name}");
        assert_eq!(state(&path), NetnsState::Alive);
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &name])
            .status();
        assert_eq!(state(&path), NetnsState::Gone);
    }
}
