//! The API's error body and its stable machine codes.

use serde::{Deserialize, Serialize};

/// Stable machine code of an API error; the CNI maps it to a CNI error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// The body is not valid JSON for this request.
    MalformedRequest,
    /// A field has an invalid value (empty job, bad interface name, ...).
    InvalidArgument,
    /// The body exceeds the size limit.
    BodyTooLarge,
    /// Unknown path or API version.
    NotFound,
    /// Unsupported HTTP method on a known path.
    MethodNotAllowed,
    /// The caller is not allowed (non-root peer).
    Forbidden,
    /// The named pool does not exist.
    UnknownPool,
    /// The given deviceID is not a VF this daemon manages.
    UnknownDevice,
    /// The attachment is not recorded.
    UnknownAttachment,
    /// The VF is owned by another attachment.
    DeviceBusy,
    /// The VF is bound to a userspace driver.
    DeviceUnavailable,
    /// No free VF is left in the pool.
    NoFreeDevice,
    /// No job subnet, address or isolation ID is left in the pool.
    PoolExhausted,
    /// The request conflicts with recorded state (e.g. same key, other job).
    Conflict,
    /// The state store failed.
    StoreFailure,
    /// A kernel operation of the daemon failed (e.g. the job's bridge).
    KernelFailure,
    /// The daemon is shutting down or cannot be reached.
    Unavailable,
    /// The daemon did not answer in time.
    Timeout,
    /// Anything else.
    Internal,
}

impl ErrorCode {
    /// The HTTP status the daemon answers with.
    pub fn http_status(self) -> u16 {
        match self {
            Self::MalformedRequest | Self::InvalidArgument => 400,
            Self::Forbidden => 403,
            Self::NotFound | Self::UnknownPool | Self::UnknownDevice | Self::UnknownAttachment => {
                404
            }
            Self::MethodNotAllowed => 405,
            Self::DeviceBusy | Self::DeviceUnavailable | Self::Conflict => 409,
            Self::BodyTooLarge => 413,
            Self::NoFreeDevice | Self::PoolExhausted => 507,
            Self::StoreFailure | Self::KernelFailure | Self::Internal => 500,
            Self::Unavailable => 503,
            Self::Timeout => 504,
        }
    }

    /// The CNI error code (spec 1.1.0; 100+ as in docs/errors.md, 107-109 added by docs/api.md).
    pub fn cni_code(self) -> u32 {
        match self {
            Self::MalformedRequest | Self::InvalidArgument | Self::UnknownPool => 7,
            Self::UnknownAttachment => 3,
            Self::StoreFailure => 5,
            // The daemon may be restarting: the runtime should retry.
            Self::Unavailable | Self::Timeout => 11,
            Self::UnknownDevice => 100,
            Self::DeviceBusy | Self::DeviceUnavailable => 101,
            Self::BodyTooLarge | Self::NotFound | Self::MethodNotAllowed | Self::Forbidden => 103,
            Self::PoolExhausted => 107,
            Self::NoFreeDevice => 108,
            Self::Conflict => 109,
            Self::KernelFailure => 102,
            Self::Internal => 999,
        }
    }

    /// The code as it appears in JSON (`pool-exhausted`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedRequest => "malformed-request",
            Self::InvalidArgument => "invalid-argument",
            Self::BodyTooLarge => "body-too-large",
            Self::NotFound => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::Forbidden => "forbidden",
            Self::UnknownPool => "unknown-pool",
            Self::UnknownDevice => "unknown-device",
            Self::UnknownAttachment => "unknown-attachment",
            Self::DeviceBusy => "device-busy",
            Self::DeviceUnavailable => "device-unavailable",
            Self::NoFreeDevice => "no-free-device",
            Self::PoolExhausted => "pool-exhausted",
            Self::Conflict => "conflict",
            Self::StoreFailure => "store-failure",
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
            Self::KernelFailure => "kernel-failure",
            Self::Internal => "internal",
        }
    }

    /// Every code, for tables and metrics.
    pub const ALL: [ErrorCode; 19] = [
        Self::MalformedRequest,
        Self::InvalidArgument,
        Self::BodyTooLarge,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::Forbidden,
        Self::UnknownPool,
        Self::UnknownDevice,
        Self::UnknownAttachment,
        Self::DeviceBusy,
        Self::DeviceUnavailable,
        Self::NoFreeDevice,
        Self::PoolExhausted,
        Self::Conflict,
        Self::StoreFailure,
        Self::KernelFailure,
        Self::Unavailable,
        Self::Timeout,
        Self::Internal,
    ];
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An API error: the JSON body of every non-2xx answer, and what the client returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "camelCase")]
#[error("{code}: {message}")]
pub struct ApiError {
    /// Stable machine code.
    pub code: ErrorCode,
    /// Human-readable detail.
    pub message: String,
}

impl ApiError {
    /// Builds an error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The CNI error code for this error.
    pub fn cni_code(&self) -> u32 {
        self.code.cni_code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_code_matches_as_str_for_every_code() {
        for c in ErrorCode::ALL {
            let j = serde_json::to_string(&c).unwrap();
            assert_eq!(j, format!("\"{}\"", c.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&j).unwrap(), c);
            assert!((400..600).contains(&c.http_status()));
        }
    }

    #[test]
    fn cni_mapping_of_key_codes() {
        assert_eq!(ErrorCode::Unavailable.cni_code(), 11);
        assert_eq!(ErrorCode::MalformedRequest.cni_code(), 7);
        assert_eq!(ErrorCode::PoolExhausted.cni_code(), 107);
        assert_eq!(ErrorCode::DeviceBusy.cni_code(), 101);
        let e = ApiError::new(ErrorCode::NoFreeDevice, "pool p: none left");
        assert_eq!(e.to_string(), "no-free-device: pool p: none left");
        let j = serde_json::to_value(&e).unwrap();
        assert_eq!(j["code"], "no-free-device");
    }
}
