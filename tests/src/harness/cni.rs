//! Running the `jobnet` plugin the way a container runtime does, and
//! reading what it answers.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use jobnet_hw::PciAddr;

use super::binaries;

/// One run of the plugin.
#[derive(Debug)]
pub struct PluginRun {
    /// Exit status was 0.
    pub ok: bool,
    /// What it printed (the result or the error object).
    pub stdout: String,
    /// Its logs.
    pub stderr: String,
}

impl PluginRun {
    /// `stdout` parsed as JSON; panics (with the logs) when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "plugin printed no JSON ({e}): {}{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// One plugin call: the environment a runtime sets for it. Only what is
/// asked for is set, so a test controls exactly what the plugin sees.
#[derive(Debug, Clone)]
pub struct CniCall {
    vars: Vec<(String, OsString)>,
}

impl CniCall {
    /// `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS` and `CNI_IFNAME`.
    pub fn new(command: &str, container_id: &str, netns: &Path, ifname: &str) -> Self {
        Self { vars: Vec::new() }
            .var("CNI_COMMAND", command)
            .var("CNI_CONTAINERID", container_id)
            .var("CNI_NETNS", netns)
            .var("CNI_IFNAME", ifname)
    }

    /// Sets `key` to `value` (a later value for the same key wins).
    pub fn var(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.vars.retain(|(k, _)| k != key);
        self.vars.push((key.to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Sets `CNI_PATH` to Debian's plugin dir, as runtimes here do.
    pub fn cni_path(self) -> Self {
        self.var("CNI_PATH", REFERENCE_PLUGINS)
    }

    /// Points the plugin at a fake sysfs and its own state dir through
    /// `JOBNET_SYSFS_ROOT` and `JOBNET_STATE_DIR`.
    pub fn dirs(self, sysfs_root: &Path, state_dir: &Path) -> Self {
        self.var("JOBNET_SYSFS_ROOT", sysfs_root)
            .var("JOBNET_STATE_DIR", state_dir)
    }

    /// Runs the plugin inside the node netns `node_netns` with `conf` on stdin.
    pub fn run(&self, node_netns: &Path, conf: &serde_json::Value) -> PluginRun {
        run_in_node(
            node_netns,
            self.vars.iter().map(|(k, v)| (k.as_str(), v.as_os_str())),
            conf,
        )
    }
}

/// Runs `jobnet` under nsenter with only PATH and `env` set.
fn run_in_node<'a, V: AsRef<OsStr>>(
    node_netns: &Path,
    env: impl IntoIterator<Item = (&'a str, V)>,
    conf: &serde_json::Value,
) -> PluginRun {
    let mut child = Command::new("nsenter")
        .arg(format!("--net={}", node_netns.display()))
        .arg(&binaries().jobnet)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn jobnet");
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(conf.to_string().as_bytes())
            .expect("write config");
    }
    let out = child.wait_with_output().expect("wait for jobnet");
    PluginRun {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Where the reference CNI plugins are (Debian's containernetworking-plugins).
pub const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

/// Panics, naming what installs it, when reference plugin `name` is missing:
/// a test that delegates to it cannot say anything without it.
pub fn require_reference_plugin(name: &str) {
    let path = Path::new(REFERENCE_PLUGINS).join(name);
    assert!(
        path.exists(),
        "{} is missing (scripts/install-deps.sh installs it)",
        path.display()
    );
}

/// Where the plugin writes the device-info files of rails the runtime gave
/// no path for (every rail after the first).
pub const DEFAULT_DEVINFO_DIR: &str = "/var/run/k8s.cni.cncf.io/devinfo/cni";

/// Removes what the plugin left in [`DEFAULT_DEVINFO_DIR`] for CNI network
/// `network` (pods dropped without DEL leave their later rails' files;
/// the file names start with the network's).
pub fn remove_default_devinfo(network: &str) {
    let mine = format!("{network}-");
    let Ok(entries) = std::fs::read_dir(DEFAULT_DEVINFO_DIR) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(&mine) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The PCI address (`pciID`) of the first interface in an ADD result.
pub fn result_pci(result: &serde_json::Value) -> Option<PciAddr> {
    result["interfaces"][0]["pciID"].as_str()?.parse().ok()
}

/// The first address in an ADD result, without its prefix length.
pub fn result_addr(result: &serde_json::Value) -> Option<IpAddr> {
    let cidr = result["ips"][0]["address"].as_str()?;
    cidr.split('/').next()?.parse().ok()
}
