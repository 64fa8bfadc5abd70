//! Probing one rank's rail from inside its pod's netns. Runs on a thread
//! that entered the netns (never on an async worker) and touches nothing
//! but its own sockets: ARP probes for the rank's own address (duplicates)
//! and for one other job's pod on the node (isolation), then echo requests
//! to the job's other ranks (reachability, timing) and one don't-fragment
//! request of the job's MTU to each of them.

pub mod arp;
mod echo;
pub mod icmp;
pub mod iface;
mod stats;
mod sys;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jobnet_api::{PairRtt, PreflightCheck};

use self::echo::{Sequencer, Silence, SMALL};
use self::icmp::EchoSocket;
use self::iface::{mac_text, IfaceFacts};
pub use self::sys::random_u64;

/// Resend interval of silent peers.
const RESEND: Duration = Duration::from_millis(300);
/// Longest wait for one timed reply.
const TIMED_WAIT: Duration = Duration::from_millis(200);
/// Longest the timed round trips of one rail may take: they are numbers to
/// report, not a check, and must not eat the budget of the checks.
const TIMED_MAX: Duration = Duration::from_secs(3);
/// ARP probes per target, and their spacing.
const ARP_PROBES: u32 = 3;
const ARP_SPACING: Duration = Duration::from_millis(100);

/// Another rank of the job on this rail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Its rank.
    pub rank: u32,
    /// Its IPv4 address on the rail.
    pub addr: Ipv4Addr,
}

/// Another job's pod on the same node, for the isolation probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignPod {
    /// Its job.
    pub job: String,
    /// Its IPv4 address on this rail.
    pub addr: Ipv4Addr,
}

/// What to probe from one rank's interface on one rail.
#[derive(Debug, Clone)]
pub struct RailProbe {
    /// The probing rank.
    pub rank: u32,
    /// The rail.
    pub rail: u32,
    /// Its interface in the pod.
    pub ifname: String,
    /// Its IPv4 address on the rail.
    pub addr: Ipv4Addr,
    /// The MTU the pool gives the job, if it sets one.
    pub job_mtu: Option<u32>,
    /// Ranks to probe.
    pub peers: Vec<Peer>,
    /// The isolation probe's target, if the node has another job's pod.
    pub foreign: Option<ForeignPod>,
    /// Timed requests per peer.
    pub samples: u32,
    /// When everything must be done.
    pub deadline: Instant,
    /// Set when jobnetd stops: every phase ends at once.
    pub stop: Arc<AtomicBool>,
}

/// One failed check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The probed rank, for checks of a pair.
    pub to_rank: Option<u32>,
    /// Which check.
    pub check: PreflightCheck,
    /// What was seen.
    pub detail: String,
    /// The MAC that answered for the rank's address (duplicate address).
    pub other_mac: Option<String>,
}

/// What probing one rail of one rank found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RailOutcome {
    /// The probing rank.
    pub rank: u32,
    /// The rail.
    pub rail: u32,
    /// The interface's MTU, when it was found.
    pub mtu: Option<u32>,
    /// The interface's MAC, when it was found.
    pub mac: Option<String>,
    /// Failed checks.
    pub findings: Vec<Finding>,
    /// Round trips per probed peer.
    pub rtt: Vec<PairRtt>,
    /// Peers probed (or that could not be).
    pub pairs: u32,
    /// Whether the isolation probe ran.
    pub isolation_probed: bool,
}

impl RailOutcome {
    /// The outcome of `p` before anything ran: no findings yet.
    pub fn new(p: &RailProbe) -> Self {
        Self {
            rank: p.rank,
            rail: p.rail,
            mtu: None,
            mac: None,
            findings: Vec::new(),
            rtt: Vec::new(),
            pairs: u32::try_from(p.peers.len()).unwrap_or(u32::MAX),
            isolation_probed: false,
        }
    }

    fn fail(&mut self, to_rank: Option<u32>, check: PreflightCheck, detail: String) {
        self.findings.push(Finding {
            to_rank,
            check,
            detail,
            other_mac: None,
        });
    }

    /// Every pair fails for one reason found on this side.
    fn fail_all_pairs(&mut self, p: &RailProbe, why: &str) {
        for peer in &p.peers {
            self.fail(
                Some(peer.rank),
                PreflightCheck::Reachability,
                format!("not probed: {why}"),
            );
        }
    }
}

/// Probes one rail of one rank; call it on a thread inside the pod's netns.
pub fn run(p: &RailProbe) -> RailOutcome {
    let mut out = RailOutcome::new(p);
    let facts = match iface::read(&p.ifname) {
        Ok(Some(f)) => f,
        Ok(None) => {
            let why = format!("{} is not in the pod's netns", p.ifname);
            out.fail(None, PreflightCheck::Link, why.clone());
            out.fail_all_pairs(p, &why);
            return out;
        }
        Err(e) => {
            let why = format!("reading {}: {e}", p.ifname);
            out.fail(None, PreflightCheck::Link, why.clone());
            out.fail_all_pairs(p, &why);
            return out;
        }
    };
    out.mtu = Some(facts.mtu);
    out.mac = Some(mac_text(&facts.mac));
    let down = match (facts.up, facts.running) {
        (false, _) => Some(format!("{} is down", p.ifname)),
        (true, false) => Some(format!("{} has no carrier", p.ifname)),
        _ => None,
    };
    if let Some(why) = down {
        out.fail(None, PreflightCheck::Link, why.clone());
        out.fail_all_pairs(p, &why);
        return out;
    }
    let total = p.deadline.saturating_duration_since(Instant::now());
    arp_checks(p, &facts, total, &mut out);
    echo_checks(p, &facts, total, &mut out);
    out
}

/// Duplicate address and isolation, by ARP probes.
fn arp_checks(p: &RailProbe, facts: &IfaceFacts, total: Duration, out: &mut RailOutcome) {
    let sock = match arp::ArpSocket::open(facts.index, facts.mac) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(ifname = %p.ifname, error = %e, "no ARP socket: duplicate and isolation checks skipped");
            return;
        }
    };
    let listen = (ARP_SPACING * (ARP_PROBES + 1)).min(total / 8);
    let until = Instant::now() + listen;
    let mut next_probe = Instant::now();
    let mut probes = 0;
    let mut duplicate: Option<[u8; 6]> = None;
    let mut leak: Option<[u8; 6]> = None;
    while Instant::now() < until && !p.stop.load(Ordering::Relaxed) {
        if probes < ARP_PROBES && Instant::now() >= next_probe {
            probes += 1;
            next_probe += ARP_SPACING;
            let sent = sock.probe(p.addr).and_then(|()| match &p.foreign {
                Some(f) => sock.probe(f.addr),
                None => Ok(()),
            });
            if let Err(e) = sent {
                tracing::debug!(ifname = %p.ifname, error = %e, "ARP probe not sent");
            }
            out.isolation_probed = p.foreign.is_some();
        }
        match sock.recv(next_probe.min(until)) {
            Ok(Some(seen)) if seen.spa == p.addr => duplicate = duplicate.or(Some(seen.sha)),
            Ok(Some(seen)) if p.foreign.as_ref().is_some_and(|f| f.addr == seen.spa) => {
                leak = leak.or(Some(seen.sha));
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(ifname = %p.ifname, error = %e, "ARP receive failed");
                break;
            }
        }
    }
    if let Some(mac) = duplicate {
        let mac = mac_text(&mac);
        out.findings.push(Finding {
            to_rank: None,
            check: PreflightCheck::DuplicateAddress,
            detail: format!("{} is also answered by {mac}", p.addr),
            other_mac: Some(mac),
        });
    }
    if let (Some(mac), Some(f)) = (leak, &p.foreign) {
        out.fail(
            None,
            PreflightCheck::Isolation,
            format!(
                "{} of job {:?} on the same node answered an ARP probe on {} (from {})",
                f.addr,
                f.job,
                p.ifname,
                mac_text(&mac)
            ),
        );
    }
}

/// Reachability, timing and MTU, by echo requests.
fn echo_checks(p: &RailProbe, facts: &IfaceFacts, total: Duration, out: &mut RailOutcome) {
    if p.peers.is_empty() {
        return;
    }
    let mut sock = match EchoSocket::open(&p.ifname) {
        Ok(s) => s,
        Err(e) => {
            out.fail_all_pairs(p, &format!("no ICMP socket on {}: {e}", p.ifname));
            return;
        }
    };
    let mut seq = Sequencer::default();
    let addrs: Vec<Ipv4Addr> = p.peers.iter().map(|x| x.addr).collect();
    let mtu_window = (total / 6).min(Duration::from_secs(2));
    let reach_window = (total * 2 / 5).min(Duration::from_secs(4));
    let reach = echo::burst(
        &mut sock,
        &mut seq,
        &addrs,
        SMALL,
        RESEND,
        (Instant::now() + reach_window, &p.stop),
    );
    let mut alive = Vec::new();
    for (peer, r) in p.peers.iter().zip(reach) {
        match r {
            Ok(_) => alive.push(*peer),
            Err(Silence::SendFailed(e)) => out.fail(
                Some(peer.rank),
                PreflightCheck::Reachability,
                format!("cannot send to {}: {e}", peer.addr),
            ),
            Err(Silence::NoReply { tries }) => out.fail(
                Some(peer.rank),
                PreflightCheck::Reachability,
                format!(
                    "no echo reply from {} in {:.1} s ({tries} requests)",
                    peer.addr,
                    reach_window.as_secs_f64()
                ),
            ),
        }
    }
    let alive_addrs: Vec<Ipv4Addr> = alive.iter().map(|x| x.addr).collect();
    let timed_until = p
        .deadline
        .checked_sub(mtu_window)
        .unwrap_or(p.deadline)
        .min(Instant::now() + (total / 4).min(TIMED_MAX));
    let times = echo::timed(
        &mut sock,
        &mut seq,
        &alive_addrs,
        (p.samples, TIMED_WAIT),
        (timed_until, &p.stop),
    );
    for (peer, (got, sent)) in alive.iter().zip(times) {
        out.rtt.push(PairRtt {
            rail: p.rail,
            from_rank: p.rank,
            to_rank: peer.rank,
            p50_us: stats::quantile_us(&got, 0.5),
            p99_us: stats::quantile_us(&got, 0.99),
            sent,
            received: u16::try_from(got.len()).unwrap_or(u16::MAX),
        });
    }
    mtu_checks(p, facts, &mut sock, &mut seq, &alive, mtu_window, out);
}

/// One don't-fragment request of the job's MTU to every reachable peer.
fn mtu_checks(
    p: &RailProbe,
    facts: &IfaceFacts,
    sock: &mut EchoSocket,
    seq: &mut Sequencer,
    alive: &[Peer],
    window: Duration,
    out: &mut RailOutcome,
) {
    if alive.is_empty() {
        return;
    }
    let size = p.job_mtu.unwrap_or(facts.mtu);
    let ip_len = usize::try_from(size).unwrap_or(usize::MAX);
    if ip_len <= SMALL {
        return;
    }
    let addrs: Vec<Ipv4Addr> = alive.iter().map(|x| x.addr).collect();
    let until = (Instant::now() + window).min(p.deadline);
    let got = echo::burst(sock, seq, &addrs, ip_len, RESEND, (until, &p.stop));
    let too_big = got.iter().any(
        |r| matches!(r, Err(Silence::SendFailed(e)) if e.raw_os_error() == Some(libc::EMSGSIZE)),
    );
    if too_big {
        out.fail(
            None,
            PreflightCheck::Mtu,
            format!(
                "a {size}-byte packet cannot leave {}: its MTU is {}",
                p.ifname, facts.mtu
            ),
        );
        return;
    }
    for (peer, r) in alive.iter().zip(got) {
        let detail = match r {
            Ok(_) => continue,
            Err(Silence::SendFailed(e)) => format!("cannot send a {size}-byte probe: {e}"),
            Err(Silence::NoReply { tries }) => format!(
                "no reply to a {size}-byte don't-fragment probe ({tries} tries; small probes get through)"
            ),
        };
        out.fail(Some(peer.rank), PreflightCheck::Mtu, detail);
    }
}
