//! Logging: to `logFile` (appended) or stderr, never stdout (stdout carries
//! the CNI result).

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

use tracing::level_filters::LevelFilter;

use crate::protocol::values::LogLevel;

fn filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
    }
}

/// Installs the global subscriber. A log file that cannot be opened falls
/// back to stderr with a warning: logging must never fail an operation.
/// Calling it again is harmless (the first subscriber stays).
pub fn init(level: LogLevel, file: Option<&Path>) {
    let builder = tracing_subscriber::fmt()
        .with_max_level(filter(level))
        .with_ansi(false)
        .with_target(false);
    let mut open_error = None;
    if let Some(path) = file {
        match OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
        {
            Ok(f) => {
                let _ = builder.with_writer(Mutex::new(f)).try_init();
                return;
            }
            Err(e) => open_error = Some(format!("cannot open logFile {}: {e}", path.display())),
        }
    }
    let _ = builder.with_writer(std::io::stderr).try_init();
    if let Some(msg) = open_error {
        tracing::warn!("{msg}; logging to stderr");
    }
}
