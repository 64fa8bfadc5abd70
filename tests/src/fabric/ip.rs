//! Running `ip -batch -` in a network namespace and reading `ip -j link`.
//!
//! One `ip` process per namespace keeps building a fabric fast (hundreds of
//! link operations cost a few milliseconds) and matches scripts/fabric.sh.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::FabricError;

/// Set this environment variable to print the duration of every `ip` batch.
pub const TRACE_ENV: &str = "JOBNET_FABRIC_TRACE";

/// Where an `ip` batch runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Netns {
    /// The host (initial) network namespace.
    Host,
    /// A named netns under /run/netns.
    Named(String),
    /// Any netns file (entered with nsenter).
    Path(PathBuf),
}

impl Netns {
    fn describe(&self) -> String {
        match self {
            Netns::Host => "host".into(),
            Netns::Named(n) => n.clone(),
            Netns::Path(p) => p.display().to_string(),
        }
    }

    fn command(&self) -> Command {
        match self {
            Netns::Host => Command::new("ip"),
            Netns::Named(n) => {
                let mut c = Command::new("ip");
                c.arg("-n").arg(n);
                c
            }
            Netns::Path(p) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", p.display())).arg("ip");
                c
            }
        }
    }
}

/// Runs `lines` as one `ip [-j] -batch -` in `ns`; returns stdout.
///
/// With `force`, ip keeps going past failing lines (used by teardown, where
/// some objects may already be gone) and failures are not reported.
pub fn batch(ns: &Netns, lines: &[String], json: bool, force: bool) -> Result<String, FabricError> {
    let mut cmd = ns.command();
    if json {
        cmd.arg("-j");
    }
    if force {
        cmd.arg("-force");
    }
    cmd.args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let fail = |detail: String| FabricError::Ip {
        netns: ns.describe(),
        detail,
    };
    let started = std::time::Instant::now();
    let mut child = cmd.spawn().map_err(|e| fail(format!("spawn ip: {e}")))?;
    let mut input = lines.join("\n");
    input.push('\n');
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| fail(format!("write batch: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("wait ip: {e}")))?;
    if std::env::var_os(TRACE_ENV).is_some() {
        eprintln!(
            "jobnet-fabric: ip batch in {}: {} lines, {:?}",
            ns.describe(),
            lines.len(),
            started.elapsed()
        );
    }
    if !out.status.success() && !force {
        return Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
    }
    String::from_utf8(out.stdout).map_err(|_| fail("non-UTF-8 output".into()))
}

/// One link as `ip -j link show` prints it (only what the fabric reads).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct IpLink {
    /// Interface index in its netns.
    pub ifindex: u32,
    /// Name.
    pub ifname: String,
    /// MAC address.
    #[serde(default)]
    pub address: Option<String>,
    /// Peer's ifindex (veth), in the peer's netns.
    #[serde(default)]
    pub link_index: Option<u32>,
    /// Bridge the link is enslaved to.
    #[serde(default)]
    pub master: Option<String>,
    /// The link's alias (`ip link set ... alias`).
    #[serde(default)]
    pub ifalias: Option<String>,
    /// Link flags (`UP`, `LOWER_UP`, ...).
    #[serde(default)]
    pub flags: Vec<String>,
    /// MTU.
    #[serde(default)]
    pub mtu: Option<u32>,
}

/// Parses every JSON array `ip -j -batch` printed (one per `link show`).
pub fn parse_links(json: &str) -> Result<Vec<IpLink>, FabricError> {
    let bad = |e: serde_json::Error| FabricError::Ip {
        netns: String::new(),
        detail: format!("parse ip -j output: {e}"),
    };
    let mut out = Vec::new();
    let stream = serde_json::Deserializer::from_str(json).into_iter::<Vec<serde_json::Value>>();
    for arr in stream {
        // iproute2 prints `{}` for links a filter (`show up`) left out.
        for v in arr.map_err(bad)? {
            if v.get("ifindex").is_some() {
                out.push(serde_json::from_value(v).map_err(bad)?);
            }
        }
    }
    Ok(out)
}

/// The links in `ns` now.
pub fn links(ns: &Netns) -> Result<Vec<IpLink>, FabricError> {
    parse_links(&batch(ns, &["link show".into()], true, false)?)
}

/// Names of the named network namespaces (/run/netns).
pub fn named_netns() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_filtered_placeholders_and_reads_several_arrays() {
        let text = r#"[{"ifindex":1,"ifname":"lo","flags":["UP"]},{},{}]
[{"ifindex":7,"link_index":9,"ifname":"v0","address":"02:00:00:00:00:07","master":"br","mtu":1500}]"#;
        let links = parse_links(text).unwrap();
        assert_eq!(links.len(), 2);
        assert_eq!(links[1].link_index, Some(9));
        assert_eq!(links[1].master.as_deref(), Some("br"));
        assert!(parse_links("[{\"ifindex\":\"x\"}]").is_err());
    }
}
