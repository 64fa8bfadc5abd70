//! Reachability checks between network namespaces without external tools:
//! a UDP echo from a thread that has entered one netns to a thread in another.

use std::fs::File;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};

use super::FabricError;

/// Runs `f` on a fresh OS thread that has entered the netns at `netns`.
///
/// The thread ends with `f`, so no other code ever runs in that netns by
/// accident (setns changes only the calling thread).
pub fn run_in_netns<T, F>(netns: &Path, f: F) -> Result<T, FabricError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let file = File::open(netns).map_err(|source| FabricError::Io {
        path: netns.to_owned(),
        source,
    })?;
    let path = netns.to_owned();
    std::thread::spawn(move || {
        setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| FabricError::Io {
            path: path.clone(),
            source: e.into(),
        })?;
        Ok(f())
    })
    .join()
    .map_err(|_| FabricError::Spec("thread in netns panicked".into()))?
}

/// A payload no other probe on the machine sends: a datagram queued by an
/// earlier probe (e.g. behind ARP resolution) must not count for this one.
fn probe_payload() -> Vec<u8> {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "jobnet-fabric-probe-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
    .into_bytes()
}

/// True when a UDP datagram sent from netns `from` to `to` (an address that
/// lives in netns `to_ns`) is echoed back within `timeout`.
///
/// The server echoes whatever arrives until it has seen this probe's own
/// payload or the timeout passes, and the client only accepts its own
/// payload back, so stale datagrams of earlier probes change nothing.
pub fn udp_echo(
    from: &Path,
    to_ns: &Path,
    to: SocketAddr,
    timeout: Duration,
) -> Result<bool, FabricError> {
    let msg = probe_payload();
    let expected = msg.clone();
    let (ready_tx, ready_rx) = mpsc::channel::<std::io::Result<()>>();
    let server_ns = to_ns.to_owned();
    let server = std::thread::spawn(move || {
        run_in_netns(&server_ns, move || -> std::io::Result<bool> {
            let bound = UdpSocket::bind(to);
            let sock = match bound {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let kind = e.kind();
                    let _ = ready_tx.send(Err(e));
                    return Err(kind.into());
                }
            };
            let deadline = Instant::now() + timeout;
            let mut buf = [0u8; 128];
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(false);
                }
                sock.set_read_timeout(Some(left))?;
                match sock.recv_from(&mut buf) {
                    Ok((n, peer)) => {
                        let got = buf.get(..n).unwrap_or_default();
                        // Echo everything: an old probe's client may be gone
                        // (its ICMP error is harmless), ours is waiting.
                        let _ = sock.send_to(got, peer);
                        if got == expected.as_slice() {
                            return Ok(true);
                        }
                    }
                    Err(_) => return Ok(false),
                }
            }
        })
    });
    let io = |source: std::io::Error| FabricError::Io {
        path: to_ns.to_owned(),
        source,
    };
    ready_rx
        .recv()
        .map_err(|_| FabricError::Spec("echo server died".into()))?
        .map_err(io)?;
    let got = run_in_netns(from, move || -> std::io::Result<bool> {
        let unspecified: SocketAddr = if to.is_ipv4() {
            "0.0.0.0:0".parse().map_err(std::io::Error::other)?
        } else {
            "[::]:0".parse().map_err(std::io::Error::other)?
        };
        let sock = UdpSocket::bind(unspecified)?;
        sock.send_to(&msg, to)?;
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 128];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            sock.set_read_timeout(Some(left))?;
            match sock.recv_from(&mut buf) {
                Ok((n, peer)) if peer == to && buf.get(..n) == Some(msg.as_slice()) => {
                    return Ok(true)
                }
                Ok(_) => {}
                Err(_) => return Ok(false),
            }
        }
    })?
    .map_err(|e| FabricError::Io {
        path: from.to_owned(),
        source: e,
    })?;
    // When the request never arrived, the server times out by itself.
    let _ = server.join();
    Ok(got)
}
