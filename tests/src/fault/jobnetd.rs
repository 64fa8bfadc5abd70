//! jobnetd in a fabric node's netns on a fixed config, state dir and
//! socket, so that it can be SIGKILLed at any moment and started again on
//! the same state, as a DaemonSet restarts it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use crate::harness::{binaries, spawn_jobnetd, wait_for_jobnetd};

use super::run::{output_within, tail};

/// Bound on one jobnetctl run.
const CTL_BOUND: Duration = Duration::from_secs(10);

/// What jobnetd is started with.
#[derive(Debug, Clone)]
pub struct JobnetdConfig {
    /// Node name.
    pub node: String,
    /// The node's (fake) sysfs.
    pub sysfs_root: PathBuf,
    /// The node netns it runs in (`None`: the caller's).
    pub netns: Option<String>,
    /// `reconcile_interval_secs`.
    pub reconcile_interval_secs: u64,
    /// `netns_grace_secs`.
    pub netns_grace_secs: u64,
    /// `[[pools]]` tables.
    pub pools: String,
}

/// A restartable jobnetd; killed on drop.
#[derive(Debug)]
pub struct Jobnetd {
    dir: tempfile::TempDir,
    netns: Option<String>,
    child: Option<Child>,
    /// How many times it was started.
    pub starts: usize,
}

impl Jobnetd {
    /// Writes the config and starts jobnetd; returns once it answers.
    pub fn start(cfg: &JobnetdConfig) -> Self {
        let dir = tempfile::tempdir().expect("jobnetd dir");
        let d = dir.path().display();
        std::fs::write(
            dir.path().join("jobnetd.toml"),
            format!(
                "node = \"{node}\"\nsocket = \"{d}/jobnetd.sock\"\nstate_dir = \"{d}/state\"\n\
                 run_dir = \"{d}/run\"\nsysfs_root = \"{sys}\"\nmetrics_addr = \"off\"\n\
                 reconcile_interval_secs = {ri}\nnetns_grace_secs = {grace}\n\n{pools}\n",
                node = cfg.node,
                sys = cfg.sysfs_root.display(),
                ri = cfg.reconcile_interval_secs,
                grace = cfg.netns_grace_secs,
                pools = cfg.pools,
            ),
        )
        .expect("write jobnetd.toml");
        let mut j = Self {
            dir,
            netns: cfg.netns.clone(),
            child: None,
            starts: 0,
        };
        j.spawn();
        j.wait_up();
        j
    }

    /// Its API socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("jobnetd.sock")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("jobnetd.log")
    }

    /// Starts it without waiting for it to answer.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "jobnetd already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("jobnetd log");
        let child = spawn_jobnetd(
            &binaries().jobnetd,
            self.netns.as_deref(),
            &self.dir.path().join("jobnetd.toml"),
            log,
        );
        self.child = Some(child);
        self.starts += 1;
    }

    /// Waits (bounded) until it answers on its socket.
    pub fn wait_up(&mut self) {
        let log = self.log_path();
        wait_for_jobnetd(&self.socket(), self.child.as_mut(), &log);
    }

    /// True while the process runs (it may not answer yet).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL, no chance to clean anything up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The socket file stays, as after a real crash; a client's connect
        // is refused until the next start binds it again.
    }

    /// SIGKILL, start again, wait until it answers: its startup
    /// reconciliation runs before it does.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
        self.wait_up();
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(
            &std::fs::read_to_string(self.log_path()).unwrap_or_default(),
            lines,
        )
    }

    /// `jobnetctl --json <args>` against it, parsed, within a bound.
    pub fn ctl_json(&self, args: &[&str]) -> Result<serde_json::Value, String> {
        let mut cmd = Command::new(&binaries().jobnetctl);
        cmd.arg("--socket")
            .arg(self.socket())
            .arg("--json")
            .args(args);
        let out = output_within(&mut cmd, CTL_BOUND)?;
        serde_json::from_str(&out).map_err(|e| format!("jobnetctl {args:?}: not JSON ({e}): {out}"))
    }

    /// Every attachment it records (`jobnetctl attachments --json`).
    pub fn attachments(&self) -> Result<Vec<serde_json::Value>, String> {
        match self.ctl_json(&["attachments"])? {
            serde_json::Value::Array(a) => Ok(a),
            other => Err(format!("attachments: not a list: {other}")),
        }
    }

    /// Its VFs that are not free (`jobnetctl vfs --json`), as `pci state owner`.
    pub fn held_vfs(&self) -> Result<Vec<String>, String> {
        let v = self.ctl_json(&["vfs"])?;
        let list = v
            .as_array()
            .ok_or_else(|| format!("vfs: not a list: {v}"))?;
        Ok(list
            .iter()
            .filter(|vf| vf["state"] != "free")
            .map(|vf| format!("{} {} {}", vf["pci"], vf["state"], vf["owner"]))
            .collect())
    }

    /// The directory its config, state and log live in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Jobnetd {
    fn drop(&mut self) {
        self.kill9();
    }
}
