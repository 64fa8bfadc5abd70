//! Collective-ops hints per pod, under `<run_dir>/pods/<containerID>/`:
//! `nccl.env` (what NCCL should use), `topo.xml` (the NCCL topology file
//! restricted to the pod's GPUs and VFs) and `pod.json` (what the two were
//! rendered from).
//!
//! The files cover every committed jobnet attachment of the container, as
//! NCCL sees one pod; they are written when an attachment is committed and
//! rewritten or removed when one is released. The files on disk are the
//! only per-pod state: `pod.json` holds the pod's attachments and GPUs (the
//! GPUs are not part of the engine's records, they come from the reserve
//! request), so memory does not grow with the number of pods and a
//! restarted daemon can tell which pods are current without rendering
//! anything. Each pod's file work runs under a lock striped by container
//! ID, on the blocking pool, never on the async workers. Container IDs
//! become one validated path component, never anything more.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use jobnet_api::{ApiError, Attachment, AttachmentKey, EnvVar, ErrorCode, PodHints};
use jobnet_hw::topology::hints::nccl_env_vars;
use jobnet_hw::topology::{nccl_env, topo_xml, CpuInfo, HintOptions, PodNic, PodView};
use jobnet_hw::{rdma, PciAddr, SysfsRoot};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, OwnedMutexGuard};

use crate::topology::Snapshot;
use crate::validate;

/// Directory under the run dir that holds one directory per pod.
pub const PODS_DIR: &str = "pods";
/// The NCCL environment file.
pub const NCCL_ENV: &str = "nccl.env";
/// The NCCL topology file.
pub const TOPO_XML: &str = "topo.xml";
/// The pod's attachments and GPUs, for rewriting and for restarts.
const POD_STATE: &str = "pod.json";
/// Lock stripes: pods whose IDs hash alike share one; enough that 64
/// concurrent commits rarely wait for each other's few file writes.
const LOCK_STRIPES: usize = 64;

/// Why hints could not be written or removed.
#[derive(Debug, thiserror::Error)]
pub enum HintError {
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The container ID cannot name a directory.
    #[error("container ID {0:?} cannot name a hints directory")]
    BadContainerId(String),
    /// The blocking task doing the file work did not finish.
    #[error("hints file task failed: {0}")]
    Task(String),
}

/// `id` as a single safe path component (a valid container ID, not `.`/`..`).
pub fn pod_dir_name(id: &str) -> Result<&str, ApiError> {
    validate::container_id(id)?;
    if id == "." || id == ".." {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            "containerID may not be \".\" or \"..\"",
        ));
    }
    Ok(id)
}

fn bad_id(id: &str) -> HintError {
    HintError::BadContainerId(id.chars().take(64).collect())
}

/// A cheap, stable fingerprint of a container ID (for sets of live pods).
pub fn pod_hash(id: &str) -> u64 {
    let mut h = DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

/// One committed attachment of a pod, as `pod.json` keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Part {
    attachment: Attachment,
    #[serde(default)]
    gpus: Vec<PciAddr>,
}

/// `pod.json`: what the pod's files were rendered from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct PodState {
    #[serde(default)]
    parts: BTreeMap<String, Part>,
    #[serde(default)]
    env: Vec<(String, String)>,
}

impl PodState {
    /// The version marker: an attachment's (ifname, reservation time) names
    /// one incarnation of it, and a committed attachment never changes.
    fn matches(&self, marker: &[(String, u64)]) -> bool {
        self.parts.len() == marker.len()
            && marker.iter().all(|(ifname, at)| {
                self.parts
                    .get(ifname)
                    .is_some_and(|p| p.attachment.reserved_at_ms == *at)
            })
    }
}

/// A pod to check: its container ID and the marker of its committed
/// attachments (ifname, reservation time), as the store lists them.
pub type PodMarker = (String, Vec<(String, u64)>);

/// What one hints sync did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Pods whose hints were (re)written.
    pub written: usize,
    /// Pod directories removed (no committed attachment left).
    pub removed: usize,
}

/// GPUs of a reservation, kept until its commit.
#[derive(Debug)]
struct Pending {
    gpus: Vec<PciAddr>,
    since: Instant,
}

/// Held while a pod's files are read or changed.
#[derive(Debug)]
pub struct PodGuard(#[allow(dead_code)] OwnedMutexGuard<()>);

/// The hints files of every pod on the node.
#[derive(Debug)]
pub struct HintStore {
    dir: PathBuf,
    sysfs: SysfsRoot,
    cpu: CpuInfo,
    pool_rails: BTreeMap<String, u16>,
    stripes: Vec<Arc<tokio::sync::Mutex<()>>>,
    pending: Mutex<HashMap<AttachmentKey, Pending>>,
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> HintError + 'a {
    move |source| HintError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// Writes `text` to `dir/name` through a temp file and a rename, so a
/// reader sees the old file or the new one, never half of one.
fn write_atomic(dir: &Path, name: &str, text: &str) -> Result<(), HintError> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(io_err("creating", &tmp))?;
    f.write_all(text.as_bytes())
        .map_err(io_err("writing", &tmp))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(io_err("renaming into place", &path))
}

/// Writes `text` to `dir/name`, a name that does not exist yet (in a
/// directory this write created: nobody reads it before `pod.json`, written
/// last, says the files are complete), without the temp file and rename.
fn write_new(dir: &Path, name: &str, text: &str) -> Result<(), HintError> {
    let path = dir.join(name);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&path)
        .map_err(io_err("creating", &path))?;
    f.write_all(text.as_bytes())
        .map_err(io_err("writing", &path))
}

/// Creates the pod directory `path` (mode 0755) unless it is already a real
/// directory; the common case (a new pod) costs one `mkdir`. True when this
/// call created it (it is empty).
fn ensure_pod_dir(path: &Path) -> Result<bool, HintError> {
    let mkdir = |p: &Path| fs::DirBuilder::new().mode(0o755).create(p);
    match mkdir(path) {
        Ok(()) => return Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // The pods directory itself is missing (first pod, or removed).
            if let Some(parent) = path.parent() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(parent)
                    .map_err(io_err("creating", parent))?;
            }
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            match fs::symlink_metadata(path) {
                Ok(md) if md.is_dir() => return Ok(false),
                // Something else took the name: it is ours to replace.
                Ok(_) => fs::remove_file(path).map_err(io_err("removing", path))?,
                Err(e) => return Err(io_err("inspecting", path)(e)),
            }
        }
        Err(e) => return Err(io_err("creating", path)(e)),
    }
    mkdir(path).map_err(io_err("creating", path))?;
    Ok(true)
}

/// Removes a pod directory (a real directory only; a symlink is unlinked).
fn remove_pod_dir(path: &Path) -> Result<bool, HintError> {
    match fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => fs::remove_dir_all(path)
            .map(|()| true)
            .map_err(io_err("removing", path)),
        Ok(_) => fs::remove_file(path)
            .map(|()| true)
            .map_err(io_err("removing", path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("inspecting", path)(e)),
    }
}

/// The pod's `pod.json`, when it is there and readable.
fn read_state(dir: &Path) -> Option<PodState> {
    let text = fs::read(dir.join(POD_STATE)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Both hints files are in place.
fn files_present(dir: &Path) -> bool {
    dir.join(NCCL_ENV).is_file() && dir.join(TOPO_XML).is_file()
}

/// Union of the parts' GPUs, first-seen order.
fn pod_gpus<'a>(parts: impl IntoIterator<Item = &'a Part>) -> Vec<PciAddr> {
    let mut out: Vec<PciAddr> = Vec::new();
    for p in parts {
        for g in &p.gpus {
            if !out.contains(g) {
                out.push(*g);
            }
        }
    }
    out
}

/// Runs file work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, HintError> + Send + 'static,
) -> Result<T, HintError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HintError::Task(e.to_string()))?
}

/// What is rendered for a pod.
struct Rendered {
    env: Vec<(String, String)>,
    nccl_env: String,
    topo_xml: String,
}

impl HintStore {
    /// Hints under `<run_dir>/pods`; `pool_rails` is each pool's rail count
    /// (a pool with several rails is rail-optimized: `NCCL_CROSS_NIC=0`).
    pub fn new(run_dir: &Path, sysfs: SysfsRoot, pool_rails: BTreeMap<String, u16>) -> Self {
        Self {
            dir: run_dir.join(PODS_DIR),
            sysfs,
            cpu: CpuInfo::detect(),
            pool_rails,
            stripes: (0..LOCK_STRIPES)
                .map(|_| Arc::new(tokio::sync::Mutex::new(())))
                .collect(),
            pending: Mutex::new(HashMap::new()),
        }
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<AttachmentKey, Pending>> {
        // Each critical section leaves the map consistent.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The directory of container `id`'s hints.
    pub fn pod_dir(&self, id: &str) -> Result<PathBuf, ApiError> {
        Ok(self.dir.join(pod_dir_name(id)?))
    }

    /// Serializes file work on pod `id` (commit, release, sync of that pod).
    pub async fn lock_pod(&self, id: &str) -> PodGuard {
        let n = self.stripes.len().max(1);
        let i = usize::try_from(pod_hash(id) % n as u64).unwrap_or(0);
        let m = match self.stripes.get(i) {
            Some(m) => m.clone(),
            None => Arc::new(tokio::sync::Mutex::new(())),
        };
        PodGuard(m.lock_owned().await)
    }

    /// Keeps the pod's GPUs of a reserve until its commit.
    pub fn remember_gpus(&self, key: &AttachmentKey, gpus: Vec<PciAddr>) {
        let mut p = self.pending();
        if gpus.is_empty() {
            p.remove(key);
        } else {
            p.insert(
                key.clone(),
                Pending {
                    gpus,
                    since: Instant::now(),
                },
            );
        }
    }

    /// GPUs are kept for this reservation.
    pub fn is_pending(&self, key: &AttachmentKey) -> bool {
        self.pending().contains_key(key)
    }

    /// Drops GPUs kept since before `before` for reservations not in `seen`
    /// (they expired or were released behind the API's back).
    pub fn prune_pending(&self, seen: &HashSet<AttachmentKey>, before: Instant) {
        self.pending()
            .retain(|k, p| p.since >= before || seen.contains(k));
    }

    fn take_gpus(&self, key: &AttachmentKey) -> Option<Vec<PciAddr>> {
        self.pending().remove(key).map(|p| p.gpus)
    }

    /// The pod's view of its interfaces, with RDMA devices read now (after
    /// the CNI configured the addresses, so the GID table holds them).
    fn pod_view(&self, parts: &BTreeMap<String, Part>, snap: &Snapshot) -> PodView {
        let mut nics = Vec::new();
        for part in parts.values() {
            let att = &part.attachment;
            for (i, vf) in att.vfs.iter().enumerate() {
                let rdma = rdma::devices_of_pci(&self.sysfs, vf.pci)
                    .ok()
                    .and_then(|d| d.into_iter().next())
                    .or_else(|| {
                        let nic = snap.topo.nic_of(vf.pci)?;
                        nic.vf(vf.pci)?.rdma.first().cloned()
                    });
                nics.push(PodNic {
                    rail: snap.rail_of(vf.pci),
                    pf: vf.pf_pci,
                    vf: vf.pci,
                    ifname: jobnet_api::rail_ifname(&att.ifname, i, vf.rail),
                    rdma,
                    addresses: att
                        .addresses
                        .iter()
                        .filter(|a| a.rail == vf.rail)
                        .map(|a| a.address.addr())
                        .collect(),
                });
            }
        }
        nics.sort_by(|a, b| (a.rail, &a.ifname).cmp(&(b.rail, &b.ifname)));
        PodView {
            gpus: pod_gpus(parts.values()),
            nics,
        }
    }

    fn render(&self, dir: &Path, parts: &BTreeMap<String, Part>, snap: &Snapshot) -> Rendered {
        let pod = self.pod_view(parts, snap);
        let opts = HintOptions {
            rail_optimized: parts.values().any(|p| {
                self.pool_rails
                    .get(&p.attachment.pool)
                    .is_some_and(|r| *r > 1)
            }),
            topo_file: Some(dir.join(TOPO_XML).display().to_string()),
        };
        Rendered {
            env: nccl_env_vars(&pod, &opts),
            nccl_env: nccl_env(&pod, &opts),
            topo_xml: topo_xml(&snap.topo, &pod, &self.cpu),
        }
    }

    /// Writes a pod's files from `state` (or removes its directory when it
    /// has no part). `pod.json` goes last: it only ever describes files
    /// that are in place.
    fn write_state(
        &self,
        dir: &Path,
        mut state: PodState,
        snap: &Snapshot,
    ) -> Result<Option<Rendered>, HintError> {
        if state.parts.is_empty() {
            remove_pod_dir(dir)?;
            return Ok(None);
        }
        let fresh = ensure_pod_dir(dir)?;
        let write = if fresh { write_new } else { write_atomic };
        let r = self.render(dir, &state.parts, snap);
        write(dir, TOPO_XML, &r.topo_xml)?;
        write(dir, NCCL_ENV, &r.nccl_env)?;
        state.env.clone_from(&r.env);
        let json = serde_json::to_string(&state).map_err(|e| HintError::Io {
            what: "encoding",
            path: dir.join(POD_STATE),
            source: io::Error::other(e),
        })?;
        write(dir, POD_STATE, &json)?;
        Ok(Some(r))
    }

    fn commit_blocking(
        &self,
        att: Attachment,
        gpus: Option<Vec<PciAddr>>,
        snap: &Snapshot,
    ) -> Result<(), HintError> {
        let dir = self
            .pod_dir(&att.container_id)
            .map_err(|_| bad_id(&att.container_id))?;
        let mut state = read_state(&dir).unwrap_or_default();
        let before = state.parts.get(&att.ifname);
        // Without GPUs from the reserve (a commit after a restart, or a
        // repeated commit) the ones already recorded for this incarnation stay.
        let gpus = gpus.unwrap_or_else(|| {
            before
                .filter(|p| p.attachment.reserved_at_ms == att.reserved_at_ms)
                .map(|p| p.gpus.clone())
                .unwrap_or_default()
        });
        let part = Part {
            attachment: att,
            gpus,
        };
        if before == Some(&part) && files_present(&dir) {
            return Ok(());
        }
        state.parts.insert(part.attachment.ifname.clone(), part);
        self.write_state(&dir, state, snap).map(drop)
    }

    /// Records a committed attachment in its pod's files; they are in place
    /// when this returns (the CNI prints its result right after the commit).
    pub async fn committed(
        self: &Arc<Self>,
        att: Attachment,
        snap: Arc<Snapshot>,
    ) -> Result<(), HintError> {
        let id = att.container_id.clone();
        pod_dir_name(&id).map_err(|_| bad_id(&id))?;
        let gpus = self.take_gpus(&att.key());
        let guard = self.lock_pod(&id).await;
        let me = self.clone();
        blocking(move || {
            let _guard = guard;
            me.commit_blocking(att, gpus, &snap)
        })
        .await
    }

    /// Forgets a released attachment; rewrites or removes its pod's files.
    pub async fn released(
        self: &Arc<Self>,
        key: AttachmentKey,
        snap: Arc<Snapshot>,
    ) -> Result<(), HintError> {
        self.pending().remove(&key);
        let Ok(dir) = self.pod_dir(&key.container_id) else {
            return Ok(());
        };
        let guard = self.lock_pod(&key.container_id).await;
        let me = self.clone();
        blocking(move || {
            let _guard = guard;
            let Some(mut state) = read_state(&dir) else {
                // No state: whatever is there was not written for a live pod.
                return remove_pod_dir(&dir).map(drop);
            };
            if state.parts.remove(&key.ifname).is_none() {
                return Ok(());
            }
            me.write_state(&dir, state, &snap).map(drop)
        })
        .await
    }

    /// Of `pods` (container ID and the marker of its committed attachments),
    /// the ones whose files are missing or were written for other
    /// attachments. Reads each `pod.json` once; renders nothing.
    pub async fn stale_pods(self: &Arc<Self>, pods: Vec<PodMarker>) -> Vec<String> {
        let me = self.clone();
        blocking(move || {
            Ok(pods
                .into_iter()
                .filter(|(id, marker)| {
                    let Ok(dir) = me.pod_dir(id) else {
                        return false;
                    };
                    !(read_state(&dir).is_some_and(|s| s.matches(marker)) && files_present(&dir))
                })
                .map(|(id, _)| id)
                .collect())
        })
        .await
        .unwrap_or_default()
    }

    /// Rewrites pod `id`'s files for exactly `atts` (its committed
    /// attachments, read under `_guard`); GPUs come from the previous
    /// `pod.json` or a pending reserve.
    pub async fn rebuild(
        self: &Arc<Self>,
        _guard: &PodGuard,
        id: &str,
        atts: Vec<Attachment>,
        snap: Arc<Snapshot>,
    ) -> Result<(), HintError> {
        let dir = self.pod_dir(id).map_err(|_| bad_id(id))?;
        let pending: Vec<Option<Vec<PciAddr>>> =
            atts.iter().map(|a| self.take_gpus(&a.key())).collect();
        let me = self.clone();
        blocking(move || {
            let old = read_state(&dir).unwrap_or_default();
            let mut state = PodState::default();
            for (att, gpus) in atts.into_iter().zip(pending) {
                let gpus = gpus.unwrap_or_else(|| {
                    old.parts
                        .get(&att.ifname)
                        .filter(|p| p.attachment.reserved_at_ms == att.reserved_at_ms)
                        .map(|p| p.gpus.clone())
                        .unwrap_or_default()
                });
                state.parts.insert(
                    att.ifname.clone(),
                    Part {
                        attachment: att,
                        gpus,
                    },
                );
            }
            me.write_state(&dir, state, &snap).map(drop)
        })
        .await
    }

    /// Removes pod `id`'s directory; true when there was one.
    pub async fn remove_pod(self: &Arc<Self>, _guard: &PodGuard, id: &str) -> bool {
        let Ok(dir) = self.pod_dir(id) else {
            return false;
        };
        match blocking(move || remove_pod_dir(&dir)).await {
            Ok(removed) => removed,
            Err(e) => {
                tracing::warn!(container = %id, error = %e, "removing stale hints");
                false
            }
        }
    }

    /// The names of the pod directories on disk, streamed (bounded memory
    /// however many there are).
    pub fn pod_dir_names(self: &Arc<Self>) -> mpsc::Receiver<String> {
        let (tx, rx) = mpsc::channel(256);
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            let Ok(entries) = fs::read_dir(&dir) else {
                return;
            };
            for e in entries.flatten() {
                let Ok(name) = e.file_name().into_string() else {
                    continue;
                };
                if pod_dir_name(&name).is_ok() && tx.blocking_send(name).is_err() {
                    return;
                }
            }
        });
        rx
    }

    /// The hints of the pod of `key` as its files hold them; `not-found`
    /// when they do not cover `key`.
    pub async fn hints(self: &Arc<Self>, key: &AttachmentKey) -> Result<PodHints, ApiError> {
        let dir = self.pod_dir(&key.container_id)?;
        let not_found = || {
            ApiError::new(
                ErrorCode::NotFound,
                format!("no hints for {key}: it is not committed on this node"),
            )
        };
        let ifname = key.ifname.clone();
        let read = blocking(move || {
            let Some(state) = read_state(&dir).filter(|s| s.parts.contains_key(&ifname)) else {
                return Ok(None);
            };
            let nccl_env = fs::read_to_string(dir.join(NCCL_ENV));
            let topo_xml = fs::read_to_string(dir.join(TOPO_XML));
            let (Ok(nccl_env), Ok(topo_xml)) = (nccl_env, topo_xml) else {
                return Ok(None);
            };
            Ok(Some(PodHints {
                container_id: String::new(),
                attachments: state.parts.keys().cloned().collect(),
                dir: dir.display().to_string(),
                env: state
                    .env
                    .into_iter()
                    .map(|(name, value)| EnvVar { name, value })
                    .collect(),
                nccl_env,
                topo_xml,
            }))
        })
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
        let mut h = read.ok_or_else(not_found)?;
        h.container_id.clone_from(&key.container_id);
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_dir_names_are_single_components() {
        assert_eq!(pod_dir_name("abc-1.2_x").unwrap(), "abc-1.2_x");
        for bad in ["", ".", "..", "a/b", "../x", "a b", "a\0b"] {
            assert!(pod_dir_name(bad).is_err(), "{bad:?}");
        }
        assert!(pod_dir_name(&"a".repeat(300)).is_err());
    }

    #[test]
    fn the_marker_names_the_attachments_and_their_incarnation() {
        let att: Attachment = serde_json::from_value(serde_json::json!({
            "containerID": "c1", "ifname": "net1", "netns": "/x", "node": "n", "job": "j",
            "pool": "p", "state": "committed", "vfs": [], "addresses": [],
            "isolation": {"mode": "none"}, "reservedAtMs": 7
        }))
        .unwrap();
        let mut s = PodState::default();
        s.parts.insert(
            "net1".into(),
            Part {
                attachment: att,
                gpus: vec![],
            },
        );
        assert!(s.matches(&[("net1".into(), 7)]));
        assert!(!s.matches(&[("net1".into(), 8)]), "a new incarnation");
        assert!(!s.matches(&[("net2".into(), 7)]));
        assert!(!s.matches(&[("net1".into(), 7), ("net2".into(), 1)]));
        assert!(!s.matches(&[]));
    }
}
