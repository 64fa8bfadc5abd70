//! Chains with Debian's reference plugins (containernetworking-plugins in
//! /usr/lib/cni): (a) host-local and static as jobnet's delegated IPAM through
//! ADD/CHECK/DEL; (b) a result produced by running `static` directly, and
//! (c) one produced by `bridge` (run inside a test-made "host" namespace),
//! fed to jobnet as prevResult and passed through unchanged.

#[path = "protocol_support.rs"]
mod support;

use std::path::Path;

use serde_json::json;
use support::{jobnet, run_bin, run_cmd, Netns, Run};

const PLUGINS: &str = "/usr/lib/cni";

/// `None` (with a loud message) when the reference plugins are not installed.
fn plugins() -> Option<&'static str> {
    if Path::new(PLUGINS).join("host-local").exists() && Path::new(PLUGINS).join("static").exists()
    {
        Some(PLUGINS)
    } else {
        eprintln!(
            "\n!!! SKIPPED: {PLUGINS} has no reference CNI plugins; install \
             containernetworking-plugins (scripts/test.sh does) !!!\n"
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

fn with_prev(conf: &serde_json::Value, prev: &serde_json::Value) -> Vec<u8> {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c.to_string().into_bytes()
}

#[test]
fn host_local_ipam_through_add_check_del() {
    let Some(_) = plugins() else { return };
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
        let conf = json!({"cniVersion": version, "name": "chain-hl", "type": "jobnet",
            "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.77.0.0/24"}]],
                     "routes": [{"dst": "0.0.0.0/0"}], "dataDir": data.path()}});
        let add = jobnet(&env("ADD", &nsp), conf.to_string().as_bytes());
        assert_eq!(add.status, 0, "{add:?}");
        let result = add.json();
        assert_eq!(
            result,
            json!({"cniVersion": version,
                   "interfaces": [{"name": "net1", "sandbox": nsp}],
                   "ips": [expected_ip],
                   "routes": [{"dst": "0.0.0.0/0"}]}),
            "{version}"
        );
        let lease = data.path().join("chain-hl").join("10.77.0.2");
        let owner = std::fs::read_to_string(&lease).expect("host-local lease file");
        assert!(owner.contains("chain0"), "{owner}");

        let check = jobnet(&env("CHECK", &nsp), &with_prev(&conf, &result));
        check.expect_silent_success();

        let del = jobnet(&env("DEL", &nsp), &with_prev(&conf, &result));
        del.expect_silent_success();
        assert!(!lease.exists(), "host-local lease not released");
        // DEL again, now without netns: still fine.
        let mut again = env("DEL", "");
        again.retain(|(k, _)| *k != "CNI_NETNS");
        jobnet(&again, conf.to_string().as_bytes()).expect_silent_success();
    }
}

#[test]
fn static_ipam_and_its_error_codes() {
    let Some(_) = plugins() else { return };
    let ns = Netns::new("jnch");
    let nsp = ns.path();
    let conf = json!({"cniVersion": "1.0.0", "name": "chain-st", "type": "jobnet",
        "ipam": {"type": "static",
                 "addresses": [{"address": "10.78.0.5/24", "gateway": "10.78.0.1"},
                               {"address": "fd00:78::5/64"}],
                 "routes": [{"dst": "10.79.0.0/16", "gw": "10.78.0.1"}],
                 "dns": {"nameservers": ["10.78.0.53"], "search": ["job.local"]}}});
    let add = jobnet(&env("ADD", &nsp), conf.to_string().as_bytes());
    assert_eq!(add.status, 0, "{add:?}");
    assert_eq!(
        add.json(),
        json!({"cniVersion": "1.0.0",
               "interfaces": [{"name": "net1", "sandbox": nsp}],
               "ips": [{"interface": 0, "address": "10.78.0.5/24", "gateway": "10.78.0.1"},
                       {"interface": 0, "address": "fd00:78::5/64"}],
               "routes": [{"dst": "10.79.0.0/16", "gw": "10.78.0.1"}],
               "dns": {"nameservers": ["10.78.0.53"], "search": ["job.local"]}})
    );
    // static's own validation error comes back with static's code, unchanged.
    let bad = json!({"cniVersion": "1.0.0", "name": "chain-st", "type": "jobnet",
        "ipam": {"type": "static", "addresses": [{"address": "10.78.0.5"}]}});
    let run = jobnet(&env("ADD", &nsp), bad.to_string().as_bytes());
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
    jobnet(&env("ADD", &nsp), v11.to_string().as_bytes()).expect_error(1);
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
    let Some(_) = plugins() else { return };
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
        let conf = json!({"cniVersion": version, "name": "chain-prev", "type": "jobnet"});

        let add = jobnet(&env("ADD", &nsp), &with_prev(&conf, &prev));
        assert_eq!(add.status, 0, "{add:?}");
        let out = add.json();
        assert_eq!(
            out,
            json!({"cniVersion": version,
                   "interfaces": [{"name": "net1", "sandbox": nsp}],
                   "ips": [prev_ip],
                   "routes": [{"dst": "0.0.0.0/0", "gw": "10.80.0.1"}],
                   "dns": {"nameservers": ["10.80.0.53"], "domain": "job.local"}}),
            "{version}"
        );
        if version != "0.3.1" {
            jobnet(&env("CHECK", &nsp), &with_prev(&conf, &out)).expect_silent_success();
        }
        jobnet(&env("DEL", &nsp), &with_prev(&conf, &out)).expect_silent_success();
    }
}

/// Runs a reference plugin inside `host`, a namespace the test made, so the
/// host-side changes (bridge, veth peer) stay in it.
fn in_netns(host: &Netns, plugin: &str, env: &[(&str, &str)], stdin: &[u8]) -> Run {
    let bin = format!("{PLUGINS}/{plugin}");
    run_cmd("ip", &["netns", "exec", &host.name, &bin], env, stdin)
}

#[test]
fn bridge_result_as_prev_result() {
    let Some(_) = plugins() else { return };
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

    let conf = json!({"cniVersion": "1.0.0", "name": "chain-br", "type": "jobnet",
                      "runtimeConfig": {"ips": ["10.90.0.4/24"]}});
    let add = jobnet(&env("ADD", &podp), &with_prev(&conf, &prev));
    assert_eq!(add.status, 0, "{add:?}");
    let out = add.json();
    let mut expected_ifaces = ifaces.clone();
    expected_ifaces.push(json!({"name": "net1", "sandbox": podp}));
    assert_eq!(out["interfaces"], json!(expected_ifaces));
    let mut expected_ips = prev["ips"].as_array().expect("bridge ips").clone();
    expected_ips.push(json!({"interface": 3, "address": "10.90.0.4/24"}));
    assert_eq!(out["ips"], json!(expected_ips));
    assert_eq!(out.get("routes"), prev.get("routes"));
    assert_eq!(out["cniVersion"], "1.0.0");
    jobnet(&env("CHECK", &podp), &with_prev(&conf, &out)).expect_silent_success();
    jobnet(&env("DEL", &podp), &with_prev(&conf, &out)).expect_silent_success();
    let bdel = {
        let mut e = benv.clone();
        e.retain(|(k, _)| *k != "CNI_COMMAND");
        e.push(("CNI_COMMAND", "DEL"));
        in_netns(&host, "bridge", &e, &with_prev(&bridge_conf, &out))
    };
    assert_eq!(bdel.status, 0, "{bdel:?}");
}
