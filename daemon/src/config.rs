//! jobnetd's TOML configuration, with defaults that make a one-node install
//! need almost nothing.
//!
//! ```toml
//! node = "gpu-node-1"                      # default: $JOBNET_NODE, else the hostname
//! socket = "/run/jobnet/jobnetd.sock"
//! state_dir = "/var/lib/jobnet"
//! run_dir = "/run/jobnet"
//! sysfs_root = "/sys"                      # default: $JOBNET_SYSFS_ROOT or /sys
//! metrics_addr = "127.0.0.1:9595"          # "off" disables the endpoint
//! reconcile_interval_secs = 30
//! log_format = "text"                      # or "json"
//!
//! [[pools]]                                # IPAM fields: see jobnet_ipam::PoolConfig
//! name = "default"
//! cidrs = ["10.200.0.0/16"]
//! rails = 2
//! pfs = ["ens1f0", "0000:af:00.0"]         # rail i = i-th entry; [["a","b"],["c"]] for several per rail
//! mtu = 9000
//!
//! [store]                                  # where IPAM state lives (default: embedded)
//! backend = "etcd"                         # "embedded" (redb under state_dir) or "etcd"
//! endpoints = ["http://127.0.0.1:2379"]    # etcd members (several allowed)
//! prefix = "/jobnet"                       # every key under it
//! timeout_ms = 2000                        # per request; ADD fails fast (CNI 11) past it
//! # ca_file = "/etc/jobnet/etcd-ca.pem"    # TLS: trust anchor; cert_file + key_file for client auth
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use jobnet_hw::SysfsRoot;
use jobnet_ipam::{PoolConfig, Rails};
use serde::{Deserialize, Serialize};

use crate::inventory::{PfRef, PoolLayout};

/// Environment variable naming the node when the config does not.
pub const NODE_ENV: &str = "JOBNET_NODE";
/// Name of the pool used when the config lists none.
pub const DEFAULT_POOL: &str = "default";
/// CIDR of the built-in default pool.
const DEFAULT_CIDR: &str = "10.224.0.0/12";

/// The whole daemon configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Node name (default: hostname).
    #[serde(default)]
    pub node: Option<String>,
    /// API socket path.
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// Durable state (the IPAM store).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Runtime files (hints, locks).
    #[serde(default = "default_run_dir")]
    pub run_dir: PathBuf,
    /// sysfs root (default: `$JOBNET_SYSFS_ROOT` or `/sys`).
    #[serde(default)]
    pub sysfs_root: Option<PathBuf>,
    /// Metrics listener, or `"off"`.
    #[serde(default = "default_metrics")]
    pub metrics_addr: MetricsAddr,
    /// Seconds between reconciliation sweeps.
    #[serde(default = "default_reconcile")]
    pub reconcile_interval_secs: u64,
    /// An attachment younger than this is never released for a missing netns
    /// (the runtime may not have created it yet).
    #[serde(default = "default_netns_grace")]
    pub netns_grace_secs: u64,
    /// Log format.
    #[serde(default)]
    pub log_format: LogFormat,
    /// Pool used when a request names none (default: the first pool).
    #[serde(default)]
    pub default_pool: Option<String>,
    /// Address pools with their devices.
    #[serde(default)]
    pub pools: Vec<DaemonPool>,
    /// Where IPAM state lives.
    #[serde(default)]
    pub store: StoreConfig,
}

/// Which store backend holds IPAM state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// redb under `state_dir`: one node, no external service.
    #[default]
    Embedded,
    /// An etcd v3 cluster shared by every node's jobnetd.
    Etcd,
}

/// The `[store]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Backend.
    #[serde(default)]
    pub backend: StoreBackend,
    /// etcd client URLs (`http://host:port` or `https://...`).
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Key prefix on etcd; several clusters of jobnet can share one etcd.
    #[serde(default = "default_store_prefix")]
    pub prefix: String,
    /// Per-request deadline in milliseconds.
    #[serde(default = "default_store_timeout")]
    pub timeout_ms: u64,
    /// CA bundle that signs the etcd members' certificates (enables TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate for etcd's client-cert auth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// Key of `cert_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Embedded,
            endpoints: Vec::new(),
            prefix: default_store_prefix(),
            timeout_ms: default_store_timeout(),
            ca_file: None,
            cert_file: None,
            key_file: None,
        }
    }
}

fn default_store_prefix() -> String {
    "/jobnet".into()
}
fn default_store_timeout() -> u64 {
    2000
}

impl StoreConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(format!("[store] {m}")));
        if !(50..=60_000).contains(&self.timeout_ms) {
            return bad(format!(
                "timeout_ms must be 50..=60000, not {}",
                self.timeout_ms
            ));
        }
        match self.backend {
            StoreBackend::Embedded => {
                if !self.endpoints.is_empty() {
                    return bad(
                        "endpoints given but backend is \"embedded\" (set backend = \"etcd\")"
                            .into(),
                    );
                }
            }
            StoreBackend::Etcd => {
                if self.endpoints.is_empty() {
                    return bad("backend \"etcd\" needs at least one endpoint".into());
                }
                for e in &self.endpoints {
                    if !(e.starts_with("http://") || e.starts_with("https://")) || e.len() > 512 {
                        return bad(format!("endpoint {e:?} must be an http:// or https:// URL"));
                    }
                }
                if !self.prefix.starts_with('/') || self.prefix.len() > 128 {
                    return bad(format!(
                        "prefix {:?} must start with / and have at most 128 bytes",
                        self.prefix
                    ));
                }
                if self.cert_file.is_some() != self.key_file.is_some() {
                    return bad("cert_file and key_file go together".into());
                }
                if self.cert_file.is_some() && self.ca_file.is_none() {
                    return bad("a client certificate needs ca_file (TLS)".into());
                }
            }
        }
        Ok(())
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Where metrics are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsAddr {
    /// Not served.
    Off,
    /// Served on this TCP address.
    On(SocketAddr),
}

impl Serialize for MetricsAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Off => s.serialize_str("off"),
            Self::On(a) => s.collect_str(a),
        }
    }
}

impl<'de> Deserialize<'de> for MetricsAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() || s == "off" {
            return Ok(Self::Off);
        }
        s.parse().map(Self::On).map_err(serde::de::Error::custom)
    }
}

/// PFs of one rail: a single PF or a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RailPfs {
    /// One PF.
    One(PfRef),
    /// Several PFs.
    Many(Vec<PfRef>),
}

impl RailPfs {
    fn to_vec(&self) -> Vec<PfRef> {
        match self {
            Self::One(p) => vec![p.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

/// One pool: the IPAM part plus the devices and link settings the daemon adds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "toml::Table")]
pub struct DaemonPool {
    /// PFs per rail (default: every SR-IOV PF of the node).
    #[serde(default)]
    pub pfs: Option<Vec<RailPfs>>,
    /// MTU for pod interfaces (default: leave the VF's).
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Addresses, rails and isolation.
    #[serde(flatten)]
    pub ipam: PoolConfig,
}

impl TryFrom<toml::Table> for DaemonPool {
    type Error = String;

    /// Splits off the daemon's keys so the IPAM part still rejects unknown ones
    /// (serde's `flatten` would silently accept them).
    fn try_from(mut t: toml::Table) -> Result<Self, String> {
        let pfs = t
            .remove("pfs")
            .map(|v| v.try_into::<Vec<RailPfs>>())
            .transpose()
            .map_err(|e| format!("pfs: {e}"))?;
        let mtu = t
            .remove("mtu")
            .map(|v| v.try_into::<u32>())
            .transpose()
            .map_err(|e| format!("mtu: {e}"))?;
        let ipam = PoolConfig::deserialize(toml::Value::Table(t)).map_err(|e| e.to_string())?;
        Ok(Self { pfs, mtu, ipam })
    }
}

impl DaemonPool {
    /// Number of rails of the pool.
    pub fn rail_count(&self) -> u16 {
        match &self.ipam.rails {
            Rails::Count(n) => *n,
            Rails::Names(v) => u16::try_from(v.len()).unwrap_or(u16::MAX),
        }
    }

    /// The device layout for the inventory.
    pub fn layout(&self) -> PoolLayout {
        PoolLayout {
            pool: self.ipam.name.clone(),
            rail_count: self.rail_count(),
            pfs: self
                .pfs
                .as_ref()
                .map(|rails| rails.iter().map(RailPfs::to_vec).collect()),
        }
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The TOML is invalid.
    #[error("parsing {path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// Parser message.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A value is inconsistent.
    #[error("{0}")]
    Invalid(String),
}

fn default_socket() -> PathBuf {
    PathBuf::from(jobnet_api::DEFAULT_SOCKET)
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/jobnet")
}
fn default_run_dir() -> PathBuf {
    PathBuf::from("/run/jobnet")
}
fn default_metrics() -> MetricsAddr {
    MetricsAddr::On(SocketAddr::from(([127, 0, 0, 1], 9595)))
}
fn default_reconcile() -> u64 {
    30
}
fn default_netns_grace() -> u64 {
    60
}

impl Default for Config {
    fn default() -> Self {
        let mut c = Self::bare();
        c.fill_defaults();
        c
    }
}

impl Config {
    fn bare() -> Self {
        Self {
            node: None,
            socket: default_socket(),
            state_dir: default_state_dir(),
            run_dir: default_run_dir(),
            sysfs_root: None,
            metrics_addr: default_metrics(),
            reconcile_interval_secs: default_reconcile(),
            netns_grace_secs: default_netns_grace(),
            log_format: LogFormat::Text,
            default_pool: None,
            pools: Vec::new(),
            store: StoreConfig::default(),
        }
    }
}

impl Config {
    /// Parses and validates a TOML document.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "<config>".into(),
            source: Box::new(e),
        })?;
        cfg.fill_defaults();
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: shown,
                source,
            },
            other => other,
        })
    }

    fn fill_defaults(&mut self) {
        if self.pools.is_empty() {
            self.pools.push(DaemonPool {
                pfs: None,
                mtu: None,
                ipam: default_pool_config(),
            });
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.store.validate()?;
        if let Some(n) = &self.node {
            if n.is_empty() || n.len() > 253 {
                return Err(ConfigError::Invalid(format!("node name {n:?} is invalid")));
            }
        }
        if self.reconcile_interval_secs == 0 {
            return Err(ConfigError::Invalid(
                "reconcile_interval_secs must be at least 1".into(),
            ));
        }
        if let Some(p) = &self.default_pool {
            if !self.pools.iter().any(|x| &x.ipam.name == p) {
                return Err(ConfigError::Invalid(format!(
                    "default_pool {p:?} is not a configured pool"
                )));
            }
        }
        for p in &self.pools {
            if let Some(pfs) = &p.pfs {
                if pfs.len() != usize::from(p.rail_count()) {
                    return Err(ConfigError::Invalid(format!(
                        "pool {:?}: pfs lists {} rails but the pool has {}",
                        p.ipam.name,
                        pfs.len(),
                        p.rail_count()
                    )));
                }
            }
            if p.mtu.is_some_and(|m| !(68..=65535).contains(&m)) {
                return Err(ConfigError::Invalid(format!(
                    "pool {:?}: mtu must be 68..=65535",
                    p.ipam.name
                )));
            }
        }
        Ok(())
    }

    /// The node name: configured, else `$JOBNET_NODE` (the DaemonSet passes
    /// the Kubernetes node name), else the hostname.
    pub fn node_name(&self) -> String {
        self.node
            .clone()
            .or_else(|| {
                std::env::var(NODE_ENV)
                    .ok()
                    .filter(|n| !n.is_empty() && n.len() <= 253)
            })
            .unwrap_or_else(hostname)
    }

    /// The sysfs root: configured, else `$JOBNET_SYSFS_ROOT`, else `/sys`.
    pub fn sysfs(&self) -> SysfsRoot {
        self.sysfs_root
            .as_ref()
            .map(SysfsRoot::new)
            .unwrap_or_else(SysfsRoot::from_env)
    }

    /// The pool used when a request names none.
    pub fn default_pool_name(&self) -> &str {
        self.default_pool
            .as_deref()
            .or_else(|| self.pools.first().map(|p| p.ipam.name.as_str()))
            .unwrap_or(DEFAULT_POOL)
    }
}

fn default_pool_config() -> PoolConfig {
    // Parsing a constant through the IPAM crate keeps its defaults authoritative.
    toml::from_str(&format!(
        "name = \"{DEFAULT_POOL}\"\ncidrs = [\"{DEFAULT_CIDR}\"]\n"
    ))
    .unwrap_or_else(|_| PoolConfig {
        name: DEFAULT_POOL.into(),
        cidrs: Vec::new(),
        subnet_prefix: Default::default(),
        exclude: Vec::new(),
        gateway: Default::default(),
        isolation: Default::default(),
        rails: Rails::default(),
        grace_period_secs: 300,
        reservation_timeout_secs: 120,
    })
}

/// The kernel's hostname, or `localhost` when it cannot be read.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_section_selects_and_validates_the_backend() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.store.backend, StoreBackend::Embedded);
        let c = Config::from_toml(
            "[store]\nbackend = \"etcd\"\nendpoints = [\"http://10.0.0.1:2379\", \"http://10.0.0.2:2379\"]\nprefix = \"/jobnet\"\ntimeout_ms = 2000\n",
        )
        .unwrap();
        assert_eq!(c.store.backend, StoreBackend::Etcd);
        assert_eq!(c.store.endpoints.len(), 2);
        assert_eq!(c.store.timeout_ms, 2000);
        for (bad, why) in [
            ("backend = \"etcd\"", "needs at least one endpoint"),
            ("endpoints = [\"http://a:1\"]", "backend is \"embedded\""),
            ("backend = \"etcd\"\nendpoints = [\"a:1\"]", "http://"),
            (
                "backend = \"etcd\"\nendpoints = [\"http://a:1\"]\ntimeout_ms = 0",
                "timeout_ms",
            ),
            (
                "backend = \"etcd\"\nendpoints = [\"http://a:1\"]\nprefix = \"x\"",
                "prefix",
            ),
            (
                "backend = \"etcd\"\nendpoints = [\"https://a:1\"]\ncert_file = \"c\"",
                "key_file",
            ),
            ("backend = \"zookeeper\"", "unknown variant"),
            ("endpoint = [\"http://a:1\"]", "unknown field"),
        ] {
            let e = Config::from_toml(&format!("[store]\n{bad}\n")).unwrap_err();
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn empty_config_gets_a_default_pool() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.pools.len(), 1);
        assert_eq!(c.default_pool_name(), "default");
        assert_eq!(c.socket, PathBuf::from("/run/jobnet/jobnetd.sock"));
        assert_eq!(
            c.metrics_addr,
            MetricsAddr::On("127.0.0.1:9595".parse().unwrap())
        );
        assert!(c.pools[0].pfs.is_none());
    }

    #[test]
    fn pool_with_devices_and_ipam_fields() {
        let c = Config::from_toml(
            r#"
node = "n1"
metrics_addr = "off"
log_format = "json"
[[pools]]
name = "rdma"
cidrs = ["10.100.0.0/16", "fd00:100::/48"]
rails = 2
isolation = { mode = "vxlan", first = 1000, last = 1999 }
pfs = ["ens1f0", ["0000:af:00.0", "ens3f0"]]
mtu = 9000
"#,
        )
        .unwrap();
        let p = &c.pools[0];
        assert_eq!(p.rail_count(), 2);
        assert_eq!(p.mtu, Some(9000));
        let layout = p.layout();
        let pfs = layout.pfs.unwrap();
        assert_eq!(pfs[1].len(), 2);
        assert_eq!(c.metrics_addr, MetricsAddr::Off);
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn rejects_unknown_keys_and_inconsistencies() {
        assert!(Config::from_toml("sockett = \"/x\"").is_err());
        assert!(Config::from_toml(
            "[[pools]]\nname = \"a\"\ncidrs = [\"10.0.0.0/16\"]\nbogus = 1\n"
        )
        .is_err());
        assert!(Config::from_toml(
            "[[pools]]\nname = \"a\"\ncidrs = [\"10.0.0.0/16\"]\nrails = 2\npfs = [\"e0\"]\n"
        )
        .is_err());
        assert!(Config::from_toml("default_pool = \"x\"").is_err());
        assert!(Config::from_toml("metrics_addr = \"nope\"").is_err());
    }
}
