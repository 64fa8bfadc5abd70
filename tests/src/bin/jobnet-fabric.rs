//! `jobnet-fabric`: brings simulated SR-IOV fabrics up, shows them, tears
//! them down (also the ones crashed test runs left behind).

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use jobnet_tests::fabric::plan::GpuLayout;
use jobnet_tests::fabric::{self, Fabric, FabricError, FabricId, FabricLayout, FabricSpec};

/// Simulated SR-IOV fabric for jobnet tests and demos.
#[derive(Parser)]
#[command(name = "jobnet-fabric")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build a fabric and leave it in place; prints what was made.
    Up(UpArgs),
    /// Remove one fabric, or every fabric whose owner is gone (--all).
    Down {
        /// Fabric id (as printed by `up`).
        id: Option<String>,
        /// Remove every fabric left by `up` or by crashed tests, and orphans.
        #[arg(long)]
        all: bool,
        /// With --all: also fabrics whose owning process still runs.
        #[arg(long)]
        force: bool,
    },
    /// Show one fabric or list all of them.
    Status {
        /// Fabric id.
        id: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct UpArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 2)]
    nodes: usize,
    /// NICs (rails) per node [default: 1, or the GPU layout's NIC count].
    #[arg(long)]
    nics: Option<usize>,
    /// VFs per NIC.
    #[arg(long, default_value_t = 4)]
    vfs: usize,
    /// Use the host netns as the single node.
    #[arg(long)]
    host: bool,
    /// Give PFs and VFs RDMA devices in sysfs.
    #[arg(long)]
    rdma: bool,
    /// The last N VFs of every NIC are DPDK (vfio-pci) VFs.
    #[arg(long, default_value_t = 0)]
    dpdk: usize,
    /// Switchdev eswitch: representors in the node netns (unbridged) and
    /// an underlay address on every PF, for jobnet's `vxlan` isolation.
    #[arg(long)]
    switchdev: bool,
    /// Lay every node out as a GPU server: `8x8` (8 GPUs, 8 NICs, 2
    /// sockets) or `uneven` (5 GPUs, 2 NICs); the fabric's NICs take the
    /// server's NIC slots. Implies --rdma.
    #[arg(long, value_parser = parse_gpus)]
    gpus: Option<GpuLayout>,
    /// A management network: `mgmt0` in every node (10.254.0.<node+1>/24)
    /// on a bridge in the netns `jf<id>-mgmt`, which holds 10.254.0.254,
    /// for services the nodes reach (etcd).
    #[arg(long)]
    mgmt: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_gpus(s: &str) -> Result<GpuLayout, String> {
    s.parse()
}

fn parse_id(s: &str) -> Result<FabricId, FabricError> {
    FabricId::parse(s).ok_or_else(|| FabricError::NoSuchFabric(s.to_owned()))
}

fn print_layout(l: &FabricLayout) {
    let s = &l.spec;
    println!(
        "fabric {}: {} node(s) x {} NIC(s) x {} VF(s){}{}{}{}{}{}",
        l.id,
        s.nodes,
        s.nics_per_node,
        s.vfs_per_nic,
        s.gpus
            .map(|g| format!(", {g} GPU server"))
            .unwrap_or_default(),
        if s.host_node { ", host node" } else { "" },
        if s.rdma { ", rdma" } else { "" },
        if s.switchdev { ", switchdev" } else { "" },
        if s.mgmt { ", mgmt" } else { "" },
        if s.dpdk_vfs > 0 {
            format!(", {} DPDK VF(s) per NIC", s.dpdk_vfs)
        } else {
            String::new()
        },
    );
    for r in &l.rails {
        println!("  rail {}: netns {} bridge {}", r.index, r.netns, r.bridge);
    }
    if let Some(m) = &l.mgmt {
        println!(
            "  mgmt: netns {} bridge {} address {}/{}",
            m.netns, m.bridge, m.address, m.prefix_len
        );
    }
    for n in &l.nodes {
        println!(
            "  node {}: netns {} JOBNET_SYSFS_ROOT={}",
            n.index,
            n.netns.as_deref().unwrap_or("(host)"),
            n.sysfs_root.display()
        );
        if let Some(nm) = &n.mgmt {
            println!("    {} {}", nm.ifname, nm.address);
        }
        for (i, g) in n.gpus.iter().enumerate() {
            println!("    GPU{i} {g}");
        }
        for pf in &n.pfs {
            println!(
                "    PF {} {} rail {} numa {}{}{}",
                pf.pci,
                pf.netdev,
                pf.nic,
                pf.numa_node,
                pf.rdma_device
                    .as_deref()
                    .map(|d| format!(" rdma {d}"))
                    .unwrap_or_default(),
                pf.underlay
                    .map(|a| format!(" underlay {a}/{}", fabric::plan::UNDERLAY_PREFIX))
                    .unwrap_or_default()
            );
            for vf in l
                .vfs
                .iter()
                .filter(|v| v.id.node == n.index && v.id.nic == pf.nic)
            {
                println!(
                    "      VF{} {} {} rep {} {}{}",
                    vf.id.index,
                    vf.pci,
                    vf.netdev.as_deref().unwrap_or("-"),
                    vf.representor.as_deref().unwrap_or("-"),
                    vf.driver,
                    vf.rdma_device
                        .as_deref()
                        .map(|d| format!(" rdma {d}"))
                        .unwrap_or_default()
                );
            }
        }
    }
}

fn json<T: serde::Serialize>(v: &T) -> Result<(), FabricError> {
    let text = serde_json::to_string_pretty(v).map_err(|e| FabricError::State {
        path: "stdout".into(),
        detail: e.to_string(),
    })?;
    println!("{text}");
    Ok(())
}

fn run(cli: Cli) -> Result<(), FabricError> {
    match cli.cmd {
        Cmd::Up(a) => {
            let spec = FabricSpec {
                nodes: a.nodes,
                nics_per_node: a
                    .nics
                    .unwrap_or_else(|| a.gpus.map_or(1, GpuLayout::nic_count)),
                vfs_per_nic: a.vfs,
                host_node: a.host,
                rdma: a.rdma || a.gpus.is_some(),
                dpdk_vfs: a.dpdk,
                switchdev: a.switchdev,
                gpus: a.gpus,
                mgmt: a.mgmt,
            };
            let layout = Fabric::build(spec)?.persist()?;
            if a.json {
                json(&layout)
            } else {
                print_layout(&layout);
                Ok(())
            }
        }
        Cmd::Down { id: Some(id), .. } => {
            fabric::down(&parse_id(&id)?)?;
            println!("fabric {id} removed");
            Ok(())
        }
        Cmd::Down {
            id: None,
            all: true,
            force,
        } => {
            let c = fabric::down_all(force)?;
            for id in &c.fabrics {
                println!("removed fabric {id}");
            }
            for id in &c.kept_live {
                println!("kept fabric {id} (its owner still runs; --force removes it)");
            }
            for n in &c.orphan_netns {
                println!("removed orphan netns {n}");
            }
            for d in &c.orphan_dirs {
                println!("removed orphan dir {}", d.display());
            }
            Ok(())
        }
        Cmd::Down { id: None, .. } => Err(FabricError::Spec("down needs an id or --all".into())),
        Cmd::Status {
            id: Some(id),
            json: j,
        } => {
            let f = Fabric::load(&parse_id(&id)?)?;
            if j {
                json(f.layout())
            } else {
                print_layout(f.layout());
                Ok(())
            }
        }
        Cmd::Status { id: None, json: j } => {
            let all = fabric::list();
            if j {
                let layouts: Vec<&FabricLayout> = all.iter().map(|s| &s.layout).collect();
                return json(&layouts);
            }
            if all.is_empty() {
                println!("no fabrics");
            }
            for st in &all {
                let owner = match &st.owner {
                    Some(o) if o.alive() => format!("owned by pid {}", o.pid),
                    Some(o) => format!("owner pid {} gone", o.pid),
                    None => "made by up".into(),
                };
                let s = &st.layout.spec;
                let gpus = s.gpus.map(|g| format!(", {g} GPUs")).unwrap_or_default();
                let mgmt = st
                    .layout
                    .mgmt
                    .as_ref()
                    .map(|m| format!(", mgmt {} at {}", m.netns, m.address))
                    .unwrap_or_default();
                println!(
                    "{}: {}x{}x{}{gpus}{mgmt} ({owner})",
                    st.layout.id, s.nodes, s.nics_per_node, s.vfs_per_nic
                );
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jobnet-fabric: {e}");
            ExitCode::FAILURE
        }
    }
}
