//! CHECK in a chain: jobnet verifies what jobnet set, and later plugins may
//! change the rest. A conflist of jobnet (static IPAM), Debian's `tuning`
//! (setting the MTU jobnet's config leaves alone) and `sbr` (moving the
//! interface's routes to a policy-routing table) is run the way libcni runs
//! a list; CHECK must pass, and must still fail, with code 106, when
//! something jobnet set is gone. A second test covers MTU and MAC that
//! jobnet's own config sets.

mod common;

use std::path::Path;

use common::kernel;
use common::run::run_in;
use common::{CniCall, Netns, Node, Run};
use serde_json::{json, Value};

const PLUGINS: &str = common::node::REFERENCE_PLUGINS;
const IFNAME: &str = "net1";

/// `None` when the reference plugins are not installed, after reporting
/// `test` as skipped (the caller returns).
fn plugins(test: &str) -> Option<()> {
    if ["static", "tuning", "sbr"]
        .iter()
        .all(|p| Path::new(PLUGINS).join(p).exists())
    {
        Some(())
    } else {
        jobnet_tests::skip(
            &format!("chain_check::{test}"),
            &format!(
                "{PLUGINS} lacks static, tuning or sbr (install containernetworking-plugins; \
                 scripts/test.sh does)"
            ),
        );
        None
    }
}

/// A network configuration list run as libcni runs one: every plugin gets
/// the list's `name` and `cniVersion`; ADD runs the plugins in order, each
/// with the previous one's result as `prevResult`; CHECK runs them in order
/// and DEL in reverse, each with the list's cached (last) result.
struct ConfList<'a> {
    node: &'a Node,
    name: String,
    version: String,
    plugins: Vec<Value>,
    container_id: String,
    netns: String,
    /// The cached result of the last ADD, as libcni keeps it.
    cached: Option<Value>,
    /// Some plugin ran ADD and the list's DEL has not finished.
    added: bool,
}

impl<'a> ConfList<'a> {
    fn new(node: &'a Node, list: &Value, container_id: &str, netns: &str) -> Self {
        Self {
            node,
            name: list["name"].as_str().expect("list name").to_owned(),
            version: list["cniVersion"]
                .as_str()
                .expect("list version")
                .to_owned(),
            plugins: list["plugins"].as_array().expect("plugins").clone(),
            container_id: container_id.to_owned(),
            netns: netns.to_owned(),
            cached: None,
            added: false,
        }
    }

    fn conf_of(&self, plugin: &Value, prev: Option<&Value>) -> Value {
        let mut c = plugin.clone();
        c["name"] = json!(self.name);
        c["cniVersion"] = json!(self.version);
        if let Some(p) = prev {
            c["prevResult"] = p.clone();
        }
        c
    }

    /// Runs one plugin of the list inside the node, as the runtime would.
    fn run(&self, command: &str, conf: &Value) -> Run {
        let call = CniCall::new(command, &self.container_id, &self.netns, IFNAME);
        let ty = conf["type"].as_str().expect("plugin type");
        if ty == "jobnet" {
            return self.node.call(&call, conf);
        }
        let vars = call.vars();
        let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_in(
            Some(&self.node.netns_path()),
            &format!("{PLUGINS}/{ty}"),
            &[],
            &env,
            conf.to_string().as_bytes(),
        )
    }

    /// ADD through every plugin; the last result is cached and returned.
    fn add(&mut self) -> Value {
        let mut prev: Option<Value> = None;
        self.added = true;
        for plugin in &self.plugins {
            let conf = self.conf_of(plugin, prev.as_ref());
            let run = self.run("ADD", &conf);
            assert_eq!(run.status, 0, "ADD of {}: {run:?}", plugin["type"]);
            prev = Some(run.json());
        }
        self.cached = prev.clone();
        prev.expect("a list has plugins")
    }

    /// CHECK through every plugin; the first failure is returned with the
    /// plugin's type, as libcni stops there.
    fn check(&self) -> Result<(), (String, Run)> {
        for plugin in &self.plugins {
            let conf = self.conf_of(plugin, self.cached.as_ref());
            let run = self.run("CHECK", &conf);
            if run.status != 0 {
                return Err((plugin["type"].as_str().unwrap_or("?").to_owned(), run));
            }
            run.expect_silent_success();
        }
        Ok(())
    }

    /// DEL through every plugin, last first.
    fn del(&mut self) {
        for plugin in self.plugins.iter().rev() {
            let conf = self.conf_of(plugin, self.cached.as_ref());
            let run = self.run("DEL", &conf);
            assert_eq!(run.status, 0, "DEL of {}: {run:?}", plugin["type"]);
        }
        self.cached = None;
        self.added = false;
    }
}

impl Drop for ConfList<'_> {
    fn drop(&mut self) {
        // A test that failed between ADD and DEL (or within ADD): tuning
        // keeps the interface's original settings in a file of its own per
        // attachment.
        if self.added {
            let _ = std::fs::remove_file(format!(
                "/run/cni/tuning/{}_{IFNAME}.json",
                self.container_id
            ));
        }
    }
}

/// jobnet with static IPAM (IPv4 and IPv6, gateways, a route through each),
/// then tuning with `mtu`, then sbr.
fn chain_list(node: &Node, container_id: &str) -> Value {
    let mut jobnet = node.conf("1.0.0", "chk", &node.vf(0), container_id, IFNAME);
    jobnet["ipam"] = json!({"type": "static",
        "addresses": [{"address": "10.66.0.5/24", "gateway": "10.66.0.1"},
                      {"address": "fd66::5/64", "gateway": "fd66::1"}],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.98.0.0/16", "gw": "10.66.0.7"},
                   {"dst": "::/0"}]});
    jobnet
        .as_object_mut()
        .expect("object")
        .retain(|k, _| k != "cniVersion" && k != "name");
    json!({"cniVersion": "1.0.0", "name": "chk",
           "plugins": [jobnet, {"type": "tuning", "mtu": 1400}, {"type": "sbr"}]})
}

fn expect_check_failure(list: &ConfList<'_>, what: &str, needle: &str) {
    match list.check() {
        Ok(()) => panic!("CHECK passed with {what}"),
        Err((plugin, run)) => {
            assert_eq!(plugin, "jobnet", "{what}: {run:?}");
            run.expect_error(106);
            let msg = run.error_msg();
            assert!(msg.contains(needle), "{what}: {msg}");
        }
    }
}

#[test]
fn check_passes_after_tuning_and_sbr_and_fails_when_jobnets_state_is_gone() {
    let Some(()) =
        plugins("check_passes_after_tuning_and_sbr_and_fails_when_jobnets_state_is_gone")
    else {
        return;
    };
    let node = Node::small(1);
    let vf = node.vf(0);
    let pod = Netns::new("jnck");
    let cid = common::unique("chk");
    let mut list = ConfList::new(&node, &chain_list(&node, &cid), &cid, &pod.path());

    let result = list.add();
    let link = node.assert_vf_in(&vf, &pod.name, IFNAME);
    // tuning set the MTU; sbr moved every route of net1 out of the main table.
    assert_eq!(link.mtu, 1400);
    assert_eq!(kernel::routes(&pod.name, IFNAME), Vec::new());
    let tables = kernel::ip_json(&pod.name, &["route", "show", "table", "all", "dev", IFNAME]);
    assert!(
        tables
            .iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == "10.66.0.1" && r["table"] == "100"),
        "sbr did not copy the default route: {tables:?}"
    );
    assert_eq!(result["ips"].as_array().map(Vec::len), Some(2), "{result}");

    if let Err((plugin, run)) = list.check() {
        panic!("CHECK failed in {plugin}: {run:?}");
    }

    // A route jobnet added, gone from the table sbr moved it to.
    kernel::ip(
        &pod.name,
        &[
            "route",
            "del",
            "10.98.0.0/16",
            "via",
            "10.66.0.7",
            "table",
            "100",
        ],
    );
    expect_check_failure(&list, "a route removed", "route 10.98.0.0/16 via 10.66.0.7");
    kernel::ip(
        &pod.name,
        &[
            "route",
            "add",
            "10.98.0.0/16",
            "via",
            "10.66.0.7",
            "dev",
            IFNAME,
            "table",
            "100",
        ],
    );
    list.check().expect("CHECK with the route back");

    // An address jobnet configured, removed.
    kernel::ip(&pod.name, &["addr", "del", "fd66::5/64", "dev", IFNAME]);
    expect_check_failure(&list, "an address removed", "address fd66::5/64 missing");

    list.del();
    node.assert_vf_home(&vf);
    node.assert_no_state();
    assert!(
        !Path::new(&format!("/run/cni/tuning/{cid}_{IFNAME}.json")).exists(),
        "tuning kept its state"
    );
}

#[test]
fn check_verifies_the_mtu_and_mac_jobnet_sets() {
    let Some(()) = plugins("check_verifies_the_mtu_and_mac_jobnet_sets") else {
        return;
    };
    let node = Node::small(1);
    let vf = node.vf(0);
    let pod = Netns::new("jnck");
    let cid = common::unique("chk");
    let mut jobnet = node.conf("1.0.0", "chk", &vf, &cid, IFNAME);
    jobnet["ipam"] = json!({"type": "static", "addresses": [{"address": "10.66.0.5/24"}]});
    jobnet["mtu"] = json!(1450);
    jobnet["mac"] = json!("02:66:00:00:00:05");
    let list_conf = json!({"cniVersion": "1.0.0", "name": "chk", "plugins": [jobnet]});
    let mut list = ConfList::new(&node, &list_conf, &cid, &pod.path());
    list.add();
    list.check().expect("CHECK right after ADD");

    kernel::ip(&pod.name, &["link", "set", "dev", IFNAME, "mtu", "1400"]);
    expect_check_failure(
        &list,
        "the MTU changed",
        "MTU of net1 is 1400, expected 1450",
    );
    kernel::ip(&pod.name, &["link", "set", "dev", IFNAME, "mtu", "1450"]);
    list.check().expect("CHECK with the MTU back");

    kernel::ip(
        &pod.name,
        &["link", "set", "dev", IFNAME, "address", "02:66:00:00:00:06"],
    );
    expect_check_failure(
        &list,
        "the MAC changed",
        "MAC of net1 is 02:66:00:00:00:06, expected 02:66:00:00:00:05",
    );

    list.del();
    node.assert_vf_home(&vf);
    node.assert_no_state();
}
