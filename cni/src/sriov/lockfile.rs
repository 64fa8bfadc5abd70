//! Lock files: an exclusive `flock` taken within a bound, on the file that
//! is at the path when the lock is granted.
//!
//! A holder may unlink its file when done, so that nothing is left behind.
//! A waiter that opened the file before the unlink is then granted a lock
//! on a file no longer at the path, while a newcomer locks a new file
//! there: both would believe they hold the lock. So after the lock is
//! granted the locked file's inode is compared with the path's; on a
//! mismatch the lock is let go and taken again on what is at the path now.
//! Files are only ever unlinked by a holder of their lock.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::cache;
use super::state_dir::StateDir;
use super::steps::FaultHook;

/// First pause between two tries of a held lock; it doubles up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(2);
/// Longest pause between two tries.
const MAX_POLL: Duration = Duration::from_millis(50);
/// Largest lock-file body read (records are a few hundred bytes).
const MAX_BODY: u64 = 4096;

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another operation held it for the whole bound.
    #[error("{path} stayed locked by another operation for {waited:?}")]
    Timeout {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
    /// The file could not be opened, locked or inspected.
    #[error("lock file {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Whether a missing lock file is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// Create the file when it does not exist.
    Create,
    /// Only lock a file that exists.
    Existing,
}

/// A held lock on the file at `path`. Dropping it lets the lock go and,
/// when [`LockedFile::unlink_on_drop`] is set, removes the file first
/// (while still holding the lock, so that a waiter sees it gone).
#[derive(Debug)]
pub struct LockedFile {
    path: PathBuf,
    lock: Flock<File>,
    unlink: bool,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LockError + '_ {
    move |source| LockError::Io {
        path: path.to_owned(),
        source,
    }
}

/// True when `file` is the file at `path` (a missing path is not).
fn is_at_path(file: &File, path: &Path) -> std::io::Result<bool> {
    let locked = file.metadata()?;
    match std::fs::metadata(path) {
        Ok(now) => Ok(locked.dev() == now.dev() && locked.ino() == now.ino()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Locks `file` before `deadline`, trying again while someone holds it.
fn lock_until(
    mut file: File,
    path: &Path,
    started: Instant,
    deadline: Instant,
) -> Result<Flock<File>, LockError> {
    let mut pause = FIRST_POLL;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((f, Errno::EWOULDBLOCK)) | Err((f, Errno::EINTR)) => file = f,
            Err((_, e)) => return Err(io(path)(e.into())),
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(LockError::Timeout {
                path: path.to_owned(),
                waited: now - started,
            });
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(MAX_POLL);
    }
}

/// Locks the file at `path`, waiting at most `wait` for other holders.
/// `Ok(None)` when `open` is [`Open::Existing`] and there is no file.
/// The lock starts with [`LockedFile::unlink_on_drop`] off.
pub fn acquire(
    path: &Path,
    open: Open,
    wait: Duration,
    hook: &dyn FaultHook,
) -> Result<Option<LockedFile>, LockError> {
    let started = Instant::now();
    let deadline = started + wait;
    loop {
        let opened = OpenOptions::new()
            .read(true)
            .write(true)
            .create(open == Open::Create)
            .truncate(false)
            .mode(0o600)
            .open(path);
        let file = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && open == Open::Existing => {
                return Ok(None)
            }
            Err(e) => return Err(io(path)(e)),
        };
        hook.before_lock(path);
        let lock = lock_until(file, path, started, deadline)?;
        if is_at_path(&lock, path).map_err(io(path))? {
            return Ok(Some(LockedFile {
                path: path.to_owned(),
                lock,
                unlink: false,
            }));
        }
        // The holder we waited for removed (or replaced) the file: this
        // lock guards nothing. Take the one at the path now.
        drop(lock);
        if Instant::now() >= deadline {
            return Err(LockError::Timeout {
                path: path.to_owned(),
                waited: started.elapsed(),
            });
        }
    }
}

/// Locks one attachment (`container_id`, `ifname`) for one ADD, DEL or GC
/// of it, waiting at most `wait`. The file goes when the lock is dropped.
pub fn lock_attachment(
    state: &StateDir,
    container_id: &str,
    ifname: &str,
    wait: Duration,
    hook: &dyn FaultHook,
) -> Result<LockedFile, LockError> {
    let path = cache::lock_path_for(state, container_id, ifname);
    state.ensure().map_err(io(&path))?;
    let mut lock = acquire(&path, Open::Create, wait, hook)?
        .ok_or_else(|| io(&path)(std::io::ErrorKind::NotFound.into()))?;
    lock.unlink_on_drop(true);
    Ok(lock)
}

impl LockedFile {
    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether dropping the lock removes the file.
    pub fn unlink_on_drop(&mut self, unlink: bool) {
        self.unlink = unlink;
    }

    /// The file's content (at most a few KiB).
    pub fn read(&mut self) -> std::io::Result<String> {
        let mut buf = String::new();
        self.lock.seek(SeekFrom::Start(0))?;
        (&*self.lock).take(MAX_BODY).read_to_string(&mut buf)?;
        Ok(buf)
    }

    /// Replaces the file's content.
    pub fn write(&mut self, body: &[u8]) -> std::io::Result<()> {
        self.lock.set_len(0)?;
        self.lock.seek(SeekFrom::Start(0))?;
        self.lock.write_all(body)
    }

    /// Lets child processes (a delegated plugin) inherit the lock: it is
    /// then held until they exit too, even if this process is killed.
    pub fn inherit_by_children(&self) -> std::io::Result<()> {
        nix::fcntl::fcntl(
            &*self.lock,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )
        .map(drop)
        .map_err(std::io::Error::from)
    }

    /// Removes the file and lets the lock go.
    pub fn remove(mut self) -> std::io::Result<()> {
        self.unlink = false;
        let r = match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
        drop(self);
        r
    }
}

impl Drop for LockedFile {
    fn drop(&mut self) {
        if self.unlink {
            if let Err(e) = std::fs::remove_file(&self.path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot remove lock file");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sriov::NoFaults;

    #[test]
    fn a_waiter_of_a_removed_file_locks_the_one_at_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.lock");
        let mut first = acquire(&p, Open::Create, Duration::ZERO, &NoFaults)
            .unwrap()
            .unwrap();
        first.write(b"first").unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                acquire(&p, Open::Existing, Duration::from_secs(20), &NoFaults)
                    .unwrap()
                    .unwrap()
            });
            // The waiter has the old file open (or will find the new one).
            std::thread::sleep(Duration::from_millis(50));
            first.remove().unwrap();
            let mut second = acquire(&p, Open::Create, Duration::ZERO, &NoFaults)
                .unwrap()
                .unwrap();
            second.write(b"second").unwrap();
            drop(second);
            let mut got = waiter.join().unwrap();
            assert_eq!(got.read().unwrap(), "second");
        });
    }

    #[test]
    fn the_wait_is_bounded_and_missing_files_are_none() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("y.lock");
        assert!(acquire(&p, Open::Existing, Duration::ZERO, &NoFaults)
            .unwrap()
            .is_none());
        let mut held = acquire(&p, Open::Create, Duration::ZERO, &NoFaults)
            .unwrap()
            .unwrap();
        let started = Instant::now();
        let err = acquire(&p, Open::Create, Duration::from_millis(200), &NoFaults).unwrap_err();
        assert!(matches!(err, LockError::Timeout { .. }), "{err}");
        assert!(started.elapsed() >= Duration::from_millis(200));
        held.unlink_on_drop(true);
        drop(held);
        assert!(!p.exists());
    }
}
