//! jobnetd through its API socket, as the CNI plugin meets it: a real
//! `jobnetd` process, and clients in processes of their own.
//!
//! Throughput: jobnetd runs over a fake sysfs with 1024 VFs, state on disk
//! (every answer is durable), hints under /dev/shm (tmpfs, as /run is). For
//! each client count, each round spawns that many client processes (this
//! binary with `--client`); each opens one connection per call, as the
//! plugin does, and reserves+commits its share of the 1024 VFs (job
//! `i % 64`, rank `i / 64`); then everything is released. One line per
//! client count:
//! `clients=64 ops=3072 throughput=…/s p50=…ms p99=…ms daemon_cpu_per_op=…us client_cpu_per_op=…us`
//! with the targets (>= 5,000/s and p99 <= 20 ms at 64 clients) and the
//! 1-client figure of the same run as the baseline.
//!
//! Startup: for each N of `--startup`, a state dir holding N committed
//! attachments (filled once through the engine), then the time from exec of
//! `jobnetd` until its API answers `status` (target <= 1 s for 1,000, <= 5 s
//! for 100,000), and until its first reconciliation and hints pass, which
//! run behind the API, are done.
//!
//! ```sh
//! cargo build --release -p jobnet-daemon --bin jobnetd --example api_bench
//! target/release/examples/api_bench [--clients 1,64] [--rounds 3] \
//!     [--startup 1000,100000] [--state-cache DIR] [--jobnetd PATH]
//! ```

#[path = "shared/cpu.rs"]
mod cpu;
#[path = "shared/fill.rs"]
mod fill;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use jobnet_api::{paths, Attachment, BlockingClient, Client, ReserveRequest};
use jobnet_daemon::config::Config;
use jobnet_tests::fake_sysfs::FakeSysfs;

const PFS: u32 = 8;
const VFS: u32 = 128;
/// Longest wait for jobnetd to answer or for a client process.
const DEADLINE: Duration = Duration::from_secs(600);

struct Args {
    clients: Vec<usize>,
    rounds: u32,
    startup: Vec<usize>,
    state_cache: Option<PathBuf>,
    jobnetd: Option<PathBuf>,
}

fn list(val: &str) -> Result<Vec<usize>, String> {
    val.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|e| format!("{s:?}: {e}")))
        .collect()
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        clients: vec![1, 64],
        rounds: 3,
        startup: Vec::new(),
        state_cache: None,
        jobnetd: None,
    };
    while let Some(flag) = it.next() {
        let val = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--clients" => a.clients = list(&val)?,
            "--rounds" => a.rounds = val.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--startup" => a.startup = list(&val)?,
            "--state-cache" => a.state_cache = Some(val.into()),
            "--jobnetd" => a.jobnetd = Some(val.into()),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

/// CPU time jobnetd `pid` has used so far (utime + stime from /proc).
fn proc_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which ends with the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 1000 / hz.max(1))
}

fn config(dir: &Path, sysfs: &Path, run_dir: &Path) -> String {
    format!(
        "node = \"bench-node\"\nsocket = \"{d}/jobnetd.sock\"\nstate_dir = \"{d}/state\"\n\
         run_dir = \"{r}\"\nsysfs_root = \"{s}\"\nmetrics_addr = \"off\"\n\
         [[pools]]\nname = \"p\"\ncidrs = [\"10.0.0.0/8\"]\n",
        d = dir.display(),
        r = run_dir.display(),
        s = sysfs.display()
    )
}

/// A jobnetd process; SIGTERM and wait on drop. Its log lines are timed
/// as they arrive.
struct Daemon {
    child: Child,
    started: Instant,
    log: mpsc::Receiver<(Instant, String)>,
}

impl Daemon {
    fn start(jobnetd: &Path, cfg_path: &Path) -> Self {
        let started = Instant::now();
        let mut child = Command::new(jobnetd)
            .arg("--config")
            .arg(cfg_path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start jobnetd");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("WARN") || line.contains("ERROR") {
                    eprintln!("jobnetd: {line}");
                }
                if tx.send((Instant::now(), line)).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            started,
            log,
        }
    }

    /// Time from exec until `status` answers.
    fn wait_ready(&self, socket: &Path) -> Duration {
        let client = BlockingClient::from_client(
            Client::new(socket).with_timeouts(Duration::from_secs(2), Duration::from_secs(60)),
        )
        .expect("client");
        loop {
            match client.status() {
                Ok(_) => return self.started.elapsed(),
                Err(e) if self.started.elapsed() > DEADLINE => {
                    panic!("jobnetd did not answer: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }

    /// Time from exec until a log line containing `what`.
    fn wait_log(&self, what: &str) -> Option<Duration> {
        while let Ok((at, line)) = self.log.recv_timeout(DEADLINE) {
            if line.contains(what) {
                return Some(at - self.started);
            }
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = i32::try_from(self.child.id()).unwrap_or(0);
        // SAFETY: plain kill(2) of our own child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// One call on a fresh connection with a plain blocking socket (what a
/// plugin without an async runtime does): the bench's own CPU per call stays
/// small next to jobnetd's.
fn post<T: serde::de::DeserializeOwned>(
    socket: &Path,
    path: &str,
    body: &impl serde::Serialize,
) -> Result<T, String> {
    let body = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    let mut s = std::os::unix::net::UnixStream::connect(socket).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nhost: jobnetd\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    s.write_all(&req).map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).map_err(|e| e.to_string())?;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no HTTP header in the answer")?;
    if !answer.starts_with(b"HTTP/1.1 200") {
        return Err(String::from_utf8_lossy(&answer).into_owned());
    }
    serde_json::from_slice(&answer[split + 4..]).map_err(|e| e.to_string())
}

/// One client process: reserves+commits attachments `index`, `index + step`,
/// ... below `total` once stdin says go; prints each latency in microseconds.
fn client_main(mut it: impl Iterator<Item = String>) -> Result<(), String> {
    let mut next = || it.next().ok_or("--client SOCKET ROUND INDEX STEP TOTAL");
    let socket = PathBuf::from(next()?);
    let mut num = || -> Result<usize, String> { next()?.parse().map_err(|e| format!("{e}")) };
    let (round, index, step, total) = (num()?, num()?, num()?.max(1), num()?);
    let mut go = String::new();
    std::io::stdin()
        .read_line(&mut go)
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    for i in (index..total).step_by(step) {
        let req = ReserveRequest {
            container_id: format!("r{round}c{i}"),
            ifname: "net1".into(),
            netns: "/proc/self/ns/net".into(),
            job: format!("job{}", i % 64),
            rank: Some(u32::try_from(i / 64).unwrap_or(0)),
            gpus: vec![],
            device_id: None,
            rails: Default::default(),
            pool: None,
            network: None,
        };
        let t = Instant::now();
        let a: Attachment =
            post(&socket, paths::RESERVE, &req).map_err(|e| format!("reserve: {e}"))?;
        let _: Attachment =
            post(&socket, paths::COMMIT, &a.key()).map_err(|e| format!("commit: {e}"))?;
        out.push_str(&format!("{}\n", t.elapsed().as_micros()));
    }
    std::io::stdout()
        .write_all(out.as_bytes())
        .map_err(|e| e.to_string())
}

/// What one client count measured.
struct Figures {
    ops: usize,
    throughput: f64,
    p50_ms: f64,
    p99_ms: f64,
    daemon_us: f64,
    client_us: f64,
}

/// `rounds` rounds of `clients` client processes against jobnetd `pid`.
fn measure(socket: &Path, pid: u32, clients: usize, rounds: u32) -> Figures {
    let me = std::env::current_exe().expect("current exe");
    let total = (PFS * VFS) as usize;
    let releaser = BlockingClient::new(socket).expect("client");
    let mut lat: Vec<u64> = Vec::new();
    let (mut wall, mut daemon_cpu, mut client_cpu) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for round in 0..rounds {
        let mut procs: Vec<(Child, ChildStdout)> = (0..clients)
            .map(|k| {
                let mut c = Command::new(&me)
                    .arg("--client")
                    .arg(socket)
                    .args([round as usize, k, clients, total].map(|n| n.to_string()))
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("client process");
                let out = c.stdout.take().expect("stdout");
                (c, out)
            })
            .collect();
        // Every client is up and connected to nothing yet: start them together.
        let children_cpu = cpu::cpu_time(libc::RUSAGE_CHILDREN);
        let daemon_before = proc_cpu(pid);
        let started = Instant::now();
        for (c, _) in &mut procs {
            if let Some(mut stdin) = c.stdin.take() {
                stdin.write_all(b"go\n").expect("start client");
            }
        }
        let mut outputs = Vec::with_capacity(clients);
        for (c, mut out) in procs {
            let mut text = String::new();
            out.read_to_string(&mut text).expect("client output");
            outputs.push((c, text));
        }
        wall += started.elapsed();
        daemon_cpu += proc_cpu(pid) - daemon_before;
        for (mut c, text) in outputs {
            let status = c.wait().expect("client exit");
            assert!(status.success(), "a client process failed: {status}");
            lat.extend(text.lines().filter_map(|l| l.parse::<u64>().ok()));
        }
        client_cpu += cpu::cpu_time(libc::RUSAGE_CHILDREN) - children_cpu;
        for a in releaser.attachments().expect("list") {
            releaser.release(&a.key()).expect("release");
        }
    }
    assert_eq!(lat.len(), total * rounds as usize, "every call answered");
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1e3;
    let per_op = |d: Duration| d.as_secs_f64() * 1e6 / lat.len() as f64;
    Figures {
        ops: lat.len(),
        throughput: lat.len() as f64 / wall.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        daemon_us: per_op(daemon_cpu),
        client_us: per_op(client_cpu),
    }
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

fn throughput(args: &Args, jobnetd: &Path) {
    let sys = FakeSysfs::new();
    for i in 0..PFS {
        sys.pf(
            &format!("0000:{:02x}:00.0", 0x10 + i),
            &format!("ens{i}f0"),
            VFS,
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let run_dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("run dir");
    let cfg_path = dir.path().join("jobnetd.toml");
    std::fs::write(&cfg_path, config(dir.path(), sys.path(), run_dir.path())).expect("config");
    let socket = dir.path().join("jobnetd.sock");
    let daemon = Daemon::start(jobnetd, &cfg_path);
    daemon.wait_ready(&socket);
    let mut baseline: Option<Figures> = None;
    for &clients in &args.clients {
        let f = measure(&socket, daemon.child.id(), clients, args.rounds);
        let verdict = if clients >= 64 {
            format!(
                "  target >= 5000/s: {}, p99 <= 20 ms: {}",
                met(f.throughput >= 5000.0),
                met(f.p99_ms <= 20.0)
            )
        } else {
            String::new()
        };
        let vs = baseline
            .as_ref()
            .map(|b| {
                format!(
                    "  ({:.1}x the 1-client throughput)",
                    f.throughput / b.throughput
                )
            })
            .unwrap_or_default();
        println!(
            "clients={clients} ops={} throughput={:.0}/s p50={:.2}ms p99={:.2}ms daemon_cpu_per_op={:.0}us client_cpu_per_op={:.0}us{verdict}{vs}",
            f.ops, f.throughput, f.p50_ms, f.p99_ms, f.daemon_us, f.client_us
        );
        if clients == 1 {
            baseline = Some(f);
        }
    }
}

fn startup(rt: &tokio::runtime::Runtime, n: usize, cache: Option<&Path>, jobnetd: &Path) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = match cache {
        Some(c) => c.join(format!("startup-{n}")),
        None => tmp.path().to_owned(),
    };
    std::fs::create_dir_all(&dir).expect("state dir");
    let sys = FakeSysfs::new();
    sys.pf("0000:3b:00.0", "ens1f0", 8);
    // A fresh run dir, as after a reboot: hints are rewritten behind the API.
    let run_dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("run dir");
    let text = config(&dir, sys.path(), run_dir.path());
    let cfg_path = dir.join("jobnetd.toml");
    std::fs::write(&cfg_path, &text).expect("config");
    let cfg = Config::from_toml(&text).expect("config");
    if !cfg.state_dir.join(jobnet_ipam::store::DB_FILE).exists() {
        rt.block_on(fill::fill(&cfg, (n / 10).max(1), n));
    }
    let daemon = Daemon::start(jobnetd, &cfg_path);
    let ready = daemon.wait_ready(&cfg.socket);
    let reconciled = daemon.wait_log("startup reconciliation done");
    let hints = daemon.wait_log("startup hints pass done");
    let target = if n <= 1000 { 1.0 } else { 5.0 };
    let secs = |d: Option<Duration>| d.map_or("?".into(), |d| format!("{:.2}s", d.as_secs_f64()));
    println!(
        "startup attachments={n} api_answers={:.2}s  target <= {target:.0} s: {}  (behind the API: reconciled at {}, hints at {})",
        ready.as_secs_f64(),
        met(ready.as_secs_f64() <= target),
        secs(reconciled),
        secs(hints),
    );
}

fn main() {
    let mut argv = std::env::args().skip(1).peekable();
    if argv.peek().map(String::as_str) == Some("--client") {
        argv.next();
        if let Err(e) = client_main(argv) {
            eprintln!("api_bench client: {e}");
            std::process::exit(1);
        }
        return;
    }
    let args = match parse_args(argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("api_bench: {e}");
            std::process::exit(2);
        }
    };
    let jobnetd = fill::jobnetd_path(args.jobnetd.clone());
    assert!(
        jobnetd.exists(),
        "{} not found: build it first",
        jobnetd.display()
    );
    if !args.clients.is_empty() {
        throughput(&args, &jobnetd);
    }
    if args.startup.is_empty() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for &n in &args.startup {
        startup(&rt, n, args.state_cache.as_deref(), &jobnetd);
    }
}
