//! Against the running kernel: without RDMA (this VM) the socket gives
//! `EPROTONOSUPPORT` and the client says [`RdmaError::NotAvailable`]; with
//! RDMA the same calls must succeed.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use jobnet_rdma::{RdmaClient, RdmaError, RdmaSocket};

/// What socket(AF_NETLINK, SOCK_RAW, NETLINK_RDMA) says, asked directly.
fn kernel_has_rdma_netlink() -> bool {
    // SAFETY: plain socket call; the fd is closed by OwnedFd.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 20) };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        assert_eq!(err.raw_os_error(), Some(libc::EPROTONOSUPPORT), "{err}");
        return false;
    }
    // SAFETY: fresh fd owned by nobody else.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    true
}

#[test]
fn open_reports_not_available_or_works() {
    match RdmaClient::open() {
        Err(RdmaError::NotAvailable) => {
            assert!(!kernel_has_rdma_netlink());
            let e = RdmaError::NotAvailable;
            assert_eq!(e.errno(), Some(libc::EPROTONOSUPPORT));
            assert!(e.to_string().contains("not available"));
        }
        Ok(mut c) => {
            assert!(kernel_has_rdma_netlink());
            let sys = c.system().unwrap();
            let devs = c.devices().unwrap();
            eprintln!("RDMA netns mode {}, {} devices", sys.netns_mode, devs.len());
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// A fresh network namespace, alive while the returned fd is open: made on
/// a throw-away thread so no test thread changes namespace.
fn fresh_netns() -> std::fs::File {
    std::thread::spawn(|| {
        // SAFETY: unshare affects only this short-lived thread.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
        std::fs::File::open("/proc/thread-self/ns/net").unwrap()
    })
    .join()
    .unwrap()
}

#[test]
fn open_in_netns_runs_in_that_netns() {
    let ns = fresh_netns();
    let before = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    let result = RdmaSocket::open_in_netns(&ns);
    // The caller's thread never moved.
    assert_eq!(
        std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
        before
    );
    match result {
        Err(RdmaError::NotAvailable) => assert!(!kernel_has_rdma_netlink()),
        Ok(sock) => assert!(sock.as_fd().as_raw_fd() >= 0),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[test]
fn open_in_netns_with_a_non_netns_fd_is_a_setns_error() {
    let not_ns = std::fs::File::open("/proc/self/status").unwrap();
    match RdmaSocket::open_in_netns(&not_ns) {
        Err(RdmaError::Io {
            op: "setns",
            source,
        }) => {
            assert_eq!(source.raw_os_error(), Some(libc::EINVAL))
        }
        other => panic!("expected setns error, got {other:?}"),
    }
}
