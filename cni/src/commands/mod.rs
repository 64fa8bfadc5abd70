//! One function per CNI verb, each taking a parsed request. Device work
//! (the VF attach in `crate::sriov`) plugs into `add`, `del`, `check`,
//! `status` and `gc`; the protocol around it is complete here.

mod add;
mod check;
mod daemon;
mod del;
pub mod device;
mod gc;
mod overlap;
mod status;
mod version;

pub use add::{add, add_with, build_result};
pub use check::check;
pub use del::{del, del_with};
pub use gc::gc;
pub use status::status;
pub use version::version;

use crate::protocol::config::NetConf;
use crate::protocol::env::{Attachment, CniPath, EnvMap, Invocation};
use crate::protocol::error::{CniError, ErrorCode};
use crate::protocol::names::NetnsPath;
use crate::protocol::result::CniResult;
use crate::protocol::values::{GpuRef, JobName, Rank};
use crate::protocol::version::CniVersion;

/// A verb's input: the config, the verb's environment, and the raw
/// environment (passed unchanged to delegated plugins).
#[derive(Debug, Clone)]
pub struct Request<E> {
    /// The validated network config.
    pub conf: NetConf,
    /// The validated environment for this verb.
    pub env: E,
    /// The whole process environment.
    pub vars: EnvMap,
}

/// ADD's input.
pub type AddRequest = Request<Attachment<NetnsPath>>;
/// DEL's input (the netns may be gone).
pub type DelRequest = Request<Attachment<Option<NetnsPath>>>;
/// CHECK's input.
pub type CheckRequest = Request<Attachment<NetnsPath>>;
/// STATUS's input.
pub type StatusRequest = Request<Option<CniPath>>;
/// GC's input.
pub type GcRequest = Request<CniPath>;

impl<N> Request<Attachment<N>> {
    /// The job: config `job`, else `args.cni.job`, else CNI_ARGS `JOBNET_JOB`,
    /// else the network name.
    pub fn job(&self) -> JobName {
        self.conf
            .jobnet
            .job
            .clone()
            .or_else(|| self.conf.cni_args.job.clone())
            .or_else(|| self.env.args.job.clone())
            .unwrap_or_else(|| JobName::from(&self.conf.name))
    }

    /// The rank: `args.cni.rank`, else CNI_ARGS `JOBNET_RANK`.
    pub fn rank(&self) -> Option<Rank> {
        self.conf.cni_args.rank.or(self.env.args.rank)
    }

    /// The pod's GPUs: `args.cni.gpus`, else CNI_ARGS `JOBNET_GPUS`.
    pub fn gpus(&self) -> Option<&[GpuRef]> {
        self.conf
            .cni_args
            .gpus
            .as_deref()
            .or(self.env.args.gpus.as_deref())
    }
}

/// What a verb produced for stdout.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A result to print in `version`, the config's version (ADD).
    Result {
        /// The result.
        result: CniResult,
        /// The version to print it in.
        version: CniVersion,
    },
    /// Arbitrary JSON to print as is (VERSION).
    Json(serde_json::Value),
    /// Nothing to print (DEL, CHECK, STATUS, GC).
    Nothing,
}

fn version_gate(conf: &NetConf, allowed: bool, verb: &str) -> Result<(), CniError> {
    if allowed {
        Ok(())
    } else {
        Err(CniError::new(
            ErrorCode::IncompatibleVersion,
            format!("config version {} does not allow {verb}", conf.cni_version),
        ))
    }
}

/// Runs the verb. The netns has already been verified for ADD and CHECK.
pub fn dispatch(
    inv: Invocation,
    conf: NetConf,
    vars: EnvMap,
    faults: &dyn crate::sriov::FaultHook,
) -> Result<Outcome, CniError> {
    match inv {
        Invocation::Add(env) => {
            let version = conf.cni_version;
            add_with(&Request { conf, env, vars }, faults)
                .map(|result| Outcome::Result { result, version })
        }
        Invocation::Del(env) => {
            del_with(&Request { conf, env, vars }, faults).map(|()| Outcome::Nothing)
        }
        Invocation::Check(env) => {
            version_gate(&conf, conf.cni_version.allows_check(), "CHECK")?;
            check(&Request { conf, env, vars }).map(|()| Outcome::Nothing)
        }
        Invocation::Status { cni_path } => {
            version_gate(&conf, conf.cni_version.allows_gc_and_status(), "STATUS")?;
            status(&Request {
                conf,
                env: cni_path,
                vars,
            })
            .map(|()| Outcome::Nothing)
        }
        Invocation::Gc { cni_path } => {
            version_gate(&conf, conf.cni_version.allows_gc_and_status(), "GC")?;
            gc(&Request {
                conf,
                env: cni_path,
                vars,
            })
            .map(|()| Outcome::Nothing)
        }
        Invocation::Version => Ok(Outcome::Json(version(Some(conf.cni_version)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::args::CniArgs;
    use crate::protocol::names::{ContainerId, IfName};

    fn req(conf: serde_json::Value, cni_args: &str) -> Request<Attachment<()>> {
        Request {
            conf: NetConf::parse(conf.to_string().as_bytes()).unwrap(),
            env: Attachment {
                container_id: ContainerId::new("c1").unwrap(),
                ifname: IfName::new("net1").unwrap(),
                netns: (),
                args: CniArgs::parse(cni_args).unwrap(),
                cni_path: None,
            },
            vars: EnvMap::new(),
        }
    }

    #[test]
    fn job_rank_gpus_resolution_order() {
        let base = serde_json::json!({"cniVersion": "1.0.0", "name": "net-a", "type": "jobnet"});
        let r = req(base.clone(), "");
        assert_eq!(r.job().as_str(), "net-a");
        assert_eq!(r.rank(), None);
        assert_eq!(r.gpus(), None);

        let r = req(
            base.clone(),
            "JOBNET_JOB=from-env;JOBNET_RANK=4;JOBNET_GPUS=1",
        );
        assert_eq!(r.job().as_str(), "from-env");
        assert_eq!(r.rank(), Some(Rank(4)));
        assert_eq!(r.gpus(), Some(&[GpuRef::Index(1)][..]));

        let mut with_args = base.clone();
        with_args["args"] =
            serde_json::json!({"cni": {"job": "from-args", "rank": 7, "gpus": [2]}});
        let r = req(
            with_args.clone(),
            "JOBNET_JOB=from-env;JOBNET_RANK=4;JOBNET_GPUS=1",
        );
        assert_eq!(r.job().as_str(), "from-args");
        assert_eq!(r.rank(), Some(Rank(7)));
        assert_eq!(r.gpus(), Some(&[GpuRef::Index(2)][..]));

        with_args["job"] = serde_json::json!("from-conf");
        let r = req(with_args, "JOBNET_JOB=from-env");
        assert_eq!(r.job().as_str(), "from-conf");
    }

    #[test]
    fn build_result_without_ipam_uses_runtime_ips_and_config_dns() {
        let conf = NetConf::parse(
            serde_json::json!({"cniVersion": "1.1.0", "name": "n", "type": "jobnet",
                "dns": {"nameservers": ["10.0.0.53"]},
                "runtimeConfig": {"ips": ["10.0.0.9/24"]}})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let r = build_result(&conf, "net1", "/run/netns/x", None);
        assert_eq!(
            r.to_json(CniVersion::V1_1_0),
            serde_json::json!({"cniVersion": "1.1.0",
                "interfaces": [{"name": "net1", "sandbox": "/run/netns/x"}],
                "ips": [{"interface": 0, "address": "10.0.0.9/24"}],
                "dns": {"nameservers": ["10.0.0.53"]}})
        );
    }
}
