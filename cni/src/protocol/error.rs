//! CNI error results: the `{cniVersion, code, msg, details}` object printed on
//! stdout when an operation fails.

use std::fmt;

/// A CNI error code: the spec's well-known codes (0-99) and jobnet's own (100+).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 1: the requested `cniVersion` is not supported.
    IncompatibleVersion,
    /// 2: a field (in the config or CNI_ARGS) is not supported; msg names key and value.
    UnsupportedField,
    /// 3: the container is unknown; the runtime need not clean up.
    UnknownContainer,
    /// 4: a required environment variable is missing or invalid; msg names it.
    InvalidEnvironment,
    /// 5: reading input or writing output failed.
    IoFailure,
    /// 6: content could not be decoded (JSON syntax, CNI_ARGS syntax, oversize input).
    DecodeFailure,
    /// 7: the network configuration is invalid.
    InvalidNetworkConfig,
    /// 11: a transient condition; the runtime should retry later.
    TryAgainLater,
    /// 50: the plugin cannot service ADD requests (STATUS).
    PluginNotAvailable,
    /// 51: the plugin cannot service ADD and existing containers may have limited connectivity.
    LimitedConnectivity,
    /// 100: the device (VF, PCI address, RDMA device) does not exist.
    DeviceNotFound,
    /// 101: the device is in use by another attachment.
    DeviceBusy,
    /// 102: a kernel operation (netlink, setns, sysfs write) failed.
    KernelOperationFailed,
    /// 103: jobnetd answered something jobnet does not understand, or the exchange broke.
    DaemonProtocol,
    /// 104: the config requires RDMA but the device has none.
    RdmaUnavailable,
    /// 105: a delegated plugin (IPAM) could not be run or gave no CNI answer.
    DelegateFailed,
    /// 106: CHECK found the attachment not in the state ADD left it in.
    CheckFailed,
    /// 999: a bug in jobnet (the code Go's skel uses for untyped errors).
    Internal,
    /// Any other code, e.g. propagated unchanged from a delegated plugin.
    Other(u32),
}

impl ErrorCode {
    /// The numeric code printed in the error object.
    pub fn number(self) -> u32 {
        match self {
            Self::IncompatibleVersion => 1,
            Self::UnsupportedField => 2,
            Self::UnknownContainer => 3,
            Self::InvalidEnvironment => 4,
            Self::IoFailure => 5,
            Self::DecodeFailure => 6,
            Self::InvalidNetworkConfig => 7,
            Self::TryAgainLater => 11,
            Self::PluginNotAvailable => 50,
            Self::LimitedConnectivity => 51,
            Self::DeviceNotFound => 100,
            Self::DeviceBusy => 101,
            Self::KernelOperationFailed => 102,
            Self::DaemonProtocol => 103,
            Self::RdmaUnavailable => 104,
            Self::DelegateFailed => 105,
            Self::CheckFailed => 106,
            Self::Internal => 999,
            Self::Other(n) => n,
        }
    }

    /// Maps a number back to its named code (unknown numbers become `Other`).
    pub fn from_number(n: u32) -> Self {
        match n {
            1 => Self::IncompatibleVersion,
            2 => Self::UnsupportedField,
            3 => Self::UnknownContainer,
            4 => Self::InvalidEnvironment,
            5 => Self::IoFailure,
            6 => Self::DecodeFailure,
            7 => Self::InvalidNetworkConfig,
            11 => Self::TryAgainLater,
            50 => Self::PluginNotAvailable,
            51 => Self::LimitedConnectivity,
            100 => Self::DeviceNotFound,
            101 => Self::DeviceBusy,
            102 => Self::KernelOperationFailed,
            103 => Self::DaemonProtocol,
            104 => Self::RdmaUnavailable,
            105 => Self::DelegateFailed,
            106 => Self::CheckFailed,
            999 => Self::Internal,
            n => Self::Other(n),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number())
    }
}

/// A failed CNI operation, as the runtime will see it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct CniError {
    /// The error code.
    pub code: ErrorCode,
    /// A short message characterizing the error.
    pub msg: String,
    /// A longer description (may be empty).
    pub details: String,
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.details.is_empty() {
            write!(f, "[{}] {}", self.code, self.msg)
        } else {
            write!(f, "[{}] {}: {}", self.code, self.msg, self.details)
        }
    }
}

impl CniError {
    /// An error with a code and a message, no details.
    pub fn new(code: ErrorCode, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// Adds the longer description.
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// Code 4 (invalid environment).
    pub fn invalid_env(msg: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidEnvironment, msg)
    }

    /// Code 6 (decode failure).
    pub fn decode(msg: impl Into<String>) -> Self {
        Self::new(ErrorCode::DecodeFailure, msg)
    }

    /// Code 7 (invalid network config).
    pub fn invalid_config(msg: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidNetworkConfig, msg)
    }

    /// The JSON error object for the given protocol version.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        serde_json::json!({
            "cniVersion": cni_version,
            "code": self.code.number(),
            "msg": self.msg,
            "details": self.details,
        })
    }

    /// Reads the error object a delegated plugin printed; `None` if it is not one.
    pub fn from_json(value: &serde_json::Value) -> Option<Self> {
        let obj = value.as_object()?;
        let code = obj.get("code")?.as_u64()?;
        let code = u32::try_from(code).ok()?;
        let text = |k: &str| {
            obj.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        Some(Self {
            code: ErrorCode::from_number(code),
            msg: text("msg"),
            details: text("details"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_match_the_spec_numbers() {
        let spec = [
            (ErrorCode::IncompatibleVersion, 1),
            (ErrorCode::UnsupportedField, 2),
            (ErrorCode::UnknownContainer, 3),
            (ErrorCode::InvalidEnvironment, 4),
            (ErrorCode::IoFailure, 5),
            (ErrorCode::DecodeFailure, 6),
            (ErrorCode::InvalidNetworkConfig, 7),
            (ErrorCode::TryAgainLater, 11),
            (ErrorCode::PluginNotAvailable, 50),
            (ErrorCode::LimitedConnectivity, 51),
        ];
        for (code, n) in spec {
            assert_eq!(code.number(), n);
            assert_eq!(ErrorCode::from_number(n), code);
        }
        for n in [0, 8, 100, 106, 999, 12345] {
            assert_eq!(ErrorCode::from_number(n).number(), n);
        }
    }

    #[test]
    fn prints_all_four_keys() {
        let e = CniError::invalid_config("bad vlan").with_details("vlan 5000 > 4094");
        assert_eq!(
            e.to_json("1.1.0"),
            serde_json::json!({"cniVersion": "1.1.0", "code": 7, "msg": "bad vlan", "details": "vlan 5000 > 4094"})
        );
        let back = CniError::from_json(&e.to_json("0.4.0")).unwrap();
        assert_eq!(back, e);
        assert!(CniError::from_json(&serde_json::json!({"msg": "x"})).is_none());
    }
}
