//! Percentiles of a handful of round trips.

use std::time::Duration;

/// The `q`-quantile (nearest rank) of `samples` in microseconds; 0 when empty.
pub fn quantile_us(samples: &[Duration], q: f64) -> u32 {
    let mut v: Vec<u128> = samples.iter().map(Duration::as_micros).collect();
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let rank = (q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize;
    let i = rank.saturating_sub(1).min(v.len() - 1);
    u32::try_from(v[i]).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let us = |v: &[u64]| {
            v.iter()
                .map(|u| Duration::from_micros(*u))
                .collect::<Vec<_>>()
        };
        assert_eq!(quantile_us(&[], 0.5), 0);
        let s = us(&[40, 10, 30, 20]);
        assert_eq!(quantile_us(&s, 0.5), 20);
        assert_eq!(quantile_us(&s, 0.99), 40);
        assert_eq!(quantile_us(&us(&[7]), 0.5), 7);
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile_us(&us(&hundred), 0.99), 99);
    }
}
