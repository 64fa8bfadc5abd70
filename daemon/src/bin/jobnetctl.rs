//! jobnetctl: inspect and drive jobnetd from the command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use jobnet_api::{
    paths, ApiError, BlockingClient, ErrorCode, ForgetNodeRequest, GcRequest, PreflightRequest,
};
use jobnet_daemon::ctl;
use jobnet_daemon::ctl::topology::{render_dot, render_matrix};
use jobnet_daemon::jobcheck::render::{self, parse_duration};
use jobnet_hw::topology::TopoView;

/// Inspect job networks through the local jobnetd's API.
#[derive(Debug, Parser)]
#[command(name = "jobnetctl", version, about)]
struct Cli {
    /// jobnetd's API socket.
    #[arg(long, env = jobnet_api::SOCKET_ENV, default_value = jobnet_api::DEFAULT_SOCKET, global = true)]
    socket: PathBuf,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Daemon health, pools and free VFs.
    Status,
    /// Jobs with a network (every node's with the etcd store).
    Jobs,
    /// One job: show its members or print a host file.
    Job {
        #[command(subcommand)]
        cmd: JobCmd,
    },
    /// VFs and who owns them.
    Vfs,
    /// Every recorded attachment.
    Attachments,
    /// Nodes of the cluster store: alive, or stale (jobnetd gone, records kept).
    Nodes,
    /// Act on a node of the cluster store.
    Node {
        #[command(subcommand)]
        cmd: NodeCmd,
    },
    /// The node's GPU/NIC matrix (`nvidia-smi topo -m` style) with the NIC legend.
    Topo {
        /// Print a Graphviz picture of the PCI tree instead.
        #[arg(long)]
        dot: bool,
    },
    /// RDMA devices from sysfs and live port data through libibverbs (read
    /// locally; jobnetd need not run).
    Rdma {
        /// Sysfs root to read (default `$JOBNET_SYSFS_ROOT` or `/sys`).
        #[arg(long)]
        sysfs_root: Option<PathBuf>,
    },
    /// Release attachments not listed as valid (`container/ifname`, repeatable).
    Gc {
        /// An attachment still in use, as `containerID/ifname`.
        #[arg(long = "keep", value_name = "CONTAINER/IFNAME")]
        keep: Vec<String>,
        /// Only consider attachments of this CNI network.
        #[arg(long)]
        network: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum NodeCmd {
    /// Release every attachment a node that will not return holds (addresses,
    /// ranks, VF records) and drop it from the store. Refused for a node whose
    /// jobnetd is alive unless --force.
    Forget {
        /// Node name, as `jobnetctl nodes` lists it.
        node: String,
        /// Forget it even though its jobnetd is alive.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
enum JobCmd {
    /// Ranks, nodes, addresses and VFs of a job.
    Show {
        /// Job name.
        job: String,
    },
    /// One line per rank with its address, rank-ordered (MPI / torchrun).
    Hostfile {
        /// Job name.
        job: String,
        /// Rail whose address is printed.
        #[arg(long, default_value_t = 0)]
        rail: u32,
        /// `mpi`: `ADDR slots=N`; `plain`: `ADDR`.
        #[arg(long, default_value = "mpi")]
        format: ctl::HostfileFormat,
        /// Slots per host in the MPI format.
        #[arg(long, default_value_t = 1)]
        slots: u32,
    },
    /// The NCCL environment (`nccl.env`) of one rank on this node.
    Env {
        /// Job name.
        job: String,
        /// The rank.
        #[arg(long)]
        rank: u32,
    },
    /// Wait until ranks 0..N are attached on every rail, cluster-wide; exit 1
    /// at the timeout, naming the missing ranks and rails.
    Wait {
        /// Job name.
        job: String,
        /// How many ranks the job has.
        #[arg(long)]
        ranks: u32,
        /// How long to wait (`300s`, `5m`, `1500ms`).
        #[arg(long, default_value = "300s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Check the job's network end to end from inside every rank's pod
    /// (reachability, MTU, duplicate addresses, isolation, round trips);
    /// exit 1 when a check fails.
    Preflight {
        /// Job name.
        job: String,
        /// Deadline of the whole run (`60s`, `2m`).
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        timeout: Duration,
        /// Ranks 0..N must be attached (default: the ranks recorded now).
        #[arg(long)]
        ranks: Option<u32>,
        /// Timed echo requests per pair.
        #[arg(long)]
        samples: Option<u32>,
    },
}

/// Why jobnetctl exits 1: the API failed, or it answered "not ready".
enum Failure {
    Api(ApiError),
    /// What to print before exiting 1.
    NotReady(String),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(Failure::NotReady(out)) => {
            print!("{out}");
            ExitCode::FAILURE
        }
        Err(Failure::Api(e)) => {
            eprintln!("jobnetctl: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `out` as the answer when `ok`, else as the reason to exit 1.
fn verdict(ok: bool, out: String) -> Result<String, Failure> {
    if ok {
        Ok(out)
    } else {
        Err(Failure::NotReady(out))
    }
}

fn run(cli: &Cli) -> Result<String, Failure> {
    // Only the commands that talk to jobnetd connect.
    let client = || BlockingClient::new(&cli.socket);
    Ok(match &cli.cmd {
        Cmd::Rdma { sysfs_root } => {
            let root = sysfs_root
                .clone()
                .map_or_else(jobnet_hw::SysfsRoot::from_env, jobnet_hw::SysfsRoot::new);
            let view = jobnet_daemon::rdma_view::RdmaView::read(&root);
            if cli.json {
                json(&view.to_json())
            } else {
                view.render()
            }
        }
        Cmd::Status => {
            let s = client()?.status()?;
            if cli.json {
                json(&s)
            } else {
                ctl::status_table(&s)
            }
        }
        Cmd::Jobs => {
            let j = client()?.jobs()?;
            if cli.json {
                json(&j)
            } else {
                ctl::jobs_table(&j)
            }
        }
        Cmd::Job {
            cmd: JobCmd::Show { job },
        } => {
            let d = client()?.job(job)?;
            if cli.json {
                json(&d)
            } else {
                ctl::job_table(&d)
            }
        }
        Cmd::Job {
            cmd:
                JobCmd::Hostfile {
                    job,
                    rail,
                    format,
                    slots,
                },
        } => {
            let d = client()?.job(job)?;
            ctl::hostfile(&d, *rail, *format, *slots)?
        }
        Cmd::Job {
            cmd: JobCmd::Env { job, rank },
        } => {
            let d = client()?.job(job)?;
            let m = ctl::rank_member(&d, *rank)?;
            let node = client()?.status()?.node;
            if m.node != node {
                return Err(ApiError::new(
                    ErrorCode::NotFound,
                    format!(
                        "rank {rank} of job {job:?} is on node {}; ask that node's jobnetd",
                        m.node
                    ),
                )
                .into());
            }
            let h = client()?.hints(&m.key)?;
            if cli.json {
                json(&h)
            } else {
                h.nccl_env
            }
        }
        Cmd::Job {
            cmd:
                JobCmd::Wait {
                    job,
                    ranks,
                    timeout,
                },
        } => {
            let w = client()?.job_wait(job, *ranks, *timeout)?;
            let out = if cli.json {
                json(&w)
            } else {
                render::wait_text(&w)
            };
            verdict(w.ready, out)?
        }
        Cmd::Job {
            cmd:
                JobCmd::Preflight {
                    job,
                    timeout,
                    ranks,
                    samples,
                },
        } => {
            let req = PreflightRequest {
                timeout_ms: Some(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)),
                samples: *samples,
                ranks: *ranks,
            };
            let r = client()?.preflight(job, &req)?;
            let out = if cli.json {
                json(&r)
            } else {
                render::preflight_text(&r)
            };
            verdict(r.ok, out)?
        }
        Cmd::Topo { dot } => {
            let v: TopoView = client()?.get_json(paths::TOPOLOGY)?;
            if *dot {
                render_dot(&v)
            } else if cli.json {
                json(&v)
            } else {
                render_matrix(&v)
            }
        }
        Cmd::Vfs => {
            let v = client()?.vfs()?;
            if cli.json {
                json(&v)
            } else {
                ctl::vfs_table(&v)
            }
        }
        Cmd::Attachments => {
            let a = client()?.attachments()?;
            if cli.json {
                json(&a)
            } else {
                ctl::attachments_table(&a)
            }
        }
        Cmd::Nodes => {
            let n = client()?.nodes()?;
            if cli.json {
                json(&n)
            } else {
                ctl::nodes_table(&n)
            }
        }
        Cmd::Node {
            cmd: NodeCmd::Forget { node, force },
        } => {
            let r = client()?.forget_node(&ForgetNodeRequest {
                node: node.clone(),
                force: *force,
            })?;
            if cli.json {
                json(&r)
            } else {
                ctl::forget_text(&r)
            }
        }
        Cmd::Gc { keep, network } => {
            let valid = keep
                .iter()
                .map(|k| ctl::parse_key(k))
                .collect::<Result<Vec<_>, _>>()?;
            let r = client()?.gc(&GcRequest {
                valid,
                network: network.clone(),
            })?;
            if cli.json {
                json(&r)
            } else {
                ctl::gc_text(&r)
            }
        }
    })
}

/// Pretty JSON of an answer, newline-terminated.
fn json<T: serde::Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{e}"));
    s.push('\n');
    s
}
