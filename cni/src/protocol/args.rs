//! CNI_ARGS: `K=V;K=V` extra arguments from the runtime.
//!
//! Error codes: a malformed pair or an unparseable value is 6 (decode
//! failure, as the spec's example for CNI_ARGS says); an unknown key without
//! `IgnoreUnknown` is 2 (unsupported field, message names key and value).

use super::error::{CniError, ErrorCode};
use super::values::{parse_gpu_list, GpuRef, JobName, Rank};

/// The known CNI_ARGS, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    /// `IgnoreUnknown`: unknown keys are allowed.
    pub ignore_unknown: bool,
    /// `K8S_POD_NAME`.
    pub pod_name: Option<String>,
    /// `K8S_POD_NAMESPACE`.
    pub pod_namespace: Option<String>,
    /// `K8S_POD_INFRA_CONTAINER_ID`.
    pub pod_infra_container_id: Option<String>,
    /// `K8S_POD_UID`.
    pub pod_uid: Option<String>,
    /// `JOBNET_JOB`.
    pub job: Option<JobName>,
    /// `JOBNET_RANK`.
    pub rank: Option<Rank>,
    /// `JOBNET_GPUS` (comma-separated).
    pub gpus: Option<Vec<GpuRef>>,
    /// Keys jobnet does not know (kept only when `IgnoreUnknown` allowed them).
    pub unknown: Vec<(String, String)>,
}

fn parse_bool(key: &str, v: &str) -> Result<bool, CniError> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(CniError::decode(format!(
            "CNI_ARGS: {key}={v:?} is not a boolean (1, true, 0, false)"
        ))),
    }
}

fn non_empty(v: &str) -> Option<String> {
    (!v.is_empty()).then(|| v.to_owned())
}

impl CniArgs {
    /// Parses the CNI_ARGS string (empty means no arguments).
    pub fn parse(s: &str) -> Result<Self, CniError> {
        let mut out = Self::default();
        if s.is_empty() {
            return Ok(out);
        }
        let bad_value = |k: &str, e: &dyn std::fmt::Display| {
            CniError::decode(format!("CNI_ARGS: invalid value for {k}: {e}"))
        };
        for pair in s.split(';') {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                CniError::decode(format!("CNI_ARGS: invalid pair {pair:?}, expected K=V"))
            })?;
            if k.is_empty() {
                return Err(CniError::decode(format!(
                    "CNI_ARGS: invalid pair {pair:?}, empty key"
                )));
            }
            match k {
                "IgnoreUnknown" => out.ignore_unknown = parse_bool(k, v)?,
                "K8S_POD_NAME" => out.pod_name = non_empty(v),
                "K8S_POD_NAMESPACE" => out.pod_namespace = non_empty(v),
                "K8S_POD_INFRA_CONTAINER_ID" => out.pod_infra_container_id = non_empty(v),
                "K8S_POD_UID" => out.pod_uid = non_empty(v),
                "JOBNET_JOB" => out.job = Some(v.parse().map_err(|e| bad_value(k, &e))?),
                "JOBNET_RANK" => out.rank = Some(v.parse().map_err(|e| bad_value(k, &e))?),
                "JOBNET_GPUS" => out.gpus = Some(parse_gpu_list(v).map_err(|e| bad_value(k, &e))?),
                _ => out.unknown.push((k.to_owned(), v.to_owned())),
            }
        }
        if !out.ignore_unknown {
            if let Some((k, v)) = out.unknown.first() {
                return Err(CniError::new(
                    ErrorCode::UnsupportedField,
                    format!("CNI_ARGS: unsupported argument {k}={v}"),
                )
                .with_details("set IgnoreUnknown=1 in CNI_ARGS to ignore unknown arguments"));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_runtime_style_args() {
        let a = CniArgs::parse(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=ml;K8S_POD_NAME=w-0;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1;JOBNET_JOB=llama;JOBNET_RANK=3;JOBNET_GPUS=0,1;FOO=bar",
        )
        .unwrap();
        assert!(a.ignore_unknown);
        assert_eq!(a.pod_namespace.as_deref(), Some("ml"));
        assert_eq!(a.pod_name.as_deref(), Some("w-0"));
        assert_eq!(a.pod_infra_container_id.as_deref(), Some("abc"));
        assert_eq!(a.pod_uid.as_deref(), Some("u-1"));
        assert_eq!(a.job.as_ref().map(|j| j.as_str()), Some("llama"));
        assert_eq!(a.rank, Some(Rank(3)));
        assert_eq!(a.gpus, Some(vec![GpuRef::Index(0), GpuRef::Index(1)]));
        assert_eq!(a.unknown, vec![("FOO".to_owned(), "bar".to_owned())]);
        assert_eq!(CniArgs::parse("").unwrap(), CniArgs::default());
    }

    #[test]
    fn error_codes() {
        let cases = [
            ("FOO=bar", ErrorCode::UnsupportedField),
            ("IgnoreUnknown=0;FOO=bar", ErrorCode::UnsupportedField),
            ("K8S_POD_NAME", ErrorCode::DecodeFailure),
            ("K8S_POD_NAME=a;", ErrorCode::DecodeFailure),
            ("=x", ErrorCode::DecodeFailure),
            ("IgnoreUnknown=yes", ErrorCode::DecodeFailure),
            ("JOBNET_RANK=x", ErrorCode::DecodeFailure),
            ("JOBNET_JOB=../etc", ErrorCode::DecodeFailure),
            ("JOBNET_GPUS=0,,1", ErrorCode::DecodeFailure),
        ];
        for (input, code) in cases {
            let e = CniArgs::parse(input).unwrap_err();
            assert_eq!(e.code, code, "{input}: {e}");
        }
        let e = CniArgs::parse("FOO=bar").unwrap_err();
        assert!(e.msg.contains("FOO=bar"), "{e}");
        assert!(CniArgs::parse("IgnoreUnknown=True;FOO=bar").is_ok());
    }
}
