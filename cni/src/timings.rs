//! Phase timings of one plugin run, for profiling the attach path.
//!
//! Off unless the environment has `JOBNET_TIMINGS=1`; then every verb logs
//! one line at its end (at info level, which the variable forces on):
//! `timings verb=ADD total_us=… start=… lock=… reserve=… move=… …`, each
//! phase in microseconds, in the order the phases first ran (a phase that
//! runs more than once, one per rail, is summed). `scripts/bench.sh` and
//! `jobnet-bench --timings` read these lines.
//!
//! The recorder is per thread: a run does its work on the thread that
//! called [`crate::run_with`] (the async runtime is current-thread), and
//! in-process tests run several plugins at once on their own threads.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// The environment variable that turns timings on.
pub const ENV: &str = "JOBNET_TIMINGS";

/// Phases of one run as they are recorded.
struct Recorder {
    started: Instant,
    last: Instant,
    phases: Vec<(&'static str, Duration)>,
}

thread_local! {
    static RECORDER: RefCell<Option<Recorder>> = const { RefCell::new(None) };
}

/// True when `value` (the variable's value) asks for timings.
pub fn wanted(value: Option<&str>) -> bool {
    value.is_some_and(|v| !v.is_empty() && v != "0")
}

/// Starts recording on this thread when `enabled`; a run that does not
/// ask for timings records nothing (and [`lap`] costs one thread-local read).
pub fn start(enabled: bool) {
    RECORDER.with(|r| {
        *r.borrow_mut() = enabled.then(|| {
            let now = Instant::now();
            Recorder {
                started: now,
                last: now,
                phases: Vec::new(),
            }
        });
    });
}

/// True when this thread records timings.
pub fn enabled() -> bool {
    RECORDER.with(|r| r.borrow().is_some())
}

/// Ends the phase `name`: the time since the previous lap (or the start)
/// is added to it.
pub fn lap(name: &'static str) {
    RECORDER.with(|r| {
        if let Some(rec) = r.borrow_mut().as_mut() {
            let now = Instant::now();
            let took = now - rec.last;
            rec.last = now;
            match rec.phases.iter_mut().find(|(n, _)| *n == name) {
                Some((_, d)) => *d += took,
                None => rec.phases.push((name, took)),
            }
        }
    });
}

/// Stops recording and returns the line to log for `verb`, if recording.
pub fn finish(verb: &str) -> Option<String> {
    let rec = RECORDER.with(|r| r.borrow_mut().take())?;
    let mut line = format!(
        "timings verb={verb} total_us={}",
        rec.started.elapsed().as_micros()
    );
    for (name, d) in &rec.phases {
        let _ = write!(line, " {name}={}", d.as_micros());
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn laps_add_up_per_phase_in_first_seen_order() {
        start(true);
        lap("a");
        lap("b");
        lap("a");
        let line = finish("ADD").unwrap();
        let keys: Vec<&str> = line
            .split_whitespace()
            .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
            .collect();
        assert_eq!(keys, ["verb", "total_us", "a", "b"]);
        assert!(finish("ADD").is_none());
    }

    #[test]
    fn nothing_is_recorded_unless_asked() {
        start(false);
        lap("a");
        assert!(!enabled());
        assert!(finish("DEL").is_none());
        assert!(!wanted(None) && !wanted(Some("")) && !wanted(Some("0")));
        assert!(wanted(Some("1")));
    }
}
