//! The network config on the plugin's stdin, as `jobnet_cni::run_with`
//! reads it: the version peek, the full parse (prevResult included), and
//! the error JSON written when the parse fails.
#![no_main]

use jobnet_cni::protocol::config::{peek_version, NetConf};
use jobnet_cni::protocol::version::CniVersion;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let peeked = peek_version(data);
    match NetConf::parse(data) {
        Ok(conf) => {
            // A config that parses has a version, and the error path must
            // then report in that same version.
            assert_eq!(peeked, Some(conf.cni_version), "peek disagrees with parse");
            let _ = (conf.device(), conf.mac(), conf.ib_guid());
            if let Some(prev) = &conf.prev_result {
                // ADD answers with the prevResult extended, in the config's version.
                let _ = prev.result.to_json(conf.cni_version);
            }
            // Delegated plugins get the exact bytes.
            assert_eq!(conf.raw, data, "raw bytes not kept");
            // Parsing is a pure function of the bytes.
            assert_eq!(NetConf::parse(data).ok().as_ref(), Some(&conf));
        }
        Err(e) => {
            let version = peeked.unwrap_or(CniVersion::LATEST);
            let out = e.to_json(version.as_str());
            assert!(out.is_object(), "error JSON is not an object");
        }
    }
});
