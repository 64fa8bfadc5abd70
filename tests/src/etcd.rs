//! Real etcd clusters for tests: members of Debian's `/usr/bin/etcd` on free
//! ports with their data in a temp dir, optionally listening inside a network
//! namespace, with TLS if asked. Readiness goes through `etcdctl`, so this
//! crate (a dev-dependency of the plugin) never links an etcd client.
//!
//! Every member is SIGKILLed and every data dir removed when the cluster is
//! dropped, also when the test panics.

use std::fmt::Write as _;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The etcd server binary (Debian's etcd-server package).
pub const ETCD_BIN: &str = "/usr/bin/etcd";
/// The etcd command line client (Debian's etcd-client package).
pub const ETCDCTL_BIN: &str = "/usr/bin/etcdctl";

/// How long a cluster may take to answer after its members start.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Starts retried with fresh ports when another process took one first.
const PORT_ATTEMPTS: usize = 5;
const POLL: Duration = Duration::from_millis(100);

/// Why a cluster could not be started or driven.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// etcd or etcdctl is not installed: tests skip.
    #[error("{0} is not installed (apt-get install etcd-server etcd-client)")]
    Missing(PathBuf),
    /// The spec cannot be run.
    #[error("invalid etcd spec: {0}")]
    Spec(String),
    /// Spawning a process or preparing files failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The cluster did not answer in time.
    #[error("etcd did not become ready within {timeout:?}: {detail}")]
    NotReady {
        /// How long it waited.
        timeout: Duration,
        /// Last probe error and member log tails.
        detail: String,
    },
    /// A member index out of range.
    #[error("no member {0}")]
    NoMember(usize),
    /// Generating test certificates failed.
    #[error("openssl {step}: {detail}")]
    Openssl {
        /// The failing step.
        step: String,
        /// openssl's stderr.
        detail: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> EtcdError {
    let what = what.into();
    move |source| EtcdError::Io { what, source }
}

/// Server TLS of the members: clients must use `https://` and, with
/// `client_cert_auth`, present a certificate signed by the CA.
#[derive(Debug, Clone)]
pub struct EtcdServerTls {
    /// CA that signed the server and client certificates.
    pub ca_file: PathBuf,
    /// Server certificate; it must be valid for `host` and, because the
    /// readiness probe uses it as its client certificate, allow clientAuth too.
    pub cert_file: PathBuf,
    /// Key of the server certificate.
    pub key_file: PathBuf,
    /// Require client certificates (`--client-cert-auth`).
    pub client_cert_auth: bool,
}

/// What cluster to start.
#[derive(Debug, Clone)]
pub struct EtcdSpec {
    /// Number of members (1 or 3 in practice).
    pub members: usize,
    /// Address every member listens on (clients and peers).
    pub host: IpAddr,
    /// Network namespace (under /run/netns) to run the members in; `host`
    /// must be an address inside it.
    pub netns: Option<String>,
    /// Serve clients over TLS.
    pub tls: Option<EtcdServerTls>,
}

impl Default for EtcdSpec {
    fn default() -> Self {
        Self {
            members: 1,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            netns: None,
            tls: None,
        }
    }
}

impl EtcdSpec {
    /// `members` members on 127.0.0.1.
    pub fn members(members: usize) -> Self {
        Self {
            members,
            ..Self::default()
        }
    }
}

#[derive(Debug)]
struct Member {
    name: String,
    client: SocketAddr,
    peer: SocketAddr,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A running etcd cluster; see the module docs.
#[derive(Debug)]
pub struct EtcdCluster {
    spec: EtcdSpec,
    token: String,
    members: Vec<Member>,
    // Last field: dropped after the members are killed.
    dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts the members and waits (bounded) until the cluster answers
    /// linearizable requests on every member.
    pub fn start(spec: EtcdSpec) -> Result<Self, EtcdError> {
        for bin in [ETCD_BIN, ETCDCTL_BIN] {
            if !Path::new(bin).exists() {
                return Err(EtcdError::Missing(bin.into()));
            }
        }
        if spec.members == 0 {
            return Err(EtcdError::Spec(
                "a cluster needs at least one member".into(),
            ));
        }
        if let Some(ns) = &spec.netns {
            if !Path::new("/run/netns").join(ns).exists() {
                return Err(EtcdError::Spec(format!("no network namespace {ns:?}")));
            }
        }
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix("jobnet-etcd-")
                .tempdir()
                .map_err(io("creating the cluster dir"))?;
            let ports = free_ports(spec.host, spec.netns.as_deref(), 2 * spec.members)?;
            let mut cluster = Self {
                token: cluster_token(),
                members: (0..spec.members)
                    .map(|i| Member {
                        name: format!("m{i}"),
                        client: SocketAddr::new(spec.host, ports[2 * i]),
                        peer: SocketAddr::new(spec.host, ports[2 * i + 1]),
                        data_dir: dir.path().join(format!("m{i}.data")),
                        log: dir.path().join(format!("m{i}.log")),
                        child: None,
                    })
                    .collect(),
                spec: spec.clone(),
                dir,
            };
            for i in 0..cluster.members.len() {
                cluster.spawn(i)?;
            }
            match cluster.wait_ready() {
                Ok(()) => return Ok(cluster),
                Err(e) if cluster.lost_port_race() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| EtcdError::Spec("no start attempted".into())))
    }

    /// Client URLs of all members, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// Client URL of member `i`.
    pub fn endpoint(&self, i: usize) -> String {
        let scheme = if self.spec.tls.is_some() {
            "https"
        } else {
            "http"
        };
        self.members
            .get(i)
            .map(|m| format!("{scheme}://{}", m.client))
            .unwrap_or_default()
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no members (never, once started).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The directory holding data dirs and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Log file of member `i`.
    pub fn log(&self, i: usize) -> Option<&Path> {
        self.members.get(i).map(|m| m.log.as_path())
    }

    /// SIGKILLs member `i` and reaps it (no-op when it is not running).
    pub fn kill_member(&mut self, i: usize) -> Result<(), EtcdError> {
        let m = self.members.get_mut(i).ok_or(EtcdError::NoMember(i))?;
        if let Some(mut child) = m.child.take() {
            let _ = child.kill();
            child
                .wait()
                .map_err(io(format!("reaping etcd member {i}")))?;
        }
        Ok(())
    }

    /// Starts member `i` again on its data dir and ports and waits (bounded)
    /// until it accepts connections. A member serves requests only once it
    /// reaches a quorum: call [`Self::wait_ready`] after restarting enough.
    pub fn restart_member(&mut self, i: usize) -> Result<(), EtcdError> {
        self.kill_member(i)?;
        self.spawn(i)?;
        let addr = self.members[i].client;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            self.check_running(i)?;
            let open = in_netns(self.spec.netns.as_deref(), move || {
                Ok(TcpStream::connect_timeout(&addr, POLL).is_ok())
            })?;
            if open {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.not_ready(format!("member {i} does not listen on {addr}")));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits (bounded) until every running member answers a linearizable
    /// request, i.e. the cluster has a leader and quorum.
    pub fn wait_ready(&mut self) -> Result<(), EtcdError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let running: Vec<String> = (0..self.members.len())
                .filter(|&i| self.members[i].child.is_some())
                .map(|i| self.endpoint(i))
                .collect();
            for i in 0..self.members.len() {
                if self.members[i].child.is_some() {
                    self.check_running(i)?;
                }
            }
            let probe = self.etcdctl(&running, &["endpoint", "health"])?;
            if probe.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.not_ready(probe.err().unwrap_or_default()));
            }
            std::thread::sleep(POLL);
        }
    }

    /// The member the running members agree is the raft leader, if any.
    pub fn leader(&self) -> Result<Option<usize>, EtcdError> {
        let running: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].child.is_some())
            .collect();
        let mut leader = None;
        for &i in &running {
            let out =
                match self.etcdctl(&[self.endpoint(i)], &["endpoint", "status", "-w", "json"])? {
                    Ok(out) => out,
                    Err(_) => return Ok(None),
                };
            let status: serde_json::Value = serde_json::from_str(&out).map_err(|e| {
                EtcdError::Spec(format!("etcdctl endpoint status output: {e}: {out}"))
            })?;
            let field = |name: &str| status[0]["Status"][name].as_u64();
            let (Some(me), Some(lead)) = (
                status[0]["Status"]["header"]["member_id"].as_u64(),
                field("leader"),
            ) else {
                return Ok(None);
            };
            if lead == 0 || leader.is_some_and(|(_, l)| l != lead) {
                return Ok(None);
            }
            if me == lead {
                leader = Some((Some(i), lead));
            } else if leader.is_none() {
                leader = Some((None, lead));
            }
        }
        Ok(leader.and_then(|(i, _)| i))
    }

    /// Kills every member (data dirs stay until the cluster is dropped).
    pub fn stop(&mut self) {
        for i in 0..self.members.len() {
            let _ = self.kill_member(i);
        }
    }

    fn spawn(&mut self, i: usize) -> Result<(), EtcdError> {
        let args = self.member_args(i);
        let m = &mut self.members[i];
        let log = File::options()
            .create(true)
            .append(true)
            .open(&m.log)
            .map_err(io(format!("opening {}", m.log.display())))?;
        let log2 = log
            .try_clone()
            .map_err(io(format!("opening {}", m.log.display())))?;
        let mut cmd = match &self.spec.netns {
            Some(ns) => {
                // `ip netns exec` execs etcd in place, so the child is etcd itself.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, ETCD_BIN]);
                c
            }
            None => Command::new(ETCD_BIN),
        };
        let child = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(io(format!("starting etcd member {i}")))?;
        m.child = Some(child);
        Ok(())
    }

    fn member_args(&self, i: usize) -> Vec<String> {
        let m = &self.members[i];
        let client = self.endpoint(i);
        let peer = format!("http://{}", m.peer);
        let initial = self
            .members
            .iter()
            .map(|o| format!("{}=http://{}", o.name, o.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut args = vec![
            format!("--name={}", m.name),
            format!("--data-dir={}", m.data_dir.display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster={initial}"),
            format!("--initial-cluster-token={}", self.token),
            "--initial-cluster-state=new".into(),
            "--heartbeat-interval=50".into(),
            "--election-timeout=500".into(),
            "--logger=zap".into(),
            "--log-outputs=stderr".into(),
        ];
        if let Some(tls) = &self.spec.tls {
            args.push(format!("--cert-file={}", tls.cert_file.display()));
            args.push(format!("--key-file={}", tls.key_file.display()));
            args.push(format!("--trusted-ca-file={}", tls.ca_file.display()));
            if tls.client_cert_auth {
                args.push("--client-cert-auth".into());
            }
        }
        args
    }

    /// Runs etcdctl against `endpoints` (inside the netns if any):
    /// Ok(stdout) on exit 0, Err(stdout and stderr) otherwise.
    fn etcdctl(
        &self,
        endpoints: &[String],
        args: &[&str],
    ) -> Result<Result<String, String>, EtcdError> {
        let mut cmd = match &self.spec.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, ETCDCTL_BIN]);
                c
            }
            None => Command::new(ETCDCTL_BIN),
        };
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", endpoints.join(",")))
            .args(["--dial-timeout=1s", "--command-timeout=2s"]);
        if let Some(tls) = &self.spec.tls {
            cmd.arg(format!("--cacert={}", tls.ca_file.display()))
                .arg(format!("--cert={}", tls.cert_file.display()))
                .arg(format!("--key={}", tls.key_file.display()));
        }
        let out = cmd
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(io("running etcdctl"))?;
        Ok(if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        })
    }

    /// Fails when member `i` has exited.
    fn check_running(&mut self, i: usize) -> Result<(), EtcdError> {
        let m = &mut self.members[i];
        let exited = match m.child.as_mut() {
            Some(c) => c
                .try_wait()
                .map_err(io(format!("polling etcd member {i}")))?,
            None => return Ok(()),
        };
        match exited {
            Some(status) => {
                m.child = None;
                Err(self.not_ready(format!("member {i} exited ({status})")))
            }
            None => Ok(()),
        }
    }

    /// Whether a member failed because its port was taken in the meantime.
    fn lost_port_race(&self) -> bool {
        self.members.iter().any(|m| {
            std::fs::read_to_string(&m.log)
                .map(|l| l.contains("address already in use"))
                .unwrap_or(false)
        })
    }

    fn not_ready(&self, detail: String) -> EtcdError {
        let mut detail = detail.trim().to_string();
        for m in &self.members {
            let log = std::fs::read_to_string(&m.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            let _ = write!(detail, "\n--- {} log tail:", m.name);
            for line in tail.into_iter().rev() {
                let _ = write!(detail, "\n{line}");
            }
        }
        EtcdError::NotReady {
            timeout: READY_TIMEOUT,
            detail,
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A token no other cluster uses, so members of clusters that reuse a port
/// later never talk to each other.
fn cluster_token() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "jobnet-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `n` distinct ports the kernel considers free on `host` (inside `netns`):
/// bound to port 0 together, then released for etcd to take.
fn free_ports(host: IpAddr, netns: Option<&str>, n: usize) -> Result<Vec<u16>, EtcdError> {
    in_netns(netns, move || {
        let listeners = (0..n)
            .map(|_| TcpListener::bind(SocketAddr::new(host, 0)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(io(format!("binding a free port on {host}")))?;
        listeners
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(io("reading a bound port"))
    })
}

/// Runs `f` with its sockets in network namespace `netns` (here when `None`).
fn in_netns<T: Send>(
    netns: Option<&str>,
    f: impl FnOnce() -> Result<T, EtcdError> + Send,
) -> Result<T, EtcdError> {
    let Some(ns) = netns else {
        return f();
    };
    let path = Path::new("/run/netns").join(ns);
    // setns changes only the calling thread, so a throwaway thread does it.
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = File::open(&path).map_err(io(format!("opening {}", path.display())))?;
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                EtcdError::Io {
                    what: format!("entering netns {ns}"),
                    source: e.into(),
                }
            })?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(EtcdError::Spec("netns thread panicked".into())))
    })
}

/// Certificates for a TLS cluster made with the openssl CLI: a CA, a server
/// certificate for one IP (usable as a client certificate too) and a client
/// certificate.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// CA certificate (PEM).
    pub ca_file: PathBuf,
    /// Server certificate for the host IP, with serverAuth and clientAuth.
    pub server_cert: PathBuf,
    /// Key of the server certificate.
    pub server_key: PathBuf,
    /// Client certificate (clientAuth only).
    pub client_cert: PathBuf,
    /// Key of the client certificate.
    pub client_key: PathBuf,
}

impl TestPki {
    /// Generates the files in `dir` (valid for one day, EC P-256 keys).
    pub fn generate(dir: &Path, host: IpAddr) -> Result<Self, EtcdError> {
        let p = |name: &str| dir.join(name);
        let pki = Self {
            ca_file: p("ca.pem"),
            server_cert: p("server.pem"),
            server_key: p("server.key"),
            client_cert: p("client.pem"),
            client_key: p("client.key"),
        };
        let ca_key = p("ca.key");
        openssl(
            "CA",
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=jobnet test CA",
                "-keyout",
                path_str(&ca_key)?,
                "-out",
                path_str(&pki.ca_file)?,
            ],
        )?;
        let leaf = |name: &str, cn: &str, ext: String| -> Result<(), EtcdError> {
            let (key, csr, cert, extfile) = (
                p(&format!("{name}.key")),
                p(&format!("{name}.csr")),
                p(&format!("{name}.pem")),
                p(&format!("{name}.ext")),
            );
            std::fs::write(&extfile, ext).map_err(io(format!("writing {}", extfile.display())))?;
            openssl(
                name,
                &[
                    "req",
                    "-new",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-subj",
                    &format!("/CN={cn}"),
                    "-keyout",
                    path_str(&key)?,
                    "-out",
                    path_str(&csr)?,
                ],
            )?;
            openssl(
                name,
                &[
                    "x509",
                    "-req",
                    "-days",
                    "1",
                    "-in",
                    path_str(&csr)?,
                    "-CA",
                    path_str(&pki.ca_file)?,
                    "-CAkey",
                    path_str(&ca_key)?,
                    "-CAcreateserial",
                    "-extfile",
                    path_str(&extfile)?,
                    "-out",
                    path_str(&cert)?,
                ],
            )
        };
        leaf(
            "server",
            "jobnet etcd",
            format!(
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
                 extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:{host}\n"
            ),
        )?;
        leaf(
            "client",
            "jobnetd",
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n"
                .into(),
        )?;
        Ok(pki)
    }

    /// Server TLS for [`EtcdSpec::tls`] with these files.
    pub fn server_tls(&self, client_cert_auth: bool) -> EtcdServerTls {
        EtcdServerTls {
            ca_file: self.ca_file.clone(),
            cert_file: self.server_cert.clone(),
            key_file: self.server_key.clone(),
            client_cert_auth,
        }
    }
}

fn path_str(p: &Path) -> Result<&str, EtcdError> {
    p.to_str()
        .ok_or_else(|| EtcdError::Spec(format!("non-UTF-8 path {}", p.display())))
}

fn openssl(step: &str, args: &[&str]) -> Result<(), EtcdError> {
    let out = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(io("running openssl"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(EtcdError::Openssl {
            step: step.into(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::Pod;

    fn installed(test: &str) -> bool {
        let ok = Path::new(ETCD_BIN).exists() && nix::unistd::Uid::effective().is_root();
        if !ok {
            crate::skip(test, &format!("needs root and {ETCD_BIN}"));
        }
        ok
    }

    #[test]
    fn members_run_inside_a_netns() {
        if !installed("members_run_inside_a_netns") {
            return;
        }
        let pod = Pod::new("etcd");
        let up = Command::new("ip")
            .args(["-n", &pod.name, "link", "set", "lo", "up"])
            .status()
            .unwrap();
        assert!(up.success());
        let mut c = EtcdCluster::start(EtcdSpec {
            netns: Some(pod.name.clone()),
            ..EtcdSpec::members(3)
        })
        .unwrap();
        // Its loopback is not ours: from here nothing listens there.
        let addr = c.members[0].client;
        assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err());
        assert!(c.leader().unwrap().is_some());
        c.kill_member(0).unwrap();
        c.restart_member(0).unwrap();
        c.wait_ready().unwrap();
        let dir = c.dir().to_path_buf();
        drop(c);
        assert!(!dir.exists(), "data dirs removed on drop");
    }

    #[test]
    fn a_dropped_cluster_leaves_no_process() {
        if !installed("a_dropped_cluster_leaves_no_process") {
            return;
        }
        let c = EtcdCluster::start(EtcdSpec::default()).unwrap();
        let pid = c.members[0].child.as_ref().map(Child::id).unwrap();
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        assert!(proc_dir.exists());
        let panicked = std::thread::spawn(move || {
            let _c = c;
            panic!("a failing test");
        })
        .join();
        assert!(panicked.is_err());
        assert!(!proc_dir.exists(), "member {pid} outlived its cluster");
    }
}
