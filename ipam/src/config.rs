//! Pool configuration as written in the daemon's TOML, and its validation.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::model::Family;

/// Largest number of job subnets one CIDR may be split into (2^32), so indexes stay small.
const MAX_SPLIT_BITS: u8 = 32;
/// Most rails a pool may have.
const MAX_RAILS: usize = 64;

/// One pool as configured.
///
/// ```toml
/// [[pools]]
/// name = "rdma"
/// cidrs = ["10.100.0.0/16", "fd00:100::/48"]
/// subnet_prefix = { v4 = 24, v6 = 64 }
/// exclude = ["10.100.0.1", "10.100.255.0/24"]
/// gateway = "first"
/// isolation = { mode = "vxlan", first = 1000, last = 1999 }
/// rails = 2                     # or rails = ["rail-a", "rail-b"]
/// grace_period_secs = 300
/// reservation_timeout_secs = 60
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Pool name (`[A-Za-z0-9._-]`, 1-63 characters).
    pub name: String,
    /// CIDRs job subnets are carved from (IPv4 and/or IPv6).
    pub cidrs: Vec<IpNet>,
    /// Prefix length of a job subnet per family.
    #[serde(default)]
    pub subnet_prefix: SubnetPrefix,
    /// Addresses or CIDRs never handed out.
    #[serde(default)]
    pub exclude: Vec<Exclusion>,
    /// Whether each job subnet has a gateway address.
    #[serde(default)]
    pub gateway: GatewayPolicy,
    /// How jobs are isolated from each other.
    #[serde(default)]
    pub isolation: IsolationConfig,
    /// Rails: a count or a list of names; each job gets one subnet per rail and family.
    #[serde(default)]
    pub rails: Rails,
    /// How long an empty job keeps its subnets and isolation ID.
    #[serde(default = "default_grace")]
    pub grace_period_secs: u64,
    /// How long a reservation may stay uncommitted.
    #[serde(default = "default_timeout")]
    pub reservation_timeout_secs: u64,
}

fn default_grace() -> u64 {
    300
}

fn default_timeout() -> u64 {
    120
}

/// Job subnet prefix length per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubnetPrefix {
    /// IPv4 job subnet prefix (default 24).
    pub v4: u8,
    /// IPv6 job subnet prefix (default 64; at least 64).
    pub v6: u8,
}

impl Default for SubnetPrefix {
    fn default() -> Self {
        Self { v4: 24, v6: 64 }
    }
}

/// An excluded address or range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Exclusion {
    /// A CIDR.
    Net(IpNet),
    /// A single address.
    Addr(IpAddr),
}

impl Exclusion {
    fn as_net(&self) -> IpNet {
        match *self {
            Exclusion::Net(n) => n,
            Exclusion::Addr(a) => IpNet::from(a),
        }
    }
}

/// Gateway policy of job subnets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GatewayPolicy {
    /// No gateway.
    None,
    /// The first usable address of each job subnet is the gateway.
    #[default]
    First,
}

/// How a pool isolates jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IsolationMode {
    /// VLAN set on the VF through the PF (IDs 1-4094).
    VfVlan,
    /// Per-job VXLAN on switchdev representors (VNIs 1-16777215).
    Vxlan,
    /// InfiniBand partition key (1-0x7ffe).
    Pkey,
    /// No isolation.
    #[default]
    None,
}

impl IsolationMode {
    /// The widest ID range the mode allows, None for `none`.
    pub fn id_limits(self) -> Option<(u32, u32)> {
        match self {
            IsolationMode::VfVlan => Some((1, 4094)),
            IsolationMode::Vxlan => Some((1, (1 << 24) - 1)),
            IsolationMode::Pkey => Some((1, 0x7ffe)),
            IsolationMode::None => None,
        }
    }
}

impl fmt::Display for IsolationMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IsolationMode::VfVlan => "vf-vlan",
            IsolationMode::Vxlan => "vxlan",
            IsolationMode::Pkey => "pkey",
            IsolationMode::None => "none",
        })
    }
}

/// Isolation mode and ID range (inclusive; defaults to the mode's full range).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IsolationConfig {
    /// The mode.
    #[serde(default)]
    pub mode: IsolationMode,
    /// First ID of the range.
    #[serde(default)]
    pub first: Option<u32>,
    /// Last ID of the range.
    #[serde(default)]
    pub last: Option<u32>,
}

/// Rails of a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Rails {
    /// This many rails, named `rail0`, `rail1`, ...
    Count(u16),
    /// Rails with these names, in rail order.
    Names(Vec<String>),
}

impl Default for Rails {
    fn default() -> Self {
        Rails::Count(1)
    }
}

/// The CIDRs of one family and how they split into job subnets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FamilyPlan {
    pub(crate) family: Family,
    pub(crate) cidrs: Vec<IpNet>,
    pub(crate) job_prefix: u8,
    /// Job subnets per CIDR, in CIDR order; global subnet index runs across them.
    pub(crate) counts: Vec<u64>,
    /// Excluded address intervals of this family, sorted and merged.
    pub(crate) excluded: Vec<(u128, u128)>,
}

impl FamilyPlan {
    /// Total number of job subnets.
    pub(crate) fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The job subnet with global index `index`.
    pub(crate) fn subnet(&self, index: u64) -> Option<IpNet> {
        let mut rest = index;
        for (cidr, &count) in self.cidrs.iter().zip(&self.counts) {
            if rest < count {
                let host_bits = u32::from(self.family.bits() - self.job_prefix);
                let base = addr_to_u128(cidr.network()) + (u128::from(rest) << host_bits);
                return IpNet::new(u128_to_addr(self.family, base), self.job_prefix).ok();
            }
            rest -= count;
        }
        None
    }

    /// True when every address of the subnet is excluded (such subnets are never carved).
    pub(crate) fn fully_excluded(&self, net: &IpNet) -> bool {
        let (lo, hi) = net_bounds(net);
        self.excluded.iter().any(|&(a, b)| a <= lo && hi <= b)
    }
}

/// A validated pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    config: PoolConfig,
    rail_names: Vec<String>,
    pub(crate) families: Vec<FamilyPlan>,
    id_range: Option<(u32, u32)>,
}

impl Pool {
    /// Validates a pool config.
    pub fn from_config(config: PoolConfig) -> Result<Self, ConfigError> {
        let name = config.name.clone();
        if name.is_empty()
            || name.len() > 63
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(ConfigError::BadName(name));
        }
        if config.cidrs.is_empty() {
            return Err(ConfigError::NoCidrs(name));
        }
        for (i, a) in config.cidrs.iter().enumerate() {
            if a.trunc() != *a {
                return Err(ConfigError::HostBits {
                    pool: name,
                    cidr: a.to_string(),
                    network: a.trunc().to_string(),
                });
            }
            for b in &config.cidrs[i + 1..] {
                if a.contains(b) || b.contains(a) {
                    return Err(ConfigError::Overlap {
                        pool: name,
                        a: a.to_string(),
                        b: b.to_string(),
                    });
                }
            }
        }
        let mut families = Vec::new();
        for family in [Family::V4, Family::V6] {
            let cidrs: Vec<IpNet> = config
                .cidrs
                .iter()
                .filter(|c| Family::of(&c.network()) == family)
                .copied()
                .collect();
            if cidrs.is_empty() {
                continue;
            }
            let job_prefix = match family {
                Family::V4 => config.subnet_prefix.v4,
                Family::V6 => config.subnet_prefix.v6,
            };
            // IPv6 job subnets of at most 2^64 hosts keep host offsets in a u64.
            let floor = if family == Family::V6 { 64 } else { 0 };
            let mut counts = Vec::new();
            for cidr in &cidrs {
                let min = cidr.prefix_len().max(floor);
                let max = family.bits();
                let split = job_prefix.checked_sub(cidr.prefix_len());
                if job_prefix < min
                    || job_prefix > max
                    || !matches!(split, Some(s) if s <= MAX_SPLIT_BITS)
                {
                    return Err(ConfigError::BadPrefix {
                        pool: name,
                        cidr: cidr.to_string(),
                        prefix: job_prefix,
                        min,
                        max: max.min(cidr.prefix_len().saturating_add(MAX_SPLIT_BITS)),
                    });
                }
                counts.push(1u64 << split.unwrap_or(0));
            }
            let excluded = merge(
                config
                    .exclude
                    .iter()
                    .map(Exclusion::as_net)
                    .filter(|n| Family::of(&n.network()) == family)
                    .map(|n| net_bounds(&n))
                    .collect(),
            );
            families.push(FamilyPlan {
                family,
                cidrs,
                job_prefix,
                counts,
                excluded,
            });
        }
        let id_range = match config.isolation.mode.id_limits() {
            None => None,
            Some((min, max)) => {
                let first = config.isolation.first.unwrap_or(min);
                let last = config.isolation.last.unwrap_or(max);
                if first < min || last > max || first > last {
                    return Err(ConfigError::BadIsolationRange {
                        pool: name,
                        mode: config.isolation.mode.to_string(),
                        first,
                        last,
                        min,
                        max,
                    });
                }
                Some((first, last))
            }
        };
        let rail_names = match &config.rails {
            Rails::Count(n) => (0..*n).map(|i| format!("rail{i}")).collect(),
            Rails::Names(names) => names.clone(),
        };
        let bad_rails = |reason: &str| ConfigError::BadRails {
            pool: name.clone(),
            reason: reason.to_string(),
        };
        if rail_names.is_empty() {
            return Err(bad_rails("a pool needs at least one rail"));
        }
        if rail_names.len() > MAX_RAILS {
            return Err(bad_rails("more than 64 rails"));
        }
        let mut seen = HashSet::new();
        for r in &rail_names {
            if r.is_empty() || r.len() > 63 {
                return Err(bad_rails("rail names must have 1-63 characters"));
            }
            if !seen.insert(r.as_str()) {
                return Err(bad_rails("duplicate rail name"));
            }
        }
        Ok(Self {
            config,
            rail_names,
            families,
            id_range,
        })
    }

    /// Validates several pools and checks their names are unique.
    pub fn from_configs(configs: Vec<PoolConfig>) -> Result<Vec<Self>, ConfigError> {
        let mut names = HashSet::new();
        let mut pools = Vec::with_capacity(configs.len());
        for c in configs {
            if !names.insert(c.name.clone()) {
                return Err(ConfigError::DuplicatePool(c.name));
            }
            pools.push(Self::from_config(c)?);
        }
        Ok(pools)
    }

    /// Pool name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The config it was built from.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Rail names in rail order.
    pub fn rail_names(&self) -> &[String] {
        &self.rail_names
    }

    /// Isolation mode.
    pub fn isolation_mode(&self) -> IsolationMode {
        self.config.isolation.mode
    }

    /// Inclusive isolation ID range (None for mode `none`).
    pub fn isolation_range(&self) -> Option<(u32, u32)> {
        self.id_range
    }

    /// How many isolation IDs a job of this pool holds: one per rail with
    /// `vxlan` (a node carries each rail's tunnel over that rail's PF, and the
    /// kernel allows one VXLAN device per VNI and port in a netns), one for the
    /// whole job with the other isolating modes, none with `none`.
    pub fn isolation_ids_per_job(&self) -> usize {
        match (self.id_range, self.isolation_mode()) {
            (None, _) => 0,
            (Some(_), IsolationMode::Vxlan) => self.rail_names.len(),
            (Some(_), _) => 1,
        }
    }

    /// Families the pool serves (IPv4 first).
    pub fn families(&self) -> Vec<Family> {
        self.families.iter().map(|f| f.family).collect()
    }

    /// Number of job subnets per family (each job takes one per rail).
    pub fn subnet_capacity(&self, family: Family) -> u64 {
        self.plan(family).map(FamilyPlan::total).unwrap_or(0)
    }

    pub(crate) fn plan(&self, family: Family) -> Option<&FamilyPlan> {
        self.families.iter().find(|f| f.family == family)
    }

    pub(crate) fn grace_ms(&self) -> u64 {
        self.config.grace_period_secs.saturating_mul(1000)
    }

    pub(crate) fn timeout_ms(&self) -> u64 {
        self.config.reservation_timeout_secs.saturating_mul(1000)
    }
}

/// First and last address of a network as integers.
pub(crate) fn net_bounds(net: &IpNet) -> (u128, u128) {
    (addr_to_u128(net.network()), addr_to_u128(net.broadcast()))
}

/// An address as an integer.
pub(crate) fn addr_to_u128(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// An integer as an address of the family (IPv4 keeps the low 32 bits).
pub(crate) fn u128_to_addr(family: Family, v: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::from(std::net::Ipv4Addr::from(v as u32)),
        Family::V6 => IpAddr::from(std::net::Ipv6Addr::from(v)),
    }
}

/// Sorts intervals and merges overlapping or touching ones.
fn merge(mut v: Vec<(u128, u128)>) -> Vec<(u128, u128)> {
    v.sort_unstable();
    let mut out: Vec<(u128, u128)> = Vec::with_capacity(v.len());
    for (a, b) in v {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}
