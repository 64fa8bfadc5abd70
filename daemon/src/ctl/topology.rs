//! `jobnetctl topo`: the node's topology view as a matrix like
//! `nvidia-smi topo -m` (with the NIC legend) or as a Graphviz picture.

use jobnet_hw::topology::{Cell, PathClass, TopoView};

const LEGEND: &str = "Legend:

  X    = the device itself
  SYS  = path across the SMP interconnect between NUMA nodes (e.g. UPI, xGMI)
  NODE = path between PCIe host bridges within one NUMA node
  PHB  = path through a PCIe host bridge (the CPU root complex)
  PXB  = path through several PCIe bridges, not through a host bridge
  PIX  = path through at most one PCIe bridge (same PCIe switch)
";

/// The matrix as text, `nvidia-smi topo -m` style, with the NIC legend.
pub fn render_matrix(v: &TopoView) -> String {
    let names: Vec<&str> = v
        .gpus
        .iter()
        .chain(&v.nics)
        .map(|d| d.name.as_str())
        .collect();
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0).max(4) + 2;
    let mut out = format!("{:width$}", "");
    for n in &names {
        out.push_str(&format!("{n:width$}"));
    }
    out.push_str("CPU Affinity    NUMA Affinity\n");
    for (d, row) in v.gpus.iter().chain(&v.nics).zip(&v.cells) {
        out.push_str(&format!("{:width$}", d.name));
        for c in row {
            out.push_str(&format!("{:width$}", c.to_string()));
        }
        let cpus = d.cpus.as_deref().unwrap_or("N/A");
        let numa = d
            .numa_node
            .map_or_else(|| "N/A".to_owned(), |n| n.to_string());
        out.push_str(&format!("{cpus:16}{numa}\n"));
    }
    out.push('\n');
    out.push_str(LEGEND);
    if !v.nics.is_empty() {
        out.push_str("\nNIC Legend:\n\n");
        for n in &v.nics {
            let rdma = n.rdma_device.as_deref().unwrap_or("no RDMA");
            let rail = n.rail.map_or_else(|| "-".to_owned(), |r| r.to_string());
            let netdevs = if n.netdevs.is_empty() {
                "-".to_owned()
            } else {
                n.netdevs.join(",")
            };
            out.push_str(&format!(
                "  {}: {rdma} (rail {rail}, {netdevs}, {}, {} VFs)\n",
                n.name, n.pci, n.vfs
            ));
        }
    }
    out
}

fn dot_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The PCI picture as a Graphviz digraph: NUMA nodes, host bridges,
/// switches and devices; GPU-NIC pairs at PIX/PXB get a dashed edge.
pub fn render_dot(v: &TopoView) -> String {
    let mut out = String::from("digraph topology {\n  rankdir=TB;\n  node [shape=box];\n");
    for n in &v.tree {
        let shape = if n.id.starts_with("GPU") {
            ", style=filled, fillcolor=palegreen"
        } else if n.id.starts_with("NIC") {
            ", style=filled, fillcolor=lightblue"
        } else {
            ""
        };
        out.push_str(&format!(
            "  {} [label={}{shape}];\n",
            dot_quote(&n.id),
            dot_quote(&n.label)
        ));
    }
    for n in &v.tree {
        if let Some(p) = &n.parent {
            out.push_str(&format!("  {} -> {};\n", dot_quote(p), dot_quote(&n.id)));
        }
    }
    let g = v.gpus.len();
    for (i, gpu) in v.gpus.iter().enumerate() {
        for (j, nic) in v.nics.iter().enumerate() {
            let cell = v.cells.get(i).and_then(|r| r.get(g + j));
            if let Some(Cell::Path(c @ (PathClass::Pix | PathClass::Pxb))) = cell {
                out.push_str(&format!(
                    "  {} -> {} [dir=none, style=dashed, constraint=false, label={}];\n",
                    dot_quote(&gpu.name),
                    dot_quote(&nic.name),
                    dot_quote(c.as_str())
                ));
            }
        }
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobnet_hw::topology::{Rails, Topology};
    use jobnet_hw::SysfsRoot;
    use jobnet_tests::topo_layouts::{uneven, write_layout};

    /// The view of the uneven server (5 GPUs, 2 NICs with 2 VFs each).
    fn uneven_view() -> TopoView {
        let tmp = tempfile::tempdir().unwrap();
        write_layout(tmp.path(), &uneven(0, 2)).unwrap();
        let topo = Topology::discover(&SysfsRoot::new(tmp.path())).unwrap();
        TopoView::build(&topo, &Rails::by_pci_order(&topo))
    }

    #[test]
    fn matrix_has_a_row_per_device_affinities_and_the_nic_legend() {
        let text = render_matrix(&uneven_view());
        let lines: Vec<&str> = text.lines().collect();
        let words = |i: usize| lines[i].split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(
            words(0),
            "GPU0 GPU1 GPU2 GPU3 GPU4 NIC0 NIC1 CPU Affinity NUMA Affinity"
        );
        assert_eq!(words(1), "GPU0 X PXB PHB NODE SYS PIX SYS 0-31,64-95 0");
        assert_eq!(words(5), "GPU4 SYS SYS SYS SYS X SYS PHB 32-63,96-127 1");
        assert_eq!(words(7), "NIC1 SYS SYS SYS SYS PHB SYS X 32-63,96-127 1");
        for part in [
            "PIX  = path through at most one PCIe bridge",
            "NIC Legend:",
            "  NIC0: mlx5_0 (rail 0, enp4s0f0np0, 0000:04:00.0, 2 VFs)\n",
            "  NIC1: mlx5_1 (rail 1, enp130s0f0np0, 0000:82:00.0, 2 VFs)\n",
        ] {
            assert!(text.contains(part), "{part:?} not in\n{text}");
        }
    }

    #[test]
    fn dot_draws_the_pci_tree_and_close_gpu_nic_pairs() {
        let dot = render_dot(&uneven_view());
        assert!(dot.starts_with("digraph topology {"));
        assert!(dot.ends_with("}\n"));
        let tree_edges = [
            ("sw 0000:01:00.0", "sw 0000:05:00.0"),
            ("sw 0000:05:00.0", "GPU1"),
            ("pci0000:40", "GPU3"),
            ("numa1", "pci0000:80"),
        ];
        for (from, to) in tree_edges {
            let edge = format!("\"{from}\" -> \"{to}\";");
            assert!(dot.contains(&edge), "{edge} not in\n{dot}");
        }
        for (gpu, class) in [("GPU0", "PIX"), ("GPU1", "PXB")] {
            let edge = format!(
                "\"{gpu}\" -> \"NIC0\" [dir=none, style=dashed, constraint=false, label=\"{class}\"];"
            );
            assert!(dot.contains(&edge), "{dot}");
        }
        assert!(!dot.contains("\"GPU2\" -> \"NIC0\""));
    }

    #[test]
    fn dot_names_cannot_break_out_of_their_quotes() {
        assert_eq!(dot_quote("plain"), "\"plain\"");
        assert_eq!(dot_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(dot_quote("x\n];\u{7f}y"), "\"x];y\"");
    }

    #[test]
    fn an_empty_view_renders_without_a_nic_legend() {
        let empty = TopoView {
            gpus: Vec::new(),
            nics: Vec::new(),
            cells: Vec::new(),
            tree: Vec::new(),
        };
        let text = render_matrix(&empty);
        assert!(text.starts_with("      CPU Affinity"), "{text}");
        assert!(!text.contains("NIC Legend"));
        assert_eq!(
            render_dot(&empty),
            "digraph topology {\n  rankdir=TB;\n  node [shape=box];\n}\n"
        );
    }
}
