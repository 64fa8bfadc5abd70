//! Waiting for a state instead of for a time: every wait here polls the
//! state it needs until a deadline, so a busy machine only makes a test
//! slower, never wrong.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::fabric::ip::Netns;
use crate::fabric::probe::udp_echo;

use super::kernel::ip_json;

/// How long a test waits for a kernel or daemon state before it fails: far
/// beyond what an idle machine needs, so only a real fault runs into it.
pub const STATE_DEADLINE: Duration = Duration::from_secs(10);

/// How often [`wait_until`] looks again.
const POLL: Duration = Duration::from_millis(20);

/// Calls `probe` until it returns `Ok` (whose value is returned), for at
/// most `within`; panics with `what` and the last `Err` when time runs out.
pub fn wait_until<T>(
    what: &str,
    within: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match probe() {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what}: still not so after {within:?}: {last}")
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Waits (up to [`STATE_DEADLINE`]) until every link of `devs` in `ns` is
/// operationally up. Admin up is not enough: the kernel starts passing a
/// link's frames only when it has processed the carrier change, which on a
/// busy machine comes later, and frames sent before are dropped.
pub fn wait_oper_up(ns: &Netns, devs: &[&str]) {
    wait_until(
        &format!("{devs:?} operationally up in {ns:?}"),
        STATE_DEADLINE,
        || {
            let down: Vec<String> = devs
                .iter()
                .filter_map(|dev| {
                    let l = &ip_json(ns, &["link", "show", "dev", dev])[0];
                    let state = l["operstate"].as_str().unwrap_or("?");
                    (state != "UP").then(|| format!("{dev} is {state}"))
                })
                .collect();
            if down.is_empty() {
                Ok(())
            } else {
                Err(down.join(", "))
            }
        },
    )
}

/// True once a UDP echo from netns `from` to `to` (which lives in netns
/// `to_ns`) gets through, trying again for up to `within`: the first
/// datagrams of a new path may be lost while neighbours are resolved and
/// bridges learn, and what a test asks is whether the path works.
pub fn udp_echo_within(from: &Path, to_ns: &Path, to: SocketAddr, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = left.min(Duration::from_secs(1));
        if attempt.is_zero() {
            return false;
        }
        match udp_echo(from, to_ns, to, attempt) {
            Ok(true) => return true,
            Ok(false) => {}
            Err(e) => panic!("udp echo {from:?} -> {to} in {to_ns:?}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_until_returns_the_first_value() {
        let mut n = 0;
        let got = wait_until("n reaches 3", Duration::from_secs(5), || {
            n += 1;
            if n >= 3 {
                Ok(n)
            } else {
                Err(format!("n={n}"))
            }
        });
        assert_eq!(got, 3);
    }

    #[test]
    #[should_panic(expected = "never: still not so after")]
    fn wait_until_gives_up_at_the_deadline() {
        wait_until("never", Duration::from_millis(50), || {
            Err::<(), _>("no".to_owned())
        });
    }
}
