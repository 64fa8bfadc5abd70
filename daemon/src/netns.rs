//! Is a network namespace path still a live namespace?

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `f_type` of the nsfs filesystem that namespace files live on.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// False only when `path` is certainly not a namespace any more: it is gone,
/// or the bind mount went away and left a plain file. Any other doubt (e.g.
/// permission) counts as alive, so reconciliation never releases on a guess.
pub fn alive(path: &str) -> bool {
    if path.is_empty() {
        return false;
    }
    let Ok(c) = CString::new(Path::new(path).as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string; `st` is plain old data the call fills.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the duration of the call.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        return !matches!(err.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR));
    }
    #[allow(clippy::unnecessary_cast)]
    let ftype = st.f_type as i64;
    ftype == NSFS_MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_netns_is_alive_and_files_are_not() {
        assert!(alive("/proc/self/ns/net"));
        let f = tempfile::NamedTempFile::new().unwrap();
        assert!(!alive(f.path().to_str().unwrap()));
        assert!(!alive("/nonexistent/jobnet/netns"));
        assert!(!alive(""));
    }
}
