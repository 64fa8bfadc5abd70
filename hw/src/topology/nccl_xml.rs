//! The NCCL topology file (`NCCL_TOPO_FILE`) for one pod.
//!
//! Only what the pod got appears: its GPUs and its VFs, each inside the
//! PCIe switches and bridges that lead to it, inside the `<cpu>` of its
//! NUMA node. A switch (upstream + downstream ports) is one `<pci>`
//! element named by its upstream port, as NCCL models switches; root ports
//! belong to the CPU and are left out. So NCCL computes the same path
//! classes from the file as jobnet does from sysfs (NODE, which NCCL does
//! not distinguish, reads as PHB).
//!
//! Elements and attributes are those NCCL reads: `system version`; `cpu
//! numaid affinity arch vendor familyid modelid`; `pci busid class vendor
//! device subsystem_vendor subsystem_device link_speed link_width`; `gpu
//! dev` (NCCL fills in rank, sm and gdr for the GPUs it drives); `nic` >
//! `net name dev speed port guid gdr rail`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::cpu::CpuInfo;
use super::discover::Topology;
use super::hints::{PodNic, PodView};
use super::path_class::{Hop, Placement};
use super::pci_tree::{PciFunction, PcieLink};
use crate::pci::PciAddr;

/// Escapes `s` for an XML attribute value.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A leaf device of the pod.
enum Leaf<'a> {
    Gpu { dev: usize },
    Net { dev: usize, nic: &'a PodNic },
}

struct Endpoint<'a> {
    addr: PciAddr,
    placement: Placement,
    leaf: Leaf<'a>,
}

/// A `<pci>` container (switch or bridge) and what is below it.
#[derive(Default)]
struct Container<'a> {
    children: BTreeMap<PciAddr, Container<'a>>,
    leaves: Vec<&'a Endpoint<'a>>,
}

impl<'a> Container<'a> {
    fn insert(&mut self, hops: &[Hop], e: &'a Endpoint<'a>) {
        match hops.split_first() {
            Some((h, rest)) => self.children.entry(h.addr()).or_default().insert(rest, e),
            None => self.leaves.push(e),
        }
    }
}

fn attrs(out: &mut String, pairs: &[(&str, String)]) {
    for (k, v) in pairs {
        let _ = write!(out, " {k}=\"{}\"", xml_escape(v));
    }
}

fn pci_attrs(f: &PciFunction, link: &PcieLink) -> Vec<(&'static str, String)> {
    let mut a = vec![
        ("busid", f.addr.to_string()),
        ("class", format!("0x{:06x}", f.class)),
        ("vendor", format!("0x{:04x}", f.vendor)),
        ("device", format!("0x{:04x}", f.device)),
    ];
    if let Some(v) = f.subsystem_vendor {
        a.push(("subsystem_vendor", format!("0x{v:04x}")));
    }
    if let Some(v) = f.subsystem_device {
        a.push(("subsystem_device", format!("0x{v:04x}")));
    }
    if let Some(s) = link.effective_speed() {
        a.push(("link_speed", s.to_owned()));
    }
    if let Some(w) = link.effective_width() {
        a.push(("link_width", w.to_string()));
    }
    a
}

struct Writer<'t> {
    topo: &'t Topology,
    out: String,
}

impl Writer<'_> {
    fn indent(&mut self, depth: usize) {
        for _ in 0..depth {
            self.out.push_str("  ");
        }
    }

    /// The link to report for `f`: its own, or its PF's for a VF whose
    /// link registers read as unknown.
    fn link_of(&self, f: &PciFunction) -> PcieLink {
        if f.link.is_unknown() {
            if let Some(nic) = self.topo.nic_of(f.addr) {
                if let Some(pf) = self.topo.tree.get(nic.pci()) {
                    return pf.link.clone();
                }
            }
        }
        f.link.clone()
    }

    fn container(&mut self, c: &Container<'_>, depth: usize) {
        for e in &c.leaves {
            self.leaf(e, depth);
        }
        for (addr, child) in &c.children {
            let Some(f) = self.topo.tree.get(*addr) else {
                self.container(child, depth);
                continue;
            };
            self.indent(depth);
            self.out.push_str("<pci");
            let link = self.link_of(f);
            attrs(&mut self.out, &pci_attrs(f, &link));
            self.out.push_str(">\n");
            self.container(child, depth + 1);
            self.indent(depth);
            self.out.push_str("</pci>\n");
        }
    }

    fn leaf(&mut self, e: &Endpoint<'_>, depth: usize) {
        let Some(f) = self.topo.tree.get(e.addr) else {
            return;
        };
        self.indent(depth);
        self.out.push_str("<pci");
        let link = self.link_of(f);
        attrs(&mut self.out, &pci_attrs(f, &link));
        self.out.push_str(">\n");
        match &e.leaf {
            Leaf::Gpu { dev } => {
                self.indent(depth + 1);
                self.out.push_str("<gpu");
                attrs(&mut self.out, &[("dev", dev.to_string())]);
                self.out.push_str("/>\n");
            }
            Leaf::Net { dev, nic } => {
                self.indent(depth + 1);
                self.out.push_str("<nic>\n");
                self.indent(depth + 2);
                self.out.push_str("<net");
                let a = self.net_attrs(*dev, nic);
                attrs(&mut self.out, &a);
                self.out.push_str("/>\n");
                self.indent(depth + 1);
                self.out.push_str("</nic>\n");
            }
        }
        self.indent(depth);
        self.out.push_str("</pci>\n");
    }

    fn net_attrs(&self, dev: usize, nic: &PodNic) -> Vec<(&'static str, String)> {
        let name = nic
            .rdma
            .as_ref()
            .map_or_else(|| nic.ifname.clone(), |d| d.name.to_string());
        let mut a = vec![("name", name), ("dev", dev.to_string())];
        let port_rate = nic
            .rdma
            .as_ref()
            .and_then(|d| d.port(nic.port()))
            .and_then(|p| p.rate.as_ref())
            .map(|r| r.mbit_per_s);
        let nic_rate = self.topo.nic_of(nic.pf).and_then(|n| n.speed_mbps());
        if let Some(s) = port_rate.or(nic_rate) {
            a.push(("speed", s.to_string()));
        }
        if let Some(d) = &nic.rdma {
            a.push(("port", nic.port().to_string()));
            if let Some(g) = d.sys_image_guid.or(d.node_guid) {
                a.push(("guid", format!("0x{:x}", g.0)));
            }
        }
        // GPUDirect RDMA needs an RDMA device; whether the driver stack
        // allows it is checked by NCCL at run time.
        a.push(("gdr", u8::from(nic.rdma.is_some()).to_string()));
        if let Some(r) = nic.rail {
            a.push(("rail", r.to_string()));
        }
        a
    }
}

/// The NCCL topology file for `pod` on the node `topo`, CPUs as `cpu`.
///
/// GPU `dev` numbers are the pod's own (its GPUs in PCI order, as the
/// container runtime renumbers them); net `dev` numbers follow the pod's
/// interfaces. Devices unknown to `topo` are left out.
pub fn topo_xml(topo: &Topology, pod: &PodView, cpu: &CpuInfo) -> String {
    let mut gpus = pod.gpus.clone();
    gpus.sort();
    gpus.dedup();
    let mut endpoints = Vec::new();
    for (dev, g) in gpus.iter().enumerate() {
        if let Some(p) = topo.placement(*g) {
            endpoints.push(Endpoint {
                addr: *g,
                placement: p,
                leaf: Leaf::Gpu { dev },
            });
        }
    }
    for (dev, n) in pod.nics.iter().enumerate() {
        if let Some(p) = topo.placement(n.vf) {
            endpoints.push(Endpoint {
                addr: n.vf,
                placement: p,
                leaf: Leaf::Net { dev, nic: n },
            });
        }
    }
    // NUMA node -> container tree; unknown NUMA is numaid -1.
    let mut cpus: BTreeMap<Option<u32>, Container<'_>> = BTreeMap::new();
    for e in &endpoints {
        cpus.entry(e.placement.numa_node)
            .or_default()
            .insert(&e.placement.hops, e);
    }
    let mut w = Writer {
        topo,
        out: String::from("<system version=\"1\">\n"),
    };
    for (numa, tree) in &cpus {
        let mut a: Vec<(&str, String)> = vec![(
            "numaid",
            numa.map_or_else(|| "-1".to_owned(), |n| n.to_string()),
        )];
        if let Some(map) = numa
            .and_then(|n| topo.numa_node(n))
            .and_then(|n| n.cpumap.clone())
        {
            a.push(("affinity", map));
        }
        a.push(("arch", cpu.arch.clone()));
        if let Some(v) = &cpu.vendor {
            a.push(("vendor", v.clone()));
        }
        if let Some(f) = cpu.family {
            a.push(("familyid", f.to_string()));
        }
        if let Some(m) = cpu.model {
            a.push(("modelid", m.to_string()));
        }
        w.out.push_str("  <cpu");
        attrs(&mut w.out, &a);
        w.out.push_str(">\n");
        w.container(tree, 2);
        w.out.push_str("  </cpu>\n");
    }
    w.out.push_str("</system>\n");
    w.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_attribute_values() {
        assert_eq!(
            xml_escape(r#"a<b>&"c"'d'"#),
            "a&lt;b&gt;&amp;&quot;c&quot;&apos;d&apos;"
        );
        assert_eq!(xml_escape("x\ny\0"), "xy");
    }
}
