//! Helpers shared by the integration tests: unique names and guarded
//! namespaces, so tests run in parallel and clean up after themselves.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use jobnet_netlink::{Handle, Netns, NetnsGuard};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call, at most 15 bytes when `prefix`
/// is at most 4 bytes (interface names must fit IFNAMSIZ).
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id() % 1_000_000;
    let name = format!("{prefix}{pid:x}x{n:x}");
    assert!(name.len() <= 15, "test name {name} too long");
    name
}

/// A fresh named namespace deleted on drop, with an open fd and a handle.
pub struct TestNs {
    pub guard: NetnsGuard,
    pub ns: Netns,
    pub handle: Handle,
}

impl TestNs {
    /// Creates the namespace; must be called inside a Tokio runtime.
    pub fn new(prefix: &str) -> TestNs {
        let guard = NetnsGuard::create(&format!("jnt-{}", unique(prefix))).unwrap();
        let ns = guard.open().unwrap();
        let handle = Handle::in_netns(&ns).unwrap();
        TestNs { guard, ns, handle }
    }

    /// The namespace's name, for `ip -n`.
    pub fn name(&self) -> &str {
        self.guard.name()
    }
}
