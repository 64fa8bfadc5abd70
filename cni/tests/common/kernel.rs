//! The kernel's view of a network namespace, read with `ip -j` (independent
//! of the plugin's own netlink code, so a test compares against the kernel
//! and not against what the plugin believes).

use std::process::Command;

/// One interface as the kernel shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkView {
    /// Interface index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// MAC address (lowercase, colon-separated).
    pub mac: String,
    /// MTU.
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
    /// `ifalias`, which follows the device through renames and moves.
    pub alias: Option<String>,
}

impl LinkView {
    fn from_json(l: &serde_json::Value) -> Option<Self> {
        Some(Self {
            index: u32::try_from(l["ifindex"].as_u64()?).ok()?,
            name: l["ifname"].as_str()?.to_owned(),
            mac: l["address"].as_str().unwrap_or_default().to_owned(),
            mtu: l["mtu"]
                .as_u64()
                .and_then(|m| u32::try_from(m).ok())
                .unwrap_or(0),
            up: l["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == "UP")),
            alias: l["ifalias"].as_str().map(str::to_owned),
        })
    }
}

/// Runs `ip -j <args>` in the named netns and parses the JSON it prints.
pub fn ip_json(netns: &str, args: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new("ip")
        .args(["-n", netns, "-j"])
        .args(args)
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip -n {netns} -j {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Vec::new();
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("ip -j output ({e}): {text}"))
}

/// Every link in the named netns.
pub fn links(netns: &str) -> Vec<LinkView> {
    ip_json(netns, &["link", "show"])
        .iter()
        .filter_map(LinkView::from_json)
        .collect()
}

/// Every link in the named netns; empty when the netns vanished meanwhile.
pub fn links_if_any(netns: &str) -> Vec<LinkView> {
    let Ok(out) = Command::new("ip")
        .args(["-n", netns, "-j", "link", "show"])
        .output()
    else {
        return Vec::new();
    };
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
        .unwrap_or_default()
        .iter()
        .filter_map(LinkView::from_json)
        .collect()
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

/// Runs `ip -n <netns> <args>`; panics with stderr on failure.
pub fn ip(netns: &str, args: &[&str]) {
    let out = Command::new("ip")
        .args(["-n", netns])
        .args(args)
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip -n {netns} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The link called `name` in the named netns, if any.
pub fn link(netns: &str, name: &str) -> Option<LinkView> {
    links(netns).into_iter().find(|l| l.name == name)
}

/// Global-scope addresses on `dev` as `address/prefix`, sorted.
pub fn addresses(netns: &str, dev: &str) -> Vec<String> {
    let mut v: Vec<String> = ip_json(netns, &["addr", "show", "dev", dev])
        .iter()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["scope"] == "global")
        .map(|a| {
            format!(
                "{}/{}",
                a["local"].as_str().unwrap_or_default(),
                a["prefixlen"]
            )
        })
        .collect();
    v.sort();
    v
}

/// A route as `(destination, gateway)`; `default` is written `0.0.0.0/0` or
/// `::/0` as CNI results write it.
pub type RouteView = (String, Option<String>);

/// Routes through `dev` (IPv4 and IPv6, without the kernel's own prefix
/// and link-local routes), sorted.
pub fn routes(netns: &str, dev: &str) -> Vec<RouteView> {
    let mut v = Vec::new();
    for (family, default) in [("-4", "0.0.0.0/0"), ("-6", "::/0")] {
        for r in ip_json(netns, &[family, "route", "show", "dev", dev]) {
            if r["protocol"] == "kernel" {
                continue;
            }
            let dst = match r["dst"].as_str() {
                Some("default") => default.to_owned(),
                Some(d) if d.contains('/') => d.to_owned(),
                Some(d) if family == "-4" => format!("{d}/32"),
                Some(d) => format!("{d}/128"),
                None => continue,
            };
            v.push((dst, r["gateway"].as_str().map(str::to_owned)));
        }
    }
    v.sort();
    v
}
