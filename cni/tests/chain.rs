//! Chains with Debian's reference plugins (containernetworking-plugins in
//! /usr/lib/cni): (a) host-local and static as jobnet's delegated IPAM through
//! ADD/CHECK/DEL; (b) a result produced by running `static` directly, and
//! (c) one produced by `bridge` (run inside a test-made "host" namespace),
//! fed to jobnet as prevResult and passed through unchanged. jobnet attaches
//! a VF of a one-node simulated fabric and runs inside that node's netns.

mod common;

use std::path::Path;

use common::{run_bin, run_cmd, CniCall, Netns, Node, Run};
use serde_json::json;

const PLUGINS: &str = "/usr/lib/cni";

/// `None` when the reference plugins are not installed, after reporting
/// `test` as skipped (the caller returns).
fn plugins(test: &str) -> Option<&'static str> {
    if Path::new(PLUGINS).join("host-local").exists() && Path::new(PLUGINS).join("static").exists()
    {
        Some(PLUGINS)
    } else {
        jobnet_tests::skip(
            &format!("chain::{test}"),
            &format!(
                "{PLUGINS} has no reference CNI plugins (install containernetworking-plugins; \
                 scripts/test.sh does)"
            ),
        );
        None
    }
}

fn env<'a>(cmd: &'a str, ns: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", "chain0"),
        ("CNI_NETNS", ns),
        ("CNI_IFNAME", "net1"),
        ("CNI_PATH", PLUGINS),
    ]
}

fn call(cmd: &str, ns: &str) -> CniCall {
    CniCall::new(cmd, "chain0", ns, "net1")
}

fn with_prev(conf: &serde_json::Value, prev: &serde_json::Value) -> serde_json::Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}

/// `extra`'s keys laid over the node's config for VF 0 (device and
/// device-info file), `runtimeConfig` merged key by key.
fn conf_for(node: &Node, version: &str, name: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut c = node.conf(version, name, &node.vf(0), "chain0", "net1");
    if let Some(extra) = extra.as_object() {
        for (k, v) in extra {
            if k == "runtimeConfig" {
                if let Some(rc) = v.as_object() {
                    for (rk, rv) in rc {
                        c["runtimeConfig"][rk] = rv.clone();
                    }
                }
            } else {
                c[k] = v.clone();
            }
        }
    }
    c
}

#[test]
fn host_local_ipam_through_add_check_del() {
    let Some(_) = plugins("host_local_ipam_through_add_check_del") else {
        return;
    };
    let node = Node::small(1);
    let vf = node.vf(0);
    let mac = node.original(&vf).mac.clone();
    let ns = Netns::new("jnch");
    let nsp = ns.path();
    for (version, expected_ip) in [
        (
            "1.0.0",
            json!({"interface": 0, "address": "10.77.0.2/24", "gateway": "10.77.0.1"}),
        ),
        (
            "0.4.0",
            json!({"version": "4", "interface": 0, "address": "10.77.0.2/24", "gateway": "10.77.0.1"}),
        ),
    ] {
        // host-local hands out the next address after its last one: fresh store per round.
        let data = tempfile::tempdir().expect("tempdir");
        let conf = conf_for(
            &node,
            version,
            "chain-hl",
            json!({"ipam": {"type": "host-local", "ranges": [[{"subnet": "10.77.0.0/24"}]],
                     "routes": [{"dst": "0.0.0.0/0"}], "dataDir": data.path()}}),
        );
        let add = node.call(&call("ADD", &nsp), &conf);
        assert_eq!(add.status, 0, "{add:?}");
        let result = add.json();
        assert_eq!(
            result,
            json!({"cniVersion": version,
                   "interfaces": [{"name": "net1", "mac": mac, "sandbox": nsp}],
                   "ips": [expected_ip],
                   "routes": [{"dst": "0.0.0.0/0"}]}),
            "{version}"
        );
        node.assert_vf_in(&vf, &ns.name, "net1");
        let lease = data.path().join("chain-hl").join("10.77.0.2");
        let owner = std::fs::read_to_string(&lease).expect("host-local lease file");
        assert!(owner.contains("chain0"), "{owner}");

        let check = node.call(&call("CHECK", &nsp), &with_prev(&conf, &result));
        check.expect_silent_success();

        let del = node.call(&call("DEL", &nsp), &with_prev(&conf, &result));
        del.expect_silent_success();
        assert!(!lease.exists(), "host-local lease not released");
        node.assert_vf_home(&vf);
        // DEL again, now without netns: still fine.
        node.call(&call("DEL", "").netns(None), &conf)
            .expect_silent_success();
        node.assert_vf_home(&vf);
        node.assert_no_state();
    }
}

#[test]
fn static_ipam_and_its_error_codes() {
    let Some(_) = plugins("static_ipam_and_its_error_codes") else {
        return;
    };
    let node = Node::small(1);
    let vf = node.vf(0);
    let mac = node.original(&vf).mac.clone();
    let ns = Netns::new("jnch");
    let nsp = ns.path();
    let conf = conf_for(
        &node,
        "1.0.0",
        "chain-st",
        json!({"ipam": {"type": "static",
                 "addresses": [{"address": "10.78.0.5/24", "gateway": "10.78.0.1"},
                               {"address": "fd00:78::5/64"}],
                 "routes": [{"dst": "10.79.0.0/16", "gw": "10.78.0.1"}],
                 "dns": {"nameservers": ["10.78.0.53"], "search": ["job.local"]}}}),
    );
    let add = node.call(&call("ADD", &nsp), &conf);
    assert_eq!(add.status, 0, "{add:?}");
    let result = add.json();
    assert_eq!(
        result,
        json!({"cniVersion": "1.0.0",
               "interfaces": [{"name": "net1", "mac": mac, "sandbox": nsp}],
               "ips": [{"interface": 0, "address": "10.78.0.5/24", "gateway": "10.78.0.1"},
                       {"interface": 0, "address": "fd00:78::5/64"}],
               "routes": [{"dst": "10.79.0.0/16", "gw": "10.78.0.1"}],
               "dns": {"nameservers": ["10.78.0.53"], "search": ["job.local"]}})
    );
    // static's own validation error comes back with static's code, unchanged.
    let bad = conf_for(
        &node,
        "1.0.0",
        "chain-st",
        json!({"ipam": {"type": "static", "addresses": [{"address": "10.78.0.5"}]}}),
    );
    let run = node.call(&call("ADD", &nsp), &bad);
    assert_ne!(run.status, 0, "{run:?}");
    let direct = run_bin(
        &format!("{PLUGINS}/static"),
        &env("ADD", &nsp),
        bad.to_string().as_bytes(),
    );
    assert_eq!(
        run.json()["code"],
        direct.json()["code"],
        "{run:?} vs {direct:?}"
    );
    assert_eq!(run.json()["msg"], direct.json()["msg"]);
    // A 1.1.0 config with Debian's 1.0.0-only plugins: static's code-1 error is propagated.
    let mut v11 = conf.clone();
    v11["cniVersion"] = json!("1.1.0");
    node.call(&call("ADD", &nsp), &v11).expect_error(1);
    // Neither failed ADD touched the attachment the first one made.
    node.assert_vf_in(&vf, &ns.name, "net1");
    node.call(&call("CHECK", &nsp), &with_prev(&conf, &result))
        .expect_silent_success();
    node.call(&call("DEL", &nsp), &with_prev(&conf, &result))
        .expect_silent_success();
    node.assert_vf_home(&vf);
    node.assert_no_state();
}

/// Runs `static` on its own (as a chain's first plugin would be) in `version`.
fn static_result(version: &str, nsp: &str) -> serde_json::Value {
    let conf = json!({"cniVersion": version, "name": "chain-prev", "type": "static",
        "ipam": {"type": "static",
                 "addresses": [{"address": "10.80.0.5/24", "gateway": "10.80.0.1"}],
                 "routes": [{"dst": "0.0.0.0/0", "gw": "10.80.0.1"}],
                 "dns": {"nameservers": ["10.80.0.53"], "domain": "job.local"}}});
    let run: Run = run_bin(
        &format!("{PLUGINS}/static"),
        &env("ADD", nsp),
        conf.to_string().as_bytes(),
    );
    assert_eq!(run.status, 0, "{run:?}");
    run.json()
}

#[test]
fn static_result_as_prev_result_in_each_version() {
    let Some(_) = plugins("static_result_as_prev_result_in_each_version") else {
        return;
    };
    let node = Node::small(1);
    let vf = node.vf(0);
    let mac = node.original(&vf).mac.clone();
    let ns = Netns::new("jnch");
    let nsp = ns.path();
    for version in ["0.3.1", "0.4.0", "1.0.0"] {
        let prev = static_result(version, &nsp);
        let v04 = version != "1.0.0";
        let prev_ip = if v04 {
            json!({"version": "4", "address": "10.80.0.5/24", "gateway": "10.80.0.1"})
        } else {
            json!({"address": "10.80.0.5/24", "gateway": "10.80.0.1"})
        };
        assert_eq!(
            prev["ips"],
            json!([prev_ip]),
            "static output changed? {prev}"
        );
        // Without an `ipam` section jobnet asks jobnetd for addresses; an
        // address-less `static` keeps this chain free of a daemon.
        let conf = conf_for(
            &node,
            version,
            "chain-prev",
            json!({"ipam": {"type": "static"}}),
        );

        let add = node.call(&call("ADD", &nsp), &with_prev(&conf, &prev));
        assert_eq!(add.status, 0, "{add:?}");
        let out = add.json();
        assert_eq!(
            out,
            json!({"cniVersion": version,
                   "interfaces": [{"name": "net1", "mac": mac, "sandbox": nsp}],
                   "ips": [prev_ip],
                   "routes": [{"dst": "0.0.0.0/0", "gw": "10.80.0.1"}],
                   "dns": {"nameservers": ["10.80.0.53"], "domain": "job.local"}}),
            "{version}"
        );
        if version != "0.3.1" {
            node.call(&call("CHECK", &nsp), &with_prev(&conf, &out))
                .expect_silent_success();
        }
        node.call(&call("DEL", &nsp), &with_prev(&conf, &out))
            .expect_silent_success();
        node.assert_vf_home(&vf);
    }
    node.assert_no_state();
}

/// Runs a reference plugin inside `host`, a namespace the test made, so the
/// host-side changes (bridge, veth peer) stay in it.
fn in_netns(host: &Netns, plugin: &str, env: &[(&str, &str)], stdin: &[u8]) -> Run {
    let bin = format!("{PLUGINS}/{plugin}");
    run_cmd("ip", &["netns", "exec", &host.name, &bin], env, stdin)
}

#[test]
fn bridge_result_as_prev_result() {
    let Some(_) = plugins("bridge_result_as_prev_result") else {
        return;
    };
    let node = Node::small(1);
    let vf = node.vf(0);
    let mac = node.original(&vf).mac.clone();
    let host = Netns::new("jnchh");
    let pod = Netns::new("jnchp");
    let podp = pod.path();
    let data = tempfile::tempdir().expect("tempdir");
    let bridge_name = format!("jnbr{}", std::process::id() % 100_000);
    let bridge_conf = json!({"cniVersion": "1.0.0", "name": "chain-br", "type": "bridge",
        "bridge": bridge_name, "isGateway": true,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.81.0.0/24"}]], "dataDir": data.path()}});
    let mut benv = env("ADD", &podp);
    benv.retain(|(k, _)| *k != "CNI_IFNAME");
    benv.push(("CNI_IFNAME", "eth0"));
    let br = in_netns(&host, "bridge", &benv, bridge_conf.to_string().as_bytes());
    assert_eq!(br.status, 0, "{br:?}");
    let prev = br.json();
    let ifaces = prev["interfaces"]
        .as_array()
        .expect("bridge interfaces")
        .clone();
    assert_eq!(ifaces.len(), 3, "{prev}");
    assert_eq!(ifaces[2]["name"], "eth0");
    assert_eq!(ifaces[2]["sandbox"], podp.as_str());

    // `static` takes the address from runtimeConfig.ips (its `ips` capability).
    let conf = conf_for(
        &node,
        "1.0.0",
        "chain-br",
        json!({"ipam": {"type": "static"}, "runtimeConfig": {"ips": ["10.90.0.4/24"]}}),
    );
    let add = node.call(&call("ADD", &podp), &with_prev(&conf, &prev));
    assert_eq!(add.status, 0, "{add:?}");
    let out = add.json();
    let mut expected_ifaces = ifaces.clone();
    expected_ifaces.push(json!({"name": "net1", "mac": mac, "sandbox": podp}));
    assert_eq!(out["interfaces"], json!(expected_ifaces));
    let mut expected_ips = prev["ips"].as_array().expect("bridge ips").clone();
    expected_ips.push(json!({"interface": 3, "address": "10.90.0.4/24"}));
    assert_eq!(out["ips"], json!(expected_ips));
    assert_eq!(out.get("routes"), prev.get("routes"));
    assert_eq!(out["cniVersion"], "1.0.0");
    node.call(&call("CHECK", &podp), &with_prev(&conf, &out))
        .expect_silent_success();
    node.call(&call("DEL", &podp), &with_prev(&conf, &out))
        .expect_silent_success();
    node.assert_vf_home(&vf);
    node.assert_no_state();
    let bdel = {
        let mut e = benv.clone();
        e.retain(|(k, _)| *k != "CNI_COMMAND");
        e.push(("CNI_COMMAND", "DEL"));
        in_netns(
            &host,
            "bridge",
            &e,
            with_prev(&bridge_conf, &out).to_string().as_bytes(),
        )
    };
    assert_eq!(bdel.status, 0, "{bdel:?}");
}
