//! GC delivers the releases a DEL queued while jobnetd was away, except
//! those of attachments the runtime lists as valid: GC may be the last
//! plugin run a node sees for a long while, and a queued release must not
//! outlive the daemon's return.

use std::path::{Path, PathBuf};

use jobnet_tests::harness::{unique, CniCall, Daemon, PluginRun, Pod};
use serde_json::json;

const NETWORK: &str = "gc-queue-net";

fn run(command: &str, cid: &str, pod: &Pod, state: &Path, socket: &Path) -> PluginRun {
    let mut conf = json!({
        "cniVersion": "1.1.0", "name": NETWORK, "type": "jobnet",
        "daemonSocket": socket,
    });
    if command == "GC" {
        conf["cni.dev/valid-attachments"] = json!([{"containerID": cid, "ifname": "net1"}]);
    }
    CniCall::new(command, cid, &pod.path(), "net1")
        .cni_path()
        .dirs(state, state)
        .run(Path::new("/proc/self/ns/net"), &conf)
}

fn queued(state: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(state.join("pending-release"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn gc_delivers_queued_releases_but_keeps_those_of_valid_attachments() {
    let state = tempfile::tempdir().unwrap();
    let sysfs = tempfile::tempdir().unwrap();
    let pod = Pod::new("gcq");
    let gone = unique("gcq-gone");
    let listed = unique("gcq-listed");
    let nowhere: PathBuf = state.path().join("no-jobnetd.sock");

    // jobnetd is away: both DELs finish their (empty) device work and queue.
    for cid in [&gone, &listed] {
        let r = run("DEL", cid, &pod, state.path(), &nowhere);
        assert!(r.ok, "DEL with jobnetd away: {}{}", r.stdout, r.stderr);
    }
    let want = |cid: &str| format!("{cid}.net1.json");
    let mut both = vec![want(&gone), want(&listed)];
    both.sort();
    assert_eq!(queued(state.path()), both, "DEL did not queue its release");

    // jobnetd is back; the runtime's GC lists `listed` as valid.
    let daemon = Daemon::start("gcq-node", sysfs.path(), "");
    let r = run("GC", &listed, &pod, state.path(), &daemon.socket);
    assert!(r.ok, "GC: {}{}\n{}", r.stdout, r.stderr, daemon.log());
    assert_eq!(
        queued(state.path()),
        [want(&listed)],
        "GC must deliver the release of an attachment it was not told is valid, and only that one"
    );
}
