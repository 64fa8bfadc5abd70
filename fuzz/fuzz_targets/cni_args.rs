//! CNI_ARGS and the rest of the CNI_* environment.
//!
//! The input's first line is CNI_ARGS; further lines, when present,
//! replace CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME and
//! CNI_PATH in that order (an ADD of a valid attachment otherwise, so the
//! whole environment check reaches CNI_ARGS). The environment is read
//! lossily as UTF-8, as `jobnet_cni::run` reads the real one.
#![no_main]

use jobnet_cni::protocol::args::CniArgs;
use jobnet_cni::protocol::env::{self, EnvMap, Invocation};
use jobnet_cni::protocol::values::GpuRef;
use libfuzzer_sys::fuzz_target;

const OTHER_VARS: [(&str, &str); 5] = [
    ("CNI_COMMAND", "ADD"),
    ("CNI_CONTAINERID", "c0ffee"),
    ("CNI_NETNS", "/run/netns/pod"),
    ("CNI_IFNAME", "net1"),
    ("CNI_PATH", "/opt/cni/bin"),
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let cni_args = lines.next().unwrap_or_default();

    match CniArgs::parse(cni_args) {
        Ok(args) => {
            assert!(
                args.ignore_unknown || args.unknown.is_empty(),
                "unknown keys accepted without IgnoreUnknown"
            );
            for gpu in args.gpus.iter().flatten() {
                // The daemon gets GPUs back as strings and parses them again.
                let again: GpuRef = gpu.to_string().parse().unwrap_or_else(|e| {
                    panic!("GPU {gpu:?} does not survive its own string form: {e}")
                });
                assert_eq!(&again, gpu);
            }
            if let Some(job) = &args.job {
                assert!(!job.as_str().contains('/'), "job name with a slash");
            }
        }
        Err(e) => {
            let _ = e.to_json("1.1.0");
        }
    }

    let mut vars = EnvMap::new();
    vars.insert("CNI_ARGS".to_owned(), cni_args.to_owned());
    for (key, default) in OTHER_VARS {
        let value = lines.next().unwrap_or(default);
        vars.insert(key.to_owned(), value.to_owned());
    }
    if let Ok(Invocation::Add(a) | Invocation::Check(a)) = env::parse(&vars) {
        assert!(!a.container_id.as_str().is_empty());
        assert!(a.netns.as_str().starts_with('/'));
    }
});
