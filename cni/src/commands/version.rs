//! VERSION.

use crate::protocol::version::CniVersion;

/// The VERSION answer: `cniVersion` echoes the input's version when jobnet
/// speaks it (else the newest), `supportedVersions` lists every version.
pub fn version(requested: Option<CniVersion>) -> serde_json::Value {
    serde_json::json!({
        "cniVersion": requested.unwrap_or(CniVersion::LATEST).as_str(),
        "supportedVersions": CniVersion::ALL.map(|v| v.as_str()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_all_versions() {
        assert_eq!(
            version(None),
            serde_json::json!({"cniVersion": "1.1.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
        );
        assert_eq!(version(Some(CniVersion::V0_4_0))["cniVersion"], "0.4.0");
    }
}
