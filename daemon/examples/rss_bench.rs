//! jobnetd's memory with a large state. Fills a store with `--jobs` jobs and
//! `--attachments` committed attachments (spread evenly over the jobs, ranks
//! in order) through the engine, so the records are exactly what the API
//! writes; then starts the real `jobnetd` binary on that state and reports
//! its resident memory once it has loaded (startup reconciliation, owner
//! mirror) and answered `status`.
//!
//! ```sh
//! cargo build --release -p jobnet-daemon --bin jobnetd --example rss_bench
//! target/release/examples/rss_bench [--jobs 10000] [--attachments 100000] \
//!     [--state DIR (kept; filled only if empty)] [--jobnetd PATH]
//! ```
//!
//! Prints one line:
//! `jobs=10000 attachments=100000 fill_secs=… startup_ms=… status_ms=… rss_mib=… hwm_mib=…`
//! (`rss_mib` is VmRSS after `status`, `hwm_mib` the peak VmHWM of the daemon.)
//! `jobnetd` is looked up next to this example's directory unless `--jobnetd` is given.

#[path = "shared/fill.rs"]
mod fill;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fill::{fill, jobnetd_path};
use jobnet_api::Client;
use jobnet_daemon::config::Config;
use jobnet_tests::fake_sysfs::FakeSysfs;

struct Args {
    jobs: usize,
    attachments: usize,
    state: Option<PathBuf>,
    jobnetd: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        jobs: 10_000,
        attachments: 100_000,
        state: None,
        jobnetd: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let val = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = || val.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--jobs" => a.jobs = num()?.max(1),
            "--attachments" => a.attachments = num()?,
            "--state" => a.state = Some(val.into()),
            "--jobnetd" => a.jobnetd = Some(val.into()),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

fn config(dir: &Path, sysfs: &Path) -> String {
    format!(
        "node = \"rss-node\"\nsocket = \"{d}/jobnetd.sock\"\nstate_dir = \"{d}/state\"\n\
         run_dir = \"{d}/run\"\nsysfs_root = \"{s}\"\nmetrics_addr = \"off\"\n\
         [[pools]]\nname = \"p\"\ncidrs = [\"10.0.0.0/8\"]\n",
        d = dir.display(),
        s = sysfs.display()
    )
}

fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("rss_bench: {e}");
            std::process::exit(2);
        }
    };
    let jobnetd = jobnetd_path(args.jobnetd);
    assert!(
        jobnetd.exists(),
        "{} not found: build it first",
        jobnetd.display()
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = args.state.clone().unwrap_or_else(|| tmp.path().to_owned());
    std::fs::create_dir_all(&dir).expect("state dir");
    let sys = FakeSysfs::new();
    sys.pf("0000:3b:00.0", "ens1f0", 8);
    let cfg_text = config(&dir, sys.path());
    let cfg_path = dir.join("jobnetd.toml");
    std::fs::write(&cfg_path, &cfg_text).expect("config");
    let cfg = Config::from_toml(&cfg_text).expect("config");

    let filled = cfg.state_dir.join(jobnet_ipam::store::DB_FILE).exists();
    let started = Instant::now();
    if !filled {
        fill(&cfg, args.jobs, args.attachments).await;
    }
    let fill_secs = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut child = Command::new(&jobnetd)
        .arg("--config")
        .arg(&cfg_path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start jobnetd");
    let client =
        Client::new(&cfg.socket).with_timeouts(Duration::from_secs(2), Duration::from_secs(120));
    let status = loop {
        match client.status().await {
            Ok(s) => break s,
            Err(_) if started.elapsed() < Duration::from_secs(300) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("jobnetd did not answer: {e}"),
        }
    };
    let startup_ms = started.elapsed().as_millis();
    let t = Instant::now();
    let again = client.status().await.expect("status");
    let status_ms = t.elapsed().as_secs_f64() * 1e3;
    let pid = child.id();
    let rss = proc_kib(pid, "VmRSS:");
    let hwm = proc_kib(pid, "VmHWM:");
    // SAFETY: plain kill(2) of our own child.
    unsafe { libc::kill(i32::try_from(pid).unwrap_or(0), libc::SIGTERM) };
    let _ = child.wait();
    assert_eq!(status.attachments, again.attachments);
    println!(
        "jobs={} attachments={} fill_secs={fill_secs:.1} startup_ms={startup_ms} status_ms={status_ms:.1} rss_mib={:.1} hwm_mib={:.1}",
        status.pools.first().map_or(0, |p| p.jobs),
        status.attachments,
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
    );
}
