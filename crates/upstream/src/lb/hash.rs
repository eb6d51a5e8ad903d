//! Consistent hashing: xxHash64 (Envoy's default host and key hash), the
//! ring hash ring and the Maglev lookup table.
//!
//! xxHash64 is implemented here from its published specification: nothing
//! in the dependency tree provides a stable one, and it is small.

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

fn round(acc: u64, lane: u64) -> u64 {
    acc.wrapping_add(lane.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

fn merge(h: u64, v: u64) -> u64 {
    (h ^ round(0, v)).wrapping_mul(P1).wrapping_add(P4)
}

fn read64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn read32(b: &[u8]) -> u64 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u64::from(u32::from_le_bytes(a))
}

/// xxHash64 of `data` with seed 0, as Envoy hashes request keys
/// (`hash_policy`) and hosts. Pure; does not allocate.
pub fn xxhash64(data: &[u8]) -> u64 {
    xxhash64_seeded(data, 0)
}

/// xxHash64 of `data` with `seed`. Pure; does not allocate.
pub fn xxhash64_seeded(data: &[u8], seed: u64) -> u64 {
    let len = data.len() as u64;
    let mut rest = data;
    let mut h = if data.len() >= 32 {
        let mut v = [
            seed.wrapping_add(P1).wrapping_add(P2),
            seed.wrapping_add(P2),
            seed,
            seed.wrapping_sub(P1),
        ];
        while rest.len() >= 32 {
            for (i, lane) in v.iter_mut().enumerate() {
                *lane = round(*lane, read64(&rest[i * 8..]));
            }
            rest = &rest[32..];
        }
        let mut h = v[0]
            .rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18));
        for lane in v {
            h = merge(h, lane);
        }
        h
    } else {
        seed.wrapping_add(P5)
    };
    h = h.wrapping_add(len);
    while rest.len() >= 8 {
        h ^= round(0, read64(rest));
        h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        h ^= read32(rest).wrapping_mul(P1);
        h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        rest = &rest[4..];
    }
    for &b in rest {
        h ^= u64::from(b).wrapping_mul(P5);
        h = h.rotate_left(11).wrapping_mul(P1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

/// A ring of `(hash, host index)` sorted by hash, built as Envoy builds
/// its ring: each host gets entries in proportion to its weight, scaled so
/// the lightest host has at least one and the ring has at least
/// `min_size` entries (at most `max_size`).
pub(crate) fn build_ring(
    keys: &[String],
    weights: &[u32],
    min_size: u64,
    max_size: u64,
) -> Vec<(u64, u32)> {
    let total: f64 = weights.iter().map(|&w| f64::from(w.max(1))).sum();
    if keys.is_empty() || total == 0.0 {
        return Vec::new();
    }
    let min_norm = weights
        .iter()
        .map(|&w| f64::from(w.max(1)) / total)
        .fold(f64::INFINITY, f64::min);
    let scale = ((min_norm * min_size as f64).ceil() / min_norm).min(max_size as f64);
    let mut ring = Vec::with_capacity(scale.ceil() as usize + keys.len());
    let mut target = 0.0;
    let mut placed = 0u64;
    let mut buf = String::new();
    for (i, (key, &w)) in keys.iter().zip(weights).enumerate() {
        target += scale * f64::from(w.max(1)) / total;
        let mut n = 0u64;
        while (placed as f64) < target {
            buf.clear();
            buf.push_str(key);
            buf.push('_');
            buf.push_str(&n.to_string());
            ring.push((xxhash64(buf.as_bytes()), i as u32));
            placed += 1;
            n += 1;
        }
    }
    ring.sort_unstable();
    ring
}

/// The first ring entry at or after `hash`, wrapping. Never allocates.
pub(crate) fn ring_lookup(ring: &[(u64, u32)], hash: u64) -> Option<u32> {
    let i = ring.partition_point(|&(h, _)| h < hash);
    ring.get(i).or_else(|| ring.first()).map(|&(_, host)| host)
}

/// The Maglev lookup table (Eisenbud et al., NSDI '16): each host walks its
/// own permutation of the table's slots, taking the next free one in turn,
/// until every slot is taken. Weighted as Envoy weights it: a host claims a
/// slot in a round only once its accumulated weight reaches the heaviest
/// host's, so slots are shared in proportion to weight. `size` should be
/// prime so every skip visits every slot.
pub(crate) fn build_maglev(keys: &[String], weights: &[u32], size: u64) -> Vec<u32> {
    let m = size.max(1);
    if keys.is_empty() {
        return Vec::new();
    }
    let perm: Vec<(u64, u64)> = keys
        .iter()
        .map(|k| {
            let offset = xxhash64(k.as_bytes()) % m;
            let skip = if m > 1 {
                xxhash64_seeded(k.as_bytes(), 1) % (m - 1) + 1
            } else {
                1
            };
            (offset, skip)
        })
        .collect();
    let max_w = f64::from(weights.iter().copied().max().unwrap_or(1).max(1));
    let norm: Vec<f64> = weights
        .iter()
        .map(|&w| f64::from(w.max(1)) / max_w)
        .collect();
    let mut credit = vec![0.0f64; keys.len()];
    let mut next = vec![0u64; keys.len()];
    let mut table = vec![u32::MAX; m as usize];
    let mut filled = 0u64;
    'fill: loop {
        for i in 0..keys.len() {
            credit[i] += norm[i];
            if credit[i] < 1.0 {
                continue;
            }
            credit[i] -= 1.0;
            let (offset, skip) = perm[i];
            loop {
                let slot = ((offset + next[i] * skip) % m) as usize;
                next[i] += 1;
                if table[slot] == u32::MAX {
                    table[slot] = i as u32;
                    filled += 1;
                    break;
                }
            }
            if filled == m {
                break 'fill;
            }
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxhash64_matches_reference_vectors() {
        assert_eq!(xxhash64(b""), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxhash64(b"abc"), 0x44BC_2CF5_AD77_0999);
    }

    #[test]
    fn xxhash64_long_inputs_are_stable_and_seeded() {
        let long = [7u8; 100];
        assert_eq!(xxhash64(&long), xxhash64_seeded(&long, 0));
        assert_ne!(xxhash64(&long), xxhash64_seeded(&long, 1));
        assert_ne!(xxhash64(&long[..99]), xxhash64(&long));
    }

    #[test]
    fn maglev_fills_every_slot() {
        let keys: Vec<String> = (0..3).map(|i| format!("10.0.0.{i}:80")).collect();
        let t = build_maglev(&keys, &[1, 1, 1], 65_537);
        assert!(t.iter().all(|&i| i < 3));
    }
}
