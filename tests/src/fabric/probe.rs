//! Reachability checks between network namespaces without external tools:
//! a UDP echo from a thread that has entered one netns to a thread in another.

use std::fs::File;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

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

/// True when a UDP datagram sent from netns `from` to `to` (an address that
/// lives in netns `to_ns`) is echoed back within `timeout`.
pub fn udp_echo(
    from: &Path,
    to_ns: &Path,
    to: SocketAddr,
    timeout: Duration,
) -> Result<bool, FabricError> {
    let (ready_tx, ready_rx) = mpsc::channel::<std::io::Result<()>>();
    let server_ns = to_ns.to_owned();
    let server = std::thread::spawn(move || {
        run_in_netns(&server_ns, move || -> std::io::Result<bool> {
            let bound = UdpSocket::bind(to).and_then(|s| {
                s.set_read_timeout(Some(timeout))?;
                Ok(s)
            });
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
            let mut buf = [0u8; 64];
            match sock.recv_from(&mut buf) {
                Ok((n, peer)) => {
                    sock.send_to(&buf[..n], peer)?;
                    Ok(true)
                }
                Err(_) => Ok(false),
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
        sock.set_read_timeout(Some(timeout))?;
        let msg = b"jobnet-fabric-probe";
        sock.send_to(msg, to)?;
        let mut buf = [0u8; 64];
        match sock.recv_from(&mut buf) {
            Ok((n, peer)) => Ok(peer == to && &buf[..n] == msg),
            Err(_) => Ok(false),
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
