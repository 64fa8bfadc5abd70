//! The echo exchanges of a rail probe: bursts to many peers with resends
//! (reachability, MTU) and one-at-a-time round trips (timing).

use std::collections::HashMap;
use std::io;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::icmp::{EchoSocket, Reply};

/// IP size of the small echo requests (as `ping`'s default).
pub const SMALL: usize = 84;

/// Why a peer gave no reply.
#[derive(Debug)]
pub enum Silence {
    /// Requests left, no reply came back.
    NoReply {
        /// Requests sent.
        tries: u32,
    },
    /// The kernel refused to send.
    SendFailed(io::Error),
}

/// One request in flight: to which peer, and when (on both clocks: the
/// kernel stamps replies with the wall clock).
#[derive(Debug, Clone, Copy)]
struct Sent {
    peer: usize,
    at: Instant,
    wall: SystemTime,
}

/// Numbers the requests of one socket, so a reply names its request.
#[derive(Debug, Default)]
pub struct Sequencer {
    next: u16,
    sent: HashMap<u16, Sent>,
}

impl Sequencer {
    fn send(
        &mut self,
        sock: &EchoSocket,
        to: Ipv4Addr,
        peer: usize,
        ip_len: usize,
    ) -> io::Result<u16> {
        let seq = self.next;
        self.next = self.next.wrapping_add(1);
        // Stamped before the send: on a path inside one kernel the reply
        // can be queued before sendto returns.
        let sent = Sent {
            peer,
            at: Instant::now(),
            wall: SystemTime::now(),
        };
        sock.send(to, seq, ip_len)?;
        self.sent.insert(seq, sent);
        Ok(seq)
    }

    /// The peer and round trip of a reply, once per request.
    fn answered(&mut self, r: &Reply, peers: &[Ipv4Addr]) -> Option<(usize, Duration)> {
        let sent = *self.sent.get(&r.seq)?;
        if peers.get(sent.peer) != Some(&r.from) {
            return None;
        }
        self.sent.remove(&r.seq);
        let rtt =
            r.at.and_then(|at| at.duration_since(sent.wall).ok())
                .unwrap_or_else(|| sent.at.elapsed());
        Some((sent.peer, rtt))
    }
}

/// Sends one `ip_len`-byte request to every peer and resends to the silent
/// ones every `every` until `until` (or `stop`): per peer, the first round
/// trip or why there was none.
pub fn burst(
    sock: &mut EchoSocket,
    seq: &mut Sequencer,
    peers: &[Ipv4Addr],
    ip_len: usize,
    every: Duration,
    (until, stop): (Instant, &AtomicBool),
) -> Vec<Result<Duration, Silence>> {
    let mut got: Vec<Option<Duration>> = vec![None; peers.len()];
    let mut tries = vec![0u32; peers.len()];
    let mut refused: Vec<Option<io::Error>> = (0..peers.len()).map(|_| None).collect();
    let mut open = peers.len();
    while open > 0 && Instant::now() < until && !stop.load(Ordering::Relaxed) {
        for (i, to) in peers.iter().enumerate() {
            if got[i].is_some() {
                continue;
            }
            tries[i] += 1;
            refused[i] = seq.send(sock, *to, i, ip_len).err();
        }
        let round_end = (Instant::now() + every).min(until);
        while open > 0 {
            match sock.recv(round_end) {
                Ok(Some(reply)) => {
                    if let Some((i, rtt)) = seq.answered(&reply, peers) {
                        if got[i].is_none() {
                            got[i] = Some(rtt);
                            open -= 1;
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "echo receive failed");
                    std::thread::sleep(round_end.saturating_duration_since(Instant::now()));
                    break;
                }
            }
        }
    }
    got.into_iter()
        .zip(tries)
        .zip(refused)
        .map(|((g, tries), refused)| match (g, refused) {
            (Some(rtt), _) => Ok(rtt),
            (None, Some(e)) => Err(Silence::SendFailed(e)),
            (None, None) => Err(Silence::NoReply { tries }),
        })
        .collect()
}

/// Up to `samples` round trips to each peer, one request in flight at a
/// time (so a time is not a queue's), each waiting `wait` at most, round
/// by round so every peer gets samples, all before `until` (or `stop`):
/// per peer, the round trips that came back and the requests sent.
pub fn timed(
    sock: &mut EchoSocket,
    seq: &mut Sequencer,
    peers: &[Ipv4Addr],
    (samples, wait): (u32, Duration),
    (until, stop): (Instant, &AtomicBool),
) -> Vec<(Vec<Duration>, u16)> {
    let mut out: Vec<(Vec<Duration>, u16)> = vec![(Vec::new(), 0); peers.len()];
    'rounds: for _ in 0..samples {
        for (i, to) in peers.iter().enumerate() {
            if Instant::now() >= until || stop.load(Ordering::Relaxed) {
                break 'rounds;
            }
            out[i].1 = out[i].1.saturating_add(1);
            let Ok(s) = seq.send(sock, *to, i, SMALL) else {
                continue;
            };
            let give_up = (Instant::now() + wait).min(until);
            while let Ok(Some(reply)) = sock.recv(give_up) {
                // A late reply to an earlier request is not this one's time.
                if let Some((j, rtt)) = seq.answered(&reply, peers) {
                    if reply.seq == s {
                        out[j].0.push(rtt);
                        break;
                    }
                }
            }
        }
    }
    out
}
