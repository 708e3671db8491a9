//! Locality-sensitive hashing over MinHash signatures: band/row choice as datasketch makes it,
//! candidate pairs from band buckets, optional verification, union-find clusters.

use std::collections::HashMap;

use super::minhash::estimated_jaccard;
use super::unionfind::UnionFind;
use crate::text::shingle::{for_each_shingle_hash, Unit};

/// Gauss-Legendre nodes and weights on [-1, 1] (Newton iteration on P_m).
fn gauss_legendre(m: usize) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(m);
    for i in 0..m {
        let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (m as f64 + 0.5)).cos();
        let mut dp = 0.0;
        for _ in 0..100 {
            let (mut p0, mut p1) = (1.0f64, x);
            for k in 2..=m {
                let p2 = ((2 * k - 1) as f64 * x * p1 - (k - 1) as f64 * p0) / k as f64;
                p0 = p1;
                p1 = p2;
            }
            dp = m as f64 * (x * p1 - p0) / (x * x - 1.0);
            let dx = p1 / dp;
            x -= dx;
            if dx.abs() < 1e-15 {
                break;
            }
        }
        out.push((x, 2.0 / ((1.0 - x * x) * dp * dp)));
    }
    out
}

/// Integrates a polynomial of degree < 2 * nodes.len() exactly (up to rounding).
fn integrate(f: impl Fn(f64) -> f64, lo: f64, hi: f64, nodes: &[(f64, f64)]) -> f64 {
    let (h, c) = ((hi - lo) / 2.0, (hi + lo) / 2.0);
    h * nodes.iter().map(|&(x, w)| w * f(c + h * x)).sum::<f64>()
}

/// The (bands, rows) that minimise `fp_weight * FP + fn_weight * FN`, where FP and FN are the
/// areas datasketch's `_optimal_param` integrates. The integrands are polynomials of degree
/// b*r <= num_perm, so Gauss-Legendre with num_perm/2 + 1 nodes is exact; datasketch uses
/// scipy's adaptive quadrature, which agrees to ~1e-14.
pub fn optimal_params(threshold: f64, num_perm: usize, fp_weight: f64, fn_weight: f64) -> (usize, usize) {
    let nodes = gauss_legendre(num_perm / 2 + 2);
    let mut best = (f64::INFINITY, (0, 0));
    for b in 1..=num_perm {
        for r in 1..=num_perm / b {
            let (bf, rf) = (b as f64, r as f64);
            let fp = integrate(|s| 1.0 - (1.0 - s.powf(rf)).powf(bf), 0.0, threshold, &nodes);
            let fneg = integrate(|s| 1.0 - (1.0 - (1.0 - s.powf(rf)).powf(bf)), threshold, 1.0, &nodes);
            let err = fp * fp_weight + fneg * fn_weight;
            if err < best.0 {
                best = (err, (b, r));
            }
        }
    }
    best.1
}

/// How candidate pairs from the band buckets are confirmed before they are joined.
pub enum Verify<'a> {
    /// Join every candidate pair (datasketch's LSH behaviour).
    None,
    /// Join when the estimated Jaccard of the full signatures is >= threshold.
    Signature(f64),
    /// Join when the exact Jaccard of the rows' shingle sets ([`shingle_sets`]) is >= threshold.
    Exact(f64, &'a [Vec<u64>]),
}

/// The distinct shingle hashes of each text, sorted: the sets exact verification compares.
pub fn shingle_sets(texts: &[&str], n: usize, unit: Unit) -> Vec<Vec<u64>> {
    use rayon::prelude::*;
    let check = crate::cancel::Check::current();
    texts
        .par_iter()
        .map_init(Vec::new, |units, t| {
            let mut v = Vec::new();
            if check.cancelled() {
                return v; // incomplete: the caller that cancelled discards it
            }
            for_each_shingle_hash(t, n, unit, 0, units, |h| v.push(h));
            v.sort_unstable();
            v.dedup();
            v
        })
        .collect()
}

/// Exact Jaccard of two sorted sets without repeats (1.0 for two empty sets).
pub fn jaccard_sorted(a: &[u64], b: &[u64]) -> f64 {
    let (mut i, mut j, mut inter) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = a.len() + b.len() - inter;
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

/// Result of clustering: the union-find and how many candidate pairs were checked / joined.
pub struct Clusters {
    pub uf: UnionFind,
    pub candidates: u64,
    pub joined: u64,
}

/// Buckets every row's band (rows `band*r .. band*r + r` of its signature) and joins rows that
/// share a bucket in any band. `sigs` is row-major `(n, num_perm)`. Memory: one hash map of n
/// entries at a time, plus the union-find.
pub fn cluster(sigs: &[u32], num_perm: usize, bands: usize, rows: usize, verify: &Verify) -> Clusters {
    assert!(bands * rows <= num_perm, "bands * rows must be <= num_perm");
    let n = sigs.len().checked_div(num_perm).unwrap_or(0);
    let mut uf = UnionFind::new(n);
    let (mut candidates, mut joined) = (0u64, 0u64);
    let row_of = |i: usize| &sigs[i * num_perm..(i + 1) * num_perm];
    let check = crate::cancel::Check::current();
    for band in 0..bands {
        if check.cancelled() {
            break; // incomplete: the caller that cancelled discards it
        }
        let span = band * rows..(band + 1) * rows;
        // bucket key -> its members so far, in groups that each lie in one component (rows
        // only ever join, so a group stays in one): without verification only the first member
        // is needed; with it, a group already in row i's component is passed over at once,
        // not member by member (10^5 copies of one caption made each copy walk all earlier
        // ones: quadratic), and a group in another is verified member by member until one
        // passes, which is what checking every member gives.
        let mut buckets: HashMap<&[u32], Vec<Vec<u32>>> = HashMap::with_capacity(n);
        for i in 0..n {
            if check.cancelled() {
                break; // one load per row: a row's verification can walk the whole bucket
            }
            let key = &row_of(i)[span.clone()];
            let groups = buckets.entry(key).or_default();
            let i32_ = i as u32;
            match verify {
                Verify::None => {
                    if let Some(&first) = groups.first().and_then(|g| g.first()) {
                        candidates += 1;
                        joined += uf.union(first, i32_) as u64;
                    } else {
                        groups.push(vec![i32_]);
                    }
                }
                _ => {
                    let mut with_i = Vec::new(); // the groups now in row i's component
                    for (g, members) in groups.iter().enumerate() {
                        if uf.find(members[0]) == uf.find(i32_) {
                            with_i.push(g);
                            continue;
                        }
                        for &j in members {
                            candidates += 1;
                            let ok = match verify {
                                Verify::Signature(t) => estimated_jaccard(row_of(i), row_of(j as usize)) >= *t,
                                Verify::Exact(t, sets) => jaccard_sorted(&sets[i], &sets[j as usize]) >= *t,
                                Verify::None => unreachable!(),
                            };
                            if ok {
                                joined += uf.union(j, i32_) as u64;
                                with_i.push(g);
                                break;
                            }
                        }
                    }
                    // Row i joins the first of them, and the others merge into it.
                    match with_i.split_first() {
                        None => groups.push(vec![i32_]),
                        Some((&first, rest)) => {
                            for &g in rest.iter().rev() {
                                let moved = groups.remove(g);
                                groups[first].extend(moved);
                            }
                            groups[first].push(i32_);
                        }
                    }
                }
            }
        }
    }
    Clusters { uf, candidates, joined }
}

/// Clusters rows as [`cluster`] does and names each row's representative: the member of its
/// cluster with the smallest `(ranking, index)`, or the smallest index without a ranking.
/// Returns (representative per row, candidate pairs checked, pairs joined).
pub fn representatives(sigs: &[u32], num_perm: usize, bands: usize, rows: usize, verify: &Verify, ranking: Option<&[f64]>) -> (Vec<u32>, u64, u64) {
    let mut c = cluster(sigs, num_perm, bands, rows, verify);
    let reps = match ranking {
        Some(r) => c.uf.representatives(|i| r[i]),
        None => c.uf.representatives(|_| 0u8),
    };
    (reps, c.candidates, c.joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauss_legendre_integrates_polynomials_exactly() {
        let nodes = gauss_legendre(10);
        let v = integrate(|x| x.powi(19), 0.0, 1.0, &nodes);
        assert!((v - 0.05).abs() < 1e-14);
    }

    #[test]
    fn optimal_params_match_datasketch_examples() {
        // datasketch.lsh._optimal_param(t, 128, 0.5, 0.5)
        assert_eq!(optimal_params(0.8, 128, 0.5, 0.5), (9, 13));
        assert_eq!(optimal_params(0.5, 128, 0.5, 0.5), (25, 5));
    }

    #[test]
    fn identical_signatures_cluster_and_others_do_not() {
        let sigs = vec![1, 2, 3, 4, 9, 9, 9, 9, 1, 2, 3, 4];
        let mut c = cluster(&sigs, 4, 2, 2, &Verify::None);
        assert_eq!(c.uf.representatives(|_| 0), vec![0, 1, 0]);
    }
}

#[cfg(test)]
mod verify_tests {
    use super::*;

    #[test]
    fn exact_jaccard_of_shingle_sets() {
        let sets = shingle_sets(&["a b c d", "a b c e", ""], 1, Unit::Word);
        assert!((jaccard_sorted(&sets[0], &sets[1]) - 3.0 / 5.0).abs() < 1e-12);
        assert_eq!(jaccard_sorted(&sets[2], &sets[2]), 1.0);
        assert_eq!(jaccard_sorted(&sets[0], &sets[2]), 0.0);
    }

    #[test]
    fn exact_verification_refuses_a_candidate_below_the_threshold() {
        // Two rows share every band, so they are candidates; their texts share 3 of 5 words.
        let sigs = vec![1, 2, 1, 2];
        let sets = shingle_sets(&["a b c d", "a b c e"], 1, Unit::Word);
        assert_eq!(representatives(&sigs, 2, 1, 2, &Verify::Exact(0.7, &sets), None).0, vec![0, 1]);
        assert_eq!(representatives(&sigs, 2, 1, 2, &Verify::Exact(0.5, &sets), None).0, vec![0, 0]);
    }

    /// Verification as first written: every member of the row's bucket that is not in its
    /// component is checked (quadratic in a bucket's size).
    fn clusters_checking_every_member(sigs: &[u32], num_perm: usize, bands: usize, rows: usize, t: f64) -> Vec<u32> {
        let n = sigs.len() / num_perm;
        let row_of = |i: usize| &sigs[i * num_perm..(i + 1) * num_perm];
        let mut uf = UnionFind::new(n);
        for band in 0..bands {
            let mut buckets: HashMap<&[u32], Vec<u32>> = HashMap::new();
            for i in 0..n {
                let members = buckets.entry(&row_of(i)[band * rows..(band + 1) * rows]).or_default();
                for &j in members.iter() {
                    if uf.find(j) != uf.find(i as u32) && estimated_jaccard(row_of(i), row_of(j as usize)) >= t {
                        uf.union(j, i as u32);
                    }
                }
                members.push(i as u32);
            }
        }
        uf.representatives(|_| 0u8)
    }

    #[test]
    fn grouped_verification_gives_the_clusters_of_checking_every_member() {
        // Signatures over a tiny alphabet: buckets are large and hold rows that pass and
        // rows that fail the threshold, in components that merge across bands.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for (num_perm, bands, rows, alphabet, t) in
            [(12, 6, 2, 2, 0.85), (16, 8, 2, 2, 0.9), (10, 5, 2, 2, 0.9), (20, 10, 2, 3, 0.6), (16, 4, 4, 2, 0.8), (12, 12, 1, 3, 0.7)]
        {
            let n = 400;
            let sigs: Vec<u32> = (0..n * num_perm).map(|_| (next() % alphabet) as u32).collect();
            let grouped = representatives(&sigs, num_perm, bands, rows, &Verify::Signature(t), None).0;
            assert_eq!(grouped, clusters_checking_every_member(&sigs, num_perm, bands, rows, t), "{num_perm} {bands} {rows} {alphabet} {t}");
            let clusters = grouped.iter().enumerate().filter(|&(i, &r)| r as usize == i).count();
            assert!(clusters > 1 && clusters < n, "{num_perm} {bands} {rows} {alphabet} {t}: {clusters} clusters");
        }
        // 20,000 copies of one signature: one group, one find per copy.
        let copies = [7u32, 8, 9, 10].repeat(20_000);
        let (reps, candidates, joined) = representatives(&copies, 4, 2, 2, &Verify::Signature(0.9), None);
        assert!(reps.iter().all(|&r| r == 0) && candidates == 19_999 && joined == 19_999);
    }
}
