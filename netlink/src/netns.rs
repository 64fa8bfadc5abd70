//! Network namespaces: open an existing one by path (keeping its fd) and
//! create/delete named ones the way `ip netns add/del` does.

use std::{
    fs::{File, OpenOptions},
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd},
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use nix::{
    mount::{mount, umount2, MntFlags, MsFlags},
    sched::{setns, unshare, CloneFlags},
    sys::statfs::fstatfs,
};

use crate::error::NetnsError;

/// Directory where named network namespaces are bind-mounted.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Magic number of the nsfs filesystem that backs namespace files.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// An open network namespace. The file descriptor is kept, so the namespace
/// stays usable (and cannot be swapped under us) for as long as this lives.
#[derive(Debug)]
pub struct Netns {
    file: File,
    path: PathBuf,
}

impl Netns {
    /// Opens the network namespace at `path` (e.g. `/proc/<pid>/ns/net` or
    /// `/run/netns/<name>`), checking that it really is a network namespace.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, NetnsError> {
        let path = path.as_ref();
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => NetnsError::NotFound {
                    path: path.to_path_buf(),
                },
                _ => NetnsError::io("open", path, e),
            })?;
        let stat = fstatfs(&file).map_err(|e| NetnsError::io("statfs", path, e))?;
        // A leftover /run/netns file whose bind mount was undone sits on tmpfs.
        #[allow(clippy::unnecessary_cast)]
        if stat.filesystem_type().0 as i64 != NSFS_MAGIC {
            return Err(NetnsError::NotNetns {
                path: path.to_path_buf(),
            });
        }
        // nsfs also carries mount, pid, ... namespaces: ask which type it is.
        // SAFETY: NS_GET_NSTYPE takes no argument and only reads the fd.
        let ns_type = unsafe { libc::ioctl(file.as_raw_fd(), libc::NS_GET_NSTYPE) };
        if ns_type < 0 {
            return Err(NetnsError::io(
                "NS_GET_NSTYPE",
                path,
                io::Error::last_os_error(),
            ));
        }
        if ns_type != libc::CLONE_NEWNET {
            return Err(NetnsError::NotNetns {
                path: path.to_path_buf(),
            });
        }
        Ok(Netns {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The network namespace of the calling thread.
    pub fn current() -> Result<Self, NetnsError> {
        Self::open("/proc/thread-self/ns/net")
    }

    /// The path this namespace was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when both handles refer to the same namespace.
    pub fn same_as(&self, other: &Netns) -> Result<bool, NetnsError> {
        let a = self
            .file
            .metadata()
            .map_err(|e| NetnsError::io("stat", &self.path, e))?;
        let b = other
            .file
            .metadata()
            .map_err(|e| NetnsError::io("stat", &other.path, e))?;
        Ok(a.dev() == b.dev() && a.ino() == b.ino())
    }

    /// Duplicates the handle (a new fd on the same namespace).
    pub fn try_clone(&self) -> Result<Self, NetnsError> {
        Ok(Netns {
            file: self
                .file
                .try_clone()
                .map_err(|e| NetnsError::io("dup", &self.path, e))?,
            path: self.path.clone(),
        })
    }

    /// Runs `f` on a short-lived OS thread that has entered this namespace, so
    /// no thread of the caller (in particular no async worker) ever changes
    /// namespace. Sockets created inside `f` belong to this namespace.
    pub fn run<T, F>(&self, f: F) -> Result<T, NetnsError>
    where
        T: Send,
        F: FnOnce() -> T + Send,
    {
        let fd = self.file.as_fd();
        std::thread::scope(|s| {
            s.spawn(|| {
                setns(fd, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| NetnsError::io("setns", &self.path, e))?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|_| {
                Err(NetnsError::io(
                    "run in",
                    &self.path,
                    io::Error::other("thread panicked"),
                ))
            })
        })
    }
}

impl AsRawFd for Netns {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.file.as_raw_fd()
    }
}

impl AsFd for Netns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// A named network namespace under [`NETNS_RUN_DIR`], like those made by
/// `ip netns add`. It is not removed on drop; see [`NetnsGuard`] for that.
#[derive(Debug)]
pub struct NamedNetns {
    name: String,
    path: PathBuf,
}

impl NamedNetns {
    /// Creates a new named network namespace. Fails with
    /// [`NetnsError::AlreadyExists`] if the name is taken.
    pub fn create(name: &str) -> Result<Self, NetnsError> {
        validate_name(name)?;
        let dir = Path::new(NETNS_RUN_DIR);
        ensure_run_dir(dir)?;
        let path = dir.join(name);
        // O_EXCL makes two creators of the same name race safely.
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => NetnsError::AlreadyExists {
                    name: name.to_string(),
                },
                _ => NetnsError::io("create", &path, e),
            })?;
        if let Err(e) = bind_new_netns(&path) {
            // Undo: the mount point must not outlive a failed create.
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(NamedNetns {
            name: name.to_string(),
            path,
        })
    }

    /// Refers to an existing named namespace without checking it.
    pub fn from_name(name: &str) -> Result<Self, NetnsError> {
        validate_name(name)?;
        Ok(NamedNetns {
            name: name.to_string(),
            path: Path::new(NETNS_RUN_DIR).join(name),
        })
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind-mount path, `/run/netns/<name>`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the namespace.
    pub fn open(&self) -> Result<Netns, NetnsError> {
        Netns::open(&self.path)
    }

    /// Removes the namespace's name (the namespace itself lives on while
    /// something still uses it, as with `ip netns del`).
    pub fn delete(self) -> Result<(), NetnsError> {
        delete_path(&self.path)
    }

    /// Wraps this namespace in a guard that deletes it on drop.
    pub fn into_guard(self) -> NetnsGuard {
        NetnsGuard { ns: Some(self) }
    }
}

/// Deletes its named namespace when dropped (also on panic), so tests never
/// leave namespaces behind.
#[derive(Debug)]
pub struct NetnsGuard {
    ns: Option<NamedNetns>,
}

impl NetnsGuard {
    /// Creates a named namespace guarded by the returned value.
    pub fn create(name: &str) -> Result<Self, NetnsError> {
        NamedNetns::create(name).map(NamedNetns::into_guard)
    }

    /// The guarded namespace's name.
    pub fn name(&self) -> &str {
        self.ns.as_ref().map_or("", |n| n.name())
    }

    /// The guarded namespace's path.
    pub fn path(&self) -> &Path {
        self.ns.as_ref().map_or(Path::new(""), |n| n.path())
    }

    /// Opens the guarded namespace.
    pub fn open(&self) -> Result<Netns, NetnsError> {
        Netns::open(self.path())
    }

    /// Deletes now and reports the result instead of ignoring it in drop.
    pub fn delete(mut self) -> Result<(), NetnsError> {
        match self.ns.take() {
            Some(ns) => ns.delete(),
            None => Ok(()),
        }
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Some(ns) = self.ns.take() {
            let _ = ns.delete();
        }
    }
}

fn validate_name(name: &str) -> Result<(), NetnsError> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.len() > 255
        || name.contains('/')
        || name.contains('\0');
    if bad {
        return Err(NetnsError::InvalidName {
            name: name.to_string(),
        });
    }
    Ok(())
}

/// Makes the run dir a shared mount point so that namespace mounts made
/// under it propagate to other mount namespaces (containers see them too).
fn ensure_run_dir(dir: &Path) -> Result<(), NetnsError> {
    std::fs::create_dir_all(dir).map_err(|e| NetnsError::io("mkdir", dir, e))?;
    let shared = || {
        mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) => Ok(()),
        // Not a mount point yet: bind it onto itself, then share it.
        Err(nix::errno::Errno::EINVAL) => {
            mount(
                Some(dir),
                dir,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| NetnsError::io("bind mount", dir, e))?;
            shared().map_err(|e| NetnsError::io("make shared", dir, e))
        }
        Err(e) => Err(NetnsError::io("make shared", dir, e)),
    }
}

/// Creates a fresh network namespace on a throwaway thread and pins it by
/// bind-mounting that thread's namespace file onto `target`.
fn bind_new_netns(target: &Path) -> Result<(), NetnsError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            unshare(CloneFlags::CLONE_NEWNET).map_err(|e| NetnsError::io("unshare", target, e))?;
            mount(
                Some("/proc/thread-self/ns/net"),
                target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| NetnsError::io("bind mount", target, e))
        })
        .join()
        .unwrap_or_else(|_| {
            Err(NetnsError::io(
                "create",
                target,
                io::Error::other("thread panicked"),
            ))
        })
    })
}

fn delete_path(path: &Path) -> Result<(), NetnsError> {
    match umount2(path, MntFlags::MNT_DETACH) {
        // EINVAL: not mounted (half-created); still remove the file.
        Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
        Err(nix::errno::Errno::ENOENT) => {
            return Err(NetnsError::NotFound {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(NetnsError::io("umount", path, e)),
    }
    std::fs::remove_file(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => NetnsError::NotFound {
            path: path.to_path_buf(),
        },
        _ => NetnsError::io("remove", path, e),
    })
}
