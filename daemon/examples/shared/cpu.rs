//! CPU time of benchmark processes.

use std::time::Duration;

/// CPU time (user + system) used so far by `who` (`libc::RUSAGE_SELF`, or
/// `libc::RUSAGE_CHILDREN` for the children waited for).
pub fn cpu_time(who: libc::c_int) -> Duration {
    // SAFETY: `ru` is plain old data that getrusage fills.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer for the duration of the call.
    unsafe { libc::getrusage(who, &mut ru) };
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}
