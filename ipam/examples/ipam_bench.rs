//! Reserve+commit throughput and latency on the redb backend.
//!
//! `cargo run --release -p jobnet-ipam --example ipam_bench -- [--clients 1,64] [--ops 20000]
//!  [--jobs 500] [--fill-jobs 10000 --fill-attachments 100000] [--dir PATH]`
//!
//! Each allocation is one reserve and one commit, both durable. Prints one line per
//! client count: `clients=64 allocations=20000 secs=.. allocs_per_sec=.. p50_ms=.. p99_ms=..`.
//! With `--fill-*` it then records that many jobs/attachments and prints the process RSS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jobnet_ipam::{
    AttachmentKey, Ipam, Pool, PoolConfig, RailSelection, RedbStore, ReserveRequest, SystemClock,
};

struct Args {
    clients: Vec<usize>,
    ops: usize,
    jobs: usize,
    fill_jobs: usize,
    fill_attachments: usize,
    dir: Option<std::path::PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        clients: vec![1, 64],
        ops: 20_000,
        jobs: 500,
        fill_jobs: 0,
        fill_attachments: 0,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let val = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = || val.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--clients" => {
                a.clients = val
                    .split(',')
                    .map(|c| c.parse().map_err(|e| format!("--clients: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--ops" => a.ops = num()?,
            "--jobs" => a.jobs = num()?.max(1),
            "--fill-jobs" => a.fill_jobs = num()?,
            "--fill-attachments" => a.fill_attachments = num()?,
            "--dir" => a.dir = Some(val.into()),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

fn pool() -> Vec<Pool> {
    let cfg: PoolConfig = serde_json::from_value(serde_json::json!({
        "name": "bench",
        "cidrs": ["10.0.0.0/8", "fd00:be::/40"],
        "subnet_prefix": { "v4": 24, "v6": 64 },
        "isolation": { "mode": "vxlan" },
        "rails": 1,
    }))
    .expect("static pool config");
    vec![Pool::from_config(cfg).expect("static pool config is valid")]
}

/// Runs `ops` allocations from `clients` concurrent tasks; returns sorted latencies.
async fn run(
    ipam: Arc<Ipam<RedbStore>>,
    tag: &str,
    clients: usize,
    ops: usize,
    jobs: usize,
) -> (Duration, Vec<Duration>) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let ipam = Arc::clone(&ipam);
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = c;
            while i < ops {
                let req = ReserveRequest {
                    pool: "bench".into(),
                    job: format!("{tag}-job-{}", i % jobs),
                    key: AttachmentKey::new(format!("{tag}-pod-{i}"), "net1"),
                    rank: (i % 2 == 0).then_some(u32::try_from(i / jobs).unwrap_or(0)),
                    rails: RailSelection::All,
                    records: Vec::new(),
                };
                let t = Instant::now();
                let a = ipam.reserve(req).await.expect("reserve");
                ipam.commit(&a.key).await.expect("commit");
                lat.push(t.elapsed());
                i += clients;
            }
            lat
        }));
    }
    let mut all = Vec::with_capacity(ops);
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    let elapsed = start.elapsed();
    all.sort_unstable();
    (elapsed, all)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1e3
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> Result<(), String> {
    let args = parse_args()?;
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let store = RedbStore::open(&dir).map_err(|e| e.to_string())?;
        let ipam = Arc::new(Ipam::new(store, pool(), Arc::new(SystemClock)));
        for (n, &clients) in args.clients.iter().enumerate() {
            let (c0, t0) = ipam.store().commit_stats();
            let (elapsed, lat) = run(Arc::clone(&ipam), &format!("b{n}"), clients, args.ops, args.jobs).await;
            let (c1, t1) = ipam.store().commit_stats();
            let (apply, commit) = ipam.store().writer_time();
            eprintln!("writer: apply {apply:?} commit {commit:?} (cumulative)");
            println!(
                "clients={clients} allocations={} secs={:.3} allocs_per_sec={:.0} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} txns_per_commit={:.1}",
                lat.len(),
                elapsed.as_secs_f64(),
                lat.len() as f64 / elapsed.as_secs_f64(),
                pct(&lat, 0.50),
                pct(&lat, 0.99),
                pct(&lat, 1.0),
                (t1 - t0) as f64 / (c1 - c0).max(1) as f64,
            );
        }
        if args.fill_attachments > 0 {
            let jobs = args.fill_jobs.max(1);
            let t = Instant::now();
            let (_, lat) = run(Arc::clone(&ipam), "fill", 64, args.fill_attachments, jobs).await;
            let elapsed = t.elapsed();
            println!(
                "filled jobs={jobs} attachments={} secs={:.1} rss_kib={} db_bytes={}",
                lat.len(),
                elapsed.as_secs_f64(),
                rss_kib(),
                std::fs::metadata(ipam.store().path()).map(|m| m.len()).unwrap_or(0)
            );
        }
        Ok::<(), String>(())
    })
}
