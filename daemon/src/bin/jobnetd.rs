//! jobnetd: the per-node jobnet daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use jobnet_daemon::config::{Config, LogFormat};
use jobnet_daemon::install;
use tracing_subscriber::EnvFilter;

/// Config file read when `--config` is not given (if it exists).
const DEFAULT_CONFIG: &str = "/etc/jobnet/jobnetd.toml";

/// Per-node daemon that owns jobnet's VFs, job subnets and addresses.
#[derive(Debug, Parser)]
#[command(name = "jobnetd", version, about)]
struct Cli {
    /// TOML config file (default: /etc/jobnet/jobnetd.toml if present, else built-in defaults).
    #[arg(long, env = "JOBNET_CONFIG")]
    config: Option<PathBuf>,
    /// Parse and validate the config, print it, and exit.
    #[arg(long)]
    check_config: bool,
    /// Install the `jobnet` CNI plugin into this directory (atomically) before starting.
    #[arg(long, env = "JOBNET_INSTALL_CNI", value_name = "DIR")]
    install_cni: Option<PathBuf>,
    /// Plugin binary to install (default: `jobnet` beside this executable).
    #[arg(long, env = "JOBNET_CNI_BINARY", value_name = "PATH")]
    cni_binary: Option<PathBuf>,
    /// Exit after installing the plugin instead of starting the daemon.
    #[arg(long, requires = "install_cni")]
    install_only: bool,
}

fn load(cli: &Cli) -> Result<Config, String> {
    match &cli.config {
        Some(p) => Config::load(p).map_err(|e| e.to_string()),
        None if std::path::Path::new(DEFAULT_CONFIG).exists() => {
            Config::load(std::path::Path::new(DEFAULT_CONFIG)).map_err(|e| e.to_string())
        }
        None => Ok(Config::default()),
    }
}

/// Installs the plugin when `--install-cni` is given; the error is ready to print.
fn install(cli: &Cli) -> Result<(), String> {
    let Some(dir) = &cli.install_cni else {
        return Ok(());
    };
    let source = match &cli.cni_binary {
        Some(p) => p.clone(),
        None => install::plugin_beside_current_exe().map_err(|e| e.to_string())?,
    };
    let installed = install::install_plugin(&source, dir).map_err(|e| e.to_string())?;
    eprintln!(
        "jobnetd: installed {} from {}",
        installed.display(),
        source.display()
    );
    Ok(())
}

fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // --install-only reads no config (an init container mounts none);
    // --check-config must never change the host, so it wins over both.
    if cli.install_only && !cli.check_config {
        return match install(&cli) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("jobnetd: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("jobnetd: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        match toml::to_string_pretty(&config) {
            Ok(s) => {
                print!("{s}");
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("jobnetd: printing config: {e}");
                return ExitCode::from(2);
            }
        }
    }
    // Config errors first, so a bad config fails before the host's plugin
    // directory is changed.
    if let Err(e) = install(&cli) {
        eprintln!("jobnetd: {e}");
        return ExitCode::FAILURE;
    }
    init_logs(config.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("jobnetd")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("jobnetd: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Handlers first (they need the runtime), so a SIGTERM during start-up
    // already means a clean stop.
    let shutdown = {
        let _in_runtime = rt.enter();
        jobnet_daemon::run::termination_signal()
    };
    match rt.block_on(jobnet_daemon::run::run(config, shutdown)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "jobnetd failed");
            eprintln!("jobnetd: {e}");
            ExitCode::FAILURE
        }
    }
}
