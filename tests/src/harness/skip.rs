//! Reporting a test that cannot run here as skipped. libtest has no skip
//! state, so a skipped test would count as passed: the test calls [`skip`]
//! and returns, and the suite runner subtracts the lines of the skip log
//! from libtest's "passed".

use std::io::Write;
use std::path::Path;

/// Environment variable naming the file that collects one line per skip.
pub const SKIP_LOG_ENV: &str = "JOBNET_SKIP_LOG";

/// Reports `test` as skipped for `reason`; the caller returns right after.
///
/// Prints `SKIP <test>: <reason>` to stderr (shown even while libtest
/// captures output) and, when `JOBNET_SKIP_LOG` names a
/// file, appends `<test>\t<reason>` to it (see [`record_skip`]). Panics when
/// the log cannot be written: an unrecorded skip would be counted as a pass.
pub fn skip(test: &str, reason: &str) {
    let (test, reason) = (one_field(test), one_field(reason));
    // One write to the fd: libtest's capture does not see it, and the line
    // does not interleave with other output.
    let _ = std::io::stderr().write_all(format!("SKIP {test}: {reason}\n").as_bytes());
    if let Some(log) = std::env::var_os(SKIP_LOG_ENV).filter(|p| !p.is_empty()) {
        if let Err(e) = record_skip(Path::new(&log), &test, &reason) {
            panic!(
                "{SKIP_LOG_ENV}={}: cannot record the skip of {test}: {e}",
                Path::new(&log).display()
            );
        }
    }
}

/// Appends the line `<test>\t<reason>\n` to `log` in one `write(2)` on an
/// `O_APPEND` fd, so lines of tests running in parallel (threads or
/// processes) never interleave. Tabs and line breaks inside the fields
/// become spaces.
pub fn record_skip(log: &Path, test: &str, reason: &str) -> std::io::Result<()> {
    let line = format!("{}\t{}\n", one_field(test), one_field(reason));
    let n = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?
        .write(line.as_bytes())?;
    if n == line.len() {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            format!("short write: {n} of {} bytes", line.len()),
        ))
    }
}

/// `s` with tabs and line breaks turned into spaces.
fn one_field(s: &str) -> String {
    s.replace(['\t', '\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_skips_are_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("skips");
        std::thread::scope(|s| {
            for t in 0..8 {
                let log = &log;
                s.spawn(move || {
                    for i in 0..50 {
                        let reason = format!("reason {t}/{i}\twith a tab\nand a break");
                        record_skip(log, &format!("t{t}_{i}"), &reason).unwrap();
                    }
                });
            }
        });
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8 * 50);
        for l in lines {
            let (test, reason) = l.split_once('\t').unwrap();
            let (t, i) = test.trim_start_matches('t').split_once('_').unwrap();
            assert_eq!(reason, format!("reason {t}/{i} with a tab and a break"));
        }
    }
}
