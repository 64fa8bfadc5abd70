//! Running the `jobnet` plugin inside a fabric node the way a container
//! runtime does, with a bound on every run and the means to SIGKILL it at
//! any moment (a runtime restart, an OOM kill, a node agent timing out).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Longest a plugin run may take: far beyond its own lock bounds (ADD 5 s,
/// DEL 10 s) plus jobnetd's deadlines, so only a hang reaches it.
pub const RUN_BOUND: Duration = Duration::from_secs(30);

/// How often a running plugin is looked at.
const POLL: Duration = Duration::from_millis(2);

/// One plugin call: the environment a runtime sets, and the config it
/// writes to stdin.
#[derive(Debug, Clone)]
pub struct Invocation {
    vars: Vec<(String, OsString)>,
    /// The network config.
    pub conf: serde_json::Value,
}

impl Invocation {
    /// `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME` and the
    /// config; nothing else is set until asked for.
    pub fn new(
        command: &str,
        container_id: &str,
        netns: &Path,
        ifname: &str,
        conf: serde_json::Value,
    ) -> Self {
        Self {
            vars: Vec::new(),
            conf,
        }
        .var("CNI_COMMAND", command)
        .var("CNI_CONTAINERID", container_id)
        .var("CNI_NETNS", netns)
        .var("CNI_IFNAME", ifname)
    }

    /// A GC call: no attachment variables, as the spec has it.
    pub fn gc(conf: serde_json::Value) -> Self {
        Self {
            vars: Vec::new(),
            conf,
        }
        .var("CNI_COMMAND", "GC")
    }

    /// Sets `key` to `value` (a later value for the same key wins).
    pub fn var(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.vars.retain(|(k, _)| k != key);
        self.vars.push((key.to_owned(), value.as_ref().to_owned()));
        self
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&OsStr> {
        self.vars
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_os_str())
    }
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// What the run was (for messages).
    pub what: String,
    /// Exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    /// This side SIGKILLed it before it exited.
    pub killed: bool,
    /// Its stdout (the result or the error object).
    pub stdout: String,
    /// Its logs.
    pub stderr: String,
    /// From spawn to exit.
    pub elapsed: Duration,
}

impl Outcome {
    /// Exited 0 on its own.
    pub fn ok(&self) -> bool {
        !self.killed && self.code == Some(0)
    }

    /// Stdout as JSON, when it is.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.stdout).ok()
    }

    /// The CNI error code it printed, if it printed an error object.
    pub fn cni_code(&self) -> Option<u64> {
        self.json().and_then(|v| v["code"].as_u64())
    }

    /// One line for counts: `ok`, `killed`, `code N` or `exit N`.
    pub fn kind(&self) -> String {
        if self.killed {
            "killed".into()
        } else if self.ok() {
            "ok".into()
        } else if let Some(c) = self.cni_code() {
            format!("code {c}")
        } else {
            match self.code {
                Some(c) => format!("exit {c}"),
                None => "signal".into(),
            }
        }
    }

    /// Everything about the run, for a failure message.
    pub fn describe(&self) -> String {
        format!(
            "{} ({}, {:?}):\nstdout: {}\nstderr (tail):\n{}",
            self.what,
            self.kind(),
            self.elapsed,
            self.stdout.trim(),
            tail(&self.stderr, 40)
        )
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A plugin process. Dropping it kills it, so a panicking test leaves no
/// plugin behind.
#[derive(Debug)]
pub struct Running {
    what: String,
    child: Option<Child>,
    status: Option<ExitStatus>,
    stdout: File,
    stderr: File,
    started: Instant,
    ended: Option<Instant>,
    killed: bool,
}

/// Starts `plugin` inside the netns `node_netns` (the node's host network,
/// where a runtime runs plugins) with only `PATH` and the call's variables
/// set, and writes the config to its stdin.
pub fn spawn(node_netns: &Path, plugin: &Path, inv: &Invocation, what: &str) -> Running {
    let out = tempfile::tempfile().expect("plugin stdout file");
    let err = tempfile::tempfile().expect("plugin stderr file");
    let mut child = Command::new("nsenter")
        .arg(format!("--net={}", node_netns.display()))
        .arg(plugin)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(inv.vars.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(out.try_clone().expect("clone stdout file"))
        .stderr(err.try_clone().expect("clone stderr file"))
        .spawn()
        .expect("spawn jobnet");
    if let Some(mut stdin) = child.stdin.take() {
        // A run killed before it read its config closes the pipe: fine.
        let _ = stdin.write_all(inv.conf.to_string().as_bytes());
    }
    Running {
        what: what.to_owned(),
        child: Some(child),
        status: None,
        stdout: out,
        stderr: err,
        started: Instant::now(),
        ended: None,
        killed: false,
    }
}

impl Running {
    /// Waits up to `d` for the run to exit; true when it has.
    pub fn wait_for(&mut self, d: Duration) -> bool {
        let until = Instant::now() + d;
        loop {
            if self.poll() {
                return true;
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            std::thread::sleep(POLL.min(until - now));
        }
    }

    fn poll(&mut self) -> bool {
        if self.status.is_some() {
            return true;
        }
        let Some(child) = self.child.as_mut() else {
            return true;
        };
        match child.try_wait() {
            Ok(Some(st)) => {
                self.status = Some(st);
                self.ended = Some(Instant::now());
                true
            }
            Ok(None) => false,
            Err(e) => panic!("{}: wait: {e}", self.what),
        }
    }

    /// SIGKILLs the run unless it already exited; true when it was killed.
    pub fn kill(&mut self) -> bool {
        if self.poll() {
            return false;
        }
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let st = child.wait().expect("reap killed plugin");
            self.status = Some(st);
            self.ended = Some(Instant::now());
            self.killed = true;
        }
        self.killed
    }

    /// Runs on for at most `delay`, then SIGKILLs it if it is still running.
    pub fn kill_after(&mut self, delay: Duration) -> bool {
        !self.wait_for(delay) && self.kill()
    }

    /// Waits for the end (within [`RUN_BOUND`] of the start) and collects
    /// what it printed. Panics when the bound is reached: a hung plugin
    /// hangs the runtime's sandbox operation, a bug in its own right.
    pub fn finish(mut self) -> Outcome {
        let left = RUN_BOUND.saturating_sub(self.started.elapsed());
        if !self.wait_for(left) {
            self.kill();
            let err = read_all(&mut self.stderr);
            panic!(
                "{} did not finish within {RUN_BOUND:?}; its log:\n{}",
                self.what,
                tail(&err, 60)
            );
        }
        let status = self.status.expect("exited");
        Outcome {
            what: std::mem::take(&mut self.what),
            code: status.code(),
            killed: self.killed,
            stdout: read_all(&mut self.stdout),
            stderr: read_all(&mut self.stderr),
            elapsed: self.ended.unwrap_or_else(Instant::now) - self.started,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if self.status.is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

fn read_all(f: &mut File) -> String {
    let mut s = String::new();
    if f.seek(SeekFrom::Start(0)).is_ok() {
        let mut bytes = Vec::new();
        let _ = f.read_to_end(&mut bytes);
        s = String::from_utf8_lossy(&bytes).into_owned();
    }
    s
}

/// Runs a command with a bound; past it the command is killed and `Err`
/// names it. (jobnetctl, `ip`: anything the audit asks.)
pub fn output_within(cmd: &mut Command, within: Duration) -> Result<String, String> {
    let out = tempfile::tempfile().map_err(|e| e.to_string())?;
    let err = tempfile::tempfile().map_err(|e| e.to_string())?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().map_err(|e| e.to_string())?)
        .stderr(err.try_clone().map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let until = Instant::now() + within;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() >= until => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{cmd:?} did not finish within {within:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("{cmd:?}: wait: {e}")),
        }
    };
    let (mut out, mut err) = (out, err);
    let stdout = read_all(&mut out);
    if status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{cmd:?}: {status}: {}{}",
            stdout,
            read_all(&mut err)
        ))
    }
}

/// A path the runtime would pass as `CNI_NETNS` for a netns named `name`.
pub fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}
