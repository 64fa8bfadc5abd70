//! The plugin killed (SIGKILL) at any moment of an ADD, then a normal DEL:
//! the VF is back as it was and nothing of the attachment is left, neither
//! under the state dir (caches, their temp files, owner records, locks)
//! nor in the delegated IPAM plugin's lease store.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::ipam::{FixedIpam, FIXED_IPAM};
use common::{kernel, wait_within, CniCall, Netns, Node};
use jobnet_tests::fault::rng::{seed_from_env, Rng};
use jobnet_tests::harness::require_reference_plugin;
use serde_json::json;

const ROUNDS: usize = 60;
/// Bound on one ADD or DEL of the storm (a hung plugin fails the test).
const RUN_BOUND: Duration = Duration::from_secs(30);

/// Waits for `child` within [`RUN_BOUND`]; returns its status.
fn wait_bounded(child: &mut std::process::Child, what: &str) -> std::process::ExitStatus {
    wait_within(child, RUN_BOUND)
        .unwrap_or_else(|| panic!("{what} did not finish within {RUN_BOUND:?}"))
}

/// Lease files of host-local under `dir` (it names them after the address;
/// `lock` and `last_reserved_ip.*` are its bookkeeping).
fn leases(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(nets) = std::fs::read_dir(dir) else {
        return out;
    };
    for net in nets.flatten() {
        let Ok(files) = std::fs::read_dir(net.path()) else {
            continue;
        };
        for f in files.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if name != "lock" && !name.starts_with("last_reserved_ip") {
                out.push(f.path());
            }
        }
    }
    out
}

#[test]
fn sigkill_during_add_then_del_leaves_nothing() {
    require_reference_plugin("host-local");
    let node = Node::small(1);
    let vf = node.vf(0);
    let pod = Netns::new("jnks");
    let data = node.files().join("host-local");
    let conf_for = |cid: &str| {
        let mut c = node.conf("1.0.0", "killstorm", &vf, cid, "net1");
        c["ipam"] = json!({"type": "host-local", "subnet": "10.78.0.0/24", "dataDir": data});
        c["mtu"] = json!(1280);
        c["mac"] = json!("02:4b:11:55:00:01");
        c
    };

    // How long an undisturbed ADD takes: kills land anywhere in it.
    let cid = common::unique("kw");
    let call = CniCall::new("ADD", &cid, &pod.path(), "net1");
    let started = Instant::now();
    node.call(&call, &conf_for(&cid)).ok_json();
    let add_time = started.elapsed();
    node.call(&call.cmd("DEL"), &conf_for(&cid))
        .expect_silent_success();
    node.assert_vf_home(&vf);
    node.assert_no_state();
    let window = u64::try_from(add_time.as_micros()).unwrap_or(u64::MAX) * 3 / 2;

    let seed = seed_from_env("JOBNET_STORM_SEED");
    eprintln!("kill storm: seed {seed} (JOBNET_STORM_SEED), ADD takes {add_time:?}");
    let mut rng = Rng::new(seed);
    let mut finished = 0;
    for round in 0..ROUNDS {
        let cid = common::unique("ks");
        let conf = conf_for(&cid);
        let call = CniCall::new("ADD", &cid, &pod.path(), "net1");
        let delay = Duration::from_micros(rng.below(window));
        let mut child = node.spawn(&call, &conf, Stdio::null());
        std::thread::sleep(delay);
        let _ = child.kill();
        wait_bounded(&mut child, "killed ADD");
        node.sync(&vf);
        if node.locate(&vf).is_some_and(|(ns, _)| ns == pod.name)
            && node.cache_file(&cid, "net1").exists()
        {
            finished += 1;
        }

        let mut del = node.spawn(&call.cmd("DEL"), &conf, Stdio::null());
        let status = wait_bounded(&mut del, "DEL");
        node.sync(&vf);
        assert!(
            status.success(),
            "round {round} (delay {delay:?}): DEL failed"
        );
        let ctx = format!("round {round} (seed {seed}, delay {delay:?})");
        assert_eq!(
            &node.snapshot(&vf),
            node.original(&vf),
            "{ctx}: VF not restored"
        );
        assert_eq!(
            node.state_files(),
            Vec::<PathBuf>::new(),
            "{ctx}: state left behind"
        );
        assert_eq!(
            leases(&data),
            Vec::<PathBuf>::new(),
            "{ctx}: lease left behind"
        );
        assert!(
            !node.devinfo_path(&cid, "net1").exists(),
            "{ctx}: device-info file left"
        );
        assert_eq!(kernel::links(&pod.name).len(), 1, "{ctx}: pod not empty");
    }
    eprintln!("{ROUNDS} rounds, {finished} ADDs had attached before the kill");
}

/// A torn temp file of a save the kill interrupted: the attachment's DEL
/// (and its next save) find it by its name.
#[test]
fn temp_files_of_an_interrupted_save_go_with_the_attachment() {
    let node = Node::small(1);
    let vf = node.vf(0);
    let ipam =
        FixedIpam::new(&json!({"cniVersion": "1.1.0", "ips": [{"address": "10.78.1.5/24"}]}));
    let pod = Netns::new("jnkt");
    let cid = common::unique("kt");
    let call = CniCall::new("ADD", &cid, &pod.path(), "net1").cni_path(&ipam.cni_path());
    let mut conf = node.conf("1.1.0", "killtmp", &vf, &cid, "net1");
    conf["ipam"] = json!({"type": FIXED_IPAM});
    node.call(&call, &conf).ok_json();

    let cache = node.cache_file(&cid, "net1");
    let cache_tmp = cache.with_extension("json.tmp");
    std::fs::write(&cache_tmp, b"{\"format\": 1, \"contai").expect("torn cache temp");
    let devinfo = node.devinfo_path(&cid, "net1");
    let devinfo_tmp = devinfo.with_extension("tmp");
    std::fs::write(&devinfo_tmp, b"{\"type\": \"pc").expect("torn device-info temp");

    node.call(&call.cmd("DEL"), &conf).expect_silent_success();
    node.assert_vf_home(&vf);
    node.assert_no_state();
    assert!(!devinfo_tmp.exists(), "device-info temp file left");
}
