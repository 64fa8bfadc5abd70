//! Delegated plugins (IPAM), executed as spec section 4 says: found in
//! CNI_PATH, given the same environment and the complete network config on
//! stdin, their stderr passed through, their result or error read from stdout.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command as Process, Stdio};

use super::config::{NetConf, MAX_CONFIG_BYTES};
use super::env::{CniPath, Command, EnvMap};
use super::error::{CniError, ErrorCode};
use super::names::PluginName;
use super::result::CniResult;
use super::version::CniVersion;

/// A delegated plugin ready to run: where it is and what it gets.
#[derive(Debug, Clone)]
pub struct Delegate<'a> {
    /// The plugin's name (`ipam.type`).
    pub plugin: &'a PluginName,
    /// The executable found in CNI_PATH.
    pub path: PathBuf,
    /// The environment jobnet received (CNI_COMMAND is set per call).
    pub env: &'a EnvMap,
    /// The config bytes jobnet received.
    pub stdin: &'a [u8],
}

impl<'a> Delegate<'a> {
    /// Finds `plugin` in CNI_PATH; a missing CNI_PATH or plugin is an error
    /// (code 4 and 7 respectively: the environment or the config is wrong).
    pub fn find(
        plugin: &'a PluginName,
        cni_path: Option<&CniPath>,
        env: &'a EnvMap,
        stdin: &'a [u8],
    ) -> Result<Self, CniError> {
        let cni_path = cni_path.filter(|p| !p.dirs().is_empty()).ok_or_else(|| {
            CniError::invalid_env(format!(
                "CNI_PATH is required to find the IPAM plugin {plugin:?}"
            ))
        })?;
        let path = cni_path.find(plugin).ok_or_else(|| {
            CniError::invalid_config(format!("IPAM plugin {plugin:?} not found in CNI_PATH"))
                .with_details(format!("searched {}", cni_path.display()))
        })?;
        Ok(Self {
            plugin,
            path,
            env,
            stdin,
        })
    }

    /// The delegate for the config's `ipam`, or `None` when there is none.
    pub fn for_ipam(
        conf: &'a NetConf,
        cni_path: Option<&CniPath>,
        env: &'a EnvMap,
    ) -> Result<Option<Self>, CniError> {
        conf.ipam
            .as_ref()
            .map(|ipam| Self::find(&ipam.plugin, cni_path, env, &conf.raw))
            .transpose()
    }

    /// Runs the plugin with `command`; `Ok(stdout)` on exit status 0, else the
    /// plugin's CNI error (its code kept) or a code-105 error if it printed none.
    pub fn exec(&self, command: Command) -> Result<Vec<u8>, CniError> {
        self.exec_with_stdin(command, self.stdin)
    }

    fn exec_with_stdin(&self, command: Command, stdin: &[u8]) -> Result<Vec<u8>, CniError> {
        let failed = |what: String| {
            CniError::new(
                ErrorCode::DelegateFailed,
                format!("IPAM plugin {} {command}: {what}", self.plugin),
            )
        };
        tracing::debug!(plugin = %self.plugin, path = %self.path.display(), %command, "executing delegated plugin");
        let mut child = Process::new(&self.path)
            .env_clear()
            .envs(self.env)
            .env("CNI_COMMAND", command.as_str())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| failed(format!("cannot execute {}: {e}", self.path.display())))?;
        let mut child_stdin = child
            .stdin
            .take()
            .ok_or_else(|| failed("no stdin pipe".into()))?;
        let input = stdin.to_vec();
        // Written from a thread so a plugin that prints before it reads cannot deadlock us.
        let writer = std::thread::spawn(move || child_stdin.write_all(&input));
        let mut out = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            // Bounded read: a delegate cannot make jobnet hold unbounded output.
            let limit = u64::try_from(MAX_CONFIG_BYTES).unwrap_or(u64::MAX);
            stdout
                .take(limit)
                .read_to_end(&mut out)
                .map_err(|e| failed(format!("reading its output: {e}")))?;
        }
        let status = child
            .wait()
            .map_err(|e| failed(format!("waiting for it: {e}")))?;
        // A plugin may exit without reading stdin (e.g. VERSION); EPIPE is fine then.
        let _ = writer.join();
        if status.success() {
            return Ok(out);
        }
        let printed = serde_json::from_slice::<serde_json::Value>(&out)
            .ok()
            .and_then(|v| CniError::from_json(&v));
        Err(printed.unwrap_or_else(|| {
            failed(format!("exited with {status}")).with_details(
                String::from_utf8_lossy(&out)
                    .chars()
                    .take(512)
                    .collect::<String>(),
            )
        }))
    }

    /// ADD: the allocation, converted to the config's version, `interface` unset.
    pub fn add(&self, version: CniVersion) -> Result<CniResult, CniError> {
        let out = self.exec(Command::Add)?;
        let value: serde_json::Value = serde_json::from_slice(&out).map_err(|e| {
            CniError::new(
                ErrorCode::DelegateFailed,
                format!(
                    "IPAM plugin {} ADD printed no JSON result: {e}",
                    self.plugin
                ),
            )
        })?;
        let (_, result) = CniResult::parse(&value, version, "IPAM result")?;
        Ok(result)
    }

    /// DEL.
    pub fn del(&self) -> Result<(), CniError> {
        self.exec(Command::Del).map(drop)
    }

    /// CHECK.
    pub fn check(&self) -> Result<(), CniError> {
        self.exec(Command::Check).map(drop)
    }

    /// GC (only call when [`Self::supports`] says the plugin speaks the version).
    pub fn gc(&self) -> Result<(), CniError> {
        self.exec(Command::Gc).map(drop)
    }

    /// STATUS (same caveat as GC).
    pub fn status(&self) -> Result<(), CniError> {
        self.exec(Command::Status).map(drop)
    }

    /// Asks the plugin (VERSION) whether it supports `version`: older plugins
    /// reject GC/STATUS as unknown commands, so those are forwarded only then.
    pub fn supports(&self, version: CniVersion) -> Result<bool, CniError> {
        let input = serde_json::json!({"cniVersion": version.as_str()}).to_string();
        let out = self.exec_with_stdin(Command::Version, input.as_bytes())?;
        let value: serde_json::Value = serde_json::from_slice(&out).map_err(|e| {
            CniError::new(
                ErrorCode::DelegateFailed,
                format!("IPAM plugin {} VERSION printed no JSON: {e}", self.plugin),
            )
        })?;
        let supported = value
            .get("supportedVersions")
            .and_then(|v| v.as_array())
            .is_some_and(|list| list.iter().any(|v| v.as_str() == Some(version.as_str())));
        Ok(supported)
    }
}
