//! One function per CNI verb, each taking a parsed request. Device work
//! (the VF attach in `crate::sriov`) plugs into `add`, `del`, `check`,
//! `status` and `gc`; the protocol around it is complete here.

mod add;
mod check;
mod del;
mod gc;
mod status;
mod version;

pub use add::{add, build_result};
pub use check::check;
pub use del::del;
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
pub fn dispatch(inv: Invocation, conf: NetConf, vars: EnvMap) -> Result<Outcome, CniError> {
    match inv {
        Invocation::Add(env) => {
            let version = conf.cni_version;
            add(&Request { conf, env, vars }).map(|result| Outcome::Result { result, version })
        }
        Invocation::Del(env) => del(&Request { conf, env, vars }).map(|()| Outcome::Nothing),
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
