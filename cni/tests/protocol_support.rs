//! Shared helpers for the binary-level tests (included with `#[path]`):
//! running the real `jobnet` binary with a controlled environment, and
//! network namespaces that are always removed.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// What one plugin run produced.
#[derive(Debug)]
pub struct Run {
    /// Exit status code (-1 if killed by a signal).
    pub status: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Stdout parsed as one JSON value (panics with the output otherwise).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}): {self:?}"))
    }

    /// Asserts a CNI error with `code`: non-zero exit and stdout exactly one
    /// object with the four error keys. Returns the object.
    pub fn expect_error(&self, code: u64) -> serde_json::Value {
        assert_ne!(self.status, 0, "expected failure: {self:?}");
        let v = self.json();
        let obj = v
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {self:?}"));
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["cniVersion", "code", "details", "msg"], "{self:?}");
        assert_eq!(obj["code"].as_u64(), Some(code), "wrong code: {self:?}");
        assert!(
            obj["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "{self:?}"
        );
        v
    }

    /// Asserts success with empty stdout.
    pub fn expect_silent_success(&self) {
        assert_eq!(self.status, 0, "expected success: {self:?}");
        assert!(self.stdout.trim().is_empty(), "unexpected output: {self:?}");
    }
}

/// Runs a plugin binary with exactly `env` (plus PATH) and `stdin`.
pub fn run_bin(bin: &str, env: &[(&str, &str)], stdin: &[u8]) -> Run {
    run_cmd(bin, &[], env, stdin)
}

/// Runs `program args...` with exactly `env` (plus PATH) and `stdin`.
pub fn run_cmd(program: &str, args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Run {
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn plugin");
    let mut pipe = child.stdin.take().expect("stdin pipe");
    let data = stdin.to_vec();
    // The plugin may stop reading early (oversize input): ignore EPIPE.
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait plugin");
    let _ = writer.join();
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs the `jobnet` binary built for these tests.
pub fn jobnet(env: &[(&str, &str)], stdin: &[u8]) -> Run {
    run_bin(env!("CARGO_BIN_EXE_jobnet"), env, stdin)
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique short name: prefix + pid + counter.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}-{n}", std::process::id())
}

/// A named network namespace (`ip netns add`), deleted on drop (also on panic).
pub struct Netns {
    /// The namespace name.
    pub name: String,
}

impl Netns {
    /// Creates a namespace with a unique name.
    pub fn new(prefix: &str) -> Self {
        let name = unique(prefix);
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("run ip netns add")
            .success();
        assert!(ok, "ip netns add {name} failed");
        Self { name }
    }

    /// `/run/netns/<name>`.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
