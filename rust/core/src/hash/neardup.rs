//! Near-duplicate search on 64-bit hashes within a Hamming radius, by multi-index hashing
//! (Norouzi, Punjani and Fleet, "Fast Search in Hamming Space with Multi-Index Hashing", 2012):
//! split each hash into m disjoint bit ranges; two hashes within distance r differ by at most
//! floor(r / m) bits on at least one range (pigeonhole), so a query looks up, in each range's
//! table, the values within that many bits of its own and compares only those buckets' hashes.
//! m is chosen from the number of hashes: r + 1 exact-match ranges for small sets; fewer, wider
//! ranges searched with a small radius for large ones, whose buckets would otherwise hold a
//! share of the whole set (2^-10.7 of it at r = 5: quadratic time).

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

/// Bit ranges this wide or narrower are looked up in a direct table of bucket offsets
/// (2^22 + 1 u32 = 16 MiB per range at most) when there are at least a sixteenth as many hashes
/// as table entries (see [`direct`]); others by binary search over the distinct range values.
const DIRECT_BITS: u32 = 22;

/// Whether a range of `width` bits over `present` hashes gets a direct table: a 22-bit table
/// from 262,144 hashes (16 MiB beside their 3 MiB of entries), never for a handful.
fn direct(width: u32, present: usize) -> bool {
    width <= DIRECT_BITS && (1usize << width) <= 16 * present.max(1)
}

/// One bit range's buckets: the entries sorted by (range value, id), with each entry's whole
/// hash beside its id so that a bucket is verified by one sequential scan.
struct Table {
    range: (u32, u32),
    /// Direct: `offsets[v]..offsets[v + 1]` is value v's bucket. Else `keys` holds the distinct
    /// values (sorted) and `offsets[k]..offsets[k + 1]` is `keys[k]`'s bucket.
    offsets: Vec<u32>,
    keys: Option<Vec<u64>>,
    codes: Vec<u64>,
    ids: Vec<u32>,
}

impl Table {
    fn build(hashes: &[Option<u64>], range: (u32, u32)) -> Table {
        // A direct table costs 2^width offsets whatever the count: only when the hashes are
        // about as many (a 22-bit table for three hashes would cost more than their search).
        let present = hashes.iter().filter(|h| h.is_some()).count();
        if direct(range.1, present) {
            // Counting sort straight into the columns: stable, so ids stay ascending within a
            // bucket.
            let mut offsets = vec![0u32; (1usize << range.1) + 1];
            for h in hashes.iter().flatten() {
                offsets[piece(*h, range) as usize + 1] += 1;
            }
            for k in 1..offsets.len() {
                offsets[k] += offsets[k - 1];
            }
            let total = offsets[offsets.len() - 1] as usize;
            let mut next = offsets.clone();
            let (mut codes, mut ids) = (vec![0u64; total], vec![0u32; total]);
            for (i, h) in hashes.iter().enumerate() {
                let Some(h) = *h else { continue };
                let slot = &mut next[piece(h, range) as usize];
                codes[*slot as usize] = h;
                ids[*slot as usize] = i as u32;
                *slot += 1;
            }
            return Table { range, offsets, keys: None, codes, ids };
        }
        let mut entries: Vec<(u64, u32)> = hashes.iter().enumerate().filter_map(|(i, h)| h.map(|h| (piece(h, range), i as u32))).collect();
        entries.sort_unstable();
        let mut keys = Vec::new();
        let mut offsets = Vec::new();
        for (k, &(v, _)) in entries.iter().enumerate() {
            if keys.last() != Some(&v) {
                keys.push(v);
                offsets.push(k as u32);
            }
        }
        offsets.push(entries.len() as u32);
        let codes = entries.iter().map(|&(_, i)| hashes[i as usize].expect("present")).collect();
        let ids = entries.into_iter().map(|(_, i)| i).collect();
        Table { range, offsets, keys: Some(keys), codes, ids }
    }

    /// The entries `lo..hi` whose range value is `v`.
    fn bucket(&self, v: u64) -> (usize, usize) {
        match &self.keys {
            None => (self.offsets[v as usize] as usize, self.offsets[v as usize + 1] as usize),
            Some(keys) => match keys.binary_search(&v) {
                Ok(k) => (self.offsets[k] as usize, self.offsets[k + 1] as usize),
                Err(_) => (0, 0),
            },
        }
    }
}

/// The masks of `width` bits with at most `max_weight` bits set, by weight (the empty mask
/// first), so that those of weight <= w are a prefix.
fn masks(width: u32, max_weight: u32) -> Vec<u64> {
    let mut out = vec![0u64];
    let mut frontier = vec![(0u64, 0u32)]; // (mask, lowest bit a larger mask may add)
    for _ in 0..max_weight.min(width) {
        let mut next = Vec::new();
        for &(m, from) in &frontier {
            for bit in from..width {
                next.push((m | (1u64 << bit), bit + 1));
            }
        }
        out.extend(next.iter().map(|&(m, _)| m));
        frontier = next;
    }
    out
}

/// C(n, 0) + ... + C(n, k) as a float (an estimate's input; never overflows).
fn ball(n: u32, k: u32) -> f64 {
    let (mut term, mut sum) = (1.0f64, 1.0f64);
    for i in 0..k.min(n) {
        term = term * f64::from(n - i) / f64::from(i + 1);
        sum += term;
    }
    sum
}

/// The number of bit ranges that makes a search of `present` hashes within `radius` cheapest,
/// by the expected work per query: each range costs its lookups (the values within
/// floor(radius / m) bits of the query's; a lookup is a cache miss, weighed as 20 comparisons,
/// or a binary search when the range is too wide for a direct table) plus the hashes in the
/// buckets it reaches (present / 2^width each, for uniform hashes).
fn choose_parts(present: usize, radius: u32) -> usize {
    let n = present.max(1) as f64;
    let mut best = (f64::INFINITY, radius as usize + 1);
    for m in (1..=radius + 1).rev() {
        let width = 64 / m; // the narrowest range: the fullest buckets
        let widest = 64u32.div_ceil(m); // the one least likely to get a direct table
        let lookup = if direct(widest, present) { 20.0 } else { 20.0 * n.log2().max(1.0) };
        let cost = f64::from(m) * ball(width, radius / m) * (lookup + n / 2f64.powi(width as i32));
        if cost < best.0 {
            best = (cost, m as usize);
        }
    }
    best.1
}

/// A multi-index hashing index over 64-bit hashes for Hamming range search: m bit ranges, each
/// a table of buckets by range value; a query within `radius` of an entry differs from it by at
/// most floor(radius / m) bits on at least one range (pigeonhole), so only the buckets of the
/// values that close to the query's are scanned. m = `radius + 1` (exact-match ranges) for
/// small sets, fewer and wider ranges for large ones (see [`HammingIndex::new`]).
/// Memory: 12 bytes per entry and range, plus the direct tables (at most 16 MiB per range).
pub struct HammingIndex {
    radius: u32,
    tables: Vec<Table>,
    /// Per table: the masks of its range's width by weight (see [`masks`]).
    masks: Vec<Vec<u64>>,
    len: usize,
}

impl HammingIndex {
    /// Indexes `hashes` (entry `i` is `hashes[i]`; `None` entries are never found) for searches
    /// within `radius` (< 64) or less, with the number of bit ranges that makes searching this
    /// many hashes cheapest (at radius 5: 6 exact-match ranges up to about 250,000 hashes, 3 ranges
    /// of 21-22 bits searched within 1 bit from there, so that the work per query grows slowly
    /// instead of in proportion to the set). The ranges' tables are built in parallel on the
    /// current rayon pool.
    pub fn new(hashes: &[Option<u64>], radius: u32) -> HammingIndex {
        assert!(radius < 64, "radius must be < 64");
        let present = hashes.iter().filter(|h| h.is_some()).count();
        HammingIndex::with_parts(hashes, radius, choose_parts(present, radius))
    }

    /// [`HammingIndex::new`] with `parts` bit ranges (1 ..= `radius + 1`; each range is then
    /// searched within floor(radius / parts) bits). The results do not depend on `parts`, only
    /// the work does.
    pub fn with_parts(hashes: &[Option<u64>], radius: u32, parts: usize) -> HammingIndex {
        use rayon::prelude::*;
        assert!(radius < 64, "radius must be < 64");
        assert!((1..=radius as usize + 1).contains(&parts), "parts must be in 1..={}", radius + 1);
        let sub = radius / parts as u32;
        assert!(ball(64 / parts as u32 + 1, sub) <= f64::from(1u32 << 24), "{parts} ranges at radius {radius} need too many lookups per query");
        let tables: Vec<Table> = ranges(parts).into_par_iter().map(|r| Table::build(hashes, r)).collect();
        let masks = tables.iter().map(|t| masks(t.range.1, sub)).collect();
        HammingIndex { radius, tables, masks, len: hashes.len() }
    }

    /// The number of bit ranges (tables) the index searches.
    pub fn parts(&self) -> usize {
        self.tables.len()
    }

    /// The radius the index was built for (searches may use it or less).
    pub fn radius(&self) -> u32 {
        self.radius
    }

    /// The number of entries (`None` ones included).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the index has no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Calls `found(id, distance)` once for each entry within `radius` (<= the index's) of `q`,
    /// in no particular order. An entry close to `q` on several ranges is reported from the
    /// first of them only.
    pub fn search(&self, q: u64, radius: u32, mut found: impl FnMut(u32, u32)) {
        assert!(radius <= self.radius, "radius {radius} is above the index's radius {}", self.radius);
        let sub = radius / self.tables.len() as u32;
        for (t, table) in self.tables.iter().enumerate() {
            let v = piece(q, table.range);
            // The masks of weight <= sub: a prefix (sorted by weight).
            let probes = &self.masks[t][..ball(table.range.1, sub) as usize];
            for &mask in probes {
                let (lo, hi) = table.bucket(v ^ mask);
                for k in lo..hi {
                    let h = table.codes[k];
                    let d = (q ^ h).count_ones();
                    if d <= radius && !self.tables[..t].iter().any(|e| (piece(q, e.range) ^ piece(h, e.range)).count_ones() <= sub) {
                        found(table.ids[k], d);
                    }
                }
            }
        }
    }

    /// `(query, id, distance)` for every query of `queries` (`None`: none) and every entry
    /// within `radius` of it, sorted; queries are spread over the current rayon pool.
    ///
    /// Panics when `radius` is above the index's (the pigeonhole argument would not hold).
    pub fn search_all(&self, queries: &[Option<u64>], radius: u32) -> Vec<(u32, u32, u32)> {
        assert!(radius <= self.radius, "radius {radius} is above the index's radius {}", self.radius);
        self.join(queries, radius, |_, _| true)
    }

    /// The pairs `i < j` of `queries` (the index's own hashes) within `radius`, as a spanning
    /// forest: the edges that join two items not yet joined in their chunk of queries (at most
    /// one per item a chunk touches), and the number of pairs in all. Memory grows with the
    /// items, not the pairs (20,000 re-encodings of one image: 200 million pairs).
    fn join_forest(&self, queries: &[Option<u64>], radius: u32) -> (Vec<(u32, u32)>, u64) {
        use rayon::prelude::*;
        let chunk = (queries.len() / (rayon::current_num_threads() * 16)).clamp(64, 65_536);
        let check = crate::cancel::Check::current();
        let parts: Vec<(Vec<(u32, u32)>, u64)> = queries
            .par_chunks(chunk)
            .enumerate()
            .map(|(c, qs)| {
                let (mut edges, mut pairs) = (Vec::new(), 0u64);
                // A union-find over the items this chunk touches (absent: its own root).
                let mut parent: HashMap<u32, u32> = HashMap::new();
                fn find(parent: &mut HashMap<u32, u32>, x: u32) -> u32 {
                    let mut root = x;
                    while let Some(&p) = parent.get(&root) {
                        root = p;
                    }
                    let mut y = x;
                    while let Some(&p) = parent.get(&y) {
                        if p != root {
                            parent.insert(y, root);
                        }
                        y = p;
                    }
                    root
                }
                for (o, q) in qs.iter().enumerate() {
                    if check.cancelled() {
                        break; // incomplete: the caller that cancelled discards it
                    }
                    let Some(q) = *q else { continue };
                    let qi = (c * chunk + o) as u32;
                    self.search(q, radius, |id, _| {
                        if qi < id {
                            pairs += 1;
                            let (a, b) = (find(&mut parent, qi), find(&mut parent, id));
                            if a != b {
                                parent.insert(a, b);
                                edges.push((qi, id));
                            }
                        }
                    });
                }
                (edges, pairs)
            })
            .collect();
        let pairs = parts.iter().map(|p| p.1).sum();
        (parts.into_iter().flat_map(|p| p.0).collect(), pairs)
    }

    fn join(&self, queries: &[Option<u64>], radius: u32, keep: impl Fn(u32, u32) -> bool + Sync) -> Vec<(u32, u32, u32)> {
        use rayon::prelude::*;
        let chunk = (queries.len() / (rayon::current_num_threads() * 16)).clamp(64, 65_536);
        let check = crate::cancel::Check::current();
        let parts: Vec<Vec<(u32, u32, u32)>> = queries
            .par_chunks(chunk)
            .enumerate()
            .map(|(c, qs)| {
                let mut out = Vec::new();
                for (o, q) in qs.iter().enumerate() {
                    if check.cancelled() {
                        break; // incomplete: the caller that cancelled discards it
                    }
                    let Some(q) = *q else { continue };
                    let qi = (c * chunk + o) as u32;
                    let start = out.len();
                    self.search(q, radius, |id, d| {
                        if keep(qi, id) {
                            out.push((qi, id, d));
                        }
                    });
                    out[start..].sort_unstable();
                }
                out
            })
            .collect();
        parts.concat()
    }
}

/// Every pair `(i, j, distance)` with `i < j` and `popcount(h[i] ^ h[j]) <= radius`, sorted.
/// `None` entries (hashes that failed) take part in nothing. Radius must be < 64. Runs on the
/// current rayon pool.
pub fn pairs_within(hashes: &[Option<u64>], radius: u32) -> Vec<(u32, u32, u32)> {
    HammingIndex::new(hashes, radius).join(hashes, radius, |i, j| i < j)
}

/// [`pairs_within`] and the clusters they make: each item's representative (the smallest index
/// of its connected component; the same as [`clusters_within`]'s) from one search.
pub fn pairs_and_clusters(hashes: &[Option<u64>], radius: u32) -> (Vec<(u32, u32, u32)>, Vec<u32>) {
    let pairs = pairs_within(hashes, radius);
    let mut uf = UnionFind::new(hashes.len());
    for &(a, b, _) in &pairs {
        uf.union(a, b);
    }
    let reps = uf.representatives(|_| 0u8);
    (pairs, reps)
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
    let (edges, pairs) = HammingIndex::new(&distinct, radius).join_forest(&distinct, radius);
    for &(a, b) in &edges {
        uf.union(owner[a as usize], owner[b as usize]);
    }
    (uf.representatives(|_| 0u8), pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seeded xorshift64 stream of test hashes.
    fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    #[test]
    fn finds_exactly_the_pairs_brute_force_finds() {
        let mut rnd = xorshift(12345);
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

    /// `(query, entry, distance)` for every query and entry within `radius`, by comparing all.
    fn brute_force(queries: &[Option<u64>], hashes: &[Option<u64>], radius: u32) -> Vec<(u32, u32, u32)> {
        let mut want = Vec::new();
        for (qi, q) in queries.iter().enumerate() {
            for (j, h) in hashes.iter().enumerate() {
                if let (Some(q), Some(h)) = (q, h) {
                    let d = (q ^ h).count_ones();
                    if d <= radius {
                        want.push((qi as u32, j as u32, d));
                    }
                }
            }
        }
        want
    }

    #[test]
    fn index_search_finds_exactly_what_brute_force_finds() {
        let mut rnd = xorshift(777);
        let mut hashes: Vec<Option<u64>> = (0..500).map(|_| Some(rnd())).collect();
        hashes.push(None);
        hashes.push(hashes[3]); // an equal copy
        let mut queries: Vec<Option<u64>> = Vec::new();
        for i in 0..200 {
            // Queries 0-8 bits from an entry, some entries with several.
            let mut q = hashes[i % 120].unwrap();
            for b in 0..(i % 9) {
                q ^= 1 << ((i * 13 + b * 7) % 64);
            }
            queries.push(Some(q));
        }
        queries.push(None);
        queries.push(Some(rnd()));
        // Radius 0-2: binary-searched tables (wide ranges, or too few hashes for a direct one);
        // 5: both kinds; 8: direct ones.
        for (built, radius) in [(0, 0), (1, 1), (2, 2), (5, 5), (5, 3), (8, 8), (8, 0)] {
            let index = HammingIndex::new(&hashes, built);
            let got = index.search_all(&queries, radius);
            assert_eq!(got, brute_force(&queries, &hashes, radius), "built for {built}, searched within {radius}");
            assert_eq!(index.len(), hashes.len());
        }
    }

    #[test]
    fn every_number_of_ranges_finds_what_brute_force_finds() {
        let mut rnd = xorshift(4242);
        let mut hashes: Vec<Option<u64>> = (0..400).map(|_| Some(rnd())).collect();
        for i in 0..300 {
            // Near copies 0-9 bits away, the flipped bits spread over every range.
            let mut h = hashes[i % 97].unwrap();
            for b in 0..(i % 10) {
                h ^= 1 << ((i * 11 + b * 29) % 64);
            }
            hashes.push(Some(h));
        }
        hashes.push(None);
        for built in [1, 3, 5, 8] {
            let want_by_radius: Vec<_> = (0..=built).map(|radius| brute_force(&hashes, &hashes, radius)).collect();
            // (A range wider than 64 / parts searched within radius / parts bits: skip the
            // splits whose lookups per query run into the millions.)
            for parts in (1..=built as usize + 1).filter(|&m| ball(64 / m as u32 + 1, built / m as u32) <= 50_000.0) {
                let index = HammingIndex::with_parts(&hashes, built, parts);
                assert_eq!(index.parts(), parts);
                for radius in 0..=built {
                    assert_eq!(
                        index.search_all(&hashes, radius),
                        want_by_radius[radius as usize],
                        "built for {built}, {parts} ranges, searched within {radius}"
                    );
                }
            }
        }
    }

    #[test]
    fn large_sets_get_fewer_wider_ranges() {
        assert_eq!(choose_parts(20_000, 5), 6); // exact-match ranges, as before
        assert_eq!(choose_parts(200_000, 5), 6);
        assert_eq!(choose_parts(262_144, 5), 3); // every 21-22 bit range gets a direct table
        assert_eq!(choose_parts(4_000_000, 5), 3); // 21-22 bits within 1 bit
        assert_eq!(choose_parts(100_000_000, 5), 3);
        assert_eq!(choose_parts(10, 0), 1);
        assert_eq!(masks(5, 2).len(), 16); // 1 + 5 + 10
        assert!(masks(5, 2)[..6].iter().all(|m| m.count_ones() <= 1));
        assert_eq!(ball(21, 1), 22.0);
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
        let mut rnd = xorshift(99);
        let base: Vec<u64> = (0..40).map(|_| rnd()).collect();
        let hashes: Vec<Option<u64>> = (0..400).map(|i| Some(base[i % 40] ^ if i % 3 == 0 { 1 << (i % 64) } else { 0 })).collect();
        let mut uf = UnionFind::new(hashes.len());
        for (i, j, _) in pairs_within(&hashes, 3) {
            uf.union(i, j);
        }
        let want = uf.representatives(|_| 0u8);
        assert_eq!(clusters_within(&hashes, 3).0, want);
        assert_eq!(pairs_and_clusters(&hashes, 3), (pairs_within(&hashes, 3), want));
    }
}
