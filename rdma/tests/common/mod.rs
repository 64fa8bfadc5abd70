//! The workspace's skip protocol (`jobnet_tests::skip`, see
//! docs/testing.md), repeated here because this crate's tests do not depend
//! on jobnet-tests: that would pull the fabric harness and its dependencies
//! into a crate that only speaks netlink.

use std::io::Write;

/// Reports `test` as skipped for `reason`; the caller returns right after.
/// Prints `SKIP <test>: <reason>` to stderr and, when `JOBNET_SKIP_LOG`
/// names a file, appends `<test>\t<reason>\n` to it in one `O_APPEND` write.
pub fn skip(test: &str, reason: &str) {
    let field = |s: &str| s.replace(['\t', '\n', '\r'], " ");
    let (test, reason) = (field(test), field(reason));
    let _ = std::io::stderr().write_all(format!("SKIP {test}: {reason}\n").as_bytes());
    let Some(log) = std::env::var_os("JOBNET_SKIP_LOG").filter(|p| !p.is_empty()) else {
        return;
    };
    let line = format!("{test}\t{reason}\n");
    let n = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut f| f.write(line.as_bytes()));
    // An unrecorded skip would be counted as a pass.
    assert!(
        matches!(n, Ok(n) if n == line.len()),
        "JOBNET_SKIP_LOG={}: cannot record the skip of {test}: {n:?}",
        log.to_string_lossy()
    );
}
