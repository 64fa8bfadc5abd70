//! Every verb through the real binary, results compared field by field with
//! literal JSON. Delegation is checked against a recording fake IPAM plugin
//! (a shell script in a temp dir) so every byte it received can be asserted.
//! Verbs that do device work attach a VF of a one-node simulated fabric,
//! with `jobnet` running inside that node's netns.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{jobnet, Netns, Node, Run};
use jobnet_tests::fabric::FabricVf;
use serde_json::json;

/// A fake IPAM plugin that records its calls and answers from files.
struct FakeIpam {
    dir: tempfile::TempDir,
}

const SCRIPT: &str = r#"#!/bin/sh
d=$(dirname "$0")
cat > "$d/stdin.$CNI_COMMAND"
env | sort > "$d/env.$CNI_COMMAND"
echo "$CNI_COMMAND" >> "$d/calls"
mode=$(cat "$d/mode" 2>/dev/null)
case "$CNI_COMMAND" in
VERSION) echo "{\"cniVersion\":\"1.1.0\",\"supportedVersions\":[$(cat "$d/versions")]}" ;;
ADD)
  if [ "$mode" = fail ]; then
    echo '{"cniVersion":"1.0.0","code":11,"msg":"pool busy","details":"retry later"}'
    exit 1
  fi
  cat "$d/add-result" ;;
STATUS)
  if [ "$mode" = down ]; then echo '{"cniVersion":"1.1.0","code":50,"msg":"ipam down","details":""}'; exit 1; fi ;;
CHECK)
  if [ "$mode" = crash ]; then echo 'garbage'; exit 3; fi ;;
esac
exit 0
"#;

impl FakeIpam {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("fake-ipam");
        fs::write(&script, SCRIPT).expect("write script");
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
        let me = Self { dir };
        me.set("versions", r#""0.4.0","1.0.0","1.1.0""#);
        me.set(
            "add-result",
            &json!({"cniVersion": "1.1.0",
                    "ips": [{"address": "10.20.0.7/24", "gateway": "10.20.0.1"}],
                    "routes": [{"dst": "10.30.0.0/16", "gw": "10.20.0.1"}],
                    "dns": {"nameservers": ["10.20.0.53"]}})
            .to_string(),
        );
        me
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn set(&self, file: &str, content: &str) {
        fs::write(self.dir.path().join(file), content).expect("write fake file");
    }
    fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.dir.path().join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
    fn stdin_of(&self, cmd: &str) -> String {
        fs::read_to_string(self.dir.path().join(format!("stdin.{cmd}"))).expect("stdin recorded")
    }
    fn env_of(&self, cmd: &str) -> String {
        fs::read_to_string(self.dir.path().join(format!("env.{cmd}"))).expect("env recorded")
    }
}

fn attach_env<'a>(cmd: &'a str, ns: &'a str, cni_path: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", "c0ffee"),
        ("CNI_NETNS", ns),
        ("CNI_IFNAME", "net1"),
        ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=w-0;JOBNET_RANK=2"),
        ("CNI_PATH", cni_path),
    ]
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_owned()
}

/// `conf` with the device to attach (`vf`) and its device-info file.
fn with_device(node: &Node, vf: &FabricVf, mut conf: serde_json::Value) -> serde_json::Value {
    conf["deviceID"] = json!(vf.pci.to_string());
    conf["runtimeConfig"]["CNIDeviceInfoFile"] = json!(node.devinfo_path("c0ffee", "net1"));
    conf
}

/// Runs jobnet in the node, then lets the fake sysfs follow `vf`.
fn run(node: &Node, vf: &FabricVf, env: &[(&str, &str)], stdin: &str) -> Run {
    let r = node.jobnet(env, stdin.as_bytes());
    node.sync(vf);
    r
}

/// DEL of the test's attachment; the VF must be back as it was.
fn del_and_verify(node: &Node, vf: &FabricVf, ns: &str, cni_path: &str, conf: &str) {
    run(node, vf, &attach_env("DEL", ns, cni_path), conf).expect_silent_success();
    node.assert_vf_home(vf);
    node.assert_no_state();
}

#[test]
fn version_reports_all_versions_and_echoes_input() {
    let run = jobnet(&[("CNI_COMMAND", "VERSION")], br#"{"cniVersion":"0.3.1"}"#);
    assert_eq!(run.status, 0, "{run:?}");
    assert_eq!(
        run.json(),
        json!({"cniVersion": "0.3.1", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
    );
    for stdin in [&b""[..], b"garbage", br#"{"cniVersion":"9.0.0"}"#] {
        let run = jobnet(&[("CNI_COMMAND", "VERSION")], stdin);
        assert_eq!(run.status, 0, "{run:?}");
        assert_eq!(run.json()["cniVersion"], "1.1.0");
    }
}

/// The result in every version: a 1.1.0 IPAM answer converted down, with
/// the config's MAC and MTU and the VF's PCI address. Retried ADDs (same
/// container and ifname) answer from the attachment cache.
#[test]
fn add_result_in_every_version() {
    let node = Node::small(1);
    let vf = node.vf(0);
    let pci = vf.pci.to_string();
    let ns = Netns::new("jnverb");
    let nsp = ns.path();
    let ipam = FakeIpam::new();
    ipam.set(
        "add-result",
        &json!({"cniVersion": "1.1.0",
                "ips": [{"address": "10.5.0.9/24"}, {"address": "fd00:5::9/64"}]})
        .to_string(),
    );
    let cni_path = format!("/nonexistent:{}", path_str(ipam.path()));
    let conf = |v: &str| {
        with_device(
            &node,
            &vf,
            json!({"cniVersion": v, "name": "job-a", "type": "jobnet", "mtu": 9000,
                   "mac": "02:11:22:33:44:55", "ipam": {"type": "fake-ipam"}}),
        )
        .to_string()
    };
    let r = run(
        &node,
        &vf,
        &attach_env("ADD", &nsp, &cni_path),
        &conf("1.1.0"),
    );
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(
        r.json(),
        json!({
            "cniVersion": "1.1.0",
            "interfaces": [{"name": "net1", "mac": "02:11:22:33:44:55", "mtu": 9000,
                            "sandbox": nsp, "pciID": pci}],
            "ips": [{"interface": 0, "address": "10.5.0.9/24"},
                    {"interface": 0, "address": "fd00:5::9/64"}]
        })
    );
    let r = run(
        &node,
        &vf,
        &attach_env("ADD", &nsp, &cni_path),
        &conf("1.0.0"),
    );
    assert_eq!(
        r.json(),
        json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "net1", "mac": "02:11:22:33:44:55", "sandbox": nsp}],
            "ips": [{"interface": 0, "address": "10.5.0.9/24"},
                    {"interface": 0, "address": "fd00:5::9/64"}]
        })
    );
    for v in ["0.3.0", "0.3.1", "0.4.0"] {
        let r = run(&node, &vf, &attach_env("ADD", &nsp, &cni_path), &conf(v));
        assert_eq!(r.status, 0, "{r:?}");
        assert_eq!(
            r.json(),
            json!({
                "cniVersion": v,
                "interfaces": [{"name": "net1", "mac": "02:11:22:33:44:55", "sandbox": nsp}],
                "ips": [{"version": "4", "interface": 0, "address": "10.5.0.9/24"},
                        {"version": "6", "interface": 0, "address": "fd00:5::9/64"}]
            }),
            "{v}"
        );
    }
    node.assert_vf_in(&vf, &ns.name, "net1");
    del_and_verify(&node, &vf, &nsp, &cni_path, &conf("1.1.0"));
}

#[test]
fn add_delegates_ipam_with_same_env_and_config() {
    let node = Node::small(1);
    let vf = node.vf(0);
    let orig = node.original(&vf).clone();
    let ns = Netns::new("jnverb");
    let nsp = ns.path();
    let ipam = FakeIpam::new();
    let cni_path = format!("/nonexistent:{}", path_str(ipam.path()));
    let conf = with_device(
        &node,
        &vf,
        json!({"cniVersion": "1.1.0", "name": "job-b", "type": "jobnet",
               "ipam": {"type": "fake-ipam", "pool": "p1"}, "extra": [1, 2]}),
    )
    .to_string();
    let r = run(&node, &vf, &attach_env("ADD", &nsp, &cni_path), &conf);
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(
        r.json(),
        json!({
            "cniVersion": "1.1.0",
            "interfaces": [{"name": "net1", "mac": orig.mac, "mtu": orig.mtu,
                            "sandbox": nsp, "pciID": vf.pci.to_string()}],
            "ips": [{"interface": 0, "address": "10.20.0.7/24", "gateway": "10.20.0.1"}],
            "routes": [{"dst": "10.30.0.0/16", "gw": "10.20.0.1"}],
            "dns": {"nameservers": ["10.20.0.53"]}
        })
    );
    assert_eq!(ipam.calls(), ["ADD"]);
    // The complete config, byte for byte, and the same CNI_* environment.
    assert_eq!(ipam.stdin_of("ADD"), conf);
    let env = ipam.env_of("ADD");
    for line in [
        "CNI_COMMAND=ADD".to_owned(),
        "CNI_CONTAINERID=c0ffee".to_owned(),
        format!("CNI_NETNS={nsp}"),
        "CNI_IFNAME=net1".to_owned(),
        "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=w-0;JOBNET_RANK=2".to_owned(),
        format!("CNI_PATH={cni_path}"),
    ] {
        assert!(env.lines().any(|l| l == line), "missing {line} in {env}");
    }
    del_and_verify(&node, &vf, &nsp, &cni_path, &conf);
    assert_eq!(ipam.calls(), ["ADD", "DEL"]);
}

#[test]
fn add_with_prev_result_appends_and_keeps_everything() {
    let node = Node::small(1);
    let vf = node.vf(0);
    let mac = node.original(&vf).mac.clone();
    let ns = Netns::new("jnverb");
    let nsp = ns.path();
    let ipam = FakeIpam::new();
    let cni_path = path_str(ipam.path());
    let prev = json!({"cniVersion": "0.4.0",
        "interfaces": [{"name": "eth0", "mac": "0a:58:0a:58:00:05", "sandbox": nsp}],
        "ips": [{"version": "4", "interface": 0, "address": "10.88.0.5/16", "gateway": "10.88.0.1"}],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {"nameservers": ["10.88.0.1"]}});
    let conf = with_device(
        &node,
        &vf,
        json!({"cniVersion": "0.4.0", "name": "job-c", "type": "jobnet",
               "ipam": {"type": "fake-ipam"}, "prevResult": prev}),
    )
    .to_string();
    let r = run(&node, &vf, &attach_env("ADD", &nsp, &cni_path), &conf);
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(
        r.json(),
        json!({"cniVersion": "0.4.0",
            "interfaces": [{"name": "eth0", "mac": "0a:58:0a:58:00:05", "sandbox": nsp},
                           {"name": "net1", "mac": mac, "sandbox": nsp}],
            "ips": [{"version": "4", "interface": 0, "address": "10.88.0.5/16", "gateway": "10.88.0.1"},
                    {"version": "4", "interface": 1, "address": "10.20.0.7/24", "gateway": "10.20.0.1"}],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.30.0.0/16", "gw": "10.20.0.1"}],
            "dns": {"nameservers": ["10.88.0.1"]}})
    );
    del_and_verify(&node, &vf, &nsp, &cni_path, &conf);
}

#[test]
fn failed_ipam_add_propagates_code_and_releases() {
    let node = Node::small(1);
    let vf = node.vf(0);
    let ns = Netns::new("jnverb");
    let nsp = ns.path();
    let ipam = FakeIpam::new();
    ipam.set("mode", "fail");
    let conf = with_device(
        &node,
        &vf,
        json!({"cniVersion": "1.0.0", "name": "job-d", "type": "jobnet",
               "ipam": {"type": "fake-ipam"}}),
    )
    .to_string();
    let r = run(
        &node,
        &vf,
        &attach_env("ADD", &nsp, &path_str(ipam.path())),
        &conf,
    );
    let err = r.expect_error(11);
    assert_eq!(err["msg"], "pool busy");
    assert_eq!(err["details"], "retry later");
    assert_eq!(err["cniVersion"], "1.0.0");
    assert_eq!(ipam.calls(), ["ADD", "DEL"]);
    assert!(ipam.env_of("DEL").lines().any(|l| l == "CNI_COMMAND=DEL"));
    // The device was never touched.
    node.assert_vf_home(&vf);
    node.assert_no_state();
    assert!(!node.devinfo_path("c0ffee", "net1").exists());
}

#[test]
fn del_is_tolerant_and_delegates() {
    let state = tempfile::tempdir().expect("tempdir");
    let state_dir = path_str(state.path());
    let ipam = FakeIpam::new();
    let cni_path = path_str(ipam.path());
    let conf = json!({"cniVersion": "1.1.0", "name": "job-e", "type": "jobnet",
                      "ipam": {"type": "fake-ipam"}})
    .to_string();
    // No netns, a gone netns, a path that is not a netns: all succeed, IPAM DEL each time.
    let mut runs = 0;
    for netns in [
        None,
        Some("/run/netns/jobnet-gone"),
        Some("/tmp"),
        Some("relative"),
    ] {
        let mut env = attach_env("DEL", "", &cni_path);
        env.retain(|(k, _)| *k != "CNI_NETNS");
        if let Some(n) = netns {
            env.push(("CNI_NETNS", n));
        }
        env.push(("JOBNET_STATE_DIR", &state_dir));
        jobnet(&env, conf.as_bytes()).expect_silent_success();
        runs += 1;
        assert_eq!(ipam.calls().len(), runs, "{netns:?}");
    }
    assert!(ipam.calls().iter().all(|c| c == "DEL"));
    // Repeated DEL without IPAM and without a reachable jobnetd: still
    // success (the release is queued for the daemon).
    let sock = state.path().join("no-jobnetd.sock");
    let plain = json!({"cniVersion": "0.3.1", "name": "job-e", "type": "jobnet",
                       "daemonSocket": sock})
    .to_string();
    let mut env = attach_env("DEL", "/run/netns/gone", "/x");
    env.push(("JOBNET_STATE_DIR", &state_dir));
    jobnet(&env, plain.as_bytes()).expect_silent_success();
    jobnet(&env, plain.as_bytes()).expect_silent_success();
}

#[test]
fn check_validates_prev_result_and_delegates() {
    let node = Node::small(1);
    let vf = node.vf(0);
    let ns = Netns::new("jnverb");
    let nsp = ns.path();
    let ipam = FakeIpam::new();
    let cni_path = path_str(ipam.path());
    let conf = |prev: Option<serde_json::Value>| {
        let mut c = with_device(
            &node,
            &vf,
            json!({"cniVersion": "1.0.0", "name": "job-f", "type": "jobnet",
                   "ipam": {"type": "fake-ipam"}}),
        );
        if let Some(p) = prev {
            c["prevResult"] = p;
        }
        c.to_string()
    };
    // CHECK verifies what an ADD did: attach first.
    let added = run(&node, &vf, &attach_env("ADD", &nsp, &cni_path), &conf(None));
    assert_eq!(added.status, 0, "{added:?}");
    assert_eq!(ipam.calls(), ["ADD"]);
    let good = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "net1", "sandbox": nsp}],
                      "ips": [{"interface": 0, "address": "10.20.0.7/24"}]});
    run(
        &node,
        &vf,
        &attach_env("CHECK", &nsp, &cni_path),
        &conf(Some(good.clone())),
    )
    .expect_silent_success();
    assert_eq!(ipam.calls(), ["ADD", "CHECK"]);
    // Our interface listed in another sandbox: the attachment is not what ADD made.
    let other = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "net1", "sandbox": "/run/netns/else"}]});
    run(
        &node,
        &vf,
        &attach_env("CHECK", &nsp, &cni_path),
        &conf(Some(other)),
    )
    .expect_error(106);
    // IPAM CHECK failing without a CNI error object: code 105.
    ipam.set("mode", "crash");
    run(
        &node,
        &vf,
        &attach_env("CHECK", &nsp, &cni_path),
        &conf(Some(good.clone())),
    )
    .expect_error(105);
    ipam.set("mode", "");
    del_and_verify(&node, &vf, &nsp, &cni_path, &conf(Some(good)));
}

#[test]
fn status_forwards_only_to_plugins_that_know_it() {
    let ipam = FakeIpam::new();
    let cni_path = path_str(ipam.path());
    let status_env = [("CNI_COMMAND", "STATUS"), ("CNI_PATH", cni_path.as_str())];
    let conf = json!({"cniVersion": "1.1.0", "name": "job-g", "type": "jobnet",
                      "ipam": {"type": "fake-ipam"}})
    .to_string();
    jobnet(&status_env, conf.as_bytes()).expect_silent_success();
    assert_eq!(ipam.calls(), ["VERSION", "STATUS"]);
    ipam.set("mode", "down");
    let err = jobnet(&status_env, conf.as_bytes()).expect_error(50);
    assert_eq!(err["msg"], "ipam down");
    // A plugin that predates 1.1.0 is not sent STATUS.
    ipam.set("versions", r#""0.4.0","1.0.0""#);
    jobnet(&status_env, conf.as_bytes()).expect_silent_success();
    assert_eq!(ipam.calls().last().map(String::as_str), Some("VERSION"));
    // No IPAM at all: jobnetd answers STATUS; no daemon at the socket: 50.
    let sock = ipam.path().join("no-jobnetd.sock");
    let plain = json!({"cniVersion": "1.1.0", "name": "job-g", "type": "jobnet",
                       "daemonSocket": sock})
    .to_string();
    let err = jobnet(&[("CNI_COMMAND", "STATUS")], plain.as_bytes()).expect_error(50);
    assert!(
        err["msg"].as_str().is_some_and(|m| m.contains("jobnetd")),
        "{err}"
    );
    let missing = json!({"cniVersion": "1.1.0", "name": "job-g", "type": "jobnet",
                         "ipam": {"type": "no-such-ipam"}})
    .to_string();
    jobnet(&status_env, missing.as_bytes()).expect_error(50);
}

#[test]
fn gc_forwards_valid_attachments() {
    let ipam = FakeIpam::new();
    let cni_path = path_str(ipam.path());
    let conf = json!({"cniVersion": "1.1.0", "name": "job-h", "type": "jobnet",
                      "ipam": {"type": "fake-ipam"},
                      "cni.dev/valid-attachments": [{"containerID": "c0ffee", "ifname": "net1"}]})
    .to_string();
    jobnet(
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", &cni_path)],
        conf.as_bytes(),
    )
    .expect_silent_success();
    assert_eq!(ipam.calls(), ["VERSION", "GC"]);
    assert_eq!(ipam.stdin_of("GC"), conf);
}

#[test]
fn log_file_gets_logs_and_stdout_stays_clean() {
    let node = Node::small(1);
    let vf = node.vf(0);
    let ns = Netns::new("jnverb");
    let nsp = ns.path();
    let ipam = FakeIpam::new();
    let cni_path = path_str(ipam.path());
    let dir = tempfile::tempdir().expect("tempdir");
    let log: PathBuf = dir.path().join("jobnet.log");
    let conf = with_device(
        &node,
        &vf,
        json!({"cniVersion": "1.0.0", "name": "job-i", "type": "jobnet",
               "ipam": {"type": "fake-ipam"},
               "logLevel": "debug", "logFile": path_str(&log)}),
    )
    .to_string();
    let r = run(&node, &vf, &attach_env("ADD", &nsp, &cni_path), &conf);
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(r.json()["interfaces"][0]["name"], "net1");
    assert!(r.stderr.is_empty(), "{r:?}");
    let first = fs::read_to_string(&log).expect("log written");
    assert!(first.contains("ADD") && first.contains("c0ffee"), "{first}");
    // Appends: a second run adds to the same file.
    let r = run(&node, &vf, &attach_env("ADD", &nsp, &cni_path), &conf);
    assert_eq!(r.status, 0);
    let both = fs::read_to_string(&log).expect("log");
    assert!(both.starts_with(&first), "log was rewritten: {both}");
    assert!(
        both.matches("c0ffee").count() > first.matches("c0ffee").count(),
        "second run did not append: {both}"
    );
    del_and_verify(&node, &vf, &nsp, &cni_path, &conf);
}
