//! An IPAM plugin for tests that answers every ADD with a fixed result and
//! records the commands it got (a shell script in a temp dir; Debian's
//! reference IPAM plugins stop at CNI 1.0.0, this one speaks 1.1.0 too).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Plugin type name to put in `ipam.type`.
pub const FIXED_IPAM: &str = "fixed-ipam";

const SCRIPT: &str = r#"#!/bin/sh
d=$(dirname "$0")
cat > /dev/null
echo "$CNI_COMMAND $CNI_CONTAINERID" >> "$d/calls"
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"1.1.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}' ;;
ADD) cat "$d/result" ;;
esac
exit 0
"#;

/// The plugin's directory (put it in CNI_PATH), removed on drop.
pub struct FixedIpam {
    dir: tempfile::TempDir,
}

impl FixedIpam {
    /// A plugin whose ADD prints `result`.
    pub fn new(result: &serde_json::Value) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join(FIXED_IPAM);
        fs::write(&script, SCRIPT).expect("write script");
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::write(dir.path().join("result"), result.to_string()).expect("write result");
        Self { dir }
    }

    /// The directory to use as CNI_PATH.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// CNI_PATH as a string.
    pub fn cni_path(&self) -> String {
        self.dir.path().to_str().expect("utf-8 path").to_owned()
    }

    /// `COMMAND CONTAINERID` of every call so far.
    pub fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.dir.path().join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}
