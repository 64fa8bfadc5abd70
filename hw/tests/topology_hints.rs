//! What a pod is told: the NCCL topology file, `nccl.env`, and the
//! topology view (matrix and PCI tree as data), on the fake GPU servers.

mod common;
use common::{p, Server};

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use common::layouts::{eight_by_eight, uneven};
use jobnet_hw::rdma;
use jobnet_hw::topology::{
    nccl_env, topo_xml, CpuInfo, HintOptions, PodNic, PodView, Rails, TopoView,
};
use jobnet_hw::SysfsRoot;

impl Server {
    fn root(&self) -> SysfsRoot {
        SysfsRoot::new(&self.written.root)
    }

    /// The pod's view of VF `vf_index` of rail `rail`, named `ifname`,
    /// with `ip` configured (its GID entries written first).
    fn pod_nic(&self, rail: usize, vf_index: usize, ifname: &str, ip: Option<Ipv4Addr>) -> PodNic {
        let nic = &self.written.nics[rail];
        let vf = nic.vfs[vf_index].pci;
        if let Some(ip) = ip {
            assert_eq!(self.written.add_ipv4_gid(vf, ip).unwrap(), 3);
        }
        let rdma = rdma::devices_of_pci(&self.root(), vf).unwrap();
        assert_eq!(rdma.len(), 1);
        PodNic {
            rail: Some(rail),
            pf: nic.pf,
            vf,
            ifname: ifname.to_owned(),
            rdma: rdma.into_iter().next(),
            addresses: ip.map(IpAddr::V4).into_iter().collect(),
        }
    }
}

fn sapphire_rapids() -> CpuInfo {
    CpuInfo {
        arch: "x86_64".into(),
        vendor: Some("GenuineIntel".into()),
        family: Some(6),
        model: Some(143),
    }
}

fn attr<'a>(n: roxmltree::Node<'a, '_>, name: &str) -> &'a str {
    n.attribute(name)
        .unwrap_or_else(|| panic!("<{}> has no {name}", n.tag_name().name()))
}

fn elements<'a, 'i>(doc: &'a roxmltree::Document<'i>, tag: &str) -> Vec<roxmltree::Node<'a, 'i>> {
    doc.descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == tag)
        .collect()
}

/// Bus ids of the `<pci>` elements enclosing `n`, innermost first.
fn enclosing_pci(n: roxmltree::Node<'_, '_>) -> Vec<String> {
    n.ancestors()
        .skip(1)
        .filter(|a| a.is_element() && a.tag_name().name() == "pci")
        .map(|a| attr(a, "busid").to_owned())
        .collect()
}

fn env_map(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[test]
fn topo_xml_for_one_gpu_and_its_vf() {
    let s = Server::new(&eight_by_eight(0, 2));
    let nic = s.pod_nic(2, 0, "net1", Some(Ipv4Addr::new(10, 0, 2, 5)));
    let pod = PodView {
        gpus: vec![p("0000:32:00.0")],
        nics: vec![nic],
    };
    let xml = topo_xml(&s.topo, &pod, &sapphire_rapids());
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let system = doc.root_element();
    assert_eq!(system.tag_name().name(), "system");
    assert_eq!(attr(system, "version"), "1");

    let cpus = elements(&doc, "cpu");
    assert_eq!(cpus.len(), 1);
    let cpu = cpus[0];
    assert_eq!(attr(cpu, "numaid"), "0");
    assert_eq!(attr(cpu, "affinity"), "00000000,ffffffff,00000000,ffffffff");
    assert_eq!(attr(cpu, "arch"), "x86_64");
    assert_eq!(attr(cpu, "vendor"), "GenuineIntel");
    assert_eq!(attr(cpu, "familyid"), "6");
    assert_eq!(attr(cpu, "modelid"), "143");

    // The switch is one <pci> (its upstream port) holding GPU and VF.
    let top: Vec<_> = cpu.children().filter(|n| n.is_element()).collect();
    assert_eq!(top.len(), 1);
    assert_eq!(attr(top[0], "busid"), "0000:30:00.0");
    assert_eq!(attr(top[0], "class"), "0x060400");
    assert_eq!(attr(top[0], "link_speed"), "32.0 GT/s PCIe");
    assert_eq!(attr(top[0], "link_width"), "16");

    let gpus = elements(&doc, "gpu");
    assert_eq!(gpus.len(), 1);
    assert_eq!(attr(gpus[0], "dev"), "0");
    let gpu_pci = gpus[0].parent().unwrap();
    assert_eq!(attr(gpu_pci, "busid"), "0000:32:00.0");
    assert_eq!(attr(gpu_pci, "class"), "0x030200");
    assert_eq!(attr(gpu_pci, "vendor"), "0x10de");
    assert_eq!(attr(gpu_pci, "link_speed"), "32.0 GT/s PCIe");
    assert_eq!(attr(gpu_pci, "link_width"), "16");
    assert_eq!(enclosing_pci(gpus[0]), ["0000:32:00.0", "0000:30:00.0"]);

    let nets = elements(&doc, "net");
    assert_eq!(nets.len(), 1);
    let net = nets[0];
    let vf = &s.written.nics[2].vfs[0];
    assert_eq!(attr(net, "name"), vf.rdma);
    assert_eq!(attr(net, "dev"), "0");
    assert_eq!(attr(net, "speed"), "200000");
    assert_eq!(attr(net, "port"), "1");
    // The NIC's system image GUID (EUI-64 of PF MAC 02:00:02:ff:00:00).
    assert_eq!(attr(net, "guid"), "0x2fffeff0000");
    assert_eq!(attr(net, "gdr"), "1");
    assert_eq!(attr(net, "rail"), "2");
    assert_eq!(enclosing_pci(net), ["0000:33:00.2", "0000:30:00.0"]);
    let vf_pci = net.parent().unwrap().parent().unwrap();
    assert_eq!(attr(vf_pci, "class"), "0x020000");
    assert_eq!(attr(vf_pci, "vendor"), "0x15b3");
    assert_eq!(attr(vf_pci, "device"), "0x101e");
    // VFs have no link registers: the PF's link is reported.
    assert_eq!(attr(vf_pci, "link_speed"), "16.0 GT/s PCIe");
    assert_eq!(attr(vf_pci, "link_width"), "16");
    // Exactly the pod's devices.
    let busids: Vec<&str> = elements(&doc, "pci")
        .into_iter()
        .map(|n| attr(n, "busid"))
        .collect();
    assert_eq!(busids, ["0000:30:00.0", "0000:32:00.0", "0000:33:00.2"]);
}

#[test]
fn topo_xml_across_sockets() {
    let s = Server::new(&eight_by_eight(0, 2));
    let pod = PodView {
        // Given out of order: dev numbers follow PCI order.
        gpus: vec![p("0000:92:00.0"), p("0000:12:00.0")],
        nics: vec![s.pod_nic(0, 1, "net1", None), s.pod_nic(4, 1, "net2", None)],
    };
    let xml = topo_xml(&s.topo, &pod, &sapphire_rapids());
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let cpus: Vec<&str> = elements(&doc, "cpu")
        .into_iter()
        .map(|c| attr(c, "numaid"))
        .collect();
    assert_eq!(cpus, ["0", "1"]);
    let gpus: Vec<(String, Vec<String>)> = elements(&doc, "gpu")
        .into_iter()
        .map(|g| (attr(g, "dev").to_owned(), enclosing_pci(g)))
        .collect();
    assert_eq!(
        gpus,
        [
            (
                "0".to_owned(),
                vec!["0000:12:00.0".to_owned(), "0000:10:00.0".to_owned()]
            ),
            (
                "1".to_owned(),
                vec!["0000:92:00.0".to_owned(), "0000:90:00.0".to_owned()]
            ),
        ]
    );
    let nets: Vec<(&str, &str, String)> = elements(&doc, "net")
        .into_iter()
        .map(|n| {
            let cpu = n
                .ancestors()
                .find(|a| a.tag_name().name() == "cpu")
                .unwrap();
            (
                attr(n, "dev"),
                attr(n, "rail"),
                attr(cpu, "numaid").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        nets,
        [("0", "0", "0".to_owned()), ("1", "4", "1".to_owned())]
    );
    assert_eq!(elements(&doc, "pci").len(), 6);
}

#[test]
fn topo_xml_keeps_nested_switches() {
    let s = Server::new(&uneven(0, 1));
    let pod = PodView {
        gpus: vec![p("0000:07:00.0")],
        nics: vec![s.pod_nic(0, 0, "net1", None)],
    };
    let xml = topo_xml(&s.topo, &pod, &sapphire_rapids());
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let gpu = elements(&doc, "gpu")[0];
    assert_eq!(
        enclosing_pci(gpu),
        ["0000:07:00.0", "0000:05:00.0", "0000:01:00.0"]
    );
    let net = elements(&doc, "net")[0];
    assert_eq!(enclosing_pci(net), ["0000:04:00.2", "0000:01:00.0"]);
}

#[test]
fn topo_xml_escapes_and_skips_unknown_devices() {
    let s = Server::new(&uneven(0, 1));
    let cpu = CpuInfo {
        arch: "x86_64".into(),
        vendor: Some("Evil\"<&>".into()),
        family: None,
        model: None,
    };
    let pod = PodView {
        gpus: vec![p("0000:ee:00.0")],
        nics: vec![],
    };
    let xml = topo_xml(&s.topo, &pod, &cpu);
    let doc = roxmltree::Document::parse(&xml).unwrap();
    assert!(elements(&doc, "gpu").is_empty());
    assert!(elements(&doc, "cpu").is_empty());
    let pod = PodView {
        gpus: vec![p("0000:03:00.0")],
        nics: vec![],
    };
    let xml = topo_xml(&s.topo, &pod, &cpu);
    let doc = roxmltree::Document::parse(&xml).unwrap();
    assert_eq!(attr(elements(&doc, "cpu")[0], "vendor"), "Evil\"<&>");
}

#[test]
fn nccl_env_for_one_and_all_rails() {
    let s = Server::new(&eight_by_eight(0, 2));
    let one = PodView {
        gpus: vec![p("0000:12:00.0")],
        nics: vec![s.pod_nic(0, 0, "net1", Some(Ipv4Addr::new(10, 0, 0, 7)))],
    };
    let opts = HintOptions {
        rail_optimized: true,
        topo_file: Some("/run/jobnet/pods/abc/topo.xml".into()),
    };
    let text = nccl_env(&one, &opts);
    let vf_rdma = &s.written.nics[0].vfs[0].rdma;
    let env = env_map(&text);
    let want: BTreeMap<String, String> = [
        ("NCCL_IB_HCA", format!("={vf_rdma}:1")),
        ("NCCL_SOCKET_IFNAME", "=net1".to_owned()),
        ("NCCL_IB_GID_INDEX", "3".to_owned()),
        ("NCCL_CROSS_NIC", "0".to_owned()),
        ("NCCL_TOPO_FILE", "/run/jobnet/pods/abc/topo.xml".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(env, want);
    assert!(
        text.contains(&format!("# net1: {vf_rdma} port 1 rail 0\n")),
        "{text}"
    );

    // All rails, not rail-optimized, addresses not configured yet.
    let nics = (0..8)
        .map(|r| s.pod_nic(r, 1, &format!("net{}", r + 1), None))
        .collect();
    let all = PodView {
        gpus: vec![p("0000:12:00.0")],
        nics,
    };
    let env = env_map(&nccl_env(&all, &HintOptions::default()));
    let hcas: Vec<String> = s
        .written
        .nics
        .iter()
        .map(|n| format!("{}:1", n.vfs[1].rdma))
        .collect();
    assert_eq!(env["NCCL_IB_HCA"], format!("={}", hcas.join(",")));
    assert_eq!(
        env["NCCL_SOCKET_IFNAME"],
        "=net1,net2,net3,net4,net5,net6,net7,net8"
    );
    assert!(!env.contains_key("NCCL_IB_GID_INDEX"));
    assert!(!env.contains_key("NCCL_CROSS_NIC"));
    assert!(!env.contains_key("NCCL_TOPO_FILE"));
}

#[test]
fn nccl_env_never_writes_unsafe_values() {
    let s = Server::new(&eight_by_eight(0, 1));
    let mut nic = s.pod_nic(0, 0, "net1", None);
    nic.ifname = "net1\nLD_PRELOAD=/x".into();
    let pod = PodView {
        gpus: vec![],
        nics: vec![nic],
    };
    let opts = HintOptions {
        rail_optimized: false,
        topo_file: Some("/tmp/a b".into()),
    };
    let text = nccl_env(&pod, &opts);
    assert!(!text.contains("LD_PRELOAD"), "{text}");
    assert!(!text.contains("NCCL_SOCKET_IFNAME"));
    assert!(!text.contains("NCCL_TOPO_FILE"));
    assert!(text.contains("NCCL_IB_HCA="));
}

#[test]
fn matrix_and_tree_as_data() {
    let s = Server::new(&uneven(0, 2));
    let view = TopoView::build(&s.topo, &Rails::by_pci_order(&s.topo));
    // GPUs by index, then NICs by rail, as the matrix's rows and columns.
    assert_eq!((view.gpus.len(), view.nics.len()), (5, 2));
    for (i, g) in view.gpus.iter().enumerate() {
        assert_eq!(g.name, format!("GPU{i}"));
    }
    assert_eq!((&*view.nics[0].name, &*view.nics[1].name), ("NIC0", "NIC1"));
    let row = |i: usize| {
        let cells: Vec<String> = view.cells[i].iter().map(ToString::to_string).collect();
        cells.join(" ")
    };
    assert_eq!(row(0), "X PXB PHB NODE SYS PIX SYS");
    assert_eq!(row(4), "SYS SYS SYS SYS X SYS PHB");
    assert_eq!(row(6), "SYS SYS SYS SYS PHB SYS X");
    assert_eq!(view.gpus[0].cpus.as_deref(), Some("0-31,64-95"));
    assert_eq!(view.nics[1].numa_node, Some(1));
    assert_eq!(view.nics[1].rail, Some(1));
    assert_eq!(view.nics[0].rdma_device.as_deref(), Some("mlx5_0"));
    assert_eq!(view.nics[0].netdevs, ["enp4s0f0np0"]);
    assert_eq!(view.nics[0].vfs, 2);

    let json = serde_json::to_string(&view).unwrap();
    let back: TopoView = serde_json::from_str(&json).unwrap();
    assert_eq!(back, view);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["cells"][0][5], "PIX");
    assert_eq!(v["cells"][3][5], "NODE");
    assert_eq!(v["nics"][1]["rail"], 1);

    let parent = |id: &str| {
        let n = view.tree.iter().find(|n| n.id == id).unwrap();
        n.parent.clone().unwrap_or_default()
    };
    assert_eq!(parent("sw 0000:05:00.0"), "sw 0000:01:00.0");
    assert_eq!(parent("GPU1"), "sw 0000:05:00.0");
    assert_eq!(parent("GPU3"), "pci0000:40");
    assert_eq!(parent("pci0000:80"), "numa1");
    assert_eq!(parent("numa1"), "");
    // Every edge's ends are declared nodes.
    for n in &view.tree {
        if let Some(parent) = &n.parent {
            assert!(view.tree.iter().any(|m| &m.id == parent), "{parent}");
        }
    }
}
