//! Writes a fake sysfs tree of a GPU training server (the layouts in
//! `jobnet_tests::topo_layouts`) to a directory, so that jobnetd can be
//! pointed at it with `sysfs_root`. No kernel objects are made.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use jobnet_tests::topo_layouts::{eight_by_eight, uneven, write_layout};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Kind {
    /// 8 GPUs and 8 NICs over 2 sockets, one GPU+NIC pair per PCIe switch.
    #[value(name = "8x8")]
    EightByEight,
    /// Fewer NICs than GPUs, one NIC on the other socket.
    Uneven,
}

#[derive(Parser, Debug)]
#[command(about = "Write a fake GPU/NIC sysfs tree for jobnetd")]
struct Args {
    /// Directory to write the tree into (created; must be empty or absent).
    dir: PathBuf,
    /// Which server layout.
    #[arg(long, value_enum, default_value = "8x8")]
    layout: Kind,
    /// VFs per NIC.
    #[arg(long, default_value_t = 4)]
    vfs: usize,
    /// Node number (changes MACs and GUIDs only).
    #[arg(long, default_value_t = 0)]
    node: u8,
}

fn main() {
    let args = Args::parse();
    let layout = match args.layout {
        Kind::EightByEight => eight_by_eight(args.node, args.vfs),
        Kind::Uneven => uneven(args.node, args.vfs),
    };
    if let Err(e) =
        std::fs::create_dir_all(&args.dir).and_then(|()| write_layout(&args.dir, &layout))
    {
        eprintln!("jobnet-layout: {}: {e}", args.dir.display());
        std::process::exit(1);
    }
    println!("{}", args.dir.display());
}
