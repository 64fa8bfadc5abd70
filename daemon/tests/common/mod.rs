//! Runs the real jobnetd binary on a temp socket, state dir and fake sysfs.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use jobnet_api::{Client, ReserveRequest};
pub use jobnet_tests::fake_sysfs::FakeSysfs;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this test process and call (netdev-safe: <= 15 bytes).
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{prefix}{}x{n}", std::process::id() % 100_000)
}

/// One jobnetd process with its files; killed and removed on drop.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub sysfs: FakeSysfs,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub metrics_port: u16,
    child: Option<Child>,
}

/// Config pieces a test may change.
pub struct Opts {
    pub pools: String,
    pub netns_grace_secs: u64,
    pub reconcile_interval_secs: u64,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            pools: r#"
[[pools]]
name = "rdma"
cidrs = ["10.100.0.0/16", "fd00:100::/48"]
isolation = { mode = "vf-vlan", first = 1000, last = 1999 }
"#
            .into(),
            netns_grace_secs: 600,
            reconcile_interval_secs: 600,
        }
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Daemon {
    /// Starts jobnetd with `opts` over `sysfs`.
    pub fn start_with(sysfs: FakeSysfs, opts: Opts) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // World-traversable so the non-root peer test can reach the socket path.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = dir.path().join("jobnetd.sock");
        let metrics_port = free_port();
        let config = dir.path().join("jobnetd.toml");
        std::fs::write(
            &config,
            format!(
                r#"node = "node-a"
socket = "{sock}"
state_dir = "{dir}/state"
run_dir = "{dir}/run"
sysfs_root = "{sys}"
metrics_addr = "127.0.0.1:{metrics_port}"
netns_grace_secs = {grace}
reconcile_interval_secs = {every}
{pools}"#,
                sock = socket.display(),
                dir = dir.path().display(),
                sys = sysfs.path().display(),
                grace = opts.netns_grace_secs,
                every = opts.reconcile_interval_secs,
                pools = opts.pools,
            ),
        )
        .unwrap();
        let mut d = Self {
            dir,
            sysfs,
            config,
            socket,
            metrics_port,
            child: None,
        };
        d.spawn();
        d
    }

    /// Starts jobnetd with defaults over `sysfs`.
    pub fn start(sysfs: FakeSysfs) -> Self {
        Self::start_with(sysfs, Opts::default())
    }

    /// Starts the process and waits until the socket answers.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("jobnetd.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_jobnetd"))
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("jobnetd exited early ({status}):\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("jobnetd did not come up:\n{}", self.log());
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("jobnetd.log")).unwrap_or_default()
    }

    /// How many startup hints passes the log (of every start so far) reports.
    pub fn startup_passes(&self) -> usize {
        self.log().matches("startup hints pass done").count()
    }

    /// Waits until the log reports `n` startup hints passes: jobnetd answers
    /// before its startup reconciliation and hints pass are done.
    pub fn wait_startup_passes(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.startup_passes() < n {
            assert!(
                Instant::now() < deadline,
                "startup pass {n} not done within 60 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `sig` and waits for the process; returns its exit status.
    pub fn signal_and_wait(&mut self, sig: nix::sys::signal::Signal) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("not running");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
        let _ = nix::sys::signal::kill(pid, sig);
        child.wait().unwrap()
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.signal_and_wait(nix::sys::signal::Signal::SIGTERM)
    }

    /// SIGKILL and wait.
    pub fn kill(&mut self) {
        self.signal_and_wait(nix::sys::signal::Signal::SIGKILL);
    }

    /// An API client for this daemon.
    pub fn client(&self) -> Client {
        Client::new(&self.socket)
    }

    /// Runs jobnetctl against this daemon; returns (success, stdout, stderr).
    pub fn ctl(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_jobnetctl"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap();
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

/// A sysfs with `pfs` PFs of `vfs` VFs each (PF i at bus 0x10+i).
pub fn sysfs(pfs: u32, vfs: u32) -> FakeSysfs {
    let s = FakeSysfs::new();
    for i in 0..pfs {
        s.pf(
            &format!("0000:{:02x}:00.0", 0x10 + i),
            &format!("ens{i}f0"),
            vfs,
        );
    }
    s
}

/// A reserve request with defaults.
pub fn reserve_req(cid: &str, job: &str, rank: Option<u32>) -> ReserveRequest {
    ReserveRequest {
        container_id: cid.into(),
        ifname: "net1".into(),
        netns: "/proc/self/ns/net".into(),
        job: job.into(),
        rank,
        gpus: vec![],
        device_id: None,
        rails: Default::default(),
        pool: None,
        network: None,
    }
}

/// One raw HTTP/1.1 exchange over the socket; returns (status, body).
pub fn raw_http(socket: &Path, request: &[u8]) -> (u16, String) {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may answer and close before reading everything (413): ignore write errors.
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A POST with `Connection: close` and the given body.
pub fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}
