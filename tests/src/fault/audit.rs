//! What a stream of operations must leave behind: nothing. Each check
//! returns what it found (one line per leftover), so that the caller can
//! print counts and details before it asserts.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::fabric::ip::{self, Netns};
use crate::fabric::{Fabric, VfId};

use super::sysfs::vf_aliases;

/// Where Multus-style device-info files go when the runtime names none.
pub const DEVINFO_DIR: &str = "/var/run/k8s.cni.cncf.io/devinfo/cni";

/// A VF netdev and its representor as they were before the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfBaseline {
    /// The VF.
    pub vf: VfId,
    /// Netdev name.
    pub name: String,
    /// MAC.
    pub mac: Option<String>,
    /// MTU.
    pub mtu: Option<u32>,
    /// Administratively up.
    pub up: bool,
    /// Representor name (switchdev) and its master then.
    pub representor: Option<(String, Option<String>)>,
}

/// Every VF of `node` as it is now; panics unless each is in the node.
pub fn baseline(fabric: &Fabric, node: usize) -> Vec<VfBaseline> {
    let ns = fabric.node(node).expect("node").ip_netns();
    let links: HashMap<String, ip::IpLink> = ip::links(&ns)
        .expect("links of the node")
        .into_iter()
        .map(|l| (l.ifname.clone(), l))
        .collect();
    fabric
        .vfs()
        .iter()
        .filter(|v| v.id.node == node)
        .filter_map(|v| {
            let name = v.netdev.clone()?;
            let l = links
                .get(&name)
                .unwrap_or_else(|| panic!("VF {name} is not in the node"));
            Some(VfBaseline {
                vf: v.id,
                name,
                mac: l.address.clone(),
                mtu: l.mtu,
                up: l.flags.iter().any(|f| f == "UP"),
                representor: v.representor.as_ref().map(|r| {
                    let master = links.get(r).and_then(|l| l.master.clone());
                    (r.clone(), master)
                }),
            })
        })
        .collect()
}

impl VfBaseline {
    /// How `now` (the VF's link in the node) differs from the baseline in
    /// name, MAC or MTU; `None` when it does not.
    pub fn differs(&self, now: &ip::IpLink) -> Option<String> {
        let was = (&self.name, &self.mac, self.mtu);
        (was != (&now.ifname, &now.address, now.mtu)).then(|| {
            format!(
                "{} ({:?}) is {} mac {:?} mtu {:?}, was mac {:?} mtu {:?}",
                self.name, self.vf, now.ifname, now.address, now.mtu, self.mac, self.mtu
            )
        })
    }

    /// `ip` lines that put the VF, now the node's link `now`, back as it
    /// was (what an operator does by hand once its record is lost).
    pub fn repair_lines(&self, now: &ip::IpLink) -> Vec<String> {
        let mut lines = vec![format!("link set dev {} down", now.ifname)];
        if now.ifname != self.name {
            lines.push(format!("link set dev {} name {}", now.ifname, self.name));
        }
        if let Some(mac) = &self.mac {
            lines.push(format!("link set dev {} address {mac}", self.name));
        }
        if let Some(mtu) = self.mtu {
            lines.push(format!("link set dev {} mtu {mtu}", self.name));
        }
        if self.up {
            lines.push(format!("link set dev {} up", self.name));
        }
        lines
    }
}

/// Every VF of the baseline that is not back in the node exactly as it
/// was (netns, name, MAC, MTU; its representor off any bridge it was not on).
pub fn vf_leaks(fabric: &Fabric, node: usize, base: &[VfBaseline]) -> Vec<String> {
    let ns = fabric.node(node).expect("node").ip_netns();
    let aliases = vf_aliases(fabric);
    let links = ip::links(&ns).expect("links of the node");
    let by_vf: HashMap<VfId, &ip::IpLink> = links
        .iter()
        .filter_map(|l| Some((*aliases.get(l.ifalias.as_deref()?)?, l)))
        .collect();
    let by_name: HashMap<&str, &ip::IpLink> =
        links.iter().map(|l| (l.ifname.as_str(), l)).collect();
    let mut out = Vec::new();
    for b in base {
        match by_vf.get(&b.vf) {
            None => out.push(format!("{} ({:?}) is not in the node", b.name, b.vf)),
            Some(l) => out.extend(b.differs(l)),
        }
        if let Some((rep, master)) = &b.representor {
            let now = by_name.get(rep.as_str()).map(|l| l.master.clone());
            if now != Some(master.clone()) {
                out.push(format!(
                    "representor {rep} of {} has master {now:?}, had {master:?}",
                    b.name
                ));
            }
        }
    }
    out
}

/// Every file under `dir`, recursively (directories themselves are fine:
/// the plugin makes them once).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// host-local's leases of `network` under its data dir: files named after
/// an address (its `lock` and `last_reserved_ip.*` are bookkeeping).
pub fn host_local_leases(data_dir: &Path, network: &str) -> Vec<PathBuf> {
    files_under(&data_dir.join(network))
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.parse::<IpAddr>().is_ok())
        })
        .collect()
}

/// Device-info files (and their temp files) of `networks` in the default dir.
pub fn devinfo_files(networks: &[&str]) -> Vec<PathBuf> {
    files_under(Path::new(DEVINFO_DIR))
        .into_iter()
        .filter(|p| {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            networks.iter().any(|n| name.starts_with(&format!("{n}-")))
        })
        .collect()
}

/// jobnet's job bridges and VXLAN devices (`jnb<VNI>`, `jnx<VNI>`) in `ns`,
/// as `name kind`.
pub fn job_links(ns: &Netns) -> Vec<String> {
    let links = crate::harness::ip_json(ns, &["-d", "link", "show"]);
    let mut v: Vec<String> = links
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| {
            let name = l["ifname"].as_str()?;
            let kind = l["linkinfo"]["info_kind"].as_str().unwrap_or("-");
            let ours = name.starts_with("jnb") || name.starts_with("jnx");
            (ours || matches!(kind, "vxlan")).then(|| format!("{name} {kind}"))
        })
        .collect();
    v.sort();
    v
}

/// Who holds which address on which rail, from ADD results: a second live
/// holder of an address on the same rail is a duplicate.
#[derive(Debug, Default)]
pub struct AddressBook {
    live: HashMap<(String, IpAddr), String>,
    by_holder: HashMap<String, Vec<(String, IpAddr)>>,
    /// Every duplicate seen, as a sentence.
    pub duplicates: Vec<String>,
    /// Most addresses live at once.
    pub peak: usize,
}

impl AddressBook {
    /// `holder` now holds `addrs` (rail, address). A retried ADD of the same
    /// holder may report them again.
    pub fn take(&mut self, holder: &str, addrs: &[(String, IpAddr)], when: &str) {
        for (rail, a) in addrs {
            let key = (rail.clone(), *a);
            match self.live.get(&key) {
                Some(other) if other != holder => self.duplicates.push(format!(
                    "{when}: {a} on {rail} given to {holder} while {other} holds it"
                )),
                Some(_) => {}
                None => {
                    self.live.insert(key.clone(), holder.to_owned());
                    self.by_holder
                        .entry(holder.to_owned())
                        .or_default()
                        .push(key);
                }
            }
        }
        self.peak = self.peak.max(self.live.len());
    }

    /// `holder` let go of everything (DEL succeeded, GC collected it).
    pub fn drop_holder(&mut self, holder: &str) {
        for key in self.by_holder.remove(holder).unwrap_or_default() {
            if self.live.get(&key).is_some_and(|h| h == holder) {
                self.live.remove(&key);
            }
        }
    }

    /// Addresses held now.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}

/// Duplicates among what the kernel shows: `pods` maps a pod's name to its
/// interfaces' global addresses; the same address on the same interface
/// name (one name per rail and network) in two pods is a duplicate.
pub fn kernel_duplicates(pods: &BTreeMap<String, HashMap<String, Vec<String>>>) -> Vec<String> {
    let mut seen: HashMap<(&str, &str), &str> = HashMap::new();
    let mut out = Vec::new();
    for (pod, ifs) in pods {
        for (ifname, addrs) in ifs {
            for a in addrs {
                if let Some(other) = seen.insert((ifname, a), pod) {
                    out.push(format!("{a} on {ifname} in pods {other} and {pod}"));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_of_an_address_is_a_duplicate() {
        let mut book = AddressBook::default();
        let a: IpAddr = "10.0.0.2".parse().unwrap();
        book.take("p1", &[("net1".into(), a)], "op 1");
        book.take("p1", &[("net1".into(), a)], "op 2");
        book.take("p2", &[("net1r1".into(), a)], "op 3");
        assert!(book.duplicates.is_empty());
        book.take("p3", &[("net1".into(), a)], "op 4");
        assert_eq!(book.duplicates.len(), 1, "{:?}", book.duplicates);
        book.drop_holder("p1");
        book.take("p4", &[("net1".into(), a)], "op 5");
        assert_eq!(book.duplicates.len(), 1);
        book.drop_holder("p2");
        book.drop_holder("p4");
        assert!(book.is_empty());
    }

    #[test]
    fn the_kernel_scan_compares_per_interface() {
        let pod = |ifname: &str, a: &str| HashMap::from([(ifname.to_owned(), vec![a.to_owned()])]);
        let mut pods = BTreeMap::new();
        pods.insert("a".to_owned(), pod("net1", "10.0.0.2"));
        pods.insert("b".to_owned(), pod("net2", "10.0.0.2"));
        assert!(kernel_duplicates(&pods).is_empty());
        pods.insert("c".to_owned(), pod("net1", "10.0.0.2"));
        assert_eq!(kernel_duplicates(&pods).len(), 1);
    }
}
