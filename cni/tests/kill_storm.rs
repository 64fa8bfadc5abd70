//! The plugin killed (SIGKILL) at any moment of an ADD, then a normal DEL:
//! the VF is back as it was and nothing of the attachment is left, neither
//! under the state dir (caches, their temp files, owner records, locks)
//! nor in the delegated IPAM plugin's lease store.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::ipam::{FixedIpam, FIXED_IPAM};
use common::{kernel, CniCall, Netns, Node};
use serde_json::{json, Value};

const ROUNDS: usize = 60;
/// Bound on one ADD or DEL of the storm (a hung plugin fails the test).
const RUN_BOUND: Duration = Duration::from_secs(30);

/// A small deterministic generator (xorshift64*), seeded per run and
/// printed, so a failing round can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

fn seed() -> u64 {
    std::env::var("JOBNET_STORM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        })
}

/// Starts the plugin in the node like a runtime does.
fn spawn(node: &Node, call: &CniCall, conf: &Value) -> std::process::Child {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={}", node.netns_path().display()))
        .arg(env!("CARGO_BIN_EXE_jobnet"))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("JOBNET_SYSFS_ROOT", node.sysfs_root())
        .env("JOBNET_STATE_DIR", node.state_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in call.vars() {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn jobnet");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(conf.to_string().as_bytes());
    }
    child
}

/// Waits for `child` within [`RUN_BOUND`].
fn wait_bounded(child: &mut std::process::Child, what: &str) {
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > RUN_BOUND {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {RUN_BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
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
    let host_local = Path::new(common::node::REFERENCE_PLUGINS).join("host-local");
    assert!(
        host_local.exists(),
        "{} is missing (scripts/install-deps.sh installs it)",
        host_local.display()
    );
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

    let seed = seed();
    eprintln!("kill storm: seed {seed} (JOBNET_STORM_SEED), ADD takes {add_time:?}");
    let mut rng = Rng(seed);
    let mut finished = 0;
    for round in 0..ROUNDS {
        let cid = common::unique("ks");
        let conf = conf_for(&cid);
        let call = CniCall::new("ADD", &cid, &pod.path(), "net1");
        let delay = Duration::from_micros(rng.below(window));
        let mut child = spawn(&node, &call, &conf);
        std::thread::sleep(delay);
        let _ = child.kill();
        wait_bounded(&mut child, "killed ADD");
        node.sync(&vf);
        if node.locate(&vf).is_some_and(|(ns, _)| ns == pod.name)
            && node.cache_file(&cid, "net1").exists()
        {
            finished += 1;
        }

        let mut del = spawn(&node, &call.cmd("DEL"), &conf);
        wait_bounded(&mut del, "DEL");
        let status = del.wait().expect("DEL status");
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
