//! Results from a previous plugin or an IPAM delegate (`prevResult`, the
//! delegate's stdout) and their conversion between CNI versions.
//!
//! The first byte picks the version assumed when the result declares none
//! (the config's version); the rest is the JSON text.
#![no_main]

use jobnet_cni::protocol::result::CniResult;
use jobnet_cni::protocol::version::CniVersion;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, json)) = data.split_first() else {
        return;
    };
    let default_version = CniVersion::ALL[usize::from(selector) % CniVersion::ALL.len()];
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(json) else {
        return;
    };
    let Ok((version, result)) = CniResult::parse(&value, default_version, "prevResult") else {
        return;
    };

    // 1.1.0 carries every field of the model, so it must round-trip exactly.
    let latest = result.to_json(CniVersion::LATEST);
    let back = CniResult::parse(&latest, default_version, "result");
    assert_eq!(
        back.as_ref().ok(),
        Some(&(CniVersion::LATEST, result.clone())),
        "1.1.0 round trip lost data: {latest}"
    );

    // The result is read in `version`; writing it back there must be
    // readable and stable.
    let again = result.convert(version);
    assert_eq!(
        again.convert(version),
        again,
        "conversion to {version} not stable"
    );

    for to in CniVersion::ALL {
        let json = result.to_json(to);
        let parsed = CniResult::parse(&json, to, "result");
        let Ok((declared, converted)) = parsed else {
            panic!("our own {to} output does not parse: {json}");
        };
        assert_eq!(declared, to, "output declares the wrong version");
        // Older layouts drop fields, never add or change them.
        assert_eq!(converted.ips, result.ips, "ips changed going to {to}");
        assert_eq!(converted.dns, result.dns, "dns changed going to {to}");
        assert_eq!(
            converted.interfaces.len(),
            result.interfaces.len(),
            "interfaces added or lost going to {to}"
        );
        assert_eq!(converted.convert(to), converted, "{to} not stable");
    }
});
