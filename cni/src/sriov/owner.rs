//! VF ownership: exactly one attachment may hold a VF at a time.
//!
//! A VF is claimed by creating `vfs/<pci>.owner` with `O_EXCL` (atomic, no
//! lock file to leak) and holding an exclusive `flock` on it for the whole
//! operation. A second ADD for the same VF either finds the claim held by a
//! running operation (try again later) or owned by another attachment
//! (refused), and a DEL that runs while a new ADD waits can never hand the VF
//! out twice: the record only disappears after the VF is fully restored.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use jobnet_hw::PciAddr;
use nix::fcntl::{Flock, FlockArg};

use super::state_dir::StateDir;
use super::steps::{FaultHook, NoFaults};

/// Largest ownership record we are willing to read.
const MAX_RECORD: u64 = 4096;

/// Who holds a VF.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OwnerRecord {
    /// Container ID of the owning attachment.
    pub container_id: String,
    /// Interface name of the owning attachment.
    pub ifname: String,
    /// Network namespace path given at ADD.
    pub netns: String,
}

/// Why a VF could not be claimed or released.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    /// Another attachment owns the VF.
    #[error("VF {pci} is owned by container {} interface {}", .owner.container_id, .owner.ifname)]
    OwnedByOther {
        /// The VF.
        pci: PciAddr,
        /// Its current owner.
        owner: OwnerRecord,
    },
    /// Another jobnet process is working on this VF right now.
    #[error("VF {pci} is being attached or detached by another operation")]
    Busy {
        /// The VF.
        pci: PciAddr,
    },
    /// The ownership record could not be read or written.
    #[error("VF ownership record {path}: {source}")]
    Io {
        /// The record file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// An exclusive, locked claim on a VF. Dropping it unlocks but keeps the
/// record (the attachment stays owned); [`VfClaim::release`] removes it.
#[derive(Debug)]
pub struct VfClaim {
    path: PathBuf,
    // Held, not read: the flock lasts as long as the claim.
    _lock: Flock<File>,
    /// The record as held.
    pub record: OwnerRecord,
    /// True when this claim created the record (a new attachment), false
    /// when it re-took a record this same attachment already held.
    pub fresh: bool,
}

fn record_path(state: &StateDir, pci: PciAddr) -> PathBuf {
    // PciAddr's Display is the canonical `dddd:bb:dd.f`: never a path.
    state.owners().join(format!("{pci}.owner"))
}

fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> OwnerError + '_ {
    move |source| OwnerError::Io {
        path: path.to_owned(),
        source,
    }
}

fn lock(file: File, pci: PciAddr, wait: bool) -> Result<Flock<File>, OwnerError> {
    let arg = if wait {
        FlockArg::LockExclusive
    } else {
        FlockArg::LockExclusiveNonblock
    };
    Flock::lock(file, arg).map_err(|(_, _)| OwnerError::Busy { pci })
}

fn read_record(file: &mut File) -> std::io::Result<Option<OwnerRecord>> {
    let mut buf = String::new();
    file.seek(SeekFrom::Start(0))?;
    file.take(MAX_RECORD).read_to_string(&mut buf)?;
    Ok(serde_json::from_str(&buf).ok())
}

/// Claims `pci` for `want`; idempotent for the same attachment.
pub fn claim(state: &StateDir, pci: PciAddr, want: OwnerRecord) -> Result<VfClaim, OwnerError> {
    claim_with_hook(state, pci, want, &NoFaults)
}

/// [`claim`] with the test hook called between opening and locking.
pub fn claim_with_hook(
    state: &StateDir,
    pci: PciAddr,
    want: OwnerRecord,
    hook: &dyn FaultHook,
) -> Result<VfClaim, OwnerError> {
    let path = record_path(state, pci);
    state.ensure().map_err(io(&path))?;
    match OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(file) => {
            // Lock before writing: a racer that opens the empty file sees
            // the lock and backs off as Busy.
            let mut lock = lock(file, pci, false)?;
            let body = serde_json::to_vec(&want).map_err(|e| io(&path)(e.into()))?;
            lock.write_all(&body).map_err(io(&path))?;
            Ok(VfClaim {
                path,
                _lock: lock,
                record: want,
                fresh: true,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io(&path))?;
            hook.before_lock(&path);
            let mut lock = lock(file, pci, false)?;
            let current = read_record(&mut lock).map_err(io(&path))?;
            match current {
                Some(owner)
                    if owner.container_id == want.container_id && owner.ifname == want.ifname =>
                {
                    Ok(VfClaim {
                        path,
                        _lock: lock,
                        record: owner,
                        fresh: false,
                    })
                }
                Some(owner) => Err(OwnerError::OwnedByOther { pci, owner }),
                // Unlocked and unreadable: a claimer died between create and
                // write. Take it over.
                None => {
                    lock.set_len(0).map_err(io(&path))?;
                    let body = serde_json::to_vec(&want).map_err(|e| io(&path)(e.into()))?;
                    lock.write_all(&body).map_err(io(&path))?;
                    Ok(VfClaim {
                        path,
                        _lock: lock,
                        record: want,
                        fresh: true,
                    })
                }
            }
        }
        Err(e) => Err(io(&path)(e)),
    }
}

/// Takes the lock of an existing claim for DEL, waiting for a running
/// operation on the VF to finish. `Ok(None)` when nobody owns the VF.
pub fn lock_existing(state: &StateDir, pci: PciAddr) -> Result<Option<VfClaim>, OwnerError> {
    lock_existing_with_hook(state, pci, &NoFaults)
}

/// [`lock_existing`] with the test hook called between opening and locking.
pub fn lock_existing_with_hook(
    state: &StateDir,
    pci: PciAddr,
    hook: &dyn FaultHook,
) -> Result<Option<VfClaim>, OwnerError> {
    let path = record_path(state, pci);
    let file = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path)(e)),
    };
    hook.before_lock(&path);
    let mut lock = lock(file, pci, true)?;
    // The holder we waited for may have released the VF meanwhile.
    if !path.exists() {
        return Ok(None);
    }
    let record = read_record(&mut lock).map_err(io(&path))?;
    Ok(record.map(|record| VfClaim {
        path,
        _lock: lock,
        record,
        fresh: false,
    }))
}

/// Reads the owner of `pci` without locking (for CHECK and diagnostics).
pub fn owner_of(state: &StateDir, pci: PciAddr) -> Option<OwnerRecord> {
    let mut f = File::open(record_path(state, pci)).ok()?;
    read_record(&mut f).ok().flatten()
}

impl VfClaim {
    /// Removes the ownership record; the VF is free once this returns.
    pub fn release(self) -> Result<(), OwnerError> {
        // Unlink while still holding the lock so a waiter that wakes up
        // sees the record gone.
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&self.path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(cid: &str) -> OwnerRecord {
        OwnerRecord {
            container_id: cid.into(),
            ifname: "net1".into(),
            netns: "/run/netns/x".into(),
        }
    }

    #[test]
    fn claim_is_exclusive_idempotent_and_releasable() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::new(dir.path());
        let pci: PciAddr = "0000:3b:00.2".parse().unwrap();

        let a = claim(&st, pci, rec("a")).unwrap();
        assert!(a.fresh);
        // Held by a running operation: Busy.
        assert!(matches!(
            claim(&st, pci, rec("b")),
            Err(OwnerError::Busy { .. })
        ));
        drop(a);
        // Owned, unlocked: another attachment is refused, the same one re-takes it.
        match claim(&st, pci, rec("b")) {
            Err(OwnerError::OwnedByOther { owner, .. }) => assert_eq!(owner.container_id, "a"),
            other => panic!("expected OwnedByOther, got {other:?}"),
        }
        let again = claim(&st, pci, rec("a")).unwrap();
        assert!(!again.fresh);
        again.release().unwrap();
        assert!(owner_of(&st, pci).is_none());
        let b = claim(&st, pci, rec("b")).unwrap();
        assert!(b.fresh);
        assert_eq!(owner_of(&st, pci).unwrap().container_id, "b");
    }

    #[test]
    fn torn_record_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::new(dir.path());
        st.ensure().unwrap();
        let pci: PciAddr = "0000:3b:00.3".parse().unwrap();
        std::fs::write(record_path(&st, pci), b"").unwrap();
        let c = claim(&st, pci, rec("c")).unwrap();
        assert!(c.fresh);
        assert_eq!(c.record.container_id, "c");
    }

    #[test]
    fn lock_existing_on_free_vf_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::new(dir.path());
        let pci: PciAddr = "0000:3b:00.4".parse().unwrap();
        assert!(lock_existing(&st, pci).unwrap().is_none());
        drop(claim(&st, pci, rec("d")).unwrap());
        let held = lock_existing(&st, pci).unwrap().unwrap();
        assert_eq!(held.record.container_id, "d");
    }
}
