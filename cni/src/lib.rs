//! jobnet CNI plugin: the CNI protocol (all verbs, spec 0.3.0-1.1.0) and,
//! behind it, the per-attachment device work.

pub mod commands;
pub mod logging;
pub mod protocol;
pub mod sriov;
pub mod timings;

use std::io::{IsTerminal, Read, Write};

use protocol::config::{peek_version, NetConf, MAX_CONFIG_BYTES};
use protocol::env::{self, Command, EnvMap, Invocation};
use protocol::error::CniError;
use protocol::values::LogLevel;
use protocol::version::CniVersion;

/// Runs the plugin against the real process environment, stdin and stdout.
/// Returns the process exit code.
pub fn run() -> i32 {
    let vars: EnvMap = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    let stdin = std::io::stdin();
    // An interactive terminal has no config to give; do not wait for one.
    let input: Box<dyn Read> = if stdin.is_terminal() {
        Box::new(std::io::empty())
    } else {
        Box::new(stdin.lock())
    };
    run_with(&vars, input, &mut std::io::stdout().lock())
}

/// Runs the plugin with the given environment and streams: the whole CNI
/// exchange, never panicking on any input. Returns the exit code (0 or 1).
pub fn run_with(vars: &EnvMap, stdin: impl Read, stdout: &mut impl Write) -> i32 {
    run_with_faults(vars, stdin, stdout, &sriov::NoFaults)
}

/// [`run_with`] with a hook that can make any ADD step fail (rollback tests).
pub fn run_with_faults(
    vars: &EnvMap,
    stdin: impl Read,
    stdout: &mut impl Write,
    faults: &dyn sriov::FaultHook,
) -> i32 {
    timings::start(timings::wanted(vars.get(timings::ENV).map(String::as_str)));
    let input = read_capped(stdin);
    let outcome = execute(vars, &input, faults);
    let verb = vars.get("CNI_COMMAND").map_or("", String::as_str);
    let (text, code) = match outcome {
        Ok(commands::Outcome::Nothing) => {
            log_timings(verb);
            return 0;
        }
        Ok(commands::Outcome::Json(v)) => (pretty(&v), 0),
        Ok(commands::Outcome::Result { result, version }) => (pretty(&result.to_json(version)), 0),
        Err(e) => {
            logging::init(Default::default(), None);
            tracing::error!(code = e.code.number(), "{e}");
            let version = input
                .as_ref()
                .ok()
                .and_then(|b| peek_version(b))
                .unwrap_or(CniVersion::LATEST);
            (pretty(&e.to_json(version.as_str())), 1)
        }
    };
    let written = writeln!(stdout, "{text}").and_then(|()| stdout.flush());
    timings::lap("output");
    log_timings(verb);
    match written {
        Ok(()) => code,
        Err(_) => 1,
    }
}

/// Logs the run's phase timings when `JOBNET_TIMINGS` asked for them.
fn log_timings(verb: &str) {
    if let Some(line) = timings::finish(verb) {
        tracing::info!("{line}");
    }
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// Reads stdin up to the cap; one byte more means the input is too large.
fn read_capped(stdin: impl Read) -> Result<Vec<u8>, CniError> {
    let limit = u64::try_from(MAX_CONFIG_BYTES + 1).unwrap_or(u64::MAX);
    let mut buf = Vec::new();
    stdin.take(limit).read_to_end(&mut buf).map_err(|e| {
        CniError::new(
            protocol::ErrorCode::IoFailure,
            format!("cannot read network config from stdin: {e}"),
        )
    })?;
    if buf.len() > MAX_CONFIG_BYTES {
        return Err(CniError::decode(format!(
            "network config is larger than {MAX_CONFIG_BYTES} bytes"
        )));
    }
    Ok(buf)
}

fn execute(
    vars: &EnvMap,
    input: &Result<Vec<u8>, CniError>,
    faults: &dyn sriov::FaultHook,
) -> Result<commands::Outcome, CniError> {
    let command = env::parse_command(vars)?;
    if command == Command::Version {
        // VERSION needs nothing but the command; a bad stdin just means "newest".
        let requested = input.as_ref().ok().and_then(|b| peek_version(b));
        return Ok(commands::Outcome::Json(commands::version(requested)));
    }
    let inv = env::parse(vars)?;
    let bytes = input.as_ref().map_err(Clone::clone)?;
    let conf = NetConf::parse(bytes)?;
    let level = match conf.log_level {
        LogLevel::Error | LogLevel::Warn if timings::enabled() => LogLevel::Info,
        l => l,
    };
    logging::init(level, conf.log_file.as_deref());
    let inv = verify_netns(inv)?;
    timings::lap("start");
    commands::dispatch(inv, conf, vars.clone(), faults)
}

fn require_netns(ns: &protocol::NetnsPath) -> Result<(), CniError> {
    ns.verify()
        .map_err(|e| CniError::invalid_env(format!("invalid CNI_NETNS: {e}")))
}

/// ADD and CHECK need a real network namespace (code 4 otherwise); DEL goes
/// on without one when the path no longer is one.
fn verify_netns(inv: Invocation) -> Result<Invocation, CniError> {
    match inv {
        Invocation::Add(a) => require_netns(&a.netns).map(|()| Invocation::Add(a)),
        Invocation::Check(a) => require_netns(&a.netns).map(|()| Invocation::Check(a)),
        Invocation::Del(mut a) => {
            if let Some(ns) = &a.netns {
                if let Err(e) = ns.verify() {
                    tracing::info!(netns = %ns, error = %e, "DEL: netns is gone; continuing without it");
                    a.netns = None;
                }
            }
            Ok(Invocation::Del(a))
        }
        other => Ok(other),
    }
}
