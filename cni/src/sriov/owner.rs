//! VF ownership: exactly one attachment may hold a VF at a time.
//!
//! Every operation on a VF holds an exclusive lock on `vfs/<pci>.owner`
//! (see [`super::lockfile`]: bounded wait, and the lock is always on the file
//! at the path). What the file says depends on who owns the VF:
//!
//! - with delegated IPAM no daemon knows the VF, so the file is the owner
//!   record: written by ADD, kept until DEL. A record whose owner's netns is
//!   gone (and whose attachment cache agrees) is stale and taken over, so a
//!   missed DEL does not keep the VF forever;
//! - through jobnetd the daemon's reservation is the owner: the file only
//!   exists while ADD or DEL works on the VF (it names the holder, so the
//!   next DEL or GC of that attachment can clear it after a crash).
//!
//! A DEL that runs while a new ADD waits can never hand the VF out twice:
//! the record only disappears after the VF is fully restored.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jobnet_hw::PciAddr;

use super::cache::{self, CacheError};
use super::lockfile::{self, LockError, LockedFile, Open};
use super::record::AttachmentRecord;
use super::state_dir::StateDir;
use super::steps::{FaultHook, NoFaults};

/// Largest ownership record we are willing to read.
const MAX_RECORD: u64 = 4096;
/// How long ADD waits for another operation on its VF: past it, "try
/// again later" is quicker for the runtime than a hung ADD.
pub const ADD_LOCK_WAIT: Duration = Duration::from_secs(5);
/// How long DEL and GC wait: longer than an ADD holds a VF (its kernel
/// work and jobnetd's commit), so that DEL does not fail needlessly.
pub const DEL_LOCK_WAIT: Duration = Duration::from_secs(10);

/// Who holds a VF.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OwnerRecord {
    /// Container ID of the owning attachment.
    pub container_id: String,
    /// Interface name of the owning attachment.
    pub ifname: String,
    /// Network namespace path given at ADD.
    pub netns: String,
    /// The CNI network of the attachment (GC collects its own only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

impl OwnerRecord {
    /// True when the record names the attachment (`container_id`, `ifname`).
    pub fn is(&self, container_id: &str, ifname: &str) -> bool {
        self.container_id == container_id && self.ifname == ifname
    }
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
    /// Another jobnet process kept working on this VF for the whole wait.
    #[error("VF {pci} is being attached or detached by another operation (waited {waited:?})")]
    Busy {
        /// The VF.
        pci: PciAddr,
        /// How long we waited.
        waited: Duration,
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

/// What the VF's record said when a claim took it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Previous {
    /// Nothing (no file, or an empty or torn one).
    Nothing,
    /// This same attachment (a retried ADD).
    Same,
    /// Another attachment that no longer holds the VF: stale with
    /// delegated IPAM, any leftover through jobnetd. Its cache, if any,
    /// describes the VF's original state and must be undone first.
    Stale(OwnerRecord),
}

/// A held, exclusive claim on a VF. Dropping it lets the lock go; a claim
/// with a kept record ([`claim`]) leaves the record (the attachment stays
/// owned), a transient one ([`lock_transient`]) removes it;
/// [`VfClaim::release`] always removes it.
#[derive(Debug)]
pub struct VfClaim {
    file: LockedFile,
    /// The record as held.
    pub record: OwnerRecord,
    /// True when this claim did not find this attachment's own record.
    pub fresh: bool,
    /// What the record said before.
    pub previous: Previous,
}

/// The lock DEL and GC hold on a VF while they restore it. Dropping it
/// removes the file unless it names another attachment.
#[derive(Debug)]
pub struct VfLock {
    // Held, not read: the lock (and the file's fate) lasts as long as this.
    _file: LockedFile,
    /// What the record says: `None` for no or an unreadable record.
    pub record: Option<OwnerRecord>,
}

impl VfLock {
    /// True when the record names another attachment than
    /// (`container_id`, `ifname`): the VF is not this attachment's to touch.
    pub fn owned_by_other(&self, container_id: &str, ifname: &str) -> bool {
        self.record
            .as_ref()
            .is_some_and(|r| !r.is(container_id, ifname))
    }
}

/// Path of the VF's ownership record and lock file.
pub fn record_path(state: &StateDir, pci: PciAddr) -> PathBuf {
    // PciAddr's Display is the canonical `dddd:bb:dd.f`: never a path.
    state.owners().join(format!("{pci}.owner"))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OwnerError + '_ {
    move |source| OwnerError::Io {
        path: path.to_owned(),
        source,
    }
}

fn lock_error(pci: PciAddr) -> impl FnOnce(LockError) -> OwnerError {
    move |e| match e {
        LockError::Timeout { waited, .. } => OwnerError::Busy { pci, waited },
        LockError::Io { path, source } => OwnerError::Io { path, source },
    }
}

fn parse(body: &str) -> Option<OwnerRecord> {
    serde_json::from_str(body).ok()
}

fn write_record(file: &mut LockedFile, rec: &OwnerRecord) -> Result<(), OwnerError> {
    let body = serde_json::to_vec(rec).map_err(|e| io(file.path())(e.into()))?;
    let path = file.path().to_owned();
    file.write(&body).map_err(io(&path))
}

fn lock(
    state: &StateDir,
    pci: PciAddr,
    open: Open,
    wait: Duration,
    hook: &dyn FaultHook,
) -> Result<Option<(LockedFile, Option<OwnerRecord>)>, OwnerError> {
    let path = record_path(state, pci);
    if open == Open::Create {
        state.ensure().map_err(io(&path))?;
    }
    let Some(mut file) = lockfile::acquire(&path, open, wait, hook).map_err(lock_error(pci))?
    else {
        return Ok(None);
    };
    let body = file.read().map_err(io(&path))?;
    Ok(Some((file, parse(&body))))
}

/// [`lock`] making the file when there is none, so it is always there
/// (a `None` would be a bug of the lock file layer: reported as not found).
fn lock_created(
    state: &StateDir,
    pci: PciAddr,
    wait: Duration,
    hook: &dyn FaultHook,
) -> Result<(LockedFile, Option<OwnerRecord>), OwnerError> {
    lock(state, pci, Open::Create, wait, hook)?
        .ok_or_else(|| io(&record_path(state, pci))(std::io::ErrorKind::NotFound.into()))
}

/// True when the network namespace at `path` is gone: the path no longer
/// exists or no longer is a namespace file. Anything we cannot tell counts
/// as alive.
fn netns_gone(path: &Path) -> bool {
    match File::open(path) {
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        Ok(f) => nix::sys::statfs::fstatfs(&f)
            .is_ok_and(|fs| fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC),
    }
}

/// A delegated-IPAM owner record is stale when its owner's netns is gone
/// and its attachment cache agrees (it names this VF in that netns, or
/// there is none: the owner died before changing anything).
fn is_stale(state: &StateDir, pci: PciAddr, owner: &OwnerRecord) -> bool {
    let netns = Path::new(&owner.netns);
    if !netns_gone(netns) {
        return false;
    }
    let cache_path = cache::path_for(state, &owner.container_id, &owner.ifname);
    match cache::load::<AttachmentRecord>(&cache_path) {
        Ok(rec) => rec.pci == pci && rec.netns == netns,
        Err(CacheError::Missing(_)) => true,
        Err(_) => false,
    }
}

/// Claims `pci` for `want` and keeps the record until DEL; idempotent for
/// the same attachment.
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
    claim_with(state, pci, want, ADD_LOCK_WAIT, hook)
}

/// [`claim`] waiting at most `wait` for another operation on the VF.
pub fn claim_with(
    state: &StateDir,
    pci: PciAddr,
    want: OwnerRecord,
    wait: Duration,
    hook: &dyn FaultHook,
) -> Result<VfClaim, OwnerError> {
    let (mut file, current) = lock_created(state, pci, wait, hook)?;
    let previous = match current {
        None => Previous::Nothing,
        Some(o) if o.is(&want.container_id, &want.ifname) => Previous::Same,
        Some(o) if is_stale(state, pci, &o) => {
            tracing::info!(%pci, owner = %o.container_id, ifname = %o.ifname, netns = %o.netns,
                "VF owner's netns is gone: taking the stale record over");
            Previous::Stale(o)
        }
        Some(owner) => return Err(OwnerError::OwnedByOther { pci, owner }),
    };
    if let Err(e) = write_record(&mut file, &want) {
        if previous == Previous::Nothing {
            file.unlink_on_drop(true);
        }
        return Err(e);
    }
    Ok(VfClaim::new(file, want, previous))
}

/// Locks `pci` for `want` for the duration of one operation, through
/// jobnetd (whose reservation owns the VF): whatever record is there is
/// replaced, and the file goes when the claim is dropped or released.
pub fn lock_transient(
    state: &StateDir,
    pci: PciAddr,
    want: OwnerRecord,
    wait: Duration,
    hook: &dyn FaultHook,
) -> Result<VfClaim, OwnerError> {
    let (mut file, current) = lock_created(state, pci, wait, hook)?;
    file.unlink_on_drop(true);
    let previous = match current {
        None => Previous::Nothing,
        Some(o) if o.is(&want.container_id, &want.ifname) => Previous::Same,
        Some(o) => {
            tracing::info!(%pci, owner = %o.container_id, ifname = %o.ifname,
                "jobnetd reserved this VF: a leftover record of another attachment is taken over");
            Previous::Stale(o)
        }
    };
    // Names the holder, so a crash leaves a file its DEL or GC can find.
    write_record(&mut file, &want)?;
    Ok(VfClaim::new(file, want, previous))
}

/// Locks `pci` for DEL or GC of (`container_id`, `ifname`), waiting at
/// most `wait`; makes a lock file when there is no record.
pub fn lock_for_detach(
    state: &StateDir,
    pci: PciAddr,
    container_id: &str,
    ifname: &str,
    wait: Duration,
    hook: &dyn FaultHook,
) -> Result<VfLock, OwnerError> {
    let (mut file, record) = lock_created(state, pci, wait, hook)?;
    file.unlink_on_drop(record.as_ref().is_none_or(|r| r.is(container_id, ifname)));
    Ok(VfLock {
        _file: file,
        record,
    })
}

/// Takes the lock of an existing claim, waiting for a running operation on
/// the VF to finish (at most [`DEL_LOCK_WAIT`]). `Ok(None)` when nobody
/// owns the VF.
pub fn lock_existing(state: &StateDir, pci: PciAddr) -> Result<Option<VfClaim>, OwnerError> {
    lock_existing_with_hook(state, pci, &NoFaults)
}

/// [`lock_existing`] with the test hook called between opening and locking.
pub fn lock_existing_with_hook(
    state: &StateDir,
    pci: PciAddr,
    hook: &dyn FaultHook,
) -> Result<Option<VfClaim>, OwnerError> {
    let Some((file, record)) = lock(state, pci, Open::Existing, DEL_LOCK_WAIT, hook)? else {
        return Ok(None);
    };
    Ok(record.map(|record| VfClaim {
        file,
        record,
        fresh: false,
        previous: Previous::Same,
    }))
}

/// Reads the owner of `pci` without locking (for CHECK and diagnostics).
pub fn owner_of(state: &StateDir, pci: PciAddr) -> Option<OwnerRecord> {
    read_unlocked(&record_path(state, pci))
}

fn read_unlocked(path: &Path) -> Option<OwnerRecord> {
    let f = File::open(path).ok()?;
    let mut buf = String::new();
    f.take(MAX_RECORD).read_to_string(&mut buf).ok()?;
    parse(&buf)
}

/// Every VF whose record (read without locking) satisfies `keep`, with
/// the record: DEL and GC look for what an attachment left behind.
pub fn records(
    state: &StateDir,
    keep: impl Fn(&OwnerRecord) -> bool,
) -> Vec<(PciAddr, OwnerRecord)> {
    let Ok(dir) = std::fs::read_dir(state.owners()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pci) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".owner"))
            .and_then(|p| p.parse::<PciAddr>().ok())
        else {
            continue;
        };
        if let Some(rec) = read_unlocked(&entry.path()).filter(|r| keep(r)) {
            out.push((pci, rec));
        }
    }
    out
}

impl VfClaim {
    /// A claim of `file` for `record`, found holding `previous`.
    fn new(file: LockedFile, record: OwnerRecord, previous: Previous) -> Self {
        Self {
            file,
            record,
            fresh: previous != Previous::Same,
            previous,
        }
    }

    /// Removes the ownership record; the VF is free once this returns.
    pub fn release(self) -> Result<(), OwnerError> {
        let path = self.file.path().to_owned();
        self.file.remove().map_err(io(&path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(cid: &str, netns: &str) -> OwnerRecord {
        OwnerRecord {
            container_id: cid.into(),
            ifname: "net1".into(),
            netns: netns.into(),
            network: None,
        }
    }

    /// A netns path that exists while the test runs: ours.
    const LIVE: &str = "/proc/self/ns/net";

    fn quick(st: &StateDir, pci: PciAddr, r: OwnerRecord) -> Result<VfClaim, OwnerError> {
        claim_with(st, pci, r, Duration::ZERO, &NoFaults)
    }

    #[test]
    fn claim_is_exclusive_idempotent_and_releasable() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::new(dir.path());
        let pci: PciAddr = "0000:3b:00.2".parse().unwrap();

        let a = quick(&st, pci, rec("a", LIVE)).unwrap();
        assert!(a.fresh);
        // Held by a running operation: Busy.
        assert!(matches!(
            quick(&st, pci, rec("b", LIVE)),
            Err(OwnerError::Busy { .. })
        ));
        drop(a);
        // Owned, unlocked, owner alive: another attachment is refused, the
        // same one re-takes it.
        match quick(&st, pci, rec("b", LIVE)) {
            Err(OwnerError::OwnedByOther { owner, .. }) => assert_eq!(owner.container_id, "a"),
            other => panic!("expected OwnedByOther, got {other:?}"),
        }
        let again = quick(&st, pci, rec("a", LIVE)).unwrap();
        assert!(!again.fresh);
        assert_eq!(again.previous, Previous::Same);
        again.release().unwrap();
        assert!(owner_of(&st, pci).is_none());
        let b = quick(&st, pci, rec("b", LIVE)).unwrap();
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
        let c = quick(&st, pci, rec("c", LIVE)).unwrap();
        assert!(c.fresh);
        assert_eq!(c.record.container_id, "c");
    }

    #[test]
    fn an_owner_whose_netns_is_gone_is_stale_unless_its_cache_disagrees() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::new(dir.path());
        let pci: PciAddr = "0000:3b:00.5".parse().unwrap();
        let gone = dir.path().join("no-such-netns");
        let gone = gone.to_str().unwrap();
        drop(quick(&st, pci, rec("old", gone)).unwrap());
        // No cache: the owner changed nothing before it died.
        let c = quick(&st, pci, rec("new", LIVE)).unwrap();
        assert_eq!(c.previous, Previous::Stale(rec("old", gone)));
        assert_eq!(owner_of(&st, pci).unwrap().container_id, "new");
        c.release().unwrap();

        // A cache that does not confirm it (here: unreadable): not stale.
        drop(quick(&st, pci, rec("old", gone)).unwrap());
        let other: serde_json::Value =
            serde_json::json!({"netns": "/elsewhere", "pci": pci.to_string()});
        std::fs::write(cache::path_for(&st, "old", "net1"), other.to_string()).unwrap();
        assert!(matches!(
            quick(&st, pci, rec("new", LIVE)),
            Err(OwnerError::OwnedByOther { .. })
        ));
    }

    #[test]
    fn transient_locks_leave_nothing_and_detach_locks_keep_others_records() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::new(dir.path());
        let pci: PciAddr = "0000:3b:00.6".parse().unwrap();
        let t = lock_transient(&st, pci, rec("d", LIVE), Duration::ZERO, &NoFaults).unwrap();
        assert_eq!(owner_of(&st, pci).unwrap().container_id, "d");
        drop(t);
        assert!(!record_path(&st, pci).exists());

        let l = lock_for_detach(&st, pci, "d", "net1", Duration::ZERO, &NoFaults).unwrap();
        assert!(l.record.is_none());
        drop(l);
        assert!(!record_path(&st, pci).exists());

        drop(quick(&st, pci, rec("e", LIVE)).unwrap());
        let l = lock_for_detach(&st, pci, "d", "net1", Duration::ZERO, &NoFaults).unwrap();
        assert!(l.owned_by_other("d", "net1"));
        drop(l);
        assert_eq!(owner_of(&st, pci).unwrap().container_id, "e");
        let l = lock_for_detach(&st, pci, "e", "net1", Duration::ZERO, &NoFaults).unwrap();
        assert!(!l.owned_by_other("e", "net1"));
        drop(l);
        assert!(!record_path(&st, pci).exists());
    }

    #[test]
    fn lock_existing_on_free_vf_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::new(dir.path());
        let pci: PciAddr = "0000:3b:00.4".parse().unwrap();
        assert!(lock_existing(&st, pci).unwrap().is_none());
        drop(quick(&st, pci, rec("d", LIVE)).unwrap());
        let held = lock_existing(&st, pci).unwrap().unwrap();
        assert_eq!(held.record.container_id, "d");
    }
}
