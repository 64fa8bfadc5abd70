//! Network namespaces a test makes for its pods, always removed.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique short name: prefix + pid + counter.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}-{n}", std::process::id())
}

/// A named network namespace (`ip netns add`), deleted on drop (also on
/// panic) unless the test deleted it already.
pub struct Netns {
    /// The namespace name.
    pub name: String,
    deleted: bool,
}

impl Netns {
    /// Creates a namespace with a unique name.
    pub fn new(prefix: &str) -> Self {
        let name = unique(prefix);
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("run ip netns add")
            .success();
        assert!(ok, "ip netns add {name} failed");
        Self {
            name,
            deleted: false,
        }
    }

    /// `/run/netns/<name>`.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Deletes the namespace now (a pod whose sandbox went away).
    pub fn delete(&mut self) {
        let ok = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status()
            .expect("run ip netns del")
            .success();
        assert!(ok, "ip netns del {} failed", self.name);
        self.deleted = true;
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if !self.deleted {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name])
                .status();
        }
    }
}
