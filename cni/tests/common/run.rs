//! Running a plugin binary with a controlled environment and stdin, in the
//! caller's network namespace or in another one.

use std::fs::File;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What one plugin run produced.
#[derive(Debug, Clone)]
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

    /// Asserts success and returns stdout as JSON.
    pub fn ok_json(&self) -> serde_json::Value {
        assert_eq!(self.status, 0, "expected success: {self:?}");
        self.json()
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

    /// The error message of a CNI error (panics when there is none).
    pub fn error_msg(&self) -> String {
        self.json()["msg"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message: {self:?}"))
            .to_owned()
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
    run_in(None, program, args, env, stdin)
}

/// Runs the `jobnet` binary built for these tests in the caller's netns.
pub fn jobnet(env: &[(&str, &str)], stdin: &[u8]) -> Run {
    run_bin(env!("CARGO_BIN_EXE_jobnet"), env, stdin)
}

/// Runs `program` with exactly `env` (plus PATH) and `stdin`; with `netns`,
/// the child enters that network namespace before exec (the way a runtime
/// runs a CNI plugin in the node's netns).
pub fn run_in(
    netns: Option<&Path>,
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &[u8],
) -> Run {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(path) = netns {
        let ns = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        // SAFETY: the closure makes one syscall (setns) on an fd opened
        // before the fork; nothing allocates or takes locks in the child.
        unsafe {
            cmd.pre_exec(move || {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(std::io::Error::from)
            });
        }
    }
    let mut child = cmd.spawn().expect("spawn plugin");
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

/// Waits for `child` at most `bound`; past it kills it and returns `None`
/// (a hung plugin must fail its test, not hang it).
pub fn wait_within(child: &mut Child, bound: Duration) -> Option<ExitStatus> {
    let started = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("wait jobnet") {
            return Some(st);
        }
        if started.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
