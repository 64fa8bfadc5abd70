//! Topology-aware VF choice, NCCL hints and the topology views, against the
//! real jobnetd over the fake 8-GPU/8-NIC server's sysfs.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use common::{reserve_req, unique, Daemon, FakeSysfs, Opts};
use jobnet_api::{AttachmentKey, ErrorCode, PodHints, Rails, ReserveRequest};
use jobnet_hw::topology::TopoView;
use jobnet_hw::PciAddr;
use jobnet_tests::topo_layouts::{eight_by_eight, uneven, write_layout, Layout, WrittenLayout};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A one-rail pool over every NIC (the daemon picks the NIC).
const ONE_RAIL: &str = r#"
[[pools]]
name = "gpu"
cidrs = ["10.60.0.0/16"]
"#;

/// A rail-optimized pool: NIC i is rail i.
const EIGHT_RAILS: &str = r#"
[[pools]]
name = "rails"
cidrs = ["10.70.0.0/16"]
rails = 8
"#;

/// jobnetd over the 8x8 server with `vfs` VFs per NIC and `pools`.
fn server(vfs: usize, pools: &str) -> (Daemon, WrittenLayout) {
    server_of(&eight_by_eight(0, vfs), pools)
}

/// jobnetd over `layout` with `pools`.
fn server_of(layout: &Layout, pools: &str) -> (Daemon, WrittenLayout) {
    let sysfs = FakeSysfs::new();
    let written = write_layout(sysfs.path(), layout).unwrap();
    let d = Daemon::start_with(
        sysfs,
        Opts {
            pools: pools.into(),
            ..Opts::default()
        },
    );
    (d, written)
}

fn req(cid: &str, job: &str, gpus: &[&str]) -> ReserveRequest {
    let mut r = reserve_req(cid, job, None);
    r.gpus = gpus.iter().map(|g| (*g).to_owned()).collect();
    r
}

fn pods_dir(d: &Daemon) -> PathBuf {
    d.dir.path().join("run/pods")
}

#[test]
fn every_single_gpu_pod_gets_a_vf_on_its_gpus_pix_nic() {
    let (d, w) = server(2, ONE_RAIL);
    let c = d.client();
    rt().block_on(async {
        for (i, (gpu, _)) in w.gpus.iter().enumerate() {
            // Half by index, half by PCI address: both are accepted.
            let gpu_ref = if i % 2 == 0 {
                i.to_string()
            } else {
                gpu.to_string()
            };
            let a = c
                .reserve(&req(&unique("g"), "single", &[&gpu_ref]))
                .await
                .unwrap();
            assert_eq!(a.vfs.len(), 1);
            assert_eq!(a.vfs[0].pf_pci, w.nics[i].pf, "GPU{i} ({gpu_ref})");
        }
        // Without GPUs the choice stays first-free: NIC0 still has a VF.
        let a = c.reserve(&req(&unique("n"), "single", &[])).await.unwrap();
        assert_eq!(a.vfs[0].pf_pci, w.nics[0].pf);
        // UUIDs are valid CNI input that sysfs cannot place: the pod is not
        // refused, the known GPU still decides.
        let a = c
            .reserve(&req(&unique("u"), "single", &["GPU-3c5a0e6c-1f", "7"]))
            .await
            .unwrap();
        assert_eq!(a.vfs[0].pf_pci, w.nics[7].pf);
        // A GPU the node does not have is the caller's mistake.
        let e = c
            .reserve(&req(&unique("x"), "single", &["0000:ee:00.0"]))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        let e = c
            .reserve(&req(&unique("x"), "single", &["8"]))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
    });
}

#[test]
fn uneven_server_gpus_get_the_nearest_of_two_nics() {
    // NIC0 shares GPU0's switch (PIX), is PXB to GPU1 behind the nested
    // switch, PHB to GPU2, NODE to GPU3 (other host bridge, same socket)
    // and SYS to GPU4; NIC1 is on GPU4's socket (PHB).
    let (d, w) = server_of(&uneven(0, 8), ONE_RAIL);
    let c = d.client();
    rt().block_on(async {
        for (gpu, nic) in [(0, 0), (1, 0), (2, 0), (3, 0), (4, 1)] {
            let a = c
                .reserve(&req(&unique("u"), "uneven", &[&gpu.to_string()]))
                .await
                .unwrap();
            assert_eq!(a.vfs[0].pf_pci, w.nics[nic].pf, "GPU{gpu}");
        }
        // GPUs 3 and 4: NIC0 is NODE/SYS, NIC1 SYS/PHB; worst is SYS for
        // both, NIC1 is closer in sum (SYS+PHB < NODE+SYS).
        let a = c
            .reserve(&req(&unique("u"), "uneven", &["3", "4"]))
            .await
            .unwrap();
        assert_eq!(a.vfs[0].pf_pci, w.nics[1].pf);
    });
}

#[test]
fn gpu_sets_take_the_closest_nic_then_the_one_with_more_free_vfs() {
    let (d, w) = server(3, ONE_RAIL);
    let c = d.client();
    let pf = |i: usize| w.nics[i].pf;
    rt().block_on(async {
        let got = |gpus: &'static [&'static str]| {
            let c = c.clone();
            async move {
                c.reserve(&req(&unique("s"), "sets", gpus))
                    .await
                    .unwrap()
                    .vfs[0]
                    .pf_pci
            }
        };
        // GPUs 0 and 1: NIC0 and NIC1 are both PIX to one and PHB to the
        // other; equal free VFs, so rail order; then the one with more free.
        assert_eq!(got(&["0", "1"]).await, pf(0));
        assert_eq!(got(&["0", "1"]).await, pf(1));
        assert_eq!(got(&["0", "1"]).await, pf(0));
        // GPUs 5 and 6 (socket 1): NIC5 first.
        assert_eq!(got(&["5", "6"]).await, pf(5));
        // GPUs 4..7: every socket-1 NIC is PIX to one of them; NIC5 has a VF
        // fewer, so NIC4 (most free VFs, then rail order).
        assert_eq!(got(&["4", "5", "6", "7"]).await, pf(4));
        // GPU 3 once its NIC is full: another NIC on its socket (PHB), not
        // one across the interconnect (SYS).
        for _ in 0..3 {
            assert_eq!(got(&["3"]).await, pf(3));
        }
        let next = got(&["3"]).await;
        assert!((0..3).map(pf).any(|p| p == next), "{next}");
    });
}

#[test]
fn all_rails_gets_one_vf_per_nic_in_rail_order() {
    let (d, w) = server(2, EIGHT_RAILS);
    let c = d.client();
    rt().block_on(async {
        let mut r = req(&unique("a"), "allrails", &["2"]);
        r.rails = Rails::All;
        let a = c.reserve(&r).await.unwrap();
        let got: Vec<(u32, PciAddr)> = a.vfs.iter().map(|v| (v.rail, v.pf_pci)).collect();
        let want: Vec<(u32, PciAddr)> = (0u32..8).zip(w.nics.iter().map(|n| n.pf)).collect();
        assert_eq!(got, want);
        // One rail per request with GPUs: the GPU's own rail.
        let a = c
            .reserve(&req(&unique("o"), "allrails", &["6"]))
            .await
            .unwrap();
        assert_eq!((a.vfs[0].rail, a.vfs[0].pf_pci), (6, w.nics[6].pf));
    });
}

#[test]
fn a_given_device_id_is_kept_and_a_bad_placement_is_logged() {
    let (d, w) = server(2, ONE_RAIL);
    let c = d.client();
    let far = w.nics[5].vfs[0].pci;
    let near = w.nics[0].vfs[1].pci;
    rt().block_on(async {
        let mut r = req(&unique("far"), "dev", &["0"]);
        r.device_id = Some(far);
        let a = c.reserve(&r).await.unwrap();
        assert_eq!(a.vfs[0].pci, far);
        let mut r = req(&unique("near"), "dev", &["0"]);
        r.device_id = Some(near);
        let a = c.reserve(&r).await.unwrap();
        assert_eq!(a.vfs[0].pci, near);
    });
    let log = d.log();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("badly placed")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains(&far.to_string()), "{}", warnings[0]);
    assert!(
        warnings[0].contains("SYS") && warnings[0].contains("PIX"),
        "{}",
        warnings[0]
    );
}

/// The value of `name=` in an env file.
fn env_value<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
}

fn first_ipv4(a: &jobnet_api::Attachment) -> Ipv4Addr {
    a.addresses
        .iter()
        .find_map(|r| match r.address.addr() {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
        .unwrap()
}

#[test]
fn hints_are_written_on_commit_served_and_removed_on_release() {
    let (mut d, w) = server(2, ONE_RAIL);
    let c = d.client();
    let cid = unique("h");
    let key = AttachmentKey::new(cid.as_str(), "net1");
    let dir = pods_dir(&d).join(&cid);
    let gpu3 = w.gpus[3].0;
    let a = rt().block_on(async {
        let mut r = req(&cid, "hints", &[&gpu3.to_string()]);
        r.rank = Some(0);
        c.reserve(&r).await.unwrap()
    });
    let vf = a.vfs[0].pci;
    assert_eq!(a.vfs[0].pf_pci, w.nics[3].pf);
    assert!(!dir.join("nccl.env").exists(), "hints before commit");
    // What the kernel does when the CNI configures the pod's address.
    assert_eq!(w.add_ipv4_gid(vf, first_ipv4(&a)).unwrap(), 3);
    rt().block_on(c.commit(&key)).unwrap();

    let env = std::fs::read_to_string(dir.join("nccl.env")).unwrap();
    let rdma = &w.vf(vf).unwrap().rdma;
    assert_eq!(
        env_value(&env, "NCCL_IB_HCA"),
        Some(format!("={rdma}:1").as_str()),
        "{env}"
    );
    assert_eq!(
        env_value(&env, "NCCL_SOCKET_IFNAME"),
        Some("=net1"),
        "{env}"
    );
    assert_eq!(env_value(&env, "NCCL_IB_GID_INDEX"), Some("3"), "{env}");
    // A one-rail pool is not rail-optimized.
    assert_eq!(env_value(&env, "NCCL_CROSS_NIC"), None, "{env}");
    let topo_path = dir.join("topo.xml");
    assert_eq!(
        env_value(&env, "NCCL_TOPO_FILE"),
        Some(topo_path.to_str().unwrap())
    );
    assert!(env.contains("# net1: ") && env.contains("rail 3"), "{env}");

    let xml = std::fs::read_to_string(&topo_path).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let gpus: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("gpu"))
        .collect();
    assert_eq!(gpus.len(), 1, "{xml}");
    let gpu_pci = gpus[0].parent().unwrap();
    assert_eq!(gpu_pci.attribute("busid"), Some(gpu3.to_string().as_str()));
    let nets: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("net"))
        .collect();
    assert_eq!(nets.len(), 1, "{xml}");
    assert_eq!(nets[0].attribute("name"), Some(rdma.as_str()));
    assert_eq!(nets[0].attribute("speed"), Some("200000"));
    let nic_pci = nets[0]
        .ancestors()
        .find(|n| n.has_tag_name("pci") && n.attribute("busid") == Some(&vf.to_string()))
        .map(|_| ());
    assert!(nic_pci.is_some(), "{xml}");
    // GPU3 and its NIC share a switch on socket 0: one <cpu numaid="0">.
    let cpus: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("cpu"))
        .collect();
    assert_eq!(cpus.len(), 1);
    assert_eq!(cpus[0].attribute("numaid"), Some("0"));

    let served: PodHints = rt().block_on(d.client().hints(&key)).unwrap();
    assert_eq!(served.nccl_env, env);
    assert_eq!(served.topo_xml, xml);
    assert_eq!(served.attachments, vec!["net1".to_owned()]);
    assert!(served
        .env
        .iter()
        .any(|v| v.name == "NCCL_IB_GID_INDEX" && v.value == "3"));

    // A restart rebuilds the same hints (GPUs kept in pod.json) and
    // removes directories of pods it does not know.
    let stale = pods_dir(&d).join("stale-pod");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("nccl.env"), "X=1\n").unwrap();
    std::fs::remove_file(dir.join("nccl.env")).unwrap();
    let passes = d.startup_passes();
    d.stop();
    d.spawn();
    d.wait_startup_passes(passes + 1);
    assert!(!stale.exists(), "stale pod directory survived a restart");
    assert_eq!(std::fs::read_to_string(dir.join("nccl.env")).unwrap(), env);
    assert_eq!(std::fs::read_to_string(&topo_path).unwrap(), xml);

    let c = d.client();
    rt().block_on(c.release(&key)).unwrap();
    assert!(!dir.exists(), "hints left after release");
    let e = rt().block_on(c.hints(&key)).unwrap_err();
    assert_eq!(e.code, ErrorCode::UnknownAttachment);
}

#[test]
fn all_rails_hints_name_every_interface_and_turn_cross_nic_off() {
    let (d, w) = server(1, EIGHT_RAILS);
    let c = d.client();
    let cid = unique("r");
    let key = AttachmentKey::new(cid.as_str(), "net1");
    rt().block_on(async {
        let mut r = req(&cid, "railhints", &["0", "1"]);
        r.rails = Rails::All;
        c.reserve(&r).await.unwrap();
        c.commit(&key).await.unwrap();
    });
    let env = std::fs::read_to_string(pods_dir(&d).join(&cid).join("nccl.env")).unwrap();
    let hcas: Vec<String> = w
        .nics
        .iter()
        .map(|n| format!("{}:1", n.vfs[0].rdma))
        .collect();
    assert_eq!(
        env_value(&env, "NCCL_IB_HCA"),
        Some(format!("={}", hcas.join(",")).as_str()),
        "{env}"
    );
    assert_eq!(
        env_value(&env, "NCCL_SOCKET_IFNAME"),
        Some("=net1,net1r1,net1r2,net1r3,net1r4,net1r5,net1r6,net1r7"),
        "{env}"
    );
    assert_eq!(env_value(&env, "NCCL_CROSS_NIC"), Some("0"), "{env}");
    for r in 0..8 {
        assert!(env.contains(&format!("rail {r}\n")), "rail {r}: {env}");
    }
    let xml = std::fs::read_to_string(pods_dir(&d).join(&cid).join("topo.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let rails: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("net"))
        .filter_map(|n| n.attribute("rail"))
        .collect();
    assert_eq!(rails, ["0", "1", "2", "3", "4", "5", "6", "7"], "{xml}");
    assert_eq!(
        doc.descendants().filter(|n| n.has_tag_name("gpu")).count(),
        2
    );
}

/// `nvidia-smi topo -m` for the 8x8 server, written out by hand: GPU i and
/// NIC i share PCIe switch i; switches 0-3 hang off socket 0's host bridge,
/// 4-7 off socket 1's.
const EXPECTED_8X8: &str = "
GPU0 X    PHB  PHB  PHB  SYS  SYS  SYS  SYS  PIX  PHB  PHB  PHB  SYS  SYS  SYS  SYS  0-31,64-95   0
GPU1 PHB  X    PHB  PHB  SYS  SYS  SYS  SYS  PHB  PIX  PHB  PHB  SYS  SYS  SYS  SYS  0-31,64-95   0
GPU2 PHB  PHB  X    PHB  SYS  SYS  SYS  SYS  PHB  PHB  PIX  PHB  SYS  SYS  SYS  SYS  0-31,64-95   0
GPU3 PHB  PHB  PHB  X    SYS  SYS  SYS  SYS  PHB  PHB  PHB  PIX  SYS  SYS  SYS  SYS  0-31,64-95   0
GPU4 SYS  SYS  SYS  SYS  X    PHB  PHB  PHB  SYS  SYS  SYS  SYS  PIX  PHB  PHB  PHB  32-63,96-127 1
GPU5 SYS  SYS  SYS  SYS  PHB  X    PHB  PHB  SYS  SYS  SYS  SYS  PHB  PIX  PHB  PHB  32-63,96-127 1
GPU6 SYS  SYS  SYS  SYS  PHB  PHB  X    PHB  SYS  SYS  SYS  SYS  PHB  PHB  PIX  PHB  32-63,96-127 1
GPU7 SYS  SYS  SYS  SYS  PHB  PHB  PHB  X    SYS  SYS  SYS  SYS  PHB  PHB  PHB  PIX  32-63,96-127 1
NIC0 PIX  PHB  PHB  PHB  SYS  SYS  SYS  SYS  X    PHB  PHB  PHB  SYS  SYS  SYS  SYS  0-31,64-95   0
NIC1 PHB  PIX  PHB  PHB  SYS  SYS  SYS  SYS  PHB  X    PHB  PHB  SYS  SYS  SYS  SYS  0-31,64-95   0
NIC2 PHB  PHB  PIX  PHB  SYS  SYS  SYS  SYS  PHB  PHB  X    PHB  SYS  SYS  SYS  SYS  0-31,64-95   0
NIC3 PHB  PHB  PHB  PIX  SYS  SYS  SYS  SYS  PHB  PHB  PHB  X    SYS  SYS  SYS  SYS  0-31,64-95   0
NIC4 SYS  SYS  SYS  SYS  PIX  PHB  PHB  PHB  SYS  SYS  SYS  SYS  X    PHB  PHB  PHB  32-63,96-127 1
NIC5 SYS  SYS  SYS  SYS  PHB  PIX  PHB  PHB  SYS  SYS  SYS  SYS  PHB  X    PHB  PHB  32-63,96-127 1
NIC6 SYS  SYS  SYS  SYS  PHB  PHB  PIX  PHB  SYS  SYS  SYS  SYS  PHB  PHB  X    PHB  32-63,96-127 1
NIC7 SYS  SYS  SYS  SYS  PHB  PHB  PHB  PIX  SYS  SYS  SYS  SYS  PHB  PHB  PHB  X    32-63,96-127 1
";

#[test]
fn jobnetctl_topo_prints_the_expected_matrix_json_and_dot() {
    let (d, w) = server(2, EIGHT_RAILS);
    let (ok, out, err) = d.ctl(&["topo"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    let names: Vec<String> = (0..8)
        .map(|i| format!("GPU{i}"))
        .chain((0..8).map(|i| format!("NIC{i}")))
        .collect();
    assert_eq!(header[..16], names[..], "{out}");
    assert_eq!(header[16..], ["CPU", "Affinity", "NUMA", "Affinity"]);
    let expected: Vec<Vec<&str>> = EXPECTED_8X8
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    let got: Vec<Vec<&str>> = lines[1..=16]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(got, expected, "{out}");
    // The NIC legend gives each rail's RDMA device, netdev and PF.
    for (i, n) in w.nics.iter().enumerate() {
        let want = format!(
            "  NIC{i}: {} (rail {i}, {}, {}, 2 VFs)",
            n.rdma, n.netdev, n.pf
        );
        assert!(out.lines().any(|l| l == want), "{want}\n{out}");
    }

    let (ok, json, err) = d.ctl(&["topo", "--json"]);
    assert!(ok, "{err}");
    let view: TopoView = serde_json::from_str(&json).unwrap();
    assert_eq!(view.gpus.len(), 8);
    assert_eq!(view.nics.len(), 8);
    assert_eq!(view.cells[0][8].to_string(), "PIX");
    assert_eq!(view.cells[0][12].to_string(), "SYS");

    let (ok, dot, err) = d.ctl(&["topo", "--dot"]);
    assert!(ok, "{err}");
    assert!(dot.starts_with("digraph topology {"), "{dot}");
    for i in 0..8 {
        let edge = format!("\"GPU{i}\" -> \"NIC{i}\" [dir=none, style=dashed");
        assert!(dot.contains(&edge), "{edge}\n{dot}");
    }
}

#[test]
fn jobnetctl_job_env_prints_a_ranks_nccl_environment() {
    let (d, _w) = server(2, ONE_RAIL);
    let c = d.client();
    let job = unique("envjob");
    let mut cids = Vec::new();
    rt().block_on(async {
        for rank in 0..2u32 {
            let cid = unique("e");
            let mut r = req(&cid, &job, &[&(rank * 4).to_string()]);
            r.rank = Some(rank);
            c.reserve(&r).await.unwrap();
            c.commit(&AttachmentKey::new(cid.as_str(), "net1"))
                .await
                .unwrap();
            cids.push(cid);
        }
    });
    for (rank, cid) in cids.iter().enumerate() {
        let (ok, out, err) = d.ctl(&["job", "env", &job, "--rank", &rank.to_string()]);
        assert!(ok, "{err}");
        let file = std::fs::read_to_string(pods_dir(&d).join(cid).join("nccl.env")).unwrap();
        assert_eq!(out, file);
        assert!(env_value(&out, "NCCL_IB_HCA").is_some(), "{out}");
    }
    // Rank 0 has GPU0 (socket 0) and rank 1 GPU4 (socket 1): different NICs.
    let (_, r0, _) = d.ctl(&["job", "env", &job, "--rank", "0"]);
    let (_, r1, _) = d.ctl(&["job", "env", &job, "--rank", "1"]);
    assert_ne!(env_value(&r0, "NCCL_IB_HCA"), env_value(&r1, "NCCL_IB_HCA"));
    let (ok, json, _) = d.ctl(&["--json", "job", "env", &job, "--rank", "1"]);
    assert!(ok);
    let h: PodHints = serde_json::from_str(&json).unwrap();
    assert_eq!(h.container_id, cids[1]);
    let (ok, _, err) = d.ctl(&["job", "env", &job, "--rank", "7"]);
    assert!(!ok);
    assert!(err.contains("no rank 7"), "{err}");
}
