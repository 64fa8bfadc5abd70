//! RDMA and InfiniBand handling through the `jobnet` binary on the simulated
//! fabric, on this kernel, which has no RDMA netlink: `auto` is shared mode
//! end to end, `exclusive` and `required` are refused with code 104 before
//! anything changes, and an InfiniBand GUID goes to the PF in exactly the
//! bytes `ip link set <pf> vf <n> node_guid <g> port_guid <g>` sends.

mod common;

use std::path::Path;

use common::kernel;
use common::{run::run_in, CniCall, Netns, Node};
use jobnet_tests::fabric::{FabricSpec, FabricVf};
use serde_json::{json, Value};

const HOST_LOCAL: &str = "/usr/lib/cni/host-local";

/// True when host-local and strace are installed; otherwise reports `test`
/// as skipped (the caller returns).
fn have_tools(test: &str) -> bool {
    let ok = Path::new(HOST_LOCAL).exists() && Path::new("/usr/bin/strace").exists();
    if !ok {
        jobnet_tests::skip(
            &format!("rdma_binary::{test}"),
            &format!("needs {HOST_LOCAL} (containernetworking-plugins) and /usr/bin/strace"),
        );
    }
    ok
}

fn rdma_node(rdma: bool) -> Node {
    Node::build(FabricSpec {
        vfs_per_nic: 2,
        rdma,
        ..FabricSpec::default()
    })
}

/// A config for `vf` with host-local IPAM storing its leases under `data`.
fn conf(node: &Node, vf: &FabricVf, cid: &str, data: &Path, rdma: Value) -> Value {
    let mut c = node.conf("1.0.0", "rdmanet", vf, cid, "net1");
    c["ipam"] = json!({"type": "host-local",
        "ranges": [[{"subnet": "10.71.0.0/24"}]], "dataDir": data});
    c["rdma"] = rdma;
    c
}

/// Leases host-local holds for the network.
fn leases(data: &Path) -> usize {
    std::fs::read_dir(data.join("rdmanet"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.parse::<std::net::IpAddr>().is_ok())
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn shared_mode_end_to_end_reports_the_rdma_device() {
    if !have_tools("shared_mode_end_to_end_reports_the_rdma_device") {
        return;
    }
    let node = rdma_node(true);
    let vf = node.vf(0);
    let dev = vf.rdma_device.clone().expect("VF has an RDMA device");
    // The connection manager is loaded on this node.
    std::fs::create_dir_all(node.sysfs_root().join("class/misc/rdma_cm")).expect("rdma_cm");
    let pod = Netns::new("jnrs");
    let data = tempfile::tempdir().expect("tempdir");
    let cid = common::unique("rs");
    let c = conf(
        &node,
        &vf,
        &cid,
        data.path(),
        json!({"isolation": "auto", "required": true}),
    );
    let call = CniCall::new("ADD", &cid, &pod.path(), "net1");
    let result = node.call(&call, &c).ok_json();

    let link = node.assert_vf_in(&vf, &pod.name, "net1");
    let iface = &result["interfaces"][0];
    assert_eq!(iface["name"], "net1");
    assert_eq!(iface["sandbox"], pod.path().as_str());
    assert_eq!(
        iface["mac"],
        link.mac.as_str(),
        "result MAC is the kernel's"
    );
    assert_eq!(kernel::addresses(&pod.name, "net1"), ["10.71.0.2/24"]);

    let info: Value = serde_json::from_slice(
        &std::fs::read(node.devinfo_path(&cid, "net1")).expect("device-info file"),
    )
    .expect("json");
    assert_eq!(info["type"], "pci");
    assert_eq!(info["pci"]["rdma-device"], dev.as_str());
    assert_eq!(info["pci"]["pci-address"], vf.pci.to_string());
    assert_eq!(info["jobnet"]["rdma-isolation"], "shared");
    let chars: Vec<&str> = info["jobnet"]["char-devices"]
        .as_array()
        .expect("char-devices")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(chars.len(), 2, "{info}");
    assert!(chars[0].starts_with("/dev/infiniband/uverbs"), "{info}");
    assert_eq!(chars[1], "/dev/infiniband/rdma_cm");

    // The cache records the RDMA device for DEL.
    let cache: Value =
        serde_json::from_slice(&std::fs::read(node.cache_file(&cid, "net1")).expect("cache"))
            .expect("json");
    assert_eq!(cache["rdma"]["device"], dev.as_str());
    assert_eq!(cache["rdma"]["isolation"], "shared");

    let mut check = c.clone();
    check["prevResult"] = result.clone();
    node.call(&call.cmd("CHECK"), &check)
        .expect_silent_success();

    let mut del = c.clone();
    del["prevResult"] = result;
    node.call(&call.cmd("DEL"), &del).expect_silent_success();
    node.assert_vf_home(&vf);
    node.assert_no_state();
    assert!(!node.devinfo_path(&cid, "net1").exists());
    assert_eq!(leases(data.path()), 0);
}

/// ADD must fail with `code` and change nothing.
fn assert_refused(node: &Node, vf: &FabricVf, rdma: Value, code: u64, needle: &str) {
    let pod = Netns::new("jnrr");
    let data = tempfile::tempdir().expect("tempdir");
    let cid = common::unique("rr");
    let c = conf(node, vf, &cid, data.path(), rdma);
    let run = node.call(&CniCall::new("ADD", &cid, &pod.path(), "net1"), &c);
    let err = run.expect_error(code);
    let msg = err["msg"].as_str().expect("msg");
    assert!(msg.contains(needle), "{msg}");
    node.assert_vf_home(vf);
    node.assert_no_state();
    assert!(!node.devinfo_path(&cid, "net1").exists());
    assert_eq!(kernel::links(&pod.name).len(), 1, "pod not empty");
    assert_eq!(leases(data.path()), 0, "lease not released");
}

#[test]
fn required_rdma_without_an_rdma_device_is_104() {
    if !have_tools("required_rdma_without_an_rdma_device_is_104") {
        return;
    }
    let node = rdma_node(false);
    let vf = node.vf(0);
    assert_refused(
        &node,
        &vf,
        json!({"required": true}),
        104,
        "has no RDMA device",
    );
}

#[test]
fn exclusive_without_rdma_netlink_is_104() {
    if !have_tools("exclusive_without_rdma_netlink_is_104") {
        return;
    }
    let node = rdma_node(true);
    let vf = node.vf(0);
    assert_refused(
        &node,
        &vf,
        json!({"isolation": "exclusive"}),
        104,
        "no RDMA netlink",
    );
}

/// Every buffer `strace -e write=all` dumped, as raw bytes: each dump is
/// lines of ` | OFFSET  hex bytes  ascii |` starting at offset 00000.
fn dumped_datagrams(strace_stderr: &str) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for line in strace_stderr.lines() {
        let Some(rest) = line.strip_prefix(" | ") else {
            continue;
        };
        if rest.starts_with("00000 ") {
            out.push(Vec::new());
        }
        let Some(d) = out.last_mut() else {
            continue;
        };
        // Offset (5), two spaces, then up to 16 bytes in 48 columns.
        for b in rest.get(7..55).unwrap_or("").split_whitespace() {
            d.push(u8::from_str_radix(b, 16).expect("hex byte"));
        }
    }
    out
}

const RTM_NEWLINK: u16 = 16;
const RTM_SETLINK: u16 = 19;
const IFLA_VFINFO_LIST: u16 = 22;
const IFLA_VF_IB_NODE_GUID: u16 = 10;
const IFLA_VF_IB_PORT_GUID: u16 = 11;

/// Payloads (after nlmsghdr) of link requests carrying IFLA_VFINFO_LIST.
fn vf_requests(datagrams: &[Vec<u8>]) -> Vec<Vec<u8>> {
    datagrams
        .iter()
        .filter(|d| d.len() > 36)
        .filter(|d| {
            let t = u16::from_ne_bytes([d[4], d[5]]);
            let first_attr = u16::from_ne_bytes([d[34], d[35]]) & 0x3fff;
            (t == RTM_NEWLINK || t == RTM_SETLINK) && first_attr == IFLA_VFINFO_LIST
        })
        .map(|d| d[16..].to_vec())
        .collect()
}

/// Zeroes the padding in struct ifla_vf_guid, which iproute2 leaves as
/// stack garbage and the kernel never reads.
fn clear_guid_padding(payload: &mut [u8]) {
    let mut off = 16 + 4 + 4;
    while off + 4 <= payload.len() {
        let len = usize::from(u16::from_ne_bytes([payload[off], payload[off + 1]]));
        let kind = u16::from_ne_bytes([payload[off + 2], payload[off + 3]]) & 0x3fff;
        if len < 4 {
            break;
        }
        if (kind == IFLA_VF_IB_NODE_GUID || kind == IFLA_VF_IB_PORT_GUID) && len >= 20 {
            payload[off + 8..off + 12].fill(0);
        }
        off += (len + 3) & !3;
    }
}

const STRACE: [&str; 6] = ["-f", "-e", "trace=sendmsg,sendto", "-e", "write=all", "-qq"];

#[test]
fn infiniband_guid_goes_through_the_pf_like_iproute2_and_rolls_back() {
    if !have_tools("infiniband_guid_goes_through_the_pf_like_iproute2_and_rolls_back") {
        return;
    }
    let node = rdma_node(true);
    let vf = node.vf(1);
    let guid = "00:11:22:33:44:55:66:77";
    let pod = Netns::new("jnig");
    let data = tempfile::tempdir().expect("tempdir");
    for (source, key) in [("runtimeConfig", "infinibandGUID"), ("args", "guid")] {
        let cid = common::unique("ig");
        let mut c = conf(&node, &vf, &cid, data.path(), json!({}));
        if source == "args" {
            c["args"] = json!({"cni": {key: guid}});
        } else {
            c["runtimeConfig"][key] = json!(guid);
        }
        let call = CniCall::new("ADD", &cid, &pod.path(), "net1");
        let vars = call.vars();
        let sysfs = node.sysfs_root();
        let state = node.state_dir().to_str().expect("utf-8").to_owned();
        let mut env: Vec<(&str, &str)> =
            vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        env.push(("JOBNET_SYSFS_ROOT", sysfs.to_str().expect("utf-8")));
        env.push(("JOBNET_STATE_DIR", &state));
        let mut args: Vec<&str> = STRACE.to_vec();
        args.push(env!("CARGO_BIN_EXE_jobnet"));
        let run = run_in(
            Some(&node.netns_path()),
            "strace",
            &args,
            &env,
            c.to_string().as_bytes(),
        );
        // The veth PF parses the request and refuses it, as for iproute2.
        let err = run.expect_error(102);
        let msg = err["msg"].as_str().expect("msg");
        assert!(msg.contains("apply PF-side VF settings"), "{source}: {msg}");
        assert!(
            msg.to_lowercase().contains("not supported"),
            "{source}: {msg}"
        );
        let ours = vf_requests(&dumped_datagrams(&run.stderr));
        assert_eq!(
            ours.len(),
            1,
            "{source}: one PF-side request: {}",
            run.stderr
        );

        let vf_index =
            jobnet_hw::sriov::resolve_vf(&jobnet_hw::SysfsRoot::new(node.sysfs_root()), vf.pci)
                .expect("resolve VF")
                .vf_index
                .to_string();
        let ip_args = [
            "-n",
            node.netns_name(),
            "link",
            "set",
            vf.pf_netdev.as_str(),
            "vf",
            vf_index.as_str(),
            "node_guid",
            guid,
            "port_guid",
            guid,
        ];
        let mut args: Vec<&str> = STRACE.to_vec();
        args.push("ip");
        args.extend(ip_args);
        let ip = run_in(None, "strace", &args, &[], b"");
        assert_ne!(ip.status, 0, "a veth PF has no VFs");
        assert!(
            ip.stderr.contains("Operation not supported"),
            "{}",
            ip.stderr
        );
        let mut theirs = vf_requests(&dumped_datagrams(&ip.stderr));
        assert_eq!(theirs.len(), 1, "{}", ip.stderr);
        clear_guid_padding(&mut theirs[0]);
        assert_eq!(ours[0], theirs[0], "{source}: bytes differ from iproute2's");

        node.assert_vf_home(&vf);
        node.assert_no_state();
        assert!(!node.devinfo_path(&cid, "net1").exists());
        assert_eq!(kernel::links(&pod.name).len(), 1, "pod not empty");
        assert_eq!(leases(data.path()), 0, "lease not released");
    }
}
