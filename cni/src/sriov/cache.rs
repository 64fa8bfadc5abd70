//! The attachment cache: what ADD changed, written before the first kernel
//! change so that DEL can undo it even after a crash.
//!
//! One file per attachment, named from validated identifiers only
//! (`<containerID>.<ifname>.json`: a `ContainerId` cannot contain `/` and
//! cannot start with `.`, an `IfName` cannot contain `/`). Writes are atomic
//! (temp file, rename) and survive a crash of the plugin; they are not
//! fsynced, because what they describe (VFs inside pod namespaces) does not
//! survive a power loss either, and a torn file after one is treated like a
//! missing one. Reads are size-capped and a corrupt file is a typed error
//! that DEL treats like a missing one.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::state_dir::StateDir;

/// Largest cache file we read; real ones are a few KiB.
const MAX_CACHE_BYTES: u64 = 256 * 1024;

/// Why a cache file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// No cache for this attachment.
    #[error("no attachment cache at {0}")]
    Missing(PathBuf),
    /// The file exists but does not parse (truncated, edited, other version).
    #[error("attachment cache {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// Reading or writing failed.
    #[error("attachment cache {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Path of the cache file for one attachment. Callers pass validated names.
pub fn path_for(state: &StateDir, container_id: &str, ifname: &str) -> PathBuf {
    state
        .attachments()
        .join(format!("{container_id}.{ifname}.json"))
}

/// The temp file a save of `path` writes first: same stem, so that the
/// attachment's next save, DEL or GC finds one a crash left behind.
pub fn temp_path(path: &Path) -> PathBuf {
    path.with_extension("json.tmp")
}

/// Path of the lock an operation on one attachment holds (ADD, DEL, GC).
pub fn lock_path_for(state: &StateDir, container_id: &str, ifname: &str) -> PathBuf {
    state
        .attachments()
        .join(format!("{container_id}.{ifname}.lock"))
}

/// Atomically replaces `path` with `value`.
pub fn save<T: Serialize>(state: &StateDir, path: &Path, value: &T) -> Result<(), CacheError> {
    let io = |source| CacheError::Io {
        path: path.to_owned(),
        source,
    };
    state.ensure().map_err(io)?;
    let body = serde_json::to_vec_pretty(value).map_err(|e| io(e.into()))?;
    let tmp = temp_path(path);
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&body).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Reads and parses a cache file.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, CacheError> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CacheError::Missing(path.to_owned()))
        }
        Err(source) => {
            return Err(CacheError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    let mut buf = Vec::new();
    f.take(MAX_CACHE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|source| CacheError::Io {
            path: path.to_owned(),
            source,
        })?;
    if buf.len() as u64 > MAX_CACHE_BYTES {
        return Err(CacheError::Corrupt {
            path: path.to_owned(),
            reason: "larger than any cache jobnet writes".into(),
        });
    }
    serde_json::from_slice(&buf).map_err(|e| CacheError::Corrupt {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Removes a cache file and any temp file of it; missing ones are fine.
pub fn remove(path: &Path) -> Result<(), CacheError> {
    for p in [temp_path(path), path.to_owned()] {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(CacheError::Io { path: p, source }),
        }
    }
    Ok(())
}

/// Every attachment cache in the state dir with its path and the record it
/// holds (`None` when unreadable).
pub fn list<T: DeserializeOwned>(state: &StateDir) -> Vec<(PathBuf, Option<T>)> {
    let Ok(dir) = std::fs::read_dir(state.attachments()) else {
        return Vec::new();
    };
    dir.flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let rec = load(&p).ok();
            (p, rec)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Entry {
        name: String,
        mtu: u32,
    }

    #[test]
    fn round_trip_missing_and_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::new(dir.path());
        let p = path_for(&st, "abc123", "net1");
        assert!(matches!(load::<Entry>(&p), Err(CacheError::Missing(_))));
        let e = Entry {
            name: "eth7".into(),
            mtu: 9000,
        };
        save(&st, &p, &e).unwrap();
        assert_eq!(load::<Entry>(&p).unwrap(), e);
        std::fs::write(&p, b"{\"name\": \"eth7\", \"mt").unwrap();
        assert!(matches!(load::<Entry>(&p), Err(CacheError::Corrupt { .. })));
        std::fs::write(&p, vec![b' '; (MAX_CACHE_BYTES + 10) as usize]).unwrap();
        assert!(matches!(load::<Entry>(&p), Err(CacheError::Corrupt { .. })));
        std::fs::write(temp_path(&p), b"{\"na").unwrap();
        remove(&p).unwrap();
        remove(&p).unwrap();
        assert!(!p.exists());
        assert!(!temp_path(&p).exists());
    }
}
