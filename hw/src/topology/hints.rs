//! The NCCL environment a pod is given (`nccl.env`).
//!
//! - `NCCL_IB_HCA==<dev>:<port>,...`: the pod's RDMA devices, in rail
//!   order. The leading `=` makes NCCL match names exactly (by default it
//!   matches prefixes, and `mlx5_1` would also pick `mlx5_10`). NCCL has no
//!   syntax for rails, so the rail of each device is a comment line.
//! - `NCCL_SOCKET_IFNAME==<ifname>,...`: the pod's interfaces, exact names.
//! - `NCCL_IB_GID_INDEX`: the RoCE v2 GID entry that carries the pod's
//!   address (NCCL takes one index for all devices; when the pod's devices
//!   disagree it is left out and NCCL picks one itself).
//! - `NCCL_CROSS_NIC=0` on rail-optimized pools: rank *i* on every node
//!   talks through rail *i*.
//! - `NCCL_TOPO_FILE`: where the pod's topology file is.

use std::net::IpAddr;

use crate::pci::PciAddr;
use crate::rdma::{LinkLayer, RdmaDevice};

/// One interface a pod got.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PodNic {
    /// Rail of its NIC, when rails are known.
    pub rail: Option<usize>,
    /// The NIC's PF.
    pub pf: PciAddr,
    /// The VF (or the PF itself when it is handed out whole).
    pub vf: PciAddr,
    /// Interface name in the pod (`net1`).
    pub ifname: String,
    /// The VF's RDMA device, read after the pod's address was configured.
    pub rdma: Option<RdmaDevice>,
    /// The pod's addresses on this interface.
    pub addresses: Vec<IpAddr>,
}

impl PodNic {
    /// The RDMA port to use: the first ACTIVE port, else the first, else 1.
    pub fn port(&self) -> u32 {
        let Some(d) = &self.rdma else { return 1 };
        d.ports
            .iter()
            .find(|p| p.is_active())
            .or(d.ports.first())
            .map_or(1, |p| p.number)
    }

    /// The RoCE v2 GID index carrying one of the pod's addresses.
    pub fn gid_index(&self) -> Option<u32> {
        let d = self.rdma.as_ref()?;
        if d.link_layer() != Some(LinkLayer::Ethernet) {
            return None;
        }
        let port = d.port(self.port())?;
        self.addresses
            .iter()
            .find_map(|ip| port.roce_v2_gid_index(*ip))
    }
}

/// What a pod got: its GPUs and its interfaces.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PodView {
    /// The pod's GPUs (PCI addresses).
    pub gpus: Vec<PciAddr>,
    /// Its interfaces, in rail order.
    pub nics: Vec<PodNic>,
}

/// Pool-level settings that shape the hints.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HintOptions {
    /// The pool is rail-optimized (sets `NCCL_CROSS_NIC=0`).
    pub rail_optimized: bool,
    /// Path of the pod's `topo.xml`, as the pod sees it.
    pub topo_file: Option<String>,
}

/// Whether `s` can go into an env file value unquoted.
fn is_plain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 4096
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./:@+".contains(&b))
}

/// The NCCL variables for `pod`, in file order.
pub fn nccl_env_vars(pod: &PodView, opts: &HintOptions) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    let hcas: Vec<String> = pod
        .nics
        .iter()
        .filter_map(|n| {
            let d = n.rdma.as_ref()?;
            is_plain(d.name.as_str()).then(|| format!("{}:{}", d.name, n.port()))
        })
        .collect();
    if !hcas.is_empty() {
        vars.push(("NCCL_IB_HCA".to_owned(), format!("={}", hcas.join(","))));
    }
    let ifnames: Vec<&str> = pod
        .nics
        .iter()
        .map(|n| n.ifname.as_str())
        .filter(|n| is_plain(n))
        .collect();
    if !ifnames.is_empty() {
        vars.push((
            "NCCL_SOCKET_IFNAME".to_owned(),
            format!("={}", ifnames.join(",")),
        ));
    }
    let gids: Vec<u32> = pod.nics.iter().filter_map(PodNic::gid_index).collect();
    if let Some(first) = gids.first() {
        if gids.iter().all(|g| g == first) {
            vars.push(("NCCL_IB_GID_INDEX".to_owned(), first.to_string()));
        }
    }
    if opts.rail_optimized {
        vars.push(("NCCL_CROSS_NIC".to_owned(), "0".to_owned()));
    }
    if let Some(path) = opts.topo_file.as_deref().filter(|p| is_plain(p)) {
        vars.push(("NCCL_TOPO_FILE".to_owned(), path.to_owned()));
    }
    vars
}

/// `nccl.env`: `KEY=value` lines, with the rails and any caveat as comments.
pub fn nccl_env(pod: &PodView, opts: &HintOptions) -> String {
    let mut out = String::from("# NCCL settings for this pod's jobnet interfaces\n");
    for n in &pod.nics {
        let dev = n
            .rdma
            .as_ref()
            .map_or("no RDMA device", |d| d.name.as_str());
        let rail = n
            .rail
            .map_or_else(|| "rail unknown".to_owned(), |r| format!("rail {r}"));
        if is_plain(&n.ifname) && (n.rdma.is_none() || is_plain(dev)) {
            out.push_str(&format!("# {}: {dev} port {} {rail}\n", n.ifname, n.port()));
        }
    }
    let gids: Vec<u32> = pod.nics.iter().filter_map(PodNic::gid_index).collect();
    if gids.iter().any(|g| Some(g) != gids.first()) {
        out.push_str(
            "# RoCE v2 GID indexes differ between devices: NCCL_IB_GID_INDEX left to NCCL\n",
        );
    }
    for (k, v) in nccl_env_vars(pod, opts) {
        out.push_str(&format!("{k}={v}\n"));
    }
    out
}
