//! The CNI spec versions jobnet speaks.

use std::fmt;

use super::error::{CniError, ErrorCode};

/// A supported CNI spec version. Ordered oldest to newest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CniVersion {
    /// 0.3.0: rich results, chaining.
    V0_3_0,
    /// 0.3.1: typo fixes only.
    V0_3_1,
    /// 0.4.0: CHECK, prevResult on DEL.
    V0_4_0,
    /// 1.0.0: no `version` in ips.
    V1_0_0,
    /// 1.1.0: GC, STATUS, interface mtu/socketPath/pciID, richer routes.
    V1_1_0,
}

impl CniVersion {
    /// Every supported version, oldest first (what VERSION reports).
    pub const ALL: [CniVersion; 5] = [
        Self::V0_3_0,
        Self::V0_3_1,
        Self::V0_4_0,
        Self::V1_0_0,
        Self::V1_1_0,
    ];

    /// The newest version jobnet implements.
    pub const LATEST: CniVersion = Self::V1_1_0;

    /// The version string as it appears in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V0_3_0 => "0.3.0",
            Self::V0_3_1 => "0.3.1",
            Self::V0_4_0 => "0.4.0",
            Self::V1_0_0 => "1.0.0",
            Self::V1_1_0 => "1.1.0",
        }
    }

    /// Looks a version string up; `None` if jobnet does not speak it.
    pub fn from_str_opt(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Like [`Self::from_str_opt`], but as the spec's code-1 error.
    pub fn parse(s: &str) -> Result<Self, CniError> {
        Self::from_str_opt(s).ok_or_else(|| {
            CniError::new(
                ErrorCode::IncompatibleVersion,
                format!("incompatible CNI version {s:?}"),
            )
            .with_details(format!("jobnet supports {}", Self::supported_list()))
        })
    }

    /// `0.3.0, 0.3.1, ...` for messages.
    pub fn supported_list() -> String {
        Self::ALL.map(|v| v.as_str()).join(", ")
    }

    /// Whether results of this version use the 1.x layout (no `version` in ips).
    pub fn is_v1(self) -> bool {
        self >= Self::V1_0_0
    }

    /// CHECK exists from 0.4.0 on.
    pub fn allows_check(self) -> bool {
        self >= Self::V0_4_0
    }

    /// GC and STATUS exist from 1.1.0 on.
    pub fn allows_gc_and_status(self) -> bool {
        self >= Self::V1_1_0
    }
}

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_and_rejects_others_with_code_1() {
        for v in CniVersion::ALL {
            assert_eq!(CniVersion::parse(v.as_str()).unwrap(), v);
        }
        for bad in ["0.1.0", "0.2.0", "1.2.0", "2.0.0", "", "1.1", "v1.1.0"] {
            let e = CniVersion::parse(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::IncompatibleVersion, "{bad}");
        }
        assert!(CniVersion::V0_3_1 < CniVersion::V1_0_0);
        assert!(!CniVersion::V0_3_1.allows_check());
        assert!(CniVersion::V0_4_0.allows_check());
        assert!(!CniVersion::V1_0_0.allows_gc_and_status());
        assert!(CniVersion::V1_1_0.allows_gc_and_status());
    }
}
