//! ADD.

use jobnet_api::{AttachmentKey, Rails as ApiRails, ReserveRequest};

use crate::protocol::config::NetConf;
use crate::protocol::error::{CniError, ErrorCode};
use crate::protocol::ipam::Delegate;
use crate::protocol::result::{CniResult, Interface, IpConfig};
use crate::protocol::values::Rails;
use crate::protocol::version::CniVersion;
use crate::sriov::lockfile::{self, LockError, LockedFile};
use crate::sriov::owner::ADD_LOCK_WAIT;
use crate::sriov::{self, AttachOptions, FaultHook, NoFaults, Ownership};
use crate::timings;

use super::daemon;
use super::device::{self, DeviceEnv};
use super::overlap::Overlapped;
use super::AddRequest;

/// Hands an IPAM allocation back after a failed ADD (the plugin's DEL).
fn release_ipam(delegate: &Delegate<'_>) {
    if let Err(e) = delegate.del() {
        tracing::warn!(plugin = %delegate.plugin, error = %e, "releasing IPAM allocation after a failed ADD");
    }
}

/// A failed ADD, and whether the attachment it found must stay.
struct Failed {
    error: CniError,
    /// A retried ADD found its attachment complete and live in the kernel
    /// and failed after that: the attachment, its addresses and jobnetd's
    /// reservation stay (the runtime retries, or DELs it).
    keep: bool,
}

impl From<CniError> for Failed {
    fn from(error: CniError) -> Self {
        Self { error, keep: false }
    }
}

/// Holds the attachment for the whole ADD against another run on it (a
/// retried ADD, its DEL, GC); the lock file goes with the lock.
fn lock_attachment(
    env: &DeviceEnv,
    req: &AddRequest,
    faults: &dyn FaultHook,
) -> Result<LockedFile, CniError> {
    let att = &req.env;
    lockfile::lock_attachment(
        &env.state,
        att.container_id.as_str(),
        att.ifname.as_str(),
        ADD_LOCK_WAIT,
        faults,
    )
    .map_err(|e| match e {
        LockError::Timeout { waited, .. } => CniError::new(
            ErrorCode::TryAgainLater,
            format!(
                "attachment {}/{} is being added or deleted by another operation (waited {waited:?})",
                att.container_id, att.ifname
            ),
        ),
        LockError::Io { .. } => CniError::new(ErrorCode::IoFailure, e.to_string()),
    })
}

/// ADD: the pod's addresses from the delegated IPAM plugin when the config
/// has an `ipam` section, else from jobnetd; then the VF into the pod; then
/// the result.
///
/// With a `prevResult` (jobnet later in a chain) its interfaces, ips, routes
/// and dns are kept and jobnet's interface and addresses are appended.
pub fn add(req: &AddRequest) -> Result<CniResult, CniError> {
    add_with(req, &NoFaults)
}

/// [`add`] with a hook that can fail any attach step (rollback tests).
pub fn add_with(req: &AddRequest, faults: &dyn FaultHook) -> Result<CniResult, CniError> {
    let att = &req.env;
    tracing::info!(container = %att.container_id, ifname = %att.ifname, netns = %att.netns, network = %req.conf.name, job = %req.job(), "ADD");
    if req.conf.ipam.is_some() {
        if req.conf.jobnet.rails == Rails::All {
            return Err(CniError::new(
                ErrorCode::UnsupportedField,
                "\"rails\": \"all\" needs jobnetd (a config without an \"ipam\" section)",
            ));
        }
        add_with_delegated_ipam(req, faults)
    } else {
        add_with_daemon(req, faults)
    }
}

fn add_with_delegated_ipam(
    req: &AddRequest,
    faults: &dyn FaultHook,
) -> Result<CniResult, CniError> {
    let att = &req.env;
    let pci = req.conf.device().ok_or_else(|| {
        CniError::invalid_config(
            "no device to attach: with an \"ipam\" section, set \"deviceID\" (or runtimeConfig.deviceID, as Multus does); without one, jobnetd picks the VF",
        )
    })?;
    let delegate = Delegate::for_ipam(&req.conf, att.cni_path.as_ref(), &req.vars)?;
    let env = DeviceEnv::new(&req.conf);
    let lock = lock_attachment(&env, req, faults).inspect(|l| {
        // The IPAM plugin holds the lock too: killed midway, this ADD may
        // leave it running, and the attachment's DEL must wait for it or
        // the allocation it makes after that DEL would leak.
        if let Err(e) = l.inherit_by_children() {
            tracing::warn!(error = %e, "IPAM plugin will not hold the attachment lock");
        }
    });
    timings::lap("lock");
    let _lock = lock?;
    std::thread::scope(|s| {
        // The IPAM plugin runs on a helper thread while the VF moves into
        // the pod: only the pod's addresses and routes need its answer, and
        // they come after the move.
        let ipam = delegate
            .as_ref()
            .map(|d| LateIpam::new(s, d, req.conf.cni_version));
        device::block_on(add_delegated(req, faults, &env, pci, ipam.as_ref()))?
    })
}

/// The delegated IPAM plugin's ADD on a helper thread: started by the VF's
/// move (or when its answer is needed first), its answer kept once taken.
struct LateIpam<'scope> {
    run: Overlapped<'scope, Result<CniResult, CniError>>,
    delegate: &'scope Delegate<'scope>,
    started: std::sync::atomic::AtomicBool,
    answer: std::sync::OnceLock<Result<CniResult, CniError>>,
}

impl<'scope> LateIpam<'scope> {
    fn new<'env>(
        s: &'scope std::thread::Scope<'scope, 'env>,
        delegate: &'scope Delegate<'scope>,
        version: CniVersion,
    ) -> Self {
        Self {
            run: Overlapped::new(s, move || delegate.add(version)),
            delegate,
            started: std::sync::atomic::AtomicBool::new(false),
            answer: std::sync::OnceLock::new(),
        }
    }

    fn start(&self) {
        self.started
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.run.start();
    }

    /// The plugin's answer, running it now if nothing started it.
    fn answer(&self) -> &Result<CniResult, CniError> {
        self.start();
        self.answer.get_or_init(|| {
            self.run.wait().unwrap_or_else(|| {
                Err(CniError::new(
                    ErrorCode::IoFailure,
                    "the IPAM plugin's runner did not finish",
                ))
            })
        })
    }

    /// The answer if the plugin was started (`None`: it never ran, so
    /// there is no allocation to hand back).
    fn settled(&self) -> Option<&Result<CniResult, CniError>> {
        self.started
            .load(std::sync::atomic::Ordering::SeqCst)
            .then(|| self.answer())
    }
}

async fn add_delegated(
    req: &AddRequest,
    faults: &dyn FaultHook,
    env: &DeviceEnv,
    pci: jobnet_hw::PciAddr,
    ipam: Option<&LateIpam<'_>>,
) -> Result<CniResult, CniError> {
    let att = &req.env;
    let (ifname, netns) = (att.ifname.as_str(), att.netns.as_str());
    // Read before the attach replaces the cache (see the refusal below).
    let was_finished = ipam.is_some() && finished(env, req);
    let prepared = sriov::Prepared::new(&env.sysfs, pci, att.netns.as_path());
    timings::lap("prepare");
    let ctx = env.context(faults);
    let spec_with = |ips: &[IpConfig], routes: &[crate::protocol::result::Route]| {
        device::attach_spec(
            &req.conf,
            att.container_id.as_str(),
            ifname,
            netns,
            pci,
            ips,
            routes,
        )
    };
    // What the pod gets from the plugin's answer: the result, and the spec
    // whose addresses and routes it names.
    let outcome = || -> Result<(CniResult, sriov::AttachSpec), CniError> {
        let allocation = ipam.map(|i| i.answer().clone()).transpose()?;
        let ipam_routes = allocation
            .as_ref()
            .map(|a| a.routes.clone())
            .unwrap_or_default();
        let result = build_result(&req.conf, ifname, netns, allocation);
        let spec = spec_with(&own_ips(&result, ifname, netns), &ipam_routes);
        Ok((result, spec))
    };
    let late = || outcome().ok().map(|(_, s)| (s.addresses, s.routes));
    let result = || outcome().map(|(r, _)| r);
    // Everything but the addresses and routes, which `late` gives.
    let spec = spec_with(&[], &[]);
    let opts = AttachOptions {
        ownership: Ownership::Local,
        network: Some(req.conf.name.as_str().to_owned()),
    };
    let beside = match ipam {
        Some(i) => Beside::Ipam {
            ipam: i,
            late: &late,
        },
        None => Beside::Nothing,
    };
    let attached = attach_and_commit(
        env,
        &ctx,
        std::slice::from_ref(&spec),
        &result,
        beside,
        &opts,
        Some(prepared),
    )
    .await;
    timings::lap("ipam_settled");
    let Some(i) = ipam else {
        return attached.map_err(|f| f.error);
    };
    match (attached, i.settled()) {
        (Ok(result), _) => Ok(result),
        // A replay's repeat allocation stays the finished attachment's.
        (Err(f), _) if f.keep => Err(f.error),
        // Never ran: nothing was allocated.
        (Err(f), None) => Err(f.error),
        (Err(f), Some(Ok(_))) => {
            release_ipam(i.delegate);
            Err(f.error)
        }
        (Err(_), Some(Err(e))) => {
            // Spec section 4: a failed delegated ADD is followed by its
            // DEL; but not when this ADD repeats one that finished (most
            // IPAM plugins, host-local among them, refuse a second
            // allocation for one attachment): that allocation is the
            // finished attachment's, in use by the pod, and only the
            // attachment's own DEL may hand it back.
            if !was_finished {
                release_ipam(i.delegate);
            }
            Err(e.clone())
        }
    }
}

/// True when an earlier ADD of this attachment finished (its cache holds
/// the printed result); it stays until its DEL.
fn finished(env: &DeviceEnv, req: &AddRequest) -> bool {
    let path = sriov::cache::path_for(
        &env.state,
        req.env.container_id.as_str(),
        req.env.ifname.as_str(),
    );
    sriov::cache::load::<sriov::record::AttachmentRecord>(&path).is_ok_and(|r| r.result.is_some())
}

fn add_with_daemon(req: &AddRequest, faults: &dyn FaultHook) -> Result<CniResult, CniError> {
    let att = &req.env;
    let env = DeviceEnv::new(&req.conf);
    let lock = lock_attachment(&env, req, faults);
    timings::lap("lock");
    let _lock = lock?;
    let ctx = env.context(faults);
    let client = daemon::client(&req.conf.jobnet.daemon_socket);
    let key = AttachmentKey::new(att.container_id.as_str(), att.ifname.as_str());
    let request = ReserveRequest {
        container_id: att.container_id.as_str().to_owned(),
        ifname: att.ifname.as_str().to_owned(),
        netns: att.netns.as_str().to_owned(),
        job: req.job().as_str().to_owned(),
        rank: req.rank().map(|r| r.0),
        gpus: req
            .gpus()
            .map(|g| g.iter().map(|x| x.to_string()).collect())
            .unwrap_or_default(),
        device_id: req.conf.device(),
        rails: match req.conf.jobnet.rails {
            Rails::One => ApiRails::One,
            Rails::All => ApiRails::All,
        },
        pool: req.conf.jobnet.pool.clone(),
        network: Some(req.conf.name.as_str().to_owned()),
    };
    std::thread::scope(|s| {
        // The commit takes the time the VF spends in the kernel's move into
        // the pod (see `overlap`); it is joined before anything uses its
        // outcome or releases the reservation.
        let commit = Overlapped::new(s, || device::block_on(client.commit(&key)));
        device::block_on(async {
            daemon::flush_releases(&client, env.state.root()).await;
            timings::lap("flush");
            // With the VF named in the config, the attach is prepared while
            // jobnetd answers (jobnetd picks it otherwise).
            let prepare = async {
                // The preparation is blocking work: let the reserve's
                // request go out first (its connect waits for the socket's
                // readiness, which the runtime sees on its next turn).
                for _ in 0..2 {
                    tokio::task::yield_now().await;
                }
                req.conf
                    .device()
                    .map(|pci| sriov::Prepared::new(&env.sysfs, pci, att.netns.as_path()))
            };
            let (reservation, prepared) = tokio::join!(client.reserve(&request), prepare);
            timings::lap("reserve");
            let reservation = reservation.map_err(|e| daemon::api_error(&e))?;
            let daemon = Commit {
                client: &client,
                key: &key,
                commit: &commit,
            };
            match attach_reserved(req, &env, &ctx, &daemon, &reservation, prepared).await {
                Ok(result) => Ok(result),
                Err(f) => {
                    if !f.keep {
                        if let Err(e) = client.release(&key).await {
                            tracing::warn!(error = %e, "releasing the reservation after a failed ADD");
                        }
                    }
                    Err(f.error)
                }
            }
        })?
    })
}

/// What a jobnetd commit returns, from the helper thread that made it.
type CommitOutcome = Result<Result<jobnet_api::Attachment, jobnet_api::ApiError>, CniError>;

/// The daemon side of an ADD through jobnetd: its client, the attachment's
/// key, and the commit waiting to start with the last VF's move.
struct Commit<'a, 'scope> {
    client: &'a jobnet_api::Client,
    key: &'a AttachmentKey,
    commit: &'a Overlapped<'scope, CommitOutcome>,
}

impl Commit<'_, '_> {
    /// Waits for the commit (starting it if no move did) and maps its error.
    fn finish(&self) -> Result<(), CniError> {
        match self.commit.finish() {
            Some(Ok(Ok(_))) => Ok(()),
            Some(Ok(Err(e))) => Err(daemon::commit_error(&e)),
            Some(Err(e)) => Err(e),
            None => Err(CniError::new(
                ErrorCode::IoFailure,
                "the commit at jobnetd did not run to its end",
            )),
        }
    }
}

async fn attach_reserved(
    req: &AddRequest,
    env: &DeviceEnv,
    ctx: &sriov::Context<'_>,
    daemon: &Commit<'_, '_>,
    reservation: &jobnet_api::Attachment,
    prepared: Option<sriov::Prepared>,
) -> Result<CniResult, Failed> {
    let att = &req.env;
    if reservation.vfs.is_empty() {
        return Err(CniError::new(ErrorCode::DaemonProtocol, "jobnetd reserved no VF").into());
    }
    // vxlan is jobnetd's: the commit puts each VF's representor on its job
    // rail's bridge; the other modes shape the spec here.
    let mut result: Option<CniResult> = None;
    let mut specs = Vec::with_capacity(reservation.vfs.len());
    // One pod interface per reserved VF (one per rail with `rails: all`),
    // named as jobnetd's NCCL hints name them.
    for (i, vf) in reservation.vfs.iter().enumerate() {
        let ifname = jobnet_api::rail_ifname(att.ifname.as_str(), i, vf.rail);
        let ips: Vec<IpConfig> = reservation
            .addresses
            .iter()
            .filter(|a| a.rail == vf.rail)
            .map(|a| IpConfig {
                interface: None,
                address: a.address,
                gateway: a.gateway,
            })
            .collect();
        let ipam = CniResult {
            ips,
            ..CniResult::default()
        };
        let r = match result.take() {
            None => build_result(&req.conf, &ifname, att.netns.as_str(), Some(ipam)),
            Some(mut r) => {
                let index = r.push_interface(Interface {
                    name: ifname.clone(),
                    sandbox: Some(att.netns.as_str().to_owned()),
                    ..Interface::default()
                });
                r.ips.extend(ipam.ips.into_iter().map(|ip| IpConfig {
                    interface: Some(index),
                    ..ip
                }));
                r
            }
        };
        let mut spec = device::attach_spec(
            &req.conf,
            att.container_id.as_str(),
            &ifname,
            att.netns.as_str(),
            vf.pci,
            &own_ips(&r, &ifname, att.netns.as_str()),
            &[],
        );
        // A configured MAC and the runtime's device-info path belong to
        // the first interface; the others get their own device-info files.
        if i > 0 {
            spec.mac = None;
            spec.devinfo_path = sriov::devinfo::path_for(
                None,
                req.conf.name.as_str(),
                att.container_id.as_str(),
                &ifname,
            );
        }
        spec.mtu = spec.mtu.or(reservation.mtu);
        daemon::apply_isolation(&mut spec, &reservation.isolation_on(vf.rail))?;
        specs.push(spec);
        result = Some(r);
    }
    let result = result.unwrap_or_default();
    timings::lap("spec");
    let opts = AttachOptions {
        ownership: Ownership::Daemon,
        network: Some(req.conf.name.as_str().to_owned()),
    };
    attach_and_commit(
        env,
        ctx,
        &specs,
        &|| Ok(result.clone()),
        Beside::Daemon(daemon),
        &opts,
        prepared,
    )
    .await
}

/// Attaches every spec (one per rail), commits in the daemon (when there is
/// one; with `vxlan` that joins the job's bridges), then commits the caches;
/// a failure at any step undoes everything done before it, in reverse (the
/// caller releases the reservation, which undoes the daemon's part). The
/// daemon's commit runs while the last VF moves into the pod; a failure
/// after that waits for it, so that the caller's release comes after it.
async fn attach_and_commit(
    env: &DeviceEnv,
    ctx: &sriov::Context<'_>,
    specs: &[sriov::AttachSpec],
    result: &dyn Fn() -> Result<CniResult, CniError>,
    beside: Beside<'_, '_>,
    opts: &AttachOptions,
    mut prepared: Option<sriov::Prepared>,
) -> Result<CniResult, Failed> {
    let daemon = match &beside {
        Beside::Daemon(d) => Some(*d),
        _ => None,
    };
    let mut attached: Vec<sriov::Attachment> = Vec::with_capacity(specs.len());
    let start_beside = || match &beside {
        Beside::Daemon(d) => d.commit.start(),
        Beside::Ipam { ipam, .. } => ipam.start(),
        Beside::Nothing => {}
    };
    let last = specs.len().saturating_sub(1);
    for (i, spec) in specs.iter().enumerate() {
        let on_move: Option<&dyn Fn()> = (i == last).then_some(&start_beside);
        let ready = prepared.take_if(|p| p.is_for(spec));
        let late = match &beside {
            Beside::Ipam { late, .. } if i == 0 => Some(*late),
            _ => None,
        };
        match sriov::attach_overlapped(ctx, spec, opts, on_move, ready, late).await {
            Ok(a) => attached.push(a),
            Err(e) => {
                if let Some(d) = daemon {
                    drop(d.commit.wait());
                }
                abort_all(env, attached).await;
                return Err(device::attach_error(&e).into());
            }
        }
    }
    if attached.iter().all(|a| a.is_replay()) {
        // A retried ADD whose attachment is complete and live (the kernel
        // was checked): answer exactly as before. It is not this run's to
        // undo, whatever fails now.
        let keep = |error| Failed { error, keep: true };
        if let Some(d) = daemon {
            // No move started it: the replay commits in its own way.
            drop(d.commit.wait());
            d.client
                .commit(d.key)
                .await
                .map_err(|e| keep(daemon::replay_commit_error(&e)))?;
        }
        // The delegated plugin is asked again, as for any ADD; its refusal
        // fails the repeat and leaves the attachment as it is.
        result().map_err(keep)?;
        let stored = attached
            .first()
            .and_then(|a| a.record.result.clone())
            .unwrap_or_default();
        let (_, prev) =
            CniResult::parse(&stored, CniVersion::LATEST, "cached result").map_err(keep)?;
        return Ok(prev);
    }
    let mut result = match result() {
        Ok(r) => r,
        Err(e) => {
            // Only when no move asked for the addresses (a VF without a
            // netdev): the plugin's refusal undoes the attach.
            abort_all(env, attached).await;
            return Err(e.into());
        }
    };
    for (spec, a) in specs.iter().zip(&attached) {
        device::describe_interface(&mut result, &spec.ifname, &a.record);
    }
    if let Some(d) = daemon {
        let committed = d.finish();
        timings::lap("commit_wait");
        if let Err(e) = committed {
            abort_all(env, attached).await;
            return Err(e.into());
        }
    }
    let siblings: Vec<String> = specs.iter().skip(1).map(|s| s.ifname.clone()).collect();
    if let Some(first) = attached.first_mut() {
        first.record.siblings = siblings;
    }
    let json = result.to_json(CniVersion::LATEST);
    let mut committed: Vec<(String, String)> = Vec::new();
    let mut rest = attached.into_iter();
    while let Some(a) = rest.next() {
        let who = (a.record.container_id.clone(), a.record.ifname.clone());
        if let Err(e) = a.commit(&env.sysfs, &env.state, json.clone()).await {
            // commit() has put this VF back; undo the others.
            abort_all(env, rest.collect()).await;
            for (cid, ifname) in committed.iter().rev() {
                let ctx = env.context(&sriov::NoFaults);
                sriov::detach(&ctx, cid, ifname, None, None, None).await;
            }
            return Err(device::attach_error(&e).into());
        }
        committed.push(who);
    }
    timings::lap("cache_commit");
    Ok(result)
}

/// What runs beside the attach, started by the (last) VF's move.
enum Beside<'a, 'scope> {
    /// Nothing (delegated mode without an IPAM plugin).
    Nothing,
    /// jobnetd's commit.
    Daemon(&'a Commit<'a, 'scope>),
    /// The delegated IPAM plugin's ADD, whose addresses `late` gives the
    /// attach once the VF is in the pod.
    Ipam {
        ipam: &'a LateIpam<'scope>,
        late: sriov::LateAddresses<'a>,
    },
}

/// Undoes attaches that were not committed, last first.
async fn abort_all(env: &DeviceEnv, attached: Vec<sriov::Attachment>) {
    for a in attached.into_iter().rev() {
        a.abort(&env.sysfs).await;
    }
}

/// The result's ips that belong to our interface.
fn own_ips(result: &CniResult, ifname: &str, sandbox: &str) -> Vec<IpConfig> {
    let own = result
        .find_interface(ifname, Some(sandbox))
        .and_then(|i| u32::try_from(i).ok());
    result
        .ips
        .iter()
        .filter(|ip| ip.interface == own)
        .cloned()
        .collect()
}

/// The ADD result: prevResult (if any) plus the pod interface `ifname` in
/// `sandbox`, with the IPAM addresses (or, without IPAM, `runtimeConfig.ips`)
/// pointing at it. DNS comes from prevResult, else IPAM, else the config.
pub fn build_result(
    conf: &NetConf,
    ifname: &str,
    sandbox: &str,
    ipam: Option<CniResult>,
) -> CniResult {
    let mut result = conf
        .prev_result
        .as_ref()
        .map(|p| p.result.clone())
        .unwrap_or_default();
    let index = result.push_interface(Interface {
        name: ifname.to_owned(),
        mac: conf.mac().map(|m| m.to_string()),
        mtu: conf.jobnet.mtu.map(|m| m.get()),
        sandbox: Some(sandbox.to_owned()),
        pci_id: conf.device().map(|d| d.to_string()),
        ..Interface::default()
    });
    match ipam {
        Some(alloc) => {
            result.ips.extend(alloc.ips.into_iter().map(|ip| IpConfig {
                interface: Some(index),
                ..ip
            }));
            result.routes.extend(alloc.routes);
            if result.dns.is_empty() {
                result.dns = alloc.dns;
            }
        }
        None => result
            .ips
            .extend(conf.runtime.ips.iter().map(|&address| IpConfig {
                interface: Some(index),
                address,
                gateway: None,
            })),
    }
    if result.dns.is_empty() {
        result.dns = conf.dns.clone();
    }
    result
}
