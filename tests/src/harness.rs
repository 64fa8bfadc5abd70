//! What cross-crate tests need besides the fabric: the workspace's binaries,
//! pod network namespaces, a real jobnetd, and running the `jobnet` plugin
//! inside a node the way a container runtime does.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::fabric::ip::Netns;

mod cni;
mod kernel;
mod skip;
mod wait;

pub use cni::{
    remove_default_devinfo, require_reference_plugin, result_addr, result_pci, CniCall, PluginRun,
    DEFAULT_DEVINFO_DIR, REFERENCE_PLUGINS,
};
pub use kernel::{
    ip_batch, ip_json, link_details, links_by_name, master_of, port_states, PortState,
};
pub use skip::{record_skip, skip, SKIP_LOG_ENV};
pub use wait::{udp_echo_within, wait_oper_up, wait_until, STATE_DEADLINE};

/// The workspace binaries tests run.
#[derive(Debug)]
pub struct Binaries {
    /// The CNI plugin.
    pub jobnet: PathBuf,
    /// The node daemon.
    pub jobnetd: PathBuf,
    /// The daemon's CLI.
    pub jobnetctl: PathBuf,
}

/// Builds (once per test process) and returns the workspace binaries: a
/// plain `cargo test -p jobnet-tests` does not build other packages' bins.
///
/// They are built with the profile of the running test executable, into
/// its target dir, so `cargo test --release` (or `--profile NAME`) runs the
/// binaries of that very build, never stale ones of another profile.
pub fn binaries() -> &'static Binaries {
    static BINS: OnceLock<Binaries> = OnceLock::new();
    BINS.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        let build = TestBuild::of_test_executable(&exe).unwrap_or_else(|| {
            panic!(
                "{} does not live in <target>/<profile>/deps: cannot tell which build it is",
                exe.display()
            )
        });
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root");
        let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .current_dir(workspace)
            .env("CARGO_TARGET_DIR", &build.target_dir)
            .args([
                "build",
                "--quiet",
                "--message-format=json-render-diagnostics",
            ])
            .args(build.profile_args())
            .args(["-p", "jobnet-cni", "--bin", "jobnet"])
            .args([
                "-p",
                "jobnet-daemon",
                "--bin",
                "jobnetd",
                "--bin",
                "jobnetctl",
            ])
            .stderr(Stdio::inherit())
            .output()
            .expect("run cargo build");
        assert!(
            out.status.success(),
            "building jobnet, jobnetd and jobnetctl ({:?}) failed",
            build.profile_args()
        );
        // The paths cargo reports, not ones guessed from the profile: a
        // wrong guess would otherwise run stale binaries without a word.
        let mut built = built_executables(&String::from_utf8_lossy(&out.stdout));
        let mut take = |name: &str| {
            let path = built
                .remove(name)
                .unwrap_or_else(|| panic!("cargo build reported no executable {name}"));
            assert_eq!(
                path.parent(),
                Some(build.profile_dir.as_path()),
                "cargo built {name} outside the profile dir of this test executable ({:?})",
                build.profile_args()
            );
            path
        };
        Binaries {
            jobnet: take("jobnet"),
            jobnetd: take("jobnetd"),
            jobnetctl: take("jobnetctl"),
        }
    })
}

/// The executables (by target name) in cargo's `--message-format=json`
/// output; fresh units are reported too. Lines that are not artifact
/// messages are ignored.
pub fn built_executables(json_lines: &str) -> HashMap<String, PathBuf> {
    json_lines
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter_map(|m| {
            let name = m["target"]["name"].as_str()?.to_owned();
            let exe = m["executable"].as_str()?;
            Some((name, PathBuf::from(exe)))
        })
        .collect()
}

/// Where the build that produced a test executable put its outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestBuild {
    /// The target dir (`CARGO_TARGET_DIR`, or the workspace's `target`).
    pub target_dir: PathBuf,
    /// `<target>/<profile dir>`, where that build's binaries go.
    pub profile_dir: PathBuf,
}

impl TestBuild {
    /// The build of the test executable at `exe`, which cargo puts in
    /// `<target>/<profile dir>/deps/`; `None` for any other path.
    pub fn of_test_executable(exe: &Path) -> Option<Self> {
        let deps = exe.parent()?;
        if deps.file_name()? != "deps" {
            return None;
        }
        let profile_dir = deps.parent()?;
        Some(Self {
            target_dir: profile_dir.parent()?.to_owned(),
            profile_dir: profile_dir.to_owned(),
        })
    }

    /// The `cargo build` arguments that build into the same profile dir:
    /// `debug` is the dev profile (also what `test` builds into),
    /// `release` is `--release` (also `bench`'s), and any other dir is a
    /// custom profile of that name.
    pub fn profile_args(&self) -> Vec<String> {
        let dir = self
            .profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug");
        match dir {
            "debug" => Vec::new(),
            "release" => vec!["--release".to_owned()],
            other => vec!["--profile".to_owned(), other.to_owned()],
        }
    }
}

/// A short name unique to this process and call (fits netns and netdev names).
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}{}x{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A pod network namespace, removed on drop (also when the test panics).
#[derive(Debug)]
pub struct Pod {
    /// Its name under /run/netns.
    pub name: String,
}

impl Pod {
    /// Creates a fresh netns named after `prefix`.
    pub fn new(prefix: &str) -> Self {
        let name = unique(prefix);
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "ip netns add {name}");
        Self { name }
    }

    /// Its path, as a runtime passes it in CNI_NETNS.
    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// It as the fabric's [`Netns`].
    pub fn ns(&self) -> Netns {
        Netns::Named(self.name.clone())
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A real jobnetd over a (fake) sysfs root, killed on drop.
#[derive(Debug)]
pub struct Daemon {
    dir: tempfile::TempDir,
    /// Its API socket.
    pub socket: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// Starts jobnetd for node `node` with `pools` (TOML `[[pools]]` tables)
    /// and waits until its socket answers.
    pub fn start(node: &str, sysfs_root: &Path, pools: &str) -> Self {
        Self::start_binary(&binaries().jobnetd, node, sysfs_root, pools)
    }

    /// [`Daemon::start`] with a given jobnetd binary (benchmarks use the
    /// release build).
    pub fn start_binary(jobnetd: &Path, node: &str, sysfs_root: &Path, pools: &str) -> Self {
        Self::start_binary_in(jobnetd, None, node, sysfs_root, pools)
    }

    /// [`Daemon::start`] inside network namespace `netns` (a fabric node's),
    /// as a DaemonSet runs jobnetd in its node's host network: the node-wide
    /// objects it owns (job bridges, VXLAN tunnels) live there.
    pub fn start_in(netns: Option<&str>, node: &str, sysfs_root: &Path, pools: &str) -> Self {
        Self::start_binary_in(&binaries().jobnetd, netns, node, sysfs_root, pools)
    }

    fn start_binary_in(
        jobnetd: &Path,
        netns: Option<&str>,
        node: &str,
        sysfs_root: &Path,
        pools: &str,
    ) -> Self {
        let dir = tempfile::tempdir().expect("daemon tempdir");
        let socket = dir.path().join("jobnetd.sock");
        let config = dir.path().join("jobnetd.toml");
        std::fs::write(
            &config,
            format!(
                "node = \"{node}\"\nsocket = \"{sock}\"\nstate_dir = \"{dir}/state\"\n\
                 run_dir = \"{dir}/run\"\nsysfs_root = \"{sys}\"\nmetrics_addr = \"off\"\n\
                 reconcile_interval_secs = 3600\nnetns_grace_secs = 3600\n\n{pools}\n",
                sock = socket.display(),
                dir = dir.path().display(),
                sys = sysfs_root.display(),
            ),
        )
        .expect("write jobnetd.toml");
        let log = std::fs::File::create(dir.path().join("jobnetd.log")).expect("daemon log");
        let child = spawn_jobnetd(jobnetd, netns, &config, log);
        let mut d = Self {
            dir,
            socket,
            child: Some(child),
        };
        let log = d.dir.path().join("jobnetd.log");
        wait_for_jobnetd(&d.socket, d.child.as_mut(), &log);
        d
    }

    /// The daemon's run dir (NCCL hints live under `pods/`).
    pub fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("jobnetd.log")).unwrap_or_default()
    }

    /// Runs `jobnetctl` against this daemon: (success, stdout, stderr).
    pub fn ctl(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(&binaries().jobnetctl)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run jobnetctl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `jobnetd --config <config>` with its stderr to `log`, inside
/// network namespace `netns` when given, without waiting for it.
pub fn spawn_jobnetd(jobnetd: &Path, netns: Option<&str>, config: &Path, log: File) -> Child {
    let mut cmd = match netns {
        // `ip netns exec` enters the netns and then execs jobnetd itself:
        // the child's pid is jobnetd's, so SIGKILL hits it.
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(jobnetd);
            c
        }
        None => Command::new(jobnetd),
    };
    cmd.arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn jobnetd")
}

/// Waits (up to 20 s) until jobnetd answers on `socket`; panics with its
/// log (`log`) when `child` exits first or time runs out.
pub fn wait_for_jobnetd(socket: &Path, mut child: Option<&mut Child>, log: &Path) {
    let read_log = || std::fs::read_to_string(log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        if let Some(st) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            panic!("jobnetd exited ({st}):\n{}", read_log());
        }
        assert!(Instant::now() < deadline, "jobnetd not up:\n{}", read_log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build_of(exe: &str) -> Option<TestBuild> {
        TestBuild::of_test_executable(Path::new(exe))
    }

    #[test]
    fn each_profile_dir_builds_with_its_own_profile() {
        let args = |exe| build_of(exe).unwrap().profile_args();
        assert!(args("/w/target/debug/deps/fabric-0123abcd").is_empty());
        assert_eq!(
            args("/w/target/release/deps/fabric-0123abcd"),
            ["--release"]
        );
        assert_eq!(
            args("/w/target/ci-fast/deps/fabric-0123abcd"),
            ["--profile", "ci-fast"]
        );
    }

    #[test]
    fn executables_come_from_artifact_messages() {
        let out = concat!(
            r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"jobnet_hw"},"#,
            r#""filenames":["/t/release/deps/libjobnet_hw.rlib"],"executable":null,"fresh":true}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"jobnetd"},"#,
            r#""filenames":["/t/release/jobnetd"],"executable":"/t/release/jobnetd","fresh":false}"#,
            "\nnot json\n",
            r#"{"reason":"build-finished","success":true}"#,
            "\n",
        );
        let exes = built_executables(out);
        assert_eq!(exes.len(), 1, "{exes:?}");
        assert_eq!(exes["jobnetd"], Path::new("/t/release/jobnetd"));
    }

    #[test]
    fn the_target_dir_is_where_the_test_executable_is() {
        let b = build_of("/elsewhere/tgt/release/deps/x-1").unwrap();
        assert_eq!(b.target_dir, Path::new("/elsewhere/tgt"));
        assert_eq!(b.profile_dir, Path::new("/elsewhere/tgt/release"));
        // Not a cargo test executable: no guess.
        assert_eq!(build_of("/usr/local/bin/fabric"), None);
        assert_eq!(build_of("deps"), None);
    }
}
