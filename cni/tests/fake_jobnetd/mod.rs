//! A scripted jobnetd for plugin tests: it serves the daemon API on a Unix
//! socket and answers from a script the test sets, so a test decides which
//! VF jobnetd reserves and how commit answers (reservation expired, daemon
//! gone) without a real daemon and its store.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use jobnet_api::{
    ApiError, Attachment, AttachmentKey, AttachmentState, ErrorCode, GcResponse, Isolation,
    IsolationMode, RailAddress, ReleaseResponse, ReserveRequest, StatusResponse, VfAssignment,
};
use jobnet_hw::PciAddr;

/// Largest request the fake reads (real ones are a few hundred bytes).
const MAX_REQUEST: usize = 64 * 1024;

/// What the fake answers.
#[derive(Debug)]
struct Script {
    vf: PciAddr,
    pf: PciAddr,
    address: ipnet::IpNet,
    commit_error: Option<ApiError>,
    free_vfs: u32,
    committed: HashMap<AttachmentKey, bool>,
    calls: Vec<String>,
}

/// The fake daemon, stopped on drop.
pub struct FakeJobnetd {
    _dir: tempfile::TempDir,
    /// Its socket (the config's `daemonSocket`).
    pub socket: PathBuf,
    script: Arc<Mutex<Script>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeJobnetd {
    /// A daemon that reserves `vf` (on PF `pf`) with `address` for every key.
    pub fn start(vf: PciAddr, pf: PciAddr, address: &str) -> Self {
        let dir = tempfile::tempdir().expect("fake jobnetd dir");
        let socket = dir.path().join("jobnetd.sock");
        let listener = UnixListener::bind(&socket).expect("bind fake jobnetd");
        let script = Arc::new(Mutex::new(Script {
            vf,
            pf,
            address: address.parse().expect("address"),
            commit_error: None,
            free_vfs: 1,
            committed: HashMap::new(),
            calls: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let script = Arc::clone(&script);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || serve(&listener, &script, &stop))
        };
        Self {
            _dir: dir,
            socket,
            script,
            stop,
            thread: Some(thread),
        }
    }

    fn script(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves `vf` from now on (jobnetd's selector picked another VF).
    pub fn set_vf(&self, vf: PciAddr, pf: PciAddr) {
        let mut s = self.script();
        s.vf = vf;
        s.pf = pf;
    }

    /// Commits fail with `e` from now on (None: they succeed).
    pub fn fail_commits(&self, e: Option<ApiError>) {
        self.script().commit_error = e;
    }

    /// What STATUS reports as free VFs.
    pub fn set_free_vfs(&self, n: u32) {
        self.script().free_vfs = n;
    }

    /// Forgets `key` as jobnetd's own cleanup does (netns gone, expiry).
    pub fn forget(&self, container_id: &str, ifname: &str) {
        self.script()
            .committed
            .remove(&AttachmentKey::new(container_id, ifname));
    }

    /// Every call so far, as `verb containerID/ifname` (`status`, `gc`).
    pub fn calls(&self) -> Vec<String> {
        self.script().calls.clone()
    }

    /// The calls of one verb for one key.
    pub fn count(&self, verb: &str, container_id: &str, ifname: &str) -> usize {
        let want = format!("{verb} {container_id}/{ifname}");
        self.calls().iter().filter(|c| **c == want).count()
    }
}

impl Drop for FakeJobnetd {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = UnixStream::connect(&self.socket);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(listener: &UnixListener, script: &Mutex<Script>, stop: &AtomicBool) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(conn) = conn else { continue };
        let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(5)));
        if let Some((method, path, body)) = read_request(&conn) {
            let (status, body) = {
                let mut s = script.lock().unwrap_or_else(|p| p.into_inner());
                answer(&mut s, &method, &path, &body)
            };
            write_response(&conn, status, &body);
        }
    }
}

fn read_request(conn: &UnixStream) -> Option<(String, String, Vec<u8>)> {
    let mut r = BufReader::new(conn.take(u64::try_from(MAX_REQUEST).ok()?));
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0u8; length];
    r.read_exact(&mut body).ok()?;
    Some((method, path, body))
}

fn write_response(mut conn: &UnixStream, status: u16, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(body);
    let _ = conn.flush();
}

fn error(e: &ApiError) -> (u16, Vec<u8>) {
    (
        e.code.http_status(),
        serde_json::to_vec(e).unwrap_or_default(),
    )
}

fn ok<T: serde::Serialize>(v: &T) -> (u16, Vec<u8>) {
    (200, serde_json::to_vec(v).unwrap_or_default())
}

fn attachment(s: &Script, key: &AttachmentKey, netns: &str, committed: bool) -> Attachment {
    Attachment {
        container_id: key.container_id.clone(),
        ifname: key.ifname.clone(),
        netns: netns.to_owned(),
        node: "fake".into(),
        job: "job".into(),
        rank: None,
        pool: "rdma".into(),
        state: if committed {
            AttachmentState::Committed
        } else {
            AttachmentState::Reserved
        },
        vfs: vec![VfAssignment {
            rail: 0,
            pci: s.vf,
            pf_pci: s.pf,
            pf: None,
            vf_index: 0,
            netdev: None,
        }],
        addresses: vec![RailAddress {
            rail: 0,
            address: s.address,
            gateway: None,
            isolation_id: None,
        }],
        isolation: Isolation {
            mode: IsolationMode::None,
            id: None,
        },
        mtu: None,
        network: None,
        reserved_at_ms: 0,
    }
}

fn answer(s: &mut Script, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let key = || serde_json::from_slice::<AttachmentKey>(body).ok();
    match (method, path) {
        ("POST", jobnet_api::paths::RESERVE) => {
            let Ok(req) = serde_json::from_slice::<ReserveRequest>(body) else {
                return error(&ApiError::new(ErrorCode::MalformedRequest, "bad reserve"));
            };
            let key = AttachmentKey::new(&req.container_id, &req.ifname);
            s.calls.push(format!("reserve {key}"));
            let committed = *s.committed.entry(key.clone()).or_insert(false);
            ok(&attachment(s, &key, &req.netns, committed))
        }
        ("POST", jobnet_api::paths::COMMIT) => {
            let Some(key) = key() else {
                return error(&ApiError::new(ErrorCode::MalformedRequest, "bad key"));
            };
            s.calls.push(format!("commit {key}"));
            if let Some(e) = &s.commit_error {
                return error(e);
            }
            match s.committed.get_mut(&key) {
                Some(c) => {
                    *c = true;
                    let a = attachment(s, &key, "", true);
                    ok(&a)
                }
                None => error(&ApiError::new(
                    ErrorCode::UnknownAttachment,
                    format!("no attachment {key}"),
                )),
            }
        }
        ("POST", jobnet_api::paths::RELEASE) => {
            let Some(key) = key() else {
                return error(&ApiError::new(ErrorCode::MalformedRequest, "bad key"));
            };
            s.calls.push(format!("release {key}"));
            let released = s.committed.remove(&key).is_some();
            ok(&ReleaseResponse { released })
        }
        ("POST", jobnet_api::paths::CHECK) => {
            let Some(key) = key() else {
                return error(&ApiError::new(ErrorCode::MalformedRequest, "bad key"));
            };
            s.calls.push(format!("check {key}"));
            match s.committed.get(&key).copied() {
                Some(c) => {
                    let a = attachment(s, &key, "", c);
                    ok(&a)
                }
                None => error(&ApiError::new(
                    ErrorCode::UnknownAttachment,
                    format!("no attachment {key}"),
                )),
            }
        }
        ("GET", jobnet_api::paths::STATUS) => {
            s.calls.push("status".into());
            ok(&StatusResponse {
                node: "fake".into(),
                version: "0".into(),
                api_version: "v1".into(),
                uptime_secs: 1,
                attachments: u32::try_from(s.committed.len()).unwrap_or(u32::MAX),
                free_vfs: s.free_vfs,
                pools: Vec::new(),
            })
        }
        ("POST", jobnet_api::paths::GC) => {
            s.calls.push("gc".into());
            ok(&GcResponse {
                released: Vec::new(),
            })
        }
        _ => error(&ApiError::new(
            ErrorCode::NotFound,
            format!("{method} {path}"),
        )),
    }
}

/// The config of a job network served by `daemon` (no `ipam` section).
pub fn daemon_conf(daemon: &FakeJobnetd, state_dir: &Path, sysfs_root: &Path) -> serde_json::Value {
    serde_json::json!({
        "cniVersion": "1.1.0", "name": "jobnet-fake", "type": "jobnet",
        "daemonSocket": daemon.socket, "stateDir": state_dir, "sysfsRoot": sysfs_root,
    })
}
