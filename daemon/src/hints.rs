//! Collective-ops hints per pod, under `<run_dir>/pods/<containerID>/`:
//! `nccl.env` (what NCCL should use) and `topo.xml` (the NCCL topology file
//! restricted to the pod's GPUs and VFs).
//!
//! The files cover every committed jobnet attachment of the container, as
//! NCCL sees one pod; they are written when an attachment is committed and
//! rewritten or removed when one is released. The pod's GPUs are not part
//! of the engine's records, so they are kept from the reserve request (in
//! memory, and in `pod.json` beside the hints so a restarted daemon can
//! rebuild them). Container IDs become one validated path component,
//! never anything more.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use jobnet_api::{
    ApiError, Attachment, AttachmentKey, AttachmentState, EnvVar, ErrorCode, PodHints,
};
use jobnet_hw::topology::hints::nccl_env_vars;
use jobnet_hw::topology::{nccl_env, topo_xml, CpuInfo, HintOptions, PodNic, PodView};
use jobnet_hw::{rdma, PciAddr, SysfsRoot};

use crate::topology::Snapshot;
use crate::validate;

/// Directory under the run dir that holds one directory per pod.
pub const PODS_DIR: &str = "pods";
/// The NCCL environment file.
pub const NCCL_ENV: &str = "nccl.env";
/// The NCCL topology file.
pub const TOPO_XML: &str = "topo.xml";
/// The pod's GPUs per attachment, for rebuilding after a restart.
const POD_STATE: &str = "pod.json";

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

/// One committed attachment of a pod.
#[derive(Debug, Clone)]
struct Part {
    att: Attachment,
    gpus: Vec<PciAddr>,
}

/// What was written for a pod.
#[derive(Debug, Clone)]
struct Rendered {
    env: Vec<(String, String)>,
    nccl_env: String,
    topo_xml: String,
}

#[derive(Debug, Default)]
struct Pod {
    parts: BTreeMap<String, Part>,
    rendered: Option<Rendered>,
}

#[derive(Debug, Default)]
struct State {
    pods: BTreeMap<String, Pod>,
    /// GPUs from reserve requests not committed yet.
    pending: HashMap<AttachmentKey, Vec<PciAddr>>,
}

/// What one [`HintStore::sync`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Pods whose hints were (re)written.
    pub written: usize,
    /// Pod directories removed (no committed attachment left).
    pub removed: usize,
}

/// The hints files of every pod on the node.
#[derive(Debug)]
pub struct HintStore {
    dir: PathBuf,
    sysfs: SysfsRoot,
    cpu: CpuInfo,
    pool_rails: BTreeMap<String, u16>,
    state: Mutex<State>,
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

/// Creates `path` (mode 0755) unless it is already a real directory.
fn ensure_dir(path: &Path) -> Result<(), HintError> {
    match fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => return Ok(()),
        Ok(_) => {
            // Something else took the name: it is ours to replace.
            fs::remove_file(path).map_err(io_err("removing", path))?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("inspecting", path)(e)),
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
        .map_err(io_err("creating", path))
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

impl HintStore {
    /// Hints under `<run_dir>/pods`; `pool_rails` is each pool's rail count
    /// (a pool with several rails is rail-optimized: `NCCL_CROSS_NIC=0`).
    pub fn new(run_dir: &Path, sysfs: SysfsRoot, pool_rails: BTreeMap<String, u16>) -> Self {
        Self {
            dir: run_dir.join(PODS_DIR),
            sysfs,
            cpu: CpuInfo::detect(),
            pool_rails,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Each critical section leaves the maps consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The directory of container `id`'s hints.
    pub fn pod_dir(&self, id: &str) -> Result<PathBuf, ApiError> {
        Ok(self.dir.join(pod_dir_name(id)?))
    }

    /// Keeps the pod's GPUs of a reserve until its commit.
    pub fn remember_gpus(&self, key: &AttachmentKey, gpus: Vec<PciAddr>) {
        let mut st = self.lock();
        if gpus.is_empty() {
            st.pending.remove(key);
        } else {
            st.pending.insert(key.clone(), gpus);
        }
    }

    /// The pod's view of its interfaces, with RDMA devices read now (after
    /// the CNI configured the addresses, so the GID table holds them).
    fn pod_view(&self, parts: &BTreeMap<String, Part>, snap: &Snapshot) -> PodView {
        let mut nics = Vec::new();
        for part in parts.values() {
            for (i, vf) in part.att.vfs.iter().enumerate() {
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
                    ifname: jobnet_api::rail_ifname(&part.att.ifname, i, vf.rail),
                    rdma,
                    addresses: part
                        .att
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
            rail_optimized: parts
                .values()
                .any(|p| self.pool_rails.get(&p.att.pool).is_some_and(|r| *r > 1)),
            topo_file: Some(dir.join(TOPO_XML).display().to_string()),
        };
        Rendered {
            env: nccl_env_vars(&pod, &opts),
            nccl_env: nccl_env(&pod, &opts),
            topo_xml: topo_xml(&snap.topo, &pod, &self.cpu),
        }
    }

    /// Writes a pod's files (or removes its directory when it has no part).
    fn write_pod(&self, id: &str, pod: &mut Pod, snap: &Snapshot) -> Result<(), HintError> {
        let dir = self
            .pod_dir(id)
            .map_err(|_| HintError::BadContainerId(id.chars().take(64).collect()))?;
        if pod.parts.is_empty() {
            pod.rendered = None;
            remove_pod_dir(&dir)?;
            return Ok(());
        }
        ensure_dir(&self.dir)?;
        ensure_dir(&dir)?;
        let r = self.render(&dir, &pod.parts, snap);
        let gpus: BTreeMap<&str, &[PciAddr]> = pod
            .parts
            .iter()
            .map(|(k, p)| (k.as_str(), p.gpus.as_slice()))
            .collect();
        let state = serde_json::json!({ "gpus": gpus }).to_string();
        write_atomic(&dir, POD_STATE, &state)?;
        write_atomic(&dir, TOPO_XML, &r.topo_xml)?;
        write_atomic(&dir, NCCL_ENV, &r.nccl_env)?;
        pod.rendered = Some(r);
        Ok(())
    }

    /// GPUs recorded in a pod's `pod.json` for attachment `ifname`.
    fn gpus_on_disk(&self, id: &str, ifname: &str) -> Vec<PciAddr> {
        let Ok(dir) = self.pod_dir(id) else {
            return Vec::new();
        };
        let Ok(text) = fs::read_to_string(dir.join(POD_STATE)) else {
            return Vec::new();
        };
        serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("gpus")?.get(ifname).cloned())
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default()
    }

    /// Records a committed attachment and (re)writes its pod's hints.
    pub fn committed(&self, att: &Attachment, snap: &Snapshot) -> Result<(), HintError> {
        let id = att.container_id.as_str();
        pod_dir_name(id).map_err(|_| HintError::BadContainerId(id.chars().take(64).collect()))?;
        let mut st = self.lock();
        let key = att.key();
        let known = st
            .pods
            .get(id)
            .and_then(|p| p.parts.get(&att.ifname))
            .map(|p| p.gpus.clone());
        let gpus = match st.pending.remove(&key) {
            Some(g) => g,
            None => known.unwrap_or_else(|| self.gpus_on_disk(id, &att.ifname)),
        };
        let pod = st.pods.entry(id.to_owned()).or_default();
        pod.parts.insert(
            att.ifname.clone(),
            Part {
                att: att.clone(),
                gpus,
            },
        );
        self.write_pod(id, pod, snap)
    }

    /// Forgets a released attachment; rewrites or removes its pod's hints.
    pub fn released(&self, key: &AttachmentKey, snap: &Snapshot) -> Result<(), HintError> {
        let id = key.container_id.as_str();
        if pod_dir_name(id).is_err() {
            return Ok(());
        }
        let mut st = self.lock();
        st.pending.remove(key);
        let mut pod = st.pods.remove(id).unwrap_or_default();
        pod.parts.remove(&key.ifname);
        let res = self.write_pod(id, &mut pod, snap);
        if !pod.parts.is_empty() {
            st.pods.insert(id.to_owned(), pod);
        }
        res
    }

    /// The hints of the pod of `key`, when that attachment is committed.
    pub fn hints(&self, key: &AttachmentKey) -> Result<PodHints, ApiError> {
        let dir = self.pod_dir(&key.container_id)?;
        let st = self.lock();
        let pod = st
            .pods
            .get(&key.container_id)
            .filter(|p| p.parts.contains_key(&key.ifname));
        let (Some(pod), Some(r)) = (pod, pod.and_then(|p| p.rendered.as_ref())) else {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("no hints for {key}: it is not committed on this node"),
            ));
        };
        Ok(PodHints {
            container_id: key.container_id.clone(),
            attachments: pod.parts.keys().cloned().collect(),
            dir: dir.display().to_string(),
            env: r
                .env
                .iter()
                .map(|(name, value)| EnvVar {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            nccl_env: r.nccl_env.clone(),
            topo_xml: r.topo_xml.clone(),
        })
    }

    /// Makes the files match `all` (every attachment the engine records):
    /// writes pods whose committed attachments changed or whose files are
    /// missing, removes directories of pods with none left, and drops GPUs
    /// kept for reservations that are gone.
    pub fn sync(&self, all: &[Attachment], snap: &Snapshot) -> SyncReport {
        let mut report = SyncReport::default();
        let mut want: BTreeMap<&str, Vec<&Attachment>> = BTreeMap::new();
        for a in all {
            if a.state == AttachmentState::Committed && pod_dir_name(&a.container_id).is_ok() {
                want.entry(a.container_id.as_str()).or_default().push(a);
            }
        }
        let keys: HashSet<AttachmentKey> = all.iter().map(Attachment::key).collect();
        let mut st = self.lock();
        st.pending.retain(|k, _| keys.contains(k));
        for (id, atts) in &want {
            let files_there = self
                .pod_dir(id)
                .map(|d| d.join(NCCL_ENV).is_file() && d.join(TOPO_XML).is_file())
                .unwrap_or(false);
            let unchanged = st.pods.get(*id).is_some_and(|p| {
                p.parts.len() == atts.len()
                    && atts
                        .iter()
                        .all(|a| p.parts.get(&a.ifname).is_some_and(|x| x.att == **a))
            });
            if unchanged && files_there {
                continue;
            }
            let mut pod = st.pods.remove(*id).unwrap_or_default();
            let mut parts = BTreeMap::new();
            for a in atts {
                let gpus = match pod.parts.remove(&a.ifname) {
                    Some(p) => p.gpus,
                    None => self.gpus_on_disk(id, &a.ifname),
                };
                parts.insert(
                    a.ifname.clone(),
                    Part {
                        att: (*a).clone(),
                        gpus,
                    },
                );
            }
            pod.parts = parts;
            match self.write_pod(id, &mut pod, snap) {
                Ok(()) => report.written += 1,
                Err(e) => tracing::warn!(container = %id, error = %e, "writing hints"),
            }
            st.pods.insert((*id).to_owned(), pod);
        }
        st.pods.retain(|id, _| want.contains_key(id.as_str()));
        // Directories of pods that are gone (including ones from before a restart).
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let name = e.file_name();
                let Some(name) = name.to_str() else { continue };
                if want.contains_key(name) || pod_dir_name(name).is_err() {
                    continue;
                }
                match remove_pod_dir(&e.path()) {
                    Ok(true) => report.removed += 1,
                    Ok(false) => {}
                    Err(e) => tracing::warn!(container = %name, error = %e, "removing stale hints"),
                }
            }
        }
        report
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
}
