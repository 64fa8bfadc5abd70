//! State files under /run/jobnet-fabric: one per live fabric, written before
//! any kernel object exists and removed after the last one is gone, so a
//! crashed run can always be cleaned up by `jobnet-fabric down --all`.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::names::FabricId;
use super::{FabricError, FabricLayout};

/// Directory of the state files.
pub const STATE_DIR: &str = "/run/jobnet-fabric";

/// The process that owns a fabric (its Drop tears the fabric down).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Owner {
    /// Process id.
    pub pid: u32,
    /// Start time (clock ticks since boot) to tell a reused pid apart.
    pub start_time: u64,
}

impl Owner {
    /// This process.
    pub fn current() -> Option<Self> {
        let pid = std::process::id();
        Some(Self {
            pid,
            start_time: start_time(pid)?,
        })
    }

    /// True while the owning process still runs.
    pub fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start_time)
    }
}

/// Field 22 of /proc/<pid>/stat.
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: skip past the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// What a state file holds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FabricState {
    /// Everything the fabric made.
    pub layout: FabricLayout,
    /// The owning process; None for fabrics made by `jobnet-fabric up`.
    pub owner: Option<Owner>,
}

fn path(id: &FabricId) -> PathBuf {
    Path::new(STATE_DIR).join(format!("{id}.json"))
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FabricError + '_ {
    move |source| FabricError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes the state of a new fabric; Ok(false) when the id is already taken.
pub fn reserve(state: &FabricState) -> Result<bool, FabricError> {
    let dir = Path::new(STATE_DIR);
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let p = path(&state.layout.id);
    let mut f = match fs::OpenOptions::new().write(true).create_new(true).open(&p) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(io_err(&p)(e)),
    };
    let json = serde_json::to_vec_pretty(state).map_err(|e| FabricError::State {
        path: p.clone(),
        detail: e.to_string(),
    })?;
    f.write_all(&json).map_err(io_err(&p))?;
    Ok(true)
}

/// Replaces the state of an existing fabric (atomically).
pub fn update(state: &FabricState) -> Result<(), FabricError> {
    let p = path(&state.layout.id);
    let tmp = p.with_extension("json.tmp");
    let json = serde_json::to_vec_pretty(state).map_err(|e| FabricError::State {
        path: p.clone(),
        detail: e.to_string(),
    })?;
    fs::write(&tmp, json).map_err(io_err(&tmp))?;
    fs::rename(&tmp, &p).map_err(io_err(&p))
}

/// Reads the state of fabric `id`.
pub fn read(id: &FabricId) -> Result<FabricState, FabricError> {
    let p = path(id);
    let text = match fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(FabricError::NoSuchFabric(id.to_string()))
        }
        Err(e) => return Err(io_err(&p)(e)),
    };
    serde_json::from_str(&text).map_err(|e| FabricError::State {
        path: p,
        detail: e.to_string(),
    })
}

/// Removes the state file of `id` (absent is fine).
pub fn remove(id: &FabricId) -> Result<(), FabricError> {
    let p = path(id);
    match fs::remove_file(&p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&p)(e)),
        _ => Ok(()),
    }
}

/// True when fabric `id` has a state file.
pub fn exists(id: &FabricId) -> bool {
    path(id).exists()
}

/// Ids of every fabric with a state file.
pub fn list() -> Vec<FabricId> {
    let mut ids: Vec<FabricId> = fs::read_dir(STATE_DIR)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name();
                    let stem = name.to_str()?.strip_suffix(".json")?;
                    FabricId::parse(stem)
                })
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_bogus_one_is_not() {
        let me = Owner::current().unwrap();
        assert!(me.alive());
        let other = Owner {
            start_time: me.start_time + 1,
            ..me.clone()
        };
        assert!(!other.alive());
    }
}
