//! Routes from delegated IPAM, installed as Debian's reference plugins
//! install them: one IPAM result (static) goes through jobnet on one VF of a
//! simulated node and through `host-device` on another VF of the same node,
//! each into its own pod; both pods must then show the same kernel state
//! (routes in every table, addresses, MTU, each VF's own MAC) and both
//! plugins the same result. A route without `gw` takes the gateway of its
//! family from the IP configs, else it is on-link; IPv4 and IPv6 alike.

mod common;

use std::path::Path;

use common::kernel;
use common::run::run_in;
use common::{CniCall, Netns, Node, Run};
use serde_json::{json, Value};

const PLUGINS: &str = common::node::REFERENCE_PLUGINS;
const IFNAME: &str = "eth0";

/// `None` when the reference plugins are not installed, after reporting
/// `test` as skipped (the caller returns).
fn plugins(test: &str) -> Option<()> {
    if ["static", "host-device"]
        .iter()
        .all(|p| Path::new(PLUGINS).join(p).exists())
    {
        Some(())
    } else {
        jobnet_tests::skip(
            &format!("routes_reference::{test}"),
            &format!(
                "{PLUGINS} lacks static or host-device (install containernetworking-plugins; \
                 scripts/test.sh does)"
            ),
        );
        None
    }
}

/// One route as the kernel shows it, every field that decides forwarding.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct KernelRoute {
    family: &'static str,
    table: String,
    dst: String,
    gateway: Option<String>,
    scope: String,
    protocol: String,
    metric: Option<u64>,
    prefsrc: Option<String>,
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

/// Every unicast route through `IFNAME` in every table of `netns`, sorted.
/// (Local-table entries carry each VF's own link-local address: not
/// comparable across two VFs, and no plugin installs them.)
fn kernel_routes(netns: &str) -> Vec<KernelRoute> {
    let mut out = Vec::new();
    for family in ["-4", "-6"] {
        let rows = kernel::ip_json(
            netns,
            &[family, "-d", "route", "show", "table", "all", "dev", IFNAME],
        );
        for r in rows {
            if r["type"] != "unicast" {
                continue;
            }
            out.push(KernelRoute {
                family: if family == "-4" { "inet" } else { "inet6" },
                table: text(&r["table"]).unwrap_or_else(|| "main".into()),
                dst: text(&r["dst"]).expect("route dst"),
                gateway: text(&r["gateway"]),
                scope: text(&r["scope"]).unwrap_or_else(|| "global".into()),
                protocol: text(&r["protocol"]).unwrap_or_else(|| "boot".into()),
                metric: r["metric"].as_u64(),
                prefsrc: text(&r["prefsrc"]),
            });
        }
    }
    out.sort();
    out
}

/// Global addresses on `IFNAME`: (family, address, prefix length), sorted.
fn kernel_addresses(netns: &str) -> Vec<(String, String, u64)> {
    let mut out: Vec<(String, String, u64)> =
        kernel::ip_json(netns, &["addr", "show", "dev", IFNAME])
            .iter()
            .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
            .filter(|a| a["scope"] == "global")
            .map(|a| {
                (
                    text(&a["family"]).unwrap_or_default(),
                    text(&a["local"]).unwrap_or_default(),
                    a["prefixlen"].as_u64().unwrap_or_default(),
                )
            })
            .collect();
    out.sort();
    out
}

/// A result with the parts that differ by nature between two VFs in two
/// pods (MAC, sandbox) checked and taken out; an empty `dns` is dropped
/// (libcni leaves it out too).
fn comparable(mut result: Value, mac: &str, sandbox: &str) -> Value {
    let ifaces = result["interfaces"]
        .as_array_mut()
        .expect("result interfaces");
    assert_eq!(ifaces.len(), 1, "{ifaces:?}");
    assert_eq!(ifaces[0]["mac"], mac, "{ifaces:?}");
    assert_eq!(ifaces[0]["sandbox"], sandbox, "{ifaces:?}");
    ifaces[0]["mac"] = json!("MAC");
    ifaces[0]["sandbox"] = json!("SANDBOX");
    if result["dns"] == json!({}) {
        result.as_object_mut().expect("object").remove("dns");
    }
    result
}

/// Runs Debian's host-device on the node for its netdev `device`.
fn host_device(node: &Node, command: &str, cid: &str, pod: &str, conf: &Value) -> Run {
    let call = CniCall::new(command, cid, pod, IFNAME);
    let vars = call.vars();
    let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    run_in(
        Some(&node.netns_path()),
        &format!("{PLUGINS}/host-device"),
        &[],
        &env,
        conf.to_string().as_bytes(),
    )
}

fn same_routes_and_addresses_as_host_device(ipam: &Value, what: &str) {
    let node = Node::small(2);
    let ours = node.vf(0);
    let theirs = node.vf(1);
    let their_name = node.original(&theirs).name.clone();
    // host-device keeps the host name in the alias, overwriting the one the
    // fabric finds the VF by; put it back after its DEL.
    let fabric_alias = kernel::link(node.netns_name(), &their_name)
        .and_then(|l| l.alias)
        .expect("fabric alias");
    let pj = Netns::new("jnrj");
    let ph = Netns::new("jnrh");
    let cid = common::unique("rr");

    let mut conf = node.conf("1.0.0", "refroutes", &ours, &cid, IFNAME);
    conf["ipam"] = ipam.clone();
    let call = CniCall::new("ADD", &cid, &pj.path(), IFNAME);
    let run = node.call(&call, &conf);
    assert_eq!(run.status, 0, "{what}: jobnet ADD: {run:?}");
    let jobnet_result = run.json();

    let hd_conf = json!({"cniVersion": "1.0.0", "name": "refroutes", "type": "host-device",
                         "device": their_name, "ipam": ipam});
    let run = host_device(&node, "ADD", &cid, &ph.path(), &hd_conf);
    assert_eq!(run.status, 0, "{what}: host-device ADD: {run:?}");
    let reference_result = run.json();

    let routes = kernel_routes(&pj.name);
    assert_eq!(
        routes,
        kernel_routes(&ph.name),
        "{what}: routes differ (left: jobnet, right: host-device)"
    );
    assert_eq!(
        kernel_addresses(&pj.name),
        kernel_addresses(&ph.name),
        "{what}: addresses differ"
    );
    let ol = node.assert_vf_in(&ours, &pj.name, IFNAME);
    let tl = kernel::link(&ph.name, IFNAME).expect("host-device's interface");
    assert_eq!(
        (ol.mtu, ol.up),
        (tl.mtu, tl.up),
        "{what}: MTU / state differ"
    );
    assert_eq!(
        ol.mac,
        node.original(&ours).mac,
        "{what}: jobnet changed the MAC"
    );
    assert_eq!(tl.mac, node.original(&theirs).mac, "{what}");
    assert_eq!(
        comparable(jobnet_result.clone(), &ol.mac, &pj.path()),
        comparable(reference_result, &tl.mac, &ph.path()),
        "{what}: results differ (left: jobnet, right: host-device)"
    );

    // CHECK finds what jobnet installed.
    let mut with_prev = conf.clone();
    with_prev["prevResult"] = jobnet_result;
    node.call(&call.cmd("CHECK"), &with_prev)
        .expect_silent_success();

    node.call(&call.cmd("DEL"), &with_prev)
        .expect_silent_success();
    node.assert_vf_home(&ours);
    node.assert_no_state();
    let run = host_device(&node, "DEL", &cid, &ph.path(), &hd_conf);
    assert_eq!(run.status, 0, "{what}: host-device DEL: {run:?}");
    kernel::ip(
        node.netns_name(),
        &["link", "set", "dev", &their_name, "alias", &fabric_alias],
    );
}

#[test]
fn gateways_of_both_families() {
    let Some(()) = plugins("gateways_of_both_families") else {
        return;
    };
    same_routes_and_addresses_as_host_device(
        &json!({"type": "static",
            "addresses": [{"address": "10.66.0.5/24", "gateway": "10.66.0.1"},
                          {"address": "fd66::5/64", "gateway": "fd66::1"}],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.99.0.0/16"},
                       {"dst": "10.98.0.0/16", "gw": "10.66.0.7"},
                       {"dst": "::/0"}, {"dst": "fd99::/48"},
                       {"dst": "fd98::/48", "gw": "fd66::7"}]}),
        "gateways of both families",
    );
}

#[test]
fn no_gateway_at_all() {
    let Some(()) = plugins("no_gateway_at_all") else {
        return;
    };
    same_routes_and_addresses_as_host_device(
        &json!({"type": "static",
            "addresses": [{"address": "10.66.0.5/24"}, {"address": "fd66::5/64"}],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.99.0.0/16"},
                       {"dst": "::/0"}, {"dst": "fd99::/48"}]}),
        "no gateway",
    );
}

#[test]
fn a_gateway_of_one_family_only() {
    let Some(()) = plugins("a_gateway_of_one_family_only") else {
        return;
    };
    same_routes_and_addresses_as_host_device(
        &json!({"type": "static",
            "addresses": [{"address": "fd66::5/64", "gateway": "fd66::1"},
                          {"address": "10.66.0.5/24"}],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}, {"dst": "fd99::/48"}]}),
        "an IPv6 gateway only",
    );
}
