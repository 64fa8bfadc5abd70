//! The harness itself: the binaries it hands out are those of the build
//! under test, and a skip is reported the way the suite runner counts it.

use std::path::Path;
use std::process::Command;

use jobnet_tests::harness::{binaries, SKIP_LOG_ENV};

#[test]
fn binaries_are_built_in_the_profile_dir_of_the_test_executable() {
    let exe = std::env::current_exe().unwrap();
    // <target>/<profile>/deps/<this test>
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let b = binaries();
    for bin in [&b.jobnet, &b.jobnetd, &b.jobnetctl] {
        assert_eq!(
            bin.parent(),
            Some(profile_dir),
            "{} is not from this build ({})",
            bin.display(),
            profile_dir.display()
        );
        assert!(bin.is_file(), "{} was not built", bin.display());
    }
    // And it is a working plugin, not a leftover file of that name.
    let out = Command::new(&b.jobnet)
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("cniVersion"),
        "{out:?}"
    );
}

/// Skips itself; [`a_skip_is_reported_and_logged`] runs it in a child process.
#[test]
#[ignore = "run by a_skip_is_reported_and_logged"]
fn skips_itself() {
    jobnet_tests::skip("harness::skips_itself", "asked to\tby its caller");
}

#[test]
fn a_skip_is_reported_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("skips");
    std::fs::write(&log, "earlier::test\tkept\n").unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "skips_itself"])
        .env(SKIP_LOG_ENV, &log)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    // libtest still says "passed": the runner subtracts the log's lines.
    assert!(stdout.contains("1 passed"), "{stdout}");
    assert!(
        stderr.contains("SKIP harness::skips_itself: asked to by its caller"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "earlier::test\tkept\nharness::skips_itself\tasked to by its caller\n"
    );
}
