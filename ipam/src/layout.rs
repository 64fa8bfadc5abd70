//! Address arithmetic inside one job subnet: usable offsets, gateway, exclusions, rank formula.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::{addr_to_u128, net_bounds, u128_to_addr, GatewayPolicy};
use crate::model::Family;

/// Which host offsets of a job subnet may be handed out.
#[derive(Debug, Clone)]
pub(crate) struct SubnetLayout {
    net: IpNet,
    family: Family,
    base: u128,
    lo: u64,
    hi: u64,
    gateway: Option<u64>,
    /// Offsets never handed out (gateway, exclusions), sorted, disjoint, within `lo..=hi`.
    excluded: Vec<(u64, u64)>,
}

impl SubnetLayout {
    /// The layout of `net` under the pool's gateway policy and exclusions.
    pub(crate) fn new(net: IpNet, gateway: GatewayPolicy, pool_excluded: &[(u128, u128)]) -> Self {
        let family = Family::of(&net.network());
        let (base, last) = net_bounds(&net);
        // Host bits are at most 64 (validated), so the span fits a u64.
        let span = u64::try_from(last - base).unwrap_or(u64::MAX);
        let (lo, hi) = match family {
            Family::V4 if span >= 3 => (1, span - 1),
            Family::V4 => (0, span),
            Family::V6 if span >= 1 => (1, span),
            Family::V6 => (0, 0),
        };
        let gw = match gateway {
            GatewayPolicy::First if lo < hi => Some(lo),
            _ => None,
        };
        let mut excluded: Vec<(u64, u64)> = gw.map(|g| (g, g)).into_iter().collect();
        for &(a, b) in pool_excluded {
            if b < base || a > last {
                continue;
            }
            let a = u64::try_from(a.max(base) - base)
                .unwrap_or(u64::MAX)
                .max(lo);
            let b = u64::try_from(b.min(last) - base)
                .unwrap_or(u64::MAX)
                .min(hi);
            if a <= b {
                excluded.push((a, b));
            }
        }
        excluded.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(excluded.len());
        for (a, b) in excluded {
            match merged.last_mut() {
                Some(l) if a <= l.1.saturating_add(1) => l.1 = l.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        Self {
            net,
            family,
            base,
            lo,
            hi,
            gateway: gw,
            excluded: merged,
        }
    }

    /// The subnet.
    pub(crate) fn net(&self) -> IpNet {
        self.net
    }

    /// Gateway address, if the policy gives one.
    pub(crate) fn gateway(&self) -> Option<IpAddr> {
        self.gateway.map(|g| self.addr(g))
    }

    /// The address at a host offset.
    pub(crate) fn addr(&self, offset: u64) -> IpAddr {
        u128_to_addr(self.family, self.base + u128::from(offset))
    }

    /// The address at an offset with the subnet's prefix length.
    pub(crate) fn host(&self, offset: u64) -> IpNet {
        // The prefix came from a valid IpNet, so this cannot fail; fall back to a host route.
        IpNet::new(self.addr(offset), self.net.prefix_len())
            .unwrap_or_else(|_| IpNet::from(self.addr(offset)))
    }

    /// The offset of an address inside the subnet.
    #[allow(dead_code)]
    pub(crate) fn offset_of(&self, addr: IpAddr) -> Option<u64> {
        if !self.net.contains(&addr) {
            return None;
        }
        u64::try_from(addr_to_u128(addr) - self.base).ok()
    }

    /// The `n`-th allowed offset (0-based): the address of rank `n`.
    pub(crate) fn nth_allowed(&self, n: u64) -> Option<u64> {
        let mut pos = self.lo.checked_add(n)?;
        for &(a, b) in &self.excluded {
            if a > pos {
                break;
            }
            pos = pos.checked_add(b - a + 1)?;
        }
        (pos <= self.hi).then_some(pos)
    }

    /// The largest allowed offset that is <= `offset`.
    pub(crate) fn prev_allowed(&self, offset: u64) -> Option<u64> {
        let mut pos = offset.min(self.hi);
        for &(a, b) in self.excluded.iter().rev() {
            if a <= pos && pos <= b {
                pos = a.checked_sub(1)?;
            }
        }
        (pos >= self.lo).then_some(pos)
    }

    /// The highest allowed offset.
    #[cfg(test)]
    pub(crate) fn top(&self) -> Option<u64> {
        self.prev_allowed(self.hi)
    }

    /// The offsets `(low, high)` of address block `b` (block 0 holds the
    /// highest offsets); `None` past the bottom of the subnet.
    pub(crate) fn block_range(&self, b: u64, size: u64) -> Option<(u64, u64)> {
        let high = self.hi.checked_sub(b.checked_mul(size)?)?;
        if high < self.lo {
            return None;
        }
        let low = high.saturating_sub(size.saturating_sub(1)).max(self.lo);
        Some((low, high))
    }

    /// How many offsets are allowed in total.
    pub(crate) fn capacity(&self) -> u64 {
        let excluded: u64 = self.excluded.iter().map(|(a, b)| b - a + 1).sum();
        (self.hi - self.lo + 1).saturating_sub(excluded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(net: &str, gw: GatewayPolicy, excl: &[&str]) -> SubnetLayout {
        let ex: Vec<(u128, u128)> = excl
            .iter()
            .map(|e| net_bounds(&e.parse().unwrap()))
            .collect();
        SubnetLayout::new(net.parse().unwrap(), gw, &ex)
    }

    #[test]
    fn ranks_skip_gateway_and_exclusions() {
        let l = layout(
            "10.0.1.0/24",
            GatewayPolicy::First,
            &["10.0.1.3/32", "10.0.1.4/31"],
        );
        assert_eq!(l.gateway(), Some("10.0.1.1".parse().unwrap()));
        let addrs: Vec<String> = (0..3)
            .map(|r| l.addr(l.nth_allowed(r).unwrap()).to_string())
            .collect();
        assert_eq!(addrs, ["10.0.1.2", "10.0.1.6", "10.0.1.7"]);
        assert_eq!(l.capacity(), 254 - 1 - 3);
        assert_eq!(l.nth_allowed(l.capacity() - 1), Some(254));
        assert_eq!(l.nth_allowed(l.capacity()), None);
        assert_eq!(l.prev_allowed(5), Some(2));
        assert_eq!(l.top(), Some(254));
    }

    #[test]
    fn small_and_v6_subnets() {
        let l = layout("10.0.0.0/31", GatewayPolicy::First, &[]);
        assert_eq!((l.nth_allowed(0), l.nth_allowed(1)), (Some(1), None));
        let l = layout("10.0.0.0/32", GatewayPolicy::None, &[]);
        assert_eq!((l.nth_allowed(0), l.nth_allowed(1)), (Some(0), None));
        let l = layout("fd00::/64", GatewayPolicy::None, &[]);
        assert_eq!(l.addr(l.nth_allowed(0).unwrap()).to_string(), "fd00::1");
        assert_eq!(l.top(), Some(u64::MAX));
        assert_eq!(l.offset_of("fd00::5".parse().unwrap()), Some(5));
    }
}
