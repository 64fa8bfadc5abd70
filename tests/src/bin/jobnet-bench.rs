//! ADD/DEL latency of the `jobnet` plugin against Debian's reference
//! `host-device` plugin (with `static` IPAM) and against the bare kernel work
//! done with `ip -batch`, all moving the same kind of veth VF of a simulated
//! fabric in one run; plus the same plugin with its addresses from jobnetd
//! (no IPAM process), and the wall time of N parallel ADDs.
//!
//! Run through `scripts/bench.sh`; needs root.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use jobnet_tests::fabric::{Fabric, FabricSpec};
use jobnet_tests::harness::Daemon;

#[derive(Parser, Debug)]
#[command(about = "ADD/DEL latency: jobnet vs host-device+static vs ip -batch")]
struct Args {
    /// ADD+DEL cycles per variant.
    #[arg(long, default_value_t = 100)]
    cycles: usize,
    /// ADDs run at once for the parallel figure.
    #[arg(long, default_value_t = 32)]
    parallel: usize,
    /// The jobnet binary to measure.
    #[arg(long, default_value = "target/release/jobnet")]
    jobnet: PathBuf,
    /// The jobnetd binary for the daemon-backed variant.
    #[arg(long, default_value = "target/release/jobnetd")]
    jobnetd: PathBuf,
    /// Where the reference plugins live.
    #[arg(long, default_value = "/usr/lib/cni")]
    cni_path: PathBuf,
    /// After the timed cycles, this many more cycles of each jobnet mode
    /// with `JOBNET_TIMINGS=1`, printing the median of every phase (kept
    /// apart so that the logging does not touch the figures above).
    #[arg(long, default_value_t = 0)]
    timings: usize,
}

/// Latency samples of one operation.
#[derive(Default)]
struct Samples(Vec<Duration>);

impl Samples {
    fn push(&mut self, d: Duration) {
        self.0.push(d);
    }
    fn quantile(&self, q: f64) -> f64 {
        let mut v: Vec<f64> = self.0.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        if v.is_empty() {
            return f64::NAN;
        }
        let i = ((v.len() - 1) as f64 * q).round() as usize;
        v[i.min(v.len() - 1)]
    }
    fn row(&self, name: &str) -> String {
        format!(
            "{name:<34} {:>8.2} {:>8.2} {:>8.2}",
            self.quantile(0.5),
            self.quantile(0.9),
            self.quantile(1.0)
        )
    }
}

/// Per-phase microseconds of one jobnet mode and verb, from the plugin's
/// `timings verb=... total_us=... phase=us ...` lines, phases in the order
/// they first appeared.
#[derive(Default)]
struct Phases(Vec<(String, Vec<u64>)>);

impl Phases {
    /// Adds the timings line in `stderr` for `verb`, and the run's wall
    /// time as seen from here (process start and exit included) as
    /// `wall_us`; false when there is no such line.
    fn add(&mut self, verb: &str, wall: Duration, stderr: &str) -> bool {
        let Some(line) = stderr
            .lines()
            .filter_map(|l| l.split_once("timings ").map(|(_, t)| t))
            .find(|t| t.starts_with(&format!("verb={verb} ")))
        else {
            return false;
        };
        let wall = format!("wall_us={}", wall.as_micros());
        for (k, v) in std::iter::once(wall.as_str())
            .chain(line.split_whitespace())
            .filter_map(|kv| kv.split_once('='))
        {
            let Ok(us) = v.parse::<u64>() else { continue };
            match self.0.iter_mut().find(|(n, _)| n == k) {
                Some((_, all)) => all.push(us),
                None => self.0.push((k.to_owned(), vec![us])),
            }
        }
        true
    }

    /// One line per phase: its median and p90 in microseconds, and the
    /// share of the median total. A phase a run skipped counts as 0 there.
    fn print(&self, title: &str, runs: usize) {
        let median_of = |v: &[u64], q: f64| {
            let mut v: Vec<u64> = v.to_vec();
            v.resize(runs.max(v.len()), 0);
            v.sort_unstable();
            let i = ((v.len().saturating_sub(1)) as f64 * q).round() as usize;
            v.get(i).copied().unwrap_or(0)
        };
        let total = self
            .0
            .iter()
            .find(|(n, _)| n == "total_us")
            .map_or(0, |(_, v)| median_of(v, 0.5));
        println!(
            "{title} ({runs} runs, us)  {:>8} {:>8} {:>6}",
            "median", "p90", "share"
        );
        for (name, v) in &self.0 {
            let m = median_of(v, 0.5);
            println!(
                "  {name:<28} {m:>8} {:>8} {:>5.1}%",
                median_of(v, 0.9),
                100.0 * m as f64 / total.max(1) as f64
            );
        }
    }
}

/// One figure against its baseline from the same run.
struct Target<'a> {
    figure: &'a str,
    ours: f64,
    baseline_name: &'a str,
    baseline: f64,
    max_ratio: f64,
}

fn print_targets(targets: &[Target]) {
    println!(
        "{:<44} {:>9} {:>34} {:>9} {:>7} {:>8} {:>4}",
        "target figure", "ms", "baseline", "ms", "ratio", "target", "met"
    );
    for t in targets {
        let ratio = t.ours / t.baseline;
        println!(
            "{:<44} {:>9.2} {:>34} {:>9.2} {:>6.2}x {:>7}x {:>4}",
            t.figure,
            t.ours,
            t.baseline_name,
            t.baseline,
            ratio,
            format!("<={:.2}", t.max_ratio),
            if ratio <= t.max_ratio { "yes" } else { "no" }
        );
    }
}

/// A pod netns made with `ip netns add`, removed on drop.
struct PodNetns(String);

impl PodNetns {
    fn new(name: String) -> Result<Self, String> {
        run_ip(&["netns", "add", &name], None)?;
        Ok(Self(name))
    }
    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}

impl Drop for PodNetns {
    fn drop(&mut self) {
        let _ = run_ip(&["netns", "del", &self.0], None);
    }
}

fn run_ip(args: &[&str], batch: Option<&str>) -> Result<(), String> {
    let mut cmd = Command::new("ip");
    cmd.args(args)
        .stdin(if batch.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("ip: {e}"))?;
    if let (Some(b), Some(mut stdin)) = (batch, child.stdin.take()) {
        stdin
            .write_all(b.as_bytes())
            .map_err(|e| format!("ip stdin: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// One CNI plugin invocation.
struct Plugin<'a> {
    binary: &'a Path,
    cni_path: &'a Path,
    env: Vec<(String, String)>,
}

impl Plugin<'_> {
    fn spawn(
        &self,
        cmd: &str,
        cid: &str,
        netns: &str,
        conf: &str,
    ) -> Result<std::process::Child, String> {
        let mut child = Command::new(self.binary)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", cid)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "net1")
            .env("CNI_PATH", self.cni_path)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", self.binary.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(conf.as_bytes())
                .map_err(|e| format!("stdin: {e}"))?;
        }
        Ok(child)
    }

    fn run(&self, cmd: &str, cid: &str, netns: &str, conf: &str) -> Result<Duration, String> {
        self.run_logged(cmd, cid, netns, conf).map(|(took, _)| took)
    }

    /// [`Plugin::run`], also returning what the plugin logged to stderr.
    fn run_logged(
        &self,
        cmd: &str,
        cid: &str,
        netns: &str,
        conf: &str,
    ) -> Result<(Duration, String), String> {
        let start = Instant::now();
        let out = self
            .spawn(cmd, cid, netns, conf)?
            .wait_with_output()
            .map_err(|e| e.to_string())?;
        let took = start.elapsed();
        if out.status.success() {
            Ok((took, String::from_utf8_lossy(&out.stderr).into_owned()))
        } else {
            Err(format!(
                "{} {cmd}: {}{}",
                self.binary.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

fn static_ipam(addr: &str) -> String {
    format!(r#"{{"type":"static","addresses":[{{"address":"{addr}"}}]}}"#)
}

fn jobnet_conf(pci: &str, addr: &str) -> String {
    format!(
        r#"{{"cniVersion":"1.0.0","name":"bench","type":"jobnet","deviceID":"{pci}","ipam":{}}}"#,
        static_ipam(addr)
    )
}

fn host_device_conf(netdev: &str, addr: &str) -> String {
    format!(
        r#"{{"cniVersion":"1.0.0","name":"bench","type":"host-device","device":"{netdev}","ipam":{}}}"#,
        static_ipam(addr)
    )
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("jobnet-bench: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    let vfs = args.parallel.max(1);
    let fabric = Fabric::build(FabricSpec {
        nodes: 1,
        nics_per_node: 1,
        vfs_per_nic: vfs,
        ..FabricSpec::default()
    })
    .map_err(|e| e.to_string())?;
    let node = fabric.node(0).ok_or("fabric has no node")?;
    let node_ns_path = node.netns_path();
    let node_ns_name = node.netns.clone().ok_or("node has no netns name")?;
    let sysfs = node.sysfs().path().to_owned();
    let state = tempfile::tempdir().map_err(|e| e.to_string())?;

    // Every plugin and `ip` process below is spawned from this thread and
    // so runs in the node netns, as a runtime on that node would run them.
    let node_ns = std::fs::File::open(&node_ns_path).map_err(|e| e.to_string())?;
    nix::sched::setns(&node_ns, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("setns into node: {e}"))?;

    let tag = std::process::id();
    let pods: Vec<PodNetns> = (0..vfs)
        .map(|i| PodNetns::new(format!("jbp{tag}-{i}")))
        .collect::<Result<_, _>>()?;
    let vf_list = fabric.vfs();
    let jobnet = Plugin {
        binary: &args.jobnet,
        cni_path: &args.cni_path,
        env: vec![
            ("JOBNET_SYSFS_ROOT".into(), sysfs.display().to_string()),
            (
                "JOBNET_STATE_DIR".into(),
                state.path().display().to_string(),
            ),
        ],
    };
    let host_device_bin = args.cni_path.join("host-device");
    let host_device = Plugin {
        binary: &host_device_bin,
        cni_path: &args.cni_path,
        env: vec![],
    };

    let vf = vf_list.first().ok_or("fabric has no VF")?;
    let pod = &pods[0];
    let (pci, netdev) = (
        vf.pci.to_string(),
        vf.netdev.clone().ok_or("VF 0 has no netdev")?,
    );
    let addr = "192.0.2.5/24";
    let jconf = jobnet_conf(&pci, addr);
    let hconf = host_device_conf(&netdev, addr);
    let add_batch = format!(
        "link set dev {netdev} down\nlink set dev {netdev} netns {} name net1\n",
        pod.0
    );
    let pod_up_batch = format!("addr add {addr} dev net1\nlink set dev net1 up\n");
    let del_batch =
        format!("link set dev net1 down\nlink set dev net1 netns {node_ns_name} name {netdev}\n");

    // The same plugin with addresses from jobnetd instead of an IPAM exec.
    let daemon = Daemon::start_binary(
        &args.jobnetd,
        "bench",
        &sysfs,
        "[[pools]]\nname = \"bench\"\ncidrs = [\"198.18.0.0/16\"]\nisolation = { mode = \"none\" }\n",
    );
    let dconf = format!(
        r#"{{"cniVersion":"1.0.0","name":"bench","type":"jobnet","deviceID":"{pci}","daemonSocket":"{}"}}"#,
        daemon.socket.display()
    );
    let mut s: [Samples; 15] = Default::default();
    // Warm caches (binaries, page cache) before measuring.
    for _ in 0..3 {
        jobnet.run("ADD", "warm", &pod.path(), &jconf)?;
        jobnet.run("DEL", "warm", &pod.path(), &jconf)?;
    }
    // Interleave the variants so that background noise hits all alike.
    for i in 0..args.cycles {
        let cid = format!("bench{i}");
        let a = jobnet.run("ADD", &cid, &pod.path(), &jconf)?;
        let d = jobnet.run("DEL", &cid, &pod.path(), &jconf)?;
        s[0].push(a);
        s[1].push(d);
        s[2].push(a + d);

        let a = host_device.run("ADD", &cid, &pod.path(), &hconf)?;
        let d = host_device.run("DEL", &cid, &pod.path(), &hconf)?;
        s[3].push(a);
        s[4].push(d);
        s[5].push(a + d);

        let start = Instant::now();
        run_ip(&["-batch", "-"], Some(&add_batch))?;
        run_ip(&["-n", &pod.0, "-batch", "-"], Some(&pod_up_batch))?;
        let a = start.elapsed();
        let start = Instant::now();
        run_ip(&["-n", &pod.0, "-batch", "-"], Some(&del_batch))?;
        let d = start.elapsed();
        s[6].push(a);
        s[7].push(d);
        s[8].push(a + d);

        // The bare kernel work plus the same IPAM call the plugins make:
        // what is left between this and jobnet is jobnet's own cost.
        let static_bin = args.cni_path.join("static");
        let ipam_only = Plugin {
            binary: &static_bin,
            cni_path: &args.cni_path,
            env: vec![],
        };
        let sconf = format!(
            r#"{{"cniVersion":"1.0.0","name":"bench","type":"jobnet","ipam":{}}}"#,
            static_ipam(addr)
        );
        let start = Instant::now();
        ipam_only.run("ADD", &cid, &pod.path(), &sconf)?;
        run_ip(&["-batch", "-"], Some(&add_batch))?;
        run_ip(&["-n", &pod.0, "-batch", "-"], Some(&pod_up_batch))?;
        let a = start.elapsed();
        let start = Instant::now();
        run_ip(&["-n", &pod.0, "-batch", "-"], Some(&del_batch))?;
        ipam_only.run("DEL", &cid, &pod.path(), &sconf)?;
        let d = start.elapsed();
        s[12].push(a);
        s[13].push(d);
        s[14].push(a + d);

        let a = jobnet.run("ADD", &cid, &pod.path(), &dconf)?;
        let d = jobnet.run("DEL", &cid, &pod.path(), &dconf)?;
        s[9].push(a);
        s[10].push(d);
        s[11].push(a + d);
    }

    println!(
        "ADD/DEL latency, {} cycles each, one veth VF, static IPAM (ms)",
        args.cycles
    );
    println!("{:<34} {:>8} {:>8} {:>8}", "", "median", "p90", "max");
    let names = [
        "jobnet static IPAM ADD",
        "jobnet static IPAM DEL",
        "jobnet static IPAM ADD+DEL",
        "host-device+static ADD",
        "host-device+static DEL",
        "host-device+static ADD+DEL",
        "ip -batch ADD (bare kernel work)",
        "ip -batch DEL (bare kernel work)",
        "ip -batch ADD+DEL",
        "jobnet+jobnetd ADD",
        "jobnet+jobnetd DEL",
        "jobnet+jobnetd ADD+DEL",
        "ip -batch + static IPAM ADD",
        "ip -batch + static IPAM DEL",
        "ip -batch + static IPAM ADD+DEL",
    ];
    for (samples, name) in s.iter().zip(names) {
        println!("{}", samples.row(name));
    }
    let jc = s[2].quantile(0.5);
    println!(
        "jobnet (static IPAM) cycle median / (ip -batch + the same static IPAM call): {:.2}x",
        jc / s[14].quantile(0.5)
    );

    if args.timings > 0 {
        // The same two modes again, each run logging its phases.
        let mut timed = Plugin {
            binary: jobnet.binary,
            cni_path: jobnet.cni_path,
            env: jobnet.env.clone(),
        };
        timed.env.push(("JOBNET_TIMINGS".into(), "1".into()));
        let modes = [("jobnet+jobnetd", &dconf), ("jobnet static IPAM", &jconf)];
        let mut phases: Vec<Phases> = (0..4).map(|_| Phases::default()).collect();
        for i in 0..args.timings {
            let cid = format!("timed{i}");
            for (m, (_, conf)) in modes.iter().enumerate() {
                for (v, verb) in ["ADD", "DEL"].into_iter().enumerate() {
                    let (wall, log) = timed.run_logged(verb, &cid, &pod.path(), conf)?;
                    if !phases[2 * m + v].add(verb, wall, &log) {
                        return Err(format!("no timings line from {verb}: {log}"));
                    }
                }
            }
        }
        for (m, (name, _)) in modes.iter().enumerate() {
            for (v, verb) in ["ADD", "DEL"].into_iter().enumerate() {
                phases[2 * m + v].print(&format!("{name} {verb} phases"), args.timings);
            }
        }
    }

    // N parallel ADDs on N distinct VFs, then N parallel DELs.
    let parallel = |plugin: &Plugin,
                    conf_of: &dyn Fn(usize) -> Result<String, String>,
                    cmd: &str|
     -> Result<Duration, String> {
        let start = Instant::now();
        let children: Vec<_> = (0..vfs)
            .map(|i| plugin.spawn(cmd, &format!("par{i}"), &pods[i].path(), &conf_of(i)?))
            .collect::<Result<_, _>>()?;
        for c in children {
            let out = c.wait_with_output().map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!(
                    "parallel {cmd}: {}",
                    String::from_utf8_lossy(&out.stdout)
                ));
            }
        }
        Ok(start.elapsed())
    };
    let addr_of = |i: usize| format!("192.0.2.{}/24", 10 + i);
    let pci_of = |i: usize| -> Result<String, String> {
        Ok(vf_list.get(i).ok_or("missing VF")?.pci.to_string())
    };
    let netdev_of = |i: usize| -> Result<String, String> {
        vf_list
            .get(i)
            .and_then(|v| v.netdev.clone())
            .ok_or_else(|| "missing VF netdev".to_owned())
    };
    let jconf_of =
        |i: usize| -> Result<String, String> { Ok(jobnet_conf(&pci_of(i)?, &addr_of(i))) };
    let dconf_of = |i: usize| -> Result<String, String> {
        Ok(format!(
            r#"{{"cniVersion":"1.0.0","name":"bench","type":"jobnet","deviceID":"{}","daemonSocket":"{}"}}"#,
            pci_of(i)?,
            daemon.socket.display()
        ))
    };
    let hconf_of =
        |i: usize| -> Result<String, String> { Ok(host_device_conf(&netdev_of(i)?, &addr_of(i))) };
    // The floor: the N moves alone, serialized by the kernel in one process.
    let moves_in: String = (0..vfs)
        .map(|i| {
            Ok(format!(
                "link set dev {} netns {} name net1\n",
                netdev_of(i)?,
                pods[i].0
            ))
        })
        .collect::<Result<_, String>>()?;
    let start = Instant::now();
    run_ip(&["-batch", "-"], Some(&moves_in))?;
    let floor = start.elapsed();
    for (i, p) in pods.iter().enumerate() {
        let back = format!(
            "link set dev net1 netns {node_ns_name} name {}\n",
            netdev_of(i)?
        );
        run_ip(&["-n", &p.0, "-batch", "-"], Some(&back))?;
    }
    let d_add = parallel(&jobnet, &dconf_of, "ADD")?;
    let d_del = parallel(&jobnet, &dconf_of, "DEL")?;
    let j_add = parallel(&jobnet, &jconf_of, "ADD")?;
    let j_del = parallel(&jobnet, &jconf_of, "DEL")?;
    let h_add = parallel(&host_device, &hconf_of, "ADD")?;
    let h_del = parallel(&host_device, &hconf_of, "DEL")?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{vfs} parallel ADDs (wall): jobnet+jobnetd {:.1} ms, jobnet static IPAM {:.1} ms, host-device {:.1} ms; {vfs} moves in one ip -batch {:.1} ms",
        ms(d_add),
        ms(j_add),
        ms(h_add),
        ms(floor)
    );
    println!(
        "{vfs} parallel DELs (wall): jobnet+jobnetd {:.1} ms, jobnet static IPAM {:.1} ms, host-device {:.1} ms",
        ms(d_del),
        ms(j_del),
        ms(h_del)
    );
    let median = |i: usize| s[i].quantile(0.5);
    let par_figure = format!("{vfs} parallel ADDs, jobnet+jobnetd (wall)");
    let par_floor = format!("{vfs} moves in one ip -batch");
    print_targets(&[
        Target {
            figure: "job network (jobnetd) ADD+DEL",
            ours: median(11),
            baseline_name: "host-device+static ADD+DEL",
            baseline: median(5),
            max_ratio: 0.90,
        },
        Target {
            figure: "delegated IPAM (static) ADD+DEL",
            ours: median(2),
            baseline_name: "host-device+static ADD+DEL",
            baseline: median(5),
            max_ratio: 1.00,
        },
        Target {
            figure: "delegated IPAM (static) DEL",
            ours: median(1),
            baseline_name: "host-device+static DEL",
            baseline: median(4),
            max_ratio: 1.00,
        },
        Target {
            figure: "jobnet+jobnetd ADD+DEL",
            ours: median(11),
            baseline_name: "ip -batch ADD+DEL",
            baseline: median(8),
            max_ratio: 1.00,
        },
        Target {
            figure: &par_figure,
            ours: ms(d_add),
            baseline_name: &par_floor,
            baseline: ms(floor),
            max_ratio: 1.15,
        },
    ]);
    drop(pods);
    fabric.teardown().map_err(|e| e.to_string())
}
