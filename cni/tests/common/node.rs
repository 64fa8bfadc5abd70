//! One simulated node for plugin tests: a fabric node (its own netns and
//! fake sysfs), a private state directory, and `jobnet` run inside the node's
//! netns the way a container runtime runs it in the host's.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use jobnet_tests::fabric::{Fabric, FabricSpec, FabricVf, VfId};
use serde_json::json;

use super::kernel::{self, LinkView};
use super::run::{run_in, Run};

pub use jobnet_tests::harness::REFERENCE_PLUGINS;

/// What a VF's netdev looks like from the node: the state DEL must restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfSnapshot {
    /// Netdev name.
    pub name: String,
    /// MAC address.
    pub mac: String,
    /// MTU.
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
}

impl From<&LinkView> for VfSnapshot {
    fn from(l: &LinkView) -> Self {
        Self {
            name: l.name.clone(),
            mac: l.mac.clone(),
            mtu: l.mtu,
            up: l.up,
        }
    }
}

/// The CNI_* environment of one call.
#[derive(Debug, Clone)]
pub struct CniCall {
    /// CNI_COMMAND.
    pub command: String,
    /// CNI_CONTAINERID.
    pub container_id: String,
    /// CNI_NETNS (absent when None).
    pub netns: Option<String>,
    /// CNI_IFNAME.
    pub ifname: String,
    /// CNI_PATH.
    pub cni_path: String,
    /// CNI_ARGS (absent when None).
    pub args: Option<String>,
}

impl CniCall {
    /// A call with CNI_PATH at the reference plugins.
    pub fn new(command: &str, container_id: &str, netns: &str, ifname: &str) -> Self {
        Self {
            command: command.into(),
            container_id: container_id.into(),
            netns: Some(netns.into()),
            ifname: ifname.into(),
            cni_path: REFERENCE_PLUGINS.into(),
            args: None,
        }
    }

    /// The same call with another command.
    pub fn cmd(&self, command: &str) -> Self {
        Self {
            command: command.into(),
            ..self.clone()
        }
    }

    /// The same call with another CNI_NETNS (None: unset).
    pub fn netns(&self, netns: Option<&str>) -> Self {
        Self {
            netns: netns.map(str::to_owned),
            ..self.clone()
        }
    }

    /// The same call with another CNI_PATH.
    pub fn cni_path(&self, path: &str) -> Self {
        Self {
            cni_path: path.into(),
            ..self.clone()
        }
    }

    /// The same call with CNI_ARGS.
    pub fn args(&self, args: &str) -> Self {
        Self {
            args: Some(args.into()),
            ..self.clone()
        }
    }

    /// The variables as (name, value) pairs.
    pub fn vars(&self) -> Vec<(String, String)> {
        let mut v = vec![
            ("CNI_COMMAND".to_owned(), self.command.clone()),
            ("CNI_CONTAINERID".to_owned(), self.container_id.clone()),
            ("CNI_IFNAME".to_owned(), self.ifname.clone()),
            ("CNI_PATH".to_owned(), self.cni_path.clone()),
        ];
        if let Some(n) = &self.netns {
            v.push(("CNI_NETNS".to_owned(), n.clone()));
        }
        if let Some(a) = &self.args {
            v.push(("CNI_ARGS".to_owned(), a.clone()));
        }
        v
    }
}

/// A one-node fabric with the plugin's state in a private temp dir.
pub struct Node {
    fabric: Fabric,
    state: tempfile::TempDir,
    files: tempfile::TempDir,
    netns_name: String,
    originals: HashMap<VfId, VfSnapshot>,
    aliases: HashMap<VfId, String>,
}

impl Node {
    /// Builds a fabric from `spec` (node 0 is the one tests use). The
    /// fabric gives every VF netdev a unique `ifalias` that follows the
    /// device through renames and netns moves, so a test can always tell
    /// which netdev is its VF (interface indexes repeat across namespaces).
    pub fn build(spec: FabricSpec) -> Self {
        let fabric = Fabric::build(spec).unwrap_or_else(|e| panic!("build fabric: {e}"));
        let node = fabric.node(0).expect("fabric has node 0");
        let netns_name = node
            .netns
            .clone()
            .expect("tests use a node netns, not the host");
        // The fabric marks every VF netdev with a unique alias; remember it.
        let links = kernel::links(&netns_name);
        let mut aliases = HashMap::new();
        for vf in fabric.vfs().iter().filter(|v| v.id.node == 0) {
            if let Some(nd) = &vf.netdev {
                let alias = links
                    .iter()
                    .find(|l| &l.name == nd)
                    .and_then(|l| l.alias.clone())
                    .unwrap_or_else(|| panic!("VF netdev {nd} has no fabric alias"));
                aliases.insert(vf.id, alias);
            }
        }
        let mut originals = HashMap::new();
        for vf in fabric.vfs().iter().filter(|v| v.id.node == 0) {
            if let Some(nd) = &vf.netdev {
                let l = links
                    .iter()
                    .find(|l| &l.name == nd)
                    .unwrap_or_else(|| panic!("VF netdev {nd} not in {netns_name}"));
                originals.insert(vf.id, VfSnapshot::from(l));
            }
        }
        Self {
            fabric,
            state: tempfile::tempdir().expect("state tempdir"),
            files: tempfile::tempdir().expect("files tempdir"),
            netns_name,
            originals,
            aliases,
        }
    }

    /// One node, one NIC, `vfs` VFs (all with netdevs).
    pub fn small(vfs: usize) -> Self {
        Self::build(FabricSpec {
            nodes: 1,
            nics_per_node: 1,
            vfs_per_nic: vfs,
            ..FabricSpec::default()
        })
    }

    /// The fabric.
    pub fn fabric(&self) -> &Fabric {
        &self.fabric
    }

    /// The fabric, for operations that play the kernel's part.
    pub fn fabric_mut(&mut self) -> &mut Fabric {
        &mut self.fabric
    }

    /// The node's netns name.
    pub fn netns_name(&self) -> &str {
        &self.netns_name
    }

    /// The node's netns path.
    pub fn netns_path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.netns_name)
    }

    /// The node's fake sysfs root.
    pub fn sysfs_root(&self) -> PathBuf {
        self.fabric.node(0).expect("node 0").sysfs_root.clone()
    }

    /// The plugin's state directory (`JOBNET_STATE_DIR`).
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// A private directory for device-info files, IPAM data and the like.
    pub fn files(&self) -> &Path {
        self.files.path()
    }

    /// Every VF of node 0.
    pub fn vfs(&self) -> Vec<FabricVf> {
        self.fabric
            .vfs()
            .iter()
            .filter(|v| v.id.node == 0)
            .cloned()
            .collect()
    }

    /// The `i`-th VF of node 0 that has a netdev.
    pub fn vf(&self, i: usize) -> FabricVf {
        self.vfs()
            .into_iter()
            .filter(|v| v.netdev.is_some())
            .nth(i)
            .unwrap_or_else(|| panic!("no netdev VF #{i}"))
    }

    /// The VF's netdev as it was when the fabric was built.
    pub fn original(&self, vf: &FabricVf) -> &VfSnapshot {
        self.originals
            .get(&vf.id)
            .unwrap_or_else(|| panic!("VF {} has no netdev", vf.id))
    }

    /// Where a test puts the device-info file of an attachment.
    pub fn devinfo_path(&self, container_id: &str, ifname: &str) -> PathBuf {
        self.files
            .path()
            .join(format!("devinfo-{container_id}-{ifname}.json"))
    }

    /// The attachment cache file the plugin keeps for an attachment.
    pub fn cache_file(&self, container_id: &str, ifname: &str) -> PathBuf {
        self.state
            .path()
            .join("attachments")
            .join(format!("{container_id}.{ifname}.json"))
    }

    /// The ownership record of a VF.
    pub fn owner_file(&self, vf: &FabricVf) -> PathBuf {
        self.state
            .path()
            .join("vfs")
            .join(format!("{}.owner", vf.pci))
    }

    /// Every file under the state directory.
    pub fn state_files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            let Ok(rd) = std::fs::read_dir(dir) else {
                return;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.push(p);
                }
            }
        }
        let mut out = Vec::new();
        walk(self.state.path(), &mut out);
        out.sort();
        out
    }

    /// A network config for `vf` with its device-info file in [`Node::files`].
    pub fn conf(
        &self,
        version: &str,
        name: &str,
        vf: &FabricVf,
        container_id: &str,
        ifname: &str,
    ) -> serde_json::Value {
        json!({"cniVersion": version, "name": name, "type": "jobnet",
               "deviceID": vf.pci.to_string(),
               "runtimeConfig": {
                   "CNIDeviceInfoFile": self.devinfo_path(container_id, ifname)}})
    }

    /// Runs the `jobnet` binary inside the node's netns with exactly `env`
    /// plus the node's sysfs root and state directory.
    pub fn jobnet(&self, env: &[(&str, &str)], stdin: &[u8]) -> Run {
        let sysfs = self.sysfs_root();
        let sysfs = sysfs.to_str().expect("utf-8 sysfs root");
        let state = self.state.path().to_str().expect("utf-8 state dir");
        let mut all: Vec<(&str, &str)> = env.to_vec();
        all.push(("JOBNET_SYSFS_ROOT", sysfs));
        all.push(("JOBNET_STATE_DIR", state));
        run_in(
            Some(&self.netns_path()),
            env!("CARGO_BIN_EXE_jobnet"),
            &[],
            &all,
            stdin,
        )
    }

    /// Starts `jobnet` inside the node's netns the way a runtime does
    /// (`call`'s variables, `conf` on stdin) without waiting for it; its
    /// stdout goes to `stdout`, its stderr nowhere. nsenter execs the plugin
    /// in place, so a kill of the child hits the plugin itself.
    pub fn spawn(&self, call: &CniCall, conf: &serde_json::Value, stdout: Stdio) -> Child {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.netns_path().display()))
            .arg(env!("CARGO_BIN_EXE_jobnet"))
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("JOBNET_SYSFS_ROOT", self.sysfs_root())
            .env("JOBNET_STATE_DIR", self.state_dir())
            .envs(call.vars())
            .stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawn jobnet");
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(conf.to_string().as_bytes());
        }
        child
    }

    /// Runs one CNI call with `conf` on stdin, then makes the fake sysfs
    /// follow the VF the config names (as real sysfs would by itself).
    pub fn call(&self, call: &CniCall, conf: &serde_json::Value) -> Run {
        let vars = call.vars();
        let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let run = self.jobnet(&env, conf.to_string().as_bytes());
        if let Some(vf) = self.vf_of(conf) {
            self.sync(&vf);
        }
        run
    }

    /// The netdev VF a config names, if any.
    fn vf_of(&self, conf: &serde_json::Value) -> Option<FabricVf> {
        let pci = conf["deviceID"]
            .as_str()
            .or_else(|| conf["runtimeConfig"]["deviceID"].as_str())?;
        self.vfs()
            .into_iter()
            .find(|v| v.pci.to_string() == pci && v.netdev.is_some())
    }

    /// Makes the fake sysfs show the VF where the kernel has it now.
    pub fn sync(&self, vf: &FabricVf) {
        self.fabric
            .sync_vf_sysfs(vf.id)
            .unwrap_or_else(|e| panic!("sync sysfs of {}: {e}", vf.id));
    }

    /// Where the VF's netdev is now: (netns name, link), found by its
    /// alias in the node first, then in every named netns. None when lost.
    pub fn locate(&self, vf: &FabricVf) -> Option<(String, LinkView)> {
        let alias = self
            .aliases
            .get(&vf.id)
            .unwrap_or_else(|| panic!("VF {} has no netdev", vf.id));
        let others = kernel::named_netns()
            .into_iter()
            .filter(|n| *n != self.netns_name);
        for ns in std::iter::once(self.netns_name.clone()).chain(others) {
            if let Some(l) = kernel::links_if_any(&ns)
                .into_iter()
                .find(|l| l.alias.as_ref() == Some(alias))
            {
                return Some((ns, l));
            }
        }
        None
    }

    /// Plays the kernel's part when a pod netns dies with a physical VF
    /// inside: the netdev comes back to the node, down, named `new_name`
    /// (the pod's ifname or `devN`), and the fake sysfs follows.
    pub fn kernel_return(&self, vf: &FabricVf, new_name: &str) {
        let (ns, link) = self
            .locate(vf)
            .unwrap_or_else(|| panic!("VF {} is lost", vf.id));
        kernel::ip(&ns, &["link", "set", "dev", &link.name, "down"]);
        if ns == self.netns_name {
            kernel::ip(&ns, &["link", "set", "dev", &link.name, "name", new_name]);
        } else {
            kernel::ip(
                &ns,
                &[
                    "link",
                    "set",
                    "dev",
                    &link.name,
                    "netns",
                    &self.netns_name,
                    "name",
                    new_name,
                ],
            );
        }
        self.sync(vf);
    }

    /// The VF's netdev in the node now.
    pub fn snapshot(&self, vf: &FabricVf) -> VfSnapshot {
        let (ns, link) = self
            .locate(vf)
            .unwrap_or_else(|| panic!("VF {} is lost", vf.id));
        assert_eq!(ns, self.netns_name, "VF {} is not in the node", vf.id);
        VfSnapshot::from(&link)
    }

    /// Asserts the VF is back in the node exactly as it was built (name,
    /// MAC, MTU, admin state) and no attachment owns it.
    pub fn assert_vf_home(&self, vf: &FabricVf) {
        assert_eq!(
            &self.snapshot(vf),
            self.original(vf),
            "VF {} not restored",
            vf.id
        );
        assert!(
            !self.owner_file(vf).exists(),
            "VF {} still has an ownership record",
            vf.id
        );
    }

    /// Asserts the VF's netdev is in `pod_netns` under `ifname`; returns it.
    pub fn assert_vf_in(&self, vf: &FabricVf, pod_netns: &str, ifname: &str) -> LinkView {
        let (ns, link) = self
            .locate(vf)
            .unwrap_or_else(|| panic!("VF {} is lost", vf.id));
        assert_eq!(ns, pod_netns, "VF {} is not in the pod", vf.id);
        assert_eq!(link.name, ifname, "VF {} has the wrong name", vf.id);
        assert!(
            kernel::link(&self.netns_name, &self.original(vf).name).is_none(),
            "the node still has an interface named like VF {}",
            vf.id
        );
        link
    }

    /// Asserts nothing of the plugin is left: no state files.
    pub fn assert_no_state(&self) {
        assert_eq!(
            self.state_files(),
            Vec::<PathBuf>::new(),
            "state left behind"
        );
    }

    /// Runs `f` on a fresh thread that has entered the node's netns (the
    /// plugin engine works in its calling thread's netns).
    pub fn in_netns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let ns = File::open(self.netns_path()).expect("open node netns");
        std::thread::scope(|s| {
            s.spawn(move || {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .expect("setns into the node");
                f()
            })
            .join()
            .expect("thread in node netns panicked")
        })
    }
}
