//! Which ranks each rank probes: every other rank up to [`FULL_MESH_MAX`]
//! ranks; beyond, its two ring neighbours plus [`SAMPLE_PEERS`] others
//! drawn from a seed, so the probes grow linearly with the job and every
//! node draws the same sample for the same run.

/// Most ranks probed as a full mesh.
pub const FULL_MESH_MAX: usize = 64;
/// Peers drawn at random per rank beyond the ring, for larger jobs.
pub const SAMPLE_PEERS: usize = 16;

/// A small, well-mixed PRNG step (splitmix64).
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The ranks `me` probes among `ranks` (sorted, without repeats), in
/// ascending order; empty when `me` is not among them.
pub fn peers_of(me: u32, ranks: &[u32], seed: u64) -> Vec<u32> {
    let Ok(i) = ranks.binary_search(&me) else {
        return Vec::new();
    };
    let n = ranks.len();
    if n <= FULL_MESH_MAX {
        return ranks.iter().copied().filter(|r| *r != me).collect();
    }
    let mut picked = vec![ranks[(i + 1) % n], ranks[(i + n - 1) % n]];
    let mut state = seed ^ u64::from(me).wrapping_mul(0x2545_f491_4f6c_dd1d);
    // Bounded draws: a repeat is skipped, never retried forever.
    for _ in 0..SAMPLE_PEERS * 4 {
        if picked.len() >= SAMPLE_PEERS + 2 {
            break;
        }
        let j = usize::try_from(splitmix(&mut state) % n as u64).unwrap_or(0);
        let r = ranks[j];
        if r != me && !picked.contains(&r) {
            picked.push(r);
        }
    }
    picked.sort_unstable();
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_jobs_are_a_full_mesh() {
        let ranks: Vec<u32> = (0..64).collect();
        let p = peers_of(5, &ranks, 1);
        assert_eq!(p.len(), 63);
        assert!(!p.contains(&5));
        assert!(peers_of(99, &ranks, 1).is_empty());
        assert!(peers_of(0, &[0], 1).is_empty());
    }

    #[test]
    fn large_jobs_get_a_ring_and_a_bounded_sample() {
        let ranks: Vec<u32> = (0..1000).collect();
        for me in [0u32, 1, 500, 999] {
            let p = peers_of(me, &ranks, 42);
            assert!(p.len() <= SAMPLE_PEERS + 2, "{p:?}");
            assert!(p.len() >= 2 + SAMPLE_PEERS / 2, "{p:?}");
            assert!(!p.contains(&me));
            assert!(p.contains(&((me + 1) % 1000)));
            assert!(p.contains(&((me + 999) % 1000)));
            assert_eq!(p, peers_of(me, &ranks, 42), "same seed, same sample");
        }
        assert_ne!(peers_of(500, &ranks, 1), peers_of(500, &ranks, 2));
    }
}
