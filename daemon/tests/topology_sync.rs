//! The hints sync of a restarted jobnetd over a store larger than one page:
//! only pods whose files are missing or stale are written again, pods whose
//! attachments straddle a page boundary stay whole, and directories of
//! unknown pods go.

mod common;

use std::path::{Path, PathBuf};

use common::{reserve_req, unique, Daemon, FakeSysfs, Opts};
use jobnet_api::{AttachmentKey, PodHints};
use jobnet_tests::topo_layouts::{eight_by_eight, write_layout};

/// Three interfaces per pod: 200 pods are 600 attachments, more than one
/// 512-attachment page, and 512 is not a multiple of 3, so one pod's
/// attachments fall on both sides of the boundary.
const IFNAMES: [&str; 3] = ["net1", "net2", "net3"];
const PODS: usize = 200;
const SENTINEL: &str = "# untouched since the first start\n";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn parts_in_pod_json(dir: &Path) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&read(&dir.join("pod.json"))).unwrap();
    v["parts"].as_object().unwrap().keys().cloned().collect()
}

#[test]
fn a_restart_rewrites_only_missing_or_stale_pods_across_pages() {
    let sysfs = FakeSysfs::new();
    // 8 NICs x 80 VFs: room for 600 attachments.
    write_layout(sysfs.path(), &eight_by_eight(0, 80)).unwrap();
    let mut d = Daemon::start_with(
        sysfs,
        Opts {
            pools: "[[pools]]\nname = \"gpu\"\ncidrs = [\"10.80.0.0/16\"]\n".into(),
            ..Opts::default()
        },
    );
    let pods: Vec<String> = (0..PODS).map(|_| unique("s")).collect();
    let c = d.client();
    rt().block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for (n, chunk) in pods.chunks(10).enumerate() {
            // One job per chunk: a job's subnet holds fewer than 600 addresses.
            let job = format!("sync{n}");
            let c = c.clone();
            let chunk = chunk.to_vec();
            set.spawn(async move {
                for cid in chunk {
                    for ifname in IFNAMES {
                        let mut r = reserve_req(&cid, &job, None);
                        r.ifname = ifname.into();
                        c.reserve(&r).await.unwrap();
                        c.commit(&AttachmentKey::new(cid.as_str(), ifname))
                            .await
                            .unwrap();
                    }
                }
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
    });
    let pods_dir: PathBuf = d.dir.path().join("run/pods");
    let dir = |cid: &str| pods_dir.join(cid);
    for cid in &pods {
        assert_eq!(parts_in_pod_json(&dir(cid)), IFNAMES, "{cid}");
    }
    let reference = read(&dir(&pods[3]).join("nccl.env"));

    // Damage a few pods in every way the sync must repair, mark the rest.
    let missing_env = &pods[0];
    let missing_dir = &pods[1];
    let stale_marker = &pods[2];
    std::fs::remove_file(dir(missing_env).join("nccl.env")).unwrap();
    std::fs::remove_dir_all(dir(missing_dir)).unwrap();
    let pj = dir(stale_marker).join("pod.json");
    let mut v: serde_json::Value = serde_json::from_str(&read(&pj)).unwrap();
    v["parts"]["net2"]["attachment"]["reservedAtMs"] = serde_json::json!(1);
    std::fs::write(&pj, v.to_string()).unwrap();
    std::fs::write(dir(stale_marker).join("nccl.env"), "STALE=1\n").unwrap();
    for cid in &pods[3..] {
        let p = dir(cid).join("nccl.env");
        let text = read(&p);
        std::fs::write(&p, format!("{text}{SENTINEL}")).unwrap();
    }
    let unknown = pods_dir.join(unique("gone"));
    std::fs::create_dir_all(&unknown).unwrap();
    std::fs::write(unknown.join("nccl.env"), "X=1\n").unwrap();

    let passes = d.startup_passes();
    d.stop();
    d.spawn();
    d.wait_startup_passes(passes + 1);

    assert!(!unknown.exists(), "a directory of an unknown pod survived");
    for cid in [missing_env, missing_dir, stale_marker] {
        let env = read(&dir(cid).join("nccl.env"));
        for ifname in IFNAMES {
            assert!(env.contains(&format!("# {ifname}: ")), "{cid}: {env}");
        }
        assert!(
            !env.contains("STALE") && !env.contains(SENTINEL),
            "{cid}: {env}"
        );
        assert!(dir(cid).join("topo.xml").is_file(), "{cid}");
        assert_eq!(parts_in_pod_json(&dir(cid)), IFNAMES, "{cid}");
        // Same shape as an untouched pod's file, up to the pod's own paths.
        assert_eq!(
            env.lines().count(),
            reference.lines().count(),
            "{cid}: {env}"
        );
    }
    // Current pods (including the one across the page boundary) were not
    // rendered again: the mark is still there.
    let rewritten: Vec<&String> = pods[3..]
        .iter()
        .filter(|cid| !read(&dir(cid).join("nccl.env")).ends_with(SENTINEL))
        .collect();
    assert!(
        rewritten.is_empty(),
        "rewritten without need: {rewritten:?}"
    );

    // The API serves what the files hold, and renders files a pod lost.
    std::fs::remove_dir_all(dir(&pods[4])).unwrap();
    let served: PodHints = rt()
        .block_on(
            d.client()
                .hints(&AttachmentKey::new(pods[4].as_str(), "net2")),
        )
        .unwrap();
    assert_eq!(served.attachments, IFNAMES);
    assert_eq!(served.nccl_env, read(&dir(&pods[4]).join("nccl.env")));

    // Releasing one interface rewrites the pod without it; the last one removes it.
    let c = d.client();
    let cid = &pods[5];
    rt().block_on(c.release(&AttachmentKey::new(cid.as_str(), "net2")))
        .unwrap();
    assert_eq!(parts_in_pod_json(&dir(cid)), ["net1", "net3"]);
    assert!(!read(&dir(cid).join("nccl.env")).contains("net2"));
    for ifname in ["net1", "net3"] {
        rt().block_on(c.release(&AttachmentKey::new(cid.as_str(), ifname)))
            .unwrap();
    }
    assert!(!dir(cid).exists(), "hints left after the last release");
}
