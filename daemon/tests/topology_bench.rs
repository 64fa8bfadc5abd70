//! The alignment figure and the topology demo, through the real jobnetd
//! over the fake 8-GPU/8-NIC server. Ignored by default; run with
//! `cargo test -p jobnet-daemon --test topology_bench -- --ignored --nocapture`.

mod common;

use common::{reserve_req, unique, Daemon, FakeSysfs, Opts};
use jobnet_api::{AttachmentKey, Client};
use jobnet_hw::topology::TopoView;
use jobnet_hw::PciAddr;
use jobnet_tests::topo_layouts::{eight_by_eight, write_layout};

/// VFs per NIC: enough that first-free never leaves NIC0.
const VFS: usize = 8;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn server() -> Daemon {
    let sysfs = FakeSysfs::new();
    write_layout(sysfs.path(), &eight_by_eight(0, VFS)).unwrap();
    Daemon::start_with(
        sysfs,
        Opts {
            pools: "[[pools]]\nname = \"gpu\"\ncidrs = [\"10.80.0.0/16\"]\n".into(),
            ..Opts::default()
        },
    )
}

/// Places one pod per GPU (telling jobnetd the GPU when `tell`) and
/// returns how many got a VF on their GPU's PCIe switch.
async fn pix_pods(c: &Client, view: &TopoView, tell: bool) -> usize {
    let mut pix = 0;
    for (i, _) in view.gpus.iter().enumerate() {
        let mut r = reserve_req(&unique("b"), "bench", Some(u32::try_from(i).unwrap()));
        if tell {
            r.gpus = vec![i.to_string()];
        }
        let a = c.reserve(&r).await.unwrap();
        let pf: PciAddr = a.vfs[0].pf_pci;
        let nic = view.nics.iter().position(|n| n.pci == pf).unwrap();
        if view.cells[i][view.gpus.len() + nic].to_string() == "PIX" {
            pix += 1;
        }
    }
    pix
}

#[test]
#[ignore = "prints the alignment figure for scripts/bench.sh"]
fn alignment_of_single_gpu_pods_jobnet_vs_first_free() {
    let pct = |n: usize, d: usize| 100.0 * n as f64 / d as f64;
    let (ours, base, pods) = rt().block_on(async {
        // Separate daemons, so both start from all VFs free.
        let d = server();
        let (ok, json, err) = d.ctl(&["topo", "--json"]);
        assert!(ok, "{err}");
        let view: TopoView = serde_json::from_str(&json).unwrap();
        let ours = pix_pods(&d.client(), &view, true).await;
        let d = server();
        let base = pix_pods(&d.client(), &view, false).await;
        (ours, base, view.gpus.len())
    });
    println!(
        "alignment 8x8 ({pods} single-GPU pods through jobnetd): jobnet {ours}/{pods} PIX ({:.1}%), first-free {base}/{pods} PIX ({:.1}%)",
        pct(ours, pods),
        pct(base, pods)
    );
    assert_eq!(ours, pods);
    assert!(base < pods);
}

#[test]
#[ignore = "prints the topology demo for scripts/demo.sh"]
fn demo_topology_matrix_and_a_ranks_nccl_environment() {
    let d = server();
    let c = d.client();
    rt().block_on(async {
        for (rank, gpu) in [(0u32, "0"), (1, "5")] {
            let cid = unique("demo");
            let mut r = reserve_req(&cid, "llama", Some(rank));
            r.gpus = vec![gpu.to_owned()];
            c.reserve(&r).await.unwrap();
            c.commit(&AttachmentKey::new(cid.as_str(), "net1"))
                .await
                .unwrap();
        }
    });
    for args in [
        &["topo"][..],
        &["job", "show", "llama"],
        &["job", "env", "llama", "--rank", "1"],
    ] {
        let (ok, out, err) = d.ctl(args);
        assert!(ok, "{err}");
        println!("$ jobnetctl {}\n{out}", args.join(" "));
    }
}
