//! GPU/NIC alignment of single-GPU pods: jobnet's VF choice against the
//! first-free VF (what the SR-IOV device plugin does without topology).
//!
//! Writes a fake server's sysfs tree to a temp dir, discovers it, places
//! one single-GPU pod per GPU both ways and prints the share of pods whose
//! VF is on their GPU's PCIe switch (PIX).
//!
//! `cargo run -p jobnet-daemon --example alignment -- [--layout 8x8|uneven]
//! [--vfs N] [--matrix] [--json]`

use std::process::ExitCode;

use jobnet_daemon::ctl::topology::render_matrix;
use jobnet_daemon::topology::alignment::single_gpu_alignment;
use jobnet_daemon::topology::choice::FreeVfs;
use jobnet_hw::topology::{Rails, TopoView, Topology};
use jobnet_hw::SysfsRoot;
use jobnet_tests::topo_layouts as layouts;

struct Args {
    layout: String,
    vfs: usize,
    matrix: bool,
    json: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        layout: "8x8".to_owned(),
        vfs: 8,
        matrix: false,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--layout" => a.layout = it.next().ok_or("--layout needs a value")?,
            "--vfs" => {
                a.vfs = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|v| (1..=64).contains(v))
                    .ok_or("--vfs needs a number 1..=64")?
            }
            "--matrix" => a.matrix = true,
            "--json" => a.json = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let layout = match args.layout.as_str() {
        "8x8" => layouts::eight_by_eight(0, args.vfs),
        "uneven" => layouts::uneven(0, args.vfs),
        other => return Err(format!("unknown layout {other:?} (8x8, uneven)")),
    };
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    layouts::write_layout(tmp.path(), &layout).map_err(|e| e.to_string())?;
    let topo = Topology::discover(&SysfsRoot::new(tmp.path())).map_err(|e| e.to_string())?;
    let rails = Rails::by_pci_order(&topo);
    let a =
        single_gpu_alignment(&topo, &rails, &FreeVfs::all_of(&topo)).map_err(|e| e.to_string())?;
    if args.matrix {
        println!("{}", render_matrix(&TopoView::build(&topo, &rails)));
    }
    if args.json {
        println!(
            "{{\"layout\":\"{}\",\"vfs_per_nic\":{},\"pods\":{},\"jobnet_pix\":{},\"first_free_pix\":{},\"jobnet_fraction\":{},\"first_free_fraction\":{}}}",
            layout.name,
            args.vfs,
            a.pods,
            a.jobnet_pix,
            a.first_free_pix,
            a.jobnet_fraction(),
            a.first_free_fraction()
        );
    } else {
        println!(
            "layout {} ({} GPUs, {} NICs, {} VFs per NIC): {} single-GPU pods",
            layout.name,
            topo.gpus.len(),
            topo.nics.len(),
            args.vfs,
            a.pods
        );
        println!(
            "jobnet     VF on the GPU's PCIe switch (PIX): {}/{} ({:.1}%)",
            a.jobnet_pix,
            a.pods,
            100.0 * a.jobnet_fraction()
        );
        println!(
            "first-free VF on the GPU's PCIe switch (PIX): {}/{} ({:.1}%)",
            a.first_free_pix,
            a.pods,
            100.0 * a.first_free_fraction()
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("alignment: {e}");
            ExitCode::FAILURE
        }
    }
}
