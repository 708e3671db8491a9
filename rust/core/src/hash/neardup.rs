//! Near-duplicate search on 64-bit hashes within a Hamming radius, by multi-index hashing:
//! split each hash into r + 1 disjoint bit ranges; two hashes within distance r agree exactly
//! on at least one range (pigeonhole), so only items sharing a range value are compared.

use std::collections::HashMap;

use super::unionfind::UnionFind;

/// The bit ranges (shift, width) of `parts` near-equal pieces of 64 bits.
fn ranges(parts: usize) -> Vec<(u32, u32)> {
    let mut out = Vec::with_capacity(parts);
    let mut start = 0u32;
    for p in 0..parts {
        let width = (64 - start) / (parts - p) as u32;
        out.push((start, width));
        start += width;
    }
    out
}

#[inline]
fn piece(h: u64, (shift, width): (u32, u32)) -> u64 {
    if width == 64 {
        h
    } else {
        (h >> shift) & ((1u64 << width) - 1)
    }
}

/// Every pair `(i, j, distance)` with `i < j` and `popcount(h[i] ^ h[j]) <= radius`, sorted.
/// `None` entries (hashes that failed) take part in nothing. Radius must be < 64.
pub fn pairs_within(hashes: &[Option<u64>], radius: u32) -> Vec<(u32, u32, u32)> {
    let parts = (radius as usize + 1).min(64);
    let mut out = Vec::new();
    let mut seen: Vec<u32> = vec![u32::MAX; hashes.len()];
    let rs = ranges(parts);
    let mut tables: Vec<HashMap<u64, Vec<u32>>> = vec![HashMap::new(); parts];
    for (i, h) in hashes.iter().enumerate() {
        let Some(h) = *h else { continue };
        for (t, &r) in tables.iter_mut().zip(&rs) {
            let bucket = t.entry(piece(h, r)).or_default();
            for &j in bucket.iter() {
                if seen[j as usize] == i as u32 {
                    continue;
                }
                seen[j as usize] = i as u32;
                let d = (h ^ hashes[j as usize].expect("indexed")).count_ones();
                if d <= radius {
                    out.push((j, i as u32, d));
                }
            }
            bucket.push(i as u32);
        }
    }
    out.sort_unstable();
    out
}

/// Clusters of hashes within `radius` of each other (transitively), without listing every
/// pair: equal hashes are grouped first and only distinct values are searched, so a hash shared
/// by 20,000 items (a blank placeholder image) costs one entry, not 200 million pairs. Returns
/// the representative of each item (the smallest index of its cluster; an item whose hash is
/// `None` is its own) and the number of pairs of distinct values within `radius`.
pub fn clusters_within(hashes: &[Option<u64>], radius: u32) -> (Vec<u32>, u64) {
    let mut uf = UnionFind::new(hashes.len());
    let mut first: HashMap<u64, u32> = HashMap::new();
    let mut distinct: Vec<Option<u64>> = Vec::new();
    let mut owner: Vec<u32> = Vec::new();
    for (i, h) in hashes.iter().enumerate() {
        let Some(h) = *h else { continue };
        match first.entry(h) {
            std::collections::hash_map::Entry::Occupied(e) => {
                uf.union(*e.get(), i as u32);
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(i as u32);
                distinct.push(Some(h));
                owner.push(i as u32);
            }
        }
    }
    let pairs = pairs_within(&distinct, radius);
    for &(a, b, _) in &pairs {
        uf.union(owner[a as usize], owner[b as usize]);
    }
    (uf.representatives(|_| 0u8), pairs.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_exactly_the_pairs_brute_force_finds() {
        let mut state = 12345u64;
        let mut rnd = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut hashes: Vec<Option<u64>> = (0..300).map(|_| Some(rnd())).collect();
        for i in 0..100 {
            let base = hashes[i].unwrap();
            hashes.push(Some(base ^ (1 << (i % 64)) ^ (1 << ((i * 7) % 64))));
        }
        hashes.push(None);
        for radius in [0, 2, 5, 10] {
            let got = pairs_within(&hashes, radius);
            let mut want = Vec::new();
            for i in 0..hashes.len() {
                for j in i + 1..hashes.len() {
                    if let (Some(a), Some(b)) = (hashes[i], hashes[j]) {
                        let d = (a ^ b).count_ones();
                        if d <= radius {
                            want.push((i as u32, j as u32, d));
                        }
                    }
                }
            }
            assert_eq!(got, want, "radius {radius}");
        }
    }

    #[test]
    fn many_copies_of_one_hash_cluster_without_pairs() {
        let mut hashes = vec![Some(0x8000_0000_0000_0000u64); 50_000];
        hashes.push(Some(0x8000_0000_0000_0003)); // 2 bits from the others
        hashes.push(Some(0x0fff_ffff_0000_0000)); // far
        hashes.push(None);
        let (reps, pairs) = clusters_within(&hashes, 5);
        assert_eq!(pairs, 1);
        assert!(reps[..50_001].iter().all(|&r| r == 0));
        assert_eq!(reps[50_001], 50_001);
        assert_eq!(reps[50_002], 50_002);
    }

    #[test]
    fn clusters_equal_those_of_all_pairs() {
        let mut state = 99u64;
        let mut rnd = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let base: Vec<u64> = (0..40).map(|_| rnd()).collect();
        let hashes: Vec<Option<u64>> = (0..400).map(|i| Some(base[i % 40] ^ if i % 3 == 0 { 1 << (i % 64) } else { 0 })).collect();
        let mut uf = UnionFind::new(hashes.len());
        for (i, j, _) in pairs_within(&hashes, 3) {
            uf.union(i, j);
        }
        assert_eq!(clusters_within(&hashes, 3).0, uf.representatives(|_| 0u8));
    }
}
