//! Pod network namespaces that die the way they die under a runtime: the
//! runtime removes the name (`/run/netns/<name>`), the kernel destroys the
//! netns only when its last user lets go of it (a plugin still working in
//! it, for one), and physical devices inside then come back to the host
//! netns, down, under their name or `devN` when that is taken.
//!
//! The fabric's VFs are veths, which the kernel would destroy with the
//! netns instead. So a netns whose name is removed is kept open here until
//! [`PodNetns::destroy`], which the caller runs once no plugin can be in
//! it any more, and which plays the kernel's part for the VFs inside.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;

use crate::fabric::ip::{self, Netns};
use crate::fabric::{Fabric, VfId};
use crate::harness::unique;

use super::run::netns_path;
use super::sysfs::vf_aliases;

/// A VF that was inside a netns when it died, and the name the kernel gave
/// it back in the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Returned {
    /// The VF.
    pub vf: VfId,
    /// Its name inside the pod.
    pub was: String,
    /// Its name in the node now.
    pub now: String,
}

/// A pod netns.
#[derive(Debug)]
pub struct PodNetns {
    /// Its name under /run/netns (the path stays what the runtime passes
    /// as `CNI_NETNS`, also once the name is removed).
    pub name: String,
    named: bool,
    /// Keeps a netns whose name is removed alive until [`Self::destroy`].
    holder: Option<File>,
}

impl PodNetns {
    /// Creates a fresh named netns.
    pub fn create(prefix: &str) -> Self {
        let name = unique(prefix);
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip netns add {name}");
        Self {
            name,
            named: true,
            holder: None,
        }
    }

    /// `/run/netns/<name>`.
    pub fn path(&self) -> PathBuf {
        netns_path(&self.name)
    }

    /// False once the runtime removed it.
    pub fn is_named(&self) -> bool {
        self.named
    }

    /// Where `ip` can reach it: by name while it has one, else through the
    /// descriptor that keeps it alive.
    fn reach(&self) -> Option<Netns> {
        if self.named {
            Some(Netns::Named(self.name.clone()))
        } else {
            self.holder.as_ref().map(|f| {
                Netns::Path(PathBuf::from(format!(
                    "/proc/{}/fd/{}",
                    std::process::id(),
                    f.as_raw_fd()
                )))
            })
        }
    }

    /// The runtime removes the netns: the name goes at once; the netns
    /// itself lives on (held here, and by any plugin inside) until
    /// [`Self::destroy`].
    pub fn remove_name(&mut self) {
        if !self.named {
            return;
        }
        let holder = File::open(self.path())
            .unwrap_or_else(|e| panic!("open {}: {e}", self.path().display()));
        let ok = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip netns del {}", self.name);
        self.holder = Some(holder);
        self.named = false;
    }

    /// The fabric VFs inside now, by alias, with their names there.
    pub fn vfs_inside(&self, fabric: &Fabric) -> Vec<(VfId, String)> {
        let Some(ns) = self.reach() else {
            return Vec::new();
        };
        let aliases = vf_aliases(fabric);
        ip::links(&ns)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|l| {
                let vf = *aliases.get(l.ifalias.as_deref()?)?;
                Some((vf, l.ifname))
            })
            .collect()
    }

    /// The netns dies (name removed first if the runtime had not): every VF
    /// inside comes back to node `node`'s netns as the kernel returns a
    /// physical device. Returns those VFs; the caller syncs sysfs.
    pub fn destroy(mut self, fabric: &Fabric, node: usize) -> Vec<Returned> {
        let inside = self.vfs_inside(fabric);
        let mut returned = Vec::new();
        if !inside.is_empty() {
            let n = fabric.node(node).expect("fabric node");
            let node_ns = n.ip_netns();
            let target = n.netns.clone().unwrap_or_else(|| "1".into());
            let mut taken: HashSet<String> = ip::links(&node_ns)
                .expect("links of the node")
                .into_iter()
                .map(|l| l.ifname)
                .collect();
            let mut lines = Vec::new();
            for (vf, name) in inside {
                // The kernel keeps the name unless the host has it, then
                // picks the first free `devN`.
                let now = if taken.contains(&name) {
                    (0..)
                        .map(|i| format!("dev{i}"))
                        .find(|d| !taken.contains(d))
                        .expect("a free devN")
                } else {
                    name.clone()
                };
                taken.insert(now.clone());
                lines.push(format!("link set dev {name} down"));
                lines.push(format!("link set dev {name} netns {target} name {now}"));
                returned.push(Returned { vf, was: name, now });
            }
            let ns = self.reach().expect("netns reachable");
            if let Err(e) = ip::batch(&ns, &lines, false, false) {
                panic!("returning VFs from dying netns {}: {e}", self.name);
            }
        }
        self.release();
        returned
    }

    fn release(&mut self) {
        if self.named {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name])
                .status();
            self.named = false;
        }
        self.holder = None;
    }
}

impl Drop for PodNetns {
    fn drop(&mut self) {
        // Only reached without destroy() when a test panics: VFs still
        // inside die with the netns, and the fabric's teardown copes.
        self.release();
    }
}

/// Which pod names hold which addresses, per interface: for a scan of
/// every live pod after each step.
pub fn pod_addresses(ns: &Netns) -> HashMap<String, Vec<String>> {
    let v = match crate::fabric::ip::batch(ns, &["addr show".to_owned()], true, false) {
        Ok(out) => out,
        Err(_) => return HashMap::new(),
    };
    let mut by_if: HashMap<String, Vec<String>> = HashMap::new();
    let parsed: Vec<serde_json::Value> = serde_json::from_str(&v).unwrap_or_default();
    for link in parsed {
        let Some(name) = link["ifname"].as_str() else {
            continue;
        };
        for a in link["addr_info"].as_array().into_iter().flatten() {
            if a["scope"] == "global" {
                if let Some(local) = a["local"].as_str() {
                    by_if
                        .entry(name.to_owned())
                        .or_default()
                        .push(local.to_owned());
                }
            }
        }
    }
    by_if
}
