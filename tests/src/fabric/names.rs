//! Fabric ids and the names of every netns and netdev a fabric makes.
//!
//! Every name carries the fabric id so fabrics built in parallel never
//! collide, and so `down --all` can recognise what a crashed run left behind.
//! Netdev names stay within 15 bytes for up to 99 nodes/NICs and 999 VFs.

use std::sync::atomic::{AtomicU64, Ordering};

/// Prefix of every netns and netdev name a fabric makes.
pub const PREFIX: &str = "jf";

/// Name prefix of the temp dirs that hold fake sysfs trees.
pub const TREE_DIR_PREFIX: &str = "jobnet-fabric-";

/// Where fake sysfs trees may live, preferred first: /dev/shm (tmpfs) when
/// present, because thousands of small files on a busy disk make building
/// and removing a fabric take seconds; then the temp dir.
pub fn tree_parents() -> Vec<std::path::PathBuf> {
    let shm = std::path::Path::new("/dev/shm");
    let tmp = std::env::temp_dir();
    if shm.is_dir() && tmp != shm {
        vec![shm.to_owned(), tmp]
    } else {
        vec![tmp]
    }
}

/// Tail of the management netns name (`jf<id>-mgmt`).
const MGMT_SUFFIX: &str = "mgmt";

/// Length of a fabric id.
const ID_LEN: usize = 4;

/// A short fabric id: four characters of `[0-9a-z]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct FabricId(String);

impl FabricId {
    /// A fresh id from the pid, a process-wide counter and the clock.
    pub fn generate() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut x = u64::from(std::process::id())
            ^ COUNTER
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ nanos.rotate_left(17);
        // splitmix64 finaliser: spreads nearby inputs over the whole range.
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let mut s = String::with_capacity(ID_LEN);
        for _ in 0..ID_LEN {
            s.push(char::from(digits[(x % 36) as usize]));
            x /= 36;
        }
        Self(s)
    }

    /// Parses an id; None unless it is exactly four `[0-9a-z]` characters.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == ID_LEN
            && s.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()))
        .then(|| Self(s.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of a netns name this module made (`jf<id>-n3`, `jf<id>-r0`,
    /// `jf<id>-mgmt`).
    pub fn of_netns(name: &str) -> Option<Self> {
        let rest = name.strip_prefix(PREFIX)?;
        let (id, tail) = rest.split_once('-')?;
        let kind_ok = tail == MGMT_SUFFIX
            || tail
                .strip_prefix('n')
                .or_else(|| tail.strip_prefix('r'))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if kind_ok {
            Self::parse(id)
        } else {
            None
        }
    }

    /// Netns of node `n`.
    pub fn node_netns(&self, n: usize) -> String {
        format!("{PREFIX}{}-n{n}", self.0)
    }

    /// Netns of the switch of rail `m`.
    pub fn rail_netns(&self, m: usize) -> String {
        format!("{PREFIX}{}-r{m}", self.0)
    }

    /// Netns of the management network.
    pub fn mgmt_netns(&self) -> String {
        format!("{PREFIX}{}-{MGMT_SUFFIX}", self.0)
    }

    /// The management bridge inside [`Self::mgmt_netns`].
    pub fn mgmt_bridge(&self) -> String {
        format!("{PREFIX}{}mb", self.0)
    }

    /// Management bridge port (mgmt side) of node `n`'s `mgmt0`.
    pub fn mgmt_port(&self, n: usize) -> String {
        format!("{PREFIX}{}m{n}", self.0)
    }

    /// The bridge inside each rail switch netns.
    pub fn bridge(&self) -> String {
        format!("{PREFIX}{}br", self.0)
    }

    /// PF netdev of NIC `m` in a node.
    pub fn pf_netdev(&self, m: usize) -> String {
        format!("{PREFIX}{}p{m}", self.0)
    }

    /// VF netdev `k` of NIC `m` in a node.
    pub fn vf_netdev(&self, m: usize, k: usize) -> String {
        format!("{PREFIX}{}p{m}v{k}", self.0)
    }

    /// Switch port (rail side) of node `n`'s PF on a rail.
    pub fn uplink_port(&self, n: usize) -> String {
        format!("{PREFIX}{}u{n}", self.0)
    }

    /// Representor (rail side) of node `n`'s VF `k` on a rail.
    pub fn representor(&self, n: usize, k: usize) -> String {
        format!("{PREFIX}{}n{n}v{k}", self.0)
    }

    /// Representor of VF `k` of NIC `m` in a switchdev fabric, where it
    /// lives in the node netns next to the VF (`p<m>r<k>` mirrors the VF's
    /// `p<m>v<k>`).
    pub fn switchdev_representor(&self, m: usize, k: usize) -> String {
        format!("{PREFIX}{}p{m}r{k}", self.0)
    }

    /// Directory holding the fabric's fake sysfs trees.
    pub fn base_dir(&self) -> std::path::PathBuf {
        tree_parents()[0].join(format!("{TREE_DIR_PREFIX}{}", self.0))
    }
}

impl std::fmt::Display for FabricId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for FabricId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| serde::de::Error::custom("bad fabric id"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_distinct_and_parse_back() {
        let a = FabricId::generate();
        let b = FabricId::generate();
        assert_ne!(a, b);
        assert_eq!(FabricId::parse(a.as_str()), Some(a.clone()));
        assert_eq!(FabricId::of_netns(&a.node_netns(12)), Some(a.clone()));
        assert_eq!(FabricId::of_netns(&a.rail_netns(0)), Some(a.clone()));
        assert_eq!(FabricId::of_netns(&a.mgmt_netns()), Some(a.clone()));
        for bad in ["", "abc", "abcde", "ABCD", "ab/d", "ab-d"] {
            assert!(FabricId::parse(bad).is_none(), "{bad}");
        }
        for bad in [
            "jfabcd",
            "jfabcd-x1",
            "jfabcd-n",
            "xxabcd-n1",
            "jfab-n1",
            "jfabcd-mgmt0",
            "jfabcd-mg",
        ] {
            assert!(FabricId::of_netns(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn netdev_names_fit_ifnamsiz() {
        let id = FabricId::generate();
        for name in [
            id.vf_netdev(99, 999),
            id.representor(99, 999),
            id.switchdev_representor(99, 999),
            id.pf_netdev(99),
            id.uplink_port(99),
            id.bridge(),
            id.mgmt_bridge(),
            id.mgmt_port(99),
        ] {
            assert!(name.len() <= 15, "{name}");
        }
    }
}
